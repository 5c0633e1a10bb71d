// The headline benchmark (as root): a BIRD 2 injector sends N IPv4 /32s over one eBGP session to
// a DUT (Ocelot, BIRD, FRR) in its own namespace; time from Established (the injector's
// "Since", ms precision) until all N are in the DUT's kernel FIB (fib_triestat Main "Prefixes:"
// minus a baseline), and the DUT's peak RSS (VmHWM) and peak RssAnon (sampled every 100 ms: its
// own memory, without the ~40 MiB of Node's binary that VmHWM counts and every Node.js process
// on the host shares). Prints figures and ratios to BIRD.
//
// The injector's stall: BIRD 2.0.12 sometimes holds its last UPDATE (the final step of its
// export feed, N mod 256 routes: 160 of 100k) until its main loop wakes up for another reason,
// up to its 3 s poll timeout (an event queued by a work-list event does not shorten that
// poll), whichever DUT receives. Seen with strace on the injector: the last UPDATE written
// 0.85 s and 3.007 s after the one before it, while the DUT had read everything else. A waker
// asks the injector's control socket `show status` every 10 ms, so its loop never sleeps long
// (the same for every target); `--wake 0` turns it off. The waker's pokes are counted.
//
// Two more targets for comparisons within one run: `old` is another build's `ocelot` (its bin/
// directory by `--old DIR`, default /work/main/bin: the code before a change, alternated with
// this one), and `kernel` is the kernel's own pace: no daemon and no BGP, the bench itself
// writes the same N routes (RTM_NEWROUTE, via the injector's address, protocol 201) into the
// DUT's namespace, encoded before the clock starts, 128 KiB of requests per sendmsg with an ACK
// for the last one only, on one blocking netlink socket; its figure is the time from the first
// sendmsg until the last ACK (and the FIB count is checked). `--kernel-batch BYTES` sets the
// sendmsg size. `kernelnh` is the same through one nexthop object made before the clock starts
// (each route names it by RTA_NH_ID, as `ocelot bgpd` does by default): the kernel's work per
// route is ~40% less, so it is the fair floor for Ocelot; BIRD 2 sends each route's gateway.
// OCELOT_THREAD_CPU=1 also prints the DUT's CPU per thread, the injector's CPU, and when
// Ocelot's FIB sender thread sent its first and last batch against Established, how long it
// was inside sendmsg (busy) and waiting for work (idle).
// `--withdraw 1`: once the DUT has all N, the injector's session is disabled (`birdc disable`)
// and the time until the DUT's kernel FIB is back to its baseline is printed (`withdraw_s`,
// from the disable command), with the nexthop objects of protocol 201 left in the DUT then
// (`nh_left`: Ocelot deletes the gateway's object once no route names it).
// Usage: npx tsx bench/bgp_inject.ts [--n 100000,1000000]
//   [--targets kernel,kernelnh,ocelot,old,bird,frr]
//   [--runs 1] [--wake 10] [--old DIR] [--withdraw 1]
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { SenderStats } from "../src/fib/netlink_socket.js";
import {
  MessageWriter,
  NETLINK_ROUTE,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REQUEST,
  RT_SCOPE_UNIVERSE,
  RTA_DST,
  RTM_NEWROUTE,
  RTN_UNICAST,
  writeRoute,
} from "../src/fib/rtnetlink.js";
import { RT_TABLE_MAIN, RTPROT_OCELOT_BGP } from "../src/fib/types.js";
import { loadAddon } from "../src/lib/native.js";
import { link, Netns, RUN_PREFIX, sh, sleepSync } from "../test/helpers/netns.js";
import { type OcelotPeer, PeerLab, REPO_ROOT } from "../test/helpers/peers.js";

type Target = "ocelot" | "old" | "bird" | "frr" | "kernel" | "kernelnh";

/** RTA_NH_ID (linux/rtnetlink.h): a route's nexthop object. */
const RTA_NH_ID = 30;

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? (process.argv[i + 1] as string) : dflt;
}

