// One test per error rule the codec applies, named after the rule (RFC 7606, RFC 4271 §6,
// RFC 6793, RFC 4760 §7, RFC 7313 §5, RFC 9003).
import { describe, expect, it } from "vitest";
import {
  AsTrans,
  AttrType,
  NotificationCode,
  UpdateMessageErrorSubcode,
} from "../../src/bgp/wire/constants.js";
import {
  decodeNotification,
  decodeRouteRefresh,
  encodeNotification,
} from "../../src/bgp/wire/message.js";
import { nlriToText } from "../../src/bgp/wire/nlri.js";
import { decodeOpen, encodeOpen } from "../../src/bgp/wire/open.js";
import {
  familyKey,
  Ipv6Unicast,
  NotificationError,
  Rfc7606Action,
  type SessionOptions,
  sessionOptions,
  type UpdateMessage,
} from "../../src/bgp/wire/types.js";
import { decodeUpdate, encodeUpdateMessage } from "../../src/bgp/wire/update.js";
import { asPath4, attr, base, be32, nextHop, nlri16, O, OT, origin, T, update } from "./helpers.js";

const ibgp = sessionOptions({ fourOctetAs: true, external: false });
const ebgp = sessionOptions({ fourOctetAs: true, external: true });
const as2 = sessionOptions({ fourOctetAs: false, external: true });

function dec(u: Uint8Array, opts: SessionOptions = ibgp): UpdateMessage {
  return decodeUpdate(u, opts);
}

function throwsNotification(f: () => unknown, code: number, subcode: number): NotificationError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(NotificationError);
    const n = e as NotificationError;
    expect([n.code, n.subcode]).toEqual([code, subcode]);
    return n;
  }
  throw new Error("Expected a NotificationError");
}

const mpReach6 = (
  nlri: number[],
  nh: number[] = [0x20, 1, 0xd, 0xb8, ...new Array(11).fill(0), 1],
) => attr(O | 0x10, 14, [0, 2, 1, nh.length, ...nh, 0, ...nlri]);

describe("RFC 7606 §3 general rules", () => {
  it("RFC 7606 §3 (c): Optional/Transitive bits in conflict make ORIGIN malformed -> treat-as-withdraw", () => {
    const u = dec(update({ attrs: [attr(OT, 1, [0]), asPath4, nextHop], nlri: nlri16 }));
    expect(u.action).toBe(Rfc7606Action.TreatAsWithdraw);
    expect(u.errors[0].attrType).toBe(AttrType.Origin);
  });

  it("RFC 7606 §3 (c): flag conflict on ATOMIC_AGGREGATE follows its own rule -> attribute discard", () => {
    const u = dec(update({ attrs: [...base, attr(OT, 6, [])], nlri: nlri16 }));
    expect(u.action).toBe(Rfc7606Action.AttributeDiscard);
    expect(u.attributes?.atomicAggregate).toBe(false);
  });

  it("RFC 7606 §3 (d): a missing well-known mandatory attribute -> treat-as-withdraw", () => {
    for (const attrs of [
      [asPath4, nextHop],
      [origin, nextHop],
      [origin, asPath4],
    ]) {
      expect(dec(update({ attrs, nlri: nlri16 })).action).toBe(Rfc7606Action.TreatAsWithdraw);
    }
    expect(dec(update({ nlri: nlri16 })).action).toBe(Rfc7606Action.TreatAsWithdraw);
  });

  it("RFC 7606 §3 (d) with RFC 4760 §4: an UPDATE with only MP_UNREACH_NLRI needs no other attribute", () => {
    const u = dec(update({ attrs: [attr(O, 15, [0, 2, 1, 32, 0x20, 1, 0xd, 0xb8])] }));
    expect(u.action).toBe(Rfc7606Action.None);
    expect(nlriToText(u.attributes?.mpUnreach?.withdrawn as never)).toEqual([
      { prefix: "2001:db8::/32", pathId: 0 },
    ]);
  });

  it("RFC 4760 §3: NEXT_HOP is not mandatory when only MP_REACH_NLRI carries prefixes", () => {
    const u = dec(update({ attrs: [mpReach6([32, 0x20, 1, 0xd, 0xb8]), origin, asPath4] }));
    expect(u.action).toBe(Rfc7606Action.None);
  });

  it("RFC 7606 §3 (g): MP_REACH_NLRI twice -> NOTIFICATION Malformed Attribute List", () => {
    const mp = mpReach6([32, 0x20, 1, 0xd, 0xb8]);
    throwsNotification(
      () => dec(update({ attrs: [mp, origin, asPath4, mp] })),
      3,
      UpdateMessageErrorSubcode.MalformedAttributeList,
    );
  });

  it("RFC 7606 §3 (g): any other attribute twice -> later occurrences discarded, first kept", () => {
    const u = dec(
      update({ attrs: [...base, attr(O, 4, be32(5)), attr(O, 4, be32(9))], nlri: nlri16 }),
    );
    expect(u.action).toBe(Rfc7606Action.AttributeDiscard);
    expect(u.attributes?.med).toBe(5);
  });

  it("RFC 7606 §3 (j): with several errors the strongest action applies", () => {
    const u = dec(
      update({ attrs: [...base, attr(T, 6, [1]), attr(OT, 8, [1, 2, 3])], nlri: nlri16 }),
    );
    expect(u.errors.map((e) => e.action).sort()).toEqual([
      Rfc7606Action.AttributeDiscard,
      Rfc7606Action.TreatAsWithdraw,
    ]);
    expect(u.action).toBe(Rfc7606Action.TreatAsWithdraw);
  });
});

