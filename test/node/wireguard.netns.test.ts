// WireGuard between two nodes in two L3 subnets behind a router namespace (test/node/
// overlay_lab.ts), each running the real `ocelot node run` over VXLAN (vxlanMode Always, IPv4 and
// IPv6), one dual-stack pod per node from the real CNI plugin. FelixConfiguration `default`
// wireguardEnabled and wireguardEnabledV6: true (and `node.<name>` giving each node device names
// of this run, as wireguard-go's UAPI sockets in /var/run/wireguard are shared by all
// namespaces): each Node publishes its public keys and gets its interface addresses; each node has
// both devices (made by wireguard-go here: this kernel has no wireguard module), the other as
// their peer (endpoint, allowed IPs, keepalive), the tables' routes and the rules at priority 99;
// pods ping each other in both families and tshark on the router's port sees only UDP 51820 and
// 51821 between the node addresses (no ICMP, no VXLAN); `wg show` lists handshakes. A restarted
// daemon keeps its public keys. WireGuard off: devices, rules, table routes, published keys and
// interface addresses go, and the router sees the pods' ICMP inside VXLAN again. Host encryption
// (wireguardHostEncryptionEnabled): the nodes' own ping and TCP only as WireGuard UDP, through a
// key change; beside BGP, the BGP session itself; a peer that never answers stays reachable.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ResourceClient } from "../../src/api/client.js";
import type { Node } from "../../src/api/node.js";
import { kindOf } from "../../src/api/registry.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { publicKeyOf } from "../../src/felix/wireguard.js";
import { IpamStore } from "../../src/ipam/store.js";
import { parseCidr } from "../../src/lib/ip.js";
import { HANG_MS, runSync } from "../helpers/limits.js";
import {
  type Netns,
  Netns as NetnsClass,
  RUN_PREFIX,
  skipWithReason,
  waitFor,
} from "../helpers/netns.js";
import { spawnClosingServer, tcpConnects } from "../helpers/pods.js";
import { putPool } from "../ipam/helpers.js";
import { daemonTestsUnavailable, type ReadyNode, startNode, startReadyNode } from "./harness.js";
import {
  blockOf,
  buildLab,
  type Captured,
  capture,
  destroyLab,
  HOOK_MS,
  type Lab,
  type LabNode,
  labToolsMissing,
  mtuFile,
  ping,
  waitPing,
} from "./overlay_lab.js";

function wireguardMissing(): string | undefined {
  for (const tool of ["wireguard-go", "wg"]) {
    const r = runSync("sh", ["-c", `command -v ${tool}`]);
    if (r.status !== 0) return `${tool} is not installed (scripts/setup.sh installs it)`;
  }
  return undefined;
}

const skip = skipWithReason(
  "WireGuard lab (2 nodes, 2 subnets, wireguard-go)",
  daemonTestsUnavailable() ?? labToolsMissing() ?? wireguardMissing(),
);

const V3 = "projectcalico.org/v3";

interface WgPeer {
  publicKey: string;
  endpoint: string;
  allowedIps: string[];
  handshake: number;
  keepalive: string;
}

/** `wg show DEV dump` in a namespace: the interface's public key and port, and the peers. */
function wgDump(ns: Netns, dev: string) {
  const r = runSync("ip", ["netns", "exec", ns.name, "wg", "show", dev, "dump"]);
  if (r.status !== 0) return undefined;
  const [head, ...peers] = r.stdout.trim().split("\n");
  const h = (head ?? "").split("\t");
  return {
    publicKey: h[1],
    port: h[2],
    fwmark: h[3],
    peers: peers.map((l): WgPeer => {
      const f = l.split("\t");
      return {
        publicKey: f[0] as string,
        endpoint: f[2] as string,
        allowedIps: (f[3] ?? "").split(","),
        handshake: Number(f[4]),
        keepalive: f[7] as string,
      };
    }),
  };
}

/**
 * WireGuard's state on each node of the lab, for a failure's message: `wg show` of its devices
 * (endpoint, latest handshake, transfer), the devices' counters (what the TUN took in and gave
 * back), whether their wireguard-go still runs and its socket is there, the rules and the routes
 * of every table. devices(i): the devices of the i-th node (from 1).
 */
function wireguardState(lab: Lab | undefined, devices: (i: number) => string[]): string {
  if (!lab) return "(no lab)";
  const sh = (ns: string, cmd: string, args: string[]) => {
    const r = runSync("ip", ["netns", "exec", ns, cmd, ...args]);
    return `$ ${cmd} ${args.join(" ")} (exit ${r.status})\n${`${r.stdout}${r.stderr}`.trim()}`;
  };
  return lab.nodes
    .map((n, k) => {
      const out = [`=== WireGuard on ${n.name} (${n.ns.name}) at ${new Date().toISOString()}`];
      for (const d of devices(k + 1)) {
        out.push(sh(n.ns.name, "wg", ["show", d]), sh(n.ns.name, "ip", ["-s", "link", "show", d]));
        const go = runSync("pgrep", ["-a", "-f", `wireguard-go ${d}$`]);
        const sock = `/var/run/wireguard/${d}.sock`;
        out.push(
          `wireguard-go ${d}: ${go.stdout.trim() || "not running"}; ${sock} ${existsSync(sock) ? "present" : "absent"}`,
        );
      }
      for (const f of ["-4", "-6"])
        out.push(
          sh(n.ns.name, "ip", [f, "rule", "show"]),
          sh(n.ns.name, "ip", [f, "route", "show", "table", "all"]),
        );
      return out.join("\n");
    })
    .join("\n");
}

/**
 * What every block uses of its lab: the daemons' logs and WireGuard's state (devices(i): the
 * i-th node's devices), an error carrying them, a FelixConfiguration write; and, for a test that
 * fails on an assertion (no error of ours), WireGuard's state printed at its failure.
 */
function labTools(lab: () => Lab, devices: (i: number) => string[]) {
  const logs = () =>
    `${lab()
      .nodes.map((n) => `--- ${n.name}\n${n.daemon?.log}`)
      .join("\n")}\n${wireguardState(lab(), devices)}`;
  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      console.error(`WireGuard at the failure:\n${wireguardState(lab(), devices)}`);
    });
  });
  return {
    logs,
    withLogs: (e: unknown): never => {
      throw new Error(`${(e as Error).message}\n${logs()}`);
    },
    felix: (name: string, spec: object) =>
      new ResourceClient(lab().store).write("apply", {
        apiVersion: V3,
        kind: "FelixConfiguration",
        metadata: { name },
        spec,
      }),
  };
}

