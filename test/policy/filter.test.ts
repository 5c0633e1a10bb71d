import { describe, expect, it } from "vitest";
import {
  formatCommunity,
  parseCommunity,
  parseCommunityList,
  parseLargeCommunity,
  prefixCommunities,
} from "../../src/bgp/policy/communities.js";
import {
  onlyLocalOriginations,
  peerPolicies,
  rejectOwnPools,
} from "../../src/bgp/policy/defaults.js";
import { type BgpFilterRule, filterPolicy } from "../../src/bgp/policy/filter.js";
import { NO_ADVERTISE, NO_EXPORT } from "../../src/bgp/rib/attrs.js";
import { RejectReason, RouteSource } from "../../src/bgp/rib/policy.js";
import { parsePrefix } from "../../src/bgp/rib/prefix.js";
import { LOCAL_AS, makeRib, peer, verdict } from "../rib/fixtures.js";

/** Runs a policy on a text prefix: "accept" or the reject reason name. */
const run = (
  policy: ReturnType<typeof filterPolicy>,
  prefix: string,
  src: RouteSource = RouteSource.External,
) => verdict(policy, prefix, src);

function importOnly(rules: BgpFilterRule[], v6 = false) {
  return filterPolicy(
    [{ name: "f", spec: v6 ? { importV6: rules } : { importV4: rules } }],
    "import",
  );
}

