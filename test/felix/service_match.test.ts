// Pure tests of rule `services` matches (src/felix/service_match.ts through renderPolicy): a
// destination Service is a hash:ip,port set of its endpoints' addresses and ports matched
// dst,dst; a source Service a hash:net set of its endpoint addresses; the set's name depends on
// the Service only, so an endpoint change changes members, not rules; the namespace defaults to
// the policy's; a Service without endpoints matches nothing (an empty set).
import { describe, expect, it } from "vitest";
import {
  fromGlobalNetworkPolicy,
  fromNetworkPolicy,
  type PolicyEndpoint,
  policyChainName,
  renderPolicy,
} from "../../src/felix/policy.js";
import { type PolicyServiceSlice, serviceIpsetName } from "../../src/felix/service_match.js";

const A: PolicyEndpoint = {
  id: "team-a/a",
  namespace: "team-a",
  labels: { app: "a" },
  addresses: ["10.244.0.1/32"],
  iface: "oclaaaaaaaaaaa",
};
const web = (addresses: string[]): PolicyServiceSlice => ({
  namespace: "team-b",
  service: "web",
  addresses,
  ports: [{ port: 8080 }, { protocol: "UDP", port: 53 }],
});
const egressToWeb = fromNetworkPolicy({
  metadata: { name: "to-web", namespace: "team-a" },
  spec: {
    selector: "app == 'a'",
    types: ["Egress"],
    egress: [{ action: "Allow", destination: { services: { name: "web", namespace: "team-b" } } }],
  } as never,
});
const chain = (s: ReturnType<typeof renderPolicy>, name: string) =>
  s.chains.find((c) => c.name === name)?.rules;

describe("renderPolicy(): rule services matches", () => {
  it("a destination Service is its endpoints' address,protocol:port set, matched dst,dst", () => {
    const s = renderPolicy(
      { endpoints: [A], policies: [egressToWeb], services: [web(["10.244.1.5", "10.244.1.6"])] },
      4,
    );
    expect(s.warnings).toEqual([]);
    const name = serviceIpsetName(4, "team-b", "web", "destination");
    expect(s.ipsets).toEqual([
      {
        name,
        type: "hash:ip,port",
        family: "inet",
        members: [
          "10.244.1.5,tcp:8080",
          "10.244.1.5,udp:53",
          "10.244.1.6,tcp:8080",
          "10.244.1.6,udp:53",
        ],
      },
    ]);
    expect(chain(s, policyChainName("team-a/to-web", "Egress"))?.[0]).toBe(
      `-m set --match-set ${name} dst,dst -j MARK --set-xmark 0x10000/0x10000`,
    );
  });

  it("an endpoint change changes the set's members only: the chains stay the same", () => {
    const one = renderPolicy(
      { endpoints: [A], policies: [egressToWeb], services: [web(["10.244.1.5"])] },
      4,
    );
    const two = renderPolicy(
      { endpoints: [A], policies: [egressToWeb], services: [web(["10.244.1.9"])] },
      4,
    );
    expect(two.chains).toEqual(one.chains);
    expect(two.ipsets[0]?.name).toBe(one.ipsets[0]?.name);
    expect(two.ipsets[0]?.members).toEqual(["10.244.1.9,tcp:8080", "10.244.1.9,udp:53"]);
  });

  it("a source Service is a hash:net set of its endpoint addresses; namespace defaults to the policy's", () => {
    const p = fromNetworkPolicy({
      metadata: { name: "from-web", namespace: "team-b" },
      spec: {
        selector: "all()",
        ingress: [{ action: "Allow", protocol: "TCP", source: { services: { name: "web" } } }],
      } as never,
    });
    const B = { ...A, id: "team-b/b", namespace: "team-b" };
    const s = renderPolicy(
      { endpoints: [B], policies: [p], services: [web(["10.244.1.5", "fd00::5"])] },
      4,
    );
    const name = serviceIpsetName(4, "team-b", "web", "source");
    expect(s.ipsets).toEqual([
      { name, type: "hash:net", family: "inet", members: ["10.244.1.5/32"] },
    ]);
    expect(chain(s, policyChainName("team-b/from-web", "Ingress"))?.[0]).toBe(
      `-p tcp -m set --match-set ${name} src -j MARK --set-xmark 0x10000/0x10000`,
    );
    const v6 = renderPolicy(
      {
        endpoints: [{ ...B, addresses: ["fd00::1"] }],
        policies: [p],
        services: [web(["10.244.1.5", "fd00::5"])],
      },
      6,
    );
    expect(v6.ipsets[0]?.members).toEqual(["fd00::5/128"]);
  });

  it("a Service with no endpoints (or unknown) is an empty set: the rule matches nothing", () => {
    const p = fromGlobalNetworkPolicy({
      metadata: { name: "g" },
      spec: {
        selector: "all()",
        types: ["Egress"],
        egress: [{ action: "Allow", destination: { services: { name: "nope", namespace: "x" } } }],
      } as never,
    });
    const s = renderPolicy({ endpoints: [A], policies: [p], services: [web(["10.0.0.1"])] }, 4);
    expect(s.ipsets).toHaveLength(1);
    expect(s.ipsets[0]?.members).toEqual([]);
    expect(s.warnings).toEqual([]);
  });
});
