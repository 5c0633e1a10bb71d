// The kind registry: every resource kind Ocelot stores, with its apiVersion, plural/singular/
// short names (as calicoctl), scope, schema, storage key and table columns for `ocelot get`.
// Owns name resolution and document validation. Not: datastore access (client.ts).
import type * as z from "zod";
import {
  bgpConfigurationSchema,
  bgpFilterSchema,
  bgpPeerSchema,
  effectiveBgpConfiguration,
} from "./bgp.js";
import {
  type CalicoNodeStatus,
  calicoNodeStatusSchema,
  freshnessText,
  peersText,
} from "./caliconodestatus.js";
import { CLUSTER_INFORMATION_WRITERS, clusterInformationSchema } from "./clusterinfo.js";
import {
  felixConfigurationSchema,
  ipamConfigurationSchema,
  kubeControllersConfigurationSchema,
} from "./config.js";
import { type FieldIssue, quote, toFieldIssues, ValidationError } from "./errors.js";
import type { Metadata } from "./fields.js";
import { hostEndpointSchema } from "./hostendpoint.js";
import { API_VERSION, ipPoolSchema, ipReservationSchema } from "./ippool.js";
import {
  K8S_CORE_API_VERSION,
  K8S_DISCOVERY_API_VERSION,
  k8sEndpointSliceSchema,
  k8sServiceSchema,
  SERVICE_NAME_LABEL,
} from "./k8s_service.js";
import { built } from "./lazy.js";
import { globalNetworkSetSchema, networkSetSchema } from "./networkset.js";
import { nodeSchema, workloadEndpointSchema } from "./node.js";
import {
  globalNetworkPolicySchema,
  K8S_NETWORKING_API_VERSION,
  k8sNetworkPolicySchema,
  networkPolicySchema,
  profileSchema,
  stagedGlobalNetworkPolicySchema,
  stagedK8sNetworkPolicySchema,
  stagedNetworkPolicySchema,
} from "./policy.js";
import { tierSchema } from "./tier.js";

/** Root of every resource key; the datastore stores keys as given. */
export const RESOURCE_PREFIX = "/ocelot/resources/v3/";

/** Any stored resource: the envelope shared by all kinds. */
export interface Resource {
  apiVersion: string;
  kind: string;
  metadata: Metadata;
  spec?: unknown;
}

export interface Column {
  header: string;
  value: (r: Resource) => string;
}

export interface KindInfo {
  apiVersion: string;
  kind: string;
  plural: string;
  singular: string;
  /** Short names and other accepted spellings (all lowercase). */
  aliases: string[];
  namespaced: boolean;
  schema: z.ZodType;
  columns: Column[];
  wideColumns: Column[];
  /** Spec fields that cannot change once created (Calico: IPPool cidr and blockSize). */
  immutable: string[];
  /**
   * Set for kinds the resource commands only read (calicoctl refuses to write them): why, naming
   * what writes them instead.
   */
  readOnly?: string;
}

// biome-ignore lint/suspicious/noExplicitAny: table cells read arbitrary spec fields.
type AnySpec = Record<string, any>;
const spec = (r: Resource): AnySpec => (r.spec ?? {}) as AnySpec;
const str = (v: unknown): string =>
  v === undefined || v === null ? "" : Array.isArray(v) ? v.join(",") : String(v);
const col = (header: string, value: (r: Resource) => unknown): Column => ({
  header,
  value: (r) => str(value(r)),
});
const NAME = col("NAME", (r) => r.metadata.name);
const NAMESPACE = col("NAMESPACE", (r) => r.metadata.namespace);

function kindInfo(
  info: Omit<KindInfo, "immutable" | "wideColumns"> &
    Partial<Pick<KindInfo, "immutable" | "wideColumns">>,
): KindInfo {
  return { immutable: [], wideColumns: info.columns, ...info };
}

