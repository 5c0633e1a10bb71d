// This node's tunnel addresses, as Calico's calico-node allocates them: one per encapsulation in
// use (IP-in-IP, VXLAN over IPv4, VXLAN over IPv6), assigned by IPAM from the pools of that
// encapsulation that allow `Tunnel` and select this node, under Calico's handles
// (`ipip-tunnel-addr-<node>`, `vxlan-tunnel-addr-<node>`, `vxlan-v6-tunnel-addr-<node>`), and
// written to the Node as `spec.bgp.ipv4IPIPTunnelAddr`, `spec.ipv4VXLANTunnelAddr` +
// `vxlanTunnelMACAddr`, `spec.ipv6VXLANTunnelAddr` + `vxlanTunnelMACAddrV6` (compare-and-swap);
// and the WireGuard interfaces' (`wireguard-tunnel-addr-<node>`, `spec.wireguard.
// interfaceIPv4Address`; `wireguard-v6-tunnel-addr-<node>`, `…interfaceIPv6Address`) from any
// enabled pool of the family that allows `Tunnel` and selects the node, once the node has
// published its WireGuard public key of that family (calico-node's rule);
// released and removed when no pool needs them any more. The VTEP MAC is derived from the node
// name (locally administered), so it never changes. Owns: the plan (pure) and its bounded
// application. Not: the devices (src/felix/overlay.ts).
import { createHash } from "node:crypto";
import type { IPPool } from "../api/ippool.js";
import type { Node } from "../api/node.js";
import { matchSelector, parseSelector } from "../api/selector.js";
import type { Datastore } from "../datastore/types.js";
import { IpamStore } from "../ipam/store.js";
import { cidrContains, parseAddress, parseCidr } from "../lib/ip.js";
import { updateNode } from "./registration.js";

export type TunnelKind = "ipip" | "vxlan" | "vxlan-v6" | "wireguard" | "wireguard-v6";
export const TUNNEL_KINDS: readonly TunnelKind[] = [
  "ipip",
  "vxlan",
  "vxlan-v6",
  "wireguard",
  "wireguard-v6",
];
const isWireguard = (k: TunnelKind) => k === "wireguard" || k === "wireguard-v6";

/** Calico's IPAM handle of a node's tunnel address. */
export function tunnelHandle(kind: TunnelKind, node: string): string {
  return `${kind}-tunnel-addr-${node}`;
}

/** Calico's allocation attribute `type` per kind. */
const ATTR_TYPE: Record<TunnelKind, string> = {
  ipip: "ipipTunnelAddress",
  vxlan: "vxlanTunnelAddress",
  "vxlan-v6": "vxlanV6TunnelAddress",
  wireguard: "wireguardTunnelAddress",
  "wireguard-v6": "wireguardV6TunnelAddress",
};

const familyOf = (k: TunnelKind): 4 | 6 => (k === "vxlan-v6" || k === "wireguard-v6" ? 6 : 4);

/** The node's VTEP MAC for a family: locally administered, unicast, from the node name. */
export function tunnelMac(node: string, family: 4 | 6): string {
  const b = createHash("sha256").update(`ocelot-vtep/${family}/${node}`).digest();
  b[0] = ((b[0] as number) & 0xfe) | 0x02;
  return [...b.subarray(0, 6)].map((x) => x.toString(16).padStart(2, "0")).join(":");
}

/** The tunnel address and MAC a Node carries for kind (undefined: none). */
export function tunnelOf(
  n: Node | undefined,
  kind: TunnelKind,
): { address: string; mac?: string } | undefined {
  const s = n?.spec;
  if (!s) return undefined;
  if (kind === "ipip")
    return s.bgp?.ipv4IPIPTunnelAddr ? { address: s.bgp.ipv4IPIPTunnelAddr } : undefined;
  if (kind === "wireguard")
    return s.wireguard?.interfaceIPv4Address
      ? { address: s.wireguard.interfaceIPv4Address }
      : undefined;
  if (kind === "wireguard-v6")
    return s.wireguard?.interfaceIPv6Address
      ? { address: s.wireguard.interfaceIPv6Address }
      : undefined;
  if (kind === "vxlan")
    return s.ipv4VXLANTunnelAddr
      ? {
          address: s.ipv4VXLANTunnelAddr,
          ...(s.vxlanTunnelMACAddr ? { mac: s.vxlanTunnelMACAddr } : {}),
        }
      : undefined;
  return s.ipv6VXLANTunnelAddr
    ? {
        address: s.ipv6VXLANTunnelAddr,
        ...(s.vxlanTunnelMACAddrV6 ? { mac: s.vxlanTunnelMACAddrV6 } : {}),
      }
    : undefined;
}

/**
 * Per kind, the pools (names) the node's tunnel address comes from; absent: no address wanted.
 * A pool counts when it is enabled, of the kind's family, in that encapsulation (Always or
 * CrossSubnet), allows Tunnel use and selects the node; and the node has a fabric address of
 * the family (a tunnel needs an underlay).
 */
