// KernelFib's ECMP routes name one nexthop group object (RTM_NEWNEXTHOP with NHA_GROUP) of its
// gateways' objects, with the routes' weights: 2 and 4 paths read back with `ip -j nexthop show`
// and `ip -j route show`; a single-gateway route shares the member's object; a member's link
// losing its carrier (the kernel flushes that member's object) is followed by a resync that keeps
// the route through the gateways left, and the group comes back with the carrier; the group and
// its members go with the last route.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import type { Route } from "../../src/fib/types.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("kernel FIB nexthop groups (netns)", reason);

interface IpNexthop {
  id: number;
  gateway?: string;
  dev?: string;
  group?: { id: number; weight?: number }[];
  protocol?: string;
}
interface IpRoute {
  dst: string;
  nhid?: number;
  gateway?: string;
  nexthops?: { gateway?: string; dev?: string; weight?: number; flags?: string[] }[];
  protocol?: string;
}

// Two gateways on each of two links.
const D = ["10.255.22.2", "10.255.22.3"];
const E = ["10.255.23.2", "10.255.23.3"];

const ecmp = (dst: string, hops: [string, number][]): Route => ({
  family: 4,
  dst,
  protocol: 201,
  nexthops: hops.map(([gateway, weight]) => ({ gateway, weight })),
});

