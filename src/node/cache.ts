// A local copy of the keys under some datastore prefixes, kept current by watches: one list
// gives the items and a revision, each prefix is watched from that revision, and a `resync`
// (the revision was compacted) or a watch error lists everything again and re-watches from the
// new revision. A prefix whose list fails is retried by one timer of its own (never one per
// watch error: each error of a dead store's watch used to start another chain), after a delay
// that doubles from retryMs to maxRetryMs, jittered (0.75-1.0 of it), and starts again from
// retryMs once a list succeeds. Calls onChange(prefix) after every change it applied. Not:
// decoding values or deciding anything (the daemon does).
import type { Datastore, KeyValue, Watch } from "../datastore/types.js";

export interface CacheEvents {
  /** One or more keys under prefix changed (or all of them were read again). */
  onChange(prefix: string): void;
  /** A watch needed a full list again (compaction or an error), with why. */
  onResync?(prefix: string, why: string): void;
  /** A relist failed (the store is unreachable); the cache retries after retryInMs. */
  onError?(prefix: string, err: Error, retryInMs: number): void;
}

export class PrefixCache {
  private readonly items = new Map<string, Map<string, KeyValue>>();
  private readonly watches = new Map<string, Watch>();
  /** Bumped per (re)list of a prefix: messages of an older watch are ignored. */
  private readonly generation = new Map<string, number>();
  private closed = false;
  /** The one pending retry of each prefix. */
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  /** Lists of each prefix failed in a row (the backoff's exponent). */
  private readonly failures = new Map<string, number>();

  constructor(
    private readonly store: Datastore,
    readonly prefixes: readonly string[],
    private readonly events: CacheEvents,
    private readonly retryMs = 1000,
    private readonly maxRetryMs = 16_000,
  ) {}

  /** Lists every prefix and starts its watch. Throws when the first list fails. */
  async start(): Promise<void> {
    for (const p of this.prefixes) await this.relist(p);
  }

  /** The stored values under prefix, in key order. */
  values(prefix: string): KeyValue[] {
    return [...(this.items.get(prefix)?.values() ?? [])].sort((a, b) =>
      a.key < b.key ? -1 : a.key > b.key ? 1 : 0,
    );
  }

  /** Lists every prefix again (the periodic full resync); the watches restart from the lists. */
  async resyncAll(): Promise<void> {
    for (const p of this.prefixes) await this.relist(p);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.retryTimers.values()) clearTimeout(t);
    this.retryTimers.clear();
    const ws = [...this.watches.values()];
    this.watches.clear();
    await Promise.all(ws.map((w) => w.cancel().catch(() => {})));
  }

  private async relist(prefix: string): Promise<void> {
    if (this.closed) return;
    const gen = (this.generation.get(prefix) ?? 0) + 1;
    this.generation.set(prefix, gen);
    const old = this.watches.get(prefix);
    this.watches.delete(prefix);
    await old?.cancel().catch(() => {});
    const list = await this.store.list(prefix);
    this.failures.delete(prefix);
    if (this.closed || this.generation.get(prefix) !== gen) return;
    this.items.set(prefix, new Map(list.items.map((kv) => [kv.key, kv])));
    const w = this.store.watch(prefix, list.revision, (msg) => {
      if (this.closed || this.generation.get(prefix) !== gen) return;
      if (msg.kind === "events") {
        const map = this.items.get(prefix) as Map<string, KeyValue>;
        for (const ev of msg.events) {
          if (ev.type === "put") map.set(ev.kv.key, ev.kv);
          else map.delete(ev.key);
        }
        if (msg.events.length > 0) this.events.onChange(prefix);
        return;
      }
      const why =
        msg.kind === "resync"
          ? `revision compacted (at ${msg.compactRevision})`
          : `watch error: ${msg.error.message}`;
      this.events.onResync?.(prefix, why);
      this.retry(prefix, msg.kind === "resync" ? 0 : this.retryMs);
    });
    this.watches.set(prefix, w);
    this.events.onChange(prefix);
  }

  /** Schedules the prefix's relist, unless one is pending already. */
  private retry(prefix: string, delayMs: number): void {
    if (this.closed || this.retryTimers.has(prefix)) return;
    const t = setTimeout(() => {
      this.retryTimers.delete(prefix);
      this.relist(prefix).catch((err: Error) => {
        const n = (this.failures.get(prefix) ?? 0) + 1;
        this.failures.set(prefix, n);
        const base = Math.min(this.retryMs * 2 ** (n - 1), this.maxRetryMs);
        const next = Math.round(base * (0.75 + 0.25 * Math.random()));
        this.events.onError?.(prefix, err, next);
        this.retry(prefix, next);
      });
    }, delayMs);
    this.retryTimers.set(prefix, t);
  }
}
