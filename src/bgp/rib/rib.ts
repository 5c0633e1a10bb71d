// The routing core the speaker calls: Adj-RIB-In per peer (every received path, with its import
// verdict), the Loc-RIB with the RFC 4271 §9.1 decision process and multipath sets, and the
// Adj-RIB-Out per update group. Pure: values in, change batches out. Not: sessions, sockets,
// UPDATE encoding, kernel programming (the speaker and src/fib/ do those).
//
// Hot path: prefixes are numbers (IPv4 u32 + length, IPv6 four u32 words + length) in an
// open-addressing table of typed arrays; a prefix gets a small integer id; its paths are a
// linked list in typed arrays (peer index, interned attribute id, ADD-PATH id, import verdict);
// attribute sets are interned (attrs.ts). Changes are coalesced per prefix until `drain()`.
// An import policy's edits (Calico BGPFilter operations on import) make the path's attribute
// set, the received one kept beside it; with Calico's route priorities on, a best path whose
// priority is not its family's normal one reaches the FIB with that metric (FibBatch).
//
// Usage by the speaker:
//   const rib = new Rib({ localAs, routerId, adapter });
//   const p = rib.addPeer({ id, address, asn, ... });      // configured peer -> handle
//   rib.peerUp(p, remoteRouterId);                          // Established
//   const a = rib.intern(attrs);                            // once per UPDATE
//   rib.announceV4(p, a, addr, len, pathId);                // per NLRI (numeric callback)
//   rib.withdrawV4(p, addr, len, pathId);
//   const ch = rib.drain(50_000);   // FIB changes + Adj-RIB-Out batches; repeat while ch.pending
//   rib.peerDown(p);                                        // session lost: withdraw its paths
//   rib.markStale(p) ... rib.sweepStale(p);                 // graceful restart (RFC 4724)
//   rib.markLongLivedStale(p);        // RFC 9494: restart time over, kept as LLGR_STALE
//   rib.adjRibOut(p);                                       // full table at Established/refresh
//   rib.adjRibIn(p);                                        // what the peer sent (BMP dump)
//   rib.updatePeer(p, { exportPolicy });                    // reconfigure without a flap
//   rib.setRoutePriority({ v4: 1024, v6: 1024 });           // Calico's normal priorities
//   rib.explain("10.0.0.0/24"); rib.explainExport(prefix, p); rib.peerCounts(p); rib.locRib();
// Interned attribute ids are valid until the next drain() unless a path references them.
// Locally originated routes win and never go to the FIB (the agent owns their blackholes).
import type { NextHop, Route } from "../../fib/types.js";
import { RTPROT_OCELOT_BGP } from "../../fib/types.js";
import { ACT_ANN, ACT_NONE, ACT_WD, GroupBuilder, specialAct } from "./adj_rib_out.js";
import {
  type AttrAdapter,
  type AttrEdit,
  type AttrInit,
  AttrTable,
  type AttrView,
  asPathCount,
  FLAG_LLGR_STALE,
  FLAG_NO_ADVERTISE,
  FLAG_NO_EXPORT,
  FLAG_NO_EXPORT_SUBCONFED,
  FLAG_NO_LLGR,
  LLGR_STALE,
  NO_EXPORT,
  ORIGIN_IGP,
} from "./attrs.js";
import {
  type PolicyEdit,
  type PrefixPolicy,
  RejectReason,
  type RejectReasonName,
  RouteSource,
  rejectReasonName,
} from "./policy.js";
import {
  addressSortKey,
  formatV4,
  formatV6,
  type ParsedPrefix,
  PrefixList,
  parsePrefix,
  parseRouterId,
} from "./prefix.js";
import {
  FAM_V4,
  FAM_V6,
  growable,
  grown,
  nextCapacity,
  PrefixTable,
  release,
} from "./prefix_table.js";

/** Why the best path won (the step of RFC 4271 §9.1.2.2 that removed the last competitor). */
export const BestReason = {
  None: 0,
  OnlyPath: 1,
  Local: 2,
  LocalPref: 3,
  AsPathLength: 4,
  Origin: 5,
  Med: 6,
  EbgpOverIbgp: 7,
  IgpCost: 8,
  RouterId: 9,
  ClusterListLength: 10,
  PeerAddress: 11,
  PathId: 12,
  /** RFC 9494 §4.3: the others were LLGR_STALE (least preferred, before any other step). */
  LlgrStale: 13,
} as const;
export type BestReasonName = keyof typeof BestReason;
const bestReasonNames = Object.keys(BestReason) as BestReasonName[];

export type AddressFamilyName = "ipv4-unicast" | "ipv6-unicast";

export interface RibOptions<A> {
  /** Our AS (4-octet allowed). */
  localAs: number;
  /** Our BGP identifier, dotted quad or u32. */
  routerId: string | number;
  /** Set to act as a route reflector (RFC 4456) with this cluster id. */
  clusterId?: string | number;
  /** ECMP: hand every path equal up to the router-id step to the FIB (default true). */
  multipath?: boolean;
  /** Multipath across different neighbour ASes for eBGP paths (default false). */
  multipathRelax?: boolean;
  /** LOCAL_PREF for paths that carry none (and for all eBGP-learned paths); default 100. */
  defaultLocalPref?: number;
  /**
   * Calico's route priorities (BIRD's krt_metric): the normal priority per family. When set,
   * the default LOCAL_PREF of each family is 2^31-1 - its normal priority (overriding
   * defaultLocalPref), and a best path whose priority (2^31-1 - its LOCAL_PREF, when one counts)
   * is another one goes to the FIB with that metric (FibBatch.nexthopSetMetric).
   */
  routePriority?: { v4: number; v6: number };
  /** IGP cost to a next hop, RFC 4271 §9.1.2.2 (e); default 0 for all. */
  igpCost?: (nextHop: string) => number;
  adapter: AttrAdapter<A>;
}

export interface RibPeerInfo {
  /** The speaker's id for the peer (unique). */
  id: string;
  address: string;
  asn: number;
  /** Default: asn === localAs. */
  ibgp?: boolean;
  /** RFC 4456 client of ours (only meaningful with clusterId set). */
  routeReflectorClient?: boolean;
  /** Accept paths where our AS appears up to this many times (default 0). */
  allowOwnAs?: number;
  /** Default both. */
  families?: readonly AddressFamilyName[];
  importPolicy?: PrefixPolicy;
  exportPolicy?: PrefixPolicy;
  /** Our address on this session, used as next hop self (IPv4 / IPv6). */
  nextHopSelfV4?: string;
  nextHopSelfV6?: string;
  /** Extra discriminator for update grouping (peers with equal export inputs share a group). */
  exportGroupKey?: string;
  /**
   * RFC 7911 ADD-PATH send negotiated with the peer: paths per prefix for each family (0: not
   * negotiated, one path without an id). Such a peer gets an update group of its own, sent the
   * best path and the paths equal to it (the multipath set), best first, each with its id.
   */
  addPathSend?: { v4: number; v6: number };
  /**
   * RFC 9494 long-lived graceful restart negotiated with the peer: LLGR_STALE paths may go to
   * it (default false: they are withheld, withdrawn when a best path becomes one).
   */
  llgr?: boolean;
  /**
   * RFC 9494 §4.6 (optional partial deployment): an internal peer without LLGR gets LLGR_STALE
   * paths too, with NO_EXPORT added and LOCAL_PREF 0 (ignored for external peers and where
   * `llgr` is set).
   */
  llgrStaleToNonLlgr?: boolean;
}

/**
 * Loc-RIB changes for the FIB: per prefix the new next-hop set, or -1 for removed. With route
 * priorities (RibOptions.routePriority) a set may carry a kernel metric of its own
 * (nexthopSetMetric[set] >= 0; -1: the family's normal metric), and a route removed at such a
 * metric is -2-set (the set it was installed with). A prefix moving to another metric has its
 * removal and its new set in the same batch.
 */
export class FibBatch {
  readonly v4 = new PrefixList(4);
  readonly v4Sets: number[] = [];
  readonly v6 = new PrefixList(6);
  readonly v6Sets: number[] = [];
  constructor(
    readonly nexthopSets: readonly (readonly string[])[],
    readonly nexthopSetMetric: readonly number[] = [],
  ) {}

  /** The kernel metric of a set or removal code, or undefined for the family's normal one. */
  metricOf(code: number): number | undefined {
    const s = code < -1 ? -2 - code : code;
    const m = s < 0 ? -1 : (this.nexthopSetMetric[s] ?? -1);
    return m < 0 ? undefined : m;
  }

  get size(): number {
    return this.v4.count + this.v6.count;
  }

  /**
   * Routes to set and to remove, in the FIB contract's shape (`metric` only on those at a
   * metric of their own). Routes with the same next hops share one (read-only) `nexthops` array.
   */
  routes(protocol = RTPROT_OCELOT_BGP): { set: Route[]; remove: Route[] } {
    const set: Route[] = [];
    const remove: Route[] = [];
    const hops: (NextHop[] | undefined)[] = [];
    const none: NextHop[] = [];
    const v4 = this.v4;
    for (let i = 0; i < v4.count; i++) {
      const s = this.v4Sets[i] as number;
      const dst = formatV4(v4.words[i] as number, v4.lens[i] as number);
      const m = this.metricOf(s);
      const r: Route =
        s < 0
          ? { family: 4, dst, protocol, nexthops: none }
          : { family: 4, dst, protocol, nexthops: hops[s] ?? this.hopsOf(hops, s) };
      if (m !== undefined) r.metric = m;
      (s < 0 ? remove : set).push(r);
    }
    const v6 = this.v6;
    for (let i = 0; i < v6.count; i++) {
      const s = this.v6Sets[i] as number;
      const dst = formatV6(v6.words, i * 4, v6.lens[i] as number);
      const m = this.metricOf(s);
      const r: Route =
        s < 0
          ? { family: 6, dst, protocol, nexthops: none }
          : { family: 6, dst, protocol, nexthops: hops[s] ?? this.hopsOf(hops, s) };
      if (m !== undefined) r.metric = m;
      (s < 0 ? remove : set).push(r);
    }
    return { set, remove };
  }

  private hopsOf(cache: (NextHop[] | undefined)[], s: number): NextHop[] {
    const h = (this.nexthopSets[s] as readonly string[]).map(nextHopOf);
    cache[s] = h;
    return h;
  }
}

/** A next hop's text as the FIB takes it: "fe80::1%eth0" (an unnumbered peer's) with its dev. */
export function nextHopOf(text: string): NextHop {
  const z = text.indexOf("%");
  return z < 0 ? { gateway: text } : { gateway: text.slice(0, z), dev: text.slice(z + 1) };
}

/** Prefixes announced with one attribute set. */
export interface AdjOutAnnounce<A> {
  /** Interned id of `attrs`; only meaningful until the next drain() (ids are reused). */
  attrId: number;
  attrs: A;
  v4: PrefixList;
  v6: PrefixList;
}

/**
 * One encoding for a set of peers of one update group: announcements per attribute set, and
 * withdrawals. `peers` are the configured members (the speaker sends to those Established).
 */
export interface AdjOutBatch<A> {
  group: number;
  peers: string[];
  announce: AdjOutAnnounce<A>[];
  withdraw: { v4: PrefixList; v6: PrefixList };
}

export interface RibChanges<A> {
  fib: FibBatch;
  adjOut: AdjOutBatch<A>[];
  /** Prefixes still waiting; call drain() again. */
  pending: number;
}

export interface PeerCounts {
  /** Paths held from the peer, before import policy. */
  received: number;
  /** Paths accepted by import (loop checks and policy). */
  accepted: number;
  /** Prefixes currently advertised to the peer (Adj-RIB-Out). */
  advertised: number;
  /** Paths kept stale across the peer's graceful restart. */
  stale: number;
  /** Paths rejected on import since the peer was added, by reason. */
  rejected: Partial<Record<RejectReasonName, number>>;
}

