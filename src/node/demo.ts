// The demo cluster: N nodes, a top-of-rack router (FRR, when installed) and pods, each in its own
// network namespace on one host, on the embedded datastore. Owns: the topology, the per-node
// `ocelot node run` processes, the container runtime's part for pods and the closing checks
// (connectivity, source addresses, and IPAM clean by the real `ocelot ipam check` and a dry-run
// `ocelot ipam gc`). Not: BGP, IPAM, pod wiring or the kernel programming themselves (the real
// `ocelot node run`, `ocelot-cni` and `ocelot-ipam` do those).
//
// Each node runs the real node daemon, `ocelot node run` (src/node/daemon.ts), in its namespace:
// it registers the node's Node resource (fabric address and AS), programs the node's data plane
// from the datastore (host-side veth settings, sysctls, /32 routes and block blackholes under
// protocol 202, NAT-outgoing iptables and ipsets) and runs its BGP speaker (an iBGP mesh from the
// Node resources, eBGP to the ToR from a global BGPPeer, its blocks originated). Each pod is wired
// the way a container runtime does it: the real `ocelot-cni` plugin runs inside its node's
// namespace (CNI ADD, delegating to `ocelot-ipam`), creates the veth and writes the pod's
// WorkloadEndpoint, which the daemon picks up.
// An "internet" host behind the ToR, with a route back to node addresses only, shows
// NAT-outgoing at work.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { kindOf, kindPrefix } from "../api/registry.js";
import { queryStatus, type StatusSnapshot } from "../bgp/status.js";
import { openDatastore } from "../datastore/open.js";
import { frrInstalled, frrRunDir, startFrrDaemons } from "../lib/frr.js";
import { link, Netns, waitFor } from "../lib/netns.js";
import { NETNS_STATUS_DIR, statusSocketFor } from "../lib/status_socket_path.js";
import { commandWaker, fileWaker, PhaseClock, waitUntil } from "./demo_wait.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const OCELOT = join(ROOT, "bin", "ocelot");
const BIN = join(ROOT, "bin");
const OCELOT_CNI = join(BIN, "ocelot-cni");

export const NODE_AS = 64512;
export const TOR_AS = 65000;
export const POOL_CIDR = "10.244.0.0/16";
const FABRIC = "10.255.0"; // .1 ToR, .10+i node i
const FABRIC_PREFIX_LENGTH = 24;
/** Each node daemon serves /metrics on its fabric address at this port. */
const METRICS_PORT = 9091;
/** A wait's limit: only a hang reaches it (a loaded machine can be slow). */
const DEMO_WAIT_MS = 120_000;
const COMMAND_LIMIT_MS = 120_000;
/** The set-up's phases in order, as build() ends them on its PhaseClock (progress lines). */
export const SETUP_PHASES = [
  "namespaces",
  "resources applied",
  "daemons started",
  "Node registration",
  "first convergence",
  "sessions Established",
  "pods wired",
  "routes in every kernel",
] as const;

/** The phases that are BGP's: sessions coming up, and routes reaching every kernel. */
export const BGP_PHASES = ["sessions Established", "routes in every kernel"] as const;

function nodeKind() {
  const info = kindOf("projectcalico.org/v3", "Node");
  if (!info) throw new Error("Kind Node is not registered");
  return info;
}

/** The "internet" behind the ToR (TEST-NET-2): .1 the ToR, .10 a host out there. */
const INTERNET = "198.51.100";

export interface DemoOptions {
  nodes: number;
  podsPerNode: number;
  /** Namespace name prefix; also names the state directory. */
  prefix: string;
  stateDir: string;
  log: (line: string) => void;
  /** Times each phase of the set-up (see build()). */
  clock?: PhaseClock;
}

export interface DemoPod {
  name: string;
  node: string;
  ns: string;
  ip: string;
  hostIface: string;
}

export interface DemoNode {
  name: string;
  ns: string;
  address: string;
  blocks: string[];
  pid?: number;
  /** The daemon's status socket: its namespace's well-known path (`ocelot status` finds it). */
  statusSocket?: string;
  /** Where the daemon serves /metrics, /livez and /readyz ("address:port"). */
  metricsAddress?: string;
}

