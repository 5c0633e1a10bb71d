// The speaker against scripted raw peers over loopback, for what a configuration change and a
// misbehaving peer do to a session: a changed import filter is applied without a reset and the
// peer is asked for a ROUTE-REFRESH (RFC 2918), a changed import guard is applied in place with
// none; the peer's BoRR/EoRR (RFC 7313) sweep the paths
// it did not send again; a peer past its prefix limit gets Cease/1 with AFI/SAFI/limit (RFC
// 4486), is refused until the restart time has passed and the RIB never holds more than one
// UPDATE past the limit; a hold (what BFD Down asks for) drops the session with Cease/10 and
// refuses the peer until released; the field that forced a reset is in the status.
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type BgpdConfig, parseConfig } from "../../src/bgp/config.js";
import { realClock } from "../../src/bgp/io/clock.js";
import { makeWireBridge } from "../../src/bgp/speaker/attrs.js";
import { Speaker } from "../../src/bgp/speaker/runtime.js";
import { MessageFramer } from "../../src/bgp/wire/framer.js";
import { encodeKeepalive, encodeRouteRefresh } from "../../src/bgp/wire/message.js";
import { encodeOpen } from "../../src/bgp/wire/open.js";
import { type Capability, emptyAttributes, sessionOptions } from "../../src/bgp/wire/types.js";
import { encodeUpdates } from "../../src/bgp/wire/update.js";
import { MemoryFib } from "../../src/fib/memory_fib.js";
import { waitFor } from "../helpers/netns.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Got {
  type: number;
  code?: number;
  subcode?: number;
  data?: number[];
  afi?: number;
  rrSubtype?: number;
}

/** A scripted eBGP peer AS 65010 at 127.0.0.5 that records what it receives. */
async function rawPeer(port: number, caps: Capability[] = []) {
  const sock = net.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.5" });
  sock.on("error", () => {});
  await new Promise<void>((r, j) => {
    sock.once("connect", () => r());
    sock.once("error", j);
  });
  cleanups.push(() => sock.destroy());
  const got: Got[] = [];
  const framer = new MessageFramer();
  sock.on("data", (d: Buffer) => {
    for (const m of framer.push(d)) {
      const type = m[18] as number;
      if (type === 3) got.push({ type, code: m[19], subcode: m[20], data: [...m.subarray(21)] });
      else if (type === 5)
        got.push({ type, afi: ((m[19] as number) << 8) | (m[20] as number), rrSubtype: m[21] });
      else got.push({ type });
      if (type === 1) sock.write(encodeKeepalive());
    }
  });
  const closed = new Promise<void>((r) => sock.once("close", () => r()));
  sock.write(
    encodeOpen({
      version: 4,
      myAs: 65010,
      holdTime: 90,
      bgpIdentifier: 0x7f000005,
      capabilities: [
        { kind: "Multiprotocol", afi: 1, safi: 1 },
        { kind: "FourOctetAs", asn: 65010 },
        ...caps,
      ],
    }),
  );
  return { sock, got, closed };
}

/** UPDATEs announcing /24s at the given addresses (as many messages as they need). */
function updates(prefixes: number[]): Uint8Array[] {
  return announce(prefixes.map((p) => [p, 24]));
}

/** UPDATEs announcing [address, length] pairs (as many messages as they need). */
function announce(prefixes: [number, number][]): Uint8Array[] {
  const a = emptyAttributes();
  a.origin = 0;
  a.asPath = [{ type: 2, asns: [65010] }];
  a.nextHop = 0x7f000005;
  return encodeUpdates(
    {
      afi: 1,
      safi: 1,
      attributes: a,
      announce: {
        afi: 1,
        count: prefixes.length,
        addrs: Uint32Array.from(prefixes.map((p) => p[0])),
        lens: Uint8Array.from(prefixes.map((p) => p[1])),
        pathIds: null,
      },
    },
    sessionOptions({ fourOctetAs: true }),
  );
}

