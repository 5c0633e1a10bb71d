// Session FSM (RFC 4271 §8) driven with a fake clock: timers are actions, expiries are events,
// so hours of protocol time run in milliseconds.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  checkOpen,
  collisionLoser,
  connectRetryDelay,
  idleHoldDelay,
  initialState,
  ipv4Number,
  LARGE_HOLD_MS,
  step,
} from "../../src/bgp/fsm/fsm.js";
import {
  AS_TRANS,
  type FsmAction,
  type FsmEvent,
  type FsmState,
  type OpenInfo,
  type PeerSettings,
  type TimerName,
} from "../../src/bgp/fsm/types.js";

const settings = (over: Partial<PeerSettings> = {}): PeerSettings => ({
  localAs: 64512,
  peerAs: 64999,
  routerId: ipv4Number("10.0.0.1"),
  holdTime: 90,
  connectRetryTime: 5,
  passive: false,
  families: ["ipv4-unicast", "ipv6-unicast"],
  requiredFamilies: [],
  idleHoldMs: 1000,
  maxIdleHoldMs: 60_000,
  ...over,
});

const open = (over: Partial<OpenInfo> = {}): OpenInfo => ({
  version: 4,
  myAs: 64999,
  holdTime: 30,
  bgpId: ipv4Number("10.0.0.2"),
  families: ["ipv4-unicast", "ipv6-unicast"],
  as4: 64999,
  routeRefresh: true,
  enhancedRouteRefresh: false,
  extendedMessage: false,
  gracefulRestart: false,
  ...over,
});

/** A fake-clock harness: applies timer actions, fires the earliest timer on advance(). */
class Harness {
  now = 0;
  timers = new Map<TimerName, number>();
  log: FsmAction[] = [];
  constructor(public s: FsmState) {}
  send(ev: FsmEvent): FsmAction[] {
    const r = step(this.s, ev);
    this.s = r.state;
    for (const a of r.actions) {
      if (a.type === "startTimer") this.timers.set(a.timer, this.now + a.ms);
      if (a.type === "stopTimer") this.timers.delete(a.timer);
    }
    this.log.push(...r.actions);
    return r.actions;
  }
  /** Advances the clock by ms, firing timers in order; returns the actions of all expiries. */
  advance(ms: number): FsmAction[] {
    const end = this.now + ms;
    const out: FsmAction[] = [];
    for (let i = 0; i < 100_000; i++) {
      let next: [TimerName, number] | undefined;
      for (const [t, at] of this.timers) if (at <= end && (!next || at < next[1])) next = [t, at];
      if (!next) break;
      this.now = next[1];
      this.timers.delete(next[0]);
      out.push(...this.send({ type: `${next[0]}_Expires` } as FsmEvent));
    }
    this.now = end;
    return out;
  }
}

const types = (as: FsmAction[]) => as.map((a) => a.type);

function established(h: Harness, o = open()): void {
  h.send({ type: "ManualStart" });
  h.send({ type: "Tcp_CR_Acked" });
  h.send({ type: "BGPOpen", open: o });
  h.send({ type: "KeepAliveMsg" });
  expect(h.s.state).toBe("Established");
}

