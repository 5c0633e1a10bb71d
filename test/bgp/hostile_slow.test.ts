// Slow and silent connections against the running speaker (issue 17), over loopback: 1,000
// configured peers (passive, `startupHoldTime: 4`) each get one connection at once; half send
// nothing after TCP is up, half trickle an OPEN one byte a second after a header that claims a
// 4,096-byte message. Each is sent our OPEN, then NOTIFICATION 4/0 (Hold Timer Expired) once the
// startup hold time has run, never before, and is closed; the speaker's buffers grow by at most
// one message per connection (the framer sizes its buffer to the checked header, printed), and a
// configured session beside them stays Established with its route and sees no NOTIFICATION.
// Also: the default startup hold time is RFC 4271 §8.2.2's 240 s.
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_STARTUP_HOLD_TIME, parseConfig } from "../../src/bgp/config.js";
import { realClock } from "../../src/bgp/io/clock.js";
import { makeWireBridge } from "../../src/bgp/speaker/attrs.js";
import { Speaker } from "../../src/bgp/speaker/runtime.js";
import { MessageFramer } from "../../src/bgp/wire/framer.js";
import { MemoryFib } from "../../src/fib/memory_fib.js";
import { hangLimit } from "../helpers/limits.js";
import { waitFor } from "../helpers/netns.js";
import { openMessage, rawPeer } from "../helpers/raw_peer.js";
import { ANNOUNCE_P } from "./corpus/malformed.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const N = 1000;
const STARTUP_HOLD_S = 4;
/** The i-th hostile peer's address: 127.1.x.y. */
const addrOf = (i: number) => `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}`;

interface Outcome {
  /** ms from connect to close. */
  ms: number;
  /** Messages received, by type; NOTIFICATIONs as "3:code/subcode". */
  got: string[];
}

/** Connects from addr; sends nothing, or an OPEN header then one byte a second; resolves at close. */
function slowPeer(port: number, addr: string, trickle: boolean): Promise<Outcome> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const got: string[] = [];
    const framer = new MessageFramer(65535);
    const sock = net.connect({ host: "127.0.0.1", port, localAddress: addr });
    let timer: NodeJS.Timeout | undefined;
    cleanups.push(() => {
      clearInterval(timer);
      sock.destroy();
    });
    sock.on("error", () => {});
    sock.on("data", (d: Buffer) => {
      for (const m of framer.push(d)) got.push(m[18] === 3 ? `3:${m[19]}/${m[20]}` : String(m[18]));
    });
    sock.on("connect", () => {
      if (!trickle) return;
      const header = Buffer.alloc(19, 0xff);
      header.writeUInt16BE(4096, 16);
      header[18] = 1;
      sock.write(header);
      timer = setInterval(() => sock.write(Buffer.of(4)), 1000);
    });
    sock.on("close", () => {
      clearInterval(timer);
      resolve({ ms: performance.now() - t0, got });
    });
  });
}

describe("slow and silent connections", () => {
  it("defaults the startup hold time to 240 s", () => {
    const cfg = parseConfig({
      asn: 64512,
      routerId: "10.0.0.1",
      peers: [{ address: "127.0.0.5", asn: 65010 }],
    });
    expect(DEFAULT_STARTUP_HOLD_TIME).toBe(240);
    expect(cfg.peers[0]?.startupHoldTime).toBe(240);
    expect(() =>
      parseConfig({
        asn: 64512,
        routerId: "10.0.0.1",
        peers: [{ address: "127.0.0.5", asn: 65010, startupHoldTime: 1 }],
      }),
    ).toThrow(/startupHoldTime/);
  });

  it(`drops ${N} silent or trickling connections at the startup hold time, one message buffered at most, the session beside them untouched`, async () => {
    const cfg = parseConfig({
      asn: 64512,
      routerId: "10.0.0.1",
      listen: { address: "127.0.0.1", port: 0 },
      peers: [
        { address: "127.0.0.5", asn: 65010, passive: true },
        ...Array.from({ length: N }, (_, i) => ({
          address: addrOf(i),
          asn: 65100,
          passive: true,
          startupHoldTime: STARTUP_HOLD_S,
        })),
      ],
      status: { socket: "/nonexistent" },
    });
    const fib = new MemoryFib();
    const s = new Speaker(cfg, { clock: realClock, fib, bridge: makeWireBridge() });
    await s.start();
    cleanups.push(() => s.stop());
    const port = s.listenPort as number;
    const good = await rawPeer(port, "127.0.0.5", openMessage(65010, 0x7f000005));
    cleanups.push(() => good.sock.destroy());
    const goodState = () => s.status().peers.find((p) => p.address === "127.0.0.5");
    await waitFor("Established", () => goodState()?.state === "Established", 60_000, 20);
    good.sock.write(Uint8Array.from(ANNOUNCE_P));
    await waitFor("route in the FIB", () => fib.desired().length === 1, 60_000, 20);
    const transitions = goodState()?.establishedTransitions;

    global.gc?.();
    const ab0 = process.memoryUsage().arrayBuffers;
    let abPeak = ab0;
    const sample = setInterval(() => {
      abPeak = Math.max(abPeak, process.memoryUsage().arrayBuffers);
    }, 200);
    cleanups.push(() => clearInterval(sample));
    const t0 = performance.now();
    const outcomes = await Promise.race([
      Promise.all(Array.from({ length: N }, (_, i) => slowPeer(port, addrOf(i), i % 2 === 1))),
      new Promise<never>((_, j) =>
        setTimeout(() => j(new Error("connections not closed: a hang")), hangLimit()),
      ),
    ]);
    clearInterval(sample);
    const wall = performance.now() - t0;
    const ms = outcomes.map((o) => o.ms).sort((a, b) => a - b);
    const growthMiB = (abPeak - ab0) / 2 ** 20;
    console.log(
      `slow peers: ${N} closed in ${Math.round(wall)} ms; each after ${Math.round(ms[0] ?? 0)}..${Math.round(ms[ms.length - 1] ?? 0)} ms; peak arrayBuffers growth ${growthMiB.toFixed(2)} MiB`,
    );
    for (const [i, o] of outcomes.entries()) {
      // Our OPEN, then Hold Timer Expired (RFC 4271 §6.5: 4/0), nothing else.
      expect(o.got, `peer ${addrOf(i)}`).toEqual(["1", "3:4/0"]);
      expect(o.ms, `peer ${addrOf(i)} closed before the startup hold time`).toBeGreaterThan(
        STARTUP_HOLD_S * 1000 - 100,
      );
    }
    // At most one message (4,096 bytes) buffered per connection, plus socket overhead.
    expect(growthMiB).toBeLessThan((N * 4096 * 2) / 2 ** 20);
    const st = s.status();
    expect(st.peers.filter((p) => p.lastError?.code === 4).length).toBe(N);
    const after = goodState();
    expect(after?.state).toBe("Established");
    expect(after?.establishedTransitions).toBe(transitions);
    expect(fib.desired().length).toBe(1);
    expect(good.notes(), "NOTIFICATIONs to the configured session").toEqual([]);
  });
});
