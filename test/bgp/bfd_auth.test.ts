// BFD authentication (RFC 5880 §6.7), pure: each of the five types signs a packet that the same
// key verifies and another key refuses; the sequence windows of §6.7.3 (Keyed: the last number
// again is accepted) and §6.7.4 (Meticulous: only a newer one), modulo 2^32; AuthSeqKnown reset
// after twice the Detection Time (§6.8.1); type, Key ID and length mismatches named; and the
// digest laid out as the RFC says (MD5 over the packet with the key in the digest field).
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  authSectionLength,
  BFD_AUTH_TYPES,
  type BfdAuthConfig,
  BfdAuthState,
  validateAuth,
} from "../../src/bgp/bfd/auth.js";
import {
  BFD_CONTROL_LEN,
  type BfdControl,
  BfdState,
  encodeControl,
} from "../../src/bgp/bfd/packet.js";

const base: BfdControl = {
  diag: 0,
  state: BfdState.Up,
  poll: false,
  final: false,
  cpi: false,
  auth: true,
  demand: false,
  detectMult: 3,
  myDiscr: 7,
  yourDiscr: 9,
  desiredMinTxUs: 300_000,
  requiredMinRxUs: 300_000,
  requiredMinEchoRxUs: 0,
};
const key = (s: string) => new Uint8Array(Buffer.from(s));
const cfg = (type: BfdAuthConfig["type"], password = "secret", keyId = 1): BfdAuthConfig => ({
  type,
  keyId,
  password: key(password),
});
const signed = (a: BfdAuthState, p: BfdControl = base) =>
  a.sign(encodeControl(p, authSectionLength(a.config)));

