// Start-up cost of Ocelot's commands beside `node -e 0` (a Node.js that loads nothing) in the
// same run, interleaved run by run: `ocelot --version`, `ocelot get ippools` (embedded store),
// `ocelot status` (no daemon running: it starts, finds no socket and says so), `ocelot-cni`
// and `ocelot-ipam` VERSION. Each also run the pre-bundle way, the compiled ES modules in dist/
// (what bin/* ran before the bundles), for the before/after ratio. Wall ms, median of --runs.
// Run: npx tsx bench/startup.ts [--runs 15]
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteDatastore } from "../src/datastore/sqlite.js";

const ROOT = new URL("..", import.meta.url).pathname;
const i = process.argv.indexOf("--runs");
const RUNS = i >= 0 ? Number(process.argv[i + 1]) : 15;

interface Cmd {
  name: string;
  argv: string[];
  env?: Record<string, string>;
  input?: string;
}

/** The pre-bundle entry: dist/<module> imported as an ES module, as bin/* used to. */
const esm = (module: string, call: string): string[] => [
  process.execPath,
  "--input-type=module",
  "-e",
  `const m = await import(${JSON.stringify(join(ROOT, "dist", module))}); await ${call}; process.exit();`,
];

function time(c: Cmd): number {
  const start = process.hrtime.bigint();
  spawnSync(c.argv[0] as string, c.argv.slice(1), {
    input: c.input ?? "",
    env: { PATH: process.env.PATH, ...c.env },
    stdio: ["pipe", "ignore", "ignore"],
    timeout: 120_000,
  });
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

const dir = mkdtempSync(join(tmpdir(), "ocelot-startup-"));
try {
  const db = join(dir, "store.db");
  const s = new SqliteDatastore(db);
  await s.close();
  const ds = ["--datastore", `file:${db}`];
  const bin = (b: string) => join(ROOT, "bin", b);
  const cni = { CNI_COMMAND: "VERSION" };
  const pairs: Array<[Cmd, Cmd]> = [
    [
      { name: "ocelot --version", argv: [bin("ocelot"), "--version"] },
      {
        name: "  before (dist ES modules)",
        argv: esm("cli/main.js", 'm.main(["node", "ocelot", "--version"])'),
      },
    ],
    [
      { name: "ocelot get ippools", argv: [bin("ocelot"), "get", "ippools", ...ds] },
      {
        name: "  before (dist ES modules)",
        argv: esm(
          "cli/main.js",
          `m.main(${JSON.stringify(["node", "ocelot", "get", "ippools", ...ds])})`,
        ),
      },
    ],
    [
      { name: "ocelot status", argv: [bin("ocelot"), "status"] },
      {
        name: "  before (dist ES modules)",
        argv: esm("cli/main.js", 'm.main(["node", "ocelot", "status"])'),
      },
    ],
    [
      { name: "ocelot-cni VERSION", argv: [bin("ocelot-cni")], env: cni },
      { name: "  before (dist ES modules)", argv: esm("cni/plugin_main.js", "m.main()"), env: cni },
    ],
    [
      { name: "ocelot-ipam VERSION", argv: [bin("ocelot-ipam")], env: cni },
      { name: "  before (dist ES modules)", argv: esm("cni/ipam_main.js", "m.main()"), env: cni },
    ],
  ];
  const node: Cmd = { name: "node -e 0", argv: [process.execPath, "-e", "0"] };
  const all = [node, ...pairs.flat()];
  const times = new Map(all.map((c) => [c, [] as number[]]));
  for (const c of all) time(c); // warm-up (page cache), not counted
  for (let r = 0; r < RUNS; r++) for (const c of all) times.get(c)?.push(time(c));
  const base = median(times.get(node) ?? []);
  console.log(
    `median wall ms of ${RUNS} runs; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );
  console.log(`${"node -e 0".padEnd(28)} ${base.toFixed(0).padStart(6)}`);
  for (const [now, before] of pairs) {
    const a = median(times.get(now) ?? []);
    const b = median(times.get(before) ?? []);
    console.log(
      `${now.name.padEnd(28)} ${a.toFixed(0).padStart(6)}  ${(a / base).toFixed(2)}x node -e 0; before ${b.toFixed(0)} (${(b / base).toFixed(2)}x): ${(a / b).toFixed(2)}x of before`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
