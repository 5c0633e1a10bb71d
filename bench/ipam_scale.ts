// IPAM at cluster scale: a /12 pool with N nodes' blocks claimed and A allocations held by
// WorkloadEndpoints (written directly as the block, affinity, Node and WorkloadEndpoint records
// IpamStore and the CNI plugin write), on the embedded store and on etcd 3.4. Prints, beside a
// 3-node pool in the same run: a CNI-equivalent assignment's p50/p99 (a fresh IpamStore per ADD,
// as the plugin makes one per process) and their ratio (goal <= 1.2x); the wall time of
// `ocelot ipam check` and `ocelot ipam gc --once --dry-run` (goal <= 10 s); and that deleting one
// Node releases its block and no other block or affinity changes. The test in
// test/ipam/scale.test.ts runs the same functions at a small size.
// Run: npx tsx bench/ipam_scale.ts [--nodes 5000] [--allocations 100000] [--only sqlite|etcd]
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteDatastore } from "../src/datastore/sqlite.js";
import type { Datastore } from "../src/datastore/types.js";
import { assignFromBlock, encodeBlock, hostAffinity, newBlock } from "../src/ipam/block.js";
import { runGcPass } from "../src/ipam/gc_run.js";
import { encodeAffinity, IpamKeys } from "../src/ipam/records.js";
import { IpamStore } from "../src/ipam/store.js";
import { type Cidr, formatAddress, parseCidr } from "../src/lib/ip.js";
import { etcdUnavailableReason, startEtcd } from "../test/helpers/etcd.js";

export const POOL_CIDR = "10.64.0.0/12";
const BLOCK_BITS = 26;
const NAMESPACE = "scale";

export interface SeededCluster {
  nodes: string[];
  allocations: number;
  /** Block CIDR text of each node (one block per node). */
  blockOf: Map<string, string>;
}

