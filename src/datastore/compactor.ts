// Periodic compaction of a datastore's history, keeping the last N revisions for watches. etcd
// keeps all history until someone compacts it (without --auto-compaction-* flags it grows until
// its space quota stops every write), so each Ocelot daemon runs this; several running at once
// is harmless. Owns: the policy and its timer. Not: the backends' own trimming (SQLite, memory).
import type { Datastore } from "./types.js";

export interface CompactorOptions {
  /** Revisions of history kept for watchers that fall behind. Default 10000. */
  keepRevisions?: number;
  /** How often to compact, in ms. Default 5 minutes (as kube-apiserver does). */
  intervalMs?: number;
  /** Called with a failed run's error (the next run tries again). Default: ignore. */
  onError?: (err: Error) => void;
}

/** The revision to compact to, or undefined when nothing new would be forgotten. */
export function compactionTarget(
  current: number,
  keep: number,
  lastCompacted: number,
): number | undefined {
  const target = current - keep;
  return target > lastCompacted && target > 0 ? target : undefined;
}

export interface Compactor {
  /** Compacts now if due; returns the revision compacted to, if any. */
  runOnce(): Promise<number | undefined>;
  stop(): void;
}

export function startCompactor(store: Datastore, opts: CompactorOptions = {}): Compactor {
  const keep = opts.keepRevisions ?? 10_000;
  const intervalMs = opts.intervalMs ?? 5 * 60_000;
  if (!Number.isInteger(keep) || keep < 1)
    throw new RangeError(`keepRevisions must be a positive integer, got ${keep}`);
  if (!(intervalMs > 0)) throw new RangeError(`intervalMs must be positive, got ${intervalMs}`);
  if (!store.compact) throw new TypeError(`Datastore "${store.url}" cannot compact`);
  let last = 0;
  let running = false;
  const runOnce = async (): Promise<number | undefined> => {
    if (running) return undefined;
    running = true;
    try {
      const target = compactionTarget(await store.revision(), keep, last);
      if (target === undefined) return undefined;
      await store.compact?.(target);
      last = target;
      return target;
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => {
    runOnce().catch((err: unknown) =>
      opts.onError?.(err instanceof Error ? err : new Error(String(err))),
    );
  }, intervalMs);
  timer.unref();
  return { runOnce, stop: () => clearInterval(timer) };
}
