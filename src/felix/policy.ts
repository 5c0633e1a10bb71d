// Network policy in the agent, rendered from values (pure). Calico NetworkPolicy and
// GlobalNetworkPolicy, and Kubernetes NetworkPolicy translated as Calico does (knp.default.<name>,
// order 1000), become: a chain per policed local endpoint and direction (ocl-tw-<iface> for
// ingress, ocl-fw-<iface> for egress), a chain per policy and direction (ocl-pi-/ocl-po-<hash>),
// the two dispatch chains that pick endpoint chains by interface (always: every known local
// endpoint, and a drop for unknown workload interfaces at their ends, as Felix's dispatch
// chains), and ipsets of the addresses a
// rule's selector matches (ocl-s-<hash>) or of its nets (ocl-n-<hash>); a Profile's rules
// (ocl-pri-/ocl-pro-<hash>) after an endpoint's policies, as Felix orders them. The endpoint
// chain layout (endpointChainRules) is shared with host endpoints (host_endpoint.ts). Past 16
// local interfaces the dispatch chains become Felix's dispatch tree (dispatchTree). Or, asked
// for (PolicyInput.dispatchBySet), the dispatch by set (setDispatch): one chain and one set rule
// per group of endpoints with the same chains, for the kernel's validation walk's sake.
//
// Renders are incremental, as Felix's calculation graph: renderPolicy keeps what earlier renders
// found (PolicyRenderCache) and redoes only what an update touches: a policy chain is reused
// while its policy's content is the same (the same rules array, so the applier's plan sees it
// unchanged at once), a rule selector's ipset is updated for the endpoints whose namespace,
// labels or addresses changed (SelectorIndex, Felix's label index), a local endpoint's chains
// and dispatch rules are reused while its labels and the policies' selection are the same. The
// result is the same as a render from nothing (policy_incremental.property.test.ts).
// Not: the hooks from the built-in chains (iptables.ts), where resources come from (src/node).
//
// Verdicts travel in two mark bits, as in Felix: a policy chain sets ACCEPT (Allow) or PASS
// (Pass) and returns; the endpoint chain returns on ACCEPT, skips later policies on PASS and
// drops what no policy accepted or passed once any policy selects the endpoint in that
// direction. Returning (not ACCEPT) lets forwarded traffic between two local pods pass the
// sender's egress chain and then the receiver's ingress chain. Endpoints no policy selects and
// none of whose profiles has rules are dispatched to nothing (RETURN): their traffic is allowed
// (Felix would drop it: "Drop if no profiles matched"; Calico gives every pod a profile).
import { createHash } from "node:crypto";
import type { K8sNetworkPolicy, LabelSelector, Rule } from "../api/policy.js";
import { formatSelector, matchSelector, parseSelector, type Selector } from "../api/selector.js";
import { DEFAULT_TIER, DEFAULT_TIER_ORDER } from "../api/tier.js";
import { formatAddress, parseCidr } from "../lib/ip.js";
import {
  type AllowAction,
  allowTarget,
  conntrackAllowRules,
  DEFAULT_RULE_ACTIONS,
  denyTarget,
  type RuleActions,
} from "./actions.js";
import {
  CHAIN_FROM_WL_DISPATCH,
  CHAIN_TO_WL_DISPATCH,
  type ChainSpec,
  chainName,
  type Family,
  type IpsetSpec,
} from "./iptables.js";
import { type PolicyServiceSlice, serviceIpset, serviceSetMatch } from "./service_match.js";

export type Direction = "Ingress" | "Egress";

/** Mark bits (Felix's defaults inside its 0xffff0000 mask). */
export const MARK_ACCEPT = 0x10000;
export const MARK_PASS = 0x20000;
const hex = (n: number) => `0x${n.toString(16)}`;
const ACCEPT = `${hex(MARK_ACCEPT)}/${hex(MARK_ACCEPT)}`;
const PASS = `${hex(MARK_PASS)}/${hex(MARK_PASS)}`;
const NOT_PASS = `0x0/${hex(MARK_PASS)}`;
const CLEAR = `0x0/${hex(MARK_ACCEPT | MARK_PASS)}`;
export const LOG_PREFIX = "ocelot-packet";
/** Calico's endpoint labels for the namespace and orchestrator. */
export const LABEL_NAMESPACE = "projectcalico.org/namespace";
export const LABEL_ORCHESTRATOR = "projectcalico.org/orchestrator";
/** The endpoint's service account (written by the CNI plugin and kube-controllers). */
export const LABEL_SERVICE_ACCOUNT = "projectcalico.org/serviceaccount";
/** Calico's prefix of service-account labels (ksa Profiles' labelsToApply) and its name label. */
export const SERVICE_ACCOUNT_PREFIX = "pcsa.";
const SA_NAME_LABEL = `${SERVICE_ACCOUNT_PREFIX}projectcalico.org/name`;

/** The selector with every label key prefixed (Calico's service-account selectors). */
function prefixKeys(sel: Selector, prefix: string): Selector {
  switch (sel.op) {
    case "all":
    case "global":
      return sel;
    case "not":
      return { op: "not", arg: prefixKeys(sel.arg, prefix) };
    case "and":
    case "or":
      return { op: sel.op, args: sel.args.map((a) => prefixKeys(a, prefix)) };
    default:
      return { ...sel, key: `${prefix}${sel.key}` };
  }
}

/**
 * Calico's endpoint selector for a service-account match (a rule's `serviceAccounts`, a policy's
 * `serviceAccountSelector`): names as `pcsa.projectcalico.org/name in {…}`, a selector over the
 * service account's labels with its keys prefixed `pcsa.`; both when both are given.
 */
export function serviceAccountSelector(m: { names?: string[]; selector?: string }): Selector {
  const args: Selector[] = [];
  if (m.names !== undefined && m.names.length > 0)
    args.push({ op: "in", key: SA_NAME_LABEL, values: [...m.names] });
  if (m.selector !== undefined)
    args.push(prefixKeys(parseSelector(m.selector), SERVICE_ACCOUNT_PREFIX));
  if (args.length === 0) return { op: "all" };
  return args.length === 1 ? (args[0] as Selector) : { op: "and", args };
}

/** `selector && sa` as text (a policy's or a rule side's selector narrowed to service accounts). */
function withServiceAccounts(selector: string | undefined, sa: Selector): string {
  const base = parseSelector(selector ?? "all()");
  if (sa.op === "all") return formatSelector(base);
  if (base.op === "all") return formatSelector(sa);
  return formatSelector({ op: "and", args: [base, sa] });
}
/** multiport takes at most 15 ports, a range counting two. */
const MULTIPORT_SLOTS = 15;
const SET_HASH_CHARS = 20;
/**
 * ICMPv6 a pod may always send its host, before its egress policy and the dispatch (Felix's
 * ICMPv6Filter: MLD query, report and done, router solicitation, neighbour solicitation and
 * advertisement; not router advertisements).
 */
const ICMPV6_LINK_TYPES = [130, 131, 132, 133, 135, 136];

/** One WorkloadEndpoint as policy sees it (any node's: rule selectors match them all). */
export interface PolicyEndpoint {
  /** "namespace/name". */
  id: string;
  namespace: string;
  labels: Readonly<Record<string, string>>;
  /** Its addresses ("10.0.0.1" or "10.0.0.1/32"). */
  addresses: string[];
  /** The host-side interface when the endpoint is on this node: only these are policed here. */
  iface?: string;
  /** Its profiles in order (Calico's `kns.<ns>`, `ksa.<ns>.<sa>`): their rules follow policy. */
  profiles?: string[];
  /** Its named ports (WorkloadEndpoint `ports` with a name), as rules' named ports match them. */
  ports?: readonly EndpointNamedPort[];
}

/** One named port of an endpoint: the protocol in iptables' spelling ("tcp", "udp", "sctp"). */
export interface EndpointNamedPort {
  name: string;
  protocol: string;
  port: number;
}

/** A Profile's rules: applied after an endpoint's policies, in the endpoint's profile order. */
export interface PolicyProfile {
  name: string;
  ingress: Rule[];
  egress: Rule[];
}

/** A policy in Calico's model, whatever resource it came from. */
export interface Policy {
  /** "ns/name" for namespaced policies, "name" for global ones; names chains and orders ties. */
  id: string;
  /** Set for namespaced policies: they select only endpoints of their namespace. */
  namespace?: string;
  /** Lower first; absent is last. */
  order?: number;
  /** The policy's tier (Calico's "default" when absent). */
  tier?: string;
  /** Calico applies doNotTrack and preDNAT policies to host endpoints only. */
  hostOnly?: boolean;
  /** Host endpoints: also applied to traffic forwarded through the interface. */
  applyOnForward?: boolean;
  /** Host endpoints: applied before DNAT (mangle PREROUTING), ingress only. */
  preDNAT?: boolean;
  /** Host endpoints: applied untracked (raw table), both directions. */
  doNotTrack?: boolean;
  selector: string;
  /** GlobalNetworkPolicy: the namespaces (by their labels) whose endpoints it selects. */
  namespaceSelector?: string;
  types: Direction[];
  ingress: Rule[];
  egress: Rule[];
}

/** A Tier: policies of lower order tiers apply first; at a tier's end its default action. */
export interface PolicyTier {
  name: string;
  order?: number;
  defaultAction: "Deny" | "Pass";
}

/** A GlobalNetworkSet (no namespace) or NetworkSet: rule selectors match it by its labels. */
export interface PolicyNetworkSet {
  namespace?: string;
  labels: Readonly<Record<string, string>>;
  nets: string[];
}

export interface PolicyInput {
  endpoints: PolicyEndpoint[];
  /** The Services' endpoints (EndpointSlices), for rule `services` matches. */
  services?: PolicyServiceSlice[];
  policies: Policy[];
  tiers?: PolicyTier[];
  networkSets?: PolicyNetworkSet[];
  /** Labels of namespaces by name, when known (each has projectcalico.org/name anyway). */
  namespaceLabels?: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /** Profiles with rules; an endpoint listing one is policed in both directions. */
  profiles?: PolicyProfile[];
  /** FelixConfiguration's allow and deny verdicts (absent: Felix's defaults, Accept and Drop). */
  actions?: RuleActions;
  /**
   * Dispatch by set (a measured design, not the default): endpoints whose chains are the same
   * (the same policies and profiles in a direction) share one chain, `ocl-fg-<hash>` /
   * `ocl-tg-<hash>`, and one rule per such group dispatches all of its interfaces by a
   * `hash:net,iface` set of `0.0.0.0/0,<iface>` (`::/0,<iface>`) members, `ocl-e-<hash>`: the
   * kernel's nf_tables validation then walks a group's chains once per path, not once per
   * endpoint, and a new pod of a known group changes a set, not the rules. The same rules reach
   * each interface as with the per-interface dispatch (absent or false).
   */
  dispatchBySet?: boolean;
}

