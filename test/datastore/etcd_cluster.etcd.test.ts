// The etcd backend on a real 3-member etcd cluster that loses its leader, and later a follower,
// while writers and a watcher keep working (issue "past one machine"). Writers increment one
// counter by compare-and-swap through a client given all three endpoints; a write whose member
// dies mid-flight is sent again to a live member, and a compare that then fails on our own
// value counts as the write it was (each writer's values are its own: "count:writer:seq", since
// an identical value written by another writer cannot be told apart from ours — the datastore
// contract says so). So the counter must end at exactly the number of
// acknowledged increments (nothing applied twice, nothing applied but reported failed), every
// failure is a clear UnavailableError, and the watch sees every value once, in order, across
// both failures.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatastore } from "../../src/datastore/open.js";
import { ConflictError, type Datastore, UnavailableError } from "../../src/datastore/types.js";
import { type EtcdCluster, etcdUnavailableReason, startEtcdCluster } from "../helpers/etcd.js";
import { hangLimit } from "../helpers/limits.js";
import { skipWithReason } from "../helpers/netns.js";

const skip = skipWithReason("etcd cluster failover", etcdUnavailableReason());
const KEY = "/ocelot/test/cluster-counter";
const TARGET = 600;
const WRITERS = 4;
/** The counter in a value "count:writer:seq". */
const count = (v: string) => Number(v.split(":")[0]);

describe.skipIf(skip)("etcd backend on a 3-member cluster", () => {
  let cluster: EtcdCluster;
  let store: Datastore;
  beforeAll(async () => {
    cluster = await startEtcdCluster(3);
    store = await openDatastore(cluster.url, {
      etcd: { requestTimeoutMs: 3000, dialTimeoutMs: 10_000 },
    });
  });
  afterAll(async () => {
    await store?.close();
    await cluster?.stop();
  });

  it("the leader and then a follower killed mid-writes: no lost or doubled increment, the watch sees all", async () => {
    const created = await store.create(KEY, "0");
    const seen: number[] = [];
    const problems: string[] = [];
    const watch = store.watch(KEY, created.modRevision, (m) => {
      if (m.kind === "resync") problems.push(`resync at ${m.compactRevision}`);
      if (m.kind === "events")
        for (const e of m.events) if (e.type === "put") seen.push(count(e.kv.value));
    });
    let acked = 0;
    let conflicts = 0;
    const failures: string[] = [];
    const deadline = Date.now() + hangLimit(240_000);
    const writer = async (id: number) => {
      let cur = await store.get(KEY);
      for (let seq = 0; acked < TARGET && Date.now() < deadline; seq++) {
        try {
          if (!cur) throw new Error("counter missing");
          const next = `${count(cur.value) + 1}:${id}:${seq}`;
          cur = await store.update(KEY, next, cur.modRevision);
          acked++;
        } catch (err) {
          if (err instanceof ConflictError) {
            conflicts++;
            cur = err.current;
          } else if (err instanceof UnavailableError) {
            failures.push(err.message);
            await new Promise((r) => setTimeout(r, 100));
            cur = await store.get(KEY).catch(() => cur);
          } else throw err;
        }
      }
    };
    const events: string[] = [];
    const chaos = (async () => {
      const waitFor = async (n: number) => {
        while (acked < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      };
      await waitFor(TARGET / 4);
      const leader = cluster.leader();
      expect(leader, "no leader found").toBeGreaterThanOrEqual(0);
      await cluster.kill(leader);
      events.push(`killed leader m${leader} at ${acked}`);
      await waitFor(TARGET / 2);
      await cluster.restart(leader);
      events.push(`restarted m${leader} at ${acked}`);
      await waitFor((3 * TARGET) / 4);
      const now = cluster.leader();
      const follower = [0, 1, 2].find((i) => i !== now) as number;
      await cluster.kill(follower);
      events.push(`killed follower m${follower} at ${acked}`);
    })();
    await Promise.all([...Array.from({ length: WRITERS }, (_, i) => writer(i)), chaos]);
    const final = count((await store.get(KEY))?.value ?? "");
    const until = Date.now() + hangLimit();
    while (seen.length < final && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    await watch.cancel();
    console.log(
      `etcd cluster: ${events.join("; ")}; ${acked} increments acknowledged, ${conflicts} conflicts, ${failures.length} clean failures`,
    );
    expect(acked).toBeGreaterThanOrEqual(TARGET);
    expect(final, "the counter differs from the acknowledged increments").toBe(acked);
    expect(problems).toEqual([]);
    expect(seen).toEqual(Array.from({ length: final }, (_, i) => i + 1));
    for (const f of failures) expect(f).toMatch(/etcd/);
  });
});
