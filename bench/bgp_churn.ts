// Churn (as root): a raw BGP peer announces and withdraws --rate IPv4 /32s a second each (every
// 10 ms one UPDATE announcing the next rate/100 prefixes and one withdrawing those announced
// --life ms before) for --seconds, to a DUT (Ocelot `bgpd`, BIRD 2) that installs them in its
// kernel. Per prefix change, the time from the peer's write to the kernel's route notification
// in the DUT's namespace (receipt-to-kernel: both stamped with CLOCK_MONOTONIC), its p50/p99/max;
// the gaps between the DUT's KEEPALIVEs (hold time --hold, so one is due every hold/3 s); whether
// the session survived; for Ocelot the event loop's worst delay per second from its /metrics.
// The first --warmup seconds of churn (default 3) are reported apart and not in the figures: a
// fresh Node.js process runs its hot paths unoptimised at first (V8 tiers them up within ~2 s
// of churn: p99 200-320 ms in those seconds, 10-100 ms after, on a loaded machine).
// Usage: npx tsx bench/bgp_churn.ts [--seconds 10] [--warmup 3] [--rate 10000]
//   [--targets ocelot,bird] [--hold 9] [--life 1000] [--cycle 10000] [--per-second]
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { NetlinkSocket } from "../src/fib/netlink_socket.js";
import {
  forEachMessage,
  NETLINK_ROUTE,
  RTM_DELROUTE,
  RTM_NEWROUTE,
  RTNLGRP_IPV4_ROUTE,
} from "../src/fib/rtnetlink.js";
import { link, Netns, sh } from "../test/helpers/netns.js";
import { PeerLab } from "../test/helpers/peers.js";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? (process.argv[i + 1] as string) : dflt;
}

const SECONDS = Number(arg("seconds", "10"));
const WARMUP = Number(arg("warmup", "3"));
const RATE = Number(arg("rate", "10000"));
const HOLD = Number(arg("hold", "9"));
const LIFE_MS = Number(arg("life", "1000"));
const TARGETS = arg("targets", "ocelot,bird").split(",");
const TICK_MS = 10;
const PER_TICK = Math.max(1, Math.round((RATE * TICK_MS) / 1000));
const LIFE_TICKS = Math.max(1, Math.round(LIFE_MS / TICK_MS));
/**
 * Prefixes cycle through a ring of 10.64.0.0 + (i mod RING), one cycle --cycle ms (default 10 s)
 * and at least twice the live set: a kernel event is told from the next cycle's by time.
 */
const CYCLE_MS = Math.max(Number(arg("cycle", "10000")), 2 * LIFE_TICKS * TICK_MS);
const RING = PER_TICK * Math.round(CYCLE_MS / TICK_MS);
const BASE = (10 << 24) | (64 << 16);
const PEER_AS = 65050;
const DUT_AS = 64530;
const DUT = "10.255.26.1";
const PEER = "10.255.26.2";
const METRICS_PORT = 9466;

if (RING > 1 << 20) throw new Error("--rate × --life too large for 10.64.0.0/12");

