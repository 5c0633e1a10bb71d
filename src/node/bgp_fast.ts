// The BGP fast path's decision (pure): whether a change of block affinities is only this node's
// own block(s) newly confirmed (IPAM claiming a block inside a CNI ADD), and if so the speaker's
// originations with those blocks added, exactly as the next full render (bgp_state.ts renderBgp)
// will list them, so that the daemon can announce a new block at once and the debounced full
// pass that follows finds nothing to change (no withdraw and re-announce). Anything else (a
// block released, a block of an encapsulating pool, of a pool with disableBGPExport or of no
// pool, an origination the render placed otherwise) is left to the full pass. Not: reading the
// cache or calling the speaker (daemon.ts).
import type { IPPool } from "../api/ippool.js";
import type { Origination } from "../bgp/config.js";
import type { Affinity } from "../ipam/records.js";
import { cidrOverlaps, parseCidr } from "../lib/ip.js";
import { nodeBlocks } from "./agent_state.js";
import { isEncapsulatingPool } from "./bgp_state.js";

/** What the speaker's originations were rendered from (the last full render or fast path). */
export interface RenderedOwnBlocks {
  /** This node's confirmed blocks then (nodeBlocks: sorted, exported or not). */
  own: readonly string[];
  /** Those of them originated: the head of `originate`, in its order. */
  exported: readonly string[];
  /** The speaker's originations: the exported blocks, then borrowed addresses and Service IPs. */
  originate: readonly Origination[];
}

export type OwnBlocksDecision =
  /** This node's confirmed blocks are those rendered: nothing for the fast path. */
  | { kind: "none" }
  /** Only new blocks of this node: the originations with them, as the full render lists them. */
  | { kind: "originate"; added: string[]; exported: string[]; originate: Origination[] }
  /** Something the full pass decides (why, for the log). */
  | { kind: "pass"; why: string };

/**
 * Compares this node's confirmed blocks now (from every affinity in the cache) with those the
 * speaker's originations were rendered from. Only added blocks, each inside a pool that neither
 * encapsulates nor has disableBGPExport (no such pool overlapping it, as the render checks),
 * none overlapping another origination: the originations with them inserted among the exported
 * blocks (sorted, as nodeBlocks sorts).
 */
export function ownBlocksAdded(
  rendered: RenderedOwnBlocks,
  now: { affinities: readonly Affinity[]; pools: readonly IPPool[] },
  node: string,
): OwnBlocksDecision {
  const own = nodeBlocks(now.affinities, node);
  const nowSet = new Set(own);
  const gone = rendered.own.filter((b) => !nowSet.has(b));
  if (gone.length > 0) return { kind: "pass", why: `block ${gone[0]} no longer this node's` };
  const before = new Set(rendered.own);
  const added = own.filter((b) => !before.has(b));
  if (added.length === 0) return { kind: "none" };
  const head = rendered.originate.slice(0, rendered.exported.length).map((o) => o.prefix);
  if (head.join(" ") !== rendered.exported.join(" "))
    return { kind: "pass", why: "originations not in the rendered order" };
  const rest = rendered.originate.slice(rendered.exported.length);
  const pools = now.pools.map((p) => ({ pool: p, cidr: parseCidr(p.spec.cidr, false) }));
  for (const b of added) {
    const c = parseCidr(b, false);
    const inPools = pools.filter((p) => cidrOverlaps(p.cidr, c));
    const within = inPools.find((p) => p.cidr.prefixLen <= c.prefixLen);
    if (within === undefined) return { kind: "pass", why: `block ${b} in no pool` };
    if (inPools.some((p) => p.pool.spec.disableBGPExport === true))
      return { kind: "pass", why: `block ${b} in a pool with disableBGPExport` };
    if (inPools.some((p) => isEncapsulatingPool(p.pool)))
      return { kind: "pass", why: `block ${b} in an encapsulating pool` };
    // A borrowed address (or a Service IP) inside the block: the render's list changes there too.
    if (rest.some((o) => cidrOverlaps(parseCidr(o.prefix, false), c)))
      return { kind: "pass", why: `block ${b} covers another origination` };
  }
  const exported = [...rendered.exported, ...added].sort();
  const byPrefix = new Map(rendered.originate.map((o) => [o.prefix, o]));
  // The shape the config's parser gives an origination (key order included: configs are
  // compared as JSON).
  const originate = [
    ...exported.map(
      (prefix) =>
        byPrefix.get(prefix) ?? { prefix, communities: [] as string[], largeCommunities: [] },
    ),
    ...rest,
  ];
  return { kind: "originate", added, exported, originate };
}
