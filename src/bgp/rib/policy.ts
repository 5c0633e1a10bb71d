// The policy contract the RIB calls per prefix: a compiled prefix policy returning 0 (accept)
// or a typed reject reason code, and the names of those reasons; a policy whose rules read
// path attributes (Calico BGPFilter communities, asPathPrefix, interface, priority) or change
// them on export (operations) also offers `path`. Owns: the codes and the interface. Not:
// filter compilation or the defaults (../policy/, which implements it).
import type { AttrView, LargeCommunity } from "./attrs.js";

/** Where a route came from, as export policy sees it. */
export const RouteSource = {
  /** Originated by this node. */
  Local: 0,
  /** Learned from an iBGP peer (another node of the cluster). */
  Internal: 1,
  /** Learned from an eBGP peer. */
  External: 2,
} as const;
export type RouteSource = (typeof RouteSource)[keyof typeof RouteSource];

/** Why a path was not accepted on import or not advertised on export (0 = accepted). */
export const RejectReason = {
  Accepted: 0,
  /** Our AS appears more than allowOwnAs times in AS_PATH (RFC 4271 §9.1.2). */
  AsPathLoop: 1,
  /** ORIGINATOR_ID equals our router id (RFC 4456 §8). */
  OriginatorIdLoop: 2,
  /** CLUSTER_LIST contains our cluster id (RFC 4456 §8). */
  ClusterListLoop: 3,
  /** A BGPFilter rule with action Reject matched. */
  FilterReject: 4,
  /** Default import policy: prefix inside one of our pools from an external peer (DESIGN §7). */
  OwnPoolPrefix: 5,
  /** Default export policy: to external peers only our own originations (DESIGN §7). */
  NotOriginatedHere: 6,
  /** Well-known community NO_ADVERTISE (RFC 1997). */
  NoAdvertise: 7,
  /** Well-known community NO_EXPORT or NO_EXPORT_SUBCONFED towards an eBGP peer (RFC 1997). */
  NoExport: 8,
  /** iBGP-learned route not sent to an iBGP peer (RFC 4271 §9.2, RFC 4456 §6). */
  IbgpSplitHorizon: 9,
  /** Not sent back to the peer the best path came from. */
  FromThisPeer: 10,
  /** The peer's session does not carry this address family. */
  FamilyNotEnabled: 11,
  /** No accepted path: nothing to advertise. */
  NoBestPath: 12,
  /** RFC 9494 §4.5: an LLGR_STALE path is not sent to a peer without long-lived GR. */
  LlgrStale: 13,
  /**
   * Import ownership (policy/ownership.ts): inside an IP pool, a prefix the peer's Node does not
   * own (no block affinity, no workload address there).
   */
  NotOwned: 14,
} as const;
export type RejectReasonName = keyof typeof RejectReason;
export type RejectReasonCode = (typeof RejectReason)[RejectReasonName];

const reasonNames = Object.keys(RejectReason) as RejectReasonName[];

export function rejectReasonName(code: number): RejectReasonName {
  const name = reasonNames[code];
  if (name === undefined) throw new Error(`Unknown reject reason code ${code}`);
  return name;
}

/**
 * A compiled per-prefix policy. `v4`/`v6` return 0 to accept or a RejectReason code. IPv6
 * prefixes are four big-endian u32 words at `w[off..off+3]`.
 */
export interface PrefixPolicy {
  /** Identity: policies with equal keys behave the same (update groups share them). */
  readonly key: string;
  v4(addr: number, len: number, source: RouteSource): number;
  v6(w: Uint32Array, off: number, len: number, source: RouteSource): number;
  /** Human detail for `explain`: which rule decided, e.g. `filter "tor" importV4[2] Reject`. */
  describe?(
    family: 4 | 6,
    w: Uint32Array,
    off: number,
    len: number,
    source: RouteSource,
    attrs?: AttrView,
  ): string;
  /**
   * Present when a rule reads the path's attributes: the RIB calls this instead of v4/v6.
   * Returns a RejectReason code (> 0), 0 to accept unchanged, or -id to accept with the edit
   * `edit(id)` (on export: what the peer is sent; on import: the path as the RIB keeps it).
   */
  path?(
    family: 4 | 6,
    w: Uint32Array,
    off: number,
    len: number,
    source: RouteSource,
    attrs: AttrView,
  ): number;
  edit?(id: number): PolicyEdit;
}

/**
 * What a policy's accepting rule changes (Calico BGPFilter operations): on export the route as
 * sent; on import the path as the RIB keeps, decides on and passes on (BIRD's import filter).
 */
export interface PolicyEdit {
  addCommunities: readonly number[];
  addLargeCommunities: readonly LargeCommunity[];
  /** Prepended so that the first listed ends up first in AS_PATH. */
  prependAsns: readonly number[];
  /**
   * Calico's priority as LOCAL_PREF (2^31-1 - priority): on export sent to iBGP peers, on
   * import the path's LOCAL_PREF (and so its kernel metric); none when absent.
   */
  localPref?: number;
}
