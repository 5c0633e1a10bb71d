// BGPPeer fields rendered into the node's speaker config (pure): spec.filters (BGPFilters in
// order, first match wins, per session family; a missing filter or a rule the speaker cannot
// express rejects from its place on), spec.password and nodeMeshPassword as passwordFiles under
// the secrets directory (an unusable file skips the peer, never unsigned), ttlSecurity as GTSM.
import { describe, expect, it } from "vitest";
import type { BGPConfiguration, BGPPeer } from "../../src/api/bgp.js";
import type { Node } from "../../src/api/node.js";
import type { PeerConfig } from "../../src/bgp/config.js";
import { type BgpSnapshot, importGuardRules, renderBgp } from "../../src/node/bgp_state.js";
import { filter, peer, V3 } from "./resources.js";

const node = (name: string, ip: string, ip6?: string) =>
  ({
    apiVersion: V3,
    kind: "Node",
    metadata: { name, labels: {} },
    spec: { bgp: { ipv4Address: ip, ...(ip6 ? { ipv6Address: ip6 } : {}) } },
  }) as Node;

const meshOff = {
  apiVersion: V3,
  kind: "BGPConfiguration",
  metadata: { name: "default" },
  spec: { nodeToNodeMeshEnabled: false },
} as BGPConfiguration;

function snap(over: Partial<BgpSnapshot> = {}): BgpSnapshot {
  return {
    nodes: [node("n1", "10.0.0.1/24", "fd00::1/64"), node("n2", "10.0.0.2/24", "fd00::2/64")],
    workloadEndpoints: [],
    pools: [],
    affinities: [],
    bgpConfigurations: [meshOff],
    bgpPeers: [],
    ...over,
  };
}

const secrets: Record<string, string> = {
  "/s/bgp/tor": "s3cret\n",
  "/s/bgp/empty": "\n",
  "/s/mesh/pw": "meshkey",
};
const readSecret = (p: string) => {
  const v = secrets[p];
  if (v === undefined) throw new Error("ENOENT: no such file or directory");
  return v;
};
const opts = { statusSocket: "/tmp/x.sock", secretsDir: "/s/", readSecret };

const tor = (spec: Partial<BGPPeer["spec"]> = {}) =>
  peer("tor", { peerIP: "10.0.0.254", asNumber: 65000, ...spec });

function render(over: Partial<BgpSnapshot>) {
  const s = snap(over);
  const r = renderBgp(s, "n1", opts);
  if (!r.config) throw new Error(r.reason);
  return { ...r, snap: s };
}
/**
 * A rendered peer with the import guard (test/node/import_guard.test.ts) taken off the front of
 * its import filter, so these tests see the BGPFilters' part (no filter when that is empty).
 */
const peerOf = (r: ReturnType<typeof render>, address: string): PeerConfig | undefined => {
  const p = r.config.peers.find((x) => x.address === address);
  if (!p?.importFilter) return p;
  const fam = address.includes(":") ? "ipv6-unicast" : "ipv4-unicast";
  const guard = importGuardRules(r.snap, address, fam, p.importFilter.rules);
  expect(p.importFilter.rules.slice(0, guard.length), "the import guard first").toEqual(guard);
  const rest = p.importFilter.rules.slice(guard.length);
  const { importFilter: _, ...others } = p;
  return rest.length > 0 ? { ...p, importFilter: { rules: rest } } : others;
};

