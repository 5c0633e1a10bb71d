// The node daemon's WireGuard (Felix's two wireguard managers and their status callback): at each
// agent pass, from the snapshot, brings each family's device, peers, table and rule to
// FelixConfiguration's wireguardEnabled / wireguardEnabledV6 (src/felix/wireguard.ts,
// wireguard_apply.ts) and publishes this node's public keys in its Node's
// status.wireguardPublicKey / wireguardPublicKeyV6 (compare-and-swap); a family turned off (or
// moved to another device or table) loses its rule, table routes and device and its key is
// cleared, as Felix does. The key files live beside the pods' MTU file (the node's state
// directory), one per family. With host encryption (wireguardHostEncryptionEnabled) it tells the
// daemon when a peer's host addresses wait for a handshake (the daemon looks again 3 s on) and
// warns about a strict rp_filter on the fabric interface.
// Not: the interface address (tunnel_addrs.ts allocates it once the key is published).
import { join } from "node:path";
import type { Node } from "../api/node.js";
import type { Datastore } from "../datastore/types.js";
import { effectiveFelixSpec } from "../felix/felix_config.js";
import type { HostLink } from "../felix/mtu.js";
import { hostMtuOf } from "../felix/mtu.js";
import type { FabricIface } from "../felix/overlay.js";
import type { OverlayRunner } from "../felix/overlay_apply.js";
import {
  renderWireguard,
  rpFilterWarning,
  type WireguardConfig,
  type WireguardInput,
  wireguardConfig,
} from "../felix/wireguard.js";
import { applyWireguard, readRpFilter, removeWireguard } from "../felix/wireguard_apply.js";
import { felixSettingsOf, type NodeSnapshot, overlayInputOf } from "./agent_state.js";
import { updateNode } from "./registration.js";

/** The node's Node fields of one family for WireGuard. */
function familyFields(n: Node, family: 4 | 6) {
  const v6 = family === 6;
  return {
    address: v6 ? n.spec.bgp?.ipv6Address : n.spec.bgp?.ipv4Address,
    publicKey: v6 ? n.status?.wireguardPublicKeyV6 : n.status?.wireguardPublicKey,
    interfaceAddress: v6
      ? n.spec.wireguard?.interfaceIPv6Address
      : n.spec.wireguard?.interfaceIPv4Address,
    hostAddresses: (n.spec.addresses ?? [])
      .map((x) => x.address)
      .filter((x) => x.includes(":") === v6),
  };
}

/** The renderer's input for node and config's family from the snapshot (pure). */
export function wireguardInputOf(
  snap: NodeSnapshot,
  node: string,
  config: WireguardConfig,
  publicKey: string,
  host: WireguardHost,
): WireguardInput {
  const o = overlayInputOf(snap, node, {});
  const felix = felixSettingsOf(snap, node);
  const fam = config.family;
  const hostMtu =
    (felix.mtuIfacePattern && host.hostLinks
      ? hostMtuOf(host.hostLinks, felix.mtuIfacePattern)
      : undefined) ??
    host.fabric?.[fam]?.mtu ??
    1500;
  const cfg = config.mtu === 0 && host.mtu !== undefined ? { ...config, mtu: host.mtu } : config;
  return {
    node,
    config: cfg,
    publicKey,
    nodes: snap.nodes.map((n) => {
      const f = familyFields(n, fam);
      return {
        name: n.metadata.name,
        ...(f.address ? { address: f.address } : {}),
        ...(f.publicKey ? { publicKey: f.publicKey } : {}),
        ...(f.interfaceAddress ? { interfaceAddress: f.interfaceAddress } : {}),
        ...(f.hostAddresses.length > 0 ? { hostAddresses: f.hostAddresses } : {}),
      };
    }),
    blocks: o.blocks,
    ...(o.workloads ? { workloads: o.workloads } : {}),
    hostMtu,
  };
}

/** The node's WireGuard settings of a family (FelixConfiguration `node.<name>` over `default`). */
export function wireguardConfigOf(snap: NodeSnapshot, node: string, family: 4 | 6 = 4) {
  return wireguardConfig(effectiveFelixSpec(snap.felixConfigurations ?? [], node), family);
}

export interface WireguardHost {
  fabric?: { 4?: FabricIface; 6?: FabricIface };
  hostLinks?: HostLink[];
  /** The --mtu override (pods' and tunnel devices'), when given. */
  mtu?: number;
}

export interface WireguardPass {
  /** The smallest MTU of the devices on (the pods' MTU must not exceed it). */
  mtu?: number;
  changes: string[];
  warnings: string[];
  /** The Node this pass wrote (its keys published or cleared). */
  node?: Node;
  /**
   * Host encryption: some peer's host addresses wait for a handshake (started by this pass); a
   * later pass routes them through the device once it completed.
   */
  awaitingHandshake: boolean;
}

