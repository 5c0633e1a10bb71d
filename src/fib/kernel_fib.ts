// The kernel FIB programmer: desired state in, the kernel converges to it over rtnetlink.
// Owns: batching many requests per sendmsg, matching errors to requests by sequence number,
// start-up mark and sweep, restoring our routes removed by others, link down/up, resync after
// ENOBUFS, nexthop objects (made per next hop, deleted once no route names them), the kernel's last error per refused route (a small Map beside the typed-array table,
// only for routes that failed, bounded; `ocelot routes PREFIX` shows it). Only ever changes
// routes carrying its own protocol numbers. Not: byte layouts (rtnetlink.ts), the socket
// (netlink_socket.ts), which routes are best (BGP, agent).
import { constants as osConstants } from "node:os";
import { getSystemErrorMap } from "node:util";
import { loadAddon } from "../lib/native.js";
import { NetlinkSocket, type SenderStats } from "./netlink_socket.js";
import {
  addressBytes,
  decodeAddr,
  decodeAddrDetail,
  decodeError,
  decodeLink,
  decodeNexthop,
  decodeRoute,
  type EncodedNextHop,
  forEachMessage,
  formatAddress,
  IFF_LOWER_UP,
  type KernelRoute,
  kernelRouteToRoute,
  MessageWriter,
  NETLINK_ADD_MEMBERSHIP,
  NETLINK_ROUTE,
  type NexthopGroupMember,
  type NexthopRequest,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NLMSG_DONE,
  NLMSG_ERROR,
  type NlMessage,
  parseCidr,
  type RouteRequest,
  RT_SCOPE_HOST,
  RT_SCOPE_LINK,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  RTM_DELADDR,
  RTM_DELLINK,
  RTM_DELNEXTHOP,
  RTM_DELROUTE,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWNEXTHOP,
  RTM_NEWROUTE,
  RTN_UNICAST,
  RTNLGRP_IPV4_IFADDR,
  RTNLGRP_IPV4_ROUTE,
  RTNLGRP_IPV6_IFADDR,
  RTNLGRP_IPV6_ROUTE,
  RTNLGRP_LINK,
  RTNLGRP_NEXTHOP,
  routeTypeCode,
  SOL_NETLINK,
  writeAddrDump,
  writeLinkDump,
  writeNexthop,
  writeNexthopGet,
  writeRoute,
  writeRouteDump,
  writeRouteGet,
} from "./rtnetlink.js";
import {
  type BatchFib,
  FibError,
  type FibFailure,
  type FibRouteError,
  type NextHop,
  type Route,
  type RouteScope,
  RT_TABLE_MAIN,
  RTPROT_OCELOT_AGENT,
  RTPROT_OCELOT_BGP,
  type V4Batch,
} from "./types.js";
import { NO_GROUP, V4RouteTable } from "./v4_route_table.js";

/** IPv6 routes without a metric get this one from the kernel (IP6_RT_PRIO_USER). */
const IP6_RT_PRIO_USER = 1024;
const ESRCH = 3;
/** v4 keys: slot * 2^38 + addr * 64 + len, exact in a double (slot < 2^15). */
const V4_SLOT_MUL = 2 ** 38;
/** Receive-buffer cost of one ACK or error message (skb truesize, rounded up). */
const ANSWER_TRUESIZE = 1024;
const MAX_BATCH_REQUESTS = 8192;
/** Batches the pump fills in one turn of the event loop at most (room permitting). */
const PUMP_BATCHES = 4;
/** No route request is shorter (header 16 + rtmsg 12 + RTA_DST 8 bytes): sizes a batch's arrays. */
const MIN_REQUEST_BYTES = 36;
/** Routes whose last error is kept; beyond, errors are only counted (errorsNotKept). */
const MAX_KEPT_ERRORS = 4096;
/**
 * Our nexthop objects' ids: NH_ID_BASE + a hash of (protocol, gateway, interface) in NH_ID_RANGE,
 * so a restarted process finds the same id for the same next hop (and another program's small
 * ids are far away); a taken id that is not ours moves to the next one.
 */
const NH_ID_BASE = 0x4f430000;
const NH_ID_RANGE = 0x10000;
const NH_ID_PROBES = 16;
const EEXIST = 17;
/** nhWritten: a group's routes were written through more than one object since the last dump. */
const NH_MIXED = -2;

export interface KernelFibOptions {
  /** Protocol numbers this instance owns and sweeps; two instances must not share one. */
  protocols?: number[];
  /** Bytes of requests per sendmsg (default 128 KiB). */
  batchBytes?: number;
  /**
   * Receive buffer (SO_RCVBUFFORCE, default 32 MiB each) of the request socket, which bounds
   * the requests in flight (one answer each at most), and of the event socket.
   */
  rcvbuf?: number;
  eventRcvbuf?: number;
  /** ACK every request (default: only the last of each batch; errors always come back). */
  ackEach?: boolean;
  /**
   * Route batches sent by the addon's sender thread (default true): the kernel inserts the
   * routes inside sendmsg, so on that thread its work runs beside ours (decode, RIB, the next
   * batch) instead of after it. false: sendmsg on the event loop.
   */
  sendThread?: boolean;
  /** Subscribe to route and link events (default true). */
  watch?: boolean;
  /**
   * IPv4 routes through one gateway name a kernel nexthop object (RTA_NH_ID, Linux 5.3+) made
   * once per next hop, instead of carrying the gateway in each route (default false). The
   * kernel then skips, per route, resolving and checking the gateway and allocating its
   * per-CPU state: 1M routes cost it ~40% less CPU. The object's interface is the kernel's
   * route lookup of the gateway (or the next hop's own); what the kernel cannot make (no
   * support, gateway not on a connected subnet, link down) falls back to the gateway in each
   * route. Re-made after link, address and nexthop changes.
   */
  nexthopObjects?: boolean;
  /**
   * Graceful restart: keep our routes found in the kernel at start for this long (ms) before
   * sweeping the ones nobody set again; endGracefulHold() sweeps earlier. 0 sweeps at start.
   */
  gracefulHoldMs?: number;
  /**
   * A route of our protocols that we did not set (another writer of our protocol: the CNI
   * plugin adds a new pod's route before the agent has seen the pod) is removed by a resync
   * only after it has been there, unwanted, this long (ms). Default 0: at once when its
   * notification arrives (outside a graceful hold), else at the next resync.
   * The start-up sweep and the end of a graceful hold are not affected.
   */
  unwantedGraceMs?: number;
  /** Network namespace (name under /run/netns, or a path) to program; default: our own. */
  netns?: string;
  /** Observability hook: overflow, resync, restored, link, address, failure. */
  onEvent?: (e: FibEvent) => void;
}

export type FibEvent =
  | { kind: "overflow"; socket: "events" | "requests" }
  | { kind: "resync"; installed: number; removed: number; ms: number }
  | { kind: "restored"; count: number }
  | { kind: "nexthopsSwept"; count: number }
  | { kind: "nexthopsDeleted"; count: number }
  | { kind: "link"; ifindex: number; name: string; up: boolean }
  /** A routable (not link- or host-scoped) address added to or removed from a link. */
  | { kind: "address"; ifindex: number; address: string; added: boolean }
  | { kind: "failure"; failure: FibFailure };

/** One of our nexthop objects: a gateway's (gateway, oif), or a group's (members, weights). */
interface NhInfo {
  protocol: number;
  gateway: string;
  oif: number;
  group?: NexthopGroupMember[];
}

const byId = (g: NexthopGroupMember[]) => [...g].sort((x, y) => x.id - y.id);

/** The same members with the same weights, in any order. */
function sameMembers(a: NexthopGroupMember[] | undefined, b: NexthopGroupMember[]): boolean {
  if (a === undefined || a.length !== b.length) return false;
  const x = byId(a);
  const y = byId(b);
  return x.every((m, i) => m.id === y[i].id && m.weight === y[i].weight);
}

interface Group {
  family: 4 | 6;
  protocol: number;
  type: number;
  scope: number;
  nexthops: EncodedNextHop[];
  /** Interface names as given, re-resolved when links come and go. */
  devs: (string | undefined)[];
  prefsrc?: Uint8Array;
  sig: string;
  /** A route read from the kernel naming a nexthop object (RTA_NH_ID): its id. */
  nhId?: number;
}

interface Slot {
  family: 4 | 6;
  table: number;
  metric: number;
}

type Key = number | string;

/** Keys gathered for a job: IPv4 keys in a Float64Array (no boxed numbers), others in an array. */
class KeyList {
  private nums = new Float64Array(256);
  private n4 = 0;
  private readonly strs: string[] = [];
  push(k: Key): void {
    if (typeof k === "string") {
      this.strs.push(k);
      return;
    }
    if (this.n4 === this.nums.length) {
      const more = new Float64Array(this.n4 * 2);
      more.set(this.nums);
      this.nums = more;
    }
    this.nums[this.n4++] = k;
  }
  get length(): number {
    return this.n4 + this.strs.length;
  }
  readonly at = (i: number): Key => (i < this.n4 ? this.nums[i] : this.strs[i - this.n4]);
}

/** Request i's key in a batch. */
function keyAt(b: Batch, i: number): Key {
  const s = b.strs?.[i];
  return s === undefined ? b.nums[i] : s;
}

/** Request i's job in a batch (its run's). */
function jobAt(b: Batch, i: number): Job {
  let j = 0;
  while (b.jobEnds[j] <= i) j++;
  return b.jobs[j];
}

// Split by multiplying and subtracting powers of two (exact in a double): `%` on a double
// that is not a small integer is a call to fmod.
const v4Slot = (key: number): number => Math.floor(key / V4_SLOT_MUL);
const v4Addr = (key: number): number => Math.floor((key - v4Slot(key) * V4_SLOT_MUL) / 64);
const v4Len = (key: number): number => key - Math.floor(key / 64) * 64;
const OP_SET = 0;
const OP_DEL = 1;

/** A unit of work for the pump: routes encoded lazily from a cursor, resolved as a whole. */
interface Job {
  op: number;
  n: number;
  key(i: number): Key;
  /** IPv4 batches: each route's cell in the table (from setDesiredMany), valid while gen stays. */
  cells?: Int32Array;
  gen?: number;
  cursor: number;
  outstanding: number;
  failures: FibFailure[];
  done: (failures: FibFailure[]) => void;
}

/**
 * One sendmsg worth of requests awaiting its final ACK. No object or boxed number per request:
 * a batch may wait for the kernel while the next ones are built (sender thread), and what it
 * held per request would outlive the young generation.
 */
interface Batch {
  firstSeq: number;
  lastSeq: number;
  /** Requests in the batch. */
  count: number;
  /** The jobs of its requests in order, and where each one's run of requests ends. */
  jobs: Job[];
  jobEnds: number[];
  /** Request i's key: IPv4 keys here, an IPv6 key in strs[i] (strs only when there is one). */
  nums: Float64Array;
  strs?: (string | undefined)[];
  ops: Uint8Array;
  prev: Int32Array; // installed gid before the request, -1 none
  /** Its arrays went back to the spares (finished). */
  released: boolean;
}

