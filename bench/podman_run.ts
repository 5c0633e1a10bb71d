// Pod start cost as a container runtime sees it: `podman run --rm --network NET IMAGE true`
// timed whole, on Ocelot's network (the conflist `ocelot install-cni` writes: ocelot-cni with
// ocelot-ipam on the embedded store, portmap chained), with `ocelot node run` serving the CNI
// hand-off and without it (OCELOT_CNI_HANDOFF=0 in podman's environment, which the plugins
// inherit), beside a reference network of Debian's plugins (bridge + host-local + portmap, from
// /usr/lib/cni) and beside `--network none`, in the same run, alternating A B C D A B C D … so
// drift in the machine's load hits all alike. podman runs inside a network namespace the bench
// makes (`nsenter --net`), as does the node daemon (`ip netns exec`): the plugins' host side, the bridge and the
// daemon's chains are all in it, none on the host.
// podman 4 with its CNI backend (libcni inside), the shared lab's containers.conf and base image
// (built when missing). Prints min / median / max and the ratio to the reference (issue 15's
// goal: ≤ 1.2×).
//
// Run (root): npx tsx bench/podman_run.ts [--runs 10] [--strace DIR: where the time of one run goes]
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteDatastore } from "../src/datastore/sqlite.js";
import {
  BASE_IMAGE,
  cniPodmanEnv,
  REFERENCE_CNI_PLUGINS,
  sharedContainers,
} from "../test/containers/harness.js";
import { putPool } from "../test/ipam/helpers.js";

