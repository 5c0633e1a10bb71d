// Helpers for process tests of `bin/ocelot-ipam`: run one CNI command, bound concurrency,
// build a network configuration.
import { type ChildProcess, spawn } from "node:child_process";
import { OCELOT_IPAM } from "./build.js";

export const GRACE_SECONDS = 2;

export interface CniRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCni(
  command: string,
  containerId: string,
  conf: Record<string, unknown>,
  onSpawn?: (p: ChildProcess) => void,
): Promise<CniRun> {
  return new Promise((resolve, reject) => {
    const p = spawn(OCELOT_IPAM, [], {
      env: {
        PATH: process.env.PATH,
        CNI_COMMAND: command,
        CNI_CONTAINERID: containerId,
        CNI_NETNS: `/var/run/netns/${containerId}`,
        CNI_IFNAME: "eth0",
        CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${containerId}`,
        CNI_PATH: "/opt/cni/bin",
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    onSpawn?.(p);
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => p.kill("SIGKILL"), 60_000);
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
