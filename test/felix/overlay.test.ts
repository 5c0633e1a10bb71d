// The overlay's render and plan (pure): VXLAN per family, IP-in-IP, CrossSubnet's decision from
// the Nodes' prefixes, MTUs, and the ip/bridge requests planned against a kernel read back as
// `ip -j` / `bridge -j` print it. IP-in-IP is proven here (the machine's kernel has no ipip).
import { describe, expect, it } from "vitest";
import {
  createRequests,
  type OverlayInput,
  type OverlayKernel,
  overlayMtus,
  planOverlay,
  renderOverlay,
} from "../../src/felix/overlay.js";

const MAC = { a: "66:00:00:00:00:0a", b: "66:00:00:00:00:0b", c: "66:00:00:00:00:0c" };

function input(
  mode: { vxlan?: string; ipip?: string },
  extra: Partial<OverlayInput> = {},
): OverlayInput {
  const vx = (address: string, mac: string) => ({ address, mac });
  return {
    node: "a",
    nodes: [
      {
        name: "a",
        ipv4Address: "10.0.1.11/24",
        vxlanV4: vx("10.244.0.1", MAC.a),
        ipipAddress: "10.244.0.2",
      },
      {
        name: "b",
        ipv4Address: "10.0.1.12/24",
        vxlanV4: vx("10.244.1.1", MAC.b),
        ipipAddress: "10.244.1.2",
      },
      {
        name: "c",
        ipv4Address: "10.0.2.13/24",
        vxlanV4: vx("10.244.2.1", MAC.c),
        ipipAddress: "10.244.2.2",
      },
    ],
    pools: [
      {
        name: "p",
        cidr: "10.244.0.0/16",
        vxlanMode: (mode.vxlan ?? "Never") as "Never",
        ipipMode: (mode.ipip ?? "Never") as "Never",
      },
    ],
    blocks: [
      { cidr: "10.244.0.0/26", node: "a" },
      { cidr: "10.244.1.0/26", node: "b" },
      { cidr: "10.244.2.0/26", node: "c" },
    ],
    fabric: { 4: { name: "eth0", mtu: 1500 } },
    ...extra,
  };
}

const via = (o: ReturnType<typeof renderOverlay>) =>
  o.routes.map(
    (r) =>
      `${r.dst} ${r.nexthops.map((n) => `${n.gateway} ${n.dev ?? "-"}${n.onlink ? " onlink" : ""}`).join()}`,
  );

