// The full pass's restore text encoded for netlink (ipset_restore.ts), no kernel: each set
// command its own acknowledged request, a set's members batched (many IPSET_ATTR_DATA in one
// IPSET_ATTR_ADT, each with its line; messages within the ADT attribute's 16-bit length; one
// sequence number a send and the ACK asked on its last message); what it does not cover left to
// the tool; a member nobody can write refused by line, set and member.
import { describe, expect, it } from "vitest";
import {
  IPSET_CMD_ADD,
  IPSET_CMD_CREATE,
  IPSET_CMD_DESTROY,
  IPSET_CMD_FLUSH,
  IPSET_CMD_SWAP,
} from "../../src/felix/ipset_netlink.js";
import {
  type EncodedIpsetRestore,
  encodeIpsetRestore,
  lineOf,
} from "../../src/felix/ipset_restore.js";
import { forEachMessage, NLM_F_ACK } from "../../src/fib/rtnetlink.js";

const IPSET_ATTR_ADT = 8;
const IPSET_ATTR_LINENO = 9;
const IPSET_ATTR_REVISION = 4;

function encode(text: string, revision: () => number | string = () => 7) {
  let seq = 100;
  return encodeIpsetRestore(text, revision, () => seq++);
}

/** Each message of each send: command, flags, seq, its top-level attributes' types, members. */
function messagesOf(e: EncodedIpsetRestore) {
  return e.sends.map((s) =>
    (() => {
      const out: { cmd: number; ack: boolean; seq: number; attrs: number[]; lines: number[] }[] =
        [];
      forEachMessage(e.buf.subarray(s.start, s.end), (m) => {
        const attrs: number[] = [];
        const lines: number[] = [];
        for (let o = m.off + 4; o + 4 <= m.end; ) {
          const l = m.buf.readUInt16LE(o);
          const t = m.buf.readUInt16LE(o + 2) & 0x3fff;
          attrs.push(t);
          if (t === IPSET_ATTR_ADT) {
            // Each IPSET_ATTR_DATA's IPSET_ATTR_LINENO.
            for (let d = o + 4; d < o + l; ) {
              const dl = m.buf.readUInt16LE(d);
              for (let a = d + 4; a < d + dl; ) {
                const al = m.buf.readUInt16LE(a);
                if ((m.buf.readUInt16LE(a + 2) & 0x3fff) === IPSET_ATTR_LINENO)
                  lines.push(m.buf.readUInt32LE(a + 4));
                a += (al + 3) & ~3;
              }
              d += (dl + 3) & ~3;
            }
          }
          if (t === IPSET_ATTR_REVISION) attrs.push(1000 + (m.buf[o + 4] as number));
          o += (l + 3) & ~3;
        }
        out.push({
          cmd: m.type & 0xff,
          ack: (m.flags & NLM_F_ACK) !== 0,
          seq: m.seq,
          attrs,
          lines,
        });
      });
      return out;
    })(),
  );
}

