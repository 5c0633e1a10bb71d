// The agent's thin edge: converges one network namespace (or our own) to a rendered
// DataplaneState with sysctls, `ip link`, `tc` (qos_apply.ts), `ipset restore`,
// `iptables-restore --noflush` per table, and routes through a Fib. Reads the kernel back first
// and writes only what differs, so a second apply changes nothing. Not: deciding what the state
// is (dataplane.ts and friends).
import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { type Fib, type Route, RTPROT_OCELOT_AGENT, routeKey } from "../fib/types.js";
import type { DataplaneState } from "./dataplane.js";
import type { HostIface } from "./host_endpoint.js";
import {
  CHAIN_PREFIX,
  parseIpsetSave,
  parseIptablesSave,
  planIpsets,
  planTable,
  type SavedIpset,
  staleIpsets,
  type TableName,
  type TablePlan,
} from "./iptables.js";
import type { OverlayState } from "./overlay.js";
import { applyOverlay, removeStale } from "./overlay_apply.js";
import { applyQos } from "./qos_apply.js";
import type { Sysctl } from "./workload.js";

const COMMAND_TIMEOUT_MS = 15_000;
/** Seconds iptables-restore waits for the xtables lock. */
const XTABLES_WAIT_S = "5";
/** The metric the kernel gives IPv6 routes that have none. */
const IP6_RT_PRIO_USER = 1024;

export interface ApplyOptions {
  /** Network namespace name (under /run/netns) to converge; default: the current one. */
  netns?: string;
  /** Routes go through this FIB (KernelFib for the namespace, MemoryFib in tests). */
  fib: Fib;
  /** iptables flavour; Debian's default and ours is nft (never mix the two in one host). */
  iptables?: "nft" | "legacy";
  /** Runs one command (inside netns when given); default spawns it. Tests pass a fake kernel. */
  run?: Runner;
  /**
   * Runs just before the routes are set (the node daemon lets the BGP speaker give up blocks the
   * overlay takes over here, so the hand-over is as short as the route writes).
   */
  beforeRoutes?: () => Promise<void>;
  /**
   * The overlay as wanted now, asked for after the kernel's overlay is read back and again for
   * the routes (the node daemon's fast path may have moved on since the pass was rendered: what
   * it installed meanwhile is then kept, not removed as stale); default: state.overlay.
   */
  overlayNow?: () => OverlayState;
  /**
   * Families the state leaves out whose `ocl-` chains and hooks are removed where present (IPv6
   * after the last host endpoint of a node without IPv6 pools is gone); the caller says which,
   * so a node that never had them does not pay for reading them.
   */
  cleanupFamilies?: (4 | 6)[];
}

export type Runner = (
  netns: string | undefined,
  cmd: string,
  args: string[],
  input?: string,
) => Promise<RunResult>;

export interface ApplyReport {
  /** Everything that was changed, one line each; empty when the kernel already matched. */
  changes: string[];
  /** Workload interfaces that do not exist (yet): their routes and sysctls wait. */
  missingIfaces: string[];
  /** Seconds spent on iptables (read back, restore) and on the routes (FIB batch) this pass. */
  timings?: { iptablesSeconds: number; routesSeconds: number };
  /** The iptables-restore payloads written, per family and table. */
  iptables: (TablePlan & { family: 4 | 6 })[];
  ipsets: string | null;
  /** Overlay devices the kernel refused to create (e.g. tunl0 without the ipip module). */
  overlayFailures: { device: string; reason: string }[];
  /** The overlay whose routes were set, and our overlay devices that exist. */
  overlay: { state: OverlayState; present: Set<string> };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The default Runner: spawns cmd (under `ip netns exec` for a namespace), bounded in time. */
export function spawnRunner(
  netns: string | undefined,
  cmd: string,
  args: string[],
  input?: string,
): Promise<RunResult> {
  const [file, argv] = netns ? ["ip", ["netns", "exec", netns, cmd, ...args]] : [cmd, args];
  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(file, argv, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), COMMAND_TIMEOUT_MS);
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`Could not run "${cmd}": ${err.message}`));
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.on("error", () => {});
    child.stdin.end(input ?? "");
  });
}

