// EtcdWatchMux against a scripted Watch stream (no etcd): all watchers on one stream, one create
// in flight at a time matched to its `created` answer by order, responses routed by watch_id,
// a watcher removed before its id is known cancelled on the stream once it is, a lost stream
// reported to every watcher and all of them created again on the next one (after backoff), and
// the stream closed when the last watcher ends.
import { EventEmitter } from "node:events";
import type { IWatchCreateRequest, IWatchRequest, IWatchResponse } from "etcd3";
import { describe, expect, it } from "vitest";
import {
  EtcdWatchMux,
  type MuxedWatcher,
  type WatchStream,
} from "../../src/datastore/etcd_watch_mux.js";

class FakeStream extends EventEmitter {
  readonly written: IWatchRequest[] = [];
  cancelled = false;
  write(req: IWatchRequest): boolean {
    this.written.push(req);
    return true;
  }
  cancel(): void {
    this.cancelled = true;
  }
  creates(): string[] {
    return this.written.filter((r) => r.create_request).map((r) => String(r.create_request?.key));
  }
  cancels(): string[] {
    return this.written
      .filter((r) => r.cancel_request)
      .map((r) => String(r.cancel_request?.watch_id));
  }
  answer(res: Partial<IWatchResponse>): void {
    this.emit("data", { watch_id: "0", created: false, canceled: false, events: [], ...res });
  }
}

class Recorder implements MuxedWatcher {
  readonly got: IWatchResponse[] = [];
  readonly losses: string[] = [];
  constructor(readonly name: string) {}
  createRequest(): IWatchCreateRequest {
    return { key: Buffer.from(this.name) };
  }
  receive(res: IWatchResponse): void {
    this.got.push(res);
  }
  lost(err: Error): void {
    this.losses.push(err.message);
  }
}

