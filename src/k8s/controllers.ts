// `ocelot kube-controllers`' engine: the thin adapter between the Kubernetes API (list-and-watch
// through `@kubernetes/client-node`'s informers, loaded lazily) and the datastore (the resource
// client). It keeps one informer per kind (Pods, Namespaces, ServiceAccounts, Nodes,
// NetworkPolicies, Services, EndpointSlices), listing in pages and restarting a failed watch from its last resourceVersion
// (the client relists by itself on 410 Gone), and runs passes: after any change (debounced), on a
// new WorkloadEndpoint in the datastore (a pod relabelled before its CNI ADD finished), and every
// resync period, it reads the datastore, asks sync.ts for the writes (pure) and makes them, each a
// compare-and-swap. Each pass reads the KubeControllersConfiguration `default` (kcc.ts): the
// parts it disables are not written, its reconcilerPeriod replaces the resync period, what it
// sets that is not applied is logged once per change; when there is none, Calico's default is
// created (as Calico's kube-controllers does, also after a deletion). With the node controller on,
// node labels (node_labels.ts) and auto host endpoints (auto_hep.ts) follow the Calico Nodes: a
// change to a Calico Node, a HostEndpoint or the configuration in the datastore starts a pass. Owns: scheduling, the first-list gate (no
// pass, so no deletion, before every kind is listed), logging. Not: what is written (sync.ts).
import { ResourceClient, ResourceError } from "../api/client.js";
import { kindOf, kindPrefix, type Resource } from "../api/registry.js";
import type { Datastore, Watch } from "../datastore/types.js";
import { releaseNodeAffinities } from "../ipam/gc_run.js";
import { IpamStore } from "../ipam/store.js";
import { planAutoHostEndpoints } from "./auto_hep.js";
import {
  DEFAULT_KCC_SPEC,
  type KubeControllersSettings,
  kubeControllersSettings,
  partOf,
} from "./kcc.js";
import { planNodeLabels } from "./node_labels.js";
import { KubeError, kubeError } from "./pod_reader.js";
import { type KubeState, planSync, type SyncAction } from "./sync.js";

export interface KubeControllersOptions {
  /** Path of the kubeconfig (its current context's cluster and credentials). */
  kubeconfig: string;
  store: Datastore;
  /** Wait after a change before a pass, gathering others (default 20 ms). */
  debounceMs?: number;
  /** A full pass at least this often (default 5 min). */
  resyncMs?: number;
  /** Wait before restarting a failed list or watch (default 1 s). */
  retryMs?: number;
  /** Items per list page (default 500). */
  pageSize?: number;
  log?: (line: string) => void;
  /** Called after each pass with what it did. */
  onPass?: (r: PassResult) => void;
}

export interface PassResult {
  /** Actions made, one line each (`put profile "kns.a" (new)`). */
  done: string[];
  failed: string[];
  refused: string[];
  /** When the pass started and ended (Date.now()). */
  startedAt: number;
  endedAt: number;
}

export interface KubeControllers {
  /** Settles when every kind has been listed once and the first pass is done. */
  readonly synced: Promise<void>;
  stop(): Promise<void>;
}

type KindName =
  | "pods"
  | "namespaces"
  | "serviceAccounts"
  | "nodes"
  | "networkPolicies"
  | "services"
  | "endpointSlices";

const info = (apiVersion: string, kind: string) => {
  const i = kindOf(apiVersion, kind);
  if (!i) throw new Error(`Kind ${kind} is not registered`);
  return i;
};

