// BFD through the datastore: the real `ocelot node run` on the embedded store is given a BGPPeer
// with the Ocelot extension `spec.bfd` toward BIRD 2, and FRR's bfdd answers BFD on BIRD's
// address. BFD comes Up beside the BGP session; when BFD packets toward the node are dropped
// (iptables, UDP 3784 only: TCP still flows) BFD goes Down, the BGP session is dropped and BIRD's
// route leaves the node's kernel long before the 90 s hold time, and the session is held down
// while BFD is Down; when the packets flow again both come back. Removing spec.bfd stops the
// node's BFD session without resetting BGP.
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { link, type Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { frrBfdConf, peersUnavailableReason } from "../helpers/peers.js";
import { daemonTestsUnavailable, nodeStatus, routes } from "./harness.js";
import { NodeLab } from "./node_lab.js";

const skip = skipWithReason(
  "ocelot node run BGPPeer bfd with BIRD and FRR bfdd",
  daemonTestsUnavailable() ??
    peersUnavailableReason(["bird", "frr"]) ??
    (existsSync("/usr/lib/frr/bfdd") ? undefined : "/usr/lib/frr/bfdd not installed"),
);

const NODE_IP = "10.97.16.1";
const BIRD_IP = "10.97.16.2";
const BIRD_AS = 65016;
const ROUTE = "10.99.16.0/24";

const birdConf = `
log "@DIR@/bird.log" all;
router id ${BIRD_IP};
protocol device { }
protocol static s4 { ipv4; route ${ROUTE} blackhole; }
protocol bgp node {
  local ${BIRD_IP} as ${BIRD_AS};
  neighbor ${NODE_IP} as 64512;
  hold time 90;
  connect delay time 1; connect retry time 1;
  error wait time 1, 2;
  ipv4 { import all; export where source = RTS_STATIC; };
}
`;

const bfddConf = frrBfdConf([{ peer: NODE_IP, local: BIRD_IP }]);

interface Status {
  peers: { address: string; state: string; heldDown?: string[]; establishedTransitions: number }[];
  bfd?: { peer: string; state: string }[];
}

describe.skipIf(skip)("ocelot node run: BGPPeer bfd with BIRD and FRR's bfdd", () => {
  let lab: NodeLab;
  let peerNs: Netns;
  const socket = () => lab.socket();
  const status = (): Status => nodeStatus<Status>(socket());
  const bgp = () => status().peers.find((p) => p.address === BIRD_IP);
  const bfdState = () => status().bfd?.find((b) => b.peer === BIRD_IP)?.state;
  const installed = () => routes(lab.nodes[0]?.ns as Netns, "201").some((r) => r.dst === ROUTE);
  const applyPeer = (bfd: boolean) =>
    lab.apply("BGPPeer", "tor", {
      peerIP: BIRD_IP,
      asNumber: BIRD_AS,
      ...(bfd ? { bfd: { minTxInterval: "300ms", minRxInterval: "300ms", multiplier: 3 } } : {}),
    });

  beforeAll(async () => {
    lab = new NodeLab("nodebfd");
    await applyPeer(true);
    const ns = lab.node("nbn", "bfd-node", NODE_IP);
    peerNs = lab.netns("nbp");
    link(ns, "eth0", `${NODE_IP}/24`, peerNs, "eth0", `${BIRD_IP}/24`);
    lab.peers.startFrrBfd(peerNs, "frr", bfddConf);
    lab.peers.startBird(peerNs, "bird", birdConf);
    await lab.start();
  });

  afterAll(async () => {
    await lab?.close();
  });

  it("runs BFD beside the BGP session: both Up, BIRD's route installed", async () => {
    await waitFor("BGP Established", () => bgp()?.state === "Established");
    await waitFor("BFD Up", () => bfdState() === "Up");
    await waitFor(`${ROUTE} in the node's kernel`, installed);
  });

  it("a BFD cut drops the session at once and holds it down until BFD is Up again", async () => {
    const rule = ["OUTPUT", "-p", "udp", "--dport", "3784", "-d", NODE_IP, "-j", "DROP"];
    peerNs.exec("iptables", "-I", ...rule);
    const t0 = Date.now();
    try {
      await waitFor(`${ROUTE} gone from the node's kernel`, () => !installed(), undefined, 20);
      const ms = Date.now() - t0;
      console.log(`node run: BFD cut to BIRD's route gone from the kernel: ${ms} ms (hold 90 s)`);
      expect(ms).toBeLessThan(60_000);
      expect(bgp()?.heldDown).toEqual(["bfd"]);
      const until = Date.now() + 5000;
      while (Date.now() < until) {
        expect(bgp()?.state).not.toBe("Established");
        await new Promise((r) => setTimeout(r, 500));
      }
    } finally {
      peerNs.exec("iptables", "-D", ...rule);
    }
    await waitFor("BFD Up again", () => bfdState() === "Up");
    await waitFor("BGP Established again", () => bgp()?.state === "Established");
    await waitFor(`${ROUTE} back`, installed);
    // Established with no hold left. Waited for, not read once: at a high load a late BFD packet
    // can flap the new BFD session once more, and the hold then comes and goes with it (seen once
    // in a full suite run at load ~12); a hold that never lifts still fails here.
    await waitFor(
      "BGP Established with no hold",
      () => bgp()?.state === "Established" && bgp()?.heldDown === undefined,
    );
  });

  it("removing spec.bfd stops BFD without a BGP reset", async () => {
    const before = bgp()?.establishedTransitions;
    await applyPeer(false);
    await waitFor("no BFD session", () => bfdState() === undefined);
    expect(bgp()?.state).toBe("Established");
    expect(bgp()?.establishedTransitions).toBe(before);
  });
});
