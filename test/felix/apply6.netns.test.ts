// The agent's apply for a dual-stack workload: /128 route, IPv6 interface sysctls, ip6tables
// chains and ocl6- ipsets, all read back from the kernel, and a second apply that changes nothing.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDataplane } from "../../src/felix/apply.js";
import { renderDataplane } from "../../src/felix/dataplane.js";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("felix apply IPv6 (netns)", reason);

describe.skipIf(skip)("applyDataplane() with IPv6", () => {
  let node: Netns;
  let pod: Netns;
  let fib: KernelFib;
  const state = renderDataplane({
    workloads: [
      { id: "n/default/p", hostIface: "oclv6test", ipv4: ["10.244.3.2"], ipv6: ["fd00:244::3:2"] },
    ],
    blocks: ["10.244.3.0/26", "fd00:244::3:0/122"],
    pools: [
      { cidr: "10.244.0.0/16", natOutgoing: true },
      { cidr: "fd00:244::/64", natOutgoing: true },
    ],
    clusterCidrs: ["fd00:255::/64"],
    nodeAddresses: ["10.255.0.11", "fd00:255::11"],
  });

  beforeAll(async () => {
    node = Netns.create("fx6n");
    pod = Netns.create("fx6p");
    node.ip("link", "add", "oclv6test", "type", "veth", "peer", "name", "eth0", "netns", pod.name);
    fib = await KernelFib.open({ netns: node.name, protocols: [202], watch: false });
  });

  afterAll(async () => {
    await fib?.close();
    pod?.destroy();
    node?.destroy();
  });

  it("installs the /128 route, IPv6 sysctls, ip6tables chains and ocl6- sets", async () => {
    const r = await applyDataplane(state, { netns: node.name, fib });
    expect(r.iptables.map((p) => `${p.family} ${p.table}`)).toEqual([
      "4 filter",
      "4 nat",
      "6 filter",
      "6 nat",
    ]);
    const routes = node.ipJson<{ dst: string; dev?: string; type?: string }[]>(
      "-6",
      "route",
      "show",
      "proto",
      "202",
    );
    expect(routes).toContainEqual(
      expect.objectContaining({ dst: "fd00:244::3:2", dev: "oclv6test" }),
    );
    expect(routes).toContainEqual(
      expect.objectContaining({ dst: "fd00:244::3:0/122", type: "blackhole" }),
    );
    const sysctl = (k: string) => node.exec("sysctl", "-n", k).trim();
    expect(sysctl("net.ipv6.conf.oclv6test.proxy_ndp")).toBe("1");
    expect(sysctl("net.ipv6.conf.oclv6test.forwarding")).toBe("1");
    expect(sysctl("net.ipv6.conf.oclv6test.accept_ra")).toBe("0");
    const nat6 = node.exec("ip6tables-nft-save", "-t", "nat");
    expect(nat6).toContain("-A POSTROUTING -j ocl-POSTROUTING");
    expect(nat6).toContain("-A ocl-nat-outgoing -d fd00:255::/64 -j RETURN");
    expect(nat6).toContain(
      "-A ocl-nat-outgoing -m set --match-set ocl6-masq-ipam-pools src -m set ! --match-set ocl6-all-ipam-pools dst -j MASQUERADE",
    );
    const sets = node.exec("ipset", "save");
    expect(sets).toMatch(/create ocl6-all-ipam-pools hash:net family inet6/);
    expect(sets).toContain("add ocl6-masq-ipam-pools fd00:244::/64");
  });

  it("changes nothing when applied a second time", async () => {
    const before = node.ipJson("-6", "route", "show", "proto", "202");
    const r = await applyDataplane(state, { netns: node.name, fib });
    expect(r.changes).toEqual([]);
    expect(node.ipJson("-6", "route", "show", "proto", "202")).toEqual(before);
    expect(before).toHaveLength(2);
  });
});
