// Path attributes (RFC 4271 §4.3/§5, RFC 4760, 1997, 4360, 4456, 6793, 8092): decoding one
// UPDATE's attribute section into a PathAttributes object with the RFC 7606 outcome, encoding it
// back. Not the UPDATE layout or NLRI walking (update.ts, nlri.ts), nor interning (the speaker's
// attribute bridge keys the sets it gives the RIB).

import { u16, u32 } from "./bytes.js";
import {
  Afi,
  AsPathSegmentType,
  AsTrans,
  AttrFlag,
  AttrType,
  NotificationCode,
  Safi,
  UpdateMessageErrorSubcode,
} from "./constants.js";
import { makeNlriView, scanNlri } from "./nlri.js";
import {
  type Aggregator,
  type AsPathSegment,
  type AttributeError,
  emptyAttributes,
  type FamilyKey,
  familyKey,
  type MpReachNlri,
  type MpUnreachNlri,
  NotificationError,
  type PathAttributes,
  Rfc7606Action,
  type Rfc7606ActionCode,
  type SessionOptions,
  type UnknownAttribute,
} from "./types.js";

/**
 * RFC 7606 §7 (after GoBGP's table): the action applied when an attribute of this type is
 * malformed. Types not listed (unrecognized optional attributes) are AttributeDiscard.
 */
export const MalformedAttributeAction: Readonly<Record<number, Rfc7606ActionCode>> = {
  [AttrType.Origin]: Rfc7606Action.TreatAsWithdraw, // RFC 7606 §7.1
  [AttrType.AsPath]: Rfc7606Action.TreatAsWithdraw, // RFC 7606 §7.2
  [AttrType.NextHop]: Rfc7606Action.TreatAsWithdraw, // RFC 7606 §7.3
  [AttrType.MultiExitDisc]: Rfc7606Action.TreatAsWithdraw, // RFC 7606 §7.4
  [AttrType.LocalPref]: Rfc7606Action.TreatAsWithdraw, // RFC 7606 §7.5
  [AttrType.AtomicAggregate]: Rfc7606Action.AttributeDiscard, // RFC 7606 §7.6
  [AttrType.Aggregator]: Rfc7606Action.AttributeDiscard, // RFC 7606 §7.7
  [AttrType.Communities]: Rfc7606Action.TreatAsWithdraw, // RFC 7606 §7.8
  [AttrType.OriginatorId]: Rfc7606Action.TreatAsWithdraw, // RFC 7606 §7.9
  [AttrType.ClusterList]: Rfc7606Action.TreatAsWithdraw, // RFC 7606 §7.10
  [AttrType.MpReachNlri]: Rfc7606Action.AfiSafiDisable, // RFC 7606 §7.11, RFC 4760 §7
  [AttrType.MpUnreachNlri]: Rfc7606Action.AfiSafiDisable, // RFC 7606 §7.11, RFC 4760 §7
  [AttrType.ExtendedCommunities]: Rfc7606Action.TreatAsWithdraw, // RFC 7606 §7.14
  [AttrType.As4Path]: Rfc7606Action.AttributeDiscard, // RFC 6793 §6
  [AttrType.As4Aggregator]: Rfc7606Action.AttributeDiscard, // RFC 6793 §6
  [AttrType.LargeCommunity]: Rfc7606Action.TreatAsWithdraw, // RFC 8092 §6
};

/** RFC 4271 §5 and each attribute's RFC: the Optional and Transitive bits it must carry. */
export const ExpectedAttrFlags: Readonly<Record<number, number>> = {
  [AttrType.Origin]: AttrFlag.Transitive,
  [AttrType.AsPath]: AttrFlag.Transitive,
  [AttrType.NextHop]: AttrFlag.Transitive,
  [AttrType.MultiExitDisc]: AttrFlag.Optional,
  [AttrType.LocalPref]: AttrFlag.Transitive,
  [AttrType.AtomicAggregate]: AttrFlag.Transitive,
  [AttrType.Aggregator]: AttrFlag.Optional | AttrFlag.Transitive,
  [AttrType.Communities]: AttrFlag.Optional | AttrFlag.Transitive,
  [AttrType.OriginatorId]: AttrFlag.Optional,
  [AttrType.ClusterList]: AttrFlag.Optional,
  [AttrType.MpReachNlri]: AttrFlag.Optional,
  [AttrType.MpUnreachNlri]: AttrFlag.Optional,
  [AttrType.ExtendedCommunities]: AttrFlag.Optional | AttrFlag.Transitive,
  [AttrType.As4Path]: AttrFlag.Optional | AttrFlag.Transitive,
  [AttrType.As4Aggregator]: AttrFlag.Optional | AttrFlag.Transitive,
  [AttrType.LargeCommunity]: AttrFlag.Optional | AttrFlag.Transitive,
};

