// The bundles bin/* run (dist/bundle/<command>.cjs, scripts/build.mjs): each command starts from
// its bundle with V8 accepting the code cache built beside it, and still answers as before.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { HANG_MS } from "../helpers/limits.js";

const BIN = new URL("../../bin", import.meta.url).pathname;
const BUNDLES = new URL("../../dist/bundle", import.meta.url).pathname;

function run(cmd: string, args: string[], env: Record<string, string>, input = "") {
  const r = spawnSync(join(BIN, cmd), args, {
    input,
    encoding: "utf8",
    timeout: HANG_MS,
    env: { PATH: process.env.PATH, OCELOT_BUNDLE_REPORT: "1", ...env },
  });
  return { code: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

describe("command bundles", () => {
  it.each([
    [
      "ocelot-cni",
      [],
      { CNI_COMMAND: "VERSION" },
      '{"cniVersion":"0.4.0"}',
      '"cniVersion":"0.4.0"',
    ],
    ["ocelot-ipam", [], { CNI_COMMAND: "VERSION" }, "", '"supportedVersions"'],
    ["ocelot", ["--version"], {}, "", "0.1.0"],
  ] as const)(
    "%s runs from its bundle and V8 accepts its code cache",
    (cmd, args, env, input, out) => {
      const r = run(cmd, [...args], { ...env }, input);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(out);
      expect(r.stderr).toContain(
        `ocelot bundle: ${join(BUNDLES, `${cmd}.cjs`)} code cache accepted`,
      );
    },
  );

  it("ocelot bgpd, status and routes run from the BGP daemon's own bundle", () => {
    for (const cmd of ["bgpd", "status", "routes"]) {
      const r = run("ocelot", [cmd, "--help"], {});
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`Usage: ocelot ${cmd}`);
      expect(r.stderr).toContain(
        `ocelot bundle: ${join(BUNDLES, "ocelot-bgpd.cjs")} code cache accepted`,
      );
    }
    // Every other command, and a global flag before bgpd, take the whole CLI's bundle.
    const other = run("ocelot", ["--datastore", "sqlite:///nonexistent", "bgpd", "--help"], {});
    expect(other.code, other.stderr).toBe(0);
    expect(other.stderr).toContain(`ocelot bundle: ${join(BUNDLES, "ocelot.cjs")} code cache`);
  });
});
