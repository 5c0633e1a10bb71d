import { describe, expect, it } from "vitest";
import {
  NODE_SETTINGS,
  type NodeConfigInputs,
  parseNodeConfigFile,
  resolveNodeSettings,
} from "../../src/node/config.js";

const resolve = (p: Partial<NodeConfigInputs>) =>
  resolveNodeSettings({ flags: {}, env: {}, file: {}, hostname: () => "Host-1", ...p });
const fails = (p: Partial<NodeConfigInputs>) => {
  try {
    resolve(p);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error("expected an error");
};

describe("resolveNodeSettings()", () => {
  it("has Calico's defaults: host name lowercased, stored-or-autodetected IPv4, first-found, BGP, no pool", () => {
    const { settings, sources } = resolve({});
    expect(settings).toEqual({
      nodename: "host-1",
      ip: { mode: "keep" },
      ip6: { mode: "keep" },
      ipAutodetectionMethod: "first-found",
      ip6AutodetectionMethod: "first-found",
      datastoreType: "etcdv3",
      networkingBackend: "bgp",
      noDefaultPools: false,
      clusterCidr: [],
      mtuFile: "/var/lib/ocelot/mtu",
      logLevel: "info",
      resyncIntervalMs: 60_000,
      nodeStatusIntervalMs: 10_000,
      mrtRotateBytes: 64 * 1024 * 1024,
      mrtRotateMs: 15 * 60_000,
      bmpStatsIntervalMs: 60_000,
      kubeControllersLeaseTtlMs: 15_000,
      bmpAdjRibOut: false,
      bgpCheckLink: true,
      cniHandoff: true,
      policyDispatch: "tree",
    });
    expect(sources).toEqual({});
  });

  it("takes a flag over the variable over the config file", () => {
    const file = { nodename: "from-file", ip: "10.0.0.3/24", as: 64503 };
    const env = { NODENAME: "from-env", IP: "10.0.0.2/24" };
    const flags = { nodename: "from-flag" };
    const { settings, sources } = resolve({ flags, env, file });
    expect(settings.nodename).toBe("from-flag");
    expect(settings.ip).toEqual({ mode: "address", cidr: "10.0.0.2/24" });
    expect(settings.as).toBe(64503);
    expect(sources).toMatchObject({ nodename: "--nodename", ip: "IP", as: "as (config file)" });
    expect(resolve({ env: { HOSTNAME: "pod-host" } }).settings.nodename).toBe("pod-host");
    expect(resolve({ env: { HOSTNAME: "h", NODENAME: "n" } }).settings.nodename).toBe("n");
  });

  it("an explicit address is kept as given; autodetect and none are modes", () => {
    expect(resolve({ env: { IP: "autodetect", IP6: "none" } }).settings).toMatchObject({
      ip: { mode: "autodetect" },
      ip6: { mode: "none" },
    });
    expect(resolve({ env: { IP6: "fd00::11/64" } }).settings.ip6).toEqual({
      mode: "address",
      cidr: "fd00::11/64",
    });
  });

  it("turns ETCD_ENDPOINTS into an etcd URL (https: etcds) with the TLS files; OCELOT_DATASTORE wins", () => {
    const env = {
      ETCD_ENDPOINTS: "https://10.0.0.1:2379, https://10.0.0.2:2379",
      ETCD_CA_CERT_FILE: "/etc/ca.pem",
      ETCD_CERT_FILE: "/etc/cert.pem",
      ETCD_KEY_FILE: "/etc/key.pem",
      DATASTORE_TYPE: "etcdv3",
    };
    expect(resolve({ env }).settings).toMatchObject({
      datastore: "etcds://10.0.0.1:2379,10.0.0.2:2379",
      etcdCa: "/etc/ca.pem",
      etcdCert: "/etc/cert.pem",
      etcdKey: "/etc/key.pem",
    });
    expect(resolve({ env: { ETCD_ENDPOINTS: "http://e1:2379" } }).settings.datastore).toBe(
      "etcd://e1:2379",
    );
    expect(resolve({ file: { etcdEndpoints: ["e1:2379", "e2:2379"] } }).settings.datastore).toBe(
      "etcd://e1:2379,e2:2379",
    );
    expect(
      resolve({ env: { ...env, OCELOT_DATASTORE: "file:/var/lib/ocelot/store.db" } }).settings
        .datastore,
    ).toBe("file:/var/lib/ocelot/store.db");
  });

  it("refuses DATASTORE_TYPE=kubernetes saying Ocelot needs etcd or the embedded store", () => {
    const msg = fails({ env: { DATASTORE_TYPE: "kubernetes" } });
    expect(msg).toMatch(/^DATASTORE_TYPE: "kubernetes" is not supported/);
    expect(msg).toContain("etcd");
    expect(msg).toContain("embedded store");
  });

  it("builds the first pools from CALICO_IPV4POOL_* / CALICO_IPV6POOL_* with Calico's defaults", () => {
    expect(
      resolve({
        env: { CALICO_IPV4POOL_CIDR: "10.244.0.0/16", CALICO_IPV6POOL_CIDR: "fd00:10::/48" },
      }).settings,
    ).toMatchObject({
      ipv4Pool: { cidr: "10.244.0.0/16", blockSize: 26, natOutgoing: true },
      ipv6Pool: { cidr: "fd00:10::/48", blockSize: 122, natOutgoing: false },
    });
    expect(
      resolve({
        env: {
          CALICO_IPV4POOL_CIDR: "10.244.0.0/16",
          CALICO_IPV4POOL_BLOCK_SIZE: "24",
          CALICO_IPV4POOL_NAT_OUTGOING: "false",
          NO_DEFAULT_POOLS: "true",
        },
      }).settings,
    ).toMatchObject({
      ipv4Pool: { cidr: "10.244.0.0/16", blockSize: 24, natOutgoing: false },
      noDefaultPools: true,
    });
  });

  it("takes bird as bgp and --no-bgp's none", () => {
    expect(resolve({ env: { CALICO_NETWORKING_BACKEND: "bird" } }).settings.networkingBackend).toBe(
      "bgp",
    );
    expect(resolve({ flags: { networkingBackend: "none" } }).settings.networkingBackend).toBe(
      "none",
    );
  });

  it("takes vxlan (no speaker) and the MTU override and file from the environment", () => {
    const { settings } = resolve({
      env: { CALICO_NETWORKING_BACKEND: "vxlan", CNI_MTU: "1400", OCELOT_MTU_FILE: "/run/m" },
    });
    expect(settings).toMatchObject({ networkingBackend: "vxlan", mtu: 1400, mtuFile: "/run/m" });
  });

  it.each([
    [{ IP: "10.0.0.300/24" }, 'IP: "10.0.0.300/24" is not an IPv4 address'],
    [{ IP: "fd00::1/64" }, 'IP: "fd00::1/64" is not an IPv4 address'],
    [{ IP6: "10.0.0.1/24" }, 'IP6: "10.0.0.1/24" is not an IPv6 address'],
    [{ AS: "23456" }, 'AS: "23456" is not an AS number'],
    [{ AS: "abc" }, 'AS: "abc" is not an AS number'],
    [{ DATASTORE_TYPE: "consul" }, 'DATASTORE_TYPE: "consul" is not a datastore type'],
    [{ ETCD_ENDPOINTS: "http://a:2379,https://b:2379" }, "ETCD_ENDPOINTS: "],
    [{ ETCD_ENDPOINTS: "ftp://a:2379" }, "ETCD_ENDPOINTS: "],
    [{ OCELOT_DATASTORE: "mysql://x" }, "OCELOT_DATASTORE: "],
    [
      { IP_AUTODETECTION_METHOD: "first" },
      'IP_AUTODETECTION_METHOD: "first" is not an autodetection method',
    ],
    [
      { IP_AUTODETECTION_METHOD: "interface=(" },
      'IP_AUTODETECTION_METHOD: "interface=(" has a bad regular expression',
    ],
    [
      { IP6_AUTODETECTION_METHOD: "cidr=fd00::/300" },
      'IP6_AUTODETECTION_METHOD: "cidr=fd00::/300" has "fd00::/300", which is not a CIDR',
    ],
    [
      { IP_AUTODETECTION_METHOD: "kubernetes-internal-ip" },
      `IP_AUTODETECTION_METHOD: "kubernetes-internal-ip" reads the Kubernetes Node's InternalIP: give a kubeconfig`,
    ],
    [
      { CALICO_NETWORKING_BACKEND: "ipip" },
      'CALICO_NETWORKING_BACKEND: "ipip" is not a networking backend (bgp, vxlan, none)',
    ],
    [
      { CALICO_IPV4POOL_CIDR: "fd00::/48" },
      'CALICO_IPV4POOL_CIDR: "fd00::/48" is not an IPv4 CIDR',
    ],
    [
      { CALICO_IPV4POOL_CIDR: "10.0.0.0/8", CALICO_IPV4POOL_BLOCK_SIZE: "33" },
      'CALICO_IPV4POOL_BLOCK_SIZE: "33" is not an integer from 20 to 32',
    ],
    [
      { CALICO_IPV4POOL_NAT_OUTGOING: "yes" },
      'CALICO_IPV4POOL_NAT_OUTGOING: "yes" is not true or false',
    ],
    [{ NODENAME: "Bad_Name" }, 'NODENAME: "Bad_Name" is not a node name'],
    [{ OCELOT_LOG_LEVEL: "loud" }, 'OCELOT_LOG_LEVEL: "loud" is not one of'],
    [{ OCELOT_POLICY_DISPATCH: "sets" }, 'OCELOT_POLICY_DISPATCH: "sets" is not one of tree, set'],
    [{ OCELOT_RESYNC_INTERVAL: "soon" }, 'OCELOT_RESYNC_INTERVAL: "soon" is not a duration'],
    [{ OCELOT_BMP_STATION: "10.0.0.9" }, 'OCELOT_BMP_STATION: "10.0.0.9" is not host:port'],
    [{ OCELOT_BMP_ADJ_RIB_OUT: "yes" }, 'OCELOT_BMP_ADJ_RIB_OUT: "yes" is not true or false'],
    [
      { CALICO_ROUTER_ID: "fd00::1" },
      'CALICO_ROUTER_ID: "fd00::1" is not an IPv4 address or "hash"',
    ],
    [
      { CALICO_ADVERTISE_CLUSTER_IPS: "10.96.0.0/33" },
      'CALICO_ADVERTISE_CLUSTER_IPS: "10.96.0.0/33" is "10.96.0.0/33", which is not a CIDR',
    ],
    [
      { OCELOT_CLUSTER_CIDRS: "10.0.0.0/8,nope" },
      'OCELOT_CLUSTER_CIDRS: "10.0.0.0/8,nope" has "nope"',
    ],
  ])("refuses %j naming the variable", (env, text) => {
    expect(fails({ env })).toContain(text);
  });

  it("names the flag or the config file key when the bad value came from there", () => {
    expect(fails({ flags: { ip: "x" } })).toMatch(/^--ip: "x"/);
    expect(fails({ file: { ip: "x" } })).toMatch(/^ip \(config file\): "x"/);
  });
});

describe("parseNodeConfigFile()", () => {
  it("reads YAML with the flags' camelCase keys and refuses an unknown key by name", () => {
    expect(parseNodeConfigFile("nodename: n1\nipv4PoolCidr: 10.244.0.0/16\n", "/c.yaml")).toEqual({
      nodename: "n1",
      ipv4PoolCidr: "10.244.0.0/16",
    });
    expect(parseNodeConfigFile("", "/c.yaml")).toEqual({});
    expect(() => parseNodeConfigFile("nodeName: n1\n", "/c.yaml")).toThrow(
      'Config file /c.yaml: unknown key "nodeName"',
    );
    expect(() => parseNodeConfigFile("- a\n", "/c.yaml")).toThrow("not a map");
  });

  it("every setting has a variable or a flag, and a file key", () => {
    for (const d of NODE_SETTINGS) {
      expect(d.flag !== "" || d.envs.length > 0, d.attr).toBe(true);
      expect(d.file).toMatch(/^[a-z][A-Za-z0-9]*$/);
    }
  });
});

describe("config/node.yaml", () => {
  it("is a valid config file for ocelot node run", async () => {
    const { readFileSync } = await import("node:fs");
    const path = new URL("../../config/node.yaml", import.meta.url).pathname;
    const file = parseNodeConfigFile(readFileSync(path, "utf8"), path);
    const { settings } = resolve({ file });
    expect(settings).toMatchObject({
      nodename: "node1",
      ip: { mode: "autodetect" },
      ipAutodetectionMethod: "can-reach=10.0.0.1",
      datastore: "etcd://10.0.0.100:2379",
      ipv4Pool: { cidr: "10.244.0.0/16", blockSize: 26, natOutgoing: true },
    });
  });
});

describe("README", () => {
  it("documents every setting's flag, variable and config file key", async () => {
    const { readFileSync } = await import("node:fs");
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    for (const d of NODE_SETTINGS) {
      for (const name of [...d.envs, d.file, ...(d.flag ? [d.flag.split(" ")[0] as string] : [])])
        expect(readme, name).toContain(`\`${name}\``);
    }
  });
});
