// The embedded store's file held locked by another process (issue 17): the real `ocelot node
// run` (no BGP, --netns) and the real `ocelot-ipam` on one SQLite file, while the sqlite3 shell
// holds an exclusive transaction on it (as a stuck tool or a backup would). A CNI ADD then fails
// with a one-line CNI error saying the file is locked, bounded by the store's busy timeout
// (never a hang); the daemon's /readyz says not ready with the reason while /livez stays 200 and
// the kernel keeps the last known state; once the lock is released the daemon is ready again,
// the ADD succeeds and the file passes SQLite's integrity check.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { IpamStore } from "../../src/ipam/store.js";
import { HANG_MS } from "../helpers/limits.js";
import { Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import { netConf, runCni } from "../ipam/cni_run.js";
import { putPool } from "../ipam/helpers.js";
import {
  BIN,
  blackholes as blackholesOf,
  type NodeProcess,
  type ReadyNode,
  startReadyNode,
} from "../node/harness.js";

const NODE = "locked-node";
const skip = skipWithReason("embedded store locked by another process", netnsUnavailableReason());

describe.skipIf(skip)("the embedded store's file locked by another process", () => {
  let dir: string;
  let path: string;
  let store: SqliteDatastore;
  let ns: Netns;
  let daemon: NodeProcess;
  let locker: ChildProcess | undefined;
  let get: ReadyNode["get"];
  const blackholes = () => blackholesOf(ns);
  const release = async () => {
    const l = locker;
    locker = undefined;
    if (!l || l.exitCode !== null) return;
    const closed = new Promise((r) => l.once("close", r));
    l.stdin?.end("COMMIT;\n");
    const t = setTimeout(() => l.kill("SIGKILL"), HANG_MS);
    await closed;
    clearTimeout(t);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-locked-"));
    path = join(dir, "store.db");
    store = new SqliteDatastore(path);
    await putPool(store, "locked", "10.76.0.0/24", { blockSize: 26 });
    await new IpamStore(store).autoAssign({ handleId: "pod-first", node: NODE, num4: 1, num6: 0 });
    ns = Netns.create("sl");
    ({ daemon, get } = await startReadyNode(ns, {
      nodename: NODE,
      ip: "192.0.2.52/24",
      datastore: `file:${path}`,
      dir,
    }));
  });

  afterAll(async () => {
    await release();
    await daemon?.stop();
    ns?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("CNI ADD fails clearly within the busy timeout, /readyz names the lock, all recover on release", async () => {
    await waitFor("the first block's route", () => blackholes().length === 1, 60_000);
    const first = blackholes();
    const probe = new SqliteDatastore(path, { busyTimeoutMs: 50 });
    // The sqlite3 shell takes the write lock and keeps it until COMMIT.
    locker = spawn("sqlite3", [path], { stdio: ["pipe", "ignore", "pipe"] });
    let lockerErr = "";
    locker.stderr?.on("data", (d) => (lockerErr += d));
    locker.stdin?.write(".timeout 10000\nBEGIN EXCLUSIVE;\nSELECT 1;\n");
    await waitFor(
      "the lock held",
      async () => {
        try {
          await probe.update("/probe", "x");
          return false;
        } catch {
          return true;
        }
      },
      60_000,
      100,
    );
    await probe.close();
    expect(lockerErr).toBe("");

    const t0 = performance.now();
    const add = await runCni(
      join(BIN, "ocelot-ipam"),
      "ADD",
      "locked-pod",
      netConf(`file:${path}`, NODE),
    );
    const addMs = performance.now() - t0;
    const err = JSON.parse(add.stdout) as { code?: number; msg?: string; details?: string };
    expect(add.code, add.stdout + add.stderr).not.toBe(0);
    // Bounded by the store's busy timeout (10 s, src/datastore/sqlite.ts) and 5 s for the
    // plugin's own start on a loaded machine: it fails then, never hangs.
    expect(addMs, "the ADD's time to fail (ms)").toBeLessThan(15_000);
    expect(`${err.msg} ${err.details ?? ""}`).toMatch(/locked/i);
    expect(`${err.msg} ${err.details ?? ""}`).toContain(path);

    await waitFor(
      "/readyz 503 naming the lock",
      async () => {
        const r = await get("/readyz");
        return r.status === 503 && /locked/i.test(r.text);
      },
      60_000,
      200,
    ).catch(async (e) => {
      throw new Error(`${(e as Error).message}: ${(await get("/readyz")).text}\n${daemon.log}`);
    });
    const ready = await get("/readyz");
    expect((await get("/livez")).status).toBe(200);
    expect(blackholes(), "the kernel keeps the last known state").toEqual(first);

    await release();
    const t1 = performance.now();
    await waitFor(
      "/readyz 200 again",
      async () => (await get("/readyz")).status === 200,
      60_000,
      200,
    );
    const back = performance.now() - t1;
    const again = await runCni(
      join(BIN, "ocelot-ipam"),
      "ADD",
      "locked-pod",
      netConf(`file:${path}`, NODE, { ipv4_pools: ["10.76.0.0/24"] }),
    );
    expect(again.code, again.stdout + again.stderr).toBe(0);
    const ip = (JSON.parse(again.stdout) as { ips: { address: string }[] }).ips[0]?.address;
    expect(ip).toMatch(/^10\.76\.0\./);
    const db = new Database(path, { readonly: true });
    expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
    db.close();
    console.log(
      `store locked: CNI ADD failed after ${Math.round(addMs)} ms with "${err.msg}"; /readyz: "${ready.text.trim()}"; ready again ${Math.round(back)} ms after the release`,
    );
  });
});
