// The pure part of the `ocelot-cni` main plugin: network configuration errors, pod identity,
// host interface and WorkloadEndpoint names (Calico's escaping), the resource it writes, the
// ADD result per CNI version, and CHECK's comparison.
import { describe, expect, it } from "vitest";
import { workloadEndpointSchema } from "../../src/api/node.js";
import { CniError } from "../../src/cni/ipam_plugin.js";
import {
  checkProblems,
  escapeDashes,
  formatAddResult,
  hostIfaceName,
  type Observed,
  parseNetConf,
  podIdentity,
  podMtu,
  resultAddresses,
  workloadEndpoint,
  workloadEndpointName,
} from "../../src/cni/plugin.js";
import { workloadIfaceName } from "../../src/lib/pod_wiring.js";

const base = {
  cniVersion: "1.0.0",
  name: "k8s-pod-network",
  type: "ocelot-cni",
  datastore: "file:/tmp/x.db",
  nodename: "node-1",
  ipam: { type: "ocelot-ipam" },
};
const parse = (conf: unknown, env: NodeJS.ProcessEnv = {}) =>
  parseNetConf(typeof conf === "string" ? conf : JSON.stringify(conf), env, () => "host-a");

function cniError(fn: () => unknown): CniError {
  try {
    fn();
  } catch (err) {
    if (err instanceof CniError) return err;
    throw err;
  }
  throw new Error("expected a CniError");
}

describe("parseNetConf()", () => {
  it("reads a minimal configuration with defaults (mtu 1500, nodename from the host)", () => {
    const { nodename: _n, ...noNode } = base;
    expect(parse(noNode)).toEqual({
      cniVersion: "1.0.0",
      name: "k8s-pod-network",
      datastore: "file:/tmp/x.db",
      nodename: "host-a",
      mtu: 1500,
      mtuFile: "/var/lib/ocelot/mtu",
      ipamType: "ocelot-ipam",
      prevResult: undefined,
    });
    expect(parse({ ...base, mtu: 9000 }).mtu).toBe(9000);
    expect(parse({ ...base, mtu: 9000 }).mtuFile).toBeUndefined();
  });

  it("podMtu(): the config's mtu wins; without one, the node daemon's MTU file, else 1500", () => {
    const auto = parse({ ...base, mtu_file: "/run/x/mtu" });
    expect(auto.mtuFile).toBe("/run/x/mtu");
    expect(podMtu(auto, "1430\n")).toBe(1430);
    expect(podMtu(auto, undefined)).toBe(1500);
    expect(podMtu(auto, "garbage")).toBe(1500);
    expect(podMtu(parse({ ...base, mtu: 9000 }), "1430")).toBe(9000);
    expect(() => parse({ ...base, mtu_file: "relative" })).toThrow(
      /"mtu_file" must be an absolute path/,
    );
  });

  it("takes the datastore from OCELOT_DATASTORE when the configuration has none", () => {
    const { datastore: _d, ...rest } = base;
    expect(parse(rest, { OCELOT_DATASTORE: "etcd://e:2379" }).datastore).toBe("etcd://e:2379");
  });

  it.each([
    [{ ...base, log_level: "verbose" }, 7, 'Field "log_level" must be one of none, error'],
    [{ ...base, log_file_path: "cni.log" }, 7, 'Field "log_file_path" must be an absolute path'],
    [{ ...base, log_format: "json" }, 7, '"log_format" is not supported'],
    [{ ...base, ipam: { type: "ocelot-ipam", subnet: "10.0.0.0/8" } }, 7, '"ipam.subnet"'],
    [{ ...base, type: "calico" }, 7, 'Field "type" must be "ocelot-cni"'],
    [{ ...base, mtu: 10 }, 7, 'Field "mtu" must be an integer'],
    [{ ...base, mtu: "1500" }, 7, 'Field "mtu"'],
    [{ ...base, nodename: "" }, 7, 'Field "nodename"'],
    [{ ...base, name: 3 }, 7, 'Field "name"'],
    [{ ...base, ipam: undefined }, 7, 'Field "ipam" is missing'],
    [{ ...base, ipam: { type: "../evil" } }, 7, 'Field "ipam.type"'],
    [{ ...base, datastore: undefined }, 7, 'Field "datastore" is missing'],
    [{ ...base, cniVersion: "0.2.0" }, 1, 'CNI version "0.2.0" is not supported'],
    [{ ...base, cniVersion: undefined }, 7, 'Field "cniVersion" is missing'],
    [{ ...base, feature_control: [] }, 7, 'Field "feature_control" must be an object'],
    [{ ...base, feature_control: { ip_addrs_no_ipam: "yes" } }, 7, "must be true or false"],
    [
      { ...base, feature_control: { allow_ip_forwarding: true } },
      7,
      '"feature_control.allow_ip_forwarding" is not supported',
    ],
    ["{not json", 6, "not JSON"],
    ["[1]", 6, "not a JSON object"],
  ])("refuses %j with code %i naming the problem", (conf, code, text) => {
    const err = cniError(() => parse(conf));
    expect(err.code).toBe(code);
    expect(err.message).toContain(text);
  });

  it("accepts the spec's well-known keys a runtime may add, and other IPAM plugins' keys", () => {
    const conf = parse({
      ...base,
      dns: {},
      args: {},
      runtimeConfig: {},
      capabilities: {},
      ipam: { type: "host-local", subnet: "10.0.0.0/24" },
    });
    expect(conf.ipamType).toBe("host-local");
  });

  it("feature_control.ip_addrs_no_ipam (Calico's switch for the ipAddrsNoIpam annotation)", () => {
    expect(parse({ ...base, feature_control: { ip_addrs_no_ipam: true } }).ipAddrsNoIpam).toBe(
      true,
    );
    expect(
      parse({ ...base, feature_control: { ip_addrs_no_ipam: false } }).ipAddrsNoIpam,
    ).toBeUndefined();
    expect(parse(base).ipAddrsNoIpam).toBeUndefined();
  });
});

