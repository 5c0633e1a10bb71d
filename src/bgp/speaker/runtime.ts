// The speaker's runtime: the thin, effectful side of the speaker. It owns the TCP listener and
// its TCP-MD5 keys, the peers' connections and connect attempts, the clock's timers, the FIB
// pump (and moving our routes when the configured metric changes; the host routes to peers
// with reachableBy, peer_routes.ts) and the scheduling of flushes; it feeds what happens there to the core as events and
// carries out the core's actions, one event at a time. `ocelot bgpd` and `ocelot node run` both
// run a Speaker. Not: any BGP decision (core.ts), status shapes (views.ts).
import { type Fib, type Route, RT_TABLE_MAIN } from "../../fib/types.js";
import { type Log, silentLog } from "../../lib/log.js";
import { type BgpdConfig, impact, listenerTtl, type PeerConfig, peerTtl } from "../config.js";
import type { Clock, TimerHandle } from "../io/clock.js";
import {
  type ConnectAttempt,
  type Connection,
  type ConnectOptions,
  type Listener,
  type ListenOptions,
  listen,
  readTcpMd5Counters,
  connect as tcpConnect,
} from "../io/transport.js";
import type { TtlSetter } from "../io/ttl.js";
import type { PeerCounts, Rib } from "../rib/rib.js";
import type { RouteExplanation, RoutesSnapshot, StatusSnapshot } from "../status.js";
import { type FamilyKey, Ipv4Unicast, Ipv6Unicast } from "../wire/types.js";
import { localAddressesToward } from "./addr.js";
import type { AttrBridge } from "./attrs.js";
import { FIB_BATCH, SpeakerCore } from "./core.js";
import { type ConnId, type SpeakerAction, type SpeakerEvent, timerId } from "./events.js";
import { encodeReceived } from "./export.js";
import { FibPump } from "./fib_pump.js";
import { peerRoutes, peerRoutesDiff } from "./peer_routes.js";
import { routesView, routeView, statusView } from "./views.js";

export type Connector = (
  opts: ConnectOptions,
  ok: (c: Connection) => void,
  fail: (e: string) => void,
) => ConnectAttempt;

export interface SpeakerDeps<A> {
  clock: Clock;
  log?: Log;
  /** Null when `fib.enabled` is false. */
  fib: Fib | null;
  bridge: AttrBridge<A>;
  connector?: Connector;
  /**
   * Sets TTL options (eBGP TTL, GTSM's minimum TTL) on the listener, before each connect() and
   * at each accept; without it no TTL is set and GTSM is not checked.
   */
  onSocket?: TtlSetter;
  /** Each UPDATE received, as framed (header included), before decoding (MRT BGP4MP dumps). */
  onUpdateReceived?: (peer: PeerConfig, msg: Uint8Array, fourOctetAs: boolean) => void;
  /** Watches every connection's bytes and each peer's session (BMP). */
  tap?: SpeakerTap;
  /** Each FIB batch's time from hand-over to the kernel's acknowledgement (a histogram). */
  onFibBatch?: (seconds: number) => void;
  /**
   * Per FIB batch, the time from the oldest UPDATE received not yet in a batch to the kernel's
   * acknowledgement of that batch (UPDATE-received-to-kernel latency, its worst case per batch).
   */
  onUpdateToKernel?: (seconds: number) => void;
}

/** A peer's session as a tap may read it. */
export interface TapPeerView {
  /** The Established connection, if any. */
  establishedConn: ConnId | undefined;
  asn: number;
  /** The peer's BGP Identifier (dotted quad) of the Established session, else 0.0.0.0. */
  peerId: string;
  fourOctetAs: boolean;
  counts(): PeerCounts;
  /**
   * The Established session's Adj-RIB-In as UPDATEs (a snapshot taken at the call, encoded as
   * they are pulled; rejected paths included) and the session's families, for a BMP station
   * that connects after the session came up. Undefined while not Established.
   */
  adjRibIn?(): { families: FamilyKey[]; updates: Iterable<Uint8Array> } | undefined;
}

