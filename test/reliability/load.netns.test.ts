// Load (issue 17, reliability): the real `ocelot node run` in its namespace (embedded store,
// `--metrics-address`) with three BGPPeers, each a BIRD 2 in its own namespace behind its own
// veth: an injector that sends N IPv4 /32s (1M under OCELOT_SOAK=1, 100k with OCELOT_LOAD=1), a
// flapper whose session is reset every 2 s (`birdc restart`: NOTIFICATION Cease, administrative
// reset, whenever it is Established at the 2 s tick) and a steady peer with hold time 3 s (our
// keepalives every second). Meanwhile pods are added at 20/s: for each, what the CNI plugin
// leaves for the daemon (a veth, its host side in the node's namespace, the other end in a
// pods namespace, and its WorkloadEndpoint written to the store), without the plugin's own
// process (20 process starts a second would measure the plugin, not the daemon).
// Asserted, always: the injector's session never resets (ours and BIRD's view), all N prefixes
// reach the kernel, every pod's /32 route lands, the flapper really flapped. The timing goals
// (the daemon's worst event-loop delay, ocelot_event_loop_delay_max_seconds, under 1 s; no
// keepalive of ours late, as captured by dumpcap on our side; the steady hold-3 s session never
// reset) are asserted when the machine gives the daemon CPU: an idle Node.js process run beside
// it as a reference saw under 250 ms of delay itself; else the test says so.
// Late, as RFC 4271 has it: §4.4 makes the KeepaliveTime (a third of the hold time) the maximum
// time between our messages, and §10's jitter may only shorten it; so a keepalive is late by
// (the gap on the wire since our previous message - KeepaliveTime) when that is positive. §4.4
// also forbids KEEPALIVEs more often than once a second, so at hold 3 s there is no earlier slot
// and any delay of the event loop shows as lateness: the test asserts that a keepalive is never
// later than the daemon's own worst loop delay (+ 100 ms for the wire: nothing else, such as
// routes queued ahead of it, holds it back) and never a whole KeepaliveTime late (the peer's hold
// timer always keeps more than a third of the hold time in hand). Printed: every figure, p99 of
// the per-second worst delays (ocelot_event_loop_delay_seconds' buckets), the peers' hold timers
// as polled (`show protocols all`), pod route latencies.
// In the suite: 10k prefixes, 6 s of pods; `npm run test:soak`: 1M prefixes, 60 s of load;
// OCELOT_LOAD=1: 100k, 20 s.
// OCELOT_LOAD_PREFIXES / OCELOT_LOAD_SECONDS / OCELOT_LOAD_PODS_PER_S override the size, the load
// phase's length and the pod rate (0: a reference run without pods).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyResource } from "../../src/api/client.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { HANG_MS } from "../helpers/limits.js";
import { httpGetIn, metricSample } from "../helpers/metrics.js";
import { link, Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type BirdPeer, PeerLab, peersUnavailableReason } from "../helpers/peers.js";
import {
  daemonTestsUnavailable,
  type NodeProcess,
  peerStatus,
  startNode,
} from "../node/harness.js";

const SOAK = process.env.OCELOT_SOAK === "1";
const LOAD = process.env.OCELOT_LOAD === "1";
// The suite runs a short form (10k prefixes, 6 s of pods: about a minute at load ~15): the same
// faults and the same assertions, smaller. `npm run test:soak`: 1M prefixes, 60 s; OCELOT_LOAD=1:
// 100k, 20 s (50-200 s at load 15-24).
const skip = skipWithReason(
  "load: prefixes, a flapping peer, pods at 20/s",
  daemonTestsUnavailable() ?? peersUnavailableReason(["bird"]),
);
const N = Number(process.env.OCELOT_LOAD_PREFIXES ?? (SOAK ? 1_000_000 : LOAD ? 100_000 : 10_000));
const LOAD_S = Number(process.env.OCELOT_LOAD_SECONDS ?? (SOAK ? 60 : LOAD ? 20 : 6));
const PODS_PER_S = Number(process.env.OCELOT_LOAD_PODS_PER_S ?? 20);
const FLAP_MS = 2000;
const NODE = "ldnode";
const NODE_AS = 64512;
const V3 = "projectcalico.org/v3";

