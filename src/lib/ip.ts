// IP address and CIDR text, parsed and formatted in one place below every user: as bigints with
// containment and block arithmetic (IPAM, the agent, the CNI plugins), as a number or 16 bytes
// (rtnetlink, socket options), and RFC 5952 IPv6 text. Owns only value conversions; not pools,
// blocks, routes or any I/O.
import { isIPv4 } from "node:net";
import ipaddr from "ipaddr.js";

export type Family = 4 | 6;

/** A prefix, as a value: never changed once made (formatCidr keeps its text). */
export interface Cidr {
  readonly family: Family;
  /** Network address (host bits zero). */
  readonly base: bigint;
  readonly prefixLen: number;
}

export const familyBits = (family: Family): number => (family === 4 ? 32 : 128);

/** Four decimal parts without leading zeros (what ipaddr.js's isValidFourPartDecimal accepts). */
const DOTTED_QUAD = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;

/** Parses a single IPv4 (dotted quad) or IPv6 address; throws naming the bad value. */
export function parseAddress(text: string): { family: Family; value: bigint } {
  const s = text.trim();
  const quad = DOTTED_QUAD.exec(s);
  if (quad) {
    const [a, b, c, d] = [quad[1], quad[2], quad[3], quad[4]].map(Number) as [
      number,
      number,
      number,
      number,
    ];
    if (a <= 255 && b <= 255 && c <= 255 && d <= 255)
      return { family: 4, value: BigInt(((a << 24) | (b << 16) | (c << 8) | d) >>> 0) };
  }
  if (ipaddr.IPv4.isValidFourPartDecimal(s)) {
    const bytes = ipaddr.IPv4.parse(s).toByteArray();
    return { family: 4, value: bytesToBigint(bytes) };
  }
  if (!s.includes(".") && ipaddr.IPv6.isValid(s) && !s.includes("%")) {
    return { family: 6, value: bytesToBigint(ipaddr.IPv6.parse(s).toByteArray()) };
  }
  throw new Error(`Invalid IP address "${text}"`);
}

export function formatAddress(family: Family, value: bigint): string {
  if (family === 4 && value >= 0n && value <= 0xffffffffn) {
    const n = Number(value);
    return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
  }
  const n = family === 4 ? 4 : 16;
  const bytes: number[] = new Array(n);
  let v = value;
  for (let i = n - 1; i >= 0; i--) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

/** Parses "a.b.c.d/n" or "x::/n". With strict, host bits must be zero; otherwise they are masked. */
export function parseCidr(text: string, strict = true): Cidr {
  const slash = text.indexOf("/");
  if (slash < 0) throw new Error(`Invalid CIDR "${text}": missing prefix length`);
  const addr = parseAddress(text.slice(0, slash));
  const lenText = text.slice(slash + 1).trim();
  const prefixLen = /^\d{1,3}$/.test(lenText) ? Number(lenText) : Number.NaN;
  const bits = familyBits(addr.family);
  if (!(prefixLen >= 0 && prefixLen <= bits)) {
    throw new Error(`Invalid CIDR "${text}": prefix length must be 0-${bits}`);
  }
  const hostMask = (1n << BigInt(bits - prefixLen)) - 1n;
  if (strict && (addr.value & hostMask) !== 0n) {
    throw new Error(`Invalid CIDR "${text}": host bits are set`);
  }
  return { family: addr.family, base: addr.value & ~hostMask, prefixLen };
}

/** Text of each Cidr value seen (a block's CIDR is formatted on every assignment to it). */
const cidrText = new WeakMap<Cidr, string>();

export function formatCidr(c: Cidr): string {
  let text = cidrText.get(c);
  if (text === undefined) {
    text = `${formatAddress(c.family, c.base)}/${c.prefixLen}`;
    cidrText.set(c, text);
  }
  return text;
}

/** Number of addresses in c, as a bigint (IPv6 prefixes can be huge). */
export function cidrSize(c: Cidr): bigint {
  return 1n << BigInt(familyBits(c.family) - c.prefixLen);
}

export function cidrContains(c: Cidr, family: Family, value: bigint): boolean {
  return family === c.family && value >= c.base && value < c.base + cidrSize(c);
}

/** True when the two CIDRs share at least one address. */
export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  return a.base < b.base + cidrSize(b) && b.base < a.base + cidrSize(a);
}