describe("step() session establishment", () => {
  it("waits startupHoldMs for the OPEN when set (BIRD's startup hold time), then 4/0", () => {
    const h = new Harness(initialState(settings({ startupHoldMs: 5000, passive: true })));
    h.send({ type: "ManualStart" });
    h.send({ type: "TcpConnectionConfirmed" });
    expect(h.s.state).toBe("OpenSent");
    expect(h.timers.get("HoldTimer")).toBe(5000);
    const a = h.send({ type: "HoldTimer_Expires" });
    expect(h.s.state).toBe("Idle");
    expect(a).toContainEqual({
      type: "sendNotification",
      notification: { code: 4, subcode: 0 },
    });
  });

  it("goes Idle -> Connect -> OpenSent -> OpenConfirm -> Established when we connect", () => {
    const h = new Harness(initialState(settings()));
    expect(types(h.send({ type: "ManualStart" }))).toContain("connect");
    expect(h.s.state).toBe("Connect");
    const a = h.send({ type: "Tcp_CR_Acked" });
    expect(h.s.state).toBe("OpenSent");
    expect(types(a)).toContain("sendOpen");
    expect(h.timers.get("HoldTimer")).toBe(LARGE_HOLD_MS);
    expect(h.timers.has("ConnectRetryTimer")).toBe(false);
    const b = h.send({ type: "BGPOpen", open: open() });
    expect(h.s.state).toBe("OpenConfirm");
    expect(types(b)).toContain("sendKeepalive");
    const c = h.send({ type: "KeepAliveMsg" });
    expect(h.s.state).toBe("Established");
    const est = c.find((x) => x.type === "established");
    expect(est && est.type === "established" && est.negotiated.holdTime).toBe(30);
    expect(est && est.type === "established" && est.negotiated.keepaliveTime).toBe(10);
  });

  it("a passive peer never connects and establishes when the peer connects", () => {
    const h = new Harness(initialState(settings({ passive: true })));
    expect(types(h.send({ type: "ManualStart" }))).not.toContain("connect");
    expect(h.s.state).toBe("Active");
    const late = h.advance(3600_000);
    expect(types(late)).not.toContain("connect");
    expect(h.s.state).toBe("Active");
    h.send({ type: "TcpConnectionConfirmed" });
    h.send({ type: "BGPOpen", open: open() });
    h.send({ type: "KeepAliveMsg" });
    expect(h.s.state).toBe("Established");
  });

  it("retries the connection every ConnectRetryTime while the peer is unreachable", () => {
    const h = new Harness(initialState(settings({ connectRetryTime: 5 })));
    h.send({ type: "ManualStart" });
    h.send({ type: "TcpConnectionFails", message: "ECONNREFUSED" });
    expect(h.s.state).toBe("Active");
    const a = h.advance(60_000);
    expect(types(a).filter((t) => t === "connect")).toHaveLength(12);
    expect(h.s.state).toBe("Connect");
  });

  it("retries a refused connection after 1 s first, then doubling up to ConnectRetryTime", () => {
    // Both ends of a session start at once: the one whose connect came before the other
    // listened must not wait a whole ConnectRetryTime (the demo's 5 s).
    const h = new Harness(initialState(settings({ connectRetryTime: 5 })));
    h.send({ type: "ManualStart" });
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      h.send({ type: "TcpConnectionFails", message: "ECONNREFUSED" });
      expect(h.s.state).toBe("Active");
      const at = h.timers.get("ConnectRetryTimer") as number;
      delays.push(at - h.now);
      expect(types(h.advance(at - h.now))).toContain("connect");
    }
    expect(delays).toEqual([1000, 2000, 4000, 5000, 5000, 5000]);
    // A connection closed before the peer's OPEN (the peer does not know us yet) counts too.
    h.send({ type: "Tcp_CR_Acked" });
    h.send({ type: "TcpConnectionFails", message: "closed" });
    expect(h.s.state).toBe("Active");
    expect((h.timers.get("ConnectRetryTimer") as number) - h.now).toBe(5000);
    // A short ConnectRetryTime caps the first retry too.
    const g = new Harness(initialState(settings({ connectRetryTime: 1 })));
    g.send({ type: "ManualStart" });
    g.send({ type: "TcpConnectionFails", message: "ECONNREFUSED" });
    expect((g.timers.get("ConnectRetryTimer") as number) - g.now).toBe(1000);
    expect(connectRetryDelay(settings({ connectRetryTime: 120 }), 8)).toBe(120_000);
    expect(connectRetryDelay(settings({ connectRetryTime: 120 }), 1)).toBe(1000);
  });

  it("a collision NOTIFICATION (Cease/7) neither counts as an error nor doubles IdleHold, and its restart is jittered", () => {
    const h = new Harness(initialState(settings({ idleHoldMs: 1000, maxIdleHoldMs: 60_000 })));
    h.send({ type: "ManualStart" });
    for (let i = 0; i < 5; i++) {
      h.send({ type: "Tcp_CR_Acked" });
      if (i % 2) h.send({ type: "BGPOpen", open: open() });
      h.send({ type: "NotifMsg", code: 6, subcode: 7 });
      expect(h.s.state).toBe("Idle");
      expect(h.s.errorCount).toBe(0);
      // After the peer's OPEN (BGP ID 10.0.0.2, above ours): twice, so the peer, whose
      // connection wins collisions, reconnects first.
      const wait = i % 2 ? 2000 : 1000;
      expect((h.timers.get("IdleHoldTimer") as number) - h.now).toBe(wait);
      expect(types(h.advance(wait))).toContain("connect");
    }
    // Any other NOTIFICATION is an error: damped as before (1 s, then 2 s).
    h.send({ type: "Tcp_CR_Acked" });
    h.send({ type: "NotifMsg", code: 6, subcode: 2 });
    expect((h.timers.get("IdleHoldTimer") as number) - h.now).toBe(1000);
    h.advance(1000);
    h.send({ type: "Tcp_CR_Acked" });
    h.send({ type: "NotifMsg", code: 6, subcode: 7 });
    expect(h.s.errorCount).toBe(1);
    h.advance(1000);
    h.send({ type: "Tcp_CR_Acked" });
    h.send({ type: "NotifMsg", code: 2, subcode: 2 });
    expect((h.timers.get("IdleHoldTimer") as number) - h.now).toBe(2000);
    // Also on a session that was Established (the peer picked the other connection of a race
    // that this end had already taken): the restart waits the base IdleHold, jittered (twice
    // that at the end with the lower BGP Identifier).
    const e = new Harness(initialState(settings()));
    established(e);
    const a = e.send({ type: "NotifMsg", code: 6, subcode: 7 });
    expect(e.s.errorCount).toBe(0);
    const idleHold = (ms: number) => ({
      type: "startTimer",
      timer: "IdleHoldTimer",
      ms,
      jitter: true,
    });
    expect(a).toContainEqual(idleHold(2000));
    const w = new Harness(initialState(settings({ routerId: ipv4Number("10.0.0.9") })));
    established(w);
    expect(w.send({ type: "NotifMsg", code: 6, subcode: 7 })).toContainEqual(idleHold(1000));
    // Every ConnectRetryTimer is marked for jitter (RFC 4271 §10); other IdleHolds are not.
    const retries = e.log.filter((x) => x.type === "startTimer" && x.timer === "ConnectRetryTimer");
    expect(retries.length).toBeGreaterThan(0);
    for (const x of retries) expect(x).toMatchObject({ jitter: true });
    expect(
      h.log.filter((x) => x.type === "startTimer" && x.timer === "IdleHoldTimer"),
    ).toContainEqual({
      type: "startTimer",
      timer: "IdleHoldTimer",
      ms: 2000,
    });
  });

  it("accepts an incoming connection while in Active or Connect", () => {
    const h = new Harness(initialState(settings()));
    h.send({ type: "ManualStart" });
    h.send({ type: "TcpConnectionConfirmed" });
    expect(h.s.state).toBe("OpenSent");
  });

  it("refuses connections in Idle", () => {
    const h = new Harness(initialState(settings()));
    expect(types(h.send({ type: "TcpConnectionConfirmed" }))).toEqual(["disconnect"]);
    expect(h.s.state).toBe("Idle");
  });
});