// The peer: nothing of ours, run inside its namespace. Writes its log as JSON to argv[3] at the
// end: per tick [hrtime ms, first announced index, first withdrawn index or -1], the DUT's
// KEEPALIVE arrival times, NOTIFICATIONs, whether the session closed during the churn.
const churner = `
import * as net from "node:net";
import { writeFileSync } from "node:fs";
const [host, local, out, cfgText] = process.argv.slice(2);
const cfg = JSON.parse(cfgText);
const now = () => Number(process.hrtime.bigint()) / 1e6;
const ip = local.split(".").map(Number);
const hdr = (type, body) => {
  const b = Buffer.alloc(19 + body.length, 0xff);
  b.writeUInt16BE(19 + body.length, 16); b[18] = type; body.copy(b, 19); return b;
};
const as = cfg.peerAs;
const caps = Buffer.from([2, 6, 1, 4, 0, 1, 0, 1, 2, 6, 65, 4, (as >>> 24) & 255, (as >>> 16) & 255, (as >>> 8) & 255, as & 255]);
const open = hdr(1, Buffer.concat([Buffer.from([4, (as >>> 8) & 255, as & 255, (cfg.hold >>> 8) & 255, cfg.hold & 255, ...ip, caps.length]), caps]));
const attrs = Buffer.from([0x40, 1, 1, 0,  0x40, 2, 6, 2, 1, (as >>> 24) & 255, (as >>> 16) & 255, (as >>> 8) & 255, as & 255,  0x40, 3, 4, ...ip]);
const nlri = (first, n) => {
  const b = Buffer.alloc(n * 5);
  for (let k = 0; k < n; k++) { b[k * 5] = 32; b.writeUInt32BE((cfg.base + ((first + k) % cfg.ring)) >>> 0, k * 5 + 1); }
  return b;
};
const announce = (first, n) => {
  const body = Buffer.alloc(4 + attrs.length);
  body.writeUInt16BE(0, 0); body.writeUInt16BE(attrs.length, 2); attrs.copy(body, 4);
  return hdr(2, Buffer.concat([body, nlri(first, n)]));
};
const withdraw = (first, n) => {
  const w = nlri(first, n);
  const body = Buffer.alloc(2 + w.length + 2);
  body.writeUInt16BE(w.length, 0); w.copy(body, 2); body.writeUInt16BE(0, 2 + w.length);
  return hdr(2, body);
};
const log = { ticks: [], keepalives: [], notifications: [], closedAt: null, established: null, churnStart: null, churnEnd: null, backlogMax: 0 };
const s = net.connect({ host, port: 179, localAddress: local });
s.setNoDelay(true);
s.on("error", () => {});
let buf = Buffer.alloc(0);
let started = false;
const finish = () => { writeFileSync(out, JSON.stringify(log)); process.exit(0); };
const churn = () => {
  log.churnStart = now();
  let tick = 0;
  const total = Math.round(cfg.seconds * 1000 / cfg.tickMs);
  const step = () => {
    // Catch up with the clock: the rate holds even when this process was late.
    const due = Math.min(total, Math.floor((now() - log.churnStart) / cfg.tickMs) + 1);
    for (; tick < due; tick++) {
      const a = tick * cfg.per;
      const wt = tick - cfg.lifeTicks;
      const t = now();
      s.write(announce(a, cfg.per));
      if (wt >= 0) s.write(withdraw(wt * cfg.per, cfg.per));
      log.ticks.push([t, a, wt >= 0 ? wt * cfg.per : -1]);
    }
    log.backlogMax = Math.max(log.backlogMax, s.writableLength);
    if (tick >= total) { log.churnEnd = now(); setTimeout(finish, cfg.drainMs); return; }
    setTimeout(step, Math.max(0, log.churnStart + tick * cfg.tickMs - now()));
  };
  step();
};
s.on("connect", () => s.write(open));
s.on("data", (d) => {
  buf = Buffer.concat([buf, d]);
  while (buf.length >= 19) {
    const len = buf.readUInt16BE(16);
    if (buf.length < len) break;
    const m = buf.subarray(0, len); buf = buf.subarray(len);
    if (m[18] === 1) s.write(hdr(4, Buffer.alloc(0)));
    if (m[18] === 4) {
      log.keepalives.push(now());
      if (!started) {
        started = true;
        log.established = now();
        setInterval(() => s.write(hdr(4, Buffer.alloc(0))), cfg.hold * 1000 / 3).unref();
        setTimeout(churn, cfg.settleMs);
      }
    }
    if (m[18] === 3) log.notifications.push({ at: now(), code: m[19], subcode: m[20] });
  }
});
s.on("close", () => { log.closedAt = now(); finish(); });
setTimeout(finish, (cfg.seconds + 60) * 1000).unref();
`;

interface ChurnLog {
  ticks: [number, number, number][];
  keepalives: number[];
  notifications: { at: number; code: number; subcode: number }[];
  closedAt: number | null;
  established: number | null;
  churnStart: number | null;
  churnEnd: number | null;
  backlogMax: number;
}

