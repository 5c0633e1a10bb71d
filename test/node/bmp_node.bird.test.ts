// BMP (RFC 7854, RFC 8671 Adj-RIB-Out) from the node daemon's path: the real `ocelot node run
// --bmp-station --bmp-adj-rib-out true` (its speaker configured from the datastore: a BGPPeer to
// BIRD 2, this node's block from its affinity) to pmacct's pmbmpd in the node's namespace.
// pmbmpd logs Initiation naming the node's AS and router ID, Peer Up with BIRD's BGP ID, Route
// Monitoring of exactly BIRD's exports (pre-policy Adj-RIB-In, as BIRD sent them) and of the
// node's block as sent to BIRD (post-policy Adj-RIB-Out), Statistics Reports whose Adj-RIB-In
// count is BIRD's export count, and Termination when the daemon stops; the node's /metrics has
// the ocelot_bmp_* series agreeing with what pmbmpd logged.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResourceClient } from "../../src/api/client.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { PmbmpdStation } from "../helpers/bmp_station.js";
import { runSync } from "../helpers/limits.js";
import { httpGetIn, metricSample } from "../helpers/metrics.js";
import { link, Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type BirdPeer, PeerLab, peersUnavailableReason } from "../helpers/peers.js";
import { putAffinity, putPool } from "../ipam/helpers.js";
import { daemonTestsUnavailable, type NodeProcess, startNode } from "./harness.js";

const have = (b: string) => runSync("sh", ["-c", `command -v ${b}`]).status === 0;
const skip = skipWithReason(
  "node run BMP to pmbmpd with BIRD",
  daemonTestsUnavailable() ??
    peersUnavailableReason(["bird"]) ??
    (have("pmbmpd") ? undefined : "pmbmpd (Debian pmacct) is not installed"),
);

const BIRD_AS = 65020;
const NODE_AS = 64512;
const NODE_IP = "10.255.9.1";
const BIRD_IP = "10.255.9.2";
const PORT = 11021;
const METRICS = 9095;
const SENT = ["10.96.1.0/24", "10.96.2.0/24", "10.96.3.0/24"];
const BLOCK = "10.244.9.0/26";

const birdConf = `
log "@DIR@/bird.log" all;
router id ${BIRD_IP};
protocol device { }
protocol static s4 { ipv4; ${SENT.map((p) => `route ${p} blackhole;`).join(" ")} }
protocol bgp oc {
  local ${BIRD_IP} as ${BIRD_AS};
  neighbor ${NODE_IP} as ${NODE_AS};
  hold time 6;
  connect delay time 1; connect retry time 1;
  ipv4 { import all; export filter { if source != RTS_STATIC then reject; bgp_community.add((65020, 7)); accept; }; };
}
`;

