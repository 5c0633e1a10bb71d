// Benchmark of the overlay, on the overlay lab of the tests (test/node/overlay_lab.ts: node
// namespaces behind a router namespace, the real `ocelot node run` and `ocelot-cni`). Needs root,
// iperf3 and tshark. Usage: npx tsx bench/overlay.ts [--runs 2] [--seconds 5] [--blocks 200]
// [--only throughput|blocks] [--breakdown] [--old DIR]
// 1. Pod-to-pod TCP throughput (iperf3) between two nodes of one subnet, natively (vxlanMode
//    CrossSubnet routes same-subnet traffic without encapsulation) and through VXLAN (Always),
//    the same pods and namespaces, alternating; prints both and the ratio (goal >= 0.8x).
// 2. A new node's block: for each of N new Nodes (fabric address, VXLAN tunnel address and MAC
//    written first), the time from writing its block affinity to the datastore to the route,
//    the neighbour and the FDB entry on both running nodes (seen by `ip monitor`/`bridge
//    monitor` as the kernel reports them); prints p50/p99/max (goal p99 <= 50 ms). The new Node
//    is written first and both daemons' passes for it are let finish (each logged a pass that
//    changed its kernel, then nothing for 100 ms): a node registers before its first block. Side
//    by side, in the same loop: the kernel's own time, the same three entries written over
//    netlink by this process (the fast path's OverlaySocket and a KernelFib: one sendmsg) into a
//    namespace of its own with the same VXLAN device, until its monitors report them; printed
//    as ratios. With --old DIR (another build's bin/, beside its dist/ and native/: a copy of
//    main's) a second lab runs that build, the two measured block by block, alternating which
//    goes first, and their ratio is printed.
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { planOverlayDelta } from "../src/felix/overlay_delta.js";
import { applyOverlayDelta } from "../src/felix/overlay_fast.js";
import { OverlaySocket } from "../src/felix/overlay_socket.js";
import { KernelFib } from "../src/fib/kernel_fib.js";
import { encodeAffinity, IpamKeys } from "../src/ipam/records.js";
import { parseCidr } from "../src/lib/ip.js";
import { tunnelMac } from "../src/node/tunnel_addrs.js";
import { runSync } from "../test/helpers/limits.js";
import { Netns, waitFor } from "../test/helpers/netns.js";
import { buildLab, destroyLab, type Lab, setPools } from "../test/node/overlay_lab.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "2" },
    seconds: { type: "string", default: "5" },
    blocks: { type: "string", default: "200" },
    only: { type: "string" },
    // Where each block's time goes on each node, from the daemons' fast-path lines (at debug).
    breakdown: { type: "boolean", default: false },
    // Another build's bin/ directory, measured beside this one (see main).
    old: { type: "string" },
  },
});
if (values.breakdown) process.env.NODED_LEVEL = "debug";
const RUNS = Number(values.runs);
const SECONDS = Number(values.seconds);
const BLOCKS = Number(values.blocks);

function iperf(client: Netns, server: Netns, address: string): number {
  const srv = spawn("ip", ["netns", "exec", server.name, "iperf3", "-s", "-1", "-B", address], {
    stdio: "ignore",
  });
  try {
    for (let i = 0; i < 50; i++) {
      const r = runSync("ip", [
        "netns",
        "exec",
        client.name,
        "iperf3",
        "-c",
        address,
        "-t",
        String(SECONDS),
        "-J",
      ]);
      const j = (r.stdout.trim() ? JSON.parse(r.stdout) : {}) as {
        error?: string;
        end?: { sum_received?: { bits_per_second: number } };
      };
      const bps = j.end?.sum_received?.bits_per_second;
      if (r.status === 0 && bps !== undefined) return bps / 1e9;
      // The server not listening yet: try again (bounded).
      runSync("sleep", ["0.2"]);
    }
    throw new Error("iperf3 never connected");
  } finally {
    srv.kill();
  }
}

