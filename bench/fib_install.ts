// Benchmark: install then withdraw N IPv4 /32 routes via a gateway on a veth, in a fresh network
// namespace, with KernelFib (numeric batch path) and with `ip -batch` in the same run; prints
// both times, the ratio, and peak RSS. Needs root. Usage: npx tsx bench/fib_install.ts [N...]
// [--ack-each] [--ocelot-only] [--objects] [--ab DIR]. `--objects`: the routes name a nexthop
// object (as bgpd's do), and the objects of protocol 201 left after the withdraw are counted.
// `--ab DIR`: with --ocelot-only, each size is run alternately with this checkout's KernelFib and
// the one in DIR's src/ (another worktree, e.g. /work/main: the code before a change).
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KernelFib as OurFib } from "../src/fib/kernel_fib.js";
import { RTPROT_OCELOT_BGP } from "../src/fib/types.js";

const OBJECTS = process.argv.includes("--objects");
const AB = process.argv.indexOf("--ab") >= 0 ? process.argv[process.argv.indexOf("--ab") + 1] : "";

const GW = "10.255.8.1";
const BASE = 0x0a000000; // 10.0.0.0 upward, /32s

function ip(ns: string, ...args: string[]): string {
  return execFileSync("ip", ["-n", ns, ...args], { encoding: "utf8" });
}

/** Routes in the namespace's main table with our protocol, counted without `ip route` text. */
function countRoutes(ns: string, proto: string): number {
  const r = spawnSync("sh", ["-c", `ip -n ${ns} -4 route show proto ${proto} | wc -l`], {
    encoding: "utf8",
    maxBuffer: 1 << 20,
  });
  return Number(r.stdout.trim());
}

const live = new Set<string>();
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    for (const ns of live) spawnSync("ip", ["netns", "del", ns]);
    process.exit(130);
  });
}

function dropNs(ns: string): void {
  spawnSync("ip", ["netns", "del", ns]);
  live.delete(ns);
}

