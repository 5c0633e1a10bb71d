import { describe, expect, it } from "vitest";
import { peerPolicies } from "../../src/bgp/policy/defaults.js";
import { seq } from "../../src/bgp/rib/simple_attrs.js";
import {
  announce,
  applyBatches,
  LOCAL_AS,
  makeRib,
  type PeerTables,
  peer,
  tableOf,
} from "./fixtures.js";

const P = "203.0.113.0/24";
const Q = "198.51.100.0/24";

describe("peer lifecycle", () => {
  it("graceful restart: stale paths stay in use, refreshed ones are kept, the rest swept", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "192.0.2.1", asn: 65001 });
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001) });
    announce(rib, a, Q, { nextHop: "192.0.2.1", asPath: seq(65001) });
    rib.drain();
    expect(rib.markStale(a)).toBe(2);
    // Nothing changes for the FIB while the peer restarts.
    expect(rib.drain().fib.size).toBe(0);
    expect(rib.explain(P)?.paths[0]).toMatchObject({ stale: true, best: true });
    expect(rib.peerCounts(a)).toMatchObject({ received: 2, accepted: 2, stale: 2 });
    // After the restart the peer re-sends P only, then End-of-RIB.
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001) });
    expect(rib.peerCounts(a).stale).toBe(1);
    expect(rib.drain().fib.size).toBe(0);
    expect(rib.sweepStale(a)).toBe(1);
    const ch = rib.drain();
    expect(ch.fib.routes().remove.map((r) => r.dst)).toEqual([Q]);
    expect(rib.peerCounts(a)).toMatchObject({ received: 1, accepted: 1, stale: 0 });
    expect(rib.stats()).toMatchObject({
      prefixesV4: 1,
      prefixesV6: 0,
      paths: 1,
      updateGroups: 1,
      pending: 0,
    });
    expect(rib.explain(P)?.paths[0]?.stale).toBe(false);
  });

  it("updatePeer moves a peer to its new update group and keeps its Adj-RIB-In (no FIB flap)", () => {
    const rib = makeRib();
    const pools = ["10.244.0.0/16"];
    const e1 = peer(rib, {
      address: "192.0.2.1",
      asn: 65001,
      ...peerPolicies({ external: true, pools }),
    });
    const e2 = peer(rib, {
      address: "192.0.2.2",
      asn: 65001,
      ...peerPolicies({ external: true, pools }),
    });
    expect(rib.peerGroup(e1).peers).toEqual(["192.0.2.1", "192.0.2.2"]);
    rib.originate("10.244.1.0/26");
    announce(rib, e1, P, { nextHop: "192.0.2.1", asPath: seq(65001) });
    rib.drain();
    expect([...tableOf(rib, "192.0.2.2").keys()]).toEqual(["10.244.1.0/26"]);
    // e1 now gets learned routes too (a filter accepting everything on export).
    rib.updatePeer(e1, {
      exportPolicy: peerPolicies({
        external: true,
        pools,
        filters: [{ name: "all", spec: { exportV4: [{ action: "Accept" }] } }],
      }).exportPolicy,
    });
    expect(rib.peerGroup(e1).peers).toEqual(["192.0.2.1"]);
    expect(rib.peerGroup(e2).peers).toEqual(["192.0.2.2"]);
    const ch = rib.drain();
    expect(ch.fib.size).toBe(0);
    expect(rib.peerCounts(e1)).toMatchObject({ received: 1, accepted: 1 });
    // Its own route is not sent back to it; the origination is.
    expect([...tableOf(rib, "192.0.2.1").keys()]).toEqual(["10.244.1.0/26"]);
    // Back to the shared group: e1's own best path stays excluded for it.
    rib.updatePeer(e1, { exportPolicy: peerPolicies({ external: true, pools }).exportPolicy });
    expect(rib.peerGroup(e1).peers).toEqual(["192.0.2.2", "192.0.2.1"]);
    expect([...tableOf(rib, "192.0.2.1").keys()]).toEqual(["10.244.1.0/26"]);
    // Later changes keep each peer's view exact.
    const tables: PeerTables = new Map([
      ["192.0.2.1", tableOf(rib, "192.0.2.1")],
      ["192.0.2.2", tableOf(rib, "192.0.2.2")],
    ]);
    rib.withdrawOrigin("10.244.1.0/26");
    applyBatches(tables, rib.drain().adjOut);
    expect(tables.get("192.0.2.1")).toEqual(tableOf(rib, "192.0.2.1"));
    expect(tables.get("192.0.2.2")).toEqual(tableOf(rib, "192.0.2.2"));
    expect(tables.get("192.0.2.1")?.size).toBe(0);
  });

  it("updatePeer: allowOwnAs re-evaluates the loop check in place", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "192.0.2.1", asn: 65001 });
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001, LOCAL_AS) });
    expect(rib.drain().fib.size).toBe(0);
    rib.updatePeer(a, { allowOwnAs: 1 });
    expect(
      rib
        .drain()
        .fib.routes()
        .set.map((r) => r.dst),
    ).toEqual([P]);
    rib.updatePeer(a, { allowOwnAs: 0 });
    expect(
      rib
        .drain()
        .fib.routes()
        .remove.map((r) => r.dst),
    ).toEqual([P]);
  });

  it("updatePeer: a peer that becomes a route-reflector client gets its routes reflected", () => {
    const rib = makeRib({ clusterId: "10.255.0.1" });
    const a = peer(rib, { address: "10.0.0.1", asn: LOCAL_AS });
    peer(rib, { address: "10.0.0.2", asn: LOCAL_AS });
    announce(rib, a, P, { nextHop: "10.0.0.1" });
    rib.drain();
    expect(tableOf(rib, "10.0.0.2").size).toBe(0);
    rib.updatePeer(a, { routeReflectorClient: true });
    const ch = rib.drain();
    expect(ch.adjOut.flatMap((b) => b.announce.flatMap((x) => x.v4.toStrings()))).toEqual([P]);
    expect([...tableOf(rib, "10.0.0.2").keys()]).toEqual([P]);
  });

  it("unknown peers and bad input are refused with the value quoted", () => {
    const rib = makeRib();
    expect(() => rib.peerCounts("192.0.2.77")).toThrow('Peer "192.0.2.77" is not in the RIB');
    peer(rib, { address: "192.0.2.1", asn: 65001 });
    expect(() => rib.addPeer({ id: "192.0.2.1", address: "192.0.2.1", asn: 65001 })).toThrow(
      'Peer "192.0.2.1" is already in the RIB',
    );
    expect(() => rib.originate("10.0.0.1/8")).toThrow('Prefix "10.0.0.1/8" has host bits set');
    expect(() => makeRib({ localAs: 0 })).toThrow("Local AS 0 is not a valid AS number");
    expect(() => makeRib({ routerId: "a.b.c.d" })).toThrow(
      'Router id "a.b.c.d" is not a dotted-quad IPv4 address',
    );
  });
});