describe("step() timers over hours of protocol time", () => {
  it("sends keepalives every hold/3 for two hours while the peer keeps talking", () => {
    const h = new Harness(initialState(settings({ holdTime: 90 })));
    established(h, open({ holdTime: 90 }));
    let sent = 0;
    for (let t = 0; t < 7200; t += 20) {
      sent += types(h.advance(20_000)).filter((x) => x === "sendKeepalive").length;
      h.send({ type: "KeepAliveMsg" });
    }
    expect(h.s.state).toBe("Established");
    expect(sent).toBe(7200 / 30);
  });

  it("drops the session with NOTIFICATION 4/0 when the hold timer fires", () => {
    const h = new Harness(initialState(settings({ holdTime: 3 })));
    established(h, open({ holdTime: 90 }));
    const a = h.advance(2999);
    expect(h.s.state).toBe("Established");
    expect(types(a)).toContain("sendKeepalive");
    const b = h.advance(1);
    expect(h.s.state).toBe("Idle");
    const n = b.find((x) => x.type === "sendNotification");
    expect(n && n.type === "sendNotification" && n.notification).toEqual({ code: 4, subcode: 0 });
    const down = b.find((x) => x.type === "sessionDown");
    expect(down && down.type === "sessionDown" && down.wasEstablished).toBe(true);
  });

  it("never runs keepalive or hold timers when hold time negotiates to 0", () => {
    const h = new Harness(initialState(settings({ holdTime: 0 })));
    established(h);
    expect(h.timers.size).toBe(0);
    h.advance(24 * 3600_000);
    expect(h.s.state).toBe("Established");
  });

  it("restarts after an error with an IdleHold delay that doubles up to the cap", () => {
    const h = new Harness(
      initialState(settings({ holdTime: 3, idleHoldMs: 1000, maxIdleHoldMs: 8000 })),
    );
    h.send({ type: "ManualStart" });
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      if (h.s.state === "Connect" || h.s.state === "Active") h.send({ type: "Tcp_CR_Acked" });
      // The peer sends a bad AS each time: 2/2 and back to Idle.
      h.send({ type: "BGPOpen", open: open({ as4: 1, myAs: 1 }) });
      expect(h.s.state).toBe("Idle");
      delays.push((h.timers.get("IdleHoldTimer") ?? 0) - h.now);
      h.advance(delays[i] ?? 0);
      expect(h.s.state).toBe("Connect");
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 8000, 8000]);
    // Reaching Established resets the backoff.
    h.send({ type: "Tcp_CR_Acked" });
    h.send({ type: "BGPOpen", open: open() });
    h.send({ type: "KeepAliveMsg" });
    h.send({ type: "NotifMsg", code: 6, subcode: 4 });
    expect((h.timers.get("IdleHoldTimer") ?? 0) - h.now).toBe(1000);
  });

  it("ManualStop sends Cease 6/2 and stays in Idle without restarting", () => {
    const h = new Harness(initialState(settings()));
    established(h);
    const a = h.send({ type: "ManualStop" });
    const n = a.find((x) => x.type === "sendNotification");
    expect(n && n.type === "sendNotification" && n.notification).toEqual({ code: 6, subcode: 2 });
    expect(h.timers.size).toBe(0);
    h.advance(3600_000);
    expect(h.s.state).toBe("Idle");
  });

  it("an UPDATE in OpenConfirm is an FSM error 5/2", () => {
    const h = new Harness(initialState(settings()));
    h.send({ type: "ManualStart" });
    h.send({ type: "Tcp_CR_Acked" });
    h.send({ type: "BGPOpen", open: open() });
    const a = h.send({ type: "UpdateMsg" });
    const n = a.find((x) => x.type === "sendNotification");
    expect(n && n.type === "sendNotification" && n.notification).toEqual({ code: 5, subcode: 2 });
  });

  it("an UPDATE in Established restarts the hold timer and is processed", () => {
    const h = new Harness(initialState(settings({ holdTime: 9 })));
    established(h);
    h.advance(8000);
    expect(types(h.send({ type: "UpdateMsg" }))).toContain("processUpdate");
    h.advance(8000);
    expect(h.s.state).toBe("Established");
  });
});

