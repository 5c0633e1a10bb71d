// What `ocelot kube-controllers` writes into the datastore for what the Kubernetes API holds, as
// Calico's kube-controllers do in etcd mode: pure, values in and actions out (the informers and
// the writes are controllers.ts's).
// - Namespaces -> Profiles `kns.<ns>` (labelsToApply: `pcns.<key>` of every label and
//   `pcns.projectcalico.org/name`; Allow rules both ways, as Calico writes them);
// - ServiceAccounts -> Profiles `ksa.<ns>.<sa>` (labelsToApply `pcsa.<key>`,
//   `pcsa.projectcalico.org/name`);
// - Pods -> their WorkloadEndpoints' labels (pod_labels.ts: pod labels, `pcns.*`, Calico's
//   three), `profiles` [kns, ksa] and `serviceAccountName`; an endpoint is only updated, never
//   made or removed here (the CNI plugin does both);
// - NetworkPolicies (networking.k8s.io/v1) -> stored Kubernetes NetworkPolicies, as `ocelot
//   apply` stores them (validated the same way: one Kubernetes would accept but Ocelot refuses is
//   reported, and the stored one, if any, left as it was);
// - Services (v1) and EndpointSlices (discovery.k8s.io/v1) -> stored copies in the Kubernetes
//   shape, trimmed to what policy (`services` matches) and Service IP advertisement read
//   (src/api/k8s_service.ts); Calico's Felix reads them from the API itself, Ocelot's agents
//   from the datastore;
// - Nodes: a Calico Node whose Kubernetes Node is gone is deleted with its endpoints and its IPAM
//   affinities released (Calico's node controller). Which Calico Node belongs to which Kubernetes
//   Node: `spec.orchRefs` of orchestrator `k8s`; a Calico Node without one is deleted only on an
//   observed deletion of the Kubernetes Node of its name (never by a resync alone).
// A full pass over everything is a resync: profiles and policies that Kubernetes no longer has are
// deleted (only `kns.`/`ksa.` profiles: others are the user's).
import { ValidationError } from "../api/errors.js";
import { type Resource, validateResource } from "../api/registry.js";
import { endpointLabels, podFacts } from "./pod_labels.js";

export const NAMESPACE_PROFILE_PREFIX = "kns.";
export const SERVICE_ACCOUNT_PROFILE_PREFIX = "ksa.";
export const SERVICE_ACCOUNT_LABEL_PREFIX = "pcsa.";
/** The label carrying the namespace's / service account's own name in labelsToApply. */
export const NAME_LABEL = "projectcalico.org/name";
const CALICO = "projectcalico.org/v3";
const K8S_NETWORKING = "networking.k8s.io/v1";
const ORCHESTRATOR = "k8s";

/** Kubernetes objects as the API (or the client's informer cache) returns them. */
export interface KubeState {
  pods: unknown[];
  namespaces: unknown[];
  serviceAccounts: unknown[];
  nodes: unknown[];
  networkPolicies: unknown[];
  services?: unknown[];
  endpointSlices?: unknown[];
  /** Kubernetes Nodes whose deletion was observed since the last pass. */
  deletedNodes?: readonly string[];
}

/** What the datastore holds of the kinds the controllers write. */
export interface StoreState {
  workloadEndpoints: Resource[];
  profiles: Resource[];
  nodes: Resource[];
  k8sNetworkPolicies: Resource[];
  services?: Resource[];
  endpointSlices?: Resource[];
}

export type SyncAction =
  /** Create (no resourceVersion) or replace at the stored resourceVersion (compare-and-swap). */
  | { op: "put"; resource: Resource; why: string }
  | {
      op: "delete";
      apiVersion: string;
      kind: string;
      name: string;
      namespace?: string;
      resourceVersion?: string;
      why: string;
    }
  /** Delete a Calico Node, its WorkloadEndpoints and release its IPAM affinities. */
  | { op: "deleteNode"; name: string; resourceVersion?: string; why: string };

export interface SyncPlan {
  actions: SyncAction[];
  /** Kubernetes objects not written, with why (one line each). */
  refused: string[];
}

