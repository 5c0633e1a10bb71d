// One IPAM allocation block as a value: which ordinals are allocated to whom, the FIFO of free
// ordinals (oldest free reused first), per-address sequence numbers, and its stored JSON form
// (validated on decode). Pure: no datastore, no clock (times are passed in). Not: affinity
// claims or pool selection (allocator.ts) nor compare-and-swap (store.ts).
import { type Cidr, cidrSize, formatAddress, formatCidr, parseCidr } from "../lib/ip.js";
import * as v from "./validate.js";
import { ShapeError } from "./validate.js";

/** Who holds an allocation: the handle (one per workload) and owner attributes. */
export interface AllocationAttributes {
  handleId: string | null;
  /** Owner attributes such as namespace, pod, node. */
  secondary: Readonly<Record<string, string>>;
}

export interface Block {
  readonly cidr: Cidr;
  /** "host:<node>" or null when no node owns the block. */
  readonly affinity: string | null;
  readonly affinityClaimTime: string | null;
  /**
   * Per ordinal: index into attributes, or -1 when free. A plain array (in the JS heap: copied
   * once per assignment, where a typed array this size needs a backing store outside it).
   */
  readonly owner: readonly number[];
  /** Free ordinals in reuse order: allocation takes the head, release appends to the tail. */
  readonly unallocated: readonly number[];
  readonly attributes: readonly AllocationAttributes[];
  /** Incremented on every allocation; the value at allocation time is kept per ordinal. */
  readonly sequenceNumber: number;
  readonly seqForAllocation: ReadonlyMap<number, number>;
  /** Epoch ms when the block last became empty (null while in use or never used). */
  readonly emptySince: number | null;
}

/**
 * The sequence number of each allocated ordinal, as a ReadonlyMap (iterated in ordinal order)
 * over one array (-1: not allocated; sequence numbers are never negative): a block version's
 * copy is one array copy, not a Map of every allocation rebuilt per pod. A plain array, not a
 * typed one: V8 keeps it in the JS heap, where a typed array of this size needs a backing store
 * allocated outside it. Mutated only while building a new block value.
 */
export class SequenceMap implements ReadonlyMap<number, number> {
  private constructor(
    private readonly seq: number[],
    private count: number,
  ) {}

  static empty(size: number): SequenceMap {
    return new SequenceMap(new Array<number>(size).fill(-1), 0);
  }

  /** A mutable copy of m for a block of size ordinals. */
  static copyOf(m: ReadonlyMap<number, number>, size: number): SequenceMap {
    if (m instanceof SequenceMap && m.seq.length === size)
      return new SequenceMap(m.seq.slice(), m.count);
    const out = SequenceMap.empty(size);
    m.forEach((v, k) => {
      out.set(k, v);
    });
    return out;
  }

  get size(): number {
    return this.count;
  }

  get(ordinal: number): number | undefined {
    const v = this.seq[ordinal];
    return v === undefined || v < 0 ? undefined : v;
  }

  has(ordinal: number): boolean {
    return this.get(ordinal) !== undefined;
  }

  set(ordinal: number, sequence: number): this {
    if (!Number.isInteger(ordinal) || ordinal < 0 || ordinal >= this.seq.length)
      throw new RangeError(`Ordinal ${ordinal} is outside the block (${this.seq.length})`);
    if (!Number.isInteger(sequence) || sequence < 0)
      throw new RangeError(`Sequence number must be a non-negative integer, got ${sequence}`);
    if ((this.seq[ordinal] as number) < 0) this.count++;
    this.seq[ordinal] = sequence;
    return this;
  }

  delete(ordinal: number): boolean {
    if (!this.has(ordinal)) return false;
    this.seq[ordinal] = -1;
    this.count--;
    return true;
  }

  forEach(cb: (value: number, key: number, map: ReadonlyMap<number, number>) => void): void {
    for (let o = 0; o < this.seq.length; o++) {
      const v = this.seq[o] as number;
      if (v >= 0) cb(v, o, this);
    }
  }

  *entries(): MapIterator<[number, number]> {
    for (let o = 0; o < this.seq.length; o++) {
      const v = this.seq[o] as number;
      if (v >= 0) yield [o, v];
    }
  }

  *keys(): MapIterator<number> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<number> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[number, number]> {
    return this.entries();
  }
}

/** Stored values that do not decode: names the key and what is wrong. */
export class IpamDataError extends Error {
  constructor(
    readonly key: string,
    reason: string,
  ) {
    super(`Invalid IPAM data at "${key}": ${reason}`);
    this.name = "IpamDataError";
  }
}

/** Largest block we accept (blockSize /20 for IPv4, /116 for IPv6 in Calico's limits). */
export const MAX_BLOCK_ADDRESSES = 4096;

export function hostAffinity(node: string): string {
  return `host:${node}`;
}

