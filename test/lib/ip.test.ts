import fc from "fast-check";
import ipaddr from "ipaddr.js";
import { describe, expect, it } from "vitest";
import { formatAddress, parseAddress } from "../../src/lib/ip.js";

/** What ipaddr.js alone says (the reference for the IPv4 fast paths). */
function viaIpaddr(text: string): bigint | undefined {
  const s = text.trim();
  if (!ipaddr.IPv4.isValidFourPartDecimal(s)) return undefined;
  return BigInt(
    ipaddr.IPv4.parse(s)
      .toByteArray()
      .reduce((v, b) => v * 256 + b, 0),
  );
}

describe("cidr IPv4 fast paths", () => {
  it("formatAddress() and parseAddress() agree with ipaddr.js on every IPv4 address (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (n) => {
        const text = formatAddress(4, BigInt(n));
        const bytes = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
        expect(text).toBe(ipaddr.fromByteArray(bytes).toString());
        expect(parseAddress(text)).toEqual({ family: 4, value: BigInt(n) });
      }),
      { numRuns: 2000 },
    );
  });

  it("parseAddress() accepts and rejects dotted forms as ipaddr.js does (property)", () => {
    const part = fc.oneof(
      fc.integer({ min: 0, max: 300 }).map(String),
      fc.constantFrom("00", "01", "007", "0x1", "", "-1", "1e2", " 1", "2555"),
    );
    const dotted = fc
      .tuple(part, part, part, part, fc.constantFrom("", " ", "\t"))
      .map(([a, b, c, d, pad]) => `${pad}${a}.${b}.${c}.${d}${pad}`);
    fc.assert(
      fc.property(dotted, (text) => {
        const want = viaIpaddr(text);
        if (want === undefined) expect(() => parseAddress(text)).toThrow(`"${text}"`);
        else expect(parseAddress(text)).toEqual({ family: 4, value: want });
      }),
      { numRuns: 3000 },
    );
  });
});
