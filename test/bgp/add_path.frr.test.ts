// ADD-PATH (RFC 7911) and extended messages (RFC 8654) with FRR, on one LAN (a bridge in its own
// namespace): two `ocelot bgpd` sources (A, B) originate the same prefix; FRR reflects them to an
// Ocelot client (C1) that installs both paths as one multipath kernel route, and Ocelot reflects
// them to an FRR client (C2) that receives both (with their path ids) and installs both. A also
// originates 2,000 /32s: with extended messages both ways they travel in one UPDATE.
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
const skip = skipWithReason("ADD-PATH and extended messages with FRR", reason);

const AS = 64512;
const P = "10.99.0.0/24";
const A = "10.77.0.11";
const B = "10.77.0.12";
const R1 = "10.77.0.1"; // FRR reflector
const C1 = "10.77.0.21"; // Ocelot client of R1
const R2 = "10.77.0.2"; // Ocelot reflector
const C2 = "10.77.0.22"; // FRR client of R2
const MANY = 2000;

const frrReflector = `frr defaults traditional
hostname r1
!
router bgp ${AS}
 bgp router-id ${R1}
 bgp cluster-id ${R1}
 no bgp network import-check
 neighbor CLIENTS peer-group
 neighbor CLIENTS remote-as ${AS}
 neighbor CLIENTS timers 3 9
 neighbor CLIENTS timers connect 1
 neighbor CLIENTS advertisement-interval 0
 neighbor ${A} peer-group CLIENTS
 neighbor ${B} peer-group CLIENTS
 neighbor ${C1} peer-group CLIENTS
 address-family ipv4 unicast
  neighbor CLIENTS route-reflector-client
  neighbor ${C1} addpath-tx-all-paths
 exit-address-family
exit
!
`;

const frrClient = `frr defaults traditional
hostname c2
!
router bgp ${AS}
 bgp router-id ${C2}
 neighbor ${R2} remote-as ${AS}
 neighbor ${R2} timers 3 9
 neighbor ${R2} timers connect 1
 address-family ipv4 unicast
  maximum-paths ibgp 4
 exit-address-family
exit
!
`;

const peerDefaults = { asn: AS, holdTime: 9, connectRetryTime: 1, families: ["ipv4-unicast"] };

/** A source: P, and 2,000 /32s (A's and B's differ), B without extended messages toward R1. */
function source(self: string) {
  const net = self === A ? 98 : 97;
  const many = Array.from({ length: MANY }, (_, i) => ({
    prefix: `10.${net}.${i >> 8}.${i & 255}/32`,
  }));
  return {
    asn: AS,
    routerId: self,
    peers: [
      { address: R1, ...peerDefaults, ...(self === B ? { extendedMessage: false } : {}) },
      { address: R2, ...peerDefaults },
    ],
    originate: [{ prefix: P }, ...many],
    fib: { enabled: false },
  };
}

