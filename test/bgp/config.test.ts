// The bgpd YAML config: validation messages name the field path and value; impact() per peer;
// the FIB's graceful hold after a restart.
import { describe, expect, it } from "vitest";
import {
  type BgpdConfig,
  fibGracefulHoldSeconds,
  impact,
  listenerTtl,
  type PeerConfig,
  parseConfig,
  parseConfigText,
  peerTtl,
  resolvePasswordFiles,
} from "../../src/bgp/config.js";

const base = `
asn: 64512
routerId: 10.255.9.0
listen: {address: 10.255.9.0, port: 1179}
peers:
  - address: 10.255.9.1
    asn: 4200000001
    holdTime: 9
    families: [ipv4-unicast, ipv6-unicast]
    importFilter:
      rules:
        - {action: Reject, cidr: 10.244.0.0/16, matchOperator: In}
originate:
  - prefix: 10.244.1.0/26
    communities: ["64512:100"]
    largeCommunities: ["4200000001:1:2"]
fib: {enabled: true, table: main, protocol: 201}
status: {socket: /tmp/x.sock}
`;

const err = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("did not throw");
};

describe("parseConfigText()", () => {
  it("parses the issue's shape with defaults filled in", () => {
    const c = parseConfigText(base);
    expect(c.peers[0]?.asn).toBe(4200000001);
    expect(c.peers[0]?.passive).toBe(false);
    expect(c.peers[0]?.port).toBe(179);
    expect(c.peers[0]?.allowOwnAs).toBe(0);
    expect(c.originate[0]?.largeCommunities).toEqual(["4200000001:1:2"]);
    const min = parseConfig({ asn: 1, routerId: "1.1.1.1" });
    // Dual-stack by default, as BIRD and FRR listen: IPv6 peers can connect too.
    expect(min.listen).toEqual({ address: "::", port: 179 });
    expect(min.status.socket).toBe("/run/ocelot/bgpd.sock");
  });

  it("names the field path and quotes the bad value", () => {
    expect(err(() => parseConfigText(base.replace("holdTime: 9", "holdTime: 2")))).toContain(
      "peers[0].holdTime: hold time must be 0 or at least 3 seconds (got 2)",
    );
    expect(
      err(() =>
        parseConfigText(base.replace("holdTime: 9", "holdTime: 9\n    longLivedStaleTime: 0")),
      ),
    ).toContain("peers[0].longLivedStaleTime");
    expect(
      parseConfigText(base.replace("holdTime: 9", "holdTime: 9\n    longLivedStaleTime: 16777215"))
        .peers[0]?.longLivedStaleTime,
    ).toBe(16777215);
    expect(err(() => parseConfigText(base.replace("10.244.1.0/26", "10.244.1.0/33")))).toContain(
      'originate[0].prefix: not a CIDR (address/length) (got "10.244.1.0/33")',
    );
    expect(err(() => parseConfigText(base.replace('"64512:100"', '"64512:70000"')))).toContain(
      'originate[0].communities[0]: community parts must be at most 65535 (got "64512:70000")',
    );
    expect(err(() => parseConfig({ asn: 23456, routerId: "1.1.1.1" }))).toContain(
      "asn: AS 23456 is AS_TRANS",
    );
    expect(err(() => parseConfig({ asn: 1, routerId: "fe80::1" }))).toContain(
      'routerId: not an IPv4 address (got "fe80::1")',
    );
  });

  it("writes peer addresses in canonical form, as sockets report them", () => {
    const c = parseConfig({
      asn: 1,
      routerId: "1.1.1.1",
      peers: [{ address: "FD00:255:1:0::2", asn: 2 }],
    });
    expect(c.peers[0]?.address).toBe("fd00:255:1::2");
  });

  it("names a missing required field", () => {
    expect(err(() => parseConfig({ asn: 1 }))).toBe(
      "Invalid bgpd config: routerId: required field is missing",
    );
  });

  it("refuses unknown fields (strict) and duplicate peers", () => {
    expect(
      err(() =>
        parseConfig({
          asn: 1,
          routerId: "1.1.1.1",
          peers: [{ address: "1.1.1.2", asn: 2, pasive: true }],
        }),
      ),
    ).toContain('peers[0]: unknown field "pasive"');
    expect(
      err(() =>
        parseConfig({
          asn: 1,
          routerId: "1.1.1.1",
          peers: [
            { address: "1.1.1.2", asn: 2 },
            { address: "1.1.1.2", asn: 3 },
          ],
        }),
      ),
    ).toContain("peers[1].address: duplicate peer 1.1.1.2");
  });

  it("refuses nextHopSelf by name rather than accept and ignore it", () => {
    expect(
      err(() =>
        parseConfig({
          asn: 1,
          routerId: "1.1.1.1",
          peers: [{ address: "1.1.1.2", asn: 1, nextHopSelf: true }],
        }),
      ),
    ).toContain("peers[0].nextHopSelf: nextHopSelf is not supported yet");
  });

  it("reports YAML syntax errors", () => {
    expect(err(() => parseConfigText("asn: [", "bgpd.yaml"))).toContain(
      "Could not parse bgpd.yaml as YAML",
    );
  });
});

