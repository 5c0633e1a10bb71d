import { describe, expect, it } from "vitest";
import { peerPolicies } from "../../src/bgp/policy/defaults.js";
import { NO_ADVERTISE, NO_EXPORT, NO_EXPORT_SUBCONFED } from "../../src/bgp/rib/attrs.js";
import { parseRouterId } from "../../src/bgp/rib/prefix.js";
import { seq } from "../../src/bgp/rib/simple_attrs.js";
import {
  announce,
  applyBatches,
  LOCAL_AS,
  makeRib,
  type PeerTables,
  peer,
  tableOf,
  withdraw,
} from "./fixtures.js";

const P = "203.0.113.0/24";

function attrsSent(rib: ReturnType<typeof makeRib>, peerId: string, prefix = P) {
  for (const a of rib.adjRibOut(peerId))
    if ([...a.v4.toStrings(), ...a.v6.toStrings()].includes(prefix)) return a.attrs;
  return undefined;
}

describe("import checks", () => {
  it("rejects a path with our AS in AS_PATH and counts it; allowOwnAs lets n occurrences in", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "192.0.2.1", asn: 65001 });
    const b = peer(rib, { address: "192.0.2.2", asn: 65002, allowOwnAs: 1 });
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001, LOCAL_AS) });
    announce(rib, b, P, { nextHop: "192.0.2.2", asPath: seq(65002, LOCAL_AS, 65009) });
    announce(rib, b, "198.51.100.0/24", {
      nextHop: "192.0.2.2",
      asPath: seq(65002, LOCAL_AS, LOCAL_AS),
    });
    rib.drain();
    expect(rib.peerCounts(a)).toMatchObject({
      received: 1,
      accepted: 0,
      rejected: { AsPathLoop: 1 },
    });
    expect(rib.peerCounts(b)).toMatchObject({
      received: 2,
      accepted: 1,
      rejected: { AsPathLoop: 1 },
    });
    const e = rib.explain(P);
    expect(e?.paths.find((p) => p.peer === "192.0.2.1")).toMatchObject({
      accepted: false,
      rejectReason: "AsPathLoop",
    });
    expect(e).toMatchObject({ bestReason: "OnlyPath", nexthops: ["192.0.2.2"] });
    expect(rib.explain("198.51.100.0/24")?.bestReason).toBe("None");
  });

  it("rejects reflected routes carrying our ORIGINATOR_ID or our cluster id (RFC 4456 §8)", () => {
    const rib = makeRib({ clusterId: "10.255.0.1" });
    const a = peer(rib, { address: "10.0.0.1", asn: LOCAL_AS });
    announce(rib, a, P, { nextHop: "10.0.0.9", originatorId: parseRouterId("10.0.0.100") });
    announce(rib, a, "198.51.100.0/24", {
      nextHop: "10.0.0.9",
      clusterList: [5, parseRouterId("10.255.0.1")],
    });
    announce(rib, a, "198.51.101.0/24", { nextHop: "10.0.0.9", clusterList: [5] });
    rib.drain();
    expect(rib.peerCounts(a)).toMatchObject({
      received: 3,
      accepted: 1,
      rejected: { OriginatorIdLoop: 1, ClusterListLoop: 1 },
    });
  });

  it("a peer with few paths among many attribute sets gets the same verdicts without a cache the table's size", () => {
    // A reflector's clients: each sends one path with an attribute set of its own, so the
    // attribute ids run to ~N while each client holds one path.
    const rib = makeRib({ clusterId: "10.255.0.1" });
    const n = 300;
    const clients = Array.from({ length: n }, (_, i) =>
      peer(rib, {
        address: `10.1.${i >> 8}.${i & 255}`,
        asn: LOCAL_AS,
        routeReflectorClient: true,
      }),
    );
    const ours = parseRouterId("10.255.0.1");
    for (const [i, c] of clients.entries()) {
      // Every tenth carries our cluster id (a reflection loop), the others are accepted.
      announce(rib, c, `10.128.${i >> 2}.${(i & 3) * 64}/26`, {
        nextHop: `10.1.${i >> 8}.${i & 255}`,
        clusterList: i % 10 === 9 ? [7, ours] : [7 + i],
      });
      rib.drain();
    }
    // The last client again, with the same set (a verdict not cached is worked out again).
    const last = n - 1;
    announce(rib, clients[last] as number, `10.128.${last >> 2}.${(last & 3) * 64}/26`, {
      nextHop: `10.1.${last >> 8}.${last & 255}`,
      clusterList: [7, ours],
    });
    rib.drain();
    for (const [i, c] of clients.entries())
      expect(rib.peerCounts(c)).toMatchObject(
        i % 10 === 9
          ? { received: 1, accepted: 0, rejected: { ClusterListLoop: 1 } }
          : { received: 1, accepted: 1 },
      );
    const caches = (rib as unknown as { peers: { verdict: Uint8Array }[] }).peers.map(
      (r) => r.verdict.length,
    );
    expect(Math.max(...caches)).toBeLessThanOrEqual(128);
  });

  it("an import filter reject is kept (soft reconfiguration) and re-evaluated when the policy changes", () => {
    const rib = makeRib();
    const pools = ["10.244.0.0/16"];
    const a = peer(rib, {
      address: "192.0.2.1",
      asn: 65001,
      ...peerPolicies({ external: true, pools }),
    });
    announce(rib, a, "10.244.1.0/26", { nextHop: "192.0.2.1", asPath: seq(65001) });
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001) });
    let ch = rib.drain();
    expect(ch.fib.routes().set.map((r) => r.dst)).toEqual([P]);
    const e = rib.explain("10.244.1.0/26");
    expect(e?.paths[0]).toMatchObject({
      rejectReason: "OwnPoolPrefix",
      rejectDetail: "default: inside our pool 10.244.0.0/16",
    });
    // A filter now accepts the pool prefix: no route refresh needed.
    rib.setImportPolicy(
      a,
      peerPolicies({
        external: true,
        pools,
        filters: [
          {
            name: "f",
            spec: {
              importV4: [{ cidr: "10.244.1.0/26", matchOperator: "Equal", action: "Accept" }],
            },
          },
        ],
      }).importPolicy,
    );
    ch = rib.drain();
    expect(ch.fib.routes().set.map((r) => r.dst)).toEqual(["10.244.1.0/26"]);
    expect(rib.peerCounts(a)).toMatchObject({ received: 2, accepted: 2 });
  });
});

