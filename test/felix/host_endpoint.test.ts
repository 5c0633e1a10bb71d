// Host endpoint policy rendering (pure), against Felix's layout: which interface a HostEndpoint
// polices, the failsafe chains (the raw table's reverse rules), each chain type's start and end
// (normal: failsafe, tiers, profiles, drop; forward: accept when no applyOnForward policy;
// preDNAT: ingress only, no drop; untracked: NOTRACK on Allow, no conntrack, no drop), the
// workload-to-host action, and FelixConfiguration's precedence and fields.
import { describe, expect, it } from "vitest";
import { renderDataplane } from "../../src/felix/dataplane.js";
import { effectiveFelixSpec, felixSettings } from "../../src/felix/felix_config.js";
import {
  DEFAULT_FAILSAFE_INBOUND,
  DEFAULT_FAILSAFE_OUTBOUND,
  failsafeRules,
  type HostPolicyInput,
  renderHostPolicy,
  resolveHostEndpoints,
} from "../../src/felix/host_endpoint.js";
import { fromGlobalNetworkPolicy, type Policy } from "../../src/felix/policy.js";

const gnp = (name: string, spec: Record<string, unknown>): Policy =>
  fromGlobalNetworkPolicy({ metadata: { name }, spec: spec as never });
const node = { name: "n1-eth0", interfaceName: "eth0", labels: { role: "node" } };
const render = (host: HostPolicyInput, policies: Policy[]) =>
  renderHostPolicy(host, { endpoints: [], policies }, 4);
/** The dataplane for pod d/a (10.0.0.1 on ocla) and host endpoint `node`, under policy p. */
const renderWithPod = (p: Policy) =>
  renderDataplane({
    workloads: [],
    pools: [],
    policy: {
      endpoints: [
        { id: "d/a", namespace: "d", labels: {}, addresses: ["10.0.0.1"], iface: "ocla" },
      ],
      policies: [p],
    },
    host: { hostEndpoints: [node] },
  });
const chain = (rules: { name: string; rules: string[] }[] | undefined, name: string) =>
  rules?.find((c) => c.name === name)?.rules;

describe("resolveHostEndpoints()", () => {
  it("takes interfaceName, else the interface holding an expectedIP; '*' is 'any'", () => {
    const r = resolveHostEndpoints({
      hostEndpoints: [
        { name: "b", expectedIPs: ["192.0.2.7"], labels: {} },
        { name: "a", interfaceName: "eth0", labels: {} },
        { name: "c", interfaceName: "*", labels: {} },
        { name: "d", expectedIPs: ["203.0.113.1"], labels: {} },
      ],
      interfaces: [{ name: "eth1", addresses: ["192.0.2.7"] }],
    });
    expect([...r.ifaces].map(([i, h]) => [i, h.name])).toEqual([
      ["eth0", "a"],
      ["eth1", "b"],
      ["any", "c"],
    ]);
    expect(r.warnings).toEqual([
      'HostEndpoint "d": no interface of this host holds 203.0.113.1; not applied until one does',
    ]);
  });

  it("two endpoints on one interface: the first by name wins, the other is named", () => {
    const r = resolveHostEndpoints({
      hostEndpoints: [
        { name: "z", interfaceName: "eth0", labels: {} },
        { name: "y", interfaceName: "eth0", labels: {} },
      ],
    });
    expect(r.ifaces.get("eth0")?.name).toBe("y");
    expect(r.warnings[0]).toContain('HostEndpoint "z": interface eth0');
  });
});

