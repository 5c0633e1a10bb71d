// ClusterInformation as a resource kind: the schema decodes what src/ipam/cluster.ts writes and
// Calico's spec fields, refuses other names and unknown fields by name; the resource client
// reads the record but refuses to create, apply, replace or delete it (as calicoctl).
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { getClusterInformation, ResourceClient, ResourceError } from "../../src/api/client.js";
import { ValidationError } from "../../src/api/errors.js";
import { KINDS, resolveKindName, validateResource } from "../../src/api/registry.js";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import {
  clusterInformationKey,
  ensureClusterInformation,
  setDatastoreLocked,
} from "../../src/ipam/cluster.js";

const V3 = "projectcalico.org/v3";
const doc = (spec: unknown, name = "default") => ({
  apiVersion: V3,
  kind: "ClusterInformation",
  metadata: { name },
  spec,
});
const issuesOf = (d: unknown): string[] => {
  try {
    validateResource(d);
  } catch (err) {
    if (err instanceof ValidationError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  return [];
};

let store: MemoryDatastore;
beforeEach(() => {
  store = new MemoryDatastore();
});
afterEach(async () => {
  await store.close();
});

describe("ClusterInformation kind", () => {
  it("resolves by calicoctl's names, is cluster-scoped and keyed where cluster.ts writes it", async () => {
    for (const n of ["clusterinformations", "clusterinformation", "clusterinfo", "clusterinfos"])
      expect(resolveKindName(n)?.kind).toBe("ClusterInformation");
    const info = resolveKindName("clusterinfo");
    expect(info?.namespaced).toBe(false);
    expect(info?.columns.map((c) => c.header)).toEqual([
      "NAME",
      "CLUSTERGUID",
      "CLUSTERTYPE",
      "CALICOVERSION",
      "DATASTOREREADY",
    ]);
    expect(KINDS.filter((k) => k.kind === "ClusterInformation")).toHaveLength(1);
    const c = await setDatastoreLocked(store, true);
    const r = await getClusterInformation(store);
    expect(r?.metadata.name).toBe("default");
    expect(r?.spec).toEqual({ clusterGUID: c.clusterGUID, datastoreReady: false });
    expect(r?.metadata.resourceVersion).toBe(String(c.revision));
  });

  it("validates the record exactly as src/ipam/cluster.ts stores it, locked and unlocked", async () => {
    for (const locked of [true, false]) {
      const c = await setDatastoreLocked(store, locked);
      const kv = await store.get(clusterInformationKey());
      expect(kv).toBeDefined();
      const { info, resource } = validateResource(JSON.parse(kv?.value ?? "null"));
      expect(info.kind).toBe("ClusterInformation");
      expect(resource.spec).toEqual({ clusterGUID: c.clusterGUID, datastoreReady: !locked });
      expect(c.clusterGUID).toMatch(/^[0-9a-f]{32}$/);
    }
  });

  it("takes Calico's spec fields, and cluster.ts keeps them across a lock", async () => {
    const spec = {
      clusterGUID: "0123456789abcdef0123456789abcdef",
      clusterType: "k8s,bgp,kdd",
      calicoVersion: "v3.27.0",
      datastoreReady: true,
      variant: "Calico",
    };
    expect(validateResource(doc(spec)).resource.spec).toEqual(spec);
    expect(validateResource(doc(undefined)).resource.spec).toEqual({});
    // As Calico's installer would have written it: the lock changes datastoreReady only.
    await store.create(clusterInformationKey(), JSON.stringify(doc(spec)));
    const c = await setDatastoreLocked(store, true);
    expect(c.clusterGUID).toBe(spec.clusterGUID);
    expect((await getClusterInformation(store))?.spec).toEqual({ ...spec, datastoreReady: false });
  });

  it("refuses other names, unknown fields and wrong types, naming each", () => {
    expect(issuesOf(doc({}, "other"))).toEqual([
      'metadata.name: "other" is not allowed: the cluster has one ClusterInformation, named "default"',
    ]);
    const bad = issuesOf(doc({ datastoreReady: "no", clusterGUID: 7, readyz: true }));
    expect(bad).toHaveLength(3);
    expect(bad.find((m) => m.startsWith("spec.datastoreReady:"))).toMatch(/"no"/);
    expect(bad.find((m) => m.startsWith("spec.clusterGUID:"))).toBeDefined();
    expect(bad.find((m) => m.includes("readyz"))).toBeDefined();
    expect(issuesOf({ ...doc({}), metadata: { name: "default", namespace: "x" } })).toEqual([
      "metadata.namespace: must not be set: this kind is not namespaced",
    ]);
  });
});

describe("ClusterInformation through the resource client", () => {
  async function refusal(p: Promise<unknown>): Promise<ResourceError> {
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ResourceError);
    return err as ResourceError;
  }

  it("refuses create, apply and replace, writing nothing", async () => {
    const client = new ResourceClient(store);
    for (const mode of ["create", "apply"] as const) {
      const err = await refusal(client.write(mode, doc({ datastoreReady: true })));
      expect(err.code).toBe("NotSupported");
      expect(err.message).toMatch(/^clusterinformation "default" cannot be (created|applied): /);
      expect(err.message).toContain("ocelot datastore lock|unlock");
    }
    expect((await store.list("/")).items).toEqual([]);
    const before = await ensureClusterInformation(store);
    const err = await refusal(
      client.write("update", doc({ clusterGUID: "ffffffffffffffffffffffffffffffff" })),
    );
    expect(err.message).toMatch(/cannot be replaced/);
    const after = await ensureClusterInformation(store);
    expect(after).toEqual(before);
  });

  it("refuses delete: the record, its GUID and its lock stay", async () => {
    const client = new ResourceClient(store);
    const locked = await setDatastoreLocked(store, true);
    const info = resolveKindName("clusterinformation");
    if (info === undefined) throw new Error("no clusterinformation kind");
    const err = await refusal(client.delete(info, "default"));
    expect(err.code).toBe("NotSupported");
    expect(err.message).toMatch(/^clusterinformation "default" cannot be deleted: /);
    const kv = await store.get(clusterInformationKey());
    expect(kv?.modRevision).toBe(locked.revision);
    expect((await client.get(info, "default"))?.spec).toEqual({
      clusterGUID: locked.clusterGUID,
      datastoreReady: false,
    });
  });
});
