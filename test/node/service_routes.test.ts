// Pure tests of Service IP advertisement (src/node/service_routes.ts): the default
// BGPConfiguration's ranges from every node (host bits masked, other configurations ignored),
// Local Services' host routes only from a node holding a ready endpoint (matched by the Node's
// Kubernetes name from orchRefs), only for addresses inside the range of their kind;
// serviceLoadBalancerAggregation Disabled (confd: no load-balancer range, a Cluster Service's
// /32s from every node while it has a ready endpoint anywhere), single-address entries (never a
// range; a Cluster Service they name from every node), the exclude-from-external-load-balancers
// node label, and the ranges kept out of the kernel (Calico's rejectcidrs).
import { describe, expect, it } from "vitest";
import type { BGPConfiguration } from "../../src/api/bgp.js";
import type { K8sEndpointSlice, K8sService } from "../../src/api/k8s_service.js";
import type { Node } from "../../src/api/node.js";
import { renderBgp } from "../../src/node/bgp_state.js";
import { serviceAdvertisements, serviceFibExclusions } from "../../src/node/service_routes.js";

const config = (name: string, spec: Record<string, unknown>) =>
  ({
    apiVersion: "projectcalico.org/v3",
    kind: "BGPConfiguration",
    metadata: { name },
    spec,
  }) as unknown as BGPConfiguration;
const node = (name: string, k8sName?: string) =>
  ({
    apiVersion: "projectcalico.org/v3",
    kind: "Node",
    metadata: { name },
    spec: k8sName ? { orchRefs: [{ orchestrator: "k8s", nodeName: k8sName }] } : {},
  }) as unknown as Node;
const svc: K8sService = {
  apiVersion: "v1",
  kind: "Service",
  metadata: { name: "web", namespace: "shop" },
  spec: {
    clusterIP: "10.96.0.10",
    externalIPs: ["198.51.100.10", "192.0.2.10"],
    externalTrafficPolicy: "Local",
  },
  status: { loadBalancer: { ingress: [{ ip: "203.0.113.10" }] } },
};
const slice = (nodeName: string, ready?: boolean): K8sEndpointSlice => ({
  apiVersion: "discovery.k8s.io/v1",
  kind: "EndpointSlice",
  metadata: { name: "web-1", namespace: "shop", labels: { "kubernetes.io/service-name": "web" } },
  addressType: "IPv4",
  endpoints: [
    {
      addresses: ["10.244.0.5"],
      nodeName,
      ...(ready !== undefined ? { conditions: { ready } } : {}),
    },
  ],
});
const ranges = config("default", {
  serviceClusterIPs: [{ cidr: "10.96.0.1/16" }],
  serviceExternalIPs: [{ cidr: "198.51.100.0/24" }],
  serviceLoadBalancerIPs: [{ cidr: "203.0.113.0/24" }],
});

