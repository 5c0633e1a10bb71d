// Round-trip properties over generated messages: attribute sets and prefixes packed by
// encodeUpdates decode back to the same values, on 2- and 4-octet sessions, with ADD-PATH, for
// IPv4 and IPv6, and every message fits the maximum size. Plus OPEN/NOTIFICATION/ROUTE-REFRESH.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Afi, AsTrans, Safi } from "../../src/bgp/wire/constants.js";
import {
  decodeMessage,
  encodeNotification,
  encodeRouteRefresh,
} from "../../src/bgp/wire/message.js";
import {
  decodeNlriInto,
  forEachIpv4Prefix,
  forEachIpv6Prefix,
  newPrefixArray,
  prefixArrayFromText,
} from "../../src/bgp/wire/nlri.js";
import { decodeOpen, encodeOpen } from "../../src/bgp/wire/open.js";
import {
  type AsPathSegment,
  type Capability,
  emptyAttributes,
  familyKey,
  type PathAttributes,
  type PrefixArray,
  type SessionOptions,
  sessionOptions,
  type UpdateMessage,
} from "../../src/bgp/wire/types.js";
import { decodeUpdate, encodeEndOfRib, encodeUpdates } from "../../src/bgp/wire/update.js";

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const asn = fc.integer({ min: 1, max: 0xffffffff }).filter((a) => a !== AsTrans);

const segments: fc.Arbitrary<AsPathSegment[]> = fc
  .tuple(
    fc.option(
      fc.record({
        type: fc.constantFrom(3, 4),
        asns: fc.array(asn, { minLength: 1, maxLength: 4 }),
      }),
      { nil: undefined },
    ),
    fc.array(
      fc.record({
        type: fc.constantFrom(1, 2),
        asns: fc.array(asn, { minLength: 1, maxLength: 12 }),
      }),
      { maxLength: 4 },
    ),
  )
  .map(([c, rest]) => normalize([...(c ? [c] : []), ...rest]));

/** Adjacent AS_SEQUENCEs are one sequence on the wire after an AS4 merge: compare merged. */
function normalize(segs: AsPathSegment[]): AsPathSegment[] {
  const out: AsPathSegment[] = [];
  for (const s of segs) {
    const last = out[out.length - 1];
    if (last && last.type === 2 && s.type === 2) last.asns = [...last.asns, ...s.asns];
    else out.push({ type: s.type, asns: [...s.asns] });
  }
  return out;
}

const attributes: fc.Arbitrary<PathAttributes> = fc
  .record({
    origin: fc.integer({ min: 0, max: 2 }),
    asPath: segments,
    nextHop: u32,
    med: fc.option(u32, { nil: null }),
    localPref: fc.option(u32, { nil: null }),
    atomicAggregate: fc.boolean(),
    aggregator: fc.option(fc.record({ asn, address: u32 }), { nil: null }),
    communities: fc.option(fc.array(u32, { minLength: 1, maxLength: 8 }), { nil: null }),
    ext: fc.option(fc.uint8Array({ minLength: 8, maxLength: 8 }), { nil: null }),
    large: fc.option(fc.array(fc.tuple(u32, u32, u32), { minLength: 1, maxLength: 3 }), {
      nil: null,
    }),
    originatorId: fc.option(u32, { nil: null }),
    clusterList: fc.option(fc.array(u32, { minLength: 1, maxLength: 3 }), { nil: null }),
    unknown: fc.option(fc.uint8Array({ maxLength: 20 }), { nil: null }),
  })
  .map((r) => {
    const a = emptyAttributes();
    a.origin = r.origin;
    a.asPath = r.asPath;
    a.nextHop = r.nextHop;
    a.med = r.med;
    a.localPref = r.localPref;
    a.atomicAggregate = r.atomicAggregate;
    a.aggregator = r.aggregator;
    a.communities = r.communities ? Uint32Array.from(r.communities) : null;
    a.extendedCommunities = r.ext;
    a.largeCommunities = r.large ? Uint32Array.from(r.large.flat()) : null;
    a.originatorId = r.originatorId;
    a.clusterList = r.clusterList ? Uint32Array.from(r.clusterList) : null;
    a.unknown = r.unknown ? [{ flags: 0xe0, type: 240, data: r.unknown }] : [];
    return a;
  });

