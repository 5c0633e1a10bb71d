// BGPConfiguration ipv4NormalRoutePriority and BGPPeer reachableBy, by the real `ocelot node run`
// against BIRD 2 in its own namespace, read back from the kernel with `ip -j route`:
// - a route learned from the ToR is installed with Calico's normal route priority as its metric
//   (1024 by default, confd's krt_metric for BGP routes); a new ipv4NormalRoutePriority moves it
//   to the new metric, leaving no copy at the old one;
// - a peer on a subnet the node has no route to (behind a router namespace) is reached once its
//   BGPPeer names the router as reachableBy: a host route to the peer via the router, protocol
//   201, as confd's BIRD static `route <peer>/32 via <gateway>`, and gone when reachableBy goes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { link, skipWithReason, waitFor } from "../helpers/netns.js";
import { type BirdPeer, peersUnavailableReason } from "../helpers/peers.js";
import { daemonTestsUnavailable, type MeshNode, peerStatus } from "./harness.js";
import { NodeLab } from "./node_lab.js";

const skip = skipWithReason(
  "ocelot node run route priority and reachableBy with BIRD",
  daemonTestsUnavailable() ?? peersUnavailableReason(["bird"]),
);

const NODE_IP = "10.96.0.1";
const BIRD_IP = "10.96.0.2";
/** The node's side of the router, the router (the gateway), and BIRD's far address. */
const NODE_FAR_IP = "10.95.0.1";
const GATEWAY = "10.95.0.254";
const ROUTER_FAR = "10.97.0.1";
const BIRD_FAR_IP = "10.97.0.2";
const BIRD_AS = 65010;
const OUTSIDE = "10.98.1.0/24";

const birdConf = `
log "@DIR@/bird.log" all;
router id ${BIRD_IP};
protocol device { }
protocol static s4 {
  ipv4;
  route ${OUTSIDE} blackhole;
}
protocol bgp tor {
  local ${BIRD_IP} as ${BIRD_AS};
  neighbor ${NODE_IP} as 64512;
  passive on;
  hold time 9;
  error wait time 1, 2;
  ipv4 { import all; export where source = RTS_STATIC; };
}
protocol bgp far {
  local ${BIRD_FAR_IP} as ${BIRD_AS};
  neighbor ${NODE_FAR_IP} as 64512;
  multihop;
  passive on;
  hold time 9;
  error wait time 1, 2;
  ipv4 { import all; export none; };
}
`;

interface Peer {
  address: string;
  state: string;
}

interface KernelRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  metric?: number;
}

describe.skipIf(skip)("ocelot node run: route priority and reachableBy (BIRD)", () => {
  let lab: NodeLab;
  let bird: BirdPeer;
  const peer = (address: string) =>
    peerStatus<Peer>(lab.socket()).find((p) => p.address === address);
  /** Every kernel route to dst in the node's main table (any protocol, any metric). */
  const kernel = (dst: string) =>
    (lab.nodes[0] as MeshNode).ns.ipJson<KernelRoute[]>("route", "show", "table", "main", dst);
  const farPeer = (reachableBy?: string) =>
    lab.apply("BGPPeer", "far", {
      peerIP: BIRD_FAR_IP,
      asNumber: BIRD_AS,
      keepaliveTime: "3s",
      // Sourced from the address toward the gateway (the node's IP is on the other link).
      sourceAddress: "None",
      ...(reachableBy ? { reachableBy } : {}),
    });

  beforeAll(async () => {
    lab = new NodeLab("routeprio");
    await lab.apply("IPPool", "pods", { cidr: "10.244.0.0/16", blockSize: 26, natOutgoing: false });
    await lab.apply("BGPPeer", "tor", { peerIP: BIRD_IP, asNumber: BIRD_AS, keepaliveTime: "3s" });
    await farPeer();
    const ns = lab.node("rpn", "rp-node", NODE_IP);
    const birdNs = lab.netns("rpb");
    const router = lab.netns("rpr");
    link(ns, "eth0", `${NODE_IP}/24`, birdNs, "eth0", `${BIRD_IP}/24`);
    link(ns, "eth1", `${NODE_FAR_IP}/24`, router, "eth0", `${GATEWAY}/24`);
    link(router, "eth1", `${ROUTER_FAR}/24`, birdNs, "eth1", `${BIRD_FAR_IP}/24`);
    router.exec("sysctl", "-qw", "net.ipv4.ip_forward=1");
    birdNs.ip("route", "add", `${NODE_FAR_IP.replace(/\.1$/, ".0")}/24`, "via", ROUTER_FAR);
    bird = lab.peers.startBird(birdNs, "bird", birdConf);
    await lab.start();
  });

  afterAll(async () => {
    await lab?.close();
  });

  it("installs the ToR's route with Calico's normal route priority, 1024, as its metric", async () => {
    await waitFor(
      "the ToR's route in the kernel",
      () => peer(BIRD_IP)?.state === "Established" && kernel(OUTSIDE).length > 0,
      60_000,
      200,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(peer(BIRD_IP))}\n${bird.log()}`);
    });
    expect(kernel(OUTSIDE)).toEqual([
      expect.objectContaining({ dst: OUTSIDE, gateway: BIRD_IP, protocol: "201", metric: 1024 }),
    ]);
  });

  it("moves the route to a new ipv4NormalRoutePriority, leaving none at the old metric", async () => {
    await lab.apply("BGPConfiguration", "default", { ipv4NormalRoutePriority: 3000 });
    await waitFor(
      "the route at metric 3000 only",
      () => {
        const r = kernel(OUTSIDE);
        return r.length === 1 && r[0]?.metric === 3000;
      },
      60_000,
      200,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(kernel(OUTSIDE))}`);
    });
    expect(kernel(OUTSIDE)).toEqual([
      expect.objectContaining({ gateway: BIRD_IP, protocol: "201", metric: 3000 }),
    ]);
    // The session was not reset for it.
    expect(lab.nodes[0]?.daemon?.log).toMatch(/Route metric changed: moving our kernel routes/);
    expect(peer(BIRD_IP)?.state).toBe("Established");
  });

  it("a peer behind a gateway: unreachable without reachableBy; with it, a host route via the gateway and the session up; gone with it", async () => {
    // Control: the far peer has no route, so no session (the ToR's has long been up).
    expect(kernel(`${BIRD_FAR_IP}/32`)).toEqual([]);
    expect(peer(BIRD_FAR_IP)?.state).not.toBe("Established");
    await farPeer(GATEWAY);
    await waitFor(
      "the far peer Established through the gateway",
      () => peer(BIRD_FAR_IP)?.state === "Established",
      60_000,
      200,
    ).catch((e) => {
      throw new Error(
        `${(e as Error).message}: ${JSON.stringify(peer(BIRD_FAR_IP))} ${JSON.stringify(kernel(`${BIRD_FAR_IP}/32`))}\n${bird.log()}`,
      );
    });
    const host = kernel(`${BIRD_FAR_IP}/32`);
    expect(host).toEqual([
      expect.objectContaining({ dst: BIRD_FAR_IP, gateway: GATEWAY, dev: "eth1", protocol: "201" }),
    ]);
    // confd's BIRD static route carries no krt_metric: metric 0, not the normal priority.
    expect(host[0]?.metric ?? 0).toBe(0);
    await farPeer();
    await waitFor(
      "the host route removed",
      () => kernel(`${BIRD_FAR_IP}/32`).length === 0,
      60_000,
      200,
    );
    // The ToR's route stayed where it was.
    expect(kernel(OUTSIDE)).toEqual([expect.objectContaining({ metric: 3000 })]);
  });
});
