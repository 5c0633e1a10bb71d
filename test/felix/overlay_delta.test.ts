// The overlay's fast path (pure): the delta between the overlay last applied and the one rendered
// now (a new block, a block gone, a node's VTEP MAC or fabric address changed, a pool's mode),
// and the neighbour / FDB netlink requests it makes, byte for byte.
import { describe, expect, it } from "vitest";
import { borrowedAddresses, type OverlayInput, renderOverlay } from "../../src/felix/overlay.js";
import { addBlocks, isEmptyDelta, planOverlayDelta } from "../../src/felix/overlay_delta.js";
import { deltaNeighOps } from "../../src/felix/overlay_fast.js";
import {
  AF_BRIDGE,
  forEachMessage,
  MessageWriter,
  macBytes,
  NDA_DST,
  NDA_LLADDR,
  NDA_PROTOCOL,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_REPLACE,
  NTF_SELF,
  NUD_PERMANENT,
  RTM_DELNEIGH,
  RTM_NEWNEIGH,
  writeNeigh,
} from "../../src/fib/rtnetlink.js";

const MAC = { a: "66:00:00:00:00:0a", b: "66:00:00:00:00:0b", c: "66:00:00:00:00:0c" };

function input(extra: Partial<OverlayInput> = {}, vxlanMode = "Always"): OverlayInput {
  return {
    node: "a",
    nodes: [
      { name: "a", ipv4Address: "10.0.1.11/24", vxlanV4: { address: "10.244.0.1", mac: MAC.a } },
      { name: "b", ipv4Address: "10.0.1.12/24", vxlanV4: { address: "10.244.1.1", mac: MAC.b } },
      { name: "c", ipv4Address: "10.0.2.13/24", vxlanV4: { address: "10.244.2.1", mac: MAC.c } },
    ],
    pools: [{ cidr: "10.244.0.0/16", vxlanMode: vxlanMode as "Always", ipipMode: "Never" }],
    blocks: [
      { cidr: "10.244.0.0/26", node: "a" },
      { cidr: "10.244.1.0/26", node: "b" },
    ],
    fabric: { 4: { name: "eth0", mtu: 1500 } },
    ...extra,
  };
}

const PRESENT = new Set(["vxlan.ocelot"]);
const dsts = (rs: { dst: string }[]) => rs.map((r) => r.dst);