/** The kernel's route notifications for the churned prefixes, stamped on arrival. */
class KernelWatch {
  /** Per notification: ring index, 1 = new / 0 = del, time (hrtime ms). */
  idx: number[] = [];
  kind: number[] = [];
  at: number[] = [];
  overflows = 0;
  private readonly sock: NetlinkSocket;

  constructor(netns: string) {
    this.sock = new NetlinkSocket(
      NETLINK_ROUTE,
      1 << (RTNLGRP_IPV4_ROUTE - 1),
      32 << 20,
      {
        onData: (b) => this.onData(b),
        onOverflow: () => {
          this.overflows++;
        },
        onError: (e) => console.error(`[churn] netlink: ${e.message}`),
      },
      netns,
    );
  }

  private onData(b: Buffer): void {
    const t = Number(process.hrtime.bigint()) / 1e6;
    forEachMessage(b, (m) => {
      if (m.type !== RTM_NEWROUTE && m.type !== RTM_DELROUTE) return;
      const o = m.off;
      if (m.buf[o] !== 2 || m.buf[o + 1] !== 32) return; // AF_INET /32
      // RTA_DST: walk the attributes after the 12-byte rtmsg.
      let a = o + 12;
      while (a + 4 <= m.end) {
        const len = m.buf.readUInt16LE(a);
        const type = m.buf.readUInt16LE(a + 2) & 0x3fff;
        if (len < 4) return;
        if (type === 1 && len >= 8) {
          const i = (m.buf.readUInt32BE(a + 4) - BASE) >>> 0;
          if (i < RING) {
            this.idx.push(i);
            this.kind.push(m.type === RTM_NEWROUTE ? 1 : 0);
            this.at.push(t);
          }
          return;
        }
        a += (len + 3) & ~3;
      }
    });
  }

  close(): void {
    this.sock.close();
  }
}

interface Latencies {
  ms: Float64Array;
  /** The warm-up's changes. */
  warm: Float64Array;
  missing: number;
  /** Per second of the churn: [p99, max] of the changes sent in it. */
  perSecond: [number, number][];
}

/**
 * Pairs each change the peer sent (announce or withdraw of prefix i at time s) with the first
 * kernel notification of the same kind for i at or after s, in order per prefix.
 */
function pair(log: ChurnLog, w: KernelWatch): Latencies {
  const events: number[][] = Array.from({ length: RING }, () => []);
  for (let k = 0; k < w.idx.length; k++) events[w.idx[k] as number]?.push(k);
  // Per prefix, its changes in send order: [kind (1 announce, 0 withdraw), send time].
  const actions: number[][] = Array.from({ length: RING }, () => []);
  for (const [s, a, wd] of log.ticks) {
    for (let k = 0; k < PER_TICK; k++) actions[(a + k) % RING]?.push(1, s);
    if (wd >= 0) for (let k = 0; k < PER_TICK; k++) actions[(wd + k) % RING]?.push(0, s);
  }
  const out: number[] = [];
  const warm: number[] = [];
  const secs: number[][] = [];
  const t0 = log.ticks[0]?.[0] ?? 0;
  let missing = 0;
  for (let i = 0; i < RING; i++) {
    const ev = events[i] as number[];
    const act = actions[i] as number[];
    let c = 0;
    for (let j = 0; j < act.length; j += 2) {
      const kind = act[j] as number;
      const s = act[j + 1] as number;
      // The next change of the same kind to this prefix: an event after it is that one's.
      const bound = (act[j + 5] as number | undefined) ?? Number.POSITIVE_INFINITY;
      while (c < ev.length && (w.at[ev[c] as number] as number) < s - 1) c++;
      const k = ev[c];
      if (k !== undefined && w.kind[k] === kind && (w.at[k] as number) < bound) {
        const lat = (w.at[k] as number) - s;
        const sec = Math.floor((s - t0) / 1000);
        (sec < WARMUP ? warm : out).push(lat);
        if (secs[sec] === undefined) secs[sec] = [];
        secs[sec]?.push(lat);
        c++;
      } else missing++; // never reached the kernel (coalesced with the next change) or lost
    }
  }
  const ms = Float64Array.from(out).sort();
  const perSecond = secs.map((v): [number, number] => {
    const a = Float64Array.from(v ?? []).sort();
    return [q(a, 0.99), a[a.length - 1] ?? Number.NaN];
  });
  return { ms, warm: Float64Array.from(warm).sort(), missing, perSecond };
}

