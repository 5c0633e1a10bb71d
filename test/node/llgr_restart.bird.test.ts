// Long-lived graceful restart (RFC 9494) with the real `ocelot node run` as the restarting
// speaker and BIRD 2 as the helper (`long lived graceful restart on`): the node's BGPPeer has
// `restartMode: LongLivedGracefulRestart`, `maxRestartTime: 20s` (the long-lived stale time), the
// default BGPConfiguration `gracefulRestart.restartTime: 2s` (Ocelot extension). The daemon is
// SIGKILLed and started again about 6 s later: meanwhile BIRD keeps the node's block, tagged
// LLGR_STALE (65535:6) once the 2 s are over, and the node's kernel keeps BIRD's route; back,
// the block is fresh in BIRD and BIRD's route never left the kernel.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResourceClient } from "../../src/api/client.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { holds, link, Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type BirdPeer, PeerLab, peersUnavailableReason } from "../helpers/peers.js";
import { putAffinity, putPool } from "../ipam/helpers.js";
import { daemonTestsUnavailable, type NodeProcess, routes, startNode } from "./harness.js";

const skip = skipWithReason(
  "node run long-lived graceful restart with BIRD",
  daemonTestsUnavailable() ?? peersUnavailableReason(["bird"]),
);

const BIRD_AS = 65022;
const NODE_AS = 64512;
const NODE_IP = "10.255.22.1";
const BIRD_IP = "10.255.22.2";
const BIRD_ROUTE = "10.96.22.0/24";
const BLOCK = "10.244.22.0/26";
const V3 = "projectcalico.org/v3";

const birdConf = `
log "@DIR@/bird.log" all;
router id ${BIRD_IP};
protocol device { }
protocol static s4 { ipv4; route ${BIRD_ROUTE} blackhole; }
protocol bgp oc {
  local ${BIRD_IP} as ${BIRD_AS};
  neighbor ${NODE_IP} as ${NODE_AS};
  hold time 9; connect delay time 1; connect retry time 1;
  graceful restart on; long lived graceful restart on; long lived stale time 20;
  ipv4 { import all; export where source = RTS_STATIC; };
}
`;

describe.skipIf(skip)(
  "ocelot node run restarting with long-lived graceful restart, BIRD 2 helper",
  () => {
    let dir: string;
    let store: SqliteDatastore;
    let lab: PeerLab;
    let node: Netns;
    let br: Netns;
    let bird: BirdPeer;
    let daemon: NodeProcess | undefined;
    let args: string[] = [];

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "ocelot-llgr-restart-"));
      store = new SqliteDatastore(join(dir, "store.db"));
      const client = new ResourceClient(store);
      await client.write("apply", {
        apiVersion: V3,
        kind: "BGPConfiguration",
        metadata: { name: "default" },
        spec: { nodeToNodeMeshEnabled: false, gracefulRestart: { restartTime: "2s" } },
      });
      await client.write("apply", {
        apiVersion: V3,
        kind: "BGPPeer",
        metadata: { name: "bird" },
        spec: {
          peerIP: BIRD_IP,
          asNumber: BIRD_AS,
          restartMode: "LongLivedGracefulRestart",
          maxRestartTime: "20s",
        },
      });
      await putPool(store, "llnode", "10.244.22.0/24", { blockSize: 26 });
      await putAffinity(store, "llnode", BLOCK);
      lab = new PeerLab();
      node = Netns.create("lrn");
      br = Netns.create("lrb");
      link(node, "eth0", `${NODE_IP}/30`, br, "br-oc", `${BIRD_IP}/30`);
      bird = lab.startBird(br, "bird", birdConf);
      args = [
        ...["--nodename", "llnode", "--ip", `${NODE_IP}/30`],
        ...["--datastore", `file:${join(dir, "store.db")}`],
        ...["--status-socket", join(dir, "llnode.sock"), "--log-level", "debug"],
      ];
      daemon = await startNode(node, args);
    });

    afterAll(async () => {
      await daemon?.stop();
      lab?.cleanup();
      node?.destroy();
      br?.destroy();
      await store?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    const inKernel = () => routes(node, "201").some((r) => r.dst === BIRD_ROUTE);
    /** BIRD's `show route BLOCK all`: the route's lines, "" when it has none. */
    const birdBlock = () => {
      try {
        const out = bird.cmd("show", "route", BLOCK, "protocol", "oc", "all");
        return out.includes(`${BLOCK} `) ? out : "";
      } catch {
        return ""; // birdc fails with "Network not found"
      }
    };
    const llgrStale = () => /BGP\.community:.*\(65535,6\)/.test(birdBlock());
    const fresh = () => birdBlock() !== "" && !llgrStale();

    it("SIGKILLed past its restart time: BIRD keeps the block as LLGR_STALE, fresh again when the node is back", async () => {
      await waitFor("BIRD's route in the node's kernel and the block fresh in BIRD", () => {
        return inKernel() && fresh();
      }).catch((e) => {
        throw new Error(`${(e as Error).message}\n${daemon?.log.slice(-4000)}`);
      });
      expect(bird.cmd("show", "protocols", "all", "oc")).toMatch(/LL stale time:\s+20/);
      daemon?.proc.kill("SIGKILL");
      const killedAt = Date.now();
      await daemon?.exit;
      await waitFor("BIRD to tag the block LLGR_STALE", llgrStale);
      const taggedAfter = (Date.now() - killedAt) / 1000;
      expect(taggedAfter).toBeGreaterThanOrEqual(1.5);
      const kept = await holds(
        Math.max(0, killedAt + 6000 - Date.now()),
        () => llgrStale() && inKernel(),
      );
      expect(kept, bird.cmd("show", "route", "all")).toBe(true);

      daemon = await startNode(node, args);
      const back = (Date.now() - killedAt) / 1000;
      let keptThroughout = true;
      await waitFor("the block fresh in BIRD again", () => {
        keptThroughout &&= birdBlock() !== "" && inKernel();
        return fresh();
      });
      expect(keptThroughout).toBe(true);
      expect(back).toBeGreaterThan(2);
      expect(back).toBeLessThan(20);
      await waitFor(
        "the node's FIB hold to end at BIRD's End-of-RIB",
        () =>
          daemon?.has(
            "All peers sent End-of-RIB: removing stale routes from before the restart",
          ) === true,
      );
      expect(inKernel()).toBe(true);
      console.log(
        `node run LLGR restart: block tagged LLGR_STALE in BIRD ${taggedAfter.toFixed(1)} s after SIGKILL; started again after ${back.toFixed(1)} s`,
      );
    });
  },
);
