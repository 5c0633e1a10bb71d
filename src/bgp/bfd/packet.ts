// The BFD Control packet of RFC 5880 §4.1 (pure): encode, decode, and the reception checks of
// §6.8.6 that need no session state. Owns the byte layout, the state and diagnostic names and the
// reasons a packet is discarded. Not: which session a packet belongs to, timers or sockets
// (session.ts, runtime.ts). A packet with the A bit is decoded with its section left to the
// session's authentication (auth.ts): whether authentication is in use is the session's to say.

/** RFC 5880 §4.1: the protocol version this codec speaks. */
export const BFD_VERSION = 1;
/** Length of a Control packet without an authentication section. */
export const BFD_CONTROL_LEN = 24;
/** RFC 5881 §4 / RFC 5883 §2: destination ports; §4: the source port range. */
export const BFD_PORT_SINGLE_HOP = 3784;
export const BFD_PORT_MULTIHOP = 4784;
export const BFD_SOURCE_PORT_MIN = 49152;
export const BFD_SOURCE_PORT_MAX = 65535;

/** RFC 5880 §4.1 Sta: session states. */
export const BfdState = { AdminDown: 0, Down: 1, Init: 2, Up: 3 } as const;
export type BfdState = (typeof BfdState)[keyof typeof BfdState];
export const BFD_STATE_NAMES = ["AdminDown", "Down", "Init", "Up"] as const;
export type BfdStateName = (typeof BFD_STATE_NAMES)[number];

/** RFC 5880 §4.1 Diag: why the session last left Up (or why it is not Up). */
export const BfdDiag = {
  None: 0,
  ControlDetectionTimeExpired: 1,
  EchoFunctionFailed: 2,
  NeighborSignaledSessionDown: 3,
  ForwardingPlaneReset: 4,
  PathDown: 5,
  ConcatenatedPathDown: 6,
  AdministrativelyDown: 7,
  ReverseConcatenatedPathDown: 8,
} as const;
export type BfdDiag = (typeof BfdDiag)[keyof typeof BfdDiag];
export const BFD_DIAG_NAMES = [
  "None",
  "ControlDetectionTimeExpired",
  "EchoFunctionFailed",
  "NeighborSignaledSessionDown",
  "ForwardingPlaneReset",
  "PathDown",
  "ConcatenatedPathDown",
  "AdministrativelyDown",
  "ReverseConcatenatedPathDown",
] as const;

/** A Control packet; intervals in microseconds as on the wire. */
export interface BfdControl {
  diag: number;
  state: BfdState;
  /** P: Poll, F: Final, C: Control Plane Independent, A: Authentication Present, D: Demand. */
  poll: boolean;
  final: boolean;
  cpi: boolean;
  auth: boolean;
  demand: boolean;
  detectMult: number;
  myDiscr: number;
  yourDiscr: number;
  desiredMinTxUs: number;
  requiredMinRxUs: number;
  requiredMinEchoRxUs: number;
}

/** Why a received packet was discarded (RFC 5880 §6.8.6, in its order). */
export type BfdDiscard =
  | "Truncated"
  | "BadVersion"
  | "BadLength"
  | "ZeroDetectMult"
  | "Multipoint"
  | "PollAndFinal"
  | "ZeroMyDiscriminator"
  | "ZeroYourDiscriminatorNotDown";

export type BfdDecoded = { ok: true; packet: BfdControl } | { ok: false; reason: BfdDiscard };

const FLAG_P = 0x20;
const FLAG_F = 0x10;
const FLAG_C = 0x08;
const FLAG_A = 0x04;
const FLAG_D = 0x02;
const FLAG_M = 0x01;

const u32 = (name: string, v: number) => {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
    throw new RangeError(`BFD ${name} must be an integer in 0..4294967295, got ${v}`);
  return v;
};

/**
 * Encodes a Control packet: 24 bytes, or with the A bit 24 + `authLen` with the authentication
 * section zeroed for auth.ts to fill (Length counts it). Throws on a bad field.
 */
