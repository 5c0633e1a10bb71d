// `ocelot get clusterinformations` end to end: the real bin/ocelot (built by `npm run build`) on
// a temp SQLite store shows the record that `ocelot datastore lock|unlock` and `ocelot ipam
// check` write, as the store holds it; apply and delete of it are refused and change nothing.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { runSync } from "../helpers/limits.js";

const root = new URL("../../", import.meta.url).pathname;
const bin = join(root, "bin/ocelot");
const KEY = "/ocelot/resources/v3/clusterinformations/default";

// biome-ignore lint/suspicious/noExplicitAny: parsed CLI output is checked field by field.
type Json = any;

describe("ocelot get clusterinformations on the embedded file store", () => {
  let dir: string;
  let url: string;
  const ocelot = (args: string[], input?: string) =>
    runSync(bin, [...args, "--datastore", url], { encoding: "utf8", input, timeout: 30_000 });
  const ok = (args: string[]): string => {
    const r = ocelot(args);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    return r.stdout;
  };
  /** The record as the store holds it, read without the CLI. */
  const stored = async (): Promise<{ value: Json; modRevision: number } | undefined> => {
    const store = new SqliteDatastore(join(dir, "store.db"));
    try {
      const kv = await store.get(KEY);
      return kv && { value: JSON.parse(kv.value), modRevision: kv.modRevision };
    } finally {
      await store.close();
    }
  };

  beforeAll(() => {
    if (!existsSync(join(root, "dist/api/clusterinfo.js")))
      throw new Error("dist/api/clusterinfo.js is missing: run `npm run build` first");
    dir = mkdtempSync(join(tmpdir(), "ocelot-clusterinfo-"));
    url = `file:${join(dir, "store.db")}`;
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("shows nothing before the record exists, then what datastore lock and unlock wrote", async () => {
    expect(parseYaml(ok(["get", "clusterinformations", "-o", "yaml"])).items).toEqual([]);
    const missing = ocelot(["get", "clusterinformation", "default"]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/clusterinformation "default" not found/);

    const lock = JSON.parse(ok(["datastore", "lock", "--json"]));
    const list = parseYaml(ok(["get", "clusterinformations", "-o", "yaml"]));
    expect(list.kind).toBe("ClusterInformationList");
    expect(list.items).toHaveLength(1);
    const [item] = list.items;
    const db = await stored();
    expect(item).toEqual({
      ...db?.value,
      metadata: { ...db?.value.metadata, resourceVersion: String(db?.modRevision) },
    });
    expect(item.spec).toEqual({ clusterGUID: lock.clusterGUID, datastoreReady: false });
    const table = ok(["get", "clusterinfo"]).trim().split("\n");
    expect(table[0]?.split(/\s+/)).toEqual([
      "NAME",
      "CLUSTERGUID",
      "CLUSTERTYPE",
      "CALICOVERSION",
      "DATASTOREREADY",
    ]);
    expect(table[1]?.split(/\s+/)).toEqual(["default", lock.clusterGUID, "false"]);

    ok(["datastore", "unlock"]);
    const one = JSON.parse(ok(["get", "clusterinformation", "default", "-o", "json"]));
    expect(one.spec).toEqual({ clusterGUID: lock.clusterGUID, datastoreReady: true });
    expect(one.metadata.resourceVersion).toBe(String((await stored())?.modRevision));
  });

  it("refuses apply and delete of the record by name, changing nothing", async () => {
    ok(["datastore", "lock"]);
    const before = await stored();
    const yaml = ok(["get", "clusterinformation", "default", "-o", "yaml"]);
    const applied = ocelot(["apply", "-f", "-"], yaml);
    expect(applied.status).toBe(1);
    expect(applied.stderr).toMatch(
      /clusterinformation "default" cannot be applied: it is written by `ocelot datastore lock\|unlock`/,
    );
    expect(applied.stderr).toMatch(/Nothing was written/);
    const deleted = ocelot(["delete", "clusterinformation", "default"]);
    expect(deleted.status).toBe(1);
    expect(deleted.stderr).toMatch(/clusterinformation "default" cannot be deleted/);
    expect(deleted.stderr).toMatch(/Nothing was deleted/);
    expect(await stored()).toEqual(before);
    expect(JSON.parse(ok(["datastore", "status", "--json"])).locked).toBe(true);
    ok(["datastore", "unlock"]);
  });

  it("shows the record that ipam check made on a fresh store", async () => {
    const fresh = `file:${join(dir, "fresh.db")}`;
    const run = (args: string[]) =>
      runSync(bin, [...args, "--datastore", fresh], { encoding: "utf8", timeout: 30_000 });
    const check = run(["ipam", "check", "--json"]);
    expect(check.stderr).toBe("");
    expect(check.status).toBe(0);
    const report = JSON.parse(check.stdout);
    const got = run(["get", "clusterinformations", "-o", "json"]);
    expect(got.status).toBe(0);
    const { items } = JSON.parse(got.stdout);
    expect(items.map((i: Json) => i.spec)).toEqual([
      { clusterGUID: report.clusterGUID, datastoreReady: true },
    ]);
  });
});
