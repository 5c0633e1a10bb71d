// The etcd v3 datastore over the `etcd3` client's raw KV and Watch RPCs: CAS as transactions on
// mod_revision, watches multiplexed on one gRPC stream of our own (etcd_watch_mux.ts; resume after
// reconnect, compaction -> resync).
// Owns: connection options (endpoints, TLS, auth, timeouts, retry backoff) and error mapping.
// Not: key layout (keys are stored exactly as given) or the choice of backend (open.ts).
import { readFileSync } from "node:fs";
import { isIPv4, isIPv6 } from "node:net";
import {
  Etcd3,
  type IKeyValue,
  type IOptions,
  type IWatchCreateRequest,
  type IWatchResponse,
  isRecoverableError,
} from "etcd3";
import { EtcdWatchMux, type MuxedWatcher } from "./etcd_watch_mux.js";
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

export interface EtcdOptions {
  /** Endpoints as `host:port` or `http(s)://host:port`. */
  endpoints: string[];
  /** Use TLS (etcds://). Implied by caFile/certFile. */
  tls?: boolean;
  /** PEM file of the CA that signed etcd's server certificate (default: system roots). */
  caFile?: string;
  /** PEM client certificate and key for mutual TLS. */
  certFile?: string;
  keyFile?: string;
  username?: string;
  password?: string;
  /** Time allowed for the first successful round trip in connect(), in ms. Default 5000. */
  dialTimeoutMs?: number;
  /** Deadline of each unary call (get, txn, ...), in ms. Default 10000. */
  requestTimeoutMs?: number;
  /** Attempts of a call that failed for a transient (network) reason. Default 4. */
  maxAttempts?: number;
  /** First and largest retry/reconnect backoff, in ms. Defaults 50 and 5000. */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /**
   * A key the user may read, for revision() and the connect check (an etcd user restricted to
   * a prefix cannot read an arbitrary key). Default "/ocelot/", inside Ocelot's key space.
   */
  probeKey?: string;
}

type GlobalPolicy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;
type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions["faultHandling"]>["host"]>>;

/** The largest gRPC message we accept: a watch batch may carry several 1.5 MiB values. */
const MAX_MESSAGE_BYTES = 256 * 1024 * 1024;
/** etcd's reason text when a revision is gone (mvcc.ErrCompacted). */
const ERR_COMPACTED = "required revision has been compacted";
const ERR_FUTURE_REV = "required revision is a future revision";

/** Exponential backoff, capped, with "equal jitter": between half the step and the step. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number): number {
  const cap = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 20));
  return Math.round(cap / 2 + (Math.random() * cap) / 2);
}

/**
 * For a bundle's V8 code cache (scripts/build.mjs, the CNI plugins' warmCodeCache): the client's
 * code run once as a CNI call runs it, against a loopback port where nothing listens (port 1:
 * refused at once), so the functions etcd3 and gRPC compile on the way are in the cache. Never
 * throws; opens nothing that outlives it.
 */
export async function warmEtcdClient(): Promise<void> {
  const s = new EtcdDatastore({ endpoints: ["127.0.0.1:1"], dialTimeoutMs: 2000, maxAttempts: 1 });
  try {
    await s.get("/ocelot/warm").catch(() => undefined);
    await s.update("/ocelot/warm", "x").catch(() => undefined);
  } finally {
    await s.close().catch(() => undefined);
  }
}

export class EtcdDatastore implements Datastore {
  readonly url: string;
  readonly client: Etcd3;
  private readonly o: Required<
    Pick<
      EtcdOptions,
      "dialTimeoutMs" | "requestTimeoutMs" | "maxAttempts" | "backoffInitialMs" | "backoffMaxMs"
    >
  >;
  private readonly watches = new Set<EtcdWatch>();
  private watchMux: EtcdWatchMux | undefined;
  private readonly probeKey: Buffer;
  private closed = false;

