// Calico BGPFilter rule fields that read or change the path (communities, peerType,
// asPathPrefix, interface, source, priority; operations addCommunity, prependASPath,
// setPriority): each test names the BIRD statement of Calico's confd template it stands for,
// first on the pure policy, then through the RIB (what a peer is sent).
import { describe, expect, it } from "vitest";
import { parseCommunity } from "../../src/bgp/policy/communities.js";
import { peerPolicies } from "../../src/bgp/policy/defaults.js";
import {
  asPathStartsWith,
  type BgpFilterRule,
  type FilterContext,
  filterPolicy,
  interfacePattern,
  routePriority,
} from "../../src/bgp/policy/filter.js";
import type { AttrView } from "../../src/bgp/rib/attrs.js";
import { RouteSource, rejectReasonName } from "../../src/bgp/rib/policy.js";
import { parsePrefix } from "../../src/bgp/rib/prefix.js";
import { seq, simpleAttrs } from "../../src/bgp/rib/simple_attrs.js";
import { announce, LOCAL_AS, makeRib, peer } from "../rib/fixtures.js";

type Policy = ReturnType<typeof filterPolicy>;

/** Runs a policy on a prefix and a path: "accept", "accept+edit N" or the reject reason. */
function runPath(
  policy: Policy,
  prefix: string,
  attrs: Partial<AttrView>,
  src: RouteSource = RouteSource.Internal,
): string {
  const p = parsePrefix(prefix);
  const view = simpleAttrs({ nextHop: "10.0.0.9", ...attrs } as never);
  if (policy.path === undefined) throw new Error("policy does not read the path");
  const one = new Uint32Array(1);
  one[0] = p.words[0] as number;
  const v =
    p.family === 4
      ? policy.path(4, one, 0, p.len, src, view)
      : policy.path(6, p.words, 0, p.len, src, view);
  if (v < 0) return `accept+edit ${-v}`;
  return v === 0 ? "accept" : rejectReasonName(v);
}

function pol(
  direction: "import" | "export",
  rules: BgpFilterRule[],
  ctx: FilterContext = {},
): Policy {
  const spec = direction === "import" ? { importV4: rules } : { exportV4: rules };
  return filterPolicy([{ name: "f", spec }], direction, undefined, ctx);
}