export const KINDS: readonly KindInfo[] = [
  kindInfo({
    apiVersion: API_VERSION,
    kind: "IPPool",
    plural: "ippools",
    singular: "ippool",
    aliases: ["ipp", "ipps", "pool", "pools"],
    namespaced: false,
    schema: ipPoolSchema,
    columns: [NAME, col("CIDR", (r) => spec(r).cidr), col("SELECTOR", (r) => spec(r).nodeSelector)],
    wideColumns: [
      NAME,
      col("CIDR", (r) => spec(r).cidr),
      col("NAT", (r) => spec(r).natOutgoing),
      col("IPIPMODE", (r) => spec(r).ipipMode),
      col("VXLANMODE", (r) => spec(r).vxlanMode),
      col("DISABLED", (r) => spec(r).disabled ?? false),
      col("DISABLEBGPEXPORT", (r) => spec(r).disableBGPExport ?? false),
      col("SELECTOR", (r) => spec(r).nodeSelector),
    ],
    immutable: ["cidr", "blockSize"],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "IPReservation",
    plural: "ipreservations",
    singular: "ipreservation",
    aliases: ["ipr", "iprs", "reservation", "reservations"],
    namespaced: false,
    schema: ipReservationSchema,
    columns: [NAME, col("CIDRS", (r) => spec(r).reservedCIDRs)],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "BGPConfiguration",
    plural: "bgpconfigurations",
    singular: "bgpconfiguration",
    aliases: ["bgpconfig", "bgpconfigs", "bgpc"],
    namespaced: false,
    schema: bgpConfigurationSchema,
    columns: [
      NAME,
      col(
        "LOGSEVERITY",
        (r) => spec(r).logSeverityScreen ?? (r.metadata.name === "default" ? "Info" : ""),
      ),
      col("MESHENABLED", (r) =>
        r.metadata.name === "default"
          ? effectiveBgpConfiguration(r as never).nodeToNodeMeshEnabled
          : spec(r).nodeToNodeMeshEnabled,
      ),
      col("ASNUMBER", (r) =>
        r.metadata.name === "default"
          ? effectiveBgpConfiguration(r as never).asNumber
          : spec(r).asNumber,
      ),
    ],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "BGPPeer",
    plural: "bgppeers",
    singular: "bgppeer",
    aliases: ["bgpp", "bgpps", "bp", "bps", "peer", "peers"],
    namespaced: false,
    schema: bgpPeerSchema,
    columns: [
      NAME,
      col("PEERIP", (r) => spec(r).peerIP ?? spec(r).peerSelector),
      col("NODE", (r) => spec(r).node ?? spec(r).nodeSelector ?? "(global)"),
      col("ASN", (r) => spec(r).asNumber),
    ],
    wideColumns: [
      NAME,
      col("PEERIP", (r) => spec(r).peerIP ?? spec(r).peerSelector),
      col("NODE", (r) => spec(r).node ?? spec(r).nodeSelector ?? "(global)"),
      col("ASN", (r) => spec(r).asNumber),
      col("LOCALASN", (r) => spec(r).localASNumber),
      col("FILTERS", (r) => spec(r).filters),
    ],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "BGPFilter",
    plural: "bgpfilters",
    singular: "bgpfilter",
    aliases: ["bgpf", "bgpfs", "filter", "filters"],
    namespaced: false,
    schema: bgpFilterSchema,
    columns: [NAME],
    wideColumns: [
      NAME,
      ...(["exportV4", "importV4", "exportV6", "importV6"] as const).map((f) =>
        col(f.toUpperCase(), (r) => (spec(r)[f] ?? []).length),
      ),
    ],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "Node",
    plural: "nodes",
    singular: "node",
    aliases: ["no", "nos"],
    namespaced: false,
    schema: nodeSchema,
    columns: [NAME],
    wideColumns: [
      NAME,
      col("ASN", (r) => spec(r).bgp?.asNumber ?? "(64512)"),
      col("IPV4", (r) => spec(r).bgp?.ipv4Address),
      col("IPV6", (r) => spec(r).bgp?.ipv6Address),
    ],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "WorkloadEndpoint",
    plural: "workloadendpoints",
    singular: "workloadendpoint",
    aliases: ["wep", "weps"],
    namespaced: true,
    schema: workloadEndpointSchema,
    columns: [
      NAMESPACE,
      col("WORKLOAD", (r) => spec(r).workload ?? spec(r).pod),
      col("NODE", (r) => spec(r).node),
      col("NETWORKS", (r) => spec(r).ipNetworks),
      col("INTERFACE", (r) => spec(r).interfaceName),
    ],
    wideColumns: [
      NAMESPACE,
      NAME,
      col("WORKLOAD", (r) => spec(r).workload ?? spec(r).pod),
      col("NODE", (r) => spec(r).node),
      col("NETWORKS", (r) => spec(r).ipNetworks),
      col("INTERFACE", (r) => spec(r).interfaceName),
      col("PROFILES", (r) => spec(r).profiles),
    ],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "NetworkPolicy",
    plural: "networkpolicies",
    singular: "networkpolicy",
    aliases: ["policy", "policies", "pol", "pols", "np", "nps"],
    namespaced: true,
    schema: networkPolicySchema,
    columns: [NAMESPACE, NAME],
    wideColumns: [
      NAMESPACE,
      NAME,
      col("TIER", (r) => spec(r).tier),
      col("ORDER", (r) => spec(r).order),
      col("SELECTOR", (r) => spec(r).selector),
    ],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "GlobalNetworkPolicy",
    plural: "globalnetworkpolicies",
    singular: "globalnetworkpolicy",
    aliases: ["gnp", "gnps"],
    namespaced: false,
    schema: globalNetworkPolicySchema,
    columns: [NAME],
    wideColumns: [
      NAME,
      col("TIER", (r) => spec(r).tier),
      col("ORDER", (r) => spec(r).order),
      col("SELECTOR", (r) => spec(r).selector),
    ],
  }),
  kindInfo({
    apiVersion: K8S_NETWORKING_API_VERSION,
    kind: "NetworkPolicy",
    plural: "kubernetesnetworkpolicies",
    singular: "kubernetesnetworkpolicy",
    aliases: ["knp", "knps", "k8snetworkpolicy", "k8snetworkpolicies"],
    namespaced: true,
    schema: k8sNetworkPolicySchema,
    columns: [NAMESPACE, NAME, col("POD-SELECTOR", (r) => labelSelectorText(spec(r).podSelector))],
  }),
  // Kubernetes Services and EndpointSlices (src/api/k8s_service.ts): kube-controllers' copies.
  kindInfo({
    apiVersion: K8S_CORE_API_VERSION,
    kind: "Service",
    plural: "kubernetesservices",
    singular: "kubernetesservice",
    aliases: ["svc", "service", "services", "k8sservice", "k8sservices"],
    namespaced: true,
    schema: k8sServiceSchema,
    columns: [
      NAMESPACE,
      NAME,
      col("TYPE", (r) => spec(r).type ?? "ClusterIP"),
      col("CLUSTER-IP", (r) => spec(r).clusterIP),
      col("EXTERNAL-TRAFFIC-POLICY", (r) => spec(r).externalTrafficPolicy),
    ],
  }),
  kindInfo({
    apiVersion: K8S_DISCOVERY_API_VERSION,
    kind: "EndpointSlice",
    plural: "kubernetesendpointslices",
    singular: "kubernetesendpointslice",
    aliases: ["endpointslice", "endpointslices", "k8sendpointslice", "k8sendpointslices"],
    namespaced: true,
    schema: k8sEndpointSliceSchema,
    columns: [
      NAMESPACE,
      NAME,
      col("SERVICE", (r) => r.metadata.labels?.[SERVICE_NAME_LABEL]),
      col("ENDPOINTS", (r) =>
        ((r as unknown as { endpoints?: { addresses: string[] }[] }).endpoints ?? []).flatMap(
          (e) => e.addresses,
        ),
      ),
    ],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "StagedNetworkPolicy",
    plural: "stagednetworkpolicies",
    singular: "stagednetworkpolicy",
    aliases: ["snp", "snps"],
    namespaced: true,
    schema: stagedNetworkPolicySchema,
    columns: [NAMESPACE, NAME],
    wideColumns: [
      NAMESPACE,
      NAME,
      col("TIER", (r) => spec(r).tier),
      col("ORDER", (r) => spec(r).order),
      col("SELECTOR", (r) => spec(r).selector),
      col("STAGEDACTION", (r) => spec(r).stagedAction),
    ],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "StagedGlobalNetworkPolicy",
    plural: "stagedglobalnetworkpolicies",
    singular: "stagedglobalnetworkpolicy",
    aliases: ["sgnp", "sgnps"],
    namespaced: false,
    schema: stagedGlobalNetworkPolicySchema,
    columns: [NAME],
    wideColumns: [
      NAME,
      col("TIER", (r) => spec(r).tier),
      col("ORDER", (r) => spec(r).order),
      col("SELECTOR", (r) => spec(r).selector),
      col("STAGEDACTION", (r) => spec(r).stagedAction),
    ],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "StagedKubernetesNetworkPolicy",
    plural: "stagedkubernetesnetworkpolicies",
    singular: "stagedkubernetesnetworkpolicy",
    aliases: ["sknp", "sknps"],
    namespaced: true,
    schema: stagedK8sNetworkPolicySchema,
    columns: [NAMESPACE, NAME],
    wideColumns: [
      NAMESPACE,
      NAME,
      col("POD-SELECTOR", (r) => labelSelectorText(spec(r).podSelector)),
      col("STAGEDACTION", (r) => spec(r).stagedAction),
    ],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "Tier",
    plural: "tiers",
    singular: "tier",
    aliases: [],
    namespaced: false,
    schema: tierSchema,
    columns: [
      NAME,
      col("ORDER", (r) => spec(r).order),
      col("DEFAULTACTION", (r) => spec(r).defaultAction),
    ],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "Profile",
    plural: "profiles",
    singular: "profile",
    aliases: ["pro", "pros"],
    namespaced: false,
    schema: profileSchema,
    columns: [NAME],
    wideColumns: [
      NAME,
      col("LABELS", (r) =>
        Object.entries((spec(r).labelsToApply ?? {}) as Record<string, string>).map(
          ([k, v]) => `${k}=${v}`,
        ),
      ),
    ],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "HostEndpoint",
    plural: "hostendpoints",
    singular: "hostendpoint",
    aliases: ["hep", "heps"],
    namespaced: false,
    schema: hostEndpointSchema,
    columns: [NAME, col("NODE", (r) => spec(r).node)],
    wideColumns: [
      NAME,
      col("NODE", (r) => spec(r).node),
      col("INTERFACE", (r) => spec(r).interfaceName),
      col("IPS", (r) => spec(r).expectedIPs),
      col("PROFILES", (r) => spec(r).profiles),
    ],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "GlobalNetworkSet",
    plural: "globalnetworksets",
    singular: "globalnetworkset",
    aliases: ["gns", "gnss"],
    namespaced: false,
    schema: globalNetworkSetSchema,
    columns: [NAME],
    wideColumns: [NAME, col("NETS", (r) => spec(r).nets)],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "NetworkSet",
    plural: "networksets",
    singular: "networkset",
    aliases: ["netset", "netsets"],
    namespaced: true,
    schema: networkSetSchema,
    columns: [NAMESPACE, NAME],
    wideColumns: [NAMESPACE, NAME, col("NETS", (r) => spec(r).nets)],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "FelixConfiguration",
    plural: "felixconfigurations",
    singular: "felixconfiguration",
    aliases: ["felixconfig", "felixconfigs"],
    namespaced: false,
    schema: felixConfigurationSchema,
    columns: [NAME],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "IPAMConfiguration",
    plural: "ipamconfigurations",
    singular: "ipamconfiguration",
    aliases: ["ipamconfig", "ipamconfigs"],
    namespaced: false,
    schema: ipamConfigurationSchema,
    columns: [
      NAME,
      col("STRICTAFFINITY", (r) => spec(r).strictAffinity),
      col("MAXBLOCKSPERHOST", (r) => spec(r).maxBlocksPerHost),
    ],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "KubeControllersConfiguration",
    plural: "kubecontrollersconfigurations",
    singular: "kubecontrollersconfiguration",
    aliases: ["kcc", "kccs"],
    namespaced: false,
    schema: kubeControllersConfigurationSchema,
    columns: [NAME],
  }),
  kindInfo({
    apiVersion: API_VERSION,
    kind: "ClusterInformation",
    plural: "clusterinformations",
    singular: "clusterinformation",
    aliases: ["clusterinfo", "clusterinfos"],
    namespaced: false,
    schema: clusterInformationSchema,
    columns: [
      NAME,
      col("CLUSTERGUID", (r) => spec(r).clusterGUID),
      col("CLUSTERTYPE", (r) => spec(r).clusterType),
      col("CALICOVERSION", (r) => spec(r).calicoVersion),
      col("DATASTOREREADY", (r) => spec(r).datastoreReady),
    ],
    readOnly: CLUSTER_INFORMATION_WRITERS,
  }),
  calicoNodeStatusKind(),
];

