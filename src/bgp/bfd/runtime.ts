// The thin UDP edge of BFD: sockets, timers and the clock around the pure sessions of session.ts.
// Owns one receive socket per (local address, port) — 3784 single hop (RFC 5881 §4), 4784
// multihop (RFC 5883 §2) — with a kernel filter keeping only TTL/Hop Limit 255 on single hop
// (RFC 5881 §5), one send socket per session (source port 49152-65535, TTL 255), demultiplexing
// by Your Discriminator or by the peer's address (RFC 5880 §6.8.6), a session's authentication
// state (auth.ts) around its packets, discard counters, and state-change subscribers. Not: the protocol (session.ts), the packet (packet.ts), what BGP does
// on Down (bgp_peers.ts).
import { randomInt } from "node:crypto";
import { createSocket, type Socket } from "node:dgram";
import { isIPv4, isIPv6 } from "node:net";
import { attachFilterFd, ttlFilter } from "../../lib/native.js";
import {
  authSectionLength,
  type BfdAuthConfig,
  type BfdAuthDiscard,
  BfdAuthState,
  validateAuth,
} from "./auth.js";
import {
  BFD_DIAG_NAMES,
  BFD_PORT_MULTIHOP,
  BFD_PORT_SINGLE_HOP,
  BFD_SOURCE_PORT_MAX,
  BFD_SOURCE_PORT_MIN,
  BFD_STATE_NAMES,
  type BfdDiscard,
  type BfdStateName,
  decodeControl,
  encodeControl,
} from "./packet.js";
import {
  type BfdAction,
  BfdSession,
  type BfdTimer,
  type BfdTimers,
  validateTimers,
} from "./session.js";

export interface BfdPeerOptions {
  /** The peer's address (IPv4 or IPv6). */
  peer: string;
  /** Our address towards it (source of our packets, where we listen); default: any. */
  local?: string;
  /** RFC 5883 multihop (port 4784, no TTL check) instead of RFC 5881 single hop. */
  multihop?: boolean;
  timers: BfdTimers;
  /** RFC 5880 authentication; absent: none (a packet with the A bit is then discarded). */
  auth?: BfdAuthConfig;
}

export interface BfdStateChange {
  peer: string;
  from: BfdStateName;
  state: BfdStateName;
  diag: number;
  diagName: string;
  /** Date.now() when the runtime saw it. */
  at: number;
}

export interface BfdSessionStatus {
  peer: string;
  local?: string;
  multihop: boolean;
  state: BfdStateName;
  remoteState: BfdStateName;
  diag: string;
  localDiscr: number;
  remoteDiscr: number;
  /** Intervals in force, ms. */
  txIntervalMs: number;
  detectionTimeMs: number;
  received: number;
  sent: number;
  upSince?: number;
}

export interface BfdCounters {
  received: number;
  sent: number;
  /** Packets the codec discarded, by RFC 5880 §6.8.6 reason. */
  discarded: Partial<
    Record<BfdDiscard | BfdAuthDiscard | "NoSession" | "WrongSource" | "SessionDiscard", number>
  >;
}

export interface BfdRuntimeOptions {
  /** Single-hop TTL check in the kernel (default true; needs the native addon). */
  ttlCheck?: boolean;
  /** Jitter source (tests); default Math.random. */
  rng?: () => number;
  log?: { warn(o: object, msg: string): void; debug?(o: object, msg: string): void };
  /** Destination ports (tests may move them); defaults 3784 and 4784. */
  ports?: { singleHop: number; multihop: number };
}

interface Entry {
  o: BfdPeerOptions;
  s: BfdSession;
  tx: Socket;
  rxKey: string;
  auth?: BfdAuthState;
  timers: Partial<Record<BfdTimer, NodeJS.Timeout>>;
  sent: number;
  upSince?: number;
}

interface Rx {
  socket: Socket;
  users: number;
}

const family = (a: string): 4 | 6 => (isIPv4(a) ? 4 : 6);

