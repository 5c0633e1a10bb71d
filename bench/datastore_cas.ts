// Raw compare-and-swap rate of the datastore backends: sequential, and with many CAS in flight
// on distinct keys. Run: npx tsx bench/datastore_cas.ts [--n 2000] [--etcd|--no-etcd]
// Owns: measureCasRate() (reused by the IPAM benchmarks). Starts and stops its own etcd.
import { mkdtempSync, rmSync } from "node:fs";
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
  }: { inFlight: number; n: number; prefix?: string },
): Promise<CasRate> {
  if (!Number.isInteger(inFlight) || inFlight < 1)
    throw new RangeError(`inFlight must be >= 1, got ${inFlight}`);
  if (!Number.isInteger(n) || n < inFlight) throw new RangeError(`n must be >= inFlight, got ${n}`);
  const lanes = await Promise.all(
    Array.from({ length: inFlight }, (_, i) => store.update(`${prefix}${i}`, "0")),
  );
  const perLane = Math.floor(n / inFlight);
  const t0 = performance.now();
  await Promise.all(
    lanes.map(async (kv0) => {
      let kv = kv0;
      for (let j = 0; j < perLane; j++)
        kv = await store.update(kv.key, String(j + 1), kv.modRevision);
    }),
  );
  const ms = performance.now() - t0;
  const ops = perLane * inFlight;
  for (const kv of lanes) await store.delete(kv.key);
  return { ops, ms, opsPerSec: (ops * 1000) / ms };
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
