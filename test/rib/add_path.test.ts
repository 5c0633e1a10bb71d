// ADD-PATH (RFC 7911) in the RIB: paths received with ids are kept apart and installed as one
// multipath set; a peer with ADD-PATH send gets the best path and the paths equal to it, each
// with its own id, up to its limit, and each change as an announcement or withdrawal by id.
import { describe, expect, it } from "vitest";
import type { AdjOutBatch } from "../../src/bgp/rib/rib.js";
import { type SimpleAttrs, seq } from "../../src/bgp/rib/simple_attrs.js";
import { announce, LOCAL_AS, makeRib, peer, withdraw } from "./fixtures.js";

const P = "10.99.0.0/24";

/** What one ADD-PATH peer holds: "prefix#pathId" -> next hop. */
function applyPaths(
  t: Map<string, string>,
  batches: AdjOutBatch<SimpleAttrs>[],
  peerId: string,
): void {
  for (const b of batches) {
    if (!b.peers.includes(peerId)) continue;
    for (const l of [b.withdraw.v4, b.withdraw.v6]) {
      l.toStrings().forEach((p, i) => {
        const k = `${p}#${l.pathIds?.[i]}`;
        if (!t.has(k)) throw new Error(`withdraw of ${k} which the peer does not hold`);
        t.delete(k);
      });
    }
    for (const a of b.announce)
      for (const l of [a.v4, a.v6])
        l.toStrings().forEach((p, i) => {
          t.set(`${p}#${l.pathIds?.[i]}`, a.attrs.nextHop);
        });
  }
}

function dump(rib: ReturnType<typeof makeRib>, peerId: string): Map<string, string> {
  const t = new Map<string, string>();
  for (const a of rib.adjRibOut(peerId))
    for (const l of [a.v4, a.v6])
      l.toStrings().forEach((p, i) => {
        t.set(`${p}#${l.pathIds?.[i]}`, a.attrs.nextHop);
      });
  return t;
}

const hops = (t: Map<string, string>) => [...t.values()].sort();

describe("ADD-PATH receive", () => {
  it("keeps paths of one peer apart by id and installs the equal ones as one multipath route", () => {
    const rib = makeRib();
    const rr = peer(rib, { address: "10.0.0.1", asn: LOCAL_AS });
    announce(rib, rr, P, { nextHop: "10.0.0.11" }, 1);
    announce(rib, rr, P, { nextHop: "10.0.0.12" }, 2);
    let ch = rib.drain();
    expect(ch.fib.routes().set).toEqual([
      {
        family: 4,
        dst: P,
        protocol: 201,
        nexthops: [{ gateway: "10.0.0.11" }, { gateway: "10.0.0.12" }],
      },
    ]);
    expect(rib.peerCounts(rr).received).toBe(2);
    withdraw(rib, rr, P, 1);
    ch = rib.drain();
    expect(ch.fib.routes().set[0]?.nexthops).toEqual([{ gateway: "10.0.0.12" }]);
    withdraw(rib, rr, P, 7); // an id it never sent: nothing
    withdraw(rib, rr, P, 2);
    ch = rib.drain();
    expect(ch.fib.routes().remove.map((r) => r.dst)).toEqual([P]);
  });
});

