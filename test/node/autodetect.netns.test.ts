// Node address autodetection against the real kernel: a namespace with several interfaces and
// addresses where first-found (Calico's order: the last interface first) picks the management
// address, the wrong one, and each other method picks the fabric one; can-reach asks the
// kernel's route lookup (`ip route get`, no packet sent). Then the real `ocelot node run`,
// configured only by Calico's variables, waits for an etcd that is not there yet (saying so),
// starts once it appears, creates the first pool, registers the autodetected address and shows
// how it was chosen in `ocelot status`.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readNodeInternalIPs } from "../../src/k8s/pod_reader.js";
import { detectAddress } from "../../src/node/autodetect_kernel.js";
import { ETCD_BIN, etcdUnavailableReason } from "../helpers/etcd.js";
import { KubeApi } from "../helpers/kube_api.js";
import { runSync } from "../helpers/limits.js";
import { Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { BIN, daemonTestsUnavailable, NodeProcess } from "./harness.js";

const skip = skipWithReason(
  "autodetection netns",
  daemonTestsUnavailable() ?? etcdUnavailableReason(),
);

describe.skipIf(skip)("node address autodetection in a namespace", () => {
  let ns: Netns;
  let dir: string;
  let etcd: ChildProcess | undefined;
  let node: NodeProcess | undefined;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-autodetect-"));
    ns = Netns.create("adet");
    // In index order: the fabric (eth0), then management (mgmt0), then a docker bridge.
    const links: Array<[string, string[]]> = [
      ["eth0", ["10.10.0.11/24", "169.254.7.7/16", "fd00:10::11/64"]],
      ["mgmt0", ["192.168.50.10/24", "fd00:50::10/64"]],
      ["docker0", ["172.17.0.1/16"]],
    ];
    for (const [name, addrs] of links) {
      // A veth pair with both ends here (no dummy module on this kernel); the peer has no address.
      ns.ip("link", "add", name, "type", "veth", "peer", "name", `${name}p`);
      ns.ip("link", "set", `${name}p`, "up");
      for (const a of addrs)
        ns.ip("addr", "add", a, "dev", name, ...(a.includes(":") ? ["nodad"] : []));
      ns.ip("link", "set", name, "up");
    }
    ns.ip("route", "add", "default", "via", "10.10.0.1", "dev", "eth0");
  });

  afterAll(async () => {
    await node?.stop();
    if (etcd?.pid && etcd.exitCode === null) {
      etcd.kill("SIGKILL");
      await new Promise((r) => etcd?.once("exit", r));
    }
    ns?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const detect = (family: 4 | 6, method: string) =>
    detectAddress(family, method, "IP_AUTODETECTION_METHOD", ns.name);

  it("first-found picks the management address (the last interface first): the wrong one here", async () => {
    expect(await detect(4, "first-found")).toMatchObject({
      cidr: "192.168.50.10/24",
      iface: "mgmt0",
    });
    expect(await detect(6, "first-found")).toMatchObject({
      cidr: "fd00:50::10/64",
      iface: "mgmt0",
    });
  });

  it("interface=, skip-interface=, cidr= and can-reach= pick the fabric address", async () => {
    for (const m of [
      "interface=^eth0$",
      "skip-interface=^mgmt",
      "cidr=10.10.0.0/16",
      "can-reach=10.10.0.1",
      "can-reach=203.0.113.5",
    ]) {
      expect(await detect(4, m), m).toMatchObject({
        cidr: "10.10.0.11/24",
        iface: "eth0",
        method: m,
      });
    }
    // can-reach follows the kernel's route: towards the management subnet, the management address.
    expect(await detect(4, "can-reach=192.168.50.1")).toMatchObject({ cidr: "192.168.50.10/24" });
    expect(await detect(6, "can-reach=fd00:10::1")).toMatchObject({
      cidr: "fd00:10::11/64",
      iface: "eth0",
    });
    expect(await detect(6, "cidr=fd00:10::/48")).toMatchObject({ cidr: "fd00:10::11/64" });
    await expect(detect(4, "interface=^wlan")).rejects.toThrow(
      /No IPv4 address found by interface=\^wlan/,
    );
    await expect(detect(6, "can-reach=2001:db8::1")).rejects.toThrow(
      /no IPv6 route to 2001:db8::1/,
    );
  });

  it("kubernetes-internal-ip: the Kubernetes Node's InternalIP, read from the API server by the real client", async () => {
    const api = await KubeApi.start();
    try {
      api.putNode("adet-node", {}, [
        { type: "Hostname", address: "adet-node" },
        { type: "ExternalIP", address: "203.0.113.5" },
        { type: "InternalIP", address: "10.10.0.11" },
        { type: "InternalIP", address: "fd00:10::11" },
      ]);
      api.putNode("elsewhere", {}, [{ type: "InternalIP", address: "10.99.0.1" }]);
      const kubeconfig = api.writeKubeconfig(join(dir, "kubeconfig"));
      const read = (name: string) => () => readNodeInternalIPs(kubeconfig, name, 30_000);
      const k8s = (family: 4 | 6, name: string) =>
        detectAddress(
          family,
          "kubernetes-internal-ip",
          "IP_AUTODETECTION_METHOD",
          ns.name,
          read(name),
        );
      expect(await k8s(4, "adet-node")).toMatchObject({ cidr: "10.10.0.11/24", iface: "eth0" });
      expect(await k8s(6, "adet-node")).toMatchObject({ cidr: "fd00:10::11/64", iface: "eth0" });
      await expect(k8s(4, "elsewhere")).rejects.toThrow(
        "the Kubernetes Node's InternalIP 10.99.0.1 is on no host interface",
      );
      await expect(k8s(4, "missing")).rejects.toThrow(/Kubernetes Node missing not found/);
      await expect(
        detectAddress(4, "kubernetes-internal-ip", "IP_AUTODETECTION_METHOD", ns.name),
      ).rejects.toThrow(/give ocelot node run a kubeconfig/);
    } finally {
      await api.close();
    }
  });

  it("ocelot node run waits for etcd, then registers the can-reach address, creates the first pool and shows how it chose", async () => {
    const socket = join(dir, "bgp.sock");
    const env = {
      PATH: process.env.PATH,
      NODENAME: "adet-node",
      AS: "64512",
      DATASTORE_TYPE: "etcdv3",
      ETCD_ENDPOINTS: "http://127.0.0.1:23790",
      IP_AUTODETECTION_METHOD: "can-reach=10.10.0.1",
      CALICO_IPV4POOL_CIDR: "10.70.0.0/16",
      CALICO_IPV4POOL_BLOCK_SIZE: "27",
      OCELOT_STATUS_SOCKET: socket,
      OCELOT_ETCD_DIAL_TIMEOUT_MS: "1000",
    };
    const proc = spawn("ip", ["netns", "exec", ns.name, join(BIN, "ocelot"), "node", "run"], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    node = new NodeProcess(ns, proc);
    const waiting = () => node?.lines.filter((l) => l.msg === "Waiting for the datastore") ?? [];
    await waitFor("the node to say it waits for etcd (twice)", () => {
      if (proc.exitCode !== null) throw new Error(`exited ${proc.exitCode}: ${node?.log}`);
      return waiting().length >= 2;
    });
    expect(node.has("Node daemon running")).toBe(false);
    expect(waiting()[1]?.retryInMs).toBeGreaterThan(waiting()[0]?.retryInMs as number);

    // etcd appears (inside the namespace, on its own loopback).
    etcd = spawn(
      "ip",
      [
        ...["netns", "exec", ns.name, ETCD_BIN, "--data-dir", join(dir, "etcd")],
        ...[
          "--listen-client-urls",
          "http://127.0.0.1:23790",
          "--advertise-client-urls",
          "http://127.0.0.1:23790",
        ],
        ...[
          "--listen-peer-urls",
          "http://127.0.0.1:23791",
          "--initial-advertise-peer-urls",
          "http://127.0.0.1:23791",
        ],
        ...["--initial-cluster", "default=http://127.0.0.1:23791"],
      ],
      { stdio: "ignore" },
    );
    await waitFor("the node to start once etcd is up", () => {
      if (proc.exitCode !== null) throw new Error(`exited ${proc.exitCode}: ${node?.log}`);
      return node?.has("Node daemon running");
    });
    expect(node.has("Datastore reachable"), node.log).toBe(true);
    const chosen = node.lines.find((l) => l.msg === "Node addresses chosen");
    expect(chosen, node.log).toMatchObject({ ipv4: "10.10.0.11/24", ipv4Interface: "eth0" });
    expect(String(chosen?.ipv4Source)).toContain("can-reach=10.10.0.1");

    const ocelot = (...args: string[]) =>
      runSync("ip", [
        "netns",
        "exec",
        ns.name,
        join(BIN, "ocelot"),
        ...args,
        "--datastore",
        "etcd://127.0.0.1:23790",
      ]);
    const nodes = ocelot("get", "nodes", "-o", "json");
    expect(nodes.status, nodes.stderr).toBe(0);
    expect(JSON.parse(nodes.stdout)).toMatchObject({
      items: [
        {
          metadata: { name: "adet-node" },
          spec: { bgp: { ipv4Address: "10.10.0.11/24", asNumber: 64512 } },
        },
      ],
    });
    const pools = ocelot("get", "ippools", "-o", "json");
    expect(JSON.parse(pools.stdout)).toMatchObject({
      items: [
        {
          metadata: { name: "default-ipv4-ippool" },
          spec: { cidr: "10.70.0.0/16", blockSize: 27, natOutgoing: true },
        },
      ],
    });

    await waitFor(
      "the status socket",
      () => runSync(join(BIN, "ocelot"), ["status", "--json", "--socket", socket]).status === 0,
    );
    const status = runSync(join(BIN, "ocelot"), ["status", "--json", "--socket", socket]);
    expect(JSON.parse(status.stdout).node).toMatchObject({
      name: "adet-node",
      ipv4Address: "10.10.0.11/24",
      ipv4Source: expect.stringContaining("can-reach=10.10.0.1"),
    });
    const text = runSync(join(BIN, "ocelot"), ["status", "--socket", socket]);
    expect(text.stdout).toContain(
      "Node adet-node: IPv4 10.10.0.11/24 (autodetected by can-reach=10.10.0.1",
    );
    expect(await node.stop()).toBe(0);
  });
});
