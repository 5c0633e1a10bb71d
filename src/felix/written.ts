// What the agent last wrote to the kernel, kept in memory, and the plan from it to a newly
// rendered DataplaneState without reading the kernel back (pure): Felix's way of applying a
// change at the pace of the change, not of the whole data plane. Per table, only the `ocl-`
// chains whose rules differ are written (a run of rules deleted and inserted by position, or
// the chain rewritten) and the ones no longer wanted deleted, in one
// `iptables-restore --noflush` payload; per ipset, the members that come and go (`add` / `del`
// in one `ipset restore -exist` payload, and the same as member operations for netlink; a set
// that changes more than half its members is rebuilt and swapped in); node-wide sysctls whose
// value differs; the workload interfaces not configured yet (new, recreated, or still
// missing), to be checked and set. What this cannot
// plan (a hook, a table or a family that comes or goes, an ipset whose type changes) asks for a
// full pass, which reads everything back (apply.ts's applyDataplane). Drift made by others is
// found only by a full pass: the caller runs one on its refresh interval, at start and after
// any error. Not: running commands (apply.ts), rendering (dataplane.ts and friends).
import type { DataplaneState } from "./dataplane.js";
import type { IpsetMemberOp } from "./ipset_netlink.js";
import { type IpsetSpec, type TableName, tempIpsetName } from "./iptables.js";
import type { HostIface, Sysctl } from "./workload.js";

/** One table as written: its hooks (as text) and its chains' rules. */
export interface WrittenTable {
  hooks: string;
  chains: Map<string, readonly string[]>;
}

export interface Written {
  /** `<family> <table>` -> what is in force. */
  tables: Map<string, WrittenTable>;
  /** Our ipsets by name, members as written. */
  ipsets: Map<string, IpsetSpec>;
  /** Node-wide sysctls written. */
  sysctls: Map<string, string>;
  /**
   * Workload interfaces found and configured (MAC, up, sysctls): name -> what was set
   * (ifaceKey) and the interface index when known (a recreated interface has a new one).
   */
  ifaces: Map<string, { key: string; index?: number }>;
}

export interface IncrementalPlan {
  /** Set when only a full pass (reading the kernel back) can converge: why. */
  full?: string;
  iptables: { family: 4 | 6; table: TableName; payload: string; changes: string[] }[];
  /** `ipset restore -exist` input, or null. */
  ipsets: string | null;
  ipsetChanges: string[];
  /**
   * The same change as member adds and deletes (all adds first: a member moving between two
   * sets is never in neither), when that is all it is: every set exists, is `hash:net`, and
   * changes by a few members. Undefined when a set is created or rebuilt (then only the
   * restore payload does it).
   */
  ipsetOps?: IpsetMemberOp[];
  /** Our sets no longer wanted: destroyed after the iptables writes. */
  staleIpsets: string[];
  /** Node-wide sysctls whose value differs from the one written. */
  sysctls: Sysctl[];
  /** Interfaces not configured yet (or changed): checked, then set. */
  checkIfaces: HostIface[];
  /** Interfaces configured before that the state no longer has. */
  goneIfaces: string[];
}

const tableKey = (family: 4 | 6, table: string) => `${family} ${table}`;
const hooksText = (hooks: { builtin: string; rule: string }[]) =>
  hooks.map((h) => `${h.builtin} ${h.rule}`).join("\n");

/** ifaceKey of the interfaces rendered (frozen, reused across renders: workload.ts). */
const ifaceKeys = new WeakMap<HostIface, string>();

/** What an interface is configured with (its MAC and sysctls): a change reconfigures it. */
export function ifaceKey(i: HostIface): string {
  const had = ifaceKeys.get(i);
  if (had !== undefined) return had;
  const addrs = i.addresses === undefined ? "" : ` addr=${i.addresses.join(",")}`;
  const key = `${i.mac} ${i.sysctls.map((s) => `${s.key}=${s.value}`).join(" ")}${addrs}`;
  if (Object.isFrozen(i) && Object.isFrozen(i.sysctls)) ifaceKeys.set(i, key);
  return key;
}

/** The tables and ipsets of state, as they are in force once written whole. */
function filterStateOf(state: DataplaneState): {
  tables: Map<string, WrittenTable>;
  ipsets: Map<string, IpsetSpec>;
} {
  const tables = new Map<string, WrittenTable>();
  for (const f of state.families)
    for (const t of f.tables)
      tables.set(tableKey(f.family, t.table), {
        hooks: hooksText(t.hooks),
        chains: new Map(t.chains.map((c) => [c.name, c.rules])),
      });
  const ipsets = new Map<string, IpsetSpec>();
  for (const f of state.families) for (const s of f.ipsets) ipsets.set(s.name, s);
  return { tables, ipsets };
}

