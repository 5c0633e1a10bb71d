// KubeControllersConfiguration read by `ocelot kube-controllers` and `ocelot ipam gc`:
// the pure settings (kcc.ts: Calico's "a controller runs when its section is present", the
// shortest reconcilerPeriod, leakGracePeriod, syncLabels, warnings naming what is not applied);
// the engine against the small API server and the embedded datastore (a Kubernetes Node's labels
// synced onto its Calico Node beside hand-set ones; a disabled `policy` controller leaves
// Kubernetes NetworkPolicies unwritten while the Profiles are kept; re-enabled, the policy lands;
// the warnings are logged); and `bin/ocelot ipam gc` taking node.leakGracePeriod when
// --leak-grace is not given.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyResource, ResourceClient } from "../../src/api/client.js";
import { kindOf } from "../../src/api/registry.js";
import { openDatastore } from "../../src/datastore/open.js";
import type { Datastore } from "../../src/datastore/types.js";
import { IpamStore } from "../../src/ipam/store.js";
import type { KubeControllers } from "../../src/k8s/controllers.js";
import { kubeControllersSettings, partOf, SYNC_PARTS } from "../../src/k8s/kcc.js";
import { KubeApi } from "../helpers/kube_api.js";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { waitFor } from "../helpers/netns.js";
import { startSyncedControllers } from "./synced.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const V3 = "projectcalico.org/v3";
const kcc = (spec: Record<string, unknown>) => ({
  apiVersion: V3,
  kind: "KubeControllersConfiguration",
  metadata: { name: "default" },
  spec,
});

describe("kubeControllersSettings()", () => {
  it("no resource: every part runs with the caller's period and grace", () => {
    const s = kubeControllersSettings(undefined);
    expect([...s.enabled]).toEqual(SYNC_PARTS);
    expect(s.resyncMs).toBeUndefined();
    expect(s.leakGraceMs).toBeUndefined();
    expect(s.warnings).toEqual([]);
  });

  it("Calico's default resource: every part, 5 min; an absent section disables its part", () => {
    const all = kubeControllersSettings({
      controllers: {
        node: { reconcilerPeriod: "5m", syncLabels: "Disabled", leakGracePeriod: "15m" },
        policy: { reconcilerPeriod: "5m" },
        workloadEndpoint: { reconcilerPeriod: "5m" },
        serviceAccount: { reconcilerPeriod: "5m" },
        namespace: { reconcilerPeriod: "90s" },
      },
    });
    expect([...all.enabled].sort()).toEqual([...SYNC_PARTS].sort());
    expect(all.resyncMs).toBe(90_000);
    expect(all.leakGraceMs).toBe(900_000);
    expect(all.warnings).toEqual([]);
    const some = kubeControllersSettings({ controllers: { node: {}, namespace: {} } });
    expect([...some.enabled].sort()).toEqual(["namespace", "node"]);
    expect(kubeControllersSettings({}).enabled.size).toBe(0);
  });

  it("names what it does not apply, and a bad period", () => {
    const s = kubeControllersSettings({
      controllers: {
        node: {
          syncLabels: "Enabled",
          hostEndpoint: {
            autoCreate: "Enabled",
            templates: [{ generateName: "t", interfacePattern: "eth0" }],
          },
        },
        policy: { reconcilerPeriod: "soon" },
        loadBalancer: { assignIPs: "AllServices" },
      },
      healthChecks: "Enabled",
      prometheusMetricsPort: 9094,
    });
    expect(s.warnings).toEqual([
      'controllers.policy.reconcilerPeriod "soon" is not a period above 0: ignored',
      expect.stringMatching(
        /^controllers\.node\.hostEndpoint\.templates\[0\] \(t\): interfacePattern is not applied/,
      ),
      expect.stringMatching(/^controllers\.loadBalancer is not applied/),
      "healthChecks is not applied by ocelot kube-controllers",
      "prometheusMetricsPort is not applied by ocelot kube-controllers",
    ]);
    expect(s.resyncMs).toBeUndefined();
    // syncLabels: Calico's default Enabled with the node section; off without the resource.
    expect(s.syncLabels).toBe(true);
    expect(kubeControllersSettings({ controllers: { node: {} } }).syncLabels).toBe(true);
    const off = { controllers: { node: { syncLabels: "Disabled" } } };
    expect(kubeControllersSettings(off).syncLabels).toBe(false);
    expect(kubeControllersSettings({ controllers: {} }).syncLabels).toBe(false);
    expect(kubeControllersSettings(undefined).syncLabels).toBe(false);
  });

  it("maps sync actions to their parts (Services and EndpointSlices always written)", () => {
    const put = (kind: string, name: string) => ({
      op: "put",
      resource: { kind, metadata: { name } },
    });
    expect(partOf(put("Profile", "kns.a"))).toBe("namespace");
    expect(partOf(put("Profile", "ksa.a.b"))).toBe("serviceAccount");
    expect(partOf(put("Profile", "mine"))).toBeUndefined();
    expect(partOf(put("WorkloadEndpoint", "n-k8s-p-eth0"))).toBe("workloadEndpoint");
    expect(partOf({ op: "delete", kind: "NetworkPolicy", name: "x" })).toBe("policy");
    expect(partOf({ op: "deleteNode", name: "n1" })).toBe("node");
    expect(partOf(put("Service", "web"))).toBeUndefined();
    expect(partOf(put("EndpointSlice", "web-1"))).toBeUndefined();
  });
});

