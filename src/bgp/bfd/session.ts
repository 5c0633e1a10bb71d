// One BFD session in asynchronous mode (RFC 5880 §6), pure: events in (a packet that passed the
// codec's checks, a timer that fired, admin up/down, new intervals), actions out (send a packet,
// arm or stop a timer, the state changed with its diagnostic). Owns the state variables of §6.8.1,
// the three-way handshake of §6.8.6, detection (§6.8.4), the Poll/Final sequence for timer
// changes (§6.5, §6.8.3), the slow rate before Up (§6.8.3) and jitter (§6.8.7). Not: sockets,
// the clock, discriminator lookup across sessions (runtime.ts), demand mode, the echo function
// and authentication (none of them implemented).
import { type BfdControl, BfdDiag, BfdState } from "./packet.js";

export interface BfdTimers {
  /** bfd.DesiredMinTxInterval once Up (ms). */
  desiredMinTxMs: number;
  /** bfd.RequiredMinRxInterval (ms). */
  requiredMinRxMs: number;
  /** bfd.DetectMult. */
  detectMult: number;
}

export type BfdTimer = "tx" | "detect";

export type BfdEvent =
  | { kind: "Start" }
  | { kind: "PacketReceived"; packet: BfdControl }
  | { kind: "TimerExpired"; timer: BfdTimer }
  | { kind: "AdminDown" }
  | { kind: "AdminUp" }
  | { kind: "Configure"; timers: BfdTimers };

export type BfdAction =
  | { kind: "Send"; packet: BfdControl }
  | { kind: "ArmTimer"; timer: BfdTimer; ms: number }
  | { kind: "StopTimer"; timer: BfdTimer }
  | { kind: "StateChanged"; from: BfdState; to: BfdState; diag: BfdDiag };

/** §6.8.3: while not Up, DesiredMinTxInterval is at least one second. */
export const SLOW_TX_MS = 1000;

/** Checks intervals and multiplier; throws naming the field. */
export function validateTimers(t: BfdTimers): BfdTimers {
  const ms = (name: string, v: number) => {
    if (!Number.isFinite(v) || v < 1 || v > 60_000)
      throw new RangeError(`BFD ${name} must be 1..60000 ms, got ${v}`);
  };
  ms("desiredMinTxMs", t.desiredMinTxMs);
  ms("requiredMinRxMs", t.requiredMinRxMs);
  if (!Number.isInteger(t.detectMult) || t.detectMult < 1 || t.detectMult > 255)
    throw new RangeError(`BFD detectMult must be 1..255, got ${t.detectMult}`);
  return t;
}

const us = (ms: number) => Math.round(ms * 1000);

export class BfdSession {
  // RFC 5880 §6.8.1 state variables.
  sessionState: BfdState = BfdState.Down;
  remoteSessionState: BfdState = BfdState.Down;
  remoteDiscr = 0;
  localDiag: BfdDiag = BfdDiag.None;
  /** Received values (µs); RemoteMinRxInterval starts at 1 (§6.8.1). */
  remoteMinRxUs = 1;
  remoteDesiredMinTxUs = 0;
  remoteDetectMult = 0;
  /** A Poll sequence is in progress: our packets carry P until one with F arrives. */
  polling = false;
  /** Packets accepted by this session, and those it discarded (wrong discriminator, AdminDown). */
  received = 0;
  discarded = 0;
  /** The interval used for detection until the Poll sequence ends (§6.8.3), in ms. */
  private detectRxMs: number;
  /** The transmit interval in force (ms): an increase waits for the Poll sequence to end. */
  private txMs: number;
  private started = false;

  constructor(
    readonly localDiscr: number,
    private timers: BfdTimers,
    /** Uniform in [0, 1): jitter (§6.8.7). */
    private readonly rng: () => number = Math.random,
  ) {
    if (!Number.isInteger(localDiscr) || localDiscr < 1 || localDiscr > 0xffffffff)
      throw new RangeError(`BFD local discriminator must be 1..4294967295, got ${localDiscr}`);
    validateTimers(timers);
    this.detectRxMs = timers.requiredMinRxMs;
    this.txMs = this.advertisedTxMs();
  }

