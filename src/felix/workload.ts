// The agent's per-pod and node-wide kernel state, rendered from values (pure): host-side
// interface names and settings (with the local workload peering address where the pod is a BGP
// peer of the node), per-pod /32 and /128 device routes (floating IPs' external
// addresses included, as Felix routes them) and block blackholes under protocol 202, and the
// sysctls Calico's Felix sets (rp_filter off where a pod may spoof, the RPF check then done by
// iptables). A route or interface made of the same values as in the last render is the same
// (frozen) object, so its applier's texts and keys are computed once; renders keep each workload
// as made last (WorkloadRenderCache: a pass remakes the changed ones, merges new ids into the
// kept order, and checks nothing again when nothing changed). Not: applying anything
// (apply.ts), iptables, tc (qos.ts).
import { type Route, RTPROT_OCELOT_AGENT } from "../fib/types.js";
import { formatAddress, parseAddress, parseCidr } from "../lib/ip.js";
import { IFNAMSIZ, WORKLOAD_HOST_MAC, workloadIfaceName } from "../lib/pod_wiring.js";
import type { QosControls } from "./qos.js";

/** A 1:1 NAT of a pod address (Calico's IPNAT): the floating IP `external` reaches `internal`. */
export interface FloatingIp {
  internal: string;
  external: string;
}

export interface Workload {
  /** Stable workload id, e.g. "node1/default/pod1" (names the host interface). */
  id: string;
  /** Host-side interface; default workloadIfaceName(id). */
  hostIface?: string;
  /** Addresses without prefix length, or with /32 (/128). */
  ipv4: string[];
  ipv6: string[];
  /** 1:1 NATs (ipNATs) when FelixConfiguration floatingIPs is Enabled; routed to this pod. */
  floatingIps?: FloatingIp[];
  /**
   * Source prefixes the anti-spoofing check lets through (allowSpoofedSourcePrefixes with
   * FelixConfiguration workloadSourceSpoofing Any): rp_filter off, iptables' rpfilter instead.
   */
  spoofPrefixes?: string[];
  /** Bandwidth limits (qosControls), programmed with tc. */
  qos?: QosControls;
  /** qosControls.dscp: the code point of its traffic leaving the cluster (mangle, dscp.ts). */
  dscp?: number;
  /**
   * Addresses (with length) the host side of its interface holds: the local workload peering
   * address when the pod is a BGP peer of the node (BGPPeer localWorkloadSelector). Absent:
   * the interface's addresses are left alone; [] removes any but IPv6 link-local ones.
   */
  hostAddresses?: string[];
}

export interface Sysctl {
  /** Dotted key as `sysctl` takes it: "net.ipv4.conf.ocl0123456789a.proxy_arp". */
  key: string;
  value: string;
}

export interface HostIface {
  name: string;
  mac: string;
  up: true;
  sysctls: Sysctl[];
  /** Its addresses (scope link), when the agent owns them (Workload.hostAddresses). */
  addresses?: string[];
}

export interface WorkloadOptions {
  /**
   * rp_filter on workload interfaces. Calico keeps the kernel's strict check (1) so a pod can
   * only send from addresses routed to its own interface; 0 where spoofing is allowed.
   */
  rpFilter?: 0 | 1 | 2;
  /** Node-wide IPv6 forwarding (Felix Ipv6Support, default true). */
  ipv6?: boolean;
}

export interface WorkloadState {
  ifaces: HostIface[];
  routes: Route[];
  /** Node-wide sysctls (forwarding). */
  sysctls: Sysctl[];
}

function checkIfaceName(name: string, id: string): void {
  if (name.length === 0 || name.length >= IFNAMSIZ || /[\s/.:]/.test(name)) {
    throw new Error(`Invalid host interface name "${name}" for workload "${id}"`);
  }
}

/** "10.0.0.1" or "10.0.0.1/32" -> "10.0.0.1/32"; refuses other lengths and the other family. */
function hostPrefix(addr: string, family: 4 | 6, id: string): string {
  const [ip, len] = addr.split("/");
  const want = family === 4 ? 32 : 128;
  let parsed: ReturnType<typeof parseAddress>;
  try {
    parsed = parseAddress(ip);
  } catch {
    throw new Error(`Invalid IPv${family} address "${addr}" for workload "${id}"`);
  }
  if (parsed.family !== family || (len !== undefined && Number(len) !== want)) {
    throw new Error(`Invalid IPv${family} address "${addr}" for workload "${id}"`);
  }
  // Canonical text (IPv6 compressed) so routes compare equal to what the kernel reports.
  return `${formatAddress(family, parsed.value)}/${want}`;
}

