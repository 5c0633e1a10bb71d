// Interop with FRR (zebra + bgpd) as a top-of-rack router between two `ocelot bgpd` nodes of the
// same AS: sessions both ways, IPv4 and IPv6 (over the IPv4 session) into all three kernels,
// communities unchanged, each node's block carried to the other (allowOwnAs), SIGHUP withdraw.
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
const skip = skipWithReason("interop with FRR", reason);

const TOR_AS = 65000;
const NODE_AS = 64512;

const frrConf = `frr defaults traditional
hostname tor
!
route-map TAG permit 10
 set community 65000:42
 set large-community 65000:1:1
exit
!
router bgp ${TOR_AS}
 bgp router-id 10.255.2.0
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor NODES peer-group
 neighbor NODES remote-as ${NODE_AS}
 neighbor NODES timers 3 9
 neighbor NODES timers connect 1
 neighbor NODES advertisement-interval 0
 neighbor 10.255.2.1 peer-group NODES
 neighbor 10.255.3.1 peer-group NODES
 address-family ipv4 unicast
  network 10.98.0.0/24 route-map TAG
 exit-address-family
 address-family ipv6 unicast
  network fd00:98::/64 route-map TAG
  neighbor NODES activate
 exit-address-family
exit
!
`;

function nodeConfig(i: 1 | 2, passive: boolean) {
  return {
    asn: NODE_AS,
    routerId: `10.255.${i + 1}.1`,
    listen: { address: "::", port: 179 },
    peers: [
      {
        address: `10.255.${i + 1}.0`,
        asn: TOR_AS,
        passive,
        allowOwnAs: 1,
        holdTime: 9,
        connectRetryTime: 1,
      },
    ],
    originate: [
      {
        prefix: `10.244.${i}.0/26`,
        communities: [`${NODE_AS}:100`],
        largeCommunities: [`${NODE_AS}:${i}:2`],
      },
      { prefix: `fd00:244:${i}::/122` },
    ],
    fib: { enabled: true, table: "main", protocol: 201 },
  };
}

