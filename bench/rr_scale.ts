// BGP at cluster scale (as root): one DUT (`ocelot bgpd` or BIRD 2) in its own namespace with N
// iBGP peers played by a load generator of our own built on our codec (src/bgp/wire): one Node
// process in a second namespace, one socket per peer, each from its own address (10.210.x.y)
// with its own router ID, each announcing its /26 (10.128.0.0/16 + 64·i). The addresses are
// /32s behind the generator's 10.210.0.2 (the DUT routes them through it: one ARP entry, where
// 1,000 overflowed the host-wide neighbour table); in mesh mode the DUT's side of the link is
// the /16, so that the peers' addresses are on-link next hops for the routes it installs, and
// their /24s are routed through the generator (OCELOT_BENCH_ON_LINK=1: every peer on the link).
//  - mode "rr": the DUT is a route reflector, every peer its client. Timed from a cold start
//    until every client holds every other client's /26 (the generator counts received prefixes
//    per client); then 10 % of the clients reset at once (Cease/Administrative Reset, reconnect):
//    until every client holds all again. The DUT's RSS and CPU seconds at each point.
//  - mode "mesh": the DUT is one node of a full mesh (peers not clients, no reflection), it
//    originates its own /26 and installs the peers' N in its kernel: timed until its kernel
//    holds all N and every peer holds its /26.
// In both: sessions closed by anything but us (a NOTIFICATION received, a hold timer run out on
// either side) are counted; the goal is none. The generator runs as this file with --generator
// (inside the namespace), commands on stdin, events as JSON lines on stdout.
// The Ocelot DUT is `ocelot bgpd` with the peers as routeReflectorClient (what `ocelot node run`
// configures from routeReflectorClusterID, without 1,000 Node resources in etcd).
// test/bgp/rr_scale.bird.test.ts runs runScenario() at 50 peers.
// The DUT's namespace has tcp_abort_on_overflow=1 (a handshake its full accept queue cannot
// take is reset, and the generator reconnects a second later) and the generator drops a connect
// that has no SYN-ACK within --open-timeout ms (default 3000) and opens it again at once, so a
// connection lost to a full listen queue costs about that, not the kernel's back-off (up to
// 31 s; it made BIRD's time range 5.8-109.8 s); refusals and retries are counted and printed,
// with the listen-queue overflows and the generator's own CPU.
// Run: npx tsx bench/rr_scale.ts [--n 1000] [--modes rr,mesh] [--targets bird,ocelot] [--hold 30]
//      [--window 50] [--open-timeout 3000] [--no-abort-on-overflow] [--rounds R] [--old DIR]
//      [--raise-neigh-thresh] (the host's ARP table limit, host-wide: see runScenario)
//   --old DIR: another build's bin/ as one more Ocelot DUT ("old"); --rounds R: the DUTs in turn,
//   R times (ratios within a round, medians at the end).
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { loadavg } from "node:os";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { CeaseSubcode, NotificationCode } from "../src/bgp/wire/constants.js";
import { MessageFramer } from "../src/bgp/wire/framer.js";
import { encodeKeepalive, encodeNotification } from "../src/bgp/wire/message.js";
import { forEachIpv4Prefix, newPrefixArray } from "../src/bgp/wire/nlri.js";
import { encodeOpen } from "../src/bgp/wire/open.js";
import {
  emptyAttributes,
  Ipv4Unicast,
  Rfc7606Action,
  sessionOptions,
} from "../src/bgp/wire/types.js";
import { decodeUpdate, encodeEndOfRib, encodeUpdates } from "../src/bgp/wire/update.js";

export const ASN = 64512;
export const DUT_ADDR = "10.210.0.1";
const GEN_ADDR = "10.210.0.2";
/** The DUT's own /26 in mesh mode. */
export const DUT_PREFIX = "10.129.0.0/26";
const PREFIX_BASE = (10 << 24) | (128 << 16);