export function encodeControl(p: BfdControl, authLen = 0): Uint8Array {
  if (!Number.isInteger(p.diag) || p.diag < 0 || p.diag > 31)
    throw new RangeError(`BFD diag must be 0..31, got ${p.diag}`);
  if (!Number.isInteger(p.detectMult) || p.detectMult < 1 || p.detectMult > 255)
    throw new RangeError(`BFD detectMult must be 1..255, got ${p.detectMult}`);
  if (p.poll && p.final) throw new RangeError("BFD Poll and Final must not both be set (§6.5)");
  if (p.auth !== authLen > 0 || authLen < 0 || (p.auth && (authLen < 3 || authLen > 28)))
    throw new RangeError(`BFD auth bit and section length disagree (auth ${p.auth}, ${authLen})`);
  const b = new Uint8Array(BFD_CONTROL_LEN + authLen);
  const v = new DataView(b.buffer);
  b[0] = (BFD_VERSION << 5) | p.diag;
  b[1] =
    (p.state << 6) |
    (p.poll ? FLAG_P : 0) |
    (p.final ? FLAG_F : 0) |
    (p.cpi ? FLAG_C : 0) |
    (p.auth ? FLAG_A : 0) |
    (p.demand ? FLAG_D : 0);
  b[2] = p.detectMult;
  b[3] = BFD_CONTROL_LEN + authLen;
  v.setUint32(4, u32("myDiscr", p.myDiscr));
  v.setUint32(8, u32("yourDiscr", p.yourDiscr));
  v.setUint32(12, u32("desiredMinTxUs", p.desiredMinTxUs));
  v.setUint32(16, u32("requiredMinRxUs", p.requiredMinRxUs));
  v.setUint32(20, u32("requiredMinEchoRxUs", p.requiredMinEchoRxUs));
  return b;
}

/**
 * Decodes one UDP payload and applies the checks of RFC 5880 §6.8.6 that need no session: the
 * packet or the first reason to discard it. Never throws.
 */
export function decodeControl(buf: Uint8Array): BfdDecoded {
  if (buf.length < BFD_CONTROL_LEN) return { ok: false, reason: "Truncated" };
  // §6.8.6: version, length (at least 24, 26 with A; at most the payload), then the fields.
  if (buf[0] >> 5 !== BFD_VERSION) return { ok: false, reason: "BadVersion" };
  const flags = buf[1];
  const auth = (flags & FLAG_A) !== 0;
  const len = buf[3];
  if (len < (auth ? BFD_CONTROL_LEN + 2 : BFD_CONTROL_LEN) || len > buf.length)
    return { ok: false, reason: "BadLength" };
  if (buf[2] === 0) return { ok: false, reason: "ZeroDetectMult" };
  if (flags & FLAG_M) return { ok: false, reason: "Multipoint" };
  // §6.5: "A BFD Control packet MUST NOT have both the Poll (P) and Final (F) bits set."
  if ((flags & (FLAG_P | FLAG_F)) === (FLAG_P | FLAG_F))
    return { ok: false, reason: "PollAndFinal" };
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const myDiscr = v.getUint32(4);
  const yourDiscr = v.getUint32(8);
  const state = (flags >> 6) as BfdState;
  if (myDiscr === 0) return { ok: false, reason: "ZeroMyDiscriminator" };
  if (yourDiscr === 0 && state !== BfdState.Down && state !== BfdState.AdminDown)
    return { ok: false, reason: "ZeroYourDiscriminatorNotDown" };
  return {
    ok: true,
    packet: {
      diag: buf[0] & 0x1f,
      state,
      poll: (flags & FLAG_P) !== 0,
      final: (flags & FLAG_F) !== 0,
      cpi: (flags & FLAG_C) !== 0,
      auth,
      demand: (flags & FLAG_D) !== 0,
      detectMult: buf[2],
      myDiscr,
      yourDiscr,
      desiredMinTxUs: v.getUint32(12),
      requiredMinRxUs: v.getUint32(16),
      requiredMinEchoRxUs: v.getUint32(20),
    },
  };
}
