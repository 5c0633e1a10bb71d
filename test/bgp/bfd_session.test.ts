// The BFD session state machine (RFC 5880 §6) with a fake clock: two sessions joined by a
// simulated wire that can be cut; hours of protocol time run in milliseconds, no sockets.
import { describe, expect, it } from "vitest";
import {
  BFD_STATE_NAMES,
  type BfdControl,
  BfdDiag,
  BfdState,
  decodeControl,
  encodeControl,
} from "../../src/bgp/bfd/packet.js";
import {
  type BfdAction,
  type BfdEvent,
  BfdSession,
  type BfdTimers,
} from "../../src/bgp/bfd/session.js";

const fast: BfdTimers = { desiredMinTxMs: 300, requiredMinRxMs: 300, detectMult: 3 };

interface Change {
  at: number;
  who: string;
  to: string;
  diag: number;
}

/** Two sessions, a wire with 1 ms of delay (through the real codec), timers on a fake clock. */
class Sim {
  now = 0;
  up = true;
  readonly changes: Change[] = [];
  readonly sent: { at: number; who: string; p: BfdControl }[] = [];
  private readonly timers = new Map<string, number>();
  private readonly wire: { at: number; to: string; bytes: Uint8Array }[] = [];
  readonly s: Record<string, BfdSession>;

  constructor(a: BfdTimers = fast, b: BfdTimers = fast, seed = 1) {
    let x = seed;
    const rng = () => {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      return x / 2 ** 32;
    };
    this.s = { a: new BfdSession(11, a, rng), b: new BfdSession(22, b, rng) };
  }

  event(who: string, e: BfdEvent): void {
    this.apply(who, this.s[who].handle(e));
  }

  private apply(who: string, actions: BfdAction[]): void {
    for (const a of actions) {
      if (a.kind === "Send") {
        this.sent.push({ at: this.now, who, p: a.packet });
        if (this.up)
          this.wire.push({
            at: this.now + 1,
            to: who === "a" ? "b" : "a",
            bytes: encodeControl(a.packet),
          });
      } else if (a.kind === "ArmTimer") this.timers.set(`${who}:${a.timer}`, this.now + a.ms);
      else if (a.kind === "StopTimer") this.timers.delete(`${who}:${a.timer}`);
      else this.changes.push({ at: this.now, who, to: BFD_STATE_NAMES[a.to], diag: a.diag });
    }
  }

  /** Runs the clock to `until` (ms), dispatching deliveries and timers in time order. */
  run(until: number): void {
    for (let steps = 0; steps < 1_000_000; steps++) {
      let next = until;
      let what: { kind: "wire"; i: number } | { kind: "timer"; key: string } | undefined;
      this.wire.forEach((w, i) => {
        if (w.at <= next) {
          next = w.at;
          what = { kind: "wire", i };
        }
      });
      for (const [key, at] of this.timers)
        if (at < next || (at === next && what === undefined)) {
          next = at;
          what = { kind: "timer", key };
        }
      if (!what) {
        this.now = until;
        return;
      }
      this.now = next;
      if (what.kind === "wire") {
        const [w] = this.wire.splice(what.i, 1);
        const d = decodeControl(w.bytes);
        if (!d.ok) throw new Error(`Bad packet on the wire: ${d.reason}`);
        this.event(w.to, { kind: "PacketReceived", packet: d.packet });
      } else {
        this.timers.delete(what.key);
        const [who, timer] = what.key.split(":");
        this.event(who, { kind: "TimerExpired", timer: timer as "tx" | "detect" });
      }
    }
    throw new Error("Simulation did not settle");
  }

  state(who: string): string {
    return BFD_STATE_NAMES[this.s[who].sessionState];
  }
}