const ipNum = (t: string) => t.split(".").reduce((a, o) => a * 256 + Number(o), 0) >>> 0;
/** Peer i's address: 10.210.(1 + i / 250).(1 + i % 250). */
export const peerAddr = (i: number) => `10.210.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
export const peerPrefix = (i: number) => (PREFIX_BASE + i * 64) >>> 0;

// ---- the generator (runs inside the peers' namespace) -----------------------------------------

/** A client's /26: inside 10.128.0.0/16 on a 64-address boundary. */
function isClientPrefix(a: number, len: number): boolean {
  return len === 26 && a >>> 16 === PREFIX_BASE >>> 16 && (a & 63) === 0;
}

/** IPv4 prefixes of an UPDATE's withdrawn routes and NLRI (address, length pairs), in place. */
export function walkUpdate(m: Uint8Array): {
  withdrawn: number[];
  nlri: number[];
  hasAttributes: boolean;
} {
  const walk = (from: number, to: number): number[] => {
    const out: number[] = [];
    let i = from;
    while (i < to) {
      const len = m[i++] as number;
      let a = 0;
      for (let b = 0; b < 4; b++) a = (a << 8) | (b < (len + 7) >> 3 ? (m[i + b] as number) : 0);
      i += (len + 7) >> 3;
      out.push(len === 0 ? 0 : (a & (0xffffffff << (32 - len))) >>> 0, len);
    }
    return out;
  };
  const wLen = ((m[19] as number) << 8) | (m[20] as number);
  const aAt = 21 + wLen;
  const aLen = ((m[aAt] as number) << 8) | (m[aAt + 1] as number);
  const total = ((m[16] as number) << 8) | (m[17] as number);
  return {
    withdrawn: walk(21, aAt),
    nlri: walk(aAt + 2 + aLen, total),
    hasAttributes: aLen > 0,
  };
}

interface GenOpts {
  n: number;
  hold: number;
  /** Prefixes each peer must hold: "others" (every other peer's /26) or the DUT's one. */
  expect: "others" | "dut";
  /** At most this many sessions between connect and Established at once. */
  window: number;
  /**
   * A connect that has not completed (no SYN-ACK) within this many ms is dropped and opened
   * again at once (a peer's connect-retry timer, short): a SYN the DUT's full listen queue
   * dropped would otherwise wait for the kernel's back-off (1, 3, 7, 15, 31 s) and that back-off,
   * not the DUT, would set the time. A connection that completed is never dropped (a DUT slow
   * to send its OPEN is measured as it is). 0: never.
   */
  openTimeoutMs: number;
}

interface Client {
  i: number;
  addr: string;
  prefix: number;
  sock: net.Socket | null;
  up: boolean;
  /** Bumped on every reset: a session of an older epoch closing is expected. */
  epoch: number;
  resetting: boolean;
  received: Set<number>;
  /** UPDATEs received on this session (the first is decoded in full as a check). */
  updates: number;
  lastRx: number;
  lastTx: number;
  hold: number;
}

function runGenerator(o: GenOpts): void {
  const opts = sessionOptions({ fourOctetAs: true });
  const dutPrefix = ipNum(DUT_PREFIX.split("/")[0] as string);
  const want = o.expect === "others" ? o.n - 1 : 1;
  const out = (ev: object) => process.stdout.write(`${JSON.stringify(ev)}\n`);
  const stats = {
    notificationsRx: {} as Record<string, number>,
    holdExpiredHere: 0,
    unexpectedCloses: 0,
    refusedConnections: 0,
    maxGapMs: 0,
    connectErrors: 0,
    /** Connects dropped and opened again because the SYN-ACK did not come in time. */
    openRetries: 0,
    /** UPDATEs decoded in full (the first of each session) whose prefixes the fast walk disagreed on. */
    parseMismatches: 0,
    /** Prefixes received that are no client's /26 (or, in mesh mode, not the DUT's). */
    unexpectedPrefixes: 0,
  };
  const clients: Client[] = Array.from({ length: o.n }, (_, i) => ({
    i,
    addr: peerAddr(i),
    prefix: peerPrefix(i),
    sock: null,
    up: false,
    epoch: 0,
    resetting: false,
    received: new Set(),
    updates: 0,
    lastRx: 0,
    lastTx: 0,
    hold: o.hold,
  }));

  const countOf = (c: Client) => c.received.size;
  const full = (c: Client) => c.up && countOf(c) >= want;

  function announce(c: Client): Uint8Array[] {
    const pa = newPrefixArray(1, 1);
    pa.addrs[0] = c.prefix;
    pa.lens[0] = 26;
    pa.count = 1;
    const attributes = {
      ...emptyAttributes(),
      origin: 0,
      asPath: [],
      nextHop: ipNum(c.addr),
      localPref: 100,
    };
    return [
      ...encodeUpdates({ afi: 1, safi: 1, attributes, announce: pa }, opts),
      encodeEndOfRib(Ipv4Unicast),
    ];
  }

  function send(c: Client, m: Uint8Array): void {
    if (!c.sock || c.sock.destroyed) return;
    c.sock.write(m);
    c.lastTx = Date.now();
  }

  function onMessage(c: Client, m: Uint8Array): void {
    const type = m[18];
    if (type === 1) {
      const hold = (m[22] << 8) | m[23];
      c.hold = Math.min(o.hold, hold);
      send(c, encodeKeepalive());
    } else if (type === 4) {
      if (!c.up) {
        c.up = true;
        opened(c);
        for (const u of announce(c)) send(c, u);
      }
    } else if (type === 2) {
      // The generator reads ~1M one-route UPDATEs at 1,000 clients, on the same two cores as the
      // DUT: it walks the withdrawn routes and the NLRI in place (no attribute decoding), and
      // decodes the first UPDATE of each session in full to check that walk.
      const w = walkUpdate(m);
      if (c.updates++ === 0) {
        const u = decodeUpdate(m, opts);
        const ok = u.attributes !== null && u.action !== Rfc7606Action.TreatAsWithdraw;
        const nlri: number[] = [];
        const wd: number[] = [];
        forEachIpv4Prefix(u.nlri, (a, len) => nlri.push(a, len));
        forEachIpv4Prefix(u.withdrawn, (a, len) => wd.push(a, len));
        if (
          ok !== w.hasAttributes ||
          nlri.join() !== w.nlri.join() ||
          wd.join() !== w.withdrawn.join()
        )
          stats.parseMismatches++;
      }
      for (let k = 0; k < w.withdrawn.length; k += 2) c.received.delete(w.withdrawn[k] as number);
      for (let k = 0; k < w.nlri.length; k += 2) {
        const a = w.nlri[k] as number;
        if (a === c.prefix) continue;
        if (o.expect === "dut" ? a !== dutPrefix : !isClientPrefix(a, w.nlri[k + 1] as number)) {
          stats.unexpectedPrefixes++;
          continue;
        }
        if (w.hasAttributes) c.received.add(a);
        else c.received.delete(a);
      }
    } else if (type === 3) {
      const key = `${m[19]}/${m[20]}`;
      stats.notificationsRx[key] = (stats.notificationsRx[key] ?? 0) + 1;
    }
  }

  // Connections are opened through a window, as peers' connect-retry timers spread them: all
  // N SYNs at once overflow the DUT's listen backlog and the kernel's SYN back-off then
  // dominates what is measured.
  const queue: Client[] = [];
  const opening = new Set<Client>();
  function pump(): void {
    while (opening.size < o.window && queue.length > 0) {
      const c = queue.shift() as Client;
      opening.add(c);
      connect(c);
    }
  }
  function enqueue(c: Client): void {
    queue.push(c);
    pump();
  }
  function opened(c: Client): void {
    if (opening.delete(c)) pump();
  }

  function connect(c: Client): void {
    const epoch = c.epoch;
    const sock = net.connect({ host: DUT_ADDR, port: 179, localAddress: c.addr });
    c.sock = sock;
    c.up = false;
    c.updates = 0;
    c.received.clear();
    const framer = new MessageFramer(4096);
    sock.setNoDelay(true);
    let retry = false;
    // Decided after this turn's I/O (setImmediate runs after the poll phase): a SYN-ACK that
    // arrived while this busy process was late to its timers is read first, and such a
    // connection is not dropped (a drop after the DUT accepted it is a closed session to it).
    const arm = (ms: number): ReturnType<typeof setTimeout> =>
      setTimeout(
        () =>
          setImmediate(() => {
            if (!sock.connecting || c.sock !== sock) return;
            retry = true;
            stats.openRetries++;
            sock.destroy();
          }),
        ms,
      );
    const openTimer = o.openTimeoutMs > 0 ? arm(o.openTimeoutMs) : undefined;
    sock.on("connect", () => {
      clearTimeout(openTimer);
      c.lastRx = Date.now();
      send(
        c,
        encodeOpen({
          version: 4,
          myAs: ASN,
          holdTime: o.hold,
          bgpIdentifier: ipNum(c.addr),
          capabilities: [
            { kind: "Multiprotocol", afi: 1, safi: 1 },
            { kind: "RouteRefresh" },
            { kind: "FourOctetAs", asn: ASN },
          ],
        }),
      );
    });
    sock.on("data", (d: Buffer) => {
      const now = Date.now();
      if (c.up) stats.maxGapMs = Math.max(stats.maxGapMs, now - c.lastRx);
      c.lastRx = now;
      for (const m of framer.push(d)) onMessage(c, m);
    });
    sock.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ECONNREFUSED" || e.code === "ECONNRESET") stats.connectErrors++;
    });
    sock.on("close", () => {
      clearTimeout(openTimer);
      if (c.sock !== sock) return;
      c.sock = null;
      c.up = false;
      c.received.clear();
      if (retry) {
        opened(c);
        enqueue(c);
        return;
      }
      // Closed by the DUT: an established session dropped, or a connection refused before it.
      if (c.epoch === epoch && !c.resetting) {
        if (c.up) stats.unexpectedCloses++;
        else stats.refusedConnections++;
      }
      c.resetting = false;
      opened(c);
      // Reconnect: at once after our own reset, else after a second (as a restarting peer).
      setTimeout(() => enqueue(c), c.epoch === epoch ? 1000 : 20);
    });
  }

  // Keepalives at a third of the hold time; our own hold timer.
  setInterval(() => {
    const now = Date.now();
    for (const c of clients) {
      if (!c.sock || c.sock.destroyed || c.lastRx === 0) continue;
      if (now - c.lastTx >= (c.hold * 1000) / 3) send(c, encodeKeepalive());
      if (c.up && now - c.lastRx > c.hold * 1000) {
        stats.holdExpiredHere++;
        send(c, encodeNotification({ code: NotificationCode.HoldTimerExpired, subcode: 0 }));
        c.sock.destroy();
      }
    }
  }, 250).unref();

  let waiting: { what: string; t0: number; reset: Client[]; upMs?: number } | null = null;
  setInterval(() => {
    const up = clients.filter((c) => c.up).length;
    const done = clients.filter(full).length;
    if (waiting) {
      const resetBack = waiting.reset.every((c) => c.epoch > 0 && full(c));
      // When every session was first Established (of those reset: every one again).
      if (waiting.upMs === undefined && up === o.n && waiting.reset.every((c) => c.epoch > 0))
        waiting.upMs = Date.now() - waiting.t0;
      if (done === o.n && resetBack) {
        const ms = Date.now() - waiting.t0;
        out({ ev: waiting.what, at: Date.now(), ms, upMs: waiting.upMs ?? ms });
        waiting = null;
      }
    }
    out({ ev: "progress", up, full: done, at: Date.now() });
  }, 100).unref();

  const rl = createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    const cmd = JSON.parse(line) as { cmd: string; k?: number };
    if (cmd.cmd === "start") {
      waiting = { what: "full", t0: Date.now(), reset: [] };
      for (const c of clients) enqueue(c);
    } else if (cmd.cmd === "reset") {
      const k = cmd.k ?? Math.ceil(o.n / 10);
      const step = o.n / k;
      const chosen = Array.from({ length: k }, (_, j) => clients[Math.floor(j * step)] as Client);
      waiting = { what: "back", t0: Date.now(), reset: chosen };
      for (const c of chosen) {
        c.epoch++;
        c.resetting = true;
        send(
          c,
          encodeNotification({
            code: NotificationCode.Cease,
            subcode: CeaseSubcode.AdministrativeReset,
          }),
        );
        c.sock?.end();
        c.up = false;
        c.received.clear();
      }
    } else if (cmd.cmd === "stats") {
      out({ ev: "stats", ...stats });
    } else if (cmd.cmd === "quit") {
      for (const c of clients) c.sock?.destroy();
      process.exit(0);
    }
  });
  rl.on("close", () => process.exit(0));
  out({ ev: "ready" });
}

// ---- the scenario (parent side) ----------------------------------------------------------------

export type Target = "ocelot" | "bird";
export type Mode = "rr" | "mesh";

export interface ScenarioOpts {
  target: Target;
  mode: Mode;
  n: number;
  /** Hold time the peers offer, s (the DUT is configured with the same). */
  hold?: number;
  /** Sessions opening at once (default 50). */
  window?: number;
  /** The DUT's namespace resets a handshake its full accept queue cannot take (default true). */
  abortOnOverflow?: boolean;
  /** The generator's connect-retry for a connect without a SYN-ACK, ms (default 3000; 0: off). */
  openTimeoutMs?: number;
  /** Reset 10 % of the peers after convergence (rr mode). */
  reset?: boolean;
  /** Limit on each phase, ms. */
  limitMs?: number;
  /**
   * The Ocelot DUT's variant: node flags (OCELOT_NODE_ARGS of test/helpers/peers.ts) and
   * NAME=VALUE environment variables, space-separated (e.g. "OCELOT_V8_HEAP_GROWING=default").
   */
  nodeArgs?: string;
  log?: (s: string) => void;
}

export interface ProcCost {
  rssMiB: number;
  hwmMiB: number;
  /** VmRSS in parts (/proc/PID/status): the process's own memory, mapped files, shared memory. */
  anonMiB: number;
  fileMiB: number;
  shmemMiB: number;
  cpuS: number;
  /** cpuS in parts: user space, and the kernel (system calls: socket writes and reads). */
  userS: number;
  sysS: number;
  /** The Ocelot DUT's V8 heap (its status socket), MiB. */
  heapUsedMiB?: number;
  heapTotalMiB?: number;
}

export interface ScenarioResult {
  target: Target;
  mode: Mode;
  n: number;
  /** Cold start until converged, ms (null: not within the limit). */
  convergeMs: number | null;
  /** Cold start until every session was Established, ms. */
  allUpMs: number | null;
  atConverged: ProcCost;
  /** 10 % reset until all back, ms. */
  resetMs: number | null;
  atEnd: ProcCost;
  resetCount: number;
  notificationsRx: Record<string, number>;
  holdExpiredHere: number;
  /** Established sessions the DUT closed. */
  unexpectedCloses: number;
  /** Connections the DUT closed before Established (e.g. BIRD before its protocol is ready). */
  refusedConnections: number;
  maxGapMs: number;
  /** The largest RssAnon sampled every 100 ms, MiB. */
  peakAnonMiB: number;
  /** DUT routes (mesh: in its kernel) from the peers at the end. */
  dutRoutes: number;
  /** SYNs the DUT's kernel dropped for a full listen queue (TcpExtListenOverflows). */
  listenOverflows: number;
  /**
   * Other SYN-path counters of the DUT's namespace, and the generator's (nstat names without
   * TcpExt): where a connect without a SYN-ACK went.
   */
  synDrops: { dut: Record<string, number>; gen: Record<string, number> };
  /** TCP segments the DUT's namespace sent over the whole run. */
  outSegs: number;
  /** The generator's own CPU over the whole run (it shares the machine's cores with the DUT). */
  generator: ProcCost;
  /** Connections the generator dropped and opened again for want of the DUT's OPEN. */
  openRetries: number;
  /** Self-checks of the generator's UPDATE walk that failed, and prefixes nobody announced. */
  parseMismatches: number;
  unexpectedPrefixes: number;
}

const SYN_COUNTERS = [
  "ListenDrops",
  "TCPReqQFullDrop",
  "TCPReqQFullDoCookies",
  "TCPBacklogDrop",
  "TCPTimeouts",
  "TCPSynRetrans",
];

/**
 * Room for n neighbours in the host's ARP table (see runScenario): raised with
 * OCELOT_BENCH_RAISE_NEIGH=1 (--raise-neigh-thresh; a host-wide setting, left raised), else a
 * warning when gc_thresh3 is below twice n.
 */
function checkNeighbourRoom(n: number, log: (s: string) => void): void {
  const path = "/proc/sys/net/ipv4/neigh/default/gc_thresh3";
  let have = 0;
  try {
    have = Number(readFileSync(path, "utf8").trim());
  } catch {
    return;
  }
  if (have >= 2 * n) return;
  if (process.env.OCELOT_BENCH_RAISE_NEIGH === "1") {
    const want = Math.max(4 * n, 4096);
    writeFileSync("/proc/sys/net/ipv4/neigh/default/gc_thresh2", `${want / 2}\n`);
    writeFileSync(path, `${want}\n`);
    log(`host ARP table: gc_thresh3 raised from ${have} to ${want} (host-wide)`);
    return;
  }
  log(
    `WARNING: the host's ARP table holds at most ${have} entries (gc_thresh3, shared by every namespace) for ${n} clients: expect "neighbor table overflow" and late clients; --raise-neigh-thresh raises it`,
  );
}