export interface ExplainedPath {
  peer: string;
  /** "local" for our originations. */
  peerAddress: string;
  ibgp: boolean;
  pathId: number;
  /** The attributes the decision used: as received, with the import policy's edits. */
  attrs: AttrView;
  /** As received, when the import policy changed them (addCommunity, prependASPath). */
  received?: AttrView;
  /** LOCAL_PREF used by the decision (defaults applied). */
  localPref: number;
  accepted: boolean;
  rejectReason?: RejectReasonName;
  /** Detail from the policy that rejected it, when it says. */
  rejectDetail?: string;
  /** Kept from before the peer's restart (RFC 4724), not yet refreshed. */
  stale: boolean;
  best: boolean;
  multipath: boolean;
}

export interface Explanation {
  prefix: string;
  paths: ExplainedPath[];
  bestReason: BestReasonName;
  nexthops: string[];
}

export interface ExportExplanation {
  prefix: string;
  peer: string;
  advertised: boolean;
  /** Why not, when not advertised. */
  reason?: RejectReasonName;
  /** The policy rule that decided, when a filter or default did. */
  detail?: string;
  /** What is sent, when advertised. */
  attrs?: AttrView;
}

export interface RibStats {
  prefixesV4: number;
  prefixesV6: number;
  /** Paths held (all peers and our originations, before import policy). */
  paths: number;
  attributeSets: number;
  updateGroups: number;
  /** Prefixes changed and not yet drained. */
  pending: number;
  typedArrayBytes: number;
}

export interface LocRibEntry {
  prefix: string;
  peer: string;
  reason: BestReasonName;
  nexthops: string[];
  attrs: AttrView;
  /** The kernel metric from the route's priority, when it is not the family's normal one. */
  metric?: number;
}

const NONE = -1;
/** Calico's priority p travels as LOCAL_PREF 2^31-1 - p. */
const PRIORITY_BASE = 2147483647;
/** pathFlag: low bits the import verdict (RejectReason, 0 accepted), high bit stale (GR). */
const VERDICT_MASK = 0x7f;
/** A peer's verdict cache covers attribute ids below this + 4 × its paths (importVerdict). */
const VERDICT_CACHE_BASE = 64;
const FLAG_STALE = 0x80;
/** The decision steps in order (BestReason codes from Local to PathId). */
const STEP_FIRST = 2;
const STEP_LAST = 12;
const LOCAL = 0;

interface PeerRec {
  idx: number;
  info: RibPeerInfo;
  ibgp: boolean;
  rrClient: boolean;
  allowOwnAs: number;
  routerId: number;
  addrRank: number;
  addrKey: string;
  group: number;
  received: number;
  /** Of `received`, the IPv6 paths (max-prefix counts per family). */
  receivedV6: number;
  accepted: number;
  excluded: number;
  stale: number;
  rejected: Int32Array<ArrayBuffer>;
  /** Import verdict per attribute id: 0 unknown, else code + 1. */
  verdict: Uint8Array<ArrayBuffer>;
  verdictEpoch: number;
  removed: boolean;
}

interface Group {
  idx: number;
  key: string;
  members: Set<number>;
  ebgp: boolean;
  rrClient: boolean;
  v4: boolean;
  v6: boolean;
  nhSelf4: string | undefined;
  nhSelf6: string | undefined;
  policy: PrefixPolicy | undefined;
  adv: Int32Array<ArrayBuffer>;
  exc: Uint16Array<ArrayBuffer>;
  advCount: number;
  cache: Map<number, number>;
  cacheEpoch: number;
  /** ADD-PATH send limits per family (one member then), or null. */
  ap: { v4: number; v6: number } | null;
  /** ADD-PATH groups: per prefix, the paths sent as [pathId, attr, pathId, attr, ...]. */
  apOut: Map<number, number[]>;
  /** ADD-PATH groups: the member (its own paths are not sent back to it). */
  apMember: number;
  /** The members negotiated long-lived GR (RFC 9494): LLGR_STALE paths go to them. */
  llgr: boolean;
  /**
   * RFC 9494 §4.6: internal members without LLGR that get LLGR_STALE paths all the same, with
   * NO_EXPORT and LOCAL_PREF 0.
   */
  llgrPartial: boolean;
}

/** RFC 9494 §4.6 applies to the peer: internal, no LLGR negotiated, and asked for. */
function llgrPartialOf(rec: { ibgp: boolean; info: RibPeerInfo }): boolean {
  return rec.ibgp && !(rec.info.llgr ?? false) && (rec.info.llgrStaleToNonLlgr ?? false);
}

/** The ADD-PATH send limits of a peer, or null when it sends one path per prefix. */
function apOf(i: RibPeerInfo): { v4: number; v6: number } | null {
  const a = i.addPathSend;
  return a !== undefined && (a.v4 > 0 || a.v6 > 0) ? { v4: a.v4, v6: a.v6 } : null;
}

function growI32(a: Int32Array<ArrayBuffer>, n: number, fill = 0): Int32Array<ArrayBuffer> {
  return grown(a, n, fill);
}
function growU32(a: Uint32Array<ArrayBuffer>, n: number): Uint32Array<ArrayBuffer> {
  return grown(a, n);
}
function growU16(a: Uint16Array<ArrayBuffer>, n: number): Uint16Array<ArrayBuffer> {
  return grown(a, n);
}
function growU8(a: Uint8Array<ArrayBuffer>, n: number): Uint8Array<ArrayBuffer> {
  return grown(a, n);
}

export class Rib<A> {
  readonly attrs: AttrTable<A>;
  readonly localAs: number;
  readonly routerId: number;
  readonly clusterId: number;
  private readonly multipath: boolean;
  private readonly multipathRelax: boolean;
  private defaultLocalPref: number;
  /** RibOptions.defaultLocalPref (used when route priorities are off). */
  private readonly baseLocalPref: number;
  private defaultLocalPrefV6: number;
  /** The family decide() works on is IPv6 (picks the default LOCAL_PREF). */
  private decidingV6 = false;
  private routePriority: { v4: number; v6: number } | undefined;
  /** Per next-hop set id: its kernel metric, or -1 for the family's normal one. */
  private readonly nhSetMetric: number[] = [];
  /** Some next-hop set has an explicit metric (FIB changes then check metric moves). */
  private metricSets = false;
  private readonly igpCost: ((nextHop: string) => number) | undefined;

  private readonly peers: PeerRec[] = [];
  private readonly peerById = new Map<string, number>();
  private readonly groups: (Group | undefined)[] = [];
  private readonly groupByKey = new Map<string, number>();

  // Prefix store, indexed by prefix id.
  private readonly t = new PrefixTable(1024, (cap) => this.growPrefixes(cap));
  private pHead = growable(Int32Array, 1024).fill(NONE);
  private pReason = growable(Uint8Array, 1024);
  private pFib = growable(Int32Array, 1024).fill(NONE);
  private pDirty = growable(Uint8Array, 1024);

  // Path store, indexed by path id.
  private pathCap = 1024;
  private pathTop = 0;
  private pathFreeHead = NONE;
  private pathPeer = growable(Uint16Array, this.pathCap);
  private pathAttr = growable(Int32Array, this.pathCap);
  /** ADD-PATH ids; allocated on the first non-zero id (most sessions have none). */
  private pathPid: Uint32Array<ArrayBuffer> | null = null;
  private pathNext = growable(Int32Array, this.pathCap);
  private pathFlag = growable(Uint8Array, this.pathCap);
  /**
   * LOCAL_PREF set by the peer's import policy (Calico BGPFilter setPriority: 2^31-1 -
   * priority), -1 none; allocated when a policy first sets one.
   */
  private pathLp: Int32Array<ArrayBuffer> | null = null;
  /** The LOCAL_PREF the last importVerdict() asked for (-1: none). */
  private inLp = -1;
  /**
   * The attributes as received of paths whose import policy edited them (Calico BGPFilter
   * addCommunity / prependASPath on import: pathAttr then holds the edited set), -1 none;
   * allocated when a policy first edits one.
   */
  private pathRaw: Int32Array<ArrayBuffer> | null = null;
  /** The attribute edit the last importVerdict() asked for (communities, AS path). */
  private inEdit: PolicyEdit | undefined = undefined;

  private fibExcluded: ParsedPrefix[] = [];
  private dirtyQ = growable(Int32Array, 1024);
  private dirtyHead = 0;
  private dirtyTail = 0;

  private cand = new Int32Array(16);
  private mpCand = new Int32Array(16);
  private mpCount = 0;
  private keys = new Float64Array(16);
  private readonly nhSets: string[][] = [];
  private readonly nhSetIds = new Map<string, number>();
  private readonly singleNhSet: number[] = [];
  /** importedAttr()'s sets per edit and raw set, valid for one attribute-table epoch. */
  private editCache = new WeakMap<PolicyEdit, Map<number, number>>();
  private editCacheEpoch = -1;
  private outExc = 0;
  /** The export policy's edit id for the path exportVerdict() just accepted (0: none). */
  private outEdit = 0;
  private readonly oneWord = new Uint32Array(1);
  private liveAttrsAfterSweep = 0;

  constructor(opts: RibOptions<A>) {
    if (!Number.isInteger(opts.localAs) || opts.localAs < 1 || opts.localAs > 0xffffffff) {
      throw new Error(`Local AS ${opts.localAs} is not a valid AS number`);
    }
    this.localAs = opts.localAs;
    this.routerId = parseRouterId(opts.routerId);
    this.clusterId = opts.clusterId === undefined ? NONE : parseRouterId(opts.clusterId);
    this.multipath = opts.multipath ?? true;
    this.multipathRelax = opts.multipathRelax ?? false;
    this.baseLocalPref = opts.defaultLocalPref ?? 100;
    this.defaultLocalPref = this.baseLocalPref;
    this.defaultLocalPrefV6 = this.baseLocalPref;
    this.routePriority = undefined;
    if (opts.routePriority !== undefined) this.applyRoutePriority(opts.routePriority);
    this.igpCost = opts.igpCost;
    this.attrs = new AttrTable(opts.adapter);
    // Peer index 0 is ourselves (locally originated routes).
    this.peers.push({
      idx: LOCAL,
      info: { id: "local", address: "0.0.0.0", asn: this.localAs },
      ibgp: false,
      rrClient: false,
      allowOwnAs: 0,
      routerId: this.routerId,
      addrRank: -1,
      addrKey: "",
      group: NONE,
      received: 0,
      receivedV6: 0,
      accepted: 0,
      excluded: 0,
      stale: 0,
      rejected: new Int32Array(16),
      verdict: new Uint8Array(0),
      verdictEpoch: 0,
      removed: false,
    });
  }

  // ---------------------------------------------------------------------------------------
  // Peers

  /** Adds a configured peer; returns the numeric handle used by the hot-path calls. */
  addPeer(info: RibPeerInfo): number {
    if (this.peerById.has(info.id)) throw new Error(`Peer "${info.id}" is already in the RIB`);
    if (this.peers.length >= 0xffff) throw new Error(`Too many peers (${this.peers.length})`);
    const idx = this.peers.length;
    const ibgp = info.ibgp ?? info.asn === this.localAs;
    const rec: PeerRec = {
      idx,
      info,
      ibgp,
      rrClient: ibgp && (info.routeReflectorClient ?? false),
      allowOwnAs: info.allowOwnAs ?? 0,
      routerId: 0,
      addrRank: 0,
      addrKey: addressSortKey(info.address),
      group: NONE,
      received: 0,
      receivedV6: 0,
      accepted: 0,
      excluded: 0,
      stale: 0,
      rejected: new Int32Array(16),
      verdict: new Uint8Array(64),
      verdictEpoch: this.attrs.epoch,
      removed: false,
    };
    this.peers.push(rec);
    this.peerById.set(info.id, idx);
    this.rankPeers();
    this.joinGroup(rec);
    return idx;
  }

