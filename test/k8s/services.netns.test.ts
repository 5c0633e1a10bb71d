// Rule `services` matches with real traffic, end to end: the small Kubernetes API server
// (test/helpers/kube_api.ts) holds namespaces team-a and team-b, pods client (team-a), web-1 and
// db-1 (team-b), a Service "web" (team-b) whose EndpointSlice holds web-1:8080, and a Service
// "clients" (team-a) whose slice holds the client; `ocelot kube-controllers`' engine (the real
// client's informers) copies them into the embedded datastore; the real `bin/ocelot node run`
// renders policy in a node namespace for pods wired by the real `bin/ocelot-cni`.
// Policies: the client may only egress to Service web's endpoints (destination services), and
// team-b accepts only what comes from Service clients' endpoints (source services).
// TCP connects are counted on both sides (the client's result and the server's accept log):
// client -> web-1:8080 gets through; client -> web-1:9090 (not an endpoint port) and client ->
// db-1:8080 do not; db-1 -> web-1:8080 does not (not a clients endpoint). Then the EndpointSlice
// moves to db-1: the ipset changes in place (iptables-save unchanged), db-1:8080 opens and
// web-1:8080 closes; the time from the API change to the kernel's set is printed.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyResource, ResourceClient } from "../../src/api/client.js";
import { kindOf } from "../../src/api/registry.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { serviceIpsetName } from "../../src/felix/service_match.js";
import { type KubeControllers, startKubeControllers } from "../../src/k8s/controllers.js";
import { addUplink } from "../helpers/cni.js";
import { KubeApi } from "../helpers/kube_api.js";
import { runSync } from "../helpers/limits.js";
import { Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import {
  cni,
  daemonTestsUnavailable,
  type NodeProcess,
  netconf,
  startNode,
} from "../node/harness.js";

const skip = skipWithReason("services matches netns", daemonTestsUnavailable());
const NODE = "node-s";
const POOL = "10.73.0.0/16";
const PORTS = [8080, 9090];
const WEP = kindOf("projectcalico.org/v3", "WorkloadEndpoint");

interface Pod {
  ns: Netns;
  namespace: string;
  name: string;
  ip: string;
  /** The server's accept log (one line per accepted connection: its port). */
  log: string;
}

/**
 * One TCP connect from a pod: true when it was accepted (the server answers "ok"). Expected to
 * pass: up to 5 tries of 10 s (a loaded machine is slow); expected to be dropped: one of 1.5 s.
 */
function connects(from: Netns, to: Pod, port: number, expected: boolean): boolean {
  for (let i = 0; i < (expected ? 5 : 1); i++) {
    const r = runSync("ip", [
      "netns",
      "exec",
      from.name,
      "curl",
      "-s",
      "--max-time",
      String(expected ? 10 : 1.5),
      `http://${to.ip}:${port}/`,
    ]);
    if (r.status === 0 && r.stdout === "ok") return true;
  }
  return false;
}

/** Connections a server pod accepted on port so far. */
function accepted(pod: Pod, port: number): number {
  let text = "";
  try {
    text = readFileSync(pod.log, "utf8");
  } catch {
    return 0;
  }
  return text.split("\n").filter((l) => l === String(port)).length;
}

describe.skipIf(skip)("services matches: Kubernetes Services to ipsets with real traffic", () => {
  let dir: string;
  let url: string;
  let store: SqliteDatastore;
  let api: KubeApi;
  let ctl: KubeControllers | undefined;
  let node: Netns;
  let daemon: NodeProcess | undefined;
  const servers: ChildProcess[] = [];
  const pods: Record<"client" | "web" | "db", Pod> = {} as never;
  const kube: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-svc-"));
    url = `file:${join(dir, "store.db")}`;
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool", POOL, { blockSize: 26 });
    api = await KubeApi.start();
    api.putNamespace("team-a");
    api.putNamespace("team-b");
    node = Netns.create("sn");
    addUplink(node, "192.0.2.21/24");
    daemon = await startNode(node, [
      "--nodename",
      NODE,
      "--ip",
      "192.0.2.21/24",
      "--datastore",
      url,
      "--status-socket",
      join(dir, "bgp.sock"),
      "--resync-interval",
      "1s",
      "--log-level",
      process.env.NODED_LEVEL ?? "info",
    ]);
    const spec = [
      ["client", "team-a", "client"],
      ["web", "team-b", "web-1"],
      ["db", "team-b", "db-1"],
    ] as const;
    for (const [key, namespace, name] of spec) {
      const ns = Netns.create(`sp${key}`);
      const r = await cni(
        node,
        "ADD",
        {
          CNI_CONTAINERID: `ctr-${name}`,
          CNI_NETNS: `/run/netns/${ns.name}`,
          CNI_IFNAME: "eth0",
          CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=${name}`,
        },
        netconf(url, NODE, "pool"),
      );
      if (r.code !== 0) throw new Error(`CNI ADD ${name}: ${r.stdout}${r.stderr}`);
      const ip = (JSON.parse(r.stdout).ips[0].address as string).split("/")[0] as string;
      pods[key] = { ns, namespace, name, ip, log: join(dir, `${name}.accepts`) };
      api.putPod(namespace, name, { app: key });
    }
    for (const p of [pods.web, pods.db]) {
      const srv = spawn(
        "ip",
        [
          "netns",
          "exec",
          p.ns.name,
          process.execPath,
          "-e",
          `const fs = require("fs"); for (const port of ${JSON.stringify(PORTS)})
             require("http").createServer((q, r) => { fs.appendFileSync(${JSON.stringify(p.log)}, port + "\\n"); r.end("ok"); }).listen(port)`,
        ],
        { stdio: "ignore" },
      );
      servers.push(srv);
    }
    api.putService("team-b", "web", {
      type: "ClusterIP",
      clusterIP: "10.96.0.80",
      ports: [{ name: "http", protocol: "TCP", port: 80, targetPort: 8080 }],
    });
    api.putEndpointSlice(
      "team-b",
      "web-x1",
      "web",
      [{ addresses: [pods.web.ip], nodeName: NODE, conditions: { ready: true } }],
      [{ name: "http", protocol: "TCP", port: 8080 }],
    );
    api.putService("team-a", "clients", { type: "ClusterIP", clusterIP: "None" });
    api.putEndpointSlice("team-a", "clients-x1", "clients", [{ addresses: [pods.client.ip] }], []);
    ctl = await startKubeControllers({
      kubeconfig: api.writeKubeconfig(join(dir, "kubeconfig")),
      store,
      retryMs: 300,
      log: (l) => kube.push(l),
    });
    await ctl.synced;
    await waitFor(
      "the servers and every pod route",
      () =>
        connects(pods.client.ns, pods.web, 8080, true) &&
        connects(pods.client.ns, pods.db, 8080, true),
      30_000,
      200,
    );
  });

  afterAll(async () => {
    if (process.env.NODED_LOG && daemon) writeFileSync(process.env.NODED_LOG, daemon.log);
    for (const s of servers) if (s.pid !== undefined && s.exitCode === null) s.kill("SIGKILL");
    await ctl?.stop();
    await api?.close();
    await daemon?.stop();
    for (const p of Object.values(pods)) p.ns.destroy();
    node?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("kube-controllers copies the Services and EndpointSlices and the pods' labels", async () => {
    const client = new ResourceClient(store);
    const svc = kindOf("v1", "Service");
    const eps = kindOf("discovery.k8s.io/v1", "EndpointSlice");
    if (!svc || !eps || !WEP) throw new Error("kinds not registered");
    const web = await client.get(svc, "web", "team-b");
    expect(web?.spec).toMatchObject({ clusterIP: "10.96.0.80", type: "ClusterIP" });
    const slice = (await client.get(eps, "web-x1", "team-b")) as unknown as {
      endpoints: { addresses: string[] }[];
      ports: unknown[];
    };
    expect(slice.endpoints[0]?.addresses).toEqual([pods.web.ip]);
    expect(slice.ports).toEqual([{ name: "http", protocol: "TCP", port: 8080 }]);
    await waitFor(
      "the client's endpoint labelled app=client",
      async () => {
        const weps = (await client.list(WEP, "team-a")).items;
        return weps.some((w) => w.metadata.labels?.app === "client") || undefined;
      },
      10_000,
      50,
    );
  });

  const setName = serviceIpsetName(4, "team-b", "web", "destination");
  const members = () =>
    node
      .exec("ipset", "list", setName)
      .split("\n")
      .filter((l) => /^\d/.test(l))
      .sort();

  it("only Service traffic: the client reaches web's endpoint port and nothing else", async () => {
    await applyResource(store, {
      apiVersion: "projectcalico.org/v3",
      kind: "NetworkPolicy",
      metadata: { name: "client-to-web", namespace: "team-a" },
      spec: {
        selector: "app == 'client'",
        types: ["Egress"],
        egress: [
          { action: "Allow", destination: { services: { name: "web", namespace: "team-b" } } },
        ],
      },
    });
    await applyResource(store, {
      apiVersion: "projectcalico.org/v3",
      kind: "NetworkPolicy",
      metadata: { name: "from-clients", namespace: "team-b" },
      spec: {
        selector: "all()",
        ingress: [
          {
            action: "Allow",
            protocol: "TCP",
            source: { services: { name: "clients", namespace: "team-a" } },
          },
        ],
      },
    });
    await waitFor(
      "the web Service's ipset",
      () => members().length === 1 || undefined,
      20_000,
      100,
    );
    expect(members()).toEqual([`${pods.web.ip},tcp:8080`]);
    const b = {
      web: [accepted(pods.web, 8080), accepted(pods.web, 9090)],
      db: accepted(pods.db, 8080),
    };
    expect(connects(pods.client.ns, pods.web, 8080, true)).toBe(true);
    expect(connects(pods.client.ns, pods.web, 9090, false)).toBe(false);
    expect(connects(pods.client.ns, pods.db, 8080, false)).toBe(false);
    expect(connects(pods.db.ns, pods.web, 8080, false)).toBe(false);
    // Counted on the servers: one accept on web:8080, none on web:9090 or db:8080.
    expect(accepted(pods.web, 8080) - (b.web[0] as number)).toBe(1);
    expect(accepted(pods.web, 9090) - (b.web[1] as number)).toBe(0);
    expect(accepted(pods.db, 8080) - b.db).toBe(0);
  });

  it("the endpoints move to db-1: the ipset changes in place, no chain is rewritten", async () => {
    const rules = () =>
      node
        .exec("iptables-save", "-t", "filter")
        .split("\n")
        .filter((l) => l.startsWith("-A ") || l.startsWith(":ocl"))
        .map((l) => l.replace(/\[\d+:\d+\]/, ""))
        .join("\n");
    const before = rules();
    const t0 = performance.now();
    api.putEndpointSlice(
      "team-b",
      "web-x1",
      "web",
      [{ addresses: [pods.db.ip], nodeName: NODE, conditions: { ready: true } }],
      [{ name: "http", protocol: "TCP", port: 8080 }],
    );
    await waitFor(
      "the ipset to hold db-1",
      () => (members().join() === `${pods.db.ip},tcp:8080` ? true : undefined),
      20_000,
      10,
    );
    console.log(
      `services: EndpointSlice change to the kernel's ipset: ${(performance.now() - t0).toFixed(0)} ms`,
    );
    expect(rules()).toBe(before);
    const b = { web: accepted(pods.web, 8080), db: accepted(pods.db, 8080) };
    expect(connects(pods.client.ns, pods.db, 8080, true)).toBe(true);
    expect(connects(pods.client.ns, pods.web, 8080, false)).toBe(false);
    expect(accepted(pods.db, 8080) - b.db).toBe(1);
    expect(accepted(pods.web, 8080) - b.web).toBe(0);
    expect(daemon?.log ?? "").not.toMatch(/services match not supported/);
  });
});
