// How a pod is wired to its node, as the CNI plugin builds it and the agent renders and checks
// it (Calico's conventions): the host-side interface name of a workload, the MAC every host-side
// veth carries and the pods' IPv4 gateway answered by proxy ARP. Below both cni/ and felix/.
// Owns: these conventions. Not: creating interfaces (cni/), routes and sysctls (felix/).
import { createHash } from "node:crypto";

/** Prefix of host-side workload interfaces (Calico's `cali`, DESIGN.md §5). */
export const WORKLOAD_IFACE_PREFIX = "ocl";
/** Hex characters of the hash after the prefix: 3 + 11 = 15 = IFNAMSIZ - 1. */
const IFACE_HASH_CHARS = 11;
/** The MAC of every host-side veth, so a pod's neighbour entry survives a veth re-creation. */
export const WORKLOAD_HOST_MAC = "ee:ee:ee:ee:ee:ee";
/** The pods' default gateway, answered by proxy ARP on the host side. */
export const WORKLOAD_GATEWAY_V4 = "169.254.1.1";
/** Linux interface names are at most IFNAMSIZ - 1 characters. */
export const IFNAMSIZ = 16;

/** `ocl` + 11 hex chars of SHA-1 of the workload id (Calico's VethNameForWorkload shape). */
export function workloadIfaceName(id: string): string {
  if (id === "") throw new Error("Workload id is empty");
  const hex = createHash("sha1").update(id).digest("hex").slice(0, IFACE_HASH_CHARS);
  return `${WORKLOAD_IFACE_PREFIX}${hex}`;
}
