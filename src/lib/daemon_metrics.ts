// The daemons' metric families, pure: a BGP status snapshot, FIB counters and the node agent's
// counters in, `ocelot_*` families out (named after calico-node/Felix and the BGP exporters
// where a counterpart exists). Not: the text format (metrics.ts) or serving (health_server.ts).
import type { BfdCounters, BfdSessionStatus } from "../bgp/bfd/runtime.js";
import type { PeerStatus, StatusSnapshot } from "../bgp/status.js";
import type { MetricsRegistry, Sample } from "./metrics.js";

/** The FSM states of RFC 4271 §8.2.2, each a series of ocelot_bgp_peer_state. */
export const BGP_STATES = [
  "Idle",
  "Connect",
  "Active",
  "OpenSent",
  "OpenConfirm",
  "Established",
] as const;

export interface FibCounters {
  installed: number;
  pending: number;
  errors: number;
  resyncs: number;
  overflows: number;
}

/** A KernelFib's status() as FibCounters (pending: desired, not yet confirmed installed). */
export function kernelFibCounters(s: {
  desired: number;
  installed: number;
  failures: number;
  resyncs: number;
  overflows: number;
}): FibCounters {
  return {
    installed: s.installed,
    pending: Math.max(0, s.desired - s.installed),
    errors: s.failures,
    resyncs: s.resyncs,
    overflows: s.overflows,
  };
}

export interface AgentCounters {
  convergences: { agent: number; bgp: number };
  failures: { agent: number; bgp: number };
  /** Of the last convergence pass, 0 before the first. */
  lastDurationMs: number;
  /** Unix time in ms of the end of the last pass, 0 before the first. */
  lastAt: number;
  workloadEndpoints: number;
  policies: number;
  warnings: number;
  watchResyncs: number;
}

/** The families a peer's counts cover: negotiated when up, else its configured ones. */
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
export function addFibMetrics(reg: MetricsRegistry, fibs: [string, FibCounters][]): void {
  const per = (f: (c: FibCounters) => number): Sample[] =>
    fibs.map(([fib, c]) => ({ labels: { fib }, value: f(c) }));
  reg.gauge(
    "ocelot_fib_routes_installed",
    "Routes installed in the kernel.",
    per((c) => c.installed),
  );
  reg.gauge(
    "ocelot_fib_routes_pending",
    "Routes wanted and not yet confirmed installed by the kernel.",
    per((c) => c.pending),
  );
  reg.counter(
    "ocelot_fib_route_errors_total",
    "Route requests the kernel refused.",
    per((c) => c.errors),
  );
  reg.counter(
    "ocelot_fib_resyncs_total",
    "Full resynchronisations with the kernel (dump, compare, repair).",
    per((c) => c.resyncs),
  );
  reg.counter(
    "ocelot_fib_netlink_overflows_total",
    "Netlink receive buffer overflows (ENOBUFS), each followed by a resync.",
    per((c) => c.overflows),
  );
}

/** The node daemon's agent loop (Felix-like) and its datastore watches. */
export function addAgentMetrics(reg: MetricsRegistry, a: AgentCounters): void {
  const areas = (v: { agent: number; bgp: number }): Sample[] => [
    { labels: { area: "agent" }, value: v.agent },
    { labels: { area: "bgp" }, value: v.bgp },
  ];
  reg.counter(
    "ocelot_agent_convergences_total",
    "Convergence passes that succeeded, per area (agent data plane, BGP speaker).",
    areas(a.convergences),
  );
  reg.counter(
    "ocelot_agent_convergence_failures_total",
    "Convergence passes that failed (retried later), per area.",
    areas(a.failures),
  );
  reg.gauge(
    "ocelot_agent_last_convergence_duration_seconds",
    "Duration of the last convergence pass.",
    a.lastDurationMs / 1000,
  );
  reg.gauge(
    "ocelot_agent_last_convergence_timestamp_seconds",
    "Unix time the last convergence pass ended (0 before the first).",
    a.lastAt / 1000,
  );
  reg.gauge(
    "ocelot_agent_workload_endpoints",
    "This node's workload endpoints the agent programs.",
    a.workloadEndpoints,
  );
  reg.gauge(
    "ocelot_agent_active_policies",
    "Network policies (all three kinds) rendered into this node's data plane.",
    a.policies,
  );
  reg.gauge(
    "ocelot_agent_warnings",
    "Warnings of the agent's last render (parts applied differently than written).",
    a.warnings,
  );
  reg.counter(
    "ocelot_datastore_watch_resyncs_total",
    "Datastore watches that had to list again (compaction or a lost watch).",
    a.watchResyncs,
  );
}

/** Resident memory and start time, under the standard process_* names. */
export function addProcessMetrics(
  reg: MetricsRegistry,
  p: { rssBytes: number; startedAtMs: number },
): void {
  reg.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", p.rssBytes);
  reg.gauge(
    "process_start_time_seconds",
    "Start time of the process since unix epoch in seconds.",
    Math.floor(p.startedAtMs / 1000),
  );
}

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
