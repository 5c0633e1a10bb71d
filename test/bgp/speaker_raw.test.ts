// The speaker against scripted raw peers over loopback: RFC 7606 treat-as-withdraw keeps the
// session, a framing error resets it with NOTIFICATION 1/1 and removes the peer's routes,
// ROUTE-REFRESH is answered with the Adj-RIB-Out, equal eBGP paths become one ECMP route.
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/bgp/config.js";
import { realClock } from "../../src/bgp/io/clock.js";
import { makeWireBridge } from "../../src/bgp/speaker/attrs.js";
import { Speaker } from "../../src/bgp/speaker/runtime.js";
import { MessageFramer } from "../../src/bgp/wire/framer.js";
import { encodeKeepalive } from "../../src/bgp/wire/message.js";
import { encodeOpen } from "../../src/bgp/wire/open.js";
import { emptyAttributes, sessionOptions } from "../../src/bgp/wire/types.js";
import { encodeUpdates } from "../../src/bgp/wire/update.js";
import { MemoryFib } from "../../src/fib/memory_fib.js";
import { waitFor } from "../helpers/netns.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A scripted eBGP peer AS 65010 (at 127.0.0.5 by default) that records the message types it receives. */
async function rawPeer(port: number, address = "127.0.0.5") {
  const sock = net.connect({ host: "127.0.0.1", port, localAddress: address });
  await new Promise<void>((r, j) => {
    sock.once("connect", () => r());
    sock.once("error", j);
  });
  cleanups.push(() => sock.destroy());
  const got: { type: number; code?: number; subcode?: number }[] = [];
  const framer = new MessageFramer();
  sock.on("data", (d: Buffer) => {
    for (const m of framer.push(d)) {
      got.push(m[18] === 3 ? { type: 3, code: m[19], subcode: m[20] } : { type: m[18] as number });
      if (m[18] === 1) sock.write(encodeKeepalive());
    }
  });
  sock.write(
    encodeOpen({
      version: 4,
      myAs: 65010,
      holdTime: 90,
      bgpIdentifier: 0x7f000005,
      capabilities: [
        { kind: "Multiprotocol", afi: 1, safi: 1 },
        { kind: "FourOctetAs", asn: 65010 },
      ],
    }),
  );
  return { sock, got };
}

function update(prefixes: number[], nextHop = 0x7f000005): Uint8Array {
  const a = emptyAttributes();
  a.origin = 0;
  a.asPath = [{ type: 2, asns: [65010] }];
  a.nextHop = nextHop;
  const [m] = encodeUpdates(
    {
      afi: 1,
      safi: 1,
      attributes: a,
      announce: {
        afi: 1,
        count: prefixes.length,
        addrs: Uint32Array.from(prefixes),
        lens: new Uint8Array(prefixes.length).fill(24),
        pathIds: null,
      },
    },
    sessionOptions({ fourOctetAs: true }),
  );
  return m as Uint8Array;
}

async function speaker(originate: { prefix: string }[] = [], extraPeers: object[] = []) {
  const cfg = parseConfig({
    asn: 64512,
    routerId: "10.0.0.1",
    listen: { address: "127.0.0.1", port: 0 },
    peers: [{ address: "127.0.0.5", asn: 65010, passive: true }, ...extraPeers],
    originate,
    status: { socket: "/nonexistent" },
  });
  const fib = new MemoryFib();
  const s = new Speaker(cfg, { clock: realClock, fib, bridge: makeWireBridge() });
  await s.start();
  cleanups.push(() => s.stop());
  return { s, fib };
}

