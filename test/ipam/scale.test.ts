// bench/ipam_scale.ts in a small form (200 nodes, 5,000 allocations), on the embedded store and
// on a real etcd 3.4: the seeded cluster checks clean through `ocelot ipam check` and
// `ocelot ipam gc --once --dry-run` (no leak, every allocation counted), CNI-equivalent
// assignments on nodes across the pool take from each node's own block, and a deleted node's
// block and affinity are released with no other node's IPAM key changed. Limits are for hangs
// only; the speed figures come from the benchmark.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  deleteNodeAndCollect,
  measureAssign,
  seedCluster,
  timeCli,
} from "../../bench/ipam_scale.js";
import { EtcdDatastore } from "../../src/datastore/etcd.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import type { Datastore } from "../../src/datastore/types.js";
import { IpamStore } from "../../src/ipam/store.js";
import { type EtcdServer, etcdUnavailableReason, startEtcd } from "../helpers/etcd.js";
import { HANG_MS } from "../helpers/limits.js";
import { skipWithReason } from "../helpers/netns.js";
import { type PrivateBuild, privateBuild } from "./build.js";

const NODES = 200;
const ALLOCATIONS = 5000;

async function scaleScenario(build: PrivateBuild, store: Datastore, url: string): Promise<void> {
  const cluster = await seedCluster(store, { nodes: NODES, allocations: ALLOCATIONS });
  const ipam = new IpamStore(store);
  const blocks = await ipam.listBlocks(4);
  expect(blocks).toHaveLength(NODES);
  // Assignments on nodes across the pool come from the node's own block, and go again.
  const spread = [0, NODES / 2, NODES - 1].map((i) => cluster.nodes[i] as string);
  const lat = await measureAssign(store, spread, 12, "test");
  expect(lat.n).toBe(12);
  for (const node of spread) {
    const got = await ipam.autoAssign({ handleId: `probe-${node}`, node, num4: 1, num6: 0 });
    expect(got[0]?.block).toBe(cluster.blockOf.get(node));
    await ipam.releaseByHandle(`probe-${node}`, node);
  }

  const check = timeCli(url, ["ipam", "check"], HANG_MS, build.ocelot);
  expect(check.stdout).toContain(`Checked ${NODES} blocks, ${ALLOCATIONS} allocated addresses.`);
  expect(check.stdout).toContain("Leaked addresses (allocated, no WorkloadEndpoint): 0");
  expect(check.stdout).toContain("Blocks of nodes that no longer exist: 0");
  const gc = timeCli(url, ["ipam", "gc", "--once", "--dry-run"], HANG_MS, build.ocelot);
  expect(gc.stdout).toContain("Would release 0 leaked addresses");
  expect(gc.stdout).toContain("Would release 0 empty blocks");

  const gone = cluster.nodes[7] as string;
  const del = await deleteNodeAndCollect(store, cluster, gone);
  expect(del.releasedBlock).toBe(cluster.blockOf.get(gone));
  expect(del.othersTouched).toEqual([]);
  const left = await ipam.listBlocks(4);
  expect(left).toHaveLength(NODES - 1);
  expect(left.some((e) => e.block.affinity === `host:${gone}`)).toBe(false);
  const after = timeCli(url, ["ipam", "check"], HANG_MS, build.ocelot);
  const perNode = ALLOCATIONS / NODES;
  expect(after.stdout).toContain(`${ALLOCATIONS - perNode} allocated addresses.`);
  expect(after.stdout).toContain("Leaked addresses (allocated, no WorkloadEndpoint): 0");
}

describe("IPAM at scale (small form of bench/ipam_scale.ts)", () => {
  let build: PrivateBuild;
  let dir: string;
  beforeAll(() => {
    build = privateBuild();
    dir = mkdtempSync(join(tmpdir(), "ocelot-ipam-scale-"));
  });
  afterAll(() => {
    build?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(
    `embedded store: ${NODES} nodes, ${ALLOCATIONS} allocations, no leak, one node released alone`,
    async () => {
      const file = join(dir, "store.db");
      const store = new SqliteDatastore(file);
      try {
        await scaleScenario(build, store, `file:${file}`);
      } finally {
        await store.close();
      }
    },
    10 * HANG_MS,
  );

  const skipEtcd = skipWithReason("IPAM scale on etcd", etcdUnavailableReason());
  it.skipIf(skipEtcd)(
    `etcd: ${NODES} nodes, ${ALLOCATIONS} allocations, no leak, one node released alone`,
    async () => {
      let etcd: EtcdServer | undefined;
      let store: Datastore | undefined;
      try {
        etcd = await startEtcd();
        store = await EtcdDatastore.connect({ endpoints: [etcd.endpoint] });
        await scaleScenario(build, store, etcd.url);
      } finally {
        await store?.close();
        await etcd?.stop();
      }
    },
    10 * HANG_MS,
  );
});
