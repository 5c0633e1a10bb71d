// The multi-process race: P OS processes each add N to one counter by compare-and-swap (retrying
// on conflict) through the given datastore URL; no update may be lost, so the total is exact,
// and a watcher in the parent sees every increment once, in order.
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { openDatastore } from "../../src/datastore/open.js";
import { hangLimit } from "../helpers/limits.js";

const WORKER = join(dirname(fileURLToPath(import.meta.url)), "race_worker.mjs");

export interface RaceResult {
  final: number;
  conflicts: number;
  ms: number;
}

/** Runs the race and returns the counter; every child is killed (by PID) if anything fails. */
export async function runCasRace(
  url: string,
  processes = 8,
  n = 200,
  timeoutMs = 280_000,
): Promise<RaceResult> {
  const key = `/ocelot/test/race/${process.pid}-${Date.now()}`;
  const store = await openDatastore(url);
  try {
    const created = await store.create(key, "0");
    // This process watches the counter: every increment, made by other processes, must arrive
    // exactly once and in order (1, 2, ..., P*N).
    const seen: number[] = [];
    const revs: number[] = [];
    const problems: string[] = [];
    const watch = store.watch(key, created.modRevision, (m) => {
      if (m.kind !== "events") {
        problems.push(m.kind === "error" ? m.error.message : `resync at ${m.compactRevision}`);
        return;
      }
      for (const e of m.events) {
        if (e.type !== "put") problems.push(`unexpected ${e.type}`);
        else {
          seen.push(Number(e.kv.value));
          revs.push(e.kv.modRevision);
        }
      }
    });
    const children = Array.from({ length: processes }, () =>
      spawn(process.execPath, [WORKER, url, key, String(n)], {
        stdio: ["pipe", "pipe", "pipe"],
      }),
    );
    const outputs = children.map(() => ({ out: "", err: "" }));
    const exits = children.map(
      (c, i) =>
        new Promise<number>((resolve) => {
          c.stdout.on("data", (d: Buffer) => {
            (outputs[i] as { out: string }).out += d.toString();
          });
          c.stderr.on("data", (d: Buffer) => {
            (outputs[i] as { err: string }).err += d.toString();
          });
          c.on("exit", (code) => resolve(code ?? -1));
        }),
    );
    const timer = setTimeout(() => {
      for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    }, timeoutMs);
    try {
      // Start them together, once all are connected, for the most contention.
      const deadline = Date.now() + timeoutMs;
      while (!outputs.every((o) => o.out.includes("ready")) && Date.now() < deadline) {
        if (children.some((c) => c.exitCode !== null)) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const t0 = Date.now();
      for (const c of children) c.stdin.end("go\n");
      const codes = await Promise.all(exits);
      const ms = Date.now() - t0;
      codes.forEach((code, i) => {
        expect(code, `worker ${i} exited ${code}: ${outputs[i]?.err.slice(-2000)}`).toBe(0);
      });
      let conflicts = 0;
      for (const o of outputs) {
        const line = o.out.trim().split("\n").at(-1) as string;
        const r = JSON.parse(line) as { done: number; conflicts: number };
        expect(r.done).toBe(n);
        conflicts += r.conflicts;
      }
      const final = Number((await store.get(key))?.value);
      const total = processes * n;
      const until = Date.now() + hangLimit();
      while (seen.length < total && problems.length === 0 && Date.now() < until)
        await new Promise((r) => setTimeout(r, 20));
      expect(problems).toEqual([]);
      expect(seen.length).toBe(total);
      expect(seen.every((v, i) => v === i + 1)).toBe(true);
      expect(revs.every((r, i) => i === 0 || r > (revs[i - 1] as number))).toBe(true);
      return { final, conflicts, ms };
    } finally {
      await watch.cancel();
      clearTimeout(timer);
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    }
  } finally {
    await store.delete(key).catch(() => false);
    await store.close();
  }
}
