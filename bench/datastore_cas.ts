// Raw compare-and-swap rate of the datastore backends, sequential and with 64 CAS in flight on
// distinct keys, and write-to-watch latency. Run: npx tsx bench/datastore_cas.ts [--n 2000]
// [--no-etcd]. Owns: measureCasRate() and mainThreadNs() (reused by the IPAM benchmarks). Starts
// its own etcd.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryDatastore } from "../src/datastore/memory.js";
import { SqliteDatastore } from "../src/datastore/sqlite.js";
import type { Datastore } from "../src/datastore/types.js";
import { etcdUnavailableReason, startEtcd } from "../test/helpers/etcd.js";

export interface CasRate {
  ops: number;
  ms: number;
  opsPerSec: number;
  /** This process's CPU time (user + system) per CAS, in µs. */
  cpuUs: number;
  /** The main thread's share of cpuUs (mainThreadNs), NaN where unknown. */
  mainUs: number;
}

/**
 * CPU time of this process's main thread so far, in ns (Linux: /proc/self/task/<pid>/schedstat),
 * NaN elsewhere. process.cpuUsage counts every thread, V8's background compilers and concurrent
 * marking among them: a row of a process still warming up pays its recompiles there, which the
 * main thread's figure leaves out.
 */
export function mainThreadNs(): number {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, "utf8").split(" ")[0]);
  } catch {
    return Number.NaN;
  }
}

/**
 * Runs n compare-and-swap updates spread over `inFlight` distinct keys, each key's updates one
 * after another (so up to `inFlight` are outstanding at once), and returns the rate. Every CAS
 * must succeed: a conflict here means the store broke its own revision contract.
 */
export async function measureCasRate(
  store: Datastore,
  {
    inFlight,
    n,
    prefix = `/ocelot/bench/cas/${process.pid}-${Date.now()}/`,
    valueBytes = 0,
    lanesOn = [store],
  }: {
    inFlight: number;
    n: number;
    prefix?: string;
    /** Pad each written value to this many bytes (0, the default: the counter alone, 1-4 bytes). */
    valueBytes?: number;
    /**
     * Handles the lanes write through, lane i on lanesOn[i % length] (default: `store` alone).
     * Several handles on one SQLite file are what several processes are: each write finds the
     * file changed by another connection and starts with its page cache dropped.
     */
    lanesOn?: readonly Datastore[];
  },
): Promise<CasRate> {
  if (!Number.isInteger(inFlight) || inFlight < 1)
    throw new RangeError(`inFlight must be >= 1, got ${inFlight}`);
  if (!Number.isInteger(n) || n < inFlight) throw new RangeError(`n must be >= inFlight, got ${n}`);
  const lanes = await Promise.all(
    Array.from({ length: inFlight }, (_, i) => store.update(`${prefix}${i}`, "0")),
  );
  const perLane = Math.floor(n / inFlight);
  const c0 = process.cpuUsage();
  const m0 = mainThreadNs();
  const t0 = performance.now();
  await Promise.all(
    lanes.map(async (kv0, i) => {
      const via = lanesOn[i % lanesOn.length] as Datastore;
      let kv = kv0;
      for (let j = 0; j < perLane; j++)
        kv = await via.update(kv.key, String(j + 1).padEnd(valueBytes, "x"), kv.modRevision);
    }),
  );
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  const mainUs = (mainThreadNs() - m0) / 1000 / (perLane * inFlight);
  const ops = perLane * inFlight;
  for (const kv of lanes) await store.delete(kv.key);
  return { ops, ms, opsPerSec: (ops * 1000) / ms, cpuUs: (cpu.user + cpu.system) / ops, mainUs };
}

/**
 * Time from a write on one handle to its watch event on another (for SQLite: another
 * connection, so the event comes through the polled log as it would in another process).
 */
export async function measureWatchLatency(
  writer: Datastore,
  watcher: Datastore,
  n = 100,
): Promise<{ medianMs: number; p99Ms: number }> {
  const key = `/ocelot/bench/watch/${process.pid}-${Date.now()}`;
  const sent = new Map<string, number>();
  const lat: number[] = [];
  let wake: (() => void) | undefined;
  const watch = watcher.watch(key, await watcher.revision(), (m) => {
    if (m.kind !== "events") return;
    for (const e of m.events) {
      if (e.type !== "put") continue;
      const t = sent.get(e.kv.value);
      if (t !== undefined) lat.push(performance.now() - t);
    }
    wake?.();
  });
  try {
    for (let i = 0; i < n; i++) {
      const v = String(i);
      const arrived = new Promise<void>((r) => {
        wake = r;
      });
      sent.set(v, performance.now());
      await writer.update(key, v);
      await Promise.race([arrived, new Promise((r) => setTimeout(r, 2000))]);
      // Spread writes over the poll period rather than right after each delivery.
      await new Promise((r) => setTimeout(r, Math.random() * 10));
    }
  } finally {
    await watch.cancel();
    await writer.delete(key);
  }
  lat.sort((a, b) => a - b);
  return {
    medianMs: lat[Math.floor(lat.length / 2)] ?? Number.NaN,
    p99Ms: lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))] ?? Number.NaN,
  };
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function report(name: string, store: Datastore, n: number): Promise<void> {
  for (const inFlight of [1, 64]) {
    const r = await measureCasRate(store, { inFlight, n });
    console.log(
      `${name.padEnd(22)} in-flight ${String(inFlight).padStart(2)}: ${r.ops} CAS in ${r.ms.toFixed(0)} ms = ${r.opsPerSec.toFixed(0)} ops/s`,
    );
  }
}

async function reportLatency(name: string, writer: Datastore, watcher: Datastore): Promise<void> {
  const r = await measureWatchLatency(writer, watcher);
  console.log(
    `${name.padEnd(22)} watch latency: median ${r.medianMs.toFixed(1)} ms, p99 ${r.p99Ms.toFixed(1)} ms`,
  );
}

async function main(): Promise<void> {
  const n = Number(arg("--n") ?? 2000);
  const dir = mkdtempSync(join(tmpdir(), "ocelot-bench-"));
  try {
    const mem = new MemoryDatastore();
    await report("memory", mem, n);
    await mem.close();
    for (const synchronous of ["FULL", "NORMAL"] as const) {
      const s = new SqliteDatastore(join(dir, `${synchronous}.db`), { synchronous });
      await report(`sqlite (sync ${synchronous})`, s, n);
      if (synchronous === "NORMAL") {
        const other = new SqliteDatastore(join(dir, `${synchronous}.db`), { synchronous });
        await reportLatency("sqlite (2nd connection)", s, other);
        await other.close();
      }
      await s.close();
    }
    const why = process.argv.includes("--no-etcd") ? "--no-etcd given" : etcdUnavailableReason();
    if (why) {
      console.log(`etcd: skipped (${why})`);
      return;
    }
    const { EtcdDatastore } = await import("../src/datastore/etcd.js");
    for (const tmpfs of [false, true]) {
      const server = await startEtcd({ tmpfs });
      try {
        const e = await EtcdDatastore.connect({ endpoints: [server.endpoint] });
        await report(`etcd 3.4 (${tmpfs ? "tmpfs" : "disk"})`, e, n);
        if (!tmpfs) {
          const other = await EtcdDatastore.connect({ endpoints: [server.endpoint] });
          await reportLatency("etcd 3.4 (2nd client)", e, other);
          await other.close();
        }
        await e.close();
      } finally {
        await server.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
