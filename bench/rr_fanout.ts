// Route reflector fan-out (as root): one iBGP client sends N IPv4 /32s to a reflector (the DUT:
// `ocelot bgpd` with every peer a routeReflectorClient, or BIRD 2 with `rr client`) that
// reflects them to K other clients; timed from the injecting session's Established until the
// slowest client holds all N. BIRD and Ocelot run in the same invocation, in the same
// namespaces, with the same addresses and the same clients.
//  - The DUT sits alone in one namespace (10.211.0.1/16); the injector (10.211.0.2) and the K
//    receiving clients (10.211.1.1 + i) are one process of our own built on our codec
//    (src/bgp/wire), in a second namespace, run as this file with --generator (commands on
//    stdin, events as JSON lines on stdout).
//  - The injector's UPDATEs (one attribute set, about 800 prefixes per 4096-byte UPDATE) are
//    encoded before the clock starts and written at once; the clients connect and are
//    Established before the injector connects.
//  - A client counts prefixes by walking each UPDATE's NLRI bytes into a bitmap (no attribute
//    decoding), so counting costs little; the generator's CPU seconds are printed beside the
//    DUT's so that a counting bottleneck would show (it is the same for both DUTs).
// THREADS=1 logs the DUT's CPU ticks per thread over the run (a Node DUT's V8 compiler and GC
// threads beside its main thread).
// test/bgp/rr_fanout.bird.test.ts runs runFanout() with 2,000 prefixes and 3 clients.
// Run: npx tsx bench/rr_fanout.ts [--n 100000] [--clients 10] [--targets bird,ocelot] [--runs 1]
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import * as net from "node:net";
import { loadavg } from "node:os";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { MessageFramer } from "../src/bgp/wire/framer.js";
import { encodeKeepalive } from "../src/bgp/wire/message.js";
import { newPrefixArray } from "../src/bgp/wire/nlri.js";
import { encodeOpen } from "../src/bgp/wire/open.js";
import { emptyAttributes, Ipv4Unicast, sessionOptions } from "../src/bgp/wire/types.js";
import { encodeEndOfRib, encodeUpdates } from "../src/bgp/wire/update.js";
import { Generator, type ProcCost, procCost, type Target } from "./rr_scale.js";

export const ASN = 64512;
const DUT_ADDR = "10.211.0.1";
const INJECTOR_ADDR = "10.211.0.2";
/** Receiving client i's address: 10.211.1.(1 + i), up to 250 clients. */
const clientAddr = (i: number) => `10.211.1.${1 + i}`;
/** Prefix j: 10.64.0.0 + j, a /32 (up to 4M in 10.64.0.0/10). */
const PREFIX_BASE = ((10 << 24) | (64 << 16)) >>> 0;
const MAX_N = 1 << 22;

/** A process's user and system CPU seconds (/proc/PID/stat fields 14 and 15). */
function cpuSplit(pid: number): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(f[11]) / 100, sys: Number(f[12]) / 100 };
}

const ipNum = (t: string) => t.split(".").reduce((a, o) => a * 256 + Number(o), 0) >>> 0;

// ---- the generator (runs inside the peers' namespace) -----------------------------------------

interface GenOpts {
  n: number;
  clients: number;
  hold: number;
}

interface Speaker {
  name: string;
  addr: string;
  sock: net.Socket | null;
  up: boolean;
  upAt: number;
  lastTx: number;
  /** Receiving clients: which of the N prefixes arrived, and how many. */
  seen: Uint8Array;
  count: number;
  /** When the count reached N. */
  fullAt: number;
  /** Prefixes outside the N, withdrawals, UPDATEs received. */
  foreign: number;
  withdrawn: number;
  updates: number;
  closed: boolean;
  notifications: string[];
}

/**
 * Counts an UPDATE's announced /32s of the N into s.seen (RFC 4271 §4.3: withdrawn routes
 * length, withdrawn routes, path attributes length, attributes, then NLRI to the end).
 */
