// The node's BGP speaker configuration, rendered from datastore resources (pure), as Calico's
// confd renders BIRD's: the `default` BGPConfiguration (AS, node-to-node mesh, listen port), the
// Node resources (a full iBGP mesh to every other node's ipv4Address, and to its ipv6Address when
// this node has one too), the BGPPeers that pick this node (global, `node`, or `nodeSelector`; a
// peer by `peerIP` or by `peerSelector` over Nodes), and this node's confirmed blocks as
// originations (not those of pools with disableBGPExport), and the Service IPs the `default`
// BGPConfiguration asks for (service_routes.ts), whose ranges are kept out of the kernel
// (`fib.exclude`, Calico's rejectcidrs). Blocks of pools that encapsulate
// (vxlanMode or ipipMode Always/CrossSubnet) are still announced, but never imported: the
// agent's overlay routes them (through the tunnel, or natively inside the subnet), as Calico's
// BIRD leaves VXLAN routes to Felix. Dual stack as Calico's bird/bird6:
// an IPv4 session carries IPv4 unicast only, an IPv6 session IPv6 unicast only, sourced from
// this node's address of that family (so its next hop is that address); the router ID stays
// the IPv4 address. Per peer: its BGPFilters (`spec.filters`, in order, first matching rule wins)
// as the speaker's import/export filter of the session's family; TCP-MD5 passwords
// (`spec.password`, BGPConfiguration `nodeMeshPassword`) as a passwordFile
// `<secretsDir>/<secret name>/<key>`, a peer whose file is unusable skipped (never unsigned);
// `ttlSecurity` as GTSM (TTL 255 out, the peer's checked); `reachableBy` as a host route to the
// peer via the gateway, the session multihop (TTL 64, Calico's); the `default` BGPConfiguration's
// ipv4/ipv6NormalRoutePriority as the kernel metric of learned routes; `maxRestartTime` as the graceful
// restart time announced to the peer; `failureDetectionMode: BFDIfDirectlyConnected` as BFD with
// the defaults toward a peer in this node's subnet; the Ocelot extensions `spec.bfd` (the peer's
// BFD session), `spec.maxPrefixes` (for the session's family) and `spec.addPath`. What cannot
// be evaluated fails safe: a missing filter or a rule the speaker cannot express (now only
// addCommunity/prependASPath on import) rejects every route from its place in the list on. Not: running
// the speaker (daemon.ts), reading the files (the caller's readSecret) or the config schema
// (src/bgp/config.ts).
// A BGPPeer with localWorkloadSelector: passive sessions to this node's workloads it selects
// (local_peers.ts), as confd's Local_Workload peers.
import ipaddr from "ipaddr.js";
import {
  type BGPConfiguration,
  type BGPFilter,
  type BGPFilterRule,
  type BGPPeer,
  DEFAULT_AS_NUMBER,
  effectiveBgpConfiguration,
} from "../api/bgp.js";
import { parseDurationMs, parseIpPort } from "../api/fields.js";
import type { IPPool } from "../api/ippool.js";
import type { Node } from "../api/node.js";
import { matchSelector, parseSelector } from "../api/selector.js";
import type {
  BgpdConfig,
  Family,
  Filter,
  FilterRule,
  PeerBfdAuth,
  PeerConfig,
} from "../bgp/config.js";
import {
  bfdKeyProblem,
  DEFAULT_STARTUP_HOLD_TIME,
  MAX_PASSWORD_BYTES,
  parseConfig,
  passwordFromFile,
} from "../bgp/config.js";
import { borrowedAddresses } from "../felix/overlay.js";

import { cidrOverlaps, parseCidr } from "../lib/ip.js";
import {
  floatingAddressesOf,
  type NodeSnapshot,
  nodeBlocks,
  workloadAddressesOf,
} from "./agent_state.js";
import {
  type LocalWorkloadPeer,
  localPeeringAddresses,
  localWorkloadPeers,
  peerAppliesTo,
} from "./local_peers.js";
import { serviceAdvertisements, serviceFibExclusions } from "./service_routes.js";

/** BGPPeer's BFD authentication types as bgpd's config names them. */
const BFD_AUTH_TYPE = {
  Simple: "simple",
  KeyedMD5: "keyed-md5",
  MeticulousKeyedMD5: "meticulous-keyed-md5",
  KeyedSHA1: "keyed-sha1",
  MeticulousKeyedSHA1: "meticulous-keyed-sha1",
} as const satisfies Record<string, PeerBfdAuth["type"]>;

export interface BgpSnapshot extends NodeSnapshot {
  bgpConfigurations: BGPConfiguration[];
  bgpPeers: BGPPeer[];
  /** The BGPFilters peers name in spec.filters (absent: none exist). */
  bgpFilters?: BGPFilter[];
}

