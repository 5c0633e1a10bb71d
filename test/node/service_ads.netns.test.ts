// Service IP advertisement with FRR as the top-of-rack router: three real `ocelot node run`
// (no node-to-node mesh) peer with FRR's bgpd (AS 65030, eBGP, `maximum-paths 8`) on one bridge,
// on the embedded store. The `default` BGPConfiguration's serviceClusterIPs, serviceExternalIPs
// and serviceLoadBalancerIPs CIDRs reach FRR from every node: three paths each in its BGP RIB,
// and a three-way ECMP route in the ToR's kernel (zebra's FIB). A Service with
// `externalTrafficPolicy: Local` (EndpointSlice endpoints on node1 and node2) gets /32s for its
// cluster IP, external IP and load-balancer IP from node1 and node2 only (two-way ECMP); one
// with `Cluster` gets none; an IP outside the configured ranges none. The endpoints moving to
// node3 move the /32s to node3; the ranges removed from the BGPConfiguration are withdrawn.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type FrrPeer, kernelRoutes, peersUnavailableReason } from "../helpers/peers.js";
import { daemonTestsUnavailable } from "./harness.js";
import { NodeLab } from "./node_lab.js";

const skip = skipWithReason(
  "Service IP advertisement with FRR",
  daemonTestsUnavailable() ?? peersUnavailableReason(["frr"]),
);

const TOR = "10.95.0.254";
const TOR_AS = 65030;
const NODES = ["10.95.0.1", "10.95.0.2", "10.95.0.3"];
const RANGES = { cluster: "10.96.0.0/16", external: "198.51.100.0/24", lb: "203.0.113.0/24" };
const LOCAL = { cluster: "10.96.0.10/32", external: "198.51.100.10/32", lb: "203.0.113.10/32" };

const frrConf = `frr defaults traditional
hostname tor
!
router bgp ${TOR_AS}
 bgp router-id ${TOR}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor NODES peer-group
 neighbor NODES remote-as 64512
 neighbor NODES timers 3 9
 neighbor NODES timers connect 1
 neighbor NODES advertisement-interval 0
${NODES.map((n) => ` neighbor ${n} peer-group NODES`).join("\n")}
 address-family ipv4 unicast
  maximum-paths 8
 exit-address-family
exit
!
`;

describe.skipIf(skip)("Service IP advertisement: three nodes and FRR as the ToR", () => {
  let lab: NodeLab;
  let tor: Netns;
  let frr: FrrPeer;

  /** FRR's BGP paths for prefix: their next hops, sorted. */
  const bgpPaths = (prefix: string): string[] => frr.nextHops(prefix);
  /** The ToR kernel's next hops for prefix (zebra's FIB: ECMP), sorted. */
  const fibHops = (prefix: string): string[] => {
    const r = kernelRoutes(tor, 4).find((x) => x.dst === prefix.replace(/\/32$/, ""));
    if (!r) return [];
    return (r.nexthops?.map((h) => h.gateway ?? "") ?? [r.gateway ?? ""]).sort();
  };
  const both = (prefix: string) => ({ bgp: bgpPaths(prefix), fib: fibHops(prefix) });
  const expectHops = async (prefix: string, hops: string[]) => {
    await waitFor(
      `${prefix} via ${hops.join(",") || "nothing"} at the ToR`,
      () => {
        const b = both(prefix);
        return b.bgp.join() === hops.join() && b.fib.join() === hops.join() ? true : undefined;
      },
      60_000,
      100,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(both(prefix))}`);
    });
  };

  const bgpConfig = (withRanges: boolean) =>
    lab.apply("BGPConfiguration", "default", {
      nodeToNodeMeshEnabled: false,
      asNumber: 64512,
      ...(withRanges
        ? {
            serviceClusterIPs: [{ cidr: RANGES.cluster }],
            serviceExternalIPs: [{ cidr: RANGES.external }],
            serviceLoadBalancerIPs: [{ cidr: RANGES.lb }],
          }
        : {}),
    });
  const slice = (nodeNames: string[]) =>
    lab.client.write("apply", {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: {
        name: "local-web-x1",
        namespace: "shop",
        labels: { "kubernetes.io/service-name": "local-web" },
      },
      addressType: "IPv4",
      endpoints: nodeNames.map((n, i) => ({
        addresses: [`10.244.${i}.5`],
        nodeName: n,
        conditions: { ready: true },
      })),
      ports: [{ name: "http", protocol: "TCP", port: 8080 }],
    });

  beforeAll(async () => {
    lab = new NodeLab("svcads");
    await bgpConfig(true);
    await lab.apply("BGPPeer", "tor", { peerIP: TOR, asNumber: TOR_AS, keepaliveTime: "3s" });
    for (const [name, policy, ip] of [
      ["local-web", "Local", "10"],
      ["cluster-web", "Cluster", "20"],
    ] as const)
      await lab.client.write("apply", {
        apiVersion: "v1",
        kind: "Service",
        metadata: { name, namespace: "shop" },
        spec: {
          type: "LoadBalancer",
          clusterIP: `10.96.0.${ip}`,
          externalIPs: [`198.51.100.${ip}`, `192.0.2.${ip}`],
          externalTrafficPolicy: policy,
          ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }],
        },
        status: { loadBalancer: { ingress: [{ ip: `203.0.113.${ip}` }] } },
      });
    await slice(["node1", "node2"]);
    await lab.client.write("apply", {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: {
        name: "cluster-web-x1",
        namespace: "shop",
        labels: { "kubernetes.io/service-name": "cluster-web" },
      },
      addressType: "IPv4",
      endpoints: [{ addresses: ["10.244.9.5"], nodeName: "node1" }],
      ports: [{ protocol: "TCP", port: 8080 }],
    });
    tor = lab.fabric("sv", TOR, NODES);
    frr = lab.peers.startFrr(tor, "frr", frrConf);
    await lab.start();
  });

  afterAll(async () => {
    await lab?.close();
  });

  it("every node announces the configured CIDRs: three BGP paths and three-way ECMP at the ToR", async () => {
    for (const r of Object.values(RANGES)) await expectHops(r, NODES);
  });

  it("a Local Service's IPs as /32s only from the nodes with an endpoint; a Cluster one's not at all", async () => {
    for (const p of Object.values(LOCAL)) await expectHops(p, [NODES[0], NODES[1]] as string[]);
    // Cluster policy, and an external IP outside serviceExternalIPs: no host routes.
    for (const p of ["10.96.0.20/32", "198.51.100.20/32", "203.0.113.20/32", "192.0.2.10/32"])
      expect(bgpPaths(p)).toEqual([]);
  });

  it("the endpoints move to node3: the /32s follow", async () => {
    const t0 = performance.now();
    await slice(["node3"]);
    for (const p of Object.values(LOCAL)) await expectHops(p, [NODES[2]] as string[]);
    console.log(
      `service ads: endpoint move to the ToR's FIB: ${(performance.now() - t0).toFixed(0)} ms`,
    );
    for (const r of Object.values(RANGES)) expect(both(r).fib).toEqual(NODES);
  });

  it("the ranges removed from the BGPConfiguration are withdrawn, with the /32s", async () => {
    await bgpConfig(false);
    for (const p of [...Object.values(RANGES), ...Object.values(LOCAL)]) await expectHops(p, []);
  });
});