function countUpdate(s: Speaker, m: Uint8Array, n: number): void {
  s.updates++;
  const wl = (m[19] << 8) | m[20];
  if (wl > 0) s.withdrawn++;
  const al = (m[21 + wl] << 8) | m[22 + wl];
  let o = 23 + wl + al;
  const end = m.length;
  while (o < end) {
    const len = m[o] as number;
    const bytes = (len + 7) >> 3;
    if (len === 32) {
      const a = ((m[o + 1] << 24) | (m[o + 2] << 16) | (m[o + 3] << 8) | m[o + 4]) >>> 0;
      const j = a - PREFIX_BASE;
      if (j >= 0 && j < n) {
        if (s.seen[j] === 0) {
          s.seen[j] = 1;
          s.count++;
        }
      } else s.foreign++;
    } else s.foreign++;
    o += 1 + bytes;
  }
}

function runGenerator(o: GenOpts): void {
  const out = (ev: object) => process.stdout.write(`${JSON.stringify(ev)}\n`);
  const opts = sessionOptions({ fourOctetAs: true });
  const mk = (name: string, addr: string, seen: boolean): Speaker => ({
    name,
    addr,
    sock: null,
    up: false,
    upAt: 0,
    lastTx: 0,
    seen: new Uint8Array(seen ? o.n : 0),
    count: 0,
    fullAt: 0,
    foreign: 0,
    withdrawn: 0,
    updates: 0,
    closed: false,
    notifications: [],
  });
  const clients = Array.from({ length: o.clients }, (_, i) => mk(`c${i}`, clientAddr(i), true));
  const injector = mk("injector", INJECTOR_ADDR, false);

  // The injector's UPDATEs, encoded once before anything is timed.
  const pa = newPrefixArray(1, o.n);
  for (let j = 0; j < o.n; j++) {
    pa.addrs[j] = (PREFIX_BASE + j) >>> 0;
    pa.lens[j] = 32;
  }
  pa.count = o.n;
  const attributes = {
    ...emptyAttributes(),
    origin: 0,
    asPath: [],
    nextHop: ipNum(INJECTOR_ADDR),
    localPref: 100,
  };
  const updates = encodeUpdates({ afi: 1, safi: 1, attributes, announce: pa }, opts);
  const feed = Buffer.concat([...updates, encodeEndOfRib(Ipv4Unicast)]);

  let t0 = 0;
  let injectWrittenAt = 0;
  let cpuAtInject = process.cpuUsage();
  let doneSent = false;

  function send(s: Speaker, m: Uint8Array): void {
    if (!s.sock || s.sock.destroyed) return;
    s.sock.write(m);
    s.lastTx = Date.now();
  }

  function check(): void {
    if (doneSent || t0 === 0) return;
    if (!clients.every((c) => c.count >= o.n)) return;
    doneSent = true;
    const cpu = process.cpuUsage(cpuAtInject);
    const times = clients.map((c) => c.fullAt - t0);
    out({
      ev: "done",
      ms: Math.max(...times),
      fastestMs: Math.min(...times),
      injectWrittenMs: injectWrittenAt ? injectWrittenAt - t0 : -1,
      updatesPerClient: clients.map((c) => c.updates),
      genCpuS: (cpu.user + cpu.system) / 1e6,
    });
  }

  function onMessage(s: Speaker, m: Uint8Array): void {
    const type = m[18];
    if (type === 1) {
      send(s, encodeKeepalive());
    } else if (type === 4) {
      if (!s.up) {
        s.up = true;
        s.upAt = Date.now();
        if (s === injector) {
          t0 = s.upAt;
          cpuAtInject = process.cpuUsage();
          s.sock?.write(feed, () => {
            injectWrittenAt = Date.now();
          });
        } else if (clients.every((c) => c.up)) out({ ev: "clientsUp" });
      }
    } else if (type === 2) {
      if (s === injector) return;
      countUpdate(s, m, o.n);
      if (s.count >= o.n && s.fullAt === 0) {
        s.fullAt = Date.now();
        check();
      }
    } else if (type === 3) {
      s.notifications.push(`${m[19]}/${m[20]}`);
    }
  }

  function connect(s: Speaker): void {
    const sock = net.connect({ host: DUT_ADDR, port: 179, localAddress: s.addr });
    s.sock = sock;
    const framer = new MessageFramer(4096);
    sock.setNoDelay(true);
    sock.on("connect", () => {
      send(
        s,
        encodeOpen({
          version: 4,
          myAs: ASN,
          holdTime: o.hold,
          bgpIdentifier: ipNum(s.addr),
          capabilities: [
            { kind: "Multiprotocol", afi: 1, safi: 1 },
            { kind: "RouteRefresh" },
            { kind: "FourOctetAs", asn: ASN },
          ],
        }),
      );
    });
    sock.on("data", (d: Buffer) => {
      for (const m of framer.push(d)) onMessage(s, m);
    });
    sock.on("error", () => {});
    sock.on("close", () => {
      if (s.sock !== sock) return;
      s.sock = null;
      // Before Established: the DUT not ready yet (BIRD refuses until its protocol starts):
      // again in a moment. After: a dropped session, reported.
      if (s.up) s.closed = true;
      else setTimeout(() => connect(s), 200);
      s.up = false;
    });
  }

  // Keepalives at a third of the hold time.
  setInterval(() => {
    const now = Date.now();
    for (const s of [injector, ...clients]) {
      if (s.up && now - s.lastTx >= (o.hold * 1000) / 3) send(s, encodeKeepalive());
    }
  }, 500).unref();
  setInterval(() => {
    out({
      ev: "progress",
      up: clients.filter((c) => c.up).length,
      counts: clients.map((c) => c.count),
    });
  }, 1000).unref();

  const rl = createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    const cmd = JSON.parse(line) as { cmd: string };
    if (cmd.cmd === "clients") for (const c of clients) connect(c);
    else if (cmd.cmd === "inject") connect(injector);
    else if (cmd.cmd === "stats") {
      out({
        ev: "stats",
        counts: clients.map((c) => c.count),
        foreign: clients.reduce((a, c) => a + c.foreign, 0),
        withdrawn: clients.reduce((a, c) => a + c.withdrawn, 0),
        closed: [injector, ...clients].filter((s) => s.closed).map((s) => s.name),
        notifications: [injector, ...clients].flatMap((s) =>
          s.notifications.map((x) => `${s.name}:${x}`),
        ),
      });
    } else if (cmd.cmd === "quit") {
      for (const s of [injector, ...clients]) s.sock?.destroy();
      process.exit(0);
    }
  });
  rl.on("close", () => process.exit(0));
  out({ ev: "ready", updates: updates.length, bytes: feed.length });
}

