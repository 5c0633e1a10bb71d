// The node daemon SIGKILLed during a convergence (issue 17, crash safety): the real
// `ocelot node run` (no BGP, programming a namespace with --netns) on the embedded store, with
// three blocks of a NAT-outgoing pool: its kernel state (routes of protocol 202, its iptables
// chains and rules, its ipsets, read back with `ip -j route`, `iptables-save`, `ipset list`)
// after a clean start is the reference. Then it is started and SIGKILLed at a random point of
// its first convergence, again and again (5 times per suite run, 20 in `npm run test:soak`),
// and after each kill one more start must converge to exactly the reference.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { IpamStore } from "../../src/ipam/store.js";
import { HANG_MS } from "../helpers/limits.js";
import { Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import { BIN, routes } from "../node/harness.js";
import { spawnLogged, stopHard } from "./kill.js";

const KILLS = process.env.OCELOT_SOAK ? 20 : 5;
const NODE = "kill-node";
const skip = skipWithReason("node daemon killed mid-convergence", netnsUnavailableReason());

describe.skipIf(skip)("ocelot node run SIGKILLed mid-convergence", () => {
  let dir: string;
  let store: SqliteDatastore;
  let ns: Netns;
  let current: ChildProcess | undefined;
  const port = 20_000 + Math.floor(Math.random() * 20_000);

  const start = () => {
    const s = spawnLogged(join(BIN, "ocelot"), [
      "node",
      "run",
      "--nodename",
      NODE,
      "--ip",
      "192.0.2.70/24",
      "--networking-backend",
      "none",
      "--netns",
      ns.name,
      "--datastore",
      `file:${join(dir, "store.db")}`,
      "--metrics-address",
      `127.0.0.1:${port}`,
      "--status-socket",
      join(dir, "node.sock"),
      "--mtu-file",
      join(dir, "mtu"),
    ]);
    current = s.p;
    return s;
  };
  const ready = async () =>
    (
      await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(60_000) }).catch(
        () => undefined,
      )
    )?.status === 200;
  /** The daemon's kernel state in the namespace, in a stable text form. */
  const state = () => {
    const r = routes(ns, "202")
      .map((x) => `${x.type ?? "unicast"} ${x.dst} ${x.dev ?? ""}`)
      .sort();
    const ipt = ns
      .exec("iptables-save")
      .split("\n")
      .filter((l) => l.includes("ocl-") && !l.startsWith("#"))
      .map((l) => l.replace(/\[\d+:\d+\]/, ""))
      .sort();
    const sets = ns
      .exec("ipset", "list", "-n")
      .split("\n")
      .filter((l) => l.startsWith("ocl"))
      .sort();
    return { routes: r, iptables: ipt, ipsets: sets };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-nodekill-"));
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "kill-pool", "10.75.0.0/22", { blockSize: 26, natOutgoing: true });
    const ipam = new IpamStore(store, { emptyBlockGraceMs: 0 });
    // Three blocks of this node: one full of addresses, so the next ADD claims another.
    for (let b = 0; b < 3; b++)
      await ipam.autoAssign({
        handleId: `kill-${b}`,
        node: NODE,
        num4: b < 2 ? 64 : 1,
        num6: 0,
      });
    ns = Netns.create("nk");
  });

  afterAll(async () => {
    if (current) await stopHard(current);
    ns?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`${KILLS} SIGKILLs during the first convergence: each next start converges to the reference state`, async () => {
    const first = start();
    await waitFor("the first start ready", ready, 60_000, 100).catch((e) => {
      throw new Error(`${(e as Error).message}\n${first.log()}`);
    });
    const reference = state();
    expect(reference.routes.filter((r) => r.startsWith("blackhole")).length).toBe(3);
    expect(reference.iptables.length).toBeGreaterThan(0);
    expect(reference.ipsets.length).toBeGreaterThan(0);
    await stopHard(first.p);
    let seed = 0x6b11;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const killedAt: number[] = [];
    for (let k = 0; k < KILLS; k++) {
      // Flush what it made, so each start has the whole convergence to do, then cut it short.
      ns.exec("ip", "route", "flush", "proto", "202");
      const s = start();
      const t0 = Date.now();
      await waitFor(
        "the daemon to begin",
        () => s.log().includes("Node registered") || s.log().includes("Node already registered"),
        HANG_MS,
        5,
      );
      const delay = Math.floor(random() * 600);
      await new Promise((r) => setTimeout(r, delay));
      await stopHard(s.p);
      killedAt.push(Date.now() - t0);
      const again = start();
      await waitFor("ready after the kill", ready, 60_000, 100).catch((e) => {
        throw new Error(`${(e as Error).message}\n${again.log()}`);
      });
      expect(state(), `state after kill ${k + 1} (at ${killedAt.at(-1)} ms)`).toEqual(reference);
      await stopHard(again.p);
    }
    console.log(
      `node daemon kills: ${KILLS}, at ${killedAt.join(", ")} ms after start; each next start converged to the reference (${reference.routes.length} routes, ${reference.iptables.length} iptables lines, ${reference.ipsets.length} ipsets)`,
    );
  });
});
