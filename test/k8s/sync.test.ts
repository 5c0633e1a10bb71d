// src/k8s/sync.ts: what `ocelot kube-controllers` writes for what Kubernetes holds (pure).
import { describe, expect, it } from "vitest";
import { type Resource, validateResource } from "../../src/api/registry.js";
import {
  type KubeState,
  k8sNetworkPolicyResource,
  planSync,
  type StoreState,
  type SyncAction,
} from "../../src/k8s/sync.js";

const ns = (name: string, labels: Record<string, string> = {}) => ({
  metadata: { name, labels: { "kubernetes.io/metadata.name": name, ...labels } },
});
const sa = (namespace: string, name: string, labels: Record<string, string> = {}) => ({
  metadata: { name, namespace, labels },
});
const pod = (namespace: string, name: string, labels: Record<string, string>, sa = "default") => ({
  metadata: { name, namespace, labels },
  spec: { serviceAccountName: sa },
});
const kube = (k: Partial<KubeState>): KubeState => ({
  pods: [],
  namespaces: [],
  serviceAccounts: [],
  nodes: [],
  networkPolicies: [],
  ...k,
});
const store = (s: Partial<StoreState>): StoreState => ({
  workloadEndpoints: [],
  profiles: [],
  nodes: [],
  k8sNetworkPolicies: [],
  ...s,
});
/** A stored resource: validated as a write would be, with a resourceVersion. */
const stored = (doc: unknown, rv = "7"): Resource => {
  const r = validateResource(doc).resource;
  return { ...r, metadata: { ...r.metadata, resourceVersion: rv } };
};
const wep = (namespace: string, pod: string, labels: Record<string, string>, extra = {}) =>
  stored({
    apiVersion: "projectcalico.org/v3",
    kind: "WorkloadEndpoint",
    metadata: { name: `node1-k8s-${pod}-eth0`, namespace, labels },
    spec: {
      orchestrator: "k8s",
      node: "node1",
      pod,
      endpoint: "eth0",
      interfaceName: "cali0123456789a",
      ipNetworks: ["10.0.0.5/32"],
      profiles: [`kns.${namespace}`],
      ...extra,
    },
  });
const puts = (a: SyncAction[]) => a.flatMap((x) => (x.op === "put" ? [x.resource] : []));