/** CalicoNodeStatus: each node daemon writes its own (src/node/calico_node_status.ts). */
function calicoNodeStatusKind(): KindInfo {
  const cns = (r: Resource) => r as unknown as CalicoNodeStatus;
  const bgp = (r: Resource) => cns(r).status?.bgp;
  return kindInfo({
    apiVersion: API_VERSION,
    kind: "CalicoNodeStatus",
    plural: "caliconodestatuses",
    singular: "caliconodestatus",
    aliases: ["cns", "caliconodestatuss"],
    namespaced: false,
    schema: calicoNodeStatusSchema,
    columns: [
      NAME,
      col("NODE", (r) => spec(r).node),
      col("ESTABLISHED", (r) => {
        const b = bgp(r);
        return b ? b.numberEstablishedV4 + b.numberEstablishedV6 : "";
      }),
      col("STATUS", (r) => freshnessText(cns(r), Date.now())),
    ],
    wideColumns: [
      NAME,
      col("NODE", (r) => spec(r).node),
      col("V4 UP/DOWN", (r) => {
        const b = bgp(r);
        return b ? `${b.numberEstablishedV4}/${b.numberNotEstablishedV4}` : "";
      }),
      col("V6 UP/DOWN", (r) => {
        const b = bgp(r);
        return b ? `${b.numberEstablishedV6}/${b.numberNotEstablishedV6}` : "";
      }),
      col("ROUTES", (r) => {
        const rt = cns(r).status?.routes;
        return rt ? (rt.routesV4?.length ?? 0) + (rt.routesV6?.length ?? 0) : "";
      }),
      col("AGENT", (r) => cns(r).status?.agent?.birdV4?.state),
      col("PEERS", (r) => peersText(cns(r))),
      col("STATUS", (r) => freshnessText(cns(r), Date.now())),
    ],
  });
}

