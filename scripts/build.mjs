#!/usr/bin/env node
// Build step run by `npm ci` (prepare) and by the test/demo scripts: compiles
// the TypeScript sources to dist/ and, when present, our native addons.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const run = (cmd, args, cwd = root) => execFileSync(cmd, args, { cwd, stdio: "inherit" });
run(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", root]);
if (existsSync(join(root, "native/binding.gyp"))) {
  const gyp = process.env.npm_config_node_gyp ?? "node-gyp";
  if (gyp.endsWith(".js"))
    run(process.execPath, [gyp, "rebuild", "--release"], join(root, "native"));
  else run(gyp, ["rebuild", "--release"], join(root, "native"));
}
