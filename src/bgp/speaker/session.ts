// One configured peer's sessions, without I/O: runs the pure FSM over numbered connections
// (framing, OPEN, KEEPALIVE, NOTIFICATION, timers as actions) and resolves connection collisions
// (RFC 4271 §6.8) with a second FSM while two connections race. Every side effect is a
// SpeakerAction handed to `emit`. Owns: the links (connection + FSM), what was negotiated, the
// message counters, the timer jitter (RFC 4271 §10), the KeepaliveTimer restart on each UPDATE
// sent (§8.2.2, done lazily). Not: routes (the core receives UPDATEs and ROUTE-REFRESHes through
// SessionCallbacks), sockets and clocks (the runtime).

import type { Log } from "../../lib/log.js";
import { localCapabilities, openInfo } from "../fsm/capabilities.js";
import { collisionLoser, initialState, keepaliveTimer, type StartTimer, step } from "../fsm/fsm.js";
import {
  CeaseSubcode,
  type DownReason,
  ErrorCode,
  type FsmAction,
  type FsmEvent,
  type FsmState,
  type Negotiated,
  type NotificationInfo,
  type PeerSettings,
  type SessionState,
  type TimerName,
} from "../fsm/types.js";
import { ExtendedMaxMessageLength, MaxMessageLength, MessageType } from "../wire/constants.js";
import { MessageFramer } from "../wire/framer.js";
import {
  decodeNotification,
  decodeRouteRefresh,
  encodeKeepalive,
  encodeNotification,
} from "../wire/message.js";
import { decodeOpen, encodeOpen, myAsField } from "../wire/open.js";
import {
  type Capability,
  NotificationError,
  type RouteRefreshMessage,
  type SessionOptions,
} from "../wire/types.js";
import type { ConnId, SpeakerAction } from "./events.js";

export interface SessionConfig {
  address: string;
  port: number;
  sourceAddress?: string;
  settings: PeerSettings;
}

/** What a session tells its owner, synchronously, while it handles an event. */
export interface SessionCallbacks {
  onEstablished(s: PeerSession): void;
  /** A framed UPDATE on the Established connection; consume it before returning. */
  onUpdate(s: PeerSession, msg: Uint8Array): void;
  onRouteRefresh(s: PeerSession, rr: RouteRefreshMessage): void;
  onDown(s: PeerSession, reason: DownReason, wasEstablished: boolean): void;
}

/** How a session reaches the world: actions out, connection numbers, the time. */
export interface SessionIo {
  emit(a: SpeakerAction): void;
  /** A fresh number for an outgoing connection (> 0). */
  newConn(): ConnId;
  now(): number;
  /**
   * Uniform in [0, 1): jitters the timers the FSM marks (the ConnectRetryTimer, the restart after
   * a collision, the KeepaliveTimer) to 0.75-1.0 of their value (RFC 4271 §10), so peers that
   * started or collided together do not retry in lockstep. Absent: no jitter (replay tests).
   */
  random?(): number;
  log: Log;
}

const RANK: Record<SessionState, number> = {
  Idle: 0,
  Connect: 1,
  Active: 1,
  OpenSent: 2,
  OpenConfirm: 3,
  Established: 4,
};

/** One TCP connection (or connect attempt) and the FSM that runs on it. */
interface Link {
  /** Names the link's timers. */
  id: number;
  fsm: FsmState;
  /** The connection bound to this FSM. */
  conn: ConnId | undefined;
  /** Our connect in flight. */
  attempt: ConnId | undefined;
  framer: MessageFramer;
  timers: Set<TimerName>;
  /** When the KeepaliveTimer was last (re)started, by the FSM or for an UPDATE sent. */
  keepaliveFrom: number;
  /** When the last UPDATE went out on this link (-Infinity: none yet). */
  updateSentAt: number;
  remoteCaps: Capability[];
  dead: boolean;
}