interface Peer {
  name: string;
  nodeIf: string;
  nodeIp: string;
  ip: string;
  as: number;
  hold: number;
}
const INJ: Peer = {
  name: "inj",
  nodeIf: "eth0",
  nodeIp: "10.98.1.1",
  ip: "10.98.1.2",
  as: 65101,
  hold: 9,
};
const FLAP: Peer = {
  name: "flap",
  nodeIf: "eth1",
  nodeIp: "10.98.2.1",
  ip: "10.98.2.2",
  as: 65102,
  hold: 9,
};
const STEADY: Peer = {
  name: "steady",
  nodeIf: "eth2",
  nodeIp: "10.98.3.1",
  ip: "10.98.3.2",
  as: 65103,
  hold: 3,
};

const birdConf = (p: Peer, statics: string) => `
log "@DIR@/bird.log" { info, warning, error, fatal };
router id ${p.ip};
protocol device { }
protocol static s4 {
  ipv4;
  ${statics}
}
protocol bgp oc {
  local ${p.ip} as ${p.as};
  neighbor ${p.nodeIp} as ${NODE_AS};
  passive on;
  hold time ${p.hold}; keepalive time ${Math.floor(p.hold / 3)};
  error wait time 1, 2;
  ipv4 { import none; export where source = RTS_STATIC; };
}
`;

/** N /32s from 10.0.0.0 up (10.0.0.0/12 holds 1M), as BIRD static routes. */
function routesConf(n: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const a = (10 << 24) + i;
    lines.push(`route ${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}/32 blackhole;`);
  }
  return `${lines.join("\n")}\n`;
}

function fibPrefixes(ns: Netns): number {
  const text = ns.exec("cat", "/proc/net/fib_triestat");
  return Number(/Prefixes:\s+(\d+)/.exec(text.slice(text.indexOf("Main:")))?.[1] ?? 0);
}

/** `ip -batch` inside ns (one process for many commands). */
function ipBatch(ns: Netns, lines: string[]): void {
  const r = spawnSync("ip", ["-n", ns.name, "-batch", "-"], {
    input: `${lines.join("\n")}\n`,
    encoding: "utf8",
    timeout: HANG_MS,
  });
  if (r.status !== 0) throw new Error(`ip -batch in ${ns.name}: ${r.stderr}`);
}

/** BIRD's hold timer for protocol oc: seconds left and the negotiated hold time. */
function holdTimer(b: BirdPeer): { left: number; hold: number } | undefined {
  const m = /Hold timer:\s+([\d.]+)\/(\d+)/.exec(b.cmd("show", "protocols", "all", "oc"));
  return m ? { left: Number(m[1]), hold: Number(m[2]) } : undefined;
}

/**
 * dumpcap in ns on iface: our BGP segments that carry data (KEEPALIVEs, UPDATEs) towards the
 * peer, for the gaps between them as they left (not as the peer's loaded BIRD read them).
 */
function capture(ns: Netns, iface: string, from: string, file: string): ChildProcess {
  const filter = `src host ${from} and tcp port 179 and (ip[2:2] - ((ip[0]&0xf)<<2) - ((tcp[12]&0xf0)>>2)) > 0`;
  return spawn(
    "ip",
    ["netns", "exec", ns.name, "dumpcap", "-q", "-i", iface, "-f", filter, "-w", file],
    {
      stdio: "ignore",
    },
  );
}

/** The gaps (s) between captured segments: longest and median, with the count, from a dumpcap file. */
function gaps(file: string): { gap: number; median: number; count: number } {
  const r = spawnSync("tshark", ["-r", file, "-T", "fields", "-e", "frame.time_epoch"], {
    encoding: "utf8",
    timeout: HANG_MS,
  });
  const t = r.stdout.split("\n").filter(Boolean).map(Number);
  const d = t
    .slice(1)
    .map((x, i) => x - (t[i] as number))
    .sort((a, b) => a - b);
  return { gap: d.at(-1) ?? 0, median: d[d.length >> 1] ?? 0, count: t.length };
}