export function newBlock(cidr: Cidr, affinity: string | null, claimTime: string | null): Block {
  const size = Number(cidrSize(cidr));
  if (size > MAX_BLOCK_ADDRESSES) {
    throw new Error(`Block "${formatCidr(cidr)}" is larger than ${MAX_BLOCK_ADDRESSES} addresses`);
  }
  return {
    cidr,
    affinity,
    affinityClaimTime: claimTime,
    owner: new Array<number>(size).fill(-1),
    unallocated: Array.from({ length: size }, (_, i) => i),
    attributes: [],
    sequenceNumber: 0,
    seqForAllocation: SequenceMap.empty(size),
    emptySince: null,
  };
}

export const blockSize = (b: Block): number => b.owner.length;

export function inUseCount(b: Block): number {
  let n = 0;
  for (const o of b.owner) if (o >= 0) n++;
  return n;
}

export function isEmpty(b: Block): boolean {
  return inUseCount(b) === 0;
}

export function addressOf(b: Block, ordinal: number): string {
  return formatAddress(b.cidr.family, b.cidr.base + BigInt(ordinal));
}

/** Ordinal of value inside b, or -1 when outside. */
export function ordinalOf(b: Block, value: bigint): number {
  const off = value - b.cidr.base;
  return off >= 0n && off < BigInt(b.owner.length) ? Number(off) : -1;
}

/** Free ordinals that are not reserved. */
export function freeCount(
  b: Block,
  isReserved: (ordinal: number) => boolean = NOTHING_RESERVED,
): number {
  let n = 0;
  for (const o of b.unallocated) if (!isReserved(o)) n++;
  return n;
}

/** The reservation test of a block no reservation touches (assign() takes a faster path). */
export const NOTHING_RESERVED = (_ordinal: number): boolean => false;

export interface Assigned {
  ordinal: number;
  sequence: number;
}

/**
 * Takes up to count free, unreserved ordinals from the head of the free queue for attrs.
 * Returns the new block and what was assigned (possibly fewer than count).
 */
export function assignFromBlock(
  b: Block,
  count: number,
  attrs: AllocationAttributes,
  isReserved: (ordinal: number) => boolean = NOTHING_RESERVED,
): { block: Block; assigned: Assigned[] } {
  const draft = new BlockDraft(b);
  const assigned = draft.assign(count, attrs, isReserved);
  return { block: draft.finish(), assigned };
}

/**
 * Several assignments to one block with one copy of it (the requests combined into one write):
 * each sees the ones before it. The block passed in is not changed; finish() returns the new
 * block, or the same one when nothing was assigned.
 */
const NO_ORDINALS: readonly number[] = Object.freeze([]);

export class BlockDraft {
  private owner: number[] | undefined;
  private seqs: SequenceMap | undefined;
  private attributes: AllocationAttributes[] | undefined;
  private unallocated: readonly number[];
  private sequenceNumber: number;
  /** Ordinals assigned by this draft, in assignment order. */
  private readonly added: number[] = [];

  constructor(private readonly base: Block) {
    this.unallocated = base.unallocated;
    this.sequenceNumber = base.sequenceNumber;
  }

  /** Ordinals handleId holds, including those assigned in this draft. */
  ordinalsOf(handleId: string): readonly number[] {
    const owner = this.owner ?? this.base.owner;
    const attributes = this.attributes ?? this.base.attributes;
    // Nearly always none (a pod's first try): answered without allocating.
    let any = false;
    for (let i = 0; i < attributes.length && !any; i++)
      any = (attributes[i] as AllocationAttributes).handleId === handleId;
    if (!any) return NO_ORDINALS;
    const idx: number[] = [];
    attributes.forEach((a, i) => {
      if (a.handleId === handleId) idx.push(i);
    });
    if (idx.length === 0) return [];
    const out: number[] = [];
    for (let o = 0; o < owner.length; o++) if (idx.includes(owner[o] as number)) out.push(o);
    return out;
  }

  sequenceOf(ordinal: number): number {
    return (this.seqs ?? this.base.seqForAllocation).get(ordinal) ?? 0;
  }

  assign(
    count: number,
    attrs: AllocationAttributes,
    isReserved: (ordinal: number) => boolean = NOTHING_RESERVED,
  ): Assigned[] {
    let taken: number[];
    if (isReserved === NOTHING_RESERVED) {
      // The usual case: the head of the free queue, no test per ordinal.
      taken = this.unallocated.slice(0, count);
      if (taken.length === 0) return [];
      this.unallocated = this.unallocated.slice(taken.length);
    } else {
      taken = [];
      const rest: number[] = [];
      for (const o of this.unallocated) {
        if (taken.length < count && !isReserved(o)) taken.push(o);
        else rest.push(o);
      }
      if (taken.length === 0) return [];
      this.unallocated = rest;
    }
    this.owner ??= this.base.owner.slice();
    this.seqs ??= SequenceMap.copyOf(this.base.seqForAllocation, this.base.owner.length);
    this.attributes ??= appendable(this.base.attributes);
    const attributes = this.attributes;
    let idx = attributes.findIndex((a) => sameAttributes(a, attrs));
    if (idx < 0) {
      idx = attributes.length;
      attributes.push({ handleId: attrs.handleId, secondary: { ...attrs.secondary } });
    }
    const assigned: Assigned[] = [];
    for (const o of taken) {
      this.added.push(o);
      this.owner[o] = idx;
      this.seqs.set(o, this.sequenceNumber);
      assigned.push({ ordinal: o, sequence: this.sequenceNumber });
      this.sequenceNumber++;
    }
    return assigned;
  }