async function throughput(lab: Lab): Promise<void> {
  const [a, b] = lab.nodes as [Lab["nodes"][0], Lab["nodes"][0]];
  const route = () =>
    lab.nodes[0]?.ns.ipJson<{ dst: string; dev?: string }[]>("route", "show", "proto", "202") ?? [];
  const mode = async (m: string) => {
    await setPools(lab.store, { vxlanMode: m }, [4]);
    await waitFor(`the ${m} route`, () =>
      route().some((r) => r.dev === (m === "Always" ? "vxlan.ocelot" : "eth0")),
    );
    await waitFor(
      "the pod ping",
      () =>
        runSync("ip", [
          "netns",
          "exec",
          (a.pod as Netns).name,
          "ping",
          "-c1",
          "-W1",
          b.pod4 as string,
        ]).status === 0,
    );
  };
  const native: number[] = [];
  const vxlan: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    await mode("CrossSubnet");
    native.push(iperf(a.pod as Netns, b.pod as Netns, b.pod4 as string));
    await mode("Always");
    vxlan.push(iperf(a.pod as Netns, b.pod as Netns, b.pod4 as string));
  }
  const f = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(", ");
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  console.log(
    `pod-to-pod TCP, ${SECONDS} s per run, pod MTU ${runSync("cat", [`${lab.dir}/${a.name}.mtu`]).stdout.trim()}`,
  );
  console.log(`  native (same subnet, no encapsulation): ${f(native)} Gbit/s`);
  console.log(`  VXLAN (vxlan.ocelot):                   ${f(vxlan)} Gbit/s`);
  console.log(
    `  ratio VXLAN/native: ${(mean(vxlan) / mean(native)).toFixed(2)} (per run: ${vxlan.map((v, i) => (v / (native[i] as number)).toFixed(2)).join(", ")}; goal >= 0.8)`,
  );
}

/** Lines of a monitor process, each with the time it arrived. */
class Monitor {
  private readonly proc: ChildProcess;
  readonly seen: { at: number; line: string }[] = [];
  constructor(cmd: string, args: string[]) {
    this.proc = spawn(cmd, args, { stdio: ["ignore", "pipe", "ignore"] });
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
  firstAfter(t0: number, re: RegExp): number | undefined {
    // Lines arrive in time order: start at the first at or after t0 (binary search).
    let lo = 0;
    let hi = this.seen.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.seen[mid] as { at: number }).at < t0) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.seen.length; i++) {
      const s = this.seen[i] as { at: number; line: string };
      if (re.test(s.line)) return s.at;
    }
    return undefined;
  }
  stop(): void {
    this.proc.kill();
  }
}

const PASS = /^Agent: (data plane converged|kernel drift repaired)$/;
const passLines = (lab: Lab) =>
  lab.nodes.map((n) => (n.daemon?.lines ?? []).filter((l) => PASS.test(l.msg)).length);

/**
 * Waits until each daemon logged a pass that changed its kernel since `before` (the new Node's:
 * its address joins an ipset) and then logged nothing for 100 ms.
 */
async function settled(lab: Lab, before: number[]): Promise<void> {
  let prev = "";
  await waitFor(
    "both daemons' passes for the new Node",
    () => {
      const key = lab.nodes.map((n) => n.daemon?.lines.length ?? 0).join();
      const done = passLines(lab).every((c, i) => c > (before[i] as number)) && key === prev;
      prev = key;
      return done;
    },
    60_000,
    100,
  );
}

const q = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
const figures = (xs: number[]) => {
  const sorted = [...xs].sort((x, y) => x - y);
  return `p50 ${q(sorted, 50).toFixed(1)} ms, p99 ${q(sorted, 99).toFixed(1)} ms, max ${sorted[sorted.length - 1]?.toFixed(1)} ms`;
};

/** One build's lab under measurement, with its monitors and figures. */
interface Subject {
  label: string;
  lab: Lab;
  mons: { ip: Monitor; fdb: Monitor }[];
  times: number[];
  phases: Record<string, number[]>;
  slow: { block: string; total: number; nodes: string[] }[];
  /** Fast-path lines that rendered only the new block (a build that says so). */
  incremental: number;
  /** The fast path's warnings (a refused write, ...): each left to the full pass. */
  failures: number;
}

const FAST_FAILED = /^Overlay fast path.*fail/;
const failuresIn = (lines: { msg: string }[]) =>
  lines.filter((l) => FAST_FAILED.test(l.msg)).length;

const esc = (s: string) => s.replace(/\./g, "\\.");