  /** Removes a peer: withdraws its paths and leaves its update group. */
  removePeer(peer: number | string): void {
    const rec = this.peerRec(peer);
    this.peerDown(rec.idx);
    this.leaveGroup(rec);
    rec.removed = true;
    this.peerById.delete(rec.info.id);
  }

  /** The session reached Established; `routerId` is the peer's BGP identifier. */
  peerUp(peer: number | string, routerId: string | number): void {
    this.peerRec(peer).routerId = parseRouterId(routerId);
  }

  /** The session went down (without graceful restart): withdraws every path of the peer. */
  peerDown(peer: number | string): void {
    const rec = this.peerRec(peer);
    if (rec.received === 0) return;
    for (let pfx = 0; pfx < this.t.top; pfx++) {
      if (this.t.fam[pfx] === 0) continue;
      let prev = NONE;
      let p = this.pHead[pfx] as number;
      while (p !== NONE) {
        const next = this.pathNext[p] as number;
        if (this.pathPeer[p] === rec.idx) {
          this.unlinkPath(pfx, prev, p, rec);
          this.markDirty(pfx);
        } else prev = p;
        p = next;
      }
    }
  }

  /**
   * RFC 4724 §4.2 (receiving speaker): the session of a peer that can restart went down. Its
   * paths stay in use but are marked stale; paths it sends again are fresh.
   */
  markStale(peer: number | string, fam?: 4 | 6): number {
    const rec = this.peerRec(peer);
    if (rec.received === 0) return 0;
    for (let pfx = 0; pfx < this.t.top; pfx++) {
      if (this.t.fam[pfx] === 0 || (fam !== undefined && this.t.fam[pfx] !== fam)) continue;
      for (let p = this.pHead[pfx] as number; p !== NONE; p = this.pathNext[p] as number) {
        if (this.pathPeer[p] !== rec.idx || (this.pathFlag[p] as number) & FLAG_STALE) continue;
        this.pathFlag[p] = (this.pathFlag[p] as number) | FLAG_STALE;
        rec.stale++;
      }
    }
    return rec.stale;
  }

  /**
   * End-of-RIB received (or the restart/stale timer fired): withdraws the peer's paths still
   * stale (of one family when given: RFC 7313 EoRR). Returns how many were removed.
   */
  sweepStale(peer: number | string, fam?: 4 | 6): number {
    const rec = this.peerRec(peer);
    if (rec.stale === 0) return 0;
    let n = 0;
    for (let pfx = 0; pfx < this.t.top && rec.stale > 0; pfx++) {
      if (this.t.fam[pfx] === 0 || (fam !== undefined && this.t.fam[pfx] !== fam)) continue;
      let prev = NONE;
      let p = this.pHead[pfx] as number;
      while (p !== NONE) {
        const next = this.pathNext[p] as number;
        if (this.pathPeer[p] === rec.idx && (this.pathFlag[p] as number) & FLAG_STALE) {
          this.unlinkPath(pfx, prev, p, rec);
          this.markDirty(pfx);
          n++;
        } else prev = p;
        p = next;
      }
    }
    return n;
  }

  /**
   * RFC 9494 §4.2 (helper): the peer's restart time is over and it negotiated long-lived GR.
   * Its stale paths (markStale) of the family, or all, stay stale for the long-lived stale time
   * with LLGR_STALE added (least preferred in decide(), withheld from groups without `llgr`);
   * those carrying NO_LLGR are removed. The peer's re-announcements replace them as usual and
   * sweepStale removes the rest.
   */
  markLongLivedStale(peer: number | string, fam?: 4 | 6): { kept: number; removed: number } {
    const rec = this.peerRec(peer);
    const A = this.attrs;
    let kept = 0;
    let removed = 0;
    const tagged = new Map<number, number>();
    for (let pfx = 0; pfx < this.t.top && rec.stale > 0; pfx++) {
      if (this.t.fam[pfx] === 0 || (fam !== undefined && this.t.fam[pfx] !== fam)) continue;
      let prev = NONE;
      let p = this.pHead[pfx] as number;
      while (p !== NONE) {
        const next = this.pathNext[p] as number;
        if (this.pathPeer[p] !== rec.idx || !((this.pathFlag[p] as number) & FLAG_STALE)) {
          prev = p;
          p = next;
          continue;
        }
        const a = this.pathAttr[p] as number;
        const f = A.flags[a] as number;
        if (f & FLAG_NO_LLGR) {
          this.unlinkPath(pfx, prev, p, rec);
          this.markDirty(pfx);
          removed++;
          p = next;
          continue;
        }
        kept++;
        if (!(f & FLAG_LLGR_STALE)) {
          let b = tagged.get(a);
          if (b === undefined) {
            b = A.intern(A.adapter.edit(A.get(a), { addCommunity: LLGR_STALE }));
            tagged.set(a, b);
          }
          A.refs[a] = (A.refs[a] as number) - 1;
          A.refs[b] = (A.refs[b] as number) + 1;
          this.pathAttr[p] = b;
          this.markDirty(pfx);
        }
        prev = p;
        p = next;
      }
    }
    return { kept, removed };
  }

  /** Replaces a peer's import policy and re-evaluates its paths (soft reconfiguration). */
  setImportPolicy(peer: number | string, policy: PrefixPolicy | undefined): void {
    const rec = this.peerRec(peer);
    rec.info = { ...rec.info, importPolicy: policy };
    for (let pfx = 0; pfx < this.t.top; pfx++) {
      if (this.t.fam[pfx] === 0) continue;
      for (let p = this.pHead[pfx] as number; p !== NONE; p = this.pathNext[p] as number)
        if (this.pathPeer[p] === rec.idx) this.reimport(rec, pfx, p);
    }
  }

  /**
   * Replaces a peer's import policy when the caller knows which prefixes its verdicts can differ
   * at (an import ownership change: the blocks and host routes it gained or lost), and
   * re-evaluates the peer's paths there only, not the whole table. Prefixes the RIB does not
   * hold are skipped.
   */
  setImportPolicyAt(
    peer: number | string,
    policy: PrefixPolicy | undefined,
    prefixes: Iterable<ParsedPrefix>,
  ): void {
    const rec = this.peerRec(peer);
    rec.info = { ...rec.info, importPolicy: policy };
    for (const x of prefixes) {
      const pfx =
        x.family === 4
          ? this.t.findV4(x.words[0] as number, x.len)
          : this.t.findV6(x.words, 0, x.len);
      if (pfx === NONE) continue;
      for (let p = this.pHead[pfx] as number; p !== NONE; p = this.pathNext[p] as number)
        if (this.pathPeer[p] === rec.idx) this.reimport(rec, pfx, p);
    }
  }

  /** One path of rec at pfx through the import policy again (verdict, edits, counts). */
  private reimport(rec: PeerRec, pfx: number, p: number): void {
    const raw = this.rawOf(p);
    const v = this.importVerdict(rec, raw, pfx);
    const flag = this.pathFlag[p] as number;
    const old = flag & VERDICT_MASK;
    if (this.lpOf(p) !== this.inLp) {
      this.setLp(p);
      this.markDirty(pfx);
    }
    let eff = this.importedAttr(raw);
    const cur = this.pathAttr[p] as number;
    const A = this.attrs;
    if ((A.flags[cur] as number) & FLAG_LLGR_STALE && !((A.flags[eff] as number) & FLAG_LLGR_STALE))
      // Kept long-lived stale (RFC 9494): the new edit keeps the LLGR_STALE tag.
      eff = A.intern(A.adapter.edit(A.get(eff), { addCommunity: LLGR_STALE }));
    if (eff !== cur) {
      this.releaseAttrs(p);
      this.holdAttrs(p, raw, eff);
      this.markDirty(pfx);
    }
    if (v === old) return;
    if (old === 0) rec.accepted--;
    if (v === 0) rec.accepted++;
    else rec.rejected[v] = (rec.rejected[v] as number) + 1;
    this.pathFlag[p] = v | (flag & FLAG_STALE);
    this.markDirty(pfx);
  }

  /**
   * Changes a peer's settings without touching its Adj-RIB-In: the import policy is re-evaluated
   * in place, and when an export input changed the peer moves to its new update group. The
   * caller then resends: compare `adjRibOut(peer)` before and after.
   */
  updatePeer(
    peer: number | string,
    changes: Partial<Omit<RibPeerInfo, "id" | "address" | "asn" | "ibgp">>,
  ): void {
    const rec = this.peerRec(peer);
    const oldKey = this.groupKeyOf(rec);
    const importChanged =
      "importPolicy" in changes && changes.importPolicy !== rec.info.importPolicy;
    const allowChanged = changes.allowOwnAs !== undefined && changes.allowOwnAs !== rec.allowOwnAs;
    rec.info = { ...rec.info, ...changes };
    rec.allowOwnAs = rec.info.allowOwnAs ?? 0;
    const wasClient = rec.rrClient;
    rec.rrClient = rec.ibgp && (rec.info.routeReflectorClient ?? false);
    if (wasClient !== rec.rrClient) {
      // Reflection of this peer's routes depends on whether it is a client (RFC 4456 §6).
      for (let pfx = 0; pfx < this.t.top; pfx++) {
        const best = this.bestOf(pfx);
        if (best !== NONE && this.pathPeer[best] === rec.idx) this.markDirty(pfx);
      }
    }
    if (allowChanged) rec.verdict.fill(0);
    if (importChanged || allowChanged) this.setImportPolicy(rec.idx, rec.info.importPolicy);
    if (this.groupKeyOf(rec) === oldKey) return;
    this.leaveGroup(rec);
    this.joinGroup(rec);
  }

  peerIndex(id: string): number {
    const idx = this.peerById.get(id);
    if (idx === undefined) throw new Error(`Peer "${id}" is not in the RIB`);
    return idx;
  }

  peerCounts(peer: number | string): PeerCounts {
    const rec = this.peerRec(peer);
    const g = rec.group === NONE ? undefined : this.groups[rec.group];
    const rejected: Partial<Record<RejectReasonName, number>> = {};
    for (let i = 1; i < rec.rejected.length; i++) {
      const n = rec.rejected[i] as number;
      if (n > 0) rejected[rejectReasonName(i)] = n;
    }
    return {
      received: rec.received,
      accepted: rec.accepted,
      advertised: g === undefined ? 0 : g.advCount - rec.excluded,
      stale: rec.stale,
      rejected,
    };
  }

  /** Paths received from the peer (accepted or not) of one family: cheap, for max-prefix. */
  receivedOf(peer: number | string, fam: 4 | 6): number {
    const rec = this.peerRec(peer);
    return fam === 6 ? rec.receivedV6 : rec.received - rec.receivedV6;
  }

  /** Update group of a peer and its members (peers sharing one encoding). */
  peerGroup(peer: number | string): { group: number; peers: string[] } {
    const rec = this.peerRec(peer);
    const g = this.groups[rec.group] as Group;
    return { group: g.idx, peers: this.memberIds(g, []) };
  }

  // ---------------------------------------------------------------------------------------
  // Hot path

  /** Interns an attribute set (once per UPDATE); the id is valid until the next drain(). */
  intern(attrs: A): number {
    return this.attrs.intern(attrs);
  }

  announceV4(peer: number, attrId: number, addr: number, len: number, pathId = 0): void {
    const pfx = this.t.findOrAddV4(addr >>> 0, len);
    this.announce(peer, attrId, pfx, pathId >>> 0);
  }

  withdrawV4(peer: number, addr: number, len: number, pathId = 0): void {
    const pfx = this.t.findV4(addr >>> 0, len);
    if (pfx !== NONE) this.withdraw(peer, pfx, pathId >>> 0);
  }

  /** IPv6: the prefix is four big-endian u32 words at w[off..off+3]. */
  announceV6(
    peer: number,
    attrId: number,
    w: Uint32Array,
    off: number,
    len: number,
    pathId = 0,
  ): void {
    const pfx = this.t.findOrAddV6(w, off, len);
    this.announce(peer, attrId, pfx, pathId >>> 0);
  }

