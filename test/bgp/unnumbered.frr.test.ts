// Unnumbered peering with FRR (`neighbor IFACE interface`): a veth with no address but the
// kernel's IPv6 link-local ones. Ocelot is given only the interface and starts before FRR: its
// peer waits (Idle, with the reason) until FRR's router advertisements put FRR's link-local
// address in the neighbour table, then peers over it; FRR learns ours from radvd's
// advertisements (Ocelot sends none itself). IPv4 routes travel with IPv6 link-local next hops
// (RFC 8950) and land in each kernel `via inet6 fe80::… dev`. Then the link is re-created with a
// new MAC (so a new link-local address) on FRR's side: Ocelot follows it to a new session.
import { spawn } from "node:child_process";
import { existsSync, openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type FrrPeer,
  type OcelotPeer,
  PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const reason =
  netnsUnavailableReason() ??
  peersUnavailableReason(["frr"]) ??
  (existsSync("/usr/sbin/radvd") ? undefined : "/usr/sbin/radvd not installed");
const skip = skipWithReason("unnumbered peering with FRR", reason);

const OC_AS = 64512;
/** FRR's side's MAC after the link is re-created (so its link-local is fe80::ff:fe00:1302). */
const NEW_MAC = "02:00:00:00:13:02";
const FRR_AS = 65000;

const zebraConf = `hostname tor
interface tor-oc
 ipv6 nd ra-interval 3
 no ipv6 nd suppress-ra
exit
!
`;

const bgpdConf = `frr defaults traditional
hostname tor
!
router bgp ${FRR_AS}
 bgp router-id 10.255.90.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor tor-oc interface remote-as ${OC_AS}
 neighbor tor-oc timers 3 9
 neighbor tor-oc timers connect 1
 neighbor tor-oc advertisement-interval 0
 address-family ipv4 unicast
  network 10.90.2.0/24
 exit-address-family
exit
!
`;

const radvdConf = `interface oc-tor {
  AdvSendAdvert on;
  MinRtrAdvInterval 3;
  MaxRtrAdvInterval 4;
  AdvDefaultLifetime 0;
};
`;

interface Neigh {
  dst: string;
  router?: unknown;
}
interface ViaRoute {
  dst: string;
  protocol?: string;
  via?: { family: string; host: string };
  dev?: string;
}

// bgpd follows the neighbour table by rtnetlink notifications, or (OCELOT_NEIGHBOUR_POLL=1, the
// stand-in where the socket cannot be opened) by polling it: both ways are run.
describe.skipIf(skip).each([
  { how: "rtnetlink notifications", poll: false },
  { how: "the neighbour-table poll", poll: true },
])("unnumbered peering with FRR, neighbours followed by $how", ({ poll }) => {
  let lab: PeerLab;
  let oc: Netns;
  let tor: Netns;
  let frr: FrrPeer;
  let node: OcelotPeer;
  let frrLl = "";
  let ourLl = "";

  beforeAll(async () => {
    lab = new PeerLab();
    oc = Netns.create("un-oc");
    tor = Netns.create("un-tor");
    link(oc, "oc-tor", undefined, tor, "tor-oc", undefined);
    acceptRa();
    const d = lab.subdir("radvd");
    writeFileSync(join(d, "radvd.conf"), radvdConf);
    const out = openSync(join(d, "radvd.log"), "a");
    const [cmd, args] = oc.wrap(
      "/usr/sbin/radvd",
      "-n",
      "-C",
      join(d, "radvd.conf"),
      "-p",
      join(d, "radvd.pid"),
      "-m",
      "stderr",
    );
    const child = spawn(cmd, args, { stdio: ["ignore", out, out], detached: true });
    child.unref();
    await waitFor("radvd running", () => existsSync(join(d, "radvd.pid")), 30_000);
    lab.track(child.pid as number, "radvd", `radvd@${oc.name}`);
    frrLl = await waitFor("FRR's link-local address", () => ll(tor, "tor-oc"), 30_000);
    ourLl = await waitFor("our link-local address", () => ll(oc, "oc-tor"), 30_000);
    // Ocelot first: FRR is not running, so nothing is in our neighbour table for the link.
    expect(neighbours().filter((n) => n.dst.startsWith("fe80:"))).toEqual([]);
    // The child inherits the environment: set only around its start.
    if (poll) process.env.OCELOT_NEIGHBOUR_POLL = "1";
    try {
      node = lab.startOcelot(oc, "oc", {
        asn: OC_AS,
        routerId: "10.255.90.1",
        listen: { address: "::", port: 179 },
        peers: [
          {
            interface: "oc-tor",
            asn: FRR_AS,
            families: ["ipv4-unicast"],
            holdTime: 9,
            connectRetryTime: 1,
          },
        ],
        originate: [{ prefix: "10.90.1.0/24" }],
        fib: { enabled: true, table: "main", protocol: 201 },
      });
    } finally {
      delete process.env.OCELOT_NEIGHBOUR_POLL;
    }
  });

  afterAll(() => {
    if (process.env.KEEP_PEERS) console.warn(`peer files kept in ${lab?.dir}`);
    lab?.cleanup();
    for (const n of [oc, tor]) n?.destroy();
  });

  const ll = (ns: Netns, dev: string) =>
    ns
      .ipJson<{ addr_info: { local: string; scope: string; tentative?: boolean }[] }[]>(
        "-6",
        "addr",
        "show",
        "dev",
        dev,
      )[0]
      ?.addr_info.find((a) => a.scope === "link" && !a.tentative)?.local;
  const neighbours = () => oc.ipJson<Neigh[]>("-6", "neigh", "show", "dev", "oc-tor");
  // Forwarding is on in our namespaces: RAs are processed with accept_ra=2 (no default route).
  function acceptRa(): void {
    oc.exec("sysctl", "-qw", "net.ipv6.conf.oc-tor.accept_ra=2");
    oc.exec("sysctl", "-qw", "net.ipv6.conf.oc-tor.accept_ra_defrtr=0");
  }

  const routes = (ns: Netns) => ns.ipJson<ViaRoute[]>("-4", "route", "show");

  it("starts with no neighbour on the interface: the peer waits, Idle with the reason", async () => {
    const st = await waitFor("the waiting peer in status", () => node.peer("oc-tor"), 30_000);
    expect(st).toMatchObject({ state: "Idle", interface: "oc-tor" });
    expect((st as { waiting?: string }).waiting).toMatch(
      /no IPv6 link-local neighbour on oc-tor yet/,
    );
    expect(node.statusText()).toMatch(/oc-tor: waiting: no IPv6 link-local neighbour on oc-tor/);
    // A reload while it waits is applied (it is no error), and the peer still waits.
    lab.signal(node.pid, "SIGHUP");
    await waitFor(
      "the reload applied",
      () => node.log().includes("Configuration reloaded"),
      30_000,
    );
    expect(node.peer("oc-tor")?.state).toBe("Idle");
    // FRR starts now; its router advertisements put it in our neighbour table.
    frr = lab.startFrr(tor, "frr", bgpdConf, zebraConf);
  });

  it("peers with FRR's link-local address once it appears, with extended next hop", async () => {
    const addr = `${frrLl}%oc-tor`;
    await node.established(addr, 60_000);
    expect(neighbours().some((n) => n.dst === frrLl && n.router !== undefined)).toBe(true);
    expect(node.peer("oc-tor")).toBeUndefined();
    expect(node.peer(addr)?.negotiated).toMatchObject({
      families: ["ipv4-unicast"],
      extendedNextHop: true,
    });
    await waitFor("FRR Established", () => frr.state("tor-oc") === "Established", 30_000);
  });

  it("installs FRR's IPv4 route via FRR's link-local address on the interface", async () => {
    const r = await waitFor(
      "10.90.2.0/24 via inet6 on the node",
      () => routes(oc).find((x) => x.dst === "10.90.2.0/24" && x.protocol === "201"),
      30_000,
    );
    expect(r.via).toEqual({ family: "inet6", host: frrLl });
    expect(r.dev).toBe("oc-tor");
  });

  it("sends our IPv4 route with our link-local next hop; FRR installs it via inet6", async () => {
    const r = await waitFor(
      "10.90.1.0/24 in FRR's kernel",
      () => routes(tor).find((x) => x.dst === "10.90.1.0/24"),
      30_000,
    );
    expect(r.via).toEqual({ family: "inet6", host: ourLl });
    expect(r.dev).toBe("tor-oc");
  });

  it("follows FRR's side re-created with a new MAC and link-local address", async () => {
    // Deleting one end of the veth deletes both: the link is made anew, FRR's end with NEW_MAC.
    tor.ip("link", "del", "tor-oc");
    oc.ip(
      "link",
      "add",
      "oc-tor",
      "type",
      "veth",
      "peer",
      "name",
      "tor-oc",
      "address",
      NEW_MAC,
      "netns",
      tor.name,
    );
    acceptRa();
    oc.ip("link", "set", "oc-tor", "up");
    tor.ip("link", "set", "tor-oc", "up");
    const newLl = await waitFor("FRR's new link-local address", () => ll(tor, "tor-oc"), 30_000);
    expect(newLl).not.toBe(frrLl);
    ourLl = await waitFor("our new link-local address", () => ll(oc, "oc-tor"), 30_000);
    await node.established(`${newLl}%oc-tor`, 90_000);
    expect(node.peer(`${frrLl}%oc-tor`)).toBeUndefined();
    expect(node.log()).toMatch(/Unnumbered peer: new link-local neighbour/);
    // Followed the way this block asks for.
    if (poll) expect(node.log()).toMatch(/OCELOT_NEIGHBOUR_POLL=1: polling the neighbour table/);
    else expect(node.log()).not.toMatch(/polling the neighbour table/);
    const r = await waitFor(
      "10.90.2.0/24 via FRR's new link-local address",
      () =>
        routes(oc).find(
          (x) => x.dst === "10.90.2.0/24" && x.protocol === "201" && x.via?.host === newLl,
        ),
      60_000,
    );
    expect(r.dev).toBe("oc-tor");
    await waitFor("FRR Established again", () => frr.state("tor-oc") === "Established", 60_000);
    const back = await waitFor(
      "10.90.1.0/24 in FRR's kernel via our new link-local address",
      () => routes(tor).find((x) => x.dst === "10.90.1.0/24" && x.via?.host === ourLl),
      60_000,
    );
    expect(back.dev).toBe("tor-oc");
  });

  it("keeps the re-pointed session over a SIGHUP with the config unchanged", async () => {
    const addr = `${ll(tor, "tor-oc")}%oc-tor`;
    const before = node.peer(addr)?.establishedTransitions;
    expect(before).toBeGreaterThan(0);
    const reloads = () => node.log().split("Configuration reloaded").length;
    const n = reloads();
    lab.signal(node.pid, "SIGHUP");
    await waitFor("the second reload applied", () => reloads() > n, 30_000);
    expect(node.peer(addr)).toMatchObject({ state: "Established", establishedTransitions: before });
  });
});