describe("BGPFilter path matches (Calico's BIRD filter conditions)", () => {
  it("communities, standard: `(65000, 100) ~ bgp_community`", () => {
    const p = pol("import", [
      { action: "Reject", communities: { values: ["65000:100"] } },
      { action: "Accept", cidr: "10.0.0.0/8", matchOperator: "In" },
    ]);
    expect(runPath(p, "10.1.0.0/16", { communities: [parseCommunity("65000:100")] })).toBe(
      "FilterReject",
    );
    expect(runPath(p, "10.1.0.0/16", { communities: [parseCommunity("65000:101")] })).toBe(
      "accept",
    );
    expect(runPath(p, "10.1.0.0/16", {})).toBe("accept");
  });

  it("communities, large: `(65000, 100, 999) ~ bgp_large_community`", () => {
    const p = pol("import", [{ action: "Reject", communities: { values: ["65000:100:999"] } }]);
    expect(runPath(p, "10.1.0.0/16", { largeCommunities: [[65000, 100, 999]] } as never)).toBe(
      "FilterReject",
    );
    expect(runPath(p, "10.1.0.0/16", { largeCommunities: [[65000, 100, 998]] } as never)).toBe(
      "accept",
    );
    // A standard community with the same numbers is not the large one.
    expect(runPath(p, "10.1.0.0/16", { communities: [parseCommunity("65000:100")] })).toBe(
      "accept",
    );
  });

  it("asPathPrefix: `bgp_path ~ [= 65000 65001 * =]` (the path begins with them)", () => {
    const p = pol("import", [{ action: "Reject", asPathPrefix: [65000, 65001] }]);
    expect(runPath(p, "10.1.0.0/16", { asPath: seq(65000, 65001) })).toBe("FilterReject");
    expect(runPath(p, "10.1.0.0/16", { asPath: seq(65000, 65001, 7) })).toBe("FilterReject");
    expect(runPath(p, "10.1.0.0/16", { asPath: seq(65000) })).toBe("accept");
    expect(runPath(p, "10.1.0.0/16", { asPath: seq(7, 65000, 65001) })).toBe("accept");
    expect(runPath(p, "10.1.0.0/16", { asPath: [] })).toBe("accept");
    // Split over two AS_SEQUENCE segments still begins with them; an AS_SET does not.
    expect(
      asPathStartsWith(
        simpleAttrs({
          nextHop: "",
          asPath: [
            { type: 2, asns: [65000] },
            { type: 2, asns: [65001, 9] },
          ],
        }),
        [65000, 65001],
      ),
    ).toBe(true);
    expect(
      asPathStartsWith(simpleAttrs({ nextHop: "", asPath: [{ type: 1, asns: [65000] }] }), [65000]),
    ).toBe(false);
  });

  it("peerType: `if (is_same_as)` / `if (!is_same_as)` around the rule, by the session's type", () => {
    const rules: BgpFilterRule[] = [
      { action: "Reject", peerType: "eBGP", cidr: "10.0.0.0/8", matchOperator: "In" },
      { action: "Reject", peerType: "iBGP", cidr: "172.16.0.0/12", matchOperator: "In" },
    ];
    const ebgp = pol("import", rules, { ebgp: true });
    const ibgp = pol("import", rules, { ebgp: false });
    // peerType is fixed per session: prefix-only evaluation stays (no path reads needed).
    const run = (p: Policy, prefix: string) => {
      const pp = parsePrefix(prefix);
      return p.v4(pp.words[0] as number, pp.len, RouteSource.External);
    };
    expect(run(ebgp, "10.1.0.0/16")).not.toBe(0);
    expect(run(ebgp, "172.16.1.0/24")).toBe(0);
    expect(run(ibgp, "10.1.0.0/16")).toBe(0);
    expect(run(ibgp, "172.16.1.0/24")).not.toBe(0);
    // Different sessions types: different update groups.
    expect(ebgp.key).not.toBe(ibgp.key);
    // peerPolicies passes the peer's type (external = not our AS).
    const ext = peerPolicies({
      external: true,
      pools: [],
      filters: [{ name: "f", spec: { importV4: rules } }],
    }).importPolicy;
    expect(run(ext, "10.1.0.0/16")).not.toBe(0);
  });

  it('interface: `(defined(ifname)) && (ifname ~ "eth*")`, the next hop\'s interface; unknown: fail-safe', () => {
    expect(interfacePattern("*.calico").test("cali12.calico")).toBe(true);
    expect(interfacePattern("eth?").test("eth0")).toBe(true);
    expect(interfacePattern("eth?").test("eth10")).toBe(false);
    expect(interfacePattern("eth0").test("xeth0")).toBe(false);
    // Default: the zone of an unnumbered peer's link-local next hop.
    const p = pol("import", [{ action: "Reject", interface: "eth*" }]);
    expect(runPath(p, "10.1.0.0/16", { nextHop: "fe80::1%eth1" })).toBe("FilterReject");
    expect(runPath(p, "10.1.0.0/16", { nextHop: "fe80::1%ens3" })).toBe("accept");
    // A learned route whose interface the speaker does not know: fail-safe, a Reject rule
    // matches and an Accept rule does not.
    expect(runPath(p, "10.1.0.0/16", { nextHop: "10.0.0.9" })).toBe("FilterReject");
    const acc = pol("import", [{ action: "Accept", interface: "eth*" }, { action: "Reject" }]);
    expect(runPath(acc, "10.1.0.0/16", { nextHop: "10.0.0.9" })).toBe("FilterReject");
    expect(runPath(acc, "10.1.0.0/16", { nextHop: "fe80::1%eth0" })).toBe("accept");
    // Our originations (blackholes, no interface, as Calico's BIRD sees its blocks): no match.
    const ex = pol("export", [{ action: "Reject", interface: "*" }]);
    expect(runPath(ex, "10.244.0.0/26", { nextHop: "" }, RouteSource.Local)).toBe("accept");
    expect(runPath(ex, "10.1.0.0/16", { nextHop: "fe80::1%eth0" }, RouteSource.Internal)).toBe(
      "FilterReject",
    );
    // With a resolver (next hop -> interface), as the speaker may give one.
    const r = pol("import", [{ action: "Reject", interface: "eth*" }], {
      ifaceOf: (nh) => (nh === "10.0.0.9" ? "eth0" : undefined),
    });
    expect(runPath(r, "10.1.0.0/16", { nextHop: "10.0.0.9" })).toBe("FilterReject");
  });

  it("source RemotePeers: `(defined(source)) && (source ~ [ RTS_BGP ])`: learned, not originated", () => {
    const p = pol("export", [
      { action: "Reject", source: "RemotePeers", communities: { values: ["1:1"] } },
    ]);
    const c = { communities: [parseCommunity("1:1")] };
    expect(runPath(p, "10.1.0.0/16", c, RouteSource.Internal)).toBe("FilterReject");
    expect(runPath(p, "10.1.0.0/16", c, RouteSource.External)).toBe("FilterReject");
    expect(runPath(p, "10.1.0.0/16", c, RouteSource.Local)).toBe("accept");
  });

  it("priority: `krt_metric = N`, with krt_metric = 2^31-1 - bgp_local_pref, else 1024", () => {
    expect(routePriority(simpleAttrs({ nextHop: "", localPref: 2147483647 - 512 }), 1, 1024)).toBe(
      512,
    );
    expect(routePriority(simpleAttrs({ nextHop: "" }), 1, 1024)).toBe(1024);
    // An eBGP peer's LOCAL_PREF is not ours to read (RFC 4271 §5.1.5): the default.
    expect(routePriority(simpleAttrs({ nextHop: "", localPref: 5 }), 2, 1024)).toBe(1024);
    const p = pol("import", [{ action: "Reject", priority: 512 }]);
    expect(runPath(p, "10.1.0.0/16", { localPref: 2147483647 - 512 })).toBe("FilterReject");
    expect(runPath(p, "10.1.0.0/16", { localPref: 2147483647 - 513 })).toBe("accept");
    const d = pol("import", [{ action: "Reject", priority: 1024 }]);
    expect(runPath(d, "10.1.0.0/16", {})).toBe("FilterReject");
    const c = pol("import", [{ action: "Reject", priority: 2000 }], { defaultPriority: 2000 });
    expect(runPath(c, "10.1.0.0/16", {})).toBe("FilterReject");
  });

  it("every condition of a rule must hold (BIRD `&&`), and first match wins", () => {
    const p = pol("import", [
      {
        action: "Reject",
        cidr: "10.0.0.0/8",
        matchOperator: "In",
        communities: { values: ["1:1"] },
        asPathPrefix: [65000],
      },
      { action: "Accept", communities: { values: ["1:1"] } },
      { action: "Reject" },
    ]);
    const c = [parseCommunity("1:1")];
    expect(runPath(p, "10.1.0.0/16", { communities: c, asPath: seq(65000) })).toBe("FilterReject");
    expect(runPath(p, "10.1.0.0/16", { communities: c, asPath: seq(65001) })).toBe("accept");
    expect(runPath(p, "192.168.0.0/16", { communities: c, asPath: seq(65000) })).toBe("accept");
    expect(runPath(p, "10.1.0.0/16", { asPath: seq(65000) })).toBe("FilterReject");
  });

  it("filters without path fields keep the prefix-only path (no `path` for the RIB to call)", () => {
    expect(
      pol("import", [{ action: "Reject", cidr: "10.0.0.0/8", matchOperator: "In" }]).path,
    ).toBe(undefined);
    expect(pol("import", [{ action: "Reject", communities: { values: ["1:1"] } }]).path).toBeTypeOf(
      "function",
    );
  });

  it("refuses bad values naming the field, on import as on export", () => {
    expect(() =>
      pol("import", [{ action: "Reject", communities: { values: ["70000:1"] } }]),
    ).toThrow('Filter rule filter "f" importV4[0]: communities: Community "70000:1"');
    expect(() => pol("import", [{ action: "Reject", asPathPrefix: [-1] }])).toThrow(
      "asPathPrefix[0] -1 is not an AS number",
    );
    expect(() => pol("import", [{ action: "Reject", priority: 0 }])).toThrow(
      "priority 0 is not a priority",
    );
    expect(() => pol("import", [{ action: "Reject", interface: "eth 0" }])).toThrow(
      'interface "eth 0" is not an interface name or pattern',
    );
    expect(() => pol("import", [{ action: "Reject", peerType: "xBGP" as never }])).toThrow(
      'peerType "xBGP" is not eBGP or iBGP',
    );
    // Calico's BIRD import filters run them too (bgp_community.add, bgp_path.prepend).
    expect(() =>
      pol("import", [{ action: "Accept", operations: [{ addCommunity: { value: "1:1" } }] }]),
    ).not.toThrow();
    expect(() =>
      pol("import", [{ action: "Accept", operations: [{ prependASPath: { prefix: [-1] } }] }]),
    ).toThrow("prependASPath.prefix[0] -1 is not an AS number");
    expect(() =>
      pol("export", [{ action: "Reject", operations: [{ setPriority: { value: 5 } }] }]),
    ).toThrow('operations need action Accept, not "Reject"');
    expect(() =>
      pol("export", [
        {
          action: "Accept",
          operations: [{ setPriority: { value: 5 }, addCommunity: { value: "1:1" } }],
        },
      ]),
    ).toThrow("operations[0]: exactly one operation must be set");
  });
});

