// Update groups of the speaker: peers whose export inputs are equal share one group (one
// encoding for all). A reflector's clients, each with its own (rule-less) per-peer filter, are one
// group, not one each; a client with export rules of its own gets its own.
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/bgp/config.js";
import { makeWireBridge } from "../../src/bgp/speaker/attrs.js";
import { SpeakerCore } from "../../src/bgp/speaker/core.js";

function core(peers: Record<string, unknown>[]): SpeakerCore<unknown> {
  const config = parseConfig({
    asn: 64512,
    routerId: "192.0.2.254",
    clusterId: "192.0.2.254",
    listen: { address: "192.0.2.254", port: 179 },
    peers,
    status: { socket: "/nonexistent" },
  });
  return new SpeakerCore(config, {
    bridge: makeWireBridge(),
    now: () => 0,
    fib: false,
    localAddressesToward: () => ({ v4: "192.0.2.254" }),
  }) as SpeakerCore<unknown>;
}

const client = (i: number) => ({
  address: `192.0.2.${i}`,
  asn: 64512,
  passive: true,
  routeReflectorClient: true,
});

describe("update groups", () => {
  it("reflector clients with the same export inputs share one group", () => {
    const c = core([1, 2, 3, 4, 5, 6, 7, 8].map(client));
    c.handle({ kind: "start" });
    expect(c.rib.stats().updateGroups).toBe(1);
    expect(c.rib.peerGroup("192.0.2.1").peers).toHaveLength(8);
  });

  it("a client with export rules of its own gets its own group", () => {
    const c = core([
      ...[1, 2, 3].map(client),
      {
        ...client(4),
        exportFilter: {
          rules: [{ cidr: "10.9.0.0/16", matchOperator: "In", action: "Reject" }],
        },
      },
    ]);
    c.handle({ kind: "start" });
    expect(c.rib.stats().updateGroups).toBe(2);
    expect(c.rib.peerGroup("192.0.2.4").peers).toEqual(["192.0.2.4"]);
  });
});
