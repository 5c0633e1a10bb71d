// The node daemon's end of the CNI hand-off: a root-only unix socket beside the status socket
// (`cni.sock`) where the installed plugins' first process (native/cni_shim.c) hands over an
// invocation, run here on the daemon's open datastore with the plugins' own code
// (runCniPlugin, runIpamPlugin) instead of a fresh Node.js process per call. Calls for different
// containers run concurrently, at most `maxConcurrent` at once (their IPAM writes are CAS-safe, as
// many plugin processes' are), so one slow call (a datastore write waiting out a lost etcd member)
// holds back no other container's; calls of one plugin for one CNI_CONTAINERID run in the order
// their requests arrived (an ADD and the DEL after it are never reordered). Each call starts
// after a turn of the event loop (setImmediate), so that timers and sockets (BGP keepalives,
// BFD) run between calls even when a call's datastore answers as resolved promises. Declines, so that
// the caller runs the plugin itself, when the call names another datastore than the daemon's
// or a CNI_NETNS that is no network namespace where this process looks (a daemon in a container
// without the host's /run/netns, or in another mount namespace than the runtime's), or comes from another network namespace than the daemon's own (the plugin's host
// side is the namespace it runs in). Owns: the socket and that decision; the framing is src/cni/handoff.ts.
import { statfsSync, statSync } from "node:fs";
import * as net from "node:net";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import {
  decodeRequest,
  encodeDeclined,
  encodeDone,
  type HandoffFrameError,
  type HandoffRequest,
} from "../cni/handoff.js";
import { runIpamPlugin } from "../cni/ipam_plugin.js";
import { runCniPlugin } from "../cni/plugin_main.js";
import { logInvocation, stdoutOf } from "../cni/process.js";
import type { Datastore } from "../datastore/types.js";
import type { Log } from "../lib/log.js";
import { listenRootOnly, prepareSocketPath } from "../lib/unix_socket.js";

/** The hand-off socket beside a status socket (`/run/ocelot/cni.sock`, `…/netns/<ns>/cni.sock`). */
export function cniSocketBeside(statusSocket: string): string {
  return join(dirname(statusSocket), "cni.sock");
}

export type HandoffOutcome = "done" | "declined";

export interface CniServerOptions {
  path: string;
  /** The daemon's datastore, lent to each call that names the same URL (never closed here). */
  store: Datastore;
  log: Log;
  /** Each call: the plugin, its CNI command, what became of it, its seconds in this daemon. */
  observe?(plugin: string, command: string, outcome: HandoffOutcome, seconds: number): void;
  /** How many calls run at once (different containers); default: the environment's, else DEFAULT_MAX_CONCURRENT. */
  maxConcurrent?: number;
}

/**
 * Calls run at once by default: a stalled one leaves room for the rest, and few enough that
 * concurrent ADDs seldom race for the same IPAM block's CAS (a lost race backs off up to 100 ms).
 * bench/cni_latency.ts --bursts (2 cores, embedded store, 1 against 4 against 16 at once): 4 took
 * 100 DELs in about half the time of 1 (their veth deletions' kernel waits overlap), ADDs within
 * the noise of 1; 16 doubled ADD p50 for 20 at once.
 */
export const DEFAULT_MAX_CONCURRENT = 4;

/** The environment variable that overrides the default (a way to compare; bench/cni_latency.ts). */
export const MAX_CONCURRENT_ENV = "OCELOT_CNI_HANDOFF_MAX_CONCURRENT";

/** maxConcurrent from the environment when set there (a whole number >= 1), else `def`. */
export function maxConcurrentFromEnv(def: number, env: NodeJS.ProcessEnv = process.env): number {
  const v = env[MAX_CONCURRENT_ENV];
  if (v === undefined || v === "") return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`${MAX_CONCURRENT_ENV}: "${v}" is not a whole number >= 1`);
  return n;
}

/**
 * Runs tasks in order per key and at most `limit` at once overall: a task waits for the one
 * before it under the same key, then for a free slot. Pure scheduling (no I/O); exported for
 * its test.
 */
export class KeyedLimiter {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly tails = new Map<string, Promise<void>>();

  constructor(private readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1)
      throw new Error(`maxConcurrent: ${limit} is not a whole number >= 1`);
  }

  /** Calls running now and waiting for a slot (not those waiting for their key's predecessor). */
  get load(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length };
  }

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve();
    const result = before.then(async () => {
      await this.acquire();
      try {
        return await task();
      } finally {
        this.release();
      }
    });
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  private acquire(): Promise<void> {
    if (this.running < this.limit) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.running--;
  }
}

class Decline extends Error {}

/** The Datastore methods that answer a promise (a turn of the event loop before each). */
const ASYNC_STORE_METHODS = new Set<string | symbol>([
  "get",
  "list",
  "listKeys",
  "create",
  "update",
  "updateIfAbsent",
  "delete",
  "revision",
]);

/** Set by the shim: the caller's /proc/self/ns/net as "dev:ino". */
const CALLER_NETNS = "OCELOT_CNI_CALLER_NETNS";

