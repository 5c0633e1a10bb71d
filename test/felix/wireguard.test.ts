// WireGuard's pure parts (src/felix/wireguard.ts, src/node/wireguard_node.ts' input, the
// interface address in src/node/tunnel_addrs.ts): FelixConfiguration's settings and Felix's
// defaults; keys as `wg` prints them; the peer set, allowed IPs and the table's routes from
// Nodes, blocks and borrowed addresses (a key claimed twice, a node without key or address); the
// plan from the kernel's state (a fresh device, nothing when converged, a peer changed or gone,
// the rule moved) and the plan that turns WireGuard off; `wg show dump` parsing.
import { describe, expect, it } from "vitest";
import type { IPPool } from "../../src/api/ippool.js";
import type { Node } from "../../src/api/node.js";
import { validateResource } from "../../src/api/registry.js";
import { renderHostPolicy } from "../../src/felix/host_endpoint.js";
import {
  generatePrivateKey,
  HANDSHAKE_FRESH_S,
  HANDSHAKE_REFRESH_S,
  isWireguardKey,
  parseWgDump,
  planWireguard,
  planWireguardOff,
  publicKeyOf,
  renderWireguard,
  rpFilterWarning,
  type WireguardInput,
  type WireguardKernel,
  wireguardConfig,
} from "../../src/felix/wireguard.js";
import { hostInputOf } from "../../src/node/agent_state.js";
import { planTunnels, tunnelHandle, tunnelNeeds, withTunnel } from "../../src/node/tunnel_addrs.js";
import { wireguardInputOf } from "../../src/node/wireguard_node.js";
import { aff, pool, V3 } from "../node/resources.js";

// Keys from `wg genkey` / `wg pubkey` (wireguard-tools), to check ours against.
const PRIV = "II5n2kyP0SoryLBfs+BLAeM5kb7mnkUgVoBTxNaNS2g=";
const PUB = "wdMXHy9Eo9XUdDbkRdooKtv1MzdGQS9JGUV2wIve5lU=";
const K2 = publicKeyOf(generatePrivateKey());
const K3 = publicKeyOf(generatePrivateKey());

const cfg = (spec: Record<string, unknown> = {}) =>
  wireguardConfig({ wireguardEnabled: true, ...spec }).config;

const input = (over: Partial<WireguardInput> = {}): WireguardInput => ({
  node: "n1",
  config: cfg(),
  publicKey: PUB,
  nodes: [
    { name: "n1", address: "10.0.1.11/24", publicKey: PUB, interfaceAddress: "10.244.1.5" },
    { name: "n2", address: "10.0.2.12/24", publicKey: K2, interfaceAddress: "10.244.2.7" },
    { name: "n3", address: "10.0.3.13/24" },
  ],
  blocks: [
    { cidr: "10.244.1.0/26", node: "n1" },
    { cidr: "10.244.2.0/26", node: "n2" },
    { cidr: "10.244.3.0/26", node: "n3" },
    { cidr: "fd32::/122", node: "n2" },
  ],
  hostMtu: 1500,
  ...over,
});