describe("checkOpen()", () => {
  const notif = (s: PeerSettings, o: OpenInfo) => {
    const r = checkOpen(s, o);
    return r.ok ? undefined : [r.notification.code, r.notification.subcode];
  };

  it("refuses a wrong peer AS with 2/2 Bad Peer AS", () => {
    expect(notif(settings(), open({ as4: 65000, myAs: 65000 }))).toEqual([2, 2]);
    const r = checkOpen(settings(), open({ as4: 65000, myAs: 65000 }));
    expect(!r.ok && r.message).toBe("Bad peer AS 65000, expected 64999");
  });

  it("takes a 4-octet AS from the capability, with AS_TRANS in My AS", () => {
    const s = settings({ peerAs: 4200000001 });
    const r = checkOpen(s, open({ myAs: AS_TRANS, as4: 4200000001 }));
    expect(r.ok && r.negotiated.peerAs).toBe(4200000001);
    // Without the capability, a 4-octet peer cannot be matched.
    expect(notif(s, open({ myAs: AS_TRANS, as4: undefined }))).toEqual([2, 2]);
  });

  it("accepts a 2-octet-only peer whose My AS matches", () => {
    const r = checkOpen(settings(), open({ as4: undefined, myAs: 64999 }));
    expect(r.ok && r.negotiated.as4).toBe(false);
  });

  it("refuses version 3 with 2/1 and our version in the data", () => {
    const r = checkOpen(settings(), open({ version: 3 }));
    expect(
      !r.ok && [r.notification.code, r.notification.subcode, [...(r.notification.data ?? [])]],
    ).toEqual([2, 1, [0, 4]]);
  });

  it("refuses a zero BGP identifier, and our own on iBGP, with 2/3", () => {
    expect(notif(settings(), open({ bgpId: 0 }))).toEqual([2, 3]);
    const ibgp = settings({ peerAs: 64512 });
    expect(notif(ibgp, open({ as4: 64512, myAs: 64512, bgpId: ibgp.routerId }))).toEqual([2, 3]);
    // eBGP with the same identifier is allowed (RFC 6286).
    expect(notif(settings(), open({ bgpId: settings().routerId }))).toBeUndefined();
  });

  it("refuses hold time 1 or 2 with 2/6 and negotiates the minimum", () => {
    expect(notif(settings(), open({ holdTime: 1 }))).toEqual([2, 6]);
    expect(notif(settings(), open({ holdTime: 2 }))).toEqual([2, 6]);
    const r = checkOpen(settings({ holdTime: 9 }), open({ holdTime: 180 }));
    expect(r.ok && [r.negotiated.holdTime, r.negotiated.keepaliveTime]).toEqual([9, 3]);
    const z = checkOpen(settings(), open({ holdTime: 0 }));
    expect(z.ok && z.negotiated.holdTime).toBe(0);
  });

  it("intersects families, assumes IPv4 unicast without MP, refuses required ones with 2/7", () => {
    const r = checkOpen(settings(), open({ families: ["ipv6-unicast"] }));
    expect(r.ok && r.negotiated.families).toEqual(["ipv6-unicast"]);
    const legacy = checkOpen(settings(), open({ families: undefined }));
    expect(legacy.ok && legacy.negotiated.families).toEqual(["ipv4-unicast"]);
    const req = checkOpen(
      settings({ requiredFamilies: ["ipv6-unicast"] }),
      open({ families: ["ipv4-unicast"] }),
    );
    expect(
      !req.ok && [
        req.notification.code,
        req.notification.subcode,
        [...(req.notification.data ?? [])],
      ],
    ).toEqual([2, 7, [1, 4, 0, 2, 0, 1]]);
    expect(
      notif(settings({ families: ["ipv6-unicast"] }), open({ families: ["ipv4-unicast"] })),
    ).toEqual([2, 7]);
  });
});

