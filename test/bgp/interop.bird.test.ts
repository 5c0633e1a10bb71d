// Interop with BIRD 2 in network namespaces, `ocelot bgpd` running as a real process: sessions
// both ways (we connect on IPv4, BIRD connects on IPv6), routes both ways into both kernels,
// 4-octet AS and (large) communities unchanged, withdraw, hold timer 4/0 on a frozen peer, 2/2.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { type Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type BirdPeer,
  closePeerLab,
  type KernelRoute,
  kernelRoutes,
  type OcelotPeer,
  openPeerPair,
  type PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["bird"]);
const skip = skipWithReason("interop with BIRD", reason);

const BIRD_AS = 4200000001;
const OC_AS = 64512;

function birdConf(withSecondRoute = true): string {
  return `
log "@DIR@/bird.log" all;
router id 10.255.1.2;
graceful restart wait 3;
protocol device { }
protocol kernel k4 { ipv4 { import none; export where source = RTS_BGP; }; merge paths on; }
protocol kernel k6 { ipv6 { import none; export where source = RTS_BGP; }; }
protocol static s4 {
  ipv4;
  route 10.99.1.0/24 blackhole { bgp_community.add((65001,7)); bgp_large_community.add((${BIRD_AS},1,2)); };
  ${withSecondRoute ? "route 10.99.2.0/24 blackhole;" : ""}
}
protocol static s6 { ipv6; route fd00:99::/64 blackhole; }
protocol bgp oc4 {
  local 10.255.1.2 as ${BIRD_AS};
  neighbor 10.255.1.1 as ${OC_AS};
  passive on;
  hold time 9;
  error wait time 1, 5;
  graceful restart on;
  ipv4 { import all; export where source = RTS_STATIC; };
}
protocol bgp oc6 {
  local fd00:255:1::2 as ${BIRD_AS};
  neighbor fd00:255:1::1 as ${OC_AS};
  connect delay time 1; connect retry time 1;
  error wait time 1, 5;
  ipv6 { import all; export where source = RTS_STATIC; };
}
protocol bgp bad {
  local 10.255.1.3 as 65999;
  neighbor 10.255.1.4 as ${OC_AS};
  connect delay time 1; connect retry time 1;
  error wait time 1, 5;
  ipv4 { import all; export none; };
}
`;
}

