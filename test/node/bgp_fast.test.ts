// The BGP fast path's decision (src/node/bgp_fast.ts): a change that only confirms new blocks of
// this node gives the originations the next full render (renderBgp) gives, exactly (compared as
// the daemon compares configs, as JSON), so the pass after the fast path changes nothing; every
// other change of this node's blocks, or a block the render treats otherwise, is the pass's.
import { describe, expect, it } from "vitest";
import type { Node, WorkloadEndpoint } from "../../src/api/node.js";
import { nodeBlocks } from "../../src/node/agent_state.js";
import { ownBlocksAdded, type RenderedOwnBlocks } from "../../src/node/bgp_fast.js";
import { type BgpSnapshot, renderBgp } from "../../src/node/bgp_state.js";
import { aff, bgpConfig, pool, V3 } from "./resources.js";

const node = (name: string, ip: string) =>
  ({
    apiVersion: V3,
    kind: "Node",
    metadata: { name },
    spec: { bgp: { ipv4Address: ip } },
  }) as Node;

const wep = (name: string, nodeName: string, ips: string[]) =>
  ({
    apiVersion: V3,
    kind: "WorkloadEndpoint",
    metadata: { name, namespace: "default" },
    spec: { node: nodeName, interfaceName: `ocl${name}`, ipNetworks: ips },
  }) as WorkloadEndpoint;

function snap(over: Partial<BgpSnapshot> = {}): BgpSnapshot {
  return {
    nodes: [node("n1", "10.0.0.1/24"), node("n2", "10.0.0.2/24")],
    workloadEndpoints: [],
    pools: [pool("p", "10.244.0.0/16"), pool("q", "10.233.0.0/16", { blockSize: 32 })],
    affinities: [aff("n1", "10.244.0.64/26"), aff("n2", "10.244.1.0/26")],
    bgpConfigurations: [],
    bgpPeers: [],
    ...over,
  };
}

const opts = { statusSocket: "/tmp/x.sock" };

/** What the daemon records after a full render of s. */
function rendered(s: BgpSnapshot): RenderedOwnBlocks {
  const r = renderBgp(s, "n1", opts);
  if (r.config === undefined) throw new Error(r.reason);
  return {
    own: nodeBlocks(s.affinities, "n1"),
    exported: r.ownExported,
    originate: r.config.originate,
  };
}

/** The fast path's originations for before → after, and the full render's of after. */
function both(before: BgpSnapshot, after: BgpSnapshot) {
  const d = ownBlocksAdded(rendered(before), after, "n1");
  return { d, full: renderBgp(after, "n1", opts).config?.originate };
}