describe.skipIf(skip)(
  "WireGuard: pod traffic between two nodes encrypted, IPv4 and IPv6 (wireguard-go)",
  () => {
    let lab: Lab;
    let n1: LabNode;
    let n2: LabNode;
    const dev = (i: number) => `${RUN_PREFIX}w${i}`;
    const dev6 = (i: number) => `${RUN_PREFIX}x${i}`;
    const { logs, withLogs, felix } = labTools(
      () => lab,
      (i) => [dev(i), dev6(i)],
    );
    const client = () => new ResourceClient(lab.store);
    const nodeInfo = () => kindOf(V3, "Node") as NonNullable<ReturnType<typeof kindOf>>;
    const nodeResource = async (name: string) =>
      (await client().get(nodeInfo(), name)) as unknown as Node;

    beforeAll(async () => {
      lab = await buildLab(
        "wgl",
        [["wg-a1"], ["wg-b1"]],
        () => ["--networking-backend", "vxlan", "--resync-interval", "2s"],
        [4, 6],
        { vxlanMode: "Always" },
        (l) => {
          lab = l;
        },
      );
      [n1, n2] = lab.nodes as [LabNode, LabNode];
      await waitPing(n1.pod as Netns, n2.pod4 as string, "pod ping over VXLAN", logs);
      await waitPing(n1.pod as Netns, n2.pod6 as string, "pod ping over VXLAN (IPv6)", logs);
    }, HOOK_MS);

    afterAll(async () => {
      await destroyLab(lab);
    });

    it("wireguardEnabled and wireguardEnabledV6: each Node publishes its keys and gets its interface addresses; devices, peers, table routes and rules as Felix's; pods ping each other in both families", async () => {
      for (const [i, n] of lab.nodes.entries())
        await felix(`node.${n.name}`, {
          wireguardInterfaceName: dev(i + 1),
          wireguardInterfaceNameV6: dev6(i + 1),
        });
      await felix("default", {
        wireguardEnabled: true,
        wireguardEnabledV6: true,
        wireguardKeepAlive: "10s",
      });
      const nodes: Node[] = [];
      for (const n of lab.nodes)
        nodes.push(
          await waitFor(`${n.name}: public keys and interface addresses on its Node`, async () => {
            const r = await nodeResource(n.name);
            return r.status?.wireguardPublicKey &&
              r.status.wireguardPublicKeyV6 &&
              r.spec.wireguard?.interfaceIPv4Address &&
              r.spec.wireguard.interfaceIPv6Address
              ? r
              : undefined;
          }).catch(withLogs),
        );
      const [r1, r2] = nodes as [Node, Node];
      expect(r1.status?.wireguardPublicKey).not.toBe(r2.status?.wireguardPublicKey);
      expect(r1.status?.wireguardPublicKeyV6).not.toBe(r1.status?.wireguardPublicKey);
      // n1's device: its key, port 51820, Felix's mark, the peer n2 with its block and address.
      const block2 = blockOf(n2.pod4 as string);
      const wgAddr2 = r2.spec.wireguard?.interfaceIPv4Address as string;
      const peer = await waitFor(`${n1.name}: peer ${n2.name} on ${dev(1)}`, () => {
        const d = wgDump(n1.ns, dev(1));
        const p = d?.peers.find((x) => x.publicKey === r2.status?.wireguardPublicKey);
        return p?.allowedIps.includes(`${wgAddr2}/32`) && p.allowedIps.includes(block2)
          ? p
          : undefined;
      }).catch(withLogs);
      expect(peer.endpoint).toBe(`${n2.ip4}:51820`);
      expect(peer.keepalive).toBe("10");
      const d1 = wgDump(n1.ns, dev(1));
      expect(d1?.publicKey).toBe(r1.status?.wireguardPublicKey);
      expect(d1?.port).toBe("51820");
      expect(d1?.fwmark).toBe("0x100000");
      // The device (wireguard-go's TUN here), its MTU (1500 - 60) and interface address (the
      // pass that puts it there may follow the one that added the peer: awaited).
      const link = await waitFor(`${n1.name}: its interface address on ${dev(1)}`, () => {
        const l = n1.ns.ipJson<
          {
            mtu: number;
            flags: string[];
            addr_info: { local: string }[];
            linkinfo?: { info_kind?: string };
          }[]
        >("-d", "addr", "show", "dev", dev(1))[0];
        return l?.addr_info.some((x) => x.local === r1.spec.wireguard?.interfaceIPv4Address)
          ? l
          : undefined;
      }).catch(withLogs);
      expect(link?.linkinfo?.info_kind).toBe("tun");
      expect(link?.mtu).toBe(1440);
      expect(link?.flags).toContain("UP");
      expect(link?.addr_info.map((a) => a.local)).toContain(
        r1.spec.wireguard?.interfaceIPv4Address,
      );
      // The rule and the table (Felix: table 1, priority 99, not the WireGuard mark).
      const rules = n1.ns.ipJson<
        { priority: number; fwmark?: string; not?: null; table: string }[]
      >("-4", "rule", "show");
      expect(rules).toContainEqual(
        expect.objectContaining({
          priority: 99,
          fwmark: "0x100000",
          fwmask: "0x100000",
          table: "1",
        }),
      );
      expect(rules.find((r) => r.priority === 99)).toHaveProperty("not");
      const table = n1.ns.ipJson<{ dst: string; dev?: string; type?: string }[]>(
        "-4",
        "route",
        "show",
        "table",
        "1",
      );
      expect(table).toContainEqual(expect.objectContaining({ dst: block2, dev: dev(1) }));
      expect(table).toContainEqual(
        expect.objectContaining({ dst: blockOf(n1.pod4 as string), type: "throw" }),
      );
      // The pods' MTU: the IPv6 WireGuard device's (1420) is the smallest (VXLAN: 1450 and 1430).
      await waitFor("the pods' MTU file at 1420", () => mtuFile(lab, n1) === 1420).catch(withLogs);
      await waitPing(n1.pod as Netns, n2.pod4 as string, "pod ping over WireGuard", logs);
      await waitPing(n2.pod as Netns, n1.pod4 as string, "pod ping back over WireGuard", logs);
      // IPv6: its own device, port 51821, table 2, MTU 1500 - 80, the peer at [address]:51821.
      const block6 = blockOf(n2.pod6 as string);
      const wgAddr6 = r2.spec.wireguard?.interfaceIPv6Address as string;
      const peer6 = await waitFor(`${n1.name}: peer ${n2.name} on ${dev6(1)}`, () => {
        const p = wgDump(n1.ns, dev6(1))?.peers.find(
          (x) => x.publicKey === r2.status?.wireguardPublicKeyV6,
        );
        return p?.allowedIps.includes(`${wgAddr6}/128`) && p.allowedIps.includes(block6)
          ? p
          : undefined;
      }).catch(withLogs);
      expect(peer6.endpoint).toBe(`[${n2.ip6}]:51821`);
      expect(wgDump(n1.ns, dev6(1))?.publicKey).toBe(r1.status?.wireguardPublicKeyV6);
      const link6 = n1.ns.ipJson<{ mtu: number }[]>("link", "show", "dev", dev6(1))[0];
      expect(link6?.mtu).toBe(1420);
      const rules6 = n1.ns.ipJson<{ priority: number; fwmark?: string; table: string }[]>(
        "-6",
        "rule",
        "show",
      );
      expect(rules6).toContainEqual(
        expect.objectContaining({
          priority: 99,
          fwmark: "0x100000",
          fwmask: "0x100000",
          table: "2",
        }),
      );
      expect(
        n1.ns.ipJson<{ dst: string; dev?: string }[]>("-6", "route", "show", "table", "2"),
      ).toContainEqual(expect.objectContaining({ dst: block6, dev: dev6(1) }));
      await waitPing(n1.pod as Netns, n2.pod6 as string, "pod ping over WireGuard (IPv6)", logs);
    });

    it("the router's link carries only UDP 51820 and 51821 between the node addresses; `wg show` lists handshakes", async () => {
      const captured = await capture(lab.router, n1.port, () => {
        for (let k = 0; k < 4; k++) {
          expect(ping(n1.pod as Netns, n2.pod4 as string).ok).toBe(true);
          expect(ping(n1.pod as Netns, n2.pod6 as string).ok).toBe(true);
        }
      });
      // The link's own IPv6 chatter (MLD reports from link-local addresses, behind a hop-by-hop
      // header the capture filter does not look past) is no pod traffic.
      const frames = captured.filter((f) => !f.src.startsWith("fe80:"));
      // At least the echo requests and replies (a capture's start may miss one).
      expect(frames.length, JSON.stringify(frames)).toBeGreaterThanOrEqual(12);
      const pairs = [
        `${n1.ip4}>${n2.ip4}`,
        `${n2.ip4}>${n1.ip4}`,
        `${n1.ip6}>${n2.ip6}`,
        `${n2.ip6}>${n1.ip6}`,
      ];
      for (const f of frames) {
        expect(f.protocols, JSON.stringify(f)).toMatch(/:udp/);
        expect(f.protocols, JSON.stringify(f)).not.toMatch(/icmp|vxlan/);
        expect(f.udpPort, JSON.stringify(f)).toBe(f.src.includes(":") ? "51821" : "51820");
        expect(pairs).toContain(`${f.src}>${f.dst}`);
      }
      const seen = frames.map((f) => `${f.src}>${f.dst}`);
      for (const p of pairs) expect(seen).toContain(p);
      // A full-size packet of the pods (MTU 1430, from before WireGuard) with DF set crosses:
      // 1430 + 60 bytes of WireGuard over IPv4 fit the 1500 of the nodes' links.
      const podMtu = (n1.pod as Netns).ipJson<{ mtu: number }[]>("link", "show", "dev", "eth0")[0]
        ?.mtu;
      expect(podMtu).toBe(1430);
      const big = ping(n1.pod as Netns, n2.pod4 as string, ["-M", "do", "-s", "1402"]);
      expect(big.ok, big.out).toBe(true);
      for (const [n, i] of [
        [n1, 1],
        [n2, 2],
      ] as const)
        for (const d of [dev(i), dev6(i)]) {
          const peers = wgDump(n.ns, d)?.peers ?? [];
          expect(peers).toHaveLength(1);
          expect(peers[0]?.handshake).toBeGreaterThan(0);
        }
    });

    it("wireguardHostEncryptionEnabled: the nodes' own ping and TCP (both families) cross the router only as UDP 51820/51821, WireGuard's UDP still by the main table; pods still ping; off: the nodes' traffic in clear again", async () => {
      const port = 18000 + (process.pid % 1000);
      const server = spawnClosingServer(n2.ns, port);
      const nodeTraffic = () => {
        for (let k = 0; k < 3; k++) {
          expect(ping(n1.ns, n2.ip4).ok).toBe(true);
          expect(ping(n1.ns, n2.ip6).ok).toBe(true);
        }
        expect(tcpConnects(n1.ns, n2.ip4, port, true)).toBe(true);
        expect(tcpConnects(n1.ns, `${n2.ip6}`, port, true)).toBe(true);
      };
      const clearOf = (frames: Captured[]) =>
        frames.filter(
          (f) =>
            !f.src.startsWith("fe80:") &&
            /icmp|tcp/.test(f.protocols) &&
            [n1.ip4, n1.ip6].includes(f.src as string),
        );
      const hostEnc = (on: boolean) =>
        felix("default", {
          wireguardEnabled: true,
          wireguardEnabledV6: true,
          wireguardKeepAlive: "10s",
          ...(on ? { wireguardHostEncryptionEnabled: true } : {}),
        });
      const routeDev = (ns: Netns, to: string, mark?: string) =>
        ns.ipJson<{ dev: string }[]>(
          to.includes(":") ? "-6" : "-4",
          "route",
          "get",
          to,
          ...(mark ? ["mark", mark] : []),
        )[0]?.dev;
      try {
        await waitFor(`${n2.name}: TCP server on ${port}`, () =>
          tcpConnects(n1.ns, n2.ip4, port, false),
        );
        // Off (the default): the nodes' own traffic crosses in clear.
        const before = clearOf(await capture(lab.router, n1.port, nodeTraffic));
        expect(before.some((f) => /icmp/.test(f.protocols) && f.dst === n2.ip4)).toBe(true);
        expect(before.some((f) => /tcp/.test(f.protocols) && f.dst === n2.ip6)).toBe(true);
        const t0 = Date.now();
        await hostEnc(true);
        for (const [a, b, i] of [
          [n1, n2, 1],
          [n2, n1, 2],
        ] as const)
          await waitFor(
            `${a.name}: ${b.name}'s host addresses through ${dev(i)}/${dev6(i)}`,
            () => {
              const p4 = wgDump(a.ns, dev(i))?.peers[0];
              const p6 = wgDump(a.ns, dev6(i))?.peers[0];
              return (
                p4?.allowedIps.includes(`${b.ip4}/32`) &&
                p6?.allowedIps.includes(`${b.ip6}/128`) &&
                routeDev(a.ns, b.ip4 as string) === dev(i) &&
                routeDev(a.ns, b.ip6 as string) === dev6(i)
              );
            },
          ).catch(withLogs);
        console.log(
          `host encryption on: both nodes route each other's host addresses through WireGuard ${Date.now() - t0} ms after the FelixConfiguration write (load ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]})`,
        );
        // WireGuard's own UDP carries the mark: the main table, out of eth0.
        expect(routeDev(n1.ns, n2.ip4 as string, "0x100000")).toBe("eth0");
        expect(routeDev(n1.ns, n2.ip6 as string, "0x100000")).toBe("eth0");
        const table = n1.ns.ipJson<{ dst: string; dev?: string }[]>(
          "-4",
          "route",
          "show",
          "table",
          "1",
        );
        expect(table).toContainEqual(expect.objectContaining({ dst: n2.ip4, dev: dev(1) }));
        const frames = (
          await capture(lab.router, n1.port, () => {
            nodeTraffic();
            expect(ping(n1.pod as Netns, n2.pod4 as string).ok).toBe(true);
            expect(ping(n1.pod as Netns, n2.pod6 as string).ok).toBe(true);
          })
        ).filter((f) => !f.src.startsWith("fe80:"));
        // 6 pings, 2 TCP connects and 2 pod pings: each at least a packet each way.
        expect(frames.length, JSON.stringify(frames)).toBeGreaterThanOrEqual(20);
        try {
          for (const f of frames) {
            expect(f.protocols, JSON.stringify(f)).toMatch(/:udp/);
            expect(f.protocols, JSON.stringify(f)).not.toMatch(/icmp|tcp|vxlan/);
            expect(f.udpPort, JSON.stringify(f)).toBe(f.src.includes(":") ? "51821" : "51820");
            expect([n1.ip4, n2.ip4, n1.ip6, n2.ip6]).toContain(f.src);
          }
        } catch (e) {
          withLogs(new Error(`${(e as Error).message}\n${JSON.stringify(frames)}`));
        }
        console.log(
          `host encryption on: ${frames.length} frames on the router, all WireGuard UDP (${frames.filter((f) => f.udpPort === "51820").length} on 51820, ${frames.filter((f) => f.udpPort === "51821").length} on 51821)`,
        );
        // A key change (n2 restarted without its devices and key files: new keys): n1's host
        // traffic to n2 is never stuck behind the old key. The new peer has had no handshake, so
        // n2's host addresses go in clear until one completes, then through the device again.
        const oldKey = (await nodeResource(n2.name)).status?.wireguardPublicKey;
        const args2 = (n2.daemon?.proc.spawnargs ?? []).slice(7);
        expect(args2).toContain("--nodename");
        await n2.daemon?.stop();
        n2.ns.ip("link", "del", dev(2));
        n2.ns.ip("link", "del", dev6(2));
        for (const f of [`wireguard-${n2.name}.key`, `wireguard-v6-${n2.name}.key`])
          rmSync(join(lab.dir, f));
        n2.daemon = await startNode(n2.ns, args2);
        const newKey = await waitFor(`${n2.name}: a new public key`, async () => {
          const k = (await nodeResource(n2.name)).status?.wireguardPublicKey;
          return k && k !== oldKey ? k : undefined;
        }).catch(withLogs);
        const t1 = Date.now();
        await waitPing(
          n1.ns,
          n2.ip4 as string,
          `${n1.name} reaches ${n2.name}'s host after its key change`,
          logs,
        );
        const reached = Date.now() - t1;
        await waitFor(
          `${n1.name}: ${n2.name}'s host through ${dev(1)} again, to its new key`,
          () => {
            const p = wgDump(n1.ns, dev(1))?.peers.find((x) => x.publicKey === newKey);
            return (
              p?.allowedIps.includes(`${n2.ip4}/32`) &&
              p.handshake > 0 &&
              routeDev(n1.ns, n2.ip4 as string) === dev(1) &&
              routeDev(n2.ns, n1.ip4 as string) === dev(2) &&
              routeDev(n1.ns, n2.ip6 as string) === dev6(1) &&
              routeDev(n2.ns, n1.ip6 as string) === dev6(2)
            );
          },
        ).catch(withLogs);
        console.log(
          `key change: ${n1.name} pinged ${n2.name}'s host ${reached} ms after the new key was published; both route through WireGuard again ${Date.now() - t1} ms after it (load ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]})`,
        );
        const again = (await capture(lab.router, n1.port, nodeTraffic)).filter(
          (f) => !f.src.startsWith("fe80:"),
        );
        expect(again.length).toBeGreaterThanOrEqual(16);
        for (const f of again) expect(f.protocols, JSON.stringify(again)).not.toMatch(/icmp|tcp/);
        // Off again: the host addresses leave the peers and the table; the nodes' traffic in clear,
        // the pods' still through WireGuard.
        await hostEnc(false);
        for (const [a, b, i] of [
          [n1, n2, 1],
          [n2, n1, 2],
        ] as const)
          await waitFor(`${a.name}: ${b.name}'s host addresses out of WireGuard`, () => {
            const p4 = wgDump(a.ns, dev(i))?.peers[0];
            return (
              p4 !== undefined &&
              !p4.allowedIps.includes(`${b.ip4}/32`) &&
              routeDev(a.ns, b.ip4 as string) === "eth0" &&
              routeDev(a.ns, b.ip6 as string) === "eth0"
            );
          }).catch(withLogs);
        const after = (
          await capture(lab.router, n1.port, () => {
            nodeTraffic();
            expect(ping(n1.pod as Netns, n2.pod4 as string).ok).toBe(true);
          })
        ).filter((f) => !f.src.startsWith("fe80:"));
        const clear = clearOf(after);
        expect(clear.filter((f) => /icmp/.test(f.protocols)).length).toBeGreaterThanOrEqual(6);
        expect(clear.some((f) => /tcp/.test(f.protocols) && f.dst === n2.ip4)).toBe(true);
        expect(after.some((f) => f.udpPort === "51820")).toBe(true);
        expect(after.some((f) => /icmp/.test(f.protocols) && f.src === n1.pod4)).toBe(false);
      } finally {
        server.kill("SIGKILL");
        await felix("default", {
          wireguardEnabled: true,
          wireguardEnabledV6: true,
          wireguardKeepAlive: "10s",
        });
      }
    });

    it("another node's new block: in the WireGuard table (and the peer's allowed IPs) before the main table routes it (ip monitor)", async () => {
      const block = "10.232.250.0/26";
      const mon = spawn("ip", ["-n", n1.ns.name, "-4", "monitor", "route"], {
        stdio: ["ignore", "pipe", "ignore"],
      });
      const killer = setTimeout(() => mon.kill("SIGKILL"), HANG_MS);
      let out = "";
      mon.stdout.on("data", (d) => (out += d));
      const lines = () => out.split("\n").filter((l) => l.startsWith(`${block} `));
      try {
        // `ip monitor` is listening once a route event of ours shows; give it a moment.
        await new Promise((r) => setTimeout(r, 500));
        await new IpamStore(lab.store).claimBlock(n2.name, parseCidr(block));
        await waitFor(`${n1.name}: ${block} in the WireGuard table and the main table`, () => {
          const l = lines();
          return l.some((x) => / table 1 /.test(x)) && l.some((x) => !/ table /.test(x));
        }).catch(withLogs);
      } finally {
        mon.kill();
        clearTimeout(killer);
      }
      const l = lines();
      const wgAt = l.findIndex((x) => / table 1 /.test(x));
      const mainAt = l.findIndex((x) => !/ table /.test(x));
      expect(wgAt, l.join("\n")).toBeLessThan(mainAt);
      expect(l[wgAt]).toContain(`dev ${dev(1)}`);
      const peer = wgDump(n1.ns, dev(1))?.peers[0];
      expect(peer?.allowedIps).toContain(block);
    });

    it("a restarted daemon keeps its public keys: the device's (as Felix), else the key files (mode 0600)", async () => {
      const status = (await nodeResource(n1.name)).status;
      const before = status?.wireguardPublicKey;
      const before6 = status?.wireguardPublicKeyV6;
      const keyFile = join(lab.dir, `wireguard-${n1.name}.key`);
      // `ip netns exec NS ocelot node run ARGS...`: the same arguments again.
      const args = (n1.daemon?.proc.spawnargs ?? []).slice(7);
      expect(args).toContain("--nodename");
      // The devices stay and the key file goes: the device's key is taken and written back.
      await n1.daemon?.stop();
      rmSync(keyFile);
      n1.daemon = await startNode(n1.ns, args);
      await waitFor(`${n1.name}: its key file written again`, () => existsSync(keyFile)).catch(
        withLogs,
      );
      expect(publicKeyOf(readFileSync(keyFile, "utf8").trim())).toBe(before);
      expect(wgDump(n1.ns, dev(1))?.publicKey).toBe(before);
      await n1.daemon?.stop();
      // The device goes with the daemon's namespace only: deleting it makes the daemon start from
      // the key file alone.
      n1.ns.ip("link", "del", dev(1));
      n1.ns.ip("link", "del", dev6(1));
      n1.daemon = await startNode(n1.ns, args);
      await waitFor(`${n1.name}: ${dev(1)} made again`, () => wgDump(n1.ns, dev(1))).catch(
        withLogs,
      );
      expect(wgDump(n1.ns, dev(1))?.publicKey).toBe(before);
      await waitFor(`${n1.name}: ${dev6(1)} made again`, () => wgDump(n1.ns, dev6(1))).catch(
        withLogs,
      );
      expect(wgDump(n1.ns, dev6(1))?.publicKey).toBe(before6);
      expect((await nodeResource(n1.name)).status).toMatchObject({
        wireguardPublicKey: before,
        wireguardPublicKeyV6: before6,
      });
      // The key file beside the MTU file (the node's state directory), readable by root alone.
      expect(statSync(keyFile).mode & 0o777).toBe(0o600);
      expect(publicKeyOf(readFileSync(keyFile, "utf8").trim())).toBe(before);
      await waitPing(n1.pod as Netns, n2.pod4 as string, "pod ping after the restart", logs);
    });

    it("a deny-all HostEndpoint on each node's eth0 does not cut WireGuard (its port is let through, as Felix does): a new port's flows pass, the nodes' own pings do not", async () => {
      const hepInfo = kindOf(V3, "HostEndpoint") as NonNullable<ReturnType<typeof kindOf>>;
      try {
        for (const n of lab.nodes)
          await client().write("apply", {
            apiVersion: V3,
            kind: "HostEndpoint",
            metadata: { name: `${n.name}-eth0` },
            spec: { node: n.name, interfaceName: "eth0" },
          });
        // Enforced: host to host ICMP (no failsafe port) is dropped.
        await waitFor(`${n1.name}'s host endpoint drops its pings to ${n2.name}`, () => {
          return !ping(n1.ns, n2.ip4).ok;
        }).catch(withLogs);
        // A new listening port: new flows (conntrack knew the old ones), which only the WireGuard
        // rule lets through the host endpoints' default deny.
        await felix("default", {
          wireguardEnabled: true,
          wireguardEnabledV6: true,
          wireguardKeepAlive: "10s",
          wireguardListeningPort: 51830,
        });
        await waitFor(`${n1.name}: peer ${n2.name} at port 51830`, () => {
          const d = wgDump(n1.ns, dev(1));
          return d?.port === "51830" && d.peers[0]?.endpoint === `${n2.ip4}:51830`;
        }).catch(withLogs);
        const frames = await capture(lab.router, n1.port, () => {
          for (let k = 0; k < 3; k++)
            expect(ping(n1.pod as Netns, n2.pod4 as string, ["-W", "5"]).ok).toBe(true);
        });
        const wg = frames.filter((f) => f.udpPort === "51830");
        expect(wg.length, JSON.stringify(frames)).toBeGreaterThanOrEqual(4);
        expect(frames.some((f) => /icmp/.test(f.protocols) && !f.src.startsWith("fe80:"))).toBe(
          false,
        );
        expect(ping(n1.ns, n2.ip4).ok).toBe(false);
        const rules = runSync("ip", ["netns", "exec", n1.ns.name, "iptables-save", "-t", "filter"]);
        expect(rules.stdout).toContain("-p udp -m udp --dport 51830 -m addrtype --dst-type LOCAL");
        expect(rules.stdout).toContain("-p udp -m udp --dport 51830 -m addrtype --src-type LOCAL");
      } finally {
        for (const n of lab.nodes)
          await client()
            .delete(hepInfo, `${n.name}-eth0`)
            .catch(() => undefined);
      }
    });

    it("both off: devices, rules, table routes, keys and interface addresses go; the router sees the pods' ICMP inside VXLAN again", async () => {
      await felix("default", { wireguardEnabled: false, wireguardEnabledV6: false });
      for (const [i, n] of lab.nodes.entries()) {
        await waitFor(`${n.name}: WireGuard removed`, async () => {
          const r = await nodeResource(n.name);
          const links = n.ns.ipJson<unknown[]>("link", "show");
          const text = JSON.stringify(links);
          const hasDev = text.includes(dev(i + 1)) || text.includes(dev6(i + 1));
          const rule = ["-4", "-6"].some((f) =>
            n.ns.ipJson<{ priority: number }[]>(f, "rule", "show").some((x) => x.priority === 99),
          );
          const routes = n.ns.ipJson<unknown[]>("-4", "route", "show", "table", "1");
          const routes6 = runSync("ip", ["-n", n.ns.name, "-6", "route", "show", "table", "2"]);
          return (
            !hasDev &&
            !rule &&
            routes.length === 0 &&
            routes6.stdout.trim() === "" &&
            r.status?.wireguardPublicKey === undefined &&
            r.status?.wireguardPublicKeyV6 === undefined &&
            r.spec.wireguard === undefined
          );
        }).catch(withLogs);
      }
      await waitPing(n1.pod as Netns, n2.pod4 as string, "pod ping over VXLAN again", logs);
      await waitPing(n1.pod as Netns, n2.pod6 as string, "pod ping over VXLAN again (IPv6)", logs);
      const frames = await capture(lab.router, n1.port, () => {
        for (let k = 0; k < 3; k++) expect(ping(n1.pod as Netns, n2.pod4 as string).ok).toBe(true);
      });
      const clear = frames.filter((f) => /:udp:vxlan:.*icmp/.test(f.protocols));
      expect(clear.length, JSON.stringify(frames)).toBeGreaterThanOrEqual(4);
      expect(frames.some((f) => f.udpPort === "51820")).toBe(false);
      expect(clear.map((f) => `${f.src}>${f.dst}`).join(" ")).toContain(n1.pod4 as string);
    });
  },
);

