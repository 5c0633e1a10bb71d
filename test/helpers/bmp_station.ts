// pmacct's pmbmpd as the BMP station (RFC 7854) of a test: run in a namespace on its loopback,
// tracked by a PeerLab, logging every BMP message it gets as a JSON line, read back by type.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Netns, waitFor } from "./netns.js";
import type { PeerLab } from "./peers.js";

/** One message as pmbmpd logs it (bmp_msg_type, peer_ip, ip_prefix, ...). */
export type BmpEntry = Record<string, string | number | undefined>;

export class PmbmpdStation {
  private constructor(
    private readonly proc: ChildProcess,
    /** pmbmpd's JSON-lines message log. */
    readonly logFile: string,
  ) {}

  /** pmbmpd in ns on 127.0.0.1:port, its files in lab.subdir(name); waits until it listens. */
  static async start(lab: PeerLab, ns: Netns, name: string, port: number): Promise<PmbmpdStation> {
    const d = lab.subdir(name);
    const logFile = join(d, "bmp.json");
    const conf = join(d, "pmbmpd.conf");
    writeFileSync(
      conf,
      `daemonize: false\nbmp_daemon_ip: 127.0.0.1\nbmp_daemon_port: ${port}\n` +
        `bmp_daemon_msglog_file: ${logFile}\nbmp_daemon_msglog_output: json\n`,
    );
    const out = openSync(join(d, "pmbmpd.out"), "a");
    const [cmd, args] = ns.wrap("pmbmpd", "-f", conf);
    const proc = spawn(cmd, args, { stdio: ["ignore", out, out], detached: true });
    proc.unref();
    lab.track(proc.pid as number, "pmbmpd", `pmbmpd@${ns.name}`);
    const station = new PmbmpdStation(proc, logFile);
    try {
      await waitFor(
        "pmbmpd listening",
        () => readFileSync(join(d, "pmbmpd.out"), "utf8").includes("waiting for BMP data"),
        30_000,
      );
    } catch (err) {
      station.stop();
      throw err;
    }
    return station;
  }

  /** Every message logged so far. */
  entries(): BmpEntry[] {
    return existsSync(this.logFile)
      ? readFileSync(this.logFile, "utf8")
          .split("\n")
          .filter((l) => l.trim() !== "")
          .map((l) => JSON.parse(l) as BmpEntry)
      : [];
  }

  /** The messages of one bmp_msg_type (init, peer_up, route_monitor, stats, peer_down, term). */
  ofType(t: string): BmpEntry[] {
    return this.entries().filter((e) => e.bmp_msg_type === t);
  }

  /** pmbmpd leaves on SIGKILL only (it waits on its threads otherwise). */
  stop(): void {
    const pid = this.proc.pid;
    if (pid === undefined) return;
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
}
