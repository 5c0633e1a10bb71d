// The thin IPAM store adapter: reads blocks, affinities, handles, pools and configuration from
// a Datastore, asks the pure allocator what to do, and writes the result by compare-and-swap
// (bounded retries with jitter). Owns the write protocol: block claim in two phases (affinity
// pending → block created → affinity confirmed; pendingDeletion → deleted when released), the
// handle written before the block so a retried ADD is idempotent. Not: the decisions themselves
// (allocator.ts, block.ts).
import { randomUUID } from "node:crypto";
import {
  ConflictError,
  type Datastore,
  type KeyValue,
  NotFoundError,
  PresentError,
} from "../datastore/types.js";
import {
  blockOf,
  type Cidr,
  cidrContains,
  type Family,
  formatAddress,
  formatCidr,
  parseAddress,
  parseCidr,
} from "../lib/ip.js";
import { AffineBlocks, type BlockEntry } from "./affine_blocks.js";
import {
  type AllowedUse,
  canTake,
  describePools,
  type IpamConfig,
  type Pool,
  pickAffineBlock,
  pickBlockToClaim,
  pickBorrowBlock,
  poolOfBlock,
  reservedIn,
  selectPools,
} from "./allocator.js";
import {
  type AllocationAttributes,
  addressOf,
  assignOrdinal,
  type Block,
  BlockDraft,
  decodeBlock,
  encodeBlock,
  holdsHandle,
  hostAffinity,
  IpamDataError,
  isEmpty,
  NOTHING_RESERVED,
  newBlock,
  ordinalOf,
  ordinalsOfHandle,
  releaseFromBlock,
  releaseHandleFromBlock,
} from "./block.js";
import {
  type Affinity,
  cidrFromKey,
  decodeAffinity,
  decodeConfig,
  decodeConfigResource,
  decodeHandle,
  decodePool,
  decodeReservation,
  encodeAffinity,
  encodeConfigResource,
  encodeHandle,
  type Handle,
  IpamKeys,
  markPendingDeletion,
} from "./records.js";

export interface IpamStoreOptions {
  keys?: IpamKeys;
  /** Epoch milliseconds; injectable for grace-period tests. */
  now?: () => number;
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** Compare-and-swap attempts per operation before giving up (default 100). */
  maxAttempts?: number;
  /** Wall-clock budget per operation (default 30 s). */
  deadlineMs?: number;
  /** How long a block must stay empty before it is released from its node (default 5 min). */
  emptyBlockGraceMs?: number;
  /** How long pools, reservations, config and node labels are cached (default 2 s). */
  contextTtlMs?: number;
}

export interface AssignRequest {
  handleId: string;
  node: string;
  /** Owner attributes stored with each address (namespace, pod, ...); node is added. */
  attrs?: Record<string, string>;
  num4: number;
  num6: number;
  pools4?: readonly string[];
  pools6?: readonly string[];
  use?: AllowedUse;
  /**
   * The pod's namespace, for pools with a namespaceSelector: its labels are namespaceLabels when
   * given (read from the API server), else the labels its `kns.<namespace>` Profile applies.
   */
  namespace?: string;
  namespaceLabels?: Readonly<Record<string, string>>;
}

export interface AssignedAddress {
  address: string;
  family: Family;
  /** The block CIDR, e.g. "10.0.1.0/26". */
  block: string;
  pool: string;
  sequence: number;
  /** True when the block belongs to another node. */
  borrowed: boolean;
}

/** No address left for the request in the pools it may use; names the pools. */
export class PoolExhaustedError extends Error {
  constructor(
    readonly family: Family,
    readonly pools: string[],
    message: string,
  ) {
    super(message);
    this.name = "PoolExhaustedError";
  }
}

/** A given address cannot be assigned (outside every pool, reserved, or held by another). */
export class AddressUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AddressUnavailableError";
  }
}

/** Compare-and-swap kept losing (or the deadline passed): try again later. */
export class RetriesExhaustedError extends Error {
  constructor(what: string, attempts: number) {
    super(`Gave up ${what} after ${attempts} compare-and-swap attempts`);
    this.name = "RetriesExhaustedError";
  }
}

/** An address release whose sequence number no longer matches (the address was reused). */
export class BadSequenceError extends Error {
  constructor(address: string, expected: number) {
    super(`Address ${address} was allocated again since sequence ${expected}; not released`);
    this.name = "BadSequenceError";
  }
}

/**
 * What an assignment on a node reads besides blocks, cached for contextTtlMs. A class rather
 * than an object literal for the reason DecodedPool is one (records.ts): a second context built
 * by a literal widens its fields' recorded types and throws away the assignment's optimized code.
 */
class Context {
  /** selectPools answers for this context, by family|use|requested pools. */
  readonly selected = new Map<string, Pool[]>();
  /** Some pool has a namespaceSelector (an assignment then needs the namespace's labels). */
  readonly namespaced: boolean;

  constructor(
    readonly pools: Pool[],
    readonly reservations: Cidr[],
    readonly config: IpamConfig,
    readonly nodeLabels: Record<string, string>,
    readonly loadedAt: number,
  ) {
    this.namespaced = pools.some((p) => p.namespaceSelector !== undefined);
  }
}

const FAMILIES = [4, 6] as const;
/** formatCidr of a block's CIDR (one object shared by every version of the block), kept. */
const cidrTexts = new WeakMap<Cidr, string>();
function cidrText(c: Cidr): string {
  let t = cidrTexts.get(c);
  if (t === undefined) {
    t = formatCidr(c);
    cidrTexts.set(c, t);
  }
  return t;
}

/** selectedPools' keys of a workload request naming no pool, per family. */
const WORKLOAD_KEYS = ["4|Workload||", "6|Workload||"] as const;
/** Kube-controllers' namespace Profiles (`kns.<ns>`) and their label prefix (src/k8s/sync.ts). */
const NAMESPACE_PROFILE = "kns.";
const NAMESPACE_LABEL = "pcns.";
const NAMESPACE_NAME_LABEL = "pcns.projectcalico.org/name";
/** No pools named (assignAlone). */
const NO_POOLS: readonly string[] = [];
/** The first try's stand-in for the handle record read: no record (each write checks it). */
const NO_RECORD: Promise<{ handle: Handle | undefined }> = Promise.resolve({ handle: undefined });

export interface BlockInfo extends BlockEntry {
  affinityState?: Affinity["state"];
}

export interface AllocationInfo {
  address: string;
  block: string;
  blockAffinity: string | null;
  handleId: string | null;
  attrs: Record<string, string>;
  sequence: number;
}

interface BlockRequest {
  handleId: string;
  /** The handle record's key when the write must find it missing (the first try, see autoAssign). */
  absentKey?: string;
  count: number;
  attrs: AllocationAttributes;
  reserved: (ordinal: number) => boolean;
  resolve(r: Array<{ address: string; sequence: number }>): void;
  reject(err: unknown): void;
}

/**
 * The first try of an assignment met (or would make) a handle record: the request runs again
 * reading that record first. Never leaves IpamStore.
 */
class HandleRecordPresent extends Error {
  constructor() {
    super("The handle has a record: assign again reading it");
    this.name = "HandleRecordPresent";
  }
}

/** An affinity record as decoded, with the stored text it was decoded from. */
interface DecodedAffinity {
  value: string;
  affinity: Affinity;
  blockKey: string;
}

interface Combiner {
  entry: BlockEntry;
  queue: BlockRequest[];
  running: boolean;
}

