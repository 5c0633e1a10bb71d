// The `ocelot bgpd --config FILE` YAML: schema (hand-written, strict: the daemon does not load a
// schema library), parsing with errors that name the field path and value, defaults, and
// impact(old, new) per peer for reconfiguration by diff, and reading peers' TCP-MD5 password
// files. Not: applying the change (src/bgp/speaker/core.ts) or the filter semantics (src/bgp/policy/).
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import ipaddr from "ipaddr.js";
import { parse as parseYaml } from "yaml";
import type { ImportOwnership } from "./policy/ownership.js";

export type Family = "ipv4-unicast" | "ipv6-unicast";
const FAMILIES: readonly Family[] = ["ipv4-unicast", "ipv6-unicast"];

/** An operation of an accepting rule (Calico v3 BGPFilterOperation): exactly one field. */
export interface FilterOperation {
  addCommunity?: { value: string };
  prependASPath?: { prefix: number[] };
  setPriority?: { value: number };
}

/** A rule in the shape of Calico's BGPFilter (v3 BGPFilterRuleV4/V6). */
export interface FilterRule {
  action: "Accept" | "Reject";
  cidr?: string;
  matchOperator?: "Equal" | "NotEqual" | "In" | "NotIn";
  prefixLength?: { min?: number; max?: number };
  /** Only routes learned from peers. */
  source?: "RemotePeers";
  /** The route's next-hop interface (a BIRD pattern: * and ?). */
  interface?: string;
  /** Only on sessions of this type. */
  peerType?: "eBGP" | "iBGP";
  /** The route carries these communities ("aa:nn" or large "a:b:c"). */
  communities?: { values: string[] };
  /** AS_PATH begins with these ASNs. */
  asPathPrefix?: number[];
  /** The route's priority (2^31-1 - LOCAL_PREF, else 1024). */
  priority?: number;
  /** Export: changes made to an accepted route. */
  operations?: FilterOperation[];
}

export interface Filter {
  rules: FilterRule[];
}

export interface PeerConfig {
  /**
   * The peer's address. For an unnumbered peer (`interface`), its IPv6 link-local address with
   * the interface as zone ("fe80::1%eth0"), filled in by link/unnumbered.ts's
   * resolveInterfacePeers() (and followed as it changes).
   */
  address: string;
  /** Unnumbered peering: the peer is the IPv6 link-local neighbour on this interface. */
  interface?: string;
  asn: number;
  port: number;
  passive: boolean;
  holdTime: number;
  /**
   * Seconds to wait for the peer's OPEN once TCP is up (the HoldTimer of OpenSent, RFC 4271
   * §8.2.2's "large value"; BIRD's `startup hold time`): a connection that sends nothing, or a
   * byte now and then, is dropped after this. Default 240, as the RFC suggests.
   */
  startupHoldTime: number;
  connectRetryTime: number;
  families?: Family[];
  requiredFamilies: Family[];
  sourceAddress?: string;
  /** eBGP multihop TTL; absent means TTL 1 towards eBGP peers (directly connected). */
  multihop?: number;
  /**
   * GTSM (RFC 5082): the peer is at most this many hops away (1..255). We send with TTL 255 and
   * the kernel drops the peer's packets arriving with a TTL (IPv6: hop limit) below 256 - hops.
   * Exclusive with multihop.
   */
  ttlSecurity?: number;
  /**
   * The gateway the peer is reached through (Calico's BGPPeer reachableBy): a host route to the
   * peer's address via it is kept in the kernel (our protocol, the FIB's table) while the peer
   * is configured, as confd's BIRD static `route <peer>/32 via <gateway>`.
   */
  reachableBy?: string;
  allowOwnAs: number;
  routeReflectorClient: boolean;
  /** Refused by the validation for now (see the peer shape): always absent. */
  nextHopSelf?: boolean;
  importFilter?: Filter;
  /**
   * Import rules evaluated ahead of importFilter whose changes need nothing from the peer: the
   * Adj-RIB-In is kept whole (rejected paths too), so a change is applied by re-evaluating it in
   * place and never asks the peer for a ROUTE-REFRESH. `ocelot node run` puts here the rules
   * that follow cluster membership (a host route to a Node's address rejected from a non-Node
   * peer), so a Node joining costs no refresh from every peer.
   */
  importGuard?: Filter;
  /**
   * Inside `within` (the IP pools) the peer may announce only its `accept` prefixes, or host
   * routes inside them; anything else there is rejected (reason NotOwned) ahead of every rule
   * (src/bgp/policy/ownership.ts). Applied in place as importGuard is (no ROUTE-REFRESH).
   * `ocelot node run` sets it toward Nodes: their confirmed blocks and borrowed addresses.
   */
  importOwnership?: ImportOwnership;
  exportFilter?: Filter;
  /**
   * TCP-MD5 key (RFC 2385), 1..80 bytes; set from passwordFile by resolvePasswordFiles().
   * Never logged, never shown (status shows `md5: true`).
   */
  password?: string;
  /** A file holding the password (trailing newline stripped), read at start and on reload. */
  passwordFile?: string;
  /** BFD (RFC 5880/5881/5883) towards this peer; turning it on or off never resets the session. */
  bfd?: PeerBfd;
  /**
   * Drop the session at once when the link to this directly connected peer goes down (BIRD's
   * `check link`); default: the config's `checkLink`. Never for multihop peers.
   */
  checkLink?: boolean;
  /** Per family: how many prefixes the peer may send (RFC 4486 Cease/1 beyond). */
  maxPrefixes?: Partial<Record<Family, MaxPrefix>>;
  /** RFC 7911 ADD-PATH for each of the peer's families (absent: not advertised). */
  addPath?: PeerAddPath;
  /**
   * Seconds this peer keeps our routes when our session drops (the restart time of the graceful
   * restart capability we send it, 1..4095; absent: gracefulRestart.restartTime).
   */
  gracefulRestartTime?: number;
  /**
   * RFC 9494 long-lived graceful restart with this peer: the long-lived stale time (seconds,
   * 1..16777215) we announce in the LLGR capability (the peer keeps our routes as LLGR_STALE
   * that long after its restart timer), and the switch for the helper side: when the peer
   * announced LLGR too, its routes are kept as LLGR_STALE for the stale time *it* announced
   * once its restart time is over. Absent: LLGR not announced (plain graceful restart).
   */
  longLivedStaleTime?: number;
  /**
   * RFC 9494 §4.6, the optional partial deployment procedure, for an internal (iBGP) peer: when
   * it did not negotiate LLGR, LLGR_STALE routes are sent to it all the same, with NO_EXPORT
   * added and LOCAL_PREF 0, instead of being withdrawn (default false).
   */
  llgrPartialDeployment?: boolean;
  /** RFC 8654 extended messages advertised (absent: true). */
  extendedMessage?: boolean;
  /**
   * RFC 8950: IPv4 routes with an IPv6 next hop on this (IPv6) session, advertised when true;
   * once negotiated, our IPv4 routes go to the peer with our IPv6 address as next hop.
   */
  extendedNextHop?: boolean;
}

