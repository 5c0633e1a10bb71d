// Pod start and stop cost: ADD and DEL latency of the real `ocelot-cni` (and `ocelot-ipam`
// alone) in network namespaces, beside Debian's reference plugins run the same way in the same
// run: `host-local` alone (IPAM) and `bridge` + `host-local` (a full reference network), each
// from /usr/lib/cni (package containernetworking-plugins). N pods one at a time (every plugin's
// ADD for pod i, in turn, then every DEL), then P at once per plugin; on the embedded store and
// on etcd 3.4. Prints p50/p99 and the ratio to the reference.
//
// The plugins run as a runtime runs them: exec'd directly, already inside the node's network
// namespace (this file re-runs itself there with --inner), pods in namespaces of their own.
// Run (root): npx tsx bench/cni_latency.ts [--pods 200] [--parallel 20] [--stores file,etcd]
//   [--handoff: also the installed plugins through `ocelot node run`'s CNI hand-off, and alone]
// Bursts through the hand-off only (issue 15): npx tsx bench/cni_latency.ts --bursts 20,50,100
//   [--roots /work/main,.,.@1] [--rounds 2]: per root (a checkout whose bin/ and dist/ are built;
//   `@N`: the daemon's OCELOT_CNI_HANDOFF_MAX_CONCURRENT;
//   alternated, a fresh daemon each time) N ADDs at once then N DELs per burst size, embedded
//   store (`--stores etcd`: etcd 3.4): p50/p99, all done, and the daemon's event-loop delay during each (its
//   ocelot_event_loop_delay_seconds histogram, the worst delay of each second, scraped around it).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { openDatastore } from "../src/datastore/open.js";
import { SqliteDatastore } from "../src/datastore/sqlite.js";
import type { Datastore } from "../src/datastore/types.js";
import { defaultStatusSocket } from "../src/lib/status_socket_path.js";
import { type EtcdServer, etcdUnavailableReason, startEtcd } from "../test/helpers/etcd.js";

const ROOT = new URL("..", import.meta.url).pathname;
const BIN = join(ROOT, "bin");
const REF = "/usr/lib/cni";
const GOAL = { addP50: 150, addP99: 300, delP50: 100, parallelAll: 2000 };

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? (process.argv[i + 1] ?? def) : def;
}

const PODS = Number(arg("--pods", "200"));
const PARALLEL = Number(arg("--parallel", "20"));
const STORES = arg("--stores", "file,etcd").split(",");
/**
 * Also the plugins as `ocelot install-cni` installs them, with `ocelot node run` in the node
 * namespace serving the CNI hand-off ("handoff") and with OCELOT_CNI_HANDOFF=0 ("alone").
 */
const HANDOFF = process.argv.includes("--handoff");
const PREFIX = arg("--prefix", `clb${process.pid.toString(36)}`);
/** Burst sizes of the hand-off-only mode (empty: the ordinary runs). */
const BURSTS = arg("--bursts", "")
  .split(",")
  .filter(Boolean)
  .map((n) => {
    const v = Number(n);
    if (!Number.isInteger(v) || v < 1) throw new Error(`--bursts: ${n} is not a whole number`);
    return v;
  });
/** Checkouts to run the daemon from; `dir@N` sets its OCELOT_CNI_HANDOFF_MAX_CONCURRENT to N. */
const ROOTS = arg("--roots", ROOT)
  .split(",")
  .map((spec) => {
    const [r = "", c = ""] = spec.split("@");
    return { root: r.startsWith("/") ? r : join(process.cwd(), r), c };
  });
const ROUNDS = Number(arg("--rounds", "1"));

/** One plugin as the benchmark runs it: its executable, its network configuration. */
interface Target {
  name: string;
  plugin: string;
  /** Makes a network namespace of its own per pod (full plugins); IPAM alone needs none. */
  wires: boolean;
  conf: Record<string, unknown>;
  /** The row this one's ratio is taken against. */
  reference?: string;
  /** More environment for the plugin. */
  env?: Record<string, string>;
  /** CNI_PATH (default bin/ and the reference plugins). */
  cniPath?: string;
}