/** A counter of `nstat -az` in a namespace (-1 when nstat fails). */
function nstat(ns: { exec(cmd: string, ...args: string[]): string }, name: string): number {
  try {
    const t = ns.exec("nstat", "-az", name);
    return Number(new RegExp(`${name}\\s+(\\d+)`).exec(t)?.[1] ?? -1);
  } catch {
    return -1;
  }
}

export function procCost(pid: number): ProcCost {
  const st = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(st)?.[1] ?? Number.NaN);
  // utime and stime are fields 14 and 15; the comm (field 2) may hold spaces, so cut after ')'.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(f[11]) + Number(f[12]);
  return {
    userS: Number(f[11]) / 100,
    sysS: Number(f[12]) / 100,
    rssMiB: kb("VmRSS") / 1024,
    hwmMiB: kb("VmHWM") / 1024,
    anonMiB: kb("RssAnon") / 1024,
    fileMiB: kb("RssFile") / 1024,
    shmemMiB: kb("RssShmem") / 1024,
    cpuS: ticks / 100,
  };
}

/**
 * A process's anonymous memory by where it lives (/proc/PID/smaps), MiB: glibc's main arena
 * (`[heap]`, the brk area: malloc's small chunks, Node's socket handles and read buffers),
 * anonymous mappings of at most 1 MiB (V8's heap pages are 256 KiB each; glibc's mmap'd
 * chunks), larger ones (glibc's thread arenas, V8's large-object and code areas), and the rest
 * (stacks, copied-on-write pages of files).
 */
