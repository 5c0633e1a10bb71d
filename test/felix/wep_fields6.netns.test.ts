// The IPv6 paths of WorkloadEndpoint qosControls.dscp and ipNATs with real traffic, applied by the
// agent (renderDataplane + applyDataplane) in a node namespace with pods A and B (IPv6 pool
// fd00:69::/64) and an outside host on 2001:db8:69::/64:
// - DSCP: A (46, EF) and B (none) send UDP over IPv6 to the outside host; tshark there reads each
//   datagram's Traffic Class: A's carry DSCP 46, B's 0 (Felix marks traffic leaving the cluster,
//   ip6tables mangle POSTROUTING `-j DSCP --set-dscp`); A to B (inside the pool) stays 0, as
//   Felix's jump (felix/rules/static.go: source in the DSCP endpoints' set, destination in
//   neither the IPAM pools' set nor this host's) leaves in-cluster traffic alone;
// - floating IP: with A's ipNAT 2001:db8:ff::5 → A, the outside host connects to
//   [2001:db8:ff::5] and A sees the host's real address; the node itself reaches it too (nat
//   OUTPUT); A's own connections keep A's address; A's connection to its own floating IP is seen
//   from the floating IP (Felix's fip-snat); the ip6tables nat chains and the /128 route read back;
// a second apply changes nothing; without the fields the chains, set and route are gone.
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDataplane } from "../../src/felix/apply.js";
import { type DataplaneInput, renderDataplane } from "../../src/felix/dataplane.js";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { tsharkWhile } from "../helpers/capture.js";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";
import { addPod, closePodLab, connectSeen, linkOutside } from "../helpers/pods.js";

const reason =
  netnsUnavailableReason() ??
  addonUnavailableReason() ??
  (runSync("tshark", ["--version"]).status === 0 ? undefined : "tshark is not installed");
const skip = skipWithReason("WorkloadEndpoint fields over IPv6 (netns)", reason);

const PODS = {
  a: { iface: "oclw6aaaaaaaaa", v4: "10.69.0.2", v6: "fd00:69::2" },
  b: { iface: "oclw6bbbbbbbbb", v4: "10.69.0.3", v6: "fd00:69::3" },
};
const NODE6 = "2001:db8:69::1";
const OUTSIDE6 = "2001:db8:69::10";
const FLOATING6 = "2001:db8:ff::5";

/** Sends 3 UDP datagrams over IPv6 to [host]:9999. */
const SENDER = `
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for _ in range(3): s.sendto(b"x", (sys.argv[1], 9999))`;