interface Ran {
  ms: number;
  code: number | null;
  out: string;
}

function runPlugin(t: Target, command: string, pod: number, netns: string): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const p = spawn(t.plugin, [], {
      env: {
        PATH: process.env.PATH,
        CNI_COMMAND: command,
        CNI_CONTAINERID: `${PREFIX}-${t.name.replace(/[^A-Za-z0-9]/g, "")}-${pod}`,
        CNI_NETNS: netns,
        CNI_IFNAME: "eth0",
        CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-${pod}`,
        CNI_PATH: t.cniPath ?? `${BIN}:${REF}`,
        ...t.env,
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    const timer = setTimeout(() => p.kill("SIGKILL"), 120_000);
    p.on("error", reject);
    p.on("close", (code) => {
      clearTimeout(timer);
      resolve({ ms: Number(process.hrtime.bigint() - start) / 1e6, code, out });
    });
    p.stdin.end(JSON.stringify(t.conf));
  });
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? Number.NaN;
}

interface Row {
  store: string;
  target: string;
  reference?: string;
  add: number[];
  del: number[];
  parAdd: number[];
  parDel: number[];
  parAddAll: number;
  parDelAll: number;
  failures: string[];
}

const podNs = (t: Target, pod: number) => `/run/netns/${PREFIX}-${t.name[0]}${pod}`;

async function measure(store: string, targets: Target[]): Promise<Row[]> {
  const rows = targets.map(
    (t): Row => ({
      store,
      target: t.name,
      reference: t.reference,
      add: [],
      del: [],
      parAdd: [],
      parDel: [],
      parAddAll: 0,
      parDelAll: 0,
      failures: [],
    }),
  );
  const check = (row: Row, r: Ran, what: string) => {
    if (r.code !== 0 && row.failures.length < 3) row.failures.push(`${what}: ${r.out.trim()}`);
  };
  // One at a time, plugins in turn for each pod (so a drift of the machine's load hits all).
  for (const command of ["ADD", "DEL"] as const) {
    for (let i = 0; i < PODS; i++) {
      for (const [k, t] of targets.entries()) {
        const row = rows[k] as Row;
        const r = await runPlugin(t, command, i, podNs(t, i));
        check(row, r, `${command} pod ${i}`);
        (command === "ADD" ? row.add : row.del).push(r.ms);
      }
    }
  }
  // PARALLEL at once, one plugin after the other.
  for (const [k, t] of targets.entries()) {
    const row = rows[k] as Row;
    for (const command of ["ADD", "DEL"] as const) {
      const start = performance.now();
      const rs = await Promise.all(
        Array.from({ length: PARALLEL }, (_, i) => runPlugin(t, command, i, podNs(t, i))),
      );
      const all = performance.now() - start;
      for (const r of rs) check(row, r, `parallel ${command}`);
      if (command === "ADD") {
        row.parAdd = rs.map((r) => r.ms);
        row.parAddAll = all;
      } else {
        row.parDel = rs.map((r) => r.ms);
        row.parDelAll = all;
      }
    }
  }
  return rows;
}

async function putPool(store: Datastore, name: string, cidr: string): Promise<void> {
  await store.update(
    `/ocelot/resources/v3/ippools/${name}`,
    JSON.stringify({
      apiVersion: "projectcalico.org/v3",
      kind: "IPPool",
      metadata: { name },
      spec: { cidr, blockSize: 26 },
    }),
  );
}

function targetsFor(datastore: string, dir: string, withReference: boolean): Target[] {
  const ocelot = (type: string, name: string, reference: string): Target => ({
    name,
    plugin: join(BIN, type),
    wires: type === "ocelot-cni",
    reference,
    conf: {
      cniVersion: "1.0.0",
      name: "k8s-pod-network",
      type: "ocelot-cni",
      datastore,
      nodename: "bench-node",
      mtu: 1450,
      ipam: { type: "ocelot-ipam", ipv4_pools: ["bench-pool"], assign_ipv6: false },
    },
  });
  const out = [
    ocelot("ocelot-cni", "ocelot-cni", "bridge+host-local"),
    ocelot("ocelot-ipam", "ocelot-ipam", "host-local"),
  ];
  if (!withReference) return out;
  return [
    ...out,
    {
      name: "bridge+host-local",
      plugin: join(REF, "bridge"),
      wires: true,
      conf: {
        cniVersion: "1.0.0",
        name: "bench-ref",
        type: "bridge",
        bridge: `${PREFIX.slice(0, 8)}br`,
        isGateway: true,
        ipMasq: false,
        ipam: {
          type: "host-local",
          ranges: [[{ subnet: "10.253.0.0/16" }]],
          dataDir: join(dir, "hl-bridge"),
        },
      },
    },
    {
      name: "host-local",
      plugin: join(REF, "host-local"),
      wires: false,
      conf: {
        cniVersion: "1.0.0",
        name: "bench-hl",
        ipam: {
          type: "host-local",
          ranges: [[{ subnet: "10.252.0.0/16" }]],
          dataDir: join(dir, "hl"),
        },
      },
    },
  ];
}

/** Inside the node's namespace: stores, the runs, the results as JSON on stdout. */
/**
 * The installed plugins (`ocelot install-cni` into binDir's parent) and `ocelot node run` in this
 * (the node's) namespace on the same store, until its cni.sock is there.
 */
async function startHandoffDaemon(
  url: string,
  dir: string,
  bin = BIN,
  metricsAddress?: string,
  maxConcurrent = "",
): Promise<{ binDir: string; stop(): Promise<void> }> {
  const binDir = join(dir, "bin");
  const inst = spawnSync(
    join(bin, "ocelot"),
    ["install-cni", "--bin-dir", binDir, "--conf-dir", join(dir, "net.d"), "--datastore", url],
    { encoding: "utf8", timeout: 120_000 },
  );
  if (inst.status !== 0) throw new Error(`ocelot install-cni: ${inst.stderr}`);
  const daemon = spawn(
    join(bin, "ocelot"),
    [
      ...["node", "run", "--nodename", "bench-node", "--ip", "192.0.2.10/24"],
      ...["--networking-backend", "none", "--datastore", url, "--log-level", "warn"],
      ...(metricsAddress ? ["--metrics-address", metricsAddress] : []),
    ],
    {
      stdio: "ignore",
      env: maxConcurrent
        ? { ...process.env, OCELOT_CNI_HANDOFF_MAX_CONCURRENT: maxConcurrent }
        : process.env,
    },
  );
  const stop = () =>
    new Promise<void>((resolve) => {
      if (daemon.exitCode !== null || daemon.signalCode !== null) return resolve();
      const t = setTimeout(() => daemon.kill("SIGKILL"), 15_000);
      daemon.once("exit", () => {
        clearTimeout(t);
        resolve();
      });
      daemon.kill("SIGTERM");
    });
  const socket = join(dirname(defaultStatusSocket()), "cni.sock");
  const until = Date.now() + 120_000;
  while (!existsSync(socket) || (metricsAddress && !(await scrape(metricsAddress)))) {
    if (daemon.exitCode !== null || Date.now() > until) {
      await stop();
      throw new Error(`ocelot node run: no ${socket} (exit ${daemon.exitCode})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { binDir, stop };
}

/** The installed ocelot-cni launcher: through the daemon, and alone (hand-off off). */
function installedTargets(datastore: string, binDir: string): Target[] {
  const conf = {
    cniVersion: "1.0.0",
    name: "k8s-pod-network",
    type: "ocelot-cni",
    datastore,
    nodename: "bench-node",
    mtu: 1450,
    ipam: { type: "ocelot-ipam", ipv4_pools: ["bench-pool"], assign_ipv6: false },
  };
  const t = (name: string, env?: Record<string, string>): Target => ({
    name,
    plugin: join(binDir, "ocelot-cni"),
    wires: true,
    reference: "bridge+host-local",
    conf,
    cniPath: binDir,
    ...(env ? { env } : {}),
  });
  return [t("handoff"), t("alone", { OCELOT_CNI_HANDOFF: "0" })];
}

/** The daemon's event-loop delay histogram (seconds' worst delays), or undefined if not up. */
interface Eld {
  buckets: Map<number, number>;
  sum: number;
  count: number;
  max: number;
}

async function scrape(address: string): Promise<Eld | undefined> {
  let text: string;
  try {
    const r = await fetch(`http://${address}/metrics`);
    if (!r.ok) return undefined;
    text = await r.text();
  } catch {
    return undefined;
  }
  const eld: Eld = { buckets: new Map(), sum: 0, count: 0, max: 0 };
  for (const line of text.split("\n")) {
    const b = /^ocelot_event_loop_delay_seconds_bucket\{le="([^"]+)"\} (\S+)/.exec(line);
    if (b) eld.buckets.set(Number(b[1]), Number(b[2]));
    const v = /^(ocelot_event_loop_delay_(?:seconds_sum|seconds_count|max_seconds)) (\S+)/.exec(
      line,
    );
    if (v?.[1] === "ocelot_event_loop_delay_seconds_sum") eld.sum = Number(v[2]);
    if (v?.[1] === "ocelot_event_loop_delay_seconds_count") eld.count = Number(v[2]);
    if (v?.[1] === "ocelot_event_loop_delay_max_seconds") eld.max = Number(v[2]);
  }
  return eld;
}

/** Between two scrapes: seconds observed, their mean worst delay, the highest bucket reached. */
function eldBetween(a: Eld, b: Eld): { seconds: number; meanMs: number; worstLeMs: number } {
  const seconds = b.count - a.count;
  let worstLe = 0;
  let below = 0;
  for (const [le, n] of [...b.buckets].sort((x, y) => x[0] - y[0])) {
    const d = n - (a.buckets.get(le) ?? 0);
    if (d > below) worstLe = le;
    below = d;
  }
  return {
    seconds,
    meanMs: seconds > 0 ? ((b.sum - a.sum) / seconds) * 1000 : Number.NaN,
    worstLeMs: worstLe * 1000,
  };
}

interface BurstRow {
  root: string;
  round: number;
  size: number;
  command: string;
  ms: number[];
  all: number;
  failures: string[];
  eld: { seconds: number; meanMs: number; worstLeMs: number };
  /** The daemon's worst delay since start, after this burst (exact; monotone). */
  maxSinceStartMs: number;
}

/** Bursts of handed-off ADDs and DELs per root, alternated, on the embedded store. */
async function bursts(dir: string): Promise<void> {
  // The embedded store unless --stores names etcd first.
  const onEtcd = process.argv.includes("--stores") && STORES[0] === "etcd";
  const etcd = onEtcd ? await startEtcd({ tmpfs: false }) : undefined;
  try {
    await burstsOn(dir, etcd ? etcd.url : `file:${join(dir, "store.db")}`);
  } finally {
    await etcd?.stop();
  }
}

async function burstsOn(dir: string, url: string): Promise<void> {
  const store = url.startsWith("file:")
    ? new SqliteDatastore(url.slice(5))
    : await openDatastore(url);
  await putPool(store, "bench-pool", "10.250.0.0/16");
  await store.close();
  const metrics = `127.0.0.1:${19000 + (process.pid % 900)}`;
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [k, { root, c }] of ROOTS.entries()) {
      const label = c ? `${root} c=${c}` : root;
      const daemon = await startHandoffDaemon(
        url,
        join(dir, `cni-${round}-${k}`),
        join(root, "bin"),
        metrics,
        c,
      );
      try {
        const [t] = installedTargets(url, daemon.binDir) as [Target];
        // One call first: the daemon's first call loads the plugins' code.
        await runPlugin(t, "ADD", 0, podNs(t, 0));
        await runPlugin(t, "DEL", 0, podNs(t, 0));
        const rows: BurstRow[] = [];
        for (const size of BURSTS) {
          for (const command of ["ADD", "DEL"] as const) {
            await new Promise((r) => setTimeout(r, 1100));
            const before = (await scrape(metrics)) as Eld;
            const start = performance.now();
            const rs = await Promise.all(
              Array.from({ length: size }, (_, i) => runPlugin(t, command, i, podNs(t, i))),
            );
            const all = performance.now() - start;
            // The daemon's histogram takes each second's worst at the end of that second.
            await new Promise((r) => setTimeout(r, 1100));
            const after = (await scrape(metrics)) as Eld;
            const failures = rs
              .filter((r) => r.code !== 0)
              .slice(0, 3)
              .map((r) => r.out.trim());
            rows.push({
              root: label,
              round,
              size,
              command,
              ms: rs.map((r) => r.ms),
              all,
              failures,
              eld: eldBetween(before, after),
              maxSinceStartMs: after.max * 1000,
            });
          }
        }
        process.stdout.write(`${JSON.stringify({ bursts: rows })}\n`);
      } finally {
        await daemon.stop();
      }
    }
  }
}