/** Where `ocelot node run --secrets-dir` looks for `<secret name>/<key>` by default. */
export const DEFAULT_SECRETS_DIR = "/etc/ocelot/secrets";

export interface BgpOptions {
  /** The status socket of the speaker (`ocelot status --socket`). */
  statusSocket: string;
  /** Seconds the FIB keeps learned routes over a restart (default 120). */
  gracefulRestartTime?: number;
  /** false: no link watch (BGP sessions of directly connected peers wait for the hold timer). */
  checkLink?: boolean;
  /** Hold time of mesh sessions (default 90 s). */
  meshHoldTime?: number;
  /** Directory of the secrets passwords name: `<secretsDir>/<name>/<key>` (default above). */
  secretsDir?: string;
  /**
   * Reads a secret file's text (throws when it cannot); the render only checks the key is
   * usable, the speaker's host reads it again into the config. Absent: no secret is readable.
   */
  readSecret?: (path: string) => string;
  /** CALICO_ADVERTISE_CLUSTER_IPS: in place of the default BGPConfiguration's serviceClusterIPs. */
  advertiseClusterIps?: string;
}

/** Either the speaker's config, or why this node runs no BGP; plus what was not applied. */
/**
 * Where a peer of the rendered config comes from, as Calico's CalicoNodeStatus BGPPeerType names
 * it (NodeMesh, NodePeer: a BGPPeer naming this node or selecting it, GlobalPeer), the resource
 * behind it, and its route-reflection role seen from this node.
 */
export interface PeerKind {
  type: "NodeMesh" | "NodePeer" | "GlobalPeer";
  /** The BGPPeer's name, or the peer Node's name for the mesh. */
  source: string;
  /** "reflector": the peer reflects routes to us; "client": we reflect to it. */
  role?: "reflector" | "client";
}

export type BgpRender =
  | {
      config: BgpdConfig;
      warnings: string[];
      peerKinds: Record<string, PeerKind>;
      /** This node's blocks originated: the head of config.originate (bgp_fast.ts). */
      ownExported: string[];
    }
  | { config: undefined; reason: string; warnings: string[] };

const addressOf = (cidr: string) => cidr.split("/")[0] as string;

/** An IPv6 address as the speaker's config keys peers (RFC 5952 text). */
const canonical6 = (address: string) => ipaddr.parse(address).toString();

const encapsulates = (m: string | undefined) => m === "Always" || m === "CrossSubnet";

/** A pool whose blocks the agent's overlay routes (VXLAN or IP-in-IP, Always or CrossSubnet). */
export function isEncapsulatingPool(p: IPPool): boolean {
  return encapsulates(p.spec.vxlanMode) || encapsulates(p.spec.ipipMode);
}

/** The one family a session of an address's family carries (Calico: bird v4, bird6 v6). */
const familyOf = (address: string): Family =>
  address.includes(":") ? "ipv6-unicast" : "ipv4-unicast";

/** Each Node by its BGP addresses (IPv6 in RFC 5952 text). */
function nodesByAddress(nodes: readonly Node[]): Map<string, Node> {
  const out = new Map<string, Node>();
  for (const n of nodes) {
    const b = n.spec.bgp;
    if (b?.ipv4Address) out.set(addressOf(b.ipv4Address), n);
    if (b?.ipv6Address) out.set(canonical6(addressOf(b.ipv6Address)), n);
  }
  return out;
}

const isDefault = (cidr: string | undefined) => {
  const [a, len] = (cidr ?? "").split("/");
  return (
    len === "0" &&
    (a === "0.0.0.0" || (ipaddr.isValid(a ?? "") && ipaddr.parse(a as string).toString() === "::"))
  );
};

/**
 * Import safety, ahead of a peer's own filters (which cannot override it; they still decide
 * about what passes). Inside one of our pools only prefixes of the pool's block size pass
 * (blocks: from the node that holds one, a reflector or a ToR passing the racks' blocks on); a
 * longer or shorter prefix there (a hijack of pod addresses, or of a whole pool) is rejected,
 * except host routes from a Node (Calico's routes for addresses borrowed from another node's
 * block). From a peer that is no Node, a default route is rejected too, unless the peer's
 * BGPFilters accept it explicitly, and so is a host route to a Node's address (those rules are
 * nodeAddressGuardRules, the peer's importGuard). Rejections count as the filter's (status,
 * metrics). Only pools and Nodes change these rules, never a block claimed: a change of these
 * is applied by refresh, one of the Node rules in place (no ROUTE-REFRESH). Not checked: whether the announcing node holds
 * that block's affinity or borrowed that address (a Node is trusted with its blocks, as in
 * Calico).
 */
