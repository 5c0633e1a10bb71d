// Kernel drift under `ocelot bgpd` (issue 17): the real bgpd (fib.protocol 201, graceful-restart
// hold 60 s, `--metrics-address` on its namespace's loopback) peered with BIRD 2, which
// announces one prefix. Others then change bgpd's kernel for real, DRIFT_ROUNDS times (3; 20
// under OCELOT_SOAK=1): BIRD's route (protocol 201) deleted; routes of protocol 201 nobody
// announces added, whatever their metric, table or family. Each is read back with `ip -j route`:
// the deleted route back, the strays gone, within BOUND_MS; each repair an increment of
// ocelot_fib_routes_restored_total / ocelot_fib_routes_swept_total{fib="bgp"} on /metrics.
// Then bgpd is SIGKILLed, strays added while it is down, and the next start sweeps them once
// BIRD's End-of-RIB ends the hold, counting each. A static route and a route of protocol 202 (a
// node agent's) on the same prefix as a stray stay as they were throughout: nothing foreign
// touched.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HANG_MS } from "../helpers/limits.js";
import { httpGetIn, metricSample } from "../helpers/metrics.js";
import { type Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  closePeerLab,
  type KernelRoute,
  type OcelotPeer,
  openPeerPair,
  type PeerLab,
  peersUnavailableReason,
  staticBirdPeer,
} from "../helpers/peers.js";

const skip = skipWithReason(
  "bgpd kernel drift with BIRD",
  netnsUnavailableReason() ?? peersUnavailableReason(["bird"]),
);
const ROUNDS = Number(process.env.DRIFT_ROUNDS ?? (process.env.OCELOT_SOAK === "1" ? 20 : 3));
/** Each repair asserted within: the route watch acts in milliseconds; slack for a loaded machine. */
const BOUND_MS = 15_000;
const LEARNED = "10.99.14.0/24";

const { birdConf, config } = staticBirdPeer(14, LEARNED);

describe.skipIf(skip)("kernel drift under bgpd: repaired, swept, counted", () => {
  let lab: PeerLab;
  let oc: Netns;
  let br: Netns;
  let bgpd: OcelotPeer;
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const figures: string[] = [];

  const start = () =>
    lab.startOcelot(oc, "ocelot", config, ["--metrics-address", `127.0.0.1:${port}`]);
  const routes = (proto?: string): KernelRoute[] =>
    (["-4", "-6"] as const)
      .flatMap((f) => oc.ipJson<KernelRoute[]>(f, "route", "show", "table", "all"))
      .filter((r) => proto === undefined || r.protocol === proto);
  const ours = () =>
    routes("201")
      .map((r) => r.dst)
      .sort();
  /** The static route and the route of protocol 202 (someone else's), as they were set. */
  const foreign = () =>
    routes()
      .filter((r) => r.protocol === "static" || r.protocol === "202")
      .map((r) => `${r.protocol} ${r.dst} ${r.metric ?? ""}`)
      .sort();
  const FOREIGN = ["202 10.72.0.0/24 5", "static 10.73.0.0/24 "];
  const counter = (name: string): number => {
    const [code, text] = httpGetIn(oc, port, "/metrics");
    expect(code).toBe(200);
    return metricSample(text, `${name}{fib="bgp"}`) ?? Number.NaN;
  };
  const restored = () => counter("ocelot_fib_routes_restored_total");
  const swept = () => counter("ocelot_fib_routes_swept_total");
  /** Four routes of protocol 201 nobody announces: default metric, metric 20, table 100, IPv6. */
  const addStrays = () => {
    const via = ["via", "10.255.14.2", "proto", "201"];
    oc.ip("route", "add", "10.72.0.0/24", ...via);
    oc.ip("route", "add", "10.72.1.0/24", ...via, "metric", "20");
    oc.ip("route", "add", "10.72.2.0/24", ...via, "table", "100");
    oc.ip("-6", "route", "add", "fd72::/64", "dev", "oc-br", "proto", "201");
    return 4;
  };

  beforeAll(() => {
    ({ lab, oc, br } = openPeerPair("bdo", "bdb", "10.255.14.1/30", "10.255.14.2/30"));
    oc.ip("-6", "addr", "add", "fd00:14::1/64", "dev", "oc-br", "nodad");
    // Someone else's, present throughout: a static route, and a node agent's route of 202 on
    // the prefix of one of the strays.
    oc.ip("route", "add", "10.73.0.0/24", "via", "10.255.14.2", "proto", "static");
    oc.ip("route", "add", "10.72.0.0/24", "via", "10.255.14.2", "proto", "202", "metric", "5");
    lab.startBird(br, "bird", birdConf);
    bgpd = start();
  });

  afterAll(() => {
    closePeerLab(lab, oc, br);
    if (figures.length) console.log(figures.join("\n"));
  });

  it("converges: BIRD's route in the kernel, /metrics served", async () => {
    await waitFor("BIRD's route in our kernel", () => ours().includes(LEARNED), HANG_MS, 50);
    await waitFor(
      "the hold ended",
      () => bgpd.log().includes("All peers sent End-of-RIB"),
      HANG_MS,
    );
    expect(foreign()).toEqual(FOREIGN);
    expect(restored()).toBe(0);
  });

  it("BIRD's route deleted: put back, counted in ocelot_fib_routes_restored_total", async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const before = restored();
      const t0 = Date.now();
      oc.ip("route", "del", LEARNED, "proto", "201");
      await waitFor("the route back", () => ours().includes(LEARNED), HANG_MS, 20);
      const ms = Date.now() - t0;
      figures.push(`bgpd drift: learned route deleted, back in ${ms} ms`);
      expect(ms).toBeLessThan(BOUND_MS);
      await waitFor("counted", () => restored() > before, HANG_MS, 100);
      expect(restored()).toBe(before + 1);
    }
    expect(foreign()).toEqual(FOREIGN);
  });

  it("routes of protocol 201 nobody announces: swept whatever their metric, table or family, counted", async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const before = swept();
      const t0 = Date.now();
      const n = addStrays();
      await waitFor("the strays swept", () => ours().join() === LEARNED, HANG_MS, 20);
      const ms = Date.now() - t0;
      figures.push(`bgpd drift: ${n} strays of protocol 201 swept in ${ms} ms`);
      expect(ms).toBeLessThan(BOUND_MS);
      await waitFor("counted", () => swept() >= before + n, HANG_MS, 100);
      expect(swept()).toBe(before + n);
      expect(foreign()).toEqual(FOREIGN);
    }
  });

  it("strays added while bgpd is down: swept at the next start once the hold ends, counted", async () => {
    lab.signal(bgpd.pid, "SIGKILL");
    await waitFor("bgpd gone", () => !oc.pids().includes(bgpd.pid), HANG_MS);
    const n = addStrays();
    expect(ours()).toHaveLength(n + 1);
    const t0 = Date.now();
    bgpd = start();
    await waitFor(
      "the hold ended",
      () => bgpd.log().includes("All peers sent End-of-RIB"),
      HANG_MS,
    );
    await waitFor("the strays swept", () => ours().join() === LEARNED, HANG_MS, 20);
    figures.push(
      `bgpd drift: ${n} strays left while down swept ${Date.now() - t0} ms after the start`,
    );
    await waitFor("counted", () => swept() >= n, HANG_MS, 100);
    expect(swept()).toBe(n);
    expect(foreign()).toEqual(FOREIGN);
  });
});