const SIZES = arg("n", "100000").split(",").map(Number);
const TARGETS = arg("targets", "ocelot,bird,frr").split(",") as Target[];
const RUNS = Number(arg("runs", "1"));
const TIMEOUT_S = Number(arg("timeout", "150"));
const WAKE_MS = Number(arg("wake", "10"));
const OLD_BIN = arg("old", "/work/main/bin");
const KERNEL_BATCH = Number(arg("kernel-batch", String(128 * 1024)));
const WITHDRAW = arg("withdraw", "0") === "1";

/**
 * The kernel's own pace: N /32 routes via 10.255.9.1 (protocol 201, main table) written into
 * `ns` over one blocking netlink socket, encoded first; `batchBytes` of requests per sendmsg,
 * an ACK asked for the last of each only (errors always come back). Returns seconds from the
 * first sendmsg to the last ACK and the requests the kernel refused.
 */
function kernelInsert(
  ns: Netns,
  n: number,
  batchBytes: number,
  nhId = 0,
): { s: number; errors: number; cpu: { user: number; sys: number } } {
  const chunks: Buffer[] = [];
  let w = new MessageWriter(batchBytes + 4096);
  let lastAt = -1;
  const dst = new Uint8Array(4);
  const req = {
    family: 4 as const,
    dst,
    dstLen: 32,
    table: RT_TABLE_MAIN,
    protocol: RTPROT_OCELOT_BGP,
    type: RTN_UNICAST,
    scope: RT_SCOPE_UNIVERSE,
    metric: 0,
    nexthops: [{ gateway: new Uint8Array([10, 255, 9, 1]), ifindex: 0, onlink: false, weight: 1 }],
  };
  const close = () => {
    w.buf.writeUInt16LE(w.buf.readUInt16LE(lastAt + 6) | NLM_F_ACK, lastAt + 6);
    chunks.push(Buffer.from(w.buf.subarray(0, w.len)));
    w = new MessageWriter(batchBytes + 4096);
  };
  for (let i = 0; i < n; i++) {
    const a = (10 << 24) + i;
    dst[0] = a >>> 24;
    dst[1] = (a >>> 16) & 255;
    dst[2] = (a >>> 8) & 255;
    dst[3] = a & 255;
    lastAt = w.len;
    // One sequence number per sendmsg: the addon's request() waits for that number's ACK.
    if (nhId > 0) {
      // The route names a nexthop object (RTA_NH_ID) instead of carrying its gateway.
      const at = w.begin(
        RTM_NEWROUTE,
        NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
        chunks.length + 1,
      );
      w.rtmsg(2, 32, RT_TABLE_MAIN, RTPROT_OCELOT_BGP, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0);
      w.attrBytes(RTA_DST, dst);
      w.attrU32(RTA_NH_ID, nhId);
      w.finish(at);
    } else writeRoute(w, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, chunks.length + 1, req);
    if (w.len >= batchBytes) close();
  }
  if (w.len > 0) close();
  const addon = loadAddon();
  const fd = addon.requestOpen(NETLINK_ROUTE, `/run/netns/${ns.name}`, 60_000);
  let errors = 0;
  try {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (const c of chunks) {
      const answer = addon.request(fd, c);
      // NLMSG_ERROR (2) with a non-zero errno: a refused request.
      for (let o = 0; o + 20 <= answer.length; ) {
        const len = answer.readUInt32LE(o);
        if (answer.readUInt16LE(o + 4) === 2 && answer.readInt32LE(o + 16) !== 0) errors++;
        o += (len + 3) & ~3;
        if (len < 16) break;
      }
    }
    const s = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    return { s, errors, cpu: { user: c.user / 1e6, sys: c.system / 1e6 } };
  } finally {
    addon.requestClose(fd);
  }
}

/**
 * A child that sends `show status` to a BIRD control socket each `ms` after the previous reply
 * (so BIRD's main loop runs at least that often); prints its count on SIGTERM.
 */
function startWaker(socket: string, ms: number, countFile: string): ChildProcess {
  const script = `
const net = require("node:net");
let n = 0, buf = "";
const c = net.createConnection(${JSON.stringify(socket)});
c.setEncoding("utf8");
c.on("data", (d) => {
  buf += d;
  // A reply ends with a line "NNNN text" (a space after the code); the greeting is one.
  if (/(^|\\n)\\d{4} [^\\n]*\\n$/.test(buf)) { buf = ""; setTimeout(() => { n++; c.write("show status\\n"); }, ${ms}); }
});
c.on("error", () => process.exit(0));
process.on("SIGTERM", () => { require("node:fs").writeFileSync(${JSON.stringify(countFile)}, String(n)); process.exit(0); });
`;
  return spawn(process.execPath, ["-e", script], { stdio: ["ignore", "ignore", "inherit"] });
}

