// The real `bin/ocelot-cni` (delegating to the real `bin/ocelot-ipam`) as root, run inside a
// "node" network namespace with pods in namespaces of their own, on the embedded store: ADD
// wires two pods that then ping each other through the node, WorkloadEndpoints are written and
// `ocelot ipam check` finds no leak; CHECK passes, then fails naming a flushed address; DEL
// removes everything and is idempotent; a failure after IPAM (pool exhausted, or a taken
// interface name) leaves nothing behind.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listWorkloadEndpoints } from "../../src/api/client.js";
import { workloadEndpointSchema } from "../../src/api/node.js";
import { hostIfaceName, podIdentity } from "../../src/cni/plugin.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { IpamStore } from "../../src/ipam/store.js";
import { addUplink, runOcelotCni } from "../helpers/cni.js";
import { runSync } from "../helpers/limits.js";
import { Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";
import { ping } from "../helpers/pods.js";
import { putPool } from "../ipam/helpers.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const BIN = join(ROOT, "bin");
const reason =
  netnsUnavailableReason() ??
  (existsSync(join(ROOT, "dist/cni/plugin_main.js"))
    ? undefined
    : "dist/ not built (npm run build)");
const skip = skipWithReason("ocelot-cni netns", reason);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface IpAddr {
  ifname: string;
  address?: string;
  flags?: string[];
  addr_info: { family: string; local: string; prefixlen: number; scope: string }[];
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
}

describe.skipIf(skip)("ocelot-cni in network namespaces", () => {
  let dir: string;
  let url: string;
  let store: SqliteDatastore;
  let node: Netns;
  const pods: Netns[] = [];
  const results = new Map<string, { ips: { address: string }[] }>();

  const conf = (extra: Record<string, unknown> = {}, ipam: Record<string, unknown> = {}) => ({
    cniVersion: "1.0.0",
    name: "k8s-pod-network",
    type: "ocelot-cni",
    datastore: url,
    nodename: "node-a",
    mtu: 1450,
    ipam: { type: "ocelot-ipam", ipv4_pools: ["pool"], assign_ipv6: false, ...ipam },
    ...extra,
  });
  const env = (pod: Netns, podName: string) => ({
    CNI_CONTAINERID: `ctr-${podName}`,
    CNI_NETNS: `/run/netns/${pod.name}`,
    CNI_IFNAME: "eth0",
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=${podName}`,
    CNI_PATH: `/nonexistent:${BIN}`,
  });
  const hostIface = (podName: string) =>
    hostIfaceName(podIdentity({ ...env(pods[0] as Netns, podName) }));

  /** Runs bin/ocelot-cni inside the node namespace, bounded to 30 s. */
  const cni = (command: string, e: Record<string, string>, c: unknown): Promise<Run> =>
    runOcelotCni(node, command, e, c);

  const hostLinks = () =>
    node.ipJson<IpAddr[]>("addr", "show").filter((l) => l.ifname.startsWith("ocl"));
  const podLinks = (pod: Netns) => pod.ipJson<IpAddr[]>("link", "show").map((l) => l.ifname);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-cni-"));
    url = `file:${join(dir, "store.db")}`;
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool", "10.66.0.0/16", { blockSize: 26 });
    await putPool(store, "tiny", "10.67.0.0/30", { blockSize: 30 });
    await putPool(store, "pool6", "fd66::/64", { blockSize: 122 });
    node = Netns.create("cninode");
    addUplink(node, "192.0.2.10/24");
    for (const short of ["cnip1", "cnip2", "cnip3"]) pods.push(Netns.create(short));
  });

  afterAll(async () => {
    for (const ns of [...pods, node]) ns?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("ADD wires two pods: /32 and gateway routes in the pod, Calico's host side, protocol 202 host routes; they ping each other through the node", async () => {
    for (const [i, podName] of ["web-1", "web-2"].entries()) {
      const pod = pods[i] as Netns;
      const r = await cni("ADD", env(pod, podName), conf());
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const result = JSON.parse(r.stdout);
      results.set(podName, result);
      const ip = (result.ips[0].address as string).split("/")[0] as string;
      expect(result).toMatchObject({
        cniVersion: "1.0.0",
        interfaces: [
          { name: hostIface(podName), mac: "ee:ee:ee:ee:ee:ee" },
          { name: "eth0", sandbox: `/run/netns/${pod.name}` },
        ],
        ips: [{ address: `${ip}/32`, interface: 1 }],
        routes: [{ dst: "0.0.0.0/0", gw: "169.254.1.1" }],
      });

      // The pod's side, read back from the kernel.
      const [eth0] = pod.ipJson<IpAddr[]>("addr", "show", "dev", "eth0");
      expect(eth0?.flags).toContain("UP");
      expect(eth0?.address).toBe(result.interfaces[1].mac);
      expect(eth0?.addr_info.filter((a) => a.family === "inet")).toEqual([
        expect.objectContaining({ local: ip, prefixlen: 32 }),
      ]);
      const podRoutes = pod.ipJson<IpRoute[]>("route", "show");
      expect(podRoutes).toContainEqual(
        expect.objectContaining({ dst: "default", gateway: "169.254.1.1", dev: "eth0" }),
      );
      expect(podRoutes).toContainEqual(
        expect.objectContaining({ dst: "169.254.1.1", dev: "eth0", scope: "link" }),
      );
      expect(pod.ipJson<{ mtu: number }[]>("link", "show", "dev", "eth0")[0]?.mtu).toBe(1450);

      // The node's side.
      const host = hostIface(podName);
      const [link] = node.ipJson<IpAddr[]>("addr", "show", "dev", host);
      expect(link?.address).toBe("ee:ee:ee:ee:ee:ee");
      expect(link?.flags).toContain("UP");
      expect(link?.addr_info.filter((a) => a.family === "inet")).toEqual([]);
      expect(node.exec("cat", `/proc/sys/net/ipv4/conf/${host}/proxy_arp`).trim()).toBe("1");
      expect(node.ipJson<IpRoute[]>("route", "show", "proto", "202")).toContainEqual(
        expect.objectContaining({ dst: ip, dev: host, scope: "link" }),
      );
    }
    const ip2 = (results.get("web-2")?.ips[0]?.address ?? "").split("/")[0] as string;
    // Retried (a lost first echo, e.g. while the host's shared neighbour table is full, is no
    // failure of the plugin).
    expect(ping(pods[0] as Netns, ip2, true), `ping ${ip2}`).toBe(true);
  });

  it("writes valid WorkloadEndpoints, so `ocelot ipam check` finds no leaked address", async () => {
    const weps = await listWorkloadEndpoints(store, "team-a");
    expect(weps.map((w) => w.metadata.name).sort()).toEqual([
      "node--a-k8s-web--1-eth0",
      "node--a-k8s-web--2-eth0",
    ]);
    for (const w of weps) {
      expect(workloadEndpointSchema.safeParse(w).success).toBe(true);
      const podName = w.spec.pod as string;
      expect(w.spec).toMatchObject({
        orchestrator: "k8s",
        node: "node-a",
        containerID: `ctr-${podName}`,
        endpoint: "eth0",
        interfaceName: hostIface(podName),
        ipNetworks: [results.get(podName)?.ips[0]?.address],
        profiles: ["kns.team-a"],
      });
    }
    const r = runSync(join(BIN, "ocelot"), ["ipam", "check", "--json", "--datastore", url], {
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).summary).toMatchObject({ allocated: 2, leaked: 0 });
  });

  it("CHECK passes on what ADD built, and fails naming the address once it is flushed", async () => {
    const pod = pods[0] as Netns;
    const prev = conf({ prevResult: results.get("web-1") });
    const ok = await cni("CHECK", env(pod, "web-1"), prev);
    expect(ok, ok.stdout + ok.stderr).toMatchObject({ code: 0, stdout: "" });
    pod.ip("addr", "flush", "dev", "eth0");
    const bad = await cni("CHECK", env(pod, "web-1"), prev);
    expect(bad.code).toBe(1);
    const ip = results.get("web-1")?.ips[0]?.address;
    expect(JSON.parse(bad.stdout)).toMatchObject({ code: 101 });
    expect(JSON.parse(bad.stdout).msg).toContain(
      `address ${ip} is missing from pod interface eth0`,
    );
  });

  it("DEL removes veths, WorkloadEndpoints and addresses; DEL again (namespace gone too) succeeds", async () => {
    for (const [i, podName] of ["web-1", "web-2"].entries()) {
      const r = await cni("DEL", env(pods[i] as Netns, podName), conf());
      expect(r, r.stdout + r.stderr).toMatchObject({ code: 0, stdout: "" });
    }
    expect(hostLinks()).toEqual([]);
    expect(node.ipJson<IpRoute[]>("route", "show", "proto", "202")).toEqual([]);
    expect(podLinks(pods[1] as Netns)).toEqual(["lo"]);
    expect(await listWorkloadEndpoints(store)).toEqual([]);
    const ipam = new IpamStore(store);
    for (const r of results.values()) {
      const ip = (r.ips[0]?.address ?? "").split("/")[0] as string;
      expect(await ipam.getAllocation(ip)).toBeUndefined();
    }
    const again = await cni("DEL", env(pods[0] as Netns, "web-1"), conf());
    expect(again, again.stdout).toMatchObject({ code: 0, stdout: "" });
    const gone = {
      ...env(pods[1] as Netns, "web-2"),
      CNI_NETNS: "/run/netns/no-such-namespace",
    };
    const third = await cni("DEL", gone, conf());
    expect(third, third.stdout).toMatchObject({ code: 0, stdout: "" });
  });

  it("dual stack: /128 on the pod, default via the host side's link-local address, /128 host routes; pods ping each other over IPv6", async () => {
    const dual = conf({ cniVersion: "0.4.0" }, { ipv6_pools: ["pool6"], assign_ipv6: true });
    const v6: string[] = [];
    for (const [i, podName] of ["dual-1", "dual-2"].entries()) {
      const pod = pods[i] as Netns;
      const r = await cni("ADD", env(pod, podName), dual);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const result = JSON.parse(r.stdout);
      const ip6 = result.ips.find((a: { version: string }) => a.version === "6");
      expect(ip6).toMatchObject({
        address: expect.stringMatching(/^fd66::.*\/128$/),
        interface: 1,
      });
      const ip = ip6.address.split("/")[0] as string;
      v6.push(ip);
      const [eth0] = pod.ipJson<IpAddr[]>("addr", "show", "dev", "eth0");
      expect(eth0?.addr_info).toContainEqual(
        expect.objectContaining({ family: "inet6", local: ip, prefixlen: 128 }),
      );
      const host = hostIface(podName);
      const [hostLink] = node.ipJson<IpAddr[]>("addr", "show", "dev", host);
      const ll = hostLink?.addr_info.find((a) => a.family === "inet6" && a.scope === "link")?.local;
      expect(ll).toBe("fe80::ecee:eeff:feee:eeee");
      expect(result.routes).toContainEqual({ dst: "::/0", gw: ll });
      expect(pod.ipJson<IpRoute[]>("-6", "route", "show", "default")).toEqual([
        expect.objectContaining({ gateway: ll, dev: "eth0" }),
      ]);
      expect(node.ipJson<IpRoute[]>("-6", "route", "show", "proto", "202")).toContainEqual(
        expect.objectContaining({ dst: ip, dev: host }),
      );
    }
    expect(ping(pods[0] as Netns, v6[1] as string, true), `ping ${v6[1]}`).toBe(true);
    for (const [i, podName] of ["dual-1", "dual-2"].entries()) {
      const r = await cni("DEL", env(pods[i] as Netns, podName), dual);
      expect(r, r.stdout).toMatchObject({ code: 0, stdout: "" });
    }
    expect(hostLinks()).toEqual([]);
    expect(node.ipJson<IpRoute[]>("-6", "route", "show", "proto", "202")).toEqual([]);
    expect(await listWorkloadEndpoints(store)).toEqual([]);
  });

  it("an exhausted pool fails with IPAM's code 11 and leaves no veth and no WorkloadEndpoint", async () => {
    const ipam = new IpamStore(store);
    const filled = await ipam.autoAssign({
      handleId: "fill",
      node: "node-a",
      num4: 4,
      num6: 0,
      pools4: ["tiny"],
      pools6: [],
    });
    expect(filled).toHaveLength(4);
    const pod = pods[2] as Netns;
    const r = await cni("ADD", env(pod, "full-1"), conf({}, { ipv4_pools: ["tiny"] }));
    expect(r.code).toBe(1);
    const err = JSON.parse(r.stdout);
    expect(err).toMatchObject({ cniVersion: "1.0.0", code: 11 });
    expect(err.msg).toContain("tiny");
    expect(hostLinks()).toEqual([]);
    expect(podLinks(pod)).toEqual(["lo"]);
    expect(await listWorkloadEndpoints(store)).toEqual([]);
    await ipam.releaseByHandle("fill", "node-a");
  });

  it("a failure after IPAM (the pod's interface name is taken) undoes everything, the address too", async () => {
    const pod = pods[2] as Netns;
    pod.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer");
    try {
      const r = await cni("ADD", env(pod, "taken-1"), conf());
      expect(r.code, r.stdout + r.stderr).toBe(1);
      expect(JSON.parse(r.stdout).msg).toContain("Creating veth");
      expect(hostLinks()).toEqual([]);
      expect(await listWorkloadEndpoints(store)).toEqual([]);
      const ipam = new IpamStore(store);
      expect(await ipam.addressesOfHandle("k8s-pod-network.ctr-taken-1", "node-a")).toEqual([]);
    } finally {
      pod.ip("link", "del", "eth0");
    }
  });

  it("VERSION lists the supported versions", async () => {
    const r = await cni("VERSION", {}, { cniVersion: "0.4.0" });
    expect(JSON.parse(r.stdout)).toEqual({
      cniVersion: "0.4.0",
      supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0"],
    });
  });
});