describe("planOverlayDelta()", () => {
  it("a new node's block: its route, the node's neighbour and FDB entry, nothing else", () => {
    const before = renderOverlay(input());
    const blocks = [...input().blocks, { cidr: "10.244.2.0/26", node: "c" }];
    const d = planOverlayDelta(before, renderOverlay(input({ blocks })), PRESENT);
    expect(d.devicesChanged).toBe(false);
    expect(dsts(d.setRoutes)).toEqual(["10.244.2.0/26"]);
    expect(d.setRoutes[0]?.nexthops).toEqual([
      { gateway: "10.244.2.1", dev: "vxlan.ocelot", onlink: true },
    ]);
    expect(d.setNeighbours).toEqual([{ dev: "vxlan.ocelot", dst: "10.244.2.1", lladdr: MAC.c }]);
    expect(d.setFdb).toEqual([{ dev: "vxlan.ocelot", mac: MAC.c, dst: "10.0.2.13" }]);
    expect(d.removeRoutes).toEqual([]);
    expect(d.removeNeighbours).toEqual([]);
    expect(d.removeFdb).toEqual([]);
  });

  it("a second block of a node already routed: only the route", () => {
    const before = renderOverlay(input());
    const blocks = [...input().blocks, { cidr: "10.244.1.64/26", node: "b" }];
    const d = planOverlayDelta(before, renderOverlay(input({ blocks })), PRESENT);
    expect(dsts(d.setRoutes)).toEqual(["10.244.1.64/26"]);
    expect(d.setNeighbours).toEqual([]);
    expect(d.setFdb).toEqual([]);
  });

  it("a node's last block gone: its route, then its neighbour and FDB entry removed", () => {
    const d = planOverlayDelta(
      renderOverlay(input()),
      renderOverlay(input({ blocks: [{ cidr: "10.244.0.0/26", node: "a" }] })),
      PRESENT,
    );
    expect(dsts(d.removeRoutes)).toEqual(["10.244.1.0/26"]);
    expect(d.removeNeighbours).toEqual([{ dev: "vxlan.ocelot", dst: "10.244.1.1", lladdr: MAC.b }]);
    expect(d.removeFdb).toEqual([{ dev: "vxlan.ocelot", mac: MAC.b, dst: "10.0.1.12" }]);
    expect(d.setRoutes).toEqual([]);
  });

  it("a block moved to another node: the route replaced (set), nothing removed", () => {
    const blocks = [
      { cidr: "10.244.0.0/26", node: "a" },
      { cidr: "10.244.1.0/26", node: "c" },
    ];
    const d = planOverlayDelta(renderOverlay(input()), renderOverlay(input({ blocks })), PRESENT);
    expect(d.setRoutes.map((r) => r.nexthops[0]?.gateway)).toEqual(["10.244.2.1"]);
    expect(d.removeRoutes).toEqual([]);
    expect(d.removeNeighbours.map((n) => n.dst)).toEqual(["10.244.1.1"]);
    expect(d.setNeighbours.map((n) => n.dst)).toEqual(["10.244.2.1"]);
  });

  it("a node's new VTEP MAC and fabric address: its neighbour and FDB entry set again", () => {
    const nodes = input().nodes.map((n) =>
      n.name === "b"
        ? {
            ...n,
            ipv4Address: "10.0.1.99/24",
            vxlanV4: { address: "10.244.1.1", mac: "66:00:00:00:00:bb" },
          }
        : n,
    );
    const d = planOverlayDelta(renderOverlay(input()), renderOverlay(input({ nodes })), PRESENT);
    expect(d.setNeighbours).toEqual([
      { dev: "vxlan.ocelot", dst: "10.244.1.1", lladdr: "66:00:00:00:00:bb" },
    ]);
    expect(d.setFdb).toEqual([{ dev: "vxlan.ocelot", mac: "66:00:00:00:00:bb", dst: "10.0.1.99" }]);
    expect(d.removeFdb).toEqual([{ dev: "vxlan.ocelot", mac: MAC.b, dst: "10.0.1.12" }]);
    expect(d.setRoutes).toEqual([]);
  });

  it("the same state: an empty delta", () => {
    const d = planOverlayDelta(renderOverlay(input()), renderOverlay(input()), PRESENT);
    expect(isEmptyDelta(d)).toBe(true);
    expect(d.devicesChanged).toBe(false);
  });

  it("a pool's mode or the MTU changed: devicesChanged (the full pass's)", () => {
    const before = renderOverlay(input());
    expect(
      planOverlayDelta(before, renderOverlay(input({}, "Never")), PRESENT).devicesChanged,
    ).toBe(true);
    expect(
      planOverlayDelta(before, renderOverlay(input({ mtu: 1400 })), PRESENT).devicesChanged,
    ).toBe(true);
  });

  it("entries through a device that does not exist wait for the full pass", () => {
    const blocks = [...input().blocks, { cidr: "10.244.2.0/26", node: "c" }];
    const d = planOverlayDelta(renderOverlay(input()), renderOverlay(input({ blocks })), new Set());
    expect(isEmptyDelta(d)).toBe(true);
  });
});