describe("BfdSession", () => {
  it("comes Up by the three-way handshake (Down → Init → Up) and then polls to its fast rate", () => {
    const sim = new Sim();
    sim.event("a", { kind: "Start" });
    sim.run(200);
    sim.event("b", { kind: "Start" });
    sim.run(5000);
    expect(sim.state("a")).toBe("Up");
    expect(sim.state("b")).toBe("Up");
    // b heard a's Down first: Init, then Up on a's Init; a went Down → Up on b's Init.
    expect(sim.changes.filter((c) => c.who === "b").map((c) => c.to)).toEqual(["Init", "Up"]);
    expect(sim.changes.filter((c) => c.who === "a").map((c) => c.to)).toEqual(["Up"]);
    // The handshake takes two one-way trips after b starts, not a transmit interval.
    expect(sim.changes.at(-1)?.at).toBeLessThan(210);
    // Before Up the packets advertise the slow rate (§6.8.3: ≥ 1 s); once Up, 300 ms after a
    // Poll sequence that the peer answered with Final.
    const aSent = sim.sent.filter((s) => s.who === "a");
    expect(aSent[0].p).toMatchObject({
      state: BfdState.Down,
      desiredMinTxUs: 1_000_000,
      yourDiscr: 0,
    });
    expect(aSent.some((s) => s.p.poll && s.p.desiredMinTxUs === 300_000)).toBe(true);
    expect(sim.sent.some((s) => s.who === "b" && s.p.final)).toBe(true);
    expect(sim.s.a.polling).toBe(false);
    expect(sim.s.a.txIntervalMs()).toBe(300);
    // Up, packets every 225..300 ms (jitter §6.8.7), never slower than the interval.
    const t0 = sim.now;
    sim.run(t0 + 10_000);
    const gaps = sim.sent
      .filter((s) => s.who === "a" && s.at > t0 && !s.p.final)
      .map((s, i, all) => (i === 0 ? 0 : s.at - all[i - 1].at))
      .slice(1);
    expect(gaps.length).toBeGreaterThan(30);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(300);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(225);
    expect(sim.state("a")).toBe("Up");
  });

  it("goes Down with diag 1 (Control Detection Time Expired) within interval × multiplier of a cut, and Up again after", () => {
    const sim = new Sim();
    sim.event("a", { kind: "Start" });
    sim.event("b", { kind: "Start" });
    sim.run(5000);
    expect([sim.state("a"), sim.state("b")]).toEqual(["Up", "Up"]);
    expect(sim.s.a.detectionTimeMs()).toBe(900);
    sim.up = false;
    const cut = sim.now;
    sim.run(cut + 2000);
    const downs = sim.changes.filter((c) => c.at > cut && c.to === "Down");
    expect(downs.map((c) => [c.who, c.diag]).sort()).toEqual([
      ["a", BfdDiag.ControlDetectionTimeExpired],
      ["b", BfdDiag.ControlDetectionTimeExpired],
    ]);
    for (const d of downs) expect(d.at - cut).toBeLessThanOrEqual(900);
    for (const d of downs) expect(d.at - cut).toBeGreaterThan(600);
    // Down: the slow rate again, Your Discriminator zero.
    expect(sim.s.a.remoteDiscr).toBe(0);
    expect(sim.s.a.packet()).toMatchObject({
      state: BfdState.Down,
      diag: 1,
      yourDiscr: 0,
      desiredMinTxUs: 1_000_000,
    });
    sim.up = true;
    const back = sim.now;
    sim.run(back + 5000);
    expect([sim.state("a"), sim.state("b")]).toEqual(["Up", "Up"]);
    expect(sim.changes.filter((c) => c.at > back && c.to === "Up").length).toBe(2);
  });

  it("AdminDown sends diag 7, the peer goes Down with diag 3, and AdminUp brings both back", () => {
    const sim = new Sim();
    sim.event("a", { kind: "Start" });
    sim.event("b", { kind: "Start" });
    sim.run(5000);
    sim.event("a", { kind: "AdminDown" });
    sim.run(sim.now + 5000);
    expect(sim.changes.slice(-2)).toMatchObject([
      { who: "a", to: "AdminDown", diag: BfdDiag.AdministrativelyDown },
      { who: "b", to: "Down", diag: BfdDiag.NeighborSignaledSessionDown },
    ]);
    // AdminDown ignores what it hears and never detects anything; b stays Down (not Init).
    expect([sim.state("a"), sim.state("b")]).toEqual(["AdminDown", "Down"]);
    sim.event("a", { kind: "AdminUp" });
    sim.run(sim.now + 5000);
    expect([sim.state("a"), sim.state("b")]).toEqual(["Up", "Up"]);
  });

  it("a peer's Down while Up takes us Down with diag 3", () => {
    const s = new BfdSession(5, fast, () => 0);
    s.handle({ kind: "Start" });
    const pkt = (state: BfdState, yourDiscr = 5): BfdControl => ({
      ...s.packet(),
      state,
      myDiscr: 9,
      yourDiscr,
      poll: false,
      final: false,
    });
    expect(s.handle({ kind: "PacketReceived", packet: pkt(BfdState.Init) })).toContainEqual({
      kind: "StateChanged",
      from: BfdState.Down,
      to: BfdState.Up,
      diag: 0,
    });
    expect(s.handle({ kind: "PacketReceived", packet: pkt(BfdState.Down, 0) })).toContainEqual({
      kind: "StateChanged",
      from: BfdState.Up,
      to: BfdState.Down,
      diag: BfdDiag.NeighborSignaledSessionDown,
    });
    // A packet for another discriminator is discarded and counted.
    s.handle({ kind: "PacketReceived", packet: pkt(BfdState.Up, 77) });
    expect(s.discarded).toBe(1);
  });

  it("answers a Poll with Final at once, and a timer change while Up runs a Poll sequence (§6.8.3)", () => {
    const sim = new Sim();
    sim.event("a", { kind: "Start" });
    sim.event("b", { kind: "Start" });
    sim.run(5000);
    const t0 = sim.now;
    // Slower: a keeps 300 ms until b's Final, then 1000 ms; b's detection follows a's packets.
    sim.event("a", {
      kind: "Configure",
      timers: { desiredMinTxMs: 1000, requiredMinRxMs: 1000, detectMult: 5 },
    });
    const polls = sim.sent.filter((s) => s.who === "a" && s.at >= t0 && s.p.poll);
    expect(polls.length).toBe(1);
    expect(polls[0].p).toMatchObject({
      desiredMinTxUs: 1_000_000,
      requiredMinRxUs: 1_000_000,
      detectMult: 5,
    });
    expect(sim.s.a.txIntervalMs()).toBe(300);
    sim.run(t0 + 5);
    const finals = sim.sent.filter((s) => s.who === "b" && s.at >= t0 && s.p.final);
    expect(finals.length).toBe(1);
    expect(finals[0].at - t0).toBe(1); // answered on receipt, not at b's next transmit time
    expect(sim.s.a.polling).toBe(false);
    expect(sim.s.a.txIntervalMs()).toBe(1000);
    sim.run(t0 + 20_000);
    expect([sim.state("a"), sim.state("b")]).toEqual(["Up", "Up"]);
    expect(sim.s.b.detectionTimeMs()).toBe(5000);
    // b now sends at a's RequiredMinRx (1000 ms), whatever its own 300 ms.
    expect(sim.s.b.txIntervalMs()).toBe(1000);
  });

  it("multiplier 1 jitters 10-25% (§6.8.7); a peer asking for no packets (RequiredMinRx 0) gets none", () => {
    const lo = new BfdSession(1, { ...fast, detectMult: 1 }, () => 0.999999);
    const hi = new BfdSession(2, { ...fast, detectMult: 1 }, () => 0);
    const arm = (s: BfdSession) =>
      (s.handle({ kind: "Start" }).find((a) => a.kind === "ArmTimer") as { ms: number }).ms;
    expect(arm(lo)).toBeCloseTo(750, 0);
    expect(arm(hi)).toBeCloseTo(900, 0);
    const s = new BfdSession(3, fast, () => 0);
    s.handle({ kind: "Start" });
    s.handle({
      kind: "PacketReceived",
      packet: { ...s.packet(), myDiscr: 4, yourDiscr: 3, state: BfdState.Down, requiredMinRxUs: 0 },
    });
    expect(s.handle({ kind: "TimerExpired", timer: "tx" }).some((a) => a.kind === "Send")).toBe(
      false,
    );
  });

  it("refuses bad timers and discriminators, naming the field", () => {
    expect(() => new BfdSession(0, fast)).toThrow(/discriminator/);
    expect(() => new BfdSession(1, { ...fast, detectMult: 0 })).toThrow(/detectMult/);
    expect(() => new BfdSession(1, { ...fast, desiredMinTxMs: 0 })).toThrow(/desiredMinTxMs/);
    const s = new BfdSession(1, fast);
    expect(() => s.handle({ kind: "Configure", timers: { ...fast, requiredMinRxMs: -1 } })).toThrow(
      /requiredMinRxMs/,
    );
    expect(s.config).toEqual(fast);
  });
});
