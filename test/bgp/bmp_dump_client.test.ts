// The BMP client's dump to a station that connects late (a TCP server on loopback that does not
// read at first): the dump is pulled only while the socket has room (nothing of it dropped),
// messages emitted meanwhile wait behind it up to the bound (the rest dropped and counted), and
// once the station reads everything arrives whole and in order: Initiation, Peer Up, the dump,
// End-of-RIB, the live messages kept, Termination.
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { BmpClient } from "../../src/bgp/bmp/client.js";
import { type BmpMessage, decodeStream } from "../../src/bgp/bmp/codec.js";
import type { TapPeerView } from "../../src/bgp/speaker/runtime.js";
import { Ipv4Unicast, sessionOptions } from "../../src/bgp/wire/types.js";
import { decodeUpdate } from "../../src/bgp/wire/update.js";
import { waitFor } from "../helpers/netns.js";
import { OPEN_A, OPEN_B, PEER, updatesFor } from "./bmp_fixtures.js";

describe("BmpClient dump to a station", () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  it("a station that does not read: the dump waits for it, what is emitted behind it is bounded (drops counted), then all arrives in order", async () => {
    const opts = sessionOptions();
    // A dump of 20,000 UPDATEs of ~4 KB (80 MB, far past the socket's buffers), made as pulled.
    const big = updatesFor(
      Array.from({ length: 1000 }, (_, i) => `10.${100 + (i >> 8)}.${i & 255}.0/24`),
      4,
      opts,
    )[0] as Uint8Array;
    let pulled = 0;
    function* updates() {
      for (let i = 0; i < 20_000; i++) {
        pulled++;
        yield big;
      }
    }
    const chunks: Buffer[] = [];
    let station: net.Socket | undefined;
    const server = net.createServer((s) => {
      station = s;
      s.pause(); // does not read
      s.on("data", (d) => chunks.push(d));
      s.on("error", () => {});
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
    cleanup.push(() => {
      station?.destroy();
    });
    const client = new BmpClient({
      station: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
      statsIntervalMs: 0,
      maxQueueBytes: 64 * 1024,
      sysName: "t",
    });
    cleanup.push(() => client.stop());
    const view: TapPeerView = {
      establishedConn: 1,
      asn: 65020,
      peerId: PEER,
      fourOctetAs: true,
      counts: () => ({ received: 0, accepted: 0, advertised: 0, stale: 0, rejected: {} }),
      adjRibIn: () => ({ families: [Ipv4Unicast], updates: updates() }),
    };
    const m = client.monitor;
    m.attach({ view: () => view });
    // The session is up before the station is there.
    m.connected(PEER, 1, { localAddress: "10.0.0.1", localPort: 179, remotePort: 40_001 });
    m.sent(PEER, 1, OPEN_A);
    m.received(PEER, 1, OPEN_B);
    m.settled(PEER);
    client.start();
    await waitFor(
      "the client connected",
      () => client.connected && station !== undefined,
      30_000,
      20,
    );
    await new Promise((r) => setTimeout(r, 200));
    // Nobody reads: the dump stopped being pulled once the socket was full, nothing dropped.
    expect(client.counters.dumps).toBe(0);
    expect(pulled).toBeLessThan(20_000);
    expect(client.counters.dropped).toBe(0);
    // Live UPDATEs meanwhile: kept behind the dump up to the bound, the rest dropped (counted).
    const live = updatesFor(["10.97.0.0/24"], 4, opts)[0] as Uint8Array;
    const t0 = performance.now();
    for (let i = 0; i < 5_000; i++) m.updateReceived(PEER, live);
    expect(performance.now() - t0).toBeLessThan(30_000);
    expect(client.counters.dropped).toBeGreaterThan(0);
    const heldLive = 5_000 - client.counters.dropped;
    expect(heldLive).toBeGreaterThan(0);
    // The station reads now: the dump goes on to the end, then what waited behind it.
    (station as net.Socket).resume();
    await waitFor("the dump written whole", () => client.counters.dumps === 1, 60_000, 20);
    const ended = new Promise<void>((r) => (station as net.Socket).on("end", () => r()));
    await client.stop();
    await ended;
    const { messages, rest } = decodeStream(Buffer.concat(chunks));
    expect([rest.length, messages.length]).toEqual([0, 2 + 20_001 + heldLive + 1]);
    expect(messages.slice(0, 2).map((x) => x.type)).toEqual(["Initiation", "PeerUp"]);
    expect(messages.at(-1)?.type).toBe("Termination");
    const rm = messages.slice(2, -1) as Extract<BmpMessage, { type: "RouteMonitoring" }>[];
    expect(rm.every((x) => x.type === "RouteMonitoring")).toBe(true);
    // 20,000 dumped (time 0), End-of-RIB, then the live ones kept (time set), in that order.
    expect([rm.length, heldLive]).toEqual([20_000 + 1 + heldLive, heldLive]);
    expect(rm.slice(0, 20_000).every((x) => x.update.equals(big) && x.peer.timeSeconds === 0)).toBe(
      true,
    );
    expect(decodeUpdate(rm[20_000]?.update as Buffer, opts).endOfRib).toBe(Ipv4Unicast);
    const after = rm.slice(20_001);
    expect(after.every((x) => x.update.equals(live) && x.peer.timeSeconds > 0)).toBe(true);
    expect(client.counters.messagesSent).toBe(2 + 20_001 + heldLive);
  });
});
