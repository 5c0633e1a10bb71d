// `ocelot ipam show|check|release|configure|gc`: IPAM state from the datastore for operators
// (calicoctl's ipam commands, and kube-controllers' IPAM garbage collection as `ipam gc`).
// Owns: option parsing, tables and JSON output, report files and the refusals of a report
// that no longer describes the datastore, the gc loop. Not: allocation or GC logic (src/ipam/)
// nor the datastore backends (src/datastore/).
import { readFileSync, writeFileSync } from "node:fs";
import { type Command, Option } from "commander";
import { z } from "zod";
import { ResourceClient } from "../api/client.js";
import { kindOf } from "../api/registry.js";
import {
  addDatastoreOptions,
  type DatastoreCliOptions,
  openDatastoreFromCli,
} from "../datastore/open.js";
import { type Datastore, UnavailableError } from "../datastore/types.js";
import { IpamDataError, inUseCount } from "../ipam/block.js";
import { type CheckReport, checkIpam, REPORT_VERSION } from "../ipam/check.js";
import { ensureClusterInformation, readClusterInformation } from "../ipam/cluster.js";
import { DEFAULT_EMPTY_BLOCK_GRACE_MS, DEFAULT_LEAK_GRACE_MS } from "../ipam/gc.js";
import {
  GcConflictError,
  type GcPassResult,
  loadIpamView,
  releaseLeaks,
  runGcPass,
} from "../ipam/gc_run.js";
import { BadSequenceError, IpamStore } from "../ipam/store.js";
import { kubeControllersSettings } from "../k8s/kcc.js";
import { cidrContains, cidrSize, formatCidr, parseAddress } from "../lib/ip.js";
import { Progress } from "../lib/progress.js";
import { CliError } from "./main.js";

type Opts = DatastoreCliOptions & { json?: boolean; progress?: boolean };

/**
 * Progress lines (stderr) for reading the IPAM state and for releasing, as `ocelot apply` draws
 * them: on a terminal, or with --progress; never with --json.
 */
function ipamProgress(opts: Opts) {
  const o = { flag: opts.progress, json: opts.json };
  let reading: Progress | undefined;
  let releasing: Progress | undefined;
  return {
    onProgress: (done: number, total: number) => {
      reading ??= new Progress("reading IPAM state (listings)", total, o);
      reading.tick();
      if (done === total) reading.finish();
    },
    onRelease: (done: number, total: number) => {
      releasing ??= new Progress("releasing leaked addresses", total, o);
      releasing.tick(done === 0 ? 0 : 1);
      if (done === total) releasing.finish();
    },
  };
}