describe("spec.filters", () => {
  const f1 = filter("f1", {
    importV4: [
      { action: "Reject", cidr: "192.0.2.0/24", matchOperator: "Equal" },
      { action: "Accept", cidr: "10.0.0.0/8", matchOperator: "In", prefixLength: { max: 24 } },
    ],
    exportV4: [{ action: "Reject", cidr: "10.244.9.0/24", matchOperator: "In" }],
    importV6: [{ action: "Reject", cidr: "2001:db8::/32", matchOperator: "In" }],
  });
  const f2 = filter("f2", { importV4: [{ action: "Reject" }] });

  it("joins the named filters' rules in order into the session family's filters", () => {
    const r = render({ bgpPeers: [tor({ filters: ["f1", "f2"] })], bgpFilters: [f2, f1] });
    expect(r.warnings).toEqual([]);
    expect(peerOf(r, "10.0.0.254")).toMatchObject({
      importFilter: {
        rules: [
          { action: "Reject", cidr: "192.0.2.0/24", matchOperator: "Equal" },
          { action: "Accept", cidr: "10.0.0.0/8", matchOperator: "In", prefixLength: { max: 24 } },
          { action: "Reject" },
        ],
      },
      exportFilter: { rules: [{ action: "Reject", cidr: "10.244.9.0/24", matchOperator: "In" }] },
    });
  });

  it("an IPv6 session takes the V6 lists only; a family with no rules has no filter", () => {
    const r = render({
      bgpPeers: [peer("tor6", { peerIP: "fd00::fe", asNumber: 65000, filters: ["f1"] })],
      bgpFilters: [f1],
    });
    const p = peerOf(r, "fd00::fe");
    expect(p?.importFilter).toEqual({
      rules: [{ action: "Reject", cidr: "2001:db8::/32", matchOperator: "In" }],
    });
    expect(p?.exportFilter).toBeUndefined();
  });

  it("peerSelector sessions get each family's rules", () => {
    const r = render({
      bgpPeers: [peer("sel", { peerSelector: "all()", filters: ["f1"] })],
      bgpFilters: [f1],
    });
    expect(peerOf(r, "10.0.0.2")?.importFilter?.rules).toHaveLength(2);
    expect(peerOf(r, "fd00::2")?.importFilter?.rules).toEqual([
      { action: "Reject", cidr: "2001:db8::/32", matchOperator: "In" },
    ]);
  });

  it("a filter that does not exist rejects everything from its place on, with a warning", () => {
    const r = render({ bgpPeers: [tor({ filters: ["f1", "nope", "f2"] })], bgpFilters: [f1, f2] });
    const p = peerOf(r, "10.0.0.254");
    expect(p?.importFilter?.rules.at(-1)).toEqual({ action: "Reject" });
    expect(p?.importFilter?.rules).toHaveLength(3); // f1's two, then reject-all; f2 unreachable
    expect(p?.exportFilter?.rules).toEqual([
      { action: "Reject", cidr: "10.244.9.0/24", matchOperator: "In" },
      { action: "Reject" },
    ]);
    expect(r.warnings).toEqual([
      'BGPPeer "tor": spec.filters: BGPFilter "nope" does not exist: every route rejected from there on (fail-safe)',
    ]);
  });

  it("only a missing filter: the peer is kept (session up) but gets and sends nothing", () => {
    const r = render({ bgpPeers: [tor({ filters: ["nope"] })] });
    expect(peerOf(r, "10.0.0.254")).toMatchObject({
      importFilter: { rules: [{ action: "Reject" }] },
      exportFilter: { rules: [{ action: "Reject" }] },
    });
  });

  it("every match field of Calico's BGPFilter rule reaches the speaker's rule (Calico's sample: source, interface)", () => {
    const f3 = filter("f3", {
      exportV4: [
        { action: "Accept", cidr: "10.244.0.0/16", matchOperator: "In" },
        { action: "Accept", cidr: "77.0.0.0/16", matchOperator: "In", source: "RemotePeers" },
        { action: "Reject", interface: "*.calico" },
        {
          action: "Accept",
          peerType: "eBGP",
          communities: { values: ["65000:100"] },
          asPathPrefix: [65000, 65001],
          priority: 512,
          operations: [
            { addCommunity: { value: "65000:300:400" } },
            { prependASPath: { prefix: [64999] } },
            { setPriority: { value: 256 } },
          ],
        },
      ],
      importV4: [{ action: "Accept", cidr: "10.1.0.0/16", matchOperator: "Equal" }],
    });
    const r = render({ bgpPeers: [tor({ filters: ["f3"] })], bgpFilters: [f3] });
    const p = peerOf(r, "10.0.0.254");
    expect(p?.exportFilter?.rules).toEqual([
      { action: "Accept", cidr: "10.244.0.0/16", matchOperator: "In" },
      { action: "Accept", cidr: "77.0.0.0/16", matchOperator: "In", source: "RemotePeers" },
      { action: "Reject", interface: "*.calico" },
      {
        action: "Accept",
        peerType: "eBGP",
        communities: { values: ["65000:100"] },
        asPathPrefix: [65000, 65001],
        priority: 512,
        operations: [
          { addCommunity: { value: "65000:300:400" } },
          { prependASPath: { prefix: [64999] } },
          { setPriority: { value: 256 } },
        ],
      },
    ]);
    expect(p?.importFilter?.rules).toEqual([
      { action: "Accept", cidr: "10.1.0.0/16", matchOperator: "Equal" },
    ]);
    expect(r.warnings.join()).not.toContain("f3");
  });

  it("a filter change changes the rendered filters (the daemon reconfigures by diff)", () => {
    const a = render({ bgpPeers: [tor({ filters: ["f2"] })], bgpFilters: [f2] });
    const b = render({
      bgpPeers: [tor({ filters: ["f2"] })],
      bgpFilters: [filter("f2", { importV4: [{ action: "Accept" }] })],
    });
    expect(peerOf(a, "10.0.0.254")?.importFilter).toEqual({ rules: [{ action: "Reject" }] });
    expect(peerOf(b, "10.0.0.254")?.importFilter).toEqual({ rules: [{ action: "Accept" }] });
  });
});

