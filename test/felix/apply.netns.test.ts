// The agent's apply against the real kernel in namespaces of ours: everything read back with
// iptables-save, ipset save, `ip -j route`/`ip -j link` and sysctl; idempotence, drift repair
// that never touches others' rules, and real traffic proving NAT-outgoing and its exclusions.
import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDataplane } from "../../src/felix/apply.js";
import { type DataplaneInput, renderDataplane } from "../../src/felix/dataplane.js";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { workloadIfaceName } from "../../src/lib/pod_wiring.js";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { link, Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("felix apply (netns)", reason);

const POOL = "10.244.0.0/16";
const N1 = "10.255.0.11";
const N2 = "10.255.0.12";
const OUT_GW = "198.51.100.1"; // node1's address towards the outside
const OUTSIDE = "198.51.100.2";
const POD1 = "10.244.1.2";
const POD2 = "10.244.2.2";

/** What the CNI plugin does (not the agent): the veth and the pod's side of it. */
function cniWire(node: Netns, pod: Netns, hostIface: string, ip: string): void {
  node.ip("link", "add", hostIface, "type", "veth", "peer", "name", "eth0", "netns", pod.name);
  pod.ip("addr", "add", `${ip}/32`, "dev", "eth0");
  pod.ip("link", "set", "eth0", "up");
  pod.ip("route", "add", "169.254.1.1", "dev", "eth0", "scope", "link");
  pod.ip("route", "add", "default", "via", "169.254.1.1", "dev", "eth0");
}

function input(node: string, pod: string, ip: string, block: string): DataplaneInput {
  return {
    workloads: [{ id: `${node}/default/${pod}`, ipv4: [ip], ipv6: [] }],
    blocks: [block],
    pools: [{ cidr: POOL, natOutgoing: true }],
    clusterCidrs: ["10.96.0.0/12"],
    nodeAddresses: [N1, N2],
  };
}

// A UDP echo that answers with the source address it saw; both ends bounded in time.
const ECHO_SERVER = `const s=require("dgram").createSocket("udp4");s.on("message",(m,r)=>s.send(r.address,r.port,r.address,()=>process.exit(0)));s.bind(7777,()=>console.log("ready"));setTimeout(()=>process.exit(1),5000);`;
const ECHO_CLIENT = `const s=require("dgram").createSocket("udp4");s.on("message",(m)=>{console.log(String(m));process.exit(0)});const t=()=>s.send("x",7777,process.argv[1]);t();setInterval(t,200);setTimeout(()=>process.exit(1),3000);`;

/** The source address `to` saw for a datagram from `from`, or null without an answer. */
async function seenSource(from: Netns, to: Netns, toIp: string): Promise<string | null> {
  const server = spawn("ip", ["netns", "exec", to.name, process.execPath, "-e", ECHO_SERVER], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  try {
    await new Promise<void>((resolve) => {
      server.stdout?.once("data", () => resolve());
      server.once("exit", () => resolve());
    });
    const r = runSync(
      "ip",
      ["netns", "exec", from.name, process.execPath, "-e", ECHO_CLIENT, toIp],
      { encoding: "utf8", timeout: HANG_MS },
    );
    return r.status === 0 ? r.stdout.trim() : null;
  } finally {
    if (server.exitCode === null) server.kill();
  }
}

/** Our kernel state in a namespace, read back, without counters and timestamps. */
function snapshot(ns: Netns): string {
  const save = ns
    .exec("iptables-nft-save")
    .split("\n")
    .filter((l) => !l.startsWith("#"))
    .join("\n");
  const sets = ns.exec("ipset", "save").replace(/ initval 0x[0-9a-f]+/g, "");
  const routes = JSON.stringify(ns.ipJson("route", "show", "proto", "202"));
  return `${save}\n${sets}\n${routes}`;
}

describe.skipIf(skip)("applyDataplane() in network namespaces", () => {
  let n1: Netns;
  let n2: Netns;
  let p1: Netns;
  let p2: Netns;
  let out: Netns;
  let fib1: KernelFib;
  let fib2: KernelFib;
  const if1 = workloadIfaceName("node1/default/pod1");
  const if2 = workloadIfaceName("node2/default/pod2");
  const state1 = renderDataplane(input("node1", "pod1", POD1, "10.244.1.0/26"));
  const state2 = renderDataplane(input("node2", "pod2", POD2, "10.244.2.0/26"));

  beforeAll(async () => {
    n1 = Netns.create("fxn1");
    n2 = Netns.create("fxn2");
    p1 = Netns.create("fxp1");
    p2 = Netns.create("fxp2");
    out = Netns.create("fxout");
    // Forwarding and pod-facing sysctls start off, so the agent has to set them.
    for (const n of [n1, n2]) n.exec("sysctl", "-qw", "net.ipv4.ip_forward=0");
    link(n1, "eth0", `${N1}/24`, n2, "eth0", `${N2}/24`);
    link(n1, "ext0", `${OUT_GW}/24`, out, "eth0", `${OUTSIDE}/24`);
    // The outside has no route to the pods or the fabric: only masqueraded traffic comes back.
    n1.ip("route", "add", "10.244.2.0/26", "via", N2);
    n2.ip("route", "add", "10.244.1.0/26", "via", N1);
    n2.ip("route", "add", "default", "via", N1);
    // Node1's default route leads outside (proxy ARP for 169.254.1.1 needs a route to it).
    n1.ip("route", "add", "default", "via", OUTSIDE);
    // A default DROP forward policy, as hardened hosts have: our ocl-FORWARD must let pods through.
    n1.exec("iptables-nft", "-P", "FORWARD", "DROP");
    cniWire(n1, p1, if1, POD1);
    cniWire(n2, p2, if2, POD2);
    fib1 = await KernelFib.open({ netns: n1.name, protocols: [202], watch: false });
    fib2 = await KernelFib.open({ netns: n2.name, protocols: [202], watch: false });
  });

  afterAll(async () => {
    await fib1?.close();
    await fib2?.close();
    for (const ns of [p1, p2, out, n1, n2]) ns?.destroy();
  });

  it("applies routes, links, sysctls, ipsets and chains, all read back from the kernel", async () => {
    const r = await applyDataplane(state1, { netns: n1.name, fib: fib1 });
    await applyDataplane(state2, { netns: n2.name, fib: fib2 });
    expect(r.missingIfaces).toEqual([]);
    expect(r.changes).toContain("sysctl net.ipv4.ip_forward=1 (was 0)");

    const routes = n1.ipJson<{ dst: string; dev?: string; scope?: string; type?: string }[]>(
      "route",
      "show",
      "proto",
      "202",
    );
    expect(routes).toContainEqual(expect.objectContaining({ dst: POD1, dev: if1, scope: "link" }));
    expect(routes).toContainEqual(
      expect.objectContaining({ dst: "10.244.1.0/26", type: "blackhole" }),
    );
    expect(routes).toHaveLength(2);

    const [l] = n1.ipJson<{ address: string; flags: string[] }[]>("link", "show", "dev", if1);
    expect(l.address).toBe("ee:ee:ee:ee:ee:ee");
    expect(l.flags).toContain("UP");
    const sysctl = (k: string) => n1.exec("sysctl", "-n", k).trim();
    expect(sysctl(`net.ipv4.conf.${if1}.proxy_arp`)).toBe("1");
    expect(sysctl(`net.ipv4.neigh.${if1}.proxy_delay`)).toBe("0");
    expect(sysctl(`net.ipv4.conf.${if1}.rp_filter`)).toBe("1");
    expect(sysctl("net.ipv4.ip_forward")).toBe("1");

    const sets = n1.exec("ipset", "save");
    expect(sets).toContain(`add ocl-masq-ipam-pools ${POOL}`);
    expect(sets).toContain(`add ocl-all-ipam-pools ${POOL}`);
    expect(sets).toMatch(/add ocl-all-hosts-net 10\.255\.0\.12\b/);

    const nat = n1.exec("iptables-nft-save", "-t", "nat");
    expect(nat).toContain("-A POSTROUTING -j ocl-POSTROUTING");
    expect(nat).toContain("-A ocl-nat-outgoing -d 10.96.0.0/12 -j RETURN");
    expect(nat).toContain(
      "-A ocl-nat-outgoing -m set --match-set ocl-masq-ipam-pools src -m set ! --match-set ocl-all-ipam-pools dst -j MASQUERADE",
    );
    const filter = n1.exec("iptables-nft-save", "-t", "filter");
    expect(filter).toContain("-A FORWARD -j ocl-FORWARD");
    expect(filter).toContain("-A ocl-FORWARD -i ocl+ -j ACCEPT");
  });

  it("changes nothing when applied a second time", async () => {
    const before = snapshot(n1);
    const r = await applyDataplane(state1, { netns: n1.name, fib: fib1 });
    expect(r.changes).toEqual([]);
    expect(r.iptables).toEqual([]);
    expect(r.ipsets).toBeNull();
    expect(snapshot(n1)).toBe(before);
  });

  it("masquerades pod traffic to the outside to the node's address", async () => {
    expect(await seenSource(p1, out, OUTSIDE)).toBe(OUT_GW);
  });

  it("never masquerades pod traffic to pods or nodes", async () => {
    expect(await seenSource(p1, p2, POD2)).toBe(POD1);
    expect(await seenSource(p2, p1, POD1)).toBe(POD2);
    expect(await seenSource(p1, n2, N2)).toBe(POD1);
    // Node to pod keeps the node's own address too.
    expect(await seenSource(n2, p1, POD1)).toBe(N2);
  });

  it("repairs drift of ours and leaves others' rules and chains alone", async () => {
    // Others' rules in built-in chains and a chain of their own.
    n1.exec("iptables-nft", "-A", "FORWARD", "-s", "192.0.2.1/32", "-j", "DROP");
    n1.exec(
      "iptables-nft",
      "-t",
      "nat",
      "-A",
      "POSTROUTING",
      "-s",
      "192.0.2.0/24",
      "-j",
      "MASQUERADE",
    );
    n1.exec("iptables-nft", "-N", "FOREIGN");
    n1.exec("iptables-nft", "-A", "FOREIGN", "-j", "RETURN");
    // Drift: one of our rules deleted, a stale chain of ours hooked in, a hook moved down,
    // a sysctl flipped, an ipset member removed, a pod route removed.
    n1.exec(
      "iptables-nft",
      "-t",
      "nat",
      "-D",
      "ocl-nat-outgoing",
      "-d",
      "10.96.0.0/12",
      "-j",
      "RETURN",
    );
    n1.exec("iptables-nft", "-N", "ocl-stale");
    n1.exec("iptables-nft", "-A", "ocl-stale", "-j", "DROP");
    n1.exec("iptables-nft", "-A", "INPUT", "-j", "ocl-stale");
    n1.exec("iptables-nft", "-I", "FORWARD", "1", "-s", "192.0.2.9/32", "-j", "DROP");
    n1.exec("sysctl", "-qw", `net.ipv4.conf.${if1}.proxy_arp=0`);
    n1.exec("ipset", "del", "ocl-all-hosts-net", N2);
    n1.ip("route", "del", `${POD1}/32`, "proto", "202");
    n1.exec("ipset", "create", "ocl-old-set", "hash:net");
    n1.exec("ipset", "create", "foreign-set", "hash:net");

    const r = await applyDataplane(state1, { netns: n1.name, fib: fib1 });
    expect(r.changes).toEqual(
      expect.arrayContaining([
        `sysctl net.ipv4.conf.${if1}.proxy_arp=1 (was 0)`,
        "ipset ocl-all-hosts-net members differ",
        "iptables-nft filter: chain ocl-stale stale",
        "iptables-nft filter: hooks in FORWARD differ",
        "iptables-nft filter: hooks in INPUT differ",
        "iptables-nft nat: chain ocl-nat-outgoing differs",
        "ipset ocl-old-set stale, destroyed",
      ]),
    );

    const filter = n1.exec("iptables-nft-save", "-t", "filter");
    const nat = n1.exec("iptables-nft-save", "-t", "nat");
    expect(nat).toContain("-A ocl-nat-outgoing -d 10.96.0.0/12 -j RETURN");
    expect(filter).not.toContain("ocl-stale");
    const forward = filter.split("\n").filter((l) => l.startsWith("-A FORWARD "));
    expect(forward).toEqual([
      "-A FORWARD -j ocl-FORWARD",
      "-A FORWARD -s 192.0.2.9/32 -j DROP",
      "-A FORWARD -s 192.0.2.1/32 -j DROP",
    ]);
    expect(filter).toContain("-A FOREIGN -j RETURN");
    expect(nat).toContain("-A POSTROUTING -s 192.0.2.0/24 -j MASQUERADE");
    expect(n1.exec("sysctl", "-n", `net.ipv4.conf.${if1}.proxy_arp`).trim()).toBe("1");
    expect(n1.exec("ipset", "list", "-n").split("\n").sort()).toEqual([
      "",
      "foreign-set",
      "ocl-all-hosts-net",
      "ocl-all-ipam-pools",
      "ocl-masq-ipam-pools",
    ]);
    expect(n1.exec("ipset", "save", "ocl-all-hosts-net")).toMatch(/10\.255\.0\.12\b/);
    expect(
      n1.ipJson<{ dst: string }[]>("route", "show", "proto", "202").map((x) => x.dst),
    ).toContain(POD1);

    // And the next apply is quiet again.
    expect((await applyDataplane(state1, { netns: n1.name, fib: fib1 })).changes).toEqual([]);
    expect(await seenSource(p1, out, OUTSIDE)).toBe(OUT_GW);
  });

  it("without natOutgoing on the pool the outside cannot answer the pod", async () => {
    const noNat = renderDataplane({
      ...input("node1", "pod1", POD1, "10.244.1.0/26"),
      pools: [{ cidr: POOL, natOutgoing: false }],
    });
    const r = await applyDataplane(noNat, { netns: n1.name, fib: fib1 });
    expect(r.changes).toContain("ipset ocl-masq-ipam-pools members differ");
    expect(await seenSource(p1, out, OUTSIDE)).toBeNull();
    expect(await seenSource(p1, p2, POD2)).toBe(POD1);
  });

  it("swaps pool membership atomically and removes routes of a gone workload", async () => {
    const gone = renderDataplane({
      ...input("node1", "pod1", POD1, "10.244.1.0/26"),
      workloads: [],
      pools: [{ cidr: POOL, natOutgoing: false }],
    });
    const r = await applyDataplane(gone, { netns: n1.name, fib: fib1 });
    expect(r.changes).toContain(`route ${POD1}/32 removed`);
    expect(n1.exec("ipset", "save", "ocl-masq-ipam-pools")).not.toContain(POOL);
    expect(n1.exec("ipset", "list", "-n")).not.toContain("ocl-tmp-");
    expect(n1.ipJson<{ dst: string }[]>("route", "show", "proto", "202").map((x) => x.dst)).toEqual(
      ["10.244.1.0/26"],
    );
    expect(n1.exec("iptables-nft-save", "-t", "nat")).not.toContain("MASQUERADE -j");
    expect(n1.exec("iptables-nft-save", "-t", "nat")).not.toContain(
      "--match-set ocl-masq-ipam-pools",
    );
  });
});
