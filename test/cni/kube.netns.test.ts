// The real `bin/ocelot-cni` with a kubeconfig (Calico's `kubernetes.kubeconfig` netconf key),
// run inside a "node" network namespace against the small API server of
// test/helpers/kube_api.ts (TLS, bearer token), read through the real @kubernetes/client-node:
// ADD writes the pod's labels, its namespace's labels (pcns.*) and its service account into the
// WorkloadEndpoint; a Kubernetes NetworkPolicy applied with `ocelot apply` then selects the pod
// by podSelector and namespaceSelector in the agent's rendered policy (its endpoint chain), while
// the same pod added without a kubeconfig is not selected (today's behaviour, unchanged).
// A missing pod is a one-line error and an unreachable server code 11, with nothing allocated.
// The node namespace reaches the server through a unix socket (a forwarder in the namespace on
// the server's own port, so the certificate's 127.0.0.1 stays right).
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listWorkloadEndpoints, ResourceClient } from "../../src/api/client.js";
import type { K8sNetworkPolicy } from "../../src/api/policy.js";
import { kindOf } from "../../src/api/registry.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import {
  endpointChainName,
  fromK8sNetworkPolicy,
  policySelects,
  renderPolicy,
} from "../../src/felix/policy.js";
import { IpamStore } from "../../src/ipam/store.js";
import { policyEndpointsOf } from "../../src/node/agent_state.js";
import { addUplink, runOcelotCni } from "../helpers/cni.js";
import { KubeApi } from "../helpers/kube_api.js";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const BIN = join(ROOT, "bin");
const reason =
  netnsUnavailableReason() ??
  (existsSync(join(ROOT, "dist/k8s/pod_reader.js"))
    ? undefined
    : "dist/ not built (npm run build)");
const skip = skipWithReason("ocelot-cni with Kubernetes", reason);

const POLICY = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-from-frontend
  namespace: team-a
spec:
  podSelector:
    matchLabels: {app: web}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {team: frontend}
      podSelector:
        matchLabels: {role: client}
