// Datastore loss under a node daemon that carries BGP (issue 17): the real `ocelot node run`
// on a real etcd, peering over eBGP with BIRD 2 in a namespace of its own (the mesh off, one
// BGPPeer). The routing must not depend on the datastore being there:
// - etcd stopped (SIGTERM) for 20 s (60 s in `npm run test:soak`): /readyz 503 naming the
//   datastore, the BGP session stays Established (no new transition on either side), BIRD keeps
//   the node's block, the node's kernel keeps BIRD's route, and a route BIRD starts announcing
//   during the outage reaches the node's kernel (the speaker works without the store); when
//   etcd is back, /readyz 200 and a block claimed after the outage reaches BIRD;
// - then etcd restarted with a compacted history while the daemon is frozen (SIGSTOP; BIRD's
//   hold time is 90 s, so the session outlives the freeze): the first block released and a new
//   one claimed meanwhile; thawed, the daemon cannot resume its watches, lists again, and BIRD
//   loses the released block and gets the new one, still without a session reset.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResourceClient } from "../../src/api/client.js";
import { openDatastore } from "../../src/datastore/open.js";
import type { Datastore } from "../../src/datastore/types.js";
import { IpamStore } from "../../src/ipam/store.js";
import { type EtcdServer, etcdUnavailableReason, startEtcd } from "../helpers/etcd.js";
import { link, Netns, RUN_PREFIX, sh, skipWithReason, waitFor } from "../helpers/netns.js";
import { type BirdPeer, PeerLab, peersUnavailableReason } from "../helpers/peers.js";
import { putPool } from "../ipam/helpers.js";
import {
  daemonTestsUnavailable,
  type MeshNode,
  peerStatus,
  routes,
  startMeshNodes,
  stopMeshNodes,
} from "../node/harness.js";
import { V3 } from "../node/node_lab.js";
import { restartCompacted, waitDatastoreNotReady } from "./etcd_node.js";

const OUTAGE_MS = process.env.OCELOT_SOAK ? 60_000 : 20_000;
const NODE = "ebgp-node";
const NODE_IP = "10.94.0.1";
const BIRD_IP = "10.94.0.2";
const BIRD_AS = 65030;
const FROM_BIRD = "10.99.60.0/24";
/**
 * The daemon runs inside the node's namespace, where 127.0.0.1 is not the host's: etcd also
 * listens on the host side of a veth into it (removed with the namespace), over which the test
 * also reads the daemon's /readyz.
 */
const ETCD_HOST_IP = "10.95.255.1";
const ETCD_NODE_IP = "10.95.255.2";
/** Announced by BIRD only once etcd is stopped (its static protocol enabled then). */
const DURING = "10.99.61.0/24";
const skip = skipWithReason(
  "node daemon with BGP under etcd stopped and compacted",
  daemonTestsUnavailable() ?? etcdUnavailableReason() ?? peersUnavailableReason(["bird"]),
);

const birdConf = `
log "@DIR@/bird.log" all;
router id ${BIRD_IP};
protocol device { }
protocol static s1 { ipv4; route ${FROM_BIRD} blackhole; }
protocol static s2 { disabled; ipv4; route ${DURING} blackhole; }
protocol bgp node {
  local ${BIRD_IP} as ${BIRD_AS};
  neighbor ${NODE_IP} as 64512;
  passive on;
  hold time 90;
  error wait time 1, 2;
  ipv4 { import all; export where source = RTS_STATIC; };
}
`;

interface Peer {
  address: string;
  state: string;
  establishedTransitions: number;
}

