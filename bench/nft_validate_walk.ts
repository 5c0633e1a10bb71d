// Benchmark aid: the rule visits of the kernel's nf_tables table validation, counted on the
// policy benchmark's table (bench/policy_apply.ts's Model, rendered by renderDataplane, or an
// `iptables-nft-save` dump). A commit that adds a rule with a validate op (any verdict, any
// xt match or target) marks its table NEED; nf_tables_commit → nf_tables_validate →
// nft_table_validate then walks that table from every base chain, rule by rule, into every
// jump and goto (nft_immediate_validate → nft_chain_validate), remembering nothing on kernels
// without per-chain memoization (6.18 here): a chain is walked once per path that reaches it.
// This counts those visits, per table, per base chain and per chain (by kind), as the kernel
// would make them. Pure counting: no kernel, no root (except --save from a namespace).
// With --commit N it also times the kernel's work: the filter table (as rendered, and each
// --variant of it) restored into a fresh namespace, then N timed commits of one `-j RETURN`
// appended to a chain no rule reaches (the smallest commit that marks the table NEED), through
// one long-lived `iptables-nft-restore` (as the agent's), each timed by wall clock and by the
// tool's CPU time (its user + system time from /proc: the kernel's validation runs in its
// sendmsg), the variants alternating; the chain is made before and deleted after, untimed.
// Usage: npx tsx bench/nft_validate_walk.ts [--endpoints 1000] [--policies 200] [--sets 50]
//        [--top 15] [--save FILE] [--commit N [--variant no-input]...] [--set-dispatch]
// (--set-dispatch: the render's dispatch by set, policy.ts dispatchBySet, instead of its tree;
// FILE: `iptables-nft-save` output to count instead of the render; variants, for measuring the
// cost of a visit, not rule sets to use: no-input (ocl-INPUT emptied), no-tree (both dispatch
// trees emptied), empty (no rules at all); and one design, sets: setDispatch below.)
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { renderDataplane } from "../src/felix/dataplane.js";
import { parseIptablesSave, type TableSpec } from "../src/felix/iptables.js";
import { RestoreSession } from "../src/felix/iptables_session.js";
import { Model, run, TOOL_LIMIT_MS } from "./policy_apply.js";

