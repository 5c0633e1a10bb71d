// The FIB contract shared by the kernel programmer (src/fib/kernel_*.ts), the in-memory FIB
// used by pure tests, the BGP speaker and the agent. Owns: the route value type and the
// desired-state interface. Not: netlink encoding (src/fib/netlink*), BGP or agent logic.

/** rtnetlink protocol numbers we own (DESIGN.md §5); we never change routes of any other. */
export const RTPROT_OCELOT_BGP = 201;
export const RTPROT_OCELOT_AGENT = 202;

export const RT_TABLE_MAIN = 254;

export type RouteFamily = 4 | 6;
export type RouteType = "unicast" | "blackhole" | "unreachable" | "prohibit";
export type RouteScope = "universe" | "link" | "host";

export interface NextHop {
  /** Gateway address in text form ("10.0.0.1", "fe80::1"); absent for device routes. */
  gateway?: string;
  /** Output interface name; required for link-local gateways and device routes. */
  dev?: string;
  onlink?: boolean;
  /** ECMP weight, 1..256 (default 1). */
  weight?: number;
}

export interface Route {
  family: RouteFamily;
  /** Destination in CIDR text form with host bits zero: "10.244.1.0/26", "fd00::/122". */
  dst: string;
  table?: number; // default RT_TABLE_MAIN
  protocol: number; // RTPROT_OCELOT_BGP or RTPROT_OCELOT_AGENT
  type?: RouteType; // default "unicast"
  scope?: RouteScope; // default "universe" ("link" for device-only routes)
  metric?: number; // RTA_PRIORITY, default 0
  /** One next hop for a plain route, several for ECMP; empty for blackhole/unreachable. */
  nexthops: NextHop[];
  /** Preferred source address (RTA_PREFSRC). */
  src?: string;
}

/** Identity of a route in the kernel: family, table, dst, metric (what RTM_DELROUTE matches). */
export function routeKey(r: Pick<Route, "family" | "dst" | "table" | "metric">): string {
  return `${r.family}|${r.table ?? RT_TABLE_MAIN}|${r.dst}|${r.metric ?? 0}`;
}

/**
 * Desired-state FIB: callers say what should be installed under one protocol number; the
 * implementation converges the kernel (or memory) to it, batching, and keeps it so.
 */
export interface Fib {
  /** Sets (adds or replaces) routes. Resolves when the kernel acknowledged them. */
  set(routes: Route[]): Promise<void>;
  /** Removes routes by identity. Resolves when acknowledged. Unknown routes are ignored. */
  remove(routes: Pick<Route, "family" | "dst" | "table" | "metric" | "protocol">[]): Promise<void>;
  /** Routes currently desired (what we own), for status and tests. */
  desired(): Route[];
  close(): Promise<void>;
  /** The kernel's last error for a route to `dst` ("10.0.0.0/24"), when it has one. */
  routeError?(dst: string): FibRouteError | undefined;
}

// ---- Compatible extensions (FIB engineer): the numeric IPv4 fast path and per-route errors.

/**
 * Many IPv4 routes sharing one attribute set (one BGP UPDATE's NLRI): destinations as numbers
 * (host order) and prefix lengths, no per-route strings or objects.
 */
export interface V4Batch {
  addrs: Uint32Array;
  lens: Uint8Array;
  /** How many entries of addrs/lens to use (default addrs.length). */
  count?: number;
  table?: number;
  protocol: number;
  type?: RouteType;
  scope?: RouteScope;
  metric?: number;
  nexthops: NextHop[];
  src?: string;
}

/** One route the kernel refused, with the errno name and the kernel's extended-ACK text. */
export interface FibFailure {
  /** "10.0.0.0/24 table 254 metric 0". */
  route: string;
  op: "set" | "remove";
  errno: number;
  code: string;
  message?: string;
}

/**
 * The kernel's last refusal of one route (a FibFailure with the errno's text and when it
 * happened), kept by the FIB until the route is sent again, installed or withdrawn.
 */
export interface FibRouteError extends FibFailure {
  /** strerror-style text of the errno: "Network is unreachable". */
  reason: string;
  /** Unix time in ms the kernel answered. */
  at: number;
}

/** Rejection of set()/remove() when some routes failed; the others were applied. */
export class FibError extends Error {
  constructor(readonly failures: FibFailure[]) {
    const f = failures[0];
    super(
      `Kernel refused ${failures.length} route(s); first: ${f?.op} "${f?.route}": ${f?.code}${f?.message ? ` (${f.message})` : ""}`,
    );
    this.name = "FibError";
  }
}

/** A Fib with the numeric batch path (KernelFib and MemoryFib implement it). */
export interface BatchFib extends Fib {
  setV4Batch(batch: V4Batch): Promise<void>;
  removeV4Batch(
    batch: Pick<V4Batch, "addrs" | "lens" | "count" | "table" | "metric" | "protocol">,
  ): Promise<void>;
}
