// `ocelot routes PREFIX --json` of a real `ocelot node run` (the node daemon's speaker and its
// kernel FIB) with BIRD 2 as a global BGPPeer, run inside the node's namespace without flags:
// BIRD announces one route with its own next hop (installed) and one whose next hop (set by
// BIRD's export filter) is on no subnet of the node, which the kernel refuses; the node shows
// it as not in the kernel with the kernel's error (ENETUNREACH), read against the kernel.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResourceClient } from "../../src/api/client.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { runSync } from "../helpers/limits.js";
import { link, Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type BirdPeer, PeerLab, peersUnavailableReason } from "../helpers/peers.js";
import { BIN, daemonTestsUnavailable, type NodeProcess, routes, startNode } from "./harness.js";

const skip = skipWithReason(
  "ocelot routes PREFIX on node run with BIRD",
  daemonTestsUnavailable() ?? peersUnavailableReason(["bird"]),
);

const BIRD_IP = "10.95.0.3";
const BIRD_AS = 65022;
const N1 = "10.95.0.1";
const GOOD = "10.96.1.0/24";
const BAD = "10.96.9.0/24";
const FAR_GW = "10.78.0.1";

const birdConf = `
log "@DIR@/bird.log" all;
router id ${BIRD_IP};
protocol device { }
protocol static s4 { ipv4; route ${GOOD} blackhole; route ${BAD} blackhole; }
protocol bgp node1 {
  local ${BIRD_IP} as ${BIRD_AS};
  neighbor ${N1} as 64512;
  hold time 9;
  connect delay time 1;
  error wait time 1, 2;
  ipv4 {
    import all;
    export filter {
      if source != RTS_STATIC then reject;
      if net = ${BAD} then bgp_next_hop = ${FAR_GW};
      accept;
    };
  };
}
`;

interface RouteJson {
  route: { nexthops: string[] } | null;
  kernel: { state: string; found: string[]; error?: { code: string; reason: string } };
}

describe.skipIf(skip)("ocelot routes PREFIX on ocelot node run: the kernel's error", () => {
  let dir: string;
  let store: SqliteDatastore;
  let lab: PeerLab;
  let bird: BirdPeer;
  let birdNs: Netns;
  let n1: Netns;
  let daemon: NodeProcess | undefined;

  /** `ocelot routes PREFIX --json` inside node1's namespace, no flag naming the daemon. */
  const route = (prefix: string) => {
    const r = runSync("ip", [
      ...["netns", "exec", n1.name, join(BIN, "ocelot"), "routes", prefix, "--json"],
    ]);
    return { status: r.status, out: JSON.parse(r.stdout || "null") as RouteJson | null };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-routes-err-"));
    store = new SqliteDatastore(join(dir, "store.db"));
    await new ResourceClient(store).write("apply", {
      apiVersion: "projectcalico.org/v3",
      kind: "BGPPeer",
      metadata: { name: "bird" },
      spec: { peerIP: BIRD_IP, asNumber: BIRD_AS, keepaliveTime: "3s" },
    });
    lab = new PeerLab();
    birdNs = Netns.create("reb");
    n1 = Netns.create("re1");
    link(n1, "eth0", `${N1}/24`, birdNs, "p1", `${BIRD_IP}/24`);
    bird = lab.startBird(birdNs, "bird", birdConf);
    daemon = await startNode(n1, [
      ...["--nodename", "node1", "--ip", `${N1}/24`],
      ...["--datastore", `file:${join(dir, "store.db")}`],
    ]);
  });

  afterAll(async () => {
    await daemon?.stop();
    lab?.cleanup();
    for (const n of [n1, birdNs]) n?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the refused route: failed with ENETUNREACH; the other installed", async () => {
    await waitFor(
      `${GOOD} in node1's kernel and ${BAD} refused`,
      () =>
        routes(n1, "201").some((r) => r.dst === GOOD) && route(BAD).out?.kernel.state === "failed",
      30_000,
      250,
    );
    expect(bird.cmd("show", "route", "export", "node1", "count")).toMatch(/\b2 of \d+ routes/);
    const good = route(GOOD);
    expect(good.status).toBe(0);
    expect(good.out?.kernel).toMatchObject({ state: "installed", found: [BIRD_IP] });
    const bad = route(BAD);
    expect(bad.status).toBe(1);
    expect(bad.out?.route?.nexthops).toEqual([FAR_GW]);
    expect(bad.out?.kernel).toMatchObject({
      state: "failed",
      found: [],
      error: { code: "ENETUNREACH", reason: "Network is unreachable" },
    });
    expect(routes(n1, "201").some((r) => r.dst === BAD)).toBe(false);
  });
});
