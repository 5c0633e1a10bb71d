// Export encoding (src/bgp/speaker/export.ts): a small announcement's bytes are reused for the
// same attribute set, prefixes and session options, and equal a fresh encoding; other prefixes
// or options get their own bytes.
import { describe, expect, it } from "vitest";
import { PrefixList, parsePrefix } from "../../src/bgp/rib/prefix.js";
import { makeWireBridge, wireAdapter } from "../../src/bgp/speaker/attrs.js";
import { encodeBatch } from "../../src/bgp/speaker/export.js";
import { Afi, Safi } from "../../src/bgp/wire/constants.js";
import { sessionOptions } from "../../src/bgp/wire/types.js";
import { decodeUpdate, encodeUpdates } from "../../src/bgp/wire/update.js";

const list = (...ps: string[]) => {
  const l = new PrefixList(4, 0);
  for (const p of ps) l.pushV4(parsePrefix(p).words[0] as number, parsePrefix(p).len);
  return l;
};
const hex = (ms: Uint8Array[]) => ms.map((m) => Buffer.from(m).toString("hex"));

describe("export encoding", () => {
  const bridge = makeWireBridge();
  const attrs = wireAdapter.make({ origin: 0, nextHop: "10.210.1.1", localPref: 100 });
  const four = sessionOptions({ fourOctetAs: true });
  const two = sessionOptions({ fourOctetAs: false });
  const v6 = new PrefixList(6, 0);

  it("reuses the bytes of the same set, prefixes and options, equal to a fresh encoding", () => {
    const a = encodeBatch(
      bridge,
      [{ attrId: 1, attrs, v4: list("10.128.0.0/26"), v6 }],
      null,
      four,
    );
    const b = encodeBatch(
      bridge,
      [{ attrId: 1, attrs, v4: list("10.128.0.0/26"), v6 }],
      null,
      four,
    );
    expect(hex(b)).toEqual(hex(a));
    const fresh = encodeUpdates(
      {
        afi: Afi.Ipv4,
        safi: Safi.Unicast,
        attributes: { ...attrs.wire, nextHop: 0x0ad20101 },
        announce: {
          afi: Afi.Ipv4,
          count: 1,
          addrs: Uint32Array.of(0x0a800000),
          lens: Uint8Array.of(26),
          pathIds: null,
        },
      },
      four,
    );
    expect(hex(a)).toEqual(hex(fresh));
    const u = decodeUpdate(a[0] as Uint8Array, four);
    expect(u.attributes?.nextHop).toBe(0x0ad20101);
  });

  it("other prefixes or options are encoded for themselves", () => {
    const a = encodeBatch(
      bridge,
      [{ attrId: 1, attrs, v4: list("10.128.0.0/26"), v6 }],
      null,
      four,
    );
    const c = encodeBatch(
      bridge,
      [{ attrId: 1, attrs, v4: list("10.128.0.64/26"), v6 }],
      null,
      four,
    );
    expect(hex(c)).not.toEqual(hex(a));
    expect(decodeUpdate(c[0] as Uint8Array, four).nlri.count).toBe(1);
    const d = encodeBatch(
      bridge,
      [{ attrId: 1, attrs, v4: list("10.128.0.0/26", "10.128.0.64/26"), v6 }],
      null,
      four,
    );
    expect(decodeUpdate(d[0] as Uint8Array, four).nlri.count).toBe(2);
    // Two-octet AS session: same prefixes, its own bytes (AS_PATH empty here: same length).
    const e = encodeBatch(bridge, [{ attrId: 1, attrs, v4: list("10.128.0.0/26"), v6 }], null, two);
    expect(decodeUpdate(e[0] as Uint8Array, two).nlri.count).toBe(1);
  });
});
