// The agent's input from the kinds added for Calico users (pure): Tiers and network sets reach
// the policy input, staged policies never do (they are not read), profiles' rules and this
// node's host endpoints reach the agent, FelixConfiguration's `node.<name>` wins over `default`
// field by field, and the Felix fields the agent does not act on are named in a warning.
import { describe, expect, it } from "vitest";
import type { WorkloadEndpoint } from "../../src/api/node.js";
import { validateResource } from "../../src/api/registry.js";
import type { NodeSnapshot } from "../../src/node/agent_state.js";
import {
  agentInput,
  hostInputOf,
  policyInputOf,
  storedOnlyWarnings,
} from "../../src/node/agent_state.js";

const res = <T>(doc: Record<string, unknown>) =>
  validateResource({ apiVersion: "projectcalico.org/v3", ...doc }).resource as T;

const snap = (over: Partial<NodeSnapshot>): NodeSnapshot => ({
  nodes: [],
  workloadEndpoints: [
    res<WorkloadEndpoint>({
      kind: "WorkloadEndpoint",
      metadata: { name: "b", namespace: "default", labels: { app: "b" } },
      spec: { node: "n1", interfaceName: "ocl0000000002", ipNetworks: ["10.244.0.2/32"] },
    }),
  ],
  pools: [],
  affinities: [],
  ...over,
});

describe("policyInputOf() with Calico's other kinds", () => {
  it("carries tiers and both kinds of network sets; staged policies are not policy", () => {
    const input = policyInputOf(
      snap({
        globalNetworkPolicies: [
          res({
            kind: "GlobalNetworkPolicy",
            metadata: { name: "sec.p" },
            spec: { tier: "sec", ingress: [{ action: "Pass" }] },
          }),
        ],
        tiers: [res({ kind: "Tier", metadata: { name: "sec" }, spec: { order: 10 } })],
        networkSets: [
          res({
            kind: "GlobalNetworkSet",
            metadata: { name: "g", labels: { r: "x" } },
            spec: { nets: ["192.0.2.0/24"] },
          }),
          res({
            kind: "NetworkSet",
            metadata: { name: "n", namespace: "prod", labels: { r: "y" } },
            spec: { nets: ["10.1.0.0/16"] },
          }),
        ],
      }),
      "n1",
    );
    expect(input?.policies.map((p) => [p.id, p.tier])).toEqual([["sec.p", "sec"]]);
    expect(input?.tiers).toEqual([{ name: "sec", order: 10, defaultAction: "Deny" }]);
    expect(input?.networkSets).toEqual([
      { labels: { r: "x" }, nets: ["192.0.2.0/24"] },
      { namespace: "prod", labels: { r: "y" }, nets: ["10.1.0.0/16"] },
    ]);
    // A snapshot has no field for staged policies: the daemon never reads them.
    expect(policyInputOf(snap({}), "n1")).toBeUndefined();
  });

  it("gives endpoints their profiles' labelsToApply under their own labels (first profile wins)", () => {
    const wep = res<WorkloadEndpoint>({
      kind: "WorkloadEndpoint",
      metadata: { name: "p", namespace: "prod", labels: { app: "p", team: "own" } },
      spec: {
        node: "n1",
        interfaceName: "ocl0000000009",
        ipNetworks: ["10.244.0.9/32"],
        profiles: ["kns.prod", "ksa.prod.api"],
      },
    });
    const input = policyInputOf(
      snap({
        workloadEndpoints: [wep],
        globalNetworkPolicies: [
          res({
            kind: "GlobalNetworkPolicy",
            metadata: { name: "g" },
            spec: { selector: "env == 'prod'" },
          }),
        ],
        profiles: [
          res({
            kind: "Profile",
            metadata: { name: "kns.prod" },
            spec: { labelsToApply: { env: "prod", team: "ns", tier: "a" } },
          }),
          res({
            kind: "Profile",
            metadata: { name: "ksa.prod.api" },
            spec: { labelsToApply: { sa: "api", tier: "b" } },
          }),
        ],
      }),
      "n1",
    );
    expect(input?.endpoints[0]?.labels).toEqual({
      env: "prod",
      team: "own",
      tier: "a",
      sa: "api",
      app: "p",
      "projectcalico.org/namespace": "prod",
    });
  });

  it("names the Felix configuration fields it does not act on, and only those", () => {
    const w = storedOnlyWarnings(
      snap({
        hostEndpoints: [
          res({
            kind: "HostEndpoint",
            metadata: { name: "n1-eth0" },
            spec: { node: "n1", interfaceName: "eth0" },
          }),
        ],
        profiles: [
          res({
            kind: "Profile",
            metadata: { name: "kns.default" },
            spec: { ingress: [{ action: "Allow" }] },
          }),
        ],
        felixConfigurations: [
          res({
            kind: "FelixConfiguration",
            metadata: { name: "default" },
            spec: { bpfEnabled: false, reportingInterval: "0s", logSeverityScreen: "Info" },
          }),
          res({
            kind: "FelixConfiguration",
            metadata: { name: "node.n2" },
            spec: { reportingInterval: "1s" },
          }),
        ],
      }),
      "n1",
    );
    expect(w).toEqual([
      `FelixConfiguration "default": bpfEnabled, reportingInterval not acted on yet`,
    ]);
  });

  it("gives the agent this node's host endpoints, with node.<name> Felix settings over default", () => {
    const s = snap({
      hostEndpoints: [
        res({
          kind: "HostEndpoint",
          metadata: { name: "n1-eth0", labels: { role: "node" } },
          spec: { node: "n1", interfaceName: "eth0", profiles: ["p"] },
        }),
        res({
          kind: "HostEndpoint",
          metadata: { name: "n2-eth0" },
          spec: { node: "n2", expectedIPs: ["192.0.2.9"] },
        }),
      ],
      profiles: [
        res({ kind: "Profile", metadata: { name: "p" }, spec: { labelsToApply: { zone: "a" } } }),
      ],
      felixConfigurations: [
        res({
          kind: "FelixConfiguration",
          metadata: { name: "default" },
          spec: {
            defaultEndpointToHostAction: "Drop",
            failsafeInboundHostPorts: [{ protocol: "TCP", port: 22 }],
          },
        }),
        res({
          kind: "FelixConfiguration",
          metadata: { name: "node.n1" },
          spec: { defaultEndpointToHostAction: "Accept" },
        }),
      ],
    });
    const h = hostInputOf(s, "n1");
    expect(h.hostEndpoints).toEqual([
      {
        name: "n1-eth0",
        interfaceName: "eth0",
        labels: { zone: "a", role: "node" },
        profiles: ["p"],
      },
    ]);
    expect(h.defaultEndpointToHostAction).toBe("Accept");
    expect(h.failsafeInbound).toEqual([{ protocol: "tcp", port: 22 }]);
    expect(h.failsafeOutbound).toBeUndefined();
    expect(hostInputOf(s, "n2").defaultEndpointToHostAction).toBe("Drop");
    // n2's host endpoint is a rule peer on n1 (its expectedIPs), policed only on n2.
    const p = policyInputOf(s, "n1");
    expect(p?.endpoints.find((e) => e.id === "hostendpoint/n2-eth0")?.addresses).toEqual([
      "192.0.2.9",
    ]);
  });

  it("carries profiles with rules and each endpoint's profile list", () => {
    const s = snap({
      workloadEndpoints: [
        res<WorkloadEndpoint>({
          kind: "WorkloadEndpoint",
          metadata: { name: "b", namespace: "default" },
          spec: { node: "n1", interfaceName: "ocl0000000002", profiles: ["kns.default", "none"] },
        }),
      ],
      profiles: [
        res({
          kind: "Profile",
          metadata: { name: "kns.default" },
          spec: { ingress: [{ action: "Allow" }] },
        }),
        res({ kind: "Profile", metadata: { name: "empty" } }),
      ],
    });
    const p = policyInputOf(s, "n1");
    expect(p?.policies).toEqual([]);
    expect(p?.profiles?.map((x) => x.name)).toEqual(["kns.default"]);
    expect(p?.endpoints[0]?.profiles).toEqual(["kns.default", "none"]);
  });
});

