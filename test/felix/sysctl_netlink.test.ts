// Pure tests of the per-interface sysctls sent over rtnetlink (sysctl_netlink.ts): which keys go
// as messages and which stay /proc/sys writes, and the message layout (RTM_SETLINK with
// IFLA_AF_SPEC/AF_INET/IFLA_INET_CONF, <linux/ip.h> indexes). The kernel's side:
// test/felix/apply_direct.netns.test.ts.
import { describe, expect, it } from "vitest";
import { splitSysctls, sysctlMessages, writeSetInetConf } from "../../src/felix/sysctl_netlink.js";
import { ifaceSysctls } from "../../src/felix/workload.js";
import { MessageWriter } from "../../src/fib/rtnetlink.js";

describe("splitSysctls()", () => {
  it("sends a known interface's IPv4 conf; files for the rest", () => {
    const list = [
      { key: "net.ipv4.ip_forward", value: "1" },
      ...ifaceSysctls("ocla", true, { rpFilter: 0 }),
      ...ifaceSysctls("oclb", false),
      { key: "net.ipv4.conf.all.rp_filter", value: "1" },
      { key: "net.ipv4.conf.ocla.arp_ignore", value: "1" }, // not in the table
      { key: "net.ipv4.conf.ocla.route_localnet", value: "0" }, // clearing flushes: a file
      { key: "net.ipv4.conf.oclb.proxy_arp", value: "x" }, // not a number: the file says why
    ];
    const s = splitSysctls(list, (n) => n === "ocla");
    // forwarding 1, rp_filter 8, proxy_arp 3; route_localnet's 1 replaced by the later 0.
    expect([...s.inetConf]).toEqual([
      [
        "ocla",
        [
          [1, 1],
          [8, 0],
          [3, 1],
        ],
      ],
    ]);
    expect(s.files.map((f) => f.key)).toEqual([
      "net.ipv4.ip_forward",
      "net.ipv4.neigh.ocla.proxy_delay",
      "net.ipv6.conf.ocla.accept_ra",
      "net.ipv6.conf.ocla.proxy_ndp",
      "net.ipv6.conf.ocla.forwarding",
      ...ifaceSysctls("oclb", false).map((f) => f.key),
      "net.ipv4.conf.all.rp_filter",
      "net.ipv4.conf.ocla.arp_ignore",
      "net.ipv4.conf.ocla.route_localnet",
      "net.ipv4.conf.oclb.proxy_arp",
    ]);
  });

  it("names each message's keys", () => {
    const s = splitSysctls(
      [
        { key: "net.ipv4.conf.oclc.proxy_arp", value: "1" },
        { key: "net.ipv4.conf.oclc.rp_filter", value: "0" },
      ],
      () => true,
    );
    expect(sysctlMessages(s, () => 9).map((m) => m.keys)).toEqual([
      ["net.ipv4.conf.oclc.proxy_arp", "net.ipv4.conf.oclc.rp_filter"],
    ]);
  });
});

describe("sysctl messages", () => {
  it("lays out RTM_SETLINK of IPv4 devconf values as inet_set_link_af reads them", () => {
    const w = new MessageWriter(256);
    writeSetInetConf(
      w,
      5,
      42,
      [
        [3, 1],
        [8, 0],
      ],
      false,
    );
    const b = w.buf.subarray(0, w.len);
    expect(b.readUInt32LE(0)).toBe(b.length);
    expect(b.readUInt16LE(4)).toBe(19); // RTM_SETLINK
    expect(b.readUInt16LE(6)).toBe(0x1); // REQUEST, no ACK (not the last of a batch)
    expect(b.readUInt32LE(8)).toBe(5);
    expect(b[16]).toBe(0); // ifinfomsg: AF_UNSPEC
    expect(b.readInt32LE(20)).toBe(42);
    // IFLA_AF_SPEC { AF_INET { IFLA_INET_CONF { [3] = 1, [8] = 0 } } }: 3 nests + 2 u32s.
    expect(b.readUInt16LE(32)).toBe(4 + 4 + 4 + 16);
    expect(b.readUInt16LE(34) & 0x3fff).toBe(26);
    expect(b.readUInt16LE(38) & 0x3fff).toBe(2);
    expect(b.readUInt16LE(42) & 0x3fff).toBe(1);
    expect([b.readUInt16LE(46), b.readUInt32LE(48)]).toEqual([3, 1]);
    expect([b.readUInt16LE(54), b.readUInt32LE(56)]).toEqual([8, 0]);
    expect(b.length).toBe(60);
    w.reset();
    writeSetInetConf(w, 6, 42, [[1, 1]], true);
    expect(w.buf.readUInt16LE(6)).toBe(0x1 | 0x4);
  });
});
