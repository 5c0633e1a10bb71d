// RFC 9494 long-lived graceful restart in the RIB: LLGR_STALE paths least preferred, NO_LLGR
// paths dropped, LLGR_STALE paths withheld from peers without LLGR (or, RFC 9494 §4.6, sent to
// internal ones with NO_EXPORT and LOCAL_PREF 0), swept like GR stale paths.
import { describe, expect, it } from "vitest";
import { LLGR_STALE, NO_EXPORT, NO_LLGR } from "../../src/bgp/rib/attrs.js";
import { seq } from "../../src/bgp/rib/simple_attrs.js";
import {
  announce,
  applyBatches,
  LOCAL_AS,
  makeRib,
  type PeerTables,
  peer,
  withdraw,
} from "./fixtures.js";

const P = "203.0.113.0/24";
const Q = "198.51.100.0/24";
const V6 = "2001:db8:1::/48";

function setup() {
  const rib = makeRib();
  const a = peer(rib, { address: "192.0.2.1", asn: 65001 });
  const b = peer(rib, { address: "192.0.2.2", asn: 65002 });
  // iBGP peers (no export policy): c without LLGR, d with it.
  peer(rib, { address: "10.0.0.3", asn: LOCAL_AS });
  peer(rib, { address: "10.0.0.4", asn: LOCAL_AS, llgr: true });
  return { rib, a, b };
}

