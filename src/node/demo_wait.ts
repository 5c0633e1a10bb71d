// The demo's clock and waits: each phase of bringing the cluster up timed by name, and waits
// that re-check their condition when something announces a change (a file written, a route
// event, a datastore watch event) instead of polling on a fixed period. Owns: timing and waking
// up. Not: what is waited for (src/node/demo.ts says).
import { type ChildProcess, spawn } from "node:child_process";
import { type FSWatcher, watch } from "node:fs";

export interface Phase {
  name: string;
  /** Seconds the phase took. */
  seconds: number;
  /** Seconds since the demo started when the phase ended. */
  atSeconds: number;
}

/** Times named phases one after the other; each ends when the next begins or on end(). */
export class PhaseClock {
  readonly phases: Phase[] = [];
  private readonly t0 = performance.now();
  private last = this.t0;

  constructor(private readonly onPhase: (p: Phase) => void = () => {}) {}

  /** Closes the phase that ran since the previous one (or the start) under name. */
  end(name: string): Phase {
    const now = performance.now();
    const p = {
      name,
      seconds: round3((now - this.last) / 1000),
      atSeconds: round3((now - this.t0) / 1000),
    };
    this.last = now;
    this.phases.push(p);
    this.onPhase(p);
    return p;
  }

  /** Seconds of the named phases together. */
  sum(names: readonly string[]): number {
    return round3(
      this.phases.filter((p) => names.includes(p.name)).reduce((a, p) => a + p.seconds, 0),
    );
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** Something that calls wake() whenever the condition may have changed; close() stops it. */
export interface Waker {
  close(): void;
}

/**
 * Resolves once check() returns a truthy value. check runs at once, whenever one of the wakers
 * signals, and every fallbackMs in case a signal was lost; rejects after timeoutMs with the
 * last error. Concurrent signals while a check runs cause one more check after it.
 */
export async function waitUntil<T>(
  what: string,
  check: () => T | Promise<T>,
  wakers: ((wake: () => void) => Waker)[],
  timeoutMs: number,
  fallbackMs = 1000,
): Promise<NonNullable<T>> {
  return new Promise<NonNullable<T>>((resolve, reject) => {
    let done = false;
    let running = false;
    let again = false;
    let lastError: unknown;
    const opened: Waker[] = [];
    const finish = (err: Error | undefined, v?: NonNullable<T>) => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      clearInterval(fallback);
      for (const w of opened) w.close();
      if (err) reject(err);
      else resolve(v as NonNullable<T>);
    };
    const run = async (): Promise<void> => {
      if (done) return;
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        do {
          again = false;
          try {
            const v = await check();
            if (v) return finish(undefined, v as NonNullable<T>);
          } catch (err) {
            lastError = err;
          }
        } while (again && !done);
      } finally {
        running = false;
      }
    };
    const deadline = setTimeout(
      () =>
        finish(
          new Error(
            `Timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ""}`,
          ),
        ),
      timeoutMs,
    );
    const fallback = setInterval(() => void run(), fallbackMs);
    for (const make of wakers) opened.push(make(() => void run()));
    void run();
  });
}

/** Wakes on every change of a file (inotify through fs.watch). */
export function fileWaker(path: string): (wake: () => void) => Waker {
  return (wake) => {
    let w: FSWatcher | undefined;
    try {
      w = watch(path, { persistent: false }, () => wake());
      w.on("error", () => {});
    } catch {
      // The file is not there yet: the fallback period covers it.
    }
    return { close: () => w?.close() };
  };
}

/**
 * Wakes on every line a long-running command prints (e.g. `ip -n NS monitor route`); the child
 * is ended (by its PID, it is ours) on close.
 */
export function commandWaker(cmd: string, args: string[]): (wake: () => void) => Waker {
  return (wake) => {
    const child: ChildProcess = spawn(cmd, args, { stdio: ["ignore", "pipe", "ignore"] });
    child.stdout?.on("data", () => wake());
    child.on("error", () => {});
    return {
      close: () => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      },
    };
  };
}
