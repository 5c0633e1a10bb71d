// Validation and defaults of every resource kind: good documents, bad values, unknown and
// unsupported fields, and the exact shape of each error message (path: quoted value ...).
import { describe, expect, it } from "vitest";
import { type BGPConfiguration, effectiveBgpConfiguration } from "../../src/api/bgp.js";
import { formatIssue, ValidationError } from "../../src/api/errors.js";
import { storedFields } from "../../src/api/inventory.js";
import { resolveKindName, resourceKey, validateResource } from "../../src/api/registry.js";

const V3 = "projectcalico.org/v3";

function issuesOf(doc: unknown): string[] {
  try {
    validateResource(doc);
  } catch (err) {
    if (err instanceof ValidationError) return err.issues.map(formatIssue);
    throw err;
  }
  throw new Error("document was accepted");
}

function pool(
  spec: Record<string, unknown>,
  metadata: Record<string, unknown> = { name: "pool1" },
) {
  return { apiVersion: V3, kind: "IPPool", metadata, spec };
}

describe("IPPool", () => {
  it("applies Calico's IPv4 defaults", () => {
    const { resource } = validateResource(pool({ cidr: "10.244.0.0/16" }));
    expect(resource.spec).toEqual({
      cidr: "10.244.0.0/16",
      blockSize: 26,
      ipipMode: "Never",
      vxlanMode: "Never",
      natOutgoing: false,
      nodeSelector: "all()",
      allowedUses: ["Workload", "Tunnel"],
      assignmentMode: "Automatic",
    });
  });

  it("defaults blockSize to 122 for IPv6 and stores the canonical CIDR", () => {
    const { resource } = validateResource(pool({ cidr: "FD00:0:0::/48" }));
    expect(resource.spec).toMatchObject({ cidr: "fd00::/48", blockSize: 122 });
  });

  it("keeps given values over defaults", () => {
    const { resource } = validateResource(
      pool({
        cidr: "10.0.0.0/8",
        blockSize: 24,
        ipipMode: "CrossSubnet",
        natOutgoing: true,
        nodeSelector: "rack == 'a'",
        allowedUses: ["Workload"],
      }),
    );
    expect(resource.spec).toMatchObject({
      blockSize: 24,
      ipipMode: "CrossSubnet",
      natOutgoing: true,
      nodeSelector: "rack == 'a'",
      allowedUses: ["Workload"],
    });
  });

  it("refuses a bad CIDR with the path and the quoted value", () => {
    expect(issuesOf(pool({ cidr: "10.0.0.0/33" }))).toEqual([
      'spec.cidr: "10.0.0.0/33" is not a valid CIDR',
    ]);
    expect(issuesOf(pool({ cidr: "banana" }))).toEqual(['spec.cidr: "banana" is not a valid CIDR']);
    expect(issuesOf(pool({ cidr: "300.0.0.0/8" }))).toEqual([
      'spec.cidr: "300.0.0.0/8" is not a valid CIDR',
    ]);
  });

  it("refuses host bits and names the network", () => {
    expect(issuesOf(pool({ cidr: "10.0.0.5/24" }))).toEqual([
      'spec.cidr: "10.0.0.5/24" has host bits set (the network is "10.0.0.0/24")',
    ]);
  });

  it("checks block size ranges by family", () => {
    expect(issuesOf(pool({ cidr: "10.0.0.0/8", blockSize: 19 }))).toEqual([
      "spec.blockSize: 19 is out of range for an IPv4 pool (20..32)",
    ]);
    expect(issuesOf(pool({ cidr: "10.0.0.0/8", blockSize: 33 }))).toEqual([
      "spec.blockSize: 33 is out of range for an IPv4 pool (20..32)",
    ]);
    expect(issuesOf(pool({ cidr: "fd00::/48", blockSize: 115 }))).toEqual([
      "spec.blockSize: 115 is out of range for an IPv6 pool (116..128)",
    ]);
    expect(
      validateResource(pool({ cidr: "10.0.0.0/8", blockSize: 20 })).resource.spec,
    ).toMatchObject({ blockSize: 20 });
    expect(
      validateResource(pool({ cidr: "fd00::/48", blockSize: 128 })).resource.spec,
    ).toMatchObject({ blockSize: 128 });
  });

  it("refuses a pool smaller than one block", () => {
    expect(issuesOf(pool({ cidr: "10.0.0.0/28" }))).toEqual([
      'spec.cidr: "10.0.0.0/28" is smaller than one block (/26); use a prefix of /26 or shorter',
    ]);
  });

  it("refuses pools over link-local, loopback and multicast ranges", () => {
    expect(issuesOf(pool({ cidr: "169.254.0.0/16" }))).toEqual([
      'spec.cidr: "169.254.0.0/16" overlaps the link-local range "169.254.0.0/16"',
    ]);
    expect(issuesOf(pool({ cidr: "0.0.0.0/0" }))[0]).toMatch(/overlaps the link-local range/);
    expect(issuesOf(pool({ cidr: "127.0.0.0/16" }))).toEqual([
      'spec.cidr: "127.0.0.0/16" overlaps the loopback range "127.0.0.0/8"',
    ]);
    expect(issuesOf(pool({ cidr: "ff02::/64" }))).toEqual([
      'spec.cidr: "ff02::/64" overlaps the multicast range "ff00::/8"',
    ]);
  });

  it("refuses enums outside Calico's values", () => {
    expect(issuesOf(pool({ cidr: "10.0.0.0/16", ipipMode: "Sometimes" }))).toEqual([
      'spec.ipipMode: "Sometimes" is not one of Never, Always, CrossSubnet',
    ]);
  });

  it("refuses IP-in-IP on an IPv6 pool and both encapsulations on one pool; accepts VXLAN in both families", () => {
    expect(issuesOf(pool({ cidr: "fd00::/48", ipipMode: "Always" }))).toEqual([
      'spec.ipipMode: "Always" is not allowed on an IPv6 pool (IP-in-IP is IPv4 only)',
    ]);
    expect(
      issuesOf(pool({ cidr: "10.0.0.0/16", vxlanMode: "Always", ipipMode: "CrossSubnet" })),
    ).toEqual([
      'spec.vxlanMode: "Always" cannot be combined with ipipMode "CrossSubnet": a pool uses one encapsulation',
    ]);
    for (const [cidr, vxlanMode] of [
      ["10.0.0.0/16", "CrossSubnet"],
      ["fd00::/48", "Always"],
    ])
      expect(validateResource(pool({ cidr, vxlanMode })).resource.spec).toMatchObject({
        vxlanMode,
        ipipMode: "Never",
      });
  });

  it("refuses an unknown field, naming its path", () => {
    expect(issuesOf(pool({ cidr: "10.0.0.0/16", natOutgoin: true }))).toEqual([
      "spec.natOutgoin: is not a known field (got true)",
    ]);
    expect(issuesOf({ ...pool({ cidr: "10.0.0.0/16" }), extra: 1 })).toEqual([
      "extra: is not a known field (got 1)",
    ]);
    expect(issuesOf(pool({ cidr: "10.0.0.0/16" }, { name: "p", colour: "red" }))).toEqual([
      'metadata.colour: is not a known field (got "red")',
    ]);
  });

  it("namespaceSelector: a selector without global(), not on a Tunnel pool (Calico's CEL rules)", () => {
    // Accepted; without allowedUses such a pool is for workloads only (re-appliable as read back).
    const { resource } = validateResource(
      pool({ cidr: "10.0.0.0/16", namespaceSelector: "team == 'a'" }),
    );
    expect(resource.spec).toMatchObject({
      namespaceSelector: "team == 'a'",
      allowedUses: ["Workload"],
    });
    expect(() => validateResource({ ...pool({}), spec: resource.spec })).not.toThrow();
    expect(
      validateResource(pool({ cidr: "10.0.0.0/16", namespaceSelector: "" })).resource.spec,
    ).toMatchObject({ allowedUses: ["Workload", "Tunnel"] });
    expect(issuesOf(pool({ cidr: "10.0.0.0/16", namespaceSelector: "global()" }))).toEqual([
      expect.stringMatching(/^spec\.namespaceSelector: .*global\(\) is not valid/),
    ]);
    expect(issuesOf(pool({ cidr: "10.0.0.0/16", namespaceSelector: "a ==" }))).toEqual([
      expect.stringMatching(/^spec\.namespaceSelector: .*is not a valid selector/),
    ]);
    expect(
      issuesOf(
        pool({
          cidr: "10.0.0.0/16",
          allowedUses: ["Workload", "Tunnel"],
          namespaceSelector: "a == 'b'",
        }),
      ),
    ).toEqual([
      expect.stringMatching(
        /^spec\.namespaceSelector: cannot be set on a pool whose allowedUses include Tunnel/,
      ),
    ]);
  });

  it("reports every bad field of a document", () => {
    expect(
      issuesOf(
        pool({ cidr: "10.0.0.0/16", nodeSelector: "a ==", disabled: "yes" }, { name: "Pool_1" }),
      ),
    ).toHaveLength(3);
  });

  it("status: Calico's controllers' conditions (metav1.Condition) are accepted, stored and named as not acted on", () => {
    const condition = {
      type: "Ready",
      status: "True",
      lastTransitionTime: "2026-01-02T03:04:05Z",
      reason: "PoolReady",
      message: "",
      observedGeneration: 3,
    };
    const doc = { ...pool({ cidr: "10.244.0.0/16" }), status: { conditions: [condition] } };
    const v = validateResource(doc);
    expect((v.resource as unknown as { status: unknown }).status).toEqual({
      conditions: [condition],
    });
    expect(storedFields(v.info, v.resource)).toEqual([
      "status: status conditions as Calico's controllers write them: kept as given; Ocelot writes none and acts on none",
    ]);
    const bad = (c: Record<string, unknown>, list = [c]) =>
      issuesOf({ ...pool({ cidr: "10.244.0.0/16" }), status: { conditions: list } });
    expect(bad({ ...condition, status: "Maybe" })[0]).toMatch(/^status\.conditions\[0\]\.status:/);
    expect(bad({ ...condition, reason: "not camel" })).toEqual([
      'status.conditions[0].reason: "not camel" is not a CamelCase reason',
    ]);
    expect(bad({ ...condition, lastTransitionTime: "yesterday" })).toEqual([
      'status.conditions[0].lastTransitionTime: "yesterday" is not a date-time',
    ]);
    expect(bad(condition, [condition, condition])).toEqual([
      'status.conditions[1].type: "Ready" is listed twice (conditions are keyed by type)',
    ]);
    expect(bad({ ...condition, color: "blue" })[0]).toMatch(/^status\.conditions\[0\]\.color:/);
  });

  it("validates names as DNS-1123 subdomains", () => {
    expect(issuesOf(pool({ cidr: "10.0.0.0/16" }, { name: "Pool_1" }))[0]).toMatch(
      /^metadata\.name: "Pool_1" is not a valid name/,
    );
    expect(issuesOf(pool({ cidr: "10.0.0.0/16" }, {}))).toEqual(["metadata.name: is required"]);
    expect(issuesOf(pool({ cidr: "10.0.0.0/16" }, { name: "p", namespace: "x" }))).toEqual([
      "metadata.namespace: must not be set: this kind is not namespaced",
    ]);
  });

  it("refuses a missing spec.cidr and a wrong type", () => {
    expect(issuesOf(pool({}))).toEqual(["spec.cidr: is required"]);
    expect(issuesOf(pool({ cidr: "10.0.0.0/16", blockSize: "26" }))).toEqual([
      'spec.blockSize: "26" is not a number',
    ]);
  });
});