/** Built-in chains of iptables-nft's tables: the nf_tables base chains (when present). */
const BUILTIN = new Set(["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]);

/** One table's chains: name → rule specs (as iptables-save prints them, after `-A <chain>`). */
export type Chains = Map<string, string[]>;

/** The chain a rule jumps (-j) or goes (-g) to, when it is a chain of the table. */
function target(spec: string, chains: Chains): string | undefined {
  const m = /(?:^|\s)-[jg]\s+(\S+)/.exec(spec);
  return m && chains.has(m[1] as string) ? m[1] : undefined;
}

export interface Walk {
  /** Rule visits of one validation of the table, in all. */
  visits: number;
  /** Per base chain: the rule visits of its walk. */
  byBase: Map<string, number>;
  /** Per chain: times walked and rule visits in it (its own rules only). */
  byChain: Map<string, { walks: number; visits: number }>;
}

/** The kernel's walk of one table (nft_table_validate, no memoization). */
export function walkTable(chains: Chains): Walk {
  const byChain = new Map<string, { walks: number; visits: number }>();
  // Each chain's own visits and the visits below it per walk: the tree is a DAG (loops are
  // refused by the kernel), so the count below a chain is the same every time it is reached.
  const below = new Map<string, number>();
  const total = (name: string, stack: Set<string>): number => {
    const known = below.get(name);
    if (known !== undefined) return known;
    if (stack.has(name)) throw new Error(`loop through ${name}`);
    stack.add(name);
    const rules = chains.get(name) ?? [];
    let n = rules.length;
    for (const r of rules) {
      const t = target(r, chains);
      if (t !== undefined) n += total(t, stack);
    }
    stack.delete(name);
    below.set(name, n);
    return n;
  };
  // Times each chain is walked: paths from the base chains (counted top-down over the DAG).
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    for (const r of chains.get(name) ?? []) {
      const t = target(r, chains);
      if (t !== undefined) visit(t);
    }
    order.push(name);
  };
  const bases = [...chains.keys()].filter((c) => BUILTIN.has(c));
  for (const b of bases) visit(b);
  const walks = new Map<string, number>();
  for (const b of bases) walks.set(b, 1);
  for (let i = order.length - 1; i >= 0; i--) {
    const name = order[i] as string;
    const w = walks.get(name) ?? 0;
    const rules = chains.get(name) ?? [];
    byChain.set(name, { walks: w, visits: w * rules.length });
    for (const r of rules) {
      const t = target(r, chains);
      if (t !== undefined) walks.set(t, (walks.get(t) ?? 0) + w);
    }
  }
  const byBase = new Map<string, number>();
  let visits = 0;
  for (const b of bases) {
    const n = total(b, new Set());
    byBase.set(b, n);
    visits += n;
  }
  return { visits, byBase, byChain };
}

/** A rendered table as the kernel holds it: our chains and the built-in chains with our hooks. */
export function chainsOf(t: TableSpec): Chains {
  const chains: Chains = new Map();
  for (const h of t.hooks) chains.set(h.builtin, [...(chains.get(h.builtin) ?? []), h.rule]);
  for (const c of t.chains) chains.set(c.name, c.rules);
  return chains;
}

/** The kind of a chain, by its name (for the summary). */
function kindOf(name: string): string {
  if (BUILTIN.has(name)) return "base chain";
  if (name.startsWith("ocl-from-wl-dispatch")) return "from-wl dispatch tree";
  if (name.startsWith("ocl-to-wl-dispatch")) return "to-wl dispatch tree";
  if (/^ocl-[tf]w-/.test(name)) return "endpoint chains";
  if (/^ocl-[tf]g-/.test(name)) return "endpoint group chains (by set)";
  if (/^ocl-p[io]-/.test(name)) return "policy chains";
  if (/^ocl-pr[io]-/.test(name)) return "profile chains";
  return "other ocl- chains";
}

export function report(table: string, chains: Chains, top: number): string[] {
  const w = walkTable(chains);
  const out: string[] = [];
  let rules = 0;
  for (const r of chains.values()) rules += r.length;
  out.push(
    `table ${table}: ${chains.size} chains, ${rules} rules; one validation visits ${w.visits} rules (${(w.visits / Math.max(1, rules)).toFixed(2)} a rule)`,
  );
  for (const [b, n] of w.byBase) out.push(`  from ${b}: ${n} rule visits`);
  const kinds = new Map<string, { chains: number; rules: number; walks: number; visits: number }>();
  for (const [name, c] of w.byChain) {
    const k = kindOf(name);
    const s = kinds.get(k) ?? { chains: 0, rules: 0, walks: 0, visits: 0 };
    s.chains++;
    s.rules += chains.get(name)?.length ?? 0;
    s.walks += c.walks;
    s.visits += c.visits;
    kinds.set(k, s);
  }
  for (const [k, s] of [...kinds].sort((a, b) => b[1].visits - a[1].visits))
    out.push(
      `  ${k}: ${s.chains} chains, ${s.rules} rules, walked ${s.walks} times, ${s.visits} visits (${((100 * s.visits) / Math.max(1, w.visits)).toFixed(1)} %)`,
    );
  out.push(`  chains by visits (top ${top}):`);
  for (const [name, c] of [...w.byChain].sort((a, b) => b[1].visits - a[1].visits).slice(0, top))
    out.push(`    ${name}: ${chains.get(name)?.length} rules × ${c.walks} walks = ${c.visits}`);
  return out;
}

/** A table's `iptables-restore` input (built-in chains ACCEPT, ours declared). */
function restoreText(table: string, chains: Chains): string {
  const out = [`*${table}`];
  for (const name of chains.keys())
    out.push(`:${name} ${BUILTIN.has(name) ? "ACCEPT" : "-"} [0:0]`);
  for (const [name, rules] of chains) for (const r of rules) out.push(`-A ${name} ${r}`);
  out.push("COMMIT", "");
  return out.join("\n");
}

/** Sets a variant's rules match on (created empty where it is restored). */
const variantSets = new Map<string, string[]>();

/**
 * The dispatch by sets instead of by interface (a design measured, not rendered): endpoints
 * whose chains hold the same rules share one chain, and one rule per such group dispatches all
 * of its interfaces, `-m set --match-set <group set> src,src -g <group chain>` (a hash:net,iface
 * set of `0.0.0.0/0,<iface>` members; dst,dst for the to-workload side), so the group's chain
 * (and the policy chains under it) is reached by one rule, not one per endpoint. Interfaces
 * dispatched to RETURN (known, not policed) the same way; the unknown-interface drop last.
 */
function setDispatch(c: Chains): Chains {
  const out: Chains = new Map();
  const groups = new Map<string, string>();
  const sets: string[] = [];
  const redo = (root: string, dir: "src" | "dst") => {
    const entries: string[] = [];
    const walk = (name: string) => {
      for (const r of c.get(name) ?? []) {
        const t = target(r, c);
        if (t?.startsWith(root)) walk(t);
        else if (!/^-j DROP$/.test(r)) entries.push(r);
      }
    };
    walk(root);
    const rules: string[] = [];
    const seen = new Set<string>();
    for (const e of entries) {
      const t = /-g (\S+)$/.exec(e)?.[1];
      const body = t ? (c.get(t) ?? []).join("\n") : "RETURN";
      let g = groups.get(`${dir}\n${body}`);
      if (g === undefined) {
        g = `ocl-g${dir === "src" ? "f" : "t"}${groups.size}`;
        groups.set(`${dir}\n${body}`, g);
        if (t) out.set(g, c.get(t) ?? []);
      }
      if (seen.has(g)) continue;
      seen.add(g);
      sets.push(`${g}-set`);
      rules.push(`-m set --match-set ${g}-set ${dir},${dir} ${t ? `-g ${g}` : "-j RETURN"}`);
    }
    out.set(root, [...rules, "-j DROP"]);
  };
  for (const [n, r] of c) if (!/^ocl-(from|to)-wl-dispatch|^ocl-[tf]w-/.test(n)) out.set(n, r);
  redo("ocl-from-wl-dispatch", "src");
  redo("ocl-to-wl-dispatch", "dst");
  variantSets.set("sets", sets);
  return out;
}

/** Measurement shapes of a table (not rule sets to use: what a visit costs, and a design). */
const VARIANTS: Record<string, (c: Chains) => Chains> = {
  rendered: (c) => c,
  "no-input": (c) => new Map([...c].map(([n, r]) => [n, n === "ocl-INPUT" ? [] : r])),
  "no-tree": (c) =>
    new Map([...c].map(([n, r]) => [n, /^ocl-(from|to)-wl-dispatch/.test(n) ? [] : r])),
  sets: setDispatch,
  empty: (c) => new Map([...c].map(([n]) => [n, []])),
};

/** CPU ms (user + system) of a process so far, from /proc. */
function cpuOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
  return ((Number(rest[11]) + Number(rest[12])) * 1000) / 100;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : (s[Math.max(0, Math.ceil(p * s.length) - 1)] as number);
};

