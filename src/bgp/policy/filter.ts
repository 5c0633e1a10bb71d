// Calico BGPFilter rules compiled into numeric prefix matchers plus, where a rule reads the
// path (communities, asPathPrefix, interface, priority) or changes it (operations), path
// matchers and the edits of accepting rules (on export and, as Calico's BIRD import filters
// do, on import); and the composition of filters with a default policy into one
// PrefixPolicy the RIB calls per prefix (or per path). Owns: rule validation,
// Equal/NotEqual/In/NotIn and prefix length range semantics, peerType against the session,
// Calico's priority encoding (LOCAL_PREF = 2^31-1 - priority), first-match-wins. Not: the
// DESIGN §7 defaults (defaults.ts), community text (communities.ts), applying edits (the RIB).

import type { AttrView, LargeCommunity } from "../rib/attrs.js";
import { AS_SEQUENCE } from "../rib/attrs.js";
import { type PolicyEdit, type PrefixPolicy, RejectReason, RouteSource } from "../rib/policy.js";
import { maskV4, parsePrefix } from "../rib/prefix.js";
import { parseCommunity, parseLargeCommunity } from "./communities.js";

export type MatchOperator = "Equal" | "NotEqual" | "In" | "NotIn";
export type FilterAction = "Accept" | "Reject";

/** One operation of an accepting rule (Calico v3 BGPFilterOperation): exactly one field. */
export interface BgpFilterOperation {
  addCommunity?: { value: string };
  prependASPath?: { prefix: number[] };
  setPriority?: { value: number };
}

/** One rule of a BGPFilter list (Calico v3 shape). */
export interface BgpFilterRule {
  /** Omitted: the rule matches every prefix (of the list's family). */
  cidr?: string;
  matchOperator?: MatchOperator;
  prefixLength?: { min?: number; max?: number };
  /** "RemotePeers" limits the rule to routes learned from peers (BIRD: source ~ [RTS_BGP]). */
  source?: "RemotePeers";
  /** The route's next-hop interface, a BIRD pattern ("eth*", "*.calico"). */
  interface?: string;
  /** The rule applies only on sessions of this type (same AS: iBGP, else eBGP). */
  peerType?: "eBGP" | "iBGP";
  /** Communities the route must carry: "aa:nn" standard (RFC 1997) or "a:b:c" large (RFC 8092). */
  communities?: { values: string[] };
  /** AS_PATH must begin with these ASNs. */
  asPathPrefix?: number[];
  /** The route's priority (Calico: 2^31-1 - LOCAL_PREF, else the default priority). */
  priority?: number;
  /** Changes made to an accepted route, in order (on import and on export). */
  operations?: BgpFilterOperation[];
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

/** Calico's highest LOCAL_PREF: a route's priority p is carried as LOCAL_PREF 2^31-1 - p. */
export const PRIORITY_LOCAL_PREF_BASE = 2147483647;
/** Calico's default route priority (BIRD's krt_metric when nothing set one). */
export const DEFAULT_ROUTE_PRIORITY = 1024;

/** How the rules of one peer's policy see the session and the routes. */
export interface FilterContext {
  /** The session is eBGP (peer AS differs from ours): decides peerType. Default false. */
  ebgp?: boolean;
  /** Priority of a route with no LOCAL_PREF to read (Calico: 1024, the normal route priority). */
  defaultPriority?: number;
  /** The same for IPv6 routes (Calico's ipv6NormalRoutePriority); default: defaultPriority. */
  defaultPriorityV6?: number;
  /**
   * The interface a next hop is reached through, undefined when not known; default: the zone
   * of "fe80::1%eth0".
   */
  ifaceOf?: (nextHop: string) => string | undefined;
}

/** The interface named by a next hop's zone ("fe80::1%eth0" -> "eth0"), else undefined. */
export function zoneInterface(nextHop: string): string | undefined {
  const z = nextHop.indexOf("%");
  return z < 0 ? undefined : nextHop.slice(z + 1);
}

/**
 * A route's priority as Calico's BIRD computes it: 2^31-1 - LOCAL_PREF when the route carries
 * one that counts (not from an eBGP peer, whose LOCAL_PREF is ignored, RFC 4271 §5.1.5), else
 * the default.
 */
export function routePriority(attrs: AttrView, src: RouteSource, dflt: number): number {
  if (attrs.localPref === undefined || src === RouteSource.External) return dflt;
  return PRIORITY_LOCAL_PREF_BASE - attrs.localPref;
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
  /** Path conditions (undefined: none). */
  iface: RegExp | undefined;
  communities: number[];
  largeCommunities: LargeCommunity[];
  asPathPrefix: number[];
  priority: number | undefined;
  /** Reads the path's attributes (some condition above is set). */
  readsPath: boolean;
  /** The edit of an accepting rule with operations (import or export). */
  edit: PolicyEdit | undefined;
  result: number;
  text: string;
}

const OPERATORS: readonly MatchOperator[] = ["Equal", "NotEqual", "In", "NotIn"];

const RULE_FIELDS = new Set([
  "cidr",
  "matchOperator",
  "prefixLength",
  "source",
  "interface",
  "peerType",
  "communities",
  "asPathPrefix",
  "priority",
  "operations",
  "action",
]);

/** BIRD's pattern match (`ifname ~ "eth*"`): * any run, ? one character, the rest literal. */
export function interfacePattern(pattern: string): RegExp {
  const body = [...pattern]
    .map((c) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[\\^$.|+()[\]{}]/g, "\\$&")))
    .join("");
  return new RegExp(`^${body}$`);
}

