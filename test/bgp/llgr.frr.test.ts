// Long-lived graceful restart (RFC 9494), Ocelot as helper, with FRR 8 as the restarting peer
// (eBGP, `bgp graceful-restart restart-time 4` and `bgp long-lived-graceful-restart stale-time`)
// and BIRD 2 as a third peer without LLGR (iBGP, `long lived graceful restart off`):
// 1. FRR's bgpd is SIGKILLed (no NOTIFICATION). After its restart time its routes stay in our
//    RIB and kernel tagged LLGR_STALE; the one FRR sent with NO_LLGR is gone; a prefix BIRD also
//    announces moves to BIRD's path (LLGR_STALE least preferred, though eBGP beats iBGP
//    otherwise); BIRD has the LLGR_STALE routes withdrawn. A SIGHUP turns on RFC 9494 §4.6's
//    partial deployment for BIRD (`llgrPartialDeployment`): BIRD gets the LLGR_STALE route back
//    with NO_EXPORT and LOCAL_PREF 0, its session not reset.
// 2. bgpd starts again announcing one prefix less: after its End-of-RIB the LLGR-stale path it
//    did not re-send is swept; what it re-sent is fresh again (BIRD has it back).
// 3. bgpd is SIGKILLed again (its new stale time 8 s, short: the time to wait, not the value, is
//    what is tested): at restart time + long-lived stale time its routes leave our kernel.
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FRR_BIN, readPidFile } from "../../src/lib/frr.js";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type BirdPeer,
  type FrrPeer,
  kernelRoutes,
  type OcelotPeer,
  PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["frr", "bird"]);
const skip = skipWithReason("long-lived graceful restart with FRR and BIRD", reason);

const ONLY_FRR = "10.98.17.0/24";
const NO_LLGR = "10.98.18.0/24";
const BOTH = "10.98.19.0/24";
/** FRR's long-lived stale time after its restart (step 3 waits restart time 4 s + this). */
const STALE_S = 8;

const frrConf = (networks: string[], staleTime: number) => `frr defaults traditional
hostname frr
!
router bgp 65017
 bgp router-id 10.255.17.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 bgp graceful-restart
 bgp graceful-restart restart-time 4
 bgp graceful-restart preserve-fw-state
 bgp long-lived-graceful-restart stale-time ${staleTime}
 neighbor 10.255.17.1 remote-as 64512
 neighbor 10.255.17.1 timers 3 9
 neighbor 10.255.17.1 timers connect 1
 neighbor 10.255.17.1 advertisement-interval 0
 address-family ipv4 unicast
${networks.map((n) => `  network ${n}${n === NO_LLGR ? " route-map nollgr" : ""}`).join("\n")}
 exit-address-family
exit
!
route-map nollgr permit 10
 set community no-llgr
exit
!
`;

const birdConf = `
log "@DIR@/bird.log" all;
router id 10.255.18.2;
protocol device { }
protocol static s4 { ipv4; route ${BOTH} blackhole; }
protocol bgp oc4 {
  local 10.255.18.2 as 64512; neighbor 10.255.18.1 as 64512;
  long lived graceful restart off;
  # LOCAL_PREF 50: FRR's path to the shared prefix wins while it is not LLGR_STALE.
  ipv4 {
    import all; next hop self;
    export filter { if source != RTS_STATIC then reject; bgp_local_pref = 50; accept; };
  };
}`;

const ocelotConfig = {
  asn: 64512,
  routerId: "10.255.17.1",
  listen: { address: "0.0.0.0", port: 179 },
  peers: [
    {
      address: "10.255.17.2",
      asn: 65017,
      holdTime: 9,
      connectRetryTime: 1,
      families: ["ipv4-unicast"],
      longLivedStaleTime: 600,
    },
    { address: "10.255.18.2", asn: 64512, connectRetryTime: 1, families: ["ipv4-unicast"] },
  ] as Record<string, unknown>[],
  fib: { enabled: true, table: "main", protocol: 201, gracefulRestartTime: 120 },
};

interface RouteRow {
  prefix: string;
  best: { peer: string; communities: string[] };
  reason: string;
}

