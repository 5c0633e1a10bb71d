// KernelFib deletes a nexthop object of its own while it runs, once no route names it any more:
// the last route through a gateway removed (or moved to another gateway) takes the gateway's
// object with it, a route coming back makes it again; an object a route of another protocol
// names stays until that route goes; during a graceful hold nothing goes until its end (a stale
// route still names its object). Objects of other protocols are never touched. Read back with
// `ip -j nexthop show` / `ip -j route show`.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import type { Route } from "../../src/fib/types.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { holds, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("kernel FIB nexthop object deletion (netns)", reason);

interface IpNexthop {
  id: number;
  gateway?: string;
  protocol?: string;
}
interface IpRoute {
  dst: string;
  nhid?: number;
  gateway?: string;
  protocol?: string;
}

const GW_A = "10.255.21.2";
const GW_B = "10.255.21.3";
const via = (dst: string, gateway: string): Route => ({
  family: 4,
  dst,
  protocol: 201,
  nexthops: [{ gateway }],
});

describe.skipIf(skip)("KernelFib deletes a nexthop object once no route names it", () => {
  let ns: Netns;
  let fib: KernelFib | undefined;

  beforeEach(() => {
    ns = Netns.create("nhd");
    ns.ip("link", "add", "d0", "type", "veth", "peer", "name", "d1");
    ns.ip("addr", "add", "10.255.21.1/29", "dev", "d0");
    ns.ip("link", "set", "d0", "up");
    ns.ip("link", "set", "d1", "up");
    // Another protocol's object: never touched.
    ns.ip("nexthop", "add", "id", "77", "via", GW_A, "dev", "d0", "proto", "static");
  });

  afterEach(async () => {
    await fib?.close();
    fib = undefined;
    ns?.destroy();
  });

  const ours = () =>
    ns
      .ipJson<IpNexthop[]>("nexthop", "show")
      .filter((n) => n.protocol === "201")
      .map((n) => n.gateway)
      .sort();
  const objectOf = (gateway: string) =>
    ns
      .ipJson<IpNexthop[]>("nexthop", "show")
      .find((n) => n.protocol === "201" && n.gateway === gateway)?.id;
  const route = (dst: string) =>
    ns.ipJson<IpRoute[]>("route", "show", "table", "all").find((r) => r.dst === dst);

  it("the last route through a gateway removed takes its object; a route coming back makes it again", async () => {
    fib = await KernelFib.open({ netns: ns.name, protocols: [201], nexthopObjects: true });
    await fib.set([
      via("10.82.0.0/24", GW_A),
      via("10.82.1.0/24", GW_A),
      via("10.83.0.0/24", GW_B),
    ]);
    // The batch path too (bgpd's).
    await fib.setV4Batch({
      addrs: Uint32Array.of(0x0a540000),
      lens: Uint8Array.of(24),
      protocol: 201,
      nexthops: [{ gateway: GW_A }],
    });
    expect(ours()).toEqual([GW_A, GW_B]);
    const a = objectOf(GW_A) as number;
    expect(route("10.82.0.0/24")).toMatchObject({ nhid: a, gateway: GW_A });
    // One of A's three routes gone: A's object stays (two still name it).
    await fib.remove([{ family: 4, dst: "10.82.0.0/24", protocol: 201 }]);
    expect(await holds(500, () => objectOf(GW_A) === a)).toBe(true);
    await fib.remove([{ family: 4, dst: "10.82.1.0/24", protocol: 201 }]);
    await fib.removeV4Batch({
      addrs: Uint32Array.of(0x0a540000),
      lens: Uint8Array.of(24),
      protocol: 201,
    });
    await waitFor("A's object deleted", () => objectOf(GW_A) === undefined);
    expect(ours()).toEqual([GW_B]);
    expect(route("10.83.0.0/24")).toMatchObject({ nhid: objectOf(GW_B), gateway: GW_B });
    expect(fib.stats.nexthopsDeleted).toBe(1);
    // Another protocol's object through the same gateway untouched.
    expect(ns.ipJson<IpNexthop[]>("nexthop", "show").some((n) => n.id === 77)).toBe(true);
    // A route through A again: its object made again (the same id), the route names it.
    await fib.set([via("10.82.0.0/24", GW_A)]);
    expect(objectOf(GW_A)).toBe(a);
    expect(route("10.82.0.0/24")).toMatchObject({ nhid: a, gateway: GW_A });
    expect(ours()).toEqual([GW_A, GW_B]);
  });

  it("a route moved to another gateway leaves the old object; a foreign route naming it keeps it", async () => {
    fib = await KernelFib.open({ netns: ns.name, protocols: [201], nexthopObjects: true });
    await fib.set([via("10.85.0.0/24", GW_A), via("10.85.1.0/24", GW_B)]);
    const a = objectOf(GW_A) as number;
    const b = objectOf(GW_B) as number;
    // Another program's route names our object of B.
    ns.ip("route", "add", "10.86.0.0/24", "nhid", String(b), "proto", "static");
    // The route through A moves to B, the one through B goes.
    await fib.set([via("10.85.0.0/24", GW_B)]);
    await fib.remove([{ family: 4, dst: "10.85.1.0/24", protocol: 201 }]);
    await waitFor("A's object deleted", () => objectOf(GW_A) === undefined);
    expect(route("10.85.0.0/24")).toMatchObject({ nhid: b, gateway: GW_B });
    await fib.remove([{ family: 4, dst: "10.85.0.0/24", protocol: 201 }]);
    // B: no route of ours, but the static route still names it.
    expect(await holds(1000, () => objectOf(GW_B) === b)).toBe(true);
    expect(route("10.86.0.0/24")).toMatchObject({ nhid: b, protocol: "static" });
    ns.ip("route", "del", "10.86.0.0/24");
    await waitFor("B's object deleted once the foreign route went", () => ours().length === 0);
    expect(fib.stats.nexthopsDeleted).toBe(2);
    expect(a).not.toBe(b);
  });

  it("an object found at start that a foreign route names is kept when our last route goes", async () => {
    // A run before this one left a route and its object; a foreign route names the object too.
    const first = await KernelFib.open({ netns: ns.name, protocols: [201], nexthopObjects: true });
    await first.set([via("10.87.0.0/24", GW_A)]);
    const a = objectOf(GW_A) as number;
    ns.ip("route", "add", "10.88.0.0/24", "nhid", String(a), "proto", "static");
    // Closed with its route in the kernel (as a crash leaves it): the object stays.
    await first.close();
    expect(objectOf(GW_A)).toBe(a);
    fib = await KernelFib.open({ netns: ns.name, protocols: [201], nexthopObjects: true });
    await fib.set([via("10.87.0.0/24", GW_A)]);
    await fib.remove([{ family: 4, dst: "10.87.0.0/24", protocol: 201 }]);
    expect(await holds(1000, () => objectOf(GW_A) === a)).toBe(true);
    expect(route("10.88.0.0/24")).toMatchObject({ nhid: a, protocol: "static" });
    ns.ip("route", "del", "10.88.0.0/24");
    await waitFor("the object deleted once the foreign route went", () => ours().length === 0);
  });

  it("during a graceful hold, a stale route keeps its object; the hold's end takes it", async () => {
    const first = await KernelFib.open({ netns: ns.name, protocols: [201], nexthopObjects: true });
    await first.set([via("10.89.0.0/24", GW_A), via("10.89.1.0/24", GW_A)]);
    const a = objectOf(GW_A) as number;
    await first.close();
    fib = await KernelFib.open({
      netns: ns.name,
      protocols: [201],
      nexthopObjects: true,
      gracefulHoldMs: 60_000,
    });
    // One of the two set again and then withdrawn: the other, stale, still names A's object.
    await fib.set([via("10.89.0.0/24", GW_A)]);
    await fib.remove([{ family: 4, dst: "10.89.0.0/24", protocol: 201 }]);
    expect(await holds(1000, () => objectOf(GW_A) === a)).toBe(true);
    expect(route("10.89.1.0/24")).toMatchObject({ nhid: a });
    await fib.endGracefulHold();
    expect(route("10.89.1.0/24")).toBeUndefined();
    await waitFor("the object deleted with the stale route", () => ours().length === 0);
    expect(ns.ipJson<IpNexthop[]>("nexthop", "show").map((n) => n.id)).toEqual([77]);
  });

  it("with objects off, nothing is made or deleted", async () => {
    fib = await KernelFib.open({ netns: ns.name, protocols: [201], nexthopObjects: false });
    await fib.set([via("10.90.0.0/24", GW_A)]);
    expect(route("10.90.0.0/24")).toMatchObject({ gateway: GW_A });
    expect(route("10.90.0.0/24")?.nhid).toBeUndefined();
    await fib.remove([{ family: 4, dst: "10.90.0.0/24", protocol: 201 }]);
    expect(ours()).toEqual([]);
    expect(fib.stats.nexthopsDeleted).toBe(0);
  });
});