function freshNs(): string {
  const ns = `ocfb${process.pid.toString(36)}${randomBytes(2).toString("hex")}`;
  execFileSync("ip", ["netns", "add", ns]);
  live.add(ns);
  ip(ns, "link", "set", "lo", "up");
  ip(ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1");
  ip(ns, "link", "set", "d1", "up");
  ip(ns, "addr", "add", "10.255.8.0/31", "dev", "d0");
  ip(ns, "link", "set", "d0", "up");
  return ns;
}

function peakRssMiB(): number {
  const m = readFileSync("/proc/self/status", "utf8").match(/VmHWM:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

async function runOcelot(
  n: number,
  ackEach: boolean,
  KernelFib: typeof OurFib = OurFib,
): Promise<{
  add: number;
  del: number;
  got: number;
  left: number;
  rss: number;
  cpu: string;
  nhLeft: number;
}> {
  const ns = freshNs();
  try {
    const fib = await KernelFib.open({
      netns: ns,
      protocols: [RTPROT_OCELOT_BGP],
      ackEach,
      nexthopObjects: OBJECTS,
    });
    const addrs = new Uint32Array(n);
    const lens = new Uint8Array(n).fill(32);
    for (let i = 0; i < n; i++) addrs[i] = BASE + i;
    const batch = {
      addrs,
      lens,
      protocol: RTPROT_OCELOT_BGP,
      nexthops: [{ gateway: GW, dev: "d0" }],
    };
    const watch = process.env.OCELOT_BENCH_DEBUG
      ? setInterval(() => console.error(JSON.stringify(fib.status())), 5000)
      : undefined;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fib.setV4Batch(batch);
    const t1 = performance.now();
    const c1 = process.cpuUsage(c0);
    const got = countRoutes(ns, "201");
    const t2 = performance.now();
    const c2 = process.cpuUsage();
    await fib.removeV4Batch(batch);
    const t3 = performance.now();
    const c3 = process.cpuUsage(c2);
    const rss = peakRssMiB();
    clearInterval(watch);
    const left = countRoutes(ns, "201");
    // Objects of ours left once the routes are gone (the FIB deletes them after the batch).
    await new Promise((r) => setTimeout(r, 200));
    const nhLeft = (JSON.parse(ip(ns, "-j", "nexthop", "show")) as { protocol?: string }[]).filter(
      (o) => o.protocol === "201",
    ).length;
    await fib.close();
    const cpu = (c: NodeJS.CpuUsage) =>
      `user ${(c.user / 1e6).toFixed(2)} s, sys ${(c.system / 1e6).toFixed(2)} s`;
    return {
      add: (t1 - t0) / 1000,
      del: (t3 - t2) / 1000,
      got,
      left,
      rss,
      cpu: `add ${cpu(c1)}; del ${cpu(c3)}`,
      nhLeft,
    };
  } finally {
    dropNs(ns);
  }
}

function runIpBatch(
  n: number,
  dir: string,
): { add: number; del: number; got: number; left: number } {
  const ns = freshNs();
  try {
    const lines: string[] = [];
    for (let i = 0; i < n; i++) {
      const a = BASE + i;
      lines.push(
        `route add ${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}/32 via ${GW} dev d0 proto static`,
      );
    }
    const file = join(dir, "batch");
    writeFileSync(file, `${lines.join("\n")}\n`);
    const delFile = join(dir, "batch-del");
    writeFileSync(delFile, `${lines.join("\n").replaceAll("route add", "route del")}\n`);
    lines.length = 0;
    const t0 = performance.now();
    execFileSync("ip", ["-n", ns, "-batch", file]);
    const t1 = performance.now();
    const got = countRoutes(ns, "static");
    const t2 = performance.now();
    execFileSync("ip", ["-n", ns, "-batch", delFile]);
    const t3 = performance.now();
    const left = countRoutes(ns, "static");
    return { add: (t1 - t0) / 1000, del: (t3 - t2) / 1000, got, left };
  } finally {
    dropNs(ns);
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("The FIB benchmark needs root (ip netns)");
  const sizes = process.argv
    .slice(2)
    .filter((a) => /^\d+$/.test(a))
    .map(Number);
  const ackEach = process.argv.includes("--ack-each");
  const dir = mkdtempSync(join(tmpdir(), "ocelot-fib-bench-"));
  try {
    for (const n of sizes.length ? sizes : [100_000]) {
      const o = await runOcelot(n, ackEach);
      if (process.argv.includes("--ocelot-only")) {
        const line = (what: string, r: typeof o) =>
          `fib_install N=${n} ${what} add_s=${r.add.toFixed(2)} del_s=${r.del.toFixed(2)} installed=${r.got} left=${r.left}${OBJECTS ? ` nh_left=${r.nhLeft}` : ""} ocelot_peak_rss_mib=${r.rss.toFixed(0)} (${r.cpu})`;
        console.log(line("ocelot", o));
        if (AB) {
          const other = (await import(join(AB, "src/fib/kernel_fib.ts"))) as {
            KernelFib: typeof OurFib;
          };
          const x = await runOcelot(n, ackEach, other.KernelFib);
          console.log(line(`ab(${AB})`, x));
          console.log(
            `fib_install N=${n} ratio ocelot/ab add=${(o.add / x.add).toFixed(2)} del=${(o.del / x.del).toFixed(2)}`,
          );
        }
        continue;
      }
      const b = runIpBatch(n, dir);
      const f = (x: number) => x.toFixed(2);
      console.log(
        `fib_install N=${n} ack=${ackEach ? "each" : "batch"} ocelot add_s=${f(o.add)} del_s=${f(o.del)} installed=${o.got} left=${o.left} | ` +
          `ip-batch add_s=${f(b.add)} del_s=${f(b.del)} installed=${b.got} left=${b.left} | ` +
          `ratio add=${(o.add / b.add).toFixed(2)} del=${(o.del / b.del).toFixed(2)} | ocelot_peak_rss_mib=${o.rss.toFixed(0)} (${o.cpu})`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
