// FelixConfiguration's allow and deny verdicts read (felixSettings) and rendered (policy chains,
// endpoint chains, the filter table's workload accepts, host endpoint and preDNAT chains), as
// Felix's rule renderer places iptablesFilterAllowAction, iptablesMangleAllowAction and
// iptablesFilterDenyAction. The traffic proof is actions.netns.test.ts.
import { describe, expect, it } from "vitest";
import { felixSettings } from "../../src/felix/felix_config.js";
import { renderHostPolicy } from "../../src/felix/host_endpoint.js";
import { renderFilterTable } from "../../src/felix/iptables.js";
import { fromGlobalNetworkPolicy, type PolicyInput, renderPolicy } from "../../src/felix/policy.js";

const input = (actions?: PolicyInput["actions"]): PolicyInput => ({
  endpoints: [
    {
      id: "default/b",
      namespace: "default",
      labels: { app: "b" },
      addresses: ["10.0.0.3", "fd00::3"],
      iface: "oclb",
    },
  ],
  policies: [
    fromGlobalNetworkPolicy({
      metadata: { name: "p" },
      spec: { selector: "app == 'b'", ingress: [{ action: "Deny", protocol: "TCP" }] } as never,
    }),
  ],
  ...(actions ? { actions } : {}),
});
const rulesOf = (chains: { name: string; rules: string[] }[], prefix: string) =>
  chains.filter((c) => c.name.startsWith(prefix)).flatMap((c) => c.rules);

describe("FelixConfiguration allow and deny actions", () => {
  it("reads the three fields in any case (Calico's ^(?i)...$ patterns); none set: no actions", () => {
    expect(felixSettings({}).actions).toBeUndefined();
    expect(felixSettings({ iptablesFilterAllowAction: "Accept" }).actions).toBeUndefined();
    expect(felixSettings({ iptablesFilterAllowAction: "return" }).actions).toEqual({
      filterAllow: "Return",
      mangleAllow: "Accept",
      filterDeny: "Drop",
    });
    expect(
      felixSettings({ iptablesMangleAllowAction: "RETURN", iptablesFilterDenyAction: "Reject" })
        .actions,
    ).toEqual({ filterAllow: "Accept", mangleAllow: "Return", filterDeny: "Reject" });
  });

  it("defaults: established accepted, Deny and the tier's end DROP", () => {
    const s = renderPolicy(input(), 4);
    expect(rulesOf(s.chains, "ocl-tw-")).toContain(
      "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    );
    expect(rulesOf(s.chains, "ocl-pi-")).toEqual(["-p tcp -j DROP"]);
    expect(rulesOf(s.chains, "ocl-tw-")).toContain("-m mark --mark 0x0/0x20000 -j DROP");
  });

  it("Return marks established traffic accepted and returns; Reject answers in each family", () => {
    const actions = { filterAllow: "Return", mangleAllow: "Accept", filterDeny: "Reject" } as const;
    const v4 = renderPolicy(input(actions), 4);
    const tw = rulesOf(v4.chains, "ocl-tw-");
    expect(tw.slice(0, 3)).toEqual([
      "-m conntrack --ctstate RELATED,ESTABLISHED -j MARK --set-xmark 0x10000/0x10000",
      "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
      "-m conntrack --ctstate INVALID -j REJECT --reject-with icmp-port-unreachable",
    ]);
    expect(rulesOf(v4.chains, "ocl-pi-")).toEqual([
      "-p tcp -j REJECT --reject-with icmp-port-unreachable",
    ]);
    // Rendered right after v4 (the selection memo must not hand v4's targets to v6).
    const v6 = renderPolicy(input(actions), 6);
    expect(rulesOf(v6.chains, "ocl-pi-")).toEqual([
      "-p tcp -j REJECT --reject-with icmp6-port-unreachable",
    ]);
    expect(rulesOf(v6.chains, "ocl-tw-")).toContain(
      "-m mark --mark 0x0/0x20000 -j REJECT --reject-with icmp6-port-unreachable",
    );
  });

  it("the filter table's workload accepts become RETURN with Return", () => {
    expect(renderFilterTable(undefined, undefined, "Return").chains[0]?.rules).toEqual([
      "-i ocl+ -j RETURN",
      "-o ocl+ -j RETURN",
    ]);
    expect(renderFilterTable().chains[0]?.rules).toEqual([
      "-i ocl+ -j ACCEPT",
      "-o ocl+ -j ACCEPT",
    ]);
  });

  it("host endpoints: filter accepts follow the filter action, preDNAT's the mangle action; raw keeps DROP", () => {
    const pre = {
      ...fromGlobalNetworkPolicy({
        metadata: { name: "pre" },
        spec: { selector: "role == 'node'", ingress: [{ action: "Deny" }] } as never,
      }),
      preDNAT: true,
      hostOnly: true,
    };
    const dnt = {
      ...fromGlobalNetworkPolicy({
        metadata: { name: "dnt" },
        spec: { selector: "role == 'node'", ingress: [{ action: "Deny" }] } as never,
      }),
      doNotTrack: true,
      hostOnly: true,
    };
    const host = {
      hostEndpoints: [{ name: "h", interfaceName: "eth0", labels: { role: "node" } }],
    };
    const s = renderHostPolicy(
      host,
      {
        endpoints: [],
        policies: [pre, dnt],
        actions: { filterAllow: "Return", mangleAllow: "Return", filterDeny: "Reject" },
      },
      4,
    );
    expect(s.filter?.inputTail).toContain("-m mark --mark 0x10000/0x10000 -j RETURN");
    expect(s.filter?.forwardTail).toEqual(["-m mark --mark 0x10000/0x10000 -j RETURN"]);
    const fh = s.filter?.chains.find((c) => c.name === "ocl-fh-eth0")?.rules ?? [];
    expect(fh.at(-1)).toBe("-j REJECT --reject-with icmp-port-unreachable");
    const mangle = s.tables.find((t) => t.table === "mangle");
    const pr = mangle?.chains.find((c) => c.name === "ocl-PREROUTING")?.rules;
    expect(pr).toEqual([
      "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
      "-m mark --mark 0x10000/0x10000 -j RETURN",
      "-j ocl-from-host-endpoint",
      "-m mark --mark 0x10000/0x10000 -j RETURN",
    ]);
    // No REJECT outside the filter table (the target exists there only).
    for (const t of s.tables)
      for (const c of t.chains) for (const r of c.rules) expect(r).not.toContain("REJECT");
  });
});