describe("envelope", () => {
  it("refuses an unknown kind and a wrong apiVersion", () => {
    expect(issuesOf({ apiVersion: V3, kind: "Widget", metadata: { name: "w" } })[0]).toMatch(
      /^kind: "Widget" is not a supported kind/,
    );
    expect(issuesOf({ apiVersion: "v1", kind: "IPPool", metadata: { name: "w" } })).toEqual([
      'apiVersion: "v1" is not supported for kind "IPPool" (use "projectcalico.org/v3")',
    ]);
    expect(issuesOf({ kind: "IPPool" })).toEqual(["apiVersion: is required"]);
    expect(issuesOf("hello")).toEqual(['expected a resource object, got "hello"']);
  });

  it("refuses metadata fields it would otherwise drop", () => {
    expect(issuesOf(pool({ cidr: "10.0.0.0/16" }, { name: "p", finalizers: ["x"] }))[0]).toMatch(
      /^metadata\.finalizers: is a Calico field/,
    );
  });
});

describe("IPReservation", () => {
  it("accepts CIDRs and bare IPs", () => {
    const { resource } = validateResource({
      apiVersion: V3,
      kind: "IPReservation",
      metadata: { name: "r" },
      spec: { reservedCIDRs: ["10.0.0.0/28", "10.0.1.7", "fd00::1"] },
    });
    expect(resource.spec).toEqual({ reservedCIDRs: ["10.0.0.0/28", "10.0.1.7/32", "fd00::1/128"] });
  });
  it("refuses host bits in a reservation", () => {
    expect(
      issuesOf({
        apiVersion: V3,
        kind: "IPReservation",
        metadata: { name: "r" },
        spec: { reservedCIDRs: ["10.0.0.1/28"] },
      }),
    ).toEqual([
      'spec.reservedCIDRs[0]: "10.0.0.1/28" has host bits set (the network is "10.0.0.0/28")',
    ]);
  });
});