/** A peer's ADD-PATH: receive several paths per prefix, send up to `send` (0: do not send). */
export interface PeerAddPath {
  receive: boolean;
  /** Paths sent per prefix: the best and the paths equal to it (multipath), best first. */
  send: number;
  /** The families ADD-PATH is advertised for (absent: all of the peer's). */
  families?: Family[];
}

/** A peer's prefix limit for one family. */
export interface MaxPrefix {
  /** Prefixes received (accepted or not) beyond which the session is closed with Cease/1. */
  limit: number;
  /** A warning is logged once per session at this percentage of the limit (default 75). */
  warningPercent: number;
  /** Seconds the session stays down after the limit closed it (default 60; 0: until SIGHUP). */
  restartTime: number;
}

/** A peer's BFD session: intervals in ms, as FRR's `bfd` profile gives them. */
export interface PeerBfd {
  /** bfd.DesiredMinTxInterval once Up (default 300). */
  minTx: number;
  /** bfd.RequiredMinRxInterval (default 300). */
  minRx: number;
  /** bfd.DetectMult (default 3): Down after this many intervals without a packet. */
  multiplier: number;
  /** RFC 5883 multihop (UDP 4784, no TTL check) instead of single hop (3784, TTL 255). */
  multihop: boolean;
  /** RFC 5880 §6.7 authentication (absent: none). */
  authentication?: PeerBfdAuth;
}

/** BFD authentication as BIRD's `authentication` / `password` give it. */
export interface PeerBfdAuth {
  type: "simple" | "keyed-md5" | "meticulous-keyed-md5" | "keyed-sha1" | "meticulous-keyed-sha1";
  /** The Key ID sent and required (default 1). */
  keyId: number;
  /** The key (simple: 1-16 bytes; MD5 up to 16, SHA1 up to 20), or read from passwordFile. */
  password?: string;
  passwordFile?: string;
}

export interface Origination {
  prefix: string;
  communities: string[];
  largeCommunities: string[];
}

export interface BgpdConfig {
  asn: number;
  routerId: string;
  listen: { address: string; port: number };
  /** Route-reflector cluster ID; defaults to the router ID when there are RR clients. */
  clusterId?: string;
  peers: PeerConfig[];
  originate: Origination[];
  fib: {
    enabled: boolean;
    table: "main" | number;
    protocol: number;
    /** Seconds to keep routes found in the kernel at start (a restart) before sweeping them. */
    gracefulRestartTime: number;
    /**
     * Routes inside these prefixes are kept and advertised but never installed in the kernel
     * (Calico's kernel filter for the Service IP ranges). Absent in a config built in code: none.
     */
    exclude?: string[];
    /**
     * The kernel metric (route priority) of the routes learned from peers, per family: Calico's
     * BGPConfiguration ipv4NormalRoutePriority / ipv6NormalRoutePriority. 0: the kernel's
     * default (0 for IPv4, 1024 for IPv6). Absent in a config built in code: 0.
     */
    metricV4?: number;
    metricV6?: number;
    /**
     * Calico's route priorities (its BIRD's krt_metric): metricV4/metricV6 are the normal
     * priority of each family (0 for IPv6: 1024), a route learned with another priority
     * (2^31-1 - its LOCAL_PREF from an iBGP peer or an import setPriority) is installed at that
     * metric, a filter's `priority` compares with the normal one when a route carries none, and
     * routes go to iBGP peers with LOCAL_PREF 2^31-1 - their priority (the normal one when they
     * have none). Default false: every learned route at metricV4/V6, default LOCAL_PREF 100.
     */
    metricFromPriority?: boolean;
  };
  /**
   * RFC 4724 graceful restart with RFC 8538's N bit, towards every peer (the parser always sets
   * it; absent in a config built in code means the defaults).
   */
  gracefulRestart?: GracefulRestartConfig;
  status: { socket: string };
  /**
   * Watch the links of directly connected peers (single-hop eBGP, iBGP on a connected subnet,
   * unnumbered) and drop a session at once when its link goes down, as FRR's fast external
   * failover (default true; absent in a config built in code means true).
   */
  checkLink?: boolean;
}