describe("podIdentity() and names", () => {
  const k8sEnv = {
    CNI_CONTAINERID: "abc123",
    CNI_IFNAME: "eth0",
    CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=core-dns-5d",
  };

  it("reads Kubernetes pods from CNI_ARGS, plain containers by id", () => {
    expect(podIdentity(k8sEnv)).toEqual({
      orchestrator: "k8s",
      namespace: "kube-system",
      pod: "core-dns-5d",
      containerId: "abc123",
      endpoint: "eth0",
    });
    expect(podIdentity({ CNI_CONTAINERID: "abc123", CNI_IFNAME: "net1" })).toEqual({
      orchestrator: "cni",
      namespace: "default",
      containerId: "abc123",
      endpoint: "net1",
    });
  });

  it("refuses a CNI_IFNAME that is no interface name (code 4)", () => {
    for (const bad of ["", "a/b", "sixteen-chars-xx"]) {
      expect(cniError(() => podIdentity({ CNI_IFNAME: bad })).code).toBe(4);
    }
  });

  it("names the host side by namespace/pod, or by container id", () => {
    expect(hostIfaceName(podIdentity(k8sEnv))).toBe(workloadIfaceName("kube-system/core-dns-5d"));
    const plain = podIdentity({ CNI_CONTAINERID: "abc123", CNI_IFNAME: "eth0" });
    expect(hostIfaceName(plain)).toBe(workloadIfaceName("abc123"));
    expect(hostIfaceName(plain)).toMatch(/^ocl[0-9a-f]{11}$/);
  });

  it("escapes '-' as '--' in each part of the WorkloadEndpoint name, as Calico does", () => {
    expect(escapeDashes("a-b--c")).toBe("a--b----c");
    expect(workloadEndpointName("node-1", podIdentity(k8sEnv))).toBe(
      "node--1-k8s-core--dns--5d-eth0",
    );
    expect(
      workloadEndpointName("n1", podIdentity({ CNI_CONTAINERID: "c-9", CNI_IFNAME: "eth0" })),
    ).toBe("n1-cni-c--9-eth0");
    // Two pods whose names differ only in where a dash sits do not collide.
    const a = workloadEndpointName("n", { ...podIdentity(k8sEnv), pod: "a-k8s-b" });
    const b = workloadEndpointName("n-k8s-a", { ...podIdentity(k8sEnv), pod: "b" });
    expect(a).not.toBe(b);
  });

  it("builds a WorkloadEndpoint that passes the resource schema", () => {
    const id = podIdentity(k8sEnv);
    const wep = workloadEndpoint({ nodename: "node-1", name: "k8s-pod-network" }, id, {
      hostIface: hostIfaceName(id),
      podMac: "0a:58:0a:f4:01:02",
      addresses: [
        { family: 4, address: "10.244.1.2" },
        { family: 6, address: "fd00::2" },
      ],
    });
    expect(wep.metadata).toMatchObject({
      name: "node--1-k8s-core--dns--5d-eth0",
      namespace: "kube-system",
    });
    expect(wep.spec).toEqual({
      orchestrator: "k8s",
      node: "node-1",
      pod: "core-dns-5d",
      containerID: "abc123",
      endpoint: "eth0",
      interfaceName: hostIfaceName(id),
      mac: "0a:58:0a:f4:01:02",
      ipNetworks: ["10.244.1.2/32", "fd00::2/128"],
      profiles: ["kns.kube-system"],
    });
    expect(workloadEndpointSchema.safeParse(wep).success).toBe(true);
    // With the pod's service account (read from Kubernetes): its ksa Profile too.
    const withSa = workloadEndpoint(
      { nodename: "node-1", name: "k8s-pod-network" },
      id,
      { hostIface: hostIfaceName(id), podMac: "0a:58:0a:f4:01:02", addresses: [] },
      { labels: {}, namespaceLabels: {}, serviceAccount: "coredns" },
    );
    expect(withSa.spec.profiles).toEqual(["kns.kube-system", "ksa.kube-system.coredns"]);
    const plain = workloadEndpoint(
      { nodename: "n1", name: "net" },
      podIdentity({ CNI_CONTAINERID: "c1", CNI_IFNAME: "eth0" }),
      { hostIface: "ocl0", podMac: "0a:00:00:00:00:01", addresses: [] },
    );
    expect(plain.spec).toMatchObject({ orchestrator: "cni", workload: "c1", profiles: ["net"] });
    expect(plain.metadata.namespace).toBe("default");
  });
});

