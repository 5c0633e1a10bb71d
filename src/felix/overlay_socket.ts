// The overlay fast path's rtnetlink request socket: a new block's neighbour, FDB entry and route
// in ONE sendmsg (rtnetlink applies each request of a datagram in order within that sendmsg), so
// the three reach the kernel together, with no wake-up of the process between them. Neighbours
// and FDB entries are acknowledged and their failures reported. A route is sent only where none
// is (NLM_F_EXCL: a route already there, ours or anyone's, is never replaced from here), without
// an ACK, its answer ignored: the agent's FIB (KernelFib) owns it, learns it from its route
// events, and is handed it right after (overlay_fast.ts); a route refused here is the FIB's to
// write and report. Owns: the socket, the ifindex lookup (one link dump, again after ENODEV) and
// the matching of ACKs. Not: byte layouts (fib/rtnetlink.ts), deciding what to install
// (overlay_delta.ts), the routes' state (the FIB).
import { constants as osConstants } from "node:os";
import type { NeighFailure, NeighOp } from "../fib/neigh_socket.js";
import { NetlinkSocket } from "../fib/netlink_socket.js";
import {
  addressBytes,
  decodeError,
  decodeLink,
  forEachMessage,
  MessageWriter,
  NETLINK_ROUTE,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NLMSG_DONE,
  NLMSG_ERROR,
  parseCidr,
  RT_SCOPE_UNIVERSE,
  RTM_DELNEIGH,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RTN_UNICAST,
  writeLinkDump,
  writeNeigh,
  writeRoute,
} from "../fib/rtnetlink.js";
import type { Route } from "../fib/types.js";

const ENOENT = 2;
const ENODEV = 19;
const RT_TABLE_MAIN = 254;

const errnoName = (n: number) =>
  Object.entries(osConstants.errno).find(([, v]) => v === n)?.[0] ?? `errno ${n}`;

interface Waiter {
  resolve: () => void;
  onLink?: (name: string, ifindex: number) => void;
  errno?: number;
  message?: string;
}

/**
 * True when the fast path may send this route itself: main table, metric 0, unicast, one next
 * hop through a named device with a gateway (the overlay's tunnel routes). Anything else is left
 * to the FIB alone.
 */
export function sendsItself(r: Route): boolean {
  const nh = r.nexthops[0];
  return (
    r.nexthops.length === 1 &&
    nh !== undefined &&
    nh.dev !== undefined &&
    nh.gateway !== undefined &&
    (nh.weight ?? 1) === 1 &&
    (r.type ?? "unicast") === "unicast" &&
    (r.table ?? RT_TABLE_MAIN) === RT_TABLE_MAIN &&
    (r.metric ?? 0) === 0 &&
    r.scope === undefined &&
    r.src === undefined
  );
}

export class OverlaySocket {
  /** Sends the routes that sendsItself allows itself (overlay_fast.ts hands them to the FIB later). */
  readonly sendsRoutes = true;
  private readonly sock: NetlinkSocket;
  private seq = 1;
  private readonly waiting = new Map<number, Waiter>();
  private ifindexes: Map<string, number> | undefined;

  private constructor(netns: string | undefined) {
    this.sock = new NetlinkSocket(
      NETLINK_ROUTE,
      0,
      1 << 20,
      {
        onData: (b) => this.onData(b),
        // Lost answers: every waiter resolves (its outcome unknown; the reconciler checks).
        onOverflow: () => this.settleAll(),
        onError: () => this.settleAll(),
      },
      netns ?? "",
    );
  }

  static open(netns?: string): OverlaySocket {
    return new OverlaySocket(netns);
  }

  private onData(buf: Buffer): void {
    forEachMessage(buf, (m) => {
      const w = this.waiting.get(m.seq);
      // Answers to the routes (no waiter): the FIB's own write of each reports its outcome.
      if (!w) return;
      if (m.type === NLMSG_ERROR) {
        const e = decodeError(m);
        w.errno = e.errno;
        w.message = e.message;
        this.waiting.delete(m.seq);
        w.resolve();
      } else if (m.type === NLMSG_DONE) {
        this.waiting.delete(m.seq);
        w.resolve();
      } else if (m.type === RTM_NEWLINK && w.onLink) {
        const l = decodeLink(m);
        if (l) w.onLink(l.name, l.ifindex);
      }
    });
  }

  private settleAll(): void {
    for (const w of this.waiting.values()) w.resolve();
    this.waiting.clear();
  }