describe("serviceAdvertisements()", () => {
  it("announces the default configuration's ranges (host bits masked), not a node's own", () => {
    const other = config("node.n1", { serviceClusterIPs: [{ cidr: "10.1.0.0/16" }] });
    expect(serviceAdvertisements({ bgpConfigurations: [other, ranges], nodes: [] }, "n1")).toEqual([
      "10.96.0.0/16",
      "198.51.100.0/24",
      "203.0.113.0/24",
    ]);
  });

  it("a Service's ipFamilies pick the EndpointSlices that count (confd's route generator)", () => {
    const v6slice = { ...slice("k8s-n1"), addressType: "IPv6" as const };
    const input = (ipFamilies?: ("IPv4" | "IPv6")[]) => ({
      bgpConfigurations: [ranges],
      nodes: [node("calico-n1", "k8s-n1")],
      services: [{ ...svc, spec: { ...svc.spec, ...(ipFamilies ? { ipFamilies } : {}) } }],
      endpointSlices: [v6slice],
    });
    // Only an IPv6 slice has the local endpoint: an IPv4-only Service is not advertised.
    expect(serviceAdvertisements(input(), "calico-n1")).not.toContain("10.96.0.10/32");
    expect(serviceAdvertisements(input(["IPv4"]), "calico-n1")).not.toContain("10.96.0.10/32");
    expect(serviceAdvertisements(input(["IPv4", "IPv6"]), "calico-n1")).toContain("10.96.0.10/32");
  });

  it("CALICO_ADVERTISE_CLUSTER_IPS takes the place of serviceClusterIPs (confd's precedence)", () => {
    const input = {
      bgpConfigurations: [ranges],
      nodes: [],
      advertiseClusterIps: "10.100.0.1/16",
    };
    expect(serviceAdvertisements(input, "n1")).toEqual([
      "10.100.0.0/16",
      "198.51.100.0/24",
      "203.0.113.0/24",
    ]);
    expect(serviceFibExclusions(input)).toEqual([
      "10.100.0.0/16",
      "198.51.100.0/24",
      "203.0.113.0/24",
    ]);
    // Without serviceClusterIPs at all, the variable alone turns cluster IP advertisement on.
    const bare = { bgpConfigurations: [], nodes: [], advertiseClusterIps: "10.100.0.0/16" };
    expect(serviceAdvertisements(bare, "n1")).toEqual(["10.100.0.0/16"]);
  });

  it("a Local Service's addresses inside the ranges, from the node with a ready endpoint only", () => {
    const input = {
      bgpConfigurations: [ranges],
      nodes: [node("calico-n1", "k8s-n1"), node("n2")],
      services: [svc],
      endpointSlices: [slice("k8s-n1")],
    };
    expect(serviceAdvertisements(input, "calico-n1")).toEqual([
      "10.96.0.0/16",
      "10.96.0.10/32",
      "198.51.100.0/24",
      "198.51.100.10/32",
      "203.0.113.0/24",
      "203.0.113.10/32",
    ]);
    expect(serviceAdvertisements(input, "n2")).toHaveLength(3);
    const notReady = { ...input, endpointSlices: [slice("k8s-n1", false)] };
    expect(serviceAdvertisements(notReady, "calico-n1")).toHaveLength(3);
    const cluster = {
      ...input,
      services: [{ ...svc, spec: { ...svc.spec, externalTrafficPolicy: "Cluster" as const } }],
    };
    expect(serviceAdvertisements(cluster, "calico-n1")).toHaveLength(3);
  });

  it("no ranges configured: nothing, even for a Local Service", () => {
    expect(
      serviceAdvertisements(
        { bgpConfigurations: [], nodes: [], services: [svc], endpointSlices: [slice("n1")] },
        "n1",
      ),
    ).toEqual([]);
  });
});

describe("renderBgp(): Service advertisements join the node's originations", () => {
  it("the ranges and a Local Service's /32s are originated", () => {
    const n1 = {
      apiVersion: "projectcalico.org/v3",
      kind: "Node",
      metadata: { name: "n1" },
      spec: { bgp: { ipv4Address: "10.0.0.1/24" } },
    } as unknown as Node;
    const r = renderBgp(
      {
        nodes: [n1],
        workloadEndpoints: [],
        pools: [],
        affinities: [],
        bgpConfigurations: [ranges],
        bgpPeers: [],
        services: [svc],
        endpointSlices: [slice("n1")],
      },
      "n1",
      { statusSocket: "/tmp/x.sock" },
    );
    expect(r.config?.fib.exclude).toEqual(["10.96.0.0/16", "198.51.100.0/24", "203.0.113.0/24"]);
    expect(r.config?.originate.map((o) => o.prefix)).toEqual([
      "10.96.0.0/16",
      "10.96.0.10/32",
      "198.51.100.0/24",
      "198.51.100.10/32",
      "203.0.113.0/24",
      "203.0.113.10/32",
    ]);
    // CALICO_ADVERTISE_CLUSTER_IPS (the daemon's advertiseClusterIps) in place of the field.
    const withEnv = renderBgp(
      {
        nodes: [n1],
        workloadEndpoints: [],
        pools: [],
        affinities: [],
        bgpConfigurations: [],
        bgpPeers: [],
      },
      "n1",
      { statusSocket: "/tmp/x.sock", advertiseClusterIps: "10.100.0.0/16" },
    );
    expect(withEnv.config?.originate.map((o) => o.prefix)).toEqual(["10.100.0.0/16"]);
    expect(withEnv.config?.fib.exclude).toEqual(["10.100.0.0/16"]);
  });
});

