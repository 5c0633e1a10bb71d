// WireGuard encryption of pod traffic between nodes (pure), as Calico's Felix does it
// (felix/wireguard), one device per family: the settings read from FelixConfiguration
// (wireguardEnabled / …V6, wireguardInterfaceName `wireguard.cali` / `wg-v6.cali`,
// wireguardListeningPort 51820 / 51821, wireguardRoutingRulePriority 99, wireguardMTU / …V6 (0:
// the host MTU minus 60 / 80), wireguardKeepAlive, and the routing table, the first (IPv6: the
// second) index of routeTableRanges / routeTableRange, else 1 / 2); the node's device (its
// interface address, listening port, Felix's firewall mark 0x100000 on its own UDP) and one peer
// per other Node that published a public key of the family no other Node claims and has an
// address of the family (endpoint that address and the port; allowed IPs its blocks, its borrowed
// workload addresses and its interface address); the routes of the WireGuard table (each peer's
// allowed IPs through the device; `throw` for this node's blocks and borrowed addresses and for
// the blocks of nodes reached without WireGuard, so that those fall back to the main table) and
// the rule `not fwmark 0x100000/0x100000 lookup <table>` at the priority. With host encryption
// (wireguardHostEncryptionEnabled, Felix's EncryptHostTraffic) each peer's allowed IPs and the
// table's device routes also hold its node's host addresses (its fabric address and
// spec.addresses of the family, Felix's REMOTE_HOST routes), so host-to-host traffic between nodes
// that both have keys goes through the device (WireGuard's own UDP carries the mark and keeps the
// main table), nodes without a key get `throw` routes for their host addresses, and the device
// takes the host address when it has no interface address (Felix); a peer's host addresses are
// routed through the device only once a handshake with it completed (the bootstrap: until then
// it may not hold our key, and its host must stay reachable). Also the plan: the `ip`
// and `wg` requests that turn the kernel's state (as `ip -j`, `wg show <dev> dump` print it) into
// this one, and the keys (X25519, base64 as `wg genkey` / `wg pubkey` print them).
// Not: running anything (wireguard_apply.ts), the interface address's allocation
// (src/node/tunnel_addrs.ts), publishing the public key (the node daemon).
import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { parseDurationMs } from "../api/fields.js";
import { formatAddress, formatCidr, parseAddress, parseCidr } from "../lib/ip.js";
import { WORKLOAD_IFACE_PREFIX } from "../lib/pod_wiring.js";
import { borrowedAddresses, type WorkloadAddress } from "./overlay.js";

export const WIREGUARD_DEFAULT_INTERFACE = "wireguard.cali";
export const WIREGUARD_DEFAULT_INTERFACE_V6 = "wg-v6.cali";
export const WIREGUARD_DEFAULT_PORT = 51820;
export const WIREGUARD_DEFAULT_PORT_V6 = 51821;
export const WIREGUARD_DEFAULT_RULE_PRIORITY = 99;
/**
 * Host encryption: a peer's host addresses go through the device while its latest handshake is at
 * most this old. WireGuard renews a session in use every 2 minutes and drops one 3 minutes old
 * (REKEY_AFTER_TIME, REJECT_AFTER_TIME): a peer that no longer takes our key (it lost it, or we
 * changed it and it has not learnt the new one) is older than this within minutes, and its host
 * is then reached in clear again.
 */
export const HANDSHAKE_FRESH_S = 300;
/** A handshake older than this is renewed by a packet through the device (it stays fresh). */
export const HANDSHAKE_REFRESH_S = 120;
/** Felix's WireGuard firewall mark (one of its mark bits): the device's own UDP carries it. */
export const WIREGUARD_FWMARK = 0x100000;
/**
 * The protocol of the WireGuard table's routes: Felix's deviceRouteProtocol default (3, boot);
 * not the agent's 202, whose FIB owns the main table's and would sweep these.
 */
