// Watch fan-out through etcd's gRPC proxy (the role Typha plays for Calico): N simulated nodes,
// each the node daemon's datastore client (EtcdDatastore) and watch set (PrefixCache over
// nodeWatchPrefixes, as `ocelot node run` lists and watches: every prefix the same for all
// nodes, block affinities included; no data plane, no speaker), run directly against one etcd
// 3.4, through one `etcd grpc-proxy` and through two (node i uses proxy i mod 2). For each N it
// prints, side by side: the watch streams and watchers the etcd server holds (its /metrics),
// etcd's RSS and CPU seconds over the row (and the proxies'), and the time from a change written
// to etcd until each node has it in its cache, p50/p99 over nodes and changes, and until all N
// have it (median over changes). The changes rotate through the kinds of issue 20: a new IPPool, a BGPPeer, a
// node joining (its Node resource), a block claimed (a block affinity of a new node). Every row
// is bounded in time: a row whose N nodes have not all started within --start-limit seconds
// is reported as such (how many started, what the server held then) and measures no change.
// With --baseline DIR each row also runs with the datastore client of another build (DIR's
// dist/datastore/etcd.js, e.g. /work/main's: one gRPC stream per watch before etcd_watch_mux.ts),
// before this tree's build (dist/, `node scripts/build.mjs` first; one stream per node for all
// its watches), each on a fresh etcd.
// The test in test/datastore/watch_fanout.etcd.test.ts runs it with 50 nodes.
// Run: npx tsx bench/watch_fanout.ts [--n 100,1000,5000] [--changes 12] [--via direct,proxy,proxy2]
//      [--start-limit 600] [--changes-at 5000=4] [--baseline /work/main [--after-first]]
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { get as httpGet } from "node:http";
import { loadavg } from "node:os";
import { join } from "node:path";
import { EtcdDatastore, type EtcdOptions } from "../src/datastore/etcd.js";
import type { Datastore } from "../src/datastore/types.js";
import { IpamKeys } from "../src/ipam/records.js";
import { PrefixCache } from "../src/node/cache.js";
import { nodeWatchPrefixes } from "../src/node/daemon.js";
import { ETCD_BIN, type EtcdServer, freePort, startEtcd } from "../test/helpers/etcd.js";

export interface EtcdProxy {
  endpoint: string;
  pid: number;
  stop(): Promise<void>;
}

/** Starts `etcd grpc-proxy start` in front of endpoint and waits until a client gets through. */
export async function startGrpcProxy(endpoint: string, logDir: string): Promise<EtcdProxy> {
  const port = await freePort();
  const log = openSync(join(logDir, `grpc-proxy-${port}.log`), "a");
  const child: ChildProcess = spawn(
    ETCD_BIN,
    ["grpc-proxy", "start", `--endpoints=${endpoint}`, `--listen-addr=127.0.0.1:${port}`],
    { stdio: ["ignore", log, log] },
  );
  closeSync(log);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((r) => child.once("exit", () => r()));
    try {
      process.kill(child.pid as number, "SIGTERM");
    } catch {}
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    try {
      if (child.exitCode === null) process.kill(child.pid as number, "SIGKILL");
    } catch {}
  };
  const proxy = { endpoint: `127.0.0.1:${port}`, pid: child.pid as number, stop };
  try {
    const probe = await EtcdDatastore.connect({
      endpoints: [proxy.endpoint],
      dialTimeoutMs: 60_000,
    });
    await probe.close();
  } catch (err) {
    await stop();
    throw err;
  }
  return proxy;
}

function fetchText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { timeout: 60_000 }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => {
        body += d.toString();
      });
      res.on("end", () => resolve(body));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on("error", reject);
  });
}

/** The server's watch gauges from its /metrics. */
export async function watchGauges(
  server: EtcdServer,
): Promise<{ streams: number; watchers: number }> {
  const text = await fetchText(`http://${server.endpoint}/metrics`);
  const gauge = (name: string) => {
    const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
    if (!m) throw new Error(`etcd /metrics has no ${name}`);
    return Number(m[1]);
  };
  return {
    streams: gauge("etcd_debugging_mvcc_watch_stream_total"),
    watchers: gauge("etcd_debugging_mvcc_watcher_total"),
  };
}

