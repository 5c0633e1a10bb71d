// The agent's policy input from resources (pure): no policy resource leaves the agent's input as
// before (no `policy` key at all); the three kinds become Calico-model policies; every
// WorkloadEndpoint is a rule peer with its namespace label, only this node's are policed.
import { describe, expect, it } from "vitest";
import type { WorkloadEndpoint } from "../../src/api/node.js";
import type { GlobalNetworkPolicy, K8sNetworkPolicy, NetworkPolicy } from "../../src/api/policy.js";
import { renderDataplane } from "../../src/felix/dataplane.js";
import type { NodeSnapshot } from "../../src/node/agent_state.js";
import { agentInput, policyEndpointsOf, policyInputOf } from "../../src/node/agent_state.js";

const V3 = "projectcalico.org/v3" as const;

const wep = (ns: string, name: string, node: string, iface: string, ip: string, app: string) =>
  ({
    apiVersion: V3,
    kind: "WorkloadEndpoint",
    metadata: { name, namespace: ns, labels: { app, "projectcalico.org/orchestrator": "k8s" } },
    spec: { node, interfaceName: iface, ipNetworks: [`${ip}/32`] },
  }) as WorkloadEndpoint;

const snap = (over: Partial<NodeSnapshot> = {}): NodeSnapshot => ({
  nodes: [],
  workloadEndpoints: [
    wep("default", "a", "n1", "ocl0000000001", "10.244.0.1", "a"),
    wep("default", "b", "n1", "ocl0000000002", "10.244.0.2", "b"),
    wep("prod", "c", "n2", "ocl0000000003", "10.244.1.1", "a"),
  ],
  pools: [],
  affinities: [],
  ...over,
});

const np: NetworkPolicy = {
  apiVersion: V3,
  kind: "NetworkPolicy",
  metadata: { name: "b", namespace: "default" },
  spec: {
    tier: "default",
    selector: "app == 'b'",
    types: ["Ingress"],
    ingress: [{ action: "Allow", source: { selector: "app == 'a'" } }],
  },
};
const gnp: GlobalNetworkPolicy = {
  apiVersion: V3,
  kind: "GlobalNetworkPolicy",
  metadata: { name: "g" },
  spec: { tier: "default", selector: "all()", types: ["Egress"], order: 5 },
};
const knp: K8sNetworkPolicy = {
  apiVersion: "networking.k8s.io/v1",
  kind: "NetworkPolicy",
  metadata: { name: "k", namespace: "default" },
  spec: { podSelector: {}, policyTypes: ["Ingress"] },
};

describe("policy input of the agent", () => {
  it("no policy resource: no policy key; the dataplane dispatches the local pods alone (Felix's unknown-interface drop)", () => {
    const input = agentInput(snap(), "n1");
    expect("policy" in input).toBe(false);
    expect(policyInputOf(snap({ networkPolicies: [] }), "n1")).toBeUndefined();
    const filter = renderDataplane(input).families[0]?.tables[0];
    expect(filter?.chains.map((c) => c.name)).toEqual([
      "ocl-FORWARD",
      "ocl-INPUT",
      "ocl-from-wl-dispatch",
      "ocl-to-wl-dispatch",
    ]);
    expect(filter?.chains.find((c) => c.name === "ocl-to-wl-dispatch")?.rules).toEqual([
      "-o ocl0000000001 -j RETURN",
      "-o ocl0000000002 -j RETURN",
      "-j DROP",
    ]);
  });

  it("every endpoint a peer with its namespace label; only this node's carry an interface", () => {
    expect(policyEndpointsOf(snap().workloadEndpoints, "n1")).toEqual([
      {
        id: "default/a",
        namespace: "default",
        labels: {
          app: "a",
          "projectcalico.org/orchestrator": "k8s",
          "projectcalico.org/namespace": "default",
        },
        addresses: ["10.244.0.1"],
        iface: "ocl0000000001",
      },
      expect.objectContaining({ id: "default/b", iface: "ocl0000000002" }),
      {
        id: "prod/c",
        namespace: "prod",
        labels: {
          app: "a",
          "projectcalico.org/orchestrator": "k8s",
          "projectcalico.org/namespace": "prod",
        },
        addresses: ["10.244.1.1"],
      },
    ]);
  });

  it("an endpoint's named ports (its `ports` with a name; the protocol in iptables' spelling)", () => {
    const w = wep("default", "a", "n1", "ocl0000000001", "10.244.0.1", "a");
    w.spec.ports = [
      { name: "http", protocol: "TCP", port: 8080 },
      { protocol: "TCP", port: 443, hostPort: 8443 },
      { name: "dns", protocol: "UDP", port: 53 },
    ];
    expect(policyEndpointsOf([w], "n1")[0]?.ports).toEqual([
      { name: "http", protocol: "tcp", port: 8080 },
      { name: "dns", protocol: "udp", port: 53 },
    ]);
    expect(policyEndpointsOf(snap().workloadEndpoints, "n1")[0]).not.toHaveProperty("ports");
  });

  it("the three kinds in Calico's model, rendered into this node's filter table", () => {
    const s = snap({
      networkPolicies: [np],
      globalNetworkPolicies: [gnp],
      k8sNetworkPolicies: [knp],
    });
    const p = policyInputOf(s, "n1");
    expect(p?.policies.map((x) => [x.id, x.order, x.types])).toEqual([
      ["default/b", undefined, ["Ingress"]],
      ["g", 5, ["Egress"]],
      ["default/knp.default.k", 1000, ["Ingress"]],
    ]);
    const chains = renderDataplane(agentInput(s, "n1")).families[0]?.tables[0]?.chains ?? [];
    const names = chains.map((c) => c.name);
    // No ocl-OUTPUT: the host's own traffic to a pod is not policed (Felix's filterOutputChain).
    expect(names).not.toContain("ocl-OUTPUT");
    for (const c of [
      "ocl-INPUT",
      "ocl-tw-ocl0000000001",
      "ocl-tw-ocl0000000002",
      "ocl-fw-ocl0000000001",
      "ocl-fw-ocl0000000002",
    ])
      expect(names).toContain(c);
    expect(names.some((n) => n.includes("ocl0000000003"))).toBe(false);
  });

  it("dispatch by set when asked (OCELOT_POLICY_DISPATCH=set): group chains, no per-pod ones", () => {
    const s = snap({ networkPolicies: [np], globalNetworkPolicies: [gnp] });
    expect(agentInput(s, "n1").policy?.dispatchBySet).toBeUndefined();
    const input = agentInput(s, "n1", { dispatchBySet: true });
    expect(input.policy?.dispatchBySet).toBe(true);
    const v4 = renderDataplane(input).families[0];
    const names = (v4?.tables[0]?.chains ?? []).map((c) => c.name);
    expect(names.some((n) => /^ocl-[tf]w-/.test(n))).toBe(false);
    expect(names.some((n) => /^ocl-tg-/.test(n))).toBe(true);
    expect(v4?.ipsets.some((x) => x.members.includes("0.0.0.0/0,ocl0000000002"))).toBe(true);
  });
});
