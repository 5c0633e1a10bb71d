// Crash safety of IPAM (reliability): a process assigning and releasing addresses is SIGKILLed
// at random points, again and again, on the embedded store and on a real etcd. Then the
// container runtime's part is played: every operation cut off is followed by a DEL of its
// handle (CNI: a failed ADD is followed by DEL; a DEL is retried until it succeeds). Afterwards
// the store must hold exactly the addresses of the handles whose ADD returned and that were
// not released, each once, and the next assignment must work; releasing those leaves no
// address in use and the real `ocelot ipam check` finds nothing leaked.
// The short form runs in the suite; `npm run test:soak` (OCELOT_SOAK=1) runs 100 kills each.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatastore } from "../../src/datastore/open.js";
import type { Datastore } from "../../src/datastore/types.js";
import { addressOf, inUseCount } from "../../src/ipam/block.js";
import { IpamStore } from "../../src/ipam/store.js";
import { type EtcdServer, etcdUnavailableReason, startEtcd } from "../helpers/etcd.js";
import { HANG_MS, runSync, WAIT_MS } from "../helpers/limits.js";
import { skipWithReason } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";

const KILLS = process.env.OCELOT_SOAK ? 100 : 8;
const WORKER = new URL("./ipam_crash_worker.mjs", import.meta.url).pathname;
/** The workers' report files (see the worker), removed after the file's tests. */
const REPORTS = mkdtempSync(join(tmpdir(), "ocelot-crash-reports-"));
afterAll(() => rmSync(REPORTS, { recursive: true, force: true }));
let workersStarted = 0;
const OCELOT = new URL("../../bin/ocelot", import.meta.url).pathname;
const NODE = "crash-node";

interface Outcome {
  /** Handles whose ADD returned an address, and the address. */
  assigned: Map<number, string>;
  /** Handles whose release returned. */
  released: Set<number>;
  /** Handles with an operation in flight when the process died. */
  cut: Set<number>;
  next: number;
  /** Per worker: its first index, how many report lines it left, its last ones. */
  workers: string[];
}

function newOutcome(): Outcome {
  return { assigned: new Map(), released: new Set(), cut: new Set(), next: 0, workers: [] };
}

/** Handles whose ADD returned and that were neither released nor cut off, with their address. */
function heldOf(o: Outcome): Array<[number, string]> {
  return [...o.assigned].filter(([n]) => !o.released.has(n) && !o.cut.has(n));
}

/** What the blocks hold, by handle id: its addresses. */
async function holdings(ipam: IpamStore): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const e of await ipam.listAllBlocks()) {
    e.block.owner.forEach((idx, ordinal) => {
      if (idx < 0) return;
      const h = e.block.attributes[idx]?.handleId ?? "(no handle)";
      out.set(h, [...(out.get(h) ?? []), addressOf(e.block, ordinal)]);
    });
  }
  return out;
}

/**
 * The differences between the workers' reports and the blocks, one line each: a handle the
 * reports say holds an address and the blocks do not (or hold another), and a handle the blocks
 * hold that the reports do not know as held or cut off (lost report lines, or a leak).
 */
function differences(o: Outcome, held: Map<string, string[]>): string[] {
  const out: string[] = [];
  for (const [n, addr] of heldOf(o)) {
    const got = held.get(`crash-${n}`) ?? [];
    if (got.length !== 1 || got[0] !== addr)
      out.push(`crash-${n}: the report says ${addr}, the blocks hold [${got.join(", ")}]`);
  }
  for (const [h, addrs] of held) {
    const n = Number(h.slice("crash-".length));
    const known =
      h.startsWith("crash-") && (o.cut.has(n) || (o.assigned.has(n) && !o.released.has(n)));
    if (!known)
      out.push(
        `${h}: the blocks hold [${addrs.join(", ")}], the report has it ${
          o.released.has(n) ? "released" : n >= o.next ? "never begun" : "not held"
        }`,
      );
  }
  return out;
}

