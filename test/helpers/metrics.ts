// Reading a daemon's HTTP endpoints from inside its network namespace, with the real curl, and
// one series out of the Prometheus text it serves. Shared by the bgpd and node run metrics tests.
import { HANG_MS } from "./limits.js";
import type { Netns } from "./netns.js";

/** GET http://127.0.0.1:port/path inside ns (a hang-sized limit): [HTTP status, body]. */
export function httpGetIn(ns: Netns, port: number, path: string): [number, string] {
  const out = ns.exec(
    "curl",
    "-s",
    "--max-time",
    String(HANG_MS / 1000),
    "-w",
    "\n%{http_code}",
    `http://127.0.0.1:${port}${path}`,
  );
  const nl = out.lastIndexOf("\n");
  return [Number(out.slice(nl + 1)), out.slice(0, nl)];
}

/** The value of one series (name with its labels, as exposed) in Prometheus text, if present. */
export function metricSample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