export class IpamStore {
  readonly keys: IpamKeys;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly maxAttempts: number;
  private readonly deadlineMs: number;
  readonly emptyBlockGraceMs: number;
  private readonly contextTtlMs: number;
  private context: Map<string, Context> = new Map();
  /** The node's confirmed blocks per family, as last seen: the fast path of assignment. */
  private affineCache = new Map<string, AffineBlocks>();
  /** Per block key: the assignments of this process waiting for one combined write. */
  private readonly combiners = new Map<string, Combiner>();
  /** Per node|family: affinities of the node (any state) at the last loadAffine. */
  private readonly affineCount = new Map<string, number>();
  /** autoAssign calls in progress: when more than those queued for a block, the write waits a turn. */
  private assigning = 0;
  /** Per node|family: the block search (claim) in flight, which other requests wait for. */
  private readonly claiming = new Map<string, Promise<unknown>>();
  /** nodeKey's answers by node. */
  private readonly nodeKeys = new Map<string, [string, string]>();
  /** Per node|family: the affinities decoded at the last loadAffine, by key. */
  private readonly affinitiesSeen = new Map<string, Map<string, DecodedAffinity>>();
  /** node|family whose last claim scan saw blocks not the node's own (blocksForClaim). */
  private readonly foreignBlocks = new Set<string>();

  constructor(
    readonly store: Datastore,
    opts: IpamStoreOptions = {},
  ) {
    this.keys = opts.keys ?? new IpamKeys();
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.maxAttempts = opts.maxAttempts ?? 100;
    this.deadlineMs = opts.deadlineMs ?? 30_000;
    this.emptyBlockGraceMs = opts.emptyBlockGraceMs ?? 300_000;
    this.contextTtlMs = opts.contextTtlMs ?? 2_000;
  }

  // ---- Assignment ------------------------------------------------------------------------

