// What fixing glibc's malloc thresholds at start (src/cli/malloc_thresholds.ts) does to
// `ocelot node run`'s memory (as root): rounds alternate the daemon with the thresholds fixed
// (the default) and with glibc's own (OCELOT_MALLOC_THRESHOLDS=default), each in its own
// namespace on a fresh embedded store with one IP pool; RssAnon read 10 s after the daemon said
// it runs (idle), then 10 s after --pods pods were added by the real CNI plugin (after start).
// Prints each figure with the load average; compare within one invocation only.
// Run: npx tsx bench/node_malloc.ts [--rounds 3] [--pods 5]
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteDatastore } from "../src/datastore/sqlite.js";
import { Netns } from "../test/helpers/netns.js";
import { putPool } from "../test/ipam/helpers.js";
import { cni, netconf, podEnv, startNode } from "../test/node/harness.js";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? (process.argv[i + 1] as string) : dflt;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(" ");

/** RssAnon and VmRSS of a process, MiB. */
function rss(pid: number): { anon: number; rss: number } {
  const st = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(st)?.[1]);
  return { anon: kib("RssAnon") / 1024, rss: kib("VmRSS") / 1024 };
}

async function round(variant: "fixed" | "glibc", i: number, pods: number) {
  const dir = mkdtempSync(join(tmpdir(), "ocelot-nodemalloc-"));
  const url = `file:${join(dir, "store.db")}`;
  const store = new SqliteDatastore(join(dir, "store.db"));
  const ns = Netns.create(`nm${i}`);
  const podNs: Netns[] = [];
  const name = `nm-${i}`;
  if (variant === "glibc") process.env.OCELOT_MALLOC_THRESHOLDS = "default";
  else delete process.env.OCELOT_MALLOC_THRESHOLDS;
  let daemon: Awaited<ReturnType<typeof startNode>> | undefined;
  try {
    await putPool(store, "pool", "10.231.0.0/16", { blockSize: 26 });
    ns.ip("link", "set", "lo", "up");
    ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0p");
    ns.ip("link", "set", "eth0p", "up");
    ns.ip("addr", "add", "10.98.0.1/24", "dev", "eth0");
    ns.ip("link", "set", "eth0", "up");
    ns.ip("route", "add", "default", "dev", "eth0");
    daemon = await startNode(ns, [
      ...["--nodename", name, "--ip", "10.98.0.1/24", "--datastore", url],
      ...["--status-socket", join(dir, "node.sock"), "--mtu-file", join(dir, "mtu")],
    ]);
    const pid = daemon.proc.pid as number;
    await sleep(10_000);
    const idle = rss(pid);
    for (let p = 0; p < pods; p++) {
      const pod = Netns.create(`nm${i}p${p}`);
      podNs.push(pod);
      const r = await cni(ns, "ADD", podEnv(pod, `pod${p}`), netconf(url, name, "pool"));
      if (r.code !== 0) throw new Error(`CNI ADD pod${p}: ${r.stdout}${r.stderr}`);
    }
    await sleep(10_000);
    const after = rss(pid);
    console.log(
      `round ${i} ${variant}: idle RssAnon ${idle.anon.toFixed(1)} MiB (VmRSS ${idle.rss.toFixed(1)}), after ${pods} pods RssAnon ${after.anon.toFixed(1)} MiB (VmRSS ${after.rss.toFixed(1)}); load ${load()}`,
    );
    return { idle: idle.anon, after: after.anon };
  } finally {
    await daemon?.stop();
    for (const p of podNs) p.destroy();
    ns.destroy();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("bench/node_malloc.ts needs root");
  const rounds = Number(arg("rounds", "3"));
  const pods = Number(arg("pods", "5"));
  const got: Record<"fixed" | "glibc", { idle: number; after: number }[]> = {
    fixed: [],
    glibc: [],
  };
  let i = 0;
  for (let r = 0; r < rounds; r++) {
    // Alternated, the order swapped each round.
    const order: ("fixed" | "glibc")[] = r % 2 === 0 ? ["fixed", "glibc"] : ["glibc", "fixed"];
    for (const v of order) got[v].push(await round(v, i++, pods));
  }
  const med = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)] as number;
  };
  for (const v of ["fixed", "glibc"] as const) {
    console.log(
      `${v}: median idle RssAnon ${med(got[v].map((x) => x.idle)).toFixed(1)} MiB, after pods ${med(got[v].map((x) => x.after)).toFixed(1)} MiB`,
    );
  }
  console.log(
    `fixed/glibc: idle ${(med(got.fixed.map((x) => x.idle)) / med(got.glibc.map((x) => x.idle))).toFixed(3)}x, after pods ${(med(got.fixed.map((x) => x.after)) / med(got.glibc.map((x) => x.after))).toFixed(3)}x; load ${load()}`,
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
