// Pure tests of the Calico features added to policy rendering (src/felix/policy.ts): tiers in
// Calico's order with their default action and Pass, GlobalNetworkSet/NetworkSet nets in the
// ipsets of the rule selectors that match their labels (as Calico scopes them), doNotTrack and
// preDNAT policies left out (host endpoints only), service-account matches (rules'
// serviceAccounts, policies' serviceAccountSelector) through the pcsa labels, HTTP matches rendered
// fail-closed (Service matches: test/felix/service_match.test.ts).
import { describe, expect, it } from "vitest";
import {
  endpointChainName,
  fromGlobalNetworkPolicy,
  fromNetworkPolicy,
  type Policy,
  type PolicyEndpoint,
  type PolicyInput,
  policyChainName,
  renderPolicy,
} from "../../src/felix/policy.js";

const ep = (
  name: string,
  ip: string,
  labels: Record<string, string>,
  iface?: string,
): PolicyEndpoint => ({
  id: `default/${name}`,
  namespace: "default",
  labels,
  addresses: [`${ip}/32`],
  ...(iface ? { iface } : {}),
});
const A = ep("a", "10.244.0.1", { app: "a" }, "oclaaaaaaaaaaa");
const B = ep("b", "10.244.0.2", { app: "b" }, "oclbbbbbbbbbbb");
const gnp = (name: string, spec: Record<string, unknown>): Policy =>
  fromGlobalNetworkPolicy({ metadata: { name }, spec: spec as never });
const TW_B = endpointChainName("oclbbbbbbbbbbb", "Ingress");
const chain = (s: { chains: { name: string; rules: string[] }[] }, name: string) =>
  s.chains.find((c) => c.name === name)?.rules;
const HEAD = [
  "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
  "-m conntrack --ctstate INVALID -j DROP",
  "-j MARK --set-xmark 0x0/0x30000",
];
const jump = (id: string) => [
  `-m mark --mark 0x0/0x20000 -j ${policyChainName(id, "Ingress")}`,
  "-m mark --mark 0x10000/0x10000 -j RETURN",
];

describe("renderPolicy(): tiers", () => {
  const inTier = (name: string, tier: string | undefined, order?: number) =>
    gnp(name, {
      selector: "app == 'b'",
      ...(tier ? { tier } : {}),
      ...(order !== undefined ? { order } : {}),
      ingress: [{ action: "Pass" }],
    });

  it("applies tiers by their order (the default tier's is 1000000), each ending in its default action", () => {
    const input: PolicyInput = {
      endpoints: [A, B],
      policies: [
        inTier("d1", undefined, 1),
        inTier("late.p", "late", 1),
        inTier("early.p", "early", 5),
      ],
      tiers: [
        { name: "early", order: 100, defaultAction: "Deny" },
        { name: "late", order: 2_000_000, defaultAction: "Pass" },
      ],
    };
    expect(chain(renderPolicy(input, 4), TW_B)).toEqual([
      ...HEAD,
      ...jump("early.p"),
      "-m mark --mark 0x0/0x20000 -j DROP",
      "-j MARK --set-xmark 0x0/0x30000",
      ...jump("d1"),
      "-m mark --mark 0x0/0x20000 -j DROP",
      "-j MARK --set-xmark 0x0/0x30000",
      ...jump("late.p"),
    ]);
  });

  it("a policy of a tier with no Tier resource comes last, ending in Deny", () => {
    const s = renderPolicy(
      { endpoints: [A, B], policies: [inTier("x.p", "x"), inTier("d1", undefined)] },
      4,
    );
    expect(chain(s, TW_B)).toEqual([
      ...HEAD,
      ...jump("d1"),
      "-m mark --mark 0x0/0x20000 -j DROP",
      "-j MARK --set-xmark 0x0/0x30000",
      ...jump("x.p"),
      "-m mark --mark 0x0/0x20000 -j DROP",
    ]);
  });

  it("a tier whose policies select nothing here is not rendered for the endpoint", () => {
    const other = gnp("sec.p", {
      tier: "sec",
      selector: "app == 'zzz'",
      ingress: [{ action: "Deny" }],
    });
    const s = renderPolicy(
      {
        endpoints: [A, B],
        policies: [other, inTier("d1", undefined)],
        tiers: [{ name: "sec", order: 1, defaultAction: "Deny" }],
      },
      4,
    );
    expect(chain(s, TW_B)).toEqual([...HEAD, ...jump("d1"), "-m mark --mark 0x0/0x20000 -j DROP"]);
  });
});

