// BFD authentication (RFC 5880 §4.2-4.4, §6.7), pure: the authentication section of a Control
// packet, signed on transmission and checked on reception, and the sequence-number state of
// §6.8.1 (bfd.XmitAuthSeq, bfd.RcvAuthSeq, bfd.AuthSeqKnown) with the replay windows of §6.7.3
// and §6.7.4. Types: Simple Password (1), Keyed MD5 (2), Meticulous Keyed MD5 (3), Keyed SHA1
// (4), Meticulous Keyed SHA1 (5); one key per session (its Key ID must match). Time comes in as
// a value (`now`, ms). Not: the rest of the packet (packet.ts), which session a packet belongs
// to and the sockets (runtime.ts), where the password comes from (config, secrets).
import { createHash, timingSafeEqual } from "node:crypto";
import { BFD_CONTROL_LEN } from "./packet.js";

export const BFD_AUTH_TYPES = [
  "simple",
  "keyed-md5",
  "meticulous-keyed-md5",
  "keyed-sha1",
  "meticulous-keyed-sha1",
] as const;
export type BfdAuthType = (typeof BFD_AUTH_TYPES)[number];

/** RFC 5880 §4.1 Auth Type codes. */
const TYPE_CODE: Record<BfdAuthType, number> = {
  simple: 1,
  "keyed-md5": 2,
  "meticulous-keyed-md5": 3,
  "keyed-sha1": 4,
  "meticulous-keyed-sha1": 5,
};

export interface BfdAuthConfig {
  type: BfdAuthType;
  /** The Key ID on the wire (0..255). */
  keyId: number;
  /** Simple: 1-16 bytes; MD5: up to 16 bytes; SHA1: up to 20 bytes (zero-padded). */
  password: Uint8Array;
}

export type BfdAuthDiscard =
  | "AuthenticationNotInUse"
  | "AuthenticationMissing"
  | "AuthenticationTypeMismatch"
  | "AuthenticationKeyIdMismatch"
  | "AuthenticationBadLength"
  | "AuthenticationFailed"
  | "AuthenticationSequenceOutOfWindow";

const digestLen = (t: BfdAuthType) => (t.endsWith("md5") ? 16 : 20);
const meticulous = (t: BfdAuthType) => t.startsWith("meticulous");

/**
 * The MD5 or SHA1 digest of a packet whose digest field holds the key, zero-padded (RFC 5880
 * §6.7.3, §6.7.4). Writes the key into `packet`'s digest field.
 */
function keyedDigest(packet: Uint8Array, c: BfdAuthConfig): Buffer {
  const n = digestLen(c.type);
  const field = packet.subarray(BFD_CONTROL_LEN + 8, BFD_CONTROL_LEN + 8 + n);
  field.fill(0);
  field.set(c.password);
  return createHash(n === 16 ? "md5" : "sha1")
    .update(packet)
    .digest();
}

/** The length of the authentication section of this configuration (RFC 5880 §4.2-4.4). */
export function authSectionLength(c: BfdAuthConfig): number {
  return c.type === "simple" ? 3 + c.password.length : 8 + digestLen(c.type);
}

/** Checks a configuration; throws naming the field. */
export function validateAuth(c: BfdAuthConfig): BfdAuthConfig {
  if (!BFD_AUTH_TYPES.includes(c.type))
    throw new RangeError(`BFD authentication type must be one of ${BFD_AUTH_TYPES.join(", ")}`);
  if (!Number.isInteger(c.keyId) || c.keyId < 0 || c.keyId > 255)
    throw new RangeError(`BFD authentication keyId must be 0..255, got ${c.keyId}`);
  const max = c.type === "simple" ? 16 : digestLen(c.type);
  if (c.password.length < 1 || c.password.length > max)
    throw new RangeError(
      `BFD ${c.type} password must be 1 to ${max} bytes, got ${c.password.length}`,
    );
  return c;
}

/** The sequence-number state of one session's authentication (RFC 5880 §6.8.1). */
export class BfdAuthState {
  /** bfd.XmitAuthSeq: random at start (§6.8.1), the next number we send. */
  xmitSeq: number;
  rcvSeq = 0;
  known = false;
  /** When the last packet that passed authentication arrived (ms); for §6.8.1's reset. */
  private lastValidAt = 0;
  /** The Detection Time then (ms): the session's own is 0 again once it has expired. */
  private lastDetectionMs = 0;

