// IPAM assignment rate and latency against the embedded store and etcd 3.4, beside the raw
// compare-and-swap rate of the same store measured in the same run (measureCasRate), with the
// goal ratio (IPAM >= 0.5x raw CAS) printed per row. Each simulated node is a long-lived
// IpamStore (as a node agent holds one); each assignment has its own handle, as one pod.
// With each row, for context, the CAS rate with values as large as the row's mean block write
// (--no-sized leaves it out), and with a row of several nodes one request at a time, the raw CAS
// with one lane per node's handle (what changes: each write on a handle finds the file written
// by another, and SQLite drops that connection's page cache). A warm-up of 1000 of each (--warmup N), not reported, precedes the
// rows. Beside each wall-clock ratio, the ratio of this process's CPU time per operation
// (process.cpuUsage): on a machine shared with other work the wall clock measures the scheduler
// as much as the code, CPU time much less so (on etcd most of a CAS's time is in the server, so
// there only the wall-clock ratio means anything). Run: npx tsx bench/ipam_assign.ts [--n 2000]
// [--no-etcd] [--only sqlite|etcd] [--no-sized] [--warmup 1000] [--src DIR]
// [--old DIR [--runs 3]]
// --src DIR: the IPAM and datastore code to measure, a source tree (src/, run through tsx) or a
// build of one (dist/: tsc's JavaScript); default this checkout's src/. --old DIR: the same bench
// in fresh processes, --runs times for each, alternating the code of --src and of DIR (e.g.
// `--src dist --old /work/main/dist`: this build against main's), each process's rows printed
// as they are, then the one-request-at-a-time ratios side by side. A fresh process per run is
// what the default warm-up measures: a process that has done only that many assignments.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { SqliteDatastore as SqliteDatastoreClass } from "../src/datastore/sqlite.js";
import type { Datastore } from "../src/datastore/types.js";
import type { IpamKeys as IpamKeysClass } from "../src/ipam/records.js";
import type { IpamStore as IpamStoreClass } from "../src/ipam/store.js";
import { etcdUnavailableReason, startEtcd } from "../test/helpers/etcd.js";
import { mainThreadNs, measureCasRate } from "./datastore_cas.js";

/** The code under test: this checkout's src/ unless --src names another tree or build. */
const SRC = resolve(arg("--src") ?? new URL("../src", import.meta.url).pathname);
/** A module of the code under test: `.js` of a build, else the `.ts` source (through tsx). */
async function load<T>(rel: string): Promise<T> {
  const { existsSync } = await import("node:fs");
  const js = join(SRC, `${rel}.js`);
  return (await import(pathToFileURL(existsSync(js) ? js : join(SRC, `${rel}.ts`)).href)) as T;
}
const { SqliteDatastore } = await load<{ SqliteDatastore: typeof SqliteDatastoreClass }>(
  "datastore/sqlite",
);
const { IpamKeys } = await load<{ IpamKeys: typeof IpamKeysClass }>("ipam/records");
const { IpamStore } = await load<{ IpamStore: typeof IpamStoreClass }>("ipam/store");

const GOAL = 0.5;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

interface IpamRate {
  ops: number;
  ms: number;
  opsPerSec: number;
  p50: number;
  p99: number;
  /** Mean bytes of the block values written (for the block-sized CAS context row). */
  meanWriteBytes: number;
  /** This process's CPU time (user + system) per assignment, in µs. */
  cpuUs: number;
  /** The main thread's share of cpuUs (NaN where unknown): without V8's background threads. */
  mainUs: number;
  /** Block writes (update / updateIfAbsent) per assignment: below 1 when writes combine. */
  writesPerOp: number;
}

/** What the counting wrappers add to: measureIpam's row (reset per row). */
let tally = { writes: 0, bytes: 0 };
const wrappers = new WeakMap<Datastore, Datastore>();

/**
 * A store whose updates (update, updateIfAbsent: the block writes) count the bytes written (one extra call per write), delegating every
 * call to the store itself. A class, so every node's wrapper has one hidden class and the store's
 * methods always run with the store itself as `this`: the wrapper this replaced
 * (`Object.create(store)` with own update/updateIfAbsent) gave each node's wrapper its own hidden
 * class (its prototype was that node's store) and ran the store's other methods on the wrapper,
 * so the four-node row found the allocator's and the store's optimized code wrong for three new
 * receivers, and V8 threw it away and compiled it again inside the row: a cost of the benchmark,
 * which a node's process (one store) never pays.
 */
