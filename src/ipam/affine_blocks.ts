// A node's cached blocks of one family (IpamStore's fast path) with an index of the handles
// they hold. Owns: keeping that index equal to "some cached block has an attribute with this
// handle id" through every set and delete. Pure: no datastore. Not: when the cache is filled or
// trusted (store.ts), nor the block value (block.ts).
//
// Why an index: every assignment first asks whether the pod's handle already holds an address
// in one of the node's blocks (an ADD retried), and that scan over every cached block was ~20%
// of the allocator's JavaScript per pod. A new block version drafted by assignments keeps its
// predecessor's attributes as a prefix (BlockDraft appends), so the index follows a write by
// adding only the new tail; any other change (a release compacts attributes, a block read
// afresh) is a full remove-and-add of that block's handles.
import type { AllocationAttributes, Block } from "./block.js";

export interface BlockEntry {
  key: string;
  rev: number;
  block: Block;
}

export class AffineBlocks extends Map<string, BlockEntry> {
  /** Handle id -> number of attributes in the cached blocks that name it. */
  private holders: Map<string | null, number> | undefined;

  /** True when some cached block has an allocation attribute for handleId. */
  holds(handleId: string): boolean {
    return this.index().has(handleId);
  }

  override set(key: string, entry: BlockEntry): this {
    const old = super.get(key);
    if (this.holders !== undefined && old?.block.attributes !== entry.block.attributes) {
      const was = old?.block.attributes ?? [];
      const now = entry.block.attributes;
      if (isPrefix(was, now)) this.add(now, was.length);
      else {
        this.remove(was);
        this.add(now, 0);
      }
    }
    return super.set(key, entry);
  }

  override delete(key: string): boolean {
    const old = super.get(key);
    if (old === undefined) return false;
    if (this.holders !== undefined) this.remove(old.block.attributes);
    return super.delete(key);
  }

  override clear(): void {
    this.holders = undefined;
    super.clear();
  }

  /** The index, built on first use (the Map constructor calls set before fields exist). */
  private index(): Map<string | null, number> {
    if (this.holders === undefined) {
      this.holders = new Map();
      for (const e of this.values()) this.add(e.block.attributes, 0);
    }
    return this.holders;
  }

  private add(attributes: readonly AllocationAttributes[], from: number): void {
    const h = this.holders as Map<string | null, number>;
    for (let i = from; i < attributes.length; i++) {
      const id = (attributes[i] as AllocationAttributes).handleId;
      h.set(id, (h.get(id) ?? 0) + 1);
    }
  }

  private remove(attributes: readonly AllocationAttributes[]): void {
    const h = this.holders as Map<string | null, number>;
    for (const a of attributes) {
      const n = (h.get(a.handleId) ?? 0) - 1;
      if (n > 0) h.set(a.handleId, n);
      else h.delete(a.handleId);
    }
  }
}

/** True when `was` is `now`'s first elements, the same objects (a draft appended to it). */
function isPrefix(
  was: readonly AllocationAttributes[],
  now: readonly AllocationAttributes[],
): boolean {
  if (was.length > now.length) return false;
  for (let i = 0; i < was.length; i++) if (was[i] !== now[i]) return false;
  return true;
}
