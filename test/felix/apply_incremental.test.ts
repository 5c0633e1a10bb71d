// Pure tests of the agent's incremental path (IncrementalApplier over written.ts's planner)
// against a fake kernel (test/felix/model.ts) and a MemoryFib: after the first full pass, a
// change writes only what it touches (no read-back), and the kernel then holds exactly what a
// full pass on a fresh kernel writes; drift is repaired on the refresh interval and on refresh();
// a write that fails falls back to a full pass at once. The real kernel: the netns tests and
// bench/policy_apply.ts (which checks the rules in force after its incremental passes).
import { describe, expect, it } from "vitest";
import { applyDataplane, IncrementalApplier } from "../../src/felix/apply.js";
import { type DataplaneInput, renderDataplane } from "../../src/felix/dataplane.js";
import type { PolicyEndpoint } from "../../src/felix/policy.js";
import { chainEdit, planIncremental, writtenOf } from "../../src/felix/written.js";
import { MemoryFib } from "../../src/fib/memory_fib.js";
import { FakeKernel, restoreModel, webPod, webPolicy } from "./model.js";

const ep = (n: number, role: string) => webPod(n, role);

const policy = webPolicy(`netset == "a"`);

function input(eps: (PolicyEndpoint & { iface: string })[], nets = ["11.0.0.0/24"]) {
  return {
    workloads: eps.map((e) => ({
      id: e.id,
      hostIface: e.iface,
      ipv4: [(e.addresses[0] as string).split("/")[0] as string],
      ipv6: [],
    })),
    blocks: ["10.244.1.0/26"],
    pools: [{ cidr: "10.244.0.0/16", natOutgoing: true }],
    options: { ipv6: false },
    policy: {
      endpoints: eps,
      policies: [policy],
      networkSets: [{ labels: { netset: "a" }, nets }],
    },
  } satisfies DataplaneInput;
}

function setup(refreshMs = 90_000) {
  const kernel = new FakeKernel();
  const fib = new MemoryFib([202]);
  let clock = 0;
  const applier = new IncrementalApplier({
    refreshMs,
    routeRefreshMs: refreshMs,
    now: () => clock,
  });
  const apply = (i: DataplaneInput) =>
    applier.apply(renderDataplane(i), { netns: "fake", fib, run: kernel.run });
  return {
    kernel,
    fib,
    applier,
    apply,
    tick: (ms: number) => {
      clock += ms;
    },
  };
}

/** What a full pass writes into a fresh kernel with the same links. */
async function fresh(i: DataplaneInput, links: string[]) {
  const kernel = new FakeKernel();
  for (const l of links) kernel.addLink(l);
  const fib = new MemoryFib([202]);
  await applyDataplane(renderDataplane(i), { netns: "fake", fib, run: kernel.run });
  return { kernel, fib };
}

const rulesOf = (k: FakeKernel) =>
  [...k.tables[4].values()].map((t) => ({
    table: t.table,
    chains: [...t.chains.keys()].sort(),
    rules: t.rules.map((r) => `${r.chain} ${r.spec}`).sort(),
  }));
const setsOf = (k: FakeKernel) =>
  [...k.ipsets].map(([n, s]) => `${n} ${[...s.members].sort().join(",")}`).sort();
const routesOf = (f: MemoryFib) =>
  f
    .desired()
    .map((r) => `${r.dst} ${r.nexthops[0]?.dev ?? r.type}`)
    .sort();

async function expectSameAsFresh(k: FakeKernel, fib: MemoryFib, i: DataplaneInput) {
  // The links of the input's pods that exist (a gone pod's link keeps its sysctls).
  const f = await fresh(
    i,
    i.workloads.flatMap((w) => (w.hostIface && k.links.has(w.hostIface) ? [w.hostIface] : [])),
  );
  expect(rulesOf(k)).toEqual(rulesOf(f.kernel));
  expect(setsOf(k)).toEqual(setsOf(f.kernel));
  expect(routesOf(fib)).toEqual(routesOf(f.fib));
  for (const [key, v] of f.kernel.sysctls)
    expect(`${key}=${k.sysctls.get(key)}`).toBe(`${key}=${v}`);
}

