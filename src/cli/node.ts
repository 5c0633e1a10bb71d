// `ocelot node run`: the per-node daemon (src/node/daemon.ts) as a process: flags (their
// table, with the environment variables and config file keys, is src/node/config.ts), pino
// logs, the start-up as calico-node's (wait for the datastore, first pools, node addresses:
// src/node/startup.ts), SIGTERM/SIGINT stop it cleanly (watches, speaker, FIBs, datastore),
// exit codes. Owns: process wiring only. Not: what the daemon does.

import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { Command } from "commander";
import { addBmpMetrics } from "../bgp/bmp/metrics.js";
import { addBgpMetrics } from "../bgp/metrics.js";
import { queryStatus, type RoutesSnapshot, type StatusSnapshot } from "../bgp/status.js";
import {
  addDatastoreOptions,
  DATASTORE_OPTION_NAMES,
  type DatastoreCliOptions,
  openDatastoreFromCli,
} from "../datastore/open.js";
import type { Datastore } from "../datastore/types.js";
import { killRunningCommands } from "../felix/apply.js";
import { felixEnvironment } from "../felix/felix_config.js";
import { RTPROT_OCELOT_BGP } from "../fib/types.js";
import { StopDeadline } from "../lib/bounded_stop.js";
import {
  addAgentMetrics,
  addFibMetrics,
  addIpamMetrics,
  type FibCounters,
  kernelFibCounters,
} from "../lib/daemon_metrics.js";
import { type ListenAddress, parseListenAddress, serveHealth } from "../lib/health_server.js";
import { parseLevelArgs, SubsystemLogs, stdoutSink } from "../lib/log_levels.js";
import { type MetricFamily, MetricsRegistry } from "../lib/metrics.js";
import { PromMetrics } from "../lib/prom.js";
import { defaultStatusSocket, findStatusSocket } from "../lib/status_socket_path.js";
import { detectAddress } from "../node/autodetect_kernel.js";
import { DEFAULT_SECRETS_DIR } from "../node/bgp_state.js";
import { cniSocketBeside, serveCni } from "../node/cni_server.js";
import {
  NODE_SETTINGS,
  NodeConfigError,
  type NodeSettings,
  parseNodeConfigFile,
  resolveNodeSettings,
} from "../node/config.js";
import { DAEMON_STOP_MS, NodeDaemon } from "../node/daemon.js";
import { formatNodeStatus, type NodeInfo, nodeStatusReport } from "../node/node_status.js";
import {
  chooseNodeAddress,
  ensureDefaultPools,
  openDatastoreWaiting,
  storedNode,
} from "../node/startup.js";
import { CliError } from "./main.js";
import { fixMallocThresholds } from "./malloc_thresholds.js";

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

/** How long the daemon waits for the embedded store's write lock held by another process (ms). */
const NODE_SQLITE_BUSY_MS = 2000;
/**
 * When the process exits whatever runs, past the stop's budget for its steps (the daemon's
 * DAEMON_STOP_MS, src/lib/bounded_stop.ts): within the 10 s the test harness gives, the
 * kubelet's default 30 s grace and systemd's 90 s.
 */
const HARD_EXIT_MS = 8000;
/** How long kubernetes-internal-ip waits for the API server's answer about this node. */
const KUBE_NODE_TIMEOUT_MS = 30_000;