function labelSelectorText(sel: AnySpec | undefined): string {
  if (sel === undefined) return "";
  const parts = Object.entries((sel.matchLabels ?? {}) as Record<string, string>).map(
    ([k, v]) => `${k}=${v}`,
  );
  for (const e of (sel.matchExpressions ?? []) as AnySpec[])
    parts.push(`${e.key} ${e.operator}${e.values ? ` (${e.values.join(",")})` : ""}`);
  return parts.length === 0 ? "<none>" : parts.join(",");
}

/**
 * Builds every kind's schema and runs each once on an empty document. For the bundles' V8 code
 * cache only (scripts/build.mjs): the functions compiled here are in it. A command builds only
 * the kinds it uses (schemas are lazy: lazy.ts).
 */
export function warmSchemas(): void {
  for (const k of KINDS) built(k.schema).safeParse({});
}

/** Finds a kind by plural, singular or short name (case-insensitive), as `ocelot get` takes it. */
export function resolveKindName(name: string): KindInfo | undefined {
  const n = name.toLowerCase();
  return KINDS.find(
    (k) =>
      k.plural === n || k.singular === n || k.aliases.includes(n) || k.kind.toLowerCase() === n,
  );
}

/** Finds a kind by the apiVersion and kind of a document. */
export function kindOf(apiVersion: string, kind: string): KindInfo | undefined {
  return KINDS.find((k) => k.apiVersion === apiVersion && k.kind === kind);
}