describe.skipIf(skip)("interop with BIRD 2", () => {
  let lab: PeerLab;
  let oc: Netns;
  let br: Netns;
  let bird: BirdPeer;
  let ocelot: OcelotPeer;

  beforeAll(() => {
    // BIRD runs one protocol per neighbor address: the wrong-AS peer talks to our second address.
    ({ lab, oc, br } = openPeerPair("ocb", "brd", "10.255.1.1/29", "10.255.1.2/29", {
      br: "10.255.1.3/29",
      oc: "10.255.1.4/29",
    }));
    oc.ip("addr", "add", "fd00:255:1::1/64", "dev", "oc-br", "nodad");
    br.ip("addr", "add", "fd00:255:1::2/64", "dev", "br-oc", "nodad");
    bird = lab.startBird(br, "bird", birdConf());
    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig);
  });

  const ocelotConfig = {
    asn: OC_AS,
    routerId: "10.255.1.1",
    listen: { address: "::", port: 179 },
    peers: [
      {
        address: "10.255.1.2",
        asn: BIRD_AS,
        holdTime: 3,
        connectRetryTime: 1,
        families: ["ipv4-unicast"],
      },
      { address: "fd00:255:1::2", asn: BIRD_AS, passive: true, families: ["ipv6-unicast"] },
      { address: "10.255.1.3", asn: 65000, passive: true, families: ["ipv4-unicast"] },
    ],
    originate: [
      { prefix: "10.244.1.0/26", communities: ["64512:100"], largeCommunities: ["64512:1:2"] },
      { prefix: "fd00:244:1::/122" },
    ],
    fib: { enabled: true, table: "main", protocol: 201, gracefulRestartTime: 60 },
  };

  afterAll(() => {
    if (process.env.KEEP_PEERS) console.warn(`peer files kept in ${lab?.dir}`);
    closePeerLab(lab, oc, br);
  });

  const ours = (family: 4 | 6): KernelRoute[] =>
    kernelRoutes(oc, family).filter((r) => r.protocol === "201");

  it("establishes when we connect (IPv4) and when BIRD connects (IPv6)", async () => {
    await ocelot.established("10.255.1.2");
    await ocelot.established("fd00:255:1::2");
    await waitFor(
      "BIRD oc4/oc6 Established",
      () => bird.state("oc4") === "Established" && bird.state("oc6") === "Established",
      10_000,
    );
    const st = ocelot.peer("10.255.1.2");
    expect(st?.negotiated).toMatchObject({
      holdTime: 3,
      fourOctetAs: true,
      families: ["ipv4-unicast"],
    });
  });

  it("installs BIRD's IPv4 and IPv6 routes in our kernel with BIRD as next hop", async () => {
    await waitFor(
      "BIRD routes in our kernel",
      () => ours(4).length === 2 && ours(6).length === 1,
      10_000,
    );
    expect(
      ours(4)
        .map((r) => [r.dst, r.gateway])
        .sort(),
    ).toEqual([
      ["10.99.1.0/24", "10.255.1.2"],
      ["10.99.2.0/24", "10.255.1.2"],
    ]);
    expect(ours(6).map((r) => [r.dst, r.gateway])).toEqual([["fd00:99::/64", "fd00:255:1::2"]]);
  });

  it("keeps BIRD's 4-octet AS path, community and large community unchanged", () => {
    const r = ocelot.routes().routes.find((x) => x.prefix === "10.99.1.0/24") as unknown as {
      best: { asPath: string; communities: string[]; largeCommunities: string[] };
    };
    expect(r.best.asPath).toBe(String(BIRD_AS));
    expect(r.best.communities).toEqual(["65001:7"]);
    expect(r.best.largeCommunities).toEqual([`${BIRD_AS}:1:2`]);
  });

  it("installs our originations in BIRD's kernel, communities intact", async () => {
    await waitFor(
      "our blocks in BIRD's kernel",
      () =>
        kernelRoutes(br, 4).some((r) => r.dst === "10.244.1.0/26" && r.gateway === "10.255.1.1") &&
        kernelRoutes(br, 6).some(
          (r) => r.dst === "fd00:244:1::/122" && r.gateway === "fd00:255:1::1",
        ),
      10_000,
    );
    const shown = bird.route("10.244.1.0/26");
    expect(shown).toContain("BGP.as_path: 64512");
    expect(shown).toContain("BGP.community: (64512,100)");
    expect(shown).toContain("BGP.large_community: (64512, 1, 2)");
  });

  it("sends to a directly connected eBGP peer with IP TTL 1", () => {
    // Keepalives flow every second (hold time 3): capture two from our address.
    const cap = runSync(
      "ip",
      [
        "netns",
        "exec",
        br.name,
        "tshark",
        "-i",
        "br-oc",
        "-a",
        "duration:4",
        "-c",
        "2",
        "-f",
        "tcp port 179 and src host 10.255.1.1",
        "-T",
        "fields",
        "-e",
        "ip.ttl",
      ],
      { encoding: "utf8", timeout: HANG_MS },
    );
    const ttls = cap.stdout.split("\n").filter(Boolean);
    expect(ttls.length).toBeGreaterThan(0);
    expect(new Set(ttls)).toEqual(new Set(["1"]));
  });

  it("refuses a peer with the wrong AS with NOTIFICATION 2/2", async () => {
    await waitFor("2/2 sent", () => ocelot.peer("10.255.1.3")?.lastError?.code === 2, 10_000);
    expect(ocelot.peer("10.255.1.3")?.lastError).toMatchObject({
      kind: "NotificationSent",
      code: 2,
      subcode: 2,
    });
    await waitFor(
      "BIRD saw Bad peer AS",
      () => /Bad peer AS/.test(bird.cmd("show", "protocols", "all", "bad")),
      5000,
    );
  });

  it("removes a route from our kernel when BIRD withdraws it", async () => {
    bird.cmd("disable", "s6");
    await waitFor("IPv6 route withdrawn", () => ours(6).length === 0, 10_000);
    expect(ours(4).length).toBe(2);
    bird.cmd("enable", "s6");
    await waitFor("IPv6 route back", () => ours(6).length === 1, 10_000);
  });

  it("drops a frozen BIRD when the 3 s hold timer fires, sending NOTIFICATION 4/0", async () => {
    const t0 = Date.now();
    lab.signal(bird.pid, "SIGSTOP");
    try {
      await waitFor(
        "hold timer expiry",
        () => ocelot.peer("10.255.1.2")?.lastError?.code === 4,
        8000,
        100,
      );
      const waited = Date.now() - t0;
      expect(ocelot.peer("10.255.1.2")?.lastError).toMatchObject({
        kind: "NotificationSent",
        code: 4,
        subcode: 0,
      });
      expect(waited).toBeGreaterThanOrEqual(1500);
      await waitFor("its IPv4 routes removed", () => ours(4).length === 0, 5000);
    } finally {
      lab.signal(bird.pid, "SIGCONT");
    }
    // BIRD does not log our 4/0: resumed, it finds our new connection (queued while it was
    // frozen) and, as a graceful-restart helper, takes it for our restart (RFC 4724 §4.2,
    // "Neighbor graceful restart detected" in its trace), closing the old one unread.
    await ocelot.established("10.255.1.2", 20_000);
    await waitFor("routes back after re-establishing", () => ours(4).length === 2, 10_000);
  });

  it("keeps our kernel routes across a daemon crash and sweeps stale ones after End-of-RIB", async () => {
    await waitFor("all BIRD routes", () => ours(4).length === 2 && ours(6).length === 1, 10_000);
    lab.signal(ocelot.pid, "SIGKILL");
    await waitFor("bgpd gone", () => !oc.pids().includes(ocelot.pid), 5000);
    // While we are down BIRD drops fd00:99::/64: nobody can tell us, the kernel still has it.
    bird.cmd("disable", "s6");
    expect([ours(4).length, ours(6).length]).toEqual([2, 1]);
    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig);
    let minV4 = 2;
    await waitFor(
      "stale route swept after End-of-RIB",
      () => {
        minV4 = Math.min(minV4, ours(4).length);
        return ours(6).length === 0;
      },
      20_000,
      50,
    );
    expect(minV4).toBe(2);
    expect(ours(4).length).toBe(2);
    expect(ocelot.log()).toContain("All peers sent End-of-RIB");
  });

  it("keeps a restarting BIRD's routes (graceful restart helper) and sweeps the stale one after End-of-RIB", async () => {
    bird.cmd("enable", "s6");
    await ocelot.established("10.255.1.2", 20_000);
    await waitFor("both BIRD IPv4 routes", () => ours(4).length === 2, 10_000);
    lab.signal(bird.pid, "SIGKILL");
    await waitFor(
      "ocelot saw the drop",
      () => ocelot.peer("10.255.1.2")?.state !== "Established",
      10_000,
    );
    // BIRD is gone; its IPv4 routes stay in our kernel while it restarts.
    await new Promise((r) => setTimeout(r, 1000));
    expect(
      ours(4)
        .map((r) => r.dst)
        .sort(),
    ).toEqual(["10.99.1.0/24", "10.99.2.0/24"]);
    expect(ocelot.log()).toContain("keeping its routes as stale");
    // BIRD comes back in graceful-restart recovery (-R: Forwarding State bit set) without
    // 10.99.2.0/24: the route it still has never leaves our kernel; after its End-of-RIB only the
    // stale one goes.
    bird = lab.startBird(br, "bird", birdConf(false), ["-R"]);
    let sawFirst = true;
    await waitFor(
      "stale route swept",
      () => {
        const dsts = ours(4).map((r) => r.dst);
        if (!dsts.includes("10.99.1.0/24")) sawFirst = false;
        return !dsts.includes("10.99.2.0/24");
      },
      30_000,
      50,
    );
    expect(sawFirst).toBe(true);
    expect(ours(4).map((r) => r.dst)).toEqual(["10.99.1.0/24"]);
    expect(ocelot.log()).toMatch(
      /"why":"End-of-RIB","msg":"Stale routes of a restarted peer removed"/,
    );
  });
});
