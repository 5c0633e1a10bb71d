// Graceful restart (RFC 4724) between `ocelot bgpd` and BIRD 2, both ways, over eBGP/IPv4:
// 1. Ocelot restarts (SIGKILL, then started again with one of its two prefixes gone): BIRD, the
//    helper, keeps both our prefixes while we are away; our kernel keeps BIRD's route; the new
//    process announces the R bit, defers its updates until BIRD's End-of-RIB, and after our
//    End-of-RIB BIRD sweeps the prefix we no longer announce.
// 2. BIRD restarts (SIGKILL, then `bird -R` without one of its two prefixes): Ocelot, the helper,
//    keeps both of BIRD's routes in the kernel while BIRD is away and sweeps the one BIRD no longer
//    announces at BIRD's End-of-RIB.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type BirdPeer,
  kernelRoutes,
  type OcelotPeer,
  PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["bird"]);
const skip = skipWithReason("graceful restart with BIRD", reason);

const birdConf = (statics: string[]) => `
log "@DIR@/bird.log" all;
router id 10.255.14.2;
protocol device { }
protocol static s4 { ipv4; ${statics.map((p) => `route ${p} blackhole;`).join(" ")} }
protocol bgp oc4 {
  local 10.255.14.2 as 65014; neighbor 10.255.14.1 as 64512;
  hold time 9; connect retry time 1; graceful restart on;
  ipv4 { import all; export where source = RTS_STATIC; };
}`;

const ocelotConfig = (originate: string[]) => ({
  asn: 64512,
  routerId: "10.255.14.1",
  listen: { address: "0.0.0.0", port: 179 },
  peers: [
    {
      address: "10.255.14.2",
      asn: 65014,
      holdTime: 9,
      connectRetryTime: 1,
      families: ["ipv4-unicast"],
    },
  ],
  originate: originate.map((prefix) => ({ prefix })),
  fib: { enabled: true, table: "main", protocol: 201, gracefulRestartTime: 120 },
  gracefulRestart: { restartTime: 120 },
});

/** Samples `check` every 100 ms for `ms`: true only if it held at every sample. */
async function holds(ms: number, check: () => boolean): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!check()) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

describe.skipIf(skip)("graceful restart with BIRD 2", () => {
  let lab: PeerLab;
  let oc: Netns;
  let br: Netns;
  let bird: BirdPeer;
  let ocelot: OcelotPeer;

  beforeAll(() => {
    lab = new PeerLab();
    oc = Netns.create("gro");
    br = Netns.create("grb");
    link(oc, "oc-br", "10.255.14.1/30", br, "br-oc", "10.255.14.2/30");
    bird = lab.startBird(br, "bird", birdConf(["10.99.14.0/24", "10.99.15.0/24"]));
    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig(["10.244.14.0/26", "10.244.15.0/26"]));
  });

  afterAll(() => {
    lab?.cleanup();
    oc?.destroy();
    br?.destroy();
  });

  const inKernel = (dst: string) =>
    kernelRoutes(oc, 4).some((r) => r.dst === dst && r.protocol === "201");
  const birdHas = (prefix: string) =>
    bird.cmd("show", "route", "protocol", "oc4").includes(`${prefix} `);

  it("Ocelot restarts: BIRD keeps our routes, we keep BIRD's; after our End-of-RIB BIRD sweeps what we dropped", async () => {
    await waitFor("BIRD's routes in our kernel and ours in BIRD", () => {
      return (
        inKernel("10.99.14.0/24") &&
        inKernel("10.99.15.0/24") &&
        birdHas("10.244.14.0/26") &&
        birdHas("10.244.15.0/26")
      );
    });
    lab.signal(ocelot.pid, "SIGKILL");
    await waitFor("bgpd gone", () => !oc.pids().includes(ocelot.pid));
    await waitFor("BIRD to see the session down", () => bird.state("oc4") !== "Established");
    // Without graceful restart BIRD drops our routes at once (and we are gone, nobody would
    // put BIRD's back in our kernel): both hold for 3 s.
    const kept = await holds(
      3000,
      () => birdHas("10.244.14.0/26") && birdHas("10.244.15.0/26") && inKernel("10.99.14.0/24"),
    );
    expect(kept, bird.cmd("show", "route", "protocol", "oc4", "all")).toBe(true);

    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig(["10.244.14.0/26"]));
    await waitFor("BIRD to sweep the prefix we no longer announce", () => {
      return birdHas("10.244.14.0/26") && !birdHas("10.244.15.0/26");
    });
    const log = ocelot.log();
    expect(log).toContain("updates to peers wait for their End-of-RIB");
    await waitFor("our FIB's graceful hold to end", () =>
      ocelot.log().includes("All peers sent End-of-RIB"),
    );
    // BIRD's routes never left our kernel and are there after the hold.
    expect(inKernel("10.99.14.0/24") && inKernel("10.99.15.0/24")).toBe(true);
    expect(bird.state("oc4")).toBe("Established");
  });

  it("BIRD restarts: we keep its routes in the kernel and sweep the one it no longer announces", async () => {
    await ocelot.established("10.255.14.2", 60_000);
    lab.signal(bird.pid, "SIGKILL");
    await waitFor("BIRD gone", () => !br.pids().includes(bird.pid));
    await waitFor("our session down", () => ocelot.peer("10.255.14.2")?.state !== "Established");
    const kept = await holds(3000, () => inKernel("10.99.14.0/24") && inKernel("10.99.15.0/24"));
    expect(kept, ocelot.log().slice(-3000)).toBe(true);
    expect(ocelot.log()).toContain("keeping its routes as stale");

    bird = lab.startBird(br, "bird", birdConf(["10.99.14.0/24"]), ["-R"]);
    await waitFor("the route BIRD no longer announces to leave our kernel", () => {
      return inKernel("10.99.14.0/24") && !inKernel("10.99.15.0/24");
    });
    const swept = ocelot
      .log()
      .split("\n")
      .filter((l) => l.includes("Stale routes of a restarted peer removed"));
    expect(swept.at(-1)).toMatch(/"removed":1\b.*"why":"End-of-RIB"/);
    await ocelot.established("10.255.14.2", 60_000);
    expect(birdHas("10.244.14.0/26")).toBe(true);
  });
});
