// The agent's per-pod and node-wide kernel state, rendered from values (pure): host-side
// interface names and settings (with the local workload peering address where the pod is a BGP
// peer of the node), per-pod /32 and /128 device routes (floating IPs' external
// addresses included, as Felix routes them) and block blackholes under protocol 202, and the
// sysctls Calico's Felix sets (rp_filter off where a pod may spoof, the RPF check then done by
// iptables). A route or interface made of the same values as in the last render is the same
// (frozen) object, so its applier's texts and keys are computed once. Not: applying anything
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

/** What one render made, by the values each was made of (the key says all the object holds). */
interface Made {
  routes: Map<string, Route>;
  ifaces: Map<string, HostIface>;
  /** Canonical `addr/len` of each address text, per family (`4 10.0.0.1`). */
  prefixes: Map<string, string>;
}

const newMade = (): Made => ({ routes: new Map(), ifaces: new Map(), prefixes: new Map() });

/**
 * The last render's: what is made of the same values again is reused (frozen), the rest made
 * anew; what a render no longer has is dropped after it.
 */
let lastMade = newMade();

/**
 * Renders the desired state for a node's workloads (and its affine blocks): throws on a bad
 * address, a bad interface name, or one address claimed by two workloads.
 */
export function renderWorkloads(
  workloads: Workload[],
  blocks: string[] = [],
  opts: WorkloadOptions = {},
): WorkloadState {
  const ifaces: HostIface[] = [];
  const routes: Route[] = [];
  const made = newMade();
  const route = (family: 4 | 6, dst: string, dev: string): Route => {
    const key = `${family} ${dst} ${dev}`;
    const r = lastMade.routes.get(key) ?? frozen(workloadRoute(family, dst, dev));
    made.routes.set(key, r);
    return r;
  };
  const prefix = (addr: string, family: 4 | 6, id: string): string => {
    const key = `${family} ${addr}`;
    const p = lastMade.prefixes.get(key) ?? hostPrefix(addr, family, id);
    made.prefixes.set(key, p);
    return p;
  };
  const owner = new Map<string, string>();
  const ifaceOwner = new Map<string, string>();
  const floating: { family: 4 | 6; dst: string; dev: string; id: string }[] = [];
  const sorted = [...workloads].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const w of sorted) {
    const name = w.hostIface ?? workloadIfaceName(w.id);
    checkIfaceName(name, w.id);
    const other = ifaceOwner.get(name);
    if (other !== undefined) {
      throw new Error(`Host interface "${name}" is claimed by workloads "${other}" and "${w.id}"`);
    }
    ifaceOwner.set(name, w.id);
    const dsts = [
      ...w.ipv4.map((a) => ({ family: 4 as const, dst: prefix(a, 4, w.id) })),
      ...w.ipv6.map((a) => ({ family: 6 as const, dst: prefix(a, 6, w.id) })),
    ];
    for (const n of w.floatingIps ?? []) {
      const family = n.external.includes(":") ? (6 as const) : (4 as const);
      floating.push({ family, dst: prefix(n.external, family, w.id), dev: name, id: w.id });
    }
    for (const { family, dst } of dsts) {
      const prev = owner.get(dst);
      if (prev !== undefined && prev !== w.id) {
        throw new Error(`Address "${dst}" is claimed by workloads "${prev}" and "${w.id}"`);
      }
      if (prev === undefined) routes.push(route(family, dst, name));
      owner.set(dst, w.id);
    }
    const hasV6 = w.ipv6.length > 0;
    const rpFilter = (w.spoofPrefixes ?? []).length > 0 ? 0 : (opts.rpFilter ?? 1);
    const addresses = w.hostAddresses === undefined ? undefined : [...w.hostAddresses].sort();
    const ifaceKey = `${name} ${hasV6} ${rpFilter} ${addresses?.join(",") ?? "-"}`;
    const iface =
      lastMade.ifaces.get(ifaceKey) ??
      frozen<HostIface>({
        name,
        mac: WORKLOAD_HOST_MAC,
        up: true,
        sysctls: ifaceSysctls(name, hasV6, { ...opts, rpFilter }),
        ...(addresses !== undefined ? { addresses } : {}),
      });
    made.ifaces.set(ifaceKey, iface);
    ifaces.push(iface);
  }
  // Felix routes a floating IP to its pod too. Pod addresses come first; an external address
  // claimed twice goes to the first workload (by id), as the DNAT goes to one internal address.
  for (const f of floating) {
    if (owner.has(f.dst)) continue;
    owner.set(f.dst, f.id);
    routes.push(route(f.family, f.dst, f.dev));
  }
  for (const b of [...new Set(blocks)].sort()) {
    const r = lastMade.routes.get(`blackhole ${b}`) ?? frozen(blockBlackhole(b));
    made.routes.set(`blackhole ${b}`, r);
    routes.push(r);
  }
  lastMade = made;
  return { ifaces, routes, sysctls: nodeSysctls(opts) };
}