/** Per-interface sysctls as Felix's configureInterface sets them. */
export function ifaceSysctls(name: string, hasV6: boolean, opts: WorkloadOptions = {}): Sysctl[] {
  const out: Sysctl[] = [
    { key: `net.ipv4.conf.${name}.forwarding`, value: "1" },
    { key: `net.ipv4.conf.${name}.rp_filter`, value: String(opts.rpFilter ?? 1) },
    { key: `net.ipv4.conf.${name}.route_localnet`, value: "1" },
    { key: `net.ipv4.conf.${name}.proxy_arp`, value: "1" },
    { key: `net.ipv4.neigh.${name}.proxy_delay`, value: "0" },
  ];
  if (hasV6) {
    out.push(
      { key: `net.ipv6.conf.${name}.accept_ra`, value: "0" },
      { key: `net.ipv6.conf.${name}.proxy_ndp`, value: "1" },
      { key: `net.ipv6.conf.${name}.forwarding`, value: "1" },
    );
  }
  return out;
}

/** Node-wide sysctls: IPv4 forwarding always, IPv6 forwarding unless IPv6 is off. */
export function nodeSysctls(opts: WorkloadOptions = {}): Sysctl[] {
  const out: Sysctl[] = [{ key: "net.ipv4.ip_forward", value: "1" }];
  if (opts.ipv6 ?? true) out.push({ key: "net.ipv6.conf.all.forwarding", value: "1" });
  return out;
}

/** The device route the host holds for one pod address (DESIGN.md §2). */
export function workloadRoute(family: 4 | 6, dst: string, dev: string): Route {
  return {
    family,
    dst,
    protocol: RTPROT_OCELOT_AGENT,
    scope: "link",
    nexthops: [{ dev }],
  };
}

/** The blackhole backing one of this node's affine blocks (DESIGN.md §2). */
export function blockBlackhole(block: string): Route {
  const c = parseCidr(block); // throws naming the bad value
  return {
    family: c.family,
    dst: block,
    protocol: RTPROT_OCELOT_AGENT,
    type: "blackhole",
    nexthops: [],
  };
}

/** Freezes a render's object (and what it holds) for reuse across renders. */
function frozen<T extends object>(o: T): T {
  for (const v of Object.values(o)) if (typeof v === "object" && v !== null) frozen(v);
  return Object.freeze(o);
}

/** One workload as the last render that had it made it, with the values it was made of. */
interface KeptWorkload {
  hostIface: string | undefined;
  ipv4: readonly string[];
  ipv6: readonly string[];
  floatingIps: readonly FloatingIp[] | undefined;
  rpFilter: number;
  hostAddresses: readonly string[] | undefined;
  name: string;
  /** Its addresses' routes (canonical prefixes), in its order. */
  dsts: { family: 4 | 6; dst: string; route: Route }[];
  floating: { family: 4 | 6; dst: string; route: Route }[];
  ifaceKey: string;
  /** `dev <name>`: its interface's key among the owners (addresses have no space). */
  devKey: string;
  iface: HostIface;
  /** The render that last made or reused it. */
  stamp: number;
  /** The render that last listed its id, and its workload there (sortedById's). */
  seen: number;
  cur?: Workload;
}

const sameList = (a: readonly string[] | undefined, b: readonly string[] | undefined) =>
  a === b ||
  (a !== undefined && b !== undefined && a.length === b.length && a.every((x, i) => x === b[i]));

const sameFloating = (a: readonly FloatingIp[] | undefined, b: readonly FloatingIp[] | undefined) =>
  a === b ||
  ((a?.length ?? 0) === 0 && (b?.length ?? 0) === 0) ||
  (a !== undefined &&
    b !== undefined &&
    a.length === b.length &&
    a.every((x, i) => x.external === b[i]?.external && x.internal === b[i]?.internal));

/**
 * What renders keep: each workload as made last (by id), the order of the ids, the blocks'
 * blackholes, and the last render's result while the next one finds nothing changed.
 */
export class WorkloadRenderCache {
  readonly byId = new Map<string, KeptWorkload>();
  ids: string[] = [];
  blackholes = new Map<string, Route>();
  /** Addresses and `dev <name>` -> the workload holding it in the render of that stamp. */
  readonly owners = new Map<string, { id: string; stamp: number }>();
  stamp = 0;
  /** The last render's routes and interfaces, its workload count and blocks (undefined: none kept). */
  last: { routes: Route[]; ifaces: HostIface[]; n: number; blocks: string } | undefined;
}