interface Dump {
  seq: number;
  onMessage: (m: NlMessage) => void;
  resolve: () => void;
  reject: (e: Error) => void;
  interrupted: boolean;
}

/** A route of any protocol by what identifies it in the kernel (foreignNh). */
function foreignKey(k: KernelRoute): string {
  return `${k.family}|${k.table}|${k.metric}|${formatAddress(k.dst)}/${k.dstLen}`;
}

function errnoName(errno: number): string {
  for (const [name, v] of Object.entries(osConstants.errno)) if (v === errno) return name;
  return `errno ${errno}`;
}

/** The errno's text as strerror words it ("Network is unreachable"), from libuv's table. */
export function errnoReason(errno: number): string {
  const text = getSystemErrorMap().get(-errno)?.[1];
  return text ? text[0].toUpperCase() + text.slice(1) : `errno ${errno}`;
}

export class KernelFib implements BatchFib {
  readonly protocols: Set<number>;
  private readonly netns: string;
  private readonly opts: Required<Omit<KernelFibOptions, "onEvent" | "protocols" | "netns">>;
  /** The blocking socket for nexthop objects and gateway lookups (-1: none, not in use). */
  private nhFd = -1;
  /** Per group: its nexthop object's id, 0 = the gateway in each route, undefined = not made. */
  private nhOfGroup: (number | undefined)[] = [];
  /** A nexthop sweep under way (its route dump and a resync's run one after the other). */
  private nhSweepRunning?: Promise<void>;
  /** Nexthop objects of ours (made, or found at start), by id. */
  private readonly nhById = new Map<number, NhInfo>();
  /**
   * Per group: the object its routes were written through since the last dump of ours (0: the
   * gateway in each route; NH_MIXED: more than one). A group read from the kernel names its
   * own (Group.nhId). With the table's installed count per group, which objects routes name.
   */
  private nhWritten: (number | undefined)[] = [];
  /**
   * Our objects that routes of other protocols may name without our knowing: found at start (or
   * all, after the event socket overflowed) until a dump of every route has been read.
   */
  private readonly nhUnverified = new Set<number>();
  /** Routes of other protocols naming one of our objects (seen in events or a dump): key → id. */
  private readonly foreignNh = new Map<string, number>();
  /** An object may have lost its last route: collect once requests up to nhDropSeq are answered. */
  private nhGcWanted = false;
  private nhDropSeq = 0;
  private nhGcScheduled = false;
  /** Links' carrier (IFF_LOWER_UP), kept while nexthop objects are in use. */
  private readonly carrier = new Map<number, boolean>();
  private readonly onEvent: (e: FibEvent) => void;
  private req!: NetlinkSocket;
  private events?: NetlinkSocket;
  private seq = 1;
  private readonly writer: MessageWriter;

  private readonly groups: Group[] = [];
  private readonly groupBySig = new Map<string, number>();
  private readonly slots: Slot[] = [];
  private readonly slotByKey = new Map<string, number>();
  /** IPv4 routes: desired and installed group per (slot, addr, len), in typed arrays. */
  private readonly v4 = new V4RouteTable();
  /** IPv6 routes by string key: desired and installed group. */
  private readonly desired6 = new Map<string, number>();
  private readonly installed6 = new Map<string, number>();
  private readonly matchCache = new Map<number, boolean>();
  private readonly templates = new Map<number, Buffer>();
  /** The template used last (a batch's routes mostly share one): no Map lookup per route. */
  private lastTemplateKey = -1;
  private lastTemplate: Buffer | undefined;

  private readonly links = new Map<number, { name: string; up: boolean }>();
  /** The links' indexes by name, kept with `links` (setLink, deleteLink): resolveDev's. */
  private readonly linkByName = new Map<string, number>();
  /** Routable (not link- or host-scope) addresses per interface: where gateways can resolve. */
  private readonly addrCount = new Map<number, number>();
  private readonly queue: Job[] = [];
  private readonly inflight: Batch[] = [];
  /** Typed arrays of finished batches, reused: ~40 KiB a batch would otherwise be garbage. */
  private readonly spare: { ops: Uint8Array; prev: Int32Array; nums: Float64Array }[] = [];
  private pumping = false;
  private answerBudget = 1024;
  private batchLimit = 64 * 1024;
  private inflightRequests = 0;
  private dump?: Dump;
  private holdTimer?: NodeJS.Timeout;
  private resyncTimer?: NodeJS.Timeout;
  private holding = false;
  /**
   * Our routes the kernel held when we opened: more than 0 after a restart (the graceful-restart
   * signal the BGP speaker announces with the R bit).
   */
  foundAtStart = 0;
  /** Routes of ours found in the kernel unwanted, by key: when a resync first saw them. */
  private unwantedSince = new Map<Key, number>();
  private resyncRunning?: Promise<void>;
  private resyncAgain = false;
  /** When the last resync ended (performance.now(); freshForMs). */
  private lastResyncAt?: number;
  private repairKeys = new Set<Key>();
  private repairScheduled = false;
  private strayKeys = new Set<Key>();
  private strayScheduled = false;
  private closed = false;
  /** The kernel's last error per route key, only for routes it refused (few, bounded). */
  private readonly routeErrors = new Map<Key, FibRouteError>();
  /** Refusals counted by "op errno-name" ("set ENETUNREACH"), for metrics. */
  private readonly errorCounts = new Map<string, number>();
  readonly stats = {
    sent: 0,
    batches: 0,
    failures: 0,
    overflows: 0,
    resyncs: 0,
    /** Routes of ours someone else removed, put back. */
    restored: 0,
    /** Routes of our protocols nobody set (someone else's, or left by an earlier run), removed. */
    swept: 0,
    /**
     * Nexthop objects of our protocols that no route names (a crash's, or ours from a run with
     * objects, when they are off now), deleted after the start-up or graceful-hold sweep.
     */
    nexthopsSwept: 0,
    /** Nexthop objects of ours deleted while running, once no route named them any more. */
    nexthopsDeleted: 0,
    /** Routes whose last error is kept now. */
    errorsKept: 0,
    /** Errors not kept per route because MAX_KEPT_ERRORS routes already had one. */
    errorsNotKept: 0,
  };

  private constructor(opts: KernelFibOptions) {
    this.protocols = new Set(opts.protocols ?? [RTPROT_OCELOT_BGP, RTPROT_OCELOT_AGENT]);
    this.opts = {
      batchBytes: opts.batchBytes ?? 128 * 1024,
      // 32 MiB (the kernel grants twice that): 32k requests in flight, ~0.1 s of the kernel's
      // inserts queued ahead, so a pause of ours (a GC, a table's growth, a burst of UPDATEs)
      // does not leave the sender thread idle; 8 MiB left it idle 25-31 times in a 1M run. The
      // memory is the kernel's and is used only by answers not read yet.
      rcvbuf: opts.rcvbuf ?? 32 * 1024 * 1024,
      eventRcvbuf: opts.eventRcvbuf ?? 32 * 1024 * 1024,
      ackEach: opts.ackEach ?? false,
      sendThread: opts.sendThread ?? process.env.OCELOT_FIB_SEND_THREAD !== "0",
      watch: opts.watch ?? true,
      nexthopObjects: opts.nexthopObjects ?? false,
      gracefulHoldMs: opts.gracefulHoldMs ?? 0,
      unwantedGraceMs: opts.unwantedGraceMs ?? 0,
    };
    this.onEvent = opts.onEvent ?? (() => {});
    this.netns = opts.netns ?? "";
    this.writer = new MessageWriter(this.opts.batchBytes + 4096);
  }

  /** Opens the sockets, learns links and our routes in the kernel, and reconciles. */
  static async open(opts: KernelFibOptions = {}): Promise<KernelFib> {
    const fib = new KernelFib(opts);
    await fib.start();
    return fib;
  }

  private async start(): Promise<void> {
    this.req = new NetlinkSocket(
      NETLINK_ROUTE,
      0,
      this.opts.rcvbuf,
      {
        onData: (b) => this.onReply(b),
        onOverflow: () => this.onOverflow("requests"),
        onError: (e) => this.fail(e),
        onSendFailed: (token, errno) => this.onSendFailed(token, errno),
      },
      this.netns,
    );
    // Each request can draw one answer (an ACK or an error) of up to ~1 KiB of receive-buffer
    // truesize; unread answers are kept within half of what the kernel granted.
    const info = this.req.info();
    this.answerBudget = Math.max(16, Math.floor(info.rcvbuf / 2 / ANSWER_TRUESIZE));
    // netlink_sendmsg refuses a message larger than the send buffer (EMSGSIZE).
    this.batchLimit = Math.max(4096, Math.min(this.opts.batchBytes, info.sndbuf / 2));
    if (this.opts.watch) {
      const groups =
        (1 << (RTNLGRP_LINK - 1)) |
        (1 << (RTNLGRP_IPV4_ROUTE - 1)) |
        (1 << (RTNLGRP_IPV6_ROUTE - 1)) |
        (1 << (RTNLGRP_IPV4_IFADDR - 1)) |
        (1 << (RTNLGRP_IPV6_IFADDR - 1));
      this.events = new NetlinkSocket(
        NETLINK_ROUTE,
        groups,
        this.opts.eventRcvbuf,
        {
          onData: (b) => this.onEventData(b),
          onOverflow: () => this.onOverflow("events"),
          onError: (e) => this.fail(e),
        },
        this.netns,
      );
      // The kernel stamps notifications with the requester's port: drop our own echoes.
      this.events.dropOwnEchoes(this.req.portId);
    }
    if (this.opts.nexthopObjects) this.openNexthops();
    this.holding = this.opts.gracefulHoldMs > 0;
    await this.resync();
    this.foundAtStart = this.v4.installedCount + this.installed6.size;
    if (!this.holding) await this.sweepNexthops();
    if (this.holding) {
      // setTimeout fires at once past 2^31-1 ms: a longer hold is cut to that (24.8 days).
      const ms = Math.min(this.opts.gracefulHoldMs, 2 ** 31 - 1);
      this.holdTimer = setTimeout(() => void this.endGracefulHold(), ms);
      this.holdTimer.unref?.();
    }
  }

  // ---- public API ---------------------------------------------------------------------------

  set(routes: Route[]): Promise<void> {
    const keys: Key[] = [];
    for (const r of routes) {
      this.checkProtocol(r.protocol);
      const slot = this.slotOf(r.family, r.table ?? RT_TABLE_MAIN, r.metric ?? 0);
      const { addr, len } = parseCidr(r.family, r.dst);
      const gid = this.groupOf(
        r.family,
        r.protocol,
        r.type ?? "unicast",
        r.scope,
        r.nexthops,
        r.src,
      );
      const key = this.keyOf(slot, addr, len);
      this.setDesired(key, gid);
      keys.push(key);
    }
    return this.enqueue(OP_SET, keys.length, (i) => keys[i]);
  }

