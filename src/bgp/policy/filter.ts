// Calico BGPFilter rules compiled into numeric prefix matchers, and the composition of filters
// with a default policy into one PrefixPolicy the RIB calls per prefix. Owns: rule validation,
// Equal/NotEqual/In/NotIn and prefix length range semantics, first-match-wins. Not: the DESIGN §7
// defaults (defaults.ts), attribute changes (communities.ts).

import { type PrefixPolicy, RejectReason, RouteSource } from "../rib/policy.js";
import { maskV4, parsePrefix } from "../rib/prefix.js";

export type MatchOperator = "Equal" | "NotEqual" | "In" | "NotIn";
export type FilterAction = "Accept" | "Reject";

/** One rule of a BGPFilter list (Calico v3 shape). */
export interface BgpFilterRule {
  /** Omitted: the rule matches every prefix (of the list's family). */
  cidr?: string;
  matchOperator?: MatchOperator;
  prefixLength?: { min?: number; max?: number };
  /** Export only: "RemotePeers" limits the rule to routes learned from peers. */
  source?: "RemotePeers";
  action: FilterAction;
}

/** A BGPFilter's spec: ordered rule lists per direction and family. */
export interface BgpFilterSpec {
  exportV4?: BgpFilterRule[];
  importV4?: BgpFilterRule[];
  exportV6?: BgpFilterRule[];
  importV6?: BgpFilterRule[];
}

export interface NamedFilter {
  name: string;
  spec: BgpFilterSpec;
}

/** Result of one rule list: no rule matched, or the first matching rule's action. */
export const MATCH_NONE = 0;
export const MATCH_ACCEPT = 1;
export const MATCH_REJECT = 2;

interface CompiledRule {
  /** Up to four words of the CIDR, and its length; len -1 when there is no cidr. */
  words: Uint32Array;
  cidrLen: number;
  op: MatchOperator;
  min: number;
  max: number;
  remoteOnly: boolean;
  result: number;
  text: string;
}

const OPERATORS: readonly MatchOperator[] = ["Equal", "NotEqual", "In", "NotIn"];

const RULE_FIELDS = new Set(["cidr", "matchOperator", "prefixLength", "source", "action"]);

function compileRule(rule: BgpFilterRule, family: 4 | 6, where: string): CompiledRule {
  const maxLen = family === 4 ? 32 : 128;
  // A field we do not implement is refused, never silently ignored (DESIGN §4).
  for (const k of Object.keys(rule)) {
    if (!RULE_FIELDS.has(k)) throw new Error(`Filter rule ${where}: field "${k}" is not supported`);
  }
  if (rule.source !== undefined && rule.source !== "RemotePeers") {
    throw new Error(`Filter rule ${where}: source "${String(rule.source)}" is not RemotePeers`);
  }
  if (rule.action !== "Accept" && rule.action !== "Reject") {
    throw new Error(
      `Filter rule ${where}: action "${String(rule.action)}" is not Accept or Reject`,
    );
  }
  if (rule.cidr !== undefined && rule.matchOperator === undefined) {
    throw new Error(`Filter rule ${where}: cidr "${rule.cidr}" needs a matchOperator`);
  }
  const op = rule.matchOperator ?? "In";
  if (!OPERATORS.includes(op)) {
    throw new Error(
      `Filter rule ${where}: matchOperator "${String(op)}" is not Equal, NotEqual, In or NotIn`,
    );
  }
  let words: Uint32Array = new Uint32Array(4);
  let cidrLen = -1;
  if (rule.cidr !== undefined) {
    const p = parsePrefix(rule.cidr);
    if (p.family !== family) {
      throw new Error(`Filter rule ${where}: cidr "${rule.cidr}" is not an IPv${family} prefix`);
    }
    words = p.words;
    cidrLen = p.len;
  } else if (rule.matchOperator !== undefined) {
    throw new Error(`Filter rule ${where}: matchOperator "${op}" needs a cidr`);
  }
  const min = rule.prefixLength?.min ?? Math.max(cidrLen, 0);
  const max = rule.prefixLength?.max ?? maxLen;
  for (const [name, v] of [
    ["min", min],
    ["max", max],
  ] as const) {
    if (!Number.isInteger(v) || v < 0 || v > maxLen) {
      throw new Error(`Filter rule ${where}: prefixLength.${name} ${v} is not in 0..${maxLen}`);
    }
  }
  if (min > max)
    throw new Error(`Filter rule ${where}: prefixLength.min ${min} is above max ${max}`);
  if (rule.prefixLength !== undefined && (op === "Equal" || op === "NotEqual")) {
    throw new Error(`Filter rule ${where}: prefixLength only applies to In and NotIn, not "${op}"`);
  }
  return {
    words,
    cidrLen,
    op,
    min,
    max,
    remoteOnly: rule.source === "RemotePeers",
    result: rule.action === "Accept" ? MATCH_ACCEPT : MATCH_REJECT,
    text: `${rule.cidr ?? "any"} ${op}${rule.prefixLength ? ` /${min}-${max}` : ""}${rule.source ? ` source ${rule.source}` : ""} ${rule.action}`,
  };
}

/** Is the prefix (w[off..], len) inside cidr (words, cidrLen)? */
function covers(
  words: Uint32Array,
  cidrLen: number,
  w: Uint32Array,
  off: number,
  len: number,
  nWords: number,
): boolean {
  if (len < cidrLen) return false;
  for (let i = 0; i < nWords; i++) {
    const bits = Math.min(32, Math.max(0, cidrLen - 32 * i));
    if (bits === 0) break;
    const m = maskV4(bits);
    if (((w[off + i] as number) & m) >>> 0 !== words[i]) return false;
  }
  return true;
}

