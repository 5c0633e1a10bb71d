// The overlay of one node, rendered from values (pure), as Calico's Felix programs VXLAN and
// IP-in-IP: its tunnel devices (`vxlan.ocelot` VNI 4096 and `vxlan-v6.ocelot` VNI 6096 on UDP
// 4789 with learning off, `tunl0`), each with the node's tunnel address and its MTU (mtu.ts:
// FelixConfiguration's, else the host's minus the overhead); and for every remote block of an encapsulating pool, the route that
// carries it (through a tunnel, or natively to a same-subnet node in CrossSubnet) with, for
// VXLAN, the permanent neighbour (remote tunnel address -> remote VTEP MAC) and FDB entry (remote
// MAC -> remote fabric address) it needs; and, as Felix does, a /32 (/128) the same way to the
// node of every remote workload whose address is borrowed (outside its node's own blocks). Also the plan: the `ip`/`bridge` requests that turn
// the kernel's state (read back as `ip -j` / `bridge -j` give it) into this one.
// Not: reading or writing the kernel (overlay_apply.ts), tunnel address allocation
// (src/node/tunnel_addrs.ts), the routes of pools that do not encapsulate (BGP's).
import { type Route, RTPROT_OCELOT_AGENT } from "../fib/types.js";
import {
  type Cidr,
  cidrContains,
  cidrOverlaps,
  type Family,
  formatAddress,
  parseAddress as parseAddressText,
  parseCidr as parseCidrText,
} from "../lib/ip.js";
import { computeMtus, type FabricIface, type MtuSettings } from "./mtu.js";

export { DEFAULT_FABRIC_MTU, type FabricIface, OVERHEAD } from "./mtu.js";

// Every render (the fast path's, at each change of any node's blocks) parses the same cluster's
// CIDRs and addresses again: each text is parsed once (bounded memo; the values are read-only).
const MEMO_MAX = 200_000;
const cidrMemo = new Map<string, Cidr>();
const addressMemo = new Map<string, { family: Family; value: bigint }>();
function parseCidr(text: string, strict: false): Cidr {
  let c = cidrMemo.get(text);
  if (c === undefined) {
    c = parseCidrText(text, strict);
    if (cidrMemo.size >= MEMO_MAX) cidrMemo.clear();
    cidrMemo.set(text, c);
  }
  return c;
}
function parseAddress(text: string): { family: Family; value: bigint } {
  let a = addressMemo.get(text);
  if (a === undefined) {
    a = parseAddressText(text);
    if (addressMemo.size >= MEMO_MAX) addressMemo.clear();
    addressMemo.set(text, a);
  }
  return a;
}

export const VXLAN_DEVICE_V4 = "vxlan.ocelot";
export const VXLAN_DEVICE_V6 = "vxlan-v6.ocelot";
/** Calico's VNIs (4096 for IPv4, 6096 for IPv6) and the IANA VXLAN port (RFC 7348 §5). */
export const VXLAN_VNI_V4 = 4096;
export const VXLAN_VNI_V6 = 6096;
export const VXLAN_PORT = 4789;
/** The IP-in-IP fallback device the ipip module creates (Calico uses it as is). */
export const IPIP_DEVICE = "tunl0";
/** Our own devices: the only links, neighbours and FDB entries the overlay ever changes. */
export const OVERLAY_DEVICES = [VXLAN_DEVICE_V4, VXLAN_DEVICE_V6, IPIP_DEVICE] as const;

export type EncapMode = "Never" | "Always" | "CrossSubnet";

export interface OverlayPool {
  name?: string;
  cidr: string;
  vxlanMode: EncapMode;
  ipipMode: EncapMode;
}

export interface VxlanEndpoint {
  /** Tunnel address (no prefix length). */
  address: string;
  mac: string;
}

export interface WorkloadAddress {
  address: string;
  node: string;
}

/**
 * Borrowed addresses: workload addresses outside every block affine to their own node (IPAM
 * gave them from another node's block), as host prefixes ("A.B.C.D/32", "X::/128") with the
 * node that has them, sorted.
 */