const q = (a: Float64Array, p: number) =>
  a.length === 0 ? Number.NaN : (a[Math.min(a.length - 1, Math.floor(a.length * p))] as number);

/** The histogram's p-quantile upper bound and its max bucket from Prometheus text. */
function histogram(text: string, name: string): { count: number; p99: string; max: string } {
  const buckets: [number, number][] = [];
  let count = 0;
  for (const line of text.split("\n")) {
    const m = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\d+)`).exec(line);
    if (m) buckets.push([m[1] === "+Inf" ? Number.POSITIVE_INFINITY : Number(m[1]), Number(m[2])]);
    const c = new RegExp(`^${name}_count (\\d+)`).exec(line);
    if (c) count = Number(c[1]);
  }
  const le = (frac: number) => {
    const b = buckets.find(([, n]) => n >= Math.ceil(count * frac));
    return b ? `≤ ${b[0] === Number.POSITIVE_INFINITY ? "inf" : `${b[0] * 1000} ms`}` : "-";
  };
  return { count, p99: le(0.99), max: le(1) };
}

interface Row {
  target: string;
  changes: number;
  lat: Latencies;
  kaMaxGap: number;
  kaLate: number;
  kaCount: number;
  dropped: string;
  overflows: number;
  loop: string;
  ocelotU2k: string;
  backlogMax: number;
}

async function one(target: string): Promise<Row> {
  const lab = new PeerLab();
  const dut = Netns.create("chd");
  const peer = Netns.create("chp");
  let child: ChildProcess | undefined;
  let watch: KernelWatch | undefined;
  try {
    link(dut, "chd-p", `${DUT}/30`, peer, "chp-d", `${PEER}/30`);
    if (target === "ocelot") {
      lab.startOcelot(
        dut,
        "ocelot",
        {
          asn: DUT_AS,
          routerId: DUT,
          listen: { address: DUT, port: 179 },
          peers: [{ address: PEER, asn: PEER_AS, passive: true, families: ["ipv4-unicast"] }],
          fib: { enabled: true, table: "main", protocol: 201, gracefulRestartTime: 0 },
        },
        ["--metrics-address", `127.0.0.1:${METRICS_PORT}`, "--log-level", "info"],
      );
    } else {
      lab.startBird(
        dut,
        "bird",
        `
router id ${DUT};
protocol device { }
protocol kernel k4 { ipv4 { import none; export all; }; }
protocol bgp churn {
  local ${DUT} as ${DUT_AS};
  neighbor ${PEER} as ${PEER_AS};
  passive on;
  ipv4 { import all; export none; };
}
`,
      );
    }
    watch = new KernelWatch(dut.name);
    const dir = lab.subdir("churner");
    const file = join(dir, "churner.mjs");
    const out = join(dir, "log.json");
    writeFileSync(file, churner);
    const cfg = {
      peerAs: PEER_AS,
      hold: HOLD,
      seconds: WARMUP + SECONDS,
      tickMs: TICK_MS,
      per: PER_TICK,
      lifeTicks: LIFE_TICKS,
      ring: RING,
      base: BASE,
      settleMs: 1000,
      drainMs: 3000,
    };
    const [cmd, args] = peer.wrap(process.execPath, file, DUT, PEER, out, JSON.stringify(cfg));
    const c = spawn(cmd, args, { stdio: ["ignore", "inherit", "inherit"] });
    child = c;
    await new Promise<void>((r) => {
      const t = setTimeout(r, (SECONDS + 90) * 1000);
      c.once("exit", () => {
        clearTimeout(t);
        r();
      });
    });
    child = undefined;
    const log = JSON.parse(readFileSync(out, "utf8")) as ChurnLog;
    const lat = pair(log, watch);
    // KEEPALIVE gaps from Established to the end of the churn's drain.
    let kaMaxGap = 0;
    let kaLate = 0;
    const ka = log.keepalives;
    const due = (HOLD * 1000) / 3;
    for (let i = 1; i < ka.length; i++) {
      const gap = (ka[i] as number) - (ka[i - 1] as number);
      kaMaxGap = Math.max(kaMaxGap, gap);
      if (gap > due + 500) kaLate++;
    }
    const end = log.churnEnd ?? 0;
    const dropped =
      log.closedAt !== null && log.closedAt < end + 2000
        ? `closed${log.notifications.length ? ` (NOTIFICATION ${log.notifications.map((n) => `${n.code}/${n.subcode}`).join(",")})` : ""}`
        : "no";
    let loop = "n/a";
    let ocelotU2k = "n/a";
    if (target === "ocelot") {
      try {
        // Node's fetch inside the DUT's namespace (no curl needed).
        const get = `fetch("http://127.0.0.1:${METRICS_PORT}/metrics").then((r) => r.text()).then((t) => process.stdout.write(t))`;
        const text = sh("ip", ["netns", "exec", dut.name, process.execPath, "-e", get]);
        const h = histogram(text, "ocelot_event_loop_delay_seconds");
        loop = `${h.count} s: p99 ${h.p99}, max ${h.max}`;
        const u = histogram(text, "ocelot_bgp_update_to_kernel_seconds");
        ocelotU2k = `${u.count} batches: p99 ${u.p99}, max ${u.max}`;
      } catch (e) {
        loop = `metrics failed: ${(e as Error).message}`;
      }
    }
    return {
      target,
      changes: log.ticks.length * PER_TICK * 2 - Math.min(log.ticks.length, LIFE_TICKS) * PER_TICK,
      lat,
      kaMaxGap,
      kaLate,
      kaCount: ka.length,
      dropped,
      overflows: watch.overflows,
      loop,
      ocelotU2k,
      backlogMax: log.backlogMax,
    };
  } finally {
    if (child?.pid !== undefined && child.exitCode === null) child.kill("SIGKILL");
    watch?.close();
    lab.cleanup();
    dut.destroy();
    peer.destroy();
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("bench/bgp_churn.ts needs root (namespaces)");
  const rows: Row[] = [];
  for (const t of TARGETS) rows.push(await one(t));
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  console.log(
    `Churn: ${RATE} announcements + ${RATE} withdrawals a second (${PER_TICK} each per ${TICK_MS} ms, a prefix lives ${LIFE_MS} ms) for ${SECONDS} s after ${WARMUP} s of warm-up; hold ${HOLD} s (a KEEPALIVE due every ${HOLD / 3} s; late = gap > due + 0.5 s); load ${load}`,
  );
  for (const r of rows) {
    const l = r.lat.ms;
    console.log(
      `churn target=${r.target} changes=${r.changes} matched=${l.length + r.lat.warm.length} measured=${l.length} missing=${r.lat.missing} receipt_to_kernel_ms p50=${q(l, 0.5).toFixed(1)} p99=${q(l, 0.99).toFixed(1)} max=${(l[l.length - 1] ?? Number.NaN).toFixed(1)} warmup_p99=${q(r.lat.warm, 0.99).toFixed(1)} keepalives=${r.kaCount} max_gap_s=${(r.kaMaxGap / 1000).toFixed(2)} late=${r.kaLate} session_dropped=${r.dropped} monitor_overflows=${r.overflows} peer_backlog_max=${r.backlogMax}B event_loop_worst_per_second=[${r.loop}] ocelot_update_to_kernel=[${r.ocelotU2k}]`,
    );
  }
  if (process.argv.includes("--per-second"))
    for (const r of rows)
      console.log(
        `per second ${r.target} (p99/max ms): ${r.lat.perSecond.map(([p, m]) => `${p.toFixed(0)}/${m.toFixed(0)}`).join(" ")}`,
      );
  const o = rows.find((r) => r.target === "ocelot");
  const b = rows.find((r) => r.target === "bird");
  if (o && b)
    console.log(
      `ratio ocelot/bird p99=${(q(o.lat.ms, 0.99) / q(b.lat.ms, 0.99)).toFixed(2)} p50=${(q(o.lat.ms, 0.5) / q(b.lat.ms, 0.5)).toFixed(2)}`,
    );
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