  finish(): Block {
    if (this.owner === undefined) return this.base;
    // Every field named (no spread): one object shape for every block version.
    const block: Block = {
      cidr: this.base.cidr,
      affinity: this.base.affinity,
      affinityClaimTime: this.base.affinityClaimTime,
      owner: this.owner,
      unallocated: this.unallocated,
      attributes: this.attributes ?? this.base.attributes,
      sequenceNumber: this.sequenceNumber,
      seqForAllocation: this.seqs ?? this.base.seqForAllocation,
      emptySince: null,
    };
    // The base's attributes are kept as they were (only appended to): encodeBlock, which every
    // caller runs right after, may extend the base's stored form instead of writing the whole
    // block again.
    draftBlock = block;
    draftBase = this.base;
    draftAdded = this.added;
    return block;
  }

  /**
   * One address for a handle that holds none in this block (the caller checked: a pod's first
   * try), from the head of the free queue, nothing reserved: attrs is appended as it is (the
   * caller hands it over, made for this call), with no search for an equal attribute and no
   * copy. Undefined when the block is full.
   */
  assignNew(attrs: AllocationAttributes): Assigned | undefined {
    const o = this.unallocated[0];
    if (o === undefined) return undefined;
    this.unallocated = this.unallocated.slice(1);
    this.owner ??= this.base.owner.slice();
    this.seqs ??= SequenceMap.copyOf(this.base.seqForAllocation, this.base.owner.length);
    this.attributes ??= appendable(this.base.attributes);
    const idx = this.attributes.length;
    this.attributes.push(attrs);
    this.added.push(o);
    this.owner[o] = idx;
    this.seqs.set(o, this.sequenceNumber);
    const assigned: Assigned = { ordinal: o, sequence: this.sequenceNumber };
    this.sequenceNumber++;
    return assigned;
  }
}

export interface ReleaseOutcome {
  block: Block;
  released: number[];
  /** Ordinals whose sequence number did not match: allocated again since; left alone. */
  badSequence: number[];
  notAllocated: number[];
}

/**
 * Releases ordinals (with the sequence number seen when they were read, when given: a release
 * whose number no longer matches does nothing, so a late release cannot free a reused address).
 */
export function releaseFromBlock(
  b: Block,
  items: ReadonlyArray<{ ordinal: number; sequence?: number }>,
  nowMs: number,
): ReleaseOutcome {
  const owner = b.owner.slice();
  const seqs = SequenceMap.copyOf(b.seqForAllocation, owner.length);
  const unallocated = [...b.unallocated];
  const released: number[] = [];
  const badSequence: number[] = [];
  const notAllocated: number[] = [];
  for (const { ordinal, sequence } of items) {
    if (ordinal < 0 || ordinal >= owner.length || owner[ordinal] < 0) {
      notAllocated.push(ordinal);
      continue;
    }
    if (sequence !== undefined && seqs.get(ordinal) !== sequence) {
      badSequence.push(ordinal);
      continue;
    }
    owner[ordinal] = -1;
    seqs.delete(ordinal);
    unallocated.push(ordinal);
    released.push(ordinal);
  }
  if (released.length === 0) return { block: b, released, badSequence, notAllocated };
  const compacted = compactAttributes(owner, b.attributes);
  const empty = !owner.some((o) => o >= 0);
  return {
    block: {
      ...b,
      owner,
      unallocated,
      attributes: compacted,
      seqForAllocation: seqs,
      emptySince: empty ? nowMs : null,
    },
    released,
    badSequence,
    notAllocated,
  };
}

/** The handles holding addresses in b, computed once per block value (blocks are immutable). */
const handleSets = new WeakMap<Block, ReadonlySet<string | null>>();

/** True when handleId holds an address in b (attributes are compacted on release). */
export function holdsHandle(b: Block, handleId: string): boolean {
  // A block with room changes on the next assignment: a scan is cheaper than a set built for it.
  if (b.unallocated.length > 0) {
    for (const a of b.attributes) if (a.handleId === handleId) return true;
    return false;
  }
  let set = handleSets.get(b);
  if (set === undefined) {
    set = new Set(b.attributes.map((a) => a.handleId));
    handleSets.set(b, set);
  }
  return set.has(handleId);
}

