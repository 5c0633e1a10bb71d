// Benchmark of the pod's path after CNI ADD: the time from the real `ocelot-cni` ADD returning
// (run inside node A's namespace as a runtime runs it, pod in a namespace of its own) to
//  - the pod's route in the kernel of node B (`ip monitor route` in B's namespace; a route
//    covering the pod's address, not the default one), for a pod of an existing block (its block
//    is already routed on B: nothing to do, the figure is 0 unless the route came after ADD
//    returned) and for the first pod of a new block (a second pool with blockSize 32: every pod
//    claims a block; its route reaches B through the overlay's fast path with
//    `--networking-backend vxlan`, or as one BGP UPDATE over the node-to-node mesh with `bgp`);
//  - its policy in force on node A (a GlobalNetworkPolicy selecting every pod, its source a
//    selector: an ipset of pod addresses): the pod's host interface dispatched to its endpoint
//    chains in both directions and its address in an ipset (`iptables-save -t filter; ipset
//    save`, polled back to back, so the figure's resolution is one such read, printed).
// For a new block with BGP also the part after node A's speaker took the block (A's log line that
// originated it, its time against the route's line on B): the UPDATE, B's speaker, B's FIB.
// Pods alternate existing / new block, one at a time. The lab is the overlay tests' (test/node/
// overlay_lab.ts: two nodes in one subnet behind a router namespace, the real `ocelot node run`
// on a shared SQLite store). Prints p50/p99/max per backend and kind, side by side, with the
// goals (route p50 < 10 ms for an existing block, p99 < 50 ms for a new block) and the load.
// Needs root. Usage: npx tsx bench/pod_path.ts [--pods 40] [--backends vxlan,bgp]
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { parseArgs, promisify } from "node:util";
import { Netns, waitFor } from "../test/helpers/netns.js";
import { putPool } from "../test/ipam/helpers.js";
import { cni, podEnv } from "../test/node/harness.js";
import { buildLab, destroyLab, type Lab, type LabNode } from "../test/node/overlay_lab.js";

const { values } = parseArgs({
  options: {
    pods: { type: "string", default: "40" },
    backends: { type: "string", default: "vxlan,bgp" },
  },
});
const PODS = Number(values.pods);
const BACKENDS = (values.backends ?? "").split(",").filter((b) => b !== "");
for (const b of BACKENDS)
  if (b !== "vxlan" && b !== "bgp") throw new Error(`--backends: "${b}" is not vxlan or bgp`);
// The lab's pool has /26 blocks: node A's first one holds its own pod and the existing-block ones.
if (!(PODS >= 2 && PODS / 2 <= 60)) throw new Error(`--pods: ${PODS} is not within 2..120`);
const NEW_POOL = "10.233.0.0/16";
const run = promisify(execFile);

/** Lines of a monitor process, each with the time it arrived. */
class Monitor {
  private readonly proc: ChildProcess;
  readonly seen: { at: number; line: string }[] = [];
  constructor(args: string[]) {
    this.proc = spawn("ip", args, { stdio: ["ignore", "pipe", "ignore"] });
    let buf = "";
    this.proc.stdout?.on("data", (d) => {
      const at = performance.now();
      buf += d;
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        this.seen.push({ at, line: buf.slice(0, nl) });
        buf = buf.slice(nl + 1);
        nl = buf.indexOf("\n");
      }
    });
  }
  stop(): void {
    this.proc.kill();
  }
}

const v4 = (a: string) => a.split(".").reduce((n, x) => n * 256 + Number(x), 0);

/** True when a route line (`ip monitor route`) adds a route covering address. */
function covers(line: string, address: string): boolean {
  if (line.startsWith("Deleted")) return false;
  const dst = line.split(" ")[0] ?? "";
  if (!/^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(dst)) return false;
  const [net, len] = dst.includes("/") ? dst.split("/") : [dst, "32"];
  const bits = Number(len);
  const size = 2 ** (32 - bits);
  const base = Math.floor(v4(net as string) / size) * size;
  const a = v4(address);
  return a >= base && a < base + size;
}

interface Sample {
  kind: "existing" | "new";
  addMs: number;
  routeMs: number;
  /** The route's line came before ADD returned (counted as 0). */
  early: boolean;
  /** From ADD's start to the route's line (a route that was not there before). */
  fromStartMs?: number;
  /**
   * New block: from node A's announcement (its daemon's log line that originated the block,
   * logged once the speaker took it: the BGP fast path's, or the pass's "BGP: reconfigured") to
   * the route's line on B: the UPDATE, B's speaker and B's FIB (and `ip monitor`'s pipe).
   */
  announceToBMs?: number;
  policyMs: number;
  /** How long the last iptables-save took (the policy figure's resolution). */
  pollMs: number;
  address: string;
  /** When the route's line came (performance.now()). */
  routeAt?: number;
}

