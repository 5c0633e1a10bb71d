// The agent's iptables and ipset state, rendered from values (pure): our `ocl-` chains and the
// one hook rule each gets in a built-in chain, NAT-outgoing per pool (Calico's cali-nat-outgoing),
// floating IPs' 1:1 NAT (Felix's fip-dnat/fip-snat), the RPF check of pods allowed to spoof some
// sources (Felix's rpf-skip, raw table), the pool ipsets; parsers of `iptables-save` and `ipset save`, and the plans (restore payloads)
// that converge what the kernel holds; with network policy, the hooks that send workload traffic
// to the dispatch chains, and where host endpoint rules (host_endpoint.ts) sit among them.
// Not: running any command (apply.ts), the policy chains (policy.ts).
import { createHash } from "node:crypto";
import { formatAddress, parseAddress, parseCidr } from "../lib/ip.js";
import { type AllowAction, allowTarget } from "./actions.js";
import type { HostFilter } from "./host_endpoint.js";

/** Prefix of every chain we own (DESIGN.md §5); chains without it are never touched. */
export const CHAIN_PREFIX = "ocl-";
/** Longest chain name we emit; longer names are hashed (Calico's MaxChainNameLength). */
export const MAX_CHAIN_NAME = 28;
/** Longest ipset name the kernel takes (IPSET_MAXNAMELEN - 1). */
const MAX_IPSET_NAME = 31;

export const CHAIN_FORWARD = "ocl-FORWARD";
export const CHAIN_INPUT = "ocl-INPUT";
export const CHAIN_OUTPUT = "ocl-OUTPUT";
export const CHAIN_POSTROUTING = "ocl-POSTROUTING";
/** Egress policy: picks the ocl-fw-<iface> chain of the sending workload interface. */
export const CHAIN_FROM_WL_DISPATCH = "ocl-from-wl-dispatch";
/** Ingress policy: picks the ocl-tw-<iface> chain of the receiving workload interface. */
export const CHAIN_TO_WL_DISPATCH = "ocl-to-wl-dispatch";
export const CHAIN_NAT_OUTGOING = "ocl-nat-outgoing";
/** nat PREROUTING and OUTPUT: floating IP (external) to pod address (Felix's cali-fip-dnat). */
export const CHAIN_FIP_DNAT = "ocl-fip-dnat";
/** nat POSTROUTING: a pod reaching its own floating IP is seen from it (cali-fip-snat). */
export const CHAIN_FIP_SNAT = "ocl-fip-snat";
const CHAIN_NAT_PREROUTING = "ocl-PREROUTING";
const CHAIN_NAT_OUTPUT = "ocl-OUTPUT";
/** raw PREROUTING: the RPF check of interfaces whose pods may send some foreign sources. */
export const CHAIN_RPF_CHECK = "ocl-rpf-check";
/** Pod-to-host traffic with a defaultEndpointToHostAction or host endpoints (Felix's). */
export const CHAIN_WL_TO_HOST = "ocl-wl-to-host";
/** Interface wildcard matching every host-side workload veth (iptables `+` suffix). */
export const WORKLOAD_IFACE_MATCH = "ocl+";

export type Family = 4 | 6;
export type TableName = "filter" | "nat" | "mangle" | "raw";

/** A pool as NAT-outgoing sees it (IPPool spec fields). */
export interface NatPool {
  cidr: string;
  natOutgoing: boolean;
  /** The pool's name, for messages. */
  name?: string;
}

export interface NatInput {
  family: Family;
  pools: NatPool[];
  /** CIDRs the user lists as the cluster network: never masqueraded to (DESIGN.md §1 point 4). */
  clusterCidrs: string[];
  /** Node addresses (all nodes): never masqueraded to. */
  nodeAddresses: string[];
  /** Floating IPs (1:1 NATs) of this node's pods, this family's. */
  floatingIps?: { internal: string; external: string }[];
}

/**
 * A workload interface whose pod may send from these prefixes (this family's; maybe none) besides
 * its own addresses.
 */
export interface RpfSkip {
  iface: string;
  prefixes: string[];
}

