// Neighbour and FDB entries over rtnetlink: a small request socket (in a network namespace when
// given) that resolves interface names with a link dump, sends a batch of RTM_NEWNEIGH /
// RTM_DELNEIGH requests in one sendmsg (with a caller's extra requests after them: the overlay's
// routes) and waits for each entry's ACK. Owns: the socket and the matching of answers to
// requests. Not: byte layouts (rtnetlink.ts), what to install (felix).
import { constants as osConstants } from "node:os";
import { NetlinkSocket } from "./netlink_socket.js";
import {
  decodeError,
  decodeLink,
  forEachMessage,
  MessageWriter,
  NETLINK_ROUTE,
  type NeighRequest,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_REPLACE,
  NLMSG_DONE,
  NLMSG_ERROR,
  RTM_DELNEIGH,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  writeLinkDump,
  writeNeigh,
} from "./rtnetlink.js";

const ENOENT = 2;
const ENODEV = 19;

/** One request: set (create or replace) or delete an entry; `what` names it in failures. */
export interface NeighOp {
  op: "set" | "del";
  /** The device by name (resolved to its ifindex before sending). */
  dev: string;
  req: Omit<NeighRequest, "ifindex">;
  what: string;
}

export interface NeighFailure {
  what: string;
  errno: number;
  code: string;
  message?: string;
}

const errnoName = (n: number) =>
  Object.entries(osConstants.errno).find(([, v]) => v === n)?.[0] ?? `errno ${n}`;

interface Waiter {
  resolve: () => void;
  onMessage?: (type: number, m: Parameters<Parameters<typeof forEachMessage>[1]>[0]) => void;
  errno?: number;
  message?: string;
}

/**
 * More requests sent after the entries in the same sendmsg, unacknowledged (their answers, if
 * any, are ignored): the overlay's tunnel routes (src/felix/overlay_socket.ts).
 */
export interface ExtraRequests {
  /** The devices they name (looked up with the entries' in the same link dump). */
  devs: readonly string[];
  /** How many (for the buffer's first size). */
  count: number;
  write(w: MessageWriter, links: ReadonlyMap<string, number>, nextSeq: () => number): void;
}

export class NeighbourSocket {
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

  static open(netns?: string): NeighbourSocket {
    return new NeighbourSocket(netns);
  }

  private onData(buf: Buffer): void {
    forEachMessage(buf, (m) => {
      const w = this.waiting.get(m.seq);
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
      } else w.onMessage?.(m.type, m);
    });
  }

  private settleAll(): void {
    for (const w of this.waiting.values()) w.resolve();
    this.waiting.clear();
  }

  private send(w: MessageWriter): void {
    const r = this.sock.send(w.buf, 0, w.len);
    if (r < 0) throw new Error(`Sending neighbour requests failed: ${errnoName(-r)}`);
  }

  /** Interface indexes by name (one link dump). */
  async links(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const seq = this.seq++;
    const w = new MessageWriter(64);
    writeLinkDump(w, seq);
    const done = new Promise<void>((resolve) =>
      this.waiting.set(seq, {
        resolve,
        onMessage: (type, m) => {
          if (type !== RTM_NEWLINK) return;
          const l = decodeLink(m);
          if (l) out.set(l.name, l.ifindex);
        },
      }),
    );
    this.send(w);
    await done;
    return out;
  }

  /**
   * Sends ops in order in one sendmsg; resolves with the failures (a missing entry's delete is
   * not one). `onSent` is called once the requests are in the kernel, before their answers are
   * read: rtnetlink applies a request within the sendmsg that carries it, so what the caller
   * sends after onSent (on any socket) is applied after these (a retry after ENODEV excepted).
   */
  run(ops: readonly NeighOp[], onSent?: () => void): Promise<NeighFailure[]> {
    return this.runWith(ops, onSent);
  }

  /** run(), with extra requests after the entries in the same sendmsg (not in a retry). */
  async runWith(
    ops: readonly NeighOp[],
    onSent?: () => void,
    extra?: ExtraRequests,
  ): Promise<NeighFailure[]> {
    if (ops.length === 0 && !extra) {
      onSent?.();
      return [];
    }
    // Interface indexes from the last dump while they name every device asked for; a device
    // made again gets a new index, so a request that fails with ENODEV is retried once after a
    // fresh dump (without the extra requests).
    const names = new Set([...ops.map((o) => o.dev), ...(extra?.devs ?? [])]);
    if (!this.ifindexes || [...names].some((n) => !this.ifindexes?.has(n)))
      this.ifindexes = await this.links();
    const first = await this.send1(ops, this.ifindexes, onSent, extra);
    if (!first.some((f) => f.errno === ENODEV)) return first;
    this.ifindexes = await this.links();
    const again = ops.filter((o) => first.some((f) => f.what === o.what && f.errno === ENODEV));
    return [
      ...first.filter((f) => f.errno !== ENODEV),
      ...(await this.send1(again, this.ifindexes)),
    ];
  }

  private async send1(
    ops: readonly NeighOp[],
    links: ReadonlyMap<string, number>,
    onSent?: () => void,
    extra?: ExtraRequests,
  ): Promise<NeighFailure[]> {
    const failures: NeighFailure[] = [];
    const w = new MessageWriter(256 * (ops.length + (extra?.count ?? 0)));
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
    extra?.write(w, links, () => this.seq++);
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
