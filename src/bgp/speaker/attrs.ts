// The speaker's attribute bridge: the codec's PathAttributes as the RIB's interned attribute
// type (an AttrView plus the wire attributes, keyed by a compact string), edits for export, and
// back to codec attributes + MP next hop for encoding. Not: decoding/encoding bytes (wire/), the
// decision process (rib/).
import {
  type AsPathSegmentView,
  type AttrAdapter,
  type AttrEdit,
  type AttrInit,
  type AttrView,
  editedLists,
  type LargeCommunity,
} from "../rib/attrs.js";
import { ipv4ToText, ipv6BytesToText, parseIpv4, parseIpv6 } from "../wire/nlri.js";
import { emptyAttributes, type PathAttributes, type UpdateMessage } from "../wire/types.js";

/** The bridge between the codec's attributes and the RIB's attribute type A. */
export interface AttrBridge<A> {
  adapter: AttrAdapter<A>;
  /** The attribute set of a received UPDATE for one family (IPv6: the MP_REACH next hop). */
  fromUpdate(u: UpdateMessage, family: 4 | 6): A;
  /** What to encode for a set on export: codec attributes (no MP parts) and the MP next hop. */
  toWire(a: A, family: 4 | 6): { attributes: PathAttributes; mpNextHop: Uint8Array | null };
}

/** An interned attribute set: what the RIB reads, and the attributes to encode. */
export interface WireAttrs extends AttrView {
  readonly key: string;
  readonly wire: PathAttributes;
  readonly largeCommunities: readonly LargeCommunity[];
}

function hex(b: Uint8Array | null): string {
  return b ? Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex") : "";
}

function keyOf(w: PathAttributes, nextHop: string): string {
  const path = (w.asPath ?? []).map((s) => `${s.type}:${s.asns.join(".")}`).join(" ");
  const unk = w.unknown.map((u) => `${u.flags}/${u.type}/${hex(u.data)}`).join(",");
  return [
    w.origin ?? "",
    path,
    nextHop,
    w.med ?? "",
    w.localPref ?? "",
    w.atomicAggregate ? 1 : 0,
    w.aggregator ? `${w.aggregator.asn}@${w.aggregator.address}` : "",
    w.communities ? w.communities.join(",") : "",
    hex(w.extendedCommunities),
    w.largeCommunities ? w.largeCommunities.join(",") : "",
    w.originatorId ?? "",
    w.clusterList ? w.clusterList.join(",") : "",
    unk,
  ].join("|");
}

function triples(u: Uint32Array | null): LargeCommunity[] {
  const out: LargeCommunity[] = [];
  if (!u) return out;
  for (let i = 0; i + 2 < u.length; i += 3)
    out.push([u[i] as number, u[i + 1] as number, u[i + 2] as number]);
  return out;
}

/** Builds the interned value from wire attributes (MP parts and decode layout stripped). */
export function wireAttrs(src: PathAttributes, nextHop: string): WireAttrs {
  const wire: PathAttributes = { ...src, mpReach: null, mpUnreach: null, layout: null };
  const v: WireAttrs = {
    key: keyOf(wire, nextHop),
    wire,
    origin: wire.origin ?? 2,
    asPath: (wire.asPath ?? []) as AsPathSegmentView[],
    nextHop,
    ...(wire.med !== null ? { med: wire.med } : {}),
    ...(wire.localPref !== null ? { localPref: wire.localPref } : {}),
    ...(wire.originatorId !== null ? { originatorId: wire.originatorId } : {}),
    clusterList: wire.clusterList ? [...wire.clusterList] : [],
    communities: wire.communities ? [...wire.communities] : [],
    largeCommunities: triples(wire.largeCommunities),
  };
  return v;
}

