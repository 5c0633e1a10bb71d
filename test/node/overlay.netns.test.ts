// VXLAN across two L3 subnets with no BGP anywhere: 4 nodes (2 per subnet) behind a router
// namespace that knows only the node subnets, each running the real `ocelot node run
// --networking-backend vxlan` (no speaker), a pod per node (IPv4 + IPv6) from the real CNI
// plugin. vxlanMode Always: every pod reaches every pod and sees the sender's own address, the
// Nodes carry their tunnel addresses and VTEP MACs, each node has its VXLAN devices, permanent
// neighbours and FDB entries (read back with ip/bridge -j), a full-size DF packet crosses and
// one byte more fails with "message too long"; deleted neighbour, FDB entry and route come back.
// CrossSubnet: tshark on the router's ports sees only UDP 4789 carrying the pod addresses between
// subnets, and plain pod packets inside one. Never: cross-subnet pings fail (negative control).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResourceClient } from "../../src/api/client.js";
import type { Node } from "../../src/api/node.js";
import { kindOf } from "../../src/api/registry.js";
import { cidrContains, parseAddress, parseCidr } from "../../src/lib/ip.js";
import type { Netns } from "../helpers/netns.js";
import { skipWithReason, waitFor } from "../helpers/netns.js";
import { daemonTestsUnavailable } from "./harness.js";
import {
  blockOf,
  buildLab,
  capture,
  destroyLab,
  fdbOf,
  HOOK_MS,
  type Lab,
  type LabNode,
  labToolsMissing,
  mtuFile,
  neighOf,
  POOL4,
  POOL6,
  ping,
  routesOf,
  seenSource,
  setPools,
  waitPing,
} from "./overlay_lab.js";

const skip = skipWithReason(
  "overlay lab (VXLAN, 4 nodes, 2 subnets)",
  daemonTestsUnavailable() ?? labToolsMissing(),
);

const inPool = (pool: string, ip: string | undefined) => {
  if (!ip) return false;
  const a = parseAddress(ip);
  return cidrContains(parseCidr(pool, false), a.family, a.value);
};

