// BGPFilter operations on import (Calico's BIRD import filter statements: bgp_community.add,
// bgp_path.prepend, krt_metric = N) and Calico's route priorities (krt_metric <-> LOCAL_PREF),
// through the RIB: the path as kept, decided on, shown and passed on; the received attributes
// kept beside it; the kernel metric per route in the FIB batches.
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/bgp/config.js";
import { formatCommunity, parseCommunity } from "../../src/bgp/policy/communities.js";
import { peerPolicies } from "../../src/bgp/policy/defaults.js";
import type { BgpFilterRule } from "../../src/bgp/policy/filter.js";
import type { AttrView } from "../../src/bgp/rib/attrs.js";
import { seq } from "../../src/bgp/rib/simple_attrs.js";
import { policiesFor, routePriorityOf } from "../../src/bgp/speaker/core.js";
import { announce, LOCAL_AS, makeRib, peer, withdraw } from "../rib/fixtures.js";

const flat = (a: AttrView | undefined) => (a?.asPath ?? []).flatMap((s) => s.asns);
const comms = (a: AttrView | undefined) => (a?.communities ?? []).map(formatCommunity);

function importPolicy(rules: BgpFilterRule[], external = true, defaultPriority?: number) {
  return peerPolicies({
    external,
    pools: [],
    filters: [{ name: "f", spec: { importV4: rules } }],
    ...(defaultPriority !== undefined ? { defaultPriority } : {}),
  }).importPolicy;
}

