// A HostEndpoint found by its expectedIPs follows the node's addresses, with no datastore change
// (as Felix re-resolves host endpoints on its interface monitor's address updates): the real
// `bin/ocelot node run` in a node namespace with a link `hep0` to an outside namespace, a
// HostEndpoint expecting 198.51.100.1 (no link holds it yet) and a GlobalNetworkPolicy denying
// its ingress. The outside host's pings to the node's hep0 pass while no interface holds the
// address; adding 198.51.100.1 to hep0 makes the host endpoint's chains and its policy apply
// within seconds (the pings are dropped); removing it lifts them again. Periodic passes are off
// in this test (resync 10 min, FelixConfiguration's refresh intervals 0), so only the address
// change can have run the pass.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyResource } from "../../src/api/client.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { addUplink } from "../helpers/cni.js";
import { runSync } from "../helpers/limits.js";
import { Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import { daemonTestsUnavailable, type NodeProcess, startNode } from "./harness.js";

const skip = skipWithReason("host endpoint expectedIPs netns", daemonTestsUnavailable());
const NODE = "node-hx";
const HEP_LINK = "hep0";
const NODE_ADDR = "198.51.100.2";
const EXPECTED = "198.51.100.1";
const OUTSIDE_ADDR = "198.51.100.9";

/** One ICMP echo from the outside host to the node's hep0: 5 tries of 5 s when expected, else one of 1 s. */
function pings(from: Netns, expected: boolean): boolean {
  for (let i = 0; i < (expected ? 5 : 1); i++) {
    const r = runSync("ip", [
      ...["netns", "exec", from.name, "ping", "-c", "1", "-W", expected ? "5" : "1"],
      NODE_ADDR,
    ]);
    if (r.status === 0) return true;
  }
  return false;
}

describe.skipIf(skip)("HostEndpoint expectedIPs matched on an address change", () => {
  let dir: string;
  let store: SqliteDatastore;
  let node: Netns | undefined;
  let outside: Netns | undefined;
  let daemon: NodeProcess | undefined;
  const filter = () => (node as Netns).exec("iptables-save", "-t", "filter");
  const dispatched = () =>
    filter().includes(`-A ocl-from-host-endpoint -i ${HEP_LINK} -g ocl-fh-${HEP_LINK}`);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-hepx-"));
    const url = `file:${join(dir, "store.db")}`;
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool", "10.73.0.0/16", { blockSize: 26 });
    // No agent pass but those changes cause: no periodic refresh (the resync is 10 min).
    await applyResource(store, {
      apiVersion: "projectcalico.org/v3",
      kind: "FelixConfiguration",
      metadata: { name: "default" },
      spec: { iptablesRefreshInterval: "0s", routeRefreshInterval: "0s" },
    });
    node = Netns.create("hx");
    outside = Netns.create("hxo");
    addUplink(node, "192.0.2.21/24");
    node.ip("link", "add", HEP_LINK, "type", "veth", "peer", "name", "eth0", "netns", outside.name);
    node.ip("addr", "add", `${NODE_ADDR}/24`, "dev", HEP_LINK);
    node.ip("link", "set", HEP_LINK, "up");
    outside.ip("addr", "add", `${OUTSIDE_ADDR}/24`, "dev", "eth0");
    outside.ip("link", "set", "eth0", "up");
    daemon = await startNode(node, [
      ...["--nodename", NODE, "--ip", "192.0.2.21/24", "--datastore", url],
      ...["--status-socket", join(dir, "bgp.sock"), "--resync-interval", "10m"],
      ...["--log-level", process.env.NODED_LEVEL ?? "debug"],
    ]);
  });

  afterAll(async () => {
    await daemon?.stop();
    await store?.close();
    outside?.destroy();
    node?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("adding the expected address applies the host endpoint's policy within seconds; removing it lifts it", async () => {
    const d = daemon as NodeProcess;
    await applyResource(store, {
      apiVersion: "projectcalico.org/v3",
      kind: "GlobalNetworkPolicy",
      metadata: { name: "edge-deny-in" },
      spec: { selector: "role == 'edge'", types: ["Ingress"], ingress: [] },
    });
    await applyResource(store, {
      apiVersion: "projectcalico.org/v3",
      kind: "HostEndpoint",
      metadata: { name: `${NODE}-edge`, labels: { role: "edge" } },
      spec: { node: NODE, expectedIPs: [EXPECTED] },
    });
    await waitFor(
      "the agent to find no interface holding the expected IP",
      () =>
        d.lines.some((l) =>
          JSON.stringify(l.warnings ?? "").includes(`no interface of this host holds ${EXPECTED}`),
        ),
      30_000,
      100,
    );
    expect(dispatched()).toBe(false);
    expect(pings(outside as Netns, true)).toBe(true);

    const t0 = performance.now();
    (node as Netns).ip("addr", "add", `${EXPECTED}/24`, "dev", HEP_LINK);
    await waitFor("the host endpoint's chains on hep0", dispatched, 30_000, 50);
    const appliedMs = performance.now() - t0;
    console.log(
      `expectedIPs: host endpoint applied ${Math.round(appliedMs)} ms after the address was added`,
    );
    expect(pings(outside as Netns, false)).toBe(false);
    expect(d.has("Agent: host address changed; host endpoints matched again")).toBe(true);

    const t1 = performance.now();
    (node as Netns).ip("addr", "del", `${EXPECTED}/24`, "dev", HEP_LINK);
    await waitFor("the host endpoint's chains gone from hep0", () => !dispatched(), 30_000, 50);
    console.log(
      `expectedIPs: host endpoint lifted ${Math.round(performance.now() - t1)} ms after the address was removed`,
    );
    expect(pings(outside as Netns, true)).toBe(true);
  });
});
