// BMP (RFC 7854) bytes, pure: the common and per-peer headers byte for byte, every message a
// router sends decoded back to what was encoded, a stream split anywhere, refused input named;
// and the monitor's decisions from what the runtime's tap reports: Peer Up only with both OPENs
// of the Established connection, Route Monitoring after it, each Peer Down reason (1-5), and
// the RFC 8671 Adj-RIB-Out mirror.
import { describe, expect, it } from "vitest";
import {
  type BmpMessage,
  decodeMessage,
  decodeStream,
  encodeInitiation,
  encodePeerDown,
  encodePeerUp,
  encodeRouteMonitoring,
  encodeStatsReport,
  encodeTermination,
  PeerFlag,
  perPeerHeader,
} from "../../src/bgp/bmp/codec.js";
import { BmpMonitor } from "../../src/bgp/bmp/monitor.js";
import type { TapPeerView } from "../../src/bgp/speaker/runtime.js";

const bgp = (type: number, body: number[]) => {
  const h = Buffer.alloc(19, 0xff);
  h.writeUInt16BE(19 + body.length, 16);
  h[18] = type;
  return Buffer.concat([h, Buffer.from(body)]);
};
const OPEN_A = bgp(1, [4, 0xfc, 0x00, 0, 90, 10, 0, 0, 1, 0]);
const OPEN_B = bgp(1, [4, 0xfd, 0xfc, 0, 90, 10, 0, 0, 2, 0]);
// ORIGIN IGP, AS_PATH 65020 (4-octet), NEXT_HOP 10.0.0.2, NLRI 10.98.1.0/24.
const ATTRS = [0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xfc, 0x40, 3, 4, 10, 0, 0, 2];
const UPDATE = bgp(2, [0, 0, 0, ATTRS.length, ...ATTRS, 24, 10, 98, 1]);
const CEASE = bgp(3, [6, 2]);
const PEER = { address: "10.0.0.2", asn: 65020, bgpId: "10.0.0.2", timeMs: 1_700_000_000_250 };

