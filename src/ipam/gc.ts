// IPAM garbage collection as a pure function: from the GC state of the previous pass and what
// the datastore holds now, what to release and the state for the next pass. Calico's rule
// (kube-controllers, LeakGracePeriod): an address is released only when it was seen leaked (no
// WorkloadEndpoint holds it; a tunnel address of a node that is gone) at an earlier observation
// at least the grace period ago and is leaked now with the same handle and sequence number;
// one look never releases. A node that has no Node resource loses its block affinities the
// same way, after two observations; its pods' addresses stay until their pods are gone. Empty
// blocks go after their own grace (emptySince, the CNI plugin's rule). Also owns the stored form
// of the state (one key). Not: reading or writing the datastore (gc_run.ts).

import { formatCidr } from "../lib/ip.js";
import { type Block, isEmpty } from "./block.js";
import { findLeaks } from "./check.js";
import type { Affinity } from "./records.js";
import * as v from "./validate.js";

export const DEFAULT_LEAK_GRACE_MS = 15 * 60_000;
/** The same default as the CNI plugin's empty_block_grace_seconds. */
export const DEFAULT_EMPTY_BLOCK_GRACE_MS = 5 * 60_000;

export interface GcOptions {
  /** How long an address must stay leaked, seen on two observations, before release. */
  leakGraceMs: number;
  /** How long a block must stay empty before it is released from its node. */
  emptyBlockGraceMs: number;
  /** How long a node must stay without a Node resource before its affinities go (default: leakGraceMs). */
  nodeGraceMs?: number;
}

export interface LeakCandidate {
  address: string;
  handleId: string | null;
  sequence: number;
  block: string;
  reason: string;
  /** Epoch ms of the first observation that saw it leaked. */
  firstSeen: number;
}

export interface GoneNode {
  node: string;
  firstSeen: number;
}

export interface GcState {
  version: 1;
  /** Epoch ms of the observation this state came from (null: never observed). */
  observedAt: number | null;
  leaks: LeakCandidate[];
  goneNodes: GoneNode[];
}

export const EMPTY_GC_STATE: GcState = { version: 1, observedAt: null, leaks: [], goneNodes: [] };

export interface GcObservation {
  blocks: readonly Block[];
  /** Every block affinity record (any state). */
  affinities: readonly Affinity[];
  /** Addresses (no prefix length) held by WorkloadEndpoints. */
  endpointAddresses: ReadonlySet<string>;
  /** Names of the Node resources. */
  nodes: ReadonlySet<string>;
}

export type GcAction =
  | {
      kind: "releaseAddress";
      address: string;
      handleId: string | null;
      sequence: number;
      block: string;
      reason: string;
      leakedSince: number;
    }
  /** The node's blocks that have been empty for the grace (the store re-checks as it writes). */
  | { kind: "releaseEmptyBlocks"; node: string; blocks: string[] }
  /** An empty block no node owns (its node was released while pods held addresses in it). */
  | { kind: "deleteUnownedBlock"; block: string }
  /** A node gone for the grace: its empty blocks deleted, the others lose their affinity. */
  | { kind: "releaseNode"; node: string; blocks: string[]; goneSince: number };

export interface GcPlan {
  actions: GcAction[];
  /** The state to store for the next pass (every current candidate, acted on or not). */
  next: GcState;
}

/** The identity of one allocation: a release needs the same handle and sequence number. */
export const leakKey = (l: { address: string; handleId: string | null; sequence: number }) =>
  `${l.address}|${l.handleId ?? ""}|${l.sequence}`;

const hostOf = (affinity: string | null): string | undefined =>
  affinity?.startsWith("host:") ? affinity.slice(5) : undefined;

/** When a block became empty (a claimed but never used block: its claim time). */
export function emptySinceOf(b: Block): number {
  return b.emptySince ?? Date.parse(b.affinityClaimTime ?? "");
}

function due(firstSeen: number | undefined, now: number, graceMs: number): boolean {
  return firstSeen !== undefined && firstSeen <= now && now - firstSeen >= graceMs;
}

