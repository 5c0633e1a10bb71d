// Pure tests of the rtnetlink codec against hand-annotated bytes, and of MemoryFib.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryFib } from "../../src/fib/memory_fib.js";
import {
  decodeError,
  decodeLink,
  decodeNexthop,
  decodeRoute,
  forEachMessage,
  MessageWriter,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NLMSG_ERROR,
  type NlMessage,
  parseCidr,
  RTM_DELROUTE,
  RTM_NEWLINK,
  RTM_NEWNEXTHOP,
  RTM_NEWROUTE,
  RTN_BLACKHOLE,
  RTN_UNICAST,
  writeNexthop,
  writeNexthopGet,
  writeRoute,
  writeRouteDump,
  writeRouteGet,
} from "../../src/fib/rtnetlink.js";
import { FibError } from "../../src/fib/types.js";
import { formatIPv6, parseIPv6 } from "../../src/lib/ip.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+|#[^\n]*/g, ""), "hex");

/** 10.1.0.0/24 via 10.255.8.1 on ifindex 3, protocol 201 in main: the encoders' common route. */
const route10_1 = () => ({
  family: 4 as const,
  dst: new Uint8Array([10, 1, 0, 0]),
  dstLen: 24,
  table: 254,
  protocol: 201,
  type: RTN_UNICAST,
  scope: 0,
  metric: 0,
  nexthops: [{ gateway: new Uint8Array([10, 255, 8, 1]), ifindex: 3, onlink: false, weight: 1 }],
});

function messages(buf: Buffer): NlMessage[] {
  const out: NlMessage[] = [];
  forEachMessage(buf, (m) => out.push({ ...m }));
  return out;
}

describe("writeRoute()", () => {
  it("encodes an IPv4 route via a gateway, byte for byte", () => {
    const w = new MessageWriter(16);
    writeRoute(w, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, 7, route10_1());
    expect(w.buf.subarray(0, w.len).toString("hex")).toBe(
      hex(`
        3c000000 1800 0506 07000000 00000000  # nlmsghdr: len 60, RTM_NEWROUTE, REQUEST|ACK|EXCL|CREATE, seq 7
        02 18 00 00 fe c9 00 01 00000000      # rtmsg: AF_INET /24, table 254, proto 201, universe, unicast
        0800 0100 0a010000                    # RTA_DST 10.1.0.0
        0800 0f00 fe000000                    # RTA_TABLE 254
        0800 0500 0aff0801                    # RTA_GATEWAY 10.255.8.1
        0800 0400 03000000                    # RTA_OIF 3
      `).toString("hex"),
    );
  });

  it("encodes ECMP as RTA_MULTIPATH with rtnexthop, onlink flag, weight and nested gateway", () => {
    const w = new MessageWriter();
    writeRoute(w, RTM_NEWROUTE, NLM_F_CREATE, 1, {
      family: 4,
      dst: new Uint8Array([10, 3, 0, 0]),
      dstLen: 16,
      table: 1000,
      protocol: 201,
      type: RTN_UNICAST,
      scope: 0,
      metric: 20,
      nexthops: [
        { gateway: new Uint8Array([192, 0, 2, 1]), ifindex: 2, onlink: true, weight: 1 },
        { gateway: new Uint8Array([192, 0, 2, 2]), ifindex: 4, onlink: false, weight: 3 },
      ],
    });
    const b = w.buf.subarray(0, w.len);
    expect(b.subarray(16, 28).toString("hex")).toBe("02100000fcc9000100000000"); // table 252 = RT_TABLE_COMPAT
    expect(b.subarray(28).toString("hex")).toBe(
      hex(`
        0800 0100 0a030000          # RTA_DST
        0800 0f00 e8030000          # RTA_TABLE 1000
        0800 0600 14000000          # RTA_PRIORITY 20
        2400 0900                   # RTA_MULTIPATH, 36 bytes
        1000 04 00 02000000         # rtnexthop len 16, RTNH_F_ONLINK, hops 0 (weight 1), ifindex 2
        0800 0500 c0000201          #   RTA_GATEWAY 192.0.2.1
        1000 00 02 04000000         # rtnexthop len 16, weight 3, ifindex 4
        0800 0500 c0000202          #   RTA_GATEWAY 192.0.2.2
      `).toString("hex"),
    );
  });

  it("round-trips IPv6, blackhole and multipath through decodeRoute()", () => {
    const w = new MessageWriter();
    const gw = parseIPv6("fd00::2");
    writeRoute(w, RTM_NEWROUTE, 0, 1, {
      family: 6,
      dst: parseIPv6("fd00:1::"),
      dstLen: 64,
      table: 254,
      protocol: 202,
      type: RTN_UNICAST,
      scope: 0,
      metric: 1024,
      nexthops: [
        { gateway: gw, ifindex: 5, onlink: false, weight: 1 },
        { gateway: parseIPv6("fd00::3"), ifindex: 6, onlink: false, weight: 2 },
      ],
      prefsrc: parseIPv6("fd00::1"),
    });
    writeRoute(w, RTM_DELROUTE, 0, 2, {
      family: 4,
      dst: new Uint8Array([10, 2, 0, 0]),
      dstLen: 24,
      table: 254,
      protocol: 201,
      type: RTN_BLACKHOLE,
      scope: 0,
      metric: 0,
      nexthops: [],
    });
    const [a, b] = messages(w.buf.subarray(0, w.len));
    const ra = decodeRoute(a);
    expect(ra).toMatchObject({ family: 6, dstLen: 64, table: 254, protocol: 202, metric: 1024 });
    expect(formatIPv6(ra?.dst ?? new Uint8Array(16))).toBe("fd00:1::");
    expect(
      ra?.nexthops.map((n) => [formatIPv6(n.gateway as Uint8Array), n.ifindex, n.weight]),
    ).toEqual([
      ["fd00::2", 5, 1],
      ["fd00::3", 6, 2],
    ]);
    expect(formatIPv6(ra?.prefsrc as Uint8Array)).toBe("fd00::1");
    expect(b.type).toBe(RTM_DELROUTE);
    expect(decodeRoute(b)).toMatchObject({
      family: 4,
      dstLen: 24,
      type: RTN_BLACKHOLE,
      nexthops: [],
    });
  });

  it("writes a strict dump request filtered by protocol", () => {
    const w = new MessageWriter();
    writeRouteDump(w, 9, 4, 201);
    expect(w.buf.subarray(0, w.len).toString("hex")).toBe(
      hex("1c000000 1a00 0103 09000000 00000000   02 00 00 00 00 c9 00 00 00000000").toString(
        "hex",
      ),
    );
  });
});