export function importGuardRules(
  snap: { pools: readonly IPPool[]; nodes: readonly Node[] },
  address: string,
  fam: Family,
  userRules: readonly FilterRule[],
): FilterRule[] {
  const v6 = fam === "ipv6-unicast";
  const nodes = nodesByAddress(snap.nodes);
  const pools = snap.pools.filter((p) => p.spec.cidr.includes(":") === v6);
  const rules: FilterRule[] = [];
  const max = v6 ? 128 : 32;
  const fromNode = nodes.has(address);
  for (const p of pools) {
    const size = p.spec.blockSize ?? (v6 ? 122 : 26);
    const len = Number(p.spec.cidr.split("/")[1]);
    // Reject-only, so the peer's own filters still decide about the blocks themselves.
    for (const [lo, hi] of [
      [len, size - 1],
      [size + 1, fromNode ? max - 1 : max],
    ] as const)
      if (lo <= hi)
        rules.push({
          action: "Reject",
          cidr: p.spec.cidr,
          matchOperator: "In",
          prefixLength: { min: lo, max: hi },
        });
  }
  if (fromNode) return rules;
  if (!userRules.some((r) => r.action === "Accept" && isDefault(r.cidr)))
    rules.push({ action: "Reject", cidr: v6 ? "::/0" : "0.0.0.0/0", matchOperator: "Equal" });
  return rules;
}

/**
 * The part of the import safety that follows cluster membership: from a peer that is no Node, a
 * host route to a Node's address is rejected. It goes to the peer's `importGuard`, not its
 * importFilter: a Node joining or leaving changes it, and the speaker applies that by
 * re-evaluating the paths it holds (it keeps every received path, rejected ones too), where a
 * changed importFilter would also ask every such peer for a ROUTE-REFRESH (1,000 nodes joining:
 * 1,000 refreshes from each ToR). Empty toward a Node.
 */
export function nodeAddressGuardRules(
  snap: { nodes: readonly Node[] },
  address: string,
  fam: Family,
): FilterRule[] {
  const nodes = nodesByAddress(snap.nodes);
  if (nodes.has(address)) return [];
  const v6 = fam === "ipv6-unicast";
  const max = v6 ? 128 : 32;
  return [...nodes.keys()]
    .sort()
    .filter((a) => a.includes(":") === v6)
    .map((a) => ({
      action: "Reject" as const,
      cidr: `${a}/${max}`,
      matchOperator: "Equal" as const,
    }));
}

/**
 * BGPPeer fields the daemon does not turn into session settings yet: the speaker has no
 * per-peer restart time nor local AS, and its config's nextHopSelf is not acted on.
 */
/** BIRD's `long lived stale time` default, for restartMode LongLivedGracefulRestart. */
export const LLGR_STALE_TIME_DEFAULT = 3600;

/** BIRD's TTL for `multihop` without a number, which Calico's template uses. */
const CALICO_MULTIHOP_TTL = 64;

const UNAPPLIED_PEER_FIELDS = [
  "reversePeering",
  "nextHopMode",
  "keepOriginalNextHop",
  "localASNumber",
] as const;

/** Whether peer is inside the subnet of this node's address "10.0.0.1/24" (no length: no). */
function directlyConnected(mine: string | undefined, peer: string): boolean {
  if (!mine?.includes("/")) return false;
  try {
    const [net, len] = ipaddr.parseCIDR(mine);
    const p = ipaddr.parse(peer);
    return p.kind() === net.kind() && p.match(net, len);
  } catch {
    return false;
  }
}

function selects(selector: string | undefined, labels: Record<string, string>): boolean {
  return selector === undefined || matchSelector(parseSelector(selector), labels);
}

/** The speaker's filters express these rule fields; any other makes a rule fail safe. */
const EXPRESSIBLE_RULE_FIELDS = new Set([
  "action",
  "cidr",
  "matchOperator",
  "prefixLength",
  "source",
  "interface",
  "peerType",
  "communities",
  "asPathPrefix",
  "priority",
  "operations",
]);

/** Rejects every route (what a rule or filter that cannot be evaluated becomes). */
const REJECT_ALL: FilterRule = { action: "Reject" };

/** Why the speaker cannot evaluate a BGPFilter rule, or undefined when it can. */
function inexpressible(rule: BGPFilterRule): string | undefined {
  const fields = Object.keys(rule).filter(
    (k) => !EXPRESSIBLE_RULE_FIELDS.has(k) && rule[k as keyof BGPFilterRule] !== undefined,
  );
  if (fields.length > 0) return `${fields.join(", ")} not supported by the speaker`;
  if (
    rule.prefixLength !== undefined &&
    rule.matchOperator !== "In" &&
    rule.matchOperator !== "NotIn"
  )
    return `prefixLength with matchOperator ${rule.matchOperator} not supported by the speaker`;
  return undefined;
}