export const WIREGUARD_ROUTE_PROTOCOL = 3;
/** IPv4 (20) + UDP (8) + WireGuard's header (16) and authentication tag (16): Felix's overhead. */
export const WIREGUARD_OVERHEAD_V4 = 60;
/** IPv6 (40) + UDP (8) + WireGuard's 32: Felix's IPv6 overhead. */
export const WIREGUARD_OVERHEAD_V6 = 80;

export interface WireguardConfig {
  /** The family of the device's tunnel and of the traffic it carries (one device per family). */
  family: 4 | 6;
  enabled: boolean;
  interfaceName: string;
  listeningPort: number;
  rulePriority: number;
  /** wireguardMTU as set; 0: the host MTU minus the overhead. */
  mtu: number;
  /** wireguardKeepAlive in whole seconds (0: off). */
  keepAliveSeconds: number;
  routingTable: number;
  /** wireguardHostEncryptionEnabled: host-to-host traffic between nodes with keys too. */
  hostEncryption: boolean;
}

const int = (v: unknown): number | undefined =>
  typeof v === "number" && Number.isInteger(v) ? v : undefined;

/**
 * The WireGuard settings of a node's effective FelixConfiguration spec for one family (Felix's
 * defaults; IPv6: the …V6 fields, `wg-v6.cali`, 51821, and the route table range's second index,
 * as Felix's allocator gives IPv4 the first and IPv6 the next).
 */
export function wireguardConfig(
  spec: Record<string, unknown>,
  family: 4 | 6 = 4,
): {
  config: WireguardConfig;
  warnings: string[];
} {
  const warnings: string[] = [];
  let keepAliveSeconds = 0;
  if (typeof spec.wireguardKeepAlive === "string" && spec.wireguardKeepAlive !== "") {
    const ms = parseDurationMs(spec.wireguardKeepAlive);
    if (ms === undefined)
      warnings.push(`FelixConfiguration wireguardKeepAlive: not a duration; keepalive off`);
    else keepAliveSeconds = Math.min(65535, Math.round(ms / 1000));
  }
  const ranges =
    (spec.routeTableRanges as { min?: number; max?: number }[] | undefined) ??
    (spec.routeTableRange
      ? [spec.routeTableRange as { min?: number; max?: number }]
      : [{ min: 1, max: 250 }]);
  const indices: number[] = [];
  for (const r of ranges) {
    const min = int(r.min) ?? 1;
    const max = int(r.max) ?? min;
    for (let i = min; i <= max && indices.length < 2; i++) if (i < 253 || i > 255) indices.push(i);
  }
  const v6 = family === 6;
  const sfx = v6 ? "V6" : "";
  const name = spec[`wireguardInterfaceName${sfx}`];
  const table = indices[v6 ? 1 : 0];
  if (table === undefined)
    warnings.push(
      `FelixConfiguration routeTableRanges: no index left for the IPv${family} WireGuard table; ${v6 ? 2 : 1} is used`,
    );
  const enabled = spec[`wireguardEnabled${sfx}`] === true;
  const interfaceName =
    typeof name === "string" && name !== ""
      ? name
      : v6
        ? WIREGUARD_DEFAULT_INTERFACE_V6
        : WIREGUARD_DEFAULT_INTERFACE;
  // As Felix's InterfacePrefix `cali`: a device named like the pods' host-side interfaces is
  // policed as an unknown pod's (the to-workload dispatch drops what is forwarded to it).
  if (enabled && interfaceName.startsWith(WORKLOAD_IFACE_PREFIX))
    warnings.push(
      `FelixConfiguration wireguardInterfaceName${sfx}: "${interfaceName}" begins with the pods' interface prefix "${WORKLOAD_IFACE_PREFIX}": the policy takes it for an unknown pod's interface and drops the pods' traffic forwarded to it; choose another name`,
    );
  return {
    config: {
      family,
      enabled,
      interfaceName,
      listeningPort:
        int(spec[`wireguardListeningPort${sfx}`]) ??
        (v6 ? WIREGUARD_DEFAULT_PORT_V6 : WIREGUARD_DEFAULT_PORT),
      rulePriority: int(spec.wireguardRoutingRulePriority) ?? WIREGUARD_DEFAULT_RULE_PRIORITY,
      mtu: int(spec[`wireguardMTU${sfx}`]) ?? 0,
      keepAliveSeconds,
      routingTable: table ?? (v6 ? 2 : 1),
      hostEncryption: spec.wireguardHostEncryptionEnabled === true,
    },
    warnings,
  };
}