describe("impact()", () => {
  const c0 = (): BgpdConfig => parseConfigText(base);
  const edit = (f: (c: BgpdConfig) => void): BgpdConfig => {
    const c = c0();
    f(c);
    return c;
  };

  it("is none for an identical config", () => {
    const d = impact(c0(), c0());
    expect(d.changed).toEqual([{ address: "10.255.9.1", impact: "none" }]);
    expect([d.added, d.removed, d.reexport, d.relisten]).toEqual([[], [], false, false]);
  });

  it("resets a peer when its AS or hold time changes, naming the field", () => {
    expect(
      impact(
        c0(),
        edit((c) => Object.assign(c.peers[0] ?? {}, { asn: 65000 })),
      ).changed[0],
    ).toEqual({
      address: "10.255.9.1",
      impact: "reset",
      field: "asn",
    });
    expect(
      impact(
        c0(),
        edit((c) => Object.assign(c.peers[0] ?? {}, { holdTime: 30 })),
      ).changed[0]?.field,
    ).toBe("holdTime");
    expect(
      impact(
        c0(),
        edit((c) => (c.routerId = "10.0.0.9")),
      ).changed[0],
    ).toEqual({
      address: "10.255.9.1",
      impact: "reset",
      field: "routerId",
    });
  });

  it("resets for identity, transport and OPEN fields only; local timers, passive, BFD and limits are none", () => {
    const p0 = (c: BgpdConfig) => c.peers[0] as PeerConfig;
    const resets: [string, (c: BgpdConfig) => void][] = [
      ["port", (c) => (p0(c).port = 1179)],
      ["password", (c) => (p0(c).password = "s3cret")],
      ["families", (c) => (p0(c).families = ["ipv4-unicast"])],
      ["sourceAddress", (c) => (p0(c).sourceAddress = "10.255.9.0")],
      // RFC 9494: the LLGR capability is in the OPEN.
      ["longLivedStaleTime", (c) => (p0(c).longLivedStaleTime = 3600)],
    ];
    for (const [field, f] of resets)
      expect(impact(c0(), edit(f)).changed[0]).toEqual({
        address: "10.255.9.1",
        impact: "reset",
        field,
      });
    const nones: ((c: BgpdConfig) => void)[] = [
      (c) => (p0(c).connectRetryTime = 30),
      (c) => (p0(c).passive = !p0(c).passive),
      (c) => (p0(c).bfd = { minTx: 300, minRx: 300, multiplier: 3, multihop: false }),
      (c) =>
        (p0(c).maxPrefixes = {
          "ipv4-unicast": { limit: 10, warningPercent: 75, restartTime: 60 },
        }),
    ];
    for (const f of nones)
      expect(impact(c0(), edit(f)).changed).toEqual([{ address: "10.255.9.1", impact: "none" }]);
    expect(
      impact(
        c0(),
        edit((c) => (p0(c).importFilter = { rules: [{ action: "Reject" }] })),
      ).changed[0],
    ).toEqual({ address: "10.255.9.1", impact: "refresh", field: "importFilter" });
  });

  it("refreshes a peer when only a filter changes", () => {
    const d = impact(
      c0(),
      edit((c) =>
        Object.assign(c.peers[0] ?? {}, { exportFilter: { rules: [{ action: "Accept" }] } }),
      ),
    );
    expect(d.changed[0]).toEqual({
      address: "10.255.9.1",
      impact: "refresh",
      field: "exportFilter",
    });
  });

  it("lists added and removed peers and origination changes", () => {
    const d = impact(
      c0(),
      edit((c) => {
        c.peers = [{ ...(c.peers[0] as (typeof c.peers)[number]), address: "10.255.9.3" }];
        c.originate = [];
      }),
    );
    expect(d.added.map((p) => p.address)).toEqual(["10.255.9.3"]);
    expect(d.removed.map((p) => p.address)).toEqual(["10.255.9.1"]);
    expect(d.reexport).toBe(true);
  });
});