  constructor(
    readonly config: BfdAuthConfig,
    initialSeq: number,
  ) {
    validateAuth(config);
    this.xmitSeq = initialSeq >>> 0;
  }

  /**
   * The authentication section appended to an encoded Control packet whose A bit and Length
   * already count it (`head`: the packet with a zeroed section of authSectionLength bytes).
   * Each keyed packet takes the next sequence number.
   */
  sign(packet: Uint8Array): Uint8Array {
    const c = this.config;
    const at = BFD_CONTROL_LEN;
    packet[at] = TYPE_CODE[c.type];
    packet[at + 1] = authSectionLength(c);
    packet[at + 2] = c.keyId;
    if (c.type === "simple") {
      packet.set(c.password, at + 3);
      return packet;
    }
    packet[at + 3] = 0;
    new DataView(packet.buffer, packet.byteOffset).setUint32(at + 4, this.xmitSeq);
    // Keyed MD5/SHA1 MAY, Meticulous MUST, take a new number per packet: every packet does here.
    this.xmitSeq = (this.xmitSeq + 1) >>> 0;
    packet.set(keyedDigest(packet, c), at + 8);
    return packet;
  }

  /**
   * Checks a received packet's authentication section (RFC 5880 §6.7.2-6.7.4): the section is
   * at BFD_CONTROL_LEN up to the packet's Length. On success the receive sequence state moves.
   * `detectMult` is the packet's; `detectionTimeMs` the session's (0 before any packet).
   */
  verify(
    packet: Uint8Array,
    detectMult: number,
    detectionTimeMs: number,
    now: number,
  ): { ok: true } | { ok: false; reason: BfdAuthDiscard } {
    const c = this.config;
    const at = BFD_CONTROL_LEN;
    const len = packet[3] as number;
    if (len < at + 3 || len > packet.length)
      return { ok: false, reason: "AuthenticationBadLength" };
    if (packet[at] !== TYPE_CODE[c.type])
      return { ok: false, reason: "AuthenticationTypeMismatch" };
    const authLen = packet[at + 1] as number;
    if (authLen !== len - at) return { ok: false, reason: "AuthenticationBadLength" };
    if (packet[at + 2] !== c.keyId) return { ok: false, reason: "AuthenticationKeyIdMismatch" };
    if (c.type === "simple") {
      const got = packet.subarray(at + 3, at + authLen);
      if (got.length !== c.password.length || !timingSafeEqual(got, c.password))
        return { ok: false, reason: "AuthenticationFailed" };
      return { ok: true };
    }
    const n = digestLen(c.type);
    if (authLen !== 8 + n) return { ok: false, reason: "AuthenticationBadLength" };
    // §6.8.1: AuthSeqKnown is reset after twice the Detection Time without a valid packet.
    const detection = Math.max(detectionTimeMs, this.lastDetectionMs);
    if (this.known && detection > 0 && now - this.lastValidAt > 2 * detection) this.known = false;
    const seq = new DataView(packet.buffer, packet.byteOffset).getUint32(at + 4);
    if (this.known) {
      // §6.7.3/§6.7.4: within [RcvAuthSeq, RcvAuthSeq + 3 * DetectMult] (Meticulous: the
      // lower end excluded), modulo 2^32.
      const ahead = (seq - this.rcvSeq) >>> 0;
      const inWindow = meticulous(c.type)
        ? ahead >= 1 && ahead <= 3 * detectMult
        : ahead <= 3 * detectMult;
      if (!inWindow) return { ok: false, reason: "AuthenticationSequenceOutOfWindow" };
    }
    const copy = Uint8Array.from(packet.subarray(0, len));
    const got = Uint8Array.from(copy.subarray(at + 8, at + 8 + n));
    if (!timingSafeEqual(got, keyedDigest(copy, c)))
      return { ok: false, reason: "AuthenticationFailed" };
    this.rcvSeq = seq;
    this.known = true;
    this.lastValidAt = now;
    this.lastDetectionMs = detectionTimeMs;
    return { ok: true };
  }

  /**
   * The session's Detection Time expired: the peer may come back as a new session with a new
   * sequence, so the received one is no longer known (BIRD resets it there too).
   */
  detectionExpired(): void {
    this.known = false;
  }
}
