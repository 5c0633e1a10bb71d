// The node's BGP speaker configuration, rendered from datastore resources (pure), as Calico's
// confd renders BIRD's: the `default` BGPConfiguration (AS, node-to-node mesh, listen port), the
// Node resources (a full iBGP mesh to every other node's ipv4Address, and to its ipv6Address when
// this node has one too), the BGPPeers that pick this node (global, `node`, or `nodeSelector`; a
// peer by `peerIP` or by `peerSelector` over Nodes), and this node's confirmed blocks as
// originations (not those of pools with disableBGPExport). Dual stack as Calico's bird/bird6:
// an IPv4 session carries IPv4 unicast only, an IPv6 session IPv6 unicast only, sourced from
// this node's address of that family (so its next hop is that address); the router ID stays
// the IPv4 address. Not: running the speaker (daemon.ts) or the config schema (src/bgp/config.ts).
import ipaddr from "ipaddr.js";
import {
  type BGPConfiguration,
  type BGPPeer,
  DEFAULT_AS_NUMBER,
  effectiveBgpConfiguration,
} from "../api/bgp.js";
import { parseDurationMs, parseIpPort } from "../api/fields.js";
import type { IPPool } from "../api/ippool.js";
import type { Node } from "../api/node.js";
import { matchSelector, parseSelector } from "../api/selector.js";
import type { BgpdConfig, Family, PeerConfig } from "../bgp/config.js";
import { parseConfig } from "../bgp/config.js";
import { cidrOverlaps, parseCidr } from "../ipam/cidr.js";
import { type NodeSnapshot, nodeBlocks } from "./agent_state.js";

export interface BgpSnapshot extends NodeSnapshot {
  bgpConfigurations: BGPConfiguration[];
  bgpPeers: BGPPeer[];
}

export interface BgpOptions {
  /** The status socket of the speaker (`ocelot status --socket`). */
  statusSocket: string;
  /** Seconds the FIB keeps learned routes over a restart (default 120). */
  gracefulRestartTime?: number;
  /** Hold time of mesh sessions (default 90 s). */
  meshHoldTime?: number;
}

/** Either the speaker's config, or why this node runs no BGP; plus what was not applied. */
export type BgpRender =
  | { config: BgpdConfig; warnings: string[] }
  | { config: undefined; reason: string; warnings: string[] };

const addressOf = (cidr: string) => cidr.split("/")[0] as string;

/** An IPv6 address as the speaker's config keys peers (RFC 5952 text). */
const canonical6 = (address: string) => ipaddr.parse(address).toString();

/** The one family a session of an address's family carries (Calico: bird v4, bird6 v6). */
const familyOf = (address: string): Family =>
  address.includes(":") ? "ipv6-unicast" : "ipv4-unicast";

/** BGPPeer fields the daemon does not turn into session settings yet. */
const UNAPPLIED_PEER_FIELDS = [
  "password",
  "filters",
  "ttlSecurity",
  "maxRestartTime",
  "reversePeering",
  "nextHopMode",
  "keepOriginalNextHop",
  "localASNumber",
] as const;

function selects(selector: string | undefined, labels: Record<string, string>): boolean {
  return selector === undefined || matchSelector(parseSelector(selector), labels);
}

/** Whether a BGPPeer applies to the node (global when it names no node and no selector). */
export function peerAppliesTo(peer: BGPPeer, node: Node): boolean {
  const s = peer.spec;
  if (s.node !== undefined) return s.node === node.metadata.name;
  if (s.nodeSelector !== undefined)
    return matchSelector(parseSelector(s.nodeSelector), node.metadata.labels ?? {});
  return true;
}