export function ordinalsOfHandle(b: Block, handleId: string): number[] {
  const out: number[] = [];
  for (let o = 0; o < b.owner.length; o++) {
    const idx = b.owner[o];
    if (idx >= 0 && b.attributes[idx]?.handleId === handleId) out.push(o);
  }
  return out;
}

export function releaseHandleFromBlock(b: Block, handleId: string, nowMs: number): ReleaseOutcome {
  return releaseFromBlock(
    b,
    ordinalsOfHandle(b, handleId).map((ordinal) => ({ ordinal })),
    nowMs,
  );
}

export function withAffinity(b: Block, affinity: string | null, claimTime: string | null): Block {
  return { ...b, affinity, affinityClaimTime: claimTime };
}

/**
 * A copy of attributes to append to, an array of objects to V8 even when empty: an empty array
 * literal starts as one of small integers, and the first object pushed into it changes its kind,
 * which throws away the optimized code of every function that saw only the other kind (a new
 * block's first assignment did, in a process still warming up).
 */
function appendable(attributes: readonly AllocationAttributes[]): AllocationAttributes[] {
  if (attributes.length > 0) return attributes.slice();
  const out: AllocationAttributes[] = [PLACEHOLDER_ATTRIBUTES];
  out.pop();
  return out;
}

const PLACEHOLDER_ATTRIBUTES: AllocationAttributes = { handleId: null, secondary: {} };

function sameAttributes(a: AllocationAttributes, b: AllocationAttributes): boolean {
  if (a.handleId !== b.handleId) return false;
  const ka = Object.keys(a.secondary);
  const kb = Object.keys(b.secondary);
  return ka.length === kb.length && ka.every((k) => a.secondary[k] === b.secondary[k]);
}

/** Drops attributes no ordinal refers to and renumbers owner in place. */
function compactAttributes(
  owner: number[],
  attributes: readonly AllocationAttributes[],
): AllocationAttributes[] {
  const used = new Set<number>();
  for (const o of owner) if (o >= 0) used.add(o);
  if (used.size === attributes.length) return [...attributes];
  const remap = new Map<number, number>();
  const out: AllocationAttributes[] = [];
  attributes.forEach((a, i) => {
    if (used.has(i)) {
      remap.set(i, out.length);
      out.push(a);
    }
  });
  for (let o = 0; o < owner.length; o++) if (owner[o] >= 0) owner[o] = remap.get(owner[o]) ?? -1;
  return out;
}

// ---- Stored form -------------------------------------------------------------------------
// { cidr, affinity, affinityClaimTime,
//   allocated: base64 bitmap (bit i of byte i>>3 = ordinal i, LSB first),
//   owners: attribute index of each allocated ordinal, in ordinal order,
//   sequences: sequence number of each allocated ordinal, in the same order,
//   unallocated: free queue as runs [first, last] of consecutive ordinals,
//   attributes: [[handle_id], or [handle_id, secondary] when it has owner attributes],
//   sequenceNumber, emptySince }
// The first form (still read, never written) had attributes as {handle_id, secondary} objects
// and sequenceNumberForAllocation: { "<ordinal>": seq } instead of sequences: about twice the
// bytes for a block of one-address pods. Older readers reject the new form by its unknown
// "sequences" key rather than misread it.

/**
 * A block's stored form, kept for the blocks encoded last (formOf), with where its arrays' contents lie in it: the
 * next version drafted from it by assignments at higher ordinals (a block filling up: the free
 * queue's head is its lowest free ordinal) is this text patched: the same head, each array's
 * old contents sliced out of it (a slice of a flat string costs no copy) and the new entries
 * appended, the short fields (bitmap, free runs, counters) written anew. Built from slices of
 * one flat string rather than kept as strings grown by appending, whose chains of pieces V8
 * walked to flatten for the write (the profile's String::WriteToFlat) and the scavenger copied.
 */
interface EncodedForm {
  /** The whole stored form (what encodeBlock returned for the block). */
  text: string;
  /** Where `"allocated"` starts: text before it is the head (cidr, affinity, claim time). */
  headEnd: number;
  /** [from, to) of the contents of the "owners", "sequences" and "attributes" arrays. */
  ownersFrom: number;
  ownersTo: number;
  sequencesFrom: number;
  sequencesTo: number;
  attributesFrom: number;
  attributesTo: number;
  affinity: string | null;
  /** Attributes encoded in the text. */
  attributeCount: number;
  /** Highest allocated ordinal (-1 when none). */
  lastOrdinal: number;
}

/**
 * The forms of the blocks encoded last, a ring of FORM_SLOTS: a block is encoded once per
 * version and the next version extends it, so the few blocks a process is writing are what it
 * needs (a block not found is encoded in full: the same text). A ring rather than a WeakMap,
 * whose insertion per write and the scavenger's ephemeron pass cost more than this scan.
 */