describe("failsafeRules()", () => {
  it("are Felix's defaults: inbound by destination port, outbound by destination port", () => {
    expect(DEFAULT_FAILSAFE_INBOUND.map((p) => `${p.protocol}:${p.port}`)).toEqual([
      "tcp:22",
      "udp:68",
      "tcp:179",
      "tcp:2379",
      "tcp:2380",
      "tcp:5473",
      "tcp:6443",
      "tcp:6666",
      "tcp:6667",
    ]);
    expect(DEFAULT_FAILSAFE_OUTBOUND.map((p) => `${p.protocol}:${p.port}`)).toEqual([
      "udp:53",
      "udp:67",
      "tcp:179",
      "tcp:2379",
      "tcp:2380",
      "tcp:5473",
      "tcp:6443",
      "tcp:6666",
      "tcp:6667",
    ]);
    const inb = [{ protocol: "tcp", port: 22 }];
    const outb = [{ protocol: "udp", port: 53 }];
    expect(failsafeRules("filter", "in", inb, outb, 4)).toEqual([
      "-p tcp -m tcp --dport 22 -j ACCEPT",
    ]);
    expect(failsafeRules("filter", "out", inb, outb, 4)).toEqual([
      "-p udp -m udp --dport 53 -j ACCEPT",
    ]);
  });

  it("in the raw table also let the other direction's replies through (by source port)", () => {
    const inb = [{ protocol: "tcp", port: 22 }];
    const outb = [{ protocol: "udp", port: 53 }];
    expect(failsafeRules("raw", "in", inb, outb, 4)).toEqual([
      "-p tcp -m tcp --dport 22 -j ACCEPT",
      "-p udp -m udp --sport 53 -j ACCEPT",
    ]);
    expect(failsafeRules("raw", "out", inb, outb, 4)).toEqual([
      "-p udp -m udp --dport 53 -j ACCEPT",
      "-p tcp -m tcp --sport 22 -j ACCEPT",
    ]);
  });

  it("a net narrows the rule to its family: source inbound, destination outbound", () => {
    const inb = [{ protocol: "tcp", port: 22, net: "10.0.0.0/8" }];
    const outb = [{ protocol: "tcp", port: 179, net: "fd00::/64" }];
    expect(failsafeRules("filter", "in", inb, outb, 4)).toEqual([
      "-s 10.0.0.0/8 -p tcp -m tcp --dport 22 -j ACCEPT",
    ]);
    expect(failsafeRules("filter", "out", inb, outb, 4)).toEqual([]);
    expect(failsafeRules("filter", "out", inb, outb, 6)).toEqual([
      "-p ipv6-icmp -m icmp6 --icmpv6-type 133 -j ACCEPT",
      "-p ipv6-icmp -m icmp6 --icmpv6-type 134 -j ACCEPT",
      "-p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT",
      "-p ipv6-icmp -m icmp6 --icmpv6-type 136 -j ACCEPT",
      "-d fd00::/64 -p tcp -m tcp --dport 179 -j ACCEPT",
    ]);
  });

  it("host endpoints bring IPv6 tables even without an IPv6 pool", () => {
    const d = renderDataplane({ workloads: [], pools: [], host: { hostEndpoints: [node] } });
    expect(d.families.map((f) => f.family)).toEqual([4, 6]);
    const f6 = d.families[1]?.tables.find((t) => t.table === "filter");
    expect(chain(f6?.chains, "ocl-fh-eth0")).toContain("-j ocl-failsafe-in");
    const none = renderDataplane({ workloads: [], pools: [], host: { hostEndpoints: [] } });
    expect(none.families.map((f) => f.family)).toEqual([4]);
  });
});

