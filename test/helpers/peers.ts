// Real BGP peers for interop tests and benchmarks: BIRD 2, FRR (zebra + bgpd with a per-netns
// pathspace) and GoBGP started inside our own namespaces, plus `ocelot bgpd` as a real process.
// Configs are rendered into a temp dir; every PID is tracked with its comm and killed by PID only.
// Also the usual two-namespace lab: bgpd's namespace and one peer's joined by a veth pair.
import { type ChildProcess, spawn } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { FRR_BIN, frrRunDir, readPidFile, startFrrDaemons } from "../../src/lib/frr.js";
import { hangLimit, runSync } from "./limits.js";
import { link, Netns, sh, sleepSync, waitFor } from "./netns.js";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Why real-peer tests cannot run, or undefined. */
export function peersUnavailableReason(which: ("bird" | "frr" | "gobgp")[]): string | undefined {
  const need: Record<string, string[]> = {
    bird: ["/usr/sbin/bird", "/usr/sbin/birdc"],
    frr: [join(FRR_BIN, "bgpd"), join(FRR_BIN, "zebra"), "/usr/bin/vtysh"],
    gobgp: ["/usr/bin/gobgpd", "/usr/bin/gobgp"],
  };
  for (const w of which)
    for (const p of need[w] ?? []) if (!existsSync(p)) return `${p} not installed`;
  if (!existsSync(join(REPO_ROOT, "dist/cli/main.js")))
    return "dist/cli/main.js missing: run npm run build";
  return undefined;
}

interface Tracked {
  pid: number;
  comm: string;
  what: string;
}

function commOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return undefined;
  }
}

