// Hostile connections against the running speaker (issue 17), over loopback with a scripted
// raw peer established beside them: 1,000 connections at once from an address that is no peer
// are each closed before any byte is sent and counted (status and metrics), logged once per
// source, while the configured session stays Established with its route and never sees a
// NOTIFICATION; a configured peer whose first header claims a 65,535-byte OPEN gets
// NOTIFICATION 1/2 (Bad Message Length, the length as data) at once, before it sends the body,
// so no such message is ever buffered.
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { addBgpMetrics } from "../../src/bgp/metrics.js";
import { MessageFramer } from "../../src/bgp/wire/framer.js";
import { encodeKeepalive } from "../../src/bgp/wire/message.js";
import { encodeOpen } from "../../src/bgp/wire/open.js";
import { emptyAttributes, sessionOptions } from "../../src/bgp/wire/types.js";
import { encodeUpdates } from "../../src/bgp/wire/update.js";
import type { Log } from "../../src/lib/log.js";
import { MetricsRegistry } from "../../src/lib/metrics.js";
import { startLoopbackSpeaker } from "../helpers/loopback_speaker.js";
import { waitFor } from "../helpers/netns.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function connectFrom(port: number, localAddress: string): Promise<net.Socket> {
  const sock = net.connect({ host: "127.0.0.1", port, localAddress });
  cleanups.push(() => sock.destroy());
  return new Promise((r, j) => {
    sock.once("connect", () => r(sock));
    sock.once("error", j);
  });
}

/** The configured eBGP peer AS 65010 at 127.0.0.5: OPEN, KEEPALIVEs, one UPDATE for 10.99.0.0/24. */
async function goodPeer(port: number) {
  const sock = await connectFrom(port, "127.0.0.5");
  const got: { type: number; code?: number; subcode?: number }[] = [];
  const framer = new MessageFramer();
  sock.on("data", (d: Buffer) => {
    for (const m of framer.push(d)) {
      got.push(m[18] === 3 ? { type: 3, code: m[19], subcode: m[20] } : { type: m[18] as number });
      if (m[18] === 1 || m[18] === 4) sock.write(encodeKeepalive());
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

function update(): Uint8Array {
  const a = emptyAttributes();
  a.origin = 0;
  a.asPath = [{ type: 2, asns: [65010] }];
  a.nextHop = 0x7f000005;
  const [m] = encodeUpdates(
    {
      afi: 1,
      safi: 1,
      attributes: a,
      announce: {
        afi: 1,
        count: 1,
        addrs: Uint32Array.of(0x0a630000),
        lens: Uint8Array.of(24),
        pathIds: null,
      },
    },
    sessionOptions({ fourOctetAs: true }),
  );
  return m as Uint8Array;
}

async function speaker() {
  const warnings: string[] = [];
  const log: Log = {
    warn: (_o: unknown, m?: string) => warnings.push(m ?? ""),
    info() {},
    debug() {},
    error() {},
  };
  const { speaker: s, fib, port } = await startLoopbackSpeaker({ log });
  cleanups.push(() => s.stop());
  return { s, fib, port, warnings };
}

/** Opens a connection from addr and resolves with the bytes received before it closed. */
function probe(port: number, addr: string): Promise<number> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port, localAddress: addr });
    let bytes = 0;
    sock.on("data", (d: Buffer) => {
      bytes += d.length;
    });
    sock.on("error", () => {});
    sock.on("close", () => resolve(bytes));
  });
}

describe("hostile connections", () => {
  it("closes 1,000 connections at once from no peer's address before any byte, counts them, and leaves the session alone", async () => {
    const { s, fib, port, warnings } = await speaker();
    const peer = await goodPeer(port);
    await waitFor("Established", () => s.status().peers[0]?.state === "Established", 60_000, 20);
    peer.sock.write(update());
    await waitFor("route in the FIB", () => fib.desired().length === 1, 60_000, 20);
    const before = s.status().peers[0];

    const received = await Promise.all(
      Array.from({ length: 1000 }, () => probe(port, "127.0.0.9")),
    );
    expect(
      received.filter((b) => b > 0),
      "connections that got bytes",
    ).toEqual([]);
    const st = s.status();
    expect(st.connectionsRefused).toBe(1000);
    // One warning for the source, not 1,000.
    expect(warnings.filter((w) => w.startsWith("Connection from an address")).length).toBe(1);
    const reg = new MetricsRegistry();
    addBgpMetrics(reg, st);
    expect(reg.render()).toContain("ocelot_bgp_connections_refused_total 1000");

    // The configured session: still Established, same transition count, route kept, no NOTIFICATION.
    const after = st.peers[0];
    expect(after?.state).toBe("Established");
    expect(after?.establishedTransitions).toBe(before?.establishedTransitions);
    expect(fib.desired().length).toBe(1);
    expect(peer.got.filter((m) => m.type === 3)).toEqual([]);
  });

  it("answers a header claiming a 65,535-byte OPEN with NOTIFICATION 1/2 before the body is sent", async () => {
    const { s, port } = await speaker();
    const sock = await connectFrom(port, "127.0.0.6");
    const chunks: Buffer[] = [];
    const closed = new Promise<void>((r) => sock.on("close", () => r()));
    sock.on("data", (d: Buffer) => chunks.push(d));
    const header = Buffer.alloc(19, 0xff);
    header.writeUInt16BE(65535, 16);
    header[18] = 1;
    sock.write(header);
    await closed;
    const framer = new MessageFramer();
    const msgs = framer.push(Buffer.concat(chunks));
    const note = msgs.find((m) => m[18] === 3);
    expect(note, "a NOTIFICATION").toBeDefined();
    expect([note?.[19], note?.[20]]).toEqual([1, 2]);
    // RFC 4271 §6.1: the data is the erroneous Length field.
    expect(Buffer.from(note?.subarray(21, 23) ?? []).readUInt16BE(0)).toBe(65535);
    expect(s.status().peers.find((p) => p.address === "127.0.0.6")?.lastError?.code).toBe(1);
  });
});
