// The daemons' metric families, pure: FIB counters, the node agent's counters and the process
// in, `ocelot_*` families out (named after calico-node/Felix where a counterpart exists). Not:
// the BGP families (bgp/metrics.ts), the text format (metrics.ts), serving (health_server.ts).
import type { MetricsRegistry, Sample } from "./metrics.js";

export interface FibCounters {
  installed: number;
  pending: number;
  errors: number;
  resyncs: number;
  overflows: number;
  /** Routes of ours others removed, put back (a KernelFib's; absent for others). */
  restored?: number;
  /** Routes of our protocols nobody set, removed (a KernelFib's; absent for others). */
  swept?: number;
  /** Nexthop objects of our protocols no route named, deleted (a KernelFib's; absent for others). */
  nexthopsSwept?: number;
  /** Nexthop objects of ours deleted while running once no route named them (a KernelFib's). */
  nexthopsDeleted?: number;
  /** Refusals by operation and errno name (a KernelFib's; absent for others). */
  errorsByErrno?: { op: string; errno: string; count: number }[];
}

/** A KernelFib's status() as FibCounters (pending: desired, not yet confirmed installed). */
export function kernelFibCounters(s: {
  desired: number;
  installed: number;
  failures: number;
  resyncs: number;
  overflows: number;
  restored?: number;
  swept?: number;
  nexthopsSwept?: number;
  nexthopsDeleted?: number;
  errorsByErrno?: FibCounters["errorsByErrno"];
}): FibCounters {
  return {
    installed: s.installed,
    pending: Math.max(0, s.desired - s.installed),
    errors: s.failures,
    resyncs: s.resyncs,
    overflows: s.overflows,
    ...(s.restored !== undefined ? { restored: s.restored } : {}),
    ...(s.swept !== undefined ? { swept: s.swept } : {}),
    ...(s.nexthopsSwept !== undefined ? { nexthopsSwept: s.nexthopsSwept } : {}),
    ...(s.nexthopsDeleted !== undefined ? { nexthopsDeleted: s.nexthopsDeleted } : {}),
    ...(s.errorsByErrno ? { errorsByErrno: s.errorsByErrno } : {}),
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

/** Agent counters before the first pass: all zero. */
export function zeroAgentCounters(): AgentCounters {
  return {
    convergences: { agent: 0, bgp: 0 },
    failures: { agent: 0, bgp: 0 },
    lastDurationMs: 0,
    lastAt: 0,
    workloadEndpoints: 0,
    policies: 0,
    warnings: 0,
    watchResyncs: 0,
  };
}

/** The families a peer's counts cover: negotiated when up, else its configured ones. */
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
    "ocelot_fib_route_errors_by_errno_total",
    'Route requests the kernel refused, by operation ("set", "remove") and errno name (ENETUNREACH: a gateway on no connected subnet).',
    fibs.flatMap(([fib, c]) =>
      (c.errorsByErrno ?? []).map((e) => ({
        labels: { fib, op: e.op, errno: e.errno },
        value: e.count,
      })),
    ),
  );
  reg.counter(
    "ocelot_fib_resyncs_total",
    "Full resynchronisations with the kernel (dump, compare, repair).",
    per((c) => c.resyncs),
  );
  reg.counter(
    "ocelot_fib_routes_restored_total",
    "Routes of ours someone else removed from the kernel, put back (kernel drift repaired).",
    per((c) => c.restored ?? 0),
  );
  reg.counter(
    "ocelot_fib_routes_swept_total",
    "Routes of our protocol that no current path explains (someone else's, or left by an earlier run), removed from the kernel.",
    per((c) => c.swept ?? 0),
  );
  reg.counter(
    "ocelot_fib_nexthops_swept_total",
    "Kernel nexthop objects of our protocol that no route names (left by an earlier run, or ours while objects are off), removed from the kernel.",
    per((c) => c.nexthopsSwept ?? 0),
  );
  reg.counter(
    "ocelot_fib_nexthops_deleted_total",
    "Kernel nexthop objects of ours deleted while running once the last route naming them was gone (a withdrawn gateway).",
    per((c) => c.nexthopsDeleted ?? 0),
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

/** IPAM in the node daemon (its tunnel addresses; the CNI plugin's IPAM is not counted here). */
export function addIpamMetrics(
  reg: MetricsRegistry,
  c: {
    operations: Record<string, { ok: number; error: number }>;
    blockClaims: number;
    casConflicts: Record<string, number>;
  },
): void {
  reg.counter(
    "ocelot_ipam_operations_total",
    "IPAM operations of the node daemon (its tunnel addresses; pods' IPAM runs in the CNI plugin, not counted here), by operation and result.",
    Object.entries(c.operations).flatMap(([op, r]) => [
      { labels: { op, result: "ok" }, value: r.ok },
      { labels: { op, result: "error" }, value: r.error },
    ]),
  );
  reg.counter(
    "ocelot_ipam_block_claims_total",
    "IPAM blocks the node daemon created for this node (a block claim's second phase).",
    c.blockClaims,
  );
  reg.counter(
    "ocelot_ipam_cas_conflicts_total",
    "Compare-and-swap writes of the node daemon's IPAM the datastore refused (another writer was first; each is read again and retried), by record.",
    Object.entries(c.casConflicts).map(([record, value]) => ({ labels: { record }, value })),
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