interface Ctx {
  netns?: string;
  run: Runner;
}

async function runOk(ctx: Ctx, cmd: string, args: string[], input?: string) {
  const r = await ctx.run(ctx.netns, cmd, args, input);
  if (r.code !== 0) {
    throw new Error(
      `"${cmd} ${args.join(" ")}" failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`,
    );
  }
  return r.stdout;
}

// ---- sysctls ---------------------------------------------------------------------------------

const procPath = (key: string) => `/proc/sys/${key.replace(/\./g, "/")}`;

async function readSysctls(ctx: Ctx, keys: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (keys.length === 0) return out;
  if (!ctx.netns) {
    for (const k of keys) {
      try {
        out.set(k, (await readFile(procPath(k), "utf8")).trim());
      } catch {}
    }
    return out;
  }
  // `sysctl -e` skips unknown keys; output lines are "key = value".
  const r = await ctx.run(ctx.netns, "sysctl", ["-e", ...keys]);
  for (const line of r.stdout.split("\n")) {
    const m = /^(\S+)\s*=\s*(.*)$/.exec(line.trim());
    if (m) out.set(m[1], m[2].trim());
  }
  return out;
}

async function writeSysctls(ctx: Ctx, list: Sysctl[]): Promise<void> {
  if (list.length === 0) return;
  if (!ctx.netns) {
    for (const s of list) await writeFile(procPath(s.key), s.value);
    return;
  }
  await runOk(ctx, "sysctl", ["-qw", ...list.map((s) => `${s.key}=${s.value}`)]);
}

async function convergeSysctls(ctx: Ctx, want: Sysctl[], changes: string[]): Promise<void> {
  const have = await readSysctls(
    ctx,
    want.map((s) => s.key),
  );
  const diff = want.filter((s) => have.get(s.key) !== s.value);
  await writeSysctls(ctx, diff);
  for (const s of diff)
    changes.push(`sysctl ${s.key}=${s.value} (was ${have.get(s.key) ?? "unset"})`);
}

// ---- links -----------------------------------------------------------------------------------

interface IpLink {
  ifname: string;
  address?: string;
  flags?: string[];
}

async function convergeLinks(
  ctx: Ctx,
  state: DataplaneState,
  changes: string[],
): Promise<Set<string>> {
  const links = JSON.parse(
    (await runOk(ctx, "ip", ["-j", "link", "show"])).trim() || "[]",
  ) as IpLink[];
  const byName = new Map(links.map((l) => [l.ifname.split("@")[0], l]));
  const present = new Set<string>();
  for (const want of state.workloads.ifaces) {
    const l = byName.get(want.name);
    if (!l) continue;
    present.add(want.name);
    if (l.address?.toLowerCase() !== want.mac) {
      await runOk(ctx, "ip", ["link", "set", "dev", want.name, "address", want.mac]);
      changes.push(`link ${want.name} address ${want.mac} (was ${l.address ?? "none"})`);
    }
    if (!l.flags?.includes("UP")) {
      await runOk(ctx, "ip", ["link", "set", "dev", want.name, "up"]);
      changes.push(`link ${want.name} up`);
    }
  }
  return present;
}

/** The namespace's interfaces and their addresses (what HostEndpoints' expectedIPs match). */
export async function readHostInterfaces(
  opts: { netns?: string; run?: Runner } = {},
): Promise<HostIface[]> {
  const ctx: Ctx = { netns: opts.netns, run: opts.run ?? spawnRunner };
  const links = JSON.parse((await runOk(ctx, "ip", ["-j", "addr", "show"])).trim() || "[]") as {
    ifname: string;
    addr_info?: { local?: string }[];
  }[];
  return links.map((l) => ({
    name: l.ifname.split("@")[0] as string,
    addresses: (l.addr_info ?? []).flatMap((a) => (a.local ? [a.local] : [])),
  }));
}

