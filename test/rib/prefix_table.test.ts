import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatV4, formatV6, maskV4, parsePrefix } from "../../src/bgp/rib/prefix.js";
import { simpleAttrs } from "../../src/bgp/rib/simple_attrs.js";
import { makeRib, peer } from "./fixtures.js";

/** A deterministic xorshift so a failure is reproducible from the seed. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

describe("prefix table (open addressing, backward-shift deletion, growth)", () => {
  it("agrees with a Map model over many inserts and deletes of IPv4 and IPv6 prefixes", () => {
    for (const seed of [1, 2, 3]) {
      const rnd = rng(seed);
      const rib = makeRib();
      const a = peer(rib, { address: "192.0.2.1", asn: 65001 });
      const id = rib.intern(
        simpleAttrs({ nextHop: "192.0.2.1", asPath: [{ type: 2, asns: [65001] }] }),
      );
      const model = new Set<string>();
      const w = new Uint32Array(4);
      // Few distinct high bits so that many keys collide in their home slots.
      const v4 = () => {
        const len = 8 + (rnd() % 25);
        const addr = (rnd() & 0x8f0fff00 & maskV4(len)) >>> 0;
        return { addr, len, text: formatV4(addr, len) };
      };
      const v6 = () => {
        const len = 16 + (rnd() % 49);
        w[0] = (0x20010db8 & maskV4(Math.min(len, 32))) >>> 0;
        w[1] = (rnd() & 0xf000000f & maskV4(Math.max(0, Math.min(len - 32, 32)))) >>> 0;
        w[2] = 0;
        w[3] = 0;
        return { len, text: formatV6(w, 0, len) };
      };
      for (let i = 0; i < 30_000; i++) {
        const add = rnd() % 3 !== 0;
        if (rnd() % 8 === 0) {
          const p = v6();
          if (add) rib.announceV6(a, id, w, 0, p.len);
          else rib.withdrawV6(a, w, 0, p.len);
          if (add) model.add(p.text);
          else model.delete(p.text);
        } else {
          const p = v4();
          if (add) rib.announceV4(a, id, p.addr, p.len);
          else rib.withdrawV4(a, p.addr, p.len);
          if (add) model.add(p.text);
          else model.delete(p.text);
        }
        if (i % 5000 === 4999) rib.drain();
      }
      rib.drain();
      const size = rib.size;
      expect(size.v4 + size.v6).toBe(model.size);
      expect(rib.peerCounts(a).received).toBe(model.size);
      const seen = new Set([...rib.locRib()].map((e) => e.prefix));
      expect(seen).toEqual(model);
      for (const p of model) expect(rib.explain(p)?.paths.length).toBe(1);
      // Withdraw everything in a random order: the table empties and lookups still work.
      const all = [...model];
      for (let i = all.length - 1; i > 0; i--) {
        const j = rnd() % (i + 1);
        [all[i], all[j]] = [all[j] as string, all[i] as string];
      }
      for (const [k, text] of all.entries()) {
        const p = parsePrefix(text);
        if (p.family === 4) rib.withdrawV4(a, p.words[0] as number, p.len);
        else rib.withdrawV6(a, p.words, 0, p.len);
        if (k % 1000 === 0) {
          rib.drain();
          const rest = all[k + 1];
          if (rest) expect(rib.explain(rest)?.paths.length).toBe(1);
        }
      }
      rib.drain();
      expect(rib.size).toEqual({ v4: 0, v6: 0 });
    }
  });

  it("parsePrefix/format round-trip", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 32 }),
        (x, len) => {
          const addr = (x & maskV4(len)) >>> 0;
          const text = formatV4(addr, len);
          const p = parsePrefix(text);
          expect(p).toMatchObject({ family: 4, len });
          expect(p.words[0]).toBe(addr);
        },
      ),
    );
    expect(formatV6(parsePrefix("2001:db8:0:1::/64").words, 0, 64)).toBe("2001:db8:0:1::/64");
  });
});
