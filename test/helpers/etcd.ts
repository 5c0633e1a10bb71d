// A real etcd 3.4 (/usr/bin/etcd) for tests and benchmarks: one private server per caller on
// 127.0.0.1 with free random ports and a temp data dir. Owns only the process it started (killed
// by PID) and its directory, plus a throwaway PKI for TLS tests. Not: clusters of several members.
import { type ChildProcess, spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { get as httpGet } from "node:http";
import { get as httpsGet } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HANG_MS, hangLimit, runSync } from "./limits.js";

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
  /** Kills it, waits pauseMs, and starts it again on the same ports and data. */
  restart(pauseMs?: number): Promise<void>;
}

/** PEM files for an etcd that serves TLS and requires client certificates. */
export interface EtcdTls {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
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
  /** Serve https with these certificates and require client certificates (see makeTestPki). */
  tls?: EtcdTls;
  /**
   * More addresses to serve clients on, on the same port as 127.0.0.1 (e.g. the host side of a
   * veth into a node's namespace, whose daemon cannot reach the host's loopback).
   */
  alsoListen?: string[];
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
  const tls = opts.tls;
  const client = `${tls ? "https" : "http"}://127.0.0.1:${clientPort}`;
  const listen = [
    client,
    ...(opts.alsoListen ?? []).map((a) => `${tls ? "https" : "http"}://${a}:${clientPort}`),
  ];
  const peer = `http://127.0.0.1:${peerPort}`;
  const logPath = join(dataDir, "etcd.log");
  const args = [
    "--name",
    "ocelot-test",
    "--data-dir",
    join(dataDir, "data"),
    "--listen-client-urls",
    listen.join(","),
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
    ...(tls
      ? [
          "--cert-file",
          tls.serverCert,
          "--key-file",
          tls.serverKey,
          "--trusted-ca-file",
          tls.ca,
          "--client-cert-auth",
        ]
      : []),
    ...(opts.extraArgs ?? []),
  ];
  let child = launch(args, dataDir, logPath);
  const server: EtcdServer = {
    url: `${tls ? "etcds" : "etcd"}://127.0.0.1:${clientPort}`,
    endpoint: `127.0.0.1:${clientPort}`,
    pid: child.pid as number,
    dataDir,
    stop: async () => {
      await killChild(child);
      rmSync(dataDir, { recursive: true, force: true });
    },
    restart: async (pauseMs = 0) => {
      await killChild(child);
      if (pauseMs > 0) await sleep(pauseMs);
      child = launch(args, dataDir, logPath);
      server.pid = child.pid as number;
      await waitHealthy(child, client, tls, logPath, opts.timeoutMs);
    },
  };
  try {
    await waitHealthy(child, client, tls, logPath, opts.timeoutMs);
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

function launch(args: string[], dataDir: string, logPath: string): ChildProcess {
  const log = openSync(logPath, "a");
  const child = spawn(ETCD_BIN, args, {
    stdio: ["ignore", log, log],
    env: { ...process.env, ETCD_UNSUPPORTED_ARCH: "" },
  });
  closeSync(log);
  live.set(child, dataDir);
  installExitHook();
  child.once("exit", () => live.delete(child));
  return child;
}

async function waitHealthy(
  child: ChildProcess,
  client: string,
  tls: EtcdTls | undefined,
  logPath: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + hangLimit(timeoutMs);
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    if (await healthy(`${client}/health`, tls)) return;
    await sleep(100);
  }
  const tail = safeRead(logPath).split("\n").slice(-10).join("\n");
  throw new Error(
    `etcd on ${client} did not become healthy (exit ${child.exitCode ?? child.signalCode}); log tail:\n${tail}`,
  );
}

/** GET /health (with the client certificate when TLS), true when etcd says healthy. */
function healthy(url: string, tls: EtcdTls | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const opts = tls
      ? {
          ca: readFileSync(tls.ca),
          cert: readFileSync(tls.clientCert),
          key: readFileSync(tls.clientKey),
        }
      : {};
    const req = (url.startsWith("https:") ? httpsGet : httpGet)(
      url,
      { ...opts, timeout: HANG_MS },
      (res) => {
        let body = "";
        res.on("data", (d: Buffer) => {
          body += d.toString();
        });
        res.on("end", () => resolve(body.includes('"health":"true"')));
        res.on("error", () => resolve(false));
      },
    );
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
  });
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

/**
 * A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl
 * in dir. Returns undefined (with the reason) when openssl is missing.
 */
