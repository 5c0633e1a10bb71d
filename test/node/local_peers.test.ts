// Local workload peering rendered (pure): which of the node's WorkloadEndpoints a BGPPeer's
// localWorkloadSelector makes BGP peers (labels with profiles', first BGPPeer by name, the
// BGPPeer's node/nodeSelector), their sessions in the speaker's config (passive, multihop, the
// BGPPeer's AS and filters), and the peering address on their host interfaces (the agent's input
// and the interface key the incremental applier compares).
import { describe, expect, it } from "vitest";
import type { BGPConfiguration } from "../../src/api/bgp.js";
import type { Node, WorkloadEndpoint } from "../../src/api/node.js";
import { renderWorkloads } from "../../src/felix/workload.js";
import { ifaceKey } from "../../src/felix/written.js";
import { agentInput } from "../../src/node/agent_state.js";
import { type BgpSnapshot, renderBgp } from "../../src/node/bgp_state.js";
import { localWorkloadPeers, peeringHostAddresses } from "../../src/node/local_peers.js";
import { filter, peer, V3 } from "./resources.js";

const node = (name: string, ip: string, labels: Record<string, string> = {}) =>
  ({
    apiVersion: V3,
    kind: "Node",
    metadata: { name, labels },
    spec: { bgp: { ipv4Address: ip } },
  }) as Node;

const wep = (
  name: string,
  nodeName: string,
  iface: string,
  nets: string[],
  labels: Record<string, string>,
  profiles?: string[],
) =>
  ({
    apiVersion: V3,
    kind: "WorkloadEndpoint",
    metadata: { name, namespace: "ns1", labels },
    spec: {
      node: nodeName,
      interfaceName: iface,
      ipNetworks: nets,
      ...(profiles ? { profiles } : {}),
    },
  }) as unknown as WorkloadEndpoint;

const config = (spec: BGPConfiguration["spec"]) =>
  ({
    apiVersion: V3,
    kind: "BGPConfiguration",
    metadata: { name: "default" },
    spec: { nodeToNodeMeshEnabled: false, ...spec },
  }) as BGPConfiguration;

function snap(over: Partial<BgpSnapshot> = {}): BgpSnapshot {
  return {
    nodes: [node("n1", "10.0.0.1/24", { rack: "a" }), node("n2", "10.0.0.2/24")],
    workloadEndpoints: [
      wep("red", "n1", "oclred", ["10.65.0.5/32", "fd00:65::5/128"], { color: "red" }),
      wep("blue", "n1", "oclblue", ["10.65.0.6/32"], { color: "blue" }),
      wep("inherits", "n1", "oclinh", ["10.65.0.7/32"], {}, ["kns.red"]),
      wep("elsewhere", "n2", "oclelse", ["10.65.1.5/32"], { color: "red" }),
    ],
    pools: [],
    affinities: [],
    bgpConfigurations: [config({ localWorkloadPeeringIPV4: "169.254.0.179" })],
    bgpPeers: [peer("to-red", { localWorkloadSelector: "color == 'red'", asNumber: 65030 })],
    profiles: [{ metadata: { name: "kns.red" }, spec: { labelsToApply: { color: "red" } } }],
    ...over,
  };
}

const opts = { statusSocket: "/tmp/x.sock" };

