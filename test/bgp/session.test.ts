// Two Speakers over loopback TCP, no routes: sessions establish whether one or both connect
// (RFC 4271 §6.8 collision resolved to one connection), keepalives flow, a wrong AS gets 2/2,
// a stop sends Cease 6/2. The same paths run with no socket in the replay scenarios.
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/bgp/config.js";
import { realClock } from "../../src/bgp/io/clock.js";
import { makeWireBridge } from "../../src/bgp/speaker/attrs.js";
import { Speaker } from "../../src/bgp/speaker/runtime.js";
import { waitFor } from "../helpers/netns.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A port free on 127.0.0.1 now (both sides listen on it, each on its own address). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function speaker(
  addr: string,
  peer: string,
  port: number,
  over: { routerId: string; passive?: boolean; peerAs?: number; gracefulRestart?: boolean },
) {
  const cfg = parseConfig({
    asn: 64512,
    routerId: over.routerId,
    listen: { address: addr, port },
    peers: [
      {
        address: peer,
        asn: over.peerAs ?? 64512,
        port,
        sourceAddress: addr,
        holdTime: 9,
        connectRetryTime: 1,
        passive: over.passive ?? false,
      },
    ],
    fib: { enabled: false },
    gracefulRestart: { enabled: over.gracefulRestart ?? true },
    status: { socket: "/nonexistent" },
  });
  const s = new Speaker(cfg, { clock: realClock, fib: null, bridge: makeWireBridge() });
  cleanups.push(() => s.stop());
  return s;
}

const peerOf = (s: Speaker<unknown>) => s.status().peers[0];
const up = (s: Speaker<unknown>) => peerOf(s)?.state === "Established";

describe("sessions over loopback", () => {
  it("establish when one side is passive", async () => {
    const port = await freePort();
    const a = await speaker("127.0.0.1", "127.0.0.2", port, { routerId: "1.1.1.1" });
    const b = await speaker("127.0.0.2", "127.0.0.1", port, { routerId: "2.2.2.2", passive: true });
    await b.start();
    await a.start();
    await waitFor("both Established", () => up(a) && up(b), 5000, 20);
    expect(peerOf(a)?.negotiated?.holdTime).toBe(9);
    expect(peerOf(b)?.negotiated?.families).toEqual(["ipv4-unicast", "ipv6-unicast"]);
  });

  it("resolve a collision to one session when both connect at once", async () => {
    const port = await freePort();
    const a = await speaker("127.0.0.1", "127.0.0.2", port, { routerId: "1.1.1.1" });
    const b = await speaker("127.0.0.2", "127.0.0.1", port, { routerId: "2.2.2.2" });
    await Promise.all([a.start(), b.start()]);
    await waitFor("both Established", () => up(a) && up(b), 5000, 20);
    // Stays up: no flapping after the collision (3 keepalive intervals).
    await new Promise((r) => setTimeout(r, 3500));
    expect(up(a) && up(b)).toBe(true);
    expect(peerOf(a)?.establishedTransitions).toBe(1);
    expect(peerOf(b)?.establishedTransitions).toBe(1);
  });

  it("refuse a wrong peer AS with NOTIFICATION 2/2", async () => {
    const port = await freePort();
    const a = await speaker("127.0.0.1", "127.0.0.2", port, {
      routerId: "1.1.1.1",
      peerAs: 65000,
    });
    const b = await speaker("127.0.0.2", "127.0.0.1", port, { routerId: "2.2.2.2", passive: true });
    await b.start();
    await a.start();
    await waitFor(
      "a NOTIFICATION 2/2",
      () => peerOf(b)?.lastError?.kind === "NotificationReceived",
      5000,
      20,
    );
    expect(peerOf(a)?.lastError).toEqual({
      kind: "NotificationSent",
      code: 2,
      subcode: 2,
      message: "Bad peer AS 64512, expected 65000",
    });
    expect(peerOf(b)?.lastError).toEqual({ kind: "NotificationReceived", code: 2, subcode: 2 });
  });

  for (const gr of [false, true])
    it(`send Cease on stop: ${gr ? "a Hard Reset 6/9 with the N bit (RFC 8538)" : "6/2 without graceful restart"}`, async () => {
      const port = await freePort();
      const a = await speaker("127.0.0.1", "127.0.0.2", port, {
        routerId: "1.1.1.1",
        gracefulRestart: gr,
      });
      const b = await speaker("127.0.0.2", "127.0.0.1", port, {
        routerId: "2.2.2.2",
        passive: true,
        gracefulRestart: gr,
      });
      await b.start();
      await a.start();
      await waitFor("both Established", () => up(a) && up(b), 5000, 20);
      await a.stop();
      await waitFor("b down", () => !up(b), 5000, 20);
      expect(peerOf(b)?.lastError).toEqual({
        kind: "NotificationReceived",
        code: 6,
        subcode: gr ? 9 : 2,
      });
    });
});