describe("collisionLoser() (RFC 4271 §6.8)", () => {
  it("closes our own connection when our identifier is lower, else the peer's", () => {
    expect(collisionLoser(ipv4Number("10.0.0.1"), ipv4Number("10.0.0.2"))).toBe("outgoing");
    expect(collisionLoser(ipv4Number("10.0.0.2"), ipv4Number("10.0.0.1"))).toBe("incoming");
    // Compared as unsigned numbers.
    expect(collisionLoser(ipv4Number("200.0.0.1"), ipv4Number("10.0.0.1"))).toBe("incoming");
  });

  it("OpenCollisionDump sends Cease 6/7", () => {
    const h = new Harness(initialState(settings()));
    h.send({ type: "ManualStart" });
    h.send({ type: "Tcp_CR_Acked" });
    const a = h.send({ type: "OpenCollisionDump" });
    const n = a.find((x) => x.type === "sendNotification");
    expect(n && n.type === "sendNotification" && n.notification).toEqual({ code: 6, subcode: 7 });
    expect(h.s.state).toBe("Idle");
  });
});

describe("idleHoldDelay()", () => {
  it("is zero without errors and capped after many", () => {
    expect(idleHoldDelay(settings(), 0)).toBe(0);
    expect(idleHoldDelay(settings(), 1000)).toBe(60_000);
  });
});

