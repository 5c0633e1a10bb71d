// Host endpoint policy with real traffic, applied by the agent (applyDataplane) in a node
// namespace "host" with two links: hep0 to a BGP peer namespace "peer" (192.0.2.0/24) and hep1
// to a namespace "far" (198.51.100.0/24) that the host routes to. BIRD runs in host and peer
// with a real BGP session between them; TCP servers in host, peer and far count the connections
// they accept, so every connect is counted on both sides (the client's success, the server's
// accept count):
// - a deny-all host policy on hep0 cuts TCP 7000 both ways and pings, but Felix's failsafe
//   ports keep SSH (22) and BGP (179: the session comes back up after a restart), over IPv6
//   too; with empty failsafe lists the same policy cuts SSH and BGP too;
// - a HostEndpoint by expectedIPs finds hep0; `interfaceName: "*"` polices hep1 too but not lo;
// - applyOnForward policy applies to traffic forwarded through hep0, other policy does not;
// - preDNAT policy (mangle) matches the port before a DNAT rule rewrites it;
// - doNotTrack policy (raw) lets TCP 7000 through a deny-all policy untracked, when it allows
//   both directions, and not with the ingress half only;
// - kube-controllers' auto host endpoint ("*", profile projectcalico-default-allow) with no policy
//   lets everything through (to, from and through the host, BGP); a policy selecting it takes over.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDataplane, readHostInterfaces } from "../../src/felix/apply.js";
import { renderDataplane } from "../../src/felix/dataplane.js";
import type { HostPolicyInput } from "../../src/felix/host_endpoint.js";
import { fromGlobalNetworkPolicy, type Policy } from "../../src/felix/policy.js";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { autoHostEndpoint } from "../../src/k8s/auto_hep.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import {
  link,
  Netns,
  netnsUnavailableReason,
  skipWithReason,
  sleepSync,
  waitFor,
} from "../helpers/netns.js";
import { type BirdPeer, PeerLab, peersUnavailableReason } from "../helpers/peers.js";
import { ping, tcpConnects } from "../helpers/pods.js";

const reason =
  netnsUnavailableReason() ?? addonUnavailableReason() ?? peersUnavailableReason(["bird"]);
const skip = skipWithReason("host endpoints (netns, BIRD)", reason);

const HOST = "192.0.2.1";
const PEER = "192.0.2.2";
const HOST_FAR = "198.51.100.1";
const FAR = "198.51.100.2";
const HOST6 = "2001:db8:5::1";
const PEER6 = "2001:db8:5::2";

const SERVER = `
const net = require("node:net");
const fs = require("node:fs");
const [file, ...ports] = process.argv.slice(2);
const counts = {};
for (const p of ports) {
  counts[p] = 0;
  net.createServer((s) => {
    counts[p]++;
    fs.writeFileSync(file, JSON.stringify(counts));
    s.end();
  }).listen(Number(p), "::");
}
fs.writeFileSync(file, JSON.stringify(counts));
`;

const birdConf = (me: string, as: number, peer: string, peerAs: number) => `
log "@DIR@/bird.log" all;
router id ${me};
protocol device { }
protocol bgp p {
  local ${me} as ${as};
  neighbor ${peer} as ${peerAs};
  hold time 90;
  connect delay time 1; connect retry time 1;
  error wait time 1, 2;
  ipv4 { import none; export none; };
}
`;

const gnp = (name: string, spec: Record<string, unknown>): Policy =>
  fromGlobalNetworkPolicy({ metadata: { name }, spec: spec as never });

const DENY_ALL = gnp("deny-all", {
  selector: "role == 'node'",
  types: ["Ingress", "Egress"],
  ingress: [{ action: "Deny" }],
  egress: [{ action: "Deny" }],
});
const ALLOW_ALL = gnp("allow-all", {
  selector: "role == 'node'",
  order: 1000,
  types: ["Ingress", "Egress"],
  ingress: [{ action: "Allow" }],
  egress: [{ action: "Allow" }],
});