describe("Calico's other Service advertisement rules", () => {
  const lbSvc: K8sService = {
    ...svc,
    spec: { ...svc.spec, type: "LoadBalancer", externalTrafficPolicy: "Cluster" },
  };
  const disabled = config("default", {
    serviceClusterIPs: [{ cidr: "10.96.0.0/16" }],
    serviceExternalIPs: [{ cidr: "198.51.100.0/24" }],
    serviceLoadBalancerIPs: [{ cidr: "203.0.113.0/24" }],
    serviceLoadBalancerAggregation: "Disabled",
  });

  it("aggregation Disabled: no load-balancer range; a Cluster Service's /32s from every node while it has a ready endpoint", () => {
    const input = {
      bgpConfigurations: [disabled],
      nodes: [node("n1"), node("n2")],
      services: [lbSvc],
      endpointSlices: [slice("n2")],
    };
    const all = [
      "10.96.0.0/16",
      "10.96.0.10/32",
      "198.51.100.0/24",
      "198.51.100.10/32",
      "203.0.113.10/32",
    ];
    // n1 holds no endpoint: still announces (Cluster policy), as n2 does.
    expect(serviceAdvertisements(input, "n1")).toEqual(all);
    expect(serviceAdvertisements(input, "n2")).toEqual(all);
    // No ready endpoint anywhere: withdrawn; an IPv6 slice does not serve an IPv4 Service.
    const none = ["10.96.0.0/16", "198.51.100.0/24"];
    expect(serviceAdvertisements({ ...input, endpointSlices: [slice("n2", false)] }, "n1")).toEqual(
      none,
    );
    const v6 = { ...slice("n2"), addressType: "IPv6" as const };
    expect(serviceAdvertisements({ ...input, endpointSlices: [v6] }, "n1")).toEqual(none);
    // Enabled (the default): the range, and no /32 for a Cluster Service.
    expect(serviceAdvertisements({ ...input, bgpConfigurations: [ranges] }, "n1")).toEqual([
      "10.96.0.0/16",
      "198.51.100.0/24",
      "203.0.113.0/24",
    ]);
    // The ranges kept out of the kernel follow what is announced as a range.
    expect(serviceFibExclusions(input)).toEqual(none);
    expect(serviceFibExclusions({ ...input, bgpConfigurations: [ranges] })).toEqual([
      "10.96.0.0/16",
      "198.51.100.0/24",
      "203.0.113.0/24",
    ]);
  });

  it("single-address entries: never a range; a Cluster Service they name from every node, endpoints or not", () => {
    const single = config("default", {
      serviceExternalIPs: [{ cidr: "198.51.100.10/32" }],
      serviceLoadBalancerIPs: [{ cidr: "203.0.113.0/24" }, { cidr: "203.0.113.10/32" }],
    });
    const input = { bgpConfigurations: [single], nodes: [], services: [lbSvc], endpointSlices: [] };
    expect(serviceAdvertisements(input, "n1")).toEqual([
      "198.51.100.10/32",
      "203.0.113.0/24",
      "203.0.113.10/32",
    ]);
    expect(serviceFibExclusions(input)).toEqual(["203.0.113.0/24"]);
    // A Local Service is not advertised by the single-address rule: only with a local endpoint.
    const local = { ...lbSvc, spec: { ...lbSvc.spec, externalTrafficPolicy: "Local" as const } };
    expect(serviceAdvertisements({ ...input, services: [local] }, "n1")).toEqual([
      "203.0.113.0/24",
    ]);
  });

  it("a node labelled exclude-from-external-load-balancers announces nothing, and still keeps the ranges out of its kernel", () => {
    const excluded = {
      ...node("n1"),
      metadata: {
        name: "n1",
        labels: { "node.kubernetes.io/exclude-from-external-load-balancers": "true" },
      },
    } as unknown as Node;
    const input = {
      bgpConfigurations: [ranges],
      nodes: [excluded],
      services: [svc],
      endpointSlices: [slice("n1")],
    };
    expect(serviceAdvertisements(input, "n1")).toEqual([]);
    expect(serviceFibExclusions(input)).toHaveLength(3);
  });

  it("headless and ExternalName Services are never announced; internalTrafficPolicy changes nothing", () => {
    const input = {
      bgpConfigurations: [ranges],
      nodes: [],
      endpointSlices: [slice("n1")],
    };
    const headless = { ...svc, spec: { ...svc.spec, clusterIP: "None" } };
    const external = { ...svc, spec: { ...svc.spec, type: "ExternalName" as const } };
    expect(serviceAdvertisements({ ...input, services: [headless] }, "n1")).toHaveLength(3);
    expect(serviceAdvertisements({ ...input, services: [external] }, "n1")).toHaveLength(3);
    const itpLocal = { ...svc, spec: { ...svc.spec, internalTrafficPolicy: "Local" as const } };
    expect(serviceAdvertisements({ ...input, services: [itpLocal] }, "n1")).toEqual(
      serviceAdvertisements({ ...input, services: [svc] }, "n1"),
    );
  });
});
