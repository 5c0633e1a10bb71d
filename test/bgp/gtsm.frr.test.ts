// GTSM (RFC 5082) between `ocelot bgpd` and FRR (`neighbor X ttl-security hops N`) in network
// namespaces, IPv4 and IPv6. Node 1 is directly connected to FRR "near" (both hops 1): both
// sessions come up, so our packets leave with TTL 255 — on IPv4 we connect, on IPv6 (passive)
// FRR does, so our listener's SYN-ACK does too. Node 2 reaches FRR "far" through a
// router namespace (one hop between): FRR far allows 2 hops and sends with TTL 255, so its
// segments reach node 2 with TTL (hop limit) 254. With ttlSecurity 1 node 2 demands 255: its
// kernel drops FRR's SYNs (on our listener) and SYN-ACKs (on our connects) — TCPMinTTLDrop
// counts them — and neither session comes up although both sides keep trying; after a SIGHUP
// to ttlSecurity 2 (FRR unchanged) both come up: the refusal was our check. Node 2 also has an
// IPv4 peer without GTSM, so its listener checks IPv6 only: FRR's IPv4 connections are closed
// at accept and our own (whose SYN-ACK the kernel checks) carries the IPv4 session.
import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type FrrPeer,
  type OcelotPeer,
  PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["frr"]);
const skip = skipWithReason("GTSM with FRR", reason);

const FRR_AS = 65030;
const NODE_AS = 64512;

const frrConf = (id: string, peers: { addr: string; hops: number }[], nets: string[]) => {
  const v4 = peers.filter((p) => !p.addr.includes(":"));
  const v6 = peers.filter((p) => p.addr.includes(":"));
  return `frr defaults traditional
hostname frr
!
router bgp ${FRR_AS}
 bgp router-id ${id}
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
${peers
  .map(
    (p) => ` neighbor ${p.addr} remote-as ${NODE_AS}
 neighbor ${p.addr} ttl-security hops ${p.hops}
 neighbor ${p.addr} timers 3 9
 neighbor ${p.addr} timers connect 1
 neighbor ${p.addr} advertisement-interval 0`,
  )
  .join("\n")}
 address-family ipv4 unicast
${nets
  .filter((n) => !n.includes(":"))
  .map((n) => `  network ${n}`)
  .join("\n")}
${v4.map((p) => `  neighbor ${p.addr} activate`).join("\n")}
 exit-address-family
 address-family ipv6 unicast
${nets
  .filter((n) => n.includes(":"))
  .map((n) => `  network ${n}`)
  .join("\n")}
${v6.map((p) => `  neighbor ${p.addr} activate`).join("\n")}
 exit-address-family
exit
!
`;
};

/** TcpExt TCPMinTTLDrop of a namespace: segments dropped for a TTL below the socket's minimum. */
function minTtlDrops(ns: Netns): number {
  const lines = ns
    .exec("cat", "/proc/net/netstat")
    .split("\n")
    .filter((l) => l.startsWith("TcpExt:"));
  const names = (lines[0] ?? "").split(/\s+/);
  const i = names.indexOf("TCPMinTTLDrop");
  if (i < 1) throw new Error(`No TcpExt TCPMinTTLDrop in ${ns.name}`);
  return Number((lines[1] ?? "").split(/\s+/)[i]);
}

const node2Config = (hops: number) => ({
  asn: NODE_AS,
  routerId: "10.255.9.2",
  listen: { address: "::", port: 179 },
  peers: [
    {
      address: "10.255.10.2",
      asn: FRR_AS,
      holdTime: 9,
      connectRetryTime: 1,
      families: ["ipv4-unicast"],
      sourceAddress: "10.255.9.2",
      ttlSecurity: hops,
    },
    {
      address: "fd00:255:10::2",
      asn: FRR_AS,
      holdTime: 9,
      connectRetryTime: 1,
      families: ["ipv6-unicast"],
      // A peer beyond a router: no interface faces it, so its next hop is given.
      sourceAddress: "fd00:255:9::2",
      ttlSecurity: hops,
    },
    // A passive IPv4 peer without GTSM (never there): the listener cannot demand a TTL of IPv4
    // connections, so FRR's IPv4 connections are closed at accept and ours (checked from the
    // SYN-ACK on) carries the session; IPv6 stays checked by the listener itself.
    { address: "10.255.9.77", asn: FRR_AS, passive: true, families: ["ipv4-unicast"] },
  ],
  originate: [{ prefix: "10.244.9.0/26" }, { prefix: "fd00:244:9::/122" }],
  fib: { enabled: true, table: "main", protocol: 201 },
});

