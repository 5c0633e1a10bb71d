// Benchmark of the BGP wire codec: a full IPv4 table (1M prefixes, a few thousand attribute sets,
// UPDATEs packed to 4096 octets) and 230k IPv6 prefixes (MP_REACH_NLRI), encode and decode
// throughput on one core and bytes allocated per prefix. Goals: decode >= 20M/s, encode >= 10M/s.
// Run: npx tsx bench/wire_codec.ts [--quick]   (re-runs itself with --expose-gc)

import { spawnSync } from "node:child_process";
import { PerformanceObserver } from "node:perf_hooks";
import { Afi, Safi } from "../src/bgp/wire/constants.js";
import {
  decodeNlriInto,
  forEachIpv4Prefix,
  forEachIpv6Prefix,
  newPrefixArray,
} from "../src/bgp/wire/nlri.js";
import {
  emptyAttributes,
  type PathAttributes,
  type PrefixArray,
  sessionOptions,
} from "../src/bgp/wire/types.js";
import { decodeUpdate, encodeUpdates } from "../src/bgp/wire/update.js";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  const r = spawnSync(
    process.execPath,
    [...process.execArgv, "--expose-gc", "--max-semi-space-size=64", ...process.argv.slice(1)],
    {
      stdio: "inherit",
    },
  );
  process.exit(r.status ?? 1);
}
const quick = process.argv.includes("--quick");
const V4 = quick ? 200_000 : 1_000_000;
const V6 = quick ? 46_000 : 230_000;
const SETS4 = quick ? 600 : 3000;
const SETS6 = quick ? 200 : 1000;
const ROUNDS = quick ? 3 : 10;

/** Deterministic xorshift32. */
let seed = 12345;
function rand(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 0x100000000;
}

function attributeSet(i: number): PathAttributes {
  const a = emptyAttributes();
  a.origin = i % 3 === 0 ? 2 : 0;
  const hops = 2 + Math.floor(rand() * 5);
  a.asPath = [
    {
      type: 2,
      asns: Array.from({ length: hops }, (_, k) =>
        k === 0 ? 65000 : 1 + Math.floor(rand() * 4_200_000_000),
      ),
    },
  ];
  a.nextHop = 0x0a000001;
  if (rand() < 0.5) a.med = Math.floor(rand() * 1000);
  const nc = Math.floor(rand() * 5);
  if (nc > 0)
    a.communities = Uint32Array.from(
      { length: nc },
      () => (65000 * 65536 + Math.floor(rand() * 65536)) >>> 0,
    );
  if (rand() < 0.2) a.largeCommunities = Uint32Array.of(65000, i, 1);
  return a;
}

/** Prefix lengths like a full table: mostly /24, then /22-/23, /16-/21, a few longer. */
function v4Len(): number {
  const r = rand();
  if (r < 0.6) return 24;
  if (r < 0.8) return 22 + Math.floor(rand() * 2);
  if (r < 0.97) return 16 + Math.floor(rand() * 6);
  return 25 + Math.floor(rand() * 8);
}
function v6Len(): number {
  const r = rand();
  if (r < 0.5) return 48;
  if (r < 0.75) return 32 + Math.floor(rand() * 16);
  return 29 + Math.floor(rand() * 36);
}

function makePrefixes(afi: number, n: number): PrefixArray {
  const p = newPrefixArray(afi, n);
  const w = afi === Afi.Ipv6 ? 4 : 1;
  for (let i = 0; i < n; i++) {
    const len = afi === Afi.Ipv6 ? v6Len() : v4Len();
    for (let k = 0; k < w; k++) {
      const bits = len - 32 * k;
      const mask = bits >= 32 ? 0xffffffff : bits <= 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
      const word =
        k === 0 && w === 4
          ? 0x20010000 | Math.floor(rand() * 0xffff)
          : Math.floor(rand() * 0x100000000);
      p.addrs[i * w + k] = (word & mask) >>> 0;
    }
    p.lens[i] = len;
  }
  p.count = n;
  return p;
}

/** Splits n prefixes over `sets` attribute sets with a skewed size (a few big, many small). */
function slices(p: PrefixArray, sets: number): PrefixArray[] {
  const weights = Array.from({ length: sets }, (_, i) => 1 / (1 + i) ** 0.8);
  const total = weights.reduce((s, x) => s + x, 0);
  const out: PrefixArray[] = [];
  const w = p.afi === Afi.Ipv6 ? 4 : 1;
  let start = 0;
  for (let i = 0; i < sets; i++) {
    const n =
      i === sets - 1 ? p.count - start : Math.max(1, Math.round((weights[i] / total) * p.count));
    const end = Math.min(p.count, start + n);
    out.push({
      afi: p.afi,
      count: end - start,
      addrs: p.addrs.subarray(start * w, end * w),
      lens: p.lens.subarray(start, end),
      pathIds: null,
    });
    start = end;
  }
  return out.filter((s) => s.count > 0);
}