/** Canonical encoding order when no layout is given: by type code, MP attributes first (RFC 7606 §5.1). */
const CanonicalOrder = [
  AttrType.MpReachNlri,
  AttrType.MpUnreachNlri,
  AttrType.Origin,
  AttrType.AsPath,
  AttrType.NextHop,
  AttrType.MultiExitDisc,
  AttrType.LocalPref,
  AttrType.AtomicAggregate,
  AttrType.Aggregator,
  AttrType.Communities,
  AttrType.OriginatorId,
  AttrType.ClusterList,
  AttrType.ExtendedCommunities,
  AttrType.As4Path,
  AttrType.As4Aggregator,
  AttrType.LargeCommunity,
];

/** The outcome of decoding one attribute section. */
export interface DecodedAttributes {
  attributes: PathAttributes;
  action: Rfc7606ActionCode;
  errors: AttributeError[];
  disabledFamily: FamilyKey | null;
}

/** Scratch "seen" table for duplicate detection (RFC 7606 §3 (g)); decoding is synchronous. */
const seen = new Uint8Array(256);

/** Collects the outcome while one attribute section is decoded. */
class Outcome {
  action: Rfc7606ActionCode = Rfc7606Action.None;
  errors: AttributeError[] = [];
  disabledFamily: FamilyKey | null = null;
  /** AS4_PATH / AS4_AGGREGATOR seen on a 2-octet session, merged at the end. */
  as4Path: AsPathSegment[] | null = null;
  as4Agg: Aggregator | null = null;
  /** Offset of the attribute being decoded (for NOTIFICATION data). */
  attrStart = 0;
  note(attrType: number, action: Rfc7606ActionCode, reason: string): void {
    // RFC 7606 §3 (j): with several errors, the strongest action applies.
    if (action > this.action) this.action = action;
    this.errors.push({ attrType, action, reason });
  }
  malformed(attrType: number, reason: string): void {
    this.note(
      attrType,
      MalformedAttributeAction[attrType] ?? Rfc7606Action.AttributeDiscard,
      reason,
    );
  }
}

/**
 * Parses an AS_PATH-shaped value (RFC 4271 §4.3, RFC 5065 §3) with `asnSize` 2 or 4; returns the
 * segments or a reason string when malformed (RFC 7606 §7.2).
 */
export function parseAsPath(
  b: Uint8Array,
  start: number,
  end: number,
  asnSize: number,
): AsPathSegment[] | string {
  const segs: AsPathSegment[] = [];
  let o = start;
  while (o < end) {
    if (end - o < 2) return `AS_PATH segment header truncated at offset ${o - start}`;
    const type = b[o];
    const count = b[o + 1];
    if (type < AsPathSegmentType.AsSet || type > AsPathSegmentType.AsConfedSet) {
      return `AS_PATH segment type ${type} is invalid`;
    }
    if (count === 0) return "AS_PATH segment has length 0";
    o += 2;
    if (o + count * asnSize > end) return `AS_PATH segment of ${count} ASNs overruns the attribute`;
    const asns = new Array<number>(count);
    if (asnSize === 4) {
      for (let i = 0; i < count; i++) asns[i] = u32(b, o + 4 * i);
    } else {
      for (let i = 0; i < count; i++) asns[i] = u16(b, o + 2 * i);
    }
    o += count * asnSize;
    segs.push({ type, asns });
  }
  return segs;
}

function isConfed(type: number): boolean {
  return type === AsPathSegmentType.AsConfedSequence || type === AsPathSegmentType.AsConfedSet;
}

/** RFC 4271 §9.1.2.2 (a) counting: AS_SET counts 1, confederation segments 0. */
export function asPathLength(segs: readonly AsPathSegment[]): number {
  let n = 0;
  for (const s of segs) {
    if (s.type === AsPathSegmentType.AsSequence) n += s.asns.length;
    else if (s.type === AsPathSegmentType.AsSet) n += 1;
  }
  return n;
}

/**
 * RFC 6793 §4.2.3: rebuild the 4-octet path from AS_PATH (2-octet, with AS_TRANS) and AS4_PATH:
 * keep the leading AS_PATH entries that AS4_PATH does not cover, then append AS4_PATH.
 */
export function mergeAs4Path(asPath: AsPathSegment[], as4Path: AsPathSegment[]): AsPathSegment[] {
  const n2 = asPathLength(asPath);
  const n4 = asPathLength(as4Path);
  // RFC 6793 §4.2.3: if AS_PATH is shorter than AS4_PATH, AS4_PATH is ignored.
  if (n2 < n4) return asPath;
  let keep = n2 - n4;
  const out: AsPathSegment[] = [];
  for (const s of asPath) {
    if (isConfed(s.type)) {
      out.push(s);
      continue;
    }
    if (keep <= 0) break;
    if (s.type === AsPathSegmentType.AsSet) {
      out.push(s);
      keep -= 1;
    } else {
      const take = Math.min(keep, s.asns.length);
      out.push({ type: s.type, asns: s.asns.slice(0, take) });
      keep -= take;
    }
  }
  for (const s of as4Path) {
    const last = out[out.length - 1];
    if (
      last &&
      last.type === AsPathSegmentType.AsSequence &&
      s.type === AsPathSegmentType.AsSequence
    ) {
      out[out.length - 1] = { type: last.type, asns: [...last.asns, ...s.asns] };
    } else {
      out.push({ type: s.type, asns: s.asns.slice() });
    }
  }
  return out;
}

