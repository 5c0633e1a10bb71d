import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  assignFromBlock,
  type Block,
  BlockDraft,
  decodeBlock,
  encodeBlock,
  IpamDataError,
  inUseCount,
  newBlock,
  ordinalsOfHandle,
  releaseFromBlock,
  releaseHandleFromBlock,
} from "../../src/ipam/block.js";
import { parseCidr } from "../../src/lib/ip.js";

const KEY = "/ocelot/ipam/v2/assignment/ipv4/block/10.0.0.0-28";
const attrs = (h: string) => ({ handleId: h, secondary: { pod: h } });

describe("block", () => {
  it("assignFromBlock() reuses the longest-free address first", () => {
    let b = newBlock(parseCidr("10.0.0.0/30"), "host:n1", null);
    for (const h of ["a", "b", "c"]) b = assignFromBlock(b, 1, attrs(h)).block;
    b = releaseHandleFromBlock(b, "b", 1).block; // ordinal 1 freed after 3 (never used)
    const next = assignFromBlock(b, 2, attrs("d"));
    expect(next.assigned.map((a) => a.ordinal)).toEqual([3, 1]);
  });

  it("releaseFromBlock() with a stale sequence number leaves a reused address alone", () => {
    let b = newBlock(parseCidr("10.0.0.0/31"), null, null);
    const first = assignFromBlock(b, 1, attrs("old"));
    b = releaseFromBlock(first.block, [{ ordinal: 0 }], 1).block;
    b = assignFromBlock(b, 1, attrs("x")).block; // takes ordinal 1
    const again = assignFromBlock(b, 1, attrs("new")); // ordinal 0 again, new sequence
    expect(again.assigned[0]?.ordinal).toBe(0);
    const late = releaseFromBlock(
      again.block,
      [{ ordinal: 0, sequence: first.assigned[0]?.sequence }],
      2,
    );
    expect(late.badSequence).toEqual([0]);
    expect(ordinalsOfHandle(late.block, "new")).toEqual([0]);
  });

  it("assignFromBlock() skips reserved ordinals", () => {
    const b = newBlock(parseCidr("10.0.0.0/30"), null, null);
    const r = assignFromBlock(b, 4, attrs("a"), (o) => o === 0 || o === 2);
    expect(r.assigned.map((a) => a.ordinal)).toEqual([1, 3]);
  });

  it("decodeBlock() rejects bad stored data naming the key", () => {
    const good = JSON.parse(
      encodeBlock(
        assignFromBlock(newBlock(parseCidr("10.0.0.0/28"), null, null), 2, attrs("a")).block,
      ),
    );
    const cases: Array<[string, string]> = [
      ["{not json", "not JSON"],
      [JSON.stringify({ ...good, owners: [0] }), "owners"],
      [JSON.stringify({ ...good, owners: [0, 5] }), "missing attribute 5"],
      [JSON.stringify({ ...good, unallocated: [[1, 15]] }), "both allocated and free"],
      [JSON.stringify({ ...good, unallocated: [[3, 15]] }), "neither allocated nor free"],
      [JSON.stringify({ ...good, cidr: "10.0.0.1/28" }), "host bits"],
      [JSON.stringify({ ...good, extra: 1 }), "extra"],
      [JSON.stringify({ ...good, sequenceNumber: -1 }), "sequenceNumber"],
      [JSON.stringify({ ...good, sequences: [0] }), '"sequences" has 1 entries'],
      [JSON.stringify({ ...good, sequences: [0, -1] }), "sequences.1"],
      [JSON.stringify({ ...good, attributes: [[]] }), "attributes.0"],
      [JSON.stringify({ ...good, attributes: [[1]] }), "attributes.0.0"],
      [JSON.stringify({ ...good, attributes: [["a", { pod: 1 }]] }), "attributes.0.1.pod"],
    ];
    for (const [text, why] of cases) {
      expect(() => decodeBlock(KEY, text)).toThrow(IpamDataError);
      expect(() => decodeBlock(KEY, text)).toThrow(KEY);
      expect(() => decodeBlock(KEY, text)).toThrow(why);
    }
  });

  it("encodeBlock() stores the owner node only for borrowed addresses; decodeBlock() restores it", () => {
    let b = newBlock(parseCidr("10.0.0.0/30"), "host:n1", null);
    b = assignFromBlock(b, 1, { handleId: "own", secondary: { pod: "a", node: "n1" } }).block;
    b = assignFromBlock(b, 1, { handleId: "borrowed", secondary: { pod: "b", node: "n2" } }).block;
    const stored = JSON.parse(encodeBlock(b));
    expect(stored.attributes).toEqual([
      ["own", { pod: "a" }],
      ["borrowed", { pod: "b", node: "n2" }],
    ]);
    expect(decodeBlock(KEY, encodeBlock(b)).attributes).toEqual(b.attributes);
  });

  it("encodeBlock() writes sequences beside owners and no empty secondary (about half the bytes)", () => {
    let b = newBlock(parseCidr("10.0.0.0/26"), "host:n1", null);
    for (let i = 0; i < 64; i++)
      b = assignFromBlock(b, 1, { handleId: `pod-${i}`, secondary: { node: "n1" } }).block;
    const text = encodeBlock(b);
    const stored = JSON.parse(text);
    expect(stored.sequences).toEqual(Array.from({ length: 64 }, (_, i) => i));
    expect(stored.attributes[5]).toEqual(["pod-5"]);
    expect(stored.sequenceNumberForAllocation).toBeUndefined();
    // The first form of the same block, for comparison and as a reader test.
    const first = {
      ...stored,
      sequences: undefined,
      sequenceNumberForAllocation: Object.fromEntries(
        stored.sequences.map((s: number) => [String(s), s]),
      ),
      attributes: stored.attributes.map(([h]: [string]) => ({ handle_id: h, secondary: {} })),
    };
    const firstText = JSON.stringify(first);
    expect(text.length).toBeLessThan(firstText.length * 0.6);
    const again = decodeBlock(KEY, firstText);
    expect(again.attributes).toEqual(b.attributes);
    expect([...again.seqForAllocation]).toEqual([...b.seqForAllocation]);
    expect(encodeBlock(again)).toBe(text);
  });

  it("decodeBlock() reads the first stored form ({handle_id, secondary}, sequenceNumberForAllocation)", () => {
    const text = JSON.stringify({
      cidr: "10.0.0.0/30",
      affinity: "host:n1",
      affinityClaimTime: null,
      allocated: Buffer.from([0b0101]).toString("base64"),
      owners: [0, 1],
      unallocated: [
        [1, 1],
        [3, 3],
      ],
      attributes: [
        { handle_id: "a", secondary: { pod: "a" } },
        { handle_id: "b", secondary: { pod: "b", node: "n2" } },
      ],
      sequenceNumber: 9,
      sequenceNumberForAllocation: { "0": 7, "2": 8 },
      emptySince: null,
    });
    const b = decodeBlock(KEY, text);
    expect(ordinalsOfHandle(b, "a")).toEqual([0]);
    expect(ordinalsOfHandle(b, "b")).toEqual([2]);
    expect(b.attributes[0]?.secondary).toEqual({ pod: "a", node: "n1" });
    expect([...b.seqForAllocation]).toEqual([
      [0, 7],
      [2, 8],
    ]);
    expect(() =>
      decodeBlock(KEY, JSON.stringify({ ...JSON.parse(text), sequences: [7, 8] })),
    ).toThrow("exactly one of");
    expect(() =>
      decodeBlock(
        KEY,
        JSON.stringify({ ...JSON.parse(text), sequenceNumberForAllocation: { "0": 7 } }),
      ),
    ).toThrow("ordinal 2 has no sequence number");
  });

  it("encodeBlock() escapes handles and attributes, and matches JSON.stringify", () => {
    let b = newBlock(parseCidr("fd00:1::/122"), 'host:n"1', "2026-01-01T00:00:00.000Z");
    b = assignFromBlock(b, 2, {
      handleId: 'k8s "x"\n\u2028',
      secondary: { pod: "p\\", node: 'n"1' },
    }).block;
    b = assignFromBlock(b, 1, { handleId: null, secondary: { node: "n2" } }).block;
    b = releaseFromBlock(b, [{ ordinal: 0 }], 5).block;
    const text = encodeBlock(b);
    expect(text).toBe(JSON.stringify(JSON.parse(text)));
    const again = decodeBlock(KEY, text);
    expect(again.attributes).toEqual(b.attributes);
    expect([...again.unallocated]).toEqual([...b.unallocated]);
  });

  it("encodeBlock() (built by hand) decodes back to the same block and is canonical JSON (property)", () => {
    const op = fc.oneof(
      fc.record({ assign: fc.integer({ min: 1, max: 5 }), h: fc.integer({ min: 0, max: 6 }) }),
      fc.record({ release: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), fc.boolean(), (ops, borrowed) => {
        let b = newBlock(parseCidr("10.0.0.0/27"), borrowed ? null : "host:n1", null);
        for (const o of ops) {
          if ("assign" in o) {
            b = assignFromBlock(b, o.assign, {
              handleId: o.h === 0 ? null : `h"${o.h}`,
              secondary: o.h % 2 ? { node: "n1", pod: `p${o.h}` } : { node: "n1" },
            }).block;
          } else {
            const held = [...b.owner.keys()].filter((i) => (b.owner[i] as number) >= 0);
            const ordinal = held[o.release % Math.max(1, held.length)];
            if (ordinal !== undefined) b = releaseFromBlock(b, [{ ordinal }], 7).block;
          }
        }
        const text = encodeBlock(b);
        const parsed = JSON.parse(text);
        expect(text).toBe(JSON.stringify(parsed));
        expect(Object.keys(parsed)).toEqual([
          "cidr",
          "affinity",
          "affinityClaimTime",
          "allocated",
          "owners",
          "sequences",
          "unallocated",
          "attributes",
          "sequenceNumber",
          "emptySince",
        ]);
        const back = decodeBlock(KEY, text);
        expect([...back.owner]).toEqual([...b.owner]);
        expect([...back.unallocated]).toEqual([...b.unallocated]);
        expect(back.attributes).toEqual(b.attributes);
        expect([...back.seqForAllocation].sort()).toEqual([...b.seqForAllocation].sort());
        expect(back.sequenceNumber).toBe(b.sequenceNumber);
        expect(back.emptySince).toBe(b.emptySince);
        expect(encodeBlock(back)).toBe(text);
      }),
    );
  });

  it("encodeBlock() of each version, extending the last version's text, equals the whole block's (property)", () => {
    // Every version is encoded as it is made (as the IPAM store writes it), so drafts that only
    // append take the incremental path; each must equal the encoding of a block value with no
    // history (decoded afresh) and the canonical JSON.
    const op = fc.oneof(
      fc.record({ assign: fc.integer({ min: 1, max: 4 }), h: fc.integer({ min: 0, max: 5 }) }),
      fc.record({ release: fc.nat() }),
      fc.record({
        batch: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 3 }),
      }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 50 }), fc.boolean(), (ops, borrowed) => {
        let b = newBlock(parseCidr("10.0.0.0/27"), borrowed ? null : "host:n1", "t0");
        let step = 0;
        for (const o of ops) {
          step++;
          if ("assign" in o) {
            b = assignFromBlock(b, o.assign, {
              handleId: o.h === 0 ? null : `h"${o.h}`,
              secondary: o.h % 2 ? { node: "n1", pod: `p${o.h}` } : { node: "n1" },
            }).block;
          } else if ("batch" in o) {
            const draft = new BlockDraft(b);
            for (const [i, n] of o.batch.entries())
              draft.assign(n, { handleId: `s${step}-${i}`, secondary: { node: "n2" } });
            b = draft.finish();
          } else {
            const held = [...b.owner.keys()].filter((i) => (b.owner[i] as number) >= 0);
            const ordinal = held[o.release % Math.max(1, held.length)];
            if (ordinal !== undefined) b = releaseFromBlock(b, [{ ordinal }], 7).block;
          }
          const text = encodeBlock(b);
          expect(text).toBe(JSON.stringify(JSON.parse(text)));
          expect(encodeBlock(decodeBlock(KEY, text))).toBe(text);
          expect([...decodeBlock(KEY, text).seqForAllocation]).toEqual([...b.seqForAllocation]);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("encodeBlock() writes the bitmap as Buffer's base64 for every block size (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 20, max: 32 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        (len, picks) => {
          let b = newBlock(parseCidr(`10.0.0.0/${len}`), null, null);
          const size = b.owner.length;
          const ordinals = new Set(picks.map((p) => p % size));
          const bits = new Uint8Array((size + 7) >> 3);
          for (const o of ordinals) bits[o >> 3] = (bits[o >> 3] as number) | (1 << (o & 7));
          b = assignFromBlock(b, ordinals.size, attrs("a"), (o) => !ordinals.has(o)).block;
          expect(JSON.parse(encodeBlock(b)).allocated).toBe(Buffer.from(bits).toString("base64"));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("BlockDraft: a batch of assignments gives what one-by-one assignFromBlock() gives", () => {
    let one = newBlock(parseCidr("10.0.0.0/28"), "host:n1", null);
    one = assignFromBlock(one, 2, attrs("x")).block;
    one = releaseFromBlock(one, [{ ordinal: 0 }], 1).block;
    const base = one;
    const draft = new BlockDraft(base);
    const reqs: Array<[string, number]> = [
      ["a", 1],
      ["b", 3],
      ["a", 2],
      ["c", 20],
    ];
    for (const [h, n] of reqs) {
      const step = assignFromBlock(one, n, attrs(h));
      one = step.block;
      expect(draft.assign(n, attrs(h))).toEqual(step.assigned);
    }
    expect(draft.ordinalsOf("a")).toEqual(ordinalsOfHandle(one, "a"));
    const batched = draft.finish();
    expect(encodeBlock(batched)).toBe(encodeBlock(one));
    expect(inUseCount(base)).toBe(1); // the block passed in is unchanged
    expect(new BlockDraft(base).finish()).toBe(base);
  });

  it("IPv6 /122 blocks hold 64 addresses", () => {
    const b = newBlock(parseCidr("fd00:1::/122"), null, null);
    const r = assignFromBlock(b, 64, attrs("a"));
    expect(r.assigned).toHaveLength(64);
    expect(decodeBlock(KEY, encodeBlock(r.block)).owner.length).toBe(64);
  });

  it("matches a FIFO model under random assign/release, and survives encode/decode (property)", () => {
    type Cmd =
      | { op: "assign"; n: number; h: number }
      | { op: "release"; h: number }
      | { op: "releaseOrd"; o: number };
    const cmd: fc.Arbitrary<Cmd> = fc.oneof(
      fc.record({
        op: fc.constant("assign" as const),
        n: fc.integer({ min: 1, max: 5 }),
        h: fc.integer({ min: 0, max: 6 }),
      }),
      fc.record({ op: fc.constant("release" as const), h: fc.integer({ min: 0, max: 6 }) }),
      fc.record({ op: fc.constant("releaseOrd" as const), o: fc.integer({ min: 0, max: 15 }) }),
    );
    fc.assert(
      fc.property(
        fc.array(cmd, { maxLength: 60 }),
        fc.integer({ min: -1, max: 15 }),
        (cmds, reservedOrd) => {
          let b: Block = newBlock(parseCidr("10.0.0.0/28"), "host:n", null);
          const isReserved = (o: number) => o === reservedOrd;
          const holder = new Map<number, string>();
          let queue = Array.from({ length: 16 }, (_, i) => i);
          for (const c of cmds) {
            if (c.op === "assign") {
              const r = assignFromBlock(b, c.n, attrs(`h${c.h}`), isReserved);
              const expected = queue.filter((o) => !isReserved(o)).slice(0, c.n);
              expect(r.assigned.map((a) => a.ordinal)).toEqual(expected);
              queue = queue.filter((o) => !expected.includes(o));
              for (const o of expected) holder.set(o, `h${c.h}`);
              b = r.block;
            } else if (c.op === "release") {
              const r = releaseHandleFromBlock(b, `h${c.h}`, 0);
              const mine = [...holder]
                .filter(([, h]) => h === `h${c.h}`)
                .map(([o]) => o)
                .sort((x, y) => x - y);
              expect(r.released).toEqual(mine);
              for (const o of mine) holder.delete(o);
              queue.push(...mine);
              b = r.block;
            } else {
              const r = releaseFromBlock(b, [{ ordinal: c.o }], 0);
              expect(r.released).toEqual(holder.has(c.o) ? [c.o] : []);
              if (holder.delete(c.o)) queue.push(c.o);
              b = r.block;
            }
            expect(inUseCount(b)).toBe(holder.size);
            expect([...b.unallocated]).toEqual(queue);
            const text = encodeBlock(b);
            // Hand-built text: exactly what JSON.stringify gives for the same value.
            expect(text).toBe(JSON.stringify(JSON.parse(text)));
            b = decodeBlock(KEY, text);
            expect(encodeBlock(b)).toBe(text);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
