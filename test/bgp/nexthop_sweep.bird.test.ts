// `ocelot bgpd` (fib.protocol 201) SIGKILLed while its routes named kernel nexthop objects via
// two gateways (two BGP sessions with BIRD), then started again: with one peer gone from its
// config, the object of the gateway nobody announces any more is deleted once the graceful
// hold ends (End-of-RIB), the used one kept; with OCELOT_FIB_NEXTHOP_OBJECTS=0, the routes come
// back carrying their gateway and our last object goes too. Foreign objects (other protocols,
// and one of protocol 201 that a foreign route names) are never touched. Read back with
// `ip -j nexthop show` / `ip -j route show`. First, while bgpd runs: a peer's session going down
// takes its routes and its gateway's object; the session back makes the object again.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpGetIn, metricSample } from "../helpers/metrics.js";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type BirdPeer,
  type OcelotPeer,
  PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["bird"]);
const skip = skipWithReason("bgpd nexthop object sweep with BIRD", reason);

const birdConf = `
log "@DIR@/bird.log" all;
router id 10.255.14.2;
protocol device { }
protocol static s1 { ipv4; route 10.99.14.0/24 blackhole; }
protocol static s2 { ipv4; route 10.99.15.0/24 blackhole; }
protocol bgp p1 {
  local 10.255.14.2 as 65014; neighbor 10.255.14.1 as 64512; passive on;
  ipv4 { import all; export where proto = "s1"; };
}
protocol bgp p2 {
  local 10.255.15.2 as 65014; neighbor 10.255.15.1 as 64512; passive on;
  ipv4 { import all; export where proto = "s2"; };
}`;

const peer = (address: string) => ({
  address,
  asn: 65014,
  connectRetryTime: 1,
  families: ["ipv4-unicast"],
});
const config = (peers: string[]) => ({
  asn: 64512,
  routerId: "10.255.14.1",
  listen: { address: "0.0.0.0", port: 179 },
  peers: peers.map(peer),
  fib: { enabled: true, table: "main", protocol: 201, gracefulRestartTime: 60 },
});

interface IpNexthop {
  id: number;
  gateway?: string;
  dev?: string;
  protocol?: string;
}
interface IpRoute {
  dst: string;
  nhid?: number;
  gateway?: string;
  protocol?: string;
}