export interface PolicyState {
  /**
   * Every chain to add to the filter table: the dispatch chains always (every known local
   * endpoint, then Felix's "Unknown interface" drop), endpoint and policy chains when some
   * policy or profile with rules applies to a local endpoint.
   */
  chains: ChainSpec[];
  /**
   * Rules for a pod's traffic to its host, before the from-workload dispatch (Felix's
   * ICMPv6Filter in cali-wl-to-host: IPv6 neighbour discovery and MLD, accepted from every
   * workload interface, known or not). Empty for IPv4.
   */
  workloadToHostHead: string[];
  ipsets: IpsetSpec[];
  /** What could not be rendered as written, one line each (rendered fail-closed instead). */
  warnings: string[];
}

// ---- Translation of Kubernetes NetworkPolicy (as Calico's k8s conversion) -------------------

const K8S_ORCHESTRATOR: Selector = { op: "eq", key: LABEL_ORCHESTRATOR, value: "k8s" };
/** Calico's order for Kubernetes NetworkPolicies. */
export const K8S_POLICY_ORDER = 1000;

function labelSelectorAst(ls: LabelSelector | undefined): Selector {
  const args: Selector[] = [];
  for (const [key, value] of Object.entries(ls?.matchLabels ?? {}).sort())
    args.push({ op: "eq", key, value });
  for (const e of ls?.matchExpressions ?? []) {
    const values = e.values ?? [];
    if (e.operator === "In") args.push({ op: "in", key: e.key, values });
    else if (e.operator === "NotIn") args.push({ op: "notIn", key: e.key, values });
    else if (e.operator === "Exists") args.push({ op: "has", key: e.key });
    else args.push({ op: "not", arg: { op: "has", key: e.key } });
  }
  if (args.length === 0) return { op: "all" };
  return args.length === 1 ? (args[0] as Selector) : { op: "and", args };
}

/** A Kubernetes label selector as Calico selector text ({} selects everything: "all()"). */
export function labelSelectorText(ls: LabelSelector | undefined): string {
  return formatSelector(labelSelectorAst(ls));
}

/** A pod selector: the labels and Calico's `projectcalico.org/orchestrator == "k8s"`. */
function podSelectorText(ls: LabelSelector | undefined): string {
  const pods = labelSelectorAst(ls);
  return formatSelector(
    pods.op === "all"
      ? K8S_ORCHESTRATOR
      : { op: "and", args: [...(pods.op === "and" ? pods.args : [pods]), K8S_ORCHESTRATOR] },
  );
}

type K8sPeer = NonNullable<
  NonNullable<K8sNetworkPolicy["spec"]["ingress"]>[number]["from"]
>[number];
type K8sPort = NonNullable<
  NonNullable<K8sNetworkPolicy["spec"]["ingress"]>[number]["ports"]
>[number];
type Entity = NonNullable<Rule["source"]>;

function k8sPeerEntity(p: K8sPeer): Entity {
  if (p.ipBlock !== undefined) {
    const e: Entity = { nets: [p.ipBlock.cidr] };
    if (p.ipBlock.except?.length) e.notNets = [...p.ipBlock.except];
    return e;
  }
  const e: Entity = {};
  if (p.podSelector !== undefined) e.selector = podSelectorText(p.podSelector);
  if (p.namespaceSelector !== undefined)
    e.namespaceSelector = labelSelectorText(p.namespaceSelector);
  return e;
}

/** Ports grouped by protocol (TCP when unset); a protocol with a port-less entry takes any port. */
function k8sPortGroups(
  ports: K8sPort[] | undefined,
): { protocol?: string; ports?: (number | string)[] }[] {
  if (ports === undefined || ports.length === 0) return [{}];
  const byProto = new Map<string, (number | string)[] | undefined>();
  for (const p of ports) {
    const proto = p.protocol ?? "TCP";
    const port =
      p.port === undefined
        ? undefined
        : p.endPort !== undefined && typeof p.port === "number" && p.endPort !== p.port
          ? `${p.port}:${p.endPort}`
          : p.port;
    if (!byProto.has(proto)) byProto.set(proto, []);
    const list = byProto.get(proto);
    if (port === undefined) byProto.set(proto, undefined);
    else list?.push(port);
  }
  return [...byProto].map(([protocol, list]) => (list ? { protocol, ports: list } : { protocol }));
}

function k8sRules(
  rules: { peers?: K8sPeer[]; ports?: K8sPort[] }[],
  side: "source" | "destination",
): Rule[] {
  const out: Rule[] = [];
  for (const r of rules) {
    const peers = r.peers === undefined || r.peers.length === 0 ? [undefined] : r.peers;
    for (const g of k8sPortGroups(r.ports)) {
      for (const peer of peers) {
        const rule: Rule = { action: "Allow" };
        if (g.protocol !== undefined) rule.protocol = g.protocol as Rule["protocol"];
        const peerSide: Entity | undefined = peer ? k8sPeerEntity(peer) : undefined;
        if (peerSide) rule[side] = peerSide;
        // Destination ports: the policed pod's for ingress, the peer's for egress.
        if (g.ports)
          rule.destination = { ...(rule.destination ?? {}), ports: g.ports as Entity["ports"] };
        out.push(rule);
      }
    }
  }
  return out;
}

/** A Kubernetes NetworkPolicy in Calico's model: `<ns>/knp.default.<name>`, order 1000. */
export function fromK8sNetworkPolicy(knp: K8sNetworkPolicy): Policy {
  const ns = knp.metadata.namespace ?? "default";
  const s = knp.spec;
  const types: Direction[] =
    s.policyTypes ?? (s.egress !== undefined ? ["Ingress", "Egress"] : ["Ingress"]);
  return {
    id: `${ns}/knp.default.${knp.metadata.name}`,
    namespace: ns,
    order: K8S_POLICY_ORDER,
    selector: podSelectorText(s.podSelector),
    types: [...types],
    ingress: k8sRules(
      (s.ingress ?? []).map((r) => ({ peers: r.from, ports: r.ports })),
      "source",
    ),
    egress: k8sRules(
      (s.egress ?? []).map((r) => ({ peers: r.to, ports: r.ports })),
      "destination",
    ),
  };
}

interface CalicoSpec {
  order?: number;
  tier?: string;
  doNotTrack?: boolean;
  preDNAT?: boolean;
  applyOnForward?: boolean;
  selector?: string;
  namespaceSelector?: string;
  /** Narrows `selector` to endpoints whose service account's labels match (pcsa.*). */
  serviceAccountSelector?: string;
  types?: Direction[];
  ingress?: Rule[];
  egress?: Rule[];
}

/** The policy's endpoint selector: its selector, narrowed by serviceAccountSelector (Calico). */
function policySelector(s: CalicoSpec): string {
  if (s.serviceAccountSelector === undefined) return s.selector ?? "all()";
  return withServiceAccounts(
    s.selector,
    serviceAccountSelector({ selector: s.serviceAccountSelector }),
  );
}

/** Calico's default types: Ingress, plus Egress when egress rules are present. */
function calicoTypes(spec: CalicoSpec): Direction[] {
  if (spec.types !== undefined) return [...spec.types];
  return spec.egress !== undefined && spec.egress.length > 0 ? ["Ingress", "Egress"] : ["Ingress"];
}

/** A projectcalico.org/v3 NetworkPolicy. */
export function fromNetworkPolicy(np: {
  metadata: { name: string; namespace?: string };
  spec?: CalicoSpec;
}): Policy {
  const ns = np.metadata.namespace ?? "default";
  const s = np.spec ?? {};
  return {
    id: `${ns}/${np.metadata.name}`,
    namespace: ns,
    ...(s.order !== undefined ? { order: s.order } : {}),
    ...(s.tier !== undefined && s.tier !== DEFAULT_TIER ? { tier: s.tier } : {}),
    selector: policySelector(s),
    types: calicoTypes(s),
    ingress: s.ingress ?? [],
    egress: s.egress ?? [],
  };
}

/** A projectcalico.org/v3 GlobalNetworkPolicy. */
export function fromGlobalNetworkPolicy(gnp: {
  metadata: { name: string };
  spec?: CalicoSpec;
}): Policy {
  const s = gnp.spec ?? {};
  return {
    id: gnp.metadata.name,
    ...(s.order !== undefined ? { order: s.order } : {}),
    ...(s.tier !== undefined && s.tier !== DEFAULT_TIER ? { tier: s.tier } : {}),
    ...(s.doNotTrack === true || s.preDNAT === true ? { hostOnly: true } : {}),
    ...(s.applyOnForward === true ? { applyOnForward: true } : {}),
    ...(s.preDNAT === true ? { preDNAT: true } : {}),
    ...(s.doNotTrack === true ? { doNotTrack: true } : {}),
    selector: policySelector(s),
    ...(s.namespaceSelector !== undefined ? { namespaceSelector: s.namespaceSelector } : {}),
    types: calicoTypes(s),
    ingress: s.ingress ?? [],
    egress: s.egress ?? [],
  };
}

// ---- Selection -------------------------------------------------------------------------------

class Selectors {
  private readonly parsed = new Map<string, Selector>();
  constructor(private readonly nsLabels: PolicyInput["namespaceLabels"]) {}

  get(text: string): Selector {
    let s = this.parsed.get(text);
    if (s === undefined) {
      s = parseSelector(text);
      this.parsed.set(text, s);
    }
    return s;
  }

  private readonly textOf = new WeakMap<PolicyEndpoint, string>();

  /** The endpoint's namespace and labels as text (its selection key), once per render. */
  labelsText(ep: PolicyEndpoint): string {
    let t = this.textOf.get(ep);
    if (t === undefined) {
      t = `${ep.namespace}\n${JSON.stringify(ep.labels)}`;
      this.textOf.set(ep, t);
    }
    return t;
  }