/** differences() as one assertion message, with each worker's report summary. */
function explain(o: Outcome, diffs: string[]): string {
  return `${diffs.length} differences between the workers' reports and the blocks:\n${diffs
    .slice(0, 40)
    .join("\n")}\nworkers (first index: report lines, last lines):\n${o.workers.join("\n")}`;
}

/**
 * Starts a worker, lets it run after "ready" (a random time, or until `until` says so), SIGKILLs
 * it, parses its report (a file, read once the worker is dead). `stall`: the test reads nothing
 * from the worker's stdout until it is dead, as a test process under load may not.
 */
async function runAndKill(
  url: string,
  first: number,
  o: Outcome,
  random: () => number,
  opts: { stall?: boolean; until?: () => Promise<boolean> } = {},
) {
  const reportFile = join(REPORTS, `worker-${++workersStarted}`);
  const p: ChildProcess = spawn(
    process.execPath,
    ["--import", "tsx", WORKER, url, NODE, String(first), reportFile],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  let err = "";
  p.stdout?.on("data", (d) => (out += d));
  p.stderr?.on("data", (d) => (err += d));
  const exited = new Promise<void>((r) => p.on("close", () => r()));
  const hang = setTimeout(() => p.kill("SIGKILL"), HANG_MS);
  const deadline = Date.now() + HANG_MS;
  while (!out.includes("ready\n") && p.exitCode === null && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 10));
  expect(out, `worker did not start: ${err}`).toContain("ready\n");
  if (opts.stall) p.stdout?.pause();
  if (opts.until) {
    const limit = Date.now() + WAIT_MS;
    while (!(await opts.until()) && p.exitCode === null && Date.now() < limit)
      await new Promise((r) => setTimeout(r, 50));
  } else {
    // Kill at a random point: within the first few operations or well into the loop.
    await new Promise((r) => setTimeout(r, 5 + random() * 400));
  }
  p.kill("SIGKILL");
  p.stdout?.resume();
  await exited;
  clearTimeout(hang);
  const report = existsSync(reportFile) ? readFileSync(reportFile, "utf8") : "";
  const inFlight = new Set<number>();
  for (const line of report.split("\n")) {
    const [what, i, addr] = line.split(" ");
    const n = Number(i);
    if (what === "begin" || what === "rel") inFlight.add(n);
    if (what === "done") {
      inFlight.delete(n);
      o.assigned.set(n, addr as string);
    }
    if (what === "reldone") {
      inFlight.delete(n);
      o.released.add(n);
    }
    if (what === "begin") o.next = Math.max(o.next, n + 1);
  }
  for (const n of inFlight) o.cut.add(n);
  o.next = Math.max(o.next, first + 1);
  const lines = report.trimEnd().split("\n");
  o.workers.push(`${first}: ${lines.length} lines, ... ${lines.slice(-3).join(" | ")}`);
}

