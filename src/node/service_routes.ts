// Service IP advertisement (pure), as Calico's confd computes it for BIRD: the `default`
// BGPConfiguration's serviceClusterIPs, serviceExternalIPs and serviceLoadBalancerIPs CIDRs are
// announced by every node; a Service with `externalTrafficPolicy: Local` also gets a host route
// (/32, /128) for each of its cluster IPs, external IPs and load-balancer IPs that lies inside a
// configured range of its kind, announced only by the nodes that hold one of its ready
// endpoints (the EndpointSlices' `nodeName`), so that the more specific route draws the traffic
// to them and kube-proxy's Local policy keeps the client's address. Services come from the
// datastore (kube-controllers' copies, src/api/k8s_service.ts). Not: the speaker's other
// originations (bgp_state.ts), announcing (src/bgp), kube-proxy's work (not Ocelot's).
import type { BGPConfiguration } from "../api/bgp.js";
import {
  type K8sEndpointSlice,
  type K8sService,
  readyEndpoints,
  SERVICE_NAME_LABEL,
} from "../api/k8s_service.js";
import type { Node } from "../api/node.js";
import { cidrContains, formatAddress, parseAddress, parseCidr } from "../lib/ip.js";

export interface ServiceRouteInput {
  bgpConfigurations: readonly BGPConfiguration[];
  nodes: readonly Node[];
  services?: readonly K8sService[];
  endpointSlices?: readonly K8sEndpointSlice[];
}

type Ranges = { clusterIPs: string[]; externalIPs: string[]; loadBalancerIPs: string[] };

/** A CIDR with its host bits masked ("10.96.0.1/12" -> "10.96.0.0/12"; a bare IP a host route). */
function canonicalCidr(text: string): string {
  const withLen = text.includes("/") ? text : `${text}/${text.includes(":") ? 128 : 32}`;
  const c = parseCidr(withLen, false);
  return `${formatAddress(c.family, c.base)}/${c.prefixLen}`;
}

function ranges(configs: readonly BGPConfiguration[]): Ranges {
  // Calico reads these from the cluster-wide `default` configuration only.
  const s = configs.find((c) => c.metadata.name === "default")?.spec as
    | {
        serviceClusterIPs?: { cidr: string }[];
        serviceExternalIPs?: { cidr: string }[];
        serviceLoadBalancerIPs?: { cidr: string }[];
      }
    | undefined;
  const list = (v: { cidr: string }[] | undefined) => (v ?? []).map((x) => canonicalCidr(x.cidr));
  return {
    clusterIPs: list(s?.serviceClusterIPs),
    externalIPs: list(s?.serviceExternalIPs),
    loadBalancerIPs: list(s?.serviceLoadBalancerIPs),
  };
}

/** The Kubernetes node name of a Calico Node (its k8s orchRef, else its own name). */
function kubeNodeName(nodes: readonly Node[], name: string): string {
  const n = nodes.find((x) => x.metadata.name === name);
  const refs = (n?.spec as { orchRefs?: { orchestrator?: string; nodeName?: string }[] })?.orchRefs;
  return refs?.find((r) => r.orchestrator === "k8s")?.nodeName ?? name;
}

const inside = (ip: string, cidrs: readonly string[]) =>
  cidrs.some((c) => {
    const a = parseAddress(ip);
    return cidrContains(parseCidr(c, false), a.family, a.value);
  });

/** Whether `node` holds a ready endpoint of the Service (any of its EndpointSlices). */
function hasLocalEndpoint(
  svc: K8sService,
  slices: readonly K8sEndpointSlice[],
  kubeNode: string,
): boolean {
  return slices.some(
    (s) =>
      s.metadata.namespace === svc.metadata.namespace &&
      s.metadata.labels?.[SERVICE_NAME_LABEL] === svc.metadata.name &&
      readyEndpoints(s).some((e) => e.nodeName === kubeNode),
  );
}

/** The Service's addresses of each kind (cluster, external, load-balancer). */
function serviceAddresses(svc: K8sService): Ranges {
  const s = svc.spec;
  const cluster = [...new Set([...(s.clusterIPs ?? []), ...(s.clusterIP ? [s.clusterIP] : [])])];
  const lb = [
    ...(s.loadBalancerIP ? [s.loadBalancerIP] : []),
    ...(svc.status?.loadBalancer?.ingress ?? []).flatMap((i) => (i.ip ? [i.ip] : [])),
  ];
  const ip = (a: string) => a !== "" && a !== "None";
  return {
    clusterIPs: cluster.filter(ip),
    externalIPs: s.externalIPs ?? [],
    loadBalancerIPs: [...new Set(lb)].filter(ip),
  };
}

/** What `node` announces for Services: the configured CIDRs, then Local Services' host routes. */
export function serviceAdvertisements(input: ServiceRouteInput, node: string): string[] {
  const r = ranges(input.bgpConfigurations);
  const out = new Set<string>([...r.clusterIPs, ...r.externalIPs, ...r.loadBalancerIPs]);
  const kubeNode = kubeNodeName(input.nodes, node);
  const slices = input.endpointSlices ?? [];
  for (const svc of input.services ?? []) {
    if (svc.spec.externalTrafficPolicy !== "Local") continue;
    if (!hasLocalEndpoint(svc, slices, kubeNode)) continue;
    const a = serviceAddresses(svc);
    for (const k of ["clusterIPs", "externalIPs", "loadBalancerIPs"] as const)
      for (const ip of a[k]) if (inside(ip, r[k])) out.add(canonicalCidr(ip));
  }
  return [...out].sort();
}