export interface DemoState {
  prefix: string;
  stateDir: string;
  datastore: string;
  namespaces: string[];
  /** PIDs we started, with the comm they had, so `demo down` ends only those. */
  pids: { pid: number; comm: string; what: string }[];
  tor: { ns: string; address: string; router: "frr" | "none" };
  /** A host outside the cluster, behind the ToR (absent in states of older demos). */
  internet?: { ns: string; address: string };
  nodes: DemoNode[];
  pods: DemoPod[];
}

export interface PingResult {
  from: string;
  to: string;
  ok: boolean;
  /** Echoes sent until one was answered (or the limit passed): 1 unless one was lost. */
  attempts: number;
}

/**
 * How long one reachability check (a ping, a source-address check) is retried before it counts
 * as failed: a hang-sized limit, never a speed bound. An echo can be lost with the network model
 * in place: the kernel's IPv4 neighbour table is one table for the whole host (every namespace,
 * gc_thresh3 entries, 1024 by default), and while other namespaces on the machine fill it, the
 * neighbour a new destination needs (the node's entry for a pod on its veth, a pod's for its
 * gateway) cannot be created and the packet that needed it is dropped ("neighbor table
 * overflow!" in the kernel log) until garbage collection makes room. Once one check has used up
 * this limit the network is taken to be broken and each later check gets one try.
 */
const CHECK_RETRY_MS = 30_000;

/** Shared by a run's checks: open until one check has used up CHECK_RETRY_MS unanswered. */
export interface RetryBudget {
  open: boolean;
}

/**
 * Runs attempt() until it returns a value `done` accepts, or, while `budget.open`, until
 * limitMs have passed (then closes the budget: later calls try once); otherwise once. Returns
 * the last value and how many attempts were made.
 */
export function retried<T>(
  attempt: () => T,
  done: (v: T) => boolean,
  budget: RetryBudget,
  limitMs = CHECK_RETRY_MS,
): { value: T; attempts: number } {
  const deadline = Date.now() + limitMs;
  let attempts = 0;
  for (;;) {
    const value = attempt();
    attempts++;
    if (done(value)) return { value, attempts };
    if (!budget.open) return { value, attempts };
    if (Date.now() >= deadline) {
      budget.open = false;
      return { value, attempts };
    }
  }
}

export function statePath(stateDir: string): string {
  return join(stateDir, "state.json");
}

function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
}

/**
 * Plays the container runtime for one pod: CNI ADD through the real `ocelot-cni` plugin, run in
 * the node's namespace (the host side of the veth lives there), with IPAM delegated to
 * `ocelot-ipam` in CNI_PATH. Returns the pod's IPv4 address and the host side's name.
 */
