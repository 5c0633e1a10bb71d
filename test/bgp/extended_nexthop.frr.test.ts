// RFC 8950 with FRR: one IPv6-only link (no IPv4 address on it), one session over IPv6 that
// carries IPv4 unicast with IPv6 next hops (FRR's `capability extended-nexthop`). Each side's
// IPv4 route lands in the other's kernel `via inet6` (RTA_VIA), read back with `ip -j route`.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type FrrPeer,
  type OcelotPeer,
  PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["frr"]);
const skip = skipWithReason("extended next hop (RFC 8950) with FRR", reason);

const OC = "fd00:8950::1";
const FRR = "fd00:8950::2";
const OC_AS = 64512;
const FRR_AS = 65000;

const frrConf = `frr defaults traditional
hostname tor
!
router bgp ${FRR_AS}
 bgp router-id 10.255.89.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor ${OC} remote-as ${OC_AS}
 neighbor ${OC} timers 3 9
 neighbor ${OC} timers connect 1
 neighbor ${OC} advertisement-interval 0
 neighbor ${OC} capability extended-nexthop
 address-family ipv4 unicast
  network 10.89.2.0/24
  neighbor ${OC} activate
 exit-address-family
exit
!
`;

interface ViaRoute {
  dst: string;
  protocol?: string;
  gateway?: string;
  via?: { family: string; host: string };
  dev?: string;
}

describe.skipIf(skip)("extended next hop (RFC 8950) with FRR", () => {
  let lab: PeerLab;
  let oc: Netns;
  let tor: Netns;
  let frr: FrrPeer;
  let node: OcelotPeer;

  beforeAll(() => {
    lab = new PeerLab();
    oc = Netns.create("enh-oc");
    tor = Netns.create("enh-tor");
    link(oc, "oc-tor", undefined, tor, "tor-oc", undefined);
    oc.ip("addr", "add", `${OC}/64`, "dev", "oc-tor", "nodad");
    tor.ip("addr", "add", `${FRR}/64`, "dev", "tor-oc", "nodad");
    frr = lab.startFrr(tor, "frr", frrConf);
    node = lab.startOcelot(oc, "oc", {
      asn: OC_AS,
      routerId: "10.255.89.1",
      listen: { address: "::", port: 179 },
      peers: [
        {
          address: FRR,
          asn: FRR_AS,
          families: ["ipv4-unicast"],
          extendedNextHop: true,
          holdTime: 9,
          connectRetryTime: 1,
        },
      ],
      originate: [{ prefix: "10.89.1.0/24" }],
      fib: { enabled: true, table: "main", protocol: 201 },
    });
  });

  afterAll(() => {
    if (process.env.KEEP_PEERS) console.warn(`peer files kept in ${lab?.dir}`);
    lab?.cleanup();
    for (const n of [oc, tor]) n?.destroy();
  });

  const routes = (ns: Netns) => ns.ipJson<ViaRoute[]>("-4", "route", "show");

  it("negotiates IPv4 unicast with IPv6 next hops over an IPv6 session", async () => {
    await node.established(FRR, 30_000);
    expect(node.peer(FRR)?.negotiated).toMatchObject({
      families: ["ipv4-unicast"],
      extendedNextHop: true,
    });
    const j = frr.vtyshJson<Record<string, { neighborCapabilities?: Record<string, unknown> }>>(
      `show bgp neighbors ${OC} json`,
    );
    expect(JSON.stringify(j[OC]?.neighborCapabilities ?? {})).toMatch(/extendedNexthop/i);
  });

  it("installs FRR's IPv4 route via inet6 in our kernel", async () => {
    const r = await waitFor(
      "10.89.2.0/24 via inet6 on the node",
      () => routes(oc).find((x) => x.dst === "10.89.2.0/24" && x.protocol === "201"),
      30_000,
    );
    expect(r.via).toEqual({ family: "inet6", host: FRR });
    expect(r.dev).toBe("oc-tor");
  });

  it("sends our IPv4 route with our IPv6 address as next hop; FRR installs it via inet6", async () => {
    type Paths = { paths?: { nexthops?: { ip: string; afi: string }[] }[] };
    const j = await waitFor(
      "10.89.1.0/24 in FRR's table",
      () => {
        const x = frr.vtyshJson<Paths>("show bgp ipv4 unicast 10.89.1.0/24 json");
        return x.paths?.length ? x : undefined;
      },
      30_000,
    );
    expect(j.paths?.[0]?.nexthops?.[0]).toMatchObject({ ip: OC, afi: "ipv6" });
    const r = await waitFor(
      "10.89.1.0/24 in FRR's kernel",
      () => routes(tor).find((x) => x.dst === "10.89.1.0/24"),
      30_000,
    );
    // FRR's zebra installs it via our IPv6 address (or its link-local), as inet6.
    expect(r.via?.family).toBe("inet6");
  });
});
