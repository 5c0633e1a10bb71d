// The embedded store on a full disk (reliability): the store's file lives on a small tmpfs
// that the test fills. Writes then fail with a clear error naming the problem and the file,
// nothing half-written is visible (every key holds its last acknowledged value, the file passes
// SQLite's integrity check), and once space returns the same open store writes again.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { UnavailableError } from "../../src/datastore/types.js";
import { runSync } from "../helpers/limits.js";
import { netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";

// Mounting a tmpfs needs root, as namespaces do.
const skip = skipWithReason("embedded store on a full disk", netnsUnavailableReason());

describe.skipIf(skip)("embedded store on a full disk", () => {
  let dir: string;
  let mnt: string;
  let mounted = false;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-full-"));
    mnt = join(dir, "mnt");
    mkdirSync(mnt);
    const r = runSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt]);
    if (r.status !== 0) throw new Error(`mount tmpfs failed: ${r.stderr}`);
    mounted = true;
  });
  afterAll(() => {
    if (mounted) runSync("umount", ["-l", mnt]);
    rmSync(dir, { recursive: true, force: true });
  });

  it("a write on a full disk fails clearly, loses nothing acknowledged, and works once space returns", async () => {
    const path = join(mnt, "store.db");
    const store = new SqliteDatastore(path);
    const acked = new Map<string, string>();
    // Fill most of the tmpfs with a file we can remove later.
    writeFileSync(join(mnt, "filler"), Buffer.alloc(2 * 1024 * 1024, 1));
    const value = "x".repeat(4000);
    let failure: unknown;
    // Bounded: 4 MiB holds at most ~1000 values of 4 kB.
    for (let i = 0; i < 5000 && failure === undefined; i++) {
      const key = `/full/${i % 300}`;
      const v = `${i}:${value}`;
      try {
        await store.update(key, v);
        acked.set(key, v);
      } catch (err) {
        failure = err;
      }
    }
    expect(failure, "the disk never filled").toBeInstanceOf(UnavailableError);
    const msg = (failure as Error).message;
    expect(msg).toMatch(/full/i);
    expect(msg).toContain(path);
    // Every acknowledged value is there (from this connection and from a fresh one).
    for (const [k, v] of acked) expect((await store.get(k))?.value).toBe(v);
    const other = new SqliteDatastore(path);
    for (const [k, v] of acked) expect((await other.get(k))?.value).toBe(v);
    await other.close();
    // Space returns: the same open store writes again, and the file is intact.
    rmSync(join(mnt, "filler"));
    const kv = await store.update("/full/after", "written after space returned");
    expect(kv.value).toBe("written after space returned");
    for (const [k, v] of acked) expect((await store.get(k))?.value).toBe(v);
    await store.close();
    const db = new Database(path, { readonly: true });
    expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
    db.close();
  });
});
