// Pure tests of applyDataplane() over a fake kernel (test/felix/model.ts) and a MemoryFib: what
// it writes, that a second apply writes nothing, and how it treats missing interfaces and
// others' rules. The same behaviour against the real kernel: apply.netns.test.ts.
import { describe, expect, it } from "vitest";
import { applyDataplane } from "../../src/felix/apply.js";
import { type DataplaneInput, renderDataplane } from "../../src/felix/dataplane.js";
import { MemoryFib } from "../../src/fib/memory_fib.js";
import { FakeKernel } from "./model.js";

const input: DataplaneInput = {
  workloads: [
    { id: "n1/default/a", hostIface: "ocla", ipv4: ["10.244.1.2"], ipv6: [] },
    { id: "n1/default/b", hostIface: "oclb", ipv4: ["10.244.1.3"], ipv6: [] },
  ],
  blocks: ["10.244.1.0/26"],
  pools: [{ cidr: "10.244.0.0/16", natOutgoing: true }],
  clusterCidrs: ["10.96.0.0/12"],
  nodeAddresses: ["10.255.0.11", "10.255.0.12"],
  options: { ipv6: false },
};

function setup() {
  const kernel = new FakeKernel();
  kernel.sysctls.set("net.ipv4.ip_forward", "0");
  kernel.addLink("ocla");
  kernel.addLink("oclb");
  const fib = new MemoryFib([202]);
  const apply = (i: DataplaneInput = input) =>
    applyDataplane(renderDataplane(i), { netns: "fake", fib, run: kernel.run });
  return { kernel, fib, apply };
}