function harness() {
  const streams: FakeStream[] = [];
  const delays: number[] = [];
  const mux = new EtcdWatchMux(
    async () => {
      const s = new FakeStream();
      streams.push(s);
      return s as unknown as WatchStream;
    },
    (attempt) => {
      delays.push(attempt);
      return 1;
    },
  );
  return { mux, streams, delays };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe("EtcdWatchMux", () => {
  it("puts every watcher on one stream, one create at a time, and routes by watch_id", async () => {
    const { mux, streams } = harness();
    const [a, b, c] = ["a", "b", "c"].map((n) => new Recorder(n)) as [Recorder, Recorder, Recorder];
    mux.add(a);
    mux.add(b);
    mux.add(c);
    await tick();
    expect(streams).toHaveLength(1);
    const s = streams[0] as FakeStream;
    // The second create waits for the first one's answer.
    expect(s.creates()).toEqual(["a"]);
    s.answer({ created: true, watch_id: "7" });
    expect(s.creates()).toEqual(["a", "b"]);
    s.answer({ created: true, watch_id: "3" });
    s.answer({ created: true, watch_id: "5" });
    expect(s.creates()).toEqual(["a", "b", "c"]);
    s.answer({ watch_id: "3", events: [{ type: "Put" } as never] });
    s.answer({ watch_id: "7", events: [{ type: "Put" } as never] });
    s.answer({ watch_id: "99", events: [{ type: "Put" } as never] }); // nobody's: dropped
    expect(a.got.map((r) => r.created || r.watch_id)).toEqual([true, "7"]);
    expect(b.got.map((r) => r.created || r.watch_id)).toEqual([true, "3"]);
    expect(c.got.map((r) => r.created || r.watch_id)).toEqual([true]);
    expect(mux.size).toBe(3);
    // Removing one cancels it on the stream; the others go on.
    mux.remove(b);
    expect(s.cancels()).toEqual(["3"]);
    s.answer({ watch_id: "3", events: [{ type: "Put" } as never] });
    expect(b.got).toHaveLength(2);
    expect(s.cancelled).toBe(false);
    mux.remove(a);
    mux.remove(c);
    expect(s.cancelled).toBe(true);
    expect(mux.size).toBe(0);
  });

  it("cancels a watcher removed while its create was in flight once its id is known", async () => {
    const { mux, streams } = harness();
    const a = new Recorder("a");
    const b = new Recorder("b");
    mux.add(a);
    mux.add(b);
    await tick();
    const s = streams[0] as FakeStream;
    mux.remove(a);
    expect(s.cancelled).toBe(false);
    s.answer({ created: true, watch_id: "0" });
    expect(s.cancels()).toEqual(["0"]);
    expect(a.got).toHaveLength(0);
    expect(s.creates()).toEqual(["a", "b"]);
    s.answer({ created: true, watch_id: "1" });
    s.answer({ watch_id: "0", events: [{ type: "Put" } as never] });
    expect(a.got).toHaveLength(0);
    expect(b.got).toHaveLength(1);
  });

  it("forgets a watcher etcd cancelled (compaction) and hands it the response", async () => {
    const { mux, streams } = harness();
    const a = new Recorder("a");
    const b = new Recorder("b");
    mux.add(a);
    mux.add(b);
    await tick();
    const s = streams[0] as FakeStream;
    s.answer({ created: true, watch_id: "0" });
    s.answer({ created: true, watch_id: "1" });
    s.answer({ watch_id: "0", canceled: true, compact_revision: "12" });
    expect(a.got.at(-1)?.compact_revision).toBe("12");
    expect(mux.size).toBe(1);
    expect(s.cancels()).toEqual([]); // etcd ended it itself
    mux.remove(a); // as EtcdWatch does on compaction: nothing more to send
    expect(s.cancels()).toEqual([]);
    expect(s.cancelled).toBe(false);
  });

  it("reports a lost stream to every watcher and creates them all again on the next, after backoff", async () => {
    const { mux, streams, delays } = harness();
    const ws = ["a", "b", "c"].map((n) => new Recorder(n));
    for (const w of ws) mux.add(w);
    await tick();
    const s = streams[0] as FakeStream;
    s.answer({ created: true, watch_id: "0" });
    s.answer({ created: true, watch_id: "1" }); // c's create in flight
    s.emit("error", new Error("14 UNAVAILABLE: member gone"));
    s.emit("end"); // a second report of the same loss changes nothing
    expect(ws.map((w) => w.losses.length)).toEqual([1, 1, 1]);
    expect(ws[0]?.losses[0]).toMatch(/member gone/);
    expect(s.cancelled).toBe(true);
    expect(delays).toEqual([0]);
    await tick();
    expect(streams).toHaveLength(2);
    const s2 = streams[1] as FakeStream;
    expect(s2.creates()).toEqual(["a"]);
    s2.answer({ created: true, watch_id: "0" });
    s2.answer({ created: true, watch_id: "1" });
    s2.answer({ created: true, watch_id: "2" });
    expect(s2.creates()).toEqual(["a", "b", "c"]);
    // Responses of the old stream no longer reach anyone.
    s.emit("data", { watch_id: "0", created: false, canceled: false, events: [{}] });
    expect(ws[0]?.got.filter((r) => !r.created)).toHaveLength(0);
    // A second loss: the backoff restarted, since watches were created in between.
    s2.emit("end");
    expect(delays).toEqual([0, 0]);
    for (const w of ws) mux.remove(w);
    await tick();
    expect(streams).toHaveLength(2); // nothing left to reconnect for
  });

  it("backs off further while the stream cannot be opened, and stops when nobody watches", async () => {
    let fails = 3;
    const delays: number[] = [];
    const opened: FakeStream[] = [];
    const mux = new EtcdWatchMux(
      async () => {
        if (fails-- > 0) throw new Error("No connection established");
        const s = new FakeStream();
        opened.push(s);
        return s as unknown as WatchStream;
      },
      (attempt) => {
        delays.push(attempt);
        return 1;
      },
    );
    const a = new Recorder("a");
    mux.add(a);
    for (let i = 0; i < 20 && opened.length === 0; i++) await tick();
    expect(delays).toEqual([0, 1, 2]);
    expect(a.losses).toHaveLength(3);
    expect(opened[0]?.creates()).toEqual(["a"]);
    mux.close();
    expect(opened[0]?.cancelled).toBe(true);
  });
});
