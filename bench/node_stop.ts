// Time from SIGTERM to exit of `ocelot node run` stopped during its start-up (as root): the real
// daemon in a namespace of its own (BGP on, no peers, the embedded store with a pool, as
// test/reliability/http_surface.netns.test.ts runs it), SIGTERMed a given delay after its spawn
// (or, with --after-line TEXT, after its first log line that holds TEXT, such as "Node daemon
// running" or "CNI hand-off socket served", the line just before the old code swapped its
// signal listeners), SIGKILLed if it has not
// exited 30 s later. Several builds (their bin/ directories) take turns trial by trial, so they
// see the same load. Prints each trial, then per build: trials, how many died of the signal
// before the daemon had its handler (an instant exit), how many needed the SIGKILL, p50 and max.
// Usage: npx tsx bench/node_stop.ts [--rounds 3] [--delays 0,500,1000,1500,2000,2500,3000]
//          [--bins /path/a/bin,/path/b/bin] [--after-line TEXT]
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteDatastore } from "../src/datastore/sqlite.js";
import { addUplink } from "../test/helpers/cni.js";
import { Netns } from "../test/helpers/netns.js";
import { putPool } from "../test/ipam/helpers.js";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? (process.argv[i + 1] as string) : dflt;
}

const ROUNDS = Math.min(Number(arg("rounds", "3")), 100);
const DELAYS = arg("delays", "0,500,1000,1500,2000,2500,3000").split(",").map(Number);
const BINS = arg("bins", join(import.meta.dirname, "..", "bin")).split(",");
const AFTER_LINE = arg("after-line", "");
const KILL_MS = 30_000;
const load = () => readFileSync("/proc/loadavg", "utf8").split(" ")[0];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Trial {
  bin: string;
  delay: number;
  ms: number;
  outcome: "exit 0" | "signal" | "SIGKILL" | string;
}

async function trial(bin: string, delay: number, n: number): Promise<Trial> {
  const dir = mkdtempSync(join(tmpdir(), "ocelot-stopbench-"));
  const ns = Netns.create(`sb${n}`);
  try {
    const store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool", "10.78.0.0/16", { blockSize: 26 });
    await store.close();
    mkdirSync(join(dir, "run"));
    addUplink(ns, "192.0.2.30/24");
    const proc = spawn(
      "ip",
      [
        ...["netns", "exec", ns.name, join(bin, "ocelot"), "node", "run"],
        ...["--nodename", "stop-bench", "--ip", "192.0.2.30/24"],
        ...["--datastore", `file:${join(dir, "store.db")}`],
        ...["--status-socket", join(dir, "run", "node.sock"), "--mtu-file", join(dir, "mtu")],
      ],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    let out = "";
    proc.stdout.on("data", (d) => {
      out += d;
    });
    const exit = new Promise<{ code: number | null; signal: string | null }>((r) =>
      proc.once("exit", (code, signal) => r({ code, signal })),
    );
    if (AFTER_LINE) {
      const end = Date.now() + 120_000;
      await new Promise<void>((resolve) => {
        const check = () => {
          if (out.includes(AFTER_LINE) || proc.exitCode !== null || Date.now() > end) resolve();
          else setTimeout(check, 1);
        };
        proc.stdout.on("data", check);
        check();
      });
    }
    if (delay > 0) await sleep(delay);
    const t0 = performance.now();
    proc.kill("SIGTERM");
    const killer = setTimeout(() => proc.kill("SIGKILL"), KILL_MS);
    const e = await exit;
    clearTimeout(killer);
    const ms = Math.round(performance.now() - t0);
    const outcome =
      e.signal === "SIGKILL"
        ? "SIGKILL"
        : e.signal === "SIGTERM"
          ? "signal"
          : e.code === 0
            ? "exit 0"
            : `exit ${e.code}`;
    // What a daemon that needed the SIGKILL logged last.
    if (outcome === "SIGKILL")
      for (const m of out.match(/"msg":"[^"]*"/g)?.slice(-4) ?? []) console.log(`  last: ${m}`);
    return { bin, delay, ms, outcome };
  } finally {
    ns.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

const trials: Trial[] = [];
let n = 0;
for (let r = 0; r < ROUNDS; r++)
  for (const delay of DELAYS)
    for (const bin of BINS) {
      const t = await trial(bin, delay, n++);
      trials.push(t);
      console.log(
        `${bin} ${AFTER_LINE ? `after "${AFTER_LINE}" +` : "after spawn +"}${delay} ms: ${t.outcome} in ${t.ms} ms (load ${load()})`,
      );
    }
for (const bin of BINS) {
  const mine = trials.filter((t) => t.bin === bin);
  const handled = mine.filter((t) => t.outcome !== "signal").map((t) => t.ms);
  handled.sort((a, b) => a - b);
  const p50 = handled[Math.floor(handled.length / 2)] ?? 0;
  console.log(
    `${bin}: ${mine.length} trials, ${mine.length - handled.length} died of the signal before the handler, ` +
      `${mine.filter((t) => t.outcome === "SIGKILL").length} SIGKILLed after ${KILL_MS / 1000} s, ` +
      `${mine.filter((t) => t.outcome.startsWith("exit ") && t.outcome !== "exit 0").length} non-zero exits; ` +
      `handled: p50 ${p50} ms, max ${handled.at(-1) ?? 0} ms`,
  );
}
