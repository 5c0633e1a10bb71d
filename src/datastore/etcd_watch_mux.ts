// One gRPC Watch stream for all the watches of one etcd client, as etcd's Go client multiplexes
// them: etcd's Watch RPC takes any number of WatchCreateRequests on one stream, answers each
// with a `created` response carrying its watch_id, tags every later response (events,
// compaction, cancellation) with that id, and ends one watch on a WatchCancelRequest. A node's
// 18 watches thus cost etcd (or a gRPC proxy) one stream instead of 18.
// Owns: the stream's life (opened on the first watch, closed when the last one ends, re-opened
// with backoff after a loss), the watch_id of each watcher, and the order of creates. Not: what
// a response means for a watcher (resume position, compaction, errors: etcd.ts's EtcdWatch).
//
// Creates are sent one at a time, the next after the previous one's `created` answer, and that
// answer is matched to the create by order, not by id: the gRPC proxy ignores a client-chosen
// watch_id and may answer a create that joins an existing upstream watch before an earlier one
// that waits for etcd's answer; one create in flight cannot be mismatched.
import type { IDuplexStream, IWatchCreateRequest, IWatchRequest, IWatchResponse } from "etcd3";

export type WatchStream = IDuplexStream<IWatchRequest, IWatchResponse>;

/** One watch on the shared stream, as the mux sees it. */
export interface MuxedWatcher {
  /** Its create request, made anew for every (re)connect from where the watcher stands. */
  createRequest(): IWatchCreateRequest;
  /**
   * A response for it: its `created` answer, events, a compaction or a cancellation. When etcd
   * cancelled it (compaction included), the mux has already forgotten it.
   */
  receive(res: IWatchResponse): void;
  /** The stream was lost; the mux creates the watcher again on the next stream (after backoff). */
  lost(err: Error): void;
}

export class EtcdWatchMux {
  private stream: WatchStream | undefined;
  private opening = false;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Consecutive failed connects (reset by a created watch): the backoff step. */
  private attempt = 0;
  /** Watchers created on the current stream, by watch_id. */
  private readonly active = new Map<string, MuxedWatcher>();
  /** The watcher whose create was sent and not yet answered. */
  private pending: MuxedWatcher | undefined;
  /** Watchers to create on the stream, in order. */
  private queue: MuxedWatcher[] = [];
  /** Removed while its create was in flight: cancelled on etcd as soon as its id is known. */
  private readonly dropped = new WeakSet<MuxedWatcher>();

  constructor(
    /** Opens a new Watch stream (on whichever endpoint the client's pool picks). */
    private readonly open: () => Promise<WatchStream>,
    /** Delay before the n-th reconnect attempt (0-based), in ms. */
    private readonly retryDelay: (attempt: number) => number,
  ) {}

  /** Watches on the stream, created or waiting (for tests and metrics). */
  get size(): number {
    return this.active.size + this.queue.length + (this.pending ? 1 : 0);
  }

  add(w: MuxedWatcher): void {
    this.queue.push(w);
    this.connect();
    this.pump();
  }

  /** Ends a watcher: nothing more is delivered to it. Closes the stream when it was the last. */
  remove(w: MuxedWatcher): void {
    const i = this.queue.indexOf(w);
    if (i >= 0) this.queue.splice(i, 1);
    if (this.pending === w) this.dropped.add(w);
    for (const [id, a] of this.active) {
      if (a !== w) continue;
      this.active.delete(id);
      this.stream?.write({ cancel_request: { watch_id: id } });
      break;
    }
    this.idle();
  }

  /** Ends every watcher and the stream. */
  close(): void {
    this.queue = [];
    this.active.clear();
    if (this.pending) this.dropped.add(this.pending);
    this.pending = undefined;
    this.idle();
  }

  private connect(): void {
    if (this.stream || this.opening || this.retryTimer) return;
    this.opening = true;
    this.open().then(
      (stream) => this.attach(stream),
      (err: Error) => {
        this.opening = false;
        this.lost(err);
      },
    );
  }

  private attach(stream: WatchStream): void {
    this.opening = false;
    if (this.size === 0) {
      end(stream);
      return;
    }
    this.stream = stream;
    stream.on("data", (res: IWatchResponse) => {
      if (stream === this.stream) this.receive(res);
    });
    stream.on("error", (err: Error) => this.lost(err, stream));
    stream.on("end", () => this.lost(new Error("etcd closed the watch stream"), stream));
    this.pump();
  }

  /** Sends the next create when none is in flight. */
  private pump(): void {
    if (!this.stream || this.pending) return;
    const w = this.queue.shift();
    if (!w) return;
    this.pending = w;
    this.stream.write({ create_request: w.createRequest() });
  }

  private receive(res: IWatchResponse): void {
    if (res.created) {
      const w = this.pending;
      this.pending = undefined;
      if (w && !res.canceled) {
        this.attempt = 0;
        if (this.dropped.has(w)) this.stream?.write({ cancel_request: { watch_id: res.watch_id } });
        else this.active.set(String(res.watch_id), w);
      }
      if (w && !this.dropped.has(w)) w.receive(res);
      this.pump();
      this.idle();
      return;
    }
    const id = String(res.watch_id);
    const w = this.active.get(id);
    if (!w) return; // ended here already, or a progress notification for the stream
    if (res.canceled) this.active.delete(id);
    w.receive(res);
    this.idle();
  }

  private lost(err: Error, stream?: WatchStream): void {
    if (stream && stream !== this.stream) return;
    this.stream = undefined;
    if (stream) end(stream);
    // Recreated in the order they were first created: those on the stream, the one in flight,
    // then those still waiting.
    const all = [...this.active.values()];
    if (this.pending && !this.dropped.has(this.pending)) all.push(this.pending);
    all.push(...this.queue);
    this.active.clear();
    this.pending = undefined;
    this.queue = all;
    for (const w of all) w.lost(err);
    // A watcher may have been removed from within its lost() (the queue is then shorter).
    if (this.queue.length === 0) return;
    const delay = this.retryDelay(this.attempt++);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect();
    }, delay);
  }

  /** Closes the stream when no watcher is left on it. */
  private idle(): void {
    if (this.size > 0) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const s = this.stream;
    this.stream = undefined;
    if (s) end(s);
  }
}

function end(stream: WatchStream): void {
  stream.on("error", () => {});
  stream.cancel?.();
}
