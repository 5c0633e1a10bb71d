// The scenarios of `ocelot ipam gc`, `ocelot datastore lock|unlock|status` and the guards of
// `ipam release --from-report`, run by gc_cli.test.ts (SQLite) and gc_cli.etcd.test.ts (etcd)
// through the real bin/ocelot and bin/ocelot-ipam. Results are read back from the datastore.
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { applyResource } from "../../src/api/client.js";
import type { Datastore } from "../../src/datastore/types.js";
import { decodeBlock } from "../../src/ipam/block.js";
import { IpamStore } from "../../src/ipam/store.js";
import { formatCidr } from "../../src/lib/ip.js";
import type { PrivateBuild } from "./build.js";
import { netConf, runCni } from "./cni_run.js";
import { putNode, putPool } from "./helpers.js";

/** One finished bin/ocelot run. */
export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function ocelot(build: PrivateBuild, url: string, ...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      build.ocelot,
      [...args, "--datastore", url],
      { encoding: "utf8", timeout: 30_000 },
      (err, stdout, stderr) => {
        const status = err ? ((err as { code?: unknown }).code as number | null) : 0;
        resolve({ status: typeof status === "number" ? status : null, stdout, stderr });
      },
    );
  });
}

export const json = (r: Run) => {
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
};

async function putWep(store: Datastore, node: string, pod: string, address: string) {
  await applyResource(store, {
    apiVersion: "projectcalico.org/v3",
    kind: "WorkloadEndpoint",
    metadata: { name: `${node}-k8s-${pod}-eth0`, namespace: "default" },
    spec: {
      node,
      orchestrator: "k8s",
      endpoint: "eth0",
      pod,
      interfaceName: `cali${pod}`,
      ipNetworks: [`${address}/32`],
    },
  });
}

async function assign(ipam: IpamStore, handleId: string, node: string): Promise<string> {
  const a = await ipam.autoAssign({ handleId, node, attrs: { pod: handleId }, num4: 1, num6: 0 });
  return a[0]?.address as string;
}

/** Leaks, a WEP appearing, an empty block and a gone node: two passes, read back. */
export async function gcScenario(
  build: PrivateBuild,
  url: string,
  store: Datastore,
  cidr: string,
): Promise<void> {
  const ipam = new IpamStore(store);
  await putPool(store, "gc-pool", cidr);
  await putNode(store, "n1", {});
  await putNode(store, "n2", {});
  const web = await assign(ipam, "h-web", "n1");
  const db = await assign(ipam, "h-db", "n1");
  const tmp = await assign(ipam, "h-tmp", "n1");
  await putWep(store, "n1", "web", web);
  // n2's block becomes empty at once; "gone" has no Node resource: a pod (with its WEP) and
  // a tunnel address.
  await ipam.releaseAddress(await assign(ipam, "h-e", "n2"));
  const p1 = await assign(ipam, "h-p1", "gone");
  const tunnel = await assign(ipam, "ipip-tunnel-addr-gone", "gone");
  await putWep(store, "gone", "p1", p1);
  const goneBlock = (await ipam.listAllBlocks()).find((b) => b.block.affinity === "host:gone");
  expect(goneBlock).toBeDefined();

  // A dry run changes nothing, not even the GC state.
  const dry = json(
    await ocelot(build, url, "ipam", "gc", "--once", "--leak-grace", "0s", "--dry-run", "--json"),
  );
  expect(dry.dryRun).toBe(true);
  expect(await store.get("/ocelot/ipam/v2/gc-state")).toBeUndefined();

  // First pass: even with no grace, only marks.
  const first = json(
    await ocelot(build, url, "ipam", "gc", "--once", "--leak-grace", "0s", "--json"),
  );
  expect(first.released).toEqual([]);
  expect(first.nodesReleased).toEqual([]);
  expect(first.blocksReleased).toEqual([]); // the empty block's grace (5m) has not passed
  expect(first.watching.leaks.map((l: { address: string }) => l.address).sort()).toEqual(
    [db, tmp, tunnel].sort(),
  );
  expect(first.watching.goneNodes.map((g: { node: string }) => g.node)).toEqual(["gone"]);
  for (const a of [web, db, tmp, p1, tunnel]) expect(await ipam.getAllocation(a)).toBeDefined();

  // tmp's pod got its WorkloadEndpoint in between: no longer leaked.
  await putWep(store, "n1", "tmp", tmp);
  const second = json(
    await ocelot(
      build,
      url,
      "ipam",
      "gc",
      "--once",
      "--leak-grace",
      "0s",
      "--empty-block-grace",
      "0s",
      "--json",
    ),
  );
  expect([...second.released].sort()).toEqual([db, tunnel].sort());
  expect(second.skipped).toEqual([]);
  expect(second.blocksReleased).toHaveLength(1);
  expect(second.nodesReleased).toEqual([
    {
      node: "gone",
      blocksDeleted: [],
      blocksUnaffined: [formatCidr(goneBlock?.block.cidr as never)],
    },
  ]);

  // Read back: exactly db and the tunnel address are free; n2 has no block left; "gone" has no
  // affinity and its block, still holding p1, belongs to no node.
  for (const a of [db, tunnel]) expect(await ipam.getAllocation(a)).toBeUndefined();
  for (const a of [web, tmp, p1]) expect(await ipam.getAllocation(a)).toBeDefined();
  expect((await store.list("/ocelot/ipam/v2/host/n2/")).items).toEqual([]);
  expect((await store.list("/ocelot/ipam/v2/host/gone/")).items).toEqual([]);
  const gb = await store.get(goneBlock?.key as string);
  expect(decodeBlock(gb?.key as string, gb?.value as string).affinity).toBeNull();
  expect((await ipam.listAllBlocks()).filter((b) => b.block.affinity === "host:n2")).toEqual([]);
  expect(await ipam.getHandle("ipip-tunnel-addr-gone")).toBeUndefined();
  // The text form names what it watches.
  const text = await ocelot(build, url, "ipam", "gc", "--once", "--dry-run");
  expect(text.status, text.stderr).toBe(0);
  expect(text.stdout).toContain("Watching 0 leaked addresses");
  // A bad duration is a usage error.
  expect((await ocelot(build, url, "ipam", "gc", "--once", "--leak-grace", "soon")).status).toBe(2);
}