describe("RFC 7606 §4 and §5: lengths and NLRI", () => {
  it("RFC 7606 §4: an attribute overrunning the attribute section -> treat-as-withdraw", () => {
    const bad = [...base.flat(), 0x80, 4, 9, 0, 0];
    const u = dec(update({ attrs: [bad], nlri: nlri16 }));
    expect(u.action).toBe(Rfc7606Action.TreatAsWithdraw);
    expect(nlriToText(u.nlri)).toEqual([{ prefix: "10.1.0.0/16", pathId: 0 }]);
  });

  it("RFC 7606 §4: a truncated attribute header at the end -> treat-as-withdraw", () => {
    const u = dec(update({ attrs: [...base, [0x40, 1]], nlri: nlri16 }));
    expect(u.action).toBe(Rfc7606Action.TreatAsWithdraw);
  });

  it("RFC 4271 §6.3: Withdrawn Routes Length + Total Attribute Length beyond the message -> Malformed Attribute List", () => {
    const m = update({ attrs: base, nlri: nlri16 });
    m[22] += 10; // total attribute length too large
    throwsNotification(() => dec(m), 3, UpdateMessageErrorSubcode.MalformedAttributeList);
    const w = update({ withdrawn: [8, 10] });
    w[20] = 200; // withdrawn length too large
    throwsNotification(() => dec(w), 3, UpdateMessageErrorSubcode.MalformedAttributeList);
  });

  it("RFC 7606 §5.3: an NLRI field that cannot be parsed -> NOTIFICATION Invalid Network Field", () => {
    throwsNotification(
      () => dec(update({ attrs: base, nlri: [24, 10, 1] })),
      3,
      UpdateMessageErrorSubcode.InvalidNetworkField,
    );
    throwsNotification(
      () => dec(update({ attrs: base, nlri: [33, 10, 1, 2, 3, 4] })),
      3,
      UpdateMessageErrorSubcode.InvalidNetworkField,
    );
    throwsNotification(
      () => dec(update({ withdrawn: [16, 10] })),
      3,
      UpdateMessageErrorSubcode.InvalidNetworkField,
    );
  });

  it("RFC 7606 §5.3 with §7.11: malformed NLRI inside MP_REACH_NLRI -> AFI/SAFI disable", () => {
    const u = dec(update({ attrs: [mpReach6([129, 0x20]), origin, asPath4] }));
    expect(u.action).toBe(Rfc7606Action.AfiSafiDisable);
    expect(u.disabledFamily).toBe(Ipv6Unicast);
  });
});

