// Logs of the real `ocelot node run` (two nodes in a mesh, in namespaces): levels per subsystem
// changed at run time by `ocelot log-level` over the status socket (found without flags inside
// the node's namespace) and by SIGUSR1/SIGUSR2; every session change logged once with its
// reason; and a daemon whose stdout reader went away (EPIPE) goes on running and answering.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSync } from "../helpers/limits.js";
import { link, Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { BIN, daemonTestsUnavailable, type NodeProcess, startNode } from "./harness.js";

const skip = skipWithReason("ocelot node run logs", daemonTestsUnavailable());
const IPS = ["10.91.0.1", "10.91.0.2"];

describe.skipIf(skip)("ocelot node run: log levels at run time, session changes, EPIPE", () => {
  let dir: string;
  let url: string;
  const ns: Netns[] = [];
  const daemons: (NodeProcess | undefined)[] = [];

  const start = (i: number) =>
    startNode(ns[i] as Netns, [
      ...["--nodename", `n${i + 1}`, "--ip", `${IPS[i]}/24`, "--datastore", url],
    ]);
  /** `ocelot log-level ARGS` run inside node i's namespace: its printed levels. */
  const logLevel = (i: number, ...args: string[]) => {
    const r = runSync("ip", [
      ...["netns", "exec", (ns[i] as Netns).name, join(BIN, "ocelot"), "log-level", ...args],
    ]);
    if (r.status !== 0) throw new Error(`ocelot log-level failed: ${r.stderr}`);
    return r.stdout.trim().split("\n").sort().join(" ");
  };
  const established = (i: number) => {
    const r = runSync("ip", [
      ...["netns", "exec", (ns[i] as Netns).name, join(BIN, "ocelot"), "status", "--json"],
    ]);
    return r.status === 0 && /"state": "Established"/.test(r.stdout);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-logs-"));
    url = `file:${join(dir, "store.db")}`;
    ns.push(Netns.create("lg1"), Netns.create("lg2"));
    link(ns[0] as Netns, "eth0", `${IPS[0]}/24`, ns[1] as Netns, "eth0", `${IPS[1]}/24`);
    daemons.push(await start(0), await start(1));
    await waitFor("the mesh session up", () => established(0) && established(1), 60_000, 250);
  });

  afterAll(async () => {
    for (const d of daemons) await d?.stop();
    for (const n of ns) n.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("ocelot log-level bgp=debug raises the speaker's level only; SIGUSR2/SIGUSR1 step every subsystem; session changes are logged once with their reason", async () => {
    const d1 = daemons[0] as NodeProcess;
    expect(logLevel(0)).toBe("bgp=info node=info");
    expect(logLevel(0, "bgp=debug")).toBe("bgp=debug node=info");
    await waitFor("the change logged", () => d1.has("Log levels changed"), 60_000, 100);
    const r = runSync(join(BIN, "ocelot"), ["log-level", "bgp=loud", "--socket", "/nonexistent"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/"loud" is not a level/);

    // n2 restarts: n1's speaker logs its FSM at debug (bgp), its loop's debug lines stay out.
    const mark = d1.lines.length;
    await daemons[1]?.stop();
    await waitFor(
      "n1 to log the session down",
      () => d1.lines.slice(mark).some((l) => l.msg === "Session down"),
      60_000,
      100,
    );
    daemons[1] = await start(1);
    await waitFor("the session back", () => established(0) && established(1), 60_000, 250);
    // The log lines arrive through the pipe after the status said Established.
    await waitFor(
      "n1 to log the session Established",
      () => d1.lines.slice(mark).some((l) => l.msg === "Session Established"),
      60_000,
      100,
    );
    const after = d1.lines.slice(mark);
    const debug = after.filter((l) => l.level === 20);
    expect(debug.some((l) => l.subsystem === "bgp" && l.msg === "FSM transition")).toBe(true);
    expect(debug.filter((l) => l.subsystem === "node")).toEqual([]);
    // One line per session change, with its reason.
    const downs = after.filter((l) => l.msg === "Session down" && l.peer === IPS[1]);
    expect(downs).toHaveLength(1);
    // n2's clean stop: Cease, as a Hard Reset (6/9, RFC 8538) since both have graceful restart
    // with the N bit, so n1 does not keep n2's routes as stale.
    expect(downs[0]?.reason).toEqual({ kind: "NotificationReceived", code: 6, subcode: 9 });
    expect(after.filter((l) => l.msg === "Session Established" && l.peer === IPS[1])).toHaveLength(
      1,
    );

    d1.proc.kill("SIGUSR2");
    await waitFor("SIGUSR2 applied", () => logLevel(0) === "bgp=info node=warn", 60_000, 200);
    d1.proc.kill("SIGUSR1");
    await waitFor("SIGUSR1 applied", () => logLevel(0) === "bgp=debug node=info", 60_000, 200);
  });

  it("a daemon whose stdout is closed (EPIPE) keeps running: it answers and keeps its session", async () => {
    const d2 = daemons[1] as NodeProcess;
    // Our end of its stdout and stderr pipes goes away; its next lines hit EPIPE.
    d2.proc.stdout?.destroy();
    d2.proc.stderr?.destroy();
    // Each of these makes it log (at warn): the writes fail with EPIPE.
    for (let i = 0; i < 3; i++) d2.proc.kill("SIGUSR1");
    expect(logLevel(1, "all=debug")).toBe("bgp=debug node=debug");
    // Session changes are logged too: n1 restarts, n2 logs its session down and up.
    await daemons[0]?.stop();
    daemons[0] = await start(0);
    await waitFor("the session back", () => established(0) && established(1), 60_000, 250);
    expect(d2.proc.exitCode).toBeNull();
    expect(d2.proc.signalCode).toBeNull();
    expect(logLevel(1)).toBe("bgp=debug node=debug");
  });
});