async function withIpam<T>(
  opts: Opts,
  fn: (ipam: IpamStore, store: Datastore) => Promise<T>,
): Promise<T> {
  let store: Datastore;
  try {
    store = await openDatastoreFromCli(opts);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  try {
    return await fn(new IpamStore(store), store);
  } catch (err) {
    if (
      err instanceof IpamDataError ||
      err instanceof BadSequenceError ||
      err instanceof UnavailableError
    )
      throw new CliError(err.message);
    throw err;
  } finally {
    await store.close();
  }
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

const print = (s: string) => process.stdout.write(`${s}\n`);

async function show(opts: Opts & { showBlocks?: boolean; ip?: string }): Promise<void> {
  await withIpam(opts, async (ipam) => {
    if (opts.ip !== undefined) {
      try {
        parseAddress(opts.ip);
      } catch (err) {
        throw new CliError((err as Error).message, 2);
      }
      const a = await ipam.getAllocation(opts.ip);
      if (opts.json)
        return print(JSON.stringify({ address: opts.ip, allocation: a ?? null }, null, 2));
      if (!a) return print(`IP ${opts.ip} is not assigned`);
      const who = [a.attrs.namespace, a.attrs.pod].filter(Boolean).join("/");
      print(`IP ${a.address} is in use`);
      print(`  handle:   ${a.handleId ?? "(none)"}`);
      if (who) print(`  workload: ${who}`);
      if (a.attrs.node) print(`  node:     ${a.attrs.node}`);
      print(`  block:    ${a.block} (affinity ${a.blockAffinity ?? "none"})`);
      print(`  sequence: ${a.sequence}`);
      return;
    }
    const [pools, blocks, reservations] = await Promise.all([
      ipam.loadPools(),
      ipam.listAllBlocks(),
      ipam.loadReservations(),
    ]);
    const poolRows = pools.map((p) => {
      const mine = blocks.filter((b) =>
        cidrContains(p.cidr, b.block.cidr.family, b.block.cidr.base),
      );
      const inUse = mine.reduce((n, b) => n + inUseCount(b.block), 0);
      const total = cidrSize(p.cidr);
      const reserved = reservations
        .filter((r) => cidrContains(p.cidr, r.family, r.base))
        .reduce((n, r) => n + cidrSize(r), 0n);
      return {
        pool: p.name,
        cidr: formatCidr(p.cidr),
        total: total.toString(),
        inUse,
        reserved: reserved.toString(),
        free: (total - BigInt(inUse) - reserved).toString(),
        disabled: p.disabled,
        blocks: mine.length,
      };
    });
    const blockRows = blocks.map((b) => ({
      pool:
        pools.find((p) => cidrContains(p.cidr, b.block.cidr.family, b.block.cidr.base))?.name ??
        null,
      cidr: formatCidr(b.block.cidr),
      affinity: b.block.affinity,
      affinityState: b.affinityState ?? null,
      total: b.block.owner.length,
      inUse: inUseCount(b.block),
      free: b.block.owner.length - inUseCount(b.block),
    }));
    if (opts.json) {
      return print(
        JSON.stringify(
          { pools: poolRows, ...(opts.showBlocks ? { blocks: blockRows } : {}) },
          null,
          2,
        ),
      );
    }
    const rows = [["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS RESERVED", "IPS FREE"]];
    for (const p of poolRows) {
      rows.push(["IP Pool", p.cidr, p.total, String(p.inUse), p.reserved, p.free]);
      if (opts.showBlocks) {
        for (const b of blockRows.filter((x) => x.pool === p.pool)) {
          const owner = b.affinity
            ? `${b.affinity}${b.affinityState && b.affinityState !== "confirmed" ? ` (${b.affinityState})` : ""}`
            : "(no affinity)";
          rows.push([
            `Block ${owner}`,
            b.cidr,
            String(b.total),
            String(b.inUse),
            "",
            String(b.free),
          ]);
        }
      }
    }
    print(table(rows));
  });
}

async function check(opts: Opts & { output?: string }): Promise<void> {
  await withIpam(opts, async (ipam, store) => {
    // The cluster record first: a lock taken after it makes this report stale.
    const cluster = await ensureClusterInformation(store, ipam.keys);
    const view = await loadIpamView(ipam, ipamProgress(opts).onProgress);
    const report = checkIpam({
      ...view,
      datastore: store.url,
      now: new Date(),
      cluster: {
        clusterGUID: cluster.clusterGUID,
        datastoreLocked: !cluster.datastoreReady,
        revision: cluster.revision,
      },
    });
    if (opts.output) writeFileSync(opts.output, `${JSON.stringify(report, null, 2)}\n`);
    if (opts.json) return print(JSON.stringify(report, null, 2));
    const s = report.summary;
    print(
      `Cluster ${report.clusterGUID}, datastore ${report.datastoreLocked ? "locked" : "not locked"}.`,
    );
    print(`Checked ${s.blocks} blocks, ${s.allocated} allocated addresses.`);
    print(`Leaked addresses (allocated, no WorkloadEndpoint): ${s.leaked}`);
    for (const l of report.leakedAddresses) {
      print(
        `  ${l.address}  handle ${l.handleId ?? "(none)"}  ${l.attrs.namespace ?? ""}/${l.attrs.pod ?? ""} on ${l.attrs.node ?? "?"}: ${l.reason}`,
      );
    }
    print(`Blocks of nodes that no longer exist: ${s.blocksOfMissingNodes}`);
    for (const b of report.blocksOfMissingNodes)
      print(`  ${b.block}  node ${b.node}  ${b.inUse} in use`);
    print(`Handles holding no address: ${s.emptyHandles}`);
    if (opts.output && report.datastoreLocked)
      print(
        `Report written to ${opts.output}; release leaks with: ocelot ipam release --from-report ${opts.output}`,
      );
    else if (opts.output)
      print(
        `Report written to ${opts.output}; it was made while the datastore was not locked, so a release from it is refused: lock first (ocelot datastore lock), check again, release, unlock.`,
      );
  });
}

type ReportGuards = Pick<
  CheckReport,
  "leakedAddresses" | "clusterGUID" | "datastoreLocked" | "clusterInformationRevision"
> & { emptyHandles?: string[] };

const ReportFile = z
  .object({
    version: z.literal(REPORT_VERSION),
    clusterGUID: z.string(),
    datastoreLocked: z.boolean(),
    clusterInformationRevision: z.number().int(),
    leakedAddresses: z.array(
      z
        .object({
          address: z.string(),
          sequence: z.number().int().nonnegative(),
          handleId: z.string().nullable(),
        })
        .loose(),
    ),
    emptyHandles: z.array(z.string()).optional(),
  })
  .loose();

function readReport(file: string): ReportGuards {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new CliError(`Cannot read report "${file}": ${(err as Error).message}`);
  }
  const version = (raw as { version?: unknown } | null)?.version;
  if (typeof version === "number" && version < REPORT_VERSION) {
    throw new CliError(
      `Report "${file}" is version ${version}, made before reports named their cluster and lock state; run ocelot ipam check -o again`,
    );
  }
  const r = ReportFile.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new CliError(
      `Report "${file}" is not an ocelot ipam check report: field "${i?.path.join(".")}": ${i?.message}`,
    );
  }
  return r.data as unknown as ReportGuards;
}

