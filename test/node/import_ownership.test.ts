// The import ownership `ocelot node run` gives its sessions to other Nodes (pure, from resources:
// src/node/import_ownership.ts, through the speaker's check src/bgp/policy/ownership.ts): a Node
// may announce inside the pools its confirmed blocks (not a pending claim, not one being
// released) and host routes for its workloads' borrowed addresses and floating IPs; a block of
// another node, an address of nobody's workload, and everything from a Node that is a route
// reflector is decided as before; a BGPPeer whose peerIP is a Node's address counts as that
// Node, a ToR does not; the daemon's fast path (withImportOwnership) gives the same config as a
// full render from the same resources, so the pass after it changes nothing.
import { describe, expect, it } from "vitest";
import type { Node, WorkloadEndpoint } from "../../src/api/node.js";
import type { BgpdConfig, PeerConfig } from "../../src/bgp/config.js";
import { RouteSource, rejectReasonName } from "../../src/bgp/rib/policy.js";
import { parsePrefix } from "../../src/bgp/rib/prefix.js";
import { policiesFor } from "../../src/bgp/speaker/core.js";
import { type BgpSnapshot, renderBgp } from "../../src/node/bgp_state.js";
import {
  importOwnershipOf,
  nodeOwnership,
  withImportOwnership,
} from "../../src/node/import_ownership.js";
import { aff, peer, pool, V3 } from "./resources.js";

const node = (name: string, ip: string, bgp: Partial<NonNullable<Node["spec"]["bgp"]>> = {}) =>
  ({
    apiVersion: V3,
    kind: "Node",
    metadata: { name },
    spec: { bgp: { ipv4Address: ip, ...bgp } },
  }) as Node;

const wep = (name: string, nodeName: string, ips: string[], nats: string[] = []) =>
  ({
    apiVersion: V3,
    kind: "WorkloadEndpoint",
    metadata: { name, namespace: "default" },
    spec: {
      node: nodeName,
      interfaceName: `ocl${name}`,
      ipNetworks: ips,
      ...(nats.length > 0
        ? { ipNATs: nats.map((n) => ({ internalIP: ips[0], externalIP: n })) }
        : {}),
    },
  }) as unknown as WorkloadEndpoint;

function snap(over: Partial<BgpSnapshot> = {}): BgpSnapshot {
  return {
    nodes: [
      node("n1", "10.0.0.1/24", { ipv6Address: "fd00::1/64" }),
      node("n2", "10.0.0.2/24", { ipv6Address: "fd00::2/64" }),
    ],
    workloadEndpoints: [
      // n2's pod with an address borrowed from n1's block, and one inside its own block.
      wep("a", "n2", ["10.244.0.7/32"]),
      wep("b", "n2", ["10.244.1.3/32", "fd00:10:244::1:5/128"]),
      // Outside every pool: not the pools' business.
      wep("c", "n2", ["192.0.2.9/32"]),
    ],
    pools: [pool("p", "10.244.0.0/16"), pool("p6", "fd00:10:244::/48", { blockSize: 122 })],
    affinities: [
      aff("n1", "10.244.0.0/26"),
      aff("n2", "10.244.1.0/26"),
      aff("n2", "fd00:10:244::1:0/122"),
      aff("n2", "10.244.2.0/26", "pending"),
      aff("n2", "10.244.3.0/26", "pendingDeletion"),
    ],
    bgpConfigurations: [],
    bgpPeers: [],
    ...over,
  };
}

const opts = { statusSocket: "/tmp/x.sock" };

function rendered(s: BgpSnapshot, me = "n1"): BgpdConfig {
  const r = renderBgp(s, me, opts);
  if (!r.config) throw new Error(r.reason);
  return r.config;
}

const peerAt = (c: BgpdConfig, address: string) =>
  c.peers.find((p) => p.address === address) as PeerConfig;

/** What n1's speaker decides about a prefix from the peer (its whole import policy). */
function decide(p: PeerConfig, prefix: string): string {
  const pol = policiesFor(p, 64512).importPolicy;
  const x = parsePrefix(prefix);
  const v =
    x.family === 4
      ? pol.v4(x.words[0] as number, x.len, RouteSource.Internal)
      : pol.v6(x.words, 0, x.len, RouteSource.Internal);
  return v === 0 ? "accept" : rejectReasonName(v);
}

