import { describe, expect, it } from "vitest";
import {
  AS_CONFED_SEQUENCE,
  AS_SEQUENCE,
  AS_SET,
  ORIGIN_IGP,
  ORIGIN_INCOMPLETE,
} from "../../src/bgp/rib/attrs.js";
import { parseRouterId } from "../../src/bgp/rib/prefix.js";
import { seq } from "../../src/bgp/rib/simple_attrs.js";
import { announce, LOCAL_AS, makeRib, peer, withdraw } from "./fixtures.js";

const P = "203.0.113.0/24";

function bestOf(rib: ReturnType<typeof makeRib>) {
  rib.drain();
  const e = rib.explain(P);
  if (!e) throw new Error("no entry");
  const best = e.paths.find((p) => p.best);
  return { reason: e.bestReason, peer: best?.peer, nexthops: e.nexthops, e };
}

describe("decision process (RFC 4271 §9.1.2.2), each step with its reason", () => {
  it("OnlyPath when one path is accepted", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "192.0.2.1", asn: 65001 });
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001) });
    expect(bestOf(rib)).toMatchObject({
      reason: "OnlyPath",
      peer: "192.0.2.1",
      nexthops: ["192.0.2.1"],
    });
  });

  it("Local: our origination wins over a learned path with better attributes", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "10.0.0.1", asn: LOCAL_AS });
    announce(rib, a, P, { nextHop: "10.0.0.1", localPref: 1000 });
    rib.originate(P);
    const b = bestOf(rib);
    expect(b).toMatchObject({ reason: "Local", peer: "local" });
    // Locally originated routes are not handed to the FIB (the agent owns the blackhole).
    expect(b.nexthops).toEqual([]);
  });

  it("LocalPref: highest wins among iBGP paths; eBGP paths get the default", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "10.0.0.1", asn: LOCAL_AS });
    const b = peer(rib, { address: "10.0.0.2", asn: LOCAL_AS });
    const c = peer(rib, { address: "192.0.2.1", asn: 65001 });
    announce(rib, a, P, { nextHop: "10.0.0.1", localPref: 100 });
    announce(rib, b, P, { nextHop: "10.0.0.2", localPref: 200, asPath: seq(65001, 65002, 65003) });
    // eBGP LOCAL_PREF is ignored (RFC 4271 §5.1.5): 300 here counts as the default 100.
    announce(rib, c, P, { nextHop: "192.0.2.1", localPref: 300, asPath: seq(65001) });
    expect(bestOf(rib)).toMatchObject({ reason: "LocalPref", peer: "10.0.0.2" });
  });

  it("AsPathLength: shortest wins; AS_SET counts 1, confederation segments 0", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "192.0.2.1", asn: 65001 });
    const b = peer(rib, { address: "192.0.2.2", asn: 65002 });
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001, 65010, 65011) });
    announce(rib, b, P, {
      nextHop: "192.0.2.2",
      asPath: [
        { type: AS_CONFED_SEQUENCE, asns: [65100, 65101, 65102] },
        { type: AS_SEQUENCE, asns: [65002] },
        { type: AS_SET, asns: [65020, 65021, 65022] },
      ],
    });
    expect(bestOf(rib)).toMatchObject({ reason: "AsPathLength", peer: "192.0.2.2" });
  });

  it("Origin: IGP beats INCOMPLETE", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "192.0.2.1", asn: 65001 });
    const b = peer(rib, { address: "192.0.2.2", asn: 65002 });
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001), origin: ORIGIN_INCOMPLETE });
    announce(rib, b, P, { nextHop: "192.0.2.2", asPath: seq(65002), origin: ORIGIN_IGP });
    expect(bestOf(rib)).toMatchObject({ reason: "Origin", peer: "192.0.2.2" });
  });

  it("Med: lowest among the same neighbour AS; a missing MED counts as 0", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "192.0.2.1", asn: 65001 }, "9.9.9.1");
    const b = peer(rib, { address: "192.0.2.2", asn: 65001 }, "1.1.1.1");
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001) });
    announce(rib, b, P, { nextHop: "192.0.2.2", asPath: seq(65001), med: 5 });
    expect(bestOf(rib)).toMatchObject({ reason: "Med", peer: "192.0.2.1" });
  });

  it("Med is not compared across different neighbour ASes", () => {
    const rib = makeRib({ multipath: false });
    const a = peer(rib, { address: "192.0.2.1", asn: 65001 }, "9.9.9.1");
    const b = peer(rib, { address: "192.0.2.2", asn: 65002 }, "1.1.1.1");
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001), med: 1 });
    announce(rib, b, P, { nextHop: "192.0.2.2", asPath: seq(65002), med: 500 });
    // Both survive the MED step; the router id decides.
    expect(bestOf(rib)).toMatchObject({ reason: "RouterId", peer: "192.0.2.2" });
  });

  it("EbgpOverIbgp", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "10.0.0.1", asn: LOCAL_AS }, "1.1.1.1");
    const b = peer(rib, { address: "192.0.2.2", asn: 65002 }, "9.9.9.9");
    announce(rib, a, P, { nextHop: "10.0.0.1", asPath: seq(65002) });
    announce(rib, b, P, { nextHop: "192.0.2.2", asPath: seq(65002) });
    expect(bestOf(rib)).toMatchObject({ reason: "EbgpOverIbgp", peer: "192.0.2.2" });
  });

  it("IgpCost: the hook's lowest cost to the next hop", () => {
    const rib = makeRib({ igpCost: (nh) => (nh === "10.0.0.1" ? 50 : 10) });
    const a = peer(rib, { address: "10.0.0.1", asn: LOCAL_AS }, "1.1.1.1");
    const b = peer(rib, { address: "10.0.0.2", asn: LOCAL_AS }, "9.9.9.9");
    announce(rib, a, P, { nextHop: "10.0.0.1" });
    announce(rib, b, P, { nextHop: "10.0.0.2" });
    expect(bestOf(rib)).toMatchObject({
      reason: "IgpCost",
      peer: "10.0.0.2",
      nexthops: ["10.0.0.2"],
    });
  });

  it("RouterId: lowest; ORIGINATOR_ID stands in for reflected routes (RFC 4456 §9)", () => {
    const rib = makeRib({ multipath: false });
    const a = peer(rib, { address: "10.0.0.1", asn: LOCAL_AS }, "1.1.1.1");
    const b = peer(rib, { address: "10.0.0.2", asn: LOCAL_AS }, "2.2.2.2");
    announce(rib, a, P, { nextHop: "10.0.0.1", originatorId: parseRouterId("8.8.8.8") });
    announce(rib, b, P, { nextHop: "10.0.0.2" });
    expect(bestOf(rib)).toMatchObject({ reason: "RouterId", peer: "10.0.0.2" });
  });

  it("ClusterListLength: shortest when the originator ids tie", () => {
    const rib = makeRib({ multipath: false });
    const a = peer(rib, { address: "10.0.0.1", asn: LOCAL_AS }, "1.1.1.1");
    const b = peer(rib, { address: "10.0.0.2", asn: LOCAL_AS }, "2.2.2.2");
    const o = parseRouterId("7.7.7.7");
    announce(rib, a, P, { nextHop: "10.0.0.9", originatorId: o, clusterList: [1, 2] });
    announce(rib, b, P, { nextHop: "10.0.0.9", originatorId: o, clusterList: [3] });
    expect(bestOf(rib)).toMatchObject({ reason: "ClusterListLength", peer: "10.0.0.2" });
  });

  it("PeerAddress: lowest when everything else ties (two sessions to one router)", () => {
    const rib = makeRib({ multipath: false });
    const a = peer(rib, { address: "192.0.2.9", asn: 65001 }, "5.5.5.5");
    const b = peer(rib, { address: "192.0.2.10", asn: 65001 }, "5.5.5.5");
    announce(rib, a, P, { nextHop: "192.0.2.9", asPath: seq(65001) });
    announce(rib, b, P, { nextHop: "192.0.2.10", asPath: seq(65001) });
    expect(bestOf(rib)).toMatchObject({ reason: "PeerAddress", peer: "192.0.2.9" });
  });

  it("PathId: ADD-PATH paths of one peer tie-break on the lowest path id", () => {
    const rib = makeRib({ multipath: false });
    const a = peer(rib, { address: "10.0.0.1", asn: LOCAL_AS });
    announce(rib, a, P, { nextHop: "10.0.0.7" }, 7);
    announce(rib, a, P, { nextHop: "10.0.0.3" }, 3);
    const b = bestOf(rib);
    expect(b).toMatchObject({ reason: "PathId", nexthops: ["10.0.0.3"] });
    expect(b.e.paths.find((p) => p.best)?.pathId).toBe(3);
  });

  it("the steps apply in order: local pref beats a shorter AS path", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "10.0.0.1", asn: LOCAL_AS });
    const b = peer(rib, { address: "10.0.0.2", asn: LOCAL_AS });
    announce(rib, a, P, { nextHop: "10.0.0.1", localPref: 150, asPath: seq(1, 2, 3, 4) });
    announce(rib, b, P, { nextHop: "10.0.0.2", localPref: 120, asPath: seq(1) });
    expect(bestOf(rib)).toMatchObject({ reason: "LocalPref", peer: "10.0.0.1" });
  });

  it("a withdraw re-runs the decision and the runner-up takes over", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "192.0.2.1", asn: 65001 });
    const b = peer(rib, { address: "192.0.2.2", asn: 65002 });
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001) });
    announce(rib, b, P, { nextHop: "192.0.2.2", asPath: seq(65002, 65003) });
    expect(bestOf(rib).peer).toBe("192.0.2.1");
    withdraw(rib, a, P);
    const ch = rib.drain();
    expect(ch.fib.routes().set.map((r) => [r.dst, r.nexthops])).toEqual([
      [P, [{ gateway: "192.0.2.2" }]],
    ]);
    expect(bestOf(rib)).toMatchObject({ reason: "OnlyPath", peer: "192.0.2.2" });
  });
});

