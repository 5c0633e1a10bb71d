// The resource client over an in-memory datastore: create/update/apply/get/list/delete, CAS on
// resourceVersion, uid and creationTimestamp, batch checks, watch; and the document reader.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { listIPPools, ResourceClient, ResourceError } from "../../src/api/client.js";
import { parseDocuments } from "../../src/api/documents.js";
import { resolveKindName, validateResource } from "../../src/api/registry.js";
import { MemoryDatastore } from "../../src/datastore/memory.js";

const V3 = "projectcalico.org/v3";
const pool = (name: string, cidr: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: V3,
  kind: "IPPool",
  metadata: { name, ...extra },
  spec: { cidr },
});
const ippools = resolveKindName("ippools");
if (ippools === undefined) throw new Error("no ippools kind");

let store: MemoryDatastore;
let client: ResourceClient;
beforeEach(() => {
  store = new MemoryDatastore();
  let n = 0;
  client = new ResourceClient(store, {
    now: () => new Date("2026-01-02T03:04:05Z"),
    uuid: () => `uid-${++n}`,
  });
});
afterEach(async () => {
  await store.close();
});

async function expectCode(p: Promise<unknown>, code: string, message?: RegExp) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ResourceError);
  expect((err as ResourceError).code).toBe(code);
  if (message) expect((err as ResourceError).message).toMatch(message);
}

