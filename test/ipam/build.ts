// Makes sure dist/ holds the compiled plugin before process tests run `bin/ocelot-ipam`.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const OCELOT_IPAM = join(ROOT, "bin", "ocelot-ipam");
export const OCELOT = join(ROOT, "bin", "ocelot");

function newest(dir: string): number {
  let t = 0;
  for (const f of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, f.name);
    t = Math.max(t, f.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * Runs the TypeScript build when dist/ is older than src/ipam, src/cni or src/cli. Type errors
 * elsewhere in the tree (others' work in progress) do not stop the emit, so only a missing
 * output fails the tests.
 */
export function ensureBuilt(): void {
  const out = join(ROOT, "dist", "cni", "ipam_main.js");
  const src = Math.max(
    ...["ipam", "cni", "cli", "datastore"].map((d) => newest(join(ROOT, "src", d))),
  );
  if (existsSync(out) && statSync(out).mtimeMs >= src) return;
  const r = spawnSync(
    process.execPath,
    [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", ROOT],
    {
      encoding: "utf8",
    },
  );
  if (!existsSync(out)) throw new Error(`Build did not produce ${out}: ${r.stdout}${r.stderr}`);
}
