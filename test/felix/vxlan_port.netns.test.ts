// FelixConfiguration vxlanPort and vxlanVNI on two nodes, applied by the agent (renderDataplane +
// applyDataplane with the overlay) in two node namespaces on one link, each with a pod in a VXLAN
// (Always) pool's block of its own. tshark on node2's link decodes the tunnel's packets (UDP
// destination port and VNI) while pod1 pings pod2:
// - defaults: UDP 4789, VNI 4096, the ping answered;
// - vxlanPort 4790 and vxlanVNI 5000 on both nodes: the device is made again with them
//   (`ip -j -d link` reads them back), the ping answered over UDP 4790 with VNI 5000;
// - only node1 moved to 4791: node2's device does not listen there, the ping is lost (as in
//   Calico, the setting must agree across nodes: a cluster-wide FelixConfiguration).
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDataplane } from "../../src/felix/apply.js";
import { renderDataplane } from "../../src/felix/dataplane.js";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { tsharkWhile } from "../helpers/capture.js";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { link, Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";
import { addPod, ping } from "../helpers/pods.js";

const reason =
  netnsUnavailableReason() ??
  addonUnavailableReason() ??
  (runSync("tshark", ["--version"]).status === 0 ? undefined : "tshark is not installed");
const skip = skipWithReason("FelixConfiguration vxlanPort / vxlanVNI (netns)", reason);

const POOL = {
  name: "vx",
  cidr: "10.72.0.0/16",
  vxlanMode: "Always" as const,
  ipipMode: "Never" as const,
};
const NODES = [
  {
    name: "node1",
    ipv4Address: "192.0.2.1/24",
    vxlanV4: { address: "10.72.0.1", mac: "66:00:00:00:00:01" },
    block: "10.72.0.0/26",
    pod: { iface: "oclvxaaaaaaaaa", v4: "10.72.0.2" },
  },
  {
    name: "node2",
    ipv4Address: "192.0.2.2/24",
    vxlanV4: { address: "10.72.0.65", mac: "66:00:00:00:00:02" },
    block: "10.72.0.64/26",
    pod: { iface: "oclvxbbbbbbbbb", v4: "10.72.0.66" },
  },
];

describe.skipIf(skip)("FelixConfiguration vxlanPort and vxlanVNI on two nodes", () => {
  const ns: Netns[] = [];
  const pods: Netns[] = [];
  const fibs: KernelFib[] = [];
  const children: ChildProcess[] = [];

  const apply = (i: number, vxlan?: { port?: number; vni?: number }) => {
    const me = NODES[i] as (typeof NODES)[number];
    return applyDataplane(
      renderDataplane({
        workloads: [
          { id: `default/pod${i}`, hostIface: me.pod.iface, ipv4: [me.pod.v4], ipv6: [] },
        ],
        blocks: [me.block],
        pools: [{ cidr: POOL.cidr, natOutgoing: false }],
        overlay: {
          node: me.name,
          nodes: NODES.map(({ name, ipv4Address, vxlanV4 }) => ({ name, ipv4Address, vxlanV4 })),
          pools: [POOL],
          blocks: NODES.map((n) => ({ cidr: n.block, node: n.name })),
          fabric: { 4: { name: "eth0", mtu: 1500 } },
          ...(vxlan !== undefined ? { vxlan } : {}),
        },
      }),
      { netns: (ns[i] as Netns).name, fib: fibs[i] as KernelFib },
    );
  };

  /** The VXLAN device's VNI and port as the kernel has them. */
  const device = (i: number) => {
    const [l] = (ns[i] as Netns).ipJson<
      { linkinfo?: { info_data?: { id?: number; port?: number } } }[]
    >("-d", "link", "show", "vxlan.ocelot");
    return { vni: l?.linkinfo?.info_data?.id, port: l?.linkinfo?.info_data?.port };
  };

  /** Pings pod2 from pod1 while tshark on node2's link prints "udp-port vni" of the tunnel's packets. */
  async function pingCaptured(port: number, expected: boolean) {
    const to = NODES[1]?.pod.v4 as string;
    let answered = false;
    const seen = await tsharkWhile(
      ns[1] as Netns,
      ["-i", "eth0", "-f", `udp dst port ${port}`, "-d", `udp.port==${port},vxlan`].concat([
        "-c",
        "1",
        "-a",
        "duration:30",
        "-T",
        "fields",
        "-e",
        "udp.dstport",
        "-e",
        "vxlan.vni",
      ]),
      // The filter may attach after the first echo went by: echo again until one is captured.
      (first) => {
        if (first) answered = ping(pods[0] as Netns, to, expected);
        else ping(pods[0] as Netns, to, false);
      },
      children,
    );
    return { answered, seen: seen.join(" ") };
  }

  beforeAll(async () => {
    for (const [i, n] of NODES.entries()) {
      ns.push(Netns.create(`vxn${i + 1}`));
      pods.push(addPod(ns[i] as Netns, `vxp${i + 1}`, n.pod.iface, n.pod.v4));
    }
    link(
      ns[0] as Netns,
      "eth0",
      NODES[0]?.ipv4Address,
      ns[1] as Netns,
      "eth0",
      NODES[1]?.ipv4Address,
    );
    for (const i of [0, 1]) {
      // A default route: proxy ARP answers the pods' gateway 169.254.1.1 only when it is routable.
      (ns[i] as Netns).ip("route", "add", "default", "via", i === 0 ? "192.0.2.2" : "192.0.2.1");
      fibs.push(await KernelFib.open({ netns: (ns[i] as Netns).name, protocols: [202] }));
    }
  }, HANG_MS);

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    for (const f of fibs) await f.close();
    for (const p of [...pods, ...ns]) p?.destroy();
  });

  it("defaults: UDP 4789 and VNI 4096, the ping answered", async () => {
    await apply(0);
    await apply(1);
    expect(device(0)).toEqual({ vni: 4096, port: 4789 });
    const r = await pingCaptured(4789, true);
    console.log(`defaults: answered ${r.answered}, tunnel packet (port vni): ${r.seen}`);
    expect(r).toEqual({ answered: true, seen: "4789 4096" });
  });

  it("vxlanPort 4790 and vxlanVNI 5000 on both: the devices are made again, the ping goes over UDP 4790 with VNI 5000", async () => {
    const a = await apply(0, { port: 4790, vni: 5000 });
    await apply(1, { port: 4790, vni: 5000 });
    console.log(`node1's changes: ${a.changes.filter((c) => c.includes("vxlan")).join("; ")}`);
    expect(device(0)).toEqual({ vni: 5000, port: 4790 });
    expect(device(1)).toEqual({ vni: 5000, port: 4790 });
    const r = await pingCaptured(4790, true);
    console.log(`4790/5000: answered ${r.answered}, tunnel packet (port vni): ${r.seen}`);
    expect(r).toEqual({ answered: true, seen: "4790 5000" });
    expect((await apply(0, { port: 4790, vni: 5000 })).changes).toEqual([]);
  });

  it("node1 alone on 4791: node2 does not listen there, the ping is lost", async () => {
    await apply(0, { port: 4791, vni: 5000 });
    expect(device(0).port).toBe(4791);
    const r = await pingCaptured(4791, false);
    console.log(
      `node1 on 4791, node2 on 4790: answered ${r.answered}, seen on the wire: ${r.seen}`,
    );
    expect(r).toEqual({ answered: false, seen: "4791 5000" });
  });
});
