// Calico's local workload peering with the real `ocelot node run` and BIRD 2 inside a pod (a
// nested cluster's speaker, as Calico's bgp-to-workload guide sets it up), dual stack: the
// `default` BGPConfiguration's localWorkloadPeeringIPV4 169.254.0.179 and
// localWorkloadPeeringIPV6 fdc9:9723:9bc::1, and a BGPPeer whose localWorkloadSelector picks the
// pod by label (`color == 'red'`, AS 65030, a BGPFilter accepting the nested pools). The agent
// puts both addresses on the pod's host interface; BIRD, in the pod's namespace with the pod's
// /32 and /128 and default routes via 169.254.1.1 and the host side's link-local address,
// connects to each (the node is passive) and announces 10.123.30.0/26 and fd00:123:30::/64; the
// node installs them in its kernel via the pod, and BIRD learns the node's block back.
// Relabelled `color: blue`, the pod is no peer: both sessions go, the routes leave the kernel and
// the addresses its interface (the pod's own route, which the kernel flushes with the last IPv4
// address, is put back); relabelled red, all comes back. Everything is read back from the kernel (`ip -j route`, `ip -j addr`) and from birdc.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addUplink } from "../helpers/cni.js";
import { type Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type BirdPeer, peersUnavailableReason } from "../helpers/peers.js";
import { addPod, ping } from "../helpers/pods.js";
import { putAffinity, putPool } from "../ipam/helpers.js";
import { daemonTestsUnavailable, type NodeProcess, routes, startNode } from "./harness.js";
import { NodeLab, V3 } from "./node_lab.js";

const skip = skipWithReason(
  "node run local workload peering with BIRD in a pod",
  daemonTestsUnavailable() ?? peersUnavailableReason(["bird"]),
);

const NODE = "lwnode";
const NODE_IP = "192.0.2.30"; // addUplink's default route goes via 192.0.2.1
const NODE_AS = 64512;
const POD_AS = 65030;
const POD_IP = "10.65.30.5";
const POD_IFACE = "ocllwpod30";
const PEERING_IP = "169.254.0.179";
const POD_IP6 = "fd00:65:30::5";
const PEERING_IP6 = "fdc9:9723:9bc::1";
const NESTED6 = "fd00:123:30::/64";
const BLOCK = "10.65.30.0/26";
const NESTED = "10.123.30.0/26";

const birdConf = `
log "@DIR@/bird.log" all;
router id ${POD_IP};
protocol device { scan time 1; }
protocol kernel { ipv4 { import all; export none; }; learn; scan time 1; }
protocol static s4 { ipv4; route ${NESTED} blackhole; }
protocol static s6 { ipv6; route ${NESTED6} blackhole; }
protocol bgp parent {
  local ${POD_IP} as ${POD_AS};
  neighbor ${PEERING_IP} as ${NODE_AS};
  multihop;
  hold time 9; connect delay time 1; connect retry time 1; error wait time 1, 5;
  ipv4 { import all; export where source = RTS_STATIC; };
}
protocol bgp parent6 {
  local ${POD_IP6} as ${POD_AS};
  neighbor ${PEERING_IP6} as ${NODE_AS};
  multihop;
  hold time 9; connect delay time 1; connect retry time 1; error wait time 1, 5;
  ipv6 { import none; export where source = RTS_STATIC; };
}
`;

