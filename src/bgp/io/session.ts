// One configured peer's sessions: runs the pure FSM over real connections (framing, OPEN,
// KEEPALIVE, NOTIFICATION, timers on an injected clock) and resolves connection collisions
// (RFC 4271 §6.8) with a second FSM while two connections race. Not: routes (the speaker
// receives UPDATEs and ROUTE-REFRESHes through callbacks), sockets' setup (transport.ts).
import { collisionLoser, initialState, step } from "../fsm/fsm.js";
import {
  CeaseSubcode,
  type DownReason,
  ErrorCode,
  type Family,
  type FsmAction,
  type FsmEvent,
  type FsmState,
  type Negotiated,
  type OpenInfo,
  type PeerSettings,
  type SessionState,
  type TimerName,
} from "../fsm/types.js";
import { MaxMessageLength, MessageType } from "../wire/constants.js";
import { MessageFramer } from "../wire/framer.js";
import {
  decodeNotification,
  decodeRouteRefresh,
  encodeKeepalive,
  encodeNotification,
} from "../wire/message.js";
import { decodeOpen, encodeOpen, myAsField, negotiateSessionOptions } from "../wire/open.js";
import {
  type Capability,
  familyKey,
  NotificationError,
  type RouteRefreshMessage,
  type SessionOptions,
} from "../wire/types.js";
import { type Clock, SessionTimers } from "./clock.js";
import {
  type ConnectAttempt,
  type Connection,
  type ConnectOptions,
  connect as tcpConnect,
} from "./transport.js";

export interface Log {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLog: Log = { debug() {}, info() {}, warn() {}, error() {} };

export interface SessionConfig {
  address: string;
  port: number;
  sourceAddress?: string;
  settings: PeerSettings;
}

export interface SessionCallbacks {
  onEstablished(s: PeerSession): void;
  /** A framed UPDATE on the Established connection; consume it before returning. */
  onUpdate(s: PeerSession, msg: Uint8Array): void;
  onRouteRefresh(s: PeerSession, rr: RouteRefreshMessage): void;
  onDown(s: PeerSession, reason: DownReason, wasEstablished: boolean): void;
  /** The Established connection can take more bytes again. */
  onDrain(s: PeerSession): void;
}

export type Connector = (
  opts: ConnectOptions,
  ok: (c: Connection) => void,
  fail: (e: string) => void,
) => ConnectAttempt;

const FAMILY_AFI: Record<Family, [number, number]> = {
  "ipv4-unicast": [1, 1],
  "ipv6-unicast": [2, 1],
};

const RANK: Record<SessionState, number> = {
  Idle: 0,
  Connect: 1,
  Active: 1,
  OpenSent: 2,
  OpenConfirm: 3,
  Established: 4,
};

/** Our capabilities for a peer (RFC 5492): MP per family, route refresh, 4-octet AS. */
export function localCapabilities(settings: PeerSettings): Capability[] {
  const caps: Capability[] = settings.families.map((f) => {
    const [afi, safi] = FAMILY_AFI[f];
    return { kind: "Multiprotocol", afi, safi } as Capability;
  });
  caps.push(
    { kind: "RouteRefresh" },
    { kind: "EnhancedRouteRefresh" },
    { kind: "FourOctetAs", asn: settings.localAs },
  );
  // RFC 4724 §3: the capability without <AFI,SAFI> says we send End-of-RIB after the initial
  // update (and peers such as BIRD only send theirs to speakers that say so). We do not ask
  // peers to keep our routes when the session drops.
  caps.push({
    kind: "GracefulRestart",
    restartState: false,
    notification: false,
    restartTime: 120,
    families: [],
  });
  return caps;
}

/** The FSM's view of a decoded OPEN. */
export function openInfo(open: ReturnType<typeof decodeOpen>): OpenInfo {
  const families: Family[] = [];
  let sawMp = false;
  let as4: number | undefined;
  const has = (k: Capability["kind"]) => open.capabilities.some((c) => c.kind === k);
  for (const c of open.capabilities) {
    if (c.kind === "Multiprotocol") {
      sawMp = true;
      const k = familyKey(c.afi, c.safi);
      if (k === 0x0101 && !families.includes("ipv4-unicast")) families.push("ipv4-unicast");
      if (k === 0x0201 && !families.includes("ipv6-unicast")) families.push("ipv6-unicast");
    } else if (c.kind === "FourOctetAs") as4 = c.asn;
  }
  const info: OpenInfo = {
    version: open.version,
    myAs: open.myAs,
    holdTime: open.holdTime,
    bgpId: open.bgpIdentifier >>> 0,
    routeRefresh: has("RouteRefresh"),
    enhancedRouteRefresh: has("EnhancedRouteRefresh"),
    extendedMessage: has("ExtendedMessage"),
    gracefulRestart: has("GracefulRestart"),
  };
  if (sawMp) info.families = families;
  if (as4 !== undefined) info.as4 = as4;
  return info;
}

/** One TCP connection and the FSM that runs on it. */
class Link {
  fsm: FsmState;
  conn: Connection | undefined;
  attempt: ConnectAttempt | undefined;
  framer = new MessageFramer(MaxMessageLength);
  timers: SessionTimers<TimerName>;
  remoteCaps: Capability[] = [];
  dead = false;