function aliveAs(t: Tracked): boolean {
  if (commOf(t.pid) !== t.comm) return false;
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${t.pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

/**
 * A PeerLab with bgpd's namespace `oc` and a peer's `br` (short names, per-run prefixed) joined
 * by oc-br ↔ br-oc carrying ocAddr and brAddr (CIDRs), and `second` addresses on each (a peer
 * BIRD sees as another neighbour: BIRD runs one protocol per neighbour address). What was made is
 * removed if a step fails.
 */
export function openPeerPair(
  ocShort: string,
  brShort: string,
  ocAddr: string,
  brAddr: string,
  second?: { br: string; oc: string },
): { lab: PeerLab; oc: Netns; br: Netns } {
  const lab = new PeerLab();
  let oc: Netns | undefined;
  let br: Netns | undefined;
  try {
    oc = Netns.create(ocShort);
    br = Netns.create(brShort);
    link(oc, "oc-br", ocAddr, br, "br-oc", brAddr);
    if (second) {
      br.ip("addr", "add", second.br, "dev", "br-oc");
      oc.ip("addr", "add", second.oc, "dev", "oc-br");
    }
    return { lab, oc, br };
  } catch (err) {
    closePeerLab(lab, oc, br);
    throw err;
  }
}

/** One peer of openPeerTrio: its namespace's short name, bgpd's address and its own (CIDRs). */
export type TrioPeer = [short: string, ocAddr: string, addr: string];

/**
 * A PeerLab with bgpd's namespace `oc` and two peers' `b1`, `b2`, joined by oc-b1 ↔ b1-oc and
 * oc-b2 ↔ b2-oc. What was made is removed if a step fails.
 */
export function openPeerTrio(
  ocShort: string,
  p1: TrioPeer,
  p2: TrioPeer,
): { lab: PeerLab; oc: Netns; b1: Netns; b2: Netns } {
  const lab = new PeerLab();
  const made: Netns[] = [];
  try {
    const oc = Netns.create(ocShort);
    made.push(oc);
    const b1 = Netns.create(p1[0]);
    made.push(b1);
    const b2 = Netns.create(p2[0]);
    made.push(b2);
    link(oc, "oc-b1", p1[1], b1, "b1-oc", p1[2]);
    link(oc, "oc-b2", p2[1], b2, "b2-oc", p2[2]);
    return { lab, oc, b1, b2 };
  } catch (err) {
    closePeerLab(lab, ...made);
    throw err;
  }
}

/** Stops the lab's processes (lab.cleanup), then destroys the namespaces, in the order given. */
export function closePeerLab(lab: PeerLab | undefined, ...namespaces: (Netns | undefined)[]): void {
  lab?.cleanup();
  for (const ns of namespaces) ns?.destroy();
}

/** Owns the temp dir and the processes of one test file. */
export class PeerLab {
  readonly dir = mkdtempSync(join(tmpdir(), "ocelot-peers-"));
  private readonly tracked: Tracked[] = [];
  private readonly frrRunDirs: string[] = [];

  constructor() {
    // FRR drops to the frr user: it must reach its files under the temp dir.
    chmodSync(this.dir, 0o755);
  }

  track(pid: number, comm: string, what: string): void {
    this.tracked.push({ pid, comm, what });
  }

  subdir(name: string): string {
    const d = join(this.dir, name);
    mkdirSync(d, { recursive: true });
    return d;
  }

  /** Sends sig to a tracked process (e.g. SIGSTOP/SIGCONT), by PID, if still the same comm. */
  signal(pid: number, sig: NodeJS.Signals): void {
    const t = this.tracked.find((x) => x.pid === pid);
    if (!t || !aliveAs(t)) throw new Error(`Process ${pid} is not a live tracked process`);
    process.kill(pid, sig);
  }

  /** Stops one tracked process: TERM, up to 10 s, then KILL. */
  stop(pid: number): void {
    const t = this.tracked.find((x) => x.pid === pid);
    if (!t) return;
    for (const sig of ["SIGCONT", "SIGTERM"] as const) {
      if (aliveAs(t)) {
        try {
          process.kill(t.pid, sig);
        } catch {}
      }
    }
    // bgpd removes its kernel routes on SIGTERM: 1M routes take a few seconds.
    const deadline = Date.now() + hangLimit();
    while (aliveAs(t) && Date.now() < deadline) sleepSync(50);
    if (aliveAs(t)) {
      try {
        process.kill(t.pid, "SIGKILL");
      } catch {}
    }
  }

  /** Kills every tracked process by PID and removes the temp dir. Never throws. */
  cleanup(): void {
    for (const t of [...this.tracked].reverse()) this.stop(t.pid);
    for (const d of this.frrRunDirs) rmSync(d, { recursive: true, force: true });
    if (!process.env.KEEP_PEERS) rmSync(this.dir, { recursive: true, force: true });
  }

  // ---- BIRD 2 ------------------------------------------------------------------------------

  /** `extraArgs`: e.g. ["-R"] for BIRD's graceful restart recovery (sets the F bit). */
  startBird(ns: Netns, name: string, conf: string, extraArgs: string[] = []): BirdPeer {
    const d = this.subdir(name);
    const confPath = join(d, "bird.conf");
    const sock = join(d, "bird.ctl");
    writeFileSync(confPath, conf.replaceAll("@DIR@", d));
    rmSync(`${sock}.pid`, { force: true });
    ns.exec("bird", "-c", confPath, "-s", sock, "-P", `${sock}.pid`, ...extraArgs);
    const pid = readPidFile(`${sock}.pid`);
    this.track(pid, "bird", `bird@${ns.name}`);
    return new BirdPeer(pid, sock, d);
  }

  // ---- FRR ---------------------------------------------------------------------------------

  startFrr(ns: Netns, name: string, bgpdConf: string, zebraConf = "hostname frr\n"): FrrPeer {
    const d = this.subdir(name);
    writeFileSync(join(d, "zebra.conf"), zebraConf);
    writeFileSync(join(d, "bgpd.conf"), bgpdConf);
    this.frrRunDirs.push(frrRunDir(ns));
    const pids = startFrrDaemons(ns, d, 64 * 1024 * 1024);
    this.track(pids.zebra, "zebra", `zebra@${ns.name}`);
    this.track(pids.bgpd, "bgpd", `bgpd@${ns.name}`);
    return new FrrPeer(ns, pids.zebra, pids.bgpd, d);
  }

  /** FRR's zebra and bfdd (BFD, RFC 5880) in ns with `bfddConf` (frrBfdConf); vtysh -N ns. */
  startFrrBfd(ns: Netns, name: string, bfddConf: string): FrrPeer {
    const d = this.subdir(name);
    writeFileSync(join(d, "zebra.conf"), "hostname frr\n");
    writeFileSync(join(d, "bfdd.conf"), bfddConf);
    this.frrRunDirs.push(frrRunDir(ns));
    const pids = startFrrDaemons(ns, d, 16 * 1024 * 1024, ["zebra", "bfdd"]);
    this.track(pids.zebra, "zebra", `zebra@${ns.name}`);
    this.track(pids.bfdd, "bfdd", `bfdd@${ns.name}`);
    return new FrrPeer(ns, pids.zebra, pids.bfdd, d);
  }

  // ---- GoBGP -------------------------------------------------------------------------------

  startGobgp(ns: Netns, name: string, toml: string): GobgpPeer {
    const d = this.subdir(name);
    const conf = join(d, "gobgpd.toml");
    writeFileSync(conf, toml);
    const out = openSync(join(d, "gobgpd.log"), "a");
    const [cmd, args] = ns.wrap(
      "gobgpd",
      "-f",
      conf,
      "-p",
      "--pprof-disable",
      "--api-hosts",
      "127.0.0.1:50051",
    );
    const child = spawn(cmd, args, { stdio: ["ignore", out, out], detached: true });
    child.unref();
    const pid = child.pid as number;
    waitForComm(pid, "gobgpd");
    this.track(pid, "gobgpd", `gobgpd@${ns.name}`);
    return new GobgpPeer(ns, pid, d);
  }

  // ---- Ocelot ------------------------------------------------------------------------------

  /** Runs `ocelot bgpd --config` inside ns as a real process (needs `npm run build`). */
  startOcelot(ns: Netns, name: string, config: object, extraArgs: string[] = []): OcelotPeer {
    const d = this.subdir(name);
    const socket = join(d, "bgpd.sock");
    const cfg = { status: { socket }, ...config };
    const confPath = join(d, "bgpd.yaml");
    writeFileSync(confPath, `${JSON.stringify(cfg, null, 2)}\n`);
    const out = openSync(join(d, "bgpd.log"), "a");
    // OCELOT_NODE_ARGS: extra node flags for profiling (e.g. "--cpu-prof --cpu-prof-dir=/tmp/p").
    const nodeArgs = (process.env.OCELOT_NODE_ARGS ?? "").split(" ").filter(Boolean);
    // OCELOT_BIN_DIR: another build's bin/ (a benchmark's "before", as test/node/harness.ts).
    const [cmd, args] = ns.wrap(
      process.execPath,
      ...nodeArgs,
      join(process.env.OCELOT_BIN_DIR ?? join(REPO_ROOT, "bin"), "ocelot"),
      "bgpd",
      "--config",
      confPath,
      "--log-level",
      "debug",
      ...extraArgs,
    );
    rmSync(socket, { force: true });
    // Started once the status socket answers; one retry covers a start that failed because
    // dist/ was being rebuilt by a concurrent `npm run build`.
    for (let attempt = 1; ; attempt++) {
      const child: ChildProcess = spawn(cmd, args, { stdio: ["ignore", out, out], detached: true });
      child.unref();
      const pid = child.pid as number;
      const t: Tracked = { pid, comm: "node", what: `ocelot@${ns.name}` };
      try {
        waitForComm(pid, "node");
        this.track(pid, "node", t.what);
        const deadline = Date.now() + hangLimit();
        while (!existsSync(socket) && aliveAs(t) && Date.now() < deadline) sleepSync(50);
      } catch {}
      if (existsSync(socket)) return new OcelotPeer(ns, pid, d, socket, confPath);
      this.stop(pid);
      if (attempt >= 2) {
        const log = readFileSync(join(d, "bgpd.log"), "utf8").slice(-2000);
        throw new Error(`ocelot bgpd in ${ns.name} did not start; log tail:\n${log}`);
      }
      sleepSync(1000);
    }
  }
}

function waitForComm(pid: number, comm: string): void {
  const deadline = Date.now() + hangLimit();
  while (commOf(pid) !== comm && Date.now() < deadline) sleepSync(20);
  if (commOf(pid) !== comm) throw new Error(`Process ${pid} did not become ${comm}`);
}

export class BirdPeer {
  constructor(
    readonly pid: number,
    readonly socket: string,
    readonly dir: string,
  ) {}

  /** Runs `birdc -s SOCK args...` and returns its output. */
  cmd(...args: string[]): string {
    return sh("birdc", ["-s", this.socket, ...args]);
  }

  /** The state column of `show protocols NAME` (e.g. "Established"). */
  state(proto: string): string {
    const line = this.cmd("show", "protocols", proto)
      .split("\n")
      .find((l) => l.startsWith(`${proto} `));
    return line?.trim().split(/\s+/)[5] ?? "";
  }

  /** Rewrites bird.conf (@DIR@ as at start) and has BIRD apply it (`birdc configure`). */
  reconfigure(conf: string): string {
    writeFileSync(join(this.dir, "bird.conf"), conf.replaceAll("@DIR@", this.dir));
    return this.cmd("configure");
  }

  /** `show route all` output for one prefix (empty string when absent). */
  route(prefix: string): string {
    return this.cmd("show", "route", "for", prefix, "all");
  }

  log(): string {
    return readFileSync(join(this.dir, "bird.log"), "utf8");
  }
}

/**
 * A bfdd.conf: one BFD session per peer (its address, our local-address, RFC 5883 multihop when
 * asked), 300 ms both ways and a detect multiplier of 3; with `log`, debug lines to @LOG@.
 */
export function frrBfdConf(
  peers: readonly { peer: string; local: string; multihop?: boolean }[],
  o: { log?: boolean } = {},
): string {
  const sessions = peers.map(
    (p) =>
      ` peer ${p.peer}${p.multihop ? " multihop" : ""} local-address ${p.local}\n` +
      "  receive-interval 300\n  transmit-interval 300\n  detect-multiplier 3\n exit\n",
  );
  const log = o.log ? "log file @LOG@ debugging\n" : "";
  return `\nhostname frr\n${log}bfd\n${sessions.join("")}exit\n`;
}

export class FrrPeer {
  constructor(
    readonly ns: Netns,
    readonly zebraPid: number,
    readonly bgpdPid: number,
    readonly dir: string,
  ) {}

  vtysh(...cmds: string[]): string {
    const args = ["netns", "exec", this.ns.name, "vtysh", "-N", this.ns.name];
    for (const c of cmds) args.push("-c", c);
    const r = runSync("ip", args, { encoding: "utf8" });
    return r.stdout ?? "";
  }

  vtyshJson<T = unknown>(cmd: string): T {
    return JSON.parse(this.vtysh(cmd)) as T;
  }

  /** The neighbor's bgpState from `show bgp neighbors ADDR json`. */
  state(addr: string): string {
    try {
      const j = this.vtyshJson<Record<string, { bgpState?: string }>>(
        `show bgp neighbors ${addr} json`,
      );
      return j[addr]?.bgpState ?? "";
    } catch {
      return "";
    }
  }

  /** The first next hop of each of bgpd's IPv4 paths for prefix, sorted; [] when it has none. */
  nextHops(prefix: string): string[] {
    try {
      const j = this.vtyshJson<{ paths?: { nexthops?: { ip: string }[] }[] }>(
        `show bgp ipv4 unicast ${prefix} json`,
      );
      return (j.paths ?? []).map((p) => p.nexthops?.[0]?.ip ?? "").sort();
    } catch {
      return [];
    }
  }

  log(): string {
    return readFileSync(join(this.dir, "bgpd.log"), "utf8");
  }
}

export class GobgpPeer {
  constructor(
    readonly ns: Netns,
    readonly pid: number,
    readonly dir: string,
  ) {}

  cli(...args: string[]): string {
    return this.ns.exec("gobgp", ...args);
  }

  json<T = unknown>(...args: string[]): T {
    return JSON.parse(this.ns.exec("gobgp", ...args, "-j")) as T;
  }

  /** The session state of a neighbor ("established", "active", ...). */
  state(addr: string): string {
    try {
      const j = this.json<{ state?: { session_state?: number | string } }>("neighbor", addr);
      const s = j.state?.session_state;
      const names = [
        "unknown",
        "idle",
        "connect",
        "active",
        "opensent",
        "openconfirm",
        "established",
      ];
      return typeof s === "number" ? (names[s] ?? String(s)) : String(s ?? "");
    } catch {
      return "";
    }
  }
}

export interface OcelotPeerStatus {
  address: string;
  asn: number;
  state: string;
  lastError?: { kind: string; code?: number; subcode?: number; message?: string } | null;
  prefixes: { received: number; accepted: number; advertised: number };
  /** Families kept stale while the peer restarts, with the helper timer of each. */
  staleFamilies?: { family: string; timer: string }[];
  [k: string]: unknown;
}

export class OcelotPeer {
  constructor(
    readonly ns: Netns,
    readonly pid: number,
    readonly dir: string,
    readonly socket: string,
    readonly configPath: string,
  ) {}

  private cli(cmd: string): unknown {
    const out = sh(process.execPath, [
      join(REPO_ROOT, "bin/ocelot"),
      cmd,
      "--json",
      "--socket",
      this.socket,
    ]);
    return JSON.parse(out);
  }

  /** `ocelot status` as a person reads it (the table). */
  statusText(): string {
    return sh(process.execPath, [join(REPO_ROOT, "bin/ocelot"), "status", "--socket", this.socket]);
  }

  status(): { peers: OcelotPeerStatus[]; [k: string]: unknown } {
    return this.cli("status") as { peers: OcelotPeerStatus[] };
  }

  routes(): { routes: { prefix: string; [k: string]: unknown }[] } {
    return this.cli("routes") as { routes: { prefix: string }[] };
  }

  peer(addr: string): OcelotPeerStatus | undefined {
    try {
      return this.status().peers.find((p) => p.address === addr);
    } catch {
      return undefined;
    }
  }

  log(): string {
    return readFileSync(join(this.dir, "bgpd.log"), "utf8");
  }

  /** bgpd's log as JSON lines (pino), skipping any line that is not JSON. */
  logLines<T>(): T[] {
    return this.log()
      .split("\n")
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as T];
        } catch {
          return [];
        }
      });
  }

  /** Waits until the session with addr is Established. */
  async established(addr: string, timeoutMs = 20_000): Promise<void> {
    await waitFor(
      `ocelot session with ${addr} Established`,
      () => this.peer(addr)?.state === "Established",
      timeoutMs,
      100,
    );
  }
}