describe("renderOverlay()", () => {
  it("vxlanMode Always: the device (VNI 4096, UDP 4789, the node's address, MAC and fabric parent), and per remote block a route via its tunnel address onlink, a permanent neighbour and an FDB entry", () => {
    const o = renderOverlay(input({ vxlan: "Always" }));
    expect(o.devices).toEqual([
      {
        kind: "vxlan",
        name: "vxlan.ocelot",
        family: 4,
        mtu: 1450,
        address: "10.244.0.1/32",
        vni: 4096,
        port: 4789,
        local: "10.0.1.11",
        parent: "eth0",
        mac: MAC.a,
      },
    ]);
    expect(via(o)).toEqual([
      "10.244.1.0/26 10.244.1.1 vxlan.ocelot onlink",
      "10.244.2.0/26 10.244.2.1 vxlan.ocelot onlink",
    ]);
    expect(o.routes.every((r) => r.protocol === 202)).toBe(true);
    expect(o.neighbours).toEqual([
      { dev: "vxlan.ocelot", dst: "10.244.1.1", lladdr: MAC.b },
      { dev: "vxlan.ocelot", dst: "10.244.2.1", lladdr: MAC.c },
    ]);
    expect(o.fdb).toEqual([
      { dev: "vxlan.ocelot", mac: MAC.b, dst: "10.0.1.12" },
      { dev: "vxlan.ocelot", mac: MAC.c, dst: "10.0.2.13" },
    ]);
    expect(o.podMtu).toBe(1450);
  });

  it("CrossSubnet: natively to the node in this node's subnet, through the tunnel to the other; follows a Node's address change", () => {
    const o = renderOverlay(input({ vxlan: "CrossSubnet" }));
    expect(via(o)).toEqual([
      "10.244.1.0/26 10.0.1.12 -",
      "10.244.2.0/26 10.244.2.1 vxlan.ocelot onlink",
    ]);
    expect(o.neighbours.map((n) => n.dst)).toEqual(["10.244.2.1"]);
    const moved = input({ vxlan: "CrossSubnet" });
    (moved.nodes[1] as { ipv4Address: string }).ipv4Address = "10.0.3.12/24";
    expect(via(renderOverlay(moved))).toEqual([
      "10.244.1.0/26 10.244.1.1 vxlan.ocelot onlink",
      "10.244.2.0/26 10.244.2.1 vxlan.ocelot onlink",
    ]);
  });

  it("ipipMode Always: tunl0 with the IP-in-IP address, remote blocks via the node's own address dev tunl0 onlink; CrossSubnet natively inside the subnet", () => {
    const o = renderOverlay(input({ ipip: "Always" }));
    expect(o.devices).toEqual([
      { kind: "ipip", name: "tunl0", family: 4, mtu: 1480, address: "10.244.0.2/32" },
    ]);
    expect(via(o)).toEqual([
      "10.244.1.0/26 10.0.1.12 tunl0 onlink",
      "10.244.2.0/26 10.0.2.13 tunl0 onlink",
    ]);
    expect(o.neighbours).toEqual([]);
    expect(o.podMtu).toBe(1480);
    expect(via(renderOverlay(input({ ipip: "CrossSubnet" })))).toEqual([
      "10.244.1.0/26 10.0.1.12 -",
      "10.244.2.0/26 10.0.2.13 tunl0 onlink",
    ]);
  });

  it("Never: no device, no route (the speaker's job); no encapsulation, the pod MTU is the fabric's", () => {
    const o = renderOverlay(input({}));
    expect(o).toMatchObject({ devices: [], routes: [], neighbours: [], fdb: [], podMtu: 1500 });
  });

  it("waits, with a reason, for this node's and a remote node's tunnel address", () => {
    const i = input({ vxlan: "Always" });
    const [a, b] = i.nodes as unknown as [{ vxlanV4?: unknown }, { vxlanV4?: unknown }];
    delete b.vxlanV4;
    const o = renderOverlay(i);
    expect(via(o)).toEqual(["10.244.2.0/26 10.244.2.1 vxlan.ocelot onlink"]);
    expect(o.warnings).toEqual([
      'Block 10.244.1.0/26: waiting for Node "b"\'s VXLAN tunnel address',
    ]);
    delete a.vxlanV4;
    const none = renderOverlay(i);
    expect(none.devices).toEqual([]);
    expect(none.routes).toEqual([]);
    expect(none.warnings).toContain("VXLAN over IPv4: waiting for this node's tunnel address");
  });

  it("IPv6: vxlan-v6.ocelot (VNI 6096) over the IPv6 fabric, 70 bytes of overhead", () => {
    const o = renderOverlay({
      node: "a",
      nodes: [
        { name: "a", ipv6Address: "fd31:1::11/64", vxlanV6: { address: "fd32::1", mac: MAC.a } },
        { name: "c", ipv6Address: "fd31:2::13/64", vxlanV6: { address: "fd32::41", mac: MAC.c } },
      ],
      pools: [{ cidr: "fd32::/48", vxlanMode: "CrossSubnet", ipipMode: "Never" }],
      blocks: [{ cidr: "fd32::40/122", node: "c" }],
      fabric: { 6: { name: "eth0", mtu: 9000 } },
    });
    expect(o.devices[0]).toMatchObject({
      name: "vxlan-v6.ocelot",
      vni: 6096,
      mtu: 8930,
      local: "fd31:1::11",
      address: "fd32::1/128",
    });
    expect(via(o)).toEqual(["fd32::40/122 fd32::41 vxlan-v6.ocelot onlink"]);
    expect(o.fdb).toEqual([{ dev: "vxlan-v6.ocelot", mac: MAC.c, dst: "fd31:2::13" }]);
    expect(o.podMtu).toBe(8930);
  });
});

