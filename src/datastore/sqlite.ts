// The embedded datastore: one SQLite file (better-sqlite3) that every Ocelot process on a host
// shares, with etcd v3's revision, compare-and-swap and watch semantics. Owns: the file's schema,
// write transactions, the event log and its compaction, and watch polling. Not: any key layout.
//
// Why SQLite: the embedded store must be a real database file that several processes (the node
// daemon, the CNI IPAM plugin, the CLI) open at once, with atomic compare-and-swap and no server
// to run. SQLite in WAL mode gives exactly that: readers never block the writer, writers are
// serialised by the file lock, and each write is one `BEGIN IMMEDIATE` transaction that reads
// the key, compares its mod revision and bumps the single store-wide revision, so no other
// process can interleave; the busy timeout turns lock contention into a short wait rather than
// an error. better-sqlite3 12 is synchronous (no thread hop per call), already a dependency,
// and builds on Node 20 here. Watches read an `events` table (one row per revision, indexed by
// revision) that each process reads when inotify reports a write to the WAL file, and polls
// every ~25 ms in case it missed one, which is cheap when idle and survives crashes; compaction trims that table, and a watcher whose start is gone gets `resync`, as
// with etcd. Alternatives: LevelDB and RocksDB lock a database to one process; LMDB would work
// across processes but is another native addon and has no notification either; a JSON file
// with locks would reimplement a database, badly.
import { existsSync, type FSWatcher, watch as fsWatch, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import Database from "better-sqlite3";
import { validateKeyValue } from "./memory.js";
import {
  ClosedError,
  ConflictError,
  type Datastore,
  type KeyListResult,
  type KeyValue,
  type ListResult,
  NotFoundError,
  PresentError,
  staleRevision,
  UnavailableError,
  type Watch,
  type WatchEvent,
  type WatchMessage,
} from "./types.js";

export interface SqliteOptions {
  /** How long a writer waits for another process's write lock, in ms. Default 10000. */
  busyTimeoutMs?: number;
  /** How often watches poll the event log, in ms. Default 25. */
  pollIntervalMs?: number;
  /** Revisions of history kept for watches before automatic compaction. Default 10000. */
  keepRevisions?: number;
  /**
   * SQLite `synchronous`. "NORMAL" (default): in WAL mode a commit survives any process crash and
   * the file stays consistent; only an OS crash or power loss can roll back the last commits,
   * and those take down every process on the host that saw them (the store is host-local), so
   * IPAM cannot hand out an address twice to live workloads. "FULL" fsyncs every commit as etcd
   * does, about 20x slower here (see bench/datastore_cas.ts).
   */
  synchronous?: "FULL" | "NORMAL";
  /** Poll at once when inotify reports another process's write (else only on the timer). Default true. */
  notify?: boolean;
  /** Create the parent directory when missing. Default true. */
  createDirectory?: boolean;
  /**
   * WAL pages between automatic checkpoints (SQLite `wal_autocheckpoint`). Default 8192 (32 MiB
   * of WAL), not SQLite's 1000: a checkpoint copies every page written since the last one into
   * the database file and syncs it, and the event log makes most pages new ones, so checkpoints
   * were most of the cost of a kilobyte write (an IPAM block) at the default. After one, the
   * WAL file is cut back to 64 MiB at most (`journal_size_limit`).
   */
  walAutocheckpointPages?: number;
}

const SCHEMA_VERSION = 1;
/** Event types in the `events.type` column. */
const EVENT_PUT = 0;
const EVENT_DELETE = 1;
/** Automatic compaction is checked every this many revisions. */
const AUTO_COMPACT_EVERY = 256;

/**
 * better-sqlite3's addon by path: the command bundles carry the package's JavaScript
 * (scripts/build.mjs) and load only the addon from node_modules, and a path skips `bindings`'
 * search of a dozen candidates at every open. Undefined (better-sqlite3 looks for it itself)
 * where the package is not found.
 */
function sqliteAddon(): string | undefined {
  try {
    const pkg = createRequire(import.meta.url).resolve("better-sqlite3/package.json");
    const addon = join(dirname(pkg), "build", "Release", "better_sqlite3.node");
    return existsSync(addon) ? addon : undefined;
  } catch {
    return undefined;
  }
}

/** Events read per query while catching a watcher up, bounding memory with large values. */
const EVENT_BATCH = 512;

interface KvRow {
  /** The key as text: the queries read it with CAST(key AS TEXT) (see KV_COLUMNS). */
  key: string;
  value: string;
  create_rev: number;
  mod_rev: number;
  version: number;
}

interface RevRow {
  create_rev: number;
  mod_rev: number;
  version: number;
}

interface EventRow {
  rev: number;
  key: Buffer;
  type: number;
  value: string | null;
  create_rev: number | null;
  version: number | null;
  prev_value: string | null;
  prev_create_rev: number | null;
  prev_mod_rev: number | null;
  prev_version: number | null;
}

interface MetaRow {
  revision: number;
  compact_rev: number;
}

interface Watcher {
  prefix: string;
  lo: Buffer;
  hi: Buffer | undefined;
  /** Events up to and including this revision have been delivered. */
  pos: number;
  onMessage: (msg: WatchMessage) => void;
  cancelled: boolean;
}

/**
 * The kv columns a read returns. The key comes back as text (SQLite reads the stored UTF-8 bytes
 * as the string): a BLOB column would cost a Node Buffer per row and a decode in toKv, about a
 * quarter of a short list's time (a node's affinities, the IPAM block scan of a claim).
 */
const KV_COLUMNS = "CAST(key AS TEXT) AS key, value, create_rev, mod_rev, version";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  id INTEGER PRIMARY KEY CHECK (id = 0),
  schema INTEGER NOT NULL,
  revision INTEGER NOT NULL,
  compact_rev INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
  key BLOB PRIMARY KEY,
  value TEXT NOT NULL,
  create_rev INTEGER NOT NULL,
  mod_rev INTEGER NOT NULL,
  version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
  rev INTEGER PRIMARY KEY,
  key BLOB NOT NULL,
  type INTEGER NOT NULL,
  value TEXT,
  create_rev INTEGER,
  version INTEGER,
  prev_value TEXT,
  prev_create_rev INTEGER,
  prev_mod_rev INTEGER,
  prev_version INTEGER
);
INSERT OR IGNORE INTO meta (id, schema, revision, compact_rev) VALUES (0, ${SCHEMA_VERSION}, 1, 0);
`;

export class SqliteDatastore implements Datastore {
  readonly url: string;
  private readonly db: Database.Database;
  private readonly opts: Required<Omit<SqliteOptions, "createDirectory">>;
  private readonly watchers = new Set<Watcher>();
  private timer: NodeJS.Timeout | undefined;
  private fileWatcher: FSWatcher | undefined;
  private pollSoon = false;
  private closed = false;
  private readonly stmt: ReturnType<SqliteDatastore["prepare"]>;
  private readonly txPut: (
    key: string,
    value: string,
    expected: number | undefined,
    mustBeNew: boolean,
    absentKeys?: readonly string[],
  ) => KeyValue;
  private readonly txDelete: (key: string, expected: number | undefined) => boolean;
  private readonly txCompact: (revision: number) => void;
  private readonly txList: (lo: Buffer, hi: Buffer | undefined) => ListResult;
  private readonly txListKeys: (lo: Buffer, hi: Buffer | undefined) => KeyListResult;

  constructor(
    readonly path: string,
    opts: SqliteOptions = {},
  ) {
    this.url = `file:${path}`;
    this.opts = {
      busyTimeoutMs: opts.busyTimeoutMs ?? 10_000,
      pollIntervalMs: opts.pollIntervalMs ?? 25,
      keepRevisions: opts.keepRevisions ?? 10_000,
      synchronous: opts.synchronous ?? "NORMAL",
      notify: opts.notify ?? true,
      walAutocheckpointPages: opts.walAutocheckpointPages ?? 8192,
    };
    if (!Number.isInteger(this.opts.walAutocheckpointPages) || this.opts.walAutocheckpointPages < 1)
      throw new RangeError(
        `walAutocheckpointPages must be a positive integer, got ${this.opts.walAutocheckpointPages}`,
      );
    if (!Number.isInteger(this.opts.keepRevisions) || this.opts.keepRevisions < 1)
      throw new RangeError(
        `keepRevisions must be a positive integer, got ${this.opts.keepRevisions}`,
      );
    try {
      if (opts.createDirectory ?? true) mkdirSync(dirname(path), { recursive: true });
      this.db = new Database(path, {
        timeout: this.opts.busyTimeoutMs,
        nativeBinding: sqliteAddon(),
      });
    } catch (err) {
      throw new UnavailableError(
        `Cannot open datastore file "${path}": ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    try {
      this.db.pragma(`busy_timeout = ${this.opts.busyTimeoutMs}`);
      const mode = this.db.pragma("journal_mode = WAL", { simple: true });
      if (String(mode).toLowerCase() !== "wal")
        throw new UnavailableError(`Datastore file "${path}" cannot use WAL mode (got "${mode}")`);
      this.db.pragma(`synchronous = ${this.opts.synchronous}`);
      this.db.pragma(`wal_autocheckpoint = ${this.opts.walAutocheckpointPages}`);
      this.db.pragma(`journal_size_limit = ${64 * 1024 * 1024}`);
      this.db.transaction(() => this.db.exec(SCHEMA)).immediate();
      const meta = this.db.prepare("SELECT schema FROM meta WHERE id = 0").get() as {
        schema: number;
      };
      if (meta.schema !== SCHEMA_VERSION)
        throw new UnavailableError(
          `Datastore file "${path}" has schema version ${meta.schema}, expected ${SCHEMA_VERSION}`,
        );
    } catch (err) {
      this.db.close();
      throw mapError(err, `open "${path}"`);
    }
    this.stmt = this.prepare();
    this.txPut = this.db.transaction(this.put.bind(this)).immediate as typeof this.txPut;
    this.txDelete = this.db.transaction(this.remove.bind(this)).immediate as typeof this.txDelete;
    this.txCompact = this.db.transaction(this.compactTx.bind(this))
      .immediate as typeof this.txCompact;
    // Made once: db.transaction() builds its wrappers anew on every call.
    this.txList = this.db.transaction((lo: Buffer, hi: Buffer | undefined): ListResult => {
      const rows = (hi ? this.stmt.listRange.all(lo, hi) : this.stmt.listFrom.all(lo)) as KvRow[];
      const meta = this.stmt.meta.get() as MetaRow;
      return { items: rows.map(toKv), revision: meta.revision };
    }) as typeof this.txList;
    this.txListKeys = this.db.transaction((lo: Buffer, hi: Buffer | undefined): KeyListResult => {
      const rows = (
        hi ? this.stmt.listKeysRange.all(lo, hi) : this.stmt.listKeysFrom.all(lo)
      ) as Array<Omit<KvRow, "value">>;
      const meta = this.stmt.meta.get() as MetaRow;
      return {
        items: rows.map((r) => ({
          key: r.key,
          createRevision: r.create_rev,
          modRevision: r.mod_rev,
          version: r.version,
        })),
        revision: meta.revision,
      };
    }) as typeof this.txListKeys;
  }

  private prepare() {
    const db = this.db;
    return {
      meta: db.prepare("SELECT revision, compact_rev FROM meta WHERE id = 0"),
      bump: db.prepare("UPDATE meta SET revision = revision + 1 WHERE id = 0 RETURNING revision"),
      setCompact: db.prepare("UPDATE meta SET compact_rev = ? WHERE id = 0"),
      get: db.prepare(`SELECT ${KV_COLUMNS} FROM kv WHERE key = ?`),
      /** The revisions of a key without its value: a compare-and-swap needs no more. */
      revs: db.prepare("SELECT create_rev, mod_rev, version FROM kv WHERE key = ?"),
      /** The value a put event wrote (a later put's previous value, see put()). */
      eventValue: db.prepare("SELECT value FROM events WHERE rev = ? AND type = 0"),
      listFrom: db.prepare(`SELECT ${KV_COLUMNS} FROM kv WHERE key >= ? ORDER BY key`),
      listKeysFrom: db.prepare(
        "SELECT CAST(key AS TEXT) AS key, create_rev, mod_rev, version FROM kv WHERE key >= ? ORDER BY key",
      ),
      listKeysRange: db.prepare(
        "SELECT CAST(key AS TEXT) AS key, create_rev, mod_rev, version FROM kv WHERE key >= ? AND key < ? ORDER BY key",
      ),
      listRange: db.prepare(`SELECT ${KV_COLUMNS} FROM kv WHERE key >= ? AND key < ? ORDER BY key`),
      upsert: db.prepare(
        `INSERT INTO kv (key, value, create_rev, mod_rev, version) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_rev = excluded.mod_rev,
         version = excluded.version`,
      ),
      del: db.prepare("DELETE FROM kv WHERE key = ?"),
      event: db.prepare(
        `INSERT INTO events (rev, key, type, value, create_rev, version,
           prev_value, prev_create_rev, prev_mod_rev, prev_version)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      trim: db.prepare("DELETE FROM events WHERE rev < ?"),
      eventsFrom: db.prepare(
        `SELECT * FROM events WHERE rev > ? AND rev <= ? AND key >= ? ORDER BY rev LIMIT ${EVENT_BATCH}`,
      ),
      eventsRange: db.prepare(
        `SELECT * FROM events WHERE rev > ? AND rev <= ? AND key >= ? AND key < ? ORDER BY rev LIMIT ${EVENT_BATCH}`,
      ),
    };
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.check(key);
    return this.call("get", () => {
      const row = this.stmt.get.get(Buffer.from(key, "utf8")) as KvRow | undefined;
      return row ? toKv(row) : undefined;
    });
  }

  async list(prefix: string): Promise<ListResult> {
    this.open();
    const [lo, hi] = prefixRange(prefix);
    // One read transaction: the items and the revision are from the same snapshot.
    return this.call("list", () => this.txList(lo, hi));
  }

  async listKeys(prefix: string): Promise<KeyListResult> {
    this.open();
    const [lo, hi] = prefixRange(prefix);
    return this.call("list", () => this.txListKeys(lo, hi));
  }

  async create(key: string, value: string): Promise<KeyValue> {
    this.check(key, value);
    return this.call("create", () => this.txPut(key, value, undefined, true));
  }

  async update(key: string, value: string, expectedModRevision?: number): Promise<KeyValue> {
    this.check(key, value);
    return this.call("update", () => this.txPut(key, value, expectedModRevision, false));
  }

  async updateIfAbsent(
    key: string,
    value: string,
    expectedModRevision: number,
    absentKeys: readonly string[],
  ): Promise<KeyValue> {
    this.check(key, value);
    for (const k of absentKeys) validateKeyValue(k);
    return this.call("update", () =>
      this.txPut(key, value, expectedModRevision, false, absentKeys),
    );
  }

  async delete(key: string, expectedModRevision?: number): Promise<boolean> {
    this.check(key);
    return this.call("delete", () => this.txDelete(key, expectedModRevision));
  }

  async revision(): Promise<number> {
    this.open();
    return this.call("revision", () => (this.stmt.meta.get() as MetaRow).revision);
  }

  async probeWrite(withinMs: number): Promise<void> {
    this.open();
    const deadline = Date.now() + withinMs;
    // Short tries with the event loop free between them: better-sqlite3 waits for a lock
    // synchronously, so one long busy wait would stall the whole process.
    const tryMs = 20;
    let last: unknown;
    for (let attempt = 0; attempt === 0 || Date.now() < deadline; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 100));
      if (this.closed) throw new ClosedError(this.url);
      this.db.pragma(`busy_timeout = ${tryMs}`);
      try {
        this.db.exec("BEGIN IMMEDIATE");
        this.db.exec("ROLLBACK");
        return;
      } catch (err) {
        last = err;
      } finally {
        this.db.pragma(`busy_timeout = ${this.opts.busyTimeoutMs}`);
      }
    }
    const code = (last as { code?: string }).code ?? "";
    throw new UnavailableError(
      `Datastore file "${this.path}" is locked: no write lock within ${withinMs} ms (${code}: ${(last as Error).message}${hint(code)})`,
      { cause: last },
    );
  }

  async compact(revision: number): Promise<void> {
    this.open();
    if (!Number.isInteger(revision) || revision < 0)
      throw new RangeError(`Compaction revision must be a non-negative integer, got ${revision}`);
    this.call("compact", () => this.txCompact(revision));
  }

  watch(prefix: string, fromRevision: number, onMessage: (msg: WatchMessage) => void): Watch {
    this.open();
    if (!Number.isInteger(fromRevision) || fromRevision < 0)
      throw new RangeError(`Watch revision must be a non-negative integer, got ${fromRevision}`);
    const [lo, hi] = prefixRange(prefix);
    const w: Watcher = { prefix, lo, hi, pos: fromRevision, onMessage, cancelled: false };
    this.watchers.add(w);
    this.kick();
    return {
      cancel: async () => {
        w.cancelled = true;
        this.watchers.delete(w);
        if (this.watchers.size === 0) this.stopTimer();
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watchers) w.cancelled = true;
    this.watchers.clear();
    this.stopTimer();
    this.db.close();
  }

  // --- write transactions (run inside BEGIN IMMEDIATE) ---

  private put(
    key: string,
    value: string,
    expected: number | undefined,
    mustBeNew: boolean,
    absentKeys?: readonly string[],
  ): KeyValue {
    const k = Buffer.from(key, "utf8");
    // Only the revisions: the value (often a kilobyte block) is read just to report a conflict.
    const cur = this.stmt.revs.get(k) as RevRow | undefined;
    if (mustBeNew && cur)
      throw new ConflictError(key, this.current(k), `Key "${key}" already exists`);
    if (expected !== undefined) {
      if (!cur) throw new NotFoundError(key);
      if (cur.mod_rev !== expected) throw staleRevision(key, this.current(k) as KeyValue, expected);
    }
    if (absentKeys)
      for (const a of absentKeys)
        if (this.stmt.revs.get(Buffer.from(a, "utf8")) !== undefined) throw new PresentError(a);
    const rev = this.bump();
    const kv: KeyValue = {
      key,
      value,
      createRevision: cur ? cur.create_rev : rev,
      modRevision: rev,
      version: cur ? cur.version + 1 : 1,
    };
    this.stmt.upsert.run(k, value, kv.createRevision, rev, kv.version);
    // The previous value is not copied into the event: it is the value of the put event at
    // prev_mod_rev, read when a watcher needs it (toEvent). One copy of the value per write
    // instead of two; once compaction has taken that event, the watch event has no `prev`.
    this.stmt.event.run(
      rev,
      k,
      EVENT_PUT,
      value,
      kv.createRevision,
      kv.version,
      null,
      cur?.create_rev ?? null,
      cur?.mod_rev ?? null,
      cur?.version ?? null,
    );
    this.autoCompact(rev);
    return kv;
  }

  private current(k: Buffer): KeyValue | undefined {
    const row = this.stmt.get.get(k) as KvRow | undefined;
    return row ? toKv(row) : undefined;
  }

  private remove(key: string, expected: number | undefined): boolean {
    const k = Buffer.from(key, "utf8");
    const row = this.stmt.get.get(k) as KvRow | undefined;
    if (!row) return false;
    const cur = toKv(row);
    if (expected !== undefined && cur.modRevision !== expected)
      throw staleRevision(key, cur, expected);
    const rev = this.bump();
    this.stmt.del.run(k);
    this.stmt.event.run(
      rev,
      k,
      EVENT_DELETE,
      null,
      null,
      null,
      cur.value,
      cur.createRevision,
      cur.modRevision,
      cur.version,
    );
    this.autoCompact(rev);
    return true;
  }

  private compactTx(revision: number): void {
    const meta = this.stmt.meta.get() as MetaRow;
    if (revision > meta.revision)
      throw new RangeError(
        `Compaction revision ${revision} is in the future (store revision ${meta.revision})`,
      );
    if (revision <= meta.compact_rev) return;
    this.stmt.trim.run(revision);
    this.stmt.setCompact.run(revision);
  }

  private bump(): number {
    return (this.stmt.bump.get() as { revision: number }).revision;
  }

  private autoCompact(rev: number): void {
    if (rev % AUTO_COMPACT_EVERY !== 0) return;
    const target = rev - this.opts.keepRevisions;
    if (target <= 0) return;
    const meta = this.stmt.meta.get() as MetaRow;
    if (target <= meta.compact_rev) return;
    this.stmt.trim.run(target);
    this.stmt.setCompact.run(target);
  }

  // --- watches ---

  /** Polls soon (after a local write or a new watch) rather than at the next tick. */
  private kick(): void {
    if (this.closed || this.watchers.size === 0) return;
    if (!this.timer) {
      this.timer = setInterval(() => this.poll(), this.opts.pollIntervalMs);
      this.timer.unref();
      this.watchFile();
    }
    if (this.pollSoon) return;
    this.pollSoon = true;
    setImmediate(() => {
      this.pollSoon = false;
      this.poll();
    });
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.fileWatcher?.close();
    this.fileWatcher = undefined;
  }

  /**
   * Polls as soon as another process writes: inotify on the directory reports changes to the
   * `-wal` file (a directory watch survives the file being removed and recreated). Best effort:
   * where it is unavailable the timer alone drives polling.
   */
  private watchFile(): void {
    if (this.fileWatcher || !this.opts.notify) return;
    const wal = `${basename(this.path)}-wal`;
    try {
      this.fileWatcher = fsWatch(dirname(this.path), { persistent: false }, (_type, name) => {
        if (name === wal) this.kick();
      });
      this.fileWatcher.on("error", () => {
        this.fileWatcher?.close();
        this.fileWatcher = undefined;
      });
    } catch {
      this.fileWatcher = undefined;
    }
  }

  /** One poll: a consistent snapshot, then each watcher's new events in revision order. */
  private poll(): void {
    if (this.closed || this.watchers.size === 0) return;
    let out: Array<[Watcher, WatchMessage]>;
    try {
      out = this.db.transaction(() => this.collect())();
    } catch (err) {
      const error = mapError(err, "watch");
      for (const w of this.watchers) if (!w.cancelled) deliver(w, { kind: "error", error });
      return;
    }
    for (const [w, msg] of out) if (!w.cancelled) deliver(w, msg);
  }

  private collect(): Array<[Watcher, WatchMessage]> {
    const out: Array<[Watcher, WatchMessage]> = [];
    const meta = this.stmt.meta.get() as MetaRow;
    for (const w of this.watchers) {
      if (w.pos >= meta.revision) continue;
      // etcd: a watch starting at revision r (= pos + 1) is refused when r < compact revision.
      if (w.pos + 1 < meta.compact_rev) {
        out.push([w, { kind: "resync", compactRevision: meta.compact_rev }]);
        this.watchers.delete(w);
        continue;
      }
      const events: WatchEvent[] = [];
      for (let guard = 0; guard < 1_000_000 && w.pos < meta.revision; guard++) {
        const rows = (
          w.hi
            ? this.stmt.eventsRange.all(w.pos, meta.revision, w.lo, w.hi)
            : this.stmt.eventsFrom.all(w.pos, meta.revision, w.lo)
        ) as EventRow[];
        for (const r of rows) events.push(this.toEvent(r));
        if (rows.length < EVENT_BATCH) w.pos = meta.revision;
        else w.pos = (rows[rows.length - 1] as EventRow).rev;
      }
      if (events.length > 0) out.push([w, { kind: "events", events, revision: meta.revision }]);
    }
    if (this.watchers.size === 0) this.stopTimer();
    return out;
  }

  private toEvent(r: EventRow): WatchEvent {
    const key = r.key.toString("utf8");
    let prev: KeyValue | undefined;
    if (r.prev_mod_rev !== null) {
      // A put's previous value lives in the event that wrote it (older files copied it here).
      const value =
        r.prev_value ??
        (this.stmt.eventValue.get(r.prev_mod_rev) as { value: string } | undefined)?.value;
      if (value !== undefined)
        prev = {
          key,
          value,
          createRevision: r.prev_create_rev as number,
          modRevision: r.prev_mod_rev,
          version: r.prev_version as number,
        };
    }
    if (r.type === EVENT_DELETE)
      return prev
        ? { type: "delete", key, modRevision: r.rev, prev }
        : { type: "delete", key, modRevision: r.rev };
    const kv: KeyValue = {
      key,
      value: r.value as string,
      createRevision: r.create_rev as number,
      modRevision: r.rev,
      version: r.version as number,
    };
    return prev ? { type: "put", kv, prev } : { type: "put", kv };
  }

  // --- helpers ---

  private call<T>(what: string, fn: () => T): T {
    let result: T;
    try {
      result = fn();
    } catch (err) {
      throw mapError(err, `${what} on "${this.url.slice("file:".length)}"`);
    }
    if (what !== "get" && what !== "list" && what !== "revision") this.kick();
    return result;
  }

  private open(): void {
    if (this.closed) throw new ClosedError(this.url);
  }

  private check(key: string, value?: string): void {
    this.open();
    validateKeyValue(key, value);
  }
}

/** Calls a watcher; a callback that throws must not cost the other watchers their messages. */
function deliver(w: Watcher, msg: WatchMessage): void {
  try {
    w.onMessage(msg);
  } catch (err) {
    setImmediate(() => {
      throw err;
    });
  }
}

/** The [lo, hi) byte range of keys beginning with prefix; hi undefined means no upper bound. */
export function prefixRange(prefix: string): [Buffer, Buffer | undefined] {
  const lo = Buffer.from(prefix, "utf8");
  const hi = Buffer.from(lo);
  for (let i = hi.length - 1; i >= 0; i--) {
    if ((hi[i] as number) < 0xff) {
      hi[i] = (hi[i] as number) + 1;
      return [lo, hi.subarray(0, i + 1)];
    }
  }
  return [lo, undefined];
}

/** What an operator can do about an SQLite failure, where there is something to say. */
function hint(code: string): string {
  if (code === "SQLITE_FULL") return " (free space on its file system; nothing was written)";
  if (code === "SQLITE_BUSY") return " (another process held the write lock too long)";
  if (code === "SQLITE_READONLY") return " (the file or its directory is not writable)";
  return "";
}

function toKv(r: KvRow): KeyValue {
  return {
    key: r.key,
    value: r.value,
    createRevision: r.create_rev,
    modRevision: r.mod_rev,
    version: r.version,
  };
}

/** Our own errors pass through; SQLite lock and I/O failures become UnavailableError. */
function mapError(err: unknown, what: string): Error {
  if (
    err instanceof ConflictError ||
    err instanceof NotFoundError ||
    err instanceof PresentError ||
    err instanceof UnavailableError ||
    err instanceof RangeError ||
    err instanceof TypeError
  )
    return err;
  const e = err as Error & { code?: string };
  if (typeof e?.code === "string" && e.code.startsWith("SQLITE_"))
    return new UnavailableError(
      `Datastore ${what} failed: ${e.code}: ${e.message}${hint(e.code)}`,
      {
        cause: err,
      },
    );
  return e instanceof Error ? e : new Error(String(err));
}
