// Runs the real bin/ocelot-cni inside a node's network namespace, as a container runtime would
// (CNI_PATH defaults to our bin/, so ocelot-ipam is found; env overrides it), bounded by HANG_MS.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { HANG_MS } from "./limits.js";
import type { Netns } from "./netns.js";

export const BIN = new URL("../../bin", import.meta.url).pathname;

export interface CniRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runOcelotCni(
  node: Netns,
  command: string,
  env: Record<string, string>,
  conf: unknown,
  /** The plugin executable (an installed launcher); default bin/ocelot-cni. */
  plugin = join(BIN, "ocelot-cni"),
): Promise<CniRun> {
  return new Promise((resolve, reject) => {
    const p = spawn("ip", ["netns", "exec", node.name, plugin], {
      env: { PATH: process.env.PATH, CNI_COMMAND: command, CNI_PATH: BIN, ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
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

/**
 * Gives a node namespace an uplink (a veth with both ends in it) carrying `address` and a
 * default route through it: proxy ARP answers a pod's 169.254.1.1 only when the node routes
 * that address out of another interface than the pod's, as a real node's uplink does.
 */
export function addUplink(node: Netns, address: string): void {
  node.ip("link", "add", "uplink", "type", "veth", "peer", "name", "uplink-peer");
  node.ip("addr", "add", address, "dev", "uplink");
  node.ip("link", "set", "uplink", "up");
  node.ip("link", "set", "uplink-peer", "up");
  node.ip("route", "add", "default", "via", "192.0.2.1");
}
