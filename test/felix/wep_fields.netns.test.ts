// WorkloadEndpoint ipNATs, allowSpoofedSourcePrefixes and qosControls applied by the agent
// (renderDataplane + applyDataplane) in a node namespace with three pods and an outside host:
// - floating IP: the outside host connects to 203.0.113.5 and reaches pod A, which sees the
//   host's real address; A's own connections keep A's address (Calico SNATs only a pod reaching
//   its own floating IP, which A then sees coming from 203.0.113.5); the nat chains read back;
// - spoofing: pod B sends UDP from 198.51.100.7 (not its address): dropped by rp_filter without
//   the allowance; with 198.51.100.0/24 allowed it arrives, while 198.51.99.9 is still dropped
//   by the iptables RPF check (counted at the outside host and in the node's raw table);
// - bandwidth: iperf3 from the outside host to pod C (3 s runs) before and with
//   ingressBandwidth 10 Mbit/s, and from C with egressBandwidth 5 Mbit/s; the buckets read back
//   with `tc -j qdisc show`;
// - limits: pod D with ingressMaxConnections 2 resets a third connection; its pings at 100/s
//   with egressPacketRate 10 (burst 5) are thinned;
// a second apply changes nothing; without the fields the chains, buckets and ifb are gone.
import { type ChildProcess, spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDataplane } from "../../src/felix/apply.js";
import { type DataplaneInput, renderDataplane } from "../../src/felix/dataplane.js";
import { ifbName } from "../../src/felix/qos.js";
import type { Workload } from "../../src/felix/workload.js";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import { addPod, closePodLab, connectSeen, linkOutside } from "../helpers/pods.js";

const reason =
  netnsUnavailableReason() ??
  addonUnavailableReason() ??
  (runSync("iperf3", ["--version"]).status === 0 ? undefined : "iperf3 is not installed");
const skip = skipWithReason("WorkloadEndpoint fields (netns)", reason);

const PODS = {
  a: { iface: "oclwfaaaaaaaaa", v4: "10.65.0.2" },
  b: { iface: "oclwfbbbbbbbbb", v4: "10.65.0.3" },
  c: { iface: "oclwfccccccccc", v4: "10.65.0.4" },
  d: { iface: "oclwfddddddddd", v4: "10.65.0.5" },
};
const OUTSIDE = "192.0.2.10";
const FLOATING = "203.0.113.5";
const SPOOF_OK = "198.51.100.7";
const SPOOF_BAD = "198.51.99.9";
const MBIT = 1_000_000;

