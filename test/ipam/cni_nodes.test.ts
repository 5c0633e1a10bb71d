// The real `bin/ocelot-ipam` processes on the embedded store: 4 simulated nodes x 20 ADDs, all
// DELs, the grace period, pool exhaustion, and plugin processes killed mid-assign. Processes in
// flight are bounded (MAX_IN_FLIGHT in cni_run.ts).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { inUseCount } from "../../src/ipam/block.js";
import { IpamStore } from "../../src/ipam/store.js";
import { type PrivateBuild, privateBuild } from "./build.js";
import {
  bounded,
  exhaustionScenario,
  fourNodesScenario,
  MAX_IN_FLIGHT,
  netConf,
  runCni,
} from "./cni_run.js";
import { putPool } from "./helpers.js";

describe("ocelot-ipam processes on the embedded store", () => {
  let dir: string;
  let url: string;
  let store: SqliteDatastore;
  let build: PrivateBuild;

  beforeAll(async () => {
    build = privateBuild();
    dir = mkdtempSync(join(tmpdir(), "ocelot-ipam-"));
    url = `file:${join(dir, "store.db")}`;
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "default-ipv4", "10.20.0.0/16");
    await putPool(store, "tiny", "10.99.0.0/30", { blockSize: 30 });
  });

  afterAll(async () => {
    await store?.close();
    build?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("4 nodes x 20 ADDs: 80 distinct addresses in each node's own blocks; DELs free all; blocks go after the grace period", async () => {
    await fourNodesScenario(build.ocelotIpam, url, store);
  });

  it("pool exhaustion: code 11 naming the pool, nothing half allocated", async () => {
    await exhaustionScenario(build.ocelotIpam, url, store);
  });

  it("plugin processes killed mid-assign leak nothing once the ADDs are retried", async () => {
    const pods = Array.from({ length: 16 }, (_, i) => ({ node: `kill${i % 2}`, id: `k${i}` }));
    const killed = await bounded(
      pods.map(
        (p, i) => () =>
          runCni(build.ocelotIpam, "ADD", p.id, netConf(url, p.node), (proc) => {
            // Spread from 5 ms (before any write) to ~600 ms (past a quick ADD's end), so
            // that some are killed whatever the machine's speed, some of them mid-assign.
            setTimeout(() => proc.kill("SIGKILL"), 5 + ((i * 53) % 600));
          }),
      ),
      MAX_IN_FLIGHT,
    );
    const died = killed.filter((r) => r.code !== 0).length;
    // The runtime retries every ADD that did not answer.
    const retried = await bounded(
      pods.map((p) => () => runCni(build.ocelotIpam, "ADD", p.id, netConf(url, p.node))),
      MAX_IN_FLIGHT,
    );
    for (const r of retried) expect(r.code, r.stdout + r.stderr).toBe(0);
    const addrs = retried.map((r) => JSON.parse(r.stdout).ips[0].address);
    expect(new Set(addrs).size).toBe(pods.length);
    const ipam = new IpamStore(store);
    const mine = (await ipam.listBlocks(4)).filter((e) =>
      e.block.affinity?.startsWith("host:kill"),
    );
    expect(mine.reduce((n, e) => n + inUseCount(e.block), 0)).toBe(pods.length);
    console.log(`killed-mid-assign: ${died}/${pods.length} first attempts were killed`);
    expect(died).toBeGreaterThan(0);
    for (const p of pods)
      expect((await runCni(build.ocelotIpam, "DEL", p.id, netConf(url, p.node))).code).toBe(0);
  });
});
