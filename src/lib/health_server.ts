// The daemons' HTTP endpoint (node:http) for `--metrics-address host:port`: GET /metrics (the
// Prometheus text format), /livez (the event loop turns and the daemon says it is alive) and
// /readyz (200 once the daemon says it is ready, else 503 with the reason). Also parses the
// address flag. Not: which numbers or conditions (the daemon's source supplies them).
import * as http from "node:http";
import { isIP } from "node:net";
import { CONTENT_TYPE } from "./metrics.js";

export interface Check {
  ok: boolean;
  /** Why not (shown in the 503 body); may say what is fine when ok. */
  reason?: string;
}

export interface HealthSource {
  /** The rendered exposition text (prom-client renders asynchronously). */
  metrics(): string | Promise<string>;
  ready(): Check;
  /** Optional: the daemon's own liveness (e.g. its loop is not stuck). */
  live?(): Check;
}

export interface ListenAddress {
  host: string;
  port: number;
}

/** The paths served: Kubernetes probes (config/k8s/daemonset.yaml) name these. */
export const HEALTH_PATHS = { metrics: "/metrics", live: "/livez", ready: "/readyz" } as const;

/** The event loop counts as stalled when its heartbeat is older than this. */
const STALL_MS = 10_000;
const BEAT_MS = 1000;

/** Parses "host:port" or "[v6]:port"; host must be an IP address or localhost. */
export function parseListenAddress(text: string, flag = "--metrics-address"): ListenAddress {
  const bad = (why: string) =>
    new Error(`${flag}: "${text}" ${why} (expected host:port, e.g. 127.0.0.1:9091 or [::1]:9091)`);
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  if (!m) throw bad("is not host:port");
  const host = (m[1] ?? m[2]) as string;
  const port = Number(m[3]);
  if (m[1] !== undefined && isIP(host) !== 6) throw bad(`has "${host}", not an IPv6 address`);
  if (m[2] !== undefined && host !== "localhost" && isIP(host) !== 4)
    throw bad(`has "${host}", not an IPv4 address or localhost`);
  if (port < 1 || port > 65535) throw bad(`has port ${port}, not in 1..65535`);
  return { host, port };
}

function display(a: ListenAddress): string {
  return isIP(a.host) === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

function listenError(a: ListenAddress, err: NodeJS.ErrnoException): Error {
  const where = `--metrics-address ${display(a)}`;
  switch (err.code) {
    case "EADDRINUSE":
      return new Error(`${where}: the port is in use by another process (EADDRINUSE)`);
    case "EADDRNOTAVAIL":
      return new Error(`${where}: the address is not one of this host's (EADDRNOTAVAIL)`);
    case "EACCES":
      return new Error(`${where}: not permitted to bind (EACCES)`);
    default:
      return new Error(`${where}: cannot listen: ${err.message}`);
  }
}

function reply(
  res: http.ServerResponse,
  code: number,
  type: string,
  body: string,
  extra: Record<string, string> = {},
): void {
  res.writeHead(code, { "Content-Type": type, "Cache-Control": "no-store", ...extra });
  res.end(body);
}

/** Listens on addr; resolves once bound, rejects naming the problem (port in use, ...). */
export async function serveHealth(
  addr: ListenAddress,
  source: HealthSource,
): Promise<{ close(): Promise<void>; address: string }> {
  let lastBeat = Date.now();
  const beat = setInterval(() => {
    lastBeat = Date.now();
  }, BEAT_MS);
  beat.unref();
  const live = (): Check => {
    const lag = Date.now() - lastBeat;
    if (lag > STALL_MS) return { ok: false, reason: `event loop stalled for ${lag} ms` };
    return source.live?.() ?? { ok: true };
  };
  const text = "text/plain; charset=utf-8";
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    // Read-only: nothing served here changes state. RFC 9110 §15.5.6: a 405 names what is allowed.
    if (req.method !== "GET" && req.method !== "HEAD") {
      reply(res, 405, text, "Only GET\n", { Allow: "GET, HEAD" });
      return;
    }
    try {
      if (path === HEALTH_PATHS.metrics) {
        Promise.resolve()
          .then(() => source.metrics())
          .then(
            (body) => reply(res, 200, CONTENT_TYPE, body),
            (err: Error) => reply(res, 500, text, `${err.message}\n`),
          );
      } else if (path === HEALTH_PATHS.live || path === HEALTH_PATHS.ready) {
        const c = path === HEALTH_PATHS.live ? live() : source.ready();
        reply(
          res,
          c.ok ? 200 : 503,
          text,
          `${c.ok ? "ok" : "not ok"}${c.reason ? `: ${c.reason}` : ""}\n`,
        );
      } else reply(res, 404, text, "Not found: try /metrics, /livez or /readyz\n");
    } catch (err) {
      reply(res, 500, text, `${(err as Error).message}\n`);
    }
  });
  server.keepAliveTimeout = 5000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(addr.port, addr.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    clearInterval(beat);
    throw listenError(addr, err as NodeJS.ErrnoException);
  }
  return {
    address: display(addr),
    close: () =>
      new Promise<void>((resolve) => {
        clearInterval(beat);
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