const q = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
const stats = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return { p50: q(s, 50), p99: q(s, 99), max: s[s.length - 1] as number };
};
const fmt = (xs: number[]) => {
  if (xs.length === 0) return "-";
  const s = stats(xs);
  return `${s.p50.toFixed(1)} / ${s.p99.toFixed(1)} / ${s.max.toFixed(1)}`;
};

/** Waits (bounded) for B's route covering address, from ADD's start; ms after ADD returned. */
async function routeOnB(
  b: LabNode,
  mon: Monitor,
  from: number,
  addDone: number,
  address: string,
): Promise<{ ms: number; early: boolean; fromStart?: number; at?: number }> {
  const line = () => mon.seen.find((s) => s.at >= from && covers(s.line, address));
  // Already in B's kernel before ADD began (an existing block's route): nothing to wait for.
  const shown = await run("ip", ["-n", b.ns.name, "-4", "route", "show", "match", address]);
  const present = shown.stdout.split("\n").some((l) => l !== "" && !l.startsWith("default"));
  if (present && line() === undefined) return { ms: 0, early: true };
  const at = await waitFor(`${address}'s route on ${b.name}`, () => line()?.at, 60_000, 1);
  return { ms: Math.max(0, at - addDone), early: at < addDone, fromStart: at - from, at };
}

/**
 * Polls A's filter table and ipsets until the pod's host interface is dispatched to its endpoint
 * chains (both directions) and its address is in an ipset; ms after ADD returned.
 */
async function policyOnA(
  a: LabNode,
  iface: string,
  address: string,
  addDone: number,
): Promise<{ ms: number; pollMs: number }> {
  const deadline = performance.now() + 60_000;
  for (;;) {
    const p0 = performance.now();
    const out = await run(
      "ip",
      ["netns", "exec", a.ns.name, "sh", "-c", "iptables-save -t filter; ipset save"],
      { maxBuffer: 64 << 20 },
    );
    const p1 = performance.now();
    const text = out.stdout;
    if (
      text.includes(`-o ${iface} -g `) &&
      text.includes(`-i ${iface} -g `) &&
      new RegExp(`^add \\S+ ${address.replace(/\./g, "\\.")}(/32)?( |$)`, "m").test(text)
    )
      // The output reflects the tables as read during the call: its midpoint, at the earliest.
      return { ms: Math.max(0, (p0 + p1) / 2 - addDone), pollMs: p1 - p0 };
    if (p1 > deadline) throw new Error(`${iface} / ${address} never in force on ${a.name}`);
  }
}

/**
 * From A's log line that originated the pod's /32 block (wall clock, pino's `time`) to the
 * route's line on B (this process's clock, made wall clock); {} when A's log has no such line
 * (the VXLAN backend announces nothing).
 */
function announceToB(a: LabNode, address: string, routeAt: number): { announceToBMs?: number } {
  const block = `"${address}/32"`;
  for (const line of (a.daemon?.log ?? "").split("\n")) {
    if (!line.includes(block)) continue;
    if (!line.includes("(fast path)") && !line.includes('"BGP: reconfigured"')) continue;
    const time = (JSON.parse(line) as { time?: number }).time;
    if (time === undefined) continue;
    return { announceToBMs: performance.timeOrigin + routeAt - time };
  }
  return {};
}