describe("kube-controllers sync plan", () => {
  it("Namespaces and ServiceAccounts become Profiles kns.<ns> / ksa.<ns>.<sa> with Calico's labelsToApply", () => {
    const plan = planSync(
      kube({
        namespaces: [ns("team-a", { env: "prod" })],
        serviceAccounts: [sa("team-a", "web", { role: "fe" })],
      }),
      store({}),
    );
    expect(plan.refused).toEqual([]);
    const byName = new Map(puts(plan.actions).map((r) => [r.metadata.name, r]));
    expect(byName.get("kns.team-a")?.spec).toEqual({
      ingress: [expect.objectContaining({ action: "Allow" })],
      egress: [expect.objectContaining({ action: "Allow" })],
      labelsToApply: {
        "pcns.env": "prod",
        "pcns.kubernetes.io/metadata.name": "team-a",
        "pcns.projectcalico.org/name": "team-a",
      },
    });
    expect(byName.get("ksa.team-a.web")?.spec).toEqual({
      labelsToApply: { "pcsa.role": "fe", "pcsa.projectcalico.org/name": "web" },
    });
    // New: created (no resourceVersion).
    expect(byName.get("kns.team-a")?.metadata.resourceVersion).toBeUndefined();
  });

  it("a Profile already as wanted is not written; a relabelled namespace's is replaced at its revision", () => {
    const first = puts(planSync(kube({ namespaces: [ns("a", { x: "1" })] }), store({})).actions);
    const have = first.map((r) => stored(r, "40"));
    expect(
      planSync(kube({ namespaces: [ns("a", { x: "1" })] }), store({ profiles: have })).actions,
    ).toEqual([]);
    const relabelled = planSync(
      kube({ namespaces: [ns("a", { x: "2" })] }),
      store({ profiles: have }),
    );
    const [p] = puts(relabelled.actions);
    expect(p?.metadata.resourceVersion).toBe("40");
    expect(
      (p?.spec as { labelsToApply?: Record<string, string> } | undefined)?.labelsToApply?.[
        "pcns.x"
      ],
    ).toBe("2");
  });

  it("resync: kns./ksa. Profiles Kubernetes no longer has are deleted; the user's own Profiles are kept", () => {
    const gone = stored({
      apiVersion: "projectcalico.org/v3",
      kind: "Profile",
      metadata: { name: "kns.old" },
    });
    const goneSa = stored({
      apiVersion: "projectcalico.org/v3",
      kind: "Profile",
      metadata: { name: "ksa.old.x" },
    });
    const mine = stored({
      apiVersion: "projectcalico.org/v3",
      kind: "Profile",
      metadata: { name: "web-profile" },
    });
    const plan = planSync(kube({}), store({ profiles: [gone, goneSa, mine] }));
    expect(plan.actions.map((a) => (a.op === "delete" ? a.name : a.op))).toEqual([
      "kns.old",
      "ksa.old.x",
    ]);
    expect(plan.actions[0]).toMatchObject({ op: "delete", kind: "Profile", resourceVersion: "7" });
  });

  it("a relabelled pod's WorkloadEndpoint gets its labels, namespace labels, service account and both profiles", () => {
    const e = wep("team-a", "web-1", {
      app: "old",
      "projectcalico.org/namespace": "team-a",
      "projectcalico.org/orchestrator": "k8s",
    });
    const plan = planSync(
      kube({
        namespaces: [ns("team-a", { env: "prod" })],
        pods: [pod("team-a", "web-1", { app: "web" }, "web-sa")],
      }),
      store({ workloadEndpoints: [e] }),
    );
    const w = puts(plan.actions).find((r) => r.kind === "WorkloadEndpoint");
    expect(w?.metadata.labels).toEqual({
      app: "web",
      "pcns.env": "prod",
      "pcns.kubernetes.io/metadata.name": "team-a",
      "projectcalico.org/namespace": "team-a",
      "projectcalico.org/orchestrator": "k8s",
      "projectcalico.org/serviceaccount": "web-sa",
    });
    expect(w?.spec).toMatchObject({
      profiles: ["kns.team-a", "ksa.team-a.web-sa"],
      serviceAccountName: "web-sa",
      ipNetworks: ["10.0.0.5/32"],
      interfaceName: "cali0123456789a",
    });
    expect(w?.metadata.resourceVersion).toBe("7");
    // Once written, nothing more to do for it.
    const again = planSync(
      kube({
        namespaces: [ns("team-a", { env: "prod" })],
        pods: [pod("team-a", "web-1", { app: "web" }, "web-sa")],
      }),
      store({ workloadEndpoints: [stored(w, "8")] }),
    );
    expect(
      again.actions.filter((a) => a.op === "put" && a.resource.kind === "WorkloadEndpoint"),
    ).toEqual([]);
  });

  it("endpoints without their pod (or namespace) in Kubernetes, and non-Kubernetes endpoints, are left alone", () => {
    const orphan = wep("team-a", "gone", { a: "b" });
    const plain = stored({
      apiVersion: "projectcalico.org/v3",
      kind: "WorkloadEndpoint",
      metadata: { name: "node1-cni-abc-eth0", namespace: "default", labels: { a: "b" } },
      spec: {
        orchestrator: "cni",
        node: "node1",
        workload: "abc",
        endpoint: "eth0",
        interfaceName: "cali1",
      },
    });
    const noNs = wep("team-b", "web-2", {});
    const plan = planSync(
      kube({ namespaces: [ns("team-a")], pods: [pod("team-b", "web-2", { x: "y" })] }),
      store({ workloadEndpoints: [orphan, plain, noNs] }),
    );
    expect(
      plan.actions.filter((a) => a.op === "put" && a.resource.kind === "WorkloadEndpoint"),
    ).toEqual([]);
  });

  it("a NetworkPolicy from the API (the client's typed `_from`) is stored as `ocelot apply` stores it; unchanged: nothing; gone: deleted", () => {
    const np = {
      metadata: {
        name: "allow-web",
        namespace: "team-a",
        uid: "u1",
        resourceVersion: "55",
        creationTimestamp: new Date(),
      },
      spec: {
        podSelector: { matchLabels: { app: "web" } },
        policyTypes: ["Ingress"],
        ingress: [
          {
            _from: [{ podSelector: { matchLabels: { app: "client" } } }],
            ports: [{ protocol: "TCP", port: 80 }],
          },
        ],
        egress: undefined,
      },
    };
    const r = k8sNetworkPolicyResource(np);
    expect(r).toEqual({
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: "allow-web", namespace: "team-a" },
      spec: {
        podSelector: { matchLabels: { app: "web" } },
        policyTypes: ["Ingress"],
        ingress: [
          {
            from: [{ podSelector: { matchLabels: { app: "client" } } }],
            ports: [{ protocol: "TCP", port: 80 }],
          },
        ],
      },
    });
    const plan = planSync(kube({ networkPolicies: [np] }), store({}));
    const [p] = puts(plan.actions);
    expect(p?.metadata.resourceVersion).toBeUndefined();
    expect(
      plan.actions.filter((a) => a.op === "put" && a.resource.kind === "NetworkPolicy").length,
    ).toBe(1);
    const have = stored(p, "90");
    expect(
      planSync(kube({ networkPolicies: [np] }), store({ k8sNetworkPolicies: [have] })).actions,
    ).toEqual([]);
    const gone = planSync(kube({}), store({ k8sNetworkPolicies: [have] })).actions;
    expect(gone).toEqual([
      expect.objectContaining({
        op: "delete",
        kind: "NetworkPolicy",
        name: "allow-web",
        namespace: "team-a",
        resourceVersion: "90",
      }),
    ]);
  });

  it("a NetworkPolicy Ocelot refuses is reported by name and field, nothing written, the stored one kept", () => {
    const bad = {
      metadata: { name: "bad", namespace: "a" },
      spec: { podSelector: {}, ingress: [{ ports: [{ protocol: "ICMP", port: 1 }] }] },
    };
    const have = stored(
      k8sNetworkPolicyResource({
        metadata: { name: "bad", namespace: "a" },
        spec: { podSelector: {} },
      }),
    );
    const plan = planSync(kube({ networkPolicies: [bad] }), store({ k8sNetworkPolicies: [have] }));
    expect(plan.actions).toEqual([]);
    expect(plan.refused).toHaveLength(1);
    expect(plan.refused[0]).toMatch(
      /^networkpolicy "a\/bad": .*protocol.*\(the stored one is left as it was\)$/,
    );
  });

  it("Nodes: a Calico Node whose orchRef'd Kubernetes Node is gone is deleted; one without orchRefs only on an observed deletion", () => {
    const node = (name: string, orchRefs?: unknown) =>
      stored({
        apiVersion: "projectcalico.org/v3",
        kind: "Node",
        metadata: { name },
        spec: orchRefs ? { orchRefs } : {},
      });
    const nodes = [
      node("n1", [{ orchestrator: "k8s", nodeName: "k8s-n1" }]),
      node("n2", [{ orchestrator: "k8s", nodeName: "k8s-n2" }]),
      node("n3"),
      node("n4"),
    ];
    const k = kube({
      nodes: [{ metadata: { name: "k8s-n1" } }, { metadata: { name: "n4" } }],
      deletedNodes: ["n3", "n4"],
    });
    const plan = planSync(k, store({ nodes }));
    expect(plan.actions.map((a) => (a.op === "deleteNode" ? a.name : "?"))).toEqual(["n2", "n3"]);
    expect(plan.actions[0]).toMatchObject({
      resourceVersion: "7",
      why: 'Kubernetes Node "k8s-n2" was deleted',
    });
    // A resync alone (no deletion seen) leaves n3 as it is.
    expect(
      planSync(
        kube({ nodes: [{ metadata: { name: "k8s-n1" } }, { metadata: { name: "k8s-n2" } }] }),
        store({ nodes }),
      ).actions,
    ).toEqual([]);
  });
});

