// The node daemon's WireGuard (Felix's wireguard manager and its status callback): at each agent
// pass, from the snapshot, brings the device, peers, table and rule to FelixConfiguration's
// wireguardEnabled (src/felix/wireguard.ts, wireguard_apply.ts) and publishes this node's public
// key in its Node's status.wireguardPublicKey (compare-and-swap); turned off (or moved to another
// device or table) it removes the rule, the table's routes and the device and clears the key, as
// Felix does. The key file lives beside the pods' MTU file (the node's state directory).
// Not: the interface address (tunnel_addrs.ts allocates it once the key is published).
import { join } from "node:path";
import { ResourceClient, ResourceError } from "../api/client.js";
import type { Node } from "../api/node.js";
import { kindOf, validateResource } from "../api/registry.js";
import type { Datastore } from "../datastore/types.js";
import { effectiveFelixSpec } from "../felix/felix_config.js";
import type { HostLink } from "../felix/mtu.js";
import { hostMtuOf } from "../felix/mtu.js";
import type { FabricIface } from "../felix/overlay.js";
import type { OverlayRunner } from "../felix/overlay_apply.js";
import {
  renderWireguard,
  type WireguardConfig,
  type WireguardInput,
  wireguardConfig,
} from "../felix/wireguard.js";
import { applyWireguard, removeWireguard } from "../felix/wireguard_apply.js";
import { felixSettingsOf, type NodeSnapshot, overlayInputOf } from "./agent_state.js";

/** The renderer's input for node from the snapshot (pure). */
export function wireguardInputOf(
  snap: NodeSnapshot,
  node: string,
  config: WireguardConfig,
  publicKey: string,
  host: { fabric?: { 4?: FabricIface; 6?: FabricIface }; hostLinks?: HostLink[]; mtu?: number },
): WireguardInput {
  const o = overlayInputOf(snap, node, {});
  const felix = felixSettingsOf(snap, node);
  const hostMtu =
    (felix.mtuIfacePattern && host.hostLinks
      ? hostMtuOf(host.hostLinks, felix.mtuIfacePattern)
      : undefined) ??
    host.fabric?.[4]?.mtu ??
    1500;
  const cfg = config.mtu === 0 && host.mtu !== undefined ? { ...config, mtu: host.mtu } : config;
  return {
    node,
    config: cfg,
    publicKey,
    nodes: snap.nodes.map((n) => ({
      name: n.metadata.name,
      ...(n.spec.bgp?.ipv4Address ? { ipv4Address: n.spec.bgp.ipv4Address } : {}),
      ...(n.status?.wireguardPublicKey ? { publicKey: n.status.wireguardPublicKey } : {}),
      ...(n.spec.wireguard?.interfaceIPv4Address
        ? { interfaceAddress: n.spec.wireguard.interfaceIPv4Address }
        : {}),
    })),
    blocks: o.blocks,
    ...(o.workloads ? { workloads: o.workloads } : {}),
    hostMtu,
  };
}

/** The node's WireGuard settings (FelixConfiguration `node.<name>` over `default`). */
export function wireguardConfigOf(snap: NodeSnapshot, node: string) {
  return wireguardConfig(effectiveFelixSpec(snap.felixConfigurations ?? [], node));
}

export interface WireguardPass {
  /** The device's MTU when WireGuard is on (the pods' MTU must not exceed it). */
  mtu?: number;
  changes: string[];
  warnings: string[];
  /** The Node this pass wrote (its key published or cleared). */
  node?: Node;
}

const MAX_ATTEMPTS = 10;

export class WireguardAgent {
  /** The device and table last programmed (removed when WireGuard goes off or moves). */
  private programmed: { device: string; table: number } | undefined;
  /** The first pass also removes what a previous run left when WireGuard is off. */
  private first = true;

  constructor(
    private readonly o: {
      store: Datastore;
      nodename: string;
      netns?: string;
      run: OverlayRunner;
      /** The node's state directory (the key file's). */
      stateDir: string;
    },
  ) {}

  get keyFile(): string {
    return join(this.o.stateDir, `wireguard-${this.o.nodename}.key`);
  }

  async converge(
    snap: NodeSnapshot,
    host: { fabric?: { 4?: FabricIface; 6?: FabricIface }; hostLinks?: HostLink[]; mtu?: number },
  ): Promise<WireguardPass> {
    const ctx = { ...(this.o.netns ? { netns: this.o.netns } : {}), run: this.o.run };
    const { config, warnings } = wireguardConfigOf(snap, this.o.nodename);
    const changes: string[] = [];
    const me = snap.nodes.find((n) => n.metadata.name === this.o.nodename);
    const prev = this.programmed;
    const moved =
      prev &&
      (!config.enabled ||
        prev.device !== config.interfaceName ||
        prev.table !== config.routingTable);
    if (moved || (this.first && !config.enabled)) {
      const off = prev ?? { device: config.interfaceName, table: config.routingTable };
      changes.push(...(await removeWireguard(ctx, off.device, off.table)));
      this.programmed = undefined;
    }
    this.first = false;
    if (!config.enabled) {
      const node = me?.status?.wireguardPublicKey ? await this.publish(undefined) : undefined;
      return { changes, warnings, ...(node ? { node } : {}) };
    }
    let mtu = 0;
    const applied = await applyWireguard(ctx, {
      device: config.interfaceName,
      table: config.routingTable,
      keyFile: this.keyFile,
      render: (publicKey) => {
        const s = renderWireguard(wireguardInputOf(snap, this.o.nodename, config, publicKey, host));
        warnings.push(...s.warnings);
        mtu = s.device.mtu;
        return s;
      },
    });
    this.programmed = { device: config.interfaceName, table: config.routingTable };
    changes.push(...applied.changes);
    if (applied.implementation)
      changes.push(`WireGuard device ${config.interfaceName} made by ${applied.implementation}`);
    const node =
      me && me.status?.wireguardPublicKey !== applied.publicKey
        ? await this.publish(applied.publicKey)
        : undefined;
    return { mtu, changes, warnings, ...(node ? { node } : {}) };
  }

  /** Writes (or clears) status.wireguardPublicKey on this node's Node, compare-and-swap. */
  private async publish(publicKey: string | undefined): Promise<Node | undefined> {
    const client = new ResourceClient(this.o.store);
    const info = kindOf("projectcalico.org/v3", "Node");
    if (!info) throw new Error("Kind Node is not registered");
    for (let attempt = 1; ; attempt++) {
      const current = (await client.get(info, this.o.nodename)) as unknown as Node | undefined;
      if (!current || current.status?.wireguardPublicKey === publicKey) return undefined;
      const status = { ...(current.status ?? {}) };
      if (publicKey) status.wireguardPublicKey = publicKey;
      else delete status.wireguardPublicKey;
      const next: Node = { ...current, status };
      if (Object.keys(status).length === 0) delete next.status;
      const v = validateResource(next);
      v.resource.metadata.resourceVersion = current.metadata.resourceVersion;
      try {
        return (await client.writeValidated("update", v)) as unknown as Node;
      } catch (err) {
        const retry =
          err instanceof ResourceError && (err.code === "Conflict" || err.code === "NotFound");
        if (!retry || attempt >= MAX_ATTEMPTS) throw err;
      }
    }
  }
}
