// The agent's desired data plane for one node, from datastore resources (pure): the node's
// WorkloadEndpoints become felix Workloads, its confirmed block affinities become blackholed
// blocks, IPPools become NAT-outgoing pools, Node addresses are never masqueraded to, and
// NetworkPolicies, GlobalNetworkPolicies and Kubernetes NetworkPolicies become the policy input
// (every WorkloadEndpoint is a possible rule peer; this node's are policed; Profiles' rules
// follow), this node's HostEndpoints with the FelixConfiguration it acts on (failsafe ports,
// defaultEndpointToHostAction, logSeverityScreen; `node.<name>` over `default`), and the overlay's
// input: every Node's fabric and tunnel addresses, every node's confirmed blocks, the pools'
// encapsulation modes, and the MTUs FelixConfiguration sets (vxlanMTU, vxlanMTUV6, ipipMTU; the
// host MTU from the links mtuIfacePattern matches), and the local workload peering address on the
// host side of the pods that are BGP peers of the node (local_peers.ts).
// Not: reading the datastore (daemon.ts, cache.ts) or the kernel (src/felix/apply.ts).

import type { BGPConfiguration, BGPPeer } from "../api/bgp.js";
import { dscpValue } from "../api/dscp.js";
import type { HostEndpoint } from "../api/hostendpoint.js";
import type { IPPool } from "../api/ippool.js";
import { type K8sEndpointSlice, type K8sService, SERVICE_NAME_LABEL } from "../api/k8s_service.js";
import type { NetworkSetResource } from "../api/networkset.js";
import type { Node, WorkloadEndpoint } from "../api/node.js";
import type { GlobalNetworkPolicy, K8sNetworkPolicy, NetworkPolicy } from "../api/policy.js";
import type { Tier } from "../api/tier.js";
import type { DataplaneInput } from "../felix/dataplane.js";
import {
  effectiveFelixSpec,
  FELIX_FIELDS_ACTED_ON,
  type FelixSettings,
  felixSettings,
} from "../felix/felix_config.js";
import type { HostIface, HostPolicyInput } from "../felix/host_endpoint.js";
import type { NatPool } from "../felix/iptables.js";
import { type HostLink, hostMtuOf } from "../felix/mtu.js";
import type { FabricIface, OverlayInput, OverlayNode, WorkloadAddress } from "../felix/overlay.js";
import {
  fromGlobalNetworkPolicy,
  fromK8sNetworkPolicy,
  fromNetworkPolicy,
  LABEL_NAMESPACE,
  type PolicyEndpoint,
  type PolicyInput,
  type PolicyProfile,
} from "../felix/policy.js";
import type { PolicyServiceSlice } from "../felix/service_match.js";
import { wireguardConfig } from "../felix/wireguard.js";
import type { Workload } from "../felix/workload.js";
import type { Affinity } from "../ipam/records.js";
import { peeringHostAddresses } from "./local_peers.js";

/** The resources one node's agent and BGP speaker are rendered from. */
export interface NodeSnapshot {
  nodes: Node[];
  workloadEndpoints: WorkloadEndpoint[];
  pools: IPPool[];
  /** Block affinities (any node's; only this node's confirmed ones are used). */
  affinities: Affinity[];
  networkPolicies?: NetworkPolicy[];
  globalNetworkPolicies?: GlobalNetworkPolicy[];
  k8sNetworkPolicies?: K8sNetworkPolicy[];
  tiers?: Tier[];
  /** GlobalNetworkSets and NetworkSets: rule selectors match their nets by their labels. */
  networkSets?: NetworkSetResource[];
  /** This node's are policed; every one's expectedIPs are rule peers. */
  hostEndpoints?: HostEndpoint[];
  profiles?: {
    metadata: { name: string };
    spec: { ingress?: unknown[]; egress?: unknown[]; labelsToApply?: unknown };
  }[];
  felixConfigurations?: { metadata: { name: string }; spec: Record<string, unknown> }[];
  /** Local workload peering (local_peers.ts): BGPPeers and the `default` BGPConfiguration. */
  bgpPeers?: BGPPeer[];
  bgpConfigurations?: BGPConfiguration[];
  /** Kubernetes Services and their EndpointSlices (kube-controllers' copies). */
  services?: K8sService[];
  endpointSlices?: K8sEndpointSlice[];
}