describe("multipath (ECMP)", () => {
  it("paths equal up to the router-id step from the same neighbour AS form the FIB set", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "192.0.2.1", asn: 65001 }, "1.1.1.1");
    const b = peer(rib, { address: "192.0.2.2", asn: 65001 }, "2.2.2.2");
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001, 65100) });
    announce(rib, b, P, { nextHop: "192.0.2.2", asPath: seq(65001, 65200) });
    const ch = rib.drain();
    expect(ch.fib.routes().set).toEqual([
      {
        family: 4,
        dst: P,
        protocol: 201,
        nexthops: [{ gateway: "192.0.2.1" }, { gateway: "192.0.2.2" }],
      },
    ]);
    const e = rib.explain(P);
    expect(e?.bestReason).toBe("RouterId");
    expect(e?.paths.filter((p) => p.multipath).length).toBe(2);
  });

  it("different neighbour ASes are not combined unless relaxed", () => {
    for (const relax of [false, true]) {
      const rib = makeRib({ multipathRelax: relax });
      const a = peer(rib, { address: "192.0.2.1", asn: 65001 }, "1.1.1.1");
      const b = peer(rib, { address: "192.0.2.2", asn: 65002 }, "2.2.2.2");
      announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001) });
      announce(rib, b, P, { nextHop: "192.0.2.2", asPath: seq(65002) });
      rib.drain();
      expect(rib.explain(P)?.nexthops).toEqual(relax ? ["192.0.2.1", "192.0.2.2"] : ["192.0.2.1"]);
    }
  });

  it("a path that loses before the multipath point is left out; multipath off gives one hop", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "10.0.0.1", asn: LOCAL_AS });
    const b = peer(rib, { address: "10.0.0.2", asn: LOCAL_AS });
    const c = peer(rib, { address: "10.0.0.3", asn: LOCAL_AS });
    announce(rib, a, P, { nextHop: "10.0.0.1" });
    announce(rib, b, P, { nextHop: "10.0.0.2" });
    announce(rib, c, P, { nextHop: "10.0.0.3", origin: ORIGIN_INCOMPLETE });
    rib.drain();
    expect(rib.explain(P)?.nexthops).toEqual(["10.0.0.1", "10.0.0.2"]);
    const single = makeRib({ multipath: false });
    const x = peer(single, { address: "10.0.0.1", asn: LOCAL_AS });
    const y = peer(single, { address: "10.0.0.2", asn: LOCAL_AS });
    announce(single, x, P, { nextHop: "10.0.0.1" });
    announce(single, y, P, { nextHop: "10.0.0.2" });
    single.drain();
    expect(single.explain(P)?.nexthops).toEqual(["10.0.0.1"]);
  });

  it("the FIB gets a change only when the next-hop set changes", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "192.0.2.1", asn: 65001 }, "1.1.1.1");
    const b = peer(rib, { address: "192.0.2.2", asn: 65001 }, "2.2.2.2");
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001) });
    expect(rib.drain().fib.size).toBe(1);
    // Same next hop, other attributes: no FIB change.
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001), med: 0, communities: [1] });
    expect(rib.drain().fib.size).toBe(0);
    announce(rib, b, P, { nextHop: "192.0.2.2", asPath: seq(65001) });
    expect(rib.drain().fib.routes().set[0]?.nexthops.length).toBe(2);
    rib.peerDown(a);
    rib.peerDown(b);
    expect(
      rib
        .drain()
        .fib.routes()
        .remove.map((r) => r.dst),
    ).toEqual([P]);
    expect(rib.size).toEqual({ v4: 0, v6: 0 });
  });
});

describe("IPv6", () => {
  it("stores, decides and formats IPv6 prefixes", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "2001:db8::1", asn: 65001 }, "1.1.1.1");
    announce(rib, a, "2001:db8:1::/48", { nextHop: "2001:db8::1", asPath: seq(65001) });
    announce(rib, a, "2001:db8:1::/64", { nextHop: "2001:db8::1", asPath: seq(65001) });
    const ch = rib.drain();
    expect(
      ch.fib
        .routes()
        .set.map((r) => `${r.family} ${r.dst}`)
        .sort(),
    ).toEqual(["6 2001:db8:1::/48", "6 2001:db8:1::/64"]);
    expect(rib.size).toEqual({ v4: 0, v6: 2 });
    withdraw(rib, a, "2001:db8:1::/48");
    expect(
      rib
        .drain()
        .fib.routes()
        .remove.map((r) => r.dst),
    ).toEqual(["2001:db8:1::/48"]);
    expect(rib.explain("2001:db8:1::/64")?.bestReason).toBe("OnlyPath");
  });
});
