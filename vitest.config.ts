import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { defineConfig } from "vitest/config";

// Two groups, run one after the other, sized for a 2-core machine:
// - "unit": pure tests (no child process, no namespace, no server), two files at a time;
// - "system": every test file that spawns a process (ocelot's own binaries, BIRD, FRR, etcd,
//   ip, iptables...) directly or through a test helper, one file at a time, so the processes a
//   test starts never compete with another file's. A file is "system" when it, or a test module
//   it imports (transitively, within test/), imports node:child_process or makes a namespace.
// Limits are hang-sized (test/helpers/limits.ts): speed is measured in bench/, not here.
const root = dirname(new URL(import.meta.url).pathname);
const testDir = join(root, "test");

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (name === "fixtures" || name === "node_modules") return [];
    return statSync(p).isDirectory() ? walk(p) : p.endsWith(".ts") ? [p] : [];
  });
}

const files = walk(testDir);
const source = new Map(files.map((f) => [f, readFileSync(f, "utf8")]));
const spawns = new Map<string, boolean>();
function spawnsProcesses(file: string, seen = new Set<string>()): boolean {
  const known = spawns.get(file);
  if (known !== undefined) return known;
  if (seen.has(file)) return false;
  seen.add(file);
  const text = source.get(file) ?? "";
  let result = /from "node:child_process"|\bNetns\b/.test(text);
  for (const m of text.matchAll(/from "(\.{1,2}\/[^"]+)\.js"/g)) {
    if (result) break;
    const target = resolve(dirname(file), `${m[1]}.ts`);
    if (target.startsWith(testDir) && source.has(target)) result = spawnsProcesses(target, seen);
  }
  spawns.set(file, result);
  return result;
}

const tests = files.filter((f) => f.endsWith(".test.ts"));
const system = tests.filter((f) => spawnsProcesses(f)).map((f) => relative(root, f));
const unit = tests.filter((f) => !spawnsProcesses(f)).map((f) => relative(root, f));

export default defineConfig({
  test: {
    pool: "forks",
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: unit,
          maxWorkers: 2,
          testTimeout: 120_000,
          hookTimeout: 120_000,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: "system",
          include: system,
          fileParallelism: false,
          maxWorkers: 1,
          testTimeout: 300_000,
          hookTimeout: 300_000,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
