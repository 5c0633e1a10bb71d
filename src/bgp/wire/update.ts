// UPDATE messages (RFC 4271 §4.3, RFC 4760, RFC 7911, RFC 4724 End-of-RIB): decoding into views
// plus the attribute object, and packing many prefixes that share one attribute set into as few
// messages as fit. Attribute bodies live in attributes.ts, prefix walking in nlri.ts.

import { decodeAttributes, encodeAttributes, mpReachValue } from "./attributes.js";
import { u16 } from "./bytes.js";
import {
  Afi,
  AttrFlag,
  AttrType,
  ExtendedMaxMessageLength,
  MaxMessageLength,
  MessageHeaderErrorSubcode,
  MessageType,
  MinUpdateLength,
  NotificationCode,
  Safi,
  UpdateMessageErrorSubcode,
} from "./constants.js";
import { writeHeader } from "./header.js";
import { emptyNlriView, makeNlriView, scanNlri } from "./nlri.js";
import {
  type FamilyKey,
  familyAfi,
  familyKey,
  familySafi,
  Ipv4Unicast,
  NotificationError,
  type PathAttributes,
  type PrefixArray,
  Rfc7606Action,
  type SessionOptions,
  type UpdateBatch,
  type UpdateMessage,
} from "./types.js";

function updateError(subcode: number, reason: string): NotificationError {
  return new NotificationError(
    NotificationCode.UpdateMessageError,
    subcode,
    new Uint8Array(0),
    reason,
  );
}

/** Decodes a whole UPDATE message (header included). Throws only NotificationError. */
export function decodeUpdate(msg: Uint8Array, opts: SessionOptions): UpdateMessage {
  const len = msg.length;
  if (len < MinUpdateLength) {
    throw new NotificationError(
      NotificationCode.MessageHeaderError,
      MessageHeaderErrorSubcode.BadMessageLength,
      Uint8Array.of(len >> 8, len & 0xff),
      `UPDATE length ${len} is below ${MinUpdateLength}`,
    );
  }
  const wdLen = u16(msg, 19);
  if (21 + wdLen + 2 > len) {
    // RFC 4271 §6.3: Withdrawn Routes Length too large -> Malformed Attribute List.
    throw updateError(
      UpdateMessageErrorSubcode.MalformedAttributeList,
      `withdrawn routes length ${wdLen} overruns the message`,
    );
  }
  const attrLen = u16(msg, 21 + wdLen);
  const aStart = 23 + wdLen;
  const aEnd = aStart + attrLen;
  if (aEnd > len) {
    // RFC 4271 §6.3 / RFC 7606 §4: the NLRI cannot be located -> Malformed Attribute List.
    throw updateError(
      UpdateMessageErrorSubcode.MalformedAttributeList,
      `withdrawn length ${wdLen} plus attribute length ${attrLen} exceed the message`,
    );
  }
  const addPath = opts.addPath.receive.has(Ipv4Unicast);
  const wdCount = scanNlri(msg, 21, 21 + wdLen, 32, addPath);
  if (wdCount < 0) {
    // RFC 7606 §5.3: unparseable Withdrawn Routes -> session reset (Invalid Network Field).
    throw updateError(
      UpdateMessageErrorSubcode.InvalidNetworkField,
      "withdrawn routes field is malformed",
    );
  }
  const nlCount = scanNlri(msg, aEnd, len, 32, addPath);
  if (nlCount < 0) {
    // RFC 7606 §5.3 / RFC 4271 §6.3: unparseable NLRI -> Invalid Network Field.
    throw updateError(UpdateMessageErrorSubcode.InvalidNetworkField, "NLRI field is malformed");
  }
  const withdrawn =
    wdCount > 0
      ? makeNlriView(msg, 21, 21 + wdLen, Afi.Ipv4, Safi.Unicast, addPath, wdCount)
      : emptyNlriView(Afi.Ipv4, Safi.Unicast);
  const nlri =
    nlCount > 0
      ? makeNlriView(msg, aEnd, len, Afi.Ipv4, Safi.Unicast, addPath, nlCount)
      : emptyNlriView(Afi.Ipv4, Safi.Unicast);
  const update: UpdateMessage = {
    withdrawn,
    attributes: null,
    nlri,
    action: Rfc7606Action.None,
    errors: [],
    disabledFamily: null,
    endOfRib: null,
  };
  if (attrLen === 0) {
    if (nlCount > 0) {
      // RFC 7606 §3 (d): NLRI without the mandatory attributes -> treat-as-withdraw.
      update.action = Rfc7606Action.TreatAsWithdraw;
      update.errors.push({
        attrType: AttrType.Origin,
        action: Rfc7606Action.TreatAsWithdraw,
        reason: "NLRI without path attributes",
      });
    } else if (wdCount === 0) {
      update.endOfRib = Ipv4Unicast; // RFC 4724 §2: an empty UPDATE is the IPv4 unicast End-of-RIB.
    }
    return update;
  }
  const d = decodeAttributes(msg, aStart, aEnd, opts, nlCount > 0);
  update.attributes = d.attributes;
  update.action = d.action;
  update.errors = d.errors;
  update.disabledFamily = d.disabledFamily;
  const a = d.attributes;
  if (
    wdCount === 0 &&
    nlCount === 0 &&
    a.mpUnreach !== null &&
    a.mpUnreach.withdrawn.count === 0 &&
    a.layout !== null &&
    a.layout.length === 1
  ) {
    // RFC 4724 §2: an UPDATE with only an empty MP_UNREACH_NLRI is that family's End-of-RIB.
    update.endOfRib = familyKey(a.mpUnreach.afi, a.mpUnreach.safi);
  }
  return update;
}

