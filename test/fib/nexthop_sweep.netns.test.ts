// KernelFib's sweep of nexthop objects of its protocol that no route names (what a crash left):
// after the start-up sweep, or at the end of a graceful hold; objects a route names (ours, or a
// foreign route's) and objects of other protocols stay. Read back with `ip -j nexthop show`.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("kernel FIB nexthop sweep (netns)", reason);

interface IpNexthop {
  id: number;
  gateway?: string;
  protocol?: string;
}

describe.skipIf(skip)("KernelFib sweeps nexthop objects of its protocol no route names", () => {
  let ns: Netns;
  let fib: KernelFib | undefined;

  beforeEach(() => {
    ns = Netns.create("nhs");
    ns.ip("link", "add", "s0", "type", "veth", "peer", "name", "s1");
    ns.ip("addr", "add", "10.255.20.1/29", "dev", "s0");
    ns.ip("link", "set", "s0", "up");
    ns.ip("link", "set", "s1", "up");
    const nh = (id: number, gw: string, proto: string) =>
      ns.ip("nexthop", "add", "id", String(id), "via", gw, "dev", "s0", "proto", proto);
    nh(0x4f430001, "10.255.20.2", "201"); // ours, a route of ours names it
    nh(0x4f430002, "10.255.20.3", "201"); // ours, nothing names it: a crash's
    nh(0x4f430003, "10.255.20.4", "201"); // ours, a foreign route names it
    nh(0x4f430004, "10.255.20.5", "202"); // another protocol's (not this FIB's)
    nh(77, "10.255.20.6", "static"); // foreign
    ns.ip("route", "add", "10.80.0.0/24", "nhid", String(0x4f430001), "proto", "201");
    ns.ip("route", "add", "10.81.0.0/24", "nhid", String(0x4f430003), "proto", "static");
  });

  afterEach(async () => {
    await fib?.close();
    fib = undefined;
    ns?.destroy();
  });

  const ids = () =>
    ns
      .ipJson<IpNexthop[]>("nexthop", "show")
      .map((n) => n.id)
      .sort((a, b) => a - b);

  for (const nexthopObjects of [true, false])
    it(`at start, only the unnamed object of ours goes (objects ${nexthopObjects ? "on" : "off"})`, async () => {
      expect(ids()).toHaveLength(5);
      fib = await KernelFib.open({ netns: ns.name, protocols: [201], nexthopObjects });
      // The route 10.80.0.0/24 nobody set again was swept first, so its object goes too.
      expect(ids()).toEqual([77, 0x4f430003, 0x4f430004]);
      expect(fib.stats.nexthopsSwept).toBe(2);
    });

  it("a graceful hold keeps them until it ends; a route set again keeps the object it names", async () => {
    fib = await KernelFib.open({
      netns: ns.name,
      protocols: [201],
      nexthopObjects: true,
      gracefulHoldMs: 60_000,
    });
    expect(ids()).toHaveLength(5);
    await fib.set([
      { family: 4, dst: "10.80.0.0/24", protocol: 201, nexthops: [{ gateway: "10.255.20.2" }] },
    ]);
    // Through the object this FIB names for 10.255.20.2 (its own id; rewritten if it differs).
    const route = () =>
      ns.ipJson<{ dst: string; nhid?: number; gateway?: string }[]>(
        "route",
        "show",
        "10.80.0.0/24",
      );
    const named = route()[0]?.nhid as number;
    expect(route()).toMatchObject([{ nhid: named, gateway: "10.255.20.2" }]);
    expect(ids()).toContain(0x4f430002); // still held
    await fib.endGracefulHold();
    expect(ids()).toEqual([...new Set([77, named, 0x4f430003, 0x4f430004])].sort((a, b) => a - b));
    expect(fib.stats.nexthopsSwept).toBe(named === 0x4f430001 ? 1 : 2);
    expect(route()).toMatchObject([{ nhid: named }]);
  });
});