/** A BGPFilter rule as the speaker's FilterRule (fields copied, absent ones left out). */
function speakerRule(rule: BGPFilterRule): FilterRule {
  const out: FilterRule = { action: rule.action };
  if (rule.cidr !== undefined) out.cidr = rule.cidr;
  if (rule.matchOperator !== undefined) out.matchOperator = rule.matchOperator;
  if (rule.prefixLength !== undefined) out.prefixLength = { ...rule.prefixLength };
  if (rule.source !== undefined) out.source = rule.source;
  if (rule.interface !== undefined) out.interface = rule.interface;
  if (rule.peerType !== undefined) out.peerType = rule.peerType;
  if (rule.communities !== undefined) out.communities = { values: [...rule.communities.values] };
  if (rule.asPathPrefix !== undefined) out.asPathPrefix = [...rule.asPathPrefix];
  if (rule.priority !== undefined) out.priority = rule.priority;
  if (rule.operations !== undefined) {
    out.operations = rule.operations.map((o) => {
      if (o.addCommunity !== undefined) return { addCommunity: { value: o.addCommunity.value } };
      if (o.prependASPath !== undefined)
        return { prependASPath: { prefix: [...o.prependASPath.prefix] } };
      return { setPriority: { value: (o.setPriority as { value: number }).value } };
    });
  }
  return out;
}

/**
 * One direction of a peer's filters for one family: the named BGPFilters' rule lists joined in
 * order (first match wins across them, as Calico chains them; no match falls through to the
 * speaker's defaults). A filter that does not exist, or a rule the speaker cannot express, ends
 * the list with reject-all: what comes before it is exact, and what it might have let through
 * is not (fail-safe: a peer is never sent or given more than its filters allow).
 */
function filterRules(
  names: readonly string[],
  byName: ReadonlyMap<string, BGPFilter>,
  direction: "import" | "export",
  family: 4 | 6,
  problems: Set<string>,
): Filter | undefined {
  const rules: FilterRule[] = [];
  const list = `${direction}V${family}` as const;
  for (const name of names) {
    const f = byName.get(name);
    if (f === undefined) {
      problems.add(`BGPFilter "${name}" does not exist`);
      rules.push(REJECT_ALL);
      break;
    }
    for (const [i, rule] of (f.spec[list] ?? []).entries()) {
      const why = inexpressible(rule);
      if (why !== undefined) {
        problems.add(`BGPFilter "${name}" ${list}[${i}]: ${why}`);
        rules.push(REJECT_ALL);
        return { rules };
      }
      rules.push(speakerRule(rule));
    }
  }
  return rules.length > 0 ? { rules } : undefined;
}

/** The path of a secretKeyRef's file under the secrets directory. */
export function secretPath(dir: string, ref: { name: string; key: string }): string {
  return `${dir.replace(/\/+$/, "")}/${ref.name}/${ref.key}`;
}