function config(peer: object = {}): BgpdConfig {
  return parseConfig({
    asn: 64512,
    routerId: "10.0.0.1",
    listen: { address: "127.0.0.1", port: 0 },
    peers: [{ address: "127.0.0.5", asn: 65010, passive: true, ...peer }],
    status: { socket: "/nonexistent" },
  });
}

async function speaker(cfg: BgpdConfig) {
  const fib = new MemoryFib();
  const s = new Speaker(cfg, { clock: realClock, fib, bridge: makeWireBridge() });
  await s.start();
  cleanups.push(() => s.stop());
  return { s, fib };
}

const established = (s: Speaker<unknown>) => s.status().peers[0]?.state === "Established";
const dsts = (fib: MemoryFib) =>
  fib
    .desired()
    .map((r) => r.dst)
    .sort();
const RR = [{ kind: "RouteRefresh" }, { kind: "EnhancedRouteRefresh" }] as Capability[];

describe("route refresh on a filter change (RFC 2918, RFC 7313)", () => {
  it("applies a new import filter without a reset, asks the peer to refresh, and sweeps at EoRR", async () => {
    const { s, fib } = await speaker(config());
    const peer = await rawPeer(s.listenPort as number, RR);
    await waitFor("Established", () => established(s), 5000, 20);
    expect(s.status().peers[0]?.negotiated?.enhancedRouteRefresh).toBe(true);
    for (const m of updates([0x0a010000, 0x0a020000, 0x0a030000])) peer.sock.write(m);
    await waitFor("3 routes", () => fib.desired().length === 3, 5000, 20);

    await s.reconfigure(
      config({
        importFilter: {
          rules: [{ action: "Reject", cidr: "10.2.0.0/24", matchOperator: "Equal" }],
        },
      }),
    );
    await waitFor(
      "ROUTE-REFRESH for IPv4 unicast received by the peer",
      () => peer.got.some((m) => m.type === 5 && m.afi === 1 && m.rrSubtype === 0),
      5000,
      20,
    );
    // Applied at once from the paths held (the Adj-RIB-In is kept), with no reset.
    await waitFor("10.2.0.0/24 filtered", () => fib.desired().length === 2, 5000, 20);
    expect(dsts(fib)).toEqual(["10.1.0.0/24", "10.3.0.0/24"]);
    expect(s.status().peers[0]?.establishedTransitions).toBe(1);
    expect(peer.got.some((m) => m.type === 3)).toBe(false);

    // The peer answers with BoRR, its routes now (10.3.0.0/24 is gone there), EoRR.
    peer.sock.write(encodeRouteRefresh({ afi: 1, safi: 1, subtype: 1 }));
    for (const m of updates([0x0a010000, 0x0a020000])) peer.sock.write(m);
    peer.sock.write(encodeRouteRefresh({ afi: 1, safi: 1, subtype: 2 }));
    await waitFor("10.3.0.0/24 swept at EoRR", () => fib.desired().length === 1, 5000, 20);
    expect(dsts(fib)).toEqual(["10.1.0.0/24"]);
    expect(s.status().peers[0]?.prefixes).toMatchObject({ received: 2, accepted: 1 });
    expect(s.status().peers[0]?.establishedTransitions).toBe(1);
  });

  it("applies an importGuard change in place from the kept Adj-RIB-In, never asking for a ROUTE-REFRESH", async () => {
    const { s, fib } = await speaker(config());
    const peer = await rawPeer(s.listenPort as number, RR);
    await waitFor("Established", () => established(s), 5000, 20);
    for (const m of updates([0x0a010000, 0x0a020000, 0x0a030000])) peer.sock.write(m);
    await waitFor("3 routes", () => fib.desired().length === 3, 5000, 20);
    const guard = (cidr: string) => ({
      importGuard: { rules: [{ action: "Reject", cidr, matchOperator: "Equal" }] },
    });
    // What `ocelot node run` does when a Node joins: one more guard rule.
    await s.reconfigure(config(guard("10.2.0.0/24")));
    await waitFor("10.2.0.0/24 rejected", () => fib.desired().length === 2, 5000, 20);
    expect(dsts(fib)).toEqual(["10.1.0.0/24", "10.3.0.0/24"]);
    expect(s.status().peers[0]?.prefixes).toMatchObject({ received: 3, accepted: 2 });
    // A rule moved to another prefix: the rejected path comes back from the Adj-RIB-In.
    await s.reconfigure(config(guard("10.3.0.0/24")));
    await waitFor(
      "10.2.0.0/24 back, 10.3.0.0/24 rejected",
      () => {
        const d = dsts(fib);
        return d.length === 2 && d.includes("10.2.0.0/24");
      },
      5000,
      20,
    );
    // Then an importFilter change, which does ask: its ROUTE-REFRESH is the first and only one
    // the peer gets (TCP keeps the order, so one asked for by the guard changes came before).
    await s.reconfigure(
      config({
        ...guard("10.3.0.0/24"),
        importFilter: {
          rules: [{ action: "Reject", cidr: "10.1.0.0/24", matchOperator: "Equal" }],
        },
      }),
    );
    await waitFor(
      "the importFilter's ROUTE-REFRESH",
      () => peer.got.some((m) => m.type === 5),
      5000,
      20,
    );
    expect(peer.got.filter((m) => m.type === 5)).toHaveLength(1);
    await waitFor("10.1.0.0/24 filtered", () => fib.desired().length === 1, 5000, 20);
    expect(dsts(fib)).toEqual(["10.2.0.0/24"]);
    expect(s.status().peers[0]?.establishedTransitions).toBe(1);
    expect(peer.got.some((m) => m.type === 3)).toBe(false);
  });

  it("applies an importOwnership change in place: a refused block lands when its owner is known, accepted routes never flap, no ROUTE-REFRESH", async () => {
    const inPool = (accept: string[]) => ({
      // An accept-all filter behind it: the ownership comes first and is not overridden.
      importFilter: { rules: [{ action: "Accept" }] },
      importOwnership: { within: ["10.0.0.0/14"], accept },
    });
    const { s, fib } = await speaker(config(inPool(["10.1.0.0/24"])));
    const peer = await rawPeer(s.listenPort as number, RR);
    await waitFor("Established", () => established(s), 5000, 20);
    const sent: [number, number][] = [
      [0x0a010000, 24], // its block
      [0x0a010009, 32], // a host route inside its block
      [0x0a020000, 24], // a block it claims, the affinity not seen yet
      [0x0a020007, 32], // an address it borrowed, not seen yet
      [0x0a030000, 24], // another node's block
      [0x0a090000, 24], // outside the pools
    ];
    for (const m of announce(sent)) peer.sock.write(m);
    await waitFor("6 paths received", () => s.status().peers[0]?.prefixes.received === 6, 5000, 20);
    await waitFor("3 routes", () => fib.desired().length === 3, 5000, 20);
    expect(dsts(fib)).toEqual(["10.1.0.0/24", "10.1.0.9/32", "10.9.0.0/24"]);
    expect(s.status().peers[0]?.prefixes).toMatchObject({
      accepted: 3,
      rejected: { NotOwned: 3 },
    });
    const ops = (dst: string) => fib.log.filter((o) => o.route.startsWith(`${dst} `)).length;
    const owned = ops("10.1.0.0/24");
    expect(owned, "the owned block installed once").toBe(1);
    // The affinity and the borrowed address arrive: both land from the kept Adj-RIB-In.
    await s.reconfigure(config(inPool(["10.1.0.0/24", "10.2.0.0/24", "10.2.0.7/32"])));
    await waitFor("5 routes", () => fib.desired().length === 5, 5000, 20);
    expect(dsts(fib)).toEqual([
      "10.1.0.0/24",
      "10.1.0.9/32",
      "10.2.0.0/24",
      "10.2.0.7/32",
      "10.9.0.0/24",
    ]);
    // The route that stayed owned was not touched (no remove, no second set).
    expect(ops("10.1.0.0/24")).toBe(owned);
    // The block moves to another node: its routes go, the rest stay.
    await s.reconfigure(config(inPool(["10.2.0.0/24", "10.2.0.7/32"])));
    await waitFor("3 routes", () => fib.desired().length === 3, 5000, 20);
    expect(dsts(fib)).toEqual(["10.2.0.0/24", "10.2.0.7/32", "10.9.0.0/24"]);
    // The counter counts refusals: 3 at first, 2 more when the block moved away.
    expect(s.status().peers[0]?.prefixes.rejected).toEqual({ NotOwned: 5 });
    await new Promise((r) => setTimeout(r, 200));
    expect(peer.got.filter((m) => m.type === 5)).toHaveLength(0);
    expect(peer.got.some((m) => m.type === 3)).toBe(false);
    expect(s.status().peers[0]?.establishedTransitions).toBe(1);
  });

  it("resets only for a reset field, and names it in the status", async () => {
    const { s } = await speaker(config());
    const peer = await rawPeer(s.listenPort as number, RR);
    await waitFor("Established", () => established(s), 5000, 20);
    // BFD turned on and a new connect retry time: no reset.
    await s.reconfigure(config({ bfd: {}, connectRetryTime: 7 }));
    expect(s.status().peers[0]?.state).toBe("Established");
    expect(s.status().peers[0]?.lastConfigReset).toBeUndefined();
    // A new hold time goes in the OPEN: reset with Cease/6, and the status says why.
    await s.reconfigure(config({ bfd: {}, holdTime: 30 }));
    await waitFor("Cease/6 received", () => peer.got.some((m) => m.type === 3), 5000, 20);
    expect(peer.got.find((m) => m.type === 3)).toMatchObject({ code: 6, subcode: 6 });
    expect(s.status().peers[0]?.lastConfigReset).toMatchObject({ field: "holdTime" });
  });
});

