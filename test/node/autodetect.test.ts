import { describe, expect, it } from "vitest";
import {
  AutodetectError,
  chooseAddress,
  type HostInterface,
  isGlobalUnicast,
  parseAutodetectMethod,
} from "../../src/node/autodetect.js";

/** In the kernel's order (by index): Calico tries them last first. */
const HOST: HostInterface[] = [
  { name: "lo", addresses: ["127.0.0.1/8", "::1/128"] },
  {
    name: "eth0",
    addresses: ["169.254.10.1/16", "192.168.1.10/24", "fe80::1/64", "fd00:1::10/64"],
  },
  { name: "eth1", addresses: ["10.0.0.11/24", "fd00:2::11/64"] },
  { name: "docker0", addresses: ["172.17.0.1/16"] },
  { name: "ocl0123456789a", addresses: ["169.254.1.1/32"] },
  { name: "dummy0", addresses: ["198.51.100.1/32"] },
];

const choose = (family: 4 | 6, text: string, ifaces = HOST, reach?: string) =>
  chooseAddress(
    family,
    text,
    parseAutodetectMethod(text, "IP_AUTODETECTION_METHOD"),
    ifaces,
    reach,
  );

describe("chooseAddress()", () => {
  it("first-found: the last interface first, default exclusions (docker, dummy, lo, ocl) left out", () => {
    expect(choose(4, "first-found")).toMatchObject({ cidr: "10.0.0.11/24", iface: "eth1" });
    expect(choose(6, "first-found")).toMatchObject({ cidr: "fd00:2::11/64", iface: "eth1" });
    expect(choose(4, "first-found").reason).toContain("first-found");
  });

  it("skips link-local and loopback addresses (not global unicast)", () => {
    const only = [
      { name: "eth0", addresses: ["169.254.10.1/16", "fe80::1/64", "192.168.1.10/24"] },
    ];
    expect(choose(4, "first-found", only).cidr).toBe("192.168.1.10/24");
    expect(() => choose(6, "first-found", only)).toThrow(AutodetectError);
  });

  it("interface=REGEX: matching interfaces only, no default exclusions, unanchored as Go's MatchString", () => {
    expect(choose(4, "interface=eth0")).toMatchObject({ cidr: "192.168.1.10/24", iface: "eth0" });
    expect(choose(4, "interface=ker")).toMatchObject({ iface: "docker0" });
    expect(choose(4, "interface=^nope$, ^eth0$")).toMatchObject({ iface: "eth0" });
    expect(() => choose(4, "interface=^wlan")).toThrow(/No IPv4 address found by interface=\^wlan/);
  });

  it("skip-interface=REGEX: first-found without the skipped ones", () => {
    expect(choose(4, "skip-interface=eth1")).toMatchObject({
      cidr: "192.168.1.10/24",
      iface: "eth0",
    });
  });

  it("cidr=CIDR[,CIDR]: the first address within one of them, on any interface", () => {
    expect(choose(4, "cidr=192.168.0.0/16")).toMatchObject({
      cidr: "192.168.1.10/24",
      iface: "eth0",
    });
    expect(choose(4, "cidr=172.16.0.0/12,203.0.113.0/24")).toMatchObject({ iface: "docker0" });
    expect(choose(6, "cidr=fd00:1::/64")).toMatchObject({ cidr: "fd00:1::10/64" });
  });

  it("can-reach=ADDR: the interface holding the kernel's source address, with its prefix length", () => {
    expect(choose(4, "can-reach=192.168.1.1", HOST, "192.168.1.10")).toMatchObject({
      cidr: "192.168.1.10/24",
      iface: "eth0",
      method: "can-reach=192.168.1.1",
    });
    expect(() => choose(4, "can-reach=192.0.2.1", HOST, undefined)).toThrow(
      /no IPv4 route to 192\.0\.2\.1/,
    );
    expect(() => choose(4, "can-reach=192.0.2.1", HOST, "203.0.113.9")).toThrow(
      /on no host interface/,
    );
  });

  it("kubernetes-internal-ip: the Node's first InternalIP of the family, with its interface's prefix length", () => {
    const k8s = (family: 4 | 6, ips: string[]) =>
      chooseAddress(
        family,
        "kubernetes-internal-ip",
        parseAutodetectMethod("kubernetes-internal-ip", "IP_AUTODETECTION_METHOD"),
        HOST,
        undefined,
        ips,
      );
    expect(k8s(4, ["fd00:2::11", "10.0.0.11", "192.168.1.10"])).toMatchObject({
      cidr: "10.0.0.11/24",
      iface: "eth1",
      reason: "kubernetes-internal-ip: the Kubernetes Node's InternalIP 10.0.0.11, on eth1",
    });
    expect(k8s(6, ["10.0.0.11", "fd00:2:0::11"])).toMatchObject({ cidr: "fd00:2::11/64" });
    // Calico: an InternalIP on no host interface gives no address.
    expect(() => k8s(4, ["203.0.113.9"])).toThrow(
      "No IPv4 address found by kubernetes-internal-ip: the Kubernetes Node's InternalIP 203.0.113.9 is on no host interface",
    );
    expect(() => k8s(6, ["10.0.0.11"])).toThrow(
      "the Kubernetes Node has no IPv6 InternalIP (its InternalIPs: 10.0.0.11)",
    );
  });
});

describe("parseAutodetectMethod()", () => {
  it("parses Calico's methods and names the variable on a bad one", () => {
    expect(parseAutodetectMethod("", "IP_AUTODETECTION_METHOD")).toEqual({ kind: "first-found" });
    expect(parseAutodetectMethod("cidr=10.0.0.0/8, 192.168.0.0/16", "X")).toEqual({
      kind: "cidr",
      cidrs: ["10.0.0.0/8", "192.168.0.0/16"],
    });
    expect(parseAutodetectMethod("can-reach=www.example.com", "X")).toEqual({
      kind: "can-reach",
      destination: "www.example.com",
    });
    expect(() => parseAutodetectMethod("interface=", "IP6_AUTODETECTION_METHOD")).toThrow(
      'IP6_AUTODETECTION_METHOD: "interface=" has no value',
    );
    expect(() => parseAutodetectMethod("can-reach=a b", "X")).toThrow("neither an IP address");
  });

  it("isGlobalUnicast() follows Go's net.IP.IsGlobalUnicast", () => {
    for (const a of ["10.0.0.1", "192.168.1.1", "8.8.8.8"])
      expect(isGlobalUnicast(4, a)).toBe(true);
    for (const a of ["0.0.0.0", "127.0.0.1", "169.254.1.1", "224.0.0.1", "255.255.255.255"])
      expect(isGlobalUnicast(4, a), a).toBe(false);
    for (const a of ["fd00::1", "2001:db8::1"]) expect(isGlobalUnicast(6, a)).toBe(true);
    for (const a of ["::", "::1", "fe80::1", "ff02::1"])
      expect(isGlobalUnicast(6, a), a).toBe(false);
    expect(isGlobalUnicast(6, "10.0.0.1")).toBe(false);
  });
});