describe("export rules", () => {
  it("eBGP: prepend our AS, next hop self, no LOCAL_PREF, no MED from another AS, no RR attributes", () => {
    const rib = makeRib({ clusterId: "10.255.0.1" });
    const i = peer(rib, { address: "10.0.0.1", asn: LOCAL_AS });
    peer(rib, { address: "192.0.2.5", asn: 65005, nextHopSelfV4: "192.0.2.100" });
    announce(rib, i, P, {
      nextHop: "10.0.0.1",
      asPath: seq(65001),
      localPref: 300,
      med: 7,
      originatorId: 42,
      clusterList: [9],
    });
    rib.originate("10.244.1.0/26", { med: 20, communities: [0xfc000064] });
    rib.drain();
    const out = attrsSent(rib, "192.0.2.5");
    expect(out).toMatchObject({
      asPath: seq(LOCAL_AS, 65001),
      nextHop: "192.0.2.100",
      clusterList: [],
    });
    expect(out?.localPref).toBeUndefined();
    expect(out?.med).toBeUndefined();
    expect(out?.originatorId).toBeUndefined();
    // Our own origination keeps the MED we set, and its communities.
    expect(attrsSent(rib, "192.0.2.5", "10.244.1.0/26")).toMatchObject({
      asPath: seq(LOCAL_AS),
      med: 20,
      communities: [0xfc000064],
      nextHop: "192.0.2.100",
    });
  });

  it("iBGP split horizon: no reflection without a cluster id; next hop self for eBGP-learned", () => {
    const rib = makeRib();
    const i1 = peer(rib, { address: "10.0.0.1", asn: LOCAL_AS, nextHopSelfV4: "10.0.0.100" });
    peer(rib, { address: "10.0.0.2", asn: LOCAL_AS, nextHopSelfV4: "10.0.0.100" });
    const e = peer(rib, { address: "192.0.2.1", asn: 65001 });
    announce(rib, i1, P, { nextHop: "10.0.0.1" });
    announce(rib, e, "198.51.100.0/24", { nextHop: "192.0.2.1", asPath: seq(65001) });
    rib.drain();
    expect(attrsSent(rib, "10.0.0.2")).toBeUndefined();
    expect(attrsSent(rib, "10.0.0.2", "198.51.100.0/24")).toMatchObject({
      nextHop: "10.0.0.100",
      localPref: 100,
      asPath: seq(65001),
    });
  });

  it("route reflection: client routes to everyone, non-client routes to clients only, with ORIGINATOR_ID and CLUSTER_LIST", () => {
    const cluster = parseRouterId("10.255.0.1");
    const rib = makeRib({ clusterId: cluster });
    const c1 = peer(
      rib,
      { address: "10.0.0.1", asn: LOCAL_AS, routeReflectorClient: true },
      "1.1.1.1",
    );
    peer(rib, { address: "10.0.0.2", asn: LOCAL_AS, routeReflectorClient: true }, "2.2.2.2");
    const n1 = peer(rib, { address: "10.0.0.3", asn: LOCAL_AS }, "3.3.3.3");
    peer(rib, { address: "10.0.0.4", asn: LOCAL_AS }, "4.4.4.4");
    announce(rib, c1, P, { nextHop: "10.0.0.1", localPref: 150 });
    announce(rib, n1, "198.51.100.0/24", { nextHop: "10.0.0.3" });
    rib.drain();
    const reflected = {
      nextHop: "10.0.0.1",
      localPref: 150,
      originatorId: parseRouterId("1.1.1.1"),
      clusterList: [cluster],
    };
    expect(attrsSent(rib, "10.0.0.2")).toMatchObject(reflected);
    expect(attrsSent(rib, "10.0.0.3")).toMatchObject(reflected);
    expect(attrsSent(rib, "10.0.0.4")).toMatchObject(reflected);
    // Not back to the client it came from.
    expect(attrsSent(rib, "10.0.0.1")).toBeUndefined();
    // Non-client route: to clients only.
    expect(attrsSent(rib, "10.0.0.1", "198.51.100.0/24")).toMatchObject({
      originatorId: parseRouterId("3.3.3.3"),
    });
    expect(attrsSent(rib, "10.0.0.2", "198.51.100.0/24")).toBeDefined();
    expect(attrsSent(rib, "10.0.0.4", "198.51.100.0/24")).toBeUndefined();
    expect(rib.peerCounts("10.0.0.1").advertised).toBe(1);
    expect(rib.peerCounts("10.0.0.2").advertised).toBe(2);
    expect(rib.peerCounts("10.0.0.4").advertised).toBe(1);
  });

  it("a route is not sent back to the peer it came from, even inside a shared update group", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "192.0.2.1", asn: 65001 }, "1.1.1.1");
    const b = peer(rib, { address: "192.0.2.2", asn: 65001 }, "2.2.2.2");
    expect(rib.peerGroup(a)).toEqual(rib.peerGroup(b));
    const tables: PeerTables = new Map();
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001) });
    let ch = rib.drain();
    applyBatches(tables, ch.adjOut);
    expect(ch.adjOut.map((x) => x.peers)).toEqual([["192.0.2.2"]]);
    // Best moves to b (lower MED): a now gets it, b gets a withdraw.
    announce(rib, b, P, { nextHop: "192.0.2.2", asPath: seq(65001), med: 0 });
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001), med: 10 });
    ch = rib.drain();
    applyBatches(tables, ch.adjOut);
    expect(tables.get("192.0.2.1")).toEqual(tableOf(rib, "192.0.2.1"));
    expect(tables.get("192.0.2.2")).toEqual(tableOf(rib, "192.0.2.2"));
    expect(tables.get("192.0.2.1")?.size).toBe(1);
    expect(tables.get("192.0.2.2")?.size).toBe(0);
    withdraw(rib, b, P);
    ch = rib.drain();
    applyBatches(tables, ch.adjOut);
    expect(tables.get("192.0.2.1")?.size).toBe(0);
    expect(tables.get("192.0.2.2")?.size).toBe(1);
  });

  it("honours NO_ADVERTISE, NO_EXPORT and NO_EXPORT_SUBCONFED", () => {
    const rib = makeRib();
    const src = peer(rib, { address: "192.0.2.1", asn: 65001 });
    peer(rib, { address: "192.0.2.2", asn: 65002 });
    peer(rib, { address: "10.0.0.2", asn: LOCAL_AS });
    announce(rib, src, "198.51.100.0/24", {
      nextHop: "192.0.2.1",
      asPath: seq(65001),
      communities: [NO_EXPORT],
    });
    announce(rib, src, "198.51.101.0/24", {
      nextHop: "192.0.2.1",
      asPath: seq(65001),
      communities: [NO_EXPORT_SUBCONFED],
    });
    announce(rib, src, "198.51.102.0/24", {
      nextHop: "192.0.2.1",
      asPath: seq(65001),
      communities: [NO_ADVERTISE],
    });
    const ch = rib.drain();
    expect(ch.fib.size).toBe(3);
    expect([...tableOf(rib, "192.0.2.2").keys()]).toEqual([]);
    expect([...tableOf(rib, "10.0.0.2").keys()].sort()).toEqual([
      "198.51.100.0/24",
      "198.51.101.0/24",
    ]);
  });

  it("default external export policy: only our originations, unless a filter accepts", () => {
    const rib = makeRib();
    const pools = ["10.244.0.0/16"];
    const e1 = peer(rib, {
      address: "192.0.2.1",
      asn: 65001,
      ...peerPolicies({ external: true, pools }),
    });
    peer(rib, {
      address: "192.0.2.2",
      asn: 65002,
      ...peerPolicies({
        external: true,
        pools,
        filters: [
          {
            name: "transit",
            spec: {
              exportV4: [
                {
                  cidr: "198.51.0.0/16",
                  matchOperator: "In",
                  source: "RemotePeers",
                  action: "Accept",
                },
              ],
            },
          },
        ],
      }),
    });
    const i = peer(rib, {
      address: "10.0.0.2",
      asn: LOCAL_AS,
      ...peerPolicies({ external: false, pools }),
    });
    rib.originate("10.244.1.0/26");
    announce(rib, e1, "198.51.100.0/24", { nextHop: "192.0.2.1", asPath: seq(65001) });
    announce(rib, i, "10.244.2.0/26", { nextHop: "10.0.0.2" });
    rib.drain();
    expect([...tableOf(rib, "192.0.2.1").keys()]).toEqual(["10.244.1.0/26"]);
    expect([...tableOf(rib, "192.0.2.2").keys()].sort()).toEqual([
      "10.244.1.0/26",
      "198.51.100.0/24",
    ]);
    expect([...tableOf(rib, "10.0.0.2").keys()].sort()).toEqual([
      "10.244.1.0/26",
      "198.51.100.0/24",
    ]);
  });

  it("families: a peer without IPv6 gets no IPv6 routes", () => {
    const rib = makeRib();
    const src = peer(rib, { address: "192.0.2.1", asn: 65001 });
    peer(rib, { address: "192.0.2.2", asn: 65002, families: ["ipv4-unicast"] });
    announce(rib, src, "2001:db8::/32", { nextHop: "2001:db8::1", asPath: seq(65001) });
    announce(rib, src, P, { nextHop: "192.0.2.1", asPath: seq(65001) });
    rib.drain();
    expect([...tableOf(rib, "192.0.2.2").keys()]).toEqual([P]);
  });

  it("a peer added later starts from the current table; removePeer withdraws its paths", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "192.0.2.1", asn: 65001 });
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001) });
    rib.drain();
    peer(rib, { address: "192.0.2.9", asn: 65009 });
    expect([...tableOf(rib, "192.0.2.9").keys()]).toEqual([P]);
    rib.removePeer(a);
    const ch = rib.drain();
    expect(ch.fib.routes().remove.map((r) => r.dst)).toEqual([P]);
    expect(ch.adjOut.flatMap((b) => b.withdraw.v4.toStrings())).toEqual([P]);
    expect(rib.size.v4).toBe(0);
  });
});

