// Pure tests of network policy rendering (src/felix/policy.ts) and its hooks: which endpoints a
// policy selects (namespace, selector, namespaceSelector), the endpoint, policy and dispatch
// chains (golden rules), ordering and Calico's defaults, rule matches (protocols, nets, ports,
// ICMP, selectors as ipsets), Kubernetes NetworkPolicy translation, and that no policy leaves
// the dispatch chains alone (Felix's unknown-interface drop).
import { describe, expect, it } from "vitest";
import type { K8sNetworkPolicy, Rule } from "../../src/api/policy.js";
import { DEFAULT_RULE_ACTIONS } from "../../src/felix/actions.js";
import { renderDataplane } from "../../src/felix/dataplane.js";
import { parseIptablesSave, planTable, renderFilterTable } from "../../src/felix/iptables.js";
import {
  endpointChainName,
  fromGlobalNetworkPolicy,
  fromK8sNetworkPolicy,
  fromNetworkPolicy,
  type Policy,
  type PolicyEndpoint,
  type PolicyInput,
  policyChainName,
  policyIpsetName,
  renderPolicy,
  sortPolicies,
} from "../../src/felix/policy.js";
import { restoreModel } from "./model.js";

const ep = (
  name: string,
  ip: string,
  labels: Record<string, string>,
  opts: { ns?: string; iface?: string } = {},
): PolicyEndpoint => ({
  id: `${opts.ns ?? "default"}/${name}`,
  namespace: opts.ns ?? "default",
  labels: { ...labels, "projectcalico.org/orchestrator": "k8s" },
  addresses: [`${ip}/32`],
  ...(opts.iface ? { iface: opts.iface } : {}),
});

const A = ep("a", "10.244.0.1", { app: "a" }, { iface: "oclaaaaaaaaaaa" });
const B = ep("b", "10.244.0.2", { app: "b" }, { iface: "oclbbbbbbbbbbb" });
const REMOTE_A = ep("ra", "10.244.9.1", { app: "a" }); // another node's
const OTHER_NS_A = ep("oa", "10.244.9.2", { app: "a" }, { ns: "other" });
const ENDPOINTS = [A, B, REMOTE_A, OTHER_NS_A];

const np = (name: string, spec: Record<string, unknown>, ns = "default"): Policy =>
  fromNetworkPolicy({ metadata: { name, namespace: ns }, spec: spec as never });

const allowFromA = np("b-from-a", {
  selector: "app == 'b'",
  ingress: [
    {
      action: "Allow",
      protocol: "TCP",
      source: { selector: "app == 'a'" },
      destination: { ports: [8080] },
    },
  ],
});

const input = (policies: Policy[], endpoints = ENDPOINTS): PolicyInput => ({
  endpoints,
  policies,
});

const chain = (state: { chains: { name: string; rules: string[] }[] }, name: string) =>
  state.chains.find((c) => c.name === name)?.rules;

/** Both local endpoints (a and b) dispatched to nothing, every other workload interface dropped. */
const DISPATCH_ONLY = {
  chains: [
    {
      name: "ocl-from-wl-dispatch",
      rules: ["-i oclaaaaaaaaaaa -j RETURN", "-i oclbbbbbbbbbbb -j RETURN", "-j DROP"],
    },
    {
      name: "ocl-to-wl-dispatch",
      rules: ["-o oclaaaaaaaaaaa -j RETURN", "-o oclbbbbbbbbbbb -j RETURN", "-j DROP"],
    },
  ],
  workloadToHostHead: [],
  ipsets: [],
  warnings: [],
};