/**
 * The warning for host encryption over a strict reverse-path filter (rp_filter 1 on the fabric
 * interface): the peers' host addresses are routed through the device, so their WireGuard UDP and
 * the clear traffic of a node that has no key of ours yet, arriving on the fabric interface, fail
 * the check. Felix marks such packets in raw PREROUTING (and sets src_valid_mark) so the check
 * takes the main table; Ocelot does not, and says so.
 */
export function rpFilterWarning(iface: string, rpFilter: number | undefined): string | undefined {
  if (rpFilter !== 1) return undefined;
  return `WireGuard host encryption: rp_filter is strict (1) on ${iface}: packets from the peers' host addresses arriving there (their WireGuard UDP included) fail the reverse-path check; set net.ipv4.conf.all.rp_filter and ${iface}'s to 2 (loose) or 0 (Felix's raw-table mark for this is not implemented)`;
}

// ---- keys --------------------------------------------------------------------------------------

const KEY_RE = /^[A-Za-z0-9+/]{43}=$/;

/** True for a WireGuard key as `wg` prints it (base64 of 32 bytes). */
export function isWireguardKey(k: unknown): k is string {
  return typeof k === "string" && KEY_RE.test(k) && Buffer.from(k, "base64").length === 32;
}

/** A new private key (X25519), as `wg genkey` prints it. */
export function generatePrivateKey(): string {
  const { privateKey } = generateKeyPairSync("x25519");
  return Buffer.from(privateKey.export({ format: "jwk" }).d as string, "base64url").toString(
    "base64",
  );
}

const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");

/** The public key of a private key, as `wg pubkey` prints it. */
export function publicKeyOf(privateKey: string): string {
  if (!isWireguardKey(privateKey)) throw new Error("not a WireGuard private key");
  // PKCS #8 of an X25519 key (RFC 8410 §7): a fixed prefix, then the 32 bytes.
  const der = Buffer.concat([PKCS8_X25519, Buffer.from(privateKey, "base64")]);
  const key = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  const pub = createPublicKey(key).export({ format: "jwk" }).x as string;
  return Buffer.from(pub, "base64url").toString("base64");
}

// ---- rendering ---------------------------------------------------------------------------------

export interface WireguardNode {
  name: string;
  /** The fabric address of the family, with its prefix length (spec.bgp.ipv4Address / …6…). */
  address?: string;
  /** status.wireguardPublicKey (IPv6: …V6). */
  publicKey?: string;
  /** spec.wireguard.interfaceIPv4Address (IPv6: interfaceIPv6Address). */
  interfaceAddress?: string;
  /** spec.addresses of the family (with or without a prefix length): host addresses besides. */
  hostAddresses?: string[];
}

export interface WireguardInput {
  /** This node's name. */
  node: string;
  config: WireguardConfig;
  /** This node's public key (from its private key). */
  publicKey: string;
  nodes: readonly WireguardNode[];
  /** Confirmed block affinities of every node. */
  blocks: readonly { cidr: string; node: string }[];
  /**
   * Seconds since the device's latest handshake with each peer, by public key (`wg show dump`;
   * absent: none). Host encryption routes a peer's host addresses through the device while its
   * handshake is fresh (HANDSHAKE_FRESH_S) and refreshes one older than HANDSHAKE_REFRESH_S.
   */
  handshakeAges?: ReadonlyMap<string, number>;
  /** Every node's workload addresses: the borrowed ones are routed as their node's. */
  workloads?: readonly WorkloadAddress[];
  /** The host's MTU (the IPv4 fabric interface's, or mtuIfacePattern's smallest). */
  hostMtu: number;
}