export function borrowedAddresses(
  workloads: readonly WorkloadAddress[],
  blocks: readonly { cidr: string; node: string }[],
): { cidr: string; node: string }[] {
  const byNode = new Map<string, Cidr[]>();
  for (const b of blocks) {
    const list = byNode.get(b.node) ?? [];
    list.push(parseCidr(b.cidr, false));
    byNode.set(b.node, list);
  }
  const out = new Map<string, { cidr: string; node: string }>();
  for (const w of workloads) {
    const a = parseAddress(w.address);
    if ((byNode.get(w.node) ?? []).some((c) => cidrContains(c, a.family, a.value))) continue;
    const cidr = `${formatAddress(a.family, a.value)}/${a.family === 4 ? 32 : 128}`;
    out.set(cidr, { cidr, node: w.node });
  }
  return [...out.values()].sort((x, y) => (x.cidr < y.cidr ? -1 : x.cidr > y.cidr ? 1 : 0));
}

export interface OverlayNode {
  name: string;
  /** Fabric addresses with their prefix length (Node spec.bgp.ipv4Address / ipv6Address). */
  ipv4Address?: string;
  ipv6Address?: string;
  vxlanV4?: VxlanEndpoint;
  vxlanV6?: VxlanEndpoint;
  /** IP-in-IP tunnel address (Node spec.bgp.ipv4IPIPTunnelAddr). */
  ipipAddress?: string;
}

export interface OverlayInput {
  /** This node's name. */
  node: string;
  nodes: readonly OverlayNode[];
  pools: readonly OverlayPool[];
  /** Confirmed block affinities of every node (this node's are skipped). */
  blocks: readonly { cidr: string; node: string }[];
  /** Every node's workload addresses (no prefix length): the borrowed ones get a host route. */
  workloads?: readonly WorkloadAddress[];
  fabric: { 4?: FabricIface; 6?: FabricIface };
  /** The MTU override (pods and tunnel devices); absent: fabric MTU minus overhead. */
  mtu?: number;
  /** FelixConfiguration's MTUs and the host MTU from mtuIfacePattern (src/felix/mtu.ts). */
  mtus?: Omit<MtuSettings, "override">;
  /**
   * FelixConfiguration vxlanPort and vxlanVNI (absent: 4789, and 4096 / 6096); a set VNI is
   * both families' (Felix gives its IPv4 and IPv6 devices the one VXLANVNI).
   */
  vxlan?: { port?: number; vni?: number };
}

export interface TunnelDevice {
  kind: "vxlan" | "ipip";
  name: string;
  /** The family of the fabric it runs over (and of its tunnel address). */
  family: 4 | 6;
  mtu: number;
  /** The tunnel address, "A.B.C.D/32" or "X::/128". */
  address: string;
  /** VXLAN only. */
  vni?: number;
  port?: number;
  local?: string;
  parent?: string;
  mac?: string;
}

export interface Neighbour {
  dev: string;
  dst: string;
  lladdr: string;
}

export interface FdbEntry {
  dev: string;
  mac: string;
  /** The remote VTEP's fabric address. */
  dst: string;
}

export interface OverlayState {
  devices: TunnelDevice[];
  neighbours: Neighbour[];
  fdb: FdbEntry[];
  /** Routes to remote blocks of encapsulating pools (protocol 202). */
  routes: Route[];
  /** The MTU pods get (the CNI plugin's veth). */
  podMtu: number;
  warnings: string[];
}

const addressOf = (cidr: string) => cidr.split("/")[0] as string;

/** An address in canonical text (IPv6 compressed, lower case), as `ip -j` prints it. */
export function canonicalAddress(text: string): string {
  const p = parseAddress(text);
  return formatAddress(p.family, p.value);
}

/** The MTU of each encapsulation over the fabric, and the pods' (the smallest one in use). */
export function overlayMtus(
  fabric: OverlayInput["fabric"],
  inUse: { vxlan4: boolean; vxlan6: boolean; ipip: boolean },
  override?: number,
): { vxlan4: number; vxlan6: number; ipip: number; pod: number } {
  const { warnings: _, ...m } = computeMtus(
    fabric,
    inUse,
    override !== undefined ? { override } : {},
  );
  return m;
}

const encapsulates = (m: EncapMode | undefined) => m === "Always" || m === "CrossSubnet";

