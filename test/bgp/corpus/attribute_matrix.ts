// Every path attribute the speaker knows, sent malformed in each of the ways issue 17 names:
// truncated (its length one octet short, the value with it), overlong (one octet more),
// duplicated (a second, different copy after it) and with wrong flags (the Optional bit for a
// well-known attribute, the Transitive bit flipped for an optional one), each with the outcome
// RFC 7606 prescribes on an eBGP session with four-octet AS numbers (for flags, as FRR and GoBGP
// read §3 (c): see FLAGS_AS_MALFORMED). The message announces P and
// Q (test/bgp/corpus/malformed.ts); "withdraw" means both are withdrawn or never installed,
// "accept" that both are installed (the attribute discarded, or a later copy ignored).
// MP_REACH_NLRI/MP_UNREACH_NLRI are the corpus's own cases (their errors reset or disable the
// family, RFC 7606 §5.3, §7.11). Grown, like the corpus, with every bug found.
import { AS_PATH, attr, NEXT_HOP, ORIGIN, P, Q, update } from "./malformed.js";

export type MatrixOutcome = "withdraw" | "accept";

export interface MatrixCase {
  name: string;
  rfc: string;
  message: number[];
  expect: MatrixOutcome;
}

interface Known {
  name: string;
  type: number;
  /** The attribute's flags as it should be sent (0x40 well-known, 0x80 optional, 0xc0 transitive). */
  flags: number;
  /** A valid value, and another for the duplicate. */
  value: number[];
  other: number[];
  /** A length error's outcome (RFC 7606 §7), and the section saying so. */
  length: [MatrixOutcome, string];
  /** A flags error's outcome (§3 (c)); absent: the same as a length error's. */
  flagsError?: [MatrixOutcome, string];
}

/**
 * Flags in conflict (RFC 7606 §3 (c)): the attribute is malformed and "treat-as-withdraw" used
 * "unless the specification for the attribute mandates different handling". Read as FRR
 * (bgp_attr_malformed) and GoBGP do: the attribute's own §7 action for a malformed value, so
 * ATOMIC_AGGREGATE and AGGREGATOR are discarded; LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST
 * take their malformed action (treat-as-withdraw), the external-neighbour discard of §7.5,
 * §7.9 and §7.10 being for a well-formed attribute.
 */
const FLAGS_AS_MALFORMED: [MatrixOutcome, string] = [
  "withdraw",
  "RFC 7606 §3 (c): malformed, the attribute's treat-as-withdraw",
];
/** Attributes an eBGP speaker discards whatever is wrong with them (RFC 7606 §7.5, §7.9, §7.10). */
const EXTERNAL_DISCARD = (s: string): [MatrixOutcome, string] => [
  "accept",
  `RFC 7606 ${s}: from an external neighbour, attribute discard`,
];
/** RFC 6793 §3/§6: a NEW speaker discards AS4_* from a NEW speaker (a four-octet session). */
const AS4_DISCARD: [MatrixOutcome, string] = [
  "accept",
  "RFC 6793 §3, §6: AS4_* from a four-octet speaker discarded",
];

