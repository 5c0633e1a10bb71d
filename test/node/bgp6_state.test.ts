// Dual stack in the node's BGP state (pure) and its registration: IPv6 mesh sessions to every
// other Node with an ipv6Address when this node has one, each session carrying only its own
// family and IPv6 ones sourced from this node's IPv6 address; IPv6 BGPPeers by peerIP and by
// peerSelector; IPv6 blocks originated; the listener dual-stack; --ip6's Node field kept by CAS.
import { describe, expect, it } from "vitest";
import { getNode } from "../../src/api/client.js";
import type { Node } from "../../src/api/node.js";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import { type BgpSnapshot, renderBgp } from "../../src/node/bgp_state.js";
import { registerNode } from "../../src/node/registration.js";
import { aff, bgpConfig, peer, pool, V3 } from "./resources.js";

const node = (name: string, bgp: Node["spec"]["bgp"] = {}, labels = {}) =>
  ({ apiVersion: V3, kind: "Node", metadata: { name, labels }, spec: { bgp } }) as Node;

const dual = (i: number, labels = {}) =>
  node(`n${i}`, { ipv4Address: `10.0.0.${i}/24`, ipv6Address: `fd00:0:0:0::${i}/64` }, labels);

function snap(over: Partial<BgpSnapshot> = {}): BgpSnapshot {
  return {
    nodes: [dual(1), dual(2), node("n3", { ipv4Address: "10.0.0.3/24" })],
    workloadEndpoints: [],
    pools: [pool("v4", "10.244.0.0/16"), pool("v6", "fd10::/64", { blockSize: 122 })],
    affinities: [
      aff("n1", "10.244.0.0/26"),
      aff("n1", "fd10::/122"),
      aff("n1", "fd10::40/122", "pending"),
      aff("n2", "fd10::80/122"),
    ],
    bgpConfigurations: [],
    bgpPeers: [],
    ...over,
  };
}

const opts = { statusSocket: "/tmp/x.sock" };

const render = (s: BgpSnapshot, name = "n1") => {
  const r = renderBgp(s, name, opts);
  if (!r.config) throw new Error(`no config: ${"reason" in r ? r.reason : ""}`);
  return { config: r.config, warnings: r.warnings };
};

/** Each peer as address, families, source. */
const sessions = (s: BgpSnapshot, name = "n1") =>
  render(s, name).config.peers.map((p) => [p.address, p.families, p.sourceAddress]);