describe("BGPFilter export operations (Calico's BIRD export filter statements), through the RIB", () => {
  /** A RIB with one iBGP and one eBGP peer sharing the filter, and a route from an iBGP peer. */
  function setup(rules: BgpFilterRule[]) {
    const rib = makeRib();
    const filters = [{ name: "f", spec: { exportV4: rules } }];
    const ib = { address: "10.0.0.2", asn: LOCAL_AS };
    const eb = { address: "192.0.2.1", asn: 65001 };
    for (const p of [ib, eb]) {
      const pols = peerPolicies({ external: p.asn !== LOCAL_AS, pools: [], filters });
      peer(rib, {
        ...p,
        importPolicy: pols.importPolicy,
        exportPolicy: pols.exportPolicy,
        nextHopSelfV4: "10.0.0.100",
      });
    }
    rib.originate("10.244.1.0/26");
    rib.originate("10.244.2.0/26", { communities: [parseCommunity("65000:42")] });
    rib.drain();
    return rib;
  }

  it("addCommunity: `bgp_community.add((65000, 200))` and `bgp_large_community.add((65000, 300, 400))`", () => {
    const rib = setup([
      {
        action: "Accept",
        cidr: "10.244.1.0/26",
        matchOperator: "Equal",
        operations: [
          { addCommunity: { value: "65000:200" } },
          { addCommunity: { value: "65000:300:400" } },
        ],
      },
    ]);
    for (const peerId of ["10.0.0.2", "192.0.2.1"]) {
      const x = rib.explainExport("10.244.1.0/26", peerId);
      expect(x.advertised).toBe(true);
      expect(x.attrs?.communities).toEqual([parseCommunity("65000:200")]);
      expect(x.attrs?.largeCommunities).toEqual([[65000, 300, 400]]);
      // The other prefix did not match the rule: sent unchanged (first match, no edit).
      expect(rib.explainExport("10.244.2.0/26", peerId).attrs?.communities).toEqual([
        parseCommunity("65000:42"),
      ]);
    }
  });

  it("prependASPath: `bgp_path.prepend(65002); bgp_path.prepend(65001)`, then our AS towards eBGP", () => {
    const rib = setup([
      { action: "Accept", operations: [{ prependASPath: { prefix: [65001, 65002] } }] },
    ]);
    expect(rib.explainExport("10.244.1.0/26", "10.0.0.2").attrs?.asPath).toEqual(seq(65001, 65002));
    expect(rib.explainExport("10.244.1.0/26", "192.0.2.1").attrs?.asPath).toEqual(
      seq(LOCAL_AS, 65001, 65002),
    );
  });

  it("setPriority: `krt_metric = 256` exported as `bgp_local_pref = 2^31-1 - krt_metric` (iBGP only)", () => {
    const rib = setup([
      {
        action: "Accept",
        communities: { values: ["65000:42"] },
        operations: [{ setPriority: { value: 256 } }],
      },
    ]);
    expect(rib.explainExport("10.244.2.0/26", "10.0.0.2").attrs?.localPref).toBe(2147483647 - 256);
    // Not matched: the LOCAL_PREF our decision used (default 100).
    expect(rib.explainExport("10.244.1.0/26", "10.0.0.2").attrs?.localPref).toBe(100);
    // RFC 4271 §5.1.5: no LOCAL_PREF to an eBGP peer.
    expect(rib.explainExport("10.244.2.0/26", "192.0.2.1").attrs?.localPref).toBeUndefined();
  });

  it("a community match on a learned route, reject and accept with an edit, in the Adj-RIB-Out", () => {
    const rib = makeRib();
    const filters = [
      {
        name: "f",
        spec: {
          exportV4: [
            { action: "Reject" as const, communities: { values: ["65000:666"] } },
            {
              action: "Accept" as const,
              source: "RemotePeers" as const,
              asPathPrefix: [65010],
              operations: [{ addCommunity: { value: "65000:1" } }],
            },
          ],
        },
      },
    ];
    const to = peerPolicies({ external: false, pools: [], filters });
    const from = peer(rib, { address: "192.0.2.9", asn: 65010 });
    peer(rib, {
      address: "10.0.0.2",
      asn: LOCAL_AS,
      exportPolicy: to.exportPolicy,
      nextHopSelfV4: "10.0.0.100",
    });
    announce(rib, from, "198.51.100.0/24", {
      nextHop: "192.0.2.9",
      asPath: seq(65010),
      communities: [parseCommunity("65000:666")],
    });
    announce(rib, from, "203.0.113.0/24", { nextHop: "192.0.2.9", asPath: seq(65010) });
    rib.drain();
    const bad = rib.explainExport("198.51.100.0/24", "10.0.0.2");
    expect(bad).toMatchObject({ advertised: false, reason: "FilterReject" });
    expect(bad.detail).toContain('filter "f" exportV4[0]');
    const good = rib.explainExport("203.0.113.0/24", "10.0.0.2");
    expect(good.advertised).toBe(true);
    expect(good.attrs?.communities).toEqual([parseCommunity("65000:1")]);
    const out = rib.adjRibOut("10.0.0.2");
    const sent = out.flatMap((a) => a.v4.toStrings());
    expect(sent).toEqual(["203.0.113.0/24"]);
    expect(out[0]?.attrs.communities).toEqual([parseCommunity("65000:1")]);
  });

  it("import setPriority: `krt_metric = 256` then `bgp_local_pref = 2^31-1 - krt_metric`: the path wins on LOCAL_PREF and carries it to iBGP", () => {
    const rib = makeRib();
    const rules: BgpFilterRule[] = [
      {
        action: "Accept",
        communities: { values: ["65020:1"] },
        operations: [{ setPriority: { value: 256 } }],
      },
    ];
    const pols = peerPolicies({
      external: true,
      pools: [],
      filters: [{ name: "f", spec: { importV4: rules } }],
    });
    // A: lower router id (would win the tie-break); B: tagged, gets priority 256.
    const a = peer(rib, { address: "192.0.2.1", asn: 65010, importPolicy: pols.importPolicy });
    const b = peer(rib, { address: "192.0.2.2", asn: 65020, importPolicy: pols.importPolicy });
    const ib = { address: "10.0.0.2", asn: LOCAL_AS, nextHopSelfV4: "10.0.0.100" };
    peer(rib, ib);
    announce(rib, a, "203.0.113.0/24", { nextHop: "192.0.2.1", asPath: seq(65010) });
    announce(rib, b, "203.0.113.0/24", {
      nextHop: "192.0.2.2",
      asPath: seq(65020),
      communities: [parseCommunity("65020:1")],
    });
    rib.drain();
    const x = rib.explain("203.0.113.0/24");
    if (x === undefined) throw new Error("no 203.0.113.0/24");
    expect(x.bestReason).toBe("LocalPref");
    const best = x.paths.find((p) => p.best);
    expect(best?.peer).toBe("192.0.2.2");
    expect(best?.localPref).toBe(2147483647 - 256);
    // The received attributes are kept as received (Adj-RIB-In, re-evaluation).
    expect(best?.attrs.localPref).toBeUndefined();
    expect(rib.explainExport("203.0.113.0/24", "10.0.0.2").attrs?.localPref).toBe(2147483647 - 256);
    // The policy changed (rule gone): re-evaluated in place, the tie-break decides again.
    const plain = peerPolicies({ external: true, pools: [], filters: [] }).importPolicy;
    rib.setImportPolicy("192.0.2.2", plain);
    rib.drain();
    const y = rib.explain("203.0.113.0/24");
    if (y === undefined) throw new Error("no 203.0.113.0/24");
    expect(y.paths.find((p) => p.best)?.peer).toBe("192.0.2.1");
    expect(y.paths.every((p) => p.localPref === 100)).toBe(true);
    // Back again, and a re-announcement of the same path keeps it.
    rib.setImportPolicy("192.0.2.2", pols.importPolicy);
    announce(rib, b, "203.0.113.0/24", {
      nextHop: "192.0.2.2",
      asPath: seq(65020),
      communities: [parseCommunity("65020:1")],
    });
    rib.drain();
    expect(rib.explain("203.0.113.0/24")?.paths.find((p) => p.best)?.peer).toBe("192.0.2.2");
  });
});