function reportBursts(rows: BurstRow[]): void {
  console.log(
    `\nHanded-off bursts (${process.argv.includes("--stores") ? STORES[0] : "file"} store); ms; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );
  console.log(
    "root                         round  N cmd |    p50    p99    all | loop delay: s  mean-worst  worst<=  max-since-start",
  );
  for (const r of rows) {
    console.log(
      `${r.root.slice(-28).padEnd(28)} ${String(r.round).padStart(5)} ${String(r.size).padStart(3)} ${r.command} | ${fmt(pct(r.ms, 50))} ${fmt(pct(r.ms, 99))} ${fmt(r.all)} |          ${String(r.eld.seconds).padStart(3)} ${fmt(r.eld.meanMs)}      ${fmt(r.eld.worstLeMs)} ${fmt(r.maxSinceStartMs)}`,
    );
    for (const f of r.failures) console.log(`  FAILED ${f}`);
  }
}

async function inner(): Promise<void> {
  if (BURSTS.length > 0) {
    const dir = mkdtempSync(join(tmpdir(), "ocelot-cni-bench-"));
    try {
      await bursts(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "ocelot-cni-bench-"));
  let etcd: EtcdServer | undefined;
  try {
    for (const [n, kind] of STORES.entries()) {
      let url: string;
      if (kind === "etcd") {
        etcd = await startEtcd({ tmpfs: false });
        url = etcd.url;
      } else url = `file:${join(dir, "store.db")}`;
      const store = kind === "etcd" ? await openDatastore(url) : new SqliteDatastore(url.slice(5));
      await putPool(store, "bench-pool", "10.250.0.0/16");
      await store.close();
      const daemon = HANDOFF ? await startHandoffDaemon(url, join(dir, `cni-${kind}`)) : undefined;
      try {
        // The reference plugins once, beside the first store; their figures hold for both.
        // Each store's rows as soon as they are measured (a run cut short keeps what it has).
        const targets = [
          ...targetsFor(url, dir, n === 0),
          ...(daemon ? installedTargets(url, daemon.binDir) : []),
        ];
        process.stdout.write(`${JSON.stringify(await measure(kind, targets))}\n`);
      } finally {
        await daemon?.stop();
      }
      await etcd?.stop();
      etcd = undefined;
    }
  } finally {
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function ip(...args: string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
}

const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(0).padStart(6) : "     -");

function report(rows: Row[]): void {
  const ref = new Map(rows.filter((r) => !r.reference).map((r) => [r.target, r]));
  console.log(
    `\n${PODS} pods one at a time, then ${PARALLEL} at once; ms; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );
  console.log(
    "store  plugin              ADD p50   p99 | DEL p50   p99 | par ADD all  p50 | par DEL all | ratio to reference (ADD p50, p99, DEL p50, par ADD all)",
  );
  for (const r of rows) {
    const b = r.reference ? ref.get(r.reference) : undefined;
    const ratio = (a: number, c: number | undefined) =>
      c === undefined ? "" : `${(a / c).toFixed(1)}x`;
    const ratios = b
      ? `vs ${r.reference}: ${ratio(pct(r.add, 50), pct(b.add, 50))} ${ratio(pct(r.add, 99), pct(b.add, 99))} ${ratio(pct(r.del, 50), pct(b.del, 50))} ${ratio(r.parAddAll, b.parAddAll)}`
      : "";
    console.log(
      `${r.store.padEnd(6)} ${r.target.padEnd(18)} ${fmt(pct(r.add, 50))} ${fmt(pct(r.add, 99))} | ${fmt(pct(r.del, 50))} ${fmt(pct(r.del, 99))} | ${fmt(r.parAddAll)} ${fmt(pct(r.parAdd, 50))} | ${fmt(r.parDelAll)} | ${ratios}`,
    );
    for (const f of r.failures) console.log(`  FAILED ${f}`);
  }
  const goalRows = rows.filter((r) => r.target === "ocelot-cni" || r.target === "handoff");
  for (const r of goalRows) {
    console.log(
      `goal (${r.store}, ${r.target}, quiet machine): ADD p50 ${fmt(pct(r.add, 50))} <= ${GOAL.addP50}, p99 ${fmt(pct(r.add, 99))} <= ${GOAL.addP99}, DEL p50 ${fmt(pct(r.del, 50))} <= ${GOAL.delP50}, ${PARALLEL} parallel ADDs ${fmt(r.parAddAll)} <= ${GOAL.parallelAll}`,
    );
  }
}

