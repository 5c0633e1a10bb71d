// DSCP marking rendered (src/felix/dscp.ts) and read from WorkloadEndpoints (agent_state.ts):
// Felix's layout per family, one rule per address; the code point from a name or digits.
// The traffic proof is dscp.netns.test.ts.
import { describe, expect, it } from "vitest";
import type { WorkloadEndpoint } from "../../src/api/node.js";
import { renderDataplane } from "../../src/felix/dataplane.js";
import { renderEgressDscp } from "../../src/felix/dscp.js";
import { workloadsOf } from "../../src/node/agent_state.js";

describe("egress DSCP marking", () => {
  it("renders the set and chains of one family only, sorted by source", () => {
    const eps = [
      { addresses: ["10.0.0.9", "fd00::9"], dscp: 8 },
      { addresses: ["10.0.0.2/32"], dscp: 46 },
    ];
    const v4 = renderEgressDscp(eps, 4);
    expect(v4?.ipset).toEqual({
      name: "ocl-dscp-src-net",
      type: "hash:net",
      family: "inet",
      members: ["10.0.0.2/32", "10.0.0.9/32"],
    });
    expect(v4?.chains[1]?.rules).toEqual([
      "-s 10.0.0.2/32 -j DSCP --set-dscp 0x2e",
      "-s 10.0.0.9/32 -j DSCP --set-dscp 0x08",
    ]);
    const v6 = renderEgressDscp(eps, 6);
    expect(v6?.chains[0]?.rules).toEqual([
      "-m set --match-set ocl6-dscp-src-net src -m set ! --match-set ocl6-all-ipam-pools dst -m addrtype ! --dst-type LOCAL -j ocl-egress-dscp",
    ]);
    expect(v6?.chains[1]?.rules).toEqual(["-s fd00::9/128 -j DSCP --set-dscp 0x08"]);
    expect(renderEgressDscp([], 4)).toBeUndefined();
  });

  it("joins the host's mangle table (preDNAT chains kept) and its hook", () => {
    const s = renderDataplane({
      workloads: [{ id: "default/a", hostIface: "ocla", ipv4: ["10.0.0.2"], ipv6: [], dscp: 10 }],
      pools: [{ cidr: "10.0.0.0/16", natOutgoing: false }],
      host: { hostEndpoints: [] },
    });
    const mangle = s.families[0]?.tables.filter((t) => t.table === "mangle");
    expect(mangle).toHaveLength(1);
    expect(mangle?.[0]?.hooks).toEqual([{ builtin: "POSTROUTING", rule: "-j ocl-POSTROUTING" }]);
    expect(s.families[0]?.ipsets.map((i) => i.name)).toContain("ocl-dscp-src-net");
  });

  it("takes the endpoint's code point from a name or digits; the other QoS fields stay apart", () => {
    const wep = (qosControls: Record<string, unknown>) =>
      ({
        metadata: { name: "n-k8s-a-eth0", namespace: "default" },
        spec: { node: "n", interfaceName: "ocla", ipNetworks: ["10.0.0.2/32"], qosControls },
      }) as unknown as WorkloadEndpoint;
    expect(workloadsOf([wep({ dscp: "af11" })], "n")[0]).toMatchObject({ dscp: 10 });
    expect(workloadsOf([wep({ dscp: "46" })], "n")[0]?.dscp).toBe(46);
    const both = workloadsOf([wep({ dscp: 8, egressBandwidth: 1000 })], "n")[0];
    expect(both?.qos).toEqual({ egressBandwidth: 1000 });
    expect(workloadsOf([wep({ dscp: "CS1" })], "n")[0]?.qos).toBeUndefined();
  });
});
