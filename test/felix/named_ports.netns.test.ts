// Named ports with real traffic: a Kubernetes NetworkPolicy on pod B allows TCP from app=a to the
// port named "http" only. B's endpoint names 8080 "http": A connects to 8080 and not to 9090;
// C (app=c) to neither. B's endpoint then names 9090 "http" instead: 9090 opens and 8080 closes,
// with only the named-port set's members rewritten (the filter table reads back unchanged). The
// set is read back from the kernel (`ipset save`): hash:ip,port with B's address,tcp:port.
import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDataplane } from "../../src/felix/apply.js";
import { type DataplaneInput, renderDataplane } from "../../src/felix/dataplane.js";
import { fromK8sNetworkPolicy, type PolicyInput } from "../../src/felix/policy.js";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { addUplink } from "../helpers/cni.js";
import { Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import { addPod, policyEndpointsOf, tcpConnects, workloadsOf } from "../helpers/pods.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("named ports (netns)", reason);

const PODS = {
  a: { iface: "oclnpaaaaaaaaa", v4: "10.244.6.1" },
  b: { iface: "oclnpbbbbbbbbb", v4: "10.244.6.2" },
  c: { iface: "oclnpccccccccc", v4: "10.244.6.3" },
};

describe.skipIf(skip)("named ports: a NetworkPolicy port by name, in a namespace", () => {
  let node: Netns;
  const pods: Record<"a" | "b" | "c", Netns> = {} as never;
  let fib: KernelFib;
  let server: ReturnType<typeof spawn> | undefined;

  const knp = fromK8sNetworkPolicy({
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: "b-http-from-a", namespace: "default" },
    spec: {
      podSelector: { matchLabels: { app: "b" } },
      policyTypes: ["Ingress"],
      ingress: [
        {
          from: [{ podSelector: { matchLabels: { app: "a" } } }],
          ports: [{ protocol: "TCP", port: "http" }],
        },
      ],
    },
  } as never);
  const policyWith = (httpPort: number): PolicyInput => ({
    // Kubernetes pods' endpoints (the translated policy selects orchestrator k8s).
    endpoints: policyEndpointsOf(PODS).map((e) => ({
      ...e,
      labels: { ...e.labels, "projectcalico.org/orchestrator": "k8s" },
      ...(e.id === "default/b"
        ? { ports: [{ name: "http", protocol: "tcp", port: httpPort }] }
        : {}),
    })),
    policies: [knp],
  });
  const input = (p?: PolicyInput): DataplaneInput => ({
    workloads: workloadsOf(PODS),
    pools: [{ cidr: "10.244.0.0/16", natOutgoing: false }],
    ...(p ? { policy: p } : {}),
  });

  beforeAll(async () => {
    node = Netns.create("fnp");
    addUplink(node, "192.0.2.31/24");
    for (const app of ["a", "b", "c"] as const)
      pods[app] = addPod(node, `np${app}`, PODS[app].iface, PODS[app].v4);
    fib = await KernelFib.open({ netns: node.name, protocols: [202], watch: false });
    // The pods' routes, no policy yet.
    await applyDataplane(renderDataplane(input()), { netns: node.name, fib });
    server = spawn(
      "ip",
      [
        ...["netns", "exec", pods.b.name, process.execPath, "-e"],
        'for (const p of [8080, 9090]) require("net").createServer((s) => s.end()).listen(p)',
      ],
      { stdio: "ignore" },
    );
    // Before any policy both ports are open (the server is up).
    await waitFor(
      "B's server on 8080 and 9090",
      () =>
        tcpConnects(pods.a, PODS.b.v4, 8080, true) && tcpConnects(pods.a, PODS.b.v4, 9090, true),
      30_000,
      200,
    );
  }, 120_000);

  afterAll(async () => {
    if (server?.pid !== undefined && server.exitCode === null) server.kill("SIGKILL");
    await fib?.close();
    for (const p of Object.values(pods)) p?.destroy();
    node?.destroy();
  });

  it("A reaches B's port named http (8080) and not 9090; C reaches neither", async () => {
    const r = await applyDataplane(renderDataplane(input(policyWith(8080))), {
      netns: node.name,
      fib,
    });
    expect(r.changes.length).toBeGreaterThan(0);
    expect(tcpConnects(pods.a, PODS.b.v4, 8080, true)).toBe(true);
    expect(tcpConnects(pods.a, PODS.b.v4, 9090, false)).toBe(false);
    expect(tcpConnects(pods.c, PODS.b.v4, 8080, false)).toBe(false);
    const sets = node.exec("ipset", "save");
    const set = /create (ocl-p-\S+) hash:ip,port/.exec(sets)?.[1];
    expect(set, sets).toBeDefined();
    expect(sets).toContain(`add ${set} ${PODS.b.v4},tcp:8080`);
    expect(node.exec("iptables-nft-save", "-t", "filter")).toContain(
      `-m set --match-set ${set} dst,dst`,
    );
  });

  it("B's http moves to 9090: 9090 opens, 8080 closes, only the set's members change", async () => {
    const before = node.exec("iptables-nft-save", "-t", "filter").replace(/^#.*$/gm, "");
    await applyDataplane(renderDataplane(input(policyWith(9090))), { netns: node.name, fib });
    expect(tcpConnects(pods.a, PODS.b.v4, 9090, true)).toBe(true);
    expect(tcpConnects(pods.a, PODS.b.v4, 8080, false)).toBe(false);
    expect(node.exec("iptables-nft-save", "-t", "filter").replace(/^#.*$/gm, "")).toBe(before);
    expect(node.exec("ipset", "save")).toMatch(/add ocl-p-\S+ 10\.244\.6\.2,tcp:9090/);
  });
});
