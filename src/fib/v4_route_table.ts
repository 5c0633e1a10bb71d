// The kernel FIB's IPv4 route state in typed arrays: (slot, addr, len) → desired and installed
// group ids, 10 bytes a cell in one open-addressing table (linear probing, backward-shift
// deletion, grown in place). Owns storage, lookup and iteration. Not: what slots and groups
// mean, or any netlink (kernel_fib.ts).

/** No group: the route is not desired / not installed. */
export const NO_GROUP = -1;

/** Load factor that triggers growth, and the growth factor (cells after ÷ before). */
const MAX_LOAD = 0.85;
const GROWTH = 1.25;
const MIN_CAPACITY = 64;
/** Largest (slot, len) pair: slot < 2^15, len ≤ 63, stored +1 so that 0 marks a free cell. */
const MAX_SLOT = 2 ** 15;
/** Address space reserved per column: only the pages in use cost memory. */
const MIN_RESERVE = 16 << 20;
const RESERVE_FACTOR = 8;

type Cells = Uint16Array | Uint32Array;

/** ES2024 resizable ArrayBuffer (Node 20 has it; the project's lib is ES2023). */
type Resizable = ArrayBuffer & { resize(bytes: number): void; readonly maxByteLength: number };
const ResizableBuffer = ArrayBuffer as unknown as new (
  bytes: number,
  opts: { maxByteLength: number },
) => Resizable;

type CellsCtor<T extends Cells> = {
  new (b: ArrayBuffer, off: number, n: number): T;
  readonly BYTES_PER_ELEMENT: number;
};

/**
 * A column in a resizable buffer with room reserved ahead: it grows in place (no old copy
 * left for the GC: at 1M routes a full old table next to the new one is ~12 MiB of peak), and
 * release() gives its memory back at once.
 */
function column<T extends Cells>(Ctor: CellsCtor<T>, n: number): T {
  const bytes = n * Ctor.BYTES_PER_ELEMENT;
  const reserve = Math.max(bytes * RESERVE_FACTOR, MIN_RESERVE);
  return new Ctor(new ResizableBuffer(bytes, { maxByteLength: reserve }), 0, n);
}

/** The column with n cells (new ones zero): in place when the reserve allows, else copied. */
function resized<T extends Cells>(c: T, n: number): T {
  const Ctor = c.constructor as CellsCtor<T>;
  const buf = c.buffer as Resizable;
  if (n * c.BYTES_PER_ELEMENT <= buf.maxByteLength) {
    buf.resize(n * c.BYTES_PER_ELEMENT);
    return new Ctor(buf, 0, n);
  }
  const b = column(Ctor, n);
  b.set(c);
  release(c);
  return b;
}

