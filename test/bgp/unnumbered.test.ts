// Unnumbered peers (`interface`): which IPv6 link-local neighbour each one is, followed as the
// neighbour table changes (link/unnumbered.ts), the config the speaker runs with the chosen
// addresses, and the status of a peer still waiting for one.
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/bgp/config.js";
import {
  LinkLocalNeighbours,
  resolveInterfacePeers,
  waitingPeerStatus,
} from "../../src/bgp/link/unnumbered.js";
import { formatStatus, type StatusSnapshot } from "../../src/bgp/status.js";
import {
  addressBytes,
  decodeNeigh,
  forEachMessage,
  type KernelNeigh,
  MessageWriter,
  macBytes,
  NTF_ROUTER,
  RTM_GETNEIGH,
  RTM_NEWNEIGH,
  writeNeigh,
  writeNeighDump,
} from "../../src/fib/rtnetlink.js";

const doc = (...peers: object[]) => ({
  asn: 64512,
  routerId: "10.0.0.1",
  peers: peers.map((p) => ({ asn: 65000, ...p })),
});

describe("the link-local neighbour of an unnumbered peer", () => {
  it("picks a router over other neighbours, never a failed, unresolved or global one", () => {
    const t = new LinkLocalNeighbours();
    t.follow(["eth0"]);
    expect(
      t.observe("eth0", [
        { dst: "fd00::2", state: ["REACHABLE"], router: null },
        { dst: "fe80::1", state: ["FAILED"], router: null },
        { dst: "fe80::2", state: ["STALE"] },
        { dst: "FE80::3", state: ["STALE"], router: null },
        { dst: "fe80::4", state: ["INCOMPLETE"] },
        { dst: "fe80::5", state: ["NONE"], router: null },
      ]),
    ).toBe(true);
    expect(t.linkLocal("eth0")).toBe("fe80::3");
    // The same reading again: no change.
    expect(t.observe("eth0", [{ dst: "fe80::3", state: ["REACHABLE"], router: null }])).toBe(false);
  });

  it("waits while there is none, and takes the first one that appears", () => {
    const t = new LinkLocalNeighbours();
    t.follow(["eth0"]);
    expect(t.observe("eth0", [])).toBe(false);
    expect(t.observe("eth0", [{ dst: "fe80::1", state: ["INCOMPLETE"] }])).toBe(false);
    expect(t.linkLocal("eth0")).toBeUndefined();
    expect(t.observe("eth0", [{ dst: "fe80::2", state: ["DELAY"] }])).toBe(true);
    expect(t.linkLocal("eth0")).toBe("fe80::2");
  });

  it("moves to a new router (the peer's interface came back with another address)", () => {
    const t = new LinkLocalNeighbours();
    t.follow(["eth0"]);
    t.observe("eth0", [{ dst: "fe80::a", state: ["REACHABLE"], router: null }]);
    // The old entry is still cached when the new router's advertisement arrives.
    expect(
      t.observe("eth0", [
        { dst: "fe80::a", state: ["STALE"], router: null },
        { dst: "fe80::b", state: ["STALE"], router: null },
      ]),
    ).toBe(true);
    expect(t.linkLocal("eth0")).toBe("fe80::b");
    // Listed in another order later: it stays.
    expect(
      t.observe("eth0", [
        { dst: "fe80::b", state: ["REACHABLE"], router: null },
        { dst: "fe80::a", state: ["STALE"], router: null },
      ]),
    ).toBe(false);
    // A neighbour that becomes a router is new as a router.
    t.observe("eth0", [
      { dst: "fe80::b", state: ["REACHABLE"], router: null },
      { dst: "fe80::c", state: ["STALE"] },
    ]);
    expect(t.linkLocal("eth0")).toBe("fe80::b");
    t.observe("eth0", [
      { dst: "fe80::b", state: ["REACHABLE"], router: null },
      { dst: "fe80::c", state: ["STALE"], router: null },
    ]);
    expect(t.linkLocal("eth0")).toBe("fe80::c");
  });

  it("keeps a chosen non-router while listed, and the last choice when the table empties", () => {
    const t = new LinkLocalNeighbours();
    t.follow(["eth0"]);
    t.observe("eth0", [{ dst: "fe80::1", state: ["REACHABLE"] }]);
    expect(
      t.observe("eth0", [
        { dst: "fe80::1", state: ["STALE"] },
        { dst: "fe80::2", state: ["REACHABLE"] },
      ]),
    ).toBe(false);
    expect(t.linkLocal("eth0")).toBe("fe80::1");
    // Gone from the cache (aged out, the link flushed): no reason to drop the session.
    expect(t.observe("eth0", [])).toBe(false);
    expect(t.linkLocal("eth0")).toBe("fe80::1");
    // Failed, and another is there: the other.
    expect(
      t.observe("eth0", [
        { dst: "fe80::1", state: ["FAILED"] },
        { dst: "fe80::2", state: ["REACHABLE"] },
      ]),
    ).toBe(true);
    expect(t.linkLocal("eth0")).toBe("fe80::2");
  });

  it("follows only the interfaces it is given", () => {
    const t = new LinkLocalNeighbours();
    t.follow(["eth0", "eth1"]);
    t.observe("eth0", [{ dst: "fe80::1", router: null }]);
    t.follow(["eth1"]);
    expect(t.interfaces()).toEqual(["eth1"]);
    expect(t.linkLocal("eth0")).toBeUndefined();
    expect(t.observe("eth0", [{ dst: "fe80::1", router: null }])).toBe(false);
  });
});