describe("BGPConfiguration", () => {
  const cfg = (name: string, spec: unknown) => ({
    apiVersion: V3,
    kind: "BGPConfiguration",
    metadata: { name },
    spec,
  });
  it("accepts Calico's documented default instance, AS in asdot", () => {
    const { resource } = validateResource(
      cfg("default", {
        logSeverityScreen: "Info",
        nodeToNodeMeshEnabled: false,
        asNumber: "1.10",
        listenPort: 178,
      }),
    );
    expect(resource.spec).toMatchObject({
      asNumber: 65546,
      listenPort: 178,
      nodeToNodeMeshEnabled: false,
    });
  });
  it("takes ipv4/ipv6NormalRoutePriority in Calico's 1..2147483646 (default 1024, from the default instance only)", () => {
    const spec = { ipv4NormalRoutePriority: 2000, ipv6NormalRoutePriority: 2147483646 };
    const { resource } = validateResource(cfg("default", spec));
    expect(resource.spec).toMatchObject(spec);
    for (const v of [0, 2147483647, 1.5])
      expect(issuesOf(cfg("default", { ipv4NormalRoutePriority: v }))[0]).toMatch(
        /^spec\.ipv4NormalRoutePriority: /,
      );
    const eff = effectiveBgpConfiguration(
      resource as BGPConfiguration,
      validateResource(cfg("node.n1", { ipv4NormalRoutePriority: 7 })).resource as BGPConfiguration,
    );
    expect([eff.ipv4NormalRoutePriority, eff.ipv6NormalRoutePriority]).toEqual([2000, 2147483646]);
    expect(effectiveBgpConfiguration(undefined).ipv4NormalRoutePriority).toBe(1024);
  });
  it("takes programClusterRoutes EnabledNoEncapOnly (what Ocelot does) and refuses Calico's other values with the reason", () => {
    expect(
      validateResource(cfg("default", { programClusterRoutes: "EnabledNoEncapOnly" })).resource
        .spec,
    ).toMatchObject({ programClusterRoutes: "EnabledNoEncapOnly" });
    expect(issuesOf(cfg("default", { programClusterRoutes: "Disabled" }))[0]).toMatch(
      /^spec\.programClusterRoutes: "Disabled" is not supported: Ocelot's agent never programs the routes of unencapsulated pools/,
    );
    for (const v of ["Enabled", "EnabledIPIPOnly"])
      expect(issuesOf(cfg("default", { programClusterRoutes: v }))[0]).toMatch(
        /is not supported: Ocelot's agent programs the routes of IPIP pools/,
      );
    expect(issuesOf(cfg("default", { programClusterRoutes: "Sometimes" }))[0]).toMatch(
      /^spec\.programClusterRoutes: "Sometimes" is not one of Enabled, Disabled, EnabledIPIPOnly, EnabledNoEncapOnly/,
    );
  });
  it("checks AS number range 1..4294967295", () => {
    expect(issuesOf(cfg("default", { asNumber: 0 }))).toEqual([
      "spec.asNumber: 0 is not a valid AS number (1..4294967295)",
    ]);
    expect(issuesOf(cfg("default", { asNumber: 4294967296 }))).toEqual([
      "spec.asNumber: 4294967296 is not a valid AS number (1..4294967295)",
    ]);
    expect(validateResource(cfg("default", { asNumber: 4294967295 })).resource.spec).toMatchObject({
      asNumber: 4294967295,
    });
  });
  it("allows only some fields on per-node instances", () => {
    expect(issuesOf(cfg("node.n1", { asNumber: 65001 }))).toEqual([
      'spec.asNumber: can only be set on the BGPConfiguration named "default", not "node.n1"',
    ]);
    expect(validateResource(cfg("node.n1", { listenPort: 1179 })).resource.spec).toEqual({
      listenPort: 1179,
    });
    expect(issuesOf(cfg("other", {}))[0]).toMatch(
      /^metadata\.name: "other" is not a BGPConfiguration name/,
    );
  });
  it("gives Calico's effective defaults, with per-node overrides", () => {
    expect(effectiveBgpConfiguration(undefined)).toMatchObject({
      asNumber: 64512,
      nodeToNodeMeshEnabled: true,
      listenPort: 179,
      logSeverityScreen: "Info",
    });
    const global = validateResource(cfg("default", { asNumber: 65000, listenPort: 1179 }))
      .resource as BGPConfiguration;
    const node = validateResource(cfg("node.n1", { listenPort: 2179, logSeverityScreen: "Debug" }))
      .resource as BGPConfiguration;
    expect(effectiveBgpConfiguration(global, node)).toMatchObject({
      asNumber: 65000,
      listenPort: 2179,
      logSeverityScreen: "Debug",
    });
    expect(effectiveBgpConfiguration(global)).toMatchObject({
      listenPort: 1179,
      logSeverityScreen: "Info",
    });
  });
  it("takes Service advertisement CIDRs and the aggregation flag as acted on (announced)", () => {
    const { info, resource } = validateResource(
      cfg("default", { serviceClusterIPs: [{ cidr: "10.96.0.0/12" }] }),
    );
    expect(resource.spec).toEqual({ serviceClusterIPs: [{ cidr: "10.96.0.0/12" }] });
    expect(storedFields(info, resource)).toEqual([]);
    const agg = validateResource(cfg("default", { serviceLoadBalancerAggregation: "Disabled" }));
    expect(storedFields(agg.info, agg.resource)).toEqual([]);
    expect(issuesOf(cfg("default", { serviceExternalIPs: [{ cidr: "10.0.0.300/24" }] }))).toEqual([
      'spec.serviceExternalIPs[0].cidr: "10.0.0.300/24" is not a valid CIDR',
    ]);
  });
  it("refuses mesh settings while the mesh is off (CEL: nodeMeshPassword cannot be set when nodeToNodeMeshEnabled is false)", () => {
    expect(
      issuesOf(
        cfg("default", {
          nodeToNodeMeshEnabled: false,
          nodeMeshPassword: { secretKeyRef: { name: "s", key: "k" } },
          nodeMeshMaxRestartTime: "120s",
        }),
      ),
    ).toEqual([
      "spec.nodeMeshPassword: cannot be set when nodeToNodeMeshEnabled is false",
      "spec.nodeMeshMaxRestartTime: cannot be set when nodeToNodeMeshEnabled is false",
    ]);
  });
  it("accepts log levels in any case (CRD pattern (?i)Trace|Debug|Info|Warning|Error|Fatal)", () => {
    expect(() => validateResource(cfg("default", { logSeverityScreen: "debug" }))).not.toThrow();
    expect(issuesOf(cfg("default", { logSeverityScreen: "verbose" }))).toEqual([
      'spec.logSeverityScreen: "verbose" is not a log level (Trace, Debug, Info, Warning, Error or Fatal, any case)',
    ]);
  });
  it("checks community values and names", () => {
    expect(issuesOf(cfg("default", { communities: [{ name: "c", value: "70000:1" }] }))).toEqual([
      'spec.communities[0].value: "70000:1" is not a community value (aa:nn or aa:nn:mm)',
      // CEL: "communities are defined but not used in prefixAdvertisements".
      "spec.communities: are defined but not used in prefixAdvertisements",
    ]);
    const ok = cfg("default", {
      communities: [{ name: "big", value: "4200000000:1:2" }],
      prefixAdvertisements: [{ cidr: "10.0.0.0/24", communities: ["big", "65000:100"] }],
    });
    expect(() => validateResource(ok)).not.toThrow();
    expect(
      issuesOf(
        cfg("default", { prefixAdvertisements: [{ cidr: "10.0.0.0/24", communities: ["nope"] }] }),
      ),
    ).toEqual([
      'spec.prefixAdvertisements[0].communities[0]: "nope" is neither a community value nor a name from spec.communities',
    ]);
  });
});