describe("peers[].bfd", () => {
  const withBfd = (bfd: string) =>
    parseConfigText(base.replace("    holdTime: 9\n", `    holdTime: 9\n    bfd: ${bfd}\n`));

  it("parses with FRR's defaults (300 ms, 300 ms, 3, single hop)", () => {
    expect(withBfd("{}").peers[0]?.bfd).toEqual({
      minTx: 300,
      minRx: 300,
      multiplier: 3,
      multihop: false,
    });
    expect(withBfd("{minTx: 50, minRx: 100, multiplier: 5, multihop: true}").peers[0]?.bfd).toEqual(
      { minTx: 50, minRx: 100, multiplier: 5, multihop: true },
    );
    expect(parseConfigText(base).peers[0]?.bfd).toBeUndefined();
  });

  it("refuses bad values and unknown fields, naming the field", () => {
    expect(err(() => withBfd("{multiplier: 0}"))).toContain("peers[0].bfd.multiplier");
    expect(err(() => withBfd("{minTx: 5}"))).toContain("peers[0].bfd.minTx");
    expect(err(() => withBfd("{minRx: 1.5}"))).toContain("peers[0].bfd.minRx");
    expect(err(() => withBfd("{echo: true}"))).toContain("echo");
  });

  it("authentication (RFC 5880 §6.7): a type and a key of its size, from password or passwordFile, keyId 1 by default", () => {
    expect(
      withBfd('{authentication: {type: meticulous-keyed-sha1, password: "k"}}').peers[0]?.bfd
        ?.authentication,
    ).toEqual({ type: "meticulous-keyed-sha1", keyId: 1, password: "k" });
    expect(
      withBfd("{authentication: {type: simple, keyId: 9, passwordFile: /etc/k}}").peers[0]?.bfd
        ?.authentication,
    ).toEqual({ type: "simple", keyId: 9, passwordFile: "/etc/k" });
    expect(err(() => withBfd("{authentication: {type: md5, password: k}}"))).toContain(
      "peers[0].bfd.authentication.type",
    );
    expect(err(() => withBfd("{authentication: {type: simple}}"))).toContain(
      "give password or passwordFile, one of them",
    );
    expect(
      err(() => withBfd(`{authentication: {type: keyed-md5, password: "${"x".repeat(17)}"}}`)),
    ).toContain("a keyed-md5 key is 1 to 16 bytes, got 17");
    expect(
      err(() => withBfd("{authentication: {type: simple, keyId: 256, password: k}}")),
    ).toContain("peers[0].bfd.authentication.keyId");
    // A key read from its file is checked for its type, and never printed.
    const cfg = withBfd("{authentication: {type: keyed-sha1, passwordFile: /k}}");
    expect(
      resolvePasswordFiles(cfg, () => "from-file\n").peers[0]?.bfd?.authentication?.password,
    ).toBe("from-file");
    expect(() => resolvePasswordFiles(cfg, () => "y".repeat(21))).toThrow(
      'peers[0].bfd.authentication.passwordFile: "/k": a keyed-sha1 key is 1 to 20 bytes, got 21',
    );
  });

  it("turning BFD on, off or changing its timers is not a session reset (impact none)", () => {
    const off = parseConfigText(base);
    const on = withBfd("{}");
    const faster = withBfd("{minTx: 100, minRx: 100}");
    for (const [a, b] of [
      [off, on],
      [on, off],
      [on, faster],
    ])
      expect(impact(a, b).changed).toEqual([{ address: "10.255.9.1", impact: "none" }]);
  });
});