// ---- ipsets and iptables ---------------------------------------------------------------------

async function convergeIpsets(
  ctx: Ctx,
  state: DataplaneState,
  changes: string[],
): Promise<{ payload: string | null; current?: Map<string, SavedIpset> }> {
  const desired = state.families.flatMap((f) => f.ipsets);
  if (desired.length === 0) return { payload: null };
  const current = parseIpsetSave(await runOk(ctx, "ipset", ["save"]));
  const plan = planIpsets(desired, current);
  if (plan.payload) {
    await runOk(ctx, "ipset", ["restore", "-exist"], plan.payload);
    changes.push(...plan.changes);
  }
  return { payload: plan.payload, current };
}

/**
 * Destroys our sets nothing wants any more (after iptables stopped referring to them). The sets
 * read before the restore are enough to know them (the restore adds only wanted sets and
 * destroys its temporary ones): a second `ipset save` of every member is not needed.
 */
async function removeStaleIpsets(
  ctx: Ctx,
  state: DataplaneState,
  changes: string[],
  read?: Map<string, SavedIpset>,
) {
  const desired = state.families.flatMap((f) => f.ipsets);
  const current = read ?? parseIpsetSave(await runOk(ctx, "ipset", ["save"]));
  for (const name of staleIpsets(desired, current)) {
    const r = await ctx.run(ctx.netns, "ipset", ["destroy", name]);
    // A set still in use (a rule of someone else refers to it) is left; retried next apply.
    changes.push(r.code === 0 ? `ipset ${name} stale, destroyed` : `ipset ${name} stale, in use`);
  }
}

/** Removes our chains and hooks from every table of a family the state no longer has. */
async function cleanupFamily(
  ctx: Ctx,
  family: 4 | 6,
  flavour: "nft" | "legacy",
  changes: string[],
): Promise<void> {
  const bin = `${family === 4 ? "iptables" : "ip6tables"}-${flavour}`;
  // A host without this family's tools has nothing of ours there.
  const saved = await ctx.run(ctx.netns, `${bin}-save`, []).catch(() => undefined);
  if (saved === undefined || saved.code !== 0 || !saved.stdout.includes(CHAIN_PREFIX)) return;
  for (const [table, current] of parseIptablesSave(saved.stdout)) {
    if (!["filter", "nat", "mangle", "raw"].includes(table)) continue;
    const plan = planTable({ table: table as TableName, chains: [], hooks: [] }, current);
    if (!plan.payload) continue;
    await runOk(ctx, `${bin}-restore`, ["--noflush", "-w", XTABLES_WAIT_S], plan.payload);
    changes.push(...plan.changes.map((c) => `${bin} ${table}: ${c}`));
  }
}

async function convergeIptables(
  ctx: Ctx,
  state: DataplaneState,
  flavour: "nft" | "legacy",
  changes: string[],
  cleanup: (4 | 6)[] = [],
): Promise<ApplyReport["iptables"]> {
  const written: ApplyReport["iptables"] = [];
  for (const family of cleanup)
    if (!state.families.some((f) => f.family === family))
      await cleanupFamily(ctx, family, flavour, changes);
  for (const fam of state.families) {
    const bin = `${fam.family === 4 ? "iptables" : "ip6tables"}-${flavour}`;
    const current = parseIptablesSave(await runOk(ctx, `${bin}-save`, []));
    for (const spec of fam.tables) {
      const plan = planTable(spec, current.get(spec.table));
      if (!plan.payload) continue;
      await runOk(ctx, `${bin}-restore`, ["--noflush", "-w", XTABLES_WAIT_S], plan.payload);
      changes.push(...plan.changes.map((c) => `${bin} ${spec.table}: ${c}`));
      written.push({ ...plan, family: fam.family });
    }
  }
  return written;
}