const DEFAULT_CACHE = new WorkloadRenderCache();

/**
 * The workloads sorted by id, from the ids kept (the new ones sorted and merged in); undefined
 * when two share an id (the caller sorts them whole; nothing kept).
 */
function sortedById(
  workloads: readonly Workload[],
  c: WorkloadRenderCache,
  stamp: number,
): Workload[] | undefined {
  const fresh: Workload[] = [];
  let seen = 0;
  for (const w of workloads) {
    const e = c.byId.get(w.id);
    if (e === undefined) fresh.push(w);
    else if (e.seen === stamp) return undefined;
    else {
      e.seen = stamp;
      e.cur = w;
      seen++;
    }
  }
  // The kept workloads no longer listed are forgotten now (the kept ones are those of c.ids,
  // also when this render throws later).
  if (c.byId.size > seen) for (const [id, e] of c.byId) if (e.seen !== stamp) c.byId.delete(id);
  fresh.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (let i = 1; i < fresh.length; i++)
    if ((fresh[i] as Workload).id === (fresh[i - 1] as Workload).id) return undefined;
  const out: Workload[] = [];
  const ids: string[] = [];
  let j = 0;
  for (const id of c.ids) {
    const e = c.byId.get(id);
    if (e?.seen !== stamp) continue;
    while (j < fresh.length && (fresh[j] as Workload).id < id) {
      out.push(fresh[j] as Workload);
      ids.push((fresh[j++] as Workload).id);
    }
    out.push(e.cur as Workload);
    ids.push(id);
  }
  while (j < fresh.length) {
    out.push(fresh[j] as Workload);
    ids.push((fresh[j++] as Workload).id);
  }
  c.ids = ids;
  return out;
}

/**
 * Renders the desired state for a node's workloads (and its affine blocks): throws on a bad
 * address, a bad interface name, or one address claimed by two workloads. A workload made of
 * the same values as in the last render is that render's (its frozen routes and interface);
 * when none changed, nothing is checked again.
 */