const ROOT = new URL("..", import.meta.url).pathname;
const OCELOT = join(ROOT, "bin/ocelot");
const REFERENCE_PLUGINS = REFERENCE_CNI_PLUGINS;
const IMAGE = process.env.OCELOT_BASE_IMAGE ?? BASE_IMAGE;
const LAB = sharedContainers;
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
const NETNS = `${PREFIX}-node`;
const METRICS_PORT = 9099;
/** The daemon's start (its first convergence) is bounded by this. */
const DAEMON_START_MS = 120_000;

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
  const env = cniPodmanEnv(dir, [binDir, REFERENCE_PLUGINS], confDir);
  const ours = `${PREFIX}-ocelot`;
  const ref = `${PREFIX}-ref`;
  const bridge = `${PREFIX}br0`;
  let store: SqliteDatastore | undefined;
  let daemon: ChildProcess | undefined;
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
    // The node: a namespace with an uplink (both veth ends in it) and a default route, and
    // `ocelot node run` in it on the same store, serving /run/ocelot/netns/<ns>/cni.sock.
    must(run("ip", ["netns", "add", NETNS]), "ip netns add");
    const inNs = (...a: string[]) => must(run("ip", ["netns", "exec", NETNS, ...a]), a.join(" "));
    inNs("ip", "link", "set", "lo", "up");
    inNs("ip", "link", "add", "uplink", "type", "veth", "peer", "name", "uplink-peer");
    inNs("ip", "addr", "add", "192.0.2.10/24", "dev", "uplink");
    inNs("ip", "link", "set", "uplink", "up");
    inNs("ip", "link", "set", "uplink-peer", "up");
    inNs("ip", "route", "add", "default", "via", "192.0.2.1");
    daemon = spawn(
      "ip",
      [
        ...["netns", "exec", NETNS, OCELOT, "node", "run", "--nodename", "bench-node"],
        ...["--ip", "192.0.2.10/24", "--networking-backend", "none"],
        ...["--datastore", `file:${join(dir, "store.db")}`, "--log-level", "warn"],
        ...["--metrics-address", `127.0.0.1:${METRICS_PORT}`],
      ],
      { stdio: "ignore" },
    );
    const socket = `/run/ocelot/netns/${NETNS}/cni.sock`;
    const until = Date.now() + DAEMON_START_MS;
    while (!existsSync(socket)) {
      if (daemon.exitCode !== null) throw new Error(`ocelot node run exited ${daemon.exitCode}`);
      if (Date.now() > until) throw new Error(`no ${socket} within ${DAEMON_START_MS} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const targets: { name: string; args: string[]; env?: Record<string, string> }[] = [
      { name: "ocelot", args: ["--network", ours] },
      { name: "ocelot-alone", args: ["--network", ours], env: { OCELOT_CNI_HANDOFF: "0" } },
      { name: "reference", args: ["--network", ref] },
      { name: "none", args: ["--network", "none"] },
    ];
    const times = new Map<string, number[]>(targets.map((t) => [t.name, []]));
    const loads: number[] = [];
    // One warm-up each (podman's storage, the plugins' page cache), then RUNS rounds.
    for (let round = -1; round < RUNS; round++) {
      for (const t of targets) {
        const start = process.hrtime.bigint();
        const podman = ["podman", "run", "--rm", ...t.args, IMAGE, "true"];
        const cmd =
          STRACE && round === 0
            ? [
                ...["strace", "-f", "-ttt", "-v", "-s", "400", "-e", "trace=execve,exit_group"],
                ...["-o", join(STRACE, `${t.name}.strace`), ...podman],
              ]
            : podman;
        must(
          // nsenter: only the network namespace (`ip netns exec` would remount /sys, where runc
          // finds the cgroups).
          run("nsenter", [`--net=/run/netns/${NETNS}`, ...cmd], { ...env, ...t.env }),
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
      `podman run --rm … true, ${RUNS} rounds (alternating), load ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}`,
    );
    for (const t of targets) {
      const x = s.get(t.name) as { min: number; med: number; max: number };
      console.log(
        `  ${t.name.padEnd(13)} min ${fmt(x.min)}  median ${fmt(x.med)}  max ${fmt(x.max)}`,
      );
    }
    // The daemon's own count of the calls it ran (done) or left to the plugin (declined).
    const scrape = run("nsenter", [
      `--net=/run/netns/${NETNS}`,
      process.execPath,
      "-e",
      `fetch("http://127.0.0.1:${METRICS_PORT}/metrics").then((r) => r.text()).then((t) => process.stdout.write(t))`,
    ]).stdout;
    const counts = [
      ...scrape.matchAll(/^ocelot_cni_handoff_seconds_count\{([^}]*)\} (\d+)$/gm),
    ].map((m) => `${m[1]?.replace(/"/g, "")}: ${m[2]}`);
    console.log(`  the daemon's hand-offs: ${counts.join("; ") || "none"}`);
    const n = s.get("none")?.med as number;
    const r = s.get("reference")?.med as number;
    // Pair by pair (round i of each), so a slow stretch of the machine counts against both.
    for (const name of ["ocelot", "ocelot-alone"]) {
      const o = s.get(name)?.med as number;
      const pairs = (times.get(name) as number[]).map(
        (v, i) => v / ((times.get("reference") as number[])[i] as number),
      );
      const p = stats(pairs);
      console.log(
        `  ratio ${name} / reference: median of pairs ${p.med.toFixed(2)}× (min ${p.min.toFixed(2)}, max ${p.max.toFixed(2)}; medians ${(o / r).toFixed(2)}×), goal ≤ ${GOAL_RATIO}×: ${p.med <= GOAL_RATIO ? "met" : "not met"}; network cost over --network none +${fmt(o - n)} (reference +${fmt(r - n)})`,
      );
    }
  } finally {
    if (daemon?.pid && daemon.exitCode === null) {
      daemon.kill("SIGTERM");
      await new Promise((r) => {
        const t = setTimeout(() => {
          daemon?.kill("SIGKILL");
          r(undefined);
        }, 15_000);
        daemon?.once("exit", () => {
          clearTimeout(t);
          r(undefined);
        });
      });
    }
    run("ip", ["netns", "del", NETNS]);
    await store?.close();
    run(OCELOT, ["install-cni", "--uninstall", "--conf-dir", confDir]);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