  /** Per endpoint, built once per render (every policy and rule selector matches them all). */
  private readonly labelsOf = new WeakMap<PolicyEndpoint, Record<string, string>>();

  /** The endpoint's labels as selectors see them (its namespace label always present). */
  endpointLabels(ep: PolicyEndpoint): Record<string, string> {
    let labels = this.labelsOf.get(ep);
    if (labels === undefined) {
      labels = this.buildEndpointLabels(ep);
      this.labelsOf.set(ep, labels);
    }
    return labels;
  }

  private buildEndpointLabels(ep: PolicyEndpoint): Record<string, string> {
    const sa = ep.labels[LABEL_SERVICE_ACCOUNT];
    // The service account's name as its ksa Profile applies it, from the endpoint's own label
    // when no Profile (kube-controllers) has given it.
    const own: Record<string, string> =
      sa !== undefined && !(SA_NAME_LABEL in ep.labels) ? { [SA_NAME_LABEL]: sa } : {};
    return { ...own, ...ep.labels, [LABEL_NAMESPACE]: ep.namespace };
  }

  namespaceLabels(ns: string): Record<string, string> {
    return {
      ...(this.nsLabels?.[ns] ?? {}),
      "projectcalico.org/name": ns,
      "kubernetes.io/metadata.name": ns,
    };
  }
}

/** Whether policy applies to endpoint (its namespace, selector and namespaceSelector). */
export function policySelects(p: Policy, ep: PolicyEndpoint, sels = new Selectors(undefined)) {
  if (p.namespace !== undefined && p.namespace !== ep.namespace) return false;
  if (!matchSelector(sels.get(p.selector), sels.endpointLabels(ep))) return false;
  if (p.namespaceSelector !== undefined)
    return matchSelector(sels.get(p.namespaceSelector), sels.namespaceLabels(ep.namespace));
  return true;
}

/** Which endpoints a rule's selector picks: its selector, in a namespace or selected ones. */
interface SelectorKey {
  selector: string;
  namespace?: string;
  namespaceSelector?: string;
}

/**
 * The positive selector of one side of a rule, as Calico scopes it: a namespaceSelector picks
 * the namespaces; else a namespaced policy's selector (or notSelector) stays in its namespace.
 */
function selectorKey(e: Entity, p: Policy, sels: Selectors): SelectorKey | undefined {
  const canon = (t: string) => formatSelector(sels.get(t));
  const selector = canon(e.selector ?? "all()");
  if (e.namespaceSelector !== undefined)
    return { selector, namespaceSelector: canon(e.namespaceSelector) };
  if (p.namespace !== undefined && (e.selector !== undefined || e.notSelector !== undefined))
    return { selector, namespace: p.namespace };
  if (e.selector !== undefined) return { selector };
  return undefined;
}

function keyMatches(k: SelectorKey, ep: PolicyEndpoint, sels: Selectors): boolean {
  if (k.namespace !== undefined && ep.namespace !== k.namespace) return false;
  if (
    k.namespaceSelector !== undefined &&
    !matchSelector(sels.get(k.namespaceSelector), sels.namespaceLabels(ep.namespace))
  )
    return false;
  return matchSelector(sels.get(k.selector), sels.endpointLabels(ep));
}

/**
 * Whether a rule selector picks a network set, as Calico scopes them: a namespaced policy's
 * selector sees its namespace's NetworkSets; a namespaceSelector sees the NetworkSets of the
 * namespaces it selects, and global() the GlobalNetworkSets; a global policy's plain selector
 * sees every set.
 */
function setMatches(k: SelectorKey, set: PolicyNetworkSet, sels: Selectors): boolean {
  if (k.namespace !== undefined && set.namespace !== k.namespace) return false;
  if (k.namespaceSelector !== undefined) {
    const nsSel = sels.get(k.namespaceSelector);
    if (nsSel.op === "global") {
      if (set.namespace !== undefined) return false;
    } else if (
      set.namespace === undefined ||
      !matchSelector(nsSel, sels.namespaceLabels(set.namespace))
    )
      return false;
  }
  const labels =
    set.namespace === undefined
      ? { ...set.labels }
      : { ...set.labels, [LABEL_NAMESPACE]: set.namespace };
  return matchSelector(sels.get(k.selector), labels);
}

// ---- Rendering -------------------------------------------------------------------------------

/**
 * A memo of a pure function of text (hashes, canonical nets), kept across renders so that a
 * pass re-renders at the pace of what changed; bounded: emptied when full.
 */
class TextMemo<V> {
  private readonly m = new Map<string, V>();
  constructor(private readonly max: number) {}
  get(key: string, f: (key: string) => V): V {
    let v = this.m.get(key);
    if (v === undefined) {
      v = f(key);
      if (this.m.size >= this.max) this.m.clear();
      this.m.set(key, v);
    }
    return v;
  }
}

const HASHES = new TextMemo<string>(100_000);
const shortHash = (text: string) =>
  HASHES.get(text, (t) =>
    createHash("sha256")
      .update(t)
      .digest("base64")
      .replace(/[^A-Za-z0-9]/g, "")
      .slice(0, SET_HASH_CHARS),
  );

/**
 * ipset name of a rule selector or net list: `ocl-s-<hash>` / `ocl6-n-<hash>`; `p` named ports,
 * `e` a dispatch group's interfaces (dispatchBySet).
 */
export function policyIpsetName(kind: "s" | "n" | "p" | "e", family: Family, key: string): string {
  return `${family === 4 ? "ocl" : "ocl6"}-${kind}-${shortHash(key)}`;
}

/** Chain of one policy and direction: `ocl-pi-<hash>` (ingress), `ocl-po-<hash>` (egress). */
export function policyChainName(id: string, dir: Direction): string {
  return chainName(`ocl-${dir === "Ingress" ? "pi" : "po"}-${shortHash(id).slice(0, 16)}`);
}

/** Chain of endpoints with the same chain key (dispatchBySet): `ocl-tg-<hash>`, `ocl-fg-<hash>`. */
export function endpointGroupChainName(chainKey: string, dir: Direction): string {
  return chainName(`ocl-${dir === "Ingress" ? "tg" : "fg"}-${shortHash(chainKey).slice(0, 16)}`);
}

/** Chain of one local endpoint: `ocl-tw-<iface>` (to it: ingress), `ocl-fw-<iface>` (egress). */
export function endpointChainName(iface: string, dir: Direction): string {
  return chainName(`ocl-${dir === "Ingress" ? "tw" : "fw"}-${iface}`);
}

/** Protocol names as iptables-save prints them (Debian netbase names for the others). */
const PROTOCOL_NAMES: Record<string, string> = {
  TCP: "tcp",
  UDP: "udp",
  ICMP: "icmp",
  ICMPV6: "ipv6-icmp",
  SCTP: "sctp",
  UDPLITE: "udplite",
  "1": "icmp",
  "2": "igmp",
  "4": "ipencap",
  "6": "tcp",
  "17": "udp",
  "41": "ipv6",
  "47": "gre",
  "50": "esp",
  "51": "ah",
  "58": "ipv6-icmp",
  "89": "ospf",
  "103": "pim",
  "112": "vrrp",
  "132": "sctp",
  "136": "udplite",
};
const PORT_PROTOCOLS = new Set(["tcp", "udp", "sctp", "udplite"]);

function protocolName(p: string | number): string {
  const key = String(p).toUpperCase();
  return PROTOCOL_NAMES[key] ?? String(p);
}

const NETS = new TextMemo<{ family: Family; cidr: string; len: number }>(200_000);

/** CIDR text as iptables-save prints it: host bits masked, a bare address as /32 (/128). */
function canonicalNet(text: string): { family: Family; cidr: string; len: number } {
  return NETS.get(text, parseNet);
}

/**
 * A network set's nets of one family, canonical, sorted and unique: built once per nets list
 * (the node daemon and the benchmark keep a stored set's list until it changes).
 */
const SET_MEMBERS = new WeakMap<readonly string[], Partial<Record<Family, string[]>>>();

function setMembers(nets: readonly string[], family: Family): string[] {
  let byFamily = SET_MEMBERS.get(nets);
  if (byFamily === undefined) {
    byFamily = {};
    SET_MEMBERS.set(nets, byFamily);
  }
  let members = byFamily[family];
  if (members === undefined) {
    // Parsed once per list (not through the memo: a network set's thousands of nets would
    // crowd it); IPv4 without BigInt.
    const out: string[] = [];
    for (const net of nets) {
      const n = parseNet(net);
      if (n.family === family) out.push(n.cidr);
    }
    members = [...new Set(out)].sort();
    byFamily[family] = members;
  }
  return members;
}

