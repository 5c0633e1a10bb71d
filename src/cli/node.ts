// `ocelot node run`: the per-node daemon (src/node/daemon.ts) as a process: option parsing,
// pino logs, SIGTERM/SIGINT stop it cleanly (watches, speaker, FIBs, datastore), exit codes.
// Owns: process wiring only. Not: what the daemon does.
import { spawnSync } from "node:child_process";
import { isIPv6 } from "node:net";
import type { Command } from "commander";
import { parseAsNumber } from "../api/fields.js";
import { queryStatus, type RoutesSnapshot, type StatusSnapshot } from "../bgp/status.js";
import {
  addDatastoreOptions,
  type DatastoreCliOptions,
  openDatastoreFromCli,
} from "../datastore/open.js";
import type { Datastore } from "../datastore/types.js";
import { RTPROT_OCELOT_BGP } from "../fib/types.js";
import {
  addAgentMetrics,
  addBgpMetrics,
  addFibMetrics,
  type FibCounters,
  kernelFibCounters,
} from "../lib/daemon_metrics.js";
import { type ListenAddress, parseListenAddress, serveHealth } from "../lib/health_server.js";
import { parseLevelArgs, SubsystemLogs, stdoutSink } from "../lib/log_levels.js";
import { type MetricFamily, MetricsRegistry } from "../lib/metrics.js";
import { PromMetrics } from "../lib/prom.js";
import { defaultStatusSocket, findStatusSocket } from "../lib/status_socket_path.js";
import { DEFAULT_SECRETS_DIR } from "../node/bgp_state.js";
import { NodeDaemon } from "../node/daemon.js";
import { formatNodeStatus, type NodeInfo, nodeStatusReport } from "../node/node_status.js";
import { CliError } from "./main.js";

const LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"];
/** The node daemon's log subsystems: its loop and agent, and its BGP speaker. */
const SUBSYSTEMS = ["node", "bgp"] as const;

type RunOpts = DatastoreCliOptions & {
  nodename: string;
  ip?: string;
  ip6?: string;
  as?: string;
  netns?: string;
  logLevel: string;
  statusSocket: string;
  secretsDir: string;
  resyncInterval: string;
  bgp: boolean;
  clusterCidr?: string[];
  metricsAddress?: string;
  nodeStatusInterval: string;
  mrtUpdates?: string;
  mrtRotateSize: string;
  mrtRotateInterval: string;
};

/**
 * The node daemon's snapshot families: its agent loop, its speaker (when it runs) and both FIBs
 * (the process_* ones come from prom-client's default metrics).
 */
function nodeMetrics(daemon: NodeDaemon): MetricFamily[] {
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
  return reg.families;
}

function seconds(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m) throw new CliError(`${flag}: "${text}" is not a duration such as 60s, 500ms or 5m`, 2);
  const n = Number(m[1]);
  const ms = m[2] === "ms" ? n : m[2] === "m" ? n * 60_000 : n * 1000;
  if (ms < 100) throw new CliError(`${flag}: "${text}" is shorter than 100ms`, 2);
  return ms;
}

function isIpv6WithLength(text: string): boolean {
  const [addr, len, ...rest] = text.split("/");
  if (rest.length > 0 || !addr || !isIPv6(addr)) return false;
  return len === undefined || (/^\d{1,3}$/.test(len) && Number(len) <= 128);
}