export interface ChainSpec {
  name: string;
  /** Rule specs as `iptables-save` prints them, without the leading `-A <chain>`. */
  rules: string[];
}

/** The one rule in a built-in chain that jumps to one of ours. */
export interface Hook {
  builtin: string;
  rule: string;
}

export interface TableSpec {
  table: TableName;
  chains: ChainSpec[];
  hooks: Hook[];
}

export interface IpsetSpec {
  name: string;
  /**
   * hash:ip,port only for Service matches (src/felix/service_match.ts); hash:net,iface only for
   * the dispatch by set (policy.ts dispatchBySet: `0.0.0.0/0,<iface>`).
   */
  type: "hash:net" | "hash:ip,port" | "hash:net,iface";
  family: "inet" | "inet6";
  /** Canonical CIDRs ("10.244.0.0/16", "10.255.0.11/32"), or "10.0.0.1,tcp:80"; sorted. */
  members: string[];
}

/** Chain name with our prefix, hashed when longer than MAX_CHAIN_NAME. */
export function chainName(name: string): string {
  const full = name.startsWith(CHAIN_PREFIX) ? name : `${CHAIN_PREFIX}${name}`;
  if (full.length <= MAX_CHAIN_NAME) return full;
  const hash = createHash("sha256").update(full).digest("base64url").replace(/[-_]/g, "x");
  return `${CHAIN_PREFIX}${hash.slice(0, MAX_CHAIN_NAME - CHAIN_PREFIX.length)}`;
}

/** The ipset names for one family: IPv4 `ocl-...`, IPv6 `ocl6-...`. */
export function ipsetNames(family: Family): {
  allPools: string;
  masqPools: string;
  allHosts: string;
} {
  const p = family === 4 ? "ocl-" : "ocl6-";
  return {
    allPools: `${p}all-ipam-pools`,
    masqPools: `${p}masq-ipam-pools`,
    allHosts: `${p}all-hosts-net`,
  };
}

/** "10.0.0.0/8" or "10.0.0.1" -> canonical CIDR text; throws quoting the bad value. */
export function canonicalCidr(text: string, family: Family, what: string): string {
  const [ip, len] = text.split("/");
  let value: bigint;
  let fam: Family;
  try {
    if (len === undefined) {
      const a = parseAddress(ip);
      value = a.value;
      fam = a.family;
    } else {
      const c = parseCidr(text);
      value = c.base;
      fam = c.family;
    }
  } catch {
    throw new Error(`Invalid ${what} "${text}"`);
  }
  if (fam !== family) throw new Error(`Invalid ${what} "${text}": not IPv${family}`);
  const bits = family === 4 ? 32 : 128;
  return `${formatAddress(family, value)}/${len === undefined ? bits : Number(len)}`;
}

function sortedUnique(xs: string[]): string[] {
  return [...new Set(xs)].sort();
}

/** The pool and host ipsets for one family (Calico's all-ipam-pools, masq-ipam-pools). */
export function renderIpsets(input: NatInput): IpsetSpec[] {
  const names = ipsetNames(input.family);
  const family = input.family === 4 ? "inet" : "inet6";
  const pools = input.pools.map((p) => ({
    cidr: canonicalCidr(p.cidr, input.family, "pool CIDR"),
    nat: p.natOutgoing,
  }));
  return [
    { name: names.allPools, members: pools.map((p) => p.cidr) },
    { name: names.masqPools, members: pools.filter((p) => p.nat).map((p) => p.cidr) },
    {
      name: names.allHosts,
      members: input.nodeAddresses.map((a) => canonicalCidr(a, input.family, "node address")),
    },
  ].map((s) => ({ ...s, type: "hash:net", family, members: sortedUnique(s.members) }));
}

/**
 * The nat table: POSTROUTING -> ocl-POSTROUTING -> ocl-nat-outgoing, which masquerades traffic
 * from a natOutgoing pool to anywhere outside the pools, the node addresses and the cluster CIDRs.
 */