describe.skipIf(skip)("host endpoints applied in a namespace", () => {
  let lab: PeerLab;
  let host: Netns;
  let peer: Netns;
  let far: Netns;
  let fib: KernelFib;
  let birdHost: BirdPeer;
  let birdPeer: BirdPeer;
  const servers: number[] = [];
  const dir = mkdtempSync(join(tmpdir(), "ocelot-hep-"));
  const countsFile = (ns: string) => join(dir, `${ns}.json`);

  const apply = (host_: HostPolicyInput, policies: Policy[]) =>
    applyDataplane(
      renderDataplane({
        workloads: [],
        pools: [],
        policy: { endpoints: [], policies },
        host: host_,
      }),
      { netns: host.name, fib },
    );
  const hep0 = (extra: Partial<HostPolicyInput> = {}): HostPolicyInput => ({
    hostEndpoints: [{ name: "host-hep0", interfaceName: "hep0", labels: { role: "node" } }],
    ...extra,
  });
  const accepted = (ns: string, port: number): number => {
    // The server rewrites the file on each accept: a read may catch it half written.
    for (let i = 0; ; i++) {
      try {
        const counts = JSON.parse(readFileSync(countsFile(ns), "utf8")) as Record<string, number>;
        return counts[String(port)] ?? Number.NaN;
      } catch (err) {
        if (i >= 20) throw err;
        sleepSync(50);
      }
    }
  };
  /**
   * Connects and checks the server's count moved with the client's verdict (the server counts
   * after accept(), a moment after the client's handshake completes: polled, bounded).
   */
  const tcp = (
    from: Netns,
    to: { ns: string; ip: string },
    port: number,
    expected: boolean,
    serverPort = port,
  ) => {
    const before = accepted(to.ns, serverPort);
    const ok = tcpConnects(from, to.ip, port, expected);
    let counted = accepted(to.ns, serverPort) - before;
    for (let i = 0; i < (ok ? 100 : 5) && counted === 0; i++) {
      sleepSync(100);
      counted = accepted(to.ns, serverPort) - before;
    }
    expect(counted > 0).toBe(ok);
    return ok;
  };
  const H = { ns: "host", ip: HOST };
  const P = { ns: "peer", ip: PEER };
  const F = { ns: "far", ip: FAR };

  /**
   * Restarts the BGP session from the peer's side; whether it is Established again (waiting up
   * to a hang limit when expected, 10 s when not: without failsafe it can never come back).
   */
  const sessionUpAfterRestart = async (expected: boolean): Promise<boolean> => {
    birdPeer.cmd("restart", "p");
    sleepSync(500);
    if (!expected) {
      for (let i = 0; i < 50; i++) {
        if (birdPeer.state("p") === "Established") return true;
        sleepSync(200);
      }
      return false;
    }
    try {
      await waitFor("BGP Established", () => birdPeer.state("p") === "Established", 60_000, 200);
      return true;
    } catch {
      return false;
    }
  };

  beforeAll(async () => {
    lab = new PeerLab();
    host = Netns.create("hh");
    peer = Netns.create("hp");
    far = Netns.create("hf");
    link(host, "hep0", `${HOST}/24`, peer, "eth0", `${PEER}/24`);
    host.ip("addr", "add", `${HOST6}/64`, "dev", "hep0", "nodad");
    peer.ip("addr", "add", `${PEER6}/64`, "dev", "eth0", "nodad");
    link(host, "hep1", `${HOST_FAR}/24`, far, "eth0", `${FAR}/24`);
    peer.ip("route", "add", "default", "via", HOST);
    far.ip("route", "add", "default", "via", HOST_FAR);
    const script = join(dir, "server.cjs");
    writeFileSync(script, SERVER);
    for (const [ns, name, ports] of [
      [host, "host", ["22", "7000", "8080"]],
      [peer, "peer", ["8080"]],
      [far, "far", ["7000", "8080"]],
    ] as const) {
      const [cmd, args] = ns.wrap(process.execPath, script, countsFile(name), ...ports);
      const child = spawn(cmd, args, { stdio: "ignore", detached: true });
      child.unref();
      servers.push(child.pid as number);
      await waitFor(`${name} servers`, () => {
        try {
          return Object.keys(JSON.parse(readFileSync(countsFile(name), "utf8"))).length > 0;
        } catch {
          return false;
        }
      });
    }
    birdHost = lab.startBird(host, "bird-host", birdConf(HOST, 65001, PEER, 65002));
    birdPeer = lab.startBird(peer, "bird-peer", birdConf(PEER, 65002, HOST, 65001));
    fib = await KernelFib.open({ netns: host.name, protocols: [202], watch: false });
    await waitFor("BGP Established", () => birdPeer.state("p") === "Established", 60_000, 200);
    await waitFor("peer reaches host:7000", () => tcpConnects(peer, HOST, 7000, true));
  });

  afterAll(async () => {
    await fib?.close();
    for (const pid of servers) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {}
    }
    lab?.cleanup();
    for (const ns of [host, peer, far]) ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it("deny-all on hep0 cuts TCP and ICMP both ways; failsafe keeps SSH and BGP", async () => {
    await apply(hep0(), [DENY_ALL]);
    expect(tcp(peer, H, 7000, false)).toBe(false);
    expect(tcp(host, P, 8080, false)).toBe(false);
    expect(ping(peer, HOST, false)).toBe(false);
    expect(tcp(peer, H, 22, true)).toBe(true);
    expect(await sessionUpAfterRestart(true)).toBe(true);
    const save = host.exec("iptables-nft-save", "-t", "filter");
    expect(save).toContain("-A ocl-fh-hep0 -j ocl-failsafe-in");
    expect(save).toContain("-A ocl-failsafe-in -p tcp -m tcp --dport 179 -j ACCEPT");
    expect(save).toContain("-A ocl-failsafe-out -p tcp -m tcp --dport 179 -j ACCEPT");
    expect(save).toContain("-A ocl-from-host-endpoint -i hep0 -g ocl-fh-hep0");
    // The same over IPv6 (ip6tables; neighbour discovery is failsafe too).
    const H6 = { ns: "host", ip: HOST6 };
    expect(tcp(peer, H6, 22, true)).toBe(true);
    expect(tcp(peer, H6, 7000, false)).toBe(false);
    expect(host.exec("ip6tables-nft-save", "-t", "filter")).toContain(
      "-A ocl-failsafe-in -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT",
    );
    // hep1 has no host endpoint: untouched.
    expect(tcp(far, { ns: "host", ip: HOST_FAR }, 7000, true)).toBe(true);
  });

  it("with empty failsafe lists the same policy cuts SSH and BGP too", async () => {
    await apply(hep0({ failsafeInbound: [], failsafeOutbound: [] }), [DENY_ALL]);
    expect(tcp(peer, H, 22, false)).toBe(false);
    expect(await sessionUpAfterRestart(false)).toBe(false);
    // Failsafe back: the session comes up again.
    await apply(hep0(), [DENY_ALL]);
    await waitFor("BGP Established", () => birdPeer.state("p") === "Established", 60_000, 200);
    expect(birdHost.state("p")).toBe("Established");
  });

  it("a host endpoint with no policy denies all but failsafe (Calico's default)", async () => {
    await apply(hep0(), []);
    expect(tcp(peer, H, 7000, false)).toBe(false);
    expect(tcp(peer, H, 22, true)).toBe(true);
  });

  it("finds the interface by expectedIPs; allows what the policy allows", async () => {
    const interfaces = await readHostInterfaces({ netns: host.name });
    const allow7000 = gnp("allow-7000", {
      selector: "role == 'node'",
      types: ["Ingress", "Egress"],
      ingress: [{ action: "Allow", protocol: "TCP", destination: { ports: [7000] } }],
      egress: [{ action: "Allow" }],
    });
    const r = await apply(
      {
        hostEndpoints: [{ name: "by-ip", expectedIPs: [HOST], labels: { role: "node" } }],
        interfaces,
      },
      [allow7000],
    );
    expect(r.changes.join("\n")).toContain("ocl-fh-hep0");
    expect(tcp(peer, H, 7000, true)).toBe(true);
    expect(tcp(peer, H, 8080, false)).toBe(false);
  });

  it('interfaceName "*" polices every interface but loopback', async () => {
    const allow7000 = gnp("allow-7000", {
      selector: "role == 'node'",
      types: ["Ingress"],
      ingress: [{ action: "Allow", protocol: "TCP", destination: { ports: [7000] } }],
    });
    await apply(
      { hostEndpoints: [{ name: "all", interfaceName: "*", labels: { role: "node" } }] },
      [allow7000],
    );
    const HF = { ns: "host", ip: HOST_FAR };
    expect(tcp(far, HF, 7000, true)).toBe(true);
    expect(tcp(far, HF, 8080, false)).toBe(false);
    expect(tcp(peer, H, 8080, false)).toBe(false);
    expect(tcp(host, { ns: "host", ip: "127.0.0.1" }, 8080, true)).toBe(true);
    expect(host.exec("iptables-nft-save", "-t", "filter")).toContain(
      "-A ocl-from-host-endpoint -g ocl-fh-any",
    );
  });

  it("applyOnForward policy applies to traffic forwarded through hep0; other policy does not", async () => {
    const deny8080 = (applyOnForward: boolean) =>
      gnp("deny-8080", {
        selector: "role == 'node'",
        order: 10,
        applyOnForward,
        types: ["Ingress"],
        ingress: [{ action: "Deny", protocol: "TCP", destination: { ports: [8080] } }],
      });
    await apply(hep0(), [deny8080(false), ALLOW_ALL]);
    expect(tcp(peer, H, 8080, false)).toBe(false);
    expect(tcp(peer, F, 8080, true)).toBe(true);
    // Once an applyOnForward policy selects hep0, forwarded traffic meets the end of its tier:
    // what no applyOnForward policy allows is dropped (ALLOW_ALL does not apply on forward).
    await apply(hep0(), [deny8080(true), ALLOW_ALL]);
    expect(tcp(peer, F, 8080, false)).toBe(false);
    expect(tcp(peer, F, 7000, false)).toBe(false);
    await apply(hep0(), [deny8080(true), { ...ALLOW_ALL, applyOnForward: true }]);
    expect(tcp(peer, F, 8080, false)).toBe(false);
    expect(tcp(peer, F, 7000, true)).toBe(true);
    expect(host.exec("iptables-nft-save", "-t", "filter")).toContain(
      "-A ocl-from-hep-forward -i hep0 -g ocl-fhfw-hep0",
    );
  });

  it("preDNAT policy matches the port before DNAT (mangle PREROUTING)", async () => {
    host.exec(
      "iptables-nft",
      "-t",
      "nat",
      "-A",
      "PREROUTING",
      "-i",
      "hep0",
      "-p",
      "tcp",
      "--dport",
      "9000",
      "-j",
      "DNAT",
      "--to-destination",
      `${FAR}:7000`,
    );
    await apply(hep0(), [ALLOW_ALL]);
    expect(tcp(peer, { ns: "far", ip: HOST }, 9000, true, 7000)).toBe(true);
    const deny9000 = gnp("pre-deny-9000", {
      selector: "role == 'node'",
      preDNAT: true,
      applyOnForward: true,
      types: ["Ingress"],
      ingress: [{ action: "Deny", protocol: "TCP", destination: { ports: [9000] } }],
    });
    await apply(hep0(), [deny9000, ALLOW_ALL]);
    expect(tcp(peer, { ns: "far", ip: HOST }, 9000, false, 7000)).toBe(false);
    // The same connection addressed to far:7000 directly is not denied by it.
    expect(tcp(peer, F, 7000, true)).toBe(true);
    const mangle = host.exec("iptables-nft-save", "-t", "mangle");
    expect(mangle).toContain("-A PREROUTING -j ocl-PREROUTING");
    expect(mangle).toContain("-A ocl-fh-hep0 -j ocl-failsafe-in");
  });

  it("an auto host endpoint (kube-controllers') with no policy allows all: its projectcalico-default-allow profile", async () => {
    // The HostEndpoint kube-controllers makes for this node's Calico Node, as the agent reads it.
    const hep = autoHostEndpoint({
      apiVersion: "projectcalico.org/v3",
      kind: "Node",
      metadata: { name: "hh", labels: { role: "node" } },
      spec: { bgp: { ipv4Address: `${HOST}/24`, ipv6Address: `${HOST6}/64` } },
    } as never);
    const spec = hep.spec as { interfaceName: string; expectedIPs: string[]; profiles: string[] };
    const auto: HostPolicyInput = {
      hostEndpoints: [
        {
          name: hep.metadata.name,
          interfaceName: spec.interfaceName,
          expectedIPs: spec.expectedIPs,
          labels: hep.metadata.labels ?? {},
          profiles: spec.profiles,
        },
      ],
    };
    await apply(auto, []);
    expect(host.exec("iptables-nft-save", "-t", "filter")).toContain(
      "-A ocl-from-host-endpoint -g ocl-fh-any",
    );
    // To the host, from the host, forwarded through it, pings, and BGP.
    expect(tcp(peer, H, 7000, true)).toBe(true);
    expect(tcp(far, { ns: "host", ip: HOST_FAR }, 8080, true)).toBe(true);
    expect(tcp(host, P, 8080, true)).toBe(true);
    expect(tcp(peer, F, 7000, true)).toBe(true);
    expect(ping(peer, HOST, true)).toBe(true);
    expect(await sessionUpAfterRestart(true)).toBe(true);
    // A policy selecting it takes over (Calico: profiles only when no policy applies): what it
    // does not allow ends at the tier's default deny; failsafe still holds.
    const allow7000 = gnp("allow-7000", {
      selector: "has(projectcalico.org/created-by)",
      types: ["Ingress"],
      ingress: [{ action: "Allow", protocol: "TCP", destination: { ports: [7000] } }],
    });
    await apply(auto, [allow7000]);
    expect(tcp(peer, H, 7000, true)).toBe(true);
    expect(tcp(peer, H, 8080, false)).toBe(false);
    expect(tcp(peer, H, 22, true)).toBe(true);
    // Egress has no policy: the profile still allows it.
    expect(tcp(host, P, 8080, true)).toBe(true);
    expect(await sessionUpAfterRestart(true)).toBe(true);
  });

  it("doNotTrack policy allows untracked traffic through deny-all only with both directions", async () => {
    const untracked = (egress: boolean) =>
      gnp("raw-7000", {
        selector: "role == 'node'",
        doNotTrack: true,
        applyOnForward: true,
        types: ["Ingress", "Egress"],
        ingress: [{ action: "Allow", protocol: "TCP", destination: { ports: [7000] } }],
        egress: egress ? [{ action: "Allow", protocol: "TCP", source: { ports: [7000] } }] : [],
      });
    await apply(hep0(), [untracked(true), DENY_ALL]);
    expect(tcp(peer, H, 7000, true)).toBe(true);
    expect(tcp(peer, H, 8080, false)).toBe(false);
    const raw = host.exec("iptables-nft-save", "-t", "raw");
    expect(raw).toContain("-j CT --notrack");
    expect(raw).toContain("-A ocl-failsafe-in -p udp -m udp --sport 53");
    await apply(hep0(), [untracked(false), DENY_ALL]);
    expect(tcp(peer, H, 7000, false)).toBe(false);
    // Failsafe still holds in the raw table: SSH and BGP.
    expect(tcp(peer, H, 22, true)).toBe(true);
    expect(await sessionUpAfterRestart(true)).toBe(true);
  });

  it("removing the host endpoints removes their chains in every table, IPv6 included", async () => {
    expect(host.exec("ip6tables-nft-save")).toContain("ocl-fh-hep0");
    const state = renderDataplane({ workloads: [], pools: [], host: { hostEndpoints: [] } });
    expect(state.families.map((f) => f.family)).toEqual([4]);
    const r = await applyDataplane(state, { netns: host.name, fib, cleanupFamilies: [6] });
    expect(r.changes.length).toBeGreaterThan(0);
    for (const t of ["mangle", "raw"])
      expect(host.exec("iptables-nft-save", "-t", t)).not.toContain("ocl-");
    expect(host.exec("ip6tables-nft-save")).not.toContain("ocl-");
    expect(host.exec("iptables-nft-save", "-t", "filter")).not.toContain("ocl-fh-");
    expect(tcp(peer, H, 8080, true)).toBe(true);
  });
});