export function anonParts(pid: number): {
  brk: number;
  small: number;
  smallCount: number;
  large: number;
  other: number;
} {
  const out = { brk: 0, small: 0, smallCount: 0, large: 0, other: 0 };
  let size = 0;
  let kind: "brk" | "small" | "large" | "other" = "other";
  for (const l of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ (\d+)\s*(.*)$/.exec(l);
    if (m) {
      size = (Number.parseInt(m[2] as string, 16) - Number.parseInt(m[1] as string, 16)) / 1024;
      const name = (m[4] as string).trim();
      kind =
        name === "[heap]"
          ? "brk"
          : m[3] !== "0" || name !== ""
            ? "other"
            : size <= 1024
              ? "small"
              : "large";
      continue;
    }
    const a = /^Anonymous:\s+(\d+) kB/.exec(l);
    if (a && Number(a[1]) > 0) {
      out[kind] += Number(a[1]) / 1024;
      if (kind === "small") out.smallCount++;
    }
  }
  return out;
}

export function anonPartsLine(pid: number): string {
  try {
    const p = anonParts(pid);
    return `anon by place: malloc brk ${f1(p.brk)} + mappings <= 1 MiB ${f1(p.small)} (${p.smallCount}) + larger ${f1(p.large)} + other ${f1(p.other)} MiB`;
  } catch (e) {
    return `anon by place: ${(e as Error).message}`;
  }
}

/** CPU seconds since `before` (the memory figures are those of `c`). */
export function since(c: ProcCost, before: ProcCost): ProcCost {
  return {
    ...c,
    cpuS: c.cpuS - before.cpuS,
    userS: c.userS - before.userS,
    sysS: c.sysS - before.sysS,
  };
}

/**
 * Runs start() with a variant's environment: its NAME=VALUE words as variables, the other words
 * as OCELOT_NODE_ARGS (node flags); restored after.
 */
function withVariant<T>(variant: string | undefined, start: () => T): T {
  if (variant === undefined) return start();
  const words = variant.split(" ").filter(Boolean);
  const vars: Record<string, string> = {};
  for (const w of words.filter((w) => /^[A-Z_][A-Z0-9_]*=/.test(w)))
    vars[w.slice(0, w.indexOf("="))] = w.slice(w.indexOf("=") + 1);
  const flags = words.filter((w) => !/^[A-Z_][A-Z0-9_]*=/.test(w));
  if (flags.length > 0) vars.OCELOT_NODE_ARGS = flags.join(" ");
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return start();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

export function birdConf(mode: Mode, n: number, hold: number): string {
  const peers = Array.from(
    { length: n },
    (_, i) => `protocol bgp p${i} from peers { neighbor ${peerAddr(i)} as ${ASN}; }`,
  );
  return `log "@DIR@/bird.log" { info, warning, error, fatal };
router id ${DUT_ADDR};
protocol device { }
protocol direct { ipv4; }
${
  mode === "mesh"
    ? `protocol static own { ipv4; route ${DUT_PREFIX} blackhole; }
protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; merge paths on; }`
    : ""
}
template bgp peers {
  local ${DUT_ADDR} as ${ASN};
  ${mode === "rr" ? `rr client; rr cluster id ${DUT_ADDR};` : ""}
  passive on;
  hold time ${hold};
  error wait time 1, 10;
  ipv4 { import all; export ${mode === "mesh" ? "where source = RTS_STATIC" : "all"}; };
}
${peers.join("\n")}
`;
}

export function ocelotConf(mode: Mode, n: number, hold: number): object {
  return {
    asn: ASN,
    routerId: DUT_ADDR,
    listen: { address: DUT_ADDR, port: 179 },
    ...(mode === "rr" ? { clusterId: DUT_ADDR } : {}),
    peers: Array.from({ length: n }, (_, i) => ({
      address: peerAddr(i),
      asn: ASN,
      passive: true,
      holdTime: hold,
      routeReflectorClient: mode === "rr",
    })),
    originate: mode === "mesh" ? [{ prefix: DUT_PREFIX }] : [],
    fib: { enabled: mode === "mesh" },
  };
}

/** A generator child process: commands as JSON lines to its stdin, events from its stdout. */
export class Generator {
  private readonly events: Array<{ ev: string; [k: string]: unknown }> = [];
  private waiters: Array<() => void> = [];
  last: { up: number; full: number } = { up: 0, full: 0 };

