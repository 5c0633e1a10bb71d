// The small API server of test/helpers/kube_api.ts driven by the real `@kubernetes/client-node`
// (its typed CoreV1Api, its Watch and its informer), so that what the Ocelot tests build on it
// rests on the API's documented semantics as the client reads them: reads and 404 Status,
// chunked lists (limit/continue from one snapshot), watch from a resourceVersion, BOOKMARKs,
// 410 Expired and the informer's relist; and src/k8s/pod_reader.ts's facts and its errors.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { endpointLabels } from "../../src/k8s/pod_labels.js";
import { KubeError, readPodFacts } from "../../src/k8s/pod_reader.js";
import { KubeApi } from "../helpers/kube_api.js";
import { waitFor } from "../helpers/netns.js";

describe("small Kubernetes API server, driven by @kubernetes/client-node", () => {
  let api: KubeApi;
  let dir: string;
  let kubeconfig: string;
  let kc: k8s.KubeConfig;
  let core: k8s.CoreV1Api;

  beforeAll(async () => {
    api = await KubeApi.start();
    dir = mkdtempSync(join(tmpdir(), "ocelot-kube-"));
    kubeconfig = api.writeKubeconfig(join(dir, "kubeconfig"));
    kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfig);
    core = kc.makeApiClient(k8s.CoreV1Api);
    api.putNamespace("team-a", { team: "a" });
    api.putPod("team-a", "web-1", { app: "web", tier: "front" }, "web-sa");
  });

  afterAll(async () => {
    await api?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("reads a pod and a namespace; a missing one is the client's 404 ApiException", async () => {
    const pod = await core.readNamespacedPod({ name: "web-1", namespace: "team-a" });
    expect(pod.metadata?.labels).toEqual({ app: "web", tier: "front" });
    expect(pod.spec?.serviceAccountName).toBe("web-sa");
    const ns = await core.readNamespace({ name: "team-a" });
    expect(ns.metadata?.labels).toEqual({ team: "a", "kubernetes.io/metadata.name": "team-a" });
    await expect(
      core.readNamespacedPod({ name: "nope", namespace: "team-a" }),
    ).rejects.toMatchObject({ code: 404 });
  });

  it("a request without the kubeconfig's bearer token is 401 Unauthorized", async () => {
    const anon = new k8s.KubeConfig();
    anon.loadFromOptions({
      clusters: [{ name: "c", server: api.url, caData: Buffer.from(api.caPem).toString("base64") }],
      users: [{ name: "u" }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    });
    await expect(
      anon.makeApiClient(k8s.CoreV1Api).readNamespace({ name: "team-a" }),
    ).rejects.toMatchObject({ code: 401 });
  });

  it("chunked list: every page from the first page's snapshot; an expired continue token is 410", async () => {
    for (const n of ["p1", "p2", "p3", "p4"]) api.putPod("chunks", n, { n });
    const first = await core.listNamespacedPod({ namespace: "chunks", limit: 3 });
    expect(first.items.map((p) => p.metadata?.name)).toEqual(["p1", "p2", "p3"]);
    expect(first.metadata?._continue).toBeTruthy();
    api.putPod("chunks", "p0", {}); // after the snapshot: not on the next page
    api.deletePod("chunks", "p4"); // deleted after the snapshot: still on the next page
    const second = await core.listNamespacedPod({
      namespace: "chunks",
      limit: 3,
      _continue: first.metadata?._continue,
    });
    expect(second.items.map((p) => p.metadata?.name)).toEqual(["p4"]);
    expect(second.metadata?._continue).toBeFalsy();
    expect(second.metadata?.resourceVersion).toBe(first.metadata?.resourceVersion);
    api.compact();
    await expect(
      core.listNamespacedPod({
        namespace: "chunks",
        limit: 3,
        _continue: first.metadata?._continue,
      }),
    ).rejects.toMatchObject({ code: 410 });
  });

  it("watch from a resourceVersion streams later events in order, with BOOKMARKs; too old: ERROR 410", async () => {
    const list = await core.listNamespacedPod({ namespace: "team-a" });
    const rv = list.metadata?.resourceVersion as string;
    const seen: string[] = [];
    const ctl = await new k8s.Watch(kc).watch(
      "/api/v1/namespaces/team-a/pods",
      { resourceVersion: rv, allowWatchBookmarks: true },
      (type, obj) =>
        seen.push(`${type} ${obj.metadata?.name ?? ""}@${obj.metadata?.resourceVersion}`),
      () => undefined,
    );
    await waitFor("the watch is open", () => api.openWatches() > 0);
    api.putPod("team-a", "web-2", { app: "web" });
    api.putPod("team-a", "web-2", { app: "web", v: "2" });
    api.deletePod("team-a", "web-2");
    api.putPod("other", "x", {}); // another namespace: not in this watch
    api.bookmark();
    const now = api.resourceVersion;
    await waitFor("four events", () => seen.length >= 4);
    expect(seen.map((s) => s.split("@")[0])).toEqual([
      "ADDED web-2",
      "MODIFIED web-2",
      "DELETED web-2",
      "BOOKMARK ",
    ]);
    expect(seen[3]).toBe(`BOOKMARK @${now}`);
    ctl.abort();

    api.compact();
    const errors: unknown[] = [];
    let done = false;
    await new k8s.Watch(kc).watch(
      "/api/v1/namespaces/team-a/pods",
      { resourceVersion: rv },
      (type, obj) => errors.push({ type, code: obj.code, reason: obj.reason }),
      () => {
        done = true;
      },
    );
    await waitFor("the stale watch ends", () => done);
    expect(errors).toEqual([{ type: "ERROR", code: 410, reason: "Expired" }]);
  });

  it("the client's informer relists after a broken watch and after 410, losing no change", async () => {
    const informer = k8s.makeInformer(kc, "/api/v1/namespaces", () => core.listNamespace());
    const labels = new Map<string, string | undefined>();
    const record = (o: k8s.V1Namespace) =>
      labels.set(o.metadata?.name ?? "", o.metadata?.labels?.team);
    informer.on("add", record);
    informer.on("update", record);
    informer.on("error", () => setTimeout(() => informer.start(), 100));
    await informer.start();
    try {
      await waitFor("team-a listed", () => labels.get("team-a") === "a");
      await waitFor("the watch is open", () => api.openWatches() > 0);
      expect(api.breakWatches()).toBeGreaterThan(0);
      api.putNamespace("team-a", { team: "a2" }); // while no watch is open
      await waitFor("change made while the watch was broken", () => labels.get("team-a") === "a2");
      await waitFor("the watch is open again", () => api.openWatches() > 0);
      const lists = api.requests.filter(
        (r) => r.startsWith("GET /api/v1/namespaces?") || r === "GET /api/v1/namespaces",
      ).length;
      api.compact();
      api.breakWatches();
      api.putNamespace("team-a", { team: "a3" });
      await waitFor("change made across a 410", () => labels.get("team-a") === "a3");
      const relists = api.requests.filter(
        (r) => r.startsWith("GET /api/v1/namespaces?") || r === "GET /api/v1/namespaces",
      ).length;
      expect(relists).toBeGreaterThan(lists);
    } finally {
      await informer.stop();
    }
  });

  it("readPodFacts: labels, namespace labels, service account; Ocelot's endpoint labels from them", async () => {
    const facts = await readPodFacts(kubeconfig, { namespace: "team-a", name: "web-1" }, 30_000);
    expect(facts).toEqual({
      labels: { app: "web", tier: "front" },
      namespaceLabels: { team: "a3", "kubernetes.io/metadata.name": "team-a" },
      serviceAccount: "web-sa",
    });
    expect(endpointLabels("team-a", "k8s", facts)).toEqual({
      app: "web",
      tier: "front",
      "pcns.team": "a3",
      "pcns.kubernetes.io/metadata.name": "team-a",
      "projectcalico.org/namespace": "team-a",
      "projectcalico.org/orchestrator": "k8s",
      "projectcalico.org/serviceaccount": "web-sa",
    });
  });

  it("readPodFacts errors: not found (not retryable), HTTP 500 and unreachable (retryable), one line each", async () => {
    const err = (p: Promise<unknown>) =>
      p.then(
        () => undefined,
        (e: unknown) => e as KubeError,
      );
    const missing = await err(
      readPodFacts(kubeconfig, { namespace: "team-a", name: "gone" }, 30_000),
    );
    expect(missing).toBeInstanceOf(KubeError);
    expect(missing?.retryable).toBe(false);
    expect(missing?.message).toBe(`Pod team-a/gone not found on ${api.url}: pods "gone" not found`);
    api.failWith = 500;
    try {
      const failing = await err(
        readPodFacts(kubeconfig, { namespace: "team-a", name: "web-1" }, 30_000),
      );
      expect(failing?.retryable).toBe(true);
      expect(failing?.message).toContain("answered HTTP 500");
    } finally {
      api.failWith = undefined;
    }
    const closed = await KubeApi.start();
    const deadUrl = closed.url;
    await closed.close();
    const dead = api.writeKubeconfig(join(dir, "dead"), deadUrl);
    const down = await err(readPodFacts(dead, { namespace: "team-a", name: "web-1" }, 30_000));
    expect(down?.retryable).toBe(true);
    expect(down?.message).toMatch(/unreachable \(ECONNREFUSED/);
    expect(down?.message).not.toContain("\n");
    const noFile = await err(
      readPodFacts(join(dir, "none"), { namespace: "a", name: "b" }, 30_000),
    );
    expect(noFile?.retryable).toBe(false);
    expect(noFile?.message).toContain("cannot be read");
  });
});