function prefixes(afi: number, withIds: boolean): fc.Arbitrary<PrefixArray> {
  const max = afi === Afi.Ipv6 ? 128 : 32;
  const words = afi === Afi.Ipv6 ? 4 : 1;
  return fc
    .array(
      fc.tuple(
        fc.array(u32, { minLength: words, maxLength: words }),
        fc.integer({ min: 0, max }),
        u32,
      ),
      { minLength: 1, maxLength: 1500 },
    )
    .map((xs) => {
      const p = newPrefixArray(afi, xs.length, withIds);
      for (const [w, len, id] of xs) {
        const i = p.count++;
        for (let k = 0; k < words; k++) {
          const bits = len - 32 * k;
          const m = bits >= 32 ? 0xffffffff : bits <= 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
          p.addrs[i * words + k] = (w[k] & m) >>> 0;
        }
        p.lens[i] = len;
        if (p.pathIds) p.pathIds[i] = id;
      }
      return p;
    });
}

function options(four: boolean, addPathFam: number | null, extended: boolean): SessionOptions {
  const s = new Set<number>(addPathFam === null ? [] : [addPathFam]);
  return sessionOptions({
    fourOctetAs: four,
    addPath: { receive: s, send: s },
    extendedMessage: extended,
    external: false,
  });
}

/** The semantic part of attributes (layout and Partial bits are encoding details). */
function semantic(a: PathAttributes | null) {
  if (!a) return null;
  return {
    ...a,
    asPath: a.asPath ? normalize(a.asPath) : null,
    layout: null,
    mpReach: null,
    mpUnreach: null,
    unknown: a.unknown.map((u) => ({
      type: u.type,
      data: Array.from(u.data),
      flags: u.flags & 0xc0,
    })),
    communities: a.communities ? Array.from(a.communities) : null,
    largeCommunities: a.largeCommunities ? Array.from(a.largeCommunities) : null,
    clusterList: a.clusterList ? Array.from(a.clusterList) : null,
    extendedCommunities: a.extendedCommunities ? Array.from(a.extendedCommunities) : null,
  };
}

function collect(
  updates: UpdateMessage[],
  afi: number,
  which: "announce" | "withdraw",
): PrefixArray {
  const views = updates.map((u) => {
    if (afi === Afi.Ipv4) return which === "announce" ? u.nlri : u.withdrawn;
    return which === "announce" ? u.attributes?.mpReach?.nlri : u.attributes?.mpUnreach?.withdrawn;
  });
  const total = views.reduce((s, v) => s + (v?.count ?? 0), 0);
  const out = newPrefixArray(afi, total, true);
  for (const v of views) if (v) decodeNlriInto(v, out);
  return out;
}

function samePrefixes(a: PrefixArray, b: PrefixArray, withIds: boolean): void {
  expect(b.count).toBe(a.count);
  const w = a.afi === Afi.Ipv6 ? 4 : 1;
  expect(Array.from(b.addrs.subarray(0, b.count * w))).toEqual(
    Array.from(a.addrs.subarray(0, a.count * w)),
  );
  expect(Array.from(b.lens.subarray(0, b.count))).toEqual(Array.from(a.lens.subarray(0, a.count)));
  if (withIds)
    expect(Array.from(b.pathIds?.subarray(0, b.count) ?? [])).toEqual(
      Array.from(a.pathIds?.subarray(0, a.count) ?? []),
    );
}

