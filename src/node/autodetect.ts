// Node address autodetection as calico-node does it (IP_AUTODETECTION_METHOD and
// IP6_AUTODETECTION_METHOD): `first-found`, `interface=REGEX[,REGEX]`,
// `skip-interface=REGEX[,REGEX]`, `can-reach=DEST`, `cidr=CIDR[,CIDR]`,
// `kubernetes-internal-ip`. Pure: the host's interfaces and addresses (and, for can-reach, the
// source address the kernel picked; for kubernetes-internal-ip, the Kubernetes Node's InternalIP
// addresses) in, the chosen "address/len", its interface and the reason out. Not: reading the
// kernel (autodetect_kernel.ts) or the API server (src/k8s/pod_reader.ts).
//
// Calico's rules kept here: interfaces are tried in reverse of the kernel's order (its
// GetInterfaces loops backwards "to maintain behavior with older versions"); an interface
// regex matches anywhere in the name (Go's MatchString; anchor it with ^ and $ yourself);
// first-found and skip-interface leave out the default exclusions, interface= and cidr= do
// not; an address qualifies when it is global unicast (not loopback, link-local, multicast
// or unspecified); can-reach takes the kernel's source address for a route to DEST and the
// prefix length of the interface holding it; kubernetes-internal-ip takes the Node's first
// InternalIP of the family and the prefix length of the interface holding it (on none: no
// address, as calico-node fails then).
import { isIP } from "node:net";
import { cidrContains, formatAddress, parseAddress, parseCidr } from "../lib/ip.js";

/** calico-node's default exclusions for first-found and skip-interface, and Ocelot's own. */
export const DEFAULT_INTERFACES_TO_EXCLUDE: readonly string[] = [
  "^docker.*",
  "^cbr.*",
  "^dummy.*",
  "^virbr.*",
  "^lxcbr.*",
  "^veth.*",
  "^lo",
  "^cali.*",
  "^tunl.*",
  "^flannel.*",
  "^kube-ipvs.*",
  "^cni.*",
  "^vxlan\\.calico.*",
  "^vxlan-v6\\.calico.*",
  "^wireguard\\.cali.*",
  "^wg-v6\\.cali.*",
  "^nodelocaldns.*",
  // Ocelot's pod interfaces and tunnel devices.
  "^ocl.*",
  "^vxlan\\.ocelot.*",
  "^vxlan-v6\\.ocelot.*",
  "^podman.*",
];

export type AutodetectMethod =
  | { kind: "first-found" }
  | { kind: "interface"; regexes: RegExp[] }
  | { kind: "skip-interface"; regexes: RegExp[] }
  | { kind: "can-reach"; destination: string }
  | { kind: "cidr"; cidrs: string[] }
  | { kind: "kubernetes-internal-ip" };

/** One interface as the kernel lists it (in its order), with its addresses "addr/len". */
export interface HostInterface {
  name: string;
  addresses: string[];
}

export interface Detected {
  /** "address/len" as on the interface. */
  cidr: string;
  iface: string;
  /** The method as written, e.g. "can-reach=10.0.0.1". */
  method: string;
  /** In words, for the log and `ocelot status`. */
  reason: string;
}

export class AutodetectError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AutodetectError";
  }
}

const splitList = (text: string) => text.split(/\s*,\s*/).filter((s) => s !== "");

/** Parses a method; a bad one throws an AutodetectError naming `variable`. */
export function parseAutodetectMethod(text: string, variable: string): AutodetectMethod {
  const t = text.trim();
  const bad = (why: string) =>
    new AutodetectError(
      `${variable}: "${text}" ${why} (first-found, interface=REGEX, skip-interface=REGEX, can-reach=ADDRESS, cidr=CIDR, kubernetes-internal-ip)`,
    );
  if (t === "" || t === "first-found") return { kind: "first-found" };
  // calico-node takes any method text starting with it.
  if (t.startsWith("kubernetes-internal-ip")) return { kind: "kubernetes-internal-ip" };
  const eq = t.indexOf("=");
  if (eq < 0) throw bad("is not an autodetection method");
  const name = t.slice(0, eq);
  const arg = t.slice(eq + 1);
  if (arg.trim() === "") throw bad("has no value after '='");
  switch (name) {
    case "interface":
    case "skip-interface": {
      const regexes = splitList(arg).map((r) => {
        try {
          return new RegExp(r);
        } catch (err) {
          throw bad(`has a bad regular expression "${r}": ${(err as Error).message}`);
        }
      });
      return { kind: name, regexes };
    }
    case "can-reach": {
      const destination = arg.trim();
      if (isIP(destination) === 0 && !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(destination))
        throw bad(`names "${destination}", which is neither an IP address nor a host name`);
      return { kind: "can-reach", destination };
    }
    case "cidr": {
      const cidrs = splitList(arg).map((c) => {
        try {
          parseCidr(c, false);
        } catch {
          throw bad(`has "${c}", which is not a CIDR`);
        }
        return c;
      });
      return { kind: "cidr", cidrs };
    }
    default:
      throw bad(`is not an autodetection method`);
  }
}

