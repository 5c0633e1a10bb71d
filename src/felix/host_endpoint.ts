// Host endpoint policy in the agent, rendered from values (pure), laid out as Felix does it:
// per host interface a HostEndpoint names (by `interfaceName`, by the interface holding one of
// its `expectedIPs`, or every interface for `interfaceName: "*"`), the chains for traffic to the
// host from it (ocl-fh-<iface>), from the host out of it (ocl-th-<iface>) and forwarded through
// it (ocl-fhfw-/ocl-thfw-, `applyOnForward` policies), preDNAT policies in mangle PREROUTING
// (ingress only), doNotTrack policies in raw PREROUTING/OUTPUT (NOTRACK on Allow), and Felix's
// failsafe chains jumped to first so no host policy cuts the node off SSH, BGP, etcd or the API
// server; WireGuard's UDP port let through before the host endpoints' chains, in and out, as
// Felix does. Also the workload-to-host action (defaultEndpointToHostAction).
// Not: the workload chains and rule matches (policy.ts), the built-in chains' layout
// (iptables.ts renderFilterTable), where HostEndpoints and interfaces come from (src/node).
import { matchSelector } from "../api/selector.js";
import { allowTarget, DEFAULT_RULE_ACTIONS, denyTarget } from "./actions.js";
import {
  type ChainSpec,
  canonicalCidr,
  chainName,
  type Family,
  type IpsetSpec,
  type TableSpec,
  WORKLOAD_IFACE_MATCH,
} from "./iptables.js";
import {
  type Direction,
  type EndpointChainSpec,
  endpointChainRules,
  MARK_ACCEPT,
  MARK_PASS,
  type Policy,
  type PolicyInput,
  type PolicyProfile,
  profilesWithRules,
  Renderer,
  tierResolver,
  usablePolicies,
} from "./policy.js";

/** One failsafe port (FelixConfiguration's ProtoPort): protocol, port and optional CIDR. */
export interface ProtoPort {
  protocol: string;
  port: number;
  net?: string;
}

const pp = (protocol: string, port: number): ProtoPort => ({ protocol, port });
/** ICMPv6 router solicitation/advertisement, neighbour solicitation/advertisement. */
const NDP_TYPES = [133, 134, 135, 136];
/** Felix's default failsafeInboundHostPorts: SSH, DHCP, BGP, etcd, Typha, kube-apiserver. */
export const DEFAULT_FAILSAFE_INBOUND: readonly ProtoPort[] = [
  pp("tcp", 22),
  pp("udp", 68),
  pp("tcp", 179),
  pp("tcp", 2379),
  pp("tcp", 2380),
  pp("tcp", 5473),
  pp("tcp", 6443),
  pp("tcp", 6666),
  pp("tcp", 6667),
];
/** Felix's default failsafeOutboundHostPorts: DNS, DHCP, BGP, etcd, Typha, kube-apiserver. */
export const DEFAULT_FAILSAFE_OUTBOUND: readonly ProtoPort[] = [
  pp("udp", 53),
  pp("udp", 67),
  pp("tcp", 179),
  pp("tcp", 2379),
  pp("tcp", 2380),
  pp("tcp", 5473),
  pp("tcp", 6443),
  pp("tcp", 6666),
  pp("tcp", 6667),
];

/** One HostEndpoint of this node as the agent sees it. */
export interface HostEndpointSpec {
  name: string;
  /** An interface name, or "*" for every interface of the host. */
  interfaceName?: string;
  expectedIPs?: string[];
  /** Its labels (with its profiles' labelsToApply): what policy selectors match. */
  labels: Readonly<Record<string, string>>;
  profiles?: string[];
  /**
   * Its `qos.projectcalico.org/dscp` annotation's code point: traffic from its expectedIPs that
   * leaves the cluster is marked (dscp.ts), as Felix does for a host endpoint's QoS policy.
   */
  dscp?: number;
}

/** A host interface and its addresses (to find the one holding a HostEndpoint's expectedIPs). */
export interface HostIface {
  name: string;
  addresses: string[];
}

