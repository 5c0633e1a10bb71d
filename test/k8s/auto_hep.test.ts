// Calico's automatic host endpoints and default KubeControllersConfiguration in
// `ocelot kube-controllers`: the pure planner (auto_hep.ts: name, interfaceName "*", expectedIPs
// in Calico's order, labels, profile; create, update, delete of orphans and when off, hand-made
// HostEndpoints untouched), the settings (kcc.ts), the built-in projectcalico-default-allow
// profile in host policy (an all-interfaces endpoint with it and no policy accepts), and the
// engine against the small API server and the embedded datastore: no configuration -> Calico's
// default created and node labels synced, no HEPs; autoCreate Enabled -> one HEP per Calico Node;
// a new Node, a Kubernetes relabel, an address change and a deleted Node followed; autoCreate
// Disabled -> removed; the configuration deleted -> created again.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyResource, ResourceClient } from "../../src/api/client.js";
import { kindOf, type Resource } from "../../src/api/registry.js";
import { openDatastore } from "../../src/datastore/open.js";
import type { Datastore } from "../../src/datastore/types.js";
import { renderHostPolicy } from "../../src/felix/host_endpoint.js";
import {
  autoHostEndpoint,
  HEP_CREATED_BY_LABEL,
  planAutoHostEndpoints,
} from "../../src/k8s/auto_hep.js";
import type { KubeControllers } from "../../src/k8s/controllers.js";
import { DEFAULT_KCC_SPEC, kubeControllersSettings, SYNC_PARTS } from "../../src/k8s/kcc.js";
import { KubeApi } from "../helpers/kube_api.js";
import { HANG_MS } from "../helpers/limits.js";
import { waitFor } from "../helpers/netns.js";
import { startSyncedControllers } from "./synced.js";

const V3 = "projectcalico.org/v3";
const CREATED = { [HEP_CREATED_BY_LABEL]: "calico-kube-controllers" };
const node = (name: string, labels: Record<string, string>, spec: Record<string, unknown>) =>
  ({ apiVersion: V3, kind: "Node", metadata: { name, labels }, spec }) as unknown as Resource;
const hep = (name: string, labels: Record<string, string>, spec: Record<string, unknown>) =>
  ({
    apiVersion: V3,
    kind: "HostEndpoint",
    metadata: { name, labels, resourceVersion: "7" },
    spec,
  }) as unknown as Resource;