describe("IncrementalApplier (fake kernel)", () => {
  it("reads back in full at start, then runs no command at all when nothing changed", async () => {
    const { kernel, apply } = setup();
    const eps = [ep(2, "web"), ep(3, "db")];
    for (const e of eps) kernel.addLink(e.iface);
    const first = await apply(input(eps));
    expect(first.mode).toBe("full");
    expect(first.why).toBe("start");
    expect(kernel.commands.some((c) => c.startsWith("iptables-nft-save"))).toBe(true);
    // At start the sysctls are written, not read first (a refresh reads them: drift test).
    expect(kernel.commands.some((c) => c.startsWith("sysctl -e"))).toBe(false);
    expect(first.changes).toContain("sysctl: 11 written (not read first)");
    const n = kernel.commands.length;
    const second = await apply(input(eps));
    expect(second.mode).toBe("incremental");
    expect(second.changes).toEqual([]);
    expect(kernel.commands.slice(n)).toEqual([]);
  });

  it("+1 pod: checks only its link, writes its sysctls, its chains and the set it joins; no read-back", async () => {
    const { kernel, fib, apply } = setup();
    const eps = [ep(2, "web"), ep(3, "db")];
    for (const e of eps) kernel.addLink(e.iface);
    await apply(input(eps));
    const n = kernel.commands.length;
    const more = [...eps, ep(4, "db")];
    kernel.addLink("ocl4");
    const r = await apply(input(more));
    expect(r.mode).toBe("incremental");
    const cmds = kernel.commands.slice(n);
    expect(cmds.filter((c) => /save|sysctl -e|link show$/.test(c))).toEqual([]);
    // The rules go to their writer first, then the set member; the link is read while they
    // are written.
    expect(cmds.slice(0, 3)).toEqual([
      "iptables-nft-restore --noflush -w 5",
      "ipset restore -exist",
      "ip -j link show dev ocl4",
    ]);
    expect(cmds.filter((c) => c.startsWith("sysctl -qw"))).toHaveLength(1);
    expect(cmds.find((c) => c.startsWith("sysctl -qw"))).toContain(
      "net.ipv4.conf.ocl4.proxy_arp=1",
    );
    expect(cmds.filter((c) => c.startsWith("iptables-nft-restore"))).toHaveLength(1);
    const payload = r.iptables[0]?.payload ?? "";
    // The new pod's chain and the dispatch chain; not the other pods' or the policy's.
    expect(payload).toContain(":ocl-tw-ocl4 - [0:0]");
    // The dispatch chain is edited in place (the pod's rule inserted before the unknown
    // interfaces' drop), not rewritten.
    expect(payload).toMatch(/-I ocl-to-wl-dispatch \d+ -o ocl4 -g ocl-tw-ocl4/);
    expect(payload).not.toContain(":ocl-to-wl-dispatch");
    expect(payload).not.toContain("ocl-tw-ocl2 -");
    // The db role's set gains one member in place: no swap.
    expect(r.ipsets).toMatch(/^add ocl-s-\S+ 10\.244\.1\.4\/32\n$/);
    expect(r.changes).toContain("route 10.244.1.4/32 unicast added");
    await expectSameAsFresh(kernel, fib, input(more));
  });

  it("a label change moves the member between sets with add and del; the chains stay", async () => {
    const { kernel, fib, apply } = setup();
    const eps = [ep(2, "web"), ep(3, "db"), ep(5, "db")];
    for (const e of eps) kernel.addLink(e.iface);
    await apply(input(eps));
    const moved = [eps[0], eps[1], { ...ep(5, "cache") }] as typeof eps;
    const r = await apply(input(moved));
    expect(r.mode).toBe("incremental");
    expect(r.iptables).toEqual([]);
    expect(r.ipsets).toMatch(/^del ocl-s-\S+ 10\.244\.1\.5\/32\n$/);
    await expectSameAsFresh(kernel, fib, input(moved));
  });

  it("a pod gone: its chains deleted, its route removed, the set member dropped", async () => {
    const { kernel, fib, apply } = setup();
    const eps = [ep(2, "web"), ep(3, "db"), ep(6, "web")];
    for (const e of eps) kernel.addLink(e.iface);
    await apply(input(eps));
    const fewer = eps.slice(0, 2);
    const r = await apply(input(fewer));
    expect(r.mode).toBe("incremental");
    expect(r.changes).toContain("iptables-nft filter: chain ocl-tw-ocl6 stale");
    expect(r.changes).toContain("route 10.244.1.6/32 removed");
    expect(kernel.tables[4].get("filter")?.chains.has("ocl-tw-ocl6")).toBe(false);
    await expectSameAsFresh(kernel, fib, input(fewer));
  });

  it("a network set's CIDRs changing wholesale are swapped in; a few added in place", async () => {
    const { kernel, fib, apply } = setup();
    const eps = [ep(2, "web")];
    kernel.addLink("ocl2");
    const many = Array.from({ length: 20 }, (_, i) => `11.0.${i}.0/24`);
    await apply(input(eps, many));
    const other = Array.from({ length: 20 }, (_, i) => `12.0.${i}.0/24`);
    const r = await apply(input(eps, other));
    expect(r.ipsets).toContain("swap ocl-tmp-");
    await expectSameAsFresh(kernel, fib, input(eps, other));
    const r2 = await apply(input(eps, [...other, "13.0.0.0/24"]));
    expect(r2.ipsets).toMatch(/^add ocl-n-|^add ocl-s-/);
    await expectSameAsFresh(kernel, fib, input(eps, [...other, "13.0.0.0/24"]));
  });

  it("a pod whose interface is missing waits; found on a later pass, it is configured then", async () => {
    const { kernel, fib, apply } = setup();
    const eps = [ep(2, "web"), ep(7, "db")];
    kernel.addLink("ocl2");
    const first = await apply(input(eps));
    expect(first.missingIfaces).toEqual(["ocl7"]);
    const again = await apply(input(eps));
    expect(again.mode).toBe("incremental");
    expect(again.missingIfaces).toEqual(["ocl7"]);
    expect(kernel.links.get("ocl7")).toBeUndefined();
    kernel.addLink("ocl7");
    const r = await apply(input(eps));
    expect(r.missingIfaces).toEqual([]);
    expect(kernel.sysctls.get("net.ipv4.conf.ocl7.proxy_arp")).toBe("1");
    expect(kernel.links.get("ocl7")).toEqual({ address: "ee:ee:ee:ee:ee:ee", up: true });
    await expectSameAsFresh(kernel, fib, input(eps));
  });

  it("drift is not seen by incremental passes, and is repaired on the refresh interval and on refresh()", async () => {
    const { kernel, fib, apply, applier, tick } = setup(10_000);
    const eps = [ep(2, "web"), ep(3, "db")];
    for (const e of eps) kernel.addLink(e.iface);
    await apply(input(eps));
    const filter = kernel.tables[4].get("filter");
    if (!filter) throw new Error("no filter table");
    const flush = () => {
      filter.rules = filter.rules.filter((x) => x.chain !== "ocl-tw-ocl2");
      kernel.sysctls.set("net.ipv4.conf.ocl2.proxy_arp", "0");
    };
    flush();
    tick(5_000);
    expect((await apply(input(eps))).mode).toBe("incremental");
    expect(filter.rules.some((x) => x.chain === "ocl-tw-ocl2")).toBe(false);
    tick(5_000);
    const r = await apply(input(eps));
    expect(r.mode).toBe("full");
    expect(r.why).toBe("refresh");
    expect(r.changes).toContain("iptables-nft filter: chain ocl-tw-ocl2 differs");
    expect(r.changes).toContain("sysctl net.ipv4.conf.ocl2.proxy_arp=1 (was 0)");
    await expectSameAsFresh(kernel, fib, input(eps));
    kernel.tables[4].get("filter")?.rules.splice(0);
    applier.refresh("resync");
    const r2 = await apply(input(eps));
    expect(r2.mode).toBe("full");
    expect(r2.why).toBe("resync");
    await expectSameAsFresh(kernel, fib, input(eps));
  });

  it("a write that fails falls back to a full pass at once: nothing is left half-applied", async () => {
    const { kernel, fib, apply } = setup();
    const eps = [ep(2, "web"), ep(3, "db")];
    for (const e of eps) kernel.addLink(e.iface);
    await apply(input(eps));
    const more = [...eps, ep(4, "db")];
    kernel.addLink("ocl4");
    // The ipset write goes through; the iptables write fails.
    kernel.failNext.push(/^iptables-nft-restore/);
    const r = await apply(input(more));
    expect(r.mode).toBe("full");
    expect(r.changes[0]).toMatch(/^incremental write failed \(.*injected failure\): full pass$/);
    await expectSameAsFresh(kernel, fib, input(more));
    // A full pass that fails too is thrown (the daemon retries), and the next pass is full.
    kernel.failNext.push(/^iptables-nft-restore/, /^iptables-nft-save/);
    const fewer = eps.slice(0, 1);
    await expect(apply(input(fewer))).rejects.toThrow(/injected failure/);
    const r3 = await apply(input(fewer));
    expect(r3.mode).toBe("full");
    await expectSameAsFresh(kernel, fib, input(fewer));
  });

  it("a recreated interface (new index in the FIB's link watch) is configured again", async () => {
    const { kernel, fib, apply } = setup();
    const indexes = new Map([
      ["ocl2", 10],
      ["ocl3", 11],
    ]);
    // Seen down by the watch: the kernel is asked (an up link would be taken as found).
    Object.assign(fib, {
      watchedLinks: () => new Map([...indexes].map(([n, index]) => [n, { index, up: false }])),
    });
    const eps = [ep(2, "web"), ep(3, "db")];
    for (const e of eps) kernel.addLink(e.iface);
    await apply(input(eps));
    // The pod is deleted and created again between two passes: a fresh veth, fresh sysctls.
    kernel.addLink("ocl3");
    indexes.set("ocl3", 12);
    const n = kernel.commands.length;
    const r = await apply(input(eps));
    expect(r.mode).toBe("incremental");
    expect(kernel.commands.slice(n)[0]).toBe("ip -j link show dev ocl3");
    expect(kernel.sysctls.get("net.ipv4.conf.ocl3.proxy_arp")).toBe("1");
    const m = kernel.commands.length;
    await apply(input(eps));
    expect(kernel.commands.slice(m)).toEqual([]);
  });
});