async function runNode(o: RunOpts): Promise<void> {
  if (!LEVELS.includes(o.logLevel))
    throw new CliError(`--log-level: "${o.logLevel}" is not one of ${LEVELS.join(", ")}`, 2);
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(o.nodename))
    throw new CliError(`--nodename: "${o.nodename}" is not a node name (DNS subdomain)`, 2);
  let asNumber: number | undefined;
  if (o.as !== undefined) {
    asNumber = parseAsNumber(o.as);
    if (asNumber === undefined || asNumber === 23456)
      throw new CliError(`--as: "${o.as}" is not an AS number (1..4294967295, not 23456)`, 2);
  }
  if (o.ip !== undefined && !/^\d{1,3}(\.\d{1,3}){3}(\/\d{1,2})?$/.test(o.ip))
    throw new CliError(`--ip: "${o.ip}" is not an IPv4 address with its prefix length`, 2);
  if (o.ip6 !== undefined && !isIpv6WithLength(o.ip6))
    throw new CliError(`--ip6: "${o.ip6}" is not an IPv6 address with its prefix length`, 2);
  const resyncIntervalMs = seconds(o.resyncInterval, "--resync-interval");
  const mrtRotateBytes = Number(o.mrtRotateSize);
  if (!Number.isInteger(mrtRotateBytes) || mrtRotateBytes < 4096)
    throw new CliError(
      `--mrt-rotate-size: "${o.mrtRotateSize}" is not a byte count of at least 4096`,
      2,
    );
  const nodeStatusPeriodMs =
    o.nodeStatusInterval === "0" ? 0 : seconds(o.nodeStatusInterval, "--node-status-interval");
  let metricsAddr: ListenAddress | undefined;
  try {
    metricsAddr = o.metricsAddress ? parseListenAddress(o.metricsAddress) : undefined;
  } catch (err) {
    throw new CliError((err as Error).message, 2);
  }
  const { pino } = await import("pino");
  // Lines go straight to stdout; a closed stdout (EPIPE) drops them, never the daemon.
  const out = stdoutSink();
  const root = pino({ level: o.logLevel, base: { daemon: "node", node: o.nodename } }, out.sink);
  const logs = new SubsystemLogs(root, SUBSYSTEMS);
  const log = logs.loggers.node as typeof root;
  const bgpLog = logs.loggers.bgp as typeof root;
  // Metrics are kept from the start (histograms, counters of log events) when served.
  let daemonRef: NodeDaemon | undefined;
  const prom = metricsAddr
    ? new PromMetrics(() => (daemonRef ? nodeMetrics(daemonRef) : []))
    : undefined;
  let store: Datastore;
  try {
    store = await openDatastoreFromCli(o);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  const daemon = new NodeDaemon(store, {
    nodename: o.nodename,
    ipv4Address: o.ip,
    ipv6Address: o.ip6,
    asNumber,
    netns: o.netns,
    bgp: o.bgp,
    statusSocket: o.statusSocket,
    secretsDir: o.secretsDir,
    resyncIntervalMs,
    nodeStatusPeriodMs,
    ...(o.mrtUpdates
      ? {
          mrtUpdates: {
            dir: o.mrtUpdates,
            rotateBytes: mrtRotateBytes,
            rotateMs:
              o.mrtRotateInterval === "0"
                ? 0
                : seconds(o.mrtRotateInterval, "--mrt-rotate-interval"),
          },
        }
      : {}),
    agent: { clusterCidrs: o.clusterCidr ?? [] },
    ...(prom
      ? {
          observe: {
            convergence: (area, s) => prom.convergence.observe({ area }, s),
            iptables: (s) => prom.iptablesApply.observe(s),
            fibBatch: (fib, s) => prom.fibBatch.observe({ fib }, s),
          },
        }
      : {}),
    log,
    bgpLog: prom ? prom.countingLog(bgpLog) : bgpLog,
  });
  daemonRef = daemon;
  daemon.statusCommands["log-level"] = (args) => {
    const wanted = (args as { levels?: string[] } | undefined)?.levels ?? [];
    if (wanted.length === 0) return { levels: logs.levels() };
    return { levels: logs.set(parseLevelArgs(wanted, SUBSYSTEMS), "ocelot log-level") };
  };
  process.on("SIGUSR1", () => logs.step(1, "SIGUSR1"));
  process.on("SIGUSR2", () => logs.step(-1, "SIGUSR2"));
  // Served from before the start: /readyz answers 503 until the first convergence.
  let health: Awaited<ReturnType<typeof serveHealth>> | undefined;
  try {
    if (metricsAddr)
      health = await serveHealth(metricsAddr, {
        metrics: () => (prom as PromMetrics).render(),
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
    throw new CliError(`Node ${o.nodename} could not start: ${(err as Error).message}`);
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
        prom?.close();
        await store.close().catch(() => {});
        log.info({}, "Stopped");
        resolve();
        setImmediate(() => process.exit(process.exitCode ?? 0));
      })();
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });
}

/** Prefixes in this namespace's kernel under protocol 201 (both families); undefined if unread. */
function kernelPrefixes(protocol: number): Set<string> | undefined {
  const out = new Set<string>();
  for (const fam of ["-4", "-6"]) {
    const r = spawnSync("ip", ["-j", fam, "route", "show", "proto", String(protocol)], {
      encoding: "utf8",
      timeout: 30_000,
    });
    if (r.status !== 0) return undefined;
    for (const route of JSON.parse(r.stdout || "[]") as { dst: string }[]) {
      if (route.dst === "default") out.add(fam === "-4" ? "0.0.0.0/0" : "::/0");
      else out.add(route.dst.includes("/") ? route.dst : `${route.dst}/${fam === "-4" ? 32 : 128}`);
    }
  }
  return out;
}