// The same with BGP instead of an overlay: two nodes in one subnet (a bridge in the router
// namespace) meshed over iBGP, each pod's block in the other's main table (protocol 201, via the
// other node). WireGuard on: the BGP routes stay, but the rule sends pod traffic to the WireGuard
// table first, so the link carries only UDP 51820; off: ICMP in clear again.
const skipBgp = skipWithReason(
  "WireGuard over BGP routes (2 nodes, 1 subnet, wireguard-go)",
  daemonTestsUnavailable() ?? labToolsMissing() ?? wireguardMissing(),
);

describe.skipIf(skipBgp)("WireGuard beside BGP routes to the same blocks", () => {
  let lab: Lab;
  let n1: LabNode;
  let n2: LabNode;
  const dev = (i: number) => `${RUN_PREFIX}b${i}`;
  const { logs, withLogs, felix } = labTools(
    () => lab,
    (i) => [dev(i)],
  );
  const bgpRoute = () =>
    n1.ns
      .ipJson<{ dst: string; gateway?: string }[]>("-4", "route", "show", "proto", "201")
      .find((r) => r.dst === blockOf(n2.pod4 as string));
  const routeGet = () =>
    n1.ns.ipJson<{ dev: string }[]>("-4", "route", "get", n2.pod4 as string)[0]?.dev;
  const pings = () => {
    for (let k = 0; k < 3; k++) expect(ping(n1.pod as Netns, n2.pod4 as string).ok).toBe(true);
  };

  beforeAll(async () => {
    lab = await buildLab(
      "wgb",
      [["wgb-a1", "wgb-a2"]],
      () => ["--resync-interval", "2s"],
      [4],
      {},
      (l) => {
        lab = l;
      },
    );
    [n1, n2] = lab.nodes as [LabNode, LabNode];
    await waitFor(`${n1.name}: BGP route to ${n2.name}'s block`, () => bgpRoute()).catch(withLogs);
    await waitPing(n1.pod as Netns, n2.pod4 as string, "pod ping over BGP routes", logs);
  }, HOOK_MS);

  afterAll(async () => {
    await destroyLab(lab);
  });

  it("on: the BGP route stays in the main table, the rule wins: only UDP 51820 on the link; off: ICMP in clear again", async () => {
    const clear = await capture(lab.router, n1.port, pings);
    expect(
      clear.filter((f) => /icmp/.test(f.protocols) && f.src === n1.pod4).length,
      JSON.stringify(clear),
    ).toBeGreaterThanOrEqual(2);
    for (const [i, n] of lab.nodes.entries())
      await felix(`node.${n.name}`, { wireguardInterfaceName: dev(i + 1) });
    await felix("default", { wireguardEnabled: true });
    await waitFor(
      `${n1.name}: ${n2.pod4} routed through ${dev(1)}`,
      () => routeGet() === dev(1),
    ).catch(withLogs);
    expect(bgpRoute()?.gateway).toBe(n2.ip4);
    await waitPing(n1.pod as Netns, n2.pod4 as string, "pod ping over WireGuard", logs);
    const frames = (await capture(lab.router, n1.port, pings)).filter(
      (f) => !f.src.startsWith("fe80:") && f.src !== "" && !/tcp/.test(f.protocols),
    );
    // BGP's own TCP session between the nodes is left out above; the pods' traffic is all UDP
    // 51820 between the node addresses.
    expect(frames.length, JSON.stringify(frames)).toBeGreaterThanOrEqual(6);
    for (const f of frames) {
      expect(f.protocols, JSON.stringify(f)).not.toMatch(/icmp/);
      expect(f.udpPort, JSON.stringify(f)).toBe("51820");
    }
    await felix("default", { wireguardEnabled: false });
    await waitFor(`${n1.name}: ${n2.pod4} routed by BGP again`, () => routeGet() === "eth0").catch(
      withLogs,
    );
    await waitPing(n1.pod as Netns, n2.pod4 as string, "pod ping over BGP routes again", logs);
    const after = await capture(lab.router, n1.port, pings);
    expect(
      after.filter((f) => /icmp/.test(f.protocols) && f.src === n1.pod4).length,
      JSON.stringify(after),
    ).toBeGreaterThanOrEqual(2);
  });
});