export interface GracefulRestartConfig {
  /**
   * Announce graceful restart for our families (peers keep our routes while we restart) and
   * defer our first updates after a restart until the peers' End-of-RIB (default true, as FRR
   * and BIRD operators expect). Helper mode (keeping a restarting peer's routes) is always on.
   */
  enabled: boolean;
  /** Seconds a peer keeps our routes once our session dropped (1..4095, default 120). */
  restartTime: number;
  /**
   * Seconds we keep a restarted peer's stale routes once its session is back, waiting for its
   * End-of-RIB (default 360, FRR's stalepath-time).
   */
  staleRoutesTime: number;
}

export const GRACEFUL_RESTART_DEFAULTS: GracefulRestartConfig = {
  enabled: true,
  restartTime: 120,
  staleRoutesTime: 360,
};

/** The longest FIB hold a timer can run (setTimeout's limit, 24.8 days), in seconds. */
export const MAX_FIB_HOLD_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/**
 * How long, in seconds, the FIB keeps the routes it finds in the kernel at start (our restart)
 * before sweeping those nobody set again (the sweep comes earlier, once every peer re-sent its
 * table). `fib.gracefulRestartTime`, or longer toward a peer with long-lived graceful restart
 * (RFC 9494): such a peer keeps our routes for our restart time plus the long-lived stale
 * time, so our kernel keeps its routes as long, as a helper would (0 stays 0: no hold).
 */
export function fibGracefulHoldSeconds(cfg: BgpdConfig): number {
  const base = cfg.fib.gracefulRestartTime;
  if (base === 0) return 0;
  const gr = cfg.gracefulRestart ?? GRACEFUL_RESTART_DEFAULTS;
  let hold = base;
  for (const p of cfg.peers) {
    if (p.longLivedStaleTime === undefined) continue;
    const restart = gr.enabled ? (p.gracefulRestartTime ?? gr.restartTime) : 0;
    hold = Math.max(hold, restart + p.longLivedStaleTime);
  }
  return Math.min(hold, MAX_FIB_HOLD_SECONDS);
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

// ---- validation -------------------------------------------------------------------------------

type Path = (string | number)[];

/** One problem; a fatal one (wrong type, bad option) skips the whole-object checks above it. */
interface Issue {
  path: Path;
  message: string;
  missing?: boolean;
  unknown?: string[];
  fatal: boolean;
}

/**
 * A field's validator: issues pushed to the list; the value, kept after a non-fatal issue (for
 * the whole-object rules), undefined after a fatal one.
 */
type Field<T> = (v: unknown, path: Path, issues: Issue[]) => T | undefined;

function received(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number" && Number.isNaN(v)) return "NaN";
  if (typeof v === "number" && !Number.isFinite(v)) return v > 0 ? "Infinity" : "-Infinity";
  return typeof v;
}

function wrongType(v: unknown, expected: string, path: Path, issues: Issue[]): undefined {
  issues.push({
    path,
    message: `Invalid input: expected ${expected}, received ${received(v)}`,
    missing: v === undefined,
    fatal: true,
  });
  return undefined;
}

function custom(path: Path, message: string, issues: Issue[]): void {
  issues.push({ path, message, fatal: false });
}

interface IntRange {
  min: number;
  max: number;
  /** Further rule: the message when the value breaks it. */
  rule?: (n: number) => string | undefined;
}

function int({ min, max, rule }: IntRange): Field<number> {
  return (v, path, issues) => {
    if (typeof v !== "number" || !Number.isFinite(v)) return wrongType(v, "number", path, issues);
    if (!Number.isInteger(v)) return wrongType(v, "int", path, issues);
    if (v < min) custom(path, `Too small: expected number to be >=${min}`, issues);
    if (v > max) custom(path, `Too big: expected number to be <=${max}`, issues);
    const why = rule?.(v);
    if (why) custom(path, why, issues);
    return v;
  };
}

/** A string that passes each check in turn (message when it fails); all failures are reported. */
function text(...checks: [(s: string) => boolean, string][]): Field<string> {
  return (v, path, issues) => {
    if (typeof v !== "string") return wrongType(v, "string", path, issues);
    for (const [ok, message] of checks) if (!ok(v)) custom(path, message, issues);
    return v;
  };
}

const bool: Field<boolean> = (v, path, issues) =>
  typeof v === "boolean" ? v : wrongType(v, "boolean", path, issues);

/** A field the speaker does not act on yet: refused with why, never accepted and ignored. */
function notSupported<T>(why: string): Field<T> {
  return (_v, path, issues) => {
    custom(path, why, issues);
    return undefined;
  };
}

function oneOf<T extends string>(options: readonly T[]): Field<T> {
  return (v, path, issues) => {
    if (options.includes(v as T)) return v as T;
    issues.push({
      path,
      message: `Invalid option: expected one of ${options.map((o) => JSON.stringify(o)).join("|")}`,
      fatal: true,
    });
    return undefined;
  };
}

function list<T>(item: Field<T>, minItems = 0): Field<T[]> {
  return (v, path, issues) => {
    if (!Array.isArray(v)) return wrongType(v, "array", path, issues);
    const out = v.map((x, i) => item(x, [...path, i], issues) as T);
    if (v.length < minItems)
      custom(path, `Too small: expected array to have >=${minItems} items`, issues);
    return out;
  };
}

/** A field of an object: required, optional (absent stays absent) or with a default. */
interface Spec<T> {
  field: Field<T>;
  optional?: boolean;
  dflt?: () => T;
}
const req = <T>(field: Field<T>): Spec<T> => ({ field });
const opt = <T>(field: Field<T>): Spec<T> => ({ field, optional: true });
const dflt = <T>(field: Field<T>, value: () => T): Spec<T> => ({ field, dflt: value });

/**
 * A strict object: fields in declaration order, then unknown fields, then the whole-object
 * rule (only when no field had a fatal issue).
 */
function object<T>(
  shape: { [K in keyof T]-?: Spec<T[K]> },
  rule?: (o: T, path: Path, issues: Issue[]) => void,
): Field<T> {
  return (v, path, issues) => {
    if (v === null || typeof v !== "object" || Array.isArray(v))
      return wrongType(v, "object", path, issues);
    const src = v as Record<string, unknown>;
    const before = issues.length;
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(shape) as (keyof T & string)[]) {
      const spec = shape[key] as Spec<unknown>;
      const x = src[key];
      if (x === undefined && spec.optional) continue;
      if (x === undefined && spec.dflt) out[key] = spec.dflt();
      else out[key] = spec.field(x, [...path, key], issues);
    }
    const unknown = Object.keys(src).filter((k) => !Object.hasOwn(shape, k));
    if (unknown.length > 0) issues.push({ path, message: "", unknown, fatal: false });
    if (rule && !issues.slice(before).some((i) => i.fatal)) rule(out as T, path, issues);
    return out as T;
  };
}

