// `ocelot ipam show|check|release|configure` through the real bin/ocelot on an embedded store.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { IpamStore } from "../../src/ipam/store.js";
import { runSync } from "../helpers/limits.js";
import { type PrivateBuild, privateBuild } from "./build.js";
import { putPool } from "./helpers.js";

describe("ocelot ipam", () => {
  let dir: string;
  let url: string;
  let store: SqliteDatastore;
  let build: PrivateBuild;
  const run = (...args: string[]) =>
    runSync(build.ocelot, ["ipam", ...args, "--datastore", url], { encoding: "utf8" });
  const datastore = (...args: string[]) =>
    runSync(build.ocelot, ["datastore", ...args, "--datastore", url], { encoding: "utf8" });

  beforeAll(async () => {
    build = privateBuild();
    dir = mkdtempSync(join(tmpdir(), "ocelot-ipam-cli-"));
    url = `file:${join(dir, "store.db")}`;
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "default-ipv4", "10.40.0.0/24");
    const ipam = new IpamStore(store);
    await ipam.autoAssign({
      handleId: "h-web",
      node: "n1",
      attrs: { namespace: "ns", pod: "web" },
      num4: 1,
      num6: 0,
    });
    await ipam.autoAssign({
      handleId: "h-db",
      node: "n1",
      attrs: { namespace: "ns", pod: "db" },
      num4: 1,
      num6: 0,
    });
    // web has a WorkloadEndpoint; db does not (a leak). Node n1 exists.
    const web = await ipam.addressesOfHandle("h-web", "n1");
    await store.update(
      "/ocelot/resources/v3/workloadendpoints/ns/n1-k8s-web-eth0",
      JSON.stringify({
        apiVersion: "projectcalico.org/v3",
        kind: "WorkloadEndpoint",
        metadata: { name: "n1-k8s-web-eth0", namespace: "ns" },
        spec: { node: "n1", ipNetworks: [`${web[0]?.address}/32`] },
      }),
    );
    // A handle record that holds nothing (its borrowed address went without it): leaked too.
    await store.create(
      ipam.keys.handle("h-gone"),
      JSON.stringify({ handleId: "h-gone", blocks: ["10.40.0.192/26"] }),
    );
    await store.update(
      "/ocelot/resources/v3/nodes/n1",
      JSON.stringify({
        apiVersion: "projectcalico.org/v3",
        kind: "Node",
        metadata: { name: "n1" },
        spec: {},
      }),
    );
  });

  afterAll(async () => {
    await store?.close();
    build?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("show prints pool and block usage; --ip names the holder", async () => {
    const r = run("show", "--show-blocks");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/IP Pool\s+10\.40\.0\.0\/24\s+256\s+2\s+0\s+254/);
    expect(r.stdout).toMatch(/Block host:n1\s+10\.40\.0\.\d+\/26\s+64\s+2/);
    const j = JSON.parse(run("show", "--json").stdout);
    expect(j.pools[0]).toMatchObject({ pool: "default-ipv4", inUse: 2 });
    const addr = (await new IpamStore(store).listBlocks(4))[0]?.block;
    const ip = `10.40.0.${Number((addr?.cidr.base ?? 0n) & 0xffn)}`;
    const who = run("show", "--ip", ip);
    expect(who.stdout).toContain("handle:   h-web");
    expect(who.stdout).toContain("workload: ns/web");
  });

  it("check finds the leak; release --from-report (datastore locked) frees it and only it", () => {
    const file = join(dir, "report.json");
    expect(datastore("lock").status).toBe(0);
    const r = run("check", "-o", file);
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(readFileSync(file, "utf8"));
    expect(report.summary).toMatchObject({ allocated: 2, leaked: 1, blocksOfMissingNodes: 0 });
    expect(report.leakedAddresses[0]).toMatchObject({ handleId: "h-db", attrs: { pod: "db" } });
    const rel = run("release", "--from-report", file, "--json");
    expect(rel.status, rel.stderr).toBe(0);
    expect(report.emptyHandles).toEqual(["h-gone"]);
    expect(JSON.parse(rel.stdout)).toEqual({
      released: [report.leakedAddresses[0].address],
      skipped: [],
      handlesDeleted: ["h-gone"],
    });
    expect(JSON.parse(run("check", "--json").stdout).summary.emptyHandles).toBe(0);
    expect(JSON.parse(run("check", "--json").stdout).summary).toMatchObject({
      allocated: 1,
      leaked: 0,
    });
    expect(datastore("unlock").status).toBe(0);
  });

  it("check and gc draw progress lines on stderr with --progress only, never with --json", () => {
    const piped = run("check");
    expect(piped.status, piped.stderr).toBe(0);
    expect(piped.stderr).not.toContain("reading IPAM state");
    const check = run("check", "--progress");
    expect(check.status, check.stderr).toBe(0);
    expect(check.stderr).toMatch(/^reading IPAM state \(listings\): 6\/6 \(100%\)/m);
    expect(check.stdout).toContain("Checked 1 blocks");
    const json = run("check", "--progress", "--json");
    expect(json.stderr).toBe("");
    expect(JSON.parse(json.stdout).summary.blocks).toBe(1);
    const gc = run("gc", "--once", "--dry-run", "--progress");
    expect(gc.status, gc.stderr).toBe(0);
    expect(gc.stderr).toMatch(/^reading IPAM state \(listings\): 6\/6 \(100%\)/m);
    expect(run("gc", "--once", "--dry-run", "--progress", "--json").stderr).toBe("");
  });

  it("release --ip of a free address fails; bad flags are usage errors", () => {
    const r = run("release", "--ip", "10.40.0.250");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("IP 10.40.0.250 is not assigned");
    expect(run("release").status).toBe(2);
    expect(run("configure", "--strictaffinity=maybe").stderr).toContain('"maybe"');
  });

  it("configure sets strictAffinity and maxBlocksPerHost", () => {
    expect(run("configure", "--strictaffinity=true", "--maxblocksperhost=2").status).toBe(0);
    expect(JSON.parse(run("configure", "--json").stdout)).toEqual({
      strictAffinity: true,
      maxBlocksPerHost: 2,
      autoAllocateBlocks: true,
    });
  });
});