/** The speaker's config for node `name`; see the module comment. */
export function renderBgp(snap: BgpSnapshot, name: string, opts: BgpOptions): BgpRender {
  const warnings: string[] = [];
  const me = snap.nodes.find((n) => n.metadata.name === name);
  if (!me) return { config: undefined, reason: `no Node resource "${name}"`, warnings };
  const myAddr = me.spec.bgp?.ipv4Address;
  if (!myAddr)
    return { config: undefined, reason: `Node "${name}" has no spec.bgp.ipv4Address`, warnings };
  const global = effectiveBgpConfiguration(
    snap.bgpConfigurations.find((c) => c.metadata.name === "default"),
    snap.bgpConfigurations.find((c) => c.metadata.name === `node.${name}`),
  );
  const asOf = (n: Node) => n.spec.bgp?.asNumber ?? global.asNumber ?? DEFAULT_AS_NUMBER;
  const myAs = asOf(me);
  const routerId = addressOf(myAddr);
  /** This node's address of each family: the source of its sessions of that family. */
  const mine: Record<4 | 6, string | undefined> = {
    4: routerId,
    6: me.spec.bgp?.ipv6Address ? canonical6(addressOf(me.spec.bgp.ipv6Address)) : undefined,
  };
  const myCluster = me.spec.bgp?.routeReflectorClusterID;
  const peers = new Map<string, PeerConfig>();
  /** Per family, the import rules that leave encapsulating pools' blocks to the overlay. */
  const overlayOwned = (fam: Family): FilterRule[] =>
    snap.pools
      .filter((p) => isEncapsulatingPool(p) && familyOf(addressOf(p.spec.cidr)) === fam)
      .map((p) => ({ action: "Reject" as const, cidr: p.spec.cidr, matchOperator: "In" as const }));
  const peerKinds: Record<string, PeerKind> = {};
  let kind: PeerKind = { type: "NodeMesh", source: "" };
  const add = (p: Partial<PeerConfig> & { address: string; asn: number }) => {
    if (p.address === mine[4] || p.address === mine[6]) return; // never peer with ourselves
    peerKinds[p.address] = { ...kind };
    const fam = familyOf(p.address);
    const user = p.importFilter?.rules ?? [];
    p.importFilter = {
      rules: [...overlayOwned(fam), ...importGuardRules(snap, p.address, fam, user), ...user],
    };
    const guard = nodeAddressGuardRules(snap, p.address, fam);
    if (guard.length > 0) p.importGuard = { rules: guard };
    peers.set(p.address, {
      port: 179,
      passive: false,
      holdTime: opts.meshHoldTime ?? 90,
      startupHoldTime: DEFAULT_STARTUP_HOLD_TIME,
      connectRetryTime: 5,
      families: [familyOf(p.address)],
      requiredFamilies: [],
      allowOwnAs: 0,
      routeReflectorClient: false,
      ...p,
    });
  };
  /**
   * Sessions to another Node: one per family both ends have an address of (IPv6 sourced from
   * ours, as Calico's mesh); to a route-reflector client when we reflect and it does not.
   * `source`: IPv4 sessions sourced too (a BGPPeer's sourceAddress UseNodeIP).
   */
  const nodePeer = (
    n: Node,
    extra: (fam: 4 | 6, address: string) => Partial<PeerConfig> = () => ({}),
    source = false,
  ) => {
    if (n.metadata.name === name) return;
    const theirCluster = n.spec.bgp?.routeReflectorClusterID;
    const client = myCluster !== undefined && theirCluster !== myCluster;
    const reflector = theirCluster !== undefined && theirCluster !== myCluster;
    const before = kind;
    kind = {
      ...kind,
      ...(kind.type === "NodeMesh" ? { source: n.metadata.name } : {}),
      ...(client ? { role: "client" as const } : reflector ? { role: "reflector" as const } : {}),
    };
    for (const fam of [4, 6] as const) {
      const addr = fam === 4 ? n.spec.bgp?.ipv4Address : n.spec.bgp?.ipv6Address;
      const src = mine[fam];
      if (!addr || !src) continue;
      add({
        address: fam === 6 ? canonical6(addressOf(addr)) : addressOf(addr),
        asn: asOf(n),
        port: global.listenPort,
        routeReflectorClient: myCluster !== undefined && theirCluster !== myCluster,
        ...(fam === 6 || source ? { sourceAddress: src } : {}),
        ...extra(fam, addressOf(addr)),
      });
    }
    kind = before;
  };

  const secretsDir = opts.secretsDir ?? DEFAULT_SECRETS_DIR;
  /** A secretKeyRef's file, when it holds a usable key; else why not. */
  const secret = (ref: { name: string; key: string }): { file: string } | { problem: string } => {
    const file = secretPath(secretsDir, ref);
    let key: string;
    try {
      if (!opts.readSecret) throw new Error("no secrets are readable here");
      key = passwordFromFile(opts.readSecret(file));
    } catch (err) {
      return { problem: `cannot read "${file}": ${(err as Error).message}` };
    }
    const n = Buffer.byteLength(key, "utf8");
    if (n < 1 || n > MAX_PASSWORD_BYTES)
      return { problem: `"${file}" holds ${n} bytes, not a key of 1..${MAX_PASSWORD_BYTES}` };
    return { file };
  };

  if (global.nodeToNodeMeshEnabled) {
    // Every node meshes with every other over each family both have an address of (reflectors
    // among themselves as non-clients, as in Calico), signed when nodeMeshPassword is set.
    const ref = global.nodeMeshPassword?.secretKeyRef;
    const pw = ref ? secret(ref) : undefined;
    if (pw && "problem" in pw)
      warnings.push(
        `BGPConfiguration "default": spec.nodeMeshPassword: ${pw.problem}; node-to-node mesh sessions skipped (never unsigned)`,
      );
    else for (const n of snap.nodes) nodePeer(n, () => (pw ? { passwordFile: pw.file } : {}));
  }

  const filtersByName = new Map((snap.bgpFilters ?? []).map((f) => [f.metadata.name, f]));
  const local = localWorkloadPeers(snap, name);
  const localPeers = local.peers;
  warnings.push(...local.warnings);

  for (const peer of [...snap.bgpPeers].sort((a, b) =>
    a.metadata.name < b.metadata.name ? -1 : 1,
  )) {
    let applies: boolean;
    try {
      applies = peerAppliesTo(peer, me);
    } catch (err) {
      warnings.push(`BGPPeer "${peer.metadata.name}": ${(err as Error).message}; skipped`);
      continue;
    }
    if (!applies) continue;
    const s = peer.spec;
    kind = {
      type: s.node !== undefined || s.nodeSelector !== undefined ? "NodePeer" : "GlobalPeer",
      source: peer.metadata.name,
    };
    const unapplied = UNAPPLIED_PEER_FIELDS.filter((f) => s[f] !== undefined);
    if (unapplied.length > 0)
      warnings.push(
        `BGPPeer "${peer.metadata.name}": ${unapplied.map((f) => `spec.${f}`).join(", ")} not applied yet`,
      );
    const common: Partial<PeerConfig> = {};
    if (s.keepaliveTime !== undefined) {
      const ms = parseDurationMs(s.keepaliveTime) ?? 30_000;
      common.holdTime = Math.min(65535, Math.max(3, Math.round((ms / 1000) * 3)));
    }
    if (s.numAllowedLocalASNumbers !== undefined) common.allowOwnAs = s.numAllowedLocalASNumbers;
    if (s.password !== undefined) {
      const pw = secret(s.password.secretKeyRef);
      if ("problem" in pw) {
        warnings.push(
          `BGPPeer "${peer.metadata.name}": spec.password: ${pw.problem}; peer skipped (never unsigned)`,
        );
        continue;
      }
      common.passwordFile = pw.file;
    }
    // GTSM (RFC 5082) as BIRD's `ttl security on; multihop N`, which Calico renders: we send
    // with TTL 255 and the kernel drops the peer's packets below 256 - N.
    if (s.ttlSecurity !== undefined) common.ttlSecurity = s.ttlSecurity;
    if (s.restartMode === "LongLivedGracefulRestart") {
      // RFC 9494, as Calico's BIRD `long lived graceful restart yes; long lived stale time`:
      // maxRestartTime is the long-lived stale time in this mode (absent: BIRD's 3600 s).
      const sec =
        s.maxRestartTime === undefined
          ? LLGR_STALE_TIME_DEFAULT
          : Math.round((parseDurationMs(s.maxRestartTime) ?? 3_600_000) / 1000);
      const t = Math.min(0xffffff, Math.max(1, sec));
      if (t !== sec)
        warnings.push(
          `BGPPeer "${peer.metadata.name}": spec.maxRestartTime ${s.maxRestartTime} is outside 1s..16777215s (the long-lived stale time's range): ${t}s used`,
        );
      common.longLivedStaleTime = t;
    } else if (s.maxRestartTime !== undefined) {
      // As Calico's BIRD `graceful restart time`: how long the peer keeps our routes.
      const sec = Math.round((parseDurationMs(s.maxRestartTime) ?? 120_000) / 1000);
      const t = Math.min(4095, Math.max(1, sec));
      if (t !== sec)
        warnings.push(
          `BGPPeer "${peer.metadata.name}": spec.maxRestartTime ${s.maxRestartTime} is outside 1s..4095s (the graceful restart capability's range): ${t}s used`,
        );
      common.gracefulRestartTime = t;
    }
    if (s.addPath !== undefined)
      common.addPath = { receive: s.addPath.receive ?? true, send: s.addPath.send ?? 0 };
    if (s.bfd !== undefined) {
      const ms = (d: string | undefined) => (d === undefined ? 300 : (parseDurationMs(d) ?? 300));
      let authentication: PeerBfdAuth | undefined;
      const a = s.bfd.authentication;
      if (a !== undefined) {
        const type = BFD_AUTH_TYPE[a.type];
        const pw = secret(a.password.secretKeyRef);
        const why =
          "problem" in pw
            ? pw.problem
            : bfdKeyProblem(type, passwordFromFile(opts.readSecret?.(pw.file) ?? ""));
        if (why !== undefined) {
          warnings.push(
            `BGPPeer "${peer.metadata.name}": spec.bfd.authentication.password: ${why}; peer skipped (BFD never unauthenticated)`,
          );
          continue;
        }
        authentication = { type, keyId: a.keyID ?? 1, passwordFile: (pw as { file: string }).file };
      }
      common.bfd = {
        minTx: ms(s.bfd.minTxInterval),
        minRx: ms(s.bfd.minRxInterval),
        multiplier: s.bfd.multiplier ?? 3,
        multihop: s.bfd.multihop ?? false,
        ...(authentication ? { authentication } : {}),
      };
    }
    const problems = new Set<string>();
    const extra = (fam: 4 | 6, peerAddress?: string): Partial<PeerConfig> => {
      const out = { ...common };
      if (s.maxPrefixes !== undefined) {
        const m = s.maxPrefixes;
        const restartMs = m.restartTime === undefined ? 60_000 : parseDurationMs(m.restartTime);
        out.maxPrefixes = {
          [fam === 4 ? "ipv4-unicast" : "ipv6-unicast"]: {
            limit: m.limit,
            warningPercent: m.warningPercent ?? 75,
            restartTime: Math.min(86400, Math.round((restartMs ?? 60_000) / 1000)),
          },
        };
      }
      // Calico's BFDIfDirectlyConnected: single-hop BFD with the defaults when the peer is in
      // this node's subnet of that family (spec.bfd, when given, says how).
      if (
        s.failureDetectionMode === "BFDIfDirectlyConnected" &&
        out.bfd === undefined &&
        peerAddress !== undefined &&
        directlyConnected(fam === 4 ? myAddr : me.spec.bgp?.ipv6Address, peerAddress)
      )
        out.bfd = { minTx: 300, minRx: 300, multiplier: 3, multihop: false };
      if (s.filters !== undefined && s.filters.length > 0) {
        const imp = filterRules(s.filters, filtersByName, "import", fam, problems);
        const exp = filterRules(s.filters, filtersByName, "export", fam, problems);
        if (imp) out.importFilter = imp;
        if (exp) out.exportFilter = exp;
      }
      return out;
    };
    const useNodeIp = s.sourceAddress !== "None";
    const warnFilters = () => {
      if (problems.size > 0)
        warnings.push(
          `BGPPeer "${peer.metadata.name}": spec.filters: ${[...problems].join("; ")}: every route rejected from there on (fail-safe)`,
        );
    };
    if ((s.localWorkloadSelector ?? "") !== "") {
      addLocalWorkloadPeers(
        peer,
        localPeers,
        (p) => add({ ...p, ...extra(familyOf(p.address) === "ipv6-unicast" ? 6 : 4, p.address) }),
        warnings,
      );
      warnFilters();
      continue;
    }
    if (s.peerSelector !== undefined) {
      for (const n of snap.nodes) {
        let picked: boolean;
        try {
          picked = selects(s.peerSelector, n.metadata.labels ?? {});
        } catch (err) {
          warnings.push(`BGPPeer "${peer.metadata.name}": ${(err as Error).message}; skipped`);
          break;
        }
        if (picked) nodePeer(n, extra, useNodeIp);
      }
      warnFilters();
      continue;
    }
    const ip = s.peerIP === undefined ? undefined : parseIpPort(s.peerIP);
    if (!ip) continue; // a peer with neither peerIP nor peerSelector peers with nothing (Calico too)
    if (s.asNumber === undefined) {
      // Calico accepts it and renders AS 0, which its BIRD refuses: no session either way.
      warnings.push(`BGPPeer "${peer.metadata.name}": peerIP ${s.peerIP} has no asNumber; skipped`);
      continue;
    }
    const src = mine[ip.family];
    if (src === undefined) {
      warnings.push(
        `BGPPeer "${peer.metadata.name}": IPv6 peer ${s.peerIP} skipped: Node "${name}" has no spec.bgp.ipv6Address`,
      );
      continue;
    }
    const address = ip.family === 6 ? canonical6(ip.address) : ip.address;
    // reachableBy: confd's BIRD static `route <peer>/32 via <gateway>`; the peer is then at
    // least two hops away, reached as by Calico's `multihop` (BIRD's TTL 64) unless GTSM is set.
    const viaGateway =
      s.reachableBy === undefined
        ? {}
        : {
            reachableBy: s.reachableBy,
            ...(s.ttlSecurity === undefined ? { multihop: CALICO_MULTIHOP_TTL } : {}),
          };
    add({
      address,
      asn: s.asNumber,
      port: ip.port ?? 179,
      ...(useNodeIp ? { sourceAddress: src } : {}),
      ...extra(ip.family, address),
      ...viaGateway,
    });
    warnFilters();
  }

  const pools = snap.pools.map((p) => parseCidr(p.spec.cidr, false));
  const noExport = snap.pools
    .filter((p: IPPool) => p.spec.disableBGPExport === true)
    .map((p) => parseCidr(p.spec.cidr, false));
  // This node's blocks, and its workloads' borrowed addresses (from other nodes' blocks) and
  // floating IPs as host prefixes when in a pool, as Calico announces them: the other nodes
  // reach those through this one.
  const own = nodeBlocks(snap.affinities, name);
  const borrowed = borrowedAddresses(
    [
      ...workloadAddressesOf(snap.workloadEndpoints).filter((w) => w.node === name),
      // Floating IPs routed to this node's pods, announced on the same terms.
      ...floatingAddressesOf(snap, name),
    ],
    own.map((cidr) => ({ cidr, node: name })),
  )
    .map((b) => b.cidr)
    .filter((c) => pools.some((p) => cidrOverlaps(p, parseCidr(c, false))));
  const blocks = [...own, ...borrowed].filter(
    (b) => !noExport.some((p) => cidrOverlaps(p, parseCidr(b, false))),
  );

  const services = opts.advertiseClusterIps
    ? { ...snap, advertiseClusterIps: opts.advertiseClusterIps }
    : snap;
  const doc = {
    asn: myAs,
    routerId,
    // Dual-stack when this node has an IPv6 address or an IPv6 local workload peering address
    // (IPv4 peers arrive IPv4-mapped).
    listen: {
      address: mine[6] || localPeeringAddresses(snap.bgpConfigurations)[6] ? "::" : "0.0.0.0",
      port: global.listenPort,
    },
    ...(myCluster ? { clusterId: myCluster } : {}),
    peers: [...peers.values()].sort((a, b) => (a.address < b.address ? -1 : 1)),
    originate: [...new Set([...blocks, ...serviceAdvertisements(services, name)])].map(
      (prefix) => ({
        prefix,
      }),
    ),
    fib: {
      enabled: true,
      table: "main",
      protocol: 201,
      gracefulRestartTime: opts.gracefulRestartTime ?? 120,
      // Calico's rejectcidrs: Service routes learned from anyone stay out of the kernel.
      exclude: serviceFibExclusions(services),
      // Calico's krt_metric for routes learned over BGP: the normal route priority, or the
      // route's own (2^31-1 - LOCAL_PREF from an iBGP peer or an import setPriority); routes
      // go to iBGP peers with LOCAL_PREF 2^31-1 - priority, as confd's BIRD filters do.
      metricV4: global.ipv4NormalRoutePriority,
      metricV6: global.ipv6NormalRoutePriority,
      metricFromPriority: true,
    },
    gracefulRestart: gracefulRestartOf(global),
    status: { socket: opts.statusSocket },
    ...(opts.checkLink === false ? { checkLink: false } : {}),
  };
  // The same validation as a bgpd file: a value out of its range is named, not half applied.
  const ownExported = own.filter(
    (b) => !noExport.some((p) => cidrOverlaps(p, parseCidr(b, false))),
  );
  return { config: parseConfig(doc), warnings, peerKinds, ownExported };
}