export function renderNatTable(input: NatInput): TableSpec {
  const names = ipsetNames(input.family);
  const natOutgoing: string[] = [];
  if (input.pools.some((p) => p.natOutgoing)) {
    for (const c of sortedUnique(
      input.clusterCidrs.map((c) => canonicalCidr(c, input.family, "cluster CIDR")),
    )) {
      natOutgoing.push(`-d ${c} -j RETURN`);
    }
    natOutgoing.push(`-m set --match-set ${names.allHosts} dst -j RETURN`);
    natOutgoing.push(
      `-m set --match-set ${names.masqPools} src -m set ! --match-set ${names.allPools} dst -j MASQUERADE`,
    );
  }
  const fip = floatingIpChains(input);
  if (fip === undefined)
    return {
      table: "nat",
      chains: [
        { name: CHAIN_POSTROUTING, rules: [`-j ${CHAIN_NAT_OUTGOING}`] },
        { name: CHAIN_NAT_OUTGOING, rules: natOutgoing },
      ],
      hooks: [{ builtin: "POSTROUTING", rule: `-j ${CHAIN_POSTROUTING}` }],
    };
  // Felix's layout: fip-dnat from PREROUTING and OUTPUT, fip-snat before nat-outgoing.
  return {
    table: "nat",
    chains: [
      { name: CHAIN_NAT_PREROUTING, rules: [`-j ${CHAIN_FIP_DNAT}`] },
      { name: CHAIN_NAT_OUTPUT, rules: [`-j ${CHAIN_FIP_DNAT}`] },
      { name: CHAIN_POSTROUTING, rules: [`-j ${CHAIN_FIP_SNAT}`, `-j ${CHAIN_NAT_OUTGOING}`] },
      { name: CHAIN_NAT_OUTGOING, rules: natOutgoing },
      ...fip,
    ],
    hooks: [
      { builtin: "PREROUTING", rule: `-j ${CHAIN_NAT_PREROUTING}` },
      { builtin: "OUTPUT", rule: `-j ${CHAIN_NAT_OUTPUT}` },
      { builtin: "POSTROUTING", rule: `-j ${CHAIN_POSTROUTING}` },
    ],
  };
}

/**
 * Felix's floating IP chains (floatingIPManager): DNAT of each external address to its pod's
 * (an external address claimed twice goes to the lowest internal one), and SNAT to the external
 * address of a pod's traffic to itself (the lowest external address of each internal one). A
 * pod's other traffic keeps its own source: Calico does not SNAT it to the floating IP.
 */
