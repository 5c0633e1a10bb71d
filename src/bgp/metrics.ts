// The BGP speaker's metric families, pure: a status snapshot in, `ocelot_bgp_*` families out
// (named after the BGP exporters: one 0/1 series per RFC 4271 state, as FRR's do), and BFD's
// `ocelot_bfd_*`. Owned here, beside the status shapes they read. Not: the text format
// (lib/metrics.ts), serving (lib/health_server.ts).
import type { MetricsRegistry, Sample } from "../lib/metrics.js";
import type { BfdCounters, BfdSessionStatus } from "./bfd/runtime.js";
import type { PeerStatus, StatusSnapshot } from "./status.js";

/** The FSM states of RFC 4271 §8.2.2, each a series of ocelot_bgp_peer_state. */
export const BGP_STATES = [
  "Idle",
  "Connect",
  "Active",
  "OpenSent",
  "OpenConfirm",
  "Established",
] as const;

function afi(p: PeerStatus, configured: (address: string) => readonly string[]): string {
  const fams = p.negotiated?.families ?? configured(p.address);
  return [...fams].sort().join(",");
}

/** Per-peer and Loc-RIB families of a speaker's status snapshot (none of it when undefined). */
export function addBgpMetrics(
  reg: MetricsRegistry,
  s: StatusSnapshot | undefined,
  opts: { configuredFamilies?: (address: string) => readonly string[] } = {},
): void {
  const peers = s?.peers ?? [];
  const configured = opts.configuredFamilies ?? (() => []);
  const labels = (p: PeerStatus) => ({ peer: p.address, asn: p.asn, afi: afi(p, configured) });
  const per = (f: (p: PeerStatus) => number): Sample[] =>
    peers.map((p) => ({ labels: labels(p), value: f(p) }));
  reg.gauge("ocelot_bgp_speaker_running", "1 when the BGP speaker runs.", s ? 1 : 0);
  reg.gauge(
    "ocelot_bgp_peer_state",
    "BGP session state (RFC 4271 FSM): 1 for the state the session is in, 0 for the others.",
    peers.flatMap((p) =>
      BGP_STATES.map((state) => ({
        labels: { ...labels(p), state },
        value: p.state === state ? 1 : 0,
      })),
    ),
  );
  reg.counter(
    "ocelot_bgp_connections_refused_total",
    "TCP connections to the BGP port closed at accept, before any byte was sent, because they came from no configured peer's address.",
    s?.connectionsRefused ?? 0,
  );
  reg.gauge(
    "ocelot_bgp_peer_up",
    "1 when the session is Established, else 0.",
    per((p) => (p.state === "Established" ? 1 : 0)),
  );
  reg.gauge(
    "ocelot_bgp_peer_uptime_seconds",
    "Seconds since the session became Established (0 when it is not).",
    per((p) => p.uptimeSeconds ?? 0),
  );
  reg.counter(
    "ocelot_bgp_peer_established_transitions_total",
    "Times the session became Established.",
    per((p) => p.establishedTransitions),
  );
  reg.counter(
    "ocelot_bgp_peer_messages_received_total",
    "BGP messages received from the peer (all types).",
    per((p) => p.messages.in),
  );
  reg.counter(
    "ocelot_bgp_peer_messages_sent_total",
    "BGP messages sent to the peer (all types).",
    per((p) => p.messages.out),
  );
  reg.counter(
    "ocelot_bgp_peer_updates_received_total",
    "BGP UPDATE messages received from the peer.",
    per((p) => p.messages.updatesIn),
  );
  reg.gauge(
    "ocelot_bgp_peer_prefixes_received",
    "Prefixes in the peer's Adj-RIB-In (all families of the afi label).",
    per((p) => p.prefixes.received),
  );
  reg.gauge(
    "ocelot_bgp_peer_prefixes_accepted",
    "Prefixes of the peer accepted by import policy.",
    per((p) => p.prefixes.accepted),
  );
  reg.gauge(
    "ocelot_bgp_peer_prefixes_advertised",
    "Prefixes advertised to the peer.",
    per((p) => p.prefixes.advertised),
  );
  reg.counter(
    "ocelot_bgp_routes_rejected_total",
    "Paths from the peer that import refused since the peer was configured, by reason (FilterReject: a BGPFilter rule or the import guard; NotOwned: inside an IP pool, what the peer Node holds no block affinity or workload address for).",
    peers.flatMap((p) =>
      Object.entries(p.prefixes.rejected ?? {}).map(([reason, value]) => ({
        labels: { ...labels(p), reason },
        value,
      })),
    ),
  );
  reg.gauge(
    "ocelot_bgp_loc_rib_routes",
    "Routes in the Loc-RIB per address family.",
    s
      ? [
          { labels: { afi: "ipv4" }, value: s.locRib.ipv4 },
          { labels: { afi: "ipv6" }, value: s.locRib.ipv6 },
        ]
      : [],
  );
}

/** FIB programmer families, one series per FIB (fib="bgp": protocol 201, "agent": 202). */

const BFD_STATES = ["AdminDown", "Down", "Init", "Up"] as const;

/** BFD sessions (RFC 5880 states, one 0/1 series each) and the runtime's packet counters. */
export function addBfdMetrics(
  reg: MetricsRegistry,
  sessions: readonly BfdSessionStatus[],
  counters: BfdCounters,
): void {
  const labels = (b: BfdSessionStatus) => ({
    peer: b.peer,
    mode: b.multihop ? "multihop" : "single-hop",
  });
  reg.gauge(
    "ocelot_bfd_session_state",
    "BFD session state (RFC 5880): 1 for the state the session is in, 0 for the others.",
    sessions.flatMap((b) =>
      BFD_STATES.map((state) => ({
        labels: { ...labels(b), state },
        value: b.state === state ? 1 : 0,
      })),
    ),
  );
  reg.gauge(
    "ocelot_bfd_session_up",
    "1 when the BFD session is Up, else 0.",
    sessions.map((b) => ({ labels: labels(b), value: b.state === "Up" ? 1 : 0 })),
  );
  reg.gauge(
    "ocelot_bfd_session_detection_time_seconds",
    "The detection time in force (0 before the first packet).",
    sessions.map((b) => ({ labels: labels(b), value: b.detectionTimeMs / 1000 })),
  );
  reg.counter(
    "ocelot_bfd_packets_received_total",
    "BFD Control packets accepted.",
    counters.received,
  );
  reg.counter("ocelot_bfd_packets_sent_total", "BFD Control packets sent.", counters.sent);
  reg.counter(
    "ocelot_bfd_packets_discarded_total",
    "BFD packets discarded, by reason (RFC 5880 6.8.6; TTL failures are dropped in the kernel, uncounted).",
    Object.entries(counters.discarded).map(([reason, n]) => ({
      labels: { reason },
      value: n ?? 0,
    })),
  );
}