describe("import ownership of Node peers", () => {
  it("lists a Node's confirmed blocks and its workloads' borrowed addresses, per family", () => {
    expect(nodeOwnership(snap(), "n2", "ipv4-unicast")).toEqual({
      within: ["10.244.0.0/16"],
      accept: ["10.244.0.7/32", "10.244.1.0/26"],
    });
    expect(nodeOwnership(snap(), "n2", "ipv6-unicast")).toEqual({
      within: ["fd00:10:244::/48"],
      accept: ["fd00:10:244::1:0/122"],
    });
    expect(nodeOwnership(snap(), "n1", "ipv4-unicast").accept).toEqual(["10.244.0.0/26"]);
  });

  it("lets the mesh peer's blocks and borrowed host routes in, and nothing else inside the pools", () => {
    const n2 = peerAt(rendered(snap()), "10.0.0.2");
    expect(n2.importOwnership).toBeDefined();
    expect(decide(n2, "10.244.1.0/26")).toBe("accept");
    expect(decide(n2, "10.244.0.7/32")).toBe("accept"); // borrowed from n1's block
    expect(decide(n2, "10.244.1.3/32")).toBe("accept"); // inside its own block
    expect(decide(n2, "10.244.0.0/26")).toBe("NotOwned"); // n1's block
    expect(decide(n2, "10.244.0.8/32")).toBe("NotOwned"); // nobody's workload
    expect(decide(n2, "10.244.2.0/26")).toBe("NotOwned"); // a claim still pending
    expect(decide(n2, "10.244.3.0/26")).toBe("NotOwned"); // being released
    expect(decide(n2, "10.244.9.0/26")).toBe("NotOwned"); // nobody's
    expect(decide(n2, "192.0.2.9/32")).toBe("accept"); // outside the pools
    const n2v6 = peerAt(rendered(snap()), "fd00::2");
    expect(decide(n2v6, "fd00:10:244::1:0/122")).toBe("accept");
    expect(decide(n2v6, "fd00:10:244::2:0/122")).toBe("NotOwned");
  });

  it("leaves LoadBalancer pools out: Service addresses are no node's", () => {
    const s = snap({
      pools: [
        pool("p", "10.244.0.0/16"),
        pool("lb", "10.250.0.0/24", { allowedUses: ["LoadBalancer"] }),
        pool("tun", "10.251.0.0/24", { allowedUses: ["Tunnel"] }),
      ],
    });
    expect(nodeOwnership(s, "n2", "ipv4-unicast").within).toEqual([
      "10.244.0.0/16",
      "10.251.0.0/24",
    ]);
    expect(decide(peerAt(rendered(s), "10.0.0.2"), "10.250.0.5/32")).not.toBe("NotOwned");
  });

  it("takes floating IPs inside a pool as the Node's when its FelixConfiguration enables them", () => {
    const s = snap({ workloadEndpoints: [wep("f", "n2", ["10.244.1.9/32"], ["10.244.7.7"])] });
    expect(nodeOwnership(s, "n2", "ipv4-unicast").accept).toEqual(["10.244.1.0/26"]);
    const on = {
      ...s,
      felixConfigurations: [{ metadata: { name: "default" }, spec: { floatingIPs: "Enabled" } }],
    };
    expect(nodeOwnership(on, "n2", "ipv4-unicast").accept).toEqual([
      "10.244.1.0/26",
      "10.244.7.7/32",
    ]);
  });

  it("applies to a BGPPeer whose peerIP is a Node, not to a ToR nor toward a route reflector", () => {
    const s = snap({
      nodes: [
        node("n1", "10.0.0.1/24"),
        node("n2", "10.0.0.2/24"),
        node("rr", "10.0.0.9/24", { routeReflectorClusterID: "224.0.0.1" }),
      ],
      bgpConfigurations: [
        {
          apiVersion: V3,
          kind: "BGPConfiguration",
          metadata: { name: "default" },
          spec: { nodeToNodeMeshEnabled: false },
        },
      ],
      bgpPeers: [
        peer("to-n2", { peerIP: "10.0.0.2", asNumber: 64512 }),
        peer("to-rr", { peerIP: "10.0.0.9", asNumber: 64512 }),
        peer("tor", { peerIP: "10.0.0.254", asNumber: 65000 }),
      ],
    });
    const c = rendered(s);
    expect(peerAt(c, "10.0.0.2").importOwnership?.accept).toEqual([
      "10.244.0.7/32",
      "10.244.1.0/26",
    ]);
    expect(peerAt(c, "10.0.0.9").importOwnership).toBeUndefined();
    expect(peerAt(c, "10.0.0.254").importOwnership).toBeUndefined();
    expect(importOwnershipOf(s, "10.0.0.254", "ipv4-unicast")).toBeUndefined();
  });

  it("memoises per node on the records' identity: the same records give the same result, a new one is read", () => {
    const s = snap();
    const first = nodeOwnership(s, "n2", "ipv4-unicast");
    // A new snapshot of the same records (what the daemon makes on a change elsewhere).
    expect(nodeOwnership({ ...s, affinities: [...s.affinities] }, "n2", "ipv4-unicast")).toBe(
      first,
    );
    // A record of n2 changed (a new object, as a decoded new version): computed again.
    const moved = { ...s, affinities: [...s.affinities, aff("n2", "10.244.4.0/26")] };
    expect(nodeOwnership(moved, "n2", "ipv4-unicast").accept).toContain("10.244.4.0/26");
    // Another node's record changed: n2's own result stands.
    const other = { ...moved, affinities: [...moved.affinities, aff("n1", "10.244.5.0/26")] };
    expect(nodeOwnership(other, "n2", "ipv4-unicast")).toBe(
      nodeOwnership(moved, "n2", "ipv4-unicast"),
    );
  });

  it("fast path: the same config as a full render, the same object when nothing changed", () => {
    const before = snap();
    const c = rendered(before);
    expect(withImportOwnership(c, before)).toBe(c);
    // The pending claim confirmed, a block moved from n1 to n2, a pod borrowing from n2's block.
    const after = snap({
      affinities: [
        aff("n2", "10.244.0.0/26"),
        aff("n2", "10.244.1.0/26"),
        aff("n2", "fd00:10:244::1:0/122"),
        aff("n2", "10.244.2.0/26"),
      ],
    });
    const fast = withImportOwnership(c, after);
    expect(fast).not.toBe(c);
    expect(peerAt(fast, "10.0.0.2").importOwnership?.accept).toEqual([
      "10.244.0.0/26",
      "10.244.1.0/26",
      "10.244.2.0/26",
    ]);
    // Only the ownership differs from the render's: the pass after it would change nothing in
    // the peers (its originations are the own-blocks fast path's and the pass's business).
    expect(JSON.stringify(fast.peers)).toBe(JSON.stringify(rendered(after).peers));
  });
});
