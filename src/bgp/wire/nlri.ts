// NLRI sections (RFC 4271 §4.3, RFC 4760 §5, RFC 7911 §3): validating a section into an NlriView,
// walking it with numeric callbacks or into caller-owned typed arrays (no per-prefix objects),
// writing prefixes, and text conversions for tests and the CLI. Not the UPDATE layout (update.ts).

import { formatIPv6Groups } from "../../lib/ip.js";
import { putU32 } from "./bytes.js";
import { Afi } from "./constants.js";
import type { NlriView, PrefixArray, TextPrefix } from "./types.js";

/** Why scanNlri rejected a section (negative results of scanNlri). */
export const NlriScanError = {
  PrefixLengthTooLong: -1,
  Truncated: -2,
} as const;

/**
 * Validates buf[start, end) as a sequence of (path id?, length, prefix octets) for `maxBits`
 * (32 or 128) and returns the prefix count, or a negative NlriScanError. Bounded by end - start.
 */
export function scanNlri(
  buf: Uint8Array,
  start: number,
  end: number,
  maxBits: number,
  addPath: boolean,
): number {
  let o = start;
  let count = 0;
  const idLen = addPath ? 4 : 0;
  while (o < end) {
    if (o + idLen + 1 > end) return NlriScanError.Truncated;
    o += idLen;
    const len = buf[o];
    if (len > maxBits) return NlriScanError.PrefixLengthTooLong;
    o += 1 + ((len + 7) >> 3);
    if (o > end) return NlriScanError.Truncated;
    count++;
  }
  return count;
}

/** A view over a section already validated by scanNlri. */
export function makeNlriView(
  buf: Uint8Array,
  start: number,
  end: number,
  afi: number,
  safi: number,
  addPath: boolean,
  count: number,
): NlriView {
  return { buf, start, end, afi, safi, addPath, count };
}

export function emptyNlriView(afi: number, safi: number): NlriView {
  return { buf: EMPTY, start: 0, end: 0, afi, safi, addPath: false, count: 0 };
}
const EMPTY = new Uint8Array(0);

