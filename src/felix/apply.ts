// The agent's thin edge: converges one network namespace (or our own) to a rendered
// DataplaneState with sysctls, `ip link`, `ip addr` (the workload interfaces' own addresses, when
// the agent owns them), `tc` (qos_apply.ts), `ipset restore`,
// `iptables-restore --noflush` (a family's tables at once), and routes through a Fib. applyDataplane reads the
// kernel back first and writes only what differs, so a second apply changes nothing (with the
// addon it lists the sets and the nf_tables tables over netlink first, and reads members and
// rules only where a set or table exists: nothing on a fresh node);
// IncrementalApplier (the node daemon's) does that only at start, on its refresh interval and
// after errors, and otherwise writes only what changed since its last pass, from memory
// (written.ts). With the native addon (ApplyOptions.direct) interfaces are read and sysctls
// written by the agent itself, the full pass writes its sets' restore text over netlink
// (ipset_restore.ts; `ipset restore` for what it does not cover, or with OCELOT_IPSET_NETLINK=0),
// and the incremental path changes ipset members over netlink and
// feeds rules to a long-lived `iptables-nft-restore` (apply_direct.ts, ipset_netlink.ts,
// iptables_session.ts). Not: deciding what the state is (dataplane.ts and friends).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync, unlinkSync, writeFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Fib, type Route, RTPROT_OCELOT_AGENT, routeKey } from "../fib/types.js";
import { addonUnavailableReason } from "../lib/native.js";
import { DirectKernel } from "./apply_direct.js";
import type { DataplaneState } from "./dataplane.js";
import type { HostIface } from "./host_endpoint.js";
import {
  CHAIN_PREFIX,
  parseIpsetSave,
  parseIptablesSave,
  planIpsets,
  planTable,
  type SavedIpset,
  type SavedTable,
  staleIpsets,
  type TableName,
  type TablePlan,
} from "./iptables.js";
import { RestoreSession } from "./iptables_session.js";
import { OVERLAY_DEVICES, type OverlayState, planOverlay } from "./overlay.js";
import { applyOverlay, type OverlayApplied, removeStale } from "./overlay_apply.js";
import { applyQos } from "./qos_apply.js";
import type { Sysctl, HostIface as WorkloadIface } from "./workload.js";
import {
  afterPlan,
  type IncrementalPlan,
  planIncremental,
  type Written,
  writtenOf,
} from "./written.js";

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
  /**
   * Sysctls are written without being read first (as Felix writes them): the caller's first
   * pass, when nothing is known and most differ; changes then name how many were written.
   */
  sysctlsUnread?: boolean;
  /**
   * Interfaces are read and sysctls written by the agent itself (rtnetlink, /proc/sys;
   * apply_direct.ts) instead of spawning `ip -j link show` and `sysctl -w`, the full pass's sets
   * are written over netlink instead of by `ipset restore`, and the incremental
   * path changes ipset members over netlink and writes rules through a long-lived
   * `iptables-nft-restore` (iptables_session.ts). Default: when `run` is not given and the
   * native addon loads.
   */
  direct?: boolean;
  /** Told how long each step of a pass took (ms): plan, links, ipset, … (steps may overlap). */
  trace?: (step: string, ms: number) => void;
  /**
   * After the routes are set, the FIB dumps the kernel's routes and links and puts back what
   * others changed (KernelFib.resync). Default true; the IncrementalApplier passes false when
   * the FIB's view is fresh (dumped within the route refresh interval, its events watched since).
   */
  routeResync?: boolean;
  /**
   * The pods' device routes are set as soon as their interfaces are found, beside the sysctls
   * and the iptables restores, instead of after the overlay (the other routes stay there).
   * Default true; false sets every route in the routes step.
   */
  earlyRoutes?: boolean;
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
  /** Whether the FIB dumped the kernel's routes this pass (ApplyOptions.routeResync). */
  routesResynced?: boolean;
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

/**
 * Input longer than this goes to the tool as a file, not through a pipe: a pipe takes 64 KiB at
 * a time, refilled only when this thread's event loop turns, so a restore of megabytes (a full
 * pass's `ipset restore` and `iptables-restore`) would wait on whatever else blocks the loop
 * (the full pass writes 5,000 sysctls beside it). From a file the tool reads at its own pace.
 */
const INPUT_FILE_MIN = 64 * 1024;

let inputSeq = 0;

/**
 * A read-only descriptor of a file holding `input`, already unlinked (the child keeps it open).
 * Created exclusively (no existing file or link followed), readable by us only, in memory where
 * /dev/shm exists. Written synchronously (a few ms for megabytes in memory): the tool starts in
 * this turn of the event loop, not after others' work queued meanwhile (a full pass's sysctls).
 */
function inputFile(input: string): number {
  const dir = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const path = join(
    dir,
    `ocelot-in-${process.pid}-${inputSeq++}-${randomBytes(4).toString("hex")}`,
  );
  try {
    writeFileSync(path, input, { mode: 0o600, flag: "wx" });
    return openSync(path, "r");
  } finally {
    try {
      unlinkSync(path);
    } catch {}
  }
}

/** What spawnRunner runs now, by process ("iptables-nft-restore (pid 123)"): the stop kills these. */
const liveCommands = new Map<ReturnType<typeof spawn>, string>();

/**
 * SIGKILLs every command spawnRunner started that has not ended (by its PID: under `ip netns exec`
 * the PID is the tool's own, which execs in place) and says which. Their callers see them fail.
 * For a daemon's stop that cannot wait for its pass: the next start reads the kernel back in full.
 */
export function killRunningCommands(): string[] {
  const killed: string[] = [];
  for (const [child, what] of liveCommands) {
    try {
      if (child.kill("SIGKILL")) killed.push(what);
    } catch {}
  }
  return killed;
}