describe("UPDATE round trips (fast-check)", () => {
  for (const afi of [Afi.Ipv4, Afi.Ipv6]) {
    it(`encodeUpdates -> decodeUpdate gives back attributes and prefixes (AFI ${afi})`, () => {
      fc.assert(
        fc.property(
          attributes,
          fc.boolean(),
          fc.boolean(),
          fc.constantFrom(4096, 65535, 300),
          fc
            .boolean()
            .chain((ids) => fc.tuple(fc.constant(ids), prefixes(afi, ids), prefixes(afi, ids))),
          (attrs, four, extended, max, [ids, announce, withdraw]) => {
            // RFC 6793 §5: confederation member ASNs cannot travel in 4 octets to a 2-octet speaker.
            fc.pre(
              four ||
                !(attrs.asPath ?? []).some((s) => s.type > 2 && s.asns.some((a) => a > 0xffff)),
            );
            const fam = familyKey(afi, Safi.Unicast);
            const opts = options(four, ids ? fam : null, extended);
            const nh = afi === Afi.Ipv6 ? Uint8Array.from({ length: 32 }, (_, i) => i + 1) : null;
            let msgs: Uint8Array[];
            try {
              msgs = encodeUpdates(
                { afi, safi: Safi.Unicast, attributes: attrs, mpNextHop: nh, announce, withdraw },
                opts,
                max,
              );
            } catch (e) {
              // Only a too-small maximum for large attribute sets may refuse, and says so.
              expect(max).toBe(300);
              expect(String(e)).toMatch(/fewer than one prefix needs/);
              return;
            }
            const decoded = msgs.map((m) => {
              expect(m.length).toBeLessThanOrEqual(max);
              const u = decodeUpdate(m, opts);
              expect(u.action, u.errors.map((e) => e.reason).join()).toBe(0);
              return u;
            });
            samePrefixes(withdraw, collect(decoded, afi, "withdraw"), ids);
            samePrefixes(announce, collect(decoded, afi, "announce"), ids);
            const withAttrs = decoded.filter((u) =>
              afi === Afi.Ipv4 ? u.nlri.count > 0 : u.attributes?.mpReach,
            );
            for (const u of withAttrs) {
              const got = semantic(u.attributes);
              const want = semantic(attrs);
              if (afi === Afi.Ipv6 && want) want.nextHop = null; // the next hop is in MP_REACH_NLRI
              expect(got).toEqual(want);
              if (afi === Afi.Ipv6)
                expect(Array.from(u.attributes?.mpReach?.nextHop ?? [])).toEqual(
                  Array.from(nh ?? []),
                );
            }
          },
        ),
        { numRuns: 150 },
      );
    });
  }

  it("packs as few messages as fit: every message but the last is near full", () => {
    const p = newPrefixArray(Afi.Ipv4, 10000);
    for (let i = 0; i < 10000; i++) {
      p.addrs[i] = (0x0a000000 + i * 256) >>> 0;
      p.lens[i] = 24;
    }
    p.count = 10000;
    const a = emptyAttributes();
    a.origin = 0;
    a.asPath = [{ type: 2, asns: [65001] }];
    a.nextHop = 0x0a000001;
    const msgs = encodeUpdates(
      { afi: Afi.Ipv4, safi: Safi.Unicast, attributes: a, announce: p },
      sessionOptions(),
    );
    for (const m of msgs.slice(0, -1)) expect(m.length).toBeGreaterThan(4096 - 4);
    expect(msgs.length).toBe(Math.ceil(10000 / Math.floor((4096 - 23 - 24) / 4)));
  });

  it("walks IPv4 and IPv6 NLRI with callbacks the same as into arrays", () => {
    fc.assert(
      fc.property(prefixes(Afi.Ipv6, true), prefixes(Afi.Ipv4, false), (p6, p4) => {
        const opts = options(true, familyKey(2, 1), false);
        const m6 = encodeUpdates({ afi: 2, safi: 1, attributes: null, withdraw: p6 }, opts);
        const m4 = encodeUpdates({ afi: 1, safi: 1, attributes: null, withdraw: p4 }, opts);
        const seen6: number[] = [];
        for (const m of m6) {
          const v = decodeUpdate(m, opts).attributes?.mpUnreach?.withdrawn;
          if (v) forEachIpv6Prefix(v, (w, len, id) => seen6.push(...w, len, id));
        }
        const want6: number[] = [];
        for (let i = 0; i < p6.count; i++)
          want6.push(...p6.addrs.subarray(i * 4, i * 4 + 4), p6.lens[i], p6.pathIds?.[i] ?? 0);
        expect(seen6).toEqual(want6);
        const seen4: number[] = [];
        for (const m of m4)
          forEachIpv4Prefix(decodeUpdate(m, opts).withdrawn, (a, len, id) =>
            seen4.push(a, len, id),
          );
        const want4: number[] = [];
        for (let i = 0; i < p4.count; i++) want4.push(p4.addrs[i], p4.lens[i], 0);
        expect(seen4).toEqual(want4);
      }),
      { numRuns: 50 },
    );
  });
});

