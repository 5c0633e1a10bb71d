// Long-lived graceful restart (RFC 9494) with Ocelot as the restarting speaker and BIRD 2 as the
// helper (`long lived graceful restart on`), over eBGP, one IPv4 and one IPv6 session. Our
// restart time is 2 s, our long-lived stale time 20 s, our FIB's own hold 1 s:
// 1. `ocelot bgpd` is SIGKILLed and stays away past its restart time (about 6 s): BIRD keeps our
//    routes, tagged LLGR_STALE (65535:6) once the 2 s are over; our kernel keeps BIRD's. Started
//    again (one prefix per family no longer originated), our routes in BIRD are fresh again (no
//    65535:6) and the dropped ones swept after our End-of-RIB; BIRD's never left our kernel.
// 2. SIGKILLed again and started while BIRD is stopped (SIGSTOP: it cannot re-send its table):
//    our kernel keeps BIRD's routes past the FIB's 1 s (the hold is our restart time plus the
//    long-lived stale time, 22 s, as long as BIRD keeps ours); BIRD continued, they are kept and
//    the hold ends at its End-of-RIB.
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
const skip = skipWithReason("long-lived graceful restart with BIRD", reason);

const BIRD_ROUTES = ["10.99.16.0/24", "fd99:16::/64"];
const OURS_KEPT = ["10.244.16.0/26", "fd00:244:16::/122"];
const OURS_DROPPED = ["10.244.17.0/26", "fd00:244:17::/122"];

const birdConf = () => {
  const routes = (v6: boolean) =>
    BIRD_ROUTES.filter((p) => p.includes(":") === v6)
      .map((p) => `route ${p} blackhole;`)
      .join(" ");
  const common =
    "hold time 9; connect retry time 1; graceful restart on; long lived graceful restart on; long lived stale time 20;";
  return `
log "@DIR@/bird.log" all;
router id 10.255.16.2;
protocol device { }
protocol static s4 { ipv4; ${routes(false)} }
protocol static s6 { ipv6; ${routes(true)} }
protocol bgp oc4 {
  local 10.255.16.2 as 65016; neighbor 10.255.16.1 as 64512; ${common}
  ipv4 { import all; export where source = RTS_STATIC; };
}
protocol bgp oc6 {
  local fd00:16::2 as 65016; neighbor fd00:16::1 as 64512; ${common}
  ipv6 { import all; export where source = RTS_STATIC; };
}`;
};

const ocelotConfig = (originate: string[]) => ({
  asn: 64512,
  routerId: "10.255.16.1",
  listen: { address: "::", port: 179 },
  peers: [
    { address: "10.255.16.2", families: ["ipv4-unicast"] },
    { address: "fd00:16::2", families: ["ipv6-unicast"] },
  ].map((p) => ({ ...p, asn: 65016, holdTime: 9, connectRetryTime: 1, longLivedStaleTime: 20 })),
  originate: originate.map((prefix) => ({ prefix })),
  fib: { enabled: true, table: "main", protocol: 201, gracefulRestartTime: 1 },
  gracefulRestart: { restartTime: 2 },
});