describe("spec.password and nodeMeshPassword", () => {
  it("a secretKeyRef is the passwordFile <secretsDir>/<name>/<key>", () => {
    const r = render({
      bgpPeers: [tor({ password: { secretKeyRef: { name: "bgp", key: "tor" } } })],
    });
    expect(r.warnings).toEqual([]);
    expect(peerOf(r, "10.0.0.254")?.passwordFile).toBe("/s/bgp/tor");
    expect(peerOf(r, "10.0.0.254")?.password).toBeUndefined(); // never in the rendered config
  });

  it("a missing or empty secret file skips the peer with a warning, never unsigned", () => {
    for (const key of ["missing", "empty"]) {
      const r = render({
        bgpPeers: [
          tor({ password: { secretKeyRef: { name: "bgp", key } } }),
          peer("other", { peerIP: "10.0.0.253", asNumber: 65001 }),
        ],
      });
      expect(peerOf(r, "10.0.0.254")).toBeUndefined();
      expect(peerOf(r, "10.0.0.253")).toBeDefined();
      expect(r.warnings).toHaveLength(1);
      expect(r.warnings[0]).toMatch(
        new RegExp(
          `^BGPPeer "tor": spec.password: .*/s/bgp/${key}.*; peer skipped \\(never unsigned\\)$`,
        ),
      );
    }
  });

  it("without a secret reader, a password peer is skipped", () => {
    const r = renderBgp(
      snap({ bgpPeers: [tor({ password: { secretKeyRef: { name: "bgp", key: "tor" } } })] }),
      "n1",
      { statusSocket: "/tmp/x.sock" },
    );
    expect(r.config?.peers).toEqual([]);
    expect(r.warnings[0]).toContain('"/etc/ocelot/secrets/bgp/tor"');
  });

  const meshCfg = (key: string) =>
    ({
      ...meshOff,
      spec: { nodeMeshPassword: { secretKeyRef: { name: "mesh", key } } },
    }) as BGPConfiguration;

  it("nodeMeshPassword signs every mesh session (both families)", () => {
    const r = render({ bgpConfigurations: [meshCfg("pw")] });
    expect(r.config.peers.map((p) => [p.address, p.passwordFile])).toEqual([
      ["10.0.0.2", "/s/mesh/pw"],
      ["fd00::2", "/s/mesh/pw"],
    ]);
  });

  it("an unreadable nodeMeshPassword skips the mesh, not the BGPPeers", () => {
    const r = render({ bgpConfigurations: [meshCfg("gone")], bgpPeers: [tor()] });
    expect(r.config.peers.map((p) => p.address)).toEqual(["10.0.0.254"]);
    expect(r.warnings[0]).toMatch(
      /nodeMeshPassword: cannot read "\/s\/mesh\/gone".*mesh sessions skipped/,
    );
  });
});