  constructor(readonly child: ChildProcess) {
    const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    rl.on("line", (line) => {
      let ev: { ev: string; [k: string]: unknown };
      try {
        ev = JSON.parse(line);
      } catch {
        return;
      }
      if (ev.ev === "progress") this.last = ev as unknown as { up: number; full: number };
      else this.events.push(ev);
      for (const w of this.waiters.splice(0)) w();
    });
    child.on("exit", () => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  send(cmd: object): void {
    this.child.stdin?.write(`${JSON.stringify(cmd)}\n`);
  }

  /** Asks the child to quit; kills it (by its PID) if it has not exited within 5 s. */
  async quit(): Promise<void> {
    const p = this.child;
    if (!p.pid || p.exitCode !== null) return;
    this.send({ cmd: "quit" });
    await new Promise((r) => {
      const t = setTimeout(r, 5000);
      p.once("exit", () => {
        clearTimeout(t);
        r(null);
      });
    });
    if (p.exitCode === null && p.pid) {
      try {
        process.kill(p.pid, "SIGKILL");
      } catch {}
    }
  }

  /** The next event named ev (or null once limitMs passed or the generator exited). */
  async next(ev: string, limitMs: number): Promise<{ [k: string]: unknown } | null> {
    const deadline = Date.now() + limitMs;
    for (;;) {
      const i = this.events.findIndex((e) => e.ev === ev);
      if (i >= 0) return this.events.splice(i, 1)[0] ?? null;
      if (Date.now() > deadline || this.child.exitCode !== null) return null;
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 250);
      });
    }
  }
}

const BENCH_FILE = fileURLToPath(import.meta.url);