function release(...cols: Cells[]): void {
  for (const c of cols) (c.buffer as Resizable).resize(0);
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
 * One cell per route that is desired, installed, or both: addr (u32), meta (slot·64 + len + 1,
 * 0 = free; u16, widened to u32 for a slot ≥ 1023), and the two group ids stored +1 (0 = none)
 * in u16 arrays, widened to u32 once a group id reaches 0xffff. A cell is removed when neither
 * id is set. Growth by 1.25x keeps the load in 0.68..0.85.
 */
export class V4RouteTable {
  private cap: number;
  private addrs: Uint32Array;
  private metas: Cells;
  private des: Cells;
  private ins: Cells;
  /** Largest storable group id + 1. */
  private maxStored = 0xffff;
  private used = 0;
  /** Routes with a desired group / with an installed group. */
  desiredCount = 0;
  installedCount = 0;

  constructor(capacity = MIN_CAPACITY) {
    this.cap = Math.max(MIN_CAPACITY, Math.ceil(capacity));
    this.addrs = column(Uint32Array, this.cap);
    this.metas = column(Uint16Array, this.cap);
    this.des = column(Uint16Array, this.cap);
    this.ins = column(Uint16Array, this.cap);
  }

  /** Cells in use (routes desired or installed). */
  get size(): number {
    return this.used;
  }

  /** Bytes held by the arrays (for status and tests). */
  get bytes(): number {
    return this.cap * (4 + this.metas.BYTES_PER_ELEMENT + 2 * this.des.BYTES_PER_ELEMENT);
  }

  getDesired(slot: number, addr: number, len: number): number {
    const i = this.find(slot, addr, len);
    return i < 0 ? NO_GROUP : this.des[i] - 1;
  }

  getInstalled(slot: number, addr: number, len: number): number {
    const i = this.find(slot, addr, len);
    return i < 0 ? NO_GROUP : this.ins[i] - 1;
  }

  setDesired(slot: number, addr: number, len: number, gid: number): void {
    this.write(true, slot, addr, len, gid);
  }

  setInstalled(slot: number, addr: number, len: number, gid: number): void {
    this.write(false, slot, addr, len, gid);
  }

  /**
   * The cell of (slot, addr, len), or -1: with desiredAt / installedAt / setInstalledAt, one
   * lookup serves a request's whole read-and-update (the FIB's encode path).
   */
  cell(slot: number, addr: number, len: number): number {
    return this.find(slot, addr, len);
  }

  /** The desired group of a cell from cell() (NO_GROUP: none). */
  desiredAt(i: number): number {
    return this.des[i] - 1;
  }

  /** The installed group of a cell from cell() (NO_GROUP: none). */
  installedAt(i: number): number {
    return this.ins[i] - 1;
  }

  /**
   * Sets the installed group of a cell from cell(), valid until the table next changes; a cell
   * left with neither group is freed.
   */
  setInstalledAt(i: number, gid: number): void {
    if (gid === NO_GROUP) {
      if (this.ins[i] === 0) return;
      this.ins[i] = 0;
      this.installedCount--;
      if (this.des[i] === 0) this.removeAt(i);
      return;
    }
    if (gid + 1 > this.maxStored) this.widen();
    if (this.ins[i] === 0) this.installedCount++;
    this.ins[i] = gid + 1;
  }

  /** Calls fn for every cell (read-only: do not change the table from fn). */
  forEach(
    fn: (slot: number, addr: number, len: number, desired: number, installed: number) => void,
  ): void {
    const { addrs, metas, des, ins } = this;
    for (let i = 0; i < this.cap; i++) {
      const m = metas[i];
      if (m === 0) continue;
      fn((m - 1) >>> 6, addrs[i], (m - 1) & 63, des[i] - 1, ins[i] - 1);
    }
  }

  /** Forgets every installed id (cells only installed are removed). */
  clearInstalled(): void {
    if (this.installedCount === 0) return;
    this.ins.fill(0);
    this.installedCount = 0;
    this.removeWhere((i) => this.des[i] === 0);
  }

  /** Sets installed = NO_GROUP where pred(installed) holds; returns how many. */
  forgetInstalledWhere(pred: (gid: number) => boolean): number {
    let n = 0;
    for (let i = 0; i < this.cap; i++) {
      const s = this.ins[i];
      if (this.metas[i] !== 0 && s !== 0 && pred(s - 1)) {
        this.ins[i] = 0;
        n++;
      }
    }
    this.installedCount -= n;
    if (n > 0) this.removeWhere((i) => this.des[i] === 0 && this.ins[i] === 0);
    return n;
  }

  // ---- cells --------------------------------------------------------------------------------

  private home(addr: number, meta: number): number {
    // Range reduction by multiplication: any capacity, not only powers of two.
    return Math.floor((hash(addr, meta) * this.cap) / 4294967296);
  }

  private find(slot: number, addr: number, len: number): number {
    const meta = slot * 64 + len + 1;
    const { addrs, metas, cap } = this;
    let i = this.home(addr, meta);
    for (let probes = 0; probes < cap; probes++) {
      const m = metas[i];
      if (m === 0) return -1;
      if (m === meta && addrs[i] === addr) return i;
      if (++i === cap) i = 0;
    }
    return -1;
  }

  private write(desired: boolean, slot: number, addr: number, len: number, gid: number): void {
    if (gid === NO_GROUP) {
      const i = this.find(slot, addr, len);
      if (i < 0) return;
      const col = desired ? this.des : this.ins;
      if (col[i] === 0) return;
      col[i] = 0;
      if (desired) this.desiredCount--;
      else this.installedCount--;
      const other = desired ? this.ins : this.des;
      if (other[i] === 0) this.removeAt(i);
      return;
    }
    if (!(slot >= 0 && slot < MAX_SLOT && len >= 0 && len <= 32 && gid >= 0))
      throw new Error(`Bad IPv4 route cell: slot ${slot}, len ${len}, group ${gid}`);
    if (gid + 1 > this.maxStored) this.widen();
    if (slot * 64 + len + 1 > 0xffff && this.metas instanceof Uint16Array) {
      const wide = column(Uint32Array, this.cap);
      wide.set(this.metas);
      release(this.metas);
      this.metas = wide;
    }
    let i = this.find(slot, addr, len);
    if (i < 0) {
      if (this.used + 1 > this.cap * MAX_LOAD) this.grow(Math.ceil(this.cap * GROWTH));
      i = this.insertAt(addr >>> 0, slot * 64 + len + 1);
    }
    const col = desired ? this.des : this.ins;
    if (col[i] === 0) {
      if (desired) this.desiredCount++;
      else this.installedCount++;
    }
    col[i] = gid + 1;
  }

  /** Claims a free cell for a key known to be absent; both ids start unset. */
  private insertAt(addr: number, meta: number): number {
    const { metas, cap } = this;
    let i = this.home(addr, meta);
    while (metas[i] !== 0) if (++i === cap) i = 0;
    metas[i] = meta;
    this.addrs[i] = addr;
    this.des[i] = 0;
    this.ins[i] = 0;
    this.used++;
    return i;
  }

  /** Frees cell i, moving later cells of its probe run back so lookups still find them. */
  private removeAt(i: number): void {
    const { addrs, metas, des, ins, cap } = this;
    let hole = i;
    let j = i;
    for (;;) {
      if (++j === cap) j = 0;
      const m = metas[j];
      if (m === 0) break;
      const k = this.home(addrs[j], m);
      // Move j into the hole unless its home lies cyclically in (hole, j].
      const inRange = hole <= j ? k > hole && k <= j : k > hole || k <= j;
      if (inRange) continue;
      addrs[hole] = addrs[j];
      metas[hole] = m;
      des[hole] = des[j];
      ins[hole] = ins[j];
      hole = j;
    }
    metas[hole] = 0;
    des[hole] = 0;
    ins[hole] = 0;
    this.used--;
  }

  /**
   * Removes every cell where pred holds, in place. Starts just after a free cell so that each
   * probe run is walked in order; a cell filled by a backward shift is looked at again.
   */
  private removeWhere(pred: (i: number) => boolean): void {
    const { metas, cap } = this;
    let start = 0;
    while (start < cap && metas[start] !== 0) start++;
    if (start === cap) throw new Error("V4 route table has no free cell");
    let i = start;
    for (let step = 0; step < cap; step++) {
      if (++i === cap) i = 0;
      while (metas[i] !== 0 && pred(i)) this.removeAt(i);
    }
  }

  private widen(): void {
    if (this.maxStored === 0xffffffff) throw new Error("V4 route table: group id out of range");
    const wide = (a: Cells) => {
      const b = column(Uint32Array, a.length);
      b.set(a);
      release(a);
      return b;
    };
    this.des = wide(this.des);
    this.ins = wide(this.ins);
    this.maxStored = 0xffffffff;
  }

  /**
   * Grows the columns in place and moves every cell to its place for the new capacity. A cell
   * not yet moved is "pending" (bitmap); a moving entry takes the first free or pending cell
   * of its new probe run, and a pending entry it displaces moves next. Lookups skip only moved
   * cells, and moved cells never become free again, so every finished probe run stays valid.
   */
  private grow(cap: number): void {
    const old = this.cap;
    this.addrs = resized(this.addrs, cap);
    this.metas = resized(this.metas, cap);
    this.des = resized(this.des, cap);
    this.ins = resized(this.ins, cap);
    this.cap = cap;
    const { addrs, metas, des, ins } = this;
    const pending = new Uint8Array(old);
    for (let i = 0; i < old; i++) if (metas[i] !== 0) pending[i] = 1;
    for (let i = 0; i < old; i++) {
      if (pending[i] === 0) continue;
      pending[i] = 0;
      let a = addrs[i];
      let m = metas[i];
      let d = des[i];
      let s = ins[i];
      metas[i] = 0;
      des[i] = 0;
      ins[i] = 0;
      for (let moves = 0; moves <= old; moves++) {
        let j = this.home(a, m);
        while (metas[j] !== 0 && !(j < old && pending[j] === 1)) if (++j === cap) j = 0;
        const m2 = metas[j];
        const a2 = addrs[j];
        const d2 = des[j];
        const s2 = ins[j];
        addrs[j] = a;
        metas[j] = m;
        des[j] = d;
        ins[j] = s;
        if (m2 === 0) break;
        pending[j] = 0;
        a = a2;
        m = m2;
        d = d2;
        s = s2;
      }
    }
  }
}
