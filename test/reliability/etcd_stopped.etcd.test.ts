// etcd stopped, not frozen (issue 17, reliability): the real `ocelot node run` (no BGP,
// programming a network namespace with --netns) on a real etcd whose process is ended (SIGTERM)
// for 20 s (60 s in `npm run test:soak`), then started again on the same data: connections are
// refused at once, unlike the frozen etcd of etcd_outage.etcd.test.ts where they hang. Meanwhile
// /readyz answers 503 naming the datastore, /livez stays 200, the kernel keeps the last known
// state (the block's route), and the real `bin/ocelot-ipam` ADD fails fast (well inside its
// dial and request timeouts, printed) with a one-line CNI error naming the endpoint and code 11
// (try again later); it never hangs and writes nothing (after etcd is back, its container holds
// no address). The daemon retries without a tight loop (its log lines counted, printed) and
// converges after etcd is back: /readyz 200 and a block claimed after the outage reaches the
// kernel; the ADD works again.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Datastore } from "../../src/datastore/types.js";
import { IpamStore } from "../../src/ipam/store.js";
import { type EtcdServer, etcdUnavailableReason } from "../helpers/etcd.js";
import { type Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import { netConf, runCni } from "../ipam/cni_run.js";
import { putPool } from "../ipam/helpers.js";
import {
  BIN,
  blackholes as blackholesOf,
  type NodeProcess,
  type ReadyNode,
} from "../node/harness.js";
import { startEtcdNode, stopEtcdNode, waitDatastoreNotReady } from "./etcd_node.js";

const OUTAGE_MS = process.env.OCELOT_SOAK ? 60_000 : 20_000;
const NODE = "stopped-node";
const skip = skipWithReason(
  "node daemon with etcd stopped",
  netnsUnavailableReason() ?? etcdUnavailableReason(),
);

describe.skipIf(skip)("ocelot node run while etcd is stopped", () => {
  let etcd: EtcdServer;
  let store: Datastore;
  let ns: Netns;
  let dir: string;
  let daemon: NodeProcess;
  let get: ReadyNode["get"];
  let back: Promise<void> | undefined;
  const blackholes = () => blackholesOf(ns);

  beforeAll(async () => {
    ({ etcd, store, ns, dir, daemon, get } = await startEtcdNode({
      name: "stopped",
      ns: "es",
      node: NODE,
      ip: "192.0.2.51/24",
      pool: { name: "before", cidr: "10.74.0.0/24", handleId: "pod-before" },
    }));
  });

  afterAll(async () => {
    await back?.catch(() => {});
    await stopEtcdNode({ etcd, store, ns, dir, daemon });
  });

  it(`not ready while etcd is stopped (${OUTAGE_MS / 1000} s), forwarding on the last state, CNI ADD failing fast; ready and converged after`, async () => {
    let block = "";
    await waitFor(
      "the first block's route",
      () => {
        block = blackholes().find((b) => b.startsWith("10.74.")) ?? "";
        return block !== "";
      },
      60_000,
      100,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}: ${blackholes().join(" ")}\n${daemon.log}`);
    });
    const plugin = `${BIN}/ocelot-ipam`;
    const conf = netConf(etcd.url, NODE);
    const linesBefore = daemon.log.split("\n").length;
    // Ended now, started again on the same data dir after OUTAGE_MS (in the background).
    const t0 = Date.now();
    back = etcd.restart(OUTAGE_MS);
    await waitDatastoreNotReady(get, () => daemon.log);
    const noticed = Date.now() - t0;
    const adds: { ms: number; code: number | null; msg: string }[] = [];
    while (Date.now() - t0 < OUTAGE_MS - 5_000) {
      expect((await get("/livez")).status, "/livez during the outage").toBe(200);
      expect(blackholes(), "the kernel keeps the last known state").toContain(block);
      if (adds.length < 3) {
        const ta = Date.now();
        const r = await runCni(plugin, "ADD", `during-${adds.length}`, conf);
        const out = JSON.parse(r.stdout || "{}") as { code?: number; msg?: string };
        adds.push({ ms: Date.now() - ta, code: r.code, msg: out.msg ?? r.stdout + r.stderr });
        expect(r.code, `ADD during the outage: ${r.stdout}${r.stderr}`).not.toBe(0);
        expect(out.code, `the CNI error code: ${r.stdout}`).toBe(11);
        expect(out.msg, "one line").not.toContain("\n");
        expect(out.msg, "names the endpoint").toContain(etcd.endpoint);
        // Fails fast: bounded by the plugin's etcd dial timeout (5 s, src/datastore/etcd.ts),
        // plus 5 s for the process's own start on a loaded machine; never a hang.
        expect(Date.now() - ta, "the ADD's time to fail (ms)").toBeLessThan(10_000);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    const ready = await get("/readyz");
    expect(ready.status).toBe(503);
    expect(ready.text).toMatch(
      /datastore unreachable for \d+ s .*forwarding on the last known state/,
    );
    const outageLog = daemon.log.split("\n").slice(linesBefore);
    await back;
    back = undefined;
    const t1 = Date.now();
    await waitFor(
      "/readyz 200 again",
      async () => (await get("/readyz")).status === 200,
      60_000,
      200,
    );
    const readyMs = Date.now() - t1;
    // Nothing written by the refused ADDs.
    const ipam = new IpamStore(store);
    for (let i = 0; i < adds.length; i++)
      expect(await ipam.addressesOfHandle(`k8s-pod-network.during-${i}`), `during-${i}`).toEqual(
        [],
      );
    // A change after the outage: a second pool's block for this node reaches the kernel.
    await putPool(store, "after", "10.75.0.0/24", { blockSize: 26 });
    await ipam.autoAssign({
      handleId: "pod-after",
      node: NODE,
      num4: 1,
      num6: 0,
      pools4: ["10.75.0.0/24"],
    });
    await waitFor(
      "the new block's route",
      () => blackholes().some((b) => b.startsWith("10.75.")),
      60_000,
      100,
    );
    const after = await runCni(plugin, "ADD", "after-0", netConf(etcd.url, NODE));
    expect(after.code, `ADD after the outage: ${after.stdout}${after.stderr}`).toBe(0);
    expect((await runCni(plugin, "DEL", "after-0", netConf(etcd.url, NODE))).code).toBe(0);
    expect(daemon.has("Datastore unreachable: keeping the last known state, retrying")).toBe(true);
    expect(daemon.has("Datastore reachable again: listing everything again")).toBe(true);
    // Retries are damped: not a line per millisecond while etcd refuses.
    const perS = outageLog.length / (OUTAGE_MS / 1000);
    const byMsg = new Map<string, number>();
    for (const l of outageLog) {
      const m = /"msg":"([^"]*)"/.exec(l)?.[1] ?? l.slice(0, 80);
      byMsg.set(m, (byMsg.get(m) ?? 0) + 1);
    }
    console.log(
      [...byMsg]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 8)
        .map(([m, n]) => `${n} x ${m}`)
        .join("; "),
    );
    console.log(
      `etcd stopped ${OUTAGE_MS / 1000} s: not ready after ${noticed} ms; CNI ADDs failed in ${adds.map((a) => a.ms).join(", ")} ms (${adds[0]?.msg}); ${outageLog.length} daemon log lines during the outage (${perS.toFixed(1)}/s); ready again ${readyMs} ms after etcd was back; load ${(await import("node:fs")).readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`,
    );
    expect(adds.length).toBe(3);
    expect(perS, "daemon log lines a second while etcd is stopped").toBeLessThan(20);
  });
});
