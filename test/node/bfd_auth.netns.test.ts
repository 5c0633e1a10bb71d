// BFD authentication through the datastore: the real `ocelot node run` on the embedded store is
// given a BGPPeer whose Ocelot extension `spec.bfd.authentication` names a key by secretKeyRef
// (read from `--secrets-dir`, `<name>/<key>`), toward BIRD 2 running BGP with `bfd on` and its
// own BFD with Meticulous Keyed SHA1 and the same key (RFC 5880 §6.7.4): BFD comes Up on both
// sides with BGP beside it. The BGPPeer moved to a secret holding another key: the node's BFD
// session restarts with an AdminDown (the node keeps its BGP session for it, RFC 5882 §3.2; BIRD
// takes it as its BFD session going down and closes BGP with a Cease, and BGP comes back at
// once, without BFD), then BIRD refuses the node's packets and the node refuses BIRD's, so BFD
// stays Down on both sides; moved back: Up again, BGP Established and BIRD's route installed.
// The key never appears in the daemon's log or status.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type BirdPeer, peersUnavailableReason } from "../helpers/peers.js";
import { daemonTestsUnavailable, nodeStatus, routes } from "./harness.js";
import { NodeLab } from "./node_lab.js";

const skip = skipWithReason(
  "ocelot node run BGPPeer bfd.authentication with BIRD",
  daemonTestsUnavailable() ?? peersUnavailableReason(["bird"]),
);

const NODE_IP = "10.97.17.1";
const BIRD_IP = "10.97.17.2";
const BIRD_AS = 65017;
const ROUTE = "10.99.17.0/24";
const KEY = "n0de-bfd-s3cret";

const birdConf = `
log "@DIR@/bird.log" all;
router id ${BIRD_IP};
protocol device { }
protocol static s4 { ipv4; route ${ROUTE} blackhole; }
protocol bfd {
  interface "eth0" {
    min rx interval 300 ms;
    min tx interval 300 ms;
    multiplier 3;
    authentication meticulous keyed sha1;
    password "${KEY}" { id 7; };
  };
}
protocol bgp node {
  local ${BIRD_IP} as ${BIRD_AS};
  neighbor ${NODE_IP} as 64512;
  hold time 90;
  bfd on;
  connect delay time 1; connect retry time 1;
  error wait time 1, 2;
  ipv4 { import all; export where source = RTS_STATIC; };
}
`;

interface Status {
  peers: { address: string; state: string; establishedTransitions: number }[];
  bfd?: { peer: string; state: string }[];
}

describe.skipIf(skip)(
  "ocelot node run: BGPPeer bfd.authentication (secretKeyRef) with BIRD",
  () => {
    let lab: NodeLab;
    let bird: BirdPeer;
    let secrets: string;
    const socket = () => lab.socket();
    const status = (): Status => nodeStatus<Status>(socket());
    const bgp = () => status().peers.find((p) => p.address === BIRD_IP);
    const ours = () => status().bfd?.find((b) => b.peer === BIRD_IP)?.state;
    const birdUp = () => /10\.97\.17\.1\s+eth0\s+Up/.test(bird.cmd("show", "bfd", "sessions"));
    const installed = () => routes(lab.nodes[0]?.ns as Netns, "201").some((r) => r.dst === ROUTE);
    const applyPeer = (secret: string) =>
      lab.apply("BGPPeer", "tor", {
        peerIP: BIRD_IP,
        asNumber: BIRD_AS,
        bfd: {
          minTxInterval: "300ms",
          minRxInterval: "300ms",
          multiplier: 3,
          authentication: {
            type: "MeticulousKeyedSHA1",
            keyID: 7,
            password: { secretKeyRef: { name: secret, key: "key" } },
          },
        },
      });
    const why = () =>
      `${bird.cmd("show", "bfd", "sessions")}\n${bird.log().slice(-3000)}\n${lab.nodes[0]?.daemon?.log.slice(-4000)}`;

    beforeAll(async () => {
      lab = new NodeLab("nodebfdauth");
      secrets = join(lab.dir, "secrets");
      for (const [name, key] of [
        ["bfd-key", KEY],
        ["other-key", "a-wrong-bfd-key"],
      ] as const) {
        mkdirSync(join(secrets, name), { recursive: true, mode: 0o700 });
        writeFileSync(join(secrets, name, "key"), key, { mode: 0o600 });
      }
      await applyPeer("bfd-key");
      const ns = lab.node("nan", "bfda-node", NODE_IP);
      bird = lab.birdOnLink(ns, "eth0", NODE_IP, "nap", BIRD_IP, "bird", birdConf);
      await lab.start(() => ["--secrets-dir", secrets]);
    });

    afterAll(async () => {
      await lab?.close();
    });

    it("the same key: BFD Up on both sides, BGP Established, BIRD's route installed", async () => {
      await waitFor("BGP Established", () => bgp()?.state === "Established");
      await waitFor("our BFD session Up", () => ours() === "Up").catch((e) => {
        throw new Error(`${(e as Error).message}\n${why()}`);
      });
      await waitFor("BIRD's BFD session Up", birdUp).catch((e) => {
        throw new Error(`${(e as Error).message}\n${why()}`);
      });
      await waitFor(`${ROUTE} in the node's kernel`, installed);
    });

    it("another key: BFD Down on both sides and stays so, BGP up without it; the right key: Up again", async () => {
      const before = bgp()?.establishedTransitions;
      await applyPeer("other-key");
      await waitFor("our BFD session not Up", () => ours() !== "Up");
      await waitFor("BIRD's BFD session not Up", () => !birdUp());
      // Each side's detection time several times over: neither comes Up on the wrong key.
      await new Promise((r) => setTimeout(r, 3000));
      expect(ours()).not.toBe("Up");
      expect(birdUp()).toBe(false);
      // BGP runs without BFD meanwhile (BIRD's Cease for our AdminDown, if any, is over).
      await waitFor("BGP Established without BFD", () => bgp()?.state === "Established");
      const during = bgp()?.establishedTransitions ?? 0;
      await applyPeer("bfd-key");
      await waitFor("our BFD session Up again", () => ours() === "Up");
      await waitFor("BIRD's BFD session Up again", birdUp);
      await waitFor("BGP Established", () => bgp()?.state === "Established");
      await waitFor(`${ROUTE} in the node's kernel`, installed);
      console.log(
        `node BFD auth: BGP resets over the change to a wrong key: ${during - (before ?? 0)} (BIRD's Cease for the AdminDown); when the right key came back: ${(bgp()?.establishedTransitions ?? 0) - during}`,
      );
      for (const text of [lab.nodes[0]?.daemon?.log ?? "", JSON.stringify(status())])
        expect(text).not.toContain(KEY);
    });
  },
);
