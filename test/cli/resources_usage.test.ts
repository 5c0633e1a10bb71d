// `ocelot validate` and the usage side of the resource commands (exit 2, --help): nothing here
// depends on the datastore backend, so it runs once, with a file store in a temp dir.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runSync } from "../helpers/limits.js";

const root = new URL("../../", import.meta.url).pathname;
const bin = join(root, "bin/ocelot");
const dir = mkdtempSync(join(tmpdir(), "ocelot-cli-usage-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ocelot(args: string[], input?: string) {
  const r = runSync(bin, [...args], {
    encoding: "utf8",
    input,
    cwd: dir,
    timeout: 30_000,
    env: { ...process.env, OCELOT_DATASTORE: `file:${join(dir, "store.db")}` },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("ocelot validate", () => {
  it("accepts the examples and refuses a bad document with file, document, path and value", () => {
    const good = ocelot(["validate", "-f", join(root, "config/bgpfilter.yaml")]);
    expect(good.stdout).toContain(
      'bgpfilter.yaml: document 1: bgpfilter "rack1-tor-filter" is valid',
    );
    expect(good.status).toBe(0);
    const bad = ocelot(
      ["validate", "-f", "-"],
      "kind: IPPool\napiVersion: projectcalico.org/v3\nmetadata: {name: x}\nspec: {cidr: 10.0.0.0/8, blockSize: 40}\n",
    );
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain(
      "<stdin>: document 1: spec.blockSize: 40 is out of range for an IPv4 pool (20..32)",
    );
  });
});

describe("resource commands: usage", () => {
  it("exits 2 on usage errors", () => {
    const cases: string[][] = [
      ["get", "widgets"],
      ["get", "ippools", "-o", "xml"],
      ["apply"],
      ["delete"],
      ["delete", "ippool"],
      ["get", "ippools", "-n", "a", "-A"],
      ["get", "ippools", "--datastore", "bogus:x"],
    ];
    for (const args of cases) expect(ocelot(args).status, args.join(" ")).toBe(2);
  });

  it("prints --help with exit 0 for every command", () => {
    for (const cmd of ["apply", "create", "replace", "get", "delete", "validate"]) {
      const h = ocelot([cmd, "--help"]);
      expect(h.status).toBe(0);
      expect(h.stdout).toContain(`Usage: ocelot ${cmd}`);
    }
  });
});
