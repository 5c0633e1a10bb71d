// The one datastore conformance suite: every backend (memory, SQLite file, real etcd) must pass
// it unchanged. Owns: the behaviour the Datastore contract promises. Not: backend set-up (the
// *.test.ts files pass a factory) or the multi-process race (race.ts).
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConflictError,
  type Datastore,
  NotFoundError,
  PresentError,
  type WatchEvent,
  type WatchMessage,
} from "../../src/datastore/types.js";
import { hangLimit } from "../helpers/limits.js";

export interface Backend {
  store: Datastore;
  /** Opens a second, independent handle on the same store (another client or process view). */
  openAnother(): Promise<Datastore>;
  cleanup(): Promise<void>;
}

/** Collects what a watch delivers, and waits (bounded) for a condition on it. */
export class Collector {
  readonly messages: WatchMessage[] = [];
  readonly onMessage = (m: WatchMessage): void => {
    this.messages.push(m);
  };

  get events(): WatchEvent[] {
    return this.messages.flatMap((m) => (m.kind === "events" ? m.events : []));
  }

  async waitFor(cond: (c: Collector) => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + hangLimit(timeoutMs);
    while (!cond(this)) {
      if (Date.now() > deadline)
        throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}: ${this.describe()}`);
      await sleep(5);
    }
  }

  describe(): string {
    return JSON.stringify(
      this.messages.map((m) =>
        m.kind === "events"
          ? { kind: m.kind, revision: m.revision, events: m.events.map(eventSummary) }
          : m.kind === "error"
            ? { kind: m.kind, error: m.error.message }
            : m,
      ),
    ).slice(0, 2000);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function eventSummary(e: WatchEvent): string {
  return e.type === "put"
    ? `put ${e.kv.key}=${e.kv.value.slice(0, 20)}@${e.kv.modRevision}`
    : `delete ${e.key}@${e.modRevision}`;
}

function eventRev(e: WatchEvent): number {
  return e.type === "put" ? e.kv.modRevision : e.modRevision;
}

async function rejects<T extends Error>(p: Promise<unknown>, cls: new (...a: never[]) => T) {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(cls);
    return err as T;
  }
  throw new Error(`Expected a ${cls.name}, but the call succeeded`);
}

export function runConformance(name: string, open: () => Promise<Backend>): void {
  describe(`datastore conformance: ${name}`, () => {
    let b: Backend;
    let s: Datastore;
    /** A key prefix unique to each test, so tests never see each other's keys. */
    let n = 0;
    const pfx = () => `/ocelot/test/${randomBytes(3).toString("hex")}-${++n}/`;

    beforeAll(async () => {
      b = await open();
      s = b.store;
    });
    afterAll(async () => {
      await b?.cleanup();
    });

    it("create, get, update, delete follow etcd revisions and versions", async () => {
      const p = pfx();
      const r0 = await s.revision();
      const a = await s.create(`${p}a`, "one");
      expect(a).toMatchObject({ key: `${p}a`, value: "one", version: 1 });
      expect(a.modRevision).toBe(r0 + 1);
      expect(a.createRevision).toBe(a.modRevision);
      expect(await s.revision()).toBe(a.modRevision);
      expect(await s.get(`${p}a`)).toEqual(a);
      expect(await s.get(`${p}missing`)).toBeUndefined();

      const a2 = await s.update(`${p}a`, "two");
      expect(a2).toMatchObject({ value: "two", version: 2, createRevision: a.createRevision });
      expect(a2.modRevision).toBe(a.modRevision + 1);
      expect(await s.get(`${p}a`)).toEqual(a2);

      // Unconditional update of an absent key creates it.
      const c = await s.update(`${p}c`, "new");
      expect(c).toMatchObject({ version: 1, modRevision: a2.modRevision + 1 });
      expect(c.createRevision).toBe(c.modRevision);

      expect(await s.delete(`${p}a`)).toBe(true);
      expect(await s.revision()).toBe(c.modRevision + 1);
      expect(await s.get(`${p}a`)).toBeUndefined();
      // Deleting an absent key is not a write: the revision does not move.
      expect(await s.delete(`${p}a`)).toBe(false);
      expect(await s.revision()).toBe(c.modRevision + 1);

      // Re-creation starts a new generation: version 1, new createRevision.
      const a3 = await s.create(`${p}a`, "again");
      expect(a3).toMatchObject({ version: 1, value: "again" });
      expect(a3.createRevision).toBe(a3.modRevision);
      expect(a3.createRevision).toBeGreaterThan(a.createRevision);
    });

    it("create of an existing key throws ConflictError carrying the current value", async () => {
      const p = pfx();
      const kv = await s.create(`${p}k`, "first");
      const err = await rejects(s.create(`${p}k`, "second"), ConflictError);
      expect(err.key).toBe(`${p}k`);
      expect(err.current).toEqual(kv);
      expect((await s.get(`${p}k`))?.value).toBe("first");
    });

    it("update with an expected revision is a compare-and-swap", async () => {
      const p = pfx();
      const kv = await s.create(`${p}k`, "v1");
      const kv2 = await s.update(`${p}k`, "v2", kv.modRevision);
      expect(kv2).toMatchObject({ value: "v2", version: 2 });
      const rev = await s.revision();
      const err = await rejects(s.update(`${p}k`, "lost", kv.modRevision), ConflictError);
      expect(err.current).toEqual(kv2);
      expect(await s.revision()).toBe(rev);
      expect((await s.get(`${p}k`))?.value).toBe("v2");
      const nf = await rejects(s.update(`${p}absent`, "x", 1), NotFoundError);
      expect(nf.key).toBe(`${p}absent`);
      expect(await s.get(`${p}absent`)).toBeUndefined();
    });

    it("updateIfAbsent writes only at the revision and while the other keys are missing", async () => {
      const p = pfx();
      const kv = await s.create(`${p}block`, "v1");
      const kv2 = await s.updateIfAbsent(`${p}block`, "v2", kv.modRevision, [
        `${p}handle-a`,
        `${p}handle-b`,
      ]);
      expect(kv2).toMatchObject({ value: "v2", version: 2, createRevision: kv.createRevision });
      expect(kv2.modRevision).toBe(await s.revision());
      await s.create(`${p}handle-b`, "record");
      const rev = await s.revision();
      const present = await rejects(
        s.updateIfAbsent(`${p}block`, "lost", kv2.modRevision, [`${p}handle-a`, `${p}handle-b`]),
        PresentError,
      );
      expect(present.key).toBe(`${p}handle-b`);
      // The revision is compared first: a stale one is a ConflictError with the current value.
      const stale = await rejects(
        s.updateIfAbsent(`${p}block`, "lost", kv.modRevision, [`${p}handle-b`]),
        ConflictError,
      );
      expect(stale.current).toEqual(kv2);
      await rejects(s.updateIfAbsent(`${p}nothing`, "x", 1, []), NotFoundError);
      expect(await s.revision()).toBe(rev);
      expect((await s.get(`${p}block`))?.value).toBe("v2");
      await s.delete(`${p}handle-b`);
      const kv3 = await s.updateIfAbsent(`${p}block`, "v3", kv2.modRevision, [`${p}handle-b`]);
      expect(kv3).toMatchObject({ value: "v3", version: 3 });
    });

    it("delete with an expected revision refuses a stale revision", async () => {
      const p = pfx();
      const kv = await s.create(`${p}k`, "v1");
      const kv2 = await s.update(`${p}k`, "v2");
      const err = await rejects(s.delete(`${p}k`, kv.modRevision), ConflictError);
      expect(err.current).toEqual(kv2);
      expect(await s.get(`${p}k`)).toEqual(kv2);
      expect(await s.delete(`${p}k`, kv2.modRevision)).toBe(true);
      expect(await s.get(`${p}k`)).toBeUndefined();
      expect(await s.delete(`${p}k`, kv2.modRevision)).toBe(false);
    });

    it("list returns keys in byte order with the store revision", async () => {
      const p = pfx();
      for (const k of ["b", "a", "c/d", "c", "é", "~"]) await s.create(`${p}${k}`, k);
      const r = await s.revision();
      const l = await s.list(p);
      expect(l.revision).toBe(r);
      expect(l.items.map((kv) => kv.key.slice(p.length))).toEqual(["a", "b", "c", "c/d", "~", "é"]);
      expect(l.items.map((kv) => kv.value)).toEqual(["a", "b", "c", "c/d", "~", "é"]);
      expect((await s.list(`${p}zzz`)).items).toEqual([]);
    });

    it("listKeys is list without the values, at the same revision", async () => {
      const p = pfx();
      for (const k of ["b", "a", "c/d", "é", "~"]) await s.create(`${p}${k}`, `value of ${k}`);
      await s.update(`${p}a`, "again");
      // A key whose text begins like the prefix but is outside it ("…-7X" after "…-7/").
      await s.create(`${p.slice(0, -1)}X`, "outside");
      const l = await s.list(p);
      const k = await (s.listKeys as NonNullable<Datastore["listKeys"]>).call(s, p);
      expect(k.revision).toBe(l.revision);
      expect(k.items).toEqual(l.items.map(({ value: _, ...rest }) => rest));
      expect(k.items.map((x) => x.key.slice(p.length))).toEqual(["a", "b", "c/d", "~", "é"]);
      expect(k.items[0]?.version).toBe(2);
      expect(k.items.some((x) => "value" in x)).toBe(false);
      expect((await s.listKeys?.(`${p}zzz`))?.items).toEqual([]);
    });

    it("prefixes are isolated in list and watch", async () => {
      const p = pfx();
      const w = new Collector();
      const watch = s.watch(`${p}a/`, await s.revision(), w.onMessage);
      try {
        await s.create(`${p}a/1`, "in");
        await s.create(`${p}ab`, "out");
        await s.create(`${p}a`, "out");
        await s.create(`${p}b/1`, "out");
        await s.create(`${p}a/2`, "in");
        const l = await s.list(`${p}a/`);
        expect(l.items.map((kv) => kv.key)).toEqual([`${p}a/1`, `${p}a/2`]);
        // The empty prefix is every key.
        const all = (await s.list("")).items.map((kv) => kv.key);
        expect(all).toEqual(expect.arrayContaining([`${p}a/1`, `${p}ab`, `${p}a`, `${p}b/1`]));
        await w.waitFor((c) => c.events.length >= 2, "two events");
        await sleep(100);
        expect(w.events.map(eventSummary)).toEqual([
          expect.stringContaining(`put ${p}a/1=in`),
          expect.stringContaining(`put ${p}a/2=in`),
        ]);
      } finally {
        await watch.cancel();
      }
    });

    it("a watch from a list revision misses nothing and sees nothing twice", async () => {
      const p = pfx();
      await s.create(`${p}before`, "0");
      const l = await s.list(p);
      const w = new Collector();
      const watch = s.watch(p, l.revision, w.onMessage);
      try {
        const x = await s.create(`${p}x`, "1");
        const x2 = await s.update(`${p}x`, "2", x.modRevision);
        await s.delete(`${p}before`);
        await w.waitFor((c) => c.events.length >= 3, "three events");
        const ev = w.events;
        expect(ev.map((e) => e.type)).toEqual(["put", "put", "delete"]);
        expect(ev[0]).toMatchObject({ type: "put", kv: x });
        expect(ev[1]).toMatchObject({ type: "put", kv: x2, prev: x });
        expect(ev[2]).toMatchObject({
          type: "delete",
          key: `${p}before`,
          prev: { value: "0" },
        });
        expect(eventRev(ev[2] as WatchEvent)).toBe(x2.modRevision + 1);
        for (const m of w.messages) {
          expect(m.kind).toBe("events");
          if (m.kind === "events")
            expect(m.revision).toBeGreaterThanOrEqual(eventRev(m.events.at(-1) as WatchEvent));
        }
      } finally {
        await watch.cancel();
      }
    });

    it("watch delivers many writes in revision order, including from other clients", async () => {
      const p = pfx();
      const other = await b.openAnother();
      const w = new Collector();
      const watch = s.watch(p, await s.revision(), w.onMessage);
      try {
        const writes: Promise<unknown>[] = [];
        for (let i = 0; i < 60; i++) {
          const client = i % 2 === 0 ? s : other;
          writes.push(client.update(`${p}k${i % 7}`, `v${i}`));
        }
        await Promise.all(writes);
        for (let i = 0; i < 7; i += 2) await other.delete(`${p}k${i}`);
        await w.waitFor((c) => c.events.length >= 64, "64 events", 10_000);
        const revs = w.events.map(eventRev);
        for (let i = 1; i < revs.length; i++)
          expect(revs[i] as number).toBeGreaterThan(revs[i - 1] as number);
        // The values seen per key, in order, end with the stored state.
        const final = new Map<string, string | undefined>();
        for (const e of w.events)
          final.set(e.type === "put" ? e.kv.key : e.key, e.type === "put" ? e.kv.value : undefined);
        const listed = await s.list(p);
        expect(Object.fromEntries(listed.items.map((kv) => [kv.key, kv.value]))).toEqual(
          Object.fromEntries([...final].filter(([, v]) => v !== undefined)),
        );
        await sleep(100);
        expect(w.events.length).toBe(64);
      } finally {
        await watch.cancel();
        await other.close();
      }
    });

    it("a watch resumes from a past revision and replays history after it", async () => {
      const p = pfx();
      await s.create(`${p}a`, "1");
      const mid = await s.update(`${p}a`, "2");
      await s.create(`${p}b`, "3");
      await s.delete(`${p}a`);
      const w = new Collector();
      const watch = s.watch(p, mid.modRevision, w.onMessage);
      try {
        await w.waitFor((c) => c.events.length >= 2, "two replayed events");
        await s.create(`${p}c`, "4");
        await w.waitFor((c) => c.events.length >= 3, "a live event after replay");
        await sleep(50);
        expect(w.events.map((e) => e.type + (e.type === "put" ? e.kv.key : e.key))).toEqual([
          `put${p}b`,
          `delete${p}a`,
          `put${p}c`,
        ]);
      } finally {
        await watch.cancel();
      }
      // From just before the first write: the whole history of the prefix.
      const w2 = new Collector();
      const first = (await s.list(p)).items.length; // b, c
      expect(first).toBe(2);
      const watch2 = s.watch(p, mid.modRevision - 2, w2.onMessage);
      try {
        await w2.waitFor((c) => c.events.length >= 5, "five replayed events");
        expect(w2.events.map((e) => e.type)).toEqual(["put", "put", "put", "delete", "put"]);
      } finally {
        await watch2.cancel();
      }
    });

    it("after compaction, a watch from an older revision gets a resync signal", async () => {
      const p = pfx();
      const a = await s.create(`${p}a`, "1");
      await s.update(`${p}a`, "2");
      await s.update(`${p}a`, "3");
      const rev = await s.revision();
      expect(s.compact).toBeTypeOf("function");
      await s.compact?.(rev);
      await s.compact?.(rev); // compacting again is harmless
      const w = new Collector();
      const watch = s.watch(p, a.modRevision - 1, w.onMessage);
      try {
        await w.waitFor((c) => c.messages.length >= 1, "a resync");
        expect(w.messages[0]).toEqual({ kind: "resync", compactRevision: rev });
      } finally {
        await watch.cancel();
      }
      // The boundary, as etcd has it: compact(rev) keeps revision rev itself, so a watch that
      // needs rev onwards (fromRevision = rev - 1) still works, and one needing rev - 1 does not.
      const edge = new Collector();
      const edgeWatch = s.watch(p, rev - 1, edge.onMessage);
      const gone = new Collector();
      const goneWatch = s.watch(p, rev - 2, gone.onMessage);
      try {
        await edge.waitFor((c) => c.messages.length >= 1, "the event at the compaction revision");
        await gone.waitFor((c) => c.messages.length >= 1, "a resync just below it");
        expect(edge.messages[0]).toMatchObject({
          kind: "events",
          events: [{ type: "put", kv: { value: "3", modRevision: rev } }],
        });
        expect(gone.messages[0]).toEqual({ kind: "resync", compactRevision: rev });
      } finally {
        await edgeWatch.cancel();
        await goneWatch.cancel();
      }
      // The documented recovery: list again, then watch from the list revision.
      const l = await s.list(p);
      expect(l.items.map((kv) => kv.value)).toEqual(["3"]);
      const w2 = new Collector();
      const watch2 = s.watch(p, l.revision, w2.onMessage);
      try {
        await s.update(`${p}a`, "4");
        await w2.waitFor((c) => c.events.length >= 1, "an event after resync");
        expect(w2.messages.every((m) => m.kind === "events")).toBe(true);
        expect(w2.events[0]).toMatchObject({ type: "put", kv: { value: "4" } });
      } finally {
        await watch2.cancel();
      }
    });

    it("stores and watches large values (1 MiB) and any Unicode intact", async () => {
      const p = pfx();
      const big = randomBytes(768 * 1024).toString("base64"); // 1 MiB of text
      expect(big.length).toBe(1024 * 1024);
      const w = new Collector();
      const watch = s.watch(p, await s.revision(), w.onMessage);
      try {
        const kv = await s.create(`${p}big`, big);
        expect(kv.value.length).toBe(big.length);
        expect((await s.get(`${p}big`))?.value).toBe(big);
        const odd = 'ünïcödé ✓ 𝔘 \u0000 nul \n"quotes" \'';
        await s.create(`${p}ödd`, odd);
        expect((await s.get(`${p}ödd`))?.value).toBe(odd);
        await w.waitFor((c) => c.events.length >= 2, "two events", 10_000);
        const e = w.events[0] as WatchEvent;
        expect(e.type === "put" && e.kv.value === big).toBe(true);
        expect((await s.list(p)).items.map((x) => x.value.length)).toEqual([
          big.length,
          odd.length,
        ]);
      } finally {
        await watch.cancel();
      }
    });

    it("a cancelled watch delivers nothing more", async () => {
      const p = pfx();
      const w = new Collector();
      const watch = s.watch(p, await s.revision(), w.onMessage);
      await s.create(`${p}a`, "1");
      await w.waitFor((c) => c.events.length >= 1, "one event");
      await watch.cancel();
      await s.create(`${p}b`, "2");
      await sleep(150);
      expect(w.events.length).toBe(1);
    });

    it("close stops watches and refuses further calls", async () => {
      const p = pfx();
      const other = await b.openAnother();
      const w = new Collector();
      other.watch(p, await other.revision(), w.onMessage);
      await s.create(`${p}a`, "1");
      await w.waitFor((c) => c.events.length >= 1, "one event");
      await other.close();
      await other.close(); // idempotent
      await s.create(`${p}b`, "2");
      await sleep(150);
      expect(w.events.length).toBe(1);
      await expect(other.get(`${p}a`)).rejects.toThrow(/closed/i);
      await expect(other.create(`${p}c`, "x")).rejects.toThrow(/closed/i);
      expect((await s.get(`${p}a`))?.value).toBe("1");
    });
  });
}
