// Flap-free reconfiguration and dual-stack listening against FRR (zebra + bgpd): `ocelot bgpd`
// is given no `listen`, so it listens on "::" for both families, and FRR reaches it over IPv4
// and over IPv6 (FRR connects; our IPv6 peer is passive). A new import filter put in by SIGHUP
// is applied without a reset: the sessions' uptime survives, FRR receives a ROUTE-REFRESH and
// answers with BoRR, its routes and EoRR (RFC 7313), and the kernel holds exactly what the new
// filter lets through. A change of hold time then resets the session, and `ocelot status` names
// that field.
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type FrrPeer,
  kernelRoutes,
  type OcelotPeer,
  PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["frr"]);
const skip = skipWithReason("route refresh and dual-stack listen with FRR", reason);

const OC4 = "10.255.21.1";
const FRR4 = "10.255.21.0";
const OC6 = "fd00:255:21::2";
const FRR6 = "fd00:255:21::1";

const frrConf = `frr defaults traditional
hostname frr
!
router bgp 65021
 bgp router-id ${FRR4}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor ${OC4} remote-as 64521
 neighbor ${OC4} timers 3 9
 neighbor ${OC4} timers connect 1
 neighbor ${OC4} advertisement-interval 0
 neighbor ${OC6} remote-as 64521
 neighbor ${OC6} timers 3 9
 neighbor ${OC6} timers connect 1
 neighbor ${OC6} advertisement-interval 0
 address-family ipv4 unicast
  network 10.97.1.0/24
  network 10.97.2.0/24
  no neighbor ${OC6} activate
 exit-address-family
 address-family ipv6 unicast
  network fd00:97:1::/64
  network fd00:97:2::/64
  neighbor ${OC6} activate
 exit-address-family
exit
!
`;

function ocelotConfig(v4Peer: object = {}) {
  return {
    asn: 64521,
    routerId: OC4,
    // No `listen`: the default must take FRR's IPv6 connection too.
    peers: [
      {
        address: FRR4,
        asn: 65021,
        holdTime: 9,
        connectRetryTime: 1,
        families: ["ipv4-unicast"],
        ...v4Peer,
      },
      {
        address: FRR6,
        asn: 65021,
        holdTime: 9,
        passive: true,
        families: ["ipv6-unicast"],
        importFilter: {
          rules: [{ action: "Reject", cidr: "fd00:97:2::/64", matchOperator: "Equal" }],
        },
      },
    ],
    fib: { enabled: true, table: "main", protocol: 201, gracefulRestartTime: 0 },
  };
}

