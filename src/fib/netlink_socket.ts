// A raw AF_NETLINK socket over our native addon (native/ocelot_netlink.c): non-blocking send,
// queued sends done by the addon's sender thread (the kernel's work for a request runs inside
// sendmsg: there it runs beside the event loop), and libuv-driven receive, ENOBUFS surfaced as
// an "overflow" callback. Owns: the socket's
// lifetime. Not: loading the addon (lib/native.ts), message encoding (rtnetlink.ts).
import { loadAddon } from "../lib/native.js";

const EV_DATA = 0;
const EV_OVERFLOW = 1;
const EV_SEND_FAILED = 3;

export interface NetlinkSocketHandlers {
  /** A batch of whole datagrams (each 4-byte aligned), concatenated. */
  onData(buf: Buffer): void;
  /** The kernel dropped messages for this socket (ENOBUFS); resynchronise. */
  onOverflow(): void;
  /** A receive error other than ENOBUFS, or an exception thrown by onData. */
  onError(err: Error): void;
  /** A queued send (sendQueued) failed: its token and the errno. */
  onSendFailed?(token: number, errno: number): void;
}

/**
 * The sender thread's account (present once it has started): sends made, ms spent inside sendto
 * (the kernel's work) and ms waiting with nothing queued after the first send (the thread idle
 * while routes were still to come shows here), how often it found the queue empty, the wall
 * clock (Unix ms) of the first send's start and the last send's end, the most items queued.
 */
export interface SenderStats {
  sends: number;
  busyMs: number;
  idleMs: number;
  waits: number;
  firstAt: number;
  lastAt: number;
  maxQueued: number;
}

export class NetlinkSocket {
  private handle: unknown;
  readonly portId: number;

  /**
   * Opens and binds the socket; `netns` (a name under /run/netns, or a path) creates it inside
   * that network namespace, leaving the process where it is.
   */
  constructor(
    protocol: number,
    groups: number,
    rcvbuf: number,
    handlers: NetlinkSocketHandlers,
    netns = "",
  ) {
    const a = loadAddon();
    const nsPath = netns === "" || netns.includes("/") ? netns : `/run/netns/${netns}`;
    const cb = (ev: number, arg: unknown) => {
      try {
        if (ev === EV_DATA) handlers.onData(arg as Buffer);
        else if (ev === EV_OVERFLOW) handlers.onOverflow();
        else if (ev === EV_SEND_FAILED) {
          const a = arg as number[];
          for (let i = 0; i + 1 < a.length; i += 2) handlers.onSendFailed?.(a[i], a[i + 1]);
        } else handlers.onError(new Error(`Netlink receive failed with errno ${String(arg)}`));
      } catch (err) {
        // Never let an exception travel back into the addon's libuv callback.
        try {
          handlers.onError(err as Error);
        } catch {}
      }
    };
    this.handle = a.open(protocol, groups, rcvbuf, cb, nsPath);
    this.portId = a.info(this.handle).portId;
  }

  /** Sends bytes (many messages); returns bytes sent or a negative errno (e.g. -11 EAGAIN). */
  send(buf: Buffer, off = 0, len = buf.length - off): number {
    return loadAddon().send(this.handle, buf, off, len);
  }

  /**
   * Queues bytes (copied now) for the socket's sender thread, which sends them in order; a
   * failure comes back to onSendFailed with `token`. Replies arrive through onData as usual.
   */
  sendQueued(buf: Buffer, off: number, len: number, token: number): void {
    loadAddon().sendQueued(this.handle, buf, off, len, token >>> 0);
  }

  setOption(level: number, name: number, value: number): void {
    loadAddon().setOption(this.handle, level, name, value);
  }

  /** Drops notifications the kernel stamps with portId (echoes of that socket's requests). */
  dropOwnEchoes(portId: number): void {
    loadAddon().dropOwnEchoes(this.handle, portId);
  }

  info(): { portId: number; rcvbuf: number; sndbuf: number; sender?: SenderStats } {
    return loadAddon().info(this.handle);
  }

  close(): void {
    if (this.handle === undefined) return;
    loadAddon().close(this.handle);
    this.handle = undefined;
  }
}
