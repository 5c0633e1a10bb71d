// /metrics and /readyz of the real `ocelot node run --metrics-address` in a node namespace,
// read with curl inside it: started while two WorkloadEndpoints claim one address (the agent's
// render refuses it), /readyz is 503 saying the agent has not converged and the failures
// counter rises; once one endpoint is deleted it converges, /readyz is 200 and the workload,
// convergence and agent-FIB series match the kernel's routes under protocol 202.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyResource, ResourceClient } from "../../src/api/client.js";
import { kindOf } from "../../src/api/registry.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { addUplink } from "../helpers/cni.js";
import { httpGetIn, metricSample } from "../helpers/metrics.js";
import { link, Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import { daemonTestsUnavailable, type NodeProcess, routes, startNode } from "./harness.js";

const skip = skipWithReason("ocelot node run metrics", daemonTestsUnavailable());
const NODE = "node-m";
const POOL = "10.72.0.0/16";
const PORT = 9092;
const IP = "10.72.200.7";

const wep = (name: string, iface: string) => ({
  apiVersion: "projectcalico.org/v3",
  kind: "WorkloadEndpoint",
  metadata: { name, namespace: "default" },
  spec: { node: NODE, pod: name, endpoint: "eth0", interfaceName: iface, ipNetworks: [`${IP}/32`] },
});

describe.skipIf(skip)("ocelot node run --metrics-address", () => {
  let dir: string;
  let store: SqliteDatastore;
  let node: Netns;
  let pod: Netns;
  let daemon: NodeProcess | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-nodem-"));
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool", POOL, { blockSize: 26 });
    node = Netns.create("nm");
    pod = Netns.create("nmp");
    addUplink(node, "192.0.2.20/24");
    link(node, "oclmetr0000001", undefined, pod, "eth0", `${IP}/32`);
    // Two endpoints claiming one address: the agent refuses to render until one goes.
    await applyResource(store, wep("m-a-eth0", "oclmetr0000001"));
    await applyResource(store, wep("m-b-eth0", "oclmetr0000002"));
    daemon = await startNode(node, [
      "--nodename",
      NODE,
      "--ip",
      "192.0.2.20/24",
      "--datastore",
      `file:${join(dir, "store.db")}`,
      "--status-socket",
      join(dir, "bgp.sock"),
      "--no-bgp",
      "--metrics-address",
      `127.0.0.1:${PORT}`,
    ]);
  });

  afterAll(async () => {
    if (process.env.NODED_LOG && daemon) writeFileSync(process.env.NODED_LOG, daemon.log);
    await daemon?.stop();
    for (const ns of [pod, node]) ns?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const get = (path: string) => httpGetIn(node, PORT, path);

  it("not converged: /readyz 503 with the reason, failures counted, /livez 200", async () => {
    const [code, body] = get("/readyz");
    expect(code, body).toBe(503);
    expect(body).toBe("not ok: the agent has not converged yet\n");
    expect(get("/livez")[0]).toBe(200);
    const text = get("/metrics")[1];
    expect(
      metricSample(text, 'ocelot_agent_convergence_failures_total{area="agent"}'),
    ).toBeGreaterThan(0);
    expect(metricSample(text, 'ocelot_agent_convergences_total{area="agent"}')).toBe(0);
    expect(metricSample(text, "ocelot_bgp_speaker_running")).toBe(0);
    await waitFor(
      "the failure to be logged",
      () => daemon?.has("Agent: convergence failed") === true,
      5000,
      50,
    );
  });

  it("converged: /readyz 200, workload and agent FIB series as the kernel has them", async () => {
    const info = kindOf("projectcalico.org/v3", "WorkloadEndpoint");
    await new ResourceClient(store).delete(info as NonNullable<typeof info>, "m-b-eth0", "default");
    await waitFor("/readyz 200", () => get("/readyz")[0] === 200, 10_000, 100);
    let text = "";
    await waitFor(
      "ocelot_fib_routes_installed{fib=agent} = the kernel's protocol 202 routes",
      () => {
        const kernel = routes(node, "202");
        text = get("/metrics")[1];
        return (
          kernel.some((r) => r.dst === IP) &&
          metricSample(text, 'ocelot_fib_routes_installed{fib="agent"}') === kernel.length
        );
      },
      10_000,
      100,
    );
    expect(metricSample(text, "ocelot_agent_workload_endpoints")).toBe(1);
    expect(metricSample(text, 'ocelot_agent_convergences_total{area="agent"}')).toBeGreaterThan(0);
    expect(metricSample(text, 'ocelot_fib_routes_pending{fib="agent"}')).toBe(0);
    expect(metricSample(text, "ocelot_agent_active_policies")).toBe(0);
    const at = metricSample(text, "ocelot_agent_last_convergence_timestamp_seconds") ?? 0;
    expect(Math.abs(at - Date.now() / 1000)).toBeLessThan(60);
    expect(metricSample(text, "ocelot_agent_last_convergence_duration_seconds")).toBeGreaterThan(0);
    expect(text).toContain("# TYPE ocelot_datastore_watch_resyncs_total counter\n");
  });
});