/**
 * A BGPPeer with localWorkloadSelector as sessions to the local workloads it is active for
 * (local_peers.ts), as confd renders them for BIRD: one per address, of the BGPPeer's asNumber,
 * passive (the workload connects to the node's peering address), no source address, and
 * `multihop` (BIRD's TTL 64) unless ttlSecurity is set: the workload's address is not in a
 * subnet of the node's.
 */
function addLocalWorkloadPeers(
  peer: BGPPeer,
  local: readonly LocalWorkloadPeer[],
  add: (p: Partial<PeerConfig> & { address: string; asn: number }) => void,
  warnings: string[],
): void {
  const s = peer.spec;
  if (s.asNumber === undefined) {
    warnings.push(
      `BGPPeer "${peer.metadata.name}": localWorkloadSelector without asNumber; skipped`,
    );
    return;
  }
  for (const w of local) {
    if (w.bgpPeer !== peer.metadata.name) continue;
    for (const address of [w.ipv4, w.ipv6 && canonical6(w.ipv6)]) {
      if (address === undefined) continue;
      add({
        address,
        asn: s.asNumber,
        passive: true,
        ...(s.ttlSecurity === undefined ? { multihop: CALICO_MULTIHOP_TTL } : {}),
      });
    }
  }
}

/**
 * The speaker's graceful restart from BGPConfiguration: the Ocelot extension
 * `spec.gracefulRestart`, its restart time defaulting to Calico's nodeMeshMaxRestartTime.
 */
function gracefulRestartOf(g: ReturnType<typeof effectiveBgpConfiguration>) {
  const gr = g.gracefulRestart ?? {};
  const seconds = (d: string | undefined) => {
    const ms = d === undefined ? undefined : parseDurationMs(d);
    return ms === undefined ? undefined : Math.round(ms / 1000);
  };
  const restartTime = seconds(gr.restartTime ?? g.nodeMeshMaxRestartTime);
  const staleRoutesTime = seconds(gr.staleRoutesTime);
  return {
    ...(gr.enabled !== undefined ? { enabled: gr.enabled } : {}),
    ...(restartTime !== undefined ? { restartTime } : {}),
    ...(staleRoutesTime !== undefined ? { staleRoutesTime } : {}),
  };
}
