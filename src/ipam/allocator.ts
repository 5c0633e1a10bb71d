// The pure IPAM decisions: which pools a request may use, which of the node's blocks to assign
// from, which new block to claim, which foreign block to borrow from, and which addresses are
// reserved. Values in, decisions out: no datastore, no clock. Not: the stored forms (records.ts,
// block.ts) nor compare-and-swap (store.ts).
import { createHash } from "node:crypto";
import { matchSelector, parseSelector } from "../api/selector.js";
import {
  blockCount,
  type Cidr,
  cidrContains,
  cidrOverlaps,
  type Family,
  formatCidr,
  nthBlock,
  parseAddress,
  parseCidr,
} from "../lib/ip.js";
import { type Block, freeCount, hostAffinity, NOTHING_RESERVED } from "./block.js";

export type AllowedUse = "Workload" | "Tunnel" | "LoadBalancer";

export interface Pool {
  name: string;
  cidr: Cidr;
  blockSize: number;
  nodeSelector: string;
  /** The namespaces whose pods may use the pool (absent or empty: all). */
  namespaceSelector?: string;
  disabled: boolean;
  allowedUses: readonly AllowedUse[];
}

export interface IpamConfig {
  /** Never borrow from another node's block. */
  strictAffinity: boolean;
  /** Blocks a node may hold per address family; 0 = no limit. */
  maxBlocksPerHost: number;
  /** Claim new blocks when the node's own are full. */
  autoAllocateBlocks: boolean;
}

export const DEFAULT_IPAM_CONFIG: IpamConfig = {
  strictAffinity: false,
  maxBlocksPerHost: 0,
  autoAllocateBlocks: true,
};

export class PoolSelectionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PoolSelectionError";
  }
}

export interface PoolRequest {
  family: Family;
  /** Pool names or CIDRs the caller asks for (CNI ipv4_pools / ipv6_pools); empty = any. */
  requested: readonly string[];
  nodeLabels: Readonly<Record<string, string>>;
  /**
   * The labels of the namespace the address is for (a pod's); absent: none known, matched as no
   * labels (libcalico-go's SelectsNamespace with no namespace).
   */
  namespaceLabels?: Readonly<Record<string, string>>;
  use: AllowedUse;
}

/**
 * The pools a request may allocate from, in the order to try them. Explicitly requested pools
 * must exist (by name or CIDR) and be enabled; every pool must match the node and allow the use.
 * A pool's namespaceSelector must match the namespace's labels, unless pools were requested
 * (Calico's determinePools uses requested pools whatever their selectors).
 */
export function selectPools(pools: readonly Pool[], req: PoolRequest): Pool[] {
  const ofFamily = pools.filter((p) => p.cidr.family === req.family);
  let candidates: Pool[];
  if (req.requested.length > 0) {
    candidates = req.requested.map((r) => {
      const found = ofFamily.find((p) => p.name === r || poolCidrEquals(p, r));
      if (!found)
        throw new PoolSelectionError(`Requested IPv${req.family} pool "${r}" does not exist`);
      if (found.disabled) throw new PoolSelectionError(`Requested pool "${r}" is disabled`);
      return found;
    });
  } else {
    candidates = ofFamily.filter((p) => !p.disabled);
  }
  const nsLabels = req.namespaceLabels ?? {};
  return candidates.filter(
    (p) =>
      p.allowedUses.includes(req.use) &&
      matchSelector(parsedSelector(p.nodeSelector), req.nodeLabels) &&
      (req.requested.length > 0 ||
        p.namespaceSelector === undefined ||
        matchSelector(parsedSelector(p.namespaceSelector), nsLabels)),
  );
}

/** Parsed pool selectors by text: pools are selected on every assignment, selectors rarely change. */
const selectorCache = new Map<string, ReturnType<typeof parseSelector>>();
const SELECTOR_CACHE_MAX = 256;

function parsedSelector(text: string): ReturnType<typeof parseSelector> {
  let parsed = selectorCache.get(text);
  if (parsed === undefined) {
    parsed = parseSelector(text);
    if (selectorCache.size >= SELECTOR_CACHE_MAX) selectorCache.clear();
    selectorCache.set(text, parsed);
  }
  return parsed;
}

function poolCidrEquals(p: Pool, text: string): boolean {
  try {
    const c = parseCidr(text, false);
    return c.family === p.cidr.family && c.base === p.cidr.base && c.prefixLen === p.cidr.prefixLen;
  } catch {
    return false;
  }
}

export function poolOfBlock(pools: readonly Pool[], block: Cidr): Pool | undefined {
  // Asked for a node's current block on every assignment, with the same pools (a context's
  // selection) and the same Cidr object (every version of a block shares it): kept per Cidr.
  const memo = blockPools.get(block);
  if (memo !== undefined && memo.pools === pools) return memo.pool;
  const pool = pools.find(
    (p) => cidrContains(p.cidr, block.family, block.base) && block.prefixLen === p.blockSize,
  );
  blockPools.set(block, { pools, pool });
  return pool;
}