const capability: fc.Arbitrary<Capability> = fc.oneof(
  fc.record({
    kind: fc.constant("Multiprotocol" as const),
    afi: fc.integer({ min: 0, max: 65535 }),
    safi: fc.integer({ min: 0, max: 255 }),
  }),
  fc.constant({ kind: "RouteRefresh" as const }),
  fc.constant({ kind: "EnhancedRouteRefresh" as const }),
  fc.constant({ kind: "ExtendedMessage" as const }),
  fc.record({ kind: fc.constant("FourOctetAs" as const), asn: u32 }),
  fc.record({
    kind: fc.constant("GracefulRestart" as const),
    restartState: fc.boolean(),
    notification: fc.boolean(),
    restartTime: fc.integer({ min: 0, max: 4095 }),
    families: fc.array(
      fc.record({
        afi: fc.integer({ min: 0, max: 65535 }),
        safi: fc.integer({ min: 0, max: 255 }),
        forwardingState: fc.boolean(),
      }),
      { maxLength: 4 },
    ),
  }),
  fc.record({
    kind: fc.constant("LongLivedGracefulRestart" as const),
    families: fc.array(
      fc.record({
        afi: fc.integer({ min: 0, max: 65535 }),
        safi: fc.integer({ min: 0, max: 255 }),
        forwardingState: fc.boolean(),
        staleTime: fc.integer({ min: 0, max: 0xffffff }),
      }),
      { maxLength: 4 },
    ),
  }),
  fc.record({
    kind: fc.constant("AddPath" as const),
    families: fc.array(
      fc.record({
        afi: fc.integer({ min: 0, max: 65535 }),
        safi: fc.integer({ min: 0, max: 255 }),
        mode: fc.integer({ min: 1, max: 3 }),
      }),
      { maxLength: 4 },
    ),
  }),
  fc.record({
    kind: fc.constant("ExtendedNextHop" as const),
    entries: fc.array(
      fc.record({
        nlriAfi: fc.integer({ min: 0, max: 65535 }),
        nlriSafi: fc.integer({ min: 0, max: 65535 }),
        nextHopAfi: fc.integer({ min: 0, max: 65535 }),
      }),
      { maxLength: 4 },
    ),
  }),
  fc.record({
    kind: fc.constant("Fqdn" as const),
    hostname: fc.string({ maxLength: 30 }),
    domainName: fc.string({ maxLength: 30 }),
  }),
  fc.record({
    kind: fc.constant("Unknown" as const),
    code: fc.integer({ min: 100, max: 127 }),
    data: fc.uint8Array({ maxLength: 20 }),
  }),
);

