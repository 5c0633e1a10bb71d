// glibc's malloc thresholds fixed at a daemon's start (`ocelot bgpd`, `ocelot node run`), from
// OCELOT_MALLOC_THRESHOLDS. Below both command modules; owns: the default and the env check.
// Not: the system call (lib/native.ts's addon).
import { mallocThresholds } from "../lib/native.js";
import { CliError } from "./errors.js";

/** glibc's own initial thresholds (128 KiB), which the daemons keep fixed (see below). */
export const MALLOC_THRESHOLD_BYTES = 128 << 10;

/**
 * Keeps glibc's M_MMAP_THRESHOLD and M_TRIM_THRESHOLD at their initial 128 KiB instead of
 * letting glibc raise them (up to 32 MiB) each time a larger mapped chunk is freed: V8's
 * compiler threads then allocated in their own arenas and the memory they freed stayed with
 * the process, 7-10 MiB of a 1,000-client reflector's RssAnon (docs/scale.md, "RSS in parts";
 * 3 MiB with the thresholds fixed). Set at start through the native addon (the thresholds are
 * global to every arena, unlike MALLOC_ARENA_MAX, which only an environment variable set before
 * node starts would apply). OCELOT_MALLOC_THRESHOLDS=default leaves glibc's behaviour; a number
 * of bytes (4096..33554432) sets both.
 */
export function fixMallocThresholds(env: string | undefined): number | undefined {
  if (env === "default") return undefined;
  const bytes = env === undefined ? MALLOC_THRESHOLD_BYTES : Number(env);
  if (env !== undefined && (!/^\d+$/.test(env) || bytes < 4096 || bytes > 32 << 20))
    throw new CliError(
      `OCELOT_MALLOC_THRESHOLDS: "${env}" is not "default" or a byte count 4096..33554432`,
      2,
    );
  try {
    return mallocThresholds(bytes, bytes) ? bytes : undefined;
  } catch {
    return undefined; // no addon here: glibc's own behaviour
  }
}
