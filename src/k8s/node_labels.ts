// Calico's node label controller in etcd mode (kube-controllers' node `syncLabels`), pure: each
// Calico Node whose Kubernetes Node is known (spec.orchRefs of orchestrator k8s, else the same
// name) gets the Kubernetes Node's labels, and loses those it had from Kubernetes before that
// Kubernetes no longer has; the labels copied are recorded in the annotation
// `projectcalico.org/kube-labels` (JSON), so labels set on the Calico Node by hand (ocelot apply)
// stay. Not: whether it runs (kcc.ts), the writes (controllers.ts).
import type { Resource } from "../api/registry.js";
import type { SyncAction } from "./sync.js";

export const KUBE_LABELS_ANNOTATION = "projectcalico.org/kube-labels";

interface KubeNode {
  metadata?: { name?: string; labels?: Record<string, string> };
}

function k8sNameOf(node: Resource): string {
  const refs = (node.spec as { orchRefs?: { orchestrator?: string; nodeName?: string }[] })
    ?.orchRefs;
  return refs?.find((r) => r.orchestrator === "k8s")?.nodeName ?? node.metadata.name;
}

/** The writes that bring the Calico Nodes' labels in step with the Kubernetes Nodes'. */
export function planNodeLabels(kubeNodes: readonly unknown[], calicoNodes: readonly Resource[]) {
  const byName = new Map<string, Record<string, string>>();
  for (const n of kubeNodes as KubeNode[])
    if (n?.metadata?.name) byName.set(n.metadata.name, { ...(n.metadata.labels ?? {}) });
  const actions: SyncAction[] = [];
  for (const node of calicoNodes) {
    const want = byName.get(k8sNameOf(node));
    if (want === undefined) continue;
    const annotations = { ...(node.metadata.annotations ?? {}) };
    let old: Record<string, string> = {};
    try {
      old = JSON.parse(annotations[KUBE_LABELS_ANNOTATION] ?? "{}") as Record<string, string>;
    } catch {
      old = {};
    }
    const labels = { ...(node.metadata.labels ?? {}) };
    let changed = false;
    for (const [k, v] of Object.entries(want))
      if (labels[k] !== v) {
        labels[k] = v;
        changed = true;
      }
    for (const k of Object.keys(old))
      if (!(k in want) && k in labels) {
        delete labels[k];
        changed = true;
      }
    const record = JSON.stringify(Object.fromEntries(Object.entries(want).sort()));
    if (!changed && annotations[KUBE_LABELS_ANNOTATION] === record) continue;
    annotations[KUBE_LABELS_ANNOTATION] = record;
    actions.push({
      op: "put",
      resource: { ...node, metadata: { ...node.metadata, labels, annotations } } as Resource,
      why: "Kubernetes Node labels (syncLabels)",
    });
  }
  return actions;
}
