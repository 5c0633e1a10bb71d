// The bgpd status API: JSON shapes of `status` and `routes`, a unix-socket server (mode 0600)
// that answers one JSON request line per connection, the client the CLI uses, and the human
// tables. Not: where the numbers come from (the speaker fills the snapshots).
import * as net from "node:net";
import type { SenderStats } from "../fib/netlink_socket.js";
import type { FibRouteError } from "../fib/types.js";
import { listenRootOnly, prepareSocketPath } from "../lib/unix_socket.js";
import type { BfdSessionStatus } from "./bfd/runtime.js";

export interface PeerStatus {
  address: string;
  /** An unnumbered peer's interface (its address is the link-local neighbour found there). */
  interface?: string;
  /** An unnumbered peer with no link-local neighbour yet: why it waits (no session, Idle). */
  waiting?: string;
  asn: number;
  localAsn: number;
  type: "internal" | "external";
  state: string;
  /** Seconds in the current state when Established, else null. */
  uptimeSeconds: number | null;
  negotiated: {
    holdTime: number;
    keepaliveTime: number;
    families: string[];
    fourOctetAs: boolean;
    routeRefresh: boolean;
    enhancedRouteRefresh: boolean;
    gracefulRestart: boolean;
    /** RFC 8654: both sides may send messages up to 65535 octets. */
    extendedMessage?: boolean;
    /** RFC 8950: IPv4 routes may carry IPv6 next hops on this session. */
    extendedNextHop?: boolean;
    /** RFC 7911: the families whose paths carry ids, each way. */
    addPath?: { send: string[]; receive: string[] };
  } | null;
  prefixes: {
    received: number;
    accepted: number;
    advertised: number;
    /** Paths import refused, by reason (a filter, an AS-path loop, ...); absent reasons are 0. */
    rejected?: Record<string, number>;
  };
  messages: { in: number; out: number; updatesIn: number };
  /** Bytes of UPDATEs queued for the peer (a peer that does not read makes this grow). */
  sendQueueBytes: number;
  establishedTransitions: number;
  /**
   * Hold timers that fired while the speaker held reading paused (its FIB behind): started
   * again, not expired (the peer's KEEPALIVEs were unread in our socket). Absent when none.
   */
  holdDeferrals?: number;
  lastError: { kind: string; code?: number; subcode?: number; message?: string } | null;
  /** The session is TCP-MD5 signed (RFC 2385); the password itself is never shown. */
  md5?: true;
  /**
   * Why the session is held down (not connecting nor accepting): BFD Down, the prefix limit, the
   * link to a directly connected peer down.
   */
  heldDown?: ("bfd" | "maxPrefix" | "link")[];
  /** The last configuration change that reset the session: the field, seconds ago. */
  lastConfigReset?: { field: string; secondsAgo: number };
  /**
   * RFC 4724 / RFC 9494 helper: the families whose routes are kept stale while the peer
   * restarts, each with the timer bounding it (RestartTimer, LongLivedStaleTimer: LLGR_STALE,
   * StaleTimer: back, waiting for its End-of-RIB).
   */
  staleFamilies?: { family: string; timer: string }[];
  /** The peer's BGP Identifier from its OPEN, while Established. */
  bgpId?: string;
}

/** The node daemon's own identity (ocelot node run): its addresses and how each was chosen. */
export interface NodeStatus {
  name: string;
  ipv4Address?: string;
  /** "configured", "stored in the Node resource", "autodetected by can-reach=...: ...". */
  ipv4Source?: string;
  ipv6Address?: string;
  ipv6Source?: string;
}

export interface StatusSnapshot {
  /** Present when the speaker runs inside `ocelot node run`. */
  node?: NodeStatus;
  routerId: string;
  asn: number;
  listen: { address: string; port: number } | null;
  uptimeSeconds: number;
  peers: PeerStatus[];
  locRib: { ipv4: number; ipv6: number };
  fib: {
    enabled: boolean;
    installed: number;
    pending: number;
    errors: number;
    /** The kernel FIB's sender thread (src/fib/netlink_socket.ts SenderStats), once it ran. */
    sender?: SenderStats;
  };
  /**
   * The kernel's TCP-MD5 drop counters of bgpd's network namespace (present when a peer has a
   * password): a rising failure count beside a session that does not come up is a wrong password.
   */
  tcpMd5?: { failure: number; unexpected: number; notFound: number };
  /** Process memory in MiB (V8's heap: used, and reserved for it), and the RIB's typed arrays. */
  memory: {
    rssMiB: number;
    heapUsedMiB: number;
    heapTotalMiB?: number;
    arrayBuffersMiB: number;
    ribTypedMiB: number;
  };
  /** BFD sessions (bgpd, when a peer has `bfd`). */
  bfd?: BfdSessionStatus[];
  /** TCP connections closed at accept, before any byte was sent: not from a peer's address. */
  connectionsRefused?: number;
}

