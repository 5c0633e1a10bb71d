// Helpers for process tests of `bin/ocelot-ipam`: run one CNI command, bound concurrency,
// build a network configuration.
import { type ChildProcess, spawn } from "node:child_process";
import { expect } from "vitest";
import { runIpamPlugin } from "../../src/cni/ipam_plugin.js";
import type { Datastore } from "../../src/datastore/types.js";
import { inUseCount } from "../../src/ipam/block.js";
import { IpamStore } from "../../src/ipam/store.js";
import { HANG_MS } from "../helpers/limits.js";

export const GRACE_SECONDS = 2;

export interface CniRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCni(
  plugin: string,
  command: string,
  containerId: string,
  conf: Record<string, unknown>,
  onSpawn?: (p: ChildProcess) => void,
  extraEnv: Record<string, string> = {},
): Promise<CniRun> {
  return new Promise((resolve, reject) => {
    const p = spawn(plugin, [], {
      env: {
        PATH: process.env.PATH,
        CNI_COMMAND: command,
        CNI_CONTAINERID: containerId,
        CNI_NETNS: `/var/run/netns/${containerId}`,
        CNI_IFNAME: "eth0",
        CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${containerId}`,
        CNI_PATH: "/opt/cni/bin",
        ...extraEnv,
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    onSpawn?.(p);
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

/** Runs jobs with at most `limit` in flight. */
export async function bounded<T>(jobs: Array<() => Promise<T>>, limit: number): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await (jobs[i] as () => Promise<T>)();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  return out;
}

export function netConf(
  datastore: string,
  node: string,
  ipam: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    cniVersion: "1.0.0",
    name: "k8s-pod-network",
    type: "ocelot-cni",
    datastore,
    nodename: node,
    ipam: { type: "ocelot-ipam", empty_block_grace_seconds: GRACE_SECONDS, ...ipam },
  };
}

export const NODES = 4;
export const PODS_PER_NODE = 20;
/**
 * Plugin processes in flight at once: enough that assignments from several processes race for
 * the same blocks, few enough for a loaded 2-core machine (each is a Node.js process start).
 */
export const MAX_IN_FLIGHT = 4;

export async function usage(
  store: Datastore,
): Promise<{ inUse: number; blocks: number; handles: number; affinities: number }> {
  const ipam = new IpamStore(store);
  const blocks = await ipam.listBlocks(4);
  return {
    inUse: blocks.reduce((n, e) => n + inUseCount(e.block), 0),
    blocks: blocks.length,
    handles: (await store.list("/ocelot/ipam/v2/handle/")).items.length,
    affinities: (await store.list("/ocelot/ipam/v2/host/")).items.length,
  };
}

/**
 * NODES x PODS_PER_NODE ADDs through the plugin: distinct addresses, each in a block of its own node
 * (50 fit in one /26); then all DELs free every address; after the grace period one more DEL per
 * node releases the empty blocks. Expects a pool "default-ipv4" (a /16) and nothing else allocated.
 */
export async function fourNodesScenario(
  plugin: string,
  url: string,
  store: Datastore,
  /** Runs the DELs in this process through runIpamPlugin instead of plugin processes. */
  delInProcess = false,
): Promise<void> {
  const pods = Array.from({ length: NODES * PODS_PER_NODE }, (_, i) => ({
    node: `node${i % NODES}`,
    id: `pod${i}`,
  }));
  const adds = await bounded(
    pods.map(
      (p) => () =>
        runCni(plugin, "ADD", p.id, netConf(url, p.node, { ipv4_pools: ["default-ipv4"] })),
    ),
    MAX_IN_FLIGHT,
  );
  for (const r of adds) expect(r.code, r.stdout + r.stderr).toBe(0);
  const addrs = adds.map((r) => (JSON.parse(r.stdout).ips[0].address as string).replace("/32", ""));
  expect(new Set(addrs).size).toBe(NODES * PODS_PER_NODE);
  const ipam = new IpamStore(store);
  for (const [i, a] of addrs.entries()) {
    const alloc = await ipam.getAllocation(a);
    expect(alloc?.handleId).toBe(`k8s-pod-network.${pods[i]?.id}`);
    expect(alloc?.blockAffinity).toBe(`host:${pods[i]?.node}`);
  }
  // No address was borrowed, so no handle record was needed (the blocks' attributes hold the
  // handle ids). One /26 per node suffices; concurrent first claims on a node converge on one
  // block, rarely two (a process that read the node's affinities just before a sibling's claim).
  const used = await usage(store);
  console.log(`${NODES} nodes x ${PODS_PER_NODE} pods: ${used.blocks} blocks claimed`);
  expect(used).toMatchObject({ inUse: NODES * PODS_PER_NODE, handles: 0, affinities: used.blocks });
  expect(used.blocks).toBeGreaterThanOrEqual(4);
  expect(used.blocks).toBeLessThanOrEqual(8);

  const del = delInProcess
    ? inProcessDel(store)
    : (id: string, conf: Record<string, unknown>) => runCni(plugin, "DEL", id, conf);
  const dels = await bounded(
    pods.map((p) => () => del(p.id, netConf(url, p.node))),
    MAX_IN_FLIGHT,
  );
  for (const r of dels) expect(r, r.stdout + r.stderr).toMatchObject({ code: 0, stdout: "" });
  expect(await usage(store)).toMatchObject({ inUse: 0, handles: 0 });
  // Released only after the grace period: a DEL on each node after it sweeps the empty blocks.
  await new Promise((r) => setTimeout(r, GRACE_SECONDS * 1000 + 200));
  for (let n = 0; n < NODES; n++)
    expect((await runCni(plugin, "DEL", "gone", netConf(url, `node${n}`))).code).toBe(0);
  expect(await usage(store)).toEqual({ inUse: 0, blocks: 0, handles: 0, affinities: 0 });
}

/** A DEL through the plugin's code in this process (same parsing, store adapter and output). */
function inProcessDel(store: Datastore) {
  const shared: Datastore = {
    url: store.url,
    get: (k) => store.get(k),
    list: (p) => store.list(p),
    create: (k, v) => store.create(k, v),
    update: (k, v, r) => store.update(k, v, r),
    updateIfAbsent: (k, v, r, a) => store.updateIfAbsent(k, v, r, a),
    delete: (k, r) => store.delete(k, r),
    watch: (p, r, f) => store.watch(p, r, f),
    revision: () => store.revision(),
    close: async () => {},
  };
  return async (id: string, conf: Record<string, unknown>): Promise<CniRun> => {
    const env = {
      CNI_COMMAND: "DEL",
      CNI_CONTAINERID: id,
      CNI_NETNS: `/var/run/netns/${id}`,
      CNI_IFNAME: "eth0",
      CNI_ARGS: "",
    };
    const out = await runIpamPlugin(env, JSON.stringify(conf), {
      openStore: async () => shared,
      hostname: () => "unused",
    });
    return { code: out.exitCode, stdout: out.stdout, stderr: "" };
  };
}

/** A pool of 4 addresses filled, then one more ADD: code 11 naming the pool, nothing written. */
export async function exhaustionScenario(
  plugin: string,
  url: string,
  store: Datastore,
): Promise<void> {
  const conf = netConf(url, "nodeX", { ipv4_pools: ["tiny"] });
  for (let i = 0; i < 4; i++) expect((await runCni(plugin, "ADD", `t${i}`, conf)).code).toBe(0);
  const before = await usage(store);
  const r = await runCni(plugin, "ADD", "t-full", conf);
  expect(r.code).toBe(1);
  const err = JSON.parse(r.stdout);
  expect(err).toMatchObject({ cniVersion: "1.0.0", code: 11 });
  expect(err.msg).toContain('"tiny" (10.99.0.0/30)');
  expect(await usage(store)).toEqual(before);
  expect(await store.get("/ocelot/ipam/v2/handle/k8s-pod-network.t-full")).toBeUndefined();
  for (let i = 0; i < 4; i++) expect((await runCni(plugin, "DEL", `t${i}`, conf)).code).toBe(0);
}
