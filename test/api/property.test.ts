// Property tests: parseCidr() against ipaddr.js, and formatSelector()/parseSelector() round trips.
import fc from "fast-check";
import ipaddr from "ipaddr.js";
import { describe, expect, it } from "vitest";
import { parseCidr } from "../../src/api/fields.js";
import { formatSelector, parseSelector, type Selector } from "../../src/api/selector.js";

describe("parseCidr() properties", () => {
  it("agrees with ipaddr.js on the network and on host bits (IPv4 and IPv6)", () => {
    const v4 = fc.tuple(
      fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 }),
      fc.integer({ min: 0, max: 32 }),
    );
    const v6 = fc.tuple(
      fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 16, maxLength: 16 }),
      fc.integer({ min: 0, max: 128 }),
    );
    fc.assert(
      fc.property(fc.oneof(v4, v6), ([bytes, len]) => {
        const addr = ipaddr.fromByteArray(bytes);
        const text = `${addr.toString()}/${len}`;
        const p = parseCidr(text);
        expect(p).toBeDefined();
        const network =
          addr.kind() === "ipv4"
            ? ipaddr.IPv4.networkAddressFromCIDR(text)
            : ipaddr.IPv6.networkAddressFromCIDR(text);
        const canonical =
          network.kind() === "ipv6"
            ? (network as ipaddr.IPv6).toRFC5952String()
            : network.toString();
        expect(p?.family).toBe(addr.kind() === "ipv4" ? 4 : 6);
        expect(p?.network).toBe(`${canonical}/${len}`);
        expect(p?.hostBits).toBe(network.toByteArray().some((b, i) => b !== bytes[i]));
        expect(parseCidr(p?.network ?? "")?.hostBits).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  it("never accepts a prefix length beyond the family's width", () => {
    fc.assert(
      fc.property(fc.integer({ min: 33, max: 999 }), (len) => {
        expect(parseCidr(`10.0.0.0/${len}`)).toBeUndefined();
        if (len > 128) expect(parseCidr(`fd00::/${len}`)).toBeUndefined();
      }),
    );
  });
});

const key = fc
  .stringMatching(/^[a-z][a-z0-9._/-]{0,8}[a-z0-9]$/)
  .filter(
    (k) => !["all", "global", "has", "in", "not", "contains", "starts", "ends", "with"].includes(k),
  );
const value = fc.stringMatching(/^[A-Za-z0-9 ._-]{0,8}$/);

const selectorArb: fc.Arbitrary<Selector> = fc.letrec<{ sel: Selector }>((tie) => ({
  sel: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant<Selector>({ op: "all" }),
    key.map((k): Selector => ({ op: "has", key: k })),
    fc
      .tuple(fc.constantFrom("eq", "ne", "contains", "startsWith", "endsWith" as const), key, value)
      .map(([op, k, v]): Selector => ({ op, key: k, value: v }) as Selector),
    fc
      .tuple(fc.constantFrom("in", "notIn" as const), key, fc.array(value, { maxLength: 3 }))
      .map(([op, k, vs]): Selector => ({ op, key: k, values: vs }) as Selector),
    tie("sel").map((s): Selector => ({ op: "not", arg: s })),
    fc
      .tuple(
        fc.constantFrom("and", "or" as const),
        fc.array(tie("sel"), { minLength: 2, maxLength: 3 }),
      )
      .map(([op, args]): Selector => ({ op, args })),
  ),
})).sel;

describe("formatSelector() / parseSelector()", () => {
  it("round-trips every selector", () => {
    fc.assert(
      fc.property(selectorArb, (sel) => {
        expect(parseSelector(formatSelector(sel))).toEqual(sel);
      }),
      { numRuns: 500 },
    );
  });
});