describe.skipIf(skip)("ocelot node run with BGP while etcd is stopped, then compacted", () => {
  let dir: string;
  let etcd: EtcdServer;
  let store: Datastore;
  let bird: BirdPeer;
  let birdNs: Netns;
  const peers = new PeerLab();
  const nodes: MeshNode[] = [];
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  let frozen = false;
  let back: Promise<void> | undefined;
  const node = () => nodes[0] as MeshNode;
  const get = async (path: string) => {
    const r = await fetch(`http://${ETCD_NODE_IP}:${port}${path}`, {
      signal: AbortSignal.timeout(60_000),
    });
    return { status: r.status, text: await r.text() };
  };
  const learned = () => routes(node().ns, "201").map((r) => r.dst);
  /** BIRD's routes from the node (its import of protocol "node"). */
  const atBird = () =>
    bird
      .cmd("show", "route", "protocol", "node")
      .split("\n")
      .map((l) => /^(\d+\.\d+\.\d+\.\d+\/\d+)/.exec(l)?.[1])
      .filter((p): p is string => p !== undefined);
  const transitions = () =>
    peerStatus<Peer>(join(dir, `${NODE}.sock`)).find((p) => p.address === BIRD_IP)
      ?.establishedTransitions;
  /** The "since" column of BIRD's protocol: changes when the session goes down or up. */
  const birdSince = () =>
    bird
      .cmd("show", "protocols", "node")
      .split("\n")
      .find((l) => l.startsWith("node "))
      ?.trim()
      .split(/\s+/)[4];
  /**
   * BIRD's "since" is its monotonic clock shown as wall-clock time, converted at each `show`:
   * the same instant can print 1 ms apart. A reset in these tests moves it by seconds (the
   * freeze or the outage comes first), so the comparison allows 50 ms.
   */
  const sinceMs = (s: string | undefined) => {
    const m = /^(\d+):(\d+):(\d+)\.(\d+)$/.exec(s ?? "");
    if (!m) throw new Error(`BIRD's protocol time not read: ${s}`);
    const [h, mi, se, f] = m.slice(1).map(Number) as [number, number, number, number];
    return ((h * 60 + mi) * 60 + se) * 1000 + f;
  };
  const expectNoBirdReset = (since0: string | undefined) => {
    const now = birdSince();
    expect(
      Math.abs(sinceMs(now) - sinceMs(since0)),
      `no session reset on BIRD's side (since ${since0}, now ${now})`,
    ).toBeLessThanOrEqual(50);
  };
  const why = () => `${node().daemon?.log.slice(-6000)}\n${bird.log().slice(-3000)}`;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-etcdbgp-"));
    const ns = Netns.create("ebn");
    nodes.push({ name: NODE, ns, ip: NODE_IP });
    const hostIf = `${RUN_PREFIX}e`.slice(0, 15);
    sh("ip", ["link", "add", hostIf, "type", "veth", "peer", "name", "etcd0", "netns", ns.name]);
    sh("ip", ["addr", "add", `${ETCD_HOST_IP}/30`, "dev", hostIf]);
    sh("ip", ["link", "set", hostIf, "up"]);
    ns.ip("addr", "add", `${ETCD_NODE_IP}/30`, "dev", "etcd0");
    ns.ip("link", "set", "etcd0", "up");
    etcd = await startEtcd({ alsoListen: [ETCD_HOST_IP] });
    store = await openDatastore(etcd.url);
    const client = new ResourceClient(store);
    const apply = (kind: string, name: string, spec: object) =>
      client.write("apply", { apiVersion: V3, kind, metadata: { name }, spec });
    await apply("BGPConfiguration", "default", { nodeToNodeMeshEnabled: false, asNumber: 64512 });
    await apply("BGPPeer", "tor", { peerIP: BIRD_IP, asNumber: BIRD_AS });
    await putPool(store, "first", "10.76.0.0/24", { blockSize: 26 });
    await new IpamStore(store).autoAssign({ handleId: "pod-first", node: NODE, num4: 1, num6: 0 });
    birdNs = Netns.create("ebb");
    link(ns, "eth0", `${NODE_IP}/24`, birdNs, "eth0", `${BIRD_IP}/24`);
    bird = peers.startBird(birdNs, "bird", birdConf);
    const nodeUrl = etcd.url.replace("127.0.0.1", ETCD_HOST_IP);
    await startMeshNodes(nodes, nodeUrl, dir, () => [
      "--metrics-address",
      `${ETCD_NODE_IP}:${port}`,
    ]);
  });

  afterAll(async () => {
    if (frozen) node().daemon?.proc.kill("SIGCONT");
    await back?.catch(() => {});
    try {
      await stopMeshNodes(nodes);
    } finally {
      peers.cleanup();
      birdNs?.destroy();
      await store?.close();
      await etcd?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  it(`etcd stopped ${OUTAGE_MS / 1000} s: the session stays up, routes both ways stay, a new route from BIRD lands`, async () => {
    await waitFor(
      "the session Established, the node's block at BIRD, BIRD's route in the node's kernel",
      () => atBird().includes("10.76.0.0/26") && learned().includes(FROM_BIRD),
      60_000,
      200,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}: bird ${atBird()} node ${learned()}\n${why()}`);
    });
    const t0 = transitions();
    const since0 = birdSince();
    expect(t0).toBe(1);
    const start = Date.now();
    back = etcd.restart(OUTAGE_MS);
    await waitDatastoreNotReady(get, why);
    bird.cmd("enable", "s2");
    let checks = 0;
    while (Date.now() - start < OUTAGE_MS - 3_000) {
      expect(atBird(), "BIRD keeps the node's block").toContain("10.76.0.0/26");
      expect(learned(), "the node keeps BIRD's route").toContain(FROM_BIRD);
      checks++;
      await new Promise((r) => setTimeout(r, 1000));
    }
    expect(learned(), "a route BIRD announced during the outage").toContain(DURING);
    expect((await get("/readyz")).status, "still not ready: etcd is stopped").toBe(503);
    await back;
    back = undefined;
    await waitFor("/readyz 200 again", async () => (await get("/readyz")).status === 200, 60_000);
    // A block claimed after the outage reaches BIRD.
    await putPool(store, "after", "10.77.0.0/24", { blockSize: 26 });
    await new IpamStore(store).autoAssign({
      handleId: "pod-after",
      node: NODE,
      num4: 1,
      num6: 0,
      pools4: ["10.77.0.0/24"],
    });
    await waitFor("the new block at BIRD", () => atBird().includes("10.77.0.0/26"), 60_000, 200);
    expect(transitions(), "no session reset on the node's side").toBe(t0);
    expectNoBirdReset(since0);
    console.log(
      `etcd stopped ${OUTAGE_MS / 1000} s under a BGP node: ${checks} checks, session kept (transitions ${t0}, BIRD since ${since0}); load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`,
    );
  });

  it("etcd restarted with a compacted history: the watches list again, BIRD's routes follow, no reset", async () => {
    const t0 = transitions();
    const since0 = birdSince();
    node().daemon?.proc.kill("SIGSTOP");
    frozen = true;
    const r = await restartCompacted(
      etcd,
      store,
      NODE,
      { handleId: "pod-first", block: "10.76.0.0/26" },
      { name: "second", cidr: "10.78.0.0/24", handleId: "pod-second" },
    );
    store = r.store;
    const { rev0, rev1 } = r;
    const t = Date.now();
    node().daemon?.proc.kill("SIGCONT");
    frozen = false;
    await waitFor(
      "BIRD without the released block, with the new one",
      () => {
        const b = atBird();
        return !b.includes("10.76.0.0/26") && b.includes("10.78.0.0/26");
      },
      60_000,
      200,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}: ${atBird()}\n${why()}`);
    });
    const ms = Date.now() - t;
    const resyncs = (node().daemon?.lines ?? []).filter(
      (l) =>
        l.msg === "Watch resync: listing again" &&
        String((l as Record<string, unknown>).why).startsWith("revision compacted"),
    );
    expect(resyncs.length, "a watch resynced for the compaction").toBeGreaterThan(0);
    expect(atBird(), "the block from after the first outage stays").toContain("10.77.0.0/26");
    expect(learned(), "BIRD's routes stay in the node's kernel").toEqual(
      expect.arrayContaining([FROM_BIRD, DURING]),
    );
    expect(transitions(), "no session reset on the node's side").toBe(t0);
    expectNoBirdReset(since0);
    console.log(
      `etcd compacted to ${rev1} (daemon had seen ${rev0}) under a BGP node: BIRD's routes followed ${ms} ms after the daemon resumed; ${resyncs.length} resyncs for the compaction; session kept`,
    );
  });
});
