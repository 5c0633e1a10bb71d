// `ocelot bgpd --config FILE`: the BGP speaker alone from a YAML file (pino logs, status socket,
// SIGHUP re-reads the file and applies it by diff), and `ocelot status` / `ocelot routes`, which
// read that socket. Owns: process wiring only. Not: BGP logic (src/bgp/).
import { readFileSync, writeFileSync } from "node:fs";
import type { Command } from "commander";
import { SpeakerBfd } from "../bgp/bfd/speaker_bfd.js";
import {
  type BgpdConfig,
  ConfigError,
  parseConfigText,
  resolvePasswordFiles,
} from "../bgp/config.js";
import { realClock } from "../bgp/io/clock.js";
import { ttlHook } from "../bgp/io/ttl.js";
import { addBfdMetrics, addBgpMetrics } from "../bgp/metrics.js";
import { ribToMrt } from "../bgp/mrt/from_rib.js";
import { tableDumpV2 } from "../bgp/mrt/table_dump_v2.js";
import { makeWireBridge } from "../bgp/speaker/attrs.js";
import { Speaker } from "../bgp/speaker/runtime.js";
import {
  formatRoutes,
  formatStatus,
  queryStatus,
  type RoutesSnapshot,
  type StatusSnapshot,
  serveStatus,
} from "../bgp/status.js";
import type { Fib } from "../fib/types.js";
import { addFibMetrics, addProcessMetrics } from "../lib/daemon_metrics.js";
import { type ListenAddress, parseListenAddress, serveHealth } from "../lib/health_server.js";
import type { Log } from "../lib/log.js";
import { MetricsRegistry } from "../lib/metrics.js";
import { findStatusSocket } from "../lib/status_socket_path.js";
import { CliError } from "./main.js";

const LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"];

function loadConfig(path: string): BgpdConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new CliError(`Cannot read config file "${path}": ${(e as Error).message}`);
  }
  try {
    return resolvePasswordFiles(parseConfigText(text, path));
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(e.message);
    throw e;
  }
}

async function openFib(cfg: BgpdConfig, log: Log): Promise<Fib | null> {
  if (!cfg.fib.enabled) return null;
  const { KernelFib } = await import("../fib/kernel_fib.js");
  return KernelFib.open({
    protocols: [cfg.fib.protocol],
    // A restart keeps our kernel routes until the peers re-sent their tables (End-of-RIB).
    gracefulHoldMs: cfg.fib.gracefulRestartTime * 1000,
    onEvent: (e) => log.debug({ fib: e }, "FIB event"),
  });
}

/** What the health endpoint reads of a speaker. */
type SpeakerView = { status(): StatusSnapshot; readonly config: BgpdConfig };

/** Ready once every configured peer is Established (as calico-node's -bird-ready). */
function speakerReady(speaker: SpeakerView, started: boolean) {
  if (!started) return { ok: false, reason: "the speaker is starting" };
  const down = speaker.status().peers.filter((p) => p.state !== "Established");
  if (down.length > 0)
    return {
      ok: false,
      reason: `BGP not established with ${down.map((p) => `${p.address} (${p.state})`).join(", ")}`,
    };
  return { ok: true };
}

/** `--metrics-address`: /metrics, /livez, /readyz for bgpd (nothing when the flag is absent). */
async function serveBgpdHealth(
  addr: ListenAddress | undefined,
  speaker: SpeakerView,
  fib: Fib | null,
  isStarted: () => boolean,
  bfd: SpeakerBfd,
) {
  if (!addr) return undefined;
  const startedAt = Date.now();
  const fibStats = () =>
    fib && "status" in fib
      ? (fib as unknown as { status(): { resyncs: number; overflows: number } }).status()
      : undefined;
  return serveHealth(addr, {
    ready: () => speakerReady(speaker, isStarted()),
    metrics: () => {
      const reg = new MetricsRegistry();
      const s = speaker.status();
      const families = new Map(speaker.config.peers.map((p) => [p.address, p.families ?? []]));
      addBgpMetrics(reg, s, { configuredFamilies: (a) => families.get(a) ?? [] });
      const k = fibStats();
      addFibMetrics(
        reg,
        s.fib.enabled
          ? [["bgp", { ...s.fib, resyncs: k?.resyncs ?? 0, overflows: k?.overflows ?? 0 }]]
          : [],
      );
      const bfdCounters = bfd.counters();
      if (bfdCounters) addBfdMetrics(reg, bfd.status() ?? [], bfdCounters);
      addProcessMetrics(reg, { rssBytes: process.memoryUsage.rss(), startedAtMs: startedAt });
      return reg.render();
    },
  });
}