const FORM_SLOTS = 16;
const formBlocks: Array<Block | undefined> = new Array(FORM_SLOTS).fill(undefined);
const formTexts: Array<EncodedForm | undefined> = new Array(FORM_SLOTS).fill(undefined);
let formNext = 0;

function formOf(b: Block): EncodedForm | undefined {
  for (let i = 0; i < FORM_SLOTS; i++) if (formBlocks[i] === b) return formTexts[i];
  return undefined;
}

function keepForm(b: Block, form: EncodedForm): void {
  formBlocks[formNext] = b;
  formTexts[formNext] = form;
  formNext = (formNext + 1) % FORM_SLOTS;
}
/**
 * The block BlockDraft.finish made last, its base and the ordinals the draft assigned: one slot,
 * not a map per block. Every caller encodes the block it finished at once (the write that
 * follows), so one slot is all the extension needs; a block met later (the slot taken by
 * another) is encoded in full, the same text. Cleared once that block is encoded: the slot must
 * not keep a chain of versions alive (see encodeBlock).
 */
let draftBlock: Block | undefined;
let draftBase: Block | undefined;
let draftAdded: readonly number[] | undefined;

export function encodeBlock(b: Block): string {
  // Written by hand rather than JSON.stringify of a fresh object: this runs once per pod, and
  // each attribute's JSON is kept between block versions (attributes are shared). The output
  // is exactly what JSON.stringify gives for the same object (test/ipam/block.test.ts).
  let form = formOf(b);
  if (form === undefined) {
    form =
      (b === draftBlock
        ? extendedForm(b, draftBase as Block, draftAdded as number[])
        : undefined) ?? fullForm(b);
    keepForm(b, form);
  }
  // Its form known, the block needs its base no more (a later draft extends this form). The
  // link kept, a chain of drafts held every earlier version of a cached block alive, each with
  // its `added` ordinals; in a process still warming up V8 then threw away the optimized code
  // of everything that builds a draft (an allocation-site dependency), which no longer happens
  // with the chain cut (bench/ipam_assign.ts's first row, README).
  if (b === draftBlock) {
    draftBlock = undefined;
    draftBase = undefined;
    draftAdded = undefined;
  }
  return form.text;
}

/** The stored form from its pieces, noting where each array's contents lie. */
function assemble(
  b: Block,
  head: string,
  owners: string,
  sequences: string,
  attributes: string,
  attributeCount: number,
  lastOrdinal: number,
): EncodedForm {
  let text = `${head}"allocated":"${bitmapBase64(b)}","owners":[`;
  const ownersFrom = text.length;
  text += owners;
  const ownersTo = text.length;
  text += '],"sequences":[';
  const sequencesFrom = text.length;
  text += sequences;
  const sequencesTo = text.length;
  text += `],"unallocated":${runsJson(b.unallocated)},"attributes":[`;
  const attributesFrom = text.length;
  text += attributes;
  const attributesTo = text.length;
  text +=
    `],"sequenceNumber":${JSON.stringify(b.sequenceNumber)},` +
    `"emptySince":${JSON.stringify(b.emptySince)}}`;
  return {
    text,
    headEnd: head.length,
    ownersFrom,
    ownersTo,
    sequencesFrom,
    sequencesTo,
    attributesFrom,
    attributesTo,
    affinity: b.affinity,
    attributeCount,
    lastOrdinal,
  };
}

function fullForm(b: Block): EncodedForm {
  const size = b.owner.length;
  const owners: number[] = [];
  const sequences: number[] = [];
  let lastOrdinal = -1;
  for (let o = 0; o < size; o++) {
    const idx = b.owner[o] as number;
    if (idx < 0) continue;
    owners.push(idx);
    sequences.push(b.seqForAllocation.get(o) ?? 0);
    lastOrdinal = o;
  }
  const attributes: string[] = [];
  for (const a of b.attributes) attributes.push(storedAttributeJson(b, a));
  return assemble(
    b,
    `{"cidr":${JSON.stringify(formatCidr(b.cidr))},"affinity":${JSON.stringify(b.affinity)},` +
      `"affinityClaimTime":${JSON.stringify(b.affinityClaimTime)},`,
    owners.join(","),
    sequences.join(","),
    attributes.join(","),
    b.attributes.length,
    lastOrdinal,
  );
}