/** The sessions of one configured peer. */
export class PeerSession {
  private links: Link[] = [];
  private linkSeq = 0;
  private stopped = true;
  /** Reading held paused by us (the FIB is behind): the hold timer then does not expire. */
  private readingHeld = false;
  /** Session parameters while Established (negotiated once, FSM and codec alike). */
  negotiated: Negotiated | undefined;
  options: SessionOptions | undefined;
  establishedAt: number | undefined;
  lastDown: DownReason | undefined;
  /** The peer's capabilities from its last accepted OPEN (kept after a drop, for GR). */
  peerCapabilities: Capability[] | undefined;
  readonly counters = {
    messagesIn: 0,
    messagesOut: 0,
    updatesIn: 0,
    establishedTransitions: 0,
    /** Hold timers that fired while we held reading paused, and were started again. */
    holdDeferrals: 0,
  };

  constructor(
    public config: SessionConfig,
    private readonly io: SessionIo,
    private readonly cb: SessionCallbacks,
  ) {}

  get address(): string {
    return this.config.address;
  }

  /** The most advanced state over both connections. */
  get state(): SessionState {
    let best: SessionState = "Idle";
    for (const l of this.links) if (RANK[l.fsm.state] > RANK[best]) best = l.fsm.state;
    return best;
  }

  get established(): boolean {
    return this.links.some((l) => l.fsm.state === "Established");
  }

  /** The Established connection, if any. */
  get establishedConn(): ConnId | undefined {
    return this.links.find((l) => l.fsm.state === "Established")?.conn;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.event(this.newLink(), { type: "ManualStart" });
  }

  /** ManualStop: Cease 6/2 (or the given NOTIFICATION) to an open session, close everything, stay down. */
  stop(notification?: NotificationInfo): void {
    this.stopped = true;
    for (const l of [...this.links]) {
      this.event(l, notification ? { type: "ManualStop", notification } : { type: "ManualStop" });
      this.dropLink(l);
    }
  }

  /** An incoming connection from this peer's address. */
  accept(conn: ConnId): void {
    if (this.stopped) {
      this.close(conn, "destroy");
      return;
    }
    // A link with an open connection or a connect in flight keeps it; the incoming connection
    // races on a second FSM (cancelling our attempt would let both sides cancel each other's).
    const busy =
      this.links.find((l) => l.fsm.state === "Established") ??
      this.links.find((l) => RANK[l.fsm.state] >= 2 || l.attempt !== undefined);
    if (busy?.fsm.state === "Established") {
      // §6.8: a connection collides with an Established session: the new one is closed.
      const bytes = encodeNotification({
        code: ErrorCode.Cease,
        subcode: CeaseSubcode.ConnectionCollisionResolution,
      });
      this.io.emit({ kind: "send", peer: this.address, conn, bytes });
      this.close(conn, "end");
      return;
    }
    if (busy) {
      // Race: run a second FSM on the incoming connection until one OPEN decides (§6.8).
      if (this.links.length >= 2) {
        this.close(conn, "destroy");
        return;
      }
      const l = this.newLink();
      l.fsm = { ...l.fsm, state: "Active" };
      this.bind(l, conn);
      this.event(l, { type: "TcpConnectionConfirmed" });
      return;
    }
    const l = this.links[0] ?? this.newLink();
    // Waiting out IdleHold: take the connection now (the peer is clearly back).
    if (l.fsm.state === "Idle") this.event(l, { type: "IdleHoldTimer_Expires" });
    this.cancelAttempt(l);
    if (l.conn !== undefined) {
      this.close(l.conn, "destroy");
      l.conn = undefined;
    }
    this.bind(l, conn);
    this.event(l, { type: "TcpConnectionConfirmed" });
  }