function asn(v: unknown, what: string): number {
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 0xffffffff)
    throw new Error(`${what} ${String(v)} is not an AS number (0-4294967295)`);
  return v as number;
}

function priorityValue(v: unknown, what: string): number {
  if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 2147483646)
    throw new Error(`${what} ${String(v)} is not a priority (1-2147483646)`);
  return v as number;
}

/** Standard ("aa:nn", well-known name) or large ("a:b:c") community into the right list. */
function addCommunityTo(text: string, std: number[], large: LargeCommunity[]): void {
  if (text.split(":").length === 3) large.push(parseLargeCommunity(text));
  else std.push(parseCommunity(text));
}

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
  if (rule.peerType !== undefined && rule.peerType !== "eBGP" && rule.peerType !== "iBGP") {
    throw new Error(
      `Filter rule ${where}: peerType "${String(rule.peerType)}" is not eBGP or iBGP`,
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
  const communities: number[] = [];
  const largeCommunities: LargeCommunity[] = [];
  for (const v of rule.communities?.values ?? []) {
    try {
      addCommunityTo(v, communities, largeCommunities);
    } catch (e) {
      throw new Error(`Filter rule ${where}: communities: ${(e as Error).message}`);
    }
  }
  const asPathPrefix = (rule.asPathPrefix ?? []).map((a, i) =>
    asn(a, `Filter rule ${where}: asPathPrefix[${i}]`),
  );
  const priority =
    rule.priority === undefined
      ? undefined
      : priorityValue(rule.priority, `Filter rule ${where}: priority`);
  let iface: RegExp | undefined;
  if (rule.interface !== undefined) {
    if (!/^[a-zA-Z0-9_.*?-]{1,15}$/.test(rule.interface))
      throw new Error(
        `Filter rule ${where}: interface "${rule.interface}" is not an interface name or pattern`,
      );
    iface = interfacePattern(rule.interface);
  }
  let edit: PolicyEdit | undefined;
  if (rule.operations !== undefined && rule.operations.length > 0) {
    if (rule.action !== "Accept")
      throw new Error(`Filter rule ${where}: operations need action Accept, not "${rule.action}"`);
    const addCommunities: number[] = [];
    const addLargeCommunities: LargeCommunity[] = [];
    const prependAsns: number[] = [];
    let localPref: number | undefined;
    for (const [i, o] of rule.operations.entries()) {
      const at = `Filter rule ${where}: operations[${i}]`;
      const n = Object.keys(o).length;
      if (n !== 1) throw new Error(`${at}: exactly one operation must be set`);
      if (o.addCommunity !== undefined) {
        try {
          addCommunityTo(o.addCommunity.value, addCommunities, addLargeCommunities);
        } catch (e) {
          throw new Error(`${at}: addCommunity: ${(e as Error).message}`);
        }
      } else if (o.prependASPath !== undefined) {
        const pre = o.prependASPath.prefix.map((a, j) =>
          asn(a, `${at}: prependASPath.prefix[${j}]`),
        );
        // Each operation prepends its list in front of what is there (first listed first).
        prependAsns.unshift(...pre);
      } else if (o.setPriority !== undefined) {
        const p = priorityValue(o.setPriority.value, `${at}: setPriority.value`);
        localPref = PRIORITY_LOCAL_PREF_BASE - p;
      } else {
        throw new Error(
          `${at}: "${Object.keys(o)[0]}" is not addCommunity, prependASPath or setPriority`,
        );
      }
    }
    edit = {
      addCommunities,
      addLargeCommunities,
      prependAsns,
      ...(localPref !== undefined ? { localPref } : {}),
    };
  }
  const conds: string[] = [];
  if (rule.interface !== undefined) conds.push(`interface ${rule.interface}`);
  if (rule.peerType !== undefined) conds.push(`peerType ${rule.peerType}`);
  if (rule.communities !== undefined)
    conds.push(`communities ${rule.communities.values.join(",")}`);
  if (asPathPrefix.length > 0) conds.push(`asPathPrefix ${asPathPrefix.join(" ")}`);
  if (priority !== undefined) conds.push(`priority ${priority}`);
  if (edit !== undefined) conds.push(`operations ${JSON.stringify(rule.operations)}`);
  return {
    words,
    cidrLen,
    op,
    min,
    max,
    remoteOnly: rule.source === "RemotePeers",
    iface,
    communities,
    largeCommunities,
    asPathPrefix,
    priority,
    readsPath:
      iface !== undefined ||
      communities.length + largeCommunities.length + asPathPrefix.length > 0 ||
      priority !== undefined,
    edit,
    result: rule.action === "Accept" ? MATCH_ACCEPT : MATCH_REJECT,
    text: `${rule.cidr ?? "any"} ${op}${rule.prefixLength ? ` /${min}-${max}` : ""}${rule.source ? ` source ${rule.source}` : ""}${conds.length > 0 ? ` ${conds.join(" ")}` : ""} ${rule.action}`,
  };
}

/** Does AS_PATH begin with these ASNs (BIRD: bgp_path ~ [= a b * =])? */
export function asPathStartsWith(attrs: AttrView, prefix: readonly number[]): boolean {
  let i = 0;
  for (const seg of attrs.asPath) {
    if (i === prefix.length) return true;
    if (seg.type !== AS_SEQUENCE) return false;
    for (const a of seg.asns) {
      if (a !== prefix[i]) return false;
      if (++i === prefix.length) return true;
    }
  }
  return i === prefix.length;
}

/** The path conditions of a rule (all must hold). */
function pathMatches(
  r: CompiledRule,
  family: 4 | 6,
  attrs: AttrView,
  src: RouteSource,
  ctx: PathCtx,
): boolean {
  for (const c of r.communities) if (!attrs.communities.includes(c)) return false;
  if (r.largeCommunities.length > 0) {
    const have = attrs.largeCommunities ?? [];
    for (const l of r.largeCommunities) {
      if (!have.some((x) => x[0] === l[0] && x[1] === l[1] && x[2] === l[2])) return false;
    }
  }
  if (r.asPathPrefix.length > 0 && !asPathStartsWith(attrs, r.asPathPrefix)) return false;
  if (r.priority !== undefined) {
    const dflt = family === 4 ? ctx.defaultPriority : ctx.defaultPriorityV6;
    if (routePriority(attrs, src, dflt) !== r.priority) return false;
  }
  if (r.iface !== undefined) {
    // BIRD: defined(ifname) && ifname ~ pattern. Our originations (blocks, service ranges) are
    // blackholes with no interface, as in Calico's BIRD: no match. A learned route's interface
    // is its next hop's when the speaker knows it (an unnumbered peer's "fe80::1%eth0");
    // unknown, the rule fails safe: a Reject rule matches, an Accept rule does not.
    if (src === RouteSource.Local) return false;
    const name = ctx.ifaceOf(attrs.nextHop);
    if (name === undefined) return r.result === MATCH_REJECT;
    if (!r.iface.test(name)) return false;
  }
  return true;
}

interface PathCtx {
  /** The normal priority of the family being evaluated (IPv4, IPv6). */
  defaultPriority: number;
  defaultPriorityV6: number;
  ifaceOf: (nextHop: string) => string | undefined;
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
  /** Some rule reads the path's attributes or edits it: evaluate with matchPath(). */
  readonly readsPath: boolean;
  constructor(
    rules: readonly BgpFilterRule[],
    readonly family: 4 | 6,
    readonly label: string,
    readonly direction: "import" | "export",
    /** The session is eBGP: decides the rules with a peerType. */
    ebgp: boolean,
  ) {
    // peerType is the session's (Calico: is_same_as), fixed for this list: a rule for the
    // other type is dropped here, one for this type keeps its other conditions.
    const want = ebgp ? "eBGP" : "iBGP";
    this.rules = [];
    for (const [i, r] of rules.entries()) {
      const c = compileRule(r, family, `${label}[${i}]`);
      if (r.peerType === undefined || r.peerType === want) {
        c.text = `[${i}] ${c.text}`;
        this.rules.push(c);
      }
    }
    this.readsPath = this.rules.some((r) => r.readsPath || r.edit !== undefined);
  }

  get length(): number {
    return this.rules.length;
  }

  /** MATCH_NONE, MATCH_ACCEPT or MATCH_REJECT for the first matching rule. */
  matchV4(addr: number, len: number, src: RouteSource): number {
    this.one[0] = addr;
    return this.match(this.one, 0, len, src);
  }

  /** Prefix-only evaluation (no rule reads the path: readsPath false). */
  match(w: Uint32Array, off: number, len: number, src: RouteSource): number {
    const n = this.family === 4 ? 1 : 4;
    for (const r of this.rules) if (ruleMatches(r, w, off, len, n, src)) return r.result;
    return MATCH_NONE;
  }

  /** Index (into this list's kept rules) of the first rule matching the path, or -1. */
  matchPath(
    w: Uint32Array,
    off: number,
    len: number,
    src: RouteSource,
    attrs: AttrView,
    ctx: PathCtx,
  ): number {
    const n = this.family === 4 ? 1 : 4;
    for (let i = 0; i < this.rules.length; i++) {
      const r = this.rules[i] as CompiledRule;
      if (!ruleMatches(r, w, off, len, n, src)) continue;
      if (r.readsPath && !pathMatches(r, this.family, attrs, src, ctx)) continue;
      return i;
    }
    return -1;
  }

  resultOf(i: number): number {
    return (this.rules[i] as CompiledRule).result;
  }

  editOf(i: number): PolicyEdit | undefined {
    return (this.rules[i] as CompiledRule).edit;
  }

  textOf(i: number): string {
    return `${this.label}${(this.rules[i] as CompiledRule).text}`;
  }

  /** Index and text of the first matching rule, or undefined (path rules: with attrs only). */
  which(
    w: Uint32Array,
    off: number,
    len: number,
    src: RouteSource,
    attrs?: AttrView,
    ctx?: PathCtx,
  ): string | undefined {
    const n = this.family === 4 ? 1 : 4;
    for (let i = 0; i < this.rules.length; i++) {
      const r = this.rules[i] as CompiledRule;
      if (!ruleMatches(r, w, off, len, n, src)) continue;
      if (r.readsPath && (attrs === undefined || ctx === undefined)) continue;
      if (r.readsPath && !pathMatches(r, this.family, attrs as AttrView, src, ctx as PathCtx))
        continue;
      return this.textOf(i);
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
 * When a rule reads the path or has operations, the policy also offers `path` (the RIB then
 * calls it with the path's attributes) and `edit` (the operations of the accepting rule).
 */
export function filterPolicy(
  filters: readonly NamedFilter[],
  direction: "import" | "export",
  fallback: DefaultPolicy = acceptAll,
  context: FilterContext = {},
): PrefixPolicy {
  const ebgp = context.ebgp ?? false;
  const dflt = context.defaultPriority ?? DEFAULT_ROUTE_PRIORITY;
  const ctx: PathCtx = {
    defaultPriority: dflt,
    defaultPriorityV6: context.defaultPriorityV6 ?? dflt,
    ifaceOf: context.ifaceOf ?? zoneInterface,
  };
  const v4: RuleList[] = [];
  const v6: RuleList[] = [];
  for (const f of filters) {
    const r4 = direction === "import" ? f.spec.importV4 : f.spec.exportV4;
    const r6 = direction === "import" ? f.spec.importV6 : f.spec.exportV6;
    const l4 = `filter "${f.name}" ${direction}V4`;
    const l6 = `filter "${f.name}" ${direction}V6`;
    if (r4 && r4.length > 0) v4.push(new RuleList(r4, 4, l4, direction, ebgp));
    if (r6 && r6.length > 0) v6.push(new RuleList(r6, 6, l6, direction, ebgp));
  }
  const readsPath = [...v4, ...v6].some((l) => l.readsPath);
  const usesPeerType = filters.some((f) =>
    [f.spec.importV4, f.spec.importV6, f.spec.exportV4, f.spec.exportV6].some((l) =>
      (l ?? []).some((r) => r.peerType !== undefined),
    ),
  );
  // Identity for update groups: only the filters with rules in this direction decide (a peer's
  // own filter named after it but empty here must not put every peer in a group of its own);
  // the session type when a rule names one, the default priority when rules read the path.
  const used: [string, unknown, unknown][] = [];
  for (const f of filters) {
    const r4 = direction === "import" ? f.spec.importV4 : f.spec.exportV4;
    const r6 = direction === "import" ? f.spec.importV6 : f.spec.exportV6;
    if ((r4 && r4.length > 0) || (r6 && r6.length > 0)) used.push([f.name, r4 ?? [], r6 ?? []]);
  }
  const extra: unknown[] = [];
  if (usesPeerType) extra.push(ebgp ? "eBGP" : "iBGP");
  if (readsPath)
    extra.push(ctx.defaultPriority, ctx.defaultPriorityV6, context.ifaceOf ? "ifaceOf" : "zone");
  const key = JSON.stringify([direction, used, fallback.key, ...extra]);
  const one = new Uint32Array(1);
  const decide = (m: number): number => (m === MATCH_ACCEPT ? 0 : RejectReason.FilterReject);
  const policy: PrefixPolicy = {
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
    describe(family, w, off, len, src, attrs) {
      for (const l of family === 4 ? v4 : v6) {
        const d = l.which(w, off, len, src, attrs, ctx);
        if (d !== undefined) return d;
      }
      return fallback.describe?.(family, w, off, len, src) ?? `default ${fallback.key}`;
    },
  };
  if (!readsPath) return policy;
  // Edit ids: one per accepting rule with operations, 1-based (the RIB keys its cache by them).
  const edits: PolicyEdit[] = [];
  const editIds = new Map<RuleList, number[]>();
  for (const l of [...v4, ...v6]) {
    const ids: number[] = [];
    for (let i = 0; i < l.length; i++) {
      const e = l.editOf(i);
      if (e === undefined) ids.push(0);
      else {
        edits.push(e);
        ids.push(edits.length);
      }
    }
    editIds.set(l, ids);
  }
  if (edits.length >= 4096)
    throw new Error(`Filters ${direction}: more than 4095 rules with operations`);
  policy.path = (family, w, off, len, src, attrs) => {
    for (const l of family === 4 ? v4 : v6) {
      const i = l.matchPath(w, off, len, src, attrs, ctx);
      if (i < 0) continue;
      if (l.resultOf(i) !== MATCH_ACCEPT) return RejectReason.FilterReject;
      const id = (editIds.get(l) as number[])[i] as number;
      return id === 0 ? 0 : -id;
    }
    if (family === 4) return fallback.v4(w[off] as number, len, src);
    return fallback.v6(w, off, len, src);
  };
  policy.edit = (id) => {
    const e = edits[id - 1];
    if (e === undefined) throw new Error(`No filter edit ${id}`);
    return e;
  };
  return policy;
}