export interface AgentOptions {
  /** The user's cluster network CIDRs, never masqueraded to. */
  clusterCidrs?: string[];
  /** Node-wide IPv6 forwarding (default: on when some pool is IPv6). */
  ipv6?: boolean;
  /** The interfaces holding this node's fabric addresses (read from the kernel by the caller). */
  fabric?: { 4?: FabricIface; 6?: FabricIface };
  /** MTU override for pods and tunnel devices (absent: the fabric's minus the overhead). */
  mtu?: number;
  /** The host's interfaces and addresses (HostEndpoints by expectedIPs; read by the caller). */
  hostInterfaces?: HostIface[];
  /** FelixConfiguration fields from calico-node's environment (felixEnvironment; above the datastore). */
  felixEnv?: Record<string, string>;
  /** The host's links with their MTU (read by the caller when mtuIfacePattern is set). */
  hostLinks?: HostLink[];
  /**
   * Policy's dispatch by set (PolicyInput.dispatchBySet; `ocelot node run --policy-dispatch
   * set`): a new pod of a known policy set is a set member, no rule.
   */
  dispatchBySet?: boolean;
}

const addressOf = (cidr: string) => cidr.split("/")[0] as string;

/**
 * The workloads of one node as the agent sees them: its WorkloadEndpoints that name a host
 * interface, id "namespace/name", addresses without their /32 (/128); their floating IPs when
 * FelixConfiguration enables them, their spoofing allowance when it allows it (Felix's
 * floatingIPs and workloadSourceSpoofing), their bandwidth limits.
 */
export function workloadsOf(
  weps: readonly WorkloadEndpoint[],
  node: string,
  felix: { floatingIps?: boolean; sourceSpoofing?: boolean } = {},
  /** Host-side addresses by interface (local_peers.ts peeringHostAddresses); absent: untouched. */
  hostAddresses?: ReadonlyMap<string, string[]>,
): Workload[] {
  return weps
    .filter((w) => w.spec.node === node && w.spec.interfaceName)
    .map((w) => {
      const nets = (w.spec.ipNetworks ?? []).map(addressOf);
      const nats = felix.floatingIps ? (w.spec.ipNATs ?? []) : [];
      const spoof = felix.sourceSpoofing ? (w.spec.allowSpoofedSourcePrefixes ?? []) : [];
      const { dscp, ...qos } = w.spec.qosControls ?? {};
      const code = dscp !== undefined ? dscpValue(dscp) : undefined;
      return {
        id: `${w.metadata.namespace}/${w.metadata.name}`,
        hostIface: w.spec.interfaceName,
        ipv4: nets.filter((a) => !a.includes(":")),
        ipv6: nets.filter((a) => a.includes(":")),
        ...(nats.length > 0
          ? { floatingIps: nats.map((n) => ({ internal: n.internalIP, external: n.externalIP })) }
          : {}),
        ...(spoof.length > 0 ? { spoofPrefixes: [...spoof] } : {}),
        ...(Object.keys(qos).length > 0 ? { qos } : {}),
        ...(code !== undefined ? { dscp: code } : {}),
        ...(hostAddresses
          ? { hostAddresses: hostAddresses.get(w.spec.interfaceName as string) ?? [] }
          : {}),
      };
    });
}

/**
 * This node's WorkloadEndpoint fields the FelixConfiguration leaves unprogrammed, one warning
 * each: ipNATs without floatingIPs Enabled, allowSpoofedSourcePrefixes without
 * workloadSourceSpoofing Any (Felix refuses such an endpoint; Ocelot keeps it, spoofing off).
 */
export function workloadFieldWarnings(
  weps: readonly WorkloadEndpoint[],
  node: string,
  felix: { floatingIps?: boolean; sourceSpoofing?: boolean },
): string[] {
  const out: string[] = [];
  for (const w of weps) {
    if (w.spec.node !== node) continue;
    const name = `WorkloadEndpoint "${w.metadata.namespace}/${w.metadata.name}"`;
    if ((w.spec.ipNATs ?? []).length > 0 && !felix.floatingIps)
      out.push(
        `${name}: ipNATs not programmed (FelixConfiguration floatingIPs is not Enabled; Calico's default is Disabled)`,
      );
    if ((w.spec.allowSpoofedSourcePrefixes ?? []).length > 0 && !felix.sourceSpoofing)
      out.push(
        `${name}: allowSpoofedSourcePrefixes not allowed (FelixConfiguration workloadSourceSpoofing is not Any); its sources are still checked`,
      );
  }
  return out;
}

