// Hand-built wire bytes for codec tests: attributes and UPDATEs from parts, without our encoder.
import { AttrFlag } from "../../src/bgp/wire/constants.js";

export function attr(flags: number, type: number, value: ArrayLike<number>): number[] {
  const v = Array.from(value);
  if (flags & AttrFlag.ExtendedLength) return [flags, type, v.length >> 8, v.length & 0xff, ...v];
  return [flags, type, v.length, ...v];
}

export const T = AttrFlag.Transitive;
export const O = AttrFlag.Optional;
export const OT = AttrFlag.Optional | AttrFlag.Transitive;

export function be32(v: number): number[] {
  return [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

/** A whole UPDATE from its three sections. */
export function update(parts: {
  withdrawn?: number[];
  attrs?: number[][];
  nlri?: number[];
}): Uint8Array {
  const wd = parts.withdrawn ?? [];
  const at = (parts.attrs ?? []).flat();
  const nl = parts.nlri ?? [];
  const len = 23 + wd.length + at.length + nl.length;
  return Uint8Array.from([
    ...new Array(16).fill(0xff),
    len >> 8,
    len & 0xff,
    2,
    wd.length >> 8,
    wd.length & 0xff,
    ...wd,
    at.length >> 8,
    at.length & 0xff,
    ...at,
    ...nl,
  ]);
}

/** ORIGIN IGP, AS_PATH [65001] (4-octet), NEXT_HOP 10.0.0.1: a valid base set. */
export const origin = attr(T, 1, [0]);
export const asPath4 = attr(T, 2, [2, 1, ...be32(65001)]);
export const nextHop = attr(T, 3, [10, 0, 0, 1]);
export const base = [origin, asPath4, nextHop];
/** 10.1.0.0/16 */
export const nlri16 = [16, 10, 1];