describe("nexthop objects", () => {
  it("encodes an IPv4 route naming a nexthop object (RTA_NH_ID, no gateway), byte for byte", () => {
    const w = new MessageWriter(16);
    writeRoute(w, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, 9, { ...route10_1(), nhId: 0x4f430001 });
    expect(w.buf.subarray(0, w.len).toString("hex")).toBe(
      hex(`
        34000000 1800 0106 09000000 00000000  # nlmsghdr: len 52, RTM_NEWROUTE, REQUEST|EXCL|CREATE, seq 9
        02 18 00 00 fe c9 00 01 00000000      # rtmsg: AF_INET /24, table 254, proto 201, universe, unicast
        0800 0100 0a010000                    # RTA_DST 10.1.0.0
        0800 0f00 fe000000                    # RTA_TABLE 254
        0800 1e00 0100434f                    # RTA_NH_ID 0x4f430001 (the gateway is the object's)
      `).toString("hex"),
    );
    const [m] = messages(w.buf.subarray(0, w.len));
    expect(decodeRoute(m)).toMatchObject({ nhId: 0x4f430001, nexthops: [] });
  });

  it("encodes RTM_NEWNEXTHOP, RTM_GETNEXTHOP and a route lookup, and decodes a nexthop", () => {
    const w = new MessageWriter(16);
    writeNexthop(w, NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK, 3, {
      id: 0x4f430001,
      family: 4,
      protocol: 201,
      gateway: new Uint8Array([10, 255, 9, 1]),
      oif: 7,
    });
    writeNexthopGet(w, NLM_F_ACK, 4, 0x4f430001);
    writeRouteGet(w, NLM_F_ACK, 5, new Uint8Array([10, 255, 9, 1]));
    expect(w.buf.subarray(0, w.len).toString("hex")).toBe(
      hex(`
        30000000 6800 0505 03000000 00000000  # nlmsghdr: len 48, RTM_NEWNEXTHOP, REQUEST|ACK|REPLACE|CREATE, seq 3
        02 00 c9 00 00000000                  # nhmsg: AF_INET, scope 0, proto 201, flags 0
        0800 0100 0100434f                    # NHA_ID
        0800 0500 07000000                    # NHA_OIF 7
        0800 0600 0aff0901                    # NHA_GATEWAY 10.255.9.1
        20000000 6a00 0500 04000000 00000000  # RTM_GETNEXTHOP, REQUEST|ACK, seq 4
        00 00 00 00 00000000                  # nhmsg
        0800 0100 0100434f                    # NHA_ID
        24000000 1a00 0500 05000000 00000000  # RTM_GETROUTE, REQUEST|ACK, seq 5
        02 20 00 00 00 00 00 00 00000000      # rtmsg: AF_INET /32
        0800 0100 0aff0901                    # RTA_DST 10.255.9.1
      `).toString("hex"),
    );
    const d = new MessageWriter(16);
    writeNexthopGet(d, NLM_F_ACK, 6, 0x4f430001, true);
    expect(d.buf.subarray(0, d.len).toString("hex")).toBe(
      hex(`
        20000000 6900 0500 06000000 00000000  # RTM_DELNEXTHOP, REQUEST|ACK, seq 6
        00 00 00 00 00000000                  # nhmsg
        0800 0100 0100434f                    # NHA_ID
      `).toString("hex"),
    );
    const [nh] = messages(w.buf.subarray(0, w.len));
    expect(nh.type).toBe(RTM_NEWNEXTHOP);
    expect(decodeNexthop(nh)).toEqual({
      id: 0x4f430001,
      family: 2,
      protocol: 201,
      gateway: new Uint8Array([10, 255, 9, 1]),
      oif: 7,
    });
    // No id: not a nexthop object.
    expect(decodeNexthop({ ...nh, end: nh.off + 8 })).toBeUndefined();
  });

  it("encodes a nexthop group (NHA_GROUP: id, weight - 1 per member; family AF_UNSPEC) and decodes it", () => {
    const w = new MessageWriter(16);
    writeNexthop(w, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, 7, {
      id: 0x4f430010,
      protocol: 201,
      group: [
        { id: 0x4f430001, weight: 1 },
        { id: 0x4f430002, weight: 3 },
      ],
    });
    expect(w.buf.subarray(0, w.len).toString("hex")).toBe(
      hex(`
        34000000 6800 0506 07000000 00000000  # nlmsghdr: len 52, RTM_NEWNEXTHOP, REQUEST|ACK|EXCL|CREATE, seq 7
        00 00 c9 00 00000000                  # nhmsg: AF_UNSPEC, scope 0, proto 201, flags 0
        0800 0100 1000434f                    # NHA_ID
        1400 0200                             # NHA_GROUP, 2 members
        0100434f 00 00 0000                   # id 0x4f430001, weight 1
        0200434f 02 00 0000                   # id 0x4f430002, weight 3
      `).toString("hex"),
    );
    const [nh] = messages(w.buf.subarray(0, w.len));
    expect(decodeNexthop(nh)).toEqual({
      id: 0x4f430010,
      family: 0,
      protocol: 201,
      oif: 0,
      group: [
        { id: 0x4f430001, weight: 1 },
        { id: 0x4f430002, weight: 3 },
      ],
    });
  });
});

