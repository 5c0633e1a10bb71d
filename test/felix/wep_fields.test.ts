// The pure side of WorkloadEndpoint ipNATs, allowSpoofedSourcePrefixes and qosControls: the nat
// chains in Felix's layout and collation, the raw RPF check merged with the host endpoints' raw
// table, the floating IP routes and rp_filter, the tc buckets and their plan, and the gating by
// FelixConfiguration (floatingIPs, workloadSourceSpoofing) with its warnings.
import { describe, expect, it } from "vitest";
import type { WorkloadEndpoint } from "../../src/api/node.js";
import { renderDataplane } from "../../src/felix/dataplane.js";
import {
  renderFilterTable,
  renderNatTable,
  renderRpfTable,
  type TableSpec,
  withWorkloadLimits,
} from "../../src/felix/iptables.js";
import {
  DEFAULT_BURST_BITS,
  ifbName,
  type KernelQdisc,
  planQos,
  renderQos,
} from "../../src/felix/qos.js";
import { renderWorkloads } from "../../src/felix/workload.js";
import { storedOnlyWarnings, workloadsOf } from "../../src/node/agent_state.js";
import type { BgpSnapshot } from "../../src/node/bgp_state.js";

const nat = (floatingIps: { internal: string; external: string }[]) =>
  renderNatTable({ family: 4, pools: [], clusterCidrs: [], nodeAddresses: [], floatingIps });
const rules = (t: TableSpec, chain: string) => t.chains.find((c) => c.name === chain)?.rules;

describe("floating IPs (Felix's fip-dnat / fip-snat)", () => {
  it("DNAT from PREROUTING and OUTPUT, SNAT of a pod to itself before NAT-outgoing", () => {
    const t = nat([{ internal: "10.65.0.2", external: "203.0.113.5" }]);
    expect(t.hooks).toEqual([
      { builtin: "PREROUTING", rule: "-j ocl-PREROUTING" },
      { builtin: "OUTPUT", rule: "-j ocl-OUTPUT" },
      { builtin: "POSTROUTING", rule: "-j ocl-POSTROUTING" },
    ]);
    expect(rules(t, "ocl-PREROUTING")).toEqual(["-j ocl-fip-dnat"]);
    expect(rules(t, "ocl-OUTPUT")).toEqual(["-j ocl-fip-dnat"]);
    expect(rules(t, "ocl-POSTROUTING")).toEqual(["-j ocl-fip-snat", "-j ocl-nat-outgoing"]);
    expect(rules(t, "ocl-fip-dnat")).toEqual([
      "-d 203.0.113.5/32 -j DNAT --to-destination 10.65.0.2",
    ]);
    expect(rules(t, "ocl-fip-snat")).toEqual([
      "-s 10.65.0.2/32 -d 10.65.0.2/32 -j SNAT --to-source 203.0.113.5",
    ]);
  });

  it("an external IP claimed twice goes to the lowest internal one; SNAT to the lowest external", () => {
    const t = nat([
      { internal: "10.65.0.9", external: "203.0.113.5" },
      { internal: "10.65.0.3", external: "203.0.113.5" },
      { internal: "10.65.0.3", external: "203.0.113.4" },
    ]);
    expect(rules(t, "ocl-fip-dnat")).toEqual([
      "-d 203.0.113.4/32 -j DNAT --to-destination 10.65.0.3",
      "-d 203.0.113.5/32 -j DNAT --to-destination 10.65.0.3",
    ]);
    expect(rules(t, "ocl-fip-snat")).toEqual([
      "-s 10.65.0.3/32 -d 10.65.0.3/32 -j SNAT --to-source 203.0.113.4",
    ]);
  });

  it("without floating IPs the nat table is as before (POSTROUTING only)", () => {
    const t = nat([]);
    expect(t.hooks).toEqual([{ builtin: "POSTROUTING", rule: "-j ocl-POSTROUTING" }]);
    expect(t.chains.map((c) => c.name)).toEqual(["ocl-POSTROUTING", "ocl-nat-outgoing"]);
  });

  it("routes the external address to the pod's interface; a pod's own address wins a clash", () => {
    const s = renderWorkloads([
      {
        id: "default/a",
        hostIface: "ocla",
        ipv4: ["10.65.0.2"],
        ipv6: [],
        floatingIps: [
          { internal: "10.65.0.2", external: "203.0.113.5" },
          { internal: "10.65.0.2", external: "10.65.0.3" },
        ],
      },
      { id: "default/b", hostIface: "oclb", ipv4: ["10.65.0.3"], ipv6: [] },
    ]);
    const dev = (dst: string) =>
      s.routes.filter((r) => r.dst === dst).map((r) => r.nexthops[0]?.dev);
    expect(dev("203.0.113.5/32")).toEqual(["ocla"]);
    expect(dev("10.65.0.3/32")).toEqual(["oclb"]);
  });

  it("renderDataplane puts each family's NATs in its own table", () => {
    const s = renderDataplane({
      workloads: [
        {
          id: "default/a",
          hostIface: "ocla",
          ipv4: ["10.65.0.2"],
          ipv6: ["fd00::2"],
          floatingIps: [
            { internal: "10.65.0.2", external: "203.0.113.5" },
            { internal: "fd00::2", external: "2001:db8::5" },
          ],
        },
      ],
      pools: [
        { cidr: "10.65.0.0/16", natOutgoing: false },
        { cidr: "fd00::/64", natOutgoing: false },
      ],
    });
    const dnat = (f: 4 | 6) =>
      rules(
        s.families.find((x) => x.family === f)?.tables.find((t) => t.table === "nat") as TableSpec,
        "ocl-fip-dnat",
      );
    expect(dnat(4)).toEqual(["-d 203.0.113.5/32 -j DNAT --to-destination 10.65.0.2"]);
    expect(dnat(6)).toEqual(["-d 2001:db8::5/128 -j DNAT --to-destination fd00::2"]);
  });
});