const OCTET = "(0|[1-9]\\d{0,2})";
/** An IPv4 address or CIDR in its plain spelling (others take parseCidr's path). */
const V4_NET = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}(?:/(0|[1-9]\\d?))?$`);

/** A net or address as iptables-save prints it (host bits masked), its family and length. */
export function parseNet(text: string): { family: Family; cidr: string; len: number } {
  const m = V4_NET.exec(text);
  if (m !== null) {
    const o = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])];
    const len = m[5] === undefined ? 32 : Number(m[5]);
    if (len <= 32 && o.every((x) => x <= 255)) {
      const value =
        (o[0] as number) * 2 ** 24 +
        (o[1] as number) * 2 ** 16 +
        (o[2] as number) * 2 ** 8 +
        (o[3] as number);
      const base = len === 0 ? 0 : value - (value % 2 ** (32 - len));
      const a = [base >>> 24, (base >>> 16) & 255, (base >>> 8) & 255, base & 255];
      return { family: 4, cidr: `${a.join(".")}/${len}`, len };
    }
  }
  const withLen = text.includes("/") ? text : `${text}/${text.includes(":") ? 128 : 32}`;
  const c = parseCidr(withLen, false);
  return {
    family: c.family,
    cidr: `${formatAddress(c.family, c.base)}/${c.prefixLen}`,
    len: c.prefixLen,
  };
}

// ---- What renders keep (the calculation graph's memory) ----------------------------------------

/** Policy chain entries past this many empty the memo. */
const POLICY_CHAIN_MEMO_MAX = 20_000;
/** A selector set no render asked for in this many renders is forgotten. */
const SELECTOR_SET_IDLE_RENDERS = 8;

/** Ids of nets lists (a network set's `nets`, kept by its owner until it changes). */
const NETS_IDS = new WeakMap<readonly string[], number>();
let nextNetsId = 0;
const netsId = (nets: readonly string[]) => {
  let id = NETS_IDS.get(nets);
  if (id === undefined) {
    id = nextNetsId++;
    NETS_IDS.set(nets, id);
  }
  return id;
};

/** One rule selector's ipset, kept up to date endpoint by endpoint. */
interface SelectorSetState {
  k: SelectorKey;
  /** Endpoint id -> its addresses of the family (those it selects only). */
  members: Map<string, string[]>;
  /** The members of the network sets it selects. */
  sets: string[][];
  /** The set as last built (undefined: members changed since). */
  spec?: IpsetSpec;
  lastUsed: number;
}

/**
 * Felix's label index, for rule selectors' ipsets: which endpoints each selector picks, updated
 * for the endpoints whose namespace, labels or addresses changed since the last render (a new
 * pod, a label change: that pod is matched against every selector, nothing else is). Anything
 * else a selector looks at (the namespaces' labels, the network sets) starts it over.
 */
export class SelectorIndex {
  /** Whether the last sync could diff the endpoints (ids unique). */
  usable = false;
  private context: string | undefined;
  /** Per endpoint id: its labels' text and addresses as last seen, and the render that saw it. */
  private readonly endpoints = new Map<
    string,
    { labels: string; addresses: readonly string[]; addrs: string[]; seen: number }
  >();
  private readonly keys = new Map<string, SelectorSetState>();
  private renders = 0;

  constructor(private readonly family: Family) {}

  private addrsOf(ep: PolicyEndpoint): string[] {
    const out: string[] = [];
    for (const a of ep.addresses) {
      const n = canonicalNet(a.split("/")[0] as string);
      if (n.family === this.family) out.push(n.cidr);
    }
    return out;
  }

  /** Brought to input's endpoints, before a render asks for sets. */
  sync(input: PolicyInput, sels: Selectors): void {
    this.renders++;
    const context = JSON.stringify([
      input.namespaceLabels ?? {},
      (input.networkSets ?? []).map((s) => [s.namespace ?? null, s.labels, netsId(s.nets)]),
    ]);
    if (context !== this.context) {
      this.keys.clear();
      this.context = context;
    }
    const seen = this.renders;
    const changed: PolicyEndpoint[] = [];
    for (const ep of input.endpoints) {
      const had = this.endpoints.get(ep.id);
      if (had?.seen === seen) {
        // Two endpoints of one id: not diffable by id; computed whole this render.
        this.usable = false;
        this.endpoints.clear();
        this.keys.clear();
        return;
      }
      const labels = sels.labelsText(ep);
      if (had !== undefined && had.labels === labels && sameStrings(had.addresses, ep.addresses)) {
        had.seen = seen;
        continue;
      }
      this.endpoints.set(ep.id, {
        labels,
        addresses: [...ep.addresses],
        addrs: this.addrsOf(ep),
        seen,
      });
      changed.push(ep);
    }
    const removed: string[] = [];
    if (this.endpoints.size > input.endpoints.length)
      for (const [id, e] of this.endpoints)
        if (e.seen !== seen) {
          removed.push(id);
          this.endpoints.delete(id);
        }
    for (const [name, st] of this.keys) {
      if (st.lastUsed < this.renders - SELECTOR_SET_IDLE_RENDERS) {
        this.keys.delete(name);
        continue;
      }
      for (const id of removed) if (st.members.delete(id)) st.spec = undefined;
      for (const ep of changed) {
        if (keyMatches(st.k, ep, sels)) {
          st.members.set(ep.id, this.endpoints.get(ep.id)?.addrs ?? []);
          st.spec = undefined;
        } else if (st.members.delete(ep.id)) st.spec = undefined;
      }
    }
    this.usable = true;
  }

  /** The ipset of selector key k (named name), from what is kept or built now. */
  spec(name: string, k: SelectorKey, r: Renderer): IpsetSpec {
    let st = this.keys.get(name);
    if (st === undefined) {
      const members = new Map<string, string[]>();
      for (const ep of r.input.endpoints)
        if (keyMatches(k, ep, r.sels)) members.set(ep.id, this.endpoints.get(ep.id)?.addrs ?? []);
      const sets: string[][] = [];
      for (const set of r.input.networkSets ?? [])
        if (setMatches(k, set, r.sels)) sets.push(setMembers(set.nets, this.family));
      st = { k, members, sets, lastUsed: this.renders };
      this.keys.set(name, st);
    }
    st.lastUsed = this.renders;
    if (st.spec === undefined) {
      const family = this.family === 4 ? "inet" : "inet6";
      const own: string[] = [];
      for (const addrs of st.members.values()) own.push(...addrs);
      // One network set alone: its members as built once (sorted, unique), shared.
      const members =
        own.length === 0 && st.sets.length === 1
          ? (st.sets[0] as string[])
          : [...new Set([...own, ...st.sets.flat()])].sort();
      st.spec = { name, type: "hash:net", family, members };
    }
    return st.spec;
  }
}

/**
 * What renderPolicy keeps between renders of one family: policy chains by content, the rule
 * selectors' sets, and which policies select which labels (SelectionMemo).
 */
export class FamilyCache {
  /** Policy chains by the policy's text, then by direction and deny target. */
  readonly chains = new Map<string, Map<string, ChainEntry>>();
  /**
   * The local endpoints' chains and dispatch rules by interface, as the last render made them
   * (updated in place: a render stamps the ones it has and drops the others).
   */
  readonly endpoints = new Map<string, EndpointEntry>();
  /** The local endpoints' interfaces, sorted, as the last render had them. */
  readonly order = new LocalOrder();
  /** The dispatch trees as the last render built them, per root. */
  readonly dispatch = new Map<string, DispatchMemo>();
  /** Policy chain names by policy id (policyChainName's, kept). */
  readonly policyChainNames = new Map<string, Record<Direction, string>>();
  /** Counts renders (EndpointEntry.stamp). */
  stamp = 0;
  readonly index: SelectorIndex;
  constructor(family: Family) {
    this.index = new SelectorIndex(family);
  }
}

/** One local endpoint's part of a render: valid while its selection memo, labels and profiles hold. */
interface EndpointEntry {
  memo: SelectionMemo;
  /** The verdicts it was rendered with (allow and deny targets). */
  verdicts: string;
  /** Its namespace and labels (Selectors.labelsText). */
  labelKey: string;
  /** The names of its profiles with rules. */
  profiles: string[];
  /** The policies selecting it (indexes into the render's policies; the memo's list). */
  picked: number[];
  chains: ChainSpec[];
  dispatch: Partial<Record<Direction, DispatchEntry>>;
  /** The render that last had it. */
  stamp: number;
}

/**
 * The local endpoints sorted by interface, kept across renders: a render sorts the interfaces
 * that are new since the last one and merges them in (a new pod: one, not a thousand).
 */
class LocalOrder {
  private ifaces: string[] = [];
  private readonly slots = new Map<string, { ep: PolicyEndpoint; stamp: number }>();
  private stamp = 0;

  /** endpoints with an interface, sorted by it; undefined when two share one (not kept). */
  sorted(endpoints: readonly PolicyEndpoint[]): PolicyEndpoint[] | undefined {
    const stamp = ++this.stamp;
    const fresh: string[] = [];
    let n = 0;
    for (const ep of endpoints) {
      const iface = ep.iface;
      if (iface === undefined) continue;
      const slot = this.slots.get(iface);
      if (slot === undefined) {
        this.slots.set(iface, { ep, stamp });
        fresh.push(iface);
      } else if (slot.stamp === stamp) {
        // Two endpoints of one interface: sorted whole by the caller, nothing kept.
        this.slots.clear();
        this.ifaces = [];
        return undefined;
      } else {
        slot.ep = ep;
        slot.stamp = stamp;
      }
      n++;
    }
    if (n - fresh.length !== this.ifaces.length)
      this.ifaces = this.ifaces.filter((iface) => {
        if (this.slots.get(iface)?.stamp === stamp) return true;
        this.slots.delete(iface);
        return false;
      });
    if (fresh.length > 0) this.ifaces = mergeSorted(this.ifaces, fresh.sort());
    const out: PolicyEndpoint[] = new Array(n);
    for (let i = 0; i < n; i++)
      out[i] = (this.slots.get(this.ifaces[i] as string) as { ep: PolicyEndpoint }).ep;
    return out;
  }
}

/** Two sorted lists of distinct strings as one sorted list. */
function mergeSorted(a: readonly string[], b: readonly string[]): string[] {
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length)
    out.push((a[i] as string) < (b[j] as string) ? (a[i++] as string) : (b[j++] as string));
  while (i < a.length) out.push(a[i++] as string);
  while (j < b.length) out.push(b[j++] as string);
  return out;
}

/** renderPolicy's memory across renders: per family, and the selection memo. */
export class PolicyRenderCache {
  readonly families: Record<Family, FamilyCache> = { 4: new FamilyCache(4), 6: new FamilyCache(6) };
  selection: SelectionMemo | undefined;
}

/** One ipset a policy chain's rules match, as asked for while rendering it (replayed on reuse). */
type IpsetNeed = (r: Renderer) => void;

/** A policy chain as rendered once: its rules, its warnings and the ipsets it matches. */
interface ChainEntry {
  rules: string[];
  warnings: string[];
  needs: IpsetNeed[];
}

export class Renderer {
  readonly sels: Selectors;
  readonly ipsets = new Map<string, IpsetSpec>();
  readonly warnings: string[] = [];
  /** The ipsets asked for while a policy chain renders (for its cache entry). */
  private needs: IpsetNeed[] | undefined;
  /** Each policy as text, once per render (both directions' chains are looked up by it). */
  private readonly policyText = new Map<Policy, string>();

  /**
   * `cache`: what earlier renders found (renderPolicy's); absent: everything computed from the
   * input alone (host_endpoint.ts's renders).
   */
  constructor(
    readonly input: PolicyInput,
    readonly family: Family,
    private readonly cache?: FamilyCache,
  ) {
    this.sels = new Selectors(input.namespaceLabels);
  }

  /** A set of nets (a rule's `nets` / `notNets`): named by its members. */
  private netsSet(members: string[]): string {
    const name = policyIpsetName("n", this.family, members.sort().join(","));
    this.needs?.push((r) => r.netsSet(members));
    return this.ipset(name, members);
  }

  private ipset(name: string, members: string[]): string {
    if (!this.ipsets.has(name)) {
      this.ipsets.set(name, {
        name,
        type: "hash:net",
        family: this.family === 4 ? "inet" : "inet6",
        members: [...new Set(members)].sort(),
      });
    }
    return name;
  }

  /** A rule side's `services` match: the Service's endpoints as an ipset (service_match.ts). */
  private serviceSet(
    m: { name: string; namespace?: string },
    p: Policy,
    side: "source" | "destination",
  ): string {
    this.needs?.push((r) => r.serviceSet(m, p, side));
    const ns = m.namespace ?? p.namespace ?? "default";
    const set = serviceIpset(this.input.services ?? [], this.family, ns, m.name, side);
    if (!this.ipsets.has(set.name)) this.ipsets.set(set.name, set);
    return serviceSetMatch(set, side);
  }

  private selectorSet(k: SelectorKey): string {
    return this.selectorSetNamed(policyIpsetName("s", this.family, JSON.stringify(k)), k);
  }

  private selectorSetNamed(name: string, k: SelectorKey): string {
    this.needs?.push((r) => r.selectorSetNamed(name, k));
    if (this.ipsets.has(name)) return name;
    if (this.cache?.index.usable) {
      this.ipsets.set(name, this.cache.index.spec(name, k, this));
      return name;
    }
    const members: string[] = [];
    for (const ep of this.input.endpoints) {
      if (!keyMatches(k, ep, this.sels)) continue;
      for (const a of ep.addresses) {
        const n = canonicalNet(a.split("/")[0] as string);
        if (n.family === this.family) members.push(n.cidr);
      }
    }
    const sets: string[][] = [];
    for (const set of this.input.networkSets ?? [])
      if (setMatches(k, set, this.sels)) sets.push(setMembers(set.nets, this.family));
    // One network set alone: its members as built once (sorted, unique), shared.
    if (members.length === 0 && sets.length === 1) {
      this.ipsets.set(name, {
        name,
        type: "hash:net",
        family: this.family === 4 ? "inet" : "inet6",
        members: sets[0] as string[],
      });
      return name;
    }
    for (const m of sets) members.push(...m);
    return this.ipset(name, members);
  }

  /**
   * A named port as Felix renders it: a `hash:ip,port` set (`ocl-p-<hash>`) of address,proto:port
   * for every endpoint the side's positive selector picks (every endpoint without one) that has a
   * port of that name and of the rule's protocol (any protocol when the rule names none).
   */
  private namedPortSet(
    k: SelectorKey | undefined,
    port: string,
    proto: string | undefined,
  ): string {
    this.needs?.push((r) => r.namedPortSet(k, port, proto));
    const name = policyIpsetName("p", this.family, JSON.stringify({ k, port, proto }));
    if (this.ipsets.has(name)) return name;
    const members = new Set<string>();
    for (const ep of this.input.endpoints) {
      if (ep.ports === undefined || ep.ports.length === 0) continue;
      if (k !== undefined && !keyMatches(k, ep, this.sels)) continue;
      for (const np of ep.ports) {
        if (np.name !== port || (proto !== undefined && np.protocol !== proto)) continue;
        for (const a of ep.addresses) {
          const n = canonicalNet(a.split("/")[0] as string);
          if (n.family === this.family)
            members.add(`${n.cidr.split("/")[0]},${np.protocol}:${np.port}`);
        }
      }
    }
    this.ipsets.set(name, {
      name,
      type: "hash:ip,port",
      family: this.family === 4 ? "inet" : "inet6",
      members: [...members].sort(),
    });
    return name;
  }

  /**
   * The match texts of one rule in this family (several when ports need more than one
   * multiport match), or undefined when the rule cannot match here.
   */
  ruleMatches(rule: Rule, p: Policy, where: string): string[] | undefined {
    const fam = this.family;
    if (rule.ipVersion !== undefined && rule.ipVersion !== fam) return undefined;
    const proto = rule.protocol === undefined ? undefined : protocolName(rule.protocol);
    if ((proto === "icmp" && fam === 6) || (proto === "ipv6-icmp" && fam === 4)) return undefined;
    const notProto = rule.notProtocol === undefined ? undefined : protocolName(rule.notProtocol);
    if (proto !== undefined && proto === notProto) return undefined;

    const addr: string[] = [];
    const sets: string[] = [];
    /**
     * One side's ports: positive alternatives (multiport chunks, named-port set matches: any may
     * match) and negative matches (all must hold).
     */
    let portSides: {
      flag: "--sports" | "--dports";
      chunks: string[];
      named: string[];
      not: string[];
    }[] = [];
    /** Whether numeric ports are matched (they need a port protocol; named ports do not). */
    let numeric = false;
    /** Negated named ports' set matches (all must hold). */
    let namedNot: string[] = [];
    /** Matches Ocelot cannot resolve yet (HTTP). */
    const unresolved: string[] = [];
    for (const [side, dir, flag, ports] of [
      ["source", "src", "-s", "--sports"],
      ["destination", "dst", "-d", "--dports"],
    ] as const) {
      const e = rule[side];
      if (e === undefined) continue;
      if (e.nets !== undefined && e.nets.length > 0) {
        const nets = e.nets.map(canonicalNet).filter((n) => n.family === fam);
        if (nets.length === 0) return undefined;
        if (!nets.some((n) => n.len === 0)) {
          if (nets.length === 1) addr.push(`${flag} ${nets[0]?.cidr}`);
          else {
            const name = this.netsSet(nets.map((n) => n.cidr));
            sets.push(`-m set --match-set ${name} ${dir}`);
          }
        }
      }
      if (e.notNets !== undefined) {
        const nets = e.notNets.map(canonicalNet).filter((n) => n.family === fam);
        if (nets.some((n) => n.len === 0)) return undefined;
        if (nets.length > 0) {
          const name = this.netsSet(nets.map((n) => n.cidr));
          sets.push(`-m set ! --match-set ${name} ${dir}`);
        }
      }
      const key = selectorKey(
        e.serviceAccounts === undefined
          ? e
          : {
              ...e,
              selector: withServiceAccounts(e.selector, serviceAccountSelector(e.serviceAccounts)),
            },
        p,
        this.sels,
      );
      const pos = (e.ports ?? []).map(String);
      const neg = (e.notPorts ?? []).map(String);
      const isNum = (x: string) => /^\d+(:\d+)?$/.test(x);
      // Named ports (Felix's rule scanner): each a set filtered by the side's positive selector,
      // which the set then stands for unless numeric ports need the selector's own match.
      const namedProto = proto !== undefined && PORT_PROTOCOLS.has(proto) ? proto : undefined;
      const namedPos = pos.filter((x) => !isNum(x));
      const namedNeg = neg.filter((x) => !isNum(x));
      const namedSets = namedPos.map(
        (n) => `-m set --match-set ${this.namedPortSet(key, n, namedProto)} ${dir},${dir}`,
      );
      for (const n of namedNeg)
        namedNot.push(
          `-m set ! --match-set ${this.namedPortSet(key, n, namedProto)} ${dir},${dir}`,
        );
      if (key !== undefined && (namedPos.length === 0 || namedPos.length < pos.length))
        sets.push(`-m set --match-set ${this.selectorSet(key)} ${dir}`);
      if (e.notSelector !== undefined) {
        const name = this.selectorSet({ selector: formatSelector(this.sels.get(e.notSelector)) });
        sets.push(`-m set ! --match-set ${name} ${dir}`);
      }
      if (e.services !== undefined) sets.push(this.serviceSet(e.services, p, side));
      if (pos.some(isNum) || neg.some(isNum)) numeric = true;
      if (pos.length > 0 || neg.length > 0)
        portSides.push({
          flag: ports,
          chunks: multiportChunks(pos),
          named: namedSets,
          not: multiportChunks(neg),
        });
    }
    if (rule.http !== undefined) unresolved.push("http");
    if (unresolved.length > 0) {
      // HTTP matches are not resolved: fail closed (a Deny denies any port, others match nothing).
      const what = `${where}: ${unresolved.map((n) => `${n} match`).join(", ")} not supported yet`;
      if (rule.action !== "Deny") {
        this.warnings.push(`${what}; rule not rendered`);
        return undefined;
      }
      this.warnings.push(`${what}; rule denies every port`);
      portSides = [];
      namedNot = [];
    }
    sets.push(...namedNot);
    if (numeric && (proto === undefined || !PORT_PROTOCOLS.has(proto))) {
      this.warnings.push(
        `${where}: ports need protocol TCP, UDP, SCTP or UDPLite; rule not rendered`,
      );
      return undefined;
    }

    let head = addr.join(" ");
    if (proto !== undefined) head += ` -p ${proto}`;
    else if (notProto !== undefined) head += ` ! -p ${notProto}`;
    const tail: string[] = [];
    const icmpMod = fam === 4 ? "-m icmp --icmp-type" : "-m icmp6 --icmpv6-type";
    const icmpText = (i: { type?: number; code?: number }) =>
      i.code !== undefined ? `${i.type}/${i.code}` : `${i.type}`;
    if (rule.icmp?.type !== undefined) tail.push(`${icmpMod} ${icmpText(rule.icmp)}`);
    if (rule.notICMP?.type !== undefined) {
      const [m, flag] = icmpMod.split(" --");
      tail.push(`${m} ! --${flag} ${icmpText(rule.notICMP)}`);
    }

    // Positive port chunks multiply (any chunk may match); negative ones all apply.
    let variants = [[...sets]];
    for (const ps of portSides) {
      const negs = ps.not.map((c) => `-m multiport ! ${ps.flag} ${c}`);
      const alts = [...ps.chunks.map((c) => `-m multiport ${ps.flag} ${c}`), ...ps.named];
      const poss = alts.length > 0 ? alts : [undefined];
      variants = variants.flatMap((v) =>
        poss.map((c) => [...v, ...(c !== undefined ? [c] : []), ...negs]),
      );
    }
    return variants.map((v) => [head.trim(), ...v, ...tail].filter((x) => x !== "").join(" "));
  }

  /**
   * The rules of one policy chain; `deny` is the Deny rules' target (the filter table's
   * iptablesFilterDenyAction; the mangle and raw tables have no REJECT: DROP there).
   */
  policyChain(p: Policy, dir: Direction, deny = "-j DROP"): string[] {
    if (this.cache === undefined) return this.renderPolicyChain(p, dir, deny);
    // Its rules depend on the policy alone (ipset names are hashes of what they hold): a
    // policy unchanged since an earlier render reuses that render's rules (the same array, so
    // the applier's plan sees it unchanged at once) and asks again for the same ipsets.
    let text = this.policyText.get(p);
    if (text === undefined) {
      text = JSON.stringify(p);
      this.policyText.set(p, text);
    }
    const variant = `${dir} ${deny}`;
    const hit = this.cache.chains.get(text)?.get(variant);
    if (hit !== undefined) {
      for (const need of hit.needs) need(this);
      this.warnings.push(...hit.warnings);
      return hit.rules;
    }
    const before = this.warnings.length;
    const outer = this.needs;
    const needs: IpsetNeed[] = [];
    this.needs = needs;
    let rules: string[];
    try {
      rules = this.renderPolicyChain(p, dir, deny);
    } finally {
      this.needs = outer;
    }
    const chains = this.cache.chains;
    if (chains.size >= POLICY_CHAIN_MEMO_MAX) chains.clear();
    let variants = chains.get(text);
    if (variants === undefined) {
      variants = new Map();
      chains.set(text, variants);
    }
    variants.set(variant, { rules, warnings: this.warnings.slice(before), needs });
    return rules;
  }

  private renderPolicyChain(p: Policy, dir: Direction, deny: string): string[] {
    const out: string[] = [];
    const rules = dir === "Ingress" ? p.ingress : p.egress;
    for (const [i, rule] of rules.entries()) {
      const what = `${dir.toLowerCase()} rule ${i + 1}`;
      const where = `policy "${p.id}" ${what}`;
      let matches: string[] | undefined;
      try {
        matches = this.ruleMatches(rule, p, where);
      } catch (err) {
        // A selector that does not parse (written around `ocelot apply`'s validation): the
        // rule fails closed. An Allow, Pass or Log is left out; a Deny denies everything.
        const why = `${where}: ${(err as Error).message}`;
        if (rule.action === "Deny") {
          this.warnings.push(`${why}; rule denies all traffic`);
          out.push(deny);
        } else this.warnings.push(`${why}; rule not rendered`);
        continue;
      }
      if (matches === undefined) continue;
      const withM = (m: string, action: string) => (m === "" ? action : `${m} ${action}`);
      switch (rule.action) {
        case "Allow":
          for (const m of matches) out.push(withM(m, `-j MARK --set-xmark ${ACCEPT}`));
          out.push(`-m mark --mark ${ACCEPT} -j RETURN`);
          break;
        case "Pass":
          for (const m of matches) out.push(withM(m, `-j MARK --set-xmark ${PASS}`));
          out.push(`-m mark --mark ${PASS} -j RETURN`);
          break;
        case "Deny":
          for (const m of matches) out.push(withM(m, deny));
          break;
        case "Log":
          for (const m of matches) out.push(withM(m, `-j LOG --log-prefix ${LOG_PREFIX}`));
          break;
      }
    }
    return out;
  }
}

/** Port list -> multiport argument texts of at most 15 slots each ("80,90:100"). */
function multiportChunks(ports: string[]): string[] {
  const chunks: string[] = [];
  let cur: string[] = [];
  let slots = 0;
  for (const p of ports.filter((x) => /^\d+(:\d+)?$/.test(x))) {
    const [a, b] = p.split(":");
    const text = b === undefined || a === b ? (a as string) : p;
    const need = text.includes(":") ? 2 : 1;
    if (slots + need > MULTIPORT_SLOTS) {
      chunks.push(cur.join(","));
      cur = [];
      slots = 0;
    }
    cur.push(text);
    slots += need;
  }
  if (cur.length > 0) chunks.push(cur.join(","));
  return chunks;
}

/** Policies in the order they apply: `order` ascending (absent last), then id. */
export function sortPolicies(policies: readonly Policy[]): Policy[] {
  return [...policies].sort((a, b) => {
    const oa = a.order ?? Number.POSITIVE_INFINITY;
    const ob = b.order ?? Number.POSITIVE_INFINITY;
    if (oa !== ob) return oa < ob ? -1 : 1;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  });
}

/** Felix's endpoint chain types: what a chain starts with and how it ends. */
export type EndpointChainType = "normal" | "forward" | "untracked" | "preDNAT";

export interface EndpointChainSpec {
  type: EndpointChainType;
  /** The policies that select the endpoint in this direction (any order). */
  policies: Policy[];
  /** The endpoint's profiles with rules, in its order (normal chains only). */
  profiles?: PolicyProfile[];
  /** A failsafe chain jumped to first (host endpoints). */
  failsafe?: string;
  /** Drop what no policy or profile accepted (normal chains: host endpoints, profiles). */
  dropAtEnd?: boolean;
  /**
   * The verdict of an established connection (the filter table's iptablesFilterAllowAction, the
   * mangle table's iptablesMangleAllowAction for preDNAT chains); absent: Accept.
   */
  allow?: AllowAction;
  /** The target that drops (the filter table's iptablesFilterDenyAction); absent: `-j DROP`. */
  deny?: string;
}

/** The tier of a policy: its Tier resource, or Calico's default tier; unknown ones come last. */
export function tierResolver(list: readonly PolicyTier[] | undefined): (p: Policy) => PolicyTier {
  const tiers = new Map((list ?? []).map((t) => [t.name, t]));
  return (p) =>
    tiers.get(p.tier ?? DEFAULT_TIER) ??
    (p.tier === undefined || p.tier === DEFAULT_TIER
      ? { name: DEFAULT_TIER, order: DEFAULT_TIER_ORDER, defaultAction: "Deny" }
      : { name: p.tier, defaultAction: "Deny" });
}

/** Chain of one profile's rules: `ocl-pri-<hash>` (ingress), `ocl-pro-<hash>` (egress). */
export function profileChainName(name: string, dir: Direction): string {
  return chainName(`ocl-${dir === "Ingress" ? "pri" : "pro"}-${shortHash(name).slice(0, 16)}`);
}

/** A profile as a policy whose rules render like any other (global scope, both directions). */
export function profileAsPolicy(p: PolicyProfile): Policy {
  return {
    id: `profile:${p.name}`,
    selector: "all()",
    types: ["Ingress", "Egress"],
    ingress: p.ingress,
    egress: p.egress,
  };
}

/**
 * The rules of one endpoint chain, as Felix lays them out: conntrack (tracked chains), the
 * failsafe chain, then tiers in order (absent order last, then name), each tier's policies in
 * their order and its default action at its end (normal and forward chains only: untracked and
 * preDNAT chains fall through to the filter table), then the profiles, then the final drop. An
 * untracked Allow also sets NOTRACK. A forward chain no policy selects accepts. The policy and
 * profile chains it jumps to are added to `used`.
 */
export function endpointChainRules(
  spec: EndpointChainSpec,
  dir: Direction,
  tierOf: (p: Policy) => PolicyTier,
  used: Map<string, { p: Policy; dir: Direction }>,
): string[] {
  const rules: string[] = [];
  const deny = spec.deny ?? "-j DROP";
  if (spec.type !== "untracked")
    rules.push(
      ...conntrackAllowRules(spec.allow ?? "Accept", ACCEPT),
      `-m conntrack --ctstate INVALID ${deny}`,
    );
  if (spec.failsafe !== undefined) rules.push(`-j ${spec.failsafe}`);
  rules.push(`-j MARK --set-xmark ${CLEAR}`);
  // A Pass verdict skips the rest of its tier; the mark is cleared for the next tier.
  const byTier = new Map<string, { tier: PolicyTier; policies: Policy[] }>();
  for (const p of sortPolicies(spec.policies)) {
    const t = tierOf(p);
    const group = byTier.get(t.name) ?? { tier: t, policies: [] };
    group.policies.push(p);
    byTier.set(t.name, group);
  }
  const groups = [...byTier.values()].sort((a, b) => {
    const oa = a.tier.order ?? Number.POSITIVE_INFINITY;
    const ob = b.tier.order ?? Number.POSITIVE_INFINITY;
    if (oa !== ob) return oa < ob ? -1 : 1;
    return a.tier.name < b.tier.name ? -1 : a.tier.name > b.tier.name ? 1 : 0;
  });
  const enforcing = spec.type === "normal" || spec.type === "forward";
  for (const [gi, g] of groups.entries()) {
    if (gi > 0) rules.push(`-j MARK --set-xmark ${CLEAR}`);
    for (const p of g.policies) {
      const chain = policyChainName(p.id, dir);
      used.set(chain, { p, dir });
      rules.push(`-m mark --mark ${NOT_PASS} -j ${chain}`);
      if (spec.type === "untracked") rules.push(`-m mark --mark ${ACCEPT} -j CT --notrack`);
      rules.push(`-m mark --mark ${ACCEPT} -j RETURN`);
    }
    if (enforcing && g.tier.defaultAction === "Deny")
      rules.push(`-m mark --mark ${NOT_PASS} ${deny}`);
  }
  if (groups.length === 0 && spec.type === "forward")
    rules.push(`-j MARK --set-xmark ${ACCEPT}`, "-j RETURN");
  if (spec.type !== "normal") return rules;
  for (const prof of spec.profiles ?? []) {
    const chain = profileChainName(prof.name, dir);
    used.set(chain, { p: profileAsPolicy(prof), dir });
    rules.push(`-j ${chain}`, `-m mark --mark ${ACCEPT} -j RETURN`);
  }
  if (spec.dropAtEnd === true) rules.push(deny);
  return rules;
}

/** Policies that apply to workloads: doNotTrack and preDNAT ones are for host endpoints only. */
export function workloadPolicies(policies: readonly Policy[]): Policy[] {
  return policies.filter((p) => p.hostOnly !== true);
}

/**
 * The profile Calico provides to every Felix whatever the datastore (libcalico-go's
 * DefaultAllowProfile): allow all ingress and egress, no labels. Auto host endpoints list it, so a
 * node with no host policy is not cut off. It wins over a stored Profile of the same name.
 */
export const DEFAULT_ALLOW_PROFILE: PolicyProfile = {
  name: "projectcalico-default-allow",
  ingress: [{ action: "Allow" }],
  egress: [{ action: "Allow" }],
};

/** The profiles by name that have rules (an endpoint listing one is policed by them). */
export function profilesWithRules(input: PolicyInput): Map<string, PolicyProfile> {
  return new Map([
    ...(input.profiles ?? [])
      .filter((p) => p.ingress.length > 0 || p.egress.length > 0)
      .map((p): [string, PolicyProfile] => [p.name, p]),
    [DEFAULT_ALLOW_PROFILE.name, DEFAULT_ALLOW_PROFILE],
  ]);
}

/** The policies in order, without those whose own selectors do not parse (warned). */
export function usablePolicies(policies: readonly Policy[], r: Renderer): Policy[] {
  return sortPolicies(policies).filter((p) => {
    for (const t of [p.selector, p.namespaceSelector]) {
      if (t === undefined) continue;
      try {
        r.sels.get(t);
      } catch (err) {
        r.warnings.push(`Policy "${p.id}": ${(err as Error).message}; policy not applied`);
        return false;
      }
    }
    return true;
  });
}

/**
 * What selection found in earlier renders, kept while what it depends on is the same (the
 * policies' ids, selectors, namespaces, order, tiers and types; the tiers; the namespaces'
 * labels; the profiles with rules): which policies select an endpoint with given labels in a
 * namespace, and the rules of an endpoint chain for given policies and profiles. A label change
 * on one pod then re-selects that pod alone, as Felix's label index does.
 */
interface SelectionMemo {
  key: string;
  /** Indexes into the policies (the same ids in the same order while the key holds). */
  selecting: Map<string, number[]>;
  chains: Map<string, string[]>;
}

/** Entries past this many empty the memo (label sets come and go). */
const SELECTION_MEMO_MAX = 50_000;

function selectionMemo(
  cache: PolicyRenderCache,
  policies: readonly Policy[],
  input: PolicyInput,
  profiles: Map<string, PolicyProfile>,
): SelectionMemo {
  const key = JSON.stringify([
    policies.map((p) => [
      p.id,
      p.namespace,
      p.selector,
      p.namespaceSelector,
      p.order,
      p.tier,
      p.types,
    ]),
    input.tiers ?? [],
    input.namespaceLabels ?? {},
    [...profiles.keys()],
  ]);
  const m = cache.selection;
  if (m !== undefined && m.key === key && m.selecting.size + m.chains.size < SELECTION_MEMO_MAX)
    return m;
  cache.selection = { key, selecting: new Map(), chains: new Map() };
  return cache.selection;
}

const NO_PROFILES: PolicyProfile[] = [];

/** The family's memo of the dispatch tree under root. */
function dispatchMemo(fc: FamilyCache, root: string): DispatchMemo {
  let m = fc.dispatch.get(root);
  if (m === undefined) {
    m = { head: [], tail: [], nodes: new Map() };
    fc.dispatch.set(root, m);
  }
  return m;
}

/** The node daemon's: every renderPolicy without a cache of its own uses it. */
const DEFAULT_CACHE = new PolicyRenderCache();

/** One local endpoint's dispatch rule (`-i <iface> -g ocl-fw-<iface>`). */
interface DispatchEntry {
  iface: string;
  hook: string;
}

/** One chain of a dispatch tree as built, with the chains under it (in the tree's order). */
interface DispatchNode {
  group: readonly DispatchEntry[];
  depth: number;
  path: string;
  chains: ChainSpec[];
}

/** A dispatch tree as the last render built it: a chain is reused while its interfaces hold. */
export interface DispatchMemo {
  head: readonly string[];
  tail: readonly string[];
  nodes: Map<string, DispatchNode>;
}

const sameStrings = (a: readonly string[], b: readonly string[]) =>
  a === b || (a.length === b.length && a.every((x, i) => x === b[i]));

function sameEntries(a: readonly DispatchEntry[], b: readonly DispatchEntry[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as DispatchEntry;
    const y = b[i] as DispatchEntry;
    if (x !== y && (x.iface !== y.iface || x.hook !== y.hook)) return false;
  }
  return true;
}

/** A dispatch chain holds at most this many interfaces before it is split (Felix: its tree). */
export const DISPATCH_LEAF_MAX = 16;

/** A character of an interface name as part of a chain name. */
const chainChar = (c: string) => (/^[A-Za-z0-9]$/.test(c) ? c : `_${c.charCodeAt(0).toString(16)}`);

/**
 * The dispatch chain `root` and, past DISPATCH_LEAF_MAX interfaces, its tree, as Felix builds
 * it: a chain whose interfaces share a longer name prefix dispatches them by the next character,
 * `-i <prefix><c>+ -g <root>-<path>`, to sub-chains that do the same (an interface whose name
 * is the prefix itself, or alone under its character, is dispatched where it is). A new pod's
 * rule then goes into a chain of a few rules, not into one of every pod; the verdicts are the
 * flat chain's (each interface reaches its own rule, through wildcards that exclude one
 * another). `entries` sorted by interface; `head` (IPv6 link-local rules) opens the root; `tail`
 * ends every chain of the tree (Felix's end rules: an unknown interface's drop). With `memo` (the
 * tree an earlier call built, updated here), a chain whose interfaces and hooks are the same as
 * then is that call's chain, with the chains under it (the same objects: a new pod's rule
 * rebuilds the chains on its path only, and the applier's plan sees the others unchanged at once).
 */
export function dispatchTree(
  root: string,
  flag: "-i" | "-o",
  entries: readonly DispatchEntry[],
  head: readonly string[],
  tail: readonly string[] = [],
  memo?: DispatchMemo,
): ChainSpec[] {
  const out: ChainSpec[] = [];
  const had =
    memo !== undefined && sameStrings(memo.head, head) && sameStrings(memo.tail, tail)
      ? memo.nodes
      : undefined;
  const nodes = new Map<string, DispatchNode>();
  const build = (name: string, group: readonly DispatchEntry[], depth: number, path: string) => {
    const prev = had?.get(name);
    if (
      prev !== undefined &&
      prev.depth === depth &&
      prev.path === path &&
      sameEntries(prev.group, group)
    ) {
      for (const c of prev.chains) {
        out.push(c);
        const n = had?.get(c.name);
        if (n !== undefined) nodes.set(c.name, n);
      }
      return;
    }
    const start = out.length;
    const done = () => {
      if (memo !== undefined) nodes.set(name, { group, depth, path, chains: out.slice(start) });
    };
    const rules = depth === 0 ? [...head] : [];
    out.push({ name, rules });
    if (group.length <= DISPATCH_LEAF_MAX) {
      for (const e of group) rules.push(e.hook);
      rules.push(...tail);
      done();
      return;
    }
    const first = (group[0] as DispatchEntry).iface;
    const last = (group[group.length - 1] as DispatchEntry).iface;
    let p = depth;
    while (p < first.length && p < last.length && first[p] === last[p]) p++;
    const byChar = new Map<string, DispatchEntry[]>();
    for (const e of group) {
      if (e.iface.length === p) rules.push(e.hook);
      else {
        const c = e.iface[p] as string;
        const list = byChar.get(c) ?? [];
        list.push(e);
        byChar.set(c, list);
      }
    }
    for (const [c, sub] of byChar) {
      if (sub.length === 1) {
        rules.push((sub[0] as DispatchEntry).hook);
        continue;
      }
      // The root's common prefix (the workload prefix) is left out of the sub-chains' names.
      const childPath = `${path}${depth === 0 ? "" : [...first.slice(depth, p)].map(chainChar).join("")}${chainChar(c)}`;
      const child = chainName(`${root}-${childPath}`);
      rules.push(`${flag} ${first.slice(0, p)}${c}+ -g ${child}`);
      build(child, sub, p + 1, childPath);
    }
    rules.push(...tail);
    done();
  };
  build(root, entries, 0, "");
  if (memo !== undefined) {
    memo.head = head;
    memo.tail = tail;
    memo.nodes = nodes;
  }
  return out;
}

/**
 * The dispatch chain `root` by set (PolicyInput.dispatchBySet): the entries' hooks are their
 * group chains' names (or RETURN: known, not policed); one `hash:net,iface` set a group, of
 * every address (`0.0.0.0/0` or `::/0`) with each interface, matched on the incoming (`src`,
 * from workloads) or outgoing (`dst`, to workloads) interface, then `tail` (the unknown
 * interfaces' drop). An interface is in one group a direction, so the order of the group rules
 * decides nothing; they are sorted by set name.
 */
function setDispatch(
  root: string,
  side: "src" | "dst",
  entries: readonly DispatchEntry[],
  tail: readonly string[],
  family: Family,
): { chain: ChainSpec; ipsets: IpsetSpec[] } {
  const any = family === 4 ? "0.0.0.0/0" : "::/0";
  const groups = new Map<string, string[]>();
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as DispatchEntry;
    const members = groups.get(e.hook);
    if (members === undefined) groups.set(e.hook, [`${any},${e.iface}`]);
    else members.push(`${any},${e.iface}`);
  }
  const sets = [...groups].map(([hook, members]) => ({
    hook,
    set: {
      name: policyIpsetName("e", family, `${root}\n${hook}`),
      type: "hash:net,iface" as const,
      family: family === 4 ? ("inet" as const) : ("inet6" as const),
      members: members.sort(),
    },
  }));
  sets.sort((a, b) => (a.set.name < b.set.name ? -1 : 1));
  const rules = sets.map(
    ({ hook, set }) =>
      `-m set --match-set ${set.name} ${side},${side} ${hook === "RETURN" ? "-j RETURN" : `-g ${hook}`}`,
  );
  rules.push(...tail);
  return { chain: { name: root, rules }, ipsets: sets.map((g) => g.set) };
}

/**
 * The filter-table chains and ipsets of policy for one family. Never throws on bad stored data:
 * a policy whose own selector does not parse selects no endpoint (it is left out; a node must
 * not stop programming its other pods for it), a rule that cannot be rendered as written is
 * rendered fail-closed; both are reported in warnings. An endpoint whose profiles have rules is
 * policed in both directions: its profiles after its policies, then a drop (Calico's order).
 */
export function renderPolicy(
  input: PolicyInput,
  family: Family,
  cache: PolicyRenderCache = DEFAULT_CACHE,
): PolicyState {
  const fc = cache.families[family];
  const r = new Renderer(input, family, fc);
  fc.index.sync(input, r.sels);
  const tierOf = tierResolver(input.tiers);
  const profiles = profilesWithRules(input);
  const policies = usablePolicies(workloadPolicies(input.policies), r);
  // Sorted by interface: kept across renders (the new ones merged in), or sorted whole when two
  // endpoints share an interface.
  const local =
    fc.order.sorted(input.endpoints) ??
    input.endpoints
      .filter((e) => e.iface !== undefined)
      .sort((a, b) => ((a.iface as string) < (b.iface as string) ? -1 : 1));
  const used = new Map<string, { p: Policy; dir: Direction }>();
  const endpointChains: ChainSpec[] = [];
  const dispatch: Record<Direction, DispatchEntry[]> = { Ingress: [], Egress: [] };
  const memo = selectionMemo(cache, policies, input, profiles);
  const actions = input.actions ?? DEFAULT_RULE_ACTIONS;
  const deny = denyTarget(actions.filterDeny, family);
  const bySet = input.dispatchBySet === true;
  // (The mode is part of an entry's key: its chains and dispatch entries differ by it.)
  const verdicts = `${actions.filterAllow} ${deny}${bySet ? " by-set" : ""}`;
  // By set, endpoints share their chains: each name pushed once a render.
  const pushedChains = new Set<string>();
  const pushChain = (c: ChainSpec) => {
    if (!bySet) endpointChains.push(c);
    else if (!pushedChains.has(c.name)) {
      pushedChains.add(c.name);
      endpointChains.push(c);
    }
  };
  // The policies (by index) and profiles some local endpoint's chains jump to.
  const pickedSeen = new Set<number[]>();
  const profsSeen = new Map<string, PolicyProfile>();
  const kept = fc.endpoints;
  const stamp = ++fc.stamp;
  /** Entries of kept this render has (stamped). */
  let stamped = 0;
  // Indexed loops here: iterators' results were most of a pass's garbage at 1,000 endpoints.
  for (let k = 0; k < local.length; k++) {
    const ep = local[k] as PolicyEndpoint;
    const iface = ep.iface as string;
    const labelKey = r.sels.labelsText(ep);
    let profs: PolicyProfile[] = NO_PROFILES;
    if (ep.profiles !== undefined && ep.profiles.length > 0) {
      profs = [];
      for (const n of ep.profiles) {
        const prof = profiles.get(n);
        if (prof !== undefined) profs.push(prof);
      }
    }
    for (let q = 0; q < profs.length; q++) {
      const prof = profs[q] as PolicyProfile;
      profsSeen.set(prof.name, prof);
    }
    // The endpoint's chains and dispatch rules as an earlier render made them, when nothing
    // they depend on has changed since (a pass touching one pod renders that pod's alone).
    const had = kept.get(iface);
    if (
      had !== undefined &&
      had.stamp !== stamp &&
      had.memo === memo &&
      had.verdicts === verdicts &&
      had.labelKey === labelKey &&
      had.profiles.length === profs.length &&
      had.profiles.every((n, i) => n === profs[i]?.name)
    ) {
      had.stamp = stamp;
      stamped++;
      pickedSeen.add(had.picked);
      for (let c = 0; c < had.chains.length; c++) pushChain(had.chains[c] as ChainSpec);
      if (had.dispatch.Ingress !== undefined) dispatch.Ingress.push(had.dispatch.Ingress);
      if (had.dispatch.Egress !== undefined) dispatch.Egress.push(had.dispatch.Egress);
      continue;
    }
    // By index: this render's policies (their rules may have changed since).
    let picked = memo.selecting.get(labelKey);
    if (picked === undefined) {
      picked = policies.flatMap((p, i) => (policySelects(p, ep, r.sels) ? [i] : []));
      memo.selecting.set(labelKey, picked);
    }
    pickedSeen.add(picked);
    const entry: EndpointEntry = {
      memo,
      verdicts,
      labelKey,
      profiles: profs.map((p) => p.name),
      picked,
      chains: [],
      dispatch: {},
      stamp,
    };
    // Two endpoints of one interface: the first one's entry is kept.
    if (had?.stamp !== stamp) {
      kept.set(iface, entry);
      stamped++;
    }
    const selecting = picked.map((i) => policies[i] as Policy);
    for (const dir of ["Ingress", "Egress"] as const) {
      const mine = selecting.filter((p) => p.types.includes(dir));
      if (mine.length === 0 && profs.length === 0) {
        // Known and not policed in this direction: dispatched to nothing, so that only unknown
        // workload interfaces meet the dispatch chains' drop.
        const hook = {
          iface,
          hook: bySet ? "RETURN" : `${dir === "Ingress" ? "-o" : "-i"} ${iface} -j RETURN`,
        };
        entry.dispatch[dir] = hook;
        dispatch[dir].push(hook);
        continue;
      }
      const name = bySet ? "" : endpointChainName(iface, dir);
      const chainKey = `${actions.filterAllow} ${deny}\n${dir}\n${mine.map((p) => p.id).join("\n")}\n\n${profs.map((p) => p.name).join("\n")}`;
      let rules = memo.chains.get(chainKey);
      if (rules === undefined) {
        // The chains it jumps to are collected below, from every endpoint's selection.
        rules = endpointChainRules(
          {
            type: "normal",
            policies: mine,
            profiles: profs,
            dropAtEnd: profs.length > 0,
            allow: actions.filterAllow,
            deny,
          },
          dir,
          tierOf,
          new Map(),
        );
        memo.chains.set(chainKey, rules);
      }
      const chain = bySet
        ? { name: endpointGroupChainName(chainKey, dir), rules }
        : { name, rules };
      // By set: the group's chain name stands for the hook (the set's rule is made below).
      const hook = bySet
        ? { iface, hook: chain.name }
        : { iface, hook: `${dir === "Ingress" ? "-o" : "-i"} ${iface} -g ${name}` };
      entry.chains.push(chain);
      entry.dispatch[dir] = hook;
      pushChain(chain);
      dispatch[dir].push(hook);
    }
  }
  // The endpoints this render no longer has.
  if (kept.size > stamped) for (const [iface, e] of kept) if (e.stamp !== stamp) kept.delete(iface);
  // The chains the endpoint chains jump to, as endpointChainRules names them: every policy
  // selecting a local endpoint in each of its directions, every profile of one in both.
  // Each policy once (many endpoints share one), its chains' names as kept by id.
  const marked = new Uint8Array(policies.length);
  for (const picked of pickedSeen)
    for (let k = 0; k < picked.length; k++) marked[picked[k] as number] = 1;
  if (fc.policyChainNames.size > 2 * policies.length + 64) fc.policyChainNames.clear();
  for (let i = 0; i < policies.length; i++) {
    if (marked[i] === 0) continue;
    const p = policies[i] as Policy;
    let names = fc.policyChainNames.get(p.id);
    if (names === undefined) {
      names = {
        Ingress: policyChainName(p.id, "Ingress"),
        Egress: policyChainName(p.id, "Egress"),
      };
      fc.policyChainNames.set(p.id, names);
    }
    for (const dir of ["Ingress", "Egress"] as const)
      if (p.types.includes(dir)) used.set(names[dir], { p, dir });
  }
  for (const prof of profsSeen.values())
    for (const dir of ["Ingress", "Egress"] as const)
      used.set(profileChainName(prof.name, dir), { p: profileAsPolicy(prof), dir });
  const policyChains: ChainSpec[] = [];
  const usedNames = [...used.keys()].sort();
  for (let i = 0; i < usedNames.length; i++) {
    const name = usedNames[i] as string;
    const { p, dir } = used.get(name) as { p: Policy; dir: Direction };
    policyChains.push({ name, rules: r.policyChain(p, dir, deny) });
  }
  // IPv6 neighbour discovery and MLD from a pod to its host are never policed: Felix accepts
  // them in its workload-to-host chain before the dispatch (from every workload interface,
  // known or not); they are link-local, so never forwarded, and the host's to a pod are not
  // policed at all (OUTPUT does not reach the to-workload dispatch).
  const workloadToHostHead =
    family === 6
      ? ICMPV6_LINK_TYPES.map(
          (t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} ${allowTarget(actions.filterAllow)}`,
        )
      : [];
  // Felix's "Unknown interface" rule, always (WorkloadDispatchChains): a workload interface no
  // endpoint is known for (a new pod before its endpoint is programmed, a stray veth named
  // like a pod's) gets no traffic, at the end of every dispatch chain.
  const unknown = [deny];
  if (bySet) {
    const from = setDispatch(CHAIN_FROM_WL_DISPATCH, "src", dispatch.Egress, unknown, family);
    const to = setDispatch(CHAIN_TO_WL_DISPATCH, "dst", dispatch.Ingress, unknown, family);
    return {
      chains: [from.chain, to.chain, ...endpointChains, ...policyChains],
      workloadToHostHead,
      ipsets: [...r.ipsets.values(), ...from.ipsets, ...to.ipsets].sort((a, b) =>
        a.name < b.name ? -1 : 1,
      ),
      warnings: [...new Set(r.warnings)],
    };
  }
  return {
    chains: [
      ...dispatchTree(
        CHAIN_FROM_WL_DISPATCH,
        "-i",
        dispatch.Egress,
        [],
        unknown,
        dispatchMemo(fc, CHAIN_FROM_WL_DISPATCH),
      ),
      ...dispatchTree(
        CHAIN_TO_WL_DISPATCH,
        "-o",
        dispatch.Ingress,
        [],
        unknown,
        dispatchMemo(fc, CHAIN_TO_WL_DISPATCH),
      ),
      ...endpointChains,
      ...policyChains,
    ],
    workloadToHostHead,
    ipsets: [...r.ipsets.values()].sort((a, b) => (a.name < b.name ? -1 : 1)),
    warnings: [...new Set(r.warnings)],
  };
}