// ---- the scenario (parent side) ----------------------------------------------------------------

export interface FanoutOpts {
  target: Target;
  /** Prefixes the injector sends. */
  n: number;
  /** Receiving clients. */
  clients: number;
  hold?: number;
  /** Limit on each phase, ms. */
  limitMs?: number;
  log?: (s: string) => void;
}

export interface FanoutResult {
  target: Target;
  n: number;
  clients: number;
  /** Injector Established until the slowest client holds all N, ms (null: not within limit). */
  ms: number | null;
  /** ... until the fastest client holds all N. */
  fastestMs: number | null;
  /** ... until the injector's last byte was handed to its kernel. */
  injectWrittenMs: number;
  /** Each client's count of distinct prefixes at the end. */
  counts: number[];
  /** Prefixes received that are none of the N (e.g. of another length), withdrawals. */
  foreign: number;
  withdrawn: number;
  /** Sessions the DUT closed after Established, NOTIFICATIONs received. */
  closed: string[];
  notifications: string[];
  /** The reflector's memory and CPU seconds from the injector's start to the end. */
  dut: ProcCost;
  /** Of dut.cpuS, in user and in system (kernel: TCP) mode. */
  dutUserS: number;
  dutSysS: number;
  /** The generator's CPU seconds over the same span (its counting). */
  genCpuS: number;
  updatesPerClient: number[];
}

export function birdFanoutConf(clients: number, hold: number): string {
  const peers = [
    `protocol bgp injector from peers { neighbor ${INJECTOR_ADDR} as ${ASN}; }`,
    ...Array.from(
      { length: clients },
      (_, i) => `protocol bgp c${i} from peers { neighbor ${clientAddr(i)} as ${ASN}; }`,
    ),
  ];
  return `log "@DIR@/bird.log" { info, warning, error, fatal };
router id ${DUT_ADDR};
protocol device { }
protocol direct { ipv4; }
template bgp peers {
  local ${DUT_ADDR} as ${ASN};
  rr client; rr cluster id ${DUT_ADDR};
  passive on;
  hold time ${hold};
  ipv4 { import all; export where source = RTS_BGP; };
}
${peers.join("\n")}
`;
}

