// The speaker's status and routes views: what `ocelot status` / `ocelot routes`, /metrics and
// /readyz read, built from the core's state plus the few facts only the runtime knows (listener,
// send queues, FIB counters, the namespace's TCP-MD5 counters, process memory). Pure. Owns:
// these two views. Not: the JSON shapes and the socket that serves them (../status.ts).

import type { AttrView } from "../rib/attrs.js";
import type { Rib } from "../rib/rib.js";
import type { PeerStatus, RouteExplanation, RoutesSnapshot, StatusSnapshot } from "../status.js";
import { type FamilyKey, Ipv4Unicast, Ipv6Unicast } from "../wire/types.js";
import type { SpeakerCore } from "./core.js";

const MAX_ROUTES_SHOWN = 100_000;

/** What the runtime adds to the core's state. */
export interface RuntimeFacts {
  now: number;
  startedAt: number;
  listen: { address: string; port: number } | null;
  sendQueueBytes(peer: string): number;
  fib: StatusSnapshot["fib"];
  /** The namespace's TCP-MD5 drop counters (asked only when a peer has a password). */
  tcpMd5(): StatusSnapshot["tcpMd5"];
  memory: NodeJS.MemoryUsage;
}

export function statusView<A>(core: SpeakerCore<A>, io: RuntimeFacts): StatusSnapshot {
  const cfg = core.config;
  const peers: PeerStatus[] = [...core.peers.values()].map((e) => {
    const s = e.session;
    const n = s.negotiated;
    const c = safeCounts(core.rib, e.ribId);
    return {
      address: e.cfg.address,
      ...(e.cfg.interface !== undefined ? { interface: e.cfg.interface } : {}),
      asn: e.cfg.asn,
      localAsn: cfg.asn,
      type: e.cfg.asn === cfg.asn ? "internal" : "external",
      state: s.state,
      uptimeSeconds:
        s.establishedAt !== undefined ? Math.floor((io.now - s.establishedAt) / 1000) : null,
      negotiated: n
        ? {
            holdTime: n.holdTime,
            keepaliveTime: n.keepaliveTime,
            families: n.families,
            fourOctetAs: n.as4,
            routeRefresh: n.routeRefresh,
            enhancedRouteRefresh: n.enhancedRouteRefresh,
            gracefulRestart: n.gracefulRestart,
            extendedMessage: n.options.extendedMessage,
            extendedNextHop: n.options.extendedNextHop,
            addPath: {
              send: n.families.filter((f) => n.options.addPath.send.has(familyKeyOf(f))),
              receive: n.families.filter((f) => n.options.addPath.receive.has(familyKeyOf(f))),
            },
          }
        : null,
      // The group's Adj-RIB-Out is only sent to the peer once it is Established and synced.
      prefixes: { ...c, advertised: e.synced && s.established ? c.advertised : 0 },
      messages: {
        in: s.counters.messagesIn,
        out: s.counters.messagesOut,
        updatesIn: s.counters.updatesIn,
      },
      sendQueueBytes: io.sendQueueBytes(e.cfg.address),
      establishedTransitions: s.counters.establishedTransitions,
      ...(s.counters.holdDeferrals > 0 ? { holdDeferrals: s.counters.holdDeferrals } : {}),
      lastError: e.lastError,
      ...(n && s.established ? { bgpId: dottedQuad(n.peerId) } : {}),
      ...(e.cfg.password !== undefined ? { md5: true as const } : {}),
      ...(e.held.bfd || e.held.maxPrefix || e.held.link
        ? {
            heldDown: [
              ...(e.held.bfd ? ["bfd" as const] : []),
              ...(e.held.maxPrefix ? ["maxPrefix" as const] : []),
              ...(e.held.link ? ["link" as const] : []),
            ],
          }
        : {}),
      ...(e.staleFams.size > 0
        ? {
            staleFamilies: [...e.staleFams].map(([family, timer]) => ({ family, timer })),
          }
        : {}),
      ...(e.lastReset
        ? {
            lastConfigReset: {
              field: e.lastReset.field,
              secondsAgo: Math.max(0, Math.floor((io.now - e.lastReset.at) / 1000)),
            },
          }
        : {}),
    };
  });
  // Drops of wrongly signed segments are only counted per namespace, not per peer.
  const tcpMd5 = peers.some((p) => p.md5) ? io.tcpMd5() : undefined;
  const size = core.rib.size;
  return {
    routerId: cfg.routerId,
    asn: cfg.asn,
    listen: io.listen,
    uptimeSeconds: Math.floor((io.now - io.startedAt) / 1000),
    peers,
    locRib: { ipv4: size.v4, ipv6: size.v6 },
    memory: memoryMiB(io.memory, core.rib.typedBytes()),
    fib: io.fib,
    ...(tcpMd5 ? { tcpMd5 } : {}),
  };
}

