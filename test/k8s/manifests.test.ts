// config/k8s/*.yaml checked for what would fail on a real cluster, without one: each object
// against the Kubernetes OpenAPI schema (kubernetes-models, the API's own JSON schemas compiled
// with ajv), then the cross-checks a schema cannot make: the image is the one this project
// builds, the commands and flags exist in the real CLI, the probes name the paths the health
// server serves on the host and port of --metrics-address, install-cni's directories are
// writable host mounts, capabilities, and RBAC for every Kubernetes API kind src/ reads.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { DaemonSet } from "kubernetes-models/apps/v1";
import { ClusterRole, ClusterRoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1";
import { ConfigMap, ServiceAccount } from "kubernetes-models/v1";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { buildProgram, loadersFor } from "../../src/cli/main.js";
import { HEALTH_PATHS, parseListenAddress } from "../../src/lib/health_server.js";

const root = new URL("../../", import.meta.url).pathname;
const dir = join(root, "config/k8s");

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  // biome-ignore lint/suspicious/noExplicitAny: manifests are checked field by field below
  [k: string]: any;
}

const files = readdirSync(dir).filter((f) => f.endsWith(".yaml"));
const docs = files.flatMap((f) =>
  parseAllDocuments(readFileSync(join(dir, f), "utf8")).map((d) => ({ file: f, doc: d })),
);
const objects: Obj[] = docs.map(({ doc }) => doc.toJS() as Obj);

function one(kind: string): Obj {
  const found = objects.filter((o) => o.kind === kind);
  expect(found, `exactly one ${kind} in config/k8s`).toHaveLength(1);
  return found[0] as Obj;
}

const ds = () => one("DaemonSet");
const podSpec = () => ds().spec.template.spec;
const main = () => podSpec().containers.find((c: Obj) => c.name === "ocelot-node");
const init = () => podSpec().initContainers.find((c: Obj) => c.name === "install-cni");

/** The CLI command a container runs (argv after "ocelot"), found in the real program. */
async function cliCommand(argv: string[]): Promise<{ cmd: Command; args: string[] }> {
  expect(argv[0], "the container runs the ocelot command").toBe("ocelot");
  const full = ["node", ...argv];
  const regs = await Promise.all(loadersFor(full).map(async (l) => (await l()).register));
  let cmd: Command = buildProgram(regs);
  let rest = argv.slice(1);
  while (rest.length > 0 && !rest[0]?.startsWith("-")) {
    const next = cmd.commands.find((c) => c.name() === rest[0]);
    expect(next, `"ocelot ${argv.slice(1).join(" ")}": no command "${rest[0]}"`).toBeDefined();
    cmd = next as Command;
    rest = rest.slice(1);
  }
  for (const a of rest.filter((x) => x.startsWith("--")))
    expect(
      cmd.options.map((o) => o.long),
      `"ocelot ${cmd.name()}" has the option ${a}`,
    ).toContain(a);
  return { cmd, args: rest };
}

function flag(args: string[], name: string): string {
  const i = args.indexOf(name);
  expect(i, `${name} is given`).toBeGreaterThanOrEqual(0);
  return args[i + 1] as string;
}