async function subjectOf(label: string, lab: Lab): Promise<Subject> {
  await setPools(lab.store, { vxlanMode: "Always" }, [4]);
  for (const n of lab.nodes)
    await waitFor(
      `${n.name}'s VXLAN device`,
      () => n.ns.ipJson<unknown[]>("link", "show", "type", "vxlan").length > 0,
    );
  return {
    label,
    lab,
    mons: lab.nodes.map((n) => ({
      ip: new Monitor("ip", ["-n", n.ns.name, "monitor", "route", "neigh"]),
      fdb: new Monitor("bridge", ["-n", n.ns.name, "monitor", "fdb"]),
    })),
    times: [],
    phases: {
      "write -> watch delivered": [],
      "delivered -> fast path starts": [],
      "render + plan": [],
      "netlink writes start -> ip monitor line": [],
      "netlink writes start -> all acknowledged": [],
      "netlink writes start -> neighbour line": [],
      "netlink writes start -> FDB line": [],
      "netlink writes start -> route line": [],
      unmatched: [],
    },
    slow: [],
    incremental: 0,
    failures: 0,
  };
}

/** Block i of the series on one subject's lab: its Node, settled, then its affinity, timed. */
async function measureBlock(s: Subject, i: number): Promise<void> {
  const { lab, mons, phases } = s;
  const keys = new IpamKeys();
  const name = `bench-n${i}`;
  const before = passLines(lab);
  const { block, tunnel, fabric, mac } = blockOf(i);
  await lab.store.update(
    `/ocelot/resources/v3/nodes/${name}`,
    JSON.stringify({
      apiVersion: "projectcalico.org/v3",
      kind: "Node",
      metadata: { name },
      spec: {
        bgp: { ipv4Address: `${fabric}/24` },
        ipv4VXLANTunnelAddr: tunnel,
        vxlanTunnelMACAddr: mac,
      },
    }),
  );
  // Let the Node settle on both nodes (its own convergence is not what is measured).
  await settled(lab, before);
  const t0 = performance.now();
  await lab.store.update(
    keys.affinity(name, parseCidr(block)),
    encodeAffinity({ state: "confirmed", node: name, cidr: block }),
  );
  let perNode: number[] = [];
  let perEntry: { r: number; n: number; f: number }[] = [];
  const done = await waitFor(
    `${block} on every node`,
    () => {
      const at: number[] = [];
      const entries: { r: number; n: number; f: number }[] = [];
      for (const m of mons) {
        const r = m.ip.firstAfter(
          t0,
          new RegExp(`^${esc(block)} via ${esc(tunnel)} dev vxlan\\.ocelot`),
        );
        const n = m.ip.firstAfter(
          0,
          new RegExp(`^${esc(tunnel)} dev vxlan\\.ocelot lladdr ${mac}`),
        );
        const f = m.fdb.firstAfter(0, new RegExp(`^${mac} dev vxlan\\.ocelot dst ${esc(fabric)}`));
        if (r === undefined || n === undefined || f === undefined) return undefined;
        at.push(Math.max(r, n, f));
        entries.push({ r, n, f });
      }
      perNode = at;
      perEntry = entries;
      return Math.max(...at);
    },
    60_000,
    2,
  );
  s.times.push(done - t0);
  if (!values.breakdown) return;
  // Wall clock as Date.now() reads it (the daemons' arrivedAt is on the same clock;
  // performance.timeOrigin differs between processes by milliseconds).
  const toWall = (t: number) => Date.now() - (performance.now() - t);
  const wall = toWall(t0);
  // The fast path's line of this write on each node (its fields: daemon.ts overlayFast).
  await new Promise((r) => setTimeout(r, 20));
  const parts: string[] = [];
  for (const [k, node] of lab.nodes.entries()) {
    const line = node.daemon?.lines.find(
      (l) =>
        l.msg === "Overlay fast path applied" &&
        typeof l.arrivedAt === "number" &&
        l.arrivedAt >= wall - 1,
    ) as
      | {
          arrivedAt: number;
          waitMs: number;
          renderMs: number;
          entriesMs: number;
          routesMs: number;
          removedMs: number;
          ms: number;
        }
      | undefined;
    if (!line) {
      phases.unmatched?.push(1);
      continue;
    }
    if ((line as { incremental?: boolean }).incremental === true) s.incremental++;
    const kernelAt = toWall(perNode[k] as number);
    phases["write -> watch delivered"]?.push(line.arrivedAt - wall);
    phases["delivered -> fast path starts"]?.push(line.waitMs);
    phases["render + plan"]?.push(line.renderMs);
    phases["netlink writes start -> ip monitor line"]?.push(
      kernelAt - (line.arrivedAt + line.waitMs + line.renderMs),
    );
    const start = line.arrivedAt + line.waitMs + line.renderMs;
    const e = perEntry[k] as { r: number; n: number; f: number };
    // The neighbour and FDB entries may predate the write (a Node's earlier block): only
    // those seen after it count.
    if (e.n >= t0) phases["netlink writes start -> neighbour line"]?.push(toWall(e.n) - start);
    if (e.f >= t0) phases["netlink writes start -> FDB line"]?.push(toWall(e.f) - start);
    phases["netlink writes start -> route line"]?.push(toWall(e.r) - start);
    phases["netlink writes start -> all acknowledged"]?.push(
      Math.max(line.entriesMs, line.routesMs) + line.removedMs,
    );
    const f = (x: number) => x.toFixed(1);
    parts.push(
      `${node.name}: delivered ${f(line.arrivedAt - wall)}, started +${f(line.waitMs)}, rendered +${f(line.renderMs)}, kernel +${f(kernelAt - (line.arrivedAt + line.waitMs + line.renderMs))}`,
    );
    // Lines of this block are not needed again.
    const gone = node.daemon?.lines.splice(0, node.daemon.lines.indexOf(line as never) + 1);
    s.failures += failuresIn(gone ?? []);
  }
  s.slow.push({ block, total: done - t0, nodes: parts });
}

