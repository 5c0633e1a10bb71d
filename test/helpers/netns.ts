// Test hosts in network namespaces: the product's namespace helper (src/lib/netns.ts) with a
// per-run name prefix, so parallel runs and workers never collide, bounded waits (waitFor, holds),
// and skips that say why.
import { randomBytes } from "node:crypto";
import { Netns as BaseNetns, waitFor as waitForBounded } from "../../src/lib/netns.js";
import { hangLimit } from "./limits.js";

export { link, netnsUnavailableReason, sh, sleepSync } from "../../src/lib/netns.js";

/**
 * Polls fn until it returns a truthy value. The limit is for a hang: whatever a test asks for
 * is raised to WAIT_MS (test/helpers/limits.ts), since a loaded 2-core machine can take many
 * times longer than a quiet one.
 */
export function waitFor<T>(
  what: string,
  fn: () => T | Promise<T>,
  timeoutMs?: number,
  intervalMs = 100,
): Promise<NonNullable<T>> {
  return waitForBounded(what, fn, hangLimit(timeoutMs), intervalMs);
}

/** Samples `check` every 100 ms for `ms`: true only if it held at every sample. */
export async function holds(ms: number, check: () => boolean): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!check()) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

/**
 * The run prefix of a process: `oc`, the random bytes in hex, then the pid in base 36. The hex
 * comes before the pid so the third character is never `l`: a prefix `ocl…` (pids 27216-28511 in
 * base 36 begin with `l`) made the links a test names with it look like pods' host-side
 * interfaces (WORKLOAD_IFACE_PREFIX) to the node daemon under test, whose policy then dropped what
 * was forwarded to them as an unknown pod's (a WireGuard device `ocl…w1`: pod pings never crossed).
 */
export function runPrefixOf(pid: number, random: Buffer): string {
  return `oc${random.toString("hex")}${pid.toString(36)}`;
}

/** A prefix unique to this test process, so parallel runs and workers never collide. */
export const RUN_PREFIX = runPrefixOf(process.pid, randomBytes(2));

export class Netns extends BaseNetns {
  /** Creates namespace `${RUN_PREFIX}-${short}` with lo up and forwarding on. */
  static create(short: string): Netns {
    const ns = BaseNetns.add(`${RUN_PREFIX}-${short}`);
    return new Netns(ns.name);
  }
}

/** Logs the reason a suite is skipped, so a skip is never silent. Returns true when skipping. */
export function skipWithReason(suite: string, reason: string | undefined): boolean {
  if (reason) console.warn(`SKIP ${suite}: ${reason}`);
  return reason !== undefined;
}