export interface TapHost {
  /** The configured peer's session, undefined when the peer is not configured (any more). */
  view(peer: string): TapPeerView | undefined;
}

/**
 * Sees what crosses the speaker's edge, synchronously: connections made, bytes sent (whole
 * messages) and read (any framing), closes, each UPDATE accepted for processing, and after
 * every event about a peer `settled(peer)` (its session may have changed). A tap only watches.
 */
export interface SpeakerTap {
  attach(host: TapHost): void;
  connected(
    peer: string,
    conn: ConnId,
    c: { localAddress: string; localPort: number; remotePort: number },
  ): void;
  sent(peer: string, conn: ConnId, bytes: Uint8Array): void;
  received(peer: string, conn: ConnId, bytes: Uint8Array): void;
  closed(peer: string, conn: ConnId, by: "local" | "remote"): void;
  updateReceived(peer: string, msg: Uint8Array): void;
  /** After an event about `peer`, or (no peer) one that may change any session. */
  settled(peer?: string): void;
}

interface Attempt {
  peer: string;
  handle: ConnectAttempt | undefined;
}

/**
 * RIB changes pending after a read that make the runtime yield reading for a drain: a quarter
 * of one (a 64 KiB read of /32s brings ~13k). Tried: a full drain while the FIB has batches in
 * flight (bigger FIB batches) kept 1-4 MiB more in flight and was no faster at load 11-13.
 * OCELOT_BGP_YIELD=0 never yields (the old behaviour, for A/B runs).
 */
const YIELD_PENDING = process.env.OCELOT_BGP_YIELD === "0" ? Infinity : FIB_BATCH / 4;

/**
 * OCELOT_TRACE=1: one stderr line per chunk read, flush, FIB batch handed over and acknowledged,
 * and reading paused/resumed, stamped with the wall clock (Unix ms, comparable with a peer's
 * log): where the last routes of a table wait (bench/bgp_inject.ts found them still in the
 * injector this way).
 */
const TR = process.env.OCELOT_TRACE
  ? (m: string) =>
      process.stderr.write(
        `TRACE ${process.pid} ${(performance.timeOrigin + performance.now()).toFixed(1)} ${m}\n`,
      )
  : undefined;

export class Speaker<A> {
  private readonly core: SpeakerCore<A>;
  private readonly log: Log;
  private listener: Listener | undefined;
  /** The address the listener is bound to (the config's, or 0.0.0.0 when IPv6 is missing). */
  private listenAddress = "";
  /** The GTSM TTLs set on the listener per traffic family (-1 and 0: the defaults). */
  private listenerTtl = { 4: { ttl: -1, minTtl: 0 }, 6: { ttl: -1, minTtl: 0 } };
  /** GTSM peers whose connections were closed at accept (logged once each). */
  private readonly gtsmWarned = new Set<string>();
  private readonly pump: FibPump | undefined;
  /** The host routes to peers with reachableBy now in the FIB, by route key. */
  private peerRoutes = new Map<string, Route>();
  private readonly startedAt: number;
  private readonly conns = new Map<ConnId, { peer: string; conn: Connection }>();
  private readonly attempts = new Map<ConnId, Attempt>();
  private readonly timers = new Map<string, TimerHandle>();
  /** Peers whose send queue went over the high-water mark (warned once until it drains). */
  private readonly slow = new Set<string>();
  private acceptSeq = 0;
  /** Connections closed at accept because they came from no configured peer's address. */
  private refused = 0;
  /** Addresses already logged as refused (bounded): a flood logs each source once. */
  private readonly refusedLogged = new Set<string>();
  private readonly queue: SpeakerEvent[] = [];
  private running = false;
  private flushScheduled = false;
  private stopped = false;
  private readonly idleWaiters: (() => void)[] = [];
  /** When the oldest UPDATE not yet handed to the FIB in a batch was received. */
  private updateMark: number | undefined;
  /** Connections paused for one turn of the event loop so that a drain runs (see YIELD_PENDING). */
  private readonly yielded = new Set<Connection>();