/**
 * Whether a report may still be acted on (Calico's rules): same cluster (never overridden),
 * made while the datastore was locked and locked still (else --force), and no lock or unlock
 * since it was made (the cluster record's revision is unchanged).
 */
async function guardReport(
  store: Datastore,
  ipam: IpamStore,
  file: string,
  report: ReportGuards,
  force: boolean,
): Promise<void> {
  const cluster = await readClusterInformation(store, ipam.keys);
  const here = cluster?.clusterGUID;
  if (here !== report.clusterGUID) {
    throw new CliError(
      `Report "${file}" is of another cluster (cluster GUID ${report.clusterGUID}, this datastore ${here ?? "has none"}); refusing to release (--force does not override this)`,
    );
  }
  const warn = (s: string) => process.stderr.write(`ocelot: warning: ${s}; going on (--force)\n`);
  if (!report.datastoreLocked) {
    const why = `Report "${file}" was made while the datastore was not locked: pods may have been given addresses during the check`;
    if (!force)
      throw new CliError(
        `${why}. Lock the datastore (ocelot datastore lock), run ocelot ipam check -o again and release from that report, or use --force`,
      );
    warn(why);
  }
  if (cluster?.datastoreReady !== false) {
    const why =
      "The datastore is not locked now: new pods may be given the addresses being released";
    if (!force) throw new CliError(`${why}. Lock it (ocelot datastore lock) or use --force`);
    warn(why);
  }
  if (cluster && cluster.revision !== report.clusterInformationRevision) {
    throw new CliError(
      `Report "${file}" is stale: the datastore was locked or unlocked since it was made (cluster record revision ${report.clusterInformationRevision}, now ${cluster.revision}). Run ocelot ipam check -o again while locked`,
    );
  }
}

