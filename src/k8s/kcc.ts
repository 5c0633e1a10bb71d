// KubeControllersConfiguration `default` as `ocelot kube-controllers` reads it (pure): which
// parts of the sync run, how often a full pass runs, and the IPAM leak grace `ocelot ipam gc`
// uses. As in Calico, a controller runs when its section under spec.controllers is present, and
// none runs that is absent; without the resource, everything runs with the flags' settings
// (Ocelot's behaviour before it was read). Ocelot's sync is one pass over all kinds, so:
//   namespace        -> Profiles kns.<ns>
//   serviceAccount   -> Profiles ksa.<ns>.<sa>
//   workloadEndpoint -> pod labels, profiles and service account onto WorkloadEndpoints
//   policy           -> Kubernetes NetworkPolicies into the datastore
//   node             -> a deleted Kubernetes Node's Calico Node, endpoints and IPAM affinities
// and the shortest reconcilerPeriod of the running ones is the full-pass period (Calico runs one
// per controller). node.leakGracePeriod is `ipam gc`'s --leak-grace when that flag is not given
// (0: no IPAM garbage collection, as Calico documents it);
// node.syncLabels (Calico's default Enabled) copies Kubernetes Node labels onto Calico Nodes
// (node_labels.ts); node.hostEndpoint.autoCreate Enabled keeps one `<node>-auto-hep` per Calico
// Node (auto_hep.ts) unless createDefaultHostEndpoint is Disabled, and the host endpoints of
// its templates (checked here; one with an interfacePattern makes nothing). Without the resource,
// kube-controllers creates Calico's default one (DEFAULT_KCC_SPEC, as Calico's does in either
// datastore mode) and reads that; the settings of no resource at all (every part, no labels
// copied, no host endpoints) are only what a reader sees before that, e.g. `ipam gc`.
// Not applied, each named in a warning: a template's interfacePattern, loadBalancer (no LoadBalancer IPAM), migration,
// etcdV3CompactionPeriod, healthChecks, debugProfilePort, prometheusMetricsPort,
// logSeverityScreen. Services and EndpointSlices are copied whatever the settings (Calico's
// Felix reads them from the API; Ocelot's agents need the copies). Not: reading the store or
// acting (controllers.ts, src/cli/ipam.ts).
import { parseDurationMs } from "../api/fields.js";
import { parseSelector } from "../api/selector.js";
import { parseCidr } from "../lib/ip.js";
import type { AutoHepPlan, AutoHepTemplate } from "./auto_hep.js";

export type SyncPart = "namespace" | "serviceAccount" | "workloadEndpoint" | "policy" | "node";
export const SYNC_PARTS: readonly SyncPart[] = [
  "namespace",
  "serviceAccount",
  "workloadEndpoint",
  "policy",
  "node",
];

export interface KubeControllersSettings {
  /** The parts of the sync that run. */
  enabled: ReadonlySet<SyncPart>;
  /** The full-pass period from reconcilerPeriod (absent: the caller's default). */
  resyncMs?: number;
  /** controllers.node.syncLabels: Kubernetes Node labels onto Calico Nodes. */
  syncLabels: boolean;
  /** controllers.node.hostEndpoint.autoCreate (and createDefaultHostEndpoint): auto HEPs. */
  autoHostEndpoints: boolean;
  /** The auto host endpoints wanted: the default one (as above) and the templates' (checked). */
  autoHep: AutoHepPlan;
  /** controllers.node.leakGracePeriod (absent: the caller's default; 0: IPAM gc off, as Calico). */
  leakGraceMs?: number;
  /** Settings present but not applied, one line each. */
  warnings: string[];
}

type Section = { reconcilerPeriod?: string } & Record<string, unknown>;

/**
 * The spec of the KubeControllersConfiguration `default` that Calico's kube-controllers creates
 * when there is none (its NewDefaultKubeControllersConfig): every controller at 5 min, node labels
 * synced, no auto host endpoints, a 15 min IPAM leak grace.
 */
export const DEFAULT_KCC_SPEC = {
  logSeverityScreen: "Info",
  healthChecks: "Enabled",
  etcdV3CompactionPeriod: "10m",
  controllers: {
    node: {
      reconcilerPeriod: "5m",
      syncLabels: "Enabled",
      hostEndpoint: { autoCreate: "Disabled", createDefaultHostEndpoint: "Enabled" },
      leakGracePeriod: "15m",
    },
    policy: { reconcilerPeriod: "5m" },
    workloadEndpoint: { reconcilerPeriod: "5m" },
    serviceAccount: { reconcilerPeriod: "5m" },
    namespace: { reconcilerPeriod: "5m" },
    loadBalancer: { assignIPs: "AllServices" },
  },
} as const;