function readU32Array(b: Uint8Array, start: number, count: number): Uint32Array {
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = u32(b, start + 4 * i);
  return out;
}

/** Next hop lengths RFC 4760 §3 / RFC 2545 §3 / RFC 8950 §3 allow for a family. */
function nextHopLengthOk(afi: number, len: number, opts: SessionOptions): boolean {
  if (afi === Afi.Ipv6) return len === 16 || len === 32;
  if (afi === Afi.Ipv4) return len === 4 || (opts.extendedNextHop && (len === 16 || len === 32));
  return false;
}

function supportedFamily(afi: number, safi: number): boolean {
  return (
    (afi === Afi.Ipv4 || afi === Afi.Ipv6) && (safi === Safi.Unicast || safi === Safi.Multicast)
  );
}

/**
 * Decodes buf[start, end) (the Path Attributes field of an UPDATE). `hasNlri`: the UPDATE carries
 * classic NLRI (so NEXT_HOP is mandatory). Returns the attributes and the RFC 7606 outcome, or
 * throws NotificationError for what resets the session.
 */
export function decodeAttributes(
  buf: Uint8Array,
  start: number,
  end: number,
  opts: SessionOptions,
  hasNlri: boolean,
): DecodedAttributes {
  const attrs = emptyAttributes();
  const layout: number[] = [];
  const out = new Outcome();
  const four = opts.fourOctetAs;
  seen.fill(0);
  let o = start;
  while (o < end) {
    if (end - o < 3) {
      // RFC 7606 §4: attributes do not fill the Total Path Attribute Length -> treat-as-withdraw.
      out.note(
        0,
        Rfc7606Action.TreatAsWithdraw,
        `${end - o} trailing octets are too short for an attribute header`,
      );
      break;
    }
    const flags = buf[o];
    const type = buf[o + 1];
    let vs: number;
    let len: number;
    if (flags & AttrFlag.ExtendedLength) {
      if (end - o < 4) {
        out.note(type, Rfc7606Action.TreatAsWithdraw, "extended attribute header is truncated"); // RFC 7606 §4
        break;
      }
      len = u16(buf, o + 2);
      vs = o + 4;
    } else {
      len = buf[o + 2];
      vs = o + 3;
    }
    const ve = vs + len;
    if (ve > end) {
      // RFC 7606 §4: an attribute overruns the attribute section -> treat-as-withdraw.
      out.note(
        type,
        Rfc7606Action.TreatAsWithdraw,
        `attribute ${type} length ${len} overruns the attribute section`,
      );
      break;
    }
    const attrStart = o;
    o = ve;
    if (seen[type]) {
      if (type === AttrType.MpReachNlri || type === AttrType.MpUnreachNlri) {
        // RFC 7606 §3 (g): MP_REACH/MP_UNREACH more than once -> Malformed Attribute List.
        throw new NotificationError(
          NotificationCode.UpdateMessageError,
          UpdateMessageErrorSubcode.MalformedAttributeList,
          new Uint8Array(0),
          `attribute ${type} appears more than once`,
        );
      }
      // RFC 7606 §3 (g): later occurrences of any other attribute are discarded.
      out.note(type, Rfc7606Action.AttributeDiscard, `duplicate attribute ${type} discarded`);
      continue;
    }
    seen[type] = 1;
    layout.push(type | (flags << 8));
    const expected = ExpectedAttrFlags[type];
    if (expected === undefined) {
      decodeUnknown(buf, attrStart, flags, type, vs, ve, attrs);
      continue;
    }
    if ((flags & (AttrFlag.Optional | AttrFlag.Transitive)) !== expected) {
      // RFC 7606 §3 (c): Optional/Transitive bits in conflict -> malformed, per-attribute action.
      out.malformed(
        type,
        `attribute ${type} has flags 0x${flags.toString(16)}, expected 0x${expected.toString(16)}`,
      );
      continue;
    }
    out.attrStart = attrStart;
    decodeKnown(buf, type, vs, ve, len, opts, four, attrs, out);
  }
  if (!four) applyAs4(attrs, out.as4Path, out.as4Agg, out);
  checkMandatory(attrs, hasNlri, out);
  attrs.layout = layout;
  return {
    attributes: attrs,
    action: out.action,
    errors: out.errors,
    disabledFamily: out.disabledFamily,
  };
}