class CountingDatastore implements Datastore {
  readonly url: string;
  constructor(private readonly inner: Datastore) {
    this.url = inner.url;
  }
  get(key: string) {
    return this.inner.get(key);
  }
  list(prefix: string) {
    return this.inner.list(prefix);
  }
  listKeys(prefix: string) {
    if (this.inner.listKeys === undefined) throw new Error(`${this.url} has no listKeys`);
    return this.inner.listKeys(prefix);
  }
  create(key: string, value: string) {
    return this.inner.create(key, value);
  }
  update(key: string, value: string, rev?: number) {
    tally.writes++;
    tally.bytes += value.length;
    return this.inner.update(key, value, rev);
  }
  updateIfAbsent(key: string, value: string, rev: number, absent: readonly string[]) {
    tally.writes++;
    tally.bytes += value.length;
    return this.inner.updateIfAbsent(key, value, rev, absent);
  }
  delete(key: string, rev?: number) {
    return this.inner.delete(key, rev);
  }
  watch(prefix: string, from: number, onMessage: Parameters<Datastore["watch"]>[2]) {
    return this.inner.watch(prefix, from, onMessage);
  }
  revision() {
    return this.inner.revision();
  }
  close() {
    return this.inner.close();
  }
}

/** The store's counting wrapper, one per store for the whole run (see CountingDatastore). */
function counting(store: Datastore): Datastore {
  const known = wrappers.get(store);
  if (known !== undefined) return known;
  const wrapped = new CountingDatastore(store);
  wrappers.set(store, wrapped);
  return wrapped;
}

let run = 0;

/** n assignments spread over `nodes` nodes, each node with `inFlight` outstanding at once. */
async function measureIpam(
  stores: Datastore[],
  { nodes, inFlight, n }: { nodes: number; inFlight: number; n: number },
): Promise<IpamRate> {
  const prefix = `/ocelot-bench/${process.pid}-${run++}/`;
  const keys = new IpamKeys(prefix);
  const pool = {
    apiVersion: "projectcalico.org/v3",
    kind: "IPPool",
    metadata: { name: "bench" },
    spec: { cidr: "10.128.0.0/12", blockSize: 26 },
  };
  await stores[0]?.update(`${keys.resources("ippools")}bench`, JSON.stringify(pool));
  tally = { writes: 0, bytes: 0 };
  const clients = Array.from(
    { length: nodes },
    (_, i) => new IpamStore(counting(stores[i % stores.length] as Datastore), { keys }),
  );
  const perLane = Math.floor(n / (nodes * inFlight));
  const lat: number[] = [];
  const c0 = process.cpuUsage();
  const m0 = mainThreadNs();
  const t0 = performance.now();
  await Promise.all(
    clients.flatMap((ipam, node) =>
      Array.from({ length: inFlight }, async (_, lane) => {
        for (let j = 0; j < perLane; j++) {
          const s = performance.now();
          const got = await ipam.autoAssign({
            handleId: `bench-${node}-${lane}-${j}`,
            node: `node${node}`,
            num4: 1,
            num6: 0,
          });
          lat.push(performance.now() - s);
          if (got.length !== 1) throw new Error(`Assignment returned ${got.length} addresses`);
        }
      }),
    ),
  );
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  const main = mainThreadNs() - m0;
  const ops = perLane * nodes * inFlight;
  // Every address distinct and counted: the benchmark must not measure a broken allocator.
  const blocks = await clients[0]?.listBlocks(4);
  const used = (blocks ?? []).reduce((k, e) => k + e.block.owner.filter((o) => o >= 0).length, 0);
  if (used !== ops) throw new Error(`Expected ${ops} addresses in use, found ${used}`);
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0;
  return {
    ops,
    ms,
    opsPerSec: (ops * 1000) / ms,
    p50: q(0.5),
    p99: q(0.99),
    meanWriteBytes: tally.writes > 0 ? tally.bytes / tally.writes : 0,
    cpuUs: (cpu.user + cpu.system) / ops,
    mainUs: main / 1000 / ops,
    writesPerOp: tally.writes / ops,
  };
}

const SCENARIOS = [
  { label: "1 node, 1 in flight", nodes: 1, inFlight: 1, cas: 1 },
  { label: "4 nodes, 1 in flight each", nodes: 4, inFlight: 1, cas: 4 },
  { label: "1 node, 64 in flight", nodes: 1, inFlight: 64, cas: 64 },
  { label: "4 nodes, 16 in flight each", nodes: 4, inFlight: 16, cas: 64 },
];