  /** Our connect `conn` succeeded. */
  connected(conn: ConnId): void {
    const l = this.links.find((x) => x.attempt === conn);
    if (!l) {
      this.close(conn, "destroy");
      return;
    }
    l.attempt = undefined;
    if (l.dead || l.conn !== undefined || (l.fsm.state !== "Connect" && l.fsm.state !== "Active")) {
      this.close(conn, "destroy");
      return;
    }
    this.bind(l, conn);
    this.event(l, { type: "Tcp_CR_Acked" });
  }

  connectFailed(conn: ConnId, message: string): void {
    const l = this.links.find((x) => x.attempt === conn);
    if (!l) return;
    l.attempt = undefined;
    if (l.dead || l.conn !== undefined) return;
    this.io.log.debug({ peer: this.address, error: message }, "Connect failed");
    this.event(l, { type: "TcpConnectionFails", message });
  }

  /** Bytes read from `conn`: framed and handled message by message. */
  received(conn: ConnId, bytes: Uint8Array): void {
    const l = this.links.find((x) => x.conn === conn);
    if (!l || l.dead) return;
    let msgs: Uint8Array[];
    try {
      msgs = l.framer.push(bytes);
    } catch (e) {
      if (!(e instanceof NotificationError)) throw e;
      this.event(l, {
        type: "BGPHeaderErr",
        notification: { code: e.code, subcode: e.subcode, data: e.data },
      });
      return;
    }
    for (const m of msgs) {
      if (l.conn !== conn || l.dead) return;
      this.counters.messagesIn++;
      this.onMessage(l, m);
    }
  }

  /** `conn` closed under us. */
  closed(conn: ConnId, message: string): void {
    const l = this.links.find((x) => x.conn === conn);
    if (!l || l.dead) return;
    l.conn = undefined;
    this.event(l, { type: "TcpConnectionFails", message });
  }

  /** A timer of FSM link `link` fired. */
  timerExpired(link: number, t: TimerName): void {
    const l = this.links.find((x) => x.id === link);
    if (!l || l.dead || !l.timers.has(t)) return;
    if (t === "KeepaliveTimer" && this.keepaliveRestarted(l)) return;
    // While we hold reading paused (the FIB is behind), the peer's KEEPALIVEs wait unread in our
    // socket: its silence is ours, so the hold timer starts again instead of expiring (it runs
    // normally once reading resumes; BFD, where configured, still watches the link).
    if (
      t === "HoldTimer" &&
      this.readingHeld &&
      l.conn !== undefined &&
      l.conn === this.establishedConn
    ) {
      const hold = this.negotiated?.holdTime ?? 0;
      if (hold > 0) {
        this.counters.holdDeferrals++;
        this.io.emit({ kind: "startTimer", timer: this.timer(l, t), ms: hold * 1000 });
        return;
      }
    }
    l.timers.delete(t);
    this.event(l, { type: `${t}_Expires` } as FsmEvent);
  }

  /**
   * Sends bytes (UPDATEs: paced) on the Established connection. An UPDATE restarts the
   * KeepaliveTimer (RFC 4271 §8.2.2) lazily: its time is noted here, and the timer, when it
   * fires, starts again for what is left instead of sending a KEEPALIVE (keepaliveRestarted), so
   * a table of a million UPDATEs costs no timer restart per message.
   */
  send(bytes: Uint8Array): void {
    const l = this.links.find((x) => x.fsm.state === "Established");
    if (l?.conn === undefined) return;
    if (bytes[18] === MessageType.Update) l.updateSentAt = this.io.now();
    this.io.emit({ kind: "send", peer: this.address, conn: l.conn, bytes, paced: true });
    this.counters.messagesOut++;
  }

  /** Pauses/resumes reading from the Established connection (receive back-pressure). */
  pauseReading(paused: boolean): void {
    this.readingHeld = paused;
    const conn = this.establishedConn;
    if (conn !== undefined)
      this.io.emit({ kind: "pauseReading", peer: this.address, conn, paused });
  }