/** The speaker's config for node `name`; see the module comment. */
export function renderBgp(snap: BgpSnapshot, name: string, opts: BgpOptions): BgpRender {
  const warnings: string[] = [];
  const me = snap.nodes.find((n) => n.metadata.name === name);
  if (!me) return { config: undefined, reason: `no Node resource "${name}"`, warnings };
  const myAddr = me.spec.bgp?.ipv4Address;
  if (!myAddr)
    return { config: undefined, reason: `Node "${name}" has no spec.bgp.ipv4Address`, warnings };
  const global = effectiveBgpConfiguration(
    snap.bgpConfigurations.find((c) => c.metadata.name === "default"),
    snap.bgpConfigurations.find((c) => c.metadata.name === `node.${name}`),
  );
  const asOf = (n: Node) => n.spec.bgp?.asNumber ?? global.asNumber ?? DEFAULT_AS_NUMBER;
  const myAs = asOf(me);
  const routerId = addressOf(myAddr);
  /** This node's address of each family: the source of its sessions of that family. */
  const mine: Record<4 | 6, string | undefined> = {
    4: routerId,
    6: me.spec.bgp?.ipv6Address ? canonical6(addressOf(me.spec.bgp.ipv6Address)) : undefined,
  };
  const myCluster = me.spec.bgp?.routeReflectorClusterID;
  const peers = new Map<string, PeerConfig>();
  const add = (p: Partial<PeerConfig> & { address: string; asn: number }) => {
    if (p.address === mine[4] || p.address === mine[6]) return; // never peer with ourselves
    peers.set(p.address, {
      port: 179,
      passive: false,
      holdTime: opts.meshHoldTime ?? 90,
      connectRetryTime: 5,
      families: [familyOf(p.address)],
      requiredFamilies: [],
      allowOwnAs: 0,
      routeReflectorClient: false,
      ...p,
    });
  };
  /**
   * Sessions to another Node: one per family both ends have an address of (IPv6 sourced from
   * ours, as Calico's mesh); to a route-reflector client when we reflect and it does not.
   * `source`: IPv4 sessions sourced too (a BGPPeer's sourceAddress UseNodeIP).
   */
  const nodePeer = (n: Node, extra: Partial<PeerConfig> = {}, source = false) => {
    if (n.metadata.name === name) return;
    const theirCluster = n.spec.bgp?.routeReflectorClusterID;
    for (const fam of [4, 6] as const) {
      const addr = fam === 4 ? n.spec.bgp?.ipv4Address : n.spec.bgp?.ipv6Address;
      const src = mine[fam];
      if (!addr || !src) continue;
      add({
        address: fam === 6 ? canonical6(addressOf(addr)) : addressOf(addr),
        asn: asOf(n),
        port: global.listenPort,
        routeReflectorClient: myCluster !== undefined && theirCluster !== myCluster,
        ...(fam === 6 || source ? { sourceAddress: src } : {}),
        ...extra,
      });
    }
  };

  if (global.nodeToNodeMeshEnabled) {
    // Every node meshes with every other over each family both have an address of (reflectors
    // among themselves as non-clients, as in Calico).
    for (const n of snap.nodes) nodePeer(n);
  }

  for (const peer of [...snap.bgpPeers].sort((a, b) =>
    a.metadata.name < b.metadata.name ? -1 : 1,
  )) {
    let applies: boolean;
    try {
      applies = peerAppliesTo(peer, me);
    } catch (err) {
      warnings.push(`BGPPeer "${peer.metadata.name}": ${(err as Error).message}; skipped`);
      continue;
    }
    if (!applies) continue;
    const s = peer.spec;
    const unapplied = UNAPPLIED_PEER_FIELDS.filter((f) => s[f] !== undefined);
    if (unapplied.length > 0)
      warnings.push(
        `BGPPeer "${peer.metadata.name}": ${unapplied.map((f) => `spec.${f}`).join(", ")} not applied yet`,
      );
    const extra: Partial<PeerConfig> = {};
    if (s.keepaliveTime !== undefined) {
      const ms = parseDurationMs(s.keepaliveTime) ?? 30_000;
      extra.holdTime = Math.min(65535, Math.max(3, Math.round((ms / 1000) * 3)));
    }
    if (s.numAllowedLocalASNumbers !== undefined) extra.allowOwnAs = s.numAllowedLocalASNumbers;
    const useNodeIp = s.sourceAddress !== "None";
    if (s.peerSelector !== undefined) {
      for (const n of snap.nodes) {
        let picked: boolean;
        try {
          picked = selects(s.peerSelector, n.metadata.labels ?? {});
        } catch (err) {
          warnings.push(`BGPPeer "${peer.metadata.name}": ${(err as Error).message}; skipped`);
          break;
        }
        if (picked) nodePeer(n, extra, useNodeIp);
      }
      continue;
    }
    const ip = s.peerIP === undefined ? undefined : parseIpPort(s.peerIP);
    if (!ip || s.asNumber === undefined) continue; // the schema requires both; defensive
    const src = mine[ip.family];
    if (src === undefined) {
      warnings.push(
        `BGPPeer "${peer.metadata.name}": IPv6 peer ${s.peerIP} skipped: Node "${name}" has no spec.bgp.ipv6Address`,
      );
      continue;
    }
    const address = ip.family === 6 ? canonical6(ip.address) : ip.address;
    add({
      address,
      asn: s.asNumber,
      port: ip.port ?? 179,
      ...(useNodeIp ? { sourceAddress: src } : {}),
      ...extra,
    });
  }

  const noExport = snap.pools
    .filter((p: IPPool) => p.spec.disableBGPExport === true)
    .map((p) => parseCidr(p.spec.cidr, false));
  const blocks = nodeBlocks(snap.affinities, name).filter(
    (b) => !noExport.some((p) => cidrOverlaps(p, parseCidr(b, false))),
  );

  const doc = {
    asn: myAs,
    routerId,
    // Dual-stack when this node has an IPv6 address (IPv4 peers arrive IPv4-mapped).
    listen: { address: mine[6] ? "::" : "0.0.0.0", port: global.listenPort },
    ...(myCluster ? { clusterId: myCluster } : {}),
    peers: [...peers.values()].sort((a, b) => (a.address < b.address ? -1 : 1)),
    originate: blocks.map((prefix) => ({ prefix })),
    fib: {
      enabled: true,
      table: "main",
      protocol: 201,
      gracefulRestartTime: opts.gracefulRestartTime ?? 120,
    },
    status: { socket: opts.statusSocket },
  };
  // The same validation as a bgpd file: a value out of its range is named, not half applied.
  return { config: parseConfig(doc), warnings };
}
