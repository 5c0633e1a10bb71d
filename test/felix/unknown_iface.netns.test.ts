// Felix's "Unknown interface" drop, always in force (no policy and no profile at all), with real
// traffic in a dual-stack node namespace: pods A and B are known to the agent; pod X is wired
// and routed as the CNI plugin leaves a new pod before the agent's pass (a veth named like a
// pod's, its routes and sysctls set), but the agent does not know its endpoint. A and B reach
// each other and the node; X gets nothing forwarded either way (B's pings never reach it), and
// nothing to the node but IPv6 neighbour discovery (Felix's ICMPv6Filter accepts ND and MLD from
// every workload interface before the dispatch): X resolves the node's link-local address while
// its pings to the node, over both families, and a TCP connect are dropped. Once its endpoint is
// known, X is open as A and B. With defaultEndpointToHostAction Drop, ND from a pod still passes
// (A reaches B over IPv6) while its traffic to the node is dropped.
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDataplane } from "../../src/felix/apply.js";
import { type DataplaneInput, renderDataplane } from "../../src/felix/dataplane.js";
import type { HostPolicyInput } from "../../src/felix/host_endpoint.js";
import { ifaceSysctls } from "../../src/felix/workload.js";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { addUplink } from "../helpers/cni.js";
import { Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  addPod,
  closePodLab,
  echoRepliesSent,
  HOST_LL,
  ping,
  spawnClosingServer,
  tcpConnects,
  workloadsOf,
} from "../helpers/pods.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("felix unknown interface (netns)", reason);

const PODS = {
  a: { iface: "oclunkaaaaaaaa", v4: "10.244.6.1", v6: "fd00:244::6:1" },
  b: { iface: "oclunkbbbbbbbb", v4: "10.244.6.2", v6: "fd00:244::6:2" },
};
const X = { iface: "oclunkxxxxxxxx", v4: "10.244.6.9", v6: "fd00:244::6:9" };
const NODE_IP = "192.0.2.40";
const PORT = 18081;