describe("BGPFilter rules", () => {
  it("Equal and NotEqual match the exact prefix only", () => {
    const eq = importOnly([{ cidr: "10.1.0.0/16", matchOperator: "Equal", action: "Reject" }]);
    expect(run(eq, "10.1.0.0/16")).toBe("FilterReject");
    expect(run(eq, "10.1.0.0/17")).toBe("accept");
    expect(run(eq, "10.1.0.0/15".replace("10.1", "10.0"))).toBe("accept");
    const ne = importOnly([{ cidr: "10.1.0.0/16", matchOperator: "NotEqual", action: "Reject" }]);
    expect(run(ne, "10.1.0.0/16")).toBe("accept");
    expect(run(ne, "10.1.0.0/24")).toBe("FilterReject");
    expect(run(ne, "192.168.0.0/16")).toBe("FilterReject");
  });

  it("In and NotIn match containment, with the prefix length range", () => {
    const inR = importOnly([
      {
        cidr: "10.0.0.0/8",
        matchOperator: "In",
        prefixLength: { min: 16, max: 24 },
        action: "Reject",
      },
    ]);
    expect(run(inR, "10.0.0.0/8")).toBe("accept"); // inside, but /8 < min 16
    expect(run(inR, "10.5.0.0/16")).toBe("FilterReject");
    expect(run(inR, "10.5.6.0/24")).toBe("FilterReject");
    expect(run(inR, "10.5.6.0/25")).toBe("accept"); // > max
    expect(run(inR, "11.0.0.0/16")).toBe("accept"); // outside
    const notIn = importOnly([{ cidr: "10.0.0.0/8", matchOperator: "NotIn", action: "Reject" }]);
    expect(run(notIn, "10.9.0.0/16")).toBe("accept");
    expect(run(notIn, "0.0.0.0/0")).toBe("FilterReject");
    expect(run(notIn, "172.16.0.0/12")).toBe("FilterReject");
  });

  it("In defaults the length range to cidr length .. 32 and includes the cidr itself", () => {
    const inR = importOnly([{ cidr: "192.168.0.0/16", matchOperator: "In", action: "Reject" }]);
    expect(run(inR, "192.168.0.0/16")).toBe("FilterReject");
    expect(run(inR, "192.168.255.255/32")).toBe("FilterReject");
    expect(run(inR, "192.168.0.0/15".replace("168", "168"))).toBe("accept");
  });

  it("first match wins; no match falls to the default (accept)", () => {
    const p = importOnly([
      { cidr: "10.1.0.0/16", matchOperator: "Equal", action: "Accept" },
      { cidr: "10.0.0.0/8", matchOperator: "In", action: "Reject" },
    ]);
    expect(run(p, "10.1.0.0/16")).toBe("accept");
    expect(run(p, "10.1.0.0/24")).toBe("FilterReject");
    expect(run(p, "8.8.8.0/24")).toBe("accept");
    expect(p.describe?.(4, parsePrefix("10.1.0.0/24").words, 0, 24, RouteSource.External)).toBe(
      'filter "f" importV4[1] 10.0.0.0/8 In Reject',
    );
  });

  it("several filters are checked in order, first match across them wins", () => {
    const p = filterPolicy(
      [
        {
          name: "a",
          spec: { exportV4: [{ cidr: "10.0.0.0/24", matchOperator: "Equal", action: "Reject" }] },
        },
        {
          name: "b",
          spec: { exportV4: [{ cidr: "10.0.0.0/8", matchOperator: "In", action: "Accept" }] },
        },
      ],
      "export",
      onlyLocalOriginations,
    );
    expect(run(p, "10.0.0.0/24")).toBe("FilterReject");
    expect(run(p, "10.0.1.0/24")).toBe("accept");
    expect(run(p, "8.8.8.0/24", RouteSource.External)).toBe("NotOriginatedHere");
    expect(run(p, "8.8.8.0/24", RouteSource.Local)).toBe("accept");
  });

  it("a rule without cidr matches everything; source RemotePeers skips our originations", () => {
    const p = filterPolicy(
      [{ name: "f", spec: { exportV4: [{ source: "RemotePeers", action: "Reject" }] } }],
      "export",
    );
    expect(run(p, "10.0.0.0/24", RouteSource.Internal)).toBe("FilterReject");
    expect(run(p, "10.0.0.0/24", RouteSource.Local)).toBe("accept");
  });

  it("IPv6 rules match IPv6 prefixes across word boundaries", () => {
    const p = importOnly(
      [
        {
          cidr: "2001:db8:1230::/44",
          matchOperator: "In",
          prefixLength: { max: 64 },
          action: "Reject",
        },
      ],
      true,
    );
    expect(run(p, "2001:db8:1234::/48")).toBe("FilterReject");
    expect(run(p, "2001:db8:123f::/48")).toBe("FilterReject");
    expect(run(p, "2001:db8:1240::/48")).toBe("accept");
    expect(run(p, "2001:db8:1234::/80")).toBe("accept");
    // IPv4 rules do not apply to IPv6 and the reverse.
    expect(run(p, "10.0.0.0/8")).toBe("accept");
  });

  it("refuses malformed rules with errors naming the bad value", () => {
    expect(() =>
      importOnly([{ cidr: "10.0.0.0/33", matchOperator: "In", action: "Reject" }]),
    ).toThrow('Prefix "10.0.0.0/33" is not a valid CIDR');
    expect(() =>
      importOnly([{ cidr: "10.0.0.1/8", matchOperator: "In", action: "Reject" }]),
    ).toThrow('Prefix "10.0.0.1/8" has host bits set');
    expect(() =>
      importOnly([{ cidr: "10.0.0.0/8", matchOperator: "Within" as never, action: "Reject" }]),
    ).toThrow('matchOperator "Within" is not Equal, NotEqual, In or NotIn');
    expect(() =>
      importOnly([{ cidr: "10.0.0.0/8", matchOperator: "In", action: "Drop" as never }]),
    ).toThrow('action "Drop" is not Accept or Reject');
    expect(() =>
      importOnly([
        {
          cidr: "10.0.0.0/8",
          matchOperator: "In",
          prefixLength: { min: 30, max: 20 },
          action: "Accept",
        },
      ]),
    ).toThrow("prefixLength.min 30 is above max 20");
    expect(() => importOnly([{ cidr: "fd00::/8", matchOperator: "In", action: "Accept" }])).toThrow(
      'cidr "fd00::/8" is not an IPv4 prefix',
    );
    expect(() => importOnly([{ color: "red", action: "Accept" } as never])).toThrow(
      'Filter rule filter "f" importV4[0]: field "color" is not supported',
    );
    expect(() => importOnly([{ source: "Local" as never, action: "Accept" }])).toThrow(
      'source "Local" is not RemotePeers',
    );
    expect(() => importOnly([{ cidr: "10.0.0.0/8", action: "Accept" }])).toThrow(
      'cidr "10.0.0.0/8" needs a matchOperator',
    );
  });
});