describe("peers[].maxPrefixes", () => {
  const withLimits = (v: string) =>
    parseConfigText(base.replace("    holdTime: 9\n", `    holdTime: 9\n    maxPrefixes: ${v}\n`));

  it("parses per family with defaults (warn at 75 %, restart after 60 s)", () => {
    expect(withLimits('{"ipv4-unicast": {limit: 100000}}').peers[0]?.maxPrefixes).toEqual({
      "ipv4-unicast": { limit: 100000, warningPercent: 75, restartTime: 60 },
    });
  });

  it("refuses a bad limit, percentage or family, naming the field", () => {
    expect(err(() => withLimits('{"ipv4-unicast": {limit: 0}}'))).toContain(
      "peers[0].maxPrefixes.ipv4-unicast.limit",
    );
    expect(err(() => withLimits('{"ipv6-unicast": {limit: 5, warningPercent: 101}}'))).toContain(
      "warningPercent",
    );
    expect(err(() => withLimits('{"l2vpn-evpn": {limit: 5}}'))).toContain("l2vpn-evpn");
    expect(err(() => withLimits('{"ipv4-unicast": {}}'))).toContain("limit");
  });
});

describe("gracefulRestart", () => {
  const withGr = (gr: string) => parseConfigText(`${base}gracefulRestart: ${gr}\n`);

  it("is on by default (120 s restart time, 360 s stale time) and takes each field", () => {
    expect(parseConfigText(base).gracefulRestart).toEqual({
      enabled: true,
      restartTime: 120,
      staleRoutesTime: 360,
    });
    expect(
      withGr("{enabled: false, restartTime: 30, staleRoutesTime: 90}").gracefulRestart,
    ).toEqual({ enabled: false, restartTime: 30, staleRoutesTime: 90 });
  });

  it("refuses values out of range and unknown fields, naming the field", () => {
    expect(err(() => withGr("{restartTime: 4096}"))).toContain("gracefulRestart.restartTime");
    expect(err(() => withGr("{restartTime: 0}"))).toContain("gracefulRestart.restartTime");
    expect(err(() => withGr("{staleRoutesTime: 0}"))).toContain("gracefulRestart.staleRoutesTime");
    expect(err(() => withGr("{longLived: 10}"))).toContain("longLived");
  });

  it("a change resets every session (a capability in the OPEN), naming gracefulRestart", () => {
    expect(impact(parseConfigText(base), withGr("{restartTime: 60}")).changed).toEqual([
      { address: "10.255.9.1", impact: "reset", field: "gracefulRestart" },
    ]);
  });
});