/** The i-th new node's block, tunnel address, fabric address and VTEP MAC. */
function blockOf(i: number): { block: string; tunnel: string; fabric: string; mac: string } {
  const third = 100 + Math.floor(i / 4);
  const fourth = (i % 4) * 64;
  return {
    block: `10.232.${third}.${fourth}/26`,
    tunnel: `10.232.${third}.${fourth + 1}`,
    fabric: `10.31.1.${(i % 200) + 40}`,
    mac: tunnelMac(`bench-n${i}`, 4),
  };
}

async function blockLatency(subjects: Subject[]): Promise<void> {
  const reference: number[] = [];
  // The reference namespace: a VXLAN device as the daemons make it, written to by this process.
  const ref = Netns.create("bovk");
  ref.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1");
  ref.ip("addr", "add", "10.31.9.11/24", "dev", "v0");
  ref.ip("link", "set", "v0", "up");
  ref.ip("link", "set", "v1", "up");
  ref.ip(
    "link",
    "add",
    "vxlan.ocelot",
    "type",
    "vxlan",
    "id",
    "4096",
    "local",
    "10.31.9.11",
    "dstport",
    "4789",
    "nolearning",
    "dev",
    "v0",
  );
  ref.ip("addr", "add", "10.232.250.1/32", "dev", "vxlan.ocelot");
  ref.ip("link", "set", "vxlan.ocelot", "up");
  const refMon = {
    ip: new Monitor("ip", ["-n", ref.name, "monitor", "route", "neigh"]),
    fdb: new Monitor("bridge", ["-n", ref.name, "monitor", "fdb"]),
  };
  const refFib = await KernelFib.open({ netns: ref.name, protocols: [202] });
  // The same socket as the daemons' fast path: the three entries in one sendmsg.
  const refSock = OverlaySocket.open(ref.name);
  const refPresent = new Set(["vxlan.ocelot"]);
  const none = { devices: [], neighbours: [], fdb: [], routes: [], podMtu: 1450, warnings: [] };
  try {
    await new Promise((r) => setTimeout(r, 500));
    for (let i = 0; i < BLOCKS; i++) {
      // The builds alternate which goes first.
      const order = i % 2 === 0 ? subjects : [...subjects].reverse();
      for (const s of order) await measureBlock(s, i);
      const { block, tunnel, fabric, mac } = blockOf(i);
      // The kernel's own time for the same three entries, written over netlink by this process.
      const want = {
        ...none,
        neighbours: [{ dev: "vxlan.ocelot", dst: tunnel, lladdr: mac }],
        fdb: [{ dev: "vxlan.ocelot", mac, dst: fabric }],
        routes: [
          {
            family: 4 as const,
            dst: block,
            protocol: 202,
            nexthops: [{ gateway: tunnel, dev: "vxlan.ocelot", onlink: true }],
          },
        ],
      };
      const r0 = performance.now();
      const applied = await applyOverlayDelta(planOverlayDelta(none, want, refPresent), {
        fib: refFib,
        neigh: refSock,
      });
      if (applied.failures.length > 0) throw new Error(JSON.stringify(applied.failures));
      const rdone = await waitFor(
        `${block} in the reference namespace`,
        () => {
          const r = refMon.ip.firstAfter(r0, new RegExp(`^${esc(block)} via ${esc(tunnel)} dev`));
          const n = refMon.ip.firstAfter(
            r0,
            new RegExp(`^${esc(tunnel)} dev vxlan\\.ocelot lladdr`),
          );
          const f = refMon.fdb.firstAfter(r0, new RegExp(`^${mac} dev vxlan\\.ocelot dst`));
          return r === undefined || n === undefined || f === undefined
            ? undefined
            : Math.max(r, n, f);
        },
        60_000,
        2,
      );
      reference.push(rdone - r0);
    }
  } finally {
    refMon.ip.stop();
    refMon.fdb.stop();
    refSock.close();
    await refFib.close();
    ref.destroy();
    for (const s of subjects)
      for (const m of s.mons) {
        m.ip.stop();
        m.fdb.stop();
      }
  }
  for (const s of subjects)
    for (const node of s.lab.nodes) s.failures += failuresIn(node.daemon?.lines ?? []);
  const p = (xs: number[], pct: number) =>
    q(
      [...xs].sort((x, y) => x - y),
      pct,
    );
  const refP50 = p(reference, 50);
  const refP99 = p(reference, 99);
  console.log(
    `the kernel's own time, the same entries written over netlink (one sendmsg) by this process into a namespace (${reference.length} blocks): ${figures(reference)}`,
  );
  for (const s of subjects) {
    console.log(
      `${s.label}: a new node's block, affinity written -> route + neighbour + FDB on both other nodes (${s.times.length} blocks): ${figures(s.times)} (goal p99 <= 50 ms); ` +
        `${(p(s.times, 50) / refP50).toFixed(1)}x the kernel's own time at p50, ${(p(s.times, 99) / refP99).toFixed(1)}x at p99; fast-path failures logged: ${s.failures}`,
    );
    if (values.breakdown) {
      console.log("  where a block's time goes, per node (from the daemons' fast-path lines):");
      for (const [name, xs] of Object.entries(s.phases))
        if (name === "unmatched")
          console.log(
            `    writes with no fast-path line on a node: ${xs.length}; lines that rendered the new block alone: ${s.incremental}`,
          );
        else if (xs.length > 0) console.log(`    ${name}: ${figures(xs)}`);
      console.log("  the 5 slowest blocks (ms):");
      for (const b of s.slow.sort((x, y) => y.total - x.total).slice(0, 5))
        console.log(`    ${b.block} ${b.total.toFixed(1)}: ${b.nodes.join("; ")}`);
    }
  }
  if (subjects.length === 2) {
    const [a, b] = subjects as [Subject, Subject];
    console.log(
      `${b.label} / ${a.label}: p50 ${(p(b.times, 50) / p(a.times, 50)).toFixed(2)}x, p99 ${(p(b.times, 99) / p(a.times, 99)).toFixed(2)}x`,
    );
  }
  const [l1, l5] = readFileSync("/proc/loadavg", "utf8").split(" ");
  console.log(`  load average at the end: ${l1} (1 min), ${l5} (5 min)`);
}