describe("WireGuard settings", () => {
  it("Felix's defaults: off, wireguard.cali, 51820, priority 99, MTU auto, no keepalive, table 1", () => {
    expect(wireguardConfig({})).toEqual({
      config: {
        family: 4,
        enabled: false,
        interfaceName: "wireguard.cali",
        listeningPort: 51820,
        rulePriority: 99,
        mtu: 0,
        keepAliveSeconds: 0,
        routingTable: 1,
        hostEncryption: false,
      },
      warnings: [],
    });
  });

  it("the fields as set; the table is the first of routeTableRanges (or routeTableRange); a bad keepalive is warned", () => {
    const { config } = wireguardConfig({
      wireguardEnabled: true,
      wireguardInterfaceName: "wg0",
      wireguardListeningPort: 51999,
      wireguardRoutingRulePriority: 50,
      wireguardMTU: 1380,
      wireguardKeepAlive: "1m30s",
      routeTableRanges: [{ min: 40, max: 50 }],
      wireguardHostEncryptionEnabled: true,
    });
    expect(config).toEqual({
      family: 4,
      enabled: true,
      interfaceName: "wg0",
      listeningPort: 51999,
      rulePriority: 50,
      mtu: 1380,
      keepAliveSeconds: 90,
      routingTable: 40,
      hostEncryption: true,
    });
    expect(wireguardConfig({ routeTableRange: { min: 7, max: 9 } }).config.routingTable).toBe(7);
    // IPv6: its own fields and defaults (wg-v6.cali, 51821) and the range's second index.
    expect(wireguardConfig({ wireguardEnabled: true }, 6).config).toEqual({
      family: 6,
      enabled: false,
      interfaceName: "wg-v6.cali",
      listeningPort: 51821,
      rulePriority: 99,
      mtu: 0,
      keepAliveSeconds: 0,
      routingTable: 2,
      hostEncryption: false,
    });
    const v6 = wireguardConfig(
      {
        wireguardEnabledV6: true,
        wireguardInterfaceNameV6: "wg6",
        wireguardListeningPortV6: 6000,
        wireguardMTUV6: 1400,
        routeTableRanges: [
          { min: 40, max: 40 },
          { min: 60, max: 70 },
        ],
      },
      6,
    ).config;
    expect(v6).toMatchObject({
      enabled: true,
      interfaceName: "wg6",
      listeningPort: 6000,
      mtu: 1400,
      routingTable: 60,
    });
    expect(wireguardConfig({ routeTableRange: { min: 5, max: 5 } }, 6).warnings[0]).toMatch(
      /no index left for the IPv6 WireGuard table/,
    );
    expect(wireguardConfig({ wireguardKeepAlive: "soon" }).warnings).toEqual([
      "FelixConfiguration wireguardKeepAlive: not a duration; keepalive off",
    ]);
  });

  it("a device named like the pods' interfaces (ocl…) is warned about, naming the field: the policy would drop what is forwarded to it", () => {
    const on = { wireguardEnabled: true, wireguardEnabledV6: true };
    expect(wireguardConfig({ ...on, wireguardInterfaceName: "oclm92de4w1" }).warnings).toEqual([
      `FelixConfiguration wireguardInterfaceName: "oclm92de4w1" begins with the pods' interface prefix "ocl": the policy takes it for an unknown pod's interface and drops the pods' traffic forwarded to it; choose another name`,
    ]);
    expect(wireguardConfig({ ...on, wireguardInterfaceNameV6: "oclx1" }, 6).warnings[0]).toMatch(
      /^FelixConfiguration wireguardInterfaceNameV6: "oclx1" begins with/,
    );
    // Off, or another name (the defaults, the tests' `oc<hex>…`): no warning.
    expect(wireguardConfig({ wireguardInterfaceName: "oclm92de4w1" }).warnings).toEqual([]);
    expect(wireguardConfig(on).warnings).toEqual([]);
    expect(wireguardConfig(on, 6).warnings).toEqual([]);
    expect(wireguardConfig({ ...on, wireguardInterfaceName: "oc0102lm9w1" }).warnings).toEqual([]);
  });
});

describe("WireGuard keys", () => {
  it("the public key of a private key is wg pubkey's; generated keys are keys, each new", () => {
    expect(publicKeyOf(PRIV)).toBe(PUB);
    const a = generatePrivateKey();
    expect(isWireguardKey(a)).toBe(true);
    expect(generatePrivateKey()).not.toBe(a);
    expect(isWireguardKey("abc=")).toBe(false);
    expect(() => publicKeyOf("abc=")).toThrow(/not a WireGuard private key/);
  });
});

