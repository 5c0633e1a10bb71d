// The whole desired data plane of one node, rendered from values (pure): workload interfaces,
// routes and sysctls (workload.ts) plus ipsets and iptables tables per family (iptables.ts),
// network policy chains and ipsets included (policy.ts), host endpoint policy in the filter,
// mangle and raw tables (host_endpoint.ts), and the overlay: tunnel devices, their
// neighbours, FDB entries and routes to remote blocks of encapsulating pools (overlay.ts); the
// pods' floating IPs (nat table), spoofing allowances (raw table) and bandwidth limits (qos.ts).
// Not: reading or writing the kernel (apply.ts), where the inputs come from (datastore, CNI).
import { workloadIfaceName } from "../lib/pod_wiring.js";
import type { RuleActions } from "./actions.js";
import { renderEgressDscp, withEgressDscp } from "./dscp.js";
import { type HostPolicyInput, renderHostPolicy } from "./host_endpoint.js";
import {
  type IpsetSpec,
  type NatPool,
  type RpfSkip,
  renderIpsets,
  renderTables,
  type TableSpec,
  type WorkloadLimits,
} from "./iptables.js";
import { type OverlayInput, type OverlayState, renderOverlay } from "./overlay.js";
import { type PolicyInput, renderPolicy } from "./policy.js";
import { type IfaceQos, renderQos } from "./qos.js";
import {
  type FloatingIp,
  renderWorkloads,
  type Workload,
  type WorkloadOptions,
  type WorkloadState,
} from "./workload.js";

export interface DataplaneInput {
  workloads: Workload[];
  /** This node's affine blocks (blackholed under protocol 202). */
  blocks?: string[];
  pools: NatPool[];
  /** The user's cluster network CIDRs, never masqueraded to. */
  clusterCidrs?: string[];
  /** Every node's addresses, never masqueraded to. */
  nodeAddresses?: string[];
  options?: WorkloadOptions;
  /**
   * Network policies and the endpoints they select (absent: no policy; the workloads are then
   * the known local endpoints of the dispatch chains, whose unknown-interface drop is always).
   */
  policy?: PolicyInput;
  /**
   * This node's host endpoints, failsafe ports and workload-to-host action (absent: none; the
   * mangle and raw tables are then left alone). Their policies come from `policy`.
   */
  host?: HostPolicyInput;
  /** The overlay (absent: none; our tunnel devices, if any are left, are removed). */
  overlay?: OverlayInput;
  /** FelixConfiguration's allow and deny verdicts (absent: Felix's defaults, Accept and Drop). */
  actions?: RuleActions;
}

export interface FamilyTables {
  family: 4 | 6;
  ipsets: IpsetSpec[];
  tables: TableSpec[];
}

export interface DataplaneState {
  workloads: WorkloadState;
  /**
   * IPv4 always; IPv6 when some pool is IPv6 or the node has host endpoints (ip6tables left
   * alone otherwise).
   */
  families: FamilyTables[];
  overlay: OverlayState;
  /** Bandwidth limits of workload interfaces (tc, qos_apply.ts); only those that have some. */
  qos: IfaceQos[];
  /** Parts of the input rendered differently than written (policy, encapsulation). */
  warnings: string[];
}

const NO_OVERLAY: OverlayInput = { node: "", nodes: [], pools: [], blocks: [], fabric: {} };

const isV6 = (cidr: string) => cidr.includes(":");

/** The workloads' floating IPs of one family (both addresses). */
function floatingOf(workloads: readonly Workload[], fam: (a: string) => boolean): FloatingIp[] {
  const out: FloatingIp[] = [];
  for (let i = 0; i < workloads.length; i++) {
    const w = workloads[i] as Workload;
    if (w.floatingIps !== undefined)
      for (const n of w.floatingIps) if (fam(n.external) && fam(n.internal)) out.push(n);
  }
  return out;
}