export function tunnelNeeds(
  pools: readonly IPPool[],
  node: Node,
): Partial<Record<TunnelKind, string[]>> {
  const out: Partial<Record<TunnelKind, string[]>> = {};
  const labels = node.metadata.labels ?? {};
  for (const kind of TUNNEL_KINDS) {
    const family = familyOf(kind);
    const fabric = family === 4 ? node.spec.bgp?.ipv4Address : node.spec.bgp?.ipv6Address;
    // WireGuard: only once the node runs it (its public key published), in any pool's mode.
    const wireguard = isWireguard(kind);
    const key = family === 4 ? node.status?.wireguardPublicKey : node.status?.wireguardPublicKeyV6;
    if (wireguard ? !key : !fabric) continue;
    const names = pools
      .filter((p) => {
        const s = p.spec;
        const mode = kind === "ipip" ? s.ipipMode : s.vxlanMode;
        if (!wireguard && mode !== "Always" && mode !== "CrossSubnet") return false;
        if (s.disabled === true || parseCidr(s.cidr, false).family !== family) return false;
        if (!(s.allowedUses ?? ["Workload", "Tunnel"]).includes("Tunnel")) return false;
        try {
          return matchSelector(parseSelector(s.nodeSelector ?? "all()"), labels);
        } catch {
          return false;
        }
      })
      .map((p) => p.metadata.name)
      .sort();
    if (names.length > 0) out[kind] = names;
  }
  return out;
}

/** What to do per kind: keep, assign (from pools), or release. */
export type TunnelStep =
  | { kind: TunnelKind; op: "keep" }
  | { kind: TunnelKind; op: "assign"; pools: string[]; releaseFirst: boolean }
  | { kind: TunnelKind; op: "release" };

/** The steps that bring the Node's tunnel fields to the needs (pure). */
export function planTunnels(pools: readonly IPPool[], node: Node): TunnelStep[] {
  const needs = tunnelNeeds(pools, node);
  const steps: TunnelStep[] = [];
  for (const kind of TUNNEL_KINDS) {
    const want = needs[kind];
    const have = tunnelOf(node, kind);
    if (!want) {
      if (have) steps.push({ kind, op: "release" });
      continue;
    }
    const inPool =
      have !== undefined &&
      pools.some((p) => {
        if (!want.includes(p.metadata.name)) return false;
        const a = parseAddress(have.address);
        return cidrContains(parseCidr(p.spec.cidr, false), a.family, a.value);
      });
    const macOk =
      kind === "ipip" ||
      isWireguard(kind) ||
      have?.mac === tunnelMac(node.metadata.name, familyOf(kind));
    if (have && inPool && macOk) steps.push({ kind, op: "keep" });
    else
      steps.push({ kind, op: "assign", pools: want, releaseFirst: have !== undefined && !inPool });
  }
  return steps;
}

/** The Node with kind's fields set to address (and the MAC), or removed (address undefined). */
export function withTunnel(n: Node, kind: TunnelKind, address: string | undefined): Node {
  const spec = { ...n.spec };
  const bgp = { ...(spec.bgp ?? {}) };
  const mac =
    kind === "ipip" || isWireguard(kind) ? undefined : tunnelMac(n.metadata.name, familyOf(kind));
  if (isWireguard(kind)) {
    const wg = { ...(spec.wireguard ?? {}) };
    const field = kind === "wireguard" ? "interfaceIPv4Address" : "interfaceIPv6Address";
    if (address) wg[field] = address;
    else delete wg[field];
    if (Object.keys(wg).length > 0) spec.wireguard = wg;
    else delete spec.wireguard;
  } else if (kind === "ipip") {
    if (address) bgp.ipv4IPIPTunnelAddr = address;
    else delete bgp.ipv4IPIPTunnelAddr;
    spec.bgp = bgp;
  } else if (kind === "vxlan") {
    if (address) Object.assign(spec, { ipv4VXLANTunnelAddr: address, vxlanTunnelMACAddr: mac });
    else {
      delete spec.ipv4VXLANTunnelAddr;
      delete spec.vxlanTunnelMACAddr;
    }
  } else if (address)
    Object.assign(spec, { ipv6VXLANTunnelAddr: address, vxlanTunnelMACAddrV6: mac });
  else {
    delete spec.ipv6VXLANTunnelAddr;
    delete spec.vxlanTunnelMACAddrV6;
  }
  return { ...n, spec };
}

/**
 * Applies the plan for node: assigns (IPAM, idempotent per handle) or releases, then writes the
 * Node at the revision read (re-reading and re-planning when someone else wrote it). Returns the
 * stored Node when it changed, undefined when nothing had to. A pool with no free address
 * throws (the caller retries later); nothing is half applied on the Node.
 */
export async function ensureTunnelAddresses(
  store: Datastore,
  nodeName: string,
  pools: readonly IPPool[],
  ipam: IpamStore = new IpamStore(store),
): Promise<Node | undefined> {
  return updateNode(store, nodeName, async (current) => {
    const steps = planTunnels(pools, current).filter((s) => s.op !== "keep");
    if (steps.length === 0) return undefined;
    let next = current;
    for (const s of steps) {
      const handleId = tunnelHandle(s.kind, nodeName);
      if (s.op === "release" || (s.op === "assign" && s.releaseFirst))
        await ipam.releaseByHandle(handleId, nodeName);
      if (s.op === "release") {
        next = withTunnel(next, s.kind, undefined);
        continue;
      }
      const v6 = familyOf(s.kind) === 6;
      const [got] = await ipam.autoAssign({
        handleId,
        node: nodeName,
        num4: v6 ? 0 : 1,
        num6: v6 ? 1 : 0,
        ...(v6 ? { pools6: s.pools } : { pools4: s.pools }),
        use: "Tunnel",
        attrs: { type: ATTR_TYPE[s.kind] },
      });
      if (!got) throw new Error(`IPAM returned no ${s.kind} tunnel address for "${nodeName}"`);
      next = withTunnel(next, s.kind, got.address);
    }
    return next;
  });
}