describe("decoders", () => {
  it("decodeError() reads errno, the request's seq and the extended-ACK text of a capped error", () => {
    const msg = hex(`
      30000000 0200 0003 05000000 00000000   # NLMSG_ERROR, flags CAPPED|ACK_TLVS
      9bffffff                               # error -101 (ENETUNREACH)
      3c000000 1800 0506 2a000000 00000000   # the request's header, seq 42
      0c00 0100 6e6f20726f75746500           # NLMSGERR_ATTR_MSG "no route"
      000000
    `);
    msg.writeUInt32LE(msg.length, 0);
    const [m] = messages(msg);
    expect(decodeError(m)).toEqual({ errno: 101, seq: 42, message: "no route" });
  });

  it("decodeLink() reads index, flags and IFLA_IFNAME", () => {
    const msg = hex(`
      28000000 1000 0000 01000000 00000000   # RTM_NEWLINK
      00 00 0100 07000000 43100100 00000000  # ifinfomsg: ifindex 7, flags UP|BROADCAST|RUNNING|MULTICAST|LOWER_UP
      0800 0300 64300000                     # IFLA_IFNAME "d0"
    `);
    const [m] = messages(msg);
    expect(decodeLink(m)).toEqual({ ifindex: 7, name: "d0", flags: 0x11043, up: true });
  });

  it("forEachMessage() stops at a truncated message instead of reading past the end", () => {
    const buf = hex(
      "14000000 0300 0200 01000000 00000000 00000000  40000000 0300 0000 02000000 00000000",
    );
    expect(messages(buf).map((m) => m.seq)).toEqual([1]);
  });
});