describe("dual-stack BGP state", () => {
  it("a dual-stack node meshes over IPv4 with every node and over IPv6 with the dual-stack ones; each session one family", () => {
    expect(sessions(snap())).toEqual([
      ["10.0.0.2", ["ipv4-unicast"], undefined],
      ["10.0.0.3", ["ipv4-unicast"], undefined],
      ["fd00::2", ["ipv6-unicast"], "fd00::1"],
    ]);
    const c = render(snap()).config;
    expect(c.routerId).toBe("10.0.0.1");
    expect(c.listen.address).toBe("::");
  });

  it("originates its confirmed IPv4 and IPv6 blocks (not pending ones, not another node's)", () => {
    expect(render(snap()).config.originate.map((o) => o.prefix)).toEqual([
      "10.244.0.0/26",
      "fd10::/122",
    ]);
  });

  it("an IPv4-only node has no IPv6 session even to dual-stack nodes, and listens on IPv4", () => {
    const c = render(snap(), "n3").config;
    expect(c.peers.map((p) => [p.address, p.families])).toEqual([
      ["10.0.0.1", ["ipv4-unicast"]],
      ["10.0.0.2", ["ipv4-unicast"]],
    ]);
    expect(c.listen.address).toBe("0.0.0.0");
  });

  it("IPv6 addresses are compared and keyed in RFC 5952 text; never a session to itself", () => {
    const s = snap({
      nodes: [
        node("n1", { ipv4Address: "10.0.0.1/24", ipv6Address: "FD00:0000::0001/64" }),
        node("n2", { ipv4Address: "10.0.0.2/24", ipv6Address: "fd00:0:0:0:0:0:0:2" }),
      ],
      bgpPeers: [peer("self6", { peerIP: "fd00::1", asNumber: 65000 })],
    });
    expect(sessions(s)).toEqual([
      ["10.0.0.2", ["ipv4-unicast"], undefined],
      ["fd00::2", ["ipv6-unicast"], "fd00::1"],
    ]);
  });

  it("IPv6 BGPPeers by peerIP (with port) apply when this node has an IPv6 address, else are skipped by name", () => {
    const s = snap({
      bgpPeers: [
        peer("tor6", { peerIP: "[fd00::fe]:1179", asNumber: 65000 }),
        peer("tor6-nosrc", { peerIP: "fd00::fd", asNumber: 65000, sourceAddress: "None" }),
        peer("tor4", { peerIP: "10.0.0.254", asNumber: 65000 }),
      ],
    });
    const c = render(s).config;
    const byAddr = new Map(c.peers.map((p) => [p.address, p]));
    expect(byAddr.get("fd00::fe")).toMatchObject({
      port: 1179,
      asn: 65000,
      families: ["ipv6-unicast"],
      sourceAddress: "fd00::1",
    });
    expect(byAddr.get("fd00::fd")?.sourceAddress).toBeUndefined();
    expect(byAddr.get("10.0.0.254")).toMatchObject({
      families: ["ipv4-unicast"],
      sourceAddress: "10.0.0.1",
    });
    const v4only = render(s, "n3");
    expect(v4only.config.peers.map((p) => p.address)).toEqual([
      "10.0.0.1",
      "10.0.0.2",
      "10.0.0.254",
    ]);
    expect(v4only.warnings.join("\n")).toMatch(
      /BGPPeer "tor6": IPv6 peer \[fd00::fe\]:1179 skipped: Node "n3" has no spec.bgp.ipv6Address/,
    );
  });

  it("peerSelector peers get a session per family both ends have; reflector clients on both", () => {
    const s = snap({
      bgpConfigurations: [bgpConfig("default", { nodeToNodeMeshEnabled: false })],
      nodes: [
        node(
          "rr",
          {
            ipv4Address: "10.0.0.9/24",
            ipv6Address: "fd00::9/64",
            routeReflectorClusterID: "224.0.0.1",
          },
          { rr: "yes" },
        ),
        dual(1),
        node("n3", { ipv4Address: "10.0.0.3/24" }),
      ],
      bgpPeers: [
        peer("to-rr", { nodeSelector: "!has(rr)", peerSelector: "has(rr)" }),
        peer("rr-to-all", { nodeSelector: "has(rr)", peerSelector: "!has(rr)" }),
      ],
    });
    expect(
      render(s, "rr").config.peers.map((p) => [p.address, p.routeReflectorClient, p.sourceAddress]),
    ).toEqual([
      ["10.0.0.1", true, "10.0.0.9"],
      ["10.0.0.3", true, "10.0.0.9"],
      ["fd00::1", true, "fd00::9"],
    ]);
    expect(sessions(s, "n1")).toEqual([
      ["10.0.0.9", ["ipv4-unicast"], "10.0.0.1"],
      ["fd00::9", ["ipv6-unicast"], "fd00::1"],
    ]);
  });

  it("IPv6 blocks of a pool with disableBGPExport are not originated", () => {
    const s = snap({
      pools: [pool("v4", "10.244.0.0/16"), pool("v6", "fd10::/64", { disableBGPExport: true })],
    });
    expect(render(s).config.originate.map((o) => o.prefix)).toEqual(["10.244.0.0/26"]);
  });

  it("an IPv6 address alone does not run a speaker (the router ID is the IPv4 address)", () => {
    const s = snap({ nodes: [node("n1", { ipv6Address: "fd00::1/64" }), dual(2)] });
    expect(renderBgp(s, "n1", opts)).toMatchObject({
      config: undefined,
      reason: /no spec.bgp.ipv4Address/,
    });
  });
});

describe("dual-stack Node registration", () => {
  it("--ip6 writes spec.bgp.ipv6Address beside the IPv4 one; absent keeps it; a bad one is refused", async () => {
    const store = new MemoryDatastore();
    try {
      const first = await registerNode(store, {
        name: "n1",
        ipv4Address: "10.0.0.1/24",
        ipv6Address: "fd00::1/64",
      });
      expect(first.changed).toBe(true);
      const again = await registerNode(store, { name: "n1", ipv4Address: "10.0.0.1/24" });
      expect(again.changed).toBe(false);
      expect((await getNode(store, "n1"))?.spec.bgp).toEqual({
        ipv4Address: "10.0.0.1/24",
        ipv6Address: "fd00::1/64",
      });
      await expect(registerNode(store, { name: "n1", ipv6Address: "10.0.0.9/24" })).rejects.toThrow(
        /ipv6Address/,
      );
      expect((await getNode(store, "n1"))?.spec.bgp?.ipv6Address).toBe("fd00::1/64");
    } finally {
      await store.close();
    }
  });
});
