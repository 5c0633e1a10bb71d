#!/usr/bin/env node
// Build step run by `npm ci` (prepare) and by the test/demo scripts: compiles the TypeScript
// sources to dist/ and our native addon in native/, then bundles each command's entry point
// into one file, dist/bundle/<command>.cjs (esbuild), with V8's code cache beside it
// (<command>.cjs.cache) made by this Node.js; bin/* run those (bin/run_bundle.js). Nothing is
// downloaded: node-gyp builds against the headers of the Node.js that runs this script.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { etcd3RpcCodecSource, etcd3RpcJson } from "./etcd3_rpc.mjs";
import { BUNDLED_JS_OF, EXTERNAL_MODULES, SEPARATE_BUNDLES } from "./externals.mjs";

// `--bundles-into DIR` makes only the bundles, into DIR (test/ipam/build.ts: a private copy).
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const at = process.argv.indexOf("--bundles-into");
const bundlesOnly = at > 0;
const run = (cmd, args, cwd = root) => execFileSync(cmd, args, { cwd, stdio: "inherit" });
if (!bundlesOnly)
  run(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", root]);

if (!bundlesOnly && existsSync(join(root, "native/binding.gyp"))) {
  const prefix = dirname(dirname(process.execPath)); // /usr for /usr/bin/node
  const nodeGyp =
    process.env.npm_config_node_gyp ??
    join(prefix, "lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js");
  if (!existsSync(nodeGyp)) throw new Error(`node-gyp not found at "${nodeGyp}"`);
  const args = [nodeGyp, "rebuild", "--release"];
  // Node's own headers, so that node-gyp never tries to download them.
  const nodedir = process.env.npm_config_nodedir ?? prefix;
  if (existsSync(join(nodedir, "include/node/node_api.h"))) args.push(`--nodedir=${nodedir}`);
  run(process.execPath, args, join(root, "native"));
}

// ---------------------------------------------------------------------------------------------
// Bundles. Each command loads one file instead of ~130 modules (resolving and reading each is
// most of a short command's start-up). Left outside, loaded from node_modules at run time: what
// scripts/externals.mjs names (native addons, pino). etcd3 and its gRPC
// stack are inside (a CNI call on etcd loads ~200 modules of them otherwise), only evaluated
// when an etcd datastore is opened. `@kubernetes/client-node` is a bundle of its own beside the
// others, required only when ocelot-cni is given a kubeconfig (require() of that ES module from
// node_modules would need Node.js >= 20.19; as a bundle it is CommonJS).
const ENTRIES = {
  "ocelot-cni": "src/cni/plugin_main.ts",
  "ocelot-ipam": "src/cni/ipam_main.ts",
  ocelot: "src/cli/main.ts",
  // `ocelot bgpd`, `status`, `routes` (bin/ocelot): the daemon without the rest of the CLI.
  "ocelot-bgpd": "src/cli/bgpd_main.ts",
};
const EXTERNAL = [...EXTERNAL_MODULES.filter((m) => !BUNDLED_JS_OF.includes(m)), "bindings"];
/** A separately bundled package is required from the bundle beside the one requiring it. */
const separateBundles = {
  name: "separate-bundles",
  setup(build) {
    for (const [pkg, file] of Object.entries(SEPARATE_BUNDLES)) {
      const filter = new RegExp(`^${pkg.replace(/[/.]/g, "\\$&")}$`);
      build.onResolve({ filter }, () => ({ path: `./${file}.cjs`, external: true }));
    }
  },
};
// etcd3 parses its rpc.proto (@grpc/proto-loader's loadSync) when its connection-pool module is
// first required and builds a descriptor of every message, most of a CNI call's CPU on etcd.
// Here the .proto is parsed once, as proto-loader parses it for etcd3 (keepCase), into
// protobufjs JSON that the bundle carries, with each message type's codec as source text
// (scripts/etcd3_rpc.mjs: what protobufjs would generate with `new Function` at run time); the
// bundled etcd3 makes its services from them (src/datastore/etcd_rpc.ts), so neither the .proto
// files nor proto-loader are read at run time, and no codec is generated there.
const ETCD3_LOAD =
  /\(0, proto_loader_1\.loadSync\)\(`\$\{__dirname\}\/\.\.\/proto\/rpc\.proto`, (\{[^}]*\})\)/;