/** One DUT and its N peers, brought up, measured and taken down. Needs root and `npm run build`. */
export async function runScenario(o: ScenarioOpts): Promise<ScenarioResult> {
  const { link, Netns } = await import("../test/helpers/netns.js");
  const { PeerLab, REPO_ROOT } = await import("../test/helpers/peers.js");
  const { sh } = await import("../test/helpers/netns.js");
  const hold = o.hold ?? 30;
  const limitMs = o.limitMs ?? 600_000;
  const log = o.log ?? ((s: string) => console.error(s));
  const tag = `[${o.target}${o.nodeArgs ? ` ${o.nodeArgs}` : ""} ${o.mode} N=${o.n}]`;
  const lab = new PeerLab();
  const dutNs = Netns.create(`${o.mode}d`);
  const genNs = Netns.create(`${o.mode}g`);
  let gen: Generator | null = null;
  try {
    // The clients' addresses sit behind the generator's (/32s on its side of a /24 link, routed
    // through it), so the DUT's kernel needs one neighbour, not N: the host's ARP table is shared
    // by every namespace (see checkNeighbourRoom) and overflowed at 1,000 clients. In mesh mode
    // the DUT installs the peers' routes with the peers' own addresses as next hops: its side
    // of the link is the /16 (the next hops are on-link for the kernel's gateway check, which
    // looks only at link-scope routes) and the /24s of the peers are routed through the
    // generator (the longer match, so the sessions' packets go to it: still one neighbour).
    // OCELOT_BENCH_ON_LINK=1: the old layout, every peer a neighbour on the /16.
    const routed = process.env.OCELOT_BENCH_ON_LINK !== "1";
    const dutLen = routed && o.mode === "rr" ? 24 : 16;
    link(
      genNs,
      "gen-dut",
      `${GEN_ADDR}/${routed ? 24 : 16}`,
      dutNs,
      "dut-gen",
      `${DUT_ADDR}/${dutLen}`,
    );
    if (routed && o.mode === "rr")
      dutNs.exec("ip", "route", "add", "10.210.0.0/16", "via", GEN_ADDR);
    if (routed && o.mode === "mesh")
      for (let b = 1; b <= 1 + Math.floor((o.n - 1) / 250); b++)
        dutNs.exec("ip", "route", "add", `10.210.${b}.0/24`, "via", GEN_ADDR);
    // Without the routed layout the DUT has N neighbours on one link: room for them in the ARP
    // table. Its limits (gc_thresh1-3) are the host's, not the namespace's (the namespace has no
    // such sysctl), and shared with every namespace on the host: at the default gc_thresh3 of
    // 1,024 the kernel logs "neighbor table overflow", a SYN-ACK to a client without an entry
    // is lost and that client waits for its SYN to be resent (the tail of a few clients 3-8 s
    // late seen in some runs). Raised on the host only when asked (--raise-neigh-thresh), else
    // warned about.
    if (!routed) checkNeighbourRoom(o.n, log);
    // The DUT's kernel answers a handshake its full accept queue cannot take with a RST
    // (tcp_abort_on_overflow) instead of dropping the client's ACK and resending SYN-ACKs with
    // back-off (1, 3, 7, 15 s: BIRD's listen queue is short, and that back-off made its time
    // range 5.8-109.8 s); the generator reconnects a second later, as after any refusal.
    if (o.abortOnOverflow ?? true) dutNs.exec("sysctl", "-qw", "net.ipv4.tcp_abort_on_overflow=1");
    const batch = Array.from(
      { length: o.n },
      (_, i) => `addr add ${peerAddr(i)}/${routed ? 32 : 16} dev gen-dut`,
    ).join("\n");
    sh("ip", ["-n", genNs.name, "-batch", "-"], `${batch}\n`);
    let pid: number;
    let dutRoutes: () => number;
    /** The Ocelot DUT's memory from its status socket (OCELOT_MEM_TRACE). */
    let dutMemory: (() => object | undefined) | null = null;
    const kernelCount = () => {
      const routes = dutNs.ipJson<{ dst: string }[]>("-4", "route", "show");
      return routes.filter((r) => r.dst.startsWith("10.128.")).length;
    };
    if (o.target === "bird") {
      const bird = lab.startBird(dutNs, "bird", birdConf(o.mode, o.n, hold));
      pid = bird.pid;
      dutRoutes =
        o.mode === "mesh"
          ? kernelCount
          : () => {
              const out = bird.cmd(
                "show",
                "route",
                "where",
                "net",
                "~",
                "[10.128.0.0/16+]",
                "count",
              );
              const m = /(\d+) of \d+ routes/.exec(out);
              return Number(m?.[1] ?? 0);
            };
    } else {
      const oc = withVariant(o.nodeArgs, () =>
        lab.startOcelot(dutNs, "ocelot", ocelotConf(o.mode, o.n, hold), ["--log-level", "info"]),
      );
      pid = oc.pid;
      dutMemory = () => (oc.status() as unknown as { memory?: object }).memory;
      // Its link watch holds every session down while the fresh veth has no carrier (a real
      // node's link has had one for long); the clock starts once none is held, and the wait is
      // printed (a run where it lasted 14 s, the generator's 15,596 refused connects in it, was
      // the largest outlier of the time figure).
      const t = Date.now();
      const held = () =>
        oc.status().peers.filter((p) => ((p as { heldDown?: string[] }).heldDown ?? []).length > 0)
          .length;
      let h = held();
      while (h > 0 && Date.now() - t < 60_000) {
        await new Promise((r) => setTimeout(r, 200));
        h = held();
      }
      log(`${tag} DUT ready after ${Date.now() - t} ms (${h} sessions still held down)`);
      dutRoutes =
        o.mode === "mesh"
          ? kernelCount
          : () => oc.routes().routes.filter((r) => r.prefix.startsWith("10.128.")).length;
    }
    const [cmd, args] = genNs.wrap(
      process.execPath,
      "--import",
      "tsx",
      BENCH_FILE,
      "--generator",
      JSON.stringify({
        n: o.n,
        hold,
        expect: o.mode === "rr" ? "others" : "dut",
        window: o.window ?? 50,
        openTimeoutMs: o.openTimeoutMs ?? 3000,
      } satisfies GenOpts),
    );
    const child = spawn(cmd, args, { cwd: REPO_ROOT, stdio: ["pipe", "pipe", "inherit"] });
    gen = new Generator(child);
    if (!(await gen.next("ready", 60_000))) throw new Error(`${tag} generator did not start`);
    const before = procCost(pid);
    const genPid = child.pid as number;
    const genBefore = procCost(genPid);
    const t0 = Date.now();
    // The DUT's RSS every 100 ms: when its peak came (the phase is logged beside it).
    let phase = "cold start";
    const peak = { rss: 0, anon: 0, at: 0, phase };
    const sampler = setInterval(() => {
      try {
        const c = procCost(pid);
        if (c.rssMiB > peak.rss) Object.assign(peak, { rss: c.rssMiB, at: Date.now() - t0, phase });
        peak.anon = Math.max(peak.anon, c.anonMiB);
      } catch {}
    }, 100).unref();
    gen.send({ cmd: "start" });
    let convergeMs: number | null = null;
    let allUpMs: number | null = null;
    const progress = setInterval(
      () => log(`${tag} ${gen?.last.up} up, ${gen?.last.full} full`),
      2000,
    );
    try {
      const full = await gen.next("full", limitMs);
      if (full) {
        convergeMs = Number(full.at) - t0;
        allUpMs = Number(full.upMs);
        if (o.mode === "mesh") {
          // The DUT's kernel must hold every peer's /26 too.
          const deadline = Date.now() + limitMs;
          let have = dutRoutes();
          while (have < o.n && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 100));
            have = dutRoutes();
          }
          convergeMs = have >= o.n ? Math.max(convergeMs, Date.now() - t0) : null;
        }
      }
    } finally {
      clearInterval(progress);
    }
    const withHeap = (c: ProcCost): ProcCost => {
      const m = dutMemory?.() as { heapUsedMiB?: number; heapTotalMiB?: number } | undefined;
      return m ? { ...c, heapUsedMiB: m.heapUsedMiB, heapTotalMiB: m.heapTotalMiB } : c;
    };
    const atConverged = since(withHeap(procCost(pid)), before);
    log(
      `${tag} converged in ${convergeMs} ms, DUT RSS ${atConverged.rssMiB.toFixed(1)} MiB (peak so far ${atConverged.hwmMiB.toFixed(1)} MiB); ${anonPartsLine(pid)}`,
    );
    let resetMs: number | null = null;
    const resetCount = Math.ceil(o.n / 10);
    if (o.reset && convergeMs !== null) {
      phase = "reset";
      gen.send({ cmd: "reset", k: resetCount });
      // OCELOT_MEM_TRACE=1: the Ocelot DUT's heap and RSS every second of the reset (a CLI
      // process per sample: it loads the machine, for finding where a peak is, not for times).
      const trace =
        process.env.OCELOT_MEM_TRACE && dutMemory
          ? setInterval(() => {
              try {
                log(`${tag} reset t=${Date.now() - t0}ms memory ${JSON.stringify(dutMemory?.())}`);
              } catch {}
            }, 1000)
          : undefined;
      const back = await gen.next("back", limitMs);
      clearInterval(trace);
      resetMs = back ? Number(back.ms) : null;
      log(
        `${tag} ${resetCount} reset, all back in ${resetMs} ms (all Established again at ${back?.upMs} ms)`,
      );
    }
    if (o.target === "ocelot" && process.env.OCELOT_SNAPSHOT_WAIT) {
      // With OCELOT_NODE_ARGS="--heapsnapshot-signal=SIGUSR2": a heap snapshot at the end (in
      // the directory the bench runs from).
      lab.signal(pid, "SIGUSR2");
      await new Promise((r) => setTimeout(r, Number(process.env.OCELOT_SNAPSHOT_WAIT) * 1000));
    }
    phase = "after";
    // A while more, so a late keepalive would show.
    await new Promise((r) => setTimeout(r, Math.min(5000, hold * 500)));
    gen.send({ cmd: "stats" });
    const stats = (await gen.next("stats", 30_000)) ?? {};
    const atEnd = since(withHeap(procCost(pid)), before);
    log(
      `${tag} at the end: ${anonPartsLine(pid)}; status memory ${JSON.stringify(dutMemory?.() ?? {})}`,
    );
    const generator = since(procCost(genPid), genBefore);
    if (process.env.OCELOT_MALLOC_TRIM && o.target === "ocelot") {
      // Diagnostic: how much of the anonymous memory outside V8's heap is free malloc memory
      // glibc keeps (malloc_trim(0) in the DUT through gdb), after the figures are taken.
      const b = procCost(pid).anonMiB;
      try {
        sh("gdb", ["-p", String(pid), "-batch", "-ex", "call (int)malloc_trim(0)"]);
        log(
          `${tag} malloc_trim(0): RssAnon ${b.toFixed(1)} -> ${procCost(pid).anonMiB.toFixed(1)} MiB`,
        );
      } catch (e) {
        log(`${tag} malloc_trim through gdb failed: ${(e as Error).message.slice(0, 200)}`);
      }
    }
    clearInterval(sampler);
    log(
      `${tag} sampled RSS peak ${peak.rss.toFixed(1)} MiB at ${peak.at} ms (${peak.phase}), RssAnon peak ${peak.anon.toFixed(1)} MiB`,
    );
    return {
      target: o.target,
      mode: o.mode,
      n: o.n,
      convergeMs,
      atConverged,
      resetMs,
      atEnd,
      resetCount,
      notificationsRx: (stats.notificationsRx ?? {}) as Record<string, number>,
      holdExpiredHere: Number(stats.holdExpiredHere ?? -1),
      unexpectedCloses: Number(stats.unexpectedCloses ?? -1),
      refusedConnections: Number(stats.refusedConnections ?? -1),
      maxGapMs: Number(stats.maxGapMs ?? -1),
      peakAnonMiB: peak.anon,
      dutRoutes: dutRoutes(),
      listenOverflows: nstat(dutNs, "TcpExtListenOverflows"),
      synDrops: {
        dut: Object.fromEntries(SYN_COUNTERS.map((k) => [k, nstat(dutNs, `TcpExt${k}`)])),
        gen: Object.fromEntries(SYN_COUNTERS.map((k) => [k, nstat(genNs, `TcpExt${k}`)])),
      },
      outSegs: nstat(dutNs, "TcpOutSegs"),
      allUpMs,
      generator,
      openRetries: Number(stats.openRetries ?? -1),
      parseMismatches: Number(stats.parseMismatches ?? -1),
      unexpectedPrefixes: Number(stats.unexpectedPrefixes ?? -1),
    };
  } finally {
    await gen?.quit();
    lab.cleanup();
    genNs.destroy();
    dutNs.destroy();
  }
}