describe("ResourceClient", () => {
  it("create stores JSON with uid and creationTimestamp; resourceVersion is the modRevision", async () => {
    const created = await client.write("create", pool("p1", "10.0.0.0/16"));
    const kv = await store.get("/ocelot/resources/v3/ippools/p1");
    expect(kv).toBeDefined();
    expect(created.metadata).toEqual({
      name: "p1",
      uid: "uid-1",
      creationTimestamp: "2026-01-02T03:04:05Z",
      resourceVersion: String(kv?.modRevision),
    });
    const stored = JSON.parse(kv?.value ?? "{}");
    expect(stored.metadata.resourceVersion).toBeUndefined();
    expect(stored.spec.blockSize).toBe(26);
  });

  it("create refuses an existing resource", async () => {
    await client.write("create", pool("p1", "10.0.0.0/16"));
    await expectCode(
      client.write("create", pool("p1", "10.0.0.0/16")),
      "AlreadyExists",
      /ippool "p1" already exists/,
    );
  });

  it("update keeps uid and creationTimestamp and honours resourceVersion as CAS", async () => {
    const v1 = await client.write("create", {
      ...pool("p1", "10.0.0.0/16"),
      spec: { cidr: "10.0.0.0/16", natOutgoing: false },
    });
    const v2 = await client.write("update", {
      ...pool("p1", "10.0.0.0/16", { resourceVersion: v1.metadata.resourceVersion }),
      spec: { cidr: "10.0.0.0/16", natOutgoing: true },
    });
    expect(v2.metadata.uid).toBe(v1.metadata.uid);
    expect(Number(v2.metadata.resourceVersion)).toBeGreaterThan(
      Number(v1.metadata.resourceVersion),
    );
    // A second writer holding v1 is refused, and the stored value is unchanged.
    await expectCode(
      client.write(
        "update",
        pool("p1", "10.0.0.0/16", { resourceVersion: v1.metadata.resourceVersion }),
      ),
      "Conflict",
      new RegExp(`resourceVersion "${v1.metadata.resourceVersion}" is stale`),
    );
    expect((await client.get(ippools, "p1"))?.spec).toMatchObject({ natOutgoing: true });
  });

  it("update of a missing resource is NotFound; apply creates it", async () => {
    await expectCode(
      client.write("update", pool("p1", "10.0.0.0/16")),
      "NotFound",
      /ippool "p1" does not exist/,
    );
    const r = await client.write("apply", pool("p1", "10.0.0.0/16"));
    expect(r.metadata.uid).toBe("uid-1");
    const again = await client.write("apply", {
      ...pool("p1", "10.0.0.0/16"),
      spec: { cidr: "10.0.0.0/16", disabled: true },
    });
    expect(again.metadata.uid).toBe("uid-1");
    expect(again.spec).toMatchObject({ disabled: true });
  });

  it("refuses a change of an immutable field", async () => {
    await client.write("create", pool("p1", "10.0.0.0/16"));
    await expectCode(
      client.write("apply", pool("p1", "10.1.0.0/16")),
      "Invalid",
      /spec\.cidr: "10\.1\.0\.0\/16" cannot replace "10\.0\.0\.0\/16"/,
    );
  });

  it("refuses a pool overlapping another pool, stored or in the same batch", async () => {
    await client.write("create", pool("p1", "10.0.0.0/16"));
    await expectCode(
      client.write("create", pool("p2", "10.0.128.0/17")),
      "Invalid",
      /spec\.cidr: "10\.0\.128\.0\/17" overlaps ippool "p1" \("10\.0\.0\.0\/16"\)/,
    );
    const batch = [pool("a", "10.8.0.0/16"), pool("b", "10.0.0.0/8")].map((d) =>
      validateResource(d),
    );
    await expectCode(client.writeAll("apply", batch), "Invalid", /overlaps ippool/);
    // Re-applying the same pool is not an overlap with itself; a v6 pool never overlaps a v4 one.
    await client.write("apply", pool("p1", "10.0.0.0/16"));
    await client.write("create", pool("p6", "fd00::/48"));
  });

  it("apply creates a missing resource whatever server-set metadata it carries; create refuses it", async () => {
    const exported = pool("p1", "10.0.0.0/16", {
      resourceVersion: "5",
      uid: "from-elsewhere",
      creationTimestamp: "2020-01-01T00:00:00Z",
    });
    await expectCode(
      client.write("create", exported),
      "Invalid",
      /metadata\.resourceVersion: "5" must not be set when creating ippool "p1"/,
    );
    await expectCode(client.write("update", exported), "NotFound", /ippool "p1" does not exist/);
    const created = await client.write("apply", exported);
    expect(created.metadata).toMatchObject({
      uid: "uid-1",
      creationTimestamp: "2026-01-02T03:04:05Z",
    });
    // Once it exists, the same document's resourceVersion is a compare-and-swap again.
    await expectCode(client.write("apply", exported), "Conflict", /resourceVersion "5" is stale/);
  });

  it("writeAll checks every document before writing any", async () => {
    await client.write("create", pool("p2", "10.2.0.0/16"));
    const before = await store.revision();
    const docs = [pool("p1", "10.1.0.0/16"), pool("p2", "10.2.0.0/16")].map((d) =>
      validateResource(d),
    );
    await expectCode(
      client.writeAll("create", docs),
      "AlreadyExists",
      /ippool "p2" already exists/,
    );
    expect(await store.revision()).toBe(before);
    expect(await client.get(ippools, "p1")).toBeUndefined();
  });

  it("lists, deletes with and without resourceVersion, and reports a missing resource", async () => {
    const a = await client.write("create", pool("a", "10.1.0.0/16"));
    await client.write("create", pool("b", "10.2.0.0/16"));
    expect((await listIPPools(store)).map((p) => p.metadata.name)).toEqual(["a", "b"]);
    await expectCode(client.delete(ippools, "a", undefined, "999"), "Conflict");
    const deleted = await client.delete(ippools, "a", undefined, a.metadata.resourceVersion);
    expect(deleted.metadata.name).toBe("a");
    await client.delete(ippools, "b");
    expect((await client.list(ippools)).items).toEqual([]);
    await expectCode(client.delete(ippools, "a"), "NotFound", /ippool "a" does not exist/);
  });

  it("keeps namespaces apart", async () => {
    const np = resolveKindName("networkpolicy");
    if (!np) throw new Error("kind");
    const doc = (ns: string) => ({
      apiVersion: V3,
      kind: "NetworkPolicy",
      metadata: { name: "allow", namespace: ns },
      spec: { selector: "all()" },
    });
    await client.write("create", doc("prod"));
    await client.write("create", doc("dev"));
    await client.write("create", { ...doc("x"), metadata: { name: "allow" } });
    expect((await client.list(np)).items.map((r) => r.metadata.namespace)).toEqual([
      "default",
      "dev",
      "prod",
    ]);
    expect((await client.list(np, "prod")).items).toHaveLength(1);
    expect(await store.get("/ocelot/resources/v3/networkpolicies/prod/allow")).toBeDefined();
  });

  it("watch delivers puts and deletes as resources", async () => {
    const rev = await store.revision();
    const seen: string[] = [];
    const w = client.watch(ippools, rev, (c) => {
      if ("type" in c) seen.push(`${c.type}:${c.resource?.metadata.name}`);
    });
    await client.write("create", pool("w", "10.9.0.0/16"));
    await client.delete(ippools, "w");
    // Bounded by a hang-sized limit (60 s); it ends as soon as both arrive.
    for (let i = 0; i < 6000 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    await w.cancel();
    expect(seen).toEqual(["put:w", "delete:w"]);
  });
});

describe("ResourceClient: tiers, as Calico's clientv3", () => {
  const gnp = (name: string, tier?: string) => ({
    apiVersion: V3,
    kind: "GlobalNetworkPolicy",
    metadata: { name },
    spec: { ...(tier ? { tier } : {}), selector: "all()", ingress: [{ action: "Allow" }] },
  });
  const np = (name: string, tier: string) => ({
    apiVersion: V3,
    kind: "StagedNetworkPolicy",
    metadata: { name, namespace: "shop" },
    spec: { tier, selector: "all()", ingress: [{ action: "Allow" }] },
  });
  const tier = (name: string) => ({
    apiVersion: V3,
    kind: "Tier",
    metadata: { name },
    spec: { order: 100 },
  });
  const kind = (plural: string) => {
    const k = resolveKindName(plural);
    if (k === undefined) throw new Error(`no ${plural} kind`);
    return k;
  };
  const tiers = kind("tiers");

  it("creates a policy only in a tier that exists: built in, stored, or in the same batch", async () => {
    await client.write("apply", gnp("in-default"));
    await client.write("create", gnp("default.named", "default"));
    await expectCode(
      client.write("apply", gnp("security.p", "security")),
      "NotFound",
      /^spec\.tier: tier "security" does not exist: create the Tier first$/,
    );
    await expectCode(client.write("create", np("security.s", "security")), "NotFound", /security/);
    expect((await client.list(kind("globalnetworkpolicies"))).items).toHaveLength(2);
    const batch = [tier("security"), gnp("security.p", "security")].map(validateResource);
    await client.writeAll("apply", batch);
    await client.write("create", np("security.s", "security"));
  });

  it("refuses to delete a built-in tier, or one a policy (staged ones too) is in", async () => {
    await client.write("apply", {
      apiVersion: V3,
      kind: "Tier",
      metadata: { name: "default" },
      spec: { order: 1_000_000 },
    });
    await expectCode(client.delete(tiers, "default"), "NotSupported", /built in/);
    await client.write("apply", tier("security"));
    await client.write("apply", np("security.s", "security"));
    await expectCode(
      client.delete(tiers, "security"),
      "NotSupported",
      /^tier "security" is not empty: stagednetworkpolicy "shop\/security.s" is in it$/,
    );
    await client.delete(kind("stagednetworkpolicies"), "security.s", "shop");
    await client.delete(tiers, "security");
    expect(await client.get(tiers, "security")).toBeUndefined();
  });
});

describe("parseDocuments()", () => {
  it("splits multi-document YAML, skips empty documents and expands Lists", () => {
    const docs = parseDocuments(
      `---\na: 1\n---\nkind: List\nitems:\n- b: 2\n- c: 3\n---\n---\nd: 4\n`,
    );
    expect(docs.map((d) => d.label)).toEqual([
      "document 1",
      "document 2 item 1",
      "document 2 item 2",
      "document 4",
    ]);
  });
  it("reads JSON", () => {
    expect(parseDocuments(`{"kind": "IPPoolList", "items": [{"x": 1}]}`)).toEqual([
      { label: "document 1 item 1", value: { x: 1 } },
    ]);
  });
  it("reports malformed input with the document number and position", () => {
    expect(() => parseDocuments("a: 1\n---\nb: [1, 2\n")).toThrow(
      /^document 2: malformed YAML\/JSON at line \d+, column \d+/,
    );
    expect(() => parseDocuments("a: 1\na: 2\n")).toThrow(/^document 1: malformed YAML\/JSON/);
  });
});