/** The default Runner: spawns cmd (under `ip netns exec` for a namespace), bounded in time. */
export function spawnRunner(
  netns: string | undefined,
  cmd: string,
  args: string[],
  input?: string,
): Promise<RunResult> {
  const [file, argv] = netns ? ["ip", ["netns", "exec", netns, cmd, ...args]] : [cmd, args];
  let stdinFile: number | undefined;
  try {
    if (input !== undefined && input.length > INPUT_FILE_MIN) stdinFile = inputFile(input);
  } catch (err) {
    return Promise.reject(
      new Error(`Could not write the input of "${cmd}": ${(err as Error).message}`),
    );
  }
  return new Promise<RunResult>((resolve, reject) => {
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(file, argv, { stdio: [stdinFile ?? "pipe", "pipe", "pipe"] });
    } finally {
      // The child has its own copy of the descriptor (or none: the spawn failed).
      if (stdinFile !== undefined) closeSync(stdinFile);
    }
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), COMMAND_TIMEOUT_MS);
    if (child.pid !== undefined) liveCommands.set(child, `${cmd} (pid ${child.pid})`);
    child.stdout?.on("data", (d) => {
      stdout += d;
    });
    child.stderr?.on("data", (d) => {
      stderr += d;
    });
    child.on("error", (err) => {
      clearTimeout(timer);
      liveCommands.delete(child);
      reject(new Error(`Could not run "${cmd}": ${err.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      liveCommands.delete(child);
      resolve({
        code: code ?? -1,
        stdout,
        stderr: stderr || (signal ? `killed by ${signal}` : ""),
      });
    });
    if (child.stdin) {
      child.stdin.on("error", () => {});
      child.stdin.end(input ?? "");
    }
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

async function convergeSysctls(
  ctx: Ctx,
  want: Sysctl[],
  changes: string[],
  unread = false,
  direct?: DirectKernel,
): Promise<void> {
  if (unread) {
    // Written without reading first; where that fails (a container's read-only /proc/sys whose
    // values the runtime set already, `--sysctl`), only what differs is written, as below.
    try {
      if (direct) await direct.writeSysctls(want);
      else await writeSysctls(ctx, want);
      if (want.length > 0) changes.push(`sysctl: ${want.length} written (not read first)`);
      return;
    } catch {}
  }
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
  direct?: DirectKernel,
  seen?: Set<string>,
): Promise<Set<string>> {
  const byName: Map<string, IpLink> = direct
    ? direct.links()
    : new Map(
        (
          JSON.parse((await runOk(ctx, "ip", ["-j", "link", "show"])).trim() || "[]") as IpLink[]
        ).map((l) => [l.ifname.split("@")[0] as string, l]),
      );
  for (const name of byName.keys()) seen?.add(name);
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
  // Host-side addresses (the local workload peering address), read in one go when some are owned.
  const owned = state.workloads.ifaces.filter(
    (i) => i.addresses !== undefined && present.has(i.name),
  );
  if (owned.length > 0) {
    const all = await readIfaceAddresses(ctx);
    for (const want of owned)
      await convergeIfaceAddresses(
        ctx,
        want.name,
        want.addresses ?? [],
        all.get(want.name) ?? [],
        changes,
      );
  }
  return present;
}

/** One address as `ip -j addr show` lists it. */
interface IpAddrInfo {
  family?: string;
  local?: string;
  prefixlen?: number;
}

/** Every interface's addresses (`ip -j addr show`, or of one interface with dev). */
async function readIfaceAddresses(ctx: Ctx, dev?: string): Promise<Map<string, IpAddrInfo[]>> {
  const args = dev === undefined ? ["-j", "addr", "show"] : ["-j", "addr", "show", "dev", dev];
  const r = await ctx.run(ctx.netns, "ip", args);
  if (r.code !== 0) return new Map(); // gone meanwhile: nothing to converge
  const links = JSON.parse(r.stdout.trim() || "[]") as {
    ifname: string;
    addr_info?: IpAddrInfo[];
  }[];
  return new Map(links.map((l) => [l.ifname.split("@")[0] as string, l.addr_info ?? []]));
}

/**
 * Makes a workload interface hold exactly the wanted addresses (scope link, IPv6 without DAD):
 * the missing added, any other removed except IPv6 link-local ones (the kernel's own). The host
 * side of a pod's veth holds no address of its own otherwise (Calico's wiring). True when the
 * kernel flushed the interface's IPv4 routes (its last IPv4 address removed).
 */
async function convergeIfaceAddresses(
  ctx: Ctx,
  name: string,
  want: readonly string[],
  have: readonly IpAddrInfo[],
  changes: string[],
): Promise<boolean> {
  const held = new Set<string>();
  let removed4 = false;
  for (const a of have) {
    if (a.local === undefined || a.prefixlen === undefined) continue;
    const text = `${a.local}/${a.prefixlen}`;
    if (a.family === "inet6" && /^fe[89ab]/i.test(a.local)) continue;
    if (want.includes(text)) {
      held.add(text);
      continue;
    }
    await runOk(ctx, "ip", ["addr", "del", text, "dev", name]);
    changes.push(`address ${text} removed from ${name}`);
    if (a.family === "inet") removed4 = true;
  }
  for (const a of want) {
    if (held.has(a)) continue;
    const v6 = a.includes(":");
    await runOk(ctx, "ip", [
      "addr",
      "add",
      a,
      "dev",
      name,
      "scope",
      "link",
      ...(v6 ? ["nodad"] : []),
    ]);
    changes.push(`address ${a} added to ${name}`);
  }
  // The kernel flushes every IPv4 route through an interface whose last IPv4 address goes, and
  // says nothing about it (no RTM_DELROUTE): the pod's own route with them.
  return removed4 && !want.some((a) => !a.includes(":"));
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

/**
 * The sets in the namespace, with the members of those `desired` names. With `direct` their
 * names (and types) are listed over netlink first: when none of the wanted sets exists (a fresh
 * node, a new namespace) there are no members to read, and `ipset save` (a process, and every
 * member of every set as text) is not run; a set of ours no longer wanted needs only its name
 * (staleIpsets). Otherwise, and without `direct`, `ipset save` reads them all.
 */
async function readIpsets(
  ctx: Ctx,
  desired: readonly { name: string }[],
  direct?: DirectKernel,
): Promise<Map<string, SavedIpset>> {
  if (direct) {
    let headers: ReturnType<DirectKernel["ipsetHeaders"]> | undefined;
    try {
      headers = direct.ipsetHeaders();
    } catch {
      // Not listed over netlink (an old kernel's protocol): the tool reads them below.
    }
    const wanted = new Set(desired.map((s) => s.name));
    if (headers && !headers.some((h) => wanted.has(h.name)))
      return new Map(headers.map((h) => [h.name, { ...h, members: [] }]));
  }
  return parseIpsetSave(await runOk(ctx, "ipset", ["save"]));
}

async function convergeIpsets(
  ctx: Ctx,
  state: DataplaneState,
  changes: string[],
  direct?: DirectKernel,
  trace?: ApplyOptions["trace"],
): Promise<{ payload: string | null; current?: Map<string, SavedIpset> }> {
  const desired = state.families.flatMap((f) => f.ipsets);
  if (desired.length === 0) return { payload: null };
  const t = performance.now();
  const current = await readIpsets(ctx, desired, direct);
  const plan = planIpsets(desired, current);
  trace?.("ipsets: read and plan", performance.now() - t);
  if (plan.payload) {
    const payload = plan.payload;
    // Over netlink from this process when it covers the text (ipset_restore.ts), else the tool.
    const written =
      direct && ipsetNetlinkWanted()
        ? await timer(trace)("ipsets: netlink", () => direct.ipsetRestore(payload))
        : undefined;
    if (written?.written !== true)
      await timer(trace)("ipsets: restore", () =>
        runOk(ctx, "ipset", ["restore", "-exist"], payload),
      );
    changes.push(...plan.changes);
  }
  return { payload: plan.payload, current };
}

/**
 * Whether the full pass writes its sets over netlink (with `direct`); `OCELOT_IPSET_NETLINK=0`
 * spawns `ipset restore` as before (for comparison).
 */
function ipsetNetlinkWanted(): boolean {
  return process.env.OCELOT_IPSET_NETLINK !== "0";
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

/** Per family's tool, the restores that converge its tables (read back and planned). */
type IptablesPlan = { bin: string; plans: ApplyReport["iptables"] }[];

/**
 * Reads each family's tables back and plans their restores: this needs nothing of the ipsets, so
 * it runs while `ipset restore` does (only the restores wait for the sets their rules match).
 */
async function planIptables(
  ctx: Ctx,
  state: DataplaneState,
  flavour: "nft" | "legacy",
  direct?: DirectKernel,
): Promise<IptablesPlan> {
  const out: IptablesPlan = [];
  for (const fam of state.families) {
    const bin = `${fam.family === 4 ? "iptables" : "ip6tables"}-${flavour}`;
    // With nftables, a family without a table (a new node, a namespace after a reboot) has
    // nothing to read back: asked over netlink, `iptables-nft-save` is not run.
    let current: Map<string, SavedTable> | undefined;
    if (direct && flavour === "nft") {
      try {
        if (direct.nftTables(fam.family).length === 0) current = new Map();
      } catch {
        // Not listed over netlink: the tool reads the tables below.
      }
    }
    current ??= parseIptablesSave(await runOk(ctx, `${bin}-save`, []));
    const plans: ApplyReport["iptables"] = [];
    for (const spec of fam.tables) {
      const plan = planTable(spec, current.get(spec.table));
      if (plan.payload) plans.push({ ...plan, family: fam.family });
    }
    out.push({ bin, plans });
  }
  return out;
}

async function convergeIptables(
  ctx: Ctx,
  state: DataplaneState,
  planned: IptablesPlan,
  flavour: "nft" | "legacy",
  changes: string[],
  cleanup: (4 | 6)[] = [],
): Promise<ApplyReport["iptables"]> {
  const written: ApplyReport["iptables"] = [];
  for (const family of cleanup)
    if (!state.families.some((f) => f.family === family))
      await cleanupFamily(ctx, family, flavour, changes);
  // A family's tables in one restore (each block commits at its COMMIT, as from one tool each):
  // one process start, not one per table.
  for (const { bin, plans } of planned) {
    if (plans.length === 0) continue;
    const input = plans.map((p) => p.payload ?? "").join("");
    await runOk(ctx, `${bin}-restore`, ["--noflush", "-w", XTABLES_WAIT_S], input);
    for (const plan of plans) {
      changes.push(...plan.changes.map((c) => `${bin} ${plan.table}: ${c}`));
      written.push(plan);
    }
  }
  return written;
}

// ---- routes ----------------------------------------------------------------------------------

/**
 * What KernelFib adds to Fib: a graceful hold to end, a resync that reads the kernel, and how
 * long ago it last read the kernel while watching its events since (Infinity: not known fresh).
 */
interface KernelLikeFib {
  endGracefulHold?: () => Promise<void>;
  resync?: () => Promise<void>;
  freshForMs?: () => number;
}

/** A step runner that reports each step's wall time to trace (none: the step alone). */
function timer(trace: ApplyOptions["trace"]) {
  return async <T>(step: string, f: () => Promise<T>): Promise<T> => {
    if (!trace) return f();
    const t = performance.now();
    const r = await f();
    trace(step, performance.now() - t);
    return r;
  };
}

/**
 * Sets the routes, removes our stale ones, ends a graceful hold; then, when `resync`, has the
 * FIB dump the kernel and put back what someone else removed. Returns whether it dumped.
 */
async function convergeRoutes(
  fib: Fib,
  routes: Route[],
  changes: string[],
  resync: boolean,
  trace?: ApplyOptions["trace"],
  early?: EarlyRoutes,
): Promise<boolean> {
  let t = performance.now();
  const lap = (step: string) => {
    const now = performance.now();
    trace?.(step, now - t);
    t = now;
  };
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
  // Routes set early were compared with what the FIB held before they were set.
  const rest = early ? routes.filter((r) => !early.set.has(r)) : routes;
  const added = [...(early?.added ?? []), ...rest.filter((r) => !before.has(key(r)))];
  lap("routes: plan");
  if (rest.length) await fib.set(rest);
  if (stale.length) await fib.remove(stale);
  lap("routes: set");
  const k = fib as Fib & KernelLikeFib;
  // A KernelFib opened with a graceful hold keeps our old routes until the first full set; its
  // resync dumps the kernel and puts back what someone else removed (even without watching).
  await k.endGracefulHold?.();
  const dumped = resync && k.resync !== undefined;
  if (dumped) await k.resync?.();
  lap(dumped ? "routes: resync (dump)" : "routes: resync skipped (fresh)");
  for (const r of added) changes.push(`route ${r.dst} ${r.type ?? "unicast"} added`);
  for (const r of stale) changes.push(`route ${r.dst} removed`);
  return dumped;
}

/** Routes set before the routes step (setPodRoutes), and those of them the FIB did not hold. */
interface EarlyRoutes {
  set: Set<Route>;
  added: Route[];
}

/** Sets the routes whose every next hop is a device in `present` (the pods' device routes). */
async function setPodRoutes(
  fib: Fib,
  routes: Route[],
  present: ReadonlySet<string>,
): Promise<EarlyRoutes> {
  const pods = routes.filter(
    (r) => r.nexthops.length > 0 && r.nexthops.every((nh) => nh.dev && present.has(nh.dev)),
  );
  const held = new Set(
    fib
      .desired()
      .filter((r) => r.protocol === RTPROT_OCELOT_AGENT)
      .map(agentRouteKey),
  );
  const added = pods.filter((r) => !held.has(agentRouteKey(r)));
  if (pods.length) await fib.set(pods);
  return { set: new Set(pods), added };
}

/** A later turn of the event loop (after the microtasks and I/O already queued). */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Both results; when either fails, its error once both are done (none left running). */
async function both<A, B>(a: Promise<A>, b: Promise<B>): Promise<[A, B]> {
  const [ra, rb] = await Promise.allSettled([a, b]);
  if (ra.status === "rejected") throw ra.reason;
  if (rb.status === "rejected") throw rb.reason;
  return [ra.value, rb.value];
}

/**
 * The overlay's first phase (applyOverlay), or, when it wants no device and none of our overlay
 * devices was among the links read this pass, its plan against nothing: there is nothing of it
 * to read back (neighbours and FDB entries are read on our devices only), and the read of every
 * link with its details and addresses (`ip -d -j addr show`: 1,000 pods' veths) is not run.
 */
async function convergeOverlay(
  ctx: Ctx,
  overlayNow: () => OverlayState,
  linkNames: ReadonlySet<string>,
): Promise<OverlayApplied> {
  const want = overlayNow();
  if (
    want.devices.length > 0 ||
    linkNames.size === 0 ||
    OVERLAY_DEVICES.some((d) => linkNames.has(d))
  )
    return applyOverlay(ctx, overlayNow);
  return {
    plan: planOverlay(want, { links: [], neighbours: [], fdb: [] }),
    present: new Set(),
    failed: [],
  };
}

/** Converges the namespace to state; see the module comment. */
export async function applyDataplane(
  state: DataplaneState,
  opts: ApplyOptions,
): Promise<ApplyReport> {
  const direct = useDirect(opts) ? new DirectKernel(opts.netns) : undefined;
  try {
    return await applyWith(state, opts, direct);
  } finally {
    direct?.close();
  }
}

async function applyWith(
  state: DataplaneState,
  opts: ApplyOptions,
  direct: DirectKernel | undefined,
): Promise<ApplyReport> {
  const ctx: Ctx = { netns: opts.netns, run: opts.run ?? spawnRunner };
  const changes: string[] = [];
  const filterChanges: string[] = [];
  const overlayNow = opts.overlayNow ?? (() => state.overlay);
  const timed = timer(opts.trace);
  // The interfaces with their sysctls (node-wide ones with them: one read, one write), and
  // the ipsets and iptables, depend on nothing of each other: both run at once. (The overlay
  // beside them too measured slower: its read of every link, `ip -d addr show`, and its parse
  // took the CPU and the event loop the restores' input needed; after them it takes ~45 ms.)
  let early: EarlyRoutes | undefined;
  /** Every link's name, as read by the links step. */
  const linkNames = new Set<string>();
  // The filter half starts first: the sets' read and plan and `ipset restore` (the head of the
  // pass's longest chain) are under way before the tables are planned and before the links
  // dump and the sysctls take this thread (each of those starts a turn of the event loop later).
  const filter = (async () => {
    const flavour = opts.iptables ?? "nft";
    // iptables' time: its read back and plan, then its restores (not the ipsets' between).
    let readMs = 0;
    const [sets, planned] = await both(
      timed("ipsets (read, plan, restore)", () =>
        convergeIpsets(ctx, state, filterChanges, direct, opts.trace),
      ),
      (async () => {
        await nextTurn();
        const t = performance.now();
        const p = await timed("iptables read back and plan", () =>
          planIptables(ctx, state, flavour, direct),
        );
        readMs = performance.now() - t;
        return p;
      })(),
    );
    const t0 = performance.now() - readMs;
    const iptables = await timed("iptables restores", () =>
      convergeIptables(ctx, state, planned, flavour, filterChanges, opts.cleanupFamilies),
    );
    const iptablesSeconds = (performance.now() - t0) / 1000;
    await timed("stale ipsets", () => removeStaleIpsets(ctx, state, filterChanges, sets.current));
    return { sets, iptables, iptablesSeconds };
  })();
  const [{ sets, iptables, iptablesSeconds }, present] = await both(
    filter,
    (async () => {
      await nextTurn();
      const present = await timed("links", () =>
        convergeLinks(ctx, state, changes, direct, linkNames),
      );
      // The pods' device routes through the interfaces found, set beside the sysctls and the
      // restores: the kernel inserts them on the FIB's sender thread (opts.earlyRoutes).
      const [, e] = await both(
        timed("sysctls", () =>
          convergeSysctls(
            ctx,
            [
              ...state.workloads.sysctls,
              ...state.workloads.ifaces
                .filter((i) => present.has(i.name))
                .flatMap((i) => i.sysctls),
            ],
            changes,
            opts.sysctlsUnread,
            direct,
          ),
        ),
        (opts.earlyRoutes ?? true)
          ? timed("routes: pods' set (beside the restores)", () =>
              setPodRoutes(opts.fib, state.workloads.routes, present),
            )
          : Promise.resolve(undefined),
      );
      early = e;
      // Bandwidth limits (tc) on the workload interfaces that exist (qos_apply.ts).
      changes.push(...(await timed("qos", () => applyQos(ctx, state.qos ?? [], present))));
      return present;
    })(),
  );
  changes.push(...filterChanges);
  // The overlay's devices, addresses, neighbours and FDB entries before the routes through them.
  const overlay = await timed("overlay", () => convergeOverlay(ctx, overlayNow, linkNames));
  changes.push(...overlay.plan.changes);
  const missingIfaces = state.workloads.ifaces.map((i) => i.name).filter((n) => !present.has(n));
  for (const d of overlay.present) present.add(d);
  await opts.beforeRoutes?.();
  const overlayState = overlayNow();
  const routes = [...state.workloads.routes, ...overlayState.routes].filter((r) =>
    r.nexthops.every((nh) => nh.dev === undefined || present.has(nh.dev)),
  );
  const t1 = performance.now();
  const resynced = await timed("routes", () =>
    convergeRoutes(opts.fib, routes, changes, opts.routeResync ?? true, opts.trace, early),
  );
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
    routesResynced: resynced,
  };
}

// ---- the incremental path ------------------------------------------------------------------------

export interface IncrementalOptions {
  /**
   * How often the kernel is read back in full (iptables-save, ipset save, every sysctl and link,
   * the overlay) to repair what others changed (FelixConfiguration iptablesRefreshInterval;
   * Calico's default 90 s); 0: only at start and after errors.
   */
  refreshMs?: number;
  /** How often the FIB dumps the kernel's routes (routeRefreshInterval; default 90 s). */
  routeRefreshMs?: number;
  /** The clock (ms); tests pass their own. */
  now?: () => number;
}

export interface IncrementalReport extends ApplyReport {
  /** "full": read back and converged; "incremental": only the differences to memory written. */
  mode: "full" | "incremental";
  /** Why this pass was a full one (start, refresh, error, or what the plan could not do). */
  why?: string;
}

/** How many routes a FIB holds (KernelFib); absent when it does not say. */
interface CountingFib {
  status?: () => { desired: number };
}

/** The links a FIB watches by name (KernelFib); absent when it does not watch them. */
interface LinkWatchingFib {
  watchedLinks?: () => Map<string, { index: number; up: boolean }>;
}

/** Above this many interfaces to check, one `ip -j link show` of all is cheaper than one each. */
const LINK_SHOW_EACH_MAX = 4;

/**
 * The agent's applier, Felix's way: keeps in memory what it last wrote (written.ts) and per
 * pass writes only the differences, with one `iptables-restore --noflush` per changed table and
 * one `ipset restore`; new or recreated interfaces are the only ones checked and set. The
 * kernel is read back in full (applyDataplane) at the first pass, on the refresh interval,
 * after any error, when asked (refresh()), and when the plan needs it; a write that fails
 * falls back to such a full pass at once, so nothing stays half-applied.
 */
export class IncrementalApplier {
  private written: Written | undefined;
  private lastFull = Number.NEGATIVE_INFINITY;
  private lastRouteRefresh = Number.NEGATIVE_INFINITY;
  private wantFull: string | undefined = "start";
  /** The overlay last applied (as text), and our overlay devices present then. */
  private overlayText: string | undefined;
  /** The bandwidth limits last applied (as text). */
  private qosText: string | undefined;
  private overlayPresent = new Set<string>();
  private overlayFailed: { device: string; reason: string }[] = [];
  /** Routes last set by the incremental path (key -> text): the ones that changed are set. */
  private routes = new Map<string, string>();
  /** Long-lived `iptables-nft-restore` per namespace and tool (direct mode, nft only). */
  private sessions = new Map<string, RestoreSession>();

  constructor(private readonly o: IncrementalOptions = {}) {}

  /** Sets the refresh intervals (FelixConfiguration may change them). */
  configure(o: Pick<IncrementalOptions, "refreshMs" | "routeRefreshMs">): void {
    if (o.refreshMs !== undefined) this.o.refreshMs = o.refreshMs;
    if (o.routeRefreshMs !== undefined) this.o.routeRefreshMs = o.routeRefreshMs;
  }

  /** Ends the long-lived tools (they also end on their own when this process exits). */
  close(): void {
    for (const s of this.sessions.values()) s.stop();
    this.sessions.clear();
  }

  /** The long-lived restore of bin in netns (started on first use). */
  private session(netns: string | undefined, bin: string): RestoreSession {
    const key = `${netns ?? ""} ${bin}`;
    let s = this.sessions.get(key);
    if (!s) {
      s = new RestoreSession(netns, bin, COMMAND_TIMEOUT_MS);
      this.sessions.set(key, s);
    }
    return s;
  }

  /** The next pass reads the kernel back in full. */
  refresh(why = "asked"): void {
    this.wantFull ??= why;
  }

  private now(): number {
    return this.o.now ? this.o.now() : performance.now();
  }

  async apply(state: DataplaneState, opts: ApplyOptions): Promise<IncrementalReport> {
    const now = this.now();
    const refreshMs = this.o.refreshMs ?? DEFAULT_REFRESH_MS;
    let why = this.wantFull;
    if (why === undefined && refreshMs > 0 && now - this.lastFull >= refreshMs) why = "refresh";
    const t0 = performance.now();
    // The FIB's links by name, once a pass (the plan's and the pass's, the same moment).
    const links = why === undefined && this.written ? linkIndexes(opts.fib) : undefined;
    const plan =
      why === undefined && this.written
        ? planIncremental(this.written, state, indexesOf(links))
        : undefined;
    if (plan) opts.trace?.("plan", performance.now() - t0);
    if (plan === undefined || plan.full !== undefined)
      return this.full(state, opts, why ?? plan?.full ?? "start");
    try {
      return await this.incremental(state, opts, plan, links);
    } catch (err) {
      // Whatever was written of the plan, the full pass reads it back and converges.
      const report = await this.full(state, opts, `write failed: ${(err as Error).message}`);
      report.changes.unshift(`incremental write failed (${(err as Error).message}): full pass`);
      return report;
    }
  }

  private async full(
    state: DataplaneState,
    opts: ApplyOptions,
    why: string,
  ): Promise<IncrementalReport> {
    this.written = undefined;
    this.wantFull = why;
    // At start nothing is known: the sysctls are written, not read first (later full passes
    // read them, so that drift is found and counted). At start and on the refresh interval the
    // FIB's routes are dumped only when its last dump is as old as the route refresh interval:
    // a KernelFib watching route events knows what others changed since (its own open dumped
    // the kernel just before a start). After a failure or when asked, always.
    const routeRefreshMs = this.o.routeRefreshMs ?? DEFAULT_REFRESH_MS;
    const freshMs = (opts.fib as Fib & KernelLikeFib).freshForMs?.() ?? Number.POSITIVE_INFINITY;
    const routeResync =
      (why !== "start" && why !== "refresh") || routeRefreshMs <= 0 || !(freshMs < routeRefreshMs);
    const report = await applyDataplane(state, {
      ...opts,
      sysctlsUnread: why === "start",
      routeResync,
    });
    const missing = new Set(report.missingIfaces);
    const known = linkIndexes(opts.fib);
    const present = new Map<string, number | undefined>();
    for (const i of state.workloads.ifaces)
      if (!missing.has(i.name)) present.set(i.name, known?.get(i.name)?.index);
    this.written = writtenOf(state, present);
    this.overlayText = JSON.stringify(report.overlay.state);
    this.qosText = JSON.stringify(state.qos ?? []);
    this.overlayPresent = new Set(report.overlay.present);
    for (const i of state.workloads.ifaces) this.overlayPresent.delete(i.name);
    this.overlayFailed = report.overlayFailures;
    // The routes the full pass set: the next incremental pass sets only what changes from them.
    const through = new Set([...present.keys(), ...report.overlay.present]);
    this.routes = new Map(
      [...state.workloads.routes, ...report.overlay.state.routes]
        .filter((r) => r.nexthops.every((nh) => nh.dev === undefined || through.has(nh.dev)))
        .map((r) => {
          const { key, text } = routeIdentity(r);
          return [key, text];
        }),
    );
    this.lastFull = this.now();
    // Without a dump now, the FIB's last dump starts the route refresh interval.
    this.lastRouteRefresh =
      report.routesResynced === false ? this.lastFull - freshMs : this.lastFull;
    // The long-lived tools the next incremental passes write rules with, started now (idle).
    if (useDirect(opts) && (opts.iptables ?? "nft") === "nft")
      for (const f of state.families)
        this.session(opts.netns, `${f.family === 4 ? "iptables" : "ip6tables"}-nft-restore`).warm();
    this.wantFull = undefined;
    return { ...report, mode: "full", why };
  }

  /**
   * Sets the device routes through `ifaces` (found in this pass) that differ from those last
   * set, and records them as set: the routes step sets only what else changed. A failure throws
   * (the pass falls back to a full one, which rebuilds the record).
   */
  private async setNewPodRoutes(
    fib: Fib,
    routes: Route[],
    ifaces: string[],
    changes: string[],
  ): Promise<void> {
    const through = new Set(ifaces);
    const set: { r: Route; key: string; text: string }[] = [];
    for (const r of routes) {
      if (r.nexthops.length === 0) continue;
      if (!r.nexthops.every((nh) => nh.dev !== undefined && through.has(nh.dev))) continue;
      const { key, text } = routeIdentity(r);
      if (this.routes.get(key) !== text) set.push({ r, key, text });
    }
    if (set.length === 0) return;
    await fib.set(set.map((x) => x.r));
    for (const { r, key, text } of set) {
      if (!this.routes.has(key)) changes.push(`route ${r.dst} ${r.type ?? "unicast"} added`);
      this.routes.set(key, text);
    }
  }

  private async incremental(
    state: DataplaneState,
    opts: ApplyOptions,
    plan: IncrementalPlan,
    known: ReturnType<typeof linkIndexes>,
  ): Promise<IncrementalReport> {
    const direct = useDirect(opts) ? new DirectKernel(opts.netns) : undefined;
    try {
      return await this.incrementalWith(state, opts, plan, direct, known);
    } finally {
      direct?.close();
    }
  }

  private async incrementalWith(
    state: DataplaneState,
    opts: ApplyOptions,
    plan: IncrementalPlan,
    direct: DirectKernel | undefined,
    known: ReturnType<typeof linkIndexes>,
  ): Promise<IncrementalReport> {
    const ctx: Ctx = { netns: opts.netns, run: opts.run ?? spawnRunner };
    const written = this.written as Written;
    const changes: string[] = [];
    const filterChanges: string[] = [];
    const timed = timer(opts.trace);
    // As in the full pass: the interfaces and the filter state at once; the rules sent to their
    // writer first, so that the kernel commits them while this thread reads and configures the
    // interfaces and writes set members (each a blocking netlink request).
    const filterDone = both(
      (async () => {
        // Their changes listed members first, then rules, whichever is done first.
        const setChanges: string[] = [];
        const sets = async () => {
          if (plan.ipsets === null) return;
          const ops = plan.ipsetOps;
          if (direct && ops) await timed("ipset netlink", async () => direct.ipsetMembers(ops));
          else
            await timed("ipset restore", () =>
              runOk(ctx, "ipset", ["restore", "-exist"], plan.ipsets ?? ""),
            );
          setChanges.push(...plan.ipsetChanges);
        };
        const tables = async () => {
          const t0 = performance.now();
          const flavour = opts.iptables ?? "nft";
          for (const t of plan.iptables) {
            const bin = `${t.family === 4 ? "iptables" : "ip6tables"}-${flavour}`;
            // nft: the long-lived tool, fed this block (a block of only chain flushes may
            // commit nothing, so no generation would confirm it: the one-shot tool does it).
            if (direct && flavour === "nft" && RULE_LINE.test(t.payload))
              await timed(`${bin}-restore (long-lived)`, () =>
                this.session(opts.netns, `${bin}-restore`).commit(t.payload),
              );
            else
              await timed(`${bin}-restore`, () =>
                runOk(ctx, `${bin}-restore`, ["--noflush", "-w", XTABLES_WAIT_S], t.payload),
              );
            filterChanges.push(...t.changes.map((c) => `${bin} ${t.table}: ${c}`));
          }
          return (performance.now() - t0) / 1000;
        };
        // Rules may refer to a set only once it exists: with a new set, the sets go first;
        // else members and rules are written at once.
        let seconds: number;
        if (plan.ipsetChanges.some((c) => c.endsWith(" missing"))) {
          await sets();
          seconds = await tables();
        } else seconds = (await both(tables(), sets()))[0];
        filterChanges.unshift(...setChanges);
        for (const name of plan.staleIpsets) {
          const r = await ctx.run(ctx.netns, "ipset", ["destroy", name]);
          // In use by someone else's rule: the next full pass tries again.
          if (r.code !== 0) this.wantFull ??= `ipset ${name} in use`;
          filterChanges.push(
            r.code === 0 ? `ipset ${name} stale, destroyed` : `ipset ${name} stale, in use`,
          );
        }
        return seconds;
      })(),
      (async () => {
        // New (or recreated, or changed) interfaces: found, set, their sysctls written with
        // the node-wide ones that changed.
        // Interfaces whose addresses the agent owned before: checked for addresses even when it
        // no longer owns them (local workload peering switched off: they are removed).
        const hadAddresses = new Set(
          plan.checkIfaces
            .filter((i) => written.ifaces.get(i.name)?.key.includes(" addr=") === true)
            .map((i) => i.name),
        );
        const configured = await timed("interfaces", () =>
          configureIfaces(ctx, plan.checkIfaces, changes, plan.sysctls, direct, hadAddresses),
        );
        for (const s of plan.sysctls) changes.push(`sysctl ${s.key}=${s.value}`);
        // As in the full pass (opts.earlyRoutes): the device routes of the interfaces found in
        // this pass, set beside the rule commit; the routes step then finds them set.
        if ((opts.earlyRoutes ?? true) && configured.configured.length > 0)
          await timed("routes: new pods' set (beside the rule commit)", () =>
            this.setNewPodRoutes(opts.fib, state.workloads.routes, configured.configured, changes),
          );
        return configured;
      })(),
    );
    // While the rule writer and the kernel commit rules: each route's identity and text, for
    // the routes step after them (a thousand pods' routes compared cost CPU, not waiting).
    const routeText = new Map<Route, { key: string; text: string }>();
    if (plan.iptables.length > 0) {
      const t = performance.now();
      for (const r of state.workloads.routes) routeText.set(r, routeIdentity(r));
      opts.trace?.("routes prepared (beside the rule commit)", performance.now() - t);
    }
    const [iptablesSeconds, { configured, flushed }] = await filterDone;
    changes.push(...filterChanges);
    let tStep = performance.now();
    const lap = (step: string) => {
      const t = performance.now();
      opts.trace?.(step, t - tStep);
      tStep = t;
    };
    const indexed = new Map<string, number | undefined>();
    for (const n of configured) indexed.set(n, known?.get(n)?.index);
    // The overlay: read back and converged only when what is wanted of it changed.
    const overlayNow = opts.overlayNow ?? (() => state.overlay);
    let overlay: Awaited<ReturnType<typeof applyOverlay>> | undefined;
    const overlayMoved = JSON.stringify(overlayNow()) !== this.overlayText;
    if (overlayMoved) {
      overlay = await applyOverlay(ctx, overlayNow);
      changes.push(...overlay.plan.changes);
      this.overlayPresent = new Set(overlay.present);
      for (const i of state.workloads.ifaces) this.overlayPresent.delete(i.name);
      this.overlayFailed = overlay.failed;
    }
    lap("overlay");
    await opts.beforeRoutes?.();
    const overlayState = overlayNow();
    const next = afterPlan(written, state, plan, indexed);
    lap("written");
    // Bandwidth limits: converged (tc read back) when what is wanted of them changed or an
    // interface that has one was (re)configured; otherwise nothing runs.
    const qos = state.qos ?? [];
    const qosText = JSON.stringify(qos);
    if (qosText !== this.qosText || qos.some((q) => configured.includes(q.iface))) {
      changes.push(...(await applyQos(ctx, qos, new Set(next.ifaces.keys()))));
      this.qosText = qosText;
    }
    lap("qos");
    const present = new Set<string>([...next.ifaces.keys(), ...this.overlayPresent]);
    const routes = [...state.workloads.routes, ...overlayState.routes].filter((r) =>
      r.nexthops.every((nh) => nh.dev === undefined || present.has(nh.dev)),
    );
    const t1 = performance.now();
    // Routes the kernel flushed with an interface's last IPv4 address: its table read back now.
    const refreshRoutes =
      flushed.length > 0 ||
      ((this.o.routeRefreshMs ?? DEFAULT_REFRESH_MS) > 0 &&
        this.now() - this.lastRouteRefresh >= (this.o.routeRefreshMs ?? DEFAULT_REFRESH_MS));
    // What the FIB holds is what this applier last set when nothing else can have changed it:
    // the overlay (whose fast path also writes this FIB) is as last applied, and the FIB holds
    // as many routes as were set. Then its table is not walked (`desired()`) to know.
    const held = (opts.fib as Fib & CountingFib).status?.().desired;
    const trusted = !overlayMoved && held !== undefined && held === this.routes.size;
    this.routes = await setChangedRoutes(
      opts.fib,
      routes,
      this.routes,
      changes,
      refreshRoutes,
      trusted,
      routeText,
    );
    if (refreshRoutes) this.lastRouteRefresh = this.now();
    const routesSeconds = (performance.now() - t1) / 1000;
    lap("routes");
    if (overlay) await removeStale(ctx, overlay);
    if (overlay) this.overlayText = JSON.stringify(overlayState);
    this.written = next;
    const missingIfaces = state.workloads.ifaces
      .map((i) => i.name)
      .filter((n) => !next.ifaces.has(n));
    return {
      changes,
      missingIfaces,
      iptables: plan.iptables.map((t) => ({
        table: t.table,
        family: t.family,
        payload: t.payload,
        changes: t.changes,
      })),
      ipsets: plan.ipsets,
      overlayFailures: this.overlayFailed,
      overlay: { state: overlayState, present: new Set(this.overlayPresent) },
      timings: { iptablesSeconds, routesSeconds },
      mode: "incremental",
    };
  }
}

const indexesOf = (links: Map<string, { index: number }> | undefined) =>
  links && new Map([...links].map(([n, l]) => [n, l.index]));

/** A route's identity (IPv6 routes without a metric get 1024 from the kernel). */
const agentRouteKey = (r: Pick<Route, "family" | "dst" | "table" | "metric">) =>
  routeKey({ ...r, metric: r.family === 6 && !r.metric ? IP6_RT_PRIO_USER : r.metric });

/** Identity and text of the routes rendered (frozen, reused across renders: workload.ts). */
const routeIds = new WeakMap<Route, { key: string; text: string }>();

/** A route's identity (agentRouteKey) and its text, to compare with the one last set. */
function routeIdentity(r: Route): { key: string; text: string } {
  const had = routeIds.get(r);
  if (had !== undefined) return had;
  const id = { key: agentRouteKey(r), text: JSON.stringify(r) };
  if (Object.isFrozen(r)) routeIds.set(r, id);
  return id;
}

/** Calico's iptablesRefreshInterval and routeRefreshInterval default: 90 s. */
export const DEFAULT_REFRESH_MS = 90_000;

/** A restore line that always makes a transaction: a rule added, inserted, deleted; a chain deleted. */
const RULE_LINE = /^-[AIDX] /m;

/** Whether to read and write the kernel directly (ApplyOptions.direct and its default). */
function useDirect(opts: ApplyOptions): boolean {
  return opts.direct ?? (opts.run === undefined && addonUsable());
}

let addonReason: string | undefined | null = null;
/** Whether the native addon loads here (asked once). */
function addonUsable(): boolean {
  if (addonReason === null) addonReason = addonUnavailableReason();
  return addonReason === undefined;
}

function linkIndexes(fib: Fib): Map<string, { index: number; up: boolean }> | undefined {
  return (fib as Fib & LinkWatchingFib).watchedLinks?.();
}

/**
 * Finds the interfaces (one `ip -j link show dev` each, or one of all when many; with `direct`,
 * one netlink request each), sets their MAC and up where needed and writes their sysctls (with
 * `more`: one write); returns the names of those that exist.
 */
async function configureIfaces(
  ctx: Ctx,
  ifaces: WorkloadIface[],
  changes: string[],
  more: Sysctl[],
  direct?: DirectKernel,
  hadAddresses: ReadonlySet<string> = new Set(),
) {
  const found = new Map<string, IpLink>();
  // Always asked (the FIB's link watch knows no MAC, and may not have seen a new link yet).
  const unknown = ifaces;
  if (unknown.length === 0) {
    // Nothing to ask the kernel.
  } else if (direct) {
    for (const i of unknown) {
      const l = direct.link(i.name);
      if (l) found.set(i.name, l);
    }
  } else if (unknown.length > LINK_SHOW_EACH_MAX) {
    const links = JSON.parse(
      (await runOk(ctx, "ip", ["-j", "link", "show"])).trim() || "[]",
    ) as IpLink[];
    for (const l of links) found.set(l.ifname.split("@")[0] as string, l);
  } else
    for (const i of unknown) {
      const r = await ctx.run(ctx.netns, "ip", ["-j", "link", "show", "dev", i.name]);
      // A missing device exits non-zero ("does not exist"): it waits for the next pass.
      if (r.code !== 0) continue;
      const l = (JSON.parse(r.stdout.trim() || "[]") as IpLink[])[0];
      if (l) found.set(i.name, l);
    }
  const configured: string[] = [];
  /** Interfaces whose IPv4 routes the kernel flushed (their last IPv4 address removed). */
  const flushed: string[] = [];
  const sysctls: Sysctl[] = [...more];
  for (const want of ifaces) {
    const l = found.get(want.name);
    if (!l) continue;
    if (l.address?.toLowerCase() !== want.mac) {
      await runOk(ctx, "ip", ["link", "set", "dev", want.name, "address", want.mac]);
      changes.push(`link ${want.name} address ${want.mac} (was ${l.address ?? "none"})`);
    }
    if (!l.flags?.includes("UP")) {
      await runOk(ctx, "ip", ["link", "set", "dev", want.name, "up"]);
      changes.push(`link ${want.name} up`);
    }
    if (want.addresses !== undefined || hadAddresses.has(want.name)) {
      const have = (await readIfaceAddresses(ctx, want.name)).get(want.name) ?? [];
      if (await convergeIfaceAddresses(ctx, want.name, want.addresses ?? [], have, changes))
        flushed.push(want.name);
    }
    sysctls.push(...want.sysctls);
    configured.push(want.name);
    changes.push(`link ${want.name} configured`);
  }
  if (direct) await direct.writeSysctls(sysctls);
  else await writeSysctls(ctx, sysctls);
  return { configured, flushed };
}

/**
 * Sets the routes that are new or changed since the last pass, removes the stale ones. What the
 * FIB holds is asked of it (`desired()`), or, when `trusted`, taken to be `last`.
 */
async function setChangedRoutes(
  fib: Fib,
  routes: Route[],
  last: Map<string, string>,
  changes: string[],
  resync: boolean,
  trusted = false,
  known?: Map<Route, { key: string; text: string }>,
): Promise<Map<string, string>> {
  const key = agentRouteKey;
  type Held = Pick<Route, "family" | "dst" | "table" | "metric" | "protocol">;
  // Trusted: the routes last set, as text (a stale one is parsed back to be removed).
  const before: Map<string, Held | string> = trusted
    ? last
    : new Map(
        fib
          .desired()
          .filter((r) => r.protocol === RTPROT_OCELOT_AGENT)
          .map((r) => [key(r), r]),
      );
  const next = new Map<string, string>();
  const set: Route[] = [];
  for (const r of routes) {
    const { key: k, text } = known?.get(r) ?? routeIdentity(r);
    next.set(k, text);
    if (!before.has(k) || last.get(k) !== text) set.push(r);
    if (!before.has(k)) changes.push(`route ${r.dst} ${r.type ?? "unicast"} added`);
  }
  const stale = [...before]
    .filter(([k]) => !next.has(k))
    .map(([, r]) => (typeof r === "string" ? (JSON.parse(r) as Held) : r));
  if (set.length) await fib.set(set);
  if (stale.length) await fib.remove(stale);
  for (const r of stale) changes.push(`route ${r.dst} removed`);
  if (resync) await (fib as Fib & KernelLikeFib).resync?.();
  return next;
}
