// The real `bin/ocelot-ipam` on a 3-member etcd cluster whose leader is SIGKILLed in the middle
// of the ADDs (issue "past one machine": before, 2 of 120 ADDs failed with `14 UNAVAILABLE`,
// not sent again to a live member). Each plugin is given all three endpoints. Every ADD must
// either succeed or fail with a clean CNI error (one line, no stack); a retried failure
// succeeds; addresses are distinct; after the DELs nothing is in use.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatastore } from "../../src/datastore/open.js";
import type { Datastore } from "../../src/datastore/types.js";
import { type EtcdCluster, etcdUnavailableReason, startEtcdCluster } from "../helpers/etcd.js";
import { skipWithReason } from "../helpers/netns.js";
import { type PrivateBuild, privateBuild } from "./build.js";
import { bounded, MAX_IN_FLIGHT, netConf, runCni, usage } from "./cni_run.js";
import { putPool } from "./helpers.js";

const skip = skipWithReason("ocelot-ipam on a 3-member etcd cluster", etcdUnavailableReason());

describe.skipIf(skip)("ocelot-ipam on a 3-member etcd cluster losing its leader", () => {
  let cluster: EtcdCluster;
  let store: Datastore;
  let build: PrivateBuild;
  beforeAll(async () => {
    build = privateBuild();
    cluster = await startEtcdCluster(3);
    store = await openDatastore(cluster.url);
    await putPool(store, "default-ipv4", "10.23.0.0/16");
  });
  afterAll(async () => {
    await store?.close();
    await cluster?.stop();
    build?.remove();
  });

  it("24 ADDs on 4 nodes, the leader killed after 8: each succeeds or fails cleanly; no leak, no duplicate", async () => {
    const pods = Array.from({ length: 24 }, (_, i) => ({ node: `cl${i % 4}`, id: `cl${i}` }));
    let done = 0;
    let killed = -1;
    const first = await bounded(
      pods.map((p) => async () => {
        const r = await runCni(build.ocelotIpam, "ADD", p.id, netConf(cluster.url, p.node));
        if (++done === 8) {
          killed = cluster.leader();
          if (killed >= 0) await cluster.kill(killed);
        }
        return r;
      }),
      MAX_IN_FLIGHT,
    );
    expect(killed, "no leader was found to kill").toBeGreaterThanOrEqual(0);
    const failed = first.filter((r) => r.code !== 0);
    for (const r of failed) {
      const err = JSON.parse(r.stdout) as { code: number; msg: string };
      expect(err.code, r.stdout).toBeGreaterThan(0);
      expect(err.msg).not.toContain("\n    at ");
    }
    console.log(
      `3-member etcd, leader m${killed} killed after 8 of 24 ADDs: ${pods.length - failed.length} succeeded, ${failed.length} failed cleanly`,
    );
    // The runtime retries what failed (and a retry of a success returns the same address).
    const retried = await bounded(
      pods.map((p) => () => runCni(build.ocelotIpam, "ADD", p.id, netConf(cluster.url, p.node))),
      MAX_IN_FLIGHT,
    );
    for (const r of retried) expect(r.code, r.stdout + r.stderr).toBe(0);
    for (const [i, r] of first.entries())
      if (r.code === 0) expect(retried[i]?.stdout).toBe(r.stdout);
    const addrs = retried.map((r) => JSON.parse(r.stdout).ips[0].address as string);
    expect(new Set(addrs).size).toBe(pods.length);
    expect((await usage(store)).inUse).toBe(pods.length);
    const dels = await bounded(
      pods.map((p) => () => runCni(build.ocelotIpam, "DEL", p.id, netConf(cluster.url, p.node))),
      MAX_IN_FLIGHT,
    );
    for (const r of dels) expect(r.code, r.stdout + r.stderr).toBe(0);
    expect((await usage(store)).inUse).toBe(0);
  });
});
