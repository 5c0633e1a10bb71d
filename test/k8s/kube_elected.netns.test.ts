// kube-controllers inside `ocelot node run`, on one node elected by the datastore lease: two real
// daemons (node namespaces, --no-bgp, one embedded store), both given a kubeconfig of the small
// API server (test/helpers/kube_api.ts, reached over a veth to this namespace). Only the first
// runs the controllers (its log says so, the other's does not; the API server sees one set of
// seven watches), and a pod relabelled in the API reaches its WorkloadEndpoint. The leader is
// killed (SIGKILL: no clean release): the other takes over after the lease's TTL, and the next
// relabel arrives through it. Its clean stop (SIGTERM) then deletes the lease. Times printed.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyResource, ResourceClient } from "../../src/api/client.js";
import { kindOf } from "../../src/api/registry.js";
import { LEASE_PREFIX } from "../../src/datastore/lease.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { endpointLabels } from "../../src/k8s/pod_labels.js";
import { KubeApi } from "../helpers/kube_api.js";
import { runSync } from "../helpers/limits.js";
import { link, Netns, RUN_PREFIX, skipWithReason, waitFor } from "../helpers/netns.js";
import { daemonTestsUnavailable, type NodeProcess, startNode } from "../node/harness.js";

const skip = skipWithReason("kube-controllers elected in node run", daemonTestsUnavailable());
const TTL_S = 2;
/** Root-side veth addresses (the API server listens on the first) and the nodes' ends. */
const ROOT = ["100.127.91.1", "100.127.92.1"];
const ENDS = ["100.127.91.2", "100.127.92.2"];

describe.skipIf(skip)("kube-controllers in ocelot node run: one elected node", () => {
  let dir: string;
  let store: SqliteDatastore;
  let client: ResourceClient;
  let api: KubeApi;
  const ns: Netns[] = [];
  const daemons: NodeProcess[] = [];
  const veths: string[] = [];
  const WEP = kindOf("projectcalico.org/v3", "WorkloadEndpoint");
  const started = (d: NodeProcess) => d.has(/^kube-controllers: started on/);
  const labels = async () =>
    (await client.get(WEP as NonNullable<typeof WEP>, "other-k8s-web--1-eth0", "team-a"))?.metadata
      .labels ?? {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-kelect-"));
    store = new SqliteDatastore(join(dir, "store.db"));
    client = new ResourceClient(store);
    for (const i of [0, 1]) {
      const n = Netns.create(`ke${i + 1}`);
      ns.push(n);
      const veth = `${RUN_PREFIX}k${i}`;
      runSync("ip", ["link", "add", veth, "type", "veth", "peer", "name", "kapi", "netns", n.name]);
      veths.push(veth);
      runSync("ip", ["addr", "add", `${ROOT[i]}/30`, "dev", veth]);
      runSync("ip", ["link", "set", veth, "up"]);
      n.ip("addr", "add", `${ENDS[i]}/30`, "dev", "kapi");
      n.ip("link", "set", "kapi", "up");
      // The API server listens on ROOT[0]: node 2 reaches it through its own veth.
      if (i === 1) n.ip("route", "add", `${ROOT[0]}/32`, "via", ROOT[1] as string);
    }
    link(ns[0] as Netns, "eth0", "10.94.7.1/24", ns[1] as Netns, "eth0", "10.94.7.2/24");
    api = await KubeApi.start(0, [ROOT[0] as string]);
    api.putNamespace("team-a");
    api.putPod("team-a", "web-1", { app: "web" });
    // The pod's endpoint, on a node that is not running (nothing here programs it).
    await applyResource(store, {
      apiVersion: "projectcalico.org/v3",
      kind: "WorkloadEndpoint",
      metadata: {
        name: "other-k8s-web--1-eth0",
        namespace: "team-a",
        labels: endpointLabels("team-a", "k8s"),
      },
      spec: {
        orchestrator: "k8s",
        node: "other",
        pod: "web-1",
        endpoint: "eth0",
        interfaceName: "caliweb1",
        ipNetworks: ["10.77.0.1/32"],
      },
    });
  });

  afterAll(async () => {
    for (const d of daemons) await d.stop();
    await api?.close();
    for (const n of ns) n.destroy();
    for (const v of veths) runSync("ip", ["link", "del", v]);
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const start = async (i: number) => {
    const kubeconfig = api.writeKubeconfig(join(dir, `kubeconfig${i}`));
    daemons[i] = await startNode(ns[i] as Netns, [
      ...["--nodename", `node${i + 1}`, "--ip", `10.94.7.${i + 1}/24`, "--no-bgp"],
      ...["--datastore", `file:${join(dir, "store.db")}`],
      ...["--status-socket", join(dir, `n${i}.sock`), "--resync-interval", "5s"],
      ...["--kubeconfig", kubeconfig, "--kube-controllers-lease-ttl", `${TTL_S}s`],
    ]);
  };

  it("the first node takes the lease and runs the controllers; the second stands by", async () => {
    await start(0);
    await waitFor("node1's kube-controllers", () => started(daemons[0] as NodeProcess), 30_000);
    await start(1);
    await waitFor("node1's endpoint labels", async () =>
      (await labels()).app === "web" ? true : undefined,
    );
    // Three TTLs: node2 keeps seeing node1 renew.
    await new Promise((r) => setTimeout(r, TTL_S * 3000));
    expect(started(daemons[1] as NodeProcess)).toBe(false);
    expect(api.openWatches()).toBe(7);
    const lease = await store.get(`${LEASE_PREFIX}kube-controllers`);
    expect(JSON.parse(lease?.value ?? "{}").holder).toBe("node1");
  });

  it("the leader killed: the other takes over after the TTL and syncs the next change", async () => {
    const t0 = performance.now();
    (daemons[0] as NodeProcess).proc.kill("SIGKILL");
    await daemons[0]?.exit;
    api.putPod("team-a", "web-1", { app: "web", version: "v2" });
    await waitFor(
      "node2's kube-controllers",
      () => started(daemons[1] as NodeProcess),
      TTL_S * 10_000,
    );
    await waitFor("the relabel through node2", async () =>
      (await labels()).version === "v2" ? true : undefined,
    );
    const ms = performance.now() - t0;
    console.log(
      `kube-controllers: leader killed to the change synced by the other: ${ms.toFixed(0)} ms (TTL ${TTL_S} s)`,
    );
    expect(ms).toBeGreaterThanOrEqual(TTL_S * 1000 * 0.9);
    // node2's seven watches, the killed node's gone with its connections.
    await waitFor("seven watches", () => api.openWatches() === 7 || undefined);
    await new Promise((r) => setTimeout(r, 500));
    expect(api.openWatches()).toBe(7);
    const lease = await store.get(`${LEASE_PREFIX}kube-controllers`);
    expect(JSON.parse(lease?.value ?? "{}").holder).toBe("node2");
  });

  it("a clean stop releases the lease", async () => {
    await daemons[1]?.stop();
    expect(await store.get(`${LEASE_PREFIX}kube-controllers`)).toBeUndefined();
    expect(daemons[1]?.has(/^kube-controllers: stopped on node2/)).toBe(true);
  });
});
