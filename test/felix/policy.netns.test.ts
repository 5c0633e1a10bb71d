// Network policy applied by the agent (applyDataplane) in a dual-stack node namespace with two
// pods: a policy on B that allows only ICMP/ICMPv6 from app=a. A pings B over IPv4 and IPv6
// (neighbour discovery between the host and B passes unpoliced), B still reaches A;
// iptables-save and ip6tables-save read back; a second apply changes nothing; no policy opens B
// again. The node's own traffic to a pod is not policed by the pod's ingress, as in Felix
// (filterOutputChain returns for workload interfaces; kubelet's probes come from the host): under
// a default-deny ingress policy on B, TCP connects from the node's namespace reach B (B's
// PassiveOpens count them) over both families, A's are refused and never reach B's socket.
// A workload interface with no known endpoint (pod C wired and routed, its endpoint not yet in
// the policy input, as between CNI ADD and the agent's pass) gets no traffic either way while a
// policy is in force (Felix's "Unknown interface" drop); known and selected by none, it is open.
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDataplane } from "../../src/felix/apply.js";
import { type DataplaneInput, renderDataplane } from "../../src/felix/dataplane.js";
import { fromNetworkPolicy, type PolicyInput } from "../../src/felix/policy.js";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { addUplink } from "../helpers/cni.js";
import { Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  addPod,
  echoRepliesSent,
  ping,
  policyEndpointsOf,
  spawnClosingServer,
  tcpConnects,
  workloadsOf,
} from "../helpers/pods.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("felix policy (netns)", reason);

const PODS = {
  a: { iface: "oclpolaaaaaaaa", v4: "10.244.5.1", v6: "fd00:244::5:1" },
  b: { iface: "oclpolbbbbbbbb", v4: "10.244.5.2", v6: "fd00:244::5:2" },
  c: { iface: "oclpolcccccccc", v4: "10.244.5.3", v6: "fd00:244::5:3" },
};

