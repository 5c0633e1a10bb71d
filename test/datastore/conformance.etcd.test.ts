// The conformance suite against a real etcd 3.4 started on loopback for this file, plus the
// etcd-only behaviour: error mapping when etcd is gone, and a watch that survives a restart.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EtcdDatastore } from "../../src/datastore/etcd.js";
import { openDatastore } from "../../src/datastore/open.js";
import { UnavailableError } from "../../src/datastore/types.js";
import { type EtcdServer, etcdUnavailableReason, freePort, startEtcd } from "../helpers/etcd.js";
import { skipWithReason } from "../helpers/netns.js";
import { Collector, runConformance } from "./conformance.js";
import { runCasRace } from "./race.js";

const skip = skipWithReason("etcd datastore", etcdUnavailableReason());

describe.skipIf(skip)("etcd backend", () => {
  let server: EtcdServer;
  const clients: EtcdDatastore[] = [];
  beforeAll(async () => {
    server = await startEtcd();
  });
  afterAll(async () => {
    for (const c of clients) await c.close();
    await server?.stop();
  });

  runConformance("etcd", async () => {
    const open = async () => {
      const c = await EtcdDatastore.connect({ endpoints: [server.endpoint] });
      clients.push(c);
      return c;
    };
    const store = await open();
    return { store, openAnother: open, cleanup: async () => {} };
  });

  it("is selected by openDatastore(etcd://...)", async () => {
    const s = await openDatastore(server.url);
    expect(s).toBeInstanceOf(EtcdDatastore);
    expect(s.url).toBe(server.url);
    const kv = await s.create("/ocelot/test/open", "v");
    expect((await s.get("/ocelot/test/open"))?.modRevision).toBe(kv.modRevision);
    await s.close();
  });

  it("8 processes x 200 CAS increments of one counter end at exactly 1600, all watched in order", async () => {
    const r = await runCasRace(server.url, 8, 200);
    console.log(`etcd race: 1600 increments in ${r.ms} ms, ${r.conflicts} conflicts retried`);
    expect(r.final).toBe(1600);
  });

  it("works through an endpoint list in which one endpoint is dead", async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const s = await EtcdDatastore.connect({ endpoints: [dead, server.endpoint] });
    try {
      expect(s.url).toBe(`etcd://${dead},${server.endpoint}`);
      const w = new Collector();
      const watch = s.watch("/ocelot/test/failover/", await s.revision(), w.onMessage);
      for (let i = 0; i < 30; i++) {
        const kv = await s.create(`/ocelot/test/failover/${i}`, String(i));
        expect((await s.get(kv.key))?.value).toBe(String(i));
      }
      await w.waitFor((c) => c.events.length >= 30, "30 events through the live endpoint");
      await watch.cancel();
    } finally {
      await s.close();
    }
  });

  it("reports an unreachable etcd as UnavailableError quoting the address", async () => {
    const err = await EtcdDatastore.connect({
      endpoints: ["127.0.0.1:1"],
      dialTimeoutMs: 500,
      maxAttempts: 1,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain('"etcd://127.0.0.1:1"');
  });
});