function cniAdd(
  datastore: string,
  node: Netns,
  nodeName: string,
  pod: string,
  netnsPath: string,
): { ip: string; hostIface: string } {
  const conf = {
    cniVersion: "1.0.0",
    name: "ocelot-demo",
    type: "ocelot-cni",
    datastore,
    nodename: nodeName,
    ipam: { type: "ocelot-ipam", ipv4_pools: [POOL_CIDR] },
  };
  const r = spawnSync("ip", ["netns", "exec", node.name, OCELOT_CNI], {
    input: JSON.stringify(conf),
    encoding: "utf8",
    timeout: 60_000,
    env: {
      ...process.env,
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: `demo-${pod}`,
      CNI_NETNS: netnsPath,
      CNI_IFNAME: "eth0",
      CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod}`,
      CNI_PATH: BIN,
    },
  });
  if (r.status !== 0) throw new Error(`ocelot-cni ADD for ${pod} failed: ${r.stdout}${r.stderr}`);
  const result = JSON.parse(r.stdout) as {
    interfaces?: { name: string; sandbox?: string }[];
    ips?: { address: string }[];
  };
  const v4 = result.ips?.find((ip) => !ip.address.includes(":"));
  const hostIface = result.interfaces?.find((i) => i.sandbox === undefined)?.name;
  if (!v4 || !hostIface)
    throw new Error(`ocelot-cni ADD for ${pod} returned no IPv4 address or host side: ${r.stdout}`);
  return { ip: v4.address.split("/")[0] as string, hostIface };
}

/** The /26 (pool block size) that holds addr. */
function blockOf(addr: string, blockSize = 26): string {
  const n = addr.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
  const size = 2 ** (32 - blockSize);
  const base = Math.floor(n / size) * size;
  return `${[24, 16, 8, 0].map((s) => Math.floor(base / 2 ** s) % 256).join(".")}/${blockSize}`;
}

function torFrrConfig(nodes: DemoNode[], address: string): string {
  const lines = [
    "hostname tor",
    "router bgp 65000",
    ` bgp router-id ${address}`,
    " no bgp ebgp-requires-policy",
    " no bgp network import-check",
    " neighbor NODES peer-group",
    ` neighbor NODES remote-as ${NODE_AS}`,
    " neighbor NODES timers 3 9",
    " neighbor NODES timers connect 1",
    " neighbor NODES advertisement-interval 0",
    ...nodes.map((n) => ` neighbor ${n.address} peer-group NODES`),
    " address-family ipv4 unicast",
    "  maximum-paths 8",
    " exit-address-family",
    "exit",
  ];
  return `${lines.join("\n")}\n`;
}

/** Starts FRR in ns; configs, pids and logs in FRR's own run dir (it runs as user frr). */
function startFrr(ns: Netns, conf: string, state: DemoState): void {
  const dir = frrRunDir(ns);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "zebra.conf"), "hostname tor\n");
  writeFileSync(join(dir, "bgpd.conf"), conf);
  const pids = startFrrDaemons(ns, dir);
  for (const daemon of ["zebra", "bgpd"] as const) {
    state.pids.push({
      pid: pids[daemon],
      comm: commOf(pids[daemon]),
      what: `${daemon}@${ns.name}`,
    });
  }
}

function saveState(state: DemoState): void {
  mkdirSync(state.stateDir, { recursive: true });
  writeFileSync(statePath(state.stateDir), `${JSON.stringify(state, null, 2)}\n`);
}

/** Brings the demo cluster up. On any failure, what was created is removed again. */
export async function demoUp(opts: DemoOptions): Promise<DemoState> {
  if (existsSync(statePath(opts.stateDir))) {
    throw new Error(
      `A demo is already running (state in ${opts.stateDir}): run "ocelot demo down" first`,
    );
  }
  mkdirSync(opts.stateDir, { recursive: true });
  // No demo runs on this state directory: a store left by an earlier one starts afresh (its
  // WorkloadEndpoints and addresses belonged to pods that are gone).
  const storeFile = join(opts.stateDir, "store.db");
  for (const f of [storeFile, `${storeFile}-wal`, `${storeFile}-shm`]) rmSync(f, { force: true });
  const datastore = `file:${storeFile}`;
  const haveFrr = frrInstalled();
  const state: DemoState = {
    prefix: opts.prefix,
    stateDir: opts.stateDir,
    datastore,
    namespaces: [],
    pids: [],
    tor: { ns: `${opts.prefix}-tor`, address: `${FABRIC}.1`, router: haveFrr ? "frr" : "none" },
    nodes: [],
    pods: [],
  };
  try {
    await build(state, opts, opts.clock ?? new PhaseClock());
    saveState(state);
    return state;
  } catch (err) {
    opts.log(`demo: set-up failed, removing what was created: ${String(err)}`);
    demoDown(state, opts.log);
    throw err;
  }
}

async function build(state: DemoState, opts: DemoOptions, clock: PhaseClock): Promise<void> {
  const log = opts.log;
  const addNs = (name: string): Netns => {
    const ns = Netns.add(name);
    state.namespaces.push(name);
    saveState(state);
    return ns;
  };

  // 1. The fabric: a bridge in the ToR namespace, every node on it.
  log(`demo: fabric ${FABRIC}.0/${FABRIC_PREFIX_LENGTH} on a bridge in ${state.tor.ns}`);
  const tor = addNs(state.tor.ns);
  tor.ip("link", "add", "fabric", "type", "bridge");
  tor.ip("addr", "add", `${state.tor.address}/${FABRIC_PREFIX_LENGTH}`, "dev", "fabric");
  tor.ip("link", "set", "fabric", "up");
  // The internet: one host behind the ToR that knows the way back to node addresses only, so
  // only masqueraded pod traffic can be answered (DESIGN.md §1 point 4).
  const internet = { ns: `${opts.prefix}-inet`, address: `${INTERNET}.10` };
  const inet = addNs(internet.ns);
  link(tor, "inet0", `${INTERNET}.1/24`, inet, "eth0", `${internet.address}/24`);
  inet.ip("route", "add", `${FABRIC}.0/${FABRIC_PREFIX_LENGTH}`, "via", `${INTERNET}.1`);
  state.internet = internet;
  const nodeNs: Netns[] = [];
  for (let i = 1; i <= opts.nodes; i++) {
    const name = `node${i}`;
    const ns = addNs(`${opts.prefix}-${name}`);
    const address = `${FABRIC}.${10 + i}`;
    link(ns, "eth0", `${address}/${FABRIC_PREFIX_LENGTH}`, tor, `port${i}`, undefined);
    tor.ip("link", "set", `port${i}`, "master", "fabric");
    ns.exec("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0");
    // The ToR is the node's default gateway (as on a real rack); proxy ARP for the pods'
    // gateway 169.254.1.1 also needs the node to have a route to it.
    ns.ip("route", "add", "default", "via", state.tor.address);
    state.nodes.push({
      name,
      ns: ns.name,
      address,
      blocks: [],
      statusSocket: statusSocketFor(ns.name),
      metricsAddress: `${address}:${METRICS_PORT}`,
    });
    nodeNs.push(ns);
  }
  clock.end("namespaces");

  // 2. The pool, and the ToR as a global BGPPeer (when there is one), by the real CLI.
  log(`demo: IPPool ${POOL_CIDR} in ${state.datastore}`);
  const docs = [
    [
      "apiVersion: projectcalico.org/v3",
      "kind: IPPool",
      "metadata: {name: demo-pool}",
      `spec: {cidr: ${POOL_CIDR}, blockSize: 26, ipipMode: Never, natOutgoing: true, nodeSelector: all()}`,
    ],
  ];
  if (state.tor.router === "frr") {
    docs.push([
      "apiVersion: projectcalico.org/v3",
      "kind: BGPPeer",
      "metadata: {name: tor}",
      `spec: {peerIP: ${state.tor.address}, asNumber: ${TOR_AS}, keepaliveTime: 3s}`,
    ]);
  }
  const applied = spawnSync(OCELOT, ["apply", "-f", "-", "--datastore", state.datastore], {
    input: docs.map((d) => d.join("\n")).join("\n---\n"),
    encoding: "utf8",
    timeout: COMMAND_LIMIT_MS,
  });
  if (applied.status !== 0)
    throw new Error(`ocelot apply of the IPPool and BGPPeer failed: ${applied.stderr}`);
  clock.end("resources applied");

  // 3. FRR on the ToR (when installed) and every node daemon, all at once: each session is
  // opened by whichever end comes up second, to the other end that already listens, so no one
  // waits out a connect retry. Each daemon registers its Node before pods are wired (as
  // calico-node does): IPAM's check and GC take blocks of a node with no Node resource for a
  // gone node's.
  if (state.tor.router === "frr") {
    log(`demo: FRR top-of-rack router AS ${TOR_AS} at ${state.tor.address}`);
    startFrr(tor, torFrrConfig(state.nodes, state.tor.address), state);
  } else {
    log("demo: FRR is not installed: no top-of-rack router, nodes peer in a full mesh only");
  }
  const logs = await Promise.all(
    state.nodes.map((node, i) => startNodeDaemon(state, node, nodeNs[i] as Netns)),
  );
  clock.end("daemons started");

  // 4. Every Node registered: read from the datastore, woken by its watch.
  const store = await openDatastore(state.datastore);
  try {
    const prefix = kindPrefix(nodeKind());
    const names = state.nodes.map((n) => `${prefix}${n.name}`);
    await waitUntil(
      "every node daemon to register its Node",
      async () => {
        const keys = new Set((await store.list(prefix)).items.map((kv) => kv.key));
        return names.every((k) => keys.has(k));
      },
      [
        (wake) => {
          const w = store.watch(prefix, 0, () => wake());
          return { close: () => void w.cancel() };
        },
      ],
      DEMO_WAIT_MS,
    );
  } finally {
    await store.close();
  }
  clock.end("Node registration");

  // 5. Each daemon converged once (its agent programmed the node, its speaker runs).
  await waitUntil(
    "every node daemon's first convergence",
    () =>
      state.nodes.every((node, i) => {
        const text = readFileSync(logs[i] as string, "utf8");
        if (node.pid !== undefined && commOf(node.pid) !== "node")
          throw new Error(`ocelot node run on ${node.name} exited: ${text}`);
        return text.includes('"msg":"Node daemon running"');
      }),
    logs.map((l) => fileWaker(l)),
    DEMO_WAIT_MS,
  );
  clock.end("first convergence");

  // 6. Every session Established (mesh and ToR), as each node's status socket reports it;
  // checked again whenever a daemon writes its log (each session change is logged).
  const peersPerNode = state.nodes.length - 1 + (state.tor.router === "frr" ? 1 : 0);
  await waitUntil(
    "every BGP session to be Established",
    async () => {
      const all = await Promise.all(
        state.nodes.map((n) => queryStatus<StatusSnapshot>(n.statusSocket as string, "status")),
      );
      return all.every(
        (s) => s.peers.length === peersPerNode && s.peers.every((p) => p.state === "Established"),
      );
    },
    logs.map((l) => fileWaker(l)),
    DEMO_WAIT_MS,
  );
  clock.end("sessions Established");

  // 7. Pods through the real CNI plugin (veth, IPAM, WorkloadEndpoint); the daemons take them in.
  for (const [i, node] of state.nodes.entries()) {
    for (let p = 1; p <= opts.podsPerNode; p++) {
      const podName = `${node.name}-pod${p}`;
      const pns = addNs(`${opts.prefix}-${podName}`);
      const { ip, hostIface } = cniAdd(
        state.datastore,
        nodeNs[i] as Netns,
        node.name,
        podName,
        `/var/run/netns/${pns.name}`,
      );
      state.pods.push({ name: podName, node: node.name, ns: pns.name, ip, hostIface });
      const block = blockOf(ip);
      if (!node.blocks.includes(block)) node.blocks.push(block);
    }
    log(
      `demo: ${node.name} ${node.address} blocks ${node.blocks.join(", ")} pods ${state.pods
        .filter((p) => p.node === node.name)
        .map((p) => p.ip)
        .join(", ")}`,
    );
  }
  saveState(state);
  clock.end("pods wired");

  // 8. Converged when each node blackholes its own blocks (the agent, protocol 202), has a
  // route (protocol 201) to every other node's blocks, and the ToR to every block; checked
  // again on every route change in any of those namespaces (`ip monitor route`).
  log("demo: waiting for BGP to converge");
  const kernels = [...nodeNs, ...(state.tor.router === "frr" ? [tor] : [])];
  await waitUntil(
    "every node's blocks in every kernel",
    () => {
      const nodesOk = state.nodes.every((node, i) => {
        const ns = nodeNs[i] as Netns;
        const holes = ns
          .ipJson<{ dst: string }[]>("route", "show", "proto", "202", "type", "blackhole")
          .map((r) => r.dst);
        if (!node.blocks.every((b) => holes.includes(b))) return false;
        const learned = ns
          .ipJson<{ dst: string }[]>("route", "show", "proto", "201")
          .map((r) => r.dst);
        return state.nodes
          .filter((o) => o !== node)
          .every((o) => o.blocks.every((b) => learned.includes(b)));
      });
      if (!nodesOk || state.tor.router !== "frr") return nodesOk;
      const learned = tor.ipJson<{ dst: string }[]>("route", "show").map((r) => r.dst);
      return state.nodes.every((n) => n.blocks.every((b) => learned.includes(b)));
    },
    kernels.map((ns) => commandWaker("ip", ["-n", ns.name, "monitor", "route"])),
    DEMO_WAIT_MS,
  );
  clock.end("routes in every kernel");
}

/**
 * Starts `ocelot node run` for node inside its namespace (logs in the state directory, status
 * socket on its namespace's well-known path, metrics on its fabric address) and waits until the
 * process runs. Returns its log's path.
 */
async function startNodeDaemon(
  state: DemoState,
  node: DemoNode,
  ns: Netns,
  logName = `${node.name}.node.log`,
): Promise<string> {
  const logPath = join(state.stateDir, logName);
  writeFileSync(logPath, "");
  const out = openSync(logPath, "a");
  const args = [
    ...["node", "run", "--nodename", node.name, "--as", String(NODE_AS)],
    ...["--ip", `${node.address}/${FABRIC_PREFIX_LENGTH}`, "--datastore", state.datastore],
    ...["--cluster-cidr", `${FABRIC}.0/${FABRIC_PREFIX_LENGTH}`],
    ...(node.metricsAddress ? ["--metrics-address", node.metricsAddress] : []),
  ];
  const child: ChildProcess = spawn("ip", ["netns", "exec", ns.name, OCELOT, ...args], {
    stdio: ["ignore", out, out],
    detached: true,
  });
  child.unref();
  if (child.pid === undefined) throw new Error(`Could not start ocelot node run for ${node.name}`);
  const pid = child.pid;
  node.pid = pid;
  // `ip netns exec` execs the command in place: the PID becomes node's once exec is done.
  await waitFor(`ocelot node run on ${node.name} to start`, () => commOf(pid) === "node", 5000, 20);
  state.pids.push({ pid, comm: "node", what: `ocelot node run@${node.name}` });
  saveState(state);
  return logPath;
}

/**
 * Ends one node's daemon with `signal` (SIGKILL: a crash; SIGTERM: a clean shutdown) and waits
 * (bounded) for it to be gone. Only the PID the demo started and recorded is signalled.
 */
export async function stopNodeDaemon(
  state: DemoState,
  nodeName: string,
  signal: "SIGKILL" | "SIGTERM",
): Promise<DemoNode> {
  const node = state.nodes.find((n) => n.name === nodeName);
  if (!node) throw new Error(`No demo node "${nodeName}"`);
  const pid = node.pid;
  if (pid !== undefined && commOf(pid) === "node") {
    process.kill(pid, signal);
    await waitFor(
      `ocelot node run on ${node.name} to exit`,
      () => commOf(pid) !== "node",
      60_000,
      5,
    );
  }
  state.pids = state.pids.filter((p) => p.pid !== pid);
  node.pid = undefined;
  saveState(state);
  return node;
}

/** Starts a stopped node's daemon again; its log is `<node>.node.<n>.log`, whose path it returns. */
export async function startNodeDaemonAgain(state: DemoState, nodeName: string): Promise<string> {
  const node = state.nodes.find((n) => n.name === nodeName);
  if (!node) throw new Error(`No demo node "${nodeName}"`);
  if (node.pid !== undefined) throw new Error(`${nodeName}'s daemon still runs (pid ${node.pid})`);
  const logName = `${node.name}.node.${state.pids.length}.log`;
  return startNodeDaemon(state, node, new Netns(node.ns), logName);
}

/** Seconds until one pod on the first node reaches one pod on another node (1 ping, 1 s each). */
export async function firstPing(state: DemoState): Promise<PingResult> {
  const src = state.pods.find((p) => p.node === state.nodes[0]?.name);
  const dst = state.pods.find((p) => p.node !== src?.node) ?? state.pods[1];
  if (!src || !dst) throw new Error("No two pods to ping between");
  const ok = await waitUntil(
    `${src.name} to answer a ping from ${dst.name}`,
    () =>
      spawnSync("ip", ["netns", "exec", src.ns, "ping", "-c1", "-W1", "-q", dst.ip], {
        timeout: COMMAND_LIMIT_MS,
      }).status === 0,
    [],
    DEMO_WAIT_MS,
    10,
  );
  return { from: `${src.name} ${src.ip}`, to: `${dst.name} ${dst.ip}`, ok, attempts: 1 };
}

/**
 * Pings every pod from one pod on each node (and the ToR): one packet at a time, 2 s each, sent
 * again while unanswered for up to CHECK_RETRY_MS (a lost echo is not a missing route).
 */
export function checkConnectivity(
  state: DemoState,
  onEach?: (done: number, total: number) => void,
  budget: RetryBudget = { open: true },
): PingResult[] {
  const results: PingResult[] = [];
  const sources = state.nodes
    .map((n) => state.pods.find((p) => p.node === n.name))
    .filter((p): p is DemoPod => !!p);
  const ping = (ns: string, from: string, to: DemoPod) => {
    const { value: ok, attempts } = retried(
      () =>
        spawnSync("ip", ["netns", "exec", ns, "ping", "-c1", "-W2", "-q", to.ip], {
          timeout: COMMAND_LIMIT_MS,
        }).status === 0,
      (answered) => answered,
      budget,
    );
    results.push({ from, to: `${to.name} ${to.ip}`, ok, attempts });
    onEach?.(results.length, total);
  };
  const total = sources.length * (state.pods.length - 1) + state.pods.length;
  for (const src of sources)
    for (const dst of state.pods) if (dst !== src) ping(src.ns, `${src.name} ${src.ip}`, dst);
  for (const dst of state.pods) ping(state.tor.ns, `tor ${state.tor.address}`, dst);
  return results;
}

export interface SourceCheck {
  from: string;
  to: string;
  /** The source address the destination saw; equal to the sender's own address without NAT. */
  seen: string | null;
  /** What it must see: the sender's own address, or its node's (masqueraded, to the internet). */
  expected: string;
  nat: boolean;
  ok: boolean;
}

// A UDP echo that answers with the source address it saw; bounded to 5 s.
const ECHO_SERVER = `const s=require("dgram").createSocket("udp4");s.on("message",(m,r)=>s.send(r.address,r.port,r.address,()=>process.exit(0)));s.bind(7777,()=>console.log("ready"));setTimeout(()=>process.exit(1),5000);`;
const ECHO_CLIENT = `const s=require("dgram").createSocket("udp4");s.on("message",(m)=>{console.log(String(m));process.exit(0)});const t=()=>s.send("x",7777,process.argv[1]);t();setInterval(t,300);setTimeout(()=>process.exit(1),4000);`;

/**
 * Proves "the IP a pod sees itself as is the IP others see": from one pod on each node to a pod
 * on the next node, and from each node to a pod, the receiver reports the source it saw. And
 * NAT-outgoing: from one pod on each node to the internet host, which must see the node's address.
 */
export async function checkSourceAddresses(
  state: DemoState,
  budget: RetryBudget = { open: true },
): Promise<SourceCheck[]> {
  const checks: SourceCheck[] = [];
  const firstPod = (node: DemoNode) => state.pods.find((p) => p.node === node.name);
  type Target = Pick<DemoPod, "name" | "ns" | "ip">;
  const pairs: { fromNs: string; from: string; fromIp: string; to: Target; expected: string }[] =
    [];
  for (const [i, node] of state.nodes.entries()) {
    const next = state.nodes[(i + 1) % state.nodes.length];
    const src = firstPod(node);
    const dst = firstPod(next);
    if (src && dst && src !== dst)
      pairs.push({ fromNs: src.ns, from: src.name, fromIp: src.ip, to: dst, expected: src.ip });
    if (dst) {
      const n = { fromNs: node.ns, from: node.name, fromIp: node.address };
      pairs.push({ ...n, to: dst, expected: node.address });
    }
  }
  const inet = state.internet;
  if (inet) {
    const to = { name: "internet", ns: inet.ns, ip: inet.address };
    for (const node of state.nodes) {
      const src = firstPod(node);
      if (src) {
        const n = { fromNs: src.ns, from: src.name, fromIp: src.ip };
        pairs.push({ ...n, to, expected: node.address });
      }
    }
  }
  // One exchange: the receiver's echo server, then the sender's client; the source it saw, or
  // null when nothing came back (tried again, as a lost ping is: CHECK_RETRY_MS).
  const exchange = async (pair: (typeof pairs)[number]): Promise<string | null> => {
    const server = spawn("ip", ["netns", "exec", pair.to.ns, process.execPath, "-e", ECHO_SERVER], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    await new Promise<void>((resolve) => {
      server.stdout?.once("data", () => resolve());
      server.once("exit", () => resolve());
    });
    const r = spawnSync(
      "ip",
      ["netns", "exec", pair.fromNs, process.execPath, "-e", ECHO_CLIENT, pair.to.ip],
      { encoding: "utf8", timeout: 6000 },
    );
    if (server.exitCode === null) server.kill();
    return r.status === 0 ? r.stdout.trim() : null;
  };
  for (const pair of pairs) {
    const deadline = Date.now() + CHECK_RETRY_MS;
    let seen = await exchange(pair);
    while (seen === null && budget.open) {
      if (Date.now() >= deadline) budget.open = false;
      else seen = await exchange(pair);
    }
    checks.push({
      from: `${pair.from} ${pair.fromIp}`,
      to: `${pair.to.name} ${pair.to.ip}`,
      seen,
      expected: pair.expected,
      nat: pair.expected !== pair.fromIp,
      ok: seen === pair.expected,
    });
  }
  return checks;
}

export interface IpamCheck {
  /** From `ocelot ipam check`: allocated addresses no WorkloadEndpoint holds. */
  leaked: number;
  /** From `ocelot ipam check`: blocks whose node has no Node resource. */
  blocksOfMissingNodes: number;
  emptyHandles: number;
  /** What an `ocelot ipam gc --once --dry-run` pass planned or would start watching. */
  gcPlanned: string[];
  /** Each reason the check failed; empty when the datastore is clean. */
  problems: string[];
  ok: boolean;
}

/** Runs `ocelot <args> --json --datastore <the demo's>`, bounded; its JSON, or a problem. */
function ocelotJson<T>(state: DemoState, args: string[], problems: string[]): T | undefined {
  const what = `ocelot ${args.join(" ")}`;
  const r = spawnSync(OCELOT, [...args, "--json", "--datastore", state.datastore], {
    encoding: "utf8",
    timeout: 30_000,
  });
  if (r.status !== 0) {
    problems.push(`${what} failed (exit ${r.status ?? r.signal}): ${r.stderr.trim()}`);
    return undefined;
  }
  try {
    return JSON.parse(r.stdout) as T;
  } catch (err) {
    problems.push(`${what} printed no JSON: ${(err as Error).message}`);
    return undefined;
  }
}

/**
 * The datastore is as a running cluster leaves it: the real `ocelot ipam check` finds no leaked
 * address and no block of a missing node, and a dry-run `ocelot ipam gc` pass plans no release
 * and watches nothing (no leak, no node without its Node resource).
 */
export function checkIpamClean(state: DemoState): IpamCheck {
  const problems: string[] = [];
  const report = ocelotJson<{
    summary: { leaked: number; blocksOfMissingNodes: number; emptyHandles: number };
    leakedAddresses: { address: string; reason: string }[];
    blocksOfMissingNodes: { block: string; node: string }[];
  }>(state, ["ipam", "check"], problems);
  const gc = ocelotJson<{
    actions: { kind: string; address?: string; node?: string; block?: string }[];
    watching: { leaks: { address: string }[]; goneNodes: { node: string }[] };
  }>(state, ["ipam", "gc", "--once", "--dry-run"], problems);
  const s = report?.summary;
  if (report && s) {
    if (s.leaked > 0)
      problems.push(
        `ocelot ipam check: ${s.leaked} leaked addresses (${report.leakedAddresses.map((l) => `${l.address}: ${l.reason}`).join("; ")})`,
      );
    if (s.blocksOfMissingNodes > 0)
      problems.push(
        `ocelot ipam check: ${s.blocksOfMissingNodes} blocks of nodes that no longer exist (${report.blocksOfMissingNodes.map((b) => `${b.block} of ${b.node}`).join(", ")})`,
      );
  }
  const gcPlanned = gc
    ? [
        ...gc.actions.map((a) => `${a.kind} ${a.address ?? a.node ?? a.block ?? ""}`.trim()),
        ...gc.watching.leaks.map((l) => `watch leak ${l.address}`),
        ...gc.watching.goneNodes.map((g) => `watch gone node ${g.node}`),
      ]
    : [];
  if (gcPlanned.length > 0)
    problems.push(`ocelot ipam gc --dry-run planned: ${gcPlanned.join(", ")}`);
  return {
    leaked: s?.leaked ?? -1,
    blocksOfMissingNodes: s?.blocksOfMissingNodes ?? -1,
    emptyHandles: s?.emptyHandles ?? -1,
    gcPlanned,
    problems,
    ok: problems.length === 0,
  };
}

/** Ends the processes we started (by PID, if still ours) and deletes our namespaces. */
export function demoDown(state: DemoState, log: (line: string) => void): void {
  for (const { pid, comm, what } of state.pids) {
    if (comm && commOf(pid) === comm) {
      log(`demo: stopping ${what} (pid ${pid})`);
      try {
        process.kill(pid, "SIGTERM");
      } catch {}
    }
  }
  for (const name of [...state.namespaces].reverse()) new Netns(name).destroy();
  rmSync(`/var/run/frr/${state.tor.ns}`, { recursive: true, force: true });
  for (const n of state.nodes)
    rmSync(join(NETNS_STATUS_DIR, n.ns), { recursive: true, force: true });
  rmSync(statePath(state.stateDir), { force: true });
  log(`demo: removed ${state.namespaces.length} namespaces`);
}

export function loadState(stateDir: string): DemoState | undefined {
  const p = statePath(stateDir);
  if (!existsSync(p)) return undefined;
  return JSON.parse(readFileSync(p, "utf8")) as DemoState;
}