/** poolOfBlock's last answer per block CIDR, with the pools list it was asked of. */
const blockPools = new WeakMap<Cidr, { pools: readonly Pool[]; pool: Pool | undefined }>();

/** A predicate over a block's ordinals: true for addresses inside any reservation. */
export function reservedIn(
  block: Cidr,
  reservations: readonly Cidr[],
): (ordinal: number) => boolean {
  if (reservations.length === 0) return NOTHING_RESERVED;
  const hits = reservations.filter((r) => cidrOverlaps(r, block));
  if (hits.length === 0) return NOTHING_RESERVED;
  return (ordinal) => {
    const v = block.base + BigInt(ordinal);
    return hits.some((r) => cidrContains(r, block.family, v));
  };
}

/** True when the address lies inside a reservation. */
export function isReservedAddress(address: string, reservations: readonly Cidr[]): boolean {
  const a = parseAddress(address);
  return reservations.some((r) => cidrContains(r, a.family, a.value));
}

/** The node's block to assign from: the first (in address order) with an unreserved free address. */
export function pickAffineBlock(
  affine: readonly Block[],
  pools: readonly Pool[],
  reservations: readonly Cidr[],
): Block | undefined {
  // One pass for the lowest-addressed candidate; full blocks (most of a busy node's) are skipped
  // before any pool or reservation check.
  let best: Block | undefined;
  for (const b of affine) {
    if (best !== undefined && b.cidr.base >= best.cidr.base) continue;
    if (canTake(b, pools, reservations)) best = b;
  }
  return best;
}

/** True when block b can give an address from pools: not full, in one of them, not all reserved. */
export function canTake(b: Block, pools: readonly Pool[], reservations: readonly Cidr[]): boolean {
  if (b.unallocated.length === 0) return false;
  if (poolOfBlock(pools, b.cidr) === undefined) return false;
  // Free ordinals and no reservation in the block: room, without counting.
  const reserved = reservedIn(b.cidr, reservations);
  return reserved === NOTHING_RESERVED || freeCount(b, reserved) > 0;
}

/** A stable per-node starting offset, so nodes spread over a pool instead of racing for block 0. */
export function nodeHash(node: string): bigint {
  let h = nodeHashes.get(node);
  if (h === undefined) {
    h = BigInt(`0x${createHash("sha256").update(node).digest("hex").slice(0, 15)}`);
    // Every block claim asks (a SHA-256 and a BigInt parse each time); a process sees few nodes.
    if (nodeHashes.size >= 4096) nodeHashes.clear();
    nodeHashes.set(node, h);
  }
  return h;
}

const nodeHashes = new Map<string, bigint>();

/**
 * A block CIDR to claim for the node: in the first pool that has one, the first block (from the
 * node's hash offset, wrapping) that does not exist yet and has an unreserved address.
 * Only a bounded number of candidates per pool is examined.
 */
export function pickBlockToClaim(
  pools: readonly Pool[],
  existing: ReadonlySet<string>,
  node: string,
  reservations: readonly Cidr[],
): { pool: Pool; cidr: Cidr } | undefined {
  for (const pool of pools) {
    const n = blockCount(pool.cidr, pool.blockSize);
    const start = nodeHash(node) % n;
    const fullyReserved = (c: Cidr) =>
      reservations.some((r) => r.prefixLen <= c.prefixLen && cidrContains(r, c.family, c.base));
    // Every candidate is either an existing block, a fully reserved one, or free: this many
    // candidates always reach a free block when one exists within reach of the scan.
    const budget = BigInt(existing.size + 65_537);
    const limit = n < budget ? n : budget;
    for (let k = 0n; k < limit; k++) {
      const c = nthBlock(pool.cidr, pool.blockSize, (start + k) % n);
      if (existing.has(formatCidr(c))) continue;
      if (fullyReserved(c)) continue;
      return { pool, cidr: c };
    }
  }
  return undefined;
}

/**
 * A block owned by another node (or by none) with an unreserved free address, in an order
 * fixed per node (so a retry looks at the same blocks first), or undefined.
 */
export function pickBorrowBlock(
  blocks: readonly Block[],
  node: string,
  pools: readonly Pool[],
  reservations: readonly Cidr[],
): Block | undefined {
  const mine = hostAffinity(node);
  const h = nodeHash(node);
  const candidates = blocks
    .filter((b) => b.affinity !== mine && poolOfBlock(pools, b.cidr) !== undefined)
    .filter((b) => freeCount(b, reservedIn(b.cidr, reservations)) > 0)
    .map((b) => ({ b, key: (b.cidr.base ^ h) & 0xffffffffffffn }))
    .sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
  return candidates[0]?.b;
}

/** Human description of pools for errors: `"default-ipv4" (10.0.0.0/16)`. */
export function describePools(pools: readonly Pool[]): string {
  return pools.map((p) => `"${p.name}" (${formatCidr(p.cidr)})`).join(", ");
}
