// Interop with GoBGP (RIB only: GoBGP has no FIB code) in network namespaces, `ocelot bgpd` as a
// real process: GoBGP connects to us, a 4-octet AS, routes with (large) communities both ways,
// IPv6 over the IPv4 session, withdraw removes the route from our kernel.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type GobgpPeer,
  kernelRoutes,
  type OcelotPeer,
  PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["gobgp"]);
const skip = skipWithReason("interop with GoBGP", reason);

const GO_AS = 4200000002;
const OC_AS = 64512;

const toml = `
[global.config]
  as = ${GO_AS}
  router-id = "10.255.4.1"
  local-address-list = ["10.255.4.1"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.255.4.0"
    peer-as = ${OC_AS}
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
`;

interface GoPath {
  nlri: { prefix: string };
  attrs: { type: number; [k: string]: unknown }[];
}

describe.skipIf(skip)("interop with GoBGP", () => {
  let lab: PeerLab;
  let oc: Netns;
  let go: Netns;
  let gobgp: GobgpPeer;
  let ocelot: OcelotPeer;

  beforeAll(() => {
    lab = new PeerLab();
    oc = Netns.create("ocg");
    go = Netns.create("gob");
    link(oc, "oc-go", "10.255.4.0/31", go, "go-oc", "10.255.4.1/31");
    oc.ip("addr", "add", "fd00:255:4::1/64", "dev", "oc-go", "nodad");
    go.ip("addr", "add", "fd00:255:4::2/64", "dev", "go-oc", "nodad");
    gobgp = lab.startGobgp(go, "gobgp", toml);
    ocelot = lab.startOcelot(oc, "ocelot", {
      asn: OC_AS,
      routerId: "10.255.4.0",
      listen: { address: "0.0.0.0", port: 179 },
      peers: [{ address: "10.255.4.1", asn: GO_AS, passive: true, holdTime: 9 }],
      originate: [
        { prefix: "10.244.4.0/26", communities: ["64512:100"], largeCommunities: ["64512:4:2"] },
        { prefix: "fd00:244:4::/122" },
      ],
      fib: { enabled: true, table: "main", protocol: 201 },
    });
  });

  afterAll(() => {
    if (process.env.KEEP_PEERS) console.warn(`peer files kept in ${lab?.dir}`);
    lab?.cleanup();
    oc?.destroy();
    go?.destroy();
  });

  const ours = (f: 4 | 6) => kernelRoutes(oc, f).filter((r) => r.protocol === "201");
  const goRib = (family: "ipv4" | "ipv6") =>
    gobgp.json<Record<string, GoPath[]>>("global", "rib", "-a", family);

  it("establishes when GoBGP connects to us", async () => {
    await ocelot.established("10.255.4.1", 20_000);
    await waitFor("GoBGP Established", () => gobgp.state("10.255.4.0") === "established", 10_000);
    expect(ocelot.peer("10.255.4.1")?.negotiated).toMatchObject({
      fourOctetAs: true,
      families: ["ipv4-unicast", "ipv6-unicast"],
    });
  });

  it("installs GoBGP's routes in our kernel with its 4-octet AS and communities unchanged", async () => {
    gobgp.cli(
      "global",
      "rib",
      "add",
      "10.97.0.0/24",
      "community",
      "65002:9",
      "large-community",
      `${GO_AS}:3:4`,
      "-a",
      "ipv4",
    );
    gobgp.cli("global", "rib", "add", "fd00:97::/64", "nexthop", "fd00:255:4::2", "-a", "ipv6");
    await waitFor(
      "GoBGP routes in our kernel",
      () =>
        ours(4).some((r) => r.dst === "10.97.0.0/24") &&
        ours(6).some((r) => r.dst === "fd00:97::/64"),
      10_000,
    );
    expect(ours(4).find((r) => r.dst === "10.97.0.0/24")?.gateway).toBe("10.255.4.1");
    expect(ours(6).find((r) => r.dst === "fd00:97::/64")?.gateway).toBe("fd00:255:4::2");
    const r = ocelot.routes().routes.find((x) => x.prefix === "10.97.0.0/24") as unknown as {
      best: { asPath: string; communities: string[]; largeCommunities: string[] };
    };
    expect(r.best).toMatchObject({
      asPath: String(GO_AS),
      communities: ["65002:9"],
      largeCommunities: [`${GO_AS}:3:4`],
    });
  });

  it("advertises our blocks to GoBGP with communities and our AS", async () => {
    await waitFor(
      "our blocks in GoBGP's RIB",
      () => "10.244.4.0/26" in goRib("ipv4") && "fd00:244:4::/122" in goRib("ipv6"),
      10_000,
    );
    const p = goRib("ipv4")["10.244.4.0/26"]?.[0] as GoPath;
    const text = JSON.stringify(p.attrs);
    expect(text).toContain(`"asns":[${OC_AS}]`);
    expect(p.attrs.find((a) => a.type === 3)?.nexthop).toBe("10.255.4.0");
    expect(p.attrs.find((a) => a.type === 8)?.communities).toEqual([((64512 << 16) | 100) >>> 0]);
    expect(text).toMatch(/"ASN":64512,"LocalData1":4,"LocalData2":2/);
    const p6 = goRib("ipv6")["fd00:244:4::/122"]?.[0] as GoPath;
    expect(JSON.stringify(p6.attrs)).toContain("fd00:255:4::1");
  });

  it("removes a route from our kernel when GoBGP withdraws it", async () => {
    gobgp.cli("global", "rib", "del", "10.97.0.0/24", "-a", "ipv4");
    await waitFor("withdrawn", () => !ours(4).some((r) => r.dst === "10.97.0.0/24"), 10_000);
    expect(ours(6).some((r) => r.dst === "fd00:97::/64")).toBe(true);
  });
});