export interface WireguardPeer {
  node: string;
  publicKey: string;
  /** "A.B.C.D:port". */
  endpoint: string;
  /** Sorted CIDRs. */
  allowedIps: string[];
  keepAliveSeconds: number;
}

export interface WireguardRoute {
  dst: string;
  type: "unicast" | "throw";
}

export interface WireguardState {
  device: {
    name: string;
    mtu: number;
    listenPort: number;
    fwmark: number;
    /** "A.B.C.D/32" (IPv6: "X::/128"), when this Node has its interface address. */
    address?: string;
  };
  publicKey: string;
  peers: WireguardPeer[];
  table: number;
  /** The routes of the WireGuard table, by destination. */
  routes: WireguardRoute[];
  rule: { family: 4 | 6; priority: number; table: number; fwmark: number };
  /**
   * Host encryption: an address routed through the device for each peer whose handshake is to be
   * started or renewed (a packet to it makes the device start one); awaited: the peer's host
   * addresses wait for it (a later pass routes them through the device).
   */
  handshakeTargets: { address: string; awaited: boolean }[];
  warnings: string[];
}

const hostPrefix = (a: string) => {
  const p = parseAddress(a);
  return `${formatAddress(p.family, p.value)}/${p.family === 4 ? 32 : 128}`;
};
const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** A node's host addresses of the family as host prefixes: its fabric address and spec.addresses. */
export function hostAddressesOf(n: WireguardNode, family: 4 | 6): string[] {
  const out = new Set<string>();
  for (const a of [n.address, ...(n.hostAddresses ?? [])]) {
    if (a === undefined) continue;
    const text = a.split("/")[0] as string;
    let p: ReturnType<typeof parseAddress>;
    try {
      p = parseAddress(text);
    } catch {
      continue;
    }
    if (p.family === family) out.add(hostPrefix(text));
  }
  return [...out].sort(byText);
}