describe("applyDataplane() (fake kernel)", () => {
  it("writes sysctls, links, ipsets, both tables and routes, then nothing the second time", async () => {
    const { kernel, fib, apply } = setup();
    const first = await apply();
    expect(kernel.sysctls.get("net.ipv4.ip_forward")).toBe("1");
    expect(kernel.sysctls.get("net.ipv4.conf.ocla.proxy_arp")).toBe("1");
    expect(kernel.sysctls.get("net.ipv4.neigh.oclb.proxy_delay")).toBe("0");
    expect(kernel.links.get("ocla")).toEqual({ address: "ee:ee:ee:ee:ee:ee", up: true });
    expect(kernel.ipsets.get("ocl-masq-ipam-pools")?.members).toEqual(["10.244.0.0/16"]);
    expect(kernel.tables[4].get("nat")?.rules.map((r) => `${r.chain} ${r.spec}`)).toContain(
      "POSTROUTING -j ocl-POSTROUTING",
    );
    expect(first.iptables.map((p) => p.table)).toEqual(["filter", "nat"]);
    // Both tables from one restore.
    expect(kernel.writes.filter((w) => w.startsWith("iptables-nft-restore"))).toHaveLength(1);
    expect(
      fib
        .desired()
        .map((r) => `${r.dst} ${r.type ?? "unicast"} ${r.nexthops[0]?.dev ?? "-"}`)
        .sort(),
    ).toEqual([
      "10.244.1.0/26 blackhole -",
      "10.244.1.2/32 unicast ocla",
      "10.244.1.3/32 unicast oclb",
    ]);

    const writes = kernel.writes.length;
    const second = await apply();
    expect(second.changes).toEqual([]);
    expect(kernel.writes.slice(writes)).toEqual([]);
  });

  it("waits for a missing interface: no route, no sysctls, reported", async () => {
    const { kernel, fib, apply } = setup();
    kernel.links.delete("oclb");
    const r = await apply();
    expect(r.missingIfaces).toEqual(["oclb"]);
    expect(fib.desired().map((x) => x.dst)).not.toContain("10.244.1.3/32");
    expect(kernel.writes.join("\n")).not.toContain("oclb");
    // The CNI plugin creates it: the next apply completes the workload.
    kernel.addLink("oclb");
    const r2 = await apply();
    expect(r2.missingIfaces).toEqual([]);
    expect(r2.changes).toContain("route 10.244.1.3/32 unicast added");
  });

  it("removes the route of a gone workload and swaps changed ipsets in", async () => {
    const { kernel, fib, apply } = setup();
    await apply();
    const r = await apply({
      ...input,
      workloads: input.workloads.slice(0, 1),
      nodeAddresses: ["10.255.0.11"],
    });
    expect(r.changes).toEqual([
      "ipset ocl-all-hosts-net members differ",
      // Its interface is no longer a known one: out of the dispatch chains.
      "iptables-nft filter: chain ocl-from-wl-dispatch differs",
      "iptables-nft filter: chain ocl-to-wl-dispatch differs",
      "route 10.244.1.3/32 removed",
    ]);
    expect(fib.desired().map((x) => x.dst)).not.toContain("10.244.1.3/32");
    expect(kernel.ipsets.get("ocl-all-hosts-net")?.members).toEqual(["10.255.0.11/32"]);
    expect([...kernel.ipsets.keys()].filter((n) => n.includes("tmp"))).toEqual([]);
  });

  it("destroys our stale sets, never others'", async () => {
    const { kernel, apply } = setup();
    kernel.ipsets.set("ocl-old", { type: "hash:net", family: "inet", members: [] });
    kernel.ipsets.set("ocl6-old", { type: "hash:net", family: "inet6", members: [] });
    kernel.ipsets.set("someone-else", { type: "hash:ip", family: "inet", members: [] });
    const r = await apply();
    expect(r.changes).toContain("ipset ocl-old stale, destroyed");
    expect([...kernel.ipsets.keys()].sort()).toEqual([
      "ocl-all-hosts-net",
      "ocl-all-ipam-pools",
      "ocl-masq-ipam-pools",
      "someone-else",
    ]);
  });

  it("keeps others' rules and restores ours", async () => {
    const { kernel, apply } = setup();
    await apply();
    const nat = kernel.tables[4].get("nat");
    if (!nat) throw new Error("no nat table");
    nat.rules.push({ chain: "POSTROUTING", spec: "-s 192.168.9.0/24 -j MASQUERADE" });
    nat.rules = nat.rules.filter(
      (r) => !r.spec.includes("-j MASQUERADE") || r.chain !== "ocl-nat-outgoing",
    );
    const r = await apply();
    expect(r.changes).toEqual(["iptables-nft nat: chain ocl-nat-outgoing differs"]);
    const after = kernel.tables[4].get("nat")?.rules.map((x) => `${x.chain} ${x.spec}`) ?? [];
    expect(after).toContain("POSTROUTING -s 192.168.9.0/24 -j MASQUERADE");
    expect(
      after.filter((x) => x.startsWith("ocl-nat-outgoing") && x.endsWith("MASQUERADE")),
    ).toHaveLength(1);
  });

  it("reads the overlay back only when it wants a device or one of ours is among the links", async () => {
    const { kernel, fib } = setup();
    const batches: string[] = [];
    // The overlay's own reads and writes, which the fake kernel leaves to overlay tests.
    const run: typeof kernel.run = async (netns, cmd, args, inp) => {
      const line = `${cmd} ${args.join(" ")}`;
      if (/^ip -j neigh show dev |^bridge -j fdb show dev /.test(line))
        return { code: 0, stdout: "[]", stderr: "" };
      if (line === "ip -batch -") {
        batches.push(inp ?? "");
        return { code: 0, stdout: "", stderr: "" };
      }
      return kernel.run(netns, cmd, args, inp);
    };
    const apply = () => applyDataplane(renderDataplane(input), { netns: "fake", fib, run });
    const overlayRead = () => kernel.commands.filter((c) => c === "ip -d -j addr show").length;
    await apply();
    // No overlay wanted, no vxlan/ipip device of ours: its plan is made against nothing.
    expect(overlayRead()).toBe(0);
    // A VXLAN device of ours left behind: read back, and removed.
    kernel.addLink("vxlan.ocelot");
    const r = await apply();
    expect(overlayRead()).toBe(1);
    expect(r.changes).toContain("link vxlan.ocelot removed");
    expect(batches).toEqual(["link del vxlan.ocelot\n"]);
  });
});