describe("max-prefix (RFC 4486)", () => {
  it("closes a flooding peer with Cease/1 at its limit, keeps the RIB bounded, and takes it back after the restart time", async () => {
    const LIMIT = 1000;
    const { s, fib } = await speaker(
      config({ maxPrefixes: { "ipv4-unicast": { limit: LIMIT, restartTime: 2 } } }),
    );
    const peer = await rawPeer(s.listenPort as number);
    await waitFor("Established", () => established(s), 5000, 20);
    const flood = updates(Array.from({ length: 20_000 }, (_, i) => 0x14000000 + i * 256));
    let most = 0;
    for (const m of flood) {
      if (peer.sock.destroyed) break;
      peer.sock.write(m);
    }
    await waitFor(
      "Cease/1 received",
      () => {
        most = Math.max(most, s.rib.size.v4);
        return peer.got.some((m) => m.type === 3);
      },
      10_000,
      5,
    );
    const n = peer.got.find((m) => m.type === 3) as Got;
    expect(n).toMatchObject({ code: 6, subcode: 1 });
    // Data: AFI 1, SAFI 1, the limit as 4 octets.
    expect(n.data).toEqual([0, 1, 1, 0, 0, (LIMIT >> 8) & 0xff, LIMIT & 0xff]);
    await peer.closed;
    await waitFor("the peer's routes removed", () => fib.desired().length === 0, 5000, 20);
    // One UPDATE of 4096 bytes carries at most ~1000 /24s: the RIB never went further.
    expect(most).toBeLessThanOrEqual(LIMIT + 1100);
    expect(s.status().peers[0]?.heldDown).toEqual(["maxPrefix"]);
    expect(s.status().peers[0]?.lastError).toMatchObject({ code: 6, subcode: 1 });

    // Held down: a new connection is refused until the restart time (2 s) has passed.
    const t0 = Date.now();
    let back: Awaited<ReturnType<typeof rawPeer>> | undefined;
    await waitFor(
      "session accepted again",
      async () => {
        const p = await rawPeer(s.listenPort as number).catch(() => undefined);
        if (!p) return false;
        await new Promise((r) => setTimeout(r, 200));
        if (p.got.some((m) => m.type === 1) && !p.sock.destroyed) {
          back = p;
          return true;
        }
        p.sock.destroy();
        return false;
      },
      20_000,
      100,
    );
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
    await waitFor("Established again", () => established(s), 5000, 20);
    expect(s.status().peers[0]?.heldDown).toBeUndefined();
    back?.sock.write(updates([0x0a010000])[0] as Uint8Array);
    await waitFor("a route under the limit installed", () => fib.desired().length === 1, 5000, 20);
  });

  it("with restartTime 0 stays down until the limits change, then takes the peer back", async () => {
    const { s } = await speaker(
      config({ maxPrefixes: { "ipv4-unicast": { limit: 5, restartTime: 0 } } }),
    );
    const peer = await rawPeer(s.listenPort as number);
    await waitFor("Established", () => established(s), 5000, 20);
    for (const m of updates(Array.from({ length: 6 }, (_, i) => 0x14000000 + i * 256)))
      peer.sock.write(m);
    await peer.closed;
    expect(s.status().peers[0]?.heldDown).toEqual(["maxPrefix"]);
    await s.reconfigure(config({ maxPrefixes: { "ipv4-unicast": { limit: 50, restartTime: 0 } } }));
    expect(s.status().peers[0]?.heldDown).toBeUndefined();
    await rawPeer(s.listenPort as number);
    await waitFor("Established again", () => established(s), 5000, 20);
  });

  it("warns at the threshold without closing", async () => {
    const { s, fib } = await speaker(
      config({ maxPrefixes: { "ipv4-unicast": { limit: 10, warningPercent: 50 } } }),
    );
    const peer = await rawPeer(s.listenPort as number);
    await waitFor("Established", () => established(s), 5000, 20);
    for (const m of updates(Array.from({ length: 10 }, (_, i) => 0x14000000 + i * 256)))
      peer.sock.write(m);
    await waitFor("10 routes", () => fib.desired().length === 10, 5000, 20);
    expect(s.status().peers[0]?.state).toBe("Established");
    expect(peer.got.some((m) => m.type === 3)).toBe(false);
  });
});