/** RFC 4724 §2: End-of-RIB: an empty UPDATE for IPv4 unicast, else an empty MP_UNREACH_NLRI. */
export function encodeEndOfRib(family: FamilyKey, extendedLength = false): Uint8Array {
  if (family === Ipv4Unicast) {
    const out = new Uint8Array(MinUpdateLength);
    writeHeader(out, 0, MinUpdateLength, MessageType.Update);
    return out;
  }
  const attrLen = extendedLength ? 7 : 6;
  const total = MinUpdateLength + attrLen;
  const out = new Uint8Array(total);
  writeHeader(out, 0, total, MessageType.Update);
  let o = 21;
  out[o++] = 0;
  out[o++] = attrLen;
  out[o++] = AttrFlag.Optional | (extendedLength ? AttrFlag.ExtendedLength : 0);
  out[o++] = AttrType.MpUnreachNlri;
  if (extendedLength) out[o++] = 0;
  out[o++] = 3;
  const afi = familyAfi(family);
  out[o++] = afi >> 8;
  out[o++] = afi & 0xff;
  out[o++] = familySafi(family);
  return out;
}

/**
 * Re-encodes a decoded UPDATE (attributes as decoded, prefix sections copied byte for byte, so the
 * session's ADD-PATH setting must match the one it was decoded with).
 */