describe.skipIf(skip)("ADD-PATH and extended messages with FRR", () => {
  let lab: PeerLab;
  const ns: Record<string, Netns> = {};
  let r1: FrrPeer;
  let c2: FrrPeer;
  let a: OcelotPeer;
  let b: OcelotPeer;
  let c1: OcelotPeer;
  let r2: OcelotPeer;

  beforeAll(() => {
    lab = new PeerLab();
    ns.lan = Netns.create("aplan");
    ns.lan.ip("link", "add", "br0", "type", "bridge");
    ns.lan.ip("link", "set", "br0", "up");
    const hosts: [string, string][] = [
      ["a", A],
      ["b", B],
      ["r1", R1],
      ["c1", C1],
      ["r2", R2],
      ["c2", C2],
    ];
    for (const [name, addr] of hosts) {
      const n = Netns.create(`ap${name}`);
      ns[name] = n;
      link(ns.lan, `p-${name}`, undefined, n, "eth0", `${addr}/24`);
      ns.lan.ip("link", "set", `p-${name}`, "master", "br0");
    }
    r1 = lab.startFrr(ns.r1 as Netns, "r1", frrReflector);
    c2 = lab.startFrr(ns.c2 as Netns, "c2", frrClient);
    a = lab.startOcelot(ns.a as Netns, "a", source(A));
    b = lab.startOcelot(ns.b as Netns, "b", source(B));
    c1 = lab.startOcelot(ns.c1 as Netns, "c1", {
      asn: AS,
      routerId: C1,
      peers: [{ address: R1, ...peerDefaults, addPath: { receive: true } }],
      fib: { enabled: true, table: "main", protocol: 201 },
    });
    const client = { ...peerDefaults, routeReflectorClient: true };
    r2 = lab.startOcelot(ns.r2 as Netns, "r2", {
      asn: AS,
      routerId: R2,
      clusterId: R2,
      peers: [
        { address: A, ...client },
        { address: B, ...client },
        { address: C2, ...client, addPath: { receive: false, send: 8 } },
      ],
      fib: { enabled: false },
    });
  });

  afterAll(() => {
    if (process.env.KEEP_PEERS) console.warn(`peer files kept in ${lab?.dir}`);
    lab?.cleanup();
    for (const n of Object.values(ns)) n.destroy();
  });

  it("an Ocelot client of an FRR reflector gets both paths by id and installs one multipath route", async () => {
    await c1.established(R1, 30_000);
    expect(c1.peer(R1)?.negotiated).toMatchObject({
      addPath: { receive: ["ipv4-unicast"], send: [] },
    });
    const route = await waitFor(
      "a two-way multipath route on C1",
      () =>
        kernelRoutes(ns.c1 as Netns, 4).find(
          (r) => r.dst === P && r.protocol === "201" && (r.nexthops?.length ?? 0) === 2,
        ),
      30_000,
    );
    expect(route.nexthops?.map((h) => h.gateway).sort()).toEqual([A, B]);
    // Both from the one session with the reflector.
    expect(c1.peer(R1)?.prefixes.received).toBeGreaterThanOrEqual(2);
  });

  it("an FRR client of an Ocelot reflector gets both paths with their ids and installs both", async () => {
    await r2.established(C2, 30_000);
    expect(r2.peer(C2)?.negotiated).toMatchObject({
      addPath: { send: ["ipv4-unicast"], receive: [] },
    });
    type Paths = {
      paths: {
        nexthops: { ip: string }[];
        addpathRxId?: number;
        multipath?: boolean;
        bestpath?: unknown;
      }[];
    };
    const j = await waitFor(
      "two paths in C2's BGP table",
      () => {
        const x = c2.vtyshJson<Paths>(`show bgp ipv4 unicast ${P} json`);
        return x.paths?.length === 2 ? x : undefined;
      },
      30_000,
    );
    expect(j.paths.map((p) => p.nexthops[0]?.ip).sort()).toEqual([A, B]);
    const ids = j.paths.map((p) => p.addpathRxId);
    expect(new Set(ids).size).toBe(2);
    expect(ids.every((id) => typeof id === "number" && id > 0)).toBe(true);
    const route = await waitFor(
      "a two-way multipath route on C2 (FRR's zebra)",
      () =>
        kernelRoutes(ns.c2 as Netns, 4).find((r) => r.dst === P && (r.nexthops?.length ?? 0) === 2),
      30_000,
    );
    expect(route.nexthops?.map((h) => h.gateway).sort()).toEqual([A, B]);
  });

  it("sends 2,000 prefixes to FRR in one UPDATE over extended messages, and reads FRR's back", async () => {
    await a.established(R1, 30_000);
    expect(a.peer(R1)?.negotiated).toMatchObject({ extendedMessage: true });
    type Nbr = Record<
      string,
      { messageStats?: { updatesRecv?: number }; extendedMessage?: unknown }
    >;
    await waitFor(
      "C1 holds A's and B's 2,000 prefixes through FRR",
      () => (c1.peer(R1)?.prefixes.received ?? 0) >= 2 * MANY + 2,
      60_000,
    );
    const updatesFrom = (x: string) =>
      r1.vtyshJson<Nbr>(`show bgp neighbors ${x} json`)[x]?.messageStats?.updatesRecv ?? -1;
    // 2,000 /32s are 10 kB of NLRI: at most 4,096 octets a message, that is 3 UPDATEs at least
    // (B, which has extended messages off toward FRR, is the same run's reference).
    const fromA = updatesFrom(A);
    const fromB = updatesFrom(B);
    console.log(
      `FRR received ${MANY + 1} prefixes in ${fromA} UPDATE(s) from A (extended messages), ` +
        `in ${fromB} from B (without); End-of-RIB included`,
    );
    expect(a.peer(R1)?.negotiated).toMatchObject({ extendedMessage: true });
    expect(b.peer(R1)?.negotiated).toMatchObject({ extendedMessage: false });
    expect(fromA).toBeGreaterThan(0);
    expect(fromA).toBeLessThanOrEqual(2);
    expect(fromB).toBeGreaterThanOrEqual(4);
    // The other way: FRR sent C1 2 x 2,000 prefixes with path ids (9 octets each, 36 kB): in
    // 4,096-octet messages that is 9 UPDATEs at least; C1's framer took FRR's larger ones.
    const c1in = (c1.peer(R1)?.messages as { updatesIn?: number } | undefined)?.updatesIn ?? -1;
    console.log(`C1 received ${c1.peer(R1)?.prefixes.received} paths from FRR in ${c1in} UPDATEs`);
    expect(c1in).toBeGreaterThan(0);
    expect(c1in).toBeLessThanOrEqual(8);
  });

  it("a source gone: each client keeps the other path alone (withdrawn by its id)", async () => {
    lab.stop(b.pid);
    type Paths = { paths?: { nexthops: { ip: string }[] }[] };
    await waitFor(
      "C2 left with A's path",
      () => {
        const x = c2.vtyshJson<Paths>(`show bgp ipv4 unicast ${P} json`);
        return x.paths?.length === 1 && x.paths[0]?.nexthops[0]?.ip === A;
      },
      30_000,
    );
    await waitFor(
      "C1's kernel route via A alone",
      () =>
        kernelRoutes(ns.c1 as Netns, 4).some(
          (r) => r.dst === P && r.gateway === A && r.nexthops === undefined,
        ),
      30_000,
    );
  });
});