/** A drafted block's form patched from its base's, when the draft only appended (see EncodedForm). */
function extendedForm(b: Block, from: Block, added: readonly number[]): EncodedForm | undefined {
  const base = formOf(from);
  if (
    base === undefined ||
    base.affinity !== b.affinity ||
    from.cidr !== b.cidr ||
    from.affinityClaimTime !== b.affinityClaimTime ||
    base.attributeCount > b.attributes.length
  )
    return undefined;
  let last = base.lastOrdinal;
  for (const o of added) {
    if (o <= last) return undefined;
    last = o;
  }
  const text = base.text;
  let owners = text.slice(base.ownersFrom, base.ownersTo);
  let sequences = text.slice(base.sequencesFrom, base.sequencesTo);
  for (const o of added) {
    const sep = owners.length > 0 ? "," : "";
    owners += `${sep}${b.owner[o] as number}`;
    sequences += `${sep}${b.seqForAllocation.get(o) ?? 0}`;
  }
  let attributes = text.slice(base.attributesFrom, base.attributesTo);
  for (let i = base.attributeCount; i < b.attributes.length; i++)
    // A draft's new attribute (appended by it, encoded once here): not memoized.
    attributes += `${attributes.length > 0 ? "," : ""}${attributeJson(b, b.attributes[i] as AllocationAttributes)}`;
  return assemble(
    b,
    text.slice(0, base.headEnd),
    owners,
    sequences,
    attributes,
    b.attributes.length,
    last,
  );
}

/** bitmapOf's output, reused (encodeBlock runs once per pod; its bitmap is used at once). */
let bitmapScratch = new Uint8Array(64);

/** The block's allocation bitmap in base64. */
function bitmapBase64(b: Block): string {
  const n = bitmapOf(b); // may replace bitmapScratch: read it after
  return base64(bitmapScratch, n);
}

/** Writes the block's allocation bitmap into bitmapScratch; returns its length in bytes. */
function bitmapOf(b: Block): number {
  const size = b.owner.length;
  const n = (size + 7) >> 3;
  if (bitmapScratch.length < n) bitmapScratch = new Uint8Array(n);
  const bitmap = bitmapScratch;
  bitmap.fill(0, 0, n);
  for (let o = 0; o < size; o++) if ((b.owner[o] as number) >= 0) bitmap[o >> 3] |= 1 << (o & 7);
  return n;
}

/** JSON of the free queue as runs [first, last] (toRuns), without the arrays. */
function runsJson(ordinals: readonly number[]): string {
  let out = "";
  let first = -1;
  let last = -1;
  for (const o of ordinals) {
    if (first >= 0 && o === last + 1) {
      last = o;
      continue;
    }
    if (first >= 0) out += `${out.length > 0 ? "," : ""}[${first},${last}]`;
    first = o;
    last = o;
  }
  if (first >= 0) out += `${out.length > 0 ? "," : ""}[${first},${last}]`;
  return `[${out}]`;
}

/** Decodes and checks a stored block; throws IpamDataError naming key on any inconsistency. */
export function decodeBlock(key: string, value: string): Block {
  const bad = (reason: string): never => {
    throw new IpamDataError(key, reason);
  };
  let s: StoredBlock;
  try {
    s = readStoredBlock(value);
  } catch (err) {
    if (err instanceof ShapeError) return bad(err.message);
    throw err;
  }
  let cidr: Cidr;
  try {
    cidr = parseCidr(s.cidr);
  } catch (err) {
    return bad((err as Error).message);
  }
  const sizeBig = cidrSize(cidr);
  if (sizeBig > BigInt(MAX_BLOCK_ADDRESSES)) bad(`block "${s.cidr}" is too large`);
  const size = Number(sizeBig);
  const bitmap = Buffer.from(s.allocated, "base64");
  if (bitmap.length !== (size + 7) >> 3) {
    bad(`allocation bitmap has ${bitmap.length} bytes, expected ${(size + 7) >> 3}`);
  }
  if (s.sequences !== undefined && s.sequences.length !== s.owners.length)
    bad(`"sequences" has ${s.sequences.length} entries, "owners" ${s.owners.length}`);
  const owner = new Array<number>(size).fill(-1);
  const seqForAllocation = SequenceMap.empty(size);
  let k = 0;
  for (let o = 0; o < size; o++) {
    if (((bitmap[o >> 3] as number) & (1 << (o & 7))) === 0) continue;
    const idx = s.owners[k];
    if (idx === undefined) bad(`bitmap has more allocations than "owners" (${s.owners.length})`);
    if ((idx as number) >= s.attributes.length)
      bad(`ordinal ${o} refers to missing attribute ${idx}`);
    owner[o] = idx as number;
    const seq = s.sequences ? s.sequences[k] : s.sequenceNumberForAllocation?.[String(o)];
    if (seq === undefined) bad(`ordinal ${o} has no sequence number`);
    seqForAllocation.set(o, seq as number);
    k++;
  }
  if (k !== s.owners.length) bad(`"owners" has ${s.owners.length} entries, bitmap ${k}`);
  for (const [a, b] of s.unallocated) {
    if (b < a || b >= size) bad(`free run [${a}, ${b}] is not inside the block`);
  }
  const unallocated = fromRuns(s.unallocated);
  const seen = new Uint8Array(size);
  for (const o of unallocated) {
    if (o >= size) bad(`free ordinal ${o} is outside the block`);
    if ((owner[o] as number) >= 0) bad(`ordinal ${o} is both allocated and free`);
    if (seen[o]) bad(`ordinal ${o} is free twice`);
    seen[o] = 1;
  }
  for (let o = 0; o < size; o++) {
    if ((owner[o] as number) < 0 && !seen[o]) bad(`ordinal ${o} is neither allocated nor free`);
  }
  const affinityNode = s.affinity?.startsWith("host:") ? s.affinity.slice(5) : undefined;
  return {
    cidr,
    affinity: s.affinity,
    affinityClaimTime: s.affinityClaimTime,
    owner,
    unallocated,
    attributes: s.attributes.map((a) => ({
      handleId: a.handle_id,
      secondary:
        a.secondary.node === undefined && affinityNode
          ? { ...a.secondary, node: affinityNode }
          : a.secondary,
    })),
    sequenceNumber: s.sequenceNumber,
    seqForAllocation,
    emptySince: s.emptySince,
  };
}