describe.skipIf(skip)("network policy applied in a dual-stack namespace", () => {
  let node: Netns;
  const pods: Record<"a" | "b" | "c", Netns> = {} as never;
  let fib: KernelFib;
  let server: ChildProcess | undefined;

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
    for (const app of ["a", "b", "c"] as const) {
      pods[app] = addPod(node, `fp${app}`, PODS[app].iface, PODS[app].v4, PODS[app].v6);
    }
    fib = await KernelFib.open({ netns: node.name, protocols: [202], watch: false });
  });

  afterAll(async () => {
    if (server?.pid !== undefined && server.exitCode === null) server.kill("SIGKILL");
    await fib?.close();
    for (const p of Object.values(pods)) p?.destroy();
    node?.destroy();
  });

  it("allows A's pings to B over both families, the node's too (not policed), leaves B's egress open", async () => {
    await applyDataplane(renderDataplane(input(policy)), { netns: node.name, fib });
    // The host side's link-local address must finish DAD before the pods can use it.
    await waitFor("A to reach B over IPv6", () => ping(pods.a, PODS.b.v6, true), 30_000, 200);
    expect(ping(pods.a, PODS.b.v4, true)).toBe(true);
    expect(ping(node, PODS.b.v4, true)).toBe(true);
    expect(ping(node, PODS.b.v6, true)).toBe(true);
    expect(ping(pods.b, PODS.a.v4, true)).toBe(true);
    expect(ping(pods.b, PODS.a.v6, true)).toBe(true);
    const v6 = node.exec("ip6tables-nft-save", "-t", "filter");
    expect(v6).toContain(`-A ocl-to-wl-dispatch -o ${PODS.b.iface} -g ocl-tw-${PODS.b.iface}`);
    // Neighbour discovery from any workload interface is accepted before the dispatch (Felix).
    expect(v6).toContain("-A ocl-INPUT -i ocl+ -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT");
    // OUTPUT is not hooked: nothing sends the host's traffic to a pod's ingress.
    expect(v6).not.toMatch(/ocl-OUTPUT/);
    expect(v6).toMatch(/-p ipv6-icmp -m set --match-set ocl6-s-\S+ src -j MARK/);
    expect(node.exec("iptables-nft-save", "-t", "filter")).toMatch(
      /-p icmp -m set --match-set ocl-s-\S+ src -j MARK/,
    );
  });

  it("a second apply changes nothing (the kernel reads back as rendered)", async () => {
    const r = await applyDataplane(renderDataplane(input(policy)), { netns: node.name, fib });
    expect(r.changes).toEqual([]);
  });

  it("default-deny ingress on B: the node's TCP connects reach B (kubelet's probes), A's are refused", async () => {
    const PORT = 8081;
    const opens = () => {
      const lines = pods.b
        .exec("cat", "/proc/net/snmp")
        .split("\n")
        .filter((l) => l.startsWith("Tcp:"));
      const [head, values] = lines.map((l) => l.trim().split(/\s+/));
      return Number(values?.[head?.indexOf("PassiveOpens") ?? -1]);
    };
    server = spawnClosingServer(pods.b, PORT, "::");
    const denyAll: PolicyInput = {
      endpoints: policy.endpoints,
      policies: [
        fromNetworkPolicy({
          metadata: { name: "b-default-deny", namespace: "default" },
          spec: { selector: "app == 'b'", types: ["Ingress"] },
        }),
      ],
    };
    await applyDataplane(renderDataplane(input(denyAll)), { netns: node.name, fib });
    await waitFor(
      "B's server to answer the node",
      () => tcpConnects(node, PODS.b.v4, PORT, true),
      30_000,
      200,
    );
    const before = opens();
    expect(tcpConnects(node, PODS.b.v4, PORT, true)).toBe(true);
    expect(tcpConnects(node, PODS.b.v6, PORT, true)).toBe(true);
    const afterNode = opens();
    expect(afterNode - before).toBeGreaterThanOrEqual(2);
    expect(tcpConnects(pods.a, PODS.b.v4, PORT, false)).toBe(false);
    expect(tcpConnects(pods.a, PODS.b.v6, PORT, false)).toBe(false);
    expect(ping(pods.a, PODS.b.v4, false)).toBe(false);
    // A's SYNs were dropped before B: its socket accepted none of them.
    expect(opens() - afterNode).toBe(0);
    const v4 = node.exec("iptables-nft-save", "-t", "filter");
    expect(v4).toContain(`-A ocl-tw-${PODS.b.iface} -m mark --mark 0x0/0x20000 -j DROP`);
    expect(v4).not.toMatch(/ocl-OUTPUT/);
  });

  it("an unknown workload interface gets no traffic while a policy is in force; known and unselected, it is open", async () => {
    const denyB = fromNetworkPolicy({
      metadata: { name: "b-default-deny", namespace: "default" },
      spec: { selector: "app == 'b'", types: ["Ingress"] },
    });
    const known = policy.endpoints.filter((e) => e.id !== "default/c");
    await applyDataplane(renderDataplane(input({ endpoints: known, policies: [denyB] })), {
      netns: node.name,
      fib,
    });
    const before = echoRepliesSent(pods.c);
    expect(ping(pods.a, PODS.c.v4, false)).toBe(false);
    expect(ping(pods.a, PODS.c.v6, false)).toBe(false);
    expect(ping(pods.c, PODS.a.v4, false)).toBe(false);
    // A's pings never reached C: it answered none of them.
    expect(echoRepliesSent(pods.c) - before).toBe(0);
    // The node's own pings leave unpoliced (OUTPUT) but C's replies meet the drop (INPUT).
    expect(ping(node, PODS.c.v4, false)).toBe(false);
    const v4 = node.exec("iptables-nft-save", "-t", "filter");
    expect(v4).toContain("-A ocl-to-wl-dispatch -j DROP");
    expect(v4).toContain("-A ocl-from-wl-dispatch -j DROP");
    expect(v4).toContain(`-A ocl-to-wl-dispatch -o ${PODS.a.iface} -j RETURN`);
    // Its endpoint known (selected by no policy): open both ways.
    await applyDataplane(renderDataplane(input({ ...policy, policies: [denyB] })), {
      netns: node.name,
      fib,
    });
    expect(ping(pods.a, PODS.c.v4, true)).toBe(true);
    expect(ping(pods.a, PODS.c.v6, true)).toBe(true);
    expect(ping(pods.c, PODS.a.v4, true)).toBe(true);
    expect(ping(node, PODS.c.v4, true)).toBe(true);
    expect(ping(pods.a, PODS.b.v4, false)).toBe(false);
  });

  it("without the policy the node reaches B again and our policy chains and sets are gone", async () => {
    const r = await applyDataplane(renderDataplane(input()), { netns: node.name, fib });
    expect(r.changes.some((c) => /ocl-tw-.* stale/.test(c))).toBe(true);
    expect(ping(node, PODS.b.v4, true)).toBe(true);
    expect(ping(node, PODS.b.v6, true)).toBe(true);
    for (const save of ["iptables-nft-save", "ip6tables-nft-save"])
      expect(node.exec(save, "-t", "filter")).not.toMatch(/ocl-(tw|fw|pi|po|OUTPUT)/);
    // The dispatch stays, every pod known to it (Felix's unknown-interface drop is always).
    expect(node.exec("iptables-nft-save", "-t", "filter")).toContain(
      `-A ocl-to-wl-dispatch -o ${PODS.b.iface} -j RETURN`,
    );
    expect(node.exec("ipset", "save")).not.toMatch(/ocl6?-s-/);
  });
});