function floatingIpChains(input: NatInput): ChainSpec[] | undefined {
  const nats = input.floatingIps ?? [];
  if (nats.length === 0) return undefined;
  const bits = input.family === 4 ? 32 : 128;
  const canon = (a: string, what: string) =>
    canonicalCidr(a, input.family, what).replace(/\/\d+$/, "");
  const dnat = new Map<string, string>();
  for (const n of nats) {
    const ext = canon(n.external, "floating IP");
    const int = canon(n.internal, "floating IP's internal address");
    const prev = dnat.get(ext);
    if (prev === undefined || int < prev) dnat.set(ext, int);
  }
  const snat = new Map<string, string>();
  for (const [ext, int] of dnat) {
    const prev = snat.get(int);
    if (prev === undefined || ext < prev) snat.set(int, ext);
  }
  const sorted = (m: Map<string, string>) =>
    [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return [
    {
      name: CHAIN_FIP_DNAT,
      rules: sorted(dnat).map(([ext, int]) => `-d ${ext}/${bits} -j DNAT --to-destination ${int}`),
    },
    {
      name: CHAIN_FIP_SNAT,
      rules: sorted(snat).map(
        ([int, ext]) => `-s ${int}/${bits} -d ${int}/${bits} -j SNAT --to-source ${ext}`,
      ),
    },
  ];
}

/**
 * The raw table's RPF check for pods allowed to spoof (Felix's rpf-skip): their interfaces have
 * rp_filter off (workload.ts), so here a packet from one of them passes when its source is in an
 * allowed prefix and is dropped when the strict reverse-path check fails; every other workload
 * interface keeps the kernel's rp_filter. Merged into the host endpoints' raw table, before it.
 */
export function renderRpfTable(
  skips: readonly RpfSkip[],
  family: Family,
  base?: TableSpec,
): TableSpec {
  const live = [...skips];
  // Without any, an empty table still removes a check left from an earlier pass.
  if (live.length === 0) return base ?? { table: "raw", chains: [], hooks: [] };
  const rules: string[] = [];
  for (const s of [...live].sort((a, b) => (a.iface < b.iface ? -1 : 1))) {
    for (const p of sortedUnique(s.prefixes.map((p) => canonicalCidr(p, family, "spoof prefix"))))
      rules.push(`-s ${p} -i ${s.iface} -j RETURN`);
    rules.push(`-i ${s.iface} -m rpfilter --invert -j DROP`);
  }
  return {
    table: "raw",
    chains: [{ name: CHAIN_RPF_CHECK, rules }, ...(base?.chains ?? [])],
    hooks: [{ builtin: "PREROUTING", rule: `-j ${CHAIN_RPF_CHECK}` }, ...(base?.hooks ?? [])],
  };
}

/** The policy chains policy.ts rendered (dispatch chains included); none: no policy applies. */
export interface PolicyChains {
  chains: ChainSpec[];
  /** A pod's traffic to its host accepted before its egress policy (IPv6 ND and MLD). */
  workloadToHostHead?: string[];
}

/**
 * The filter table: forwarded traffic to and from workload interfaces is accepted. With policy
 * chains, it first passes the sender's egress (from-wl dispatch) and then the receiver's
 * ingress (to-wl dispatch), which drop or return; a workload's traffic to the host passes its
 * egress (INPUT). The host's own traffic to a workload is not policed by the workload's ingress
 * (Felix's filterOutputChain returns for workload interfaces: kubelet's probes come from the
 * host), so OUTPUT is hooked only for host endpoints, whose rules (host_endpoint.ts) take their
 * places around these as in Felix. `allow` is
 * FelixConfiguration's iptablesFilterAllowAction: with Return, workload traffic that passed
 * policy goes back to FORWARD, where the host's own later rules and the chain's policy decide.
 */
export function renderFilterTable(
  policy?: PolicyChains,
  host?: HostFilter,
  allow: AllowAction = "Accept",
): TableSpec {
  const target = allowTarget(allow);
  const accept = [`-i ${WORKLOAD_IFACE_MATCH} ${target}`, `-o ${WORKLOAD_IFACE_MATCH} ${target}`];
  const wl = policy !== undefined && policy.chains.length > 0;
  if (!wl && host === undefined) {
    return {
      table: "filter",
      chains: [{ name: CHAIN_FORWARD, rules: accept }],
      hooks: [{ builtin: "FORWARD", rule: `-j ${CHAIN_FORWARD}` }],
    };
  }
  const fromWl = `-i ${WORKLOAD_IFACE_MATCH} -j ${CHAIN_FROM_WL_DISPATCH}`;
  const toWl = `-o ${WORKLOAD_IFACE_MATCH} -j ${CHAIN_TO_WL_DISPATCH}`;
  const h = host;
  // Felix's cali-wl-to-host opens with these (IPv6 ND and MLD), before the dispatch.
  const wlHead = wl ? (policy.workloadToHostHead ?? []) : [];
  const wlToHost: ChainSpec[] =
    h?.workloadToHost !== undefined
      ? [
          {
            name: CHAIN_WL_TO_HOST,
            rules: [
              ...wlHead,
              ...(wl ? [`-j ${CHAIN_FROM_WL_DISPATCH}`] : []),
              ...h.workloadToHost,
            ],
          },
        ]
      : [];
  const input = [
    ...(wlToHost.length > 0
      ? [`-i ${WORKLOAD_IFACE_MATCH} -g ${CHAIN_WL_TO_HOST}`]
      : wl
        ? [...wlHead.map((r) => `-i ${WORKLOAD_IFACE_MATCH} ${r}`), fromWl]
        : []),
    ...(h?.inputTail ?? []),
  ];
  // Host endpoints only: their outputTail returns for workload interfaces first (Felix's order).
  const output = [...(h?.outputHead ?? []), ...(h?.outputTail ?? [])];
  return {
    table: "filter",
    chains: [
      {
        name: CHAIN_FORWARD,
        rules: [
          ...(h?.forwardHead ?? []),
          ...(wl ? [fromWl, toWl] : []),
          ...(h?.forwardMiddle ?? []),
          ...accept,
          ...(h?.forwardTail ?? []),
        ],
      },
      { name: CHAIN_INPUT, rules: input },
      ...(output.length > 0 ? [{ name: CHAIN_OUTPUT, rules: output }] : []),
      ...wlToHost,
      // A policy for both pods and host endpoints renders one chain (the same rules).
      ...uniqueChains(policy?.chains ?? [], h?.chains ?? []),
    ],
    hooks: [
      { builtin: "INPUT", rule: `-j ${CHAIN_INPUT}` },
      { builtin: "FORWARD", rule: `-j ${CHAIN_FORWARD}` },
      ...(output.length > 0 ? [{ builtin: "OUTPUT", rule: `-j ${CHAIN_OUTPUT}` }] : []),
    ],
  };
}

/**
 * Chain names seen, by the call that last saw each (uniqueChains'): kept across calls, so that
 * a render of thousands of chains makes no set of their names (cleared when it grows).
 */
const chainSeen = new Map<string, number>();
let chainCall = 0;

/** The chains, the first of each name only. */
function uniqueChains(a: readonly ChainSpec[], b: readonly ChainSpec[]): ChainSpec[] {
  const call = ++chainCall;
  if (chainSeen.size > 4 * (a.length + b.length) + 1024) chainSeen.clear();
  const out: ChainSpec[] = [];
  for (const list of [a, b])
    for (let i = 0; i < list.length; i++) {
      const c = list[i] as ChainSpec;
      if (chainSeen.get(c.name) === call) continue;
      chainSeen.set(c.name, call);
      out.push(c);
    }
  return out;
}

/** A workload interface's QoS packet rates and connection limits (0 or absent: none). */
export interface WorkloadLimits {
  iface: string;
  ingressPacketRate?: number;
  ingressPacketBurst?: number;
  egressPacketRate?: number;
  egressPacketBurst?: number;
  ingressMaxConnections?: number;
  egressMaxConnections?: number;
}

/** The kernel's limit match takes at most 10k packets/s and bursts of 10k (XT_LIMIT_SCALE). */
const LIMIT_MAX = 10_000;
/** Calico's packet burst when a rate is set without one. */
const DEFAULT_PACKET_BURST = 5;
const CONNLIMIT_MAX = 2 ** 32 - 1;

/** The rules of one direction's limit chain, Felix's fragments (none: no chain). */
function limitRules(rate = 0, burst = 0, maxConnections = 0): string[] {
  const out: string[] = [];
  if (maxConnections > 0)
    out.push(
      `-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m connlimit --connlimit-above ${Math.min(maxConnections, CONNLIMIT_MAX)} --connlimit-mask 0 --connlimit-saddr -j REJECT --reject-with tcp-reset`,
    );
  if (rate > 0) {
    const b = Math.min(Math.max(burst || DEFAULT_PACKET_BURST, 1), LIMIT_MAX);
    // iptables-save leaves out the kernel's default burst (5).
    const burstArg = b === DEFAULT_PACKET_BURST ? "" : ` --limit-burst ${b}`;
    out.push(`-m limit --limit ${Math.min(rate, LIMIT_MAX)}/sec${burstArg} -j RETURN`);
    out.push("-j DROP");
  }
  return out;
}

/**
 * Adds the workloads' packet rates and connection limits to the filter table (Felix renders them
 * in the endpoint chains, which Ocelot has only for pods a policy selects): a chain per interface
 * and direction, `ocl-qi-<iface>` for traffic to the pod (from ocl-FORWARD and ocl-OUTPUT) and
 * `ocl-qo-<iface>` for traffic from it (ocl-FORWARD and ocl-INPUT), first in those chains. New
 * TCP connections over the limit are reset; packets over the rate are dropped.
 */
export function withWorkloadLimits(
  filter: TableSpec,
  limits: readonly WorkloadLimits[],
): TableSpec {
  const chains: ChainSpec[] = [];
  const fwd: string[] = [];
  const toWl: string[] = [];
  const fromWl: string[] = [];
  for (const l of [...limits].sort((a, b) => (a.iface < b.iface ? -1 : 1))) {
    const inRules = limitRules(l.ingressPacketRate, l.ingressPacketBurst, l.ingressMaxConnections);
    const outRules = limitRules(l.egressPacketRate, l.egressPacketBurst, l.egressMaxConnections);
    if (inRules.length > 0) {
      const name = chainName(`ocl-qi-${l.iface}`);
      chains.push({ name, rules: inRules });
      fwd.push(`-o ${l.iface} -j ${name}`);
      toWl.push(`-o ${l.iface} -j ${name}`);
    }
    if (outRules.length > 0) {
      const name = chainName(`ocl-qo-${l.iface}`);
      chains.push({ name, rules: outRules });
      fwd.push(`-i ${l.iface} -j ${name}`);
      fromWl.push(`-i ${l.iface} -j ${name}`);
    }
  }
  if (chains.length === 0) return filter;
  const head: Record<string, string[]> = {
    [CHAIN_FORWARD]: fwd,
    [CHAIN_INPUT]: fromWl,
    [CHAIN_OUTPUT]: toWl,
  };
  const out = filter.chains.map((c) =>
    head[c.name] ? { ...c, rules: [...(head[c.name] as string[]), ...c.rules] } : c,
  );
  const hooks = [...filter.hooks];
  for (const [chain, builtin] of [
    [CHAIN_INPUT, "INPUT"],
    [CHAIN_OUTPUT, "OUTPUT"],
  ] as const) {
    if ((head[chain] as string[]).length === 0 || out.some((c) => c.name === chain)) continue;
    out.push({ name: chain, rules: head[chain] as string[] });
    hooks.push({ builtin, rule: `-j ${chain}` });
  }
  return { ...filter, chains: [...out, ...chains], hooks };
}

/** Every table we own for one family (mangle and raw: host endpoint policy, when known). */
export function renderTables(
  input: NatInput,
  policy?: PolicyChains,
  host?: { filter?: HostFilter; tables: TableSpec[] },
  rpf: readonly RpfSkip[] = [],
  limits: readonly WorkloadLimits[] = [],
  allow: AllowAction = "Accept",
): TableSpec[] {
  const hostTables = host?.tables ?? [];
  const raw = renderRpfTable(
    rpf,
    input.family,
    hostTables.find((t) => t.table === "raw"),
  );
  return [
    withWorkloadLimits(renderFilterTable(policy, host?.filter, allow), limits),
    renderNatTable(input),
    ...hostTables.filter((t) => t.table !== "raw"),
    raw,
  ];
}

// ---- iptables-save ---------------------------------------------------------------------------

export interface SavedTable {
  table: string;
  /** Chain name -> policy ("ACCEPT", "DROP", or "-" for user chains), in order. */
  chains: Map<string, string>;
  /** Rules in order: the chain and the spec after `-A <chain> `. */
  rules: { chain: string; spec: string }[];
}

/** Parses `iptables-save` output; throws quoting a line it does not understand. */
export function parseIptablesSave(text: string): Map<string, SavedTable> {
  const tables = new Map<string, SavedTable>();
  let cur: SavedTable | undefined;
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const bad = () => new Error(`Unexpected iptables-save line ${i + 1}: "${line}"`);
    if (line.startsWith("*")) {
      cur = { table: line.slice(1), chains: new Map(), rules: [] };
      tables.set(cur.table, cur);
    } else if (!cur) {
      throw bad();
    } else if (line === "COMMIT") {
      cur = undefined;
    } else if (line.startsWith(":")) {
      const m = /^:(\S+)\s+(\S+)/.exec(line);
      if (!m) throw bad();
      cur.chains.set(m[1], m[2]);
    } else if (line.startsWith("-A ")) {
      const m = /^-A\s+(\S+)\s*(.*)$/.exec(line);
      if (!m) throw bad();
      cur.rules.push({ chain: m[1], spec: m[2].replace(/\s+/g, " ") });
    } else {
      throw bad();
    }
  }
  return tables;
}