export function encodeUpdateMessage(update: UpdateMessage, opts: SessionOptions): Uint8Array {
  const wd = update.withdrawn.buf.subarray(update.withdrawn.start, update.withdrawn.end);
  const nl = update.nlri.buf.subarray(update.nlri.start, update.nlri.end);
  const attrs = update.attributes
    ? encodeAttributes(update.attributes, opts).bytes
    : new Uint8Array(0);
  const total = MinUpdateLength + wd.length + attrs.length + nl.length;
  const out = new Uint8Array(total);
  writeHeader(out, 0, total, MessageType.Update);
  let o = 19;
  out[o++] = wd.length >> 8;
  out[o++] = wd.length & 0xff;
  out.set(wd, o);
  o += wd.length;
  out[o++] = attrs.length >> 8;
  out[o++] = attrs.length & 0xff;
  out.set(attrs, o);
  o += attrs.length;
  out.set(nl, o);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Packing

/** Writes everything of one message except its prefixes; returns the offset of the prefixes. */
type FrameWriter = (out: Uint8Array, off: number, prefixBytes: number) => number;

interface Packing {
  /** Octets of a message besides its prefixes. */
  overhead: number;
  /** Most prefix octets one message may hold. */
  capacity: number;
  frame: FrameWriter;
}

/** Splits prefixes into messages and writes them all into one buffer; returns the messages. */
function pack(p: PrefixArray, addPath: boolean, k: Packing, out: Uint8Array[]): void {
  const n = p.count;
  const lens = p.lens;
  const idBytes = addPath ? 5 : 1;
  const maxOne = idBytes + (p.afi === Afi.Ipv6 ? 16 : 4);
  if (k.capacity < maxOne) {
    throw new RangeError(
      `Message size leaves ${k.capacity} octets for prefixes, fewer than one prefix needs (${maxOne})`,
    );
  }
  // Pass 1: message boundaries.
  const ends: number[] = [];
  const sizes: number[] = [];
  let used = 0;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const b = idBytes + ((lens[i] + 7) >> 3);
    if (used + b > k.capacity) {
      ends.push(i);
      sizes.push(used);
      total += k.overhead + used;
      used = 0;
    }
    used += b;
  }
  ends.push(n);
  sizes.push(used);
  total += k.overhead + used;
  // Pass 2: write.
  const buf = new Uint8Array(total);
  const addrs = p.addrs;
  const ids = p.pathIds;
  const v6 = p.afi === Afi.Ipv6;
  let off = 0;
  let i = 0;
  for (let m = 0; m < ends.length; m++) {
    const msgLen = k.overhead + sizes[m];
    let o = k.frame(buf, off, sizes[m]);
    const end = ends[m];
    for (; i < end; i++) {
      if (addPath) {
        const id = ids ? ids[i] : 0;
        buf[o] = id >>> 24;
        buf[o + 1] = (id >>> 16) & 0xff;
        buf[o + 2] = (id >>> 8) & 0xff;
        buf[o + 3] = id & 0xff;
        o += 4;
      }
      const len = lens[i];
      buf[o++] = len;
      const nb = (len + 7) >> 3;
      if (v6) {
        let k = i * 4;
        let q = nb;
        while (q >= 4) {
          const x = addrs[k++];
          buf[o] = x >>> 24;
          buf[o + 1] = x >>> 16;
          buf[o + 2] = x >>> 8;
          buf[o + 3] = x;
          o += 4;
          q -= 4;
        }
        if (q > 0) {
          const x = addrs[k];
          buf[o++] = x >>> 24;
          if (q > 1) buf[o++] = x >>> 16;
          if (q > 2) buf[o++] = x >>> 8;
        }
      } else {
        const a = addrs[i];
        if (nb > 0) buf[o++] = a >>> 24;
        if (nb > 1) buf[o++] = a >>> 16;
        if (nb > 2) buf[o++] = a >>> 8;
        if (nb > 3) buf[o++] = a;
      }
    }
    out.push(buf.subarray(off, off + msgLen));
    off += msgLen;
  }
}

function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >> 8;
  b[o + 1] = v & 0xff;
}

/**
 * Packs a batch into UPDATE messages of at most `maxLength` octets (default 4096, or 65535 with
 * extended messages): withdrawals first, then announcements, IPv4 unicast in the classic fields
 * (or MP_REACH with an IPv6 next hop under RFC 8950), other families in MP_REACH/MP_UNREACH.
 */
