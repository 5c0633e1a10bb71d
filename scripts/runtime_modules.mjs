#!/usr/bin/env node
// Copies into DIR (an image's node_modules) only what the bundles load at run time: the packages
// scripts/externals.mjs names, with every package they require (dependencies and the optional
// ones installed, resolved as Node.js does), and the listed files of the packages whose code is
// bundled. Left out: install-time dependencies, native build leftovers (sources, object files),
// type declarations, source maps and docs. Usage: node scripts/runtime_modules.mjs DIR
// (from the package root, after `npm ci`).
import { cpSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { EXTERNAL_FILES, EXTERNAL_MODULES, INSTALL_ONLY } from "./externals.mjs";

const out = resolve(process.argv[2] ?? "");
if (!process.argv[2]) throw new Error("usage: runtime_modules.mjs DIR");
const root = process.cwd();
const modules = join(root, "node_modules");

/** The package directory `name` resolves to from `from` (node_modules lookup upwards). */
function find(name, from) {
  for (let d = from; ; d = dirname(d)) {
    const c = join(d, "node_modules", name);
    if (existsSync(join(c, "package.json"))) return c;
    if (dirname(d) === d) return undefined;
  }
}

const SKIP = /(\.d\.[cm]?ts|\.map|\.md|\.markdown)$/;
/** Native builds: only the addons themselves under build/, no sources. */
const filter = (src) => {
  const rel = src.split("/node_modules/").pop() ?? "";
  const inPkg = rel
    .split("/")
    .slice(rel.startsWith("@") ? 2 : 1)
    .join("/");
  if (SKIP.test(src)) return false;
  if (/^(deps|src|test|tests)(\/|$)/.test(inPkg)) return false;
  if (/^build\//.test(inPkg)) return /^build\/Release(\/[^/]+\.node)?$/.test(inPkg);
  return true;
};

const seen = new Set();
function copyClosure(name, from) {
  const dir = find(name, from);
  if (!dir) {
    throw new Error(`${name} (required from ${relative(root, from) || "."}) is not installed`);
  }
  if (seen.has(dir)) return;
  seen.add(dir);
  cpSync(dir, join(out, relative(modules, dir)), { recursive: true, filter, dereference: false });
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  for (const dep of Object.keys(pkg.dependencies ?? {}))
    if (!INSTALL_ONLY.includes(dep)) copyClosure(dep, dir);
  for (const dep of Object.keys(pkg.optionalDependencies ?? {}))
    if (find(dep, dir)) copyClosure(dep, dir);
}

mkdirSync(out, { recursive: true });
for (const name of EXTERNAL_MODULES) copyClosure(name, root);
for (const [name, files] of Object.entries(EXTERNAL_FILES))
  for (const f of files) cpSync(join(modules, name, f), join(out, name, f), { recursive: true });
console.log(
  `runtime_modules: ${seen.size} packages and ${Object.keys(EXTERNAL_FILES).join(", ")} files into ${out}`,
);