async function outer(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("run as root (network namespaces)");
  if (STORES.includes("etcd") && etcdUnavailableReason()) throw new Error(etcdUnavailableReason());
  const node = `${PREFIX}-node`;
  const made: string[] = [];
  try {
    ip("netns", "add", node);
    made.push(node);
    ip("-n", node, "link", "set", "lo", "up");
    // Proxy ARP answers a pod's 169.254.1.1 only with a route out of another interface.
    ip("-n", node, "link", "add", "uplink", "type", "veth", "peer", "name", "uplink-peer");
    ip("-n", node, "addr", "add", "192.0.2.10/24", "dev", "uplink");
    ip("-n", node, "link", "set", "uplink", "up");
    ip("-n", node, "link", "set", "uplink-peer", "up");
    ip("-n", node, "route", "add", "default", "via", "192.0.2.1");
    const letters = BURSTS.length > 0 ? ["h"] : HANDOFF ? ["o", "b", "h", "a"] : ["o", "b"];
    const count = BURSTS.length > 0 ? Math.max(...BURSTS) : PODS;
    for (const letter of letters) {
      for (let i = 0; i < count; i++) {
        const name = `${PREFIX}-${letter}${i}`;
        ip("netns", "add", name);
        made.push(name);
      }
    }
    const self = [
      "netns",
      "exec",
      node,
      process.execPath,
      "--import",
      "tsx",
      new URL(import.meta.url).pathname,
      "--inner",
      "--prefix",
      PREFIX,
      ...process.argv.slice(2),
    ];
    const r = spawnSync("ip", self, {
      cwd: ROOT,
      encoding: "utf8",
      timeout: 3_600_000,
      stdio: ["ignore", "pipe", "inherit"],
      maxBuffer: 64 << 20,
    });
    const lines = (r.stdout ?? "").split("\n");
    const rows = lines.filter((l) => l.startsWith("[")).flatMap((l) => JSON.parse(l) as Row[]);
    if (rows.length > 0) report(rows);
    const burstRows = lines
      .filter((l) => l.startsWith('{"bursts"'))
      .flatMap((l) => (JSON.parse(l) as { bursts: BurstRow[] }).bursts);
    if (burstRows.length > 0) reportBursts(burstRows);
    if (r.status !== 0) throw new Error(`inner run failed (${r.status}): ${r.stdout}`);
  } finally {
    for (const name of made.reverse()) spawnSync("ip", ["netns", "del", name], { timeout: 60_000 });
  }
}

if (process.argv.includes("--inner")) await inner();
else await outer();
