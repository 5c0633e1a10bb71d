// Pure tests of the rtnetlink link and address requests ocelot-cni sends (a veth pair with its
// peer in another namespace, link changes, addresses), against hand-annotated bytes, and of
// their decoders. The kernel's side is test/cni/netlink.netns.test.ts.
import { describe, expect, it } from "vitest";
import {
  decodeAddrDetail,
  decodeLinkDetail,
  forEachMessage,
  formatMac,
  IFA_F_NODAD,
  IFF_UP,
  MessageWriter,
  macBytes,
  type NlMessage,
  writeDelLink,
  writeGetLink,
  writeNewAddr,
  writeNewVeth,
  writeSetLink,
} from "../../src/fib/rtnetlink.js";
import { parseIPv6 } from "../../src/lib/ip.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+|#[^\n]*/g, ""), "hex");

function only(w: MessageWriter): NlMessage {
  const out: NlMessage[] = [];
  forEachMessage(w.buf.subarray(0, w.len), (m) => out.push({ ...m }));
  expect(out).toHaveLength(1);
  return out[0] as NlMessage;
}

describe("writeNewVeth()", () => {
  it("encodes `ip link add a mtu 1400 address ee:.. type veth peer name b mtu 1400 netns FD`, byte for byte", () => {
    const w = new MessageWriter(16);
    writeNewVeth(
      w,
      3,
      { name: "a", mtu: 1400, mac: "ee:ee:ee:ee:ee:ee" },
      { name: "b", mtu: 1400, netnsFd: 7 },
    );
    expect(w.buf.subarray(0, w.len).toString("hex")).toBe(
      hex(`
        7c000000 1000 0506 03000000 00000000  # len 124, RTM_NEWLINK, REQUEST|ACK|EXCL|CREATE, seq 3
        00000000 00000000 00000000 00000000   # ifinfomsg: AF_UNSPEC, no index
        0600 0300 61000000                    # IFLA_IFNAME "a"
        0800 0400 78050000                    # IFLA_MTU 1400
        0a00 0100 eeeeeeeeeeee 0000           # IFLA_ADDRESS
        4000 1200                             # IFLA_LINKINFO (64)
          0900 0100 7665746800 000000         #   IFLA_INFO_KIND "veth"
          3000 0200                           #   IFLA_INFO_DATA (48)
            2c00 0100                         #     VETH_INFO_PEER (44): ifinfomsg + attributes
            00000000 00000000 00000000 00000000
            0600 0300 62000000                #     IFLA_IFNAME "b"
            0800 0400 78050000                #     IFLA_MTU 1400
            0800 1c00 07000000                #     IFLA_NET_NS_FD 7
      `).toString("hex"),
    );
  });

  it("decodeLinkDetail() reads back name, MAC and kind", () => {
    const w = new MessageWriter();
    writeNewVeth(
      w,
      1,
      { name: "ocl0123456789a", mtu: 1500, mac: "ee:ee:ee:ee:ee:ee" },
      { name: "eth0", mtu: 1500 },
    );
    expect(decodeLinkDetail(only(w))).toMatchObject({
      name: "ocl0123456789a",
      mac: "ee:ee:ee:ee:ee:ee",
      kind: "veth",
      up: false,
    });
  });
});

describe("link changes", () => {
  it("up sets IFF_UP in flags and change; a MAC alone changes no flag", () => {
    const w = new MessageWriter();
    writeSetLink(w, 9, 42, { up: true });
    const m = only(w);
    expect(m.buf.readInt32LE(m.off + 4)).toBe(42);
    expect(m.buf.readUInt32LE(m.off + 8)).toBe(IFF_UP);
    expect(m.buf.readUInt32LE(m.off + 12)).toBe(IFF_UP);
    w.reset();
    writeSetLink(w, 10, 42, { mac: "02:00:00:00:00:01" });
    const m2 = only(w);
    expect(m2.buf.readUInt32LE(m2.off + 12)).toBe(0);
    expect(decodeLinkDetail(m2)?.mac).toBe("02:00:00:00:00:01");
  });

  it("delete by index and get by name", () => {
    const w = new MessageWriter();
    writeDelLink(w, 1, 5);
    expect(only(w)).toMatchObject({ type: 17, flags: 0x5, seq: 1 });
    w.reset();
    writeGetLink(w, 2, "eth0");
    const m = only(w);
    expect(m).toMatchObject({ type: 18, flags: 0x5, seq: 2 });
    expect(decodeLinkDetail(m)?.name).toBe("eth0");
  });

  it("MAC text and bytes; a malformed MAC is refused", () => {
    expect(formatMac(macBytes("EE:ee:0a:00:ff:01"))).toBe("ee:ee:0a:00:ff:01");
    for (const bad of ["ee:ee:ee:ee:ee", "ee:ee:ee:ee:ee:eg", "eeee.eeee.eeee", ""])
      expect(() => macBytes(bad), bad).toThrow(/Invalid MAC address/);
  });
});

describe("writeNewAddr()", () => {
  it("encodes `ip addr add 10.1.2.3/32 dev 4`, byte for byte", () => {
    const w = new MessageWriter();
    writeNewAddr(w, 5, {
      family: 4,
      ifindex: 4,
      address: Uint8Array.of(10, 1, 2, 3),
      prefixLen: 32,
    });
    expect(w.buf.subarray(0, w.len).toString("hex")).toBe(
      hex(`
        28000000 1400 0506 05000000 00000000  # len 40, RTM_NEWADDR, REQUEST|ACK|EXCL|CREATE, seq 5
        02 20 00 00 04000000                  # ifaddrmsg: AF_INET, /32, no flags, universe, index 4
        0800 0200 0a010203                    # IFA_LOCAL
        0800 0100 0a010203                    # IFA_ADDRESS
      `).toString("hex"),
    );
  });

  it("an IPv6 /128 with nodad carries IFA_F_NODAD in both flag fields and decodes back", () => {
    const w = new MessageWriter();
    const address = parseIPv6("fd00::1");
    writeNewAddr(w, 6, { family: 6, ifindex: 9, address, prefixLen: 128, flags: IFA_F_NODAD });
    const m = only(w);
    expect(m.buf[m.off + 2]).toBe(IFA_F_NODAD);
    expect(decodeAddrDetail(m)).toEqual({
      family: 6,
      prefixLen: 128,
      scope: 0,
      ifindex: 9,
      address,
    });
    // IFA_FLAGS (8) = IFA_F_NODAD, after IFA_LOCAL and IFA_ADDRESS (20 bytes each).
    expect(m.buf.readUInt16LE(m.off + 8 + 40 + 2)).toBe(8);
    expect(m.buf.readUInt32LE(m.off + 8 + 40 + 4)).toBe(IFA_F_NODAD);
  });
});