const asn = int({
  min: 1,
  max: 4294967295,
  rule: (n) => (n === 23456 ? "AS 23456 is AS_TRANS and cannot be used" : undefined),
});
const port = (min: number) => int({ min, max: 65535 });

const ipAddress = text([(s) => isIP(s) !== 0, "not an IP address"]);
/** An address in canonical text (RFC 5952 for IPv6), as sockets report it. */
const canonicalAddress: Field<string> = (v, path, issues) => {
  const before = issues.length;
  const s = ipAddress(v, path, issues);
  return s === undefined || issues.length > before ? s : ipaddr.parse(s).toString();
};
const ipv4Address = text([(s) => isIP(s) === 4, "not an IPv4 address"]);

function validCidr(s: string): boolean {
  const [addr, len, ...rest] = s.split("/");
  if (rest.length > 0 || addr === undefined || len === undefined || !/^\d{1,3}$/.test(len))
    return false;
  const v = isIP(addr);
  const n = Number(len);
  return v !== 0 && n <= (v === 4 ? 32 : 128);
}
const cidr = text([validCidr, "not a CIDR (address/length)"]);
/** A CIDR whose host bits are zero (a prefix as the RIB keys it). */
const prefixCidr = text([
  (s) => {
    if (!validCidr(s)) return false;
    const [a] = ipaddr.parseCIDR(s);
    const net =
      a.kind() === "ipv4"
        ? ipaddr.IPv4.networkAddressFromCIDR(s)
        : ipaddr.IPv6.networkAddressFromCIDR(s);
    return net.toString() === a.toString();
  },
  "not a prefix (address/length, host bits zero)",
]);

const community = text(
  [(s) => /^\d{1,5}:\d{1,5}$/.test(s), "not a community (AS:value)"],
  [(s) => s.split(":").every((p) => Number(p) <= 65535), "community parts must be at most 65535"],
);
const largeCommunity = text(
  [(s) => /^\d{1,10}:\d{1,10}:\d{1,10}$/.test(s), "not a large community (global:local1:local2)"],
  [
    (s) => s.split(":").every((p) => Number(p) <= 4294967295),
    "large community parts must be at most 4294967295",
  ],
);

const anyCommunity = text([
  (s) =>
    /^\d{1,10}(:\d{1,10}){1,2}$/.test(s) &&
    (s.split(":").length === 3
      ? s.split(":").every((p) => Number(p) <= 4294967295)
      : s.split(":").every((p) => Number(p) <= 65535)),
  "not a community (aa:nn, each at most 65535) or large community (a:b:c)",
]);
const priority = int({ min: 1, max: 2147483646 });
const filterOperation = object<FilterOperation>(
  {
    addCommunity: opt(object<{ value: string }>({ value: req(anyCommunity) })),
    prependASPath: opt(
      object<{ prefix: number[] }>({ prefix: req(list(int({ min: 0, max: 4294967295 }), 1)) }),
    ),
    setPriority: opt(object<{ value: number }>({ value: req(priority) })),
  },
  (o, path, issues) => {
    if (Object.keys(o).length !== 1)
      custom(
        path,
        "exactly one operation must be set: addCommunity, prependASPath or setPriority",
        issues,
      );
  },
);