/** Kubernetes REST paths in source text: a quote or a template's `}` before /api or /apis. */
const CORE_PATH = /(?:["'`]|\})\/api\/v1\/(?:namespaces\/[^/"'`]+\/)?([a-z]+)/g;
const GROUP_PATH =
  /(?:["'`]|\})\/apis\/([a-z0-9.-]+)\/v[0-9a-z]+\/(?:namespaces\/[^/"'`]+\/)?([a-z]+)/g;

function kindsIn(text: string): { group: string; resource: string }[] {
  return [
    ...[...text.matchAll(CORE_PATH)].map((m) => ({ group: "", resource: m[1] as string })),
    ...[...text.matchAll(GROUP_PATH)].map((m) => ({
      group: m[1] as string,
      resource: m[2] as string,
    })),
  ];
}

/** The Kubernetes API kinds src/ reads: REST paths (/api/v1/..., /apis/g/v/...) in the source. */
function kindsReadBySource(): { group: string; resource: string }[] {
  const walk = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith(".ts") ? [join(d, e.name)] : [],
    );
  return walk(join(root, "src")).flatMap((f) => kindsIn(readFileSync(f, "utf8")));
}

describe("config/k8s", () => {
  it("every object is valid against the Kubernetes API schema", () => {
    const models: Record<string, new (o: Obj) => { validate(): void }> = {
      ConfigMap,
      ServiceAccount,
      DaemonSet,
      ClusterRole,
      ClusterRoleBinding,
    } as never;
    for (const { file, doc } of docs) expect(doc.errors, file).toEqual([]);
    expect(objects.map((o) => o.kind).sort()).toEqual(
      ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "ServiceAccount"].sort(),
    );
    for (const o of objects) {
      const Model = models[o.kind];
      expect(Model, `a model for ${o.kind}`).toBeDefined();
      expect(() => new (Model as NonNullable<typeof Model>)(o).validate()).not.toThrow();
    }
  });

  it("the validator rejects what a cluster would (a probe port that is not a port)", () => {
    const bad = structuredClone(ds());
    bad.spec.template.spec.containers[0].readinessProbe.httpGet.port = { no: 1 };
    expect(() => new DaemonSet(bad).validate()).toThrow();
  });

  it("runs this project's image, one tag for both containers, its package version", () => {
    const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;
    const images = [main().image, init().image];
    expect(new Set(images).size).toBe(1);
    expect(images[0]).toMatch(new RegExp(`^[a-z0-9./-]+/ocelot:${version.replace(/\./g, "\\.")}$`));
    // The Dockerfile puts `ocelot` on the PATH.
    expect(readFileSync(join(root, "Dockerfile"), "utf8")).toMatch(
      /ln -s \/opt\/ocelot\/bin\/ocelot .*\/usr\/local\/bin\//,
    );
  });

  it("probes GET the health server's paths on --metrics-address's host and port", async () => {
    const { args } = await cliCommand(main().command);
    const listen = parseListenAddress(flag(args, "--metrics-address"));
    const live = main().livenessProbe.httpGet;
    const ready = main().readinessProbe.httpGet;
    expect(live.path).toBe(HEALTH_PATHS.live);
    expect(ready.path).toBe(HEALTH_PATHS.ready);
    for (const p of [live, ready]) {
      expect(p.port).toBe(listen.port);
      // hostNetwork: kubelet probes the pod IP (the node's) unless host says otherwise, and
      // the server listens only where --metrics-address says.
      expect(p.host).toBe(listen.host);
    }
    expect(podSpec().hostNetwork).toBe(true);
  });

  it("install-cni writes into writable hostPath mounts of the kubelet's CNI directories", async () => {
    const { args } = await cliCommand(init().command);
    const volumes = new Map(podSpec().volumes.map((v: Obj) => [v.name, v]));
    const want = { "--bin-dir": "/opt/cni/bin", "--conf-dir": "/etc/cni/net.d" };
    for (const [opt, hostPath] of Object.entries(want)) {
      const target = flag(args, opt);
      const mount = init().volumeMounts.find(
        (m: Obj) => target === m.mountPath || target.startsWith(`${m.mountPath}/`),
      );
      expect(mount, `${opt} ${target} is under a volume mount`).toBeDefined();
      expect(mount.readOnly ?? false, `${mount.mountPath} is writable`).toBe(false);
      const vol = volumes.get(mount.name) as Obj;
      expect(vol?.hostPath?.path, `${mount.name} is the host's ${hostPath}`).toBe(
        join(hostPath, target.slice(mount.mountPath.length)),
      );
      expect(vol.hostPath.type).toBe("DirectoryOrCreate");
    }
  });

  it("every container has resource requests, every mount a volume", () => {
    const volumes = new Set(podSpec().volumes.map((v: Obj) => v.name));
    for (const c of [main(), init()]) {
      expect(c.resources?.requests?.cpu, c.name).toBeDefined();
      expect(c.resources?.requests?.memory, c.name).toBeDefined();
      for (const m of c.volumeMounts) expect(volumes.has(m.name), m.name).toBe(true);
    }
  });

  it("capabilities: NET_ADMIN and NET_RAW; privileged only where a comment says which step", () => {
    expect(main().securityContext.capabilities.add.sort()).toEqual(["NET_ADMIN", "NET_RAW"]);
    expect(init().securityContext.privileged).toBe(false);
    expect(init().securityContext.capabilities).toBeUndefined();
    if (main().securityContext.privileged) {
      // The comment lines right above `privileged: true` must name the step that needs it.
      const lines = readFileSync(join(dir, "daemonset.yaml"), "utf8").split("\n");
      const at = lines.findIndex((l) => /^\s*privileged: true\s*$/.test(l));
      expect(at).toBeGreaterThan(0);
      const comment: string[] = [];
      for (let i = at - 1; i >= 0 && /^\s*#/.test(lines[i] as string); i--)
        comment.unshift(lines[i] as string);
      expect(comment.join("\n")).toMatch(/sysctl[\s\S]*\/proc\/sys/);
    }
  });

  it("the node's container runs with one glibc malloc arena (MALLOC_ARENA_MAX=1, read only at a process's start)", () => {
    expect(main().env.find((e: Obj) => e.name === "MALLOC_ARENA_MAX")).toEqual({
      name: "MALLOC_ARENA_MAX",
      value: "1",
    });
  });

  it("every environment variable the pods get is one src/ reads", () => {
    const walk = (d: string): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith(".ts") ? [join(d, e.name)] : [],
      );
    const source = walk(join(root, "src"))
      .map((f) => readFileSync(f, "utf8"))
      .join("\n");
    // Read by the C library as the process starts, not by our code.
    const runtime = new Set(["MALLOC_ARENA_MAX"]);
    for (const c of [main(), init()])
      for (const e of c.env)
        if (!runtime.has(e.name)) expect(source, `${c.name}: ${e.name}`).toContain(`"${e.name}"`);
  });

  it("every ConfigMap key the pods read exists", () => {
    const cm = one("ConfigMap");
    for (const c of [main(), init()])
      for (const e of c.env) {
        const ref = e.valueFrom?.configMapKeyRef;
        if (!ref) continue;
        expect(ref.name).toBe(cm.metadata.name);
        expect(Object.keys(cm.data), `${c.name} ${e.name}`).toContain(ref.key);
      }
    expect(cm.metadata.namespace).toBe(ds().metadata.namespace);
  });

  it("RBAC: the pods' ServiceAccount is bound, with get/list/watch on every kind src/ reads", () => {
    const sa = one("ServiceAccount");
    expect(podSpec().serviceAccountName).toBe(sa.metadata.name);
    expect(sa.metadata.namespace).toBe(ds().metadata.namespace);
    const role = one("ClusterRole");
    const binding = one("ClusterRoleBinding");
    expect(binding.roleRef).toEqual({
      apiGroup: "rbac.authorization.k8s.io",
      kind: "ClusterRole",
      name: role.metadata.name,
    });
    expect(binding.subjects).toContainEqual({
      kind: "ServiceAccount",
      name: sa.metadata.name,
      namespace: sa.metadata.namespace,
    });
    const read = kindsReadBySource();
    for (const k of read) {
      const rule = (role.rules ?? []).find(
        (r: Obj) => r.apiGroups.includes(k.group) && r.resources.includes(k.resource),
      );
      expect(rule, `a rule for ${k.group || "core"}/${k.resource}`).toBeDefined();
      for (const verb of ["get", "list", "watch"]) expect(rule.verbs).toContain(verb);
    }
    // Nothing read from the API: no token in the pods, and no rule grants what is not read.
    if (read.length === 0) {
      expect(podSpec().automountServiceAccountToken).toBe(false);
      expect(role.rules).toEqual([]);
    }
  });

  it("finds a Kubernetes API read in source text (the scan above can fail)", () => {
    const template = ["fetch(`$", "{server}/api/v1/nodes/$", "{name}`);"].join("");
    const text = `${template} get("/apis/discovery.k8s.io/v1/namespaces/x/endpointslices")`;
    expect(kindsIn(text)).toEqual([
      { group: "", resource: "nodes" },
      { group: "discovery.k8s.io", resource: "endpointslices" },
    ]);
  });
});
