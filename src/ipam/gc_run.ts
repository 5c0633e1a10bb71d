// The thin adapter around the pure GC planner (gc.ts) and the leak release shared with
// `ipam release --from-report`: reads what the datastore holds (blocks, affinities, handles,
// WorkloadEndpoint addresses, Node names), keeps the GC state in one key by compare-and-swap,
// and carries out the plan with a second look at release time. Block mechanics are the store's
// (IpamStore.releaseAddress, releaseEmptyBlocks); only taking a node's affinity off a block that
// still holds addresses, and deleting an empty block no node owns, are written here.
import { ConflictError, type Datastore, type KeyValue, NotFoundError } from "../datastore/types.js";
import { formatAddress, parseAddress, parseCidr } from "../lib/ip.js";
import {
  type Block,
  decodeBlock,
  encodeBlock,
  hostAffinity,
  IpamDataError,
  isEmpty,
  withAffinity,
} from "./block.js";
import { TUNNEL_HANDLE } from "./check.js";
import {
  DEFAULT_EMPTY_BLOCK_GRACE_MS,
  DEFAULT_LEAK_GRACE_MS,
  decodeGcState,
  EMPTY_GC_STATE,
  emptySinceOf,
  encodeGcState,
  type GcAction,
  type GcObservation,
  type GcState,
  planGc,
} from "./gc.js";
import {
  type Affinity,
  cidrFromKey,
  decodeAffinity,
  encodeAffinity,
  type Handle,
  type IpamKeys,
  markPendingDeletion,
} from "./records.js";
import { BadSequenceError, IpamStore } from "./store.js";
import { ShapeError } from "./validate.js";

const MAX_ATTEMPTS = 20;

export const gcStateKey = (keys: IpamKeys): string => `${keys.prefix}ipam/v2/gc-state`;

/**
 * The WorkloadEndpoint's ipNetworks array as written by every writer we know (compact or
 * pretty-printed JSON): only spec.ipNetworks is an array of that name in a WorkloadEndpoint
 * (labels and annotations hold strings). Matching it saves parsing 100,000 whole resources on a
 * large cluster; a value it does not match is parsed whole.
 */
const IP_NETWORKS = /"ipNetworks"\s*:\s*(\[[^\]]*\])/;

function endpointNetworks(kv: KeyValue): unknown {
  const m = IP_NETWORKS.exec(kv.value);
  if (m) {
    try {
      return JSON.parse(m[1] as string);
    } catch {}
  }
  try {
    return (JSON.parse(kv.value) as { spec?: { ipNetworks?: unknown } }).spec?.ipNetworks;
  } catch (err) {
    throw new IpamDataError(kv.key, `WorkloadEndpoint is not JSON (${(err as Error).message})`);
  }
}

/** Addresses (no prefix length) that WorkloadEndpoints hold. */
export async function loadEndpointAddresses(
  store: Datastore,
  keys: IpamKeys,
): Promise<Set<string>> {
  const weps = await store.list(keys.resources("workloadendpoints"));
  const out = new Set<string>();
  for (const kv of weps.items) {
    const nets = endpointNetworks(kv);
    for (const n of Array.isArray(nets) ? nets : []) {
      if (typeof n !== "string") continue;
      const slash = n.indexOf("/");
      const text = slash < 0 ? n : n.slice(0, slash);
      try {
        const a = parseAddress(text);
        out.add(formatAddress(a.family, a.value));
      } catch {}
    }
  }
  return out;
}

/** Names of the Node resources. */
export async function loadNodeNames(store: Datastore, keys: IpamKeys): Promise<Set<string>> {
  const nodes = await store.list(keys.resources("nodes"));
  return new Set(nodes.items.map((kv) => kv.key.slice(kv.key.lastIndexOf("/") + 1)));
}

/** Called as each of loadIpamView's listings arrives: how many of how many, and which. */
export type ViewProgress = (done: number, total: number, what: string) => void;

/**
 * What `ipam check` and the GC look at, read from the datastore: one listing of each prefix
 * (blocks of each family, affinities, handles, WorkloadEndpoints, Nodes), all at once.
 */