describe("RFC 7606 §7: attribute by attribute", () => {
  const taw = (attrs: number[][], opts = ibgp) =>
    expect(dec(update({ attrs, nlri: nlri16 }), opts).action).toBe(Rfc7606Action.TreatAsWithdraw);
  const discard = (attrs: number[][], opts = ibgp) => {
    const u = dec(update({ attrs, nlri: nlri16 }), opts);
    expect(u.action, u.errors.map((e) => e.reason).join()).toBe(Rfc7606Action.AttributeDiscard);
    return u;
  };

  it("RFC 7606 §7.1: ORIGIN of wrong length or undefined value -> treat-as-withdraw", () => {
    taw([attr(T, 1, [3]), asPath4, nextHop]);
    taw([attr(T, 1, [0, 0]), asPath4, nextHop]);
  });

  it("RFC 7606 §7.2: AS_PATH with a zero-length segment, an overrun or a bad segment type -> treat-as-withdraw", () => {
    taw([origin, attr(T, 2, [2, 0]), nextHop]);
    taw([origin, attr(T, 2, [2, 2, ...be32(1)]), nextHop]);
    taw([origin, attr(T, 2, [7, 1, ...be32(1)]), nextHop]);
  });

  it("RFC 7606 §7.2: AS_PATH confederation segments from an external peer -> treat-as-withdraw", () => {
    const confed = [origin, attr(T, 2, [3, 1, ...be32(1)]), nextHop];
    taw(confed, ebgp);
    expect(dec(update({ attrs: confed, nlri: nlri16 }), ibgp).action).toBe(Rfc7606Action.None);
  });

  it("RFC 7606 §7.3: NEXT_HOP of wrong length -> treat-as-withdraw", () =>
    taw([origin, asPath4, attr(T, 3, [10, 0, 0])]));
  it("RFC 7606 §7.4: MULTI_EXIT_DISC of wrong length -> treat-as-withdraw", () =>
    taw([...base, attr(O, 4, [0, 0, 1])]));

  it("RFC 7606 §7.5: LOCAL_PREF from an external peer -> attribute discard; wrong length -> treat-as-withdraw", () => {
    const u = discard([...base, attr(T, 5, be32(100))], ebgp);
    expect(u.attributes?.localPref).toBeNull();
    expect(
      dec(update({ attrs: [...base, attr(T, 5, be32(100))], nlri: nlri16 }), ibgp).attributes
        ?.localPref,
    ).toBe(100);
    taw([...base, attr(T, 5, [0, 100])]);
  });

  it("RFC 7606 §7.6: ATOMIC_AGGREGATE of non-zero length -> attribute discard", () =>
    discard([...base, attr(T, 6, [0])]));

  it("RFC 7606 §7.7: AGGREGATOR of wrong length -> attribute discard (4-octet 8, 2-octet 6)", () => {
    discard([...base, attr(OT, 7, [0, 1, 10, 0, 0, 1])], ibgp);
    discard(
      [origin, attr(T, 2, [2, 1, 0xfd, 0xe9]), nextHop, attr(OT, 7, [...be32(1), 10, 0, 0, 1])],
      as2,
    );
  });

  it("RFC 7606 §7.8: COMMUNITIES not a non-zero multiple of 4 -> treat-as-withdraw", () => {
    taw([...base, attr(OT, 8, [1, 2, 3])]);
    taw([...base, attr(OT, 8, [])]);
  });

  it("RFC 7606 §7.9: ORIGINATOR_ID of wrong length -> treat-as-withdraw; from an external peer -> discard", () => {
    taw([...base, attr(O, 9, [1, 2, 3])]);
    discard([...base, attr(O, 9, [1, 2, 3, 4])], ebgp);
  });

  it("RFC 7606 §7.10: CLUSTER_LIST not a non-zero multiple of 4 -> treat-as-withdraw", () =>
    taw([...base, attr(O, 10, [1, 2, 3, 4, 5])]));

  it("RFC 7606 §7.11: MP_REACH_NLRI next hop length inconsistent with the AFI -> AFI/SAFI disable", () => {
    const u = dec(
      update({ attrs: [mpReach6([32, 0x20, 1, 0xd, 0xb8], [1, 2, 3, 4]), origin, asPath4] }),
    );
    expect(u.action).toBe(Rfc7606Action.AfiSafiDisable);
    expect(u.disabledFamily).toBe(Ipv6Unicast);
    expect(u.attributes?.mpReach).toBeNull();
  });

  it("RFC 7606 §7.11: MP_UNREACH_NLRI too short to name its AFI/SAFI -> session reset", () => {
    const n = throwsNotification(
      () => dec(update({ attrs: [attr(O, 15, [0, 2])] })),
      3,
      UpdateMessageErrorSubcode.OptionalAttributeError,
    );
    expect(Array.from(n.data)).toEqual([O, 15, 2, 0, 2]);
  });

  it("RFC 4760 §7: MP_REACH_NLRI for a family we do not speak is ignored, not an error for others", () => {
    const u = dec(
      update({
        attrs: [attr(O, 14, [0, 25, 70, 4, 1, 2, 3, 4, 0, 1, 2, 3]), ...base],
        nlri: nlri16,
      }),
    );
    expect(u.action).toBe(Rfc7606Action.AttributeDiscard);
    expect(u.disabledFamily).toBeNull();
    expect(u.nlri.count).toBe(1);
  });

  it("RFC 7606 §7.14: EXTENDED_COMMUNITIES not a non-zero multiple of 8 -> treat-as-withdraw", () =>
    taw([...base, attr(OT, 16, [0, 2, 0, 1, 0, 0, 0])]));
  it("RFC 8092 §6: LARGE_COMMUNITY not a non-zero multiple of 12 -> treat-as-withdraw", () =>
    taw([...base, attr(OT, 32, be32(1))]));
});

