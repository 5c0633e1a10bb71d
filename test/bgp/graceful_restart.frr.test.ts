// Graceful restart (RFC 4724, RFC 8538's N bit) between `ocelot bgpd` and FRR 8 (bgpd with
// `bgp graceful-restart` and preserve-fw-state), both ways, over eBGP/IPv4:
// 1. Ocelot restarts (SIGKILL, then started again with one of its two prefixes gone): FRR, the
//    helper, keeps both our prefixes while we are away; our kernel keeps FRR's route; after our
//    End-of-RIB FRR sweeps the prefix we no longer announce.
// 2. FRR's bgpd restarts (SIGKILL, then bgpd started again without one of its two networks; zebra stays):
//    Ocelot, the helper, keeps both of FRR's routes in the kernel while bgpd is away and sweeps
//    the one FRR no longer announces at its End-of-RIB.
// 3. A clean stop (SIGTERM) sends Cease as a Hard Reset (the N bit was negotiated): FRR drops our
//    routes at once instead of keeping them for the restart time.
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FRR_BIN, readPidFile } from "../../src/lib/frr.js";
import {
  holds,
  link,
  Netns,
  netnsUnavailableReason,
  skipWithReason,
  waitFor,
} from "../helpers/netns.js";
import {
  type FrrPeer,
  kernelRoutes,
  type OcelotPeer,
  PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["frr"]);
const skip = skipWithReason("graceful restart with FRR", reason);

const frrConf = (networks: string[]) => `frr defaults traditional
hostname frr
!
router bgp 65016
 bgp router-id 10.255.16.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 bgp graceful-restart
 bgp graceful-restart preserve-fw-state
 neighbor 10.255.16.1 remote-as 64512
 neighbor 10.255.16.1 timers 3 9
 neighbor 10.255.16.1 timers connect 1
 neighbor 10.255.16.1 advertisement-interval 0
 address-family ipv4 unicast
${networks.map((n) => `  network ${n}`).join("\n")}
 exit-address-family
exit
!
`;

const ocelotConfig = (originate: string[]) => ({
  asn: 64512,
  routerId: "10.255.16.1",
  listen: { address: "0.0.0.0", port: 179 },
  peers: [
    {
      address: "10.255.16.2",
      asn: 65016,
      holdTime: 9,
      connectRetryTime: 1,
      families: ["ipv4-unicast"],
    },
  ],
  originate: originate.map((prefix) => ({ prefix })),
  fib: { enabled: true, table: "main", protocol: 201, gracefulRestartTime: 120 },
  gracefulRestart: { restartTime: 120 },
});