describe.skipIf(skip)("GTSM with FRR: the peer's TTL checked, IPv4 and IPv6", () => {
  let lab: PeerLab;
  let n1: Netns;
  let near: Netns;
  let n2: Netns;
  let rt: Netns;
  let far: Netns;
  let frrNear: FrrPeer;
  let frrFar: FrrPeer;
  let oc1: OcelotPeer;
  let oc2: OcelotPeer;

  beforeAll(() => {
    lab = new PeerLab();
    n1 = Netns.create("gtn1");
    near = Netns.create("gtnr");
    n2 = Netns.create("gtn2");
    rt = Netns.create("gtrt");
    far = Netns.create("gtfr");
    // node 1 -- near (direct)
    link(near, "nr-n1", "10.255.8.0/31", n1, "n1-nr", "10.255.8.1/31");
    near.ip("addr", "add", "fd00:255:8::1/64", "dev", "nr-n1", "nodad");
    n1.ip("addr", "add", "fd00:255:8::2/64", "dev", "n1-nr", "nodad");
    // node 2 -- router -- far
    link(rt, "rt-n2", "10.255.9.1/24", n2, "n2-rt", "10.255.9.2/24");
    link(rt, "rt-fr", "10.255.10.1/24", far, "fr-rt", "10.255.10.2/24");
    rt.ip("addr", "add", "fd00:255:9::1/64", "dev", "rt-n2", "nodad");
    n2.ip("addr", "add", "fd00:255:9::2/64", "dev", "n2-rt", "nodad");
    rt.ip("addr", "add", "fd00:255:10::1/64", "dev", "rt-fr", "nodad");
    far.ip("addr", "add", "fd00:255:10::2/64", "dev", "fr-rt", "nodad");
    rt.exec("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1");
    n2.ip("route", "add", "10.255.10.0/24", "via", "10.255.9.1");
    n2.ip("-6", "route", "add", "fd00:255:10::/64", "via", "fd00:255:9::1");
    far.ip("route", "add", "10.255.9.0/24", "via", "10.255.10.1");
    far.ip("-6", "route", "add", "fd00:255:9::/64", "via", "fd00:255:10::1");

    frrNear = lab.startFrr(
      near,
      "near",
      frrConf(
        "10.255.8.0",
        [
          { addr: "10.255.8.1", hops: 1 },
          { addr: "fd00:255:8::2", hops: 1 },
        ],
        ["10.98.8.0/24", "fd00:98:8::/64"],
      ),
    );
    frrFar = lab.startFrr(
      far,
      "far",
      frrConf(
        "10.255.10.2",
        [
          { addr: "10.255.9.2", hops: 2 },
          { addr: "fd00:255:9::2", hops: 2 },
        ],
        ["10.98.10.0/24", "fd00:98:10::/64"],
      ),
    );
    oc1 = lab.startOcelot(n1, "oc1", {
      asn: NODE_AS,
      routerId: "10.255.8.1",
      listen: { address: "::", port: 179 },
      peers: [
        {
          address: "10.255.8.0",
          asn: FRR_AS,
          holdTime: 9,
          connectRetryTime: 1,
          families: ["ipv4-unicast"],
          ttlSecurity: 1,
        },
        {
          address: "fd00:255:8::1",
          asn: FRR_AS,
          holdTime: 9,
          connectRetryTime: 1,
          families: ["ipv6-unicast"],
          // FRR connects: our listener's SYN-ACK must leave with 255 to pass FRR's check.
          passive: true,
          ttlSecurity: 1,
        },
      ],
      originate: [{ prefix: "10.244.8.0/26" }],
      fib: { enabled: true, table: "main", protocol: 201 },
    });
    oc2 = lab.startOcelot(n2, "oc2", node2Config(1));
  });

  afterAll(() => {
    if (process.env.KEEP_PEERS) console.warn(`peer files kept in ${lab?.dir}`);
    lab?.cleanup();
    for (const ns of [n1, near, n2, rt, far]) ns?.destroy();
  });

  it("a directly connected peer with hops 1 on both sides: Established (we send TTL 255)", async () => {
    await oc1.established("10.255.8.0", 30_000);
    await oc1.established("fd00:255:8::1", 30_000);
    await waitFor(
      "FRR near sees node 1 on both families",
      () =>
        frrNear.state("10.255.8.1") === "Established" &&
        frrNear.state("fd00:255:8::2") === "Established",
      15_000,
    );
    // Our listener carries the minimum for both families (every peer has GTSM).
    expect(oc1.log()).toMatch(/"family":4,"ttl":255,"minTtl":255.*Listener GTSM minimum TTL set/);
    expect(oc1.log()).toMatch(/"family":6,"ttl":255,"minTtl":255.*Listener GTSM minimum TTL set/);
  });

  it("a peer one hop further is refused with ttlSecurity 1: its segments dropped by our kernel", async () => {
    // FRR far tries every second and so do we; the kernel drops what arrives with TTL 254.
    const before = minTtlDrops(n2);
    await waitFor("segments dropped for their TTL", () => minTtlDrops(n2) >= before + 6, 30_000);
    // Both sides keep trying for a while; nothing gets as far as an OPEN.
    await new Promise((r) => setTimeout(r, 5_000));
    for (const addr of ["10.255.10.2", "fd00:255:10::2"]) {
      const p = oc2.peer(addr);
      expect(p?.state).not.toBe("Established");
      expect(p?.state).not.toBe("OpenConfirm");
    }
    expect(frrFar.state("10.255.9.2")).not.toBe("Established");
    expect(frrFar.state("fd00:255:9::2")).not.toBe("Established");
  });

  it("the same peer with ttlSecurity 2 (a SIGHUP, FRR unchanged): Established, routes both ways", async () => {
    writeFileSync(
      oc2.configPath,
      `${JSON.stringify({ status: { socket: oc2.socket }, ...node2Config(2) }, null, 2)}\n`,
    );
    lab.signal(oc2.pid, "SIGHUP");
    await oc2.established("10.255.10.2", 30_000);
    await oc2.established("fd00:255:10::2", 30_000);
    await waitFor(
      "FRR far sees node 2 on both families",
      () =>
        frrFar.state("10.255.9.2") === "Established" &&
        frrFar.state("fd00:255:9::2") === "Established",
      15_000,
    );
    const log = readFileSync(`${oc2.dir}/bgpd.log`, "utf8");
    expect(log).toMatch(/"family":6,"ttl":255,"minTtl":254.*Listener GTSM minimum TTL set/);
    expect(log).not.toMatch(/"family":4,"ttl":255,"minTtl":25\d.*Listener GTSM minimum TTL set/);
    expect(log).toMatch(/"peer":"10\.255\.10\.2".*Connection from a GTSM peer closed at accept/);
    // Routes both ways in the BGP tables (a next hop one router away is not installed: the
    // kernel takes on-link gateways only).
    await waitFor(
      "FRR far's routes in node 2's RIB",
      () => {
        const got = oc2.routes().routes.map((r) => r.prefix);
        return got.includes("10.98.10.0/24") && got.includes("fd00:98:10::/64");
      },
      15_000,
    );
    await waitFor(
      "node 2's blocks in FRR far's BGP table",
      () =>
        frrFar.vtysh("show bgp ipv4 unicast 10.244.9.0/26").includes("10.255.9.2") &&
        frrFar.vtysh("show bgp ipv6 unicast fd00:244:9::/122").includes("fd00:255:9::2"),
      15_000,
    );
  });
});
