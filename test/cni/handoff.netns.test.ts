// The CNI hand-off end to end: the plugins as `ocelot install-cni` installs them (launcher,
// native shim, payload), run inside a node namespace where the real `ocelot node run` serves
// its cni.sock. ADD and DEL are run by the daemon (its ocelot_cni_handoff_seconds counts them
// "done"), with the same effect as the plugin's own: the pod's address in its namespace, the
// host route, the WorkloadEndpoint, the address released after DEL. A call naming another
// datastore is declined and the plugin runs itself; with the daemon stopped the launcher runs
// the plugin itself too.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listWorkloadEndpoints } from "../../src/api/client.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { runOcelotCni } from "../helpers/cni.js";
import { runSync } from "../helpers/limits.js";
import { Netns, skipWithReason } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import { BIN, daemonTestsUnavailable, type NodeProcess } from "../node/harness.js";
import {
  closeHandoffLab,
  installCni,
  scrapeNodeMetrics,
  startHandoffDaemon,
} from "./handoff_node.js";

const skip = skipWithReason("CNI hand-off", daemonTestsUnavailable());

describe.skipIf(skip)("CNI hand-off: installed plugins run their calls in the node daemon", () => {
  let dir: string;
  let binDir: string;
  let url: string;
  let otherUrl: string;
  let node: Netns;
  let daemon: NodeProcess | undefined;
  const pods: Netns[] = [];
  const port = 20_000 + Math.floor(Math.random() * 20_000);

  const conf = (datastore: string, pool: string) => ({
    cniVersion: "1.0.0",
    name: "k8s-pod-network",
    type: "ocelot-cni",
    datastore,
    nodename: "node-h",
    mtu: 1450,
    ipam: { type: "ocelot-ipam", ipv4_pools: [pool], assign_ipv6: false },
  });
  const env = (pod: Netns, name: string) => ({
    CNI_CONTAINERID: `ctr-${name}`,
    CNI_NETNS: `/run/netns/${pod.name}`,
    CNI_IFNAME: "eth0",
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=team-h;K8S_POD_NAME=${name}`,
    CNI_PATH: binDir,
  });
  const installed = (command: string, e: Record<string, string>, c: unknown) =>
    runOcelotCni(node, command, e, c, join(binDir, "ocelot-cni"));
  /** ocelot_cni_handoff_seconds_count by plugin, command and outcome, from a real scrape. */
  const handoffs = (): Record<string, number> => {
    const text = scrapeNodeMetrics(node, port);
    const out: Record<string, number> = {};
    for (const m of text.matchAll(
      /^ocelot_cni_handoff_seconds_count\{plugin="([^"]+)",command="([^"]+)",outcome="([^"]+)"\} (\d+)$/gm,
    ))
      out[`${m[1]} ${m[2]} ${m[3]}`] = Number(m[4]);
    return out;
  };
  const podAddress = (pod: Netns) =>
    (
      JSON.parse(pod.exec("ip", "-j", "-4", "addr", "show", "dev", "eth0")) as {
        addr_info: { local: string }[];
      }[]
    )[0]?.addr_info.map((a) => a.local);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-handoff-"));
    binDir = join(dir, "bin");
    url = `file:${join(dir, "store.db")}`;
    otherUrl = `file:${join(dir, "other.db")}`;
    for (const [u, name, cidr] of [
      [url, "pool", "10.79.0.0/24"],
      [otherUrl, "other", "10.79.1.0/24"],
      [url, "pool6", "fd79::/120"],
    ] as const) {
      const s = new SqliteDatastore(u.slice(5));
      await putPool(s, name, cidr, { blockSize: cidr.includes(":") ? 122 : 26 });
      await s.close();
    }
    installCni(dir, binDir, url);
    node = Netns.create("hnode");
    daemon = await startHandoffDaemon(node, "node-h", url, port);
  }, 120_000);

  afterAll(async () => {
    await closeHandoffLab(daemon, pods, node, dir);
  });

  it("ADD and DEL run in the daemon, with the plugin's own effects", async () => {
    const pod = Netns.create("hpod");
    pods.push(pod);
    const t0 = performance.now();
    const add = await installed("ADD", env(pod, "web"), conf(url, "pool"));
    const addMs = performance.now() - t0;
    expect(add.code, `${add.stdout}${add.stderr}${daemon?.log}`).toBe(0);
    const ip = (JSON.parse(add.stdout) as { ips: { address: string }[] }).ips[0]?.address;
    expect(ip).toMatch(/^10\.79\.0\.\d+\/32$/);
    expect(podAddress(pod)).toEqual([ip?.split("/")[0]]);
    const hostRoutes = JSON.parse(node.exec("ip", "-j", "route", "show", "proto", "202")) as {
      dst: string;
    }[];
    expect(hostRoutes.map((r) => r.dst)).toContain(ip?.split("/")[0]);
    expect(handoffs()).toMatchObject({ "ocelot-cni ADD done": 1 });
    const store = new SqliteDatastore(url.slice(5));
    try {
      expect((await listWorkloadEndpoints(store)).map((w) => w.spec.pod)).toEqual(["web"]);
    } finally {
      await store.close();
    }

    const t1 = performance.now();
    const del = await installed("DEL", env(pod, "web"), conf(url, "pool"));
    const delMs = performance.now() - t1;
    expect(del.code, `${del.stdout}${del.stderr}`).toBe(0);
    expect(handoffs()).toMatchObject({ "ocelot-cni ADD done": 1, "ocelot-cni DEL done": 1 });
    expect(pod.exec("ip", "-j", "link", "show")).not.toContain('"eth0"');
    const check = runSync(join(BIN, "ocelot"), ["ipam", "check", "--datastore", url]);
    expect(check.stdout).toContain("Leaked addresses (allocated, no WorkloadEndpoint): 0");
    expect(check.stdout).toContain(", 0 allocated addresses.");
    console.log(
      `hand-off: ADD ${addMs.toFixed(0)} ms, DEL ${delMs.toFixed(0)} ms (load ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]})`,
    );
  });

  it("a dual-stack ADD in the daemon: the IPv6 gateway is the host side's link-local address", async () => {
    // The wait for that address is asynchronous in the daemon (its event loop also carries BGP
    // and BFD); this proves the awaited path gives the same wiring as the plugin's own.
    const pod = Netns.create("hpod6");
    pods.push(pod);
    const dual = {
      ...conf(url, "pool"),
      ipam: { type: "ocelot-ipam", ipv4_pools: ["pool"], ipv6_pools: ["pool6"], assign_ipv6: true },
    };
    const before = handoffs()["ocelot-cni ADD done"] ?? 0;
    const add = await installed("ADD", env(pod, "dual"), dual);
    expect(add.code, `${add.stdout}${add.stderr}${daemon?.log}`).toBe(0);
    expect(handoffs()["ocelot-cni ADD done"]).toBe(before + 1);
    const result = JSON.parse(add.stdout) as {
      ips: { address: string }[];
      routes: { dst: string; gw?: string }[];
    };
    const ip6 = result.ips.find((i) => i.address.includes(":"))?.address;
    expect(ip6).toMatch(/^fd79::[0-9a-f]+\/128$/);
    const ll = result.routes.find((r) => r.dst === "::/0")?.gw;
    expect(ll).toMatch(/^fe80::/);
    const def6 = JSON.parse(pod.exec("ip", "-j", "-6", "route", "show", "default")) as {
      gateway?: string;
    }[];
    expect(def6.map((r) => r.gateway)).toEqual([ll]);
    const host6 = JSON.parse(node.exec("ip", "-j", "-6", "route", "show", "proto", "202")) as {
      dst: string;
    }[];
    expect(host6.map((r) => r.dst)).toContain(ip6?.split("/")[0]);
    const del = await installed("DEL", env(pod, "dual"), dual);
    expect(del.code, `${del.stdout}${del.stderr}`).toBe(0);
  });

  it("a call naming another datastore is declined and the plugin runs it itself", async () => {
    const pod = Netns.create("hpod2");
    pods.push(pod);
    const add = await installed("ADD", env(pod, "other"), conf(otherUrl, "other"));
    expect(add.code, `${add.stdout}${add.stderr}`).toBe(0);
    expect((JSON.parse(add.stdout) as { ips: { address: string }[] }).ips[0]?.address).toMatch(
      /^10\.79\.1\.\d+\/32$/,
    );
    expect(handoffs()).toMatchObject({ "ocelot-cni ADD declined": 1 });
    const del = await installed("DEL", env(pod, "other"), conf(otherUrl, "other"));
    expect(del.code, `${del.stdout}${del.stderr}`).toBe(0);
  });

  it("with the daemon stopped, the launcher runs the plugin itself", async () => {
    await daemon?.stop();
    const pod = Netns.create("hpod3");
    pods.push(pod);
    const t0 = performance.now();
    const add = await installed("ADD", env(pod, "alone"), conf(url, "pool"));
    const addMs = performance.now() - t0;
    expect(add.code, `${add.stdout}${add.stderr}`).toBe(0);
    const ip = (JSON.parse(add.stdout) as { ips: { address: string }[] }).ips[0]?.address;
    expect(podAddress(pod)).toEqual([ip?.split("/")[0]]);
    const del = await installed("DEL", env(pod, "alone"), conf(url, "pool"));
    expect(del.code, `${del.stdout}${del.stderr}`).toBe(0);
    console.log(`no daemon: ADD ${addMs.toFixed(0)} ms`);
  });
});