export async function loadIpamView(
  ipam: IpamStore,
  onProgress?: ViewProgress,
): Promise<GcObservation & { blocks: Block[]; handles: Handle[]; affinities: Affinity[] }> {
  let done = 0;
  const total = 6;
  const step = <T>(what: string, p: Promise<T>): Promise<T> =>
    p.then((v) => {
      onProgress?.(++done, total, what);
      return v;
    });
  const [blocks4, blocks6, handles, affinities, endpointAddresses, nodes] = await Promise.all([
    step("IPv4 blocks", ipam.listBlocks(4)),
    step("IPv6 blocks", ipam.listBlocks(6)),
    step("handles", ipam.listHandles()),
    step("block affinities", ipam.listAffinities()),
    step("WorkloadEndpoints", loadEndpointAddresses(ipam.store, ipam.keys)),
    step("Nodes", loadNodeNames(ipam.store, ipam.keys)),
  ]);
  const blocks = [...blocks4, ...blocks6].map((b) => b.block);
  return { blocks, handles, affinities, endpointAddresses, nodes };
}

// ---- Releasing leaked addresses, with a second look -----------------------------------------

export interface LeakToRelease {
  address: string;
  handleId: string | null;
  sequence: number;
}

export interface ReleaseOutcome {
  released: string[];
  skipped: Array<{ address: string; reason: string }>;
}

/**
 * Releases addresses found leaked earlier, each only if it is still leaked now: no
 * WorkloadEndpoint holds it (read again here), a tunnel address's node is still gone, and it is
 * still allocated to the same handle with the same sequence number (the release itself is
 * conditional on the sequence number, so an address given out again in between stays).
 */
export async function releaseLeaks(
  ipam: IpamStore,
  items: readonly LeakToRelease[],
  onProgress?: (done: number, total: number) => void,
): Promise<ReleaseOutcome> {
  const out: ReleaseOutcome = { released: [], skipped: [] };
  if (items.length === 0) return out;
  const [held, nodes] = await Promise.all([
    loadEndpointAddresses(ipam.store, ipam.keys),
    loadNodeNames(ipam.store, ipam.keys),
  ]);
  for (const [i, l] of items.entries()) {
    if (i > 0) onProgress?.(i, items.length);
    const skip = (reason: string) => out.skipped.push({ address: l.address, reason });
    const tunnel = l.handleId ? TUNNEL_HANDLE.exec(l.handleId) : null;
    if (tunnel && nodes.has(tunnel[2] as string)) {
      skip(`node "${tunnel[2]}" exists again`);
      continue;
    }
    if (!tunnel && held.has(l.address)) {
      skip("a WorkloadEndpoint holds it now");
      continue;
    }
    const a = await ipam.getAllocation(l.address);
    if (!a) {
      skip("not assigned any more");
      continue;
    }
    if (a.sequence !== l.sequence) {
      skip("assigned again since it was seen leaked");
      continue;
    }
    if (a.handleId !== l.handleId) {
      skip(`handle is now ${a.handleId ?? "(none)"}, not ${l.handleId ?? "(none)"}`);
      continue;
    }
    try {
      const done = await ipam.releaseAddress(l.address, l.sequence);
      if (done) out.released.push(done);
      else skip("not assigned any more");
    } catch (err) {
      if (!(err instanceof BadSequenceError)) throw err;
      skip("assigned again since it was seen leaked");
    }
  }
  onProgress?.(items.length, items.length);
  return out;
}

// ---- A gone node's affinities and empty unowned blocks ---------------------------------------

/**
 * Takes the node's affinity off a block that still holds addresses (Calico's
 * ReleaseHostAffinities without mustBeEmpty): affinity → pendingDeletion (the node's allocator
 * stops using it), block affinity cleared by compare-and-swap, affinity deleted. If the block
 * cannot be written, the affinity goes back to confirmed: nothing is left half done.
 */