describe("renderWireguard", () => {
  it("one peer per other node with a key and an address: endpoint node IP:port, allowed IPs its IPv4 blocks and interface address; table routes through the device, throw for our blocks and nodes without a key; the rule", () => {
    const s = renderWireguard(input({ config: cfg({ wireguardKeepAlive: "25s" }) }));
    expect(s.device).toEqual({
      name: "wireguard.cali",
      mtu: 1440,
      listenPort: 51820,
      fwmark: 0x100000,
      address: "10.244.1.5/32",
    });
    expect(s.peers).toEqual([
      {
        node: "n2",
        publicKey: K2,
        endpoint: "10.0.2.12:51820",
        allowedIps: ["10.244.2.0/26", "10.244.2.7/32"],
        keepAliveSeconds: 25,
      },
    ]);
    expect(s.routes).toEqual([
      { dst: "10.244.1.0/26", type: "throw" },
      { dst: "10.244.2.0/26", type: "unicast" },
      { dst: "10.244.2.7/32", type: "unicast" },
      { dst: "10.244.3.0/26", type: "throw" },
    ]);
    expect(s.rule).toEqual({ family: 4, priority: 99, table: 1, fwmark: 0x100000 });
    expect(s.warnings).toEqual([]);
  });

  it("MTU: wireguardMTU when set, else the host MTU minus 60", () => {
    expect(renderWireguard(input({ hostMtu: 9000 })).device.mtu).toBe(8940);
    expect(renderWireguard(input({ config: cfg({ wireguardMTU: 1300 }) })).device.mtu).toBe(1300);
  });

  it("a key claimed by two nodes is nobody's (Felix): both reached without WireGuard, warned", () => {
    const nodes = [...input().nodes, { name: "n4", address: "10.0.4.14/24", publicKey: K2 }];
    const s = renderWireguard(input({ nodes }));
    expect(s.peers).toEqual([]);
    expect(s.routes.filter((r) => r.type === "unicast")).toEqual([]);
    expect(s.warnings).toEqual([
      `WireGuard: public key ${K2} is claimed by n2, n4; those nodes are reached without WireGuard`,
    ]);
    // Our own key claimed by another node: that node is no peer either.
    const copy = renderWireguard(
      input({
        nodes: [...input().nodes, { name: "n5", address: "10.0.5.15/24", publicKey: PUB }],
      }),
    );
    expect(copy.peers.map((p) => p.node)).toEqual(["n2"]);
  });

  it("no IPv4 address, or no key: no peer; a node's third key works once published", () => {
    const nodes = [
      input().nodes[0] as WireguardInput["nodes"][number],
      { name: "n2", publicKey: K2 },
      { name: "n3", address: "10.0.3.13/24", publicKey: K3 },
    ];
    const s = renderWireguard(input({ nodes }));
    expect(s.peers.map((p) => [p.node, p.allowedIps])).toEqual([["n3", ["10.244.3.0/26"]]]);
    expect(s.routes).toContainEqual({ dst: "10.244.2.0/26", type: "throw" });
  });

  it("borrowed addresses: a remote pod's goes to its node's peer, ours is thrown back to the main table", () => {
    const s = renderWireguard(
      input({
        workloads: [
          { address: "10.244.3.9", node: "n2" }, // n2's pod from n3's block
          { address: "10.244.2.40", node: "n1" }, // our pod from n2's block
          { address: "fd32::5", node: "n2" },
        ],
      }),
    );
    expect(s.peers[0]?.allowedIps).toEqual(["10.244.2.0/26", "10.244.2.7/32", "10.244.3.9/32"]);
    expect(s.routes).toContainEqual({ dst: "10.244.3.9/32", type: "unicast" });
    expect(s.routes).toContainEqual({ dst: "10.244.2.40/32", type: "throw" });
  });
});

const converged = (): WireguardKernel => {
  const s = renderWireguard(input());
  return {
    link: {
      ifname: "wireguard.cali",
      mtu: 1440,
      flags: ["POINTOPOINT", "UP", "LOWER_UP"],
      linkinfo: { info_kind: "tun" },
      addr_info: [{ family: "inet", local: "10.244.1.5", prefixlen: 32 }],
    },
    dump: {
      privateKey: PRIV,
      publicKey: PUB,
      listenPort: 51820,
      fwmark: 0x100000,
      peers: s.peers.map((p) => ({
        publicKey: p.publicKey,
        endpoint: p.endpoint,
        allowedIps: p.allowedIps,
        latestHandshake: 0,
        keepAliveSeconds: 0,
      })),
    },
    rules: [
      { priority: 0, table: "local" },
      { priority: 99, not: null, fwmark: "0x100000", fwmask: "0x100000", table: "1" },
      { priority: 32766, table: "main" },
    ],
    routes: s.routes.map((r) =>
      r.type === "throw" ? { dst: r.dst, type: "throw" } : { dst: r.dst, dev: "wireguard.cali" },
    ),
  };
};