async function main(): Promise<void> {
  const labs: Lab[] = [];
  const stop = () => {
    void Promise.all(labs.map((l) => destroyLab(l))).finally(() => process.exit(130));
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  const build = async (short: string, bin: string | undefined): Promise<Lab> => {
    if (bin === undefined) delete process.env.OCELOT_BIN_DIR;
    else process.env.OCELOT_BIN_DIR = bin;
    try {
      return await buildLab(
        short,
        [["bov-a", "bov-b"]],
        () => ["--networking-backend", "vxlan"],
        [4],
        { vxlanMode: "CrossSubnet" },
        (lab) => labs.push(lab),
      );
    } finally {
      delete process.env.OCELOT_BIN_DIR;
    }
  };
  try {
    const lab = await build("bov", undefined);
    if (values.only !== "blocks") await throughput(lab);
    if (values.only !== "throughput") {
      const subjects: Subject[] = [];
      // --old DIR: another build's bin/ (e.g. a copy of main's bin/, dist/, native/), its lab
      // measured in the same loop, the two alternating block by block.
      if (values.old)
        subjects.push(await subjectOf(`old (${values.old})`, await build("bovo", values.old)));
      subjects.push(await subjectOf("this build", lab));
      await blockLatency(subjects);
    }
  } finally {
    for (const l of labs) await destroyLab(l);
  }
}

await main();