describe.skipIf(skip)("overlay: VXLAN between two L3 subnets without BGP", () => {
  let lab: Lab;
  let n1: LabNode;
  let n2: LabNode;
  let n3: LabNode;
  const logs = () => lab.nodes.map((n) => `--- ${n.name}\n${n.daemon?.log}`).join("\n");
  const nodeResource = async (name: string) =>
    (await new ResourceClient(lab.store).get(
      kindOf("projectcalico.org/v3", "Node") as NonNullable<ReturnType<typeof kindOf>>,
      name,
    )) as unknown as Node;

  beforeAll(async () => {
    // Pools first (Always): each daemon assigns its tunnel addresses at its first convergence.
    lab = await buildLab(
      "ovl",
      [
        ["ovl-a1", "ovl-a2"],
        ["ovl-b1", "ovl-b2"],
      ],
      () => ["--networking-backend", "vxlan", "--resync-interval", "2s"],
      [4, 6],
      { vxlanMode: "Always" },
      (l) => {
        lab = l;
      },
    );
    [n1, n2, n3] = lab.nodes as [LabNode, LabNode, LabNode];
  }, HOOK_MS);

  afterAll(async () => {
    await destroyLab(lab);
  });

  it("vxlanMode Always with the speaker off: the Nodes carry tunnel addresses and MACs; VXLAN devices, neighbours, FDB entries and routes per remote block", async () => {
    for (const n of lab.nodes) {
      const node = await waitFor(`${n.name}'s tunnel addresses on its Node`, async () => {
        const r = await nodeResource(n.name);
        return r.spec.ipv4VXLANTunnelAddr && r.spec.ipv6VXLANTunnelAddr ? r : undefined;
      }).catch((e) => {
        throw new Error(`${(e as Error).message}\n${logs()}`);
      });
      expect(inPool(POOL4, node.spec.ipv4VXLANTunnelAddr)).toBe(true);
      expect(inPool(POOL6, node.spec.ipv6VXLANTunnelAddr)).toBe(true);
      expect(node.spec.vxlanTunnelMACAddr).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      expect(node.spec.vxlanTunnelMACAddrV6).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      // No speaker: no BGP routes, no speaker start.
      expect(n.daemon?.has("BGP: speaker started")).toBe(false);
    }
    const links = n1.ns.ipJson<
      {
        ifname: string;
        mtu: number;
        address: string;
        linkinfo: { info_data: { id: number; port: number; learning: boolean; local?: string } };
      }[]
    >("-d", "link", "show", "type", "vxlan");
    const byName = new Map(links.map((l) => [l.ifname, l]));
    const v4 = byName.get("vxlan.ocelot");
    const v6 = byName.get("vxlan-v6.ocelot");
    expect(v4?.linkinfo.info_data).toMatchObject({ id: 4096, port: 4789, learning: false });
    expect(v6?.linkinfo.info_data).toMatchObject({ id: 6096, port: 4789, learning: false });
    expect(v4?.mtu).toBe(1450);
    expect(v6?.mtu).toBe(1430);
    const me = await nodeResource(n1.name);
    expect(v4?.address).toBe(me.spec.vxlanTunnelMACAddr);
    expect(v6?.address).toBe(me.spec.vxlanTunnelMACAddrV6);
    // Every remote node: route via its tunnel address (onlink), permanent neighbour, FDB entry.
    for (const other of lab.nodes.slice(1)) {
      const r = await nodeResource(other.name);
      for (const [fam, dev, pod, tun, mac, fabric] of [
        [
          "-4",
          "vxlan.ocelot",
          other.pod4,
          r.spec.ipv4VXLANTunnelAddr,
          r.spec.vxlanTunnelMACAddr,
          other.ip4,
        ],
        [
          "-6",
          "vxlan-v6.ocelot",
          other.pod6,
          r.spec.ipv6VXLANTunnelAddr,
          r.spec.vxlanTunnelMACAddrV6,
          other.ip6,
        ],
      ] as const) {
        const block = blockOf(pod as string);
        await waitFor(`${n1.name}: route to ${block} via ${tun} dev ${dev}`, () =>
          routesOf(n1.ns, "202", fam).some(
            (x) =>
              x.dst === block && x.gateway === tun && x.dev === dev && x.flags?.includes("onlink"),
          ),
        ).catch((e) => {
          throw new Error(`${(e as Error).message}\n${logs()}`);
        });
        const nb = neighOf(n1.ns, dev).find((x) => x.dst === tun);
        expect(nb).toMatchObject({ lladdr: mac, state: ["PERMANENT"], protocol: "202" });
        expect(fdbOf(n1.ns, dev).find((x) => x.mac === mac)).toMatchObject({
          dst: fabric,
          state: "permanent",
        });
      }
    }
  });

  it("every pod pings every pod over IPv4 and IPv6, and receivers see the sender's own address", async () => {
    for (const a of lab.nodes)
      for (const b of lab.nodes) {
        if (a === b) continue;
        await waitPing(
          a.pod as Netns,
          b.pod4 as string,
          `${a.name} pod -> ${b.name} pod ${b.pod4}`,
          logs,
        );
        await waitPing(
          a.pod as Netns,
          b.pod6 as string,
          `${a.name} pod -> ${b.name} pod ${b.pod6}`,
          logs,
        );
      }
    for (const [i, a] of lab.nodes.entries()) {
      const b = lab.nodes[(i + 2) % lab.nodes.length] as LabNode; // the other subnet
      expect(await seenSource(a.pod as Netns, b.pod as Netns, b.pod4 as string)).toBe(a.pod4);
      expect(await seenSource(a.pod as Netns, b.pod as Netns, b.pod6 as string)).toBe(a.pod6);
    }
    // The node itself reaches a remote pod over the tunnel (its source: its tunnel address).
    expect(ping(n1.ns, n3.pod4 as string).ok).toBe(true);
    expect(ping(n1.ns, n3.pod6 as string).ok).toBe(true);
  });

  it("MTU: pods get the fabric MTU minus VXLAN's overhead; a full-size DF ping crosses, one byte more fails with 'message too long'", () => {
    // IPv4 and IPv6 VXLAN both in use: the pod gets the smaller (1500 - 70).
    expect(mtuFile(lab, n1)).toBe(1430);
    const eth0 = (n1.pod as Netns).ipJson<{ mtu: number }[]>("link", "show", "eth0")[0];
    expect(eth0?.mtu).toBe(1430);
    const to4 = n3.pod4 as string;
    expect(ping(n1.pod as Netns, to4, ["-M", "do", "-s", String(1430 - 28)]).ok).toBe(true);
    const big = ping(n1.pod as Netns, to4, ["-M", "do", "-s", String(1430 - 27)]);
    expect(big.ok).toBe(false);
    expect(big.out).toMatch(/message too long/i);
    const to6 = n3.pod6 as string;
    expect(ping(n1.pod as Netns, to6, ["-M", "do", "-s", String(1430 - 48)]).ok).toBe(true);
    const big6 = ping(n1.pod as Netns, to6, ["-M", "do", "-s", String(1430 - 47)]);
    expect(big6.ok).toBe(false);
    expect(big6.out).toMatch(/message too long/i);
  });

  it("a deleted neighbour, FDB entry and tunnel route are put back (within the 2 s resync)", async () => {
    const r3 = await nodeResource(n3.name);
    const tun = r3.spec.ipv4VXLANTunnelAddr as string;
    const mac = r3.spec.vxlanTunnelMACAddr as string;
    const block = blockOf(n3.pod4 as string);
    n1.ns.ip("neigh", "del", tun, "dev", "vxlan.ocelot");
    n1.ns.exec("bridge", "fdb", "del", mac, "dev", "vxlan.ocelot", "dst", n3.ip4, "self");
    n1.ns.ip("route", "del", block);
    const t0 = Date.now();
    await waitFor("the neighbour, FDB entry and route back", () => {
      const nb = neighOf(n1.ns, "vxlan.ocelot").find((x) => x.dst === tun);
      const fdb = fdbOf(n1.ns, "vxlan.ocelot").find((x) => x.mac === mac);
      const route = routesOf(n1.ns, "202").find((x) => x.dst === block);
      return nb?.state?.includes("PERMANENT") && fdb?.dst === n3.ip4 && route?.gateway === tun;
    }).catch((e) => {
      throw new Error(`${(e as Error).message}\n${n1.daemon?.log}`);
    });
    console.log(`overlay drift repaired in ${Date.now() - t0} ms`);
    await waitPing(n1.pod as Netns, n3.pod4 as string, "the ping after the repair");
  });

  it("CrossSubnet: between subnets the router's links carry only UDP 4789 with the pod addresses inside; inside a subnet, plain pod packets", async () => {
    await setPools(lab.store, { vxlanMode: "CrossSubnet" });
    const sameBlock = blockOf(n2.pod4 as string);
    await waitFor(`${n1.name}: ${sameBlock} natively via ${n2.ip4}`, () =>
      routesOf(n1.ns, "202").some(
        (x) => x.dst === sameBlock && x.gateway === n2.ip4 && x.dev === "eth0",
      ),
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${logs()}`);
    });
    const block6 = blockOf(n2.pod6 as string);
    await waitFor(`${n1.name}: ${block6} natively via ${n2.ip6}`, () =>
      routesOf(n1.ns, "202", "-6").some((x) => x.dst === block6 && x.gateway === n2.ip6),
    );
    await waitPing(n1.pod as Netns, n2.pod4 as string, "same-subnet pod ping", logs);
    await waitPing(n1.pod as Netns, n3.pod4 as string, "cross-subnet pod ping", logs);
    await waitPing(n1.pod as Netns, n3.pod6 as string, "cross-subnet pod ping (IPv6)", logs);
    const pings = (to: LabNode) => () => {
      for (const ip of [to.pod4, to.pod6] as string[])
        for (let k = 0; k < 3; k++) expect(ping(n1.pod as Netns, ip).ok).toBe(true);
    };
    // Between subnets: n3's port on the router.
    const cross = await capture(lab.router, n3.port, pings(n3));
    // At least two echo requests and their replies per family (capture starts may miss one).
    const has = (pod: string | undefined) => cross.filter((c) => c.src.includes(pod as string));
    expect(has(n1.pod4).length, JSON.stringify(cross)).toBeGreaterThanOrEqual(2);
    expect(has(n3.pod4).length, JSON.stringify(cross)).toBeGreaterThanOrEqual(2);
    expect(has(n1.pod6).length, JSON.stringify(cross)).toBeGreaterThanOrEqual(2);
    expect(has(n3.pod6).length, JSON.stringify(cross)).toBeGreaterThanOrEqual(2);
    for (const c of cross) {
      expect(c.protocols, JSON.stringify(c)).toMatch(/:udp:vxlan:eth:/);
      expect(c.udpPort).toBe("4789");
    }
    const seen = cross.map((c) => `${c.src}>${c.dst}`).join(" ");
    for (const ip of [n1.pod4, n3.pod4, n1.pod6, n3.pod6] as string[]) expect(seen).toContain(ip);
    // Outer addresses: the nodes' fabric addresses.
    expect(seen).toContain(n1.ip4);
    expect(seen).toContain(n1.ip6);
    // Inside the subnet: n2's port carries the pod packets as they are.
    const same = await capture(lab.router, n2.port, pings(n2));
    const plain = same.filter((c) => /icmp/.test(c.protocols));
    expect(plain.length, JSON.stringify(same)).toBeGreaterThanOrEqual(4);
    for (const c of same) expect(c.protocols, JSON.stringify(c)).not.toMatch(/vxlan/);
    const seenSame = plain.map((c) => `${c.src}>${c.dst}`);
    expect(seenSame).toContain(`${n1.pod4}>${n2.pod4}`);
    expect(seenSame).toContain(`${n1.pod6}>${n2.pod6}`);
  });

  it("vxlanMode Never (negative control): the routes and devices go, the tunnel addresses are released, cross-subnet pings fail", async () => {
    await setPools(lab.store, { vxlanMode: "Never" });
    const block = blockOf(n3.pod4 as string);
    await waitFor(`${n1.name}: no overlay route to ${block} and no VXLAN device`, () => {
      const devs = n1.ns.ipJson<unknown[]>("link", "show", "type", "vxlan");
      return !routesOf(n1.ns, "202").some((x) => x.dst === block) && devs.length === 0;
    }).catch((e) => {
      throw new Error(`${(e as Error).message}\n${logs()}`);
    });
    await waitFor("the Nodes without tunnel addresses", async () => {
      for (const n of lab.nodes) {
        const r = await nodeResource(n.name);
        if (r.spec.ipv4VXLANTunnelAddr || r.spec.ipv6VXLANTunnelAddr) return false;
      }
      return true;
    });
    expect(ping(n1.pod as Netns, n3.pod4 as string, ["-c2"]).ok).toBe(false);
    expect(ping(n1.pod as Netns, n3.pod6 as string, ["-c2"]).ok).toBe(false);
  });
});