describe.skipIf(skip)("ocelot node run: BGP to a local workload (localWorkloadSelector)", () => {
  let lab: NodeLab;
  let node: Netns;
  let pod: Netns;
  let bird: BirdPeer;
  let daemon: NodeProcess | undefined;

  const wep = (color: string) =>
    lab.client.write("apply", {
      apiVersion: V3,
      kind: "WorkloadEndpoint",
      metadata: { name: "lwnode-k8s-nested-eth0", namespace: "default", labels: { color } },
      spec: {
        node: NODE,
        orchestrator: "k8s",
        pod: "nested",
        endpoint: "eth0",
        interfaceName: POD_IFACE,
        ipNetworks: [`${POD_IP}/32`, `${POD_IP6}/128`],
      },
    });

  beforeAll(async () => {
    lab = new NodeLab("lwpeer");
    await lab.apply("BGPConfiguration", "default", {
      nodeToNodeMeshEnabled: false,
      localWorkloadPeeringIPV4: PEERING_IP,
      localWorkloadPeeringIPV6: PEERING_IP6,
    });
    await lab.apply("BGPFilter", "accept-nested", {
      importV4: [{ action: "Accept", matchOperator: "In", cidr: "10.123.0.0/16" }],
      importV6: [{ action: "Accept", matchOperator: "In", cidr: "fd00:123::/32" }],
    });
    await lab.apply("BGPPeer", "peer-to-workloads", {
      localWorkloadSelector: "color == 'red'",
      asNumber: POD_AS,
      filters: ["accept-nested"],
    });
    await putPool(lab.store, "pool", "10.65.0.0/16", { blockSize: 26 });
    await putAffinity(lab.store, NODE, BLOCK);
    node = lab.netns("lwn");
    addUplink(node, `${NODE_IP}/24`);
    pod = addPod(node, "lwp", POD_IFACE, POD_IP, POD_IP6);
    pod.ip("link", "set", "lo", "up");
    await wep("red");
    daemon = await startNode(node, [
      ...["--nodename", NODE, "--ip", `${NODE_IP}/24`, "--datastore", lab.url],
      ...["--status-socket", join(lab.dir, "lwnode.sock"), "--log-level", "debug"],
    ]);
    bird = lab.peers.startBird(pod, "bird", birdConf);
  });

  afterAll(async () => {
    await daemon?.stop();
    // The pod's namespace and BIRD (lab.peers) go with the lab.
    pod?.destroy();
    await lab?.close();
  });

  const addresses = () =>
    node
      .ipJson<{ addr_info?: { local: string; prefixlen: number; scope: string }[] }[]>(
        "addr",
        "show",
        "dev",
        POD_IFACE,
      )
      .flatMap((l) => l.addr_info ?? [])
      .filter((a) => !a.local.startsWith("fe80"));
  const nestedRoute = () => routes(node, "201").find((r) => r.dst === NESTED);
  const nested6Route = () =>
    node
      .ipJson<{ dst: string; gateway?: string; dev?: string }[]>(
        "-6",
        "route",
        "show",
        "proto",
        "201",
      )
      .find((r) => r.dst === NESTED6);
  const established = () =>
    bird.state("parent") === "Established" && bird.state("parent6") === "Established";
  const bothDown = () =>
    bird.state("parent") !== "Established" && bird.state("parent6") !== "Established";
  /** BIRD's route to the node's block (learned over the session), "" when it has none. */
  const birdHasBlock = () => {
    try {
      return bird.cmd("show", "route", BLOCK, "protocol", "parent").includes(BLOCK);
    } catch {
      return false;
    }
  };
  const why = () =>
    `\nBIRD: ${bird.cmd("show", "protocols", "all")}\nnode log tail:\n${daemon?.log.slice(-6000)}`;

  it("peers with the selected pod through the peering address and installs what it announces", async () => {
    await waitFor(
      "the peering addresses on the pod's host interface",
      () => addresses().length === 2,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}${why()}`);
    });
    expect(addresses()).toEqual([
      expect.objectContaining({ local: PEERING_IP, prefixlen: 32, scope: "link" }),
      // IPv6: the kernel derives the scope from the address (asked for link, as Felix does).
      expect.objectContaining({ local: PEERING_IP6, prefixlen: 128, nodad: true }),
    ]);
    // The pod reaches it (ICMP through the host side of its veth).
    expect(ping(pod, PEERING_IP, true)).toBe(true);
    const t0 = Date.now();
    await waitFor("BIRD's sessions (IPv4 and IPv6) to the node Established", established).catch(
      (e) => {
        throw new Error(`${(e as Error).message}${why()}`);
      },
    );
    const route = await waitFor("the nested block in the node's kernel", nestedRoute).catch((e) => {
      throw new Error(`${(e as Error).message}${why()}`);
    });
    expect(route).toMatchObject({ gateway: POD_IP, dev: POD_IFACE });
    expect(
      await waitFor("the nested IPv6 prefix in the node's kernel", nested6Route),
    ).toMatchObject({ gateway: POD_IP6, dev: POD_IFACE });
    await waitFor("BIRD to learn the node's block", birdHasBlock);
    console.log(
      `local workload peer: IPv4 and IPv6 sessions Established, ${NESTED} via ${POD_IP} and ${NESTED6} via ${POD_IP6} in the node's kernel ${((Date.now() - t0) / 1000).toFixed(1)} s after the address was seen (load ${
        node.exec("cat", "/proc/loadavg").split(" ")[0]
      })`,
    );
  });

  it("drops the session, the route and the address when the pod is no longer selected, and takes it back", async () => {
    const t0 = Date.now();
    const lap = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
    await wep("blue");
    await waitFor("both sessions to end", bothDown).catch((e) => {
      throw new Error(`${(e as Error).message}${why()}`);
    });
    const ended = lap();
    await waitFor(
      "the nested prefixes to leave the node's kernel",
      () => nestedRoute() === undefined && nested6Route() === undefined,
    );
    const withdrawn = lap();
    await waitFor("the peering address to leave the interface", () => addresses().length === 0);
    const removed = lap();
    // The kernel flushes the pod's own route with the interface's last IPv4 address; the agent
    // puts it back in the same pass.
    await waitFor("the pod's own route back", () =>
      routes(node, "202").some((r) => r.dst === POD_IP && r.dev === POD_IFACE),
    );
    console.log(
      `relabelled blue: sessions ended ${ended}, routes gone ${withdrawn}, address gone ${removed}, pod route there ${lap()} after the write`,
    );
    expect(routes(node, "201").map((r) => r.dst)).not.toContain(NESTED);

    const t1 = Date.now();
    await wep("red");
    await waitFor("the addresses back", () => addresses().length === 2);
    // The pod's own route is there (put back after the flush, long before this).
    expect(routes(node, "202").find((r) => r.dst === POD_IP)).toMatchObject({ dev: POD_IFACE });
    await waitFor("both sessions Established again", established).catch((e) => {
      throw new Error(`${(e as Error).message}${why()}`);
    });
    expect(await waitFor("the nested block back in the kernel", nestedRoute)).toMatchObject({
      gateway: POD_IP,
      dev: POD_IFACE,
    });
    expect(await waitFor("the nested IPv6 prefix back", nested6Route)).toMatchObject({
      gateway: POD_IP6,
      dev: POD_IFACE,
    });
    console.log(
      `relabelled red: both sessions Established and both prefixes in the kernel again ${((Date.now() - t1) / 1000).toFixed(1)} s after the write`,
    );
    expect(addresses().map((a) => a.local)).toEqual([PEERING_IP, PEERING_IP6]);
  });
});
