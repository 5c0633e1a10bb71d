// The conformance suite on the embedded SQLite backend (a real file in a temp dir, second handles
// are separate connections as another process would open), plus SQLite-only behaviour.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { Collector, runConformance } from "./conformance.js";
import { runCasRace } from "./race.js";

const dirs: string[] = [];
function tempDb(): string {
  const dir = mkdtempSync(join(tmpdir(), "ocelot-sqlite-"));
  dirs.push(dir);
  return join(dir, "store.db");
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

runConformance("sqlite", async () => {
  const path = tempDb();
  const opts = { synchronous: "NORMAL" as const };
  const store = new SqliteDatastore(path, opts);
  const others: SqliteDatastore[] = [];
  return {
    store,
    openAnother: async () => {
      const o = new SqliteDatastore(path, opts);
      others.push(o);
      return o;
    },
    cleanup: async () => {
      for (const o of others) await o.close();
      await store.close();
    },
  };
});

describe("SqliteDatastore", () => {
  it("keeps data and revision across reopen", async () => {
    const path = tempDb();
    const a = new SqliteDatastore(path);
    await a.create("/k", "v");
    const rev = await a.revision();
    await a.close();
    const b = new SqliteDatastore(path);
    expect(await b.revision()).toBe(rev);
    expect((await b.get("/k"))?.value).toBe("v");
    await b.close();
  });

  it("compacts history automatically beyond keepRevisions", async () => {
    const path = tempDb();
    const s = new SqliteDatastore(path, { keepRevisions: 100, synchronous: "NORMAL" });
    const first = await s.create("/k", "0");
    for (let i = 1; i <= 600; i++) await s.update("/k", String(i));
    const w = new Collector();
    const watch = s.watch("/", first.modRevision, w.onMessage);
    await w.waitFor((c) => c.messages.length > 0, "a resync");
    expect(w.messages[0]?.kind).toBe("resync");
    await watch.cancel();
    // Recent history is still there.
    const w2 = new Collector();
    const rev = await s.revision();
    const watch2 = s.watch("/", rev - 50, w2.onMessage);
    await w2.waitFor((c) => c.events.length >= 50, "50 recent events");
    await watch2.cancel();
    await s.close();
  });

  it.each([true, false])(
    "delivers another connection's writes with inotify %s (timer polling as the fallback)",
    async (notify) => {
      const path = tempDb();
      const writer = new SqliteDatastore(path);
      const watcher = new SqliteDatastore(path, { notify, pollIntervalMs: 40 });
      const w = new Collector();
      const watch = watcher.watch("/n/", await watcher.revision(), w.onMessage);
      try {
        for (let i = 0; i < 10; i++) await writer.update(`/n/${i % 3}`, String(i));
        await w.waitFor((c) => c.events.length >= 10, "ten events from the other connection");
        expect(w.events.map((e) => (e.type === "put" ? e.kv.value : ""))).toEqual(
          Array.from({ length: 10 }, (_, i) => String(i)),
        );
      } finally {
        await watch.cancel();
        await watcher.close();
        await writer.close();
      }
    },
  );

  it("refuses a file it cannot open with an error quoting the path", () => {
    expect(() => new SqliteDatastore("/dev/null/dir/store.db")).toThrow(
      /"\/dev\/null\/dir\/store.db"/,
    );
  });
});

describe("SqliteDatastore multi-process race", () => {
  it("8 processes x 200 CAS increments of one counter end at exactly 1600, all watched in order", async () => {
    const r = await runCasRace(`file:${tempDb()}`, 8, 200);
    console.log(`sqlite race: 1600 increments in ${r.ms} ms, ${r.conflicts} conflicts retried`);
    expect(r.final).toBe(1600);
  });
});
