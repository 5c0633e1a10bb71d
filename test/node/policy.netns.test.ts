// Network policy with real traffic: the real `bin/ocelot node run` in a node namespace, three
// pods wired by the real `bin/ocelot-cni` (labels app=a, app=b, app=c written into their
// WorkloadEndpoints after ADD, as Kubernetes pod labels would be), an HTTP server on pod B.
// No policy: everything reaches everything (every pod known to the dispatch, Felix's
// unknown-interface drop in force). A Calico NetworkPolicy selecting B that allows only
// app=a on TCP 8080: A connects, C is refused, ICMP from A to B is dropped, the node's own
// traffic to B is not policed (as in Felix: kubelet's probes come from the host), B's egress is
// untouched, and A's egress allowed by a GlobalNetworkPolicy does not
// skip B's ingress; a pod added by CNI ADD while the policy is in force (selected by none) is
// dispatched to nothing once the agent knows it (unknown workload interfaces meet the dispatch
// chains' drop until then) and A reaches it; the Kubernetes NetworkPolicy of the same meaning does the
// same; deleting the policies restores everything and removes our chains, hooks and sets. A
// staged deny-all changes nothing; a HostEndpoint reaches the agent: its chains and failsafe
// rules appear (its interface does not exist here, so traffic is unchanged), and
// FelixConfiguration's failsafe ports replace Felix's defaults, node.<name> over default, and
// its logSeverityScreen sets the daemon's log level. kube-controllers' auto host endpoint for
// the node ("*", projectcalico-default-allow) leaves the pods' and the node's traffic unchanged.
// A WorkloadEndpoint's ipNATs act once FelixConfiguration enables floating IPs (A and the node
// reach B at its floating IP), its qosControls bandwidth at once (B's tbf).
// Rules and sets are read back with iptables-save and ipset save inside the node namespace.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyResource, ResourceClient } from "../../src/api/client.js";
import { kindOf } from "../../src/api/registry.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { autoHostEndpoint } from "../../src/k8s/auto_hep.js";
import { addUplink } from "../helpers/cni.js";
import { Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import {
  cni,
  daemonTestsUnavailable,
  type NodeProcess,
  netconf,
  podEnv,
  startNode,
} from "./harness.js";
import {
  addLabelledPods,
  B_FROM_A,
  connects,
  PORT,
  type Pod,
  pings,
  serveHttp,
} from "./policy_traffic.js";

const skip = skipWithReason("network policy netns", daemonTestsUnavailable());
const NODE = "node-p";
const POOL = "10.72.0.0/16";

const WEP = kindOf("projectcalico.org/v3", "WorkloadEndpoint");
const NP = kindOf("projectcalico.org/v3", "NetworkPolicy");
const GNP = kindOf("projectcalico.org/v3", "GlobalNetworkPolicy");
const KNP = kindOf("networking.k8s.io/v1", "NetworkPolicy");

describe.skipIf(skip)("network policy: ocelot node run with real traffic", () => {
  let dir: string;
  let url: string;
  let store: SqliteDatastore;
  let node: Netns;
  let daemon: NodeProcess | undefined;
  let server: ChildProcess | undefined;
  const pods: Record<"a" | "b" | "c", Pod> = {} as never;
  const extra: Netns[] = [];
  const save = (cmd: string, ...args: string[]) => node.exec(cmd, ...args);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-policy-"));
    url = `file:${join(dir, "store.db")}`;
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool", POOL, { blockSize: 26 });
    node = Netns.create("pn");
    addUplink(node, "192.0.2.20/24");
    daemon = await startNode(node, [
      "--nodename",
      NODE,
      "--ip",
      "192.0.2.20/24",
      "--datastore",
      url,
      "--status-socket",
      join(dir, "bgp.sock"),
      "--resync-interval",
      "1s",
      "--log-level",
      process.env.NODED_LEVEL ?? "info",
    ]);
    Object.assign(pods, await addLabelledPods(node, store, url, NODE, "pool", "pp"));
    server = serveHttp(pods.b);
    await waitFor(
      "the server on pod B and every pod route",
      () => connects(pods.a.ns, pods.b, true),
      15_000,
      200,
    );
  });

  afterAll(async () => {
    if (process.env.NODED_LOG && daemon) writeFileSync(process.env.NODED_LOG, daemon.log);
    if (server?.pid !== undefined && server.exitCode === null) server.kill("SIGKILL");
    await daemon?.stop();
    for (const p of Object.values(pods)) p.ns.destroy();
    for (const ns of extra) ns.destroy();
    node?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const expectOpen = () => {
    expect(connects(pods.a.ns, pods.b, true)).toBe(true);
    expect(connects(pods.c.ns, pods.b, true)).toBe(true);
    expect(pings(pods.a.ns, pods.b, true)).toBe(true);
    expect(pings(pods.c.ns, pods.a, true)).toBe(true);
    expect(pings(node, pods.b, true)).toBe(true);
  };

  /** B allows only app=a on TCP 8080: checked with traffic and the kernel's rules. */
  const expectEnforced = () => {
    expect(connects(pods.a.ns, pods.b, true)).toBe(true);
    expect(connects(pods.c.ns, pods.b, false)).toBe(false);
    expect(pings(pods.a.ns, pods.b, false)).toBe(false);
    // The node's own traffic to a pod is not policed by its ingress (Felix's filterOutputChain).
    expect(pings(node, pods.b, true)).toBe(true);
    expect(connects(node, pods.b, true)).toBe(true);
    // Not selected: A and C still reach each other; B's egress is not policed.
    expect(pings(pods.c.ns, pods.a, true)).toBe(true);
    expect(pings(pods.b.ns, pods.c, true)).toBe(true);
  };

  const waitForChain = (present: boolean) =>
    waitFor(
      `ocl-tw-${pods.b.iface} ${present ? "in" : "gone from"} iptables-save`,
      () => save("iptables-save", "-t", "filter").includes(`:ocl-tw-${pods.b.iface} `) === present,
      10_000,
      100,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${daemon?.log}`);
    });

  it("no policy: every pod reaches every pod, the node reaches them; no policy chains, every pod dispatched to nothing", () => {
    expectOpen();
    const filter = save("iptables-save", "-t", "filter");
    expect(filter).not.toMatch(/ocl-(tw|fw|pi|po)-/);
    // Felix's unknown-interface drop is always in force: the pods are known to it.
    for (const p of Object.values(pods))
      expect(filter).toContain(`-A ocl-to-wl-dispatch -o ${p.iface} -j RETURN`);
    expect(filter).toContain("-A ocl-to-wl-dispatch -j DROP");
  });

  it("a NetworkPolicy on B allowing app=a on TCP 8080: A connects, C refused, ICMP dropped", async () => {
    await applyResource(store, B_FROM_A);
    // A's egress allowed by a GlobalNetworkPolicy: that Allow must not skip B's ingress.
    await applyResource(store, {
      apiVersion: "projectcalico.org/v3",
      kind: "GlobalNetworkPolicy",
      metadata: { name: "a-egress-all" },
      spec: { selector: "app == 'a'", types: ["Egress"], egress: [{ action: "Allow" }] },
    });
    await waitForChain(true);
    await waitFor(
      "A's egress chain",
      () => save("iptables-save", "-t", "filter").includes(`:ocl-fw-${pods.a.iface} `),
      10_000,
      100,
    );
    expectEnforced();
    const filter = save("iptables-save", "-t", "filter");
    expect(filter).toContain(
      `-A ocl-from-wl-dispatch -i ${pods.a.iface} -g ocl-fw-${pods.a.iface}`,
    );
    const tw = `ocl-tw-${pods.b.iface}`;
    expect(filter).toContain(`-A ocl-to-wl-dispatch -o ${pods.b.iface} -g ${tw}`);
    expect(filter).toContain("-A FORWARD -j ocl-FORWARD");
    expect(filter).not.toContain("-A OUTPUT -j ocl-OUTPUT");
    expect(filter).toContain(`-A ${tw} -m mark --mark 0x0/0x20000 -j DROP`);
    const set = /-p tcp -m set --match-set (ocl-s-\S+) src -m multiport --dports 8080 -j MARK/.exec(
      filter,
    )?.[1];
    expect(set, filter).toBeDefined();
    const ipsets = save("ipset", "save", set as string);
    expect(ipsets).toContain(`add ${set} ${pods.a.ip}`);
    expect(ipsets).not.toContain(pods.c.ip);
    // What the kernel holds is what the agent renders: resyncs (1 s) find no drift.
    const before = daemon?.lines.length ?? 0;
    await new Promise((r) => setTimeout(r, 2500));
    const drift = daemon?.lines
      .slice(before)
      .filter((l) => l.msg === "Agent: kernel drift repaired");
    expect(drift, JSON.stringify(drift)).toEqual([]);
  });

  it("a pod added while the policy is in force (selected by none) is dispatched to nothing once known: A reaches it", async () => {
    const ns = Netns.create("ppd");
    extra.push(ns);
    const name = "pod-d";
    const r = await cni(node, "ADD", podEnv(ns, name), netconf(url, NODE, "pool"));
    if (r.code !== 0) throw new Error(`CNI ADD ${name}: ${r.stdout}${r.stderr}`);
    const res = JSON.parse(r.stdout);
    const d: Pod = {
      ns,
      name,
      ip: (res.ips[0].address as string).split("/")[0] as string,
      iface: res.interfaces[0].name as string,
      wep: "",
    };
    // Until the agent's pass knows its endpoint the interface meets the unknown-interface drop;
    // then its dispatch rule returns and it is open like any pod no policy selects.
    await waitFor(
      "pod D's dispatch rule",
      () =>
        save("iptables-save", "-t", "filter").includes(
          `-A ocl-to-wl-dispatch -o ${d.iface} -j RETURN`,
        ),
      30_000,
      100,
    );
    const filter = save("iptables-save", "-t", "filter");
    expect(filter).toContain(`-A ocl-from-wl-dispatch -i ${d.iface} -j RETURN`);
    expect(filter).toContain("-A ocl-to-wl-dispatch -j DROP");
    expect(pings(pods.a.ns, d, true)).toBe(true);
    expect(pings(d.ns, pods.a, true)).toBe(true);
    expect(connects(d.ns, pods.b, false)).toBe(false);
    const del = await cni(node, "DEL", podEnv(ns, name), netconf(url, NODE, "pool"));
    expect(del.code, `${del.stdout}${del.stderr}`).toBe(0);
    await waitFor(
      "pod D's dispatch rule to go",
      () => !save("iptables-save", "-t", "filter").includes(d.iface),
      30_000,
      100,
    );
    expectEnforced();
  });

  it("deleting the policy restores traffic and removes our chains, hooks and sets", async () => {
    await new ResourceClient(store).delete(NP as NonNullable<typeof NP>, "b-from-a", "default");
    await new ResourceClient(store).delete(GNP as NonNullable<typeof GNP>, "a-egress-all");
    await waitForChain(false);
    await waitFor(
      "A's egress chain to go",
      () => !save("iptables-save", "-t", "filter").includes(`:ocl-fw-${pods.a.iface} `),
      10_000,
      100,
    );
    expectOpen();
    const filter = save("iptables-save", "-t", "filter");
    expect(filter).not.toMatch(/ocl-(tw|fw|pi|po)-|ocl-OUTPUT/);
    expect(filter).toContain(`-A ocl-to-wl-dispatch -o ${pods.b.iface} -j RETURN`);
    expect(save("ipset", "save")).not.toMatch(/ocl-s-/);
  });

  it("the Kubernetes NetworkPolicy of the same meaning enforces the same; deleting it restores", async () => {
    await applyResource(store, {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: "b-from-a", namespace: "default" },
      spec: {
        podSelector: { matchLabels: { app: "b" } },
        ingress: [
          {
            from: [{ podSelector: { matchLabels: { app: "a" } } }],
            ports: [{ protocol: "TCP", port: PORT }],
          },
        ],
      },
    });
    await waitForChain(true);
    expectEnforced();
    await new ResourceClient(store).delete(KNP as NonNullable<typeof KNP>, "b-from-a", "default");
    await waitForChain(false);
    expectOpen();
  });

  it("a staged deny-all is never enforced; a HostEndpoint reaches the agent's chains", async () => {
    await applyResource(store, {
      apiVersion: "projectcalico.org/v3",
      kind: "StagedGlobalNetworkPolicy",
      metadata: { name: "deny-all" },
      spec: { selector: "all()", types: ["Ingress", "Egress"] },
    });
    await applyResource(store, {
      apiVersion: "projectcalico.org/v3",
      kind: "HostEndpoint",
      metadata: { name: `${NODE}-eth0` },
      spec: { node: NODE, interfaceName: "eth0" },
    });
    await waitFor(
      "the HostEndpoint's chains",
      () =>
        save("iptables-save", "-t", "filter").includes(
          "-A ocl-from-host-endpoint -i eth0 -g ocl-fh-eth0",
        ),
      10_000,
      100,
    );
    expect(save("iptables-save", "-t", "filter")).toContain(
      "-A ocl-failsafe-in -p tcp -m tcp --dport 22 -j ACCEPT",
    );
    // FelixConfiguration's failsafe ports replace the defaults; node.<name> wins over default.
    const failsafe = (name: string, port: number) =>
      applyResource(store, {
        apiVersion: "projectcalico.org/v3",
        kind: "FelixConfiguration",
        metadata: { name },
        spec: { failsafeInboundHostPorts: [{ protocol: "TCP", port }] },
      });
    const failsafeIn = () =>
      save("iptables-save", "-t", "filter")
        .split("\n")
        .filter((l) => l.startsWith("-A ocl-failsafe-in "));
    await failsafe("default", 2222);
    await waitFor(
      "failsafe port 2222 from FelixConfiguration default",
      () => failsafeIn().join("\n") === "-A ocl-failsafe-in -p tcp -m tcp --dport 2222 -j ACCEPT",
      10_000,
      100,
    );
    await failsafe(`node.${NODE}`, 2223);
    await waitFor(
      "failsafe port 2223 from FelixConfiguration node.<name>",
      () => failsafeIn().join("\n") === "-A ocl-failsafe-in -p tcp -m tcp --dport 2223 -j ACCEPT",
      10_000,
      100,
    );
    // logSeverityScreen sets the daemon's log level.
    await applyResource(store, {
      apiVersion: "projectcalico.org/v3",
      kind: "FelixConfiguration",
      metadata: { name: `node.${NODE}` },
      spec: {
        failsafeInboundHostPorts: [{ protocol: "TCP", port: 2223 }],
        logSeverityScreen: "Debug",
      },
    });
    await waitFor(
      "the log level from logSeverityScreen",
      () =>
        (daemon?.lines ?? []).some(
          (l) =>
            l.msg === "Log level set by FelixConfiguration logSeverityScreen" &&
            (l as { after?: string }).after === "debug",
        ),
      10_000,
      100,
    );
    expectOpen();
    // No endpoint chain: the staged deny-all selects nothing for real.
    expect(save("iptables-save", "-t", "filter")).not.toMatch(/ocl-(tw|fw|pi|po)-/);
  });

  it("kube-controllers' auto host endpoint for this node (\"*\", projectcalico-default-allow): pods and the node's traffic to them unchanged", async () => {
    const nodeInfo = kindOf("projectcalico.org/v3", "Node");
    if (!nodeInfo) throw new Error("Node not registered");
    const calicoNode = await new ResourceClient(store).get(nodeInfo, NODE);
    if (!calicoNode) throw new Error(`the daemon registered no Node ${NODE}`);
    const hep = autoHostEndpoint(calicoNode);
    await applyResource(store, hep);
    await waitFor(
      "the auto host endpoint's chains",
      () =>
        save("iptables-save", "-t", "filter").includes("-A ocl-from-host-endpoint -g ocl-fh-any"),
      10_000,
      100,
    );
    expect(save("iptables-save", "-t", "filter")).toMatch(/-A ocl-fh-any -j ocl-pr/);
    expectOpen();
  });

  it("a WorkloadEndpoint's ipNATs and qosControls through the datastore: with floatingIPs Enabled, A and the node reach B at its floating IP; B's bucket is set", async () => {
    const FIP = "203.0.113.9";
    const client = new ResourceClient(store);
    const wep = (await client.list(WEP as NonNullable<typeof WEP>, "default")).items.find(
      (w) => w.metadata.name === pods.b.wep,
    );
    if (!wep) throw new Error("no WorkloadEndpoint for pod B");
    const { resourceVersion: _rv, ...metadata } = wep.metadata;
    await applyResource(store, {
      ...wep,
      metadata,
      spec: {
        ...(wep.spec as Record<string, unknown>),
        ipNATs: [{ internalIP: pods.b.ip, externalIP: FIP }],
        qosControls: { ingressBandwidth: 50_000_000, ingressBurst: 4_000_000 },
      },
    });
    // Calico's default (floatingIPs Disabled): the bucket is set, the NAT is not.
    await waitFor(
      "B's tbf",
      () => node.exec("tc", "-j", "qdisc", "show", "dev", pods.b.iface).includes('"tbf"'),
      10_000,
      100,
    );
    expect(save("iptables-save", "-t", "nat")).not.toContain("ocl-fip-dnat");
    await applyResource(store, {
      apiVersion: "projectcalico.org/v3",
      kind: "FelixConfiguration",
      metadata: { name: "default" },
      spec: { failsafeInboundHostPorts: [{ protocol: "TCP", port: 2222 }], floatingIPs: "Enabled" },
    });
    await waitFor(
      "the floating IP's DNAT",
      () =>
        save("iptables-save", "-t", "nat").includes(
          `-A ocl-fip-dnat -d ${FIP}/32 -j DNAT --to-destination ${pods.b.ip}`,
        ),
      10_000,
      100,
    );
    // The route comes later in the same pass than the rules (the rules' commit no longer waits
    // for a process start, so the DNAT can be seen before the route is set).
    await waitFor(
      "the floating IP's route",
      () => node.ip("route", "show", `${FIP}/32`).includes(`dev ${pods.b.iface}`),
      30_000,
      100,
    );
    expect(connects(pods.a.ns, { ...pods.b, ip: FIP }, true)).toBe(true);
    expect(connects(node, { ...pods.b, ip: FIP }, true)).toBe(true);
  });
});