/** True when some pool's blocks are routed by the overlay (the BGP speaker leaves them alone). */
export function isEncapsulating(p: Pick<OverlayPool, "vxlanMode" | "ipipMode">): boolean {
  return encapsulates(p.vxlanMode) || encapsulates(p.ipipMode);
}

interface Parsed {
  pool: OverlayPool;
  cidr: Cidr;
}

/** Renders the overlay of input.node; see the module comment. */
export function renderOverlay(input: OverlayInput): OverlayState {
  const me = input.nodes.find((n) => n.name === input.node);
  const pools: Parsed[] = input.pools.map((pool) => ({ pool, cidr: parseCidr(pool.cidr, false) }));
  const v4 = pools.filter((p) => p.cidr.family === 4);
  const v6 = pools.filter((p) => p.cidr.family === 6);
  const inUse = {
    vxlan4: v4.some((p) => encapsulates(p.pool.vxlanMode)),
    vxlan6: v6.some((p) => encapsulates(p.pool.vxlanMode)),
    ipip: v4.some((p) => encapsulates(p.pool.ipipMode)),
  };
  const mtu = computeMtus(input.fabric, inUse, {
    ...input.mtus,
    ...(input.mtu !== undefined ? { override: input.mtu } : {}),
  });
  const warnings: string[] = [...mtu.warnings];
  const devices: TunnelDevice[] = [];
  const out: OverlayState = {
    devices,
    neighbours: [],
    fdb: [],
    routes: [],
    podMtu: mtu.pod,
    warnings,
  };
  if (!me) return out;

  // This node's devices: each needs its fabric address and its tunnel address from IPAM.
  const vxlanDevice = (family: 4 | 6): TunnelDevice | undefined => {
    const fabricAddr = family === 4 ? me.ipv4Address : me.ipv6Address;
    const ep = family === 4 ? me.vxlanV4 : me.vxlanV6;
    const name = family === 4 ? VXLAN_DEVICE_V4 : VXLAN_DEVICE_V6;
    if (!fabricAddr) {
      warnings.push(`VXLAN over IPv${family}: Node "${me.name}" has no IPv${family} address`);
      return undefined;
    }
    if (!ep) {
      warnings.push(`VXLAN over IPv${family}: waiting for this node's tunnel address`);
      return undefined;
    }
    const parent = input.fabric[family]?.name;
    return {
      kind: "vxlan",
      name,
      family,
      mtu: family === 4 ? mtu.vxlan4 : mtu.vxlan6,
      address: `${canonicalAddress(ep.address)}/${family === 4 ? 32 : 128}`,
      vni: input.vxlan?.vni ?? (family === 4 ? VXLAN_VNI_V4 : VXLAN_VNI_V6),
      port: input.vxlan?.port ?? VXLAN_PORT,
      local: canonicalAddress(addressOf(fabricAddr)),
      ...(parent ? { parent } : {}),
      mac: ep.mac.toLowerCase(),
    };
  };
  const dev4 = inUse.vxlan4 ? vxlanDevice(4) : undefined;
  const dev6 = inUse.vxlan6 ? vxlanDevice(6) : undefined;
  let tunl: TunnelDevice | undefined;
  if (inUse.ipip) {
    if (!me.ipv4Address) warnings.push(`IP-in-IP: Node "${me.name}" has no IPv4 address`);
    else if (!me.ipipAddress) warnings.push("IP-in-IP: waiting for this node's tunnel address");
    else
      tunl = {
        kind: "ipip",
        name: IPIP_DEVICE,
        family: 4,
        mtu: mtu.ipip,
        address: `${canonicalAddress(me.ipipAddress)}/32`,
      };
  }
  for (const d of [dev4, dev6, tunl]) if (d) devices.push(d);

  const byName = new Map(input.nodes.map((n) => [n.name, n]));
  const myNet: Record<4 | 6, Cidr | undefined> = {
    4: me.ipv4Address ? parseCidr(me.ipv4Address, false) : undefined,
    6: me.ipv6Address ? parseCidr(me.ipv6Address, false) : undefined,
  };
  const seenNeigh = new Set<string>();
  const blocks = [...input.blocks].sort((a, b) => (a.cidr < b.cidr ? -1 : a.cidr > b.cidr ? 1 : 0));
  // Borrowed addresses after the blocks: reached through their own node, as its blocks are.
  const borrowed = borrowedAddresses(input.workloads ?? [], input.blocks);
  const seenBlock = new Set<string>();
  const isBorrowed = new Set(borrowed.map((b) => b.cidr));
  for (const b of [...blocks, ...borrowed]) {
    if (b.node === me.name || seenBlock.has(b.cidr)) continue;
    seenBlock.add(b.cidr);
    const what = isBorrowed.has(b.cidr) ? "Borrowed address" : "Block";
    const block = parseCidr(b.cidr, false);
    const family = block.family;
    const owner = (family === 4 ? v4 : v6).find((p) => cidrOverlaps(p.cidr, block))?.pool;
    if (!owner || !isEncapsulating(owner)) continue;
    const remote = byName.get(b.node);
    const remoteFabric = family === 4 ? remote?.ipv4Address : remote?.ipv6Address;
    if (!remote || !remoteFabric) {
      warnings.push(`${what} ${b.cidr}: Node "${b.node}" has no IPv${family} address; not routed`);
      continue;
    }
    const remoteAddr = canonicalAddress(addressOf(remoteFabric));
    const net = myNet[family];
    const p = parseAddress(remoteAddr);
    const sameSubnet = net !== undefined && cidrContains(net, p.family, p.value);
    const mode = encapsulates(owner.vxlanMode) ? owner.vxlanMode : owner.ipipMode;
    const tunnel = mode === "Always" || !sameSubnet;
    const dst = b.cidr;
    if (!tunnel) {
      // CrossSubnet inside the subnet: natively, straight to the node.
      out.routes.push(route(family, dst, { gateway: remoteAddr }));
      continue;
    }
    if (encapsulates(owner.vxlanMode)) {
      const dev = family === 4 ? dev4 : dev6;
      const ep = family === 4 ? remote.vxlanV4 : remote.vxlanV6;
      if (!dev) continue; // warned above
      if (!ep) {
        warnings.push(`${what} ${b.cidr}: waiting for Node "${b.node}"'s VXLAN tunnel address`);
        continue;
      }
      const via = canonicalAddress(ep.address);
      out.routes.push(route(family, dst, { gateway: via, dev: dev.name, onlink: true }));
      if (!seenNeigh.has(`${dev.name}|${via}`)) {
        seenNeigh.add(`${dev.name}|${via}`);
        out.neighbours.push({ dev: dev.name, dst: via, lladdr: ep.mac.toLowerCase() });
        out.fdb.push({ dev: dev.name, mac: ep.mac.toLowerCase(), dst: remoteAddr });
      }
      continue;
    }
    // IP-in-IP (IPv4 pools only, the API refuses it on IPv6): to the node's own address.
    if (!tunl) continue;
    out.routes.push(route(4, dst, { gateway: remoteAddr, dev: IPIP_DEVICE, onlink: true }));
  }
  return out;
}