/** Mask of the top `len` bits of a u32 (len 0..32). */
function mask32(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/**
 * Calls `cb(addr, len, pathId)` for each IPv4 prefix: `addr` is the u32 network address (host
 * bits cleared), `pathId` the ADD-PATH id or 0.
 */
export function forEachIpv4Prefix(
  view: NlriView,
  cb: (addr: number, len: number, pathId: number) => void,
): void {
  const b = view.buf;
  const end = view.end;
  const addPath = view.addPath;
  let o = view.start;
  while (o < end) {
    let pathId = 0;
    if (addPath) {
      pathId = ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
      o += 4;
    }
    const len = b[o++];
    let a = 0;
    switch ((len + 7) >> 3) {
      case 1:
        a = b[o] << 24;
        o += 1;
        break;
      case 2:
        a = (b[o] << 24) | (b[o + 1] << 16);
        o += 2;
        break;
      case 3:
        a = (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8);
        o += 3;
        break;
      case 4:
        a = (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3];
        o += 4;
        break;
    }
    cb((a & mask32(len)) >>> 0, len, pathId);
  }
}

/**
 * Calls `cb(words, len, pathId)` for each IPv6 prefix; `words` is a scratch Uint32Array(4) of the
 * address (big-endian words, host bits cleared), valid only during the call.
 */
export function forEachIpv6Prefix(
  view: NlriView,
  cb: (words: Uint32Array, len: number, pathId: number) => void,
): void {
  const b = view.buf;
  const end = view.end;
  const addPath = view.addPath;
  const w = new Uint32Array(4);
  let o = view.start;
  while (o < end) {
    let pathId = 0;
    if (addPath) {
      pathId = ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
      o += 4;
    }
    const len = b[o++];
    o = readIpv6(b, o, len, w, 0);
    cb(w, len, pathId);
  }
}

/** Reads ceil(len/8) octets at o into words[wo..wo+3] (host bits cleared); returns the new offset. */
function readIpv6(b: Uint8Array, o: number, len: number, words: Uint32Array, wo: number): number {
  const nbytes = (len + 7) >> 3;
  for (let i = 0, base = 0; i < 4; i++, base += 4) {
    let v = 0;
    if (base + 4 <= nbytes) {
      v = (b[o + base] << 24) | (b[o + base + 1] << 16) | (b[o + base + 2] << 8) | b[o + base + 3];
    } else if (base < nbytes) {
      const left = nbytes - base;
      v = b[o + base] << 24;
      if (left > 1) v |= b[o + base + 1] << 16;
      if (left > 2) v |= b[o + base + 2] << 8;
    }
    const bits = len - base * 8;
    words[wo + i] = bits >= 32 ? v >>> 0 : bits <= 0 ? 0 : (v & mask32(bits)) >>> 0;
  }
  return o + nbytes;
}

/** Allocates a PrefixArray for `capacity` prefixes of `afi`. */
export function newPrefixArray(afi: number, capacity: number, withPathIds = false): PrefixArray {
  const words = afi === Afi.Ipv6 ? 4 : 1;
  return {
    afi,
    count: 0,
    addrs: new Uint32Array(capacity * words),
    lens: new Uint8Array(capacity),
    pathIds: withPathIds ? new Uint32Array(capacity) : null,
  };
}

/**
 * Appends the prefixes of `view` to `out` (same AFI), growing nothing: throws RangeError when
 * `out` lacks capacity (check `view.count` first). Returns the new `out.count`.
 */
export function decodeNlriInto(view: NlriView, out: PrefixArray): number {
  if (out.afi !== view.afi)
    throw new RangeError(`Prefix array AFI ${out.afi} does not match NLRI AFI ${view.afi}`);
  if (out.lens.length - out.count < view.count) {
    throw new RangeError(
      `Prefix array has room for ${out.lens.length - out.count} prefixes, not ${view.count}`,
    );
  }
  const b = view.buf;
  const end = view.end;
  const ids = out.pathIds;
  const lens = out.lens;
  const addrs = out.addrs;
  let n = out.count;
  let o = view.start;
  const v6 = view.afi === Afi.Ipv6;
  while (o < end) {
    let pathId = 0;
    if (view.addPath) {
      pathId = ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
      o += 4;
    }
    const len = b[o++];
    if (v6) {
      o = readIpv6(b, o, len, addrs, n * 4);
    } else {
      let a = 0;
      const nb = (len + 7) >> 3;
      if (nb > 0) a = b[o] << 24;
      if (nb > 1) a |= b[o + 1] << 16;
      if (nb > 2) a |= b[o + 2] << 8;
      if (nb > 3) a |= b[o + 3];
      o += nb;
      addrs[n] = (a & mask32(len)) >>> 0;
    }
    lens[n] = len;
    if (ids) ids[n] = pathId;
    n++;
  }
  out.count = n;
  return n;
}

/** Octets one prefix takes on the wire. */
export function prefixWireLength(len: number, addPath: boolean): number {
  return (addPath ? 5 : 1) + ((len + 7) >> 3);
}

/** Writes one IPv4 prefix at `o`; returns the new offset. `pathId` < 0: no ADD-PATH id. */
export function writeIpv4Prefix(
  out: Uint8Array,
  o: number,
  addr: number,
  len: number,
  pathId: number,
): number {
  if (pathId >= 0) o = putU32(out, o, pathId);
  out[o++] = len;
  const nb = (len + 7) >> 3;
  if (nb > 0) out[o++] = addr >>> 24;
  if (nb > 1) out[o++] = (addr >>> 16) & 0xff;
  if (nb > 2) out[o++] = (addr >>> 8) & 0xff;
  if (nb > 3) out[o++] = addr & 0xff;
  return o;
}

/** Writes one IPv6 prefix (words at addrs[wo..wo+3]) at `o`; returns the new offset. */
export function writeIpv6Prefix(
  out: Uint8Array,
  o: number,
  addrs: Uint32Array,
  wo: number,
  len: number,
  pathId: number,
): number {
  if (pathId >= 0) o = putU32(out, o, pathId);
  out[o++] = len;
  const nb = (len + 7) >> 3;
  for (let k = 0; k < nb; k++) out[o + k] = (addrs[wo + (k >> 2)] >>> (24 - 8 * (k & 3))) & 0xff;
  return o + nb;
}

// ---------------------------------------------------------------------------------------------
// Text conversions (tests, CLI; not for the hot path)

export function ipv4ToText(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
}

/** RFC 5952 text of an IPv6 address given as four words. */
export function ipv6ToText(words: ArrayLike<number>, wo = 0): string {
  const g: number[] = [];
  for (let i = 0; i < 4; i++) {
    const w = words[wo + i] >>> 0;
    g.push(w >>> 16, w & 0xffff);
  }
  return formatIPv6Groups(g);
}

export function ipv6BytesToText(b: Uint8Array, o = 0): string {
  const w = new Uint32Array(4);
  for (let i = 0; i < 4; i++) {
    w[i] =
      ((b[o + 4 * i] << 24) |
        (b[o + 4 * i + 1] << 16) |
        (b[o + 4 * i + 2] << 8) |
        b[o + 4 * i + 3]) >>>
      0;
  }
  return ipv6ToText(w);
}

/** Parses dotted-quad IPv4 text to u32; throws RangeError on bad text. */
export function parseIpv4(text: string): number {
  const parts = text.split(".");
  if (parts.length !== 4) throw new RangeError(`Invalid IPv4 address "${text}"`);
  let a = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255)
      throw new RangeError(`Invalid IPv4 address "${text}"`);
    a = (a << 8) | Number(p);
  }
  return a >>> 0;
}

