// Service IP advertisement (pure), as Calico's confd computes it for BIRD (confd's
// client.go and routes.go): from the `default` BGPConfiguration, every node announces the
// serviceClusterIPs CIDRs, the serviceExternalIPs CIDRs and, while serviceLoadBalancerAggregation
// is Enabled (the default), the serviceLoadBalancerIPs CIDRs; single-address entries (/32, /128)
// are never announced as ranges. A Service (type ClusterIP, NodePort or LoadBalancer, with a
// cluster IP) is announced as host routes, /32 or /128, for its cluster IPs (when any cluster
// range is configured), its external IPs inside an external range and its status load-balancer
// IPs inside a load-balancer range, by:
//   - every node, when its externalTrafficPolicy is Cluster and it has a load-balancer IP (type
//     LoadBalancer) or an external IP that a single-address entry names;
//   - the nodes holding one of its ready endpoints (the EndpointSlices' `nodeName`, of the
//     Service's address family), when it is Local: the more specific route draws the traffic to
//     them and kube-proxy's Local policy keeps the client's address;
//   - every node, when it is not Local, aggregation is Disabled and it has a ready endpoint
//     anywhere (each load-balancer IP its own /32 instead of the range: withdrawn when the
//     Service loses its endpoints).
// A Node labelled node.kubernetes.io/exclude-from-external-load-balancers=true announces none
// of it. The ranges announced (and the ranges only, not the single addresses) are Calico's
// rejectcidrs: routes inside them are never programmed into the kernel, whoever announced them
// (serviceFibExclusions; BIRD's calico_kernel_programming filter), so a node does not route
// Service IPs to the node it learned them from; kube-proxy on each node handles them.
// internalTrafficPolicy plays no part (Calico's route generator does not read it either: it
// concerns traffic from inside the cluster, which kube-proxy steers). Services come from the
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
  /**
   * CALICO_ADVERTISE_CLUSTER_IPS: the cluster IP range, in place of the BGPConfiguration's
   * serviceClusterIPs (confd prefers the variable and then ignores the field).
   */
  advertiseClusterIps?: string;
}

type Ranges = { clusterIPs: string[]; externalIPs: string[]; loadBalancerIPs: string[] };

/** The label with which a node opts out of Service advertisement (Kubernetes' own). */
export const EXCLUDE_FROM_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers";

/** A CIDR with its host bits masked ("10.96.0.1/12" -> "10.96.0.0/12"; a bare IP a host route). */
function canonicalCidr(text: string): string {
  const withLen = text.includes("/") ? text : `${text}/${text.includes(":") ? 128 : 32}`;
  const c = parseCidr(withLen, false);
  return `${formatAddress(c.family, c.base)}/${c.prefixLen}`;
}

const isSingle = (cidr: string) => cidr.endsWith(cidr.includes(":") ? "/128" : "/32");

interface ServiceConfig extends Ranges {
  aggregate: boolean;
}

function serviceConfig(
  configs: readonly BGPConfiguration[],
  clusterIpsOverride?: string,
): ServiceConfig {
  // Calico reads these from the cluster-wide `default` configuration only.
  const s = configs.find((c) => c.metadata.name === "default")?.spec as
    | {
        serviceClusterIPs?: { cidr: string }[];
        serviceExternalIPs?: { cidr: string }[];
        serviceLoadBalancerIPs?: { cidr: string }[];
        serviceLoadBalancerAggregation?: "Enabled" | "Disabled";
      }
    | undefined;
  const list = (v: { cidr: string }[] | undefined) => (v ?? []).map((x) => canonicalCidr(x.cidr));
  return {
    clusterIPs: clusterIpsOverride
      ? [canonicalCidr(clusterIpsOverride)]
      : list(s?.serviceClusterIPs),
    externalIPs: list(s?.serviceExternalIPs),
    loadBalancerIPs: list(s?.serviceLoadBalancerIPs),
    aggregate: s?.serviceLoadBalancerAggregation !== "Disabled",
  };
}