export function renderDataplane(input: DataplaneInput): DataplaneState {
  const workloads = renderWorkloads(input.workloads, input.blocks ?? [], input.options);
  const families: FamilyTables[] = [];
  // Packet rates and connection limits: iptables rules in both families (qosControls).
  // (Indexed loops, not flatMap or for-of: an empty array or an iterator result a workload a
  // pass was garbage at 1,000 pods.)
  const ws = input.workloads;
  const limits: WorkloadLimits[] = [];
  for (let i = 0; i < ws.length; i++) {
    const w = ws[i] as Workload;
    if (w.qos) limits.push({ ...w.qos, iface: w.hostIface ?? workloadIfaceName(w.id) });
  }
  const warnings = new Set<string>();
  // No policy input: the local pods alone, as the dispatch chains need them.
  const localEndpoints: PolicyInput = {
    endpoints: input.workloads.map((w) => ({
      id: w.id,
      namespace: "",
      labels: {},
      addresses: [...w.ipv4, ...w.ipv6],
      iface: w.hostIface ?? workloadIfaceName(w.id),
    })),
    policies: [],
  };
  for (const family of [4, 6] as const) {
    const pick = (xs: string[]) => xs.filter((x) => isV6(x) === (family === 6));
    const pools = input.pools.filter((p) => isV6(p.cidr) === (family === 6));
    // IPv6 needs a pool, or a host endpoint (host policy polices the host's IPv6 too).
    if (family === 6 && pools.length === 0 && (input.host?.hostEndpoints.length ?? 0) === 0)
      continue;
    const fam = (a: string) => isV6(a) === (family === 6);
    const nat = {
      family,
      pools,
      clusterCidrs: pick(input.clusterCidrs ?? []),
      nodeAddresses: pick(input.nodeAddresses ?? []),
      floatingIps: floatingOf(input.workloads, fam),
    };
    // rp_filter is off for a spoofing pod's whole interface: iptables checks both families.
    const rpf: RpfSkip[] = [];
    for (let i = 0; i < ws.length; i++) {
      const w = ws[i] as Workload;
      if (w.spoofPrefixes !== undefined && w.spoofPrefixes.length > 0)
        rpf.push({
          iface: w.hostIface ?? workloadIfaceName(w.id),
          prefixes: w.spoofPrefixes.filter(fam),
        });
    }
    const actions = input.actions !== undefined ? { actions: input.actions } : {};
    // Always rendered: without any policy, the dispatch chains still name every local pod and
    // drop what comes from or goes to a workload interface none is known for (Felix's
    // "Unknown interface" rule).
    const policy = renderPolicy({ ...(input.policy ?? localEndpoints), ...actions }, family);
    for (const w of policy?.warnings ?? []) warnings.add(w);
    const host = input.host
      ? renderHostPolicy(
          input.host,
          { ...(input.policy ?? { endpoints: [], policies: [] }), ...actions },
          family,
        )
      : undefined;
    for (const w of host?.warnings ?? []) warnings.add(w);
    // DSCP marking of pods' traffic leaving the cluster (qosControls.dscp; mangle POSTROUTING).
    // Host endpoints' too (their annotation), by their expectedIPs.
    const marked: { addresses: string[]; dscp: number }[] = [];
    for (let i = 0; i < ws.length; i++) {
      const w = ws[i] as Workload;
      if (w.dscp !== undefined) marked.push({ addresses: [...w.ipv4, ...w.ipv6], dscp: w.dscp });
    }
    const dscp = renderEgressDscp(
      [
        ...marked,
        ...(input.host?.hostEndpoints ?? []).flatMap((h) =>
          h.dscp !== undefined && (h.expectedIPs ?? []).length > 0
            ? [{ addresses: h.expectedIPs ?? [], dscp: h.dscp }]
            : [],
        ),
      ],
      family,
    );
    // Workload and host rules share selector ipsets (same name, same members).
    const ipsets = new Map<string, IpsetSpec>();
    for (const s of [
      ...renderIpsets(nat),
      ...(policy?.ipsets ?? []),
      ...(host?.ipsets ?? []),
      ...(dscp ? [dscp.ipset] : []),
    ])
      if (!ipsets.has(s.name)) ipsets.set(s.name, s);
    const tables = renderTables(nat, policy, host, rpf, limits, input.actions?.filterAllow);
    families.push({
      family,
      ipsets: [...ipsets.values()],
      tables: dscp ? withEgressDscp(tables, dscp) : tables,
    });
  }
  const overlay = renderOverlay(input.overlay ?? NO_OVERLAY);
  for (const w of overlay.warnings) warnings.add(w);
  const qos: IfaceQos[] = [];
  for (let i = 0; i < ws.length; i++) {
    const w = ws[i] as Workload;
    const q = w.qos ? renderQos(w.hostIface ?? workloadIfaceName(w.id), w.qos) : undefined;
    if (q) qos.push(q);
  }
  return { workloads, families, overlay, qos, warnings: [...warnings] };
}
