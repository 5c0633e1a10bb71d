// The conformance suite on the in-memory backend, plus what only it offers (named shared stores,
// automatic history trimming).
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import { Collector, runConformance } from "./conformance.js";

runConformance("memory", async () => {
  const name = `conf-${randomBytes(4).toString("hex")}`;
  const store = new MemoryDatastore(name);
  const others: MemoryDatastore[] = [];
  return {
    store,
    openAnother: async () => {
      const o = new MemoryDatastore(name);
      others.push(o);
      return o;
    },
    cleanup: async () => {
      for (const o of others) await o.close();
      await store.close();
      MemoryDatastore.dropNamed(name);
    },
  };
});

describe("MemoryDatastore", () => {
  it("memory: without a name is a fresh private store", async () => {
    const a = new MemoryDatastore();
    const b = new MemoryDatastore();
    await a.create("/k", "a");
    expect(await b.get("/k")).toBeUndefined();
    expect(a.url).toBe("memory:");
  });

  it("trims history beyond keepRevisions and then asks old watchers to resync", async () => {
    const s = new MemoryDatastore(undefined, { keepRevisions: 10 });
    const first = await s.create("/k", "0");
    for (let i = 1; i <= 20; i++) await s.update("/k", String(i));
    const w = new Collector();
    const watch = s.watch("/", first.modRevision, w.onMessage);
    await w.waitFor((c) => c.messages.length > 0, "a resync");
    expect(w.messages[0]?.kind).toBe("resync");
    await watch.cancel();
  });

  it("refuses an empty key and a compaction in the future", async () => {
    const s = new MemoryDatastore();
    await expect(s.create("", "x")).rejects.toThrow(/non-empty string, got ""/);
    await expect(s.compact(1000)).rejects.toThrow(/1000 is in the future/);
  });
});