describe("DESIGN §7 defaults", () => {
  it("external import rejects prefixes inside our pools (any length), accepts the rest", () => {
    const d = rejectOwnPools(["10.244.0.0/16", "fd00:10:244::/48"]);
    const one = new Uint32Array([parsePrefix("10.244.3.0/26").words[0] as number]);
    expect(d.v4(one[0] as number, 26, RouteSource.External)).toBe(RejectReason.OwnPoolPrefix);
    expect(d.v4(parsePrefix("10.0.0.0/8").words[0] as number, 8, RouteSource.External)).toBe(0);
    const v6 = parsePrefix("fd00:10:244:1::/64");
    expect(d.v6(v6.words, 0, 64, RouteSource.External)).toBe(RejectReason.OwnPoolPrefix);
  });

  it("peerPolicies: filters first, then defaults only for external peers", () => {
    const pools = ["10.244.0.0/16"];
    const ext = peerPolicies({ external: true, pools });
    const int = peerPolicies({ external: false, pools });
    expect(run(ext.importPolicy, "10.244.1.0/26")).toBe("OwnPoolPrefix");
    expect(run(int.importPolicy, "10.244.1.0/26")).toBe("accept");
    expect(run(ext.exportPolicy, "8.8.8.0/24", RouteSource.Internal)).toBe("NotOriginatedHere");
    expect(run(int.exportPolicy, "8.8.8.0/24", RouteSource.External)).toBe("accept");
    const allowed = peerPolicies({
      external: true,
      pools,
      filters: [
        {
          name: "ok",
          spec: { importV4: [{ cidr: "10.244.9.0/24", matchOperator: "In", action: "Accept" }] },
        },
      ],
    });
    expect(run(allowed.importPolicy, "10.244.9.64/26")).toBe("accept");
    expect(run(allowed.importPolicy, "10.244.8.0/26")).toBe("OwnPoolPrefix");
    // Keys identify behaviour (update groups share equal export policies).
    expect(peerPolicies({ external: true, pools }).exportPolicy.key).toBe(ext.exportPolicy.key);
    expect(allowed.importPolicy.key).not.toBe(ext.importPolicy.key);
    // A filter with import rules only does not change what is exported: same export key.
    expect(allowed.exportPolicy.key).toBe(ext.exportPolicy.key);
    const exporting = peerPolicies({
      external: true,
      pools,
      filters: [
        {
          name: "ok",
          spec: { exportV4: [{ cidr: "10.244.9.0/24", matchOperator: "In", action: "Reject" }] },
        },
      ],
    });
    expect(exporting.exportPolicy.key).not.toBe(ext.exportPolicy.key);
  });

  it("a peer's own filter without rules leaves its policies' keys (one update group for all)", () => {
    const of = (address: string) =>
      peerPolicies({
        external: false,
        pools: [],
        filters: [{ name: `peer ${address}`, spec: {} }],
      });
    const a = of("10.0.0.1");
    const b = of("10.0.0.2");
    expect(a.exportPolicy.key).toBe(b.exportPolicy.key);
    expect(a.importPolicy.key).toBe(b.importPolicy.key);
    expect(a.exportPolicy.key).toBe(peerPolicies({ external: false, pools: [] }).exportPolicy.key);
    // Rules in the filter make it count, under its name.
    const ruled = peerPolicies({
      external: false,
      pools: [],
      filters: [
        {
          name: "peer 10.0.0.1",
          spec: { exportV4: [{ cidr: "10.9.0.0/16", matchOperator: "In", action: "Reject" }] },
        },
      ],
    });
    expect(ruled.exportPolicy.key).not.toBe(a.exportPolicy.key);
    expect(ruled.exportPolicy.key).toContain("peer 10.0.0.1");
  });
});