describe.skipIf(skip)("graceful restart with FRR", () => {
  let lab: PeerLab;
  let oc: Netns;
  let fr: Netns;
  let frr: FrrPeer;
  let bgpdPid: number;
  let ocelot: OcelotPeer;

  beforeAll(() => {
    lab = new PeerLab();
    oc = Netns.create("gfo");
    fr = Netns.create("gff");
    link(oc, "oc-fr", "10.255.16.1/30", fr, "fr-oc", "10.255.16.2/30");
    frr = lab.startFrr(fr, "frr", frrConf(["10.98.16.0/24", "10.98.17.0/24"]));
    bgpdPid = frr.bgpdPid;
    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig(["10.244.16.0/26", "10.244.17.0/26"]));
  });

  afterAll(() => {
    lab?.cleanup();
    oc?.destroy();
    fr?.destroy();
  });

  const inKernel = (dst: string) =>
    kernelRoutes(oc, 4).some((r) => r.dst === dst && r.protocol === "201");
  const frrRoutes = () =>
    frr.vtyshJson<{ routes?: Record<string, unknown> }>("show bgp ipv4 unicast json").routes ?? {};
  const frrHas = (prefix: string) => prefix in frrRoutes();

  it("Ocelot restarts: FRR keeps our routes, we keep FRR's; after our End-of-RIB FRR sweeps what we dropped", async () => {
    await waitFor("FRR's routes in our kernel and ours in FRR", () => {
      return (
        inKernel("10.98.16.0/24") &&
        inKernel("10.98.17.0/24") &&
        frrHas("10.244.16.0/26") &&
        frrHas("10.244.17.0/26")
      );
    });
    lab.signal(ocelot.pid, "SIGKILL");
    await waitFor("bgpd gone", () => !oc.pids().includes(ocelot.pid));
    await waitFor("FRR to see the session down", () => frr.state("10.255.16.1") !== "Established");
    const kept = await holds(
      3000,
      () => frrHas("10.244.16.0/26") && frrHas("10.244.17.0/26") && inKernel("10.98.16.0/24"),
    );
    expect(kept, JSON.stringify(frrRoutes())).toBe(true);

    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig(["10.244.16.0/26"]));
    await waitFor("FRR to sweep the prefix we no longer announce", () => {
      return frrHas("10.244.16.0/26") && !frrHas("10.244.17.0/26");
    });
    expect(ocelot.log()).toContain("updates to peers wait for their End-of-RIB");
    await waitFor("our FIB's graceful hold to end", () =>
      ocelot.log().includes("All peers sent End-of-RIB"),
    );
    expect(inKernel("10.98.16.0/24") && inKernel("10.98.17.0/24")).toBe(true);
    expect(frr.state("10.255.16.1")).toBe("Established");
  });

  it("FRR's bgpd restarts: we keep its routes in the kernel and sweep the one it no longer announces", async () => {
    await ocelot.established("10.255.16.2", 60_000);
    lab.signal(bgpdPid, "SIGKILL");
    await waitFor("FRR's bgpd gone", () => !fr.pids().includes(bgpdPid));
    await waitFor("our session down", () => ocelot.peer("10.255.16.2")?.state !== "Established");
    const kept = await holds(3000, () => inKernel("10.98.16.0/24") && inKernel("10.98.17.0/24"));
    expect(kept, ocelot.log().slice(-3000)).toBe(true);
    expect(ocelot.log()).toContain("keeping its routes as stale");

    // bgpd alone (zebra keeps FRR's kernel routes), one network less; preserve-fw-state gives the
    // F bit we check before keeping FRR's stale routes.
    writeFileSync(join(frr.dir, "bgpd.conf"), frrConf(["10.98.16.0/24"]));
    const pidFile = join(frr.dir, "bgpd.pid");
    rmSync(pidFile, { force: true });
    fr.exec(
      join(FRR_BIN, "bgpd"),
      ...["-d", "-N", fr.name, "-P", "0", "-f", join(frr.dir, "bgpd.conf")],
      ...["-i", pidFile, "--log", `file:${join(frr.dir, "bgpd.log")}`],
    );
    bgpdPid = readPidFile(pidFile);
    lab.track(bgpdPid, "bgpd", `bgpd@${fr.name}`);
    await waitFor("the route FRR no longer announces to leave our kernel", () => {
      return inKernel("10.98.16.0/24") && !inKernel("10.98.17.0/24");
    });
    const swept = ocelot
      .log()
      .split("\n")
      .filter((l) => l.includes("Stale routes of a restarted peer removed"));
    expect(swept.at(-1)).toMatch(/"removed":1\b.*"why":"End-of-RIB"/);
    await ocelot.established("10.255.16.2", 60_000);
  });

  it("a clean stop (SIGTERM) is a Hard Reset: FRR drops our routes at once", async () => {
    await waitFor("our route in FRR", () => frrHas("10.244.16.0/26"));
    const t0 = Date.now();
    lab.stop(ocelot.pid);
    await waitFor("FRR to drop our route", () => !frrHas("10.244.16.0/26"));
    const ms = Date.now() - t0;
    console.log(`clean stop: FRR dropped our route ${ms} ms after SIGTERM`);
    expect(ocelot.log()).toMatch(/"code":6,"subcode":9.*NOTIFICATION sent/);
  });
});