describe("peers[].ttlSecurity (GTSM, RFC 5082)", () => {
  const withPeer = (v: string) =>
    parseConfigText(base.replace("    holdTime: 9\n", `    holdTime: 9\n${v}`));

  it("sends TTL 255 and demands 256 - hops; eBGP without it sends 1, multihop its TTL", () => {
    const p = withPeer("    ttlSecurity: 2\n").peers[0] as PeerConfig;
    expect(peerTtl(p, true)).toEqual({ ttl: 255, minTtl: 254 });
    expect(peerTtl(p, false)).toEqual({ ttl: 255, minTtl: 254 });
    const plain = parseConfigText(base).peers[0] as PeerConfig;
    expect(peerTtl(plain, true)).toEqual({ ttl: 1 });
    expect(peerTtl(plain, false)).toEqual({});
    expect(peerTtl({ ...plain, multihop: 3 }, true)).toEqual({ ttl: 3 });
  });

  it("refuses it with multihop, and out of range, naming the field", () => {
    expect(err(() => withPeer("    ttlSecurity: 2\n    multihop: 3\n"))).toContain(
      "ttlSecurity and multihop are exclusive",
    );
    expect(err(() => withPeer("    ttlSecurity: 0\n"))).toContain("peers[0].ttlSecurity");
    expect(err(() => withPeer("    ttlSecurity: 256\n"))).toContain("peers[0].ttlSecurity");
  });

  it("the listener demands the lowest minimum of a family's peers (0 when one has no GTSM), sends 255 when one has", () => {
    const c = withPeer("    ttlSecurity: 1\n");
    expect(listenerTtl(c, 4)).toEqual({ ttl: 255, minTtl: 255 });
    expect(listenerTtl(c, 6)).toEqual({ ttl: -1, minTtl: 0 });
    const two = {
      ...c,
      peers: [...c.peers, { ...(c.peers[0] as PeerConfig), address: "10.255.9.7", ttlSecurity: 3 }],
    };
    expect(listenerTtl(two, 4)).toEqual({ ttl: 255, minTtl: 253 });
    const mixed = {
      ...c,
      peers: [...c.peers, { ...(c.peers[0] as PeerConfig), address: "10.255.9.7" }],
    };
    delete (mixed.peers[1] as PeerConfig).ttlSecurity;
    // Mixed: no minimum, but TTL 255 for the GTSM peer's SYN-ACK.
    expect(listenerTtl(mixed, 4)).toEqual({ ttl: 255, minTtl: 0 });
  });

  it("a change resets the session, naming ttlSecurity", () => {
    expect(impact(parseConfigText(base), withPeer("    ttlSecurity: 1\n")).changed).toEqual([
      { address: "10.255.9.1", impact: "reset", field: "ttlSecurity" },
    ]);
  });
});

describe("peers[].addPath.families", () => {
  const withAddPath = (v: string) =>
    parseConfigText(base.replace("    holdTime: 9\n", `    holdTime: 9\n    addPath: ${v}\n`));

  it("takes the families ADD-PATH is advertised for; a change resets, naming addPath", () => {
    const c = withAddPath("{send: 2, families: [ipv6-unicast]}");
    expect(c.peers[0]?.addPath).toEqual({ receive: true, send: 2, families: ["ipv6-unicast"] });
    expect(withAddPath("{send: 2}").peers[0]?.addPath).toEqual({ receive: true, send: 2 });
    expect(err(() => withAddPath("{families: [l2vpn-evpn]}"))).toContain(
      "peers[0].addPath.families",
    );
    expect(impact(withAddPath("{send: 2}"), c).changed).toEqual([
      { address: "10.255.9.1", impact: "reset", field: "addPath" },
    ]);
  });
});

describe("fibGracefulHoldSeconds()", () => {
  const cfg = (extra: string) =>
    parseConfig({
      asn: 64512,
      routerId: "10.0.0.1",
      peers: [
        { address: "10.0.0.2", asn: 65002 },
        { address: "10.0.0.3", asn: 65003, longLivedStaleTime: 600 },
        { address: "10.0.0.4", asn: 65004, longLivedStaleTime: 900, gracefulRestartTime: 30 },
      ].slice(0, extra === "plain" ? 1 : 3),
      fib: { gracefulRestartTime: extra === "nohold" ? 0 : 120 },
      gracefulRestart: { restartTime: 60, enabled: extra !== "nogr" },
      status: { socket: "/tmp/x.sock" },
    });

  it("is fib.gracefulRestartTime without long-lived graceful restart", () => {
    expect(fibGracefulHoldSeconds(cfg("plain"))).toBe(120);
  });

  it("covers a peer's restart time plus its long-lived stale time (RFC 9494)", () => {
    // 10.0.0.3: 60 + 600; 10.0.0.4: its own restart time 30 + 900.
    expect(fibGracefulHoldSeconds(cfg("llgr"))).toBe(930);
    // Without graceful restart the peers go long-lived at once.
    expect(fibGracefulHoldSeconds(cfg("nogr"))).toBe(900);
  });

  it("keeps 0 (no hold) and stays under setTimeout's limit", () => {
    expect(fibGracefulHoldSeconds(cfg("nohold"))).toBe(0);
    const c = cfg("llgr");
    c.peers[1] = { ...(c.peers[1] as PeerConfig), longLivedStaleTime: 0xffffff };
    expect(fibGracefulHoldSeconds(c)).toBe(2_147_483);
  });
});