  /**
   * Assigns num4 IPv4 and num6 IPv6 addresses to handleId on node. Idempotent per handle: a
   * retry returns what the handle already holds. On failure, whatever this call assigned to the
   * handle is released again (best effort) so nothing is left half allocated.
   */
  autoAssign(req: AssignRequest): Promise<AssignedAddress[]> {
    try {
      return this.assignAlone(req) ?? this.assignQueued(req, true);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * The general path of autoAssign. First try: no read of the handle record. A handle has a
   * record only when it borrowed (rare), so each block write instead requires the record to be
   * missing, in the write's own transaction (updateIfAbsent): one datastore call per pod instead
   * of two. A write that finds the record, or a request that must borrow, runs again reading it
   * first.
   */
  private async assignQueued(req: AssignRequest, firstTry: boolean): Promise<AssignedAddress[]> {
    this.assigning++;
    try {
      if (firstTry) {
        try {
          return await this.assignRequest(req, true);
        } catch (err) {
          if (!(err instanceof HandleRecordPresent)) throw err;
        }
      }
      return await this.assignRequest(req, false);
    } finally {
      this.assigning--;
    }
  }

  /**
   * The usual pod of a warm node: one address of one family, no pools named, a workload, the
   * node's context and blocks cached, the handle in none of them, and a cached block with room
   * that no write is in flight to (requests arriving while one is are combined behind it, as
   * before). Decided without an await; the write is then the general path's first try for one
   * request (the same draft, the same updateIfAbsent), in one small async function rather than
   * five nested ones (each a promise per pod, and the bulk of what V8 compiled and recompiled
   * while a process warmed up: the profile of the benchmark's first rows). Undefined when any
   * condition fails: the general path runs instead.
   */
  private assignAlone(req: AssignRequest): Promise<AssignedAddress[]> | undefined {
    const family = req.num6 === 0 ? 4 : 6;
    if ((family === 4 ? req.num4 : req.num6) !== 1 || (family === 4 ? req.num6 : req.num4) !== 0)
      return undefined;
    if (req.use !== undefined && req.use !== "Workload") return undefined;
    const requested = family === 4 ? req.pools4 : req.pools6;
    if (requested !== undefined && requested.length > 0) return undefined;
    const ctx = this.freshContext(req.node);
    // A pool with a namespaceSelector needs the namespace's labels (a read).
    if (ctx === undefined || ctx.namespaced) return undefined;
    const cached = this.affineCache.get(this.nodeKey(req.node, family));
    if (cached === undefined || cached.holds(req.handleId)) return undefined;
    const pools = this.selectedPools(ctx, family, NO_POOLS, "Workload");
    const entry = targetIn(cached, pools, ctx.reservations);
    if (entry === undefined || this.combiners.has(entry.key)) return undefined;
    return this.writeAlone(req, family, entry, ctx, pools, cached);
  }

  /**
   * assignAlone's write: one address from entry's block, the handle record required missing.
   * Requests arriving meanwhile queue behind it as behind any block write (runCombiner takes
   * them after). A lost compare-and-swap, a handle record found, or no room: the general path.
   */
  private async writeAlone(
    req: AssignRequest,
    family: Family,
    entry: BlockEntry,
    ctx: Context,
    pools: Pool[],
    cached: AffineBlocks,
  ): Promise<AssignedAddress[]> {
    const { key, block: base } = entry;
    const c: Combiner = { entry, queue: [], running: true };
    this.combiners.set(key, c);
    this.assigning++;
    let out: AssignedAddress[] | undefined;
    let recordPresent = false;
    try {
      const draft = new BlockDraft(base);
      // One copy of the pod's attributes, handed to the draft (no cached block holds the
      // handle: assignAlone asked the index), unless a reservation touches the block.
      const attrs: AllocationAttributes = {
        handleId: req.handleId,
        secondary: { ...(req.attrs ?? {}), node: req.node },
      };
      const reserved = reservedIn(base.cidr, ctx.reservations);
      const got =
        reserved === NOTHING_RESERVED
          ? draft.assignNew(attrs)
          : draft.assign(1, attrs, reserved)[0];
      if (got !== undefined) {
        const block = draft.finish();
        try {
          const kv = await this.store.updateIfAbsent(key, encodeBlock(block), entry.rev, [
            this.keys.handle(req.handleId),
          ]);
          c.entry = { key, rev: kv.modRevision, block };
          // Into the node's cache as rememberBlock would (the block is the node's own), unless
          // that cache was replaced meanwhile.
          if (this.affineCache.get(this.nodeKey(req.node, family)) === cached)
            cached.set(key, c.entry);
          else this.rememberBlock(req.node, family, c.entry);
          out = [
            {
              address: addressOf(base, got.ordinal),
              family,
              block: cidrText(base.cidr),
              pool: poolOfBlock(pools, base.cidr)?.name ?? "",
              sequence: got.sequence,
              borrowed: false,
            },
          ];
        } catch (err) {
          if (err instanceof ConflictError || err instanceof NotFoundError)
            this.refreshFromConflict(req.node, family, key, err);
          else if (err instanceof PresentError) recordPresent = true;
          else throw err;
        }
      }
    } finally {
      this.assigning--;
      c.running = false;
      if (c.queue.length > 0) void this.runCombiner(req.node, family, key, c);
      else this.combiners.delete(key);
    }
    return out ?? this.assignQueued(req, !recordPresent);
  }

  /**
   * Assigns one given address to handleId on node (Calico's AssignIP, for the
   * `cni.projectcalico.org/ipAddrs` annotation and CNI_ARGS `IP=`): it must lie in an IP pool and
   * outside every reservation. Its block is claimed for node when nobody has it; a block of
   * another node lends it (the handle record names the block first, as for any borrowed
   * address). Idempotent per handle; an address held by another handle is refused by name.
   */
  async assignIP(req: {
    handleId: string;
    node: string;
    address: string;
    attrs?: Record<string, string>;
  }): Promise<AssignedAddress> {
    const { family, value } = parseAddress(req.address);
    const pool = (await this.loadPools()).find(
      (p) => p.cidr.family === family && cidrContains(p.cidr, family, value),
    );
    if (!pool) throw new AddressUnavailableError(`Address ${req.address} is in no IP pool`);
    const text = formatAddress(family, value);
    if (
      (await this.loadReservations()).some(
        (r) => r.family === family && cidrContains(r, family, value),
      )
    )
      throw new AddressUnavailableError(`Address ${text} is reserved (IPReservation)`);
    const cidr = blockOf(family, value, pool.blockSize);
    const key = this.keys.block(cidr);
    const attrs: AllocationAttributes = {
      handleId: req.handleId,
      secondary: { ...(req.attrs ?? {}), node: req.node },
    };
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      let kv = await this.store.get(key);
      if (!kv) {
        await this.claimBlock(req.node, cidr);
        kv = await this.store.get(key);
        if (!kv) continue;
      }
      const block = decodeBlock(key, kv.value);
      const ordinal = ordinalOf(block, value);
      const held = block.owner[ordinal] as number;
      const result = (sequence: number): AssignedAddress => ({
        address: text,
        family,
        block: formatCidr(cidr),
        pool: pool.name,
        sequence,
        borrowed: block.affinity !== hostAffinity(req.node),
      });
      if (held >= 0) {
        if (block.attributes[held]?.handleId === req.handleId)
          return result(block.seqForAllocation.get(ordinal) ?? 0);
        throw new AddressUnavailableError(
          `Address ${text} is in use (handle "${block.attributes[held]?.handleId ?? "none"}")`,
        );
      }
      if (block.affinity !== hostAffinity(req.node))
        await this.ensureHandleHas(req.handleId, formatCidr(cidr));
      const next = assignOrdinal(block, ordinal, attrs);
      try {
        await this.store.update(key, encodeBlock(next.block), kv.modRevision);
        return result(next.sequence);
      } catch (err) {
        if (!(err instanceof ConflictError || err instanceof NotFoundError)) throw err;
        await this.backoff(attempt);
      }
    }
    throw new RetriesExhaustedError(`assigning ${text} to "${req.handleId}"`, this.maxAttempts);
  }

  private async assignRequest(req: AssignRequest, firstTry: boolean): Promise<AssignedAddress[]> {
    const attrs = { ...(req.attrs ?? {}), node: req.node };
    // On the second try the handle record (borrowed addresses only) is read alongside the
    // assignment. A retry of a request that had borrowed then gives back what it just took and
    // returns what it had. On the first try every write required the record to be missing.
    const recordRead: Promise<{ handle: Handle | undefined } | { error: unknown }> = firstTry
      ? NO_RECORD
      : this.getHandle(req.handleId).then(
          (handle) => ({ handle }),
          (error: unknown) => ({ error }),
        );
    // What a previous attempt of this request got in the node's own blocks (idempotent retry).
    const own = this.heldInNoCachedBlock(req.handleId, req.node, req.num4 > 0, req.num6 > 0)
      ? []
      : await this.heldInOwnBlocks(req.handleId, req.node, req.num4 > 0, req.num6 > 0);
    const out: AssignedAddress[] = [];
    const fresh: AssignedAddress[] = [];
    try {
      for (const family of [4, 6] as const) {
        const want = family === 4 ? req.num4 : req.num6;
        if (want <= 0) continue;
        const have = own.length === 0 ? own : own.filter((a) => a.family === family).slice(0, want);
        out.push(...have);
        if (have.length >= want) continue;
        const pools = (family === 4 ? req.pools4 : req.pools6) ?? [];
        const got = await this.assignFamily(
          req,
          family,
          want - have.length,
          pools,
          attrs,
          firstTry,
        );
        out.push(...got);
        fresh.push(...got);
      }
      const rec = await recordRead;
      if ("error" in rec) throw rec.error;
      const had = rec.handle ? await this.heldInRecord(rec.handle, [...own, ...fresh]) : [];
      if (had.length === 0) return out;
      const result: AssignedAddress[] = [];
      const giveBack: AssignedAddress[] = [];
      for (const family of [4, 6] as const) {
        const want = family === 4 ? req.num4 : req.num6;
        const prior = [...own, ...had].filter((a) => a.family === family);
        const taken = fresh.filter((a) => a.family === family);
        if (prior.length >= want && taken.length > 0) {
          result.push(...prior.slice(0, want));
          giveBack.push(...taken);
        } else result.push(...out.filter((a) => a.family === family));
      }
      await this.releaseAssigned(giveBack);
      return result;
    } catch (err) {
      // Give back exactly what this call took; a handle record it created for a borrow goes too.
      await this.releaseAssigned(fresh).catch(() => undefined);
      const rec = await recordRead;
      if (!firstTry && !("error" in rec) && rec.handle === undefined) {
        await this.deleteHandleIfEmpty(req.handleId).catch(() => false);
      }
      throw err;
    }
  }

  /** Releases addresses this client assigned (by block, ordinal and sequence number). */
  private async releaseAssigned(addrs: readonly AssignedAddress[]): Promise<void> {
    for (const a of addrs) {
      const value = parseAddress(a.address).value;
      await this.releaseInBlock(parseCidr(a.block), (b) =>
        releaseFromBlock(b, [{ ordinal: ordinalOf(b, value), sequence: a.sequence }], this.now()),
      );
    }
  }

  /**
   * True when the node's blocks are cached for every family asked for and none holds handleId
   * (the usual first try of a pod): heldInOwnBlocks would find nothing, so it is not awaited.
   */
  private heldInNoCachedBlock(handleId: string, node: string, v4: boolean, v6: boolean): boolean {
    for (const family of FAMILIES) {
      if (!(family === 4 ? v4 : v6)) continue;
      const cached = this.affineCache.get(this.nodeKey(node, family));
      if (cached === undefined || cached.holds(handleId)) return false;
    }
    return true;
  }

  /**
   * Addresses held by handleId in the node's own blocks, from the cache when warm (a hit is
   * confirmed by reading the block; a miss in a stale cache is caught at the block write, see
   * runCombiner).
   */
  private async heldInOwnBlocks(
    handleId: string,
    node: string,
    v4: boolean,
    v6: boolean,
  ): Promise<AssignedAddress[]> {
    const out: AssignedAddress[] = [];
    for (const family of FAMILIES) {
      // A family the request does not ask for: what the handle holds there is not returned.
      if (!(family === 4 ? v4 : v6)) continue;
      const cached = this.affineCache.get(this.nodeKey(node, family));
      const affine = cached ?? (await this.loadAffine(node, family));
      // Attributes are compacted on release: a handle with no address has no attribute. (A
      // forEach: this runs over every block of the node on every assignment.)
      const holding: BlockEntry[] = [];
      affine.forEach((e) => {
        if (holdsHandle(e.block, handleId)) holding.push(e);
      });
      for (const e of holding) {
        let block: Block | undefined = e.block;
        if (cached) {
          const kv = await this.store.get(e.key);
          block = kv ? decodeBlock(e.key, kv.value) : undefined;
          if (kv && block)
            this.rememberBlock(node, family, { key: e.key, rev: kv.modRevision, block });
        }
        if (block) out.push(...this.heldIn(block, handleId, false));
      }
    }
    return out;
  }

  /** Addresses held by the handle in the blocks its record lists, except those in `known`. */
  private async heldInRecord(
    handle: Handle,
    known: readonly AssignedAddress[],
  ): Promise<AssignedAddress[]> {
    const skip = new Set(known.map((a) => a.address));
    const out: AssignedAddress[] = [];
    for (const cidrText of handle.blocks) {
      const key = this.keys.block(parseCidr(cidrText));
      const kv = await this.store.get(key);
      if (!kv) continue;
      for (const a of this.heldIn(decodeBlock(key, kv.value), handle.handleId, true)) {
        if (!skip.has(a.address)) out.push(a);
      }
    }
    return out;
  }

  private heldIn(block: Block, handleId: string, borrowed: boolean): AssignedAddress[] {
    return ordinalsOfHandle(block, handleId).map((o) => ({
      address: addressOf(block, o),
      family: block.cidr.family,
      block: formatCidr(block.cidr),
      pool: "",
      sequence: block.seqForAllocation.get(o) ?? 0,
      borrowed,
    }));
  }

  private async assignFamily(
    req: AssignRequest,
    family: Family,
    want: number,
    requested: readonly string[],
    attrs: Record<string, string>,
    firstTry: boolean,
  ): Promise<AssignedAddress[]> {
    const out: AssignedAddress[] = [];
    // The cached context without an await (one fewer promise and turn per pod).
    let ctx = this.freshContext(req.node) ?? (await this.loadContext(req.node));
    const use = req.use ?? "Workload";
    // Read (an await) only when a pool has a namespaceSelector, as namespaceLabelsFor decides.
    const ns =
      requested.length > 0 || !ctx.pools.some((p) => p.namespaceSelector !== undefined)
        ? undefined
        : await this.namespaceLabelsFor(req, ctx, requested);
    let pools = this.selectedPools(ctx, family, requested, use, ns);
    const started = this.now();
    let reloaded = false;
    let misses = 0;
    for (let attempt = 0; out.length < want; attempt++) {
      if (attempt >= this.maxAttempts || this.now() - started > this.deadlineMs) {
        throw new RetriesExhaustedError(
          `assigning an IPv${family} address to "${req.handleId}"`,
          attempt,
        );
      }
      const target =
        this.cachedTarget(req.node, family, pools, ctx) ??
        (await this.findTarget(req.node, family, pools, ctx));
      if (target === undefined) {
        if (!reloaded) {
          // Pools, reservations or configuration may have changed since they were cached.
          reloaded = true;
          this.context.delete(req.node);
          ctx = await this.loadContext(req.node);
          pools = this.selectedPools(ctx, family, requested, use, ns);
          attempt--;
          continue;
        }
        throw this.exhausted(family, pools, req.node, ctx.config);
      }
      const blockCidr = cidrText(target.entry.block.cidr);
      // A borrowed address is not in the node's own blocks: the handle record names its block
      // before the block holds it, so a retry and a release find it. That needs the record
      // read first (the second try).
      if (target.borrowed && firstTry) throw new HandleRecordPresent();
      if (target.borrowed) await this.ensureHandleHas(req.handleId, blockCidr);
      const r = await this.assignInBlock(req.node, family, target.entry, {
        handleId: req.handleId,
        absentKey: firstTry ? this.keys.handle(req.handleId) : undefined,
        count: want - out.length,
        attrs: { handleId: req.handleId, secondary: attrs },
        reserved: reservedIn(target.entry.block.cidr, ctx.reservations),
      });
      if (r.length === 0) {
        // The first miss is most often a block that filled under the batch before ours: look
        // again at once (findTarget sees the full block). Later misses back off.
        if (misses++ > 0) await this.backoff(misses);
        continue;
      }
      const pool = poolOfBlock(pools, target.entry.block.cidr);
      for (const a of r) {
        out.push({
          address: a.address,
          family,
          block: blockCidr,
          pool: pool?.name ?? "",
          sequence: a.sequence,
          borrowed: target.borrowed,
        });
      }
    }
    return out;
  }

  /**
   * Assigns in one block, combining the requests of this process that arrive while a write to
   * the same block is in flight into one compare-and-swap (one write for many pods on a node).
   * Resolves with what was assigned: empty when the block had no room or is gone.
   */
  private assignInBlock(
    node: string,
    family: Family,
    entry: BlockEntry,
    req: Omit<BlockRequest, "resolve" | "reject">,
  ): Promise<Array<{ address: string; sequence: number }>> {
    // The target was picked before an await: the cache may hold a newer copy by now.
    const newer = this.affineCache.get(this.nodeKey(node, family))?.get(entry.key);
    if (newer && newer.rev > entry.rev) entry = newer;
    return new Promise((resolve, reject) => {
      let c = this.combiners.get(entry.key);
      if (!c) {
        c = { entry, queue: [], running: false };
        this.combiners.set(entry.key, c);
      } else if (entry.rev > c.entry.rev) c.entry = entry;
      c.queue.push({
        handleId: req.handleId,
        absentKey: req.absentKey,
        count: req.count,
        attrs: req.attrs,
        reserved: req.reserved,
        resolve,
        reject,
      });
      if (!c.running) void this.runCombiner(node, family, entry.key, c);
    });
  }

  private async runCombiner(node: string, family: Family, key: string, c: Combiner): Promise<void> {
    c.running = true;
    try {
      while (c.queue.length > 0) {
        // Other assignments of this process are on their way (a synchronous store such as
        // SQLite finishes a write before they arrive): one event-loop turn lets them join this
        // write. A lone assignment does not wait.
        if (this.assigning > c.queue.length) await new Promise((r) => setImmediate(r));
        let batch = c.queue.splice(0, c.queue.length);
        for (let attempt = 0; batch.length > 0; attempt++) {
          // One copy of the block for the whole batch, each request seeing those before it.
          const base = c.entry.block;
          const draft = new BlockDraft(base);
          const results = batch.map((r) => {
            // Already there (a retry whose earlier write landed though its reply was lost).
            const held = draft.ordinalsOf(r.handleId);
            if (held.length > 0) {
              return held.slice(0, r.count).map((o) => ({
                address: addressOf(base, o),
                sequence: draft.sequenceOf(o),
              }));
            }
            return draft.assign(r.count, r.attrs, r.reserved).map((a) => ({
              address: addressOf(base, a.ordinal),
              sequence: a.sequence,
            }));
          });
          const block = draft.finish();
          if (block === c.entry.block) {
            // Nothing to write: each request is either already held or found no room.
            for (const [i, r] of batch.entries()) r.resolve(results[i] ?? []);
            break;
          }
          const absent: string[] = [];
          for (const r of batch) if (r.absentKey !== undefined) absent.push(r.absentKey);
          try {
            const value = encodeBlock(block);
            const kv =
              absent.length > 0
                ? await this.store.updateIfAbsent(key, value, c.entry.rev, absent)
                : await this.store.update(key, value, c.entry.rev);
            c.entry = { key, rev: kv.modRevision, block };
            this.rememberBlock(node, family, c.entry);
            for (const [i, r] of batch.entries()) r.resolve(results[i] ?? []);
            break;
          } catch (err) {
            if (err instanceof PresentError) {
              // That handle has a record: its request goes again reading it; the rest of the
              // batch is written without it.
              const present = err.key;
              for (const r of batch)
                if (r.absentKey === present) r.reject(new HandleRecordPresent());
              batch = batch.filter((r) => r.absentKey !== present);
              continue;
            }
            if (err instanceof ConflictError && err.current && attempt + 1 < this.maxAttempts) {
              c.entry = {
                key,
                rev: err.current.modRevision,
                block: decodeBlock(key, err.current.value),
              };
              this.refreshFromConflict(node, family, key, err);
              await this.backoff(attempt);
              continue;
            }
            if (err instanceof NotFoundError || err instanceof ConflictError) {
              this.refreshFromConflict(node, family, key, err);
              for (const r of batch) r.resolve([]);
            } else {
              for (const r of batch) r.reject(err);
            }
            break;
          }
        }
      }
    } catch (err) {
      for (const r of c.queue.splice(0)) r.reject(err);
    } finally {
      c.running = false;
      this.combiners.delete(key);
    }
  }

  /** selectPools for a context, kept with it (the same answer until the context reloads). */
  private selectedPools(
    ctx: Context,
    family: Family,
    requested: readonly string[],
    use: AllowedUse,
    namespaceLabels?: Readonly<Record<string, string>>,
  ): Pool[] {
    // The usual request (no pools named, a workload, no namespaceSelector) without building its key.
    const k =
      requested.length === 0 && use === "Workload" && namespaceLabels === undefined
        ? WORKLOAD_KEYS[family === 4 ? 0 : 1]
        : `${family}|${use}|${requested.join(",")}|${namespaceLabels !== undefined ? JSON.stringify(namespaceLabels) : ""}`;
    let pools = ctx.selected.get(k);
    if (pools === undefined) {
      pools = selectPools(ctx.pools, {
        family,
        requested,
        nodeLabels: ctx.nodeLabels,
        ...(namespaceLabels !== undefined ? { namespaceLabels } : {}),
        use,
      });
      ctx.selected.set(k, pools);
    }
    return pools;
  }

  /**
   * The labels a pool's namespaceSelector is matched against, read only when some pool has one
   * and no pools were requested: the request's, else those the namespace's `kns.<ns>` Profile
   * applies (`pcns.<key>`, as kube-controllers writes them, without the prefix and without
   * Calico's own `projectcalico.org/name`: a Kubernetes Namespace's labels); none known: {}.
   */
  private async namespaceLabelsFor(
    req: AssignRequest,
    ctx: Context,
    requested: readonly string[],
  ): Promise<Readonly<Record<string, string>> | undefined> {
    if (requested.length > 0 || !ctx.pools.some((p) => p.namespaceSelector !== undefined))
      return undefined;
    if (req.namespaceLabels !== undefined) return req.namespaceLabels;
    if (req.namespace === undefined) return {};
    const key = `${this.keys.resources("profiles")}${NAMESPACE_PROFILE}${req.namespace}`;
    const kv = await this.store.get(key);
    if (!kv) return {};
    let apply: unknown;
    try {
      apply = (JSON.parse(kv.value) as { spec?: { labelsToApply?: unknown } }).spec?.labelsToApply;
    } catch (err) {
      throw new IpamDataError(key, `Profile resource: ${(err as Error).message}`);
    }
    const out: Record<string, string> = {};
    if (typeof apply !== "object" || apply === null) return out;
    for (const [k, v] of Object.entries(apply))
      if (k.startsWith(NAMESPACE_LABEL) && k !== NAMESPACE_NAME_LABEL && typeof v === "string")
        out[k.slice(NAMESPACE_LABEL.length)] = v;
    return out;
  }

  /**
   * The pools a request of this family on node may use (after selectors, disabled, uses); `ns`
   * names the pod's namespace (or gives its labels) for pools with a namespaceSelector.
   */
  async usablePools(
    node: string,
    family: Family,
    requested: readonly string[] = [],
    use: AllowedUse = "Workload",
    ns: Pick<AssignRequest, "namespace" | "namespaceLabels"> = {},
  ): Promise<Pool[]> {
    const ctx = await this.loadContext(node);
    const namespaceLabels = await this.namespaceLabelsFor(
      { handleId: "", node, num4: 0, num6: 0, ...ns },
      ctx,
      requested,
    );
    return selectPools(ctx.pools, {
      family,
      requested,
      nodeLabels: ctx.nodeLabels,
      ...(namespaceLabels !== undefined ? { namespaceLabels } : {}),
      use,
    });
  }

  private exhausted(
    family: Family,
    pools: Pool[],
    node: string,
    config: IpamConfig,
  ): PoolExhaustedError {
    if (pools.length === 0) {
      return new PoolExhaustedError(
        family,
        [],
        `No enabled IPv${family} pool matches node "${node}"`,
      );
    }
    const why = config.strictAffinity
      ? " (strictAffinity is on: no borrowing from other nodes' blocks)"
      : "";
    return new PoolExhaustedError(
      family,
      pools.map((p) => p.name),
      `IPv${family} pool ${describePools(pools)} has no free address for node "${node}"${why}`,
    );
  }

  /** The block to assign from next: the node's own, a newly claimed one, or a borrowed one. */
  private async findTarget(
    node: string,
    family: Family,
    pools: Pool[],
    ctx: Context,
  ): Promise<{ entry: BlockEntry; borrowed: boolean } | undefined> {
    if (pools.length === 0) return undefined;
    const k = this.nodeKey(node, family);
    // Fast path: a cached block of the node with room. While another request of this process
    // claims a block for the node, wait for it rather than claim a second one.
    for (let i = 0; i < 3; i++) {
      const hit = this.cachedTarget(node, family, pools, ctx);
      if (hit) return hit;
      const inflight = this.claiming.get(k);
      if (!inflight) break;
      await inflight.catch(() => undefined);
    }
    const slow = this.findTargetSlow(node, family, pools, ctx);
    this.claiming.set(k, slow);
    try {
      return await slow;
    } finally {
      if (this.claiming.get(k) === slow) this.claiming.delete(k);
    }
  }

  /**
   * A cached block of the node with room (pickAffineBlock over the cache's entries, full blocks,
   * most of them, skipped first); undefined when there is none or a claim is in flight.
   */
  private cachedTarget(
    node: string,
    family: Family,
    pools: Pool[],
    ctx: Context,
  ): { entry: BlockEntry; borrowed: boolean } | undefined {
    const cached = this.affineCache.get(this.nodeKey(node, family));
    if (!cached) return undefined;
    const entry = targetIn(cached, pools, ctx.reservations);
    return entry ? { entry, borrowed: false } : undefined;
  }

  /** Reads the node's blocks afresh, then claims a new block or borrows. */
  private async findTargetSlow(
    node: string,
    family: Family,
    pools: Pool[],
    ctx: Context,
  ): Promise<{ entry: BlockEntry; borrowed: boolean } | undefined> {
    const affine = await this.loadAffine(node, family);
    const pick = pickAffineBlock(
      [...affine.values()].map((e) => e.block),
      pools,
      ctx.reservations,
    );
    if (pick)
      return { entry: affine.get(this.keys.block(pick.cidr)) as BlockEntry, borrowed: false };

    const { config } = ctx;
    // Which blocks exist: from the keys alone (decoding every block is only needed to borrow).
    const listed = await this.blocksForClaim(node, family, affine);
    const held = this.affineCount.get(this.nodeKey(node, family)) ?? 0;
    if (
      config.autoAllocateBlocks &&
      (config.maxBlocksPerHost === 0 || held < config.maxBlocksPerHost)
    ) {
      // A block another process of this node claimed after our affinity list was read: use it
      // (claimBlock confirms it) rather than claim a second one.
      const marker = `"affinity":${JSON.stringify(hostAffinity(node))}`;
      for (const kv of listed.items) {
        if (affine.has(kv.key) || !kv.value.includes(marker)) continue;
        const block = decodeBlock(kv.key, kv.value);
        if (
          block.affinity !== hostAffinity(node) ||
          !pickAffineBlock([block], pools, ctx.reservations)
        )
          continue;
        const akv = await this.store.get(this.keys.affinity(node, block.cidr));
        if (akv && decodeAffinity(akv.key, akv.value).state === "pendingDeletion") continue;
        const sibling = await this.claimBlock(node, block.cidr);
        if (sibling) {
          this.rememberBlock(node, family, sibling);
          return { entry: sibling, borrowed: false };
        }
      }
      const existing = new Set(listed.keys.map((key) => formatCidr(cidrFromKey(key))));
      for (let tries = 0; tries < 16; tries++) {
        const choice = pickBlockToClaim(pools, existing, node, ctx.reservations);
        if (!choice) break;
        const claimed = await this.claimBlock(node, choice.cidr);
        if (claimed) {
          this.rememberBlock(node, family, claimed);
          return { entry: claimed, borrowed: false };
        }
        existing.add(formatCidr(choice.cidr));
      }
    }
    // Borrowing needs every block's value: a keys-only scan is read again in full.
    const items = listed.values ? listed.items : (await this.store.list(listed.prefix)).items;
    const all = items.map((kv) => ({
      key: kv.key,
      rev: kv.modRevision,
      block: decodeBlock(kv.key, kv.value),
    }));
    if (!config.strictAffinity) {
      const b = pickBorrowBlock(
        all.map((e) => e.block),
        node,
        pools,
        ctx.reservations,
      );
      if (b) return { entry: all.find((e) => e.block === b) as BlockEntry, borrowed: true };
    }
    return undefined;
  }

  /**
   * The blocks of the family for a claim's scan. Keys only (Datastore.listKeys, no block values
   * read) while every block is one of the node's known ones (`affine`): the scan then has no
   * other block to look into (a sibling process's claim, a borrow). A block of another node (or
   * none) seen makes it the full list, and the node's later scans start with it (clusters, where
   * other nodes' blocks stay; one list per claim as before).
   */
  private async blocksForClaim(
    node: string,
    family: Family,
    affine: ReadonlyMap<string, BlockEntry>,
  ): Promise<{ prefix: string; keys: string[]; items: KeyValue[]; values: boolean }> {
    const prefix = this.keys.blockPrefix(family);
    const k = this.nodeKey(node, family);
    if (this.store.listKeys && !this.foreignBlocks.has(k)) {
      const keys = (await this.store.listKeys(prefix)).items.map((e) => e.key);
      if (keys.every((key) => affine.has(key))) return { prefix, keys, items: [], values: false };
    }
    const { items } = await this.store.list(prefix);
    if (items.some((kv) => !affine.has(kv.key))) this.foreignBlocks.add(k);
    else this.foreignBlocks.delete(k);
    return { prefix, keys: items.map((kv) => kv.key), items, values: true };
  }

  /**
   * Two-phase claim: affinity pending → block created with our affinity → affinity confirmed.
   * Returns the new block, or undefined when another node won it (our pending affinity is removed).
   */
  async claimBlock(node: string, cidr: Cidr): Promise<BlockEntry | undefined> {
    const affKey = this.keys.affinity(node, cidr);
    const blockKey = this.keys.block(cidr);
    const text = formatCidr(cidr);
    let aff: KeyValue;
    try {
      aff = await this.store.create(affKey, encodeAffinity({ state: "pending", node, cidr: text }));
    } catch (err) {
      if (!(err instanceof ConflictError) || !err.current) throw err;
      aff = err.current; // our own earlier attempt (crash or concurrent claim on this node)
    }
    let entry: BlockEntry;
    try {
      const block = newBlock(cidr, hostAffinity(node), new Date(this.now()).toISOString());
      const kv = await this.store.create(blockKey, encodeBlock(block));
      entry = { key: blockKey, rev: kv.modRevision, block };
    } catch (err) {
      if (!(err instanceof ConflictError) || !err.current) throw err;
      const current = decodeBlock(blockKey, err.current.value);
      if (current.affinity !== hostAffinity(node)) {
        await this.store.delete(affKey, aff.modRevision).catch(() => false);
        return undefined;
      }
      entry = { key: blockKey, rev: err.current.modRevision, block: current };
    }
    const a = decodeAffinity(affKey, aff.value);
    if (a.state !== "confirmed") {
      try {
        await this.store.update(
          affKey,
          encodeAffinity({ state: "confirmed", node, cidr: text }),
          aff.modRevision,
        );
      } catch (err) {
        if (!(err instanceof ConflictError || err instanceof NotFoundError)) throw err;
        // Another process of this node confirmed (or re-created) it: make sure it is confirmed.
        await this.store.update(affKey, encodeAffinity({ state: "confirmed", node, cidr: text }));
      }
    }
    return entry;
  }

  /** The node's confirmed blocks (pending ones whose block is ours are confirmed on the way). */
  private async loadAffine(node: string, family: Family): Promise<AffineBlocks> {
    const list = await this.store.list(this.keys.affinityPrefix(node, family));
    const out = new Map<string, BlockEntry>();
    const k = this.nodeKey(node, family);
    // Each claim lists the node's affinities again: the ones seen with the same stored text last
    // time are not decoded again (a node's claims would otherwise cost O(blocks) decodes each).
    const seen = this.affinitiesSeen.get(k);
    const now = new Map<string, DecodedAffinity>();
    for (const kv of list.items) {
      let d = seen?.get(kv.key);
      if (d === undefined || d.value !== kv.value) {
        d = {
          value: kv.value,
          affinity: decodeAffinity(kv.key, kv.value),
          blockKey: this.keys.block(cidrFromKey(kv.key)),
        };
      }
      now.set(kv.key, d);
      const a = d.affinity;
      if (a.state === "pendingDeletion") continue;
      const key = d.blockKey;
      const known = this.affineCache.get(k)?.get(key);
      if (known && a.state === "confirmed") {
        // Confirmed and ours: the cached copy serves (a stale one fails its CAS and is refreshed).
        out.set(key, known);
        continue;
      }
      const bkv = await this.store.get(key);
      if (!bkv) continue;
      const block = decodeBlock(key, bkv.value);
      if (block.affinity !== hostAffinity(node)) {
        // A claim this node lost (or crashed in): the block is another node's for good.
        if (a.state === "pending")
          await this.store.delete(kv.key, kv.modRevision).catch(() => false);
        continue;
      }
      if (a.state === "pending") {
        await this.store
          .update(
            kv.key,
            encodeAffinity({ state: "confirmed", node, cidr: a.cidr }),
            kv.modRevision,
          )
          .catch(() => undefined);
      }
      out.set(key, { key, rev: bkv.modRevision, block });
    }
    // Into the cache's own map, entry by entry: its handle index follows the changes only.
    const cache = this.affineCache.get(k) ?? new AffineBlocks();
    for (const key of cache.keys()) if (!out.has(key)) cache.delete(key);
    for (const [key, e] of out) cache.set(key, e);
    this.affineCache.set(k, cache);
    this.affineCount.set(k, list.items.length);
    this.affinitiesSeen.set(k, now);
    return cache;
  }

  /**
   * The "node|family" key of the per-node maps, the same string object each time: a key built
   * per call is a new string to allocate and hash on every lookup, several times per pod.
   */
  private nodeKey(node: string, family: Family): string {
    let keys = this.nodeKeys.get(node);
    if (keys === undefined) {
      if (this.nodeKeys.size >= 4096) this.nodeKeys.clear();
      keys = [`${node}|4`, `${node}|6`];
      this.nodeKeys.set(node, keys);
    }
    return keys[family === 4 ? 0 : 1];
  }

  private rememberBlock(node: string, family: Family, entry: BlockEntry): void {
    if (entry.block.affinity !== hostAffinity(node)) return;
    const k = this.nodeKey(node, family);
    const m = this.affineCache.get(k);
    if (m !== undefined) m.set(entry.key, entry);
    else this.affineCache.set(k, new AffineBlocks().set(entry.key, entry));
  }

  private refreshFromConflict(
    node: string,
    family: Family,
    key: string,
    err: ConflictError | NotFoundError,
  ): void {
    const m = this.affineCache.get(this.nodeKey(node, family));
    if (!m) return;
    if (err instanceof ConflictError && err.current) {
      const block = decodeBlock(key, err.current.value);
      if (block.affinity === hostAffinity(node)) {
        m.set(key, { key, rev: err.current.modRevision, block });
        return;
      }
    }
    m.delete(key);
  }

  /** Makes sure the handle record lists blockCidr (creating the record when absent). */
  private async ensureHandleHas(handleId: string, blockCidr: string): Promise<void> {
    const key = this.keys.handle(handleId);
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const kv = await this.store.get(key);
      try {
        if (!kv) {
          await this.store.create(key, encodeHandle({ handleId, blocks: [blockCidr] }));
          return;
        }
        const h = decodeHandle(key, kv.value);
        if (h.blocks.includes(blockCidr)) return;
        await this.store.update(
          key,
          encodeHandle({ handleId, blocks: [...h.blocks, blockCidr] }),
          kv.modRevision,
        );
        return;
      } catch (err) {
        if (!(err instanceof ConflictError || err instanceof NotFoundError)) throw err;
        await this.backoff(attempt);
      }
    }
    throw new RetriesExhaustedError(`updating handle "${handleId}"`, this.maxAttempts);
  }