describe("resolving unnumbered peers", () => {
  it("fills in the address with its zone, and leaves a peer with no neighbour waiting", () => {
    const cfg = parseConfig(
      doc({ interface: "eth0" }, { interface: "eth1" }, { address: "10.0.0.2" }),
    );
    const r = resolveInterfacePeers(cfg, (i) => (i === "eth0" ? "fe80::7" : undefined));
    expect(r.config.peers.map((p) => p.address)).toEqual(["fe80::7%eth0", "10.0.0.2"]);
    expect(r.waiting.map((p) => p.interface)).toEqual(["eth1"]);
  });

  it("refuses two peers ending on one address", () => {
    const cfg = parseConfig(doc({ interface: "eth0" }, { address: "fe80::7%eth0" }));
    expect(() => resolveInterfacePeers(cfg, () => "fe80::7")).toThrow(
      /duplicate peer fe80::7%eth0/,
    );
  });

  it("shows a waiting peer as Idle with the reason", () => {
    const cfg = parseConfig(doc({ interface: "eth1" }));
    const st = waitingPeerStatus(
      resolveInterfacePeers(cfg, () => undefined).waiting[0] as never,
      64512,
    );
    expect(st).toMatchObject({ address: "eth1", interface: "eth1", state: "Idle" });
    expect(st.waiting).toMatch(/no IPv6 link-local neighbour on eth1 yet/);
    const snap = {
      routerId: "10.0.0.1",
      asn: 64512,
      listen: null,
      uptimeSeconds: 1,
      peers: [st],
      locRib: { ipv4: 0, ipv6: 0 },
      fib: { enabled: false, installed: 0, pending: 0, errors: 0 },
      memory: { rssMiB: 0, heapUsedMiB: 0, arrayBuffersMiB: 0, ribTypedMiB: 0 },
    } satisfies StatusSnapshot;
    expect(formatStatus(snap)).toMatch(/eth1: waiting: no IPv6 link-local neighbour on eth1 yet/);
  });
});

describe("neighbour messages (rtnetlink)", () => {
  it("decodes an RTM_NEWNEIGH's ifindex, state, router flag and address", () => {
    const w = new MessageWriter(256);
    writeNeigh(w, RTM_NEWNEIGH, 0, 5, {
      family: 6,
      ifindex: 7,
      state: 0x04,
      flags: NTF_ROUTER,
      dst: addressBytes(6, "fe80::1:2"),
      lladdr: macBytes("02:00:00:00:00:07"),
    });
    const got: KernelNeigh[] = [];
    forEachMessage(w.buf.subarray(0, w.len), (m) => {
      expect(m.type).toBe(RTM_NEWNEIGH);
      const n = decodeNeigh(m);
      if (n) got.push(n);
    });
    expect(got).toEqual([
      {
        family: 10,
        ifindex: 7,
        state: 0x04,
        flags: NTF_ROUTER,
        dst: addressBytes(6, "fe80::1:2"),
        lladdr: macBytes("02:00:00:00:00:07"),
      },
    ]);
  });

  it("asks for a dump of one family's neighbours", () => {
    const w = new MessageWriter(64);
    writeNeighDump(w, 9, 6);
    const types: number[] = [];
    forEachMessage(w.buf.subarray(0, w.len), (m) => {
      types.push(m.type);
      expect(m.buf[m.off]).toBe(10);
    });
    expect(types).toEqual([RTM_GETNEIGH]);
  });
});
