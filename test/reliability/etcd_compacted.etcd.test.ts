// etcd restarted with a compacted history under a running node daemon (issue 17): the real
// `ocelot node run` (no BGP, programming a namespace with --netns) on a real etcd. The daemon is
// frozen (SIGSTOP, so it cannot see what happens next), etcd is restarted, and meanwhile the
// store moves on: the node's first block is released (its pod gone), a block of a second pool is
// claimed, and the history is compacted to the latest revision. The daemon is thawed: its watches
// cannot resume from the revision they last saw (etcd answers "compacted"), so it lists
// everything again: the released block's route leaves the kernel, the new one's arrives,
// /readyz is 200, and the log says the watch resynced because the revision was compacted.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Datastore } from "../../src/datastore/types.js";
import { type EtcdServer, etcdUnavailableReason } from "../helpers/etcd.js";
import { type Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import { blackholes as blackholesOf, type NodeProcess, type ReadyNode } from "../node/harness.js";
import { restartCompacted, startEtcdNode, stopEtcdNode } from "./etcd_node.js";

const NODE = "compacted-node";
const skip = skipWithReason(
  "node daemon over a compacted etcd",
  netnsUnavailableReason() ?? etcdUnavailableReason(),
);

describe.skipIf(skip)("ocelot node run over an etcd restarted with a compacted history", () => {
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
      name: "compacted",
      ns: "ec",
      node: NODE,
      ip: "192.0.2.51/24",
      pool: { name: "first", cidr: "10.74.0.0/24", handleId: "pod-first" },
      extra: ["--log-level", "debug"],
    }));
  });

  afterAll(async () => {
    if (frozen) daemon.proc.kill("SIGCONT");
    await stopEtcdNode({ etcd, store, ns, dir, daemon });
  });

  it("cannot resume its watches, lists everything again and converges to the store", async () => {
    await waitFor("the first block's route", () => blackholes().includes("10.74.0.0/26"), 60_000);
    daemon.proc.kill("SIGSTOP");
    frozen = true;
    // The first pod is gone and its block released; a second pool's block is claimed.
    const r = await restartCompacted(
      etcd,
      store,
      NODE,
      { handleId: "pod-first", block: "10.74.0.0/26" },
      { name: "second", cidr: "10.75.0.0/24", handleId: "pod-second" },
    );
    store = r.store;
    const { rev0, rev1 } = r;
    expect(blackholes(), "the frozen daemon changed nothing").toEqual(["10.74.0.0/26"]);

    const t0 = Date.now();
    daemon.proc.kill("SIGCONT");
    frozen = false;
    await waitFor(
      "the kernel equal to the store: the released block gone, the new one there",
      () => {
        const b = blackholes();
        return b.length === 1 && b[0] === "10.75.0.0/26";
      },
      60_000,
      100,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}: ${blackholes()}\n${daemon.log.slice(-4000)}`);
    });
    const converged = Date.now() - t0;
    await waitFor("/readyz 200", async () => (await get("/readyz")).status === 200, 60_000, 200);
    const resyncs = daemon.lines.filter((l) => l.msg === "Watch resync: listing again");
    console.log(
      `etcd restarted with history compacted to ${rev1} (daemon had seen ${rev0}): kernel converged ${converged} ms after the daemon resumed; ${resyncs.length} watch resyncs logged, ${resyncs.filter((l) => String((l as Record<string, unknown>).why).startsWith("revision compacted")).length} of them for the compaction`,
    );
    // The watch could not resume: etcd said the revision was compacted, and it listed again.
    const why = resyncs.map((l) => String((l as Record<string, unknown>).why));
    expect(
      why.some((w) => w.startsWith("revision compacted")),
      why.join("; "),
    ).toBe(true);
  });
});
