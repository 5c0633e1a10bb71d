// Dual stack across two nodes: two node namespaces on one veth carrying an IPv4 and an IPv6
// fabric address each, each running the real `bin/ocelot node run --ip --ip6` on a shared SQLite
// store with a dual-stack pool pair, a dual-stack pod on each wired by the real `bin/ocelot-cni`.
// The daemons mesh over both families from their Node resources alone (an IPv4 session carrying
// only IPv4 unicast, an IPv6 one only IPv6 unicast), each learns the other's /26 and /122 under
// protocol 201 via the other's address of that family, and the pods ping each other over IPv6
// (and IPv4). The other node's ipv6Address removed: its IPv6 session and /122 go, IPv4 stays.
// Read back from the kernel (`ip -j`) and from the speakers' status sockets.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ipaddr from "ipaddr.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { link, Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { ping } from "../helpers/pods.js";
import { putPool } from "../ipam/helpers.js";
import {
  cni,
  daemonTestsUnavailable,
  type IpRoute,
  type NodeProcess,
  netconf,
  peerStatus,
  podEnv,
  routes,
  startMeshNodes,
  stopMeshNodes,
} from "./harness.js";

const skip = skipWithReason("ocelot node run dual-stack BGP netns", daemonTestsUnavailable());
const POOL4 = "10.73.0.0/16";
const POOL6 = "fd73::/64";

interface Peer {
  address: string;
  state: string;
  negotiated: { families: string[] } | null;
}

interface TestNode {
  name: string;
  ns: Netns;
  ip: string;
  ip6: string;
  daemon?: NodeProcess;
  pod?: Netns;
  podIps: { v4: string; v6: string };
}

