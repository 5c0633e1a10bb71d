// The full pass's sets written over netlink (ipset_restore.ts) against the real kernel, beside
// `ipset restore -exist` of the same text in a second namespace of this run: the sets read back
// (`ipset save`, `ipset list -t`) the same for every set type the agent writes (hash:net IPv4
// and IPv6, hash:ip,port IPv4 and IPv6), a set that exists with stray members replaced (the
// planner's temporary set and swap), a set larger than one send; a member nobody can write
// (the other family) refused by line, set and member with nothing applied; a member the kernel
// refuses (a full set) named by its line, and nothing after it sent; text it does not cover left
// to the tool untouched; and the full pass itself, with and without OCELOT_IPSET_NETLINK=0.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDataplane, spawnRunner } from "../../src/felix/apply.js";
import { renderDataplane } from "../../src/felix/dataplane.js";
import { IpsetSocket } from "../../src/felix/ipset_netlink.js";
import { restoreIpsetsOverNetlink } from "../../src/felix/ipset_restore.js";
import { type IpsetSpec, parseIpsetSave, planIpsets } from "../../src/felix/iptables.js";
import { MemoryFib } from "../../src/fib/memory_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";
import { webInput, webPod, webPolicy } from "./model.js";

const skip = skipWithReason(
  "felix ipset restore over netlink (netns)",
  netnsUnavailableReason() ?? addonUnavailableReason(),
);
const LIMIT_MS = 60_000;

/** `ipset save`, its lines sorted (the kernel lists a hash in its own order), no initval. */
function saved(ns: Netns): string[] {
  return ns
    .exec("ipset", "save")
    .replace(/ initval 0x[0-9a-f]+/g, "")
    .split("\n")
    .filter((l) => l !== "")
    .sort();
}

/** `ipset list -t` (type, revision, header, entries, references), without initval and memory size. */
function headers(ns: Netns): string {
  return ns
    .exec("ipset", "list", "-t")
    .replace(/ initval 0x[0-9a-f]+/g, "")
    .replace(/^Size in memory: .*\n/gm, "");
}

async function toolRestore(ns: Netns, text: string): Promise<{ code: number; stderr: string }> {
  return spawnRunner(ns.name, "ipset", ["restore", "-exist"], text);
}