describe("renderWireguard with host encryption (wireguardHostEncryptionEnabled)", () => {
  const hostCfg = (spec: Record<string, unknown> = {}) =>
    cfg({ wireguardHostEncryptionEnabled: true, ...spec });

  it("each peer's allowed IPs and device routes also hold its node's host addresses (fabric address and spec.addresses of the family); a node without a key: throw routes for them; ours: none", () => {
    const nodes = [
      ...input().nodes.slice(0, 1),
      {
        name: "n2",
        address: "10.0.2.12/24",
        publicKey: K2,
        interfaceAddress: "10.244.2.7",
        hostAddresses: ["192.168.7.2", "10.0.2.12", "fd00::2", "172.16.0.2/16"],
      },
      { name: "n3", address: "10.0.3.13/24" },
    ];
    const s = renderWireguard(
      input({ config: hostCfg(), nodes, handshakeAges: new Map([[K2, 10]]) }),
    );
    expect(wireguardConfig({ wireguardHostEncryptionEnabled: true }).config.hostEncryption).toBe(
      true,
    );
    expect(s.peers).toEqual([
      {
        node: "n2",
        publicKey: K2,
        endpoint: "10.0.2.12:51820",
        allowedIps: [
          "10.0.2.12/32",
          "10.244.2.0/26",
          "10.244.2.7/32",
          "172.16.0.2/32",
          "192.168.7.2/32",
        ],
        keepAliveSeconds: 0,
      },
    ]);
    expect(s.routes).toEqual([
      { dst: "10.0.2.12/32", type: "unicast" },
      { dst: "10.0.3.13/32", type: "throw" },
      { dst: "10.244.1.0/26", type: "throw" },
      { dst: "10.244.2.0/26", type: "unicast" },
      { dst: "10.244.2.7/32", type: "unicast" },
      { dst: "10.244.3.0/26", type: "throw" },
      { dst: "172.16.0.2/32", type: "unicast" },
      { dst: "192.168.7.2/32", type: "unicast" },
    ]);
    // Our own host address is in no route: the local table delivers it.
    expect(s.routes.map((r) => r.dst)).not.toContain("10.0.1.11/32");
    // The device's interface address stays the allocated one; the rule is the same (WireGuard's
    // own UDP carries the mark and keeps the main table).
    expect(s.device.address).toBe("10.244.1.5/32");
    expect(s.rule).toEqual({ family: 4, priority: 99, table: 1, fwmark: 0x100000 });
    expect(s.handshakeTargets).toEqual([]);
    // Off: exactly the pod-only state.
    const off = renderWireguard(input({ nodes }));
    expect(off.peers[0]?.allowedIps).toEqual(["10.244.2.0/26", "10.244.2.7/32"]);
    expect(off.routes.map((r) => r.dst)).toEqual([
      "10.244.1.0/26",
      "10.244.2.0/26",
      "10.244.2.7/32",
      "10.244.3.0/26",
    ]);
  });

  it("bootstrap: without a fresh handshake with the peer (it may not hold our key) its host addresses are accepted but thrown to the main table, and a packet to its interface address (else its first block) starts one; an old one is renewed", () => {
    const s = renderWireguard(input({ config: hostCfg() }));
    expect(s.peers[0]?.allowedIps).toEqual(["10.0.2.12/32", "10.244.2.0/26", "10.244.2.7/32"]);
    expect(s.routes).toEqual([
      { dst: "10.0.2.12/32", type: "throw" },
      { dst: "10.0.3.13/32", type: "throw" },
      { dst: "10.244.1.0/26", type: "throw" },
      { dst: "10.244.2.0/26", type: "unicast" },
      { dst: "10.244.2.7/32", type: "unicast" },
      { dst: "10.244.3.0/26", type: "throw" },
    ]);
    expect(s.handshakeTargets).toEqual([{ address: "10.244.2.7", awaited: true }]);
    // By the handshake's age: fresh (<= 120 s) nothing to do; 121..300 s through the device and
    // renewed; older (the peer no longer takes our key): in clear again, awaited.
    const at = (age: number) => {
      const r = renderWireguard(input({ config: hostCfg(), handshakeAges: new Map([[K2, age]]) }));
      return {
        route: r.routes.find((x) => x.dst === "10.0.2.12/32")?.type,
        targets: r.handshakeTargets,
      };
    };
    expect(at(0)).toEqual({ route: "unicast", targets: [] });
    expect(at(HANDSHAKE_REFRESH_S)).toEqual({ route: "unicast", targets: [] });
    expect(at(HANDSHAKE_REFRESH_S + 1)).toEqual({
      route: "unicast",
      targets: [{ address: "10.244.2.7", awaited: false }],
    });
    expect(at(HANDSHAKE_FRESH_S)).toEqual(at(HANDSHAKE_REFRESH_S + 1));
    expect(at(HANDSHAKE_FRESH_S + 1)).toEqual({
      route: "throw",
      targets: [{ address: "10.244.2.7", awaited: true }],
    });
    // A handshake with another key (the peer's old one) does not count.
    expect(
      renderWireguard(input({ config: hostCfg(), handshakeAges: new Map([[K3, 10]]) })).routes,
    ).toContainEqual({ dst: "10.0.2.12/32", type: "throw" });
    const noIface = input().nodes.map(({ interfaceAddress: _, ...n }) => n);
    expect(renderWireguard(input({ config: hostCfg(), nodes: noIface })).handshakeTargets).toEqual([
      { address: "10.244.2.0", awaited: true },
    ]);
    // An interface address that is also a host address (gated itself): the first block instead.
    const same = input().nodes.map((n) =>
      n.name === "n2" ? { ...n, interfaceAddress: "10.0.2.12" } : n,
    );
    expect(renderWireguard(input({ config: hostCfg(), nodes: same })).handshakeTargets).toEqual([
      { address: "10.244.2.0", awaited: true },
    ]);
    // Pod traffic alone: no targets (its routes go through the device at once).
    expect(renderWireguard(input()).handshakeTargets).toEqual([]);
  });

  it("no interface address: the device takes the host address (Felix); IPv6: the /128 host routes on the IPv6 device", () => {
    const nodes = input().nodes.map(({ interfaceAddress: _, ...n }) => n);
    expect(renderWireguard(input({ config: hostCfg(), nodes })).device.address).toBe(
      "10.0.1.11/32",
    );
    expect(renderWireguard(input({ nodes })).device.address).toBeUndefined();
    const s6 = renderWireguard(
      input({
        config: wireguardConfig(
          { wireguardEnabledV6: true, wireguardHostEncryptionEnabled: true },
          6,
        ).config,
        nodes: [
          { name: "n1", address: "fd31:1::11/64", publicKey: PUB },
          { name: "n2", address: "fd31:2::12/64", publicKey: K2, hostAddresses: ["10.0.2.12"] },
        ],
        handshakeAges: new Map([[K2, 10]]),
      }),
    );
    expect(s6.device.address).toBe("fd31:1::11/128");
    expect(s6.peers[0]?.allowedIps).toEqual(["fd31:2::12/128", "fd32::/122"]);
    expect(s6.routes).toContainEqual({ dst: "fd31:2::12/128", type: "unicast" });
  });

  it("converged (host routes read back as `ip -j` prints them, without /32): nothing to do; turned off: the host routes are removed and the peer's allowed IPs replaced", () => {
    const on = renderWireguard(input({ config: hostCfg(), handshakeAges: new Map([[K2, 10]]) }));
    const kernel: WireguardKernel = {
      link: {
        ifname: "wireguard.cali",
        mtu: 1440,
        flags: ["UP"],
        linkinfo: { info_kind: "wireguard" },
        addr_info: [{ family: "inet", local: "10.244.1.5", prefixlen: 32, scope: "global" }],
      },
      dump: {
        publicKey: PUB,
        listenPort: 51820,
        fwmark: 0x100000,
        peers: on.peers.map((p) => ({
          publicKey: p.publicKey,
          endpoint: p.endpoint,
          allowedIps: p.allowedIps,
          latestHandshake: 0,
          keepAliveSeconds: 0,
        })),
      },
      rules: [{ priority: 99, table: "1", fwmark: "0x100000", fwmask: "0x100000", not: null }],
      // As `ip -j` prints them: a host route's destination without "/32".
      routes: on.routes.map((r) => {
        const dst = r.dst.replace(/\/32$/, "");
        return r.type === "throw" ? { dst, type: "throw" } : { dst, dev: "wireguard.cali" };
      }),
    };
    expect(planWireguard(on, kernel).changes).toEqual([]);
    const plan = planWireguard(renderWireguard(input()), kernel);
    expect(plan.set.map((r) => r.args.join(" "))).toEqual([
      `set wireguard.cali peer ${K2} endpoint 10.0.2.12:51820 persistent-keepalive off allowed-ips 10.244.2.0/26,10.244.2.7/32`,
      "route del 10.0.2.12/32 table 1",
      "route del throw 10.0.3.13/32 table 1",
    ]);
    expect(plan.rule).toEqual([]);
  });

  it("a strict rp_filter (1) on the fabric interface is warned about; loose (2), off (0) or unknown are not", () => {
    expect(rpFilterWarning("eth0", 1)).toMatch(/rp_filter is strict \(1\) on eth0/);
    for (const v of [0, 2, undefined]) expect(rpFilterWarning("eth0", v)).toBeUndefined();
  });

  it("wireguardInputOf: spec.addresses of the family reach the renderer as host addresses", () => {
    const snap = {
      nodes: [
        node(
          "n2",
          {
            bgp: { ipv4Address: "10.0.2.12/24" },
            addresses: [{ address: "192.168.7.2" }, { address: "fd00::2/64" }],
          },
          { wireguardPublicKey: K2 },
        ),
      ],
      workloadEndpoints: [],
      pools: [],
      affinities: [],
    };
    const i = wireguardInputOf(snap, "n1", hostCfg(), PUB, {});
    expect(i.nodes).toEqual([
      { name: "n2", address: "10.0.2.12/24", publicKey: K2, hostAddresses: ["192.168.7.2"] },
    ]);
  });
});

