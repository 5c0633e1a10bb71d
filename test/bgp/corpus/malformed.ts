// The corpus of malformed and awkward messages a scripted raw peer sends to the running speaker
// (test/bgp/malformed_corpus.test.ts), each with the outcome its RFC prescribes. Add a case for
// every bug found. A peer is eBGP AS 65010 at 127.0.0.5 with 4-octet AS numbers negotiated; "P"
// is 10.99.1.0/24, which the peer announced correctly before the case's message, "Q" is
// 10.99.2.0/24, announced only by the case's message.
//   withdraw: treat-as-withdraw (RFC 7606): P is gone, the session stays up, no NOTIFICATION.
//   accept:   the route is used (a bad attribute discarded, or nothing wrong): Q is installed.
//   ignore:   nothing installed or removed (P stays, Q absent), the session stays up.
//   reset:    NOTIFICATION code/subcode (and data when given) sent, P gone with the session.

export type Outcome =
  | { kind: "withdraw" | "accept" | "ignore" }
  | { kind: "reset"; code: number; subcode: number; data?: number[] };

export interface Case {
  name: string;
  /** Why this outcome: the RFC section. */
  rfc: string;
  /** The whole message, header included. */
  message: number[];
  expect: Outcome;
}

const u16 = (n: number) => [n >> 8, n & 0xff];

/** One path attribute; the extended-length flag (0x10) gives a two-byte length. */
export function attr(flags: number, type: number, value: number[], lengthOverride?: number) {
  const len = lengthOverride ?? value.length;
  return flags & 0x10 ? [flags, type, ...u16(len), ...value] : [flags, type, len, ...value];
}

export function message(type: number, body: number[], lengthOverride?: number): number[] {
  return [...new Array(16).fill(0xff), ...u16(lengthOverride ?? 19 + body.length), type, ...body];
}

/** An UPDATE from its parts; the two length fields can be overridden to lie. */
export function update(
  p: { withdrawn?: number[]; attrs?: number[]; nlri?: number[] },
  o: { withdrawnLength?: number; attrsLength?: number } = {},
): number[] {
  const w = p.withdrawn ?? [];
  const a = p.attrs ?? [];
  return message(2, [
    ...u16(o.withdrawnLength ?? w.length),
    ...w,
    ...u16(o.attrsLength ?? a.length),
    ...a,
    ...(p.nlri ?? []),
  ]);
}

export const P = [24, 10, 99, 1];
export const Q = [24, 10, 99, 2];
export const ORIGIN = attr(0x40, 1, [0]);
/** AS_SEQUENCE [65010] with four-octet AS numbers. */
export const AS_PATH = attr(0x40, 2, [2, 1, 0, 0, 0xfd, 0xf2]);
export const NEXT_HOP = attr(0x40, 3, [127, 0, 0, 5]);
const GOOD = [...ORIGIN, ...AS_PATH, ...NEXT_HOP];

/** A valid UPDATE announcing P (sent before every case). */
export const ANNOUNCE_P = update({ attrs: GOOD, nlri: P });

/** The well-behaved neighbour's UPDATE (AS 65011 at 127.0.0.6): 10.98.0.0/24 via 127.0.0.6. */
export const STEADY_ANNOUNCE = update({
  attrs: [...ORIGIN, ...attr(0x40, 2, [2, 1, 0, 0, 0xfd, 0xf3]), ...attr(0x40, 3, [127, 0, 0, 6])],
  nlri: [24, 10, 98, 0],
});

