import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Rib } from "../../src/bgp/rib/rib.js";
import { type SimpleAttrs, seq } from "../../src/bgp/rib/simple_attrs.js";
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

const PREFIXES = [
  "10.0.0.0/24",
  "10.0.1.0/24",
  "10.0.0.0/16",
  "2001:db8::/32",
  "0.0.0.0/0",
  "255.255.255.255/32",
];

/** Peers: two eBGP in one AS (one update group), one other eBGP, two iBGP clients, one iBGP. */
const PEERS = [
  { address: "192.0.2.1", asn: 65001 },
  { address: "192.0.2.2", asn: 65001 },
  { address: "192.0.2.3", asn: 65003 },
  { address: "10.0.0.1", asn: LOCAL_AS, routeReflectorClient: true },
  { address: "10.0.0.2", asn: LOCAL_AS, routeReflectorClient: true },
  { address: "10.0.0.3", asn: LOCAL_AS },
];

function build(clusterId?: string): { rib: Rib<SimpleAttrs>; handles: number[] } {
  const rib = makeRib(clusterId ? { clusterId } : {});
  const handles = PEERS.map((p, i) =>
    peer(
      rib,
      { ...p, nextHopSelfV4: "192.0.2.100", nextHopSelfV6: "2001:db8::100" },
      `1.1.1.${(i * 7) % 5}`,
    ),
  );
  return { rib, handles };
}

const attrArb = fc.record({
  localPref: fc.option(fc.constantFrom(100, 200), { nil: undefined }),
  med: fc.option(fc.constantFrom(0, 5, 10), { nil: undefined }),
  origin: fc.constantFrom(0, 2),
  pathLen: fc.integer({ min: 0, max: 2 }),
  firstAs: fc.constantFrom(65001, 65003, 65100),
  nh: fc.integer({ min: 1, max: 3 }),
});
type AttrSpec = typeof attrArb extends fc.Arbitrary<infer T> ? T : never;

function attrsFor(peerIdx: number, prefix: string, s: AttrSpec) {
  const p = PEERS[peerIdx] as (typeof PEERS)[number];
  const ibgp = p.asn === LOCAL_AS;
  const path = ibgp
    ? s.pathLen === 0
      ? []
      : [s.firstAs, 65200].slice(0, s.pathLen)
    : [p.asn, 65200, 65201].slice(0, s.pathLen + 1);
  const v6 = prefix.includes(":");
  return {
    nextHop: v6 ? `2001:db8::${s.nh}` : `192.0.2.${s.nh}`,
    asPath: seq(...path),
    origin: s.origin,
    ...(s.localPref !== undefined ? { localPref: s.localPref } : {}),
    ...(s.med !== undefined ? { med: s.med } : {}),
  };
}

const opArb = fc.oneof(
  fc.record({
    kind: fc.constant("announce" as const),
    peer: fc.integer({ min: 0, max: PEERS.length - 1 }),
    prefix: fc.constantFrom(...PREFIXES),
    attrs: attrArb,
  }),
  fc.record({
    kind: fc.constant("withdraw" as const),
    peer: fc.integer({ min: 0, max: PEERS.length - 1 }),
    prefix: fc.constantFrom(...PREFIXES),
  }),
  fc.record({ kind: fc.constant("originate" as const), prefix: fc.constantFrom(...PREFIXES) }),
  fc.record({ kind: fc.constant("unoriginate" as const), prefix: fc.constantFrom(...PREFIXES) }),
  fc.record({
    kind: fc.constant("down" as const),
    peer: fc.integer({ min: 0, max: PEERS.length - 1 }),
  }),
  fc.record({ kind: fc.constant("drain" as const), max: fc.integer({ min: 1, max: 4 }) }),
  fc.record({
    kind: fc.constant("stale" as const),
    peer: fc.integer({ min: 0, max: PEERS.length - 1 }),
  }),
  fc.record({
    kind: fc.constant("sweep" as const),
    peer: fc.integer({ min: 0, max: PEERS.length - 1 }),
  }),
  fc.record({
    kind: fc.constant("regroup" as const),
    peer: fc.integer({ min: 0, max: PEERS.length - 1 }),
    key: fc.constantFrom("", "x"),
  }),
);
type Op = typeof opArb extends fc.Arbitrary<infer T> ? T : never;

function applyOp(rib: Rib<SimpleAttrs>, handles: number[], op: Op): void {
  switch (op.kind) {
    case "announce":
      announce(rib, handles[op.peer] as number, op.prefix, attrsFor(op.peer, op.prefix, op.attrs));
      break;
    case "withdraw":
      withdraw(rib, handles[op.peer] as number, op.prefix);
      break;
    case "originate":
      rib.originate(op.prefix);
      break;
    case "unoriginate":
      rib.withdrawOrigin(op.prefix);
      break;
    case "down":
      rib.peerDown(handles[op.peer] as number);
      break;
    case "stale":
      rib.markStale(handles[op.peer] as number);
      break;
    case "sweep":
      rib.sweepStale(handles[op.peer] as number);
      break;
    case "drain":
    case "regroup":
      break;
  }
}