describe("step() under random event sequences (property)", () => {
  const events: FsmEvent[] = [
    { type: "ManualStart" },
    { type: "ManualStop" },
    { type: "ConnectRetryTimer_Expires" },
    { type: "HoldTimer_Expires" },
    { type: "KeepaliveTimer_Expires" },
    { type: "IdleHoldTimer_Expires" },
    { type: "Tcp_CR_Acked" },
    { type: "TcpConnectionConfirmed" },
    { type: "TcpConnectionFails", message: "reset" },
    { type: "BGPOpen", open: open() },
    { type: "BGPOpen", open: open({ as4: 1, myAs: 1 }) },
    { type: "BGPHeaderErr", notification: { code: 1, subcode: 1 } },
    { type: "NotifMsg", code: 6, subcode: 4 },
    { type: "KeepAliveMsg" },
    { type: "UpdateMsg" },
    { type: "UpdateMsgErr", notification: { code: 3, subcode: 1 } },
    { type: "OpenCollisionDump" },
    { type: "RouteRefreshMsg" },
  ];

  it("keeps the timers consistent with the state and never leaves Idle without a start", () => {
    const reached = new Set<string>();
    // Random events mixed with the establishing run (start, TCP up, good OPEN, KEEPALIVE), so
    // that every state, Established included, is visited often.
    const step1 = fc.integer({ min: 0, max: events.length - 1 }).map((i) => [i]);
    const establish = fc.constant([0, 6, 9, 13]);
    fc.assert(
      fc.property(fc.array(fc.oneof(step1, step1, establish), { maxLength: 120 }), (chunks) => {
        const h = new Harness(initialState(settings({ holdTime: 9 })));
        for (const i of chunks.flat()) {
          const ev = events[i] as FsmEvent;
          const before = h.s.state;
          const acts = h.send(ev);
          // Established needs both timers (hold 9 negotiated with the peer's 30).
          if (h.s.state === "Established") {
            reached.add("Established");
            expect(h.timers.has("HoldTimer")).toBe(true);
            expect(h.timers.has("KeepaliveTimer")).toBe(true);
          }
          // Idle runs no session timers; only IdleHold may be pending.
          if (h.s.state === "Idle") {
            expect([...h.timers.keys()].filter((t) => t !== "IdleHoldTimer")).toEqual([]);
          }
          // Leaving Idle happens only on ManualStart or the IdleHold restart.
          if (before === "Idle" && h.s.state !== "Idle") {
            expect(["ManualStart", "IdleHoldTimer_Expires"]).toContain(ev.type);
          }
          // A session that goes down always says why.
          if (before !== "Idle" && h.s.state === "Idle") {
            expect(acts.some((a) => a.type === "sessionDown")).toBe(true);
          }
        }
      }),
      { numRuns: 300 },
    );
    expect(reached.has("Established")).toBe(true);
  });
});