function route(
  family: 4 | 6,
  dst: string,
  nh: { gateway: string; dev?: string; onlink?: boolean },
): Route {
  return { family, dst, protocol: RTPROT_OCELOT_AGENT, nexthops: [{ ...nh }] };
}

// ---- the plan: kernel state in, requests out --------------------------------------------------

/** A link as `ip -d -j addr show` prints it (the fields the plan reads). */
export interface KernelLink {
  ifname: string;
  mtu?: number;
  address?: string;
  flags?: string[];
  link?: string | null;
  linkinfo?: {
    info_kind?: string;
    info_data?: {
      id?: number;
      local?: string;
      local6?: string;
      port?: number;
      learning?: boolean;
      link?: string;
    };
  };
  addr_info?: { family?: string; local?: string; prefixlen?: number; scope?: string }[];
}

/** A neighbour as `ip -j neigh show` prints it. */
export interface KernelNeighbour {
  dst: string;
  dev?: string;
  lladdr?: string;
  state?: string[];
  protocol?: string;
}

/** An FDB entry as `bridge -j fdb show` prints it. */
export interface KernelFdb {
  mac: string;
  ifname?: string;
  dst?: string;
  flags?: string[];
  state?: string;
}

export interface OverlayKernel {
  links: KernelLink[];
  neighbours: KernelNeighbour[];
  fdb: KernelFdb[];
}