function summary(rib: Rib<SimpleAttrs>) {
  return PREFIXES.map((p) => {
    const e = rib.explain(p);
    if (!e) return [p, "none"];
    const best = e.paths.find((x) => x.best);
    return [p, e.bestReason, best?.peer, best?.pathId, e.nexthops];
  });
}

describe("RIB properties", () => {
  it("the best path, its reason and the ECMP set do not depend on arrival order", () => {
    const entry = fc.tuple(
      fc.integer({ min: 0, max: PEERS.length - 1 }),
      fc.constantFrom(...PREFIXES),
      attrArb,
    );
    fc.assert(
      fc.property(
        fc.uniqueArray(entry, { minLength: 1, maxLength: 14, selector: ([p, x]) => `${p}|${x}` }),
        fc.boolean(),
        fc.nat(),
        (entries, cluster, seed) => {
          const a = build(cluster ? "10.255.0.1" : undefined);
          for (const [p, x, s] of entries)
            announce(a.rib, a.handles[p] as number, x, attrsFor(p, x, s));
          a.rib.drain();
          const shuffled = [...entries];
          let r = seed;
          for (let i = shuffled.length - 1; i > 0; i--) {
            r = (Math.imul(r, 1103515245) + 12345) >>> 0;
            const j = r % (i + 1);
            [shuffled[i], shuffled[j]] = [
              shuffled[j] as (typeof entries)[number],
              shuffled[i] as (typeof entries)[number],
            ];
          }
          const b = build(cluster ? "10.255.0.1" : undefined);
          for (const [p, x, s] of shuffled)
            announce(b.rib, b.handles[p] as number, x, attrsFor(p, x, s));
          b.rib.drain(2);
          b.rib.drain();
          expect(summary(b.rib)).toEqual(summary(a.rib));
          for (const p of PEERS)
            expect(tableOf(b.rib, p.address)).toEqual(tableOf(a.rib, p.address));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("Adj-RIB-Out and FIB changes replayed equal a fresh full export; withdrawing everything empties the RIB", () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { minLength: 1, maxLength: 40 }),
        fc.boolean(),
        (ops, cluster) => {
          const { rib, handles } = build(cluster ? "10.255.0.1" : undefined);
          const tables: PeerTables = new Map(PEERS.map((p) => [p.address, new Map()]));
          const fib = new Map<string, string>();
          const replay = (max?: number) => {
            const ch = rib.drain(max);
            applyBatches(tables, ch.adjOut);
            const r = ch.fib.routes();
            for (const x of r.remove) {
              expect(fib.has(x.dst)).toBe(true);
              fib.delete(x.dst);
            }
            for (const x of r.set) fib.set(x.dst, JSON.stringify(x.nexthops));
          };
          for (const op of ops) {
            applyOp(rib, handles, op);
            if (op.kind === "drain") replay(op.max);
          }
          replay();
          for (const p of PEERS) expect(tables.get(p.address)).toEqual(tableOf(rib, p.address));
          const loc = new Map<string, string>();
          for (const e of rib.locRib())
            if (e.nexthops.length > 0)
              loc.set(e.prefix, JSON.stringify(e.nexthops.map((gateway) => ({ gateway }))));
          expect(fib).toEqual(loc);
          // A new update group, computed fresh from the Loc-RIB, agrees with the incrementally kept
          // one of a peer with the same export rules (192.0.2.3), except for that peer's own routes.
          const late = rib.addPeer({
            id: "late",
            address: "192.0.2.50",
            asn: 65003,
            nextHopSelfV4: "192.0.2.100",
            nextHopSelfV6: "2001:db8::100",
            exportGroupKey: "fresh",
          });
          const fresh = tableOf(rib, "late");
          const kept = tableOf(rib, "192.0.2.3");
          for (const [pfx, a] of kept) expect(fresh.get(pfx)).toBe(a);
          for (const pfx of fresh.keys()) {
            if (kept.has(pfx)) continue;
            expect(rib.explain(pfx)?.paths.find((x) => x.best)?.peer).toBe("192.0.2.3");
          }
          rib.removePeer(late);
          // Withdraw everything.
          for (const h of handles) rib.peerDown(h);
          for (const p of PREFIXES) rib.withdrawOrigin(p);
          replay();
          expect(rib.size).toEqual({ v4: 0, v6: 0 });
          expect(fib.size).toBe(0);
          for (const p of PEERS) expect(tables.get(p.address)?.size).toBe(0);
          for (const h of handles)
            expect(rib.peerCounts(h)).toMatchObject({ received: 0, accepted: 0, advertised: 0 });
          expect([...rib.locRib()]).toEqual([]);
        },
      ),
      { numRuns: 300 },
    );
  });
});