async function nodeStatus(o: { json: boolean; socket?: string }): Promise<void> {
  const socket = o.socket ?? findStatusSocket();
  let status: StatusSnapshot;
  let routes: RoutesSnapshot;
  try {
    status = await queryStatus<StatusSnapshot>(socket, "status");
    routes = await queryStatus<RoutesSnapshot>(socket, "routes");
  } catch (err) {
    throw new CliError(
      `No Ocelot node daemon answers here (${(err as Error).message}); run inside the node's network namespace or pass --socket`,
    );
  }
  // A bgpd (not a node daemon) does not know the "node" command: peer types stay unknown.
  const info = await queryStatus<NodeInfo>(socket, "node").catch(() => undefined);
  const now = Date.now();
  const report = nodeStatusReport(status, routes, info, kernelPrefixes(RTPROT_OCELOT_BGP), now);
  process.stdout.write(
    o.json ? `${JSON.stringify(report, null, 2)}\n` : formatNodeStatus(report, now),
  );
}

export function register(program: Command): void {
  program
    .command("log-level")
    .description(
      `show or change the local node daemon's log level per subsystem (${SUBSYSTEMS.join(", ")}, all), e.g. bgp=debug`,
    )
    .argument("[subsystem=level...]", "levels to set; none: show them")
    .option("--socket <path>", "status socket (default: this netns's daemon's)")
    .action(async (levels: string[], o: { socket?: string }) => {
      try {
        parseLevelArgs(levels, SUBSYSTEMS);
      } catch (err) {
        throw new CliError((err as Error).message, 2);
      }
      const socket = o.socket ?? findStatusSocket();
      const r = await queryStatus<{ levels: Record<string, string> }>(socket, "log-level", 5000, {
        levels,
      }).catch((err: Error) => {
        throw new CliError(err.message);
      });
      for (const [s, l] of Object.entries(r.levels)) console.log(`${s}=${l}`);
    });
  const node = program.command("node").description("the per-node daemon");
  node
    .command("status")
    .description(
      "this node's BGP peers as calicoctl node status shows them, with prefix counters per family",
    )
    .option("--json", "print JSON (config/node-status.schema.json)", false)
    .option("--socket <path>", "status socket (default: this netns's daemon's)")
    .action(async (o: { json: boolean; socket?: string }) => nodeStatus(o));
  const run = node
    .command("run")
    .description(
      "register this node, program its pods' data plane and run its BGP speaker, from the datastore",
    )
    .requiredOption("--nodename <name>", "this node's name (its Node resource)")
    .option("--ip <address/len>", "this node's IPv4 address for BGP (spec.bgp.ipv4Address)")
    .option("--ip6 <address/len>", "this node's IPv6 address for BGP (spec.bgp.ipv6Address)")
    .option("--as <number>", "this node's AS number (spec.bgp.asNumber)")
    .option("--netns <name>", "program this network namespace (agent and FIB; tests)")
    .option(
      "--status-socket <path>",
      "the status socket (default: /run/ocelot/netns/<netns>/bgpd.sock in a named netns, else /run/ocelot/bgpd.sock)",
      defaultStatusSocket(),
    )
    .option(
      "--secrets-dir <dir>",
      "BGP passwords: a secretKeyRef {name, key} is the file <dir>/<name>/<key>",
      DEFAULT_SECRETS_DIR,
    )
    .option("--resync-interval <duration>", "full resync period", "60s")
    .option(
      "--node-status-interval <duration>",
      "write this node's CalicoNodeStatus this often and on change (a CalicoNodeStatus for the node with updatePeriodSeconds overrides it; 0: never)",
      "10s",
    )
    .option("--cluster-cidr <cidr...>", "cluster network CIDRs never masqueraded to")
    .option("--no-bgp", "do not run the BGP speaker")
    .option("--mrt-updates <dir>", "append every UPDATE received to MRT BGP4MP files in dir")
    .option("--mrt-rotate-size <bytes>", "start a new MRT file after this many bytes", "67108864")
    .option("--mrt-rotate-interval <duration>", "start a new MRT file this often (0: never)", "15m")
    .option(
      "--metrics-address <host:port>",
      "serve /metrics, /livez and /readyz over HTTP there (default: off)",
    )
    .option("--log-level <level>", `log level (${LEVELS.join(", ")})`, "info");
  addDatastoreOptions(run).action(async (o: RunOpts) => runNode(o));
}