describe("BFD authentication (RFC 5880 §6.7)", () => {
  it("each type: signed by one side, verified by the other; a wrong key is refused", () => {
    for (const type of BFD_AUTH_TYPES) {
      const tx = new BfdAuthState(cfg(type), 1000);
      const rx = new BfdAuthState(cfg(type), 0);
      const other = new BfdAuthState(cfg(type, "secreT"), 0);
      const b = signed(tx);
      expect(b.length, type).toBe(BFD_CONTROL_LEN + authSectionLength(cfg(type)));
      expect(b[3], type).toBe(b.length);
      expect(rx.verify(b, 3, 0, 0), type).toEqual({ ok: true });
      expect(other.verify(b, 3, 0, 0), type).toEqual({ ok: false, reason: "AuthenticationFailed" });
      // One bit changed anywhere in the packet breaks a digest (the simple password signs nothing).
      const flipped = Uint8Array.from(signed(tx));
      flipped[12] ^= 1;
      expect(new BfdAuthState(cfg(type), 0).verify(flipped, 3, 0, 0).ok, type).toBe(
        type === "simple",
      );
    }
  });

  it("Keyed MD5 as the RFC lays it out: type 2, length 24, key id, sequence, MD5 of the packet with the key in place", () => {
    const tx = new BfdAuthState(cfg("keyed-md5", "k"), 0x01020304);
    const b = signed(tx);
    expect([...b.subarray(24, 32)]).toEqual([2, 24, 1, 0, 1, 2, 3, 4]);
    const copy = Uint8Array.from(b);
    copy.fill(0, 32, 48);
    copy[32] = "k".charCodeAt(0);
    expect(Buffer.from(b.subarray(32, 48))).toEqual(createHash("md5").update(copy).digest());
    // The next packet carries the next number.
    expect([...signed(tx).subarray(28, 32)]).toEqual([1, 2, 3, 5]);
  });

  it("sequence windows: Keyed accepts a repeat, Meticulous only newer; 3 x DetectMult ahead at most, across 2^32", () => {
    const run = (type: BfdAuthConfig["type"], start: number, steps: number[]) => {
      const tx = new BfdAuthState(cfg(type), start);
      const rx = new BfdAuthState(cfg(type), 0);
      const first = signed(tx);
      expect(rx.verify(first, 3, 900, 0).ok).toBe(true);
      return steps.map((ahead) => {
        tx.xmitSeq = (start + ahead) >>> 0;
        return rx.verify(signed(tx), 3, 900, 1).ok;
      });
    };
    // From 0xfffffffe: +0 (repeat), +1, +9 (the edge), +10 (out).
    expect(run("keyed-sha1", 0xfffffffe, [0, 1])).toEqual([true, true]);
    expect(run("keyed-sha1", 0xfffffffe, [9])).toEqual([true]);
    expect(run("keyed-sha1", 0xfffffffe, [10])).toEqual([false]);
    expect(run("meticulous-keyed-sha1", 0xfffffffe, [0])).toEqual([false]);
    expect(run("meticulous-keyed-md5", 0xfffffffe, [1, 2])).toEqual([true, true]);
    // An old number (a replay) is out of window.
    expect(run("meticulous-keyed-md5", 100, [-1])).toEqual([false]);
  });

  it("AuthSeqKnown is reset after twice the Detection Time without a valid packet", () => {
    const tx = new BfdAuthState(cfg("meticulous-keyed-sha1"), 5);
    const rx = new BfdAuthState(cfg("meticulous-keyed-sha1"), 0);
    expect(rx.verify(signed(tx), 3, 900, 1000).ok).toBe(true);
    tx.xmitSeq = 5_000_000; // far ahead: a restarted peer
    expect(rx.verify(signed(tx), 3, 900, 2000)).toEqual({
      ok: false,
      reason: "AuthenticationSequenceOutOfWindow",
    });
    expect(rx.verify(signed(tx), 3, 900, 1000 + 1801).ok).toBe(true);
  });

  it("a restarted peer (new random sequence) is accepted once our Detection Time expired, or twice the last one passed", () => {
    const tx = new BfdAuthState(cfg("keyed-sha1"), 10);
    const rx = new BfdAuthState(cfg("keyed-sha1"), 0);
    expect(rx.verify(signed(tx), 3, 900, 1000).ok).toBe(true);
    tx.xmitSeq = 77_777_777;
    // The session's own Detection Time reads 0 once expired: the one seen last still counts.
    expect(rx.verify(signed(tx), 3, 0, 1500).ok).toBe(false);
    expect(rx.verify(signed(tx), 3, 0, 1000 + 1801).ok).toBe(true);
    tx.xmitSeq = 5;
    expect(rx.verify(signed(tx), 3, 900, 3000).ok).toBe(false);
    rx.detectionExpired();
    expect(rx.verify(signed(tx), 3, 0, 3001).ok).toBe(true);
  });

  it("a type, Key ID or length that does not match is named; keys are checked for their type", () => {
    const b = signed(new BfdAuthState(cfg("keyed-sha1"), 1));
    expect(new BfdAuthState(cfg("keyed-md5"), 0).verify(b, 3, 0, 0)).toEqual({
      ok: false,
      reason: "AuthenticationTypeMismatch",
    });
    expect(new BfdAuthState(cfg("keyed-sha1", "secret", 2), 0).verify(b, 3, 0, 0)).toEqual({
      ok: false,
      reason: "AuthenticationKeyIdMismatch",
    });
    const cut = Uint8Array.from(b);
    cut[25] = 20;
    expect(new BfdAuthState(cfg("keyed-sha1"), 0).verify(cut, 3, 0, 0)).toEqual({
      ok: false,
      reason: "AuthenticationBadLength",
    });
    expect(() => validateAuth(cfg("simple", "x".repeat(17)))).toThrow(
      "BFD simple password must be 1 to 16 bytes, got 17",
    );
    expect(() => validateAuth(cfg("keyed-sha1", "x".repeat(20)))).not.toThrow();
    expect(() => validateAuth(cfg("keyed-md5", "x".repeat(17)))).toThrow(/1 to 16 bytes/);
    expect(() => validateAuth({ ...cfg("simple"), keyId: 256 })).toThrow(/keyId must be 0..255/);
  });
});
