// AffineBlocks' handle index against the scan it replaces (holdsHandle over every cached block),
// through random sequences of the changes IpamStore makes: drafted assignments (attributes
// appended), releases (attributes compacted), blocks read afresh, deletes and clears.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AffineBlocks } from "../../src/ipam/affine_blocks.js";
import {
  assignFromBlock,
  type Block,
  decodeBlock,
  encodeBlock,
  holdsHandle,
  newBlock,
  releaseHandleFromBlock,
} from "../../src/ipam/block.js";
import { parseCidr } from "../../src/lib/ip.js";

type Op =
  | { op: "assign"; block: number; h: number; count: number }
  | { op: "release"; block: number; h: number }
  | { op: "reread"; block: number }
  | { op: "delete"; block: number }
  | { op: "clear" }
  | { op: "ask"; h: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant("assign" as const),
      block: fc.integer({ min: 0, max: 2 }),
      h: fc.integer({ min: 0, max: 12 }),
      count: fc.integer({ min: 1, max: 3 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("release" as const),
      block: fc.integer({ min: 0, max: 2 }),
      h: fc.integer({ min: 0, max: 12 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("reread" as const),
      block: fc.integer({ min: 0, max: 2 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("delete" as const),
      block: fc.integer({ min: 0, max: 2 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ op: "clear" as const }) },
  {
    weight: 4,
    arbitrary: fc.record({ op: fc.constant("ask" as const), h: fc.integer({ min: 0, max: 12 }) }),
  },
);

const CIDRS = [parseCidr("10.0.0.0/29"), parseCidr("10.0.0.8/29"), parseCidr("10.0.0.16/29")];

describe("AffineBlocks", () => {
  it("holds(h) is true exactly when some cached block has an attribute for h", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        // The blocks as stored (the model) and the cache under test.
        const stored: Block[] = CIDRS.map((c) => newBlock(c, "host:n1", null));
        const cache = new AffineBlocks();
        const key = (i: number) => `/b/${i}`;
        let rev = 0;
        const check = () => {
          for (let h = 0; h <= 12; h++) {
            const scan = [...cache.values()].some((e) => holdsHandle(e.block, `h${h}`));
            expect(cache.holds(`h${h}`)).toBe(scan);
          }
        };
        for (const o of ops) {
          if (o.op === "assign") {
            const b = stored[o.block] as Block;
            const r = assignFromBlock(b, o.count, {
              handleId: `h${o.h}`,
              secondary: { node: "n1" },
            });
            stored[o.block] = r.block;
            cache.set(key(o.block), { key: key(o.block), rev: ++rev, block: r.block });
          } else if (o.op === "release") {
            const r = releaseHandleFromBlock(stored[o.block] as Block, `h${o.h}`, 0);
            stored[o.block] = r.block;
            cache.set(key(o.block), { key: key(o.block), rev: ++rev, block: r.block });
          } else if (o.op === "reread") {
            // A fresh decode: equal content, no shared attribute objects.
            const b = stored[o.block] as Block;
            const again = decodeBlock(key(o.block), encodeBlock(b));
            stored[o.block] = again;
            cache.set(key(o.block), { key: key(o.block), rev: ++rev, block: again });
          } else if (o.op === "delete") cache.delete(key(o.block));
          else if (o.op === "clear") cache.clear();
          else check();
        }
        check();
      }),
      { numRuns: 300 },
    );
  });

  it("answers false for a handle only a deleted block held", () => {
    const cache = new AffineBlocks();
    const b = assignFromBlock(newBlock(CIDRS[0] as never, "host:n1", null), 1, {
      handleId: "pod-a",
      secondary: {},
    }).block;
    cache.set("/b/0", { key: "/b/0", rev: 1, block: b });
    expect(cache.holds("pod-a")).toBe(true);
    cache.delete("/b/0");
    expect(cache.holds("pod-a")).toBe(false);
  });
});