interface Meta {
  name: string;
  namespace?: string;
  labels: Record<string, string>;
}

function meta(o: unknown): Meta | undefined {
  const m = (o as { metadata?: { name?: unknown; namespace?: unknown; labels?: unknown } })
    ?.metadata;
  if (typeof m?.name !== "string" || m.name === "") return undefined;
  return {
    name: m.name,
    ...(typeof m.namespace === "string" && m.namespace !== "" ? { namespace: m.namespace } : {}),
    labels: stringMap(m.labels),
  };
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof v !== "object" || v === null) return out;
  for (const [k, x] of Object.entries(v)) if (typeof x === "string") out[k] = x;
  return out;
}

/** JSON with object keys sorted: the comparison of stored and wanted values. */
export function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === "object" && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : x,
  );
}

export const namespaceProfileName = (ns: string) => `${NAMESPACE_PROFILE_PREFIX}${ns}`;
export const serviceAccountProfileName = (ns: string, sa: string) =>
  `${SERVICE_ACCOUNT_PROFILE_PREFIX}${ns}.${sa}`;

/** The `kns.<ns>` Profile of a Namespace object. */
export function namespaceProfile(ns: unknown): Resource | undefined {
  const m = meta(ns);
  if (!m) return undefined;
  const labelsToApply: Record<string, string> = {};
  for (const [k, v] of Object.entries(m.labels)) labelsToApply[`pcns.${k}`] = v;
  labelsToApply[`pcns.${NAME_LABEL}`] = m.name;
  return {
    apiVersion: CALICO,
    kind: "Profile",
    metadata: { name: namespaceProfileName(m.name) },
    spec: { ingress: [{ action: "Allow" }], egress: [{ action: "Allow" }], labelsToApply },
  };
}

/** The `ksa.<ns>.<sa>` Profile of a ServiceAccount object. */
export function serviceAccountProfile(sa: unknown): Resource | undefined {
  const m = meta(sa);
  if (!m?.namespace) return undefined;
  const labelsToApply: Record<string, string> = {};
  for (const [k, v] of Object.entries(m.labels))
    labelsToApply[`${SERVICE_ACCOUNT_LABEL_PREFIX}${k}`] = v;
  labelsToApply[`${SERVICE_ACCOUNT_LABEL_PREFIX}${NAME_LABEL}`] = m.name;
  return {
    apiVersion: CALICO,
    kind: "Profile",
    metadata: { name: serviceAccountProfileName(m.namespace, m.name) },
    spec: { labelsToApply },
  };
}

/**
 * A Kubernetes NetworkPolicy object as Ocelot stores it: name, namespace, labels and the spec
 * (`from`/`to`/`ports`/`podSelector`/`policyTypes`). The client's typed objects name `from`
 * `_from`; both spellings are read.
 */
export function k8sNetworkPolicyResource(np: unknown): Resource | undefined {
  const m = meta(np);
  if (!m?.namespace) return undefined;
  const spec = renameFrom((np as { spec?: unknown }).spec ?? {});
  return {
    apiVersion: K8S_NETWORKING,
    kind: "NetworkPolicy",
    metadata: {
      name: m.name,
      namespace: m.namespace,
      ...(Object.keys(m.labels).length > 0 ? { labels: m.labels } : {}),
    },
    spec,
  };
}

/** A deep copy without undefined or null members, `_from` read as `from`. */
function renameFrom(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(renameFrom);
  if (v instanceof Date) return v.toISOString();
  if (v === null || typeof v !== "object") return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (x === undefined || x === null) continue;
    out[k === "_from" ? "from" : k] = renameFrom(x);
  }
  return out;
}

const wepKey = (ns: string, pod: string) => `${ns}/${pod}`;