async function commitCost(
  state: ReturnType<typeof renderDataplane>,
  names: string[],
  n: number,
): Promise<void> {
  const fam = state.families.find((f) => f.family === 4);
  const filter = fam?.tables.find((t) => t.table === "filter");
  if (!fam || !filter) throw new Error("no IPv4 filter table rendered");
  const prefix = `nv${randomBytes(3).toString("hex")}`;
  const sets = fam.ipsets.map((s) => `create ${s.name} ${s.type} family ${s.family}`).join("\n");
  const live: {
    name: string;
    ns: string;
    session: RestoreSession;
    wall: number[];
    cpu: number[];
  }[] = [];
  try {
    for (const [i, name] of names.entries()) {
      const make = VARIANTS[name];
      if (!make)
        throw new Error(`--variant: unknown "${name}" (${Object.keys(VARIANTS).join(", ")})`);
      const ns = `${prefix}-${i}`;
      run("ip", ["netns", "add", ns]);
      const session = new RestoreSession(ns, "iptables-nft-restore", TOOL_LIMIT_MS);
      live.push({ name, ns, session, wall: [], cpu: [] });
      const chains = make(chainsOf(filter));
      const more = (variantSets.get(name) ?? []).map(
        (n) => `create ${n} hash:net,iface family inet`,
      );
      run("ip", ["netns", "exec", ns, "ipset", "restore"], `${[sets, ...more].join("\n")}\n`);
      run(
        "ip",
        ["netns", "exec", ns, "iptables-nft-restore", "--noflush"],
        restoreText("filter", chains),
      );
      console.log(`${name}: ${walkTable(chains).visits} rule visits a validation`);
    }
    for (let k = 0; k < n + 2; k++) {
      const order = k % 2 === 0 ? live : [...live].reverse();
      for (const v of order) {
        const chain = `ocl-zz${k}`;
        await v.session.commit(`*filter\n:${chain} - [0:0]\n-A ${chain} -j RETURN\nCOMMIT\n`);
        const pid = (v.session as unknown as { child: { pid: number } }).child.pid;
        const c0 = cpuOf(pid);
        const t0 = performance.now();
        await v.session.commit(`*filter\n-A ${chain} -j RETURN\nCOMMIT\n`);
        const wall = performance.now() - t0;
        const cpu = cpuOf(pid) - c0;
        await v.session.commit(`*filter\n-F ${chain}\n-X ${chain}\nCOMMIT\n`);
        // The first two of each: warm-up (the tool's first blocks).
        if (k >= 2) {
          v.wall.push(wall);
          v.cpu.push(cpu);
        }
      }
    }
    for (const v of live) {
      const mean = v.cpu.reduce((a, b) => a + b, 0) / Math.max(1, v.cpu.length);
      console.log(
        `${v.name}: commit wall p50 ${pct(v.wall, 0.5).toFixed(2)} / p90 ${pct(v.wall, 0.9).toFixed(2)} / max ${Math.max(...v.wall).toFixed(2)} ms; the tool's CPU mean ${mean.toFixed(2)} ms (n ${v.cpu.length}, clock ticks of 10 ms)`,
      );
    }
  } finally {
    for (const v of live) {
      v.session.stop();
      spawnSync("ip", ["netns", "del", v.ns], { timeout: TOOL_LIMIT_MS });
    }
  }
}

