// The KeepaliveTimer of an Established session (RFC 4271 §8.2.2, §10, §4.4), on one PeerSession
// driven by hand on a fake clock: an UPDATE sent restarts the timer (no KEEPALIVE goes while
// UPDATEs flow faster than KeepaliveTime), the timer is jittered to 0.75-1.0 of KeepaliveTime
// with a seeded random, and never below one second. The peer's side is its OPEN and KEEPALIVEs.
import { describe, expect, it } from "vitest";
import { localCapabilities } from "../../src/bgp/fsm/capabilities.js";
import {
  initialState,
  ipv4Number,
  keepaliveTimer,
  MIN_KEEPALIVE_MS,
  step,
} from "../../src/bgp/fsm/fsm.js";
import type { PeerSettings } from "../../src/bgp/fsm/types.js";
import type { SpeakerAction } from "../../src/bgp/speaker/events.js";
import { PeerSession } from "../../src/bgp/speaker/session.js";
import { MessageType } from "../../src/bgp/wire/constants.js";
import { encodeKeepalive } from "../../src/bgp/wire/message.js";
import { encodeOpen, myAsField } from "../../src/bgp/wire/open.js";
import { Ipv4Unicast } from "../../src/bgp/wire/types.js";
import { encodeEndOfRib } from "../../src/bgp/wire/update.js";
import { silentLog } from "../../src/lib/log.js";
import { ibgpSettings } from "../helpers/peer_settings.js";
import { prng } from "../helpers/prng.js";

const settings = (holdTime: number, routerId = "10.0.0.1"): PeerSettings =>
  ibgpSettings(routerId, holdTime);

/** One session to 10.0.0.2 over connection #1, Established on a fake clock. */
class Harness {
  now = 0;
  /** Running timers by name: when each fires. */
  timers = new Map<string, number>();
  /** Times our KEEPALIVEs went out (after Established). */
  keepalivesAt: number[] = [];
  /** Every startTimer of the KeepaliveTimer: its ms. */
  keepaliveStarts: number[] = [];
  readonly session: PeerSession;
  private established = false;

  constructor(holdTime: number, random?: () => number) {
    this.session = new PeerSession(
      { address: "10.0.0.2", port: 179, settings: settings(holdTime) },
      {
        emit: (a) => this.handle(a),
        newConn: () => 1,
        now: () => this.now,
        ...(random ? { random } : {}),
        log: silentLog,
      },
      {
        onEstablished: () => {
          this.established = true;
        },
        onUpdate: () => {},
        onRouteRefresh: () => {},
        onDown: () => {
          this.established = false;
        },
      },
    );
    this.session.start();
    this.session.connected(1);
    const peer = settings(holdTime, "10.0.0.2");
    this.session.received(
      1,
      encodeOpen({
        version: 4,
        myAs: myAsField(peer.localAs),
        holdTime,
        bgpIdentifier: peer.routerId,
        capabilities: localCapabilities(peer),
      }),
    );
    this.session.received(1, encodeKeepalive());
    expect(this.established).toBe(true);
    this.keepalivesAt = [];
  }

  private handle(a: SpeakerAction): void {
    if (a.kind === "startTimer") {
      this.timers.set(a.timer.name, this.now + a.ms);
      if (a.timer.name === "KeepaliveTimer") this.keepaliveStarts.push(a.ms);
    } else if (a.kind === "stopTimer") {
      this.timers.delete(a.timer.name);
    } else if (a.kind === "send" && a.bytes[18] === MessageType.Keepalive) {
      this.keepalivesAt.push(this.now);
    }
  }

  /** Moves the clock to `to`, firing the timers due on the way in time order. */
  advanceTo(to: number): void {
    for (;;) {
      let next: [string, number] | undefined;
      for (const [n, at] of this.timers) if (at <= to && (!next || at < next[1])) next = [n, at];
      if (!next) break;
      this.timers.delete(next[0]);
      this.now = next[1];
      this.session.timerExpired(1, next[0] as "KeepaliveTimer");
    }
    this.now = to;
  }

  get up(): boolean {
    return this.established && this.session.state === "Established";
  }
}

const update = encodeEndOfRib(Ipv4Unicast);

