// Kubernetes facts about one pod, as they become a WorkloadEndpoint's labels: the pod's own
// labels, its namespace's labels prefixed `pcns.` (Calico's namespace-label prefix; Calico
// applies them through the `kns.<ns>` Profile only, which `ocelot kube-controllers` keeps too; they
// are also written on the endpoint itself so that a node without kube-controllers sees them), and
// Calico's own `projectcalico.org/namespace`, `…/orchestrator` and
// `…/serviceaccount`, which win over a pod label of the same key. Pure: no client, no I/O (the
// API server is read by pod_reader.ts).

export const NAMESPACE_LABEL_PREFIX = "pcns.";
export const LABEL_NAMESPACE = "projectcalico.org/namespace";
export const LABEL_ORCHESTRATOR = "projectcalico.org/orchestrator";
export const LABEL_SERVICE_ACCOUNT = "projectcalico.org/serviceaccount";

/** What the API server says about one pod and its namespace. */
export interface PodFacts {
  labels: Record<string, string>;
  namespaceLabels: Record<string, string>;
  /** spec.serviceAccountName ("" or absent: none). */
  serviceAccount?: string;
  /** The pod's annotations (Calico's IPAM ones are read from them: pod_ipam.ts). */
  annotations?: Record<string, string>;
  /** Its containers' named ports and host ports, as the WorkloadEndpoint's `ports`. */
  ports?: PodPort[];
}

/** One container port as Calico's conversion keeps it (named, or with a host port). */
export interface PodPort {
  name?: string;
  protocol: "TCP" | "UDP" | "SCTP";
  port: number;
  hostPort?: number;
  hostIP?: string;
}

/** The labels of the pod's WorkloadEndpoint, Calico's keys last so that they win. */
export function endpointLabels(
  namespace: string,
  orchestrator: string,
  facts?: PodFacts,
): Record<string, string> {
  const out: Record<string, string> = {};
  if (facts) {
    Object.assign(out, facts.labels);
    for (const [k, v] of Object.entries(facts.namespaceLabels))
      out[`${NAMESPACE_LABEL_PREFIX}${k}`] = v;
  }
  out[LABEL_NAMESPACE] = namespace;
  out[LABEL_ORCHESTRATOR] = orchestrator;
  if (facts?.serviceAccount) out[LABEL_SERVICE_ACCOUNT] = facts.serviceAccount;
  return out;
}

/** The facts from a pod and a namespace object as the API returns them (unknown shapes: {}). */
export function podFacts(pod: unknown, namespace: unknown): PodFacts {
  const p = pod as {
    metadata?: { labels?: unknown; annotations?: unknown };
    spec?: { serviceAccountName?: unknown; containers?: unknown; initContainers?: unknown };
  };
  const n = namespace as { metadata?: { labels?: unknown } };
  const sa = p?.spec?.serviceAccountName;
  const annotations = stringMap(p?.metadata?.annotations);
  const ports = [
    ...containerPorts(p?.spec?.containers),
    ...containerPorts(p?.spec?.initContainers),
  ];
  return {
    ...(ports.length > 0 ? { ports } : {}),
    labels: stringMap(p?.metadata?.labels),
    namespaceLabels: stringMap(n?.metadata?.labels),
    ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
    ...(typeof sa === "string" && sa !== "" ? { serviceAccount: sa } : {}),
  };
}

/**
 * The ports of a container list that Calico's conversion keeps (libcalico-go
 * appendEndpointPorts): a container port with a name or a host port; the protocol TCP when
 * absent, a port of another protocol left out.
 */
function containerPorts(containers: unknown): PodPort[] {
  const out: PodPort[] = [];
  if (!Array.isArray(containers)) return out;
  for (const c of containers) {
    const ports = (c as { ports?: unknown } | null)?.ports;
    if (!Array.isArray(ports)) continue;
    for (const raw of ports) {
      const cp = raw as {
        name?: unknown;
        containerPort?: unknown;
        hostPort?: unknown;
        hostIP?: unknown;
        protocol?: unknown;
      };
      const port = typeof cp?.containerPort === "number" ? cp.containerPort : 0;
      const name = typeof cp?.name === "string" ? cp.name : "";
      const hostPort = typeof cp?.hostPort === "number" ? cp.hostPort : 0;
      if (port < 1 || port > 65535 || (name === "" && hostPort === 0)) continue;
      const proto = cp.protocol === undefined || cp.protocol === "" ? "TCP" : cp.protocol;
      if (proto !== "TCP" && proto !== "UDP" && proto !== "SCTP") continue;
      out.push({
        ...(name !== "" ? { name } : {}),
        protocol: proto,
        port,
        ...(hostPort > 0 && hostPort <= 65535 ? { hostPort } : {}),
        ...(typeof cp.hostIP === "string" && cp.hostIP !== "" ? { hostIP: cp.hostIP } : {}),
      });
    }
  }
  return out;
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof v !== "object" || v === null) return out;
  for (const [k, x] of Object.entries(v)) if (typeof x === "string") out[k] = x;
  return out;
}
