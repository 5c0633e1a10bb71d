// Update groups of the speaker: peers whose export inputs are equal share one group (one
// encoding for all). A reflector's clients, each with its own (rule-less) per-peer filter, are one
// group, not one each; a client with export rules of its own gets its own.
import { describe, expect, it } from "vitest";
import { type PeerConfig, parseConfig } from "../../src/bgp/config.js";
import { makeWireBridge } from "../../src/bgp/speaker/attrs.js";
import { type PeerPolicies, SpeakerCore, sharedPolicies } from "../../src/bgp/speaker/core.js";

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

  it("peers without filter rules share their policies by session type, and a reload that gives one rules moves it out and back", () => {
    const ebgp = (i: number) => ({ address: `192.0.2.${i}`, asn: 65001, passive: true });
    const plain = [...[1, 2, 3].map(client), ...[11, 12].map(ebgp)];
    const c = core(plain);
    c.handle({ kind: "start" });
    // The clients one group, the two eBGP peers (same default policies) one more.
    expect(c.rib.stats().updateGroups).toBe(2);
    expect(c.rib.peerGroup("192.0.2.11").peers).toEqual(["192.0.2.11", "192.0.2.12"]);
    const reconfigure = (peers: Record<string, unknown>[]) =>
      c.handle({
        kind: "reconfigure",
        config: parseConfig({
          asn: 64512,
          routerId: "192.0.2.254",
          clusterId: "192.0.2.254",
          listen: { address: "192.0.2.254", port: 179 },
          peers,
          status: { socket: "/nonexistent" },
        }),
      });
    const rules = { rules: [{ cidr: "10.9.0.0/16", matchOperator: "In", action: "Reject" }] };
    reconfigure([...plain.slice(0, 2), { ...client(3), exportFilter: rules }, ...plain.slice(3)]);
    expect(c.rib.stats().updateGroups).toBe(3);
    expect(c.rib.peerGroup("192.0.2.3").peers).toEqual(["192.0.2.3"]);
    reconfigure(plain);
    expect(c.rib.stats().updateGroups).toBe(2);
    expect(c.rib.peerGroup("192.0.2.3").peers).toHaveLength(3);
  });

  it("one pair of policies serves every peer without rules of a session type", () => {
    const plain = new Map<string, PeerPolicies>();
    const cfg = (peers: Record<string, unknown>[]) =>
      parseConfig({
        asn: 64512,
        routerId: "192.0.2.254",
        listen: { address: "192.0.2.254", port: 179 },
        peers,
        status: { socket: "/nonexistent" },
      }).peers;
    const rules = { rules: [{ cidr: "10.9.0.0/16", matchOperator: "In", action: "Reject" }] };
    const [a, b, e1, e2, r] = cfg([
      client(1),
      client(2),
      { address: "192.0.2.11", asn: 65001 },
      { address: "192.0.2.12", asn: 65002 },
      { ...client(3), importFilter: rules },
    ]);
    const pa = sharedPolicies(plain, a as PeerConfig, 64512);
    expect(sharedPolicies(plain, b as PeerConfig, 64512)).toBe(pa);
    const pe = sharedPolicies(plain, e1 as PeerConfig, 64512);
    expect(pe).not.toBe(pa);
    expect(sharedPolicies(plain, e2 as PeerConfig, 64512)).toBe(pe);
    expect(pe.exportPolicy.key).not.toBe(pa.exportPolicy.key);
    const pr = sharedPolicies(plain, r as PeerConfig, 64512);
    expect(pr).not.toBe(pa);
    expect(pr.importPolicy.key).not.toBe(pa.importPolicy.key);
    expect(plain.size).toBe(2);
    // Another normal route priority (its LOCAL_PREF and metrics) is another shared pair.
    const pp = sharedPolicies(plain, a as PeerConfig, 64512, { v4: 500, v6: 1024 });
    expect(pp).not.toBe(pa);
    expect(plain.size).toBe(3);
  });
});
