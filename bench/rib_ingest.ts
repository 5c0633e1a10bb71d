// Micro-benchmark of the RIB alone (no sockets, no codec, no kernel): N IPv4 prefixes announced
// by one eBGP peer, then the same N by a second peer with another attribute set, then withdrawn
// (first peer, then second), draining FIB and Adj-RIB-Out changes as the speaker would.
// Prints prefixes/s per phase and bytes per prefix (RSS and heap deltas, typed arrays).
//
//   node --expose-gc --import tsx bench/rib_ingest.ts [--count 1000000] [--second-wins] [--single] [--json]
// --single: only peer a and no other peer (the shape of the 1M eBGP-injector benchmark).
// --v6: IPv6 /64s instead of IPv4 /24s.
import { Rib } from "../src/bgp/rib/rib.js";
import { seq, simpleAdapter, simpleAttrs } from "../src/bgp/rib/simple_attrs.js";

const args = process.argv.slice(2);
const count = Number(args[args.indexOf("--count") + 1] ?? 0) || 1_000_000;
const secondWins = args.includes("--second-wins");
const json = args.includes("--json");
const single = args.includes("--single");
const v6 = args.includes("--v6");
const w6 = new Uint32Array(4);
const PER_UPDATE = 500; // prefixes per UPDATE (one intern per UPDATE, like the speaker)
const DRAIN_CHUNK = 65_536;

const gc = (globalThis as { gc?: () => void }).gc;
function mem() {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed + m.arrayBuffers };
}

/** A bijection of 0..2^24-1: unique /24s spread over the whole IPv4 space (half above 2^31). */
function prefixAddr(i: number): number {
  return ((Math.imul(i, 0x9e3779b1) & 0xffffff) << 8) >>> 0;
}

const rib = new Rib({ localAs: 64512, routerId: "10.0.0.100", adapter: simpleAdapter });
const a = rib.addPeer({ id: "a", address: "192.0.2.1", asn: 65001, nextHopSelfV4: "192.0.2.100" });
rib.peerUp(a, "1.1.1.1");
let b = -1;
if (!single) {
  b = rib.addPeer({ id: "b", address: "192.0.2.2", asn: 65002, nextHopSelfV4: "192.0.2.100" });
  // One iBGP mesh peer: every best change is also exported (one update group).
  rib.addPeer({ id: "mesh", address: "10.0.0.2", asn: 64512, nextHopSelfV4: "10.0.0.100" });
  rib.peerUp(b, "2.2.2.2");
  rib.peerUp("mesh", "10.0.0.2");
}

const attrsA = simpleAttrs({
  nextHop: v6 ? "2001:db8:ffff::1" : "192.0.2.1",
  asPath: seq(65001, 65100, 65200),
  communities: [0xfde80001],
});
const attrsB = simpleAttrs({
  nextHop: v6 ? "2001:db8:ffff::2" : "192.0.2.2",
  asPath: secondWins ? seq(65002) : seq(65002, 65300, 65301, 65302),
  med: 10,
});

let fibChanges = 0;
let adjOutPrefixes = 0;
function drainAll(): void {
  for (let i = 0; i < 1_000_000; i++) {
    const ch = rib.drain(DRAIN_CHUNK);
    fibChanges += ch.fib.size;
    for (const batch of ch.adjOut) {
      for (const an of batch.announce) adjOutPrefixes += an.v4.count + an.v6.count;
      adjOutPrefixes += batch.withdraw.v4.count + batch.withdraw.v6.count;
    }
    if (ch.pending === 0) return;
  }
  throw new Error("Drain did not finish");
}

interface Phase {
  phase: string;
  seconds: number;
  cpuSeconds: number;
  prefixesPerSecond: number;
  fibChanges: number;
  adjOutPrefixes: number;
}
const phases: Phase[] = [];
function phase(name: string, body: () => void): void {
  fibChanges = 0;
  adjOutPrefixes = 0;
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  body();
  drainAll();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0);
  const cpu = (c.user + c.system) / 1e6;
  phases.push({
    phase: name,
    seconds: s,
    cpuSeconds: cpu,
    prefixesPerSecond: Math.round(count / s),
    fibChanges,
    adjOutPrefixes,
  });
}

/** 2001:db8::/32 plus a 24-bit spread in the second word: unique /64s for i below 2^24. */
function prefixV6(i: number): Uint32Array {
  w6[0] = 0x20010db8;
  w6[1] = prefixAddr(i) >>> 8;
  w6[2] = 0;
  w6[3] = 0;
  return w6;
}
function announceAll(peer: number, attrs: typeof attrsA): void {
  let id = 0;
  for (let i = 0; i < count; i++) {
    if (i % PER_UPDATE === 0) id = rib.intern(attrs);
    if (v6) rib.announceV6(peer, id, prefixV6(i), 0, 64, 0);
    else rib.announceV4(peer, id, prefixAddr(i), 24, 0);
  }
}
function withdrawAll(peer: number): void {
  for (let i = 0; i < count; i++) {
    if (v6) rib.withdrawV6(peer, prefixV6(i), 0, 64, 0);
    else rib.withdrawV4(peer, prefixAddr(i), 24, 0);
  }
}

const m0 = mem();
phase("announce peer a", () => announceAll(a, attrsA));
const m1 = mem();
if (!single) phase("announce peer b", () => announceAll(b, attrsB));
const m2 = mem();
phase("withdraw peer a", () => withdrawAll(a));
if (!single) phase("withdraw peer b", () => withdrawAll(b));
const m3 = mem();

const result = {
  count,
  secondWins,
  single,
  family: v6 ? "ipv6" : "ipv4",
  node: process.version,
  phases,
  bytesPerPrefix: {
    onePathRss: Math.round((m1.rss - m0.rss) / count),
    onePathHeap: Math.round((m1.heap - m0.heap) / count),
    twoPathsRss: Math.round((m2.rss - m0.rss) / count),
    twoPathsHeap: Math.round((m2.heap - m0.heap) / count),
    typedArraysTwoPaths: Math.round(rib.typedBytes() / count),
  },
  rssMiB: {
    start: Math.round(m0.rss / 2 ** 20),
    onePath: Math.round(m1.rss / 2 ** 20),
    twoPaths: Math.round(m2.rss / 2 ** 20),
    end: Math.round(m3.rss / 2 ** 20),
  },
  peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
  ribAfterWithdraw: rib.size,
};

if (json) console.log(JSON.stringify(result, null, 2));
else {
  console.log(
    `RIB ingest, ${count} IPv${v6 ? 6 : 4} prefixes, ${process.version}${gc ? "" : " (run with --expose-gc for exact memory)"}`,
  );
  for (const p of phases) {
    console.log(
      `  ${p.phase.padEnd(16)} ${p.seconds.toFixed(2).padStart(6)} s (cpu ${p.cpuSeconds.toFixed(2)} s)  ${String(p.prefixesPerSecond).padStart(9)} prefixes/s  fib ${p.fibChanges}  adj-out ${p.adjOutPrefixes}`,
    );
  }
  const bp = result.bytesPerPrefix;
  console.log(
    `  bytes/prefix: one path RSS ${bp.onePathRss} (heap ${bp.onePathHeap}); two paths RSS ${bp.twoPathsRss} (heap ${bp.twoPathsHeap}); typed arrays ${bp.typedArraysTwoPaths}`,
  );
  console.log(
    `  RSS MiB: start ${result.rssMiB.start}, one path ${result.rssMiB.onePath}, two paths ${result.rssMiB.twoPaths}, peak ${result.peakRssMiB}; RIB after withdraw ${JSON.stringify(rib.size)}`,
  );
}