  get config(): BfdTimers {
    return { ...this.timers };
  }

  /** bfd.DesiredMinTxInterval as advertised now (ms): the slow rate until Up. */
  advertisedTxMs(): number {
    return this.sessionState === BfdState.Up
      ? this.timers.desiredMinTxMs
      : Math.max(this.timers.desiredMinTxMs, SLOW_TX_MS);
  }

  /** The Detection Time (§6.8.4, asynchronous mode) in ms; 0 before any packet. */
  detectionTimeMs(): number {
    if (this.remoteDetectMult === 0) return 0;
    return this.remoteDetectMult * Math.max(this.detectRxMs, this.remoteDesiredMinTxUs / 1000);
  }

  handle(e: BfdEvent): BfdAction[] {
    const out: BfdAction[] = [];
    switch (e.kind) {
      case "Start":
        if (!this.started) {
          this.started = true;
          this.transmit(out);
        }
        break;
      case "PacketReceived":
        this.receive(e.packet, out);
        break;
      case "TimerExpired":
        if (e.timer === "tx") this.transmit(out);
        else this.detectExpired(out);
        break;
      case "AdminDown":
        if (this.sessionState !== BfdState.AdminDown) {
          // §6.8.16: AdminDown with diag 7; the peer sees it and goes Down (diag 3).
          this.setState(BfdState.AdminDown, BfdDiag.AdministrativelyDown, out);
          out.push({ kind: "StopTimer", timer: "detect" });
          this.sendNow(out);
        }
        break;
      case "AdminUp":
        if (this.sessionState === BfdState.AdminDown) {
          this.setState(BfdState.Down, BfdDiag.None, out);
          this.sendNow(out);
        }
        break;
      case "Configure":
        this.configure(validateTimers(e.timers), out);
        break;
    }
    return out;
  }

  /** The packet this session sends now (§6.8.7). */
  packet(final = false): BfdControl {
    return {
      diag: this.localDiag,
      state: this.sessionState,
      poll: this.polling && !final,
      final,
      cpi: false,
      auth: false,
      demand: false,
      detectMult: this.timers.detectMult,
      myDiscr: this.localDiscr,
      yourDiscr: this.remoteDiscr,
      desiredMinTxUs: us(this.advertisedTxMs()),
      requiredMinRxUs: us(this.timers.requiredMinRxMs),
      requiredMinEchoRxUs: 0,
    };
  }

  // ---- reception: RFC 5880 §6.8.6 (the session's part; the codec did the rest) --------------

  private receive(p: BfdControl, out: BfdAction[]): void {
    // The runtime found us by Your Discriminator or by address; a mismatch is still discarded.
    if (p.yourDiscr !== 0 && p.yourDiscr !== this.localDiscr) {
      this.discarded++;
      return;
    }
    this.received++;
    this.remoteDiscr = p.myDiscr;
    this.remoteSessionState = p.state;
    this.remoteMinRxUs = p.requiredMinRxUs;
    this.remoteDesiredMinTxUs = p.desiredMinTxUs;
    this.remoteDetectMult = p.detectMult;
    if (p.final && this.polling) this.endPoll();
    if (this.sessionState === BfdState.AdminDown) {
      this.discarded++;
      return;
    }
    const detect = this.detectionTimeMs();
    if (detect > 0) out.push({ kind: "ArmTimer", timer: "detect", ms: detect });
    if (p.state === BfdState.AdminDown) {
      if (this.sessionState !== BfdState.Down)
        this.setState(BfdState.Down, BfdDiag.NeighborSignaledSessionDown, out);
    } else if (this.sessionState === BfdState.Down) {
      if (p.state === BfdState.Down) this.setState(BfdState.Init, BfdDiag.None, out);
      else if (p.state === BfdState.Init) this.setState(BfdState.Up, BfdDiag.None, out);
    } else if (this.sessionState === BfdState.Init) {
      if (p.state === BfdState.Init || p.state === BfdState.Up)
        this.setState(BfdState.Up, BfdDiag.None, out);
    } else if (p.state === BfdState.Down) {
      this.setState(BfdState.Down, BfdDiag.NeighborSignaledSessionDown, out);
    }
    // §6.8.6: a Poll is answered at once with Final, whatever the transmit timer says.
    // (A changed RequiredMinRx of the remote applies from the next transmit timer on.)
    if (p.poll) out.push({ kind: "Send", packet: this.packet(true) });
  }

