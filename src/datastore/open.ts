// Picks and opens a datastore backend from a URL (`--datastore` / OCELOT_DATASTORE), and the one
// shared definition of the CLI's datastore options. Owns: URL syntax, defaults, env variables.
// Not: the backends themselves (memory.ts, sqlite.ts, etcd.ts; etcd is loaded only when used).
import { isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type DatastoreCliOptions, DEFAULT_DATASTORE_URL } from "./cli_options.js";
import type { EtcdOptions } from "./etcd.js";
import { MemoryDatastore, type MemoryOptions } from "./memory.js";
import { SqliteDatastore, type SqliteOptions } from "./sqlite.js";
import type { Datastore } from "./types.js";

export {
  addDatastoreOptions,
  DATASTORE_OPTION_NAMES,
  type DatastoreCliOptions,
  DEFAULT_DATASTORE_URL,
} from "./cli_options.js";

const ETCD_DEFAULT_PORT = 2379;

export interface OpenOptions {
  /** TLS, auth and timeouts for etcd; unset fields fall back to OCELOT_ETCD_* variables. */
  etcd?: Partial<EtcdOptions>;
  sqlite?: SqliteOptions;
  memory?: MemoryOptions;
  /** Environment to read defaults from (tests pass their own). Default process.env. */
  env?: NodeJS.ProcessEnv;
}

/** A parsed datastore URL. */
export type DatastoreTarget =
  | { kind: "memory"; name: string }
  | { kind: "file"; path: string }
  | { kind: "etcd"; endpoints: string[]; tls: boolean };

/** Parses a datastore URL; throws a RangeError quoting it when it is not one we understand. */
export function parseDatastoreUrl(url: string): DatastoreTarget {
  const bad = (why: string) =>
    new RangeError(
      `Bad datastore URL "${redactUrl(url)}": ${why} (expected etcd://host:port[,host:port], etcds://..., file:/path/to/store.db or memory:)`,
    );
  const m = /^([a-z][a-z0-9+.-]*):(.*)$/i.exec(url.trim());
  if (!m) throw bad("no scheme");
  const scheme = (m[1] as string).toLowerCase();
  const rest = m[2] as string;
  switch (scheme) {
    case "memory":
      if (rest.startsWith("//")) throw bad("memory takes a bare name, as memory:NAME");
      return { kind: "memory", name: rest };
    case "file": {
      let path: string;
      if (rest.startsWith("//")) {
        try {
          path = fileURLToPath(url.trim());
        } catch (err) {
          throw bad((err as Error).message);
        }
      } else path = rest;
      if (path === "") throw bad("no file path");
      if (path.endsWith("/")) throw bad("the path names a directory, not a file");
      return { kind: "file", path: isAbsolute(path) ? path : resolve(path) };
    }
    case "etcd":
    case "etcds": {
      if (!rest.startsWith("//")) throw bad("etcd URLs start with etcd://");
      const hosts = rest.slice(2).replace(/\/+$/, "");
      if (hosts === "") throw bad("no endpoints");
      if (hosts.includes("@"))
        throw bad("credentials go in OCELOT_ETCD_USERNAME/PASSWORD, not the URL");
      if (hosts.includes("/") || hosts.includes("?")) throw bad("a path or query is not allowed");
      const endpoints = hosts.split(",").map((h) => {
        const hostPort = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(h);
        if (!hostPort) throw bad(`endpoint "${h}" is not host[:port]`);
        const port = hostPort[2] === undefined ? ETCD_DEFAULT_PORT : Number(hostPort[2]);
        if (port < 1 || port > 65535) throw bad(`port ${port} is out of range`);
        return `${hostPort[1]}:${port}`;
      });
      return { kind: "etcd", endpoints, tls: scheme === "etcds" };
    }
    default:
      throw bad(`unknown scheme "${scheme}:"`);
  }
}

/**
 * The URL as it may be shown: a user-info part (`user:password@`), which etcd URLs must not
 * carry but users write anyway, is replaced by `***@`, so no error or log line repeats it.
 */