/** The lock against the real CNI plugin, and the refusals of release --from-report. */
export async function lockScenario(
  build: PrivateBuild,
  url: string,
  store: Datastore,
  dir: string,
  cidr: string,
): Promise<void> {
  const ipam = new IpamStore(store);
  await putPool(store, "lock-pool", cidr);
  await putNode(store, "n3", {});
  const conf = netConf(url, "n3");
  const before = await runCni(build.ocelotIpam, "ADD", "c-before", conf);
  expect(before.code, before.stdout).toBe(0);

  expect(json(await ocelot(build, url, "datastore", "lock", "--json")).locked).toBe(true);
  const locked = await runCni(build.ocelotIpam, "ADD", "c-locked", conf);
  expect(locked.code).toBe(1);
  expect(JSON.parse(locked.stdout)).toMatchObject({
    code: 11,
    msg: expect.stringContaining("locked"),
  });
  expect(await ipam.addressesOfHandle("k8s-pod-network.c-locked")).toEqual([]);
  // DEL still releases while locked.
  const del = await runCni(build.ocelotIpam, "DEL", "c-before", conf);
  expect(del.code, del.stdout).toBe(0);
  expect(await ipam.addressesOfHandle("k8s-pod-network.c-before")).toEqual([]);
  const status = json(await ocelot(build, url, "datastore", "status", "--json"));
  expect(status).toMatchObject({
    locked: true,
    clusterGUID: expect.stringMatching(/^[0-9a-f]{32}$/),
  });
  expect(json(await ocelot(build, url, "datastore", "unlock", "--json")).locked).toBe(false);
  const after = await runCni(build.ocelotIpam, "ADD", "c-locked", conf);
  expect(after.code, after.stdout).toBe(0);

  // Leaks: two addresses of n3 without a WorkloadEndpoint.
  const l1 = await assign(ipam, "h-l1", "n3");
  const l2 = await assign(ipam, "h-l2", "n3");
  const unlockedReport = join(dir, "unlocked.json");
  expect((await ocelot(build, url, "ipam", "check", "-o", unlockedReport)).status).toBe(0);
  const u = JSON.parse(readFileSync(unlockedReport, "utf8"));
  expect(u).toMatchObject({ version: 2, datastoreLocked: false, clusterGUID: status.clusterGUID });
  let r = await ocelot(build, url, "ipam", "release", "--from-report", unlockedReport);
  expect(r.status).toBe(1);
  expect(r.stderr).toContain("was made while the datastore was not locked");

  await ocelot(build, url, "datastore", "lock");
  r = await ocelot(build, url, "ipam", "release", "--from-report", unlockedReport);
  expect(r.status).toBe(1);
  expect(r.stderr).toContain("was made while the datastore was not locked");

  const lockedReport = join(dir, "locked.json");
  expect((await ocelot(build, url, "ipam", "check", "-o", lockedReport)).status).toBe(0);
  const rep = JSON.parse(readFileSync(lockedReport, "utf8"));
  expect(rep.datastoreLocked).toBe(true);
  const leaked = rep.leakedAddresses.map((l: { address: string }) => l.address);
  expect(leaked).toEqual(expect.arrayContaining([l1, l2]));

  // Another cluster: refused, even with --force.
  const foreign = join(dir, "foreign.json");
  writeFileSync(foreign, JSON.stringify({ ...rep, clusterGUID: "0".repeat(32) }));
  r = await ocelot(build, url, "ipam", "release", "--from-report", foreign, "--force");
  expect(r.status).toBe(1);
  expect(r.stderr).toContain("is of another cluster");

  // The second look: l2's pod got its WorkloadEndpoint after the report.
  await putWep(store, "n3", "l2", l2);
  const ok = json(
    await ocelot(build, url, "ipam", "release", "--from-report", lockedReport, "--json"),
  );
  expect(ok.released).toContain(l1);
  expect(ok.released).not.toContain(l2);
  expect(ok.skipped).toContainEqual({ address: l2, reason: "a WorkloadEndpoint holds it now" });
  expect(await ipam.getAllocation(l1)).toBeUndefined();
  expect(await ipam.getAllocation(l2)).toBeDefined();

  // Not locked now: refused; --force goes on (nothing left to release) with a warning.
  await ocelot(build, url, "datastore", "unlock");
  r = await ocelot(build, url, "ipam", "release", "--from-report", lockedReport);
  expect(r.status).toBe(1);
  expect(r.stderr).toContain("The datastore is not locked now");
  // Locked again since the report: stale.
  await ocelot(build, url, "datastore", "lock");
  r = await ocelot(build, url, "ipam", "release", "--from-report", lockedReport);
  expect(r.status).toBe(1);
  expect(r.stderr).toContain("is stale");
  await ocelot(build, url, "datastore", "unlock");
}
