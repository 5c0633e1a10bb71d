// The node daemon's pure parts and its datastore edges without a kernel: the agent's input from
// resources, the BGP speaker's config from resources (mesh, BGPPeers by node, selector and peer
// selector, route-reflector clients, originated blocks), the Node registration's compare-and-swap,
// and the watched cache (events, a compaction resync) on the in-memory store.
import { describe, expect, it } from "vitest";
import { getNode } from "../../src/api/client.js";
import type { Node, WorkloadEndpoint } from "../../src/api/node.js";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import type { Datastore, WatchMessage } from "../../src/datastore/types.js";
import { renderDataplane } from "../../src/felix/dataplane.js";
import { agentInput, nodeBlocks, workloadsOf } from "../../src/node/agent_state.js";
import { type BgpSnapshot, renderBgp, routerIdFromName } from "../../src/node/bgp_state.js";
import { PrefixCache } from "../../src/node/cache.js";
import { mergeNode, registerNode } from "../../src/node/registration.js";
import { aff, bgpConfig, peer, pool, V3 } from "./resources.js";

const node = (name: string, ip?: string, extra: Partial<Node["spec"]["bgp"]> = {}, labels = {}) =>
  ({
    apiVersion: V3,
    kind: "Node",
    metadata: { name, labels },
    spec: ip ? { bgp: { ipv4Address: ip, ...extra } } : {},
  }) as Node;

const wep = (ns: string, name: string, nodeName: string, iface: string, ips: string[]) =>
  ({
    apiVersion: V3,
    kind: "WorkloadEndpoint",
    metadata: { name, namespace: ns },
    spec: { node: nodeName, interfaceName: iface, ipNetworks: ips },
  }) as WorkloadEndpoint;

function snap(over: Partial<BgpSnapshot> = {}): BgpSnapshot {
  return {
    nodes: [node("n1", "10.0.0.1/24"), node("n2", "10.0.0.2/24"), node("n3", "10.0.0.3/24")],
    workloadEndpoints: [],
    pools: [pool("p", "10.244.0.0/16", { natOutgoing: true })],
    affinities: [
      aff("n1", "10.244.0.0/26"),
      aff("n1", "10.244.0.64/26", "pending"),
      aff("n2", "10.244.1.0/26"),
    ],
    bgpConfigurations: [],
    bgpPeers: [],
    ...over,
  };
}

const opts = { statusSocket: "/tmp/x.sock" };