  withdrawV6(peer: number, w: Uint32Array, off: number, len: number, pathId = 0): void {
    const pfx = this.t.findV6(w, off, len);
    if (pfx !== NONE) this.withdraw(peer, pfx, pathId >>> 0);
  }

  // ---------------------------------------------------------------------------------------
  // Local originations

  /** Originates a prefix ("10.244.1.0/26") with attributes made by the adapter. */
  originate(prefix: string, init: Partial<AttrInit> = {}): void {
    const p = parsePrefix(prefix);
    const a = this.attrs.intern(
      this.attrs.adapter.make({
        origin: init.origin ?? ORIGIN_IGP,
        nextHop: init.nextHop ?? (p.family === 4 ? "0.0.0.0" : "::"),
        ...(init.communities ? { communities: init.communities } : {}),
        ...(init.largeCommunities ? { largeCommunities: init.largeCommunities } : {}),
        ...(init.med !== undefined ? { med: init.med } : {}),
        ...(init.localPref !== undefined ? { localPref: init.localPref } : {}),
      }),
    );
    if (p.family === 4) this.announceV4(LOCAL, a, p.words[0] as number, p.len, 0);
    else this.announceV6(LOCAL, a, p.words, 0, p.len, 0);
  }

  /**
   * Calico's route priorities on (normal priority per family) or off (undefined): the default
   * LOCAL_PREF per family and the per-route kernel metrics follow. A change re-decides every
   * prefix and re-exports it (the LOCAL_PREF sent to iBGP peers may change).
   */
  setRoutePriority(rp: { v4: number; v6: number } | undefined): void {
    const cur = this.routePriority;
    if (cur?.v4 === rp?.v4 && cur?.v6 === rp?.v6) return;
    this.applyRoutePriority(rp);
    for (const g of this.groups) if (g !== undefined) g.cacheEpoch = -1;
    for (let pfx = 0; pfx < this.t.top; pfx++)
      if (this.t.fam[pfx] !== 0 && this.pHead[pfx] !== NONE) this.markDirty(pfx);
  }

  private applyRoutePriority(rp: { v4: number; v6: number } | undefined): void {
    this.routePriority = rp === undefined ? undefined : { v4: rp.v4, v6: rp.v6 };
    this.defaultLocalPref = rp === undefined ? this.baseLocalPref : PRIORITY_BASE - rp.v4;
    this.defaultLocalPrefV6 = rp === undefined ? this.baseLocalPref : PRIORITY_BASE - rp.v6;
  }

  /**
   * Prefixes inside these CIDRs ("10.96.0.0/12") stay in the Loc-RIB and are advertised as
   * before, but never go to the FIB: what Calico's BIRD kernel filter does with the Service IP
   * ranges (`calico_kernel_programming` rejects `net ~ <rejectcidr>`), so that a node does not
   * route Service IPs to the node it learned them from. A change re-decides every prefix: the
   * FIB gains or loses the routes inside what was added or removed.
   */
  setFibExclude(cidrs: readonly string[]): void {
    // Host bits are ignored (the match masks both sides), so "10.96.0.1/12" is 10.96.0.0/12.
    const next = cidrs.map((c) => {
      const [a = "", l = ""] = c.split("/");
      const p = parsePrefix(`${a}/${a.includes(":") ? 128 : 32}`);
      return { ...p, len: Number(l) };
    });
    const key = (l: typeof next) =>
      l.map((p) => `${p.family}:${p.words.join(".")}/${p.len}`).join();
    if (key(next) === key(this.fibExcluded)) return;
    this.fibExcluded = next;
    for (let pfx = 0; pfx < this.t.top; pfx++)
      if (this.t.fam[pfx] !== 0 && this.pHead[pfx] !== NONE) this.markDirty(pfx);
  }

  /** Whether the prefix lies inside one of setFibExclude()'s CIDRs. */
  private fibExcludes(pfx: number): boolean {
    const v4 = this.t.fam[pfx] === FAM_V4;
    const len = this.t.len[pfx] as number;
    const k = this.t.key[pfx] as number;
    for (const e of this.fibExcluded) {
      if ((e.family === 4) !== v4 || len < e.len) continue;
      let inside = true;
      for (let i = 0, left = e.len; left > 0 && inside; i++, left -= 32) {
        const w = v4 ? k : (this.t.v6Words[k * 4 + i] as number);
        const mask = left >= 32 ? 0xffffffff : ~(0xffffffff >>> left);
        inside = ((w ^ (e.words[i] as number)) & mask) === 0;
      }
      if (inside) return true;
    }
    return false;
  }

  withdrawOrigin(prefix: string): void {
    const p = parsePrefix(prefix);
    if (p.family === 4) this.withdrawV4(LOCAL, p.words[0] as number, p.len, 0);
    else this.withdrawV6(LOCAL, p.words, 0, p.len, 0);
  }

  // ---------------------------------------------------------------------------------------
  // Drain

  get pending(): number {
    return this.dirtyTail - this.dirtyHead;
  }

  /**
   * Runs the decision process for up to `max` changed prefixes and returns what changed: FIB
   * routes (best paths learned from peers; ECMP sets) and Adj-RIB-Out batches per update group.
   */
  drain(max = Number.POSITIVE_INFINITY): RibChanges<A> {
    const fib = new FibBatch(this.nhSets, this.nhSetMetric);
    const builders = new Map<number, GroupBuilder<A>>();
    let n = 0;
    while (this.dirtyHead < this.dirtyTail && n < max) {
      const pfx = this.dirtyQ[this.dirtyHead++] as number;
      n++;
      this.pDirty[pfx] = 0;
      this.decide(pfx);
      const fam = this.t.fam[pfx] as number;
      const nh = this.fibSetOf(pfx);
      const was = this.pFib[pfx] as number;
      if (nh !== was) {
        this.pFib[pfx] = nh;
        if (this.metricSets && was !== NONE && this.metricMove(fib, pfx, fam, was, nh)) {
          // Done: the old route removed by its metric (and the new one set).
        } else this.pushFib(fib, pfx, fam, nh);
      }
      for (const g of this.groups) if (g !== undefined) this.exportPrefix(g, pfx, builders);
      if (this.pHead[pfx] === NONE) this.freePrefix(pfx);
    }
    if (this.dirtyHead === this.dirtyTail) {
      this.dirtyHead = 0;
      this.dirtyTail = 0;
      // A big burst is over: give its queue back (4 bytes per prefix of the burst).
      if (this.dirtyQ.length > 65_536) {
        release(this.dirtyQ);
        this.dirtyQ = growable(Int32Array, 1024);
      }
      this.maybeSweep();
    }
    const adjOut: AdjOutBatch<A>[] = [];
    for (const b of builders.values()) b.finish(adjOut);
    return { fib, adjOut, pending: this.pending };
  }

  /**
   * The Adj-RIB-Out of one peer as it stands (after the last drain), for the initial table
   * dump at Established or a route refresh. Excludes prefixes not to be sent back to it.
   */
  adjRibOut(peer: number | string): AdjOutAnnounce<A>[] {
    const rec = this.peerRec(peer);
    const g = this.groups[rec.group] as Group;
    const byAttr = new Map<number, AdjOutAnnounce<A>>();
    const slot = (out: number) => {
      let a = byAttr.get(out);
      if (a === undefined) {
        a = {
          attrId: out,
          attrs: this.attrs.get(out),
          v4: new PrefixList(4, 0),
          v6: new PrefixList(6, 0),
        };
        byAttr.set(out, a);
      }
      return a;
    };
    if (g.ap !== null) {
      for (const [pfx, list] of g.apOut) {
        for (let i = 0; i < list.length; i += 2) {
          const a = slot(list[i + 1] as number);
          this.pushPrefix(pfx, a.v4, a.v6, list[i] as number);
        }
      }
      return [...byAttr.values()];
    }
    for (let pfx = 0; pfx < this.t.top; pfx++) {
      const out = g.adv[pfx] as number;
      if (out === NONE || g.exc[pfx] === rec.idx) continue;
      let a = byAttr.get(out);
      if (a === undefined) {
        a = {
          attrId: out,
          attrs: this.attrs.get(out),
          v4: new PrefixList(4, 0),
          v6: new PrefixList(6, 0),
        };
        byAttr.set(out, a);
      }
      this.pushPrefix(pfx, a.v4, a.v6);
    }
    return [...byAttr.values()];
  }

  /**
   * The peer's Adj-RIB-In as received, grouped by attribute set (BMP's dump for a station that
   * connects after the session came up): every path of the current session whatever its import
   * verdict (rejected ones included), with its ADD-PATH id when the RIB holds any. Paths kept
   * stale from an earlier session (graceful restart) are left out: the peer either sends them
   * again or they are swept. A snapshot: later changes do not reach the lists returned.
   */
  adjRibIn(peer: number | string): AdjOutAnnounce<A>[] {
    const rec = this.peerRec(peer);
    const byAttr = new Map<number, AdjOutAnnounce<A>>();
    if (rec.received === 0) return [];
    const ids = this.pathPid !== null;
    for (let pfx = 0; pfx < this.t.top; pfx++) {
      if (this.t.fam[pfx] === 0) continue;
      for (let p = this.pHead[pfx] as number; p !== NONE; p = this.pathNext[p] as number) {
        if (this.pathPeer[p] !== rec.idx || (this.pathFlag[p] as number) & FLAG_STALE) continue;
        const id = this.rawOf(p);
        let a = byAttr.get(id);
        if (a === undefined) {
          a = {
            attrId: id,
            attrs: this.attrs.get(id),
            v4: new PrefixList(4, 0),
            v6: new PrefixList(6, 0),
          };
          byAttr.set(id, a);
        }
        if (ids) this.pushPrefix(pfx, a.v4, a.v6, this.pidOf(p));
        else this.pushPrefix(pfx, a.v4, a.v6);
      }
    }
    return [...byAttr.values()];
  }

  // ---------------------------------------------------------------------------------------
  // Queries

  get size(): { v4: number; v6: number } {
    return { v4: this.t.count4, v6: this.t.count6 };
  }

  /** Every path of a prefix and why the best one won (decision re-run on the current paths). */
  explain(prefix: string): Explanation | undefined {
    const p = parsePrefix(prefix);
    const pfx =
      p.family === 4
        ? this.t.findV4(p.words[0] as number, p.len)
        : this.t.findV6(p.words, 0, p.len);
    if (pfx === NONE) return undefined;
    this.decide(pfx);
    const best = this.bestOf(pfx);
    const mp = new Set<number>();
    if (best !== NONE) {
      if (this.multipath && this.pathPeer[best] !== LOCAL)
        for (let i = 0; i < this.mpCount; i++) mp.add(this.mpCand[i] as number);
      else mp.add(best);
    }
    const paths: ExplainedPath[] = [];
    for (let q = this.pHead[pfx] as number; q !== NONE; q = this.pathNext[q] as number) {
      const rec = this.peers[this.pathPeer[q] as number] as PeerRec;
      const attrId = this.pathAttr[q] as number;
      const raw = this.rawOf(q);
      const flag = (this.pathFlag[q] as number) & VERDICT_MASK;
      const e: ExplainedPath = {
        peer: rec.info.id,
        peerAddress: rec.idx === LOCAL ? "local" : rec.info.address,
        ibgp: rec.ibgp,
        pathId: this.pidOf(q),
        attrs: this.attrs.view(attrId),
        ...(raw !== attrId ? { received: this.attrs.view(raw) } : {}),
        localPref: this.effLocalPref(q),
        accepted: flag === 0,
        stale: ((this.pathFlag[q] as number) & FLAG_STALE) !== 0,
        best: q === best,
        multipath: mp.has(q),
      };
      if (flag !== 0) {
        e.rejectReason = rejectReasonName(flag);
        const pol = rec.info.importPolicy;
        if (
          flag === RejectReason.FilterReject ||
          flag === RejectReason.OwnPoolPrefix ||
          flag === RejectReason.NotOwned
        ) {
          const src = this.sourceOf(rec.idx);
          const d = pol?.describe?.(p.family, p.words, 0, p.len, src, this.attrs.view(raw));
          if (d !== undefined) e.rejectDetail = d;
        }
      }
      paths.push(e);
    }
    const nh = this.fibSetOf(pfx);
    return {
      prefix: this.t.text(pfx),
      paths,
      bestReason: bestReasonNames[this.pReason[pfx] as number] as BestReasonName,
      nexthops: nh === NONE ? [] : [...(this.nhSets[nh] as string[])],
    };
  }

