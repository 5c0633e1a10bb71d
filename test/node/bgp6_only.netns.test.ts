// An IPv6-only cluster: two node namespaces on one veth with IPv6 fabric addresses only, each
// running the real `bin/ocelot node run --ip none --ip6 ADDR` on a shared SQLite store with an
// IPv6 pool. Without a router ID (4 octets even for IPv6) a node runs no BGP and says why; with
// CALICO_ROUTER_ID=hash (calico-node's setting) each takes its router ID from its name, they mesh
// over IPv6 and each learns the other's /122 under protocol 201 via the other's address. Read
// back from the kernel (`ip -j -6 route`) and the speakers' status sockets.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { IpamStore } from "../../src/ipam/store.js";
import { routerIdFromName } from "../../src/node/bgp_state.js";
import { link, Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import {
  daemonTestsUnavailable,
  type IpRoute,
  type MeshNode,
  peerStatus,
  startNode,
  stopMeshNodes,
} from "./harness.js";

const skip = skipWithReason("ocelot node run IPv6-only BGP netns", daemonTestsUnavailable());
const POOL6 = "fd74::/64";

interface Peer {
  address: string;
  state: string;
  negotiated: { families: string[] } | null;
}

describe.skipIf(skip)("ocelot node run: an IPv6-only node runs BGP with CALICO_ROUTER_ID", () => {
  let dir: string;
  let url: string;
  let store: SqliteDatastore;
  const nodes: (MeshNode & { ip6: string; block?: string })[] = [];
  const socket = (i: number) => join(dir, `${nodes[i]?.name}.sock`);
  const routes6 = (ns: Netns): IpRoute[] =>
    ns.ipJson<IpRoute[]>("-6", "route", "show", "table", "main", "proto", "201");
  const logs = () => nodes.map((n) => n.daemon?.log).join("\n");
  const start = async (routerId?: string) => {
    for (const n of nodes)
      n.daemon = await startNode(
        n.ns,
        [
          ["--nodename", n.name, "--ip", "none", "--ip6", `${n.ip6}/64`],
          routerId ? ["--router-id", routerId] : [],
          ["--datastore", url, "--status-socket", join(dir, `${n.name}.sock`)],
        ].flat(),
      );
  };
  const stop = async () => {
    for (const n of nodes) {
      await n.daemon?.stop();
      n.daemon = undefined;
    }
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-nodebgp6only-"));
    url = `file:${join(dir, "store.db")}`;
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool6", POOL6, { blockSize: 122 });
    for (const [i, name] of ["v6only-a", "v6only-b"].entries())
      nodes.push({ name, ns: Netns.create(`v6o${i}`), ip: "", ip6: `fd99::${i + 1}` });
    const [a, b] = nodes as [MeshNode & { ip6: string }, MeshNode & { ip6: string }];
    link(a.ns, "eth0", undefined, b.ns, "eth0", undefined);
    // No duplicate address detection: the fabric address is usable (bindable) at once.
    for (const n of nodes) n.ns.ip("addr", "add", `${n.ip6}/64`, "dev", "eth0", "nodad");
    // One address each from the pool: each node holds one confirmed /122.
    const ipam = new IpamStore(store);
    for (const n of nodes) {
      const r = await ipam.autoAssign({
        handleId: `pod-${n.name}`,
        node: n.name,
        num4: 0,
        num6: 1,
      });
      n.block = r[0]?.block;
    }
  });

  afterAll(async () => {
    await stopMeshNodes(nodes);
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("without a router ID: no BGP, and the log says to set CALICO_ROUTER_ID", async () => {
    await start();
    try {
      await waitFor(
        "the reason in both logs",
        () =>
          nodes.every((n) =>
            n.daemon?.lines.some(
              (l) =>
                l.msg === "BGP: not running the speaker" &&
                String((l as { reason?: string }).reason).includes("set CALICO_ROUTER_ID"),
            ),
          ),
        60_000,
        200,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}\n${logs()}`);
      });
    } finally {
      await stop();
    }
  });

  it("with CALICO_ROUTER_ID=hash: routers IDs from the names, an IPv6 mesh, each other's /122 in the kernel", async () => {
    await start("hash");
    await waitFor(
      "both IPv6 sessions Established",
      () => [0, 1].every((i) => peerStatus<Peer>(socket(i)).some((p) => p.state === "Established")),
      60_000,
      200,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${logs()}`);
    });
    for (const [i, n] of nodes.entries()) {
      const other = nodes[1 - i] as (typeof nodes)[number];
      expect(peerStatus<Peer>(socket(i)).map((p) => [p.address, p.negotiated?.families])).toEqual([
        [other.ip6, ["ipv6-unicast"]],
      ]);
      const line = n.daemon?.lines.find((l) => l.msg === "BGP: speaker started") as
        | { routerId?: string }
        | undefined;
      expect(line?.routerId, n.name).toBe(routerIdFromName(n.name));
      await waitFor(
        `${other.block} via ${other.ip6} in ${n.name}'s kernel`,
        () => routes6(n.ns).some((r) => r.dst === other.block && r.gateway === other.ip6),
        60_000,
        200,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}: ${JSON.stringify(routes6(n.ns))}\n${logs()}`);
      });
    }
  });
});
