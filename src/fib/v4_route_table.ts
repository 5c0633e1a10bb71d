// The kernel FIB's IPv4 route state in one typed array: (slot, addr, len) → desired and
// installed group ids, 10 bytes a cell, each cell's fields side by side (one cache miss a
// lookup), in an open-addressing table (linear probing, backward-shift deletion, grown in
// place), and how many routes are installed per group (the FIB's nexthop objects go once no
// route names them). Owns storage, lookup and iteration. Not: what slots and groups mean, or any netlink
// (kernel_fib.ts).

/** No group: the route is not desired / not installed. */
export const NO_GROUP = -1;

/** Load factor that triggers growth, and the growth factor (cells after ÷ before). */
const MAX_LOAD = 0.85;
const GROWTH = 1.25;
const MIN_CAPACITY = 64;
/** Largest (slot, len) pair: slot < 2^15, len ≤ 63, stored +1 so that 0 marks a free cell. */
const MAX_SLOT = 2 ** 15;
/** Address space reserved for the cells: only the pages in use cost memory. */
const MIN_RESERVE = 64 << 20;
const RESERVE_FACTOR = 8;
/** Cells taken out at a time while the table grows. */
const GROW_CHUNK = 4096;

/**
 * A cell is five words: the address's low and high 16 bits, meta (slot·64 + len + 1, 0 =
 * free), and the desired and installed group ids stored +1 (0 = none). Words are u16 until a
 * meta or a group id needs more, then u32 (20 bytes a cell).
 */
const STRIDE = 5;
const ADDR_LO = 0;
const ADDR_HI = 1;
const META = 2;
const DES = 3;
const INS = 4;

type Cells = Uint16Array | Uint32Array;

/** ES2024 resizable ArrayBuffer (Node 20 has it; the project's lib is ES2023). */
type Resizable = ArrayBuffer & { resize(bytes: number): void; readonly maxByteLength: number };
const ResizableBuffer = ArrayBuffer as unknown as new (
  bytes: number,
  opts: { maxByteLength: number },
) => Resizable;

type CellsCtor = {
  new (b: ArrayBuffer, off: number, n: number): Cells;
  readonly BYTES_PER_ELEMENT: number;
};

/**
 * n words in a resizable buffer with room reserved ahead: the table grows in place (no old
 * copy left for the GC: at 1M routes a full old table next to the new one is ~12 MiB of
 * peak), and release() gives its memory back at once.
 */
function words(Ctor: CellsCtor, n: number): Cells {
  const bytes = n * Ctor.BYTES_PER_ELEMENT;
  const reserve = Math.max(bytes * RESERVE_FACTOR, MIN_RESERVE);
  return new Ctor(new ResizableBuffer(bytes, { maxByteLength: reserve }), 0, n);
}

/** The words with n in all (new ones zero): in place when the reserve allows, else copied. */
function resized(c: Cells, n: number): Cells {
  const Ctor = c.constructor as CellsCtor;
  const buf = c.buffer as Resizable;
  if (n * c.BYTES_PER_ELEMENT <= buf.maxByteLength) {
    buf.resize(n * c.BYTES_PER_ELEMENT);
    return new Ctor(buf, 0, n);
  }
  const b = words(Ctor, n);
  b.set(c);
  release(c);
  return b;
}

function release(c: Cells): void {
  (c.buffer as Resizable).resize(0);
}

