// The speaker's small parts: subnet matching and prefix conversions (speaker/addr.ts), and the
// FIB pump grouping IPv4 changes by next-hop set into typed-array batches (speaker/fib_pump.ts).
import { describe, expect, it } from "vitest";
import { FibBatch } from "../../src/bgp/rib/rib.js";
import { expand6, sameSubnet, textPrefixArray } from "../../src/bgp/speaker/addr.js";
import { FibPump, groupV4BySet } from "../../src/bgp/speaker/fib_pump.js";
import { MemoryFib } from "../../src/fib/memory_fib.js";
import { silentLog } from "../../src/lib/log.js";

describe("sameSubnet() / expand6()", () => {
  it("matches IPv4 and IPv6 addresses against an interface CIDR", () => {
    expect(sameSubnet("10.255.1.1/29", "10.255.1.4")).toBe(true);
    expect(sameSubnet("10.255.4.1/31", "10.255.4.2")).toBe(false);
    expect(sameSubnet("fd00:255:1::1/64", "fd00:255:1::2")).toBe(true);
    expect(sameSubnet("fd00:255:1::1/64", "fd00:255:2::2")).toBe(false);
    expect(sameSubnet("fd00::1/64", "10.0.0.1")).toBe(false);
    expect(expand6("fd00::1")).toEqual([0xfd00, 0, 0, 0, 0, 0, 0, 1]);
  });
});

describe("textPrefixArray()", () => {
  it("packs text prefixes into the codec's PrefixArray", () => {
    const v4 = textPrefixArray(["10.1.0.0/24", "192.168.0.0/16"], 4);
    expect([v4.count, [...v4.addrs], [...v4.lens]]).toEqual([
      2,
      [0x0a010000, 0xc0a80000],
      [24, 16],
    ]);
    const v6 = textPrefixArray(["fd00:1::/64"], 6);
    expect([...v6.addrs]).toEqual([0xfd000001, 0, 0, 0]);
  });
});

describe("FibPump", () => {
  function batch(entries: [number, number][], sets: string[][]): FibBatch {
    const b = new FibBatch(sets);
    for (const [addr, set] of entries) {
      b.v4.pushV4(addr, 32);
      b.v4Sets.push(set);
    }
    return b;
  }

  it("groups IPv4 changes by next-hop set, removals apart", () => {
    const g = groupV4BySet(
      batch(
        [
          [1, 0],
          [2, 1],
          [3, 0],
          [4, -1],
        ],
        [["10.0.0.1"], ["10.0.0.2", "10.0.0.3"]],
      ),
    );
    expect([...g.keys()].sort()).toEqual([-1, 0, 1]);
    expect([...(g.get(0)?.addrs ?? [])]).toEqual([1, 3]);
    expect([...(g.get(-1)?.addrs ?? [])]).toEqual([4]);
  });

  it("installs ECMP and single next hops, removes, and counts what is in flight", async () => {
    const fib = new MemoryFib();
    let settled = 0;
    const pump = new FibPump(fib, silentLog);
    const done = pump.push(
      batch(
        [
          [0x0a000001, 0],
          [0x0a000002, 1],
        ],
        [["10.0.0.1"], ["10.0.0.2", "10.0.0.3"]],
      ),
      201,
      254,
    );
    void done.then(() => settled++);
    expect(pump.inFlight).toBe(2);
    await done;
    await new Promise((r) => setTimeout(r, 10));
    expect([pump.inFlight, settled]).toEqual([0, 1]);
    const routes = fib.desired().sort((a, b) => a.dst.localeCompare(b.dst));
    expect(routes.map((r) => [r.dst, r.nexthops.length])).toEqual([
      ["10.0.0.1/32", 1],
      ["10.0.0.2/32", 2],
    ]);
    expect(pump.installed).toBe(2);
    pump.push(batch([[0x0a000001, -1]], []), 201, 254);
    await new Promise((r) => setTimeout(r, 10));
    expect(fib.desired().map((r) => r.dst)).toEqual(["10.0.0.2/32"]);
  });

  it("a next-hop set with a metric of its own (a route priority) is installed and removed at it, IPv4 and IPv6", async () => {
    const fib = new MemoryFib();
    const pump = new FibPump(fib, silentLog);
    // Set 0: the normal metric; set 1: the same next hop at metric 300.
    const b = new FibBatch([["10.0.0.1"], ["10.0.0.1"]], [-1, 300]);
    b.v4.pushV4(0x0a000001, 32);
    b.v4Sets.push(0);
    b.v4.pushV4(0x0a000002, 32);
    b.v4Sets.push(1);
    b.v6.pushV6(new Uint32Array([0xfd000000, 0, 0, 1]), 0, 128);
    b.v6Sets.push(1);
    await pump.push(b, 201, 254, { v4: 1024, v6: 1024 });
    const metrics = () =>
      fib
        .desired()
        .map((r) => [r.dst, r.metric])
        .sort((x, y) => String(x[0]).localeCompare(String(y[0])));
    expect(metrics()).toEqual([
      ["10.0.0.1/32", 1024],
      ["10.0.0.2/32", 300],
      ["fd00::1/128", 300],
    ]);
    // Removals by the set they were installed with (-2-set): at its metric.
    const rm = new FibBatch([["10.0.0.1"], ["10.0.0.1"]], [-1, 300]);
    rm.v4.pushV4(0x0a000002, 32);
    rm.v4Sets.push(-3);
    rm.v6.pushV6(new Uint32Array([0xfd000000, 0, 0, 1]), 0, 128);
    rm.v6Sets.push(-3);
    expect(rm.metricOf(-3)).toBe(300);
    expect(rm.metricOf(-1)).toBeUndefined();
    await pump.push(rm, 201, 254, { v4: 1024, v6: 1024 });
    expect(metrics()).toEqual([["10.0.0.1/32", 1024]]);
  });
});
