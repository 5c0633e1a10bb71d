// Two PeerSessions over loopback TCP: they establish whether one or both connect (RFC 4271 §6.8
// collision resolved to one connection), keepalives flow, a wrong AS gets 2/2, ManualStop 6/2.
import { afterEach, describe, expect, it } from "vitest";
import { ipv4Number } from "../../src/bgp/fsm/fsm.js";
import type { DownReason, PeerSettings } from "../../src/bgp/fsm/types.js";
import { realClock } from "../../src/bgp/io/clock.js";
import { PeerSession, type SessionCallbacks } from "../../src/bgp/io/session.js";
import { listen } from "../../src/bgp/io/transport.js";
import { waitFor } from "../helpers/netns.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const settings = (over: Partial<PeerSettings>): PeerSettings => ({
  localAs: 64512,
  peerAs: 64512,
  routerId: 0,
  holdTime: 9,
  connectRetryTime: 1,
  passive: false,
  families: ["ipv4-unicast", "ipv6-unicast"],
  requiredFamilies: [],
  idleHoldMs: 200,
  maxIdleHoldMs: 2000,
  ...over,
});

interface Side {
  session: PeerSession;
  downs: { reason: DownReason; was: boolean }[];
  established: number;
  accepted: number;
}

async function side(
  addr: string,
  peerAddr: string,
  peerPort: () => number,
  s: PeerSettings,
): Promise<Side & { port: number }> {
  const out = { downs: [], established: 0, accepted: 0 } as unknown as Side & { port: number };
  const cb: SessionCallbacks = {
    onEstablished: () => out.established++,
    onUpdate: () => {},
    onRouteRefresh: () => {},
    onDown: (_s, reason, was) => out.downs.push({ reason, was }),
    onDrain: () => {},
  };
  const l = await listen({
    address: addr,
    port: 0,
    isPeer: (a) => a === peerAddr,
    onConnection: (c) => {
      out.accepted++;
      out.session.accept(c);
    },
  });
  cleanups.push(() => l.close());
  out.port = l.port;
  out.session = new PeerSession(
    { address: peerAddr, port: 0, sourceAddress: addr, settings: s },
    realClock,
    cb,
  );
  // The peer's port is known only after both listen: patch it in before start().
  Object.defineProperty(out.session.config, "port", { get: peerPort });
  cleanups.push(() => out.session.stop());
  return out;
}

describe("PeerSession over loopback", () => {
  it("establishes when one side is passive", async () => {
    let bPort = 0;
    let aPort = 0;
    const a = await side(
      "127.0.0.1",
      "127.0.0.2",
      () => bPort,
      settings({ routerId: ipv4Number("1.1.1.1") }),
    );
    const b = await side(
      "127.0.0.2",
      "127.0.0.1",
      () => aPort,
      settings({ routerId: ipv4Number("2.2.2.2"), passive: true }),
    );
    aPort = a.port;
    bPort = b.port;
    a.session.start();
    b.session.start();
    await waitFor(
      "both Established",
      () => a.session.established && b.session.established,
      5000,
      20,
    );
    expect(a.session.negotiated?.holdTime).toBe(9);
    expect(b.session.negotiated?.families).toEqual(["ipv4-unicast", "ipv6-unicast"]);
    expect(b.accepted).toBe(1);
  });

  it("resolves a collision to one session when both connect at once", async () => {
    let bPort = 0;
    let aPort = 0;
    const a = await side(
      "127.0.0.1",
      "127.0.0.2",
      () => bPort,
      settings({ routerId: ipv4Number("1.1.1.1") }),
    );
    const b = await side(
      "127.0.0.2",
      "127.0.0.1",
      () => aPort,
      settings({ routerId: ipv4Number("2.2.2.2") }),
    );
    aPort = a.port;
    bPort = b.port;
    a.session.start();
    b.session.start();
    await waitFor(
      "both Established",
      () => a.session.established && b.session.established,
      5000,
      20,
    );
    // Stays up: no flapping after the collision (3 keepalive intervals).
    await new Promise((r) => setTimeout(r, 3500));
    expect(a.session.established && b.session.established).toBe(true);
    expect(a.established).toBe(1);
    expect(b.established).toBe(1);
    expect(a.downs.filter((d) => d.was)).toEqual([]);
  });

  it("refuses a wrong peer AS with NOTIFICATION 2/2 and retries with backoff", async () => {
    let bPort = 0;
    let aPort = 0;
    const a = await side(
      "127.0.0.1",
      "127.0.0.2",
      () => bPort,
      settings({ routerId: ipv4Number("1.1.1.1"), peerAs: 65000 }),
    );
    const b = await side(
      "127.0.0.2",
      "127.0.0.1",
      () => aPort,
      settings({ routerId: ipv4Number("2.2.2.2"), passive: true }),
    );
    aPort = a.port;
    bPort = b.port;
    a.session.start();
    b.session.start();
    await waitFor(
      "a NOTIFICATION 2/2",
      () => b.downs.some((d) => d.reason.kind === "NotificationReceived"),
      5000,
      20,
    );
    expect(a.downs[0]?.reason).toEqual({
      kind: "NotificationSent",
      code: 2,
      subcode: 2,
      message: "Bad peer AS 64512, expected 65000",
    });
    expect(b.downs.find((d) => d.reason.kind === "NotificationReceived")?.reason).toEqual({
      kind: "NotificationReceived",
      code: 2,
      subcode: 2,
    });
  });

  it("ManualStop sends Cease 6/2 to the peer", async () => {
    let bPort = 0;
    let aPort = 0;
    const a = await side(
      "127.0.0.1",
      "127.0.0.2",
      () => bPort,
      settings({ routerId: ipv4Number("1.1.1.1") }),
    );
    const b = await side(
      "127.0.0.2",
      "127.0.0.1",
      () => aPort,
      settings({ routerId: ipv4Number("2.2.2.2"), passive: true }),
    );
    aPort = a.port;
    bPort = b.port;
    a.session.start();
    b.session.start();
    await waitFor(
      "both Established",
      () => a.session.established && b.session.established,
      5000,
      20,
    );
    a.session.stop();
    await waitFor("b down", () => b.downs.length > 0, 5000, 20);
    expect(b.downs[0]).toEqual({
      reason: { kind: "NotificationReceived", code: 6, subcode: 2 },
      was: true,
    });
  });
});