// ---- routes ----------------------------------------------------------------------------------

/** What KernelFib adds to Fib: a graceful hold to end, and a resync that reads the kernel. */
interface KernelLikeFib {
  endGracefulHold?: () => Promise<void>;
  resync?: () => Promise<void>;
}

async function convergeRoutes(fib: Fib, routes: Route[], changes: string[]): Promise<void> {
  // IPv6 routes without a metric get 1024 from the kernel (and in Fib.desired()).
  const key = (r: Pick<Route, "family" | "dst" | "table" | "metric">) =>
    routeKey({ ...r, metric: r.family === 6 && !r.metric ? IP6_RT_PRIO_USER : r.metric });
  const before = new Map(
    fib
      .desired()
      .filter((r) => r.protocol === RTPROT_OCELOT_AGENT)
      .map((r) => [key(r), r]),
  );
  const wanted = new Set(routes.map(key));
  const stale = [...before.values()].filter((r) => !wanted.has(key(r)));
  const added = routes.filter((r) => !before.has(key(r)));
  if (routes.length) await fib.set(routes);
  if (stale.length) await fib.remove(stale);
  const k = fib as Fib & KernelLikeFib;
  // A KernelFib opened with a graceful hold keeps our old routes until the first full set; its
  // resync dumps the kernel and puts back what someone else removed (even without watching).
  await k.endGracefulHold?.();
  await k.resync?.();
  for (const r of added) changes.push(`route ${r.dst} ${r.type ?? "unicast"} added`);
  for (const r of stale) changes.push(`route ${r.dst} removed`);
}

/** Converges the namespace to state; see the module comment. */
export async function applyDataplane(
  state: DataplaneState,
  opts: ApplyOptions,
): Promise<ApplyReport> {
  const ctx: Ctx = { netns: opts.netns, run: opts.run ?? spawnRunner };
  const changes: string[] = [];
  await convergeSysctls(ctx, state.workloads.sysctls, changes);
  const present = await convergeLinks(ctx, state, changes);
  const missingIfaces = state.workloads.ifaces.map((i) => i.name).filter((n) => !present.has(n));
  await convergeSysctls(
    ctx,
    state.workloads.ifaces.filter((i) => present.has(i.name)).flatMap((i) => i.sysctls),
    changes,
  );
  // Bandwidth limits (tc) on the workload interfaces that exist (qos_apply.ts).
  changes.push(...(await applyQos(ctx, state.qos ?? [], present)));
  const sets = await convergeIpsets(ctx, state, changes);
  const t0 = performance.now();
  const iptables = await convergeIptables(
    ctx,
    state,
    opts.iptables ?? "nft",
    changes,
    opts.cleanupFamilies,
  );
  const iptablesSeconds = (performance.now() - t0) / 1000;
  await removeStaleIpsets(ctx, state, changes, sets.current);
  // The overlay's devices, addresses, neighbours and FDB entries before the routes through them.
  const overlayNow = opts.overlayNow ?? (() => state.overlay);
  const overlay = await applyOverlay(ctx, overlayNow);
  changes.push(...overlay.plan.changes);
  for (const d of overlay.present) present.add(d);
  await opts.beforeRoutes?.();
  const overlayState = overlayNow();
  const routes = [...state.workloads.routes, ...overlayState.routes].filter((r) =>
    r.nexthops.every((nh) => nh.dev === undefined || present.has(nh.dev)),
  );
  const t1 = performance.now();
  await convergeRoutes(opts.fib, routes, changes);
  const routesSeconds = (performance.now() - t1) / 1000;
  await removeStale(ctx, overlay);
  return {
    changes,
    missingIfaces,
    iptables,
    ipsets: sets.payload,
    overlayFailures: overlay.failed,
    overlay: { state: overlayState, present: overlay.present },
    timings: { iptablesSeconds, routesSeconds },
  };
}
