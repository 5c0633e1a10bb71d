// Calico's automatic host endpoints (kube-controllers' node controller with
// `controllers.node.hostEndpoint.autoCreate: Enabled`), pure: one HostEndpoint `<node>-auto-hep`
// per Calico Node, `interfaceName: "*"`, `expectedIPs` from the Node (BGP IPv4/IPv6 addresses
// without their prefix length, the IP-in-IP and VXLAN tunnel addresses, then the InternalIP
// addresses not already listed, in Calico's order), the Node's labels plus
// `projectcalico.org/created-by: calico-kube-controllers`, and the profile
// `projectcalico-default-allow` (so that a node with no host policy still allows everything).
// Updated when its labels, expectedIPs or interfaceName differ (Calico compares those three);
// Templates (`hostEndpoint.templates`): for each template whose nodeSelector picks the Node, one
// HostEndpoint `<node>-<generateName>-auto-hep` with the Node's addresses inside the template's
// interfaceCIDRs as expectedIPs (none inside: no endpoint), no interfaceName, the Node's labels
// under the template's, the template's annotations. A name above 253 characters is hashed as
// Calico does. Every HostEndpoint carrying the created-by label that no Node and template wants
// (its Node gone, a template changed or removed, autoCreate off) is deleted. A template's
// interfacePattern needs the Node's interface list, which Ocelot's Node does not have: kcc.ts
// warns and such a template makes nothing.
// Not: whether this runs (kcc.ts), the writes (controllers.ts), enforcement (src/felix).
import { createHash } from "node:crypto";
import type { Resource } from "../api/registry.js";
import { matchSelector, parseSelector } from "../api/selector.js";
import { cidrContains, parseAddress, parseCidr } from "../lib/ip.js";
import type { SyncAction } from "./sync.js";

/** One `controllers.node.hostEndpoint.templates` entry, checked (kcc.ts). */
export interface AutoHepTemplate {
  generateName: string;
  /** Calico selector over the Node's labels ("" or absent: every Node). */
  nodeSelector: string;
  interfaceCIDRs: string[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** What the auto host endpoints are: the default one per Node, and the templates'. */
export interface AutoHepPlan {
  defaultHostEndpoint: boolean;
  templates: readonly AutoHepTemplate[];
}

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

/** The longest resource name (a DNS-1123 subdomain). */
const MAX_NAME = 253;

/**
 * A name that fits: as it is up to 253 characters; else Calico's hashed form, the name's SHA-256
 * in unpadded base64url without "-", "_" and ".", lower case, then `-auto-hep`.
 */
export function fitName(name: string): string {
  if (name.length <= MAX_NAME) return name;
  const hash = createHash("sha256").update(name).digest("base64url").replace(/[-_.]/g, "");
  return `${hash}-${AUTO_HEP_SUFFIX}`.toLowerCase().slice(0, MAX_NAME);
}

/** The auto HostEndpoint's name for a Calico Node (a template's with its generateName). */
export const autoHepName = (node: string, template?: string) =>
  fitName(template ? `${node}-${template}-${AUTO_HEP_SUFFIX}` : `${node}-${AUTO_HEP_SUFFIX}`);

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

/** The Node's addresses inside a template's interfaceCIDRs, in the Node's order. */
export function templateExpectedIPs(node: Resource, cidrs: readonly string[]): string[] {
  const nets = cidrs.map((c) => parseCidr(c, false));
  return autoHepExpectedIPs(node).filter((ip) => {
    const a = parseAddress(ip);
    return nets.some((n) => cidrContains(n, a.family, a.value));
  });
}

/** The HostEndpoint a template makes for this Node, or undefined when it makes none. */
export function templateHostEndpoint(node: Resource, t: AutoHepTemplate): Resource | undefined {
  if (
    t.nodeSelector !== "" &&
    !matchSelector(parseSelector(t.nodeSelector), node.metadata.labels ?? {})
  )
    return undefined;
  const expectedIPs = templateExpectedIPs(node, t.interfaceCIDRs);
  if (expectedIPs.length === 0) return undefined;
  return {
    apiVersion: V3,
    kind: "HostEndpoint",
    metadata: {
      name: autoHepName(node.metadata.name, t.generateName),
      labels: {
        ...(node.metadata.labels ?? {}),
        ...t.labels,
        [HEP_CREATED_BY_LABEL]: HEP_CREATED_BY_VALUE,
      },
      ...(Object.keys(t.annotations).length > 0 ? { annotations: { ...t.annotations } } : {}),
    },
    spec: { node: node.metadata.name, expectedIPs, profiles: [DEFAULT_ALLOW_PROFILE] },
  } as Resource;
}

/** Every auto HostEndpoint a Node should have under the plan. */
export function wantedAutoHostEndpoints(node: Resource, plan: AutoHepPlan): Resource[] {
  const out: Resource[] = [];
  if (plan.defaultHostEndpoint) out.push(autoHostEndpoint(node));
  for (const t of plan.templates) {
    const h = templateHostEndpoint(node, t);
    if (h) out.push(h);
  }
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
 * The writes that bring the auto HostEndpoints in step with the Calico Nodes: those the plan
 * wants for each Node (`true`: the default one only; `false`: none) created, or updated when
 * they differ; HostEndpoints made by kube-controllers that nothing wants, deleted.
 */
export function planAutoHostEndpoints(
  calicoNodes: readonly Resource[],
  hostEndpoints: readonly Resource[],
  plan: AutoHepPlan | boolean,
): SyncAction[] {
  const p: AutoHepPlan =
    typeof plan === "boolean" ? { defaultHostEndpoint: plan, templates: [] } : plan;
  const enabled = p.defaultHostEndpoint || p.templates.length > 0;
  const actions: SyncAction[] = [];
  const heps = new Map(hostEndpoints.map((h) => [h.metadata.name, h]));
  const wanted = new Set<string>();
  for (const node of enabled ? calicoNodes : [])
    for (const want of wantedAutoHostEndpoints(node, p)) {
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
      const ws = want.spec as { expectedIPs: string[]; interfaceName?: string };
      const annotations = (r: Resource) =>
        (r.metadata as { annotations?: Record<string, string> }).annotations;
      if (
        sameLabels(have.metadata.labels, want.metadata.labels) &&
        sameLabels(annotations(have), annotations(want)) &&
        JSON.stringify(hs.expectedIPs ?? []) === JSON.stringify(ws.expectedIPs) &&
        (hs.interfaceName ?? "") === (ws.interfaceName ?? "")
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
          ? `auto host endpoint of node ${(h.spec as { node?: string }).node ?? "?"} that nothing wants (the Node is gone, or no default or template makes it)`
          : "auto host endpoints are off (hostEndpoint.autoCreate)",
      });
  return actions;
}
