// Calico's rule that nodes do not program the Service routes they learn (confd's rejectcidrs,
// BIRD's calico_kernel_programming filter), with the node-to-node mesh on: two real `ocelot node
// run` mesh with each other and peer with FRR's bgpd (AS 65030) as the ToR. A Local Service has
// its endpoint on node2, so node2 announces its /32s; node1 learns them over the mesh (they are
// in its Loc-RIB, read from its status socket) but its kernel gets no route inside the Service
// ranges, neither those /32s nor the ranges node2 announces too, nor a prefix inside a range that
// the ToR announces; a prefix outside the ranges from the ToR is installed (the FIB works). The
// ToR still gets everything: the ranges from both nodes (ECMP), the /32s from node2 only. With
// serviceLoadBalancerAggregation Disabled, the load-balancer range is withdrawn and its routes
// are programmed again (Calico rejects only the ranges it announces), and the Cluster Service's
// load-balancer IP comes from both nodes as a /32.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { queryStatus, type RoutesSnapshot } from "../../src/bgp/status.js";
import { type Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type FrrPeer, kernelRoutes, peersUnavailableReason } from "../helpers/peers.js";
import { daemonTestsUnavailable } from "./harness.js";
import { NodeLab } from "./node_lab.js";

const skip = skipWithReason(
  "Service IP advertisement with the mesh on and FRR",
  daemonTestsUnavailable() ?? peersUnavailableReason(["frr"]),
);

const TOR = "10.94.0.254";
const TOR_AS = 65030;
const NODES = ["10.94.0.1", "10.94.0.2"];
const RANGES = { cluster: "10.96.0.0/16", external: "198.51.100.0/24", lb: "203.0.113.0/24" };
const LOCAL = ["10.96.0.10/32", "198.51.100.10/32", "203.0.113.10/32"];
/** From the ToR: one prefix inside the load-balancer range, one outside every range. */
const TOR_INSIDE = "203.0.113.128/25";
const TOR_OUTSIDE = "192.0.2.0/24";

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
  network ${TOR_INSIDE}
  network ${TOR_OUTSIDE}
  maximum-paths 8
 exit-address-family
