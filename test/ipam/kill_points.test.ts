// IPAM cut off at chosen datastore calls, in one process, on the embedded store: the
// deterministic counterpart of test/reliability/ipam_crash.test.ts (which SIGKILLs real
// processes at random times). A "worker" is an IpamStore over a view of the store that dies at
// its Nth call, before the call runs or after it ran and before its answer arrives (a SIGKILL
// mid-transaction, or right after the commit); from then on no call of it settles, so none of
// its code runs again, as in a killed process. The next worker starts with empty caches, as a
// new process does. The clock jumps up to 300 ms per reading (the pool cache's 2 s expiry is
// crossed within a worker). Afterwards, as in the crash test: the runtime's DEL for every
// operation cut off, then the blocks must hold exactly the addresses of the handles whose ADD
// returned and were not released, each once.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import type { Datastore } from "../../src/datastore/types.js";
import { addressOf } from "../../src/ipam/block.js";
import { IpamStore } from "../../src/ipam/store.js";
import { putPool } from "./helpers.js";

const NODE = "kill-node";
const ROUNDS = process.env.OCELOT_SOAK ? 400 : 10;
/** A hang's limit: the suite's 120 s, more for the long form (about 0.3-0.7 s a round, load ~20). */
const LIMIT_MS = Math.max(120_000, ROUNDS * 3_000);
const KILLS = 8;
const HOLD = 24;
const NEVER = new Promise<never>(() => {});
const CALLS = ["get", "list", "listKeys", "create", "update", "updateIfAbsent", "delete"] as const;

/** A view of store whose calls stop settling at the dieAt-th (before or after it runs). */
function dying(
  store: Datastore,
  dieAt: number,
  after: boolean,
): { ds: Datastore; dead: () => boolean } {
  let calls = 0;
  let dead = false;
  const view: Record<string, unknown> = { url: store.url };
  for (const name of CALLS) {
    const real = (store[name] as (...a: unknown[]) => Promise<unknown>).bind(store);
    view[name] = async (...args: unknown[]) => {
      if (dead) return NEVER;
      const me = ++calls;
      if (me === dieAt && !after) {
        dead = true;
        return NEVER;
      }
      const r = await real(...args).then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      );
      if (me === dieAt) dead = true;
      if (dead) return NEVER;
      if ("error" in r) throw r.error;
      return r.value;
    };
  }
  return { ds: view as unknown as Datastore, dead: () => dead };
}

interface Outcome {
  assigned: Map<number, string>;
  released: Set<number>;
  cut: Set<number>;
  next: number;
}

/** One worker (the crash test's loop) until its store view dies; records what returned. */
async function worker(
  store: Datastore,
  o: Outcome,
  dieAt: number,
  after: boolean,
  now: () => number,
  random: () => number,
): Promise<void> {
  const { ds, dead } = dying(store, dieAt, after);
  const ipam = new IpamStore(ds, { emptyBlockGraceMs: 0, now, random, sleep: async () => {} });
  const inFlight = new Set<number>();
  const held: number[] = [];
  let failed: unknown;
  let ended = false;
  const first = o.next;
  void (async () => {
    for (let i = first; i < first + 100_000; i++) {
      inFlight.add(i);
      o.next = i + 1;
      const [a] = await ipam.autoAssign({ handleId: `kill-${i}`, node: NODE, num4: 1, num6: 0 });
      inFlight.delete(i);
      o.assigned.set(i, a?.address ?? "(none)");
      held.push(i);
      if (i % 3 === 0 || held.length > HOLD) {
        const r = held.shift() as number;
        inFlight.add(r);
        await ipam.releaseByHandle(`kill-${r}`, NODE);
        inFlight.delete(r);
        o.released.add(r);
      }
    }
  })()
    .catch((err: unknown) => {
      failed = err;
    })
    .finally(() => {
      ended = true;
    });
  while (!dead() && !ended) await new Promise((r) => setImmediate(r));
  if (failed !== undefined) throw failed;
  for (const n of inFlight) o.cut.add(n);
}

describe("IPAM cut off at chosen datastore calls (embedded store)", () => {
  it(
    `${ROUNDS} rounds of ${KILLS} workers: the blocks hold exactly what returned, each once`,
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "ocelot-killpoints-"));
      try {
        for (let round = 0; round < ROUNDS; round++) {
          let seed = 0x6b1 + round;
          const random = () => {
            seed = (seed * 1103515245 + 12345) & 0x7fffffff;
            return seed / 0x7fffffff;
          };
          let t = 1_700_000_000_000;
          const now = () => {
            t += Math.floor(random() * 300);
            return t;
          };
          const store = new SqliteDatastore(join(dir, `round-${round}.db`));
          try {
            await putPool(store, "kill-pool", "10.72.0.0/20", { blockSize: 26 });
            const o: Outcome = {
              assigned: new Map(),
              released: new Set(),
              cut: new Set(),
              next: 0,
            };
            const kills: string[] = [];
            for (let k = 0; k < KILLS; k++) {
              // Often within the first calls (a worker's start: pools, affinities, a claim), else
              // anywhere in a few hundred operations.
              const dieAt = 1 + Math.floor(random() < 0.4 ? random() * 20 : random() * 600);
              const after = random() < 0.5;
              kills.push(`${dieAt}${after ? "+" : "-"}`);
              await worker(store, o, dieAt, after, now, random);
            }
            const ipam = new IpamStore(store, { emptyBlockGraceMs: 0 });
            for (const n of o.cut) await ipam.releaseByHandle(`kill-${n}`, NODE);
            const want = new Map<string, string>();
            for (const [n, a] of o.assigned)
              if (!o.released.has(n) && !o.cut.has(n)) want.set(`kill-${n}`, a);
            const got = new Map<string, string[]>();
            for (const e of await ipam.listAllBlocks())
              e.block.owner.forEach((idx, ordinal) => {
                if (idx < 0) return;
                const h = e.block.attributes[idx]?.handleId ?? "(no handle)";
                got.set(h, [...(got.get(h) ?? []), addressOf(e.block, ordinal)]);
              });
            const diffs: string[] = [];
            for (const [h, a] of want)
              if (got.get(h)?.join() !== a)
                diffs.push(`${h}: returned ${a}, holds [${got.get(h) ?? ""}]`);
            for (const [h, addrs] of got)
              if (!want.has(h)) diffs.push(`${h}: not held, holds [${addrs}]`);
            expect(diffs, `round ${round}, kills at calls ${kills.join(" ")}`).toEqual([]);
          } finally {
            await store.close();
          }
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    LIMIT_MS,
  );
});
