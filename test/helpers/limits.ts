// Limits for what tests spawn and wait for. A limit here is for a hang, never for speed: the
// suite runs on a shared 2-core machine whose load can reach the dozens, where a command that
// takes 50 ms on a quiet machine can take seconds. Speed is measured in bench/, not asserted
// here. Every process a test spawns gets HANG_MS (synchronous spawns block the test worker,
// so vitest's own timeout cannot end them); every bounded wait gets at least WAIT_MS.
import {
  type SpawnSyncOptionsWithStringEncoding,
  type SpawnSyncReturns,
  spawnSync,
} from "node:child_process";

/** How long one spawned command may run before the test treats it as hung. */
export const HANG_MS = 120_000;

/** The least time a test waits for a condition before it calls it a hang. */
export const WAIT_MS = 60_000;

/** A wait's limit: what the test asked for, raised to WAIT_MS. */
export function hangLimit(requestedMs?: number): number {
  return Math.max(requestedMs ?? 0, WAIT_MS);
}

/**
 * spawnSync with text output and a hang-sized limit (SIGKILL at HANG_MS unless the caller
 * asks for longer). A command that hit the limit has `error.code === "ETIMEDOUT"`.
 */
export function runSync(
  cmd: string,
  args: readonly string[],
  opts: Partial<SpawnSyncOptionsWithStringEncoding> = {},
): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, {
    encoding: "utf8",
    killSignal: "SIGKILL",
    ...opts,
    timeout: Math.max(opts.timeout ?? 0, HANG_MS),
  });
}