function ruleMatches(
  r: CompiledRule,
  w: Uint32Array,
  off: number,
  len: number,
  nWords: number,
  src: RouteSource,
): boolean {
  if (r.remoteOnly && src === RouteSource.Local) return false;
  if (r.cidrLen < 0) return true;
  switch (r.op) {
    case "Equal":
    case "NotEqual": {
      let eq = len === r.cidrLen;
      for (let i = 0; eq && i < nWords; i++) eq = w[off + i] === r.words[i];
      return r.op === "Equal" ? eq : !eq;
    }
    case "In":
    case "NotIn": {
      const inside =
        len >= r.min && len <= r.max && covers(r.words, r.cidrLen, w, off, len, nWords);
      return r.op === "In" ? inside : !inside;
    }
  }
}

/** One compiled rule list (one filter, one direction, one family). */
export class RuleList {
  private readonly rules: CompiledRule[];
  private readonly one = new Uint32Array(1);
  constructor(
    rules: readonly BgpFilterRule[],
    readonly family: 4 | 6,
    readonly label: string,
  ) {
    this.rules = rules.map((r, i) => compileRule(r, family, `${label}[${i}]`));
  }

  get length(): number {
    return this.rules.length;
  }

  /** MATCH_NONE, MATCH_ACCEPT or MATCH_REJECT for the first matching rule. */
  matchV4(addr: number, len: number, src: RouteSource): number {
    this.one[0] = addr;
    return this.match(this.one, 0, len, src);
  }

  match(w: Uint32Array, off: number, len: number, src: RouteSource): number {
    const n = this.family === 4 ? 1 : 4;
    for (const r of this.rules) if (ruleMatches(r, w, off, len, n, src)) return r.result;
    return MATCH_NONE;
  }

  /** Index and text of the first matching rule, or undefined. */
  which(w: Uint32Array, off: number, len: number, src: RouteSource): string | undefined {
    const n = this.family === 4 ? 1 : 4;
    for (let i = 0; i < this.rules.length; i++) {
      const r = this.rules[i] as CompiledRule;
      if (ruleMatches(r, w, off, len, n, src)) return `${this.label}[${i}] ${r.text}`;
    }
    return undefined;
  }
}

/** The fallback when no filter rule matched: 0 accept, else a RejectReason code. */
export interface DefaultPolicy {
  readonly key: string;
  v4(addr: number, len: number, src: RouteSource): number;
  v6(w: Uint32Array, off: number, len: number, src: RouteSource): number;
  describe?(family: 4 | 6, w: Uint32Array, off: number, len: number, src: RouteSource): string;
}

export const acceptAll: DefaultPolicy = {
  key: "accept",
  v4: () => 0,
  v6: () => 0,
};

/**
 * Builds the per-peer policy of one direction: the peer's filters in order (Calico's
 * `filters[]`), first matching rule across them wins; when none matches, `fallback` decides.
 */
export function filterPolicy(
  filters: readonly NamedFilter[],
  direction: "import" | "export",
  fallback: DefaultPolicy = acceptAll,
): PrefixPolicy {
  const v4: RuleList[] = [];
  const v6: RuleList[] = [];
  for (const f of filters) {
    const r4 = direction === "import" ? f.spec.importV4 : f.spec.exportV4;
    const r6 = direction === "import" ? f.spec.importV6 : f.spec.exportV6;
    if (r4 && r4.length > 0) v4.push(new RuleList(r4, 4, `filter "${f.name}" ${direction}V4`));
    if (r6 && r6.length > 0) v6.push(new RuleList(r6, 6, `filter "${f.name}" ${direction}V6`));
  }
  // Identity for update groups: only the filters with rules in this direction decide (a peer's
  // own filter named after it but empty here must not put every peer in a group of its own).
  const used: [string, unknown, unknown][] = [];
  for (const f of filters) {
    const r4 = direction === "import" ? f.spec.importV4 : f.spec.exportV4;
    const r6 = direction === "import" ? f.spec.importV6 : f.spec.exportV6;
    if ((r4 && r4.length > 0) || (r6 && r6.length > 0)) used.push([f.name, r4 ?? [], r6 ?? []]);
  }
  const key = JSON.stringify([direction, used, fallback.key]);
  const one = new Uint32Array(1);
  const decide = (m: number): number => (m === MATCH_ACCEPT ? 0 : RejectReason.FilterReject);
  return {
    key,
    v4(addr, len, src) {
      if (v4.length > 0) {
        one[0] = addr;
        for (const l of v4) {
          const m = l.match(one, 0, len, src);
          if (m !== MATCH_NONE) return decide(m);
        }
      }
      return fallback.v4(addr, len, src);
    },
    v6(w, off, len, src) {
      for (const l of v6) {
        const m = l.match(w, off, len, src);
        if (m !== MATCH_NONE) return decide(m);
      }
      return fallback.v6(w, off, len, src);
    },
    describe(family, w, off, len, src) {
      for (const l of family === 4 ? v4 : v6) {
        const d = l.which(w, off, len, src);
        if (d !== undefined) return d;
      }
      return fallback.describe?.(family, w, off, len, src) ?? `default ${fallback.key}`;
    },
  };
}