describe("RFC 6793: 4-octet AS numbers", () => {
  const path2 = (asns: number[]) =>
    attr(T, 2, [2, asns.length, ...asns.flatMap((a) => [a >> 8, a & 0xff])]);

  it("RFC 6793 §4.2.3: AS4_PATH is merged into AS_PATH for a 2-octet peer", () => {
    const u = dec(
      update({
        attrs: [
          origin,
          path2([65002, AsTrans, AsTrans]),
          nextHop,
          attr(OT, 17, [2, 2, ...be32(4200000001), ...be32(4200000003)]),
        ],
        nlri: nlri16,
      }),
      as2,
    );
    expect(u.action).toBe(Rfc7606Action.None);
    expect(u.attributes?.asPath).toEqual([{ type: 2, asns: [65002, 4200000001, 4200000003] }]);
    // And back: AS_TRANS in AS_PATH, AS4_PATH with the whole path (RFC 6793 §4.2.2).
    const again = decodeUpdate(encodeUpdateMessage(u, as2), as2);
    expect(again.attributes?.asPath).toEqual(u.attributes?.asPath);
  });

  it("RFC 6793 §4.2.3: AS4_PATH longer than AS_PATH is ignored", () => {
    const u = dec(
      update({
        attrs: [origin, path2([65002]), nextHop, attr(OT, 17, [2, 2, ...be32(1), ...be32(2)])],
        nlri: nlri16,
      }),
      as2,
    );
    expect(u.attributes?.asPath).toEqual([{ type: 2, asns: [65002] }]);
    expect(u.action).toBe(Rfc7606Action.AttributeDiscard);
  });

  it("RFC 6793 §4.2.3: AGGREGATOR other than AS_TRANS -> AS4_AGGREGATOR and AS4_PATH ignored", () => {
    const u = dec(
      update({
        attrs: [
          origin,
          path2([AsTrans]),
          nextHop,
          attr(OT, 7, [0xfd, 0xe9, 10, 0, 0, 1]),
          attr(OT, 17, [2, 1, ...be32(4200000001)]),
          attr(OT, 18, [...be32(4200000001), 10, 0, 0, 1]),
        ],
        nlri: nlri16,
      }),
      as2,
    );
    expect(u.attributes?.aggregator?.asn).toBe(65001);
    expect(u.attributes?.asPath).toEqual([{ type: 2, asns: [AsTrans] }]);
  });

  it("RFC 6793 §6: a malformed AS4_PATH is discarded and AS_PATH kept", () => {
    const u = dec(
      update({ attrs: [origin, path2([65002]), nextHop, attr(OT, 17, [2, 0])], nlri: nlri16 }),
      as2,
    );
    expect(u.action).toBe(Rfc7606Action.AttributeDiscard);
    expect(u.attributes?.asPath).toEqual([{ type: 2, asns: [65002] }]);
  });

  it("RFC 6793 §4.1: AS4_PATH between two 4-octet speakers is discarded", () => {
    const u = dec(update({ attrs: [...base, attr(OT, 17, [2, 1, ...be32(7)])], nlri: nlri16 }));
    expect(u.action).toBe(Rfc7606Action.AttributeDiscard);
    expect(u.attributes?.asPath).toEqual([{ type: 2, asns: [65001] }]);
  });
});

