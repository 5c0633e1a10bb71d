// The incremental path's direct writes against a real kernel, in a namespace of this run:
// ipset members over netlink (with `ipset restore -exist` semantics), an interface read over
// rtnetlink, sysctls written by a thread inside the namespace, a long-lived
// iptables-nft-restore whose commits are confirmed by the kernel's NEWGEN event (and whose
// failure is reported with the tool's words); and IncrementalApplier using them by default:
// a new pod and a label change are in force with no ipset/ip/sysctl process, and a long-lived
// commit that fails, or a member add the kernel refuses (drift the plan did not know), falls back
// to a full pass that repairs it; the full pass lists the sets' headers and nf_tables' tables
// over netlink and reads members (`ipset save`) only when a set it wants exists, and rules
// (`iptables-nft-save`) only when a table exists, still repairing a set's members.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDataplane, IncrementalApplier, spawnRunner } from "../../src/felix/apply.js";
import { DirectKernel } from "../../src/felix/apply_direct.js";
import { type DataplaneInput, renderDataplane } from "../../src/felix/dataplane.js";
import { IpsetSocket } from "../../src/felix/ipset_netlink.js";
import { RestoreSession } from "../../src/felix/iptables_session.js";
import type { PolicyEndpoint } from "../../src/felix/policy.js";
import { ifaceSysctls } from "../../src/felix/workload.js";
import { MemoryFib } from "../../src/fib/memory_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";
import { webInput, webPod, webPolicy } from "./model.js";

const skip = skipWithReason(
  "felix direct writes (netns)",
  netnsUnavailableReason() ?? addonUnavailableReason(),
);
const LIMIT_MS = 30_000;

