// The periodic compactor: its policy, and its effect on a store (watchers far behind resync,
// recent ones do not).
import { describe, expect, it } from "vitest";
import { compactionTarget, startCompactor } from "../../src/datastore/compactor.js";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import { hangLimit } from "../helpers/limits.js";
import { Collector } from "./conformance.js";

describe("compactionTarget()", () => {
  it("keeps the last N revisions and never goes backwards", () => {
    expect(compactionTarget(100, 10, 0)).toBe(90);
    expect(compactionTarget(100, 10, 90)).toBeUndefined();
    expect(compactionTarget(100, 10, 95)).toBeUndefined();
    expect(compactionTarget(5, 10, 0)).toBeUndefined();
  });
});

describe("startCompactor()", () => {
  it("compacts to revision - keep, so only watchers far behind must resync", async () => {
    const s = new MemoryDatastore();
    const first = await s.create("/k", "0");
    for (let i = 1; i <= 50; i++) await s.update("/k", String(i));
    const rev = await s.revision();
    const c = startCompactor(s, { keepRevisions: 20, intervalMs: 60_000 });
    try {
      expect(await c.runOnce()).toBe(rev - 20);
      expect(await c.runOnce()).toBeUndefined();
      const old = new Collector();
      const recent = new Collector();
      const w1 = s.watch("/", first.modRevision, old.onMessage);
      const w2 = s.watch("/", rev - 10, recent.onMessage);
      await old.waitFor((x) => x.messages.length > 0, "a resync");
      await recent.waitFor((x) => x.events.length >= 10, "the last ten events");
      expect(old.messages[0]).toEqual({ kind: "resync", compactRevision: rev - 20 });
      await w1.cancel();
      await w2.cancel();
    } finally {
      c.stop();
      await s.close();
    }
  });

  it("runs on its timer and reports errors without stopping", async () => {
    const s = new MemoryDatastore();
    for (let i = 0; i < 30; i++) await s.update("/k", String(i));
    const errors: Error[] = [];
    const c = startCompactor(s, {
      keepRevisions: 5,
      intervalMs: 20,
      onError: (e) => errors.push(e),
    });
    let compacted = false;
    const deadline = Date.now() + hangLimit();
    while (!compacted && Date.now() < deadline) {
      const w = new Collector();
      const watch = s.watch("/", 1, w.onMessage);
      await w.waitFor((x) => x.messages.length > 0, "a message");
      await watch.cancel();
      compacted = w.messages[0]?.kind === "resync";
      await new Promise((r) => setTimeout(r, 20));
    }
    c.stop();
    expect(compacted).toBe(true);
    await s.close();
    // After close, a run fails; the error goes to onError rather than crashing.
    const c2 = startCompactor(s, {
      keepRevisions: 5,
      intervalMs: 10,
      onError: (e) => errors.push(e),
    });
    await new Promise((r) => setTimeout(r, 100));
    c2.stop();
    expect(errors.some((e) => /closed/.test(e.message))).toBe(true);
  });
});
