// The speaker's kernel-route plumbing for Calico's route priorities and BGPPeer reachableBy, over
// loopback with in-memory FIBs: learned routes carry the config's metric per family
// (fib.metricV4/V6, BGPConfiguration ipv4/ipv6NormalRoutePriority), a new metric moves them
// (set at the new one, removed at the old, no session reset) while host routes to peers stay at
// metric 0; reachableBy keeps a host route to the peer via the gateway (peer_routes.ts); with
// fib.metricFromPriority a route with a priority of its own gets it as its metric.
import { afterEach, describe, expect, it } from "vitest";
import { type BgpdConfig, parseConfig } from "../../src/bgp/config.js";
import { realClock } from "../../src/bgp/io/clock.js";
import { makeWireBridge } from "../../src/bgp/speaker/attrs.js";
import { peerRoutes, peerRoutesDiff } from "../../src/bgp/speaker/peer_routes.js";
import { Speaker } from "../../src/bgp/speaker/runtime.js";
import { MemoryFib } from "../../src/fib/memory_fib.js";
import { waitFor } from "../helpers/netns.js";

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

/** a originates a v4 and a v6 prefix to b; b installs them with its fib metrics. */
async function pair(
  bFib: Record<string, unknown>,
  bPeer: Record<string, unknown> = {},
  aFib: Record<string, unknown> = {},
) {
  const bCfg = parseConfig({
    asn: 64512,
    routerId: "10.0.0.2",
    listen: { address: "127.0.0.2", port: 0 },
    peers: [{ address: "127.0.0.1", asn: 64512, passive: true, holdTime: 9, ...bPeer }],
    fib: bFib,
    status: { socket: "/nonexistent" },
  });
  const fibB = new MemoryFib();
  const b = new Speaker(bCfg, { clock: realClock, fib: fibB, bridge: makeWireBridge() });
  await b.start();
  stops.push(() => b.stop());
  const aCfg = parseConfig({
    asn: 64512,
    routerId: "10.0.0.1",
    listen: { address: "127.0.0.1", port: 0 },
    peers: [
      { address: "127.0.0.2", asn: 64512, port: b.listenPort, holdTime: 9, connectRetryTime: 1 },
    ],
    originate: [{ prefix: "10.244.1.0/26" }, { prefix: "fd00:1::/122" }],
    fib: aFib,
    status: { socket: "/nonexistent" },
  });
  const a = new Speaker(aCfg, { clock: realClock, fib: new MemoryFib(), bridge: makeWireBridge() });
  await a.start();
  stops.push(() => a.stop());
  return { a, b, fibB, bCfg };
}

const learned = (fib: MemoryFib) =>
  fib
    .desired()
    .filter((r) => r.dst !== "127.0.0.1/32")
    .map((r) => [r.dst, r.metric ?? 0])
    .sort((x, y) => String(x[0]).localeCompare(String(y[0])));

describe("kernel metric of learned routes (normal route priority)", () => {
  it("installs each family at its metric and moves them in place when it changes", async () => {
    const { b, fibB, bCfg } = await pair({ metricV4: 1024, metricV6: 2000 });
    await waitFor("both routes in b's FIB", () => fibB.desired().length === 2, 10_000, 20);
    expect(learned(fibB)).toEqual([
      ["10.244.1.0/26", 1024],
      ["fd00:1::/122", 2000],
    ]);
    const before = b.status().peers[0]?.establishedTransitions;
    await b.reconfigure({ ...bCfg, fib: { ...bCfg.fib, metricV4: 3000 } });
    await waitFor("v4 at 3000 only", () => learned(fibB)[0]?.[1] === 3000, 10_000, 20);
    expect(learned(fibB)).toEqual([
      ["10.244.1.0/26", 3000],
      ["fd00:1::/122", 2000],
    ]);
    // The kernel got a set at the new metric before the delete at the old one.
    const ops = fibB.log
      .filter((o) => o.route.startsWith("10.244.1.0/26 "))
      .map((o) => `${o.op} ${o.route}`);
    expect(ops.slice(-2)).toEqual([
      "set 10.244.1.0/26 table 254 metric 3000",
      "remove 10.244.1.0/26 table 254 metric 1024",
    ]);
    expect(b.status().peers[0]?.establishedTransitions).toBe(before);
  });

  it("without a metric: the kernel's defaults (0 for IPv4, 1024 for IPv6), as before", async () => {
    const { fibB } = await pair({});
    await waitFor("both routes in b's FIB", () => fibB.desired().length === 2, 10_000, 20);
    expect(learned(fibB)).toEqual([
      ["10.244.1.0/26", 0],
      ["fd00:1::/122", 1024],
    ]);
  });
});

