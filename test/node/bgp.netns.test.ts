// Two node namespaces on one veth link, each running the real `bin/ocelot node run` on a shared
// SQLite store, a pod on each wired by the real `bin/ocelot-cni`: the daemons mesh over iBGP from
// their Node resources alone, each learns the other's block (protocol 201 in the kernel, via the
// other node), and the pods ping each other; the learned route names a kernel nexthop object of
// protocol 201 for the other node's address, as bgpd's do (OCELOT_FIB_NEXTHOP_OBJECTS=1: node run's
// default keeps the gateway in each route). A Node deleted: the other node drops
// its session, its routes and that object, and the deleted node's own speaker stops. Each node's new block is originated
// by the BGP fast path as IPAM confirms it, and the debounced pass after it reconfigures nothing. Read back from the kernel and from
// the speakers' status sockets.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResourceClient } from "../../src/api/client.js";
import { kindOf } from "../../src/api/registry.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { runSync } from "../helpers/limits.js";
import { link, Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import {
  cni,
  daemonTestsUnavailable,
  type NodeProcess,
  netconf,
  peerStatus,
  podEnv,
  routes,
  startMeshNodes,
  stopMeshNodes,
} from "./harness.js";

const skip = skipWithReason("ocelot node run BGP netns", daemonTestsUnavailable());
const POOL = "10.72.0.0/16";

const nexthops = (ns: Netns) =>
  ns.ipJson<{ id: number; gateway?: string; protocol?: string }[]>("nexthop", "show");

interface Peer {
  address: string;
  state: string;
}

describe.skipIf(skip)("ocelot node run: BGP from the datastore", () => {
  let dir: string;
  let url: string;
  let store: SqliteDatastore;
  const nodes: { name: string; ns: Netns; ip: string; daemon?: NodeProcess; pod?: Netns }[] = [];
  const podIps: string[] = [];

  const status = (i: number): Peer[] => peerStatus<Peer>(join(dir, `${nodes[i]?.name}.sock`));

  const objectsBefore = process.env.OCELOT_FIB_NEXTHOP_OBJECTS;
  beforeAll(async () => {
    // The daemons inherit it (this file's own worker process).
    process.env.OCELOT_FIB_NEXTHOP_OBJECTS = "1";
    dir = mkdtempSync(join(tmpdir(), "ocelot-nodebgp-"));
    url = `file:${join(dir, "store.db")}`;
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool", POOL, { blockSize: 26 });
    for (const [i, name] of ["bgp-a", "bgp-b"].entries()) {
      nodes.push({ name, ns: Netns.create(`nb${i}`), ip: `10.99.0.${i + 1}` });
    }
    const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
    link(a.ns, "eth0", `${a.ip}/24`, b.ns, "eth0", `${b.ip}/24`);
    for (const [n, other] of [
      [a, b],
      [b, a],
    ] as const) {
      n.ns.exec("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0");
      // Proxy ARP for the pods' gateway needs a route to it out of another interface.
      n.ns.ip("route", "add", "default", "via", other.ip);
      n.pod = Netns.create(`${n.name}-p`.replace("bgp-", "nbp"));
    }
    await startMeshNodes(nodes, url, dir);
  });

  afterAll(async () => {
    if (objectsBefore === undefined) delete process.env.OCELOT_FIB_NEXTHOP_OBJECTS;
    else process.env.OCELOT_FIB_NEXTHOP_OBJECTS = objectsBefore;
    await stopMeshNodes(nodes);
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the two nodes mesh from their Node resources alone", async () => {
    await waitFor(
      "both sessions Established",
      () => [0, 1].every((i) => status(i).some((p) => p.state === "Established")),
      20_000,
      200,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${nodes.map((n) => n.daemon?.log).join("\n")}`);
    });
    expect(status(0).map((p) => p.address)).toEqual(["10.99.0.2"]);
    expect(status(1).map((p) => p.address)).toEqual(["10.99.0.1"]);
  });

  it("a pod on each node: each learns the other's block over iBGP (protocol 201), and the pods ping each other", async () => {
    for (const n of nodes) {
      const r = await cni(n.ns, "ADD", podEnv(n.pod as Netns, `${n.name}-web`), {
        ...netconf(url, n.name, "pool"),
      });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      podIps.push((JSON.parse(r.stdout).ips[0].address as string).split("/")[0] as string);
    }
    const blockOf = (ip: string) => {
      const o = ip.split(".").map(Number);
      return `${o[0]}.${o[1]}.${o[2]}.${Math.floor((o[3] as number) / 64) * 64}/26`;
    };
    for (const [i, n] of nodes.entries()) {
      const other = nodes[1 - i] as (typeof nodes)[0];
      const block = blockOf(podIps[1 - i] as string);
      await waitFor(
        `${n.name} to learn ${block} via ${other.ip}`,
        () => routes(n.ns, "201").some((r) => r.dst === block && r.gateway === other.ip),
        15_000,
        100,
      );
      // Through a nexthop object of ours (protocol 201) for the other node's address.
      const r = routes(n.ns, "201").find((x) => x.dst === block);
      expect(r?.nhid).toBeGreaterThan(0);
      expect(nexthops(n.ns).find((o) => o.id === r?.nhid)).toMatchObject({
        gateway: other.ip,
        protocol: "201",
      });
    }
    for (const [i, n] of nodes.entries()) {
      const to = podIps[1 - i] as string;
      await waitFor(
        `a ping from ${n.name}'s pod to ${to}`,
        () =>
          runSync("ip", ["netns", "exec", (n.pod as Netns).name, "ping", "-c1", "-W1", to])
            .status === 0,
        10_000,
        100,
      );
    }
  });

  it("each node announced its new block once (the BGP fast path, or the pass when one was applying) and never flapped it", async () => {
    const FAST = "BGP: new block of this node originated (fast path)";
    let fastTaken = 0;
    for (const [i, n] of nodes.entries()) {
      const o = (podIps[i] as string).split(".").map(Number);
      const block = `${o[0]}.${o[1]}.${o[2]}.${Math.floor((o[3] as number) / 64) * 64}/26`;
      type Line = {
        msg?: string;
        originated?: string[];
        originateAdded?: string[];
        originateRemoved?: string[];
      };
      const lines = () =>
        (n.daemon?.log ?? "")
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .map((l) => JSON.parse(l) as Line & Record<string, unknown>);
      const fast = lines().findIndex((l) => l.msg === FAST && l.originated?.includes(block));
      // Without the fast path (a pass was applying the speaker's config when the block came:
      // the fast path yields to it), the pass announced the block.
      const first =
        fast >= 0
          ? fast
          : lines().findIndex(
              (l) => l.msg === "BGP: reconfigured" && l.originateAdded?.includes(block),
            );
      expect(first, `${n.name}: ${block} never announced\n${n.daemon?.log}`).toBeGreaterThanOrEqual(
        0,
      );
      if (fast >= 0) fastTaken++;
      else console.log(`${n.name}: ${block} announced by the pass (the fast path yielded)`);
      // A pass after it (the pod's endpoint converged by the agent) reconfigured nothing: the
      // fast path had set what it renders (not even in another order), and nothing withdrew it.
      await waitFor(
        `${n.name}: a pass after the announcement`,
        () => lines().some((l, j) => j > first && l.msg === "Agent: data plane converged"),
        30_000,
        100,
      );
      const after = lines().slice(first + 1);
      const flaps = after.filter((l) => l.msg === "BGP: reconfigured");
      expect(flaps, n.daemon?.log).toEqual([]);
    }
    console.log(`BGP fast path taken on ${fastTaken} of ${nodes.length} nodes`);
  });

  it("a Node deleted: the other node drops the session and its routes; its own speaker stops", async () => {
    const info = kindOf("projectcalico.org/v3", "Node");
    await new ResourceClient(store).delete(info as NonNullable<typeof info>, "bgp-b");
    await waitFor("bgp-a to have no peer", () => status(0).length === 0, 10_000, 100);
    await waitFor(
      "bgp-a's routes via bgp-b to go",
      () => routes(nodes[0]?.ns as Netns, "201").length === 0,
      10_000,
      100,
    );
    // The object for bgp-b's address goes with its last route.
    await waitFor(
      "bgp-a's nexthop object for bgp-b to go",
      () => !nexthops(nodes[0]?.ns as Netns).some((o) => o.protocol === "201"),
      10_000,
      100,
    );
    await waitFor(
      "bgp-b to stop its speaker",
      () => nodes[1]?.daemon?.has("BGP: not running the speaker"),
      10_000,
      100,
    );
    // Its kernel routes learned from bgp-a are withdrawn with its speaker.
    expect(routes(nodes[1]?.ns as Netns, "201")).toEqual([]);
  });
});
