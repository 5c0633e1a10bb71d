// The home of BGP capabilities (RFC 5492): one table, one row per capability, saying what we
// advertise for a peer's settings, what the FSM reads of the peer's announcement, and how the
// two negotiate into the codec's session options. Negotiation happens here once per OPEN: the
// FSM's Negotiated carries the result (options included) and the codec takes the options. Adding
// a capability: its row here, its bytes in wire/open.ts, its config knob, the behaviour using it.
// Not: capability bytes (wire/open.ts), the OPEN checks and hold time (fsm.ts).
import { AddPathMode, Afi, Safi } from "../wire/constants.js";
import {
  type Capability,
  type FamilyKey,
  familyKey,
  Ipv4Unicast,
  Ipv6Unicast,
  type OpenMessage,
  type SessionOptions,
} from "../wire/types.js";
import type { Family, OpenInfo, PeerSettings } from "./types.js";

type Kind = Capability["kind"];
type Of<K extends Kind> = Extract<Capability, { kind: K }>;

/** One capability: what we send, what the FSM reads of the peer's, what both give the codec. */
interface CapabilityRow<K extends Kind> {
  kind: K;
  /** RFC that defines it. */
  rfc: string;
  /** Ours for these settings ([]: not advertised). */
  advertise(s: PeerSettings): Of<K>[];
  /** The peer announced `theirs` (all of this kind): what the FSM's OpenInfo records. */
  seen?(theirs: Of<K>[], info: OpenInfo): void;
  /** Both sides' announcements of this kind: the codec's part of the result. */
  negotiate?(mine: Of<K>[], theirs: Of<K>[], o: SessionOptions): void;
}

const FAMILY: Record<Family, { afi: number; safi: number; key: FamilyKey }> = {
  "ipv4-unicast": { afi: Afi.Ipv4, safi: Safi.Unicast, key: Ipv4Unicast },
  "ipv6-unicast": { afi: Afi.Ipv6, safi: Safi.Unicast, key: Ipv6Unicast },
};

function addPathModes(caps: Of<"AddPath">[]): Map<FamilyKey, number> {
  const m = new Map<FamilyKey, number>();
  for (const c of caps) for (const f of c.families) m.set(familyKey(f.afi, f.safi), f.mode);
  return m;
}

/** RFC 8950: the side can carry IPv4 unicast NLRI with an IPv6 next hop. */
const v4OverV6 = (caps: Of<"ExtendedNextHop">[]) =>
  caps.some((c) =>
    c.entries.some(
      (e) => e.nlriAfi === Afi.Ipv4 && e.nlriSafi === Safi.Unicast && e.nextHopAfi === Afi.Ipv6,
    ),
  );

const row = <K extends Kind>(r: CapabilityRow<K>) => r as unknown as CapabilityRow<Kind>;