  /** Resets the session with a NOTIFICATION (e.g. RFC 7606 session reset, config change). */
  reset(code: number, subcode: number, data?: Uint8Array): void {
    const l = this.links.find((x) => x.fsm.state === "Established") ?? this.links[0];
    if (!l) return;
    this.event(l, {
      type: "UpdateMsgErr",
      notification: data ? { code, subcode, data } : { code, subcode },
    });
  }

  /** Drops the connection as if TCP failed (an outside signal such as BFD says so). */
  fail(message: string): void {
    const l = this.links.find((x) => x.fsm.state === "Established") ?? this.links[0];
    if (!l) return;
    if (l.conn !== undefined) {
      this.close(l.conn, "destroy");
      l.conn = undefined;
    }
    this.event(l, { type: "TcpConnectionFails", message });
  }

  /**
   * The path to the peer is gone (its link is down): every connection is destroyed without a
   * word (no NOTIFICATION can cross a dead link), the FSMs see a TCP failure (the session goes
   * down, Idle) and the session stays stopped until start().
   */
  drop(message: string): void {
    for (const l of [...this.links]) {
      if (l.conn !== undefined) {
        this.close(l.conn, "destroy");
        l.conn = undefined;
      }
      this.cancelAttempt(l);
      this.event(l, { type: "TcpConnectionFails", message });
    }
    this.stopped = true;
    for (const l of [...this.links]) this.dropLink(l);
  }

  // ---- internals -----------------------------------------------------------------------------

  private newLink(): Link {
    const l: Link = {
      id: ++this.linkSeq,
      fsm: initialState(this.config.settings),
      conn: undefined,
      attempt: undefined,
      framer: new MessageFramer(MaxMessageLength),
      timers: new Set(),
      keepaliveFrom: 0,
      updateSentAt: Number.NEGATIVE_INFINITY,
      remoteCaps: [],
      dead: false,
    };
    this.links.push(l);
    return l;
  }

  private close(conn: ConnId, how: "end" | "destroy"): void {
    this.io.emit({ kind: "close", peer: this.address, conn, how });
  }

  private cancelAttempt(l: Link): void {
    if (l.attempt === undefined) return;
    this.close(l.attempt, "destroy");
    l.attempt = undefined;
  }

  private dropLink(l: Link): void {
    l.dead = true;
    for (const t of l.timers) this.io.emit({ kind: "stopTimer", timer: this.timer(l, t) });
    l.timers.clear();
    this.cancelAttempt(l);
    if (l.conn !== undefined) this.close(l.conn, "end");
    l.conn = undefined;
    this.links = this.links.filter((x) => x !== l);
  }

  private timer(l: Link, name: TimerName) {
    return { peer: this.address, link: l.id, name };
  }

  /**
   * The KeepaliveTimer of l fired: when an UPDATE went out since it was (re)started, the timer
   * restarted then (§8.2.2), so it starts again for what is left of a fresh (jittered) interval
   * from that UPDATE, and no KEEPALIVE goes. True when it did.
   */
  private keepaliveRestarted(l: Link): boolean {
    if (!(l.updateSentAt > l.keepaliveFrom) || !l.fsm.negotiated) return false;
    const ka = keepaliveTimer(l.fsm.negotiated);
    if (!ka) return false;
    const left = l.updateSentAt + this.timerMs(ka) - this.io.now();
    if (left <= 0) return false;
    l.keepaliveFrom = l.updateSentAt;
    this.io.emit({ kind: "startTimer", timer: this.timer(l, "KeepaliveTimer"), ms: left });
    return true;
  }

  /** A timer's value: jittered to 0.75-1.0 of ms when marked (RFC 4271 §10), never below minMs. */
  private timerMs(a: StartTimer): number {
    const r = a.jitter ? this.io.random?.() : undefined;
    if (r === undefined) return a.ms;
    return Math.max(a.minMs ?? 0, Math.round(a.ms * (0.75 + 0.25 * r)));
  }

