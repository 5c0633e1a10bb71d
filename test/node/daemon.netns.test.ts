// The real `bin/ocelot node run` inside a node namespace on a SQLite store with an IPPool, with
// pods wired by the real `bin/ocelot-cni`: it registers its Node; after a pod's ADD it programs
// the node from the datastore (the pod's /32 under protocol 202, the block's blackhole, proxy
// ARP), puts back a pod route deleted by hand and, at its periodic resync, a sysctl changed by
// hand; after DEL the route is gone; a WorkloadEndpoint written by hand for an existing veth
// converges too, and its deletion removes the route; SIGTERM stops it with exit code 0 and the
// pods' routes in place. Everything is read back from the kernel.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyResource, getNode, ResourceClient } from "../../src/api/client.js";
import { kindOf } from "../../src/api/registry.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { addUplink } from "../helpers/cni.js";
import { link, Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import {
  cni,
  daemonTestsUnavailable,
  type NodeProcess,
  netconf,
  podEnv,
  routes,
  startNode,
  sysctl,
} from "./harness.js";

const skip = skipWithReason("ocelot node run netns", daemonTestsUnavailable());
const NODE = "node-a";
const POOL = "10.71.0.0/16";

describe.skipIf(skip)("ocelot node run: the agent from the datastore", () => {
  let dir: string;
  let url: string;
  let store: SqliteDatastore;
  let node: Netns;
  let daemon: NodeProcess | undefined;
  const pods: Netns[] = [];
  let podIp = "";
  let hostIface = "";

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-noded-"));
    url = `file:${join(dir, "store.db")}`;
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool", POOL, { blockSize: 26 });
    node = Netns.create("nd");
    addUplink(node, "192.0.2.10/24");
    for (const short of ["ndp1", "ndp2"]) pods.push(Netns.create(short));
    daemon = await startNode(node, [
      "--nodename",
      NODE,
      "--ip",
      "192.0.2.10/24",
      "--datastore",
      url,
      "--status-socket",
      join(dir, "bgp.sock"),
      "--resync-interval",
      "1s",
      "--metrics-address",
      "127.0.0.1:9099",
      "--log-level",
      process.env.NODED_LEVEL ?? "info",
    ]);
  });

  afterAll(async () => {
    // NODED_LOG=FILE keeps the daemon's log for a look after a failure.
    if (process.env.NODED_LOG && daemon) writeFileSync(process.env.NODED_LOG, daemon.log);
    await daemon?.stop();
    for (const ns of [...pods, node]) ns?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("registers its Node with its address", async () => {
    const n = await getNode(store, NODE);
    expect(n?.spec.bgp).toEqual({ ipv4Address: "192.0.2.10/24" });
  });

  it("after CNI ADD: the pod's /32 and its block's blackhole under protocol 202, proxy ARP on", async () => {
    const r = await cni(node, "ADD", podEnv(pods[0] as Netns, "web-1"), netconf(url, NODE, "pool"));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const result = JSON.parse(r.stdout);
    podIp = (result.ips[0].address as string).split("/")[0] as string;
    hostIface = result.interfaces[0].name;
    const block = `${podIp.split(".").slice(0, 3).join(".")}.${Math.floor(Number(podIp.split(".")[3]) / 64) * 64}/26`;
    // The blackhole is the daemon's alone (the plugin adds only the /32).
    const rs = await waitFor(
      "the agent's routes",
      () => {
        const rs = routes(node, "202");
        const ok =
          rs.some((x) => x.dst === podIp && x.dev === hostIface) &&
          rs.some((x) => x.dst === block && x.type === "blackhole");
        return ok ? rs : undefined;
      },
      10_000,
      50,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${daemon?.log}`);
    });
    expect(rs.find((x) => x.dst === podIp)).toMatchObject({ scope: "link", dev: hostIface });
    expect(sysctl(node, `net.ipv4.conf.${hostIface}.proxy_arp`)).toBe("1");
    // Logged once the apply returns, just after the routes are in: wait for the line too.
    await waitFor(
      "the convergence to be logged",
      () => daemon?.has("Agent: data plane converged") === true,
      5000,
      50,
    );
  });

  it("puts back the pod's route deleted by hand, and a sysctl at its next resync", async () => {
    node.ip("route", "del", `${podIp}/32`, "dev", hostIface);
    await waitFor(
      "the route to come back",
      () => routes(node, "202").some((x) => x.dst === podIp),
      5000,
      50,
    );
    node.exec("sysctl", "-qw", `net.ipv4.conf.${hostIface}.proxy_arp=0`);
    await waitFor(
      "proxy_arp back to 1 (periodic resync, 1 s)",
      () => sysctl(node, `net.ipv4.conf.${hostIface}.proxy_arp`) === "1",
      8000,
      100,
    );
    // The log line follows the repair (written once the apply returns): wait for it too.
    await waitFor(
      "the repair to be logged",
      () => daemon?.has("Agent: kernel drift repaired") === true,
      5000,
      50,
    );
    // The agent pass's repair counted by kind (inside the node's namespace, where the daemon
    // listens). The route above comes back before any pass sees it missing, so only the
    // sysctl is counted here.
    const repairs = (kind: string) => {
      const text = node.exec("curl", "-s", "--max-time", "60", "http://127.0.0.1:9099/metrics");
      const m = new RegExp(
        `^ocelot_agent_drift_repairs_total\\{kind="${kind}"\\} (\\d+)$`,
        "m",
      ).exec(text);
      return Number(m?.[1] ?? 0);
    };
    await waitFor("the sysctl repair counted", () => repairs("sysctl") >= 1, 5000, 100).catch(
      (e) => {
        const text = node.exec("curl", "-s", "--max-time", "60", "http://127.0.0.1:9099/metrics");
        throw new Error(
          `${(e as Error).message}\n${text
            .split("\n")
            .filter((l) => l.includes("drift"))
            .join("\n")}\n${daemon?.log
            .split("\n")
            .filter((l) => l.includes("drift"))
            .join("\n")}`,
        );
      },
    );
  });

  it("after CNI DEL: the pod's route is gone", async () => {
    const r = await cni(node, "DEL", podEnv(pods[0] as Netns, "web-1"), netconf(url, NODE, "pool"));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    await waitFor(
      "the /32 to go",
      () => !routes(node, "202").some((x) => x.dst === podIp),
      5000,
      50,
    );
    // Give a put-back a chance to show itself: it must not come back.
    await new Promise((r) => setTimeout(r, 300));
    expect(routes(node, "202").some((x) => x.dst === podIp)).toBe(false);
  });

  it("a WorkloadEndpoint written by hand for an existing veth converges; deleting it removes the route", async () => {
    const pod = pods[1] as Netns;
    const iface = "oclhand0000001";
    const ip = "10.71.200.7";
    link(node, iface, undefined, pod, "eth0", `${ip}/32`);
    await applyResource(store, {
      apiVersion: "projectcalico.org/v3",
      kind: "WorkloadEndpoint",
      metadata: { name: "node--a-k8s-hand-eth0", namespace: "default" },
      spec: {
        node: NODE,
        pod: "hand",
        endpoint: "eth0",
        interfaceName: iface,
        ipNetworks: [`${ip}/32`],
      },
    });
    await waitFor(
      "the hand-made endpoint's route",
      () => routes(node, "202").some((x) => x.dst === ip && x.dev === iface),
      5000,
      50,
    );
    expect(sysctl(node, `net.ipv4.conf.${iface}.proxy_arp`)).toBe("1");
    const l = node.ipJson<{ address: string }[]>("link", "show", iface)[0];
    expect(l?.address).toBe("ee:ee:ee:ee:ee:ee");
    const info = kindOf("projectcalico.org/v3", "WorkloadEndpoint");
    await new ResourceClient(store).delete(
      info as NonNullable<typeof info>,
      "node--a-k8s-hand-eth0",
      "default",
    );
    await waitFor(
      "the route to go with its endpoint",
      () => !routes(node, "202").some((x) => x.dst === ip),
      5000,
      50,
    );
  });

  it("SIGTERM: exits 0, the pods' routes stay", async () => {
    // One more pod so there is a route to keep; the agent takes it in before the stop.
    const before = daemon?.lines.filter((l) => l.msg === "Agent: data plane converged").length;
    const r = await cni(node, "ADD", podEnv(pods[0] as Netns, "web-2"), netconf(url, NODE, "pool"));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const ip = (JSON.parse(r.stdout).ips[0].address as string).split("/")[0] as string;
    await waitFor(
      "the agent to take the pod in",
      () =>
        (daemon?.lines.filter((l) => l.msg === "Agent: data plane converged").length ?? 0) >
        (before ?? 0),
      5000,
      50,
    );
    expect(await daemon?.stop()).toBe(0);
    expect(daemon?.has("Stopped")).toBe(true);
    expect(routes(node, "202").some((x) => x.dst === ip)).toBe(true);
    await cni(node, "DEL", podEnv(pods[0] as Netns, "web-2"), netconf(url, NODE, "pool"));
  });
});
