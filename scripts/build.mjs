#!/usr/bin/env node
// Build step run by `npm ci` (prepare) and by the test/demo scripts: compiles the TypeScript
// sources to dist/ and our native addon in native/. Nothing is downloaded: node-gyp builds
// against the headers of the Node.js that runs this script.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const run = (cmd, args, cwd = root) => execFileSync(cmd, args, { cwd, stdio: "inherit" });
run(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", root]);

if (existsSync(join(root, "native/binding.gyp"))) {
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
