// The node daemon tests' harness: the real `bin/ocelot node run` started inside a node namespace
// (its pino lines collected, its end awaited by PID), the real `bin/ocelot-cni` run there as a
// container runtime would, and kernel read-backs (`ip -j`, /proc/sys). Every wait is bounded.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { link, Netns, netnsUnavailableReason, waitFor } from "../helpers/netns.js";

export const ROOT = new URL("../..", import.meta.url).pathname;
export const BIN = join(ROOT, "bin");
/** Where startNode finds `ocelot`: OCELOT_BIN_DIR (another build's bin/, a benchmark's before) or BIN. */
const binDir = () => process.env.OCELOT_BIN_DIR ?? BIN;

/** Why the daemon tests cannot run here (no root/netns, or dist/ not built), or undefined. */
export function daemonTestsUnavailable(): string | undefined {
  return (
    netnsUnavailableReason() ??
    (existsSync(join(ROOT, "dist/cli/node.js")) ? undefined : "dist/ not built (npm run build)")
  );
}

export interface IpRoute {
  dst: string;
  type?: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  /** The kernel nexthop object the route names (RTA_NH_ID). */
  nhid?: number;
}

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export class NodeProcess {
  readonly lines: LogLine[] = [];
  private text = "";
  exit: Promise<number | null>;

  constructor(
    readonly ns: Netns,
    readonly proc: ChildProcess,
  ) {
    const onData = (d: Buffer) => {
      this.text += d.toString();
      let nl = this.text.indexOf("\n");
      while (nl >= 0) {
        const line = this.text.slice(0, nl);
        this.text = this.text.slice(nl + 1);
        try {
          this.lines.push(JSON.parse(line) as LogLine);
        } catch {
          this.lines.push({ level: 50, msg: line });
        }
        nl = this.text.indexOf("\n");
      }
    };
    proc.stdout?.on("data", onData);
    proc.stderr?.on("data", onData);
    this.exit = new Promise((resolve) => proc.once("exit", (code) => resolve(code)));
  }

  /** The log, one line a message, for assertion messages. */
  get log(): string {
    return this.lines.map((l) => JSON.stringify(l)).join("\n");
  }

  has(msg: string | RegExp): boolean {
    return this.lines.some((l) => (typeof msg === "string" ? l.msg === msg : msg.test(l.msg)));
  }

  /** SIGTERM, then the exit code (SIGKILL after 10 s). */
  async stop(): Promise<number | null> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return this.proc.exitCode;
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 10_000);
    const code = await this.exit;
    clearTimeout(timer);
    return code;
  }
}

/** Starts `ocelot node run` inside ns and waits (bounded) until it reports it runs. */
export async function startNode(ns: Netns, args: string[]): Promise<NodeProcess> {
  // `ip netns exec` execs in place: the PID we hold is the daemon's own.
  const proc = spawn(
    "ip",
    ["netns", "exec", ns.name, join(binDir(), "ocelot"), "node", "run", ...args],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const p = new NodeProcess(ns, proc);
  try {
    await waitFor(
      `ocelot node run in ${ns.name} to start`,
      () => {
        if (proc.exitCode !== null) throw new Error(`exited ${proc.exitCode}: ${p.log}`);
        return p.has("Node daemon running");
      },
      60_000,
      50,
    );
  } catch (err) {
    await p.stop();
    throw err;
  }
  return p;
}

/** A node daemon started by startReadyNode, and a fetch of its HTTP endpoints. */
export interface ReadyNode {
  daemon: NodeProcess;
  get(path: string): Promise<{ status: number; text: string }>;
}

/**
 * `ocelot node run --netns` with no BGP (`--networking-backend none`), its metrics and health on
 * a random loopback port, status socket and MTU file in dir; waits (bounded) until /readyz
 * answers 200.
 */
export async function startReadyNode(
  ns: Netns,
  o: {
    nodename: string;
    ip: string;
    datastore: string;
    dir: string;
    extra?: string[];
    /** Set in the daemon's environment, beside the test's own. */
    env?: Record<string, string>;
  },
): Promise<ReadyNode> {
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const get = async (path: string) => {
    const r = await fetch(`http://127.0.0.1:${port}${path}`, {
      signal: AbortSignal.timeout(60_000),
    });
    return { status: r.status, text: await r.text() };
  };
  const proc = spawn(
    process.execPath,
    [
      join(BIN, "ocelot"),
      "node",
      "run",
      "--nodename",
      o.nodename,
      "--ip",
      o.ip,
      "--networking-backend",
      "none",
      "--netns",
      ns.name,
      "--datastore",
      o.datastore,
      "--metrics-address",
      `127.0.0.1:${port}`,
      "--status-socket",
      join(o.dir, "node.sock"),
      "--mtu-file",
      join(o.dir, "mtu"),
      ...(o.extra ?? []),
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...o.env } },
  );
  const daemon = new NodeProcess(ns, proc);
  try {
    await waitFor(
      "the daemon ready",
      async () => {
        if (proc.exitCode !== null) throw new Error(`exited ${proc.exitCode}: ${daemon.log}`);
        return (await get("/readyz").catch(() => ({ status: 0 }))).status === 200;
      },
      60_000,
      200,
    );
  } catch (err) {
    await daemon.stop();
    throw err;
  }
  return { daemon, get };
}