async function report(
  name: string,
  stores: Datastore[],
  n: number,
  withSized: boolean,
  warmup: number,
): Promise<boolean> {
  let ok = true;
  // Warm-up, not reported: a node agent is a long-lived process, so the rows compare the
  // allocator and the store's CAS with both compiled by the JIT, not the first thousand calls
  // of each (the first row would otherwise measure compilation).
  // (Measured: the allocator's CPU per assignment keeps falling for the first ~6000 of them, so
  // the first row after the default 1000 still pays for some of that; --warmup shows how much.)
  for (let done = 0; done < warmup; done += 2000) {
    const k = Math.min(2000, warmup - done);
    await measureCasRate(stores[0] as Datastore, { inFlight: 1, n: k });
    await measureIpam(stores, { nodes: 1, inFlight: 1, n: k });
  }
  for (const s of SCENARIOS) {
    const cas = await measureCasRate(stores[0] as Datastore, { inFlight: s.cas, n });
    const ipam = await measureIpam(stores, { nodes: s.nodes, inFlight: s.inFlight, n });
    const ratio = ipam.opsPerSec / cas.opsPerSec;
    ok &&= ratio >= GOAL;
    console.log(
      `${name.padEnd(18)} ${s.label.padEnd(27)} IPAM ${ipam.opsPerSec.toFixed(0).padStart(6)} assign/s ` +
        `(p50 ${ipam.p50.toFixed(1)} ms, p99 ${ipam.p99.toFixed(1)} ms) | raw CAS ${String(s.cas).padStart(2)} in flight ` +
        `${cas.opsPerSec.toFixed(0).padStart(6)}/s | ratio ${ratio.toFixed(2)} (goal >= ${GOAL}: ${ratio >= GOAL ? "met" : "NOT met"}) ` +
        `| CPU per op ${ipam.cpuUs.toFixed(1)} / ${cas.cpuUs.toFixed(1)} µs, ratio ${(cas.cpuUs / ipam.cpuUs).toFixed(2)} ` +
        `(main thread ${ipam.mainUs.toFixed(1)} / ${cas.mainUs.toFixed(1)} µs, ratio ${(cas.mainUs / ipam.mainUs).toFixed(2)}) ` +
        `| ${ipam.writesPerOp.toFixed(2)} block writes per assignment`,
    );
    if (s.nodes > 1 && s.inFlight === 1) {
      // Context only: the same CAS with one lane per node's handle, as the IPAM row writes.
      const spread = await measureCasRate(stores[0] as Datastore, {
        inFlight: s.cas,
        n,
        lanesOn: stores.slice(0, s.nodes),
      });
      console.log(
        `${"".padEnd(18)} ${"  context:".padEnd(27)} raw CAS, one lane per node's handle (${s.nodes}), ` +
          `${spread.opsPerSec.toFixed(0).padStart(6)}/s, CPU ${spread.cpuUs.toFixed(1)} µs (main thread ` +
          `${spread.mainUs.toFixed(1)}) | IPAM/that ${(ipam.opsPerSec / spread.opsPerSec).toFixed(2)}, CPU ` +
          `${(spread.cpuUs / ipam.cpuUs).toFixed(2)} | that / the one-handle raw CAS (as the goal ratio) ` +
          `${(spread.opsPerSec / cas.opsPerSec).toFixed(2)}, CPU ${(cas.cpuUs / spread.cpuUs).toFixed(2)}`,
      );
      if (withSized) {
        // Context only: the row's writes without the allocator (values of the mean block
        // write's size, one lane per node's handle): what an allocator costing nothing would
        // reach against the goal's one-handle CAS.
        const bytes = Math.round(ipam.meanWriteBytes);
        const bare = await measureCasRate(stores[0] as Datastore, {
          inFlight: s.cas,
          n,
          valueBytes: bytes,
          lanesOn: stores.slice(0, s.nodes),
        });
        console.log(
          `${"".padEnd(18)} ${"  context:".padEnd(27)} CAS of ${bytes}-byte values, one lane per node's handle ` +
            `(the row's writes without the allocator) ${bare.opsPerSec.toFixed(0).padStart(6)}/s, CPU ` +
            `${bare.cpuUs.toFixed(1)} µs (main thread ${bare.mainUs.toFixed(1)}) | that / the one-handle raw CAS (as the goal ratio) ` +
            `${(bare.opsPerSec / cas.opsPerSec).toFixed(2)}, CPU ${(cas.cpuUs / bare.cpuUs).toFixed(2)}, main thread ` +
            `${(cas.mainUs / bare.mainUs).toFixed(2)}`,
        );
      }
    }
    if (withSized) {
      // Context only (the goal is against the raw CAS above): CAS writing values as large as
      // the block values this row wrote on average.
      const bytes = Math.round(ipam.meanWriteBytes);
      const sized = await measureCasRate(stores[0] as Datastore, {
        inFlight: s.cas,
        n,
        valueBytes: bytes,
      });
      console.log(
        `${"".padEnd(18)} ${"  context:".padEnd(27)} CAS of ${bytes}-byte values (the mean block write), ` +
          `${String(s.cas).padStart(2)} in flight ${sized.opsPerSec.toFixed(0).padStart(6)}/s | IPAM/that ` +
          `${(ipam.opsPerSec / sized.opsPerSec).toFixed(2)}`,
      );
    }
  }
  return ok;
}

