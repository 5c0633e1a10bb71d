// The leader lease (src/datastore/lease.ts): decideLease() as a table (create, renew, take over
// only after the seen revision stood still for the TTL by our own clock, else wait), and two
// LeaderLease candidates on one in-memory store with real short timers: exactly one leads; the
// leader's stop() hands over at once; a leader that stops renewing (its store calls fail) steps
// down within 2/3 of the TTL, before the other may take over.
import { describe, expect, it } from "vitest";
import { decideLease, LeaderLease } from "../../src/datastore/lease.js";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import type { Datastore, KeyValue } from "../../src/datastore/types.js";
import { waitFor } from "../helpers/netns.js";

const kv = (holder: string, modRevision: number): KeyValue => ({
  key: "/ocelot/leases/x",
  value: JSON.stringify({ holder, ttlMs: 1000, renewals: 3 }),
  createRevision: 1,
  modRevision,
  version: 1,
});

describe("decideLease()", () => {
  it("creates a missing lease, renews its own at the seen revision", () => {
    expect(decideLease("a", 1000, undefined, undefined, 0)).toEqual({
      op: "create",
      record: { holder: "a", ttlMs: 1000, renewals: 0 },
    });
    expect(decideLease("a", 1000, kv("a", 7), undefined, 0)).toEqual({
      op: "renew",
      record: { holder: "a", ttlMs: 1000, renewals: 4 },
      expected: 7,
    });
  });

  it("takes another's over only when the same revision stood still for its TTL", () => {
    const first = decideLease("b", 1000, kv("a", 7), undefined, 5000);
    expect(first).toEqual({ op: "wait", observed: { modRevision: 7, since: 5000 }, holder: "a" });
    expect(decideLease("b", 1000, kv("a", 7), { modRevision: 7, since: 5000 }, 5999).op).toBe(
      "wait",
    );
    // A renewal (a new revision) restarts the count.
    expect(decideLease("b", 1000, kv("a", 8), { modRevision: 7, since: 5000 }, 6000)).toEqual({
      op: "wait",
      observed: { modRevision: 8, since: 6000 },
      holder: "a",
    });
    expect(decideLease("b", 1000, kv("a", 8), { modRevision: 8, since: 6000 }, 7000)).toEqual({
      op: "takeover",
      record: { holder: "b", ttlMs: 1000, renewals: 4 },
      expected: 8,
    });
  });
});

describe("LeaderLease: two candidates on one store", () => {
  function candidate(store: Datastore, id: string, events: string[]) {
    const l = new LeaderLease({
      store,
      name: "x",
      identity: id,
      ttlMs: 600,
      onLead: () => events.push(`${id} leads`),
      onLose: (why) => events.push(`${id} loses: ${why}`),
    });
    l.start();
    return l;
  }

  it("one leads; stop() hands over at once; a leader cut off steps down before the takeover", async () => {
    const store = new MemoryDatastore();
    const events: string[] = [];
    const a = candidate(store, "a", events);
    await waitFor("a to lead", () => a.isLeader || undefined, 5000, 10);
    const b = candidate(store, "b", events);
    await new Promise((r) => setTimeout(r, 1500)); // over two TTLs: a keeps renewing
    expect([a.isLeader, b.isLeader]).toEqual([true, false]);
    const t0 = performance.now();
    await a.stop();
    await waitFor("b to lead", () => b.isLeader || undefined, 5000, 10);
    expect(performance.now() - t0).toBeLessThan(600); // no TTL wait after a clean stop

    // b's store calls fail from now on (a partition): b steps down, then c takes over.
    let cutOff = false;
    const cut = new Proxy(store, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target);
        if (typeof v !== "function") return v;
        return (...args: unknown[]) => {
          if (cutOff) return Promise.reject(new Error("unreachable"));
          return v.apply(target, args);
        };
      },
    }) as Datastore;
    const failing = new LeaderLease({
      store: cut,
      name: "y",
      identity: "b2",
      ttlMs: 600,
      onLead: () => events.push("b2 leads"),
      onLose: (why) => events.push(`b2 loses: ${why}`),
    });
    failing.start();
    await waitFor("b2 to lead y", () => failing.isLeader || undefined, 5000, 10);
    let steppedDownAt = 0;
    cutOff = true;
    const other = new LeaderLease({
      store,
      name: "y",
      identity: "c",
      ttlMs: 600,
      onLead: () => {
        events.push(`c leads (b2 leading: ${failing.isLeader})`);
      },
      onLose: () => {},
    });
    other.start();
    await waitFor(
      "b2 to step down",
      () => {
        if (!failing.isLeader && steppedDownAt === 0) steppedDownAt = performance.now();
        return !failing.isLeader || undefined;
      },
      5000,
      5,
    );
    await waitFor("c to lead y", () => other.isLeader || undefined, 5000, 10);
    expect(events).toContain("c leads (b2 leading: false)");
    expect(events).toContain("b2 loses: could not renew within 2/3 of the TTL");
    await Promise.all([b.stop(), failing.stop(), other.stop()]);
    await store.close();
  });
});