/** Runs fn over items with at most `width` calls in flight. */
export async function inParallel<T>(
  items: readonly T[],
  width: number,
  fn: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

const nodeName = (i: number) => `node-${String(i).padStart(5, "0")}`;

function nodeResource(name: string): string {
  return JSON.stringify({
    apiVersion: "projectcalico.org/v3",
    kind: "Node",
    metadata: { name },
    spec: {},
  });
}

function wepResource(name: string, node: string, address: string): string {
  return JSON.stringify({
    apiVersion: "projectcalico.org/v3",
    kind: "WorkloadEndpoint",
    metadata: { name, namespace: NAMESPACE },
    spec: { node, orchestrator: "k8s", pod: name, endpoint: "eth0", ipNetworks: [`${address}/32`] },
  });
}

/**
 * Writes the pool, `nodes` Node resources each with one confirmed /26 block (the records
 * IpamStore.claimBlock leaves: a confirmed affinity and a block with the host affinity), and
 * `allocations` addresses spread evenly over them, each held by one WorkloadEndpoint.
 */
export async function seedCluster(
  store: Datastore,
  opts: { nodes: number; allocations: number; width?: number },
): Promise<SeededCluster> {
  const keys = new IpamKeys();
  const pool = parseCidr(POOL_CIDR);
  const perNode = Math.ceil(opts.allocations / opts.nodes);
  const blockAddrs = 2 ** (32 - BLOCK_BITS);
  if (perNode > blockAddrs) throw new Error(`${perNode} allocations per node exceed a /26`);
  if (opts.nodes > 2 ** (BLOCK_BITS - pool.prefixLen)) throw new Error("Too many nodes for pool");
  await store.update(
    `${keys.resources("ippools")}scale`,
    JSON.stringify({
      apiVersion: "projectcalico.org/v3",
      kind: "IPPool",
      metadata: { name: "scale" },
      spec: { cidr: POOL_CIDR, blockSize: BLOCK_BITS },
    }),
  );
  const nodes = Array.from({ length: opts.nodes }, (_, i) => nodeName(i));
  const blockOf = new Map<string, string>();
  let left = opts.allocations;
  const claimTime = new Date().toISOString();
  const writes: Array<[string, string]> = [];
  nodes.forEach((node, i) => {
    const cidr: Cidr = {
      family: 4,
      base: pool.base + BigInt(i * blockAddrs),
      prefixLen: BLOCK_BITS,
    };
    const text = `${formatAddress(4, cidr.base)}/${BLOCK_BITS}`;
    blockOf.set(node, text);
    let block = newBlock(cidr, hostAffinity(node), claimTime);
    const here = Math.min(perNode, left);
    left -= here;
    for (let j = 0; j < here; j++) {
      const pod = `pod-${i}-${j}`;
      const handleId = `k8s-pod-network.${pod}`;
      const r = assignFromBlock(block, 1, {
        handleId,
        secondary: { namespace: NAMESPACE, pod, node },
      });
      block = r.block;
      const address = formatAddress(4, cidr.base + BigInt(r.assigned[0]?.ordinal ?? 0));
      writes.push([
        `${keys.resources("workloadendpoints")}${NAMESPACE}/${pod}`,
        wepResource(pod, node, address),
      ]);
    }
    writes.push([keys.block(cidr), encodeBlock(block)]);
    writes.push([
      keys.affinity(node, cidr),
      encodeAffinity({ state: "confirmed", node, cidr: text }),
    ]);
    writes.push([`${keys.resources("nodes")}${node}`, nodeResource(node)]);
  });
  await inParallel(writes, opts.width ?? 64, ([k, v]) => store.update(k, v));
  return { nodes, allocations: opts.allocations, blockOf };
}

export interface Latency {
  p50: number;
  p99: number;
  n: number;
  /** Every sample, ms. */
  samples: number[];
}

const quantile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;

/**
 * `n` CNI-equivalent ADDs, one at a time, round robin over `nodes`: each a fresh IpamStore on the
 * open store (as the plugin opens one per process) assigning one IPv4 address; each is released
 * again after it is timed (not timed), so the blocks stay as seeded.
 */
export async function measureAssign(
  store: Datastore,
  nodes: readonly string[],
  n: number,
  tag: string,
): Promise<Latency> {
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const node = nodes[i % nodes.length] as string;
    const handleId = `bench-${tag}-${i}`;
    const t0 = performance.now();
    const got = await new IpamStore(store).autoAssign({ handleId, node, num4: 1, num6: 0 });
    lat.push(performance.now() - t0);
    if (got.length !== 1 || got[0]?.borrowed)
      throw new Error(`Assignment on ${node} gave ${JSON.stringify(got)}`);
    await new IpamStore(store).releaseByHandle(handleId, node);
  }
  return summarize(lat);
}

function summarize(lat: number[]): Latency {
  const sorted = [...lat].sort((a, b) => a - b);
  return { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), n: lat.length, samples: lat };
}

export interface CliRun {
  /** Wall time. */
  ms: number;
  /** CPU time of the command (user + system, from the shell's `times`): what load does not inflate. */
  cpuMs: number;
  stdout: string;
}