function decodeUnknown(
  buf: Uint8Array,
  attrStart: number,
  flags: number,
  type: number,
  vs: number,
  ve: number,
  attrs: PathAttributes,
): void {
  if (!(flags & AttrFlag.Optional)) {
    // RFC 4271 §6.3: unrecognized well-known attribute -> Unrecognized Well-known Attribute.
    throw new NotificationError(
      NotificationCode.UpdateMessageError,
      UpdateMessageErrorSubcode.UnrecognizedWellKnownAttribute,
      buf.slice(attrStart, ve),
      `well-known attribute type ${type} is not recognized`,
    );
  }
  // RFC 4271 §5: unrecognized optional non-transitive attributes are quietly ignored;
  // optional transitive ones are kept and passed on with the Partial bit (RFC 4271 §9.1.3... §5).
  if (!(flags & AttrFlag.Transitive)) return;
  attrs.unknown.push({ flags: flags & ~AttrFlag.ExtendedLength, type, data: buf.slice(vs, ve) });
}

/** Decodes one recognized attribute into attrs; returns false when it was discarded/malformed. */
function decodeKnown(
  b: Uint8Array,
  type: number,
  vs: number,
  ve: number,
  len: number,
  opts: SessionOptions,
  four: boolean,
  attrs: PathAttributes,
  out: Outcome,
): boolean {
  switch (type) {
    case AttrType.Origin:
      // RFC 7606 §7.1: length must be 1 and the value defined.
      if (len !== 1 || b[vs] > 2) {
        out.malformed(
          type,
          len !== 1 ? `ORIGIN length ${len} is not 1` : `ORIGIN value ${b[vs]} is undefined`,
        );
        return false;
      }
      attrs.origin = b[vs];
      return true;
    case AttrType.AsPath: {
      const p = parseAsPath(b, vs, ve, four ? 4 : 2);
      if (typeof p === "string") {
        out.malformed(type, p); // RFC 7606 §7.2
        return false;
      }
      if (opts.external === true && p.some((s) => isConfed(s.type))) {
        // RFC 7606 §7.2: confederation segments from an external peer -> malformed.
        out.malformed(type, "AS_PATH from an external peer has confederation segments");
        return false;
      }
      attrs.asPath = p;
      return true;
    }
    case AttrType.NextHop:
      if (len !== 4) {
        out.malformed(type, `NEXT_HOP length ${len} is not 4`); // RFC 7606 §7.3
        return false;
      }
      attrs.nextHop = u32(b, vs);
      return true;
    case AttrType.MultiExitDisc:
      if (len !== 4) {
        out.malformed(type, `MULTI_EXIT_DISC length ${len} is not 4`); // RFC 7606 §7.4
        return false;
      }
      attrs.med = u32(b, vs);
      return true;
    case AttrType.LocalPref:
      if (opts.external === true) {
        // RFC 7606 §7.5: LOCAL_PREF from an external neighbor SHALL be discarded.
        out.note(
          type,
          Rfc7606Action.AttributeDiscard,
          "LOCAL_PREF from an external peer discarded",
        );
        return false;
      }
      if (len !== 4) {
        out.malformed(type, `LOCAL_PREF length ${len} is not 4`); // RFC 7606 §7.5
        return false;
      }
      attrs.localPref = u32(b, vs);
      return true;
    case AttrType.AtomicAggregate:
      if (len !== 0) {
        out.malformed(type, `ATOMIC_AGGREGATE length ${len} is not 0`); // RFC 7606 §7.6
        return false;
      }
      attrs.atomicAggregate = true;
      return true;
    case AttrType.Aggregator: {
      const want = four ? 8 : 6;
      if (len !== want) {
        out.malformed(type, `AGGREGATOR length ${len} is not ${want}`); // RFC 7606 §7.7
        return false;
      }
      attrs.aggregator = four
        ? { asn: u32(b, vs), address: u32(b, vs + 4) }
        : { asn: u16(b, vs), address: u32(b, vs + 2) };
      return true;
    }
    case AttrType.Communities:
      if (len === 0 || len % 4 !== 0) {
        out.malformed(type, `COMMUNITIES length ${len} is not a non-zero multiple of 4`); // RFC 7606 §7.8
        return false;
      }
      attrs.communities = readU32Array(b, vs, len / 4);
      return true;
    case AttrType.OriginatorId:
      if (opts.external === true) {
        // RFC 7606 §7.9: ORIGINATOR_ID from an external peer is discarded.
        out.note(
          type,
          Rfc7606Action.AttributeDiscard,
          "ORIGINATOR_ID from an external peer discarded",
        );
        return false;
      }
      if (len !== 4) {
        out.malformed(type, `ORIGINATOR_ID length ${len} is not 4`); // RFC 7606 §7.9
        return false;
      }
      attrs.originatorId = u32(b, vs);
      return true;
    case AttrType.ClusterList:
      if (opts.external === true) {
        // RFC 7606 §7.10: CLUSTER_LIST from an external peer is discarded.
        out.note(
          type,
          Rfc7606Action.AttributeDiscard,
          "CLUSTER_LIST from an external peer discarded",
        );
        return false;
      }
      if (len === 0 || len % 4 !== 0) {
        out.malformed(type, `CLUSTER_LIST length ${len} is not a non-zero multiple of 4`); // RFC 7606 §7.10
        return false;
      }
      attrs.clusterList = readU32Array(b, vs, len / 4);
      return true;
    case AttrType.MpReachNlri:
      return decodeMpReach(b, vs, ve, len, opts, attrs, out);
    case AttrType.MpUnreachNlri:
      return decodeMpUnreach(b, vs, ve, len, opts, attrs, out);
    case AttrType.ExtendedCommunities:
      if (len === 0 || len % 8 !== 0) {
        out.malformed(type, `EXTENDED_COMMUNITIES length ${len} is not a non-zero multiple of 8`); // RFC 7606 §7.14
        return false;
      }
      attrs.extendedCommunities = b.slice(vs, ve);
      return true;
    case AttrType.As4Path: {
      if (four) {
        // RFC 6793 §4.1: a NEW speaker discards AS4_PATH received from a NEW speaker.
        out.note(
          type,
          Rfc7606Action.AttributeDiscard,
          "AS4_PATH on a 4-octet AS session discarded",
        );
        return false;
      }
      const p = parseAsPath(b, vs, ve, 4);
      if (typeof p === "string") {
        out.malformed(type, `AS4_PATH: ${p}`); // RFC 6793 §6
        return false;
      }
      if (p.some((s) => isConfed(s.type))) {
        out.malformed(type, "AS4_PATH has confederation segments"); // RFC 6793 §6
        return false;
      }
      out.as4Path = p;
      return true;
    }
    case AttrType.As4Aggregator:
      if (four) {
        out.note(
          type,
          Rfc7606Action.AttributeDiscard,
          "AS4_AGGREGATOR on a 4-octet AS session discarded",
        ); // RFC 6793 §4.1
        return false;
      }
      if (len !== 8) {
        out.malformed(type, `AS4_AGGREGATOR length ${len} is not 8`); // RFC 6793 §6
        return false;
      }
      out.as4Agg = { asn: u32(b, vs), address: u32(b, vs + 4) };
      return true;
    case AttrType.LargeCommunity:
      if (len === 0 || len % 12 !== 0) {
        out.malformed(type, `LARGE_COMMUNITY length ${len} is not a non-zero multiple of 12`); // RFC 8092 §6
        return false;
      }
      attrs.largeCommunities = readU32Array(b, vs, len / 4);
      return true;
    default:
      return false;
  }
}