/** FelixConfiguration defaultEndpointToHostAction: after a pod's egress policy allowed it. */
export type EndpointToHostAction = "Drop" | "Return" | "Accept";

export interface HostPolicyInput {
  /** This node's HostEndpoints. */
  hostEndpoints: HostEndpointSpec[];
  interfaces?: HostIface[];
  /** Absent: Felix's defaults. */
  failsafeInbound?: readonly ProtoPort[];
  failsafeOutbound?: readonly ProtoPort[];
  /** Absent: Ocelot's default, Return (the host's own INPUT rules decide). */
  defaultEndpointToHostAction?: EndpointToHostAction;
  /**
   * The WireGuard listening port of each family where WireGuard is on: its UDP is let through
   * before the host endpoints' policy, in and out (Felix's "Allow incoming/outgoing Wireguard
   * packets"), so that no host policy cuts the tunnel.
   */
  wireguardPorts?: { 4?: number; 6?: number };
}

/** Where the host's rules go in the filter table's ocl-INPUT/OUTPUT/FORWARD (iptables.ts). */
export interface HostFilter {
  chains: ChainSpec[];
  /**
   * The end of ocl-wl-to-host, where pod-to-host traffic goes (after the pod's egress policy)
   * when it is set apart: defaultEndpointToHostAction.
   */
  workloadToHost?: string[];
  /** After the workload rules of ocl-INPUT. */
  inputTail: string[];
  /** First in ocl-OUTPUT, and after its workload rule. */
  outputHead: string[];
  outputTail: string[];
  /** First in ocl-FORWARD, before the workload accepts, and last. */
  forwardHead: string[];
  forwardMiddle: string[];
  forwardTail: string[];
}

export interface HostPolicyState {
  filter?: HostFilter;
  /** mangle (preDNAT) and raw (doNotTrack): always rendered when host endpoints are known. */
  tables: TableSpec[];
  ipsets: IpsetSpec[];
  warnings: string[];
}

export const CHAIN_FROM_HOST_ENDPOINT = "ocl-from-host-endpoint";
export const CHAIN_TO_HOST_ENDPOINT = "ocl-to-host-endpoint";
export const CHAIN_FROM_HEP_FORWARD = "ocl-from-hep-forward";
export const CHAIN_TO_HEP_FORWARD = "ocl-to-hep-forward";
export const CHAIN_FAILSAFE_IN = "ocl-failsafe-in";
export const CHAIN_FAILSAFE_OUT = "ocl-failsafe-out";
const CHAIN_PREROUTING = "ocl-PREROUTING";
const CHAIN_OUTPUT = "ocl-OUTPUT";
/** The chain suffix of the all-interfaces host endpoint (Felix's "any"). */
const ANY = "any";

const hex = (n: number) => `0x${n.toString(16)}`;
const ACCEPTED = `-m mark --mark ${hex(MARK_ACCEPT)}/${hex(MARK_ACCEPT)}`;
const NOT_ACCEPTED = `-m mark --mark 0x0/${hex(MARK_ACCEPT)}`;
const CLEAR_ALL = `-j MARK --set-xmark 0x0/${hex(MARK_ACCEPT | MARK_PASS)}`;
const CLEAR_PASS = `-j MARK --set-xmark 0x0/${hex(MARK_PASS)}`;

type Kind = "fh" | "th" | "fhfw" | "thfw";
const hepChain = (kind: Kind, iface: string) => chainName(`ocl-${kind}-${iface}`);