/** The blackhole routes (its blocks) of protocol 202 in ns, sorted. */
export function blackholes(ns: Netns): string[] {
  return routes(ns, "202")
    .filter((r) => r.type === "blackhole")
    .map((r) => r.dst)
    .sort();
}

export type { CniRun } from "../helpers/cni.js";
/** Runs bin/ocelot-cni inside the node namespace (test/helpers/cni.ts). */
export { runOcelotCni as cni } from "../helpers/cni.js";

/** The CNI environment of one pod in its own namespace. */
export function podEnv(pod: Netns, podName: string): Record<string, string> {
  return {
    CNI_CONTAINERID: `ctr-${podName}`,
    CNI_NETNS: `/run/netns/${pod.name}`,
    CNI_IFNAME: "eth0",
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${podName}`,
  };
}

/** A CNI network config for node `nodename` on the store at url. */
export function netconf(url: string, nodename: string, pool: string) {
  return {
    cniVersion: "1.0.0",
    name: "k8s-pod-network",
    type: "ocelot-cni",
    datastore: url,
    nodename,
    ipam: { type: "ocelot-ipam", ipv4_pools: [pool], assign_ipv6: false },
  };
}

/** The namespace's routes of one protocol (agent 202, BGP 201), all types. */
export function routes(ns: Netns, proto: string): IpRoute[] {
  return ns.ipJson<IpRoute[]>("route", "show", "table", "main", "proto", proto);
}

export function sysctl(ns: Netns, key: string): string {
  return ns.exec("cat", `/proc/sys/${key.replace(/\./g, "/")}`).trim();
}

/** The real `ocelot status --json` of the daemon serving the status socket. */
export function nodeStatus<S>(socket: string): S {
  const r = runSync(join(BIN, "ocelot"), ["status", "--json", "--socket", socket], {
    encoding: "utf8",
    timeout: HANG_MS,
  });
  if (r.status !== 0) throw new Error(`ocelot status failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as S;
}

/** The peers of the daemon serving the status socket, from the real `ocelot status --json`. */
export function peerStatus<P>(socket: string): P[] {
  return nodeStatus<{ peers: P[] }>(socket).peers;
}

/** A node of a multi-node test: its namespace, daemon and pod. */
export interface MeshNode {
  name: string;
  ns: Netns;
  ip: string;
  daemon?: NodeProcess;
  pod?: Netns;
}

/**
 * Starts the real `ocelot node run` in each node's namespace (its status socket in dir, named
 * after the node), with `extraArgs(node)` after the common ones.
 */
/**
 * A ToR namespace (`<prefix>t`) whose bridge "fabric" holds torIp/24 and one port per node, and
 * one namespace per node (`<prefix>1`, ...) with eth0 at its address/24 on that bridge.
 */
export function bridgedFabric(
  prefix: string,
  torIp: string,
  nodeIps: readonly string[],
): { tor: Netns; nodes: MeshNode[] } {
  const tor = Netns.create(`${prefix}t`);
  tor.ip("link", "add", "fabric", "type", "bridge");
  tor.ip("addr", "add", `${torIp}/24`, "dev", "fabric");
  tor.ip("link", "set", "fabric", "up");
  const nodes: MeshNode[] = [];
  for (const [i, ip] of nodeIps.entries()) {
    const ns = Netns.create(`${prefix}${i + 1}`);
    link(ns, "eth0", `${ip}/24`, tor, `p${i + 1}`, undefined);
    tor.ip("link", "set", `p${i + 1}`, "master", "fabric");
    nodes.push({ name: `node${i + 1}`, ns, ip });
  }
  return { tor, nodes };
}

export async function startMeshNodes<N extends MeshNode>(
  nodes: N[],
  url: string,
  dir: string,
  extraArgs: (n: N) => string[] = () => [],
): Promise<void> {
  for (const n of nodes) {
    n.daemon = await startNode(n.ns, [
      "--nodename",
      n.name,
      "--ip",
      `${n.ip}/24`,
      ...extraArgs(n),
      "--datastore",
      url,
      "--status-socket",
      join(dir, `${n.name}.sock`),
      "--log-level",
      process.env.NODED_LEVEL ?? "info",
    ]);
  }
}

/** Stops the daemons (their logs to $NODED_LOG.<node> when set), then removes the namespaces. */
export async function stopMeshNodes(nodes: MeshNode[]): Promise<void> {
  for (const n of nodes) {
    if (process.env.NODED_LOG && n.daemon)
      writeFileSync(`${process.env.NODED_LOG}.${n.name}`, n.daemon.log);
    await n.daemon?.stop();
  }
  for (const n of nodes) {
    n.pod?.destroy();
    n.ns.destroy();
  }
}
