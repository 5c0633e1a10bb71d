// Network policy applied by the agent (applyDataplane) in a dual-stack node namespace with two
// pods: a policy on B that allows only ICMP/ICMPv6 from app=a. A pings B over IPv4 and IPv6
// (neighbour discovery between the host and B passes unpoliced), the node's own pings to B are
// dropped (host-to-pod traffic gets B's ingress), B still reaches A; iptables-save and
// ip6tables-save read back; a second apply changes nothing; no policy opens B again.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDataplane } from "../../src/felix/apply.js";
import { type DataplaneInput, renderDataplane } from "../../src/felix/dataplane.js";
import { fromNetworkPolicy, type PolicyInput } from "../../src/felix/policy.js";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { addUplink } from "../helpers/cni.js";
import { Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import { addPod, ping, policyEndpointsOf, workloadsOf } from "../helpers/pods.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("felix policy (netns)", reason);

const PODS = {
  a: { iface: "oclpolaaaaaaaa", v4: "10.244.5.1", v6: "fd00:244::5:1" },
  b: { iface: "oclpolbbbbbbbb", v4: "10.244.5.2", v6: "fd00:244::5:2" },
};

describe.skipIf(skip)("network policy applied in a dual-stack namespace", () => {
  let node: Netns;
  const pods: Record<"a" | "b", Netns> = {} as never;
  let fib: KernelFib;

  const policy: PolicyInput = {
    endpoints: policyEndpointsOf(PODS),
    policies: [
      fromNetworkPolicy({
        metadata: { name: "b-icmp-from-a", namespace: "default" },
        spec: {
          selector: "app == 'b'",
          ingress: [
            { action: "Allow", protocol: "ICMP", source: { selector: "app == 'a'" } },
            { action: "Allow", protocol: "ICMPv6", source: { selector: "app == 'a'" } },
          ],
        },
      }),
    ],
  };
  const input = (p?: PolicyInput): DataplaneInput => ({
    workloads: workloadsOf(PODS),
    pools: [
      { cidr: "10.244.0.0/16", natOutgoing: false },
      { cidr: "fd00:244::/64", natOutgoing: false },
    ],
    ...(p ? { policy: p } : {}),
  });

  beforeAll(async () => {
    node = Netns.create("fpn");
    addUplink(node, "192.0.2.30/24");
    for (const app of ["a", "b"] as const) {
      pods[app] = addPod(node, `fp${app}`, PODS[app].iface, PODS[app].v4, PODS[app].v6);
    }
    fib = await KernelFib.open({ netns: node.name, protocols: [202], watch: false });
  });

  afterAll(async () => {
    await fib?.close();
    for (const p of Object.values(pods)) p?.destroy();
    node?.destroy();
  });

  it("allows A's pings to B over both families, drops the node's, leaves B's egress open", async () => {
    await applyDataplane(renderDataplane(input(policy)), { netns: node.name, fib });
    // The host side's link-local address must finish DAD before the pods can use it.
    await waitFor("A to reach B over IPv6", () => ping(pods.a, PODS.b.v6, true), 8000, 200);
    expect(ping(pods.a, PODS.b.v4, true)).toBe(true);
    expect(ping(node, PODS.b.v4, false)).toBe(false);
    expect(ping(node, PODS.b.v6, false)).toBe(false);
    expect(ping(pods.b, PODS.a.v4, true)).toBe(true);
    expect(ping(pods.b, PODS.a.v6, true)).toBe(true);
    const v6 = node.exec("ip6tables-nft-save", "-t", "filter");
    expect(v6).toContain(`-A ocl-to-wl-dispatch -o ${PODS.b.iface} -g ocl-tw-${PODS.b.iface}`);
    expect(v6).toContain("-A ocl-to-wl-dispatch -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j RETURN");
    expect(v6).toMatch(/-p ipv6-icmp -m set --match-set ocl6-s-\S+ src -j MARK/);
    expect(node.exec("iptables-nft-save", "-t", "filter")).toMatch(
      /-p icmp -m set --match-set ocl-s-\S+ src -j MARK/,
    );
  });

  it("a second apply changes nothing (the kernel reads back as rendered)", async () => {
    const r = await applyDataplane(renderDataplane(input(policy)), { netns: node.name, fib });
    expect(r.changes).toEqual([]);
  });

  it("without the policy the node reaches B again and our policy chains and sets are gone", async () => {
    const r = await applyDataplane(renderDataplane(input()), { netns: node.name, fib });
    expect(r.changes.some((c) => /ocl-tw-.* stale/.test(c))).toBe(true);
    expect(ping(node, PODS.b.v4, true)).toBe(true);
    expect(ping(node, PODS.b.v6, true)).toBe(true);
    for (const save of ["iptables-nft-save", "ip6tables-nft-save"])
      expect(node.exec(save, "-t", "filter")).not.toMatch(/ocl-(tw|pi|INPUT|OUTPUT)|wl-dispatch/);
    expect(node.exec("ipset", "save")).not.toMatch(/ocl6?-s-/);
  });
});
