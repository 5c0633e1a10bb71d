// A private build of the tree for process tests of `bin/ocelot-ipam` and `bin/ocelot`: compiled
// into node_modules/.cache/ocelot-ipam-test/<pid>/ (bare imports still resolve to the project's
// node_modules) and bundled there (scripts/build.mjs --bundles-into), with copies of the bin shims, so that other engineers rebuilding dist/ while
// these tests run cannot swap modules under the running plugin processes.
import { copyFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runSync } from "../helpers/limits.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface PrivateBuild {
  ocelotIpam: string;
  ocelot: string;
  remove(): void;
}

/**
 * Compiles src/ with tsc into a private directory. Type errors elsewhere in the tree (others'
 * work in progress) do not stop tsc's emit, so only a missing output fails.
 */
export function privateBuild(): PrivateBuild {
  const dir = join(
    ROOT,
    "node_modules",
    ".cache",
    "ocelot-ipam-test",
    `${process.pid}-${Date.now()}`,
  );
  const remove = () => rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, "bin"), { recursive: true });
  const r = runSync(
    process.execPath,
    [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", ROOT, "--outDir", join(dir, "dist")],
    { encoding: "utf8", timeout: 180_000 },
  );
  if (!existsSync(join(dir, "dist", "cni", "ipam_main.js"))) {
    remove();
    throw new Error(`Build did not produce the plugin: ${r.stdout}${r.stderr}`);
  }
  // The bundles the bin shims run (scripts/build.mjs), made from the same sources.
  const b = runSync(
    process.execPath,
    [join(ROOT, "scripts/build.mjs"), "--bundles-into", join(dir, "dist", "bundle")],
    { encoding: "utf8", timeout: 180_000 },
  );
  if (!existsSync(join(dir, "dist", "bundle", "ocelot-ipam.cjs.cache")) || b.status !== 0) {
    remove();
    throw new Error(`Bundling failed: ${b.stdout}${b.stderr}`);
  }
  for (const f of ["ocelot-ipam", "ocelot", "run_bundle.js", "package.json"])
    copyFileSync(join(ROOT, "bin", f), join(dir, "bin", f));
  return {
    ocelotIpam: join(dir, "bin", "ocelot-ipam"),
    ocelot: join(dir, "bin", "ocelot"),
    remove,
  };
}