exit
!
`;

/** Whether ip lies inside cidr (IPv4). */
function within(prefix: string, cidr: string): boolean {
  const n = (a: string) => a.split(".").reduce((x, o) => x * 256 + Number(o), 0);
  const [a, l] = prefix.split("/") as [string, string | undefined];
  const [b, m] = cidr.split("/") as [string, string];
  const len = Number(m);
  if (Number(l ?? 32) < len) return false;
  const span = 2 ** (32 - len);
  return Math.floor(n(a) / span) === Math.floor(n(b) / span);
}

describe.skipIf(skip)(
  "Service routes are not programmed from the mesh (Calico's rejectcidrs)",
  () => {
    let lab: NodeLab;
    let tor: Netns;
    let frr: FrrPeer;

    const bgpPaths = (prefix: string): string[] => frr.nextHops(prefix);
    const expectTor = async (prefix: string, hops: string[]) => {
      await waitFor(
        `${prefix} via ${hops.join(",") || "nothing"} at the ToR`,
        () => (bgpPaths(prefix).join() === hops.join() ? true : undefined),
        60_000,
        100,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}: ${JSON.stringify(bgpPaths(prefix))}`);
      });
    };
    /** node1's kernel routes (main table, any protocol) as prefixes. */
    const kernel1 = () =>
      kernelRoutes(lab.nodes[0]?.ns as Netns, 4).map((r) =>
        r.dst.includes("/") ? r.dst : `${r.dst}/32`,
      );
    const inRanges = (ranges: string[]) =>
      kernel1().filter((p) => ranges.some((r) => within(p, r)));
    /** node1's Loc-RIB: prefix -> next hop of the best path. */
    const locRib1 = async () => {
      const r = await queryStatus<RoutesSnapshot>(lab.socket("node1"), "routes");
      return new Map(r.routes.map((x) => [x.prefix, x.best.nextHop]));
    };

    const bgpConfig = (aggregation?: "Disabled") =>
      lab.apply("BGPConfiguration", "default", {
        nodeToNodeMeshEnabled: true,
        asNumber: 64512,
        serviceClusterIPs: [{ cidr: RANGES.cluster }],
        serviceExternalIPs: [{ cidr: RANGES.external }],
        serviceLoadBalancerIPs: [{ cidr: RANGES.lb }],
        ...(aggregation ? { serviceLoadBalancerAggregation: aggregation } : {}),
      });

    beforeAll(async () => {
      lab = new NodeLab("svcmesh");
      await bgpConfig();
      await lab.apply("BGPPeer", "tor", { peerIP: TOR, asNumber: TOR_AS, keepaliveTime: "3s" });
      for (const [name, policy, ip] of [
        ["local-web", "Local", "10"],
        ["cluster-web", "Cluster", "20"],
      ] as const) {
        await lab.client.write("apply", {
          apiVersion: "v1",
          kind: "Service",
          metadata: { name, namespace: "shop" },
          spec: {
            type: "LoadBalancer",
            clusterIP: `10.96.0.${ip}`,
            externalIPs: [`198.51.100.${ip}`],
            externalTrafficPolicy: policy,
            ports: [{ port: 80, protocol: "TCP", targetPort: 8080 }],
          },
          status: { loadBalancer: { ingress: [{ ip: `203.0.113.${ip}` }] } },
        });
        await lab.client.write("apply", {
          apiVersion: "discovery.k8s.io/v1",
          kind: "EndpointSlice",
          metadata: {
            name: `${name}-x1`,
            namespace: "shop",
            labels: { "kubernetes.io/service-name": name },
          },
          addressType: "IPv4",
          endpoints: [
            { addresses: [`10.244.1.${ip}`], nodeName: "node2", conditions: { ready: true } },
          ],
          ports: [{ protocol: "TCP", port: 8080 }],
        });
      }
      tor = lab.fabric("sm", TOR, NODES);
      frr = lab.peers.startFrr(tor, "frr", frrConf);
      await lab.start();
    });

    afterAll(async () => {
      await lab?.close();
    });

    it("the ToR gets the ranges from both nodes and the Local Service's /32s from node2", async () => {
      for (const r of Object.values(RANGES)) await expectTor(r, NODES);
      for (const p of LOCAL) await expectTor(p, [NODES[1] as string]);
    });

    it("node1 learns them over the mesh but programs none inside the ranges; outside them it does", async () => {
      // The control: a prefix outside every range, from the ToR, reaches node1's kernel.
      await waitFor(
        `${TOR_OUTSIDE} in node1's kernel`,
        () => (kernel1().includes(TOR_OUTSIDE) ? true : undefined),
        60_000,
        100,
      );
      const rib = await waitFor(
        "node1's Loc-RIB holds node2's /32s and the ToR's prefix inside the range",
        async () => {
          const m = await locRib1();
          return [...LOCAL, TOR_INSIDE].every((p) => m.has(p)) ? m : undefined;
        },
        60_000,
        100,
      );
      for (const p of LOCAL) expect(rib.get(p)).toBe(NODES[1]);
      expect(rib.get(TOR_INSIDE)).toBe(TOR);
      expect(inRanges(Object.values(RANGES))).toEqual([]);
    });

    it("aggregation Disabled: the load-balancer range leaves the ToR and node1's exclusions; the Cluster Service's IP comes as a /32 from both", async () => {
      await bgpConfig("Disabled");
      await expectTor(RANGES.lb, []);
      await expectTor("203.0.113.20/32", NODES);
      await expectTor("203.0.113.10/32", [NODES[1] as string]);
      // No longer a rejected range: what node1 learns inside it is programmed (as Calico's BIRD).
      await waitFor(
        `${TOR_INSIDE} and node2's 203.0.113.10/32 in node1's kernel`,
        () => {
          const k = kernel1();
          return k.includes(TOR_INSIDE) && k.includes("203.0.113.10/32") ? true : undefined;
        },
        60_000,
        100,
      );
      // The other ranges still are.
      expect(inRanges([RANGES.cluster, RANGES.external])).toEqual([]);
    });
  },
);