interface StoredBlock {
  cidr: string;
  affinity: string | null;
  affinityClaimTime: string | null;
  allocated: string;
  owners: number[];
  /** The current form: per allocated ordinal, in ordinal order. */
  sequences?: number[];
  /** The first form: per allocated ordinal by its decimal string. */
  sequenceNumberForAllocation?: Record<string, number>;
  unallocated: Array<[number, number]>;
  attributes: Array<{ handle_id: string | null; secondary: Record<string, string> }>;
  sequenceNumber: number;
  emptySince: number | null;
}

const BLOCK_KEYS = [
  "cidr",
  "affinity",
  "affinityClaimTime",
  "allocated",
  "owners",
  "sequences",
  "unallocated",
  "attributes",
  "sequenceNumber",
  "sequenceNumberForAllocation",
  "emptySince",
] as const;

const NO_SECONDARY: Readonly<Record<string, string>> = Object.freeze({});

function readStoredBlock(text: string): StoredBlock {
  const o = v.parseJsonObject(text, "block");
  v.object(o, "(root)", BLOCK_KEYS);
  const current = o.sequences !== undefined;
  if (current === (o.sequenceNumberForAllocation !== undefined))
    throw new ShapeError(
      'exactly one of "sequences" and "sequenceNumberForAllocation" must be present',
    );
  let sequences: number[] | undefined;
  let seqMap: Record<string, number> | undefined;
  if (current) sequences = v.array(o, "sequences").map((x, i) => v.nonNegInt(x, `sequences.${i}`));
  else {
    const seqs = v.object(o.sequenceNumberForAllocation, "sequenceNumberForAllocation");
    for (const [k, x] of Object.entries(seqs)) v.nonNegInt(x, `sequenceNumberForAllocation.${k}`);
    seqMap = seqs as Record<string, number>;
  }
  return {
    cidr: v.string(o, "cidr"),
    affinity: v.nullableString(o, "affinity"),
    affinityClaimTime: v.nullableString(o, "affinityClaimTime"),
    allocated: v.string(o, "allocated"),
    owners: v.array(o, "owners").map((x, i) => v.nonNegInt(x, `owners.${i}`)),
    sequences,
    sequenceNumberForAllocation: seqMap,
    unallocated: v.array(o, "unallocated").map((r, i) => {
      if (!Array.isArray(r) || r.length !== 2)
        throw new ShapeError(`field "unallocated.${i}" must be a [first, last] pair`);
      return [v.nonNegInt(r[0], `unallocated.${i}.0`), v.nonNegInt(r[1], `unallocated.${i}.1`)] as [
        number,
        number,
      ];
    }),
    attributes: v.array(o, "attributes").map((a, i) => readStoredAttribute(a, i)),
    sequenceNumber: v.nonNegInt(o.sequenceNumber, "sequenceNumber"),
    emptySince: v.nullableNumber(o, "emptySince"),
  };
}

/** [handle_id] or [handle_id, secondary] (current form), or {handle_id, secondary} (first). */
function readStoredAttribute(
  a: unknown,
  i: number,
): { handle_id: string | null; secondary: Record<string, string> } {
  if (Array.isArray(a)) {
    if (a.length < 1 || a.length > 2)
      throw new ShapeError(
        `field "attributes.${i}" must be [handle_id] or [handle_id, secondary], got ${a.length} items`,
      );
    const h = a[0] as unknown;
    if (h !== null && typeof h !== "string")
      throw new ShapeError(`field "attributes.${i}.0" must be a string or null`);
    return {
      handle_id: h,
      secondary:
        a.length === 2
          ? v.stringMap(a[1], `attributes.${i}.1`)
          : (NO_SECONDARY as Record<string, string>),
    };
  }
  const ao = v.object(a, `attributes.${i}`, ["handle_id", "secondary"]);
  return {
    handle_id: v.nullableString(ao, "handle_id"),
    secondary: v.stringMap(ao.secondary, `attributes.${i}.secondary`),
  };
}

type StoredAttribute = [string | null] | [string | null, Readonly<Record<string, string>>];

