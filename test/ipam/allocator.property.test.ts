// Property tests of the allocator (through the store adapter on the in-memory store) against a
// simple model: random, partly concurrent, sequences of assign and release across nodes.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import { inUseCount } from "../../src/ipam/block.js";
import { IpamStore, PoolExhaustedError } from "../../src/ipam/store.js";
import { cidrContains, parseAddress, parseCidr } from "../../src/lib/ip.js";
import { putPool, putReservation } from "./helpers.js";

type Cmd =
  | { op: "assign"; node: number; h: number; v6: boolean }
  | { op: "release"; h: number }
  | { op: "releaseIp"; pick: number };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("assign" as const),
      node: fc.integer({ min: 0, max: 3 }),
      h: fc.integer({ min: 0, max: 40 }),
      v6: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("release" as const),
      h: fc.integer({ min: 0, max: 40 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("releaseIp" as const), pick: fc.nat() }) },
);

const ENABLED = [parseCidr("10.0.0.0/27"), parseCidr("fd00::/123")];
const RESERVED = [parseCidr("10.0.0.5/32"), parseCidr("10.0.0.24/30"), parseCidr("fd00::1/128")];
const CAPACITY = { 4: 32 - 5, 6: 32 - 1 };

async function setup(strict: boolean, maxBlocks: number) {
  const ds = new MemoryDatastore();
  await putPool(ds, "v4", "10.0.0.0/27", { blockSize: 29 });
  await putPool(ds, "v4-off", "10.9.0.0/27", { blockSize: 29, disabled: true });
  await putPool(ds, "v6", "fd00::/123", { blockSize: 125 });
  await putReservation(ds, "r", ["10.0.0.5/32", "10.0.0.24/30", "fd00::1/128"]);
  const ipam = new IpamStore(ds, { sleep: async () => {}, contextTtlMs: 60_000 });
  // A second client on the same store, as another process would be: its writes race ours.
  const other = new IpamStore(ds, { sleep: async () => {}, contextTtlMs: 60_000 });
  if (strict || maxBlocks)
    await ipam.setConfig({ strictAffinity: strict, maxBlocksPerHost: maxBlocks });
  return { ds, ipam, clients: [ipam, other] };
}

describe("allocator against a model (property)", () => {
  it("never duplicates, stays in enabled pools and out of reservations, counts exactly", async () => {
    await fc.assert(
      fc.asyncProperty(
        // Within a batch (run concurrently) each handle appears once: a runtime never runs two
        // requests for one container at the same time.
        fc.array(
          fc.uniqueArray(cmd, {
            minLength: 1,
            maxLength: 6,
            selector: (c) => (c.op === "releaseIp" ? -1 - c.pick : c.h),
          }),
          { maxLength: 25 },
        ),
        fc.boolean(),
        fc.constantFrom(0, 2),
        async (batches, strict, maxBlocks) => {
          const { ipam, clients } = await setup(strict, maxBlocks);
          const model = new Map<string, Set<string>>(); // handle -> addresses
          const owner = new Map<string, string>(); // address -> handle
          for (const batch of batches) {
            const busy = new Set(batch.flatMap((c) => (c.op === "releaseIp" ? [] : [`h${c.h}`])));
            // Each batch runs concurrently: CAS conflicts between nodes are part of the test.
            await Promise.all(
              batch.map(async (c) => {
                if (c.op === "assign") {
                  const handleId = `h${c.h}`;
                  const held = model.get(handleId);
                  const fam = c.v6 ? 6 : 4;
                  const usedBefore = [...owner.keys()].filter(
                    (a) => a.includes(":") === c.v6,
                  ).length;
                  try {
                    const client = clients[c.node % 2] as IpamStore;
                    const got = await client.autoAssign({
                      handleId,
                      // A container (its handle) lives on one node.
                      node: `n${c.h % 4}`,
                      num4: c.v6 ? 0 : 1,
                      num6: c.v6 ? 1 : 0,
                    });
                    if (held && [...held].some((a) => a.includes(":") === c.v6)) {
                      // Idempotent: the handle already had one of this family.
                      expect(got.map((g) => g.address).every((a) => held.has(a))).toBe(true);
                      return;
                    }
                    for (const g of got) {
                      expect(owner.has(g.address), `duplicate ${g.address}`).toBe(false);
                      owner.set(g.address, handleId);
                      const s = model.get(handleId) ?? new Set<string>();
                      s.add(g.address);
                      model.set(handleId, s);
                    }
                  } catch (err) {
                    expect(err).toBeInstanceOf(PoolExhaustedError);
                    // Without strict affinity or block limits, exhaustion means the pool is full.
                    if (!strict && maxBlocks === 0)
                      expect(usedBefore + batch.length).toBeGreaterThanOrEqual(CAPACITY[fam]);
                  }
                } else if (c.op === "release") {
                  const handleId = `h${c.h}`;
                  const released = await (clients[c.h % 2] as IpamStore).releaseByHandle(handleId);
                  expect(new Set(released)).toEqual(model.get(handleId) ?? new Set());
                  for (const a of released) owner.delete(a);
                  model.delete(handleId);
                } else {
                  const all = [...owner].filter(([, h]) => !busy.has(h)).map(([a]) => a);
                  if (all.length === 0) return;
                  const addr = all[c.pick % all.length] as string;
                  const h = owner.get(addr) as string;
                  owner.delete(addr);
                  model.get(h)?.delete(addr);
                  expect(await ipam.releaseAddress(addr)).toBe(addr);
                }
              }),
            );
          }
          // The store agrees with the model exactly.
          const blocks = [...(await ipam.listBlocks(4)), ...(await ipam.listBlocks(6))];
          expect(blocks.reduce((n, e) => n + inUseCount(e.block), 0)).toBe(owner.size);
          for (const a of owner.keys()) {
            const p = parseAddress(a);
            expect(ENABLED.some((c) => cidrContains(c, p.family, p.value))).toBe(true);
            expect(RESERVED.some((c) => cidrContains(c, p.family, p.value))).toBe(false);
            expect((await ipam.getAllocation(a))?.handleId).toBe(owner.get(a));
          }
          if (maxBlocks > 0) {
            for (let n = 0; n < 4; n++) {
              const held = (await ipam.listAffinities()).filter(
                (x) => x.node === `n${n}` && !x.cidr.includes(":"),
              );
              expect(held.length).toBeLessThanOrEqual(maxBlocks);
            }
          }
          if (strict) {
            for (const e of blocks) {
              for (let o = 0; o < e.block.owner.length; o++) {
                const idx = e.block.owner[o] as number;
                if (idx >= 0)
                  expect(e.block.affinity).toBe(`host:${e.block.attributes[idx]?.secondary.node}`);
              }
            }
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});