describe("explainExport", () => {
  it("says why a prefix is or is not advertised to a peer, with the rule that decided", () => {
    const rib = makeRib();
    const pools = ["10.244.0.0/16"];
    const ext = peer(rib, {
      address: "192.0.2.1",
      asn: 65001,
      families: ["ipv4-unicast"],
      nextHopSelfV4: "192.0.2.100",
      ...peerPolicies({
        external: true,
        pools,
        filters: [
          {
            name: "no-26",
            spec: {
              exportV4: [{ cidr: "10.244.9.0/26", matchOperator: "Equal", action: "Reject" }],
            },
          },
        ],
      }),
    });
    const mesh = peer(rib, { address: "10.0.0.2", asn: LOCAL_AS });
    rib.originate("10.244.1.0/26");
    rib.originate("10.244.9.0/26");
    announce(rib, mesh, P, { nextHop: "10.0.0.2" });
    announce(rib, ext, "198.51.100.0/24", { nextHop: "192.0.2.1", asPath: seq(65001) });
    rib.originate("2001:db8:1::/48");
    rib.drain();
    expect(rib.explainExport("10.244.1.0/26", ext)).toMatchObject({
      advertised: true,
      attrs: { asPath: seq(LOCAL_AS), nextHop: "192.0.2.100" },
    });
    expect(rib.explainExport("10.244.9.0/26", ext)).toMatchObject({
      advertised: false,
      reason: "FilterReject",
      detail: 'filter "no-26" exportV4[0] 10.244.9.0/26 Equal Reject',
    });
    expect(rib.explainExport(P, ext)).toMatchObject({
      advertised: false,
      reason: "NotOriginatedHere",
    });
    expect(rib.explainExport(P, mesh)).toMatchObject({ advertised: false, reason: "FromThisPeer" });
    expect(rib.explainExport("198.51.100.0/24", ext)).toMatchObject({
      advertised: false,
      reason: "FromThisPeer",
    });
    expect(rib.explainExport("198.51.100.0/24", mesh)).toMatchObject({ advertised: true });
    expect(rib.explainExport("2001:db8:1::/48", ext)).toMatchObject({
      advertised: false,
      reason: "FamilyNotEnabled",
    });
    expect(rib.explainExport("192.0.2.0/24", ext)).toMatchObject({
      advertised: false,
      reason: "NoBestPath",
    });
  });

  it("iBGP split horizon is named as the reason", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "10.0.0.1", asn: LOCAL_AS });
    peer(rib, { address: "10.0.0.2", asn: LOCAL_AS });
    announce(rib, a, P, { nextHop: "10.0.0.1" });
    rib.drain();
    expect(rib.explainExport(P, "10.0.0.2")).toMatchObject({
      advertised: false,
      reason: "IbgpSplitHorizon",
    });
  });
});