describe("other peer fields", () => {
  it("ttlSecurity is the peer's GTSM hop count (TTL 255 out, 256 - hops checked), no multihop", () => {
    const r = render({ bgpPeers: [tor({ ttlSecurity: 2 })] });
    expect(peerOf(r, "10.0.0.254")?.ttlSecurity).toBe(2);
    expect(peerOf(r, "10.0.0.254")?.multihop).toBeUndefined();
    expect(r.warnings).toEqual([]);
  });

  it("fields the speaker cannot express stay warned about", () => {
    const r = render({
      bgpPeers: [tor({ keepOriginalNextHop: true, localASNumber: 65100 })],
    });
    expect(r.warnings).toEqual([
      'BGPPeer "tor": spec.keepOriginalNextHop, spec.localASNumber not applied yet',
    ]);
  });

  it("maxRestartTime is the restart time we announce to that peer (1s..4095s)", () => {
    expect(
      peerOf(render({ bgpPeers: [tor({ maxRestartTime: "2m" })] }), "10.0.0.254"),
    ).toMatchObject({ gracefulRestartTime: 120 });
    const r = render({ bgpPeers: [tor({ maxRestartTime: "2h" })] });
    expect(peerOf(r, "10.0.0.254")?.gracefulRestartTime).toBe(4095);
    expect(r.warnings).toEqual([
      'BGPPeer "tor": spec.maxRestartTime 2h is outside 1s..4095s (the graceful restart capability\'s range): 4095s used',
    ]);
    expect(
      peerOf(render({ bgpPeers: [tor()] }), "10.0.0.254")?.gracefulRestartTime,
    ).toBeUndefined();
  });

  it("restartMode LongLivedGracefulRestart: maxRestartTime is the long-lived stale time", () => {
    const r = render({
      bgpPeers: [tor({ restartMode: "LongLivedGracefulRestart", maxRestartTime: "1h30m" })],
    });
    expect(peerOf(r, "10.0.0.254")?.gracefulRestartTime).toBeUndefined();
    expect(peerOf(r, "10.0.0.254")?.longLivedStaleTime).toBe(5400);
    expect(r.warnings).toEqual([]);
    const d = render({ bgpPeers: [tor({ restartMode: "LongLivedGracefulRestart" })] });
    expect(peerOf(d, "10.0.0.254")?.longLivedStaleTime).toBe(3600);
    expect(peerOf(render({ bgpPeers: [tor()] }), "10.0.0.254")?.longLivedStaleTime).toBeUndefined();
  });

  it("the Ocelot extensions maxPrefixes and addPath go to the session's family", () => {
    const r = render({
      bgpPeers: [
        tor({ maxPrefixes: { limit: 1000, restartTime: "2m" }, addPath: { send: 4 } }),
        peer("tor6", {
          peerIP: "fd00::fe",
          asNumber: 65000,
          maxPrefixes: { limit: 50, warningPercent: 90, restartTime: "0s" },
        }),
      ],
    });
    expect(peerOf(r, "10.0.0.254")).toMatchObject({
      maxPrefixes: { "ipv4-unicast": { limit: 1000, warningPercent: 75, restartTime: 120 } },
      addPath: { receive: true, send: 4 },
    });
    expect(peerOf(r, "fd00::fe")).toMatchObject({
      maxPrefixes: { "ipv6-unicast": { limit: 50, warningPercent: 90, restartTime: 0 } },
    });
    expect(peerOf(r, "fd00::fe")?.addPath).toBeUndefined();
    expect(r.warnings).toEqual([]);
  });

  it("failureDetectionMode BFDIfDirectlyConnected: BFD with the defaults to a peer in our subnet only", () => {
    const r = render({
      bgpPeers: [
        tor({ failureDetectionMode: "BFDIfDirectlyConnected" }),
        peer("far", {
          peerIP: "10.9.0.1",
          asNumber: 65001,
          failureDetectionMode: "BFDIfDirectlyConnected",
        }),
        peer("tuned", {
          peerIP: "10.0.0.253",
          asNumber: 65001,
          failureDetectionMode: "BFDIfDirectlyConnected",
          bfd: { minTxInterval: "100ms" },
        }),
      ],
    });
    expect(peerOf(r, "10.0.0.254")?.bfd).toEqual({
      minTx: 300,
      minRx: 300,
      multiplier: 3,
      multihop: false,
    });
    expect(peerOf(r, "10.9.0.1")?.bfd).toBeUndefined();
    expect(peerOf(r, "10.0.0.253")?.bfd?.minTx).toBe(100);
    expect(
      peerOf(render({ bgpPeers: [tor({ failureDetectionMode: "None" })] }), "10.0.0.254")?.bfd,
    ).toBeUndefined();
  });
});

