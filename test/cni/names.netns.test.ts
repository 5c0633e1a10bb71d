// The real `bin/ocelot-cni` (and `bin/ocelot-ipam`) in a node namespace with pods named the way
// container runtimes name them: podman passes only K8S_POD_NAME, a generated `pensive_beaver`
// or a user's `Web.App_1`; a plain CNI runtime passes no CNI_ARGS (then the container ID names
// the endpoint). Each gets its WorkloadEndpoint under a valid name and its wiring, the pods
// ping each other, DEL removes everything. A failure answers the runtime with a one-line msg and
// writes its stack to the configured log_file_path only.
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listWorkloadEndpoints } from "../../src/api/client.js";
import { isDns1123Subdomain } from "../../src/api/fields.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { addUplink, BIN, runOcelotCni } from "../helpers/cni.js";
import { runSync } from "../helpers/limits.js";
import { Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const reason =
  netnsUnavailableReason() ??
  (existsSync(join(ROOT, "dist/cni/plugin_main.js"))
    ? undefined
    : "dist/ not built (npm run build)");
const skip = skipWithReason("ocelot-cni runtime names netns", reason);

interface IpAddr {
  ifname: string;
  addr_info: { family: string; local: string }[];
}

describe.skipIf(skip)("ocelot-cni with the names container runtimes pass", () => {
  let dir: string;
  let url: string;
  let logFile: string;
  let store: SqliteDatastore;
  let node: Netns;
  const pods: Netns[] = [];

  const conf = (extra: Record<string, unknown> = {}) => ({
    cniVersion: "1.0.0",
    name: "podman-net",
    type: "ocelot-cni",
    datastore: url,
    nodename: "node-a",
    log_file_path: logFile,
    ipam: { type: "ocelot-ipam", ipv4_pools: ["pool"], assign_ipv6: false },
    ...extra,
  });
  // A podman-like container ID: 64 hex digits.
  const cid = (n: number) => `${String(n).repeat(8)}${"ab".repeat(28)}`.slice(0, 64);
  const cases = [
    { label: "podman's generated name", args: "IgnoreUnknown=1;K8S_POD_NAME=pensive_beaver" },
    {
      label: "uppercase, dot and underscore with a namespace",
      args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=Web.App_1",
    },
    { label: "no CNI_ARGS: the container ID", args: undefined },
  ];
  const env = (i: number) => ({
    CNI_CONTAINERID: cid(i + 1),
    CNI_NETNS: `/run/netns/${(pods[i] as Netns).name}`,
    CNI_IFNAME: "eth0",
    CNI_PATH: BIN,
    ...(cases[i]?.args ? { CNI_ARGS: cases[i]?.args as string } : {}),
  });
  const podIp = (pod: Netns) =>
    pod
      .ipJson<IpAddr[]>("addr", "show", "dev", "eth0")[0]
      ?.addr_info.find((a) => a.family === "inet")?.local;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-cni-names-"));
    url = `file:${join(dir, "store.db")}`;
    logFile = join(dir, "log", "cni.log");
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool", "10.68.0.0/16", { blockSize: 26 });
    node = Netns.create("cninames");
    addUplink(node, "192.0.2.10/24");
    for (const short of ["cnn1", "cnn2", "cnn3"]) pods.push(Netns.create(short));
  });

  afterAll(async () => {
    for (const ns of [...pods, node]) ns?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("ADD gives every container its endpoint under a valid name, and the pods ping each other", async () => {
    for (const [i, c] of cases.entries()) {
      const r = await runOcelotCni(node, "ADD", env(i), conf());
      expect(r.code, `${c.label}: ${r.stdout}${r.stderr}`).toBe(0);
      expect(podIp(pods[i] as Netns)).toMatch(/^10\.68\./);
    }
    const weps = await listWorkloadEndpoints(store);
    expect(weps).toHaveLength(3);
    for (const w of weps) expect(isDns1123Subdomain(w.metadata.name), w.metadata.name).toBe(true);
    const byContainer = new Map(weps.map((w) => [w.spec.containerID, w]));
    const beaver = byContainer.get(cid(1));
    expect(beaver?.metadata.name).toMatch(/^node--a-k8s-pensive\.beaver---[0-9a-f]{12}-eth0$/);
    expect(beaver?.metadata.namespace).toBe("default");
    expect(beaver?.spec).toMatchObject({ orchestrator: "k8s", pod: "pensive_beaver" });
    const web = byContainer.get(cid(2));
    expect(web?.metadata.name).toMatch(/^node--a-k8s-web\.app\.1---[0-9a-f]{12}-eth0$/);
    expect(web?.metadata.namespace).toBe("team-a");
    expect(web?.spec).toMatchObject({ orchestrator: "k8s", pod: "Web.App_1" });
    const plain = byContainer.get(cid(3));
    expect(plain?.metadata.name).toBe(`node--a-cni-${cid(3)}-eth0`);
    expect(plain?.spec).toMatchObject({ orchestrator: "cni", workload: cid(3) });

    const to = podIp(pods[2] as Netns) as string;
    // Up to 5 echoes, 5 s each: the first may wait for neighbour resolution on a loaded machine.
    let ping = runSync("true", []);
    for (let i = 0; i < 5; i++) {
      ping = runSync("ip", ["netns", "exec", (pods[0] as Netns).name, "ping", "-c1", "-W5", to]);
      if (ping.status === 0) break;
    }
    expect(ping.status, ping.stdout + ping.stderr).toBe(0);
    // The default log level writes nothing for success.
    expect(existsSync(logFile)).toBe(false);
  });

  it("CHECK passes and DEL removes each endpoint, its interface and its address", async () => {
    for (const [i] of cases.entries()) {
      const add = await runOcelotCni(node, "ADD", env(i), conf());
      expect(add.code, add.stdout).toBe(0);
      const prev = JSON.parse(add.stdout);
      const check = await runOcelotCni(node, "CHECK", env(i), conf({ prevResult: prev }));
      expect(check.code, check.stdout).toBe(0);
      const del = await runOcelotCni(node, "DEL", env(i), conf());
      expect(del.code, del.stdout).toBe(0);
    }
    expect(await listWorkloadEndpoints(store)).toEqual([]);
    expect(node.ipJson<IpAddr[]>("link", "show").filter((l) => l.ifname.startsWith("ocl"))).toEqual(
      [],
    );
    const check = runSync(join(BIN, "ocelot"), ["ipam", "check", "--datastore", url]);
    expect(check.status, check.stdout + check.stderr).toBe(0);
  });

  it("a failure answers with a one-line msg and no stack; the stack is in log_file_path", async () => {
    // An IPAM plugin that crashes with a JavaScript stack trace on stderr.
    const crashDir = join(dir, "crashbin");
    runSync("mkdir", ["-p", crashDir]);
    const crash = join(crashDir, "crash-ipam");
    writeFileSync(crash, '#!/usr/bin/env node\nthrow new Error("boom in the IPAM plugin");\n');
    chmodSync(crash, 0o755);
    const r = await runOcelotCni(
      node,
      "ADD",
      { ...env(0), CNI_PATH: `${crashDir}:${BIN}` },
      { ...conf(), ipam: { type: "crash-ipam" } },
    );
    expect(r.code).toBe(1);
    const err = JSON.parse(r.stdout);
    expect(Object.keys(err).sort()).toEqual(["cniVersion", "code", "msg"]);
    expect(err.code).toBe(102);
    expect(err.msg).toMatch(/^IPAM plugin "crash-ipam" ADD failed \(exit 1\)/);
    expect(err.msg).not.toContain("\n");
    expect(err.msg).not.toMatch(/\bat .*:\d+:\d+/);
    const lines = readFileSync(logFile, "utf8").trim().split("\n");
    const last = JSON.parse(lines.at(-1) as string);
    expect(last).toMatchObject({
      level: "error",
      plugin: "ocelot-cni",
      command: "ADD",
      containerID: cid(1),
      code: 102,
      msg: err.msg,
    });
    expect(last.stack).toContain("Error: boom in the IPAM plugin");
    expect(last.stack).toMatch(/\n\s+at /);
    // Nothing was left behind by the failed ADD.
    expect(await listWorkloadEndpoints(store)).toEqual([]);
  });
});