describe("renderWireguard over IPv6", () => {
  it("the IPv6 device: peers at [address]:51821 with their IPv6 blocks and /128, MTU host - 80, an IPv6 rule", () => {
    const s = renderWireguard(
      input({
        config: wireguardConfig({ wireguardEnabledV6: true }, 6).config,
        nodes: [
          { name: "n1", address: "fd31:1::11/64", publicKey: PUB, interfaceAddress: "fd32::5" },
          { name: "n2", address: "FD31:2::12/64", publicKey: K2, interfaceAddress: "fd32::47" },
        ],
        workloads: [{ address: "10.244.3.9", node: "n2" }],
      }),
    );
    expect(s.device).toMatchObject({ name: "wg-v6.cali", mtu: 1420, address: "fd32::5/128" });
    expect(s.peers).toEqual([
      {
        node: "n2",
        publicKey: K2,
        endpoint: "[fd31:2::12]:51821",
        allowedIps: ["fd32::/122", "fd32::47/128"],
        keepAliveSeconds: 0,
      },
    ]);
    expect(s.rule).toEqual({ family: 6, priority: 99, table: 2, fwmark: 0x100000 });
    const plan = planWireguard(s, { rules: [], routes: [] });
    expect(plan.set.map((r) => r.args.join(" "))).toContain(
      "route replace fd32::/122 dev wg-v6.cali table 2 proto 3 scope link",
    );
  });
});

