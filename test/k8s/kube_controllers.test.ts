// `ocelot kube-controllers`' engine (src/k8s/controllers.ts) with the real
// `@kubernetes/client-node` informers against the small API server (test/helpers/kube_api.ts)
// and the real embedded datastore (SQLite file): a pod and a namespace relabelled reach the
// WorkloadEndpoint and the kns Profile; a NetworkPolicy created and deleted in the API lands and
// goes; the agent's rendered policy follows a service account's relabelling (ksa Profile); a watch broken mid-stream and a 410 Gone after compaction lose no change; a deleted
// Kubernetes Node takes its Calico Node, endpoints and IPAM affinity with it. Each latency from
// the API change to the datastore is printed.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyResource, ResourceClient } from "../../src/api/client.js";
import type { WorkloadEndpoint } from "../../src/api/node.js";
import { kindOf, type Resource } from "../../src/api/registry.js";
import { openDatastore } from "../../src/datastore/open.js";
import type { Datastore } from "../../src/datastore/types.js";
import { fromGlobalNetworkPolicy, renderPolicy } from "../../src/felix/policy.js";
import { IpamStore } from "../../src/ipam/store.js";
import { type KubeControllers, startKubeControllers } from "../../src/k8s/controllers.js";
import { endpointLabels } from "../../src/k8s/pod_labels.js";
import { policyEndpointsOf } from "../../src/node/agent_state.js";
import { KubeApi } from "../helpers/kube_api.js";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { waitFor } from "../helpers/netns.js";

function kindInfo(apiVersion: string, kind: string) {
  const i = kindOf(apiVersion, kind);
  if (!i) throw new Error(`${kind} is not registered`);
  return i;
}
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const WEP = kindInfo("projectcalico.org/v3", "WorkloadEndpoint");
const PROFILE = kindInfo("projectcalico.org/v3", "Profile");
const NODE = kindInfo("projectcalico.org/v3", "Node");
const KNP = kindInfo("networking.k8s.io/v1", "NetworkPolicy");