describe("IncrementalApplier with a FIB that watches links", () => {
  it("a new pod costs one link query, one sysctl write and the filter writes; nothing read back", async () => {
    const { kernel, fib, apply } = setup();
    const up = new Map<string, { index: number; up: boolean }>();
    Object.assign(fib, { watchedLinks: () => new Map(up) });
    const eps = [ep(2, "web"), ep(3, "db")];
    for (const [i, e] of eps.entries()) {
      kernel.addLink(e.iface);
      up.set(e.iface, { index: 20 + i, up: true });
    }
    await apply(input(eps));
    const more = [...eps, ep(4, "db")];
    kernel.addLink("ocl4");
    // The CNI plugin left it with our MAC, up.
    kernel.links.set("ocl4", { address: "ee:ee:ee:ee:ee:ee", up: true });
    up.set("ocl4", { index: 30, up: true });
    const n = kernel.commands.length;
    await apply(input(more));
    // The link query and sysctl write run beside the set and rule writes (any order).
    expect(
      kernel.commands
        .slice(n)
        .map((c) => c.split(" ").slice(0, 2).join(" "))
        .sort(),
    ).toEqual(["ip -j", "ipset restore", "iptables-nft-restore --noflush", "sysctl -qw"]);
    await expectSameAsFresh(kernel, fib, input(more));
  });
});

