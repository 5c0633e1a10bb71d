// `ipam check` as a pure function: from blocks, handles, workload endpoints and nodes, the
// leaked addresses (allocated, no WorkloadEndpoint holds them), blocks whose node is gone, and
// handles that hold nothing; the report names the cluster (GUID) and whether the datastore was
// locked, which `release --from-report` checks. Not: reading the datastore (gc_run.ts) or
// printing (cli/ipam.ts).

import { formatCidr } from "../lib/ip.js";
import { addressOf, type Block } from "./block.js";
import type { Handle } from "./records.js";

/** 2: the report names its cluster and the lock state it was made under. */
export const REPORT_VERSION = 2;

export interface LeakedAddress {
  address: string;
  block: string;
  handleId: string | null;
  /** The allocation's sequence number: a release from the report frees it only if unchanged. */
  sequence: number;
  attrs: Record<string, string>;
  reason: string;
}

export interface CheckReport {
  version: typeof REPORT_VERSION;
  generatedAt: string;
  datastore: string;
  /** The cluster the report was made in: a release refuses a report of another cluster. */
  clusterGUID: string;
  /** Whether the datastore was locked (`ocelot datastore lock`) when the report was made. */
  datastoreLocked: boolean;
  /** Revision of the cluster record then: a lock or unlock since makes the report stale. */
  clusterInformationRevision: number;
  summary: {
    blocks: number;
    allocated: number;
    leaked: number;
    blocksOfMissingNodes: number;
    emptyHandles: number;
  };
  leakedAddresses: LeakedAddress[];
  blocksOfMissingNodes: Array<{ block: string; node: string; inUse: number }>;
  emptyHandles: string[];
}

export interface CheckInput {
  datastore: string;
  cluster: { clusterGUID: string; datastoreLocked: boolean; revision: number };
  now: Date;
  blocks: readonly Block[];
  handles: readonly Handle[];
  /** Addresses (no prefix length) held by WorkloadEndpoints. */
  endpointAddresses: ReadonlySet<string>;
  nodes: ReadonlySet<string>;
}

/** Handles of node tunnel addresses (Calico's names): held while their node exists. */
export const TUNNEL_HANDLE = /^(ipip|vxlan|vxlan-v6|wireguard|wireguard-v6)-tunnel-addr-(.+)$/;

function ipv4Text(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
}

/** Allocated addresses that nothing holds: no WorkloadEndpoint; a tunnel address of a gone node. */
export function findLeaks(
  blocks: readonly Block[],
  endpointAddresses: ReadonlySet<string>,
  nodes: ReadonlySet<string>,
): { leaked: LeakedAddress[]; allocated: number; holding: Set<string> } {
  const leaked: LeakedAddress[] = [];
  const holding = new Set<string>();
  let allocated = 0;
  for (const b of blocks) {
    // IPv4 addresses formatted from a number, not a BigInt (100,000 of them in a large cluster).
    const v4 = b.cidr.family === 4 ? Number(b.cidr.base) : -1;
    for (let o = 0; o < b.owner.length; o++) {
      const idx = b.owner[o] as number;
      if (idx < 0) continue;
      allocated++;
      const attr = b.attributes[idx];
      const handleId = attr?.handleId ?? null;
      if (handleId) holding.add(handleId);
      const address = v4 >= 0 ? ipv4Text(v4 + o) : addressOf(b, o);
      const tunnel = handleId ? TUNNEL_HANDLE.exec(handleId) : null;
      let reason: string | undefined;
      if (tunnel) {
        if (!nodes.has(tunnel[2] as string))
          reason = `tunnel address of missing node "${tunnel[2]}"`;
      } else if (!endpointAddresses.has(address)) {
        reason = "no WorkloadEndpoint holds this address";
      }
      if (reason) {
        leaked.push({
          address,
          block: formatCidr(b.cidr),
          handleId,
          sequence: b.seqForAllocation.get(o) ?? 0,
          attrs: { ...(attr?.secondary ?? {}) },
          reason,
        });
      }
    }
  }
  return { leaked, allocated, holding };
}

export function checkIpam(input: CheckInput): CheckReport {
  const { leaked, allocated, holding } = findLeaks(
    input.blocks,
    input.endpointAddresses,
    input.nodes,
  );
  const missing = input.blocks
    .filter((b) => b.affinity?.startsWith("host:") && !input.nodes.has(b.affinity.slice(5)))
    .map((b) => ({
      block: formatCidr(b.cidr),
      node: (b.affinity as string).slice(5),
      inUse: b.owner.filter((x) => x >= 0).length,
    }));
  const emptyHandles = input.handles.map((h) => h.handleId).filter((id) => !holding.has(id));
  return {
    version: REPORT_VERSION,
    generatedAt: input.now.toISOString(),
    datastore: input.datastore,
    clusterGUID: input.cluster.clusterGUID,
    datastoreLocked: input.cluster.datastoreLocked,
    clusterInformationRevision: input.cluster.revision,
    summary: {
      blocks: input.blocks.length,
      allocated,
      leaked: leaked.length,
      blocksOfMissingNodes: missing.length,
      emptyHandles: emptyHandles.length,
    },
    leakedAddresses: leaked,
    blocksOfMissingNodes: missing,
    emptyHandles,
  };
}
