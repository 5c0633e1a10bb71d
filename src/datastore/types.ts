// The datastore contract that every backend (etcd v3, embedded SQLite, in-memory) fulfils.
// Owns: the shape of keys, values, revisions, compare-and-swap and watch. Not: any resource
// semantics (src/api) or IPAM logic (src/ipam). Semantics follow etcd v3: one store-wide
// revision that increases by one per write; every key carries createRevision/modRevision.

/** One stored key-value pair, as etcd v3 reports it. */
export interface KeyValue {
  key: string;
  value: string;
  /** Revision of the write that created this key (since its last deletion). */
  createRevision: number;
  /** Revision of the last write to this key: the token for compare-and-swap. */
  modRevision: number;
  /** Number of writes since creation (1 after create). */
  version: number;
}

export interface ListResult {
  items: KeyValue[];
  /** The store revision at which the list was read; watch(prefix, revision) then misses nothing. */
  revision: number;
}

/** A key's revisions without its value (listKeys). */
export type KeyRevisions = Omit<KeyValue, "value">;

export interface KeyListResult {
  items: KeyRevisions[];
  /** The store revision at which the list was read, as with list(). */
  revision: number;
}

export type WatchEvent =
  | { type: "put"; kv: KeyValue; prev?: KeyValue }
  | { type: "delete"; key: string; modRevision: number; prev?: KeyValue };

/** What a watch delivers: events in revision order, or a demand to list again and re-watch. */
export type WatchMessage =
  | {
      kind: "events";
      events: WatchEvent[];
      /** A safe point to resume from: every event under the prefix up to it was delivered. */
      revision: number;
    }
  /** The requested revision was compacted away: list again, then watch(prefix, list.revision). */
  | { kind: "resync"; compactRevision: number }
  | { kind: "error"; error: Error };

export interface Watch {
  /** Stops the watch; no message is delivered after the promise settles. */
  cancel(): Promise<void>;
}

/** Thrown when a create finds the key present, or an update/delete finds another revision. */
export class ConflictError extends Error {
  constructor(
    readonly key: string,
    /** The key's current state, or undefined when it does not exist. */
    readonly current: KeyValue | undefined,
    message?: string,
  ) {
    super(message ?? `Conflict on "${key}"`);
    this.name = "ConflictError";
  }
}

/** The ConflictError of a compare-and-swap that found the key at another revision. */
export function staleRevision(key: string, current: KeyValue, expected: number): ConflictError {
  return new ConflictError(
    key,
    current,
    `Key "${key}" is at revision ${current.modRevision}, not ${expected}`,
  );
}

/** Thrown when an update or a get-for-update names a key that does not exist. */
export class NotFoundError extends Error {
  constructor(readonly key: string) {
    super(`Key "${key}" not found`);
    this.name = "NotFoundError";
  }
}

/** Thrown by updateIfAbsent when a key that had to be missing exists (nothing was written). */
export class PresentError extends Error {
  constructor(readonly key: string) {
    super(`Key "${key}" exists`);
    this.name = "PresentError";
  }
}

/** The store is unreachable or refused the call (network, auth, timeout). Retrying may help. */
export class UnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "UnavailableError";
  }
}

export interface Datastore {
  /** A short description for logs, e.g. "etcd://127.0.0.1:2379" or "file:/var/lib/ocelot/store.db". */
  readonly url: string;
  get(key: string): Promise<KeyValue | undefined>;
  /** All keys beginning with prefix, in key order, with the revision of the read. */
  list(prefix: string): Promise<ListResult>;
  /**
   * list() without the values: the keys under prefix in key order, each with its revisions, and
   * the revision of the read (etcd: a keys-only range). For callers that need to know which keys
   * exist, not what they hold (an IPAM block claim's scan of the blocks). Every Ocelot backend
   * implements it; optional so that test doubles need not (callers fall back to list()).
   */
  listKeys?(prefix: string): Promise<KeyListResult>;
  /** Creates key; throws ConflictError if it exists. Returns the new KeyValue. */
  create(key: string, value: string): Promise<KeyValue>;
  /**
   * Compare-and-swap: writes value only if the key's modRevision equals expectedModRevision.
   * Throws ConflictError (with the current value) otherwise, NotFoundError if the key is absent.
   * Without expectedModRevision it writes unconditionally (create or overwrite).
   *
   * A distributed backend may lose the answer to a write that landed (the member died). It
   * sends such a write again; the compare then fails, and if the key holds exactly the bytes we
   * wrote, the write is reported done (returning the stored KeyValue). So a success means "this
   * value is in place, written after expectedModRevision"; writers whose values could be equal
   * byte for byte while meaning different operations (a bare counter) must make them distinct.
   */
  update(key: string, value: string, expectedModRevision?: number): Promise<KeyValue>;
  /**
   * update() at expectedModRevision that also requires every key of absentKeys to be missing,
   * both checked in the write's own transaction (etcd: one Txn that also compares each key's
   * create revision to 0). Throws what update() throws when the revision does not match (that
   * check comes first), else PresentError naming a present key; nothing is written then.
   */
  updateIfAbsent(
    key: string,
    value: string,
    expectedModRevision: number,
    absentKeys: readonly string[],
  ): Promise<KeyValue>;
  /** Deletes key (only at expectedModRevision when given). Returns false if it did not exist. */
  delete(key: string, expectedModRevision?: number): Promise<boolean>;
  /** Watches keys under prefix for changes after fromRevision (exclusive: events with revision > fromRevision). */
  watch(prefix: string, fromRevision: number, onMessage: (msg: WatchMessage) => void): Watch;
  /** The current store revision. */
  revision(): Promise<number>;
  /**
   * Forgets history at revisions below `revision` (etcd compaction): a later watch whose first
   * needed revision (fromRevision + 1) is below it receives `{kind: "resync"}`. Every Ocelot
   * backend implements it; optional so that test doubles need not.
   */
  compact?(revision: number): Promise<void>;
  /**
   * The embedded store only: resolves once the file's write lock could be taken (and released at
   * once) within withinMs; otherwise rejects with UnavailableError saying the file is locked. A
   * read answers even while another process holds the write lock, so readiness asks this too.
   */
  probeWrite?(withinMs: number): Promise<void>;
  close(): Promise<void>;
}

/** Thrown by any call on a store after close(). */
export class ClosedError extends UnavailableError {
  constructor(url: string) {
    super(`Datastore "${url}" is closed`);
    this.name = "ClosedError";
  }
}
