// Pod start cost as a container runtime sees it: `podman run --rm --network NET IMAGE true`
// timed whole, on Ocelot's network (the conflist `ocelot install-cni` writes: ocelot-cni with
// ocelot-ipam on the embedded store, portmap chained) beside a reference network of Debian's
// plugins (bridge + host-local + portmap, from /usr/lib/cni) and beside `--network none`, in the
// same run, alternating A B C A B C … so drift in the machine's load hits all three alike.
// podman 4 with its CNI backend (libcni inside), the shared lab's containers.conf and base image
// (built when missing). Prints min / median / max and the ratio to the reference (issue 15's
// goal: ≤ 1.2×).
//
// Run (root): npx tsx bench/podman_run.ts [--runs 10] [--strace DIR: where the time of one run goes]
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteDatastore } from "../src/datastore/sqlite.js";
import { putPool } from "../test/ipam/helpers.js";

const ROOT = new URL("..", import.meta.url).pathname;
const OCELOT = join(ROOT, "bin/ocelot");
const REFERENCE_PLUGINS = "/usr/lib/cni";
const IMAGE = process.env.OCELOT_BASE_IMAGE ?? "localhost/debian:bookworm";
const LAB = ["../shared", "../../shared"]
  .map((d) => join(ROOT, d, "lab/containers"))
  .find((d) => existsSync(join(d, "containers.conf")));
/** Bounds a hung podman (a run takes seconds). */
const RUN_LIMIT_MS = 120_000;
const GOAL_RATIO = 1.2;

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? (process.argv[i + 1] ?? def) : def;
}
const RUNS = Number(arg("--runs", "10"));
/** With --strace DIR: the first counted round of each runs under strace (execs and exits, -ttt). */
const STRACE = arg("--strace", "");
const PREFIX = `pbr${process.pid.toString(36)}`;

function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv, timeout = RUN_LIMIT_MS) {
  return spawnSync(cmd, args, { encoding: "utf8", env, timeout, killSignal: "SIGKILL" });
}

function must(r: ReturnType<typeof run>, what: string): string {
  if (r.status !== 0) throw new Error(`${what}: ${r.error ?? ""}${r.stdout}${r.stderr}`);
  return r.stdout;
}

function stats(xs: number[]): { min: number; med: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const med =
    s.length % 2
      ? (s[(s.length - 1) / 2] as number)
      : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
  return { min: s[0] as number, med, max: s[s.length - 1] as number };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("needs root");
  if (!LAB)
    throw new Error("the shared lab's containers.conf is missing (../shared/lab/containers)");
  for (const p of ["bridge", "host-local", "portmap", "loopback"])
    if (!existsSync(join(REFERENCE_PLUGINS, p)))
      throw new Error(`${REFERENCE_PLUGINS}/${p} missing (containernetworking-plugins)`);

  const dir = mkdtempSync(join(tmpdir(), "ocelot-podman-bench-"));
  const binDir = join(dir, "bin");
  const confDir = join(dir, "net.d");
  const conf = join(dir, "containers.conf");
  copyFileSync(join(LAB, "containers.conf"), conf);
  writeFileSync(
    conf,
    `${readFileSync(conf, "utf8")}\n[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = ["${binDir}", "${REFERENCE_PLUGINS}"]\nnetwork_config_dir = "${confDir}"\n`,
  );
  const env = { ...process.env, CONTAINERS_CONF: conf };
  const ours = `${PREFIX}-ocelot`;
  const ref = `${PREFIX}-ref`;
  const bridge = `${PREFIX}br0`;
  let store: SqliteDatastore | undefined;
  try {
    must(
      run("bash", [join(LAB, "make-base-image.sh"), IMAGE], env, 15 * 60_000),
      "make-base-image.sh",
    );
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "podpool", "10.76.0.0/24", { blockSize: 26 });
    await store.close();
    store = undefined;
    must(
      run(OCELOT, [
        ...["install-cni", "--bin-dir", binDir, "--conf-dir", confDir],
        ...["--datastore", `file:${join(dir, "store.db")}`, "--network-name", ours],
      ]),
      "ocelot install-cni",
    );
    writeFileSync(
      join(confDir, "90-reference.conflist"),
      JSON.stringify({
        cniVersion: "1.0.0",
        name: ref,
        plugins: [
          {
            type: "bridge",
            bridge: bridge,
            isGateway: true,
            ipMasq: false,
            ipam: {
              type: "host-local",
              dataDir: join(dir, "host-local"),
              ranges: [[{ subnet: "10.77.0.0/24" }]],
              routes: [{ dst: "0.0.0.0/0" }],
            },
          },
          { type: "portmap", capabilities: { portMappings: true } },
        ],
      }),
    );
    const targets: { name: string; args: string[] }[] = [
      { name: "ocelot", args: ["--network", ours] },
      { name: "reference", args: ["--network", ref] },
      { name: "none", args: ["--network", "none"] },
    ];
    const times = new Map<string, number[]>(targets.map((t) => [t.name, []]));
    const loads: number[] = [];
    // One warm-up each (podman's storage, the plugins' page cache), then RUNS rounds.
    for (let round = -1; round < RUNS; round++) {
      for (const t of targets) {
        const start = process.hrtime.bigint();
        must(
          STRACE && round === 0
            ? run(
                "strace",
                [
                  ...["-f", "-ttt", "-v", "-s", "400", "-e", "trace=execve,exit_group", "-o"],
                  ...[join(STRACE, `${t.name}.strace`), "podman", "run", "--rm"],
                  ...[...t.args, IMAGE, "true"],
                ],
                env,
              )
            : run("podman", ["run", "--rm", ...t.args, IMAGE, "true"], env),
          `podman run (${t.name})`,
        );
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        if (round >= 0) times.get(t.name)?.push(ms);
      }
      loads.push(loadavg()[0] as number);
    }
    const s = new Map(targets.map((t) => [t.name, stats(times.get(t.name) as number[])]));
    const fmt = (n: number) => `${(n / 1000).toFixed(2)} s`;
    console.log(
      `podman run --rm … true, ${RUNS} rounds (A B C alternating), load ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}`,
    );
    for (const t of targets) {
      const x = s.get(t.name) as { min: number; med: number; max: number };
      console.log(
        `  ${t.name.padEnd(10)} min ${fmt(x.min)}  median ${fmt(x.med)}  max ${fmt(x.max)}`,
      );
    }
    const o = s.get("ocelot")?.med as number;
    const r = s.get("reference")?.med as number;
    const n = s.get("none")?.med as number;
    // Pair by pair (round i of each), so a slow stretch of the machine counts against both.
    const pairs = (times.get("ocelot") as number[]).map(
      (v, i) => v / ((times.get("reference") as number[])[i] as number),
    );
    const p = stats(pairs);
    console.log(
      `  ratio ocelot / reference: median of pairs ${p.med.toFixed(2)}× (min ${p.min.toFixed(2)}, max ${p.max.toFixed(2)}; medians ${(o / r).toFixed(2)}×), goal ≤ ${GOAL_RATIO}×: ${p.med <= GOAL_RATIO ? "met" : "not met"}`,
    );
    console.log(
      `  network cost over --network none: ocelot +${fmt(o - n)}, reference +${fmt(r - n)}`,
    );
  } finally {
    await store?.close();
    run(OCELOT, ["install-cni", "--uninstall", "--conf-dir", confDir]);
    run("ip", ["link", "del", bridge]);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
