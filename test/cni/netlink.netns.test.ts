// `ocelot-cni` does its kernel work over rtnetlink from its own process: ADD and DEL succeed
// with a PATH that holds only `node` (no `ip`, `nsenter` or `sysctl` to run), and what they
// build is read back from the real kernel (`ip -j`, /proc/sys in each namespace): the veth's
// two ends with their MTU, MAC and state, the pod's /32 and /128 with their routes, the pod's
// IPv6 sysctls (written inside its namespace), the host side's sysctls; the calling process
// stays in its own namespace. A step the kernel refuses (CNI_NETNS not a network namespace)
// answers with the spec's error shape and leaves nothing behind.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listWorkloadEndpoints } from "../../src/api/client.js";
import { hostIfaceName, podIdentity } from "../../src/cni/plugin.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { IpamStore } from "../../src/ipam/store.js";
import { addUplink, BIN, type CniRun } from "../helpers/cni.js";
import { HANG_MS } from "../helpers/limits.js";
import { Netns, netnsUnavailableReason, sh, skipWithReason } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const reason =
  netnsUnavailableReason() ??
  (existsSync(join(ROOT, "native/build/Release/ocelot_netlink.node"))
    ? undefined
    : "native addon not built (npm run build)");
const skip = skipWithReason("ocelot-cni netlink", reason);

interface IpLink {
  ifname: string;
  address?: string;
  mtu?: number;
  flags?: string[];
  linkinfo?: { info_kind?: string };
  addr_info?: { family: string; local: string; prefixlen: number; scope: string }[];
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
}

/**
 * bin/ocelot-cni inside `node`, as test/helpers/cni.ts runs it, but with the environment given
 * whole (its PATH too); `ip netns exec` itself is found by its full path.
 */