export function redactUrl(url: string): string {
  return url
    .replace(/^([a-z][a-z0-9+.-]*:\/\/)([^@/?#]*@)/i, "$1***@")
    .replace(/,([^,@/?#]*@)/g, ",***@");
}

/** The URL to use: the given one, else OCELOT_DATASTORE, else the embedded default. */
export function datastoreUrl(url?: string, env: NodeJS.ProcessEnv = process.env): string {
  const u = url?.trim() || env.OCELOT_DATASTORE?.trim();
  return u ? u : DEFAULT_DATASTORE_URL;
}

/** etcd options from OCELOT_ETCD_* variables, overridden by explicit ones. */
export function etcdOptionsFromEnv(
  endpoints: string[],
  tls: boolean,
  given: Partial<EtcdOptions> = {},
  env: NodeJS.ProcessEnv = process.env,
): EtcdOptions {
  const pick = (v: string | undefined, e: string): string | undefined => v ?? (env[e] || undefined);
  const ms = (v: number | undefined, e: string): number | undefined => {
    if (v !== undefined) return v;
    const raw = env[e];
    if (raw === undefined || raw === "") return undefined;
    const n = Number(raw);
    if (!Number.isInteger(n) || n <= 0)
      throw new RangeError(`${e} must be a positive number of milliseconds, got "${raw}"`);
    return n;
  };
  return {
    ...given,
    endpoints,
    tls: tls || given.tls === true,
    caFile: pick(given.caFile, "OCELOT_ETCD_CA"),
    certFile: pick(given.certFile, "OCELOT_ETCD_CERT"),
    keyFile: pick(given.keyFile, "OCELOT_ETCD_KEY"),
    username: pick(given.username, "OCELOT_ETCD_USERNAME"),
    password: pick(given.password, "OCELOT_ETCD_PASSWORD"),
    dialTimeoutMs: ms(given.dialTimeoutMs, "OCELOT_ETCD_DIAL_TIMEOUT_MS"),
    requestTimeoutMs: ms(given.requestTimeoutMs, "OCELOT_ETCD_REQUEST_TIMEOUT_MS"),
  };
}

/**
 * Opens the datastore named by url (default: OCELOT_DATASTORE, else the embedded file under
 * /var/lib/ocelot/, whose directory is created). etcd is contacted once before returning.
 */
export async function openDatastore(url?: string, opts: OpenOptions = {}): Promise<Datastore> {
  const env = opts.env ?? process.env;
  const target = parseDatastoreUrl(datastoreUrl(url, env));
  switch (target.kind) {
    case "memory":
      return new MemoryDatastore(target.name || undefined, opts.memory);
    case "file":
      return new SqliteDatastore(target.path, opts.sqlite);
    case "etcd": {
      const { EtcdDatastore } = await import("./etcd.js");
      return EtcdDatastore.connect(
        etcdOptionsFromEnv(target.endpoints, target.tls, opts.etcd, env),
      );
    }
  }
}

/** Opens the datastore that a command's parsed options (from addDatastoreOptions) name. */
export async function openDatastoreFromCli(
  o: DatastoreCliOptions,
  opts: Omit<OpenOptions, "etcd"> = {},
): Promise<Datastore> {
  const etcd: Partial<EtcdOptions> = {
    caFile: o.etcdCa,
    certFile: o.etcdCert,
    keyFile: o.etcdKey,
    username: o.etcdUsername,
  };
  if (o.etcdPasswordFile !== undefined) {
    const { readFileSync } = await import("node:fs");
    try {
      etcd.password = readFileSync(o.etcdPasswordFile, "utf8").replace(/\r?\n$/, "");
    } catch (err) {
      throw new RangeError(
        `Cannot read the etcd password file "${o.etcdPasswordFile}": ${(err as Error).message}`,
      );
    }
  }
  for (const k of Object.keys(etcd) as Array<keyof typeof etcd>)
    if (etcd[k] === undefined) delete etcd[k];
  return openDatastore(o.datastore, { ...opts, etcd });
}