/** Go's IP.IsGlobalUnicast: not unspecified, loopback, link-local, multicast or broadcast. */
export function isGlobalUnicast(family: 4 | 6, address: string): boolean {
  const a = parseAddress(address);
  if (a.family !== family) return false;
  const v = a.value;
  if (family === 4) {
    const first = Number(v >> 24n);
    if (v === 0n || v === 0xffffffffn) return false;
    if (first === 127 || first >= 224) return false;
    if (v >> 16n === 0xa9fen) return false; // 169.254.0.0/16
    return true;
  }
  if (v === 0n || v === 1n) return false;
  const top16 = Number(v >> 112n);
  if ((top16 & 0xffc0) === 0xfe80) return false; // fe80::/10
  if (top16 >> 8 === 0xff) return false; // ff00::/8
  return true;
}

function familyOf(cidr: string): 4 | 6 | 0 {
  const v = isIP(cidr.split("/")[0] ?? "");
  return v === 4 || v === 6 ? v : 0;
}

function matchesAny(regexes: readonly RegExp[], name: string): boolean {
  return regexes.some((r) => r.test(name));
}

/** The interfaces Calico's GetInterfaces would keep, in the order it tries them (reversed). */
function filtered(
  ifaces: readonly HostInterface[],
  include: readonly RegExp[],
  exclude: readonly RegExp[],
): HostInterface[] {
  return [...ifaces]
    .reverse()
    .filter(
      (i) => (include.length === 0 || matchesAny(include, i.name)) && !matchesAny(exclude, i.name),
    );
}

const DEFAULT_EXCLUDES = DEFAULT_INTERFACES_TO_EXCLUDE.map((r) => new RegExp(r));

function firstGlobal(
  family: 4 | 6,
  ifaces: HostInterface[],
  cidrs: string[] = [],
): { iface: string; cidr: string } | undefined {
  const nets = cidrs.map((c) => parseCidr(c, false));
  for (const i of ifaces) {
    for (const c of i.addresses) {
      if (familyOf(c) !== family) continue;
      const ip = c.split("/")[0] as string;
      if (!isGlobalUnicast(family, ip)) continue;
      const a = parseAddress(ip);
      if (nets.length > 0 && !nets.some((n) => cidrContains(n, a.family, a.value))) continue;
      return { iface: i.name, cidr: c };
    }
  }
  return undefined;
}

/**
 * Chooses the node's address of one family by the method. `reachSource` is the source address
 * the kernel picked for a route to a can-reach destination (undefined: no route). Throws an
 * AutodetectError saying what was looked at when nothing qualifies.
 */
export function chooseAddress(
  family: 4 | 6,
  methodText: string,
  method: AutodetectMethod,
  ifaces: readonly HostInterface[],
  reachSource?: string,
  /** The Kubernetes Node's InternalIP addresses, in its order (kubernetes-internal-ip). */
  internalIPs?: readonly string[],
): Detected {
  const none = (why: string) =>
    new AutodetectError(`No IPv${family} address found by ${methodText || "first-found"}: ${why}`);
  const names = ifaces.map((i) => i.name).join(", ") || "none";
  const done = (found: { iface: string; cidr: string } | undefined, reason: string): Detected => {
    if (!found)
      throw none(
        `no global unicast IPv${family} address on the interfaces considered (host interfaces: ${names})`,
      );
    return {
      cidr: found.cidr,
      iface: found.iface,
      method: methodText || "first-found",
      reason: reason.replace("%s", found.iface),
    };
  };
  switch (method.kind) {
    case "first-found":
      return done(
        firstGlobal(family, filtered(ifaces, [], DEFAULT_EXCLUDES)),
        "first-found: the first address on interface %s (default exclusions applied)",
      );
    case "interface":
      return done(
        firstGlobal(family, filtered(ifaces, method.regexes, [])),
        "interface: the first address on %s, whose name matches",
      );
    case "skip-interface":
      return done(
        firstGlobal(family, filtered(ifaces, [], [...DEFAULT_EXCLUDES, ...method.regexes])),
        "skip-interface: the first address on %s, the first interface not skipped",
      );
    case "cidr":
      return done(
        firstGlobal(family, filtered(ifaces, [], []), method.cidrs),
        `cidr: the first address within ${method.cidrs.join(", ")}, on %s`,
      );
    case "can-reach": {
      if (reachSource === undefined)
        throw none(`the kernel has no IPv${family} route to ${method.destination}`);
      const src = formatAddress(family, parseAddress(reachSource).value);
      for (const i of filtered(ifaces, [], [])) {
        for (const c of i.addresses) {
          const ip = c.split("/")[0] as string;
          if (familyOf(c) === family && formatAddress(family, parseAddress(ip).value) === src)
            return {
              cidr: c,
              iface: i.name,
              method: methodText,
              reason: `can-reach: the source address of the route to ${method.destination}, on ${i.name}`,
            };
        }
      }
      throw none(`the source address ${src} for ${method.destination} is on no host interface`);
    }
    case "kubernetes-internal-ip": {
      const ip = (internalIPs ?? []).find((a) => isIP(a) === family);
      if (ip === undefined)
        throw none(
          `the Kubernetes Node has no IPv${family} InternalIP (its InternalIPs: ${(internalIPs ?? []).join(", ") || "none"})`,
        );
      const want = formatAddress(family, parseAddress(ip).value);
      for (const i of filtered(ifaces, [], []))
        for (const c of i.addresses) {
          const a = c.split("/")[0] as string;
          if (familyOf(c) === family && formatAddress(family, parseAddress(a).value) === want)
            return {
              cidr: c,
              iface: i.name,
              method: methodText,
              reason: `kubernetes-internal-ip: the Kubernetes Node's InternalIP ${want}, on ${i.name}`,
            };
        }
      throw none(`the Kubernetes Node's InternalIP ${want} is on no host interface`);
    }
  }
}
