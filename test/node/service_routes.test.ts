// Pure tests of Service IP advertisement (src/node/service_routes.ts): the default
// BGPConfiguration's ranges from every node (host bits masked, other configurations ignored),
// Local Services' host routes only from a node holding a ready endpoint (matched by the Node's
// Kubernetes name from orchRefs), only for addresses inside the range of their kind.
import { describe, expect, it } from "vitest";
import type { BGPConfiguration } from "../../src/api/bgp.js";
import type { K8sEndpointSlice, K8sService } from "../../src/api/k8s_service.js";
import type { Node } from "../../src/api/node.js";
import { renderBgp } from "../../src/node/bgp_state.js";
import { serviceAdvertisements } from "../../src/node/service_routes.js";

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
    expect(r.config?.originate.map((o) => o.prefix)).toEqual([
      "10.96.0.0/16",
      "10.96.0.10/32",
      "198.51.100.0/24",
      "198.51.100.10/32",
      "203.0.113.0/24",
      "203.0.113.10/32",
    ]);
  });
});
