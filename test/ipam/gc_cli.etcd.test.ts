// The scenarios of gc_cli.test.ts on a real etcd 3.4: `ocelot ipam gc` two passes, the empty
// block and gone-node sweeps, the datastore lock against bin/ocelot-ipam, and the refusals of
// `ipam release --from-report`.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { openDatastore } from "../../src/datastore/open.js";
import type { Datastore } from "../../src/datastore/types.js";
import { type EtcdServer, etcdUnavailableReason, startEtcd } from "../helpers/etcd.js";
import { skipWithReason } from "../helpers/netns.js";
import { type PrivateBuild, privateBuild } from "./build.js";
import { gcScenario, lockScenario } from "./gc_scenarios.js";

const skipEtcd = skipWithReason("ipam gc on etcd", etcdUnavailableReason());

describe.skipIf(skipEtcd)("ipam gc and the datastore lock on etcd", () => {
  let etcd: EtcdServer;
  let store: Datastore;
  let dir: string;

  let build: PrivateBuild;

  beforeAll(async () => {
    build = privateBuild();
    dir = mkdtempSync(join(tmpdir(), "ocelot-gc-cli-etcd-"));
    etcd = await startEtcd();
    store = await openDatastore(etcd.url);
  });

  afterAll(async () => {
    await store?.close();
    await etcd?.stop();
    build?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("gc: two passes release exactly the leaked; empty block and gone node swept", async () => {
    await gcScenario(build, etcd.url, store, "10.63.0.0/24");
  });

  it("lock: CNI ADD code 11 while locked; release --from-report refusals and success", async () => {
    await lockScenario(build, etcd.url, store, dir, "10.64.0.0/24");
  });
});
