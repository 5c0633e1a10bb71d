// Calico's local workload peering with the real `ocelot node run` and BIRD 2 inside a pod (a
// nested cluster's speaker, as Calico's bgp-to-workload guide sets it up): the `default`
// BGPConfiguration's localWorkloadPeeringIPV4 169.254.0.179 and a BGPPeer whose
// localWorkloadSelector picks the pod by label (`color == 'red'`, AS 65030, a BGPFilter accepting
// the nested pool). The agent puts 169.254.0.179/32 on the pod's host interface; BIRD, in the
// pod's namespace with the pod's /32 and a default route via 169.254.1.1, connects to it (the
// node is passive) and announces 10.123.30.0/26; the node installs it in its kernel via the pod,
// and BIRD learns the node's block back. Relabelled `color: blue`, the pod is no peer: the session
// goes, the route leaves the kernel and the address its interface; relabelled red, all comes
// back. Everything is read back from the kernel (`ip -j route`, `ip -j addr`) and from birdc.
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
const BLOCK = "10.65.30.0/26";
const NESTED = "10.123.30.0/26";

const birdConf = `
log "@DIR@/bird.log" all;
router id ${POD_IP};
protocol device { scan time 1; }
protocol kernel { ipv4 { import all; export none; }; learn; scan time 1; }
protocol static s4 { ipv4; route ${NESTED} blackhole; }
protocol bgp parent {
  local ${POD_IP} as ${POD_AS};
  neighbor ${PEERING_IP} as ${NODE_AS};
  multihop;
  hold time 9; connect delay time 1; connect retry time 1; error wait time 1, 5;
  ipv4 { import all; export where source = RTS_STATIC; };
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
        ipNetworks: [`${POD_IP}/32`],
      },
    });

  beforeAll(async () => {
    lab = new NodeLab("lwpeer");
    await lab.apply("BGPConfiguration", "default", {
      nodeToNodeMeshEnabled: false,
      localWorkloadPeeringIPV4: PEERING_IP,
    });
    await lab.apply("BGPFilter", "accept-nested", {
      importV4: [{ action: "Accept", matchOperator: "In", cidr: "10.123.0.0/16" }],
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
    pod = addPod(node, "lwp", POD_IFACE, POD_IP);
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
  const established = () => bird.state("parent") === "Established";
  /** BIRD's route to the node's block (learned over the session), "" when it has none. */
  const birdHasBlock = () => {
    try {
      return bird.cmd("show", "route", BLOCK, "protocol", "parent").includes(BLOCK);
    } catch {
      return false;
    }
  };
  const why = () =>
    `\nBIRD: ${bird.cmd("show", "protocols", "all", "parent")}\nnode log tail:\n${daemon?.log.slice(-6000)}`;

  it("peers with the selected pod through the peering address and installs what it announces", async () => {
    await waitFor("the peering address on the pod's host interface", () =>
      addresses().some((a) => a.local === PEERING_IP),
    ).catch((e) => {
      throw new Error(`${(e as Error).message}${why()}`);
    });
    expect(addresses()).toEqual([
      expect.objectContaining({ local: PEERING_IP, prefixlen: 32, scope: "link" }),
    ]);
    // The pod reaches it (ICMP through the host side of its veth).
    expect(ping(pod, PEERING_IP, true)).toBe(true);
    const t0 = Date.now();
    await waitFor("BIRD's session to the node Established", established).catch((e) => {
      throw new Error(`${(e as Error).message}${why()}`);
    });
    const route = await waitFor("the nested block in the node's kernel", nestedRoute).catch((e) => {
      throw new Error(`${(e as Error).message}${why()}`);
    });
    expect(route).toMatchObject({ gateway: POD_IP, dev: POD_IFACE });
    await waitFor("BIRD to learn the node's block", birdHasBlock);
    console.log(
      `local workload peer: Established and ${NESTED} via ${POD_IP} in the node's kernel ${((Date.now() - t0) / 1000).toFixed(1)} s after the address was seen (load ${
        node.exec("cat", "/proc/loadavg").split(" ")[0]
      })`,
    );
  });

  it("drops the session, the route and the address when the pod is no longer selected, and takes it back", async () => {
    const t0 = Date.now();
    const lap = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
    await wep("blue");
    await waitFor("the session to end", () => !established()).catch((e) => {
      throw new Error(`${(e as Error).message}${why()}`);
    });
    const ended = lap();
    await waitFor("the nested block to leave the node's kernel", () => nestedRoute() === undefined);
    const withdrawn = lap();
    await waitFor("the peering address to leave the interface", () => addresses().length === 0);
    const removed = lap();
    // The kernel flushes the pod's own route with the interface's last IPv4 address; the agent
    // puts it back in the same pass.
    await waitFor("the pod's own route back", () =>
      routes(node, "202").some((r) => r.dst === POD_IP && r.dev === POD_IFACE),
    );
    console.log(
      `relabelled blue: session ended ${ended}, route gone ${withdrawn}, address gone ${removed}, pod route there ${lap()} after the write`,
    );
    expect(routes(node, "201").map((r) => r.dst)).not.toContain(NESTED);

    const t1 = Date.now();
    await wep("red");
    await waitFor("the address back", () => addresses().length === 1);
    // The pod's own route is there (put back after the flush, long before this).
    expect(routes(node, "202").find((r) => r.dst === POD_IP)).toMatchObject({ dev: POD_IFACE });
    await waitFor("the session Established again", established).catch((e) => {
      throw new Error(`${(e as Error).message}${why()}`);
    });
    expect(await waitFor("the nested block back in the kernel", nestedRoute)).toMatchObject({
      gateway: POD_IP,
      dev: POD_IFACE,
    });
    console.log(
      `relabelled red: session Established and ${NESTED} in the kernel again ${((Date.now() - t1) / 1000).toFixed(1)} s after the write`,
    );
    expect(addresses().map((a) => a.local)).toEqual([PEERING_IP]);
  });
});