export interface RouteStatus {
  prefix: string;
  best: {
    peer: string;
    nextHop: string;
    asPath: string;
    origin: string;
    localPref: number | null;
    med: number | null;
    communities: string[];
    largeCommunities: string[];
  };
  /** Why this path won (typed reason from the decision process). */
  reason: string;
  /** Next hops installed for the prefix (more than one: ECMP over equal paths). */
  multipath: string[];
  /** Kernel metric from the route's priority when not the normal one (Calico's krt_metric). */
  metric?: number;
}

/** One path of a prefix as `ocelot routes PREFIX` shows it (attributes as text). */
export interface PathStatus {
  peer: string;
  ibgp: boolean;
  pathId: number;
  nextHop: string;
  asPath: string;
  origin: string;
  /** LOCAL_PREF the decision used (defaults applied). */
  localPref: number;
  med: number | null;
  communities: string[];
  largeCommunities: string[];
  accepted: boolean;
  /** Why import refused it (a filter, an AS-path loop, ...), and the rule when one decided. */
  rejectReason?: string;
  rejectDetail?: string;
  stale: boolean;
  best: boolean;
  multipath: boolean;
  /** As received, when the import policy changed them (BGPFilter addCommunity, prependASPath). */
  received?: {
    nextHop: string;
    asPath: string;
    origin: string;
    med: number | null;
    communities: string[];
    largeCommunities: string[];
  };
}

/** Every path of one prefix and why the best won (the status socket's "route" command). */
export interface RouteExplanation {
  prefix: string;
  paths: PathStatus[];
  bestReason: string;
  /** The next hops the FIB is asked to install (none: nothing to install). */
  nexthops: string[];
  /** The kernel's last error installing it (absent: none kept, e.g. installed or never tried). */
  fibError?: FibRouteError;
}

export interface RoutesSnapshot {
  routes: RouteStatus[];
  /** True when the Loc-RIB holds more routes than one answer carries (100,000). */
  truncated?: boolean;
}

export interface StatusProvider {
  status(): StatusSnapshot;
  routes(): RoutesSnapshot;
}

/**
 * Serves `{"cmd":"status"}` / `{"cmd":"routes"}` lines on a unix socket, mode 0600, and the
 * host's own commands (`extra`, e.g. the node daemon's "node" and "log-level"), each given the
 * request's `args`.
 */
export async function serveStatus(
  path: string,
  provider: StatusProvider,
  extra: Record<string, (args: unknown) => unknown> = {},
): Promise<{ close(): Promise<void> }> {
  await prepareSocketPath(path, "Status socket");
  const server = net.createServer((sock) => {
    let buf = "";
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => {
      buf += d;
      if (buf.length > 4096) sock.destroy();
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      let reply: unknown;
      try {
        const req = JSON.parse(buf.slice(0, nl)) as { cmd?: string; args?: unknown };
        const own = typeof req.cmd === "string" ? Object.hasOwn(extra, req.cmd) : false;
        if (req.cmd === "status") reply = provider.status();
        else if (req.cmd === "routes") reply = provider.routes();
        else if (own) reply = (extra[req.cmd as string] as (a: unknown) => unknown)(req.args);
        else reply = { error: `Unknown command ${JSON.stringify(req.cmd)}` };
      } catch (e) {
        reply = { error: `Bad request: ${(e as Error).message}` };
      }
      sock.end(`${JSON.stringify(reply)}\n`);
    });
    sock.on("error", () => {});
  });
  return listenRootOnly(server, path);
}

