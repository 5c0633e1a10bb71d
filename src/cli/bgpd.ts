// `ocelot bgpd --config FILE`: the BGP speaker alone from a YAML file (pino logs, status socket,
// SIGHUP re-reads the file and applies it by diff), and `ocelot status` / `ocelot routes`, which
// read that socket. Owns: process wiring only. Not: BGP logic (src/bgp/).
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import type { Command } from "commander";
import { SpeakerBfd } from "../bgp/bfd/speaker_bfd.js";
import { BmpClient, parseStation } from "../bgp/bmp/client.js";
import { addBmpMetrics } from "../bgp/bmp/metrics.js";
import type { PeerConfig } from "../bgp/config.js";
import {
  type BgpdConfig,
  ConfigError,
  fibGracefulHoldSeconds,
  parseConfigText,
  resolvePasswordFiles,
} from "../bgp/config.js";
import { realClock } from "../bgp/io/clock.js";
import { ttlHook } from "../bgp/io/ttl.js";
import { SpeakerLinkWatch } from "../bgp/link/link_watch.js";
import { NeighbourPoll } from "../bgp/link/neighbour_poll.js";
import { NeighbourWatch } from "../bgp/link/neighbour_watch.js";
import {
  type NeighbourFollower,
  type ResolvedPeers,
  resolveInterfacePeers,
  waitingPeerStatus,
} from "../bgp/link/unnumbered.js";
import { addBfdMetrics, addBgpMetrics } from "../bgp/metrics.js";
import { ribToMrt } from "../bgp/mrt/from_rib.js";
import { tableDumpV2 } from "../bgp/mrt/table_dump_v2.js";
import { UpdateDump } from "../bgp/mrt/update_dump.js";
import { makeWireBridge } from "../bgp/speaker/attrs.js";
import { Speaker } from "../bgp/speaker/runtime.js";
import {
  formatRoutes,
  formatStatus,
  queryStatus,
  type RouteExplanation,
  type RoutesSnapshot,
  type StatusSnapshot,
  serveStatus,
} from "../bgp/status.js";
import {
  checkKernelRoute,
  type IpJsonRoute,
  type KernelCheck,
  kernelCheckText,
} from "../fib/route_check.js";
import type { Fib } from "../fib/types.js";
import { addFibMetrics, type FibCounters } from "../lib/daemon_metrics.js";
import { type ListenAddress, parseListenAddress, serveHealth } from "../lib/health_server.js";
import type { Log } from "../lib/log.js";
import { type MetricFamily, MetricsRegistry } from "../lib/metrics.js";
import { PromMetrics } from "../lib/prom.js";
import { findStatusSocket } from "../lib/status_socket_path.js";
import { CliError } from "./errors.js";
import { fixMallocThresholds } from "./malloc_thresholds.js";

const LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"];

/** The interfaces of a config's unnumbered peers. */
const unnumberedInterfaces = (cfg: BgpdConfig) =>
  cfg.peers.flatMap((p) => (p.interface !== undefined ? [p.interface] : []));

/**
 * The config as the file says it: an unnumbered peer's address is filled in later (from the
 * neighbour table: NeighbourWatch, or NeighbourPoll) and followed as it changes.
 */
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

/**
 * Keeps V8's young generation at its initial size (1 MiB semi-spaces) instead of letting it grow
 * to 16 MiB ones while a table arrives: the hot path allocates little, and the grown young
 * generation was ~10 MiB of the daemon's peak at 1M routes (bench/bgp_inject.ts, RssAnon). The
 * command-line equivalent (--max-semi-space-size=1) cannot be set from here, and would make V8
 * reject the bundle's code cache; this flag is read each time the young generation would grow.
 * OCELOT_V8_YOUNG=default leaves V8's default.
 */
function capYoungGeneration(): void {
  if (process.env.OCELOT_V8_YOUNG === "default") return;
  setFlagsFromString("--semi-space-growth-factor=1");
}

/** bgpd's old-generation growth, percent past what the last full GC left live (see below). */
export const HEAP_GROWING_PERCENT = 30;