describe("ocelot kube-controllers against the small API server and the embedded datastore", () => {
  let api: KubeApi;
  let dir: string;
  let store: Datastore;
  let client: ResourceClient;
  let ctl: KubeControllers | undefined;
  const logs: string[] = [];

  const wepName = (node: string, pod: string) => `${node}-k8s-${pod}-eth0`;
  async function putEndpoint(node: string, ns: string, pod: string, ip: string) {
    await applyResource(store, {
      apiVersion: "projectcalico.org/v3",
      kind: "WorkloadEndpoint",
      metadata: { name: wepName(node, pod), namespace: ns, labels: endpointLabels(ns, "k8s") },
      spec: {
        orchestrator: "k8s",
        node,
        pod,
        endpoint: "eth0",
        interfaceName: `cali${pod.replace(/[^a-z0-9]/g, "")}`.slice(0, 15),
        ipNetworks: [`${ip}/32`],
        profiles: [`kns.${ns}`],
      },
    });
  }
  const labelsOf = async (node: string, ns: string, pod: string) =>
    (await client.get(WEP, wepName(node, pod), ns))?.metadata.labels ?? {};
  /** Waits for `cond` after `change`, polling every 10 ms; prints and returns the latency. */
  async function timed(what: string, change: () => void, cond: () => Promise<boolean>) {
    const t0 = performance.now();
    change();
    await waitFor(what, async () => ((await cond()) ? true : undefined), undefined, 10);
    const ms = performance.now() - t0;
    console.log(
      `kube-controllers: ${what}: ${ms.toFixed(0)} ms from the API change to the datastore`,
    );
    return ms;
  }

  beforeAll(async () => {
    api = await KubeApi.start();
    dir = mkdtempSync(join(tmpdir(), "ocelot-kubectl-"));
    store = await openDatastore(`file:${join(dir, "store.db")}`);
    client = new ResourceClient(store);
    api.putNamespace("team-a", { team: "a" });
    api.putServiceAccount("team-a", "web-sa", { role: "frontend" });
    api.putServiceAccount("team-a", "default");
    api.putPod("team-a", "web-1", { app: "web" }, "web-sa");
    api.putPod("team-a", "db-1", { app: "db" });
    api.putNode("node1");
    api.putNode("node2");
    await applyResource(store, {
      apiVersion: "projectcalico.org/v3",
      kind: "IPPool",
      metadata: { name: "pool" },
      spec: { cidr: "10.77.0.0/16", blockSize: 26 },
    });
    for (const n of ["node1", "node2"])
      await applyResource(store, {
        apiVersion: "projectcalico.org/v3",
        kind: "Node",
        metadata: { name: n },
        spec: { orchRefs: [{ orchestrator: "k8s", nodeName: n }] },
      });
    await putEndpoint("node1", "team-a", "web-1", "10.77.0.1");
    await putEndpoint("node2", "team-a", "db-1", "10.77.0.65");
    // node2 holds a block (its affinity) with one address.
    await new IpamStore(store).autoAssign({ handleId: "h-db-1", node: "node2", num4: 1, num6: 0 });
    // A Kubernetes NetworkPolicy applied by hand before: Kubernetes does not have it.
    await applyResource(store, {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: "stale", namespace: "team-a" },
      spec: { podSelector: {} },
    });
    ctl = await startKubeControllers({
      kubeconfig: api.writeKubeconfig(join(dir, "kubeconfig")),
      store,
      retryMs: 300,
      pageSize: 2, // every list in pages (continue tokens)
      log: (l) => logs.push(l),
    });
    const t0 = performance.now();
    await Promise.race([
      ctl.synced,
      new Promise((_, rej) =>
        setTimeout(() => rej(new Error(`not in sync: ${logs.join("\n")}`)), HANG_MS),
      ),
    ]);
    console.log(
      `kube-controllers: first pass done ${(performance.now() - t0).toFixed(0)} ms after start`,
    );
  }, HANG_MS * 2);

  afterAll(async () => {
    await ctl?.stop();
    await store?.close();
    await api?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("first pass: Profiles kns/ksa with Calico's labelsToApply, endpoint labels and profiles, stale policy removed", async () => {
    const kns = await client.get(PROFILE, "kns.team-a");
    expect((kns?.spec as { labelsToApply?: unknown } | undefined)?.labelsToApply).toEqual({
      "pcns.team": "a",
      "pcns.kubernetes.io/metadata.name": "team-a",
      "pcns.projectcalico.org/name": "team-a",
    });
    const ksa = await client.get(PROFILE, "ksa.team-a.web-sa");
    expect((ksa?.spec as { labelsToApply?: unknown } | undefined)?.labelsToApply).toEqual({
      "pcsa.role": "frontend",
      "pcsa.projectcalico.org/name": "web-sa",
    });
    const w = await client.get(WEP, wepName("node1", "web-1"), "team-a");
    expect(w?.metadata.labels).toMatchObject({
      app: "web",
      "pcns.team": "a",
      "projectcalico.org/serviceaccount": "web-sa",
    });
    expect(w?.spec).toMatchObject({
      profiles: ["kns.team-a", "ksa.team-a.web-sa"],
      serviceAccountName: "web-sa",
    });
    expect(await client.get(KNP, "stale", "team-a")).toBeUndefined();
    // Every list went in pages of 2.
    expect(api.requests.some((r) => r.includes("/api/v1/pods?") && r.includes("limit=2"))).toBe(
      true,
    );
  });

  it("a pod relabelled in the API: its endpoint's labels follow", async () => {
    const ms = await timed(
      "pod relabelled",
      () => api.putPod("team-a", "web-1", { app: "web", version: "v2" }, "web-sa"),
      async () => (await labelsOf("node1", "team-a", "web-1")).version === "v2",
    );
    expect(ms).toBeLessThan(HANG_MS);
  });

  it("a namespace relabelled: the kns Profile's labelsToApply and the endpoints' pcns labels follow", async () => {
    await timed(
      "namespace relabelled",
      () => api.putNamespace("team-a", { team: "a", env: "prod" }),
      async () => {
        const p = await client.get(PROFILE, "kns.team-a");
        const l = (p?.spec as { labelsToApply?: Record<string, string> })?.labelsToApply ?? {};
        return (
          l["pcns.env"] === "prod" &&
          (await labelsOf("node1", "team-a", "web-1"))["pcns.env"] === "prod"
        );
      },
    );
  });

  it("the agent's policy view follows: a rule on service-account and namespace labels picks the pod until its service account is relabelled", async () => {
    const policy = fromGlobalNetworkPolicy({
      metadata: { name: "from-frontends" },
      spec: {
        selector: "app == 'web'",
        ingress: [
          {
            action: "Allow",
            source: {
              selector: "pcns.env == 'prod'",
              serviceAccounts: { selector: "role == 'frontend'" },
            },
          },
        ],
      } as never,
    });
    /** The rule's ipset members as the agent renders them from what the datastore holds now. */
    const members = async () => {
      const profiles = (await client.list(PROFILE)).items as Resource[];
      const labels = new Map(
        profiles.map((p) => [
          p.metadata.name,
          (p.spec as { labelsToApply?: Record<string, string> }).labelsToApply ?? {},
        ]),
      );
      const weps = (await client.list(WEP)).items as unknown as WorkloadEndpoint[];
      const endpoints = policyEndpointsOf(weps, "node1", labels);
      return renderPolicy({ endpoints, policies: [policy] }, 4).ipsets.flatMap((i) => i.members);
    };
    expect(await members()).toEqual(["10.77.0.1/32"]);
    await timed(
      "service account relabelled (ksa Profile)",
      () => api.putServiceAccount("team-a", "web-sa", { role: "backend" }),
      async () => (await members()).length === 0,
    );
  });

  it("a NetworkPolicy created in the API lands in the datastore as `ocelot apply` stores it; deleted, it goes", async () => {
    await timed(
      "NetworkPolicy created",
      () =>
        api.putNetworkPolicy("team-a", "allow-web", {
          podSelector: { matchLabels: { app: "web" } },
          policyTypes: ["Ingress"],
          ingress: [
            {
              from: [{ podSelector: { matchLabels: { app: "client" } } }],
              ports: [{ protocol: "TCP", port: 80 }],
            },
          ],
        }),
      async () => (await client.get(KNP, "allow-web", "team-a")) !== undefined,
    );
    const p = (await client.get(KNP, "allow-web", "team-a")) as Resource;
    expect(p.spec).toMatchObject({
      podSelector: { matchLabels: { app: "web" } },
      ingress: [
        {
          from: [{ podSelector: { matchLabels: { app: "client" } } }],
          ports: [{ protocol: "TCP", port: 80 }],
        },
      ],
    });
    await timed(
      "NetworkPolicy deleted",
      () => api.deleteObject("NetworkPolicy", "team-a", "allow-web"),
      async () => (await client.get(KNP, "allow-web", "team-a")) === undefined,
    );
  });

  it("a watch broken mid-stream, then a 410 Gone after compaction: no change is lost", async () => {
    expect(api.openWatches()).toBe(7); // one per kind
    await timed(
      "pod relabelled after the watches broke",
      () => {
        expect(api.breakWatches()).toBe(7);
        api.putPod("team-a", "web-1", { app: "web", version: "v3" }, "web-sa");
      },
      async () => (await labelsOf("node1", "team-a", "web-1")).version === "v3",
    );
    await waitFor("the watches back", () => (api.openWatches() === 7 ? true : undefined));
    const before = api.requests.filter(
      (r) => r.startsWith("GET /api/v1/pods?") && !r.includes("watch="),
    ).length;
    await timed(
      "pod relabelled while the history was compacted (410 Gone, relist)",
      () => {
        api.breakWatches();
        api.putPod("team-a", "web-1", { app: "web", version: "v4" }, "web-sa");
        api.compact();
      },
      async () => (await labelsOf("node1", "team-a", "web-1")).version === "v4",
    );
    const after = api.requests.filter(
      (r) => r.startsWith("GET /api/v1/pods?") && !r.includes("watch="),
    ).length;
    expect(after).toBeGreaterThan(before); // listed again
  });

  it("a Kubernetes Node deleted: its Calico Node, its endpoints and its IPAM affinity go; the other node's stay", async () => {
    const ipam = new IpamStore(store);
    const affinities = async (n: string) =>
      (await store.list(ipam.keys.affinityPrefix(n, 4))).items.length;
    expect(await affinities("node2")).toBe(1);
    await timed(
      "Kubernetes Node deleted",
      () => api.deleteObject("Node", undefined, "node2"),
      async () =>
        (await client.get(NODE, "node2")) === undefined && (await affinities("node2")) === 0,
    );
    expect(await client.get(WEP, wepName("node2", "db-1"), "team-a")).toBeUndefined();
    expect(await client.get(NODE, "node1")).toBeDefined();
    expect(await client.get(WEP, wepName("node1", "web-1"), "team-a")).toBeDefined();
    expect(logs.some((l) => l.startsWith('kube-controllers: deleted node "node2"'))).toBe(true);
  });

  it("namespace and service account deleted: their Profiles go", async () => {
    api.deletePod("team-a", "web-1");
    api.deleteObject("ServiceAccount", "team-a", "web-sa");
    await waitFor("ksa profile removed", async () =>
      (await client.get(PROFILE, "ksa.team-a.web-sa")) === undefined ? true : undefined,
    );
    expect(await client.get(PROFILE, "kns.team-a")).toBeDefined();
  });
});

describe("bin/ocelot kube-controllers", () => {
  it("runs against a kubeconfig and a file datastore, writes the Profiles, says when in sync, stops on SIGTERM", async () => {
    const api = await KubeApi.start();
    const dir = mkdtempSync(join(tmpdir(), "ocelot-kubectl-bin-"));
    const child = spawn(
      join(ROOT, "bin/ocelot"),
      [
        "kube-controllers",
        "--kubeconfig",
        api.writeKubeconfig(join(dir, "kubeconfig")),
        "--datastore",
        `file:${join(dir, "store.db")}`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    const kill = setTimeout(() => child.kill("SIGKILL"), HANG_MS);
    try {
      api.putNamespace("ns1", { a: "b" });
      await waitFor("in sync", () =>
        stderr.includes("kube-controllers: in sync") ? true : undefined,
      );
      expect(stderr).toMatch(/created profile "kns\.ns1" \(new\)/);
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      const store = await openDatastore(`file:${join(dir, "store.db")}`);
      try {
        expect(await new ResourceClient(store).get(PROFILE, "kns.ns1")).toBeDefined();
      } finally {
        await store.close();
      }
    } finally {
      clearTimeout(kill);
      if (child.exitCode === null) child.kill("SIGKILL");
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("takes the datastore lease node daemons use: waits out a holder that stopped renewing", async () => {
    const api = await KubeApi.start();
    const dir = mkdtempSync(join(tmpdir(), "ocelot-kubectl-lease-"));
    const url = `file:${join(dir, "store.db")}`;
    const pre = await openDatastore(url);
    // A node that held the lease and died (it never renews again).
    await pre.create(
      "/ocelot/leases/kube-controllers",
      JSON.stringify({ holder: "node-gone", ttlMs: 1000, renewals: 0 }),
    );
    await pre.close();
    const t0 = performance.now();
    const child = spawn(
      join(ROOT, "bin/ocelot"),
      [
        ...["kube-controllers", "--kubeconfig", api.writeKubeconfig(join(dir, "kubeconfig"))],
        ...["--datastore", url, "--lease-ttl", "1"],
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    const kill = setTimeout(() => child.kill("SIGKILL"), HANG_MS);
    try {
      await waitFor("in sync", () =>
        stderr.includes("kube-controllers: in sync") ? true : undefined,
      );
      const ms = performance.now() - t0;
      expect(stderr).toMatch(/lease kube-controllers: leader \(takeover\)/);
      expect(ms).toBeGreaterThanOrEqual(1000);
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      const store = await openDatastore(url);
      try {
        // Released on the clean stop.
        expect(await store.get("/ocelot/leases/kube-controllers")).toBeUndefined();
      } finally {
        await store.close();
      }
    } finally {
      clearTimeout(kill);
      if (child.exitCode === null) child.kill("SIGKILL");
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("without a kubeconfig: a usage error naming the flag", () => {
    const r = runSync(join(ROOT, "bin/ocelot"), ["kube-controllers"], {
      env: { ...process.env, KUBECONFIG: "" },
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("--kubeconfig (or $KUBECONFIG) is required");
  });
});