  constructor(settings: PeerSettings, clock: Clock, onTimer: (l: Link, t: TimerName) => void) {
    this.fsm = initialState(settings);
    this.timers = new SessionTimers<TimerName>(clock, (t) => onTimer(this, t));
  }
}

/** The sessions of one configured peer. */
export class PeerSession {
  private links: Link[] = [];
  private stopped = true;
  /** Session parameters while Established. */
  negotiated: Negotiated | undefined;
  options: SessionOptions | undefined;
  establishedAt: number | undefined;
  lastDown: DownReason | undefined;
  /** The peer's capabilities from its last accepted OPEN (kept after a drop, for GR). */
  peerCapabilities: Capability[] | undefined;
  /** Counters for status. */
  readonly counters = {
    messagesIn: 0,
    messagesOut: 0,
    updatesIn: 0,
    updatesOut: 0,
    establishedTransitions: 0,
  };

  constructor(
    public config: SessionConfig,
    private readonly clock: Clock,
    private readonly cb: SessionCallbacks,
    private readonly log: Log = silentLog,
    private readonly connector: Connector = tcpConnect,
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

  private get main(): Link | undefined {
    return this.links.find((l) => l.fsm.state === "Established") ?? this.links[0];
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    const l = this.newLink();
    this.event(l, { type: "ManualStart" });
  }

  /** ManualStop: Cease 6/2 to an open session, close everything, stay down. */
  stop(): void {
    this.stopped = true;
    for (const l of [...this.links]) {
      this.event(l, { type: "ManualStop" });
      this.dropLink(l);
    }
  }

  /** An incoming connection from this peer's address. */
  accept(conn: Connection): void {
    if (this.stopped) {
      conn.destroy();
      return;
    }
    // A link with an open connection or a connect in flight keeps it; the incoming connection
    // races on a second FSM (cancelling our attempt would let both sides cancel each other's).
    const busy =
      this.links.find((l) => l.fsm.state === "Established") ??
      this.links.find((l) => RANK[l.fsm.state] >= 2 || l.attempt !== undefined);
    if (busy?.fsm.state === "Established") {
      // §6.8: a connection collides with an Established session: the new one is closed.
      conn.write(
        encodeNotification({
          code: ErrorCode.Cease,
          subcode: CeaseSubcode.ConnectionCollisionResolution,
        }),
      );
      conn.end();
      return;
    }
    if (busy) {
      // Race: run a second FSM on the incoming connection until one OPEN decides (§6.8).
      if (this.links.length >= 2) {
        conn.destroy();
        return;
      }
      const l = this.newLink();
      l.fsm = { ...l.fsm, state: "Active" };
      this.bind(l, conn);
      this.event(l, { type: "TcpConnectionConfirmed" });
      return;
    }
    const l = this.links[0] ?? this.newLink();
    if (l.fsm.state === "Idle") {
      // Waiting out IdleHold: take the connection now (the peer is clearly back).
      this.event(l, { type: "IdleHoldTimer_Expires" });
    }
    l.attempt?.cancel();
    l.attempt = undefined;
    if (l.conn) {
      l.conn.destroy();
      l.conn = undefined;
    }
    this.bind(l, conn);
    this.event(l, { type: "TcpConnectionConfirmed" });
  }

  /** Sends bytes on the Established connection. */
  send(bytes: Uint8Array): void {
    const l = this.links.find((x) => x.fsm.state === "Established");
    if (!l?.conn) return;
    l.conn.write(bytes);
    this.counters.messagesOut++;
  }

  /** True when the Established connection's send buffer is over its high-water mark. */
  get congested(): boolean {
    const l = this.links.find((x) => x.fsm.state === "Established");
    return l?.conn?.congested ?? false;
  }

  /** Bytes queued for the peer and not yet taken by the kernel. */
  get sendQueueBytes(): number {
    return this.links.find((x) => x.fsm.state === "Established")?.conn?.buffered ?? 0;
  }

  /** Pauses/resumes reading from the Established connection (receive back-pressure). */
  pauseReading(paused: boolean): void {
    const c = this.links.find((x) => x.fsm.state === "Established")?.conn;
    if (paused) c?.pause();
    else c?.resume();
  }

  /** Resets the session with a NOTIFICATION (e.g. RFC 7606 session reset, config change). */
  reset(code: number, subcode: number, data?: Uint8Array): void {
    const l = this.links.find((x) => x.fsm.state === "Established") ?? this.main;
    if (!l) return;
    this.event(l, {
      type: "UpdateMsgErr",
      notification: data ? { code, subcode, data } : { code, subcode },
    });
  }

  // ---- internals -----------------------------------------------------------------------------

  private newLink(): Link {
    const l = new Link(this.config.settings, this.clock, (link, t) => this.onTimer(link, t));
    this.links.push(l);
    return l;
  }

  private dropLink(l: Link): void {
    l.dead = true;
    l.timers.stopAll();
    l.attempt?.cancel();
    l.attempt = undefined;
    if (l.conn && !l.conn.isClosed) l.conn.end();
    l.conn = undefined;
    this.links = this.links.filter((x) => x !== l);
  }

  private onTimer(l: Link, t: TimerName): void {
    if (l.dead) return;
    this.event(l, { type: `${t}_Expires` } as FsmEvent);
  }

  private bind(l: Link, conn: Connection): void {
    l.conn = conn;
    l.framer = new MessageFramer(MaxMessageLength);
    conn.attach({
      onData: (chunk) => this.onData(l, conn, chunk),
      onClose: (err) => {
        if (l.conn !== conn || l.dead) return;
        l.conn = undefined;
        this.event(l, { type: "TcpConnectionFails", message: err ?? "Connection closed by peer" });
      },
      onDrain: () => {
        if (l.conn === conn && l.fsm.state === "Established") this.cb.onDrain(this);
      },
    });
  }

  private onData(l: Link, conn: Connection, chunk: Uint8Array): void {
    let msgs: Uint8Array[];
    try {
      msgs = l.framer.push(chunk);
    } catch (e) {
      if (e instanceof NotificationError) {
        this.event(l, {
          type: "BGPHeaderErr",
          notification: { code: e.code, subcode: e.subcode, data: e.data },
        });
        return;
      }
      throw e;
    }
    for (const m of msgs) {
      if (l.conn !== conn || l.dead) return;
      this.counters.messagesIn++;
      this.onMessage(l, m);
    }
  }

  private onMessage(l: Link, m: Uint8Array): void {
    const type = m[18];
    try {
      switch (type) {
        case MessageType.Open: {
          const open = decodeOpen(m);
          l.remoteCaps = open.capabilities;
          const info = openInfo(open);
          if (this.resolveCollision(l, info.bgpId)) return;
          this.event(l, { type: "BGPOpen", open: info });
          return;
        }
        case MessageType.Keepalive:
          this.event(l, { type: "KeepAliveMsg" });
          return;
        case MessageType.Notification: {
          const n = decodeNotification(m);
          this.log.warn(
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
      this.log.warn({ peer: this.address, error: e.message }, "Message error");
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
        ? l.conn?.direction
        : collisionLoser(this.config.settings.routerId, remoteId);
    const loser = l.conn?.direction === loserDir ? l : other;
    this.log.info(
      { peer: this.address, closing: loser.conn?.direction },
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
      this.log.debug(
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
        l.attempt?.cancel();
        l.attempt = undefined;
        if (l.conn) {
          const c = l.conn;
          l.conn = undefined;
          c.end();
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
        this.log.warn(
          { peer: this.address, code: a.notification.code, subcode: a.notification.subcode },
          "NOTIFICATION sent",
        );
        this.write(l, encodeNotification(a.notification));
        return;
      case "startTimer":
        l.timers.start(a.timer, a.ms);
        return;
      case "stopTimer":
        l.timers.stop(a.timer);
        return;
      case "established": {
        // Close any other connection still racing (its OPEN never came).
        for (const o of this.links) if (o !== l) this.dropLink(o);
        const external = this.config.settings.peerAs !== this.config.settings.localAs;
        this.negotiated = a.negotiated;
        this.peerCapabilities = l.remoteCaps;
        this.options = negotiateSessionOptions(
          localCapabilities(this.config.settings),
          l.remoteCaps,
          external,
        );
        this.establishedAt = this.clock.now();
        this.counters.establishedTransitions++;
        this.log.info(
          { peer: this.address, holdTime: a.negotiated.holdTime, families: a.negotiated.families },
          "Session Established",
        );
        this.cb.onEstablished(this);
        return;
      }
      case "sessionDown":
        if (this.links.length > 1 && !a.wasEstablished) {
          // One of two racing connections failed; the other carries on.
          return;
        }
        this.lastDown = a.reason;
        if (a.wasEstablished) {
          this.negotiated = undefined;
          this.options = undefined;
          this.establishedAt = undefined;
        }
        this.log.info(
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
    if (!l.conn) return;
    l.conn.write(bytes);
    this.counters.messagesOut++;
  }

  private connect(l: Link): void {
    l.attempt?.cancel();
    const c = this.config;
    const opts: ConnectOptions = {
      address: c.address,
      port: c.port,
      timeoutMs: Math.max(1000, c.settings.connectRetryTime * 1000),
    };
    if (c.sourceAddress) opts.localAddress = c.sourceAddress;
    l.attempt = this.connector(
      opts,
      (conn) => {
        l.attempt = undefined;
        if (l.dead || l.conn || (l.fsm.state !== "Connect" && l.fsm.state !== "Active")) {
          conn.destroy();
          return;
        }
        this.bind(l, conn);
        this.event(l, { type: "Tcp_CR_Acked" });
      },
      (err) => {
        l.attempt = undefined;
        if (l.dead || l.conn) return;
        this.log.debug({ peer: this.address, error: err }, "Connect failed");
        this.event(l, { type: "TcpConnectionFails", message: err });
      },
    );
  }
}