describe("planIncremental()", () => {
  it("asks for a full pass when hooks or tables change, never plans them", () => {
    const eps = [ep(2, "web")];
    const before = renderDataplane(input(eps));
    const written = writtenOf(before, new Map([["ocl2", undefined]]));
    // A host endpoint appears: the filter table gains its OUTPUT hook.
    const host = renderDataplane({
      ...input(eps),
      host: { hostEndpoints: [{ name: "h", interfaceName: "eth0", labels: {} }] },
    });
    expect(planIncremental(written, host).full).toMatch(/hooks changed/);
    const same = planIncremental(written, before);
    expect(same.full).toBeUndefined();
    expect(same.iptables).toEqual([]);
    expect(same.ipsets).toBeNull();
    expect(same.checkIfaces).toEqual([]);
  });
});

describe("chainEdit()", () => {
  const apply = (old: string[], edit: string[]) =>
    restoreModel(
      {
        table: "filter",
        chains: new Map([["ocl-x", "-"]]),
        rules: old.map((spec) => ({ chain: "ocl-x", spec })),
      },
      ["*filter", ...edit, "COMMIT"].join("\n"),
    ).rules.map((r) => r.spec);
  const base = Array.from({ length: 40 }, (_, i) => `-o ocl${100 + i} -g ocl-tw-ocl${100 + i}`);

  it("inserts, deletes and replaces a run by position; the result is the new chain", () => {
    const cases: string[][] = [
      [...base.slice(0, 10), "-o oclnew -g x", ...base.slice(10)],
      [...base.slice(0, 10), ...base.slice(11)],
      [...base.slice(0, 10), "-o a -g x", "-o b -g x", ...base.slice(13)],
      ["-o first -g x", ...base],
      [...base, "-o last -g x"],
      base.slice(0, 39),
      base.slice(1),
    ];
    for (const want of cases) {
      const edit = chainEdit("ocl-x", base, want);
      expect(edit, JSON.stringify(want)).toBeDefined();
      expect(apply(base, edit ?? [])).toEqual(want);
    }
    expect(
      chainEdit("ocl-x", base, [...base.slice(0, 10), "-o c -g x", ...base.slice(10)]),
    ).toEqual(["-I ocl-x 11 -o c -g x"]);
  });

  it("leaves a chain that changes much to be rewritten", () => {
    expect(chainEdit("ocl-x", base, base.slice(0, 20).reverse())).toBeUndefined();
  });
});