describe.skipIf(skip)("direct writes in a namespace", () => {
  let ns: Netns;
  const sessions: RestoreSession[] = [];

  beforeAll(() => {
    ns = Netns.create("fxdir");
    ns.exec("ipset", "create", "ocl-t4", "hash:net", "family", "inet");
    ns.exec("ipset", "create", "ocl-t6", "hash:net", "family", "inet6");
    ns.ip(
      "link",
      "add",
      "ocldir0",
      "address",
      "ee:ee:ee:ee:ee:ee",
      "type",
      "veth",
      "peer",
      "name",
      "ocldirp",
    );
    ns.ip("link", "set", "ocldir0", "up");
  });

  afterAll(() => {
    for (const s of sessions) s.stop();
    ns?.destroy();
  });

  it("adds and deletes ipset members over netlink, as `ipset restore -exist`", () => {
    const s = new IpsetSocket(`/run/netns/${ns.name}`);
    try {
      s.apply([
        { op: "add", set: "ocl-t4", member: "10.1.2.3/32" },
        { op: "add", set: "ocl-t4", member: "10.9.0.0/16" },
        { op: "add", set: "ocl-t4", member: "10.9.0.0/16" }, // present: no error
        { op: "add", set: "ocl-t6", member: "fd00::5/128" },
        { op: "del", set: "ocl-t4", member: "10.1.2.3/32" },
        { op: "del", set: "ocl-t4", member: "10.77.0.1/32" }, // absent: no error
      ]);
      expect(() => s.apply([{ op: "add", set: "ocl-none", member: "10.0.0.1/32" }])).toThrow(
        "ipset add ocl-none 10.0.0.1/32 refused: The set with the given name does not exist",
      );
    } finally {
      s.close();
    }
    const save = ns.exec("ipset", "save");
    expect(save.split("\n").filter((l) => l.startsWith("add "))).toEqual([
      "add ocl-t4 10.9.0.0/16",
      "add ocl-t6 fd00::5",
    ]);
  });

  it("reads an interface over rtnetlink and writes its sysctls inside the namespace", async () => {
    const d = new DirectKernel(ns.name);
    try {
      expect(d.link("ocldir0")).toEqual({
        ifname: "ocldir0",
        address: "ee:ee:ee:ee:ee:ee",
        flags: ["UP"],
      });
      expect(d.link("oclnone0")).toBeUndefined();
      await d.writeSysctls([{ key: "net.ipv4.conf.ocldir0.proxy_arp", value: "1" }]);
      await expect(
        d.writeSysctls([{ key: "net.ipv4.conf.oclnone0.proxy_arp", value: "1" }]),
      ).rejects.toThrow(/oclnone0\/proxy_arp/);
    } finally {
      d.close();
    }
    expect(ns.exec("sysctl", "-n", "net.ipv4.conf.ocldir0.proxy_arp").trim()).toBe("1");
  });

  it("writes interfaces' IPv4 sysctls over rtnetlink: fresh and existing, many a send", async () => {
    // 300 veths (301 messages: two sends), created at once; ocldir0 (the suite's) already
    // has values, set apart from what is written below.
    const names = Array.from({ length: 300 }, (_, i) => `oclsn${i}`);
    const ipBatch = (lines: string[]) => {
      const dir = mkdtempSync(join(tmpdir(), "oclsysctl-"));
      try {
        writeFileSync(join(dir, "batch"), `${lines.join("\n")}\n`);
        ns.ip("-force", "-batch", join(dir, "batch"));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    };
    ipBatch(names.map((n, i) => `link add ${n} type veth peer name oclsp${i}`));
    const old = "net.ipv4.conf.ocldir0";
    ns.exec("sysctl", "-qw", `${old}.proxy_arp=0`, `${old}.rp_filter=2`, `${old}.route_localnet=0`);
    ns.exec("sysctl", "-qw", "net.ipv4.neigh.ocldir0.proxy_delay=50");
    const want = [
      { key: "net.ipv4.ip_forward", value: "1" },
      ...ifaceSysctls("ocldir0", false, { rpFilter: 0 }),
      ...names.flatMap((n, i) => ifaceSysctls(n, false, { rpFilter: i % 2 === 0 ? 0 : 1 })),
    ];
    const fresh = "net.ipv4.conf.oclsn7";
    expect(ns.exec("sysctl", "-n", `${fresh}.proxy_arp`, `${fresh}.route_localnet`)).toBe("0\n0\n");
    expect(ns.exec("sysctl", "-n", "net.ipv4.neigh.oclsn7.proxy_delay").trim()).not.toBe("0");
    const d = new DirectKernel(ns.name);
    try {
      for (const n of ["ocldir0", ...names]) expect(d.link(n)).toBeDefined();
      await d.writeSysctls(want);
      // Read back through /proc/sys, key by key.
      const keys = want.map((s) => s.key);
      const have = ns
        .exec("sysctl", ...keys)
        .trim()
        .split("\n");
      expect(have).toEqual(want.map((s) => `${s.key} = ${s.value}`));
      // Over netlink (not files): an interface read in this pass and gone since is named by
      // its message's keys, among 255 others of its send.
      ns.ip("link", "del", "oclsn100");
      const conf = want.filter((s) => s.key.startsWith("net.ipv4.conf."));
      await expect(d.writeSysctls(conf)).rejects.toThrow(
        /Writing sysctls net\.ipv4\.conf\.oclsn100\.forwarding, .*oclsn100\.proxy_arp in \S+ over netlink: /,
      );
    } finally {
      d.close();
      ipBatch(names.filter((n) => n !== "oclsn100").map((n) => `link del ${n}`));
    }
  });

  it("commits blocks through one long-lived iptables-nft-restore; a failed one says why", async () => {
    const s = new RestoreSession(ns.name, "iptables-nft-restore", LIMIT_MS);
    sessions.push(s);
    await s.commit("*filter\n:ocl-dt - [0:0]\n-A ocl-dt -j ACCEPT\nCOMMIT\n");
    await s.commit("*filter\n-I ocl-dt 1 -s 10.0.0.1/32 -j DROP\nCOMMIT\n");
    expect(s.running).toBe(true);
    expect(ns.exec("iptables-nft-save", "-t", "filter")).toContain(
      "-A ocl-dt -s 10.0.0.1/32 -j DROP\n-A ocl-dt -j ACCEPT",
    );
    await expect(s.commit("*filter\n-A ocl-missing -j ACCEPT\nCOMMIT\n")).rejects.toThrow(
      /iptables-nft-restore \(long-lived\) exited \(1\) before its commit: .*line 2 of its block failed/,
    );
    expect(s.running).toBe(false);
    // The next commit starts a new tool.
    await s.commit("*filter\n-D ocl-dt 1\nCOMMIT\n");
    expect(ns.exec("iptables-nft-save", "-t", "filter")).not.toContain("10.0.0.1");
  });

  it(
    "full pass: no members read where none of its sets exists; a set with stray and missing members repaired",
    async () => {
      const fresh = Netns.create("fxset");
      try {
        fresh.ip("link", "add", "oclset0", "type", "veth", "peer", "name", "oclsetp0");
        fresh.ip("link", "add", "oclset2", "type", "veth", "peer", "name", "oclsetp2");
        // Someone else's set, and a set of ours no longer wanted.
        fresh.exec("ipset", "create", "foreign-set", "hash:ip");
        fresh.exec("ipset", "create", "ocl-gone", "hash:net");
        const eps = [webPod(0, "db", "oclset"), webPod(2, "api", "oclset")];
        const state = renderDataplane(webInput(eps, [webPolicy(`role == "api"`)]));
        const spawned: string[] = [];
        const run: typeof spawnRunner = (netns, cmd, args, inp) => {
          spawned.push(`${cmd} ${args[0] ?? ""}`);
          return spawnRunner(netns, cmd, args, inp);
        };
        const opts = { netns: fresh.name, fib: new MemoryFib([202]), run, direct: true };
        const headers = new IpsetSocket(`/run/netns/${fresh.name}`);
        try {
          expect(headers.headers()).toEqual([
            { name: "foreign-set", type: "hash:ip", family: "inet" },
            { name: "ocl-gone", type: "hash:net", family: "inet" },
          ]);
        } finally {
          headers.close();
        }
        const first = await applyDataplane(state, opts);
        // No set of ours existed: nothing read but their names (over netlink); no nf_tables
        // table either: no iptables-nft-save.
        expect(spawned).not.toContain("ipset save");
        expect(spawned.filter((c) => c.startsWith("iptables-nft-save"))).toEqual([]);
        // The sets written over netlink (ipset_restore.ts), not by `ipset restore`.
        expect(spawned).not.toContain("ipset restore");
        expect(first.changes).toContain("ipset ocl-gone stale, destroyed");
        const save = () => fresh.exec("ipset", "save");
        const dbSet = save()
          .split("\n")
          .find((l) => l.endsWith(" 10.244.1.0"))
          ?.split(" ")[1] as string;
        expect(dbSet).toMatch(/^ocl-s-/);
        expect(save()).toContain("create foreign-set hash:ip");
        expect(save()).not.toContain("ocl-gone");
        // Drift: a stray member added to our set, a wanted one removed from another.
        fresh.exec("ipset", "add", dbSet, "192.0.2.66");
        fresh.exec("ipset", "del", "ocl-masq-ipam-pools", "10.244.0.0/16");
        spawned.length = 0;
        const repair = await applyDataplane(state, opts);
        expect(spawned).toContain("ipset save");
        expect(spawned).not.toContain("ipset restore");
        expect(spawned.filter((c) => c.startsWith("iptables-nft-save"))).toHaveLength(1);
        expect(repair.changes).toEqual(
          expect.arrayContaining([
            `ipset ${dbSet} members differ`,
            "ipset ocl-masq-ipam-pools members differ",
          ]),
        );
        const after = save();
        expect(after).not.toContain("192.0.2.66");
        expect(after).toContain(`add ${dbSet} 10.244.1.0\n`);
        expect(after).toContain("add ocl-masq-ipam-pools 10.244.0.0/16\n");
        expect(after).not.toContain("ocl-tmp-");
        // Converged: the next pass changes no set.
        const quiet = await applyDataplane(state, opts);
        expect(quiet.changes.filter((c) => c.startsWith("ipset"))).toEqual([]);
      } finally {
        fresh.destroy();
      }
    },
    LIMIT_MS,
  );

  it(
    "IncrementalApplier: a pod and a label change in force with no process but the rule writer",
    async () => {
      const ep = (n: number, role: string) => webPod(n, role, "ocldir");
      const policy = webPolicy(`role == "api"`);
      const input = (eps: (PolicyEndpoint & { iface: string })[]): DataplaneInput =>
        webInput(eps, [policy]);
      const spawned: string[] = [];
      // Every process the applier starts goes through `run` (the long-lived tool excepted).
      const run: typeof spawnRunner = (netns, cmd, args, inp) => {
        spawned.push(`${cmd} ${args[0] ?? ""}`);
        return spawnRunner(netns, cmd, args, inp);
      };
      const applier = new IncrementalApplier();
      const fib = new MemoryFib([202]);
      const opts = { netns: ns.name, fib, run, direct: true };
      try {
        const eps = [ep(0, "db"), ep(2, "api")];
        for (const n of [1, 2, 4]) {
          ns.ip(
            "link",
            "add",
            `ocldir${n}`,
            "address",
            "ee:ee:ee:ee:ee:ee",
            "type",
            "veth",
            "peer",
            "name",
            `ocldirp${n}`,
          );
          ns.ip("link", "set", `ocldir${n}`, "up");
        }
        expect((await applier.apply(renderDataplane(input(eps)), opts)).mode).toBe("full");
        spawned.length = 0;
        // +1 pod, then one label change.
        eps.push(ep(4, "api"));
        const add = await applier.apply(renderDataplane(input(eps)), opts);
        expect(add.mode).toBe("incremental");
        eps[1] = ep(2, "db");
        const change = await applier.apply(renderDataplane(input(eps)), opts);
        expect(change.mode).toBe("incremental");
        expect(change.changes.some((c) => c.includes("members differ"))).toBe(true);
        expect(spawned).toEqual([]);
        const filter = ns.exec("iptables-nft-save", "-t", "filter");
        expect(filter).toContain("-A ocl-to-wl-dispatch -o ocldir4 -g ocl-tw-ocldir4");
        expect(ns.exec("sysctl", "-n", "net.ipv4.conf.ocldir4.proxy_arp").trim()).toBe("1");
        const members = ns
          .exec("ipset", "save")
          .split("\n")
          .filter((l) => l.startsWith("add ocl-s-"));
        expect(members.filter((l) => l.endsWith(" 10.244.1.2"))).toHaveLength(1);
        expect(members.filter((l) => l.endsWith(" 10.244.1.4"))).toHaveLength(1);
        // Drift the plan does not know: the dispatch chain emptied by someone else. The next
        // pod's rule goes in by position, which the long-lived tool refuses: a full pass repairs.
        ns.exec("iptables-nft", "-t", "filter", "-F", "ocl-to-wl-dispatch");
        eps.push(ep(1, "api"));
        const after = await applier.apply(renderDataplane(input(eps)), opts);
        expect(after.mode).toBe("full");
        expect(after.changes[0]).toMatch(
          /^incremental write failed \(iptables-nft-restore \(long-lived\) exited \(\d+\) before its commit: .*line \d+ of its block failed: Index of insertion too big/,
        );
        const repaired = ns.exec("iptables-nft-save", "-t", "filter");
        for (const n of [0, 1, 2, 4])
          expect(repaired).toContain(`-A ocl-to-wl-dispatch -o ocldir${n} -g ocl-tw-ocldir${n}`);
        // A set destroyed by someone else: the member add over netlink is refused by name,
        // and the full pass puts the set back with its members.
        const dbSet = ns
          .exec("ipset", "save")
          .split("\n")
          .find((l) => l.endsWith(" 10.244.1.0"))
          ?.split(" ")[1] as string;
        expect(dbSet).toMatch(/^ocl-s-/);
        // (A set in use cannot go: the rules matching it go first.)
        const users = ns
          .exec("iptables-nft-save", "-t", "filter")
          .split("\n")
          .filter((l) => l.includes(`--match-set ${dbSet} `))
          .map((l) => l.split(" ")[1] as string);
        expect(users.length).toBeGreaterThan(0);
        for (const c of new Set(users)) ns.exec("iptables-nft", "-t", "filter", "-F", c);
        ns.exec("ipset", "destroy", dbSet);
        eps[2] = ep(4, "db");
        const again = await applier.apply(renderDataplane(input(eps)), opts);
        expect(again.mode).toBe("full");
        expect(again.changes[0]).toBe(
          `incremental write failed (ipset add ${dbSet} 10.244.1.4/32 refused: The set with the given name does not exist): full pass`,
        );
        const sets = ns.exec("ipset", "save");
        for (const n of [0, 2, 4]) expect(sets).toContain(`add ${dbSet} 10.244.1.${n}\n`);
      } finally {
        applier.close();
      }
    },
    LIMIT_MS,
  );
});
