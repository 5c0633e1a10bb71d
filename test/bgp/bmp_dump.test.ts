import { describe, expect, it } from "vitest";
import { type BmpMessage, decodeMessage, PeerFlag } from "../../src/bgp/bmp/codec.js";
import { BmpMonitor } from "../../src/bgp/bmp/monitor.js";
import { RejectReason } from "../../src/bgp/rib/policy.js";
import { PrefixList, parsePrefix } from "../../src/bgp/rib/prefix.js";
import { Rib } from "../../src/bgp/rib/rib.js";
import { makeWireBridge, type WireAttrs, wireAdapter } from "../../src/bgp/speaker/attrs.js";
import { encodeReceived } from "../../src/bgp/speaker/export.js";
import type { TapPeerView } from "../../src/bgp/speaker/runtime.js";
import { Afi } from "../../src/bgp/wire/constants.js";
import { forEachIpv4Prefix, forEachIpv6Prefix, ipv4ToText } from "../../src/bgp/wire/nlri.js";
import {
  Ipv4Unicast,
  Ipv6Unicast,
  type SessionOptions,
  sessionOptions,
} from "../../src/bgp/wire/types.js";
import { decodeUpdate } from "../../src/bgp/wire/update.js";
import { COMMUNITY, OPEN_A, OPEN_B, PEER, updatesFor } from "./bmp_fixtures.js";

const REJECTED = "10.98.7.0/24";
const STALE = "10.96.9.0/24";
const V4 = Array.from({ length: 1200 }, (_, i) => `10.${98 + (i >> 8)}.${i & 255}.0/24`);
const V6 = Array.from({ length: 40 }, (_, i) => `fd00:98:${(i + 1).toString(16)}::/48`);

/** The speaker's part (core.applyUpdate): each UPDATE decoded, interned, announced. */
function receive(rib: Rib<WireAttrs>, peer: number, msgs: Uint8Array[], opts: SessionOptions) {
  const bridge = makeWireBridge();
  for (const m of msgs) {
    const u = decodeUpdate(m, opts);
    if (u.nlri.count > 0) {
      const id = rib.intern(bridge.fromUpdate(u, 4));
      forEachIpv4Prefix(u.nlri, (a, l, pid) => rib.announceV4(peer, id, a, l, pid));
    }
    const reach = u.attributes?.mpReach;
    if (reach && reach.nlri.count > 0) {
      const id = rib.intern(bridge.fromUpdate(u, 6));
      forEachIpv6Prefix(reach.nlri, (w, l, pid) => rib.announceV6(peer, id, w, 0, l, pid));
    }
  }
}

/** Prefixes (with path ids), AS path, communities of each Route Monitoring UPDATE. */
function read(msgs: BmpMessage[], opts: SessionOptions) {
  const v4: string[] = [];
  const v6: string[] = [];
  const ids: number[] = [];
  const eor: number[] = [];
  let updates = 0;
  for (const m of msgs) {
    expect(m.type).toBe("RouteMonitoring");
    if (m.type !== "RouteMonitoring") continue;
    // Pre-policy Adj-RIB-In (L and O clear), 4-octet AS (A clear), time unavailable (0).
    expect(m.peer.flags & (PeerFlag.L | PeerFlag.O | PeerFlag.A | PeerFlag.V)).toBe(0);
    expect([m.peer.address, m.peer.asn, m.peer.bgpId]).toEqual([PEER, 65020, "10.0.0.2"]);
    expect([m.peer.timeSeconds, m.peer.timeMicros]).toEqual([0, 0]);
    const u = decodeUpdate(m.update, opts);
    expect(u.errors).toEqual([]);
    if (u.endOfRib !== null) {
      eor.push(u.endOfRib);
      continue;
    }
    expect(eor).toEqual([]); // End-of-RIB comes last
    updates++;
    const a = u.attributes;
    expect(a?.asPath).toEqual([{ type: 2, asns: [65020] }]);
    expect([...(a?.communities ?? [])]).toEqual([COMMUNITY]);
    forEachIpv4Prefix(u.nlri, (x, l, pid) => {
      v4.push(`${ipv4ToText(x)}/${l}`);
      ids.push(pid);
    });
    const reach = a?.mpReach;
    if (reach?.afi === Afi.Ipv6) {
      expect(makeWireBridge().fromUpdate(u, 6).nextHop).toBe("fd00::2");
      forEachIpv6Prefix(reach.nlri, (w, l) => {
        const list = new PrefixList(6, 1);
        list.pushV6(w, 0, l);
        v6.push(list.toString(0));
      });
    }
  }
  return { v4, v6, ids, eor, updates };
}