/** The index-th sub-block of size blockLen inside pool. */
export function nthBlock(pool: Cidr, blockLen: number, index: bigint): Cidr {
  const step = 1n << BigInt(familyBits(pool.family) - blockLen);
  return { family: pool.family, base: pool.base + index * step, prefixLen: blockLen };
}

export function blockCount(pool: Cidr, blockLen: number): bigint {
  return 1n << BigInt(blockLen - pool.prefixLen);
}

/** The block of size blockLen that holds address value. */
export function blockOf(family: Family, value: bigint, blockLen: number): Cidr {
  const hostMask = (1n << BigInt(familyBits(family) - blockLen)) - 1n;
  return { family, base: value & ~hostMask, prefixLen: blockLen };
}

function bytesToBigint(bytes: number[]): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

// ---- numbers and bytes (rtnetlink, socket options) ----------------------------------------

/** Parses an IPv4 dotted quad into a number (host order); throws on a bad value. */
export function parseIPv4(text: string): number {
  if (!isIPv4(text)) throw new Error(`Invalid IPv4 address "${text}"`);
  const p = text.split(".");
  return ((+p[0] << 24) | (+p[1] << 16) | (+p[2] << 8) | +p[3]) >>> 0;
}

export function formatIPv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Parses an IPv6 address into 16 bytes; throws on a bad value. */
export function parseIPv6(text: string): Uint8Array {
  const out = new Uint8Array(16);
  let s = text;
  let tail: number[] = [];
  const v4 = s.match(/^(.*:)(\d+\.\d+\.\d+\.\d+)$/);
  if (v4) {
    const n = parseIPv4(v4[2]);
    tail = [n >>> 16, n & 0xffff];
    s = `${v4[1]}0`; // placeholder group, replaced by the two tail groups
  }
  const halves = s.split("::");
  const bad = () => new Error(`Invalid IPv6 address "${text}"`);
  if (halves.length > 2) throw bad();
  const parse = (h: string): number[] =>
    h === ""
      ? []
      : h.split(":").map((g) => {
          if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw bad();
          return Number.parseInt(g, 16);
        });
  let head = parse(halves[0]);
  let rest = halves.length === 2 ? parse(halves[1]) : [];
  if (tail.length) {
    if (rest.length || halves.length === 2) rest = [...rest.slice(0, -1), ...tail];
    else head = [...head.slice(0, -1), ...tail];
  }
  const total = head.length + rest.length;
  if ((halves.length === 1 && total !== 8) || (halves.length === 2 && total > 7)) throw bad();
  const groups = [...head, ...new Array(8 - total).fill(0), ...rest];
  for (let i = 0; i < 8; i++) {
    out[2 * i] = groups[i] >> 8;
    out[2 * i + 1] = groups[i] & 255;
  }
  return out;
}

/** Formats 16 bytes as RFC 5952 text (longest zero run compressed). */
export function formatIPv6(b: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[2 * i] << 8) | b[2 * i + 1]);
  return formatIPv6Groups(g);
}

export function addressBytes(family: 4 | 6, text: string): Uint8Array {
  if (family === 4) {
    const n = parseIPv4(text);
    return new Uint8Array([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
  }
  return parseIPv6(text);
}

/** RFC 5952 text of eight 16-bit groups: lower-case hex, the longest run of two or more zero
 * groups (the first, on a tie) compressed to "::". */
export function formatIPv6Groups(g: readonly number[]): string {
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: readonly number[]) => xs.map((x) => x.toString(16)).join(":");
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}