describe("BGP fast path: this node's new blocks", () => {
  const cases: [string, Partial<BgpSnapshot>, string[]][] = [
    ["a first block", { affinities: [aff("n2", "10.244.1.0/26")] }, ["10.244.0.0/26"]],
    ["a block sorted before the existing one", {}, ["10.244.0.0/26"]],
    ["a block sorted after it", {}, ["10.244.0.128/26"]],
    ["two blocks at once, one a /32 of another pool", {}, ["10.233.0.7/32", "10.244.0.192/26"]],
    [
      "beside a borrowed address and a Service range",
      {
        workloadEndpoints: [wep("a", "n1", ["10.244.1.5/32"])],
        bgpConfigurations: [
          bgpConfig("default", { serviceClusterIPs: [{ cidr: "10.96.0.0/12" }] }),
        ],
      },
      ["10.244.0.0/26"],
    ],
    [
      "beside a pool with disableBGPExport holding another block of the node",
      {
        pools: [
          pool("p", "10.244.0.0/16"),
          pool("q", "10.233.0.0/16", { blockSize: 32 }),
          pool("x", "10.250.0.0/16", { disableBGPExport: true }),
        ],
        affinities: [aff("n1", "10.250.0.0/26"), aff("n1", "10.244.0.64/26")],
      },
      ["10.244.0.0/26"],
    ],
  ];
  for (const [name, over, added] of cases)
    it(`${name}: the full render's originations, exactly`, () => {
      const before = snap(over);
      // Claimed as IPAM claims: pending (nothing to do), then confirmed.
      const pending = {
        ...before,
        affinities: [...before.affinities, ...added.map((b) => aff("n1", b, "pending"))],
      };
      expect(ownBlocksAdded(rendered(before), pending, "n1")).toEqual({ kind: "none" });
      const after = {
        ...before,
        affinities: [...before.affinities, ...added.map((b) => aff("n1", b))],
      };
      const { d, full } = both(before, after);
      expect(d.kind).toBe("originate");
      if (d.kind !== "originate") return;
      expect(d.added).toEqual([...added].sort());
      expect(JSON.stringify(d.originate)).toBe(JSON.stringify(full));
      // Recorded as the daemon records it, the next change starts from the render's state.
      const again = ownBlocksAdded(
        { own: nodeBlocks(after.affinities, "n1"), exported: d.exported, originate: d.originate },
        after,
        "n1",
      );
      expect(again).toEqual({ kind: "none" });
      expect(d.exported).toEqual(rendered(after).exported);
    });

  it("nothing to do when this node's confirmed blocks are unchanged (another node's claimed)", () => {
    const s = snap();
    const after = { ...s, affinities: [...s.affinities, aff("n2", "10.244.2.0/26")] };
    expect(ownBlocksAdded(rendered(s), after, "n1")).toEqual({ kind: "none" });
  });

  const pass: [string, Partial<BgpSnapshot>, (s: BgpSnapshot) => BgpSnapshot, RegExp][] = [
    [
      "a block released",
      {},
      (s) => ({ ...s, affinities: [aff("n2", "10.244.1.0/26")] }),
      /no longer/,
    ],
    [
      "one released, one claimed",
      {},
      (s) => ({ ...s, affinities: [aff("n2", "10.244.1.0/26"), aff("n1", "10.244.0.0/26")] }),
      /no longer/,
    ],
    [
      "a block confirmed becoming pendingDeletion",
      {},
      (s) => ({
        ...s,
        affinities: [aff("n1", "10.244.0.64/26", "pendingDeletion"), aff("n2", "10.244.1.0/26")],
      }),
      /no longer/,
    ],
    [
      "a block of a pool with disableBGPExport",
      {
        pools: [pool("p", "10.244.0.0/16"), pool("x", "10.250.0.0/16", { disableBGPExport: true })],
      },
      (s) => ({ ...s, affinities: [...s.affinities, aff("n1", "10.250.0.0/26")] }),
      /disableBGPExport/,
    ],
    [
      "a block of a VXLAN pool",
      { pools: [pool("p", "10.244.0.0/16"), pool("v", "10.251.0.0/16", { vxlanMode: "Always" })] },
      (s) => ({ ...s, affinities: [...s.affinities, aff("n1", "10.251.0.0/26")] }),
      /encapsulating/,
    ],
    [
      "a block of an IP-in-IP CrossSubnet pool",
      {
        pools: [
          pool("p", "10.244.0.0/16"),
          pool("i", "10.252.0.0/16", { ipipMode: "CrossSubnet" }),
        ],
      },
      (s) => ({ ...s, affinities: [...s.affinities, aff("n1", "10.252.0.0/26")] }),
      /encapsulating/,
    ],
    [
      "a block of no pool",
      {},
      (s) => ({ ...s, affinities: [...s.affinities, aff("n1", "10.99.0.0/26")] }),
      /no pool/,
    ],
    [
      "a block holding an address this node announced as borrowed",
      { workloadEndpoints: [wep("a", "n1", ["10.244.2.9/32"])] },
      (s) => ({ ...s, affinities: [...s.affinities, aff("n1", "10.244.2.0/26")] }),
      /covers another origination/,
    ],
  ];
  for (const [name, over, change, why] of pass)
    it(`left to the pass: ${name}`, () => {
      const before = snap(over);
      const d = ownBlocksAdded(rendered(before), change(before), "n1");
      expect(d).toMatchObject({ kind: "pass", why: expect.stringMatching(why) });
    });

  it("left to the pass when the originations are not in the rendered order", () => {
    const s = snap();
    const r = rendered(s);
    const shuffled = { ...r, exported: ["10.244.9.0/26"] };
    const after = { ...s, affinities: [...s.affinities, aff("n1", "10.244.0.0/26")] };
    expect(ownBlocksAdded(shuffled, after, "n1")).toMatchObject({ kind: "pass", why: /order/ });
  });
});