/** The node's confirmed affine blocks (Calico backs and announces only confirmed ones). */
export function nodeBlocks(affinities: readonly Affinity[], node: string): string[] {
  return [
    ...new Set(
      affinities.filter((a) => a.node === node && a.state === "confirmed").map((a) => a.cidr),
    ),
  ].sort();
}

/** The pools NAT-outgoing is rendered for (every pool: a disabled one still has pods). */
export function natPoolsOf(pools: readonly IPPool[]): NatPool[] {
  return pools
    .map((p) => ({
      cidr: p.spec.cidr,
      natOutgoing: p.spec.natOutgoing === true,
      name: p.metadata.name,
    }))
    .sort((a, b) => (a.cidr < b.cidr ? -1 : a.cidr > b.cidr ? 1 : 0));
}

/** Every node's addresses (BGP IPv4/IPv6 and spec.addresses), without prefix lengths. */
export function nodeAddressesOf(nodes: readonly Node[]): string[] {
  const out = new Set<string>();
  for (const n of nodes) {
    const b = n.spec.bgp;
    if (b?.ipv4Address) out.add(addressOf(b.ipv4Address));
    if (b?.ipv6Address) out.add(addressOf(b.ipv6Address));
    for (const a of n.spec.addresses ?? []) out.add(addressOf(a.address));
  }
  return [...out].sort();
}

/**
 * The external addresses of node's floating IPs (ipNATs) when its FelixConfiguration enables
 * them: Felix routes each to its pod, and Calico's BGP speaker exports such a route when it lies
 * in an IP pool (a disabled one included), as it does a borrowed address.
 */
export function floatingAddressesOf(snap: NodeSnapshot, node: string): WorkloadAddress[] {
  if (!felixSettingsOf(snap, node).floatingIps) return [];
  return snap.workloadEndpoints
    .filter((w) => w.spec.node === node && w.spec.interfaceName)
    .flatMap((w) => (w.spec.ipNATs ?? []).map((n) => ({ address: n.externalIP, node })));
}

/** Every WorkloadEndpoint's addresses with its node (for borrowed-address routes). */
export function workloadAddressesOf(weps: readonly WorkloadEndpoint[]): WorkloadAddress[] {
  return weps.flatMap((w) => {
    const node = w.spec.node;
    if (!node) return [];
    return (w.spec.ipNetworks ?? []).map((n) => ({ address: n.split("/")[0] as string, node }));
  });
}

/** A Node as the overlay sees it: fabric addresses, tunnel addresses and VTEP MACs. */
export function overlayNodeOf(n: Node): OverlayNode {
  const s = n.spec;
  const vxlan = (address: string | undefined, mac: string | undefined) =>
    address && mac ? { address, mac } : undefined;
  const v4 = vxlan(s.ipv4VXLANTunnelAddr, s.vxlanTunnelMACAddr);
  const v6 = vxlan(s.ipv6VXLANTunnelAddr, s.vxlanTunnelMACAddrV6);
  return {
    name: n.metadata.name,
    ...(s.bgp?.ipv4Address ? { ipv4Address: s.bgp.ipv4Address } : {}),
    ...(s.bgp?.ipv6Address ? { ipv6Address: s.bgp.ipv6Address } : {}),
    ...(v4 ? { vxlanV4: v4 } : {}),
    ...(v6 ? { vxlanV6: v6 } : {}),
    ...(s.bgp?.ipv4IPIPTunnelAddr ? { ipipAddress: s.bgp.ipv4IPIPTunnelAddr } : {}),
  };
}

