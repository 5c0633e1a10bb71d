// The agent's input from the kinds added for Calico users (pure): Tiers and network sets reach
// the policy input, staged policies never do (they are not read), and what is stored but not
// enforced (host endpoints, profiles with rules, Felix configuration) is named in a warning.
import { describe, expect, it } from "vitest";
import type { WorkloadEndpoint } from "../../src/api/node.js";
import { validateResource } from "../../src/api/registry.js";
import type { NodeSnapshot } from "../../src/node/agent_state.js";
import { policyInputOf, storedOnlyWarnings } from "../../src/node/agent_state.js";

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

  it("names host endpoints, profiles with rules and Felix configuration fields it does not act on", () => {
    const w = storedOnlyWarnings(
      snap({
        hostEndpoints: [
          res({
            kind: "HostEndpoint",
            metadata: { name: "n1-eth0" },
            spec: { node: "n1", interfaceName: "eth0" },
          }),
          res({
            kind: "HostEndpoint",
            metadata: { name: "n2-eth0" },
            spec: { node: "n2", interfaceName: "eth0" },
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
        felixConfigurations: [
          res({
            kind: "FelixConfiguration",
            metadata: { name: "default" },
            spec: { bpfEnabled: false, reportingInterval: "0s" },
          }),
          res({
            kind: "FelixConfiguration",
            metadata: { name: "node.n2" },
            spec: { logSeverityScreen: "Debug" },
          }),
        ],
      }),
      "n1",
    );
    expect(w).toEqual([
      `HostEndpoint "n1-eth0" (eth0): host endpoint policy is not enforced; the host's traffic is not policed`,
      `Profile "kns.default": its rules are not applied yet`,
      `FelixConfiguration "default": bpfEnabled, reportingInterval not acted on yet`,
    ]);
  });
});