  /**
   * Why a prefix is or is not advertised to a peer, and with which attributes (decision re-run
   * on the current paths; the Adj-RIB-Out itself changes at drain()).
   */
  explainExport(prefix: string, peer: number | string): ExportExplanation {
    const rec = this.peerRec(peer);
    const g = this.groups[rec.group] as Group;
    const p = parsePrefix(prefix);
    const pfx =
      p.family === 4
        ? this.t.findV4(p.words[0] as number, p.len)
        : this.t.findV6(p.words, 0, p.len);
    const no = (code: number, detail?: string): ExportExplanation => ({
      prefix,
      peer: rec.info.id,
      advertised: false,
      reason: rejectReasonName(code),
      ...(detail !== undefined ? { detail } : {}),
    });
    if (pfx === NONE) return no(RejectReason.NoBestPath);
    this.decide(pfx);
    const best = this.bestOf(pfx);
    if (best === NONE) return no(RejectReason.NoBestPath);
    if (p.family === 4 ? !g.v4 : !g.v6) return no(RejectReason.FamilyNotEnabled);
    if (this.pathPeer[best] === rec.idx) return no(RejectReason.FromThisPeer);
    const v = this.exportVerdict(g, pfx, best);
    if (v !== 0) {
      const src = this.sourceOf(this.pathPeer[best] as number);
      const view = this.attrs.view(this.pathAttr[best] as number);
      const d = g.policy?.describe?.(p.family, p.words, 0, p.len, src, view);
      return no(
        v,
        v === RejectReason.FilterReject || v === RejectReason.NotOriginatedHere ? d : undefined,
      );
    }
    const out = this.outAttr(g, best, this.t.fam[pfx] as number);
    return { prefix, peer: rec.info.id, advertised: true, attrs: this.attrs.view(out) };
  }

  /** The Loc-RIB (best paths as of the last drain), for `ocelot routes`. */
  *locRib(): Generator<LocRibEntry> {
    for (let pfx = 0; pfx < this.t.top; pfx++) {
      if (this.t.fam[pfx] === 0 || this.pDirty[pfx] !== 0) continue;
      const best = this.bestOf(pfx);
      if (best === NONE) continue;
      const nh = this.pFib[pfx] as number;
      yield {
        prefix: this.t.text(pfx),
        peer: (this.peers[this.pathPeer[best] as number] as PeerRec).info.id,
        reason: bestReasonNames[this.pReason[pfx] as number] as BestReasonName,
        nexthops: nh === NONE ? [] : [...(this.nhSets[nh] as string[])],
        attrs: this.attrs.view(this.pathAttr[best] as number),
        ...(nh !== NONE && (this.nhSetMetric[nh] as number) >= 0
          ? { metric: this.nhSetMetric[nh] as number }
          : {}),
      };
    }
  }

  /** Sizes for status and metrics. */
  stats(): RibStats {
    let paths = 0;
    for (const p of this.peers) if (!p.removed) paths += p.received;
    let groups = 0;
    for (const g of this.groups) if (g !== undefined) groups++;
    return {
      prefixesV4: this.t.count4,
      prefixesV6: this.t.count6,
      paths,
      attributeSets: this.attrs.size,
      updateGroups: groups,
      pending: this.pending,
      typedArrayBytes: this.typedBytes(),
    };
  }

  /** Approximate bytes held by the typed arrays of the RIB (for the benchmark). */
  typedBytes(): number {
    let n =
      this.t.bytes() +
      this.pHead.byteLength +
      this.pReason.byteLength +
      this.pFib.byteLength +
      this.pDirty.byteLength +
      this.pathPeer.byteLength +
      this.pathAttr.byteLength +
      (this.pathPid?.byteLength ?? 0) +
      (this.pathLp?.byteLength ?? 0) +
      (this.pathRaw?.byteLength ?? 0) +
      this.pathNext.byteLength +
      this.pathFlag.byteLength +
      this.dirtyQ.byteLength;
    for (const g of this.groups) if (g) n += g.adv.byteLength + g.exc.byteLength;
    return n;
  }

  // ---------------------------------------------------------------------------------------
  // Internals: import

  private peerRec(peer: number | string): PeerRec {
    const idx = typeof peer === "number" ? peer : this.peerById.get(peer);
    const rec = idx === undefined ? undefined : this.peers[idx];
    if (rec === undefined || rec.removed || rec.idx === LOCAL) {
      throw new Error(`Peer ${JSON.stringify(peer)} is not in the RIB`);
    }
    return rec;
  }

  private announce(peer: number, attrId: number, pfx: number, pid: number): void {
    const rec = this.peers[peer] as PeerRec;
    this.inLp = -1;
    this.inEdit = undefined;
    const v = peer === LOCAL ? 0 : this.importVerdict(rec, attrId, pfx);
    const eff = this.importedAttr(attrId);
    for (let p = this.pHead[pfx] as number; p !== NONE; p = this.pathNext[p] as number) {
      if (this.pathPeer[p] !== peer || this.pidOf(p) !== pid) continue;
      const old = this.pathAttr[p] as number;
      const flag = this.pathFlag[p] as number;
      if (
        old === eff &&
        this.rawOf(p) === attrId &&
        (flag & VERDICT_MASK) === v &&
        this.lpOf(p) === this.inLp
      ) {
        // Same path again (e.g. re-sent after a graceful restart): no longer stale.
        if (flag & FLAG_STALE) {
          this.pathFlag[p] = v;
          rec.stale--;
        }
        return;
      }
      if (flag & FLAG_STALE) rec.stale--;
      this.releaseAttrs(p);
      this.holdAttrs(p, attrId, eff);
      if ((flag & VERDICT_MASK) === 0) rec.accepted--;
      if (v === 0) rec.accepted++;
      else rec.rejected[v] = (rec.rejected[v] as number) + 1;
      this.pathFlag[p] = v;
      this.setLp(p);
      this.markDirty(pfx);
      return;
    }
    const p = this.allocPath();
    this.pathPeer[p] = peer;
    this.holdAttrs(p, attrId, eff);
    this.setLp(p);
    if (pid !== 0 && this.pathPid === null) this.pathPid = growable(Uint32Array, this.pathCap);
    if (this.pathPid !== null) this.pathPid[p] = pid;
    this.pathFlag[p] = v;
    this.pathNext[p] = this.pHead[pfx] as number;
    this.pHead[pfx] = p;
    rec.received++;
    if (this.t.fam[pfx] === FAM_V6) rec.receivedV6++;
    if (v === 0) rec.accepted++;
    else rec.rejected[v] = (rec.rejected[v] as number) + 1;
    this.markDirty(pfx);
  }

  private withdraw(peer: number, pfx: number, pid: number): void {
    let prev = NONE;
    for (let p = this.pHead[pfx] as number; p !== NONE; p = this.pathNext[p] as number) {
      if (this.pathPeer[p] === peer && this.pidOf(p) === pid) {
        this.unlinkPath(pfx, prev, p, this.peers[peer] as PeerRec);
        this.markDirty(pfx);
        return;
      }
      prev = p;
    }
  }

  private unlinkPath(pfx: number, prev: number, p: number, rec: PeerRec): void {
    const next = this.pathNext[p] as number;
    if (prev === NONE) this.pHead[pfx] = next;
    else this.pathNext[prev] = next;
    this.releaseAttrs(p);
    rec.received--;
    if (this.t.fam[pfx] === FAM_V6) rec.receivedV6--;
    const flag = this.pathFlag[p] as number;
    if ((flag & VERDICT_MASK) === 0) rec.accepted--;
    if (flag & FLAG_STALE) rec.stale--;
    this.pathNext[p] = this.pathFreeHead;
    this.pathFreeHead = p;
  }

  /** RFC 4271 §9.1.2 loop check, RFC 4456 §8 reflection loop checks, then import policy. */
  private importVerdict(rec: PeerRec, attrId: number, pfx: number): number {
    this.inLp = -1;
    this.inEdit = undefined;
    if (rec.verdictEpoch !== this.attrs.epoch) {
      rec.verdict.fill(0);
      rec.verdictEpoch = this.attrs.epoch;
    }
    // The cache is indexed by attribute id, and ids are the whole RIB's: a peer that sent a
    // few paths is not given a cache the size of the table (a reflector's 1,000 clients, each
    // with an attribute set of its own, held 1 KiB each: N² bytes in all). Past what its own
    // paths could use, the checks run uncached (they are a few comparisons).
    let v: number;
    if (attrId < rec.verdict.length || attrId < VERDICT_CACHE_BASE + 4 * rec.received) {
      if (attrId >= rec.verdict.length) rec.verdict = growU8(rec.verdict, attrId + 1);
      v = (rec.verdict[attrId] as number) - 1;
      if (v < 0) {
        v = this.attrVerdict(rec, attrId);
        rec.verdict[attrId] = v + 1;
      }
    } else v = this.attrVerdict(rec, attrId);
    if (v !== 0) return v;
    const pol = rec.info.importPolicy;
    if (pol === undefined) return 0;
    const src = rec.ibgp ? RouteSource.Internal : RouteSource.External;
    if (pol.path !== undefined) {
      const r = this.pathPolicy(pol, pfx, src, attrId);
      if (r >= 0) return r;
      const e = pol.edit?.(-r);
      this.inLp = e?.localPref ?? -1;
      if (e && e.addCommunities.length + e.addLargeCommunities.length + e.prependAsns.length > 0)
        this.inEdit = e;
      return 0;
    }
    if (this.t.fam[pfx] === FAM_V4)
      return pol.v4(this.t.key[pfx] as number, this.t.len[pfx] as number, src);
    return pol.v6(this.t.v6Words, (this.t.key[pfx] as number) * 4, this.t.len[pfx] as number, src);
  }

  private attrVerdict(rec: PeerRec, attrId: number): number {
    const v = this.attrs.view(attrId);
    if (asPathCount(v.asPath, this.localAs) > rec.allowOwnAs) return RejectReason.AsPathLoop;
    if (rec.ibgp) {
      if (v.originatorId !== undefined && v.originatorId === this.routerId)
        return RejectReason.OriginatorIdLoop;
      if (this.clusterId !== NONE && v.clusterList.includes(this.clusterId))
        return RejectReason.ClusterListLoop;
    }
    return 0;
  }

  // ---------------------------------------------------------------------------------------
  // Internals: decision process (RFC 4271 §9.1.2.2 by elimination, order independent)

  /** The import policy's LOCAL_PREF for path p (-1: none). */
  private lpOf(p: number): number {
    return this.pathLp === null ? -1 : (this.pathLp[p] as number);
  }

  /** Records the LOCAL_PREF the last importVerdict() asked for on path p. */
  private setLp(p: number): void {
    if (this.pathLp === null) {
      if (this.inLp < 0) return;
      this.pathLp = growable(Int32Array, this.pathCap);
      this.pathLp.fill(-1);
    }
    this.pathLp[p] = this.inLp;
  }

  /** The attributes of path p as received (pathAttr holds them edited by the import policy). */
  private rawOf(p: number): number {
    if (this.pathRaw !== null) {
      const r = this.pathRaw[p] as number;
      if (r >= 0) return r;
    }
    return this.pathAttr[p] as number;
  }