/** Each attribute's stored JSON, by attribute object and block affinity (attributes are shared between block versions). */
const storedAttributes = new WeakMap<
  AllocationAttributes,
  { affinity: string | null; json: string }
>();

/**
 * One attribute as stored, as JSON: [handle_id], or [handle_id, secondary] with the owner node
 * left out (storedSecondary) when anything remains.
 */
function storedAttributeJson(b: Block, a: AllocationAttributes): string {
  const memo = storedAttributes.get(a);
  if (memo !== undefined && memo.affinity === b.affinity) return memo.json;
  const json = attributeJson(b, a);
  storedAttributes.set(a, { affinity: b.affinity, json });
  return json;
}

/** storedAttributeJson without its memo. */
function attributeJson(b: Block, a: AllocationAttributes): string {
  if (onlyOwnNode(b, a.secondary)) return `[${JSON.stringify(a.handleId)}]`;
  const secondary = storedSecondary(b, a);
  let stored: StoredAttribute = [a.handleId];
  for (const _ in secondary) {
    stored = [a.handleId, secondary];
    break;
  }
  return JSON.stringify(stored);
}

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Standard padded base64 (as Buffer's), without a Buffer per call: bitmaps are a few bytes. */
function base64(bytes: Uint8Array, length: number): string {
  let out = "";
  let i = 0;
  for (; i + 2 < length; i += 3) {
    const n =
      ((bytes[i] as number) << 16) | ((bytes[i + 1] as number) << 8) | (bytes[i + 2] as number);
    out += BASE64[n >> 18] + BASE64[(n >> 12) & 63] + BASE64[(n >> 6) & 63] + BASE64[n & 63];
  }
  const rest = length - i;
  if (rest === 1) {
    const n = (bytes[i] as number) << 16;
    out += `${BASE64[n >> 18]}${BASE64[(n >> 12) & 63]}==`;
  } else if (rest === 2) {
    const n = ((bytes[i] as number) << 16) | ((bytes[i + 1] as number) << 8);
    out += `${BASE64[n >> 18]}${BASE64[(n >> 12) & 63]}${BASE64[(n >> 6) & 63]}=`;
  }
  return out;
}

/** The attributes are the block's own node alone (a pod of this node): stored as [handle]. */
function onlyOwnNode(b: Block, secondary: Readonly<Record<string, string>>): boolean {
  let n = 0;
  for (const k in secondary) if (k !== "node" || ++n > 1) return false;
  return n === 1 && isHostAffinity(b.affinity, secondary.node as string);
}

/** b.affinity === hostAffinity(node), without building that string. */
function isHostAffinity(affinity: string | null, node: string): boolean {
  return (
    affinity !== null &&
    affinity.length === node.length + 5 &&
    affinity.startsWith("host:") &&
    affinity.endsWith(node)
  );
}

/**
 * The owner attributes as stored: "node" is left out when it is the block's own node (the
 * common case; decodeBlock puts it back), so only borrowed addresses carry it.
 */
function storedSecondary(b: Block, a: AllocationAttributes): Readonly<Record<string, string>> {
  const node = a.secondary.node;
  if (node === undefined || !isHostAffinity(b.affinity, node)) return a.secondary;
  const { node: _node, ...rest } = a.secondary;
  return rest;
}

function fromRuns(runs: ReadonlyArray<readonly [number, number]>): number[] {
  const out: number[] = [];
  for (const [a, b] of runs) {
    for (let o = a; o <= b; o++) out.push(o);
  }
  return out;
}

/**
 * Assigns one given free ordinal to attrs (Calico's AssignIP of a chosen address). Returns the
 * new block and the allocation's sequence number; throws when the ordinal is taken.
 */
export function assignOrdinal(
  b: Block,
  ordinal: number,
  attrs: AllocationAttributes,
): { block: Block; sequence: number } {
  if (ordinal < 0 || ordinal >= b.owner.length || (b.owner[ordinal] as number) >= 0)
    throw new Error(`Address ${addressOf(b, ordinal)} is not free in block ${formatCidr(b.cidr)}`);
  const owner = b.owner.slice();
  const attributes = [...b.attributes];
  let idx = attributes.findIndex((a) => sameAttributes(a, attrs));
  if (idx < 0) {
    idx = attributes.length;
    attributes.push({ handleId: attrs.handleId, secondary: { ...attrs.secondary } });
  }
  owner[ordinal] = idx;
  const seqs = SequenceMap.copyOf(b.seqForAllocation, owner.length);
  seqs.set(ordinal, b.sequenceNumber);
  return {
    block: {
      ...b,
      owner,
      unallocated: b.unallocated.filter((o) => o !== ordinal),
      attributes,
      sequenceNumber: b.sequenceNumber + 1,
      seqForAllocation: seqs,
      emptySince: null,
    },
    sequence: b.sequenceNumber,
  };
}