  private send(w: MessageWriter): void {
    const r = this.sock.send(w.buf, 0, w.len);
    if (r < 0) throw new Error(`Sending overlay requests failed: ${errnoName(-r)}`);
  }

  /** Interface indexes by name (one link dump). */
  private async links(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const seq = this.seq++;
    const w = new MessageWriter(64);
    writeLinkDump(w, seq);
    const done = new Promise<void>((resolve) =>
      this.waiting.set(seq, { resolve, onLink: (name, i) => out.set(name, i) }),
    );
    this.send(w);
    await done;
    return out;
  }

  /**
   * Sends ops in order, then the routes that sendsItself allows, in one sendmsg; `onSent` is
   * called right after it (before any answer is read). Resolves with the entries' failures (a
   * missing entry's delete is not one); an entry refused with ENODEV is sent again once after a
   * fresh link dump (a device made again has a new index), without the routes.
   */
  async run(
    ops: readonly NeighOp[],
    onSent?: () => void,
    routes: readonly Route[] = [],
  ): Promise<NeighFailure[]> {
    const own = routes.filter(sendsItself);
    if (ops.length === 0 && own.length === 0) {
      onSent?.();
      return [];
    }
    const names = new Set([...ops.map((o) => o.dev), ...own.map((r) => r.nexthops[0]?.dev)]);
    if (!this.ifindexes || [...names].some((n) => n !== undefined && !this.ifindexes?.has(n)))
      this.ifindexes = await this.links();
    const first = await this.send1(ops, own, this.ifindexes, onSent);
    if (!first.some((f) => f.errno === ENODEV)) return first;
    this.ifindexes = await this.links();
    const again = ops.filter((o) => first.some((f) => f.what === o.what && f.errno === ENODEV));
    return [
      ...first.filter((f) => f.errno !== ENODEV),
      ...(await this.send1(again, [], this.ifindexes)),
    ];
  }

  private async send1(
    ops: readonly NeighOp[],
    routes: readonly Route[],
    links: ReadonlyMap<string, number>,
    onSent?: () => void,
  ): Promise<NeighFailure[]> {
    const failures: NeighFailure[] = [];
    const w = new MessageWriter(256 * (ops.length + routes.length));
    const pending: Promise<void>[] = [];
    const sent: { op: NeighOp; waiter: Waiter }[] = [];
    for (const op of ops) {
      const ifindex = links.get(op.dev);
      if (ifindex === undefined) {
        failures.push({ what: op.what, errno: ENODEV, code: "ENODEV", message: `no ${op.dev}` });
        continue;
      }
      const seq = this.seq++;
      const waiter: Waiter = { resolve: () => {} };
      pending.push(new Promise<void>((r) => (waiter.resolve = r)));
      this.waiting.set(seq, waiter);
      sent.push({ op, waiter });
      const set = op.op === "set";
      writeNeigh(
        w,
        set ? RTM_NEWNEIGH : RTM_DELNEIGH,
        NLM_F_ACK | (set ? NLM_F_CREATE | NLM_F_REPLACE : 0),
        seq,
        { ...op.req, ifindex },
      );
    }
    for (const r of routes) {
      const nh = r.nexthops[0];
      const ifindex = nh?.dev === undefined ? undefined : links.get(nh.dev);
      if (nh?.gateway === undefined || ifindex === undefined) continue; // the FIB's write reports it
      const { addr, len } = parseCidr(r.family, r.dst);
      writeRoute(w, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, this.seq++, {
        family: r.family,
        dst: addr,
        dstLen: len,
        table: RT_TABLE_MAIN,
        protocol: r.protocol,
        type: RTN_UNICAST,
        scope: RT_SCOPE_UNIVERSE,
        metric: 0,
        nexthops: [
          {
            gateway: addressBytes(nh.gateway.includes(":") ? 6 : r.family, nh.gateway),
            ifindex,
            onlink: nh.onlink === true,
            weight: 1,
          },
        ],
      });
    }
    if (w.len > 0) this.send(w);
    onSent?.();
    await Promise.all(pending);
    for (const { op, waiter } of sent) {
      const errno = waiter.errno ?? 0;
      if (errno === 0 || (op.op === "del" && errno === ENOENT)) continue;
      failures.push({
        what: op.what,
        errno,
        code: errnoName(errno),
        ...(waiter.message ? { message: waiter.message } : {}),
      });
    }
    return failures;
  }

  close(): void {
    this.settleAll();
    this.sock.close();
  }
}