/** Sends one request to the status socket and returns the parsed reply. */
export function queryStatus<T>(
  path: string,
  cmd: string,
  timeoutMs = 5000,
  args?: unknown,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(path);
    let buf = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`No answer from status socket ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding("utf8");
    sock.on("connect", () =>
      sock.write(`${JSON.stringify(args === undefined ? { cmd } : { cmd, args })}\n`),
    );
    sock.on("data", (d: string) => {
      buf += d;
    });
    sock.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`Cannot reach status socket ${path}: ${e.message}`));
    });
    sock.on("end", () => {
      clearTimeout(timer);
      try {
        const v = JSON.parse(buf) as T & { error?: string };
        if (v && typeof v === "object" && "error" in v && v.error) reject(new Error(v.error));
        else resolve(v);
      } catch (e) {
        reject(new Error(`Bad reply from status socket ${path}: ${(e as Error).message}`));
      }
    });
  });
}

function table(header: string[], rows: string[][]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(w[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

function duration(s: number | null): string {
  if (s === null) return "-";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h}h${String(m).padStart(2, "0")}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
}

export function formatStatus(s: StatusSnapshot): string {
  const head = `BGP router ${s.routerId}, AS ${s.asn}, Loc-RIB ${s.locRib.ipv4} IPv4 / ${s.locRib.ipv6} IPv6, FIB ${
    s.fib.enabled ? `${s.fib.installed} installed` : "disabled"
  }`;
  const rows = s.peers.map((p) => [
    p.address,
    String(p.asn),
    p.type === "internal" ? "iBGP" : "eBGP",
    p.state,
    duration(p.uptimeSeconds),
    `${p.prefixes.received}/${p.prefixes.accepted}/${p.prefixes.advertised}`,
    p.md5 ? "md5" : "",
    p.lastError ? errorText(p.lastError) : "",
  ]);
  const n = s.node;
  const addr = (a: string | undefined, how: string | undefined) =>
    a ? `${a}${how ? ` (${how})` : ""}` : how && how !== "none" ? `none (${how})` : "none";
  const node = n
    ? `Node ${n.name}: IPv4 ${addr(n.ipv4Address, n.ipv4Source)}; IPv6 ${addr(n.ipv6Address, n.ipv6Source)}\n`
    : "";
  const notes = s.peers.flatMap((p) => [
    ...(p.waiting ? [`${p.address}: waiting: ${p.waiting}`] : []),
    ...(p.heldDown?.length ? [`${p.address}: held down (${p.heldDown.join(", ")})`] : []),
    ...(p.staleFamilies?.length
      ? [
          `${p.address}: routes kept stale while it restarts (${p.staleFamilies.map((f) => `${f.family} ${f.timer}`).join(", ")})`,
        ]
      : []),
    ...(p.lastConfigReset
      ? [
          `${p.address}: session reset by a change of ${p.lastConfigReset.field} ${duration(p.lastConfigReset.secondsAgo)} ago`,
        ]
      : []),
  ]);
  const noteText = notes.length > 0 ? `${notes.join("\n")}\n` : "";
  const md5 = s.tcpMd5
    ? `TCP MD5 drops in this namespace: ${s.tcpMd5.failure} bad signature, ${s.tcpMd5.unexpected} unexpected signature, ${s.tcpMd5.notFound} missing signature\n`
    : "";
  const bfd = s.bfd?.length
    ? `BFD\n${table(
        ["PEER", "STATE", "REMOTE", "DIAG", "TX MS", "DETECT MS", "MODE"],
        s.bfd.map((b) => [
          b.peer,
          b.state,
          b.remoteState,
          b.diag,
          String(b.txIntervalMs),
          String(b.detectionTimeMs),
          b.multihop ? "multihop" : "single hop",
        ]),
      )}\n`
    : "";
  const refused = s.connectionsRefused
    ? `Connections refused (not from a peer's address): ${s.connectionsRefused}\n`
    : "";
  return `${node}${head}\n${table(["PEER", "AS", "TYPE", "STATE", "UPTIME", "RCVD/ACPT/ADV", "AUTH", "LAST ERROR"], rows)}\n${noteText}${md5}${refused}${bfd}`;
}

export function errorText(e: NonNullable<PeerStatus["lastError"]>): string {
  if (e.code !== undefined)
    return `${e.kind} ${e.code}/${e.subcode ?? 0}${e.message ? ` (${e.message})` : ""}`;
  return e.message ? `${e.kind} (${e.message})` : e.kind;
}

export function formatRoutes(r: RoutesSnapshot): string {
  const rows = r.routes.map((x) => [
    x.prefix,
    x.best.nextHop,
    x.best.peer,
    x.best.asPath || "(local)",
    x.reason,
    x.multipath.length > 1 ? `ecmp ${x.multipath.length}` : "",
  ]);
  return `${table(["PREFIX", "NEXT HOP", "FROM", "AS PATH", "REASON", ""], rows)}\n`;
}