const big = Array.from({ length: 6000 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`).sort();

/** The sets of every type the agent writes. */
const desired: IpsetSpec[] = [
  { name: "ocl-s-net4", type: "hash:net", family: "inet", members: ["10.0.0.0/8", "192.0.2.7/32"] },
  {
    name: "ocl6-s-net6",
    type: "hash:net",
    family: "inet6",
    members: ["fd00::/64", "fd00:1::1/128"],
  },
  {
    name: "ocl-v-ipport4",
    type: "hash:ip,port",
    family: "inet",
    members: ["10.96.0.10,sctp:9", "10.96.0.10,tcp:443", "10.96.0.10,udp:53"],
  },
  {
    name: "ocl6-v-ipport6",
    type: "hash:ip,port",
    family: "inet6",
    members: ["fd00::10,tcp:80", "fd00::10,udp:53"],
  },
  { name: "ocl-s-big", type: "hash:net", family: "inet", members: big },
  { name: "ocl-s-same", type: "hash:net", family: "inet", members: ["198.51.100.0/24"] },
];

describe.skipIf(skip)("the full pass's sets over netlink", () => {
  let viaNetlink: Netns;
  let viaTool: Netns;

  beforeAll(() => {
    viaNetlink = Netns.create("fxnl");
    viaTool = Netns.create("fxtool");
  });

  afterAll(() => {
    viaNetlink?.destroy();
    viaTool?.destroy();
  });

  it(
    "reads back as `ipset restore` of the same text: every set type, a set replaced, a large set",
    async () => {
      for (const ns of [viaNetlink, viaTool]) {
        ns.exec("ipset", "destroy");
        // A set of ours with stray members and one wanted, one already right, someone else's.
        ns.exec("ipset", "create", "ocl-s-net4", "hash:net", "family", "inet");
        ns.exec("ipset", "add", "ocl-s-net4", "10.0.0.0/8");
        ns.exec("ipset", "add", "ocl-s-net4", "203.0.113.66");
        ns.exec("ipset", "add", "ocl-s-net4", "172.16.0.0/12");
        ns.exec("ipset", "create", "ocl-s-same", "hash:net", "family", "inet");
        ns.exec("ipset", "add", "ocl-s-same", "198.51.100.0/24");
        ns.exec("ipset", "create", "foreign", "hash:ip");
        ns.exec("ipset", "add", "foreign", "192.0.2.1");
      }
      const plan = planIpsets(desired, parseIpsetSave(viaNetlink.exec("ipset", "save")));
      const text = plan.payload as string;
      expect(text).toContain("swap ocl-tmp-s-net4 ocl-s-net4");
      expect(text).not.toContain("ocl-s-same");
      const sock = new IpsetSocket(`/run/netns/${viaNetlink.name}`);
      let r: Awaited<ReturnType<typeof restoreIpsetsOverNetlink>>;
      try {
        r = await restoreIpsetsOverNetlink(sock, text);
      } finally {
        sock.close();
      }
      // 6,000 members of 32 bytes: more than one message (32 KiB) and more than one send.
      expect(r).toMatchObject({ written: true, members: big.length + 9 });
      if (!r.written) throw new Error("not written");
      expect(r.messages).toBeGreaterThan(desired.length + 3 + 5);
      const tool = await toolRestore(viaTool, text);
      expect(tool).toMatchObject({ code: 0 });

      expect(saved(viaNetlink)).toEqual(saved(viaTool));
      expect(headers(viaNetlink)).toEqual(headers(viaTool));
      // And what was wanted: the stray members gone, no temporary set left, others' set kept.
      const after = saved(viaNetlink);
      expect(after).toContain("add ocl-s-net4 192.0.2.7");
      expect(after).not.toContain("add ocl-s-net4 203.0.113.66");
      expect(after).not.toContain("add ocl-s-net4 172.16.0.0/12");
      expect(after.filter((l) => l.startsWith("add ocl-s-big "))).toHaveLength(big.length);
      expect(after).toContain("add ocl6-v-ipport6 fd00::10,udp:53");
      expect(after).toContain("add ocl-v-ipport4 10.96.0.10,sctp:9");
      expect(after).toContain("add foreign 192.0.2.1");
      expect(after.join("\n")).not.toContain("ocl-tmp-");
      expect(headers(viaNetlink)).toMatch(/Name: ocl-v-ipport4\nType: hash:ip,port\nRevision: \d+/);
    },
    LIMIT_MS,
  );

  it(
    "a member of the other family: refused by line, set and member, nothing applied",
    async () => {
      viaNetlink.exec("ipset", "destroy");
      viaNetlink.exec("ipset", "create", "ocl-s-keep", "hash:net");
      viaNetlink.exec("ipset", "add", "ocl-s-keep", "10.1.0.0/16");
      const before = saved(viaNetlink);
      const text = [
        "create ocl-s-first hash:net family inet",
        "add ocl-s-first 10.2.0.0/16",
        "create ocl-tmp-s-keep hash:net family inet",
        "flush ocl-tmp-s-keep",
        "add ocl-tmp-s-keep 10.3.0.0/16",
        "add ocl-tmp-s-keep fd00::/64",
        "swap ocl-tmp-s-keep ocl-s-keep",
        "destroy ocl-tmp-s-keep",
        "",
      ].join("\n");
      const sock = new IpsetSocket(`/run/netns/${viaNetlink.name}`);
      try {
        await expect(restoreIpsetsOverNetlink(sock, text)).rejects.toThrow(
          'ipset restore over netlink: error in line 6 ("add ocl-tmp-s-keep fd00::/64"): member fd00::/64 of set ocl-tmp-s-keep: an IPv6 address in a set of family inet; nothing applied',
        );
      } finally {
        sock.close();
      }
      expect(saved(viaNetlink)).toEqual(before);
      // The tool refuses the same text too (it has then applied what came before the line).
      viaTool.exec("ipset", "destroy");
      const tool = await toolRestore(viaTool, text);
      expect(tool.code).not.toBe(0);
      expect(tool.stderr).toContain("line 6");
    },
    LIMIT_MS,
  );

  it(
    "a member the kernel refuses: named by its line; nothing after it is sent",
    async () => {
      viaNetlink.exec("ipset", "destroy");
      const members = Array.from({ length: 40 }, (_, i) => `add ocl-s-full 10.${i}.0.0/16`);
      const text = [
        "create ocl-s-full hash:net family inet maxelem 30",
        ...members,
        "create ocl-s-after hash:net family inet",
        "",
      ].join("\n");
      const sock = new IpsetSocket(`/run/netns/${viaNetlink.name}`);
      try {
        await expect(restoreIpsetsOverNetlink(sock, text)).rejects.toThrow(
          'ipset restore over netlink: error in line 32 ("add ocl-s-full 10.30.0.0/16"): Hash is full, cannot add more elements',
        );
        // A create refused (the name taken by another type) is named by its line too.
        await expect(
          restoreIpsetsOverNetlink(sock, "create ocl-s-full hash:ip,port family inet\n"),
        ).rejects.toThrow(
          'error in line 1 ("create ocl-s-full hash:ip,port family inet"): Set cannot be created: set with the same name already exists',
        );
      } finally {
        sock.close();
      }
      const after = saved(viaNetlink);
      expect(after.filter((l) => l.startsWith("add ocl-s-full "))).toHaveLength(30);
      expect(after.join("\n")).not.toContain("ocl-s-after");
      // The tool stops at the same line.
      viaTool.exec("ipset", "destroy");
      const tool = await toolRestore(viaTool, text);
      expect(tool.code).not.toBe(0);
      expect(tool.stderr).toContain("line 32");
      expect(saved(viaTool)).toEqual(after);
    },
    LIMIT_MS,
  );

  it(
    "text it does not cover (an address range) is left to the tool: nothing sent",
    async () => {
      viaNetlink.exec("ipset", "destroy");
      const text = "create ocl-s-range hash:net family inet\nadd ocl-s-range 10.0.0.1-10.0.0.6\n";
      const sock = new IpsetSocket(`/run/netns/${viaNetlink.name}`);
      try {
        expect(await restoreIpsetsOverNetlink(sock, text)).toEqual({
          written: false,
          uncovered:
            'line 2 ("add ocl-s-range 10.0.0.1-10.0.0.6"): "10.0.0.1-10.0.0.6" is not an IP address',
        });
      } finally {
        sock.close();
      }
      expect(saved(viaNetlink)).toEqual([]);
    },
    LIMIT_MS,
  );

  it(
    "the full pass writes its sets over netlink; with OCELOT_IPSET_NETLINK=0 by the tool, the same",
    async () => {
      const eps = [webPod(0, "db", "oclnl"), webPod(2, "api", "oclnl")];
      const state = renderDataplane(webInput(eps, [webPolicy(`role == "api"`)]));
      const pass = async (ns: Netns) => {
        ns.exec("ipset", "destroy");
        const spawned: string[] = [];
        const run: typeof spawnRunner = (netns, cmd, args, inp) => {
          spawned.push(`${cmd} ${args[0] ?? ""}`);
          return spawnRunner(netns, cmd, args, inp);
        };
        const r = await applyDataplane(state, {
          netns: ns.name,
          fib: new MemoryFib([202]),
          run,
          direct: true,
        });
        return { spawned, changes: r.changes };
      };
      const ours = await pass(viaNetlink);
      const was = process.env.OCELOT_IPSET_NETLINK;
      process.env.OCELOT_IPSET_NETLINK = "0";
      let tools: Awaited<ReturnType<typeof pass>>;
      try {
        tools = await pass(viaTool);
      } finally {
        if (was === undefined) delete process.env.OCELOT_IPSET_NETLINK;
        else process.env.OCELOT_IPSET_NETLINK = was;
      }
      expect(ours.spawned).not.toContain("ipset restore");
      expect(tools.spawned).toContain("ipset restore");
      expect(ours.changes.filter((c) => c.startsWith("ipset ")).length).toBeGreaterThan(1);
      expect(ours.changes).toEqual(tools.changes);
      expect(saved(viaNetlink)).toEqual(saved(viaTool));
      expect(headers(viaNetlink)).toEqual(headers(viaTool));
    },
    LIMIT_MS,
  );
});