/** The WireGuard state of input.node (WireGuard enabled); see the module comment. */
export function renderWireguard(input: WireguardInput): WireguardState {
  const { config } = input;
  const warnings: string[] = [];
  const me = input.nodes.find((n) => n.name === input.node);
  const fam = config.family;
  const overhead = fam === 4 ? WIREGUARD_OVERHEAD_V4 : WIREGUARD_OVERHEAD_V6;
  const mtu = config.mtu > 0 ? config.mtu : input.hostMtu - overhead;
  // Felix: with host encryption and no interface address, the device takes the host address.
  const myAddr =
    me?.interfaceAddress ?? (config.hostEncryption ? me?.address?.split("/")[0] : undefined);
  const state: WireguardState = {
    device: {
      name: config.interfaceName,
      mtu,
      listenPort: config.listeningPort,
      fwmark: WIREGUARD_FWMARK,
      ...(myAddr ? { address: hostPrefix(myAddr) } : {}),
    },
    publicKey: input.publicKey,
    peers: [],
    table: config.routingTable,
    routes: [],
    rule: {
      family: fam,
      priority: config.rulePriority,
      table: config.routingTable,
      fwmark: WIREGUARD_FWMARK,
    },
    handshakeTargets: [],
    warnings,
  };
  // A key claimed by more than one node (ours included) is nobody's (Felix).
  const claims = new Map<string, string[]>();
  const claim = (key: string, name: string) => claims.set(key, [...(claims.get(key) ?? []), name]);
  claim(input.publicKey, input.node);
  for (const n of input.nodes)
    if (n.name !== input.node && isWireguardKey(n.publicKey)) claim(n.publicKey, n.name);
  for (const [key, names] of claims)
    if (names.length > 1)
      warnings.push(
        `WireGuard: public key ${key} is claimed by ${names.join(", ")}; those nodes are reached without WireGuard`,
      );
  // Blocks of the family and borrowed addresses, per node.
  const famBlocks = input.blocks.filter((b) => parseCidr(b.cidr, false).family === fam);
  const famWorkloads = (input.workloads ?? []).filter(
    (w) => w.address.includes(":") === (fam === 6),
  );
  const cidrsOf = new Map<string, Set<string>>();
  for (const b of [...famBlocks, ...borrowedAddresses(famWorkloads, famBlocks)]) {
    const text = formatCidr(parseCidr(b.cidr, false));
    cidrsOf.set(b.node, (cidrsOf.get(b.node) ?? new Set()).add(text));
  }
  const routes = new Map<string, WireguardRoute>();
  for (const c of cidrsOf.get(input.node) ?? []) routes.set(c, { dst: c, type: "throw" });
  const names = [...new Set([...input.nodes.map((n) => n.name), ...cidrsOf.keys()])].sort(byText);
  const byName = new Map(input.nodes.map((n) => [n.name, n]));
  for (const name of names) {
    if (name === input.node) continue;
    const n = byName.get(name);
    const cidrs = [...(cidrsOf.get(name) ?? [])];
    // Host encryption: the node's host addresses too (Felix's REMOTE_HOST routes).
    const hosts = config.hostEncryption && n ? hostAddressesOf(n, fam) : [];
    const key = n?.publicKey;
    const fabric = n?.address?.split("/")[0];
    const peer = isWireguardKey(key) && claims.get(key)?.length === 1 && fabric !== undefined && n;
    if (!peer) {
      // Reached as before (VXLAN, IP-in-IP or BGP routes in the main table).
      for (const c of [...cidrs, ...hosts])
        if (!routes.has(c)) routes.set(c, { dst: c, type: "throw" });
      continue;
    }
    const allowed = new Set([...cidrs, ...hosts]);
    if (n.interfaceAddress) allowed.add(hostPrefix(n.interfaceAddress));
    const allowedIps = [...allowed].sort(byText);
    // Bootstrap: the host addresses go through the device only while a fresh handshake with the
    // peer proves it holds our key; else they are thrown to the main table (in clear, as Felix's
    // bootstrap leaves a node whose keys do not match), so a node still reaches a peer that has not
    // (yet) learnt its key: the datastore and BGP keep working while keys change. A packet through
    // the pod routes (the interface address, else the first block) starts or renews a handshake.
    const age = input.handshakeAges?.get(key);
    const fresh = age !== undefined && age <= HANDSHAKE_FRESH_S;
    if (hosts.length > 0) {
      if (!fresh)
        for (const h of hosts) if (!routes.has(h)) routes.set(h, { dst: h, type: "throw" });
      const via = [...allowed].filter((c) => !hosts.includes(c)).sort(byText);
      const iface = n.interfaceAddress ? hostPrefix(n.interfaceAddress) : undefined;
      const first = iface && !hosts.includes(iface) ? iface : via[0];
      if (first && !(fresh && age <= HANDSHAKE_REFRESH_S))
        state.handshakeTargets.push({
          address: first.split("/")[0] as string,
          awaited: !fresh,
        });
    }
    state.peers.push({
      node: name,
      publicKey: key,
      endpoint: `${fam === 4 ? formatAddress(4, parseAddress(fabric).value) : `[${formatAddress(6, parseAddress(fabric).value)}]`}:${config.listeningPort}`,
      allowedIps,
      keepAliveSeconds: config.keepAliveSeconds,
    });
    for (const c of allowedIps) if (!routes.has(c)) routes.set(c, { dst: c, type: "unicast" });
  }
  state.routes = [...routes.values()].sort((a, b) => byText(a.dst, b.dst));
  return state;
}