export async function startKubeControllers(o: KubeControllersOptions): Promise<KubeControllers> {
  const k8s = await import("@kubernetes/client-node");
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const debounceMs = o.debounceMs ?? 20;
  const retryMs = o.retryMs ?? 1000;
  const pageSize = o.pageSize ?? 500;
  const kc = new k8s.KubeConfig();
  try {
    kc.loadFromFile(o.kubeconfig);
  } catch (err) {
    throw new KubeError(
      `Kubeconfig ${o.kubeconfig} cannot be read: ${(err as Error).message.split("\n")[0]}`,
      false,
    );
  }
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new KubeError(`Kubeconfig ${o.kubeconfig} names no current cluster`, false);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const net = kc.makeApiClient(k8s.NetworkingV1Api);
  const discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
  const client = new ResourceClient(o.store);
  const WEP = info("projectcalico.org/v3", "WorkloadEndpoint");
  const PROFILE = info("projectcalico.org/v3", "Profile");
  const NODE = info("projectcalico.org/v3", "Node");
  const KNP = info("networking.k8s.io/v1", "NetworkPolicy");
  const SVC = info("v1", "Service");
  const EPS = info("discovery.k8s.io/v1", "EndpointSlice");
  const KCC = info("projectcalico.org/v3", "KubeControllersConfiguration");
  const HEP = info("projectcalico.org/v3", "HostEndpoint");
  const defaultResyncMs = o.resyncMs ?? 300_000;
  let resyncMs = defaultResyncMs;
  let lastWarnings = "";
  let resync: NodeJS.Timeout | undefined;

  type List = { metadata?: { resourceVersion?: string; _continue?: string }; items: unknown[] };
  /** Every page of a list (limit/continue), as one list at the first page's resourceVersion. */
  const paged =
    (what: string, fn: (p: { limit: number; _continue?: string }) => Promise<List>) => async () => {
      const items: unknown[] = [];
      let cont: string | undefined;
      let rv: string | undefined;
      do {
        const page = await fn({ limit: pageSize, ...(cont ? { _continue: cont } : {}) });
        items.push(...page.items);
        rv ??= page.metadata?.resourceVersion;
        cont = page.metadata?._continue || undefined;
      } while (cont);
      listed.add(what as KindName);
      return { metadata: { resourceVersion: rv ?? "" }, items };
    };

  const listed = new Set<KindName>();
  const deletedNodes = new Set<string>();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  let resolveSynced: () => void = () => {};
  const synced = new Promise<void>((r) => {
    resolveSynced = r;
  });
  let firstPassDone = false;

  // biome-ignore lint/suspicious/noExplicitAny: the informers hold the client's typed objects.
  const informers: Record<KindName, any> = {
    pods: k8s.makeInformer(
      kc,
      "/api/v1/pods",
      paged("pods", (p) => core.listPodForAllNamespaces(p) as Promise<List>) as never,
    ),
    namespaces: k8s.makeInformer(
      kc,
      "/api/v1/namespaces",
      paged("namespaces", (p) => core.listNamespace(p) as Promise<List>) as never,
    ),
    serviceAccounts: k8s.makeInformer(
      kc,
      "/api/v1/serviceaccounts",
      paged(
        "serviceAccounts",
        (p) => core.listServiceAccountForAllNamespaces(p) as Promise<List>,
      ) as never,
    ),
    nodes: k8s.makeInformer(
      kc,
      "/api/v1/nodes",
      paged("nodes", (p) => core.listNode(p) as Promise<List>) as never,
    ),
    networkPolicies: k8s.makeInformer(
      kc,
      "/apis/networking.k8s.io/v1/networkpolicies",
      paged(
        "networkPolicies",
        (p) => net.listNetworkPolicyForAllNamespaces(p) as Promise<List>,
      ) as never,
    ),
    services: k8s.makeInformer(
      kc,
      "/api/v1/services",
      paged("services", (p) => core.listServiceForAllNamespaces(p) as Promise<List>) as never,
    ),
    endpointSlices: k8s.makeInformer(
      kc,
      "/apis/discovery.k8s.io/v1/endpointslices",
      paged(
        "endpointSlices",
        (p) => discovery.listEndpointSliceForAllNamespaces(p) as Promise<List>,
      ) as never,
    ),
  };

  const schedule = () => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    if (timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      running = pass().finally(() => {
        running = undefined;
        if (again) {
          again = false;
          schedule();
        }
      });
    }, debounceMs);
  };

  for (const [name, inf] of Object.entries(informers) as [KindName, typeof informers.pods][]) {
    inf.on("add", schedule);
    inf.on("update", schedule);
    inf.on("delete", (obj: { metadata?: { name?: string } }) => {
      if (name === "nodes" && obj?.metadata?.name) deletedNodes.add(obj.metadata.name);
      schedule();
    });
    inf.on("error", (err: unknown) => {
      if (stopped) return;
      const e = kubeError(err, `List or watch of ${name}`, server);
      log(`kube-controllers: ${e.message}; again in ${retryMs} ms`);
      setTimeout(() => {
        if (!stopped) inf.start().then(schedule, () => {});
      }, retryMs);
    });
  }

  async function apply(a: SyncAction): Promise<string> {
    if (a.op === "put") {
      const i = info(a.resource.apiVersion, a.resource.kind);
      const mode = a.resource.metadata.resourceVersion ? "update" : "create";
      await client.writeValidated(mode, { info: i, resource: a.resource });
      return `${mode === "create" ? "created" : "updated"} ${i.singular} "${qualified(a.resource)}" (${a.why})`;
    }
    if (a.op === "delete") {
      const i = info(a.apiVersion, a.kind);
      await client.delete(i, a.name, a.namespace, a.resourceVersion);
      return `deleted ${i.singular} "${a.namespace ? `${a.namespace}/` : ""}${a.name}" (${a.why})`;
    }
    const weps = (await client.list(WEP)).items.filter(
      (w) => (w.spec as { node?: string }).node === a.name,
    );
    for (const w of weps)
      await client
        .delete(WEP, w.metadata.name, w.metadata.namespace, w.metadata.resourceVersion)
        .catch(ignoreNotFound);
    await client.delete(NODE, a.name, undefined, a.resourceVersion).catch(ignoreNotFound);
    const r = await releaseNodeAffinities(new IpamStore(o.store), a.name);
    deletedNodes.delete(a.name);
    return `deleted node "${a.name}" (${a.why}): ${weps.length} endpoint(s), blocks released ${[...r.blocksDeleted, ...r.blocksUnaffined].join(", ") || "none"}`;
  }

  /** The KubeControllersConfiguration's settings; a changed period re-arms the resync timer. */
  async function readSettings(): Promise<KubeControllersSettings> {
    let kcc = await client.get(KCC, "default");
    if (kcc === undefined) {
      // Calico's getOrCreateSnapshot: no configuration, its default is written and read.
      const resource = {
        apiVersion: "projectcalico.org/v3",
        kind: "KubeControllersConfiguration",
        metadata: { name: "default" },
        spec: structuredClone(DEFAULT_KCC_SPEC),
      } as unknown as Resource;
      try {
        await client.writeValidated("create", { info: KCC, resource });
        log(`kube-controllers: created kubecontrollersconfiguration "default" (Calico's defaults)`);
      } catch (err) {
        // Someone else created it meanwhile: read theirs.
        if (!(err instanceof ResourceError && err.code === "AlreadyExists")) throw err;
      }
      kcc = await client.get(KCC, "default");
    }
    const settings = kubeControllersSettings(kcc?.spec);
    const w = settings.warnings.join("\n");
    if (w !== lastWarnings) {
      for (const l of settings.warnings)
        log(`kube-controllers: KubeControllersConfiguration: ${l}`);
      lastWarnings = w;
    }
    const period = settings.resyncMs ?? defaultResyncMs;
    if (period !== resyncMs) {
      resyncMs = period;
      clearInterval(resync);
      resync = setInterval(schedule, resyncMs);
      log(`kube-controllers: full pass every ${resyncMs} ms (KubeControllersConfiguration)`);
    }
    return settings;
  }

  async function pass(): Promise<void> {
    if (listed.size < Object.keys(informers).length) return; // not every kind listed yet
    const startedAt = Date.now();
    const kube: KubeState = {
      pods: informers.pods.list(),
      namespaces: informers.namespaces.list(),
      serviceAccounts: informers.serviceAccounts.list(),
      nodes: informers.nodes.list(),
      networkPolicies: informers.networkPolicies.list(),
      services: informers.services.list(),
      endpointSlices: informers.endpointSlices.list(),
      deletedNodes: [...deletedNodes],
    };
    const result: PassResult = { done: [], failed: [], refused: [], startedAt, endedAt: 0 };
    try {
      const settings = await readSettings();
      const [
        workloadEndpoints,
        profiles,
        nodes,
        k8sNetworkPolicies,
        services,
        endpointSlices,
        hostEndpoints,
      ] = await Promise.all(
        [WEP, PROFILE, NODE, KNP, SVC, EPS, HEP].map(async (i) => (await client.list(i)).items),
      );
      const plan = planSync(kube, {
        workloadEndpoints: workloadEndpoints as Resource[],
        profiles: profiles as Resource[],
        nodes: nodes as Resource[],
        k8sNetworkPolicies: k8sNetworkPolicies as Resource[],
        services: services as Resource[],
        endpointSlices: endpointSlices as Resource[],
      });
      result.refused = plan.refused;
      // The Calico Nodes as this pass leaves them (relabelled, deleted): the auto host
      // endpoints follow them in the same pass.
      let calicoNodes = nodes as Resource[];
      if (settings.syncLabels) {
        const relabelled = planNodeLabels(kube.nodes, calicoNodes);
        plan.actions.push(...relabelled);
        const next = new Map(
          relabelled.flatMap((a) =>
            a.op === "put" ? [[a.resource.metadata.name, a.resource]] : [],
          ),
        );
        calicoNodes = calicoNodes.map((n) => next.get(n.metadata.name) ?? n);
      }
      const going = new Set(plan.actions.flatMap((a) => (a.op === "deleteNode" ? [a.name] : [])));
      plan.actions.push(
        ...planAutoHostEndpoints(
          calicoNodes.filter((n) => !going.has(n.metadata.name)),
          hostEndpoints as Resource[],
          settings.autoHep,
        ),
      );
      const retry = new Set<string>();
      for (const a of plan.actions) {
        const part = partOf(a);
        if (part !== undefined && !settings.enabled.has(part)) continue;
        try {
          result.done.push(await apply(a));
        } catch (err) {
          // A conflict means someone wrote meanwhile: the next pass (after the retry wait, so
          // that a store refusing every write is not hammered) sees it and plans again.
          result.failed.push(
            `${a.op} ${a.op === "put" ? qualified(a.resource) : a.name}: ${(err as Error).message}`,
          );
          if (a.op === "deleteNode") retry.add(a.name);
        }
      }
      if (result.failed.length > 0) setTimeout(schedule, retryMs);
      // Deletions seen are forgotten once acted on or matching no Calico Node; a failed one is
      // kept for the next pass.
      for (const n of kube.deletedNodes ?? []) if (!retry.has(n)) deletedNodes.delete(n);
    } catch (err) {
      result.failed.push(`pass: ${(err as Error).message}`);
      setTimeout(schedule, retryMs);
    }
    result.endedAt = Date.now();
    for (const l of result.done) log(`kube-controllers: ${l}`);
    for (const l of result.failed) log(`kube-controllers: failed: ${l}`);
    for (const l of result.refused) log(`kube-controllers: not written: ${l}`);
    o.onPass?.(result);
    if (!firstPassDone && result.failed.length === 0) {
      firstPassDone = true;
      resolveSynced();
    }
  }

  // A new or changed WorkloadEndpoint in the datastore starts a pass (a pod relabelled while its
  // ADD was under way is caught here), and so does a changed Calico Node (its auto host
  // endpoint's addresses and labels), HostEndpoint (one changed by hand is put back) or
  // KubeControllersConfiguration (deleted: the default is created again).
  const watches = new Map<string, Watch>();
  const watchKind = async (i: typeof WEP): Promise<void> => {
    if (stopped) return;
    try {
      const { revision } = await o.store.list(kindPrefix(i));
      const w = await client.watch(i, revision, (m) => {
        if ("kind" in m && m.kind !== "events") {
          void watches.get(i.kind)?.cancel();
          setTimeout(() => void watchKind(i), m.kind === "error" ? retryMs : 0);
        }
        schedule();
      });
      watches.set(i.kind, w);
      if (stopped) await w.cancel();
    } catch (err) {
      log(
        `kube-controllers: datastore watch of ${i.plural}: ${(err as Error).message}; again in ${retryMs} ms`,
      );
      setTimeout(() => void watchKind(i), retryMs);
    }
  };
  await Promise.all([WEP, NODE, HEP, KCC].map(watchKind));

  for (const inf of Object.values(informers)) void inf.start().then(schedule, () => {});
  resync = setInterval(schedule, resyncMs);

  return {
    synced,
    async stop() {
      stopped = true;
      clearInterval(resync);
      clearTimeout(timer);
      await Promise.all(Object.values(informers).map((i) => i.stop()));
      await Promise.all([...watches.values()].map((w) => w.cancel()));
      await running;
    },
  };
}

function qualified(r: Resource): string {
  return r.metadata.namespace ? `${r.metadata.namespace}/${r.metadata.name}` : r.metadata.name;
}

function ignoreNotFound(err: unknown): void {
  if (err instanceof ResourceError && err.code === "NotFound") return;
  throw err;
}
