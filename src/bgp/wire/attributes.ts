// Path attributes (RFC 4271 §4.3/§5, RFC 4760, 1997, 4360, 4456, 6793, 8092): decoding one
// UPDATE's attribute section into a PathAttributes object with the RFC 7606 outcome, encoding it
// back, and the interning key. Not the UPDATE layout or NLRI walking (update.ts, nlri.ts).

import { AttrType } from "./constants.js";
import {
  type AttributeError,
  type FamilyKey,
  type PathAttributes,
  Rfc7606Action,
  type Rfc7606ActionCode,
  type SessionOptions,
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
  [AttrType.As4Path]: Rfc7606Action.AttributeDiscard, // RFC 6793 §6, RFC 7606 §7.15
  [AttrType.As4Aggregator]: Rfc7606Action.AttributeDiscard, // RFC 6793 §6, RFC 7606 §7.15
  [AttrType.LargeCommunity]: Rfc7606Action.TreatAsWithdraw, // RFC 8092 §6
};

/** The outcome of decoding one attribute section. */
export interface DecodedAttributes {
  attributes: PathAttributes;
  action: Rfc7606ActionCode;
  errors: AttributeError[];
  disabledFamily: FamilyKey | null;
  internKey: string;
}

/**
 * Decodes buf[start, end) (the Path Attributes field of an UPDATE). `hasNlri`: the UPDATE carries
 * classic NLRI (so NEXT_HOP is mandatory). Returns the attributes and the RFC 7606 outcome, or
 * throws NotificationError for what resets the session.
 */
export function decodeAttributes(
  _buf: Uint8Array,
  _start: number,
  _end: number,
  _opts: SessionOptions,
  _hasNlri: boolean,
): DecodedAttributes {
  throw new Error("Not implemented: decodeAttributes");
}

/** An encoded attribute section; `mpAt` is the offset where MP_REACH/MP_UNREACH belongs. */
export interface EncodedAttributes {
  bytes: Uint8Array;
  mpAt: number;
}

/**
 * Encodes attributes for a session: 2-octet sessions get AS_TRANS plus AS4_PATH/AS4_AGGREGATOR
 * (RFC 6793 §4.2.2); unknown transitive attributes get the Partial bit. mpReach/mpUnreach are
 * included when present (their NLRI copied from their views).
 */
export function encodeAttributes(_attrs: PathAttributes, _opts: SessionOptions): EncodedAttributes {
  throw new Error("Not implemented: encodeAttributes");
}

/** The interning key of a constructed attribute set (same contract as UpdateMessage.internKey). */
export function internKeyOf(_attrs: PathAttributes, _opts: SessionOptions): string {
  throw new Error("Not implemented: internKeyOf");
}