/** The `ocl-` chain a rule jumps (or goes) to, if any. */
export function jumpTarget(spec: string): string | undefined {
  const m = /(?:^|\s)-[jg]\s+(\S+)/.exec(spec);
  return m?.[1].startsWith(CHAIN_PREFIX) ? m[1] : undefined;
}

export interface TablePlan {
  table: TableName;
  /** `iptables-restore --noflush` input, or null when the kernel already matches. */
  payload: string | null;
  /** What differs, for logs and reports: "chain ocl-nat-outgoing differs", ... */
  changes: string[];
}

/**
 * Plans one table: our chains whose rules differ are flushed and rewritten; missing hooks are
 * inserted at the top of their built-in chain, misplaced or duplicate ones removed; `ocl-`
 * chains we no longer want are emptied and deleted. Rules and chains of others are left alone.
 */
export function planTable(desired: TableSpec, current: SavedTable | undefined): TablePlan {
  const changes: string[] = [];
  const rulesOf = new Map<string, string[]>();
  for (const r of current?.rules ?? []) {
    const list = rulesOf.get(r.chain) ?? [];
    list.push(r.spec);
    rulesOf.set(r.chain, list);
  }
  const have = current?.chains ?? new Map<string, string>();
  const wanted = new Set(desired.chains.map((c) => c.name));
  for (const c of desired.chains) {
    if (!c.name.startsWith(CHAIN_PREFIX) || c.name.length > MAX_CHAIN_NAME) {
      throw new Error(`Invalid chain name "${c.name}": must start with ${CHAIN_PREFIX}`);
    }
  }

  const rewrite: ChainSpec[] = [];
  for (const c of desired.chains) {
    if (!have.has(c.name)) {
      changes.push(`chain ${c.name} missing`);
      rewrite.push(c);
    } else if (!sameRules(rulesOf.get(c.name) ?? [], c.rules)) {
      changes.push(`chain ${c.name} differs`);
      rewrite.push(c);
    }
  }
  const stale = [...have.keys()].filter((n) => n.startsWith(CHAIN_PREFIX) && !wanted.has(n));
  for (const n of stale) changes.push(`chain ${n} stale`);

  // Hooks: per built-in chain, ours must be its first rules, once each, in order.
  const deletes: string[] = [];
  const inserts: string[] = [];
  // Built-in chains are the ones with a policy; user chains print "-".
  const builtins = new Set<string>([
    ...desired.hooks.map((h) => h.builtin),
    ...[...have].filter(([, policy]) => policy !== "-").map(([n]) => n),
  ]);
  for (const builtin of builtins) {
    const want = desired.hooks.filter((h) => h.builtin === builtin).map((h) => h.rule);
    const rules = rulesOf.get(builtin) ?? [];
    const ours = rules.filter((s) => jumpTarget(s) !== undefined);
    const inPlace = sameRules(rules.slice(0, want.length), want) && ours.length === want.length;
    if (inPlace) continue;
    for (const s of ours) deletes.push(`-D ${builtin} ${s}`);
    for (const [i, rule] of want.entries()) inserts.push(`-I ${builtin} ${i + 1} ${rule}`);
    changes.push(`hooks in ${builtin} ${ours.length === 0 ? "missing" : "differ"}`);
  }

  if (changes.length === 0) return { table: desired.table, payload: null, changes };
  const lines = [`*${desired.table}`];
  for (const c of rewrite) lines.push(`:${c.name} - [0:0]`);
  for (const n of stale) lines.push(`:${n} - [0:0]`); // flushes it
  lines.push(...deletes);
  for (const c of rewrite) for (const r of c.rules) lines.push(`-A ${c.name} ${r}`);
  lines.push(...inserts);
  for (const n of stale) lines.push(`-X ${n}`);
  lines.push("COMMIT", "");
  return { table: desired.table, payload: lines.join("\n"), changes };
}

