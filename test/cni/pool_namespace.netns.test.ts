// IPPool namespaceSelector with the real `bin/ocelot-cni` (delegating to `ocelot-ipam`) as root
// in network namespaces, on the embedded store, without an API server: the namespace's labels
// are the ones its `kns.<ns>` Profile applies (`pcns.<key>`, as kube-controllers writes them).
// Two pools, "team-a-pool" (namespaceSelector team == 'a') and "others-pool" (team != 'a'):
// - a pod of namespace team-a gets its address from team-a-pool, one of team-b (team: b) and one
//   of a namespace with no Profile (no labels: Calico matches a missing namespace as no labels)
//   from others-pool; the pods then ping each other through the node;
// - team-b relabelled team: a: its next pod gets its address from team-a-pool;
// - pools named in the network configuration (ipv4_pools) are used whatever their selectors, as
//   Calico's determinePools does.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResourceClient } from "../../src/api/client.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { addUplink, BIN, runOcelotCni } from "../helpers/cni.js";
import { Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";
import { ping } from "../helpers/pods.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const reason =
  netnsUnavailableReason() ??
  (existsSync(join(ROOT, "dist/bundle/ocelot-cni.cjs"))
    ? undefined
    : "dist/bundle not built (npm run build)");
const skip = skipWithReason("IPPool namespaceSelector (ocelot-cni, netns)", reason);

const TEAM_A = /^10\.68\.0\.\d+\/32$/;
const OTHERS = /^10\.69\.0\.\d+\/32$/;

describe.skipIf(skip)("IPPool namespaceSelector in ocelot-cni's pool choice", () => {
  let dir: string;
  let url: string;
  let store: SqliteDatastore;
  let client: ResourceClient;
  let node: Netns;
  const pods: Netns[] = [];

  const conf = (ipam: Record<string, unknown> = {}) => ({
    cniVersion: "1.0.0",
    name: "k8s-pod-network",
    type: "ocelot-cni",
    datastore: url,
    nodename: "node-ns",
    mtu: 1450,
    ipam: { type: "ocelot-ipam", assign_ipv6: false, ...ipam },
  });
  const env = (pod: Netns, ns: string, name: string) => ({
    CNI_CONTAINERID: `ctr-${name}`,
    CNI_NETNS: `/run/netns/${pod.name}`,
    CNI_IFNAME: "eth0",
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${ns};K8S_POD_NAME=${name}`,
    CNI_PATH: BIN,
  });
  /** ADD of pod `name` in namespace `ns` (its own network namespace); its address. */
  async function add(ns: string, name: string, ipam: Record<string, unknown> = {}) {
    const pod = Netns.create(`pn${pods.length}`);
    pods.push(pod);
    const r = await runOcelotCni(node, "ADD", env(pod, ns, name), conf(ipam));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    return { pod, address: JSON.parse(r.stdout).ips[0].address as string };
  }
  /** The `kns.<ns>` Profile as kube-controllers writes it for a Namespace with these labels. */
  const nsProfile = (ns: string, labels: Record<string, string>) =>
    client.write("apply", {
      apiVersion: "projectcalico.org/v3",
      kind: "Profile",
      metadata: { name: `kns.${ns}` },
      spec: {
        ingress: [{ action: "Allow" }],
        egress: [{ action: "Allow" }],
        labelsToApply: {
          ...Object.fromEntries(Object.entries(labels).map(([k, v]) => [`pcns.${k}`, v])),
          "pcns.projectcalico.org/name": ns,
        },
      },
    });
  const pool = (name: string, cidr: string, namespaceSelector: string) =>
    client.write("apply", {
      apiVersion: "projectcalico.org/v3",
      kind: "IPPool",
      metadata: { name },
      spec: { cidr, blockSize: 28, namespaceSelector },
    });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-pool-ns-"));
    url = `file:${join(dir, "store.db")}`;
    store = new SqliteDatastore(join(dir, "store.db"));
    client = new ResourceClient(store);
    await pool("team-a-pool", "10.68.0.0/24", "team == 'a'");
    await pool("others-pool", "10.69.0.0/24", "team != 'a'");
    await nsProfile("team-a", { team: "a" });
    await nsProfile("team-b", { team: "b" });
    node = Netns.create("pnnode");
    addUplink(node, "192.0.2.10/24");
  });

  afterAll(async () => {
    for (const ns of [...pods, node]) ns?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("each namespace's pod gets an address of the pool its labels select; the pods ping each other", async () => {
    const a = await add("team-a", "web-a");
    const b = await add("team-b", "web-b");
    const c = await add("team-c", "web-c");
    console.log(`team-a: ${a.address}, team-b: ${b.address}, team-c (no Profile): ${c.address}`);
    expect(a.address).toMatch(TEAM_A);
    expect(b.address).toMatch(OTHERS);
    expect(c.address).toMatch(OTHERS);
    const ip = (x: { address: string }) => x.address.split("/")[0] as string;
    expect(ping(a.pod, ip(b), true)).toBe(true);
    expect(ping(c.pod, ip(a), true)).toBe(true);
  });

  it("a namespace relabelled into the selector: its next pod takes team-a-pool", async () => {
    await nsProfile("team-b", { team: "a" });
    const b2 = await add("team-b", "web-b2");
    console.log(`team-b relabelled team=a: ${b2.address}`);
    expect(b2.address).toMatch(TEAM_A);
  });

  it("pools named in the network configuration are used whatever their namespaceSelector (Calico)", async () => {
    const c2 = await add("team-c", "web-c2", { ipv4_pools: ["team-a-pool"] });
    expect(c2.address).toMatch(TEAM_A);
  });
});
