// Pure tests of the incremental path's direct writes: the ipset ADD/DEL message layout
// (<linux/netfilter/ipset/ip_set.h>, as the `ipset` tool sends it), the PID read from an
// NFT_MSG_NEWGEN event (how a long-lived iptables-nft-restore's commit is known done), and the
// planner's member changes (adds before deletes, none when a set is created or rebuilt). The
// kernel's side: test/felix/apply_direct.netns.test.ts.
import { describe, expect, it } from "vitest";
import { renderDataplane } from "../../src/felix/dataplane.js";
import { writeIpsetOp } from "../../src/felix/ipset_netlink.js";
import { newgenPid } from "../../src/felix/iptables_session.js";
import { fromGlobalNetworkPolicy, type PolicyEndpoint } from "../../src/felix/policy.js";
import { planIncremental, writtenOf } from "../../src/felix/written.js";
import { MessageWriter } from "../../src/fib/rtnetlink.js";
import { webInput, webPod, webPolicy } from "./model.js";

describe("writeIpsetOp()", () => {
  it("lays out IPSET_CMD_ADD of a hash:net member as the ipset tool does", () => {
    const w = new MessageWriter(256);
    writeIpsetOp(w, 7, { op: "add", set: "ocl-s-x", member: "10.1.2.0/24" });
    const b = w.buf.subarray(0, w.len);
    expect(b.readUInt32LE(0)).toBe(b.length);
    expect(b.readUInt16LE(4)).toBe((6 << 8) | 9); // NFNL_SUBSYS_IPSET, IPSET_CMD_ADD
    expect(b.readUInt16LE(6)).toBe(0x1 | 0x4); // REQUEST | ACK, no EXCL: `-exist`
    expect(b.readUInt32LE(8)).toBe(7);
    expect([...b.subarray(16, 20)]).toEqual([2, 0, 0, 0]); // nfgenmsg: AF_INET, v0, res_id 0
    // IPSET_ATTR_PROTOCOL 6, then IPSET_ATTR_SETNAME "ocl-s-x\0".
    expect([...b.subarray(20, 25)]).toEqual([5, 0, 1, 0, 6]);
    expect(b.readUInt16LE(28)).toBe(12);
    expect(b.readUInt16LE(30)).toBe(2);
    expect(b.toString("latin1", 32, 40)).toBe("ocl-s-x\0");
    // IPSET_ATTR_DATA (nested) { IPSET_ATTR_IP (nested) { IPV4 (net order) 10.1.2.0 }, CIDR 24 }.
    expect(b.readUInt16LE(42)).toBe(0x8000 | 7);
    expect(b.readUInt16LE(46)).toBe(0x8000 | 1);
    expect(b.readUInt16LE(50)).toBe(0x4000 | 1);
    expect([...b.subarray(52, 56)]).toEqual([10, 1, 2, 0]);
    expect([...b.subarray(56, 61)]).toEqual([5, 0, 3, 0, 24]);
    expect(b.readUInt16LE(40)).toBe(b.length - 40);
  });

  it("takes an IPv6 member and an address without a length; refuses what no set holds", () => {
    const w = new MessageWriter(256);
    writeIpsetOp(w, 1, { op: "del", set: "ocl6-s", member: "fd00::1" });
    expect(w.buf.readUInt16LE(4)).toBe((6 << 8) | 10); // IPSET_CMD_DEL
    const b = w.buf.subarray(0, w.len);
    // IPADDR_IPV6 (net order) then CIDR 128.
    const at = b.indexOf(Buffer.from([20, 0, 0x02, 0x40]));
    expect(at).toBeGreaterThan(0);
    expect(b[at + 4]).toBe(0xfd);
    expect(b[b.length - 4]).toBe(128);
    expect(() => writeIpsetOp(w, 2, { op: "add", set: "s", member: "10.0.0.0/33" })).toThrow(
      /"10.0.0.0\/33": prefix length/,
    );
    expect(() => writeIpsetOp(w, 2, { op: "add", set: "s", member: "pod-1" })).toThrow(
      /"pod-1" is not a CIDR/,
    );
    expect(() => writeIpsetOp(w, 2, { op: "add", set: "x".repeat(32), member: "1.2.3.4" })).toThrow(
      /ipset name/,
    );
  });
});

describe("newgenPid()", () => {
  it("reads NFTA_GEN_PROC_PID (big-endian) after the nfgenmsg header", () => {
    // nfgenmsg, NFTA_GEN_ID 0x1d, NFTA_GEN_PROC_PID 21783, NFTA_GEN_PROC_NAME "iptables-nft".
    const payload = Buffer.from(
      "0000001d080001000000001d08000200000055171100030069707461626c65732d6e667400000000",
      "hex",
    );
    expect(newgenPid(payload, 0, payload.length)).toBe(21783);
    expect(newgenPid(payload.subarray(0, 12), 0, 12)).toBeUndefined();
  });
});

describe("planIncremental(): ipset member changes", () => {
  const ep = (n: number, role: string) => webPod(n, role);
  const policy = webPolicy(`role == "api"`);
  const other = fromGlobalNetworkPolicy({
    metadata: { name: "cache" },
    spec: {
      selector: `app == "web"`,
      types: ["Ingress"],
      ingress: [{ action: "Allow", source: { selector: `role == "cache"` } }],
    },
  });
  const state = (eps: (PolicyEndpoint & { iface: string })[], policies = [policy]) =>
    renderDataplane(webInput(eps, policies));

  it("moves a pod between two sets as an add, then a delete; a new set has none", () => {
    const before = state([ep(1, "db"), ep(2, "api"), ep(3, "api")]);
    const written = writtenOf(
      before,
      new Map([
        ["ocl1", 1],
        ["ocl2", 2],
        ["ocl3", 3],
      ]),
    );
    const plan = planIncremental(written, state([ep(1, "db"), ep(2, "db"), ep(3, "api")]));
    expect(plan.full).toBeUndefined();
    expect(plan.ipsetOps?.map((o) => `${o.op} ${o.member}`)).toEqual([
      "add 10.244.1.2/32",
      "del 10.244.1.2/32",
    ]);
    const [add, del] = plan.ipsetOps ?? [];
    expect(add?.set).not.toBe(del?.set);
    // The restore payload says the same.
    expect(plan.ipsets).toContain(`add ${add?.set} 10.244.1.2/32`);
    expect(plan.ipsets).toContain(`del ${del?.set} 10.244.1.2/32`);
    // A policy matching a new role: its set is created, which only the tool does.
    const created = planIncremental(
      written,
      state([ep(1, "db"), ep(2, "api"), ep(3, "cache")], [policy, other]),
    );
    expect(created.ipsets).toMatch(/^create /m);
    expect(created.ipsetOps).toBeUndefined();
  });
});