function sameRules(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i].replace(/\s+/g, " "));
}

// ---- ipset save ------------------------------------------------------------------------------

export interface SavedIpset {
  name: string;
  type: string;
  family: string;
  members: string[];
}

/** An IPv4 address or CIDR as ipset prints it (octets without leading zeros). */
const IPV4_MEMBER =
  /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\/(?:3[0-2]|[12]?\d))?$/;

/** Parses `ipset save` output (create/add lines); members canonical, sorted. */
export function parseIpsetSave(text: string): Map<string, SavedIpset> {
  const sets = new Map<string, SavedIpset>();
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "") continue;
    const parts = line.split(/\s+/);
    if (parts[0] === "create" && parts.length >= 3) {
      const fi = parts.indexOf("family");
      const family = fi > 0 ? parts[fi + 1] : "inet";
      sets.set(parts[1], { name: parts[1], type: parts[2], family, members: [] });
    } else if (parts[0] === "add" && parts.length >= 3 && sets.has(parts[1])) {
      const set = sets.get(parts[1]) as SavedIpset;
      const fam: Family = set.family === "inet6" ? 6 : 4;
      let member = parts[2] as string;
      if (fam === 4 && IPV4_MEMBER.test(member)) {
        // ipset prints IPv4 nets canonical (masked, no leading zeros), a /32 without its length:
        // the fast path for sets of thousands of CIDRs.
        if (!member.includes("/")) member = `${member}/32`;
      } else {
        try {
          member = canonicalCidr(member, fam, "ipset member");
        } catch {
          // Not an address (another set type): kept as printed.
        }
      }
      set.members.push(member);
    } else {
      throw new Error(`Unexpected ipset save line ${i + 1}: "${line}"`);
    }
  }
  for (const s of sets.values()) s.members.sort();
  return sets;
}

