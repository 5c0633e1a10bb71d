// In-memory datastore with etcd v3 semantics (one store-wide revision, CAS on modRevision,
// ordered watches with history, compaction -> resync), for fast tests of IPAM, API and CLI.
// Owns: the state of one process's stores. Not: persistence or sharing between processes.
import {
  ClosedError,
  ConflictError,
  type Datastore,
  type KeyListResult,
  type KeyRevisions,
  type KeyValue,
  type ListResult,
  NotFoundError,
  PresentError,
  staleRevision,
  type Watch,
  type WatchEvent,
  type WatchMessage,
} from "./types.js";

export interface MemoryOptions {
  /**
   * History kept for watches, in revisions: older events are compacted automatically so a
   * long-running store does not grow without bound. Default 100000.
   */
  keepRevisions?: number;
}

interface LoggedEvent {
  rev: number;
  event: WatchEvent;
}

interface Watcher {
  prefix: string;
  onMessage: (msg: WatchMessage) => void;
  pending: WatchEvent[];
  scheduled: boolean;
  cancelled: boolean;
}

const DEFAULT_KEEP_REVISIONS = 100_000;

/** The shared state of one in-memory store; several MemoryDatastore handles may view it. */
export class MemoryStore {
  revision = 1;
  compactRevision = 0;
  readonly kv = new Map<string, KeyValue>();
  /** Events in revision order, oldest first, all with rev >= compactRevision. */
  private log: LoggedEvent[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly keepRevisions: number;

  constructor(opts: MemoryOptions = {}) {
    this.keepRevisions = opts.keepRevisions ?? DEFAULT_KEEP_REVISIONS;
    if (!Number.isInteger(this.keepRevisions) || this.keepRevisions < 1)
      throw new RangeError(`keepRevisions must be a positive integer, got ${this.keepRevisions}`);
  }

  put(key: string, value: string): KeyValue {
    const prev = this.kv.get(key);
    const rev = ++this.revision;
    const kv: KeyValue = Object.freeze({
      key,
      value,
      createRevision: prev ? prev.createRevision : rev,
      modRevision: rev,
      version: prev ? prev.version + 1 : 1,
    });
    this.kv.set(key, kv);
    this.record(rev, prev ? { type: "put", kv, prev } : { type: "put", kv });
    return kv;
  }

  remove(key: string): boolean {
    const prev = this.kv.get(key);
    if (!prev) return false;
    const rev = ++this.revision;
    this.kv.delete(key);
    this.record(rev, { type: "delete", key, modRevision: rev, prev });
    return true;
  }

  compact(revision: number): void {
    if (!Number.isInteger(revision) || revision < 0)
      throw new RangeError(`Compaction revision must be a non-negative integer, got ${revision}`);
    if (revision > this.revision)
      throw new RangeError(
        `Compaction revision ${revision} is in the future (store revision ${this.revision})`,
      );
    if (revision <= this.compactRevision) return;
    this.compactRevision = revision;
    let drop = 0;
    while (drop < this.log.length && (this.log[drop] as LoggedEvent).rev < revision) drop++;
    this.log = this.log.slice(drop);
  }

  watch(prefix: string, fromRevision: number, onMessage: (msg: WatchMessage) => void): Watcher {
    const w: Watcher = { prefix, onMessage, pending: [], scheduled: false, cancelled: false };
    // etcd: a watch starting at revision r (= fromRevision + 1) is refused when r < compact rev.
    if (fromRevision + 1 < this.compactRevision) {
      // Not registered: the watch ends with the signal (cancel() still suppresses it).
      const compactRevision = this.compactRevision;
      setImmediate(() => {
        if (!w.cancelled) onMessage({ kind: "resync", compactRevision });
      });
      return w;
    }
    for (const e of this.log) {
      if (e.rev > fromRevision && eventKey(e.event).startsWith(prefix)) w.pending.push(e.event);
    }
    this.watchers.add(w);
    if (w.pending.length > 0) this.schedule(w);
    return w;
  }

  unwatch(w: Watcher): void {
    w.cancelled = true;
    w.pending = [];
    this.watchers.delete(w);
  }

  private record(rev: number, event: WatchEvent): void {
    this.log.push({ rev, event });
    // Trim in chunks of a quarter of the history, not one event per write (slice is O(n)).
    const target = rev - this.keepRevisions;
    if (target >= this.compactRevision + Math.max(1, this.keepRevisions >> 2)) this.compact(target);
    const key = eventKey(event);
    for (const w of this.watchers) {
      if (!key.startsWith(w.prefix)) continue;
      w.pending.push(event);
      this.schedule(w);
    }
  }

  /** Delivers a watcher's pending events asynchronously, as etcd does, in one ordered batch. */
  private schedule(w: Watcher): void {
    if (w.scheduled) return;
    w.scheduled = true;
    setImmediate(() => {
      w.scheduled = false;
      if (w.cancelled || w.pending.length === 0) return;
      const events = w.pending;
      w.pending = [];
      const last = events[events.length - 1] as WatchEvent;
      w.onMessage({ kind: "events", events, revision: eventRevision(last) });
    });
  }
}

/** Named stores shared by handles in this process (`memory:NAME`); `memory:` is always fresh. */
const named = new Map<string, MemoryStore>();

export class MemoryDatastore implements Datastore {
  readonly url: string;
  private readonly store: MemoryStore;
  private readonly watches = new Set<Watcher>();
  private closed = false;