describe.skipIf(skipBgp)("WireGuard host encryption beside BGP: the BGP session itself", () => {
  let lab: Lab;
  let n1: LabNode;
  let n2: LabNode;
  const dev = (i: number) => `${RUN_PREFIX}h${i}`;
  const { logs, withLogs, felix } = labTools(
    () => lab,
    (i) => [dev(i)],
  );
  const bgpRouteTo = (dst: string) =>
    n1.ns
      .ipJson<{ dst: string; gateway?: string }[]>("-4", "route", "show", "proto", "201")
      .find((r) => r.dst === dst);
  const routeGet = (ns: Netns, to: string) =>
    ns.ipJson<{ dev: string }[]>("-4", "route", "get", to)[0]?.dev;
  const bgpFrames = (frames: Captured[]) =>
    frames.filter((f) => /tcp/.test(f.protocols) && [n1.ip4, n2.ip4].includes(f.src));

  beforeAll(async () => {
    lab = await buildLab(
      "wgh",
      [["wgh-a1", "wgh-a2"]],
      () => ["--resync-interval", "2s"],
      [4],
      {},
      (l) => {
        lab = l;
      },
    );
    [n1, n2] = lab.nodes as [LabNode, LabNode];
    await waitFor(`${n1.name}: BGP route to ${n2.name}'s block`, () =>
      bgpRouteTo(blockOf(n2.pod4 as string)),
    ).catch(withLogs);
  }, HOOK_MS);

  afterAll(async () => {
    await destroyLab(lab);
  });

  it("on: a new block's BGP UPDATE crosses the link only inside UDP 51820 (in clear with host encryption off); a node restarted with new keys gets its session and routes back, then through WireGuard again", async () => {
    const claimAndSee = async (block: string) => {
      await new IpamStore(lab.store).claimBlock(n2.name, parseCidr(block));
      await waitFor(`${n1.name}: BGP route to ${block}`, () => bgpRouteTo(block)).catch(withLogs);
    };
    for (const [i, n] of lab.nodes.entries())
      await felix(`node.${n.name}`, { wireguardInterfaceName: dev(i + 1) });
    // WireGuard on, host encryption off: the BGP UPDATE in clear (TCP between the nodes).
    await felix("default", { wireguardEnabled: true });
    await waitFor(
      `${n1.name}: ${n2.pod4} through ${dev(1)}`,
      () => routeGet(n1.ns, n2.pod4 as string) === dev(1),
    ).catch(withLogs);
    const clear = await capture(lab.router, n1.port, () => claimAndSee("10.232.251.0/26"));
    expect(bgpFrames(clear).length, JSON.stringify(clear)).toBeGreaterThanOrEqual(1);
    // Host encryption on: the nodes' addresses through the devices, the UPDATE inside WireGuard.
    await felix("default", { wireguardEnabled: true, wireguardHostEncryptionEnabled: true });
    await waitFor(`both nodes: the other's host through WireGuard`, () => {
      return routeGet(n1.ns, n2.ip4) === dev(1) && routeGet(n2.ns, n1.ip4) === dev(2);
    }).catch(withLogs);
    const sealed = await capture(lab.router, n1.port, () => claimAndSee("10.232.252.0/26"));
    const frames = sealed.filter((f) => !f.src.startsWith("fe80:") && f.src !== "");
    expect(bgpFrames(frames), JSON.stringify(frames)).toEqual([]);
    expect(frames.some((f) => f.udpPort === "51820")).toBe(true);
    for (const f of frames) expect(f.udpPort, JSON.stringify(f)).toBe("51820");
    // n2 restarted with new keys: the session comes back (in clear until the handshake), its
    // routes with it, then the nodes' traffic goes through WireGuard again.
    const args2 = (n2.daemon?.proc.spawnargs ?? []).slice(7);
    expect(args2).toContain("--nodename");
    const oldKey = wgDump(n2.ns, dev(2))?.publicKey;
    expect(oldKey).toBeDefined();
    await n2.daemon?.stop();
    n2.ns.ip("link", "del", dev(2));
    rmSync(join(lab.dir, `wireguard-${n2.name}.key`));
    const t0 = Date.now();
    n2.daemon = await startNode(n2.ns, args2);
    await claimAndSee("10.232.253.0/26");
    const back = Date.now() - t0;
    const node2 = async () =>
      (await new ResourceClient(lab.store).get(
        kindOf(V3, "Node") as NonNullable<ReturnType<typeof kindOf>>,
        n2.name,
      )) as unknown as Node;
    const newKey = await waitFor(`${n2.name}: its new key published`, async () => {
      const k = (await node2()).status?.wireguardPublicKey;
      return k && k !== oldKey ? k : undefined;
    }).catch(withLogs);
    await waitFor(`both nodes: the other's host through WireGuard again, to the new key`, () => {
      const p = wgDump(n1.ns, dev(1))?.peers.find((x) => x.publicKey === newKey);
      return (
        p?.allowedIps.includes(`${n2.ip4}/32`) &&
        p.handshake > 0 &&
        wgDump(n1.ns, dev(1))?.peers.length === 1 &&
        routeGet(n1.ns, n2.ip4) === dev(1) &&
        routeGet(n2.ns, n1.ip4) === dev(2)
      );
    }).catch(withLogs);
    console.log(
      `BGP with host encryption: ${n2.name} restarted with new keys; ${n1.name} had a BGP route to its new block ${back} ms after the start, both route each other's host through WireGuard ${Date.now() - t0} ms after it (load ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]})`,
    );
    expect(bgpRouteTo(blockOf(n2.pod4 as string))?.gateway).toBe(n2.ip4);
    await waitPing(n1.pod as Netns, n2.pod4 as string, "pod ping after the key change", logs);
    const after = (await capture(lab.router, n1.port, () => claimAndSee("10.232.254.0/26"))).filter(
      (f) => !f.src.startsWith("fe80:") && f.src !== "",
    );
    expect(bgpFrames(after), JSON.stringify(after)).toEqual([]);
    expect(after.some((f) => f.udpPort === "51820")).toBe(true);
  });
});

