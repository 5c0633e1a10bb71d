// Watch fan-out through etcd's gRPC proxy (the role Typha plays for Calico): N simulated nodes,
// each the node daemon's datastore client (EtcdDatastore) and watch set (PrefixCache over
// nodeWatchPrefixes, as `ocelot node run` lists and watches; no data plane, no speaker), run
// directly against one etcd 3.4 and through one `etcd grpc-proxy`. For each N it prints, side by
// side: the watch streams and watchers the etcd server holds (its /metrics), etcd's RSS and CPU
// seconds over the run, and the time from a change (a new IPPool written to etcd) until each node
// has it in its cache, p50/p99 over nodes and changes, and until all N have it (median over
// changes). The test in test/datastore/watch_fanout.etcd.test.ts runs it with 50 nodes.
// Run: npx tsx bench/watch_fanout.ts [--n 100,1000] [--changes 10]
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { get as httpGet } from "node:http";
import { loadavg } from "node:os";
import { join } from "node:path";
import { EtcdDatastore } from "../src/datastore/etcd.js";
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

export interface FanoutResult {
  n: number;
  via: "direct" | "proxy";
  streams: number;
  watchers: number;
  etcdRssMb: number;
  etcdCpuSec: number;
  /** Per node and change, ms from the write to the node's cache holding it. */
  p50: number;
  p99: number;
  /** Median over changes of the time until all N had the change. */
  allMedian: number;
  startSec: number;
}

const quantile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;

/**
 * Starts n simulated nodes against `endpoint` (the server or a proxy in front of it), then writes
 * `changes` IPPools to the server, one after the other, each waited for until all n caches hold
 * it (at most limitMs each). Everything started here is closed before it returns.
 */
export async function runFanout(
  server: EtcdServer,
  endpoint: string,
  via: "direct" | "proxy",
  n: number,
  changes: number,
  limitMs = 120_000,
): Promise<FanoutResult> {
  const tag = `${via}-${n}-${process.pid}`;
  const poolsPrefix = nodeWatchPrefixes().pools;
  const writer = await EtcdDatastore.connect({ endpoints: [server.endpoint] });
  const caches: PrefixCache[] = [];
  const stores: EtcdDatastore[] = [];
  const usage0 = procUsage(server.pid);
  const waiting = new Map<string, { t0: number; left: number; seen: number[]; done(): void }>();
  try {
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(25, n) }, async () => {
        while (next < n) {
          next++;
          const store = await EtcdDatastore.connect({ endpoints: [endpoint] });
          stores.push(store);
          const seenHere = new Set<string>();
          const cache: PrefixCache = new PrefixCache(store, Object.values(nodeWatchPrefixes()), {
            onChange(prefix) {
              if (prefix !== poolsPrefix || waiting.size === 0) return;
              for (const [key, w] of waiting) {
                if (seenHere.has(key)) continue;
                if (!cache.values(poolsPrefix).some((kv) => kv.key === key)) continue;
                seenHere.add(key);
                w.seen.push(performance.now() - w.t0);
                if (--w.left === 0) w.done();
              }
            },
          });
          caches.push(cache);
          await cache.start();
        }
      }),
    );
    const startSec = (performance.now() - t0) / 1000;
    const lat: number[] = [];
    const alls: number[] = [];
    for (let c = 0; c < changes; c++) {
      const key = `${poolsPrefix}fanout-${tag}-${c}`;
      const w = {
        t0: 0,
        left: n,
        seen: [] as number[],
        done: () => {},
      };
      const all = new Promise<void>((resolve, reject) => {
        const t = setTimeout(
          () =>
            reject(new Error(`${n - w.left} of ${n} nodes saw change ${c} within ${limitMs} ms`)),
          limitMs,
        );
        w.done = () => {
          clearTimeout(t);
          resolve();
        };
      });
      waiting.set(key, w);
      w.t0 = performance.now();
      await writer.update(
        key,
        JSON.stringify({
          apiVersion: "projectcalico.org/v3",
          kind: "IPPool",
          metadata: { name: `fanout-${c}` },
          spec: { cidr: `10.${100 + (c % 100)}.0.0/16`, disabled: true },
        }),
      );
      await all;
      waiting.delete(key);
      lat.push(...w.seen);
      alls.push(Math.max(...w.seen));
    }
    // Read after the changes: every node's watches were created on the server by then (a watch
    // call returns before its stream is set up).
    const gauges = await steadyGauges(server);
    const usage1 = procUsage(server.pid);
    lat.sort((a, b) => a - b);
    alls.sort((a, b) => a - b);
    return {
      n,
      via,
      ...gauges,
      etcdRssMb: usage1.rss / 2 ** 20,
      etcdCpuSec: usage1.cpuSec - usage0.cpuSec,
      p50: quantile(lat, 0.5),
      p99: quantile(lat, 0.99),
      allMedian: quantile(alls, 0.5),
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
  return (
    `N=${String(r.n).padStart(5)} ${r.via.padEnd(6)} server: ${String(r.streams).padStart(6)} watch streams, ` +
    `${String(r.watchers).padStart(6)} watchers, RSS ${r.etcdRssMb.toFixed(0)} MB, CPU ${r.etcdCpuSec.toFixed(1)} s | ` +
    `change seen p50 ${r.p50.toFixed(1)} ms p99 ${r.p99.toFixed(1)} ms, all N ${r.allMedian.toFixed(1)} ms | start ${r.startSec.toFixed(1)} s`
  );
}

async function main(): Promise<void> {
  const sizes = (arg("--n") ?? "100,1000").split(",").map(Number);
  const changes = Number(arg("--changes") ?? 10);
  console.log(
    `sizes ${sizes.join(", ")}; ${changes} changes each; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );
  for (const n of sizes) {
    // A fresh etcd per row, so RSS and CPU are this row's.
    for (const via of ["direct", "proxy"] as const) {
      const server = await startEtcd();
      let proxy: EtcdProxy | undefined;
      try {
        if (via === "proxy") proxy = await startGrpcProxy(server.endpoint, server.dataDir);
        const r = await runFanout(
          server,
          proxy?.endpoint ?? server.endpoint,
          via,
          n,
          changes,
          600_000,
        );
        console.log(row(r));
      } finally {
        await proxy?.stop();
        await server.stop();
      }
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