describe("OPEN, NOTIFICATION and ROUTE-REFRESH round trips (fast-check)", () => {
  it("decodeOpen(encodeOpen(x)) = x", () => {
    fc.assert(
      fc.property(
        fc.record({
          myAs: fc.integer({ min: 0, max: 65535 }),
          holdTime: fc.oneof(fc.constant(0), fc.integer({ min: 3, max: 65535 })),
          bgpIdentifier: fc.integer({ min: 1, max: 0xffffffff }),
          capabilities: fc.array(capability, { maxLength: 40 }),
          each: fc.boolean(),
        }),
        (r) => {
          const open = {
            version: 4,
            myAs: r.myAs,
            holdTime: r.holdTime,
            bgpIdentifier: r.bgpIdentifier,
            capabilities: r.capabilities,
          };
          const layout =
            r.each && r.capabilities.length > 1 ? { parameterLayout: "each" as const } : {};
          const got = decodeOpen(encodeOpen({ ...open, ...layout }));
          expect(got).toEqual({ ...open, ...layout });
        },
      ),
      { numRuns: 300 },
    );
  });

  it("NOTIFICATION and ROUTE-REFRESH decode to what was encoded", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 0, max: 255 }),
        fc.uint8Array({ maxLength: 100 }),
        (code, subcode, data) => {
          const d = decodeMessage(encodeNotification({ code, subcode, data }), sessionOptions());
          expect(d.type === 3 && { ...d.notification, shutdownMessage: null }).toEqual({
            code,
            subcode,
            data,
            shutdownMessage: null,
          });
        },
      ),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 65535 }),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 2 }),
        (afi, safi, subtype) => {
          const d = decodeMessage(encodeRouteRefresh({ afi, safi, subtype }), sessionOptions());
          expect(d.type === 5 && d.routeRefresh).toEqual({ afi, safi, subtype });
        },
      ),
    );
  });
});

describe("RFC 8950 extended next hop and End-of-RIB", () => {
  it("IPv4 prefixes with an IPv6 next hop go in MP_REACH_NLRI and decode only when negotiated", () => {
    const a = emptyAttributes();
    a.origin = 0;
    a.asPath = [{ type: 2, asns: [65001] }];
    const nh = Uint8Array.from({ length: 16 }, (_, i) => (i === 0 ? 0x20 : i));
    const on = sessionOptions({ extendedNextHop: true });
    const p = prefixArrayFromTextSafe(["10.0.0.0/24", "10.9.0.0/16"]);
    const [m] = encodeUpdates(
      { afi: Afi.Ipv4, safi: Safi.Unicast, attributes: a, mpNextHop: nh, announce: p },
      on,
    );
    const u = decodeUpdate(m, on);
    expect(u.action).toBe(0);
    expect(u.nlri.count).toBe(0);
    expect(u.attributes?.nextHop).toBeNull();
    expect(u.attributes?.mpReach?.afi).toBe(Afi.Ipv4);
    expect(Array.from(u.attributes?.mpReach?.nextHop ?? [])).toEqual(Array.from(nh));
    expect(u.attributes?.mpReach?.nlri.count).toBe(2);
    // RFC 7606 §7.11: without the capability, a 16-octet next hop for IPv4 is inconsistent.
    const off = decodeUpdate(m, sessionOptions());
    expect(off.action).toBe(3);
    expect(off.disabledFamily).toBe(familyKey(1, 1));
  });

  it("End-of-RIB round trips for IPv4 and IPv6, with and without the extended length bit", () => {
    for (const f of [familyKey(1, 1), familyKey(2, 1), familyKey(1, 2)]) {
      for (const ext of [false, true])
        expect(decodeUpdate(encodeEndOfRib(f, ext), sessionOptions()).endOfRib).toBe(f);
    }
    expect(encodeEndOfRib(familyKey(1, 1)).length).toBe(23);
  });

  it("decodeNlriInto refuses an array without room, naming the numbers", () => {
    const opts = sessionOptions();
    const [m] = encodeUpdates(
      {
        afi: 1,
        safi: 1,
        attributes: null,
        withdraw: prefixArrayFromTextSafe(["10.0.0.0/8", "11.0.0.0/8"]),
      },
      opts,
    );
    expect(() =>
      decodeNlriInto(decodeUpdate(m, opts).withdrawn, newPrefixArray(Afi.Ipv4, 1)),
    ).toThrow(/room for 1 prefixes, not 2/);
  });
});

function prefixArrayFromTextSafe(xs: string[]): PrefixArray {
  return prefixArrayFromText(Afi.Ipv4, xs);
}