const filterRule = object<FilterRule>(
  {
    action: req(oneOf(["Accept", "Reject"] as const)),
    cidr: opt(cidr),
    matchOperator: opt(oneOf(["Equal", "NotEqual", "In", "NotIn"] as const)),
    prefixLength: opt(
      object<{ min?: number; max?: number }>({
        min: opt(int({ min: 0, max: 128 })),
        max: opt(int({ min: 0, max: 128 })),
      }),
    ),
    source: opt(oneOf(["RemotePeers"] as const)),
    interface: opt(
      text([(s) => /^[a-zA-Z0-9_.*?-]{1,15}$/.test(s), "not an interface name or pattern"]),
    ),
    peerType: opt(oneOf(["eBGP", "iBGP"] as const)),
    communities: opt(object<{ values: string[] }>({ values: req(list(anyCommunity, 1)) })),
    asPathPrefix: opt(list(int({ min: 0, max: 4294967295 }))),
    priority: opt(priority),
    operations: opt(list(filterOperation, 1)),
  },
  (r, path, issues) => {
    if ((r.cidr === undefined) !== (r.matchOperator === undefined))
      custom(path, "cidr and matchOperator go together", issues);
    if (r.operations !== undefined && r.action !== "Accept")
      custom(path, "operations need action Accept", issues);
  },
);

const filter = object<Filter>({ rules: req(list(filterRule)) });

const holdTime = int({
  min: 0,
  max: 65535,
  rule: (n) => (n === 0 || n >= 3 ? undefined : "hold time must be 0 or at least 3 seconds"),
});

/** Seconds to wait for a peer's OPEN: RFC 4271 §8.2.2's suggested "large value", 4 minutes. */
export const DEFAULT_STARTUP_HOLD_TIME = 240;

/** RFC 2385 keys as Linux takes them: TCP_MD5SIG_MAXKEYLEN is 80 bytes. */
export const MAX_PASSWORD_BYTES = 80;

function passwordProblem(s: string): string | undefined {
  const n = Buffer.byteLength(s, "utf8");
  if (n < 1) return "Too small: expected a password of >=1 bytes";
  if (n > MAX_PASSWORD_BYTES)
    return `Too big: expected a password of <=${MAX_PASSWORD_BYTES} bytes, got ${n}`;
  return undefined;
}

const password: Field<string> = (v, path, issues) => {
  if (typeof v !== "string") return wrongType(v, "string", path, issues);
  const why = passwordProblem(v);
  if (why) custom(path, why, issues);
  return v;
};

const nonEmpty = text([(s) => s.length >= 1, "Too small: expected string to have >=1 characters"]);

const bfdInterval = int({ min: 10, max: 60_000 });

const peerBfd = object<PeerBfd>({
  minTx: dflt(bfdInterval, () => 300),
  minRx: dflt(bfdInterval, () => 300),
  multiplier: dflt(int({ min: 1, max: 255 }), () => 3),
  multihop: dflt(bool, () => false),
  authentication: opt(
    object<PeerBfdAuth>(
      {
        type: req(
          oneOf([
            "simple",
            "keyed-md5",
            "meticulous-keyed-md5",
            "keyed-sha1",
            "meticulous-keyed-sha1",
          ] as const),
        ),
        keyId: dflt(int({ min: 0, max: 255 }), () => 1),
        password: opt(nonEmpty),
        passwordFile: opt(nonEmpty),
      },
      (a, path, issues) => {
        if ((a.password === undefined) === (a.passwordFile === undefined))
          custom(path, "give password or passwordFile, one of them", issues);
        const why = a.password === undefined ? undefined : bfdKeyProblem(a.type, a.password);
        if (why) custom([...path, "password"], why, issues);
      },
    ),
  ),
});

/** Why a BFD key does not fit its type (RFC 5880 §4.2-4.4), or undefined. */
export function bfdKeyProblem(type: PeerBfdAuth["type"], key: string): string | undefined {
  const n = Buffer.byteLength(key, "utf8");
  const max = type === "simple" || type.endsWith("md5") ? 16 : 20;
  if (n < 1 || n > max) return `a ${type} key is 1 to ${max} bytes, got ${n}`;
  return undefined;
}

const ifName = text(
  [(s) => s.length >= 1 && s.length <= 15, "an interface name is 1 to 15 characters"],
  [(s) => !/[\s/%]/.test(s), "an interface name has no space, '/' or '%'"],
);

const maxPrefix = object<MaxPrefix>({
  limit: req(int({ min: 1, max: 4294967295 })),
  warningPercent: dflt(int({ min: 1, max: 100 }), () => 75),
  restartTime: dflt(int({ min: 0, max: 86400 }), () => 60),
});

const maxPrefixes = object<Partial<Record<Family, MaxPrefix>>>({
  "ipv4-unicast": opt(maxPrefix),
  "ipv6-unicast": opt(maxPrefix),
});