describe("spec.bfd (Ocelot extension)", () => {
  it("becomes the peer's BFD session, durations in ms, FRR's defaults for what is not given", () => {
    const r = render({
      bgpPeers: [tor({ bfd: { minTxInterval: "100ms", multiplier: 5, multihop: true } })],
    });
    expect(peerOf(r, "10.0.0.254")?.bfd).toEqual({
      minTx: 100,
      minRx: 300,
      multiplier: 5,
      multihop: true,
    });
    expect(peerOf(render({ bgpPeers: [tor()] }), "10.0.0.254")?.bfd).toBeUndefined();
  });

  it("authentication: the type in bgpd's spelling, keyID 1 by default, the key from its secret's file; a key too long for its type skips the peer", () => {
    const auth = (type: string, name: string, keyID?: number) =>
      tor({
        bfd: {
          authentication: {
            type,
            ...(keyID !== undefined ? { keyID } : {}),
            password: { secretKeyRef: { name: "bgp", key: name } },
          },
        },
      } as never);
    const r = render({ bgpPeers: [auth("MeticulousKeyedSHA1", "tor", 9)] });
    expect(peerOf(r, "10.0.0.254")?.bfd?.authentication).toEqual({
      type: "meticulous-keyed-sha1",
      keyId: 9,
      passwordFile: "/s/bgp/tor",
    });
    expect(
      peerOf(render({ bgpPeers: [auth("Simple", "tor")] }), "10.0.0.254")?.bfd?.authentication,
    ).toMatchObject({ type: "simple", keyId: 1 });
    secrets["/s/bgp/long"] = "x".repeat(17);
    const long = render({ bgpPeers: [auth("KeyedMD5", "long")] });
    expect(peerOf(long, "10.0.0.254")).toBeUndefined();
    expect(long.warnings.join("\n")).toContain(
      'BGPPeer "tor": spec.bfd.authentication.password: a keyed-md5 key is 1 to 16 bytes, got 17; peer skipped',
    );
    const missing = render({ bgpPeers: [auth("KeyedSHA1", "nope")] });
    expect(peerOf(missing, "10.0.0.254")).toBeUndefined();
    expect(missing.warnings.join("\n")).not.toContain("s3cret");
  });

  it("refuses an interval out of 10 ms to 60 s and unknown fields, naming them", async () => {
    const { bgpPeerSchema } = await import("../../src/api/bgp.js");
    const bad = (bfd: object) =>
      bgpPeerSchema.safeParse({
        apiVersion: V3,
        kind: "BGPPeer",
        metadata: { name: "tor" },
        spec: { peerIP: "10.0.0.254", asNumber: 65000, bfd },
      });
    expect(bad({ minTxInterval: "300ms" }).success).toBe(true);
    const short = bad({ minRxInterval: "5ms" });
    expect(short.success).toBe(false);
    expect(JSON.stringify(short.error?.issues)).toContain("not a BFD interval of 10ms to 60s");
    expect(bad({ multiplier: 0 }).success).toBe(false);
    expect(JSON.stringify(bad({ echo: true }).error?.issues)).toContain("echo");
  });
});

describe("graceful restart (BGPConfiguration)", () => {
  const cfg = (spec: BGPConfiguration["spec"]) =>
    ({ ...meshOff, spec: { ...meshOff.spec, ...spec } }) as BGPConfiguration;

  it("is on by default with a 120 s restart time and a 360 s stale time", () => {
    expect(render({}).config.gracefulRestart).toEqual({
      enabled: true,
      restartTime: 120,
      staleRoutesTime: 360,
    });
  });

  it("takes Calico's nodeMeshMaxRestartTime, and the Ocelot extension over it", () => {
    const mesh = { ...meshOff, spec: { nodeMeshMaxRestartTime: "45s" } } as BGPConfiguration;
    expect(render({ bgpConfigurations: [mesh] }).config.gracefulRestart?.restartTime).toBe(45);
    const ext = cfg({
      gracefulRestart: { enabled: false, restartTime: "2m", staleRoutesTime: "10m" },
    });
    expect(render({ bgpConfigurations: [ext] }).config.gracefulRestart).toEqual({
      enabled: false,
      restartTime: 120,
      staleRoutesTime: 600,
    });
  });

  it("an out-of-range restart time is refused by name", () => {
    const s = snap({ bgpConfigurations: [cfg({ gracefulRestart: { restartTime: "2h" } })] });
    expect(() => renderBgp(s, "n1", opts)).toThrow(/gracefulRestart\.restartTime: Too big/);
  });
});

