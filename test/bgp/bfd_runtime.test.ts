// The BFD UDP runtime on loopback: two runtimes (127.0.0.1 and 127.0.0.2, one test port) come Up,
// report state changes to subscribers, go Down on stop() (AdminDown → diag 3 at the other end);
// bad packets are counted by reason and dropped; a packet at TTL 64 never reaches a session.
import { createSocket, type Socket } from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { type BfdControl, BfdState, encodeControl } from "../../src/bgp/bfd/packet.js";
import { BfdRuntime, type BfdStateChange } from "../../src/bgp/bfd/runtime.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { skipWithReason, waitFor } from "../helpers/netns.js";

const skip = skipWithReason("BFD runtime on loopback", addonUnavailableReason());
// Slow enough that a loaded machine's late timers never look like a failure (1 s detection).
const timers = { desiredMinTxMs: 200, requiredMinRxMs: 200, detectMult: 5 };
const signalled = (c: BfdStateChange) => c.diagName === "NeighborSignaledSessionDown";

describe.skipIf(skip)("BfdRuntime", () => {
  const open: (BfdRuntime | Socket)[] = [];
  afterEach(() => {
    for (const o of open.splice(0)) o.close();
  });

  const pair = async () => {
    const port = 30000 + Math.floor(Math.random() * 9000);
    const ports = { singleHop: port, multihop: port + 1 };
    const a = new BfdRuntime({ ports });
    const b = new BfdRuntime({ ports });
    open.push(a, b);
    const seen: BfdStateChange[] = [];
    a.onStateChange((c) => seen.push(c));
    await a.start({ peer: "127.0.0.2", local: "127.0.0.1", timers });
    await b.start({ peer: "127.0.0.1", local: "127.0.0.2", timers });
    return { a, b, port, seen };
  };

  const state = (r: BfdRuntime) => r.status()[0]?.state;

  it("comes Up, tells subscribers, and a stop() at one end takes the other Down with diag 3", async () => {
    const { a, b, seen } = await pair();
    await waitFor("both Up", () => state(a) === "Up" && state(b) === "Up");
    expect(seen.map((c) => c.state)).toContain("Up");
    expect(a.status()[0]).toMatchObject({ peer: "127.0.0.2", local: "127.0.0.1", multihop: false });
    await waitFor("fast rate after the Poll", () => a.status()[0]?.txIntervalMs === 200);
    b.stop("127.0.0.1");
    await waitFor("a Down, told by b", () => seen.some(signalled));
    expect(seen.find(signalled)).toMatchObject({ peer: "127.0.0.2", from: "Up", state: "Down" });
    expect(b.peers()).toEqual([]);
  });

  it("counts and drops bad packets by reason; TTL 64 never reaches a session (RFC 5881 §5)", async () => {
    const { a, port, seen } = await pair();
    await waitFor("Up", () => state(a) === "Up");
    const s = createSocket("udp4");
    open.push(s);
    await new Promise<void>((r) => s.bind(0, "127.0.0.2", () => r()));
    s.setTTL(255);
    const good: BfdControl = {
      diag: 0,
      state: BfdState.Up,
      poll: false,
      final: false,
      cpi: false,
      auth: false,
      demand: false,
      detectMult: 3,
      myDiscr: 424242,
      yourDiscr: 1,
      desiredMinTxUs: 50_000,
      requiredMinRxUs: 50_000,
      requiredMinEchoRxUs: 0,
    };
    const send = (b: Uint8Array) =>
      new Promise<void>((r) => s.send(b, port, "127.0.0.1", () => r()));
    const bad = encodeControl(good);
    bad[0] = 0x40; // version 2
    await send(bad);
    await send(new Uint8Array(10));
    await send(encodeControl({ ...good, yourDiscr: 7 })); // no session has discriminator 7
    await waitFor("counted", () => {
      const d = a.counters.discarded;
      return d.BadVersion === 1 && d.Truncated === 1 && (d.NoSession ?? 0) >= 1;
    });
    // A well-formed AdminDown for a's session at TTL 64: dropped by the kernel filter, so the
    // session stays Up; the same at TTL 255 takes it Down.
    const mine = a.status()[0]?.localDiscr as number;
    s.setTTL(64);
    await send(encodeControl({ ...good, state: BfdState.AdminDown, yourDiscr: mine }));
    await new Promise((r) => setTimeout(r, 100));
    // From a source that is not the session's peer it is refused too.
    const other = createSocket("udp4");
    open.push(other);
    await new Promise<void>((r) => other.bind(0, "127.0.0.3", () => r()));
    other.setTTL(255);
    await new Promise<void>((r) =>
      other.send(
        encodeControl({ ...good, state: BfdState.AdminDown, yourDiscr: mine }),
        port,
        "127.0.0.1",
        () => r(),
      ),
    );
    await waitFor("WrongSource counted", () => a.counters.discarded.WrongSource === 1);
    // Neither reached the session: nothing ever signalled it Down.
    expect(seen.filter(signalled)).toEqual([]);
    s.setTTL(255);
    await send(encodeControl({ ...good, state: BfdState.AdminDown, yourDiscr: mine }));
    await waitFor("Down on AdminDown", () => seen.some(signalled));
  });

  it("refuses a peer that is not an address and a local address of the other family", async () => {
    const r = new BfdRuntime({ ports: { singleHop: 39999, multihop: 39998 } });
    open.push(r);
    await expect(r.start({ peer: "router1", timers })).rejects.toThrow(/not an IP address/);
    await expect(r.start({ peer: "::1", local: "127.0.0.1", timers })).rejects.toThrow(/family/);
    await expect(
      r.start({ peer: "127.0.0.9", timers: { ...timers, detectMult: 0 } }),
    ).rejects.toThrow(/detectMult/);
    expect(r.peers()).toEqual([]);
  });
});
