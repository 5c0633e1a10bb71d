// The BFD Control packet codec: round trips, golden bytes and every discard rule of RFC 5880
// §6.8.6 that needs no session.
import { describe, expect, it } from "vitest";
import {
  BFD_CONTROL_LEN,
  type BfdControl,
  BfdDiag,
  BfdState,
  decodeControl,
  encodeControl,
} from "../../src/bgp/bfd/packet.js";

const base: BfdControl = {
  diag: BfdDiag.None,
  state: BfdState.Down,
  poll: false,
  final: false,
  cpi: false,
  auth: false,
  demand: false,
  detectMult: 3,
  myDiscr: 0x01020304,
  yourDiscr: 0,
  desiredMinTxUs: 1_000_000,
  requiredMinRxUs: 300_000,
  requiredMinEchoRxUs: 0,
};

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("BFD Control packet", () => {
  it("encodeControl() writes the RFC 5880 §4.1 layout (golden bytes)", () => {
    const b = encodeControl({ ...base, state: BfdState.Up, poll: true, yourDiscr: 7, diag: 3 });
    expect(hex(b)).toBe(
      [
        "23", // version 1, diag 3 (Neighbor Signaled Session Down)
        "e0", // state Up (3 << 6), P
        "03", // detect mult
        "18", // length 24
        "01020304", // my discriminator
        "00000007", // your discriminator
        "000f4240", // desired min TX 1,000,000 µs
        "000493e0", // required min RX 300,000 µs
        "00000000", // required min echo RX
      ].join(""),
    );
  });

  it("decodeControl() round-trips every state, diag and flag", () => {
    for (const state of [BfdState.AdminDown, BfdState.Down, BfdState.Init, BfdState.Up])
      for (const diag of [0, 1, 3, 7, 8])
        for (const [poll, final] of [
          [false, false],
          [true, false],
          [false, true],
        ]) {
          const p: BfdControl = {
            ...base,
            state,
            diag,
            poll,
            final,
            cpi: diag === 1,
            demand: diag === 3,
            yourDiscr: state === BfdState.Init || state === BfdState.Up ? 99 : 0,
            detectMult: 1 + diag,
            desiredMinTxUs: 0xffffffff,
          };
          expect(decodeControl(encodeControl(p))).toEqual({ ok: true, packet: p });
        }
  });

  it("decodeControl() accepts trailing bytes after Length and reads a frame inside a bigger buffer", () => {
    const b = new Uint8Array(40);
    b.set(encodeControl(base), 8);
    expect(decodeControl(b.subarray(8, 40))).toMatchObject({ ok: true, packet: base });
  });

  const mutate = (f: (b: Uint8Array) => void, p: BfdControl = base) => {
    const b = encodeControl(p);
    f(b);
    return decodeControl(b);
  };

  it("decodeControl() discards each bad packet with the §6.8.6 reason", () => {
    expect(decodeControl(new Uint8Array(23))).toEqual({ ok: false, reason: "Truncated" });
    expect(mutate((b) => (b[0] = (2 << 5) | 0))).toEqual({ ok: false, reason: "BadVersion" });
    expect(mutate((b) => (b[0] = 0))).toEqual({ ok: false, reason: "BadVersion" });
    expect(mutate((b) => (b[3] = 23))).toEqual({ ok: false, reason: "BadLength" });
    expect(mutate((b) => (b[3] = 25))).toEqual({ ok: false, reason: "BadLength" });
    // With the A bit the minimum is 26.
    expect(mutate((b) => (b[1] |= 0x04))).toEqual({ ok: false, reason: "BadLength" });
    expect(mutate((b) => (b[2] = 0))).toEqual({ ok: false, reason: "ZeroDetectMult" });
    expect(mutate((b) => (b[1] |= 0x01))).toEqual({ ok: false, reason: "Multipoint" });
    expect(mutate((b) => (b[1] |= 0x30))).toEqual({ ok: false, reason: "PollAndFinal" });
    expect(mutate((b) => b.fill(0, 4, 8))).toEqual({ ok: false, reason: "ZeroMyDiscriminator" });
    for (const state of [BfdState.Init, BfdState.Up])
      expect(decodeControl(encodeControl({ ...base, state }))).toEqual({
        ok: false,
        reason: "ZeroYourDiscriminatorNotDown",
      });
    for (const state of [BfdState.Down, BfdState.AdminDown])
      expect(decodeControl(encodeControl({ ...base, state })).ok).toBe(true);
  });

  it("decodeControl() decodes an authenticated packet (the session checks its section); a short one is discarded", () => {
    const b = new Uint8Array(BFD_CONTROL_LEN + 4);
    b.set(encodeControl(base));
    b[1] |= 0x04;
    b[3] = BFD_CONTROL_LEN + 4;
    b.set([1, 4, 1, 0x61], BFD_CONTROL_LEN); // Simple Password, key id 1, "a"
    expect(decodeControl(b)).toEqual({ ok: true, packet: { ...base, auth: true } });
    // encodeControl() lays the same header out, with the section zeroed for auth.ts.
    expect(encodeControl({ ...base, auth: true }, 4).subarray(0, BFD_CONTROL_LEN)).toEqual(
      b.subarray(0, BFD_CONTROL_LEN),
    );
    // §6.8.6: with the A bit the Length must leave room for a section (at least 26).
    const short = Uint8Array.from(b.subarray(0, BFD_CONTROL_LEN + 1));
    short[3] = BFD_CONTROL_LEN + 1;
    expect(decodeControl(short)).toEqual({ ok: false, reason: "BadLength" });
  });

  it("decodeControl() never throws on random bytes", () => {
    let seed = 12345;
    const rnd = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed >>> 24;
    };
    for (let i = 0; i < 5000; i++) {
      const b = new Uint8Array(rnd() % 40);
      for (let j = 0; j < b.length; j++) b[j] = rnd();
      if (i % 2 === 0 && b.length >= 4) {
        b[0] = 0x20 | (b[0] & 0x1f);
        b[3] = Math.min(b.length, 24);
      }
      const r = decodeControl(b);
      if (r.ok && !r.packet.auth) expect(decodeControl(encodeControl(r.packet))).toEqual(r);
    }
  });

  it("encodeControl() refuses fields out of range, naming them", () => {
    expect(() => encodeControl({ ...base, detectMult: 0 })).toThrow(/detectMult/);
    expect(() => encodeControl({ ...base, diag: 32 })).toThrow(/diag/);
    expect(() => encodeControl({ ...base, myDiscr: -1 })).toThrow(/myDiscr/);
    expect(() => encodeControl({ ...base, poll: true, final: true })).toThrow(/Poll and Final/);
    expect(() => encodeControl({ ...base, auth: true })).toThrow(/auth bit and section length/);
    expect(() => encodeControl(base, 4)).toThrow(/auth bit and section length/);
  });
});
