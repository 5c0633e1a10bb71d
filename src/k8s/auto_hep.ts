// Calico's automatic host endpoints (kube-controllers' node controller with
// `controllers.node.hostEndpoint.autoCreate: Enabled`), pure: one HostEndpoint `<node>-auto-hep`
// per Calico Node, `interfaceName: "*"`, `expectedIPs` from the Node (BGP IPv4/IPv6 addresses
// without their prefix length, the IP-in-IP and VXLAN tunnel addresses, then the InternalIP
// addresses not already listed, in Calico's order), the Node's labels plus
// `projectcalico.org/created-by: calico-kube-controllers`, and the profile
// `projectcalico-default-allow` (so that a node with no host policy still allows everything).
// Updated when its labels, expectedIPs or interfaceName differ (Calico compares those three);
// every HostEndpoint carrying the created-by label whose Node is gone, or all of them when
// autoCreate is off, is deleted. Templates (`hostEndpoint.templates`) are not made (kcc.ts warns).
// Not: whether this runs (kcc.ts), the writes (controllers.ts), enforcement (src/felix).
import type { Resource } from "../api/registry.js";
import type { SyncAction } from "./sync.js";

export const AUTO_HEP_SUFFIX = "auto-hep";
export const HEP_CREATED_BY_LABEL = "projectcalico.org/created-by";
export const HEP_CREATED_BY_VALUE = "calico-kube-controllers";
/** The profile Calico provides that allows all traffic both ways (felix/policy.ts has it). */
export const DEFAULT_ALLOW_PROFILE = "projectcalico-default-allow";

const V3 = "projectcalico.org/v3";

interface NodeSpecLike {
  bgp?: { ipv4Address?: string; ipv6Address?: string; ipv4IPIPTunnelAddr?: string };
  ipv4VXLANTunnelAddr?: string;
  ipv6VXLANTunnelAddr?: string;
  addresses?: { address: string; type?: string }[];
}

/** The auto HostEndpoint's name for a Calico Node. */
export const autoHepName = (node: string) => `${node}-${AUTO_HEP_SUFFIX}`;

/** Whether kube-controllers made this HostEndpoint (Calico's created-by label). */
export function isAutoHostEndpoint(h: Resource): boolean {
  return h.metadata.labels?.[HEP_CREATED_BY_LABEL] === HEP_CREATED_BY_VALUE;
}

/** The Node's addresses for its auto HostEndpoint, as Calico lists them. */
export function autoHepExpectedIPs(node: Resource): string[] {
  const s = (node.spec ?? {}) as NodeSpecLike;
  const out: string[] = [];
  const seen = new Set<string>();
  const add = (ip: string | undefined) => {
    if (!ip) return;
    out.push(ip);
    seen.add(ip);
  };
  add(s.bgp?.ipv4Address?.split("/")[0]);
  add(s.bgp?.ipv6Address?.split("/")[0]);
  add(s.bgp?.ipv4IPIPTunnelAddr);
  add(s.ipv4VXLANTunnelAddr);
  add(s.ipv6VXLANTunnelAddr);
  for (const a of s.addresses ?? [])
    if (a.type === "InternalIP" && !seen.has(a.address.split("/")[0] as string))
      add(a.address.split("/")[0]);
  return out;
}

/** The auto HostEndpoint Calico would make for this Node. */
export function autoHostEndpoint(node: Resource): Resource {
  return {
    apiVersion: V3,
    kind: "HostEndpoint",
    metadata: {
      name: autoHepName(node.metadata.name),
      labels: { ...(node.metadata.labels ?? {}), [HEP_CREATED_BY_LABEL]: HEP_CREATED_BY_VALUE },
    },
    spec: {
      node: node.metadata.name,
      interfaceName: "*",
      expectedIPs: autoHepExpectedIPs(node),
      profiles: [DEFAULT_ALLOW_PROFILE],
    },
  } as Resource;
}

const sameLabels = (a: Record<string, string> = {}, b: Record<string, string> = {}) => {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
};

/**
 * The writes that bring the auto HostEndpoints in step with the Calico Nodes: with `enabled`,
 * one per Node (created, or updated when it differs); HostEndpoints made by kube-controllers
 * whose Node is gone, or every one of them when not enabled, deleted.
 */
export function planAutoHostEndpoints(
  calicoNodes: readonly Resource[],
  hostEndpoints: readonly Resource[],
  enabled: boolean,
): SyncAction[] {
  const actions: SyncAction[] = [];
  const heps = new Map(hostEndpoints.map((h) => [h.metadata.name, h]));
  const wanted = new Set<string>();
  if (enabled)
    for (const node of calicoNodes) {
      const want = autoHostEndpoint(node);
      const name = want.metadata.name;
      wanted.add(name);
      const have = heps.get(name);
      if (have === undefined) {
        actions.push({
          op: "put",
          resource: want,
          why: `auto host endpoint of node ${node.metadata.name}`,
        });
        continue;
      }
      const hs = have.spec as { expectedIPs?: string[]; interfaceName?: string };
      const ws = want.spec as { expectedIPs: string[]; interfaceName: string };
      if (
        sameLabels(have.metadata.labels, want.metadata.labels) &&
        JSON.stringify(hs.expectedIPs ?? []) === JSON.stringify(ws.expectedIPs) &&
        hs.interfaceName === ws.interfaceName
      )
        continue;
      // Calico's update writes the whole expected resource over the stored one (keeping its
      // resourceVersion, uid and creation time).
      const { resourceVersion, uid, creationTimestamp } = have.metadata;
      actions.push({
        op: "put",
        resource: {
          ...want,
          metadata: {
            ...want.metadata,
            ...(resourceVersion ? { resourceVersion } : {}),
            ...(uid ? { uid } : {}),
            ...(creationTimestamp ? { creationTimestamp } : {}),
          },
        } as Resource,
        why: `auto host endpoint of node ${node.metadata.name} (labels or addresses changed)`,
      });
    }
  for (const h of hostEndpoints)
    if (isAutoHostEndpoint(h) && !wanted.has(h.metadata.name))
      actions.push({
        op: "delete",
        apiVersion: V3,
        kind: "HostEndpoint",
        name: h.metadata.name,
        ...(h.metadata.resourceVersion ? { resourceVersion: h.metadata.resourceVersion } : {}),
        why: enabled
          ? `auto host endpoint of node ${(h.spec as { node?: string }).node ?? "?"}, which is gone`
          : "auto host endpoints are off (hostEndpoint.autoCreate)",
      });
  return actions;
}