async function unaffine(
  store: Datastore,
  keys: IpamKeys,
  node: string,
  akv: KeyValue,
): Promise<boolean> {
  const marked = await markPendingDeletion(store, akv);
  if (!marked) return false;
  const { affinity: a, written: aff } = marked;
  const blockKey = keys.block(cidrFromKey(akv.key));
  try {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const bkv = await store.get(blockKey);
      const block = bkv ? decodeBlock(blockKey, bkv.value) : undefined;
      if (bkv && block && block.affinity === hostAffinity(node)) {
        try {
          await store.update(
            blockKey,
            encodeBlock(withAffinity(block, null, null)),
            bkv.modRevision,
          );
        } catch (err) {
          if (err instanceof ConflictError || err instanceof NotFoundError) continue;
          throw err;
        }
      }
      await store.delete(aff.key, aff.modRevision).catch(() => false);
      return true;
    }
    throw new Error(
      `Gave up clearing the affinity of block "${blockKey}" after ${MAX_ATTEMPTS} attempts`,
    );
  } catch (err) {
    await store
      .update(aff.key, encodeAffinity({ ...a, state: "confirmed" }), aff.modRevision)
      .catch(() => undefined);
    throw err;
  }
}

export interface NodeRelease {
  node: string;
  /** Empty blocks deleted with their affinity. */
  blocksDeleted: string[];
  /** Blocks that still hold addresses and lost the node's affinity. */
  blocksUnaffined: string[];
  /** Set when the second look found the node back: nothing was done. */
  skipped?: string;
}

/** Releases every affinity of a node that has no Node resource (looked at again first). */
export async function releaseNodeAffinities(ipam: IpamStore, node: string): Promise<NodeRelease> {
  const { store, keys } = ipam;
  const out: NodeRelease = { node, blocksDeleted: [], blocksUnaffined: [] };
  if (await store.get(`${keys.resources("nodes")}${node}`)) {
    out.skipped = `Node "${node}" exists again`;
    return out;
  }
  // Empty blocks: the store's release (affinity pendingDeletion, block deleted at the revision
  // read, affinity deleted), with no grace: the node is gone.
  out.blocksDeleted = await new IpamStore(store, { keys, emptyBlockGraceMs: 0 }).releaseEmptyBlocks(
    node,
  );
  for (const family of [4, 6] as const) {
    const list = await store.list(keys.affinityPrefix(node, family));
    for (const akv of list.items) {
      const cidr = decodeAffinity(akv.key, akv.value).cidr;
      const bkv = await store.get(keys.block(cidrFromKey(akv.key)));
      const block = bkv ? decodeBlock(bkv.key, bkv.value) : undefined;
      if (!block || block.affinity !== hostAffinity(node)) {
        // No block, or another node's: the record alone is left of a claim.
        if (await store.delete(akv.key, akv.modRevision).catch(() => false))
          out.blocksDeleted.push(cidr);
        continue;
      }
      if (await unaffine(store, keys, node, akv)) out.blocksUnaffined.push(cidr);
    }
  }
  return out;
}

/** Deletes an empty block no node owns once it has been empty for the grace (looked at again). */
export async function deleteUnownedBlock(
  store: Datastore,
  keys: IpamKeys,
  cidr: string,
  graceMs: number,
  now: number,
): Promise<boolean> {
  const key = keys.block(parseCidr(cidr));
  const kv = await store.get(key);
  if (!kv) return false;
  const b = decodeBlock(key, kv.value);
  const since = emptySinceOf(b);
  if (b.affinity !== null || !isEmpty(b) || !Number.isFinite(since) || now - since < graceMs)
    return false;
  try {
    return await store.delete(key, kv.modRevision);
  } catch (err) {
    if (err instanceof ConflictError) return false; // assigned from meanwhile: it stays
    throw err;
  }
}

// ---- One GC pass ----------------------------------------------------------------------------

export interface GcRunOptions {
  leakGraceMs?: number;
  emptyBlockGraceMs?: number;
  /** Plan only: release nothing, store no state. */
  dryRun?: boolean;
  now?: () => number;
  /** Reading progress (see loadIpamView). */
  onProgress?: ViewProgress;
  /** Releasing progress: called after each leaked address was looked at again. */
  onRelease?: (done: number, total: number) => void;
}

/** Another pass wrote the GC state between our read and our write: this pass did nothing. */
export class GcConflictError extends Error {
  constructor(key: string) {
    super(`Another "ipam gc" pass updated "${key}" at the same time; this pass did nothing`);
    this.name = "GcConflictError";
  }
}