describe("4-octet AS numbers", () => {
  it("loop detection, prepend and eBGP/iBGP classification work above 65535 and 2^31", () => {
    const rib = makeRib({ localAs: 4200000001 });
    const ext = peer(rib, { address: "192.0.2.1", asn: 4200000002, nextHopSelfV4: "192.0.2.100" });
    const ibgp = peer(rib, { address: "10.0.0.2", asn: 4200000001 });
    announce(rib, ext, P, { nextHop: "192.0.2.1", asPath: seq(4200000002, 4294967294) });
    announce(rib, ext, "198.51.100.0/24", {
      nextHop: "192.0.2.1",
      asPath: seq(4200000002, 4200000001),
    });
    rib.originate("10.244.1.0/26");
    rib.drain();
    expect(rib.peerCounts(ext)).toMatchObject({ accepted: 1, rejected: { AsPathLoop: 1 } });
    expect(rib.explainExport("10.244.1.0/26", ext)).toMatchObject({
      attrs: { asPath: seq(4200000001) },
    });
    expect(rib.explainExport(P, ibgp)).toMatchObject({
      advertised: true,
      attrs: { asPath: seq(4200000002, 4294967294) },
    });
    expect(rib.explain(P)?.paths[0]?.ibgp).toBe(false);
  });
});