/** statfs(2)'s f_type of the nsfs file system (linux/magic.h). */
const NSFS_MAGIC = 0x6e736673;

/**
 * Whether path is a network namespace as this process sees it: a runtime in another mount
 * namespace (podman under `ip netns exec`) bind-mounts its pods' namespaces where this process
 * sees only the empty file under the mount point.
 */
function isNetns(path: string): boolean {
  try {
    return statfsSync(path).type === NSFS_MAGIC;
  } catch {
    return false;
  }
}

function netnsId(): string | undefined {
  try {
    const s = statSync("/proc/self/ns/net");
    return `${s.dev}:${s.ino}`;
  } catch {
    return undefined;
  }
}

/** Serves the hand-off socket until close(). */
export async function serveCni(o: CniServerOptions): Promise<{ close(): Promise<void> }> {
  await prepareSocketPath(o.path, "CNI socket");
  const ownNetns = netnsId();
  // The store lent to a call: the same object, whose close() the plugin's finally must not reach.
  // Each of its methods that answers a promise first takes a turn of the event loop: the embedded
  // store (better-sqlite3) answers synchronously, so a whole call would otherwise run as one
  // block, holding timers and sockets (BGP keepalives, BFD) and the other calls for its length.
  const lent: Datastore = new Proxy(o.store, {
    get(target, prop, receiver) {
      if (prop === "close") return async () => {};
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== "function") return v;
      if (!ASYNC_STORE_METHODS.has(prop)) return v.bind(target);
      return async (...args: unknown[]) => {
        await new Promise((resolve) => setImmediate(resolve));
        return v.apply(target, args);
      };
    },
  });
  const deps = {
    hostname,
    openStore: async (url: string) => {
      if (url !== o.store.url) throw new Decline(`datastore ${url} is not the daemon's`);
      return lent;
    },
  };
  const limiter = new KeyedLimiter(o.maxConcurrent ?? maxConcurrentFromEnv(DEFAULT_MAX_CONCURRENT));
  const run = async (req: HandoffRequest): Promise<Buffer> => {
    const start = process.hrtime.bigint();
    const command = req.env.CNI_COMMAND ?? "";
    const seconds = () => Number(process.hrtime.bigint() - start) / 1e9;
    const netns = req.env.CNI_NETNS;
    // The plugin's host side is the network namespace it runs in: only calls from the
    // daemon's own namespace (not a daemon that programs another one with --netns).
    const caller = req.env[CALLER_NETNS];
    delete req.env[CALLER_NETNS];
    if (caller !== ownNetns || (netns && !isNetns(netns))) {
      o.observe?.(req.plugin, command, "declined", seconds());
      return encodeDeclined();
    }
    // A Decline thrown by openStore comes back inside the plugin's error outcome; the flag says so.
    let declined = false;
    const callDeps = {
      ...deps,
      handedOff: true,
      openStore: async (url: string) => {
        try {
          return await deps.openStore(url);
        } catch (e) {
          declined = e instanceof Decline;
          throw e;
        }
      },
    };
    const out =
      req.plugin === "ocelot-cni"
        ? await runCniPlugin(req.env, req.stdin, callDeps)
        : await runIpamPlugin(req.env, req.stdin, callDeps);
    if (declined) {
      o.observe?.(req.plugin, command, "declined", seconds());
      return encodeDeclined();
    }
    logInvocation(req.plugin, req.env, req.stdin, out);
    o.observe?.(req.plugin, command, "done", seconds());
    return encodeDone(out.exitCode, stdoutOf(out));
  };
  // Half-open: the shim shuts its side down after the request, and the answer follows later.
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    let buf = Buffer.alloc(0);
    let taken = false;
    sock.on("data", (d: Buffer) => {
      if (taken) return;
      buf = Buffer.concat([buf, d]);
      let req: HandoffRequest | undefined;
      try {
        req = decodeRequest(buf);
      } catch (e) {
        o.log.warn(
          { error: (e as HandoffFrameError).message },
          "CNI hand-off: malformed request dropped",
        );
        sock.destroy();
        return;
      }
      if (!req) return;
      taken = true;
      const call = req;
      // Per plugin and container: ocelot-cni's own delegation to an exec'd ocelot-ipam (handed
      // off here too) is another key, so it never waits behind the call that made it.
      const key = `${call.plugin}\0${call.env.CNI_CONTAINERID ?? ""}`;
      void limiter.run(key, async () => {
        // A turn of the event loop before each call: timers and sockets between calls.
        await new Promise((resolve) => setImmediate(resolve));
        let answer: Buffer;
        try {
          answer = await run(call);
        } catch (e) {
          o.log.error({ error: (e as Error).message }, "CNI hand-off failed");
          answer = encodeDeclined();
        }
        if (!sock.destroyed) sock.end(answer);
      });
    });
    // A peer that shuts down without a whole request (another daemon's liveness probe of the
    // path, a shim that died) gets our end too: a half-open socket left would hold close().
    sock.on("end", () => {
      if (!taken) sock.end();
    });
    sock.on("error", () => {});
  });
  return listenRootOnly(server, o.path);
}