/** The overlay's input for node (every node's confirmed blocks; pools' modes). */
export function overlayInputOf(
  snap: NodeSnapshot,
  node: string,
  opts: AgentOptions = {},
): OverlayInput {
  const felix = felixSettingsOf(snap, node, opts.felixEnv);
  const hostMtu =
    felix.mtuIfacePattern && opts.hostLinks
      ? hostMtuOf(opts.hostLinks, felix.mtuIfacePattern)
      : undefined;
  const mtus = {
    ...(felix.vxlanMtu ? { vxlan4: felix.vxlanMtu } : {}),
    ...(felix.vxlanMtuV6 ? { vxlan6: felix.vxlanMtuV6 } : {}),
    ...(felix.ipipMtu ? { ipip: felix.ipipMtu } : {}),
    ...(hostMtu !== undefined ? { hostMtu } : {}),
  };
  return {
    node,
    nodes: snap.nodes.map(overlayNodeOf),
    pools: snap.pools.map((p) => ({
      name: p.metadata.name,
      cidr: p.spec.cidr,
      vxlanMode: p.spec.vxlanMode ?? "Never",
      ipipMode: p.spec.ipipMode ?? "Never",
    })),
    blocks: snap.affinities
      .filter((a) => a.state === "confirmed")
      .map((a) => ({ cidr: a.cidr, node: a.node })),
    workloads: workloadAddressesOf(snap.workloadEndpoints),
    fabric: opts.fabric ?? {},
    ...(opts.mtu !== undefined ? { mtu: opts.mtu } : {}),
    ...(Object.keys(mtus).length > 0 ? { mtus } : {}),
    ...(felix.vxlanPort !== undefined || felix.vxlanVni !== undefined
      ? {
          vxlan: {
            ...(felix.vxlanPort !== undefined ? { port: felix.vxlanPort } : {}),
            ...(felix.vxlanVni !== undefined ? { vni: felix.vxlanVni } : {}),
          },
        }
      : {}),
  };
}

/**
 * Every WorkloadEndpoint as policy sees it; node's own carry their host interface. Its labels
 * are its own over those its profiles apply (labelsToApply; the first profile listed wins), as
 * Felix inherits them.
 */
export function policyEndpointsOf(
  weps: readonly WorkloadEndpoint[],
  node: string,
  profileLabels: ReadonlyMap<string, Readonly<Record<string, string>>> = new Map(),
): PolicyEndpoint[] {
  return weps.map((w) => {
    const namespace = w.metadata.namespace ?? "default";
    const local = w.spec.node === node && w.spec.interfaceName !== undefined;
    const inherited: Record<string, string> = {};
    for (const p of [...(w.spec.profiles ?? [])].reverse())
      Object.assign(inherited, profileLabels.get(p) ?? {});
    return {
      id: `${namespace}/${w.metadata.name}`,
      namespace,
      labels: { ...inherited, ...(w.metadata.labels ?? {}), [LABEL_NAMESPACE]: namespace },
      addresses: (w.spec.ipNetworks ?? []).map(addressOf),
      ...(local ? { iface: w.spec.interfaceName } : {}),
      ...(w.spec.profiles?.length ? { profiles: [...w.spec.profiles] } : {}),
      ...namedPortsOf(w.spec.ports),
    };
  });
}

/** An endpoint's named ports as rules' named ports match them (unnamed host ports left out). */
function namedPortsOf(
  ports: readonly { name?: string; protocol: string | number; port: number }[] | undefined,
): Pick<PolicyEndpoint, "ports"> {
  const named = (ports ?? []).filter((p) => p.name !== undefined && p.name !== "");
  if (named.length === 0) return {};
  return {
    ports: named.map((p) => ({
      name: p.name as string,
      protocol:
        typeof p.protocol === "number"
          ? (PORT_PROTOCOL_NUMBERS[p.protocol] ?? String(p.protocol))
          : p.protocol.toLowerCase(),
      port: p.port,
    })),
  };
}

const PORT_PROTOCOL_NUMBERS: Record<number, string> = { 6: "tcp", 17: "udp", 132: "sctp" };

/** EndpointSlices as `services` matches see them: every endpoint address, the slice's ports. */
export function serviceSlicesOf(slices: readonly K8sEndpointSlice[]): PolicyServiceSlice[] {
  return slices.flatMap((s) => {
    const service = s.metadata.labels?.[SERVICE_NAME_LABEL];
    if (!service) return [];
    return [
      {
        namespace: s.metadata.namespace ?? "default",
        service,
        addresses: (s.endpoints ?? []).flatMap((e) => e.addresses),
        ports: (s.ports ?? []).map((p) => ({
          ...(p.protocol ? { protocol: p.protocol } : {}),
          ...(p.port !== undefined ? { port: p.port } : {}),
        })),
      },
    ];
  });
}

/** Profiles' labelsToApply by profile name. */
function profileLabelsOf(snap: NodeSnapshot): Map<string, Record<string, string>> {
  return new Map(
    (snap.profiles ?? []).map((p) => [
      p.metadata.name,
      (p.spec.labelsToApply ?? {}) as Record<string, string>,
    ]),
  );
}