function decodeMpReach(
  b: Uint8Array,
  vs: number,
  ve: number,
  len: number,
  opts: SessionOptions,
  attrs: PathAttributes,
  out: Outcome,
): boolean {
  const type = AttrType.MpReachNlri;
  if (len < 5) {
    if (len >= 3) out.disabledFamily = familyKey(u16(b, vs), b[vs + 2]);
    else throw mpSessionReset(b.slice(out.attrStart, ve), type, len);
    out.malformed(type, `MP_REACH_NLRI length ${len} is too short`); // RFC 7606 §7.11
    return false;
  }
  const afi = u16(b, vs);
  const safi = b[vs + 2];
  const nhLen = b[vs + 3];
  const fam = familyKey(afi, safi);
  if (!supportedFamily(afi, safi)) {
    // RFC 4760 §7: a family we do not speak is ignored for this session.
    out.note(
      type,
      Rfc7606Action.AttributeDiscard,
      `MP_REACH_NLRI for unsupported AFI ${afi} SAFI ${safi} ignored`,
    );
    return false;
  }
  // RFC 7606 §7.11: a next hop length inconsistent with the AFI/SAFI -> AFI/SAFI disable.
  if (5 + nhLen > len || !nextHopLengthOk(afi, nhLen, opts)) {
    out.disabledFamily = fam;
    out.malformed(type, `MP_REACH_NLRI next hop length ${nhLen} is invalid for AFI ${afi}`);
    return false;
  }
  const ns = vs + 5 + nhLen;
  const addPath = opts.addPath.receive.has(fam);
  const count = scanNlri(b, ns, ve, afi === Afi.Ipv6 ? 128 : 32, addPath);
  if (count < 0) {
    // RFC 7606 §5.3: NLRI that cannot be parsed -> AFI/SAFI disable (or session reset).
    out.disabledFamily = fam;
    out.malformed(type, `MP_REACH_NLRI NLRI for AFI ${afi} is malformed`);
    return false;
  }
  attrs.mpReach = {
    afi,
    safi,
    nextHop: b.slice(vs + 4, vs + 4 + nhLen),
    nlri: makeNlriView(b, ns, ve, afi, safi, addPath, count),
  };
  return true;
}

