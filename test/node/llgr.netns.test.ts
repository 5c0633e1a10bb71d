// Calico's BGPPeer `restartMode: LongLivedGracefulRestart` applied by the real `ocelot node run`
// (embedded store) against FRR 8 in its own namespace: FRR receives our long-lived graceful
// restart capability (RFC 9494; `maxRestartTime` 1h is its stale time); FRR's bgpd is
// SIGKILLed and, past its restart time (4 s), its route stays in the node's kernel as LLGR_STALE.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { link, type Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type FrrPeer, peersUnavailableReason } from "../helpers/peers.js";
import { daemonTestsUnavailable, peerStatus, routes } from "./harness.js";
import { NodeLab } from "./node_lab.js";

const skip = skipWithReason(
  "ocelot node run BGPPeer restartMode LongLivedGracefulRestart with FRR",
  daemonTestsUnavailable() ?? peersUnavailableReason(["frr"]),
);

const NODE_IP = "10.97.61.1";
const FRR_IP = "10.97.61.2";
const FRR_AS = 65061;
const NET = "10.99.61.0/24";

const frrConf = `frr defaults traditional
hostname tor
!
router bgp ${FRR_AS}
 bgp router-id ${FRR_IP}
 no bgp ebgp-requires-policy
 no bgp network import-check
 bgp graceful-restart
 bgp graceful-restart restart-time 4
 bgp graceful-restart preserve-fw-state
 bgp long-lived-graceful-restart stale-time 600
 neighbor ${NODE_IP} remote-as 64512
 neighbor ${NODE_IP} timers 3 9
 neighbor ${NODE_IP} timers connect 1
 neighbor ${NODE_IP} advertisement-interval 0
 address-family ipv4 unicast
  network ${NET}
 exit-address-family
exit
!
`;

interface Peer {
  address: string;
  state: string;
}

describe.skipIf(skip)("ocelot node run: BGPPeer restartMode LongLivedGracefulRestart", () => {
  let lab: NodeLab;
  let frr: FrrPeer;
  let frrNs: Netns;
  const tor = () => peerStatus<Peer>(lab.socket()).find((p) => p.address === FRR_IP);
  const installed = () =>
    routes(lab.nodes[0]?.ns as Netns, "201").some((r) => r.dst === NET && r.gateway === FRR_IP);

  beforeAll(async () => {
    lab = new NodeLab("llgr-node");
    await lab.apply("BGPConfiguration", "default", { nodeToNodeMeshEnabled: false });
    await lab.apply("BGPPeer", "tor", {
      peerIP: FRR_IP,
      asNumber: FRR_AS,
      keepaliveTime: "3s",
      restartMode: "LongLivedGracefulRestart",
      maxRestartTime: "1h",
    });
    const ns = lab.node("lln", "ll-node", NODE_IP);
    frrNs = lab.netns("llt");
    link(ns, "eth0", `${NODE_IP}/24`, frrNs, "eth0", `${FRR_IP}/24`);
    frr = lab.peers.startFrr(frrNs, "frr", frrConf);
    await lab.start();
  });

  afterAll(async () => {
    await lab?.close();
  });

  it("FRR gets our LLGR capability; killed, its route stays LLGR_STALE past its restart time", async () => {
    await waitFor("the session to FRR Established", () => tor()?.state === "Established").catch(
      (e) => {
        throw new Error(`${(e as Error).message}\n${lab.nodes[0]?.daemon?.log}`);
      },
    );
    await waitFor("FRR sees the node", () => frr.state(NODE_IP) === "Established");
    await waitFor("FRR's route in the node's kernel", installed);
    const caps = frr.vtyshJson<Record<string, { neighborCapabilities?: Record<string, unknown> }>>(
      `show bgp neighbors ${NODE_IP} json`,
    )[NODE_IP]?.neighborCapabilities;
    // FRR 8.4 shows the capability, not the stale time it received.
    expect(caps?.longLivedGracefulRestart).toBe("advertisedAndReceived");

    lab.peers.signal(frr.bgpdPid, "SIGKILL");
    await waitFor("FRR's bgpd gone", () => !frrNs.pids().includes(frr.bgpdPid));
    const daemon = lab.nodes[0]?.daemon;
    await waitFor(
      "the long-lived phase",
      () => daemon?.has(/keeping its routes as LLGR_STALE/) === true,
    );
    const line = daemon?.lines.find((l) => /keeping its routes as LLGR_STALE/.test(l.msg));
    expect(line).toMatchObject({ kept: 1, removedNoLlgr: 0, longLivedStaleTime: 600 });
    expect(installed()).toBe(true);
  });
});
