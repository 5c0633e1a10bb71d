// The TCP transport of the speaker: one listener on a configurable address and port that closes
// connections from unknown addresses at once, outgoing connects with a per-peer source address,
// TCP-MD5 keys (RFC 2385) on both, and a Connection wrapper that bounds what we buffer for a slow
// peer, and the pacing of its writes (one system call per peer per turn at most, and during a
// burst at most one per coalescing interval). Not: BGP framing or state.
//
// TCP-MD5: the listener holds one TCP_MD5SIG entry per keyed peer (the kernel then drops that
// address's unsigned or wrongly signed segments, and accepted sockets inherit the keys). An
// outgoing socket must have its key before connect() sends the SYN; Node creates the fd only
// when it binds or connects, so a keyed connect always binds (to the wildcard when no source
// address is set) and sets the key on Node's `connectionAttempt` event, which Node emits after
// bind() and before connect(). A connect that reaches 'connect' without the key is refused.

import { readFileSync } from "node:fs";
import * as net from "node:net";
import { isIPv4 } from "node:net";
import { SockOpt, setsockoptFd, tcpMd5SigOption } from "../../lib/native.js";

/** The address a socket reports, without the IPv4-mapped IPv6 prefix. */
export function plainAddress(a: string | undefined): string {
  if (!a) return "";
  return a.startsWith("::ffff:") && isIPv4(a.slice(7)) ? a.slice(7) : a;
}

export interface ConnectionEvents {
  onData(chunk: Uint8Array): void;
  /** The connection closed (by either side); error text when it failed. */
  onClose(error?: string): void;
  /** The socket's send buffer fell below the low-water mark after being congested. */
  onDrain(): void;
}

export interface ConnectionLimits {
  /** Above this many bytes queued, `congested` is true and senders should wait for onDrain. */
  highWater: number;
  /** Above this many bytes queued, the connection is closed: the peer is not reading. */
  maxBuffered: number;
  /**
   * Paced writes to a peer within this many ms of its last write to the kernel wait and go
   * together, at most this long later (0: every turn's writes go at the turn's end). A write
   * after a quiet spell, an unpaced one, or once coalesceBytes are waiting, goes at the end of
   * its turn.
   */
  coalesceMs: number;
  /** Bytes waiting that are sent at the turn's end whatever the interval. */
  coalesceBytes: number;
}

/**
 * OCELOT_BGP_WRITE_COALESCE_MS: the coalescing interval (default 20 ms). A reflector with 1,000
 * clients sends each client one small UPDATE per route, each route in its own turn while the
 * clients come up: without it, a system call and a TCP segment per route per client.
 */
const COALESCE_MS = (() => {
  const v = process.env.OCELOT_BGP_WRITE_COALESCE_MS;
  if (v === undefined || v === "") return 20;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || n > 1000)
    throw new Error(
      `OCELOT_BGP_WRITE_COALESCE_MS: want ms from 0 to 1000, got ${JSON.stringify(v)}`,
    );
  return n;
})();

export const DEFAULT_LIMITS: ConnectionLimits = {
  highWater: 4 << 20,
  maxBuffered: 256 << 20,
  coalesceMs: COALESCE_MS,
  coalesceBytes: 16 << 10,
};

/**
 * When connections hand what they queued to the kernel: at the end of the turn (`soon`), or
 * on one shared timer (`later`) for those that wrote less than their interval ago. One timer
 * for every connection, not one each.
 */
class WritePacer {
  private soon: Connection[] = [];
  private later = new Set<Connection>();
  private tickQueued = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly flushSoon = (): void => {
    this.tickQueued = false;
    const list = this.soon;
    this.soon = [];
    for (const c of list) c.flushPending();
  };
  private readonly flushLater = (): void => {
    this.timer = undefined;
    const list = [...this.later];
    this.later.clear();
    for (const c of list) c.flushPending();
  };

  /** c has bytes waiting and is in neither list. */
  schedule(c: Connection, now: boolean, ms: number): void {
    if (now) {
      this.soon.push(c);
      if (!this.tickQueued) {
        this.tickQueued = true;
        process.nextTick(this.flushSoon);
      }
      return;
    }
    this.later.add(c);
    if (this.timer === undefined) this.timer = setTimeout(this.flushLater, ms);
  }

  /** c (in the later set) is to go at the turn's end after all. */
  hurry(c: Connection): void {
    if (this.later.delete(c)) this.schedule(c, true, 0);
  }
}

const pacer = new WritePacer();