/** The gauges once two readings 500 ms apart agree (watches still being set up settle), at most 60 s. */
async function steadyGauges(server: EtcdServer): Promise<{ streams: number; watchers: number }> {
  let g = await watchGauges(server);
  for (let i = 0; i < 120; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const next = await watchGauges(server);
    if (next.streams === g.streams && next.watchers === g.watchers) return next;
    g = next;
  }
  return g;
}

/** RSS (bytes) and CPU seconds (user + system) of a process, from /proc. */
export function procUsage(pid: number): { rss: number; cpuSec: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15)
  return { rss: rssKb * 1024, cpuSec: ticks / 100 };
}

/** How the nodes reach etcd: the server itself, one proxy, two proxies. */
export type Via = "direct" | "proxy" | "proxy2";

/** The datastore client the simulated nodes run: this tree's, or another build's (--baseline). */
export interface FanoutClient {
  label: string;
  connect(opts: EtcdOptions): Promise<Datastore>;
}
export const THIS_CLIENT: FanoutClient = {
  label: "this tree",
  connect: (opts) => EtcdDatastore.connect(opts),
};

/** The EtcdDatastore of another build (its dist/datastore/etcd.js), for a before/after row. */
export async function buildClient(dir: string, label = dir): Promise<FanoutClient> {
  if (!existsSync(join(dir, "dist/datastore/etcd.js")))
    throw new Error(`No build at ${dir}/dist (run node scripts/build.mjs there)`);
  const mod = (await import(join(dir, "dist/datastore/etcd.js"))) as {
    EtcdDatastore: { connect(opts: EtcdOptions): Promise<Datastore> };
  };
  return { label, connect: (opts) => mod.EtcdDatastore.connect(opts) };
}

export interface FanoutResult {
  n: number;
  via: Via;
  /** Which datastore client the nodes ran (FanoutClient.label). */
  client: string;
  /** Nodes started (n unless the start limit cut the row short). */
  started: number;
  streams: number;
  watchers: number;
  etcdRssMb: number;
  etcdCpuSec: number;
  /** The proxies' RSS (largest) and CPU seconds (all together) over the row; 0 directly. */
  proxyRssMb: number;
  proxyCpuSec: number;
  /** Per node and change, ms from the write to the node's cache holding it. */
  p50: number;
  p99: number;
  /** Median over changes of the time until all N had the change. */
  allMedian: number;
  /** The slowest change's time until all N had it. */
  allMax: number;
  changes: number;
  startSec: number;
}

const quantile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;

/** The kinds of change of issue 20, in turn: a key under one of the watched prefixes, a value. */
export const CHANGE_KINDS = ["pool", "peer", "node", "block"] as const;
export type ChangeKind = (typeof CHANGE_KINDS)[number];

function changeOf(
  kind: ChangeKind,
  name: string,
  c: number,
): { prefix: string; key: string; value: string } {
  const p = nodeWatchPrefixes();
  const resource = (kindName: string, spec: object) =>
    JSON.stringify({
      apiVersion: "projectcalico.org/v3",
      kind: kindName,
      metadata: { name },
      spec,
    });
  switch (kind) {
    case "pool":
      return {
        prefix: p.pools,
        key: `${p.pools}${name}`,
        value: resource("IPPool", { cidr: `10.${100 + (c % 100)}.0.0/16`, disabled: true }),
      };
    case "peer":
      return {
        prefix: p.bgppeers,
        key: `${p.bgppeers}${name}`,
        value: resource("BGPPeer", { peerIP: `192.0.2.${1 + (c % 250)}`, asNumber: 64512 }),
      };
    case "node":
      return {
        prefix: p.nodes,
        key: `${p.nodes}${name}`,
        value: resource("Node", { bgp: { ipv4Address: `198.51.100.${1 + (c % 250)}/24` } }),
      };
    case "block": {
      // A new node's first block: its affinity, under the prefix every node watches (overlay).
      const cidr = { family: 4 as const, text: `10.96.${c % 256}.0-26` };
      return {
        prefix: p.affinities,
        key: `${new IpamKeys().affinityPrefix(name, cidr.family)}${cidr.text}`,
        value: JSON.stringify({ state: "confirmed", deleted: false }),
      };
    }
  }
}