/** Every capability we know, in the order we advertise them. */
export const CAPABILITIES: readonly CapabilityRow<Kind>[] = [
  row({
    kind: "Multiprotocol",
    rfc: "RFC 4760",
    advertise: (s) =>
      s.families.map((f) => ({ kind: "Multiprotocol", afi: FAMILY[f].afi, safi: FAMILY[f].safi })),
    seen(theirs, info) {
      // RFC 4760 §8: a peer without the capability speaks IPv4 unicast only (families unset).
      if (theirs.length === 0) return;
      const fams: Family[] = [];
      for (const c of theirs) {
        const k = familyKey(c.afi, c.safi);
        const f = k === Ipv4Unicast ? "ipv4-unicast" : k === Ipv6Unicast ? "ipv6-unicast" : null;
        if (f && !fams.includes(f)) fams.push(f);
      }
      info.families = fams;
    },
  }),
  row({
    kind: "RouteRefresh",
    rfc: "RFC 2918",
    advertise: () => [{ kind: "RouteRefresh" }],
    seen: (theirs, info) => {
      info.routeRefresh = theirs.length > 0;
    },
  }),
  row({
    kind: "EnhancedRouteRefresh",
    rfc: "RFC 7313",
    advertise: () => [{ kind: "EnhancedRouteRefresh" }],
    seen: (theirs, info) => {
      info.enhancedRouteRefresh = theirs.length > 0;
    },
  }),
  row({
    kind: "FourOctetAs",
    rfc: "RFC 6793",
    advertise: (s) => [{ kind: "FourOctetAs", asn: s.localAs }],
    seen: (theirs, info) => {
      const c = theirs[theirs.length - 1];
      if (c) info.as4 = c.asn;
    },
    negotiate: (mine, theirs, o) => {
      o.fourOctetAs = mine.length > 0 && theirs.length > 0;
    },
  }),
  row({
    kind: "GracefulRestart",
    rfc: "RFC 4724",
    // §3: with the families, peers keep our routes for the restart time when our session drops
    // (RFC 8538's N bit: also on a NOTIFICATION other than Hard Reset). Disabled, the capability
    // without <AFI,SAFI> still says we send End-of-RIB (BIRD sends its own only to such peers).
    advertise: (s) => {
      const gr = s.gracefulRestart;
      return [
        {
          kind: "GracefulRestart",
          restartState: gr?.restarting ?? false,
          notification: gr !== undefined,
          restartTime: gr?.restartTime ?? 0,
          families: gr
            ? s.families.map((f) => ({
                afi: FAMILY[f].afi,
                safi: FAMILY[f].safi,
                forwardingState: gr.forwarding,
              }))
            : [],
        },
      ];
    },
    seen: (theirs, info) => {
      info.gracefulRestart = theirs.length > 0;
    },
  }),
  row({
    kind: "LongLivedGracefulRestart",
    rfc: "RFC 9494",
    // §3: one entry per family we run, with our long-lived stale time (the helper uses the
    // peer's); sent beside the graceful restart capability, which always goes.
    advertise: (s) => {
      const ll = s.longLivedGracefulRestart;
      if (!ll || s.families.length === 0) return [];
      return [
        {
          kind: "LongLivedGracefulRestart",
          families: s.families.map((f) => ({
            afi: FAMILY[f].afi,
            safi: FAMILY[f].safi,
            forwardingState: ll.forwarding,
            staleTime: ll.staleTime,
          })),
        },
      ];
    },
  }),
  row({
    kind: "ExtendedMessage",
    rfc: "RFC 8654",
    advertise: (s) => (s.extendedMessage === false ? [] : [{ kind: "ExtendedMessage" }]),
    seen: (theirs, info) => {
      info.extendedMessage = theirs.length > 0;
    },
    negotiate: (mine, theirs, o) => {
      o.extendedMessage = mine.length > 0 && theirs.length > 0;
    },
  }),
  row({
    kind: "AddPath",
    rfc: "RFC 7911",
    // §4: one entry per family we run; the mode from the peer's settings.
    advertise: (s) => {
      const mode =
        (s.addPath?.receive ? AddPathMode.Receive : 0) | (s.addPath?.send ? AddPathMode.Send : 0);
      const only = s.addPath?.families;
      const fams = only ? s.families.filter((f) => only.includes(f)) : s.families;
      if (mode === 0 || fams.length === 0) return [];
      return [
        {
          kind: "AddPath",
          families: fams.map((f) => ({ afi: FAMILY[f].afi, safi: FAMILY[f].safi, mode })),
        },
      ];
    },
    negotiate: (mine, theirs, o) => {
      const t = addPathModes(theirs);
      const receive = new Set<FamilyKey>();
      const send = new Set<FamilyKey>();
      for (const [k, m] of addPathModes(mine)) {
        const p = t.get(k) ?? 0;
        // §4: receive if we said Receive and the peer said Send; send in the mirror case.
        if (m & AddPathMode.Receive && p & AddPathMode.Send) receive.add(k);
        if (m & AddPathMode.Send && p & AddPathMode.Receive) send.add(k);
      }
      o.addPath = { receive, send };
    },
  }),
  row({
    kind: "ExtendedNextHop",
    rfc: "RFC 8950",
    advertise: (s) =>
      s.extendedNextHop && s.families.includes("ipv4-unicast")
        ? [
            {
              kind: "ExtendedNextHop",
              entries: [{ nlriAfi: Afi.Ipv4, nlriSafi: Safi.Unicast, nextHopAfi: Afi.Ipv6 }],
            },
          ]
        : [],
    negotiate: (mine, theirs, o) => {
      o.extendedNextHop = v4OverV6(mine) && v4OverV6(theirs);
    },
  }),
];

function ofKind<K extends Kind>(caps: readonly Capability[], kind: K): Of<K>[] {
  return caps.filter((c): c is Of<K> => c.kind === kind);
}

/** Our capabilities for a peer. */
export function localCapabilities(settings: PeerSettings): Capability[] {
  return CAPABILITIES.flatMap((r) => r.advertise(settings));
}

/** The codec's session options from two capability lists (ours first). */
export function negotiateOptions(
  local: readonly Capability[],
  remote: readonly Capability[],
  external?: boolean,
): SessionOptions {
  const o: SessionOptions = {
    fourOctetAs: false,
    addPath: { receive: new Set(), send: new Set() },
    extendedMessage: false,
    extendedNextHop: false,
  };
  for (const r of CAPABILITIES) r.negotiate?.(ofKind(local, r.kind), ofKind(remote, r.kind), o);
  if (external !== undefined) o.external = external;
  return o;
}

/**
 * What the FSM needs of a received OPEN, with the capabilities negotiated against ours (the
 * codec's options ride along to Negotiated, so nothing negotiates again at Established).
 */
export function openInfo(open: OpenMessage, settings?: PeerSettings): OpenInfo {
  const info: OpenInfo = {
    version: open.version,
    myAs: open.myAs,
    holdTime: open.holdTime,
    bgpId: open.bgpIdentifier >>> 0,
    routeRefresh: false,
    enhancedRouteRefresh: false,
    extendedMessage: false,
    gracefulRestart: false,
  };
  for (const r of CAPABILITIES) r.seen?.(ofKind(open.capabilities, r.kind), info);
  if (settings)
    info.options = negotiateOptions(
      localCapabilities(settings),
      open.capabilities,
      settings.peerAs !== settings.localAs,
    );
  return info;
}