/** Namespace used for namespaced kinds when a document names none (as kubectl/calicoctl). */
export const DEFAULT_NAMESPACE = "default";

/**
 * The storage key of one resource: `/ocelot/resources/v3/<plural>/[<namespace>/]<name>`.
 * Key segments are validated names (DNS-1123), so they contain no '/'.
 */
export function resourceKey(info: KindInfo, name: string, namespace?: string): string {
  if (info.namespaced)
    return `${RESOURCE_PREFIX}${info.plural}/${namespace ?? DEFAULT_NAMESPACE}/${name}`;
  return `${RESOURCE_PREFIX}${info.plural}/${name}`;
}

/** Prefix for listing a kind, optionally restricted to one namespace. */
export function kindPrefix(info: KindInfo, namespace?: string): string {
  if (info.namespaced && namespace !== undefined)
    return `${RESOURCE_PREFIX}${info.plural}/${namespace}/`;
  return `${RESOURCE_PREFIX}${info.plural}/`;
}

/**
 * Validates one document and applies Calico's defaults. Throws ValidationError with every bad
 * field. Namespaced kinds get the default namespace when none is given.
 */
export function validateResource(doc: unknown): { info: KindInfo; resource: Resource } {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new ValidationError([
      { path: "", message: `expected a resource object, got ${quote(doc)}` },
    ]);
  }
  const { apiVersion, kind } = doc as { apiVersion?: unknown; kind?: unknown };
  if (typeof apiVersion !== "string")
    throw new ValidationError([
      {
        path: "apiVersion",
        message: apiVersion === undefined ? "is required" : `${quote(apiVersion)} is not a string`,
      },
    ]);
  if (typeof kind !== "string")
    throw new ValidationError([
      {
        path: "kind",
        message: kind === undefined ? "is required" : `${quote(kind)} is not a string`,
      },
    ]);
  const info = kindOf(apiVersion, kind);
  if (info === undefined) {
    const sameKind = KINDS.filter((k) => k.kind === kind);
    if (sameKind.length > 0) {
      throw new ValidationError([
        {
          path: "apiVersion",
          message: `${quote(apiVersion)} is not supported for kind ${quote(kind)} (use ${sameKind.map((k) => quote(k.apiVersion)).join(" or ")})`,
        },
      ]);
    }
    throw new ValidationError([
      {
        path: "kind",
        message: `${quote(kind)} is not a supported kind (${[...new Set(KINDS.map((k) => k.kind))].join(", ")})`,
      },
    ]);
  }
  const parsed = info.schema.safeParse(doc, { reportInput: true });
  if (!parsed.success) throw new ValidationError(toFieldIssues(parsed.error.issues));
  const resource = stripUndefined(parsed.data) as Resource;
  if (info.namespaced && resource.metadata.namespace === undefined)
    resource.metadata.namespace = DEFAULT_NAMESPACE;
  return { info, resource };
}

/** Issues for spec fields that an update may not change. */
export function immutableIssues(info: KindInfo, before: Resource, after: Resource): FieldIssue[] {
  const issues: FieldIssue[] = [];
  for (const f of info.immutable) {
    const a = (before.spec as AnySpec | undefined)?.[f];
    const b = (after.spec as AnySpec | undefined)?.[f];
    if (JSON.stringify(a) !== JSON.stringify(b)) {
      issues.push({
        path: `spec.${f}`,
        message: `${quote(b)} cannot replace ${quote(a)}: the field is immutable`,
      });
    }
  }
  return issues;
}

/** Drops keys whose value is undefined (zod keeps optional keys out, transforms may not). */
function stripUndefined(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripUndefined);
  if (typeof v === "object" && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = stripUndefined(x);
    return out;
  }
  return v;
}
