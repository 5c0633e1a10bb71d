// openDatastore(): URL parsing, defaults from the environment, backend selection, CLI options.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, describe, expect, it } from "vitest";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import {
  addDatastoreOptions,
  DEFAULT_DATASTORE_URL,
  datastoreUrl,
  etcdOptionsFromEnv,
  openDatastore,
  openDatastoreFromCli,
  parseDatastoreUrl,
} from "../../src/datastore/open.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";

const tmp = mkdtempSync(join(tmpdir(), "ocelot-open-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("parseDatastoreUrl()", () => {
  it("parses etcd endpoint lists, with the default port and TLS for etcds", () => {
    expect(parseDatastoreUrl("etcd://127.0.0.1:2379,10.0.0.2:32379")).toEqual({
      kind: "etcd",
      endpoints: ["127.0.0.1:2379", "10.0.0.2:32379"],
      tls: false,
    });
    expect(parseDatastoreUrl("etcds://etcd-a,[::1]:2379/")).toEqual({
      kind: "etcd",
      endpoints: ["etcd-a:2379", "[::1]:2379"],
      tls: true,
    });
  });

  it("parses file paths in both forms and resolves relative ones", () => {
    expect(parseDatastoreUrl("file:/var/lib/ocelot/store.db")).toEqual({
      kind: "file",
      path: "/var/lib/ocelot/store.db",
    });
    expect(parseDatastoreUrl("file:///tmp/x.db")).toEqual({ kind: "file", path: "/tmp/x.db" });
    expect(parseDatastoreUrl("file:rel/x.db")).toEqual({
      kind: "file",
      path: join(process.cwd(), "rel/x.db"),
    });
  });

  it("parses memory: with and without a name", () => {
    expect(parseDatastoreUrl("memory:")).toEqual({ kind: "memory", name: "" });
    expect(parseDatastoreUrl("memory:shared")).toEqual({ kind: "memory", name: "shared" });
  });

  it.each([
    ["", /no scheme/],
    ["localhost:2379x", /unknown scheme "localhost:"/],
    ["http://127.0.0.1:2379", /unknown scheme "http:"/],
    ["etcd:127.0.0.1", /start with etcd:\/\//],
    ["etcd://", /no endpoints/],
    ["etcd://a:1,,b:2", /endpoint "" is not host\[:port\]/],
    ["etcd://a:99999", /port 99999 is out of range/],
    ["etcd://user:pw@a:1", /credentials go in OCELOT_ETCD_USERNAME/],
    ["etcd://a:1/prefix", /path or query/],
    ["file:", /no file path/],
    ["file:/var/lib/ocelot/", /names a directory/],
  ])("refuses %j with an error quoting it (credentials as ***@)", (url, why) => {
    expect(() => parseDatastoreUrl(url)).toThrow(why);
    expect(() => parseDatastoreUrl(url)).toThrow(
      `Bad datastore URL "${url.replace("user:pw@", "***@")}"`,
    );
  });
});

describe("credentials in a datastore URL", () => {
  it("are refused without being repeated: the error shows ***@ in their place", () => {
    for (const url of [
      "etcd://ocelot:s3cr3t-pw@10.0.0.1:2379",
      "etcds://10.0.0.1:2379,ocelot:s3cr3t-pw@10.0.0.2:2379",
      "etcd://s3cr3t-pw@10.0.0.1",
    ]) {
      const err = (() => {
        try {
          parseDatastoreUrl(url);
        } catch (e) {
          return e as Error;
        }
      })();
      expect(err?.message).toContain("credentials go in OCELOT_ETCD_USERNAME/PASSWORD");
      expect(err?.message).toContain("***@");
      expect(err?.message).not.toContain("s3cr3t-pw");
    }
  });
});

describe("datastoreUrl() and etcdOptionsFromEnv()", () => {
  it("prefers the flag, then OCELOT_DATASTORE, then the embedded default", () => {
    expect(datastoreUrl("memory:", { OCELOT_DATASTORE: "file:/x.db" })).toBe("memory:");
    expect(datastoreUrl(undefined, { OCELOT_DATASTORE: "file:/x.db" })).toBe("file:/x.db");
    expect(datastoreUrl(undefined, {})).toBe(DEFAULT_DATASTORE_URL);
    expect(DEFAULT_DATASTORE_URL).toBe("file:/var/lib/ocelot/store.db");
  });

  it("reads TLS and auth from OCELOT_ETCD_*, explicit options winning", () => {
    const env = {
      OCELOT_ETCD_CA: "/env/ca.pem",
      OCELOT_ETCD_CERT: "/env/cert.pem",
      OCELOT_ETCD_KEY: "/env/key.pem",
      OCELOT_ETCD_USERNAME: "root",
      OCELOT_ETCD_PASSWORD: "pw",
      OCELOT_ETCD_REQUEST_TIMEOUT_MS: "2500",
    };
    const o = etcdOptionsFromEnv(["a:1"], false, { caFile: "/flag/ca.pem" }, env);
    expect(o).toMatchObject({
      endpoints: ["a:1"],
      caFile: "/flag/ca.pem",
      certFile: "/env/cert.pem",
      keyFile: "/env/key.pem",
      username: "root",
      password: "pw",
      requestTimeoutMs: 2500,
    });
    expect(() =>
      etcdOptionsFromEnv(["a:1"], false, {}, { OCELOT_ETCD_DIAL_TIMEOUT_MS: "soon" }),
    ).toThrow(/OCELOT_ETCD_DIAL_TIMEOUT_MS must be a positive number of milliseconds, got "soon"/);
  });
});

describe("openDatastore()", () => {
  it("opens memory: and file: backends, creating the file's directory", async () => {
    const m = await openDatastore("memory:");
    expect(m).toBeInstanceOf(MemoryDatastore);
    await m.close();
    const path = join(tmp, "deep", "dir", "store.db");
    const f = await openDatastore(`file:${path}`);
    expect(f).toBeInstanceOf(SqliteDatastore);
    expect(f.url).toBe(`file:${path}`);
    await f.create("/k", "v");
    await f.close();
    expect(existsSync(path)).toBe(true);
  });

  it("uses OCELOT_DATASTORE when no URL is given", async () => {
    const path = join(tmp, "env.db");
    const s = await openDatastore(undefined, { env: { OCELOT_DATASTORE: `file:${path}` } });
    expect(s.url).toBe(`file:${path}`);
    await s.close();
  });

  it("refuses a bad URL before touching anything", async () => {
    await expect(openDatastore("mysql://db")).rejects.toThrow(
      'Bad datastore URL "mysql://db": unknown scheme "mysql:"',
    );
  });

  it("fails on an unreachable etcd with an error naming it", async () => {
    await expect(
      openDatastore("etcd://127.0.0.1:1", { etcd: { dialTimeoutMs: 300, maxAttempts: 1 } }),
    ).rejects.toThrow(/Cannot reach etcd at "etcd:\/\/127.0.0.1:1"/);
  });
});

describe("addDatastoreOptions()", () => {
  it("adds --datastore and the etcd flags, and openDatastoreFromCli() uses them", async () => {
    let seen: Record<string, string> = {};
    const pwFile = join(tmp, "pw");
    writeFileSync(pwFile, "secret\n");
    const program = new Command().exitOverride();
    addDatastoreOptions(program.command("x")).action((o) => {
      seen = o;
    });
    await program.parseAsync(
      [
        "x",
        "--datastore",
        `file:${join(tmp, "cli.db")}`,
        "--etcd-ca",
        "/ca.pem",
        "--etcd-username",
        "u",
        "--etcd-password-file",
        pwFile,
      ],
      { from: "user" },
    );
    expect(seen).toMatchObject({
      datastore: `file:${join(tmp, "cli.db")}`,
      etcdCa: "/ca.pem",
      etcdUsername: "u",
      etcdPasswordFile: pwFile,
    });
    const s = await openDatastoreFromCli(seen);
    expect(s.url).toBe(`file:${join(tmp, "cli.db")}`);
    await s.close();
    await expect(
      openDatastoreFromCli({ datastore: "memory:", etcdPasswordFile: join(tmp, "missing") }),
    ).rejects.toThrow(/Cannot read the etcd password file ".*missing"/);
  });
});