  private bind(l: Link, conn: ConnId): void {
    l.conn = conn;
    l.framer = new MessageFramer(MaxMessageLength);
  }

  private onMessage(l: Link, m: Uint8Array): void {
    const type = m[18];
    try {
      switch (type) {
        case MessageType.Open: {
          const open = decodeOpen(m);
          l.remoteCaps = open.capabilities;
          const info = openInfo(open, this.config.settings);
          if (this.resolveCollision(l, info.bgpId)) return;
          // RFC 8654 §4: once both sides said so, the peer may send up to 65535 octets (it can
          // send no UPDATE before our KEEPALIVE, which follows this OPEN).
          if (info.options?.extendedMessage) l.framer.setMaxLength(ExtendedMaxMessageLength);
          this.event(l, { type: "BGPOpen", open: info });
          return;
        }
        case MessageType.Keepalive:
          this.event(l, { type: "KeepAliveMsg" });
          return;
        case MessageType.Notification: {
          const n = decodeNotification(m);
          this.io.log.warn(
            {
              peer: this.address,
              code: n.code,
              subcode: n.subcode,
              message: n.shutdownMessage ?? undefined,
            },
            "NOTIFICATION received",
          );
          this.event(l, { type: "NotifMsg", code: n.code, subcode: n.subcode });
          return;
        }
        case MessageType.Update:
          this.counters.updatesIn++;
          this.event(l, { type: "UpdateMsg" });
          if (l.fsm.state === "Established" && !l.dead) this.cb.onUpdate(this, m);
          return;
        case MessageType.RouteRefresh: {
          const rr = decodeRouteRefresh(m);
          this.event(l, { type: "RouteRefreshMsg" });
          if (l.fsm.state === "Established" && !l.dead) this.cb.onRouteRefresh(this, rr);
          return;
        }
      }
    } catch (e) {
      if (!(e instanceof NotificationError)) throw e;
      const n = { code: e.code, subcode: e.subcode, data: e.data };
      this.io.log.warn({ peer: this.address, error: e.message }, "Message error");
      if (type === MessageType.Open) this.event(l, { type: "BGPOpenMsgErr", notification: n });
      else if (type === MessageType.Update)
        this.event(l, { type: "UpdateMsgErr", notification: n });
      else this.event(l, { type: "BGPHeaderErr", notification: n });
    }
  }

  /**
   * RFC 4271 §6.8: an OPEN arrived on l while another connection is in OpenConfirm (or
   * Established): close the one the rule picks. Returns true when l itself was closed.
   */
  private resolveCollision(l: Link, remoteId: number): boolean {
    const other = this.links.find(
      (x) => x !== l && (x.fsm.state === "OpenConfirm" || x.fsm.state === "Established"),
    );
    if (!other) return false;
    const loserDir =
      other.fsm.state === "Established"
        ? direction(l.conn)
        : collisionLoser(this.config.settings.routerId, remoteId);
    const loser = direction(l.conn) === loserDir ? l : other;
    this.io.log.info(
      { peer: this.address, closing: direction(loser.conn) },
      "Connection collision resolved",
    );
    this.event(loser, { type: "OpenCollisionDump" });
    return loser === l;
  }

  private event(l: Link, ev: FsmEvent): void {
    if (l.dead) return;
    const before = l.fsm.state;
    const r = step(l.fsm, ev);
    l.fsm = r.state;
    if (before !== r.state.state) {
      this.io.log.debug(
        { peer: this.address, from: before, to: r.state.state, event: ev.type },
        "FSM transition",
      );
    }
    for (const a of r.actions) this.apply(l, a);
    // A losing or failed second connection goes away instead of restarting on its own.
    if (l.fsm.state === "Idle" && this.links.length > 1 && this.links.includes(l)) this.dropLink(l);
  }