describe("communities", () => {
  it("parses and formats standard, well-known and large communities", () => {
    expect(parseCommunity("64512:100")).toBe(((64512 << 16) | 100) >>> 0);
    expect(formatCommunity(parseCommunity("64512:100"))).toBe("64512:100");
    expect(parseCommunity("no-export")).toBe(NO_EXPORT);
    expect(parseCommunity("NO-ADVERTISE")).toBe(NO_ADVERTISE);
    expect(formatCommunity(NO_EXPORT)).toBe("no-export");
    expect(parseLargeCommunity("4200000001:1:2")).toEqual([4200000001, 1, 2]);
    expect(parseCommunityList(["64512:100", "4200000001:1:2", "64512:100"])).toEqual({
      communities: [((64512 << 16) | 100) >>> 0],
      largeCommunities: [[4200000001, 1, 2]],
    });
  });

  it("refuses bad values, quoting them", () => {
    expect(() => parseCommunity("65536:1")).toThrow('Community "65536:1" must be two numbers');
    expect(() => parseCommunity("abc")).toThrow('Community "abc"');
    expect(() => parseLargeCommunity("1:2:4294967296")).toThrow('Large community "1:2:4294967296"');
  });
});

describe("prefixAdvertisements (communities on our originations)", () => {
  it("every entry whose CIDR contains the prefix contributes, names resolved", () => {
    const f = prefixCommunities(
      [
        { cidr: "10.244.0.0/16", communities: ["pool", "64512:1"] },
        { cidr: "10.244.1.0/24", communities: ["4200000001:7:7"] },
        { cidr: "fd00::/8", communities: ["no-export-pod"] },
      ],
      [
        { name: "pool", value: "64512:100" },
        { name: "no-export-pod", value: "65535:65281" },
      ],
    );
    expect(f("10.244.1.0/26")).toEqual({
      communities: [parseCommunity("64512:100"), parseCommunity("64512:1")],
      largeCommunities: [[4200000001, 7, 7]],
    });
    expect(f("10.244.2.0/26")).toEqual({
      communities: [parseCommunity("64512:100"), parseCommunity("64512:1")],
      largeCommunities: [],
    });
    expect(f("10.0.0.0/8")).toEqual({ communities: [], largeCommunities: [] });
    expect(f("fd00:1::/64")).toEqual({ communities: [NO_EXPORT], largeCommunities: [] });
  });

  it("refuses unknown names and bad values at configuration time", () => {
    expect(() => prefixCommunities([{ cidr: "10.0.0.0/8", communities: ["nope"] }])).toThrow(
      'Community "nope" in prefixAdvertisements for 10.0.0.0/8 is neither a defined name, a well-known name nor a value',
    );
    expect(() => prefixCommunities([{ cidr: "10.0.0.0/8", communities: ["70000:1"] }])).toThrow(
      'Community "70000:1"',
    );
    expect(() => prefixCommunities([], [{ name: "x", value: "1:2:3:4" }])).toThrow(
      'Community "1:2:3:4"',
    );
  });

  it("originations carry them to peers; NO_EXPORT set this way keeps the route inside the AS", () => {
    const rib = makeRib();
    const f = prefixCommunities([
      { cidr: "10.244.0.0/16", communities: ["64512:100", "no-export"] },
    ]);
    peer(rib, { address: "192.0.2.1", asn: 65001 });
    peer(rib, { address: "10.0.0.2", asn: LOCAL_AS });
    rib.originate("10.244.1.0/26", f("10.244.1.0/26"));
    rib.drain();
    expect(rib.explainExport("10.244.1.0/26", "10.0.0.2")).toMatchObject({
      advertised: true,
      attrs: { communities: [parseCommunity("64512:100"), NO_EXPORT] },
    });
    expect(rib.explainExport("10.244.1.0/26", "192.0.2.1")).toMatchObject({
      advertised: false,
      reason: "NoExport",
    });
  });
});
