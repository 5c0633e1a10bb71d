// `ocelot bgpd` (fib.protocol 201) restarted over protocol-201 routes that no current path
// explains (issue 17): after BIRD's End-of-RIB ends the graceful-restart hold, every one of them
// is gone from the kernel whatever its metric, table or family; BIRD's route and foreign
// protocols' routes stay. Everything is read back with `ip -j route`.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["bird"]);
const skip = skipWithReason("bgpd restart sweep with BIRD", reason);

const { birdConf, config: ocelotConfig } = staticBirdPeer(13, "10.99.13.0/24");

describe.skipIf(skip)("bgpd restart sweep (issue 17)", () => {
  let lab: PeerLab;
  let oc: Netns;
  let br: Netns;
  let ocelot: OcelotPeer;

  beforeAll(() => {
    ({ lab, oc, br } = openPeerPair("swo", "swb", "10.255.13.1/30", "10.255.13.2/30"));
    oc.ip("-6", "addr", "add", "fd00:13::1/64", "dev", "oc-br", "nodad");
    lab.startBird(br, "bird", birdConf);
    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig);
  });

  afterAll(() => {
    closePeerLab(lab, oc, br);
  });

  const routes = (family: "-4" | "-6", proto?: string): KernelRoute[] =>
    oc
      .ipJson<KernelRoute[]>(family, "route", "show", "table", "all")
      .filter((r) => proto === undefined || r.protocol === proto);

  it("sweeps every protocol-201 route nobody announces after End-of-RIB, keeps BIRD's and foreign ones", async () => {
    await waitFor("BIRD's route in our kernel", () =>
      routes("-4", "201").some((r) => r.dst === "10.99.13.0/24"),
    );
    lab.signal(ocelot.pid, "SIGKILL");
    await waitFor("bgpd gone", () => !oc.pids().includes(ocelot.pid));
    const via4 = ["via", "10.255.13.2", "proto", "201"];
    oc.ip("route", "add", "10.70.0.0/24", ...via4); // the default metric
    oc.ip("route", "add", "10.70.1.0/24", ...via4, "metric", "20");
    oc.ip("route", "add", "10.70.2.0/24", ...via4, "table", "100");
    oc.ip("route", "add", "blackhole", "10.70.3.0/24", "proto", "201", "table", "3000000");
    const via6 = ["dev", "oc-br", "proto", "201"];
    oc.ip("-6", "route", "add", "fd70::/64", ...via6); // the default metric (1024)
    oc.ip("-6", "route", "add", "fd70:1::/64", ...via6, "metric", "20");
    oc.ip("-6", "route", "add", "fd70:2::/64", ...via6, "table", "100");
    oc.ip("route", "add", "10.71.0.0/24", "via", "10.255.13.2", "proto", "static");
    oc.ip("route", "add", "10.70.0.0/24", "via", "10.255.13.2", "proto", "202", "metric", "5");
    oc.ip("-6", "route", "add", "fd71::/64", "dev", "oc-br", "proto", "static");
    const foreign = () =>
      [...routes("-4"), ...routes("-6")]
        .filter((r) => r.protocol === "static" || r.protocol === "202")
        .map((r) => r.dst)
        .sort();
    expect(foreign()).toEqual(["10.70.0.0/24", "10.71.0.0/24", "fd71::/64"]);
    expect(routes("-4", "201")).toHaveLength(5);
    expect(routes("-6", "201")).toHaveLength(3);
    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig);
    await waitFor("the hold ended", () => ocelot.log().includes("All peers sent End-of-RIB"));
    await waitFor("every unexplained protocol-201 route swept", () => {
      const left = [...routes("-4", "201"), ...routes("-6", "201")].map((r) => r.dst);
      return left.length === 1 && left[0] === "10.99.13.0/24";
    });
    expect(foreign()).toEqual(["10.70.0.0/24", "10.71.0.0/24", "fd71::/64"]);
  });
});