/** The WorkloadEndpoint as it should be for its pod, or undefined when it already is. */
export function endpointUpdate(
  wep: Resource,
  pod: unknown,
  namespace: unknown,
): Resource | undefined {
  const ns = wep.metadata.namespace ?? "default";
  const facts = podFacts(pod, namespace);
  const labels = endpointLabels(ns, ORCHESTRATOR, facts);
  const spec = { ...(wep.spec as Record<string, unknown>) };
  const profiles = [namespaceProfileName(ns)];
  if (facts.serviceAccount) profiles.push(serviceAccountProfileName(ns, facts.serviceAccount));
  const want = {
    labels,
    profiles,
    serviceAccountName: facts.serviceAccount,
  };
  const have = {
    labels: wep.metadata.labels ?? {},
    profiles: spec.profiles ?? [],
    serviceAccountName: spec.serviceAccountName,
  };
  if (canonical(want) === canonical(have)) return undefined;
  spec.profiles = profiles;
  if (facts.serviceAccount) spec.serviceAccountName = facts.serviceAccount;
  else delete spec.serviceAccountName;
  return { ...wep, metadata: { ...wep.metadata, labels }, spec };
}

/** The same content (labels, annotations, spec) once validated as `ocelot apply` would. */
function sameContent(stored: Resource, validated: Resource): boolean {
  const pick = (r: Resource) => ({
    labels: r.metadata.labels ?? {},
    annotations: r.metadata.annotations ?? {},
    spec: r.spec ?? {},
  });
  return canonical(pick(stored)) === canonical(pick(validated));
}

function validated(r: Resource): { resource?: Resource; error?: string } {
  try {
    return { resource: validateResource(r).resource };
  } catch (err) {
    if (err instanceof ValidationError) return { error: err.message };
    throw err;
  }
}

/** The Kubernetes Node name a Calico Node belongs to, from `spec.orchRefs` (k8s). */
export function k8sNodeNameOf(node: Resource): string | undefined {
  const refs = (node.spec as { orchRefs?: { orchestrator?: string; nodeName?: string }[] })
    ?.orchRefs;
  const ref = refs?.find((r) => r.orchestrator === ORCHESTRATOR);
  return ref ? (ref.nodeName ?? node.metadata.name) : undefined;
}