// `ocelot node run --netns` (the daemon outside the namespace it programs): the device is made
// in the namespace (wireguard-go under `ip netns exec`), and a peer comes from a Node resource
// alone (its key, address and block affinity written to the store; no daemon behind it).
const skipNetns = skipWithReason(
  "WireGuard with --netns (1 node, wireguard-go)",
  daemonTestsUnavailable() ?? wireguardMissing(),
);

describe.skipIf(skipNetns)("WireGuard under --netns, a peer from the datastore alone", () => {
  let dir: string;
  let store: SqliteDatastore;
  let ns: Netns;
  let node: ReadyNode | undefined;
  const devName = `${RUN_PREFIX}n1`;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-wgn-"));
    store = new SqliteDatastore(join(dir, "store.db"));
    ns = NetnsClass.create("wgn");
  });

  afterAll(async () => {
    await node?.daemon.stop();
    ns?.destroy();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("the device in the namespace, the peer's endpoint and block from its Node and affinity, our key published", async () => {
    // A veth pair inside the namespace holds the node address (this kernel has no dummy links).
    ns.ip("link", "add", "d0", "type", "veth", "peer", "name", "d1");
    ns.ip("link", "set", "d1", "up");
    ns.ip("addr", "add", "10.33.0.1/24", "dev", "d0");
    ns.ip("link", "set", "d0", "up");
    await putPool(store, "p4", "10.234.0.0/16", { blockSize: 26 });
    const client = new ResourceClient(store);
    const peerKey = publicKeyOf(Buffer.from("0123456789abcdef0123456789abcdef").toString("base64"));
    await client.write("apply", {
      apiVersion: V3,
      kind: "Node",
      metadata: { name: "wgn-peer" },
      spec: {
        bgp: { ipv4Address: "10.33.0.2/24" },
        wireguard: { interfaceIPv4Address: "10.234.9.1" },
      },
      status: { wireguardPublicKey: peerKey },
    });
    await new IpamStore(store).claimBlock("wgn-peer", parseCidr("10.234.9.0/26"));
    for (const [name, spec] of [
      ["default", { wireguardEnabled: true }],
      ["node.wgn-a", { wireguardInterfaceName: devName }],
    ] as const)
      await client.write("apply", {
        apiVersion: V3,
        kind: "FelixConfiguration",
        metadata: { name },
        spec,
      });
    // LOG_LEVEL in the daemon's environment (wireguard-go's own variable): wireguard-go's
    // daemonized child would keep the pipes of the command that made the device open for its
    // logs, and the daemon's pass wait for it forever (tried: no device was configured).
    node = await startReadyNode(ns, {
      nodename: "wgn-a",
      ip: "10.33.0.1/24",
      datastore: `file:${join(dir, "store.db")}`,
      dir,
      env: { LOG_LEVEL: "verbose" },
    });
    const d = node.daemon;
    const peer = await waitFor(`${devName}: the peer wgn-peer`, () =>
      wgDump(ns, devName)?.peers.find((p) => p.publicKey === peerKey),
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${d.log}`);
    });
    expect(peer.endpoint).toBe("10.33.0.2:51820");
    expect(peer.allowedIps).toEqual(["10.234.9.0/26", "10.234.9.1/32"]);
    const me = (await client.get(
      kindOf(V3, "Node") as NonNullable<ReturnType<typeof kindOf>>,
      "wgn-a",
    )) as unknown as Node;
    expect(me.status?.wireguardPublicKey).toBe(wgDump(ns, devName)?.publicKey);
    // Made by wireguard-go in the namespace: its TUN device is there, not in ours.
    expect(
      ns.ipJson<{ linkinfo?: { info_kind?: string } }[]>("-d", "link", "show", "dev", devName)[0]
        ?.linkinfo?.info_kind,
    ).toBe("tun");
    expect(runSync("ip", ["link", "show", "dev", devName]).status).not.toBe(0);
    expect(
      ns.ipJson<{ dst: string; dev?: string }[]>("-4", "route", "show", "table", "1"),
    ).toContainEqual(expect.objectContaining({ dst: "10.234.9.0/26", dev: devName }));
  });

  it("host encryption with a peer that never answers (it does not hold our key): its host address is in its allowed IPs but thrown to the main table, so the node still reaches it directly", async () => {
    const client = new ResourceClient(store);
    await client.write("apply", {
      apiVersion: V3,
      kind: "FelixConfiguration",
      metadata: { name: "default" },
      spec: { wireguardEnabled: true, wireguardHostEncryptionEnabled: true },
    });
    const d = node?.daemon;
    const peer = await waitFor(`${devName}: wgn-peer's host address among its allowed IPs`, () =>
      wgDump(ns, devName)?.peers.find((p) => p.allowedIps.includes("10.33.0.2/32")),
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${d?.log}`);
    });
    expect(peer.allowedIps).toEqual(["10.234.9.0/26", "10.234.9.1/32", "10.33.0.2/32"]);
    expect(peer.handshake).toBe(0);
    const table = () =>
      ns.ipJson<{ dst: string; dev?: string; type?: string }[]>(
        "-4",
        "route",
        "show",
        "table",
        "1",
      );
    // The peer is set before the table's routes in the same pass: wait for the route too.
    await waitFor(`${devName}: the peer's host address thrown to the main table`, () =>
      table().some((r) => r.dst === "10.33.0.2" && r.type === "throw"),
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${JSON.stringify(table())}\n${d?.log}`);
    });
    expect(table()).toContainEqual(expect.objectContaining({ dst: "10.33.0.2", type: "throw" }));
    expect(table()).toContainEqual(expect.objectContaining({ dst: "10.234.9.0/26", dev: devName }));
    expect(ns.ipJson<{ dev: string }[]>("-4", "route", "get", "10.33.0.2")[0]?.dev).toBe("d0");
    expect(ns.ipJson<{ dev: string }[]>("-4", "route", "get", "10.234.9.5")[0]?.dev).toBe(devName);
  });
});