/** Pending bytes up to this are copied into one buffer for the socket; more go as a writev. */
const COPY_MAX = 1 << 20;

/** One established TCP connection to a peer. */
export class Connection {
  private events: ConnectionEvents | undefined;
  private closed = false;
  private backlog: Uint8Array[] = [];
  private wasCongested = false;
  /** Messages written and not yet handed to the socket (see WritePacer). */
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  /** Pending is in the pacer's lists; `pendingSoon`: in its end-of-turn list. */
  private pendingScheduled = false;
  private pendingSoon = false;
  /** performance.now() of the last hand-over to the socket. */
  private lastFlush = -Infinity;
  readonly localAddress: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localPort: number;

  constructor(
    private readonly socket: net.Socket,
    readonly direction: "incoming" | "outgoing",
    private readonly limits: ConnectionLimits = DEFAULT_LIMITS,
  ) {
    this.localAddress = plainAddress(socket.localAddress);
    this.remoteAddress = plainAddress(socket.remoteAddress);
    this.remotePort = socket.remotePort ?? 0;
    this.localPort = socket.localPort ?? 0;
    socket.setNoDelay(true);
    socket.on("data", (d: Buffer) => {
      if (this.events) this.events.onData(d);
      else this.backlog.push(d);
    });
    socket.on("drain", () => {
      if (this.wasCongested) {
        this.wasCongested = false;
        this.events?.onDrain();
      }
    });
    socket.on("error", (e) => this.finish(e.message));
    socket.on("close", () => this.finish());
  }

  /** Attaches the receiver; data that arrived before is delivered first. */
  attach(events: ConnectionEvents): void {
    this.events = events;
    const early = this.backlog;
    this.backlog = [];
    for (const d of early) events.onData(d);
    if (this.closed) events.onClose();
  }

  /** The socket's file descriptor (for socket options Node lacks), or -1. */
  get fd(): number {
    return handleFd(this.socket);
  }

  get family(): 4 | 6 {
    return this.remoteAddress.includes(":") ? 6 : 4;
  }

  /** Bytes queued in user space and not yet handed to the kernel. */
  get buffered(): number {
    return this.socket.writableLength + this.pendingBytes;
  }