describe.skipIf(skip)("WorkloadEndpoint qosControls.dscp and ipNATs over IPv6", () => {
  let node: Netns;
  let outside: Netns;
  const pods: Record<"a" | "b", Netns> = {} as never;
  let fib: KernelFib;
  const children: ChildProcess[] = [];

  const input = (fields: boolean): DataplaneInput => ({
    workloads: (["a", "b"] as const).map((app) => ({
      id: `default/${app}`,
      hostIface: PODS[app].iface,
      ipv4: [PODS[app].v4],
      ipv6: [PODS[app].v6],
      ...(fields && app === "a"
        ? { dscp: 46, floatingIps: [{ internal: PODS.a.v6, external: FLOATING6 }] }
        : {}),
    })),
    pools: [
      { cidr: "10.69.0.0/16", natOutgoing: false },
      { cidr: "fd00:69::/64", natOutgoing: false },
    ],
    // As the node's agent always passes it: the mangle table is then ours to converge.
    host: { hostEndpoints: [], interfaces: [{ name: "ext0", addresses: [`${NODE6}/64`] }] },
  });
  const apply = (fields: boolean) =>
    applyDataplane(renderDataplane(input(fields)), { netns: node.name, fib });

  /** Each UDP datagram to port 9999 captured in `ns` on eth0: "source dscp". */
  const capture = (ns: Netns, count: number, send: () => void) =>
    tsharkWhile(
      ns,
      [
        "-i",
        "eth0",
        "-f",
        "ip6 and udp dst port 9999",
        "-c",
        String(count),
        "-a",
        "duration:30",
      ].concat(["-T", "fields", "-e", "ipv6.src", "-e", "ipv6.tclass.dscp"]),
      send,
      children,
    );
  const sendFrom = (app: "a" | "b", to: string) =>
    runSync("ip", ["netns", "exec", pods[app].name, "python3", "-c", SENDER, to]);

  beforeAll(async () => {
    node = Netns.create("w6n");
    outside = Netns.create("w6o");
    // The cluster's pool and floating IPs are behind the node (IPv6 default route back).
    linkOutside(node, outside, {
      node4: "192.0.2.1",
      outside4: "192.0.2.10",
      node6: NODE6,
      outside6: OUTSIDE6,
      back: { v6: true },
    });
    for (const app of ["a", "b"] as const)
      pods[app] = addPod(node, `w6${app}`, PODS[app].iface, PODS[app].v4, PODS[app].v6);
    fib = await KernelFib.open({ netns: node.name, protocols: [202], watch: false });
  }, HANG_MS);

  afterAll(async () => {
    await closePodLab(children, fib, pods, outside, node);
  });

  it("DSCP: A's IPv6 datagrams leaving the cluster carry 46 in the Traffic Class, B's 0", async () => {
    await apply(true);
    const mangle = node.exec("ip6tables-nft-save", "-t", "mangle");
    expect(mangle).toContain("-A POSTROUTING -j ocl-POSTROUTING");
    expect(mangle).toContain(
      "-A ocl-POSTROUTING -m set --match-set ocl6-dscp-src-net src -m set ! --match-set ocl6-all-ipam-pools dst -m addrtype ! --dst-type LOCAL -j ocl-egress-dscp",
    );
    expect(mangle).toContain(`-A ocl-egress-dscp -s ${PODS.a.v6}/128 -j DSCP --set-dscp 0x2e`);
    expect(node.exec("ipset", "list", "ocl6-dscp-src-net")).toContain(PODS.a.v6);
    // Captured until both pods' datagrams are in (at most 5 captures): a pod's first datagrams
    // can wait on neighbour discovery of its fresh veth while the other's resends fill a capture.
    const seen: string[] = [];
    const both = () => [PODS.a.v6, PODS.b.v6].every((p) => seen.some((l) => l.startsWith(`${p} `)));
    for (let i = 0; i < 5 && !both(); i++) {
      seen.push(
        ...(await capture(outside, 6, () => {
          sendFrom("a", OUTSIDE6);
          sendFrom("b", OUTSIDE6);
        })),
      );
    }
    console.log(`IPv6 to the outside host (source dscp): ${JSON.stringify(seen)}`);
    expect(new Set(seen)).toEqual(new Set([`${PODS.a.v6} 46`, `${PODS.b.v6} 0`]));
  });

  it("DSCP: A's IPv6 datagrams to B (inside the pool) stay unmarked", async () => {
    const seen = await capture(pods.b, 3, () => sendFrom("a", PODS.b.v6));
    console.log(`IPv6 A to B (source dscp): ${JSON.stringify(seen)}`);
    expect(seen).toEqual(Array(3).fill(`${PODS.a.v6} 0`));
  });

  it("floating IP: the outside host and the node reach A at its IPv6 floating IP; A sees their addresses", async () => {
    const nat = node.exec("ip6tables-nft-save", "-t", "nat");
    expect(nat).toContain(
      `-A ocl-fip-dnat -d ${FLOATING6}/128 -j DNAT --to-destination ${PODS.a.v6}`,
    );
    expect(nat).toContain(
      `-A ocl-fip-snat -s ${PODS.a.v6}/128 -d ${PODS.a.v6}/128 -j SNAT --to-source ${FLOATING6}`,
    );
    expect(nat).toContain("-A PREROUTING -j ocl-PREROUTING");
    expect(nat).toContain("-A OUTPUT -j ocl-OUTPUT");
    const route = node.ipJson<{ dev: string }[]>("-6", "route", "show", `${FLOATING6}/128`);
    expect(route[0]?.dev).toBe(PODS.a.iface);
    const inbound = await connectSeen(pods.a, outside, FLOATING6, 8080, children);
    console.log(`outside → [${FLOATING6}]:8080: A saw ${inbound.serverSaw}`);
    expect(inbound.serverSaw).toBe(OUTSIDE6);
    const fromNode = await connectSeen(pods.a, node, FLOATING6, 8081, children);
    console.log(`node → [${FLOATING6}]:8081: A saw ${fromNode.serverSaw}`);
    expect(fromNode.serverSaw).toBe(NODE6);
  });

  it("floating IP: A's own IPv6 connections keep its address; to its floating IP it is seen from it", async () => {
    const out = await connectSeen(outside, pods.a, OUTSIDE6, 8082, children);
    expect(out.serverSaw).toBe(PODS.a.v6);
    const hairpin = await connectSeen(pods.a, pods.a, FLOATING6, 8083, children);
    console.log(`A → its own [${FLOATING6}]:8083: A saw ${hairpin.serverSaw}`);
    expect(hairpin.serverSaw).toBe(FLOATING6);
  });

  it("a second apply changes nothing", async () => {
    expect((await apply(true)).changes).toEqual([]);
  });

  it("without the fields: chains, set and route gone; A's datagrams leave unmarked", async () => {
    await apply(false);
    expect(node.exec("ip6tables-nft-save", "-t", "nat")).not.toContain("ocl-fip");
    expect(node.exec("ip6tables-nft-save", "-t", "mangle")).not.toContain("DSCP");
    expect(node.exec("ipset", "list", "-n")).not.toContain("ocl6-dscp-src-net");
    expect(node.ip("-6", "route", "show", `${FLOATING6}/128`).trim()).toBe("");
    const seen = await capture(outside, 3, () => sendFrom("a", OUTSIDE6));
    expect(seen).toEqual(Array(3).fill(`${PODS.a.v6} 0`));
  });
});
