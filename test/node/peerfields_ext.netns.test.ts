// BGPPeer fields for graceful restart, ADD-PATH and max-prefix applied by the real `ocelot node
// run` (embedded store) against FRR in its own namespace: Calico's `maxRestartTime` is the
// restart time FRR receives in our graceful restart capability; the Ocelot extension `addPath`
// is negotiated (FRR sees our ADD-PATH send capability); the Ocelot extension `maxPrefixes`
// added to the BGPPeer later closes the session with Cease/1 (Maximum Number of Prefixes
// Reached, RFC 4486; inside a Hard Reset, RFC 8538) when FRR sends more, and the session stays
// down for its restart time.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { link, skipWithReason, waitFor } from "../helpers/netns.js";
import { type FrrPeer, peersUnavailableReason } from "../helpers/peers.js";
import { daemonTestsUnavailable, peerStatus } from "./harness.js";
import { NodeLab } from "./node_lab.js";

const skip = skipWithReason(
  "ocelot node run BGPPeer restart, ADD-PATH and max-prefix fields with FRR",
  daemonTestsUnavailable() ?? peersUnavailableReason(["frr"]),
);

const NODE_IP = "10.97.41.1";
const FRR_IP = "10.97.41.2";
const FRR_AS = 65041;
const NETS = Array.from({ length: 12 }, (_, i) => `10.99.${41 + i}.0/24`);

const frrConf = `frr defaults traditional
hostname tor
!
router bgp ${FRR_AS}
 bgp router-id ${FRR_IP}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor ${NODE_IP} remote-as 64512
 neighbor ${NODE_IP} timers 3 9
 neighbor ${NODE_IP} timers connect 1
 neighbor ${NODE_IP} advertisement-interval 0
 address-family ipv4 unicast
${NETS.map((n) => `  network ${n}`).join("\n")}
 exit-address-family
exit
!
`;

interface Peer {
  address: string;
  state: string;
  lastError?: { kind: string; code?: number; subcode?: number } | null;
  heldDown?: string[];
}

describe.skipIf(skip)(
  "ocelot node run: BGPPeer maxRestartTime, addPath, maxPrefixes with FRR",
  () => {
    let lab: NodeLab;
    let frr: FrrPeer;
    const status = () => peerStatus<Peer>(lab.socket());
    const tor = () => status().find((p) => p.address === FRR_IP);
    const apply = (extra: object) =>
      lab.apply("BGPPeer", "tor", {
        peerIP: FRR_IP,
        asNumber: FRR_AS,
        keepaliveTime: "3s",
        maxRestartTime: "45s",
        addPath: { send: 2 },
        ...extra,
      });
    const frrNeighbor = () =>
      frr.vtyshJson<Record<string, Record<string, unknown>>>(`show bgp neighbors ${NODE_IP} json`)[
        NODE_IP
      ] ?? {};

    beforeAll(async () => {
      lab = new NodeLab("peerfields-ext");
      await lab.apply("BGPConfiguration", "default", { nodeToNodeMeshEnabled: false });
      await apply({});
      const ns = lab.node("pxn", "px-node", NODE_IP);
      const frrNs = lab.netns("pxf");
      link(ns, "eth0", `${NODE_IP}/24`, frrNs, "eth0", `${FRR_IP}/24`);
      frr = lab.peers.startFrr(frrNs, "frr", frrConf);
      await lab.start();
    });

    afterAll(async () => {
      await lab?.close();
    });

    it("Established; FRR got our restart time of 45 s and our ADD-PATH send capability", async () => {
      await waitFor(
        "the session to FRR Established",
        () => tor()?.state === "Established",
        30_000,
        200,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}\n${lab.nodes[0]?.daemon?.log}`);
      });
      await waitFor("FRR sees the node", () => frr.state(NODE_IP) === "Established", 15_000);
      const n = frrNeighbor();
      const gr = n.gracefulRestartInfo as
        | { timers?: { receivedRestartTimer?: number } }
        | undefined;
      expect(gr?.timers?.receivedRestartTimer).toBe(45);
      const caps = n.neighborCapabilities as { addPath?: Record<string, Record<string, boolean>> };
      const v4 = caps.addPath?.ipv4Unicast ?? {};
      expect(v4.txReceived).toBe(true);
    });

    it("maxPrefixes added later: FRR's 12 prefixes against a limit of 5 close the session with Cease/1 and hold it down", async () => {
      await waitFor(
        "FRR's prefixes at the node",
        () => (tor() as unknown as { prefixes?: { received?: number } })?.prefixes?.received === 12,
        15_000,
      );
      await apply({ maxPrefixes: { limit: 5, restartTime: "10m" } });
      await waitFor(
        "the session closed for too many prefixes",
        () => {
          const p = tor();
          return (
            p?.state !== "Established" &&
            p?.lastError?.kind === "NotificationSent" &&
            p.lastError.code === 6 &&
            // Cease/1, inside a Hard Reset (6/9) where the N bit was negotiated (RFC 8538 §3).
            (p.lastError.subcode === 1 || p.lastError.subcode === 9) &&
            (p.heldDown ?? []).includes("maxPrefix")
          );
        },
        30_000,
        200,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}: ${JSON.stringify(tor())}`);
      });
      const fromFrr = JSON.stringify(frrNeighbor());
      expect(fromFrr, fromFrr).toMatch(/Maximum Number of Prefixes Reached/i);
      // Held down: FRR keeps trying (every second) and is refused for the restart time.
      await new Promise((r) => setTimeout(r, 5_000));
      expect(tor()?.state).not.toBe("Established");
      expect(frr.state(NODE_IP)).not.toBe("Established");
    });
  },
);
