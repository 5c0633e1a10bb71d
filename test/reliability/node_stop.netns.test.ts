// SIGTERM at each point of the node daemon's start-up: the real `ocelot node run` in its own
// namespace (BGP on, no peers, the embedded store with a pool), signalled as each start-up line
// appears (the configuration read, the Node registered, the speaker started, the first pass's MTU
// file, the CNI socket served, running), and once while its first pass hangs in an
// `iptables-nft-restore` that never ends (a stand-in first in PATH). Each must exit 0 having
// logged "Stopped" (before the daemon existed: "Stopped before …"), with nothing left running in its namespace; the hanging command is killed by
// PID and named. The limits here are for hangs (HANG_MS); the measured times are printed.
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { addUplink } from "../helpers/cni.js";
import { HANG_MS } from "../helpers/limits.js";
import { Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import { BIN, daemonTestsUnavailable, NodeProcess } from "../node/harness.js";

const skip = skipWithReason(
  "node daemon stop during start-up",
  netnsUnavailableReason() ?? daemonTestsUnavailable(),
);
const NODE = "stop-node";
const IP = "192.0.2.40";

/** The start-up lines, in their order, at which a SIGTERM is sent. */
const POINTS: (string | RegExp)[] = [
  "Configuration read",
  /^Node (already )?registered$/,
  "BGP: speaker started",
  "Pod MTU written",
  "CNI hand-off socket served",
  "Node daemon running",
];

/** SIGTERM; the exit awaited for HANG_MS (then SIGKILL). The milliseconds until it exited. */
async function stopTimed(p: NodeProcess): Promise<{ code: number | null; ms: number }> {
  const t0 = performance.now();
  p.proc.kill("SIGTERM");
  const timer = setTimeout(() => p.proc.kill("SIGKILL"), HANG_MS);
  const code = await p.exit;
  clearTimeout(timer);
  return { code, ms: Math.round(performance.now() - t0) };
}

describe.skipIf(skip)("the node daemon stopped during its start-up", () => {
  let dir: string;
  const spaces: Netns[] = [];
  const procs: ChildProcess[] = [];
  const times: string[] = [];

  const start = (ns: Netns, env: NodeJS.ProcessEnv = process.env) => {
    const proc = spawn(
      "ip",
      [
        "netns",
        "exec",
        ns.name,
        join(process.env.OCELOT_BIN_DIR ?? BIN, "ocelot"),
        "node",
        "run",
        "--nodename",
        NODE,
        "--ip",
        `${IP}/24`,
        "--datastore",
        `file:${join(dir, "store.db")}`,
        "--status-socket",
        join(dir, ns.name, "node.sock"),
        "--mtu-file",
        join(dir, ns.name, "mtu"),
      ],
      { stdio: ["ignore", "pipe", "pipe"], env },
    );
    procs.push(proc);
    return new NodeProcess(ns, proc);
  };

  const node = (short: string) => {
    const ns = Netns.create(short);
    spaces.push(ns);
    addUplink(ns, `${IP}/24`);
    mkdirSync(join(dir, ns.name));
    return ns;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-stop-"));
    const store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool", "10.79.0.0/16", { blockSize: 26 });
    await store.close();
  });

  afterAll(() => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    for (const ns of spaces) ns.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (times.length > 0) console.log(`node stop: ${times.join("; ")}`);
  });

  it.each(POINTS)("SIGTERM at %s: exits 0, stopped, nothing left running", async (point) => {
    const ns = node(`stop${POINTS.indexOf(point)}`);
    const p = start(ns);
    await waitFor(
      `"${point}" logged`,
      () => {
        if (p.proc.exitCode !== null) throw new Error(`exited ${p.proc.exitCode}: ${p.log}`);
        return p.has(point);
      },
      HANG_MS,
      5,
    );
    const { code, ms } = await stopTimed(p);
    times.push(`at "${point}": ${ms} ms`);
    expect(code, p.log).toBe(0);
    expect(p.has(/^Stopped/), p.log).toBe(true);
    expect(ns.pids(), "processes left in the namespace").toEqual([]);
  });

  it("SIGTERM while the first pass waits on a command that never ends: the command killed by PID and named, exit 0", async () => {
    // iptables-nft-restore as the full pass runs it (with -w) hangs; as the long-lived session
    // runs it (without), it reads its input to the end as the tool does.
    const fake = join(dir, "fakebin");
    mkdirSync(fake);
    const marker = join(dir, "restore-started");
    writeFileSync(
      join(fake, "iptables-nft-restore"),
      `#!/bin/sh\ncase " $* " in *" -w "*) touch ${marker}; exec sleep 300;; esac\nexec cat >/dev/null\n`,
    );
    chmodSync(join(fake, "iptables-nft-restore"), 0o755);
    const ns = node("stophang");
    const p = start(ns, { ...process.env, PATH: `${fake}:${process.env.PATH}` });
    await waitFor(
      "the full pass's iptables-nft-restore started",
      () => {
        if (p.proc.exitCode !== null) throw new Error(`exited ${p.proc.exitCode}: ${p.log}`);
        return existsSync(marker);
      },
      HANG_MS,
      20,
    );
    const { code, ms } = await stopTimed(p);
    times.push(`with a hanging command: ${ms} ms`);
    expect(code, p.log).toBe(0);
    const killed = p.lines.find((l) => l.msg.startsWith("Stop: the pass in flight did not end"));
    expect(JSON.stringify(killed?.killed), p.log).toMatch(/iptables-nft-restore \(pid \d+\)/);
    expect(p.has(/^Stopped/), p.log).toBe(true);
    expect(ns.pids(), "processes left in the namespace").toEqual([]);
  });
});