/**
 * A reference beside the daemon: an idle Node.js process with the same event-loop monitor and a
 * 1 s timer; on SIGTERM it prints its worst loop delay and its timer's worst lateness (ms). What
 * it sees is the machine's share, not the daemon's work.
 */
const REFERENCE = `
const { monitorEventLoopDelay } = require("node:perf_hooks");
const h = monitorEventLoopDelay({ resolution: 10 });
h.enable();
let next = Date.now() + 1000, late = 0;
setInterval(() => { late = Math.max(late, Date.now() - next); next = Date.now() + 1000; }, 1000);
process.on("SIGTERM", () => {
  process.stdout.write(JSON.stringify({ loopMs: h.max / 1e6, timerLateMs: late }));
  process.exit(0);
});
`;

const podIp = (i: number) => `10.200.${i >> 8}.${i & 255}`;
const podIf = (i: number) => `oclld${String(i).padStart(7, "0")}`;

interface PeerView {
  address: string;
  state: string;
  establishedTransitions?: number;
  prefixes?: { advertised: number };
}

describe.skipIf(skip)("load: a peer sends N prefixes, another flaps, pods arrive at 20/s", () => {
  let dir: string;
  let store: SqliteDatastore;
  let lab: PeerLab;
  let node: Netns;
  let pods: Netns;
  const peerNs: Netns[] = [];
  const birds = new Map<string, BirdPeer>();
  let daemon: NodeProcess | undefined;
  let caps: { p: Peer; file: string; proc: ChildProcess }[] = [];
  const port = 20_000 + Math.floor(Math.random() * 20_000);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-load-"));
    store = new SqliteDatastore(join(dir, "store.db"));
    await applyResource(store, {
      apiVersion: V3,
      kind: "BGPConfiguration",
      metadata: { name: "default" },
      spec: { nodeToNodeMeshEnabled: false, asNumber: NODE_AS },
    });
    // The pods' pool (so the daemon makes no default one); its addresses are written by hand.
    await applyResource(store, {
      apiVersion: V3,
      kind: "IPPool",
      metadata: { name: "ld-pods" },
      spec: { cidr: "10.200.0.0/16", blockSize: 26, natOutgoing: false },
    });
    for (const p of [INJ, FLAP, STEADY])
      await applyResource(store, {
        apiVersion: V3,
        kind: "BGPPeer",
        metadata: { name: `ld-${p.name}` },
        // Each peer on its own link: our source is that link's address, not the node's IP.
        spec: { node: NODE, peerIP: p.ip, asNumber: p.as, sourceAddress: "None" },
      });
    lab = new PeerLab();
    node = Netns.create("ldn");
    pods = Netns.create("ldp");
    for (const p of [INJ, FLAP, STEADY]) {
      const ns = Netns.create(`ld${p.name[0]}`);
      peerNs.push(ns);
      link(node, p.nodeIf, `${p.nodeIp}/24`, ns, "eth0", `${p.ip}/24`);
      const statics =
        p === INJ
          ? `include "${join(lab.subdir(p.name), "routes.conf")}";`
          : `route 10.96.${p.as - 65100}.0/24 blackhole;`;
      if (p === INJ) writeFileSync(join(lab.subdir(p.name), "routes.conf"), routesConf(N));
      birds.set(p.name, lab.startBird(ns, p.name, birdConf(p, statics)));
    }
    // The injector's statics first (1M take a few seconds).
    await waitFor(
      "the injector's statics loaded",
      () => {
        const m = /Routes:\s+(\d+) imported/.exec(
          (birds.get("inj") as BirdPeer).cmd("show", "protocols", "all", "s4"),
        );
        return m !== null && Number(m[1]) >= N;
      },
      HANG_MS,
      200,
    );
  }, HANG_MS * 2);

  afterAll(async () => {
    for (const c of caps) if (c.proc.exitCode === null) c.proc.kill("SIGKILL");
    await daemon?.stop();
    // OCELOT_LOAD_LOG=path: the daemon's log kept there.
    if (process.env.OCELOT_LOAD_LOG && daemon)
      writeFileSync(process.env.OCELOT_LOAD_LOG, daemon.log);
    lab?.cleanup();
    for (const ns of [...peerNs, pods, node]) ns?.destroy();
    await store?.close();
    if (dir && !process.env.KEEP_PEERS) rmSync(dir, { recursive: true, force: true });
  }, HANG_MS * 2);

  it(
    `${N} prefixes from one peer, another reset every 2 s, pods at ${PODS_PER_S}/s for ${LOAD_S} s: loop delay < 1 s, keepalives never late, no other session reset, every route lands`,
    async () => {
      const base = fibPrefixes(node);
      // Our segments to the injector and the steady peer, from the daemon's start.
      caps = [INJ, STEADY].map((p) => {
        const file = join(dir, `${p.name}.pcapng`);
        return { p, file, proc: capture(node, p.nodeIf, p.nodeIp, file) };
      });
      daemon = await startNode(node, [
        "--nodename",
        NODE,
        "--ip",
        `${INJ.nodeIp}/24`,
        "--datastore",
        `file:${join(dir, "store.db")}`,
        "--status-socket",
        join(dir, "node.sock"),
        "--mtu-file",
        join(dir, "mtu"),
        "--metrics-address",
        `127.0.0.1:${port}`,
        "--log-level",
        "info",
      ]);
      const peers = () => peerStatus<PeerView>(join(dir, "node.sock"));
      const peer = (p: Peer) => peers().find((x) => x.address === p.ip);
      await waitFor(
        "the three sessions Established",
        () => [INJ, FLAP, STEADY].every((p) => peer(p)?.state === "Established"),
        HANG_MS,
        100,
      );
      const reference = spawn(process.execPath, ["-e", REFERENCE], {
        stdio: ["ignore", "pipe", "ignore"],
      });
      let refOut = "";
      reference.stdout?.on("data", (d: Buffer) => {
        refOut += d.toString();
      });
      const t0 = performance.now();
      const flapBird = birds.get("flap") as BirdPeer;
      const watched = [INJ, STEADY].map((p) => ({
        p,
        bird: birds.get(p.name) as BirdPeer,
        minLeft: Infinity,
      }));

      // The load phase: at least LOAD_S, and until all N prefixes are in our kernel.
      const podWritten: number[] = [];
      const podLanded = new Map<number, number>();
      let resets = 0;
      let flapTicks = 0;
      let nextFlap = t0 + FLAP_MS;
      let nextPoll = t0;
      let nextFib = t0;
      let allIn: number | undefined;
      let fibCount = 0;
      let podPolls = 0;
      const landed = () => {
        const seen = node.ipJson<{ dst: string; dev?: string }[]>(
          "route",
          "show",
          "table",
          "main",
          "proto",
          "202",
        );
        const now = performance.now();
        podPolls++;
        for (const r of seen) {
          const m = /^10\.200\.(\d+)\.(\d+)$/.exec(r.dst);
          if (!m) continue;
          const i = Number(m[1]) * 256 + Number(m[2]);
          if (r.dev === podIf(i) && !podLanded.has(i)) podLanded.set(i, now);
        }
      };
      while (true) {
        const now = performance.now();
        const elapsed = (now - t0) / 1000;
        if (elapsed >= LOAD_S && allIn !== undefined) break;
        if (elapsed > LOAD_S + 400)
          throw new Error(
            `only ${fibCount} of ${N} prefixes in the kernel after ${Math.round(elapsed)} s`,
          );
        // Pods due by now (20/s for LOAD_S, then no more), made in one batch per namespace.
        const due =
          Math.min(LOAD_S * PODS_PER_S, Math.floor(elapsed * PODS_PER_S)) - podWritten.length;
        if (due > 0) {
          const first = podWritten.length;
          const idx = Array.from({ length: due }, (_, k) => first + k);
          ipBatch(
            node,
            idx.map((i) => `link add ${podIf(i)} type veth peer name p${i} netns ${pods.name}`),
          );
          ipBatch(
            pods,
            idx.map((i) => `link set p${i} up`),
          );
          for (const i of idx) {
            await applyResource(store, {
              apiVersion: V3,
              kind: "WorkloadEndpoint",
              metadata: { name: `${NODE}-k8s-pod${i}-eth0`, namespace: "default" },
              spec: {
                node: NODE,
                orchestrator: "k8s",
                pod: `pod${i}`,
                endpoint: "eth0",
                interfaceName: podIf(i),
                ipNetworks: [`${podIp(i)}/32`],
              },
            });
            podWritten.push(performance.now());
          }
        }
        if (now >= nextFlap) {
          nextFlap += FLAP_MS;
          flapTicks++;
          if (flapBird.state("oc") === "Established") {
            flapBird.cmd("restart", "oc");
            resets++;
          }
        }
        if (now >= nextPoll) {
          nextPoll = now + 500;
          for (const w of watched) {
            const h = holdTimer(w.bird);
            if (h) w.minLeft = Math.min(w.minLeft, h.left);
          }
        }
        if (now >= nextFib) {
          nextFib = now + 1000;
          fibCount = fibPrefixes(node) - base;
          if (allIn === undefined && fibCount >= N) allIn = (performance.now() - t0) / 1000;
          landed();
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      const loadS = (performance.now() - t0) / 1000;
      for (const c of caps) c.proc.kill("SIGTERM");
      reference.kill("SIGTERM");
      await new Promise((r) => (reference.exitCode !== null ? r(0) : reference.once("exit", r)));
      const ref = JSON.parse(refOut || "{}") as { loopMs?: number; timerLateMs?: number };
      await Promise.all(
        caps.map((c) =>
          c.proc.exitCode !== null ? undefined : new Promise((r) => c.proc.once("exit", r)),
        ),
      );
      const wire = caps.map((c) => ({
        name: c.p.name,
        ka: Math.floor(c.p.hold / 3),
        ...gaps(c.file),
      }));
      await waitFor(
        "every pod's route in the kernel",
        () => {
          landed();
          return podLanded.size === podWritten.length;
        },
        // The agent takes pods in passes that grow with their number (25-41 s a pass for 200-400
        // pods at load 19): a limit for a hang, not for speed.
        SOAK ? 900_000 : 300_000,
        500,
      ).catch((err) => {
        const missing = podWritten.map((_, i) => i).filter((i) => !podLanded.has(i));
        throw new Error(
          `${(err as Error).message}: ${missing.length} missing (${missing.slice(0, 5).map(podIf).join(", ")}...)\n${daemon?.lines
            .filter((l) => l.level >= 40)
            .slice(-5)
            .map((l) => JSON.stringify(l).slice(0, 600))
            .join("\n")}`,
        );
      });

      const [code, text] = httpGetIn(node, port, "/metrics");
      expect(code).toBe(200);
      const loopMax = metricSample(text, "ocelot_event_loop_delay_max_seconds") as number;
      const seconds = metricSample(text, "ocelot_event_loop_delay_seconds_count") as number;
      const le = [
        ...text.matchAll(/^ocelot_event_loop_delay_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm),
      ].map((m) => [m[1] === "+Inf" ? Infinity : Number(m[1]), Number(m[2])] as const);
      const p99 = le.find(([, n]) => n >= Math.ceil(seconds * 0.99))?.[0];
      const lat = podWritten.map((w, i) => (podLanded.get(i) as number) - w).sort((a, b) => a - b);
      const v = peers();
      const byIp = (p: Peer) => v.find((x) => x.address === p.ip);
      const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
      // The peer's view (BIRD's hold timer as polled every 500 ms, after its own reading): the
      // margin its hold timer kept. Lateness itself is measured on the wire (wire, below).
      const margin = watched.map((w) => ({ name: w.p.name, hold: w.p.hold, minLeft: w.minLeft }));
      console.log(
        `load: ${N} prefixes in the kernel ${allIn?.toFixed(1)} s after the sessions were up; ${podWritten.length} pods in ${loadS.toFixed(1)} s (${(podWritten.length / loadS).toFixed(1)}/s), route landed median ${Math.round(lat[lat.length >> 1] ?? 0)} ms, max ${Math.round(lat.at(-1) ?? 0)} ms (polled every ~1 s, ${podPolls} polls); flapper reset ${resets} times in ${flapTicks} ticks of 2 s, Established ${byIp(FLAP)?.establishedTransitions} times; the steady session Established ${byIp(STEADY)?.establishedTransitions} times; event loop: worst ${(loopMax * 1000).toFixed(0)} ms, p99 of ${seconds} per-second worsts <= ${p99 === undefined ? "?" : p99 * 1000} ms; ${margin.map((l) => `${l.name}'s hold timer (${l.hold} s) never below ${l.minLeft.toFixed(3)} s`).join(", ")}; on the wire (dumpcap on our side): ${wire.map((w) => `to ${w.name} ${w.count} segments, gaps median ${w.median.toFixed(2)} s, longest ${w.gap.toFixed(2)} s (KeepaliveTime ${w.ka} s: at most ${Math.max(0, w.gap - w.ka).toFixed(2)} s late)`).join(", ")}; advertised to the peers ${[INJ, FLAP, STEADY].map((p) => byIp(p)?.prefixes?.advertised).join("/")}; an idle Node.js process beside it: worst loop delay ${ref.loopMs?.toFixed(0)} ms, its 1 s timer at most ${ref.timerLateMs} ms late; load ${load}`,
      );
      // Nothing lost, whatever the machine's load: the injector's session never reset, every
      // prefix and every pod's route in the kernel, the flapper really flapped.
      expect(byIp(INJ)?.state).toBe("Established");
      expect(byIp(INJ)?.establishedTransitions, "the injector's session reset").toBe(1);
      expect((birds.get("inj") as BirdPeer).state("oc")).toBe("Established");
      expect(resets, "the flapper was reset").toBeGreaterThan(0);
      expect(byIp(FLAP)?.establishedTransitions as number).toBeGreaterThan(1);
      expect(fibCount).toBeGreaterThanOrEqual(N);
      expect(podLanded.size).toBe(podWritten.length);
      expect(podWritten.length).toBeGreaterThanOrEqual((LOAD_S - 1) * PODS_PER_S);
      // The timing goals (loop delay under 1 s, no keepalive late, so the hold-3 s session never
      // drops) are the daemon's only when the machine gives it CPU: judged when the idle
      // reference process's own worst delay stayed under 250 ms, else said why not.
      const machineMs = Math.max(ref.loopMs ?? Infinity, ref.timerLateMs ?? Infinity);
      if (machineMs < 250) {
        expect(loopMax, "the event loop's worst delay in seconds").toBeLessThan(1);
        for (const w of wire) {
          const lateS = w.gap - w.ka;
          // Never held back by more than the loop's own delay (see the header).
          expect(lateS, `${w.name}: our keepalive late by (s), past the loop delay`).toBeLessThan(
            loopMax + 0.1,
          );
          // Never a whole KeepaliveTime late: the peer's hold timer keeps a third in hand.
          expect(lateS, `${w.name}: our keepalive late by (s)`).toBeLessThan(w.ka);
        }
        expect(byIp(STEADY)?.establishedTransitions, "the steady session reset").toBe(1);
      } else
        console.log(
          `load: timing goals not judged: an idle Node.js process on this machine was itself ${Math.round(machineMs)} ms late (load ${load})`,
        );
    },
    (LOAD_S + 1500) * 1000,
  );
});