/**
 * Starts n simulated nodes, node i against endpoints[i mod length] (the server, or proxies in
 * front of it), then writes `changes` changes to the server (the kinds in turn), one after the
 * other, each waited for until all n caches hold it (at most limitMs each). When the n nodes
 * have not all started within startLimitMs, no change is written and the row says how many
 * did. Everything started here is closed before it returns.
 */
export async function runFanout(
  server: EtcdServer,
  endpoints: string[],
  via: Via,
  n: number,
  changes: number,
  limitMs = 120_000,
  startLimitMs = 3_600_000,
  proxyPids: number[] = [],
  client: FanoutClient = THIS_CLIENT,
): Promise<FanoutResult> {
  const tag = `${via}-${n}-${process.pid}`;
  const writer = await EtcdDatastore.connect({ endpoints: [server.endpoint] });
  const caches: PrefixCache[] = [];
  const stores: Datastore[] = [];
  const usage0 = procUsage(server.pid);
  const proxy0 = proxyPids.map(procUsage);
  const waiting = new Map<
    string,
    { prefix: string; t0: number; left: number; seen: number[]; done(): void }
  >();
  try {
    const t0 = performance.now();
    const startBy = t0 + startLimitMs;
    let next = 0;
    let started = 0;
    await Promise.all(
      Array.from({ length: Math.min(25, n) }, async () => {
        while (next < n && performance.now() < startBy) {
          const i = next++;
          const store = await client.connect({
            endpoints: [endpoints[i % endpoints.length] as string],
            dialTimeoutMs: 60_000,
          });
          stores.push(store);
          const seenHere = new Set<string>();
          const cache: PrefixCache = new PrefixCache(store, Object.values(nodeWatchPrefixes()), {
            onChange(prefix) {
              if (waiting.size === 0) return;
              for (const [key, w] of waiting) {
                if (w.prefix !== prefix || seenHere.has(key)) continue;
                if (!cache.values(prefix).some((kv) => kv.key === key)) continue;
                seenHere.add(key);
                w.seen.push(performance.now() - w.t0);
                if (--w.left === 0) w.done();
              }
            },
          });
          caches.push(cache);
          await cache.start();
          started++;
        }
      }),
    );
    const startSec = (performance.now() - t0) / 1000;
    const lat: number[] = [];
    const alls: number[] = [];
    const toWrite = started === n ? changes : 0;
    for (let c = 0; c < toWrite; c++) {
      const kind = CHANGE_KINDS[c % CHANGE_KINDS.length] as ChangeKind;
      const change = changeOf(kind, `fanout-${tag}-${c}`, c);
      const w = { prefix: change.prefix, t0: 0, left: n, seen: [] as number[], done: () => {} };
      const all = new Promise<void>((resolve, reject) => {
        const t = setTimeout(
          () =>
            reject(
              new Error(
                `${n - w.left} of ${n} nodes saw change ${c} (${kind}) within ${limitMs} ms`,
              ),
            ),
          limitMs,
        );
        w.done = () => {
          clearTimeout(t);
          resolve();
        };
      });
      waiting.set(change.key, w);
      w.t0 = performance.now();
      await writer.update(change.key, change.value);
      await all;
      waiting.delete(change.key);
      lat.push(...w.seen);
      alls.push(Math.max(...w.seen));
    }
    // Read after the changes: every node's watches were created on the server by then (a watch
    // call returns before its stream is set up).
    const gauges = await steadyGauges(server);
    const usage1 = procUsage(server.pid);
    const proxy1 = proxyPids.map(procUsage);
    lat.sort((a, b) => a - b);
    alls.sort((a, b) => a - b);
    return {
      n,
      via,
      client: client.label,
      started,
      ...gauges,
      etcdRssMb: usage1.rss / 2 ** 20,
      etcdCpuSec: usage1.cpuSec - usage0.cpuSec,
      proxyRssMb: Math.max(0, ...proxy1.map((u) => u.rss / 2 ** 20)),
      proxyCpuSec: proxy1.reduce((a, u, i) => a + u.cpuSec - (proxy0[i]?.cpuSec ?? 0), 0),
      p50: quantile(lat, 0.5),
      p99: quantile(lat, 0.99),
      allMedian: quantile(alls, 0.5),
      allMax: alls.at(-1) ?? 0,
      changes: toWrite,
      startSec,
    };
  } finally {
    await Promise.all(caches.map((c) => c.close().catch(() => {})));
    await Promise.all(stores.map((s) => s.close().catch(() => {})));
    await writer.close();
  }
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function row(r: FanoutResult): string {
  const server =
    `N=${String(r.n).padStart(5)} ${r.via.padEnd(6)} ${r.client.padEnd(9)} server: ${String(r.streams).padStart(6)} watch streams, ` +
    `${String(r.watchers).padStart(6)} watchers, RSS ${r.etcdRssMb.toFixed(0)} MB, CPU ${r.etcdCpuSec.toFixed(1)} s | ` +
    (r.proxyRssMb > 0
      ? `proxies: RSS ${r.proxyRssMb.toFixed(0)} MB (largest), CPU ${r.proxyCpuSec.toFixed(1)} s | `
      : "");
  if (r.started < r.n)
    return `${server}only ${r.started} of ${r.n} nodes started within ${r.startSec.toFixed(0)} s: no change measured`;
  return (
    server +
    `${r.changes} changes seen p50 ${r.p50.toFixed(1)} ms p99 ${r.p99.toFixed(1)} ms, all N ${r.allMedian.toFixed(1)} ms (max ${r.allMax.toFixed(1)}) | ` +
    `start ${r.startSec.toFixed(1)} s | load ${loadavg()[0]?.toFixed(1)}`
  );
}

async function main(): Promise<void> {
  const sizes = (arg("--n") ?? "100,1000").split(",").map(Number);
  const changes = Number(arg("--changes") ?? 12);
  // Fewer changes for the large sizes: "--changes-at 5000=4,1000=8".
  const changesAt = new Map(
    (arg("--changes-at") ?? "")
      .split(",")
      .filter(Boolean)
      .map((kv) => kv.split("=").map(Number) as [number, number]),
  );
  const vias = (arg("--via") ?? "direct,proxy,proxy2").split(",") as Via[];
  const startLimitMs = Number(arg("--start-limit") ?? 600) * 1000;
  const baseline = arg("--baseline");
  const clients = baseline
    ? // Both from a build (dist/), so that they differ only in their code: run
      // `node scripts/build.mjs` here first.
      [await buildClient(baseline, "before"), await buildClient(process.cwd(), "after")]
    : [THIS_CLIENT];
  // --after-first: this tree's row before the baseline's (to tell order from effect).
  if (process.argv.includes("--after-first")) clients.reverse();
  console.log(
    `sizes ${sizes.join(", ")}; ${changes} changes each (${CHANGE_KINDS.join(", ")} in turn); ` +
      `${Object.values(nodeWatchPrefixes()).length} watched prefixes per node; start limit ` +
      `${startLimitMs / 1000} s; clients ${clients.map((c) => c.label).join(", ")}${baseline ? ` (before: ${baseline}/dist)` : ""}; load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(" ")}`,
  );
  for (const n of sizes) {
    // A fresh etcd per row, so RSS and CPU are this row's.
    for (const via of vias)
      for (const client of clients) {
        const server = await startEtcd();
        const proxies: EtcdProxy[] = [];
        try {
          for (let k = via === "proxy2" ? 2 : via === "proxy" ? 1 : 0; k > 0; k--)
            proxies.push(await startGrpcProxy(server.endpoint, server.dataDir));
          const r = await runFanout(
            server,
            proxies.length ? proxies.map((p) => p.endpoint) : [server.endpoint],
            via,
            n,
            changesAt.get(n) ?? changes,
            600_000,
            startLimitMs,
            proxies.map((p) => p.pid),
            client,
          );
          console.log(row(r));
        } finally {
          for (const p of proxies) await p.stop();
          await server.stop();
        }
      }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