/** The failsafe rules of one table and direction (Felix's failsafeIn/OutChain). */
export function failsafeRules(
  table: "filter" | "mangle" | "raw",
  dir: "in" | "out",
  inbound: readonly ProtoPort[],
  outbound: readonly ProtoPort[],
  family: Family,
): string[] {
  const rule = (p: ProtoPort, portFlag: "--dport" | "--sport", netFlag: "-s" | "-d") => {
    const proto = p.protocol.toLowerCase();
    let net = "";
    if (p.net !== undefined) {
      if (p.net.includes(":") !== (family === 6)) return undefined;
      net = `${netFlag} ${canonicalCidr(p.net, family, "failsafe net")} `;
    }
    return `${net}-p ${proto} -m ${proto} ${portFlag} ${p.port} -j ACCEPT`;
  };
  const [mine, theirs] = dir === "in" ? [inbound, outbound] : [outbound, inbound];
  // IPv6 neighbour discovery (router/neighbour solicitation and advertisement): without it no
  // failsafe port can be reached over IPv6.
  const ndp =
    family === 6 ? NDP_TYPES.map((t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j ACCEPT`) : [];
  // Traffic to a failsafe port: from a source in net (inbound) or to a destination in it.
  const out = [...ndp, ...mine.map((p) => rule(p, "--dport", dir === "in" ? "-s" : "-d"))];
  // The raw table sees packets before conntrack: the replies of the other direction's
  // failsafe connections must not fall into a doNotTrack policy either.
  if (table === "raw")
    out.push(...theirs.map((p) => rule(p, "--sport", dir === "in" ? "-s" : "-d")));
  return out.filter((r): r is string => r !== undefined);
}

/** Which interface each HostEndpoint polices ("any" for "*"); the first by name wins a tie. */
export function resolveHostEndpoints(input: HostPolicyInput): {
  ifaces: Map<string, HostEndpointSpec>;
  warnings: string[];
} {
  const ifaces = new Map<string, HostEndpointSpec>();
  const warnings: string[] = [];
  const byAddress = new Map<string, string>();
  for (const i of input.interfaces ?? [])
    for (const a of i.addresses) byAddress.set(a.split("/")[0] as string, i.name);
  for (const h of [...input.hostEndpoints].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    let iface: string | undefined;
    if (h.interfaceName === "*") iface = ANY;
    else if (h.interfaceName !== undefined) iface = h.interfaceName;
    else
      for (const ip of h.expectedIPs ?? []) {
        iface = byAddress.get(ip);
        if (iface !== undefined) break;
      }
    if (iface === undefined) {
      warnings.push(
        `HostEndpoint "${h.name}": no interface of this host holds ${(h.expectedIPs ?? []).join(", ")}; not applied until one does`,
      );
      continue;
    }
    const other = ifaces.get(iface);
    if (other !== undefined) {
      warnings.push(
        `HostEndpoint "${h.name}": interface ${iface === ANY ? '"*"' : iface} is already HostEndpoint "${other.name}"'s; not applied`,
      );
      continue;
    }
    ifaces.set(iface, h);
  }
  return { ifaces, warnings };
}

/** Whether a policy applies to a host endpoint: global policies whose selector matches it. */
function selectsHost(p: Policy, h: HostEndpointSpec, r: Renderer): boolean {
  if (p.namespace !== undefined || p.namespaceSelector !== undefined) return false;
  return matchSelector(r.sels.get(p.selector), h.labels);
}

/** The dispatch rules of one chain: per interface, then the "*" endpoint for the rest. */
function dispatch(
  ifaces: string[],
  flag: "-i" | "-o",
  chainOf: (iface: string) => string,
  skipWorkloads: boolean,
): string[] {
  const named = ifaces.filter((i) => i !== ANY).sort();
  const rules = named.map((i) => `${flag} ${i} -g ${chainOf(i)}`);
  if (ifaces.includes(ANY)) {
    // The all-interfaces endpoint leaves loopback and the workload interfaces alone.
    rules.push(`${flag} lo -j RETURN`);
    if (skipWorkloads) rules.push(`${flag} ${WORKLOAD_IFACE_MATCH} -j RETURN`);
    rules.push(`-g ${chainOf(ANY)}`);
  }
  return rules;
}

const policyFilter = {
  normal: (p: Policy) => p.preDNAT !== true && p.doNotTrack !== true,
  forward: (p: Policy) => p.preDNAT !== true && p.doNotTrack !== true && p.applyOnForward === true,
  untracked: (p: Policy) => p.doNotTrack === true,
  preDNAT: (p: Policy) => p.preDNAT === true,
};