  private apply(l: Link, a: FsmAction): void {
    switch (a.type) {
      case "connect":
        this.connect(l);
        return;
      case "disconnect":
        this.cancelAttempt(l);
        if (l.conn !== undefined) {
          const c = l.conn;
          l.conn = undefined;
          this.close(c, "end");
        }
        return;
      case "sendOpen": {
        const s = this.config.settings;
        this.write(
          l,
          encodeOpen({
            version: 4,
            myAs: myAsField(s.localAs),
            holdTime: s.holdTime,
            bgpIdentifier: s.routerId,
            capabilities: localCapabilities(s),
          }),
        );
        return;
      }
      case "sendKeepalive":
        this.write(l, encodeKeepalive());
        return;
      case "sendNotification":
        this.io.log.warn(
          { peer: this.address, code: a.notification.code, subcode: a.notification.subcode },
          "NOTIFICATION sent",
        );
        this.write(l, encodeNotification(a.notification));
        return;
      case "startTimer": {
        l.timers.add(a.timer);
        if (a.timer === "KeepaliveTimer") l.keepaliveFrom = this.io.now();
        this.io.emit({ kind: "startTimer", timer: this.timer(l, a.timer), ms: this.timerMs(a) });
        return;
      }
      case "stopTimer":
        if (!l.timers.delete(a.timer)) return;
        this.io.emit({ kind: "stopTimer", timer: this.timer(l, a.timer) });
        return;
      case "established": {
        // Close any other connection still racing (its OPEN never came here). With Cease/7 when
        // it is open (§6.8): the peer may just have picked that one and closed this one, and the
        // NOTIFICATION tells it a collision did it, which its IdleHold does not count as an error.
        for (const o of [...this.links]) {
          if (o === l) continue;
          if (o.conn !== undefined && (o.fsm.state === "OpenSent" || o.fsm.state === "OpenConfirm"))
            this.event(o, { type: "OpenCollisionDump" });
          if (this.links.includes(o)) this.dropLink(o);
        }
        this.negotiated = a.negotiated;
        this.peerCapabilities = l.remoteCaps;
        this.options = a.negotiated.options;
        this.establishedAt = this.io.now();
        this.counters.establishedTransitions++;
        this.io.log.info(
          { peer: this.address, holdTime: a.negotiated.holdTime, families: a.negotiated.families },
          "Session Established",
        );
        this.cb.onEstablished(this);
        return;
      }
      case "sessionDown":
        // One of two racing connections failed; the other carries on.
        if (this.links.length > 1 && !a.wasEstablished) return;
        this.lastDown = a.reason;
        if (a.wasEstablished) {
          this.negotiated = undefined;
          this.options = undefined;
          this.establishedAt = undefined;
        }
        this.io.log.info(
          { peer: this.address, reason: a.reason, wasEstablished: a.wasEstablished },
          "Session down",
        );
        this.cb.onDown(this, a.reason, a.wasEstablished);
        return;
      case "processUpdate":
      case "processRouteRefresh":
        // Delivered by onMessage after the FSM accepted the message.
        return;
    }
  }

  private write(l: Link, bytes: Uint8Array): void {
    if (l.conn === undefined) return;
    this.io.emit({ kind: "send", peer: this.address, conn: l.conn, bytes });
    this.counters.messagesOut++;
  }

  private connect(l: Link): void {
    this.cancelAttempt(l);
    const c = this.config;
    const conn = this.io.newConn();
    l.attempt = conn;
    this.io.emit({
      kind: "connect",
      peer: this.address,
      conn,
      address: c.address,
      port: c.port,
      ...(c.sourceAddress ? { localAddress: c.sourceAddress } : {}),
      timeoutMs: Math.max(1000, c.settings.connectRetryTime * 1000),
    });
  }
}

function direction(conn: ConnId | undefined): "outgoing" | "incoming" | undefined {
  if (conn === undefined) return undefined;
  return conn > 0 ? "outgoing" : "incoming";
}
