// How the real `bin/ocelot-cni` reaches its IPAM plugin, as root in network namespaces on the
// embedded store: `ocelot-ipam` run in the plugin's own process and the same plugin exec'd as
// the CNI spec's delegation (OCELOT_CNI_IPAM_EXEC=1) give the same ADD results, the same stored
// addresses and WorkloadEndpoints, the same pool-exhausted error, and both DELs free everything;
// another IPAM type (Debian's `host-local`) is still exec'd from CNI_PATH.
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listWorkloadEndpoints } from "../../src/api/client.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { inUseCount } from "../../src/ipam/block.js";
import { IpamStore } from "../../src/ipam/store.js";
import { addUplink, BIN, runOcelotCni } from "../helpers/cni.js";
import { Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const HOST_LOCAL = "/usr/lib/cni/host-local";
const reason =
  netnsUnavailableReason() ??
  (existsSync(join(ROOT, "dist/bundle/ocelot-cni.cjs"))
    ? undefined
    : "dist/bundle not built (npm run build)");
const skip = skipWithReason("ocelot-cni IPAM delegation", reason);

describe.skipIf(skip)("ocelot-cni IPAM delegation", () => {
  let dir: string;
  let node: Netns;
  const pods: Netns[] = [];

  const env = (pod: Netns, name: string, extra: Record<string, string> = {}) => ({
    CNI_CONTAINERID: `ctr-${name}`,
    CNI_NETNS: `/run/netns/${pod.name}`,
    CNI_IFNAME: "eth0",
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=team-d;K8S_POD_NAME=${name}`,
    CNI_PATH: `${BIN}:/usr/lib/cni`,
    ...extra,
  });
  const conf = (url: string, ipam: Record<string, unknown>) => ({
    cniVersion: "1.0.0",
    name: "k8s-pod-network",
    type: "ocelot-cni",
    datastore: url,
    nodename: "node-d",
    mtu: 1450,
    ipam,
  });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-cni-ipam-"));
    node = Netns.create("delnode");
    addUplink(node, "192.0.2.10/24");
    for (const short of ["delp1", "delp2", "delp3"]) pods.push(Netns.create(short));
  });

  afterAll(() => {
    for (const ns of [...pods, node]) ns?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Two pods and a third the pool has no room for, then every DEL, on a fresh store. */
  async function scenario(mode: "in-process" | "exec") {
    const path = join(dir, `${mode}.db`);
    const url = `file:${path}`;
    const store = new SqliteDatastore(path);
    try {
      // A /31 pool of one /31 block: exactly two addresses, given out in order.
      await putPool(store, "pair", "10.97.0.0/31", { blockSize: 31 });
      // In process, no ocelot-ipam executable is reachable: nothing can have been exec'd.
      const extra: Record<string, string> =
        mode === "exec" ? { OCELOT_CNI_IPAM_EXEC: "1" } : { CNI_PATH: "/nonexistent" };
      const c = conf(url, { type: "ocelot-ipam", ipv4_pools: ["pair"], assign_ipv6: false });
      const names = ["db-1", "db-2", "db-3"];
      const adds = [];
      for (const [i, name] of names.entries())
        adds.push(await runOcelotCni(node, "ADD", env(pods[i] as Netns, name, extra), c));
      const ipam = new IpamStore(store);
      const held = await Promise.all(
        names.map((n) => ipam.addressesOfHandle(`k8s-pod-network.ctr-${n}`, "node-d")),
      );
      const weps = (await listWorkloadEndpoints(store, "team-d")).map((w) => {
        const { mac: _mac, ...spec } = w.spec;
        return { name: w.metadata.name, spec };
      });
      const dels = [];
      for (const [i, name] of names.entries())
        dels.push(await runOcelotCni(node, "DEL", env(pods[i] as Netns, name, extra), c));
      const after = (await ipam.listBlocks(4)).reduce((n, b) => n + inUseCount(b.block), 0);
      const handles = (await store.list("/ocelot/ipam/v2/handle/")).items.length;
      return { adds, held, weps, dels, after, handles };
    } finally {
      await store.close();
    }
  }

  /** An ADD result without what the kernel picks at random (the pod side's MAC). */
  const comparable = (stdout: string) => {
    const r = JSON.parse(stdout);
    for (const i of r.interfaces ?? []) if (i.sandbox) i.mac = "<kernel's>";
    return r;
  };

  it("ocelot-ipam in process and exec'd: same results, same stored addresses and endpoints, same exhaustion error; DEL frees all", async () => {
    const here = await scenario("in-process");
    const exec = await scenario("exec");
    for (const s of [here, exec]) {
      expect(s.adds[0]?.code, s.adds[0]?.stdout).toBe(0);
      expect(s.adds[1]?.code, s.adds[1]?.stdout).toBe(0);
      expect(s.adds[2]?.code).toBe(1);
      expect(JSON.parse(s.adds[2]?.stdout ?? "{}").code).toBe(11);
      for (const d of s.dels) expect(d.code, d.stdout).toBe(0);
      expect(s.after).toBe(0);
      expect(s.handles).toBe(0);
    }
    expect(comparable(here.adds[0]?.stdout ?? "")).toEqual(comparable(exec.adds[0]?.stdout ?? ""));
    expect(comparable(here.adds[1]?.stdout ?? "")).toEqual(comparable(exec.adds[1]?.stdout ?? ""));
    expect(JSON.parse(here.adds[0]?.stdout ?? "").ips).toEqual([
      { address: "10.97.0.0/32", interface: 1 },
    ]);
    // The same error, word for word (code 11 naming the pool).
    expect(JSON.parse(here.adds[2]?.stdout ?? "")).toEqual(JSON.parse(exec.adds[2]?.stdout ?? ""));
    expect(here.held).toEqual(exec.held);
    expect(here.held.map((h) => h.map((a) => a.address))).toEqual([
      ["10.97.0.0"],
      ["10.97.0.1"],
      [],
    ]);
    expect(here.weps).toEqual(exec.weps);
    expect(here.weps).toHaveLength(2);
  });

  it.skipIf(
    skipWithReason(
      "host-local IPAM",
      existsSync(HOST_LOCAL)
        ? undefined
        : `${HOST_LOCAL} missing (apt-get install containernetworking-plugins)`,
    ),
  )(
    "another IPAM type is exec'd from CNI_PATH: host-local gives the address and releases it on DEL",
    async () => {
      const dataDir = join(dir, "host-local");
      const c = conf(`file:${join(dir, "hl.db")}`, {
        type: "host-local",
        ranges: [[{ subnet: "10.96.0.0/24" }]],
        dataDir,
      });
      const pod = pods[0] as Netns;
      const add = await runOcelotCni(node, "ADD", env(pod, "hl-1"), c);
      expect(add.code, add.stdout + add.stderr).toBe(0);
      const r = JSON.parse(add.stdout);
      // host-local's first address of the range; its lease file proves it ran.
      expect(r.ips).toEqual([{ address: "10.96.0.2/32", interface: 1 }]);
      expect(readdirSync(join(dataDir, "k8s-pod-network"))).toContain("10.96.0.2");
      const eth0 = pod.ipJson<{ addr_info: { local: string }[] }[]>("addr", "show", "dev", "eth0");
      expect(eth0[0]?.addr_info.map((a) => a.local)).toContain("10.96.0.2");
      const del = await runOcelotCni(node, "DEL", env(pod, "hl-1"), c);
      expect(del.code, del.stdout + del.stderr).toBe(0);
      expect(readdirSync(join(dataDir, "k8s-pod-network"))).not.toContain("10.96.0.2");
    },
  );
});