describe("addresses", () => {
  it("parseIPv6()/formatIPv6() follow RFC 5952 and reject bad text", () => {
    for (const [text, canon] of [
      ["fd00::", "fd00::"],
      ["::1", "::1"],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["fe80::1:2", "fe80::1:2"],
      ["::ffff:10.1.2.3", "::ffff:a01:203"],
    ])
      expect(formatIPv6(parseIPv6(text))).toBe(canon);
    expect(() => parseIPv6("fd00::1::2")).toThrow('Invalid IPv6 address "fd00::1::2"');
    expect(() => parseIPv6("12345::")).toThrow("Invalid IPv6 address");
  });

  it("parseCidr() refuses host bits and bad lengths, quoting the value", () => {
    expect(parseCidr(4, "10.1.2.0/24").len).toBe(24);
    expect(() => parseCidr(4, "10.1.2.1/24")).toThrow('host bits set: "10.1.2.1/24"');
    expect(() => parseCidr(4, "10.1.2.0/33")).toThrow('Invalid prefix length in "10.1.2.0/33"');
    expect(() => parseCidr(6, "fd00::1/64")).toThrow("host bits set");
    expect(() => parseCidr(4, "10.1.2.0")).toThrow("not in CIDR form");
  });
});

describe("MemoryFib", () => {
  it("sets, replaces, removes and reports desired routes like the kernel FIB", async () => {
    const fib = new MemoryFib();
    await fib.set([
      { family: 4, dst: "10.1.0.0/24", protocol: 201, nexthops: [{ gateway: "10.0.0.1" }] },
      { family: 6, dst: "fd00::/64", protocol: 201, type: "blackhole", nexthops: [] },
    ]);
    await fib.set([
      { family: 4, dst: "10.1.0.0/24", protocol: 201, nexthops: [{ gateway: "10.0.0.2" }] },
    ]);
    expect(fib.desired()).toHaveLength(2);
    expect(fib.get({ family: 4, dst: "10.1.0.0/24" })?.nexthops).toEqual([{ gateway: "10.0.0.2" }]);
    expect(fib.get({ family: 6, dst: "fd00::/64" })?.metric).toBe(1024);
    await fib.remove([{ family: 6, dst: "fd00::/64", protocol: 201 }]);
    expect(fib.desired().map((r) => r.dst)).toEqual(["10.1.0.0/24"]);
    expect(fib.log.map((l) => l.op)).toEqual(["set", "set", "set", "remove"]);
  });

  it("takes the numeric IPv4 batch and reports injected per-route failures", async () => {
    const fib = new MemoryFib([201]);
    fib.failOn.set("10.0.0.1/32", "ENETUNREACH");
    const addrs = Uint32Array.of(0x0a000000, 0x0a000001, 0x0a000100);
    const lens = Uint8Array.of(32, 32, 24);
    const err = await fib
      .setV4Batch({ addrs, lens, protocol: 201, nexthops: [{ gateway: "10.255.0.1" }] })
      .catch((e) => e);
    expect(err).toBeInstanceOf(FibError);
    expect((err as FibError).failures).toEqual([
      { route: "10.0.0.1/32 table 254 metric 0", op: "set", errno: 0, code: "ENETUNREACH" },
    ]);
    expect(fib.desired().map((r) => r.dst)).toEqual(["10.0.0.0/32", "10.0.1.0/24"]);
    await expect(
      fib.set([
        { family: 4, dst: "10.9.0.0/16", protocol: 186, nexthops: [{ gateway: "1.1.1.1" }] },
      ]),
    ).rejects.toThrow("Route protocol 186 is not owned by this FIB");
  });
});

describe("decoders on arbitrary bytes", () => {
  it("never throw and never read past a message, whatever the kernel (or a bug) hands them", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 400 }),
        fc.integer({ min: 0, max: 7 }),
        (bytes, form) => {
          const buf = Buffer.from(bytes);
          // Give most inputs a plausible first header so the decoders are reached.
          if (buf.length >= 16 && form > 0) {
            buf.writeUInt32LE(Math.min(buf.length, 16 + (buf.readUInt16LE(0) % 200)), 0);
            buf.writeUInt16LE(
              [NLMSG_ERROR, RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWLINK, RTM_NEWNEXTHOP, 3, 2][
                form - 1
              ],
              4,
            );
          }
          forEachMessage(buf, (m) => {
            expect(m.end).toBeLessThanOrEqual(buf.length);
            if (m.type === NLMSG_ERROR) decodeError(m);
            if (m.type === RTM_NEWROUTE || m.type === RTM_DELROUTE) decodeRoute(m);
            if (m.type === RTM_NEWLINK) decodeLink(m);
            if (m.type === RTM_NEWNEXTHOP) decodeNexthop(m);
          });
        },
      ),
      { numRuns: 3000 },
    );
  });
});