  /** A fresh private store, or the process-wide store called `name` (created on first use). */
  constructor(name?: string, opts: MemoryOptions = {}) {
    this.url = `memory:${name ?? ""}`;
    if (name === undefined || name === "") {
      this.store = new MemoryStore(opts);
    } else {
      let s = named.get(name);
      if (!s) {
        s = new MemoryStore(opts);
        named.set(name, s);
      }
      this.store = s;
    }
  }

  /** Forgets the named store (tests); open handles keep their state. */
  static dropNamed(name: string): void {
    named.delete(name);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.check(key);
    return this.store.kv.get(key);
  }

  async list(prefix: string): Promise<ListResult> {
    this.open();
    const items: KeyValue[] = [];
    for (const kv of this.store.kv.values()) if (kv.key.startsWith(prefix)) items.push(kv);
    items.sort((a, b) => compareKeys(a.key, b.key));
    return { items, revision: this.store.revision };
  }

  async listKeys(prefix: string): Promise<KeyListResult> {
    this.open();
    const items: KeyRevisions[] = [];
    for (const { value: _, ...rest } of this.store.kv.values())
      if (rest.key.startsWith(prefix)) items.push(rest);
    items.sort((a, b) => compareKeys(a.key, b.key));
    return { items, revision: this.store.revision };
  }

  async create(key: string, value: string): Promise<KeyValue> {
    this.check(key, value);
    const cur = this.store.kv.get(key);
    if (cur) throw new ConflictError(key, cur, `Key "${key}" already exists`);
    return this.store.put(key, value);
  }

  async update(key: string, value: string, expectedModRevision?: number): Promise<KeyValue> {
    this.check(key, value);
    if (expectedModRevision !== undefined) this.requireRevision(key, expectedModRevision);
    return this.store.put(key, value);
  }

  /** The compare of a compare-and-swap: the key exists at exactly this revision. */
  private requireRevision(key: string, expected: number): void {
    const cur = this.store.kv.get(key);
    if (!cur) throw new NotFoundError(key);
    if (cur.modRevision !== expected) throw staleRevision(key, cur, expected);
  }

  async updateIfAbsent(
    key: string,
    value: string,
    expectedModRevision: number,
    absentKeys: readonly string[],
  ): Promise<KeyValue> {
    this.check(key, value);
    for (const k of absentKeys) validateKeyValue(k);
    this.requireRevision(key, expectedModRevision);
    for (const k of absentKeys) if (this.store.kv.has(k)) throw new PresentError(k);
    return this.store.put(key, value);
  }

  async delete(key: string, expectedModRevision?: number): Promise<boolean> {
    this.check(key);
    const cur = this.store.kv.get(key);
    if (!cur) return false;
    if (expectedModRevision !== undefined && cur.modRevision !== expectedModRevision)
      throw staleRevision(key, cur, expectedModRevision);
    return this.store.remove(key);
  }

  watch(prefix: string, fromRevision: number, onMessage: (msg: WatchMessage) => void): Watch {
    this.open();
    const w = this.store.watch(prefix, fromRevision, onMessage);
    this.watches.add(w);
    return {
      cancel: async () => {
        this.store.unwatch(w);
        this.watches.delete(w);
      },
    };
  }

  async revision(): Promise<number> {
    this.open();
    return this.store.revision;
  }

  async compact(revision: number): Promise<void> {
    this.open();
    this.store.compact(revision);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches) this.store.unwatch(w);
    this.watches.clear();
  }

  private open(): void {
    if (this.closed) throw new ClosedError(this.url);
  }

  private check(key: string, value?: string): void {
    this.open();
    validateKeyValue(key, value);
  }
}

/** Keys are non-empty strings; etcd refuses an empty key. */
export function validateKey(key: string): void {
  if (typeof key !== "string" || key.length === 0)
    throw new TypeError(`Datastore key must be a non-empty string, got ${JSON.stringify(key)}`);
}

/** Checks a key and, when given, that its value is a string (every backend's argument check). */
export function validateKeyValue(key: string, value?: string): void {
  validateKey(key);
  if (value !== undefined && typeof value !== "string")
    throw new TypeError(`Value for "${key}" must be a string, got ${typeof value}`);
}

/** Byte order of the UTF-8 encodings, as etcd and SQLite's BINARY collation sort keys. */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // UTF-16 order matches code point (= UTF-8 byte) order except surrogates vs U+E000..U+FFFF.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys && (xs ? y >= 0xe000 : x >= 0xe000)) return xs ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

function eventKey(e: WatchEvent): string {
  return e.type === "put" ? e.kv.key : e.key;
}

function eventRevision(e: WatchEvent): number {
  return e.type === "put" ? e.kv.modRevision : e.modRevision;
}