const ETCD3_REQUIRE_LOADER = 'const proto_loader_1 = require("@grpc/proto-loader");';
const ETCD3_OPTIONS = [
  "keepCase: true",
  "longs: String",
  "enums: String",
  "defaults: true",
  "oneofs: true",
];
const ETCD3_RPC_JSON = "ocelot-build:etcd3-rpc.json";
const ETCD3_RPC_CODECS = "ocelot-build:etcd3-rpc-codecs.cjs";
const etcd3Descriptor = {
  name: "etcd3-descriptor",
  setup(build) {
    build.onResolve({ filter: /^ocelot-build:etcd3-rpc/ }, (args) => ({
      path: args.path,
      namespace: "ocelot-build",
    }));
    build.onLoad({ filter: /.*/, namespace: "ocelot-build" }, (args) =>
      args.path === ETCD3_RPC_JSON
        ? { contents: JSON.stringify(etcd3RpcJson()), loader: "json" }
        : { contents: etcd3RpcCodecSource(), loader: "js" },
    );
    build.onLoad({ filter: /[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (args) => {
      const source = readFileSync(args.path, "utf8");
      const m = ETCD3_LOAD.exec(source);
      // Exactly these options: any other would change what etcd3 gets (etcd_rpc.ts's conversion).
      const options = (m?.[1] ?? "")
        .replace(/[{}]/g, "")
        .split(",")
        .map((o) => o.trim().replace(/\s+/g, " "))
        .filter(Boolean);
      if (
        !m ||
        !source.includes(ETCD3_REQUIRE_LOADER) ||
        options.sort().join() !== [...ETCD3_OPTIONS].sort().join()
      )
        throw new Error(
          `${args.path} no longer loads rpc.proto as scripts/build.mjs expects (loadSync with ${ETCD3_OPTIONS.join(", ")}): update the build`,
        );
      const rpc = JSON.stringify(join(root, "src/datastore/etcd_rpc.ts"));
      const contents = source
        .replace(ETCD3_REQUIRE_LOADER, "")
        .replace(
          ETCD3_LOAD,
          `require(${rpc}).etcdPackageDefinition(require(${JSON.stringify(ETCD3_RPC_JSON)}), require(${JSON.stringify(ETCD3_RPC_CODECS)}))`,
        );
      return { contents, loader: "js" };
    });
  },
};
const bundleDir = bundlesOnly ? resolve(process.argv[at + 1] ?? "") : join(root, "dist/bundle");
rmSync(bundleDir, { recursive: true, force: true });
mkdirSync(bundleDir, { recursive: true });

const esbuild = await import("esbuild");
const common = {
  absWorkingDir: root,
  outdir: bundleDir,
  outExtension: { ".js": ".cjs" },
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  legalComments: "none",
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: "warning",
};
await esbuild.build({
  ...common,
  entryPoints: Object.fromEntries(Object.entries(SEPARATE_BUNDLES).map(([p, f]) => [f, p])),
});
await esbuild.build({
  ...common,
  entryPoints: ENTRIES,
  external: EXTERNAL,
  plugins: [etcd3Descriptor, separateBundles],
  // import() of an external module becomes require(): a vm.Script has no ES module loader.
  supported: { "dynamic-import": false },
  // The bundle sits in dist/bundle/, two levels down as dist/<dir>/<module>.js is, so paths
  // made relative to import.meta.url (the native addon, the checkout root) stay right.
  define: { "import.meta.url": "__ocelotBundleUrl" },
  banner: { js: 'var __ocelotBundleUrl = require("node:url").pathToFileURL(__filename).href;' },
});

// The code cache: compile each bundle as bin/run_bundle.js does, run its top level (every
// module's definitions), for the CLI load every command module, and build and run once every
// resource schema (warmCodeCache: they are built on first use, src/api/lazy.ts), so the
// functions compiled on the way are in the cache too. No command is run.
const { compileBundle, evaluateBundle } = createRequire(import.meta.url)("../bin/run_bundle.js");
for (const name of Object.keys(ENTRIES)) {
  const file = join(bundleDir, `${name}.cjs`);
  const script = compileBundle(file);
  const exports = evaluateBundle(script, file);
  if (name === "ocelot") await Promise.all(exports.loadersFor(["node", "ocelot"]).map((l) => l()));
  await exports.warmCodeCache?.();
  writeFileSync(`${file}.cache`, script.createCachedData());
}
