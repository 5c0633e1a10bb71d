// The default policies of DESIGN.md §7 as composable fallbacks, and the per-peer policy pair
// they make with the peer's BGPFilters. Owns: "external peers may not announce our pools" and
// "external peers get only our originations". Not: rule matching (filter.ts).

import { type PrefixPolicy, RejectReason, RouteSource } from "../rib/policy.js";
import { maskV4, parsePrefix } from "../rib/prefix.js";
import {
  acceptAll,
  type DefaultPolicy,
  type FilterContext,
  filterPolicy,
  type NamedFilter,
} from "./filter.js";

interface Pool {
  family: 4 | 6;
  words: Uint32Array;
  len: number;
  text: string;
}

function inside(p: Pool, w: Uint32Array, off: number, len: number): boolean {
  if (len < p.len) return false;
  const n = p.family === 4 ? 1 : 4;
  for (let i = 0; i < n; i++) {
    const bits = Math.min(32, Math.max(0, p.len - 32 * i));
    if (bits === 0) break;
    if (((w[off + i] as number) & maskV4(bits)) >>> 0 !== p.words[i]) return false;
  }
  return true;
}

/** Import from an external peer: reject any prefix inside one of our pools (anti-hijack). */
export function rejectOwnPools(pools: readonly string[]): DefaultPolicy {
  const parsed: Pool[] = pools.map((text) => {
    const p = parsePrefix(text);
    return { family: p.family, words: p.words, len: p.len, text };
  });
  const v4Pools = parsed.filter((p) => p.family === 4);
  const v6Pools = parsed.filter((p) => p.family === 6);
  const one = new Uint32Array(1);
  const find = (family: 4 | 6, w: Uint32Array, off: number, len: number) =>
    (family === 4 ? v4Pools : v6Pools).find((p) => inside(p, w, off, len));
  return {
    key: `rejectOwnPools:${[...pools].sort().join(",")}`,
    v4(addr, len) {
      if (v4Pools.length === 0) return 0;
      one[0] = addr;
      return find(4, one, 0, len) ? RejectReason.OwnPoolPrefix : 0;
    },
    v6(w, off, len) {
      return find(6, w, off, len) ? RejectReason.OwnPoolPrefix : 0;
    },
    describe(family, w, off, len) {
      const p = find(family, w, off, len);
      return p ? `default: inside our pool ${p.text}` : "default: accept";
    },
  };
}

/** Export to an external peer: only routes we originate. */
export const onlyLocalOriginations: DefaultPolicy = {
  key: "onlyLocalOriginations",
  v4: (_addr, _len, src) => (src === RouteSource.Local ? 0 : RejectReason.NotOriginatedHere),
  v6: (_w, _off, _len, src) => (src === RouteSource.Local ? 0 : RejectReason.NotOriginatedHere),
  describe: (_f, _w, _o, _l, src) =>
    src === RouteSource.Local ? "default: our origination" : "default: not originated here",
};

export interface PeerPolicyInput {
  /** An external peer (not another node of the cluster). */
  external: boolean;
  /** Our IP pools (CIDRs). */
  pools: readonly string[];
  /** The peer's BGPFilters, in order. */
  filters?: readonly NamedFilter[];
  /** Priority of routes without a LOCAL_PREF to read (filter `priority`; default 1024). */
  defaultPriority?: number;
  /** The same for IPv6 routes (default: defaultPriority). */
  defaultPriorityV6?: number;
}

/**
 * The import and export policies of one peer: its filters first (first match wins), then the
 * DESIGN §7 defaults for external peers, or accept for cluster peers.
 */
export function peerPolicies(input: PeerPolicyInput): {
  importPolicy: PrefixPolicy;
  exportPolicy: PrefixPolicy;
} {
  const filters = input.filters ?? [];
  const context: FilterContext = {
    ebgp: input.external,
    ...(input.defaultPriority !== undefined ? { defaultPriority: input.defaultPriority } : {}),
    ...(input.defaultPriorityV6 !== undefined
      ? { defaultPriorityV6: input.defaultPriorityV6 }
      : {}),
  };
  return {
    importPolicy: filterPolicy(
      filters,
      "import",
      input.external ? rejectOwnPools(input.pools) : acceptAll,
      context,
    ),
    exportPolicy: filterPolicy(
      filters,
      "export",
      input.external ? onlyLocalOriginations : acceptAll,
      context,
    ),
  };
}