function runOcelotCni(
  node: Netns,
  command: string,
  env: Record<string, string>,
  conf: unknown,
): Promise<CniRun> {
  const ip = sh("sh", ["-c", "command -v ip"]).trim();
  return new Promise((resolve, reject) => {
    const p = spawn(ip, ["netns", "exec", node.name, join(BIN, "ocelot-cni")], {
      env: { CNI_COMMAND: command, ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => p.kill("SIGKILL"), HANG_MS);
    p.on("error", reject);
    p.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    p.stdin.end(JSON.stringify(conf));
  });
}

describe.skipIf(skip)("ocelot-cni over rtnetlink", () => {
  let dir: string;
  let url: string;
  let store: SqliteDatastore;
  let node: Netns;
  let pod: Netns;
  /** A PATH with `node` in it and nothing else. */
  let nodeOnly: string;

  const conf = () => ({
    cniVersion: "1.0.0",
    name: "k8s-pod-network",
    type: "ocelot-cni",
    datastore: url,
    nodename: "node-a",
    mtu: 1400,
    ipam: { type: "ocelot-ipam", ipv4_pools: ["pool"], ipv6_pools: ["pool6"], assign_ipv6: true },
  });
  const env = (netns: string, podName: string) => ({
    PATH: nodeOnly,
    CNI_CONTAINERID: `ctr-${podName}`,
    CNI_NETNS: netns,
    CNI_IFNAME: "eth0",
    CNI_ARGS: `K8S_POD_NAMESPACE=team-b;K8S_POD_NAME=${podName}`,
    CNI_PATH: BIN,
  });
  const hostIface = (podName: string) => hostIfaceName(podIdentity(env("/x", podName)));
  const hostLinks = () =>
    node.ipJson<IpLink[]>("link", "show").filter((l) => l.ifname.startsWith("ocl"));
  const sysctlIn = (ns: Netns, key: string) =>
    ns.exec("cat", `/proc/sys/${key.replaceAll(".", "/")}`).trim();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-cni-nl-"));
    nodeOnly = join(dir, "path");
    rmSync(nodeOnly, { recursive: true, force: true });
    mkdirSync(nodeOnly);
    symlinkSync(process.execPath, join(nodeOnly, "node"));
    url = `file:${join(dir, "store.db")}`;
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool", "10.68.0.0/16", { blockSize: 26 });
    await putPool(store, "pool6", "fd68::/64", { blockSize: 122 });
    node = Netns.create("nlnode");
    addUplink(node, "192.0.2.10/24");
    pod = Netns.create("nlpod");
  });

  afterAll(async () => {
    for (const ns of [pod, node]) ns?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("ADD and DEL need no ip, nsenter or sysctl executable; the kernel holds what ADD built", async () => {
    const e = env(`/run/netns/${pod.name}`, "nl-1");
    const r = await runOcelotCni(node, "ADD", e, conf());
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const result = JSON.parse(r.stdout);
    const ip4 = result.ips.find((a: { address: string }) => !a.address.includes(":")).address;
    const ip6 = result.ips.find((a: { address: string }) => a.address.includes(":")).address;
    const host = hostIface("nl-1");

    const [hostLink] = node.ipJson<IpLink[]>("-d", "addr", "show", "dev", host);
    expect(hostLink).toMatchObject({
      address: "ee:ee:ee:ee:ee:ee",
      mtu: 1400,
      linkinfo: { info_kind: "veth" },
    });
    expect(hostLink?.flags).toContain("UP");
    for (const [key, want] of [
      [`net.ipv4.conf.${host}.proxy_arp`, "1"],
      [`net.ipv4.conf.${host}.route_localnet`, "1"],
      [`net.ipv4.neigh.${host}.proxy_delay`, "0"],
      [`net.ipv6.conf.${host}.proxy_ndp`, "1"],
      [`net.ipv6.conf.${host}.accept_dad`, "0"],
    ] as const)
      expect(sysctlIn(node, key), key).toBe(want);
    const ll = hostLink?.addr_info?.find((a) => a.family === "inet6" && a.scope === "link")?.local;
    expect(result.routes).toEqual([
      { dst: "0.0.0.0/0", gw: "169.254.1.1" },
      { dst: "::/0", gw: ll },
    ]);

    const [eth0] = pod.ipJson<IpLink[]>("-d", "addr", "show", "dev", "eth0");
    expect(eth0).toMatchObject({ mtu: 1400, linkinfo: { info_kind: "veth" } });
    expect(eth0?.address).toBe(result.interfaces[1].mac);
    expect(eth0?.flags).toContain("UP");
    const global = eth0?.addr_info?.filter((a) => a.scope === "global");
    expect(global?.map((a) => `${a.local}/${a.prefixlen}`).sort()).toEqual([ip4, ip6].sort());
    expect(sysctlIn(pod, "net.ipv6.conf.eth0.accept_dad")).toBe("0");
    expect(sysctlIn(pod, "net.ipv6.conf.all.disable_ipv6")).toBe("0");
    const routes4 = pod.ipJson<IpRoute[]>("-d", "route", "show");
    expect(routes4).toContainEqual(
      expect.objectContaining({ dst: "169.254.1.1", dev: "eth0", protocol: "boot", scope: "link" }),
    );
    expect(routes4).toContainEqual(
      expect.objectContaining({ dst: "default", gateway: "169.254.1.1", protocol: "boot" }),
    );
    expect(pod.ipJson<IpRoute[]>("-d", "-6", "route", "show", "default")).toEqual([
      expect.objectContaining({ gateway: ll, dev: "eth0", protocol: "boot" }),
    ]);
    const hostRoutes = [
      ...node.ipJson<IpRoute[]>("route", "show", "proto", "202"),
      ...node.ipJson<IpRoute[]>("-6", "route", "show", "proto", "202"),
    ];
    // (IPv6 routes have no scope: `ip` prints none.)
    expect(hostRoutes.map((x) => `${x.dst} ${x.dev} ${x.scope ?? "-"}`).sort()).toEqual(
      [`${ip4.split("/")[0]} ${host} link`, `${ip6.split("/")[0]} ${host} -`].sort(),
    );

    const check = await runOcelotCni(node, "CHECK", e, { ...conf(), prevResult: result });
    expect(check, check.stdout).toMatchObject({ code: 0, stdout: "" });
    const del = await runOcelotCni(node, "DEL", e, conf());
    expect(del, del.stdout).toMatchObject({ code: 0, stdout: "" });
    expect(hostLinks()).toEqual([]);
    expect(pod.ipJson<IpLink[]>("link", "show").map((l) => l.ifname)).toEqual(["lo"]);
    expect(await listWorkloadEndpoints(store)).toEqual([]);
  });

  it("CNI_NETNS that is no network namespace: code 102 (internal), a one-line msg naming the step, nothing left", async () => {
    const notNs = join(dir, "not-a-netns");
    writeFileSync(notNs, "");
    const r = await runOcelotCni(node, "ADD", env(notNs, "nl-2"), conf());
    expect(r.code, r.stdout + r.stderr).toBe(1);
    const err = JSON.parse(r.stdout);
    expect(err).toMatchObject({ cniVersion: "1.0.0", code: 102 });
    expect(err.msg).toMatch(/^Creating veth ocl[0-9a-f]{11} with eth0 in .* failed: /);
    expect(err.msg).not.toContain("\n");
    expect(hostLinks().filter((l) => l.ifname === hostIface("nl-2"))).toEqual([]);
    expect(await listWorkloadEndpoints(store)).toEqual([]);
    const ipam = new IpamStore(store);
    expect(await ipam.addressesOfHandle("k8s-pod-network.ctr-nl-2", "node-a")).toEqual([]);
  });
});