describe("borrowed addresses", () => {
  const blocks = [
    { cidr: "10.244.0.0/26", node: "a" },
    { cidr: "10.244.1.0/26", node: "b" },
    { cidr: "10.244.2.0/26", node: "c" },
  ];
  it("borrowedAddresses(): a workload outside its own node's blocks, as a host prefix with its node", () => {
    expect(
      borrowedAddresses(
        [
          { address: "10.244.1.5", node: "b" }, // b's own block
          { address: "10.244.1.9", node: "c" }, // borrowed by c from b
          { address: "10.244.0.7", node: "b" }, // borrowed by b from a (this node)
          { address: "fd32::1:5", node: "c" }, // no IPv6 block on c
        ],
        blocks,
      ),
    ).toEqual([
      { cidr: "10.244.0.7/32", node: "b" },
      { cidr: "10.244.1.9/32", node: "c" },
      { cidr: "fd32::1:5/128", node: "c" },
    ]);
  });

  it("renderOverlay(): a /32 through the borrowing node's tunnel (here too for this node's own block, more specific than its blackhole); CrossSubnet natively inside the subnet; this node's own workloads none", () => {
    const workloads = [
      { address: "10.244.1.9", node: "c" },
      { address: "10.244.0.7", node: "b" },
      { address: "10.244.1.10", node: "a" },
    ];
    const o = renderOverlay(input({ blocks, workloads }));
    const routes = o.routes.map(
      (r) => `${r.dst} via ${r.nexthops[0]?.gateway} ${r.nexthops[0]?.dev ?? "-"}`,
    );
    expect(routes).toEqual([
      "10.244.1.0/26 via 10.244.1.1 vxlan.ocelot",
      "10.244.2.0/26 via 10.244.2.1 vxlan.ocelot",
      "10.244.0.7/32 via 10.244.1.1 vxlan.ocelot",
      "10.244.1.9/32 via 10.244.2.1 vxlan.ocelot",
    ]);
    const cross = renderOverlay(input({ blocks, workloads }, "CrossSubnet"));
    expect(cross.routes.find((r) => r.dst === "10.244.0.7/32")?.nexthops).toEqual([
      { gateway: "10.0.1.12" },
    ]);
    // IP-in-IP: the /32 via the borrowing node's own address dev tunl0 onlink.
    const ipip = renderOverlay(
      input({
        blocks,
        workloads,
        nodes: input().nodes.map((n, i) => ({ ...n, ipipAddress: `10.244.${i}.2` })),
        pools: [{ cidr: "10.244.0.0/16", vxlanMode: "Never", ipipMode: "Always" }],
      }),
    );
    expect(ipip.routes.find((r) => r.dst === "10.244.1.9/32")?.nexthops).toEqual([
      { gateway: "10.0.2.13", dev: "tunl0", onlink: true },
    ]);
    // A pod that moved its borrowed address: the fast path's delta is the /32 alone.
    const moved = workloads.map((w) => (w.address === "10.244.1.9" ? { ...w, node: "b" } : w));
    const d = planOverlayDelta(o, renderOverlay(input({ blocks, workloads: moved })), PRESENT);
    expect(d.setRoutes.map((r) => `${r.dst} via ${r.nexthops[0]?.gateway}`)).toEqual([]);
    expect(d.removeRoutes.map((r) => r.dst)).toEqual(["10.244.1.9/32"]);
  });
});

interface Decoded {
  type: number;
  flags: number;
  family: number;
  ifindex: number;
  state: number;
  ntf: number;
  attrs: Map<number, Buffer>;
}

function decodeNeighMessages(buf: Buffer): Decoded[] {
  const out: Decoded[] = [];
  forEachMessage(buf, (m) => {
    const b = m.buf;
    const attrs = new Map<number, Buffer>();
    let a = m.off + 12;
    while (a + 4 <= m.end) {
      const l = b.readUInt16LE(a);
      attrs.set(b.readUInt16LE(a + 2), Buffer.from(b.subarray(a + 4, a + l)));
      a += (l + 3) & ~3;
    }
    out.push({
      type: m.type,
      flags: m.flags,
      family: b[m.off] as number,
      ifindex: b.readInt32LE(m.off + 4),
      state: b.readUInt16LE(m.off + 8),
      ntf: b[m.off + 10] as number,
      attrs,
    });
  });
  return out;
}