export function makeTestPki(dir: string): EtcdTls | string {
  const run = (args: string[]) => {
    const r = runSync("openssl", args, { cwd: dir, encoding: "utf8" });
    if (r.error || r.status !== 0)
      throw new Error(`openssl ${args[0]} failed: ${r.error?.message ?? r.stderr}`);
  };
  if (runSync("openssl", ["version"]).status !== 0) return "openssl not found";
  const ext = join(dir, "ext.cnf");
  writeFileSync(
    ext,
    "[server]\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n[client]\nextendedKeyUsage=clientAuth\n",
  );
  run([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=ocelot-test-ca",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
  ]);
  for (const who of ["server", "client"]) {
    run([
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-subj",
      `/CN=ocelot-test-${who}`,
      "-keyout",
      `${who}.key`,
      "-out",
      `${who}.csr`,
    ]);
    run([
      "x509",
      "-req",
      "-in",
      `${who}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      ext,
      "-extensions",
      who,
      "-out",
      `${who}.pem`,
    ]);
  }
  return {
    ca: join(dir, "ca.pem"),
    serverCert: join(dir, "server.pem"),
    serverKey: join(dir, "server.key"),
    clientCert: join(dir, "client.pem"),
    clientKey: join(dir, "client.key"),
  };
}

/** A private etcd cluster of several members on loopback, each its own process and data dir. */
export interface EtcdCluster {
  /** `etcd://127.0.0.1:A,127.0.0.1:B,127.0.0.1:C`, for openDatastore(). */
  url: string;
  members: Array<{ name: string; endpoint: string; pid: number; alive: boolean }>;
  /** The index of the member that is leader now (asked of a live member), or -1. */
  leader(): number;
  /** SIGKILLs member i (by its PID). */
  kill(i: number): Promise<void>;
  /** Starts member i again on its ports and data (it rejoins the cluster). */
  restart(i: number): Promise<void>;
  stop(): Promise<void>;
}

/** Starts an n-member etcd cluster (default 3) on loopback and waits until every member is healthy. */
export async function startEtcdCluster(n = 3): Promise<EtcdCluster> {
  const reason = etcdUnavailableReason();
  if (reason) throw new Error(reason);
  const base = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "ocelot-etcdc-"));
  const ports: Array<{ client: number; peer: number }> = [];
  const taken = new Set<number>();
  const fresh = async () => {
    let p = await freePort();
    while (taken.has(p)) p = await freePort();
    taken.add(p);
    return p;
  };
  for (let i = 0; i < n; i++) ports.push({ client: await fresh(), peer: await fresh() });
  const names = ports.map((_, i) => `m${i}`);
  const initial = ports.map((p, i) => `${names[i]}=http://127.0.0.1:${p.peer}`).join(",");
  const argsOf = (i: number) => {
    const p = ports[i] as { client: number; peer: number };
    const client = `http://127.0.0.1:${p.client}`;
    const peer = `http://127.0.0.1:${p.peer}`;
    return [
      "--name",
      names[i] as string,
      "--data-dir",
      join(base, names[i] as string),
      "--listen-client-urls",
      client,
      "--advertise-client-urls",
      client,
      "--listen-peer-urls",
      peer,
      "--initial-advertise-peer-urls",
      peer,
      "--initial-cluster",
      initial,
      "--initial-cluster-state",
      "new",
      "--initial-cluster-token",
      base,
      "--log-level",
      "warn",
    ];
  };
  const children: ChildProcess[] = [];
  const logOf = (i: number) => join(base, `${names[i]}.log`);
  const cluster: EtcdCluster = {
    url: `etcd://${ports.map((p) => `127.0.0.1:${p.client}`).join(",")}`,
    members: ports.map((p, i) => ({
      name: names[i] as string,
      endpoint: `127.0.0.1:${p.client}`,
      pid: 0,
      alive: false,
    })),
    leader: () => {
      const live = cluster.members.filter((m) => m.alive).map((m) => m.endpoint);
      if (live.length === 0) return -1;
      const r = runSync("etcdctl", [
        "--endpoints",
        live.join(","),
        "endpoint",
        "status",
        "-w",
        "json",
      ]);
      if (r.status !== 0) return -1;
      const st = JSON.parse(r.stdout) as Array<{
        Endpoint: string;
        Status: { header: { member_id: number | string }; leader: number | string };
      }>;
      const lead = st.find((s) => String(s.Status.leader) === String(s.Status.header.member_id));
      return lead ? cluster.members.findIndex((m) => lead.Endpoint.endsWith(m.endpoint)) : -1;
    },
    kill: async (i) => {
      const c = children[i];
      if (c && c.exitCode === null && c.signalCode === null) {
        const exited = new Promise((r) => c.once("exit", r));
        c.kill("SIGKILL");
        await exited;
      }
      (cluster.members[i] as { alive: boolean }).alive = false;
    },
    restart: async (i) => {
      const c = launch(argsOf(i), base, logOf(i));
      children[i] = c;
      Object.assign(cluster.members[i] as object, { pid: c.pid, alive: true });
      await waitHealthy(c, `http://${cluster.members[i]?.endpoint}`, undefined, logOf(i));
    },
    stop: async () => {
      for (const c of children) if (c) await killChild(c);
      rmSync(base, { recursive: true, force: true });
    },
  };
  try {
    for (let i = 0; i < n; i++) {
      const c = launch(argsOf(i), base, logOf(i));
      children[i] = c;
      Object.assign(cluster.members[i] as object, { pid: c.pid, alive: true });
    }
    // Members become healthy only once a quorum has formed, so all are started first.
    for (let i = 0; i < n; i++)
      await waitHealthy(
        children[i] as ChildProcess,
        `http://${cluster.members[i]?.endpoint}`,
        undefined,
        logOf(i),
      );
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