describe("long-lived graceful restart (RFC 9494) in the RIB", () => {
  it("keeps the stale paths tagged LLGR_STALE, least preferred, NO_LLGR ones removed", () => {
    const { rib, a, b } = setup();
    const tables: PeerTables = new Map();
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001) });
    announce(rib, a, Q, { nextHop: "192.0.2.1", asPath: seq(65001), communities: [NO_LLGR] });
    announce(rib, a, V6, { nextHop: "2001:db8::1", asPath: seq(65001) });
    // b's path to P is worse by AS path length: a's wins while fresh.
    announce(rib, b, P, { nextHop: "192.0.2.2", asPath: seq(65002, 65009) });
    applyBatches(tables, rib.drain().adjOut);
    expect(rib.explain(P)?.paths.find((x) => x.best)?.peer).toBe("192.0.2.1");

    expect(rib.markStale(a)).toBe(3);
    expect(rib.drain().fib.size).toBe(0);
    expect(rib.markLongLivedStale(a, 4)).toEqual({ kept: 1, removed: 1 });
    expect(rib.peerCounts(a)).toMatchObject({ received: 2, stale: 2 });
    let ch = rib.drain();
    applyBatches(tables, ch.adjOut);
    // Q (NO_LLGR) is gone; P moves to b's longer path: an LLGR_STALE path loses to any other.
    const fib = ch.fib.routes();
    expect(fib.remove.map((r) => r.dst)).toEqual([Q]);
    expect(fib.set.map((r) => [r.dst, r.nexthops[0]?.gateway])).toEqual([[P, "192.0.2.2"]]);
    const e = rib.explain(P);
    expect(e?.bestReason).toBe("LlgrStale");
    const stalePath = e?.paths.find((x) => x.peer === "192.0.2.1");
    expect(stalePath).toMatchObject({ stale: true, best: false });
    expect(stalePath?.attrs.communities).toEqual([LLGR_STALE]);
    // The IPv6 family was not made long-lived: still plain stale, untagged.
    expect(rib.explain(V6)?.paths[0]?.attrs.communities).toEqual([]);

    // b withdraws: the LLGR_STALE path is the only one, so it is used (FIB) and sent to the
    // LLGR peer with LLGR_STALE, and withdrawn from the peer without LLGR.
    withdraw(rib, b, P);
    ch = rib.drain();
    applyBatches(tables, ch.adjOut);
    expect(ch.fib.routes().set.map((r) => [r.dst, r.nexthops[0]?.gateway])).toEqual([
      [P, "192.0.2.1"],
    ]);
    expect(rib.explain(P)?.bestReason).toBe("OnlyPath");
    expect(tables.get("10.0.0.3")?.has(P)).toBe(false);
    expect(tables.get("10.0.0.4")?.get(P)).toContain(String(LLGR_STALE));
    expect(rib.explainExport(P, "10.0.0.3")).toMatchObject({
      advertised: false,
      reason: "LlgrStale",
    });

    // The peer is back and re-sends P: fresh again, to both iBGP peers without the tag.
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001) });
    ch = rib.drain();
    applyBatches(tables, ch.adjOut);
    expect(ch.fib.size).toBe(0);
    expect(rib.explain(P)?.paths[0]).toMatchObject({ stale: false, best: true });
    expect(tables.get("10.0.0.3")?.get(P)).toBe(tables.get("10.0.0.4")?.get(P));
    expect(tables.get("10.0.0.3")?.get(P)).not.toContain(String(LLGR_STALE));
    // End-of-RIB: what was not re-sent (V6) goes.
    expect(rib.sweepStale(a)).toBe(1);
    expect(
      rib
        .drain()
        .fib.routes()
        .remove.map((r) => r.dst),
    ).toEqual([V6]);
    expect(rib.peerCounts(a)).toMatchObject({ received: 1, stale: 0 });
  });

  it("the long-lived stale time over: the sweep removes them everywhere", () => {
    const { rib, a } = setup();
    const tables: PeerTables = new Map();
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001) });
    applyBatches(tables, rib.drain().adjOut);
    rib.markStale(a);
    expect(rib.markLongLivedStale(a)).toEqual({ kept: 1, removed: 0 });
    // Tagging twice changes nothing.
    expect(rib.markLongLivedStale(a)).toEqual({ kept: 1, removed: 0 });
    applyBatches(tables, rib.drain().adjOut);
    expect(tables.get("10.0.0.3")?.has(P)).toBe(false);
    expect(tables.get("10.0.0.4")?.has(P)).toBe(true);
    expect(rib.sweepStale(a)).toBe(1);
    const ch = rib.drain();
    applyBatches(tables, ch.adjOut);
    expect(ch.fib.routes().remove.map((r) => r.dst)).toEqual([P]);
    expect(tables.get("10.0.0.4")?.has(P)).toBe(false);
    expect(rib.stats()).toMatchObject({ paths: 0, prefixesV4: 0 });
  });

  it("a received LLGR_STALE path is least preferred too (RFC 9494 §4.3)", () => {
    const { rib, a, b } = setup();
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001), communities: [LLGR_STALE] });
    announce(rib, b, P, { nextHop: "192.0.2.2", asPath: seq(65002, 65009, 65010) });
    rib.drain();
    expect(rib.explain(P)).toMatchObject({ bestReason: "LlgrStale", nexthops: ["192.0.2.2"] });
  });

  it("§4.6 partial deployment: internal peers without LLGR get them with NO_EXPORT and LOCAL_PREF 0", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "192.0.2.1", asn: 65001 });
    // 10.0.0.5 internal, asked for §4.6; 10.0.0.6 internal with LLGR (asked, not applied);
    // 192.0.2.7 external (asked, not applied: the neighbours MUST be internal).
    peer(rib, { address: "10.0.0.5", asn: LOCAL_AS, llgrStaleToNonLlgr: true });
    peer(rib, { address: "10.0.0.6", asn: LOCAL_AS, llgr: true, llgrStaleToNonLlgr: true });
    peer(rib, { address: "192.0.2.7", asn: 65007, llgrStaleToNonLlgr: true });
    const sent = (id: string) => rib.adjRibOut(id).find((x) => x.v4.toStrings().includes(P))?.attrs;
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001), localPref: 200 });
    rib.drain();
    // Fresh: as to any internal peer.
    expect(sent("10.0.0.5")).toMatchObject({ localPref: 100, communities: [] });

    rib.markStale(a);
    rib.markLongLivedStale(a);
    rib.drain();
    expect(sent("10.0.0.5")).toMatchObject({ localPref: 0, communities: [LLGR_STALE, NO_EXPORT] });
    expect(sent("10.0.0.6")).toMatchObject({ localPref: 100, communities: [LLGR_STALE] });
    expect(sent("192.0.2.7")).toBeUndefined();
    expect(rib.explainExport(P, "192.0.2.7")).toMatchObject({ reason: "LlgrStale" });

    // Fresh again: the tag, NO_EXPORT and LOCAL_PREF 0 go.
    announce(rib, a, P, { nextHop: "192.0.2.1", asPath: seq(65001) });
    rib.drain();
    expect(sent("10.0.0.5")).toMatchObject({ localPref: 100, communities: [] });
    expect(sent("192.0.2.7")).toBeDefined();
  });
});