/** Runs bin/ocelot with args against url and times it; throws on a non-zero exit. */
export function timeCli(
  url: string,
  args: string[],
  limitMs: number,
  ocelotBin = join(import.meta.dirname, "..", "bin", "ocelot"),
): CliRun {
  const t0 = performance.now();
  // bash runs it and then prints its children's CPU time (`times`, last line: user system).
  const r = spawnSync(
    "bash",
    [
      "-c",
      '"$@" || exit $?; times >&2',
      "ocelot",
      process.execPath,
      ocelotBin,
      ...args,
      "--datastore",
      url,
    ],
    { encoding: "utf8", timeout: limitMs, maxBuffer: 256 * 1024 * 1024 },
  );
  const ms = performance.now() - t0;
  if (r.error || r.status !== 0)
    throw new Error(
      `ocelot ${args.join(" ")} failed (${r.error?.message ?? r.status}): ${r.stderr}`,
    );
  const last = r.stderr.trim().split("\n").at(-1) ?? "";
  const secs = [...last.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  return { ms, cpuMs: ((secs[0] ?? 0) + (secs[1] ?? 0)) * 1000, stdout: r.stdout };
}

export interface NodeDeletion {
  /** GC passes it took until the node's block was gone. */
  passes: number;
  releasedBlock: string;
  /** Blocks or affinities of other nodes whose revision changed or that went (must be empty). */
  othersTouched: string[];
}

/**
 * Deletes one node as Kubernetes would (its Node resource and its pods' WorkloadEndpoints), then
 * runs GC passes (graces 0, at most 4) until its block and affinity are gone; reports any other
 * IPAM key that changed meanwhile.
 */
export async function deleteNodeAndCollect(
  store: Datastore,
  cluster: SeededCluster,
  node: string,
): Promise<NodeDeletion> {
  const keys = new IpamKeys();
  const ipam = new IpamStore(store);
  const prefix = `${keys.prefix}ipam/v2/`;
  const snapshot = async () =>
    new Map((await store.list(prefix)).items.map((kv) => [kv.key, kv.modRevision]));
  const before = await snapshot();
  await store.delete(`${keys.resources("nodes")}${node}`);
  const weps = await store.list(`${keys.resources("workloadendpoints")}${NAMESPACE}/`);
  const marker = `"node":${JSON.stringify(node)}`;
  await inParallel(
    weps.items.filter((kv) => kv.value.includes(marker)),
    32,
    (kv) => store.delete(kv.key),
  );
  const block = cluster.blockOf.get(node) as string;
  const blockKey = keys.block(parseCidr(block));
  const affKey = keys.affinity(node, parseCidr(block));
  let passes = 0;
  for (; passes < 4; ) {
    passes++;
    await runGcPass(ipam, { leakGraceMs: 0, emptyBlockGraceMs: 0 });
    if (!(await store.get(blockKey)) && !(await store.get(affKey))) break;
  }
  const after = await snapshot();
  const othersTouched: string[] = [];
  for (const [k, rev] of before) {
    if (k === blockKey || k === affKey) continue;
    if (after.get(k) !== rev) othersTouched.push(k);
  }
  if ((await store.get(blockKey)) || (await store.get(affKey)))
    throw new Error(`Node ${node}'s block ${block} is still there after ${passes} GC passes`);
  return { passes, releasedBlock: block, othersTouched };
}

// ---- The benchmark ----------------------------------------------------------------------------

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const CLI_GOAL_MS = 10_000;
const RATIO_GOAL = 1.2;

async function scenario(
  label: string,
  open: () => Promise<{ store: Datastore; url: string; close(): Promise<void> }>,
  nodes: number,
  allocations: number,
  samples: number,
): Promise<boolean> {
  let ok = true;
  // The reference: a 3-node pool, in its own store of the same kind.
  const small = await open();
  const big = await open();
  try {
    const ref = await seedCluster(small.store, { nodes: 3, allocations: 60 });
    let t0 = performance.now();
    const seeded = await seedCluster(big.store, { nodes, allocations });
    console.log(
      `${label}: seeded ${nodes} nodes, ${allocations} allocations in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    // Three nodes spread over the big pool, so both runs assign on three nodes.
    const spread = [0, Math.floor(nodes / 2), nodes - 1].map((i) => seeded.nodes[i] as string);
    await measureAssign(small.store, ref.nodes, 50, "warm-a"); // warm-up, not reported
    await measureAssign(big.store, spread, 50, "warm-b");
    // Alternating rounds of 10, so bursts of load on the shared machine hit both alike.
    const aLat: number[] = [];
    const bLat: number[] = [];
    for (let r = 0; r < samples / 10; r++) {
      aLat.push(...(await measureAssign(small.store, ref.nodes, 10, `ref${r}`)).samples);
      bLat.push(...(await measureAssign(big.store, spread, 10, `big${r}`)).samples);
    }
    const { p50: a50, p99: a99 } = summarize(aLat);
    const { p50: b50, p99: b99 } = summarize(bLat);
    const r99 = b99 / a99;
    ok &&= r99 <= RATIO_GOAL;
    console.log(
      `${label}: CNI-equivalent assign (${samples} each)  3 nodes p50 ${a50.toFixed(2)} ms p99 ${a99.toFixed(2)} ms | ` +
        `${nodes} nodes p50 ${b50.toFixed(2)} ms p99 ${b99.toFixed(2)} ms | ratio p50 ${(b50 / a50).toFixed(2)} ` +
        `p99 ${r99.toFixed(2)} (goal <= ${RATIO_GOAL}: ${r99 <= RATIO_GOAL ? "met" : "NOT met"})`,
    );
    const check = timeCli(big.url, ["ipam", "check"], 300_000);
    const checked = /Checked (\d+) blocks, (\d+) allocated/.exec(check.stdout);
    const leaked = /Leaked addresses[^:]*: (\d+)/.exec(check.stdout);
    const gc = timeCli(big.url, ["ipam", "gc", "--once", "--dry-run"], 300_000);
    const released = /Would release (\d+) leaked/.exec(gc.stdout);
    const cliOk =
      checked?.[2] === String(allocations) && leaked?.[1] === "0" && released?.[1] === "0";
    ok &&= cliOk && check.ms <= CLI_GOAL_MS && gc.ms <= CLI_GOAL_MS;
    console.log(
      `${label}: ocelot ipam check ${(check.ms / 1000).toFixed(2)} s (CPU ${(check.cpuMs / 1000).toFixed(2)} s; ${checked?.[1]} blocks, ${checked?.[2]} allocated, ${leaked?.[1]} leaked) | ` +
        `ipam gc --once --dry-run ${(gc.ms / 1000).toFixed(2)} s (CPU ${(gc.cpuMs / 1000).toFixed(2)} s; ${released?.[1]} to release) | goal <= ${CLI_GOAL_MS / 1000} s: ` +
        `${check.ms <= CLI_GOAL_MS && gc.ms <= CLI_GOAL_MS && cliOk ? "met" : "NOT met"}`,
    );
    t0 = performance.now();
    const del = await deleteNodeAndCollect(big.store, seeded, seeded.nodes[1] as string);
    ok &&= del.othersTouched.length === 0;
    console.log(
      `${label}: node deleted: block ${del.releasedBlock} released after ${del.passes} GC passes in ${((performance.now() - t0) / 1000).toFixed(1)} s; ` +
        `other nodes' IPAM keys changed: ${del.othersTouched.length}`,
    );
  } finally {
    await small.close();
    await big.close();
  }
  return ok;
}

async function main(): Promise<void> {
  const nodes = Number(arg("--nodes") ?? 5000);
  const allocations = Number(arg("--allocations") ?? 100_000);
  const samples = Number(arg("--samples") ?? 400);
  const only = arg("--only");
  console.log(
    `nodes=${nodes} allocations=${allocations}; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );
  const dir = mkdtempSync(join(tmpdir(), "ocelot-bench-ipam-scale-"));
  let ok = true;
  let k = 0;
  try {
    if (only === undefined || only === "sqlite") {
      ok =
        (await scenario(
          "embedded (sqlite)",
          async () => {
            const file = join(dir, `store${k++}.db`);
            const store = new SqliteDatastore(file);
            return { store, url: `file:${file}`, close: () => store.close() };
          },
          nodes,
          allocations,
          samples,
        )) && ok;
    }
    if (only === undefined || only === "etcd") {
      const why = etcdUnavailableReason();
      if (why) console.log(`etcd: skipped (${why})`);
      else {
        const { EtcdDatastore } = await import("../src/datastore/etcd.js");
        ok =
          (await scenario(
            "etcd 3.4 (tmpfs)",
            async () => {
              const server = await startEtcd({
                extraArgs: ["--quota-backend-bytes", "8589934592"],
              });
              const store = await EtcdDatastore.connect({ endpoints: [server.endpoint] });
              return {
                store,
                url: server.url,
                close: async () => {
                  await store.close();
                  await server.stop();
                },
              };
            },
            nodes,
            allocations,
            samples,
          )) && ok;
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`goals ${ok ? "met" : "NOT met"}`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
