// Who may announce what inside the IP pools, for `ocelot node run`'s sessions to other Nodes
// (pure): the speaker's importOwnership of a peer that is a Node (a mesh peer, or a BGPPeer whose
// peerIP or peerSelector picks a Node). Inside the pools of the session's family the Node may
// announce its blocks (affinities in state confirmed, the ones Calico's confd and this node's
// render originate: a pending claim is not announced yet, a pendingDeletion one no longer) and
// host routes for the addresses its workloads hold outside its blocks (borrowed from another
// node's block) or its floating IPs (ipNATs, when its FelixConfiguration enables them): exactly
// what its own render announces, from the same WorkloadEndpoints (Calico's BIRD exports the
// /32 Felix routes to the pod, which Felix takes from the WorkloadEndpoint; IPAM blocks and their
// allocation attributes are not watched by the node daemon). Host routes inside its blocks pass
// too (harmless: traffic goes to the block's owner anyway). A Node that is a route reflector
// (routeReflectorClusterID) passes other nodes' routes on: no ownership toward it (its routes'
// owners are not the peer). LoadBalancer pools are left out (Service addresses, no node's).
// Results are memoised per node on the identity of its records (the daemon keeps a decoded
// record until it changes). Not: the check itself (src/bgp/policy/ownership.ts), the session
// config (bgp_state.ts), when it is recomputed (daemon.ts).
import ipaddr from "ipaddr.js";
import type { IPPool } from "../api/ippool.js";
import type { Node, WorkloadEndpoint } from "../api/node.js";
import type { BgpdConfig, Family } from "../bgp/config.js";
import type { ImportOwnership } from "../bgp/policy/ownership.js";
import { borrowedAddresses } from "../felix/overlay.js";
import { cidrOverlaps, formatCidr, parseCidr } from "../lib/ip.js";
import {
  floatingAddressesOf,
  type NodeSnapshot,
  nodeBlocks,
  workloadAddressesOf,
} from "./agent_state.js";

const addressOf = (cidr: string) => cidr.split("/")[0] as string;

const canonical = (address: string) =>
  address.includes(":") ? ipaddr.parse(address).toString() : address;

/**
 * Whether a pool's addresses are held by nodes (blocks affine to them: Workload or Tunnel use,
 * the default). A LoadBalancer pool's are Services', announced by the nodes the
 * BGPConfiguration's serviceLoadBalancerIPs pick: no node owns them.
 */
const nodesOwnBlocksOf = (p: IPPool) =>
  (p.spec.allowedUses ?? ["Workload", "Tunnel"]).some((u) => u === "Workload" || u === "Tunnel");

/** A CIDR as the speaker's config keys prefixes (host bits masked, canonical text). */
const prefixText = (cidr: string) => formatCidr(parseCidr(cidr, false));

/**
 * A snapshot's records by node, built once per snapshot (a render asks for every Node peer: one
 * pass over the WorkloadEndpoints and affinities, not one per peer), as the records themselves
 * (no parsing here).
 */
interface ByNode {
  weps: Map<string, WorkloadEndpoint[]>;
  affinities: Map<string, NodeSnapshot["affinities"]>;
  /** Each Node by its BGP addresses (IPv6 in RFC 5952 text). */
  nodes: Map<string, Node>;
}
const byNodeCache = new WeakMap<NodeSnapshot, ByNode>();

function byNode(snap: NodeSnapshot): ByNode {
  let b = byNodeCache.get(snap);
  if (b !== undefined) return b;
  b = { weps: new Map(), affinities: new Map(), nodes: new Map() };
  for (const n of snap.nodes) {
    const a = n.spec.bgp;
    if (a?.ipv4Address) b.nodes.set(addressOf(a.ipv4Address), n);
    if (a?.ipv6Address) b.nodes.set(canonical(addressOf(a.ipv6Address)), n);
  }
  for (const w of snap.workloadEndpoints) {
    const node = w.spec.node;
    if (!node) continue;
    const l = b.weps.get(node);
    if (l) l.push(w);
    else b.weps.set(node, [w]);
  }
  for (const a of snap.affinities) {
    const l = b.affinities.get(a.node);
    if (l) l.push(a);
    else b.affinities.set(a.node, [a]);
  }
  byNodeCache.set(snap, b);
  return b;
}

/**
 * The last ownership computed per node and family, with what it was computed from: the daemon
 * decodes each stored record once and keeps the object until the record changes, so records
 * compared by identity tell an unchanged node (most of them, on each pod added somewhere) without
 * parsing its addresses again. Bounded by the nodes seen.
 */
