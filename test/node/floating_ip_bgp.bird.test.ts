// A floating IP's host route announced over real BGP sessions: the real `ocelot node run --ip
// --ip6` and BIRD 2 as an iBGP ToR on a direct link (one IPv4 and one IPv6 session, as Calico's
// bird/bird6), pod A on the node (10.66.0.5, fd00:66::5) with the ipNATs 203.0.113.5 and
// 2001:db8:ff::5, each inside a disabled IPPool (Calico announces a floating IP only inside a
// pool). With Calico's default (FelixConfiguration floatingIPs not set) BIRD learns the node's
// blocks and no floating IP; with `floatingIPs: Enabled` the /32 and the /128 reach BIRD's RIB
// over the sessions (`birdc show route`), BIRD installs them in its kernel and pings from its
// namespace to both floating IPs are answered by A (DNAT on the node; A's echo replies counted);
// the change reaches BIRD well before the daemon's 60 s resync would bring it; without the
// ipNATs both are withdrawn.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { link, type Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type BirdPeer, peersUnavailableReason } from "../helpers/peers.js";
import { addPod, echoRepliesSent, ping } from "../helpers/pods.js";
import { putAffinity, putPool } from "../ipam/helpers.js";
import { daemonTestsUnavailable, type NodeProcess, startNode } from "./harness.js";
import { NodeLab, V3 } from "./node_lab.js";

const skip = skipWithReason(
  "node run floating IP announcement with BIRD",
  daemonTestsUnavailable() ?? peersUnavailableReason(["bird"]),
);

const NODE = "fipnode";
const NODE_IP = "192.0.2.66";
const BIRD_IP = "192.0.2.67";
const NODE_IP6 = "2001:db8:66::1";
const BIRD_IP6 = "2001:db8:66::2";
const POD_IFACE = "oclfipbgp0005";
const POD_IP = "10.66.0.5";
const POD_IP6 = "fd00:66::5";
const BLOCK = "10.66.0.0/26";
const BLOCK6 = "fd00:66::/122";
const FLOATING = "203.0.113.5";
const FLOATING6 = "2001:db8:ff::5";

const birdConf = `
log "@DIR@/bird.log" all;
router id ${BIRD_IP};
protocol device { scan time 1; }
protocol kernel k4 { ipv4 { import none; export all; }; }
protocol kernel k6 { ipv6 { import none; export all; }; }
protocol bgp tor4 {
  local ${BIRD_IP} as 64512; neighbor ${NODE_IP} as 64512;
  direct; passive on; hold time 9; error wait time 1, 2;
  ipv4 { gateway direct; import all; export none; };
}
protocol bgp tor6 {
  local ${BIRD_IP6} as 64512; neighbor ${NODE_IP6} as 64512;
  direct; passive on; hold time 9; error wait time 1, 2;
  ipv6 { gateway direct; import all; export none; };
}
`;