describe("allowSpoofedSourcePrefixes (Felix's rpf-skip)", () => {
  it("turns rp_filter off on that interface only", () => {
    const s = renderWorkloads([
      { id: "default/a", hostIface: "ocla", ipv4: ["10.65.0.2"], ipv6: [] },
      {
        id: "default/b",
        hostIface: "oclb",
        ipv4: ["10.65.0.3"],
        ipv6: [],
        spoofPrefixes: ["198.51.100.0/24"],
      },
    ]);
    const rp = (i: string) =>
      s.ifaces
        .find((x) => x.name === i)
        ?.sysctls.find((c) => c.key === `net.ipv4.conf.${i}.rp_filter`)?.value;
    expect(rp("ocla")).toBe("1");
    expect(rp("oclb")).toBe("0");
  });

  it("RETURNs the allowed prefixes, then drops what fails the strict RPF check; before host rules", () => {
    const host: TableSpec = {
      table: "raw",
      chains: [{ name: "ocl-PREROUTING", rules: ["-j MARK --set-xmark 0x0/0x30000"] }],
      hooks: [{ builtin: "PREROUTING", rule: "-j ocl-PREROUTING" }],
    };
    const t = renderRpfTable(
      [{ iface: "oclb", prefixes: ["198.51.100.7", "198.51.100.0/24"] }],
      4,
      host,
    );
    expect(rules(t, "ocl-rpf-check")).toEqual([
      "-s 198.51.100.0/24 -i oclb -j RETURN",
      "-s 198.51.100.7/32 -i oclb -j RETURN",
      "-i oclb -m rpfilter --invert -j DROP",
    ]);
    expect(t.hooks.map((h) => h.rule)).toEqual(["-j ocl-rpf-check", "-j ocl-PREROUTING"]);
    expect(renderRpfTable([], 4, host)).toBe(host);
    expect(renderRpfTable([], 4)).toEqual({ table: "raw", chains: [], hooks: [] });
  });

  it("an interface whose prefixes are all IPv6 still gets the IPv4 check (rp_filter is off)", () => {
    const t = renderRpfTable([{ iface: "oclb", prefixes: [] }], 4);
    expect(rules(t, "ocl-rpf-check")).toEqual(["-i oclb -m rpfilter --invert -j DROP"]);
  });
});

