// The node's overlay state from resources (pure, and IPAM on the in-memory store): which tunnel
// addresses a node needs from its pools, their assignment under Calico's handles and their
// Node fields (VTEP MAC included), release when the pools stop encapsulating; and BGP beside an
// overlay: encapsulated pools' blocks still announced, never imported (the agent routes them);
// disableBGPExport never announced.
import { describe, expect, it } from "vitest";
import { getNode } from "../../src/api/client.js";
import type { IPPool } from "../../src/api/ippool.js";
import type { Node, WorkloadEndpoint } from "../../src/api/node.js";
import { validateResource } from "../../src/api/registry.js";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import { IpamStore } from "../../src/ipam/store.js";
import { importGuardRules, renderBgp } from "../../src/node/bgp_state.js";
import { registerNode } from "../../src/node/registration.js";
import {
  ensureTunnelAddresses,
  planTunnels,
  tunnelHandle,
  tunnelMac,
  tunnelNeeds,
} from "../../src/node/tunnel_addrs.js";
import { putPool } from "../ipam/helpers.js";
import { aff, pool, V3 } from "./resources.js";

const node = (name: string, spec: Node["spec"] = {}, labels = {}) =>
  ({ apiVersion: V3, kind: "Node", metadata: { name, labels }, spec }) as Node;
const n1 = node("n1", { bgp: { ipv4Address: "10.0.1.11/24", ipv6Address: "fd31:1::11/64" } });
/** As the daemon sees pools: validated, Calico's defaults filled in. */
const decoded = (p: IPPool) => validateResource(p).resource as unknown as IPPool;

describe("tunnel addresses", () => {
  it("tunnelNeeds(): per encapsulation, the enabled pools of its family that allow Tunnel and select the node", () => {
    const pools = [
      pool("v4", "10.244.0.0/16", { vxlanMode: "Always" }),
      pool("v4-wl", "10.245.0.0/16", { vxlanMode: "Always", allowedUses: ["Workload"] }),
      pool("v4-off", "10.246.0.0/16", { vxlanMode: "CrossSubnet", disabled: true }),
      pool("v4-other", "10.247.0.0/16", { vxlanMode: "Always", nodeSelector: "zone == 'b'" }),
      pool("ipip", "10.248.0.0/16", { ipipMode: "CrossSubnet" }),
      pool("v6", "fd32::/48", { vxlanMode: "CrossSubnet" }),
      pool("plain", "10.249.0.0/16"),
    ].map(decoded);
    expect(tunnelNeeds(pools, n1)).toEqual({ ipip: ["ipip"], vxlan: ["v4"], "vxlan-v6": ["v6"] });
    // No IPv6 fabric address: no IPv6 tunnel.
    expect(tunnelNeeds(pools, node("n2", { bgp: { ipv4Address: "10.0.1.12/24" } }))).toEqual({
      ipip: ["ipip"],
      vxlan: ["v4"],
    });
    expect(tunnelHandle("vxlan-v6", "n1")).toBe("vxlan-v6-tunnel-addr-n1");
  });

  it("tunnelMac(): locally administered unicast, one per node and family, stable", () => {
    const m = tunnelMac("n1", 4);
    expect(m).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    expect(Number.parseInt(m.slice(0, 2), 16) & 0x03).toBe(0x02);
    expect(tunnelMac("n1", 4)).toBe(m);
    expect(tunnelMac("n1", 6)).not.toBe(m);
    expect(tunnelMac("n2", 4)).not.toBe(m);
  });

  it("planTunnels(): keep an address in a needed pool, assign a missing one or one outside the pools (releasing it first), release what no pool needs", () => {
    const pools = [pool("v4", "10.244.0.0/16", { vxlanMode: "Always" })].map(decoded);
    const withAddr = (addr: string) =>
      node("n1", { ...n1.spec, ipv4VXLANTunnelAddr: addr, vxlanTunnelMACAddr: tunnelMac("n1", 4) });
    expect(planTunnels(pools, n1)).toEqual([
      { kind: "vxlan", op: "assign", pools: ["v4"], releaseFirst: false },
    ]);
    expect(planTunnels(pools, withAddr("10.244.3.1"))).toEqual([{ kind: "vxlan", op: "keep" }]);
    expect(planTunnels(pools, withAddr("10.99.0.1"))).toEqual([
      { kind: "vxlan", op: "assign", pools: ["v4"], releaseFirst: true },
    ]);
    expect(planTunnels([], withAddr("10.244.3.1"))).toEqual([{ kind: "vxlan", op: "release" }]);
  });

  it("ensureTunnelAddresses(): assigns from the pool under Calico's handle and writes address and MAC on the Node; nothing the second time; released and removed with Never", async () => {
    const store = new MemoryDatastore();
    await putPool(store, "v4", "10.244.0.0/16", { vxlanMode: "Always" });
    await putPool(store, "v6", "fd32::/48", { vxlanMode: "CrossSubnet", blockSize: 122 });
    await registerNode(store, {
      name: "n1",
      ipv4Address: "10.0.1.11/24",
      ipv6Address: "fd31:1::11/64",
    });
    const pools = () =>
      [
        pool("v4", "10.244.0.0/16", { vxlanMode: mode }),
        pool("v6", "fd32::/48", { vxlanMode: mode, blockSize: 122 }),
      ].map(decoded);
    let mode: "Always" | "Never" = "Always";
    const updated = await ensureTunnelAddresses(store, "n1", pools());
    expect(updated?.spec).toMatchObject({
      vxlanTunnelMACAddr: tunnelMac("n1", 4),
      vxlanTunnelMACAddrV6: tunnelMac("n1", 6),
    });
    const v4 = updated?.spec.ipv4VXLANTunnelAddr as string;
    const v6 = updated?.spec.ipv6VXLANTunnelAddr as string;
    expect(v4).toMatch(/^10\.244\./);
    expect(v6).toMatch(/^fd32:/);
    const ipam = new IpamStore(store);
    expect((await ipam.getAllocation(v4))?.handleId).toBe("vxlan-tunnel-addr-n1");
    expect((await ipam.getAllocation(v4))?.attrs).toMatchObject({
      type: "vxlanTunnelAddress",
      node: "n1",
    });
    expect((await ipam.getAllocation(v6))?.handleId).toBe("vxlan-v6-tunnel-addr-n1");
    // The address's block is this node's (so the other nodes route it with the node's pods).
    expect((await ipam.getAllocation(v4))?.blockAffinity).toBe("host:n1");
    expect(await ensureTunnelAddresses(store, "n1", pools())).toBeUndefined();
    mode = "Never";
    const cleared = await ensureTunnelAddresses(store, "n1", pools());
    expect(cleared?.spec.ipv4VXLANTunnelAddr).toBeUndefined();
    expect(cleared?.spec.vxlanTunnelMACAddr).toBeUndefined();
    expect(cleared?.spec.ipv6VXLANTunnelAddr).toBeUndefined();
    expect(await ipam.getAllocation(v4)).toBeUndefined();
    expect((await getNode(store, "n1"))?.spec.bgp?.ipv4Address).toBe("10.0.1.11/24");
  });
});