describe("renderPolicy(): network sets", () => {
  const deny = (spec: Record<string, unknown>) =>
    gnp("deny-bad", {
      selector: "app == 'b'",
      ingress: [{ action: "Deny", source: spec }, { action: "Allow" }],
    });
  const sets = [
    { labels: { role: "bad" }, nets: ["198.51.100.0/24", "2001:db8::/32", "1.2.3.4/16"] },
    { namespace: "default", labels: { role: "bad" }, nets: ["203.0.113.7"] },
    { namespace: "other", labels: { role: "bad" }, nets: ["203.0.113.8/32"] },
  ];

  it("a global policy's selector matches every set's nets (host bits masked), by family", () => {
    const s = renderPolicy(
      { endpoints: [A, B], policies: [deny({ selector: "role == 'bad'" })], networkSets: sets },
      4,
    );
    expect(s.ipsets.map((i) => i.members)).toEqual([
      ["1.2.0.0/16", "198.51.100.0/24", "203.0.113.7/32", "203.0.113.8/32"],
    ]);
    const s6 = renderPolicy(
      { endpoints: [A, B], policies: [deny({ selector: "role == 'bad'" })], networkSets: sets },
      6,
    );
    expect(s6.ipsets.map((i) => i.members)).toEqual([["2001:db8::/32"]]);
  });

  it("a namespaced policy sees its namespace's NetworkSets; global() the GlobalNetworkSets", () => {
    const ns = fromNetworkPolicy({
      metadata: { name: "p", namespace: "default" },
      spec: {
        selector: "app == 'b'",
        ingress: [{ action: "Deny", source: { selector: "role == 'bad'" } }],
      } as never,
    });
    expect(
      renderPolicy({ endpoints: [A, B], policies: [ns], networkSets: sets }, 4).ipsets[0]?.members,
    ).toEqual(["203.0.113.7/32"]);
    const glob = deny({ selector: "role == 'bad'", namespaceSelector: "global()" });
    expect(
      renderPolicy({ endpoints: [A, B], policies: [glob], networkSets: sets }, 4).ipsets[0]
        ?.members,
    ).toEqual(["1.2.0.0/16", "198.51.100.0/24"]);
  });

  it("a set change changes only the ipset's members, never a chain", () => {
    const p = [deny({ selector: "role == 'bad'" })];
    const before = renderPolicy(
      { endpoints: [A, B], policies: p, networkSets: [sets[0] as never] },
      4,
    );
    const after = renderPolicy(
      {
        endpoints: [A, B],
        policies: p,
        networkSets: [{ labels: { role: "bad" }, nets: ["192.0.2.9/32"] }],
      },
      4,
    );
    expect(after.chains).toEqual(before.chains);
    expect(after.ipsets.map((i) => i.name)).toEqual(before.ipsets.map((i) => i.name));
    expect(after.ipsets[0]?.members).toEqual(["192.0.2.9/32"]);
  });
});