/** The node daemon's log subsystems: its loop and agent, and its BGP speaker. */
const SUBSYSTEMS = ["node", "bgp"] as const;

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
  addIpamMetrics(reg, daemon.ipam.counters);
  addBgpMetrics(reg, bgp?.speaker, { configuredFamilies: (a) => families.get(a) ?? [] });
  const fibs: [string, FibCounters][] = [];
  if (bgp) {
    const s = bgp.speaker.fib;
    fibs.push([
      "bgp",
      {
        ...s,
        resyncs: bgp.fib.resyncs,
        overflows: bgp.fib.overflows,
        restored: bgp.fib.restored,
        swept: bgp.fib.swept,
        nexthopsSwept: bgp.fib.nexthopsSwept,
        nexthopsDeleted: bgp.fib.nexthopsDeleted,
        errorsByErrno: bgp.fib.errorsByErrno,
      },
    ]);
  }
  const agent = daemon.agentFibStatus();
  if (agent) fibs.push(["agent", kernelFibCounters(agent)]);
  addFibMetrics(reg, fibs);
  const bmp = daemon.bmpClient;
  if (bmp) addBmpMetrics(reg, bmp);
  return reg.families;
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
  // As bgpd: glibc's malloc thresholds fixed (OCELOT_MALLOC_THRESHOLDS=default: glibc's own).
  fixMallocThresholds(process.env.OCELOT_MALLOC_THRESHOLDS);
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
  // Lines go straight to stdout; a closed stdout (EPIPE) drops them, never the daemon.
  const out = stdoutSink();
  const root = pino({ level: s.logLevel, base: { daemon: "node", node: s.nodename } }, out.sink);
  const logs = new SubsystemLogs(root, SUBSYSTEMS);
  const log = logs.loggers.node as typeof root;
  const bgpLog = logs.loggers.bgp as typeof root;
  // Metrics are kept from the start (histograms, counters of log events) when served.
  let daemonRef: NodeDaemon | undefined;
  const prom = metricsAddr
    ? new PromMetrics(() => (daemonRef ? nodeMetrics(daemonRef) : []))
    : undefined;
  // SIGTERM/SIGINT: one listener each for the process's whole life. (Node drops a signal that
  // arrived since the event loop last polled when the last listener is removed: the listeners
  // swapped once the daemon ran lost a SIGTERM sent as its start ended, and it never stopped.)
  // Before the daemon exists a signal ends the wait for the datastore or the start-up; after, it
  // starts the bounded stop (onStop), also in the middle of the daemon's start. Installed before
  // the first log line: one who stops the daemon on seeing it must find the listener in place.
  let stopRequested: string | undefined;
  let onStop: ((signal: string) => void) | undefined;
  const signalled = (signal: string) => {
    if (stopRequested !== undefined) return;
    stopRequested = signal;
    onStop?.(signal);
  };
  process.on("SIGTERM", () => signalled("SIGTERM"));
  process.on("SIGINT", () => signalled("SIGINT"));
  log.info({ sources }, "Configuration read");

  const open = () =>
    openDatastoreFromCli(
      {
        ...o,
        datastore: s.datastore,
        etcdCa: s.etcdCa,
        etcdCert: s.etcdCert,
        etcdKey: s.etcdKey,
      },
      // The embedded store waits for another process's write lock synchronously, holding up
      // the event loop (keepalives, BFD, /livez): the daemon's own writes are retried anyway,
      // so it waits 2 s, not the 10 s the CNI plugins wait.
      { sqlite: { busyTimeoutMs: NODE_SQLITE_BUSY_MS } },
    );
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
    // kubernetes-internal-ip: the Kubernetes Node of this node's name, read with the kubeconfig.
    const kubeconfig = s.kubeconfig;
    const nodeInternalIPs = kubeconfig
      ? async () =>
          (await import("../k8s/pod_reader.js")).readNodeInternalIPs(
            kubeconfig,
            s.nodename,
            KUBE_NODE_TIMEOUT_MS,
          )
      : undefined;
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
          nodeInternalIPs,
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
          nodeInternalIPs,
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
  if (stopRequested !== undefined) {
    log.info({ signal: stopRequested }, "Stopped before the daemon started");
    await store.close().catch(() => {});
    return;
  }
  const daemon = new NodeDaemon(store, {
    nodename: s.nodename,
    ipv4Address: ipv4,
    ipv6Address: ipv6,
    addressSources,
    asNumber: s.as,
    netns: s.netns,
    bgp: s.networkingBackend === "bgp",
    mtuFile: s.mtuFile,
    statusSocket: s.statusSocket ?? defaultStatusSocket(),
    secretsDir: s.secretsDir ?? DEFAULT_SECRETS_DIR,
    ...(s.advertiseClusterIps ? { advertiseClusterIps: s.advertiseClusterIps } : {}),
    ...(s.routerId ? { routerId: s.routerId } : {}),
    ...(s.bgpCheckLink ? {} : { bgpCheckLink: false }),
    ...(s.policyDispatch === "set" ? { dispatchBySet: true } : {}),
    resyncIntervalMs: s.resyncIntervalMs,
    nodeStatusPeriodMs: s.nodeStatusIntervalMs,
    ...(s.mrtUpdates
      ? {
          mrtUpdates: { dir: s.mrtUpdates, rotateBytes: s.mrtRotateBytes, rotateMs: s.mrtRotateMs },
        }
      : {}),
    ...(s.bmpStation
      ? {
          bmp: {
            station: s.bmpStation,
            statsIntervalMs: s.bmpStatsIntervalMs,
            ...(s.bmpAdjRibOut ? { adjRibOut: true } : {}),
          },
        }
      : {}),
    agent: {
      clusterCidrs: s.clusterCidr,
      ...(s.mtu !== undefined ? { mtu: s.mtu } : {}),
      // FELIX_VXLANMTU and the like: FelixConfiguration fields above the datastore (as Felix).
      felixEnv: felixEnvironment(process.env),
    },
    ...(prom
      ? {
          observe: {
            convergence: (area, sec) => prom.convergence.observe({ area }, sec),
            iptables: (sec) => prom.iptablesApply.observe(sec),
            fibBatch: (fib, sec) => prom.fibBatch.observe({ fib }, sec),
            updateToKernel: (sec) => prom.updateToKernel.observe(sec),
            watchToApplied: (path, sec) => prom.watchToApplied.observe({ path }, sec),
            driftRepaired: (kinds) => {
              for (const kind of kinds) prom.driftRepairs.inc({ kind });
            },
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
  const resyncIntervalMs = s.resyncIntervalMs;
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
  // The stop: every step bounded by one deadline (src/lib/bounded_stop.ts); what hangs is
  // abandoned and named, and the process exits before a supervisor's SIGKILL would come.
  let cni: { close(): Promise<void> } | undefined;
  let kube: { stop(): Promise<void> } | undefined;
  let stopped: Promise<void> | undefined;
  const stopAll = (signal: string) => {
    stopped ??= (async () => {
      log.info({ signal }, "Stopping");
      const d = new StopDeadline(DAEMON_STOP_MS, log);
      const hard = setTimeout(() => {
        log.error(
          { step: d.current, abandoned: d.abandoned, killed: killRunningCommands() },
          `Stop: not done within ${HARD_EXIT_MS} ms; exiting`,
        );
        process.exit(1);
      }, HARD_EXIT_MS);
      hard.unref();
      await d.step("the CNI hand-off socket", () => cni?.close());
      await d.step("kube-controllers", () => kube?.stop());
      await daemon.stop(d);
      await d.step("the health endpoint", () => health?.close());
      prom?.close();
      await d.step("the datastore", () => store.close());
      const killed = killRunningCommands();
      if (killed.length > 0) log.warn({ killed }, "Stop: commands still running killed");
      log.info(d.abandoned.length > 0 ? { abandoned: d.abandoned } : {}, "Stopped");
    })();
    return stopped;
  };
  // A signal during the start stops it at its next step (NodeDaemon.stop waits for it, bounded).
  onStop = (signal) => void stopAll(signal);
  if (stopRequested !== undefined) onStop(stopRequested);
  try {
    await daemon.start();
  } catch (err) {
    if (stopRequested === undefined) {
      await daemon.stop().catch(() => {});
      await health?.close();
      await store.close();
      throw new CliError(`Node ${s.nodename} could not start: ${(err as Error).message}`);
    }
  }
  if (stopRequested === undefined) {
    // The installed CNI plugins hand their calls to this daemon (src/node/cni_server.ts); a
    // socket that cannot be served leaves them running on their own, as without a daemon.
    const statusSocket = s.statusSocket ?? defaultStatusSocket();
    if (s.cniHandoff) {
      const path = cniSocketBeside(statusSocket);
      try {
        const served = await serveCni({
          path,
          store,
          log,
          ...(prom
            ? {
                observe: (plugin, command, outcome, sec) =>
                  prom.cniHandoff.observe({ plugin, command, outcome }, sec),
              }
            : {}),
        });
        // A stop that began meanwhile has passed the socket by.
        if (stopRequested !== undefined) await served.close();
        else {
          cni = served;
          log.info({ socket: path }, "CNI hand-off socket served");
        }
      } catch (err) {
        log.warn({ socket: path, error: (err as Error).message }, "CNI hand-off socket not served");
      }
    }
  }
  if (stopRequested === undefined) {
    kube = s.kubeconfig
      ? (await import("../k8s/elected.js")).runElectedKubeControllers({
          store,
          kubeconfig: s.kubeconfig,
          identity: s.nodename,
          ttlMs: s.kubeControllersLeaseTtlMs,
          log: (line) => log.info({ subsystem: "kube-controllers" }, line),
        })
      : undefined;
    log.info(
      { datastore: store.url, resyncIntervalMs, ...(health ? { metrics: health.address } : {}) },
      "Node daemon running",
    );
  }
  await stopAll(
    await new Promise<string>((resolve) => {
      onStop = resolve;
      if (stopRequested !== undefined) resolve(stopRequested);
    }),
  );
  setImmediate(() => process.exit(process.exitCode ?? 0));
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
      for (const [sub, l] of Object.entries(r.levels)) console.log(`${sub}=${l}`);
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