describe.skipIf(skip)("an unknown workload interface with no policy at all", () => {
  let node: Netns;
  const pods: Record<"a" | "b" | "x", Netns | undefined> = {
    a: undefined,
    b: undefined,
    x: undefined,
  };
  const children: ChildProcess[] = [];
  let fib: KernelFib | undefined;
  const pod = (k: "a" | "b" | "x") => pods[k] as Netns;

  const input = (known: "ab" | "abx", host?: HostPolicyInput): DataplaneInput => ({
    workloads: workloadsOf(known === "ab" ? PODS : { ...PODS, x: X }),
    pools: [
      { cidr: "10.244.0.0/16", natOutgoing: false },
      { cidr: "fd00:244::/64", natOutgoing: false },
    ],
    ...(host ? { host } : {}),
  });
  /** X's neighbour entry for the node's link-local address resolved (an NA came back). */
  const xResolvedNode = () =>
    /lladdr ee:ee:ee:ee:ee:ee/.test(
      pod("x").exec("ip", "-6", "neigh", "show", HOST_LL, "dev", "eth0"),
    );

  beforeAll(async () => {
    node = Netns.create("fun");
    addUplink(node, `${NODE_IP}/24`);
    for (const app of ["a", "b"] as const)
      pods[app] = addPod(node, `fu${app}`, PODS[app].iface, PODS[app].v4, PODS[app].v6);
    // X as the CNI plugin leaves it before the agent's pass: wired, routed, its sysctls set.
    pods.x = addPod(node, "fux", X.iface, X.v4, X.v6);
    for (const s of ifaceSysctls(X.iface, true)) node.exec("sysctl", "-qw", `${s.key}=${s.value}`);
    // Its routes of the agent's protocol, as the CNI plugin writes them.
    node.ip("route", "add", `${X.v4}/32`, "dev", X.iface, "proto", "202");
    node.ip("-6", "route", "add", `${X.v6}/128`, "dev", X.iface, "proto", "202");
    fib = await KernelFib.open({ netns: node.name, protocols: [202], watch: false });
    children.push(spawnClosingServer(node, PORT));
  });

  afterAll(async () => {
    await closePodLab(children, fib, pods, node);
  });

  it("X gets nothing forwarded and nothing to the node but neighbour discovery; A and B are open", async () => {
    await applyDataplane(renderDataplane(input("ab")), { netns: node.name, fib: fib as KernelFib });
    // The host side's link-local address must finish DAD before the pods can use it.
    await waitFor("A to reach B over IPv6", () => ping(pod("a"), PODS.b.v6, true), 30_000, 200);
    expect(ping(pod("a"), PODS.b.v4, true)).toBe(true);
    expect(ping(pod("b"), PODS.a.v4, true)).toBe(true);
    expect(ping(pod("a"), NODE_IP, true)).toBe(true);
    expect(tcpConnects(pod("a"), NODE_IP, PORT, true)).toBe(true);
    // Forwarded, both ways: B's pings never reached X (it answered none), X's never reached B.
    const xBefore = echoRepliesSent(pod("x"));
    const bBefore = echoRepliesSent(pod("b"));
    expect(ping(pod("b"), X.v4, false)).toBe(false);
    expect(ping(pod("b"), X.v6, false)).toBe(false);
    expect(ping(pod("x"), PODS.b.v4, false)).toBe(false);
    expect(ping(pod("x"), PODS.b.v6, false)).toBe(false);
    expect(echoRepliesSent(pod("x")) - xBefore).toBe(0);
    expect(echoRepliesSent(pod("b")) - bBefore).toBe(0);
    // To the node: neighbour discovery only (X's NS is answered; the echo and TCP are dropped).
    pod("x").exec("ip", "-6", "neigh", "flush", "dev", "eth0");
    expect(ping(pod("x"), `${HOST_LL}%eth0`, false)).toBe(false);
    await waitFor("X to resolve the node's link-local address", xResolvedNode, 30_000, 200);
    expect(ping(pod("x"), NODE_IP, false)).toBe(false);
    expect(tcpConnects(pod("x"), NODE_IP, PORT, false)).toBe(false);
    const v4 = node.exec("iptables-nft-save", "-t", "filter");
    expect(v4).toContain("-A ocl-from-wl-dispatch -j DROP");
    expect(v4).toContain("-A ocl-to-wl-dispatch -j DROP");
    expect(v4).toContain(`-A ocl-to-wl-dispatch -o ${PODS.a.iface} -j RETURN`);
  });

  it("once its endpoint is known, X is open as A and B", async () => {
    await applyDataplane(renderDataplane(input("abx")), {
      netns: node.name,
      fib: fib as KernelFib,
    });
    expect(ping(pod("b"), X.v4, true)).toBe(true);
    expect(ping(pod("b"), X.v6, true)).toBe(true);
    expect(ping(pod("x"), PODS.a.v4, true)).toBe(true);
    expect(ping(pod("x"), NODE_IP, true)).toBe(true);
  });

  it("defaultEndpointToHostAction Drop: a pod's traffic to the node is dropped, its neighbour discovery is not", async () => {
    const drop: HostPolicyInput = { hostEndpoints: [], defaultEndpointToHostAction: "Drop" };
    await applyDataplane(renderDataplane(input("ab", drop)), {
      netns: node.name,
      fib: fib as KernelFib,
    });
    // A's pings to B over IPv6 need A to resolve the node (its gateway) first.
    pod("a").exec("ip", "-6", "neigh", "flush", "dev", "eth0");
    expect(ping(pod("a"), PODS.b.v6, true)).toBe(true);
    expect(ping(pod("a"), NODE_IP, false)).toBe(false);
    expect(tcpConnects(pod("a"), NODE_IP, PORT, false)).toBe(false);
    // X (unknown again) still resolves the node; its echo is dropped.
    pod("x").exec("ip", "-6", "neigh", "flush", "dev", "eth0");
    expect(ping(pod("x"), `${HOST_LL}%eth0`, false)).toBe(false);
    await waitFor("X to resolve the node's link-local address", xResolvedNode, 30_000, 200);
    const v6 = node.exec("ip6tables-nft-save", "-t", "filter");
    expect(v6).toContain("-A ocl-wl-to-host -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT");
  });
});