  constructor(
    config: BgpdConfig,
    private readonly deps: SpeakerDeps<A>,
  ) {
    this.log = deps.log ?? silentLog;
    this.startedAt = deps.clock.now();
    this.pump = deps.fib ? new FibPump(deps.fib, this.log) : undefined;
    const tap = deps.tap;
    const onUpdate = deps.onUpdateReceived;
    const timed = deps.onUpdateToKernel !== undefined;
    const onUpdateReceived =
      tap || timed
        ? (peer: PeerConfig, msg: Uint8Array, as4: boolean) => {
            if (timed) this.updateMark ??= performance.now();
            tap?.updateReceived(peer.address, msg);
            onUpdate?.(peer, msg, as4);
          }
        : onUpdate;
    this.core = new SpeakerCore(config, {
      bridge: deps.bridge,
      now: () => deps.clock.now(),
      random: Math.random,
      fib: deps.fib !== null,
      localAddressesToward,
      log: this.log,
      ...(onUpdateReceived ? { onUpdateReceived } : {}),
    });
    tap?.attach({ view: (peer) => this.tapView(peer) });
  }

  private tapView(peer: string): TapPeerView | undefined {
    const e = this.core.peers.get(peer);
    if (!e) return undefined;
    const s = e.session;
    const n = s.negotiated;
    const conn = s.establishedConn;
    const id = conn !== undefined && n ? n.peerId >>> 0 : 0;
    return {
      establishedConn: conn,
      asn: e.cfg.asn,
      peerId: [id >>> 24, (id >>> 16) & 255, (id >>> 8) & 255, id & 255].join("."),
      fourOctetAs: s.options?.fourOctetAs ?? true,
      counts: () => this.core.rib.peerCounts(e.ribId),
      adjRibIn: () => {
        const opts = s.options;
        if (s.establishedConn === undefined || !s.negotiated || !opts) return undefined;
        return {
          families: s.negotiated.families.map((f) =>
            f === "ipv4-unicast" ? Ipv4Unicast : Ipv6Unicast,
          ),
          updates: encodeReceived(this.deps.bridge, this.core.rib.adjRibIn(e.ribId), opts),
        };
      },
    };
  }

  get config(): BgpdConfig {
    return this.core.config;
  }

  get rib(): Rib<A> {
    return this.core.rib;
  }

  get listenPort(): number | undefined {
    return this.listener?.port;
  }

  /** Opens the listener, originates, and starts every peer's session. */
  async start(): Promise<void> {
    // Peers behind a gateway need their host route before the first connection.
    this.syncPeerRoutes(this.config);
    await this.openListener(this.config);
    // A FIB that found our routes in the kernel means a restart (RFC 4724 §4.1).
    const found = (this.deps.fib as (Fib & { foundAtStart?: number }) | null)?.foundAtStart ?? 0;
    this.run({ kind: "start", restarting: found > 0 });
  }

  /** Stops sessions (Cease), removes our routes from the FIB, closes the listener. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.run({ kind: "stop" });
    this.stopped = true;
    for (const t of this.timers.values()) t.cancel();
    this.timers.clear();
    await this.listener?.close();
    this.listener = undefined;
    // Let the FIB finish what it was handed (bounded wait), then remove anything left over.
    for (let i = 0; i < 600 && (this.pump?.inFlight ?? 0) > 0; i++)
      await new Promise((r) => setTimeout(r, 50));
    if (this.deps.fib) {
      const left = this.deps.fib.desired();
      if (left.length > 0) await this.deps.fib.remove(left);
    }
  }

  /** Applies a new configuration by diff (SIGHUP): only sessions that must reset are reset. */
  async reconfigure(next: BgpdConfig): Promise<void> {
    const old = this.config;
    if (impact(old, next).relisten) {
      await this.listener?.close();
      this.listener = undefined;
      try {
        await this.openListener(next);
      } catch (e) {
        // Nothing of the new config is applied: the old listener comes back, the sessions and
        // the core keep the old config, and the caller hears why.
        await this.openListener(old).catch((err: Error) =>
          this.log.error({ error: err.message }, "The old listener could not be opened again"),
        );
        throw e;
      }
    } else {
      this.updateListenerKeys(old, next);
      this.updateListenerTtl(next);
    }
    this.moveFibMetric(old, next);
    this.syncPeerRoutes(next);
    this.run({ kind: "reconfigure", config: next });
  }