describe("RFC 4271 §5 and §6: attributes, OPEN", () => {
  it("RFC 4271 §6.3: an unrecognized well-known attribute -> NOTIFICATION with the attribute as data", () => {
    const n = throwsNotification(
      () => dec(update({ attrs: [...base, attr(T, 99, [1, 2])], nlri: nlri16 })),
      3,
      UpdateMessageErrorSubcode.UnrecognizedWellKnownAttribute,
    );
    expect(Array.from(n.data)).toEqual([T, 99, 2, 1, 2]);
  });

  it("RFC 4271 §5: unknown optional non-transitive is ignored; optional transitive is passed on with Partial", () => {
    const u = dec(
      update({ attrs: [...base, attr(O, 200, [1]), attr(OT, 201, [2, 3])], nlri: nlri16 }),
    );
    expect(u.action).toBe(Rfc7606Action.None);
    expect(u.attributes?.unknown.map((x) => x.type)).toEqual([201]);
    const again = decodeUpdate(encodeUpdateMessage(u, ibgp), ibgp);
    expect(again.attributes?.unknown[0].flags).toBe(OT | 0x20);
    expect(u.attributes?.unknown[0].flags).toBe(OT);
  });

  const open = (p: { version?: number; hold?: number; id?: number; params?: number[] }) => {
    const params = p.params ?? [];
    const body = [
      p.version ?? 4,
      0xfd,
      0xe9,
      (p.hold ?? 90) >> 8,
      (p.hold ?? 90) & 0xff,
      ...be32(p.id ?? 0x0a000001),
      params.length,
      ...params,
    ];
    const len = 19 + body.length;
    return Uint8Array.from([...new Array(16).fill(0xff), len >> 8, len & 0xff, 1, ...body]);
  };

  it("RFC 4271 §6.2: unsupported version -> Unsupported Version Number with our version as data", () => {
    const n = throwsNotification(() => decodeOpen(open({ version: 3 })), 2, 1);
    expect(Array.from(n.data)).toEqual([0, 4]);
  });
  it("RFC 4271 §6.2: hold time 1 or 2 -> Unacceptable Hold Time", () => {
    throwsNotification(() => decodeOpen(open({ hold: 2 })), 2, 6);
    expect(decodeOpen(open({ hold: 0 })).holdTime).toBe(0);
  });
  it("RFC 6286 §2.1: BGP Identifier 0 -> Bad BGP Identifier", () =>
    throwsNotification(() => decodeOpen(open({ id: 0 })), 2, 3));
  it("RFC 4271 §6.2: an unknown optional parameter -> Unsupported Optional Parameter", () =>
    throwsNotification(() => decodeOpen(open({ params: [1, 0] })), 2, 4));
  it("RFC 5492 §3: unknown capabilities are kept as bytes and re-encoded", () => {
    const m = open({ params: [2, 4, 200, 2, 7, 8] });
    const o = decodeOpen(m);
    expect(o.capabilities).toEqual([{ kind: "Unknown", code: 200, data: Uint8Array.of(7, 8) }]);
    expect(Buffer.from(encodeOpen(o)).equals(Buffer.from(m))).toBe(true);
  });
  it("RFC 9072 §2: extended optional parameters decode and re-encode", () => {
    const caps = Array.from({ length: 70 }, (_, i) => ({
      kind: "Multiprotocol" as const,
      afi: 1,
      safi: i + 1,
    }));
    const m = encodeOpen({
      version: 4,
      myAs: 65001,
      holdTime: 90,
      bgpIdentifier: 1,
      capabilities: caps,
    });
    expect(m[28]).toBe(255);
    expect(decodeOpen(m).capabilities).toEqual(caps);
  });
});

describe("RFC 7313 §5 and RFC 9003", () => {
  const rr = (subtype: number, extra: number[] = []) => {
    const len = 23 + extra.length;
    return Uint8Array.from([...new Array(16).fill(0xff), 0, len, 5, 0, 1, subtype, 1, ...extra]);
  };
  it("RFC 7313 §5: BoRR/EoRR whose length is not 23 -> ROUTE-REFRESH Message Error / Invalid Message Length", () => {
    const n = throwsNotification(
      () => decodeRouteRefresh(rr(1, [0])),
      NotificationCode.RouteRefreshMessageError,
      1,
    );
    expect(n.data.length).toBe(24);
    expect(decodeRouteRefresh(rr(2)).subtype).toBe(2);
  });
  it("RFC 9003 §2: the Shutdown Communication is cut to 255 octets on a UTF-8 boundary", () => {
    const m = encodeNotification({ code: 6, subcode: 2, shutdownMessage: "é".repeat(200) });
    const n = decodeNotification(m);
    expect(n.data[0]).toBe(254);
    expect(n.shutdownMessage).toBe("é".repeat(127));
  });
  it("RFC 9003 §3: malformed UTF-8 or a bad length leaves the text out but keeps the data", () => {
    const bad = Uint8Array.from([...new Array(16).fill(0xff), 0, 24, 3, 6, 2, 2, 0xc3, 0x28]);
    expect(decodeNotification(bad).shutdownMessage).toBeNull();
    const long = Uint8Array.from([...new Array(16).fill(0xff), 0, 23, 3, 6, 2, 9, 0x41]);
    expect(decodeNotification(long).shutdownMessage).toBeNull();
    expect(Array.from(decodeNotification(long).data)).toEqual([9, 0x41]);
  });
  it("familyKey of IPv6 unicast", () => expect(familyKey(2, 1)).toBe(Ipv6Unicast));
});