/** Listens (the kernel completes handshakes without accept()) for 60 s. */
const HOLDER = `
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16); print("ready", flush=True); time.sleep(60)`;
/** Opens 3 connections and keeps them: "ok" or "reset" each. */
const OPENER = `
import socket, sys
socks, out = [], []
for _ in range(3):
    try:
        socks.append(socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)); out.append("ok")
    except ConnectionRefusedError:
        out.append("reset")
    except OSError as e:
        out.append(type(e).__name__)
print(" ".join(out))`;
/** Sends 5 UDP datagrams from a given source address. */
const SENDER = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 0))
for _ in range(5): s.sendto(b"x", (sys.argv[2], 9999))`;

describe.skipIf(skip)("WorkloadEndpoint ipNATs, allowSpoofedSourcePrefixes, qosControls", () => {
  let node: Netns;
  let outside: Netns;
  const pods: Record<"a" | "b" | "c" | "d", Netns> = {} as never;
  let fib: KernelFib;
  const children: ChildProcess[] = [];

  const workload = (app: "a" | "b" | "c" | "d", extra: Partial<Workload> = {}): Workload => ({
    id: `default/${app}`,
    hostIface: PODS[app].iface,
    ipv4: [PODS[app].v4],
    ipv6: [],
    ...extra,
  });
  const input = (fields: boolean): DataplaneInput => ({
    workloads: [
      workload("a", fields ? { floatingIps: [{ internal: PODS.a.v4, external: FLOATING }] } : {}),
      workload("b", fields ? { spoofPrefixes: ["198.51.100.0/24"] } : {}),
      workload(
        "c",
        fields
          ? {
              qos: {
                ingressBandwidth: 10 * MBIT,
                ingressBurst: 1 * MBIT,
                egressBandwidth: 5 * MBIT,
                egressBurst: 1 * MBIT,
              },
            }
          : {},
      ),
      workload(
        "d",
        fields
          ? { qos: { ingressMaxConnections: 2, egressPacketRate: 10, egressPacketBurst: 5 } }
          : {},
      ),
    ],
    pools: [{ cidr: "10.65.0.0/16", natOutgoing: false }],
  });
  const apply = (fields: boolean) =>
    applyDataplane(renderDataplane(input(fields)), { netns: node.name, fib });

  /** Datagrams counted by the outside host's rule for this source, so far. */
  function received(src: string): number {
    const save = outside.exec("iptables-nft-save", "-c", "-t", "filter");
    const m = new RegExp(`\\[(\\d+):\\d+\\] -A INPUT -s ${src}/32 -p udp`).exec(save);
    return m ? Number(m[1]) : 0;
  }

  function sendFrom(src: string): void {
    runSync("ip", ["netns", "exec", pods.b.name, "python3", "-c", SENDER, src, OUTSIDE]);
  }

  /** One bounded 3 s iperf3 run from the outside host to C (reverse: C sends); bits/s. */
  function iperf(reverse: boolean): number {
    const r = runSync("ip", [
      ...["netns", "exec", outside.name, "iperf3", "-c", PODS.c.v4, "-p", "5201"],
      ...["-t", "3", "-J", ...(reverse ? ["-R"] : [])],
    ]);
    const j = JSON.parse(r.stdout) as {
      error?: string;
      end?: { sum_received?: { bits_per_second: number } };
    };
    if (j.error !== undefined) throw new Error(`iperf3: ${j.error}`);
    return j.end?.sum_received?.bits_per_second ?? 0;
  }

  /** iperf() again while the server is busy with the previous run (it serves one at a time). */
  const iperfRetried = (reverse: boolean) =>
    waitFor(`iperf3 ${reverse ? "from" : "to"} C`, () => {
      try {
        return iperf(reverse);
      } catch {
        return undefined;
      }
    });

  beforeAll(async () => {
    node = Netns.create("wfn");
    outside = Netns.create("wfo");
    linkOutside(node, outside, { node4: "192.0.2.1", outside4: OUTSIDE, back: { v4: true } });
    for (const src of [SPOOF_OK, SPOOF_BAD])
      outside.exec("iptables-nft", "-A", "INPUT", "-s", src, "-p", "udp", "--dport", "9999");
    for (const app of ["a", "b", "c", "d"] as const) {
      pods[app] = addPod(node, `wf${app}`, PODS[app].iface, PODS[app].v4);
    }
    // B's foreign sources, as a VM or privileged pod would hold them.
    for (const a of [SPOOF_OK, SPOOF_BAD]) pods.b.ip("addr", "add", `${a}/32`, "dev", "lo");
    const [cmd, args] = pods.c.wrap("iperf3", "-s", "-p", "5201");
    children.push(spawn(cmd, args, { stdio: "ignore" }));
    fib = await KernelFib.open({ netns: node.name, protocols: [202], watch: false });
  }, HANG_MS);

  afterAll(async () => {
    await closePodLab(children, fib, pods, outside, node);
  });

  it("without the fields: no floating IP, B's foreign sources dropped, C at full speed", async () => {
    await apply(false);
    sendFrom(SPOOF_OK);
    expect(received(SPOOF_OK)).toBe(0);
    const full = await iperfRetried(false);
    console.log(`iperf3 to C without limits: ${(full / MBIT).toFixed(0)} Mbit/s`);
    expect(full).toBeGreaterThan(50 * MBIT);
  });

  it("floating IP: the outside host reaches A at 203.0.113.5 and A sees its real address", async () => {
    const r = await apply(true);
    expect(r.changes).toContain(`route ${FLOATING}/32 unicast added`);
    const nat = node.exec("iptables-nft-save", "-t", "nat");
    expect(nat).toContain(
      `-A ocl-fip-dnat -d ${FLOATING}/32 -j DNAT --to-destination ${PODS.a.v4}`,
    );
    expect(nat).toContain(
      `-A ocl-fip-snat -s ${PODS.a.v4}/32 -d ${PODS.a.v4}/32 -j SNAT --to-source ${FLOATING}`,
    );
    expect(nat).toMatch(/-A PREROUTING -j ocl-PREROUTING/);
    expect(nat).toMatch(/-A OUTPUT -j ocl-OUTPUT/);
    const route = node.ipJson<{ dev: string }[]>("route", "show", `${FLOATING}/32`);
    expect(route[0]?.dev).toBe(PODS.a.iface);
    const inbound = await connectSeen(pods.a, outside, FLOATING, 8080, children);
    expect(inbound.serverSaw).toBe(OUTSIDE);
    // The node itself (nat OUTPUT) reaches it too.
    expect((await connectSeen(pods.a, node, FLOATING, 8081, children)).serverSaw).toBe("192.0.2.1");
  });

  it("floating IP: A's own connections keep its address; to its floating IP it is seen from it", async () => {
    const out = await connectSeen(outside, pods.a, OUTSIDE, 8082, children);
    expect(out.serverSaw).toBe(PODS.a.v4);
    const hairpin = await connectSeen(pods.a, pods.a, FLOATING, 8083, children);
    expect(hairpin.serverSaw).toBe(FLOATING);
  });

  it("spoofing: 198.51.100.0/24 allowed from B arrives, 198.51.99.9 is still dropped", () => {
    expect(node.exec("sysctl", "-n", `net.ipv4.conf.${PODS.b.iface}.rp_filter`).trim()).toBe("0");
    expect(node.exec("sysctl", "-n", `net.ipv4.conf.${PODS.a.iface}.rp_filter`).trim()).toBe("1");
    const before = received(SPOOF_OK);
    sendFrom(SPOOF_OK);
    sendFrom(SPOOF_BAD);
    expect(received(SPOOF_OK) - before).toBe(5);
    expect(received(SPOOF_BAD)).toBe(0);
    const raw = node.exec("iptables-nft-save", "-c", "-t", "raw");
    expect(raw).toContain(`-A ocl-rpf-check -s 198.51.100.0/24 -i ${PODS.b.iface} -j RETURN`);
    const drop = new RegExp(
      `\\[(\\d+):\\d+\\] -A ocl-rpf-check -i ${PODS.b.iface} -m rpfilter --invert -j DROP`,
    ).exec(raw);
    console.log(`spoofing: 5 of 5 allowed arrived; node's RPF drops: ${drop?.[1]}`);
    expect(Number(drop?.[1])).toBeGreaterThanOrEqual(5);
  });

  it("bandwidth: C's buckets read back, and iperf3 runs hold the limits", async () => {
    const qdiscs = JSON.parse(node.exec("tc", "-j", "qdisc", "show")) as {
      kind: string;
      dev: string;
      root?: boolean;
      options?: { rate?: number };
    }[];
    const rootOf = (dev: string) => qdiscs.find((q) => q.dev === dev && q.root);
    expect(rootOf(PODS.c.iface)).toMatchObject({ kind: "tbf", options: { rate: 1_250_000 } });
    expect(rootOf(ifbName(PODS.c.iface))).toMatchObject({
      kind: "tbf",
      options: { rate: 625_000 },
    });
    expect(qdiscs.some((q) => q.dev === PODS.c.iface && q.kind === "ingress")).toBe(true);
    const to = await iperfRetried(false);
    const from = await iperfRetried(true);
    console.log(
      `iperf3 3 s: to C ${(to / MBIT).toFixed(2)} Mbit/s (limit 10), from C ${(from / MBIT).toFixed(2)} Mbit/s (limit 5); load ${runSync("cat", ["/proc/loadavg"]).stdout.trim()}`,
    );
    expect(to).toBeLessThan(10 * MBIT * 1.3);
    expect(to).toBeGreaterThan(10 * MBIT * 0.3);
    expect(from).toBeLessThan(5 * MBIT * 1.3);
    expect(from).toBeGreaterThan(5 * MBIT * 0.3);
  });

  it("connection limit and packet rate: a third connection to D is reset, D's pings are thinned", async () => {
    const filter = node.exec("iptables-nft-save", "-t", "filter");
    expect(filter).toContain(
      `-A ocl-qi-${PODS.d.iface} -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m connlimit --connlimit-above 2 --connlimit-mask 0 --connlimit-saddr -j REJECT --reject-with tcp-reset`,
    );
    expect(filter).toContain(`-A ocl-qo-${PODS.d.iface} -m limit --limit 10/sec -j RETURN`);
    const [cmd, args] = pods.d.wrap("python3", "-c", HOLDER, "8090");
    const holder = spawn(cmd, args, { stdio: ["ignore", "pipe", "ignore"] });
    children.push(holder);
    let ready = "";
    holder.stdout?.on("data", (d) => {
      ready += d;
    });
    await waitFor("D's listener", () => ready.includes("ready"));
    const opened = runSync("ip", [
      ...["netns", "exec", outside.name, "python3", "-c", OPENER, PODS.d.v4, "8090"],
    ]).stdout.trim();
    holder.kill("SIGKILL");
    // 50 pings at 100/s from D: the burst of 5 and about 10 a second pass.
    const ping = runSync("ip", [
      ...["netns", "exec", pods.d.name, "ping", "-q", "-i", "0.01", "-c", "50", "-W", "1", OUTSIDE],
    ]).stdout;
    const got = Number(/(\d+) received/.exec(ping)?.[1]);
    console.log(
      `connections to D (limit 2): ${opened}; pings from D at 100/s (limit 10/s, burst 5): ${got} of 50`,
    );
    expect(opened).toBe("ok ok reset");
    expect(got).toBeGreaterThanOrEqual(5);
    expect(got).toBeLessThan(25);
  });

  it("a second apply changes nothing (NAT, raw, tc and sysctls read back as rendered)", async () => {
    expect((await apply(true)).changes).toEqual([]);
  });

  it("without the fields again: chains, route, buckets and ifb are gone", async () => {
    await apply(false);
    expect(node.exec("iptables-nft-save", "-t", "nat")).not.toContain("ocl-fip");
    expect(node.exec("iptables-nft-save", "-t", "raw")).not.toContain("ocl-rpf-check");
    expect(node.ip("route", "show", `${FLOATING}/32`).trim()).toBe("");
    const qdiscs = node.exec("tc", "-j", "qdisc", "show");
    expect(qdiscs).not.toContain('"tbf"');
    expect(node.ip("link", "show", "type", "ifb")).not.toContain(ifbName(PODS.c.iface));
    expect(node.exec("iptables-nft-save", "-t", "filter")).not.toContain("ocl-q");
    expect(node.exec("sysctl", "-n", `net.ipv4.conf.${PODS.b.iface}.rp_filter`).trim()).toBe("1");
    const before = received(SPOOF_OK);
    sendFrom(SPOOF_OK);
    expect(received(SPOOF_OK) - before).toBe(0);
  });
});