export function ocelotFanoutConf(clients: number, hold: number): object {
  return {
    asn: ASN,
    routerId: DUT_ADDR,
    listen: { address: DUT_ADDR, port: 179 },
    clusterId: DUT_ADDR,
    peers: [INJECTOR_ADDR, ...Array.from({ length: clients }, (_, i) => clientAddr(i))].map(
      (address) => ({
        address,
        asn: ASN,
        passive: true,
        holdTime: hold,
        routeReflectorClient: true,
      }),
    ),
    originate: [],
    fib: { enabled: false },
  };
}

const BENCH_FILE = fileURLToPath(import.meta.url);

/** One reflector, its injector and K clients, brought up, measured and taken down. */
export async function runFanout(o: FanoutOpts): Promise<FanoutResult> {
  if (o.n > MAX_N) throw new Error(`n ${o.n} over ${MAX_N}`);
  if (o.clients < 1 || o.clients > 250) throw new Error(`clients ${o.clients} not in 1..250`);
  const { link, Netns, sh } = await import("../test/helpers/netns.js");
  const { PeerLab, REPO_ROOT } = await import("../test/helpers/peers.js");
  const hold = o.hold ?? 90;
  const limitMs = o.limitMs ?? 300_000;
  const log = o.log ?? ((s: string) => console.error(s));
  const tag = `[${o.target} fan-out N=${o.n} K=${o.clients}]`;
  const lab = new PeerLab();
  const dutNs = Netns.create("fod");
  const genNs = Netns.create("fog");
  let gen: Generator | null = null;
  try {
    link(genNs, "gen-dut", `${INJECTOR_ADDR}/16`, dutNs, "dut-gen", `${DUT_ADDR}/16`);
    const batch = Array.from(
      { length: o.clients },
      (_, i) => `addr add ${clientAddr(i)}/16 dev gen-dut`,
    ).join("\n");
    sh("ip", ["-n", genNs.name, "-batch", "-"], `${batch}\n`);
    let pid: number;
    if (o.target === "bird") {
      pid = lab.startBird(dutNs, "bird", birdFanoutConf(o.clients, hold)).pid;
    } else {
      pid = lab.startOcelot(dutNs, "ocelot", ocelotFanoutConf(o.clients, hold), [
        "--log-level",
        "info",
      ]).pid;
    }
    const [cmd, args] = genNs.wrap(
      process.execPath,
      "--import",
      "tsx",
      BENCH_FILE,
      "--generator",
      JSON.stringify({ n: o.n, clients: o.clients, hold }),
    );
    const child = spawn(cmd, args, { cwd: REPO_ROOT, stdio: ["pipe", "pipe", "inherit"] });
    gen = new Generator(child);
    if (!(await gen.next("ready", 60_000))) throw new Error(`${tag} generator did not start`);
    gen.send({ cmd: "clients" });
    if (!(await gen.next("clientsUp", limitMs))) throw new Error(`${tag} clients not Established`);
    // The clients' initial exchange (an empty table, End-of-RIB) settles.
    await new Promise((r) => setTimeout(r, 500));
    const before = procCost(pid);
    const split0 = cpuSplit(pid);
    const threads = async () => {
      const { readdirSync } = await import("node:fs");
      const m = new Map<string, number>();
      for (const t of readdirSync(`/proc/${pid}/task`)) {
        const st = readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8");
        const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
        m.set(t, Number(f[11]) + Number(f[12]));
      }
      return m;
    };
    const th0 = process.env.THREADS ? await threads() : new Map<string, number>();
    gen.send({ cmd: "inject" });
    const done = await gen.next("done", limitMs);
    const dut = procCost(pid);
    const split1 = cpuSplit(pid);
    if (process.env.THREADS) {
      const th1 = await threads();
      log(`threads: ${[...th1].map(([t, v]) => `${t}:${v - (th0.get(t) ?? 0)}`).join(" ")}`);
    }
    dut.cpuS -= before.cpuS;
    log(`${tag} ${done ? `slowest client full after ${done.ms} ms` : "NOT full in time"}`);
    // A moment more, so that anything sent after the last prefix (withdrawals) is counted.
    await new Promise((r) => setTimeout(r, 1000));
    gen.send({ cmd: "stats" });
    const stats = (await gen.next("stats", 30_000)) ?? {};
    return {
      target: o.target,
      n: o.n,
      clients: o.clients,
      ms: done ? Number(done.ms) : null,
      fastestMs: done ? Number(done.fastestMs) : null,
      injectWrittenMs: done ? Number(done.injectWrittenMs) : -1,
      counts: (stats.counts ?? []) as number[],
      foreign: Number(stats.foreign ?? -1),
      withdrawn: Number(stats.withdrawn ?? -1),
      closed: (stats.closed ?? []) as string[],
      notifications: (stats.notifications ?? []) as string[],
      dut,
      dutUserS: split1.user - split0.user,
      dutSysS: split1.sys - split0.sys,
      genCpuS: done ? Number(done.genCpuS) : -1,
      updatesPerClient: done ? (done.updatesPerClient as number[]) : [],
    };
  } finally {
    if (gen) await gen.quit();
    lab.cleanup();
    genNs.destroy();
    dutNs.destroy();
  }
}