  constructor(opts: EtcdOptions) {
    if (opts.endpoints.length === 0) throw new RangeError("etcd needs at least one endpoint");
    this.probeKey = Buffer.from(opts.probeKey ?? "/ocelot/");
    const tls = opts.tls || opts.caFile !== undefined || opts.certFile !== undefined;
    const given = opts.endpoints.map((e) => normaliseEndpoint(e, tls));
    this.url = `${tls ? "etcds" : "etcd"}://${given.map((h) => h.replace(/^https?:\/\//, "")).join(",")}`;
    const hosts = given.map(grpcTarget);
    this.o = {
      dialTimeoutMs: opts.dialTimeoutMs ?? 5000,
      requestTimeoutMs: opts.requestTimeoutMs ?? 10_000,
      maxAttempts: opts.maxAttempts ?? 4,
      backoffInitialMs: opts.backoffInitialMs ?? 50,
      backoffMaxMs: opts.backoffMaxMs ?? 5000,
    };
    if ((opts.certFile === undefined) !== (opts.keyFile === undefined))
      throw new RangeError(
        `etcd client TLS needs both a certificate and a key (got cert ${JSON.stringify(opts.certFile)}, key ${JSON.stringify(opts.keyFile)})`,
      );
    if ((opts.username === undefined) !== (opts.password === undefined))
      throw new RangeError(`etcd authentication needs both a username and a password`);
    const options: IOptions = {
      hosts,
      dialTimeout: this.o.dialTimeoutMs,
      grpcOptions: {
        "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
        "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
        "grpc.initial_reconnect_backoff_ms": Math.max(100, this.o.backoffInitialMs),
        "grpc.max_reconnect_backoff_ms": this.o.backoffMaxMs,
      },
      defaultCallOptions: (ctx) =>
        ctx.isStream ? {} : { deadline: Date.now() + this.o.requestTimeoutMs },
      faultHandling: {
        // rpc() below decides what is safe to retry, with backoff. With one endpoint there is
        // no breaker (it would hold a restarted etcd off for seconds); with several, one that
        // failed twice in a row is skipped for a while so that calls go to the others.
        host: () =>
          hosts.length > 1
            ? (new HostBreaker(Math.max(500, this.o.backoffMaxMs)) as unknown as HostPolicy)
            : passThroughPolicy(),
        global: passThroughPolicy() as unknown as GlobalPolicy,
      },
    };
    if (tls) {
      try {
        options.credentials = {
          rootCertificate: opts.caFile
            ? readFileSync(opts.caFile)
            : (undefined as unknown as Buffer),
          privateKey: opts.keyFile ? readFileSync(opts.keyFile) : undefined,
          certChain: opts.certFile ? readFileSync(opts.certFile) : undefined,
        };
      } catch (err) {
        throw new UnavailableError(`Cannot read etcd TLS file: ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
    if (opts.username !== undefined)
      options.auth = { username: opts.username, password: opts.password as string };
    this.client = new Etcd3(options);
  }

  /** Opens a client and checks that etcd answers within the dial timeout. */
  static async connect(opts: EtcdOptions): Promise<EtcdDatastore> {
    const s = new EtcdDatastore(opts);
    const deadline = Date.now() + s.o.dialTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        await s.client.kv.range(
          { key: s.probeKey, count_only: true },
          { deadline: Math.max(deadline, Date.now() + 100) },
        );
        return s;
      } catch (err) {
        const e = err as Error;
        // Authenticated but not allowed to read the probe key: etcd answered, so it is reachable.
        if (/permission denied/i.test(e.message ?? "")) return s;
        const wait = backoffDelay(attempt, s.o.backoffInitialMs, s.o.backoffMaxMs);
        const again = attempt + 1 < s.o.maxAttempts && (isRecoverableError(e) || neverSent(e));
        if (!again || Date.now() + wait >= deadline) {
          await s.close();
          throw new UnavailableError(
            `Cannot reach etcd at "${s.url}" within ${s.o.dialTimeoutMs} ms: ${e.message}`,
            { cause: err },
          );
        }
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.check(key);
    const res = await this.rpc("get", key, () => this.client.kv.range({ key: Buffer.from(key) }));
    return res.kvs[0] ? toKv(res.kvs[0]) : undefined;
  }

  async list(prefix: string): Promise<ListResult> {
    this.open();
    const res = await this.rpc("list", prefix, () =>
      // No sort asked: etcd returns a range in ascending key order (its index is a B-tree), and
      // a sort it is asked for costs it a fifth more CPU on a 100,000-key listing.
      this.client.kv.range({ key: rangeStart(prefix), range_end: rangeEnd(prefix) }),
    );
    return { items: res.kvs.map(toKv), revision: Number(res.header.revision) };
  }

  async listKeys(prefix: string): Promise<KeyListResult> {
    this.open();
    const res = await this.rpc("list", prefix, () =>
      this.client.kv.range({
        key: rangeStart(prefix),
        range_end: rangeEnd(prefix),
        keys_only: true,
      }),
    );
    return {
      items: res.kvs.map((kv) => ({
        key: kv.key.toString("utf8"),
        createRevision: Number(kv.create_revision),
        modRevision: Number(kv.mod_revision),
        version: Number(kv.version),
      })),
      revision: Number(res.header.revision),
    };
  }

  async create(key: string, value: string): Promise<KeyValue> {
    this.check(key, value);
    const k = Buffer.from(key);
    const v = Buffer.from(value);
    const { res, ambiguous } = await this.writeRpc("create", key, () =>
      this.client.kv.txn({
        compare: [{ key: k, target: "Create", result: "Equal", create_revision: 0 }],
        success: [{ request_put: { key: k, value: v } }],
        failure: [{ request_range: { key: k } }],
      }),
    );
    if (!res.succeeded) {
      const cur = res.responses[0]?.response_range?.kvs[0];
      if (ambiguous && cur && Number(cur.version) === 1 && v.equals(cur.value)) return toKv(cur);
      throw new ConflictError(key, cur ? toKv(cur) : undefined, `Key "${key}" already exists`);
    }
    const rev = Number(res.header.revision);
    return { key, value, createRevision: rev, modRevision: rev, version: 1 };
  }

  async update(key: string, value: string, expectedModRevision?: number): Promise<KeyValue> {
    this.check(key, value);
    const k = Buffer.from(key);
    const v = Buffer.from(value);
    if (expectedModRevision === undefined) {
      const { res } = await this.writeRpc("update", key, () =>
        this.client.kv.put({ key: k, value: v, prev_kv: true }),
      );
      return afterPut(key, value, Number(res.header.revision), res.prev_kv);
    }
    const { res, ambiguous } = await this.writeRpc("update", key, () =>
      this.client.kv.txn({
        compare: [{ key: k, target: "Mod", result: "Equal", mod_revision: expectedModRevision }],
        success: [{ request_put: { key: k, value: v, prev_kv: true } }],
        failure: [{ request_range: { key: k } }],
      }),
    );
    if (!res.succeeded) {
      const cur = res.responses[0]?.response_range?.kvs[0];
      if (!cur) throw new NotFoundError(key);
      const kv = toKv(cur);
      if (ambiguous && v.equals(cur.value)) return kv;
      throw staleRevision(key, kv, expectedModRevision);
    }
    return afterPut(
      key,
      value,
      Number(res.header.revision),
      res.responses[0]?.response_put?.prev_kv,
    );
  }

  async updateIfAbsent(
    key: string,
    value: string,
    expectedModRevision: number,
    absentKeys: readonly string[],
  ): Promise<KeyValue> {
    this.check(key, value);
    for (const a of absentKeys) this.check(a);
    const k = Buffer.from(key);
    const absent = absentKeys.map((a) => Buffer.from(a));
    const v = Buffer.from(value);
    const { res, ambiguous } = await this.writeRpc("update", key, () =>
      this.client.kv.txn({
        compare: [
          { key: k, target: "Mod", result: "Equal", mod_revision: expectedModRevision },
          ...absent.map((a) => ({
            key: a,
            target: "Create" as const,
            result: "Equal" as const,
            create_revision: 0,
          })),
        ],
        success: [{ request_put: { key: k, value: v, prev_kv: true } }],
        // Which compare failed: the key itself first (as update() reports it), then each absent key.
        failure: [
          { request_range: { key: k } },
          ...absent.map((a) => ({ request_range: { key: a, keys_only: true } })),
        ],
      }),
    );
    if (!res.succeeded) {
      const cur = res.responses[0]?.response_range?.kvs[0];
      if (!cur) throw new NotFoundError(key);
      const kv = toKv(cur);
      if (ambiguous && v.equals(cur.value)) return kv;
      if (kv.modRevision !== expectedModRevision) throw staleRevision(key, kv, expectedModRevision);
      const present = absentKeys.findIndex(
        (_, i) => (res.responses[i + 1]?.response_range?.kvs.length ?? 0) > 0,
      );
      // Every compare held when read back: the state moved between the Txn and its failure
      // branch cannot happen in one Txn, so this is a conflict on the key at worst.
      if (present < 0) throw new ConflictError(key, kv, `Key "${key}" changed during the update`);
      throw new PresentError(absentKeys[present] as string);
    }
    return afterPut(
      key,
      value,
      Number(res.header.revision),
      res.responses[0]?.response_put?.prev_kv,
    );
  }

  async delete(key: string, expectedModRevision?: number): Promise<boolean> {
    this.check(key);
    const k = Buffer.from(key);
    if (expectedModRevision === undefined) {
      const { res } = await this.writeRpc("delete", key, () =>
        this.client.kv.deleteRange({ key: k }),
      );
      return Number(res.deleted) > 0;
    }
    const { res, ambiguous } = await this.writeRpc("delete", key, () =>
      this.client.kv.txn({
        compare: [{ key: k, target: "Mod", result: "Equal", mod_revision: expectedModRevision }],
        success: [{ request_delete_range: { key: k } }],
        failure: [{ request_range: { key: k } }],
      }),
    );
    if (res.succeeded) return Number(res.responses[0]?.response_delete_range?.deleted ?? 0) > 0;
    const cur = res.responses[0]?.response_range?.kvs[0];
    // Gone after an attempt that may have landed: ours, most likely; either way it is deleted.
    if (!cur) return ambiguous;
    const kv = toKv(cur);
    throw staleRevision(key, kv, expectedModRevision);
  }

  async revision(): Promise<number> {
    this.open();
    const res = await this.rpc("revision", "", () =>
      this.client.kv.range({ key: this.probeKey, count_only: true }),
    );
    return Number(res.header.revision);
  }

  async compact(revision: number): Promise<void> {
    this.open();
    if (!Number.isInteger(revision) || revision < 0)
      throw new RangeError(`Compaction revision must be a non-negative integer, got ${revision}`);
    try {
      await this.client.kv.compact({ revision, physical: true });
    } catch (err) {
      const msg = (err as Error).message ?? "";
      if (msg.includes(ERR_COMPACTED)) return; // already compacted at or past it
      if (msg.includes(ERR_FUTURE_REV))
        throw new RangeError(`Compaction revision ${revision} is in the future`);
      throw mapError(err, "compact", String(revision), this.url);
    }
  }

  watch(prefix: string, fromRevision: number, onMessage: (msg: WatchMessage) => void): Watch {
    this.open();
    if (!Number.isInteger(fromRevision) || fromRevision < 0)
      throw new RangeError(`Watch revision must be a non-negative integer, got ${fromRevision}`);
    // One stream for all of this client's watches, opened on the first (etcd_watch_mux.ts).
    this.watchMux ??= new EtcdWatchMux(
      () => this.client.watchClient.watch(),
      (attempt) => backoffDelay(attempt, this.o.backoffInitialMs, this.o.backoffMaxMs),
    );
    const w = new EtcdWatch(this.watchMux, prefix, fromRevision, onMessage, () =>
      this.watches.delete(w),
    );
    this.watches.add(w);
    w.start();
    return { cancel: () => w.cancel() };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.watches].map((w) => w.cancel()));
    this.watchMux?.close();
    this.client.close();
  }

  /**
   * Runs one call, retrying transient failures with backoff (on another endpoint when there
   * are several). Reads are retried on any transient error; writes only when the request
   * surely never reached etcd, since a write whose answer was lost may have been applied and
   * its retry would report a false conflict (the rule of etcd's Go client).
   */
  private async rpc<T>(what: string, key: string, fn: () => Promise<T>): Promise<T> {
    return (await this.call(what, key, fn, false)).res;
  }

  /**
   * A write that is safe to send again: a compare-and-swap (a second landing is impossible: its
   * compare fails) or an unconditional put/delete of the same value (landing twice is landing
   * once). When a sent attempt failed without an answer (the member died, a deadline passed),
   * it is sent again, to any live member; `ambiguous` then says that an earlier attempt may have
   * landed, so a failed compare whose current value is exactly ours is our own write.
   */
  private writeRpc<T>(
    what: string,
    key: string,
    fn: () => Promise<T>,
  ): Promise<{ res: T; ambiguous: boolean }> {
    return this.call(what, key, fn, true);
  }

  private async call<T>(
    what: string,
    key: string,
    fn: () => Promise<T>,
    resendable: boolean,
  ): Promise<{ res: T; ambiguous: boolean }> {
    const idempotent = resendable || what === "get" || what === "list" || what === "revision";
    let ambiguous = false;
    for (let attempt = 0; ; attempt++) {
      try {
        return { res: await fn(), ambiguous };
      } catch (err) {
        if (this.closed) throw new ClosedError(this.url);
        const e = err instanceof Error ? err : new Error(String(err));
        const unsent = neverSent(e);
        const retry =
          attempt + 1 < this.o.maxAttempts &&
          (idempotent ? isRecoverableError(e) || unsent : unsent);
        if (!retry) throw mapError(err, what, key, this.url);
        if (!unsent) ambiguous = true;
        await new Promise((r) =>
          setTimeout(r, backoffDelay(attempt, this.o.backoffInitialMs, this.o.backoffMaxMs)),
        );
      }
    }
  }

  private open(): void {
    if (this.closed) throw new ClosedError(this.url);
  }

  private check(key: string, value?: string): void {
    this.open();
    validateKeyValue(key, value);
  }
}

/**
 * One watch, multiplexed with the client's others on one gRPC stream (EtcdWatchMux). After the
 * stream is lost it reports an error message and is created again on the next stream (the mux
 * reconnects with backoff), resuming after the last revision it delivered, so no event is lost
 * or repeated; if that revision was compacted meanwhile it sends `resync` and stops.
 */
class EtcdWatch implements MuxedWatcher {
  private cancelled = false;

  constructor(
    private readonly mux: EtcdWatchMux,
    private readonly prefix: string,
    /** Events up to and including this revision have been delivered. */
    private pos: number,
    private readonly onMessage: (msg: WatchMessage) => void,
    private readonly onEnd: () => void,
  ) {}

  start(): void {
    if (!this.cancelled) this.mux.add(this);
  }

  async cancel(): Promise<void> {
    if (this.cancelled) return;
    this.cancelled = true;
    this.mux.remove(this);
    this.onEnd();
  }

  createRequest(): IWatchCreateRequest {
    return {
      key: rangeStart(this.prefix),
      range_end: rangeEnd(this.prefix),
      start_revision: this.pos + 1,
      prev_kv: true,
    };
  }

  receive(res: IWatchResponse): void {
    if (this.cancelled) return;
    if (res.created && !res.canceled) return;
    const compactRevision = Number(res.compact_revision ?? 0);
    if (compactRevision > 0) {
      this.finish({ kind: "resync", compactRevision });
      return;
    }
    if (res.canceled) {
      const reason = res.cancel_reason || "no reason given";
      this.finish({
        kind: "error",
        error: new UnavailableError(`etcd cancelled the watch on "${this.prefix}": ${reason}`),
      });
      return;
    }
    if (!res.events || res.events.length === 0) return;
    const events = res.events.map((e): WatchEvent => {
      const key = e.kv.key.toString("utf8");
      const modRevision = Number(e.kv.mod_revision);
      const prev = e.prev_kv ? toKv(e.prev_kv) : undefined;
      if (e.type === "Delete")
        return prev
          ? { type: "delete", key, modRevision, prev }
          : { type: "delete", key, modRevision };
      const kv = toKv(e.kv);
      return prev ? { type: "put", kv, prev } : { type: "put", kv };
    });
    const last = events[events.length - 1] as WatchEvent;
    this.pos = last.type === "put" ? last.kv.modRevision : last.modRevision;
    // The last delivered revision (not the header's): a large history may arrive in several
    // responses, and the message revision must be a safe point to resume from.
    this.onMessage({ kind: "events", events, revision: this.pos });
  }

  lost(err: Error): void {
    if (this.cancelled) return;
    this.onMessage({
      kind: "error",
      error: new UnavailableError(
        `etcd watch on "${this.prefix}" lost (reconnecting after revision ${this.pos}): ${err.message}`,
        { cause: err },
      ),
    });
  }

  private finish(msg: WatchMessage): void {
    void this.cancel();
    this.onMessage(msg);
  }
}

/** Thrown by HostBreaker without calling etcd, so the pool tries another endpoint. */
class HostSkipped extends Error {
  constructor(until: number) {
    super(
      `No connection established: endpoint skipped for ${until - Date.now()} ms after failures`,
    );
    this.name = "HostSkipped";
  }
}

/** Per-endpoint breaker: after two transient failures in a row, skip it for skipMs. */
class HostBreaker {
  private failures = 0;
  private skipUntil = 0;
  constructor(private readonly skipMs: number) {}

  async execute<T>(fn: () => Promise<T> | T): Promise<T> {
    if (Date.now() < this.skipUntil) throw new HostSkipped(this.skipUntil);
    try {
      const r = await fn();
      this.failures = 0;
      return r;
    } catch (err) {
      if (err instanceof Error && isRecoverableError(err) && ++this.failures >= 2) {
        this.skipUntil = Date.now() + this.skipMs;
        this.failures = 0;
      }
      throw err;
    }
  }
}

/** A host policy that simply runs the call (failover and backoff are the global policy's job). */
function passThroughPolicy(): HostPolicy {
  return {
    execute: <T>(fn: () => Promise<T> | T) => Promise.resolve().then(fn),
  } as unknown as HostPolicy;
}

/** True when a call failed before its request left the client (no connection to any host). */
function neverSent(e: Error): boolean {
  return /No connection established|ECONNREFUSED|connect E[A-Z]+|Name resolution failed|Connection pool has no hosts|failed to connect/i.test(
    e.message ?? "",
  );
}
/**
 * The gRPC target of an endpoint: an IP literal as `ipv4:`/`ipv6:` (grpc-js's IP resolver),
 * a name as it is (its DNS resolver). grpc-js's DNS resolver also hands an IP literal straight
 * back, but builds a c-ares resolver and a backoff for it first; a process that makes one call
 * (a CNI plugin) need not. The "name resolution" seconds seen under load were not DNS: that
 * span, from the call's start to the resolver's answer being used, runs grpc-js's first-use
 * set-up (the channel, the pick-first balancer, node:net's IPv6 pattern compiled on first use)
 * and stretches with the CPU a starved process gets (see the README's etcd note).
 */
export function grpcTarget(endpoint: string): string {
  const m = /^(https?:\/\/)(.*):(\d+)$/.exec(endpoint);
  if (!m) return endpoint;
  const [, scheme, host, port] = m as unknown as [string, string, string, string];
  if (isIPv4(host)) return `${scheme}ipv4:${host}:${port}`;
  if (host.startsWith("[") && isIPv6(host.slice(1, -1))) return `${scheme}ipv6:${host}:${port}`;
  return endpoint;
}

function normaliseEndpoint(e: string, tls: boolean): string {
  const scheme = tls ? "https://" : "http://";
  const bare = e.replace(/^https?:\/\//, "");
  if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(bare))
    throw new RangeError(`Bad etcd endpoint "${e}": expected host:port`);
  return scheme + bare;
}

/** etcd's range start for a prefix: etcd refuses an empty key, and "\0" is the first key. */
export function rangeStart(prefix: string): Buffer {
  return prefix === "" ? Buffer.from([0]) : Buffer.from(prefix);
}

/** etcd's range end for a prefix: the prefix with its last byte incremented ("\0" = no end). */
export function rangeEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if ((b[i] as number) < 0xff) {
      const end = Buffer.from(b.subarray(0, i + 1));
      end[i] = (end[i] as number) + 1;
      return end;
    }
  }
  return Buffer.from([0]);
}

function toKv(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString("utf8"),
    value: kv.value.toString("utf8"),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
  };
}

function afterPut(key: string, value: string, rev: number, prev: IKeyValue | undefined): KeyValue {
  return {
    key,
    value,
    createRevision: prev ? Number(prev.create_revision) : rev,
    modRevision: rev,
    version: prev ? Number(prev.version) + 1 : 1,
  };
}

/** Network, deadline, auth and closed-client failures become UnavailableError. */
function mapError(err: unknown, what: string, key: string, url: string): Error {
  if (
    err instanceof ConflictError ||
    err instanceof NotFoundError ||
    err instanceof UnavailableError
  )
    return err;
  const e = err instanceof Error ? err : new Error(String(err));
  const name = e.constructor?.name ?? "";
  // HostSkipped: every endpoint was in its breaker's pause after failures (a member down).
  const transient =
    isRecoverableError(e) ||
    e instanceof HostSkipped ||
    /Unavailable|DeadlineExceeded|Cancelled|Authentication|Unauthenticated|PermissionDenied|InvalidAuthToken|ClientClosed|BrokenCircuit/.test(
      name,
    );
  const subject = key ? `${what} of "${key}"` : what;
  if (transient)
    return new UnavailableError(`etcd ${subject} failed at "${url}": ${e.message}`, { cause: e });
  return new Error(`etcd ${subject} failed at "${url}": ${e.message}`, { cause: e });
}