describe("BGPPeer", () => {
  const peer = (spec: unknown) => ({
    apiVersion: V3,
    kind: "BGPPeer",
    metadata: { name: "tor" },
    spec,
  });
  it("accepts IP, IPv4:port and [IPv6]:port", () => {
    for (const peerIP of ["192.0.2.1", "192.0.2.1:1179", "[2001:db8::1]:179", "2001:db8::1"]) {
      expect(() => validateResource(peer({ peerIP, asNumber: 64513 }))).not.toThrow();
    }
    expect(issuesOf(peer({ peerIP: "192.0.2.1:99999", asNumber: 64513 }))).toEqual([
      'spec.peerIP: "192.0.2.1:99999" is not a valid IP, IPv4:port or [IPv6]:port',
    ]);
  });
  it("applies Calico's cross-field rules (CEL on BGPPeerSpec)", () => {
    // Calico accepts a peer without asNumber or without peerIP (the node skips it, warned).
    expect(() => validateResource(peer({ peerIP: "192.0.2.1" }))).not.toThrow();
    expect(() => validateResource(peer({ asNumber: 1 }))).not.toThrow();
    expect(issuesOf(peer({ peerSelector: "all()", asNumber: 1 }))).toEqual([
      "spec.asNumber: 1 cannot be combined with spec.peerSelector",
    ]);
    expect(issuesOf(peer({ reachableBy: "10.0.0.1" }))).toEqual([
      "spec.reachableBy: needs spec.peerIP",
    ]);
    // libcalico-go's validateBGPPeerSpec: "ReachableBy and PeerIP address family mismatched".
    expect(issuesOf(peer({ peerIP: "192.0.2.1", asNumber: 1, reachableBy: "fd00::1" }))).toEqual([
      'spec.reachableBy: "fd00::1" is an IPv6 address but spec.peerIP "192.0.2.1" is IPv4',
    ]);
    const { resource } = validateResource(
      peer({ peerIP: "[fd00::2]:1790", asNumber: 1, reachableBy: "FD00:0::1" }),
    );
    expect((resource.spec as { reachableBy?: string }).reachableBy).toBe("fd00::1");
  });
  it("refuses a reachableBy that is no address, and one longer than the CRD's 64", () => {
    expect(issuesOf(peer({ peerIP: "192.0.2.1", asNumber: 1, reachableBy: "10.0.0.300" }))).toEqual(
      ['spec.reachableBy: "10.0.0.300" is not a valid IP address'],
    );
    expect(
      issuesOf(peer({ peerIP: "192.0.2.1", asNumber: 1, reachableBy: "1".repeat(65) }))[0],
    ).toMatch(/^spec\.reachableBy: /);
  });
  it("takes localWorkloadSelector with asNumber alone, as Calico's CEL rules on BGPPeerSpec", () => {
    expect(() =>
      validateResource(peer({ localWorkloadSelector: "color == 'red'", asNumber: 65001 })),
    ).not.toThrow();
    // Rule: the selector must parse.
    expect(issuesOf(peer({ localWorkloadSelector: "a ==", asNumber: 1 }))[0]).toMatch(
      /^spec\.localWorkloadSelector: .*selector/i,
    );
    // Rules: "asNumber is required", "peerIP must be empty", "peerSelector must be empty".
    expect(issuesOf(peer({ localWorkloadSelector: "has(a)" }))).toEqual([
      'spec.asNumber: is required when spec.localWorkloadSelector is set ("has(a)")',
    ]);
    expect(
      issuesOf(peer({ localWorkloadSelector: "has(a)", peerIP: "1.2.3.4", asNumber: 1 })),
    ).toEqual(['spec.peerIP: must be empty when spec.localWorkloadSelector is set ("has(a)")']);
    expect(issuesOf(peer({ localWorkloadSelector: "has(a)", peerSelector: "has(b)" }))).toEqual([
      'spec.peerSelector: must be empty when spec.localWorkloadSelector is set ("has(a)")',
      'spec.asNumber: is required when spec.localWorkloadSelector is set ("has(a)")',
    ]);
  });
  it("cuts a long value in messages instead of echoing it whole", () => {
    const long = "a".repeat(254);
    const [msg] = issuesOf(peer({ peerIP: "192.0.2.1", asNumber: 1, node: long }));
    expect(msg).toMatch(/^spec\.node: "a{40}"\.\.\. \(254 characters\) is not a valid name/);
  });
  it("keeps Calico's mutually exclusive fields apart", () => {
    expect(issuesOf(peer({ peerSelector: "rr == 'true'", peerIP: "192.0.2.1" }))).toEqual([
      'spec.peerIP: "192.0.2.1" cannot be combined with spec.peerSelector',
    ]);
    expect(
      issuesOf(peer({ node: "n1", nodeSelector: "all()", peerIP: "192.0.2.1", asNumber: 1 })),
    ).toEqual(['spec.nodeSelector: "all()" cannot be combined with spec.node "n1"']);
  });
  it("parses selectors syntactically", () => {
    expect(issuesOf(peer({ peerSelector: "rr = 'true'" }))[0]).toMatch(
      /^spec\.peerSelector: "rr = 'true'" is not a valid selector \(at offset 3/,
    );
  });
});

describe("BGPFilter", () => {
  const filter = (spec: unknown) => ({
    apiVersion: V3,
    kind: "BGPFilter",
    metadata: { name: "f" },
    spec,
  });
  it("accepts Calico's documented example", () => {
    const doc = filter({
      exportV4: [
        {
          action: "Accept",
          matchOperator: "In",
          cidr: "77.0.0.0/16",
          prefixLength: { min: 24, max: 28 },
        },
        { action: "Reject", interface: "*.calico" },
      ],
      importV6: [{ action: "Reject", matchOperator: "NotIn", cidr: "9000::0/64" }],
    });
    expect(validateResource(doc).resource.spec).toMatchObject({
      importV6: [{ cidr: "9000::/64" }],
    });
  });
  it("refuses family mismatch, half rules and bad prefix ranges", () => {
    expect(
      issuesOf(filter({ exportV4: [{ action: "Accept", matchOperator: "In", cidr: "fd00::/8" }] })),
    ).toEqual(['spec.exportV4[0].cidr: "fd00::/8" is not an IPv4 CIDR']);
    expect(issuesOf(filter({ exportV4: [{ action: "Accept", cidr: "10.0.0.0/8" }] }))).toEqual([
      "spec.exportV4[0].cidr: cidr and matchOperator must both be set or both be empty",
    ]);
    expect(
      issuesOf(
        filter({
          importV4: [
            {
              action: "Accept",
              matchOperator: "In",
              cidr: "10.0.0.0/8",
              prefixLength: { min: 33 },
            },
          ],
        }),
      ),
    ).toEqual(["spec.importV4[0].prefixLength.min: 33 is not an integer in 0..32"]);
    expect(issuesOf(filter({ importV4: [{ action: "Drop" }] }))).toEqual([
      'spec.importV4[0].action: "Drop" is not one of Accept, Reject',
    ]);
  });
});

describe("Node", () => {
  it("accepts a calicoctl-exported Node with its tunnel addresses, VTEP MACs and WireGuard fields; refuses a bad MAC, address or key", () => {
    const node = {
      apiVersion: V3,
      kind: "Node",
      metadata: {
        name: "node-1",
        labels: { "kubernetes.io/hostname": "node-1" },
        creationTimestamp: null,
      },
      spec: {
        bgp: {
          ipv4Address: "192.0.2.11/24",
          ipv4IPIPTunnelAddr: "10.244.1.1",
          routeReflectorClusterID: "224.0.0.1",
        },
        orchRefs: [{ nodeName: "node-1", orchestrator: "k8s" }],
      },
      status: { podCIDRs: ["10.244.1.0/24"] },
    };
    expect(validateResource(node).resource.spec).toMatchObject({
      bgp: { ipv4Address: "192.0.2.11/24" },
    });
    const vxlan = {
      ipv4VXLANTunnelAddr: "10.244.1.2",
      vxlanTunnelMACAddr: "66:0A:0B:0C:0D:0E",
      ipv6VXLANTunnelAddr: "fd00::2",
      vxlanTunnelMACAddrV6: "66:0a:0b:0c:0d:0f",
    };
    expect(validateResource({ ...node, spec: vxlan }).resource.spec).toEqual({
      ...vxlan,
      vxlanTunnelMACAddr: "66:0a:0b:0c:0d:0e",
    });
    expect(issuesOf({ ...node, spec: { vxlanTunnelMACAddr: "66:0a" } })).toEqual([
      'spec.vxlanTunnelMACAddr: "66:0a" is not a MAC address',
    ]);
    expect(issuesOf({ ...node, spec: { ipv4VXLANTunnelAddr: "fd00::1" } })[0]).toMatch(
      /^spec\.ipv4VXLANTunnelAddr: "fd00::1" is not a valid IPv4 address/,
    );
    // WireGuard: the interface addresses (ipv4/ipv6 per family) and the public keys (base64 of
    // 32 bytes, validateWireguardPublicKey).
    const key = "wdMXHy9Eo9XUdDbkRdooKtv1MzdGQS9JGUV2wIve5lU=";
    const wg = {
      ...node,
      spec: { wireguard: { interfaceIPv4Address: "10.244.1.3", interfaceIPv6Address: "fd00::3" } },
      status: { wireguardPublicKey: key, wireguardPublicKeyV6: key },
    };
    expect(validateResource(wg).resource).toMatchObject({
      spec: wg.spec,
      status: wg.status,
    });
    expect(
      issuesOf({ ...node, spec: { wireguard: { interfaceIPv4Address: "fd00::3" } } })[0],
    ).toMatch(/^spec\.wireguard\.interfaceIPv4Address: "fd00::3" is not a valid IPv4 address/);
    expect(issuesOf({ ...node, status: { wireguardPublicKey: "abc=" } })).toEqual([
      'status.wireguardPublicKey: "abc=" is not a WireGuard public key (base64 of 32 bytes)',
    ]);
    expect(issuesOf({ ...node, spec: { wireguard: { mtu: 1400 } } })[0]).toMatch(
      /^spec\.wireguard/,
    );
    const bare = {
      ...node,
      spec: { bgp: { ipv4Address: "192.0.2.11", ipv6Address: "2001:DB8::11/64" } },
    };
    expect(validateResource(bare).resource.spec).toEqual({
      bgp: { ipv4Address: "192.0.2.11/32", ipv6Address: "2001:db8::11/64" },
    });
    expect(issuesOf({ ...node, spec: { bgp: { ipv4Address: "2001:db8::11/64" } } })).toEqual([
      'spec.bgp.ipv4Address: "2001:db8::11/64" is not an IPv4 CIDR',
    ]);
  });
});

describe("policies", () => {
  it("defaults NetworkPolicy namespace, tier, selector and types", () => {
    const { resource } = validateResource({
      apiVersion: V3,
      kind: "NetworkPolicy",
      metadata: { name: "allow-tcp-6379" },
      spec: {
        selector: "role == 'database'",
        ingress: [
          {
            action: "Allow",
            protocol: "TCP",
            source: { selector: "role == 'frontend'" },
            destination: { ports: [6379] },
          },
        ],
        egress: [{ action: "Allow" }],
      },
    });
    expect(resource.metadata.namespace).toBe("default");
    expect(resource.spec).toMatchObject({ tier: "default", types: ["Ingress", "Egress"] });
  });
  it("refuses ports without a port protocol and ICMP without ICMP", () => {
    const doc = {
      apiVersion: V3,
      kind: "GlobalNetworkPolicy",
      metadata: { name: "g" },
      spec: {
        ingress: [
          { action: "Allow", destination: { ports: [80] } },
          { action: "Deny", protocol: "TCP", icmp: { type: 8 } },
        ],
      },
    };
    expect(issuesOf(doc)).toEqual([
      "spec.ingress[0].destination.ports: numeric ports need protocol TCP, UDP, SCTP or UDPLite (no protocol is set; only named ports may go without one)",
      'spec.ingress[1].icmp: needs protocol ICMP or ICMPv6, not "TCP"',
    ]);
  });
  it("refuses ICMP protocols that contradict ipVersion", () => {
    const doc = {
      apiVersion: V3,
      kind: "GlobalNetworkPolicy",
      metadata: { name: "g" },
      spec: {
        ingress: [
          { action: "Allow", protocol: "ICMPv6", ipVersion: 4 },
          { action: "Allow", protocol: "icmp", ipVersion: 4, icmp: { type: 8, code: 0 } },
        ],
      },
    };
    expect(issuesOf(doc)).toEqual([
      'spec.ingress[0].protocol: "ICMPv6" requires ipVersion 6, not 4',
    ]);
  });

  it("refuses an unknown action and a tier name that is not a DNS-1123 label", () => {
    const doc = {
      apiVersion: V3,
      kind: "GlobalNetworkPolicy",
      metadata: { name: "g" },
      spec: { tier: "Sec.urity", ingress: [{ action: "Accept" }, {}] },
    };
    expect(issuesOf(doc)).toEqual([
      "spec.tier: \"Sec.urity\" is not a valid DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)",
      'spec.ingress[0].action: "Accept" is not one of Allow, Deny, Log, Pass',
      "spec.ingress[1].action: is required (one of Allow, Deny, Log, Pass)",
    ]);
  });
  it("accepts a Kubernetes NetworkPolicy and defaults policyTypes", () => {
    const { info, resource } = validateResource({
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: "test-network-policy", namespace: "default" },
      spec: {
        podSelector: { matchLabels: { role: "db" } },
        ingress: [
          {
            from: [
              { ipBlock: { cidr: "172.17.0.0/16", except: ["172.17.1.0/24"] } },
              { namespaceSelector: { matchLabels: { project: "myproject" } } },
            ],
            ports: [{ protocol: "TCP", port: 6379 }],
          },
        ],
      },
    });
    expect(info.plural).toBe("kubernetesnetworkpolicies");
    expect(resource.spec).toMatchObject({ policyTypes: ["Ingress"] });
  });
});

describe("registry", () => {
  it("resolves plural, singular and short names like calicoctl", () => {
    for (const n of ["ippools", "ippool", "pool", "IPPool", "ipp"])
      expect(resolveKindName(n)?.kind).toBe("IPPool");
    expect(resolveKindName("bgpconfig")?.kind).toBe("BGPConfiguration");
    expect(resolveKindName("gnp")?.kind).toBe("GlobalNetworkPolicy");
    expect(resolveKindName("wep")?.kind).toBe("WorkloadEndpoint");
    expect(resolveKindName("knp")?.apiVersion).toBe("networking.k8s.io/v1");
    expect(resolveKindName("widgets")).toBeUndefined();
  });
  it("builds storage keys with and without namespace", () => {
    const ippool = resolveKindName("ippool");
    const np = resolveKindName("networkpolicy");
    if (!ippool || !np) throw new Error("kinds missing");
    expect(resourceKey(ippool, "p1")).toBe("/ocelot/resources/v3/ippools/p1");
    expect(resourceKey(np, "allow", "prod")).toBe(
      "/ocelot/resources/v3/networkpolicies/prod/allow",
    );
  });
});