describe("llgrPartialDeployment (RFC 9494 §4.6)", () => {
  const doc = (asn: number) => ({
    asn: 64512,
    routerId: "10.0.0.1",
    peers: [{ address: "10.0.0.2", asn, llgrPartialDeployment: true }],
    status: { socket: "/tmp/x.sock" },
  });

  it("is taken for an internal peer and refused, naming the field, for an external one", () => {
    expect(parseConfig(doc(64512)).peers[0]?.llgrPartialDeployment).toBe(true);
    expect(() => parseConfig(doc(65002))).toThrow(
      /peers\[0\]\.llgrPartialDeployment.*only for an internal \(iBGP\) peer/,
    );
  });

  it("is applied by re-export, without a reset", () => {
    const a = parseConfig({ ...doc(64512), peers: [{ address: "10.0.0.2", asn: 64512 }] });
    expect(impact(a, parseConfig(doc(64512))).changed).toEqual([
      { address: "10.0.0.2", impact: "refresh", field: "llgrPartialDeployment" },
    ]);
  });
});

describe("filter rules with Calico's path fields and operations", () => {
  const rule = (r: string, where = "importFilter") =>
    base.replace(
      "    importFilter:\n      rules:\n        - {action: Reject, cidr: 10.244.0.0/16, matchOperator: In}",
      `    ${where}:\n      rules:\n        - ${r}`,
    );

  it("takes communities, asPathPrefix, peerType, interface, source, priority and operations", () => {
    const c = parseConfigText(
      rule(
        '{action: Accept, communities: {values: ["65000:1:2"]}, asPathPrefix: [65000], peerType: eBGP, interface: "eth*", source: RemotePeers, priority: 512, operations: [{addCommunity: {value: "65000:7"}}, {prependASPath: {prefix: [65001]}}, {setPriority: {value: 256}}]}',
        "exportFilter",
      ),
    );
    expect(c.peers[0]?.exportFilter?.rules[0]).toMatchObject({
      communities: { values: ["65000:1:2"] },
      asPathPrefix: [65000],
      peerType: "eBGP",
      priority: 512,
      operations: [
        { addCommunity: { value: "65000:7" } },
        { prependASPath: { prefix: [65001] } },
        { setPriority: { value: 256 } },
      ],
    });
    // On import every operation, as Calico's BIRD import filters (the route as kept).
    expect(
      parseConfigText(rule("{action: Accept, operations: [{setPriority: {value: 256}}]}")).peers[0]
        ?.importFilter?.rules[0],
    ).toMatchObject({ operations: [{ setPriority: { value: 256 } }] });
    expect(
      parseConfigText(
        rule(
          '{action: Accept, operations: [{addCommunity: {value: "1:1"}}, {prependASPath: {prefix: [65001]}}]}',
        ),
      ).peers[0]?.importFilter?.rules[0],
    ).toMatchObject({
      operations: [{ addCommunity: { value: "1:1" } }, { prependASPath: { prefix: [65001] } }],
    });
  });

  it("refuses bad values naming the field", () => {
    expect(
      err(() =>
        parseConfigText(rule('{action: Accept, operations: [{addCommunity: {value: "1:x"}}]}')),
      ),
    ).toContain("peers[0].importFilter.rules[0].operations[0]");
    expect(
      err(() => parseConfigText(rule('{action: Reject, communities: {values: ["70000:1"]}}'))),
    ).toContain("not a community");
    expect(err(() => parseConfigText(rule("{action: Reject, priority: 0}")))).toContain(
      "Too small",
    );
    expect(
      err(() =>
        parseConfigText(
          rule("{action: Reject, operations: [{setPriority: {value: 5}}]}", "exportFilter"),
        ),
      ),
    ).toContain("operations need action Accept");
    expect(err(() => parseConfigText(rule("{action: Reject, peerType: xBGP}")))).toContain(
      "peerType",
    );
  });
});