describe.skipIf(skip)("ocelot node run: dual-stack BGP from the datastore", () => {
  let dir: string;
  let url: string;
  let store: SqliteDatastore;
  const nodes: TestNode[] = [];

  const status = (i: number): Peer[] => peerStatus<Peer>(join(dir, `${nodes[i]?.name}.sock`));
  const routes6 = (ns: Netns, proto: string): IpRoute[] =>
    ns.ipJson<IpRoute[]>("-6", "route", "show", "table", "main", "proto", proto);
  const logs = () => nodes.map((n) => n.daemon?.log).join("\n");

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-nodebgp6-"));
    url = `file:${join(dir, "store.db")}`;
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool4", POOL4, { blockSize: 26 });
    await putPool(store, "pool6", POOL6, { blockSize: 122 });
    for (const [i, name] of ["bgp6-a", "bgp6-b"].entries()) {
      nodes.push({
        name,
        ns: Netns.create(`n6${i}`),
        ip: `10.98.0.${i + 1}`,
        ip6: `fd98::${i + 1}`,
        podIps: { v4: "", v6: "" },
      });
    }
    const [a, b] = nodes as [TestNode, TestNode];
    link(a.ns, "eth0", `${a.ip}/24`, b.ns, "eth0", `${b.ip}/24`);
    for (const [n, other] of [
      [a, b],
      [b, a],
    ] as const) {
      // No duplicate address detection: the fabric address is usable (bindable) at once.
      n.ns.ip("addr", "add", `${n.ip6}/64`, "dev", "eth0", "nodad");
      n.ns.exec("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0");
      // Proxy ARP for the pods' IPv4 gateway needs a route to it out of another interface.
      n.ns.ip("route", "add", "default", "via", other.ip);
      n.pod = Netns.create(`n6p${n.name.slice(-1)}`);
    }
    await startMeshNodes(nodes, url, dir, (n: TestNode) => ["--ip6", `${n.ip6}/64`]);
  });

  afterAll(async () => {
    await stopMeshNodes(nodes);
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the two nodes mesh over IPv4 and IPv6, each session carrying its own family only", async () => {
    await waitFor(
      "all four sessions Established",
      () => [0, 1].every((i) => status(i).filter((p) => p.state === "Established").length === 2),
      20_000,
      200,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${logs()}`);
    });
    for (const [i, n] of nodes.entries()) {
      const other = nodes[1 - i] as TestNode;
      const got = status(i).map((p) => [p.address, p.negotiated?.families]);
      expect(got, n.name).toEqual([
        [other.ip, ["ipv4-unicast"]],
        [other.ip6, ["ipv6-unicast"]],
      ]);
    }
  });

  it("a dual-stack pod on each node: each learns the other's /122 (and /26) under protocol 201 via the other; the pods ping each other over IPv6 and IPv4", async () => {
    for (const n of nodes) {
      const r = await cni(n.ns, "ADD", podEnv(n.pod as Netns, `${n.name}-web`), {
        ...netconf(url, n.name, "pool4"),
        ipam: {
          type: "ocelot-ipam",
          ipv4_pools: ["pool4"],
          ipv6_pools: ["pool6"],
          assign_ipv6: true,
        },
      });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const ips = (JSON.parse(r.stdout).ips as { address: string }[]).map(
        (x) => x.address.split("/")[0] as string,
      );
      n.podIps = {
        v4: ips.find((a) => !a.includes(":")) as string,
        v6: ips.find((a) => a.includes(":")) as string,
      };
      expect(n.podIps.v6, r.stdout).toMatch(/^fd73::/);
    }
    for (const [i, n] of nodes.entries()) {
      const other = nodes[1 - i] as TestNode;
      const block6 = blockOf6(other.podIps.v6);
      await waitFor(
        `${n.name} to learn ${block6} via ${other.ip6}`,
        () =>
          routes6(n.ns, "201").some(
            (r) => r.dst === block6 && r.gateway === other.ip6 && r.dev === "eth0",
          ),
        15_000,
        100,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}: ${JSON.stringify(routes6(n.ns, "201"))}`);
      });
      await waitFor(
        `${n.name} to learn the IPv4 block of ${other.podIps.v4} via ${other.ip}`,
        () =>
          routes(n.ns, "201").some(
            (r) => r.gateway === other.ip && r.dst.endsWith("/26") && r.dst.startsWith("10.73."),
          ),
        15_000,
        100,
      );
      // Each family only over its own session: the IPv6 table holds only IPv6 next hops.
      expect(routes6(n.ns, "201").map((r) => [r.dst, r.gateway])).toEqual([[block6, other.ip6]]);
    }
    for (const [i, n] of nodes.entries()) {
      const other = nodes[1 - i] as TestNode;
      for (const [flag, to] of [
        ["-6", other.podIps.v6],
        ["-4", other.podIps.v4],
      ] as const) {
        await waitFor(
          `a ping ${flag} from ${n.name}'s pod to ${to}`,
          () =>
            runSync(
              "ip",
              ["netns", "exec", (n.pod as Netns).name, "ping", flag, "-c1", "-W1", to],
              { timeout: HANG_MS },
            ).status === 0,
          10_000,
          100,
        );
      }
    }
  });

  it("the other node's ipv6Address removed: the IPv6 session and its /122 go, the IPv4 session stays", async () => {
    const key = "/ocelot/resources/v3/nodes/bgp6-b";
    const kv = await store.get(key);
    if (!kv) throw new Error(`no ${key}`);
    const doc = JSON.parse(kv.value);
    delete doc.spec.bgp.ipv6Address;
    await store.update(key, JSON.stringify(doc), kv.modRevision);
    const [a, b] = nodes as [TestNode, TestNode];
    await waitFor(
      "bgp6-a to have only its IPv4 peer",
      () => {
        const s = status(0);
        return s.length === 1 && s[0]?.address === b.ip && s[0].state === "Established";
      },
      10_000,
      100,
    );
    await waitFor("bgp6-a's IPv6 routes via bgp6-b to go", () => routes6(a.ns, "201").length === 0);
    expect(routes(a.ns, "201").some((r) => r.gateway === b.ip)).toBe(true);
    expect(ping(a.pod as Netns, b.podIps.v4, true), `ping ${b.podIps.v4}`).toBe(true);
  });
});

/** The /122 block holding an IPv6 address (its last 6 bits cleared), in RFC 5952 text. */
function blockOf6(addr: string): string {
  const bytes = ipaddr.IPv6.parse(addr).toByteArray();
  bytes[15] = (bytes[15] as number) & 0xc0;
  return `${ipaddr.fromByteArray(bytes).toString()}/122`;
}
