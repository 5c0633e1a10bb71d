// Flap-free reconfiguration and dual-stack listening against BIRD 2: `ocelot bgpd` is given no
// `listen`, so BIRD's IPv6 session (BIRD connects) reaches it on "::"; an import filter put in
// by SIGHUP is applied without a reset: the sessions' uptime survives, BIRD logs the
// ROUTE-REFRESH it got and answers with BoRR, its routes and EoRR (RFC 7313), and the kernel
// holds exactly what the new filter lets through.
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
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
const skip = skipWithReason("route refresh and dual-stack listen with BIRD", reason);

const OC4 = "10.255.22.1";
const BR4 = "10.255.22.2";
const OC6 = "fd00:255:22::1";
const BR6 = "fd00:255:22::2";

const birdConf = `
log "@DIR@/bird.log" all;
router id ${BR4};
protocol device { }
protocol static s4 { ipv4; route 10.96.1.0/24 blackhole; route 10.96.2.0/24 blackhole; }
protocol static s6 { ipv6; route fd00:96:1::/64 blackhole; route fd00:96:2::/64 blackhole; }
protocol bgp oc4 {
  local ${BR4} as 65022;
  neighbor ${OC4} as 64522;
  passive on;
  hold time 9;
  error wait time 1, 5;
  debug { states, packets };
  ipv4 { import all; export where source = RTS_STATIC; };
}
protocol bgp oc6 {
  local ${BR6} as 65022;
  neighbor ${OC6} as 64522;
  hold time 9;
  connect delay time 1; connect retry time 1;
  error wait time 1, 5;
  debug { states, packets };
  ipv6 { import all; export where source = RTS_STATIC; };
}
`;

function ocelotConfig(v6Filter: boolean) {
  return {
    asn: 64522,
    routerId: OC4,
    // No `listen`: BIRD's IPv6 connection must be taken by the default.
    peers: [
      {
        address: BR4,
        asn: 65022,
        holdTime: 9,
        connectRetryTime: 1,
        families: ["ipv4-unicast"],
      },
      {
        address: BR6,
        asn: 65022,
        holdTime: 9,
        passive: true,
        families: ["ipv6-unicast"],
        ...(v6Filter
          ? {
              importFilter: {
                rules: [{ action: "Reject", cidr: "fd00:96:2::/64", matchOperator: "Equal" }],
              },
            }
          : {}),
      },
    ],
    fib: { enabled: true, table: "main", protocol: 201, gracefulRestartTime: 0 },
  };
}

describe.skipIf(skip)("route refresh and dual-stack listen with BIRD 2", () => {
  let lab: PeerLab;
  let oc: Netns;
  let br: Netns;
  let bird: BirdPeer;
  let ocelot: OcelotPeer;

  beforeAll(() => {
    ({ lab, oc, br } = openPeerPair("rbo", "rbb", `${OC4}/30`, `${BR4}/30`));
    oc.ip("addr", "add", `${OC6}/64`, "dev", "oc-br", "nodad");
    br.ip("addr", "add", `${BR6}/64`, "dev", "br-oc", "nodad");
    bird = lab.startBird(br, "bird", birdConf);
    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig(false));
  });

  afterAll(() => {
    if (process.env.KEEP_PEERS) console.warn(`peer files kept in ${lab?.dir}`);
    closePeerLab(lab, oc, br);
  });

  const proto201 = (f: 4 | 6) =>
    kernelRoutes(oc, f)
      .filter((r) => r.protocol === "201")
      .map((r) => r.dst)
      .sort();

  it("takes BIRD's IPv6 connection on the default dual-stack listener", async () => {
    await ocelot.established(BR4, 60_000);
    await ocelot.established(BR6, 60_000);
    expect(ocelot.status().listen).toMatchObject({ address: "::", port: 179 });
    expect(ocelot.peer(BR6)?.negotiated).toMatchObject({
      routeRefresh: true,
      enhancedRouteRefresh: true,
    });
    await waitFor(
      "BIRD's routes in our kernel",
      () => proto201(4).length === 2 && proto201(6).length === 2,
      30_000,
    );
  });

  it("applies a new import filter on SIGHUP by route refresh: uptime survives, the kernel follows", async () => {
    const before4 = ocelot.peer(BR4);
    const before6 = ocelot.peer(BR6);
    writeFileSync(
      ocelot.configPath,
      JSON.stringify({ status: { socket: ocelot.socket }, ...ocelotConfig(true) }),
    );
    lab.signal(ocelot.pid, "SIGHUP");
    await waitFor("fd00:96:2::/64 gone from our kernel", () => proto201(6).length === 1, 30_000);
    expect(proto201(6)).toEqual(["fd00:96:1::/64"]);
    await waitFor("BIRD got the ROUTE-REFRESH", () => /oc6: Got ROUTE-REFRESH/.test(bird.log()));
    await waitFor("BoRR and EoRR from BIRD handled", () =>
      /Peer ended a route refresh/.test(ocelot.log()),
    );
    expect(ocelot.log()).toMatch(/Peer began a route refresh/);
    for (const [addr, before] of [
      [BR6, before6],
      [BR4, before4],
    ] as const) {
      const after = ocelot.peer(addr);
      expect(after?.state).toBe("Established");
      expect(after?.establishedTransitions).toBe(before?.establishedTransitions);
    }
    expect(bird.state("oc6")).toBe("Established");
    expect(proto201(6)).toEqual(["fd00:96:1::/64"]);
    expect(proto201(4)).toEqual(["10.96.1.0/24", "10.96.2.0/24"]);
  });
});