  /**
   * The attribute set a path received with `raw` is kept with: raw, or raw with the last
   * importVerdict()'s communities and AS path prepends (Calico BGPFilter operations on import,
   * as BIRD's import filter changes the route it stores).
   */
  private importedAttr(raw: number): number {
    const e = this.inEdit;
    if (e === undefined) return raw;
    const A = this.attrs;
    if (this.editCacheEpoch !== A.epoch) {
      this.editCache = new WeakMap();
      this.editCacheEpoch = A.epoch;
    }
    let m = this.editCache.get(e);
    if (m === undefined) {
      m = new Map();
      this.editCache.set(e, m);
    }
    let id = m.get(raw);
    if (id === undefined) {
      const edit: AttrEdit = {
        addCommunities: e.addCommunities,
        addLargeCommunities: e.addLargeCommunities,
        prependAsns: e.prependAsns,
      };
      id = A.intern(A.adapter.edit(A.get(raw), edit));
      m.set(raw, id);
    }
    return id;
  }

  /** Path p takes attribute sets raw (as received) and eff (as kept), one reference each. */
  private holdAttrs(p: number, raw: number, eff: number): void {
    const R = this.attrs.refs;
    R[eff] = (R[eff] as number) + 1;
    this.pathAttr[p] = eff;
    if (raw !== eff) {
      R[raw] = (R[raw] as number) + 1;
      if (this.pathRaw === null) {
        this.pathRaw = growable(Int32Array, this.pathCap);
        this.pathRaw.fill(-1);
      }
      this.pathRaw[p] = raw;
    } else if (this.pathRaw !== null) this.pathRaw[p] = -1;
  }

  /** Drops path p's references to its attribute sets. */
  private releaseAttrs(p: number): void {
    const R = this.attrs.refs;
    const a = this.pathAttr[p] as number;
    R[a] = (R[a] as number) - 1;
    if (this.pathRaw !== null) {
      const r = this.pathRaw[p] as number;
      if (r >= 0) {
        R[r] = (R[r] as number) - 1;
        this.pathRaw[p] = -1;
      }
    }
  }

  /** LOCAL_PREF of path p in the decision: the import policy's, a counted one, else default. */
  private effLocalPref(p: number, v6 = this.decidingV6): number {
    const set = this.lpOf(p);
    if (set >= 0) return set;
    const dflt = v6 ? this.defaultLocalPrefV6 : this.defaultLocalPref;
    const peer = this.pathPeer[p] as number;
    if (peer !== LOCAL && !(this.peers[peer] as PeerRec).ibgp) return dflt;
    const lp = this.attrs.localPref[this.pathAttr[p] as number] as number;
    return lp < 0 ? dflt : lp;
  }

  /**
   * Calico's priority of path p (its BIRD's krt_metric): 2^31-1 - LOCAL_PREF when the import
   * policy set one or an iBGP peer sent one, else the family's normal priority.
   */
  private priorityOf(p: number, normal: number): number {
    let lp = this.lpOf(p);
    if (lp < 0) {
      const peer = this.pathPeer[p] as number;
      if (peer === LOCAL || !(this.peers[peer] as PeerRec).ibgp) return normal;
      lp = this.attrs.localPref[this.pathAttr[p] as number] as number;
      if (lp < 0) return normal;
    }
    // A LOCAL_PREF above 2^31-1 would be a negative priority: the best, 0.
    return lp >= PRIORITY_BASE ? 0 : PRIORITY_BASE - lp;
  }

  private decide(pfx: number): void {
    this.decidingV6 = this.t.fam[pfx] === FAM_V6;
    let n = 0;
    for (let p = this.pHead[pfx] as number; p !== NONE; p = this.pathNext[p] as number) {
      if (((this.pathFlag[p] as number) & VERDICT_MASK) !== 0) continue;
      if (n === this.cand.length) this.cand = growI32(this.cand, n * 2);
      this.cand[n++] = p;
    }
    this.mpCount = 0;
    if (n === 0) {
      this.pReason[pfx] = BestReason.None;
      return;
    }
    let llgrOnly = false;
    if (n > 1) {
      // RFC 9494 §4.3: LLGR_STALE paths are least preferred, before every other step.
      const m = this.keepNotLlgrStale(n);
      llgrOnly = m === 1 && n > 1;
      n = m;
    }
    if (n === 1) {
      const p = this.cand[0] as number;
      this.toHead(pfx, p);
      this.pReason[pfx] =
        this.pathPeer[p] === LOCAL
          ? BestReason.Local
          : llgrOnly
            ? BestReason.LlgrStale
            : BestReason.OnlyPath;
      this.mpCand[0] = p;
      this.mpCount = 1;
      return;
    }
    const c = this.cand;
    const A = this.attrs;
    let reason: number = BestReason.None;
    let mpN = n;
    for (let step = STEP_FIRST; step <= STEP_LAST; step++) {
      if (step === BestReason.IgpCost && this.igpCost === undefined) continue;
      if (step === BestReason.RouterId) {
        // Multipath point: the candidates equal so far.
        if (this.mpCand.length < n) this.mpCand = growI32(this.mpCand, n);
        for (let i = 0; i < n; i++) this.mpCand[i] = c[i] as number;
        mpN = n;
      }
      n = step === BestReason.Med ? this.keepMed(n) : this.keepMin(n, step);
      if (reason === BestReason.None && n === 1) reason = step;
    }
    const best = c[0] as number;
    this.toHead(pfx, best);
    this.pReason[pfx] = reason === BestReason.None ? BestReason.PathId : reason;
    // Multipath set: same neighbour AS as the best for eBGP unless relaxed.
    const bestPeer = this.peers[this.pathPeer[best] as number] as PeerRec;
    const needSameAs = !bestPeer.ibgp && !this.multipathRelax;
    const bestNas = A.neighborAs[this.pathAttr[best] as number] as number;
    let m = 0;
    for (let i = 0; i < mpN; i++) {
      const p = this.mpCand[i] as number;
      if (needSameAs && A.neighborAs[this.pathAttr[p] as number] !== bestNas) continue;
      this.mpCand[m++] = p;
    }
    this.mpCount = m;
  }

  /**
   * The best path of a settled (not pending) prefix: kept at the head of its path list, so no
   * per-prefix slot is needed for it. NONE when no path is accepted.
   */
  private bestOf(pfx: number): number {
    return this.pReason[pfx] === BestReason.None ? NONE : (this.pHead[pfx] as number);
  }

  /** Moves path p to the head of the prefix's list. */
  private toHead(pfx: number, p: number): void {
    const head = this.pHead[pfx] as number;
    if (head === p) return;
    let q = head;
    while (this.pathNext[q] !== p) q = this.pathNext[q] as number;
    this.pathNext[q] = this.pathNext[p] as number;
    this.pathNext[p] = head;
    this.pHead[pfx] = p;
  }

  private pidOf(p: number): number {
    return this.pathPid === null ? 0 : (this.pathPid[p] as number);
  }

  private ibgpRank(p: number): number {
    const peer = this.pathPeer[p] as number;
    return peer !== LOCAL && (this.peers[peer] as PeerRec).ibgp ? 1 : 0;
  }

  /** RFC 4456 §9: the ORIGINATOR_ID stands in for the router id of reflected routes. */
  private routerIdOf(p: number): number {
    const o = this.attrs.originator[this.pathAttr[p] as number] as number;
    if (o >= 0) return o;
    return (this.peers[this.pathPeer[p] as number] as PeerRec).routerId;
  }

  /** The number a decision step minimises for path p (lower is better). */
  private stepKey(step: number, p: number): number {
    const A = this.attrs;
    const a = this.pathAttr[p] as number;
    switch (step) {
      case BestReason.Local:
        return this.pathPeer[p] === LOCAL ? 0 : 1;
      case BestReason.LocalPref:
        return -this.effLocalPref(p);
      case BestReason.AsPathLength:
        return A.asLen[a] as number;
      case BestReason.Origin:
        return A.origin[a] as number;
      case BestReason.EbgpOverIbgp:
        return this.ibgpRank(p);
      case BestReason.IgpCost:
        return (this.igpCost as (nh: string) => number)(
          A.nextHops[A.nextHopId[a] as number] as string,
        );
      case BestReason.RouterId:
        return this.routerIdOf(p);
      case BestReason.ClusterListLength:
        return A.clusterLen[a] as number;
      case BestReason.PeerAddress:
        return (this.peers[this.pathPeer[p] as number] as PeerRec).addrRank;
      default:
        return this.pidOf(p);
    }
  }