/** One request: `ip ARGS` or `bridge ARGS`. */
export interface OverlayRequest {
  tool: "ip" | "bridge";
  args: string[];
}

export interface OverlayPlan {
  /** Devices to create, one request list per device (a failure leaves only that one out). */
  create: { device: string; requests: OverlayRequest[] }[];
  /** Before the routes: device settings, addresses, neighbours and FDB entries to set. */
  set: OverlayRequest[];
  /** After the routes: stale entries and devices to remove. */
  remove: OverlayRequest[];
  changes: string[];
}

const ip = (...args: string[]): OverlayRequest => ({ tool: "ip", args });
const bridge = (...args: string[]): OverlayRequest => ({ tool: "bridge", args });

/** The `ip link add` request that creates a device as wanted. */
export function createRequests(d: TunnelDevice): OverlayRequest[] {
  const add =
    d.kind === "vxlan"
      ? ip(
          "link",
          "add",
          d.name,
          "type",
          "vxlan",
          "id",
          String(d.vni),
          "local",
          d.local as string,
          "dstport",
          String(d.port),
          "nolearning",
          ...(d.parent ? ["dev", d.parent] : []),
        )
      : ip("link", "add", "name", d.name, "type", "ipip");
  return [add];
}

/** Why an existing device must be made again (a property `ip link set` cannot change). */
function recreateReason(d: TunnelDevice, l: KernelLink): string | undefined {
  const kind = l.linkinfo?.info_kind;
  if (kind !== d.kind) return `kind ${kind ?? "none"}`;
  if (d.kind !== "vxlan") return undefined;
  const data = l.linkinfo?.info_data ?? {};
  const local = data.local ?? data.local6;
  if (data.id !== d.vni) return `VNI ${data.id}`;
  if (data.port !== d.port) return `port ${data.port}`;
  if (data.learning !== false) return "learning on";
  if (local === undefined || canonicalAddress(local) !== d.local) return `local ${local ?? "none"}`;
  if (d.parent && data.link !== undefined && data.link !== d.parent) return `parent ${data.link}`;
  return undefined;
}

const isPermanent = (n: KernelNeighbour) => n.state?.includes("PERMANENT") === true;