describe("overlayMtus()", () => {
  it("fabric minus 50 (VXLAN/IPv4), 70 (VXLAN/IPv6), 20 (IP-in-IP); the pod gets the smallest in use; an override wins", () => {
    const f = { 4: { name: "eth0", mtu: 1500 }, 6: { name: "eth0", mtu: 1500 } };
    expect(overlayMtus(f, { vxlan4: true, vxlan6: true, ipip: false })).toEqual({
      vxlan4: 1450,
      vxlan6: 1430,
      ipip: 1480,
      pod: 1430,
    });
    expect(overlayMtus(f, { vxlan4: false, vxlan6: false, ipip: true }).pod).toBe(1480);
    expect(overlayMtus(f, { vxlan4: true, vxlan6: false, ipip: false }, 1400)).toEqual({
      vxlan4: 1400,
      vxlan6: 1400,
      ipip: 1400,
      pod: 1400,
    });
    expect(overlayMtus({}, { vxlan4: true, vxlan6: false, ipip: false }).pod).toBe(1450);
  });
});

const empty: OverlayKernel = { links: [], neighbours: [], fdb: [] };
const lines = (reqs: { tool: string; args: string[] }[]) =>
  reqs.map((r) => `${r.tool} ${r.args.join(" ")}`);

describe("planOverlay()", () => {
  it("from nothing: creates the VXLAN device (nolearning, on the fabric parent), sets MAC, MTU, up, its address, neighbours under protocol 202 and FDB entries", () => {
    const plan = planOverlay(renderOverlay(input({ vxlan: "Always" })), empty);
    expect(plan.create.map((c) => lines(c.requests))).toEqual([
      [
        "ip link add vxlan.ocelot type vxlan id 4096 local 10.0.1.11 dstport 4789 nolearning dev eth0",
      ],
    ]);
    expect(lines(plan.set)).toEqual([
      "ip link set dev vxlan.ocelot address 66:00:00:00:00:0a mtu 1450 up",
      "ip addr add 10.244.0.1/32 dev vxlan.ocelot",
      "ip neigh replace 10.244.1.1 lladdr 66:00:00:00:00:0b dev vxlan.ocelot nud permanent protocol 202",
      "ip neigh replace 10.244.2.1 lladdr 66:00:00:00:00:0c dev vxlan.ocelot nud permanent protocol 202",
      "bridge fdb replace 66:00:00:00:00:0b dev vxlan.ocelot dst 10.0.1.12 self permanent",
      "bridge fdb replace 66:00:00:00:00:0c dev vxlan.ocelot dst 10.0.2.13 self permanent",
    ]);
    expect(plan.remove).toEqual([]);
  });

  it("IP-in-IP: `ip link add name tunl0 type ipip`, then MTU, up and the tunnel address", () => {
    const desired = renderOverlay(input({ ipip: "Always" }));
    expect(createRequests(desired.devices[0] as never)).toEqual([
      { tool: "ip", args: ["link", "add", "name", "tunl0", "type", "ipip"] },
    ]);
    const plan = planOverlay(desired, empty);
    expect(lines(plan.set)).toEqual([
      "ip link set dev tunl0 mtu 1480 up",
      "ip addr add 10.244.0.2/32 dev tunl0",
    ]);
    // The ipip module's tunl0 exists already (as where the module is loaded): no create.
    const have: OverlayKernel = {
      links: [
        {
          ifname: "tunl0@NONE",
          mtu: 1480,
          flags: ["NOARP", "UP"],
          linkinfo: { info_kind: "ipip" },
          addr_info: [{ family: "inet", local: "10.244.0.2", prefixlen: 32, scope: "global" }],
        },
      ],
      neighbours: [],
      fdb: [],
    };
    expect(planOverlay(desired, have)).toMatchObject({
      create: [],
      set: [],
      remove: [],
      changes: [],
    });
    // Not wanted any more: tunl0 cannot be deleted, it loses its address and goes down.
    expect(lines(planOverlay(renderOverlay(input({})), have).remove)).toEqual([
      "ip addr del 10.244.0.2/32 dev tunl0",
      "ip link set dev tunl0 down",
    ]);
  });

  it("converged: nothing to do; drift (neighbour gone, FDB to the wrong VTEP, MTU changed) repaired; stale entries and a device nothing wants removed", () => {
    const desired = renderOverlay(input({ vxlan: "Always" }));
    const link = {
      ifname: "vxlan.ocelot",
      mtu: 1450,
      address: MAC.a,
      flags: ["BROADCAST", "UP", "LOWER_UP"],
      linkinfo: {
        info_kind: "vxlan",
        info_data: { id: 4096, local: "10.0.1.11", port: 4789, learning: false, link: "eth0" },
      },
      addr_info: [
        { family: "inet", local: "10.244.0.1", prefixlen: 32, scope: "global" },
        { family: "inet6", local: "fe80::1", prefixlen: 64, scope: "link" },
      ],
    };
    const kernel: OverlayKernel = {
      links: [link],
      neighbours: [
        {
          dev: "vxlan.ocelot",
          dst: "10.244.1.1",
          lladdr: MAC.b,
          state: ["PERMANENT"],
          protocol: "202",
        },
        {
          dev: "vxlan.ocelot",
          dst: "10.244.2.1",
          lladdr: MAC.c,
          state: ["PERMANENT"],
          protocol: "202",
        },
        { dev: "eth0", dst: "10.0.1.1", lladdr: "02:00:00:00:00:01", state: ["REACHABLE"] },
      ],
      fdb: [
        {
          ifname: "vxlan.ocelot",
          mac: MAC.b,
          dst: "10.0.1.12",
          state: "permanent",
          flags: ["self"],
        },
        {
          ifname: "vxlan.ocelot",
          mac: MAC.c,
          dst: "10.0.2.13",
          state: "permanent",
          flags: ["self"],
        },
      ],
    };
    expect(planOverlay(desired, kernel)).toMatchObject({ create: [], set: [], remove: [] });
    const drifted: OverlayKernel = {
      links: [{ ...link, mtu: 1500 }],
      neighbours: [
        kernel.neighbours[0] as never,
        {
          dev: "vxlan.ocelot",
          dst: "10.244.9.1",
          lladdr: "66:00:00:00:00:99",
          state: ["PERMANENT"],
        },
      ],
      fdb: [
        { ifname: "vxlan.ocelot", mac: MAC.b, dst: "10.0.9.9", state: "permanent" },
        kernel.fdb[1] as never,
      ],
    };
    const plan = planOverlay(desired, drifted);
    expect(lines(plan.set)).toEqual([
      "ip link set dev vxlan.ocelot mtu 1450",
      "ip neigh replace 10.244.2.1 lladdr 66:00:00:00:00:0c dev vxlan.ocelot nud permanent protocol 202",
      "bridge fdb replace 66:00:00:00:00:0b dev vxlan.ocelot dst 10.0.1.12 self permanent",
    ]);
    expect(lines(plan.remove)).toEqual(["ip neigh del 10.244.9.1 dev vxlan.ocelot"]);
    // A device made by someone else with another VNI is made again; with Never, ours goes.
    const wrongVni = {
      ...kernel,
      links: [
        {
          ...link,
          linkinfo: { info_kind: "vxlan", info_data: { ...link.linkinfo.info_data, id: 1 } },
        },
      ],
    };
    expect(planOverlay(desired, wrongVni).changes[0]).toBe("link vxlan.ocelot re-created (VNI 1)");
    expect(lines(planOverlay(renderOverlay(input({})), kernel).remove)).toEqual([
      "ip link del vxlan.ocelot",
    ]);
  });
});