/** Stops the waker (by its pid) and returns how many times it asked. */
function stopWaker(w: ChildProcess, countFile: string): number {
  if (w.pid !== undefined && w.exitCode === null) w.kill("SIGTERM");
  for (let i = 0; i < 50 && !existsSync(countFile); i++) sleepSync(20);
  return existsSync(countFile) ? Number(readFileSync(countFile, "utf8")) : Number.NaN;
}

function routesConf(n: number): string {
  if (n > 1 << 20) throw new Error(`N ${n} does not fit in 10.0.0.0/12`);
  const lines: string[] = [];
  const base = 10 << 24;
  for (let i = 0; i < n; i++) {
    const a = base + i;
    lines.push(`route ${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}/32 blackhole;`);
  }
  return `${lines.join("\n")}\n`;
}

const genConf = (dir: string) => `
log "${dir}/bird.log" { info, warning, error, fatal };
router id 10.255.9.1;
timeformat protocol iso long ms;
protocol device { }
protocol static gen {
  ipv4;
  include "${dir}/routes.conf";
}
protocol bgp dut {
  local 10.255.9.1 as 64999;
  neighbor 10.255.9.0 as 64512;
  connect delay time 1; connect retry time 1;
  ipv4 { import none; export all; };
}
`;

const birdDut = `
log "@DIR@/bird.log" { info, warning, error, fatal };
router id 10.255.9.0;
protocol device { }
protocol kernel { ipv4 { import none; export all; }; merge paths on; }
protocol bgp gen {
  local 10.255.9.0 as 64512;
  neighbor 10.255.9.1 as 64999;
  connect delay time 1; connect retry time 1;
  ipv4 { import all; export none; };
}
`;

const frrDut = `hostname dut
router bgp 64512
 bgp router-id 10.255.9.0
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.255.9.1 remote-as 64999
 neighbor 10.255.9.1 timers connect 1
exit
`;

function fibCount(ns: Netns): number {
  const text = ns.exec("cat", "/proc/net/fib_triestat");
  const main = text.indexOf("Main:");
  const m = /Prefixes:\s+(\d+)/.exec(text.slice(main));
  return m ? Number(m[1]) : 0;
}