export interface GcPassResult {
  observedAt: string;
  dryRun: boolean;
  /** Planned actions (what was done, unless dryRun). */
  actions: GcAction[];
  released: string[];
  skipped: Array<{ address: string; reason: string }>;
  blocksReleased: string[];
  nodesReleased: NodeRelease[];
  /** Candidates kept for the next pass, with the time from which a pass may release them. */
  watching: {
    leaks: Array<{
      address: string;
      handleId: string | null;
      sequence: number;
      reason: string;
      firstSeen: string;
      releasableAfter: string;
    }>;
    goneNodes: Array<{ node: string; firstSeen: string; releasableAfter: string }>;
  };
}

async function readState(
  store: Datastore,
  key: string,
): Promise<{ state: GcState; kv?: KeyValue }> {
  const kv = await store.get(key);
  if (!kv) return { state: EMPTY_GC_STATE };
  try {
    return { state: decodeGcState(kv.value), kv };
  } catch (err) {
    if (err instanceof ShapeError) throw new IpamDataError(key, err.message);
    throw err;
  }
}

/** Observe, plan, store the state (compare-and-swap), then act: one GC pass. */
export async function runGcPass(ipam: IpamStore, opts: GcRunOptions = {}): Promise<GcPassResult> {
  const leakGraceMs = opts.leakGraceMs ?? DEFAULT_LEAK_GRACE_MS;
  const emptyBlockGraceMs = opts.emptyBlockGraceMs ?? DEFAULT_EMPTY_BLOCK_GRACE_MS;
  const { store, keys } = ipam;
  const key = gcStateKey(keys);
  const [{ state, kv }, view] = await Promise.all([
    readState(store, key),
    loadIpamView(ipam, opts.onProgress),
  ]);
  const now = (opts.now ?? Date.now)();
  const plan = planGc(state, view, now, { leakGraceMs, emptyBlockGraceMs });
  const iso = (ms: number) => new Date(ms).toISOString();
  const acting = new Set(
    plan.actions.flatMap((a) => (a.kind === "releaseAddress" ? [a.address] : [])),
  );
  const actingNodes = new Set(
    plan.actions.flatMap((a) => (a.kind === "releaseNode" ? [a.node] : [])),
  );
  const result: GcPassResult = {
    observedAt: iso(now),
    dryRun: opts.dryRun === true,
    actions: plan.actions,
    released: [],
    skipped: [],
    blocksReleased: [],
    nodesReleased: [],
    watching: {
      leaks: plan.next.leaks
        .filter((l) => !acting.has(l.address))
        .map((l) => ({
          address: l.address,
          handleId: l.handleId,
          sequence: l.sequence,
          reason: l.reason,
          firstSeen: iso(l.firstSeen),
          releasableAfter: iso(l.firstSeen + leakGraceMs),
        })),
      goneNodes: plan.next.goneNodes
        .filter((g) => !actingNodes.has(g.node))
        .map((g) => ({
          node: g.node,
          firstSeen: iso(g.firstSeen),
          releasableAfter: iso(g.firstSeen + leakGraceMs),
        })),
    },
  };
  if (opts.dryRun) return result;
  // The state first: it claims this pass (a concurrent pass loses here and does nothing). A
  // crash after it only delays: candidates keep their firstSeen and are released next pass.
  try {
    if (kv) await store.update(key, encodeGcState(plan.next), kv.modRevision);
    else await store.create(key, encodeGcState(plan.next));
  } catch (err) {
    if (err instanceof ConflictError || err instanceof NotFoundError)
      throw new GcConflictError(key);
    throw err;
  }
  const leaks = plan.actions.flatMap((a) => (a.kind === "releaseAddress" ? [a] : []));
  const r = await releaseLeaks(ipam, leaks, opts.onRelease);
  result.released = r.released;
  result.skipped = r.skipped;
  const sweeper = new IpamStore(store, { keys, emptyBlockGraceMs, now: () => now });
  for (const a of plan.actions) {
    if (a.kind === "releaseEmptyBlocks")
      result.blocksReleased.push(...(await sweeper.releaseEmptyBlocks(a.node)));
    else if (a.kind === "deleteUnownedBlock") {
      if (await deleteUnownedBlock(store, keys, a.block, emptyBlockGraceMs, now))
        result.blocksReleased.push(a.block);
    } else if (a.kind === "releaseNode")
      result.nodesReleased.push(await releaseNodeAffinities(ipam, a.node));
  }
  return result;
}