/**
 * The host's side of policy for one family: filter-table chains and where they hook in, the
 * mangle (preDNAT) and raw (doNotTrack) tables, and the ipsets their rules use. `policy` gives
 * the policies, tiers, profiles and every endpoint (rule selectors match them).
 */
export function renderHostPolicy(
  host: HostPolicyInput,
  policy: PolicyInput,
  family: Family,
): HostPolicyState {
  const r = new Renderer(policy, family);
  const tierOf = tierResolver(policy.tiers);
  const { ifaces, warnings } = resolveHostEndpoints(host);
  // Without host endpoints no policy is looked at (the usual node: nothing to pay for).
  const profiles = ifaces.size > 0 ? profilesWithRules(policy) : new Map<string, PolicyProfile>();
  const policies = ifaces.size > 0 ? usablePolicies(policy.policies, r) : [];
  const inbound = host.failsafeInbound ?? DEFAULT_FAILSAFE_INBOUND;
  const outbound = host.failsafeOutbound ?? DEFAULT_FAILSAFE_OUTBOUND;
  const action = host.defaultEndpointToHostAction;
  const wgPort = host.wireguardPorts?.[family];
  // FelixConfiguration's verdicts: the filter table's allow and deny, preDNAT's allow in mangle.
  const actions = policy.actions ?? DEFAULT_RULE_ACTIONS;
  const filterDeny = denyTarget(actions.filterDeny, family);
  const filterAllow = allowTarget(actions.filterAllow);
  const mangleAllow = allowTarget(actions.mangleAllow);

  const used = {
    filter: new Map<string, { p: Policy; dir: Direction }>(),
    mangle: new Map<string, { p: Policy; dir: Direction }>(),
    raw: new Map<string, { p: Policy; dir: Direction }>(),
  };
  const filterChains: ChainSpec[] = [];
  const mangleChains: ChainSpec[] = [];
  const rawChains: ChainSpec[] = [];
  const preDnatIfaces: string[] = [];
  const rawIfaces: string[] = [];
  for (const [iface, h] of [...ifaces].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const mine = policies.filter((p) => selectsHost(p, h, r));
    const profs: PolicyProfile[] = (h.profiles ?? []).flatMap((n) => profiles.get(n) ?? []);
    const pick = (type: keyof typeof policyFilter, dir: Direction) =>
      mine.filter((p) => policyFilter[type](p) && p.types.includes(dir));
    const chain = (spec: EndpointChainSpec, dir: Direction, table: keyof typeof used) =>
      endpointChainRules(
        table === "filter"
          ? { ...spec, allow: actions.filterAllow, deny: filterDeny }
          : table === "mangle"
            ? { ...spec, allow: actions.mangleAllow }
            : spec,
        dir,
        tierOf,
        used[table],
      );
    filterChains.push(
      {
        name: hepChain("fh", iface),
        rules: chain(
          {
            type: "normal",
            policies: pick("normal", "Ingress"),
            profiles: profs,
            failsafe: CHAIN_FAILSAFE_IN,
            dropAtEnd: true,
          },
          "Ingress",
          "filter",
        ),
      },
      {
        name: hepChain("th", iface),
        rules: chain(
          {
            type: "normal",
            policies: pick("normal", "Egress"),
            profiles: profs,
            failsafe: CHAIN_FAILSAFE_OUT,
            dropAtEnd: true,
          },
          "Egress",
          "filter",
        ),
      },
      {
        name: hepChain("fhfw", iface),
        rules: chain(
          { type: "forward", policies: pick("forward", "Ingress") },
          "Ingress",
          "filter",
        ),
      },
      {
        name: hepChain("thfw", iface),
        rules: chain({ type: "forward", policies: pick("forward", "Egress") }, "Egress", "filter"),
      },
    );
    const pre = pick("preDNAT", "Ingress");
    if (pre.length > 0) {
      preDnatIfaces.push(iface);
      mangleChains.push({
        name: hepChain("fh", iface),
        rules: chain(
          { type: "preDNAT", policies: pre, failsafe: CHAIN_FAILSAFE_IN },
          "Ingress",
          "mangle",
        ),
      });
    }
    const [rawIn, rawOut] = [pick("untracked", "Ingress"), pick("untracked", "Egress")];
    if (rawIn.length > 0 || rawOut.length > 0) {
      rawIfaces.push(iface);
      rawChains.push(
        {
          name: hepChain("fh", iface),
          rules: chain(
            { type: "untracked", policies: rawIn, failsafe: CHAIN_FAILSAFE_IN },
            "Ingress",
            "raw",
          ),
        },
        {
          name: hepChain("th", iface),
          rules: chain(
            { type: "untracked", policies: rawOut, failsafe: CHAIN_FAILSAFE_OUT },
            "Egress",
            "raw",
          ),
        },
      );
    }
  }
  const policyChains = (
    m: Map<string, { p: Policy; dir: Direction }>,
    deny = "-j DROP",
  ): ChainSpec[] =>
    [...m]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([name, { p, dir }]) => ({ name, rules: r.policyChain(p, dir, deny) }));
  const names = [...ifaces.keys()];
  const tables: TableSpec[] = [
    mangleTable(
      preDnatIfaces,
      inbound,
      outbound,
      family,
      policyChains(used.mangle),
      mangleChains,
      mangleAllow,
    ),
    rawTable(rawIfaces, inbound, outbound, family, policyChains(used.raw), rawChains),
  ];
  const ipsets = [...r.ipsets.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  const allWarnings = [...new Set([...warnings, ...r.warnings])];
  if (names.length === 0 && action === undefined) return { tables, ipsets, warnings: allWarnings };

  const wlToHost =
    action === undefined && names.length === 0
      ? undefined
      : {
          // Replies to the host's own connections to a pod are not pod-to-host traffic (a pod
          // with policy has them accepted by its chain's conntrack rule; one without, here).
          Drop: ["-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "-j DROP"],
          Accept: ["-j ACCEPT"],
          Return: ["-j RETURN"],
        }[action ?? "Return"];
  const filter: HostFilter = {
    chains: [
      {
        name: CHAIN_FROM_HOST_ENDPOINT,
        rules: dispatch(names, "-i", (i) => hepChain("fh", i), true),
      },
      {
        name: CHAIN_TO_HOST_ENDPOINT,
        rules: dispatch(names, "-o", (i) => hepChain("th", i), true),
      },
      {
        name: CHAIN_FROM_HEP_FORWARD,
        rules: dispatch(names, "-i", (i) => hepChain("fhfw", i), true),
      },
      {
        name: CHAIN_TO_HEP_FORWARD,
        rules: dispatch(names, "-o", (i) => hepChain("thfw", i), true),
      },
      { name: CHAIN_FAILSAFE_IN, rules: failsafeRules("filter", "in", inbound, outbound, family) },
      {
        name: CHAIN_FAILSAFE_OUT,
        rules: failsafeRules("filter", "out", inbound, outbound, family),
      },
      ...filterChains,
      ...policyChains(used.filter, filterDeny),
    ],
    ...(wlToHost !== undefined ? { workloadToHost: wlToHost } : {}),
    inputTail: [
      `${ACCEPTED} ${filterAllow}`,
      CLEAR_ALL,
      ...(wgPort !== undefined
        ? [`-p udp --dport ${wgPort} -m addrtype --dst-type LOCAL ${filterAllow}`]
        : []),
      `-j ${CHAIN_FROM_HOST_ENDPOINT}`,
      `${ACCEPTED} ${filterAllow}`,
    ],
    outputHead: [`${ACCEPTED} ${filterAllow}`],
    outputTail: [
      `-o ${WORKLOAD_IFACE_MATCH} -j RETURN`,
      CLEAR_ALL,
      ...(wgPort !== undefined
        ? [`-p udp --dport ${wgPort} -m addrtype --src-type LOCAL ${filterAllow}`]
        : []),
      `-j ${CHAIN_TO_HOST_ENDPOINT}`,
      `${ACCEPTED} ${filterAllow}`,
    ],
    forwardHead: [CLEAR_PASS, `${NOT_ACCEPTED} -j ${CHAIN_FROM_HEP_FORWARD}`],
    forwardMiddle: [`-j ${CHAIN_TO_HEP_FORWARD}`],
    forwardTail: [`${ACCEPTED} ${filterAllow}`],
  };
  if (names.length === 0) {
    // Only the workload-to-host action: no host endpoint chains.
    filter.chains = [];
    filter.inputTail = [];
    filter.outputHead = [];
    filter.outputTail = [];
    filter.forwardHead = [];
    filter.forwardMiddle = [];
    filter.forwardTail = [];
  }
  return { filter, tables, ipsets, warnings: allWarnings };
}

/** mangle PREROUTING: preDNAT policy of the interfaces that have some (Felix's layout). */
function mangleTable(
  ifaces: string[],
  inbound: readonly ProtoPort[],
  outbound: readonly ProtoPort[],
  family: Family,
  policyChains: ChainSpec[],
  endpointChains: ChainSpec[],
  allow: string,
): TableSpec {
  if (ifaces.length === 0) return { table: "mangle", chains: [], hooks: [] };
  return {
    table: "mangle",
    chains: [
      {
        name: CHAIN_PREROUTING,
        rules: [
          `-m conntrack --ctstate RELATED,ESTABLISHED ${allow}`,
          `${ACCEPTED} ${allow}`,
          `-j ${CHAIN_FROM_HOST_ENDPOINT}`,
          `${ACCEPTED} ${allow}`,
        ],
      },
      {
        name: CHAIN_FROM_HOST_ENDPOINT,
        rules: dispatch(ifaces, "-i", (i) => hepChain("fh", i), true),
      },
      { name: CHAIN_FAILSAFE_IN, rules: failsafeRules("mangle", "in", inbound, outbound, family) },
      ...endpointChains,
      ...policyChains,
    ],
    hooks: [{ builtin: "PREROUTING", rule: `-j ${CHAIN_PREROUTING}` }],
  };
}

/** raw PREROUTING and OUTPUT: doNotTrack policy of the interfaces that have some. */
function rawTable(
  ifaces: string[],
  inbound: readonly ProtoPort[],
  outbound: readonly ProtoPort[],
  family: Family,
  policyChains: ChainSpec[],
  endpointChains: ChainSpec[],
): TableSpec {
  if (ifaces.length === 0) return { table: "raw", chains: [], hooks: [] };
  return {
    table: "raw",
    chains: [
      {
        name: CHAIN_PREROUTING,
        rules: [
          CLEAR_ALL,
          `-i ${WORKLOAD_IFACE_MATCH} -j RETURN`,
          `-j ${CHAIN_FROM_HOST_ENDPOINT}`,
          `${ACCEPTED} -j ACCEPT`,
        ],
      },
      {
        name: CHAIN_OUTPUT,
        rules: [CLEAR_ALL, `-j ${CHAIN_TO_HOST_ENDPOINT}`, `${ACCEPTED} -j ACCEPT`],
      },
      {
        name: CHAIN_FROM_HOST_ENDPOINT,
        rules: dispatch(ifaces, "-i", (i) => hepChain("fh", i), true),
      },
      {
        name: CHAIN_TO_HOST_ENDPOINT,
        rules: dispatch(ifaces, "-o", (i) => hepChain("th", i), true),
      },
      { name: CHAIN_FAILSAFE_IN, rules: failsafeRules("raw", "in", inbound, outbound, family) },
      { name: CHAIN_FAILSAFE_OUT, rules: failsafeRules("raw", "out", inbound, outbound, family) },
      ...endpointChains,
      ...policyChains,
    ],
    hooks: [
      { builtin: "PREROUTING", rule: `-j ${CHAIN_PREROUTING}` },
      { builtin: "OUTPUT", rule: `-j ${CHAIN_OUTPUT}` },
    ],
  };
}