describe("results", () => {
  const v4 = { family: 4 as const, address: "10.0.0.5" };
  const wiring = {
    hostIface: "ocl0123456789a",
    podIface: "eth0",
    podMac: "0a:00:00:00:00:01",
    sandbox: "/run/netns/p1",
    addresses: [v4, { family: 6 as const, address: "fd00::5" }],
    gateway6: "fe80::ecee:eeff:feee:eeee",
  };

  it("1.0.0: interfaces host and pod (with sandbox), ips pointing at the pod side, no version", () => {
    expect(formatAddResult("1.0.0", wiring)).toEqual({
      cniVersion: "1.0.0",
      interfaces: [
        { name: "ocl0123456789a", mac: "ee:ee:ee:ee:ee:ee" },
        { name: "eth0", mac: "0a:00:00:00:00:01", sandbox: "/run/netns/p1" },
      ],
      ips: [
        { address: "10.0.0.5/32", interface: 1 },
        { address: "fd00::5/128", interface: 1 },
      ],
      routes: [
        { dst: "0.0.0.0/0", gw: "169.254.1.1" },
        { dst: "::/0", gw: "fe80::ecee:eeff:feee:eeee" },
      ],
      dns: {},
    });
  });

  it("0.4.0 (and 0.3.x): each ip carries its version", () => {
    for (const v of ["0.4.0", "0.3.1"]) {
      const r = formatAddResult(v, { ...wiring, addresses: [v4] });
      expect(r).toMatchObject({
        cniVersion: v,
        ips: [{ version: "4", address: "10.0.0.5/32", interface: 1 }],
        routes: [{ dst: "0.0.0.0/0", gw: "169.254.1.1" }],
      });
    }
  });

  it("resultAddresses() reads either version's ips, canonical, and refuses garbage", () => {
    expect(
      resultAddresses(
        { ips: [{ version: "6", address: "FD00:0::5/128" }, { address: "10.0.0.5/32" }] },
        "r",
      ),
    ).toEqual([
      { family: 6, address: "fd00::5" },
      { family: 4, address: "10.0.0.5" },
    ]);
    expect(cniError(() => resultAddresses({ ips: [] }, "prevResult")).message).toContain(
      'prevResult has no "ips"',
    );
    expect(cniError(() => resultAddresses({ ips: [{ address: "x" }] }, "r")).code).toBe(6);
    expect(
      cniError(() =>
        resultAddresses({ ips: [{ address: "10.0.0.1" }, { address: "10.0.0.2" }] }, "r"),
      ).message,
    ).toContain("more than one IPv4");
  });
});

describe("checkProblems()", () => {
  const id = podIdentity({
    CNI_CONTAINERID: "c1",
    CNI_IFNAME: "eth0",
    CNI_ARGS: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1",
  });
  const host = hostIfaceName(id);
  const addr = [{ family: 4 as const, address: "10.0.0.5" }];
  const wep = workloadEndpoint({ nodename: "n1", name: "net" }, id, {
    hostIface: host,
    podMac: "0a:00:00:00:00:01",
    addresses: addr,
  });
  const good: Observed = {
    hostLink: { kind: "veth", mac: "ee:ee:ee:ee:ee:ee", up: true },
    podLink: { kind: "veth" },
    podAddresses: ["10.0.0.5/32"],
    hostRoutes: ["10.0.0.5/32"],
    wep,
  };

  it("finds nothing wrong in what ADD built", () => {
    expect(checkProblems({ nodename: "n1" }, id, host, addr, good)).toEqual([]);
  });

  it("names each difference", () => {
    const conf = { nodename: "n1" };
    expect(checkProblems(conf, id, host, addr, { ...good, podAddresses: [] })).toEqual([
      "address 10.0.0.5/32 is missing from pod interface eth0",
    ]);
    expect(checkProblems(conf, id, host, addr, { ...good, hostRoutes: [] })).toEqual([
      `host route 10.0.0.5/32 dev ${host} is missing`,
    ]);
    expect(checkProblems(conf, id, host, addr, { ...good, hostLink: undefined })).toEqual([
      `host interface ${host} is missing`,
    ]);
    expect(checkProblems(conf, id, host, addr, { ...good, wep: undefined })).toEqual([
      "WorkloadEndpoint default/n1-k8s-p1-eth0 is missing",
    ]);
    const other = { ...wep, spec: { ...wep.spec, containerID: "c2", ipNetworks: [] } };
    expect(checkProblems(conf, id, host, addr, { ...good, wep: other })).toEqual([
      'WorkloadEndpoint default/n1-k8s-p1-eth0 belongs to container "c2"',
      "WorkloadEndpoint default/n1-k8s-p1-eth0 holds no address, not 10.0.0.5/32",
    ]);
  });
});