// ---- the plan: kernel state in, requests out ---------------------------------------------------

/** The device as `ip -d -j addr show dev NAME` prints it (the fields read). */
export interface WireguardLink {
  ifname: string;
  mtu?: number;
  flags?: string[];
  linkinfo?: { info_kind?: string };
  addr_info?: { family?: string; local?: string; prefixlen?: number; scope?: string }[];
}

/** `wg show NAME dump`, parsed. */
export interface WireguardDump {
  privateKey?: string;
  publicKey?: string;
  listenPort: number;
  fwmark: number;
  peers: {
    publicKey: string;
    endpoint?: string;
    allowedIps: string[];
    /** Seconds since the epoch (0: none yet). */
    latestHandshake: number;
    keepAliveSeconds: number;
  }[];
}

/** A rule as `ip -j -4 rule show` prints it. */
export interface KernelRule {
  priority?: number;
  table?: string;
  /** The mark, and its mask apart ("0x100000", "0x100000"). */
  fwmark?: string;
  fwmask?: string;
  not?: null | boolean;
  src?: string;
}

/** A route as `ip -j -4 route show table N` prints it. */
export interface KernelTableRoute {
  dst: string;
  type?: string;
  dev?: string;
}

export interface WireguardKernel {
  /** Absent: no such device. */
  link?: WireguardLink;
  /** Absent: the device does not answer `wg` (not a WireGuard device, or gone). */
  dump?: WireguardDump;
  rules: KernelRule[];
  /** The routes of the WireGuard table. */
  routes: KernelTableRoute[];
}

export interface WireguardRequest {
  tool: "ip" | "wg";
  args: string[];
}

export interface WireguardPlan {
  /** Make the device (kernel module, else wireguard-go); after deleting a wrong one if asked. */
  create?: { deleteFirst: boolean };
  /** The private key must be set (the device's public key is not ours). */
  setKey: boolean;
  /** Device settings, address, peers and routes, in order. */
  set: WireguardRequest[];
  /** After the routes: the rule. */
  rule: WireguardRequest[];
  changes: string[];
}

/** `wg show NAME dump`: the interface line, then one line per peer (tab-separated). */
export function parseWgDump(text: string): WireguardDump | undefined {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const head = lines[0]?.split("\t");
  if (!head || head.length < 4) return undefined;
  const off = (s: string | undefined) => (s === undefined || s === "(none)" ? undefined : s);
  const mark = head[3] === "off" || head[3] === undefined ? 0 : Number(head[3]);
  return {
    ...(off(head[0]) ? { privateKey: head[0] } : {}),
    ...(off(head[1]) ? { publicKey: head[1] } : {}),
    listenPort: Number(head[2]),
    fwmark: Number.isFinite(mark) ? mark : 0,
    peers: lines.slice(1).map((l) => {
      const f = l.split("\t");
      const endpoint = off(f[2]);
      const allowed = off(f[3]);
      return {
        publicKey: f[0] as string,
        ...(endpoint ? { endpoint } : {}),
        allowedIps: allowed ? allowed.split(",").sort(byText) : [],
        latestHandshake: Number(f[4] ?? 0),
        keepAliveSeconds: f[7] === "off" || f[7] === undefined ? 0 : Number(f[7]),
      };
    }),
  };
}

const markText = (m: number) => `0x${m.toString(16)}`;
const ruleMark = (r: KernelRule) =>
  r.fwmask !== undefined ? `${r.fwmark}/${r.fwmask}` : (r.fwmark as string);
const ruleIsOurs = (r: KernelRule, table: number) =>
  r.table === String(table) && r.fwmark !== undefined && r.not !== undefined;

const ip = (...args: string[]): WireguardRequest => ({ tool: "ip", args });
const wg = (...args: string[]): WireguardRequest => ({ tool: "wg", args });