interface Memo {
  weps: readonly unknown[];
  affinities: readonly unknown[];
  pools: readonly unknown[];
  felix: readonly unknown[];
  out: ImportOwnership;
}
const memo = new Map<string, Memo>();

const sameItems = (a: readonly unknown[], b: readonly unknown[]) =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** What node may announce inside the pools of one family (see the module comment). */
export function nodeOwnership(snap: NodeSnapshot, node: string, fam: Family): ImportOwnership {
  const idx = byNode(snap);
  const weps = idx.weps.get(node) ?? [];
  const affinities = idx.affinities.get(node) ?? [];
  // Floating IPs depend on the FelixConfigurations; only a node with ipNATs reads them.
  const felix = weps.some((w) => (w.spec.ipNATs ?? []).length > 0)
    ? (snap.felixConfigurations ?? [])
    : [];
  const key = `${fam} ${node}`;
  const m = memo.get(key);
  if (
    m !== undefined &&
    sameItems(m.weps, weps) &&
    sameItems(m.affinities, affinities) &&
    sameItems(m.pools, snap.pools) &&
    sameItems(m.felix, felix)
  )
    return m.out;
  const out = computeOwnership(snap, node, fam, weps, affinities, felix.length > 0);
  memo.set(key, { weps, affinities, pools: snap.pools, felix, out });
  return out;
}

function computeOwnership(
  snap: NodeSnapshot,
  node: string,
  fam: Family,
  weps: readonly WorkloadEndpoint[],
  affinities: NodeSnapshot["affinities"],
  floating: boolean,
): ImportOwnership {
  const v6 = fam === "ipv6-unicast";
  const pools = snap.pools
    .filter((p) => p.spec.cidr.includes(":") === v6 && nodesOwnBlocksOf(p))
    .map((p) => parseCidr(p.spec.cidr, false));
  const blocks = nodeBlocks(affinities, node).filter((b) => b.includes(":") === v6);
  const hosts = borrowedAddresses(
    [
      ...workloadAddressesOf(weps),
      ...(floating ? floatingAddressesOf({ ...snap, workloadEndpoints: [...weps] }, node) : []),
    ],
    blocks.map((cidr) => ({ cidr, node })),
  )
    .map((b) => b.cidr)
    .filter((c) => c.includes(":") === v6)
    .filter((c) => pools.some((p) => cidrOverlaps(p, parseCidr(c, false))));
  return {
    within: [...new Set(pools.map(formatCidr))].sort(),
    accept: [...new Set([...blocks, ...hosts].map(prefixText))].sort(),
  };
}

/**
 * The importOwnership of a session to address: the Node's there (undefined when no Node has
 * that address, or when it is a route reflector).
 */
export function importOwnershipOf(
  snap: NodeSnapshot,
  address: string,
  fam: Family,
): ImportOwnership | undefined {
  const n = byNode(snap).nodes.get(canonical(address));
  if (n === undefined || n.spec.bgp?.routeReflectorClusterID !== undefined) return undefined;
  return nodeOwnership(snap, n.metadata.name, fam);
}

/**
 * The config with each peer's importOwnership recomputed from snap (the daemon's fast path when
 * block affinities change): only peers that have one (the render decides which peers are Nodes;
 * a Node joining, leaving or becoming a reflector is the full render's); the same object when
 * nothing changed.
 */
export function withImportOwnership(config: BgpdConfig, snap: NodeSnapshot): BgpdConfig {
  let changed = false;
  const peers = config.peers.map((p) => {
    if (p.importOwnership === undefined) return p;
    const fam: Family = p.address.includes(":") ? "ipv6-unicast" : "ipv4-unicast";
    const next = importOwnershipOf(snap, p.address, fam);
    if (next === undefined || JSON.stringify(next) === JSON.stringify(p.importOwnership)) return p;
    changed = true;
    return { ...p, importOwnership: next };
  });
  return changed ? { ...config, peers } : config;
}

/**
 * What node's own render announces inside the pools (its blocks, borrowed addresses and floating
 * IPs, both families) as one string: the daemon renders BGP again when it changes.
 */
export function ownAnnouncements(snap: NodeSnapshot, node: string): string {
  return JSON.stringify([
    nodeOwnership(snap, node, "ipv4-unicast").accept,
    nodeOwnership(snap, node, "ipv6-unicast").accept,
  ]);
}
