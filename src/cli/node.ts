// `ocelot node run`: the per-node daemon (src/node/daemon.ts) as a process: flags (their
// table, with the environment variables and config file keys, is src/node/config.ts), pino
// logs, the start-up as calico-node's (wait for the datastore, first pools, node addresses:
// src/node/startup.ts), SIGTERM/SIGINT stop it cleanly (watches, speaker, FIBs, datastore),
// exit codes. Owns: process wiring only. Not: what the daemon does.
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { Command } from "commander";
import { addBgpMetrics } from "../bgp/metrics.js";
import {
  addDatastoreOptions,
  DATASTORE_OPTION_NAMES,
  type DatastoreCliOptions,
  openDatastoreFromCli,
} from "../datastore/open.js";
import type { Datastore } from "../datastore/types.js";
import {
  addAgentMetrics,
  addFibMetrics,
  addProcessMetrics,
  type FibCounters,
  kernelFibCounters,
} from "../lib/daemon_metrics.js";
import { type ListenAddress, parseListenAddress, serveHealth } from "../lib/health_server.js";
import { MetricsRegistry } from "../lib/metrics.js";
import { detectAddress } from "../node/autodetect_kernel.js";
import { DEFAULT_SECRETS_DIR } from "../node/bgp_state.js";
import {
  NODE_SETTINGS,
  NodeConfigError,
  type NodeSettings,
  parseNodeConfigFile,
  resolveNodeSettings,
} from "../node/config.js";
import { DEFAULT_STATUS_SOCKET, NodeDaemon } from "../node/daemon.js";
import {
  chooseNodeAddress,
  ensureDefaultPools,
  openDatastoreWaiting,
  storedNode,
} from "../node/startup.js";
import { CliError } from "./main.js";

/** The flags given on the command line (not commander's defaults), by attribute. */
function givenFlags(cmd: Command): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const opt of cmd.options) {
    const name = opt.attributeName();
    if (cmd.getOptionValueSource(name) === "cli") out[name] = cmd.getOptionValue(name);
  }
  // The older --no-bgp is --networking-backend none.
  if (out.bgp === false && out.networkingBackend === undefined) out.networkingBackend = "none";
  return out;
}

/** /metrics of the node daemon: its agent loop, its speaker (when it runs) and both FIBs. */
function nodeMetrics(daemon: NodeDaemon, startedAtMs: number): string {
  const reg = new MetricsRegistry();
  const bgp = daemon.bgpStatus();
  const peers = daemon.bgpConfig?.peers ?? [];
  const families = new Map(peers.map((p) => [p.address, p.families ?? []]));
  addAgentMetrics(reg, daemon.stats);
  addBgpMetrics(reg, bgp?.speaker, { configuredFamilies: (a) => families.get(a) ?? [] });
  const fibs: [string, FibCounters][] = [];
  if (bgp) {
    const s = bgp.speaker.fib;
    fibs.push(["bgp", { ...s, resyncs: bgp.fib.resyncs, overflows: bgp.fib.overflows }]);
  }
  const agent = daemon.agentFibStatus();
  if (agent) fibs.push(["agent", kernelFibCounters(agent)]);
  addFibMetrics(reg, fibs);
  addProcessMetrics(reg, { rssBytes: process.memoryUsage.rss(), startedAtMs });
  return reg.render();
}