describe("planWireguard", () => {
  it("no device: create it, set key, port, mark, MTU, address, peers and routes, then the rule", () => {
    const plan = planWireguard(renderWireguard(input()), { rules: [], routes: [] });
    expect(plan.create).toEqual({ deleteFirst: false });
    expect(plan.setKey).toBe(true);
    expect(plan.set.map((r) => `${r.tool} ${r.args.join(" ")}`)).toEqual([
      "wg set wireguard.cali listen-port 51820 fwmark 0x100000",
      "ip link set dev wireguard.cali mtu 1440 up",
      "ip addr add 10.244.1.5/32 dev wireguard.cali",
      `wg set wireguard.cali peer ${K2} endpoint 10.0.2.12:51820 persistent-keepalive off allowed-ips 10.244.2.0/26,10.244.2.7/32`,
      "ip route replace throw 10.244.1.0/26 table 1 proto 3",
      "ip route replace 10.244.2.0/26 dev wireguard.cali table 1 proto 3 scope link",
      "ip route replace 10.244.2.7/32 dev wireguard.cali table 1 proto 3 scope link",
      "ip route replace throw 10.244.3.0/26 table 1 proto 3",
    ]);
    expect(plan.rule.map((r) => r.args.join(" "))).toEqual([
      "rule add priority 99 not fwmark 0x100000/0x100000 table 1",
    ]);
  });

  it("converged: nothing to do", () => {
    const plan = planWireguard(renderWireguard(input()), converged());
    expect(plan).toEqual({ setKey: false, set: [], rule: [], changes: [] });
  });

  it("a peer's blocks changed, a stale peer and route, the rule at another priority: each repaired alone", () => {
    const k = converged();
    const dump = k.dump as NonNullable<WireguardKernel["dump"]>;
    dump.peers[0] = {
      ...(dump.peers[0] as (typeof dump.peers)[number]),
      allowedIps: ["10.244.2.0/26"],
    };
    dump.peers.push({
      publicKey: K3,
      allowedIps: ["10.9.0.0/26"],
      latestHandshake: 0,
      keepAliveSeconds: 0,
    });
    k.routes.push({ dst: "10.9.0.0/26", dev: "wireguard.cali" });
    k.rules[1] = { ...(k.rules[1] as object), priority: 98 };
    const plan = planWireguard(renderWireguard(input()), k);
    expect(plan.create).toBeUndefined();
    expect(plan.setKey).toBe(false);
    expect(plan.set.map((r) => `${r.tool} ${r.args.join(" ")}`)).toEqual([
      `wg set wireguard.cali peer ${K3} remove`,
      `wg set wireguard.cali peer ${K2} endpoint 10.0.2.12:51820 persistent-keepalive off allowed-ips 10.244.2.0/26,10.244.2.7/32`,
      "ip route del 10.9.0.0/26 table 1",
    ]);
    expect(plan.rule.map((r) => r.args.join(" "))).toEqual([
      "rule del priority 98 not fwmark 0x100000/0x100000 table 1",
      "rule add priority 99 not fwmark 0x100000/0x100000 table 1",
    ]);
  });

  it("a device of another kind under the name, or one that does not answer wg: made again; another key: set", () => {
    const k = converged();
    const veth = planWireguard(renderWireguard(input()), {
      ...k,
      link: { ...(k.link as object), ifname: "wireguard.cali", linkinfo: { info_kind: "veth" } },
    });
    expect(veth.create).toEqual({ deleteFirst: true });
    const { dump: _, ...noDump } = k;
    expect(planWireguard(renderWireguard(input()), noDump).create).toEqual({ deleteFirst: true });
    const rekey = planWireguard(renderWireguard(input({ publicKey: K3 })), k);
    expect(rekey.setKey).toBe(true);
  });

  it("off: the rule, the table's routes, then the device", () => {
    const off = planWireguardOff("wireguard.cali", 1, converged());
    expect(off.requests.map((r) => r.args.join(" "))).toEqual([
      "rule del priority 99 not fwmark 0x100000/0x100000 table 1",
      "route del throw 10.244.1.0/26 table 1",
      "route del 10.244.2.0/26 table 1",
      "route del 10.244.2.7/32 table 1",
      "route del throw 10.244.3.0/26 table 1",
      "link del wireguard.cali",
    ]);
    expect(planWireguardOff("wireguard.cali", 1, { rules: [], routes: [] }).requests).toEqual([]);
  });

  it("wg show dump: interface line then peers; (none) and off read as absent", () => {
    const text = [
      `${PRIV}\t${PUB}\t51820\t0x100000`,
      `${K2}\t(none)\t10.0.2.12:51820\t10.244.2.7/32,10.244.2.0/26\t1796654974\t1200\t900\t25`,
      `${K3}\t(none)\t(none)\t(none)\t0\t0\t0\toff`,
    ].join("\n");
    expect(parseWgDump(text)).toEqual({
      privateKey: PRIV,
      publicKey: PUB,
      listenPort: 51820,
      fwmark: 0x100000,
      peers: [
        {
          publicKey: K2,
          endpoint: "10.0.2.12:51820",
          allowedIps: ["10.244.2.0/26", "10.244.2.7/32"],
          latestHandshake: 1796654974,
          keepAliveSeconds: 25,
        },
        { publicKey: K3, allowedIps: [], latestHandshake: 0, keepAliveSeconds: 0 },
      ],
    });
    expect(parseWgDump(`(none)\t(none)\t0\toff`)).toEqual({ listenPort: 0, fwmark: 0, peers: [] });
    expect(parseWgDump("")).toBeUndefined();
  });
});