describe("hold (BFD Down)", () => {
  it("drops the session with Cease/10 and refuses the peer until released", async () => {
    const { s, fib } = await speaker(config());
    const peer = await rawPeer(s.listenPort as number);
    await waitFor("Established", () => established(s), 5000, 20);
    for (const m of updates([0x0a010000])) peer.sock.write(m);
    await waitFor("1 route", () => fib.desired().length === 1, 5000, 20);
    s.signal({ kind: "peerHold", peer: "127.0.0.5", held: true, reason: "BFD session down" });
    await waitFor("Cease/10 received", () => peer.got.some((m) => m.type === 3), 5000, 20);
    expect(peer.got.find((m) => m.type === 3)).toMatchObject({ code: 6, subcode: 10 });
    await waitFor("route removed", () => fib.desired().length === 0, 5000, 20);
    expect(s.status().peers[0]?.heldDown).toEqual(["bfd"]);
    // Refused while held.
    const again = await rawPeer(s.listenPort as number).catch(() => undefined);
    if (again) await again.closed;
    expect(again?.got.some((m) => m.type === 1) ?? false).toBe(false);
    expect(s.status().peers[0]?.state).not.toBe("Established");
    s.signal({ kind: "peerHold", peer: "127.0.0.5", held: false, reason: "BFD session up" });
    await rawPeer(s.listenPort as number);
    await waitFor("Established after release", () => established(s), 5000, 20);
  });
});