describe("BGPFilter addCommunity and prependASPath on import", () => {
  const rules: BgpFilterRule[] = [
    {
      action: "Accept",
      cidr: "203.0.113.0/24",
      matchOperator: "In",
      operations: [
        { addCommunity: { value: "65000:200" } },
        { addCommunity: { value: "65000:1:2" } },
        { prependASPath: { prefix: [65001, 65002] } },
      ],
    },
  ];

  function setup() {
    const rib = makeRib();
    const tor = peer(rib, { address: "192.0.2.1", asn: 65010, importPolicy: importPolicy(rules) });
    peer(rib, { address: "10.0.0.2", asn: LOCAL_AS, nextHopSelfV4: "10.0.0.100" });
    peer(rib, { address: "198.51.100.1", asn: 65030, nextHopSelfV4: "198.51.100.100" });
    announce(rib, tor, "203.0.113.0/24", { nextHop: "192.0.2.1", asPath: seq(65010) });
    announce(rib, tor, "198.18.0.0/24", { nextHop: "192.0.2.1", asPath: seq(65010) });
    rib.drain();
    return { rib, tor };
  }

  it("`bgp_community.add(...)`, `bgp_path.prepend(65002); bgp_path.prepend(65001)`: the route as kept, shown (ocelot routes) and passed on; the received one beside it", () => {
    const { rib } = setup();
    const loc = [...rib.locRib()].find((e) => e.prefix === "203.0.113.0/24");
    expect(flat(loc?.attrs)).toEqual([65001, 65002, 65010]);
    expect(comms(loc?.attrs)).toEqual(["65000:200"]);
    expect(loc?.attrs.largeCommunities).toEqual([[65000, 1, 2]]);
    // A route no rule edits is kept as received.
    const other = [...rib.locRib()].find((e) => e.prefix === "198.18.0.0/24");
    expect(flat(other?.attrs)).toEqual([65010]);
    expect(comms(other?.attrs)).toEqual([]);
    // explain: the decision's attributes, and the received ones (Adj-RIB-In) beside them.
    const x = rib.explain("203.0.113.0/24");
    const p = x?.paths[0];
    expect(flat(p?.attrs)).toEqual([65001, 65002, 65010]);
    expect(flat(p?.received)).toEqual([65010]);
    expect(comms(p?.received)).toEqual([]);
    // BMP's pre-policy Adj-RIB-In stays as received.
    const adjIn = rib.adjRibIn("192.0.2.1");
    const edited = adjIn.find((a) => a.v4.toStrings().includes("203.0.113.0/24"));
    expect(edited?.attrs.asPath.flatMap((s) => s.asns)).toEqual([65010]);
    // Passed on with the change: to iBGP as is, to eBGP with our AS in front.
    expect(flat(rib.explainExport("203.0.113.0/24", "10.0.0.2").attrs)).toEqual([
      65001, 65002, 65010,
    ]);
    const out = rib.explainExport("203.0.113.0/24", "198.51.100.1");
    expect(flat(out.attrs)).toEqual([LOCAL_AS, 65001, 65002, 65010]);
    expect(comms(out.attrs)).toEqual(["65000:200"]);
  });

  it("the prepended path is longer in the decision (BIRD decides on the imported route)", () => {
    const rib = makeRib();
    const a = peer(rib, { address: "192.0.2.1", asn: 65010, importPolicy: importPolicy(rules) });
    const b = peer(rib, { address: "192.0.2.2", asn: 65020 });
    announce(rib, a, "203.0.113.0/24", { nextHop: "192.0.2.1", asPath: seq(65010) });
    announce(rib, b, "203.0.113.0/24", { nextHop: "192.0.2.2", asPath: seq(65020, 65021) });
    rib.drain();
    const x = rib.explain("203.0.113.0/24");
    expect(x?.bestReason).toBe("AsPathLength");
    expect(x?.paths.find((p) => p.best)?.peer).toBe("192.0.2.2");
  });

  it("a policy change re-evaluates the kept Adj-RIB-In in place: edits go and come back; a re-announcement keeps them; a withdrawal frees both sets", () => {
    const { rib, tor } = setup();
    const before = rib.stats().attributeSets;
    rib.setImportPolicy("192.0.2.1", importPolicy([]));
    rib.drain();
    const loc = () => [...rib.locRib()].find((e) => e.prefix === "203.0.113.0/24");
    expect(flat(loc()?.attrs)).toEqual([65010]);
    expect(rib.explain("203.0.113.0/24")?.paths[0]?.received).toBeUndefined();
    rib.setImportPolicy("192.0.2.1", importPolicy(rules));
    rib.drain();
    expect(flat(loc()?.attrs)).toEqual([65001, 65002, 65010]);
    announce(rib, tor, "203.0.113.0/24", { nextHop: "192.0.2.1", asPath: seq(65010) });
    const ch = rib.drain();
    expect(ch.fib.size).toBe(0);
    expect(ch.adjOut).toEqual([]);
    expect(flat(loc()?.attrs)).toEqual([65001, 65002, 65010]);
    expect(rib.stats().attributeSets).toBe(before);
    withdraw(rib, tor, "203.0.113.0/24");
    withdraw(rib, tor, "198.18.0.0/24");
    rib.drain();
    expect(loc()).toBeUndefined();
    expect(rib.stats().paths).toBe(0);
  });

  it("matches later rules of other filters on the route as received (first match wins, one edit)", () => {
    const rib = makeRib();
    const pol = importPolicy([
      {
        action: "Accept",
        communities: { values: ["65010:7"] },
        operations: [{ addCommunity: { value: "65000:7" } }],
      },
      { action: "Reject", communities: { values: ["65000:7"] } },
    ]);
    const a = peer(rib, { address: "192.0.2.1", asn: 65010, importPolicy: pol });
    announce(rib, a, "203.0.113.0/24", {
      nextHop: "192.0.2.1",
      asPath: seq(65010),
      communities: [parseCommunity("65010:7")],
    });
    rib.drain();
    const loc = [...rib.locRib()].find((e) => e.prefix === "203.0.113.0/24");
    expect(comms(loc?.attrs)).toEqual(["65010:7", "65000:7"]);
  });
});