/** The ranges every node announces (confd's global routes), which are also its rejectcidrs. */
function globalRanges(c: ServiceConfig): string[] {
  return [
    ...c.clusterIPs,
    ...c.externalIPs.filter((r) => !isSingle(r)),
    ...(c.aggregate ? c.loadBalancerIPs.filter((r) => !isSingle(r)) : []),
  ];
}

/**
 * The prefixes whose routes the node never programs into its kernel (Calico's rejectcidrs):
 * the Service ranges it announces; see the module comment.
 */
export function serviceFibExclusions(input: ServiceRouteInput): string[] {
  return [
    ...new Set(globalRanges(serviceConfig(input.bgpConfigurations, input.advertiseClusterIps))),
  ].sort();
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

const usable = (a: string | undefined): a is string => a !== undefined && a !== "" && a !== "None";

/** The Service's cluster IPs (spec.clusterIPs, else spec.clusterIP). */
function clusterIPsOf(svc: K8sService): string[] {
  const s = svc.spec;
  return [...new Set([...(s.clusterIPs ?? []), ...(s.clusterIP ? [s.clusterIP] : [])])].filter(
    usable,
  );
}

/** Whether confd's route generator advertises the Service from this node (advertiseThisService). */
function advertised(
  svc: K8sService,
  c: ServiceConfig,
  slices: readonly K8sEndpointSlice[],
  kubeNode: string,
): boolean {
  const s = svc.spec;
  const type = s.type ?? "ClusterIP";
  if (type !== "ClusterIP" && type !== "NodePort" && type !== "LoadBalancer") return false;
  if (!usable(s.clusterIP) && clusterIPsOf(svc).length === 0) return false;
  const singleIn = (ip: string | undefined, ranges: readonly string[]) =>
    usable(ip) && inside(ip, ranges.filter(isSingle));
  if (s.externalTrafficPolicy === "Cluster") {
    const lbIPs = [s.loadBalancerIP, ...(svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip)];
    if (type === "LoadBalancer" && lbIPs.some((ip) => singleIn(ip, c.loadBalancerIPs))) return true;
    if ((s.externalIPs ?? []).some((ip) => singleIn(ip, c.externalIPs))) return true;
  }
  const local = s.externalTrafficPolicy === "Local";
  if (!local && c.aggregate) return false;
  // The Service's ipFamilies (as confd's route generator), else its cluster IPs' families
  // (what Kubernetes sets them from; a Service stored before the field was kept).
  const families = new Set<string>(
    s.ipFamilies ?? clusterIPsOf(svc).map((ip) => (ip.includes(":") ? "IPv6" : "IPv4")),
  );
  return slices.some(
    (sl) =>
      sl.metadata.namespace === svc.metadata.namespace &&
      sl.metadata.labels?.[SERVICE_NAME_LABEL] === svc.metadata.name &&
      families.has(sl.addressType) &&
      readyEndpoints(sl).some((e) => !local || e.nodeName === kubeNode),
  );
}

/** The host routes of an advertised Service (getAllRoutesForService). */
function serviceRoutes(svc: K8sService, c: ServiceConfig): string[] {
  const lb = (svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip).filter(usable);
  return [
    ...(c.clusterIPs.length > 0 ? clusterIPsOf(svc) : []),
    ...(svc.spec.externalIPs ?? []).filter((ip) => inside(ip, c.externalIPs)),
    ...lb.filter((ip) => inside(ip, c.loadBalancerIPs)),
  ].map(canonicalCidr);
}

/** What `node` announces for Services: the configured ranges, then Services' host routes. */
export function serviceAdvertisements(input: ServiceRouteInput, node: string): string[] {
  const me = input.nodes.find((n) => n.metadata.name === node);
  if (me?.metadata.labels?.[EXCLUDE_FROM_LB_LABEL] === "true") return [];
  const c = serviceConfig(input.bgpConfigurations, input.advertiseClusterIps);
  const out = new Set<string>(globalRanges(c));
  const kubeNode = kubeNodeName(input.nodes, node);
  const slices = input.endpointSlices ?? [];
  for (const svc of input.services ?? [])
    if (advertised(svc, c, slices, kubeNode)) for (const r of serviceRoutes(svc, c)) out.add(r);
  return [...out].sort();
}