/** Every write that makes the datastore agree with Kubernetes (a full resync). */
export function planSync(kube: KubeState, store: StoreState): SyncPlan {
  const actions: SyncAction[] = [];
  const refused: string[] = [];

  // Profiles: kns.* and ksa.* from Namespaces and ServiceAccounts.
  const wantedProfiles = new Map<string, Resource>();
  for (const ns of kube.namespaces) {
    const p = namespaceProfile(ns);
    if (p) wantedProfiles.set(p.metadata.name, p);
  }
  for (const sa of kube.serviceAccounts) {
    const p = serviceAccountProfile(sa);
    if (p) wantedProfiles.set(p.metadata.name, p);
  }
  const storedProfiles = new Map(store.profiles.map((p) => [p.metadata.name, p]));
  for (const [name, want] of wantedProfiles) {
    const v = validated(want);
    if (!v.resource) {
      refused.push(`profile "${name}": ${v.error}`);
      continue;
    }
    const have = storedProfiles.get(name);
    if (have && sameContent(have, v.resource)) continue;
    actions.push(put(v.resource, have, have ? "labels changed" : "new"));
  }
  for (const [name, have] of storedProfiles) {
    const ours =
      name.startsWith(NAMESPACE_PROFILE_PREFIX) || name.startsWith(SERVICE_ACCOUNT_PROFILE_PREFIX);
    if (ours && !wantedProfiles.has(name)) actions.push(del(have, "its Kubernetes object is gone"));
  }

  // WorkloadEndpoints of Kubernetes pods: labels, profiles, service account.
  const pods = new Map<string, unknown>();
  for (const p of kube.pods) {
    const m = meta(p);
    if (m?.namespace) pods.set(wepKey(m.namespace, m.name), p);
  }
  const namespaces = new Map<string, unknown>();
  for (const n of kube.namespaces) {
    const m = meta(n);
    if (m) namespaces.set(m.name, n);
  }
  for (const wep of store.workloadEndpoints) {
    const spec = wep.spec as { orchestrator?: string; pod?: string };
    const ns = wep.metadata.namespace ?? "default";
    if (spec?.orchestrator !== ORCHESTRATOR || !spec.pod) continue;
    const pod = pods.get(wepKey(ns, spec.pod));
    const namespace = namespaces.get(ns);
    if (pod === undefined || namespace === undefined) continue; // CNI DEL removes it
    const next = endpointUpdate(wep, pod, namespace);
    if (!next) continue;
    const v = validated(next);
    if (!v.resource) {
      refused.push(`workloadendpoint "${ns}/${wep.metadata.name}": ${v.error}`);
      continue;
    }
    actions.push(put(v.resource, wep, `pod ${ns}/${spec.pod} labels`));
  }

  // Kubernetes NetworkPolicies.
  const wantedPolicies = new Map<string, Resource>();
  const storedPolicies = new Map(
    store.k8sNetworkPolicies.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p]),
  );
  for (const np of kube.networkPolicies) {
    const r = k8sNetworkPolicyResource(np);
    if (!r) continue;
    const key = `${r.metadata.namespace}/${r.metadata.name}`;
    wantedPolicies.set(key, r);
    const v = validated(r);
    const have = storedPolicies.get(key);
    if (!v.resource) {
      refused.push(
        `networkpolicy "${key}": ${v.error}${have ? " (the stored one is left as it was)" : ""}`,
      );
      continue;
    }
    if (have && sameContent(have, v.resource)) continue;
    actions.push(put(v.resource, have, have ? "changed" : "new"));
  }
  for (const [key, have] of storedPolicies)
    if (!wantedPolicies.has(key)) actions.push(del(have, "gone from Kubernetes"));

  // Services and EndpointSlices: stored copies (a kind the sync was not given is left alone).
  if (kube.services !== undefined)
    mirror(kube.services, store.services ?? [], serviceResource, "service", actions, refused);
  if (kube.endpointSlices !== undefined)
    mirror(
      kube.endpointSlices,
      store.endpointSlices ?? [],
      endpointSliceResource,
      "endpointslice",
      actions,
      refused,
    );

  // Nodes.
  const k8sNodes = new Set(kube.nodes.flatMap((n) => meta(n)?.name ?? []));
  const deleted = new Set(kube.deletedNodes ?? []);
  for (const node of store.nodes) {
    const ref = k8sNodeNameOf(node);
    const name = node.metadata.name;
    const gone = ref !== undefined ? !k8sNodes.has(ref) : deleted.has(name) && !k8sNodes.has(name);
    if (gone)
      actions.push({
        op: "deleteNode",
        name,
        ...(node.metadata.resourceVersion
          ? { resourceVersion: node.metadata.resourceVersion }
          : {}),
        why: `Kubernetes Node "${ref ?? name}" was deleted`,
      });
  }
  return { actions, refused };
}

function put(want: Resource, have: Resource | undefined, why: string): SyncAction {
  const metadata = { ...want.metadata };
  delete metadata.resourceVersion;
  if (have?.metadata.resourceVersion) metadata.resourceVersion = have.metadata.resourceVersion;
  return { op: "put", resource: { ...want, metadata }, why };
}

function del(have: Resource, why: string): SyncAction {
  return {
    op: "delete",
    apiVersion: have.apiVersion,
    kind: have.kind,
    name: have.metadata.name,
    ...(have.metadata.namespace ? { namespace: have.metadata.namespace } : {}),
    ...(have.metadata.resourceVersion ? { resourceVersion: have.metadata.resourceVersion } : {}),
    why,
  };
}

/** Every stored field but the envelope's bookkeeping (resourceVersion, uid, timestamps). */
function content(r: Resource): string {
  const { metadata, ...rest } = r as Resource & Record<string, unknown>;
  return canonical({
    ...rest,
    labels: metadata.labels ?? {},
    annotations: metadata.annotations ?? {},
  });
}