describe.skipIf(skip)("bgpd nexthop object sweep after a crash", () => {
  let lab: PeerLab;
  let oc: Netns;
  let br: Netns;
  let ocelot: OcelotPeer;
  let bird: BirdPeer;

  beforeAll(() => {
    lab = new PeerLab();
    oc = Netns.create("nho");
    br = Netns.create("nhb");
    link(oc, "oc-b1", "10.255.14.1/30", br, "b1-oc", "10.255.14.2/30");
    link(oc, "oc-b2", "10.255.15.1/30", br, "b2-oc", "10.255.15.2/30");
    bird = lab.startBird(br, "bird", birdConf);
    ocelot = lab.startOcelot(oc, "ocelot", config(["10.255.14.2", "10.255.15.2"]), [
      "--metrics-address",
      "127.0.0.1:9179",
    ]);
  });

  afterAll(() => {
    lab?.cleanup();
    oc?.destroy();
    br?.destroy();
  });

  const nexthops = (): IpNexthop[] => oc.ipJson<IpNexthop[]>("nexthop", "show");
  const routes = (): IpRoute[] => oc.ipJson<IpRoute[]>("route", "show", "table", "all");
  const ours = () => nexthops().filter((n) => n.protocol === "201");
  const named = () => new Set(routes().flatMap((r) => (r.nhid !== undefined ? [r.nhid] : [])));
  const route = (dst: string) => routes().find((r) => r.dst === dst && r.protocol === "201");
  const foreign = () =>
    nexthops()
      .filter((n) => n.protocol !== "201" || n.id === 1234)
      .map((n) => `${n.id} ${n.gateway} ${n.protocol ?? "-"}`)
      .sort();
  /** Waits until both peers' routes name a nexthop object; their ids. */
  const bothThroughObjects = async (): Promise<[number, number]> => {
    await waitFor("both routes through nexthop objects", () => {
      const a = route("10.99.14.0/24");
      const b = route("10.99.15.0/24");
      return a?.nhid !== undefined && b?.nhid !== undefined;
    });
    return [route("10.99.14.0/24")?.nhid as number, route("10.99.15.0/24")?.nhid as number];
  };
  const crash = async () => {
    lab.signal(ocelot.pid, "SIGKILL");
    await waitFor("bgpd gone", () => !oc.pids().includes(ocelot.pid));
  };

  it("a peer's session down takes its gateway's object with its routes; back up makes it again", async () => {
    const [via1, via2] = await bothThroughObjects();
    bird.cmd("disable", "p2");
    await waitFor("the route via the second peer withdrawn", () => !route("10.99.15.0/24"));
    await waitFor("its gateway's object deleted", () => !ours().some((n) => n.id === via2));
    expect(ours().map((n) => [n.id, n.gateway])).toEqual([[via1, "10.255.14.2"]]);
    expect(route("10.99.14.0/24")).toMatchObject({ nhid: via1 });
    expect(ocelot.log()).toContain('"kind":"nexthopsDeleted","count":1');
    const [code, metrics] = httpGetIn(oc, 9179, "/metrics");
    expect(code).toBe(200);
    expect(metricSample(metrics, 'ocelot_fib_nexthops_deleted_total{fib="bgp"}')).toBe(1);
    bird.cmd("enable", "p2");
    await waitFor("the route via the second peer back", () => route("10.99.15.0/24")?.nhid);
    expect(route("10.99.15.0/24")).toMatchObject({ nhid: via2, gateway: "10.255.15.2" });
    expect(ours().find((n) => n.id === via2)).toMatchObject({ gateway: "10.255.15.2" });
  });

  it("deletes the object of a gateway nobody announces after the restart's sweep, keeps the used one and foreign ones", async () => {
    const [via1, via2] = await bothThroughObjects();
    expect(
      ours()
        .map((n) => [n.id, n.gateway])
        .sort(),
    ).toEqual(
      [
        [via1, "10.255.14.2"],
        [via2, "10.255.15.2"],
      ].sort(),
    );
    await crash();
    // Not ours: another protocol's objects, and one of protocol 201 a foreign route names.
    oc.ip("nexthop", "add", "id", "77", "via", "10.255.15.2", "dev", "oc-b2", "proto", "99");
    oc.ip("nexthop", "add", "id", "78", "via", "10.255.14.2", "dev", "oc-b1", "proto", "static");
    oc.ip("nexthop", "add", "id", "1234", "via", "10.255.15.2", "dev", "oc-b2", "proto", "201");
    oc.ip("route", "add", "10.72.0.0/24", "nhid", "1234", "proto", "static");
    const before = foreign();
    expect(before).toEqual([
      "1234 10.255.15.2 201",
      "77 10.255.15.2 openr",
      "78 10.255.14.2 static",
    ]);
    // The second peer is gone from the config: nobody announces routes via 10.255.15.2.
    ocelot = lab.startOcelot(oc, "ocelot", config(["10.255.14.2"]));
    await waitFor("the hold ended", () => ocelot.log().includes("All peers sent End-of-RIB"));
    await waitFor("the unused object of ours swept", () => {
      const left = ours().map((n) => n.id);
      return !left.includes(via2) && route("10.99.15.0/24") === undefined;
    });
    // The used one kept (the route still names it), and no object of ours without a route.
    expect(route("10.99.14.0/24")).toMatchObject({ nhid: via1, gateway: "10.255.14.2" });
    const n = named();
    expect(ours().filter((o) => !n.has(o.id))).toEqual([]);
    expect(
      ours()
        .map((o) => o.id)
        .sort(),
    ).toEqual([1234, via1].sort());
    expect(foreign()).toEqual(before);
    expect(ocelot.log()).toContain('"kind":"nexthopsSwept","count":1');
  });

  it("with OCELOT_FIB_NEXTHOP_OBJECTS=0 on restart, puts the gateway back in each route and sweeps our objects", async () => {
    const via1 = route("10.99.14.0/24")?.nhid;
    expect(via1).toBeDefined();
    const before = foreign();
    await crash();
    const saved = process.env.OCELOT_FIB_NEXTHOP_OBJECTS;
    process.env.OCELOT_FIB_NEXTHOP_OBJECTS = "0";
    try {
      ocelot = lab.startOcelot(oc, "ocelot", config(["10.255.14.2"]));
    } finally {
      if (saved === undefined) delete process.env.OCELOT_FIB_NEXTHOP_OBJECTS;
      else process.env.OCELOT_FIB_NEXTHOP_OBJECTS = saved;
    }
    await waitFor("the hold ended", () => ocelot.log().includes("All peers sent End-of-RIB"));
    await waitFor("our object swept", () => !ours().some((o) => o.id === via1));
    const r = route("10.99.14.0/24");
    expect(r).toMatchObject({ gateway: "10.255.14.2" });
    expect(r?.nhid).toBeUndefined();
    // Only the object a foreign route names is left of protocol 201.
    expect(ours().map((o) => o.id)).toEqual([1234]);
    expect(foreign()).toEqual(before);
  });
});