describe("Speaker with scripted raw peers", () => {
  it("treats an UPDATE with a bad ORIGIN as withdraw (RFC 7606 §7.1) and keeps the session", async () => {
    const { s, fib } = await speaker();
    const peer = await rawPeer(s.listenPort as number);
    await waitFor("Established", () => s.status().peers[0]?.state === "Established", 5000, 20);
    peer.sock.write(update([0x0a010000, 0x0a020000]));
    await waitFor("2 routes", () => fib.desired().length === 2, 5000, 20);
    const bad = update([0x0a010000]);
    // Canonical order puts ORIGIN first: flags 0x40, type 1, length 1, value at offset 26.
    expect([bad[23], bad[24], bad[25]]).toEqual([0x40, 1, 1]);
    bad[26] = 5;
    peer.sock.write(bad);
    await waitFor("10.1.0.0/24 withdrawn", () => fib.desired().length === 1, 5000, 20);
    expect(fib.desired()[0]?.dst).toBe("10.2.0.0/24");
    expect(s.status().peers[0]?.state).toBe("Established");
    expect(peer.got.some((m) => m.type === 3)).toBe(false);
  });

  it("hands a table sent in one burst to the FIB while still reading it, not after (the read yield)", async () => {
    const { s, fib } = await speaker();
    const sizes: number[] = [];
    const set = fib.setV4Batch.bind(fib);
    fib.setV4Batch = (b) => {
      sizes.push(b.count ?? b.addrs.length);
      return set(b);
    };
    const peer = await rawPeer(s.listenPort as number);
    await waitFor("Established", () => s.status().peers[0]?.state === "Established", 30_000, 20);
    // 100k /24s in ≤ 4096-byte UPDATEs, written at once (~400 KiB): libuv would read it all
    // (up to 32 reads of 64 KiB) before the drain ran, so the FIB got its first 50k only then.
    const a = emptyAttributes();
    a.origin = 0;
    a.asPath = [{ type: 2, asns: [65010] }];
    a.nextHop = 0x7f000005;
    const n = 100_000;
    const msgs = encodeUpdates(
      {
        afi: 1,
        safi: 1,
        attributes: a,
        announce: {
          afi: 1,
          count: n,
          addrs: Uint32Array.from({ length: n }, (_, i) => ((20 << 24) + i * 256) >>> 0),
          lens: new Uint8Array(n).fill(24),
          pathIds: null,
        },
      },
      sessionOptions({ fourOctetAs: true }),
    );
    peer.sock.write(Buffer.concat(msgs));
    await waitFor("all 100k in the FIB", () => fib.desired().length === n, 30_000, 20);
    expect(sizes.reduce((x, y) => x + y, 0)).toBe(n);
    // A read leaves ~13k pending; the runtime yields there, so the first batch is a read or two.
    expect(sizes[0]).toBeLessThan(30_000);
    expect(sizes.length).toBeGreaterThanOrEqual(4);
  });

  it("resets the session with NOTIFICATION 1/1 on a bad marker and removes the peer's routes", async () => {
    const { s, fib } = await speaker();
    const peer = await rawPeer(s.listenPort as number);
    await waitFor("Established", () => s.status().peers[0]?.state === "Established", 5000, 20);
    peer.sock.write(update([0x0a010000]));
    await waitFor("1 route", () => fib.desired().length === 1, 5000, 20);
    const broken = encodeKeepalive();
    broken[3] = 0;
    peer.sock.write(broken);
    await waitFor(
      "NOTIFICATION received by the peer",
      () => peer.got.some((m) => m.type === 3),
      5000,
      20,
    );
    expect(peer.got.find((m) => m.type === 3)).toEqual({ type: 3, code: 1, subcode: 1 });
    await waitFor("routes removed", () => fib.desired().length === 0, 5000, 20);
    expect(s.status().peers[0]?.lastError).toMatchObject({
      kind: "NotificationSent",
      code: 1,
      subcode: 1,
    });
  });

  it("answers a ROUTE-REFRESH by sending the Adj-RIB-Out again", async () => {
    const { s } = await speaker([{ prefix: "10.244.9.0/26" }]);
    const peer = await rawPeer(s.listenPort as number);
    // The initial table: one UPDATE and the End-of-RIB (an empty UPDATE).
    await waitFor(
      "initial UPDATE and End-of-RIB",
      () => peer.got.filter((m) => m.type === 2).length === 2,
      5000,
      20,
    );
    // RFC 2918: ROUTE-REFRESH for IPv4 unicast (AFI 1, reserved 0, SAFI 1).
    peer.sock.write(Uint8Array.from([...new Array(16).fill(0xff), 0, 23, 5, 0, 1, 0, 1]));
    await waitFor(
      "UPDATE re-sent",
      () => peer.got.filter((m) => m.type === 2).length === 3,
      5000,
      20,
    );
    expect(s.status().peers[0]?.state).toBe("Established");
  });

  it("installs equal paths from two peers of the same AS as one ECMP route, and shrinks it on a drop", async () => {
    const { s, fib } = await speaker([], [{ address: "127.0.0.6", asn: 65010, passive: true }]);
    const p5 = await rawPeer(s.listenPort as number, "127.0.0.5");
    const p6 = await rawPeer(s.listenPort as number, "127.0.0.6");
    await waitFor(
      "both Established",
      () => s.status().peers.every((p) => p.state === "Established"),
      5000,
      20,
    );
    p5.sock.write(update([0x0a030000], 0x7f000005));
    p6.sock.write(update([0x0a030000], 0x7f000006));
    await waitFor("two next hops", () => fib.desired()[0]?.nexthops.length === 2, 5000, 20);
    expect(
      fib
        .desired()[0]
        ?.nexthops.map((n) => n.gateway)
        .sort(),
    ).toEqual(["127.0.0.5", "127.0.0.6"]);
    p6.sock.destroy();
    await waitFor("one next hop left", () => fib.desired()[0]?.nexthops.length === 1, 5000, 20);
    expect(fib.desired()[0]?.nexthops).toEqual([{ gateway: "127.0.0.5" }]);
  });
});
