// Memory of the real `ocelot bgpd` across session resets (issue 17, peer flaps): bgpd peered
// with two BIRDs, each in its own namespace; one session is reset FLAPS times (20 per suite run,
// 200 under OCELOT_SOAK=1; OCELOT_FLAPS=n sets it), in turn by BIRD's NOTIFICATION (`birdc restart`, Cease) and by BIRD's kernel
// answering our segments with RST, each until BIRD's route has left our kernel, then lifted
// until it is back. bgpd's JS heap is read from heap snapshots it writes on SIGUSR2 (node's
// --heapsnapshot-signal: a snapshot is taken after a full GC, so it holds only what is still
// referenced): after 10 resets (the baseline, everything warmed up) and after the last. Asserted:
// the heap back within 2 MiB of its baseline, open fds back to theirs, the other session never
// reset; RSS printed beside them (the allocator keeps the pages it grew to: no leak measure).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HANG_MS } from "../helpers/limits.js";
import { type Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type BirdPeer,
  closePeerLab,
  kernelRoutes,
  type OcelotPeer,
  openPeerTrio,
  type PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const skip = skipWithReason(
  "bgpd heap across resets",
  netnsUnavailableReason() ?? peersUnavailableReason(["bird"]),
);
// About 3.6 s a reset (hold time 9 s: an RST is noticed at our next keepalive, 3 s).
const FLAPS = Number(process.env.OCELOT_FLAPS ?? (process.env.OCELOT_SOAK === "1" ? 200 : 20));
const B1 = "10.255.16.2";
const B2 = "10.255.17.2";

const birdConf = (me: string, prefix: string) => `
log "@DIR@/bird.log" all;
router id ${me};
protocol device { }
protocol static s4 { ipv4; route ${prefix} blackhole; }
protocol bgp oc {
  local ${me} as 65016; neighbor ${me.replace(/\.2$/, ".1")} as 64512; passive on;
  hold time 9; error wait time 1, 2;
  ipv4 { import all; export where source = RTS_STATIC; };
}`;

/** The sum of the nodes' self sizes in a V8 heap snapshot: the heap after its full GC, in MiB. */
function snapshotHeapMiB(file: string): number {
  const snap = JSON.parse(readFileSync(file, "utf8")) as {
    snapshot: { meta: { node_fields: string[] } };
    nodes: number[];
  };
  const fields = snap.snapshot.meta.node_fields;
  const self = fields.indexOf("self_size");
  let sum = 0;
  for (let i = self; i < snap.nodes.length; i += fields.length) sum += snap.nodes[i] as number;
  return sum / 2 ** 20;
}

describe.skipIf(skip)("bgpd's heap across session resets", () => {
  let lab: PeerLab;
  let oc: Netns;
  let b1ns: Netns;
  let b2ns: Netns;
  let bird1: BirdPeer;
  let bgpd: OcelotPeer;
  let snapDir: string;

  beforeAll(() => {
    ({
      lab,
      oc,
      b1: b1ns,
      b2: b2ns,
    } = openPeerTrio(
      "bho",
      ["bh1", "10.255.16.1/30", `${B1}/30`],
      ["bh2", "10.255.17.1/30", `${B2}/30`],
    ));
    bird1 = lab.startBird(b1ns, "bird1", birdConf(B1, "10.99.16.0/24"));
    lab.startBird(b2ns, "bird2", birdConf(B2, "10.99.17.0/24"));
    snapDir = lab.subdir("snapshots");
    // The node flags for this start only (startOcelot reads them when it spawns).
    const before = process.env.OCELOT_NODE_ARGS;
    process.env.OCELOT_NODE_ARGS = `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${snapDir}`;
    try {
      bgpd = lab.startOcelot(oc, "ocelot", {
        asn: 64512,
        routerId: "10.255.16.1",
        listen: { address: "0.0.0.0", port: 179 },
        peers: [B1, B2].map((address) => ({
          address,
          asn: 65016,
          holdTime: 9,
          connectRetryTime: 1,
          families: ["ipv4-unicast"],
        })),
        fib: { enabled: true, table: "main", protocol: 201 },
      });
    } finally {
      if (before === undefined) delete process.env.OCELOT_NODE_ARGS;
      else process.env.OCELOT_NODE_ARGS = before;
    }
  });

  afterAll(() => {
    closePeerLab(lab, oc, b1ns, b2ns);
  });

  const inKernel = (dst: string) =>
    kernelRoutes(oc, 4).some((r) => r.dst === dst && r.protocol === "201");
  const fds = () => readdirSync(`/proc/${bgpd.pid}/fd`).length;
  const rssMiB = () =>
    Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${bgpd.pid}/status`, "utf8"))?.[1]) / 1024;
  /** Asks bgpd for a heap snapshot and reads it once written. */
  const heapMiB = async () => {
    const before = new Set(readdirSync(snapDir));
    lab.signal(bgpd.pid, "SIGUSR2");
    const file = await waitFor(
      "the heap snapshot written",
      () => {
        const f = readdirSync(snapDir).find((x) => !before.has(x) && x.endsWith(".heapsnapshot"));
        if (!f) return undefined;
        // Written in one go, ending with "]}" once complete.
        const text = readFileSync(join(snapDir, f), "utf8");
        return text.trimEnd().endsWith("}") ? f : undefined;
      },
      HANG_MS,
      200,
    );
    return snapshotHeapMiB(join(snapDir, file));
  };

  // A limit for a hang, sized by the count.
  it(`${FLAPS} resets of one session: the heap after GC and the fds back to their baseline`, {
    timeout: Math.max(300_000, FLAPS * 15_000),
  }, async () => {
    await waitFor(
      "both routes in our kernel",
      () => inKernel("10.99.16.0/24") && inKernel("10.99.17.0/24"),
      HANG_MS,
      100,
    );
    const steadyBefore = bgpd.peer(B2)?.establishedTransitions as number;
    const flapBefore = bgpd.peer(B1)?.establishedTransitions as number;
    let heapBase = 0;
    let fdBase = 0;
    let rssBase = 0;
    const t0 = performance.now();
    for (let i = 0; i < FLAPS; i++) {
      const mode = i % 2 === 0 ? "notification" : "rst";
      if (mode === "notification") bird1.cmd("restart", "oc");
      else
        b1ns.exec(
          "iptables",
          "-A",
          "INPUT",
          "-p",
          "tcp",
          "--dport",
          "179",
          "-j",
          "REJECT",
          "--reject-with",
          "tcp-reset",
        );
      await waitFor(`route gone after ${mode} ${i}`, () => !inKernel("10.99.16.0/24"), HANG_MS, 20);
      if (mode === "rst") b1ns.exec("iptables", "-F", "INPUT");
      await waitFor(`route back after ${mode} ${i}`, () => inKernel("10.99.16.0/24"), HANG_MS, 20);
      if (i === 9) {
        heapBase = await heapMiB();
        fdBase = fds();
        rssBase = rssMiB();
      }
    }
    const s = Math.round((performance.now() - t0) / 1000);
    await waitFor("fds back to the baseline", () => fds() <= fdBase, 60_000, 200).catch(() => {});
    const heapEnd = await heapMiB();
    const fdEnd = fds();
    const rssEnd = rssMiB();
    const flaps = (bgpd.peer(B1)?.establishedTransitions as number) - flapBefore;
    console.log(
      `bgpd heap: ${FLAPS} resets (NOTIFICATION and RST in turn) in ${s} s, ${flaps} Established; heap after GC (snapshot) ${heapBase.toFixed(2)} -> ${heapEnd.toFixed(2)} MiB; fds ${fdBase} -> ${fdEnd}; RSS ${rssBase.toFixed(1)} -> ${rssEnd.toFixed(1)} MiB; load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`,
    );
    expect(flaps).toBe(FLAPS);
    expect(bgpd.peer(B2)?.establishedTransitions, "the other session").toBe(steadyBefore);
    expect(inKernel("10.99.17.0/24")).toBe(true);
    expect(fdEnd, "bgpd's open fds").toBeLessThanOrEqual(fdBase);
    expect(heapEnd - heapBase, "bgpd's heap growth after GC (MiB)").toBeLessThan(2);
  });
});