const peer = object<PeerConfig>(
  {
    address: opt(canonicalAddress),
    interface: opt(ifName),
    asn: req(asn),
    port: dflt(port(1), () => 179),
    passive: dflt(bool, () => false),
    holdTime: dflt(holdTime, () => 90),
    startupHoldTime: dflt(int({ min: 3, max: 65535 }), () => DEFAULT_STARTUP_HOLD_TIME),
    connectRetryTime: dflt(port(1), () => 5),
    families: opt(list(oneOf(FAMILIES), 1)),
    requiredFamilies: dflt(list(oneOf(FAMILIES)), () => []),
    sourceAddress: opt(canonicalAddress),
    multihop: opt(int({ min: 1, max: 255 })),
    ttlSecurity: opt(int({ min: 1, max: 255 })),
    reachableBy: opt(canonicalAddress),
    allowOwnAs: dflt(int({ min: 0, max: 10 }), () => 0),
    routeReflectorClient: dflt(bool, () => false),
    nextHopSelf: opt(
      notSupported<boolean>(
        "nextHopSelf is not supported yet: the next hop is always this speaker toward eBGP peers and for its own and eBGP-learned routes toward iBGP peers, and reflected routes keep theirs",
      ),
    ),
    importFilter: opt(filter),
    importGuard: opt(filter),
    importOwnership: opt(
      object<ImportOwnership>({ within: req(list(prefixCidr)), accept: req(list(prefixCidr)) }),
    ),
    exportFilter: opt(filter),
    password: opt(password),
    passwordFile: opt(nonEmpty),
    bfd: opt(peerBfd),
    checkLink: opt(bool),
    addPath: opt(
      object<PeerAddPath>({
        receive: dflt(bool, () => true),
        send: dflt(int({ min: 0, max: 255 }), () => 0),
        families: opt(list(oneOf(FAMILIES), 1)),
      }),
    ),
    extendedMessage: opt(bool),
    extendedNextHop: opt(bool),
    maxPrefixes: opt(maxPrefixes),
    gracefulRestartTime: opt(int({ min: 1, max: 4095 })),
    longLivedStaleTime: opt(int({ min: 1, max: 0xffffff })),
    llgrPartialDeployment: opt(bool),
  },
  (p, path, issues) => {
    if ((p.address === undefined) === (p.interface === undefined))
      custom(path, "give the peer's address or its interface (unnumbered), one of them", issues);
    if (p.password !== undefined && p.passwordFile !== undefined)
      custom(path, "password and passwordFile are exclusive: set one", issues);
    if (p.ttlSecurity !== undefined && p.multihop !== undefined)
      custom(
        path,
        "ttlSecurity and multihop are exclusive: ttlSecurity sends with TTL 255 and checks the peer's",
        issues,
      );
    if (
      p.reachableBy !== undefined &&
      (p.address === undefined || p.address.includes(":") !== p.reachableBy.includes(":"))
    )
      custom(path, "reachableBy needs an address of the peer's family", issues);
  },
);

const origination = object<Origination>({
  prefix: req(cidr),
  communities: dflt(list(community), () => []),
  largeCommunities: dflt(list(largeCommunity), () => []),
});

const fibTable: Field<"main" | number> = (v, path, issues) => {
  if (v === "main") return v;
  if (typeof v === "number" && Number.isInteger(v))
    return int({ min: 1, max: 4294967295 })(v, path, issues);
  issues.push({ path, message: "Invalid input", fatal: true });
  return undefined;
};

const DEFAULT_SOCKET = "/run/ocelot/bgpd.sock";
/** The default listen address: both families on one socket (see transport.ts for no IPv6). */
export const DEFAULT_LISTEN = "::";

const bgpdConfig = object<BgpdConfig>(
  {
    asn: req(asn),
    routerId: req(ipv4Address),
    // "::" is one dual-stack socket (IPv4 peers arrive IPv4-mapped), as BIRD and FRR listen.
    listen: dflt(
      object<BgpdConfig["listen"]>({
        address: dflt(ipAddress, () => DEFAULT_LISTEN),
        port: dflt(port(0), () => 179),
      }),
      () => ({ address: DEFAULT_LISTEN, port: 179 }),
    ),
    clusterId: opt(ipv4Address),
    peers: dflt(list(peer), () => []),
    originate: dflt(list(origination), () => []),
    fib: dflt(
      object<BgpdConfig["fib"]>({
        enabled: dflt(bool, () => true),
        table: dflt(fibTable, () => "main" as const),
        protocol: dflt(int({ min: 1, max: 255 }), () => 201),
        gracefulRestartTime: dflt(int({ min: 0, max: 3600 }), () => 120),
        exclude: dflt(list(cidr), () => []),
        metricV4: dflt(int({ min: 0, max: 2147483646 }), () => 0),
        metricV6: dflt(int({ min: 0, max: 2147483646 }), () => 0),
        metricFromPriority: dflt(bool, () => false),
      }),
      () => ({
        enabled: true,
        table: "main",
        protocol: 201,
        gracefulRestartTime: 120,
        exclude: [],
        metricV4: 0,
        metricV6: 0,
        metricFromPriority: false,
      }),
    ),
    gracefulRestart: dflt(
      object<GracefulRestartConfig>({
        enabled: dflt(bool, () => GRACEFUL_RESTART_DEFAULTS.enabled),
        restartTime: dflt(int({ min: 1, max: 4095 }), () => GRACEFUL_RESTART_DEFAULTS.restartTime),
        staleRoutesTime: dflt(
          int({ min: 1, max: 3600 }),
          () => GRACEFUL_RESTART_DEFAULTS.staleRoutesTime,
        ),
      }),
      () => ({ ...GRACEFUL_RESTART_DEFAULTS }),
    ),
    checkLink: dflt(bool, () => true),
    status: dflt(
      object<BgpdConfig["status"]>({
        socket: dflt(nonEmpty, () => DEFAULT_SOCKET),
      }),
      () => ({ socket: DEFAULT_SOCKET }),
    ),
  },
  (c, _path, issues) => {
    const seen = new Set<string>();
    (c.peers ?? []).forEach((p, i) => {
      if (p === undefined || typeof p.address !== "string") return;
      if (seen.has(p.address))
        custom(["peers", i, "address"], `duplicate peer ${p.address}`, issues);
      seen.add(p.address);
      // RFC 9494 §4.6: "the neighbors MUST be internal".
      if (p.llgrPartialDeployment && c.asn !== undefined && p.asn !== c.asn)
        custom(
          ["peers", i, "llgrPartialDeployment"],
          `only for an internal (iBGP) peer: ${p.address} is AS ${p.asn}, we are AS ${c.asn}`,
          issues,
        );
    });
  },
);