export const CASES: Case[] = [
  {
    name: "Withdrawn Routes Length beyond the message",
    rfc: "RFC 4271 §6.3, RFC 7606 §5.3: 3/1 Malformed Attribute List",
    message: update({ attrs: GOOD, nlri: Q }, { withdrawnLength: 200 }),
    expect: { kind: "reset", code: 3, subcode: 1 },
  },
  {
    name: "Total Path Attribute Length beyond the message",
    rfc: "RFC 4271 §6.3, RFC 7606 §5.3: 3/1",
    message: update({ attrs: GOOD, nlri: Q }, { attrsLength: 500 }),
    expect: { kind: "reset", code: 3, subcode: 1 },
  },
  {
    name: "ORIGIN with an undefined value",
    rfc: "RFC 7606 §7.1: treat-as-withdraw",
    message: update({ attrs: [...attr(0x40, 1, [3]), ...AS_PATH, ...NEXT_HOP], nlri: P }),
    expect: { kind: "withdraw" },
  },
  {
    name: "ORIGIN of length 2",
    rfc: "RFC 7606 §7.1: treat-as-withdraw",
    message: update({ attrs: [...attr(0x40, 1, [0, 0]), ...AS_PATH, ...NEXT_HOP], nlri: P }),
    expect: { kind: "withdraw" },
  },
  {
    name: "ORIGIN with the Optional bit set",
    rfc: "RFC 7606 §3 (c): flags in conflict -> the attribute's action, treat-as-withdraw",
    message: update({ attrs: [...attr(0xc0, 1, [0]), ...AS_PATH, ...NEXT_HOP], nlri: P }),
    expect: { kind: "withdraw" },
  },
  {
    name: "ORIGIN missing",
    rfc: "RFC 7606 §3 (d): a missing well-known mandatory attribute -> treat-as-withdraw",
    message: update({ attrs: [...AS_PATH, ...NEXT_HOP], nlri: P }),
    expect: { kind: "withdraw" },
  },
  {
    name: "AS_PATH segment longer than the attribute",
    rfc: "RFC 7606 §7.2: treat-as-withdraw",
    message: update({
      attrs: [...ORIGIN, ...attr(0x40, 2, [2, 3, 0, 0, 0xfd, 0xf2]), ...NEXT_HOP],
      nlri: P,
    }),
    expect: { kind: "withdraw" },
  },
  {
    name: "AS_PATH segment of an undefined type",
    rfc: "RFC 7606 §7.2: treat-as-withdraw",
    message: update({
      attrs: [...ORIGIN, ...attr(0x40, 2, [9, 1, 0, 0, 0xfd, 0xf2]), ...NEXT_HOP],
      nlri: P,
    }),
    expect: { kind: "withdraw" },
  },
  {
    name: "NEXT_HOP of length 5",
    rfc: "RFC 7606 §7.3: treat-as-withdraw",
    message: update({
      attrs: [...ORIGIN, ...AS_PATH, ...attr(0x40, 3, [127, 0, 0, 5, 1])],
      nlri: P,
    }),
    expect: { kind: "withdraw" },
  },
  {
    name: "MULTI_EXIT_DISC of length 3",
    rfc: "RFC 7606 §7.4: treat-as-withdraw",
    message: update({ attrs: [...GOOD, ...attr(0x80, 4, [0, 0, 1])], nlri: P }),
    expect: { kind: "withdraw" },
  },
  {
    name: "COMMUNITIES of length 5",
    rfc: "RFC 7606 §7.8: treat-as-withdraw",
    message: update({ attrs: [...GOOD, ...attr(0xc0, 8, [0, 1, 0, 2, 3])], nlri: P }),
    expect: { kind: "withdraw" },
  },
  {
    name: "LARGE_COMMUNITY of length 13",
    rfc: "RFC 8092 §6: treat-as-withdraw",
    message: update({ attrs: [...GOOD, ...attr(0xc0, 32, new Array(13).fill(1))], nlri: P }),
    expect: { kind: "withdraw" },
  },
  {
    name: "An attribute overrunning the attribute section",
    rfc: "RFC 7606 §4: treat-as-withdraw",
    message: update({ attrs: [...GOOD, ...attr(0xc0, 8, [0, 1, 0, 2], 40)], nlri: P }),
    expect: { kind: "withdraw" },
  },
  {
    name: "ATOMIC_AGGREGATE of length 1",
    rfc: "RFC 7606 §7.6: attribute discard",
    message: update({ attrs: [...GOOD, ...attr(0x40, 6, [1])], nlri: Q }),
    expect: { kind: "accept" },
  },
  {
    name: "AGGREGATOR of length 5 on a four-octet session",
    rfc: "RFC 7606 §7.7: attribute discard",
    message: update({ attrs: [...GOOD, ...attr(0xc0, 7, [0, 0, 0xfd, 0xf2, 1])], nlri: Q }),
    expect: { kind: "accept" },
  },
  {
    name: "LOCAL_PREF from an external peer",
    rfc: "RFC 4271 §5.1.5, RFC 7606 §7.5: disregarded, the route used",
    message: update({ attrs: [...GOOD, ...attr(0x40, 5, [0, 0, 0, 200])], nlri: Q }),
    expect: { kind: "accept" },
  },
  {
    name: "ORIGIN twice",
    rfc: "RFC 7606 §3 (g): all but the first occurrence discarded",
    message: update({ attrs: [...GOOD, ...attr(0x40, 1, [2])], nlri: Q }),
    expect: { kind: "accept" },
  },
  {
    name: "An unrecognized optional transitive attribute",
    rfc: "RFC 4271 §5: kept (and passed on with the Partial bit)",
    message: update({ attrs: [...GOOD, ...attr(0xc0, 250, [1, 2, 3])], nlri: Q }),
    expect: { kind: "accept" },
  },
  {
    name: "An unrecognized well-known attribute",
    rfc: "RFC 4271 §6.3: 3/2 Unrecognized Well-known Attribute",
    message: update({ attrs: [...GOOD, ...attr(0x40, 250, [1])], nlri: Q }),
    expect: { kind: "reset", code: 3, subcode: 2 },
  },
  {
    name: "MP_REACH_NLRI twice",
    rfc: "RFC 7606 §3 (g): 3/1 Malformed Attribute List",
    message: update({
      attrs: [
        ...attr(0x80, 14, [0, 1, 1, 4, 127, 0, 0, 5, 0, ...Q]),
        ...attr(0x80, 14, [0, 1, 1, 4, 127, 0, 0, 5, 0, ...Q]),
        ...ORIGIN,
        ...AS_PATH,
      ],
    }),
    expect: { kind: "reset", code: 3, subcode: 1 },
  },
  {
    name: "NLRI with prefix length 33",
    rfc: "RFC 7606 §5.3 (session reset), RFC 4271 §6.3: 3/10 Invalid Network Field",
    message: update({ attrs: GOOD, nlri: [33, 10, 99, 3, 0, 0] }),
    expect: { kind: "reset", code: 3, subcode: 10 },
  },
  {
    name: "NLRI prefix truncated",
    rfc: "RFC 7606 §5.3 (session reset), RFC 4271 §6.3: 3/10 Invalid Network Field",
    message: update({ attrs: GOOD, nlri: [24, 10] }),
    expect: { kind: "reset", code: 3, subcode: 10 },
  },
  {
    name: "A withdrawal of a prefix never announced",
    rfc: "RFC 4271 §9: nothing to remove, no error",
    message: update({ withdrawn: [24, 10, 99, 7] }),
    expect: { kind: "ignore" },
  },
  {
    name: "A message of type 9",
    rfc: "RFC 4271 §6.1: 1/3 Bad Message Type, the type as data",
    message: message(9, []),
    expect: { kind: "reset", code: 1, subcode: 3, data: [9] },
  },
  {
    name: "A KEEPALIVE of length 20",
    rfc: "RFC 4271 §6.1: 1/2 Bad Message Length, the length as data",
    message: message(4, [0]),
    expect: { kind: "reset", code: 1, subcode: 2, data: [0, 20] },
  },
  {
    name: "An UPDATE shorter than its minimum (length 20)",
    rfc: "RFC 4271 §6.1: 1/2 Bad Message Length, the length as data",
    message: message(2, [0]),
    expect: { kind: "reset", code: 1, subcode: 2, data: [0, 20] },
  },
];
