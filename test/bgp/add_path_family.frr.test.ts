// Per-family ADD-PATH (RFC 7911 §4: the capability lists families one by one) between `ocelot
// bgpd` and FRR: one session carrying IPv4 and IPv6 unicast, ADD-PATH configured for IPv6 only
// (`addPath.families`). FRR reports our ADD-PATH capability for IPv6 unicast and none for IPv4,
// and the session carries both families.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type FrrPeer,
  type OcelotPeer,
  PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["frr"]);
const skip = skipWithReason("per-family ADD-PATH with FRR", reason);

const FRR_AS = 65042;
const NODE_AS = 64512;
const NODE = "10.255.42.1";
const TOR = "10.255.42.0";

const frrConf = `frr defaults traditional
hostname tor
!
router bgp ${FRR_AS}
 bgp router-id ${TOR}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor ${NODE} remote-as ${NODE_AS}
 neighbor ${NODE} timers 3 9
 neighbor ${NODE} timers connect 1
 address-family ipv4 unicast
  neighbor ${NODE} activate
 exit-address-family
 address-family ipv6 unicast
  neighbor ${NODE} activate
 exit-address-family
exit
!
`;

type AddPathFamily = Record<string, boolean>;

describe.skipIf(skip)("per-family ADD-PATH with FRR", () => {
  let lab: PeerLab;
  let n: Netns;
  let tor: Netns;
  let frr: FrrPeer;
  let oc: OcelotPeer;

  beforeAll(() => {
    lab = new PeerLab();
    n = Netns.create("apfn");
    tor = Netns.create("apft");
    link(tor, "tor-n", `${TOR}/31`, n, "n-tor", `${NODE}/31`);
    frr = lab.startFrr(tor, "frr", frrConf);
    oc = lab.startOcelot(n, "oc", {
      asn: NODE_AS,
      routerId: NODE,
      listen: { address: "::", port: 179 },
      peers: [
        {
          address: TOR,
          asn: FRR_AS,
          holdTime: 9,
          connectRetryTime: 1,
          families: ["ipv4-unicast", "ipv6-unicast"],
          addPath: { receive: true, send: 2, families: ["ipv6-unicast"] },
        },
      ],
      originate: [{ prefix: "10.244.42.0/26" }],
      fib: { enabled: false, table: "main", protocol: 201 },
    });
  });

  afterAll(() => {
    if (process.env.KEEP_PEERS) console.warn(`peer files kept in ${lab?.dir}`);
    lab?.cleanup();
    for (const ns of [n, tor]) ns?.destroy();
  });

  it("FRR sees our ADD-PATH for IPv6 unicast only, on a session carrying both families", async () => {
    await oc.established(TOR, 30_000);
    await waitFor("FRR sees the node", () => frr.state(NODE) === "Established", 15_000);
    const nb = frr.vtyshJson<
      Record<string, { neighborCapabilities?: { addPath?: Record<string, AddPathFamily> } }>
    >(`show bgp neighbors ${NODE} json`)[NODE];
    const ap = nb?.neighborCapabilities?.addPath ?? {};
    const seen = JSON.stringify(ap);
    // FRR's keys: "txReceived" (we send), "rxReceived" or "rxAdvertisedAndReceived" (we
    // receive); "rxAdvertised" alone is FRR's own capability.
    const received = (f: AddPathFamily | undefined) =>
      Object.keys(f ?? {}).filter((k) => k.endsWith("Received") && f?.[k] === true);
    expect(ap.ipv6Unicast?.txReceived, seen).toBe(true);
    expect(
      (ap.ipv6Unicast?.rxReceived ?? false) || (ap.ipv6Unicast?.rxAdvertisedAndReceived ?? false),
      seen,
    ).toBe(true);
    expect(received(ap.ipv4Unicast), seen).toEqual([]);
    expect(oc.peer(TOR)?.negotiated).toMatchObject({
      families: expect.arrayContaining(["ipv4-unicast", "ipv6-unicast"]),
    });
  });
});