describe.skipIf(skip)("route refresh and dual-stack listen with FRR", () => {
  let lab: PeerLab;
  let oc: Netns;
  let fr: Netns;
  let frr: FrrPeer;
  let ocelot: OcelotPeer;

  beforeAll(() => {
    lab = new PeerLab();
    oc = Netns.create("rfo");
    fr = Netns.create("rff");
    link(fr, "fr-oc", `${FRR4}/31`, oc, "oc-fr", `${OC4}/31`);
    fr.ip("addr", "add", `${FRR6}/64`, "dev", "fr-oc", "nodad");
    oc.ip("addr", "add", `${OC6}/64`, "dev", "oc-fr", "nodad");
    frr = lab.startFrr(fr, "frr", frrConf);
    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig());
  });

  afterAll(() => {
    if (process.env.KEEP_PEERS) console.warn(`peer files kept in ${lab?.dir}`);
    lab?.cleanup();
    oc?.destroy();
    fr?.destroy();
  });

  const proto201 = (f: 4 | 6) =>
    kernelRoutes(oc, f)
      .filter((r) => r.protocol === "201")
      .map((r) => r.dst)
      .sort();
  const refreshesReceivedByFrr = () => {
    const j = frr.vtyshJson<Record<string, { messageStats?: { routeRefreshRecv?: number } }>>(
      `show bgp neighbors ${OC4} json`,
    );
    return j[OC4]?.messageStats?.routeRefreshRecv ?? 0;
  };

  it("listens on both families by default: FRR's IPv6 connection gets a session", async () => {
    await ocelot.established(FRR4, 60_000);
    await ocelot.established(FRR6, 60_000);
    expect(ocelot.status().listen).toMatchObject({ address: "::", port: 179 });
    expect(ocelot.peer(FRR4)?.negotiated).toMatchObject({
      routeRefresh: true,
      enhancedRouteRefresh: true,
    });
    await waitFor(
      "FRR's routes in our kernel",
      () => proto201(4).length === 2 && proto201(6).length === 1,
      30_000,
    );
    expect(proto201(4)).toEqual(["10.97.1.0/24", "10.97.2.0/24"]);
    expect(proto201(6)).toEqual(["fd00:97:1::/64"]);
  });

  it("applies a new import filter on SIGHUP by route refresh: uptime survives, the kernel follows", async () => {
    const before = ocelot.peer(FRR4);
    const before6 = ocelot.peer(FRR6);
    const rrBefore = refreshesReceivedByFrr();
    writeFileSync(
      ocelot.configPath,
      JSON.stringify({
        status: { socket: ocelot.socket },
        ...ocelotConfig({
          importFilter: {
            rules: [{ action: "Reject", cidr: "10.97.2.0/24", matchOperator: "Equal" }],
          },
        }),
      }),
    );
    lab.signal(ocelot.pid, "SIGHUP");
    await waitFor("10.97.2.0/24 gone from our kernel", () => proto201(4).length === 1, 30_000);
    expect(proto201(4)).toEqual(["10.97.1.0/24"]);
    await waitFor("FRR received a ROUTE-REFRESH", () => refreshesReceivedByFrr() > rrBefore);
    // FRR answers with BoRR, its table and EoRR (enhanced route refresh).
    await waitFor("BoRR and EoRR from FRR handled", () =>
      /Peer ended a route refresh/.test(ocelot.log()),
    );
    expect(ocelot.log()).toMatch(/Peer began a route refresh/);
    expect(ocelot.log()).toMatch(/"field":"importFilter"[^\n]*Config change applied by refresh/);
    const after = ocelot.peer(FRR4);
    expect(after?.state).toBe("Established");
    expect(after?.establishedTransitions).toBe(before?.establishedTransitions);
    expect(after?.uptimeSeconds as number).toBeGreaterThanOrEqual(before?.uptimeSeconds as number);
    expect(ocelot.peer(FRR6)?.establishedTransitions).toBe(before6?.establishedTransitions);
    // Still the filter's result after the refresh settled: the rejected route stays out.
    expect(proto201(4)).toEqual(["10.97.1.0/24"]);
    expect(frr.state(OC4)).toBe("Established");
  });

  it("resets the session for a hold time change and names the field in `ocelot status`", async () => {
    writeFileSync(
      ocelot.configPath,
      JSON.stringify({ status: { socket: ocelot.socket }, ...ocelotConfig({ holdTime: 12 }) }),
    );
    lab.signal(ocelot.pid, "SIGHUP");
    await waitFor(
      "session re-established after the reset",
      () => {
        const p = ocelot.peer(FRR4);
        return p?.state === "Established" && p.lastConfigReset !== undefined;
      },
      60_000,
    );
    expect(ocelot.peer(FRR4)?.lastConfigReset).toMatchObject({ field: "holdTime" });
    expect(ocelot.statusText()).toMatch(
      new RegExp(`${FRR4.replaceAll(".", "\\.")}: session reset by a change of holdTime`),
    );
    expect(ocelot.log()).toMatch(/"field":"holdTime"[^\n]*Config change resets the session/);
    // The filter is gone with that config: both routes back. The IPv6 session was not touched.
    await waitFor("10.97.2.0/24 back", () => proto201(4).length === 2, 30_000);
  });
});