  remove(routes: Pick<Route, "family" | "dst" | "table" | "metric" | "protocol">[]): Promise<void> {
    const keys: Key[] = [];
    for (const r of routes) {
      this.checkProtocol(r.protocol);
      const slot = this.slotOf(r.family, r.table ?? RT_TABLE_MAIN, r.metric ?? 0);
      const { addr, len } = parseCidr(r.family, r.dst);
      const key = this.keyOf(slot, addr, len);
      this.setDesired(key, undefined);
      keys.push(key);
    }
    return this.enqueue(OP_DEL, keys.length, (i) => keys[i]);
  }

  /** The fast path: many IPv4 routes with one attribute set, no per-route strings. */
  setV4Batch(b: V4Batch): Promise<void> {
    this.checkProtocol(b.protocol);
    const n = b.count ?? b.addrs.length;
    const slot = this.slotOf(4, b.table ?? RT_TABLE_MAIN, b.metric ?? 0);
    const base = slot * V4_SLOT_MUL;
    const gid = this.groupOf(4, b.protocol, b.type ?? "unicast", b.scope, b.nexthops, b.src);
    const { addrs, lens } = b;
    const cells = new Int32Array(n);
    this.v4.setDesiredMany(slot, addrs, lens, n, gid, cells);
    return this.enqueue(OP_SET, n, (i) => base + addrs[i] * 64 + lens[i], cells);
  }

  removeV4Batch(
    b: Pick<V4Batch, "addrs" | "lens" | "count" | "table" | "metric" | "protocol">,
  ): Promise<void> {
    this.checkProtocol(b.protocol);
    const n = b.count ?? b.addrs.length;
    const slot = this.slotOf(4, b.table ?? RT_TABLE_MAIN, b.metric ?? 0);
    const base = slot * V4_SLOT_MUL;
    const { addrs, lens } = b;
    for (let i = 0; i < n; i++) this.v4.setDesired(slot, addrs[i], lens[i], NO_GROUP);
    return this.enqueue(OP_DEL, n, (i) => base + addrs[i] * 64 + lens[i]);
  }

  desired(): Route[] {
    const out: Route[] = [];
    this.v4.forEach((slot, addr, len, gid) => {
      if (gid !== NO_GROUP) out.push(this.toRoute(slot * V4_SLOT_MUL + addr * 64 + len, gid));
    });
    for (const [key, gid] of this.desired6) out.push(this.toRoute(key, gid));
    return out;
  }

  // ---- route state: IPv4 in the table, IPv6 in maps ------------------------------------------

  private getDesired(key: Key): number | undefined {
    if (typeof key === "string") return this.desired6.get(key);
    const g = this.v4.getDesired(v4Slot(key), v4Addr(key), v4Len(key));
    return g === NO_GROUP ? undefined : g;
  }

  private getInstalled(key: Key): number | undefined {
    if (typeof key === "string") return this.installed6.get(key);
    const g = this.v4.getInstalled(v4Slot(key), v4Addr(key), v4Len(key));
    return g === NO_GROUP ? undefined : g;
  }

  private setDesired(key: Key, gid: number | undefined): void {
    if (typeof key === "number")
      this.v4.setDesired(v4Slot(key), v4Addr(key), v4Len(key), gid ?? NO_GROUP);
    else if (gid === undefined) this.desired6.delete(key);
    else this.desired6.set(key, gid);
  }

  private setInstalled(key: Key, gid: number | undefined): void {
    if (typeof key === "number")
      this.v4.setInstalled(v4Slot(key), v4Addr(key), v4Len(key), gid ?? NO_GROUP);
    else if (gid === undefined) this.installed6.delete(key);
    else this.installed6.set(key, gid);
  }

  /** Every route desired or installed: fn(key, desired, installed); fn must not change state. */
  private forEachRoute(
    fn: (key: Key, desired: number | undefined, installed: number | undefined) => void,
  ): void {
    this.v4.forEach((slot, addr, len, d, s) => {
      const key = slot * V4_SLOT_MUL + addr * 64 + len;
      fn(key, d === NO_GROUP ? undefined : d, s === NO_GROUP ? undefined : s);
    });
    for (const [key, d] of this.desired6) fn(key, d, this.installed6.get(key));
    for (const [key, s] of this.installed6) if (!this.desired6.has(key)) fn(key, undefined, s);
  }

  /**
   * The kernel's last error for a route to `dst` (any table and metric of ours), kept until
   * the route is sent again, withdrawn or installed; undefined when it has none.
   */
  routeError(dst: string): FibRouteError | undefined {
    if (this.routeErrors.size === 0) return undefined;
    const family = dst.includes(":") ? 6 : 4;
    const { addr, len } = parseCidr(family, dst);
    for (let slot = 0; slot < this.slots.length; slot++) {
      if (this.slots[slot].family !== family) continue;
      const e = this.routeErrors.get(this.keyOf(slot, addr, len));
      if (e) return e;
    }
    return undefined;
  }

  /** Route requests the kernel refused, by operation and errno name (for metrics). */
  errorsByErrno(): { op: "set" | "remove"; errno: string; count: number }[] {
    return [...this.errorCounts].map(([k, count]) => {
      const [op, errno] = k.split(" ");
      return { op: op as "set" | "remove", errno, count };
    });
  }

  /** Counts for status: desired, installed (ours, as we believe the kernel holds them). */
  status(): {
    desired: number;
    installed: number;
    holding: boolean;
    errorsByErrno: ReturnType<KernelFib["errorsByErrno"]>;
  } & KernelFib["stats"] {
    return {
      desired: this.v4.desiredCount + this.desired6.size,
      installed: this.v4.installedCount + this.installed6.size,
      holding: this.holding,
      ...this.stats,
      errorsByErrno: this.errorsByErrno(),
    };
  }

  /** The request socket's sender thread's account (undefined before its first send). */
  senderStats(): SenderStats | undefined {
    return this.closed ? undefined : this.req.info().sender;
  }

  /** Ends the graceful-restart hold: our routes nobody set again are removed now. */
  async endGracefulHold(): Promise<void> {
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    if (!this.holding) return;
    this.holding = false;
    await this.sweep();
    await this.sweepNexthops();
    this.scheduleNexthopGc();
  }

  /**
   * How long ago (ms) the last resync read the kernel, while route and link events have been
   * watched since, so that what others changed is known; Infinity when not known fresh (no
   * watch, no resync yet, one running or wanted after an overflow, or closed).
   */
  freshForMs(): number {
    if (!this.opts.watch || this.closed || this.resyncRunning || this.lastResyncAt === undefined)
      return Number.POSITIVE_INFINITY;
    return performance.now() - this.lastResyncAt;
  }

