// BFD Down drops the BGP session at once (RFC 5882 §4.3): the real `ocelot bgpd` peers with
// BIRD 2 over eBGP (BIRD announces a /24, installed in our kernel under protocol 201) and runs
// BFD with FRR's bfdd on the same address in BIRD's namespace. When the BFD packets toward us
// are dropped (iptables, UDP 3784 only: TCP and BGP keepalives still flow, so only BFD can
// notice), our BFD session goes Down, the BGP session is dropped and BIRD's route leaves our
// kernel long before the 90 s hold timer would have expired, and the session is held down (not
// re-established over TCP, which still flows) while BFD is Down; once BFD packets flow again BFD
// comes Up, BGP re-establishes and the route is back.
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import { frrBfdConf, type OcelotPeer, PeerLab, peersUnavailableReason } from "../helpers/peers.js";

const reason =
  netnsUnavailableReason() ??
  peersUnavailableReason(["bird", "frr"]) ??
  (existsSync("/usr/lib/frr/bfdd") ? undefined : "/usr/lib/frr/bfdd not installed");
const skip = skipWithReason("BFD drops the BGP session (BIRD + FRR bfdd)", reason);

const OC = "10.255.15.1";
const PEER = "10.255.15.2";
const ROUTE = "10.99.15.0/24";

const birdConf = `
log "@DIR@/bird.log" all;
router id ${PEER};
protocol device { }
protocol static s4 { ipv4; route ${ROUTE} blackhole; }
protocol bgp oc {
  local ${PEER} as 65015;
  neighbor ${OC} as 64515;
  hold time 90;
  connect delay time 1; connect retry time 1;
  error wait time 1, 2;
  ipv4 { import all; export where source = RTS_STATIC; };
}
`;

const bfddConf = frrBfdConf([{ peer: OC, local: PEER }]);

describe.skipIf(skip)("BFD Down drops the BGP session", () => {
  let lab: PeerLab;
  let oc: Netns;
  let pe: Netns;
  let ocelot: OcelotPeer;

  beforeAll(() => {
    lab = new PeerLab();
    oc = Netns.create("bbo");
    pe = Netns.create("bbp");
    link(oc, "oc-pe", `${OC}/30`, pe, "pe-oc", `${PEER}/30`);
    lab.startFrrBfd(pe, "frr", bfddConf);
    lab.startBird(pe, "bird", birdConf);
    ocelot = lab.startOcelot(oc, "ocelot", {
      asn: 64515,
      routerId: OC,
      peers: [
        {
          address: PEER,
          asn: 65015,
          holdTime: 90,
          families: ["ipv4-unicast"],
          bfd: { minTx: 300, minRx: 300, multiplier: 3 },
        },
      ],
      fib: { enabled: true, table: "main", protocol: 201, gracefulRestartTime: 0 },
    });
  });

  afterAll(() => {
    lab?.cleanup();
    oc?.destroy();
    pe?.destroy();
  });

  const installed = () =>
    oc.ipJson<Array<{ dst: string }>>("route", "show", "proto", "201").some((r) => r.dst === ROUTE);
  const bfdState = () =>
    (ocelot.status().bfd as Array<{ peer: string; state: string }> | undefined)?.find(
      (b) => b.peer === PEER,
    )?.state;

  it("a BFD cut removes the peer's route from the kernel within seconds, not the 90 s hold time", async () => {
    await ocelot.established(PEER);
    await waitFor("BFD Up", () => bfdState() === "Up");
    await waitFor(`${ROUTE} in our kernel`, installed);
    const rule = ["OUTPUT", "-p", "udp", "--dport", "3784", "-d", OC, "-j", "DROP"];
    pe.exec("iptables", "-I", ...rule);
    const t0 = Date.now();
    try {
      await waitFor(`${ROUTE} gone from our kernel`, () => !installed(), undefined, 20);
      const ms = Date.now() - t0;
      console.log(`BFD cut to BIRD's route gone from the kernel: ${ms} ms (hold time 90 s)`);
      // Hang-sized: the BGP hold timer alone would take 90 s, so this still tells them apart.
      expect(ms).toBeLessThan(60_000);
      // Held down while BFD is Down: BIRD retries every second over TCP, which still flows,
      // yet no session comes up (it would within a few seconds without the hold).
      expect(ocelot.statusText()).toMatch(/10\.255\.15\.2: held down \(bfd\)/);
      const heldUntil = Date.now() + 6000;
      while (Date.now() < heldUntil) {
        expect(ocelot.peer(PEER)?.state).not.toBe("Established");
        expect(bfdState()).not.toBe("Up");
        await new Promise((r) => setTimeout(r, 500));
      }
      expect(ocelot.peer(PEER)?.lastError).toMatchObject({ code: 6, subcode: 10 });
    } finally {
      pe.exec("iptables", "-D", ...rule);
    }
    await waitFor("BFD Up again", () => bfdState() === "Up");
    await ocelot.established(PEER);
    await waitFor(`${ROUTE} back in our kernel`, installed);
  });
});