function setup(opts: SessionOptions) {
  const rib = new Rib<WireAttrs>({ localAs: 64512, routerId: "10.0.0.1", adapter: wireAdapter });
  const reject = parsePrefix(REJECTED);
  const p = rib.addPeer({
    id: PEER,
    address: PEER,
    asn: 65020,
    importPolicy: {
      key: "reject-10.98.7",
      v4: (a, l) =>
        a === reject.words[0] && l === reject.len
          ? RejectReason.FilterReject
          : RejectReason.Accepted,
      v6: () => RejectReason.Accepted,
    },
  });
  rib.peerUp(p, PEER);
  const out: Buffer[] = [];
  const m = new BmpMonitor({ emit: (b) => out.push(b), now: () => 1_700_000_000_000 });
  const view: TapPeerView = {
    establishedConn: 1,
    asn: 65020,
    peerId: PEER,
    fourOctetAs: true,
    counts: () => rib.peerCounts(p),
    adjRibIn: () => ({
      families: [Ipv4Unicast, Ipv6Unicast],
      updates: encodeReceived(makeWireBridge(), rib.adjRibIn(p), opts),
    }),
  };
  m.attach({ view: () => view });
  m.connected(PEER, 1, { localAddress: "10.0.0.1", localPort: 179, remotePort: 40_001 });
  m.sent(PEER, 1, OPEN_A);
  m.received(PEER, 1, OPEN_B);
  m.settled(PEER);
  expect(out.map((b) => decodeMessage(b).type)).toEqual(["PeerUp"]);
  return { rib, p, m, out };
}

describe("BMP dump of the Adj-RIB-In (RFC 7854 §5)", () => {
  it("every path of the session as received (rejected included, stale left out), bulk, then End-of-RIB per family", () => {
    const opts = sessionOptions();
    const { rib, p, m } = setup(opts);
    // An earlier session's paths, kept stale (graceful restart): all but STALE come again.
    receive(rib, p, updatesFor([...V4, STALE], 4, opts), opts);
    rib.markStale(p);
    receive(rib, p, updatesFor(V4, 4, opts), opts);
    receive(rib, p, updatesFor(V6, 6, opts), opts);
    rib.drain(1_000_000);
    expect(rib.peerCounts(p)).toMatchObject({ received: V4.length + V6.length + 1, stale: 1 });
    expect(rib.peerCounts(p)).toMatchObject({ accepted: V4.length + V6.length });
    expect(rib.explain(REJECTED)?.paths[0]).toMatchObject({
      accepted: false,
      rejectReason: "FilterReject",
    });

    const dump = m.dump();
    // A snapshot: what arrives after the call is not in this dump (the live stream has it).
    receive(rib, p, updatesFor(["10.97.0.0/24"], 4, opts), opts);
    const msgs = [...dump].map((b) => decodeMessage(b));
    const r = read(msgs, opts);
    expect(new Set(r.v4)).toEqual(new Set(V4));
    expect(r.v4).toHaveLength(V4.length);
    expect(r.v4).toContain(REJECTED);
    expect(r.v4).not.toContain(STALE);
    expect(new Set(r.v6)).toEqual(new Set(V6));
    expect(r.eor).toEqual([Ipv4Unicast, Ipv6Unicast]);
    // Bulk: 1,200 IPv4 /24s of one attribute set fit in 2 UPDATEs of 4096 octets, 40 IPv6 in 1.
    expect(r.updates).toBe(3);
    expect(m.counters.dumpRouteMonitoring).toBe(5);
  });

  it("an ADD-PATH receive session: each path with its id, two paths of one prefix both", () => {
    const opts = sessionOptions();
    opts.addPath.receive = new Set([Ipv4Unicast]);
    const { rib, p, m } = setup(opts);
    const prefixes = ["10.98.1.0/24", "10.98.1.0/24", "10.98.2.0/24"];
    receive(rib, p, updatesFor(prefixes, 4, opts, [7, 9, 7]), opts);
    const r = read(
      [...m.dump()].map((b) => decodeMessage(b)),
      opts,
    );
    expect(r.v4.map((x, i) => `${x}#${r.ids[i]}`).sort()).toEqual([
      "10.98.1.0/24#7",
      "10.98.1.0/24#9",
      "10.98.2.0/24#7",
    ]);
    expect(r.eor).toEqual([Ipv4Unicast, Ipv6Unicast]);
  });
});