/** True when the link is one a WireGuard implementation made (kernel or wireguard-go's TUN). */
export const isWireguardLink = (l: WireguardLink | undefined) =>
  l?.linkinfo?.info_kind === "wireguard" || l?.linkinfo?.info_kind === "tun";

/** The requests that make the kernel's WireGuard state `desired`; see the module comment. */
export function planWireguard(desired: WireguardState, kernel: WireguardKernel): WireguardPlan {
  const plan: WireguardPlan = { setKey: false, set: [], rule: [], changes: [] };
  const d = desired.device;
  const link = kernel.link;
  const fresh = !link || !isWireguardLink(link) || kernel.dump === undefined;
  if (fresh) {
    plan.create = { deleteFirst: link !== undefined };
    plan.changes.push(`link ${d.name} ${link ? "re-created" : "created"}`);
  }
  const dump = fresh ? undefined : kernel.dump;
  const cur = fresh ? undefined : link;
  if (dump?.publicKey !== desired.publicKey) {
    plan.setKey = true;
    plan.changes.push(`WireGuard key of ${d.name} set`);
  }
  const devArgs: string[] = [];
  if (dump?.listenPort !== d.listenPort) devArgs.push("listen-port", String(d.listenPort));
  if (dump?.fwmark !== d.fwmark) devArgs.push("fwmark", markText(d.fwmark));
  if (devArgs.length > 0) {
    plan.set.push(wg("set", d.name, ...devArgs));
    plan.changes.push(`WireGuard ${d.name} ${devArgs.join(" ")}`);
  }
  const settings: string[] = [];
  if (cur?.mtu !== d.mtu) settings.push("mtu", String(d.mtu));
  if (!cur?.flags?.includes("UP")) settings.push("up");
  if (settings.length > 0) {
    plan.set.push(ip("link", "set", "dev", d.name, ...settings));
    plan.changes.push(`link ${d.name} ${settings.join(" ")}`);
  }
  const inet = desired.rule.family === 4 ? "inet" : "inet6";
  const have = (cur?.addr_info ?? []).filter((a) => a.family === inet && a.scope !== "link");
  for (const a of have) {
    const text = `${a.local}/${a.prefixlen}`;
    if (text === d.address) continue;
    plan.set.push(ip("addr", "del", text, "dev", d.name));
    plan.changes.push(`address ${text} removed from ${d.name}`);
  }
  if (d.address && !have.some((a) => `${a.local}/${a.prefixlen}` === d.address)) {
    plan.set.push(ip("addr", "add", d.address, "dev", d.name));
    plan.changes.push(`address ${d.address} on ${d.name}`);
  }
  // Peers: `wg set ... allowed-ips` replaces the whole list.
  const havePeers = new Map((dump?.peers ?? []).map((p) => [p.publicKey, p]));
  const wantKeys = new Set(desired.peers.map((p) => p.publicKey));
  for (const p of dump?.peers ?? [])
    if (!wantKeys.has(p.publicKey)) {
      plan.set.push(wg("set", d.name, "peer", p.publicKey, "remove"));
      plan.changes.push(`WireGuard peer ${p.publicKey} removed`);
    }
  for (const p of desired.peers) {
    const h = havePeers.get(p.publicKey);
    if (
      h &&
      h.endpoint === p.endpoint &&
      h.keepAliveSeconds === p.keepAliveSeconds &&
      h.allowedIps.join(",") === p.allowedIps.join(",")
    )
      continue;
    plan.set.push(
      wg(
        "set",
        d.name,
        "peer",
        p.publicKey,
        "endpoint",
        p.endpoint,
        "persistent-keepalive",
        p.keepAliveSeconds > 0 ? String(p.keepAliveSeconds) : "off",
        "allowed-ips",
        p.allowedIps.join(","),
      ),
    );
    plan.changes.push(`WireGuard peer ${p.node} (${p.endpoint}) ${h ? "updated" : "added"}`);
  }
  // The table's routes (the table is ours whole, as Felix's).
  const table = String(desired.table);
  // `ip -j` prints a host route's destination without its length ("10.0.0.1", not "/32").
  const kernelRoutes = kernel.routes.map((r) => {
    if (r.dst.includes("/")) return r;
    try {
      return { ...r, dst: hostPrefix(r.dst) };
    } catch {
      return r;
    }
  });
  const haveRoutes = new Map(kernelRoutes.map((r) => [r.dst, r]));
  const want = new Set(desired.routes.map((r) => r.dst));
  for (const r of desired.routes) {
    const h = fresh ? undefined : haveRoutes.get(r.dst);
    const ok =
      r.type === "throw"
        ? h?.type === "throw"
        : h !== undefined && h.type === undefined && h.dev === d.name;
    if (ok) continue;
    plan.set.push(
      r.type === "throw"
        ? ip(
            "route",
            "replace",
            "throw",
            r.dst,
            "table",
            table,
            "proto",
            String(WIREGUARD_ROUTE_PROTOCOL),
          )
        : ip(
            "route",
            "replace",
            r.dst,
            "dev",
            d.name,
            "table",
            table,
            "proto",
            String(WIREGUARD_ROUTE_PROTOCOL),
            "scope",
            "link",
          ),
    );
    plan.changes.push(`route ${r.type === "throw" ? "throw " : ""}${r.dst} table ${table}`);
  }
  for (const r of kernelRoutes)
    if (!want.has(r.dst)) {
      plan.set.push(ip("route", "del", ...(r.type ? [r.type] : []), r.dst, "table", table));
      plan.changes.push(`route ${r.dst} table ${table} removed`);
    }
  // The rule, last: traffic starts to use the table once it is complete.
  const { rule } = desired;
  const wantMark = `${markText(rule.fwmark)}/${markText(rule.fwmark)}`;
  let found = false;
  for (const r of kernel.rules) {
    if (!ruleIsOurs(r, rule.table)) continue;
    if (!found && r.priority === rule.priority && ruleMark(r) === wantMark) {
      found = true;
      continue;
    }
    plan.rule.push(ruleDel(r));
    plan.changes.push(`rule ${r.priority} lookup ${r.table} removed`);
  }
  if (!found) {
    plan.rule.push(
      ip(
        "rule",
        "add",
        "priority",
        String(rule.priority),
        "not",
        "fwmark",
        wantMark,
        "table",
        String(rule.table),
      ),
    );
    plan.changes.push(`rule ${rule.priority} not fwmark ${wantMark} lookup ${rule.table}`);
  }
  return plan;
}