export interface IpsetPlan {
  /** `ipset restore -exist` input, or null when every set already matches. */
  payload: string | null;
  changes: string[];
}

/** Our sets (`ocl-`, `ocl6-`) that are no longer wanted, to destroy once no rule uses them. */
export function staleIpsets(desired: IpsetSpec[], current: Map<string, SavedIpset>): string[] {
  const wanted = new Set(desired.map((s) => s.name));
  return [...current.keys()].filter((n) => /^ocl6?-/.test(n) && !wanted.has(n)).sort();
}

/** Temporary name used to fill a set before swapping it in. */
export function tempIpsetName(name: string): string {
  const base = name.replace(/^ocl6?-/, "");
  return `ocl-tmp-${base}`.slice(0, MAX_IPSET_NAME);
}

/**
 * Plans the ipsets: a missing set is created and filled; a set whose members differ is rebuilt
 * under a temporary name and swapped in atomically (iptables keeps pointing at the same name).
 */
export function planIpsets(desired: IpsetSpec[], current: Map<string, SavedIpset>): IpsetPlan {
  const lines: string[] = [];
  const changes: string[] = [];
  for (const s of desired) {
    if (s.name.length > MAX_IPSET_NAME) throw new Error(`Ipset name "${s.name}" is too long`);
    const header = `${s.type} family ${s.family}`;
    const cur = current.get(s.name);
    if (!cur) {
      changes.push(`ipset ${s.name} missing`);
      lines.push(`create ${s.name} ${header}`);
      for (const m of s.members) lines.push(`add ${s.name} ${m}`);
      continue;
    }
    if (cur.type !== s.type || cur.family !== s.family) {
      throw new Error(
        `Ipset "${s.name}" exists as "${cur.type} family ${cur.family}", expected "${header}"`,
      );
    }
    if (sameRules(cur.members, s.members)) continue;
    changes.push(`ipset ${s.name} members differ`);
    const tmp = tempIpsetName(s.name);
    lines.push(`create ${tmp} ${header}`, `flush ${tmp}`);
    for (const m of s.members) lines.push(`add ${tmp} ${m}`);
    lines.push(`swap ${tmp} ${s.name}`, `destroy ${tmp}`);
  }
  return { payload: lines.length ? `${lines.join("\n")}\n` : null, changes };
}