// ---- the fixed cost: the runtime alone and each DUT with no session ---------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `node -e 'setInterval(()=>{},1e9)'`: this machine's Node.js with nothing of ours loaded. */
export async function bareNodeCost(): Promise<ProcCost> {
  const child = spawn(process.execPath, ["-e", "setInterval(()=>{},1e9)"], { stdio: "ignore" });
  try {
    await sleep(3000);
    return procCost(child.pid as number);
  } finally {
    child.kill("SIGKILL");
  }
}

/** A DUT configured as the reflector with no peer at all, 3 s after it started. */
export async function idleCost(target: Target, nodeArgs?: string): Promise<ProcCost> {
  const { Netns } = await import("../test/helpers/netns.js");
  const { PeerLab } = await import("../test/helpers/peers.js");
  const lab = new PeerLab();
  const ns = Netns.create("rri");
  try {
    ns.exec("ip", "link", "set", "lo", "up");
    ns.exec("ip", "addr", "add", `${DUT_ADDR}/16`, "dev", "lo");
    if (target === "bird") {
      const bird = lab.startBird(ns, "bird", birdConf("rr", 0, 30));
      await sleep(3000);
      return procCost(bird.pid);
    }
    const oc = withVariant(nodeArgs, () =>
      lab.startOcelot(ns, "ocelot", ocelotConf("rr", 0, 30), ["--log-level", "info"]),
    );
    await sleep(3000);
    const m = (
      oc.status() as unknown as { memory?: { heapUsedMiB?: number; heapTotalMiB?: number } }
    ).memory;
    return { ...procCost(oc.pid), heapUsedMiB: m?.heapUsedMiB, heapTotalMiB: m?.heapTotalMiB };
  } finally {
    lab.cleanup();
    ns.destroy();
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

const f1 = (x: number | undefined) => (x === undefined ? "-" : x.toFixed(1));

/** VmRSS = RssAnon + RssFile + RssShmem, and the V8 heap where known. */
export function breakdown(c: ProcCost): string {
  return (
    `VmRSS ${f1(c.rssMiB)} = anon ${f1(c.anonMiB)} + file ${f1(c.fileMiB)} + shmem ${f1(c.shmemMiB)} MiB` +
    (c.heapUsedMiB !== undefined
      ? `, V8 heap used/total ${f1(c.heapUsedMiB)}/${f1(c.heapTotalMiB)} MiB`
      : "")
  );
}

function line(r: ScenarioResult): string {
  const s = (ms: number | null) => (ms === null ? "NOT reached" : `${(ms / 1000).toFixed(2)} s`);
  return (
    `${r.target.padEnd(6)} ${r.mode.padEnd(4)} N=${r.n}: converged ${s(r.convergeMs)} ` +
    `(all Established at ${s(r.allUpMs)}; RSS ${r.atConverged.rssMiB.toFixed(1)} MiB, CPU ${r.atConverged.cpuS.toFixed(2)} s = user ${r.atConverged.userS.toFixed(2)} + sys ${r.atConverged.sysS.toFixed(2)})` +
    (r.mode === "rr" ? ` | ${r.resetCount} reset: back in ${s(r.resetMs)}` : "") +
    ` | end RSS ${r.atEnd.rssMiB.toFixed(1)} MiB, peak ${r.atEnd.hwmMiB.toFixed(1)} MiB, peak RssAnon ${r.peakAnonMiB.toFixed(1)} MiB, CPU ${r.atEnd.cpuS.toFixed(2)} s (user ${r.atEnd.userS.toFixed(2)} + sys ${r.atEnd.sysS.toFixed(2)})` +
    ` | generator CPU ${r.generator.cpuS.toFixed(2)} s, connects retried for want of a SYN-ACK ${r.openRetries}, walk mismatches ${r.parseMismatches}, unexpected prefixes ${r.unexpectedPrefixes}` +
    ` | sessions dropped by the DUT ${r.unexpectedCloses} (connections refused ${r.refusedConnections}), NOTIFICATIONs ${JSON.stringify(r.notificationsRx)}, ` +
    `hold expired here ${r.holdExpiredHere}, longest silence ${(r.maxGapMs / 1000).toFixed(1)} s | DUT routes ${r.dutRoutes}, listen overflows ${r.listenOverflows}, TCP segments out ${r.outSegs}` +
    ` | SYN path: DUT ${JSON.stringify(r.synDrops.dut)}, generator ${JSON.stringify(r.synDrops.gen)}` +
    `\n    at convergence: ${breakdown(r.atConverged)}\n    at the end:     ${breakdown(r.atEnd)}`
  );
}

const median = (xs: number[]): number | undefined => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0
    ? undefined
    : s.length % 2
      ? s[(s.length - 1) / 2]
      : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};

/** One DUT's rounds at one size: each figure's values and median. */
function summary(
  mode: Mode,
  n: number,
  dut: Dut,
  rows: Array<{ dut: Dut; r: ScenarioResult }>,
): string {
  const rs = rows.filter((x) => x.dut.label === dut.label).map((x) => x.r);
  const fig = (name: string, xs: Array<number | null>, unit: (x: number) => string) => {
    const ok = xs.filter((x): x is number => x !== null);
    const m = median(ok);
    return `${name} ${ok.map(unit).join(", ")} (median ${m === undefined ? "-" : unit(m)})`;
  };
  const sec = (x: number) => `${(x / 1000).toFixed(2)} s`;
  const cpu = (x: number) => `${x.toFixed(2)} s`;
  const mib = (x: number) => `${x.toFixed(1)} MiB`;
  return (
    `summary ${mode} N=${n} ${dut.label} over ${rs.length} rounds: ` +
    [
      fig(
        "converged",
        rs.map((r) => r.convergeMs),
        sec,
      ),
      fig(
        "all Established",
        rs.map((r) => r.allUpMs),
        sec,
      ),
      fig(
        "reset back",
        rs.map((r) => r.resetMs),
        sec,
      ),
      fig(
        "CPU to convergence",
        rs.map((r) => r.atConverged.cpuS),
        cpu,
      ),
      fig(
        "of it sys",
        rs.map((r) => r.atConverged.sysS),
        cpu,
      ),
      fig(
        "CPU whole run",
        rs.map((r) => r.atEnd.cpuS),
        cpu,
      ),
      fig(
        "generator CPU",
        rs.map((r) => r.generator.cpuS),
        cpu,
      ),
      fig(
        "peak VmHWM",
        rs.map((r) => r.atEnd.hwmMiB),
        mib,
      ),
      fig(
        "peak RssAnon",
        rs.map((r) => r.peakAnonMiB),
        mib,
      ),
    ].join("; ")
  );
}

/** A DUT as run: BIRD, or Ocelot with its node flags (a variant). */
interface Dut {
  target: Target;
  nodeArgs?: string;
  label: string;
}

async function main(): Promise<void> {
  const sizes = arg("n", "1000").split(",").map(Number);
  const modes = arg("modes", "rr,mesh").split(",") as Mode[];
  const targets = arg("targets", "bird,ocelot").split(",") as Target[];
  const hold = Number(arg("hold", "30"));
  const window = Number(arg("window", "50"));
  // --ocelot-variants "default;--optimize-for-size;OCELOT_V8_HEAP_GROWING=default": the Ocelot
  // DUT once per variant (node flags and NAME=VALUE environment variables).
  const variants = arg("ocelot-variants", "default").split(";");
  // --old DIR: another build's bin/ (e.g. main's) as one more Ocelot variant, labelled "old",
  // run beside this tree's in each round (OCELOT_BIN_DIR of test/helpers/peers.ts).
  const oldBin = arg("old", "");
  if (oldBin) variants.push(`OCELOT_BIN_DIR=${oldBin}`);
  // --rounds R: the DUTs one after the other, R times over (BIRD, Ocelot, old, BIRD, ...), so
  // each meets the same stretch of the machine's load; ratios are taken within a round.
  const rounds = Number(arg("rounds", "1"));
  const openTimeoutMs = Number(arg("open-timeout", "3000"));
  if (process.argv.includes("--raise-neigh-thresh")) process.env.OCELOT_BENCH_RAISE_NEIGH = "1";
  const duts: Dut[] = targets.flatMap((t): Dut[] =>
    t === "bird"
      ? [{ target: t, label: "bird" }]
      : variants.map((v) =>
          v === "default"
            ? { target: t, label: "ocelot" }
            : {
                target: t,
                nodeArgs: v,
                label: v === `OCELOT_BIN_DIR=${oldBin}` ? "old" : `ocelot ${v}`,
              },
        ),
  );
  console.log(
    `N=${sizes.join(",")} hold=${hold}s window=${window} open-timeout=${openTimeoutMs}ms rounds=${rounds}${oldBin ? ` old=${oldBin}` : ""}; load average ${load()}; node ${process.version}`,
  );
  // The fixed cost, before any session: the runtime alone, and each DUT with no peer.
  const idle = new Map<string, ProcCost>();
  if (!process.argv.includes("--no-floor")) {
    console.log(
      `floor: bare node (setInterval): ${breakdown(await bareNodeCost())}; load ${load()}`,
    );
    for (const d of duts) {
      const c = await idleCost(d.target, d.nodeArgs);
      idle.set(d.label, c);
      console.log(`floor: ${d.label}, no peer: ${breakdown(c)}; load ${load()}`);
    }
  }
  const all: Array<{ dut: Dut; r: ScenarioResult }> = [];
  for (const mode of modes) {
    for (const n of sizes) {
      const sized: Array<{ dut: Dut; r: ScenarioResult }> = [];
      for (let round = 1; round <= rounds; round++) {
        const res: Array<{ dut: Dut; r: ScenarioResult }> = [];
        for (const dut of duts) {
          const r = await runScenario({
            target: dut.target,
            nodeArgs: dut.nodeArgs,
            mode,
            n,
            hold,
            window,
            openTimeoutMs,
            abortOnOverflow: !process.argv.includes("--no-abort-on-overflow"),
            reset: mode === "rr",
          });
          res.push({ dut, r });
          console.log(
            `${rounds > 1 ? `round ${round} ` : ""}${dut.label}: ${line(r)}; load ${load()}`,
          );
        }
        sized.push(...res);
        const bird = res.find((x) => x.dut.target === "bird")?.r;
        for (const { dut, r: oc } of res) {
          if (dut.target !== "ocelot" || !bird || !oc.convergeMs || !bird.convergeMs) continue;
          const t = oc.convergeMs / bird.convergeMs;
          const rss = oc.atEnd.hwmMiB / bird.atEnd.hwmMiB;
          const anon = oc.peakAnonMiB / bird.peakAnonMiB;
          const cpu = oc.atEnd.cpuS / bird.atEnd.cpuS;
          const rs = oc.resetMs && bird.resetMs ? (oc.resetMs / bird.resetMs).toFixed(2) : "-";
          console.log(
            `${mode} N=${n} ${rounds > 1 ? `round ${round} ` : ""}${dut.label}/BIRD: converge ${t.toFixed(2)}x (goal <= 0.8x: ${t <= 0.8 ? "met" : "NOT met"}), ` +
              `reset ${rs}x, peak RSS ${rss.toFixed(2)}x (goal <= 1.0x: ${rss <= 1 ? "met" : "NOT met"}), ` +
              `peak RssAnon ${anon.toFixed(2)}x, CPU ${cpu.toFixed(2)}x`,
          );
        }
      }
      all.push(...sized);
      if (rounds > 1) for (const dut of duts) console.log(summary(mode, n, dut, sized));
    }
  }
  // Fixed and per-session cost: the no-peer DUT, and the slope between the two largest N.
  for (const dut of duts) {
    for (const mode of modes) {
      const rows = all
        .filter((x) => x.dut.label === dut.label && x.r.mode === mode)
        .sort((a, b) => a.r.n - b.r.n);
      const fixed = idle.get(dut.label);
      const hi = rows.at(-1)?.r;
      const lo = rows.filter((x) => x.r.n < (hi?.n ?? 0)).at(-1)?.r;
      const per = (k: "anonMiB" | "rssMiB" | "heapUsedMiB") =>
        lo && hi && hi.n > lo.n && hi.atEnd[k] !== undefined && lo.atEnd[k] !== undefined
          ? `${(((hi.atEnd[k] as number) - (lo.atEnd[k] as number)) * 1024) / (hi.n - lo.n)}`
          : undefined;
      const kb = (x: string | undefined) => (x === undefined ? "-" : `${Number(x).toFixed(1)} KiB`);
      console.log(
        `cost ${dut.label} ${mode}: fixed (no peer) ${fixed ? breakdown(fixed) : "-"}; ` +
          rows.map((x) => `N=${x.r.n} at the end anon ${f1(x.r.atEnd.anonMiB)} MiB`).join(", ") +
          (lo && hi && hi.n > lo.n
            ? `; per session (N=${lo.n}..${hi.n}): anon ${kb(per("anonMiB"))}, VmRSS ${kb(per("rssMiB"))}, V8 heap used ${kb(per("heapUsedMiB"))}`
            : ""),
      );
    }
  }
}

// Only as the entry file (another bench imports this one's parts).
if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv.includes("--generator")) {
    runGenerator(JSON.parse(process.argv[process.argv.indexOf("--generator") + 1] as string));
  } else await main();
}