export const wireAdapter: AttrAdapter<WireAttrs> = {
  key: (a) => a.key,
  view: (a) => a,
  edit(a: WireAttrs, e: AttrEdit): WireAttrs {
    const w: PathAttributes = { ...a.wire };
    const lists = editedLists(a, e);
    if (lists.asPath !== a.asPath) {
      w.asPath = lists.asPath.map((s) => ({ type: s.type, asns: [...s.asns] }));
    }
    if (e.localPref === null) w.localPref = null;
    else if (e.localPref !== undefined) w.localPref = e.localPref;
    if (e.med === null) w.med = null;
    else if (e.med !== undefined) w.med = e.med;
    if (e.stripReflection) {
      w.originatorId = null;
      w.clusterList = null;
    }
    if (e.originatorId !== undefined && w.originatorId === null) w.originatorId = e.originatorId;
    if (e.prependClusterId !== undefined) {
      const old = w.clusterList ? [...w.clusterList] : [];
      w.clusterList = Uint32Array.from([e.prependClusterId >>> 0, ...old]);
    }
    if (lists.communities !== a.communities) w.communities = Uint32Array.from(lists.communities);
    if (lists.largeCommunities !== a.largeCommunities) {
      w.largeCommunities = Uint32Array.from(lists.largeCommunities.flat());
    }
    const nh = e.nextHop ?? a.nextHop;
    w.nextHop = nh.includes(":") ? null : parseIpv4(nh);
    return wireAttrs(w, nh);
  },
  make(init: AttrInit): WireAttrs {
    const w = emptyAttributes();
    w.origin = init.origin;
    w.asPath = [];
    w.nextHop = init.nextHop.includes(":") ? null : parseIpv4(init.nextHop);
    if (init.med !== undefined) w.med = init.med;
    if (init.localPref !== undefined) w.localPref = init.localPref;
    if (init.communities && init.communities.length > 0)
      w.communities = Uint32Array.from(init.communities);
    if (init.largeCommunities && init.largeCommunities.length > 0) {
      w.largeCommunities = Uint32Array.from(init.largeCommunities.flat());
    }
    return wireAttrs(w, init.nextHop);
  },
};

/** The next hop of a received UPDATE for a family, as text ("" when absent). */
export function updateNextHop(u: UpdateMessage, family: 4 | 6): string {
  const a = u.attributes;
  if (!a) return "";
  const mp = a.mpReach;
  if (family === 6 || (mp && mp.afi === 1 && mp.nextHop.length >= 16)) {
    if (!mp) return "";
    if (mp.nextHop.length >= 32) {
      // RFC 2545 §3: global then link-local; an unnumbered peer's global may be :: or its
      // link-local again: the link-local is the one to use then.
      const g = ipv6BytesToText(mp.nextHop, 0);
      if (g === "::" || g.toLowerCase().startsWith("fe80:")) return ipv6BytesToText(mp.nextHop, 16);
      return g;
    }
    if (mp.nextHop.length >= 16) return ipv6BytesToText(mp.nextHop, 0);
    if (mp.nextHop.length === 4)
      return ipv4ToText(new DataView(mp.nextHop.buffer, mp.nextHop.byteOffset).getUint32(0));
    return "";
  }
  if (a.nextHop !== null) return ipv4ToText(a.nextHop);
  if (mp && mp.nextHop.length === 4)
    return ipv4ToText(new DataView(mp.nextHop.buffer, mp.nextHop.byteOffset).getUint32(0));
  return "";
}

/** Per UPDATE, the last interned value is reused when the attributes are the same object. */
export function makeWireBridge(): AttrBridge<WireAttrs> {
  return {
    adapter: wireAdapter,
    fromUpdate(u, family) {
      return wireAttrs(u.attributes as PathAttributes, updateNextHop(u, family));
    },
    toWire(a, family) {
      if (family === 4 && !a.nextHop.includes(":")) {
        const nh = parseIpv4(a.nextHop || "0.0.0.0");
        return { attributes: { ...a.wire, nextHop: nh }, mpNextHop: null };
      }
      // IPv6, or IPv4 with an IPv6 next hop (RFC 8950: in MP_REACH_NLRI, AFI 1).
      // A link-local next hop's zone ("%eth0") is ours, not on the wire.
      const text = a.nextHop.split("%")[0] as string;
      const words = parseIpv6(text.includes(":") ? text : `::ffff:${text || "0.0.0.0"}`);
      const nh = new Uint8Array(16);
      const dv = new DataView(nh.buffer);
      for (let i = 0; i < 4; i++) dv.setUint32(i * 4, words[i] as number);
      return { attributes: { ...a.wire, nextHop: null }, mpNextHop: nh };
    },
  };
}