describe("renderPolicy(): what Ocelot cannot enforce yet", () => {
  it("leaves doNotTrack and preDNAT policies out of pods' chains (host endpoints only, as Calico)", () => {
    const p = gnp("raw", {
      selector: "all()",
      doNotTrack: true,
      applyOnForward: true,
      ingress: [{ action: "Deny" }],
    });
    const s = renderPolicy({ endpoints: [A, B], policies: [p] }, 4);
    // The dispatch chains alone: both pods known, dispatched to nothing.
    expect(s.chains.map((c) => c.name)).toEqual(["ocl-from-wl-dispatch", "ocl-to-wl-dispatch"]);
    expect(s.chains.flatMap((c) => c.rules).filter((r) => !/-j (RETURN|DROP)$/.test(r))).toEqual(
      [],
    );
    expect(s.warnings).toEqual([]);
  });

  it("renders http matches fail-closed: an Allow matches nothing, a Deny denies", () => {
    const p = gnp("sa", {
      selector: "app == 'b'",
      ingress: [
        { action: "Allow", http: { methods: ["GET"] } },
        { action: "Deny", protocol: "TCP", http: { methods: ["GET"] } },
      ],
    });
    const s = renderPolicy({ endpoints: [A, B], policies: [p] }, 4);
    expect(chain(s, policyChainName("sa", "Ingress"))).toEqual(["-p tcp -j DROP"]);
    expect(s.warnings).toEqual([
      'policy "sa" ingress rule 1: http match not supported yet; rule not rendered',
      'policy "sa" ingress rule 2: http match not supported yet; rule denies every port',
    ]);
  });
});

describe("renderPolicy(): service accounts (Calico's pcsa.* labels)", () => {
  // api-1 runs as service account "api" (the CNI plugin's label only); web-1 as "web" with its
  // ksa Profile's labels (what kube-controllers writes, applied by the agent as labelsToApply).
  const API = ep("api-1", "10.244.0.3", { app: "x", "projectcalico.org/serviceaccount": "api" });
  const WEB = ep("web-1", "10.244.0.4", {
    app: "x",
    "projectcalico.org/serviceaccount": "web",
    "pcsa.projectcalico.org/name": "web",
    "pcsa.role": "frontend",
  });
  const members = (s: ReturnType<typeof renderPolicy>) => s.ipsets.map((i) => i.members);

  it("a rule's serviceAccounts names match the endpoints running as them", () => {
    const p = gnp("sa", {
      selector: "app == 'b'",
      ingress: [{ action: "Allow", source: { serviceAccounts: { names: ["api"] } } }],
    });
    const s = renderPolicy({ endpoints: [A, B, API, WEB], policies: [p] }, 4);
    expect(s.warnings).toEqual([]);
    expect(members(s)).toEqual([["10.244.0.3/32"]]);
    expect(chain(s, policyChainName("sa", "Ingress"))?.[0]).toMatch(
      /^-m set --match-set ocl-s-\S+ src -j MARK/,
    );
  });

  it("a serviceAccounts selector matches the service account's labels, with the rule's own selector", () => {
    const p = gnp("sa", {
      selector: "app == 'b'",
      ingress: [
        {
          action: "Allow",
          source: { selector: "app == 'x'", serviceAccounts: { selector: "role == 'frontend'" } },
        },
      ],
    });
    expect(members(renderPolicy({ endpoints: [A, B, API, WEB], policies: [p] }, 4))).toEqual([
      ["10.244.0.4/32"],
    ]);
  });

  it("names and selector together: both must hold", () => {
    const p = gnp("sa", {
      selector: "app == 'b'",
      ingress: [
        {
          action: "Allow",
          source: { serviceAccounts: { names: ["api"], selector: "role == 'frontend'" } },
        },
      ],
    });
    const s = renderPolicy({ endpoints: [A, B, API, WEB], policies: [p] }, 4);
    expect(members(s)).toEqual([[]]);
  });

  it("a policy's serviceAccountSelector narrows the endpoints it applies to", () => {
    const p = fromNetworkPolicy({
      metadata: { name: "fe", namespace: "default" },
      spec: {
        selector: "app == 'x'",
        serviceAccountSelector: "role == 'frontend'",
        ingress: [{ action: "Deny" }],
      } as never,
    });
    expect(p.selector).toBe('app == "x" && pcsa.role == "frontend"');
    const local = (e: PolicyEndpoint, iface: string) => ({ ...e, iface });
    const s = renderPolicy(
      { endpoints: [local(API, "oclapiiiiiiiii"), local(WEB, "oclwebbbbbbbbb")], policies: [p] },
      4,
    );
    const names = s.chains.map((c) => c.name);
    expect(names).toContain(endpointChainName("oclwebbbbbbbbb", "Ingress"));
    expect(names).not.toContain(endpointChainName("oclapiiiiiiiii", "Ingress"));
  });
});