/** RssAnon (MiB): the process's own memory, without the file pages (Node's binary) it shares. */
function anonMiB(pid: number): number {
  try {
    const m = /RssAnon:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds (user, system) the process has used, from /proc/PID/stat (clock ticks of 10 ms). */
function cpuOf(pid: number, file = `/proc/${pid}/stat`): { user: number; sys: number } {
  try {
    const st = readFileSync(file, "utf8");
    const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
    return { user: Number(f[11]) / 100, sys: Number(f[12]) / 100 };
  } catch {
    return { user: Number.NaN, sys: Number.NaN };
  }
}

/** OCELOT_THREAD_CPU=1: user/system CPU seconds per thread name of a process. */
function threadCpu(pid: number): string {
  const by = new Map<string, { user: number; sys: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
    const c = cpuOf(Number(tid), `/proc/${pid}/task/${tid}/stat`);
    const t = by.get(`${name}/${tid === String(pid) ? "main" : "other"}`) ?? { user: 0, sys: 0 };
    t.user += c.user;
    t.sys += c.sys;
    by.set(`${name}/${tid === String(pid) ? "main" : "other"}`, t);
  }
  return [...by]
    .map(([k, c]) => `${k}: user ${c.user.toFixed(2)} sys ${c.sys.toFixed(2)}`)
    .join("; ");
}

function hwmMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

interface Result {
  target: Target;
  n: number;
  fibS: number | null;
  fib99S: number | null;
  hwm: number;
  hwmDetail: string;
  /** Peak of the DUT's summed RssAnon, sampled at every poll (100 ms). */
  anonPeak: number;
  count: number;
  /** `show status` requests the waker sent the injector. */
  wakes: number;
  /** The DUT's CPU seconds (all its processes) when the FIB had all N. */
  cpu: { user: number; sys: number };
  /** --withdraw: seconds from disabling the injector's session until the FIB is at baseline. */
  withdrawS?: number | null;
  /** --withdraw: nexthop objects of protocol 201 in the DUT once the routes were gone. */
  nhLeft?: number;
}

function runKernel(n: number, target: "kernel" | "kernelnh"): Result {
  const gen = Netns.create("gen");
  const dut = Netns.create("dut");
  try {
    link(gen, "gen-dut", "10.255.9.1/31", dut, "dut-gen", "10.255.9.0/31");
    // kernelnh: the same routes through one nexthop object (made before the clock starts).
    const nhId = target === "kernelnh" ? 1 : 0;
    if (nhId)
      dut.exec("ip", "nexthop", "add", "id", String(nhId), "via", "10.255.9.1", "dev", "dut-gen");
    const base = fibCount(dut);
    const k = kernelInsert(dut, n, KERNEL_BATCH, nhId);
    const count = fibCount(dut) - base;
    if (k.errors > 0) console.error(`[kernel N=${n}] ${k.errors} requests refused`);
    return {
      target,
      n,
      fibS: count >= n ? k.s : null,
      fib99S: null,
      hwm: Number.NaN,
      hwmDetail: "-",
      anonPeak: Number.NaN,
      count,
      wakes: 0,
      cpu: k.cpu,
    };
  } finally {
    gen.destroy();
    dut.destroy();
  }
}

function runOne(target: Target, n: number): Result {
  if (target === "kernel" || target === "kernelnh") return runKernel(n, target);
  const lab = new PeerLab();
  let waker: ChildProcess | undefined;
  const gen = Netns.create("gen");
  const dut = Netns.create("dut");
  try {
    link(gen, "gen-dut", "10.255.9.1/31", dut, "dut-gen", "10.255.9.0/31");
    const gd = lab.subdir("gen");
    writeFileSync(join(gd, "routes.conf"), routesConf(n));
    const injector = lab.startBird(gen, "gen", genConf(gd));
    // Wait for the injector's statics (1M take ~2 s).
    const t0 = Date.now();
    for (let i = 0; i < 1200; i++) {
      const m = /Routes:\s+(\d+) imported/.exec(injector.cmd("show", "protocols", "all", "gen"));
      if (m && Number(m[1]) >= n) break;
      sleepSync(100);
    }
    console.error(
      `[${target} N=${n}] injector loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );
    const wakeFile = join(gd, "wakes");
    waker = WAKE_MS > 0 ? startWaker(injector.socket, WAKE_MS, wakeFile) : undefined;
    const base = fibCount(dut);
    let pids: number[] = [];
    let ocelot: OcelotPeer | undefined;
    if (target === "ocelot" || target === "old") {
      // `old`: the other build's bin/ (test/helpers/peers.ts reads OCELOT_BIN_DIR).
      if (target === "old") process.env.OCELOT_BIN_DIR = OLD_BIN;
      else delete process.env.OCELOT_BIN_DIR;
      const oc = lab.startOcelot(
        dut,
        "ocelot",
        {
          asn: 64512,
          routerId: "10.255.9.0",
          listen: { address: "10.255.9.0", port: 179 },
          peers: [{ address: "10.255.9.1", asn: 64999, connectRetryTime: 1 }],
          fib: { enabled: true, table: "main", protocol: 201 },
        },
        process.env.OCELOT_PROF ? ["--log-level", "info"] : [],
      );
      delete process.env.OCELOT_BIN_DIR;
      pids = [oc.pid];
      ocelot = oc;
    } else if (target === "bird") {
      pids = [lab.startBird(dut, "dut", birdDut).pid];
    } else {
      const f = lab.startFrr(dut, "dut", frrDut);
      pids = [f.zebraPid, f.bgpdPid];
    }
    const n99 = Math.floor((n * 99) / 100);
    let fibAt: number | null = null;
    let fib99At: number | null = null;
    let count = 0;
    let anonPeak = 0;
    let cpu = { user: Number.NaN, sys: Number.NaN };
    const deadline = Date.now() + TIMEOUT_S * 1000;
    while (Date.now() < deadline) {
      count = fibCount(dut) - base;
      anonPeak = Math.max(
        anonPeak,
        pids.reduce((s, p) => s + anonMiB(p), 0),
      );
      const now = Date.now();
      if (fib99At === null && count >= n99) fib99At = now;
      if (process.env.OCELOT_RSS_TRACE && pids.length === 1) {
        // OCELOT_RSS_TRACE=1: the DUT's RSS and the FIB count every poll (where the peak is).
        const st = readFileSync(`/proc/${pids[0]}/status`, "utf8");
        const rss = Number(/VmRSS:\s+(\d+)/.exec(st)?.[1] ?? 0) / 1024;
        console.error(`[${target} N=${n}] t=${now - t0}ms rss=${rss.toFixed(1)}MiB fib=${count}`);
      }
      if (count >= n) {
        fibAt = now;
        cpu = pids
          .map((p) => cpuOf(p))
          .reduce((a, b) => ({ user: a.user + b.user, sys: a.sys + b.sys }));
        if (process.env.OCELOT_THREAD_CPU) {
          console.error(`[${target} N=${n}] ${threadCpu(pids[0])}`);
          // The injector shares the machine's cores with the DUT: its CPU is part of the run.
          const ic = cpuOf(injector.pid);
          console.error(
            `[${target} N=${n}] injector CPU user ${ic.user.toFixed(2)} sys ${ic.sys.toFixed(2)}`,
          );
        }
        break;
      }
      sleepSync(100);
    }
    const wakes = waker ? stopWaker(waker, join(gd, "wakes")) : 0;
    waker = undefined;
    // Established time from the injector (ms precision).
    const line = injector
      .cmd("show", "protocols", "dut")
      .split("\n")
      .find((l) => l.startsWith("dut "));
    const since = line?.trim().split(/\s+/).slice(4, 6).join(" ") ?? "";
    const est = Date.parse(since.replace(" ", "T"));
    // After Established was read: disabling the session changes its "Since".
    let withdrawS: number | null | undefined;
    let nhLeft: number | undefined;
    if (WITHDRAW && fibAt !== null) {
      const w0 = Date.now();
      injector.cmd("disable", "dut");
      withdrawS = null;
      while (Date.now() < w0 + TIMEOUT_S * 1000) {
        if (fibCount(dut) - base <= 0) {
          withdrawS = (Date.now() - w0) / 1000;
          break;
        }
        sleepSync(100);
      }
      // Objects are deleted after the batch that took their last route is answered.
      sleepSync(500);
      nhLeft = dut
        .ipJson<{ protocol?: string }[]>("nexthop", "show")
        .filter((o) => o.protocol === "201").length;
    }
    const hwms = pids.map(
      (p) => [readFileSync(`/proc/${p}/comm`, "utf8").trim(), hwmMiB(p)] as const,
    );
    const r: Result = {
      target,
      n,
      fibS: fibAt === null ? null : (fibAt - est) / 1000,
      fib99S: fib99At === null ? null : (fib99At - est) / 1000,
      hwm: hwms.reduce((s, [, m]) => s + m, 0),
      anonPeak,
      hwmDetail: hwms.map(([c, m]) => `${c}=${m.toFixed(1)}MiB`).join(" "),
      count,
      wakes,
      cpu,
      ...(withdrawS !== undefined ? { withdrawS, nhLeft } : {}),
    };
    if (ocelot && process.env.OCELOT_SNAPSHOT_WAIT) {
      // With OCELOT_NODE_ARGS="--heapsnapshot-signal=SIGUSR2": a heap snapshot after convergence.
      lab.signal(ocelot.pid, "SIGUSR2");
      sleepSync(Number(process.env.OCELOT_SNAPSHOT_WAIT) * 1000);
    }
    if (ocelot) {
      try {
        const st = ocelot.status() as unknown as {
          memory?: object;
          fib?: { sender?: SenderStats };
        };
        const { sender, ...fib } = st.fib ?? {};
        console.error(
          `[${target} N=${n}] memory ${JSON.stringify(st.memory)} fib ${JSON.stringify(fib)}`,
        );
        if (sender) {
          // The FIB's sender thread against Established: when the kernel's inserts began and
          // ended, how long it was inside sendmsg and how long it waited for us meanwhile.
          console.error(
            `[${target} N=${n}] sender first_send=+${(sender.firstAt - est).toFixed(0)}ms last_send_end=+${(sender.lastAt - est).toFixed(0)}ms busy=${sender.busyMs.toFixed(0)}ms idle=${sender.idleMs.toFixed(0)}ms waits=${sender.waits} sends=${sender.sends} max_queued=${sender.maxQueued}`,
          );
        }
      } catch (e) {
        console.error(`[${target} N=${n}] status failed: ${(e as Error).message}`);
      }
      if (process.env.KEEP_PEERS) console.error(`ocelot files in ${lab.dir}`);
    }
    return r;
  } finally {
    if (waker?.pid !== undefined && waker.exitCode === null) waker.kill("SIGKILL");
    lab.cleanup();
    gen.destroy();
    dut.destroy();
  }
}

function main(): void {
  if (process.getuid?.() !== 0)
    throw new Error("bench/bgp_inject.ts needs root (network namespaces)");
  if (!existsSync(join(REPO_ROOT, "dist/cli/main.js"))) throw new Error("Run npm run build first");
  void sh;
  void spawnSync;
  void RUN_PREFIX;
  const results: Result[] = [];
  for (const n of SIZES) {
    for (let run = 0; run < RUNS; run++) {
      for (const t of TARGETS) {
        const r = runOne(t, n);
        results.push(r);
        const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
        console.log(
          `inject target=${r.target} N=${r.n} fib_s=${r.fibS?.toFixed(3) ?? "TIMEOUT"} fib99_s=${r.fib99S?.toFixed(3) ?? "-"} fib_count=${r.count} peak_rss: ${r.hwmDetail} peak_rss_anon=${r.anonPeak.toFixed(1)}MiB cpu_user_s=${r.cpu.user.toFixed(2)} cpu_sys_s=${r.cpu.sys.toFixed(2)} injector_wakes=${r.wakes}${r.withdrawS !== undefined ? ` withdraw_s=${r.withdrawS?.toFixed(3) ?? "TIMEOUT"} nh_left=${r.nhLeft}` : ""} load=${load}`,
        );
      }
    }
  }
  // Ratios against BIRD (best run of each).
  for (const n of SIZES) {
    const best = (t: Target) =>
      results
        .filter((r) => r.target === t && r.n === n && r.fibS !== null)
        .sort((a, b) => (a.fibS as number) - (b.fibS as number))[0];
    const bird = best("bird");
    const frr = best("frr");
    const kernel = best("kernel");
    for (const t of ["ocelot", "old"] as const) {
      const oc = best(t);
      if (bird && oc) {
        console.log(
          `ratio N=${n} ${t}/bird time=${((oc.fibS as number) / (bird.fibS as number)).toFixed(2)} rss=${(oc.hwm / bird.hwm).toFixed(2)} rss_anon=${(oc.anonPeak / bird.anonPeak).toFixed(2)}`,
        );
      }
    }
    // Per run (alternated in the same invocation): ocelot against old, and against the kernel.
    for (let run = 0; run < RUNS; run++) {
      const of = (t: Target) => results.filter((r) => r.target === t && r.n === n)[run];
      const oc = of("ocelot");
      const old = of("old");
      const k = of("kernel");
      const knh = of("kernelnh");
      const b = of("bird");
      const ratio = (a?: Result, z?: Result) =>
        a?.fibS != null && z?.fibS != null ? (a.fibS / z.fibS).toFixed(2) : "-";
      console.log(
        `run ${run + 1} N=${n} ocelot/old=${ratio(oc, old)} ocelot/bird=${ratio(oc, b)} old/bird=${ratio(old, b)} ocelot/kernel=${ratio(oc, k)} bird/kernel=${ratio(b, k)} ocelot/kernelnh=${ratio(oc, knh)} bird/kernelnh=${ratio(b, knh)}`,
      );
    }
    if (kernel && bird) {
      console.log(
        `ratio N=${n} bird/kernel time=${((bird.fibS as number) / (kernel.fibS as number)).toFixed(2)}`,
      );
    }
    if (bird && frr) {
      console.log(
        `ratio N=${n} frr/bird time=${((frr.fibS as number) / (bird.fibS as number)).toFixed(2)} rss=${(frr.hwm / bird.hwm).toFixed(2)}`,
      );
    }
  }
}

main();