/**
 * Grows V8's old generation by HEAP_GROWING_PERCENT past what each full GC left live, instead
 * of V8's factor of up to 4x for a small heap: a reflector's sessions write many small UPDATEs
 * whose pending writes outlive young-generation GCs, and the old generation V8 then grew stayed
 * committed (docs/scale.md, "RSS in parts"). Set at start, like the young-generation cap: V8
 * reads it each time it sets the next limit. OCELOT_V8_HEAP_GROWING=default leaves V8's
 * factor; a number 1..400 sets another percent.
 */
export function capHeapGrowth(env: string | undefined): string | undefined {
  if (env === "default") return undefined;
  const pct = env === undefined ? HEAP_GROWING_PERCENT : Number(env);
  if (env !== undefined && (!/^\d+$/.test(env) || pct < 1 || pct > 400))
    throw new CliError(`OCELOT_V8_HEAP_GROWING: "${env}" is not "default" or a percent 1..400`, 2);
  const flag = `--heap-growing-percent=${pct}`;
  setFlagsFromString(flag);
  return flag;
}

// The malloc thresholds moved below both daemons; re-exported for bgpd's start tests.
export { fixMallocThresholds, MALLOC_THRESHOLD_BYTES } from "./malloc_thresholds.js";

async function openFib(cfg: BgpdConfig, log: Log): Promise<Fib | null> {
  if (!cfg.fib.enabled) return null;
  const { KernelFib } = await import("../fib/kernel_fib.js");
  return KernelFib.open({
    protocols: [cfg.fib.protocol],
    // A restart keeps our kernel routes until the peers re-sent their tables (End-of-RIB), at
    // most fib.gracefulRestartTime (longer toward peers with long-lived graceful restart).
    gracefulHoldMs: fibGracefulHoldSeconds(cfg) * 1000,
    // Routes through one gateway name a nexthop object (the kernel's work per route ~40% less);
    // OCELOT_FIB_NEXTHOP_OBJECTS=0: the gateway in each route, as before.
    nexthopObjects: process.env.OCELOT_FIB_NEXTHOP_OBJECTS !== "0",
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

/**
 * bgpd's snapshot families at scrape time (the process_* ones come from prom-client's default
 * metrics, the histograms and NOTIFICATION counters from PromMetrics): the same registry shape
 * as `ocelot node run`'s.
 */
function bgpdFamilies(
  speaker: SpeakerView,
  fib: Fib | null,
  bfd: SpeakerBfd,
  bmp: BmpClient | undefined,
): MetricFamily[] {
  const reg = new MetricsRegistry();
  const s = speaker.status();
  const families = new Map(speaker.config.peers.map((p) => [p.address, p.families ?? []]));
  addBgpMetrics(reg, s, { configuredFamilies: (a) => families.get(a) ?? [] });
  const k =
    fib && "status" in fib
      ? (
          fib as unknown as {
            status(): Pick<
              FibCounters,
              | "resyncs"
              | "overflows"
              | "restored"
              | "swept"
              | "nexthopsSwept"
              | "nexthopsDeleted"
              | "errorsByErrno"
            >;
          }
        ).status()
      : undefined;
  addFibMetrics(
    reg,
    s.fib.enabled
      ? [
          [
            "bgp",
            {
              ...s.fib,
              resyncs: k?.resyncs ?? 0,
              overflows: k?.overflows ?? 0,
              restored: k?.restored ?? 0,
              swept: k?.swept ?? 0,
              nexthopsSwept: k?.nexthopsSwept ?? 0,
              nexthopsDeleted: k?.nexthopsDeleted ?? 0,
              ...(k?.errorsByErrno ? { errorsByErrno: k.errorsByErrno } : {}),
            },
          ],
        ]
      : [],
  );
  const bfdCounters = bfd.counters();
  if (bfdCounters) addBfdMetrics(reg, bfd.status() ?? [], bfdCounters);
  if (bmp) addBmpMetrics(reg, bmp);
  return reg.families;
}

/** `--metrics-address`: /metrics, /livez, /readyz for bgpd (nothing when the flag is absent). */
async function serveBgpdHealth(
  addr: ListenAddress | undefined,
  speaker: SpeakerView,
  isStarted: () => boolean,
  prom: PromMetrics | undefined,
) {
  if (!addr || !prom) return undefined;
  return serveHealth(addr, {
    ready: () => speakerReady(speaker, isStarted()),
    metrics: () => prom.render(),
  });
}

interface BgpdOptions {
  config: string;
  logLevel: string;
  metricsAddress?: string;
  bmpStation?: string;
  bmpStatsInterval: string;
  bmpAdjRibOut?: boolean;
  mrtUpdates?: string;
  mrtRotateSize: string;
  mrtRotateInterval: string;
}

/** A whole number flag value of at least `min`, or a usage error naming the flag. */
function intFlag(name: string, v: string, min: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min)
    throw new CliError(`${name}: "${v}" is not a whole number >= ${min}`, 2);
  return n;
}

async function runBgpd(opts: BgpdOptions): Promise<void> {
  capYoungGeneration();
  capHeapGrowth(process.env.OCELOT_V8_HEAP_GROWING);
  fixMallocThresholds(process.env.OCELOT_MALLOC_THRESHOLDS);
  if (!LEVELS.includes(opts.logLevel)) {
    throw new CliError(`--log-level: "${opts.logLevel}" is not one of ${LEVELS.join(", ")}`, 2);
  }
  let metricsAddr: ListenAddress | undefined;
  try {
    metricsAddr = opts.metricsAddress ? parseListenAddress(opts.metricsAddress) : undefined;
  } catch (e) {
    throw new CliError((e as Error).message, 2);
  }
  if (opts.bmpStation !== undefined) {
    try {
      parseStation(opts.bmpStation);
    } catch (e) {
      throw new CliError(`--bmp-station: ${(e as Error).message}`, 2);
    }
  }
  const bmpStatsMs = intFlag("--bmp-stats-interval", opts.bmpStatsInterval, 0) * 1000;
  const mrtRotateBytes = intFlag("--mrt-rotate-size", opts.mrtRotateSize, 1);
  const mrtRotateMs = intFlag("--mrt-rotate-interval", opts.mrtRotateInterval, 0) * 1000;
  let declared = loadConfig(opts.config);
  const { pino } = await import("pino");
  const log = pino({ level: opts.logLevel, base: { daemon: "bgpd" } });
  // Unnumbered peers: the link-local neighbour on each one's interface, read now and followed;
  // a peer with none yet waits (Idle in status) and its session starts when one appears.
  let following = false;
  let neighbours: NeighbourFollower | undefined;
  const onNeighbour = (iface: string) => {
    log.info(
      { interface: iface, neighbour: neighbours?.table.linkLocal(iface) },
      "Unnumbered peer: new link-local neighbour",
    );
    if (following) followNeighbours();
  };
  /** Follows the neighbours of a config's unnumbered interfaces (opened at the first one). */
  const follow = async (c: BgpdConfig) => {
    const ifaces = unnumberedInterfaces(c);
    if (!neighbours && ifaces.length === 0) return;
    if (!neighbours && process.env.OCELOT_NEIGHBOUR_POLL === "1") {
      log.info("OCELOT_NEIGHBOUR_POLL=1: polling the neighbour table every 2 s");
      neighbours = new NeighbourPoll(log, onNeighbour);
    }
    if (!neighbours) {
      try {
        neighbours = new NeighbourWatch(log, onNeighbour);
      } catch (e) {
        log.warn(
          { error: (e as Error).message },
          "No rtnetlink neighbour notifications: polling the neighbour table every 2 s instead",
        );
        neighbours = new NeighbourPoll(log, onNeighbour);
      }
    }
    await neighbours.apply(ifaces);
  };
  const resolve = (c: BgpdConfig): ResolvedPeers => {
    try {
      return resolveInterfacePeers(c, (i) => neighbours?.table.linkLocal(i));
    } catch (e) {
      throw new CliError(`Invalid bgpd config: ${(e as Error).message}`);
    }
  };
  await follow(declared);
  const first = resolve(declared);
  const cfg = first.config;
  let waiting = first.waiting;
  for (const p of waiting)
    log.warn(
      { interface: p.interface },
      "Unnumbered peer: no link-local neighbour yet; its session starts when one appears",
    );
  const bmp = opts.bmpStation
    ? new BmpClient({
        station: opts.bmpStation,
        statsIntervalMs: bmpStatsMs,
        ...(opts.bmpAdjRibOut ? { adjRibOut: true } : {}),
        sysDescr: `Ocelot bgpd AS ${cfg.asn} router ID ${cfg.routerId}`,
        log,
      })
    : undefined;
  const dump = opts.mrtUpdates
    ? new UpdateDump({ dir: opts.mrtUpdates, rotateBytes: mrtRotateBytes, rotateMs: mrtRotateMs })
    : undefined;
  let fib: Fib | null;
  try {
    fib = await openFib(cfg, log);
  } catch (e) {
    neighbours?.close();
    throw new CliError(
      `Cannot open the kernel FIB (fib.enabled: false runs without it): ${(e as Error).message}`,
    );
  }
  const onSocket = await ttlHook(log);
  // Histograms and counters of log events are kept from the start when metrics are served.
  let families: () => MetricFamily[] = () => [];
  const prom = metricsAddr ? new PromMetrics(() => families()) : undefined;
  const speaker = new Speaker(cfg, {
    clock: realClock,
    log: prom ? prom.countingLog(log) : log,
    fib,
    ...(prom
      ? {
          onFibBatch: (sec: number) => prom.fibBatch.observe({ fib: "bgp" }, sec),
          onUpdateToKernel: (sec: number) => prom.updateToKernel.observe(sec),
        }
      : {}),
    bridge: makeWireBridge(),
    ...(onSocket ? { onSocket } : {}),
    ...(bmp ? { tap: bmp.monitor } : {}),
    ...(dump
      ? {
          onUpdateReceived: (peer: PeerConfig, msg: Uint8Array, as4: boolean) =>
            dump.write(
              {
                peerAs: peer.asn,
                localAs: cfg.asn,
                peerAddress: peer.address,
                localAddress: peer.sourceAddress ?? cfg.routerId,
              },
              msg,
              as4,
            ),
        }
      : {}),
  });
  let started = false;
  /** The speaker's status with the unnumbered peers still waiting for a neighbour. */
  const fullStatus = (): StatusSnapshot => {
    const s = speaker.status();
    if (waiting.length === 0) return s;
    return { ...s, peers: [...s.peers, ...waiting.map((p) => waitingPeerStatus(p, s.asn))] };
  };
  const view: SpeakerView = {
    status: fullStatus,
    get config() {
      return speaker.config;
    },
  };
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
  // A directly connected peer's link going down drops its session at once (no NOTIFICATION can
  // cross), its routes with it, and holds it down until the link is up again.
  const links = new SpeakerLinkWatch(log, (h) =>
    speaker.signal({ kind: "peerHold", by: "link", peer: h.peer, held: h.held, reason: h.reason }),
  );
  let health: Awaited<ReturnType<typeof serveBgpdHealth>>;
  try {
    families = () => bgpdFamilies(view, fib, bfd, bmp);
    health = await serveBgpdHealth(metricsAddr, view, () => started, prom);
  } catch (e) {
    neighbours?.close();
    await fib?.close();
    throw new CliError((e as Error).message);
  }
  await speaker.start();
  bmp?.start();
  links.apply(cfg);
  try {
    await bfd.apply(cfg);
  } catch (e) {
    bfd.close();
    links.close();
    neighbours?.close();
    await speaker.stop();
    await health?.close();
    await fib?.close();
    throw new CliError(`Cannot start BFD: ${(e as Error).message}`);
  }
  started = true;
  const statusView = {
    status: () => {
      const s = fullStatus();
      const b = bfd.status();
      return b ? { ...s, bfd: b } : s;
    },
    routes: () => speaker.routes(),
  };
  const statusExtra = {
    route: (args: unknown) => speaker.route(String((args as { prefix?: unknown })?.prefix ?? "")),
  };
  let statusServer: Awaited<ReturnType<typeof serveStatus>>;
  try {
    statusServer = await serveStatus(cfg.status.socket, statusView, statusExtra);
  } catch (e) {
    // As BFD above: everything started is stopped, and the reason is one line (no stack).
    bfd.close();
    links.close();
    neighbours?.close();
    await bmp?.stop();
    await speaker.stop();
    await health?.close();
    await fib?.close();
    throw new CliError(`Cannot serve the status socket: ${(e as Error).message}`);
  }
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
  /** Applies a resolved config: the speaker by diff (a new neighbour address: a new session). */
  /**
   * BFD first (its sockets may fail to bind a source address), then the speaker (its listener
   * may fail to bind), then the link watch; a failure puts back what was applied before it, so a
   * reload is applied whole or not at all.
   */
  const applyResolved = async (r: ResolvedPeers) => {
    const before = speaker.config;
    try {
      await bfd.apply(r.config);
      await speaker.reconfigure(r.config);
    } catch (e) {
      await bfd
        .apply(before)
        .catch((err: Error) =>
          log.error({ error: err.message }, "BFD could not be put back to the running config"),
        );
      throw e;
    }
    waiting = r.waiting;
    links.apply(r.config);
  };
  // An unnumbered peer's neighbour appeared or changed: re-point its session (a reset).
  function followNeighbours(): void {
    reloading = reloading.then(async () => {
      try {
        const r = resolve(declared);
        const addrs = (c: BgpdConfig) => c.peers.map((p) => p.address).join(" ");
        // Nothing moved (e.g. the neighbour seen while the speaker started was already used).
        if (addrs(r.config) === addrs(speaker.config) && r.waiting.length === waiting.length)
          return;
        await applyResolved(r);
      } catch (e) {
        log.error(
          { error: (e as Error).message },
          "Following an unnumbered peer's neighbour failed",
        );
      }
    });
  }
  following = true;
  // A neighbour that appeared while the speaker was starting.
  if (unnumberedInterfaces(declared).some((i) => neighbours?.table.linkLocal(i) !== undefined))
    followNeighbours();
  process.on("SIGHUP", () => {
    reloading = reloading.then(async () => {
      try {
        const next = loadConfig(opts.config);
        const socketChanged = next.status.socket !== speaker.config.status.socket;
        await follow(next);
        const r = resolve(next);
        // The new status socket before anything else: a path that cannot be served refuses
        // the whole reload, and the old socket serves until the new one does.
        const nextStatus = socketChanged
          ? await serveStatus(next.status.socket, statusView, statusExtra)
          : undefined;
        try {
          await applyResolved(r);
        } catch (e) {
          await nextStatus?.close();
          throw e;
        }
        declared = next;
        if (nextStatus) {
          await statusServer.close();
          statusServer = nextStatus;
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
        await bmp?.stop();
        neighbours?.close();
        bfd.close();
        links.close();
        await statusServer.close();
        await health?.close();
        prom?.close();
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

/** `ocelot routes PREFIX`: the RIB's paths and the kernel's verdict (exit 1 when they differ). */
async function showRoute(socket: string, prefix: string, json: boolean, protocol: number) {
  let r: RouteExplanation | null;
  try {
    r = await queryStatus<RouteExplanation | null>(socket, "route", 5000, { prefix });
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  const shown = r?.prefix ?? prefix;
  const ip = spawnSync(
    "ip",
    ["-j", shown.includes(":") ? "-6" : "-4", "route", "show", "table", "all", "exact", shown],
    { encoding: "utf8", timeout: 30_000 },
  );
  const kernel =
    ip.status === 0
      ? checkKernelRoute(
          r?.nexthops ?? [],
          JSON.parse(ip.stdout || "[]") as IpJsonRoute[],
          protocol,
          r?.fibError,
        )
      : undefined;
  const ok = kernel !== undefined && (kernel.state === "installed" || kernel.state === "absent");
  if (!ok) process.exitCode = 1;
  if (json) {
    const out = {
      prefix: shown,
      route: r,
      kernel: kernel ?? { error: (ip.stderr || ip.error?.message || "ip failed").trim() },
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  process.stdout.write(formatRoute(shown, r, kernel, ip.stderr));
}

function formatRoute(
  prefix: string,
  r: RouteExplanation | null,
  k: KernelCheck | undefined,
  ipError: string,
): string {
  const lines: string[] = [];
  if (!r) lines.push(`${prefix}: not in the RIB (no path from any peer, not originated)`);
  else {
    lines.push(`${r.prefix}: ${r.paths.length} path(s), best by ${r.bestReason}`);
    for (const p of r.paths) {
      const mark = p.best ? "*" : p.multipath ? "=" : p.accepted ? " " : "x";
      const attrs = [
        `via ${p.nextHop}`,
        `AS path ${p.asPath || "(empty)"}`,
        `origin ${p.origin}`,
        `local pref ${p.localPref}`,
        ...(p.med !== null ? [`MED ${p.med}`] : []),
        ...(p.communities.length ? [`communities ${p.communities.join(" ")}`] : []),
        ...(p.largeCommunities.length ? [`large ${p.largeCommunities.join(" ")}`] : []),
        ...(p.stale ? ["stale"] : []),
      ];
      lines.push(
        `  ${mark} ${p.peer} (${p.ibgp ? "iBGP" : p.peer === "local" ? "local" : "eBGP"})  ${attrs.join("  ")}`,
      );
      if (!p.accepted)
        lines.push(
          `      rejected: ${p.rejectReason ?? "?"}${p.rejectDetail ? ` (${p.rejectDetail})` : ""}`,
        );
    }
  }
  if (!k) lines.push(`Kernel: not read (${ipError.trim() || "ip failed"})`);
  else {
    lines.push(`Kernel: ${kernelCheckText(k)}`);
    for (const o of k.others) lines.push(`  also in the kernel: ${o}`);
  }
  return `${lines.join("\n")}\n`;
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
    .option(
      "--bmp-station <host:port>",
      "export to a BMP station (RFC 7854): Peer Up/Down, Route Monitoring, statistics",
    )
    .option("--bmp-stats-interval <seconds>", "BMP Statistics Report interval (0: none)", "60")
    .option("--bmp-adj-rib-out", "also mirror UPDATEs sent (RFC 8671 Adj-RIB-Out)", false)
    .option(
      "--mrt-updates <dir>",
      "append every UPDATE received to MRT BGP4MP_MESSAGE_AS4 files there (RFC 6396)",
    )
    .option("--mrt-rotate-size <bytes>", "start a new MRT file past this size", "67108864")
    .option("--mrt-rotate-interval <seconds>", "start a new MRT file this often (0: never)", "900")
    .action(async (o: BgpdOptions) => runBgpd(o));

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
    .command("routes [prefix]")
    .description(
      "show the Loc-RIB of the local BGP speaker with the best-path reason; with PREFIX every path of it and whether the kernel holds it as expected",
    )
    .option("--json", "print JSON", false)
    .option("--socket <path>", "status socket (default: this netns's daemon's)")
    .option("--mrt <file>", "write the Loc-RIB as an MRT TABLE_DUMP_V2 file (RFC 6396)")
    .option("--protocol <n>", "the speaker's kernel route protocol (with PREFIX)", "201")
    .action(
      async (
        prefix: string | undefined,
        o: { json: boolean; socket?: string; mrt?: string; protocol: string },
      ) => {
        const socket = o.socket ?? findStatusSocket();
        if (prefix !== undefined) {
          await showRoute(socket, prefix, o.json, intFlag("--protocol", o.protocol, 0));
          return;
        }
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
      },
    );
}