  /**
   * The blocks that may hold handleId's addresses: its record's blocks, plus the node's own
   * blocks when the node is known, else every block (a scan, for callers that do not know it).
   */
  private async blocksOfHandle(
    handleId: string,
    node?: string,
  ): Promise<{ cidrs: Cidr[]; record?: KeyValue }> {
    const record = await this.store.get(this.keys.handle(handleId));
    const texts = new Set(record ? decodeHandle(record.key, record.value).blocks : []);
    if (node !== undefined) {
      for (const family of [4, 6] as const) {
        const list = await this.store.list(this.keys.affinityPrefix(node, family));
        for (const kv of list.items) texts.add(formatCidr(cidrFromKey(kv.key)));
      }
    } else {
      for (const family of [4, 6] as const) {
        for (const e of await this.listBlocks(family)) texts.add(formatCidr(e.block.cidr));
      }
    }
    return { cidrs: [...texts].map((t) => parseCidr(t)), record };
  }

  /** Every address handleId holds (see blocksOfHandle for where it looks). */
  async addressesOfHandle(handleId: string, node?: string): Promise<AssignedAddress[]> {
    const { cidrs } = await this.blocksOfHandle(handleId, node);
    const out: AssignedAddress[] = [];
    for (const cidr of cidrs) {
      const key = this.keys.block(cidr);
      const kv = await this.store.get(key);
      if (!kv) continue;
      const block = decodeBlock(key, kv.value);
      for (const a of this.heldIn(block, handleId, false)) {
        const o = ordinalOf(block, parseAddress(a.address).value);
        const owner = block.attributes[block.owner[o] as number]?.secondary.node;
        out.push({ ...a, borrowed: owner !== undefined && block.affinity !== hostAffinity(owner) });
      }
    }
    return out;
  }