describe("kube-controllers and ipam gc read the KubeControllersConfiguration", () => {
  let api: KubeApi;
  let dir: string;
  let store: Datastore;
  let client: ResourceClient;
  let ctl: KubeControllers | undefined;
  const logs: string[] = [];
  const KNP = kindOf("networking.k8s.io/v1", "NetworkPolicy");
  const PROFILE = kindOf(V3, "Profile");

  beforeAll(async () => {
    api = await KubeApi.start();
    dir = mkdtempSync(join(tmpdir(), "ocelot-kcc-"));
    store = await openDatastore(`file:${join(dir, "store.db")}`);
    client = new ResourceClient(store);
    // Every controller but policy.
    await applyResource(
      store,
      kcc({
        controllers: {
          node: { syncLabels: "Enabled", leakGracePeriod: "2h" },
          namespace: {},
          serviceAccount: {},
          workloadEndpoint: {},
        },
      }),
    );
    api.putNamespace("team-k", { team: "k" });
    api.putNode("kn1", { rack: "r1" });
    await applyResource(store, {
      apiVersion: V3,
      kind: "Node",
      metadata: { name: "calico-kn1", labels: { own: "x" } },
      spec: { orchRefs: [{ orchestrator: "k8s", nodeName: "kn1" }] },
    });
    ctl = await startSyncedControllers(
      { kubeconfig: api.writeKubeconfig(join(dir, "kubeconfig")), store },
      logs,
    );
  }, HANG_MS * 2);

  afterAll(async () => {
    await ctl?.stop();
    await store?.close();
    await api?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("syncLabels: the Kubernetes Node's labels onto its Calico Node; hand-set labels stay; a removed one goes", async () => {
    const NODE = kindOf(V3, "Node");
    if (!NODE) throw new Error("Node not registered");
    const labels = async () => (await client.get(NODE, "calico-kn1"))?.metadata.labels ?? {};
    await waitFor("the first sync of node labels", async () =>
      (await labels()).rack === "r1" ? true : undefined,
    );
    expect(await labels()).toEqual({ own: "x", rack: "r1" });
    expect((await client.get(NODE, "calico-kn1"))?.metadata.annotations).toEqual({
      "projectcalico.org/kube-labels": '{"rack":"r1"}',
    });
    api.putNode("kn1", { zone: "z1" });
    await waitFor("the relabel", async () => ((await labels()).zone === "z1" ? true : undefined));
    expect(await labels()).toEqual({ own: "x", zone: "z1" });
  });

  it("policy controller absent: the NetworkPolicy is not written; the Profile is", async () => {
    if (!KNP || !PROFILE) throw new Error("kinds not registered");
    expect(await client.get(PROFILE, "kns.team-k")).toBeDefined();
    api.putNetworkPolicy("team-k", "deny-all", { podSelector: {}, policyTypes: ["Ingress"] });
    api.putNamespace("team-k", { team: "k2" }); // a later change: a pass after the policy's
    await waitFor("the namespace relabel written", async () => {
      const p = await client.get(PROFILE, "kns.team-k");
      return (p?.spec as { labelsToApply?: Record<string, string> })?.labelsToApply?.[
        "pcns.team"
      ] === "k2"
        ? true
        : undefined;
    });
    expect(await client.get(KNP, "deny-all", "team-k")).toBeUndefined();
  });

  it("policy controller added: the NetworkPolicy lands", async () => {
    if (!KNP) throw new Error("NetworkPolicy not registered");
    await applyResource(
      store,
      kcc({ controllers: { node: {}, namespace: {}, policy: { reconcilerPeriod: "1m" } } }),
    );
    // The configuration is read by the next pass: an API change starts one.
    api.putNamespace("team-k", { team: "k3" });
    await waitFor("the NetworkPolicy written", async () =>
      (await client.get(KNP, "deny-all", "team-k")) ? true : undefined,
    );
    expect(logs).toContain(
      "kube-controllers: full pass every 60000 ms (KubeControllersConfiguration)",
    );
  });

  it("ipam gc takes controllers.node.leakGracePeriod unless --leak-grace is given", async () => {
    await applyResource(store, {
      apiVersion: V3,
      kind: "IPPool",
      metadata: { name: "kcc-pool" },
      spec: { cidr: "10.78.0.0/24", blockSize: 26 },
    });
    await applyResource(store, {
      apiVersion: V3,
      kind: "Node",
      metadata: { name: "kcc-node" },
      spec: {},
    });
    // An address with no WorkloadEndpoint: a leak.
    await new IpamStore(store).autoAssign({
      handleId: "h-leak",
      node: "kcc-node",
      num4: 1,
      num6: 0,
    });
    await applyResource(store, kcc({ controllers: { node: { leakGracePeriod: "2h" } } }));
    const gc = (...extra: string[]) => {
      const r = runSync(
        join(ROOT, "bin/ocelot"),
        [
          "ipam",
          "gc",
          "--once",
          "--json",
          "--datastore",
          `file:${join(dir, "store.db")}`,
          ...extra,
        ],
        { encoding: "utf8", timeout: HANG_MS },
      );
      expect(r.status, r.stderr).toBe(0);
      const j = JSON.parse(r.stdout) as {
        watching: { leaks: { firstSeen: string; releasableAfter: string }[] };
      };
      const l = j.watching.leaks[0];
      if (!l) throw new Error(`no leak watched: ${r.stdout}`);
      return Date.parse(l.releasableAfter) - Date.parse(l.firstSeen);
    };
    expect(gc()).toBe(2 * 3600_000);
    expect(gc("--leak-grace", "1m")).toBe(60_000);
    // 0: IPAM garbage collection off (Calico's meaning), unless the flag says otherwise.
    await applyResource(store, kcc({ controllers: { node: { leakGracePeriod: "0s" } } }));
    const off = runSync(
      join(ROOT, "bin/ocelot"),
      ["ipam", "gc", "--once", "--json", "--datastore", `file:${join(dir, "store.db")}`],
      { encoding: "utf8", timeout: HANG_MS },
    );
    expect(off.status, off.stderr).toBe(0);
    expect(off.stdout).toBe("");
    expect(off.stderr).toMatch(/ipam gc: off: .*leakGracePeriod is 0/);
    expect(gc("--leak-grace", "1m")).toBe(60_000);
  });
});