  private keepMin(n: number, step: number): number {
    const c = this.cand;
    if (this.keys.length < n) this.keys = new Float64Array(n * 2);
    const keys = this.keys;
    let min = Number.POSITIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const k = this.stepKey(step, c[i] as number);
      keys[i] = k;
      if (k < min) min = k;
    }
    let m = 0;
    for (let i = 0; i < n; i++) if (keys[i] === min) c[m++] = c[i] as number;
    return m;
  }

  /** Drops the LLGR_STALE candidates unless all are (RFC 9494 §4.3); returns how many remain. */
  private keepNotLlgrStale(n: number): number {
    const c = this.cand;
    const flags = this.attrs.flags;
    let m = 0;
    for (let i = 0; i < n; i++) {
      const p = c[i] as number;
      if (!((flags[this.pathAttr[p] as number] as number) & FLAG_LLGR_STALE)) c[m++] = p;
    }
    if (m > 0) return m;
    // All stale: the candidates were overwritten only where kept (none), so [0, n) is intact.
    return n;
  }

  /** RFC 4271 §9.1.2.2 (c): drop a path when one from the same neighbour AS has a lower MED. */
  private keepMed(n: number): number {
    const c = this.cand;
    const A = this.attrs;
    let m = 0;
    for (let i = 0; i < n; i++) {
      const p = c[i] as number;
      const ap = this.pathAttr[p] as number;
      const nas = A.neighborAs[ap] as number;
      const med = A.med[ap] as number;
      let beaten = false;
      for (let j = 0; j < n && !beaten; j++) {
        const aq = this.pathAttr[c[j] as number] as number;
        if (A.neighborAs[aq] === nas && (A.med[aq] as number) < med) beaten = true;
      }
      if (!beaten) this.cand[m++] = p;
    }
    // Safe in place: entries are only moved down, and reads of beaten use the old prefix [0, n).
    return m;
  }

  /**
   * A route at a metric of its own (a priority) moving to another metric, or going: pushes the
   * removal of the old one by its metric (-1: at the normal one, -2-set: at the set's) and the
   * new set, and returns true; false when the metric stays (the caller pushes nh as usual).
   */
  private metricMove(fib: FibBatch, pfx: number, fam: number, was: number, nh: number): boolean {
    const wm = this.nhSetMetric[was] as number;
    if (wm < 0 && (nh === NONE || (this.nhSetMetric[nh] as number) < 0)) return false;
    if (nh !== NONE && this.metricOfSet(was, fam) === this.metricOfSet(nh, fam)) return false;
    this.pushFib(fib, pfx, fam, wm < 0 ? NONE : -2 - was);
    if (nh !== NONE) this.pushFib(fib, pfx, fam, nh);
    return true;
  }

  /** One FIB change of prefix pfx: a next-hop set id, or a removal code (FibBatch). */
  private pushFib(fib: FibBatch, pfx: number, fam: number, code: number): void {
    if (fam === FAM_V4) {
      fib.v4.pushV4(this.t.key[pfx] as number, this.t.len[pfx] as number);
      fib.v4Sets.push(code);
    } else {
      fib.v6.pushV6(this.t.v6Words, (this.t.key[pfx] as number) * 4, this.t.len[pfx] as number);
      fib.v6Sets.push(code);
    }
  }

  /**
   * The FIB next-hop set id of the prefix's current best (call right after decide()): with
   * route priorities on, a set carrying the best path's priority as its metric when that is not
   * the family's normal one.
   */
  private fibSetOf(pfx: number): number {
    const s = this.plainFibSetOf(pfx);
    const rp = this.routePriority;
    if (rp === undefined || s === NONE) return s;
    const normal = this.t.fam[pfx] === FAM_V6 ? rp.v6 : rp.v4;
    const prio = this.priorityOf(this.bestOf(pfx), normal);
    return prio === normal ? s : this.internNhSet(this.nhSets[s] as string[], prio);
  }

  /** The kernel metric of next-hop set s for family fam (its own, else the normal one). */
  private metricOfSet(s: number, fam: number): number {
    const m = this.nhSetMetric[s] as number;
    if (m >= 0) return m;
    const rp = this.routePriority;
    return rp === undefined ? -1 : fam === FAM_V6 ? rp.v6 : rp.v4;
  }

  private plainFibSetOf(pfx: number): number {
    const best = this.bestOf(pfx);
    if (best === NONE || this.pathPeer[best] === LOCAL) return NONE;
    if (this.fibExcluded.length > 0 && this.fibExcludes(pfx)) return NONE;
    const A = this.attrs;
    if (!this.multipath || this.mpCount <= 1) {
      const nh = A.nextHopId[this.pathAttr[best] as number] as number;
      let s = this.singleNhSet[nh];
      if (s === undefined) {
        const text = A.nextHops[nh] as string;
        s = text === "" ? NONE : this.internNhSet([text]);
        this.singleNhSet[nh] = s;
      }
      return s;
    }
    const hops = new Set<string>();
    for (let i = 0; i < this.mpCount; i++) {
      const t = A.nextHops[
        A.nextHopId[this.pathAttr[this.mpCand[i] as number] as number] as number
      ] as string;
      if (t !== "") hops.add(t);
    }
    if (hops.size === 0) return NONE;
    return this.internNhSet([...hops].sort());
  }

  /** The id of a next-hop set, with a kernel metric of its own (metric >= 0) or not. */
  private internNhSet(hops: string[], metric = -1): number {
    const key = metric < 0 ? hops.join(",") : `${metric}|${hops.join(",")}`;
    let id = this.nhSetIds.get(key);
    if (id === undefined) {
      id = this.nhSets.length;
      this.nhSets.push(hops);
      this.nhSetMetric.push(metric);
      this.nhSetIds.set(key, id);
      if (metric >= 0) this.metricSets = true;
    }
    return id;
  }

  // ---------------------------------------------------------------------------------------
  // Internals: export (Adj-RIB-Out per update group)

  private sourceOf(peer: number): RouteSource {
    if (peer === LOCAL) return RouteSource.Local;
    return (this.peers[peer] as PeerRec).ibgp ? RouteSource.Internal : RouteSource.External;
  }

  /** An attribute-reading policy's verdict on one path (see PrefixPolicy.path). */
  private pathPolicy(pol: PrefixPolicy, pfx: number, src: RouteSource, attrId: number): number {
    const view = this.attrs.view(attrId);
    const call = pol.path as NonNullable<PrefixPolicy["path"]>;
    if (this.t.fam[pfx] === FAM_V4) {
      this.oneWord[0] = this.t.key[pfx] as number;
      return call(4, this.oneWord, 0, this.t.len[pfx] as number, src, view);
    }
    const off = (this.t.key[pfx] as number) * 4;
    return call(6, this.t.v6Words, off, this.t.len[pfx] as number, src, view);
  }

  /**
   * 0 when the best path of pfx may go to group g, else the RejectReason; sets outEdit to the
   * export policy's edit id (0: none) for the outAttr() that follows.
   */
  private exportVerdict(g: Group, pfx: number, best: number): number {
    this.outEdit = 0;
    const src = this.pathPeer[best] as number;
    const srcRec = this.peers[src] as PeerRec;
    const f = this.attrs.flags[this.pathAttr[best] as number] as number;
    // RFC 1997: NO_ADVERTISE to no peer; NO_EXPORT(_SUBCONFED) not outside the AS.
    if (f & FLAG_NO_ADVERTISE) return RejectReason.NoAdvertise;
    // RFC 9494 §4.5: LLGR_STALE paths only to peers that negotiated long-lived GR (§4.6: or
    // to internal ones asked for, tagged NO_EXPORT with LOCAL_PREF 0 by outAttr).
    if (f & FLAG_LLGR_STALE && !g.llgr && !g.llgrPartial) return RejectReason.LlgrStale;
    if (g.ebgp && f & (FLAG_NO_EXPORT | FLAG_NO_EXPORT_SUBCONFED)) return RejectReason.NoExport;
    if (!g.ebgp && src !== LOCAL && srcRec.ibgp) {
      // RFC 4271 §9.2 split horizon; RFC 4456 §6 reflection: a client's route to everyone,
      // a non-client's route to clients only.
      if (this.clusterId === NONE) return RejectReason.IbgpSplitHorizon;
      if (!srcRec.rrClient && !g.rrClient) return RejectReason.IbgpSplitHorizon;
    }
    const pol = g.policy;
    if (pol === undefined) return 0;
    const s = this.sourceOf(src);
    if (pol.path !== undefined) {
      const r = this.pathPolicy(pol, pfx, s, this.pathAttr[best] as number);
      if (r >= 0) return r;
      this.outEdit = -r;
      return 0;
    }
    if (this.t.fam[pfx] === FAM_V4)
      return pol.v4(this.t.key[pfx] as number, this.t.len[pfx] as number, s);
    return pol.v6(this.t.v6Words, (this.t.key[pfx] as number) * 4, this.t.len[pfx] as number, s);
  }

  /** The attribute set group g gets for pfx (or NONE); sets outExc to the excluded member. */
  private exportOf(g: Group, pfx: number): number {
    this.outExc = 0;
    const best = this.bestOf(pfx);
    if (best === NONE) return NONE;
    const fam = this.t.fam[pfx] as number;
    if (fam === FAM_V4 ? !g.v4 : !g.v6) return NONE;
    if (this.exportVerdict(g, pfx, best) !== 0) return NONE;
    const src = this.pathPeer[best] as number;
    if (src !== LOCAL && (this.peers[src] as PeerRec).group === g.idx) this.outExc = src;
    return this.outAttr(g, best, fam);
  }

  private outAttr(g: Group, best: number, fam: number): number {
    if (g.cacheEpoch !== this.attrs.epoch) {
      g.cache.clear();
      g.cacheEpoch = this.attrs.epoch;
    }
    const a = this.pathAttr[best] as number;
    const src = this.pathPeer[best] as number;
    const edit = this.outEdit;
    // A path with an import policy's LOCAL_PREF (setPriority) is not cached: the key does not
    // hold it, and a policy change keeps the attribute set.
    const key =
      this.lpOf(best) >= 0 ? -1 : ((a * 65536 + src) * 2 + (fam === FAM_V6 ? 1 : 0)) * 4096 + edit;
    const hit = key < 0 ? undefined : g.cache.get(key);
    if (hit !== undefined) return hit;
    const srcRec = this.peers[src] as PeerRec;
    const nhSelf = fam === FAM_V4 ? g.nhSelf4 : g.nhSelf6;
    const e: AttrEdit = {};
    const pe = edit !== 0 ? g.policy?.edit?.(edit) : undefined;
    if (pe !== undefined) {
      // Calico BGPFilter operations, before the protocol's own edits (BIRD runs the export
      // filter first, then prepends its AS towards eBGP).
      if (pe.addCommunities.length > 0) e.addCommunities = pe.addCommunities;
      if (pe.addLargeCommunities.length > 0) e.addLargeCommunities = pe.addLargeCommunities;
      if (pe.prependAsns.length > 0) e.prependAsns = pe.prependAsns;
    }
    if (g.ebgp) {
      // RFC 4271 §5.1.2 prepend, §5.1.3 next hop self, §5.1.5 no LOCAL_PREF, §5.1.4 a MED
      // received from a neighbouring AS is not passed on; RFC 4456 attributes stay inside.
      e.prependAs = this.localAs;
      if (nhSelf !== undefined) e.nextHop = nhSelf;
      e.localPref = null;
      if (src !== LOCAL) e.med = null;
      e.stripReflection = true;
    } else if (src !== LOCAL && srcRec.ibgp) {
      // RFC 4456 §8: reflected routes get ORIGINATOR_ID and our cluster id; next hop kept.
      const v = this.attrs.view(a);
      e.originatorId = v.originatorId ?? srcRec.routerId;
      e.prependClusterId = this.clusterId;
      if (pe?.localPref !== undefined) e.localPref = pe.localPref;
    } else {
      // To iBGP: next hop self (DESIGN §7), LOCAL_PREF as used by our decision (or as the
      // export policy's setPriority says).
      if (nhSelf !== undefined) e.nextHop = nhSelf;
      e.localPref = pe?.localPref ?? this.effLocalPref(best, fam === FAM_V6);
    }
    if (g.llgrPartial && (this.attrs.flags[a] as number) & FLAG_LLGR_STALE) {
      // RFC 9494 §4.6: a stale path to a peer that cannot tell it is one stays in the AS and
      // loses to any other path.
      e.addCommunity = NO_EXPORT;
      e.localPref = 0;
    }
    const out = this.attrs.intern(this.attrs.adapter.edit(this.attrs.get(a), e));
    if (key >= 0) g.cache.set(key, out);
    return out;
  }

  private exportPrefix(g: Group, pfx: number, builders: Map<number, GroupBuilder<A>>): void {
    if (g.ap !== null) {
      this.exportPaths(g, pfx, builders);
      return;
    }
    const newOut = this.exportOf(g, pfx);
    const newExc = this.outExc;
    const oldOut = g.adv[pfx] as number;
    const oldExc = g.exc[pfx] as number;
    if (newOut === oldOut && newExc === oldExc) return;
    let b = builders.get(g.idx);
    if (b === undefined) {
      b = new GroupBuilder(g.idx, this);
      builders.set(g.idx, b);
    }
    // Generic members (neither excluded before nor now).
    const gen =
      newOut !== NONE
        ? newOut !== oldOut
          ? ACT_ANN
          : ACT_NONE
        : oldOut !== NONE
          ? ACT_WD
          : ACT_NONE;
    let except0 = 0;
    let except1 = 0;
    // The members excluded before or now get their own action when it differs from the rest.
    const s0 = oldExc !== 0 && g.members.has(oldExc) ? oldExc : 0;
    const s1 = newExc !== 0 && newExc !== oldExc && g.members.has(newExc) ? newExc : 0;
    if (s0 !== 0 && specialAct(s0, oldOut, oldExc, newOut, newExc) !== gen) {
      except0 = s0;
      const act = specialAct(s0, oldOut, oldExc, newOut, newExc);
      if (act !== ACT_NONE) b.add(act, newOut, s0, 0, 0, pfx);
    }
    if (s1 !== 0 && specialAct(s1, oldOut, oldExc, newOut, newExc) !== gen) {
      if (except0 === 0) except0 = s1;
      else except1 = s1;
      const act = specialAct(s1, oldOut, oldExc, newOut, newExc);
      if (act !== ACT_NONE) b.add(act, newOut, s1, 0, 0, pfx);
    }
    const excluded = (except0 !== 0 ? 1 : 0) + (except1 !== 0 ? 1 : 0);
    if (gen !== ACT_NONE && g.members.size > excluded) b.add(gen, newOut, 0, except0, except1, pfx);
    // Bookkeeping: counts and references.
    if (oldOut !== NONE) {
      g.advCount--;
      this.attrs.refs[oldOut] = (this.attrs.refs[oldOut] as number) - 1;
      if (oldExc !== 0) (this.peers[oldExc] as PeerRec).excluded--;
    }
    if (newOut !== NONE) {
      g.advCount++;
      this.attrs.refs[newOut] = (this.attrs.refs[newOut] as number) + 1;
      if (newExc !== 0) (this.peers[newExc] as PeerRec).excluded++;
    }
    g.adv[pfx] = newOut;
    g.exc[pfx] = newExc;
  }

  /**
   * The paths ADD-PATH group g sends for pfx, as [pathId, attr, ...] (call right after
   * decide(pfx): the multipath set is read). Path ids are the RIB's path slots + 1: stable for
   * as long as the path lives, reused only after it was withdrawn.
   */
  private exportPathsOf(g: Group, pfx: number, out: number[]): void {
    out.length = 0;
    const best = this.bestOf(pfx);
    if (best === NONE) return;
    const fam = this.t.fam[pfx] as number;
    if (fam === FAM_V4 ? !g.v4 : !g.v6) return;
    const ap = g.ap as { v4: number; v6: number };
    const limit = fam === FAM_V4 ? ap.v4 : ap.v6;
    if (limit === 0) {
      // Not negotiated for this family: the best path alone, without an id.
      if (this.pathPeer[best] === g.apMember || this.exportVerdict(g, pfx, best) !== 0) return;
      out.push(0, this.outAttr(g, best, fam));
      return;
    }
    for (let i = -1; i < this.mpCount && out.length < limit * 2; i++) {
      const p = i < 0 ? best : (this.mpCand[i] as number);
      if (i >= 0 && p === best) continue;
      if (this.pathPeer[p] === g.apMember || this.exportVerdict(g, pfx, p) !== 0) continue;
      out.push(p + 1, this.outAttr(g, p, fam));
    }
  }

  /** Adj-RIB-Out of an ADD-PATH group: each path announced or withdrawn by its own id. */
  private exportPaths(g: Group, pfx: number, builders: Map<number, GroupBuilder<A>>): void {
    const old = g.apOut.get(pfx);
    const neu: number[] = [];
    this.exportPathsOf(g, pfx, neu);
    if (old === undefined && neu.length === 0) return;
    if (old !== undefined && old.length === neu.length && old.every((x, i) => x === neu[i])) return;
    let b = builders.get(g.idx);
    if (b === undefined) {
      b = new GroupBuilder(g.idx, this);
      builders.set(g.idx, b);
    }
    const prev = old ?? [];
    for (let i = 0; i < prev.length; i += 2) {
      const pid = prev[i] as number;
      let kept = false;
      for (let j = 0; j < neu.length && !kept; j += 2) kept = neu[j] === pid;
      if (!kept) b.add(ACT_WD, prev[i + 1] as number, 0, 0, 0, pfx, pid);
    }
    for (let j = 0; j < neu.length; j += 2) {
      const pid = neu[j] as number;
      const attr = neu[j + 1] as number;
      let same = false;
      for (let i = 0; i < prev.length && !same; i += 2)
        same = prev[i] === pid && prev[i + 1] === attr;
      if (!same) b.add(ACT_ANN, attr, 0, 0, 0, pfx, pid);
    }
    this.setApOut(g, pfx, neu);
  }

  /** Records what ADD-PATH group g sends for pfx (references and counts kept). */
  private setApOut(g: Group, pfx: number, list: number[]): void {
    const old = g.apOut.get(pfx);
    if (old !== undefined) {
      g.advCount--;
      for (let i = 1; i < old.length; i += 2)
        this.attrs.refs[old[i] as number] = (this.attrs.refs[old[i] as number] as number) - 1;
    }
    if (list.length === 0) {
      g.apOut.delete(pfx);
      g.adv[pfx] = NONE;
      return;
    }
    g.advCount++;
    for (let i = 1; i < list.length; i += 2)
      this.attrs.refs[list[i] as number] = (this.attrs.refs[list[i] as number] as number) + 1;
    g.apOut.set(pfx, list);
    // adv mirrors "something is sent" (a prefix is not freed while its withdrawal is due).
    g.adv[pfx] = list[1] as number;
  }

  /** @internal for GroupBuilder */
  memberIds(g: Group | number, except: number[], only = 0): string[] {
    const grp = typeof g === "number" ? (this.groups[g] as Group) : g;
    if (only !== 0) return [(this.peers[only] as PeerRec).info.id];
    const out: string[] = [];
    for (const m of grp.members)
      if (!except.includes(m)) out.push((this.peers[m] as PeerRec).info.id);
    return out;
  }

  /** @internal for GroupBuilder */
  attrsOf(id: number): A {
    return this.attrs.get(id);
  }

  /** @internal for GroupBuilder */
  pushPrefix(pfx: number, v4: PrefixList, v6: PrefixList, pid = -1): void {
    this.t.pushTo(pfx, v4, v6);
    if (pid >= 0) (this.t.fam[pfx] === FAM_V4 ? v4 : v6).pushPathId(pid);
  }

  private groupKeyOf(rec: PeerRec): string {
    const i = rec.info;
    const fams = i.families ?? ["ipv4-unicast", "ipv6-unicast"];
    return JSON.stringify([
      rec.ibgp ? "i" : "e",
      rec.ibgp ? "" : i.asn,
      rec.rrClient,
      [...fams].sort(),
      i.nextHopSelfV4 ?? "",
      i.nextHopSelfV6 ?? "",
      i.exportPolicy?.key ?? "",
      i.exportGroupKey ?? "",
      apOf(i) === null ? "" : [i.id, i.addPathSend?.v4, i.addPathSend?.v6],
      i.llgr ?? false,
      llgrPartialOf(rec),
    ]);
  }

  private joinGroup(rec: PeerRec): void {
    const key = this.groupKeyOf(rec);
    let gi = this.groupByKey.get(key);
    if (gi === undefined) {
      const fams = rec.info.families ?? ["ipv4-unicast", "ipv6-unicast"];
      gi = this.groups.length;
      const g: Group = {
        idx: gi,
        key,
        members: new Set(),
        ebgp: !rec.ibgp,
        rrClient: rec.rrClient,
        v4: fams.includes("ipv4-unicast"),
        v6: fams.includes("ipv6-unicast"),
        nhSelf4: rec.info.nextHopSelfV4,
        nhSelf6: rec.info.nextHopSelfV6,
        policy: rec.info.exportPolicy,
        adv: growable(Int32Array, this.t.cap).fill(NONE),
        exc: growable(Uint16Array, this.t.cap),
        advCount: 0,
        cache: new Map(),
        cacheEpoch: this.attrs.epoch,
        ap: apOf(rec.info),
        apOut: new Map(),
        apMember: rec.idx,
        llgr: rec.info.llgr ?? false,
        llgrPartial: llgrPartialOf(rec),
      };
      this.groups.push(g);
      this.groupByKey.set(key, gi);
      g.members.add(rec.idx);
      rec.group = gi;
      if (g.ap !== null) {
        for (let pfx = 0; pfx < this.t.top; pfx++) {
          if (this.t.fam[pfx] === 0 || this.bestOf(pfx) === NONE || this.pDirty[pfx] !== 0)
            continue;
          this.decide(pfx); // settled: same result, and the multipath set to read
          const list: number[] = [];
          this.exportPathsOf(g, pfx, list);
          if (list.length > 0) this.setApOut(g, pfx, list);
        }
        return;
      }
      // A new group starts from the current Loc-RIB (its peers get it as their initial dump).
      for (let pfx = 0; pfx < this.t.top; pfx++) {
        // Pending prefixes are settled by the next drain (their best may be out of date).
        if (this.t.fam[pfx] === 0 || this.bestOf(pfx) === NONE || this.pDirty[pfx] !== 0) continue;
        const out = this.exportOf(g, pfx);
        if (out === NONE) continue;
        g.adv[pfx] = out;
        g.exc[pfx] = this.outExc;
        if (this.outExc !== 0) rec.excluded++;
        g.advCount++;
        this.attrs.refs[out] = (this.attrs.refs[out] as number) + 1;
      }
      return;
    }
    const g = this.groups[gi] as Group;
    g.members.add(rec.idx);
    rec.group = gi;
    // Joining a group that exists: its own best paths are not sent back to it.
    if (rec.received === 0) return;
    for (let pfx = 0; pfx < this.t.top; pfx++) {
      const best = this.bestOf(pfx);
      if (best === NONE || this.pDirty[pfx] !== 0 || g.adv[pfx] === NONE) continue;
      if (this.pathPeer[best] !== rec.idx) continue;
      if (g.exc[pfx] !== 0) continue;
      g.exc[pfx] = rec.idx;
      rec.excluded++;
    }
  }

  private leaveGroup(rec: PeerRec): void {
    const g = this.groups[rec.group] as Group;
    g.members.delete(rec.idx);
    rec.group = NONE;
    if (rec.excluded > 0) {
      // "All members but rec" is now "all members".
      for (let pfx = 0; pfx < this.t.top; pfx++) if (g.exc[pfx] === rec.idx) g.exc[pfx] = 0;
      rec.excluded = 0;
    }
    if (g.members.size > 0) return;
    if (g.ap !== null) {
      for (const pfx of [...g.apOut.keys()]) this.setApOut(g, pfx, []);
      this.groups[g.idx] = undefined;
      this.groupByKey.delete(g.key);
      return;
    }
    for (let pfx = 0; pfx < this.t.top; pfx++) {
      const out = g.adv[pfx] as number;
      if (out !== NONE) this.attrs.refs[out] = (this.attrs.refs[out] as number) - 1;
    }
    this.groups[g.idx] = undefined;
    this.groupByKey.delete(g.key);
  }

  private rankPeers(): void {
    const live = this.peers.filter((p) => p.idx !== LOCAL && !p.removed);
    live.sort((a, b) => (a.addrKey < b.addrKey ? -1 : a.addrKey > b.addrKey ? 1 : a.idx - b.idx));
    live.forEach((p, i) => {
      p.addrRank = i;
    });
  }

  // ---------------------------------------------------------------------------------------
  // Internals: prefix table and stores

  private markDirty(pfx: number): void {
    if (this.pDirty[pfx] !== 0) return;
    this.pDirty[pfx] = 1;
    if (this.dirtyTail === this.dirtyQ.length) {
      if (this.dirtyHead > this.dirtyQ.length / 2) {
        this.dirtyQ.copyWithin(0, this.dirtyHead, this.dirtyTail);
        this.dirtyTail -= this.dirtyHead;
        this.dirtyHead = 0;
      } else this.dirtyQ = growI32(this.dirtyQ, this.dirtyQ.length * 2);
    }
    this.dirtyQ[this.dirtyTail++] = pfx;
  }

  private allocPath(): number {
    if (this.pathFreeHead !== NONE) {
      const p = this.pathFreeHead;
      this.pathFreeHead = this.pathNext[p] as number;
      return p;
    }
    if (this.pathTop === this.pathCap) {
      const n = nextCapacity(this.pathCap);
      this.pathPeer = growU16(this.pathPeer, n);
      this.pathAttr = growI32(this.pathAttr, n);
      if (this.pathPid !== null) this.pathPid = growU32(this.pathPid, n);
      if (this.pathLp !== null) this.pathLp = growI32(this.pathLp, n, -1);
      if (this.pathRaw !== null) this.pathRaw = growI32(this.pathRaw, n, -1);
      this.pathNext = growI32(this.pathNext, n);
      this.pathFlag = growU8(this.pathFlag, n);
      this.pathCap = this.pathPeer.length;
    }
    return this.pathTop++;
  }

  /** A prefix with no paths left, after its FIB and Adj-RIB-Out changes went out. */
  private freePrefix(pfx: number): void {
    if (this.pFib[pfx] !== NONE) return;
    for (const g of this.groups) if (g !== undefined && g.adv[pfx] !== NONE) return;
    // Free ids keep the defaults a new prefix starts with.
    this.pReason[pfx] = 0;
    this.t.remove(pfx);
  }

  /** The per-prefix arrays follow the table's capacity. */
  private growPrefixes(cap: number): void {
    this.pHead = growI32(this.pHead, cap, NONE);
    this.pReason = growU8(this.pReason, cap);
    this.pFib = growI32(this.pFib, cap, NONE);
    this.pDirty = growU8(this.pDirty, cap);
    for (const g of this.groups) {
      if (g === undefined) continue;
      g.adv = growI32(g.adv, cap, NONE);
      g.exc = growU16(g.exc, cap);
    }
  }

  private maybeSweep(): void {
    if (this.attrs.size < 2 * this.liveAttrsAfterSweep + 1024) return;
    this.attrs.sweep();
    this.liveAttrsAfterSweep = this.attrs.size;
  }
}