describe.skipIf(skip)("long-lived graceful restart with BIRD 2 as the helper", () => {
  let lab: PeerLab;
  let oc: Netns;
  let br: Netns;
  let bird: BirdPeer;
  let ocelot: OcelotPeer;
  let birdStopped = false;

  beforeAll(() => {
    ({ lab, oc, br } = openPeerPair("llo", "llb", "10.255.16.1/30", "10.255.16.2/30"));
    oc.ip("-6", "addr", "add", "fd00:16::1/64", "dev", "oc-br", "nodad");
    br.ip("-6", "addr", "add", "fd00:16::2/64", "dev", "br-oc", "nodad");
    bird = lab.startBird(br, "bird", birdConf());
    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig([...OURS_KEPT, ...OURS_DROPPED]));
  });

  afterAll(() => {
    if (birdStopped) lab?.signal(bird.pid, "SIGCONT");
    closePeerLab(lab, oc, br);
  });

  const inKernel = (dst: string) =>
    kernelRoutes(oc, dst.includes(":") ? 6 : 4).some((r) => r.dst === dst && r.protocol === "201");
  /** BIRD's `show route PREFIX all` from our session: the route's lines, "" when it has none. */
  const birdRoute = (prefix: string) => {
    const proto = prefix.includes(":") ? "oc6" : "oc4";
    let out = "";
    try {
      out = bird.cmd("show", "route", prefix, "protocol", proto, "all");
    } catch {
      return ""; // birdc fails with "Network not found"
    }
    return out.includes(`${prefix} `) ? out : "";
  };
  const llgrStale = (prefix: string) => /BGP\.community:.*\(65535,6\)/.test(birdRoute(prefix));
  const fresh = (prefix: string) => birdRoute(prefix) !== "" && !llgrStale(prefix);
  const all = (xs: string[], f: (x: string) => boolean) => xs.every(f);
  const none = (xs: string[], f: (x: string) => boolean) => !xs.some(f);
  const ours = [...OURS_KEPT, ...OURS_DROPPED];

  it("away past our restart time: BIRD keeps our routes as LLGR_STALE, fresh again when we are back", async () => {
    await waitFor("BIRD's routes in our kernel and ours in BIRD (IPv4 and IPv6)", () => {
      return all(BIRD_ROUTES, inKernel) && all(ours, fresh);
    });
    expect(bird.cmd("show", "protocols", "all", "oc4")).toMatch(/LL stale time:\s+20/);
    lab.signal(ocelot.pid, "SIGKILL");
    const killedAt = Date.now();
    await waitFor("bgpd gone", () => !oc.pids().includes(ocelot.pid));
    await waitFor("BIRD to tag our routes LLGR_STALE (our restart time is over)", () =>
      all(ours, llgrStale),
    );
    const taggedAfter = (Date.now() - killedAt) / 1000;
    // Tagged once our 2 s restart time is over, not before.
    expect(taggedAfter).toBeGreaterThanOrEqual(1.5);
    // Away until 6 s after the kill: BIRD keeps them, we keep BIRD's.
    const kept = await holds(
      Math.max(0, killedAt + 6000 - Date.now()),
      () => all(ours, llgrStale) && all(BIRD_ROUTES, inKernel),
    );
    expect(kept, bird.cmd("show", "route", "all")).toBe(true);

    const before = ocelot.log().length;
    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig(OURS_KEPT));
    const back = (Date.now() - killedAt) / 1000;
    let keptThroughout = true;
    await waitFor("our routes fresh in BIRD and the ones we dropped swept", () => {
      keptThroughout &&= all(OURS_KEPT, (p) => birdRoute(p) !== "") && all(BIRD_ROUTES, inKernel);
      return all(OURS_KEPT, fresh) && none(OURS_DROPPED, (p) => birdRoute(p) !== "");
    });
    expect(keptThroughout).toBe(true);
    // Back within the long-lived stale time (20 s), past the restart time (2 s).
    expect(back).toBeGreaterThan(2);
    expect(back).toBeLessThan(20);
    console.log(
      `LLGR restart: our routes tagged LLGR_STALE in BIRD ${taggedAfter.toFixed(1)} s after SIGKILL; started again after ${back.toFixed(1)} s`,
    );
    await waitFor("our FIB's graceful hold to end at BIRD's End-of-RIB", () =>
      ocelot.log().slice(before).includes("All peers sent End-of-RIB"),
    );
    expect(all(BIRD_ROUTES, inKernel)).toBe(true);
    expect(ocelot.log().slice(before)).toContain("updates to peers wait for their End-of-RIB");
  });

  it("BIRD not back when we restart: our kernel keeps its routes past the FIB's own hold", async () => {
    await ocelot.established("10.255.16.2", 60_000);
    await ocelot.established("fd00:16::2", 60_000);
    await waitFor("BIRD's routes in our kernel", () => all(BIRD_ROUTES, inKernel));
    lab.signal(ocelot.pid, "SIGKILL");
    await waitFor("bgpd gone", () => !oc.pids().includes(ocelot.pid));
    lab.signal(bird.pid, "SIGSTOP");
    birdStopped = true;
    const before = ocelot.log().length;
    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig(OURS_KEPT));
    const started = Date.now();
    const newLog = () => ocelot.log().slice(before);
    // fib.gracefulRestartTime is 1 s: without the long-lived hold they would go after 1 s.
    const kept = await holds(5000, () => all(BIRD_ROUTES, inKernel));
    expect(kept, newLog().slice(-3000)).toBe(true);
    expect(newLog()).not.toContain("All peers sent End-of-RIB");
    lab.signal(bird.pid, "SIGCONT");
    birdStopped = false;
    let keptThroughout = true;
    await waitFor("BIRD's End-of-RIB to end our FIB's hold", () => {
      keptThroughout &&= all(BIRD_ROUTES, inKernel);
      return newLog().includes("All peers sent End-of-RIB");
    });
    expect(keptThroughout).toBe(true);
    console.log(
      `LLGR restart with BIRD stopped: BIRD's routes kept in our kernel, hold ended at its End-of-RIB ${((Date.now() - started) / 1000).toFixed(1)} s after our start`,
    );
    await waitFor("our routes fresh in BIRD", () => all(OURS_KEPT, fresh));
    expect(all(BIRD_ROUTES, inKernel)).toBe(true);
  });
});