describe.skipIf(skip)("interop with FRR as a top-of-rack router", () => {
  let lab: PeerLab;
  let n1: Netns;
  let n2: Netns;
  let tor: Netns;
  let frr: FrrPeer;
  let oc1: OcelotPeer;
  let oc2: OcelotPeer;

  beforeAll(() => {
    lab = new PeerLab();
    n1 = Netns.create("fn1");
    n2 = Netns.create("fn2");
    tor = Netns.create("tor");
    link(tor, "tor-n1", "10.255.2.0/31", n1, "n1-tor", "10.255.2.1/31");
    link(tor, "tor-n2", "10.255.3.0/31", n2, "n2-tor", "10.255.3.1/31");
    tor.ip("addr", "add", "fd00:255:2::1/64", "dev", "tor-n1", "nodad");
    n1.ip("addr", "add", "fd00:255:2::2/64", "dev", "n1-tor", "nodad");
    tor.ip("addr", "add", "fd00:255:3::1/64", "dev", "tor-n2", "nodad");
    n2.ip("addr", "add", "fd00:255:3::2/64", "dev", "n2-tor", "nodad");
    frr = lab.startFrr(tor, "frr", frrConf);
    // Node 1 waits for FRR to connect; node 2 connects itself.
    oc1 = lab.startOcelot(n1, "oc1", nodeConfig(1, true));
    oc2 = lab.startOcelot(n2, "oc2", nodeConfig(2, false));
  });

  afterAll(() => {
    if (process.env.KEEP_PEERS) console.warn(`peer files kept in ${lab?.dir}`);
    lab?.cleanup();
    for (const ns of [n1, n2, tor]) ns?.destroy();
  });

  const proto201 = (ns: Netns, f: 4 | 6) => kernelRoutes(ns, f).filter((r) => r.protocol === "201");

  it("establishes with FRR whether FRR connects (node 1) or we do (node 2)", async () => {
    await oc1.established("10.255.2.0", 30_000);
    await oc2.established("10.255.3.0", 30_000);
    await waitFor(
      "FRR sees both Established",
      () => frr.state("10.255.2.1") === "Established" && frr.state("10.255.3.1") === "Established",
      10_000,
    );
    expect(oc1.peer("10.255.2.0")?.negotiated).toMatchObject({
      families: ["ipv4-unicast", "ipv6-unicast"],
      fourOctetAs: true,
    });
  });

  it("installs FRR's IPv4 and IPv6 routes in the node's kernel", async () => {
    await waitFor(
      "ToR routes on node 1",
      () =>
        proto201(n1, 4).some((r) => r.dst === "10.98.0.0/24") &&
        proto201(n1, 6).some((r) => r.dst === "fd00:98::/64"),
      15_000,
    );
    expect(proto201(n1, 4).find((r) => r.dst === "10.98.0.0/24")?.gateway).toBe("10.255.2.0");
    expect(proto201(n1, 6).find((r) => r.dst === "fd00:98::/64")?.gateway).toBe("fd00:255:2::1");
    const r = oc1.routes().routes.find((x) => x.prefix === "10.98.0.0/24") as unknown as {
      best: { asPath: string; communities: string[]; largeCommunities: string[] };
    };
    expect(r.best).toMatchObject({
      asPath: "65000",
      communities: ["65000:42"],
      largeCommunities: ["65000:1:1"],
    });
  });

  it("installs the nodes' blocks in FRR's kernel, communities intact", async () => {
    await waitFor(
      "node blocks in the ToR kernel",
      () => {
        const v4 = kernelRoutes(tor, 4).map((r) => r.dst);
        const v6 = kernelRoutes(tor, 6).map((r) => r.dst);
        return (
          ["10.244.1.0/26", "10.244.2.0/26"].every((d) => v4.includes(d)) &&
          ["fd00:244:1::/122", "fd00:244:2::/122"].every((d) => v6.includes(d))
        );
      },
      15_000,
    );
    const j = frr.vtyshJson<{
      paths: {
        community?: { string: string };
        largeCommunity?: { string: string };
        aspath?: { string: string };
      }[];
    }>("show bgp ipv4 unicast 10.244.1.0/26 json");
    expect(j.paths[0]?.community?.string).toBe("64512:100");
    expect(j.paths[0]?.largeCommunity?.string).toBe("64512:1:2");
    expect(j.paths[0]?.aspath?.string).toBe("64512");
  });

  it("carries each node's block to the other node through the ToR (allowOwnAs)", async () => {
    await waitFor(
      "blocks across the ToR",
      () =>
        proto201(n2, 4).some((r) => r.dst === "10.244.1.0/26" && r.gateway === "10.255.3.0") &&
        proto201(n1, 4).some((r) => r.dst === "10.244.2.0/26" && r.gateway === "10.255.2.0") &&
        proto201(n2, 6).some((r) => r.dst === "fd00:244:1::/122" && r.gateway === "fd00:255:3::1"),
      15_000,
    );
    const r = oc2.routes().routes.find((x) => x.prefix === "10.244.1.0/26") as unknown as {
      best: { asPath: string; communities: string[]; largeCommunities: string[] };
    };
    expect(r.best.asPath).toBe("65000 64512");
    expect(r.best.communities).toEqual(["64512:100"]);
    expect(r.best.largeCommunities).toEqual(["64512:1:2"]);
    // A node never installs a route to its own block (its origination wins).
    expect(proto201(n1, 4).some((x) => x.dst === "10.244.1.0/26")).toBe(false);
  });

  it("withdraws a block everywhere after SIGHUP with the origination removed", async () => {
    const cfg = nodeConfig(1, true);
    cfg.originate = cfg.originate.filter((o) => o.prefix.includes(":"));
    writeFileSync(oc1.configPath, JSON.stringify({ status: { socket: oc1.socket }, ...cfg }));
    const before = oc1.peer("10.255.2.0")?.establishedTransitions;
    lab.signal(oc1.pid, "SIGHUP");
    await waitFor(
      "block gone from node 2",
      () => !proto201(n2, 4).some((r) => r.dst === "10.244.1.0/26"),
      15_000,
    );
    await waitFor(
      "block gone from the ToR",
      () => !kernelRoutes(tor, 4).some((r) => r.dst === "10.244.1.0/26"),
      5000,
    );
    expect(proto201(n2, 6).some((r) => r.dst === "fd00:244:1::/122")).toBe(true);
    // Originations changed: no session reset.
    expect(oc1.peer("10.255.2.0")?.establishedTransitions).toBe(before);
  });
});
