// Runs one entry point's bundle (dist/bundle/<name>.cjs, built by scripts/build.mjs with
// esbuild) through vm.Script with V8's code cache stored beside it (<name>.cjs.cache, made at
// build time by the same Node.js), so a command skips compiling what it runs. Node.js 20 has no
// module.enableCompileCache(); this is its equivalent for one file. A cache V8 rejects (another
// Node.js or V8 flags) only costs the compile; OCELOT_BUNDLE_REPORT=1 says on stderr whether
// it was accepted. Without a bundle (not built) the compiled ES modules in dist/ run instead.
"use strict";
const { readFileSync } = require("node:fs");
const { createRequire } = require("node:module");
const { dirname, join } = require("node:path");
const vm = require("node:vm");

const BUNDLE_DIR = join(__dirname, "..", "dist", "bundle");
// The CommonJS wrapper, on the bundle's first line so that line numbers stay the bundle's.
const HEAD = "(function (exports, require, module, __filename, __dirname) { ";
const TAIL = "\n})";

/** Compiles a bundle, with its code cache when one is given. */
function compileBundle(file, cachedData) {
  const source = readFileSync(file, "utf8");
  return new vm.Script(HEAD + source + TAIL, { filename: file, cachedData });
}

/** Runs a compiled bundle's top level; returns its exports. */
function evaluateBundle(script, file) {
  const module = { exports: {}, filename: file, id: file, loaded: false };
  const fn = script.runInThisContext();
  fn.call(module.exports, module.exports, createRequire(file), module, file, dirname(file));
  module.loaded = true;
  return module.exports;
}

/** The exports of dist/bundle/<name>.cjs, or undefined when there is no bundle. */
function loadBundle(name) {
  const file = join(BUNDLE_DIR, `${name}.cjs`);
  let cachedData;
  try {
    cachedData = readFileSync(`${file}.cache`);
  } catch {}
  let script;
  try {
    script = compileBundle(file, cachedData);
  } catch (err) {
    if (err && err.code === "ENOENT") return undefined;
    throw err;
  }
  if (process.env.OCELOT_BUNDLE_REPORT === "1") {
    const state =
      cachedData === undefined ? "absent" : script.cachedDataRejected ? "rejected" : "accepted";
    process.stderr.write(`ocelot bundle: ${file} code cache ${state}\n`);
  }
  return evaluateBundle(script, file);
}

/** The entry module: the bundle, else the compiled ES module (dist/<fallback>). */
async function loadEntry(name, fallback) {
  return loadBundle(name) ?? (await import(join(__dirname, "..", "dist", fallback)));
}

module.exports = { BUNDLE_DIR, compileBundle, evaluateBundle, loadBundle, loadEntry };