describe.skipIf(skip)("KernelFib ECMP routes through nexthop group objects", () => {
  let ns: Netns;
  let fib: KernelFib | undefined;

  beforeEach(() => {
    ns = Netns.create("nhg");
    for (const [a, b, net] of [
      ["d0", "d1", "10.255.22.1/29"],
      ["e0", "e1", "10.255.23.1/29"],
    ] as const) {
      ns.ip("link", "add", a, "type", "veth", "peer", "name", b);
      ns.ip("addr", "add", net, "dev", a);
      ns.ip("link", "set", a, "up");
      ns.ip("link", "set", b, "up");
    }
  });

  afterEach(async () => {
    await fib?.close();
    fib = undefined;
    ns?.destroy();
  });

  const objects = () => ns.ipJson<IpNexthop[]>("nexthop", "show");
  const object = (id: number | undefined) => objects().find((o) => o.id === id);
  const route = (dst: string) =>
    ns.ipJson<IpRoute[]>("route", "show", "table", "all").find((r) => r.dst === dst);
  /** A group's members as "gateway/weight", sorted. */
  const members = (id: number | undefined) =>
    (object(id)?.group ?? []).map((m) => `${object(m.id)?.gateway}/${m.weight ?? 1}`).sort();
  const hops = (r: IpRoute | undefined) =>
    (r?.nexthops ?? []).map((h) => `${h.gateway}/${h.weight ?? 1}`).sort();

  it("2 and 4 paths: one group object each, weights kept; a single gateway's route shares the member", async () => {
    fib = await KernelFib.open({ netns: ns.name, protocols: [201], nexthopObjects: true });
    await fib.set([
      ecmp("10.91.0.0/24", [
        [D[0], 1],
        [E[0], 3],
      ]),
      ecmp("10.92.0.0/24", [
        [D[0], 1],
        [D[1], 2],
        [E[0], 3],
        [E[1], 4],
      ]),
      ecmp("10.93.0.0/24", [[D[0], 1]]),
    ]);
    const two = route("10.91.0.0/24");
    const four = route("10.92.0.0/24");
    expect(two?.nhid).toBeGreaterThan(0);
    expect(four?.nhid).toBeGreaterThan(0);
    expect(two?.nhid).not.toBe(four?.nhid);
    expect(object(two?.nhid)).toMatchObject({ protocol: "201" });
    expect(members(two?.nhid)).toEqual([`${D[0]}/1`, `${E[0]}/3`]);
    expect(members(four?.nhid)).toEqual([`${D[0]}/1`, `${D[1]}/2`, `${E[0]}/3`, `${E[1]}/4`]);
    // The kernel lists the route's paths (nexthop_compat_mode) with their weights.
    expect(hops(two)).toEqual([`${D[0]}/1`, `${E[0]}/3`]);
    expect(hops(four)).toEqual([`${D[0]}/1`, `${D[1]}/2`, `${E[0]}/3`, `${E[1]}/4`]);
    // The single gateway's object is the groups' member for D[0]; all of ours are protocol 201.
    const single = route("10.93.0.0/24")?.nhid;
    expect(object(single)).toMatchObject({ gateway: D[0], protocol: "201" });
    expect(object(two?.nhid)?.group?.map((m) => m.id)).toContain(single);
    expect(objects().every((o) => o.protocol === "201")).toBe(true);
    expect(objects()).toHaveLength(4 + 2); // D[0], D[1], E[0], E[1] and two groups
    // Nothing to rewrite on a resync: the kernel's routes match.
    const sent = fib.stats.sent;
    await fib.resync();
    expect(fib.stats.sent).toBe(sent);
    expect(route("10.92.0.0/24")?.nhid).toBe(four?.nhid);
    // The last routes gone: the groups and their members go too.
    await fib.remove(
      ["10.91.0.0/24", "10.92.0.0/24", "10.93.0.0/24"].map((dst) => ({
        family: 4 as const,
        dst,
        protocol: 201,
      })),
    );
    await waitFor("every object of ours deleted", () => objects().length === 0);
    expect(fib.stats.nexthopsDeleted).toBe(6);
  });

  it("a member's link losing its carrier: the route stays through the gateways left; the group comes back with the carrier", async () => {
    fib = await KernelFib.open({ netns: ns.name, protocols: [201], nexthopObjects: true });
    const hops4: [string, number][] = [
      [D[0], 1],
      [D[1], 1],
      [E[0], 2],
      [E[1], 2],
    ];
    await fib.set([ecmp("10.94.0.0/24", hops4)]);
    const group = route("10.94.0.0/24")?.nhid;
    expect(members(group)).toEqual([`${D[0]}/1`, `${D[1]}/1`, `${E[0]}/2`, `${E[1]}/2`]);
    // e0's peer down: e0 loses its carrier, the kernel flushes the objects through it.
    ns.ip("link", "set", "e1", "down");
    await waitFor(
      "the route written again through its gateways (no group while e0 is down)",
      () => {
        const r = route("10.94.0.0/24");
        return r !== undefined && r.nhid === undefined && hops(r).length === 4;
      },
    );
    // Traffic keeps the live paths: the kernel marks e0's paths linkdown.
    const r = route("10.94.0.0/24");
    for (const h of r?.nexthops ?? [])
      if (h.dev === "e0") expect(h.flags ?? []).toContain("linkdown");
      else expect(h.flags ?? []).not.toContain("linkdown");
    await waitFor("the group no route names deleted", () => object(group) === undefined);
    ns.ip("link", "set", "e1", "up");
    await waitFor("the route through a group of all 4 again", () => {
      const back = route("10.94.0.0/24");
      return back?.nhid !== undefined && members(back.nhid).length === 4;
    });
    expect(route("10.94.0.0/24")?.nhid).toBe(group); // the same id: the same members
    expect(members(group)).toEqual([`${D[0]}/1`, `${D[1]}/1`, `${E[0]}/2`, `${E[1]}/2`]);
  });

  it("a restart finds the group and its routes as they are: nothing written again", async () => {
    const first = await KernelFib.open({ netns: ns.name, protocols: [201], nexthopObjects: true });
    await first.set([
      ecmp("10.95.0.0/24", [
        [D[0], 1],
        [E[0], 1],
      ]),
    ]);
    const group = route("10.95.0.0/24")?.nhid;
    await first.close(); // its route kept: the objects stay
    expect(object(group)).toBeDefined();
    const events: string[] = [];
    fib = await KernelFib.open({
      netns: ns.name,
      protocols: [201],
      nexthopObjects: true,
      gracefulHoldMs: 60_000,
      onEvent: (e) => {
        if (e.kind === "resync") events.push(`${e.installed}/${e.removed}`);
      },
    });
    await fib.set([
      ecmp("10.95.0.0/24", [
        [D[0], 1],
        [E[0], 1],
      ]),
    ]);
    expect(fib.stats.sent).toBe(0);
    await fib.endGracefulHold();
    expect(route("10.95.0.0/24")?.nhid).toBe(group);
    expect(members(group)).toEqual([`${D[0]}/1`, `${E[0]}/1`]);
    expect(events).toEqual(["0/0"]);
  });
});