describe.skipIf(skip)("long-lived graceful restart with FRR and BIRD", () => {
  let lab: PeerLab;
  let oc: Netns;
  let fr: Netns;
  let bd: Netns;
  let frr: FrrPeer;
  let bird: BirdPeer;
  let bgpdPid: number;
  let ocelot: OcelotPeer;

  beforeAll(() => {
    lab = new PeerLab();
    oc = Netns.create("llo");
    fr = Netns.create("llf");
    bd = Netns.create("llb");
    link(oc, "oc-fr", "10.255.17.1/30", fr, "fr-oc", "10.255.17.2/30");
    link(oc, "oc-bd", "10.255.18.1/30", bd, "bd-oc", "10.255.18.2/30");
    frr = lab.startFrr(fr, "frr", frrConf([ONLY_FRR, NO_LLGR, BOTH], 600));
    bgpdPid = frr.bgpdPid;
    bird = lab.startBird(bd, "bird", birdConf);
    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig);
  });

  afterAll(() => {
    // LLGR_DEBUG=1: the state of every side at the end, to read a failure.
    if (process.env.LLGR_DEBUG) {
      try {
        console.log(JSON.stringify(kernelRoutes(oc, 4)));
        console.log(bird.cmd("show", "route", "all"));
        console.log(bird.cmd("show", "protocols", "all", "oc4"));
        console.log(ocelot.log().slice(-6000));
        console.log(frr.vtysh("show bgp ipv4 unicast"));
      } catch (e) {
        console.log(e);
      }
    }
    lab?.cleanup();
    oc?.destroy();
    fr?.destroy();
    bd?.destroy();
  });

  const kernelVia = (dst: string) =>
    kernelRoutes(oc, 4)
      .filter((r) => r.dst === dst && r.protocol === "201")
      .map((r) => r.gateway ?? "");
  const row = (prefix: string) =>
    (ocelot.routes().routes as unknown as RouteRow[]).find((r) => r.prefix === prefix);
  /** BIRD holds the prefix (birdc exits non-zero with "Network not found"). */
  const birdHas = (prefix: string) => {
    try {
      return bird.route(prefix).includes(prefix);
    } catch (e) {
      if (String(e).includes("not found") || String(e).includes("Command failed")) return false;
      throw e;
    }
  };

  const restartBgpd = (networks: string[], staleTime: number) => {
    writeFileSync(join(frr.dir, "bgpd.conf"), frrConf(networks, staleTime));
    const pidFile = join(frr.dir, "bgpd.pid");
    rmSync(pidFile, { force: true });
    fr.exec(
      join(FRR_BIN, "bgpd"),
      ...["-d", "-N", fr.name, "-P", "0", "-f", join(frr.dir, "bgpd.conf")],
      ...["-i", pidFile, "--log", `file:${join(frr.dir, "bgpd.log")}`],
    );
    bgpdPid = readPidFile(pidFile);
    lab.track(bgpdPid, "bgpd", `bgpd@${fr.name}`);
  };

  const killBgpd = async () => {
    lab.signal(bgpdPid, "SIGKILL");
    await waitFor("FRR's bgpd gone", () => !fr.pids().includes(bgpdPid));
    await waitFor("our session down", () => ocelot.peer("10.255.17.2")?.state !== "Established");
  };

  it("after FRR's restart time its routes stay LLGR_STALE, least preferred, withdrawn from BIRD; NO_LLGR ones go", async () => {
    await ocelot.established("10.255.17.2", 60_000);
    await ocelot.established("10.255.18.2", 60_000);
    await waitFor("FRR's routes in our kernel and passed on to BIRD", () => {
      return (
        kernelVia(ONLY_FRR)[0] === "10.255.17.2" &&
        kernelVia(NO_LLGR)[0] === "10.255.17.2" &&
        kernelVia(BOTH)[0] === "10.255.17.2" &&
        birdHas(ONLY_FRR) &&
        birdHas(NO_LLGR)
      );
    });
    const caps = JSON.stringify(frr.vtyshJson("show bgp neighbors 10.255.17.1 json"));
    expect(caps).toMatch(/longLivedGracefulRestart|llgr/i);

    await killBgpd();
    await waitFor("the long-lived phase", () =>
      ocelot.log().includes("keeping its routes as LLGR_STALE"),
    );
    await waitFor("BIRD's path for the shared prefix in our kernel", () => {
      return kernelVia(BOTH)[0] === "10.255.18.2" && kernelVia(NO_LLGR).length === 0;
    });
    const only = row(ONLY_FRR);
    expect(only?.best, JSON.stringify(ocelot.routes())).toMatchObject({ peer: "10.255.17.2" });
    expect(only?.best.communities).toContain("65535:6");
    expect(kernelVia(ONLY_FRR)).toEqual(["10.255.17.2"]);
    expect(row(BOTH)).toMatchObject({ best: { peer: "10.255.18.2" }, reason: "LlgrStale" });
    expect(row(NO_LLGR)).toBeUndefined();
    const ll = ocelot
      .log()
      .split("\n")
      .find((l) => l.includes("keeping its routes as LLGR_STALE"));
    expect(ll).toMatch(/"kept":2\b.*"removedNoLlgr":1\b.*"longLivedStaleTime":600\b/);
    expect(ocelot.peer("10.255.17.2")?.staleFamilies).toEqual([
      { family: "ipv4-unicast", timer: "LongLivedStaleTimer" },
    ]);
    // BIRD (no LLGR) has them withdrawn.
    await waitFor(
      "BIRD to lose the LLGR_STALE routes",
      () => !birdHas(ONLY_FRR) && !birdHas(NO_LLGR),
    );

    // §4.6: BIRD (iBGP, no LLGR) may get them with NO_EXPORT and LOCAL_PREF 0.
    const transitions = ocelot.peer("10.255.18.2")?.establishedTransitions;
    const partial = {
      ...ocelotConfig,
      peers: ocelotConfig.peers.map((p) =>
        p.address === "10.255.18.2" ? { ...p, llgrPartialDeployment: true } : p,
      ),
    };
    writeFileSync(
      ocelot.configPath,
      `${JSON.stringify({ status: { socket: ocelot.socket }, ...partial }, null, 2)}\n`,
    );
    lab.signal(ocelot.pid, "SIGHUP");
    await waitFor("BIRD to get the LLGR_STALE route with NO_EXPORT and LOCAL_PREF 0", () => {
      const r = birdHas(ONLY_FRR) ? bird.route(ONLY_FRR) : "";
      return (
        /BGP\.community:.*\(65535,6\)/.test(r) &&
        /BGP\.community:.*\(65535,65281\)/.test(r) &&
        /BGP\.local_pref: 0\b/.test(r)
      );
    });
    expect(birdHas(NO_LLGR)).toBe(false);
    expect(ocelot.peer("10.255.18.2")?.establishedTransitions).toBe(transitions);
  });

  it("FRR comes back without the shared prefix: swept after its End-of-RIB, the rest fresh again", async () => {
    restartBgpd([ONLY_FRR], STALE_S);
    await waitFor("the sweep at FRR's End-of-RIB", () =>
      ocelot.log().includes('"why":"End-of-RIB"'),
    );
    await waitFor("fresh routes", () => {
      const r = row(ONLY_FRR);
      return r !== undefined && !r.best.communities.includes("65535:6");
    });
    expect(kernelVia(ONLY_FRR)).toEqual(["10.255.17.2"]);
    expect(kernelVia(BOTH)).toEqual(["10.255.18.2"]);
    const b = row(BOTH);
    expect(b).toMatchObject({ best: { peer: "10.255.18.2" } });
    expect(b?.reason).not.toBe("LlgrStale");
    const swept = ocelot
      .log()
      .split("\n")
      .filter((l) => l.includes("Stale routes of a restarted peer removed"));
    expect(swept.at(-1)).toMatch(/"removed":1\b.*"why":"End-of-RIB"/);
    await waitFor(
      "BIRD to have the fresh route again",
      () => birdHas(ONLY_FRR) && !/\(65535,6\)/.test(bird.route(ONLY_FRR)),
    );
    await ocelot.established("10.255.17.2", 60_000);
  });

  it("the long-lived stale time over (FRR away): its routes leave our kernel", async () => {
    const t0 = Date.now();
    await killBgpd();
    await waitFor(
      "the long-lived stale timer to remove FRR's route",
      () => kernelVia(ONLY_FRR).length === 0,
      120_000,
    );
    const s = (Date.now() - t0) / 1000;
    console.log(
      `LLGR: FRR's route removed ${s.toFixed(1)} s after SIGKILL (restart 4 s + ${STALE_S} s)`,
    );
    // Timers may fire a millisecond early: 11.9 s rather than 12.
    expect(s).toBeGreaterThanOrEqual(4 + STALE_S - 0.1);
    expect(ocelot.log()).toContain('"why":"LongLivedStaleTimer expired"');
    expect(kernelVia(BOTH)).toEqual(["10.255.18.2"]);
  });
});