describe("ADD-PATH send (a route reflector passing every ECMP path)", () => {
  function reflector(limit: number) {
    const rib = makeRib({ clusterId: "10.0.0.100" });
    const a = peer(rib, { address: "10.0.0.11", asn: LOCAL_AS, routeReflectorClient: true });
    const b = peer(rib, { address: "10.0.0.12", asn: LOCAL_AS, routeReflectorClient: true });
    const c = peer(rib, { address: "10.0.0.13", asn: LOCAL_AS, routeReflectorClient: true });
    const client = peer(rib, {
      address: "10.0.0.20",
      asn: LOCAL_AS,
      routeReflectorClient: true,
      addPathSend: { v4: limit, v6: 0 },
    });
    const plain = peer(rib, { address: "10.0.0.21", asn: LOCAL_AS, routeReflectorClient: true });
    return { rib, a, b, c, client, plain };
  }

  it("sends the best and the equal paths with their own ids; a plain client gets one", () => {
    const { rib, a, b, c } = reflector(8);
    const held = new Map<string, string>();
    const plain = new Map<string, string>();
    announce(rib, a, P, { nextHop: "10.0.0.11" });
    announce(rib, b, P, { nextHop: "10.0.0.12" });
    // Not equal (longer AS path): not a multipath member, not sent.
    announce(rib, c, P, { nextHop: "10.0.0.13", asPath: seq(65001) });
    const ch = rib.drain();
    applyPaths(held, ch.adjOut, "10.0.0.20");
    applyPaths(plain, ch.adjOut, "10.0.0.21");
    expect(hops(held)).toEqual(["10.0.0.11", "10.0.0.12"]);
    expect(new Set([...held.keys()].map((k) => k.split("#")[1])).size).toBe(2);
    expect([...held.keys()].every((k) => k.startsWith(`${P}#`) && !k.endsWith("#0"))).toBe(true);
    expect(plain.size).toBe(1);
    // The dump at Established says the same as the batches.
    expect(dump(rib, "10.0.0.20")).toEqual(held);
    expect(rib.peerCounts("10.0.0.20").advertised).toBe(1);
  });

  it("withdraws one path by its id when it goes, and adds a new equal one", () => {
    const { rib, a, b, c } = reflector(8);
    const held = new Map<string, string>();
    announce(rib, a, P, { nextHop: "10.0.0.11" });
    announce(rib, b, P, { nextHop: "10.0.0.12" });
    applyPaths(held, rib.drain().adjOut, "10.0.0.20");
    withdraw(rib, a, P);
    applyPaths(held, rib.drain().adjOut, "10.0.0.20");
    expect(hops(held)).toEqual(["10.0.0.12"]);
    announce(rib, c, P, { nextHop: "10.0.0.13" });
    applyPaths(held, rib.drain().adjOut, "10.0.0.20");
    expect(hops(held)).toEqual(["10.0.0.12", "10.0.0.13"]);
    withdraw(rib, b, P);
    withdraw(rib, c, P);
    applyPaths(held, rib.drain().adjOut, "10.0.0.20");
    expect(held.size).toBe(0);
    expect(dump(rib, "10.0.0.20").size).toBe(0);
  });

  it("stops at the peer's limit, best path first", () => {
    const { rib, a, b, c } = reflector(2);
    const held = new Map<string, string>();
    announce(rib, a, P, { nextHop: "10.0.0.11" });
    announce(rib, b, P, { nextHop: "10.0.0.12" });
    announce(rib, c, P, { nextHop: "10.0.0.13" });
    applyPaths(held, rib.drain().adjOut, "10.0.0.20");
    expect(held.size).toBe(2);
    const best = rib.explain(P)?.paths.find((p) => p.best)?.attrs.nextHop;
    expect([...held.values()]).toContain(best);
  });

  it("never sends a peer its own path back, but sends it the other equal ones", () => {
    const { rib, a, client } = reflector(8);
    const held = new Map<string, string>();
    announce(rib, a, P, { nextHop: "10.0.0.11" });
    announce(rib, client, P, { nextHop: "10.0.0.20" });
    applyPaths(held, rib.drain().adjOut, "10.0.0.20");
    expect(hops(held)).toEqual(["10.0.0.11"]);
  });

  it("a family without ADD-PATH gets the best path alone, replaced in place (id 0)", () => {
    const { rib, a, b } = reflector(8);
    const V6 = "fd00:99::/64";
    const held = new Map<string, string>();
    announce(rib, a, V6, { nextHop: "fd00::11" });
    announce(rib, b, V6, { nextHop: "fd00::12" });
    applyPaths(held, rib.drain().adjOut, "10.0.0.20");
    expect([...held.keys()]).toEqual([`${V6}#0`]);
    withdraw(rib, rib.explain(V6)?.paths.find((p) => p.best)?.peer === "10.0.0.11" ? a : b, V6);
    const ch = rib.drain();
    // The other path replaces it: an announcement, no withdrawal.
    expect(
      ch.adjOut.filter((x) => x.peers.includes("10.0.0.20")).map((x) => x.withdraw.v6.count),
    ).toEqual([0]);
    applyPaths(held, ch.adjOut, "10.0.0.20");
    expect(held.size).toBe(1);
  });

  it("moving a peer to ADD-PATH and back (a new session) rebuilds its table from the Loc-RIB", () => {
    const { rib, a, b } = reflector(8);
    announce(rib, a, P, { nextHop: "10.0.0.11" });
    announce(rib, b, P, { nextHop: "10.0.0.12" });
    rib.drain();
    rib.updatePeer("10.0.0.21", { addPathSend: { v4: 4, v6: 4 } });
    expect(hops(dump(rib, "10.0.0.21"))).toEqual(["10.0.0.11", "10.0.0.12"]);
    rib.updatePeer("10.0.0.21", { addPathSend: { v4: 0, v6: 0 } });
    expect(dump(rib, "10.0.0.21").size).toBe(1);
    expect([...dump(rib, "10.0.0.21").keys()][0]).toBe(`${P}#undefined`);
    // References stay balanced: a sweep keeps what is still sent.
    withdraw(rib, a, P);
    withdraw(rib, b, P);
    rib.drain();
    expect(rib.stats().prefixesV4).toBe(0);
  });
});
