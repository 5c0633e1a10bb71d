// The RIB's prefix index: numeric IPv4 and IPv6 prefixes to small integer prefix ids, in
// open-addressing hash tables over typed arrays (linear probing, load at most 5/8,
// backward-shift deletion, no tombstones). Ids are dense and reused after removal.
// Not: what the RIB keeps per prefix.
import { formatV4, formatV6, type PrefixList } from "./prefix.js";

const NONE = -1;
export const FAM_V4 = 4;
export const FAM_V6 = 6;

function hashV4(addr: number, len: number): number {
  let h = Math.imul(addr ^ Math.imul(len + 1, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

function hashV6(w: Uint32Array, off: number, len: number): number {
  let h = Math.imul(len + 1, 0x9e3779b1);
  for (let i = 0; i < 4; i++) {
    h = Math.imul(h ^ (w[off + i] as number), 0x85ebca6b);
    h ^= h >>> 15;
  }
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Growth of the typed arrays: doubling while small, then 1.25x (little slack at 1M routes). */
export function nextCapacity(len: number): number {
  return len < 65_536 ? len * 2 : Math.ceil(len * 1.25);
}

type Growable =
  | Uint8Array<ArrayBuffer>
  | Uint16Array<ArrayBuffer>
  | Uint32Array<ArrayBuffer>
  | Int32Array<ArrayBuffer>;

/** ES2024 resizable ArrayBuffer (Node 20 has it; the project's lib is ES2023). */
interface Resizable {
  readonly resizable: boolean;
  readonly maxByteLength: number;
  resize(bytes: number): void;
}
const ResizableBuffer = ArrayBuffer as unknown as new (
  bytes: number,
  opts: { maxByteLength: number },
) => ArrayBuffer;

/** Address space reserved for a grown array: only the pages in use cost memory. */
const MIN_RESERVE = 16 << 20;
const RESERVE_FACTOR = 8;

/** A typed array whose memory can be given back at once (release()), without waiting for GC. */
export function releasable<T extends Growable>(
  Ctor: new (b: ArrayBuffer, off: number, len: number) => T,
  n: number,
  bytesPer: number,
  reserve = n * bytesPer,
): T {
  return new Ctor(new ResizableBuffer(n * bytesPer, { maxByteLength: reserve }), 0, n);
}

/** Gives a releasable array's memory back to the system now; the array must not be used again. */
export function release(a: Growable): void {
  const b = a.buffer as unknown as Resizable;
  // Only a view of the whole buffer: a subarray must not take its parent's memory away.
  if (b.resizable && a.byteOffset === 0 && a.byteLength === a.buffer.byteLength) b.resize(0);
}

type GrowableCtor<T extends Growable> = {
  new (b: ArrayBuffer, off: number, len: number): T;
  readonly BYTES_PER_ELEMENT: number;
};

/**
 * A typed array that grown() can grow in place. Arrays that grow are all made this way, so
 * each hot access site sees one kind of array (a mix of plain and resizable-backed arrays at
 * one site makes V8's optimized code polymorphic).
 */
export function growable<T extends Growable>(Ctor: GrowableCtor<T>, n: number): T {
  const per = Ctor.BYTES_PER_ELEMENT;
  return releasable(Ctor, n, per, Math.max(n * per * RESERVE_FACTOR, MIN_RESERVE));
}

/**
 * `a` with room for at least n entries (new entries zero, or `fill`). Grows in place: the
 * arrays live in resizable buffers with address space reserved ahead, so growing copies
 * nothing and leaves no old array behind for the GC (at 1M routes the copies of a 1.25x
 * growth would add up to several times the RIB before a major GC freed them).
 */
export function grown<T extends Growable>(a: T, n: number, fill = 0): T {
  if (n <= a.length) return a;
  const len = Math.max(n, nextCapacity(a.length));
  const per = a.BYTES_PER_ELEMENT;
  const Ctor = a.constructor as new (b: ArrayBuffer, off: number, len: number) => T;
  const buf = a.buffer as unknown as Resizable;
  let b: T;
  if (buf.resizable && a.byteOffset === 0 && len * per <= buf.maxByteLength) {
    buf.resize(len * per);
    b = new Ctor(a.buffer, 0, len);
  } else {
    b = releasable(Ctor, len, per, Math.max(len * per * RESERVE_FACTOR, MIN_RESERVE));
    b.set(a);
    release(a);
  }
  if (fill !== 0) b.fill(fill, a.length);
  return b;
}

/** A stack of free integers in a typed array (no boxed numbers). */
class FreeStack {
  private a = growable(Int32Array, 64);
  size = 0;
  push(x: number): void {
    if (this.size === this.a.length) this.a = grown(this.a, this.size * 2);
    this.a[this.size++] = x;
  }
  pop(): number {
    return this.size === 0 ? NONE : (this.a[--this.size] as number);
  }
  /** Drops the storage of a big stack once it is empty again. */
  trim(): void {
    if (this.size === 0 && this.a.length > 65_536) {
      release(this.a);
      this.a = growable(Int32Array, 64);
    }
  }
}

export class PrefixTable {
  /** Capacity of the per-prefix arrays (grows by nextCapacity(); `onGrow` is told). */
  cap: number;
  /** Ids below `top` have been used; `fam[id] === 0` marks a free one. */
  top = 0;
  fam: Uint8Array<ArrayBuffer>;
  /** IPv4: the address; IPv6: index into v6Words (x4). */
  key: Uint32Array<ArrayBuffer>;
  len: Uint8Array<ArrayBuffer>;
  v6Words = growable(Uint32Array, 64);
  count4 = 0;
  count6 = 0;
  private free = new FreeStack();
  private v6Top = 0;
  private v6Free = new FreeStack();
  private v4Slots = releasable(Int32Array, 2048, 4);
  private v6Slots = releasable(Int32Array, 64, 4);

  constructor(
    initial: number,
    private readonly onGrow: (cap: number) => void,
  ) {
    this.cap = initial;
    this.fam = growable(Uint8Array, initial);
    this.key = growable(Uint32Array, initial);
    this.len = growable(Uint8Array, initial);
  }

  findV4(addr: number, len: number): number {
    const slots = this.v4Slots;
    const mask = slots.length - 1;
    let i = hashV4(addr, len) & mask;
    for (;;) {
      const s = slots[i] as number;
      if (s === 0) return NONE;
      if (this.key[s - 1] === addr && this.len[s - 1] === len) return s - 1;
      i = (i + 1) & mask;
    }
  }

  /** The id of addr/len, added when absent. `addr` must be an unsigned u32. */
  findOrAddV4(addr: number, len: number): number {
    if (len > 32) throw new Error(`IPv4 prefix length ${len} is out of range`);
    let slots = this.v4Slots;
    let mask = slots.length - 1;
    let i = hashV4(addr, len) & mask;
    for (;;) {
      const s = slots[i] as number;
      if (s === 0) break;
      if (this.key[s - 1] === addr && this.len[s - 1] === len) return s - 1;
      i = (i + 1) & mask;
    }
    const id = this.alloc(FAM_V4, addr, len);
    if ((this.count4 + 1) * 8 > slots.length * 5) {
      this.v4Slots = this.rehash(slots, FAM_V4, id);
      slots = this.v4Slots;
      mask = slots.length - 1;
      i = hashV4(addr, len) & mask;
      while (slots[i] !== 0) i = (i + 1) & mask;
    }
    slots[i] = id + 1;
    this.count4++;
    return id;
  }

  /** IPv6: four big-endian u32 words at w[off..off+3]. */
  findV6(w: Uint32Array, off: number, len: number): number {
    const slots = this.v6Slots;
    const mask = slots.length - 1;
    let i = hashV6(w, off, len) & mask;
    for (;;) {
      const s = slots[i] as number;
      if (s === 0) return NONE;
      if (this.len[s - 1] === len && this.v6Equal(s - 1, w, off)) return s - 1;
      i = (i + 1) & mask;
    }
  }

  findOrAddV6(w: Uint32Array, off: number, len: number): number {
    if (len > 128) throw new Error(`IPv6 prefix length ${len} is out of range`);
    const hit = this.findV6(w, off, len);
    if (hit !== NONE) return hit;
    let k = this.v6Free.pop();
    if (k === NONE) {
      k = this.v6Top++;
      this.v6Words = grown(this.v6Words, (k + 1) * 4);
    }
    for (let i = 0; i < 4; i++) this.v6Words[k * 4 + i] = w[off + i] as number;
    const id = this.alloc(FAM_V6, k, len);
    if ((this.count6 + 1) * 8 > this.v6Slots.length * 5)
      this.v6Slots = this.rehash(this.v6Slots, FAM_V6, id);
    const slots = this.v6Slots;
    const mask = slots.length - 1;
    let i = hashV6(w, off, len) & mask;
    while (slots[i] !== 0) i = (i + 1) & mask;
    slots[i] = id + 1;
    this.count6++;
    return id;
  }

  /** Removes a prefix; its id becomes free for reuse. */
  remove(id: number): void {
    if (this.fam[id] === FAM_V4) {
      this.deleteSlot(this.v4Slots, id);
      this.count4--;
    } else {
      this.deleteSlot(this.v6Slots, id);
      this.count6--;
      this.v6Free.push(this.key[id] as number);
    }
    this.fam[id] = 0;
    this.free.push(id);
    if (this.count4 + this.count6 === 0) {
      this.free.trim();
      this.v6Free.trim();
    }
  }

  /** Text form ("10.0.0.0/24", "fd00::/64"). */
  text(id: number): string {
    return this.fam[id] === FAM_V4
      ? formatV4(this.key[id] as number, this.len[id] as number)
      : formatV6(this.v6Words, (this.key[id] as number) * 4, this.len[id] as number);
  }

  /** Appends the prefix to the list of its family. */
  pushTo(id: number, v4: PrefixList, v6: PrefixList): void {
    if (this.fam[id] === FAM_V4) v4.pushV4(this.key[id] as number, this.len[id] as number);
    else v6.pushV6(this.v6Words, (this.key[id] as number) * 4, this.len[id] as number);
  }

  bytes(): number {
    return (
      this.fam.byteLength +
      this.key.byteLength +
      this.len.byteLength +
      this.v6Words.byteLength +
      this.v4Slots.byteLength +
      this.v6Slots.byteLength
    );
  }

  private alloc(fam: number, key: number, len: number): number {
    let id = this.free.pop();
    if (id === NONE) {
      if (this.top === this.cap) this.grow();
      id = this.top++;
    }
    this.fam[id] = fam;
    this.key[id] = key;
    this.len[id] = len;
    return id;
  }

  private grow(): void {
    const n = nextCapacity(this.cap);
    this.fam = grown(this.fam, n);
    this.key = grown(this.key, n);
    this.len = grown(this.len, n);
    this.cap = this.fam.length;
    this.onGrow(this.cap);
  }

  private v6Equal(id: number, w: Uint32Array, off: number): boolean {
    const k = (this.key[id] as number) * 4;
    const v = this.v6Words;
    return (
      v[k] === w[off] &&
      v[k + 1] === w[off + 1] &&
      v[k + 2] === w[off + 2] &&
      v[k + 3] === w[off + 3]
    );
  }

  private homeOf(id: number, mask: number): number {
    return this.fam[id] === FAM_V4
      ? hashV4(this.key[id] as number, this.len[id] as number) & mask
      : hashV6(this.v6Words, (this.key[id] as number) * 4, this.len[id] as number) & mask;
  }

  /** Linear probing with backward-shift deletion. */
  private deleteSlot(slots: Int32Array, id: number): void {
    const mask = slots.length - 1;
    let i = this.homeOf(id, mask);
    while (slots[i] !== id + 1) i = (i + 1) & mask;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const s = slots[j] as number;
      if (s === 0) break;
      const k = this.homeOf(s - 1, mask);
      // Move s back to i unless its home lies cyclically in (i, j].
      const inRange = i <= j ? k > i && k <= j : k > i || k <= j;
      if (!inRange) {
        slots[i] = s;
        i = j;
      }
    }
    slots[i] = 0;
  }

  /**
   * Twice the slots, filled from the prefix arrays in id order (read as one stream, where
   * walking the old slots would read them at random), leaving out `skip` (just allocated,
   * inserted by the caller).
   */
  private rehash(old: Int32Array<ArrayBuffer>, fam: number, skip: number): Int32Array<ArrayBuffer> {
    const slots = releasable(Int32Array, old.length * 2, 4);
    release(old);
    const mask = slots.length - 1;
    const { key, len } = this;
    for (let id = 0; id < this.top; id++) {
      if (this.fam[id] !== fam || id === skip) continue;
      let i =
        fam === FAM_V4
          ? hashV4(key[id] as number, len[id] as number) & mask
          : hashV6(this.v6Words, (key[id] as number) * 4, len[id] as number) & mask;
      while (slots[i] !== 0) i = (i + 1) & mask;
      slots[i] = id + 1;
    }
    return slots;
  }
}
