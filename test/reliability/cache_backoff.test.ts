// The node daemon's watched cache against a dead datastore (issue 17, datastore loss): found by
// etcd_stopped.etcd.test.ts, where a stopped etcd drew 42 failed lists a second from one daemon
// (each error of a dead store's watch started one more retry chain, each retrying every second).
// Here, on the memory store: a watch that reports an error 5 times and lists that fail until the
// store is back. A prefix is retried by one chain only, after a delay that doubles (jittered to
// 0.75-1.0 of it) up to the cap, and the cache has the store's items once lists work again.
import { describe, expect, it } from "vitest";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import type { Datastore, WatchMessage } from "../../src/datastore/types.js";
import { PrefixCache } from "../../src/node/cache.js";

describe("PrefixCache with the store gone", () => {
  it("retries each prefix in one chain, with a doubling delay, and lists again once the store is back", async () => {
    const store = new MemoryDatastore();
    await store.update("/a/1", "one");
    let down = false;
    const lists: number[] = [];
    const wrapped: Datastore = Object.create(store);
    wrapped.list = async (prefix) => {
      lists.push(performance.now());
      if (down) throw new Error("connect ECONNREFUSED");
      return store.list(prefix);
    };
    let emit: ((m: WatchMessage) => void) | undefined;
    wrapped.watch = (prefix, rev, on) => {
      emit = on;
      return store.watch(prefix, rev, on);
    };
    const errors: number[] = [];
    const cache = new PrefixCache(
      wrapped,
      ["/a/"],
      { onChange: () => {}, onError: (_p, _e, next) => errors.push(next) },
      20,
      160,
    );
    await cache.start();
    lists.length = 0;
    down = true;
    // A dead store's watch reports its error more than once.
    for (let i = 0; i < 5; i++)
      emit?.({ kind: "error", error: new Error("watch stream closed") } as WatchMessage);
    await new Promise((r) => setTimeout(r, 1500));
    const gaps = lists.slice(1).map((t, i) => Math.round(t - (lists[i] as number)));
    console.log(
      `cache backoff: ${lists.length} lists in 1.5 s while down (retry 20 ms, cap 160 ms); gaps ${gaps.join(", ")} ms; delays ${errors.join(", ")} ms`,
    );
    // One chain: 20 + 20 + 40 + 80 + 160 + 160... ms: about 10 lists in 1.5 s (5 chains at a
    // fixed 20 ms, as before: about 375).
    expect(lists.length).toBeGreaterThanOrEqual(5);
    expect(lists.length).toBeLessThanOrEqual(15);
    // The delays double to the cap, each jittered to 0.75-1.0 of its base.
    errors.forEach((d, i) => {
      const base = Math.min(20 * 2 ** i, 160);
      expect(d, `delay ${i}`).toBeGreaterThanOrEqual(Math.floor(base * 0.75));
      expect(d, `delay ${i}`).toBeLessThanOrEqual(base);
    });
    // No two lists closer than the first delay's jittered floor (one chain), timers allowing.
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(14);
    down = false;
    await store.update("/a/2", "two");
    for (let i = 0; i < 6000 && cache.values("/a/").length < 2; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(cache.values("/a/").map((kv) => kv.value)).toEqual(["one", "two"]);
    await cache.close();
    await store.close();
  });
});
