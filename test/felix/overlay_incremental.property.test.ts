// Property: the fast path's incremental render (addBlocks) never disagrees with a full render.
// For any cluster (nodes with or without a fabric address and VTEP, in this node's subnet or
// another, pools of any VXLAN mode, blocks of any node, workload addresses borrowed or not) and
// any blocks added to it, addBlocks either refuses (a full render decides) or gives exactly the
// full render's routes, neighbours and FDB entries, and the delta planOverlayDelta makes.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type OverlayInput, type OverlayNode, renderOverlay } from "../../src/felix/overlay.js";
import { addBlocks, planOverlayDelta } from "../../src/felix/overlay_delta.js";

const NAMES = ["a", "b", "c", "d"] as const;
const PRESENT = new Set(["vxlan.ocelot"]);

const arbNode = (name: string, i: number): fc.Arbitrary<OverlayNode> =>
  fc
    .record({
      fabric: fc.constantFrom("none", "same", "other"),
      vtep: fc.boolean(),
      // Each node's own MAC (two VTEPs sharing one are a misconfiguration the full delta itself
      // cannot key: planOverlayDelta then sets their FDB entries at every change).
      mac: fc.constantFrom(`66:00:00:00:00:1${i}`, `66:00:00:00:00:2${i}`),
    })
    .map(({ fabric, vtep, mac }) => ({
      name,
      ...(fabric === "none"
        ? {}
        : { ipv4Address: fabric === "same" ? `10.0.1.${11 + i}/24` : `10.0.2.${11 + i}/24` }),
      ...(vtep ? { vxlanV4: { address: `10.244.${200 + i}.1`, mac } } : {}),
    }));

// Blocks of two pools (10.244/16 and 10.245/16): /26s at a few places, so claims collide.
const arbBlock = fc
  .record({
    pool: fc.constantFrom(244, 245),
    third: fc.integer({ min: 0, max: 2 }),
    fourth: fc.constantFrom(0, 64),
    node: fc.constantFrom(...NAMES),
  })
  .map((b) => ({ cidr: `10.${b.pool}.${b.third}.${b.fourth}/26`, node: b.node }));

const arbWorkload = fc
  .record({
    third: fc.integer({ min: 0, max: 2 }),
    host: fc.integer({ min: 1, max: 70 }),
    node: fc.constantFrom(...NAMES),
  })
  .map((w) => ({ address: `10.244.${w.third}.${w.host}`, node: w.node }));

const arbCase = fc.record({
  nodes: fc.tuple(...NAMES.map((n, i) => arbNode(n, i))),
  modes: fc.tuple(
    fc.constantFrom("Always", "CrossSubnet", "Never"),
    fc.constantFrom("Always", "CrossSubnet", "Never"),
  ),
  blocks: fc.array(arbBlock, { maxLength: 6 }),
  added: fc.array(arbBlock, { minLength: 1, maxLength: 3 }),
  workloads: fc.array(arbWorkload, { maxLength: 3 }),
});

const sorted = (xs: unknown[]) => xs.map((x) => JSON.stringify(x)).sort();

describe("addBlocks() against the full render (property)", () => {
  it("refuses one CIDR claimed by two nodes among the added blocks (found by this property, seed -1406043381)", () => {
    const base: OverlayInput = {
      node: "a",
      nodes: [
        {
          name: "a",
          ipv4Address: "10.0.1.11/24",
          vxlanV4: { address: "10.244.200.1", mac: "66:00:00:00:00:aa" },
        },
        {
          name: "c",
          ipv4Address: "10.0.2.13/24",
          vxlanV4: { address: "10.244.202.1", mac: "66:00:00:00:00:12" },
        },
        { name: "d" },
      ],
      pools: [{ cidr: "10.244.0.0/16", vxlanMode: "Always", ipipMode: "Never" }],
      blocks: [],
      workloads: [],
      fabric: { 4: { name: "eth0", mtu: 1500 } },
    };
    const added = [
      { cidr: "10.244.2.0/26", node: "d" },
      { cidr: "10.244.2.0/26", node: "c" },
    ];
    expect(addBlocks(renderOverlay(base), { ...base, blocks: added }, PRESENT, new Set())).toBe(
      undefined,
    );
  });

  it("refuses or agrees with the full render, state and delta", () => {
    let agreed = 0;
    fc.assert(
      fc.property(arbCase, (c) => {
        // This node ("a") always has what its device needs; the others may not.
        const nodes = c.nodes.map((n) =>
          n.name === "a"
            ? {
                ...n,
                ipv4Address: "10.0.1.11/24",
                vxlanV4: { address: "10.244.200.1", mac: "66:00:00:00:00:aa" },
              }
            : n,
        );
        const base: OverlayInput = {
          node: "a",
          nodes,
          pools: [
            { cidr: "10.244.0.0/16", vxlanMode: c.modes[0] as "Always", ipipMode: "Never" },
            { cidr: "10.245.0.0/16", vxlanMode: c.modes[1] as "Always", ipipMode: "Never" },
          ],
          blocks: c.blocks,
          workloads: c.workloads,
          fabric: { 4: { name: "eth0", mtu: 1500 } },
        };
        // The fast path never adds this node's own blocks incrementally.
        const added = c.added.filter((b) => b.node !== "a");
        const before = renderOverlay(base);
        const after = renderOverlay({ ...base, blocks: [...base.blocks, ...added] });
        const owners = new Set(["a", ...added.map((b) => b.node)]);
        const r = addBlocks(
          before,
          { ...base, nodes: nodes.filter((n) => owners.has(n.name)), blocks: added, workloads: [] },
          PRESENT,
          new Set(c.blocks.map((b) => b.cidr)),
        );
        if (r === undefined) return;
        agreed++;
        expect(sorted(r.state.routes)).toEqual(sorted(after.routes));
        expect(sorted(r.state.neighbours)).toEqual(sorted(after.neighbours));
        expect(sorted(r.state.fdb)).toEqual(sorted(after.fdb));
        const d = planOverlayDelta(before, after, PRESENT);
        for (const k of [
          "setRoutes",
          "setNeighbours",
          "setFdb",
          "removeRoutes",
          "removeNeighbours",
          "removeFdb",
        ] as const)
          expect(sorted(r.delta[k])).toEqual(sorted(d[k]));
      }),
      { numRuns: 2000 },
    );
    // The property is not vacuous: most cases are simple additions it takes.
    expect(agreed).toBeGreaterThan(500);
  });
});