describe.skipIf(skip)("ocelot node run --bmp-station to pmbmpd, with BIRD 2", () => {
  let dir: string;
  let store: SqliteDatastore;
  let lab: PeerLab;
  let node: Netns;
  let br: Netns;
  let bird: BirdPeer;
  let daemon: NodeProcess | undefined;
  let station: PmbmpdStation | undefined;
  const ofType = (t: string) => station?.ofType(t) ?? [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-bmpnode-"));
    store = new SqliteDatastore(join(dir, "store.db"));
    await new ResourceClient(store).write("apply", {
      apiVersion: "projectcalico.org/v3",
      kind: "BGPPeer",
      metadata: { name: "bird" },
      spec: { peerIP: BIRD_IP, asNumber: BIRD_AS },
    });
    await putPool(store, "bmpnode", "10.244.9.0/24", { blockSize: 26 });
    await putAffinity(store, "bmpnode", BLOCK);
    lab = new PeerLab();
    node = Netns.create("bmn");
    br = Netns.create("bmr");
    link(node, "eth0", `${NODE_IP}/30`, br, "br-oc", `${BIRD_IP}/30`);
    // pmbmpd on the node namespace's loopback, logging every message as a JSON line.
    station = await PmbmpdStation.start(lab, node, "station", PORT);
    bird = lab.startBird(br, "bird", birdConf);
    daemon = await startNode(node, [
      ...["--nodename", "bmpnode", "--ip", `${NODE_IP}/30`],
      ...["--datastore", `file:${join(dir, "store.db")}`],
      ...["--bmp-station", `127.0.0.1:${PORT}`, "--bmp-stats-interval", "1s"],
      ...["--bmp-adj-rib-out", "true", "--metrics-address", `127.0.0.1:${METRICS}`],
    ]);
  });

  afterAll(async () => {
    await daemon?.stop();
    station?.stop();
    lab?.cleanup();
    node?.destroy();
    br?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("Initiation, Peer Up, Route Monitoring in (BIRD's exports) and out (the node's block), stats; the node's ocelot_bmp_* series agree", async () => {
    await waitFor(
      "pmbmpd logs BIRD's 3 prefixes, the node's block to BIRD and a stats report counting 3",
      () => {
        const rm = ofType("route_monitor");
        const inPrefixes = new Set(rm.filter((e) => e.is_in === 1).map((e) => e.ip_prefix));
        const outPrefixes = new Set(rm.filter((e) => e.is_out === 1).map((e) => e.ip_prefix));
        const stats = ofType("stats").filter((e) => e.counter_type === 7);
        return (
          SENT.every((p) => inPrefixes.has(p)) &&
          outPrefixes.has(BLOCK) &&
          stats.some((e) => e.counter_value === SENT.length)
        );
      },
      30_000,
      200,
    );
    const init = ofType("init");
    expect(init).toHaveLength(1);
    expect(String(init[0]?.bmp_init_info_sysdescr)).toContain(
      `Ocelot node AS ${NODE_AS} router ID ${NODE_IP}`,
    );
    const up = ofType("peer_up");
    expect(up).toHaveLength(1);
    expect(up[0]).toMatchObject({
      peer_ip: BIRD_IP,
      peer_asn: BIRD_AS,
      bgp_id: BIRD_IP,
      local_ip: NODE_IP,
    });
    expect(bird.cmd("show", "route", "export", "oc", "count")).toMatch(
      new RegExp(`\\b${SENT.length} of \\d+ routes`),
    );
    const rmIn = ofType("route_monitor").filter((e) => e.is_in === 1 && e.log_type === "update");
    expect(new Set(rmIn.map((e) => e.ip_prefix))).toEqual(new Set(SENT));
    for (const e of rmIn)
      expect(e).toMatchObject({
        as_path: String(BIRD_AS),
        comms: "65020:7",
        is_post: 0,
        bgp_nexthop: BIRD_IP,
      });
    const rmOut = ofType("route_monitor").filter((e) => e.is_out === 1 && e.ip_prefix === BLOCK);
    expect(rmOut[0]).toMatchObject({ as_path: String(NODE_AS), is_post: 1 });
    // BIRD got the block the node sent.
    expect(bird.cmd("show", "route", BLOCK)).toContain(BLOCK);

    const [code, text] = httpGetIn(node, METRICS, "/metrics");
    expect(code).toBe(200);
    expect(metricSample(text, "ocelot_bmp_station_connected")).toBe(1);
    expect(metricSample(text, "ocelot_bmp_connects_total")).toBe(1);
    expect(metricSample(text, "ocelot_bmp_peer_up_total")).toBe(1);
    expect(metricSample(text, "ocelot_bmp_peer_down_total")).toBe(0);
    expect(metricSample(text, "ocelot_bmp_messages_dropped_total")).toBe(0);
    const rmCount = metricSample(text, "ocelot_bmp_route_monitoring_total") as number;
    // At least BIRD's UPDATE(s) in and the block's out (pmbmpd logs one line per prefix).
    expect(rmCount).toBeGreaterThanOrEqual(2);
    // Initiation, Peer Up, the Route Monitoring and each Statistics Report pmbmpd logged, sent.
    const sent = metricSample(text, "ocelot_bmp_messages_sent_total") as number;
    const reports = ofType("stats").filter((e) => e.counter_type === 7).length;
    expect(sent).toBeGreaterThanOrEqual(1 + up.length + 2 + reports);
  });

  it("the node daemon stops: Termination reaches the station", async () => {
    await daemon?.stop();
    await waitFor("pmbmpd logs term", () => ofType("term").length === 1, 20_000, 200);
    expect(ofType("term")[0]?.bmp_term_info_reason).toBe("Session administratively closed");
  });
});
