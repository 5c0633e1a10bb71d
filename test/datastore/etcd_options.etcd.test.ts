// etcd connection options against real etcd 3.4 servers: TLS with client certificates,
// username/password authentication, and a watch that survives an etcd restart.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EtcdDatastore } from "../../src/datastore/etcd.js";
import { openDatastore } from "../../src/datastore/open.js";
import { UnavailableError } from "../../src/datastore/types.js";
import {
  type EtcdServer,
  type EtcdTls,
  etcdUnavailableReason,
  makeTestPki,
  startEtcd,
} from "../helpers/etcd.js";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { skipWithReason } from "../helpers/netns.js";
import { Collector, sleep } from "./conformance.js";

const skip = skipWithReason("etcd options", etcdUnavailableReason());

describe.skipIf(skip)("etcd over TLS with client certificates", () => {
  let dir: string;
  let pki: EtcdTls | string;
  let server: EtcdServer | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-pki-"));
    pki = makeTestPki(dir);
    if (typeof pki === "string") console.warn(`SKIP etcd TLS tests: ${pki}`);
    else server = await startEtcd({ tls: pki });
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("connects with CA, client cert and key, and refuses a client without a certificate", async (ctx) => {
    if (typeof pki === "string" || !server) return ctx.skip(`no PKI: ${pki}`);
    const s = await EtcdDatastore.connect({
      endpoints: [server.endpoint],
      tls: true,
      caFile: pki.ca,
      certFile: pki.clientCert,
      keyFile: pki.clientKey,
    });
    expect(s.url).toBe(server.url);
    const kv = await s.create("/ocelot/test/tls", "secure");
    expect((await s.get("/ocelot/test/tls"))?.modRevision).toBe(kv.modRevision);
    await s.close();

    const noCert = await EtcdDatastore.connect({
      endpoints: [server.endpoint],
      caFile: pki.ca,
      dialTimeoutMs: 1500,
      maxAttempts: 1,
    }).catch((e: unknown) => e);
    expect(noCert).toBeInstanceOf(UnavailableError);
    const plain = await EtcdDatastore.connect({
      endpoints: [server.endpoint],
      dialTimeoutMs: 1500,
      maxAttempts: 1,
    }).catch((e: unknown) => e);
    expect(plain).toBeInstanceOf(UnavailableError);
  });

  it("refuses a server whose certificate another CA signed, with an error that says so", async (ctx) => {
    if (typeof pki === "string" || !server) return ctx.skip(`no PKI: ${pki}`);
    // A second, unrelated CA (with its own client certificate): the server's is not its.
    mkdirSync(join(dir, "other"), { recursive: true });
    const other = makeTestPki(join(dir, "other"));
    if (typeof other === "string") return ctx.skip(`no PKI: ${other}`);
    const err = await EtcdDatastore.connect({
      endpoints: [server.endpoint],
      tls: true,
      caFile: other.ca,
      certFile: other.clientCert,
      keyFile: other.clientKey,
      dialTimeoutMs: 1500,
      maxAttempts: 1,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    const msg = (err as Error).message;
    expect(msg).toContain(server.endpoint);
    expect(msg).toMatch(/certificate|self[- ]signed|verify/i);
    expect(msg).not.toContain("\n");
  });

  it("takes TLS files from OCELOT_ETCD_* with an etcds:// URL", async (ctx) => {
    if (typeof pki === "string" || !server) return ctx.skip(`no PKI: ${pki}`);
    const s = await openDatastore(server.url, {
      env: {
        OCELOT_ETCD_CA: pki.ca,
        OCELOT_ETCD_CERT: pki.clientCert,
        OCELOT_ETCD_KEY: pki.clientKey,
      },
    });
    expect((await s.get("/ocelot/test/tls"))?.value).toBe("secure");
    await s.close();
  });
});

const noEtcdctl =
  runSync("etcdctl", ["version"], { encoding: "utf8" }).status === 0
    ? undefined
    : "etcdctl not found (apt-get install etcd-client)";

describe.skipIf(skip || skipWithReason("etcd auth", noEtcdctl))(
  "etcd with username/password authentication",
  () => {
    let server: EtcdServer;
    const ctl = (...args: string[]) => {
      const r = runSync("etcdctl", ["--endpoints", server.endpoint, ...args], {
        encoding: "utf8",
        env: { ...process.env, ETCDCTL_API: "3" },
        timeout: HANG_MS,
      });
      if (r.status !== 0) throw new Error(`etcdctl ${args.join(" ")}: ${r.stderr}`);
      return r.stdout;
    };
    beforeAll(async () => {
      server = await startEtcd();
      ctl("user", "add", "root:rootpw");
      ctl("user", "grant-role", "root", "root");
      ctl("user", "add", "ocelot:s3cret");
      ctl("role", "add", "ocelot");
      ctl("role", "grant-permission", "ocelot", "--prefix=true", "readwrite", "/ocelot/");
      ctl("user", "grant-role", "ocelot", "ocelot");
      ctl("auth", "enable");
    });
    afterAll(async () => {
      await server?.stop();
    });

    it("works with the right password and maps a wrong one to UnavailableError", async () => {
      const s = await openDatastore(server.url, {
        env: { OCELOT_ETCD_USERNAME: "ocelot", OCELOT_ETCD_PASSWORD: "s3cret" },
      });
      await s.create("/ocelot/test/auth", "ok");
      expect((await s.list("/ocelot/test/")).items.map((kv) => kv.value)).toEqual(["ok"]);
      const w = new Collector();
      const watch = s.watch("/ocelot/test/", await s.revision(), w.onMessage);
      await s.update("/ocelot/test/auth", "ok2");
      await w.waitFor((c) => c.events.length >= 1, "an event through an authenticated watch");
      await watch.cancel();
      await s.close();

      const bad = await openDatastore(server.url, {
        etcd: {
          username: "ocelot",
          password: "wr0ng-Pa55-q7",
          dialTimeoutMs: 2000,
          maxAttempts: 1,
        },
      }).catch((e: unknown) => e);
      expect(bad).toBeInstanceOf(UnavailableError);
      expect((bad as Error).message).toMatch(/auth/i);
      // The password is never part of what is said about it.
      expect(String((bad as Error).stack)).not.toContain("wr0ng-Pa55-q7");
    });
  },
);

describe.skipIf(skip)("etcd watch across a restart", () => {
  let server: EtcdServer;
  beforeAll(async () => {
    server = await startEtcd();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("reports the loss, reconnects with backoff and resumes without gaps or repeats", async () => {
    const s = await EtcdDatastore.connect({
      endpoints: [server.endpoint],
      backoffInitialMs: 50,
      backoffMaxMs: 500,
      requestTimeoutMs: 3000,
      maxAttempts: 40,
    });
    const p = "/ocelot/test/restart/";
    const w = new Collector();
    const watch = s.watch(p, await s.revision(), w.onMessage);
    try {
      await s.create(`${p}a`, "1");
      await w.waitFor((c) => c.events.length >= 1, "the first event");
      // A write issued while etcd is down is retried (it never left the client) and lands.
      const restarting = server.restart(500);
      await sleep(200);
      const during = s.update(`${p}a`, "2");
      await restarting;
      expect((await during).value).toBe("2");
      // A second client writes while the first one's watch may still be reconnecting.
      const other = await EtcdDatastore.connect({ endpoints: [server.endpoint] });
      await other.create(`${p}b`, "3");
      await other.close();
      await w.waitFor((c) => c.events.length >= 3, "events after the restart", 20_000);
      expect(w.messages.some((m) => m.kind === "error")).toBe(true);
      expect(w.events.map((e) => (e.type === "put" ? `${e.kv.key}=${e.kv.value}` : e.key))).toEqual(
        [`${p}a=1`, `${p}a=2`, `${p}b=3`],
      );
      // Unary calls work again on the same client.
      expect((await s.get(`${p}b`))?.value).toBe("3");
    } finally {
      await watch.cancel();
      await s.close();
    }
  });
});
