// UPDATE messages (RFC 4271 §4.3, RFC 4760, RFC 7911, RFC 4724 End-of-RIB): decoding into views
// plus the attribute object, and packing many prefixes that share one attribute set into as few
// messages as fit. Attribute bodies live in attributes.ts, prefix walking in nlri.ts.

import type { FamilyKey, SessionOptions, UpdateBatch, UpdateMessage } from "./types.js";

/** Decodes a whole UPDATE message (header included). Throws only NotificationError. */
export function decodeUpdate(_msg: Uint8Array, _opts: SessionOptions): UpdateMessage {
  throw new Error("Not implemented: decodeUpdate");
}

/**
 * Packs a batch into UPDATE messages of at most `maxLength` octets (default 4096, or 65535 with
 * extended messages): withdrawals first, then announcements, IPv4 unicast in the classic fields
 * (or MP_REACH with an IPv6 next hop under RFC 8950), other families in MP_REACH/MP_UNREACH.
 */
export function encodeUpdates(
  _batch: UpdateBatch,
  _opts: SessionOptions,
  _maxLength?: number,
): Uint8Array[] {
  throw new Error("Not implemented: encodeUpdates");
}

/** RFC 4724 §2: End-of-RIB: an empty UPDATE for IPv4 unicast, else an empty MP_UNREACH_NLRI. */
export function encodeEndOfRib(_family: FamilyKey): Uint8Array {
  throw new Error("Not implemented: encodeEndOfRib");
}

/** Re-encodes a decoded UPDATE (attributes as decoded, prefix sections copied). */
export function encodeUpdateMessage(_update: UpdateMessage, _opts: SessionOptions): Uint8Array {
  throw new Error("Not implemented: encodeUpdateMessage");
}
