// Graceful restart (RFC 4724) between `ocelot bgpd` and BIRD 2, both ways, over eBGP, one IPv4 and
// one IPv6 session:
// 1. Ocelot restarts (SIGKILL, then started again with one of two prefixes per family gone): BIRD, the
//    helper, keeps both our prefixes while we are away; our kernel keeps BIRD's route; the new
//    process announces the R bit, defers its updates until BIRD's End-of-RIB, and after our
//    End-of-RIB BIRD sweeps the prefix we no longer announce.
// 2. BIRD restarts (SIGKILL, then `bird -R` without one prefix per family): Ocelot, the helper,
//    keeps both of BIRD's routes in the kernel while BIRD is away and sweeps the one BIRD no longer
//    announces at BIRD's End-of-RIB.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  holds,
  type Netns,
  netnsUnavailableReason,
  skipWithReason,
  waitFor,
} from "../helpers/netns.js";
import {
  type BirdPeer,
  closePeerLab,
  kernelRoutes,
  type OcelotPeer,
  openPeerPair,
  type PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["bird"]);
const skip = skipWithReason("graceful restart with BIRD", reason);

const birdConf = (statics: string[]) => {
  const routes = (v6: boolean) =>
    statics
      .filter((p) => p.includes(":") === v6)
      .map((p) => `route ${p} blackhole;`)
      .join(" ");
  return `
log "@DIR@/bird.log" all;
router id 10.255.14.2;
protocol device { }
protocol static s4 { ipv4; ${routes(false)} }
protocol static s6 { ipv6; ${routes(true)} }
protocol bgp oc4 {
  local 10.255.14.2 as 65014; neighbor 10.255.14.1 as 64512;
  hold time 9; connect retry time 1; graceful restart on;
  ipv4 { import all; export where source = RTS_STATIC; };
}
protocol bgp oc6 {
  local fd00:14::2 as 65014; neighbor fd00:14::1 as 64512;
  hold time 9; connect retry time 1; graceful restart on;
  ipv6 { import all; export where source = RTS_STATIC; };
}`;
};

const ocelotConfig = (originate: string[]) => ({
  asn: 64512,
  routerId: "10.255.14.1",
  listen: { address: "::", port: 179 },
  peers: [
    { address: "10.255.14.2", families: ["ipv4-unicast"] },
    { address: "fd00:14::2", families: ["ipv6-unicast"] },
  ].map((p) => ({ ...p, asn: 65014, holdTime: 9, connectRetryTime: 1 })),
  originate: originate.map((prefix) => ({ prefix })),
  fib: { enabled: true, table: "main", protocol: 201, gracefulRestartTime: 120 },
  gracefulRestart: { restartTime: 120 },
});

/** Each side's prefixes, IPv4 and IPv6: kept across the restart, or gone after it. */
const BIRD_KEPT = ["10.99.14.0/24", "fd99:14::/64"];
const BIRD_DROPPED = ["10.99.15.0/24", "fd99:15::/64"];
const OURS_KEPT = ["10.244.14.0/26", "fd00:244:14::/122"];
const OURS_DROPPED = ["10.244.15.0/26", "fd00:244:15::/122"];