/** A HostEndpoint's labels: its own over its profiles' labelsToApply (first profile wins). */
function hostLabels(
  h: HostEndpoint,
  profileLabels: ReadonlyMap<string, Readonly<Record<string, string>>>,
): Record<string, string> {
  const inherited: Record<string, string> = {};
  for (const p of [...(h.spec.profiles ?? [])].reverse())
    Object.assign(inherited, profileLabels.get(p) ?? {});
  return { ...inherited, ...(h.metadata.labels ?? {}) };
}

/** Every HostEndpoint with expectedIPs as a rule peer (rule selectors match them, as Calico). */
function hostPeersOf(snap: NodeSnapshot, profileLabels: Map<string, Record<string, string>>) {
  return (snap.hostEndpoints ?? [])
    .filter((h) => (h.spec.expectedIPs ?? []).length > 0)
    .map(
      (h): PolicyEndpoint => ({
        id: `hostendpoint/${h.metadata.name}`,
        namespace: "",
        labels: hostLabels(h, profileLabels),
        addresses: [...(h.spec.expectedIPs ?? [])],
        ...namedPortsOf(h.spec.ports),
      }),
    );
}

/** The Profiles with rules, as policy renders them. */
function policyProfilesOf(snap: NodeSnapshot): PolicyProfile[] {
  return (snap.profiles ?? [])
    .filter((p) => (p.spec.ingress?.length ?? 0) > 0 || (p.spec.egress?.length ?? 0) > 0)
    .map((p) => ({
      name: p.metadata.name,
      ingress: (p.spec.ingress ?? []) as PolicyProfile["ingress"],
      egress: (p.spec.egress ?? []) as PolicyProfile["egress"],
    }));
}

/**
 * This node's FelixConfiguration settings (`node.<name>` over `default`, the environment's
 * fields over both).
 */
export function felixSettingsOf(
  snap: NodeSnapshot,
  node: string,
  env?: Record<string, string>,
): FelixSettings {
  return felixSettings(effectiveFelixSpec(snap.felixConfigurations ?? [], node), env);
}

/**
 * A HostEndpoint's `qos.projectcalico.org/dscp` annotation (libcalico-go's host endpoint
 * processor): its code point; an invalid one is left out, as Calico logs and drops it.
 */
function hostDscp(h: HostEndpoint): { dscp?: number } {
  const text = h.metadata.annotations?.["qos.projectcalico.org/dscp"];
  const code = text !== undefined ? dscpValue(text) : undefined;
  return code !== undefined ? { dscp: code } : {};
}

/** This node's HostEndpoints with the failsafe ports and workload-to-host action. */
export function hostInputOf(
  snap: NodeSnapshot,
  node: string,
  opts: AgentOptions = {},
): HostPolicyInput {
  const profileLabels = profileLabelsOf(snap);
  const f = felixSettingsOf(snap, node);
  return {
    hostEndpoints: (snap.hostEndpoints ?? [])
      .filter((h) => h.spec.node === node)
      .map((h) => ({
        name: h.metadata.name,
        ...(h.spec.interfaceName !== undefined ? { interfaceName: h.spec.interfaceName } : {}),
        ...(h.spec.expectedIPs ? { expectedIPs: [...h.spec.expectedIPs] } : {}),
        labels: hostLabels(h, profileLabels),
        ...(h.spec.profiles ? { profiles: [...h.spec.profiles] } : {}),
        ...hostDscp(h),
      })),
    ...(opts.hostInterfaces ? { interfaces: opts.hostInterfaces } : {}),
    ...(f.failsafeInbound ? { failsafeInbound: f.failsafeInbound } : {}),
    ...(f.failsafeOutbound ? { failsafeOutbound: f.failsafeOutbound } : {}),
    ...(f.defaultEndpointToHostAction
      ? { defaultEndpointToHostAction: f.defaultEndpointToHostAction }
      : {}),
    ...wireguardPortsOf(snap, node),
  };
}

/** The WireGuard ports of the families where WireGuard is on (host endpoints let them through). */
function wireguardPortsOf(
  snap: NodeSnapshot,
  node: string,
): Pick<HostPolicyInput, "wireguardPorts"> {
  const spec = effectiveFelixSpec(snap.felixConfigurations ?? [], node);
  const ports: { 4?: number; 6?: number } = {};
  for (const family of [4, 6] as const) {
    const { config } = wireguardConfig(spec, family);
    if (config.enabled) ports[family] = config.listeningPort;
  }
  return Object.keys(ports).length > 0 ? { wireguardPorts: ports } : {};
}

