// Path attributes as the RIB sees them: a small structural view (what best path, loop checks
// and export need), an adapter over the codec's attribute type, and the interning table that
// turns attribute sets into small integer ids. Not: attribute encoding (src/bgp/wire/).

import { AsPathSegmentType, Origin, WellKnownCommunity } from "../wire/constants.js";

// The codec's IANA codes (wire/constants.ts, their one definition) under the RIB's names.
/** RFC 4271 §4.3 ORIGIN values. */
export const ORIGIN_IGP = Origin.Igp;
export const ORIGIN_EGP = Origin.Egp;
export const ORIGIN_INCOMPLETE = Origin.Incomplete;

/** RFC 4271 §4.3 / RFC 5065 AS_PATH segment types. */
export const AS_SET = AsPathSegmentType.AsSet;
export const AS_SEQUENCE = AsPathSegmentType.AsSequence;
export const AS_CONFED_SEQUENCE = AsPathSegmentType.AsConfedSequence;
export const AS_CONFED_SET = AsPathSegmentType.AsConfedSet;

/** RFC 1997 well-known communities. */
export const NO_EXPORT = WellKnownCommunity.NoExport;
export const NO_ADVERTISE = WellKnownCommunity.NoAdvertise;
export const NO_EXPORT_SUBCONFED = WellKnownCommunity.NoExportSubconfed;
/** RFC 9494 §2: the path is kept across a long-lived graceful restart / must not be. */
export const LLGR_STALE = WellKnownCommunity.LlgrStale;
export const NO_LLGR = WellKnownCommunity.NoLlgr;

export interface AsPathSegmentView {
  readonly type: number;
  readonly asns: readonly number[];
}

/** RFC 8092 large community (three u32). */
export type LargeCommunity = readonly [number, number, number];

/** What the RIB reads from an attribute set. The codec's PathAttributes is adapted to this. */
export interface AttrView {
  readonly origin: number;
  readonly asPath: readonly AsPathSegmentView[];
  /** Next hop in text form for the family the set was received with ("" when absent). */
  readonly nextHop: string;
  readonly med?: number;
  readonly localPref?: number;
  /** RFC 4456 ORIGINATOR_ID as a u32. */
  readonly originatorId?: number;
  /** RFC 4456 CLUSTER_LIST, u32 each. */
  readonly clusterList: readonly number[];
  /** RFC 1997 communities, u32 each. */
  readonly communities: readonly number[];
  /** RFC 8092 large communities (absent: the adapter does not carry them). */
  readonly largeCommunities?: readonly LargeCommunity[];
}

/** An edit the RIB asks for on export; the adapter returns a new attribute set. */
export interface AttrEdit {
  /** Prepend this AS once to the leading AS_SEQUENCE (RFC 4271 §5.1.2). */
  prependAs?: number;
  /** Set NEXT_HOP (or the MP_REACH next hop for IPv6). */
  nextHop?: string;
  /** A number sets LOCAL_PREF; null removes it. */
  localPref?: number | null;
  /** A number sets MULTI_EXIT_DISC; null removes it. */
  med?: number | null;
  /** Set ORIGINATOR_ID when absent (RFC 4456 §8). */
  originatorId?: number;
  /** Prepend our cluster id to CLUSTER_LIST (RFC 4456 §8). */
  prependClusterId?: number;
  /** Remove ORIGINATOR_ID and CLUSTER_LIST (never sent to eBGP peers). */
  stripReflection?: boolean;
  /** Add this community when absent (RFC 9494 §4.2: LLGR_STALE on a path kept long-lived). */
  addCommunity?: number;
  /** Export policy (Calico BGPFilter operations), applied before the edits above: */
  /** communities added when absent (RFC 1997), in order; */
  addCommunities?: readonly number[];
  /** large communities added when absent (RFC 8092), in order; */
  addLargeCommunities?: readonly LargeCommunity[];
  /** ASNs prepended to AS_PATH so that the first listed ends up first (before prependAs). */
  prependAsns?: readonly number[];
}

/** What a locally originated route carries. */
export interface AttrInit {
  origin: number;
  nextHop: string;
  communities?: readonly number[];
  largeCommunities?: readonly LargeCommunity[];
  med?: number;
  localPref?: number;
}