/** IPv4/IPv6 routes in a namespace's main table, as `ip -j route` reports them. */
export interface KernelRoute {
  dst: string;
  gateway?: string;
  protocol?: string;
  nexthops?: { gateway?: string }[];
  type?: string;
  table?: string;
  metric?: number;
}

/**
 * bgpd and one BIRD over 10.255.n.0/30, eBGP: BIRD (10.255.n.2, AS 65000+n, passive) announces
 * `prefix` (a static blackhole); bgpd (10.255.n.1, AS 64512, listening on 0.0.0.0:179, connect
 * retry 1 s) installs it with FIB protocol 201 in main, a 60 s graceful-restart hold.
 */
export function staticBirdPeer(n: number, prefix: string): { birdConf: string; config: object } {
  const birdConf = `
log "@DIR@/bird.log" all;
router id 10.255.${n}.2;
protocol device { }
protocol static s4 { ipv4; route ${prefix} blackhole; }
protocol bgp oc4 {
  local 10.255.${n}.2 as ${65000 + n}; neighbor 10.255.${n}.1 as 64512; passive on;
  ipv4 { import all; export where source = RTS_STATIC; };
}`;
  const config = {
    asn: 64512,
    routerId: `10.255.${n}.1`,
    listen: { address: "0.0.0.0", port: 179 },
    peers: [
      { address: `10.255.${n}.2`, asn: 65000 + n, connectRetryTime: 1, families: ["ipv4-unicast"] },
    ],
    fib: { enabled: true, table: "main", protocol: 201, gracefulRestartTime: 60 },
  };
  return { birdConf, config };
}

/** The TCP-MD5 drop counters of a namespace (TcpExt in its /proc/net/netstat). */
export interface TcpMd5Counters {
  failure: number;
  unexpected: number;
  notFound: number;
}

export function tcpMd5Counters(ns: Netns): TcpMd5Counters {
  const lines = ns
    .exec("cat", "/proc/net/netstat")
    .split("\n")
    .filter((l) => l.startsWith("TcpExt:"));
  const names = (lines[0] ?? "").split(/\s+/);
  const values = (lines[1] ?? "").split(/\s+/);
  const get = (n: string) => {
    const i = names.indexOf(n);
    if (i < 1) throw new Error(`No TcpExt ${n} in /proc/net/netstat of ${ns.name}`);
    return Number(values[i]);
  };
  return {
    failure: get("TCPMD5Failure"),
    unexpected: get("TCPMD5Unexpected"),
    notFound: get("TCPMD5NotFound"),
  };
}

export function kernelRoutes(ns: Netns, family: 4 | 6): KernelRoute[] {
  return ns.ipJson<KernelRoute[]>(`-${family}`, "route", "show");
}
