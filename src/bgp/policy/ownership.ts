// Import ownership (an Ocelot extension of a peer's import): inside some prefixes (`within`, the
// IP pools), a peer may announce only what it owns, its `accept` list: a prefix equal to one of
// them (a block whose affinity the peer's Node holds, a host route for an address it borrowed),
// or a host route (/32, /128) inside one. Anything else inside `within`, of any length, is
// rejected as RejectReason.NotOwned, ahead of every filter rule (none can let it back in);
// outside `within`, and for what it accepts, the peer's own import policy decides. Changing the
// lists is applied by re-evaluating the kept Adj-RIB-In (core.ts refreshPeer): a route refused
// for want of an affinity lands when the affinity arrives, with no ROUTE-REFRESH, and a route
// that stays owned keeps its verdict (no flap). Owns: the lookup and its descriptions. Not: who
// owns what (src/node/import_ownership.ts), the other reject reasons (filter.ts, defaults.ts).
import { type PrefixPolicy, RejectReason, type RouteSource } from "../rib/policy.js";
import { formatV4, formatV6, maskV4, type ParsedPrefix, parsePrefix } from "../rib/prefix.js";

/** What a peer may announce inside `within` (CIDR text; see the module comment). */
export interface ImportOwnership {
  /** The prefixes the check applies to (the pools), any length inside them. */
  within: string[];
  /** The peer's own prefixes there: equal ones pass, and host routes inside them. */
  accept: string[];
}

interface Net {
  words: Uint32Array;
  len: number;
  text: string;
}

/** The key of a prefix (w[off..] masked to len) in an exact-match set. */
function keyOf(family: 4 | 6, w: Uint32Array, off: number, len: number): string {
  const n = family === 4 ? 1 : 4;
  let k = `${len}`;
  for (let i = 0; i < n; i++) {
    const bits = Math.min(32, Math.max(0, len - 32 * i));
    k += `:${((w[off + i] as number) & maskV4(bits)) >>> 0}`;
  }
  return k;
}

function inside(n: Net, family: 4 | 6, w: Uint32Array, off: number, len: number): boolean {
  if (len < n.len) return false;
  const words = family === 4 ? 1 : 4;
  for (let i = 0; i < words; i++) {
    const bits = Math.min(32, Math.max(0, n.len - 32 * i));
    if (bits === 0) break;
    if (((w[off + i] as number) & maskV4(bits)) >>> 0 !== n.words[i]) return false;
  }
  return true;
}

/** One family's compiled lists. */
interface Side {
  within: Net[];
  exact: Set<string>;
  /** The lengths of `accept` entries (shortest first): a host route is looked up at each. */
  lens: number[];
}

/** The verdict of the ownership alone: 0 (pass to the peer's policy) or NotOwned. */
export class OwnershipCheck {
  private readonly v4: Side = { within: [], exact: new Set(), lens: [] };
  private readonly v6: Side = { within: [], exact: new Set(), lens: [] };
  private readonly one = new Uint32Array(1);
  readonly key: string;

  constructor(own: ImportOwnership) {
    for (const [i, text] of own.within.entries()) {
      const p = parse(text, `within[${i}]`);
      (p.family === 4 ? this.v4 : this.v6).within.push({ words: p.words, len: p.len, text });
    }
    for (const [i, text] of own.accept.entries()) {
      const p = parse(text, `accept[${i}]`);
      const side = p.family === 4 ? this.v4 : this.v6;
      side.exact.add(keyOf(p.family, p.words, 0, p.len));
      if (!side.lens.includes(p.len)) side.lens.push(p.len);
    }
    this.v4.lens.sort((a, b) => a - b);
    this.v6.lens.sort((a, b) => a - b);
    this.key = JSON.stringify([[...own.within].sort(), [...own.accept].sort()]);
  }