describe("Calico's route priorities (krt_metric <-> LOCAL_PREF 2^31-1 - priority)", () => {
  const N = 1024;
  const prioRules: BgpFilterRule[] = [
    {
      action: "Accept",
      communities: { values: ["65020:1"] },
      operations: [{ setPriority: { value: 256 } }],
    },
  ];

  function setup() {
    const rib = makeRib({ routePriority: { v4: N, v6: N } });
    const ib = peer(rib, {
      address: "10.0.0.2",
      asn: LOCAL_AS,
      nextHopSelfV4: "10.0.0.100",
      importPolicy: importPolicy(prioRules, false),
    });
    const eb = peer(rib, { address: "192.0.2.1", asn: 65010, nextHopSelfV4: "192.0.2.100" });
    return { rib, ib, eb };
  }

  it("our routes go to iBGP peers with LOCAL_PREF 2147482623 (the normal 1024), as Calico's nodes send", () => {
    const { rib } = setup();
    rib.originate("10.244.1.0/26");
    rib.drain();
    expect(rib.explainExport("10.244.1.0/26", "10.0.0.2").attrs?.localPref).toBe(2147482623);
    // Not to eBGP (RFC 4271 §5.1.5).
    expect(rib.explainExport("10.244.1.0/26", "192.0.2.1").attrs?.localPref).toBeUndefined();
    // Without route priorities: 100, as before.
    const plain = makeRib();
    peer(plain, { address: "10.0.0.2", asn: LOCAL_AS, nextHopSelfV4: "10.0.0.100" });
    plain.originate("10.244.1.0/26");
    plain.drain();
    expect(plain.explainExport("10.244.1.0/26", "10.0.0.2").attrs?.localPref).toBe(100);
  });

  it("a route at the normal priority goes to the FIB without a metric of its own; one with another priority with it, moved in one batch when it changes", () => {
    const { rib, ib, eb } = setup();
    // From a Calico (or Ocelot) node: LOCAL_PREF 2147482623 = priority 1024, the normal one.
    announce(rib, ib, "10.244.2.0/26", { nextHop: "10.0.0.2", localPref: 2147482623 });
    // From an eBGP peer: its LOCAL_PREF does not count: normal.
    announce(rib, eb, "198.18.0.0/24", { nextHop: "192.0.2.1", asPath: seq(65010) });
    // Tagged: import setPriority 256.
    announce(rib, ib, "10.244.3.0/26", {
      nextHop: "10.0.0.2",
      localPref: 2147482623,
      communities: [parseCommunity("65020:1")],
    });
    // From an iBGP peer sending LOCAL_PREF 100 (a router, not a node): priority 2147483547.
    announce(rib, ib, "10.244.4.0/26", { nextHop: "10.0.0.2", localPref: 100 });
    const first = rib.drain().fib.routes();
    const metric = Object.fromEntries(first.set.map((r) => [r.dst, r.metric]));
    expect(metric).toEqual({
      "10.244.2.0/26": undefined,
      "198.18.0.0/24": undefined,
      "10.244.3.0/26": 256,
      "10.244.4.0/26": 2147483547,
    });
    expect([...rib.locRib()].find((e) => e.prefix === "10.244.3.0/26")?.metric).toBe(256);
    expect([...rib.locRib()].find((e) => e.prefix === "10.244.2.0/26")?.metric).toBeUndefined();
    // The filter changes (no setPriority): the route moves from 256 to the normal metric.
    rib.setImportPolicy("10.0.0.2", importPolicy([], false));
    const moved = rib.drain().fib;
    const r = moved.routes();
    expect(r.remove).toEqual([
      expect.objectContaining({ dst: "10.244.3.0/26", metric: 256, family: 4 }),
    ]);
    expect(r.set).toEqual([expect.objectContaining({ dst: "10.244.3.0/26", family: 4 })]);
    expect(r.set[0]?.metric).toBeUndefined();
    // And back: removed at the normal metric (no metric), set at 256.
    rib.setImportPolicy("10.0.0.2", importPolicy(prioRules, false));
    const back = rib.drain().fib.routes();
    expect(back.remove.map((x) => [x.dst, x.metric])).toEqual([["10.244.3.0/26", undefined]]);
    expect(back.set.map((x) => [x.dst, x.metric])).toEqual([["10.244.3.0/26", 256]]);
    // Withdrawn: removed at its own metric.
    withdraw(rib, ib, "10.244.3.0/26");
    const gone = rib.drain().fib.routes();
    expect(gone.remove.map((x) => [x.dst, x.metric])).toEqual([["10.244.3.0/26", 256]]);
    expect(gone.set).toEqual([]);
  });

  it("an import setPriority change reaches iBGP peers as the new LOCAL_PREF (the Adj-RIB-Out is not served from a stale cache)", () => {
    const rib = makeRib({ routePriority: { v4: N, v6: N } });
    const rules = (v: number): BgpFilterRule[] => [
      { action: "Accept", operations: [{ setPriority: { value: v } }] },
    ];
    const eb = peer(rib, {
      address: "192.0.2.1",
      asn: 65010,
      importPolicy: importPolicy(rules(256)),
    });
    peer(rib, { address: "10.0.0.2", asn: LOCAL_AS, nextHopSelfV4: "10.0.0.100" });
    announce(rib, eb, "203.0.113.0/24", { nextHop: "192.0.2.1", asPath: seq(65010) });
    rib.drain();
    const lp = () => rib.adjRibOut("10.0.0.2")[0]?.attrs.localPref;
    expect(lp()).toBe(2147483647 - 256);
    rib.setImportPolicy("192.0.2.1", importPolicy(rules(512)));
    const ch = rib.drain();
    expect(ch.adjOut.flatMap((b) => b.announce.map((a) => a.attrs.localPref))).toEqual([
      2147483647 - 512,
    ]);
    expect(lp()).toBe(2147483647 - 512);
    expect(ch.fib.routes().set.map((r) => r.metric)).toEqual([512]);
  });

  it("a new normal priority (ipv4NormalRoutePriority) changes the default LOCAL_PREF and which routes carry a metric of their own", () => {
    const { rib, ib } = setup();
    rib.originate("10.244.1.0/26");
    announce(rib, ib, "10.244.2.0/26", { nextHop: "10.0.0.2", localPref: 2147483647 - 3000 });
    const first = rib.drain().fib.routes();
    expect(first.set.map((x) => [x.dst, x.metric])).toEqual([["10.244.2.0/26", 3000]]);
    rib.setRoutePriority({ v4: 3000, v6: N });
    const ch = rib.drain();
    // The route's priority is now the normal one: same kernel route (3000), no removal.
    const r = ch.fib.routes();
    expect(r.remove).toEqual([]);
    expect(r.set.map((x) => [x.dst, x.metric])).toEqual([["10.244.2.0/26", undefined]]);
    expect(rib.explainExport("10.244.1.0/26", "10.0.0.2").attrs?.localPref).toBe(2147483647 - 3000);
  });

  it("a filter's `priority` compares a route without LOCAL_PREF with the normal priority given (ipv4NormalRoutePriority)", () => {
    const rib = makeRib();
    const pol = importPolicy([{ action: "Reject", priority: 2000 }], true, 2000);
    const a = peer(rib, { address: "192.0.2.1", asn: 65010, importPolicy: pol });
    announce(rib, a, "203.0.113.0/24", { nextHop: "192.0.2.1", asPath: seq(65010) });
    rib.drain();
    expect(rib.explain("203.0.113.0/24")?.paths[0]?.rejectReason).toBe("FilterReject");
    const b = makeRib();
    const pb = peer(b, {
      address: "192.0.2.1",
      asn: 65010,
      importPolicy: importPolicy([{ action: "Reject", priority: 2000 }], true),
    });
    announce(b, pb, "203.0.113.0/24", { nextHop: "192.0.2.1", asPath: seq(65010) });
    b.drain();
    expect(b.explain("203.0.113.0/24")?.paths[0]?.accepted).toBe(true);
  });

  it("the speaker (ocelot bgpd, node run) gives filters its normal priorities with fib.metricFromPriority (ipv4NormalRoutePriority 2000)", () => {
    const cfg = parseConfig({
      asn: LOCAL_AS,
      routerId: "10.0.0.100",
      peers: [
        {
          address: "192.0.2.1",
          asn: 65010,
          importFilter: { rules: [{ action: "Reject", priority: 2000 }] },
        },
      ],
      fib: { metricV4: 2000, metricV6: 0, metricFromPriority: true },
      status: { socket: "/nonexistent" },
    });
    expect(routePriorityOf(cfg)).toEqual({ v4: 2000, v6: 1024 });
    const peerCfg = cfg.peers[0];
    if (peerCfg === undefined) throw new Error("no peer");
    const rib = makeRib();
    const a = peer(rib, {
      address: "192.0.2.1",
      asn: 65010,
      importPolicy: policiesFor(peerCfg, LOCAL_AS, routePriorityOf(cfg)).importPolicy,
    });
    announce(rib, a, "203.0.113.0/24", { nextHop: "192.0.2.1", asPath: seq(65010) });
    rib.drain();
    expect(rib.explain("203.0.113.0/24")?.paths[0]?.rejectReason).toBe("FilterReject");
    // Off: the default 1024, the rule does not match.
    expect(routePriorityOf({ ...cfg, fib: { ...cfg.fib, metricFromPriority: false } })).toBe(
      undefined,
    );
  });
});
