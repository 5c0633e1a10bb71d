import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { commandName } from "../../src/cli/main.js";
import { runSync } from "../helpers/limits.js";

const bin = new URL("../../bin/ocelot", import.meta.url).pathname;
const pools = new URL("../../config/ippool.yaml", import.meta.url).pathname;

describe("ocelot", () => {
  it("prints help with exit code 0", () => {
    const r = runSync(bin, ["--help"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("Usage: ocelot");
  });
  it("exits 2 on an unknown option", () => {
    const r = runSync(bin, ["--no-such-option"], { encoding: "utf8" });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("unknown option");
  });
});

describe("commandName()", () => {
  it("skips global flags and their values", () => {
    expect(commandName(["node", "ocelot", "--datastore", "file:/x.db", "apply"])).toBe("apply");
    expect(commandName(["node", "ocelot", "--datastore=file:/x.db", "get", "nodes"])).toBe("get");
    expect(commandName(["node", "ocelot", "--etcd-ca", "ca.pem", "ipam", "show"])).toBe("ipam");
    expect(commandName(["node", "ocelot", "--help"])).toBeUndefined();
  });
});

describe("ocelot: global flags before the command (real bin/ocelot)", () => {
  const dir = mkdtempSync(join(tmpdir(), "ocelot-global-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const global = `file:${join(dir, "global.db")}`;
  const other = `file:${join(dir, "env.db")}`;
  // OCELOT_DATASTORE names another store: the flag, wherever it stands, must win.
  const env = { ...process.env, OCELOT_DATASTORE: other };
  const ocelot = (args: string[]) => runSync(bin, args, { env });

  it("ocelot --datastore URL apply writes to that store, read back with the flag first or after", () => {
    const a = ocelot(["--datastore", global, "apply", "-f", pools]);
    expect(a.stderr).toBe("");
    expect(a.status).toBe(0);
    const first = ocelot(["--datastore", global, "get", "ippools", "-o", "json"]);
    expect(first.status).toBe(0);
    expect(first.stdout).toContain("default-ipv4-ippool");
    const after = ocelot(["get", "ippools", "-o", "json", "--datastore", global]);
    expect(after.stdout).toBe(first.stdout);
    const eq = ocelot([`--datastore=${global}`, "get", "ippools", "-o", "json"]);
    expect(eq.stdout).toBe(first.stdout);
    // The environment's store was not written.
    const envStore = ocelot(["get", "ippools", "-o", "json"]);
    expect(envStore.status).toBe(0);
    expect(envStore.stdout).not.toContain("default-ipv4-ippool");
  });

  it("a nested command (ipam show) takes the global flag; its own flag wins over it", () => {
    const r = ocelot(["--datastore", global, "ipam", "show"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("10.244.0.0/16");
    const own = ocelot(["--datastore", global, "ipam", "show", "--datastore", other]);
    expect(own.status).toBe(0);
    expect(own.stdout).not.toContain("10.244.0.0/16");
  });

  it("a bad global datastore URL is a usage error naming it", () => {
    const r = ocelot(["--datastore", "nope", "get", "ippools"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('Bad datastore URL "nope"');
  });
});