  private detectExpired(out: BfdAction[]): void {
    // §6.8.1: RemoteDiscr is reset when the Detection Time expires; §6.8.4: Init/Up go Down.
    this.remoteDiscr = 0;
    this.remoteSessionState = BfdState.Down;
    this.remoteMinRxUs = 1;
    this.remoteDetectMult = 0;
    if (this.sessionState === BfdState.Init || this.sessionState === BfdState.Up)
      this.setState(BfdState.Down, BfdDiag.ControlDetectionTimeExpired, out);
  }

  // ---- transitions and timer changes ---------------------------------------------------------

  private setState(to: BfdState, diag: BfdDiag, out: BfdAction[]): void {
    const from = this.sessionState;
    if (from === to) return;
    this.sessionState = to;
    this.localDiag = diag;
    out.push({ kind: "StateChanged", from, to, diag });
    if (to === BfdState.Up) {
      // Leaving the slow rate changes DesiredMinTx while Up: a Poll sequence (§6.8.3).
      if (this.timers.desiredMinTxMs < SLOW_TX_MS) this.startPoll(out);
      this.txMs = Math.min(this.txMs, this.advertisedTxMs());
      this.sendNow(out);
    } else {
      // Down, Init or AdminDown: back to the slow rate at once (no Poll needed when not Up).
      this.polling = false;
      this.txMs = this.advertisedTxMs();
      this.detectRxMs = this.timers.requiredMinRxMs;
      this.sendNow(out);
    }
  }

  private configure(t: BfdTimers, out: BfdAction[]): void {
    const before = this.timers;
    this.timers = { ...t };
    const up = this.sessionState === BfdState.Up;
    // §6.8.3: a slower transmit interval or a faster receive interval takes effect after the
    // Poll sequence; the other directions at once.
    if (up) {
      this.txMs = Math.min(this.txMs, this.advertisedTxMs());
      this.detectRxMs = Math.max(before.requiredMinRxMs, t.requiredMinRxMs);
      if (
        before.desiredMinTxMs !== t.desiredMinTxMs ||
        before.requiredMinRxMs !== t.requiredMinRxMs ||
        before.detectMult !== t.detectMult
      )
        this.startPoll(out);
    } else {
      this.txMs = this.advertisedTxMs();
      this.detectRxMs = t.requiredMinRxMs;
    }
    if (this.started) this.sendNow(out);
  }

  private startPoll(_out: BfdAction[]): void {
    this.polling = true;
  }

  private endPoll(): void {
    this.polling = false;
    this.txMs = this.advertisedTxMs();
    this.detectRxMs = this.timers.requiredMinRxMs;
  }

  // ---- transmission: RFC 5880 §6.8.7 ---------------------------------------------------------

  private sendNow(out: BfdAction[]): void {
    if (!this.started) return;
    this.transmit(out);
  }

  private transmit(out: BfdAction[]): void {
    // §6.8.7: nothing is sent while the remote asks for no packets (RequiredMinRx zero).
    if (this.remoteMinRxUs !== 0) out.push({ kind: "Send", packet: this.packet() });
    this.rearmTx(out);
  }

  private rearmTx(out: BfdAction[]): void {
    if (!this.started) return;
    out.push({ kind: "ArmTimer", timer: "tx", ms: this.jittered(this.txIntervalMs()) });
  }

  /** max(DesiredMinTx in force, RemoteMinRxInterval) (§6.8.7). */
  txIntervalMs(): number {
    return Math.max(this.txMs, this.remoteMinRxUs / 1000);
  }

  /** §6.8.7: 0-25% less, or 10-25% less when DetectMult is 1. */
  private jittered(ms: number): number {
    const r = this.rng();
    const cut = this.timers.detectMult === 1 ? 0.1 + 0.15 * r : 0.25 * r;
    return ms * (1 - cut);
  }
}