describe("qosControls bandwidth (Felix's tbf and ifb)", () => {
  it("renders bytes from bits, Calico's default burst capped at 100 s, a peak bucket of a frame", () => {
    const q = renderQos(
      "oclc",
      { ingressBandwidth: 10_000_000, ingressBurst: 800_000, egressBandwidth: 8_000 },
      1450,
    );
    expect(q?.ingress).toEqual({ rate: 1_250_000, burst: 100_000, peakrate: 0, minburst: 0 });
    // 4Gi bits would be 512 MiB: capped at 100 s of 1000 bytes/s.
    expect(DEFAULT_BURST_BITS / 8).toBeGreaterThan(100_000);
    expect(q?.egress?.burst).toBe(100_000);
    expect(q?.ifb).toBe(ifbName("oclc"));
    expect(q?.ifb.length).toBeLessThanOrEqual(15);
    const p = renderQos(
      "oclc",
      { egressBandwidth: 10_000_000, egressBurst: 80_000, egressPeakrate: 20_000_000 },
      1450,
    );
    expect(p?.egress).toEqual({
      rate: 1_250_000,
      burst: 10_000,
      peakrate: 2_500_000,
      minburst: 1464,
    });
    expect(renderQos("oclc", { ingressBandwidth: 0 })).toBeUndefined();
  });

  it("plans the buckets, the ifb and the redirect; nothing when the kernel matches; removal", () => {
    const want = [
      renderQos("oclc", {
        ingressBandwidth: 10_000_000,
        ingressBurst: 800_000,
        egressBandwidth: 5_000_000,
        egressBurst: 800_000,
      }),
    ].filter((q) => q !== undefined);
    const ifb = ifbName("oclc");
    const present = new Set(["oclc"]);
    const fresh = planQos(want, present, [], new Set(), new Set(), () => 1500);
    expect(fresh.map((c) => `${c.cmd} ${c.args.join(" ")}`)).toEqual([
      "tc qdisc replace dev oclc root handle 1: tbf rate 10000000bit burst 100000b latency 25ms",
      `ip link add ${ifb} mtu 1500 type ifb`,
      `ip link set ${ifb} up`,
      `tc qdisc replace dev ${ifb} root handle 1: tbf rate 5000000bit burst 100000b latency 25ms`,
      "tc qdisc add dev oclc handle ffff: ingress",
      `tc filter replace dev oclc parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev ${ifb}`,
    ]);
    const kernel: KernelQdisc[] = [
      {
        kind: "tbf",
        handle: "1:",
        dev: "oclc",
        root: true,
        options: { rate: 1_250_000, burst: 100_000 },
      },
      {
        kind: "tbf",
        handle: "1:",
        dev: ifb,
        root: true,
        options: { rate: 625_000, burst: 99_999 },
      },
      { kind: "ingress", handle: "ffff:", dev: "oclc" },
    ];
    expect(planQos(want, present, kernel, new Set([ifb]), new Set(["oclc"]), () => 1500)).toEqual(
      [],
    );
    const gone = planQos([], present, kernel, new Set([ifb]), new Set(), () => 1500);
    expect(gone.map((c) => `${c.cmd} ${c.args.join(" ")}`)).toEqual([
      "tc qdisc del dev oclc root",
      "tc qdisc del dev oclc handle ffff: ingress",
      `ip link del ${ifb}`,
    ]);
  });
});