function decodeMpUnreach(
  b: Uint8Array,
  vs: number,
  ve: number,
  len: number,
  opts: SessionOptions,
  attrs: PathAttributes,
  out: Outcome,
): boolean {
  const type = AttrType.MpUnreachNlri;
  if (len < 3) throw mpSessionReset(b.slice(out.attrStart, ve), type, len); // RFC 7606 §7.11: the family cannot even be found
  const afi = u16(b, vs);
  const safi = b[vs + 2];
  const fam = familyKey(afi, safi);
  if (!supportedFamily(afi, safi)) {
    out.note(
      type,
      Rfc7606Action.AttributeDiscard,
      `MP_UNREACH_NLRI for unsupported AFI ${afi} SAFI ${safi} ignored`,
    ); // RFC 4760 §7
    return false;
  }
  const addPath = opts.addPath.receive.has(fam);
  const count = scanNlri(b, vs + 3, ve, afi === Afi.Ipv6 ? 128 : 32, addPath);
  if (count < 0) {
    out.disabledFamily = fam;
    out.malformed(type, `MP_UNREACH_NLRI withdrawn routes for AFI ${afi} are malformed`); // RFC 7606 §5.3
    return false;
  }
  attrs.mpUnreach = {
    afi,
    safi,
    withdrawn: makeNlriView(b, vs + 3, ve, afi, safi, addPath, count),
  };
  return true;
}

/** RFC 7606 §7.11 / RFC 4271 §6.3: Optional Attribute Error, the attribute as data. */
function mpSessionReset(attribute: Uint8Array, type: number, len: number): NotificationError {
  return new NotificationError(
    NotificationCode.UpdateMessageError,
    UpdateMessageErrorSubcode.OptionalAttributeError,
    attribute,
    `attribute ${type} length ${len} is too short to name its AFI/SAFI`,
  );
}

/** RFC 6793 §4.2.3: merge AS4_PATH / AS4_AGGREGATOR received from a 2-octet speaker. */
function applyAs4(
  attrs: PathAttributes,
  as4Path: AsPathSegment[] | null,
  as4Agg: { asn: number; address: number } | null,
  out: Outcome,
): void {
  if (attrs.aggregator && as4Agg) {
    if (attrs.aggregator.asn !== AsTrans) {
      // RFC 6793 §4.2.3: AGGREGATOR not AS_TRANS -> ignore AS4_AGGREGATOR and AS4_PATH.
      out.note(
        AttrType.As4Aggregator,
        Rfc7606Action.AttributeDiscard,
        "AS4_AGGREGATOR ignored: AGGREGATOR is not AS_TRANS",
      );
      return;
    }
    attrs.aggregator = as4Agg;
  }
  if (as4Path && attrs.asPath) {
    if (asPathLength(attrs.asPath) < asPathLength(as4Path)) {
      out.note(
        AttrType.As4Path,
        Rfc7606Action.AttributeDiscard,
        "AS4_PATH longer than AS_PATH ignored",
      ); // RFC 6793 §4.2.3
      return;
    }
    attrs.asPath = mergeAs4Path(attrs.asPath, as4Path);
  }
}

/** RFC 7606 §3 (d): a missing well-known mandatory attribute -> treat-as-withdraw. */
function checkMandatory(attrs: PathAttributes, hasNlri: boolean, out: Outcome): void {
  const reach = hasNlri || (attrs.mpReach !== null && attrs.mpReach.nlri.count > 0);
  if (!reach) return; // RFC 4760 §4: an UPDATE with only MP_UNREACH_NLRI needs no other attribute.
  if (attrs.origin === null && !out.errors.some((e) => e.attrType === AttrType.Origin)) {
    out.note(AttrType.Origin, Rfc7606Action.TreatAsWithdraw, "ORIGIN is missing");
  }
  if (attrs.asPath === null && !out.errors.some((e) => e.attrType === AttrType.AsPath)) {
    out.note(AttrType.AsPath, Rfc7606Action.TreatAsWithdraw, "AS_PATH is missing");
  }
  // RFC 4760 §3: NEXT_HOP is only mandatory when the classic NLRI field is used.
  if (
    hasNlri &&
    attrs.nextHop === null &&
    !out.errors.some((e) => e.attrType === AttrType.NextHop)
  ) {
    out.note(AttrType.NextHop, Rfc7606Action.TreatAsWithdraw, "NEXT_HOP is missing");
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** An encoded attribute section; `mpAt` is the offset where MP_REACH/MP_UNREACH belongs. */
export interface EncodedAttributes {
  bytes: Uint8Array;
  mpAt: number;
  /** The flags to use for MP_REACH/MP_UNREACH (from the layout, else Optional|ExtendedLength). */
  mpFlags: number;
}

class Writer {
  buf = new Uint8Array(256);
  n = 0;
  ensure(k: number): void {
    if (this.n + k <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.n + k) size *= 2;
    const g = new Uint8Array(size);
    g.set(this.buf.subarray(0, this.n));
    this.buf = g;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.n++] = v & 0xff;
  }
  u16(v: number): void {
    this.ensure(2);
    this.buf[this.n++] = (v >> 8) & 0xff;
    this.buf[this.n++] = v & 0xff;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf[this.n++] = (v >>> 24) & 0xff;
    this.buf[this.n++] = (v >>> 16) & 0xff;
    this.buf[this.n++] = (v >>> 8) & 0xff;
    this.buf[this.n++] = v & 0xff;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.n);
    this.n += b.length;
  }
  done(): Uint8Array {
    return this.buf.slice(0, this.n);
  }
}