async function release(
  opts: Opts & { ip?: string; fromReport?: string; force?: boolean },
): Promise<void> {
  if ((opts.ip === undefined) === (opts.fromReport === undefined)) {
    throw new CliError("Give exactly one of --ip ADDR or --from-report FILE", 2);
  }
  const report = opts.fromReport !== undefined ? readReport(opts.fromReport) : undefined;
  if (opts.ip !== undefined) {
    try {
      parseAddress(opts.ip);
    } catch (err) {
      throw new CliError((err as Error).message, 2);
    }
  }
  await withIpam(opts, async (ipam, store) => {
    if (opts.ip !== undefined) {
      const done = await ipam.releaseAddress(opts.ip);
      if (!done) throw new CliError(`IP ${opts.ip} is not assigned`);
      return print(opts.json ? JSON.stringify({ released: [done] }) : `Released ${done}`);
    }
    const r = report as ReportGuards;
    await guardReport(store, ipam, opts.fromReport as string, r, opts.force === true);
    // Each address again at release time: no WorkloadEndpoint, same handle, same sequence.
    const { released, skipped } = await releaseLeaks(ipam, r.leakedAddresses);
    // Handle records that held nothing when checked, and still hold nothing (as Calico does).
    const handlesDeleted: string[] = [];
    for (const h of r.emptyHandles ?? [])
      if (await ipam.deleteHandleIfEmpty(h)) handlesDeleted.push(h);
    if (opts.json) return print(JSON.stringify({ released, skipped, handlesDeleted }, null, 2));
    print(`Released ${released.length} addresses`);
    for (const s of skipped) print(`  skipped ${s.address}: ${s.reason}`);
    if (handlesDeleted.length > 0)
      print(`Deleted ${handlesDeleted.length} empty handles: ${handlesDeleted.join(", ")}`);
    if (r.datastoreLocked) print("You may now unlock the datastore: ocelot datastore unlock");
  });
}

// ---- gc ------------------------------------------------------------------------------------

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "90s", "15m", "1h", "250ms", "0" -> milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m || (m[2] === undefined && Number(m[1]) !== 0))
    throw new CliError(`${flag} must be a duration such as 90s, 15m or 1h, got "${text}"`, 2);
  return Math.round(Number(m[1]) * (UNITS[m[2] ?? "ms"] as number));
}

function printPass(r: GcPassResult): void {
  const would = r.dryRun ? "Would release" : "Released";
  print(`IPAM GC pass at ${r.observedAt}${r.dryRun ? " (dry run: nothing changed)" : ""}`);
  const leaks = r.actions.flatMap((a) => (a.kind === "releaseAddress" ? [a] : []));
  const addrs = r.dryRun ? leaks.map((a) => a.address) : r.released;
  print(`${would} ${addrs.length} leaked addresses${addrs.length ? `: ${addrs.join(", ")}` : ""}`);
  for (const s of r.skipped) print(`  kept ${s.address}: ${s.reason}`);
  const blocks = r.dryRun
    ? r.actions.flatMap((a) =>
        a.kind === "releaseEmptyBlocks"
          ? a.blocks
          : a.kind === "deleteUnownedBlock"
            ? [a.block]
            : [],
      )
    : r.blocksReleased;
  print(`${would} ${blocks.length} empty blocks${blocks.length ? `: ${blocks.join(", ")}` : ""}`);
  if (r.dryRun) {
    for (const a of r.actions)
      if (a.kind === "releaseNode")
        print(`Would release node "${a.node}" (no Node resource): blocks ${a.blocks.join(", ")}`);
  }
  for (const n of r.nodesReleased) {
    if (n.skipped) print(`Kept node "${n.node}": ${n.skipped}`);
    else
      print(
        `Released node "${n.node}" (no Node resource): deleted ${n.blocksDeleted.join(", ") || "no blocks"}; affinity taken off ${n.blocksUnaffined.join(", ") || "no blocks"}`,
      );
  }
  print(`Watching ${r.watching.leaks.length} leaked addresses`);
  for (const l of r.watching.leaks)
    print(
      `  ${l.address}  handle ${l.handleId ?? "(none)"} seq ${l.sequence}: ${l.reason}; leaked since ${l.firstSeen}, released by a pass after ${l.releasableAfter}`,
    );
  if (r.watching.goneNodes.length > 0) {
    print(`Watching ${r.watching.goneNodes.length} nodes with no Node resource`);
    for (const g of r.watching.goneNodes)
      print(
        `  ${g.node}: gone since ${g.firstSeen}, released by a pass after ${g.releasableAfter}`,
      );
  }
}