describe("IncrementalApplier: host-side addresses (local workload peering)", () => {
  const PEERING = "169.254.0.179/32";
  const withAddrs = (
    eps: (PolicyEndpoint & { iface: string })[],
    owned: Record<string, string[]>,
  ) => {
    const i = input(eps);
    return {
      ...i,
      workloads: i.workloads.map((w) =>
        owned[w.hostIface] !== undefined ? { ...w, hostAddresses: owned[w.hostIface] } : w,
      ),
    } satisfies DataplaneInput;
  };

  it("puts the address on at start, takes it off and back incrementally, re-reads the routes after the last IPv4 address went", async () => {
    const { kernel, fib, apply } = setup();
    const eps = [ep(2, "web"), ep(3, "db")];
    for (const e of eps) kernel.addLink(e.iface);
    const [a, b] = eps.map((e) => e.iface) as [string, string];
    const first = await apply(withAddrs(eps, { [a]: [PEERING], [b]: [] }));
    expect(first.mode).toBe("full");
    expect(kernel.addrs.get(a)).toEqual([PEERING]);
    expect(kernel.addrs.get(b) ?? []).toEqual([]);
    expect(first.changes).toContain(`address ${PEERING} added to ${a}`);
    // Not selected any more: removed in an incremental pass, which then reads its routes back
    // (the kernel flushes an interface's IPv4 routes with its last IPv4 address).
    let resyncs = 0;
    (fib as MemoryFib & { resync: () => Promise<void> }).resync = async () => {
      resyncs++;
    };
    const off = await apply(withAddrs(eps, { [a]: [], [b]: [] }));
    expect(off.mode).toBe("incremental");
    expect(off.changes).toContain(`address ${PEERING} removed from ${a}`);
    expect(kernel.addrs.get(a)).toEqual([]);
    expect(resyncs).toBe(1);
    const n = kernel.commands.length;
    const back = await apply(withAddrs(eps, { [a]: [PEERING], [b]: [] }));
    expect(back.changes).toContain(`address ${PEERING} added to ${a}`);
    expect(kernel.addrs.get(a)).toEqual([PEERING]);
    // Only the changed interface's addresses were read.
    expect(kernel.commands.slice(n).filter((c) => c.includes("addr show"))).toEqual([
      `ip -j addr show dev ${a}`,
    ]);
    // Local peering switched off entirely: the interface that had the address loses it.
    const gone = await apply(input(eps));
    expect(gone.changes).toContain(`address ${PEERING} removed from ${a}`);
    expect(kernel.addrs.get(a)).toEqual([]);
  });

  it("never reads interface addresses while the agent owns none", async () => {
    const { kernel, apply } = setup();
    const eps = [ep(2, "web")];
    for (const e of eps) kernel.addLink(e.iface);
    await apply(input(eps));
    await apply(input([...eps, ep(3, "db")]));
    expect(
      kernel.commands.filter((c) => c.includes("addr show") && !c.startsWith("ip -d")),
    ).toEqual([]);
  });
});

