// The CNI hand-off tests' shared setup: the plugins as `ocelot install-cni` installs them, a node
// namespace with an uplink and forwarding on, the real `ocelot node run` serving its cni.sock
// there (metrics on the namespace's loopback), a scrape of those metrics from inside it, and the
// teardown.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { addUplink } from "../helpers/cni.js";
import { runSync } from "../helpers/limits.js";
import type { Netns } from "../helpers/netns.js";
import { BIN, type NodeProcess, startNode } from "../node/harness.js";

/** Runs `ocelot install-cni` into binDir (conf in dir/net.d) for the datastore url. */
export function installCni(dir: string, binDir: string, url: string): void {
  const inst = runSync(join(BIN, "ocelot"), [
    ...["install-cni", "--bin-dir", binDir, "--conf-dir", join(dir, "net.d")],
    ...["--datastore", url],
  ]);
  expect(inst.status, inst.stderr).toBe(0);
}

/**
 * Gives node an uplink (192.0.2.10/24) and forwarding, and starts `ocelot node run` there as
 * nodename with no networking backend, metrics on 127.0.0.1:port; fails (the daemon stopped)
 * unless it serves the CNI hand-off socket.
 */
export async function startHandoffDaemon(
  node: Netns,
  nodename: string,
  url: string,
  port: number,
): Promise<NodeProcess> {
  addUplink(node, "192.0.2.10/24");
  node.exec("sysctl", "-qw", "net.ipv4.ip_forward=1");
  const daemon = await startNode(node, [
    ...["--nodename", nodename, "--ip", "192.0.2.10/24", "--networking-backend", "none"],
    ...["--datastore", url, "--metrics-address", `127.0.0.1:${port}`],
  ]);
  try {
    expect(daemon.has("CNI hand-off socket served"), daemon.log).toBe(true);
  } catch (err) {
    await daemon.stop();
    throw err;
  }
  return daemon;
}

/** The daemon's metrics text: they listen on the node namespace's loopback, scraped from inside it. */
export function scrapeNodeMetrics(node: Netns, port: number): string {
  return node.exec(
    process.execPath,
    "-e",
    `fetch("http://127.0.0.1:${port}/metrics").then((r) => r.text()).then((t) => process.stdout.write(t))`,
  );
}

/** Stops the daemon, destroys the pods' and the node's namespaces, removes dir. */
export async function closeHandoffLab(
  daemon: NodeProcess | undefined,
  pods: Netns[],
  node: Netns | undefined,
  dir: string | undefined,
): Promise<void> {
  await daemon?.stop();
  for (const p of pods) p.destroy();
  node?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
}