function readConfigFile(path: string | undefined): Record<string, unknown> {
  if (path === undefined) return {};
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new CliError(
      `--config: cannot read "${path}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      2,
    );
  }
  try {
    return parseNodeConfigFile(text, path);
  } catch (err) {
    throw new CliError((err as Error).message, 2);
  }
}

/** The settings from flags, environment and config file; an error names the bad one (exit 2). */
function settingsOf(cmd: Command): { settings: NodeSettings; sources: Record<string, string> } {
  const flags = givenFlags(cmd);
  const configPath =
    (flags.config as string | undefined) ?? (process.env.OCELOT_NODE_CONFIG || undefined);
  try {
    return resolveNodeSettings({
      flags,
      env: process.env,
      file: readConfigFile(configPath),
      hostname,
    });
  } catch (err) {
    if (err instanceof NodeConfigError) throw new CliError(err.message, 2);
    throw err;
  }
}

async function runNode(cmd: Command): Promise<void> {
  const { settings: s, sources } = settingsOf(cmd);
  const o = cmd.opts() as DatastoreCliOptions;
  let metricsAddr: ListenAddress | undefined;
  try {
    metricsAddr = s.metricsAddress ? parseListenAddress(s.metricsAddress) : undefined;
  } catch (err) {
    throw new CliError(
      `${sources.metricsAddress ?? "--metrics-address"}: ${(err as Error).message}`,
      2,
    );
  }
  const { pino } = await import("pino");
  const log = pino({ level: s.logLevel, base: { daemon: "node", node: s.nodename } });
  log.info({ sources }, "Configuration read");

  // A signal while waiting for the datastore ends the wait; later ones stop the daemon.
  let stopRequested: string | undefined;
  const early = (signal: string) => {
    stopRequested = signal;
  };
  process.on("SIGTERM", early);
  process.on("SIGINT", early);

  const open = () =>
    openDatastoreFromCli({
      ...o,
      datastore: s.datastore,
      etcdCa: s.etcdCa,
      etcdCert: s.etcdCert,
      etcdKey: s.etcdKey,
    });
  let store: Datastore | undefined;
  try {
    store = await openDatastoreWaiting(open, log, { stopped: () => stopRequested !== undefined });
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  if (!store) {
    log.info({ signal: stopRequested }, "Stopped while waiting for the datastore");
    return;
  }
  let addressSources: { ipv4?: string; ipv6?: string };
  let ipv4: string | null | undefined;
  let ipv6: string | null | undefined;
  try {
    if (!s.noDefaultPools) await ensureDefaultPools(store, { v4: s.ipv4Pool, v6: s.ipv6Pool }, log);
    const stored = (await storedNode(store, s.nodename))?.spec.bgp;
    const v4 = await chooseNodeAddress(
      4,
      s.ip,
      stored?.ipv4Address,
      () =>
        detectAddress(
          4,
          s.ipAutodetectionMethod,
          sources.ipAutodetectionMethod ?? "IP_AUTODETECTION_METHOD",
          s.netns,
        ),
      log,
    );
    const v6 = await chooseNodeAddress(
      6,
      s.ip6,
      stored?.ipv6Address,
      () =>
        detectAddress(
          6,
          s.ip6AutodetectionMethod,
          sources.ip6AutodetectionMethod ?? "IP6_AUTODETECTION_METHOD",
          s.netns,
        ),
      log,
    );
    ipv4 = v4.cidr;
    ipv6 = v6.cidr;
    addressSources = { ipv4: v4.how, ipv6: v6.how };
    log.info(
      {
        ipv4: v4.cidr === undefined ? (stored?.ipv4Address ?? null) : v4.cidr,
        ipv4Source: v4.how,
        ...(v4.iface ? { ipv4Interface: v4.iface } : {}),
        ipv6: v6.cidr === undefined ? (stored?.ipv6Address ?? null) : v6.cidr,
        ipv6Source: v6.how,
        ...(v6.iface ? { ipv6Interface: v6.iface } : {}),
      },
      "Node addresses chosen",
    );
  } catch (err) {
    await store.close().catch(() => {});
    throw new CliError(`Node ${s.nodename} could not start: ${(err as Error).message}`);
  }
  const daemon = new NodeDaemon(store, {
    nodename: s.nodename,
    ipv4Address: ipv4,
    ipv6Address: ipv6,
    addressSources,
    asNumber: s.as,
    netns: s.netns,
    bgp: s.networkingBackend === "bgp",
    statusSocket: s.statusSocket ?? DEFAULT_STATUS_SOCKET,
    secretsDir: s.secretsDir ?? DEFAULT_SECRETS_DIR,
    resyncIntervalMs: s.resyncIntervalMs,
    agent: { clusterCidrs: s.clusterCidr },
    log,
  });
  const resyncIntervalMs = s.resyncIntervalMs;
  // Served from before the start: /readyz answers 503 until the first convergence.
  const startedAt = Date.now();
  let health: Awaited<ReturnType<typeof serveHealth>> | undefined;
  try {
    if (metricsAddr)
      health = await serveHealth(metricsAddr, {
        metrics: () => nodeMetrics(daemon, startedAt),
        ready: () => daemon.readiness(),
      });
  } catch (err) {
    await store.close();
    throw new CliError((err as Error).message);
  }
  try {
    await daemon.start();
  } catch (err) {
    await daemon.stop().catch(() => {});
    await health?.close();
    await store.close();
    throw new CliError(`Node ${s.nodename} could not start: ${(err as Error).message}`);
  }
  log.info(
    { datastore: store.url, resyncIntervalMs, ...(health ? { metrics: health.address } : {}) },
    "Node daemon running",
  );
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, "Stopping");
      const hard = setTimeout(() => process.exit(1), 10_000);
      hard.unref();
      void (async () => {
        await daemon.stop().catch((e: Error) => log.error({ error: e.message }, "Stop failed"));
        await health?.close();
        await store.close().catch(() => {});
        log.info({}, "Stopped");
        resolve();
        setImmediate(() => process.exit(process.exitCode ?? 0));
      })();
    };
    process.off("SIGTERM", early);
    process.off("SIGINT", early);
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
    if (stopRequested) stop(stopRequested);
  });
}

export function register(program: Command): void {
  const node = program.command("node").description("the per-node daemon");
  const run = node
    .command("run")
    .description(
      "register this node, program its pods' data plane and run its BGP speaker, from the datastore; each setting from its flag, else its environment variable, else --config, else its default (README: Configuring the node)",
    )
    .option(
      "--config <file>",
      "settings file (YAML, keys as the flags in camelCase; $OCELOT_NODE_CONFIG)",
    );
  const datastoreFlags = new Set<string>(DATASTORE_OPTION_NAMES);
  for (const d of NODE_SETTINGS) {
    if (d.flag === "" || datastoreFlags.has(d.attr)) continue;
    const vars = d.envs.length > 0 ? ` ($${d.envs.join(", $")})` : "";
    run.option(d.flag, `${d.help}${vars}`);
  }
  run.option("--no-bgp", "do not run the BGP speaker (= --networking-backend none)");
  addDatastoreOptions(run).action(async (_o: unknown, cmd: Command) => runNode(cmd));
}