let gcs = 0;
new PerformanceObserver((l) => {
  gcs += l.getEntries().length;
}).observe({ entryTypes: ["gc"] });

interface Measure {
  seconds: number[];
  /** CPU seconds (user + system) of each round: less disturbed by other load on the machine. */
  cpu: number[];
  bytes: number;
  gcsDuring: number;
}

function heap(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** Times `rounds` runs of f; allocation is measured on a separate run after a full GC. */
function measure(f: () => void, rounds: number): Measure {
  f(); // warm-up
  const seconds: number[] = [];
  const cpu: number[] = [];
  for (let r = 0; r < rounds; r++) {
    gc?.();
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    f();
    seconds.push(Number(process.hrtime.bigint() - t0) / 1e9);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1e6);
  }
  gc?.();
  const g0 = gcs;
  const h0 = heap();
  f();
  const bytes = heap() - h0;
  return { seconds, cpu, bytes, gcsDuring: gcs - g0 };
}

function report(what: string, n: number, m: Measure, goal: number): void {
  const wall = [...m.seconds].sort((a, b) => a - b);
  const cpu = [...m.cpu].sort((a, b) => a - b);
  const best = n / wall[0];
  const median = n / wall[Math.floor(wall.length / 2)];
  const bestCpu = n / Math.max(cpu[0], 1e-6);
  const perPrefix = m.bytes / n;
  const f = (x: number) => (x / 1e6).toFixed(1).padStart(6);
  console.log(
    `${what.padEnd(34)} wall ${f(best)} M/s best ${f(median)} median | cpu ${f(bestCpu)} M/s best | ` +
      `goal ${(goal / 1e6).toFixed(0)}M/s ratio wall ${(best / goal).toFixed(2)} cpu ${(bestCpu / goal).toFixed(2)} | ` +
      `alloc ${perPrefix.toFixed(1)} B/prefix` +
      (m.gcsDuring > 0 ? ` (GC ran ${m.gcsDuring}x during the allocation run: lower bound)` : ""),
  );
}

function run(afi: number, total: number, sets: number): void {
  const label = afi === Afi.Ipv6 ? "IPv6" : "IPv4";
  const opts = sessionOptions({ fourOctetAs: true });
  const all = makePrefixes(afi, total);
  const groups = slices(all, sets);
  const attrs = groups.map((_, i) => attributeSet(i));
  const nh =
    afi === Afi.Ipv6
      ? Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 0x20 : i === 16 ? 0xfe : i))
      : null;
  let msgs: Uint8Array[] = [];
  const encode = () => {
    msgs = [];
    for (let i = 0; i < groups.length; i++) {
      const out = encodeUpdates(
        { afi, safi: Safi.Unicast, attributes: attrs[i], mpNextHop: nh, announce: groups[i] },
        opts,
        4096,
      );
      for (const m of out) msgs.push(m);
    }
  };
  const enc = measure(encode, ROUNDS);
  const bytes = msgs.reduce((s, m) => s + m.length, 0);
  console.log(
    `${label}: ${total} prefixes, ${groups.length} attribute sets -> ${msgs.length} UPDATEs, ${(bytes / 1e6).toFixed(1)} MB`,
  );
  report(`${label} encode (encodeUpdates)`, total, enc, 10e6);

  let sum = 0;
  let count = 0;
  const cb4 = (a: number, len: number) => {
    sum = (sum + a + len) | 0;
    count++;
  };
  const cb6 = (w: Uint32Array, len: number) => {
    sum = (sum + w[0] + w[3] + len) | 0;
    count++;
  };
  const decodeWalk = () => {
    count = 0;
    for (const m of msgs) {
      const u = decodeUpdate(m, opts);
      if (afi === Afi.Ipv4) forEachIpv4Prefix(u.nlri, cb4);
      else if (u.attributes?.mpReach) forEachIpv6Prefix(u.attributes.mpReach.nlri, cb6);
    }
  };
  const dec = measure(decodeWalk, ROUNDS);
  if (count !== total) throw new Error(`Decoded ${count} prefixes, expected ${total}`);
  report(`${label} decode (decodeUpdate+forEach)`, total, dec, 20e6);

  const into = newPrefixArray(afi, total);
  const decodeInto = () => {
    into.count = 0;
    for (const m of msgs) {
      const u = decodeUpdate(m, opts);
      const v = afi === Afi.Ipv4 ? u.nlri : u.attributes?.mpReach?.nlri;
      if (v) decodeNlriInto(v, into);
    }
  };
  const di = measure(decodeInto, ROUNDS);
  if (into.count !== total)
    throw new Error(`Decoded ${into.count} prefixes into arrays, expected ${total}`);
  report(`${label} decode (into typed arrays)`, total, di, 20e6);
}

console.log(
  `node ${process.version}, ${ROUNDS} timed rounds each, one core${quick ? ", --quick" : ""}`,
);
run(Afi.Ipv4, V4, SETS4);
run(Afi.Ipv6, V6, SETS6);