function scenario(name: string, open: () => Promise<{ url: string; close: () => Promise<void> }>) {
  describe(`IPAM crash safety on ${name}`, () => {
    let url: string;
    let close: () => Promise<void>;
    let store: Datastore;
    beforeAll(async () => {
      ({ url, close } = await open());
      store = await openDatastore(url);
      // 4,096 addresses: a worker holds at most 25 (see the worker), 100 kills at most 2,500.
      await putPool(store, "crash-pool", "10.71.0.0/20", { blockSize: 26 });
    });
    afterAll(async () => {
      await store?.close();
      await close?.();
    });

    it(`${KILLS} SIGKILLs mid-assign and mid-release: no leak, no duplicate, the next assignment works`, async () => {
      let seed = 0x5eed;
      const random = () => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed / 0x7fffffff;
      };
      const o = newOutcome();
      for (let k = 0; k < KILLS; k++) await runAndKill(url, o.next, o, random);
      const ipam = new IpamStore(store, { emptyBlockGraceMs: 0 });
      // The runtime's part: DEL for every operation that was cut off.
      for (const n of o.cut) await ipam.releaseByHandle(`crash-${n}`, NODE);
      const held = heldOf(o);
      // Every difference at once, with the workers' reports (the checks below name the first).
      const diffs = differences(o, await holdings(ipam));
      expect(diffs, explain(o, diffs)).toEqual([]);
      // What the store holds: exactly the held handles' addresses, each once.
      for (const [n] of held) {
        const addrs = await ipam.addressesOfHandle(`crash-${n}`);
        expect(
          addrs.map((a) => a.address),
          `handle crash-${n}`,
        ).toEqual([o.assigned.get(n)]);
      }
      const heldAddrs = new Set(held.map(([, a]) => a));
      expect(heldAddrs.size, "held handles share an address").toBe(held.length);
      const used = (await ipam.listAllBlocks()).reduce((s, b) => s + inUseCount(b.block), 0);
      expect(used, "addresses in use beyond the held handles (a leak)").toBe(held.length);
      // The next assignment works.
      const [next] = await ipam.autoAssign({
        handleId: "crash-next",
        node: NODE,
        num4: 1,
        num6: 0,
      });
      expect(next && !heldAddrs.has(next.address)).toBe(true);
      // Release everything: nothing in use, and the real `ocelot ipam check` agrees.
      for (const [n] of held) await ipam.releaseByHandle(`crash-${n}`, NODE);
      await ipam.releaseByHandle("crash-next", NODE);
      const left = (await ipam.listAllBlocks()).reduce((s, b) => s + inUseCount(b.block), 0);
      expect(left).toBe(0);
      const r = runSync(OCELOT, ["ipam", "check", "--json", "--datastore", url]);
      expect(r.status, r.stderr).toBe(0);
      const report = JSON.parse(r.stdout) as { leakedAddresses: unknown[] };
      expect(report.leakedAddresses).toEqual([]);
      console.log(
        `IPAM crash safety on ${name}: ${KILLS} kills, ${o.assigned.size} ADDs returned, ${o.released.size} releases returned, ${o.cut.size} operations cut off; 0 leaked, 0 duplicated`,
      );
    });
  });
}

// The test's bookkeeping itself: a worker's report must survive its SIGKILL even when the test
// process read none of it meanwhile (a test process under load reads its pipes late). Lines
// a worker wrote to a pipe the test had not drained died with it: the test then started the
// next worker at handles the dead one had used, and missed the dead one's last releases
// (a handle "held" with no address: a full suite run's failure).
describe("IPAM crash worker's report", () => {
  it("names every handle the worker left in the blocks, read only after the kill", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ocelot-crash-report-"));
    const url = `file:${join(dir, "store.db")}`;
    const store = await openDatastore(url);
    try {
      await putPool(store, "crash-pool", "10.71.0.0/20", { blockSize: 26 });
      const o = newOutcome();
      // Well past what a pipe and the reader's buffer hold (64 KiB + 64 KiB): a worker's
      // operation (an ADD and a release: two writes) reports about 50 bytes.
      await runAndKill(url, 0, o, Math.random, {
        stall: true,
        until: async () => (await store.revision()) > 8_000,
      });
      expect(await store.revision(), "the worker ran long enough").toBeGreaterThan(8_000);
      const diffs = differences(o, await holdings(new IpamStore(store)));
      expect(diffs, explain(o, diffs)).toEqual([]);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

scenario("the embedded store", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ocelot-crash-"));
  return {
    url: `file:${join(dir, "store.db")}`,
    close: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

const etcdSkip = skipWithReason("IPAM crash safety on etcd", etcdUnavailableReason());
if (!etcdSkip) {
  let etcd: EtcdServer | undefined;
  scenario("etcd", async () => {
    etcd = await startEtcd();
    return { url: etcd.url, close: async () => etcd?.stop() };
  });
}