async function runBgpd(opts: {
  config: string;
  logLevel: string;
  metricsAddress?: string;
}): Promise<void> {
  if (!LEVELS.includes(opts.logLevel)) {
    throw new CliError(`--log-level: "${opts.logLevel}" is not one of ${LEVELS.join(", ")}`, 2);
  }
  let metricsAddr: ListenAddress | undefined;
  try {
    metricsAddr = opts.metricsAddress ? parseListenAddress(opts.metricsAddress) : undefined;
  } catch (e) {
    throw new CliError((e as Error).message, 2);
  }
  const cfg = loadConfig(opts.config);
  const { pino } = await import("pino");
  const log = pino({ level: opts.logLevel, base: { daemon: "bgpd" } });
  let fib: Fib | null;
  try {
    fib = await openFib(cfg, log);
  } catch (e) {
    throw new CliError(
      `Cannot open the kernel FIB (fib.enabled: false runs without it): ${(e as Error).message}`,
    );
  }
  const onSocket = await ttlHook(log);
  const speaker = new Speaker(cfg, {
    clock: realClock,
    log,
    fib,
    bridge: makeWireBridge(),
    ...(onSocket ? { onSocket } : {}),
  });
  let started = false;
  // BFD Down drops the BGP session at once (RFC 5882 §4.3), so its routes leave the RIB and the
  // kernel now, not when the hold timer expires, and holds it down until BFD is Up again.
  const bfd = new SpeakerBfd(log, (address, held) =>
    speaker.signal({
      kind: "peerHold",
      peer: address,
      held,
      reason: held ? "BFD session down" : "BFD session up",
    }),
  );
  let health: Awaited<ReturnType<typeof serveBgpdHealth>>;
  try {
    health = await serveBgpdHealth(metricsAddr, speaker, fib, () => started, bfd);
  } catch (e) {
    await fib?.close();
    throw new CliError((e as Error).message);
  }
  await speaker.start();
  try {
    await bfd.apply(cfg);
  } catch (e) {
    bfd.close();
    await speaker.stop();
    await health?.close();
    await fib?.close();
    throw new CliError(`Cannot start BFD: ${(e as Error).message}`);
  }
  started = true;
  const statusView = {
    status: () => {
      const s = speaker.status();
      const b = bfd.status();
      return b ? { ...s, bfd: b } : s;
    },
    routes: () => speaker.routes(),
  };
  let statusServer = await serveStatus(cfg.status.socket, statusView);
  log.info(
    {
      asn: cfg.asn,
      routerId: cfg.routerId,
      peers: cfg.peers.length,
      socket: cfg.status.socket,
      ...(health ? { metrics: health.address } : {}),
    },
    "bgpd started",
  );

  let reloading = Promise.resolve();
  process.on("SIGHUP", () => {
    reloading = reloading.then(async () => {
      try {
        const next = loadConfig(opts.config);
        const socketChanged = next.status.socket !== speaker.config.status.socket;
        await speaker.reconfigure(next);
        await bfd.apply(next);
        if (socketChanged) {
          await statusServer.close();
          statusServer = await serveStatus(next.status.socket, statusView);
        }
        log.info({ config: opts.config }, "Configuration reloaded");
      } catch (e) {
        log.error(
          { error: (e as Error).message },
          "Configuration reload failed; keeping the old one",
        );
      }
    });
  });
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal: sig }, "Stopping");
      const hard = setTimeout(() => process.exit(1), 10_000);
      hard.unref();
      void (async () => {
        await speaker.stop().catch((e: Error) => log.error({ error: e.message }, "Stop failed"));
        bfd.close();
        await statusServer.close();
        await health?.close();
        await fib?.close();
        resolve();
        // Sockets and timers are closed; exit now rather than wait on stray handles.
        setImmediate(() => process.exit(process.exitCode ?? 0));
      })();
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });
}

async function read<T>(socket: string, cmd: "status" | "routes"): Promise<T> {
  try {
    return await queryStatus<T>(socket, cmd);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
}

export function register(program: Command): void {
  program
    .command("bgpd")
    .description("run the BGP speaker from a YAML config file")
    .requiredOption("--config <file>", "bgpd YAML config")
    .option("--log-level <level>", `log level (${LEVELS.join(", ")})`, "info")
    .option(
      "--metrics-address <host:port>",
      "serve /metrics, /livez and /readyz over HTTP there (default: off)",
    )
    .action(async (o: { config: string; logLevel: string; metricsAddress?: string }) => runBgpd(o));

  program
    .command("status")
    .description("show BGP peers of the local bgpd")
    .option("--json", "print JSON", false)
    .option("--socket <path>", "status socket (default: this netns's daemon's)")
    .action(async (o: { json: boolean; socket?: string }) => {
      const s = await read<StatusSnapshot>(o.socket ?? findStatusSocket(), "status");
      process.stdout.write(o.json ? `${JSON.stringify(s, null, 2)}\n` : formatStatus(s));
    });

  program
    .command("routes")
    .description("show the Loc-RIB of the local bgpd with the best-path reason")
    .option("--json", "print JSON", false)
    .option("--socket <path>", "status socket (default: this netns's daemon's)")
    .option("--mrt <file>", "write the Loc-RIB as an MRT TABLE_DUMP_V2 file (RFC 6396)")
    .action(async (o: { json: boolean; socket?: string; mrt?: string }) => {
      const socket = o.socket ?? findStatusSocket();
      const r = await read<RoutesSnapshot>(socket, "routes");
      if (o.mrt !== undefined) {
        const s = await read<StatusSnapshot>(socket, "status");
        const now = Math.floor(Date.now() / 1000);
        const m = ribToMrt(s, r, now);
        writeFileSync(o.mrt, tableDumpV2(now, s.routerId, "ocelot", m.peers, m.routes));
        process.stdout.write(
          o.json
            ? `${JSON.stringify({ file: o.mrt, peers: m.peers.length, routes: m.routes.length })}\n`
            : `Wrote ${m.routes.length} routes of ${m.peers.length} peers to ${o.mrt} (MRT TABLE_DUMP_V2)\n`,
        );
        return;
      }
      process.stdout.write(o.json ? `${JSON.stringify(r, null, 2)}\n` : formatRoutes(r));
    });
}
