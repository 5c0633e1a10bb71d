// Datastore loss under a running node daemon (issue 17): the real `ocelot node run` (no BGP,
// programming a network namespace with --netns) on a real etcd; etcd is frozen (SIGSTOP: its
// connections hang, the hardest case for timeouts) for 20 s (60 s in `npm run test:soak`).
// Meanwhile /readyz answers 503 naming the datastore, /livez stays 200, and the kernel keeps
// the last known state (the block's route stays), and the real `bin/ocelot-ipam` ADD fails with
// a one-line CNI error (code 11, try again later) naming the endpoint, within its dial timeout
// (printed): it never hangs on the frozen connection. When etcd answers again, /readyz is 200
// and a block claimed after the outage reaches the kernel: the daemon converged to the store
// again; the refused ADD holds no address. A stopped etcd: etcd_stopped.etcd.test.ts.
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
/** The ocelot-ipam's etcd dial timeout (5 s, src/datastore/etcd.ts) and 5 s for its start. */
const ADD_BOUND_MS = 10_000;
const NODE = "outage-node";
const skip = skipWithReason(
  "node daemon under an etcd outage",
  netnsUnavailableReason() ?? etcdUnavailableReason(),
);

describe.skipIf(skip)("ocelot node run while etcd is frozen", () => {
  let etcd: EtcdServer;
  let store: Datastore;
  let ns: Netns;
  let dir: string;
  let daemon: NodeProcess;
  let frozen = false;
  let get: ReadyNode["get"];
  const blackholes = () => blackholesOf(ns);

  beforeAll(async () => {
    ({ etcd, store, ns, dir, daemon, get } = await startEtcdNode({
      name: "outage",
      ns: "eo",
      node: NODE,
      ip: "192.0.2.50/24",
      pool: { name: "before", cidr: "10.72.0.0/24", handleId: "pod-before" },
    }));
  });

  afterAll(async () => {
    if (frozen) process.kill(etcd.pid, "SIGCONT");
    await stopEtcdNode({ etcd, store, ns, dir, daemon });
  });

  it(`not ready while etcd does not answer (${OUTAGE_MS / 1000} s), forwarding on the last state; ready and converged after`, async () => {
    await waitFor(
      "the first block's route",
      () => blackholes().includes("10.72.0.0/26"),
      60_000,
      100,
    );
    process.kill(etcd.pid, "SIGSTOP");
    frozen = true;
    const t0 = Date.now();
    await waitDatastoreNotReady(get, () => daemon.log);
    const noticed = Date.now() - t0;
    // A CNI ADD while etcd does not answer: it fails, in bounded time, saying why.
    const ta = Date.now();
    const add = await runCni(`${BIN}/ocelot-ipam`, "ADD", "during-freeze", netConf(etcd.url, NODE));
    const addMs = Date.now() - ta;
    const addOut = JSON.parse(add.stdout || "{}") as { code?: number; msg?: string };
    expect(add.code, `ADD while etcd is frozen: ${add.stdout}${add.stderr}`).not.toBe(0);
    expect(addOut.code, add.stdout).toBe(11);
    expect(addOut.msg, "one line").not.toContain("\n");
    expect(addOut.msg, "names the endpoint").toContain(etcd.endpoint);
    // Fails fast: bounded by the plugin's etcd dial timeout (5 s), plus 5 s for the process's
    // own start on a loaded machine; never a hang.
    expect(addMs, "the ADD's time to fail (ms)").toBeLessThan(ADD_BOUND_MS);
    while (Date.now() - t0 < OUTAGE_MS) {
      expect((await get("/livez")).status, "/livez during the outage").toBe(200);
      expect(blackholes(), "the kernel keeps the last known state").toContain("10.72.0.0/26");
      await new Promise((r) => setTimeout(r, 1000));
    }
    const ready = await get("/readyz");
    expect(ready.status).toBe(503);
    expect(ready.text).toMatch(
      /datastore unreachable for \d+ s .*forwarding on the last known state/,
    );
    process.kill(etcd.pid, "SIGCONT");
    frozen = false;
    const t1 = Date.now();
    await waitFor(
      "/readyz 200 again",
      async () => (await get("/readyz")).status === 200,
      60_000,
      200,
    );
    const back = Date.now() - t1;
    // A change after the outage: a second pool's block for this node reaches the kernel.
    await putPool(store, "after", "10.73.0.0/24", { blockSize: 26 });
    await new IpamStore(store).autoAssign({
      handleId: "pod-after",
      node: NODE,
      num4: 1,
      num6: 0,
      pools4: ["10.73.0.0/24"],
    });
    await waitFor(
      "the new block's route",
      () => blackholes().includes("10.73.0.0/26"),
      60_000,
      100,
    );
    expect(
      await new IpamStore(store).addressesOfHandle("k8s-pod-network.during-freeze"),
      "the refused ADD's addresses",
    ).toEqual([]);
    expect(daemon.has("Datastore unreachable: keeping the last known state, retrying")).toBe(true);
    expect(daemon.has("Datastore reachable again: listing everything again")).toBe(true);
    console.log(
      `etcd outage ${OUTAGE_MS / 1000} s: not ready after ${noticed} ms; a CNI ADD failed after ${addMs} ms (${addOut.msg}); ready again ${back} ms after etcd answered`,
    );
  });
});