export function renderWorkloads(
  workloads: Workload[],
  blocks: string[] = [],
  opts: WorkloadOptions = {},
  cache: WorkloadRenderCache = DEFAULT_CACHE,
): WorkloadState {
  const c = cache;
  const stamp = ++c.stamp;
  const last = c.last;
  c.last = undefined;
  let sorted = sortedById(workloads, c, stamp);
  const keep = sorted !== undefined;
  if (sorted === undefined) {
    // Two workloads of one id: nothing kept across this render.
    c.byId.clear();
    c.ids = [];
    sorted = [...workloads].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
  const entries: KeptWorkload[] = [];
  let changed = false;
  for (const w of sorted) {
    const rpFilter = (w.spoofPrefixes ?? []).length > 0 ? 0 : (opts.rpFilter ?? 1);
    const had = c.byId.get(w.id);
    if (
      had !== undefined &&
      had.stamp !== stamp &&
      had.hostIface === w.hostIface &&
      had.rpFilter === rpFilter &&
      sameList(had.ipv4, w.ipv4) &&
      sameList(had.ipv6, w.ipv6) &&
      sameList(had.hostAddresses, w.hostAddresses) &&
      sameFloating(had.floatingIps, w.floatingIps)
    ) {
      had.stamp = stamp;
      entries.push(had);
      continue;
    }
    changed = true;
    const e = makeWorkload(w, rpFilter, opts, had, stamp);
    entries.push(e);
    if (keep) c.byId.set(w.id, e);
  }
  if (c.byId.size > entries.length)
    for (const [id, e] of c.byId) if (e.stamp !== stamp) c.byId.delete(id);
  const blocksText = [...new Set(blocks)].sort().join(" ");
  const sysctls = nodeSysctls(opts);
  // Nothing changed since the last render (which checked them all): its routes and interfaces.
  if (!changed && last !== undefined && last.n === entries.length && last.blocks === blocksText) {
    c.last = last;
    return { ifaces: [...last.ifaces], routes: [...last.routes], sysctls };
  }
  const ifaces: HostIface[] = [];
  const routes: Route[] = [];
  // Who holds each address and interface name (maps kept across renders: this one's stamp).
  const owner = c.owners;
  if (owner.size > 4 * entries.length + 1024) owner.clear();
  const ownerOf = (key: string) => {
    const o = owner.get(key);
    return o?.stamp === stamp ? o.id : undefined;
  };
  const own = (key: string, id: string) => {
    const o = owner.get(key);
    if (o === undefined) owner.set(key, { id, stamp });
    else {
      o.id = id;
      o.stamp = stamp;
    }
  };
  for (let k = 0; k < entries.length; k++) {
    const e = entries[k] as KeptWorkload;
    const id = (sorted[k] as Workload).id;
    const other = ownerOf(e.devKey);
    if (other !== undefined) {
      throw new Error(`Host interface "${e.name}" is claimed by workloads "${other}" and "${id}"`);
    }
    own(e.devKey, id);
    for (let d = 0; d < e.dsts.length; d++) {
      const { dst, route } = e.dsts[d] as KeptWorkload["dsts"][number];
      const prev = ownerOf(dst);
      if (prev !== undefined && prev !== id) {
        throw new Error(`Address "${dst}" is claimed by workloads "${prev}" and "${id}"`);
      }
      if (prev === undefined) routes.push(route);
      own(dst, id);
    }
    ifaces.push(e.iface);
  }
  // Felix routes a floating IP to its pod too. Pod addresses come first; an external address
  // claimed twice goes to the first workload (by id), as the DNAT goes to one internal address.
  for (let k = 0; k < entries.length; k++)
    for (const f of (entries[k] as KeptWorkload).floating) {
      if (ownerOf(f.dst) !== undefined) continue;
      own(f.dst, (sorted[k] as Workload).id);
      routes.push(f.route);
    }
  const blackholes = new Map<string, Route>();
  for (const b of blocksText === "" ? [] : blocksText.split(" ")) {
    const r = c.blackholes.get(b) ?? frozen(blockBlackhole(b));
    blackholes.set(b, r);
    routes.push(r);
  }
  c.blackholes = blackholes;
  c.last = { routes, ifaces, n: entries.length, blocks: blocksText };
  return { ifaces: [...ifaces], routes: [...routes], sysctls };
}

/** One workload's name, routes and interface (had: its last, whose equal parts are reused). */
function makeWorkload(
  w: Workload,
  rpFilter: number,
  opts: WorkloadOptions,
  had: KeptWorkload | undefined,
  stamp: number,
): KeptWorkload {
  const name = w.hostIface ?? workloadIfaceName(w.id);
  checkIfaceName(name, w.id);
  const dsts: KeptWorkload["dsts"] = [];
  for (const [family, list] of [
    [4, w.ipv4],
    [6, w.ipv6],
  ] as const)
    for (const a of list) {
      const dst = hostPrefix(a, family, w.id);
      const old = had?.name === name ? had.dsts.find((d) => d.dst === dst) : undefined;
      dsts.push({ family, dst, route: old?.route ?? frozen(workloadRoute(family, dst, name)) });
    }
  const floating: KeptWorkload["floating"] = [];
  for (const n of w.floatingIps ?? []) {
    const family = n.external.includes(":") ? (6 as const) : (4 as const);
    const dst = hostPrefix(n.external, family, w.id);
    const old = had?.name === name ? had.floating.find((d) => d.dst === dst) : undefined;
    floating.push({ family, dst, route: old?.route ?? frozen(workloadRoute(family, dst, name)) });
  }
  const hasV6 = w.ipv6.length > 0;
  const addresses = w.hostAddresses === undefined ? undefined : [...w.hostAddresses].sort();
  const ifaceKey = `${name} ${hasV6} ${rpFilter} ${addresses?.join(",") ?? "-"}`;
  const iface =
    had?.ifaceKey === ifaceKey
      ? had.iface
      : frozen<HostIface>({
          name,
          mac: WORKLOAD_HOST_MAC,
          up: true,
          sysctls: ifaceSysctls(name, hasV6, { ...opts, rpFilter: rpFilter as 0 | 1 | 2 }),
          ...(addresses !== undefined ? { addresses } : {}),
        });
  return {
    hostIface: w.hostIface,
    ipv4: [...w.ipv4],
    ipv6: [...w.ipv6],
    floatingIps: w.floatingIps?.map((f) => ({ ...f })),
    rpFilter,
    hostAddresses: w.hostAddresses === undefined ? undefined : [...w.hostAddresses],
    name,
    dsts,
    floating,
    ifaceKey,
    devKey: `dev ${name}`,
    iface,
    stamp,
    seen: stamp,
  };
}