describe("agentInput() with FelixConfiguration's verdicts, VXLAN settings and DSCP", () => {
  it("takes the actions and vxlanPort/vxlanVNI (node.<name> over default) and a pod's DSCP", () => {
    const s = snap({
      workloadEndpoints: [
        res<WorkloadEndpoint>({
          kind: "WorkloadEndpoint",
          metadata: { name: "b", namespace: "default" },
          spec: {
            node: "n1",
            interfaceName: "ocl0000000002",
            ipNetworks: ["10.244.0.2/32"],
            qosControls: { dscp: "EF" },
          },
        }),
      ],
      felixConfigurations: [
        res({
          kind: "FelixConfiguration",
          metadata: { name: "default" },
          spec: { iptablesFilterAllowAction: "Return", vxlanPort: 4790, vxlanVNI: 5000 },
        }),
        res({
          kind: "FelixConfiguration",
          metadata: { name: "node.n1" },
          spec: { iptablesFilterDenyAction: "Reject", vxlanVNI: 6000 },
        }),
      ],
    });
    const input = agentInput(s, "n1");
    expect(input.actions).toEqual({
      filterAllow: "Return",
      mangleAllow: "Accept",
      filterDeny: "Reject",
    });
    expect(input.overlay?.vxlan).toEqual({ port: 4790, vni: 6000 });
    expect(input.workloads[0]).toMatchObject({ dscp: 46 });
    expect(storedOnlyWarnings(s, "n1").join("\n")).not.toMatch(/iptablesFilter|vxlanPort|vxlanVNI/);
    expect(agentInput(snap({}), "n1").actions).toBeUndefined();
  });

  it("takes a HostEndpoint's qos.projectcalico.org/dscp annotation; an invalid one is left out", () => {
    const hep = (name: string, dscp: string) =>
      res({
        kind: "HostEndpoint",
        metadata: { name, annotations: { "qos.projectcalico.org/dscp": dscp } },
        spec: { node: "n1", interfaceName: name, expectedIPs: ["192.0.2.1"] },
      });
    const h = hostInputOf(
      snap({ hostEndpoints: [hep("eth0", "AF11"), hep("eth1", "99")] as never }),
      "n1",
    );
    expect(h.hostEndpoints.map((e) => [e.name, e.dscp])).toEqual([
      ["eth0", 10],
      ["eth1", undefined],
    ]);
  });
});