function pathText(path: Path): string {
  return path.reduce<string>(
    (acc, p) => (typeof p === "number" ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p),
    "",
  );
}

function valueAt(root: unknown, path: Path): unknown {
  let v: unknown = root;
  for (const p of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

/** A secret's path: its value never appears in an error message. */
const isSecret = (path: Path) => path[path.length - 1] === "password";
/** JSON.stringify replacer for a value shown in an error: passwords inside it are masked. */
const hideSecrets = (key: string, v: unknown) => (key === "password" ? "(not shown)" : v);

/**
 * Validates a parsed document; throws ConfigError naming each bad field path and its value
 * (a password's value is never shown).
 */
export function parseConfig(doc: unknown): BgpdConfig {
  const issues: Issue[] = [];
  const c = bgpdConfig(doc, [], issues);
  if (c !== undefined && issues.length === 0) return c;
  const lines = issues.map((i) => {
    const where = pathText(i.path) || "(top level)";
    if (i.unknown)
      return `${where}: unknown field ${i.unknown.map((k) => JSON.stringify(k)).join(", ")}`;
    if (i.missing) return `${where}: required field is missing`;
    if (isSecret(i.path)) return `${where}: ${i.message} (value not shown)`;
    return `${where}: ${i.message} (got ${JSON.stringify(valueAt(doc, i.path), hideSecrets)})`;
  });
  throw new ConfigError(`Invalid bgpd config: ${lines.join("; ")}`);
}

export function parseConfigText(text: string, source = "config"): BgpdConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`Could not parse ${source} as YAML: ${(err as Error).message}`);
  }
  return parseConfig(doc);
}

/** A password file's text as the key: one trailing newline (LF or CRLF) stripped. */
export function passwordFromFile(content: string): string {
  return content.replace(/\r?\n$/, "");
}

/**
 * Reads every peer's passwordFile into its password (at start and on each reload, so a changed
 * file resets that session). All files are read before anything is returned: one that cannot be
 * read or holds no valid key is a ConfigError naming the peer's field and the file, never the
 * content.
 */
export function resolvePasswordFiles(
  cfg: BgpdConfig,
  read: (path: string) => string = (p) => readFileSync(p, "utf8"),
): BgpdConfig {
  const problems: string[] = [];
  const peers = cfg.peers
    .map((p, i) => {
      if (p.passwordFile === undefined) return p;
      const where = `peers[${i}].passwordFile`;
      let key: string;
      try {
        key = passwordFromFile(read(p.passwordFile));
      } catch (e) {
        problems.push(`${where}: cannot read "${p.passwordFile}": ${(e as Error).message}`);
        return p;
      }
      const why = passwordProblem(key);
      if (why) problems.push(`${where}: "${p.passwordFile}": ${why}`);
      return { ...p, password: key };
    })
    .map((p, i) => {
      const a = p.bfd?.authentication;
      if (a?.passwordFile === undefined) return p;
      const where = `peers[${i}].bfd.authentication.passwordFile`;
      let key: string;
      try {
        key = passwordFromFile(read(a.passwordFile));
      } catch (e) {
        problems.push(`${where}: cannot read "${a.passwordFile}": ${(e as Error).message}`);
        return p;
      }
      const why = bfdKeyProblem(a.type, key);
      if (why) problems.push(`${where}: "${a.passwordFile}": ${why}`);
      return { ...p, bfd: { ...(p.bfd as PeerBfd), authentication: { ...a, password: key } } };
    });
  if (problems.length > 0) throw new ConfigError(`Invalid bgpd config: ${problems.join("; ")}`);
  return { ...cfg, peers };
}

/** The families a peer uses: configured, or those of its address's family plus the other. */
export function peerFamilies(p: PeerConfig): ("ipv4-unicast" | "ipv6-unicast")[] {
  return p.families ?? ["ipv4-unicast", "ipv6-unicast"];
}

/**
 * The TTL options of a peer's sockets: `ttl` sent (IP_TTL / IPV6_UNICAST_HOPS), `minTtl` the
 * least TTL (hop limit) the kernel accepts from the peer (IP_MINTTL / IPV6_MINHOPCOUNT).
 */
export interface SocketTtl {
  ttl?: number;
  minTtl?: number;
}

