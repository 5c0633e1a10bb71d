// Key-range helpers shared by the backends: prefix ranges in bytes, etcd range ends, key order,
// and the retry backoff.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { backoffDelay, rangeEnd, rangeStart } from "../../src/datastore/etcd.js";
import { compareKeys } from "../../src/datastore/memory.js";
import { prefixRange } from "../../src/datastore/sqlite.js";

describe("prefix ranges", () => {
  it("rangeEnd() increments the last byte below 0xff and drops trailing 0xff bytes", () => {
    expect(rangeEnd("/a/")).toEqual(Buffer.from("/a0"));
    expect(rangeEnd("a\u00ff")).toEqual(Buffer.from([0x61, 0xc3, 0xc0])); // ÿ is c3 bf in UTF-8
    expect(rangeEnd("")).toEqual(Buffer.from([0]));
    expect(rangeStart("")).toEqual(Buffer.from([0]));
    expect(prefixRange("")).toEqual([Buffer.alloc(0), undefined]);
  });

  it("a key is in [lo, hi) exactly when it starts with the prefix (property)", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "binary", maxLength: 6 }),
        fc.string({ unit: "binary", maxLength: 8 }),
        (prefix, key) => {
          const [lo, hi] = prefixRange(prefix);
          const k = Buffer.from(key);
          const inRange =
            Buffer.compare(k, lo) >= 0 && (hi === undefined || Buffer.compare(k, hi) < 0);
          const starts = k.subarray(0, lo.length).equals(lo);
          expect(inRange).toBe(starts);
          if (prefix !== "")
            expect(hi === undefined ? undefined : Buffer.from(hi)).toEqual(rangeEnd(prefix));
        },
      ),
      { numRuns: 500 },
    );
  });

  it("compareKeys() sorts as UTF-8 bytes do, surrogate pairs included (property)", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "binary", maxLength: 5 }),
        fc.string({ unit: "binary", maxLength: 5 }),
        (a, b) => {
          expect(Math.sign(compareKeys(a, b))).toBe(
            Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))),
          );
        },
      ),
      { numRuns: 5000 },
    );
  });
});

describe("backoffDelay()", () => {
  it("grows exponentially from the initial delay and stays within the cap", () => {
    for (let attempt = 0; attempt < 30; attempt++) {
      const cap = Math.min(1000, 10 * 2 ** attempt);
      for (let i = 0; i < 20; i++) {
        const d = backoffDelay(attempt, 10, 1000);
        expect(d).toBeGreaterThanOrEqual(Math.floor(cap / 2));
        expect(d).toBeLessThanOrEqual(cap);
      }
    }
  });
});
