// `ocelot` resource commands end to end on the embedded file store (SQLite in a temp dir).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resourcesSuite } from "./resources_suite.js";

resourcesSuite("the embedded file store", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ocelot-store-"));
  return {
    url: `file:${join(dir, "store.db")}`,
    close: async () => rmSync(dir, { recursive: true, force: true }),
  };
});
