// Kernel features a test needs: whether a device type exists (its module is built and loaded),
// probed in a scratch namespace; and the one kind of skip CI allows, a kernel module missing,
// printed with its reason and marked in the test's meta for scripts/test-summary.mjs.
import { spawnSync } from "node:child_process";
import { HANG_MS } from "./limits.js";
import { Netns } from "./netns.js";

declare module "vitest" {
  interface TaskMeta {
    /** Set on a test skipped because the kernel lacks a module (the only skip CI accepts). */
    allowedSkip?: string;
  }
}

/**
 * Why a link of `kind` cannot be made here ("kernel module ipip is missing: Error: Unknown
 * device type."), or undefined when it can. Needs root and `ip netns`.
 */
export function linkKindMissing(kind: string): string | undefined {
  const ns = Netns.create(`k${kind.slice(0, 4)}`);
  try {
    const r = spawnSync("ip", ["-n", ns.name, "link", "add", "name", "probe0", "type", kind], {
      encoding: "utf8",
      timeout: HANG_MS,
    });
    if (r.status === 0) return undefined;
    const why = (r.stderr || r.stdout).trim();
    return /Unknown device type|not supported|No such/i.test(why)
      ? `kernel module ${kind} is missing: ${why}`
      : `cannot create a ${kind} link: ${why}`;
  } finally {
    ns.destroy();
  }
}

interface SkipContext {
  task: { name: string; meta: { allowedSkip?: string } };
  skip: (note?: string) => never;
}

/**
 * Skips the running test because a kernel module is missing: prints the reason and marks the
 * test so CI's summary accepts the skip (any other reason fails CI). Only for reasons made by
 * linkKindMissing() ("kernel module X is missing: ...").
 */
export function skipForMissingModule(ctx: SkipContext, reason: string): never {
  if (!/^kernel module \S+ is missing/.test(reason))
    throw new Error(`Not a missing kernel module, not an allowed skip: ${reason}`);
  console.warn(`SKIP ${ctx.task.name}: ${reason}`);
  ctx.task.meta.allowedSkip = reason;
  return ctx.skip(reason);
}