describe("encodeIpsetRestore()", () => {
  it("sends each set command alone and a set's members in batches, each member with its line", () => {
    const members = Array.from(
      { length: 5000 },
      (_, i) => `add ocl-tmp-s ${`10.${i >> 8}.${i & 255}.0/24`}`,
    );
    const text = [
      "create ocl-tmp-s hash:net family inet",
      "flush ocl-tmp-s",
      ...members,
      "swap ocl-tmp-s ocl-s",
      "destroy ocl-tmp-s",
      "",
    ].join("\n");
    const e = encode(text);
    if ("uncovered" in e) throw new Error(e.uncovered);
    expect(e.members).toBe(5000);
    const sends = messagesOf(e);
    expect(sends[0]).toEqual([
      expect.objectContaining({
        cmd: IPSET_CMD_CREATE,
        ack: true,
        seq: 100,
        attrs: expect.arrayContaining([1007]),
      }),
    ]);
    expect(sends[1]).toEqual([expect.objectContaining({ cmd: IPSET_CMD_FLUSH, ack: true })]);
    expect(sends.at(-2)).toEqual([expect.objectContaining({ cmd: IPSET_CMD_SWAP, ack: true })]);
    expect(sends.at(-1)).toEqual([expect.objectContaining({ cmd: IPSET_CMD_DESTROY, ack: true })]);
    const memberSends = sends.slice(2, -2);
    // 5,000 members of 32 bytes (160 KB): more than one send of at most 128 KiB.
    expect(memberSends.length).toBe(2);
    const lines: number[] = [];
    for (const msgs of memberSends) {
      expect(new Set(msgs.map((m) => m.seq)).size).toBe(1);
      expect(msgs.map((m) => m.ack)).toEqual([...msgs.map(() => false).slice(1), true]);
      for (const m of msgs) {
        expect(m.cmd).toBe(IPSET_CMD_ADD);
        expect(m.attrs).toContain(IPSET_ATTR_LINENO);
        expect(m.lines.length).toBeGreaterThan(900);
        lines.push(...m.lines);
      }
    }
    expect(memberSends.flat().length).toBeGreaterThan(4);
    expect(lines).toEqual(members.map((_, i) => i + 3));
    for (const s of e.sends) expect(s.end - s.start).toBeLessThanOrEqual(128 * 1024 + 64);
  });

  it("covers hash:ip,port members of both families and their protocols", () => {
    const e = encode(
      [
        "create a hash:ip,port family inet",
        "add a 10.0.0.1,tcp:80",
        "add a 10.0.0.1,53",
        "add a 10.0.0.1,udplite:9",
        "create b hash:ip,port family inet6",
        "add b fd00::1,sctp:9",
        "add b ::ffff:10.0.0.1,udp:53",
        "",
      ].join("\n"),
    );
    expect(e).toMatchObject({ members: 5 });
  });

  it("leaves to the tool what it does not cover, nothing encoded", () => {
    const cases: [string, string][] = [
      ["create s hash:ip family inet\n", 'line 1 ("create s hash:ip family inet"): type hash:ip'],
      [
        "create s hash:net timeout 60\n",
        'line 1 ("create s hash:net timeout 60"): option timeout 60',
      ],
      ["create s hash:net\nadd s 10.0.0.0/8 nomatch\n", "options after the member"],
      ["create s hash:net\nadd s 10.0.0.1-10.0.0.9\n", '"10.0.0.1-10.0.0.9" is not an IP address'],
      ["create s hash:net\nadd s example.com\n", '"example.com" is not an IP address'],
      ["create s hash:ip,port\nadd s 10.0.0.1,tcp:http\n", 'port "http" is not a number'],
      ["create s hash:ip,port\nadd s 10.0.0.1,icmp:ping\n", "protocol icmp"],
      ["create s hash:ip,port\nadd s 10.0.0.0/24,tcp:80\n", "is not an IP address"],
      ["add other 10.0.0.1\n", "set other is not created earlier in the text"],
      ["rename a b\n", "command rename not covered"],
    ];
    for (const [text, why] of cases) {
      const e = encode(text);
      expect("uncovered" in e ? e.uncovered : "covered").toContain(why);
    }
    expect(encode("create s hash:net\n", () => "no revision")).toEqual({
      uncovered: 'line 1 ("create s hash:net"): no revision',
    });
  });

  it("refuses a member nobody can write by line, set and member", () => {
    const cases: [string, string][] = [
      [
        "create s hash:net family inet\nadd s 10.0.0.0/8\nadd s fd00::/64\n",
        'error in line 3 ("add s fd00::/64"): member fd00::/64 of set s: an IPv6 address in a set of family inet; nothing applied',
      ],
      [
        "create s hash:net family inet6\nadd s 10.0.0.1\n",
        "an IPv4 address in a set of family inet6",
      ],
      ["create s hash:net\nadd s 10.0.0.0/33\n", "the prefix length is not 1..32"],
      ["create s hash:net\nadd s 10.0.0.0/0\n", "the prefix length is not 1..32"],
      ["create s hash:net family inet6\nadd s fd00::/129\n", "the prefix length is not 1..128"],
      [
        "create s hash:ip,port family inet\nadd s fd00::1,tcp:80\n",
        "an IPv6 address in a set of family inet",
      ],
    ];
    for (const [text, message] of cases) expect(() => encode(text)).toThrow(message);
  });

  it("lineOf() finds a line's text", () => {
    expect(lineOf("a\n b \nc", 2)).toBe("b");
    expect(lineOf("a\nb", 3)).toBe("");
  });
});
