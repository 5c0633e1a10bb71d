// Rule `services` matches (Calico's ServiceMatch), rendered as Felix does (pure): the Service's
// endpoints, from its EndpointSlices, become an ipset. As a source: a `hash:net` set of the
// endpoint addresses (`-m set --match-set <set> src`). As a destination: a `hash:ip,port` set of
// address,protocol:port for every endpoint address and every port of its slice (the endpoint
// ports, after kube-proxy's DNAT), matched `dst,dst`, so the rule takes no ports of its own.
// The set's name comes from the Service's namespace/name and the side only, so an endpoint
// change rewrites the set's members in place and no chain. A Service with no endpoints yields an
// empty set (the rule matches nothing). Not: the rest of a rule (policy.ts), where the slices
// come from (src/node/agent_state.ts).
import { createHash } from "node:crypto";
import type { Family, IpsetSpec } from "./iptables.js";

/** One endpoint group of a Service as policy sees it (an EndpointSlice, reduced). */
export interface PolicyServiceSlice {
  /** The Service's namespace and name (`kubernetes.io/service-name`). */
  namespace: string;
  service: string;
  /** Every endpoint address of the slice (bare addresses). */
  addresses: string[];
  /** The slice's ports; protocol TCP when absent (as Kubernetes defaults it). */
  ports: { protocol?: string; port?: number }[];
}

const SERVICE_PROTOCOLS: Record<string, string> = { TCP: "tcp", UDP: "udp", SCTP: "sctp" };

/** `ocl-v-<hash>` / `ocl6-v-<hash>`: one Service on one side of a rule. */
export function serviceIpsetName(
  family: Family,
  namespace: string,
  name: string,
  side: "source" | "destination",
): string {
  const hash = createHash("sha256")
    .update(`${namespace}/${name}/${side}`)
    .digest("base64")
    .replace(/[^A-Za-z0-9]/g, "")
    .slice(0, 20);
  return `${family === 4 ? "ocl" : "ocl6"}-v-${hash}`;
}

const familyOf = (a: string): Family => (a.includes(":") ? 6 : 4);

/** The ipset of a Service on one rule side, in one family; members sorted and unique. */
export function serviceIpset(
  slices: readonly PolicyServiceSlice[],
  family: Family,
  namespace: string,
  name: string,
  side: "source" | "destination",
): IpsetSpec {
  const members = new Set<string>();
  for (const s of slices) {
    if (s.namespace !== namespace || s.service !== name) continue;
    for (const raw of s.addresses) {
      const a = raw.split("/")[0] as string;
      if (familyOf(a) !== family) continue;
      if (side === "source") {
        members.add(`${a}/${family === 4 ? 32 : 128}`);
        continue;
      }
      for (const p of s.ports) {
        const proto = SERVICE_PROTOCOLS[(p.protocol ?? "TCP").toUpperCase()];
        if (proto === undefined || p.port === undefined) continue;
        members.add(`${a},${proto}:${p.port}`);
      }
    }
  }
  return {
    name: serviceIpsetName(family, namespace, name, side),
    type: side === "source" ? "hash:net" : "hash:ip,port",
    family: family === 4 ? "inet" : "inet6",
    members: [...members].sort(),
  };
}

/** The iptables match of a Service set on one rule side. */
export function serviceSetMatch(set: IpsetSpec, side: "source" | "destination"): string {
  return `-m set --match-set ${set.name} ${side === "source" ? "src" : "dst,dst"}`;
}