/** The bridge between the codec's attribute type `A` and the RIB. */
export interface AttrAdapter<A> {
  /** Interning key: equal keys if and only if the sets are equal. */
  key(a: A): string;
  view(a: A): AttrView;
  edit(a: A, e: AttrEdit): A;
  make(init: AttrInit): A;
}

/** Bits in AttrTable.flags. */
export const FLAG_NO_EXPORT = 1;
export const FLAG_NO_ADVERTISE = 2;
export const FLAG_NO_EXPORT_SUBCONFED = 4;
/** RFC 9494: LLGR_STALE (least preferred, not sent to peers without LLGR) and NO_LLGR. */
export const FLAG_LLGR_STALE = 8;
export const FLAG_NO_LLGR = 16;

function grow<T extends Int32Array | Uint8Array | Float64Array>(a: T, n: number): T {
  if (n <= a.length) return a;
  const b = new (a.constructor as new (n: number) => T)(Math.max(n, a.length * 2));
  b.set(a);
  return b;
}

/** RFC 4271 §9.1.2.2 (a): AS_SET counts 1, confederation segments count 0. */
/** Prepends asn to the leading AS_SEQUENCE, or a new one when full or absent (RFC 4271 §5.1.2). */
export function prependAsPath(
  path: readonly AsPathSegmentView[],
  asn: number,
): AsPathSegmentView[] {
  const first = path[0];
  if (first !== undefined && first.type === AS_SEQUENCE && first.asns.length < 255) {
    return [{ type: AS_SEQUENCE, asns: [asn, ...first.asns] }, ...path.slice(1)];
  }
  return [{ type: AS_SEQUENCE, asns: [asn] }, ...path];
}

export function asPathLength(path: readonly AsPathSegmentView[]): number {
  let n = 0;
  for (const s of path) {
    if (s.type === AS_SEQUENCE) n += s.asns.length;
    else if (s.type === AS_SET) n += 1;
  }
  return n;
}

/** The neighbour AS of RFC 4271 §9.1.2.2 (c): the first AS of a leading AS_SEQUENCE, else 0. */
export function neighborAs(path: readonly AsPathSegmentView[]): number {
  for (const s of path) {
    if (s.type === AS_CONFED_SEQUENCE || s.type === AS_CONFED_SET) continue;
    return s.type === AS_SEQUENCE && s.asns.length > 0 ? (s.asns[0] as number) : 0;
  }
  return 0;
}

/** How many times `asn` appears in the path (all segment types). */
export function asPathCount(path: readonly AsPathSegmentView[], asn: number): number {
  let n = 0;
  for (const s of path) for (const a of s.asns) if (a === asn) n++;
  return n;
}

/**
 * Interned attribute sets: each distinct set gets a small integer id, with the numbers best
 * path compares kept in typed arrays. Ids are reference counted by the RIB; `sweep()` frees
 * the unreferenced ones (an id is only valid until the next sweep unless referenced).
 */
export class AttrTable<A> {
  private readonly ids = new Map<string, number>();
  private sets: (A | undefined)[] = [];
  private keys: (string | undefined)[] = [];
  views: (AttrView | undefined)[] = [];
  private free: number[] = [];
  refs = new Int32Array(64);
  /** LOCAL_PREF or -1. */
  localPref = new Float64Array(64);
  asLen = new Int32Array(64);
  origin = new Uint8Array(64);
  /** MED, missing counts as 0 (RFC 4271 §9.1.2.2 (c)). */
  med = new Float64Array(64);
  neighborAs = new Float64Array(64);
  /** ORIGINATOR_ID or -1. */
  originator = new Float64Array(64);
  clusterLen = new Int32Array(64);
  /** Interned next hop id (see nextHops). */
  nextHopId = new Int32Array(64);
  flags = new Uint8Array(64);
  private readonly nhIds = new Map<string, number>();
  readonly nextHops: string[] = [];
  /** Incremented whenever ids are freed, so caches keyed by id can be dropped. */
  epoch = 0;

  constructor(readonly adapter: AttrAdapter<A>) {}

  get size(): number {
    return this.ids.size;
  }