describe.skipIf(skip)("ocelot node run: a floating IP's /32 and /128 over BGP to BIRD", () => {
  let lab: NodeLab;
  let node: Netns;
  let tor: Netns;
  let pod: Netns;
  let bird: BirdPeer;
  let daemon: NodeProcess | undefined;

  const wep = (nats: boolean) =>
    lab.client.write("apply", {
      apiVersion: V3,
      kind: "WorkloadEndpoint",
      metadata: { name: "fipnode-k8s-a-eth0", namespace: "default" },
      spec: {
        node: NODE,
        orchestrator: "k8s",
        pod: "a",
        endpoint: "eth0",
        interfaceName: POD_IFACE,
        ipNetworks: [`${POD_IP}/32`, `${POD_IP6}/128`],
        ...(nats
          ? {
              ipNATs: [
                { internalIP: POD_IP, externalIP: FLOATING },
                { internalIP: POD_IP6, externalIP: FLOATING6 },
              ],
            }
          : {}),
      },
    });

  beforeAll(async () => {
    lab = new NodeLab("fipbgp");
    await lab.apply("BGPConfiguration", "default", { nodeToNodeMeshEnabled: false });
    await lab.apply("BGPPeer", "tor4", { peerIP: BIRD_IP, asNumber: 64512 });
    await lab.apply("BGPPeer", "tor6", { peerIP: BIRD_IP6, asNumber: 64512 });
    await putPool(lab.store, "pool", "10.66.0.0/16", { blockSize: 26 });
    await putPool(lab.store, "pool6", "fd00:66::/64", { blockSize: 122 });
    await putPool(lab.store, "floating", "203.0.113.0/24", { disabled: true });
    await putPool(lab.store, "floating6", "2001:db8:ff::/120", { disabled: true });
    await putAffinity(lab.store, NODE, BLOCK);
    await putAffinity(lab.store, NODE, BLOCK6);
    node = lab.netns("fbn");
    tor = lab.netns("fbt");
    link(node, "eth0", `${NODE_IP}/24`, tor, "eth0", `${BIRD_IP}/24`);
    node.ip("-6", "addr", "add", `${NODE_IP6}/64`, "dev", "eth0", "nodad");
    tor.ip("-6", "addr", "add", `${BIRD_IP6}/64`, "dev", "eth0", "nodad");
    // A default route: proxy ARP answers the pod's gateway 169.254.1.1 only when it is routable.
    node.ip("route", "add", "default", "via", BIRD_IP);
    pod = addPod(node, "fbp", POD_IFACE, POD_IP, POD_IP6);
    await wep(true);
    daemon = await startNode(node, [
      ...["--nodename", NODE, "--ip", `${NODE_IP}/24`, "--ip6", `${NODE_IP6}/64`],
      ...["--datastore", lab.url, "--status-socket", join(lab.dir, "fipnode.sock")],
      ...["--log-level", "debug"],
    ]);
    bird = lab.peers.startBird(tor, "bird", birdConf);
  });

  afterAll(async () => {
    await daemon?.stop();
    pod?.destroy();
    await lab?.close();
  });

  /** Whether BIRD holds `prefix` learned over `proto` (birdc fails on a prefix it lacks). */
  const learned = (prefix: string, proto: string) => {
    try {
      return bird.cmd("show", "route", prefix, "protocol", proto).includes(prefix);
    } catch {
      return false;
    }
  };
  const why = () =>
    `\nBIRD: ${bird.cmd("show", "route", "all")}\nnode log tail:\n${daemon?.log.slice(-6000)}`;
  const fail = (e: unknown): never => {
    throw new Error(`${(e as Error).message}${why()}`);
  };

  it("with Calico's default (floatingIPs not set): the blocks reach BIRD, the floating IPs do not", async () => {
    await waitFor(
      "both blocks in BIRD",
      () => learned(BLOCK, "tor4") && learned(BLOCK6, "tor6"),
    ).catch(fail);
    expect(learned(`${FLOATING}/32`, "tor4")).toBe(false);
    expect(learned(`${FLOATING6}/128`, "tor6")).toBe(false);
  });

  it("floatingIPs: Enabled: the /32 and /128 reach BIRD's RIB and its pings reach A through them", async () => {
    const t0 = Date.now();
    await lab.apply("FelixConfiguration", "default", { floatingIPs: "Enabled" });
    await waitFor(
      "the floating /32 and /128 in BIRD",
      () => learned(`${FLOATING}/32`, "tor4") && learned(`${FLOATING6}/128`, "tor6"),
    ).catch(fail);
    const took = (Date.now() - t0) / 1000;
    // Before the daemon re-rendered on a FelixConfiguration change, the next full resync (60 s)
    // announced them: 59.6 s seen here.
    expect(took).toBeLessThan(30);
    const rib = bird.cmd("show", "route", `${FLOATING}/32`, "all");
    const rib6 = bird.cmd("show", "route", `${FLOATING6}/128`, "all");
    console.log(`BIRD's RIB:\n${rib}\n${rib6}`);
    expect(rib).toMatch(new RegExp(`via ${NODE_IP.replaceAll(".", "\\.")} on eth0`));
    expect(rib6).toContain(`via ${NODE_IP6} on eth0`);
    // BIRD's kernel has them; the ToR's pings reach A through the node's DNAT.
    await waitFor("BIRD's kernel route to the floating IP", () =>
      tor.ip("route", "show", `${FLOATING}/32`).includes(NODE_IP),
    );
    await waitFor("BIRD's kernel route to the IPv6 floating IP", () =>
      tor.ip("-6", "route", "show", `${FLOATING6}/128`).includes(NODE_IP6),
    );
    const before = echoRepliesSent(pod);
    expect(ping(tor, FLOATING, true)).toBe(true);
    expect(echoRepliesSent(pod) - before).toBeGreaterThanOrEqual(1);
    expect(ping(tor, FLOATING6, true)).toBe(true);
    console.log(
      `floating /32 and /128 in BIRD ${took.toFixed(1)} s after floatingIPs: Enabled; the ToR's pings to both answered by A (load ${
        node.exec("cat", "/proc/loadavg").split(" ")[0]
      })`,
    );
  });

  it("without the ipNATs both are withdrawn, the blocks stay", async () => {
    await wep(false);
    await waitFor(
      "the floating /32 and /128 withdrawn from BIRD",
      () => !learned(`${FLOATING}/32`, "tor4") && !learned(`${FLOATING6}/128`, "tor6"),
    ).catch(fail);
    expect(learned(BLOCK, "tor4") && learned(BLOCK6, "tor6")).toBe(true);
  });
});