const KNOWN: Known[] = [
  {
    name: "ORIGIN",
    type: 1,
    flags: 0x40,
    value: [0],
    other: [2],
    length: ["withdraw", "RFC 7606 §7.1: treat-as-withdraw"],
  },
  {
    name: "AS_PATH",
    type: 2,
    flags: 0x40,
    value: [2, 1, 0, 0, 0xfd, 0xf2],
    other: [2, 2, 0, 0, 0xfd, 0xf2, 0, 0, 0xfd, 0xf2],
    length: ["withdraw", "RFC 7606 §7.2: treat-as-withdraw"],
  },
  {
    name: "NEXT_HOP",
    type: 3,
    flags: 0x40,
    value: [127, 0, 0, 5],
    other: [127, 0, 0, 9],
    length: ["withdraw", "RFC 7606 §7.3: treat-as-withdraw"],
  },
  {
    name: "MULTI_EXIT_DISC",
    type: 4,
    flags: 0x80,
    value: [0, 0, 0, 1],
    other: [0, 0, 0, 2],
    length: ["withdraw", "RFC 7606 §7.4: treat-as-withdraw"],
  },
  {
    name: "LOCAL_PREF",
    type: 5,
    flags: 0x40,
    value: [0, 0, 0, 100],
    other: [0, 0, 0, 200],
    length: EXTERNAL_DISCARD("§7.5"),
    flagsError: FLAGS_AS_MALFORMED,
  },
  {
    name: "ATOMIC_AGGREGATE",
    type: 6,
    flags: 0x40,
    value: [],
    other: [],
    length: ["accept", "RFC 7606 §7.6: attribute discard"],
  },
  {
    name: "AGGREGATOR",
    type: 7,
    flags: 0xc0,
    value: [0, 0, 0xfd, 0xf2, 127, 0, 0, 5],
    other: [0, 0, 0xfd, 0xf2, 127, 0, 0, 9],
    length: ["accept", "RFC 7606 §7.7: attribute discard"],
  },
  {
    name: "COMMUNITIES",
    type: 8,
    flags: 0xc0,
    value: [0xfd, 0xf2, 0, 1],
    other: [0xfd, 0xf2, 0, 2],
    length: ["withdraw", "RFC 7606 §7.8: treat-as-withdraw"],
  },
  {
    name: "ORIGINATOR_ID",
    type: 9,
    flags: 0x80,
    value: [1, 2, 3, 4],
    other: [1, 2, 3, 5],
    length: EXTERNAL_DISCARD("§7.9"),
    flagsError: FLAGS_AS_MALFORMED,
  },
  {
    name: "CLUSTER_LIST",
    type: 10,
    flags: 0x80,
    value: [1, 2, 3, 4],
    other: [1, 2, 3, 5],
    length: EXTERNAL_DISCARD("§7.10"),
    flagsError: FLAGS_AS_MALFORMED,
  },
  {
    name: "EXTENDED_COMMUNITIES",
    type: 16,
    flags: 0xc0,
    value: [0, 2, 0xfd, 0xf2, 0, 0, 0, 1],
    other: [0, 2, 0xfd, 0xf2, 0, 0, 0, 2],
    length: ["withdraw", "RFC 7606 §7.14: treat-as-withdraw"],
  },
  {
    name: "AS4_PATH",
    type: 17,
    flags: 0xc0,
    value: [2, 1, 0, 0, 0xfd, 0xf2],
    other: [2, 1, 0, 0, 0xfd, 0xf3],
    length: AS4_DISCARD,
    flagsError: AS4_DISCARD,
  },
  {
    name: "AS4_AGGREGATOR",
    type: 18,
    flags: 0xc0,
    value: [0, 0, 0xfd, 0xf2, 127, 0, 0, 5],
    other: [0, 0, 0xfd, 0xf2, 127, 0, 0, 9],
    length: AS4_DISCARD,
    flagsError: AS4_DISCARD,
  },
  {
    name: "LARGE_COMMUNITY",
    type: 32,
    flags: 0xc0,
    value: [0, 0, 0xfd, 0xf2, 0, 0, 0, 1, 0, 0, 0, 2],
    other: [0, 0, 0xfd, 0xf2, 0, 0, 0, 1, 0, 0, 0, 3],
    length: ["withdraw", "RFC 8092 §6: treat-as-withdraw"],
  },
];

/** The UPDATE for P and Q with the well-known mandatory three, k's slot replaced by bad. */
function withAttr(k: Known, bad: number[]): number[] {
  const mandatory: [number, number[]][] = [
    [1, ORIGIN],
    [2, AS_PATH],
    [3, NEXT_HOP],
  ];
  const attrs: number[] = [];
  let placed = false;
  for (const [type, good] of mandatory) {
    if (type === k.type) {
      attrs.push(...bad);
      placed = true;
    } else attrs.push(...good);
  }
  if (!placed) attrs.push(...bad);
  return update({ attrs, nlri: [...P, ...Q] });
}

/** The flags in conflict with k's: the Optional bit for a well-known one, else Transitive. */
const wrongFlags = (k: Known) => (k.flags & 0x80 ? k.flags ^ 0x40 : k.flags | 0x80);

export const MATRIX: MatrixCase[] = KNOWN.flatMap((k) => {
  const out: MatrixCase[] = [];
  if (k.value.length > 0)
    out.push({
      name: `${k.name} truncated (length ${k.value.length - 1})`,
      rfc: k.length[1],
      message: withAttr(k, attr(k.flags, k.type, k.value.slice(0, -1))),
      expect: k.length[0],
    });
  out.push({
    name: `${k.name} overlong (length ${k.value.length + 1})`,
    rfc: k.length[1],
    message: withAttr(k, attr(k.flags, k.type, [...k.value, 0])),
    expect: k.length[0],
  });
  out.push({
    name: `${k.name} twice`,
    rfc: "RFC 7606 §3 (g): all but the first occurrence discarded",
    message: withAttr(k, [...attr(k.flags, k.type, k.value), ...attr(k.flags, k.type, k.other)]),
    expect: "accept",
  });
  const f = k.flagsError ?? ([k.length[0], `RFC 7606 §3 (c), ${k.length[1]}`] as const);
  out.push({
    name: `${k.name} with flags 0x${wrongFlags(k).toString(16)} (0x${k.flags.toString(16)} expected)`,
    rfc: f[1],
    message: withAttr(k, attr(wrongFlags(k), k.type, k.value)),
    expect: f[0],
  });
  return out;
});