export class BfdRuntime {
  readonly counters: BfdCounters = { received: 0, sent: 0, discarded: {} };
  private readonly byPeer = new Map<string, Entry>();
  private readonly byDiscr = new Map<number, Entry>();
  private readonly rx = new Map<string, Rx>();
  private readonly listeners = new Set<(c: BfdStateChange) => void>();
  private readonly ports: { singleHop: number; multihop: number };
  private closed = false;

  constructor(private readonly opts: BfdRuntimeOptions = {}) {
    this.ports = opts.ports ?? { singleHop: BFD_PORT_SINGLE_HOP, multihop: BFD_PORT_MULTIHOP };
  }

  /** Subscribes to state changes of every session; returns the unsubscribe function. */
  onStateChange(fn: (c: BfdStateChange) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Starts a session with o.peer (or applies new timers to the running one, by a Poll sequence
   * when Up). A change of local address or hop mode restarts it.
   */
  async start(o: BfdPeerOptions): Promise<void> {
    if (this.closed) throw new Error("BFD runtime closed");
    if (!isIPv4(o.peer) && !isIPv6(o.peer))
      throw new Error(`BFD peer "${o.peer}" is not an IP address`);
    if (o.local !== undefined && family(o.local) !== family(o.peer))
      throw new Error(`BFD local address ${o.local} is not of peer ${o.peer}'s family`);
    validateTimers(o.timers);
    if (o.auth) validateAuth(o.auth);
    const old = this.byPeer.get(o.peer);
    if (old) {
      if (
        old.o.local === o.local &&
        !!old.o.multihop === !!o.multihop &&
        sameAuth(old.o.auth, o.auth)
      ) {
        old.o = o;
        this.apply(old, old.s.handle({ kind: "Configure", timers: o.timers }));
        return;
      }
      this.stop(o.peer);
    }
    const rxKey = await this.listen(o);
    let tx: Socket;
    try {
      tx = await this.sender(o);
    } catch (e) {
      this.unlisten(rxKey);
      throw e;
    }
    let discr = 0;
    while (discr === 0 || this.byDiscr.has(discr)) discr = randomInt(1, 0xffffffff);
    const e: Entry = {
      o,
      s: new BfdSession(discr, o.timers, this.opts.rng),
      tx,
      rxKey,
      ...(o.auth ? { auth: new BfdAuthState(o.auth, randomInt(0, 0xffffffff)) } : {}),
      timers: {},
      sent: 0,
    };
    this.byPeer.set(o.peer, e);
    this.byDiscr.set(discr, e);
    this.apply(e, e.s.handle({ kind: "Start" }));
  }

  /** Ends the session with peer: one AdminDown packet (RFC 5880 §6.8.16), then its sockets. */
  stop(peer: string): void {
    const e = this.byPeer.get(peer);
    if (!e) return;
    this.apply(e, e.s.handle({ kind: "AdminDown" }));
    this.byPeer.delete(peer);
    this.byDiscr.delete(e.s.localDiscr);
    for (const t of Object.values(e.timers)) clearTimeout(t);
    // Let the AdminDown packet leave before the socket closes.
    const tx = e.tx;
    setTimeout(() => tx.close(), 50).unref();
    this.unlisten(e.rxKey);
  }

  adminDown(peer: string): void {
    const e = this.byPeer.get(peer);
    if (e) this.apply(e, e.s.handle({ kind: "AdminDown" }));
  }

  adminUp(peer: string): void {
    const e = this.byPeer.get(peer);
    if (e) this.apply(e, e.s.handle({ kind: "AdminUp" }));
  }

  peers(): string[] {
    return [...this.byPeer.keys()];
  }

  status(): BfdSessionStatus[] {
    return [...this.byPeer.values()].map((e) => ({
      peer: e.o.peer,
      ...(e.o.local ? { local: e.o.local } : {}),
      multihop: !!e.o.multihop,
      state: BFD_STATE_NAMES[e.s.sessionState],
      remoteState: BFD_STATE_NAMES[e.s.remoteSessionState],
      diag: BFD_DIAG_NAMES[e.s.localDiag] ?? String(e.s.localDiag),
      localDiscr: e.s.localDiscr,
      remoteDiscr: e.s.remoteDiscr,
      txIntervalMs: e.s.txIntervalMs(),
      detectionTimeMs: e.s.detectionTimeMs(),
      received: e.s.received,
      sent: e.sent,
      ...(e.upSince !== undefined ? { upSince: e.upSince } : {}),
    }));
  }

  close(): void {
    if (this.closed) return;
    for (const p of [...this.byPeer.keys()]) this.stop(p);
    this.closed = true;
    for (const r of this.rx.values()) r.socket.close();
    this.rx.clear();
    this.listeners.clear();
  }

  // ---- actions --------------------------------------------------------------------------------

  private apply(e: Entry, actions: BfdAction[]): void {
    for (const a of actions) {
      switch (a.kind) {
        case "Send": {
          const port = e.o.multihop ? this.ports.multihop : this.ports.singleHop;
          const bytes = e.auth
            ? e.auth.sign(
                encodeControl({ ...a.packet, auth: true }, authSectionLength(e.auth.config)),
              )
            : encodeControl(a.packet);
          e.tx.send(bytes, port, e.o.peer, (err) => {
            if (err)
              this.opts.log?.debug?.({ peer: e.o.peer, error: err.message }, "BFD send failed");
          });
          e.sent++;
          this.counters.sent++;
          break;
        }
        case "ArmTimer": {
          const t = e.timers[a.timer];
          if (t) clearTimeout(t);
          e.timers[a.timer] = setTimeout(() => {
            e.timers[a.timer] = undefined;
            if (this.byPeer.get(e.o.peer) !== e) return;
            if (a.timer === "detect") e.auth?.detectionExpired();
            this.apply(e, e.s.handle({ kind: "TimerExpired", timer: a.timer }));
          }, a.ms);
          break;
        }
        case "StopTimer": {
          const t = e.timers[a.timer];
          if (t) clearTimeout(t);
          e.timers[a.timer] = undefined;
          break;
        }
        case "StateChanged": {
          const at = Date.now();
          e.upSince = a.to === 3 ? at : undefined;
          const c: BfdStateChange = {
            peer: e.o.peer,
            from: BFD_STATE_NAMES[a.from],
            state: BFD_STATE_NAMES[a.to],
            diag: a.diag,
            diagName: BFD_DIAG_NAMES[a.diag] ?? String(a.diag),
            at,
          };
          for (const l of this.listeners) {
            try {
              l(c);
            } catch (err) {
              this.opts.log?.warn({ error: (err as Error).message }, "BFD state listener failed");
            }
          }
          break;
        }
      }
    }
  }

  // ---- sockets --------------------------------------------------------------------------------

  private async listen(o: BfdPeerOptions): Promise<string> {
    const fam = family(o.peer);
    const port = o.multihop ? this.ports.multihop : this.ports.singleHop;
    const addr = o.local ?? (fam === 4 ? "0.0.0.0" : "::");
    const key = `${addr}|${port}`;
    const have = this.rx.get(key);
    if (have) {
      have.users++;
      return key;
    }
    const socket = createSocket(
      fam === 4
        ? { type: "udp4", reuseAddr: true }
        : { type: "udp6", reuseAddr: true, ipv6Only: true },
    );
    await bind(socket, port, addr);
    if (!o.multihop && this.opts.ttlCheck !== false) {
      // RFC 5881 §5: single-hop packets must arrive with TTL 255; the kernel drops the rest.
      attachFilterFd(fdOf(socket), ttlFilter(fam, 255));
    }
    socket.on("message", (msg, rinfo) => this.onMessage(msg, rinfo.address, !!o.multihop));
    socket.on("error", (err) => this.opts.log?.warn({ error: err.message }, "BFD socket error"));
    this.rx.set(key, { socket, users: 1 });
    return key;
  }

  private unlisten(key: string): void {
    const r = this.rx.get(key);
    if (!r) return;
    if (--r.users > 0) return;
    r.socket.close();
    this.rx.delete(key);
  }

  /** RFC 5881 §4: a source port in 49152-65535, the same for the session's life; TTL 255. */
  private async sender(o: BfdPeerOptions): Promise<Socket> {
    const fam = family(o.peer);
    for (let attempt = 0; attempt < 64; attempt++) {
      const s = createSocket(fam === 4 ? { type: "udp4" } : { type: "udp6", ipv6Only: true });
      const port = randomInt(BFD_SOURCE_PORT_MIN, BFD_SOURCE_PORT_MAX + 1);
      try {
        await bind(s, port, o.local ?? (fam === 4 ? "0.0.0.0" : "::"));
      } catch (e) {
        s.close();
        if ((e as NodeJS.ErrnoException).code === "EADDRINUSE") continue;
        throw e;
      }
      s.setTTL(255);
      s.on("error", (err) => this.opts.log?.warn({ error: err.message }, "BFD socket error"));
      // Nothing is expected on the send socket: drop anything that arrives.
      s.on("message", () => {});
      return s;
    }
    throw new Error("No free BFD source port in 49152-65535 after 64 tries");
  }

  private onMessage(msg: Buffer, from: string, multihop: boolean): void {
    const d = decodeControl(msg);
    if (!d.ok) {
      this.discard(d.reason);
      return;
    }
    const p = d.packet;
    const src = from.startsWith("::ffff:") ? from.slice(7) : from;
    const e = p.yourDiscr !== 0 ? this.byDiscr.get(p.yourDiscr) : this.byPeer.get(src);
    if (!e || !!e.o.multihop !== multihop) {
      this.discard("NoSession");
      return;
    }
    if (e.o.peer !== src) {
      this.discard("WrongSource");
      return;
    }
    // §6.8.6: the A bit must agree with the session's authentication, and the section pass it.
    if (!e.auth && p.auth) {
      this.discard("AuthenticationNotInUse");
      return;
    }
    if (e.auth) {
      if (!p.auth) {
        this.discard("AuthenticationMissing");
        return;
      }
      const v = e.auth.verify(msg, p.detectMult, e.s.detectionTimeMs(), Date.now());
      if (!v.ok) {
        this.opts.log?.debug?.(
          {
            peer: src,
            reason: v.reason,
            seq: msg.length >= 32 ? msg.readUInt32BE(28) : undefined,
            rcvSeq: e.auth.rcvSeq,
            known: e.auth.known,
          },
          "BFD packet failed authentication",
        );
        this.discard(v.reason);
        return;
      }
    }
    this.counters.received++;
    const before = e.s.discarded;
    this.apply(e, e.s.handle({ kind: "PacketReceived", packet: p }));
    if (e.s.discarded !== before) this.discard("SessionDiscard");
  }

  private discard(reason: keyof BfdCounters["discarded"]): void {
    this.counters.discarded[reason] = (this.counters.discarded[reason] ?? 0) + 1;
  }
}

/** Whether two authentication settings are the same (a change restarts the session). */
function sameAuth(a: BfdAuthConfig | undefined, b: BfdAuthConfig | undefined): boolean {
  if (!a || !b) return a === b;
  return (
    a.type === b.type &&
    a.keyId === b.keyId &&
    Buffer.from(a.password).equals(Buffer.from(b.password))
  );
}

function bind(s: Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    s.once("error", onError);
    s.bind({ port, address, exclusive: true }, () => {
      s.off("error", onError);
      resolve();
    });
  });
}

/**
 * The OS fd of a bound dgram socket (for the socket filter through the addon). Read from the
 * socket's internal state, not `_handle`, whose getter prints a deprecation warning (DEP0112).
 */
function fdOf(s: Socket): number {
  const state = Object.getOwnPropertySymbols(s).find((k) => k.description === "state symbol");
  const inner = state
    ? (s as unknown as Record<symbol, { handle?: { fd?: number } }>)[state]?.handle
    : undefined;
  const fd = inner?.fd;
  if (typeof fd !== "number" || fd < 0) throw new Error("BFD socket has no file descriptor");
  return fd;
}