/** The settings of a KubeControllersConfiguration spec; undefined (no resource): all parts. */
export function kubeControllersSettings(spec: unknown): KubeControllersSettings {
  if (spec === undefined || spec === null)
    return {
      enabled: new Set(SYNC_PARTS),
      syncLabels: false,
      autoHostEndpoints: false,
      autoHep: { defaultHostEndpoint: false, templates: [] },
      warnings: [],
    };
  const s = spec as Record<string, unknown> & { controllers?: Record<string, Section> };
  const controllers = s.controllers ?? {};
  const enabled = new Set(SYNC_PARTS.filter((p) => controllers[p] !== undefined));
  const warnings: string[] = [];
  const periods: number[] = [];
  for (const p of enabled) {
    const text = controllers[p]?.reconcilerPeriod;
    if (text === undefined) continue;
    const ms = parseDurationMs(text);
    if (ms === undefined || ms <= 0)
      warnings.push(`controllers.${p}.reconcilerPeriod "${text}" is not a period above 0: ignored`);
    else periods.push(ms);
  }
  const node = controllers.node as
    | {
        syncLabels?: string;
        leakGracePeriod?: string;
        hostEndpoint?: {
          autoCreate?: string;
          createDefaultHostEndpoint?: string;
          templates?: unknown[];
        };
      }
    | undefined;
  let leakGraceMs: number | undefined;
  if (node?.leakGracePeriod !== undefined) {
    const ms = parseDurationMs(node.leakGracePeriod);
    if (ms === undefined || ms < 0)
      warnings.push(
        `controllers.node.leakGracePeriod "${node.leakGracePeriod}" is not a duration: ignored`,
      );
    else leakGraceMs = ms;
  }
  const hep = node?.hostEndpoint;
  const autoCreate = hep?.autoCreate === "Enabled";
  const templates = autoCreate ? hepTemplates(hep?.templates ?? [], warnings) : [];
  if (controllers.loadBalancer !== undefined)
    warnings.push("controllers.loadBalancer is not applied: Ocelot has no LoadBalancer IPAM");
  if (controllers.migration !== undefined)
    warnings.push("controllers.migration is not applied: there is nothing to migrate");
  for (const f of [
    "etcdV3CompactionPeriod",
    "healthChecks",
    "debugProfilePort",
    "prometheusMetricsPort",
    "logSeverityScreen",
  ])
    if (s[f] !== undefined) warnings.push(`${f} is not applied by ocelot kube-controllers`);
  return {
    enabled,
    syncLabels: node !== undefined && node.syncLabels !== "Disabled",
    // Calico: createDefaultHostEndpoint defaults to Enabled.
    autoHostEndpoints: autoCreate && hep?.createDefaultHostEndpoint !== "Disabled",
    autoHep: {
      defaultHostEndpoint: autoCreate && hep?.createDefaultHostEndpoint !== "Disabled",
      templates,
    },
    ...(periods.length > 0 ? { resyncMs: Math.min(...periods) } : {}),
    ...(leakGraceMs !== undefined ? { leakGraceMs } : {}),
    warnings,
  };
}

/**
 * The host endpoint templates that can be applied, each checked as Calico's controller reads
 * it: a generateName, a nodeSelector that parses, interfaceCIDRs that are CIDRs. One that cannot
 * is left out with a warning naming it (the stored resource is the user's: the controller
 * cannot refuse it); an interfacePattern is named as not applied (it needs the Node's interface
 * list, which Ocelot's Node does not have, so such a template makes nothing).
 */
function hepTemplates(raw: unknown[], warnings: string[]): AutoHepTemplate[] {
  const out: AutoHepTemplate[] = [];
  const strings = (v: unknown): Record<string, string> =>
    typeof v === "object" && v !== null
      ? Object.fromEntries(Object.entries(v).filter(([, x]) => typeof x === "string"))
      : {};
  for (const [i, t] of raw.entries()) {
    const where = `controllers.node.hostEndpoint.templates[${i}]`;
    const x = (t ?? {}) as Record<string, unknown>;
    const generateName = typeof x.generateName === "string" ? x.generateName : "";
    if (generateName === "") {
      warnings.push(`${where}: generateName is missing: template not applied`);
      continue;
    }
    if (typeof x.interfacePattern === "string" && x.interfacePattern !== "") {
      warnings.push(
        `${where} (${generateName}): interfacePattern is not applied (Ocelot's Node has no interface list): the template makes no host endpoint`,
      );
      continue;
    }
    const nodeSelector = typeof x.nodeSelector === "string" ? x.nodeSelector : "";
    try {
      if (nodeSelector !== "") parseSelector(nodeSelector);
    } catch (err) {
      warnings.push(
        `${where} (${generateName}): nodeSelector ${JSON.stringify(nodeSelector)} does not parse (${(err as Error).message}): template not applied`,
      );
      continue;
    }
    const cidrs = Array.isArray(x.interfaceCIDRs) ? x.interfaceCIDRs : [];
    const bad = cidrs.find((c) => {
      try {
        parseCidr(String(c), false);
        return false;
      } catch {
        return true;
      }
    });
    if (bad !== undefined) {
      warnings.push(
        `${where} (${generateName}): interfaceCIDRs entry ${JSON.stringify(bad)} is not a CIDR: template not applied`,
      );
      continue;
    }
    out.push({
      generateName,
      nodeSelector,
      interfaceCIDRs: cidrs.map(String),
      labels: strings(x.labels),
      annotations: strings(x.annotations),
    });
  }
  return out;
}

/** The sync part an action of sync.ts belongs to (undefined: always done). */
export function partOf(a: {
  op: string;
  kind?: string;
  name?: string;
  resource?: { kind: string; metadata: { name: string } };
}): SyncPart | undefined {
  if (a.op === "deleteNode") return "node";
  const kind = a.resource?.kind ?? a.kind;
  const name = a.resource?.metadata.name ?? a.name ?? "";
  if (kind === "WorkloadEndpoint") return "workloadEndpoint";
  if (kind === "Node" || kind === "HostEndpoint") return "node";
  if (kind === "NetworkPolicy") return "policy";
  if (kind === "Profile")
    return name.startsWith("kns.")
      ? "namespace"
      : name.startsWith("ksa.")
        ? "serviceAccount"
        : undefined;
  return undefined;
}
