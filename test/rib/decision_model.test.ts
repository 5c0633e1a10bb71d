// The RIB's decision process against a plain reference model written from RFC 4271 §9.1.2.2
// (arrays of objects, filter per step), on random sets of paths.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { seq } from "../../src/bgp/rib/simple_attrs.js";
import { announce, LOCAL_AS, makeRib, peer } from "./fixtures.js";

const PEERS = [
  { address: "192.0.2.1", asn: 65001, routerId: "3.3.3.3" },
  { address: "192.0.2.2", asn: 65001, routerId: "1.1.1.1" },
  { address: "192.0.2.3", asn: 65002, routerId: "2.2.2.2" },
  { address: "10.0.0.1", asn: LOCAL_AS, routerId: "5.5.5.5" },
  { address: "10.0.0.2", asn: LOCAL_AS, routerId: "4.4.4.4" },
  { address: "10.0.0.10", asn: LOCAL_AS, routerId: "4.4.4.4" },
];
const rid = (s: string) => s.split(".").reduce((a, x) => a * 256 + Number(x), 0);
/** Address order used by the decision (numeric for IPv4). */
const addrRank = (s: string) => rid(s);

interface PathSpec {
  peer: number;
  pid: number;
  lp?: number;
  asns: number[];
  origin: number;
  med?: number;
  originator?: number;
  clusters: number;
  nh: number;
}

function reference(paths: PathSpec[], igp: (nh: string) => number, relax: boolean) {
  type C = PathSpec & { ibgp: boolean; nas: number; effLp: number; rid: number; nhText: string };
  let c: C[] = paths.map((p) => {
    const pr = PEERS[p.peer] as (typeof PEERS)[number];
    const ibgp = pr.asn === LOCAL_AS;
    return {
      ...p,
      ibgp,
      nas: p.asns[0] ?? 0,
      effLp: ibgp ? (p.lp ?? 100) : 100,
      rid: p.originator ?? rid(pr.routerId),
      nhText: `10.9.0.${p.nh}`,
    };
  });
  let reason = "None";
  const keep = (name: string, f: (x: C) => number) => {
    const min = Math.min(...c.map(f));
    c = c.filter((x) => f(x) === min);
    if (reason === "None" && c.length === 1) reason = name;
  };
  keep("LocalPref", (x) => -x.effLp);
  keep("AsPathLength", (x) => x.asns.length);
  keep("Origin", (x) => x.origin);
  c = c.filter((x) => !c.some((y) => y.nas === x.nas && (y.med ?? 0) < (x.med ?? 0)));
  if (reason === "None" && c.length === 1) reason = "Med";
  keep("EbgpOverIbgp", (x) => (x.ibgp ? 1 : 0));
  keep("IgpCost", (x) => igp(x.nhText));
  const mp = [...c];
  keep("RouterId", (x) => x.rid);
  keep("ClusterListLength", (x) => x.clusters);
  keep("PeerAddress", (x) => addrRank((PEERS[x.peer] as (typeof PEERS)[number]).address));
  keep("PathId", (x) => x.pid);
  const best = c[0] as C;
  const set = mp.filter((x) => best.ibgp || relax || x.nas === best.nas).map((x) => x.nhText);
  return {
    reason: paths.length === 1 ? "OnlyPath" : reason,
    peer: (PEERS[best.peer] as (typeof PEERS)[number]).address,
    pid: best.pid,
    nexthops: [...new Set(set)].sort(),
  };
}

const pathArb = fc.record({
  peer: fc.integer({ min: 0, max: PEERS.length - 1 }),
  pid: fc.integer({ min: 0, max: 2 }),
  lp: fc.option(fc.constantFrom(90, 100, 110), { nil: undefined }),
  tail: fc.array(fc.constantFrom(65100, 65200), { maxLength: 2 }),
  origin: fc.constantFrom(0, 1, 2),
  med: fc.option(fc.constantFrom(0, 5, 10), { nil: undefined }),
  originator: fc.option(fc.constantFrom(rid("1.1.1.1"), rid("6.6.6.6")), { nil: undefined }),
  clusters: fc.integer({ min: 0, max: 2 }),
  nh: fc.integer({ min: 1, max: 4 }),
  ibgpFirst: fc.constantFrom(65001, 65002),
});

describe("decision process against a reference model", () => {
  it("best path, reason and multipath set match the model", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(pathArb, {
          minLength: 1,
          maxLength: 9,
          selector: (p) => `${p.peer}/${p.pid}`,
        }),
        fc.boolean(),
        fc.boolean(),
        (raw, useIgp, relax) => {
          const igp = (nh: string) => (useIgp ? Number(nh.split(".")[3]) % 2 : 0);
          const paths: PathSpec[] = raw.map((r) => {
            const pr = PEERS[r.peer] as (typeof PEERS)[number];
            const ibgp = pr.asn === LOCAL_AS;
            // eBGP paths start with the peer's AS; iBGP paths with some external AS (or none).
            const asns = ibgp
              ? r.tail.length > 0
                ? [r.ibgpFirst, ...r.tail]
                : []
              : [pr.asn, ...r.tail];
            return {
              peer: r.peer,
              pid: r.pid,
              ...(r.lp !== undefined ? { lp: r.lp } : {}),
              asns,
              origin: r.origin,
              ...(r.med !== undefined ? { med: r.med } : {}),
              ...(r.originator !== undefined && ibgp ? { originator: r.originator } : {}),
              clusters: ibgp ? r.clusters : 0,
              nh: r.nh,
            };
          });
          const rib = makeRib({ multipathRelax: relax, ...(useIgp ? { igpCost: igp } : {}) });
          const handles = PEERS.map((p) =>
            peer(rib, { address: p.address, asn: p.asn }, p.routerId),
          );
          for (const p of paths) {
            announce(
              rib,
              handles[p.peer] as number,
              "203.0.113.0/24",
              {
                nextHop: `10.9.0.${p.nh}`,
                asPath: seq(...p.asns),
                origin: p.origin,
                ...(p.lp !== undefined ? { localPref: p.lp } : {}),
                ...(p.med !== undefined ? { med: p.med } : {}),
                ...(p.originator !== undefined ? { originatorId: p.originator } : {}),
                clusterList: Array.from({ length: p.clusters }, (_, i) => i + 1),
              },
              p.pid,
            );
          }
          rib.drain();
          const e = rib.explain("203.0.113.0/24");
          const best = e?.paths.find((x) => x.best);
          expect({
            reason: e?.bestReason,
            peer: best?.peer,
            pid: best?.pathId,
            nexthops: e?.nexthops,
          }).toEqual(reference(paths, igp, relax));
        },
      ),
      { numRuns: 500 },
    );
  });
});