/** Parses IPv6 text (with :: and an optional dotted IPv4 tail) into four words. */
export function parseIpv6(
  text: string,
  out: Uint32Array = new Uint32Array(4),
  wo = 0,
): Uint32Array {
  const bad = () => new RangeError(`Invalid IPv6 address "${text}"`);
  let s = text;
  const tail: number[] = [];
  const lastColon = s.lastIndexOf(":");
  if (s.includes(".")) {
    const v4 = parseIpv4(s.slice(lastColon + 1));
    tail.push(v4 >>> 16, v4 & 0xffff);
    s = `${s.slice(0, lastColon + 1)}${s[lastColon - 1] === ":" ? "" : ""}`;
    if (s.endsWith(":") && !s.endsWith("::")) s = s.slice(0, -1);
  }
  const halves = s.split("::");
  if (halves.length > 2) throw bad();
  const parse = (h: string) =>
    h === ""
      ? []
      : h.split(":").map((x) => {
          if (!/^[0-9a-fA-F]{1,4}$/.test(x)) throw bad();
          return Number.parseInt(x, 16);
        });
  const head = parse(halves[0]);
  const rest = halves.length === 2 ? parse(halves[1]) : [];
  const known = head.length + rest.length + tail.length;
  if (halves.length === 1 ? known !== 8 : known > 7) throw bad();
  const g = [...head, ...new Array(8 - known).fill(0), ...rest, ...tail];
  for (let i = 0; i < 4; i++) out[wo + i] = ((g[2 * i] << 16) | g[2 * i + 1]) >>> 0;
  return out;
}

/** The prefixes of a view as text, e.g. `{prefix: "10.0.0.0/24", pathId: 0}`. */
export function nlriToText(view: NlriView): TextPrefix[] {
  const out: TextPrefix[] = [];
  if (view.afi === Afi.Ipv6) {
    forEachIpv6Prefix(view, (w, len, pathId) =>
      out.push({ prefix: `${ipv6ToText(w)}/${len}`, pathId }),
    );
  } else {
    forEachIpv4Prefix(view, (a, len, pathId) =>
      out.push({ prefix: `${ipv4ToText(a)}/${len}`, pathId }),
    );
  }
  return out;
}

/** Builds a PrefixArray from text prefixes (strings or {prefix, pathId}); host bits are cleared. */
export function prefixArrayFromText(
  afi: number,
  prefixes: readonly (string | TextPrefix)[],
): PrefixArray {
  const withIds = prefixes.some((p) => typeof p !== "string");
  const arr = newPrefixArray(afi, prefixes.length, withIds);
  for (const p of prefixes) {
    const text = typeof p === "string" ? p : p.prefix;
    const slash = text.indexOf("/");
    const len = Number(text.slice(slash + 1));
    const max = afi === Afi.Ipv6 ? 128 : 32;
    if (slash < 0 || !Number.isInteger(len) || len < 0 || len > max)
      throw new RangeError(`Invalid prefix "${text}"`);
    const i = arr.count;
    if (afi === Afi.Ipv6) {
      parseIpv6(text.slice(0, slash), arr.addrs, i * 4);
      for (let k = 0; k < 4; k++) {
        const bits = len - k * 32;
        arr.addrs[i * 4 + k] =
          bits >= 32
            ? arr.addrs[i * 4 + k]
            : bits <= 0
              ? 0
              : (arr.addrs[i * 4 + k] & mask32(bits)) >>> 0;
      }
    } else {
      arr.addrs[i] = (parseIpv4(text.slice(0, slash)) & mask32(len)) >>> 0;
    }
    arr.lens[i] = len;
    if (arr.pathIds) arr.pathIds[i] = typeof p === "string" ? 0 : p.pathId >>> 0;
    arr.count++;
  }
  return arr;
}

/** The prefixes of a PrefixArray as text. */
export function prefixArrayToText(arr: PrefixArray): TextPrefix[] {
  const out: TextPrefix[] = [];
  for (let i = 0; i < arr.count; i++) {
    const addr = arr.afi === Afi.Ipv6 ? ipv6ToText(arr.addrs, i * 4) : ipv4ToText(arr.addrs[i]);
    out.push({ prefix: `${addr}/${arr.lens[i]}`, pathId: arr.pathIds ? arr.pathIds[i] : 0 });
  }
  return out;
}
