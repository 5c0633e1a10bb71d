// Route reflection over loopback: three speakers in one AS, the middle one reflects between its
// clients (RFC 4456: ORIGINATOR_ID, CLUSTER_LIST, next hop kept); without the client flag the
// iBGP split horizon keeps the route from the third speaker.
import { afterEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/bgp/config.js";
import { realClock } from "../../src/bgp/io/clock.js";
import { makeWireBridge } from "../../src/bgp/speaker/attrs.js";
import { Speaker } from "../../src/bgp/speaker/runtime.js";
import { MemoryFib } from "../../src/fib/memory_fib.js";
import { waitFor } from "../helpers/netns.js";

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

async function node(i: number, peers: object[], extra: object = {}) {
  const cfg = parseConfig({
    asn: 64512,
    routerId: `10.0.0.${i}`,
    listen: { address: `127.0.0.${i}`, port: 0 },
    peers,
    status: { socket: "/nonexistent" },
    ...extra,
  });
  const fib = new MemoryFib();
  const s = new Speaker(cfg, { clock: realClock, fib, bridge: makeWireBridge() });
  await s.start();
  stops.push(() => s.stop());
  return { s, fib };
}

async function triangle(rrClient: boolean) {
  // The reflector is passive towards both; the clients connect to its port.
  const rr = await node(
    21,
    [
      { address: "127.0.0.22", asn: 64512, passive: true, routeReflectorClient: rrClient },
      { address: "127.0.0.23", asn: 64512, passive: true, routeReflectorClient: rrClient },
    ],
    { clusterId: "10.0.0.99" },
  );
  const port = rr.s.listenPort;
  const c2 = await node(
    22,
    [{ address: "127.0.0.21", asn: 64512, port, connectRetryTime: 1, sourceAddress: "127.0.0.22" }],
    {
      originate: [{ prefix: "10.244.2.0/26" }],
    },
  );
  const c3 = await node(23, [
    { address: "127.0.0.21", asn: 64512, port, connectRetryTime: 1, sourceAddress: "127.0.0.23" },
  ]);
  return { rr, c2, c3 };
}

describe("Speaker route reflection", () => {
  it("reflects a client's route to the other client with ORIGINATOR_ID and CLUSTER_LIST", async () => {
    const { c3 } = await triangle(true);
    await waitFor("reflected route", () => c3.fib.desired().length === 1, 10_000, 20);
    expect(c3.fib.desired()[0]).toMatchObject({
      dst: "10.244.2.0/26",
      nexthops: [{ gateway: "127.0.0.22" }],
    });
    const e = [...c3.s.rib.locRib()].find((r) => r.prefix === "10.244.2.0/26");
    expect(e?.attrs.originatorId).toBe(0x0a000016);
    expect(e?.attrs.clusterList).toEqual([0x0a000063]);
  });

  it("does not pass an iBGP route to another iBGP peer without the client flag", async () => {
    const { rr, c3 } = await triangle(false);
    await waitFor("the reflector learned it", () => rr.fib.desired().length === 1, 10_000, 20);
    await waitFor(
      "c3 Established",
      () => c3.s.status().peers[0]?.state === "Established",
      10_000,
      20,
    );
    await new Promise((r) => setTimeout(r, 1000));
    expect(c3.fib.desired()).toEqual([]);
  });
});
