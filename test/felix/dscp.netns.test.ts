// WorkloadEndpoint qosControls.dscp with real traffic, applied by the agent (renderDataplane +
// applyDataplane) in a node namespace with pods A (dscp 46, EF), B (AF11, 10) and C (none) and an
// outside host. tshark captures on the outside host's interface and in pod C's namespace and
// prints each UDP datagram's source and DSCP field:
// - to the outside host: A's datagrams carry 46, B's 10, C's 0 (Felix marks traffic leaving the
//   cluster: mangle POSTROUTING, `-j DSCP --set-dscp`);
// - from A to C (an address in the pool): unmarked, 0 (Felix leaves in-cluster traffic alone);
// the ipset and chains read back as Felix lays them out, a second apply changes nothing, and
// without the field the marking is gone (A's datagrams leave with 0 again);
// - a HostEndpoint with the `qos.projectcalico.org/dscp` annotation (CS1): the node's own
//   datagrams from its expectedIP leave with 8.
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDataplane } from "../../src/felix/apply.js";
import { type DataplaneInput, renderDataplane } from "../../src/felix/dataplane.js";
import { DEFAULT_ALLOW_PROFILE } from "../../src/felix/policy.js";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { tsharkWhile } from "../helpers/capture.js";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";
import { addPod, closePodLab, linkOutside } from "../helpers/pods.js";

const reason =
  netnsUnavailableReason() ??
  addonUnavailableReason() ??
  (runSync("tshark", ["--version"]).status === 0 ? undefined : "tshark is not installed");
const skip = skipWithReason("WorkloadEndpoint qosControls.dscp (netns)", reason);

const PODS = {
  a: { iface: "ocldsaaaaaaaaa", v4: "10.67.0.2" },
  b: { iface: "ocldsbbbbbbbbb", v4: "10.67.0.3" },
  c: { iface: "ocldsccccccccc", v4: "10.67.0.4" },
};
const OUTSIDE = "192.0.2.10";