/**
 * A peer's TTLs: GTSM (RFC 5082 §3) sends 255 and accepts 256 - ttlSecurity and above;
 * otherwise eBGP sends 1 (directly connected, RFC 4271 §5.1.3) or the multihop TTL, and iBGP
 * the system default unless multihop is set.
 */
export function peerTtl(p: PeerConfig, ebgp: boolean): SocketTtl {
  if (p.ttlSecurity !== undefined) return { ttl: 255, minTtl: 256 - p.ttlSecurity };
  if (p.multihop !== undefined) return { ttl: p.multihop };
  return ebgp ? { ttl: 1 } : {};
}

/**
 * A listener's TTLs for one family's connections. `minTtl`: the least its peers demand, the
 * lowest of theirs (0 when a peer of that family has no GTSM, so its SYN is not dropped);
 * accepted sockets get their own peer's at accept. `ttl`: 255 when a peer of that family has
 * GTSM, so our SYN-ACK passes its check; else -1 (the system default).
 */
export function listenerTtl(cfg: BgpdConfig, family: 4 | 6): { ttl: number; minTtl: number } {
  let min: number | undefined;
  let gtsm = false;
  for (const p of cfg.peers) {
    if ((p.address.includes(":") ? 6 : 4) !== family) continue;
    const m = peerTtl(p, p.asn !== cfg.asn).minTtl;
    if (m !== undefined) gtsm = true;
    min = min === undefined ? (m ?? 0) : Math.min(min, m ?? 0);
  }
  return { ttl: gtsm ? 255 : -1, minTtl: min ?? 0 };
}

export type Impact = "none" | "refresh" | "reset";

export interface PeerImpact {
  address: string;
  impact: Impact;
  /** The field that forced the impact (first one found), e.g. "asn" or "exportFilter". */
  field?: string;
}

export interface ConfigDiff {
  added: PeerConfig[];
  removed: PeerConfig[];
  changed: PeerImpact[];
  /** Originations or global export inputs changed: re-export to every peer. */
  reexport: boolean;
  /** Listen address/port changed: the listener must be reopened. */
  relisten: boolean;
  fibChanged: boolean;
  statusChanged: boolean;
}

/**
 * Peer fields whose change needs a new session: identity (AS; the address is the peer's key, a
 * new one is a new peer), transport (port, key, source address, TTL) and what the OPEN carries
 * (hold time, capabilities: families). Every other field is none or refresh: passive,
 * connectRetryTime and startupHoldTime apply from the next connection, bfd on or off starts or
 * stops the BFD session beside the BGP one, maxPrefixes applies to the counts at once.
 */
const RESET_FIELDS: (keyof PeerConfig)[] = [
  "asn",
  "port",
  "holdTime",
  "families",
  "requiredFamilies",
  "sourceAddress",
  "multihop",
  "ttlSecurity",
  // Capabilities: they are negotiated in the OPEN.
  "addPath",
  "extendedMessage",
  "extendedNextHop",
  "gracefulRestartTime",
  "longLivedStaleTime",
  // A new key needs a new connection (FRR resets the session too); the file's path alone does not.
  "password",
];
/** Peer fields a route refresh or re-export can apply. */
const REFRESH_FIELDS: (keyof PeerConfig)[] = [
  "importFilter",
  // Re-evaluated in place, without a ROUTE-REFRESH (the speaker's refreshPeer).
  "importGuard",
  "importOwnership",
  "exportFilter",
  "allowOwnAs",
  "routeReflectorClient",
  "nextHopSelf",
  "llgrPartialDeployment",
];

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** What changing one peer's config from a to b needs (BIRD's bgp_reconfigure() idea). */
export function peerImpact(a: PeerConfig, b: PeerConfig): PeerImpact {
  for (const f of RESET_FIELDS)
    if (!same(a[f], b[f])) return { address: b.address, impact: "reset", field: f };
  for (const f of REFRESH_FIELDS)
    if (!same(a[f], b[f])) return { address: b.address, impact: "refresh", field: f };
  return { address: b.address, impact: "none" };
}

/** impact(old, new): per-peer none | refresh | reset, with the field that forced it. */
export function impact(old: BgpdConfig, next: BgpdConfig): ConfigDiff {
  const before = new Map(old.peers.map((p) => [p.address, p]));
  const after = new Map(next.peers.map((p) => [p.address, p]));
  const globalReset =
    old.asn !== next.asn
      ? "asn"
      : old.routerId !== next.routerId
        ? "routerId"
        : // A capability we announce: only a new OPEN carries it.
          !same(old.gracefulRestart, next.gracefulRestart)
          ? "gracefulRestart"
          : undefined;
  const changed: PeerImpact[] = [];
  for (const [addr, b] of after) {
    const a = before.get(addr);
    if (!a) continue;
    if (globalReset) changed.push({ address: addr, impact: "reset", field: globalReset });
    else if (
      old.clusterId !== next.clusterId &&
      (a.routeReflectorClient || b.routeReflectorClient)
    ) {
      changed.push({ address: addr, impact: "refresh", field: "clusterId" });
    } else changed.push(peerImpact(a, b));
  }
  return {
    added: next.peers.filter((p) => !before.has(p.address)),
    removed: old.peers.filter((p) => !after.has(p.address)),
    changed,
    reexport: !same(old.originate, next.originate),
    relisten: !same(old.listen, next.listen),
    fibChanged: !same(old.fib, next.fib),
    statusChanged: !same(old.status, next.status),
  };
}