async function gc(
  opts: Opts & {
    once?: boolean;
    interval: string;
    leakGrace?: string;
    emptyBlockGrace: string;
    dryRun?: boolean;
  },
): Promise<void> {
  const intervalMs = parseDuration(opts.interval, "--interval");
  const flagGraceMs =
    opts.leakGrace === undefined ? undefined : parseDuration(opts.leakGrace, "--leak-grace");
  const emptyBlockGraceMs = parseDuration(opts.emptyBlockGrace, "--empty-block-grace");
  if (!opts.once && intervalMs < 1000)
    throw new CliError(`--interval must be at least 1s, got "${opts.interval}"`, 2);
  await withIpam(opts, async (ipam, store) => {
    const pass = async () => {
      // --leak-grace, else the KubeControllersConfiguration's node.leakGracePeriod (read on
      // each pass; 0 turns IPAM garbage collection off, as in Calico), else the default.
      const configured = flagGraceMs === undefined ? await configuredLeakGraceMs(store) : undefined;
      if (configured === 0) {
        process.stderr.write(
          "ocelot: ipam gc: off: the KubeControllersConfiguration's controllers.node.leakGracePeriod is 0 (--leak-grace overrides it)\n",
        );
        return;
      }
      const leakGraceMs = flagGraceMs ?? configured ?? DEFAULT_LEAK_GRACE_MS;
      const r = await runGcPass(ipam, {
        leakGraceMs,
        emptyBlockGraceMs,
        dryRun: opts.dryRun,
        ...ipamProgress(opts),
      });
      if (opts.json) print(opts.once ? JSON.stringify(r, null, 2) : JSON.stringify(r));
      else printPass(r);
    };
    if (opts.once) {
      try {
        return await pass();
      } catch (err) {
        if (err instanceof GcConflictError) throw new CliError(err.message);
        throw err;
      }
    }
    // A loop until SIGTERM or SIGINT; a failed pass (datastore away, a concurrent pass) is
    // reported and the next one tried after the interval.
    let stop = false;
    let wake: (() => void) | undefined;
    const onSignal = () => {
      stop = true;
      wake?.();
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    try {
      while (!stop) {
        try {
          await pass();
        } catch (err) {
          if (!(err instanceof GcConflictError || err instanceof UnavailableError)) throw err;
          process.stderr.write(`ocelot: ipam gc: ${err.message}\n`);
        }
        if (stop) break;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, intervalMs);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        wake = undefined;
      }
    } finally {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
    }
  });
}

/** controllers.node.leakGracePeriod of the KubeControllersConfiguration `default`, if set. */
async function configuredLeakGraceMs(store: Datastore): Promise<number | undefined> {
  const info = kindOf("projectcalico.org/v3", "KubeControllersConfiguration");
  if (!info) return undefined;
  const kcc = await new ResourceClient(store).get(info, "default");
  return kcc ? kubeControllersSettings(kcc.spec).leakGraceMs : undefined;
}

function parseBool(v: string): boolean {
  if (v === "true") return true;
  if (v === "false") return false;
  throw new CliError(`--strictaffinity must be true or false, got "${v}"`, 2);
}