  /** Sets and removes the host routes to peers with reachableBy (peer_routes.ts). */
  private syncPeerRoutes(cfg: BgpdConfig): void {
    const fib = this.deps.fib;
    if (!fib) return;
    const want = peerRoutes(cfg);
    const { set, remove } = peerRoutesDiff(this.peerRoutes, want);
    this.peerRoutes = want;
    const report = (err: Error) =>
      this.log.error({ error: err.message }, "Host route to a peer (reachableBy) not applied");
    if (remove.length > 0) fib.remove(remove).catch(report);
    if (set.length > 0) {
      this.log.info(
        { routes: set.map((r) => `${r.dst} via ${r.nexthops[0]?.gateway}`) },
        "Host routes to peers reached through a gateway (reachableBy)",
      );
      fib.set(set).catch(report);
    }
  }

  /**
   * A new route metric (fib.metricV4/V6): our routes in the kernel move to it, each set at the
   * new metric before its old one is removed (no gap). Done in the same tick as the core takes
   * the new config, so no batch of the old metric can follow (the FIB's desired state is
   * updated synchronously by set/remove).
   */
  private moveFibMetric(old: BgpdConfig, next: BgpdConfig): void {
    const fib = this.deps.fib;
    if (!fib || old.fib.table !== next.fib.table || old.fib.protocol !== next.fib.protocol) return;
    const norm = (fam: 4 | 6, m: number) => (fam === 6 && m === 0 ? 1024 : m);
    const from = { 4: old.fib.metricV4 ?? 0, 6: old.fib.metricV6 ?? 0 } as const;
    const to = { 4: next.fib.metricV4 ?? 0, 6: next.fib.metricV6 ?? 0 } as const;
    const moved = ([4, 6] as const).filter((f) => norm(f, from[f]) !== norm(f, to[f]));
    if (moved.length === 0) return;
    const t = next.fib.table;
    const table = t === "main" ? RT_TABLE_MAIN : t;
    // The host routes to peers (metric 0) stay where they are.
    const statics = new Set([...this.peerRoutes.values()].map((r) => `${r.family}|${r.dst}`));
    const routes = fib
      .desired()
      .filter(
        (r) =>
          moved.includes(r.family) &&
          r.protocol === next.fib.protocol &&
          (r.table ?? RT_TABLE_MAIN) === table &&
          !statics.has(`${r.family}|${r.dst}`) &&
          norm(r.family, r.metric ?? 0) === norm(r.family, from[r.family]),
      );
    if (routes.length === 0) return;
    this.log.info(
      { routes: routes.length, metricV4: to[4], metricV6: to[6] },
      "Route metric changed: moving our kernel routes",
    );
    const report = (err: Error) => this.log.error({ error: err.message }, "FIB metric move");
    fib.set(routes.map((r) => ({ ...r, metric: to[r.family] }))).catch(report);
    fib.remove(routes).catch(report);
  }

  /**
   * Hands the core an event from outside the speaker, e.g. `{kind: "peerDown", peer, reason}`
   * when a BFD session to the peer goes down.
   */
  signal(ev: SpeakerEvent): void {
    this.run(ev);
  }