/** Whether some HostEndpoint of this node names no interface (its expectedIPs find one). */
export function needsHostInterfaces(snap: NodeSnapshot, node: string): boolean {
  return (snap.hostEndpoints ?? []).some(
    (h) => h.spec.node === node && h.spec.interfaceName === undefined,
  );
}

/** The policy input, or undefined when there is no policy at all (nothing is policed). */
export function policyInputOf(snap: NodeSnapshot, node: string): PolicyInput | undefined {
  const policies = [
    ...(snap.networkPolicies ?? []).map(fromNetworkPolicy),
    ...(snap.globalNetworkPolicies ?? []).map(fromGlobalNetworkPolicy),
    ...(snap.k8sNetworkPolicies ?? []).map(fromK8sNetworkPolicy),
  ];
  const profiles = policyProfilesOf(snap);
  const hosts = (snap.hostEndpoints ?? []).some((h) => h.spec.node === node);
  if (policies.length === 0 && profiles.length === 0 && !hosts) return undefined;
  const profileLabels = profileLabelsOf(snap);
  return {
    endpoints: [
      ...policyEndpointsOf(snap.workloadEndpoints, node, profileLabels),
      ...hostPeersOf(snap, profileLabels),
    ],
    policies,
    ...(profiles.length > 0 ? { profiles } : {}),
    tiers: (snap.tiers ?? []).map((t) => ({
      name: t.metadata.name,
      ...(t.spec.order !== undefined ? { order: t.spec.order } : {}),
      defaultAction: t.spec.defaultAction,
    })),
    services: serviceSlicesOf(snap.endpointSlices ?? []),
    networkSets: (snap.networkSets ?? []).map((s) => ({
      ...(s.kind === "NetworkSet" ? { namespace: s.metadata.namespace ?? "default" } : {}),
      labels: s.metadata.labels ?? {},
      nets: s.spec.nets ?? [],
    })),
  };
}

/**
 * What the node stores but does not act on, one warning each: the fields of this node's
 * Felix configurations other than those the agent uses, and settings it could not use.
 * Staged policies are never read.
 */
export function storedOnlyWarnings(
  snap: NodeSnapshot,
  node: string,
  opts: AgentOptions = {},
): string[] {
  const out: string[] = [];
  for (const f of snap.felixConfigurations ?? [])
    if (f.metadata.name === "default" || f.metadata.name === `node.${node}`) {
      const fields = Object.keys(f.spec).filter((k) => !FELIX_FIELDS_ACTED_ON.includes(k));
      if (fields.length > 0)
        out.push(`FelixConfiguration "${f.metadata.name}": ${fields.join(", ")} not acted on yet`);
    }
  const felix = felixSettingsOf(snap, node, opts.felixEnv);
  out.push(...felix.warnings);
  if (
    felix.mtuIfacePattern &&
    opts.hostLinks &&
    hostMtuOf(opts.hostLinks, felix.mtuIfacePattern) === undefined
  )
    out.push(
      `FelixConfiguration mtuIfacePattern: no running interface matches ${felix.mtuIfacePattern}; the fabric interfaces' MTU is used`,
    );
  out.push(...workloadFieldWarnings(snap.workloadEndpoints, node, felix));
  return out;
}

/** The felix input for node: what renderDataplane() turns into the desired kernel state. */
export function agentInput(
  snap: NodeSnapshot,
  node: string,
  opts: AgentOptions = {},
): DataplaneInput {
  const pools = natPoolsOf(snap.pools);
  const policy = policyInputOf(snap, node);
  const felix = felixSettingsOf(snap, node);
  return {
    ...(policy !== undefined
      ? { policy: opts.dispatchBySet === true ? { ...policy, dispatchBySet: true } : policy }
      : {}),
    ...(felix.actions !== undefined ? { actions: felix.actions } : {}),
    host: hostInputOf(snap, node, opts),
    workloads: workloadsOf(snap.workloadEndpoints, node, felix, peeringHostAddresses(snap, node)),
    blocks: nodeBlocks(snap.affinities, node),
    pools,
    clusterCidrs: opts.clusterCidrs ?? [],
    nodeAddresses: nodeAddressesOf(snap.nodes),
    options: { ipv6: opts.ipv6 ?? pools.some((p) => p.cidr.includes(":")) },
    overlay: overlayInputOf(snap, node, opts),
  };
}
