// One gRPC Watch stream per etcd client for all its watches (src/datastore/etcd_watch_mux.ts),
// against real etcd 3.4, read from the server's own /metrics: 18 watches of one client are one
// watch stream and 18 watchers there, each write reaches only its own watch, cancelling some
// leaves the stream to the others, the last cancel closes it. On a 3-member cluster, the member
// that holds the stream is SIGKILLed: every watch reports the loss, resumes on a live member
// from its revision (no resync) and sees every write once, in order, again on one stream.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { watchGauges } from "../../bench/watch_fanout.js";
import { EtcdDatastore } from "../../src/datastore/etcd.js";
import {
  type EtcdCluster,
  type EtcdServer,
  etcdUnavailableReason,
  startEtcd,
  startEtcdCluster,
} from "../helpers/etcd.js";
import { HANG_MS } from "../helpers/limits.js";
import { skipWithReason } from "../helpers/netns.js";
import { Collector, sleep } from "./conformance.js";

const skip = skipWithReason("etcd watch multiplexing", etcdUnavailableReason());

/** Polls the gauges until cond holds (bounded), and returns the last reading. */
async function gaugesWhen(
  server: Pick<EtcdServer, "endpoint">,
  cond: (g: { streams: number; watchers: number }) => boolean,
): Promise<{ streams: number; watchers: number }> {
  const deadline = Date.now() + HANG_MS;
  let g = await watchGauges(server as EtcdServer);
  while (!cond(g) && Date.now() < deadline) {
    await sleep(100);
    g = await watchGauges(server as EtcdServer);
  }
  return g;
}

describe.skipIf(skip)("etcd watches of one client share one gRPC stream", () => {
  let server: EtcdServer;
  beforeAll(async () => {
    server = await startEtcd();
  }, HANG_MS);
  afterAll(async () => {
    await server?.stop();
  }, HANG_MS);

  it(
    "18 watches: one stream and 18 watchers on the server, each write to its own watch",
    async () => {
      const s = await EtcdDatastore.connect({ endpoints: [server.endpoint] });
      const base = await watchGauges(server);
      const p = (i: number) => `/ocelot/test/mux/p${String(i).padStart(2, "0")}/`;
      const cs = Array.from({ length: 18 }, () => new Collector());
      const rev = await s.revision();
      const ws = cs.map((c, i) => s.watch(p(i), rev, c.onMessage));
      try {
        for (let i = 0; i < 18; i++) await s.create(`${p(i)}k`, String(i));
        for (const [i, c] of cs.entries())
          await c.waitFor((x) => x.events.length >= 1, `the write under ${p(i)}`, 30_000);
        const g = await gaugesWhen(server, (x) => x.watchers >= base.watchers + 18);
        expect(g).toEqual({ streams: base.streams + 1, watchers: base.watchers + 18 });
        for (const [i, c] of cs.entries())
          expect(c.events.map((e) => (e.type === "put" ? e.kv.key : e.key))).toEqual([`${p(i)}k`]);
        // Half cancelled: the other half keep the stream and see their writes.
        for (const w of ws.slice(0, 9)) await w.cancel();
        const half = await gaugesWhen(server, (x) => x.watchers <= base.watchers + 9);
        expect(half).toEqual({ streams: base.streams + 1, watchers: base.watchers + 9 });
        for (let i = 0; i < 18; i++) await s.update(`${p(i)}k`, `${i}b`);
        for (const c of cs.slice(9)) await c.waitFor((x) => x.events.length >= 2, "a second write");
        await sleep(200);
        expect(cs.slice(0, 9).map((c) => c.events.length)).toEqual(Array(9).fill(1));
        // The last cancel closes the stream.
        for (const w of ws.slice(9)) await w.cancel();
        // etcd drops the stream's gauge and then, as it closes the stream's watchers one by one,
        // theirs: wait for both.
        expect(
          await gaugesWhen(server, (x) => x.streams <= base.streams && x.watchers <= base.watchers),
        ).toEqual(base);
      } finally {
        for (const w of ws) await w.cancel();
        await s.close();
      }
    },
    HANG_MS,
  );
});

describe.skipIf(skip)("etcd watches on one stream across the loss of its member", () => {
  let cluster: EtcdCluster;
  beforeAll(async () => {
    cluster = await startEtcdCluster(3);
  }, HANG_MS);
  afterAll(async () => {
    await cluster?.stop();
  }, HANG_MS);

  it(
    "the member holding the stream killed: every watch resumes on a live one, nothing lost or repeated, no resync",
    async () => {
      const endpoints = cluster.members.map((m) => m.endpoint);
      const s = await EtcdDatastore.connect({
        endpoints,
        backoffInitialMs: 50,
        backoffMaxMs: 500,
        requestTimeoutMs: 3000,
        maxAttempts: 40,
      });
      const writer = await EtcdDatastore.connect({
        endpoints,
        requestTimeoutMs: 3000,
        maxAttempts: 40,
      });
      const W = 6;
      const p = (i: number) => `/ocelot/test/muxc/p${i}/`;
      const cs = Array.from({ length: W }, () => new Collector());
      const rev = await s.revision();
      const ws = cs.map((c, i) => s.watch(p(i), rev, c.onMessage));
      const written: string[][] = cs.map(() => []);
      const write = async (round: number) => {
        for (let i = 0; i < W; i++) {
          await writer.update(`${p(i)}k`, `v${round}`);
          written[i]?.push(`v${round}`);
        }
      };
      try {
        await write(0);
        for (const c of cs) await c.waitFor((x) => x.events.length >= 1, "the first write", 30_000);
        // The one member that holds the client's stream, and its W watchers.
        const held = async () => {
          const out: Array<{ i: number; streams: number; watchers: number }> = [];
          for (const [i, m] of cluster.members.entries())
            if (m.alive) out.push({ i, ...(await watchGauges(m as unknown as EtcdServer)) });
          return out.filter((g) => g.streams > 0);
        };
        const before = await held();
        expect(before).toHaveLength(1);
        expect(before[0]).toMatchObject({ streams: 1, watchers: W });
        const victim = before[0]?.i as number;
        await cluster.kill(victim);
        for (let r = 1; r <= 5; r++) await write(r);
        for (const [i, c] of cs.entries())
          await c.waitFor((x) => x.events.length >= 6, `all writes under ${p(i)}`, 60_000);
        for (const [i, c] of cs.entries()) {
          expect(c.events.map((e) => (e.type === "put" ? e.kv.value : "deleted"))).toEqual(
            written[i],
          );
          expect(c.messages.some((m) => m.kind === "error")).toBe(true);
          expect(c.messages.some((m) => m.kind === "resync")).toBe(false);
        }
        const after = await held();
        expect(after).toHaveLength(1);
        expect(after[0]).toMatchObject({ streams: 1, watchers: W });
        expect(after[0]?.i).not.toBe(victim);
      } finally {
        for (const w of ws) await w.cancel();
        await s.close();
        await writer.close();
      }
    },
    3 * HANG_MS,
  );
});