const node = (name: string, spec: Node["spec"], status?: Node["status"]) =>
  ({
    apiVersion: V3,
    kind: "Node",
    metadata: { name },
    spec,
    ...(status ? { status } : {}),
  }) as Node;
const decoded = (p: IPPool) => validateResource(p).resource as unknown as IPPool;

describe("the WireGuard interface address (calico-node's rule)", () => {
  const pools = [
    pool("plain", "10.244.0.0/16"),
    pool("tunnel-off", "10.245.0.0/16", { allowedUses: ["Workload"] }),
    pool("v6", "fd32::/48"),
  ].map(decoded);
  const n1 = node("n1", { bgp: { ipv4Address: "10.0.1.11/24" } });

  it("wanted once the Node publishes a key, from any enabled IPv4 pool allowing Tunnel; released when the key goes", () => {
    expect(tunnelNeeds(pools, n1)).toEqual({});
    const keyed = { ...n1, status: { wireguardPublicKey: PUB } };
    expect(tunnelNeeds(pools, keyed)).toEqual({ wireguard: ["plain"] });
    expect(planTunnels(pools, keyed)).toEqual([
      { kind: "wireguard", op: "assign", pools: ["plain"], releaseFirst: false },
    ]);
    const withAddr = withTunnel(keyed, "wireguard", "10.244.7.1");
    expect(withAddr.spec.wireguard).toEqual({ interfaceIPv4Address: "10.244.7.1" });
    expect(planTunnels(pools, withAddr)).toEqual([{ kind: "wireguard", op: "keep" }]);
    const unkeyed = { ...withAddr, status: {} };
    expect(planTunnels(pools, unkeyed)).toEqual([{ kind: "wireguard", op: "release" }]);
    expect(withTunnel(unkeyed, "wireguard", undefined).spec.wireguard).toBeUndefined();
    expect(tunnelHandle("wireguard", "n1")).toBe("wireguard-tunnel-addr-n1");
    // IPv6: its own key, pools and field.
    const pools6 = [...pools, pool("v6-b", "fd33::/48")].map(decoded);
    const keyed6 = { ...n1, status: { wireguardPublicKeyV6: K2 } };
    expect(tunnelNeeds(pools6, keyed6)).toEqual({ "wireguard-v6": ["v6", "v6-b"] });
    expect(withTunnel(keyed6, "wireguard-v6", "fd32::9").spec.wireguard).toEqual({
      interfaceIPv6Address: "fd32::9",
    });
    expect(tunnelHandle("wireguard-v6", "n1")).toBe("wireguard-v6-tunnel-addr-n1");
  });

  it("the renderer's input from the snapshot: Nodes' keys and interface addresses, confirmed blocks, the fabric MTU", () => {
    const snap = {
      nodes: [
        withTunnel({ ...n1, status: { wireguardPublicKey: PUB } }, "wireguard", "10.244.7.1"),
        node("n2", { bgp: { ipv4Address: "10.0.2.12/24" } }, { wireguardPublicKey: K2 }),
      ],
      workloadEndpoints: [],
      pools,
      affinities: [aff("n2", "10.244.2.0/26"), aff("n2", "10.244.9.0/26", "pending")],
    };
    const i = wireguardInputOf(snap, "n1", cfg(), PUB, {
      fabric: { 4: { name: "eth0", mtu: 9000 } },
    });
    expect(i.nodes).toEqual([
      { name: "n1", address: "10.0.1.11/24", publicKey: PUB, interfaceAddress: "10.244.7.1" },
      { name: "n2", address: "10.0.2.12/24", publicKey: K2 },
    ]);
    expect(i.blocks).toEqual([{ cidr: "10.244.2.0/26", node: "n2" }]);
    expect(i.hostMtu).toBe(9000);
    expect(renderWireguard(i).device.mtu).toBe(8940);
  });
});