/** Host encryption: how long after a pass that started handshakes the next one looks again. */
export const WIREGUARD_HANDSHAKE_RECHECK_MS = 3000;

export class WireguardAgent {
  /** Per family, the device and table last programmed (removed when it goes off or moves). */
  private programmed: Record<4 | 6, { device: string; table: number } | undefined> = {
    4: undefined,
    6: undefined,
  };
  /** The first pass also removes what a previous run left of a family that is off. */
  private first = true;

  constructor(
    private readonly o: {
      store: Datastore;
      nodename: string;
      netns?: string;
      run: OverlayRunner;
      /** The node's state directory (the key files'). */
      stateDir: string;
    },
  ) {}

  /** True while some family's device is programmed (block changes must reach it). */
  get active(): boolean {
    return this.programmed[4] !== undefined || this.programmed[6] !== undefined;
  }

  keyFile(family: 4 | 6 = 4): string {
    return join(this.o.stateDir, `wireguard${family === 6 ? "-v6" : ""}-${this.o.nodename}.key`);
  }

  async converge(snap: NodeSnapshot, host: WireguardHost): Promise<WireguardPass> {
    const ctx = { ...(this.o.netns ? { netns: this.o.netns } : {}), run: this.o.run };
    const changes: string[] = [];
    const warnings: string[] = [];
    const keys: Record<4 | 6, string | undefined> = { 4: undefined, 6: undefined };
    const mtus: number[] = [];
    let awaitingHandshake = false;
    for (const family of [4, 6] as const) {
      const { config, warnings: w } = wireguardConfigOf(snap, this.o.nodename, family);
      warnings.push(...w);
      const prev = this.programmed[family];
      const moved =
        prev &&
        (!config.enabled ||
          prev.device !== config.interfaceName ||
          prev.table !== config.routingTable);
      if (moved || (this.first && !config.enabled)) {
        const off = prev ?? { device: config.interfaceName, table: config.routingTable };
        changes.push(...(await removeWireguard(ctx, off.device, off.table, family)));
        this.programmed[family] = undefined;
      }
      if (!config.enabled) continue;
      const applied = await applyWireguard(ctx, {
        device: config.interfaceName,
        table: config.routingTable,
        family,
        keyFile: this.keyFile(family),
        render: (publicKey, handshakeAges) => {
          const s = renderWireguard({
            ...wireguardInputOf(snap, this.o.nodename, config, publicKey, host),
            handshakeAges,
          });
          warnings.push(...s.warnings);
          mtus.push(s.device.mtu);
          if (s.handshakeTargets.some((t) => t.awaited)) awaitingHandshake = true;
          return s;
        },
      });
      this.programmed[family] = { device: config.interfaceName, table: config.routingTable };
      const fabric = host.fabric?.[4]?.name;
      if (config.hostEncryption && family === 4 && fabric) {
        const w = rpFilterWarning(fabric, await readRpFilter(ctx, fabric));
        if (w) warnings.push(w);
      }
      keys[family] = applied.publicKey;
      changes.push(...applied.changes);
      if (applied.implementation)
        changes.push(`WireGuard device ${config.interfaceName} made by ${applied.implementation}`);
    }
    this.first = false;
    const me = snap.nodes.find((n) => n.metadata.name === this.o.nodename);
    const node =
      me &&
      (me.status?.wireguardPublicKey !== keys[4] || me.status?.wireguardPublicKeyV6 !== keys[6])
        ? await this.publish(keys)
        : undefined;
    return {
      ...(mtus.length > 0 ? { mtu: Math.min(...mtus) } : {}),
      changes,
      warnings,
      ...(node ? { node } : {}),
      awaitingHandshake,
    };
  }

  /** Writes (or clears) the Node's status.wireguardPublicKey and …V6, compare-and-swap. */
  private publish(keys: Record<4 | 6, string | undefined>): Promise<Node | undefined> {
    return updateNode(this.o.store, this.o.nodename, (current) => {
      const status = { ...(current.status ?? {}) };
      if (status.wireguardPublicKey === keys[4] && status.wireguardPublicKeyV6 === keys[6])
        return undefined;
      if (keys[4]) status.wireguardPublicKey = keys[4];
      else delete status.wireguardPublicKey;
      if (keys[6]) status.wireguardPublicKeyV6 = keys[6];
      else delete status.wireguardPublicKeyV6;
      const next: Node = { ...current, status };
      if (Object.keys(status).length === 0) delete next.status;
      return next;
    });
  }
}