  intern(a: A): number {
    const key = this.adapter.key(a);
    const hit = this.ids.get(key);
    if (hit !== undefined) return hit;
    const id = this.free.length > 0 ? (this.free.pop() as number) : this.sets.length;
    this.ids.set(key, id);
    this.sets[id] = a;
    this.keys[id] = key;
    const v = this.adapter.view(a);
    this.views[id] = v;
    this.ensure(id + 1);
    this.refs[id] = 0;
    this.localPref[id] = v.localPref ?? -1;
    this.asLen[id] = asPathLength(v.asPath);
    this.origin[id] = v.origin;
    this.med[id] = v.med ?? 0;
    this.neighborAs[id] = neighborAs(v.asPath);
    this.originator[id] = v.originatorId ?? -1;
    this.clusterLen[id] = v.clusterList.length;
    this.nextHopId[id] = this.internNextHop(v.nextHop);
    let f = 0;
    for (const c of v.communities) {
      if (c === NO_EXPORT) f |= FLAG_NO_EXPORT;
      else if (c === NO_ADVERTISE) f |= FLAG_NO_ADVERTISE;
      else if (c === NO_EXPORT_SUBCONFED) f |= FLAG_NO_EXPORT_SUBCONFED;
      else if (c === LLGR_STALE) f |= FLAG_LLGR_STALE;
      else if (c === NO_LLGR) f |= FLAG_NO_LLGR;
    }
    this.flags[id] = f;
    return id;
  }

  get(id: number): A {
    const a = this.sets[id];
    if (a === undefined) throw new Error(`Attribute set id ${id} is not interned`);
    return a;
  }

  view(id: number): AttrView {
    const v = this.views[id];
    if (v === undefined) throw new Error(`Attribute set id ${id} is not interned`);
    return v;
  }

  /** Frees every id with no references; returns how many were freed. */
  sweep(): number {
    let freed = 0;
    for (let id = 0; id < this.sets.length; id++) {
      if (this.sets[id] === undefined || this.refs[id] !== 0) continue;
      this.ids.delete(this.keys[id] as string);
      this.sets[id] = undefined;
      this.keys[id] = undefined;
      this.views[id] = undefined;
      this.free.push(id);
      freed++;
    }
    if (freed > 0) this.epoch++;
    return freed;
  }

  private internNextHop(nh: string): number {
    let id = this.nhIds.get(nh);
    if (id === undefined) {
      id = this.nextHops.length;
      this.nextHops.push(nh);
      this.nhIds.set(nh, id);
    }
    return id;
  }

  private ensure(n: number): void {
    if (n <= this.refs.length) return;
    this.refs = grow(this.refs, n);
    this.localPref = grow(this.localPref, n);
    this.asLen = grow(this.asLen, n);
    this.origin = grow(this.origin, n);
    this.med = grow(this.med, n);
    this.neighborAs = grow(this.neighborAs, n);
    this.originator = grow(this.originator, n);
    this.clusterLen = grow(this.clusterLen, n);
    this.nextHopId = grow(this.nextHopId, n);
    this.flags = grow(this.flags, n);
  }
}

/**
 * AS_PATH, communities and large communities after an edit: the policy part first
 * (prependAsns, addCommunities, addLargeCommunities, as Calico's BGPFilter operations run in
 * BIRD's export filter), then prependAs and addCommunity (the protocol's own edits).
 */
export function editedLists(
  a: AttrView,
  e: AttrEdit,
): {
  asPath: readonly AsPathSegmentView[];
  communities: readonly number[];
  largeCommunities: readonly LargeCommunity[];
} {
  let asPath: readonly AsPathSegmentView[] = a.asPath;
  const pre = e.prependAsns ?? [];
  for (let i = pre.length - 1; i >= 0; i--) asPath = prependAsPath(asPath, pre[i] as number);
  if (e.prependAs !== undefined) asPath = prependAsPath(asPath, e.prependAs);
  let communities = a.communities;
  for (const c of [
    ...(e.addCommunities ?? []),
    ...(e.addCommunity !== undefined ? [e.addCommunity] : []),
  ]) {
    if (!communities.includes(c >>> 0)) communities = [...communities, c >>> 0];
  }
  let largeCommunities = a.largeCommunities ?? [];
  for (const l of e.addLargeCommunities ?? []) {
    if (!largeCommunities.some((x) => x[0] === l[0] && x[1] === l[1] && x[2] === l[2]))
      largeCommunities = [...largeCommunities, l];
  }
  return { asPath, communities, largeCommunities };
}
