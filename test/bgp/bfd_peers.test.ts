// BfdPeers: exactly the bgpd peers with `bfd` have a session (started, retimed, stopped on each
// config), and only a session leaving Up asks for the BGP session to be dropped.
import { describe, expect, it } from "vitest";
import { BfdPeers } from "../../src/bgp/bfd/bgp_peers.js";
import type { BfdPeerOptions, BfdRuntime, BfdStateChange } from "../../src/bgp/bfd/runtime.js";

class FakeRuntime {
  readonly calls: string[] = [];
  readonly sessions = new Map<string, BfdPeerOptions>();
  private listener?: (c: BfdStateChange) => void;
  onStateChange(fn: (c: BfdStateChange) => void) {
    this.listener = fn;
    return () => {
      this.listener = undefined;
    };
  }
  async start(o: BfdPeerOptions) {
    this.calls.push(`start ${o.peer} ${o.timers.desiredMinTxMs}${o.multihop ? " multihop" : ""}`);
    this.sessions.set(o.peer, o);
  }
  stop(peer: string) {
    this.calls.push(`stop ${peer}`);
    this.sessions.delete(peer);
  }
  emit(peer: string, from: string, state: string) {
    this.listener?.({ peer, from, state, diag: 1, diagName: "x", at: 0 } as BfdStateChange);
  }
}

const bfd = (minTx = 300, multihop = false) => ({ minTx, minRx: 300, multiplier: 3, multihop });

describe("BfdPeers", () => {
  it("starts, retimes and stops sessions to match the peers with bfd", async () => {
    const rt = new FakeRuntime();
    const p = new BfdPeers(rt as unknown as BfdRuntime, () => {});
    await p.apply([{ address: "10.0.0.1", bfd: bfd() }, { address: "10.0.0.2" }]);
    await p.apply([{ address: "10.0.0.1", bfd: bfd() }, { address: "10.0.0.2" }]);
    await p.apply([
      { address: "10.0.0.1", bfd: bfd(100) },
      { address: "10.0.0.2", sourceAddress: "10.0.0.9", bfd: bfd(300, true) },
    ]);
    await p.apply([{ address: "10.0.0.2", sourceAddress: "10.0.0.9", bfd: bfd(300, true) }]);
    expect(rt.calls).toEqual([
      "start 10.0.0.1 300",
      "start 10.0.0.1 100",
      "start 10.0.0.2 300 multihop",
      "stop 10.0.0.1",
    ]);
    expect(rt.sessions.get("10.0.0.2")).toMatchObject({ local: "10.0.0.9", multihop: true });
  });

  it("asks for a drop only when a session leaves Up", () => {
    const rt = new FakeRuntime();
    const dropped: string[] = [];
    const p = new BfdPeers(rt as unknown as BfdRuntime, (a) => dropped.push(a));
    rt.emit("10.0.0.1", "Down", "Init");
    rt.emit("10.0.0.1", "Init", "Up");
    rt.emit("10.0.0.1", "Up", "Down");
    rt.emit("10.0.0.1", "Down", "AdminDown");
    expect(dropped).toEqual(["10.0.0.1"]);
    p.close();
    rt.emit("10.0.0.1", "Up", "Down");
    expect(dropped).toEqual(["10.0.0.1"]);
  });

  it("holds on Up to Down, releases on Up, and never holds for our own AdminDown", () => {
    const rt = new FakeRuntime();
    const seen: string[] = [];
    new BfdPeers(
      rt as unknown as BfdRuntime,
      (a) => seen.push(`down ${a}`),
      undefined,
      (a) => seen.push(`up ${a}`),
    );
    rt.emit("10.0.0.1", "Init", "Up");
    rt.emit("10.0.0.1", "Up", "Down");
    rt.emit("10.0.0.1", "Down", "Init");
    rt.emit("10.0.0.1", "Init", "Up");
    rt.emit("10.0.0.1", "Up", "AdminDown");
    expect(seen).toEqual(["up 10.0.0.1", "down 10.0.0.1", "up 10.0.0.1"]);
  });
});