/**
 * --old: this bench in fresh processes, alternating --src's code and DIR's, --runs of each. Prints
 * each process's lines under its label, then per run the wall and CPU ratios of the rows one
 * request at a time.
 */
function alternate(oldDir: string): void {
  const runs = Number(arg("--runs") ?? 3);
  if (!Number.isInteger(runs) || runs < 1) throw new RangeError(`--runs must be >= 1, got ${runs}`);
  // The same arguments, less --old/--runs/--src (each child gets its own --src).
  const pass: string[] = [];
  for (let i = 2; i < process.argv.length; i++) {
    const a = process.argv[i] as string;
    if (a === "--old" || a === "--runs" || a === "--src") i++;
    else pass.push(a);
  }
  const builds = [
    { label: "this", src: SRC },
    { label: "old", src: resolve(oldDir) },
  ];
  const rows = new Map<string, string[]>();
  console.log(`alternating ${runs} fresh processes each: this = ${SRC}, old = ${resolve(oldDir)}`);
  for (let r = 0; r < runs; r++) {
    // Alternate which goes first, so neither always follows the other.
    for (const b of r % 2 === 0 ? builds : [...builds].reverse()) {
      const child = spawnSync(
        process.execPath,
        [...process.execArgv, process.argv[1] as string, ...pass, "--src", b.src],
        { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] },
      );
      if (child.status !== 0)
        throw new Error(`bench run of ${b.label} exited ${child.status ?? child.signal}`);
      for (const line of child.stdout.trimEnd().split("\n")) {
        console.log(`[${b.label} ${r + 1}] ${line}`);
        const m = line.match(
          /^(\S.*?)\s+(\d nodes?), 1 in flight.*ratio (\d+\.\d+) \(goal.*CPU per op [\d.]+ \/ [\d.]+ µs, ratio (\d+\.\d+) \(main thread .*ratio (\S+)\)/,
        );
        if (m) {
          const k = `${b.label} ${m[1]} ${m[2]}`;
          rows.set(k, [...(rows.get(k) ?? []), `${m[3]} (CPU ${m[4]}, main ${m[5]})`]);
        }
      }
    }
  }
  console.log("one request at a time, IPAM / raw CAS per run, wall (CPU, main thread's CPU):");
  for (const [k, v] of rows) console.log(`  ${k.padEnd(40)} ${v.join("  ")}`);
}

async function main(): Promise<void> {
  const oldDir = arg("--old");
  if (oldDir !== undefined) return alternate(oldDir);
  const n = Number(arg("--n") ?? 2000);
  const only = arg("--only");
  const withSized = !process.argv.includes("--no-sized");
  const warmup = Number(arg("--warmup") ?? 1000);
  if (!Number.isInteger(warmup) || warmup < 1)
    throw new RangeError(`--warmup must be >= 1, got ${warmup}`);
  const dir = mkdtempSync(join(tmpdir(), "ocelot-bench-ipam-"));
  let ok = true;
  // Shared machines make every figure noisy: say how busy this one was.
  console.log(
    `n=${n} assignments per row, warm-up ${warmup}, code ${SRC}; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );
  try {
    if (only === undefined || only === "sqlite") {
      // One handle per simulated node, as separate processes on a host would each open the file.
      const stores = Array.from({ length: 4 }, () => new SqliteDatastore(join(dir, "store.db")));
      ok = (await report("embedded (sqlite)", stores, n, withSized, warmup)) && ok;
      for (const s of stores) await s.close();
    }
    if (only === undefined || only === "etcd") {
      const why = process.argv.includes("--no-etcd") ? "--no-etcd given" : etcdUnavailableReason();
      if (why) console.log(`etcd: skipped (${why})`);
      else {
        const { EtcdDatastore } = await import("../src/datastore/etcd.js");
        const server = await startEtcd({ tmpfs: false });
        try {
          // One client connection per simulated node.
          const stores = await Promise.all(
            Array.from({ length: 4 }, () =>
              EtcdDatastore.connect({ endpoints: [server.endpoint] }),
            ),
          );
          ok = (await report("etcd 3.4 (disk)", stores, n, withSized, warmup)) && ok;
          for (const s of stores) await s.close();
        } finally {
          await server.stop();
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(
    `goal (IPAM >= ${GOAL}x raw CAS) ${ok ? "met on every row" : "NOT met on every row"}`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
