// The TCP transport of the speaker: one listener on a configurable address and port that closes
// connections from unknown addresses at once, outgoing connects with a per-peer source address,
// and a Connection wrapper that bounds what we buffer for a slow peer. Not: BGP framing or state.

import * as net from "node:net";
import { isIPv4 } from "node:net";

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
}

export const DEFAULT_LIMITS: ConnectionLimits = { highWater: 4 << 20, maxBuffered: 256 << 20 };

/** One established TCP connection to a peer. */
export class Connection {
  private events: ConnectionEvents | undefined;
  private closed = false;
  private backlog: Uint8Array[] = [];
  private wasCongested = false;
  readonly localAddress: string;
  readonly remoteAddress: string;
  readonly remotePort: number;

  constructor(
    private readonly socket: net.Socket,
    readonly direction: "incoming" | "outgoing",
    private readonly limits: ConnectionLimits = DEFAULT_LIMITS,
  ) {
    this.localAddress = plainAddress(socket.localAddress);
    this.remoteAddress = plainAddress(socket.remoteAddress);
    this.remotePort = socket.remotePort ?? 0;
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
    const h = (this.socket as unknown as { _handle?: { fd?: number } })._handle;
    return typeof h?.fd === "number" ? h.fd : -1;
  }

  get family(): 4 | 6 {
    return this.remoteAddress.includes(":") ? 6 : 4;
  }

  /** Bytes queued in user space and not yet handed to the kernel. */
  get buffered(): number {
    return this.socket.writableLength;
  }

  /** True when the caller should stop producing until onDrain. */
  get congested(): boolean {
    return this.socket.writableLength >= this.limits.highWater;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Queues bytes; closes the connection if the peer let more than maxBuffered pile up. */
  write(bytes: Uint8Array): void {
    if (this.closed) return;
    this.socket.write(bytes);
    if (this.socket.writableLength >= this.limits.highWater) this.wasCongested = true;
    if (this.socket.writableLength > this.limits.maxBuffered) {
      this.destroy(`Peer is not reading: ${this.socket.writableLength} bytes queued`);
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
    this.socket.end();
    // Do not wait forever for a peer that stopped reading.
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  destroy(error?: string): void {
    this.socket.destroy();
    this.finish(error);
  }

  private finish(error?: string): void {
    if (this.closed) return;
    this.closed = true;
    this.events?.onClose(error);
  }
}

export interface ListenOptions {
  address: string;
  port: number;
  /** Whether a remote address is a configured peer; others are closed at once. */
  isPeer(address: string): boolean;
  onConnection(conn: Connection): void;
  /** Connections refused because they came from an unknown address. */
  onRefused?(address: string): void;
}

/** Listens for BGP connections; resolves with the bound port once listening. */
export function listen(opts: ListenOptions): Promise<{ port: number; close(): Promise<void> }> {
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
    server.once("error", reject);
    server.listen({ host: opts.address, port: opts.port, exclusive: true }, () => {
      server.off("error", reject);
      const addr = server.address();
      const port = typeof addr === "object" && addr ? addr.port : opts.port;
      resolve({
        port,
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}

export interface ConnectOptions {
  address: string;
  port: number;
  localAddress?: string;
  timeoutMs: number;
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
  const socket = net.connect({
    host: opts.address,
    port: opts.port,
    localAddress: opts.localAddress,
    noDelay: true,
  });
  const timer = setTimeout(
    () => fail(`Connect to ${opts.address}:${opts.port} timed out`),
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