describe("renderPolicy(): endpoint, policy and dispatch chains", () => {
  it("renders the selected local endpoint's ingress chain, its policy chain and the ipset", () => {
    const s = renderPolicy(input([allowFromA]), 4);
    const tw = endpointChainName("oclbbbbbbbbbbb", "Ingress");
    const pi = policyChainName("default/b-from-a", "Ingress");
    expect(tw).toBe("ocl-tw-oclbbbbbbbbbbb");
    expect(pi).toMatch(/^ocl-pi-[A-Za-z0-9]{16}$/);
    expect(s.chains.map((c) => c.name)).toEqual([
      "ocl-from-wl-dispatch",
      "ocl-to-wl-dispatch",
      tw,
      pi,
    ]);
    // Every known local endpoint is dispatched (to nothing when not policed), an unknown
    // workload interface dropped (Felix's "Unknown interface").
    expect(chain(s, "ocl-from-wl-dispatch")).toEqual([
      "-i oclaaaaaaaaaaa -j RETURN",
      "-i oclbbbbbbbbbbb -j RETURN",
      "-j DROP",
    ]);
    expect(chain(s, "ocl-to-wl-dispatch")).toEqual([
      "-o oclaaaaaaaaaaa -j RETURN",
      `-o oclbbbbbbbbbbb -g ${tw}`,
      "-j DROP",
    ]);
    expect(chain(s, tw)).toEqual([
      "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
      "-m conntrack --ctstate INVALID -j DROP",
      "-j MARK --set-xmark 0x0/0x30000",
      `-m mark --mark 0x0/0x20000 -j ${pi}`,
      "-m mark --mark 0x10000/0x10000 -j RETURN",
      "-m mark --mark 0x0/0x20000 -j DROP",
    ]);
    // The rule's selector stays in the policy's namespace: A here and on another node, not
    // the app=a pod of namespace "other".
    const set = policyIpsetName(
      "s",
      4,
      JSON.stringify({ selector: 'app == "a"', namespace: "default" }),
    );
    expect(chain(s, pi)).toEqual([
      `-p tcp -m set --match-set ${set} src -m multiport --dports 8080 -j MARK --set-xmark 0x10000/0x10000`,
      "-m mark --mark 0x10000/0x10000 -j RETURN",
    ]);
    expect(s.ipsets).toEqual([
      {
        name: set,
        type: "hash:net",
        family: "inet",
        members: ["10.244.0.1/32", "10.244.9.1/32"],
      },
    ]);
    expect(set).toMatch(/^ocl-s-[A-Za-z0-9]{20}$/);
  });

  it("without a workload policy or a profile with rules: the dispatch chains alone (Felix's unknown-interface drop is always)", () => {
    expect(renderPolicy(input([]), 4)).toEqual(DISPATCH_ONLY);
    expect(
      renderPolicy({ ...input([]), profiles: [{ name: "p", ingress: [], egress: [] }] }, 4),
    ).toEqual(DISPATCH_ONLY);
    // No local endpoint at all: every workload interface is unknown.
    expect(renderPolicy({ endpoints: [], policies: [] }, 4).chains).toEqual([
      { name: "ocl-from-wl-dispatch", rules: ["-j DROP"] },
      { name: "ocl-to-wl-dispatch", rules: ["-j DROP"] },
    ]);
  });

  it("a policy selecting no local endpoint: every local endpoint dispatched to nothing, unknown interfaces dropped", () => {
    const onlyRemote = np("x", { selector: "app == 'zzz'" });
    const otherNs = np("y", { selector: "app == 'b'" }, "other");
    expect(renderPolicy(input([onlyRemote, otherNs]), 4)).toEqual(DISPATCH_ONLY);
    // With iptablesFilterDenyAction Reject, the unknown interface's rule rejects.
    const reject = renderPolicy(
      { ...input([onlyRemote]), actions: { ...DEFAULT_RULE_ACTIONS, filterDeny: "Reject" } },
      4,
    );
    expect(chain(reject, "ocl-to-wl-dispatch")?.at(-1)).toBe(
      "-j REJECT --reject-with icmp-port-unreachable",
    );
  });

  it("types: Ingress by default, Egress too with egress rules; an Egress-only policy leaves ingress open", () => {
    expect(np("p", {}).types).toEqual(["Ingress"]);
    expect(np("p", { egress: [{ action: "Allow" }] }).types).toEqual(["Ingress", "Egress"]);
    expect(np("p", {}).selector).toBe("all()");
    const egressOnly = np("out", {
      selector: "app == 'a'",
      types: ["Egress"],
      egress: [{ action: "Deny", protocol: "UDP", destination: { ports: [53] } }],
    });
    const s = renderPolicy(input([egressOnly]), 4);
    const fw = endpointChainName("oclaaaaaaaaaaa", "Egress");
    expect(chain(s, "ocl-from-wl-dispatch")).toEqual([
      `-i oclaaaaaaaaaaa -g ${fw}`,
      "-i oclbbbbbbbbbbb -j RETURN",
      "-j DROP",
    ]);
    expect(chain(s, "ocl-to-wl-dispatch")).toEqual([
      "-o oclaaaaaaaaaaa -j RETURN",
      "-o oclbbbbbbbbbbb -j RETURN",
      "-j DROP",
    ]);
    expect(chain(s, policyChainName("default/out", "Egress"))).toEqual([
      "-p udp -m multiport --dports 53 -j DROP",
    ]);
  });

  it("a selected endpoint with no rules in a direction drops everything in it (default deny)", () => {
    const s = renderPolicy(input([np("deny-all", { selector: "app == 'b'" })]), 4);
    expect(chain(s, policyChainName("default/deny-all", "Ingress"))).toEqual([]);
    expect(chain(s, "ocl-tw-oclbbbbbbbbbbb")?.at(-1)).toBe("-m mark --mark 0x0/0x20000 -j DROP");
  });

  it("applies policies by order (lower first, none last), ties by id", () => {
    const ps = [
      np("none", { selector: "all()" }),
      np("ten", { selector: "all()", order: 10 }),
      fromGlobalNetworkPolicy({ metadata: { name: "g-one" }, spec: { order: 1 } }),
      np("also-ten", { selector: "all()", order: 10 }),
    ];
    expect(sortPolicies(ps).map((p) => p.id)).toEqual([
      "g-one",
      "default/also-ten",
      "default/ten",
      "default/none",
    ]);
    const s = renderPolicy(input(ps), 4);
    const jumps = (chain(s, "ocl-tw-oclaaaaaaaaaaa") ?? [])
      .map((r) => / -j (ocl-pi-\S+)$/.exec(r)?.[1])
      .filter(Boolean);
    expect(jumps).toEqual(
      ["g-one", "default/also-ten", "default/ten", "default/none"].map((id) =>
        policyChainName(id, "Ingress"),
      ),
    );
  });

  it("GlobalNetworkPolicy: selector across namespaces, namespaceSelector on the namespace's labels", () => {
    const local = [A, ep("c", "10.244.0.3", { app: "a" }, { ns: "prod", iface: "oclccccccccccc" })];
    const gnp = fromGlobalNetworkPolicy({
      metadata: { name: "g" },
      spec: { selector: "app == 'a'", namespaceSelector: "projectcalico.org/name == 'prod'" },
    });
    const s = renderPolicy(input([gnp], local), 4);
    expect(chain(s, "ocl-to-wl-dispatch")).toEqual([
      "-o oclaaaaaaaaaaa -j RETURN",
      "-o oclccccccccccc -g ocl-tw-oclccccccccccc",
      "-j DROP",
    ]);
    const labelled = renderPolicy(
      {
        endpoints: local,
        policies: [
          fromGlobalNetworkPolicy({
            metadata: { name: "g" },
            spec: { namespaceSelector: "team == 'x'" },
          }),
        ],
        namespaceLabels: { default: { team: "x" } },
      },
      4,
    );
    expect(chain(labelled, "ocl-to-wl-dispatch")).toEqual([
      "-o oclaaaaaaaaaaa -g ocl-tw-oclaaaaaaaaaaa",
      "-o oclccccccccccc -j RETURN",
      "-j DROP",
    ]);
  });

  it("bad stored selectors never stop the render: the policy is left out, the rule fails closed, both named", () => {
    const bad = renderPolicy(input([np("bad", { selector: "app ==" }), allowFromA]), 4);
    expect(bad.warnings).toEqual([
      expect.stringMatching(/^Policy "default\/bad": .*Selector.*; policy not applied$/),
    ]);
    // The good policy is still rendered for B.
    expect(bad.chains.map((c) => c.name)).toContain("ocl-tw-oclbbbbbbbbbbb");
    const badRule = np("bad-rule", {
      selector: "app == 'b'",
      ingress: [
        { action: "Allow", source: { selector: "app in" } },
        { action: "Deny", source: { selector: "app in" } },
      ],
    });
    const s = renderPolicy(input([badRule]), 4);
    expect(s.warnings).toEqual([
      expect.stringMatching(
        /policy "default\/bad-rule" ingress rule 1: Selector "app in".*; rule not rendered$/,
      ),
      expect.stringMatching(
        /policy "default\/bad-rule" ingress rule 2: Selector "app in".*; rule denies all traffic$/,
      ),
    ]);
    const pi = s.chains.find((c) => c.name.startsWith("ocl-pi-"));
    expect(pi?.rules).toEqual(["-j DROP"]);
  });

  it("IPv6: neighbour discovery and MLD from a pod are accepted on the way to the host before the dispatch (Felix's ICMPv6Filter)", () => {
    const v6 = { ...B, addresses: ["fd00::2/128"] };
    const s = renderPolicy(input([allowFromA], [A, v6]), 6);
    // Felix's list: MLD 130-132, router solicitation 133, neighbour solicitation and
    // advertisement 135-136; a pod's router advertisement (134) is not among them.
    const ndp = [130, 131, 132, 133, 135, 136].map(
      (t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j ACCEPT`,
    );
    expect(s.workloadToHostHead).toEqual(ndp);
    // Neither dispatch has exceptions: forwarded traffic is never link-local, and an unknown
    // interface's ND is accepted before it reaches the from-workload dispatch's drop.
    expect(chain(s, "ocl-to-wl-dispatch")).toEqual([
      "-o oclaaaaaaaaaaa -j RETURN",
      "-o oclbbbbbbbbbbb -g ocl-tw-oclbbbbbbbbbbb",
      "-j DROP",
    ]);
    expect(chain(s, "ocl-from-wl-dispatch")).toEqual([
      "-i oclaaaaaaaaaaa -j RETURN",
      "-i oclbbbbbbbbbbb -j RETURN",
      "-j DROP",
    ]);
    expect(s.ipsets.map((x) => x.family)).toEqual(["inet6"]);
    // With iptablesFilterAllowAction Return they return, as Felix's filterAllowAction.
    const ret = renderPolicy(
      {
        ...input([allowFromA], [A, v6]),
        actions: { ...DEFAULT_RULE_ACTIONS, filterAllow: "Return" },
      },
      6,
    );
    expect(ret.workloadToHostHead).toEqual(ndp.map((r) => r.replace("ACCEPT", "RETURN")));
    expect(renderPolicy(input([allowFromA]), 4).workloadToHostHead).toEqual([]);
  });
});

describe("renderPolicy(): rule matches", () => {
  const rulesOf = (rules: Rule[], family: 4 | 6 = 4, dir: "ingress" | "egress" = "ingress") => {
    const p = np("r", {
      selector: "app == 'b'",
      types: [dir === "ingress" ? "Ingress" : "Egress"],
      [dir]: rules,
    });
    const s = renderPolicy(input([p]), family);
    return {
      rules: chain(s, policyChainName("default/r", dir === "ingress" ? "Ingress" : "Egress")),
      ipsets: s.ipsets,
      warnings: s.warnings,
    };
  };

  it("actions: Deny drops, Pass marks and returns, Log logs and goes on", () => {
    expect(
      rulesOf([{ action: "Deny" }, { action: "Pass" }, { action: "Log" }, { action: "Allow" }])
        .rules,
    ).toEqual([
      "-j DROP",
      "-j MARK --set-xmark 0x20000/0x20000",
      "-m mark --mark 0x20000/0x20000 -j RETURN",
      "-j LOG --log-prefix ocelot-packet",
      "-j MARK --set-xmark 0x10000/0x10000",
      "-m mark --mark 0x10000/0x10000 -j RETURN",
    ]);
  });

  it("nets: one as -s/-d (canonical), several and notNets as ipsets, /0 matches all, other family skips", () => {
    const r = rulesOf([
      { action: "Deny", source: { nets: ["10.1.2.3/8"] }, destination: { nets: ["10.9.9.9"] } },
      { action: "Deny", source: { nets: ["10.1.0.0/16", "10.2.0.0/16"] } },
      { action: "Deny", source: { notNets: ["192.168.0.0/16"] } },
      { action: "Deny", source: { nets: ["0.0.0.0/0"] }, protocol: "UDP" },
      { action: "Deny", source: { nets: ["fd00::/64"] } },
      { action: "Deny", source: { notNets: ["0.0.0.0/0"] } },
    ]);
    const many = policyIpsetName("n", 4, "10.1.0.0/16,10.2.0.0/16");
    const not = policyIpsetName("n", 4, "192.168.0.0/16");
    expect(r.rules).toEqual([
      "-s 10.0.0.0/8 -d 10.9.9.9/32 -j DROP",
      `-m set --match-set ${many} src -j DROP`,
      `-m set ! --match-set ${not} src -j DROP`,
      "-p udp -j DROP",
    ]);
    expect(r.ipsets.map((s) => [s.name, s.members])).toEqual(
      [
        [many, ["10.1.0.0/16", "10.2.0.0/16"]],
        [not, ["192.168.0.0/16"]],
      ].sort((a, b) => ((a[0] as string) < (b[0] as string) ? -1 : 1)),
    );
    expect(rulesOf([{ action: "Deny", source: { nets: ["fd00::/64"] } }], 6).rules).toEqual([
      "-s fd00::/64 -j DROP",
    ]);
  });

  it("ports: ranges, multiport chunks of 15 slots, notPorts, source ports; protocol names", () => {
    const many = Array.from({ length: 16 }, (_, i) => 1000 + i);
    const r = rulesOf([
      {
        action: "Allow",
        protocol: "TCP",
        destination: { ports: [80, "8000:8080", "9090:9090"], notPorts: [8005] },
        source: { ports: [1234] },
      },
      { action: "Deny", protocol: "UDP", destination: { ports: many } },
      { action: "Deny", protocol: 132 },
      { action: "Deny", protocol: 47 },
      { action: "Deny", notProtocol: "TCP" },
    ]);
    expect(r.rules).toEqual([
      "-p tcp -m multiport --sports 1234 -m multiport --dports 80,8000:8080,9090 -m multiport ! --dports 8005 -j MARK --set-xmark 0x10000/0x10000",
      "-m mark --mark 0x10000/0x10000 -j RETURN",
      `-p udp -m multiport --dports ${many.slice(0, 15).join(",")} -j DROP`,
      "-p udp -m multiport --dports 1015 -j DROP",
      "-p sctp -j DROP",
      "-p gre -j DROP",
      "! -p tcp -j DROP",
    ]);
  });

  it("named ports (Felix's rule scanner): hash:ip,port sets of the endpoints having the port, OR'ed with numeric ports", () => {
    const withPorts = (e: PolicyEndpoint, ports: PolicyEndpoint["ports"]): PolicyEndpoint => ({
      ...e,
      ports,
    });
    const eps = [
      withPorts(A, [
        { name: "http", protocol: "tcp", port: 8080 },
        { name: "dns", protocol: "udp", port: 53 },
      ]),
      withPorts(B, [{ name: "http", protocol: "tcp", port: 80 }]),
      withPorts(REMOTE_A, [{ name: "http", protocol: "udp", port: 8443 }]),
      OTHER_NS_A,
    ];
    const p = np("r", {
      selector: "app == 'b'",
      types: ["Ingress"],
      ingress: [
        // No selector: every endpoint with a TCP port named http.
        { action: "Allow", protocol: "TCP", destination: { ports: ["http", 81] } },
        // The positive selector filters the set, which then stands for it.
        {
          action: "Allow",
          protocol: "TCP",
          source: { selector: "app == 'a'", ports: ["http"] },
        },
        // No protocol: the port's own protocol, any of them.
        { action: "Deny", destination: { notPorts: ["http"] } },
      ],
    });
    const s = renderPolicy(input([p], eps), 4);
    const setOf = (k: unknown, port: string, proto: string | undefined) =>
      policyIpsetName("p", 4, JSON.stringify({ k, port, proto }));
    const tcpAll = setOf(undefined, "http", "tcp");
    const tcpA = setOf({ selector: 'app == "a"', namespace: "default" }, "http", "tcp");
    const anyAll = setOf(undefined, "http", undefined);
    expect(s.warnings).toEqual([]);
    expect(chain(s, policyChainName("default/r", "Ingress"))).toEqual([
      "-p tcp -m multiport --dports 81 -j MARK --set-xmark 0x10000/0x10000",
      `-p tcp -m set --match-set ${tcpAll} dst,dst -j MARK --set-xmark 0x10000/0x10000`,
      "-m mark --mark 0x10000/0x10000 -j RETURN",
      `-p tcp -m set --match-set ${tcpA} src,src -j MARK --set-xmark 0x10000/0x10000`,
      "-m mark --mark 0x10000/0x10000 -j RETURN",
      `-m set ! --match-set ${anyAll} dst,dst -j DROP`,
    ]);
    const set = (n: string) => s.ipsets.find((x) => x.name === n);
    expect(set(tcpAll)).toMatchObject({
      type: "hash:ip,port",
      members: ["10.244.0.1,tcp:8080", "10.244.0.2,tcp:80"],
    });
    // REMOTE_A's http is UDP: not in a TCP rule's set; OTHER_NS_A is in another namespace.
    expect(set(tcpA)?.members).toEqual(["10.244.0.1,tcp:8080"]);
    expect(set(anyAll)?.members).toEqual([
      "10.244.0.1,tcp:8080",
      "10.244.0.2,tcp:80",
      "10.244.9.1,udp:8443",
    ]);
  });

  it("an HTTP match is not resolved: an Allow is not rendered, a Deny denies every port (warned)", () => {
    const http = { methods: ["GET"] };
    const r = rulesOf([
      { action: "Allow", protocol: "TCP", destination: { ports: ["http"] }, http },
      { action: "Deny", protocol: "TCP", destination: { ports: ["http", 81] }, http },
    ] as Rule[]);
    expect(r.rules).toEqual(["-p tcp -j DROP"]);
    expect(r.warnings).toEqual([
      'policy "default/r" ingress rule 1: http match not supported yet; rule not rendered',
      'policy "default/r" ingress rule 2: http match not supported yet; rule denies every port',
    ]);
  });

  it("ICMP type and code; ICMP rules only in IPv4, ICMPv6 only in IPv6", () => {
    const rules: Rule[] = [
      { action: "Deny", protocol: "ICMP", icmp: { type: 8, code: 0 } },
      { action: "Deny", protocol: "ICMP", notICMP: { type: 3 } },
      { action: "Deny", protocol: "ICMPv6", icmp: { type: 128 } },
    ];
    expect(rulesOf(rules, 4).rules).toEqual([
      "-p icmp -m icmp --icmp-type 8/0 -j DROP",
      "-p icmp -m icmp ! --icmp-type 3 -j DROP",
    ]);
    expect(rulesOf(rules, 6).rules).toEqual(["-p ipv6-icmp -m icmp6 --icmpv6-type 128 -j DROP"]);
    expect(rulesOf([{ action: "Deny", ipVersion: 6 }], 4).rules).toEqual([]);
  });

  it("selectors: a notSelector alone keeps to the policy's namespace; namespaceSelector picks namespaces; destination sets match dst", () => {
    const r = rulesOf(
      [
        {
          action: "Allow",
          source: { notSelector: "app == 'a'" },
          destination: { namespaceSelector: "projectcalico.org/name == 'other'" },
        },
      ],
      4,
      "egress",
    );
    const not = policyIpsetName("s", 4, JSON.stringify({ selector: 'app == "a"' }));
    const ns = policyIpsetName(
      "s",
      4,
      JSON.stringify({ selector: "all()", namespaceSelector: 'projectcalico.org/name == "other"' }),
    );
    const inNs = policyIpsetName(
      "s",
      4,
      JSON.stringify({ selector: "all()", namespace: "default" }),
    );
    expect(r.rules?.[0]).toBe(
      `-m set --match-set ${inNs} src -m set ! --match-set ${not} src -m set --match-set ${ns} dst -j MARK --set-xmark 0x10000/0x10000`,
    );
    const members = Object.fromEntries(r.ipsets.map((s) => [s.name, s.members]));
    expect(members[inNs]).toEqual(["10.244.0.1/32", "10.244.0.2/32", "10.244.9.1/32"]);
    expect(members[not]).toEqual(["10.244.0.1/32", "10.244.9.1/32", "10.244.9.2/32"]);
    expect(members[ns]).toEqual(["10.244.9.2/32"]);
  });
});

describe("fromK8sNetworkPolicy(): Calico's translation", () => {
  const knp: K8sNetworkPolicy = {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: "web", namespace: "shop" },
    spec: {
      podSelector: {
        matchLabels: { app: "web" },
        matchExpressions: [{ key: "tier", operator: "NotIn", values: ["db"] }],
      },
      policyTypes: ["Ingress", "Egress"],
      ingress: [
        {
          from: [
            { podSelector: { matchLabels: { app: "lb" } } },
            { namespaceSelector: {}, podSelector: { matchLabels: { role: "mon" } } },
            { ipBlock: { cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] } },
          ],
          ports: [
            { port: 80 },
            { protocol: "TCP", port: 8000, endPort: 8100 },
            { protocol: "UDP" },
          ],
        },
      ],
      egress: [{}],
    },
  };

  it("names, orders and selects as Calico (knp.default.<name>, order 1000, k8s pods only)", () => {
    const p = fromK8sNetworkPolicy(knp);
    expect(p).toMatchObject({
      id: "shop/knp.default.web",
      namespace: "shop",
      order: 1000,
      selector: 'app == "web" && tier not in {"db"} && projectcalico.org/orchestrator == "k8s"',
      types: ["Ingress", "Egress"],
    });
    expect(p.egress).toEqual([{ action: "Allow" }]);
  });

  it("one rule per protocol and peer; ports with endPort as ranges; ipBlock except as notNets", () => {
    const p = fromK8sNetworkPolicy(knp);
    const tcp = { protocol: "TCP", destination: { ports: [80, "8000:8100"] } };
    expect(p.ingress).toEqual([
      {
        action: "Allow",
        ...tcp,
        source: { selector: 'app == "lb" && projectcalico.org/orchestrator == "k8s"' },
      },
      {
        action: "Allow",
        ...tcp,
        source: {
          selector: 'role == "mon" && projectcalico.org/orchestrator == "k8s"',
          namespaceSelector: "all()",
        },
      },
      { action: "Allow", ...tcp, source: { nets: ["10.0.0.0/8"], notNets: ["10.1.0.0/16"] } },
      {
        action: "Allow",
        protocol: "UDP",
        source: { selector: 'app == "lb" && projectcalico.org/orchestrator == "k8s"' },
      },
      {
        action: "Allow",
        protocol: "UDP",
        source: {
          selector: 'role == "mon" && projectcalico.org/orchestrator == "k8s"',
          namespaceSelector: "all()",
        },
      },
      {
        action: "Allow",
        protocol: "UDP",
        source: { nets: ["10.0.0.0/8"], notNets: ["10.1.0.0/16"] },
      },
    ]);
  });

  it("policyTypes default: Ingress, plus Egress when egress is given; empty podSelector: every k8s pod", () => {
    const bare = fromK8sNetworkPolicy({
      ...knp,
      spec: { podSelector: {}, policyTypes: undefined as never },
    });
    expect(bare.types).toEqual(["Ingress"]);
    expect(bare.selector).toBe('projectcalico.org/orchestrator == "k8s"');
    expect(bare.ingress).toEqual([]);
  });
});

describe("the filter table with and without policy", () => {
  const dp = (policy?: PolicyInput) =>
    renderDataplane({
      workloads: [{ id: "default/b", hostIface: "oclbbbbbbbbbbb", ipv4: ["10.244.0.2"], ipv6: [] }],
      pools: [{ cidr: "10.244.0.0/16", natOutgoing: true }],
      ...(policy ? { policy } : {}),
    });

  it("no policy: every local pod dispatched to nothing, an unknown workload interface dropped both ways and on its way to the host", () => {
    const t = dp().families[0]?.tables[0];
    expect(t?.chains).toEqual([
      {
        name: "ocl-FORWARD",
        rules: [
          "-i ocl+ -j ocl-from-wl-dispatch",
          "-o ocl+ -j ocl-to-wl-dispatch",
          "-i ocl+ -j ACCEPT",
          "-o ocl+ -j ACCEPT",
        ],
      },
      { name: "ocl-INPUT", rules: ["-i ocl+ -j ocl-from-wl-dispatch"] },
      { name: "ocl-from-wl-dispatch", rules: ["-i oclbbbbbbbbbbb -j RETURN", "-j DROP"] },
      { name: "ocl-to-wl-dispatch", rules: ["-o oclbbbbbbbbbbb -j RETURN", "-j DROP"] },
    ]);
    expect(t?.hooks.map((h) => h.builtin)).toEqual(["INPUT", "FORWARD"]);
    // A policy input without policies (the node daemon's, with some host endpoint) renders the
    // same: the dispatch alone.
    const sameIface = [{ ...B, iface: "oclbbbbbbbbbbb" }];
    expect(dp({ endpoints: sameIface, policies: [] }).families[0]?.tables[0]).toEqual(t);
    // The table without any workload dispatch is what renderFilterTable gives without policy.
    expect(renderFilterTable().chains).toEqual([
      { name: "ocl-FORWARD", rules: ["-i ocl+ -j ACCEPT", "-o ocl+ -j ACCEPT"] },
    ]);
    expect(dp().families[0]?.ipsets.map((s) => s.name)).toEqual([
      "ocl-all-ipam-pools",
      "ocl-masq-ipam-pools",
      "ocl-all-hosts-net",
    ]);
  });

  it("with policy: both dispatches before the accepts in FORWARD, INPUT hooked, OUTPUT not (host to pod is not policed, as Felix)", () => {
    const t = dp(input([allowFromA])).families[0]?.tables[0];
    expect(t?.chains.slice(0, 2)).toEqual([
      {
        name: "ocl-FORWARD",
        rules: [
          "-i ocl+ -j ocl-from-wl-dispatch",
          "-o ocl+ -j ocl-to-wl-dispatch",
          "-i ocl+ -j ACCEPT",
          "-o ocl+ -j ACCEPT",
        ],
      },
      { name: "ocl-INPUT", rules: ["-i ocl+ -j ocl-from-wl-dispatch"] },
    ]);
    expect(t?.chains.some((c) => c.name === "ocl-OUTPUT")).toBe(false);
    expect(t?.hooks.map((h) => h.builtin)).toEqual(["INPUT", "FORWARD"]);
  });

  it("plans converge both ways: policy added in one payload, removed (chains, hooks) in one", () => {
    const empty = parseIptablesSave(
      "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
    ).get("filter");
    const withPolicy = dp(input([allowFromA])).families[0]?.tables[0];
    const without = dp().families[0]?.tables[0];
    if (!empty || !withPolicy || !without) throw new Error("no tables");
    const p1 = planTable(withPolicy, empty);
    const t1 = restoreModel(empty, p1.payload ?? "");
    expect(planTable(withPolicy, t1).payload).toBeNull();
    const p2 = planTable(without, t1);
    const t2 = restoreModel(t1, p2.payload ?? "");
    expect(planTable(without, t2).payload).toBeNull();
    // Policy gone: its endpoint and policy chains go, the dispatch stays.
    expect([...t2.chains.keys()].filter((c) => c.startsWith("ocl-")).sort()).toEqual([
      "ocl-FORWARD",
      "ocl-INPUT",
      "ocl-from-wl-dispatch",
      "ocl-to-wl-dispatch",
    ]);
    expect(t2.rules.filter((r) => r.chain === "OUTPUT")).toEqual([]);
  });

  it("plans converge when one of two policed endpoints loses its policy", () => {
    const empty = parseIptablesSave(
      "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
    ).get("filter");
    const both = renderDataplane({
      workloads: [],
      pools: [],
      policy: input([allowFromA, np("a-too", { selector: "app == 'a'" })]),
    }).families[0]?.tables[0];
    const one = dp(input([allowFromA])).families[0]?.tables[0];
    if (!empty || !both || !one) throw new Error("no tables");
    const t1 = restoreModel(empty, planTable(both, empty).payload ?? "");
    const p2 = planTable(one, t1);
    expect(p2.changes).toContain("chain ocl-tw-oclaaaaaaaaaaa stale");
    expect(p2.changes).toContain("chain ocl-to-wl-dispatch differs");
    const t2 = restoreModel(t1, p2.payload ?? "");
    expect(planTable(one, t2).payload).toBeNull();
    expect(t2.chains.has("ocl-tw-oclaaaaaaaaaaa")).toBe(false);
    expect(t2.chains.has("ocl-tw-oclbbbbbbbbbbb")).toBe(true);
  });
});
