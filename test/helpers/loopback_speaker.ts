// A running speaker on loopback for the tests that drive it with raw peers (raw_peer.ts): AS
// 64512, router ID 10.0.0.1, an ephemeral port on 127.0.0.1, two passive peers, 127.0.0.5 (AS
// 65010) and 127.0.0.6 (AS 65011), its FIB in memory; read back by prefix and by peer.
import { parseConfig } from "../../src/bgp/config.js";
import { realClock } from "../../src/bgp/io/clock.js";
import { makeWireBridge, type WireAttrs } from "../../src/bgp/speaker/attrs.js";
import { Speaker } from "../../src/bgp/speaker/runtime.js";
import { MemoryFib } from "../../src/fib/memory_fib.js";
import type { Log } from "../../src/lib/log.js";

export interface LoopbackSpeaker {
  speaker: Speaker<WireAttrs>;
  fib: MemoryFib;
  port: number;
  /** Whether the FIB wants a route to dst. */
  has(dst: string): boolean;
  /** The status of the session with the peer at address. */
  state(address: string): ReturnType<Speaker<WireAttrs>["status"]>["peers"][number] | undefined;
}

/** Started, logging to log when given; the caller stops it (speaker.stop()). */
export async function startLoopbackSpeaker(o: { log?: Log } = {}): Promise<LoopbackSpeaker> {
  const cfg = parseConfig({
    asn: 64512,
    routerId: "10.0.0.1",
    listen: { address: "127.0.0.1", port: 0 },
    peers: [
      { address: "127.0.0.5", asn: 65010, passive: true },
      { address: "127.0.0.6", asn: 65011, passive: true },
    ],
    status: { socket: "/nonexistent" },
  });
  const fib = new MemoryFib();
  const speaker = new Speaker(cfg, {
    clock: realClock,
    fib,
    bridge: makeWireBridge(),
    ...(o.log ? { log: o.log } : {}),
  });
  await speaker.start();
  return {
    speaker,
    fib,
    port: speaker.listenPort as number,
    has: (dst) => fib.desired().some((r) => r.dst === dst),
    state: (a) => speaker.status().peers.find((p) => p.address === a),
  };
}