/** Sends 3 UDP datagrams to host:9999. */
const SENDER = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3): s.sendto(b"x", (sys.argv[1], 9999))`;

describe.skipIf(skip)("WorkloadEndpoint qosControls.dscp: egress DSCP marking", () => {
  let node: Netns;
  let outside: Netns;
  const pods: Record<"a" | "b" | "c", Netns> = {} as never;
  let fib: KernelFib;
  const children: ChildProcess[] = [];

  const input = (marked: boolean, hostDscp?: number): DataplaneInput => ({
    workloads: (["a", "b", "c"] as const).map((app) => ({
      id: `default/${app}`,
      hostIface: PODS[app].iface,
      ipv4: [PODS[app].v4],
      ipv6: [],
      ...(marked && app === "a" ? { dscp: 46 } : {}),
      ...(marked && app === "b" ? { dscp: 10 } : {}),
    })),
    pools: [{ cidr: "10.67.0.0/16", natOutgoing: false }],
    // As the node's agent always passes it: the mangle table is then ours to converge.
    host: {
      hostEndpoints:
        hostDscp === undefined
          ? []
          : [
              {
                name: "node-ext0",
                expectedIPs: ["192.0.2.1"],
                labels: {},
                profiles: [DEFAULT_ALLOW_PROFILE.name],
                dscp: hostDscp,
              },
            ],
      interfaces: [{ name: "ext0", addresses: ["192.0.2.1/24"] }],
    },
  });
  const apply = (marked: boolean, hostDscp?: number) =>
    applyDataplane(renderDataplane(input(marked, hostDscp)), { netns: node.name, fib });

  /**
   * Starts tshark in `ns` on `iface` for UDP to port 9999, runs `send` (again each second: the
   * first datagrams may go out before the capture is attached), and returns each captured
   * datagram as "source dscp" (tshark stops after `count` packets or 30 s).
   */
  const capture = (ns: Netns, iface: string, count: number, send: () => void) =>
    tsharkWhile(
      ns,
      ["-i", iface, "-f", "udp dst port 9999", "-c", String(count), "-a", "duration:30"].concat([
        "-T",
        "fields",
        "-e",
        "ip.src",
        "-e",
        "ip.dsfield.dscp",
      ]),
      send,
      children,
    );

  const sendFrom = (app: "a" | "b" | "c" | "node", to: string) =>
    runSync("ip", [
      ...["netns", "exec", app === "node" ? node.name : pods[app].name],
      ...["python3", "-c", SENDER, to],
    ]);

  beforeAll(async () => {
    node = Netns.create("dsn");
    outside = Netns.create("dso");
    linkOutside(node, outside, { node4: "192.0.2.1", outside4: OUTSIDE, back: { v4: true } });
    for (const app of ["a", "b", "c"] as const)
      pods[app] = addPod(node, `ds${app}`, PODS[app].iface, PODS[app].v4);
    fib = await KernelFib.open({ netns: node.name, protocols: [202], watch: false });
  }, HANG_MS);

  afterAll(async () => {
    await closePodLab(children, fib, pods, outside, node);
  });

  it("marks A's and B's traffic leaving the cluster with their code points, C's not", async () => {
    await apply(true);
    const mangle = node.exec("iptables-nft-save", "-t", "mangle");
    expect(mangle).toContain("-A POSTROUTING -j ocl-POSTROUTING");
    expect(mangle).toContain(
      "-A ocl-POSTROUTING -m set --match-set ocl-dscp-src-net src -m set ! --match-set ocl-all-ipam-pools dst -m addrtype ! --dst-type LOCAL -j ocl-egress-dscp",
    );
    expect(mangle).toContain(`-A ocl-egress-dscp -s ${PODS.a.v4}/32 -j DSCP --set-dscp 0x2e`);
    expect(mangle).toContain(`-A ocl-egress-dscp -s ${PODS.b.v4}/32 -j DSCP --set-dscp 0x0a`);
    expect(node.exec("ipset", "list", "ocl-dscp-src-net")).toContain(`${PODS.a.v4}`);
    expect((await apply(true)).changes).toEqual([]);
    const seen = await capture(outside, "eth0", 9, () => {
      for (const app of ["a", "b", "c"] as const) sendFrom(app, OUTSIDE);
    });
    console.log(`to the outside host (source dscp): ${JSON.stringify(seen)}`);
    // Every datagram of each pod with its code point, and each pod seen.
    expect(new Set(seen)).toEqual(
      new Set([`${PODS.a.v4} 46`, `${PODS.b.v4} 10`, `${PODS.c.v4} 0`]),
    );
  });

  it("leaves A's traffic to another pod (inside the pool) unmarked", async () => {
    const seen = await capture(pods.c, "eth0", 3, () => sendFrom("a", PODS.c.v4));
    console.log(`A to C (source dscp): ${JSON.stringify(seen)}`);
    expect(seen).toEqual(Array(3).fill(`${PODS.a.v4} 0`));
  });

  it("without the field the chains and set are gone and A's traffic leaves unmarked", async () => {
    await apply(false);
    const mangle = node.exec("iptables-nft-save", "-t", "mangle");
    expect(mangle).not.toContain("ocl-egress-dscp");
    expect(mangle).not.toContain("DSCP");
    expect(node.exec("ipset", "list", "-n")).not.toContain("ocl-dscp-src-net");
    const seen = await capture(outside, "eth0", 3, () => sendFrom("a", OUTSIDE));
    console.log(`to the outside host after removal: ${JSON.stringify(seen)}`);
    expect(seen).toEqual(Array(3).fill(`${PODS.a.v4} 0`));
  });

  it("a HostEndpoint's DSCP annotation (CS1): the node's own datagrams from its expectedIP leave with 8", async () => {
    await apply(false, 8);
    expect(node.exec("iptables-nft-save", "-t", "mangle")).toContain(
      "-A ocl-egress-dscp -s 192.0.2.1/32 -j DSCP --set-dscp 0x08",
    );
    const seen = await capture(outside, "eth0", 3, () => sendFrom("node", OUTSIDE));
    console.log(`the node's own datagrams (source dscp): ${JSON.stringify(seen)}`);
    expect(seen).toEqual(Array(3).fill("192.0.2.1 8"));
  });
});
