// `ocelot ipam gc`, `ocelot datastore lock|unlock|status` and the guards of
// `ipam release --from-report` through the real bin/ocelot and bin/ocelot-ipam on an embedded
// SQLite file (the same scenarios on etcd: gc_cli.etcd.test.ts), and the gc loop until SIGTERM.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { HANG_MS, hangLimit } from "../helpers/limits.js";
import { type PrivateBuild, privateBuild } from "./build.js";
import { gcScenario, lockScenario } from "./gc_scenarios.js";

let build: PrivateBuild;

beforeAll(() => {
  build = privateBuild();
});

afterAll(() => build?.remove());

describe("ipam gc and the datastore lock on SQLite", () => {
  let dir: string;
  let store: SqliteDatastore;
  let url: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-gc-cli-"));
    store = new SqliteDatastore(join(dir, "store.db"));
    url = `file:${join(dir, "store.db")}`;
  });

  afterAll(async () => {
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("gc: two passes release exactly the leaked; empty block and gone node swept", async () => {
    await gcScenario(build, url, store, "10.61.0.0/24");
  });

  it("lock: CNI ADD code 11 while locked; release --from-report refusals and success", async () => {
    await lockScenario(build, url, store, dir, "10.62.0.0/24");
  });

  it("gc without --once passes every interval until SIGTERM, then exits 0", async () => {
    const p = spawn(
      build.ocelot,
      ["ipam", "gc", "--interval", "1s", "--json", "--datastore", url],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    const exited = new Promise<number | null>((resolve) => p.on("close", (code) => resolve(code)));
    const kill = setTimeout(() => p.kill("SIGKILL"), HANG_MS);
    try {
      // Two passes (bounded), then SIGTERM.
      const deadline = Date.now() + hangLimit();
      while (out.split("\n").filter(Boolean).length < 2 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      const passes = out
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l));
      expect(passes.length, err).toBeGreaterThanOrEqual(2);
      expect(
        Date.parse(passes[1].observedAt) - Date.parse(passes[0].observedAt),
      ).toBeGreaterThanOrEqual(900);
      p.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      clearTimeout(kill);
      if (p.exitCode === null) p.kill("SIGKILL");
    }
  });
});