/** Octets of an AS_PATH-shaped value; segments of more than 255 ASNs are split (RFC 4271 §4.3). */
function asPathOctets(
  segs: readonly AsPathSegment[],
  asnSize: number,
  skipConfed: boolean,
): number {
  let n = 0;
  for (const s of segs) {
    if (skipConfed && isConfed(s.type)) continue;
    const k = s.asns.length;
    if (k > 0) n += 2 * Math.ceil(k / 255) + k * asnSize;
  }
  return n;
}

function writeAsPath(
  w: Writer,
  segs: readonly AsPathSegment[],
  asnSize: number,
  skipConfed: boolean,
): void {
  for (const s of segs) {
    if (skipConfed && isConfed(s.type)) continue;
    const asns = s.asns;
    for (let i = 0; i < asns.length; i += 255) {
      const end = Math.min(asns.length, i + 255);
      w.u8(s.type);
      w.u8(end - i);
      for (let k = i; k < end; k++) {
        // RFC 6793 §4.2.2: 4-octet ASNs become AS_TRANS in a 2-octet AS_PATH.
        if (asnSize === 4) w.u32(asns[k]);
        else w.u16(asns[k] > 0xffff ? AsTrans : asns[k]);
      }
    }
  }
}

/** RFC 6793 §4.2.2: a 2-octet speaker gets AS4_PATH when the path holds 4-octet ASNs. */
function needsAs4Path(a: PathAttributes): boolean {
  return a.asPath?.some((s) => !isConfed(s.type) && s.asns.some((x) => x > 0xffff)) === true;
}

function unknownOf(a: PathAttributes, t: number): UnknownAttribute | undefined {
  for (const u of a.unknown) if (u.type === t) return u;
  return undefined;
}

function viewLength(v: { start: number; end: number }): number {
  return v.end - v.start;
}

/** Value length of attribute `t` as sent on this session, or -1 when it is not sent. */
function valueLength(a: PathAttributes, t: number, four: boolean): number {
  switch (t) {
    case AttrType.Origin:
      return a.origin === null ? -1 : 1;
    case AttrType.AsPath:
      return a.asPath === null ? -1 : asPathOctets(a.asPath, four ? 4 : 2, false);
    case AttrType.NextHop:
      return a.nextHop === null ? -1 : 4;
    case AttrType.MultiExitDisc:
      return a.med === null ? -1 : 4;
    case AttrType.LocalPref:
      return a.localPref === null ? -1 : 4;
    case AttrType.AtomicAggregate:
      return a.atomicAggregate ? 0 : -1;
    case AttrType.Aggregator:
      return a.aggregator === null ? -1 : four ? 8 : 6;
    case AttrType.Communities:
      return a.communities === null ? -1 : 4 * a.communities.length;
    case AttrType.OriginatorId:
      return a.originatorId === null ? -1 : 4;
    case AttrType.ClusterList:
      return a.clusterList === null ? -1 : 4 * a.clusterList.length;
    case AttrType.MpReachNlri:
      return a.mpReach === null ? -1 : 5 + a.mpReach.nextHop.length + viewLength(a.mpReach.nlri);
    case AttrType.MpUnreachNlri:
      return a.mpUnreach === null ? -1 : 3 + viewLength(a.mpUnreach.withdrawn);
    case AttrType.ExtendedCommunities:
      return a.extendedCommunities === null ? -1 : a.extendedCommunities.length;
    case AttrType.As4Path:
      return four || a.asPath === null || !needsAs4Path(a) ? -1 : asPathOctets(a.asPath, 4, true);
    case AttrType.As4Aggregator:
      // RFC 6793 §4.2.2: AS4_AGGREGATOR when the aggregating AS is 4-octet.
      return four || a.aggregator === null || a.aggregator.asn <= 0xffff ? -1 : 8;
    case AttrType.LargeCommunity:
      return a.largeCommunities === null ? -1 : 4 * a.largeCommunities.length;
    default: {
      const u = unknownOf(a, t);
      return u ? u.data.length : -1;
    }
  }
}

function writeU32s(w: Writer, xs: ArrayLike<number>): void {
  for (let i = 0; i < xs.length; i++) w.u32(xs[i]);
}

function writeView(w: Writer, v: { buf: Uint8Array; start: number; end: number }): void {
  w.bytes(v.buf.subarray(v.start, v.end));
}

