// IPPool namespaceSelector in IPAM's pool choice (libcalico-go's SelectsNamespace in
// determinePools): both selectors must match; no namespace is matched as no labels; requested
// pools are used whatever their selectors; and where the labels come from in IpamStore (the
// request's, else the `kns.<ns>` Profile's `pcns.` labels) and in ocelot-ipam
// (`args.ocelot.namespaceLabels`). The plugin on a real store: pool_namespace.netns.test.ts.
import { describe, expect, it } from "vitest";
import { runIpamPlugin } from "../../src/cni/ipam_plugin.js";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import { type Pool, selectPools } from "../../src/ipam/allocator.js";
import { decodePool } from "../../src/ipam/records.js";
import { IpamStore } from "../../src/ipam/store.js";
import { parseCidr } from "../../src/lib/ip.js";
import { putPool } from "./helpers.js";

const pool = (name: string, cidr: string, extra: Partial<Pool> = {}): Pool => ({
  name,
  cidr: parseCidr(cidr),
  blockSize: 28,
  nodeSelector: "all()",
  disabled: false,
  allowedUses: ["Workload"],
  ...extra,
});

describe("IPPool namespaceSelector", () => {
  const pools = [
    pool("a", "10.1.0.0/24", { namespaceSelector: "team == 'a'" }),
    pool("b", "10.2.0.0/24", { namespaceSelector: "team == 'a'", nodeSelector: "zone == 'x'" }),
    pool("any", "10.3.0.0/24"),
  ];
  const req = { family: 4 as const, requested: [], nodeLabels: {}, use: "Workload" as const };

  it("selectPools(): the namespace's labels must match, with the node's", () => {
    const names = (r: Parameters<typeof selectPools>[1]) =>
      selectPools(pools, r).map((p) => p.name);
    expect(names({ ...req, namespaceLabels: { team: "a" } })).toEqual(["a", "any"]);
    expect(names({ ...req, namespaceLabels: { team: "a" }, nodeLabels: { zone: "x" } })).toEqual([
      "a",
      "b",
      "any",
    ]);
    expect(names({ ...req, namespaceLabels: { team: "b" } })).toEqual(["any"]);
    // No namespace known: no labels (SelectsNamespace(pool, nil)).
    expect(names(req)).toEqual(["any"]);
    // Requested pools: used whatever their namespaceSelector.
    expect(names({ ...req, requested: ["a"], namespaceLabels: { team: "b" } })).toEqual(["a"]);
  });

  it("reads the stored selector; empty is none", () => {
    const doc = (spec: Record<string, unknown>) =>
      JSON.stringify({
        apiVersion: "projectcalico.org/v3",
        kind: "IPPool",
        metadata: { name: "p" },
        spec: { cidr: "10.9.0.0/24", ...spec },
      });
    expect(decodePool("k", doc({ namespaceSelector: "x == 'y'" }))).toMatchObject({
      namespaceSelector: "x == 'y'",
    });
    expect(decodePool("k", doc({ namespaceSelector: "" })).namespaceSelector).toBeUndefined();
  });

  it("IpamStore: the request's labels, else the kns.<ns> Profile's pcns. labels", async () => {
    const ds = new MemoryDatastore();
    await putPool(ds, "a", "10.1.0.0/24", {
      blockSize: 28,
      namespaceSelector: "team == 'a'",
      allowedUses: ["Workload"],
    });
    await putPool(ds, "any", "10.3.0.0/24", {
      blockSize: 28,
      namespaceSelector: "team != 'a'",
      allowedUses: ["Workload"],
    });
    await ds.update(
      "/ocelot/resources/v3/profiles/kns.ns-a",
      JSON.stringify({
        apiVersion: "projectcalico.org/v3",
        kind: "Profile",
        metadata: { name: "kns.ns-a" },
        spec: { labelsToApply: { "pcns.team": "a", "pcns.projectcalico.org/name": "ns-a" } },
      }),
    );
    const ipam = new IpamStore(ds, { sleep: async () => {} });
    const names = async (ns: { namespace?: string; namespaceLabels?: Record<string, string> }) =>
      (await ipam.usablePools("n1", 4, [], "Workload", ns)).map((p) => p.name);
    expect(await names({ namespace: "ns-a" })).toEqual(["a"]);
    expect(await names({ namespace: "ns-b" })).toEqual(["any"]);
    expect(await names({ namespace: "ns-b", namespaceLabels: { team: "a" } })).toEqual(["a"]);
    const got = await ipam.autoAssign({
      handleId: "h1",
      node: "n1",
      num4: 1,
      num6: 0,
      namespace: "ns-a",
    });
    expect(got[0]?.pool).toBe("a");
  });

  it("ocelot-ipam: args.ocelot.namespaceLabels (from ocelot-cni's API server read) decide", async () => {
    const ds = new MemoryDatastore();
    ds.close = async () => {};
    await putPool(ds, "a", "10.1.0.0/24", {
      blockSize: 28,
      namespaceSelector: "team == 'a'",
      allowedUses: ["Workload"],
    });
    await putPool(ds, "any", "10.3.0.0/24", {
      blockSize: 28,
      namespaceSelector: "team != 'a'",
      allowedUses: ["Workload"],
    });
    const deps = {
      openStore: async () => ds,
      hostname: () => "n1",
      storeOptions: { sleep: async () => {} },
    };
    const env = (id: string) => ({
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: id,
      CNI_NETNS: "/var/run/netns/x",
      CNI_IFNAME: "eth0",
      CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns-x;K8S_POD_NAME=p",
    });
    const conf = (args?: unknown) =>
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "net",
        datastore: "memory:",
        nodename: "n1",
        ipam: { type: "ocelot-ipam", assign_ipv6: false },
        ...(args !== undefined ? { args } : {}),
      });
    const ip = async (id: string, args?: unknown) =>
      JSON.parse((await runIpamPlugin(env(id), conf(args), deps)).stdout).ips?.[0]?.address;
    expect(await ip("c1")).toMatch(/^10\.3\./);
    expect(await ip("c2", { ocelot: { namespaceLabels: { team: "a" } } })).toMatch(/^10\.1\./);
    const bad = await runIpamPlugin(env("c3"), conf({ ocelot: { namespaceLabels: ["x"] } }), deps);
    expect(JSON.parse(bad.stdout).msg).toMatch(/args\.ocelot\.namespaceLabels.*map of strings/);
  });
});