describe("BMP codec", () => {
  it("Initiation: common header (version 3, length, type 4) and the sysDescr/sysName TLVs", () => {
    const m = encodeInitiation({ sysDescr: "ab", sysName: "c" });
    expect([...m]).toEqual([
      3, 0, 0, 0, 17, 4, /* sysDescr */ 0, 1, 0, 2, 97, 98, /* sysName */ 0, 2, 0, 1, 99,
    ]);
  });

  it("per-peer header: type, flags, distinguisher, IPv4 in the last 4 of 16, AS, ID, time", () => {
    const h = perPeerHeader({ ...PEER, postPolicy: true, legacyAsPath: true, adjRibOut: true });
    expect(h.length).toBe(42);
    expect(h[0]).toBe(0);
    expect(h[1]).toBe(PeerFlag.L | PeerFlag.A | PeerFlag.O);
    expect([...h.subarray(2, 10)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect([...h.subarray(10, 26)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    expect(h.readUInt32BE(26)).toBe(65020);
    expect([...h.subarray(30, 34)]).toEqual([10, 0, 0, 2]);
    expect(h.readUInt32BE(34)).toBe(1_700_000_000);
    expect(h.readUInt32BE(38)).toBe(250_000);
    const v6 = perPeerHeader({ ...PEER, address: "2001:db8::2" });
    expect(v6[1]).toBe(PeerFlag.V);
    expect([...v6.subarray(10, 14)]).toEqual([0x20, 0x01, 0x0d, 0xb8]);
    expect(v6[25]).toBe(2);
  });

  it("Termination: String then Reason TLV", () => {
    expect([...encodeTermination(0, "x")]).toEqual([
      3, 0, 0, 0, 17, 5, 0, 0, 0, 1, 120, 0, 1, 0, 2, 0, 0,
    ]);
  });

  it("every message decodes back to what was encoded, also from a stream split anywhere", () => {
    const msgs = [
      encodeInitiation({ sysDescr: "Ocelot", sysName: "n1", text: ["hello"] }),
      encodePeerUp(PEER, {
        localAddress: "10.0.0.1",
        localPort: 179,
        remotePort: 40_001,
        sentOpen: OPEN_A,
        receivedOpen: OPEN_B,
      }),
      encodeRouteMonitoring(PEER, UPDATE),
      encodeStatsReport(PEER, [
        { type: 0, value: 3 },
        { type: 7, value: 5n },
        { type: 9, afi: 1, safi: 1, value: 5n },
      ]),
      encodePeerDown(PEER, 3, { notification: CEASE }),
      encodePeerDown(PEER, 2, { fsmEvent: 18 }),
      encodePeerDown(PEER, 4),
      encodeTermination(1),
    ];
    const all = Buffer.concat(msgs);
    const whole = decodeStream(all);
    expect(whole.rest.length).toBe(0);
    const t = whole.messages;
    expect(t.map((m) => m.type)).toEqual([
      "Initiation",
      "PeerUp",
      "RouteMonitoring",
      "StatisticsReport",
      "PeerDown",
      "PeerDown",
      "PeerDown",
      "Termination",
    ]);
    expect(t[0]).toEqual({
      type: "Initiation",
      tlvs: [
        { type: 1, value: "Ocelot" },
        { type: 2, value: "n1" },
        { type: 0, value: "hello" },
      ],
    });
    const up = t[1] as Extract<BmpMessage, { type: "PeerUp" }>;
    expect(up.peer).toMatchObject({ address: "10.0.0.2", asn: 65020, bgpId: "10.0.0.2", flags: 0 });
    expect([up.localAddress, up.localPort, up.remotePort]).toEqual(["10.0.0.1", 179, 40_001]);
    expect(up.sentOpen.equals(OPEN_A) && up.receivedOpen.equals(OPEN_B)).toBe(true);
    expect((t[2] as Extract<BmpMessage, { type: "RouteMonitoring" }>).update.equals(UPDATE)).toBe(
      true,
    );
    expect((t[3] as Extract<BmpMessage, { type: "StatisticsReport" }>).stats).toEqual([
      { type: 0, value: 3 },
      { type: 7, value: 5n },
      { type: 9, afi: 1, safi: 1, value: 5n },
    ]);
    const downs = t.slice(4, 7) as Extract<BmpMessage, { type: "PeerDown" }>[];
    expect(downs.map((d) => d.reason)).toEqual([3, 2, 4]);
    expect(downs[0]?.data.equals(CEASE)).toBe(true);
    expect([...(downs[1]?.data ?? [])]).toEqual([0, 18]);
    expect(downs[2]?.data.length).toBe(0);
    expect(t[7]).toEqual({ type: "Termination", reason: 1, text: [] });
    // Split at every offset: the same messages come out.
    for (let cut = 1; cut < all.length; cut += 7) {
      const a = decodeStream(all.subarray(0, cut));
      const b = decodeStream(Buffer.concat([a.rest, all.subarray(cut)]));
      expect([...a.messages, ...b.messages]).toEqual(t);
    }
  });

  it("refuses what is wrong, naming it", () => {
    expect(() => decodeStream(Buffer.from([1, 0, 0, 0, 6, 4]))).toThrow("version 1, expected 3");
    const rm = encodeRouteMonitoring(PEER, UPDATE);
    rm.writeUInt16BE(200, 6 + 42 + 16);
    expect(() => decodeMessage(rm)).toThrow("Route Monitoring UPDATE length 200 is wrong");
    expect(() => encodePeerDown(PEER, 1)).toThrow("needs a NOTIFICATION");
    expect(() => perPeerHeader({ ...PEER, bgpId: "x" })).toThrow('peer BGP ID "x"');
    expect(() => encodeStatsReport(PEER, [{ type: 9, value: 1n }])).toThrow("needs afi and safi");
  });
});

describe("BMP monitor (from the runtime's tap)", () => {
  function setup(adjRibOut = false) {
    const out: BmpMessage[] = [];
    const view: { v: TapPeerView | undefined } = { v: undefined };
    const m = new BmpMonitor({
      emit: (b) => out.push(decodeMessage(b)),
      now: () => 1_700_000_000_000,
      adjRibOut,
    });
    m.attach({ view: () => view.v });
    const est = (conn: number | undefined): TapPeerView => ({
      establishedConn: conn,
      asn: 65020,
      peerId: conn === undefined ? "0.0.0.0" : "10.0.0.2",
      fourOctetAs: true,
      counts: () => ({
        received: 4,
        accepted: 3,
        advertised: 1,
        stale: 0,
        rejected: { FilterReject: 1 },
      }),
    });
    const open = (conn: number) => {
      m.connected("10.0.0.2", conn, {
        localAddress: "10.0.0.1",
        localPort: 179,
        remotePort: 40_000 + conn,
      });
      m.sent("10.0.0.2", conn, OPEN_A);
      // The peer's OPEN arrives in two reads.
      m.received("10.0.0.2", conn, OPEN_B.subarray(0, 10));
      m.received("10.0.0.2", conn, OPEN_B.subarray(10));
      view.v = est(undefined);
      m.settled("10.0.0.2");
      view.v = est(conn);
      m.settled("10.0.0.2");
    };
    return { m, out, view, est, open };
  }

  it("Peer Up once Established with both OPENs, then Route Monitoring and stats", () => {
    const { m, out, open } = setup();
    open(1);
    m.updateReceived("10.0.0.2", UPDATE);
    m.settled();
    expect(out.map((x) => x.type)).toEqual(["PeerUp", "RouteMonitoring"]);
    const up = out[0] as Extract<BmpMessage, { type: "PeerUp" }>;
    expect(up.sentOpen.equals(OPEN_A) && up.receivedOpen.equals(OPEN_B)).toBe(true);
    expect(up.remotePort).toBe(40_001);
    expect(m.peerUps().map((b) => decodeMessage(b).type)).toEqual(["PeerUp"]);
    const st = decodeMessage(m.statsReports()[0] as Buffer);
    expect(st.type === "StatisticsReport" && st.stats.slice(0, 1)).toEqual([{ type: 0, value: 1 }]);
    expect(st.type === "StatisticsReport" && st.stats.find((s) => s.type === 7)?.value).toBe(4n);
  });

  it("Peer Down reasons: 3 NOTIFICATION received, 1 sent, 4 TCP closed by the peer, 2 ours, 5 deconfigured", () => {
    const { m, out, view, est, open } = setup();
    const downAfter = (conn: number, act: () => void) => {
      open(conn);
      act();
      view.v = est(undefined);
      m.settled("10.0.0.2");
      const d = out.at(-1) as Extract<BmpMessage, { type: "PeerDown" }>;
      expect(d.type).toBe("PeerDown");
      return d;
    };
    let d = downAfter(1, () => {
      m.received("10.0.0.2", 1, CEASE);
      m.closed("10.0.0.2", 1, "local");
    });
    expect(d.reason).toBe(3);
    expect(d.data.equals(CEASE)).toBe(true);
    d = downAfter(2, () => {
      m.sent("10.0.0.2", 2, CEASE);
      m.closed("10.0.0.2", 2, "local");
    });
    expect(d.reason).toBe(1);
    d = downAfter(3, () => m.closed("10.0.0.2", 3, "remote"));
    expect(d.reason).toBe(4);
    d = downAfter(4, () => m.closed("10.0.0.2", 4, "local"));
    expect([d.reason, ...d.data]).toEqual([2, 0, 0]);
    open(5);
    view.v = undefined;
    m.settled();
    expect((out.at(-1) as Extract<BmpMessage, { type: "PeerDown" }>).reason).toBe(5);
    expect(m.upPeers).toEqual([]);
    expect(m.counters).toMatchObject({ peerUp: 5, peerDown: 5 });
  });

  it("no Peer Up without the peer's OPEN; Adj-RIB-Out mirror flags O and L", () => {
    const { m, out, view, est } = setup(true);
    m.connected("10.0.0.2", 1, { localAddress: "10.0.0.1", localPort: 179, remotePort: 40_001 });
    m.sent("10.0.0.2", 1, OPEN_A);
    view.v = est(1);
    m.settled("10.0.0.2");
    expect(out).toEqual([]);
    m.received("10.0.0.2", 1, OPEN_B);
    // Our first UPDATE (sent with the keepalive in one write) brings the peer up first.
    m.sent("10.0.0.2", 1, Buffer.concat([bgp(4, []), UPDATE]));
    expect(out.map((x) => x.type)).toEqual(["PeerUp", "RouteMonitoring"]);
    const rm = out[1] as Extract<BmpMessage, { type: "RouteMonitoring" }>;
    expect(rm.peer.flags).toBe(PeerFlag.O | PeerFlag.L);
    expect(rm.update.equals(UPDATE)).toBe(true);
  });
});
