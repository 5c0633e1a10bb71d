// The speaker's runtime: the thin, effectful side of the speaker. It owns the TCP listener and
// its TCP-MD5 keys, the peers' connections and connect attempts, the clock's timers, the FIB
// pump and the scheduling of flushes; it feeds what happens there to the core as events and
// carries out the core's actions, one event at a time. `ocelot bgpd` and `ocelot node run` both
// run a Speaker. Not: any BGP decision (core.ts), status shapes (views.ts).
import type { Fib } from "../../fib/types.js";
import { type Log, silentLog } from "../../lib/log.js";
import { type BgpdConfig, impact, type PeerConfig } from "../config.js";
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
import type { Rib } from "../rib/rib.js";
import type { RoutesSnapshot, StatusSnapshot } from "../status.js";
import { localAddressesToward } from "./addr.js";
import type { AttrBridge } from "./attrs.js";
import { SpeakerCore } from "./core.js";
import { type ConnId, type SpeakerAction, type SpeakerEvent, timerId } from "./events.js";
import { FibPump } from "./fib_pump.js";
import { routesView, statusView } from "./views.js";

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
  /** Optional socket hook for each connection (eBGP TTL); errors are logged, not fatal. */
  onSocket?: (conn: Connection, peer: PeerConfig, ebgp: boolean) => void;
  /** Each UPDATE received, as framed (header included), before decoding (MRT BGP4MP dumps). */
  onUpdateReceived?: (peer: PeerConfig, msg: Uint8Array, fourOctetAs: boolean) => void;
}

interface Attempt {
  peer: string;
  handle: ConnectAttempt | undefined;
}

export class Speaker<A> {
  private readonly core: SpeakerCore<A>;
  private readonly log: Log;
  private listener: Listener | undefined;
  /** The address the listener is bound to (the config's, or 0.0.0.0 when IPv6 is missing). */
  private listenAddress = "";
  private readonly pump: FibPump | undefined;
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

  constructor(
    config: BgpdConfig,
    private readonly deps: SpeakerDeps<A>,
  ) {
    this.log = deps.log ?? silentLog;
    this.startedAt = deps.clock.now();
    this.pump = deps.fib ? new FibPump(deps.fib, this.log) : undefined;
    this.core = new SpeakerCore(config, {
      bridge: deps.bridge,
      now: () => deps.clock.now(),
      fib: deps.fib !== null,
      localAddressesToward,
      log: this.log,
      ...(deps.onUpdateReceived ? { onUpdateReceived: deps.onUpdateReceived } : {}),
    });
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
      await this.openListener(next);
    } else this.updateListenerKeys(old, next);
    this.run({ kind: "reconfigure", config: next });
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
      },
      tcpMd5: readTcpMd5Counters,
      memory: process.memoryUsage(),
    });
    return { ...view, connectionsRefused: this.refused };
  }

  routes(): RoutesSnapshot {
    return routesView(this.core.rib);
  }

  // ---- events in -----------------------------------------------------------------------------

  /** One event at a time: an event raised while actions are carried out waits its turn. */
  private run(ev: SpeakerEvent): void {
    this.queue.push(ev);
    if (this.running) return;
    this.running = true;
    try {
      for (let i = 0; i < this.queue.length; i++) {
        for (const a of this.core.handle(this.queue[i] as SpeakerEvent)) this.carry(a);
      }
    } finally {
      this.queue.length = 0;
      this.running = false;
    }
    this.checkIdle();
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
        c.write(a.bytes);
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
        if (a.how === "end") c?.end();
        else c?.destroy();
        return;
      }
      case "pauseReading": {
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
        if (this.flushScheduled || this.stopped) return;
        this.flushScheduled = true;
        // After pending I/O callbacks: reading and draining interleave.
        setImmediate(() => {
          this.flushScheduled = false;
          this.run({ kind: "flush" });
        });
        return;
      case "fib":
        this.pump?.push(a.batch, a.protocol, a.table).then(() => this.run({ kind: "fibDone" }));
        return;
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

  private connect(a: Extract<SpeakerAction, { kind: "connect" }>): void {
    const cfg = this.core.peers.get(a.peer)?.cfg;
    const opts: ConnectOptions = { address: a.address, port: a.port, timeoutMs: a.timeoutMs };
    if (a.localAddress) opts.localAddress = a.localAddress;
    if (cfg?.password !== undefined) opts.md5Key = cfg.password;
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
        if (cfg) this.socketHook(c, cfg);
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
    c.attach({
      onData: (bytes) => {
        if (this.conns.get(id) === rec) this.run({ kind: "received", peer, conn: id, bytes });
      },
      onClose: (err) => {
        if (this.conns.get(id) !== rec) return;
        this.conns.delete(id);
        this.run({ kind: "closed", peer, conn: id, message: err ?? "Connection closed by peer" });
      },
      onDrain: () => {
        if (this.conns.get(id) !== rec || !this.slow.delete(peer)) return;
        this.log.info({ peer }, "Peer caught up with its send queue");
      },
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

  private socketHook(c: Connection, p: PeerConfig): void {
    try {
      this.deps.onSocket?.(c, p, p.asn !== this.config.asn);
    } catch (e) {
      this.log.warn({ peer: p.address, error: (e as Error).message }, "Socket option failed");
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
      isPeer: (a) => this.core.peers.has(a),
      onConnection: (c) => {
        const peer = c.remoteAddress;
        const e = this.core.peers.get(peer);
        if (!e) {
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
    this.log.info({ address, port: this.listener.port }, "Listening");
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
