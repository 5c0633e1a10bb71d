// Two Speakers over loopback TCP with in-memory FIBs: originations (with communities) reach the
// other side's RIB and FIB, withdrawals and session drops remove them, filters apply on reload.
import { afterEach, describe, expect, it } from "vitest";
import { type BgpdConfig, parseConfig } from "../../src/bgp/config.js";
import { realClock } from "../../src/bgp/io/clock.js";
import { makeWireBridge, type WireAttrs } from "../../src/bgp/speaker/attrs.js";
import { Speaker } from "../../src/bgp/speaker/runtime.js";
import { MemoryFib } from "../../src/fib/memory_fib.js";
import { waitFor } from "../helpers/netns.js";

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

async function pair(aOver: Partial<BgpdConfig> = {}, bAs = 64512) {
  // b listens on an ephemeral port first; a connects to it (a's own listener is ephemeral too).
  const bCfg = parseConfig({
    asn: bAs,
    routerId: "10.0.0.2",
    listen: { address: "127.0.0.2", port: 0 },
    peers: [{ address: "127.0.0.1", asn: 64512, passive: true, holdTime: 9 }],
    status: { socket: "/nonexistent" },
  });
  const bFib = new MemoryFib();
  const b = new Speaker(bCfg, { clock: realClock, fib: bFib, bridge: makeWireBridge() });
  await b.start();
  stops.push(() => b.stop());
  const aCfg = parseConfig({
    asn: 64512,
    routerId: "10.0.0.1",
    listen: { address: "127.0.0.1", port: 0 },
    peers: [
      { address: "127.0.0.2", asn: bAs, port: b.listenPort, holdTime: 9, connectRetryTime: 1 },
    ],
    originate: [
      { prefix: "10.244.1.0/26", communities: ["64512:100"], largeCommunities: ["64512:1:2"] },
      { prefix: "fd00:1::/122" },
    ],
    status: { socket: "/nonexistent" },
    ...aOver,
  });
  const aFib = new MemoryFib();
  const a = new Speaker(aCfg, { clock: realClock, fib: aFib, bridge: makeWireBridge() });
  await a.start();
  stops.push(() => a.stop());
  return { a, b, aFib, bFib, aCfg, bCfg };
}

describe("Speaker over loopback (iBGP)", () => {
  it("carries IPv4 and IPv6 originations with communities into the peer's RIB and FIB", async () => {
    const { a, b, bFib } = await pair();
    await waitFor("routes in b's FIB", () => bFib.desired().length === 2, 10_000, 20);
    const dsts = bFib
      .desired()
      .map((r) => r.dst)
      .sort();
    expect(dsts).toEqual(["10.244.1.0/26", "fd00:1::/122"]);
    const v4 = bFib.desired().find((r) => r.family === 4);
    expect(v4?.nexthops).toEqual([{ gateway: "127.0.0.1" }]);
    const entry = [...b.rib.locRib()].find((r) => r.prefix === "10.244.1.0/26");
    expect(entry?.attrs.communities).toEqual([((64512 << 16) | 100) >>> 0]);
    expect((entry?.attrs as WireAttrs | undefined)?.largeCommunities).toEqual([[64512, 1, 2]]);
    const st = b.status().peers[0];
    expect(st?.state).toBe("Established");
    expect(st?.prefixes.received).toBe(2);
    expect(a.status().peers[0]?.prefixes.advertised).toBe(2);
    expect(
      b
        .routes()
        .routes.map((r) => r.prefix)
        .sort(),
    ).toEqual(["10.244.1.0/26", "fd00:1::/122"]);
  });

  it("withdraws on reconfiguration and removes everything when the session drops", async () => {
    const { a, bFib, aCfg } = await pair();
    await waitFor("2 routes", () => bFib.desired().length === 2, 10_000, 20);
    await a.reconfigure({
      ...aCfg,
      originate: [aCfg.originate[0] as BgpdConfig["originate"][number]],
    });
    await waitFor("v6 withdrawn", () => bFib.desired().length === 1, 10_000, 20);
    expect(bFib.desired()[0]?.dst).toBe("10.244.1.0/26");
    await a.stop();
    await waitFor("all removed after the drop", () => bFib.desired().length === 0, 10_000, 20);
  });
});

describe("Speaker over loopback (eBGP)", () => {
  it("prepends our AS and applies an import filter change without a reset", async () => {
    const { b, bFib, bCfg } = await pair({}, 65001);
    await waitFor("2 routes", () => bFib.desired().length === 2, 10_000, 20);
    const e = [...b.rib.locRib()].find((r) => r.prefix === "10.244.1.0/26");
    expect(e?.attrs.asPath).toEqual([{ type: 2, asns: [64512] }]);
    const before = b.status().peers[0]?.establishedTransitions;
    const peer = bCfg.peers[0] as BgpdConfig["peers"][number];
    await b.reconfigure({
      ...bCfg,
      peers: [
        {
          ...peer,
          importFilter: {
            rules: [{ action: "Reject", cidr: "10.244.0.0/16", matchOperator: "In" }],
          },
        },
      ],
    });
    await waitFor("v4 filtered", () => bFib.desired().length === 1, 10_000, 20);
    expect(bFib.desired()[0]?.dst).toBe("fd00:1::/122");
    expect(b.status().peers[0]?.establishedTransitions).toBe(before);
    expect(b.status().peers[0]?.prefixes.accepted).toBe(1);
  });

  it("applies an export filter change by refresh: the peer loses the prefix, the session stays", async () => {
    const { a, bFib, aCfg } = await pair({}, 65001);
    await waitFor("2 routes", () => bFib.desired().length === 2, 10_000, 20);
    const peer = aCfg.peers[0] as BgpdConfig["peers"][number];
    const before = a.status().peers[0]?.establishedTransitions;
    await a.reconfigure({
      ...aCfg,
      peers: [
        {
          ...peer,
          exportFilter: {
            rules: [{ action: "Reject", cidr: "10.244.1.0/26", matchOperator: "Equal" }],
          },
        },
      ],
    });
    await waitFor("v4 block withdrawn from b", () => bFib.desired().length === 1, 10_000, 20);
    expect(bFib.desired()[0]?.dst).toBe("fd00:1::/122");
    expect(a.status().peers[0]?.establishedTransitions).toBe(before);
    expect(a.status().peers[0]?.prefixes.advertised).toBe(1);
    // And back: the prefix is announced again.
    await a.reconfigure({ ...aCfg, peers: [peer] });
    await waitFor("v4 block back", () => bFib.desired().length === 2, 10_000, 20);
  });
});