export function encodeUpdates(
  batch: UpdateBatch,
  opts: SessionOptions,
  maxLength?: number,
): Uint8Array[] {
  const max = Math.min(
    maxLength ?? (opts.extendedMessage ? ExtendedMaxMessageLength : MaxMessageLength),
    ExtendedMaxMessageLength,
  );
  const fam = familyKey(batch.afi, batch.safi);
  const addPath = opts.addPath.send.has(fam);
  const out: Uint8Array[] = [];
  const classic = fam === Ipv4Unicast;
  const wd = batch.withdraw;
  if (wd && wd.count > 0) {
    checkAfi(wd, batch.afi);
    pack(wd, addPath, classic ? classicWithdraw(max) : mpUnreach(max, batch.afi, batch.safi), out);
  }
  const an = batch.announce;
  if (an && an.count > 0) {
    checkAfi(an, batch.afi);
    if (!batch.attributes) throw new RangeError("Announcing prefixes needs an attribute set");
    const nh = batch.mpNextHop ?? null;
    const attrs: PathAttributes = { ...batch.attributes, mpReach: null, mpUnreach: null };
    if (classic && (nh === null || nh.length === 4)) {
      if (attrs.nextHop === null && nh !== null)
        attrs.nextHop = ((nh[0] << 24) | (nh[1] << 16) | (nh[2] << 8) | nh[3]) >>> 0;
      pack(an, addPath, classicAnnounce(max, encodeAttributes(attrs, opts).bytes), out);
    } else {
      if (nh === null)
        throw new RangeError(
          `Announcing AFI ${batch.afi} SAFI ${batch.safi} needs an MP_REACH next hop`,
        );
      // RFC 4760 §3 / RFC 8950: the next hop travels in MP_REACH_NLRI; no classic NEXT_HOP.
      attrs.nextHop = null;
      pack(an, addPath, mpReach(max, batch.afi, batch.safi, nh, attrs, opts), out);
    }
  }
  return out;
}

function checkAfi(p: PrefixArray, afi: number): void {
  if (p.afi !== afi)
    throw new RangeError(`Prefix array AFI ${p.afi} does not match batch AFI ${afi}`);
}

function classicWithdraw(max: number): Packing {
  return {
    overhead: MinUpdateLength,
    capacity: max - MinUpdateLength,
    frame: (b, off, n) => {
      writeHeader(b, off, MinUpdateLength + n, MessageType.Update);
      put16(b, off + 19, n);
      // Total Path Attribute Length (0) follows the prefixes and is already zero.
      return off + 21;
    },
  };
}

function classicAnnounce(max: number, attrs: Uint8Array): Packing {
  const overhead = MinUpdateLength + attrs.length;
  return {
    overhead,
    capacity: max - overhead,
    frame: (b, off, n) => {
      writeHeader(b, off, overhead + n, MessageType.Update);
      put16(b, off + 21, attrs.length);
      b.set(attrs, off + 23);
      return off + overhead;
    },
  };
}

function mpUnreach(max: number, afi: number, safi: number): Packing {
  // MP_UNREACH_NLRI with the extended length bit: flags, type, length(2), AFI(2), SAFI(1).
  const overhead = MinUpdateLength + 7;
  return {
    overhead,
    capacity: max - overhead,
    frame: (b, off, n) => {
      writeHeader(b, off, overhead + n, MessageType.Update);
      put16(b, off + 21, 7 + n);
      let o = off + 23;
      b[o++] = AttrFlag.Optional | AttrFlag.ExtendedLength;
      b[o++] = AttrType.MpUnreachNlri;
      put16(b, o, 3 + n);
      o += 2;
      put16(b, o, afi);
      b[o + 2] = safi;
      return o + 3;
    },
  };
}

function mpReach(
  max: number,
  afi: number,
  safi: number,
  nh: Uint8Array,
  attrs: PathAttributes,
  opts: SessionOptions,
): Packing {
  const enc = encodeAttributes(attrs, opts);
  const ext = (enc.mpFlags & AttrFlag.ExtendedLength) !== 0;
  const head = mpReachValue(afi, safi, nh, new Uint8Array(0));
  const mpHdr = ext ? 4 : 3;
  const overhead = MinUpdateLength + enc.bytes.length + mpHdr + head.length;
  let capacity = max - overhead;
  if (!ext) capacity = Math.min(capacity, 255 - head.length);
  const before = enc.bytes.subarray(0, enc.mpAt);
  const after = enc.bytes.subarray(enc.mpAt);
  return {
    overhead,
    capacity,
    frame: (b, off, n) => {
      writeHeader(b, off, overhead + n, MessageType.Update);
      put16(b, off + 21, overhead - MinUpdateLength + n);
      let o = off + 23;
      b.set(before, o);
      o += before.length;
      b[o++] = enc.mpFlags;
      b[o++] = AttrType.MpReachNlri;
      if (ext) {
        put16(b, o, head.length + n);
        o += 2;
      } else {
        b[o++] = head.length + n;
      }
      b.set(head, o);
      o += head.length;
      b.set(after, o + n);
      return o;
    },
  };
}