function ruleDel(r: KernelRule): WireguardRequest {
  return ip(
    "rule",
    "del",
    ...(r.priority !== undefined ? ["priority", String(r.priority)] : []),
    ...(r.not !== undefined ? ["not"] : []),
    ...(r.fwmark ? ["fwmark", ruleMark(r)] : []),
    "table",
    r.table as string,
  );
}

/**
 * WireGuard off (or moved to another device or table): the rule first, then the table's routes,
 * then the device (Felix's ensureDisabled).
 */
export function planWireguardOff(
  device: string,
  table: number,
  kernel: WireguardKernel,
): { requests: WireguardRequest[]; changes: string[] } {
  const requests: WireguardRequest[] = [];
  const changes: string[] = [];
  for (const r of kernel.rules)
    if (ruleIsOurs(r, table)) {
      requests.push(ruleDel(r));
      changes.push(`rule ${r.priority} lookup ${r.table} removed`);
    }
  for (const r of kernel.routes) {
    requests.push(ip("route", "del", ...(r.type ? [r.type] : []), r.dst, "table", String(table)));
    changes.push(`route ${r.dst} table ${table} removed`);
  }
  if (kernel.link && isWireguardLink(kernel.link)) {
    requests.push(ip("link", "del", device));
    changes.push(`link ${device} removed`);
  }
  return { requests, changes };
}
