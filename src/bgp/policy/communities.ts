// Community values in text and numbers: RFC 1997 standard communities ("64512:100" or a
// well-known name), RFC 8092 large communities ("4200000001:1:2"). Owns parsing, formatting and
// the well-known names, and Calico's prefixAdvertisements (communities per CIDR for our
// originations). Not: attaching them to routes (the RIB's originate()).
import { type LargeCommunity, NO_ADVERTISE, NO_EXPORT, NO_EXPORT_SUBCONFED } from "../rib/attrs.js";
import { maskV4, parsePrefix } from "../rib/prefix.js";

/** RFC 1997 / RFC 8326 / RFC 7999 well-known communities by their usual names. */
export const WELL_KNOWN_COMMUNITIES: Readonly<Record<string, number>> = {
  "no-export": NO_EXPORT,
  "no-advertise": NO_ADVERTISE,
  "no-export-subconfed": NO_EXPORT_SUBCONFED,
  "graceful-shutdown": 0xffff0000,
  blackhole: 0xffff029a,
};

function u16(text: string, whole: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 0xffff) {
    throw new Error(`Community "${whole}" must be two numbers 0-65535 separated by ":"`);
  }
  return Number(text);
}

function u32(text: string, whole: string): number {
  if (!/^\d{1,10}$/.test(text) || Number(text) > 0xffffffff) {
    throw new Error(
      `Large community "${whole}" must be three numbers 0-4294967295 separated by ":"`,
    );
  }
  return Number(text);
}

/** Parses "64512:100" or a well-known name into the u32 value. */
export function parseCommunity(text: string): number {
  const wk = WELL_KNOWN_COMMUNITIES[text.toLowerCase()];
  if (wk !== undefined) return wk;
  const parts = text.split(":");
  if (parts.length !== 2)
    throw new Error(`Community "${text}" must be two numbers 0-65535 separated by ":"`);
  return ((u16(parts[0] as string, text) << 16) | u16(parts[1] as string, text)) >>> 0;
}

export function formatCommunity(c: number): string {
  for (const [name, v] of Object.entries(WELL_KNOWN_COMMUNITIES)) if (v === c) return name;
  return `${c >>> 16}:${c & 0xffff}`;
}

/** Parses "4200000001:1:2" into a large community triple. */
export function parseLargeCommunity(text: string): LargeCommunity {
  const parts = text.split(":");
  if (parts.length !== 3) {
    throw new Error(
      `Large community "${text}" must be three numbers 0-4294967295 separated by ":"`,
    );
  }
  return [
    u32(parts[0] as string, text),
    u32(parts[1] as string, text),
    u32(parts[2] as string, text),
  ];
}

export function formatLargeCommunity(c: LargeCommunity): string {
  return `${c[0]}:${c[1]}:${c[2]}`;
}

/**
 * Splits a Calico-style community list (where "a:b" is standard and "a:b:c" is large) into the
 * two kinds, deduplicated in order.
 */
export function parseCommunityList(values: readonly string[]): {
  communities: number[];
  largeCommunities: LargeCommunity[];
} {
  const communities: number[] = [];
  const largeCommunities: LargeCommunity[] = [];
  const seenLarge = new Set<string>();
  for (const v of values) {
    if (v.split(":").length === 3) {
      const c = parseLargeCommunity(v);
      const k = formatLargeCommunity(c);
      if (!seenLarge.has(k)) {
        seenLarge.add(k);
        largeCommunities.push(c);
      }
    } else {
      const c = parseCommunity(v);
      if (!communities.includes(c)) communities.push(c);
    }
  }
  return { communities, largeCommunities };
}

/** BGPConfiguration `communities[]`: a named community value. */
export interface NamedCommunity {
  name: string;
  value: string;
}

/** BGPConfiguration `prefixAdvertisements[]`: communities for prefixes inside a CIDR. */
export interface PrefixAdvertisement {
  cidr: string;
  /** Names from `communities[]`, or literal "aa:nn" / "aa:nn:mm" values. */
  communities: readonly string[];
}

/**
 * Compiles Calico's prefixAdvertisements into a function giving the communities to set on one
 * of our originations: every entry whose CIDR contains the prefix contributes (BIRD's
 * `net ~ cidr`). Unknown names and bad values are refused here, at configuration time.
 */
export function prefixCommunities(
  ads: readonly PrefixAdvertisement[],
  named: readonly NamedCommunity[] = [],
): (prefix: string) => { communities: number[]; largeCommunities: LargeCommunity[] } {
  const byName = new Map<string, string>();
  for (const n of named) {
    parseCommunityList([n.value]);
    byName.set(n.name, n.value);
  }
  const compiled = ads.map((ad) => {
    const cidr = parsePrefix(ad.cidr);
    const values = ad.communities.map((c) => {
      const v = byName.get(c) ?? c;
      const literal = /^\d+:\d+(:\d+)?$/.test(c) || c.toLowerCase() in WELL_KNOWN_COMMUNITIES;
      if (!byName.has(c) && !literal) {
        throw new Error(
          `Community "${c}" in prefixAdvertisements for ${ad.cidr} is neither a defined name, a well-known name nor a value`,
        );
      }
      return v;
    });
    parseCommunityList(values);
    return { cidr, values };
  });
  return (prefix) => {
    const p = parsePrefix(prefix);
    const values: string[] = [];
    for (const c of compiled) {
      if (c.cidr.family !== p.family || p.len < c.cidr.len) continue;
      let inside = true;
      for (let i = 0; i < 4 && inside; i++) {
        const bits = Math.min(32, Math.max(0, c.cidr.len - 32 * i));
        if (bits === 0) break;
        inside = ((p.words[i] as number) & maskV4(bits)) >>> 0 === c.cidr.words[i];
      }
      if (inside) values.push(...c.values);
    }
    return parseCommunityList(values);
  };
}