function parseCount(v: string): number {
  if (!/^\d+$/.test(v))
    throw new CliError(`--maxblocksperhost must be a whole number >= 0, got "${v}"`, 2);
  return Number(v);
}

async function configure(
  opts: Opts & { strictaffinity?: string; maxblocksperhost?: string },
): Promise<void> {
  const change: { strictAffinity?: boolean; maxBlocksPerHost?: number } = {};
  if (opts.strictaffinity !== undefined) change.strictAffinity = parseBool(opts.strictaffinity);
  if (opts.maxblocksperhost !== undefined)
    change.maxBlocksPerHost = parseCount(opts.maxblocksperhost);
  await withIpam(opts, async (ipam) => {
    const cfg =
      Object.keys(change).length > 0 ? await ipam.setConfig(change) : await ipam.getConfig();
    if (opts.json) return print(JSON.stringify(cfg, null, 2));
    print(`StrictAffinity: ${cfg.strictAffinity}`);
    print(
      `MaxBlocksPerHost: ${cfg.maxBlocksPerHost === 0 ? "0 (unlimited)" : cfg.maxBlocksPerHost}`,
    );
    print(`AutoAllocateBlocks: ${cfg.autoAllocateBlocks}`);
  });
}

export function register(program: Command): void {
  const ipam = program
    .command("ipam")
    .description("IP address management: usage, leaks, release, configuration");
  const json = () => new Option("--json", "print JSON");
  addDatastoreOptions(
    ipam
      .command("show")
      .description("pool usage, blocks with their affinity and usage, or who holds an address")
      .option("--show-blocks", "list every block under its pool")
      .option("--ip <addr>", "show who holds this address")
      .addOption(json()),
  ).action((o) => show(o));
  addDatastoreOptions(
    ipam
      .command("check")
      .description("find leaked addresses, blocks of missing nodes and empty handles")
      .option("-o, --output <file>", "write the report (JSON) to this file")
      .option("--progress", "progress lines on stderr also when it is not a terminal", false)
      .addOption(json()),
  ).action((o) => check(o));
  addDatastoreOptions(
    ipam
      .command("release")
      .description("release one address, or every leaked address of a check report")
      .option("--ip <addr>", "the address to release")
      .option("--from-report <file>", "a report written by `ocelot ipam check -o`")
      .option(
        "--force",
        "release from a report although it or the datastore is not locked (never across clusters)",
      )
      .addOption(json()),
  ).action((o) => release(o));
  const minutes = (ms: number) => `${ms / 60_000}m`;
  addDatastoreOptions(
    ipam
      .command("gc")
      .description(
        "release addresses seen leaked on two passes a grace apart, empty blocks, and the affinities of nodes that are gone",
      )
      .option("--once", "one pass, then exit")
      .option("--interval <duration>", "time between passes", "60s")
      .option(
        "--leak-grace <duration>",
        `an address leaked this long (a node gone this long), seen on two passes, is released (default: the KubeControllersConfiguration's controllers.node.leakGracePeriod, else ${minutes(DEFAULT_LEAK_GRACE_MS)})`,
      )
      .option(
        "--empty-block-grace <duration>",
        "a block empty this long goes back to its pool",
        minutes(DEFAULT_EMPTY_BLOCK_GRACE_MS),
      )
      .option("--dry-run", "print what would be released; change nothing")
      .option("--progress", "progress lines on stderr also when it is not a terminal", false)
      .addOption(json()),
  ).action((o) => gc(o));
  addDatastoreOptions(
    ipam
      .command("configure")
      .description("show or change the IPAM configuration")
      .option("--strictaffinity <bool>", "true: never borrow addresses from other nodes' blocks")
      .option("--maxblocksperhost <n>", "blocks a node may claim per address family (0 = no limit)")
      .addOption(json()),
  ).action((o) => configure(o));
}
