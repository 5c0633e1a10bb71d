// A real etcd 3.4 (/usr/bin/etcd) for tests and benchmarks: one private server per caller on
// 127.0.0.1 with free random ports and a temp data dir. Owns only the process it started (killed
// by PID) and its directory. Not: TLS set-ups (tests that need them pass extra flags).
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const ETCD_BIN = process.env.OCELOT_ETCD_BIN ?? "/usr/bin/etcd";

export interface EtcdServer {
  /** `etcd://127.0.0.1:PORT`, for openDatastore(). */
  url: string;
  /** `127.0.0.1:PORT`. */
  endpoint: string;
  pid: number;
  dataDir: string;
  /** Kills this etcd (TERM, then KILL) by PID and removes its data dir. Never throws. */
  stop(): Promise<void>;
}

/** Why etcd tests cannot run here, or undefined when they can. */
export function etcdUnavailableReason(): string | undefined {
  if (!existsSync(ETCD_BIN))
    return `etcd binary not found at ${ETCD_BIN} (apt-get install etcd-server)`;
  return undefined;
}

/** A port that was free a moment ago (the kernel picked it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface StartEtcdOptions {
  /** More etcd flags (e.g. TLS or auth settings). */
  extraArgs?: string[];
  /** How long to wait for /health, in ms. Default 20000. */
  timeoutMs?: number;
  /**
   * Keep the data dir on tmpfs (/dev/shm) so etcd's fsyncs cost nothing: tests measure
   * behaviour, not disks. Default true when /dev/shm exists; benchmarks pass false.
   */
  tmpfs?: boolean;
}

const live = new Map<ChildProcess, string>();
let exitHookInstalled = false;

/** Starts a private etcd and waits until it reports healthy. Retries on a port clash. */
export async function startEtcd(opts: StartEtcdOptions = {}): Promise<EtcdServer> {
  const reason = etcdUnavailableReason();
  if (reason) throw new Error(reason);
  let lastErr: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      lastErr = err as Error;
    }
  }
  throw lastErr ?? new Error("etcd did not start");
}

async function startOnce(opts: StartEtcdOptions): Promise<EtcdServer> {
  const onTmpfs = (opts.tmpfs ?? true) && existsSync("/dev/shm");
  const dataDir = mkdtempSync(join(onTmpfs ? "/dev/shm" : tmpdir(), "ocelot-etcd-"));
  const clientPort = await freePort();
  let peerPort = await freePort();
  while (peerPort === clientPort) peerPort = await freePort();
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const logPath = join(dataDir, "etcd.log");
  const log = openSync(logPath, "a");
  const child = spawn(
    ETCD_BIN,
    [
      "--name",
      "ocelot-test",
      "--data-dir",
      join(dataDir, "data"),
      "--listen-client-urls",
      client,
      "--advertise-client-urls",
      client,
      "--listen-peer-urls",
      peer,
      "--initial-advertise-peer-urls",
      peer,
      "--initial-cluster",
      `ocelot-test=${peer}`,
      "--initial-cluster-state",
      "new",
      "--log-level",
      "warn",
      ...(opts.extraArgs ?? []),
    ],
    { stdio: ["ignore", log, log], env: { ...process.env, ETCD_UNSUPPORTED_ARCH: "" } },
  );
  live.set(child, dataDir);
  installExitHook();
  let exited = false;
  child.once("exit", () => {
    exited = true;
    live.delete(child);
  });
  const pid = child.pid as number;
  const stop = async (): Promise<void> => {
    await killChild(child);
    rmSync(dataDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    if (exited) break;
    try {
      const res = await fetch(`${client}/health`, { signal: AbortSignal.timeout(1000) });
      const body = (await res.json()) as { health?: string };
      if (body.health === "true")
        return {
          url: `etcd://127.0.0.1:${clientPort}`,
          endpoint: `127.0.0.1:${clientPort}`,
          pid,
          dataDir,
          stop,
        };
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  const tail = safeRead(logPath).split("\n").slice(-10).join("\n");
  await stop();
  throw new Error(
    `etcd on ${client} did not become healthy (exited: ${exited}); log tail:\n${tail}`,
  );
}

async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once("exit", () => r()));
  for (const [sig, wait] of [
    ["SIGTERM", 5000],
    ["SIGKILL", 5000],
  ] as const) {
    try {
      process.kill(child.pid as number, sig);
    } catch {
      return;
    }
    const done = await Promise.race([gone.then(() => true), sleep(wait).then(() => false)]);
    if (done) return;
  }
}

/** If the test process dies without afterAll, its etcds still go (by PID). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const [c, dir] of live) {
      try {
        if (c.pid) process.kill(c.pid, "SIGKILL");
      } catch {}
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

function safeRead(p: string): string {
  try {
    return readFileSync(p, "utf8");
  } catch {
    return "";
  }
}
