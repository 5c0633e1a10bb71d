// Import safety by default (issue 17), by the real `ocelot node run` against BIRD 2 as a ToR in
// its own namespace: BIRD announces a prefix outside our pools, a block-sized prefix inside our
// pool (a ToR passing another rack's block on), and four that must never be imported from an
// external peer: a pod's host route inside the pool, the whole pool, the node's own address
// and a default route. Only the first two reach the kernel (protocol 201, read back with
// `ip -j route`); the four are counted as rejected in `ocelot status --json`; a BGPFilter that
// accepts 0.0.0.0/0 explicitly lets the default route in, and nothing lets the others in. A Node
// that joins later makes BIRD's host route to its address rejected too, without the ROUTE-REFRESH
// a changed import filter asks for (BIRD's packet log counts them): the speaker re-evaluates the
// paths it holds, where a refresh from every peer per Node join would not scale.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { link, type Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type BirdPeer, peersUnavailableReason } from "../helpers/peers.js";
import { daemonTestsUnavailable, peerStatus, routes } from "./harness.js";
import { NodeLab } from "./node_lab.js";

const skip = skipWithReason(
  "ocelot node run import safety with BIRD",
  daemonTestsUnavailable() ?? peersUnavailableReason(["bird"]),
);

const NODE_IP = "10.96.0.1";
const BIRD_IP = "10.96.0.2";
const BIRD_AS = 65010;
const OUTSIDE = "10.98.1.0/24";
const BLOCK = "10.244.8.0/26";
const HOSTILE = ["10.244.7.5/32", "10.244.0.0/16", `${NODE_IP}/32`, "0.0.0.0/0"];
/** The address of a Node that joins later: its host route is accepted until then. */
const JOINER = "10.96.0.9/32";

const birdConf = `
log "@DIR@/bird.log" all;
router id ${BIRD_IP};
protocol device { }
protocol static s4 {
  ipv4;
${[OUTSIDE, BLOCK, JOINER, ...HOSTILE].map((p) => `  route ${p} blackhole;`).join("\n")}
}
protocol bgp node {
  local ${BIRD_IP} as ${BIRD_AS};
  neighbor ${NODE_IP} as 64512;
  passive on;
  hold time 9;
  error wait time 1, 2;
  debug { states, packets };
  ipv4 { import all; export where source = RTS_STATIC; };
}
`;

interface Peer {
  address: string;
  state: string;
  prefixes: { received: number; accepted: number; rejected?: Record<string, number> };
}

describe.skipIf(skip)("ocelot node run: import safety against a ToR (BIRD)", () => {
  let lab: NodeLab;
  let bird: BirdPeer;
  const tor = () => peerStatus<Peer>(lab.socket()).find((p) => p.address === BIRD_IP);
  /** ROUTE-REFRESH messages BIRD got (its packet log). */
  const refreshes = () => (bird.log().match(/Got ROUTE-REFRESH/g) ?? []).length;
  const learned = () =>
    routes(lab.nodes[0]?.ns as Netns, "201")
      .map((r) => (r.dst === "default" ? "0.0.0.0/0" : r.dst.includes("/") ? r.dst : `${r.dst}/32`))
      .sort();

  beforeAll(async () => {
    lab = new NodeLab("importguard");
    await lab.apply("IPPool", "pods", { cidr: "10.244.0.0/16", blockSize: 26, natOutgoing: false });
    await lab.apply("BGPPeer", "tor", { peerIP: BIRD_IP, asNumber: BIRD_AS, keepaliveTime: "3s" });
    const ns = lab.node("ign", "ig-node", NODE_IP);
    const birdNs = lab.netns("igb");
    link(ns, "eth0", `${NODE_IP}/24`, birdNs, "eth0", `${BIRD_IP}/24`);
    bird = lab.peers.startBird(birdNs, "bird", birdConf);
    await lab.start();
  });

  afterAll(async () => {
    await lab?.close();
  });

  it("imports the outside prefix and the block; rejects and counts the pod route, the pool, the node's address and the default", async () => {
    await waitFor(
      "the ToR's seven prefixes received and handled",
      () => tor()?.prefixes.received === 7 && learned().includes(OUTSIDE),
      60_000,
      200,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(tor())}\n${bird.log()}`);
    });
    expect(learned()).toEqual([OUTSIDE, BLOCK, JOINER].sort());
    const p = tor();
    expect(p?.state).toBe("Established");
    expect(p?.prefixes.accepted).toBe(3);
    expect(p?.prefixes.rejected?.FilterReject).toBe(4);
  });

  it("a Node that joins: the ToR's route to its address is rejected, and BIRD is asked for no ROUTE-REFRESH", async () => {
    const before = refreshes();
    await lab.apply("Node", "ig-joiner", { bgp: { ipv4Address: `${JOINER.split("/")[0]}/24` } });
    await waitFor(
      "the joiner's host route rejected",
      () => !learned().includes(JOINER) && tor()?.prefixes.rejected?.FilterReject === 5,
      60_000,
      200,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}: ${learned()} ${JSON.stringify(tor())}`);
    });
    expect(learned()).toEqual([OUTSIDE, BLOCK].sort());
    const p = tor();
    expect(p?.state).toBe("Established");
    expect(p?.prefixes).toMatchObject({ received: 7, accepted: 2 });
    // The daemon logs the ToR's change as the guard's, applied from the paths it holds.
    expect(lab.nodes[0]?.daemon?.log).toMatch(/"field":"importGuard"[^\n]*no ROUTE-REFRESH/);
    // BIRD logs a packet within milliseconds; the next test's filter change is the positive
    // control (its ROUTE-REFRESH is counted by the same means).
    await new Promise((r) => setTimeout(r, 1000));
    expect(refreshes()).toBe(before);
  });

  it("a BGPFilter that accepts 0.0.0.0/0 lets the default in; the others stay out", async () => {
    const refreshed = refreshes();
    await lab.apply("BGPFilter", "default-in", {
      importV4: [
        { action: "Accept", cidr: "0.0.0.0/0", matchOperator: "Equal" },
        // Tries to let everything else in too: the guard comes first and still refuses.
        { action: "Accept", cidr: "0.0.0.0/0", matchOperator: "In" },
      ],
    });
    await lab.apply("BGPPeer", "tor", {
      peerIP: BIRD_IP,
      asNumber: BIRD_AS,
      keepaliveTime: "3s",
      filters: ["default-in"],
    });
    await waitFor("the default route in", () => learned().includes("0.0.0.0/0"), 60_000, 200).catch(
      (e) => {
        throw new Error(`${(e as Error).message}: ${learned()}\n${lab.nodes[0]?.daemon?.log}`);
      },
    );
    expect(learned()).toEqual(["0.0.0.0/0", OUTSIDE, BLOCK].sort());
    // A changed BGPFilter is the peer's import filter: BIRD is asked to refresh (the count the
    // previous test found unchanged works).
    await waitFor("BIRD got a ROUTE-REFRESH", () => refreshes() > refreshed, 10_000, 100);
  });
});