  /** 0, or RejectReason.NotOwned for a prefix inside `within` the peer does not own. */
  check(family: 4 | 6, w: Uint32Array, off: number, len: number): number {
    const side = family === 4 ? this.v4 : this.v6;
    if (side.within.length === 0) return 0;
    if (!side.within.some((n) => inside(n, family, w, off, len))) return 0;
    if (side.exact.has(keyOf(family, w, off, len))) return 0;
    if (len === (family === 4 ? 32 : 128))
      for (const l of side.lens) if (side.exact.has(keyOf(family, w, off, l))) return 0;
    return RejectReason.NotOwned;
  }

  checkV4(addr: number, len: number): number {
    if (this.v4.within.length === 0) return 0;
    this.one[0] = addr;
    return this.check(4, this.one, 0, len);
  }

  /** Why check() refused it, for `explain`. */
  describe(family: 4 | 6, w: Uint32Array, off: number, len: number): string {
    const side = family === 4 ? this.v4 : this.v6;
    const n = side.within.find((x) => inside(x, family, w, off, len));
    const text = family === 4 ? formatV4(w[off] as number, len) : formatV6(w, off, len);
    return `import ownership: ${text} inside ${n?.text ?? "?"} is not the peer's (no block affinity, no workload address of its Node)`;
  }
}

function parse(text: string, where: string) {
  try {
    return parsePrefix(text);
  } catch (e) {
    throw new Error(`importOwnership.${where}: ${(e as Error).message}`);
  }
}

/**
 * The peer's import policy with the ownership check in front: what it refuses is NotOwned,
 * what it passes goes to `inner` (its guard, filters and defaults) as before.
 */
export function withOwnership(own: ImportOwnership, inner: PrefixPolicy): PrefixPolicy {
  const c = new OwnershipCheck(own);
  const policy: PrefixPolicy = {
    key: `ownership:${c.key}|${inner.key}`,
    v4(addr, len, src: RouteSource) {
      return c.checkV4(addr, len) || inner.v4(addr, len, src);
    },
    v6(w, off, len, src) {
      return c.check(6, w, off, len) || inner.v6(w, off, len, src);
    },
    describe(family, w, off, len, src, attrs) {
      if (c.check(family, w, off, len) !== 0) return c.describe(family, w, off, len);
      return inner.describe?.(family, w, off, len, src, attrs) ?? "default";
    },
  };
  const path = inner.path;
  if (path !== undefined) {
    policy.path = (family, w, off, len, src, attrs) =>
      c.check(family, w, off, len) || path(family, w, off, len, src, attrs);
  }
  if (inner.edit !== undefined) policy.edit = inner.edit;
  return policy;
}

/** Host routes enumerated per changed entry at most (2^12: the smallest Calico block, /20). */
const MAX_HOSTS_PER_ENTRY = 4096;

/**
 * The prefixes whose verdict can differ between two ownerships of one peer (the rest of its
 * policy the same): each accept entry gained or lost, and the host routes inside it. Undefined
 * when the whole Adj-RIB-In must be re-evaluated: `within` changed, an ownership appeared or
 * went, or an entry holds more than 4,096 host routes.
 */
export function ownershipDelta(
  old: ImportOwnership | undefined,
  next: ImportOwnership | undefined,
): ParsedPrefix[] | undefined {
  if (old === undefined || next === undefined) return undefined;
  const key = (l: readonly string[]) => JSON.stringify([...l].sort());
  if (key(old.within) !== key(next.within)) return undefined;
  const before = new Set(old.accept);
  const after = new Set(next.accept);
  const out: ParsedPrefix[] = [];
  for (const text of [
    ...old.accept.filter((a) => !after.has(a)),
    ...next.accept.filter((a) => !before.has(a)),
  ]) {
    const p = parsePrefix(text);
    out.push(p);
    const max = p.family === 4 ? 32 : 128;
    if (p.len === max) continue;
    const n = 2 ** (max - p.len);
    if (n > MAX_HOSTS_PER_ENTRY) return undefined;
    // Within one word (at most 12 host bits): the last word counts up from the entry's.
    const last = p.family === 4 ? 0 : 3;
    for (let i = 0; i < n; i++) {
      const words = Uint32Array.from(p.words);
      words[last] = ((p.words[last] as number) + i) >>> 0;
      out.push({ family: p.family, words, len: max });
    }
  }
  return out;
}