export function routesView<A>(rib: Rib<A>): RoutesSnapshot {
  const routes: RoutesSnapshot["routes"] = [];
  for (const r of rib.locRib()) {
    const v = r.attrs;
    const large =
      (v as unknown as { largeCommunities?: readonly (readonly number[])[] }).largeCommunities ??
      [];
    routes.push({
      prefix: r.prefix,
      best: {
        peer: r.peer === "" || r.peer === "local" ? "local" : r.peer,
        nextHop: r.nexthops.join(",") || v.nextHop || "-",
        asPath: v.asPath
          .map((s) => (s.type === 1 ? `{${s.asns.join(",")}}` : s.asns.join(" ")))
          .join(" "),
        origin: ["IGP", "EGP", "incomplete"][v.origin] ?? String(v.origin),
        localPref: v.localPref ?? null,
        med: v.med ?? null,
        communities: v.communities.map((c) => `${c >>> 16}:${c & 0xffff}`),
        largeCommunities: large.map((l) => l.join(":")),
      },
      reason: r.reason,
      multipath: r.nexthops,
      ...(r.metric !== undefined ? { metric: r.metric } : {}),
    });
    if (routes.length >= MAX_ROUTES_SHOWN) return { routes, truncated: true };
  }
  return { routes };
}

/** Every path of one prefix (accepted or not) and the decision, as text; null when unknown. */
export function routeView<A>(rib: Rib<A>, prefix: string): RouteExplanation | null {
  const e = rib.explain(prefix);
  if (!e) return null;
  return {
    prefix: e.prefix,
    bestReason: e.bestReason,
    nexthops: e.nexthops,
    paths: e.paths.map((p) => ({
      peer: p.peerAddress,
      ibgp: p.ibgp,
      pathId: p.pathId,
      ...attrText(p.attrs),
      localPref: p.localPref,
      accepted: p.accepted,
      ...(p.rejectReason ? { rejectReason: p.rejectReason } : {}),
      ...(p.rejectDetail ? { rejectDetail: p.rejectDetail } : {}),
      stale: p.stale,
      best: p.best,
      multipath: p.multipath,
      ...(p.received ? { received: attrText(p.received) } : {}),
    })),
  };
}

function attrText(v: AttrView) {
  const large =
    (v as unknown as { largeCommunities?: readonly (readonly number[])[] }).largeCommunities ?? [];
  return {
    nextHop: v.nextHop || "-",
    asPath: v.asPath
      .map((s) => (s.type === 1 ? `{${s.asns.join(",")}}` : s.asns.join(" ")))
      .join(" "),
    origin: ["IGP", "EGP", "incomplete"][v.origin] ?? String(v.origin),
    med: v.med ?? null,
    communities: v.communities.map((c) => `${c >>> 16}:${c & 0xffff}`),
    largeCommunities: large.map((l) => l.join(":")),
  };
}

function dottedQuad(id: number): string {
  const u = id >>> 0;
  return [u >>> 24, (u >>> 16) & 255, (u >>> 8) & 255, u & 255].join(".");
}

function memoryMiB(m: NodeJS.MemoryUsage, ribBytes: number): StatusSnapshot["memory"] {
  const mib = (b: number) => Math.round((b / 1048576) * 10) / 10;
  return {
    rssMiB: mib(m.rss),
    heapUsedMiB: mib(m.heapUsed),
    heapTotalMiB: mib(m.heapTotal),
    arrayBuffersMiB: mib(m.arrayBuffers),
    ribTypedMiB: mib(ribBytes),
  };
}

function safeCounts(rib: Rib<unknown>, id: string): PeerStatus["prefixes"] {
  try {
    const c = rib.peerCounts(id);
    const { received, accepted, advertised, rejected } = c;
    return { received, accepted, advertised, rejected: rejected as Record<string, number> };
  } catch {
    return { received: 0, accepted: 0, advertised: 0, rejected: {} };
  }
}

function familyKeyOf(f: string): FamilyKey {
  return f === "ipv4-unicast" ? Ipv4Unicast : Ipv6Unicast;
}