describe("route priorities and reachableBy", () => {
  const withDefault = (spec: BGPConfiguration["spec"]) =>
    ({ ...meshOff, spec: { ...meshOff.spec, ...spec } }) as BGPConfiguration;

  it("the kernel metric of learned routes: Calico's normal route priority, 1024 unless the default BGPConfiguration says otherwise (a node's own instance does not)", () => {
    expect(render({}).config?.fib).toMatchObject({ metricV4: 1024, metricV6: 1024 });
    const nodeCfg = {
      ...meshOff,
      metadata: { name: "node.n1" },
      spec: { ipv4NormalRoutePriority: 7 },
    } as BGPConfiguration;
    const r = render({
      bgpConfigurations: [
        withDefault({ ipv4NormalRoutePriority: 2000, ipv6NormalRoutePriority: 3000 }),
        nodeCfg,
      ],
    });
    expect(r.config?.fib).toMatchObject({ metricV4: 2000, metricV6: 3000 });
  });

  it("reachableBy: the peer gets the gateway for its host route and Calico's multihop (TTL 64), unless GTSM is set", () => {
    const r = render({ bgpPeers: [tor({ reachableBy: "10.0.0.9" })] });
    expect(peerOf(r, "10.0.0.254")).toMatchObject({ reachableBy: "10.0.0.9", multihop: 64 });
    const g = render({ bgpPeers: [tor({ reachableBy: "10.0.0.9", ttlSecurity: 2 })] });
    const p = peerOf(g, "10.0.0.254");
    expect(p).toMatchObject({ reachableBy: "10.0.0.9", ttlSecurity: 2 });
    expect(p?.multihop).toBeUndefined();
    expect(peerOf(render({ bgpPeers: [tor()] }), "10.0.0.254")?.reachableBy).toBeUndefined();
  });

  it("BGPFilter priority, setPriority, addCommunity and prependASPath reach the speaker on import and export; route priorities on (Calico's krt_metric)", () => {
    const fp = filter("fp", {
      importV4: [
        { action: "Accept", cidr: "10.1.0.0/16", matchOperator: "In" },
        { action: "Accept", priority: 512 },
        { action: "Accept", operations: [{ setPriority: { value: 256 } }] },
        { action: "Accept", operations: [{ addCommunity: { value: "65000:1" } }] },
        { action: "Accept", operations: [{ prependASPath: { prefix: [65001, 65002] } }] },
        { action: "Accept", cidr: "10.2.0.0/16", matchOperator: "In" },
      ],
      exportV4: [{ action: "Accept", operations: [{ setPriority: { value: 512 } }] }],
    });
    const r = render({ bgpPeers: [tor({ filters: ["fp"] })], bgpFilters: [fp] });
    const p = peerOf(r, "10.0.0.254");
    expect(p?.importFilter?.rules.slice(-6)).toEqual([
      { action: "Accept", cidr: "10.1.0.0/16", matchOperator: "In" },
      { action: "Accept", priority: 512 },
      { action: "Accept", operations: [{ setPriority: { value: 256 } }] },
      { action: "Accept", operations: [{ addCommunity: { value: "65000:1" } }] },
      { action: "Accept", operations: [{ prependASPath: { prefix: [65001, 65002] } }] },
      { action: "Accept", cidr: "10.2.0.0/16", matchOperator: "In" },
    ]);
    expect(p?.exportFilter?.rules).toEqual([
      { action: "Accept", operations: [{ setPriority: { value: 512 } }] },
    ]);
    expect(r.warnings.join()).not.toContain("fp");
    expect(r.config?.fib).toMatchObject({ metricFromPriority: true });
  });
});