describe("kube-controllers sync plan: Services and EndpointSlices", () => {
  // As the client's informer gives them: extra fields (uid, managedFields, status conditions).
  const svc = (clusterIP: string) => ({
    metadata: {
      name: "web",
      namespace: "shop",
      uid: "u1",
      resourceVersion: "9",
      managedFields: [],
    },
    spec: {
      type: "LoadBalancer",
      clusterIP,
      clusterIPs: [clusterIP],
      ipFamilies: ["IPv4"],
      sessionAffinity: "None",
      externalTrafficPolicy: "Local",
      ports: [{ name: "http", protocol: "TCP", port: 80, targetPort: 8080, nodePort: 30080 }],
      selector: { app: "web" },
    },
    status: { loadBalancer: { ingress: [{ ip: "203.0.113.10", ipMode: "VIP" }] } },
  });
  const slice = (name: string, addressType: string, addresses: string[]) => ({
    metadata: {
      name,
      namespace: "shop",
      labels: {
        "kubernetes.io/service-name": "web",
        "endpointslice.kubernetes.io/managed-by": "x",
      },
    },
    addressType,
    endpoints: addresses.map((a) => ({
      addresses: [a],
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: "node1",
      targetRef: { kind: "Pod", name: "web-1", namespace: "shop", uid: "u2" },
      zone: "a",
    })),
    ports: [{ name: "http", protocol: "TCP", port: 8080, appProtocol: null }],
  });

  it("stores trimmed copies; an unchanged one is not written again, a changed one is, a gone one deleted", () => {
    const first = planSync(
      kube({
        services: [svc("10.96.0.10")],
        endpointSlices: [slice("web-a", "IPv4", ["10.244.0.5"])],
      }),
      store({ services: [], endpointSlices: [] }),
    );
    expect(first.refused).toEqual([]);
    const [s, e] = puts(first.actions);
    expect(s).toEqual({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "web", namespace: "shop" },
      spec: {
        type: "LoadBalancer",
        clusterIP: "10.96.0.10",
        clusterIPs: ["10.96.0.10"],
        ipFamilies: ["IPv4"],
        externalTrafficPolicy: "Local",
        selector: { app: "web" },
        ports: [{ name: "http", protocol: "TCP", port: 80, targetPort: 8080, nodePort: 30080 }],
      },
      status: { loadBalancer: { ingress: [{ ip: "203.0.113.10" }] } },
    });
    expect(e).toMatchObject({
      kind: "EndpointSlice",
      addressType: "IPv4",
      endpoints: [
        {
          addresses: ["10.244.0.5"],
          nodeName: "node1",
          conditions: { ready: true, serving: true, terminating: false },
          targetRef: { kind: "Pod", name: "web-1", namespace: "shop" },
        },
      ],
      ports: [{ name: "http", protocol: "TCP", port: 8080 }],
    });
    const have = store({ services: [stored(s)], endpointSlices: [stored(e)] });
    expect(
      planSync(
        kube({
          services: [svc("10.96.0.10")],
          endpointSlices: [slice("web-a", "IPv4", ["10.244.0.5"])],
        }),
        have,
      ).actions,
    ).toEqual([]);
    const moved = planSync(
      kube({
        services: [svc("10.96.0.10")],
        endpointSlices: [slice("web-a", "IPv4", ["10.244.0.6"])],
      }),
      have,
    ).actions;
    expect(moved).toHaveLength(1);
    expect(moved[0]).toMatchObject({ op: "put", resource: { metadata: { resourceVersion: "7" } } });
    expect(
      planSync(kube({ services: [], endpointSlices: [] }), have).actions.map((a) => a.op),
    ).toEqual(["delete", "delete"]);
  });

  it("an FQDN slice is not stored; a kind the sync was not given is left alone", () => {
    const p = planSync(
      kube({ services: [], endpointSlices: [slice("web-f", "FQDN", ["example.com"])] }),
      store({ services: [], endpointSlices: [] }),
    );
    expect(p.actions).toEqual([]);
    const have = store({
      services: [
        stored(puts(planSync(kube({ services: [svc("10.96.0.1")] }), store({})).actions)[0]),
      ],
    });
    expect(planSync(kube({}), have).actions).toEqual([]);
  });
});