describe("renderHostPolicy()", () => {
  it("a host endpoint with no policy: failsafe, then drop (Calico's default deny)", () => {
    const s = render({ hostEndpoints: [node] }, []);
    expect(chain(s.filter?.chains, "ocl-fh-eth0")).toEqual([
      "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
      "-m conntrack --ctstate INVALID -j DROP",
      "-j ocl-failsafe-in",
      "-j MARK --set-xmark 0x0/0x30000",
      "-j DROP",
    ]);
    // Forwarded traffic is not policed without applyOnForward policy.
    expect(chain(s.filter?.chains, "ocl-fhfw-eth0")?.slice(-2)).toEqual([
      "-j MARK --set-xmark 0x10000/0x10000",
      "-j RETURN",
    ]);
    expect(chain(s.filter?.chains, "ocl-from-host-endpoint")).toEqual(["-i eth0 -g ocl-fh-eth0"]);
    // No preDNAT or doNotTrack policy: mangle and raw hold nothing of ours.
    expect(s.tables).toEqual([
      { table: "mangle", chains: [], hooks: [] },
      { table: "raw", chains: [], hooks: [] },
    ]);
  });

  it("puts each kind of policy in its chains: normal, applyOnForward, preDNAT, doNotTrack", () => {
    const sel = "role == 'node'";
    const s = render({ hostEndpoints: [node] }, [
      gnp("normal", { selector: sel, ingress: [{ action: "Allow" }] }),
      gnp("fwd", { selector: sel, applyOnForward: true, ingress: [{ action: "Allow" }] }),
      gnp("pre", {
        selector: sel,
        preDNAT: true,
        applyOnForward: true,
        ingress: [{ action: "Deny" }],
      }),
      gnp("raw", {
        selector: sel,
        doNotTrack: true,
        applyOnForward: true,
        types: ["Ingress", "Egress"],
        ingress: [{ action: "Allow" }],
        egress: [{ action: "Allow" }],
      }),
      gnp("other", { selector: "role == 'db'", ingress: [{ action: "Allow" }] }),
    ]);
    const fh = chain(s.filter?.chains, "ocl-fh-eth0")?.join("\n") ?? "";
    const fhfw = chain(s.filter?.chains, "ocl-fhfw-eth0")?.join("\n") ?? "";
    expect(fh.match(/-j ocl-pi-/g)?.length).toBe(2); // normal and fwd
    expect(fhfw.match(/-j ocl-pi-/g)?.length).toBe(1); // fwd
    expect(fhfw).toContain("-m mark --mark 0x0/0x20000 -j DROP");
    const [mangle, raw] = s.tables;
    expect(mangle?.hooks).toEqual([{ builtin: "PREROUTING", rule: "-j ocl-PREROUTING" }]);
    const pre = chain(mangle?.chains, "ocl-fh-eth0") ?? [];
    expect(pre).toContain("-j ocl-failsafe-in");
    // Its Deny policy drops; no end-of-tier drop: what no policy decides goes on to filter.
    expect(pre).not.toContain("-m mark --mark 0x0/0x20000 -j DROP");
    expect(pre.at(-1)).toBe("-m mark --mark 0x10000/0x10000 -j RETURN");
    expect(chain(mangle?.chains, "ocl-th-eth0")).toBeUndefined(); // ingress only
    expect(raw?.hooks.map((h) => h.builtin)).toEqual(["PREROUTING", "OUTPUT"]);
    const rawIn = chain(raw?.chains, "ocl-fh-eth0") ?? [];
    expect(rawIn[0]).toBe("-j ocl-failsafe-in"); // no conntrack before conntrack exists
    expect(rawIn).toContain("-m mark --mark 0x10000/0x10000 -j CT --notrack");
    expect(rawIn.some((r) => r.endsWith("-j DROP"))).toBe(false);
    expect(chain(raw?.chains, "ocl-th-eth0")).toContain(
      "-m mark --mark 0x10000/0x10000 -j CT --notrack",
    );
  });

  it("namespaced policies and policies with a namespaceSelector never select host endpoints", () => {
    const s = render({ hostEndpoints: [node] }, [
      { ...gnp("ns", { selector: "all()", ingress: [{ action: "Allow" }] }), namespace: "x" },
      gnp("nssel", {
        selector: "all()",
        namespaceSelector: "all()",
        ingress: [{ action: "Allow" }],
      }),
    ]);
    expect(chain(s.filter?.chains, "ocl-fh-eth0")?.join("\n")).not.toContain("ocl-pi-");
  });

  it("profiles follow the policies in the normal chains", () => {
    const s = renderHostPolicy(
      { hostEndpoints: [{ ...node, profiles: ["p"] }] },
      {
        endpoints: [],
        policies: [],
        profiles: [{ name: "p", ingress: [{ action: "Allow" }], egress: [] }],
      },
      4,
    );
    const fh = chain(s.filter?.chains, "ocl-fh-eth0") ?? [];
    expect(fh.slice(-3)).toEqual([
      expect.stringMatching(/^-j ocl-pri-/),
      "-m mark --mark 0x10000/0x10000 -j RETURN",
      "-j DROP",
    ]);
  });

  it("'*' dispatches every interface but loopback and the workloads", () => {
    const s = render({ hostEndpoints: [{ ...node, interfaceName: "*" }] }, []);
    expect(chain(s.filter?.chains, "ocl-to-host-endpoint")).toEqual([
      "-o lo -j RETURN",
      "-o ocl+ -j RETURN",
      "-g ocl-th-any",
    ]);
  });

  it("the workload-to-host action alone adds only ocl-wl-to-host, after the dispatch; Drop keeps replies; IPv6 ND and MLD before both", () => {
    const d = renderDataplane({
      workloads: [],
      pools: [{ cidr: "fd00:10::/64", natOutgoing: false }],
      host: { hostEndpoints: [], defaultEndpointToHostAction: "Drop" },
    });
    const filter = d.families[0]?.tables.find((t) => t.table === "filter");
    expect(chain(filter?.chains, "ocl-INPUT")).toEqual(["-i ocl+ -g ocl-wl-to-host"]);
    expect(chain(filter?.chains, "ocl-wl-to-host")).toEqual([
      "-j ocl-from-wl-dispatch",
      "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
      "-j DROP",
    ]);
    // Felix's cali-wl-to-host: ND and MLD accepted first, whatever the action and the dispatch.
    const filter6 = d.families[1]?.tables.find((t) => t.table === "filter");
    expect(chain(filter6?.chains, "ocl-wl-to-host")).toEqual([
      ...[130, 131, 132, 133, 135, 136].map(
        (t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j ACCEPT`,
      ),
      "-j ocl-from-wl-dispatch",
      "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
      "-j DROP",
    ]);
    // Without the action: the workload dispatch alone (Felix's unknown-interface drop).
    const none = renderDataplane({ workloads: [], pools: [], host: { hostEndpoints: [] } });
    expect(
      none.families[0]?.tables.find((t) => t.table === "filter")?.chains.map((c) => c.name),
    ).toEqual(["ocl-FORWARD", "ocl-INPUT", "ocl-from-wl-dispatch", "ocl-to-wl-dispatch"]);
  });

  it("one policy for pods and host endpoints renders one chain in the filter table", () => {
    const p = gnp("both", { selector: "all()", ingress: [{ action: "Allow" }] });
    const d = renderWithPod(p);
    const names = d.families[0]?.tables
      .find((t) => t.table === "filter")
      ?.chains.map((c) => c.name);
    expect(names?.filter((n) => n.startsWith("ocl-pi-")).length).toBe(1);
    expect(new Set(names).size).toBe(names?.length);
  });

  it("OUTPUT as Felix's filterOutputChain: traffic to a pod returns before host endpoint egress and is never sent to the pod's ingress", () => {
    const p = gnp("both", { selector: "all()", ingress: [], egress: [] });
    const d = renderWithPod(p);
    const filter = d.families[0]?.tables.find((t) => t.table === "filter");
    expect(chain(filter?.chains, "ocl-OUTPUT")).toEqual([
      "-m mark --mark 0x10000/0x10000 -j ACCEPT",
      "-o ocl+ -j RETURN",
      "-j MARK --set-xmark 0x0/0x30000",
      "-j ocl-to-host-endpoint",
      "-m mark --mark 0x10000/0x10000 -j ACCEPT",
    ]);
    // The pod's ingress is reached from FORWARD only.
    expect(chain(filter?.chains, "ocl-FORWARD")).toContain("-o ocl+ -j ocl-to-wl-dispatch");
  });
});

describe("FelixConfiguration", () => {
  it("node.<name> wins over default field by field", () => {
    const spec = effectiveFelixSpec(
      [
        { metadata: { name: "default" }, spec: { logSeverityScreen: "Debug", a: 1 } },
        { metadata: { name: "node.n1" }, spec: { logSeverityScreen: "Warning" } },
        { metadata: { name: "node.n2" }, spec: { a: 2 } },
      ],
      "n1",
    );
    expect(spec).toEqual({ logSeverityScreen: "Warning", a: 1 });
  });

  it("reads the fields the agent acts on, any case; leaves out ports it cannot use", () => {
    const s = felixSettings({
      failsafeInboundHostPorts: [
        { protocol: "TCP", port: 22 },
        { protocol: "ICMP", port: 1 },
      ],
      failsafeOutboundHostPorts: [],
      defaultEndpointToHostAction: "drop",
      logSeverityScreen: "warning",
    });
    expect(s.failsafeInbound).toEqual([{ protocol: "tcp", port: 22 }]);
    expect(s.failsafeOutbound).toEqual([]);
    expect(s.defaultEndpointToHostAction).toBe("Drop");
    expect(s.logLevel).toBe("warn");
    expect(s.warnings).toEqual([
      "FelixConfiguration failsafeInboundHostPorts[1]: not a TCP/UDP/SCTP port; left out",
    ]);
    expect(felixSettings({})).toEqual({ warnings: [] });
  });

  it("reads iptablesRefreshInterval and routeRefreshInterval as Go durations (0: off)", () => {
    const s = felixSettings({ iptablesRefreshInterval: "1m30s", routeRefreshInterval: "0" });
    expect(s.iptablesRefreshMs).toBe(90_000);
    expect(s.routeRefreshMs).toBe(0);
    const bad = felixSettings({ iptablesRefreshInterval: "soon" });
    expect(bad.iptablesRefreshMs).toBeUndefined();
    expect(bad.warnings).toEqual([
      "FelixConfiguration iptablesRefreshInterval: not a duration; 90s is used",
    ]);
  });
});
