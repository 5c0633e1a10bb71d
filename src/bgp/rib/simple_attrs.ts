// A plain attribute-set type with its RIB adapter: used by RIB/policy tests, the benchmark, and
// anywhere a value-level attribute set is enough. Not: the wire codec's PathAttributes (see
// wire_attrs.ts for that adapter).
import {
  AS_SEQUENCE,
  type AsPathSegmentView,
  type AttrAdapter,
  type AttrEdit,
  type AttrInit,
  type AttrView,
  editedLists,
  type LargeCommunity,
} from "./attrs.js";

export interface SimpleAttrs extends AttrView {
  readonly largeCommunities: readonly LargeCommunity[];
}

/** Builds a SimpleAttrs with defaults for everything not given. */
export function simpleAttrs(p: Partial<SimpleAttrs> & { nextHop: string }): SimpleAttrs {
  return {
    origin: p.origin ?? 0,
    asPath: p.asPath ?? [],
    nextHop: p.nextHop,
    ...(p.med !== undefined ? { med: p.med } : {}),
    ...(p.localPref !== undefined ? { localPref: p.localPref } : {}),
    ...(p.originatorId !== undefined ? { originatorId: p.originatorId } : {}),
    clusterList: p.clusterList ?? [],
    communities: p.communities ?? [],
    largeCommunities: p.largeCommunities ?? [],
  };
}

/** A path of one AS_SEQUENCE. */
export function seq(...asns: number[]): AsPathSegmentView[] {
  return asns.length === 0 ? [] : [{ type: AS_SEQUENCE, asns }];
}

export const simpleAdapter: AttrAdapter<SimpleAttrs> = {
  key(a) {
    return JSON.stringify([
      a.origin,
      a.asPath,
      a.nextHop,
      a.med ?? null,
      a.localPref ?? null,
      a.originatorId ?? null,
      a.clusterList,
      a.communities,
      a.largeCommunities,
    ]);
  },
  view(a) {
    return a;
  },
  edit(a, e: AttrEdit) {
    let med = a.med;
    if (e.med === null) med = undefined;
    else if (e.med !== undefined) med = e.med;
    let localPref = a.localPref;
    if (e.localPref === null) localPref = undefined;
    else if (e.localPref !== undefined) localPref = e.localPref;
    let originatorId = e.stripReflection ? undefined : a.originatorId;
    if (e.originatorId !== undefined && originatorId === undefined) originatorId = e.originatorId;
    let clusterList = e.stripReflection ? [] : a.clusterList;
    if (e.prependClusterId !== undefined) clusterList = [e.prependClusterId, ...clusterList];
    const lists = editedLists(a, e);
    return simpleAttrs({
      origin: a.origin,
      asPath: lists.asPath,
      nextHop: e.nextHop ?? a.nextHop,
      ...(med !== undefined ? { med } : {}),
      ...(localPref !== undefined ? { localPref } : {}),
      ...(originatorId !== undefined ? { originatorId } : {}),
      clusterList,
      communities: lists.communities,
      largeCommunities: lists.largeCommunities,
    });
  },
  make(init: AttrInit) {
    return simpleAttrs({
      origin: init.origin,
      nextHop: init.nextHop,
      ...(init.med !== undefined ? { med: init.med } : {}),
      ...(init.localPref !== undefined ? { localPref: init.localPref } : {}),
      communities: init.communities ?? [],
      largeCommunities: init.largeCommunities ?? [],
    });
  },
};