describe("auto host endpoints (pure)", () => {
  it("Calico's shape: <node>-auto-hep, '*', expectedIPs in Calico's order, labels, default-allow", () => {
    const n = node(
      "n1",
      { rack: "r1" },
      {
        bgp: {
          ipv4Address: "10.0.0.1/24",
          ipv6Address: "fd00::1/64",
          ipv4IPIPTunnelAddr: "192.168.7.1",
        },
        ipv4VXLANTunnelAddr: "192.168.8.1",
        addresses: [
          { address: "10.0.0.1", type: "InternalIP" },
          { address: "10.9.9.9", type: "InternalIP" },
          { address: "203.0.113.5", type: "ExternalIP" },
        ],
      },
    );
    expect(autoHostEndpoint(n)).toEqual({
      apiVersion: V3,
      kind: "HostEndpoint",
      metadata: { name: "n1-auto-hep", labels: { rack: "r1", ...CREATED } },
      spec: {
        node: "n1",
        interfaceName: "*",
        expectedIPs: ["10.0.0.1", "fd00::1", "192.168.7.1", "192.168.8.1", "10.9.9.9"],
        profiles: ["projectcalico-default-allow"],
      },
    });
    // A Node with no addresses yet: an all-interfaces endpoint with none expected.
    expect(autoHostEndpoint(node("bare", {}, {})).spec).toMatchObject({ expectedIPs: [] });
  });

  it("creates, leaves equal ones, updates on a label or address change, deletes orphans and all when off", () => {
    const n1 = node("n1", { a: "1" }, { bgp: { ipv4Address: "10.0.0.1/24" } });
    const n2 = node("n2", {}, { bgp: { ipv4Address: "10.0.0.2/24" } });
    const equal = {
      ...autoHostEndpoint(n1),
      metadata: { ...autoHostEndpoint(n1).metadata, resourceVersion: "3" },
    };
    const mine = hep("mine", { role: "edge" }, { node: "n1", interfaceName: "eth0" });
    const orphan = hep("gone-auto-hep", CREATED, { node: "gone", interfaceName: "*" });
    const ops = (a: ReturnType<typeof planAutoHostEndpoints>) =>
      a.map((x) => (x.op === "put" ? `put ${x.resource.metadata.name}` : `${x.op} ${x.name}`));

    expect(ops(planAutoHostEndpoints([n1, n2], [equal, mine, orphan], true))).toEqual([
      "put n2-auto-hep",
      "delete gone-auto-hep",
    ]);
    const relabelled = node("n1", { a: "2" }, { bgp: { ipv4Address: "10.0.0.1/24" } });
    const up = planAutoHostEndpoints([relabelled], [equal], true);
    expect(up).toHaveLength(1);
    const put = up[0];
    if (put?.op !== "put") throw new Error("expected a put");
    expect(put.resource.metadata).toEqual({
      name: "n1-auto-hep",
      labels: { a: "2", ...CREATED },
      resourceVersion: "3",
    });
    const moved = node("n1", { a: "1" }, { bgp: { ipv4Address: "10.0.0.9/24" } });
    expect(ops(planAutoHostEndpoints([moved], [equal], true))).toEqual(["put n1-auto-hep"]);
    // Off: every HostEndpoint kube-controllers made goes; the hand-made one stays.
    expect(ops(planAutoHostEndpoints([n1, n2], [equal, mine, orphan], false))).toEqual([
      "delete n1-auto-hep",
      "delete gone-auto-hep",
    ]);
  });

  it("templates: one <node>-<generateName>-auto-hep per Node the selector picks, with its addresses in the CIDRs", () => {
    const n1 = node(
      "n1",
      { rack: "r1", role: "node" },
      {
        bgp: { ipv4Address: "10.0.0.1/24", ipv6Address: "fd00::1/64" },
        addresses: [{ address: "192.168.1.1", type: "InternalIP" }],
      },
    );
    const n2 = node("n2", { rack: "r2" }, { bgp: { ipv4Address: "10.0.0.2/24" } });
    const n3 = node("n3", { rack: "r1" }, { bgp: { ipv4Address: "172.16.0.3/24" } });
    const edge = {
      generateName: "edge",
      nodeSelector: "rack == 'r1'",
      interfaceCIDRs: ["10.0.0.0/24", "fd00::/64"],
      labels: { role: "edge" },
      annotations: { why: "uplink" },
    };
    const plan = { defaultHostEndpoint: false, templates: [edge] };
    const ops = (a: ReturnType<typeof planAutoHostEndpoints>) =>
      a.map((x) => (x.op === "put" ? `put ${x.resource.metadata.name}` : `${x.op} ${x.name}`));
    const actions = planAutoHostEndpoints([n1, n2, n3], [], plan);
    // n2 is not selected; n3 has no address inside the CIDRs.
    expect(ops(actions)).toEqual(["put n1-edge-auto-hep"]);
    const put = actions[0];
    if (put?.op !== "put") throw new Error("expected a put");
    expect(put.resource).toEqual({
      apiVersion: V3,
      kind: "HostEndpoint",
      metadata: {
        name: "n1-edge-auto-hep",
        labels: { rack: "r1", role: "edge", ...CREATED },
        annotations: { why: "uplink" },
      },
      spec: {
        node: "n1",
        expectedIPs: ["10.0.0.1", "fd00::1"],
        profiles: ["projectcalico-default-allow"],
      },
    });
    // Settled; then the template goes and its endpoint with it, the default one comes.
    expect(planAutoHostEndpoints([n1, n2, n3], [put.resource], plan)).toEqual([]);
    expect(
      ops(
        planAutoHostEndpoints([n1], [put.resource], { defaultHostEndpoint: true, templates: [] }),
      ),
    ).toEqual(["put n1-auto-hep", "delete n1-edge-auto-hep"]);
    // An annotation change is an update.
    const changed = { ...edge, annotations: { why: "other" } };
    expect(
      ops(planAutoHostEndpoints([n1], [put.resource], { ...plan, templates: [changed] })),
    ).toEqual(["put n1-edge-auto-hep"]);
  });

  it("a name above 253 characters is hashed as Calico does (base64url SHA-256, no - _ ., lower case)", () => {
    const long = "n".repeat(250);
    const name = autoHostEndpoint(node(long, {}, {})).metadata.name;
    expect(name).toMatch(/^[a-z0-9]+-auto-hep$/);
    expect(name.length).toBeLessThanOrEqual(253);
    expect(autoHostEndpoint(node("n".repeat(244), {}, {})).metadata.name).toBe(
      `${"n".repeat(244)}-auto-hep`,
    );
  });

  it("settings: autoCreate Enabled (createDefaultHostEndpoint Disabled: none); templates named", () => {
    const on = { controllers: { node: { hostEndpoint: { autoCreate: "Enabled" } } } };
    expect(kubeControllersSettings(on).autoHostEndpoints).toBe(true);
    expect(kubeControllersSettings(on).warnings).toEqual([]);
    const noDefault = {
      controllers: {
        node: { hostEndpoint: { autoCreate: "Enabled", createDefaultHostEndpoint: "Disabled" } },
      },
    };
    expect(kubeControllersSettings(noDefault).autoHostEndpoints).toBe(false);
    const templates = {
      controllers: {
        node: {
          hostEndpoint: {
            autoCreate: "Enabled",
            createDefaultHostEndpoint: "Disabled",
            templates: [
              {
                generateName: "edge",
                nodeSelector: "rack == 'r1'",
                interfaceCIDRs: ["10.0.0.0/24"],
                labels: { role: "edge", n: 1 },
                annotations: { why: "uplink" },
              },
              { nodeSelector: "all()" },
              { generateName: "bad-sel", nodeSelector: "rack ==" },
              { generateName: "bad-cidr", interfaceCIDRs: ["10.0.0.0/33"] },
              { generateName: "pattern", interfacePattern: "eth.*" },
            ],
          },
        },
      },
    };
    const ts = kubeControllersSettings(templates);
    expect(ts.autoHep).toEqual({
      defaultHostEndpoint: false,
      templates: [
        {
          generateName: "edge",
          nodeSelector: "rack == 'r1'",
          interfaceCIDRs: ["10.0.0.0/24"],
          labels: { role: "edge" },
          annotations: { why: "uplink" },
        },
      ],
    });
    expect(ts.warnings).toEqual([
      "controllers.node.hostEndpoint.templates[1]: generateName is missing: template not applied",
      expect.stringMatching(
        /^controllers\.node\.hostEndpoint\.templates\[2\] \(bad-sel\): nodeSelector "rack ==" does not parse/,
      ),
      'controllers.node.hostEndpoint.templates[3] (bad-cidr): interfaceCIDRs entry "10.0.0.0/33" is not a CIDR: template not applied',
      "controllers.node.hostEndpoint.templates[4] (pattern): interfacePattern is not applied (Ocelot's Node has no interface list): the template makes no host endpoint",
    ]);
    expect(kubeControllersSettings(undefined).autoHostEndpoints).toBe(false);
    // Calico's default resource: every part at 5 min, labels synced, no auto HEPs, 15 min grace.
    const d = kubeControllersSettings(structuredClone(DEFAULT_KCC_SPEC));
    expect([...d.enabled].sort()).toEqual([...SYNC_PARTS].sort());
    expect(d).toMatchObject({
      resyncMs: 300_000,
      leakGraceMs: 900_000,
      syncLabels: true,
      autoHostEndpoints: false,
    });
  });

  it("host policy: an all-interfaces endpoint with projectcalico-default-allow and no policy accepts; without it, drops", () => {
    const render = (profiles: string[]) =>
      renderHostPolicy(
        {
          hostEndpoints: [{ name: "n1-auto-hep", interfaceName: "*", labels: CREATED, profiles }],
        },
        { endpoints: [], policies: [] },
        4,
      );
    const chains = (s: ReturnType<typeof render>) =>
      new Map((s.filter?.chains ?? []).map((c) => [c.name, c.rules]));
    const withProfile = chains(render(["projectcalico-default-allow"]));
    const fh = withProfile.get("ocl-fh-any") ?? [];
    const jump = fh.find((r) => /^-j ocl-pr/.test(r));
    expect(jump, fh.join("\n")).toBeDefined();
    expect(fh.at(-1)).toBe("-j DROP");
    const profChain = withProfile.get(jump?.slice(3) ?? "") ?? [];
    expect(profChain.join("\n")).toMatch(/MARK --set-xmark 0x[0-9a-f]+\//);
    const th = withProfile.get("ocl-th-any") ?? [];
    expect(th.some((r) => /^-j ocl-pr/.test(r))).toBe(true);
    // The same endpoint without the profile: failsafe, then the drop, nothing between.
    const bare = chains(render([])).get("ocl-fh-any") ?? [];
    expect(bare.some((r) => /^-j ocl-pr/.test(r))).toBe(false);
  });
});

describe("kube-controllers: default configuration and auto host endpoints", () => {
  let api: KubeApi;
  let dir: string;
  let store: Datastore;
  let client: ResourceClient;
  let ctl: KubeControllers | undefined;
  const logs: string[] = [];
  const KCC = kindOf(V3, "KubeControllersConfiguration");
  const HEP = kindOf(V3, "HostEndpoint");
  const NODE = kindOf(V3, "Node");
  if (!KCC || !HEP || !NODE) throw new Error("kinds not registered");
  const calicoNode = (name: string, k8s: string, ip: string) => ({
    apiVersion: V3,
    kind: "Node",
    metadata: { name },
    spec: {
      bgp: { ipv4Address: `${ip}/24` },
      orchRefs: [{ orchestrator: "k8s", nodeName: k8s }],
    },
  });
  const getHep = async (name: string) => client.get(HEP, name);
  /** Waits for a condition on the datastore and prints how long it took. */
  const until = async (what: string, fn: () => Promise<boolean>) => {
    const t0 = Date.now();
    await waitFor(what, async () => ((await fn()) ? true : undefined));
    console.log(`${what}: ${Date.now() - t0} ms`);
  };

  beforeAll(async () => {
    api = await KubeApi.start();
    dir = mkdtempSync(join(tmpdir(), "ocelot-autohep-"));
    store = await openDatastore(`file:${join(dir, "store.db")}`);
    client = new ResourceClient(store);
    api.putNode("kn1", { rack: "r1" });
    api.putNode("kn2", { rack: "r2" });
    await applyResource(store, calicoNode("n1", "kn1", "10.0.0.1"));
    await applyResource(store, calicoNode("n2", "kn2", "10.0.0.2"));
    await applyResource(store, {
      apiVersion: V3,
      kind: "HostEndpoint",
      metadata: { name: "mine", labels: { role: "edge" } },
      spec: { node: "n1", interfaceName: "eth0" },
    });
    ctl = await startSyncedControllers(
      { kubeconfig: api.writeKubeconfig(join(dir, "kubeconfig")), store },
      logs,
    );
  }, HANG_MS * 2);

  afterAll(async () => {
    await ctl?.stop();
    await store?.close();
    await api?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("no configuration: Calico's default is created, node labels follow, no host endpoints", async () => {
    const kcc = await client.get(KCC, "default");
    expect(kcc?.spec).toEqual(DEFAULT_KCC_SPEC);
    expect(logs).toContain(
      `kube-controllers: created kubecontrollersconfiguration "default" (Calico's defaults)`,
    );
    await until("node labels synced", async () => {
      const n = await client.get(NODE, "n1");
      return n?.metadata.labels?.rack === "r1";
    });
    expect((await client.list(HEP)).items.map((h) => h.metadata.name)).toEqual(["mine"]);
  });

  it("autoCreate Enabled: one <node>-auto-hep per Calico Node; the hand-made one stays", async () => {
    const kcc = await client.get(KCC, "default");
    const spec = structuredClone(kcc?.spec) as typeof DEFAULT_KCC_SPEC & Record<string, unknown>;
    (spec.controllers.node.hostEndpoint as { autoCreate: string }).autoCreate = "Enabled";
    await applyResource(store, {
      apiVersion: V3,
      kind: kcc?.kind,
      metadata: { name: "default" },
      spec,
    });
    await until("auto host endpoints created", async () =>
      Boolean((await getHep("n1-auto-hep")) && (await getHep("n2-auto-hep"))),
    );
    const h1 = await getHep("n1-auto-hep");
    expect(h1?.metadata.labels).toEqual({ rack: "r1", ...CREATED });
    expect(h1?.spec).toEqual({
      node: "n1",
      interfaceName: "*",
      expectedIPs: ["10.0.0.1"],
      profiles: ["projectcalico-default-allow"],
    });
    expect((await getHep("mine"))?.metadata.labels).toEqual({ role: "edge" });
    // Settled: the passes its own writes start (HostEndpoint and Node watches) write nothing.
    const writes = () => logs.filter((l) => /: (created|updated|deleted) /.test(l)).length;
    const before = writes();
    await new Promise((r) => setTimeout(r, 1000));
    expect(writes(), logs.slice(-5).join("\n")).toBe(before);
  });

  it("follows a new Node, a Kubernetes relabel, an address change and a deleted Node", async () => {
    api.putNode("kn3", { rack: "r3" });
    await applyResource(store, calicoNode("n3", "kn3", "10.0.0.3"));
    await until(
      "a new Node's host endpoint",
      async () => (await getHep("n3-auto-hep"))?.metadata.labels?.rack === "r3",
    );

    api.putNode("kn1", { rack: "r1", zone: "z1" });
    await until(
      "a Kubernetes relabel reaching the host endpoint",
      async () => (await getHep("n1-auto-hep"))?.metadata.labels?.zone === "z1",
    );
    expect((await getHep("n1-auto-hep"))?.metadata.labels).toEqual({
      rack: "r1",
      zone: "z1",
      ...CREATED,
    });

    const n1 = await client.get(NODE, "n1");
    await applyResource(store, {
      ...n1,
      spec: { ...(n1?.spec ?? {}), bgp: { ipv4Address: "10.0.0.11/24" } },
    });
    await until("an address change reaching expectedIPs", async () => {
      const s = (await getHep("n1-auto-hep"))?.spec as { expectedIPs?: string[] };
      return s?.expectedIPs?.[0] === "10.0.0.11";
    });

    api.deleteObject("Node", undefined, "kn2");
    await until(
      "a deleted Node's host endpoint removed",
      async () => (await getHep("n2-auto-hep")) === undefined,
    );
    expect(await client.get(NODE, "n2")).toBeUndefined();
  });

  it("a template (default one Disabled): only the selected Node's template endpoint stays, stored as Calico's", async () => {
    const kcc = await client.get(KCC, "default");
    const spec = structuredClone(kcc?.spec) as typeof DEFAULT_KCC_SPEC & Record<string, unknown>;
    (spec.controllers.node as { hostEndpoint: unknown }).hostEndpoint = {
      autoCreate: "Enabled",
      createDefaultHostEndpoint: "Disabled",
      templates: [
        {
          generateName: "edge",
          nodeSelector: "rack == 'r1'",
          interfaceCIDRs: ["10.0.0.0/24"],
          labels: { role: "edge" },
          annotations: { why: "uplink" },
        },
      ],
    } as never;
    await applyResource(store, {
      apiVersion: V3,
      kind: kcc?.kind,
      metadata: { name: "default" },
      spec,
    });
    await until("the template's endpoint in place of the default ones", async () => {
      const names = (await client.list(HEP)).items.map((h) => h.metadata.name).sort();
      return names.join(",") === "mine,n1-edge-auto-hep";
    });
    const h = await getHep("n1-edge-auto-hep");
    expect(h?.metadata.labels).toEqual({ rack: "r1", zone: "z1", role: "edge", ...CREATED });
    expect((h?.metadata as { annotations?: unknown } | undefined)?.annotations).toEqual({
      why: "uplink",
    });
    expect(h?.spec).toEqual({
      node: "n1",
      expectedIPs: ["10.0.0.11"],
      profiles: ["projectcalico-default-allow"],
    });
  });

  it("autoCreate Disabled: the auto host endpoints go, the hand-made one stays", async () => {
    const kcc = await client.get(KCC, "default");
    const spec = structuredClone(kcc?.spec) as typeof DEFAULT_KCC_SPEC & Record<string, unknown>;
    (spec.controllers.node.hostEndpoint as { autoCreate: string }).autoCreate = "Disabled";
    await applyResource(store, {
      apiVersion: V3,
      kind: kcc?.kind,
      metadata: { name: "default" },
      spec,
    });
    await until("auto host endpoints removed", async () =>
      (await client.list(HEP)).items.every((h) => h.metadata.name === "mine"),
    );
    expect((await client.list(HEP)).items.map((h) => h.metadata.name)).toEqual(["mine"]);
  });

  it("the configuration deleted: Calico's default is created again", async () => {
    await client.delete(KCC, "default");
    await until(
      "the default configuration recreated",
      async () => (await client.get(KCC, "default")) !== undefined,
    );
    expect((await client.get(KCC, "default"))?.spec).toEqual(DEFAULT_KCC_SPEC);
  });
});
