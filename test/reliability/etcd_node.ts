// A node daemon on a real etcd, for the datastore reliability tests: etcd started, a pool with
// one address assigned to the node (so one block's route is in its kernel), and the real
// `ocelot node run` with no BGP programming a namespace of this run, ready; all of it stopped
// and removed again, also after a start that failed half-way.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatastore } from "../../src/datastore/open.js";
import type { Datastore } from "../../src/datastore/types.js";
import { IpamStore } from "../../src/ipam/store.js";
import { type EtcdServer, startEtcd } from "../helpers/etcd.js";
import { Netns, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import { type NodeProcess, type ReadyNode, startReadyNode } from "../node/harness.js";

export interface EtcdNode {
  etcd: EtcdServer;
  store: Datastore;
  ns: Netns;
  dir: string;
  daemon: NodeProcess;
  get: ReadyNode["get"];
}

export interface EtcdNodeOptions {
  /** The temp dir is `ocelot-<name>-…`. */
  name: string;
  /** The namespace's short name. */
  ns: string;
  node: string;
  /** The node's address with its prefix length. */
  ip: string;
  /** A /24 pool (blocks of /26) and the IPAM handle of the one address assigned from it. */
  pool: { name: string; cidr: string; handleId: string };
  extra?: string[];
}

export async function startEtcdNode(o: EtcdNodeOptions): Promise<EtcdNode> {
  const n: Partial<EtcdNode> = { dir: mkdtempSync(join(tmpdir(), `ocelot-${o.name}-`)) };
  try {
    n.etcd = await startEtcd();
    n.store = await openDatastore(n.etcd.url);
    await putPool(n.store, o.pool.name, o.pool.cidr, { blockSize: 26 });
    await new IpamStore(n.store).autoAssign({
      handleId: o.pool.handleId,
      node: o.node,
      num4: 1,
      num6: 0,
    });
    n.ns = Netns.create(o.ns);
    const ready = await startReadyNode(n.ns, {
      nodename: o.node,
      ip: o.ip,
      datastore: n.etcd.url,
      dir: n.dir as string,
      ...(o.extra ? { extra: o.extra } : {}),
    });
    return { ...(n as EtcdNode), daemon: ready.daemon, get: ready.get };
  } catch (err) {
    await stopEtcdNode(n);
    throw err;
  }
}

/** Stops the daemon, removes the namespace, closes the store, stops etcd, removes the dir. */
export async function stopEtcdNode(n: Partial<EtcdNode>): Promise<void> {
  await n.daemon?.stop();
  n.ns?.destroy();
  await n.store?.close();
  await n.etcd?.stop();
  if (n.dir) rmSync(n.dir, { recursive: true, force: true });
}

/** Waits (bounded) until /readyz answers 503 naming the datastore; `why` for the failure. */
export async function waitDatastoreNotReady(
  get: ReadyNode["get"],
  why: () => string,
): Promise<void> {
  await waitFor(
    "/readyz 503 naming the datastore",
    async () => {
      const r = await get("/readyz");
      return r.status === 503 && r.text.includes("datastore unreachable");
    },
    60_000,
    200,
  ).catch((e) => {
    throw new Error(`${(e as Error).message}\n${why()}`);
  });
}

/**
 * etcd restarted (500 ms down) while the store moves on: the node's block of `release` (its
 * handle's only address) released, a /24 pool `next` made with one address claimed for the node,
 * and the history compacted to the latest revision. The caller has frozen the daemon (SIGSTOP)
 * so that it sees none of it. Returns the new store (the old one is closed) and the revisions.
 */
export async function restartCompacted(
  etcd: EtcdServer,
  store: Datastore,
  node: string,
  release: { handleId: string; block: string },
  next: { name: string; cidr: string; handleId: string },
): Promise<{ store: Datastore; rev0: number; rev1: number }> {
  const rev0 = await store.revision();
  await store.close();
  await etcd.restart(500);
  const fresh = await openDatastore(etcd.url);
  const ipam = new IpamStore(fresh, { emptyBlockGraceMs: 0 });
  await ipam.releaseByHandle(release.handleId, node);
  const released = await ipam.releaseEmptyBlocks(node);
  if (released.join() !== release.block)
    throw new Error(`released ${released.join()}, expected ${release.block}`);
  await putPool(fresh, next.name, next.cidr, { blockSize: 26 });
  await ipam.autoAssign({
    handleId: next.handleId,
    node,
    num4: 1,
    num6: 0,
    pools4: [next.cidr],
  });
  const rev1 = await fresh.revision();
  await fresh.compact?.(rev1);
  if (rev1 <= rev0) throw new Error(`revision ${rev1} after ${rev0}`);
  return { store: fresh, rev0, rev1 };
}