  async getHandle(handleId: string): Promise<Handle | undefined> {
    const key = this.keys.handle(handleId);
    const kv = await this.store.get(key);
    return kv ? decodeHandle(key, kv.value) : undefined;
  }

  // ---- Release ---------------------------------------------------------------------------

  /**
   * Releases every address of the handle and deletes its record. With node, looks in that
   * node's blocks and the record's; without, scans every block. Unknown handles release nothing.
   */
  async releaseByHandle(handleId: string, node?: string): Promise<string[]> {
    const released: string[] = [];
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const { cidrs, record } = await this.blocksOfHandle(handleId, node);
      for (const cidr of cidrs) {
        released.push(
          ...(await this.releaseInBlock(cidr, (b) =>
            releaseHandleFromBlock(b, handleId, this.now()),
          )),
        );
      }
      if (!record) return released;
      try {
        await this.store.delete(record.key, record.modRevision);
        return released;
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
        await this.backoff(attempt); // the handle gained a block meanwhile: release that too
      }
    }
    throw new RetriesExhaustedError(`releasing handle "${handleId}"`, this.maxAttempts);
  }

  /**
   * Releases one address (only if its sequence number still matches, when given). Returns the
   * released address, or undefined when it was not allocated.
   */
  async releaseAddress(address: string, sequence?: number): Promise<string | undefined> {
    const a = parseAddress(address);
    const found = await this.blockHolding(a.family, a.value);
    if (!found) return undefined;
    const ordinal = ordinalOf(found.block, a.value);
    const idx = found.block.owner[ordinal];
    const handleId = idx >= 0 ? found.block.attributes[idx]?.handleId : null;
    let bad = false;
    const released = await this.releaseInBlock(found.block.cidr, (b) => {
      const r = releaseFromBlock(b, [{ ordinal, sequence }], this.now());
      bad = r.badSequence.length > 0;
      return r;
    });
    if (bad) throw new BadSequenceError(address, sequence as number);
    if (released.length > 0 && handleId) await this.deleteHandleIfEmpty(handleId);
    return released[0];
  }

  /**
   * Deletes the handle's record when no block holds an address of it (at the record's revision:
   * a borrow that names a block in it meanwhile keeps it). True when it was deleted.
   */
  async deleteHandleIfEmpty(handleId: string): Promise<boolean> {
    const kv = await this.store.get(this.keys.handle(handleId));
    if (!kv) return false;
    const left = await this.addressesOfHandle(handleId);
    if (left.length > 0) return false;
    return this.store.delete(kv.key, kv.modRevision).catch(() => false);
  }

  /** CAS loop over one block: apply a pure release, write it back if anything changed. */
  private async releaseInBlock(
    cidr: Cidr,
    release: (b: Block) => { block: Block; released: number[] },
  ): Promise<string[]> {
    const key = this.keys.block(cidr);
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const kv = await this.store.get(key);
      if (!kv) return [];
      const r = release(decodeBlock(key, kv.value));
      if (r.released.length === 0) return [];
      try {
        const next = await this.store.update(key, encodeBlock(r.block), kv.modRevision);
        const owner = r.block.affinity?.startsWith("host:") ? r.block.affinity.slice(5) : undefined;
        if (owner !== undefined && this.affineCache.get(`${owner}|${cidr.family}`)?.has(key)) {
          this.rememberBlock(owner, cidr.family, { key, rev: next.modRevision, block: r.block });
        }
        return r.released.map((o) => addressOf(r.block, o));
      } catch (err) {
        if (!(err instanceof ConflictError || err instanceof NotFoundError)) throw err;
        await this.backoff(attempt);
      }
    }
    throw new RetriesExhaustedError(`releasing in block ${formatCidr(cidr)}`, this.maxAttempts);
  }

  /**
   * Releases the node's blocks that have been empty for the grace period: affinity →
   * pendingDeletion, block deleted at the revision read (so a concurrent assignment wins),
   * affinity deleted. Returns the released block CIDRs.
   */
  async releaseEmptyBlocks(node: string): Promise<string[]> {
    const out: string[] = [];
    for (const family of [4, 6] as const) {
      const list = await this.store.list(this.keys.affinityPrefix(node, family));
      for (const akv of list.items) {
        const cidr = cidrFromKey(akv.key);
        const a = decodeAffinity(akv.key, akv.value);
        const key = this.keys.block(cidr);
        const bkv = await this.store.get(key);
        if (!bkv) {
          if (a.state !== "pending")
            await this.store.delete(akv.key, akv.modRevision).catch(() => false);
          continue;
        }
        const block = decodeBlock(key, bkv.value);
        if (block.affinity !== hostAffinity(node) || !isEmpty(block)) continue;
        const since = block.emptySince ?? Date.parse(block.affinityClaimTime ?? "");
        if (!Number.isFinite(since) || this.now() - since < this.emptyBlockGraceMs) continue;
        if (await this.releaseBlock(node, akv, key, bkv)) out.push(formatCidr(cidr));
      }
      this.affineCache.delete(this.nodeKey(node, family));
    }
    return out;
  }

  private async releaseBlock(
    node: string,
    akv: KeyValue,
    blockKey: string,
    bkv: KeyValue,
  ): Promise<boolean> {
    const marked = await markPendingDeletion(this.store, akv);
    if (!marked) return false;
    const { affinity: a, written: aff } = marked;
    try {
      await this.store.delete(blockKey, bkv.modRevision);
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      // Someone assigned from it meanwhile: the block stays the node's.
      await this.store.update(
        akv.key,
        encodeAffinity({ ...a, node, state: "confirmed" }),
        aff.modRevision,
      );
      return false;
    }
    await this.store.delete(akv.key, aff.modRevision).catch(() => false);
    return true;
  }

  // ---- Reads for show / check ------------------------------------------------------------

  async listBlocks(family: Family): Promise<BlockEntry[]> {
    const list = await this.store.list(this.keys.blockPrefix(family));
    return list.items.map((kv) => ({
      key: kv.key,
      rev: kv.modRevision,
      block: decodeBlock(kv.key, kv.value),
    }));
  }

  async listAllBlocks(): Promise<BlockInfo[]> {
    const blocks = [...(await this.listBlocks(4)), ...(await this.listBlocks(6))];
    const affs = await this.store.list(this.keys.hostPrefix());
    const states = new Map<string, Affinity["state"]>();
    for (const kv of affs.items) {
      const a = decodeAffinity(kv.key, kv.value);
      states.set(`${a.node}|${a.cidr}`, a.state);
    }
    return blocks.map((e) => {
      const node = e.block.affinity?.startsWith("host:") ? e.block.affinity.slice(5) : undefined;
      return {
        ...e,
        affinityState: node ? states.get(`${node}|${formatCidr(e.block.cidr)}`) : undefined,
      };
    });
  }

  async listAffinities(): Promise<Array<Affinity & { key: string }>> {
    const affs = await this.store.list(this.keys.hostPrefix());
    return affs.items.map((kv) => ({ key: kv.key, ...decodeAffinity(kv.key, kv.value) }));
  }

  async listHandles(): Promise<Handle[]> {
    const list = await this.store.list(this.keys.handlePrefix());
    return list.items.map((kv) => decodeHandle(kv.key, kv.value));
  }

  /**
   * The block whose range holds the address: read by key for each block size the family's pools
   * use (blocks are aligned to their size), so a release or lookup costs a get or two, not a
   * listing of every block (`ipam gc` releasing a gone node's leaks was O(leaks x blocks)).
   * Only when no such block exists (a block of a pool since deleted) is every block listed.
   */
  private async blockHolding(family: Family, value: bigint): Promise<BlockEntry | undefined> {
    const sizes = new Set(
      // A pool record that does not decode: the listing below still finds the block.
      (await this.loadPools().catch(() => []))
        .filter((p) => p.cidr.family === family)
        .map((p) => p.blockSize),
    );
    for (const size of sizes) {
      const key = this.keys.block(blockOf(family, value, size));
      const kv = await this.store.get(key);
      if (!kv) continue;
      const block = decodeBlock(key, kv.value);
      if (ordinalOf(block, value) >= 0) return { key, rev: kv.modRevision, block };
    }
    return (await this.listBlocks(family)).find((e) => ordinalOf(e.block, value) >= 0);
  }

  /** Who holds address, or undefined when it is free or outside every block. */
  async getAllocation(address: string): Promise<AllocationInfo | undefined> {
    const a = parseAddress(address);
    const e = await this.blockHolding(a.family, a.value);
    if (!e) return undefined;
    const o = ordinalOf(e.block, a.value);
    const idx = e.block.owner[o];
    if (idx < 0) return undefined;
    const attr = e.block.attributes[idx];
    return {
      address: addressOf(e.block, o),
      block: formatCidr(e.block.cidr),
      blockAffinity: e.block.affinity,
      handleId: attr?.handleId ?? null,
      attrs: { ...(attr?.secondary ?? {}) },
      sequence: e.block.seqForAllocation.get(o) ?? 0,
    };
  }

  async loadPools(): Promise<Pool[]> {
    const list = await this.store.list(this.keys.resources("ippools"));
    return list.items.map((kv) => decodePool(kv.key, kv.value));
  }

  async loadReservations(): Promise<Cidr[]> {
    const list = await this.store.list(this.keys.resources("ipreservations"));
    return list.items.flatMap((kv) => decodeReservation(kv.key, kv.value));
  }

  /**
   * The settings: the IPAMConfiguration resource "default" when it exists (`ocelot apply` or
   * `ocelot ipam configure` wrote it), else the record an older `ipam configure` wrote, else
   * Calico's defaults.
   */
  async getConfig(): Promise<IpamConfig> {
    const [res, legacy] = await Promise.all([
      this.store.get(this.keys.configResource()),
      this.store.get(this.keys.config()),
    ]);
    if (res) return decodeConfigResource(res.key, res.value);
    return decodeConfig(this.keys.config(), legacy?.value);
  }

  /** Changes settings in the IPAMConfiguration resource (compare-and-swap; created if absent). */
  async setConfig(change: Partial<IpamConfig>): Promise<IpamConfig> {
    const key = this.keys.configResource();
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const kv = await this.store.get(key);
      const next = {
        ...(kv ? decodeConfigResource(key, kv.value) : await this.getConfig()),
        ...change,
      };
      const fresh = {
        uid: randomUUID(),
        creationTimestamp: new Date(this.now()).toISOString().replace(/\.\d+Z$/, "Z"),
      };
      const value = encodeConfigResource(next, kv?.value, fresh);
      try {
        if (kv) await this.store.update(key, value, kv.modRevision);
        else await this.store.create(key, value);
        this.context.clear();
        return next;
      } catch (err) {
        if (!(err instanceof ConflictError || err instanceof NotFoundError)) throw err;
        await this.backoff(attempt);
      }
    }
    throw new RetriesExhaustedError("updating the IPAM configuration", this.maxAttempts);
  }

  /** The node's cached context while it is fresh. */
  private freshContext(node: string): Context | undefined {
    const c = this.context.get(node);
    return c && this.now() - c.loadedAt < this.contextTtlMs ? c : undefined;
  }

  private async loadContext(node: string): Promise<Context> {
    const c = this.freshContext(node);
    if (c) return c;
    const [pools, reservations, config, nodeLabels] = await Promise.all([
      this.loadPools(),
      this.loadReservations(),
      this.getConfig(),
      this.loadNodeLabels(node),
    ]);
    const ctx = new Context(pools, reservations, config, nodeLabels, this.now());
    this.context.set(node, ctx);
    return ctx;
  }

  private async loadNodeLabels(node: string): Promise<Record<string, string>> {
    const key = `${this.keys.resources("nodes")}${node}`;
    const kv = await this.store.get(key);
    if (!kv) return {};
    try {
      const labels = (JSON.parse(kv.value) as { metadata?: { labels?: unknown } }).metadata?.labels;
      if (labels === undefined) return {};
      if (
        typeof labels !== "object" ||
        labels === null ||
        Object.values(labels).some((v) => typeof v !== "string")
      ) {
        throw new Error("metadata.labels is not a map of strings");
      }
      return labels as Record<string, string>;
    } catch (err) {
      throw new IpamDataError(key, `Node resource: ${(err as Error).message}`);
    }
  }

  private async backoff(attempt: number): Promise<void> {
    const cap = Math.min(100, 2 * 2 ** Math.min(attempt, 6));
    await this.sleep(Math.floor(this.random() * cap));
  }
}

/**
 * The lowest-addressed of a node's cached blocks that can take an address from pools (not full,
 * in one of them, not wholly reserved); undefined when none can.
 */
function targetIn(
  cached: AffineBlocks,
  pools: readonly Pool[],
  reservations: readonly Cidr[],
): BlockEntry | undefined {
  if (pools.length === 0) return undefined;
  let entry: BlockEntry | undefined;
  for (const e of cached.values()) {
    if (e.block.unallocated.length === 0) continue;
    if (entry !== undefined && e.block.cidr.base >= entry.block.cidr.base) continue;
    if (canTake(e.block, pools, reservations)) entry = e;
  }
  return entry;
}