/** Writes the value of attribute `t` (valueLength(a, t) >= 0). */
function writeValue(w: Writer, a: PathAttributes, t: number, four: boolean): void {
  switch (t) {
    case AttrType.Origin:
      w.u8(a.origin as number);
      return;
    case AttrType.AsPath:
      writeAsPath(w, a.asPath as AsPathSegment[], four ? 4 : 2, false);
      return;
    case AttrType.NextHop:
      w.u32(a.nextHop as number);
      return;
    case AttrType.MultiExitDisc:
      w.u32(a.med as number);
      return;
    case AttrType.LocalPref:
      w.u32(a.localPref as number);
      return;
    case AttrType.AtomicAggregate:
      return;
    case AttrType.Aggregator: {
      const g = a.aggregator as Aggregator;
      if (four) w.u32(g.asn);
      else w.u16(g.asn > 0xffff ? AsTrans : g.asn);
      w.u32(g.address);
      return;
    }
    case AttrType.Communities:
      writeU32s(w, a.communities as Uint32Array);
      return;
    case AttrType.OriginatorId:
      w.u32(a.originatorId as number);
      return;
    case AttrType.ClusterList:
      writeU32s(w, a.clusterList as Uint32Array);
      return;
    case AttrType.MpReachNlri: {
      const r = a.mpReach as MpReachNlri;
      w.u16(r.afi);
      w.u8(r.safi);
      w.u8(r.nextHop.length);
      w.bytes(r.nextHop);
      w.u8(0);
      writeView(w, r.nlri);
      return;
    }
    case AttrType.MpUnreachNlri: {
      const u = a.mpUnreach as MpUnreachNlri;
      w.u16(u.afi);
      w.u8(u.safi);
      writeView(w, u.withdrawn);
      return;
    }
    case AttrType.ExtendedCommunities:
      w.bytes(a.extendedCommunities as Uint8Array);
      return;
    case AttrType.As4Path:
      writeAsPath(w, a.asPath as AsPathSegment[], 4, true);
      return;
    case AttrType.As4Aggregator: {
      const g = a.aggregator as Aggregator;
      w.u32(g.asn);
      w.u32(g.address);
      return;
    }
    case AttrType.LargeCommunity:
      writeU32s(w, a.largeCommunities as Uint32Array);
      return;
    default:
      w.bytes((unknownOf(a, t) as UnknownAttribute).data);
      return;
  }
}

/** Flags an attribute is sent with, before the layout's Partial / extended-length bits. */
function baseFlags(a: PathAttributes, t: number): number {
  const f = ExpectedAttrFlags[t];
  if (f !== undefined) return f;
  // RFC 4271 §5: an unrecognized optional transitive attribute is passed on with Partial set.
  const u = unknownOf(a, t) as UnknownAttribute;
  return (
    (u.flags & (AttrFlag.Optional | AttrFlag.Transitive | AttrFlag.Partial)) | AttrFlag.Partial
  );
}

/** Writes MP_REACH_NLRI (RFC 4760 §3) with its NLRI bytes. */
export function mpReachValue(
  afi: number,
  safi: number,
  nextHop: Uint8Array,
  nlri: Uint8Array,
): Uint8Array {
  const v = new Uint8Array(5 + nextHop.length + nlri.length);
  v[0] = afi >> 8;
  v[1] = afi & 0xff;
  v[2] = safi;
  v[3] = nextHop.length;
  v.set(nextHop, 4);
  v[4 + nextHop.length] = 0;
  v.set(nlri, 5 + nextHop.length);
  return v;
}

/** Reused by encodeAttributes (synchronous); results are copied out. */
const scratch = new Writer();
const placed = new Uint8Array(256);

/**
 * Encodes attributes for a session: 2-octet sessions get AS_TRANS plus AS4_PATH/AS4_AGGREGATOR
 * (RFC 6793 §4.2.2); unknown transitive attributes get the Partial bit. mpReach/mpUnreach are
 * included when present (their NLRI copied from their views). The order and extended-length bits
 * follow `attrs.layout` when set, else the canonical order (MP attributes first).
 */
export function encodeAttributes(attrs: PathAttributes, opts: SessionOptions): EncodedAttributes {
  const four = opts.fourOctetAs;
  const w = scratch;
  w.n = 0;
  placed.fill(0);
  let mpAt = -1;
  let mpFlags = AttrFlag.Optional | AttrFlag.ExtendedLength;
  const one = (t: number, lf: number) => {
    if (placed[t]) return;
    placed[t] = 1;
    if (mpAt < 0 && (t === AttrType.MpReachNlri || t === AttrType.MpUnreachNlri)) {
      mpAt = w.n;
      if (lf >= 0) mpFlags = AttrFlag.Optional | (lf & AttrFlag.ExtendedLength);
    }
    const len = valueLength(attrs, t, four);
    if (len < 0) return;
    const flags = baseFlags(attrs, t);
    const l = Math.max(lf, 0);
    // RFC 4271 §5: a received Partial bit on an optional transitive attribute stays set.
    const partial =
      flags & AttrFlag.Optional && flags & AttrFlag.Transitive ? l & AttrFlag.Partial : 0;
    const ext = (l & AttrFlag.ExtendedLength) !== 0 || len > 255;
    w.u8(((flags | partial) & ~AttrFlag.ExtendedLength) | (ext ? AttrFlag.ExtendedLength : 0));
    w.u8(t);
    if (ext) w.u16(len);
    else w.u8(len);
    writeValue(w, attrs, t, four);
  };
  if (attrs.layout) for (const e of attrs.layout) one(e & 0xff, e >> 8);
  for (const t of CanonicalOrder) one(t, -1);
  for (const u of attrs.unknown) one(u.type, -1);
  if (mpAt < 0) mpAt = 0;
  return { bytes: w.done(), mpAt, mpFlags };
}