describe("fib.metricFromPriority: Calico's route priorities in ocelot bgpd", () => {
  const prio = (v: number) => ({
    rules: [
      {
        action: "Accept",
        cidr: "10.244.1.0/26",
        matchOperator: "Equal",
        operations: [{ setPriority: { value: v } }],
      },
      {
        action: "Accept",
        cidr: "fd00:1::/122",
        matchOperator: "Equal",
        operations: [
          { addCommunity: { value: "64512:9" } },
          { prependASPath: { prefix: [64700] } },
        ],
      },
    ],
  });

  it("a route at the normal priority (LOCAL_PREF 2147482623 from another Ocelot) at the normal metric; an import setPriority at its own, moved live; addCommunity/prependASPath on import in `routes`", async () => {
    const on = { metricV4: 1024, metricV6: 1024, metricFromPriority: true };
    const { b, fibB, bCfg } = await pair(on, {}, on);
    await waitFor("both routes in b's FIB", () => fibB.desired().length === 2, 30_000, 20);
    // a sent both with LOCAL_PREF 2^31-1 - 1024: priority 1024, the normal metric.
    expect(learned(fibB)).toEqual([
      ["10.244.1.0/26", 1024],
      ["fd00:1::/122", 1024],
    ]);
    expect(b.routes().routes.map((r) => r.best.localPref)).toEqual([2147482623, 2147482623]);
    const before = b.status().peers[0]?.establishedTransitions;
    const withFilter = (v: number) => ({
      ...bCfg,
      peers: bCfg.peers.map((p) => ({ ...p, importFilter: prio(v) })),
    });
    await b.reconfigure(parseConfig(withFilter(300)));
    await waitFor("v4 at 300", () => learned(fibB)[0]?.[1] === 300, 30_000, 20);
    await b.reconfigure(parseConfig(withFilter(500)));
    await waitFor("v4 at 500", () => learned(fibB)[0]?.[1] === 500, 30_000, 20);
    expect(learned(fibB)).toEqual([
      ["10.244.1.0/26", 500],
      ["fd00:1::/122", 1024],
    ]);
    const v6 = b.routes().routes.find((r) => r.prefix === "fd00:1::/122");
    expect(v6?.best.asPath).toBe("64700");
    expect(v6?.best.communities).toEqual(["64512:9"]);
    expect(b.routes().routes.find((r) => r.prefix === "10.244.1.0/26")?.metric).toBe(500);
    expect(b.status().peers[0]?.establishedTransitions).toBe(before);
  });
});

describe("reachableBy: a host route to the peer via the gateway", () => {
  it("is kept while configured, stays at metric 0 when the route metric moves, and goes with the field", async () => {
    const { b, fibB, bCfg } = await pair({ metricV4: 1024 }, { reachableBy: "127.0.0.9" });
    const host = () => fibB.desired().filter((r) => r.dst === "127.0.0.1/32");
    expect(host()).toEqual([
      expect.objectContaining({ nexthops: [{ gateway: "127.0.0.9" }], metric: 0, protocol: 201 }),
    ]);
    await waitFor("both routes in b's FIB", () => fibB.desired().length === 3, 10_000, 20);
    await b.reconfigure({ ...bCfg, fib: { ...bCfg.fib, metricV4: 3000 } });
    await waitFor("v4 at 3000", () => learned(fibB)[0]?.[1] === 3000, 10_000, 20);
    expect(host()).toEqual([expect.objectContaining({ metric: 0 })]);
    const peer = bCfg.peers[0] as BgpdConfig["peers"][number];
    const { reachableBy: _, ...without } = peer;
    await b.reconfigure({ ...bCfg, fib: { ...bCfg.fib, metricV4: 3000 }, peers: [without] });
    expect(host()).toEqual([]);
  });

  it("peerRoutes/peerRoutesDiff: one host route per such peer; a new gateway is a set, a gone peer a remove", () => {
    const cfg = (gw: string | undefined, extra = true) =>
      parseConfig({
        asn: 64512,
        routerId: "10.0.0.2",
        peers: [
          { address: "192.0.2.1", asn: 65000, ...(gw ? { reachableBy: gw } : {}) },
          ...(extra ? [{ address: "2001:db8::1", asn: 65000, reachableBy: "fe80::1" }] : []),
        ],
        fib: { table: 100 },
        status: { socket: "/nonexistent" },
      });
    const a = peerRoutes(cfg("10.0.0.254"));
    expect([...a.values()].map((r) => [r.dst, r.table, r.nexthops[0]?.gateway])).toEqual([
      ["192.0.2.1/32", 100, "10.0.0.254"],
      ["2001:db8::1/128", 100, "fe80::1"],
    ]);
    expect(peerRoutesDiff(a, a)).toEqual({ set: [], remove: [] });
    const moved = peerRoutesDiff(a, peerRoutes(cfg("10.0.0.253")));
    expect(moved.set.map((r) => r.nexthops[0]?.gateway)).toEqual(["10.0.0.253"]);
    expect(moved.remove).toEqual([]);
    const gone = peerRoutesDiff(a, peerRoutes(cfg(undefined, false)));
    expect(gone.set).toEqual([]);
    expect(gone.remove.map((r) => r.dst)).toEqual(["192.0.2.1/32", "2001:db8::1/128"]);
    expect(() => cfg("2001:db8::9")).toThrow(/reachableBy needs an address of the peer's family/);
  });
});
