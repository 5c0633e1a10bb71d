// TCP-MD5 (RFC 2385) between `ocelot bgpd` and FRR (zebra + bgpd) in network namespaces, both
// connect directions: node 1 is passive on IPv4, so FRR's signed SYN meets our dual-stack
// listener's IPv4-mapped key; node 2 connects itself over IPv6, keyed before connect(). Each
// session comes up and carries routes into the other side's kernel.
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
const skip = skipWithReason("TCP-MD5 with FRR", reason);

const TOR_AS = 65020;
const NODE_AS = 64512;
const KEY1 = "frr-md5-node-one";
const KEY2 = "frr-md5-node-two";

const frrConf = `frr defaults traditional
hostname tor
!
router bgp ${TOR_AS}
 bgp router-id 10.255.6.0
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 neighbor 10.255.6.1 remote-as ${NODE_AS}
 neighbor 10.255.6.1 password ${KEY1}
 neighbor 10.255.6.1 timers 3 9
 neighbor 10.255.6.1 timers connect 1
 neighbor 10.255.6.1 advertisement-interval 0
 neighbor fd00:255:7::2 remote-as ${NODE_AS}
 neighbor fd00:255:7::2 password ${KEY2}
 neighbor fd00:255:7::2 passive
 neighbor fd00:255:7::2 timers 3 9
 neighbor fd00:255:7::2 advertisement-interval 0
 address-family ipv4 unicast
  network 10.98.6.0/24
  neighbor 10.255.6.1 activate
 exit-address-family
 address-family ipv6 unicast
  network fd00:98:6::/64
  neighbor fd00:255:7::2 activate
 exit-address-family
exit
!
`;

describe.skipIf(skip)("TCP-MD5 with FRR, both connect directions", () => {
  let lab: PeerLab;
  let n1: Netns;
  let n2: Netns;
  let tor: Netns;
  let frr: FrrPeer;
  let oc1: OcelotPeer;
  let oc2: OcelotPeer;

  beforeAll(() => {
    lab = new PeerLab();
    n1 = Netns.create("f5n1");
    n2 = Netns.create("f5n2");
    tor = Netns.create("f5t");
    link(tor, "tor-n1", "10.255.6.0/31", n1, "n1-tor", "10.255.6.1/31");
    link(tor, "tor-n2", undefined, n2, "n2-tor", undefined);
    tor.ip("addr", "add", "fd00:255:7::1/64", "dev", "tor-n2", "nodad");
    n2.ip("addr", "add", "fd00:255:7::2/64", "dev", "n2-tor", "nodad");
    frr = lab.startFrr(tor, "frr", frrConf);
    oc1 = lab.startOcelot(n1, "oc1", {
      asn: NODE_AS,
      routerId: "10.255.6.1",
      listen: { address: "::", port: 179 },
      peers: [
        {
          address: "10.255.6.0",
          asn: TOR_AS,
          passive: true,
          holdTime: 9,
          families: ["ipv4-unicast"],
          password: KEY1,
        },
      ],
      originate: [{ prefix: "10.244.6.0/26" }],
      fib: { enabled: true, table: "main", protocol: 201 },
    });
    oc2 = lab.startOcelot(n2, "oc2", {
      asn: NODE_AS,
      routerId: "10.255.7.2",
      listen: { address: "::", port: 179 },
      peers: [
        {
          address: "fd00:255:7::1",
          asn: TOR_AS,
          holdTime: 9,
          connectRetryTime: 1,
          families: ["ipv6-unicast"],
          password: KEY2,
        },
      ],
      originate: [{ prefix: "fd00:244:7::/122" }],
      fib: { enabled: true, table: "main", protocol: 201 },
    });
  });

  afterAll(() => {
    if (process.env.KEEP_PEERS) console.warn(`peer files kept in ${lab?.dir}`);
    lab?.cleanup();
    for (const ns of [n1, n2, tor]) ns?.destroy();
  });

  const proto201 = (ns: Netns, f: 4 | 6) => kernelRoutes(ns, f).filter((r) => r.protocol === "201");

  it("establishes with FRR connecting to our listener (node 1, IPv4)", async () => {
    await oc1.established("10.255.6.0", 30_000);
    await waitFor("FRR sees node 1", () => frr.state("10.255.6.1") === "Established", 10_000);
    expect(oc1.peer("10.255.6.0")?.md5).toBe(true);
    // FRR connected: the session's local port on our side is 179.
    const ss = n1.exec("ss", "-tniH", "state", "established", "sport", "= :179");
    expect(/md5keys:(::ffff:)?10\.255\.6\.0\/(32|128)=/.test(ss)).toBe(true);
  });

  it("establishes with us connecting to FRR (node 2, IPv6)", async () => {
    await oc2.established("fd00:255:7::1", 30_000);
    await waitFor("FRR sees node 2", () => frr.state("fd00:255:7::2") === "Established", 10_000);
    const ss = n2.exec("ss", "-tniH", "state", "established", "dport", "= :179");
    expect(/md5keys:fd00:255:7::1\/128=/.test(ss)).toBe(true);
  });

  it("carries routes both ways on both sessions into the kernels", async () => {
    await waitFor(
      "FRR's routes in the nodes' kernels",
      () =>
        proto201(n1, 4).some((r) => r.dst === "10.98.6.0/24" && r.gateway === "10.255.6.0") &&
        proto201(n2, 6).some((r) => r.dst === "fd00:98:6::/64" && r.gateway === "fd00:255:7::1"),
      15_000,
    );
    await waitFor(
      "the nodes' blocks in FRR's kernel",
      () =>
        kernelRoutes(tor, 4).some((r) => r.dst === "10.244.6.0/26") &&
        kernelRoutes(tor, 6).some((r) => r.dst === "fd00:244:7::/122"),
      15_000,
    );
  });
});
