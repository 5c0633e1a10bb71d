// A private build of the tree for process tests of `bin/ocelot-ipam` and `bin/ocelot`: compiled
// into node_modules/.cache/ocelot-ipam-test/ (bare imports still resolve to the project's
// node_modules) and bundled there (scripts/build.mjs --bundles-into), with copies of the bin shims, so that other engineers rebuilding dist/ while
// these tests run cannot swap modules under the running plugin processes. One build per content:
// its directory is named by a hash of the sources it is made from (src/, scripts/, bin/, the
// tsconfig and package files, Node's version, the checkout's path), made under a temporary name and renamed into place
// whole, never changed after; the test files of one run (and of any run on the same sources)
// share it instead of compiling the tree again each (4-12 s a file). Builds of other contents
// unused for 2 hours are removed when a new one is made.
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { runSync } from "../helpers/limits.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface PrivateBuild {
  ocelotIpam: string;
  ocelot: string;
  /** Kept for the callers: the build is shared by content and outlives the test file. */
  remove(): void;
}

const CACHE = join(ROOT, "node_modules", ".cache", "ocelot-ipam-test");
/** A build of other sources not used for this long is removed. */
const UNUSED_MS = 2 * 3600_000;
/** Written last into a finished build; touched at each use. */
const DONE = "complete";

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)]))
    .sort();
}

/** A hash of everything the build is made from. */
function sourceKey(): string {
  // The checkout's own path too: the cache (under node_modules) may be shared by checkouts, and a
  // build may name files of the checkout it was made in.
  const h = createHash("sha256").update(process.version).update("\0").update(ROOT);
  const inputs = [
    ...["src", "scripts", "bin"].flatMap((d) => files(join(ROOT, d))),
    ...["tsconfig.json", "package.json", "package-lock.json"].map((f) => join(ROOT, f)),
  ];
  for (const f of inputs) {
    if (!existsSync(f)) continue;
    h.update(relative(ROOT, f)).update("\0").update(readFileSync(f)).update("\0");
  }
  return h.digest("hex").slice(0, 24);
}

function paths(dir: string): Omit<PrivateBuild, "remove"> {
  return { ocelotIpam: join(dir, "bin", "ocelot-ipam"), ocelot: join(dir, "bin", "ocelot") };
}

/** Removes builds of other sources whose last use is older than UNUSED_MS. */
function sweep(keep: string): void {
  for (const name of existsSync(CACHE) ? readdirSync(CACHE) : []) {
    if (!name.startsWith("build-") || name === keep) continue;
    const done = join(CACHE, name, DONE);
    try {
      if (Date.now() - statSync(done).mtimeMs > UNUSED_MS)
        rmSync(join(CACHE, name), { recursive: true, force: true });
    } catch {}
  }
}

/** Compiles and bundles the tree into dir (not yet in place). */
function buildInto(dir: string): void {
  mkdirSync(join(dir, "bin"), { recursive: true });
  // Type errors elsewhere in the tree (others' work in progress) do not stop tsc's emit, so only a
  // missing output fails.
  const r = runSync(
    process.execPath,
    [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", ROOT, "--outDir", join(dir, "dist")],
    { encoding: "utf8", timeout: 180_000 },
  );
  if (!existsSync(join(dir, "dist", "cni", "ipam_main.js")))
    throw new Error(`Build did not produce the plugin: ${r.stdout}${r.stderr}`);
  // The bundles the bin shims run (scripts/build.mjs), made from the same sources.
  const b = runSync(
    process.execPath,
    [join(ROOT, "scripts/build.mjs"), "--bundles-into", join(dir, "dist", "bundle")],
    { encoding: "utf8", timeout: 180_000 },
  );
  if (!existsSync(join(dir, "dist", "bundle", "ocelot-ipam.cjs.cache")) || b.status !== 0)
    throw new Error(`Bundling failed: ${b.stdout}${b.stderr}`);
  for (const f of ["ocelot-ipam", "ocelot", "run_bundle.js", "package.json"])
    copyFileSync(join(ROOT, "bin", f), join(dir, "bin", f));
  writeFileSync(join(dir, DONE), `${new Date().toISOString()}\n`);
}

/**
 * The build of the current sources: the one already made for them, or a new one (compiled with
 * tsc into a private directory, bundled, then renamed into place).
 */
export function privateBuild(): PrivateBuild {
  const name = `build-${sourceKey()}`;
  const dir = join(CACHE, name);
  const remove = () => {};
  if (existsSync(join(dir, DONE))) {
    const now = new Date();
    utimesSync(join(dir, DONE), now, now);
    return { ...paths(dir), remove };
  }
  const tmp = join(CACHE, `tmp-${process.pid}-${Date.now()}`);
  try {
    buildInto(tmp);
    try {
      renameSync(tmp, dir);
    } catch (e) {
      // Another run finished the same build first: use it.
      if (!existsSync(join(dir, DONE))) throw e;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  sweep(name);
  return { ...paths(dir), remove };
}