describe("IncrementalApplier: the full pass's route dump (KernelFib.resync)", () => {
  /** A MemoryFib that says how fresh its view is and counts the dumps asked of it. */
  function freshFib(fresh: () => number) {
    const s = setup();
    let dumps = 0;
    const f = s.fib as MemoryFib & { resync: () => Promise<void>; freshForMs: () => number };
    f.resync = async () => {
      dumps++;
    };
    f.freshForMs = fresh;
    return { ...s, dumps: () => dumps };
  }

  it("skips the dump at start and on the refresh when the FIB dumped within the route refresh interval", async () => {
    let fresh = 5;
    const { kernel, apply, applier, tick, dumps } = freshFib(() => fresh);
    const eps = [ep(2, "web")];
    for (const e of eps) kernel.addLink(e.iface);
    const first = await apply(input(eps));
    expect(first.mode).toBe("full");
    expect(first.routesResynced).toBe(false);
    expect(dumps()).toBe(0);
    // The route refresh interval counts from the FIB's own dump: a pass 90 s later dumps.
    tick(90_000);
    fresh = 90_005;
    const later = await apply(input(eps));
    expect(later.mode).toBe("full");
    expect(later.routesResynced).toBe(true);
    expect(dumps()).toBe(1);
    // Asked for (drift suspected): a dump even when fresh.
    fresh = 5;
    applier.refresh("asked");
    const asked = await apply(input(eps));
    expect(asked.why).toBe("asked");
    expect(asked.routesResynced).toBe(true);
    expect(dumps()).toBe(2);
  });

  it("dumps at start when the FIB cannot say it is fresh", async () => {
    const { kernel, apply, dumps } = freshFib(() => Number.POSITIVE_INFINITY);
    const eps = [ep(2, "web")];
    for (const e of eps) kernel.addLink(e.iface);
    const first = await apply(input(eps));
    expect(first.routesResynced).toBe(true);
    expect(dumps()).toBe(1);
  });
});

describe("applyDataplane: the pods' routes beside the restores (earlyRoutes)", () => {
  /** Runs the pass with iptables-restore held until the FIB holds a pod route (or 2000 turns). */
  async function heldPass(earlyRoutes: boolean) {
    const kernel = new FakeKernel();
    const fib = new MemoryFib([202]);
    const eps = [ep(2, "web"), ep(3, "db")];
    for (const e of eps) kernel.addLink(e.iface);
    let podRoutesAtRestore = -1;
    const run: typeof kernel.run = async (netns, cmd, args, input) => {
      if (cmd.endsWith("-restore") && podRoutesAtRestore < 0) {
        const pods = () => fib.desired().filter((r) => r.nexthops.some((nh) => nh.dev)).length;
        for (let i = 0; i < 2000 && pods() === 0; i++) await new Promise((r) => setImmediate(r));
        podRoutesAtRestore = pods();
      }
      return kernel.run(netns, cmd, args, input);
    };
    const r = await applyDataplane(renderDataplane(input(eps)), {
      netns: "fake",
      fib,
      run,
      earlyRoutes,
    });
    return { r, fib, eps, podRoutesAtRestore };
  }

  it("sets them while the rules are restored; the report names each once", async () => {
    const { r, fib, eps, podRoutesAtRestore } = await heldPass(true);
    expect(podRoutesAtRestore).toBe(2);
    for (const e of eps) {
      const dst = `${(e.addresses[0] as string).split("/")[0]}/32`;
      expect(fib.desired().some((x) => x.dst === dst && x.nexthops[0]?.dev === e.iface)).toBe(true);
      expect(r.changes.filter((c) => c === `route ${dst} unicast added`)).toHaveLength(1);
    }
  });

  it("without it, sets none before the routes step", async () => {
    const { podRoutesAtRestore, fib } = await heldPass(false);
    expect(podRoutesAtRestore).toBe(0);
    expect(fib.desired().filter((r) => r.nexthops.some((nh) => nh.dev))).toHaveLength(2);
  });
});