  /** Resolves when no work is queued and the FIB acknowledged everything handed to it. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  status(): StatusSnapshot {
    const fib = this.pump;
    const view = statusView(this.core, {
      now: this.deps.clock.now(),
      startedAt: this.startedAt,
      listen: this.listener ? { address: this.listenAddress, port: this.listener.port } : null,
      sendQueueBytes: (peer) => {
        const c = this.core.peers.get(peer)?.session.establishedConn;
        return c === undefined ? 0 : (this.conns.get(c)?.conn.buffered ?? 0);
      },
      fib: {
        enabled: fib !== undefined,
        installed: fib?.installed ?? 0,
        pending: fib?.inFlight ?? 0,
        errors: fib?.errors ?? 0,
        ...(fib?.sender ? { sender: fib.sender } : {}),
      },
      tcpMd5: readTcpMd5Counters,
      memory: process.memoryUsage(),
    });
    return { ...view, connectionsRefused: this.refused };
  }

  routes(): RoutesSnapshot {
    return routesView(this.core.rib);
  }

  /** Every path of one prefix and why the best won (throws on a malformed prefix). */
  route(prefix: string): RouteExplanation | null {
    const r = routeView(this.core.rib, prefix);
    // The kernel's last refusal of it, as the FIB kept it (only for a route it failed).
    if (!r || r.nexthops.length === 0) return r;
    const fibError = this.deps.fib?.routeError?.(r.prefix);
    return fibError ? { ...r, fibError } : r;
  }

  // ---- events in -----------------------------------------------------------------------------

  /** One event at a time: an event raised while actions are carried out waits its turn. */
  private run(ev: SpeakerEvent): void {
    this.queue.push(ev);
    if (this.running) return;
    this.running = true;
    try {
      for (let i = 0; i < this.queue.length; i++) {
        const ev = this.queue[i] as SpeakerEvent;
        for (const a of this.core.handle(ev)) this.carry(a);
        if (this.deps.tap) this.settleTap(ev);
      }
    } finally {
      this.queue.length = 0;
      this.running = false;
    }
    this.checkIdle();
  }

  /** Tells the tap which peers an event may have changed. */
  private settleTap(ev: SpeakerEvent): void {
    const tap = this.deps.tap as SpeakerTap;
    if ("peer" in ev) tap.settled(ev.peer);
    else if ("timer" in ev) tap.settled(ev.timer.peer);
    else if (ev.kind !== "flush" && ev.kind !== "fibDone") tap.settled();
  }

  private isIdle(): boolean {
    return (
      this.queue.length === 0 &&
      this.core.idle &&
      (this.pump?.inFlight ?? 0) === 0 &&
      !this.flushScheduled
    );
  }

