// Calico's local workload peering, rendered from datastore resources (pure): which of this node's
// WorkloadEndpoints are BGP peers of the node (BGPPeer `localWorkloadSelector`), under which
// BGPPeer and at which addresses, and the node's own address in those sessions (the `default`
// BGPConfiguration's localWorkloadPeeringIPV4/IPV6) that the agent puts on the host side of each
// such workload's interface so that the pod can reach it. As Felix's ActiveBGPPeerCalculator: a
// BGPPeer that applies to this node (its `node`, its `nodeSelector`, or global) selects this
// node's endpoints by their labels (their own over their profiles' labelsToApply, with
// projectcalico.org/namespace), and an endpoint several BGPPeers select takes the first by name;
// as confd's local BGP peers: each selected endpoint's first IPv4 and first IPv6 address is a
// peer. Also whether a BGPPeer applies to a node (shared with bgp_state.ts).
// Not: the sessions' settings (bgp_state.ts) nor the kernel (src/felix/apply.ts).
import type { BGPConfiguration, BGPPeer } from "../api/bgp.js";
import type { Node, WorkloadEndpoint } from "../api/node.js";
import { matchSelector, parseSelector, type Selector } from "../api/selector.js";
import { LABEL_NAMESPACE } from "../felix/policy.js";

/** One selected local workload: the BGPPeer it is active under and its peer addresses. */
export interface LocalWorkloadPeer {
  /** The BGPPeer's name. */
  bgpPeer: string;
  /** "namespace/name" of the WorkloadEndpoint. */
  workload: string;
  /** The workload's host-side interface (where the peering address goes). */
  iface: string;
  /** Its first IPv4 and first IPv6 address (without length), when it has one. */
  ipv4?: string;
  ipv6?: string;
}

/** What local workload peering needs of the datastore. */
export interface LocalPeeringSnapshot {
  nodes: readonly Node[];
  workloadEndpoints: readonly WorkloadEndpoint[];
  bgpPeers?: readonly BGPPeer[];
  bgpConfigurations?: readonly BGPConfiguration[];
  profiles?: readonly { metadata: { name: string }; spec: { labelsToApply?: unknown } }[];
}

/** Whether a BGPPeer applies to the node (global when it names no node and no selector). */
export function peerAppliesTo(peer: BGPPeer, node: Node): boolean {
  const s = peer.spec;
  if (s.node !== undefined) return s.node === node.metadata.name;
  if (s.nodeSelector !== undefined)
    return matchSelector(parseSelector(s.nodeSelector), node.metadata.labels ?? {});
  return true;
}

/** The peering addresses of the `default` BGPConfiguration (Felix reads that one only). */
export function localPeeringAddresses(configs: readonly BGPConfiguration[] | undefined): {
  4?: string;
  6?: string;
} {
  const s = (configs ?? []).find((c) => c.metadata.name === "default")?.spec;
  return {
    ...(s?.localWorkloadPeeringIPV4 ? { 4: s.localWorkloadPeeringIPV4 } : {}),
    ...(s?.localWorkloadPeeringIPV6 ? { 6: s.localWorkloadPeeringIPV6 } : {}),
  };
}

/** Whether any BGPPeer peers with workloads or a peering address is set (else nothing to do). */
export function localPeeringInUse(
  snap: Pick<LocalPeeringSnapshot, "bgpPeers" | "bgpConfigurations">,
) {
  const a = localPeeringAddresses(snap.bgpConfigurations);
  return (
    a[4] !== undefined ||
    a[6] !== undefined ||
    (snap.bgpPeers ?? []).some((p) => (p.spec.localWorkloadSelector ?? "") !== "")
  );
}

const addressOf = (cidr: string) => cidr.split("/")[0] as string;

/**
 * The node's local workloads that are BGP peers, sorted by workload; `warnings` names a BGPPeer
 * whose selector cannot be evaluated (skipped, as Felix ignores it).
 */
export function localWorkloadPeers(
  snap: LocalPeeringSnapshot,
  node: string,
): { peers: LocalWorkloadPeer[]; warnings: string[] } {
  const warnings: string[] = [];
  const me = snap.nodes.find((n) => n.metadata.name === node);
  if (!me) return { peers: [], warnings };
  const selectors: { name: string; sel: Selector }[] = [];
  for (const p of snap.bgpPeers ?? []) {
    const text = p.spec.localWorkloadSelector ?? "";
    if (text === "") continue;
    try {
      if (!peerAppliesTo(p, me)) continue;
      selectors.push({ name: p.metadata.name, sel: parseSelector(text) });
    } catch (err) {
      warnings.push(`BGPPeer "${p.metadata.name}": ${(err as Error).message}; skipped`);
    }
  }
  if (selectors.length === 0) return { peers: [], warnings };
  selectors.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const profileLabels = new Map(
    (snap.profiles ?? []).map((p) => [
      p.metadata.name,
      (p.spec.labelsToApply ?? {}) as Record<string, string>,
    ]),
  );
  const peers: LocalWorkloadPeer[] = [];
  for (const w of snap.workloadEndpoints) {
    if (w.spec.node !== node || !w.spec.interfaceName) continue;
    const namespace = w.metadata.namespace ?? "default";
    const inherited: Record<string, string> = {};
    for (const p of [...(w.spec.profiles ?? [])].reverse())
      Object.assign(inherited, profileLabels.get(p) ?? {});
    const labels = { ...inherited, ...(w.metadata.labels ?? {}), [LABEL_NAMESPACE]: namespace };
    const active = selectors.find((s) => matchSelector(s.sel, labels));
    if (!active) continue;
    const nets = (w.spec.ipNetworks ?? []).map(addressOf);
    const ipv4 = nets.find((a) => !a.includes(":"));
    const ipv6 = nets.find((a) => a.includes(":"));
    if (ipv4 === undefined && ipv6 === undefined) continue; // no address yet (confd waits too)
    peers.push({
      bgpPeer: active.name,
      workload: `${namespace}/${w.metadata.name}`,
      iface: w.spec.interfaceName,
      ...(ipv4 !== undefined ? { ipv4 } : {}),
      ...(ipv6 !== undefined ? { ipv6 } : {}),
    });
  }
  peers.sort((a, b) => (a.workload < b.workload ? -1 : a.workload > b.workload ? 1 : 0));
  return { peers, warnings };
}

/**
 * The addresses the agent puts on each local workload's host interface: the peering address of
 * each family (/32, /128) on those that are peers, none on the others. Undefined when local
 * workload peering is not in use at all (the agent then leaves interface addresses alone).
 */
export function peeringHostAddresses(
  snap: LocalPeeringSnapshot,
  node: string,
): Map<string, string[]> | undefined {
  if (!localPeeringInUse(snap)) return undefined;
  const a = localPeeringAddresses(snap.bgpConfigurations);
  const out = new Map<string, string[]>();
  for (const p of localWorkloadPeers(snap, node).peers) {
    const want = [...(a[4] ? [`${a[4]}/32`] : []), ...(a[6] ? [`${a[6]}/128`] : [])];
    out.set(p.iface, want);
  }
  return out;
}