describe("qosControls packet rates and connection limits (Felix's endpoint-chain fragments)", () => {
  it("a chain per interface and direction, first in FORWARD and in OUTPUT/INPUT (added when absent)", () => {
    const t = withWorkloadLimits(renderFilterTable(), [
      { iface: "ocld", ingressMaxConnections: 2, egressPacketRate: 10, egressPacketBurst: 7 },
    ]);
    expect(rules(t, "ocl-qi-ocld")).toEqual([
      "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m connlimit --connlimit-above 2 --connlimit-mask 0 --connlimit-saddr -j REJECT --reject-with tcp-reset",
    ]);
    expect(rules(t, "ocl-qo-ocld")).toEqual([
      "-m limit --limit 10/sec --limit-burst 7 -j RETURN",
      "-j DROP",
    ]);
    expect(rules(t, "ocl-FORWARD")?.slice(0, 2)).toEqual([
      "-o ocld -j ocl-qi-ocld",
      "-i ocld -j ocl-qo-ocld",
    ]);
    expect(rules(t, "ocl-OUTPUT")).toEqual(["-o ocld -j ocl-qi-ocld"]);
    expect(rules(t, "ocl-INPUT")).toEqual(["-i ocld -j ocl-qo-ocld"]);
    expect(t.hooks.map((h) => h.builtin)).toEqual(["FORWARD", "INPUT", "OUTPUT"]);
  });

  it("the default burst (5) is left out as iptables-save prints it; limits capped; none: unchanged", () => {
    const t = withWorkloadLimits(renderFilterTable(), [
      { iface: "ocld", ingressPacketRate: 50_000, egressMaxConnections: 2 ** 40 },
    ]);
    expect(rules(t, "ocl-qi-ocld")).toEqual(["-m limit --limit 10000/sec -j RETURN", "-j DROP"]);
    expect(rules(t, "ocl-qo-ocld")?.[0]).toContain("--connlimit-above 4294967295 ");
    const plain = renderFilterTable();
    expect(withWorkloadLimits(plain, [{ iface: "ocld", ingressBandwidth: 1 } as never])).toBe(
      plain,
    );
  });
});

describe("gating by FelixConfiguration (floatingIPs, workloadSourceSpoofing)", () => {
  const wep = {
    apiVersion: "projectcalico.org/v3",
    kind: "WorkloadEndpoint",
    metadata: { name: "a", namespace: "default" },
    spec: {
      node: "n1",
      interfaceName: "ocla",
      ipNetworks: ["10.65.0.2/32"],
      ipNATs: [{ internalIP: "10.65.0.2", externalIP: "203.0.113.5" }],
      allowSpoofedSourcePrefixes: ["198.51.100.0/24"],
      qosControls: { ingressBandwidth: 10_000_000 },
    },
  } as WorkloadEndpoint;
  const snap = (spec: Record<string, unknown>) =>
    ({
      nodes: [],
      workloadEndpoints: [wep],
      pools: [],
      affinities: [],
      bgpConfigurations: [],
      bgpPeers: [],
      felixConfigurations: [{ metadata: { name: "default" }, spec }],
    }) as BgpSnapshot;

  it("by default (Disabled) neither NATs nor spoofing are programmed, and both are named", () => {
    const [w] = workloadsOf([wep], "n1");
    expect(w?.floatingIps).toBeUndefined();
    expect(w?.spoofPrefixes).toBeUndefined();
    expect(w?.qos).toEqual({ ingressBandwidth: 10_000_000 });
    expect(storedOnlyWarnings(snap({}), "n1")).toEqual([
      expect.stringMatching(/"default\/a": ipNATs not programmed.*floatingIPs/),
      expect.stringMatching(/"default\/a": allowSpoofedSourcePrefixes not allowed.*Any/),
    ]);
  });

  it("floatingIPs: Enabled and workloadSourceSpoofing: Any program them, without warnings", () => {
    const [w] = workloadsOf([wep], "n1", { floatingIps: true, sourceSpoofing: true });
    expect(w?.floatingIps).toEqual([{ internal: "10.65.0.2", external: "203.0.113.5" }]);
    expect(w?.spoofPrefixes).toEqual(["198.51.100.0/24"]);
    expect(
      storedOnlyWarnings(snap({ floatingIPs: "Enabled", workloadSourceSpoofing: "Any" }), "n1"),
    ).toEqual([]);
  });
});
