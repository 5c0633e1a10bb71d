// Calico's IPAM pod annotations, read at CNI ADD: `cni.projectcalico.org/ipv4pools` and
// `…/ipv6pools` (JSON lists of pool names or CIDRs, in place of the network's `ipam.ipv4_pools`
// / `ipv6_pools`), `…/ipAddrs` (JSON list of the addresses to assign, at most one per family)
// and `…/ipAddrsNoIpam` (the same, used as given without IPAM; the network must enable
// `feature_control.ip_addrs_no_ipam`, as Calico's). Pure: parses and checks, one error naming the
// annotation; what the CNI plugin does with it is src/cni's.
import { formatAddress, parseAddress } from "../lib/ip.js";

export const ANNOTATION_IPV4_POOLS = "cni.projectcalico.org/ipv4pools";
export const ANNOTATION_IPV6_POOLS = "cni.projectcalico.org/ipv6pools";
export const ANNOTATION_IP_ADDRS = "cni.projectcalico.org/ipAddrs";
export const ANNOTATION_IP_ADDRS_NO_IPAM = "cni.projectcalico.org/ipAddrsNoIpam";

/** A pod's IPAM requests from its annotations (absent ones left out). */
export interface PodIpam {
  ipv4Pools?: string[];
  ipv6Pools?: string[];
  /** Canonical addresses, at most one IPv4 and one IPv6. */
  ipAddrs?: { family: 4 | 6; address: string }[];
  ipAddrsNoIpam?: { family: 4 | 6; address: string }[];
}

/** An annotation that cannot be honoured: the message names it. */
export class PodAnnotationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PodAnnotationError";
  }
}

function jsonList(annotations: Record<string, string>, key: string): string[] | undefined {
  const text = annotations[key];
  if (text === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new PodAnnotationError(
      `Pod annotation ${key}: ${JSON.stringify(text.slice(0, 100))} is not JSON (a list such as ["a", "b"])`,
    );
  }
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string" && x.trim() !== ""))
    throw new PodAnnotationError(
      `Pod annotation ${key}: ${JSON.stringify(text.slice(0, 100))} is not a JSON list of non-empty strings`,
    );
  if (v.length === 0) throw new PodAnnotationError(`Pod annotation ${key}: the list is empty`);
  return v.map((x: string) => x.trim());
}

function addresses(annotations: Record<string, string>, key: string) {
  const list = jsonList(annotations, key);
  if (list === undefined) return undefined;
  const out: { family: 4 | 6; address: string }[] = [];
  for (const text of list) {
    let a: { family: 4 | 6; value: bigint };
    try {
      a = parseAddress(text);
    } catch {
      throw new PodAnnotationError(
        `Pod annotation ${key}: ${JSON.stringify(text)} is not an IP address`,
      );
    }
    if (out.some((o) => o.family === a.family))
      throw new PodAnnotationError(
        `Pod annotation ${key}: more than one IPv${a.family} address (a pod gets at most one per family)`,
      );
    out.push({ family: a.family, address: formatAddress(a.family, a.value) });
  }
  return out;
}

/** The pod's IPAM annotations, checked; throws PodAnnotationError naming the first bad one. */
export function podIpam(
  annotations: Record<string, string>,
  opts: { ipAddrsNoIpamEnabled: boolean },
): PodIpam {
  const out: PodIpam = {};
  const v4 = jsonList(annotations, ANNOTATION_IPV4_POOLS);
  const v6 = jsonList(annotations, ANNOTATION_IPV6_POOLS);
  const ips = addresses(annotations, ANNOTATION_IP_ADDRS);
  const noIpam = addresses(annotations, ANNOTATION_IP_ADDRS_NO_IPAM);
  if (ips && noIpam)
    throw new PodAnnotationError(
      `Pod annotations ${ANNOTATION_IP_ADDRS} and ${ANNOTATION_IP_ADDRS_NO_IPAM} cannot both be set`,
    );
  if (noIpam && !opts.ipAddrsNoIpamEnabled)
    throw new PodAnnotationError(
      `Pod annotation ${ANNOTATION_IP_ADDRS_NO_IPAM} needs "feature_control": {"ip_addrs_no_ipam": true} in the network configuration (as Calico's)`,
    );
  if (v4) out.ipv4Pools = v4;
  if (v6) out.ipv6Pools = v6;
  if (ips) out.ipAddrs = ips;
  if (noIpam) out.ipAddrsNoIpam = noIpam;
  return out;
}
