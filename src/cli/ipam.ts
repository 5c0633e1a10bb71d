// `ocelot ipam show|check|release|configure`: IPAM state from the datastore for operators
// (calicoctl's ipam commands). Owns: option parsing, tables and JSON output, report files.
// Not: allocation logic (src/ipam/) nor the datastore backends (src/datastore/).
import { readFileSync, writeFileSync } from "node:fs";
import { type Command, Option } from "commander";
import { z } from "zod";
import {
  addDatastoreOptions,
  type DatastoreCliOptions,
  openDatastoreFromCli,
} from "../datastore/open.js";
import type { Datastore } from "../datastore/types.js";
import { IpamDataError, inUseCount } from "../ipam/block.js";
import { type CheckReport, checkIpam, REPORT_VERSION } from "../ipam/check.js";
import { cidrContains, cidrSize, formatAddress, formatCidr, parseAddress } from "../ipam/cidr.js";
import { BadSequenceError, IpamStore } from "../ipam/store.js";
import { CliError } from "./main.js";

type Opts = DatastoreCliOptions & { json?: boolean };

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
    if (err instanceof IpamDataError || err instanceof BadSequenceError)
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

async function loadCheckInputs(ipam: IpamStore, store: Datastore) {
  const [blocks, handles, weps, nodes] = await Promise.all([
    ipam.listAllBlocks(),
    ipam.listHandles(),
    store.list(ipam.keys.resources("workloadendpoints")),
    store.list(ipam.keys.resources("nodes")),
  ]);
  const endpointAddresses = new Set<string>();
  for (const kv of weps.items) {
    let nets: unknown;
    try {
      nets = (JSON.parse(kv.value) as { spec?: { ipNetworks?: unknown } }).spec?.ipNetworks;
    } catch (err) {
      throw new CliError(`Invalid WorkloadEndpoint at "${kv.key}": ${(err as Error).message}`);
    }
    for (const n of Array.isArray(nets) ? nets : []) {
      if (typeof n !== "string") continue;
      try {
        const a = parseAddress(n.split("/")[0] ?? "");
        endpointAddresses.add(formatAddress(a.family, a.value));
      } catch {}
    }
  }
  const nodeNames = new Set(nodes.items.map((kv) => kv.key.slice(kv.key.lastIndexOf("/") + 1)));
  return { blocks: blocks.map((b) => b.block), handles, endpointAddresses, nodes: nodeNames };
}

async function check(opts: Opts & { output?: string }): Promise<void> {
  await withIpam(opts, async (ipam, store) => {
    const inputs = await loadCheckInputs(ipam, store);
    const report = checkIpam({ ...inputs, datastore: store.url, now: new Date() });
    if (opts.output) writeFileSync(opts.output, `${JSON.stringify(report, null, 2)}\n`);
    if (opts.json) return print(JSON.stringify(report, null, 2));
    const s = report.summary;
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
    if (opts.output)
      print(
        `Report written to ${opts.output}; release leaks with: ocelot ipam release --from-report ${opts.output}`,
      );
  });
}

const ReportFile = z
  .object({
    version: z.literal(REPORT_VERSION),
    leakedAddresses: z.array(
      z
        .object({
          address: z.string(),
          sequence: z.number().int().nonnegative(),
          handleId: z.string().nullable(),
        })
        .loose(),
    ),
  })
  .loose();

function readReport(file: string): Pick<CheckReport, "leakedAddresses"> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new CliError(`Cannot read report "${file}": ${(err as Error).message}`);
  }
  const r = ReportFile.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new CliError(
      `Report "${file}" is not an ocelot ipam check report: field "${i?.path.join(".")}": ${i?.message}`,
    );
  }
  return r.data as unknown as Pick<CheckReport, "leakedAddresses">;
}

async function release(opts: Opts & { ip?: string; fromReport?: string }): Promise<void> {
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
  await withIpam(opts, async (ipam) => {
    if (opts.ip !== undefined) {
      const done = await ipam.releaseAddress(opts.ip);
      if (!done) throw new CliError(`IP ${opts.ip} is not assigned`);
      return print(opts.json ? JSON.stringify({ released: [done] }) : `Released ${done}`);
    }
    const released: string[] = [];
    const skipped: Array<{ address: string; reason: string }> = [];
    for (const l of report?.leakedAddresses ?? []) {
      try {
        const done = await ipam.releaseAddress(l.address, l.sequence);
        if (done) released.push(done);
        else skipped.push({ address: l.address, reason: "not assigned any more" });
      } catch (err) {
        if (!(err instanceof BadSequenceError)) throw err;
        skipped.push({ address: l.address, reason: "assigned again since the report" });
      }
    }
    if (opts.json) return print(JSON.stringify({ released, skipped }, null, 2));
    print(`Released ${released.length} addresses`);
    for (const s of skipped) print(`  skipped ${s.address}: ${s.reason}`);
  });
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
      .addOption(json()),
  ).action((o) => check(o));
  addDatastoreOptions(
    ipam
      .command("release")
      .description("release one address, or every leaked address of a check report")
      .option("--ip <addr>", "the address to release")
      .option("--from-report <file>", "a report written by `ocelot ipam check -o`")
      .addOption(json()),
  ).action((o) => release(o));
  addDatastoreOptions(
    ipam
      .command("configure")
      .description("show or change the IPAM configuration")
      .option("--strictaffinity <bool>", "true: never borrow addresses from other nodes' blocks")
      .option("--maxblocksperhost <n>", "blocks a node may claim per address family (0 = no limit)")
      .addOption(json()),
  ).action((o) => configure(o));
}