describe("KeepaliveTimer (RFC 4271 §8.2.2, §10, §4.4)", () => {
  it("sends no KEEPALIVE while UPDATEs go out every 0.5 x KeepaliveTime, and one KeepaliveTime after the last", () => {
    // Hold 90: KeepaliveTime 30 s. The peer keeps talking (its KEEPALIVEs every 30 s).
    const h = new Harness(90);
    const ka = 30_000;
    for (let t = 0; t < 3_600_000; t += ka / 2) {
      h.advanceTo(t);
      h.session.send(update);
      if (t % ka === 0) h.session.received(1, encodeKeepalive());
    }
    expect(h.up).toBe(true);
    expect(h.keepalivesAt).toEqual([]);
    // The last UPDATE went at 3,585 s: the KEEPALIVE follows 30 s later, and every 30 s then.
    const last = 3_600_000 - ka / 2;
    h.advanceTo(last + 2 * ka);
    expect(h.keepalivesAt).toEqual([last + ka, last + 2 * ka]);
  });

  it("costs no timer restart per UPDATE: a burst of 100,000 UPDATEs starts no timer", () => {
    const h = new Harness(90);
    const starts = h.keepaliveStarts.length;
    h.advanceTo(1000);
    for (let i = 0; i < 100_000; i++) h.session.send(update);
    expect(h.keepaliveStarts.length).toBe(starts);
    // When the timer fires at 30 s it starts again for what is left from the burst at 1 s.
    h.advanceTo(30_000);
    expect(h.keepalivesAt).toEqual([]);
    expect(h.keepaliveStarts.slice(starts)).toEqual([1000]);
    h.advanceTo(31_000);
    expect(h.keepalivesAt).toEqual([31_000]);
  });

  it("does not count ROUTE-REFRESH as an UPDATE (§8.2.2 names KEEPALIVE and UPDATE)", () => {
    const h = new Harness(90);
    h.advanceTo(10_000);
    // ROUTE-REFRESH for IPv4 unicast.
    h.session.send(Uint8Array.from([...Array(16).fill(0xff), 0, 23, 5, 0, 1, 0, 1]));
    h.advanceTo(30_000);
    expect(h.keepalivesAt).toEqual([30_000]);
  });

  it("jitters each KeepaliveTimer to 0.75-1.0 of KeepaliveTime (seeded random)", () => {
    const h = new Harness(90, prng(7));
    const ka = 30_000;
    for (let t = ka; t <= 3_600_000; t += ka) {
      h.advanceTo(t);
      h.session.received(1, encodeKeepalive());
    }
    expect(h.up).toBe(true);
    const gaps = h.keepalivesAt.slice(1).map((t, i) => t - (h.keepalivesAt[i] as number));
    expect(gaps.length).toBeGreaterThan(100);
    for (const g of gaps) {
      expect(g).toBeGreaterThanOrEqual(0.75 * ka);
      expect(g).toBeLessThanOrEqual(ka);
    }
    // Spread over the range, not one value.
    expect(Math.min(...gaps)).toBeLessThan(0.8 * ka);
    expect(Math.max(...gaps)).toBeGreaterThan(0.95 * ka);
    // Restarted for an UPDATE, the interval from that UPDATE is jittered the same way.
    const sent = h.now;
    h.session.send(update);
    const before = h.keepalivesAt.length;
    h.advanceTo(sent + ka);
    const next = h.keepalivesAt[before] as number;
    expect(next - sent).toBeGreaterThanOrEqual(0.75 * ka);
    expect(next - sent).toBeLessThanOrEqual(ka);
  });

  it("never sends KEEPALIVEs more often than one a second (§4.4), jitter or not", () => {
    // Hold 3: KeepaliveTime 1 s, which jitter must not shorten.
    const h = new Harness(3, () => 0);
    for (let t = 500; t <= 60_000; t += 500) {
      h.advanceTo(t);
      h.session.received(1, encodeKeepalive());
      if (t % 1500 === 0) h.session.send(update);
    }
    expect(h.up).toBe(true);
    const gaps = h.keepalivesAt.slice(1).map((t, i) => t - (h.keepalivesAt[i] as number));
    expect(gaps.length).toBeGreaterThan(20);
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(MIN_KEEPALIVE_MS);
  });

  it("the FSM marks the KeepaliveTimer for jitter with a one-second floor, none at hold time 0", () => {
    const s0 = initialState(settings(90));
    const r = step(
      { ...s0, state: "OpenSent" },
      {
        type: "BGPOpen",
        open: {
          version: 4,
          myAs: 64512,
          holdTime: 9,
          bgpId: ipv4Number("10.0.0.2"),
          routeRefresh: false,
          enhancedRouteRefresh: false,
          extendedMessage: false,
          gracefulRestart: false,
        },
      },
    );
    expect(r.actions).toContainEqual({
      type: "startTimer",
      timer: "KeepaliveTimer",
      ms: 3000,
      jitter: true,
      minMs: MIN_KEEPALIVE_MS,
    });
    const fired = step(r.state, { type: "KeepaliveTimer_Expires" });
    expect(fired.actions).toEqual([
      { type: "sendKeepalive" },
      { type: "startTimer", timer: "KeepaliveTimer", ms: 3000, jitter: true, minMs: 1000 },
    ]);
    const n = r.state.negotiated;
    expect(n && keepaliveTimer({ ...n, holdTime: 0, keepaliveTime: 0 })).toBeUndefined();
  });
});