  /** Dumps the kernel and converges it to the desired state (also run after ENOBUFS). */
  resync(): Promise<void> {
    if (this.resyncRunning) {
      this.resyncAgain = true;
      return this.resyncRunning;
    }
    this.lastResyncAt = undefined;
    this.resyncRunning = (async () => {
      try {
        // One dump at a time: a nexthop sweep's route dump finishes first.
        while (this.nhSweepRunning) await this.nhSweepRunning;
        do {
          this.resyncAgain = false;
          await this.resyncOnce();
        } while (this.resyncAgain && !this.closed);
        this.lastResyncAt = performance.now();
      } finally {
        this.resyncRunning = undefined;
      }
      // What the kernel holds is known again: objects no route names now can go.
      if (this.nhFd >= 0) {
        this.nhGcWanted = true;
        this.scheduleNexthopGc();
      }
    })();
    return this.resyncRunning;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.holdTimer) clearTimeout(this.holdTimer);
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    this.events?.close();
    this.req.close();
    // No route of ours left (a clean stop removed them): our nexthop objects go too. Routes
    // kept for a graceful restart keep theirs (a restart finds and reuses them).
    if (this.nhFd >= 0 && this.v4.installedCount === 0) {
      // Groups before their members.
      const ids = [...this.nhById].sort(([, a], [, b]) => (a.group ? 0 : 1) - (b.group ? 0 : 1));
      for (const [id] of ids) this.nhRequest((w) => writeNexthopGet(w, NLM_F_ACK, 1, id, true));
    }
    if (this.nhFd >= 0) loadAddon().requestClose(this.nhFd);
    this.nhFd = -1;
    const err = new Error("FIB closed");
    this.dump?.reject(err);
    const jobs = new Set<Job>(this.queue);
    for (const batch of this.inflight) for (const j of batch.jobs) jobs.add(j);
    this.queue.length = 0;
    this.inflight.length = 0;
    this.inflightRequests = 0;
    for (const j of jobs)
      j.done([
        {
          route: "*",
          op: j.op === OP_SET ? "set" : "remove",
          errno: 0,
          code: "ECLOSED",
          message: err.message,
        },
      ]);
  }

  // ---- keys, slots, groups ------------------------------------------------------------------

  private checkProtocol(p: number): void {
    if (!this.protocols.has(p))
      throw new Error(
        `Route protocol ${p} is not owned by this FIB (owns ${[...this.protocols].join(", ")})`,
      );
  }

  private slotOf(family: 4 | 6, table: number, metric: number): number {
    const m = family === 6 && metric === 0 ? IP6_RT_PRIO_USER : metric;
    const k = `${family}|${table}|${m}`;
    let s = this.slotByKey.get(k);
    if (s === undefined) {
      if (this.slots.length >= 2 ** 15)
        throw new Error(`Too many (table, metric) pairs: ${this.slots.length}`);
      s = this.slots.length;
      this.slots.push({ family, table, metric: m });
      this.slotByKey.set(k, s);
    }
    return s;
  }

  private keyOf(slot: number, addr: Uint8Array, len: number): Key {
    if (addr.length === 4)
      return (
        slot * V4_SLOT_MUL +
        (addr[0] * 2 ** 24 + (addr[1] << 16) + (addr[2] << 8) + addr[3]) * 64 +
        len
      );
    return `${slot}|${Buffer.from(addr).toString("hex")}/${len}`;
  }

  private splitKey(key: Key): { slot: Slot; dst: Uint8Array; len: number } {
    if (typeof key === "number") {
      const slot = Math.floor(key / V4_SLOT_MUL);
      const rest = key - slot * V4_SLOT_MUL;
      const addr = Math.floor(rest / 64);
      return {
        slot: this.slots[slot],
        dst: new Uint8Array([addr >>> 24, (addr >>> 16) & 255, (addr >>> 8) & 255, addr & 255]),
        len: rest - addr * 64,
      };
    }
    const bar = key.indexOf("|");
    const slash = key.indexOf("/");
    return {
      slot: this.slots[Number(key.slice(0, bar))],
      dst: Uint8Array.from(Buffer.from(key.slice(bar + 1, slash), "hex")),
      len: Number(key.slice(slash + 1)),
    };
  }

  /** The links this FIB watches by name: index (a recreated link has a new one) and state. */
  watchedLinks(): Map<string, { index: number; up: boolean }> {
    const out = new Map<string, { index: number; up: boolean }>();
    for (const [index, l] of this.links) out.set(l.name, { index, up: l.up });
    return out;
  }

  private resolveDev(dev: string | undefined): number {
    if (!dev) return 0;
    return this.linkByName.get(dev) ?? -1;
  }

  private setLink(ifindex: number, l: { name: string; up: boolean }): void {
    const before = this.links.get(ifindex);
    this.links.set(ifindex, l);
    if (before !== undefined && before.name !== l.name) this.forgetName(before.name, ifindex);
    if (!this.linkByName.has(l.name)) this.linkByName.set(l.name, ifindex);
  }

  private deleteLink(ifindex: number): void {
    const before = this.links.get(ifindex);
    this.links.delete(ifindex);
    if (before !== undefined) this.forgetName(before.name, ifindex);
  }

  /**
   * ifindex no longer carries name: another link of that name (a delete missed) is found
   * again, the first as the links' search order has it.
   */
  private forgetName(name: string, ifindex: number): void {
    if (this.linkByName.get(name) !== ifindex) return;
    this.linkByName.delete(name);
    for (const [k, l] of this.links)
      if (l.name === name) {
        this.linkByName.set(name, k);
        return;
      }
  }

  private groupOf(
    family: 4 | 6,
    protocol: number,
    typeName: NonNullable<Route["type"]>,
    scopeName: RouteScope | undefined,
    hops: NextHop[],
    src: string | undefined,
  ): number {
    const type = routeTypeCode(typeName);
    if (type === undefined) throw new Error(`Unknown route type "${typeName}"`);
    const unicast = type === RTN_UNICAST;
    if (unicast && hops.length === 0) throw new Error("Unicast route needs at least one next hop");
    const nexthops: EncodedNextHop[] = [];
    const devs: (string | undefined)[] = [];
    if (unicast) {
      for (const h of hops) {
        const ifindex = this.resolveDev(h.dev);
        if (ifindex < 0) throw new Error(`Unknown interface "${h.dev}"`);
        if (h.weight !== undefined && (h.weight < 1 || h.weight > 256))
          throw new Error(`Next-hop weight out of range 1..256: ${h.weight}`);
        nexthops.push({
          // RFC 8950: an IPv4 route may have an IPv6 gateway (sent as RTA_VIA).
          gateway: h.gateway
            ? addressBytes(h.gateway.includes(":") ? 6 : family, h.gateway)
            : undefined,
          ifindex,
          onlink: h.onlink === true,
          weight: h.weight ?? 1,
        });
        devs.push(h.dev);
      }
    }
    const deviceOnly = unicast && nexthops.every((n) => !n.gateway);
    let scope =
      scopeName === "link"
        ? RT_SCOPE_LINK
        : scopeName === "host"
          ? RT_SCOPE_HOST
          : RT_SCOPE_UNIVERSE;
    if (scopeName === undefined && deviceOnly && family === 4) scope = RT_SCOPE_LINK;
    if (family === 6) scope = RT_SCOPE_UNIVERSE; // IPv6 has no route scope
    return this.intern({
      family,
      protocol,
      type,
      scope,
      nexthops,
      devs,
      prefsrc: src ? addressBytes(family, src) : undefined,
      sig: "",
    });
  }

  private intern(g: Group): number {
    const hops = g.nexthops
      .map(
        (n) =>
          `${n.gateway ? formatAddress(n.gateway) : "-"}@${n.ifindex}${n.onlink ? "!" : ""}*${g.nexthops.length > 1 ? n.weight : 1}`,
      )
      .sort()
      .join(",");
    g.sig = `${g.family}|${g.protocol}|${g.type}|${g.scope}|${g.prefsrc ? formatAddress(g.prefsrc) : ""}|${g.type === RTN_UNICAST ? hops : ""}${g.nhId !== undefined ? `|nh${g.nhId}` : ""}`;
    let id = this.groupBySig.get(g.sig);
    if (id === undefined) {
      if (this.groups.length >= 2 ** 24)
        throw new Error(`Too many distinct next-hop sets: ${this.groups.length}`);
      id = this.groups.length;
      this.groups.push(g);
      this.groupBySig.set(g.sig, id);
    }
    return id;
  }

  /** Whether the kernel's route (group k) is what we want (group d); ifindex 0 = any. */
  private matches(d: number, k: number): boolean {
    if (d === k) return true;
    const ck = d * 2 ** 26 + k;
    const hit = this.matchCache.get(ck);
    if (hit !== undefined) return hit;
    const a = this.groups[d];
    const b = this.groups[k];
    let ok =
      a.family === b.family &&
      a.protocol === b.protocol &&
      a.type === b.type &&
      (a.family === 6 || a.scope === b.scope) &&
      (a.prefsrc ? formatAddress(a.prefsrc) : "") === (b.prefsrc ? formatAddress(b.prefsrc) : "");
    if (ok && a.type === RTN_UNICAST) {
      ok = a.nexthops.length === b.nexthops.length;
      const multi = a.nexthops.length > 1;
      for (const n of a.nexthops) {
        if (!ok) break;
        const gw = n.gateway ? formatAddress(n.gateway) : "";
        ok = b.nexthops.some(
          (m) =>
            (m.gateway ? formatAddress(m.gateway) : "") === gw &&
            (n.ifindex === 0 || n.ifindex === m.ifindex) &&
            n.onlink === m.onlink &&
            (!multi || n.weight === m.weight),
        );
      }
    }
    // Through a nexthop object: only the one we would name now (none when objects are off, so
    // a restart with OCELOT_FIB_NEXTHOP_OBJECTS=0 puts the gateway back in each route).
    // Without one (nhId 0): only when we would name none either.
    if (ok && b.nhId !== undefined)
      ok =
        b.nhId === 0
          ? this.nhFd < 0 || this.nexthopOf(d) === 0
          : this.nhFd >= 0 && this.nexthopOf(d) === b.nhId;
    this.matchCache.set(ck, ok);
    return ok;
  }

  private groupLinksUp(gid: number): boolean {
    for (const n of this.groups[gid].nexthops) {
      if (n.ifindex > 0 && this.links.get(n.ifindex)?.up === false) return false;
    }
    return true;
  }

  private toRoute(key: Key, gid: number): Route {
    const { slot, dst, len } = this.splitKey(key);
    const g = this.groups[gid];
    return kernelRouteToRoute(
      {
        family: slot.family,
        dst,
        dstLen: len,
        table: slot.table,
        protocol: g.protocol,
        scope: g.scope,
        type: g.type,
        flags: 0,
        metric: slot.metric,
        nexthops: g.nexthops,
        prefsrc: g.prefsrc,
      },
      (i) => this.links.get(i)?.name,
    );
  }

  private describe(key: Key): string {
    const { slot, dst, len } = this.splitKey(key);
    return `${formatAddress(dst)}/${len} table ${slot.table} metric ${slot.metric}`;
  }

  // ---- the pump: jobs → batches → sendmsg ---------------------------------------------------

  private enqueue(
    op: number,
    n: number,
    key: (i: number) => Key,
    cells?: Int32Array,
  ): Promise<void> {
    if (this.closed) return Promise.reject(new Error("FIB closed"));
    return new Promise((resolve, reject) => {
      let settled = false;
      const job: Job = {
        op,
        n,
        key,
        ...(cells ? { cells, gen: this.v4.gen } : {}),
        cursor: 0,
        outstanding: n,
        failures: [],
        done: (f) => {
          if (settled) return;
          settled = true;
          if (f.length) reject(new FibError(f));
          else resolve();
        },
      };
      if (n === 0) return resolve();
      this.queue.push(job);
      this.schedulePump();
    });
  }

  private schedulePump(): void {
    if (this.pumping || this.closed) return;
    this.pumping = true;
    setImmediate(() => {
      this.pumping = false;
      this.pump();
    });
  }

  /**
   * Fills and sends up to PUMP_BATCHES batches (while the window has room), then yields so
   * replies and events are read in between. More than one a turn: a turn may be long (a peer's
   * table decoded in it), and one batch a turn would leave the sender thread idle meanwhile.
   */
  private pump(): void {
    let n = 0;
    while (n < PUMP_BATCHES && this.pumpOne()) n++;
    // Stopped by the limit: the rest next turn. Otherwise the queue is empty, or the window
    // full (an ACK's finishBatch pumps again), or a dump runs (its end pumps again).
    if (n === PUMP_BATCHES && this.queue.length) this.schedulePump();
  }

  /** Fills and sends one batch; false when nothing could be sent (empty, no room, a dump). */
  private pumpOne(): boolean {
    if (this.closed || this.dump) return false;
    // Sequence numbers restart when nothing is outstanding, long before they reach 2^32.
    if (this.seq > 2 ** 31 && this.inflight.length === 0) this.seq = 1;
    const room = this.answerBudget - this.inflightRequests;
    if (this.queue.length === 0 || room < Math.min(64, this.answerBudget)) return false;
    const maxRequests = Math.min(this.batchRequests(), room);
    const w = this.writer;
    w.reset();
    const arrays = this.spare.pop() ?? {
      ops: new Uint8Array(this.batchRequests()),
      prev: new Int32Array(this.batchRequests()),
      nums: new Float64Array(this.batchRequests()),
    };
    const batch: Batch = {
      firstSeq: this.seq,
      lastSeq: 0,
      count: 0,
      jobs: [],
      jobEnds: [],
      nums: arrays.nums,
      ops: arrays.ops,
      prev: arrays.prev,
      released: false,
    };
    let lastAt = -1;
    while (this.queue.length > 0 && w.len < this.batchLimit && batch.count < maxRequests) {
      const job = this.queue[0];
      // The route's cell as setDesiredMany left it, unless cells moved since.
      const hint = job.cells && job.gen === this.v4.gen ? (job.cells[job.cursor] as number) : -1;
      const key = job.key(job.cursor++);
      const at = w.len;
      if (this.encode(job.op, key, batch, hint)) {
        lastAt = at;
        const i = batch.count++;
        if (typeof key === "number") batch.nums[i] = key;
        else {
          batch.strs ??= [];
          batch.strs[i] = key;
        }
        const nj = batch.jobs.length;
        if (nj > 0 && batch.jobs[nj - 1] === job) batch.jobEnds[nj - 1] = i + 1;
        else {
          batch.jobs.push(job);
          batch.jobEnds.push(i + 1);
        }
      } else {
        job.outstanding--;
      }
      if (job.cursor >= job.n) {
        this.queue.shift();
        if (job.outstanding === 0) job.done(job.failures);
      }
    }
    if (lastAt < 0) {
      // Nothing needed sending (all removed since, or already there): try the next batch.
      this.release(batch);
      return this.queue.length > 0;
    }
    w.buf.writeUInt16LE(w.buf.readUInt16LE(lastAt + 6) | NLM_F_ACK, lastAt + 6);
    batch.lastSeq = this.seq - 1;
    this.inflight.push(batch);
    this.inflightRequests += batch.count;
    this.stats.batches++;
    this.stats.sent += batch.count;
    let queued = false;
    if (this.opts.sendThread) {
      // Copied and sent on the addon's thread; the kernel's ACK or errors arrive as usual.
      try {
        this.req.sendQueued(w.buf, 0, w.len, batch.firstSeq);
        queued = true;
      } catch (err) {
        // No thread (pthread_create or malloc failed): send on the event loop from now on.
        this.opts.sendThread = false;
        this.fail(new Error(`FIB sender thread unavailable: ${(err as Error).message}`));
      }
    }
    if (!queued) {
      const r = this.req.send(w.buf, 0, w.len);
      if (r < 0) this.failBatch(batch, -r, "sendmsg");
    }
    return true;
  }

  /** Requests one batch can hold: as many as its bytes allow (its arrays are this long). */
  private batchRequests(): number {
    return Math.min(MAX_BATCH_REQUESTS, Math.ceil(this.batchLimit / MIN_REQUEST_BYTES) + 1);
  }

  /** A batch the sender thread could not send: each of its requests failed with errno. */
  private onSendFailed(token: number, errno: number): void {
    const batch = this.inflight.find((b) => b.firstSeq === token);
    if (batch) this.failBatch(batch, errno, "sendmsg");
  }

  /** Encodes one request into the writer (or nothing when it is no longer needed). */
  private encode(op: number, key: Key, batch: Batch, hint = -1): boolean {
    // Sent again, withdrawn or found installed: an old error no longer says anything.
    if (this.routeErrors.size > 0 && this.routeErrors.delete(key))
      this.stats.errorsKept = this.routeErrors.size;
    // IPv4: one lookup of the route's cell for the reads and the update.
    const cell =
      typeof key !== "number"
        ? -1
        : hint >= 0
          ? hint
          : this.v4.cell(v4Slot(key), v4Addr(key), v4Len(key));
    let want: number | undefined;
    let have: number | undefined;
    if (typeof key === "number") {
      const d = cell < 0 ? NO_GROUP : this.v4.desiredAt(cell);
      const s = cell < 0 ? NO_GROUP : this.v4.installedAt(cell);
      want = d === NO_GROUP ? undefined : d;
      have = s === NO_GROUP ? undefined : s;
    } else {
      want = this.desired6.get(key);
      have = this.installed6.get(key);
    }
    const i = batch.count;
    if (op === OP_SET) {
      if (want === undefined) return false; // removed since
      if (have !== undefined && this.matches(want, have)) return false; // already there
      const flags = NLM_F_CREATE | (have !== undefined ? NLM_F_REPLACE : NLM_F_EXCL);
      this.writeRequest(RTM_NEWROUTE, flags, key, want);
      if (cell >= 0) this.v4.setInstalledAt(cell, want);
      else this.setInstalled(key, want);
    } else {
      if (want !== undefined || have === undefined) return false; // set again, or not ours
      this.writeRequest(RTM_DELROUTE, 0, key, have);
      if (cell >= 0) this.v4.setInstalledAt(cell, NO_GROUP);
      else this.setInstalled(key, undefined);
    }
    // The last route of its group left it: its object may be unused once this is answered.
    if (have !== undefined && have !== want && this.nhFd >= 0 && this.v4.installedOf(have) === 0) {
      this.nhGcWanted = true;
      this.nhDropSeq = this.seq - 1;
    }
    batch.ops[i] = op;
    batch.prev[i] = have ?? -1;
    return true;
  }

  private writeRequest(type: number, flags: number, key: Key, gid: number): void {
    const seq = this.seq++;
    const ack = this.opts.ackEach ? NLM_F_ACK : 0;
    if (typeof key === "number") {
      // Template per (slot, group, request): patch seq, prefix length and destination only.
      const slot = Math.floor(key / V4_SLOT_MUL);
      const rest = key - slot * V4_SLOT_MUL;
      const addr = Math.floor(rest / 64);
      // No strings on this path: (slot < 2^15, group < 2^24, DEL bit, 12 flag bits) in 52 bits.
      const tk =
        ((slot * 2 ** 24 + gid) * 2 + (type === RTM_DELROUTE ? 1 : 0)) * 4096 + (flags | ack);
      let t = tk === this.lastTemplateKey ? this.lastTemplate : this.templates.get(tk);
      if (!t) {
        const tw = new MessageWriter(256);
        writeRoute(tw, type, flags | ack, 0, this.request(type, key, gid));
        t = Buffer.from(tw.buf.subarray(0, tw.len));
        this.templates.set(tk, t);
      }
      this.lastTemplateKey = tk;
      this.lastTemplate = t;
      const w = this.writer;
      w.reserve(t.length);
      const o = w.len;
      const b = w.buf;
      // Byte stores, not Buffer.copy / writeUInt32*: their argument checks cost more than the
      // copy of a template this short.
      b.set(t, o);
      b[o + 8] = seq;
      b[o + 9] = seq >>> 8;
      b[o + 10] = seq >>> 16;
      b[o + 11] = seq >>> 24;
      b[o + 17] = rest - addr * 64;
      b[o + 32] = addr >>> 24; // RTA_DST is the first attribute
      b[o + 33] = addr >>> 16;
      b[o + 34] = addr >>> 8;
      b[o + 35] = addr;
      w.len += t.length;
      return;
    }
    writeRoute(this.writer, type, flags | ack, seq, this.request(type, key, gid));
  }

  private request(type: number, key: Key, gid: number): RouteRequest {
    const { slot, dst, len } = this.splitKey(key);
    const g = this.groups[gid];
    const del = type === RTM_DELROUTE;
    return {
      family: slot.family,
      dst,
      dstLen: len,
      table: slot.table,
      protocol: g.protocol,
      type: del ? 0 : g.type,
      scope: del ? RT_SCOPE_NOWHERE : g.scope,
      metric: slot.metric,
      nexthops: del ? [] : g.nexthops,
      prefsrc: del ? undefined : g.prefsrc,
      nhId: del || this.nhFd < 0 ? 0 : this.nexthopWritten(gid),
    };
  }

  // ---- nexthop objects ----------------------------------------------------------------------

  /**
   * Opens the blocking socket and learns our nexthop objects already in the kernel (a restart);
   * a kernel without nexthop objects leaves the option off.
   */
  private openNexthops(): void {
    const a = loadAddon();
    const ns =
      this.netns === "" || this.netns.includes("/") ? this.netns : `/run/netns/${this.netns}`;
    try {
      this.nhFd = a.requestOpen(NETLINK_ROUTE, ns, 30_000);
    } catch {
      this.nhFd = -1;
      return;
    }
    const w = new MessageWriter(64);
    writeNexthopGet(w, NLM_F_DUMP, 1, 0);
    let ok = true;
    try {
      forEachMessage(a.request(this.nhFd, w.buf.subarray(0, w.len)), (m) => {
        if (m.type === NLMSG_ERROR && decodeError(m).errno !== 0) ok = false;
        const nh = m.type === RTM_NEWNEXTHOP ? decodeNexthop(m) : undefined;
        if ((nh?.gateway || nh?.group) && this.protocols.has(nh.protocol)) {
          this.nhById.set(nh.id, {
            protocol: nh.protocol,
            gateway: nh.gateway ? formatAddress(nh.gateway) : "",
            oif: nh.oif,
            ...(nh.group ? { group: nh.group } : {}),
          });
          // A route of another program may have named it before we started.
          this.nhUnverified.add(nh.id);
        }
      });
    } catch {
      ok = false;
    }
    if (!ok) {
      a.requestClose(this.nhFd);
      this.nhFd = -1;
      return;
    }
    // A nexthop object deleted by someone else takes its routes with it: notified, we resync.
    try {
      this.events?.setOption(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_NEXTHOP);
    } catch {}
  }

  /** nexthopOf(gid) for a route being written: kept as what the group's routes name. */
  private nexthopWritten(gid: number): number {
    const id = this.nexthopOf(gid);
    const was = this.nhWritten[gid];
    this.nhWritten[gid] = was === undefined || was === id ? id : NH_MIXED;
    return id;
  }

  /** Group gid's nexthop object id, made now if needed; 0: the gateway goes in each route. */
  private nexthopOf(gid: number): number {
    let id = this.nhOfGroup[gid];
    if (id === undefined) {
      id = this.makeNexthop(gid);
      this.nhOfGroup[gid] = id;
    }
    return id;
  }

  /**
   * Group gid's object: one gateway's, or for ECMP a group object (NHA_GROUP) of its gateways'
   * objects with their weights; 0 when the kernel cannot make one (then the gateways go in each
   * route, RTA_MULTIPATH for several).
   */
  private makeNexthop(gid: number): number {
    const g = this.groups[gid];
    const hops = g.nexthops;
    if (g.family !== 4 || g.type !== RTN_UNICAST || g.scope !== RT_SCOPE_UNIVERSE) return 0;
    if (hops.length === 0) return 0;
    for (const n of hops) if (n.gateway?.length !== 4 || n.onlink) return 0;
    if (hops.length === 1) return this.gatewayObject(g.protocol, hops[0]);
    const group: NexthopGroupMember[] = [];
    for (const n of hops) {
      const id = this.gatewayObject(g.protocol, n);
      // A member the kernel cannot make (its link down, say), or two hops through one object.
      if (id === 0 || group.some((m) => m.id === id)) return 0;
      group.push({ id, weight: n.weight });
    }
    // Its id from the members whatever their order; they are sent in the route's order (the
    // order the kernel lists the route's paths in).
    const key = `group ${byId(group)
      .map((m) => `${m.id}/${m.weight}`)
      .join(",")}`;
    return this.placeObject(
      g.protocol,
      key,
      (known) => sameMembers(known.group, group),
      (id) => ({ id, protocol: g.protocol, group }),
      { protocol: g.protocol, gateway: "", oif: 0, group },
    );
  }

  /** The object of one gateway (through the interface the kernel's lookup gives); 0: none. */
  private gatewayObject(protocol: number, n: EncodedNextHop): number {
    const gw = n.gateway as Uint8Array;
    const oif = n.ifindex > 0 ? n.ifindex : this.lookupOif(gw);
    if (oif <= 0) return 0;
    const gateway = formatAddress(gw);
    return this.placeObject(
      protocol,
      `${gateway}@${oif}`,
      (known) => !known.group && known.gateway === gateway && known.oif === oif,
      (id) => ({ id, family: 4, protocol, gateway: gw, oif }),
      { protocol, gateway, oif },
    );
  }

  /**
   * Makes (or makes again in place) the object described by `key` at its id: NH_ID_BASE + a
   * hash of (protocol, key), probing past ids held by other objects.
   */
  private placeObject(
    protocol: number,
    key: string,
    isSame: (known: NhInfo) => boolean,
    request: (id: number) => NexthopRequest,
    info: NhInfo,
  ): number {
    let h = 2166136261 ^ protocol;
    for (const c of key) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
    for (let probe = 0; probe < NH_ID_PROBES; probe++) {
      const id = NH_ID_BASE + (((h >>> 0) + probe) % NH_ID_RANGE);
      const known = this.nhById.get(id);
      const same = known?.protocol === protocol && isSame(known);
      if (known && !same) continue;
      const req = request(id);
      // Ours (known): made again in place, which also brings it back after a link flushed it.
      // Otherwise only if the id is free, or held by an object of our protocol (a crash's).
      let errno = this.nhRequest((w) =>
        writeNexthop(w, NLM_F_CREATE | (same ? NLM_F_REPLACE : NLM_F_EXCL) | NLM_F_ACK, 1, req),
      );
      if (errno === EEXIST && !same) {
        if (!this.nexthopIsOurs(id)) continue;
        errno = this.nhRequest((w) =>
          writeNexthop(w, NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK, 1, req),
        );
      }
      if (errno !== 0) return 0;
      this.nhById.set(id, info);
      return id;
    }
    return 0;
  }

  /** One request on the blocking socket; its errno (0: done). */
  private nhRequest(write: (w: MessageWriter) => void, onMessage?: (m: NlMessage) => void): number {
    const w = new MessageWriter(128);
    write(w);
    let errno = 0;
    try {
      forEachMessage(loadAddon().request(this.nhFd, w.buf.subarray(0, w.len)), (m) => {
        if (m.type === NLMSG_ERROR) errno = decodeError(m).errno;
        else onMessage?.(m);
      });
    } catch (e) {
      return (e as { errno?: number }).errno ?? -1;
    }
    return errno;
  }

  private nexthopIsOurs(id: number): boolean {
    let ours = false;
    this.nhRequest(
      (w) => writeNexthopGet(w, NLM_F_ACK, 1, id),
      (m) => {
        const nh = m.type === RTM_NEWNEXTHOP ? decodeNexthop(m) : undefined;
        ours = nh !== undefined && this.protocols.has(nh.protocol);
      },
    );
    return ours;
  }

  /** The interface the kernel's route lookup sends `gateway` out of (0: none found). */
  private lookupOif(gateway: Uint8Array): number {
    let oif = 0;
    let via = false;
    this.nhRequest(
      (w) => writeRouteGet(w, NLM_F_ACK, 1, gateway),
      (m) => {
        const r = m.type === RTM_NEWROUTE ? decodeRoute(m) : undefined;
        const nh = r?.nexthops[0];
        oif = nh?.ifindex ?? 0;
        // Reached through another gateway (not on a connected subnet: the kernel would refuse),
        // or one of our own addresses (a local route): the gateway stays in each route.
        via = nh?.gateway !== undefined || r?.type !== RTN_UNICAST;
      },
    );
    return via ? 0 : oif;
  }

  /** Links, addresses or nexthops changed: each group's object is made (or dropped) again. */
  private forgetNexthops(): void {
    if (this.nhOfGroup.length === 0) return;
    this.nhOfGroup = [];
    // matches() compares a kernel route's object with the one its group names now.
    this.matchCache.clear();
    this.templates.clear();
    this.lastTemplateKey = -1;
    this.lastTemplate = undefined;
  }

  // ---- replies ------------------------------------------------------------------------------

  private onReply(buf: Buffer): void {
    forEachMessage(buf, (m) => {
      const d = this.dump;
      if (d && m.seq === d.seq) {
        if (m.flags & NLM_F_DUMP_INTR) d.interrupted = true;
        if (m.type === NLMSG_DONE) {
          this.dump = undefined;
          d.resolve();
          this.schedulePump();
        } else if (m.type === NLMSG_ERROR) {
          const e = decodeError(m);
          this.dump = undefined;
          d.reject(
            new Error(
              `Kernel dump failed: ${errnoName(e.errno)}${e.message ? ` (${e.message})` : ""}`,
            ),
          );
          this.schedulePump();
        } else d.onMessage(m);
        return;
      }
      if (m.type === NLMSG_ERROR) this.onAck(m);
    });
  }

  private onAck(m: NlMessage): void {
    const e = decodeError(m);
    const batch = this.inflight.find((b) => e.seq >= b.firstSeq && e.seq <= b.lastSeq);
    if (!batch) return;
    const i = e.seq - batch.firstSeq;
    if (e.errno !== 0) {
      const op = batch.ops[i];
      const key = keyAt(batch, i);
      if (!(op === OP_DEL && e.errno === ESRCH)) {
        this.restoreInstalled(batch, i);
        const failure: FibFailure = {
          route: this.describe(key),
          op: op === OP_SET ? "set" : "remove",
          errno: e.errno,
          code: errnoName(e.errno),
          message: e.message,
        };
        jobAt(batch, i).failures.push(failure);
        this.stats.failures++;
        this.keepError(key, failure);
        this.onEvent({ kind: "failure", failure });
      }
    }
    if (e.seq === batch.lastSeq) this.finishBatch(batch);
  }

  /** Keeps the route's last error (bounded) and counts it by operation and errno. */
  private keepError(key: Key, f: FibFailure): void {
    const what = `${f.op} ${f.code}`;
    this.errorCounts.set(what, (this.errorCounts.get(what) ?? 0) + 1);
    if (this.routeErrors.size >= MAX_KEPT_ERRORS && !this.routeErrors.has(key)) {
      this.stats.errorsNotKept++;
      return;
    }
    this.routeErrors.set(key, { ...f, reason: errnoReason(f.errno), at: Date.now() });
    this.stats.errorsKept = this.routeErrors.size;
  }

  private restoreInstalled(batch: Batch, i: number): void {
    const prev = batch.prev[i];
    this.setInstalled(keyAt(batch, i), prev >= 0 ? prev : undefined);
    // A refused route leaves the object made for it perhaps unnamed (checked when answered).
    if (this.nhFd >= 0) this.nhGcWanted = true;
  }

  private release(batch: Batch): void {
    if (batch.released) return;
    batch.released = true;
    if (this.spare.length < 8)
      this.spare.push({ ops: batch.ops, prev: batch.prev, nums: batch.nums });
  }

  private finishBatch(batch: Batch): void {
    const at = this.inflight.indexOf(batch);
    if (at >= 0) {
      this.inflight.splice(at, 1);
      this.inflightRequests -= batch.count;
    }
    this.release(batch);
    for (let j = 0; j < batch.jobs.length; j++) {
      const job = batch.jobs[j];
      job.outstanding -= batch.jobEnds[j] - (j > 0 ? batch.jobEnds[j - 1] : 0);
      if (job.outstanding === 0 && job.cursor >= job.n) job.done(job.failures);
    }
    if (this.nhGcWanted) this.scheduleNexthopGc();
    this.schedulePump();
  }

  private failBatch(batch: Batch, errno: number, what: string): void {
    for (let i = 0; i < batch.count; i++) {
      this.restoreInstalled(batch, i);
      const key = keyAt(batch, i);
      const failure: FibFailure = {
        route: this.describe(key),
        op: batch.ops[i] === OP_SET ? "set" : "remove",
        errno,
        code: errnoName(errno),
        message: `${what} failed`,
      };
      jobAt(batch, i).failures.push(failure);
      this.keepError(key, failure);
    }
    this.finishBatch(batch);
  }

  private onOverflow(socket: "events" | "requests"): void {
    this.stats.overflows++;
    if (socket === "events") {
      // Foreign routes naming our objects may have come and gone unseen: a dump tells again.
      this.foreignNh.clear();
      for (const id of this.nhById.keys()) this.nhUnverified.add(id);
    }
    this.onEvent({ kind: "overflow", socket });
    if (socket === "requests") {
      // Some ACKs were lost: the batches' outcome is unknown until the resync establishes
      // it, so their callers resolve after it.
      const lost = this.inflight.splice(0);
      for (const b of lost) this.inflightRequests -= b.count;
      const settle = () => {
        for (const b of lost) {
          this.inflight.push(b);
          this.inflightRequests += b.count;
          this.finishBatch(b);
        }
      };
      void this.resync().then(settle, (e) => {
        settle();
        this.fail(e);
      });
      return;
    }
    void this.resync().catch((e) => this.fail(e));
  }

  private fail(err: Error): void {
    this.onEvent({
      kind: "failure",
      failure: { route: "*", op: "set", errno: 0, code: "EINTERNAL", message: err.message },
    });
  }

  // ---- dumps, reconcile ---------------------------------------------------------------------

  private async runDump(
    write: (w: MessageWriter, seq: number) => void,
    onMessage: (m: NlMessage) => void,
  ): Promise<boolean> {
    // Requests in flight finish first, so the dump sees their effect.
    for (let i = 0; i < 1000 && this.inflight.length > 0 && !this.closed; i++)
      await new Promise((r) => setTimeout(r, 1));
    const seq = this.seq++;
    const d: Dump = { seq, onMessage, resolve: () => {}, reject: () => {}, interrupted: false };
    const p = new Promise<void>((resolve, reject) => {
      d.resolve = resolve;
      d.reject = reject;
    });
    this.dump = d;
    const w = new MessageWriter(64);
    write(w, seq);
    const r = this.req.send(w.buf, 0, w.len);
    if (r < 0) {
      this.dump = undefined;
      throw new Error(`Sending the dump request failed: ${errnoName(-r)}`);
    }
    await p;
    return !d.interrupted;
  }

  private async dumpLinks(): Promise<void> {
    const seen = new Map<number, { name: string; up: boolean }>();
    await this.runDump(writeLinkDump, (m) => {
      if (m.type !== RTM_NEWLINK) return;
      const l = decodeLink(m);
      if (l) seen.set(l.ifindex, { name: l.name, up: l.up });
      if (l && this.nhFd >= 0) this.carrier.set(l.ifindex, (l.flags & IFF_LOWER_UP) !== 0);
    });
    this.links.clear();
    this.linkByName.clear();
    for (const [k, v] of seen) this.setLink(k, v);
    const addrs = new Map<number, number>();
    await this.runDump(writeAddrDump, (m) => {
      const a = m.type === RTM_NEWADDR ? decodeAddr(m) : undefined;
      if (a && a.scope !== RT_SCOPE_LINK && a.scope !== RT_SCOPE_HOST)
        addrs.set(a.ifindex, (addrs.get(a.ifindex) ?? 0) + 1);
    });
    this.addrCount.clear();
    for (const [k, v] of addrs) this.addrCount.set(k, v);
  }

  /** Reads our routes in the kernel into the installed state (groups interned from them). */
  private async dumpOurs(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      this.v4.clearInstalled();
      this.installed6.clear();
      // Routes read back name their objects themselves; routes written from now on record theirs.
      this.nhWritten = [];
      this.templates.clear();
      this.lastTemplateKey = -1;
      this.lastTemplate = undefined;
      let consistent = true;
      for (const family of [4, 6] as const) {
        for (const protocol of this.protocols) {
          const ok = await this.runDump(
            (w, seq) => writeRouteDump(w, seq, family, protocol),
            (m) => {
              if (m.type !== RTM_NEWROUTE) return;
              const k = decodeRoute(m);
              if (!k || !this.protocols.has(k.protocol)) return;
              this.setInstalled(this.kernelKey(k), this.kernelGroup(k));
            },
          );
          consistent &&= ok;
        }
      }
      if (consistent || attempt >= 2) return;
    }
  }

  private kernelKey(k: KernelRoute): Key {
    return this.keyOf(this.slotOf(k.family, k.table, k.metric), k.dst, k.dstLen);
  }

  private kernelGroup(k: KernelRoute): number {
    // A route naming one of our nexthop objects, dumped without its gateway
    // (net.ipv4.nexthop_compat_mode=0): the object's gateway and interface.
    const nh =
      k.nhId !== undefined && k.nexthops.length === 0 ? this.nhById.get(k.nhId) : undefined;
    const hop = (o: NhInfo, weight: number) => ({
      gateway: addressBytes(4, o.gateway),
      ifindex: o.oif,
      onlink: false,
      weight,
    });
    if (nh?.group) {
      const members = nh.group.flatMap((m) => {
        const o = this.nhById.get(m.id);
        return o && !o.group ? [hop(o, m.weight)] : [];
      });
      if (members.length === nh.group.length) k.nexthops = members;
    } else if (nh) k.nexthops = [hop(nh, 1)];
    return this.intern({
      family: k.family,
      protocol: k.protocol,
      type: k.type,
      scope: k.family === 6 ? RT_SCOPE_UNIVERSE : k.scope,
      nexthops:
        k.type === RTN_UNICAST
          ? k.nexthops.map((n) => ({ ...n, weight: k.nexthops.length > 1 ? n.weight : 1 }))
          : [],
      devs: [],
      prefsrc: k.prefsrc,
      sig: "",
      // With objects on, a unicast route without one is told apart (nhId 0) from the group we
      // want, so that it is written again through the object we would name now (a group's
      // member back with its carrier, or a run before this one with objects off).
      nhId: k.type !== RTN_UNICAST ? undefined : (k.nhId ?? (this.nhFd >= 0 ? 0 : undefined)),
    });
  }

  private async resyncOnce(): Promise<void> {
    const t0 = Date.now();
    this.stats.resyncs++;
    this.forgetNexthops();
    await this.dumpLinks();
    await this.dumpOurs();
    const toSet = new KeyList();
    const toDel = new KeyList();
    const grace = this.opts.unwantedGraceMs;
    const seen = new Map<Key, number>();
    this.forEachRoute((key, want, have) => {
      if (want === undefined) {
        if (this.holding) return;
        if (grace > 0 && have !== undefined) {
          // Not ours yet, perhaps soon: removed only once unwanted for the grace.
          const since = this.unwantedSince.get(key) ?? t0;
          if (t0 - since < grace) {
            seen.set(key, since);
            return;
          }
        }
        toDel.push(key);
      } else if ((have === undefined || !this.matches(want, have)) && this.groupLinksUp(want))
        toSet.push(key);
    });
    const jobs = [
      this.enqueue(OP_DEL, toDel.length, toDel.at).catch(() => {}),
      this.enqueue(OP_SET, toSet.length, toSet.at).catch(() => {}),
    ];
    this.unwantedSince = seen;
    this.stats.swept += toDel.length;
    await Promise.all(jobs);
    this.onEvent({
      kind: "resync",
      installed: toSet.length,
      removed: toDel.length,
      ms: Date.now() - t0,
    });
  }

  /**
   * Deletes the nexthop objects of our protocols that no route in the kernel names (of any
   * protocol: a foreign route through one of ours keeps it): a crash left them, or the routes
   * through them were swept, or objects are off now. Those our groups name now stay. Objects of
   * other protocols are never touched. Costs a dump of every route only when a candidate exists.
   */
  private async sweepNexthops(force = false): Promise<void> {
    // After a resync under way; then a resync started meanwhile waits for this sweep (set in
    // the same turn the wait ended, so neither waits for the other).
    for (
      let p = this.resyncRunning ?? this.nhSweepRunning;
      p;
      p = this.resyncRunning ?? this.nhSweepRunning
    )
      await p.catch(() => {});
    const run = async (): Promise<void> => {
      if (this.closed) return;
      const a = loadAddon();
      let fd = this.nhFd;
      const own = fd < 0;
      if (own) {
        // Objects off (or none made yet): a socket of its own, closed after.
        const ns =
          this.netns === "" || this.netns.includes("/") ? this.netns : `/run/netns/${this.netns}`;
        try {
          fd = a.requestOpen(NETLINK_ROUTE, ns, 30_000);
        } catch {
          return;
        }
      }
      try {
        const ours = new Set<number>();
        /** Every group object's members (ours and others': a foreign group keeps our member). */
        const groups = new Map<number, { ours: boolean; members: number[] }>();
        const w = new MessageWriter(64);
        writeNexthopGet(w, NLM_F_DUMP, 1, 0);
        try {
          forEachMessage(a.request(fd, w.buf.subarray(0, w.len)), (m) => {
            const nh = m.type === RTM_NEWNEXTHOP ? decodeNexthop(m) : undefined;
            if (!nh) return;
            const mine = this.protocols.has(nh.protocol);
            if (mine) ours.add(nh.id);
            if (nh.group) groups.set(nh.id, { ours: mine, members: nh.group.map((x) => x.id) });
          });
        } catch {
          return; // no nexthop objects in this kernel
        }
        // The ids kept, with the members of every group kept (and of every foreign group).
        const withMembers = (ids: Iterable<number>) => {
          const out = new Set(ids);
          for (const id of [...out]) for (const x of groups.get(id)?.members ?? []) out.add(x);
          for (const g of groups.values()) if (!g.ours) for (const x of g.members) out.add(x);
          return out;
        };
        const inUse = () =>
          withMembers(this.nhOfGroup.filter((id): id is number => id !== undefined && id > 0));
        let candidates = [...ours].filter((id) => !inUse().has(id));
        if (candidates.length === 0 && !force) return;
        // Closed meanwhile: the dump is refused, nothing is deleted.
        const named = await this.namedNexthops().catch(() => undefined);
        if (!named || this.closed) return;
        const now = inUse();
        const kept = withMembers(named);
        candidates = candidates.filter((id) => !kept.has(id) && !now.has(id));
        // Groups before their members.
        candidates.sort((x, y) => (groups.has(x) ? 0 : 1) - (groups.has(y) ? 0 : 1));
        let swept = 0;
        for (const id of candidates) {
          // Forgotten first: its RTM_DELNEXTHOP then asks for no resync.
          this.nhById.delete(id);
          const dw = new MessageWriter(64);
          writeNexthopGet(dw, NLM_F_ACK, 1, id, true);
          let errno = 0;
          try {
            forEachMessage(a.request(fd, dw.buf.subarray(0, dw.len)), (m) => {
              if (m.type === NLMSG_ERROR) errno = decodeError(m).errno;
            });
          } catch (e) {
            errno = (e as { errno?: number }).errno ?? -1;
          }
          if (errno === 0) swept++;
        }
        this.stats.nexthopsSwept += swept;
        if (swept > 0) this.onEvent({ kind: "nexthopsSwept", count: swept });
      } finally {
        if (own) a.requestClose(fd);
      }
    };
    const p = run().finally(() => {
      if (this.nhSweepRunning === p) this.nhSweepRunning = undefined;
      if (force) {
        // Every object verified now: collect what the dump showed no route names.
        this.nhGcWanted = true;
        this.scheduleNexthopGc();
      }
    });
    this.nhSweepRunning = p;
    await p;
  }

  /**
   * The nexthop object ids that routes in the kernel name (all protocols, tables, families).
   * Also learns which routes of other protocols name one of our objects: every object is then
   * verified (what names it is known, and events keep it so).
   */
  private async namedNexthops(): Promise<Set<number> | undefined> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const named = new Set<number>();
      const foreign = new Map<string, number>();
      let consistent = true;
      for (const family of [4, 6] as const) {
        const ok = await this.runDump(
          (w, seq) => writeRouteDump(w, seq, family),
          (m) => {
            if (m.type !== RTM_NEWROUTE) return;
            const k = decodeRoute(m);
            if (k?.nhId === undefined) return;
            named.add(k.nhId);
            if (!this.protocols.has(k.protocol) && this.nhById.has(k.nhId))
              foreign.set(foreignKey(k), k.nhId);
          },
        );
        consistent &&= ok;
      }
      if (consistent) {
        for (const [key, id] of foreign) this.foreignNh.set(key, id);
        this.nhUnverified.clear();
        return named;
      }
    }
    return undefined;
  }

  private scheduleNexthopGc(): void {
    if (this.nhGcScheduled || this.nhFd < 0 || this.closed) return;
    this.nhGcScheduled = true;
    setImmediate(() => {
      this.nhGcScheduled = false;
      this.collectNexthops();
    });
  }

  /**
   * Deletes our nexthop objects that no route names any more: none of ours installed (each
   * group's installed count, and the object its routes name: read back, or written through),
   * and no route of another protocol seen naming it. Routes kept for a graceful restart are
   * installed, so theirs stay; during the hold nothing is collected (its end sweeps). Waits
   * until the requests that took a group's last route are answered, so that a route moved to
   * another object is not taken with the old one before the kernel has the move. Objects found
   * at start, or after the event socket overflowed, are deleted only after a dump of every
   * route (sweepNexthops) has shown what names them.
   */
  private collectNexthops(): void {
    if (!this.nhGcWanted || this.nhFd < 0 || this.closed || this.holding) return;
    // A resync's dump or a sweep under way: each asks again when it ends.
    if (this.resyncRunning || this.nhSweepRunning) return;
    // Requests up to the one that took a group's last route not all answered: finishBatch asks.
    const drop = this.nhDropSeq;
    if (this.inflight.some((b) => b.firstSeq <= drop)) return;
    this.nhGcWanted = false;
    if (this.nhById.size === 0) return;
    const named = new Set<number>();
    /** Gateways (protocol|address) whose routes went through more than one object: all kept. */
    let mixed: Set<string> | undefined;
    const n = this.groups.length;
    for (let gid = 0; gid < n; gid++) {
      if (this.v4.installedOf(gid) === 0) {
        this.nhWritten[gid] = undefined;
        continue;
      }
      const g = this.groups[gid];
      if (g.nhId !== undefined && g.nhId > 0) named.add(g.nhId);
      const w = this.nhWritten[gid];
      if (w === NH_MIXED) {
        mixed ??= new Set();
        for (const h of g.nexthops)
          if (h.gateway) mixed.add(`${g.protocol}|${formatAddress(h.gateway)}`);
      } else if (w !== undefined && w > 0) named.add(w);
    }
    for (const id of this.foreignNh.values()) named.add(id);
    // A group named keeps its members.
    for (const id of [...named]) for (const m of this.nhById.get(id)?.group ?? []) named.add(m.id);
    const gone: number[] = [];
    let unverified = false;
    for (const [id, nh] of this.nhById) {
      if (named.has(id)) continue;
      // Routes through more than one object since the last dump: their gateways' objects, and
      // any group, stay until a resync reads which they name.
      if (mixed && (nh.group || mixed.has(`${nh.protocol}|${nh.gateway}`))) continue;
      if (this.nhUnverified.has(id)) unverified = true;
      else gone.push(id);
    }
    // Groups before their members (a member deleted first would change the group).
    gone.sort((a, b) => (this.nhById.get(a)?.group ? 0 : 1) - (this.nhById.get(b)?.group ? 0 : 1));
    for (const id of gone) {
      // Forgotten first: its RTM_DELNEXTHOP then asks for no resync.
      this.nhById.delete(id);
      const errno = this.nhRequest((w) => writeNexthopGet(w, NLM_F_ACK, 1, id, true));
      // ENOENT: the kernel took it already (its link went down).
      if (errno === 0) this.stats.nexthopsDeleted++;
    }
    if (gone.length > 0) {
      // A route coming back makes its object again.
      const dropped = new Set(gone);
      for (let gid = 0; gid < this.nhOfGroup.length; gid++) {
        const id = this.nhOfGroup[gid];
        if (id !== undefined && dropped.has(id)) this.nhOfGroup[gid] = undefined;
      }
      this.matchCache.clear();
      this.templates.clear();
      this.lastTemplateKey = -1;
      this.lastTemplate = undefined;
      this.onEvent({ kind: "nexthopsDeleted", count: gone.length });
    }
    // Some may be named by routes of other programs from before we started: a dump tells.
    if (unverified) void this.sweepNexthops(true).catch((e) => this.fail(e));
  }

  private async sweep(): Promise<void> {
    const toDel = new KeyList();
    this.forEachRoute((key, want, have) => {
      if (want === undefined && have !== undefined) toDel.push(key);
    });
    this.stats.swept += toDel.length;
    await this.enqueue(OP_DEL, toDel.length, toDel.at);
  }

  // ---- events -------------------------------------------------------------------------------

  private onEventData(buf: Buffer): void {
    forEachMessage(buf, (m) => {
      if (m.type === RTM_NEWLINK || m.type === RTM_DELLINK) this.onLink(m);
      else if (m.type === RTM_NEWADDR || m.type === RTM_DELADDR) this.onAddr(m);
      else if (m.type === RTM_DELROUTE || m.type === RTM_NEWROUTE) this.onRouteEvent(m);
      else if (m.type === RTM_DELNEXTHOP) {
        // Someone deleted a nexthop object of ours, and the kernel its routes (untold): resync.
        const nh = decodeNexthop(m);
        if (nh && this.nhById.delete(nh.id)) {
          this.forgetNexthops();
          this.scheduleResync(100);
        }
      }
    });
  }

  private onRouteEvent(m: NlMessage): void {
    const proto = m.buf[m.off + 5];
    if (!this.protocols.has(proto)) {
      if (this.nhById.size > 0) this.noteForeign(m);
      if (!(m.type === RTM_NEWROUTE && m.flags & NLM_F_REPLACE)) return;
    }
    const k = decodeRoute(m);
    if (!k) return;
    const key = this.kernelKey(k);
    const want = this.getDesired(key);
    // Ours removed or replaced by someone else: its object may have lost its last route.
    if (this.nhFd >= 0) {
      this.nhGcWanted = true;
      this.scheduleNexthopGc();
    }
    if (m.type === RTM_DELROUTE) {
      // One of ours was removed by someone else: put it back (unless its link is down).
      this.setInstalled(key, undefined);
      if (want !== undefined && this.groupLinksUp(want)) this.repair(key);
      return;
    }
    if (!this.protocols.has(proto)) {
      // A foreign route replaced ours: we never fight over it, we just stop believing in ours.
      this.setInstalled(key, undefined);
      return;
    }
    // Someone else wrote a route with our protocol number.
    const g = this.kernelGroup(k);
    this.setInstalled(key, g);
    if (want !== undefined && !this.matches(want, g)) this.repair(key);
    // Nobody wants it: without a grace for other writers it goes now, not at some later resync
    // (during a graceful hold, the hold's end sweeps it).
    else if (want === undefined && !this.holding && this.opts.unwantedGraceMs === 0)
      this.removeStray(key);
  }

  /** A route of another protocol: whether it names one of our nexthop objects (which then stays). */
  private noteForeign(m: NlMessage): void {
    const k = decodeRoute(m);
    if (!k) return;
    const key = foreignKey(k);
    if (m.type === RTM_NEWROUTE && k.nhId !== undefined && this.nhById.has(k.nhId))
      this.foreignNh.set(key, k.nhId);
    else if (this.foreignNh.delete(key)) {
      this.nhGcWanted = true;
      this.scheduleNexthopGc();
    }
  }

  /** Removes (batched, 10 ms later) routes of our protocols that nobody set, if still unwanted. */
  private removeStray(key: Key): void {
    this.strayKeys.add(key);
    if (this.strayScheduled) return;
    this.strayScheduled = true;
    setTimeout(() => {
      this.strayScheduled = false;
      const keys = [...this.strayKeys].filter(
        (k) => this.getDesired(k) === undefined && this.getInstalled(k) !== undefined,
      );
      this.strayKeys.clear();
      if (this.closed || this.holding || keys.length === 0) return;
      this.stats.swept += keys.length;
      void this.enqueue(OP_DEL, keys.length, (i) => keys[i]).catch(() => {});
    }, 10);
  }

  private repair(key: Key): void {
    this.repairKeys.add(key);
    if (this.repairScheduled) return;
    this.repairScheduled = true;
    setTimeout(() => {
      this.repairScheduled = false;
      const keys = [...this.repairKeys];
      this.repairKeys.clear();
      this.stats.restored += keys.length;
      this.onEvent({ kind: "restored", count: keys.length });
      void this.enqueue(OP_SET, keys.length, (i) => keys[i]).catch(() => {});
    }, 10);
  }

  private onLink(m: NlMessage): void {
    const l = decodeLink(m);
    if (!l) return;
    const before = this.links.get(l.ifindex);
    const up = m.type === RTM_NEWLINK && l.up;
    if (this.nhFd >= 0) {
      // The kernel flushes nexthop objects on a link that loses its carrier, and their routes
      // with them (untold; routes with their own gateway stay, marked linkdown): resync.
      const carrier = m.type === RTM_NEWLINK && (l.flags & IFF_LOWER_UP) !== 0;
      const had = this.carrier.get(l.ifindex);
      this.carrier.set(l.ifindex, carrier);
      if (m.type === RTM_DELLINK) this.carrier.delete(l.ifindex);
      if (had && !carrier && [...this.nhById.values()].some((n) => n.oif === l.ifindex)) {
        this.forgetNexthops();
        this.scheduleResync(100);
      }
      // Carrier back on a link with routable addresses: objects (an ECMP group's member) that
      // could not be made while it was lost can be now.
      if (had === false && carrier && (this.addrCount.get(l.ifindex) ?? 0) > 0) {
        this.forgetNexthops();
        this.scheduleResync(100);
      }
    }
    if (m.type === RTM_DELLINK) this.deleteLink(l.ifindex);
    else this.setLink(l.ifindex, { name: l.name, up });
    if (before && before.up === up) return;
    this.forgetNexthops();
    this.onEvent({ kind: "link", ifindex: l.ifindex, name: l.name, up });
    const named = this.reresolve(l.ifindex, l.name);
    const explicit = this.groups.some((g) => g.nexthops.some((n) => n.ifindex === l.ifindex));
    if (!up) {
      // The kernel flushes IPv4 routes via a downed link without telling us: forget them.
      const via = (gid: number) => this.groups[gid].nexthops.some((n) => n.ifindex === l.ifindex);
      this.v4.forgetInstalledWhere(via);
      for (const [key, gid] of this.installed6) if (via(gid)) this.installed6.delete(key);
    }
    // Gateways resolve only through links with routable addresses; a link without any (a pod's
    // host-side veth) cannot carry our gateway routes, so it costs no dump when it comes or goes.
    if (named || explicit || (this.addrCount.get(l.ifindex) ?? 0) > 0) this.scheduleResync(100);
    if (m.type === RTM_DELLINK) this.addrCount.delete(l.ifindex);
  }

  private onAddr(m: NlMessage): void {
    const a = decodeAddrDetail(m);
    if (!a || a.scope === RT_SCOPE_LINK || a.scope === RT_SCOPE_HOST) return;
    if (a.address !== undefined)
      this.onEvent({
        kind: "address",
        ifindex: a.ifindex,
        address: formatAddress(a.address),
        added: m.type === RTM_NEWADDR,
      });
    const n = (this.addrCount.get(a.ifindex) ?? 0) + (m.type === RTM_NEWADDR ? 1 : -1);
    if (n > 0) this.addrCount.set(a.ifindex, n);
    else this.addrCount.delete(a.ifindex);
    this.forgetNexthops();
    // A new or removed subnet changes which gateways are reachable.
    this.scheduleResync(100);
  }

  private scheduleResync(delayMs: number): void {
    if (this.resyncTimer || this.closed) return;
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = undefined;
      void this.resync().catch((e) => this.fail(e));
    }, delayMs);
  }

  /** A link that came back under a new index: groups naming it move to it. True if named. */
  private reresolve(ifindex: number, name: string): boolean {
    let named = false;
    for (let gid = 0; gid < this.groups.length; gid++) {
      const g = this.groups[gid];
      g.devs.forEach((dev, i) => {
        if (dev !== name) return;
        named = true;
        if (g.nexthops[i].ifindex !== ifindex) {
          g.nexthops[i].ifindex = ifindex;
          this.matchCache.clear();
          this.templates.clear();
          this.lastTemplateKey = -1;
          this.lastTemplate = undefined;
        }
      });
    }
    return named;
  }
}