/**
 * What is in force after a full pass converged the kernel to state (`present`: the workload
 * interfaces that exist, with their index when known).
 */
export function writtenOf(
  state: DataplaneState,
  present: Map<string, number | undefined>,
): Written {
  const { tables, ipsets } = filterStateOf(state);
  const ifaces = new Map<string, { key: string; index?: number }>();
  for (const i of state.workloads.ifaces)
    if (present.has(i.name)) {
      const index = present.get(i.name);
      ifaces.set(i.name, { key: ifaceKey(i), ...(index !== undefined ? { index } : {}) });
    }
  return {
    tables,
    ipsets,
    sysctls: new Map(state.workloads.sysctls.map((s) => [s.key, s.value])),
    ifaces,
  };
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The rule edits that take a chain from `old` to `rules` when they differ in one run of rules
 * (a pod's rule added to or removed from a dispatch chain of a thousand): the old run deleted
 * by position, the new one inserted (appended at the end); undefined when rewriting the chain
 * is as cheap (the run is more than a quarter of it), as Felix's rule-level updates.
 */
export function chainEdit(
  chain: string,
  old: readonly string[],
  rules: readonly string[],
): string[] | undefined {
  let p = 0;
  while (p < old.length && p < rules.length && old[p] === rules[p]) p++;
  let s = 0;
  while (
    s < old.length - p &&
    s < rules.length - p &&
    old[old.length - 1 - s] === rules[rules.length - 1 - s]
  )
    s++;
  const deleted = old.length - p - s;
  const inserted = rules.slice(p, rules.length - s);
  if (deleted + inserted.length > Math.max(4, rules.length / 4)) return undefined;
  const out: string[] = [];
  for (let i = 0; i < deleted; i++) out.push(`-D ${chain} ${p + 1}`);
  for (const [i, r] of inserted.entries())
    out.push(s === 0 ? `-A ${chain} ${r}` : `-I ${chain} ${p + 1 + i} ${r}`);
  return out;
}

/**
 * The restore lines that take set `have` (as written) to `want`, empty when they match; and,
 * when the change is members only, the members added and removed.
 */
function ipsetLines(
  have: IpsetSpec | undefined,
  want: IpsetSpec,
): { lines: string[]; added?: string[]; removed?: string[] } {
  const header = `${want.type} family ${want.family}`;
  if (have === undefined)
    return {
      lines: [`create ${want.name} ${header}`, ...want.members.map((m) => `add ${want.name} ${m}`)],
    };
  if (sameList(have.members, want.members)) return { lines: [] };
  const old = new Set(have.members);
  const now = new Set(want.members);
  const added = want.members.filter((m) => !old.has(m));
  const removed = have.members.filter((m) => !now.has(m));
  if (added.length + removed.length <= Math.max(8, want.members.length / 2))
    // Added first: a member moving between two sets is never in neither.
    return {
      lines: [
        ...added.map((m) => `add ${want.name} ${m}`),
        ...removed.map((m) => `del ${want.name} ${m}`),
      ],
      added,
      removed,
    };
  // Most of it changes: rebuilt under a temporary name and swapped in at once.
  const tmp = tempIpsetName(want.name);
  return {
    lines: [
      `create ${tmp} ${header}`,
      `flush ${tmp}`,
      ...want.members.map((m) => `add ${tmp} ${m}`),
      `swap ${tmp} ${want.name}`,
      `destroy ${tmp}`,
    ],
  };
}

/**
 * The plan from what was written to state. `known`: the interface indexes the FIB's link watch
 * sees now (absent: not known); a configured interface whose index changed (recreated) or that
 * is gone is checked again.
 */
export function planIncremental(
  written: Written,
  state: DataplaneState,
  known?: ReadonlyMap<string, number>,
): IncrementalPlan {
  const plan: IncrementalPlan = {
    iptables: [],
    ipsets: null,
    ipsetChanges: [],
    staleIpsets: [],
    sysctls: [],
    checkIfaces: [],
    goneIfaces: [],
  };
  const full = (why: string): IncrementalPlan => ({ ...plan, full: why });

  // iptables: the same families and tables with the same hooks, or a full pass.
  const keys = new Set<string>();
  for (const f of state.families)
    for (const t of f.tables) {
      const key = tableKey(f.family, t.table);
      keys.add(key);
      const have = written.tables.get(key);
      if (have === undefined) return full(`IPv${f.family} ${t.table} table not written before`);
      if (have.hooks !== hooksText(t.hooks))
        return full(`IPv${f.family} ${t.table} table: hooks changed`);
      const lines: string[] = [];
      const rules: string[] = [];
      const changes: string[] = [];
      const wanted = new Set<string>();
      for (const c of t.chains) {
        wanted.add(c.name);
        const old = have.chains.get(c.name);
        if (old !== undefined && sameList(old, c.rules)) continue;
        changes.push(`chain ${c.name} ${old === undefined ? "missing" : "differs"}`);
        const edit = old === undefined ? undefined : chainEdit(c.name, old, c.rules);
        if (edit !== undefined) {
          rules.push(...edit);
          continue;
        }
        // In --noflush mode, declaring a chain creates it or flushes it.
        lines.push(`:${c.name} - [0:0]`);
        for (const r of c.rules) rules.push(`-A ${c.name} ${r}`);
      }
      const stale = [...have.chains.keys()].filter((n) => !wanted.has(n));
      for (const n of stale) {
        changes.push(`chain ${n} stale`);
        lines.push(`:${n} - [0:0]`);
      }
      if (changes.length === 0) continue;
      const payload = [
        `*${t.table}`,
        ...lines,
        ...rules,
        ...stale.map((n) => `-X ${n}`),
        "COMMIT",
        "",
      ].join("\n");
      plan.iptables.push({ family: f.family, table: t.table, payload, changes });
    }
  for (const key of written.tables.keys())
    if (!keys.has(key)) return full(`table ${key} no longer rendered`);

  // ipsets: members that come and go.
  const lines: string[] = [];
  const adds: IpsetMemberOp[] = [];
  const dels: IpsetMemberOp[] = [];
  let membersOnly = true;
  const wantedSets = new Set<string>();
  for (const f of state.families)
    for (const s of f.ipsets) {
      wantedSets.add(s.name);
      const have = written.ipsets.get(s.name);
      if (have !== undefined && (have.type !== s.type || have.family !== s.family))
        return full(`ipset ${s.name} changed type`);
      const l = ipsetLines(have, s);
      if (l.lines.length === 0) continue;
      plan.ipsetChanges.push(
        `ipset ${s.name} ${have === undefined ? "missing" : "members differ"}`,
      );
      lines.push(...l.lines);
      if (
        l.added === undefined ||
        l.removed === undefined ||
        (s.type !== "hash:net" && s.type !== "hash:net,iface")
      )
        membersOnly = false;
      else {
        for (const member of l.added) adds.push({ op: "add", set: s.name, member });
        for (const member of l.removed) dels.push({ op: "del", set: s.name, member });
      }
    }
  if (lines.length > 0) plan.ipsets = `${lines.join("\n")}\n`;
  if (lines.length > 0 && membersOnly) plan.ipsetOps = [...adds, ...dels];
  plan.staleIpsets = [...written.ipsets.keys()].filter((n) => !wantedSets.has(n)).sort();

  plan.sysctls = state.workloads.sysctls.filter((s) => written.sysctls.get(s.key) !== s.value);

  const wantIfaces = new Set<string>();
  for (const i of state.workloads.ifaces) {
    wantIfaces.add(i.name);
    const have = written.ifaces.get(i.name);
    const recreated =
      known !== undefined &&
      have !== undefined &&
      (have.index === undefined || known.get(i.name) !== have.index);
    if (have === undefined || have.key !== ifaceKey(i) || recreated) plan.checkIfaces.push(i);
  }
  plan.goneIfaces = [...written.ifaces.keys()].filter((n) => !wantIfaces.has(n));
  return plan;
}

/**
 * What is in force after the plan was written whole: `configured` the interfaces checked and
 * set (with their index when known); the ones checked and missing stay unconfigured.
 */
export function afterPlan(
  written: Written,
  state: DataplaneState,
  plan: IncrementalPlan,
  configured: Map<string, number | undefined>,
): Written {
  const { tables, ipsets } = filterStateOf(state);
  const ifaces = new Map(written.ifaces);
  for (const n of plan.goneIfaces) ifaces.delete(n);
  for (const i of plan.checkIfaces) {
    ifaces.delete(i.name);
    if (!configured.has(i.name)) continue;
    const index = configured.get(i.name);
    ifaces.set(i.name, { key: ifaceKey(i), ...(index !== undefined ? { index } : {}) });
  }
  return {
    tables,
    ipsets,
    sysctls: new Map(state.workloads.sysctls.map((s) => [s.key, s.value])),
    ifaces,
  };
}