describe("agent state", () => {
  it("takes only this node's endpoints with an interface, addresses without lengths", () => {
    const ws = workloadsOf(
      [
        wep("default", "a", "n1", "ocl0000000001", ["10.244.0.1/32", "fd00::1/128"]),
        wep("default", "b", "n2", "ocl0000000002", ["10.244.1.1/32"]),
        { ...wep("default", "c", "n1", "x", []), spec: { node: "n1" } } as WorkloadEndpoint,
      ],
      "n1",
    );
    expect(ws).toEqual([
      { id: "default/a", hostIface: "ocl0000000001", ipv4: ["10.244.0.1"], ipv6: ["fd00::1"] },
    ]);
  });

  it("an IPPool with ipipMode CrossSubnet: the overlay waits for this node's tunnel address (no warning about routing natively)", () => {
    const s = snap({
      pools: [
        pool("tunnelled", "10.245.0.0/16", { ipipMode: "CrossSubnet" }),
        pool("plain", "10.246.0.0/16", { ipipMode: "Never" }),
      ],
    });
    const desired = renderDataplane(agentInput(s, "n1"));
    expect(desired.warnings).toEqual(["IP-in-IP: waiting for this node's tunnel address"]);
    expect(desired.overlay.devices).toEqual([]);
  });

  it("blackholes only confirmed blocks of the node; NAT pools and node addresses from resources", () => {
    const s = snap({
      workloadEndpoints: [wep("default", "a", "n1", "ocl0000000001", ["10.244.0.1/32"])],
    });
    expect(nodeBlocks(s.affinities, "n1")).toEqual(["10.244.0.0/26"]);
    const input = agentInput(s, "n1", { clusterCidrs: ["10.0.0.0/8"] });
    expect(input.pools).toEqual([{ cidr: "10.244.0.0/16", natOutgoing: true, name: "p" }]);
    expect(input.nodeAddresses).toEqual(["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    expect(input.options).toEqual({ ipv6: false });
    const routes = renderDataplane(input).workloads.routes.map((r) => `${r.dst} ${r.type ?? ""}`);
    expect(routes).toEqual(["10.244.0.1/32 ", "10.244.0.0/26 blackhole"]);
  });

  it("an address claimed by two endpoints is refused by name (nothing to apply)", () => {
    const s = snap({
      workloadEndpoints: [
        wep("default", "a", "n1", "ocl0000000001", ["10.244.0.1/32"]),
        wep("default", "b", "n1", "ocl0000000002", ["10.244.0.1/32"]),
      ],
    });
    expect(() => renderDataplane(agentInput(s, "n1"))).toThrow(/10\.244\.0\.1\/32.*claimed/);
  });
});

describe("BGP state", () => {
  it("meshes with every other node, originates its confirmed blocks, router ID its address", () => {
    const r = renderBgp(snap(), "n1", opts);
    expect(r.config).toBeDefined();
    const c = r.config as NonNullable<typeof r.config>;
    expect(c.asn).toBe(64512);
    expect(c.routerId).toBe("10.0.0.1");
    expect(c.peers.map((p) => [p.address, p.asn])).toEqual([
      ["10.0.0.2", 64512],
      ["10.0.0.3", 64512],
    ]);
    expect(c.originate.map((o) => o.prefix)).toEqual(["10.244.0.0/26"]);
    expect(c.fib.protocol).toBe(201);
    expect(c.status.socket).toBe("/tmp/x.sock");
  });

  it("no Node or no address: no speaker, with the reason", () => {
    expect(renderBgp(snap(), "n9", opts)).toMatchObject({ config: undefined, reason: /no Node/ });
    const s = snap({ nodes: [node("n1")] });
    expect(renderBgp(s, "n1", opts)).toMatchObject({ reason: /no spec.bgp.ipv4Address/ });
  });

  it("CALICO_ROUTER_ID: an address, or hash of the node's name (confd's HashToIPv4); an IPv6-only node runs BGP with one", () => {
    // Values computed apart from the code (sha256 of the name, the first four bytes).
    expect(routerIdFromName("node-1")).toBe("53.151.27.230");
    expect(routerIdFromName("kind-worker")).toBe("105.106.233.48");
    // First byte 245 (above 223, not a unicast router ID): lowered by 32.
    expect(routerIdFromName("node-18")).toBe("213.194.139.227");
    expect(renderBgp(snap(), "n1", { ...opts, routerId: "192.0.2.9" }).config?.routerId).toBe(
      "192.0.2.9",
    );
    const v6 = (name: string, addr: string) =>
      ({
        apiVersion: V3,
        kind: "Node",
        metadata: { name, labels: {} },
        spec: { bgp: { ipv6Address: addr } },
      }) as Node;
    const s = snap({ nodes: [v6("node-1", "fd00::1/64"), v6("node-2", "fd00::2/64")] });
    expect(renderBgp(s, "node-1", opts)).toMatchObject({
      config: undefined,
      reason: /no spec.bgp.ipv4Address for a router ID \(set CALICO_ROUTER_ID/,
    });
    const c = renderBgp(s, "node-1", { ...opts, routerId: "hash" }).config;
    expect(c?.routerId).toBe("53.151.27.230");
    expect(c?.peers.map((p) => [p.address, p.sourceAddress])).toEqual([["fd00::2", "fd00::1"]]);
  });

  it("the default BGPConfiguration sets AS and turns the mesh off; a node AS wins", () => {
    const s = snap({
      bgpConfigurations: [bgpConfig("default", { asNumber: 65100, nodeToNodeMeshEnabled: false })],
      nodes: [node("n1", "10.0.0.1/24", { asNumber: 65001 }), node("n2", "10.0.0.2/24")],
    });
    const c = renderBgp(s, "n1", opts).config;
    expect(c?.asn).toBe(65001);
    expect(c?.peers).toEqual([]);
    expect(renderBgp(s, "n2", opts).config?.asn).toBe(65100);
  });

  it("BGPPeers: global, this node, by nodeSelector; another node's and unmatched ones are left out", () => {
    const s = snap({
      nodes: [node("n1", "10.0.0.1/24", {}, { rack: "a" }), node("n2", "10.0.0.2/24")],
      bgpPeers: [
        peer("global-tor", { peerIP: "10.0.0.254", asNumber: 65000 }),
        peer("mine", { node: "n1", peerIP: "192.0.2.1:1179", asNumber: 65001 }),
        peer("theirs", { node: "n2", peerIP: "192.0.2.2", asNumber: 65002 }),
        peer("rack-a", { nodeSelector: "rack == 'a'", peerIP: "192.0.2.3", asNumber: 65003 }),
        peer("rack-b", { nodeSelector: "rack == 'b'", peerIP: "192.0.2.4", asNumber: 65004 }),
        peer("md5", { peerIP: "192.0.2.5", asNumber: 65005, keepaliveTime: "10s", filters: ["f"] }),
      ],
    });
    const r = renderBgp(s, "n1", opts);
    const peers = r.config?.peers.map((p) => `${p.address}:${p.port} AS${p.asn}`);
    expect(peers).toEqual([
      "10.0.0.2:179 AS64512",
      "10.0.0.254:179 AS65000",
      "192.0.2.1:1179 AS65001",
      "192.0.2.3:179 AS65003",
      "192.0.2.5:179 AS65005",
    ]);
    expect(r.config?.peers.find((p) => p.address === "192.0.2.5")?.holdTime).toBe(30);
    expect(r.warnings.join()).toMatch(/BGPPeer "md5": spec.filters: BGPFilter "f" does not exist/);
  });

  it("peerSelector over Nodes; a reflector (cluster ID) treats nodes outside its cluster as clients", () => {
    const s = snap({
      bgpConfigurations: [bgpConfig("default", { nodeToNodeMeshEnabled: false })],
      nodes: [
        node("rr1", "10.0.0.1/24", { routeReflectorClusterID: "224.0.0.1" }, { rr: "yes" }),
        node("n2", "10.0.0.2/24"),
        node("n3", "10.0.0.3/24"),
      ],
      bgpPeers: [
        peer("to-rr", { nodeSelector: "!has(rr)", peerSelector: "has(rr)" }),
        peer("rr-to-all", { nodeSelector: "has(rr)", peerSelector: "!has(rr)" }),
      ],
    });
    const rr = renderBgp(s, "rr1", opts).config;
    expect(rr?.clusterId).toBe("224.0.0.1");
    expect(rr?.peers.map((p) => [p.address, p.routeReflectorClient])).toEqual([
      ["10.0.0.2", true],
      ["10.0.0.3", true],
    ]);
    const client = renderBgp(s, "n2", opts).config;
    expect(client?.peers.map((p) => [p.address, p.routeReflectorClient])).toEqual([
      ["10.0.0.1", false],
    ]);
    // Each peer's kind, for `ocelot node status`: the BGPPeer it comes from (NodePeer: it picks
    // nodes by nodeSelector) and its role in reflection.
    const kinds = (n: string) => (renderBgp(s, n, opts) as { peerKinds: unknown }).peerKinds;
    expect(kinds("rr1")).toEqual({
      "10.0.0.2": { type: "NodePeer", source: "rr-to-all", role: "client" },
      "10.0.0.3": { type: "NodePeer", source: "rr-to-all", role: "client" },
    });
    expect(kinds("n2")).toEqual({
      "10.0.0.1": { type: "NodePeer", source: "to-rr", role: "reflector" },
    });
  });

  it("peer kinds: the mesh by Node, a global BGPPeer, one naming this node", () => {
    const s = snap({
      bgpPeers: [
        peer("tor", { peerIP: "192.0.2.1", asNumber: 65000 }),
        peer("mine", { node: "n1", peerIP: "192.0.2.2", asNumber: 65001 }),
      ],
    });
    expect((renderBgp(s, "n1", opts) as { peerKinds: unknown }).peerKinds).toEqual({
      "10.0.0.2": { type: "NodeMesh", source: "n2" },
      "10.0.0.3": { type: "NodeMesh", source: "n3" },
      "192.0.2.1": { type: "GlobalPeer", source: "tor" },
      "192.0.2.2": { type: "NodePeer", source: "mine" },
    });
  });

  it("blocks of a pool with disableBGPExport are not originated", () => {
    const s = snap({ pools: [pool("p", "10.244.0.0/16", { disableBGPExport: true })] });
    expect(renderBgp(s, "n1", opts).config?.originate).toEqual([]);
  });

  it("a floating IP in a (disabled) pool is originated as a /32 once floatingIPs is Enabled", () => {
    const fip = {
      ...wep("default", "a", "n1", "ocl0000000001", ["10.244.0.1/32"]),
    } as WorkloadEndpoint;
    fip.spec = {
      ...fip.spec,
      ipNATs: [
        { internalIP: "10.244.0.1", externalIP: "203.0.113.5" },
        { internalIP: "10.244.0.1", externalIP: "198.51.100.9" },
      ],
    };
    const base = {
      workloadEndpoints: [fip],
      pools: [
        pool("p", "10.244.0.0/16", { natOutgoing: true }),
        pool("floating", "203.0.113.0/24", { disabled: true }),
      ],
    };
    const prefixes = (s: BgpSnapshot) =>
      renderBgp(s, "n1", opts).config?.originate.map((o) => o.prefix);
    expect(prefixes(snap(base))).toEqual(["10.244.0.0/26"]);
    const enabled = snap({
      ...base,
      felixConfigurations: [{ metadata: { name: "default" }, spec: { floatingIPs: "Enabled" } }],
    });
    // 198.51.100.9 is in no pool: routed to the pod, not announced (as Calico's BIRD filter).
    expect(prefixes(enabled)).toEqual(["10.244.0.0/26", "203.0.113.5/32"]);
  });
});

describe("Node registration", () => {
  it("creates, then updates only what changed, keeping the user's labels", async () => {
    const store = new MemoryDatastore();
    const first = await registerNode(store, { name: "n1", ipv4Address: "10.0.0.1/24" });
    expect(first.changed).toBe(true);
    const again = await registerNode(store, { name: "n1", ipv4Address: "10.0.0.1/24" });
    expect(again.changed).toBe(false);
    // The user labels it; the daemon's next registration (new AS) keeps the label.
    const kv = await store.get("/ocelot/resources/v3/nodes/n1");
    const doc = JSON.parse(kv?.value as string);
    doc.metadata.labels = { rack: "a" };
    await store.update(kv?.key as string, JSON.stringify(doc), kv?.modRevision);
    const third = await registerNode(store, { name: "n1", asNumber: 65001 });
    expect(third.changed).toBe(true);
    const stored = await getNode(store, "n1");
    expect(stored?.metadata.labels).toEqual({ rack: "a" });
    expect(stored?.spec.bgp).toEqual({ ipv4Address: "10.0.0.1/24", asNumber: 65001 });
    await store.close();
  });

  it("retries the compare-and-swap when another writer got there first", async () => {
    const store = new MemoryDatastore();
    await registerNode(store, { name: "n1", ipv4Address: "10.0.0.1/24" });
    let raced = false;
    const racing: Datastore = Object.create(store);
    racing.update = async (key, value, rev) => {
      if (!raced) {
        raced = true; // someone labels the node between our read and our write
        const kv = await store.get(key);
        const doc = JSON.parse(kv?.value as string);
        doc.metadata.labels = { raced: "yes" };
        await store.update(key, JSON.stringify(doc), kv?.modRevision);
      }
      return store.update(key, value, rev);
    };
    const r = await registerNode(racing, { name: "n1", ipv4Address: "10.0.0.9/24" });
    expect(raced).toBe(true);
    expect(r.node.metadata.labels).toEqual({ raced: "yes" });
    expect(r.node.spec.bgp?.ipv4Address).toBe("10.0.0.9/24");
    await store.close();
  });

  it("a bad address is refused by name and nothing is written", async () => {
    const store = new MemoryDatastore();
    await expect(registerNode(store, { name: "n1", ipv4Address: "10.0.0.300/24" })).rejects.toThrow(
      /10\.0\.0\.300/,
    );
    expect(await store.get("/ocelot/resources/v3/nodes/n1")).toBeUndefined();
    expect(mergeNode(undefined, { name: "n1" })).toMatchObject({ metadata: { name: "n1" } });
    await store.close();
  });
});

describe("PrefixCache", () => {
  it("lists, follows puts and deletes, and lists again on a resync", async () => {
    const store = new MemoryDatastore();
    await store.update("/a/1", "one");
    let resyncs = 0;
    // The first watch reports its start compacted, as a store does after compaction.
    let first = true;
    const wrapped: Datastore = Object.create(store);
    wrapped.watch = (prefix, rev, on) => {
      if (first) {
        first = false;
        setTimeout(() => on({ kind: "resync", compactRevision: rev + 1 } as WatchMessage), 5);
      }
      return store.watch(prefix, rev, on);
    };
    const changes: string[] = [];
    const cache = new PrefixCache(wrapped, ["/a/"], {
      onChange: (p) => changes.push(p),
      onResync: () => resyncs++,
    });
    await cache.start();
    expect(cache.values("/a/").map((kv) => kv.value)).toEqual(["one"]);
    const until = async (what: string, ok: () => boolean) => {
      // Bounded (60 s, a hang): a loaded CI machine can take far longer than the usual few ms.
      for (let i = 0; i < 6000 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
      if (!ok()) throw new Error(`timed out waiting for ${what}`);
    };
    await until("the resync", () => resyncs === 1);
    // The list after the resync reports a change of its own; the writes come after it, so that
    // they arrive as watch events rather than inside that list.
    await until("the list after the resync", () => changes.length >= 2);
    await store.update("/a/2", "two");
    await store.delete("/a/1");
    await until(
      "the events",
      () =>
        cache
          .values("/a/")
          .map((kv) => kv.value)
          .join() === "two",
    );
    expect(changes.length).toBeGreaterThanOrEqual(3);
    await cache.close();
    await store.update("/a/3", "three");
    await new Promise((r) => setTimeout(r, 30));
    expect(cache.values("/a/").map((kv) => kv.value)).toEqual(["two"]);
    await store.close();
  });
});