// ---- the benchmark ------------------------------------------------------------------------------

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? (process.argv[i + 1] as string) : dflt;
}

const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(" ");

function line(r: FanoutResult): string {
  const s = (ms: number | null) => (ms === null ? "NOT reached" : `${(ms / 1000).toFixed(3)} s`);
  const upd = r.updatesPerClient;
  return (
    `${r.target.padEnd(6)} N=${r.n} K=${r.clients}: slowest client full ${s(r.ms)}, fastest ${s(r.fastestMs)}` +
    ` (injector done writing ${s(r.injectWrittenMs)}) | DUT peak RSS ${r.dut.hwmMiB.toFixed(1)} MiB, CPU ${r.dut.cpuS.toFixed(2)} s (user ${r.dutUserS.toFixed(2)}, sys ${r.dutSysS.toFixed(2)})` +
    ` | generator CPU ${r.genCpuS.toFixed(2)} s | UPDATEs per client ${upd.length ? `${Math.min(...upd)}-${Math.max(...upd)}` : "-"}` +
    ` | counts min ${Math.min(...r.counts)}, foreign ${r.foreign}, withdrawals ${r.withdrawn}, sessions closed ${JSON.stringify(r.closed)}, NOTIFICATIONs ${JSON.stringify(r.notifications)}`
  );
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("bench/rr_fanout.ts needs root (namespaces)");
  const n = Number(arg("n", "100000"));
  const clients = Number(arg("clients", "10"));
  const targets = arg("targets", "bird,ocelot").split(",") as Target[];
  const runs = Number(arg("runs", "1"));
  console.log(`rr fan-out N=${n} clients=${clients} runs=${runs}; load average ${load()}`);
  const res: FanoutResult[] = [];
  for (let run = 0; run < runs; run++) {
    for (const target of targets) {
      const r = await runFanout({ target, n, clients });
      res.push(r);
      console.log(`${line(r)}; load ${load()}`);
    }
  }
  const times = (t: Target) =>
    res
      .filter((r) => r.target === t && r.ms !== null)
      .map((r) => r.ms as number)
      .sort((a, b) => a - b);
  const median = (xs: number[]) => xs[Math.floor((xs.length - 1) / 2)];
  const oc = times("ocelot");
  const bird = times("bird");
  const om = median(oc);
  const bm = median(bird);
  if (om !== undefined && bm !== undefined) {
    const t = om / bm;
    const list = (xs: number[]) => xs.map((x) => (x / 1000).toFixed(3)).join(", ");
    console.log(
      `fan-out N=${n} K=${clients}: Ocelot ${list(oc)} s, BIRD ${list(bird)} s; ` +
        `median Ocelot/BIRD ${t.toFixed(2)}x (goal <= 0.8x: ${t <= 0.8 ? "met" : "NOT met"}), ` +
        `best ${((oc[0] as number) / (bird[0] as number)).toFixed(2)}x; load ${load()}`,
    );
    const cpu = (t: Target) =>
      res
        .filter((r) => r.target === t)
        .map((r) => r.dut.cpuS)
        .sort((a, b) => a - b);
    const oCpu = median(cpu("ocelot")) as number;
    const bCpu = median(cpu("bird")) as number;
    console.log(
      `fan-out DUT CPU seconds (median): Ocelot ${oCpu.toFixed(2)}, BIRD ${bCpu.toFixed(2)}: ${(oCpu / bCpu).toFixed(2)}x`,
    );
  }
}

// Only as the entry file (another bench imports this one's parts).
if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv.includes("--generator")) {
    runGenerator(JSON.parse(process.argv[process.argv.indexOf("--generator") + 1] as string));
  } else await main();
}