describe.skipIf(skip)("graceful restart with BIRD 2", () => {
  let lab: PeerLab;
  let oc: Netns;
  let br: Netns;
  let bird: BirdPeer;
  let ocelot: OcelotPeer;

  beforeAll(() => {
    ({ lab, oc, br } = openPeerPair("gro", "grb", "10.255.14.1/30", "10.255.14.2/30"));
    oc.ip("-6", "addr", "add", "fd00:14::1/64", "dev", "oc-br", "nodad");
    br.ip("-6", "addr", "add", "fd00:14::2/64", "dev", "br-oc", "nodad");
    bird = lab.startBird(br, "bird", birdConf([...BIRD_KEPT, ...BIRD_DROPPED]));
    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig([...OURS_KEPT, ...OURS_DROPPED]));
  });

  afterAll(() => {
    closePeerLab(lab, oc, br);
  });

  const inKernel = (dst: string) =>
    kernelRoutes(oc, dst.includes(":") ? 6 : 4).some((r) => r.dst === dst && r.protocol === "201");
  const birdHas = (prefix: string) =>
    bird
      .cmd("show", "route", "protocol", prefix.includes(":") ? "oc6" : "oc4")
      .includes(`${prefix} `);
  const all = (xs: string[], f: (x: string) => boolean) => xs.every(f);
  const none = (xs: string[], f: (x: string) => boolean) => !xs.some(f);

  it("Ocelot restarts: BIRD keeps our routes, we keep BIRD's; after our End-of-RIB BIRD sweeps what we dropped", async () => {
    const birds = [...BIRD_KEPT, ...BIRD_DROPPED];
    const ours = [...OURS_KEPT, ...OURS_DROPPED];
    await waitFor("BIRD's routes in our kernel and ours in BIRD (IPv4 and IPv6)", () => {
      return all(birds, inKernel) && all(ours, birdHas);
    });
    lab.signal(ocelot.pid, "SIGKILL");
    await waitFor("bgpd gone", () => !oc.pids().includes(ocelot.pid));
    await waitFor(
      "BIRD to see both sessions down",
      () => bird.state("oc4") !== "Established" && bird.state("oc6") !== "Established",
    );
    // Without graceful restart BIRD drops our routes at once (and we are gone, nobody would
    // put BIRD's back in our kernel): both hold for 3 s.
    const kept = await holds(3000, () => all(ours, birdHas) && all(birds, inKernel));
    expect(kept, bird.cmd("show", "route", "all")).toBe(true);

    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig(OURS_KEPT));
    await waitFor("BIRD to sweep the prefixes we no longer announce", () => {
      return all(OURS_KEPT, birdHas) && none(OURS_DROPPED, birdHas);
    });
    expect(ocelot.log()).toContain("updates to peers wait for their End-of-RIB");
    await waitFor("our FIB's graceful hold to end", () =>
      ocelot.log().includes("All peers sent End-of-RIB"),
    );
    // BIRD's routes never left our kernel and are there after the hold.
    expect(all(birds, inKernel)).toBe(true);
    expect([bird.state("oc4"), bird.state("oc6")]).toEqual(["Established", "Established"]);
  });

  it("BIRD restarts: we keep its routes in the kernel and sweep the ones it no longer announces", async () => {
    const birds = [...BIRD_KEPT, ...BIRD_DROPPED];
    await ocelot.established("10.255.14.2", 60_000);
    await ocelot.established("fd00:14::2", 60_000);
    lab.signal(bird.pid, "SIGKILL");
    await waitFor("BIRD gone", () => !br.pids().includes(bird.pid));
    await waitFor(
      "our sessions down",
      () =>
        ocelot.peer("10.255.14.2")?.state !== "Established" &&
        ocelot.peer("fd00:14::2")?.state !== "Established",
    );
    const kept = await holds(3000, () => all(birds, inKernel));
    expect(kept, ocelot.log().slice(-3000)).toBe(true);
    expect(ocelot.log()).toContain("keeping its routes as stale");

    bird = lab.startBird(br, "bird", birdConf(BIRD_KEPT), ["-R"]);
    let keptThroughout = true;
    await waitFor("the routes BIRD no longer announces to leave our kernel", () => {
      keptThroughout &&= all(BIRD_KEPT, inKernel);
      return all(BIRD_KEPT, inKernel) && none(BIRD_DROPPED, inKernel);
    });
    expect(keptThroughout).toBe(true);
    const swept = ocelot
      .log()
      .split("\n")
      .filter((l) => l.includes("Stale routes of a restarted peer removed"));
    expect(swept.slice(-2).map((l) => /"removed":1\b.*"why":"End-of-RIB"/.test(l))).toEqual([
      true,
      true,
    ]);
    await ocelot.established("10.255.14.2", 60_000);
    expect(all(OURS_KEPT, birdHas)).toBe(true);
  });
});