/** The requests that make the kernel's overlay what desired says; see the module comment. */
export function planOverlay(desired: OverlayState, kernel: OverlayKernel): OverlayPlan {
  const plan: OverlayPlan = { create: [], set: [], remove: [], changes: [] };
  const links = new Map(kernel.links.map((l) => [l.ifname.split("@")[0] as string, l]));
  const wanted = new Map(desired.devices.map((d) => [d.name, d]));
  const fresh = new Set<string>();
  for (const d of desired.devices) {
    const l = links.get(d.name);
    const why = l ? recreateReason(d, l) : "missing";
    if (why !== undefined) {
      const requests = [...(l ? [ip("link", "del", d.name)] : []), ...createRequests(d)];
      plan.create.push({ device: d.name, requests });
      plan.changes.push(`link ${d.name} ${l ? `re-created (${why})` : "created"}`);
      fresh.add(d.name);
    }
    const cur = fresh.has(d.name) ? undefined : l;
    const settings: string[] = [];
    if (d.mac && cur?.address?.toLowerCase() !== d.mac) settings.push("address", d.mac);
    if (cur?.mtu !== d.mtu) settings.push("mtu", String(d.mtu));
    if (!cur?.flags?.includes("UP")) settings.push("up");
    if (settings.length > 0) {
      plan.set.push(ip("link", "set", "dev", d.name, ...settings));
      if (cur) plan.changes.push(`link ${d.name} ${settings.join(" ")}`);
    }
    const fam = d.family === 4 ? "inet" : "inet6";
    const have = (cur?.addr_info ?? []).filter((a) => a.family === fam && a.scope !== "link");
    const want = d.address;
    const haveWant = have.some((a) => `${canonicalAddress(a.local ?? "")}/${a.prefixlen}` === want);
    for (const a of have) {
      const text = `${a.local}/${a.prefixlen}`;
      if (`${canonicalAddress(a.local ?? "")}/${a.prefixlen}` === want) continue;
      plan.set.push(ip("addr", "del", text, "dev", d.name));
      plan.changes.push(`address ${text} removed from ${d.name}`);
    }
    if (!haveWant) {
      plan.set.push(ip("addr", "add", want, "dev", d.name));
      plan.changes.push(`address ${want} on ${d.name}`);
    }
  }
  // Neighbours and FDB entries, on our VXLAN devices only.
  const neighOf = new Map<string, KernelNeighbour>();
  for (const n of kernel.neighbours)
    if (n.dev && wanted.has(n.dev)) neighOf.set(`${n.dev}|${canonicalAddress(n.dst)}`, n);
  const wantNeigh = new Set<string>();
  for (const n of desired.neighbours) {
    const k = `${n.dev}|${n.dst}`;
    wantNeigh.add(k);
    const cur = fresh.has(n.dev) ? undefined : neighOf.get(k);
    if (cur && cur.lladdr?.toLowerCase() === n.lladdr && isPermanent(cur)) continue;
    plan.set.push(
      ip(
        "neigh",
        "replace",
        n.dst,
        "lladdr",
        n.lladdr,
        "dev",
        n.dev,
        "nud",
        "permanent",
        "protocol",
        String(RTPROT_OCELOT_AGENT),
      ),
    );
    plan.changes.push(`neighbour ${n.dst} ${n.lladdr} on ${n.dev} ${cur ? "repaired" : "added"}`);
  }
  for (const [k, n] of neighOf) {
    if (wantNeigh.has(k) || !n.dev || fresh.has(n.dev)) continue;
    // Only what we (or someone by hand) made permanent: the kernel's own entries come and go.
    if (!isPermanent(n) && n.protocol !== String(RTPROT_OCELOT_AGENT)) continue;
    plan.remove.push(ip("neigh", "del", n.dst, "dev", n.dev));
    plan.changes.push(`neighbour ${n.dst} on ${n.dev} removed`);
  }
  const fdbOf = new Map<string, KernelFdb>();
  for (const f of kernel.fdb)
    if (f.ifname && wanted.has(f.ifname) && f.dst !== undefined)
      fdbOf.set(`${f.ifname}|${f.mac.toLowerCase()}`, f);
  const wantFdb = new Set<string>();
  for (const f of desired.fdb) {
    const k = `${f.dev}|${f.mac}`;
    wantFdb.add(k);
    const cur = fresh.has(f.dev) ? undefined : fdbOf.get(k);
    if (cur?.dst !== undefined && canonicalAddress(cur.dst) === f.dst && cur.state === "permanent")
      continue;
    plan.set.push(bridge("fdb", "replace", f.mac, "dev", f.dev, "dst", f.dst, "self", "permanent"));
    plan.changes.push(`fdb ${f.mac} dst ${f.dst} on ${f.dev} ${cur ? "repaired" : "added"}`);
  }
  for (const [k, f] of fdbOf) {
    if (wantFdb.has(k) || !f.ifname || fresh.has(f.ifname)) continue;
    plan.remove.push(bridge("fdb", "del", f.mac, "dev", f.ifname, "dst", f.dst as string, "self"));
    plan.changes.push(`fdb ${f.mac} on ${f.ifname} removed`);
  }
  // Our devices nothing wants: VXLAN ones go; tunl0 belongs to the ipip module (it cannot be
  // deleted), so it loses its address and goes down, as Calico leaves it.
  for (const name of OVERLAY_DEVICES) {
    const l = links.get(name);
    if (!l || wanted.has(name)) continue;
    if (name === IPIP_DEVICE) {
      for (const a of (l.addr_info ?? []).filter((x) => x.family === "inet")) {
        plan.remove.push(ip("addr", "del", `${a.local}/${a.prefixlen}`, "dev", name));
        plan.changes.push(`address ${a.local}/${a.prefixlen} removed from ${name}`);
      }
      if (l.flags?.includes("UP")) {
        plan.remove.push(ip("link", "set", "dev", name, "down"));
        plan.changes.push(`link ${name} down`);
      }
      continue;
    }
    plan.remove.push(ip("link", "del", name));
    plan.changes.push(`link ${name} removed`);
  }
  return plan;
}
