// A daemon's shutdown in bounded steps: each step (close a socket, stop the speaker, wait for the
// pass in flight) is given what is left of one deadline, and a step that has not ended by then is
// abandoned and named in a log line, so that SIGTERM ends the process within the grace period an
// operator's supervisor gives it (systemd, the kubelet) instead of waiting on whatever hangs.
// Not: what the steps are (src/cli/node.ts, src/node/daemon.ts).

import type { Log } from "./log.js";

/** The outcome of a bounded wait: done (resolved or failed), or still running at the bound. */
export type Bounded = "done" | "timeout";

/** Waits for p at most ms; never rejects (a failure counts as done: the caller logs it). */
export async function within(p: Promise<unknown>, ms: number): Promise<Bounded> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.then(
        () => "done" as const,
        () => "done" as const,
      ),
      new Promise<Bounded>((resolve) => {
        timer = setTimeout(() => resolve("timeout"), Math.max(0, ms));
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Steps run one after the other against one deadline. */
export class StopDeadline {
  private readonly end: number;
  /** Steps abandoned at their bound, in order. */
  readonly abandoned: string[] = [];
  /** The step running now (for a last log line when the process must exit anyway). */
  current: string | undefined;

  /**
   * totalMs: the whole stop's budget. minStepMs: what a step still gets once the budget is spent
   * (closing a socket takes a moment; a step that hangs is then abandoned quickly).
   */
  constructor(
    readonly totalMs: number,
    private readonly log: Pick<Log, "warn" | "error">,
    private readonly minStepMs = 100,
    private readonly now: () => number = Date.now,
  ) {
    this.end = now() + totalMs;
  }

  /** Milliseconds left of the budget (at least 0). */
  get leftMs(): number {
    return Math.max(0, this.end - this.now());
  }

  /**
   * Runs step `name` (its failure logged, not thrown) and waits for it at most what is left of
   * the budget (at least minStepMs), or capMs when smaller. Returns whether it ended in time.
   */
  async step(
    name: string,
    run: () => Promise<unknown> | unknown,
    capMs?: number,
  ): Promise<boolean> {
    const start = this.now();
    const limit = Math.min(
      capMs ?? Number.POSITIVE_INFINITY,
      Math.max(this.minStepMs, this.leftMs),
    );
    this.current = name;
    let p: Promise<unknown>;
    try {
      p = Promise.resolve(run());
    } catch (err) {
      p = Promise.reject(err);
    }
    p.catch((err: Error) => this.log.error({ step: name, error: err?.message }, "Stop failed"));
    const outcome = await within(p, limit);
    this.current = undefined;
    if (outcome === "timeout") {
      this.abandoned.push(name);
      this.log.warn(
        { step: name, waitedMs: Math.round(this.now() - start) },
        `Stop: abandoned ${name} (not done within its bound)`,
      );
      return false;
    }
    return true;
  }
}