/** Puts and deletes making `stored` a copy of `kube` (as `to` turns each object into a record). */
function mirror(
  kube: unknown[],
  stored: Resource[],
  to: (o: unknown) => Resource | undefined,
  what: string,
  actions: SyncAction[],
  refused: string[],
): void {
  const have = new Map(stored.map((r) => [`${r.metadata.namespace}/${r.metadata.name}`, r]));
  const wanted = new Set<string>();
  for (const o of kube) {
    const r = to(o);
    if (!r) continue;
    const key = `${r.metadata.namespace}/${r.metadata.name}`;
    wanted.add(key);
    const v = validated(r);
    const old = have.get(key);
    if (!v.resource) {
      refused.push(
        `${what} "${key}": ${v.error}${old ? " (the stored one is left as it was)" : ""}`,
      );
      continue;
    }
    if (old && content(old) === content(v.resource)) continue;
    actions.push(put(v.resource, old, old ? "changed" : "new"));
  }
  for (const [key, old] of have)
    if (!wanted.has(key)) actions.push(del(old, "gone from Kubernetes"));
}

/** The fields of a list of objects kept (each object reduced to `keys`, empty ones dropped). */
function pick(v: unknown, keys: readonly string[]): Record<string, unknown> | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    const x = (v as Record<string, unknown>)[k];
    if (x !== undefined && x !== null) out[k] = x;
  }
  return out;
}
const list = (v: unknown, keys: readonly string[]) =>
  Array.isArray(v) ? v.flatMap((x) => pick(x, keys) ?? []) : undefined;

function kubeMeta(m: Meta) {
  return {
    name: m.name,
    namespace: m.namespace,
    ...(Object.keys(m.labels).length > 0 ? { labels: m.labels } : {}),
  };
}

/** A Service as Ocelot stores it: type, cluster/external/load-balancer IPs, traffic policy, ports. */
export function serviceResource(o: unknown): Resource | undefined {
  const m = meta(o);
  if (!m?.namespace) return undefined;
  const raw = renameFrom((o as { spec?: unknown }).spec ?? {});
  const spec = pick(raw, [
    "type",
    "clusterIP",
    "clusterIPs",
    "ipFamilies",
    "externalIPs",
    "loadBalancerIP",
    "externalTrafficPolicy",
    "internalTrafficPolicy",
    "selector",
    "externalName",
  ]) as Record<string, unknown>;
  const ports = list((raw as { ports?: unknown }).ports, [
    "name",
    "protocol",
    "port",
    "targetPort",
    "nodePort",
  ]);
  if (ports) spec.ports = ports;
  const ingress = list(
    (
      renameFrom((o as { status?: unknown }).status ?? {}) as {
        loadBalancer?: { ingress?: unknown };
      }
    ).loadBalancer?.ingress,
    ["ip", "hostname"],
  );
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: kubeMeta(m),
    spec,
    ...(ingress && ingress.length > 0 ? { status: { loadBalancer: { ingress } } } : {}),
  } as Resource;
}

/** An EndpointSlice as Ocelot stores it: address type, endpoints (addresses, ready, node), ports. */
export function endpointSliceResource(o: unknown): Resource | undefined {
  const m = meta(o);
  if (!m?.namespace) return undefined;
  const raw = renameFrom(o) as Record<string, unknown>;
  if (raw.addressType === "FQDN") return undefined; // no addresses to match or advertise
  const endpoints = (Array.isArray(raw.endpoints) ? raw.endpoints : []).map((e) => {
    const x = pick(e, ["addresses", "nodeName"]) as Record<string, unknown>;
    const c = pick((e as { conditions?: unknown }).conditions, ["ready", "serving", "terminating"]);
    if (c && Object.keys(c).length > 0) x.conditions = c;
    const t = pick((e as { targetRef?: unknown }).targetRef, ["kind", "name", "namespace"]);
    if (t?.name !== undefined) x.targetRef = t;
    return x;
  });
  const ports = list(raw.ports, ["name", "protocol", "port"]);
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: kubeMeta(m),
    addressType: raw.addressType,
    ...(endpoints.length > 0 ? { endpoints } : {}),
    ...(ports ? { ports } : {}),
  } as unknown as Resource;
}
