// The BMP station connection against a station in the test (a TCP server on loopback): a
// station that does not read never blocks the speaker (messages past the bound are dropped and
// counted, the producer's loop returns at once), and what did reach it is a clean stream:
// Initiation first, whole messages, Termination last once the client stops.
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { BmpClient, parseStation } from "../../src/bgp/bmp/client.js";
import { type BmpMessage, decodeStream } from "../../src/bgp/bmp/codec.js";
import type { TapPeerView } from "../../src/bgp/speaker/runtime.js";
import { waitFor } from "../helpers/netns.js";

const bgp = (type: number, body: Buffer) => {
  const h = Buffer.alloc(19, 0xff);
  h.writeUInt16BE(19 + body.length, 16);
  h[18] = type;
  return Buffer.concat([h, body]);
};
const OPEN = bgp(1, Buffer.from([4, 0xfc, 0, 0, 90, 10, 0, 0, 1, 0]));
// An UPDATE of ~4 KB: 1,000 /24 NLRI after ORIGIN, AS_PATH, NEXT_HOP.
const ATTRS = [0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xfc, 0x40, 3, 4, 10, 0, 0, 2];
const NLRI = Array.from({ length: 1000 }, (_, i) => [24, 10, (i >> 8) & 255, i & 255]).flat();
const UPDATE = bgp(2, Buffer.from([0, 0, 0, ATTRS.length, ...ATTRS, ...NLRI]));

describe("BmpClient", () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  it("a station that does not read: drops counted, never blocking; the stream stays whole", async () => {
    const chunks: Buffer[] = [];
    let peerSocket: net.Socket | undefined;
    const server = net.createServer((s) => {
      peerSocket = s;
      s.pause(); // does not read
      s.on("data", (d) => chunks.push(d));
      s.on("error", () => {});
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as net.AddressInfo).port;
    const client = new BmpClient({
      station: `127.0.0.1:${port}`,
      statsIntervalMs: 0,
      maxQueueBytes: 256 * 1024,
      sysName: "t1",
    });
    cleanup.push(() => client.stop());
    const view: TapPeerView = {
      establishedConn: 1,
      asn: 65020,
      peerId: "10.0.0.2",
      fourOctetAs: true,
      counts: () => ({ received: 0, accepted: 0, advertised: 0, stale: 0, rejected: {} }),
    };
    client.monitor.attach({ view: () => view });
    client.start();
    await waitFor(
      "the client connected",
      () => client.connected && peerSocket !== undefined,
      30_000,
      20,
    );
    const m = client.monitor;
    m.connected("10.0.0.2", 1, { localAddress: "10.0.0.1", localPort: 179, remotePort: 40_000 });
    m.sent("10.0.0.2", 1, OPEN);
    m.received("10.0.0.2", 1, OPEN);
    m.settled("10.0.0.2");
    // 20,000 UPDATEs (~80 MB) offered at once: far past the socket's buffers and the bound.
    const t0 = performance.now();
    for (let i = 0; i < 20_000; i++) m.updateReceived("10.0.0.2", UPDATE);
    const ms = performance.now() - t0;
    expect(client.counters.dropped).toBeGreaterThan(0);
    expect(client.counters.messagesSent + client.counters.dropped).toBe(20_000 + 2);
    expect(m.counters.routeMonitoring).toBe(20_000);
    // Never waited on the station: the loop is bounded by encoding, not by the reader.
    expect(ms).toBeLessThan(30_000);
    // The station reads now: everything written arrives whole, Termination last.
    (peerSocket as net.Socket).resume();
    const ended = new Promise<void>((r) => (peerSocket as net.Socket).on("end", () => r()));
    await client.stop();
    await ended;
    const { messages, rest } = decodeStream(Buffer.concat(chunks));
    expect(rest.length).toBe(0);
    const types = messages.map((x: BmpMessage) => x.type);
    expect(types[0]).toBe("Initiation");
    expect(types[1]).toBe("PeerUp");
    expect(types.at(-1)).toBe("Termination");
    expect(types.filter((t) => t === "RouteMonitoring").length).toBe(
      client.counters.messagesSent - 2,
    );
  });

  it("parses host:port and [v6]:port, naming a bad one", () => {
    expect(parseStation("10.0.0.9:11019")).toEqual({ host: "10.0.0.9", port: 11019 });
    expect(parseStation("[fd00::9]:11019")).toEqual({ host: "fd00::9", port: 11019 });
    expect(() => parseStation("10.0.0.9")).toThrow('BMP station "10.0.0.9" is not host:port');
    expect(() => parseStation("h:70000")).toThrow("is not host:port");
  });
});