describe("writeNeigh() and the fast path's requests", () => {
  it("an IPv4 neighbour, byte for byte: ndmsg, NDA_DST, NDA_LLADDR, NDA_PROTOCOL", () => {
    const w = new MessageWriter(16);
    writeNeigh(w, RTM_NEWNEIGH, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, 9, {
      family: 4,
      ifindex: 5,
      state: NUD_PERMANENT,
      flags: 0,
      dst: Uint8Array.of(10, 244, 2, 1),
      lladdr: macBytes(MAC.c),
      protocol: 202,
    });
    const hex = (s: string) => Buffer.from(s.replace(/\s+|#[^\n]*/g, ""), "hex");
    expect(Buffer.from(w.buf.subarray(0, w.len))).toEqual(
      hex(`
        38000000 1c00 0505 09000000 00000000 # nlmsghdr: len 56, RTM_NEWNEIGH, REQUEST|ACK|REPLACE|CREATE, seq 9
        02 00 0000 05000000 8000 00 00       # ndmsg: AF_INET, ifindex 5, NUD_PERMANENT, flags 0, type 0
        0800 0100 0af40201                   # NDA_DST 10.244.2.1
        0a00 0200 66000000000c 0000          # NDA_LLADDR (padded)
        0500 0c00 ca 000000                  # NDA_PROTOCOL 202 (padded)
      `),
    );
  });

  it("the ops of a delta: neighbour and FDB (AF_BRIDGE, NTF_SELF, MAC + fabric dst) set before the routes, removed after", () => {
    const blocks = [...input().blocks, { cidr: "10.244.2.0/26", node: "c" }];
    const d = planOverlayDelta(renderOverlay(input()), renderOverlay(input({ blocks })), PRESENT);
    const ops = deltaNeighOps(d);
    expect(ops.after).toEqual([]);
    const w = new MessageWriter();
    for (const [i, o] of ops.before.entries())
      writeNeigh(w, o.op === "set" ? RTM_NEWNEIGH : RTM_DELNEIGH, NLM_F_ACK, i, {
        ...o.req,
        ifindex: 7,
      });
    const [neigh, fdb] = decodeNeighMessages(Buffer.from(w.buf.subarray(0, w.len)));
    expect(neigh?.family).toBe(2);
    expect(neigh?.state).toBe(NUD_PERMANENT);
    expect(neigh?.attrs.get(NDA_DST)).toEqual(Buffer.from([10, 244, 2, 1]));
    expect(neigh?.attrs.get(NDA_LLADDR)).toEqual(Buffer.from(macBytes(MAC.c)));
    expect(neigh?.attrs.get(NDA_PROTOCOL)).toEqual(Buffer.from([202]));
    expect(fdb?.family).toBe(AF_BRIDGE);
    expect(fdb?.ntf).toBe(NTF_SELF);
    expect(fdb?.state).toBe(NUD_PERMANENT);
    expect(fdb?.attrs.get(NDA_LLADDR)).toEqual(Buffer.from(macBytes(MAC.c)));
    expect(fdb?.attrs.get(NDA_DST)).toEqual(Buffer.from([10, 0, 2, 13]));
    const gone = deltaNeighOps(
      planOverlayDelta(renderOverlay(input({ blocks })), renderOverlay(input()), PRESENT),
    );
    expect(gone.before).toEqual([]);
    expect(gone.after.map((o) => `${o.op} ${o.what}`)).toEqual([
      "del neighbour 10.244.2.1 66:00:00:00:00:0c on vxlan.ocelot",
      "del fdb 66:00:00:00:00:0c dst 10.0.2.13 on vxlan.ocelot",
    ]);
  });

  it("a malformed MAC is refused by name", () => {
    expect(() => macBytes("66:00:00:00:0c")).toThrow(/Invalid MAC address: "66:00:00:00:0c"/);
  });
});

describe("addBlocks() (the incremental render)", () => {
  /** The CIDRs of input()'s blocks: claimed before any addition. */
  const CLAIMED = new Set(input().blocks.map((b) => b.cidr));
  /** The same blocks added by a full render and the delta planOverlayDelta makes. */
  const full = (base: OverlayInput, added: OverlayInput["blocks"]) => {
    const before = renderOverlay(base);
    const after = renderOverlay({ ...base, blocks: [...base.blocks, ...added] });
    return { before, after, delta: planOverlayDelta(before, after, PRESENT) };
  };
  const sorted = <T>(xs: T[]) => [...xs].map((x) => JSON.stringify(x)).sort();
  const only = (base: OverlayInput, added: OverlayInput["blocks"]) => ({
    ...base,
    nodes: base.nodes.filter((n) => n.name === base.node || added.some((b) => b.node === n.name)),
    blocks: added,
    workloads: [],
  });

  it("a new node's block: the same state and delta as the full render, from the block alone", () => {
    const added = [{ cidr: "10.244.2.0/26", node: "c" }];
    const f = full(input(), added);
    const r = addBlocks(f.before, only(input(), added), PRESENT, CLAIMED);
    expect(r).toBeDefined();
    expect(sorted(r?.state.routes ?? [])).toEqual(sorted(f.after.routes));
    expect(sorted(r?.state.neighbours ?? [])).toEqual(sorted(f.after.neighbours));
    expect(sorted(r?.state.fdb ?? [])).toEqual(sorted(f.after.fdb));
    expect(r?.delta).toEqual(f.delta);
  });

  it("a second block of a known node: its route only (the VTEP's entries are there)", () => {
    const added = [{ cidr: "10.244.1.64/26", node: "b" }];
    const f = full(input(), added);
    const r = addBlocks(f.before, only(input(), added), PRESENT, CLAIMED);
    expect(dsts(r?.delta.setRoutes ?? [])).toEqual(["10.244.1.64/26"]);
    expect(r?.delta.setNeighbours).toEqual([]);
    expect(r?.delta.setFdb).toEqual([]);
    expect(r?.delta).toEqual(f.delta);
  });

  it("a block already applied as the same route: nothing to do", () => {
    const before = renderOverlay(input());
    const r = addBlocks(
      before,
      only(input(), [{ cidr: "10.244.1.0/26", node: "b" }]),
      PRESENT,
      new Set(["10.244.0.0/26"]),
    );
    expect(r && isEmptyDelta(r.delta)).toBe(true);
  });

  it("refuses (a full render decides) what it cannot add alone", () => {
    const before = renderOverlay(input());
    // The same block routed to another node.
    expect(
      addBlocks(before, only(input(), [{ cidr: "10.244.1.0/26", node: "c" }]), PRESENT, new Set()),
    ).toBeUndefined();
    // A CIDR claimed before, even by a node it could not route (no fabric address): the full
    // render lets the first claim win, so no route at all.
    const d = { name: "d" };
    const claimedByD = renderOverlay(
      input({ nodes: [...input().nodes, d], blocks: [{ cidr: "10.244.3.0/26", node: "d" }] }),
    );
    expect(claimedByD.routes).toEqual([]);
    expect(
      addBlocks(
        claimedByD,
        only(input(), [{ cidr: "10.244.3.0/26", node: "b" }]),
        PRESENT,
        new Set(["10.244.3.0/26"]),
      ),
    ).toBeUndefined();
    // A VTEP whose MAC differs from the applied entries.
    const nodes = input().nodes.map((n) =>
      n.name === "b" ? { ...n, vxlanV4: { address: "10.244.1.1", mac: MAC.c } } : n,
    );
    expect(
      addBlocks(
        before,
        only(input({ nodes }), [{ cidr: "10.244.1.64/26", node: "b" }]),
        PRESENT,
        CLAIMED,
      ),
    ).toBeUndefined();
    // The devices differ (another MTU).
    expect(
      addBlocks(
        before,
        only(input({ mtu: 1400 }), [{ cidr: "10.244.2.0/26", node: "c" }]),
        PRESENT,
        CLAIMED,
      ),
    ).toBeUndefined();
    // A borrowed address's /32 route applied inside the new block: the full render drops it.
    const workloads = [{ address: "10.244.2.5", node: "b" }];
    const withBorrowed = renderOverlay(input({ workloads }));
    expect(dsts(withBorrowed.routes)).toContain("10.244.2.5/32");
    expect(
      addBlocks(
        withBorrowed,
        only(input({ workloads }), [{ cidr: "10.244.2.0/26", node: "c" }]),
        PRESENT,
        CLAIMED,
      ),
    ).toBeUndefined();
  });
});