const variantNames = () =>
  process.argv.flatMap((a, i) => (process.argv[i - 1] === "--variant" ? [a] : []));

async function main(): Promise<void> {
  const arg = (name: string, dflt: number) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : dflt;
  };
  const top = arg("top", 15);
  const saveAt = process.argv.indexOf("--save");
  if (saveAt > 0) {
    const saved = parseIptablesSave(readFileSync(process.argv[saveAt + 1] as string, "utf8"));
    for (const [name, t] of saved) {
      const chains: Chains = new Map();
      for (const c of t.chains.keys()) chains.set(c, []);
      for (const r of t.rules) chains.get(r.chain)?.push(r.spec);
      for (const l of report(name, chains, top)) console.log(l);
    }
    return;
  }
  const model = new Model({
    endpoints: arg("endpoints", 1000),
    policies: arg("policies", 200),
    sets: arg("sets", 50),
    cidrs: arg("cidrs", 1000),
    runs: 0,
    adds: 0,
    changes: 0,
    ...(process.argv.includes("--set-dispatch") ? { dispatchBySet: true } : {}),
  });
  const state = renderDataplane(model.input());
  const commits = arg("commit", 0);
  if (commits > 0) {
    return commitCost(state, ["rendered", ...variantNames()], commits);
  }
  for (const f of state.families)
    for (const t of f.tables)
      for (const l of report(`ip${f.family === 6 ? "6" : ""} ${t.table}`, chainsOf(t), top))
        console.log(l);
  const filter = state.families
    .find((f) => f.family === 4)
    ?.tables.find((t) => t.table === "filter");
  for (const name of variantNames()) {
    const make = VARIANTS[name];
    if (!make || !filter) throw new Error(`--variant: unknown "${name}"`);
    for (const l of report(`ip filter, variant ${name}`, make(chainsOf(filter)), top))
      console.log(l);
  }
}

if (process.argv[1]?.endsWith("nft_validate_walk.ts"))
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