const wep = (name: string, nodeName: string, ip: string) =>
  ({
    apiVersion: V3,
    kind: "WorkloadEndpoint",
    metadata: { name, namespace: "default" },
    spec: { node: nodeName, ipNetworks: [ip], interfaceName: `cali${name}` },
  }) as unknown as WorkloadEndpoint;

describe("BGP beside the overlay", () => {
  const snap = (pools: IPPool[], workloadEndpoints: WorkloadEndpoint[] = []) => ({
    nodes: [n1, node("n2", { bgp: { ipv4Address: "10.0.1.12/24" } })],
    workloadEndpoints,
    pools,
    affinities: [
      aff("n1", "10.244.0.0/26"),
      aff("n1", "10.250.0.0/26"),
      aff("n2", "10.244.0.64/26"),
    ],
    bgpConfigurations: [],
    bgpPeers: [],
  });
  const render = (pools: IPPool[], weps: WorkloadEndpoint[] = []) => {
    const r = renderBgp(snap(pools, weps), "n1", { statusSocket: "/tmp/x.sock" });
    if (!r.config) throw new Error("no config");
    return r.config;
  };

  it("an encapsulating pool's blocks are announced but not imported (the overlay routes them); a Never pool's are both", () => {
    const pools = [
      pool("vx", "10.244.0.0/16", { vxlanMode: "CrossSubnet" }),
      pool("plain", "10.250.0.0/16"),
    ];
    const c = render(pools);
    expect(c.originate.map((o) => o.prefix)).toEqual(["10.244.0.0/26", "10.250.0.0/26"]);
    // The overlay's pool first, then the import guard (test/node/import_guard.test.ts).
    const guard = (p: IPPool[]) => importGuardRules(snap(p), "10.0.1.12", "ipv4-unicast", []);
    expect(c.peers[0]?.importFilter).toEqual({
      rules: [{ action: "Reject", cidr: "10.244.0.0/16", matchOperator: "In" }, ...guard(pools)],
    });
    const plain = [pool("plain", "10.244.0.0/16")];
    expect(render(plain).peers[0]?.importFilter).toEqual({ rules: guard(plain) });
  });

  it("a pool with disableBGPExport is never announced, whatever its encapsulation", () => {
    const c = render([
      pool("vx", "10.244.0.0/16", { vxlanMode: "Always", disableBGPExport: true }),
      pool("plain", "10.250.0.0/16"),
    ]);
    expect(c.originate.map((o) => o.prefix)).toEqual(["10.250.0.0/26"]);
  });

  it("a workload's borrowed address (in another node's block) is announced as a /32 by its own node, as Calico does; its own-block and other nodes' workloads are not", () => {
    const c = render(
      [pool("plain", "10.250.0.0/16"), pool("vx", "10.244.0.0/16", { vxlanMode: "Always" })],
      [
        wep("a", "n1", "10.250.0.5/32"), // in n1's own block
        wep("b", "n1", "10.244.0.70/32"), // borrowed from n2's block 10.244.0.64/26
        wep("c", "n2", "10.250.0.9/32"), // n2's borrowed one: n2 announces it, not n1
        wep("d", "n1", "192.0.2.7/32"), // in no pool: never announced
      ],
    );
    expect(c.originate.map((o) => o.prefix)).toEqual([
      "10.244.0.0/26",
      "10.250.0.0/26",
      "10.244.0.70/32",
    ]);
    const noExport = render(
      [pool("vx", "10.244.0.0/16", { vxlanMode: "Always", disableBGPExport: true })],
      [wep("b", "n1", "10.244.0.70/32")],
    );
    expect(noExport.originate.map((o) => o.prefix)).not.toContain("10.244.0.70/32");
    expect(noExport.originate.map((o) => o.prefix)).not.toContain("10.244.0.0/26");
  });
});