  /** True when the caller should stop producing until onDrain. */
  get congested(): boolean {
    return this.buffered >= this.limits.highWater;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Queues bytes; closes the connection if the peer let more than maxBuffered pile up. The
   * messages written in one turn of the event loop go to the kernel together, as one buffer at
   * the turn's end, not one system call each. Paced bytes (UPDATEs) written within coalesceMs
   * of the last hand-over wait for the pacer's timer and go with the next turns' (a reflector
   * sends each of its clients one small UPDATE per route, the routes arriving one a turn);
   * unpaced ones (OPEN, KEEPALIVE, NOTIFICATION: a session coming up waits on them) go at the
   * turn's end, with whatever waits.
   */
  write(bytes: Uint8Array, paced = false): void {
    if (this.closed) return;
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (!this.pendingScheduled) {
      this.pendingScheduled = true;
      const ms = this.limits.coalesceMs;
      this.pendingSoon = !paced || ms <= 0 || performance.now() - this.lastFlush >= ms;
      pacer.schedule(this, this.pendingSoon, ms);
    } else if (!this.pendingSoon && (!paced || this.pendingBytes >= this.limits.coalesceBytes)) {
      this.pendingSoon = true;
      pacer.hurry(this);
    }
    const queued = this.buffered;
    if (queued >= this.limits.highWater) this.wasCongested = true;
    if (queued > this.limits.maxBuffered) {
      this.destroy(`Peer is not reading: ${queued} bytes queued`);
    }
  }

  /** Hands what is pending to the socket as one buffer (the pacer calls it). */
  flushPending(): void {
    this.pendingScheduled = false;
    const n = this.pending.length;
    if (n === 0 || this.closed) return;
    const list = this.pending;
    const size = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    this.lastFlush = performance.now();
    if (n === 1) this.socket.write(list[0] as Uint8Array);
    else if (size <= COPY_MAX) this.socket.write(Buffer.concat(list, size));
    else {
      // A big table dump: handed over as it is (one writev), not copied into one more buffer.
      this.socket.cork();
      for (const b of list) this.socket.write(b);
      this.socket.uncork();
    }
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Sends what is queued (e.g. a NOTIFICATION), then closes. */
  end(): void {
    if (this.closed) return;
    this.flushPending();
    this.socket.end();
    // Do not wait forever for a peer that stopped reading.
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  destroy(error?: string): void {
    // What is pending (a NOTIFICATION) goes out before the socket does.
    this.flushPending();
    this.socket.destroy();
    this.finish(error);
  }

  private finish(error?: string): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = [];
    this.pendingBytes = 0;
    this.events?.onClose(error);
  }
}

/** The fd of a Node socket or server (`_handle.fd`), or -1 while it has none. */
function handleFd(s: net.Socket | net.Server): number {
  const h = (s as unknown as { _handle?: { fd?: number } | null })._handle;
  return typeof h?.fd === "number" ? h.fd : -1;
}

/**
 * The address to give TCP_MD5SIG on a socket of that family: an IPv4 peer on an IPv6 (dual-stack)
 * socket is keyed by its IPv4-mapped address; an IPv6 peer cannot reach an IPv4 socket (null).
 */
export function md5KeyAddress(peer: string, socketFamily: 4 | 6): string | null {
  const peerFamily = net.isIPv4(peer) ? 4 : 6;
  if (peerFamily === socketFamily) return peer;
  return socketFamily === 6 ? `::ffff:${peer}` : null;
}

const ENOENT = 2;

/**
 * Sets (key) or removes (undefined) the TCP-MD5 key for peer on a socket fd. Removing a key that
 * is not there is not an error.
 */
export function setMd5Key(fd: number, socketFamily: 4 | 6, peer: string, key?: string): void {
  const addr = md5KeyAddress(peer, socketFamily);
  if (addr === null) return;
  try {
    setsockoptFd(fd, SockOpt.IPPROTO_TCP, SockOpt.TCP_MD5SIG, tcpMd5SigOption(addr, key ?? ""));
  } catch (e) {
    if (key === undefined && (e as { errno?: number }).errno === ENOENT) return;
    throw new Error(
      `Cannot ${key === undefined ? "remove" : "set"} the TCP MD5 key for ${peer}: ${(e as Error).message}`,
    );
  }
}

/** The kernel's TCP-MD5 drop counters of this network namespace (TcpExt in /proc/net/netstat). */
export interface TcpMd5Counters {
  /** Signed segments whose signature did not match (wrong password on one side). */
  failure: number;
  /** Signed segments from an address we hold no key for. */
  unexpected: number;
  /** Unsigned segments from an address we hold a key for. */
  notFound: number;
}

/** Parses /proc/net/netstat text; undefined when its TcpExt lines lack the MD5 counters. */
export function parseTcpMd5Counters(netstat: string): TcpMd5Counters | undefined {
  const lines = netstat.split("\n").filter((l) => l.startsWith("TcpExt:"));
  if (lines.length < 2) return undefined;
  const names = (lines[0] as string).split(/\s+/);
  const values = (lines[1] as string).split(/\s+/);
  const get = (n: string) => {
    const i = names.indexOf(n);
    return i > 0 ? Number(values[i]) : Number.NaN;
  };
  const c = {
    failure: get("TCPMD5Failure"),
    unexpected: get("TCPMD5Unexpected"),
    notFound: get("TCPMD5NotFound"),
  };
  return Object.values(c).every(Number.isFinite) ? c : undefined;
}

/** This namespace's TCP-MD5 counters, or undefined where /proc cannot tell. */
export function readTcpMd5Counters(): TcpMd5Counters | undefined {
  try {
    return parseTcpMd5Counters(readFileSync("/proc/net/netstat", "utf8"));
  } catch {
    return undefined;
  }
}

export interface ListenOptions {
  address: string;
  port: number;
  /** TCP-MD5 keys by peer address, set on the listening socket right after it is bound. */
  md5Keys?: ReadonlyMap<string, string>;
  /** Whether a remote address is a configured peer; others are closed at once. */
  isPeer(address: string): boolean;
  onConnection(conn: Connection): void;
  /** Connections refused because they came from an unknown address. */
  onRefused?(address: string): void;
}

export interface Listener {
  port: number;
  /** The listening socket's fd (socket options: GTSM's minimum TTL), -1 once closed. */
  readonly fd: number;
  /** Sets (key) or removes (undefined) the TCP-MD5 key for one peer address. */
  setMd5Key(peer: string, key: string | undefined): void;
  close(): Promise<void>;
}

/**
 * Listens for BGP connections; resolves with the bound port once listening and every key in
 * md5Keys is set (a key that cannot be set closes the listener and rejects).
 */
export function listen(opts: ListenOptions): Promise<Listener> {
  const server = net.createServer({ pauseOnConnect: false, noDelay: true }, (socket) => {
    const remote = plainAddress(socket.remoteAddress);
    if (!opts.isPeer(remote)) {
      socket.destroy();
      opts.onRefused?.(remote);
      return;
    }
    opts.onConnection(new Connection(socket, "incoming"));
  });
  return new Promise((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException) => {
      // A port below 1024 without CAP_NET_BIND_SERVICE (a container with only NET_ADMIN and
      // NET_RAW): say what would let it bind.
      if (err.code === "EACCES" && opts.port > 0 && opts.port < 1024)
        err.message += ` (port ${opts.port} needs CAP_NET_BIND_SERVICE, or the sysctl net.ipv4.ip_unprivileged_port_start=${opts.port} in this network namespace)`;
      reject(err);
    };
    server.once("error", failed);
    server.listen({ host: opts.address, port: opts.port, exclusive: true }, () => {
      server.off("error", failed);
      const addr = server.address();
      const port = typeof addr === "object" && addr ? addr.port : opts.port;
      const family: 4 | 6 = typeof addr === "object" && addr?.family === "IPv4" ? 4 : 6;
      const close = () => new Promise<void>((r) => server.close(() => r()));
      const setKey = (peer: string, key: string | undefined) =>
        setMd5Key(handleFd(server), family, peer, key);
      try {
        for (const [peer, key] of opts.md5Keys ?? []) setKey(peer, key);
      } catch (e) {
        void close();
        reject(e);
        return;
      }
      resolve({
        port,
        get fd() {
          return handleFd(server);
        },
        setMd5Key: setKey,
        close,
      });
    });
  });
}

export interface ConnectOptions {
  address: string;
  port: number;
  localAddress?: string;
  timeoutMs: number;
  /** TCP-MD5 key for this peer, set on the socket before connect() sends the SYN. */
  md5Key?: string;
  /**
   * Called with the socket's fd before connect() sends the SYN (TTL, GTSM's minimum TTL); a
   * throw fails the attempt.
   */
  beforeConnect?: (fd: number) => void;
}

/** An outgoing connection attempt that can be abandoned. */
export interface ConnectAttempt {
  cancel(): void;
}

/** Connects to a peer; exactly one of onConnected / onFailed is called unless cancelled. */
export function connect(
  opts: ConnectOptions,
  onConnected: (c: Connection) => void,
  onFailed: (error: string) => void,
): ConnectAttempt {
  let done = false;
  const key = opts.md5Key;
  const before = opts.beforeConnect;
  let keyed = false;
  const socket = new net.Socket();
  if (key !== undefined || before !== undefined) {
    socket.once("connectionAttempt", () => {
      // Node calls connect() right after this event: failing here would pull the handle from
      // under it, so a key that cannot be set fails the attempt on the next tick instead.
      try {
        const fd = handleFd(socket);
        if (fd < 0) throw new Error("the socket has no file descriptor before connect");
        if (key !== undefined) setMd5Key(fd, net.isIPv4(opts.address) ? 4 : 6, opts.address, key);
        before?.(fd);
        keyed = true;
      } catch (e) {
        const msg = (e as Error).message;
        process.nextTick(() => fail(msg));
      }
    });
  }
  socket.connect({
    host: opts.address,
    port: opts.port,
    noDelay: true,
    // A keyed socket needs its fd before connect(): binding creates it.
    localAddress:
      opts.localAddress ??
      (key === undefined && before === undefined
        ? undefined
        : net.isIPv4(opts.address)
          ? "0.0.0.0"
          : "::"),
  });
  const timer = setTimeout(
    () =>
      fail(
        `Connect to ${opts.address}:${opts.port} timed out${
          key === undefined
            ? ""
            : " (TCP MD5 is on: a peer without this password drops our SYN silently)"
        }`,
      ),
    opts.timeoutMs,
  );
  timer.unref();
  function fail(msg: string): void {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.destroy();
    onFailed(msg);
  }
  socket.once("error", (e) => fail(e.message));
  socket.once("connect", () => {
    if (done) return;
    if ((key !== undefined || before !== undefined) && !keyed) {
      fail(
        `Connected to ${opts.address} without the ${key !== undefined ? "TCP MD5 key" : "socket options"} set before connect; closed`,
      );
      return;
    }
    done = true;
    clearTimeout(timer);
    socket.removeAllListeners("error");
    onConnected(new Connection(socket, "outgoing"));
  });
  return {
    cancel() {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
    },
  };
}