async function backend(name: "vxlan" | "bgp", labs: Lab[], pods: Netns[]): Promise<Sample[]> {
  const mode = name === "vxlan" ? "Always" : "Never";
  const lab = await buildLab(
    `bpp${name[0]}`,
    [["pp-a", "pp-b"]],
    () => ["--networking-backend", name],
    [4],
    { vxlanMode: mode },
    (l) => labs.push(l),
  );
  const [a, b] = lab.nodes as [LabNode, LabNode];
  // Every pod of this pool claims a block of its own.
  await putPool(lab.store, "nb4", NEW_POOL, { blockSize: 32, vxlanMode: mode });
  // A policy selecting every pod, with a selector-based source (an ipset of pod addresses): each
  // new pod gets its endpoint chains and joins the ipset.
  await lab.store.update(
    "/ocelot/resources/v3/globalnetworkpolicies/bench-pods",
    JSON.stringify({
      apiVersion: "projectcalico.org/v3",
      kind: "GlobalNetworkPolicy",
      metadata: { name: "bench-pods" },
      spec: {
        selector: "all()",
        types: ["Ingress", "Egress"],
        ingress: [{ action: "Allow", source: { selector: "all()" } }],
        egress: [{ action: "Allow" }],
      },
    }),
  );
  // B routes A's first block (over the mesh, or the overlay) before anything is measured.
  await waitFor(
    `${b.name}'s route to ${a.name}'s pod`,
    async () => {
      const r = await run("ip", [
        "-n",
        b.ns.name,
        "-4",
        "route",
        "show",
        "match",
        a.pod4 as string,
      ]);
      return r.stdout.split("\n").some((l) => l !== "" && !l.startsWith("default"));
    },
    120_000,
    200,
  );
  const mon = new Monitor(["-n", b.ns.name, "monitor", "route"]);
  const samples: Sample[] = [];
  try {
    await new Promise((r) => setTimeout(r, 500));
    for (let i = 0; i < PODS; i++) {
      const kind = i % 2 === 0 ? "existing" : "new";
      const pod = Netns.create(`bpq${name[0]}${i}`);
      pods.push(pod);
      const conf = {
        cniVersion: "1.0.0",
        name: "k8s-pod-network",
        type: "ocelot-cni",
        datastore: lab.url,
        nodename: a.name,
        mtu_file: `${lab.dir}/${a.name}.mtu`,
        ipam: { type: "ocelot-ipam", ipv4_pools: [kind === "new" ? "nb4" : "ov4"] },
      };
      const t0 = performance.now();
      const r = await cni(a.ns, "ADD", podEnv(pod, `bench-${name}-${i}`), conf);
      const t1 = performance.now();
      if (r.code !== 0) throw new Error(`CNI ADD ${i}: ${r.stdout}${r.stderr}`);
      const res = JSON.parse(r.stdout) as {
        ips: { address: string }[];
        interfaces?: { name: string; sandbox?: string }[];
      };
      const address = (res.ips[0]?.address ?? "").split("/")[0] as string;
      const iface = res.interfaces?.find((x) => x.sandbox === undefined)?.name;
      if (!iface) throw new Error(`CNI ADD ${i}: no host interface in ${r.stdout}`);
      if (covers(NEW_POOL, address) !== (kind === "new"))
        throw new Error(`pod ${i} (${kind} block) got ${address}`);
      const [route, policy] = await Promise.all([
        routeOnB(b, mon, t0, t1, address),
        policyOnA(a, iface, address, t1),
      ]);
      samples.push({
        kind,
        addMs: t1 - t0,
        routeMs: route.ms,
        early: route.early,
        ...(route.fromStart !== undefined ? { fromStartMs: route.fromStart } : {}),
        policyMs: policy.ms,
        pollMs: policy.pollMs,
        address,
        ...(route.at !== undefined ? { routeAt: route.at } : {}),
      });
    }
    // A's log lines of the announcements (its daemon's stdout may trail B's route).
    await new Promise((r) => setTimeout(r, 1000));
    for (const x of samples)
      if (x.kind === "new" && x.routeAt !== undefined)
        Object.assign(x, announceToB(a, x.address, x.routeAt));
  } finally {
    mon.stop();
  }
  return samples;
}

async function main(): Promise<void> {
  const labs: Lab[] = [];
  const pods: Netns[] = [];
  const cleanup = async () => {
    for (const l of labs) await destroyLab(l);
    for (const p of pods) p.destroy();
  };
  const stop = () => {
    void cleanup().finally(() => process.exit(130));
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  const results: { backend: string; samples: Sample[] }[] = [];
  try {
    for (const b of BACKENDS) {
      results.push({ backend: b, samples: await backend(b as "vxlan" | "bgp", labs, pods) });
      await cleanup();
      labs.length = 0;
      pods.length = 0;
    }
  } finally {
    await cleanup();
  }
  console.log(
    `the pod's path after CNI ADD returned on node A (${PODS} pods per backend, one at a time, alternating existing / new block); ms p50 / p99 / max`,
  );
  console.log(
    "backend | block | pods | ADD itself | route on node B | route before ADD returned | route on B from ADD's start | from A's announcement to B's route | policy in force on A | one iptables-save + ipset save",
  );
  for (const { backend: name, samples } of results)
    for (const kind of ["existing", "new"] as const) {
      const s = samples.filter((x) => x.kind === kind);
      console.log(
        `${name} | ${kind} | ${s.length} | ${fmt(s.map((x) => x.addMs))} | ${fmt(s.map((x) => x.routeMs))} | ${s.filter((x) => x.early).length} | ${fmt(s.flatMap((x) => (x.fromStartMs !== undefined ? [x.fromStartMs] : [])))} | ${fmt(s.flatMap((x) => (x.announceToBMs !== undefined ? [x.announceToBMs] : [])))} | ${fmt(s.map((x) => x.policyMs))} | ${fmt(s.map((x) => x.pollMs))}`,
      );
    }
  for (const { backend: name, samples } of results) {
    const ex = stats(samples.filter((x) => x.kind === "existing").map((x) => x.routeMs));
    const nw = stats(samples.filter((x) => x.kind === "new").map((x) => x.routeMs));
    console.log(
      `${name}: route p50 existing block ${ex.p50.toFixed(1)} ms (goal < 10: ${ex.p50 < 10 ? "met" : "not met"}), p99 new block ${nw.p99.toFixed(1)} ms (goal < 50: ${nw.p99 < 50 ? "met" : "not met"})`,
    );
  }
  const [l1, l5] = readFileSync("/proc/loadavg", "utf8").split(" ");
  console.log(`load average at the end: ${l1} (1 min), ${l5} (5 min)`);
}

await main();