`;

describe.skipIf(skip)("ocelot-cni reads the pod from the Kubernetes API", () => {
  let dir: string;
  let url: string;
  let store: SqliteDatastore;
  let api: KubeApi;
  let kubeconfig: string;
  let node: Netns;
  let sock: Server;
  let forwarder: ChildProcess | undefined;
  const pods: Netns[] = [];
  /** The forwarder's connections, destroyed in afterAll so that closing never waits on them. */
  const open = new Set<Socket>();

  const conf = (extra: Record<string, unknown> = {}) => ({
    cniVersion: "1.0.0",
    name: "k8s-pod-network",
    type: "ocelot-cni",
    datastore: url,
    nodename: "node-a",
    ipam: { type: "ocelot-ipam", ipv4_pools: ["pool"], assign_ipv6: false },
    ...extra,
  });
  const env = (pod: Netns, ns: string, name: string) => ({
    CNI_CONTAINERID: `ctr-${name}`,
    CNI_NETNS: `/run/netns/${pod.name}`,
    CNI_IFNAME: "eth0",
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${ns};K8S_POD_NAME=${name}`,
    CNI_PATH: BIN,
  });
  const weps = async () => listWorkloadEndpoints(store);
  const allocated = (ctr: string) =>
    new IpamStore(store).addressesOfHandle(`k8s-pod-network.${ctr}`, "node-a");

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-cni-kube-"));
    url = `file:${join(dir, "store.db")}`;
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool", "10.68.0.0/16", { blockSize: 26 });
    api = await KubeApi.start();
    kubeconfig = api.writeKubeconfig(join(dir, "kubeconfig"));
    api.putNamespace("team-a", { team: "a", env: "prod" });
    api.putPod("team-a", "web-1", { app: "web", version: "v1" }, "web-sa", undefined, [
      { name: "http", containerPort: 8080, protocol: "TCP" },
      { containerPort: 9090 },
    ]);
    node = Netns.create("kcninode");
    addUplink(node, "192.0.2.10/24");
    for (const short of ["kcnip1", "kcnip2", "kcnip3", "kcnip4", "kcnip5", "kcnip6"])
      pods.push(Netns.create(short));
    // root namespace: unix socket -> the API server's TCP port
    const port = Number(new URL(api.url).port);
    const path = join(dir, "api.sock");
    sock = createServer((c) => {
      const u = createConnection(port, "127.0.0.1");
      open.add(c).add(u);
      c.on("close", () => open.delete(c));
      u.on("close", () => open.delete(u));
      c.pipe(u).pipe(c);
      u.on("error", () => c.destroy());
      c.on("error", () => u.destroy());
    });
    await new Promise<void>((r) => sock.listen(path, r));
    // node namespace: 127.0.0.1:<port> -> the unix socket
    const code = `const net=require("node:net");net.createServer(c=>{const u=net.connect(process.argv[1]);c.pipe(u).pipe(c);u.on("error",()=>c.destroy());c.on("error",()=>u.destroy())}).listen(+process.argv[2],"127.0.0.1",()=>console.log("ready"))`;
    const fw = spawn(
      "ip",
      ["netns", "exec", node.name, process.execPath, "-e", code, path, String(port)],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    forwarder = fw;
    let out = "";
    fw.stdout?.on("data", (d) => (out += d));
    await waitFor("the forwarder in the node namespace", () => out.includes("ready"));
  });

  afterAll(async () => {
    if (forwarder?.pid !== undefined && forwarder.exitCode === null) forwarder.kill("SIGKILL");
    for (const c of open) c.destroy();
    await new Promise<void>((r) => (sock ? sock.close(() => r()) : r()));
    for (const ns of [...pods, node]) ns?.destroy();
    await api?.close();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("ADD with a kubeconfig writes the pod's labels, pcns.* namespace labels, service account and named ports", async () => {
    const r = await runOcelotCni(
      node,
      "ADD",
      env(pods[0] as Netns, "team-a", "web-1"),
      conf({ kubernetes: { kubeconfig } }),
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const wep = (await weps()).find((w) => w.spec.pod === "web-1");
    expect(wep?.metadata.labels).toEqual({
      app: "web",
      version: "v1",
      "pcns.team": "a",
      "pcns.env": "prod",
      "pcns.kubernetes.io/metadata.name": "team-a",
      "projectcalico.org/namespace": "team-a",
      "projectcalico.org/orchestrator": "k8s",
      "projectcalico.org/serviceaccount": "web-sa",
    });
    expect(wep?.spec.profiles).toEqual(["kns.team-a", "ksa.team-a.web-sa"]);
    // The container's named port (rules' named ports match it); the unnamed one is left out.
    expect(wep?.spec.ports).toEqual([{ name: "http", protocol: "TCP", port: 8080 }]);
    expect(api.requests).toContain("GET /api/v1/namespaces/team-a/pods/web-1");
    expect(api.requests).toContain("GET /api/v1/namespaces/team-a");
  });

  it("without a kubeconfig ADD writes only Calico's two labels, as before", async () => {
    const before = api.requests.length;
    const r = await runOcelotCni(node, "ADD", env(pods[1] as Netns, "team-a", "web-2"), conf());
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const wep = (await weps()).find((w) => w.spec.pod === "web-2");
    expect(wep?.metadata.labels).toEqual({
      "projectcalico.org/namespace": "team-a",
      "projectcalico.org/orchestrator": "k8s",
    });
    expect(api.requests.length).toBe(before);
  });

  it("a NetworkPolicy applied with `ocelot apply` selects the labelled pod (its endpoint chain is rendered), not the unlabelled one", async () => {
    const applied = runSync(join(BIN, "ocelot"), ["apply", "-f", "-", "--datastore", url], {
      input: POLICY,
      timeout: HANG_MS,
    });
    expect(applied.status, applied.stderr).toBe(0);
    const info = kindOf("networking.k8s.io/v1", "NetworkPolicy");
    if (!info) throw new Error("NetworkPolicy kind is not registered");
    const knp = (await new ResourceClient(store).get(
      info,
      "web-from-frontend",
      "team-a",
    )) as K8sNetworkPolicy;
    const policy = fromK8sNetworkPolicy(knp);
    const endpoints = policyEndpointsOf(await weps(), "node-a");
    const labelled = endpoints.find((e) => e.id.includes("web--1"));
    const plain = endpoints.find((e) => e.id.includes("web--2"));
    expect(labelled && policySelects(policy, labelled)).toBe(true);
    expect(plain && policySelects(policy, plain)).toBe(false);
    const rendered = renderPolicy({ endpoints, policies: [policy] }, 4);
    const chains = rendered.chains.map((c) => c.name);
    console.log(`rendered chains: ${chains.join(" ")}`);
    expect(chains).toContain(endpointChainName(labelled?.iface ?? "?", "Ingress"));
    expect(chains).not.toContain(endpointChainName(plain?.iface ?? "?", "Ingress"));
  });

  it("pod not found: a one-line error naming it; API server down: code 11; nothing allocated", async () => {
    const missing = await runOcelotCni(
      node,
      "ADD",
      env(pods[2] as Netns, "team-a", "ghost"),
      conf({ kubernetes: { kubeconfig } }),
    );
    expect(missing.code).not.toBe(0);
    const e1 = JSON.parse(missing.stdout);
    expect(e1.msg).toBe(`Pod team-a/ghost not found on ${api.url}: pods "ghost" not found`);
    expect(e1.code).toBe(102);
    api.failWith = 503;
    try {
      const down = await runOcelotCni(
        node,
        "ADD",
        { ...env(pods[2] as Netns, "team-a", "web-1"), CNI_CONTAINERID: "ctr-down" },
        conf({ kubernetes: { kubeconfig } }),
      );
      const e2 = JSON.parse(down.stdout);
      expect(e2.code).toBe(11);
      expect(e2.msg).toContain("answered HTTP 503");
      expect(e2.msg).not.toContain("\n");
    } finally {
      api.failWith = undefined;
    }
    expect(await allocated("ctr-ghost")).toEqual([]);
    expect(await allocated("ctr-down")).toEqual([]);
  });

  it("Calico's IPAM annotations: ipv4pools picks the pool, ipAddrsNoIpam gives the address without IPAM; bad ones are code 7 naming the annotation, nothing allocated", async () => {
    await putPool(store, "pool2", "10.69.0.0/16", { blockSize: 26 });
    const A = "cni.projectcalico.org/";
    api.putPod("team-a", "in-pool2", { app: "x" }, "default", { [`${A}ipv4pools`]: '["pool2"]' });
    api.putPod("team-a", "fixed", { app: "x" }, "default", {
      [`${A}ipAddrsNoIpam`]: '["10.70.0.9"]',
    });
    api.putPod("team-a", "wants-ip", {}, "default", { [`${A}ipAddrs`]: '["10.68.0.77"]' });
    api.putPod("team-a", "wants-it-too", {}, "default", { [`${A}ipAddrs`]: '["10.68.0.77"]' });
    api.putPod("team-a", "wants-outside", {}, "default", { [`${A}ipAddrs`]: '["10.99.0.1"]' });
    api.putPod("team-a", "bad-json", {}, "default", { [`${A}ipv6pools`]: "pool6" });
    const withKube = (extra: Record<string, unknown> = {}) =>
      conf({ kubernetes: { kubeconfig }, ...extra });

    const r1 = await runOcelotCni(
      node,
      "ADD",
      env(pods[3] as Netns, "team-a", "in-pool2"),
      withKube(),
    );
    expect(r1.code, r1.stdout + r1.stderr).toBe(0);
    expect(JSON.parse(r1.stdout).ips[0].address).toMatch(/^10\.69\./);
    expect((await allocated("ctr-in-pool2")).map((a) => a.address)).toEqual([
      JSON.parse(r1.stdout).ips[0].address.split("/")[0],
    ]);

    // Without Calico's feature switch: refused, nothing allocated.
    const off = await runOcelotCni(
      node,
      "ADD",
      env(pods[4] as Netns, "team-a", "fixed"),
      withKube(),
    );
    expect(JSON.parse(off.stdout)).toMatchObject({ code: 7 });
    expect(JSON.parse(off.stdout).msg).toContain(`${A}ipAddrsNoIpam needs "feature_control"`);
    const r2 = await runOcelotCni(
      node,
      "ADD",
      env(pods[4] as Netns, "team-a", "fixed"),
      withKube({ feature_control: { ip_addrs_no_ipam: true } }),
    );
    expect(r2.code, r2.stdout + r2.stderr).toBe(0);
    expect(JSON.parse(r2.stdout).ips[0].address).toBe("10.70.0.9/32");
    expect(await allocated("ctr-fixed")).toEqual([]);
    expect((await weps()).find((w) => w.spec.pod === "fixed")?.spec.ipNetworks).toEqual([
      "10.70.0.9/32",
    ]);

    // ipAddrs: that address through IPAM (its block claimed for the node), then refused to a
    // second pod while held, and released by DEL.
    const r3 = await runOcelotCni(
      node,
      "ADD",
      { ...env(pods[2] as Netns, "team-a", "wants-ip"), CNI_CONTAINERID: "ctr-wants-ip" },
      withKube(),
    );
    expect(r3.code, r3.stdout + r3.stderr).toBe(0);
    expect(JSON.parse(r3.stdout).ips[0].address).toBe("10.68.0.77/32");
    expect((await allocated("ctr-wants-ip")).map((a) => a.address)).toEqual(["10.68.0.77"]);
    const r4 = await runOcelotCni(
      node,
      "ADD",
      { ...env(pods[2] as Netns, "team-a", "wants-it-too"), CNI_CONTAINERID: "ctr-wants-it-too" },
      withKube(),
    );
    expect(JSON.parse(r4.stdout)).toMatchObject({ code: 7 });
    expect(JSON.parse(r4.stdout).msg).toContain("Address 10.68.0.77 is in use");
    const d3 = await runOcelotCni(
      node,
      "DEL",
      { ...env(pods[2] as Netns, "team-a", "wants-ip"), CNI_CONTAINERID: "ctr-wants-ip" },
      withKube(),
    );
    expect(d3.code, d3.stdout + d3.stderr).toBe(0);
    expect(await allocated("ctr-wants-ip")).toEqual([]);

    for (const [pod, text] of [
      ["wants-outside", "Address 10.99.0.1 is in no IP pool"],
      ["bad-json", `${A}ipv6pools: "pool6" is not JSON`],
    ] as const) {
      const r = await runOcelotCni(
        node,
        "ADD",
        { ...env(pods[2] as Netns, "team-a", pod), CNI_CONTAINERID: `ctr-${pod}` },
        withKube(),
      );
      const e = JSON.parse(r.stdout);
      expect(e.code).toBe(7);
      expect(e.msg).toContain(text);
      expect(await allocated(`ctr-${pod}`)).toEqual([]);
    }
  });

  it("Calico's endpoint annotations: floatingIPs (with feature_control.floating_ips), allowedSourcePrefixes and bandwidth become ipNATs, allowSpoofedSourcePrefixes and qosControls", async () => {
    const A = "cni.projectcalico.org/";
    api.putPod("team-a", "floating", { app: "f" }, "default", {
      [`${A}floatingIPs`]: '["203.0.113.5"]',
      [`${A}allowedSourcePrefixes`]: '["198.51.100.0/24"]',
      "kubernetes.io/ingress-bandwidth": "10M",
      "kubernetes.io/egress-bandwidth": "5M",
      "qos.projectcalico.org/egressBurst": "1M",
    });
    const withKube = (extra: Record<string, unknown> = {}) =>
      conf({ kubernetes: { kubeconfig }, ...extra });
    const e = { ...env(pods[5] as Netns, "team-a", "floating"), CNI_CONTAINERID: "ctr-floating" };
    // Without Calico's feature switch: refused as Calico's CNI refuses it, nothing allocated.
    const off = await runOcelotCni(node, "ADD", e, withKube());
    expect(JSON.parse(off.stdout)).toMatchObject({ code: 7 });
    expect(JSON.parse(off.stdout).msg).toContain(
      `${A}floatingIPs: requested feature is not enabled: floating_ips`,
    );
    expect(await allocated("ctr-floating")).toEqual([]);
    const r = await runOcelotCni(
      node,
      "ADD",
      e,
      withKube({ feature_control: { floating_ips: true } }),
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const ip = JSON.parse(r.stdout).ips[0].address.split("/")[0];
    const wep = (await weps()).find((w) => w.spec.pod === "floating");
    expect(wep?.spec.ipNATs).toEqual([{ internalIP: ip, externalIP: "203.0.113.5" }]);
    expect(wep?.spec.allowSpoofedSourcePrefixes).toEqual(["198.51.100.0/24"]);
    // Calico's conversion: bandwidth from the quantities, the burst defaulted to 4Gi bits.
    expect(wep?.spec.qosControls).toEqual({
      ingressBandwidth: 10_000_000,
      ingressBurst: 4 * 2 ** 30,
      egressBandwidth: 5_000_000,
      egressBurst: 1_000_000,
    });
  });
});
