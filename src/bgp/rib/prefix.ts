// Numeric prefixes: IPv4 as a u32 + length, IPv6 as four big-endian u32 words + length; text
// parse/format and the compact PrefixList the RIB hands out. Not: NLRI wire encoding.
import ipaddr from "ipaddr.js";

export type Family = 4 | 6;

const NO_WORDS = new Uint32Array(0);
const NO_LENS = new Uint8Array(0);

/**
 * A growable packed list of prefixes of one family (no object per prefix). Capacity 0 allocates
 * no arrays until the first push (the Adj-RIB-Out builds many lists that stay empty or carry one
 * prefix).
 */
export class PrefixList {
  count = 0;
  /** 1 word per prefix for IPv4, 4 for IPv6. */
  words: Uint32Array;
  lens: Uint8Array;
  /** RFC 7911 path identifiers, one per entry, when the list is for an ADD-PATH session. */
  pathIds: number[] | null = null;
  constructor(
    readonly family: Family,
    capacity = 16,
  ) {
    this.words = capacity === 0 ? NO_WORDS : new Uint32Array(capacity * (family === 4 ? 1 : 4));
    this.lens = capacity === 0 ? NO_LENS : new Uint8Array(capacity);
  }

  pushV4(addr: number, len: number): void {
    if (this.count === this.lens.length) this.grow();
    this.words[this.count] = addr;
    this.lens[this.count++] = len;
  }

  pushV6(w: Uint32Array, off: number, len: number): void {
    if (this.count === this.lens.length) this.grow();
    const o = this.count * 4;
    this.words[o] = w[off] as number;
    this.words[o + 1] = w[off + 1] as number;
    this.words[o + 2] = w[off + 2] as number;
    this.words[o + 3] = w[off + 3] as number;
    this.lens[this.count++] = len;
  }

  /** Sets the path identifier of the entry just pushed (every entry of the list gets one). */
  pushPathId(pid: number): void {
    if (this.pathIds === null) this.pathIds = [];
    this.pathIds.push(pid);
  }

  /** Text form of entry i ("10.0.0.0/24", "fd00::/64"). */
  toString(i: number): string;
  toString(): string;
  toString(i?: number): string {
    if (i === undefined) return `PrefixList(${this.family}, ${this.count})`;
    const len = this.lens[i] as number;
    return this.family === 4
      ? formatV4(this.words[i] as number, len)
      : formatV6(this.words, i * 4, len);
  }

  /** All entries in text form (for tests and status; not for hot paths). */
  toStrings(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.toString(i));
    return out;
  }

  private grow(): void {
    const cap = Math.max(4, this.lens.length * 2);
    const w = new Uint32Array(cap * (this.family === 4 ? 1 : 4));
    w.set(this.words);
    this.words = w;
    const l = new Uint8Array(cap);
    l.set(this.lens);
    this.lens = l;
  }
}

/** Mask of the first `len` bits of a u32 (as an unsigned number). */
export function maskV4(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

export function formatV4(addr: number, len: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 255}.${(addr >>> 8) & 255}.${addr & 255}/${len}`;
}

export function formatV6(w: Uint32Array, off: number, len: number): string {
  const bytes: number[] = [];
  for (let i = 0; i < 4; i++) {
    const x = w[off + i] as number;
    bytes.push(x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255);
  }
  return `${ipaddr.fromByteArray(bytes).toString()}/${len}`;
}

export interface ParsedPrefix {
  family: Family;
  /** Four words; IPv4 uses words[0] only. */
  words: Uint32Array;
  len: number;
}

/** Parses "10.0.0.0/24" or "fd00::/64"; host bits must be zero. */
export function parsePrefix(text: string): ParsedPrefix {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  let len: number;
  try {
    [addr, len] = ipaddr.parseCIDR(text);
  } catch {
    throw new Error(`Prefix "${text}" is not a valid CIDR`);
  }
  const bytes = addr.toByteArray();
  const words = new Uint32Array(4);
  for (let i = 0; i < bytes.length; i++) {
    const wi = i >> 2;
    words[wi] = ((words[wi] as number) | ((bytes[i] as number) << (24 - 8 * (i & 3)))) >>> 0;
  }
  const family: Family = addr.kind() === "ipv4" ? 4 : 6;
  for (let i = 0; i < 4; i++) {
    const bitsInWord = Math.min(32, Math.max(0, len - 32 * i));
    const host = ~maskV4(bitsInWord) >>> 0;
    if (((words[i] as number) & host) !== 0) {
      throw new Error(`Prefix "${text}" has host bits set`);
    }
  }
  return { family, words, len };
}

/** Parses a dotted-quad router id ("10.0.0.1") into a u32; numbers pass through. */
export function parseRouterId(id: string | number): number {
  if (typeof id === "number") {
    if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) {
      throw new Error(`Router id ${id} is not a u32`);
    }
    return id;
  }
  if (!ipaddr.IPv4.isValidFourPartDecimal(id)) {
    throw new Error(`Router id "${id}" is not a dotted-quad IPv4 address`);
  }
  const b = ipaddr.IPv4.parse(id).toByteArray();
  return (
    (((b[0] as number) << 24) |
      ((b[1] as number) << 16) |
      ((b[2] as number) << 8) |
      (b[3] as number)) >>>
    0
  );
}

export function formatRouterId(id: number): string {
  return formatV4(id, 32).slice(0, -3);
}

/** A sortable key for a peer address (RFC 4271 §9.1.2.2 (g): lowest address wins). */
export function addressSortKey(address: string): string {
  // A link-local peer's zone ("fe80::1%eth0") is not part of the address.
  const a = ipaddr.parse(address.split("%")[0] as string);
  const bytes =
    a.kind() === "ipv4" ? (a as ipaddr.IPv4).toIPv4MappedAddress().toByteArray() : a.toByteArray();
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join("");
}