describe("local workload peering", () => {
  it("selects this node's endpoints by their labels and their profiles', first BGPPeer by name", () => {
    const s = snap({
      bgpPeers: [
        peer("z-red", { localWorkloadSelector: "color == 'red'", asNumber: 65031 }),
        peer("a-any", { localWorkloadSelector: "has(color)", asNumber: 65032, node: "n1" }),
        peer("other-node", { localWorkloadSelector: "all()", asNumber: 65033, node: "n2" }),
        peer("not-rack", {
          localWorkloadSelector: "all()",
          asNumber: 65034,
          nodeSelector: "rack == 'b'",
        }),
      ],
    });
    expect(localWorkloadPeers(s, "n1").peers).toEqual([
      { bgpPeer: "a-any", workload: "ns1/blue", iface: "oclblue", ipv4: "10.65.0.6" },
      { bgpPeer: "a-any", workload: "ns1/inherits", iface: "oclinh", ipv4: "10.65.0.7" },
      {
        bgpPeer: "a-any",
        workload: "ns1/red",
        iface: "oclred",
        ipv4: "10.65.0.5",
        ipv6: "fd00:65::5",
      },
    ]);
    // n2's own endpoint only, for the BGPPeer naming n2 (the first by name that applies).
    expect(localWorkloadPeers(s, "n2").peers).toEqual([
      { bgpPeer: "other-node", workload: "ns1/elsewhere", iface: "oclelse", ipv4: "10.65.1.5" },
    ]);
  });

  it("renders passive multihop sessions of the BGPPeer's AS and filters, one per address", () => {
    const s = snap({
      bgpPeers: [
        peer("to-red", {
          localWorkloadSelector: "color == 'red'",
          asNumber: 65030,
          filters: ["nested"],
        }),
      ],
      bgpFilters: [
        filter("nested", {
          importV4: [{ action: "Accept", cidr: "10.123.0.0/16", matchOperator: "In" }],
        }),
      ],
    });
    const r = renderBgp(s, "n1", opts);
    if (!r.config) throw new Error(r.reason);
    const peers = r.config.peers.map((p) => ({
      address: p.address,
      asn: p.asn,
      passive: p.passive,
      multihop: p.multihop,
      source: p.sourceAddress,
    }));
    expect(peers).toEqual([
      { address: "10.65.0.5", asn: 65030, passive: true, multihop: 64, source: undefined },
      { address: "10.65.0.7", asn: 65030, passive: true, multihop: 64, source: undefined },
      { address: "fd00:65::5", asn: 65030, passive: true, multihop: 64, source: undefined },
    ]);
    const v4 = r.config.peers.find((p) => p.address === "10.65.0.5");
    // The BGPFilter's rule after the import guard's.
    expect(v4?.importFilter?.rules.at(-1)).toMatchObject({
      action: "Accept",
      cidr: "10.123.0.0/16",
    });
    expect(r.peerKinds["10.65.0.5"]).toEqual({ type: "GlobalPeer", source: "to-red" });
    // No IPv6 peering address: the speaker listens on IPv4 only (as the node has no IPv6).
    expect(r.config.listen.address).toBe("0.0.0.0");
    const dual = renderBgp(
      { ...s, bgpConfigurations: [config({ localWorkloadPeeringIPV6: "fdc9::1" })] },
      "n1",
      opts,
    );
    expect(dual.config?.listen.address).toBe("::");
    // Relabelled: the session goes.
    const blue = snap();
    blue.workloadEndpoints[0] = wep("red", "n1", "oclred", ["10.65.0.5/32"], { color: "blue" });
    const r2 = renderBgp(blue, "n1", opts);
    expect(r2.config?.peers.map((p) => p.address)).toEqual(["10.65.0.7"]);
  });

  it("puts the peering addresses on the selected pods' host interfaces, none on the others", () => {
    const s = snap({
      bgpConfigurations: [
        config({
          localWorkloadPeeringIPV4: "169.254.0.179",
          localWorkloadPeeringIPV6: "fdc9:9723:9bc::1",
        }),
      ],
    });
    expect(peeringHostAddresses(s, "n1")).toEqual(
      new Map([
        ["oclred", ["169.254.0.179/32", "fdc9:9723:9bc::1/128"]],
        ["oclinh", ["169.254.0.179/32", "fdc9:9723:9bc::1/128"]],
      ]),
    );
    const input = agentInput(s, "n1");
    const byIface = new Map(input.workloads.map((w) => [w.hostIface, w.hostAddresses]));
    expect(byIface.get("oclred")).toEqual(["169.254.0.179/32", "fdc9:9723:9bc::1/128"]);
    expect(byIface.get("oclblue")).toEqual([]);
    const ifaces = renderWorkloads(input.workloads).ifaces;
    const red = ifaces.find((i) => i.name === "oclred");
    const blue = ifaces.find((i) => i.name === "oclblue");
    expect(red?.addresses).toEqual(["169.254.0.179/32", "fdc9:9723:9bc::1/128"]);
    // The key the incremental applier compares changes with the addresses.
    expect(ifaceKey(red as NonNullable<typeof red>)).toMatch(/ addr=169\.254\.0\.179\/32,/);
    expect(ifaceKey(blue as NonNullable<typeof blue>)).toMatch(/ addr=$/);
  });

  it("leaves interface addresses alone when local workload peering is not in use", () => {
    const s = snap({ bgpConfigurations: [config({})], bgpPeers: [] });
    expect(peeringHostAddresses(s, "n1")).toBeUndefined();
    const input = agentInput(s, "n1");
    expect(input.workloads.every((w) => w.hostAddresses === undefined)).toBe(true);
    const ifaces = renderWorkloads(input.workloads).ifaces;
    expect(ifaces.every((i) => !ifaceKey(i).includes("addr="))).toBe(true);
  });
});