describe("host endpoints and WireGuard (Felix's allow rules)", () => {
  const hep = { name: "n1-eth0", interfaceName: "eth0", labels: {} };
  it("WireGuard's UDP port is let through before the host endpoints' chains, in and out, per family", () => {
    const s = renderHostPolicy(
      { hostEndpoints: [hep], wireguardPorts: { 4: 51820, 6: 51821 } },
      { endpoints: [], policies: [] },
      4,
    );
    const input = s.filter?.inputTail ?? [];
    const output = s.filter?.outputTail ?? [];
    const wgIn = "-p udp --dport 51820 -m addrtype --dst-type LOCAL -j ACCEPT";
    const wgOut = "-p udp --dport 51820 -m addrtype --src-type LOCAL -j ACCEPT";
    expect(input.indexOf(wgIn)).toBeGreaterThanOrEqual(0);
    expect(input.indexOf(wgIn)).toBeLessThan(input.indexOf("-j ocl-from-host-endpoint"));
    expect(output.indexOf(wgOut)).toBeGreaterThanOrEqual(0);
    expect(output.indexOf(wgOut)).toBeLessThan(output.indexOf("-j ocl-to-host-endpoint"));
    const v6 = renderHostPolicy(
      { hostEndpoints: [hep], wireguardPorts: { 4: 51820, 6: 51821 } },
      { endpoints: [], policies: [] },
      6,
    );
    expect(v6.filter?.inputTail).toContain(
      "-p udp --dport 51821 -m addrtype --dst-type LOCAL -j ACCEPT",
    );
    // WireGuard off: no such rule.
    const off = renderHostPolicy({ hostEndpoints: [hep] }, { endpoints: [], policies: [] }, 4);
    expect((off.filter?.inputTail ?? []).join("\n")).not.toMatch(/--dport 5182/);
  });

  it("hostInputOf: the ports of the families that are on, from FelixConfiguration", () => {
    const snap = {
      nodes: [],
      workloadEndpoints: [],
      pools: [],
      affinities: [],
      felixConfigurations: [
        { metadata: { name: "default" }, spec: { wireguardEnabled: true } },
        { metadata: { name: "node.n1" }, spec: { wireguardListeningPort: 6000 } },
      ],
    };
    expect(hostInputOf(snap, "n1").wireguardPorts).toEqual({ 4: 6000 });
    expect(hostInputOf({ ...snap, felixConfigurations: [] }, "n1").wireguardPorts).toBeUndefined();
  });
});