export function planGc(prev: GcState, obs: GcObservation, now: number, opts: GcOptions): GcPlan {
  const nodeGraceMs = opts.nodeGraceMs ?? opts.leakGraceMs;
  const actions: GcAction[] = [];

  // Leaks: the same rules as `ipam check`.
  const { leaked } = findLeaks(obs.blocks, obs.endpointAddresses, obs.nodes);
  const before = new Map(prev.leaks.map((l) => [leakKey(l), l]));
  const leaks: LeakCandidate[] = [];
  for (const l of leaked) {
    const earlier = before.get(leakKey(l));
    const firstSeen = earlier?.firstSeen ?? now;
    leaks.push({
      address: l.address,
      handleId: l.handleId,
      sequence: l.sequence,
      block: l.block,
      reason: l.reason,
      firstSeen,
    });
    // Only a candidate of an earlier pass can be due: this observation alone never releases.
    if (earlier && due(earlier.firstSeen, now, opts.leakGraceMs)) {
      actions.push({
        kind: "releaseAddress",
        address: l.address,
        handleId: l.handleId,
        sequence: l.sequence,
        block: l.block,
        reason: l.reason,
        leakedSince: earlier.firstSeen,
      });
    }
  }

  // Nodes named by affinities or block affinities that have no Node resource.
  const blocksOf = new Map<string, Set<string>>();
  const add = (node: string, cidr: string) => {
    const s = blocksOf.get(node);
    if (s) s.add(cidr);
    else blocksOf.set(node, new Set([cidr]));
  };
  for (const a of obs.affinities) add(a.node, a.cidr);
  for (const b of obs.blocks) {
    const node = hostOf(b.affinity);
    if (node !== undefined) add(node, formatCidr(b.cidr));
  }
  const goneBefore = new Map(prev.goneNodes.map((g) => [g.node, g.firstSeen]));
  const goneNodes: GoneNode[] = [];
  const releasing = new Set<string>();
  for (const [node, cidrs] of [...blocksOf].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (obs.nodes.has(node)) continue;
    const earlier = goneBefore.get(node);
    goneNodes.push({ node, firstSeen: earlier ?? now });
    if (due(earlier, now, nodeGraceMs)) {
      releasing.add(node);
      actions.push({
        kind: "releaseNode",
        node,
        blocks: [...cidrs].sort(),
        goneSince: earlier as number,
      });
    }
  }

  // Empty blocks past their grace: those of existing nodes go back to the pools; those no node
  // owns are deleted. (Blocks of a gone node wait for the node's own release.)
  const emptyByNode = new Map<string, string[]>();
  for (const b of obs.blocks) {
    if (!isEmpty(b)) continue;
    const since = emptySinceOf(b);
    if (!Number.isFinite(since) || !due(since, now, opts.emptyBlockGraceMs)) continue;
    const node = hostOf(b.affinity);
    if (b.affinity === null) {
      actions.push({ kind: "deleteUnownedBlock", block: formatCidr(b.cidr) });
    } else if (node !== undefined && obs.nodes.has(node) && !releasing.has(node)) {
      emptyByNode.set(node, [...(emptyByNode.get(node) ?? []), formatCidr(b.cidr)]);
    }
  }
  for (const [node, blocks] of emptyByNode)
    actions.push({ kind: "releaseEmptyBlocks", node, blocks });

  return { actions, next: { version: 1, observedAt: now, leaks, goneNodes } };
}

// ---- Stored form of the state -------------------------------------------------------------

export function encodeGcState(s: GcState): string {
  return JSON.stringify(s);
}

/** Decodes the stored state; throws a ShapeError naming the field. */
export function decodeGcState(value: string): GcState {
  const o = v.parseJsonObject(value, "IPAM GC state");
  v.object(o, "(root)", ["version", "observedAt", "leaks", "goneNodes"]);
  if (o.version !== 1) throw new v.ShapeError(`field "version" must be 1, got ${o.version}`);
  const num = (x: v.Json, k: string) => {
    const n = v.nullableNumber(x, k);
    if (n === null) throw new v.ShapeError(`field "${k}" must be a number`);
    return n;
  };
  return {
    version: 1,
    observedAt: v.nullableNumber(o, "observedAt"),
    leaks: v.array(o, "leaks").map((x, i) => {
      const l = v.object(x, `leaks.${i}`);
      return {
        address: v.string(l, "address", { nonEmpty: true }),
        handleId: v.nullableString(l, "handleId"),
        sequence: v.nonNegInt(l.sequence, `leaks.${i}.sequence`),
        block: v.string(l, "block"),
        reason: v.string(l, "reason"),
        firstSeen: num(l, "firstSeen"),
      };
    }),
    goneNodes: v.array(o, "goneNodes").map((x, i) => {
      const g = v.object(x, `goneNodes.${i}`);
      return { node: v.string(g, "node", { nonEmpty: true }), firstSeen: num(g, "firstSeen") };
    }),
  };
}