function hash(addr: number, meta: number): number {
  // murmur3 fmix32 over both words: sequential /32s spread evenly.
  let h = (addr ^ Math.imul(meta, 0x9e3779b1)) | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * One cell per route that is desired, installed, or both; a cell is removed when neither id
 * is set. Cell indexes given out by cell() are word offsets (a multiple of STRIDE). Growth by
 * 1.25x keeps the load in 0.68..0.85.
 */
export class V4RouteTable {
  private cap: number;
  private w: Cells;
  /** Largest storable word (meta or group id + 1). */
  private maxWord = 0xffff;
  private used = 0;
  /** Routes with a desired group / with an installed group. */
  desiredCount = 0;
  installedCount = 0;
  /** Installed routes per group id (index gid). */
  private insByGroup = new Int32Array(64);
  /**
   * Bumped whenever cells move (growth, a removal's backward shift): a cell index from before
   * is valid as long as this has not changed (setDesiredMany's `cells`).
   */
  gen = 0;

  constructor(capacity = MIN_CAPACITY) {
    this.cap = Math.max(MIN_CAPACITY, Math.ceil(capacity));
    this.w = words(Uint16Array, this.cap * STRIDE);
  }

  /** Cells in use (routes desired or installed). */
  get size(): number {
    return this.used;
  }

  /** Bytes held by the cells (for status and tests). */
  get bytes(): number {
    return this.cap * STRIDE * this.w.BYTES_PER_ELEMENT;
  }

  getDesired(slot: number, addr: number, len: number): number {
    const i = this.find(slot, addr, len);
    return i < 0 ? NO_GROUP : this.w[i + DES] - 1;
  }

  getInstalled(slot: number, addr: number, len: number): number {
    const i = this.find(slot, addr, len);
    return i < 0 ? NO_GROUP : this.w[i + INS] - 1;
  }

  setDesired(slot: number, addr: number, len: number, gid: number): void {
    this.write(DES, slot, addr, len, gid);
  }

  setInstalled(slot: number, addr: number, len: number, gid: number): void {
    this.write(INS, slot, addr, len, gid);
  }

  /**
   * setDesired(slot, addrs[i], lens[i], gid) for i < n (gid not NO_GROUP): the FIB's path for
   * a batch of routes with one group, its checks made once. The table grows first, once, for
   * all n; `cells` (optional, n long) gets each route's cell index, valid while `gen` stays.
   */
  setDesiredMany(
    slot: number,
    addrs: Uint32Array,
    lens: Uint8Array,
    n: number,
    gid: number,
    cells?: Int32Array,
  ): void {
    if (!(slot >= 0 && slot < MAX_SLOT && gid >= 0))
      throw new Error(`Bad IPv4 route cell: slot ${slot}, group ${gid}`);
    if (gid + 1 > this.maxWord || slot * 64 + 33 > this.maxWord) this.widen();
    // Room for all n now: no growth (no cell moves) inside the loop.
    if (this.used + n > this.cap * MAX_LOAD)
      this.grow(Math.max(Math.ceil(this.cap * GROWTH), Math.ceil((this.used + n) / MAX_LOAD)));
    const stored = gid + 1;
    for (let k = 0; k < n; k++) {
      const addr = addrs[k] >>> 0;
      const len = lens[k];
      if (!(len >= 0 && len <= 32))
        throw new Error(`Bad IPv4 route cell: slot ${slot}, len ${len}, group ${gid}`);
      const i = this.cellOrNew(slot, addr, len);
      const w = this.w;
      if (w[i + DES] === 0) this.desiredCount++;
      w[i + DES] = stored;
      if (cells) cells[k] = i;
    }
  }

  /**
   * The cell of (slot, addr, len), or -1: with desiredAt / installedAt / setInstalledAt, one
   * lookup serves a request's whole read-and-update (the FIB's encode path).
   */
  cell(slot: number, addr: number, len: number): number {
    const i = this.find(slot, addr, len);
    return i < 0 ? -1 : i;
  }

  /** The desired group of a cell from cell() (NO_GROUP: none). */
  desiredAt(i: number): number {
    return this.w[i + DES] - 1;
  }

  /** The installed group of a cell from cell() (NO_GROUP: none). */
  installedAt(i: number): number {
    return this.w[i + INS] - 1;
  }

  /**
   * Sets the installed group of a cell from cell(), valid until the table next changes; a cell
   * left with neither group is freed.
   */
  setInstalledAt(i: number, gid: number): void {
    if (gid === NO_GROUP) {
      const w = this.w;
      if (w[i + INS] === 0) return;
      this.insByGroup[w[i + INS] - 1]--;
      w[i + INS] = 0;
      this.installedCount--;
      if (w[i + DES] === 0) this.removeAt(i);
      return;
    }
    if (gid + 1 > this.maxWord) this.widen();
    const w = this.w;
    const old = w[i + INS];
    if (old === 0) this.installedCount++;
    else this.insByGroup[old - 1]--;
    this.countIn(gid);
    w[i + INS] = gid + 1;
  }

  /** Routes installed with group gid. */
  installedOf(gid: number): number {
    return gid >= 0 && gid < this.insByGroup.length ? this.insByGroup[gid] : 0;
  }

  /** One more installed route of gid (its counter grown to reach it). */
  private countIn(gid: number): void {
    if (gid >= this.insByGroup.length) {
      const more = new Int32Array(Math.max(gid + 1, this.insByGroup.length * 2));
      more.set(this.insByGroup);
      this.insByGroup = more;
    }
    this.insByGroup[gid]++;
  }

  /** Calls fn for every cell (read-only: do not change the table from fn). */
  forEach(
    fn: (slot: number, addr: number, len: number, desired: number, installed: number) => void,
  ): void {
    const w = this.w;
    const end = this.cap * STRIDE;
    for (let i = 0; i < end; i += STRIDE) {
      const m = w[i + META];
      if (m === 0) continue;
      fn((m - 1) >>> 6, addrAt(w, i), (m - 1) & 63, w[i + DES] - 1, w[i + INS] - 1);
    }
  }

  /** Forgets every installed id (cells only installed are removed). */
  clearInstalled(): void {
    if (this.installedCount === 0) return;
    const w = this.w;
    const end = this.cap * STRIDE;
    for (let i = 0; i < end; i += STRIDE) w[i + INS] = 0;
    this.installedCount = 0;
    this.insByGroup.fill(0);
    this.removeWhere((i) => this.w[i + DES] === 0);
  }

  /** Sets installed = NO_GROUP where pred(installed) holds; returns how many. */
  forgetInstalledWhere(pred: (gid: number) => boolean): number {
    let n = 0;
    const w = this.w;
    const end = this.cap * STRIDE;
    for (let i = 0; i < end; i += STRIDE) {
      const s = w[i + INS];
      if (w[i + META] !== 0 && s !== 0 && pred(s - 1)) {
        this.insByGroup[s - 1]--;
        w[i + INS] = 0;
        n++;
      }
    }
    this.installedCount -= n;
    if (n > 0) this.removeWhere((i) => this.w[i + DES] === 0 && this.w[i + INS] === 0);
    return n;
  }

  // ---- cells --------------------------------------------------------------------------------

  /** The home cell's word offset. */
  private home(addr: number, meta: number): number {
    // Range reduction by multiplication: any capacity, not only powers of two.
    return Math.floor((hash(addr, meta) * this.cap) / 4294967296) * STRIDE;
  }

  /**
   * The word offset of (slot, addr, len)'s cell, or when absent -1 - the free cell where its
   * probe run ends (where an insert puts it).
   */
  private find(slot: number, addr: number, len: number): number {
    const meta = slot * 64 + len + 1;
    const lo = addr & 0xffff;
    const hi = addr >>> 16;
    const w = this.w;
    const end = this.cap * STRIDE;
    let i = this.home(addr, meta);
    for (let probes = 0; probes < this.cap; probes++) {
      const m = w[i + META];
      if (m === 0) return -1 - i;
      if (m === meta && w[i + ADDR_LO] === lo && w[i + ADDR_HI] === hi) return i;
      i += STRIDE;
      if (i === end) i = 0;
    }
    return -1 - end; // full: cannot happen below MAX_LOAD
  }

  private write(col: number, slot: number, addr: number, len: number, gid: number): void {
    if (gid === NO_GROUP) {
      const i = this.find(slot, addr, len);
      if (i < 0) return;
      const w = this.w;
      if (w[i + col] === 0) return;
      if (col === INS) this.insByGroup[w[i + col] - 1]--;
      w[i + col] = 0;
      if (col === DES) this.desiredCount--;
      else this.installedCount--;
      if (w[i + (col === DES ? INS : DES)] === 0) this.removeAt(i);
      return;
    }
    if (!(slot >= 0 && slot < MAX_SLOT && len >= 0 && len <= 32 && gid >= 0))
      throw new Error(`Bad IPv4 route cell: slot ${slot}, len ${len}, group ${gid}`);
    if (gid + 1 > this.maxWord || slot * 64 + len + 1 > this.maxWord) this.widen();
    const i = this.cellOrNew(slot, addr, len);
    const w = this.w;
    if (w[i + col] === 0) {
      if (col === DES) this.desiredCount++;
      else this.installedCount++;
    } else if (col === INS) this.insByGroup[w[i + col] - 1]--;
    if (col === INS) this.countIn(gid);
    w[i + col] = gid + 1;
  }

  /**
   * The cell of (slot, addr, len), a new one (neither desired nor installed) when absent: one
   * probe for the lookup and the insert, the table grown first when full enough (checked).
   */
  private cellOrNew(slot: number, addr: number, len: number): number {
    let i = this.find(slot, addr, len);
    if (i >= 0) return i;
    const meta = slot * 64 + len + 1;
    if (this.used + 1 > this.cap * MAX_LOAD) {
      this.grow(Math.ceil(this.cap * GROWTH));
      i = this.freeCell(addr, meta);
    } else i = -1 - i;
    const w = this.w;
    w[i + ADDR_LO] = addr & 0xffff;
    w[i + ADDR_HI] = addr >>> 16;
    w[i + META] = meta;
    w[i + DES] = 0;
    w[i + INS] = 0;
    this.used++;
    return i;
  }

  /** The first free cell of a key's probe run (the key known absent). */
  private freeCell(addr: number, meta: number): number {
    const w = this.w;
    const end = this.cap * STRIDE;
    let i = this.home(addr, meta);
    while (w[i + META] !== 0) {
      i += STRIDE;
      if (i === end) i = 0;
    }
    return i;
  }

  /** Frees cell i, moving later cells of its probe run back so lookups still find them. */
  private removeAt(i: number): void {
    this.gen++;
    const w = this.w;
    const end = this.cap * STRIDE;
    let hole = i;
    let j = i;
    for (;;) {
      j += STRIDE;
      if (j === end) j = 0;
      const m = w[j + META];
      if (m === 0) break;
      const k = this.home(addrAt(w, j), m);
      // Move j into the hole unless its home lies cyclically in (hole, j].
      const inRange = hole <= j ? k > hole && k <= j : k > hole || k <= j;
      if (inRange) continue;
      w.copyWithin(hole, j, j + STRIDE);
      hole = j;
    }
    w[hole + META] = 0;
    w[hole + DES] = 0;
    w[hole + INS] = 0;
    this.used--;
  }

  /**
   * Removes every cell where pred holds, in place. Starts just after a free cell so that each
   * probe run is walked in order; a cell filled by a backward shift is looked at again.
   */
  private removeWhere(pred: (i: number) => boolean): void {
    const end = this.cap * STRIDE;
    let start = 0;
    while (start < end && this.w[start + META] !== 0) start += STRIDE;
    if (start === end) throw new Error("V4 route table has no free cell");
    let i = start;
    for (let step = 0; step < this.cap; step++) {
      i += STRIDE;
      if (i === end) i = 0;
      while (this.w[i + META] !== 0 && pred(i)) this.removeAt(i);
    }
  }

  /** Words from u16 to u32 (once a meta or a group id + 1 passes 0xffff). */
  private widen(): void {
    if (this.maxWord === 0xffffffff) throw new Error("V4 route table: group id out of range");
    const wide = words(Uint32Array, this.w.length);
    wide.set(this.w);
    release(this.w);
    this.w = wide;
    this.maxWord = 0xffffffff;
  }

  /**
   * Grows the cells in place and moves every cell to its place for the new capacity. Homes
   * scale with the capacity (range reduction by multiplication), so a cell's new home lies at
   * or after its old one (about 1.25x as far in): the old cells are taken out a chunk at a
   * time from the end backwards and put at the first free cell from their new home, reading
   * and writing the table as two streams (both moving from the end to the start). While a
   * chunk is placed, every cell from the chunk's start to the end is free or already placed
   * (placed cells never become free again), so each probe run there is one a plain insert
   * would make. A cell whose probe run would start before the chunk or wrap past the end waits
   * and is inserted last.
   */
  private grow(cap: number): void {
    this.gen++;
    const old = this.cap;
    this.w = resized(this.w, cap * STRIDE);
    this.cap = cap;
    const w = this.w;
    const end = cap * STRIDE;
    const Ctor = w.constructor as CellsCtor;
    const buf = new Ctor(
      new ArrayBuffer(GROW_CHUNK * STRIDE * w.BYTES_PER_ELEMENT),
      0,
      GROW_CHUNK * STRIDE,
    );
    let late: number[] | undefined;
    for (let top = old * STRIDE; top > 0; ) {
      const from = Math.max(0, top - GROW_CHUNK * STRIDE);
      buf.set(w.subarray(from, top));
      w.fill(0, from, top);
      const n = top - from;
      for (let k = 0; k < n; k += STRIDE) {
        const m = buf[k + META];
        if (m === 0) continue;
        const lo = buf[k + ADDR_LO];
        const hi = buf[k + ADDR_HI];
        let j = this.home(((hi << 16) | lo) >>> 0, m);
        if (j >= from) {
          while (j < end && w[j + META] !== 0) j += STRIDE;
          if (j < end) {
            w[j + ADDR_LO] = lo;
            w[j + ADDR_HI] = hi;
            w[j + META] = m;
            w[j + DES] = buf[k + DES];
            w[j + INS] = buf[k + INS];
            continue;
          }
        }
        late ??= [];
        late.push(lo, hi, m, buf[k + DES], buf[k + INS]);
      }
      top = from;
    }
    if (!late) return;
    for (let k = 0; k < late.length; k += STRIDE) {
      const j = this.freeCell(
        ((late[k + ADDR_HI] << 16) | late[k + ADDR_LO]) >>> 0,
        late[k + META],
      );
      for (let f = 0; f < STRIDE; f++) w[j + f] = late[k + f];
    }
  }
}

function addrAt(w: Cells, i: number): number {
  return ((w[i + ADDR_HI] << 16) | w[i + ADDR_LO]) >>> 0;
}
