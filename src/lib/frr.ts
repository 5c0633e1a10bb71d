// FRR (zebra + bgpd) started directly inside a network namespace, as the demo's top-of-rack
// router and as a real peer in tests. Owns: the daemons' command lines, with pathspace `-N <ns>`
// so several instances coexist, and waiting for their pid files and zebra's API socket. Not:
// their configuration, or stopping them (callers track the PIDs returned).
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type Netns, sh, sleepSync } from "./netns.js";

export const FRR_BIN = "/usr/lib/frr";

export function frrInstalled(): boolean {
  return existsSync(join(FRR_BIN, "zebra")) && existsSync(join(FRR_BIN, "bgpd"));
}

/** Waits for a pid file to hold a PID, bounded by timeoutMs. */
export function readPidFile(file: string, timeoutMs = 5000): number {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (existsSync(file)) {
      const n = Number(readFileSync(file, "utf8").trim());
      if (n > 0) return n;
    }
    sleepSync(50);
  }
  throw new Error(`No PID in ${file} after ${timeoutMs} ms`);
}

/** FRR's per-namespace run dir (its sockets: zserv.api, *.vty); callers remove it when done. */
export function frrRunDir(ns: Netns): string {
  return `/var/run/frr/${ns.name}`;
}

/**
 * Starts zebra then bgpd (or the daemons given, zebra first) in ns from `dir`/<daemon>.conf,
 * with pid files and logs in dir (chowned to frr, which the daemons run as). Returns their PIDs.
 */
export function startFrrDaemons(
  ns: Netns,
  dir: string,
  zebraRcvbuf = 16 * 1024 * 1024,
  daemons: readonly ("zebra" | "bgpd" | "bfdd")[] = ["zebra", "bgpd"],
): Record<string, number> & { zebra: number; bgpd: number } {
  const runDir = frrRunDir(ns);
  mkdirSync(runDir, { recursive: true });
  sh("chown", ["-R", "frr:frr", runDir, dir]);
  const pids: Record<string, number> & { zebra: number; bgpd: number } = { zebra: 0, bgpd: 0 };
  for (const daemon of daemons) {
    const pidFile = join(dir, `${daemon}.pid`);
    const extra = daemon === "zebra" ? ["-s", String(zebraRcvbuf)] : [];
    ns.exec(
      join(FRR_BIN, daemon),
      ...["-d", "-N", ns.name, "-P", "0", ...extra],
      ...[
        "-f",
        join(dir, `${daemon}.conf`),
        "-i",
        pidFile,
        "--log",
        `file:${join(dir, `${daemon}.log`)}`,
      ],
    );
    pids[daemon] = readPidFile(pidFile);
    if (daemon === "zebra") {
      const deadline = Date.now() + 5000;
      while (!existsSync(join(runDir, "zserv.api")) && Date.now() < deadline) sleepSync(50);
    }
  }
  return pids;
}
