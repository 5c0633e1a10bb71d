// `ocelot` resource commands end to end on the embedded file store (SQLite in a temp dir).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { resourcesSuite } from "./resources_suite.js";

resourcesSuite("the embedded file store", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ocelot-store-"));
  return {
    url: `file:${join(dir, "store.db")}`,
    connect: async () => new SqliteDatastore(join(dir, "store.db")),
    close: async () => rmSync(dir, { recursive: true, force: true }),
  };
});