  private checkIdle(): void {
    if (!this.isIdle()) return;
    // UPDATEs that changed nothing the FIB holds (rejected, or no new best) end here.
    this.updateMark = undefined;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  // ---- actions out ---------------------------------------------------------------------------

  private carry(a: SpeakerAction): void {
    switch (a.kind) {
      case "connect":
        this.connect(a);
        return;
      case "send": {
        const c = this.conns.get(a.conn)?.conn;
        if (!c) return;
        this.deps.tap?.sent(a.peer, a.conn, a.bytes);
        c.write(a.bytes, a.paced === true);
        this.noteSlow(a.peer, c);
        return;
      }
      case "close": {
        const at = this.attempts.get(a.conn);
        if (at) {
          this.attempts.delete(a.conn);
          at.handle?.cancel();
          return;
        }
        const c = this.conns.get(a.conn)?.conn;
        this.conns.delete(a.conn);
        if (c) this.deps.tap?.closed(a.peer, a.conn, "local");
        if (a.how === "end") c?.end();
        else c?.destroy();
        return;
      }
      case "pauseReading": {
        TR?.(`pause ${a.paused}`);
        const c = this.conns.get(a.conn)?.conn;
        if (a.paused) c?.pause();
        else c?.resume();
        return;
      }
      case "startTimer": {
        const id = timerId(a.timer);
        this.timers.get(id)?.cancel();
        const timer = a.timer;
        this.timers.set(
          id,
          this.deps.clock.setTimer(a.ms, () => {
            this.timers.delete(id);
            this.run({ kind: "timerExpired", timer });
          }),
        );
        return;
      }
      case "stopTimer": {
        const id = timerId(a.timer);
        this.timers.get(id)?.cancel();
        this.timers.delete(id);
        return;
      }
      case "flushSoon":
        TR?.("flushSoon");
        if (this.flushScheduled || this.stopped) return;
        this.flushScheduled = true;
        // After pending I/O callbacks: reading and draining interleave.
        setImmediate(() => {
          this.flushScheduled = false;
          this.run({ kind: "flush" });
        });
        return;
      case "fib": {
        const t0 = performance.now();
        TR?.(`fib push ${a.batch.size}`);
        const mark = this.updateMark;
        this.updateMark = undefined;
        this.pump?.push(a.batch, a.protocol, a.table, a.metric).then(() => {
          const t1 = performance.now();
          TR?.(`fib done ${a.batch.size}`);
          this.deps.onFibBatch?.((t1 - t0) / 1000);
          if (mark !== undefined) this.deps.onUpdateToKernel?.((t1 - mark) / 1000);
          this.run({ kind: "fibDone" });
        });
        return;
      }
      case "fibEndGracefulHold": {
        const fib = this.deps.fib as (Fib & { endGracefulHold?: () => Promise<void> }) | null;
        if (!fib?.endGracefulHold) return;
        this.log.info(
          {},
          "All peers sent End-of-RIB: removing stale routes from before the restart",
        );
        fib
          .endGracefulHold()
          .catch((e: Error) => this.log.error({ error: e.message }, "Graceful hold end failed"));
        return;
      }
    }
  }

  /**
   * The configured peer a remote address is: itself, or for a link-local address (which the
   * socket reports without its zone) the unnumbered peer "fe80::1%eth0" with that address.
   */
  private peerKey(remote: string): string | undefined {
    if (this.core.peers.has(remote)) return remote;
    if (!remote.toLowerCase().startsWith("fe80:")) return undefined;
    const bare = remote.split("%")[0] as string;
    for (const k of this.core.peers.keys()) if (k.startsWith(`${bare}%`)) return k;
    return undefined;
  }

  private connect(a: Extract<SpeakerAction, { kind: "connect" }>): void {
    const cfg = this.core.peers.get(a.peer)?.cfg;
    const opts: ConnectOptions = { address: a.address, port: a.port, timeoutMs: a.timeoutMs };
    if (a.localAddress) opts.localAddress = a.localAddress;
    if (cfg?.password !== undefined) opts.md5Key = cfg.password;
    const set = this.deps.onSocket;
    if (set && cfg) {
      const ttl = peerTtl(cfg, cfg.asn !== this.config.asn);
      const family = a.address.includes(":") ? 6 : 4;
      if (ttl.ttl !== undefined || ttl.minTtl !== undefined)
        opts.beforeConnect = (fd) => set(fd, family, ttl);
    }
    const rec: Attempt = { peer: a.peer, handle: undefined };
    this.attempts.set(a.conn, rec);
    const connector = this.deps.connector ?? tcpConnect;
    rec.handle = connector(
      opts,
      (c) => {
        if (this.attempts.get(a.conn) !== rec) {
          c.destroy();
          return;
        }
        this.attempts.delete(a.conn);
        this.adopt(a.peer, a.conn, c);
        this.run({ kind: "connected", peer: a.peer, conn: a.conn });
      },
      (message) => {
        if (this.attempts.get(a.conn) !== rec) return;
        this.attempts.delete(a.conn);
        this.run({ kind: "connectFailed", peer: a.peer, conn: a.conn, message });
      },
    );
  }

  /** Registers a connection and turns its callbacks into events. */
  private adopt(peer: string, id: ConnId, c: Connection): void {
    const rec = { peer, conn: c };
    this.conns.set(id, rec);
    const tap = this.deps.tap;
    tap?.connected(peer, id, {
      localAddress: c.localAddress,
      localPort: c.localPort,
      remotePort: c.remotePort,
    });
    c.attach({
      onData: (bytes) => {
        if (this.conns.get(id) !== rec) return;
        tap?.received(peer, id, bytes);
        TR?.(`recv ${bytes.length}`);
        this.run({ kind: "received", peer, conn: id, bytes });
        // libuv reads a readable socket up to 32 times (2 MiB) before the loop turns: a table
        // arriving that fast would be decoded whole before the drain (setImmediate) hands any of
        // it to the FIB, the kernel idle meanwhile. With a quarter drain's worth pending, stop
        // reading for this turn: the drain runs, then reading resumes.
        if (this.core.rib.pending >= YIELD_PENDING && !this.yielded.has(c)) this.yieldReading(c);
      },
      onClose: (err) => {
        if (this.conns.get(id) !== rec) return;
        this.conns.delete(id);
        tap?.closed(peer, id, "remote");
        this.run({ kind: "closed", peer, conn: id, message: err ?? "Connection closed by peer" });
      },
      onDrain: () => {
        if (this.conns.get(id) !== rec || !this.slow.delete(peer)) return;
        this.log.info({ peer }, "Peer caught up with its send queue");
      },
    });
  }

  private yieldReading(c: Connection): void {
    c.pause();
    this.yielded.add(c);
    if (this.yielded.size > 1) return;
    // Queued after the flush the received data asked for: it runs first.
    setImmediate(() => {
      const held = this.core.readingHeld;
      for (const y of this.yielded) if (!held && !y.isClosed) y.resume();
      // Held (the FIB at its limit): the core's pauseReading(false) resumes every peer.
      this.yielded.clear();
    });
  }

  /**
   * A peer that does not read keeps its UPDATEs queued here: say so once per episode (the
   * transport closes the session past its hard limit, so the queue is bounded).
   */
  private noteSlow(peer: string, c: Connection): void {
    if (this.slow.has(peer) || !c.congested) return;
    this.slow.add(peer);
    this.log.warn({ peer, queuedBytes: c.buffered }, "Peer is slow to read: UPDATEs queued");
  }

  /**
   * An accepted connection's TTLs, set before its first read: the TTL we send, and the peer's
   * GTSM minimum for the segments after the listener's (lower) one let the handshake through.
   */
  private socketHook(c: Connection, p: PeerConfig): void {
    try {
      this.deps.onSocket?.(c.fd, c.family, peerTtl(p, p.asn !== this.config.asn));
    } catch (e) {
      this.log.warn({ peer: p.address, error: (e as Error).message }, "Socket option failed");
    }
  }

  /**
   * Whether an accepted connection from a GTSM peer got through a listener that demands less
   * (another peer of its family has no ttlSecurity): the segments queued before our accept were
   * not checked, so it is closed and our own connection, checked from its SYN-ACK on, carries
   * the session. A passive peer has no connection of ours: it is kept, checked from accept on.
   */
  private gtsmUnchecked(c: Connection, p: PeerConfig): boolean {
    if (!this.deps.onSocket || p.passive) return false;
    const need = peerTtl(p, p.asn !== this.config.asn).minTtl;
    if (need === undefined || need <= this.listenerTtl[c.family].minTtl) return false;
    if (!this.gtsmWarned.has(p.address)) {
      this.gtsmWarned.add(p.address);
      this.log.info(
        { peer: p.address, minTtl: need, listenerMinTtl: this.listenerTtl[c.family].minTtl },
        "Connection from a GTSM peer closed at accept (the listener cannot check its TTL: another peer has no ttlSecurity); our connection to it carries the session",
      );
    }
    return true;
  }

  /**
   * The listener's GTSM TTLs per family: the lowest minimum its peers of that family demand, so
   * the kernel drops a SYN from too far away when every such peer has ttlSecurity, and TTL 255
   * when one has, so our SYN-ACK passes the peer's own check.
   */
  private updateListenerTtl(cfg: BgpdConfig): void {
    const l = this.listener;
    const set = this.deps.onSocket;
    if (!l || !set) return;
    const families: (4 | 6)[] =
      this.listenAddress === "::" ? [4, 6] : this.listenAddress.includes(":") ? [6] : [4];
    for (const f of families) {
      const want = listenerTtl(cfg, f);
      const had = this.listenerTtl[f];
      if (want.ttl === had.ttl && want.minTtl === had.minTtl) continue;
      try {
        set(l.fd, f, want);
        this.listenerTtl[f] = want;
        this.log.info({ family: f, ...want }, "Listener GTSM minimum TTL set");
      } catch (e) {
        this.log.error(
          { family: f, ...want, error: (e as Error).message },
          "Listener GTSM minimum TTL not set",
        );
      }
    }
  }

  // ---- the listener and its TCP-MD5 keys -----------------------------------------------------

  private async openListener(cfg: BgpdConfig): Promise<void> {
    const l = cfg.listen;
    if (l.port === 0 && cfg.peers.every((p) => !p.passive) && process.env.OCELOT_NO_LISTEN) return;
    const opts = (address: string): ListenOptions => ({
      address,
      port: l.port,
      md5Keys: md5Keys(cfg, address.includes(":")),
      isPeer: (a) => this.peerKey(a) !== undefined,
      onConnection: (c) => {
        const peer = this.peerKey(c.remoteAddress) ?? c.remoteAddress;
        const e = this.core.peers.get(peer);
        if (!e || this.gtsmUnchecked(c, e.cfg)) {
          c.destroy();
          return;
        }
        this.socketHook(c, e.cfg);
        const id = --this.acceptSeq;
        this.adopt(peer, id, c);
        this.run({ kind: "accepted", peer, conn: id });
      },
      onRefused: (a) => {
        this.refused++;
        if (this.refusedLogged.has(a) || this.refusedLogged.size >= 1024) return;
        this.refusedLogged.add(a);
        this.log.warn(
          { address: a },
          "Connection from an address that is not a peer closed (further ones from it are only counted: connectionsRefused in status)",
        );
      },
    });
    let address = l.address;
    try {
      this.listener = await listen(opts(address));
    } catch (e) {
      // "::" (the default) on a host without IPv6: listen on IPv4 only, as BIRD does.
      const code = (e as NodeJS.ErrnoException).code;
      if (address !== "::" || (code !== "EAFNOSUPPORT" && code !== "EADDRNOTAVAIL")) throw e;
      this.log.warn({ error: (e as Error).message }, "No IPv6 here: listening on IPv4 only");
      address = "0.0.0.0";
      this.listener = await listen(opts(address));
    }
    this.listenAddress = address;
    this.listenerTtl = { 4: { ttl: -1, minTtl: 0 }, 6: { ttl: -1, minTtl: 0 } };
    this.log.info({ address, port: this.listener.port }, "Listening");
    this.updateListenerTtl(cfg);
  }

  /**
   * Brings the listener's TCP-MD5 keys from old's peers to next's (set new and changed keys,
   * remove those of peers gone or without a password), before sessions reset, so the next
   * incoming connection is checked with the new key. A key that cannot be set is logged.
   */
  private updateListenerKeys(old: BgpdConfig, next: BgpdConfig): void {
    const l = this.listener;
    if (!l) return;
    const v6 = this.listenAddress.includes(":");
    const before = md5Keys(old, v6);
    const after = md5Keys(next, v6);
    const changes: [string, string | undefined][] = [];
    for (const a of before.keys()) if (!after.has(a)) changes.push([a, undefined]);
    for (const [a, k] of after) if (before.get(a) !== k) changes.push([a, k]);
    for (const [peer, key] of changes) {
      try {
        l.setMd5Key(peer, key);
        this.log.info({ peer, md5: key !== undefined }, "Listener TCP MD5 key updated");
      } catch (e) {
        this.log.error({ peer, error: (e as Error).message }, "Listener TCP MD5 key not updated");
      }
    }
  }
}

/** The TCP-MD5 keys of a config's peers, by address (IPv6 peers only on an IPv6 socket). */
function md5Keys(cfg: BgpdConfig, ipv6 = true): Map<string, string> {
  const m = new Map<string, string>();
  for (const p of cfg.peers)
    if (p.password !== undefined && (ipv6 || !p.address.includes(":")))
      m.set(p.address, p.password);
  return m;
}
