// The kernel side of node address autodetection: the host's interfaces and addresses
// (`ip -j addr show`, in the kernel's order) and, for can-reach, the source address the
// kernel picks for a route to the destination (`ip -j route get`: a route lookup, RTM_GETROUTE,
// no packet sent). Thin: the choice is autodetect.ts's.
import { spawnSync } from "node:child_process";
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import {
  AutodetectError,
  type AutodetectMethod,
  chooseAddress,
  type Detected,
  type HostInterface,
  parseAutodetectMethod,
} from "./autodetect.js";

const IP_TIMEOUT_MS = 10_000;

function ipJson<T>(netns: string | undefined, args: string[]): T {
  const full = [...(netns ? ["-n", netns] : []), "-j", ...args];
  const r = spawnSync("ip", full, { encoding: "utf8", timeout: IP_TIMEOUT_MS });
  if (r.error) throw new Error(`ip ${full.join(" ")}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`ip ${full.join(" ")}: ${(r.stderr ?? "").trim()}`);
  return JSON.parse(r.stdout || "[]") as T;
}

interface AddrJson {
  ifindex: number;
  ifname: string;
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
}

/** The interfaces of our network namespace (or netns), in the kernel's order, with addresses. */
export function readInterfaces(netns?: string): HostInterface[] {
  return ipJson<AddrJson[]>(netns, ["addr", "show"])
    .sort((a, b) => a.ifindex - b.ifindex)
    .map((l) => ({
      name: l.ifname,
      addresses: (l.addr_info ?? [])
        .filter((a) => (a.family === "inet" || a.family === "inet6") && a.local)
        .map((a) => `${a.local}/${a.prefixlen}`),
    }));
}

/** The source address of the kernel's route to destination (undefined when it has none). */
export async function routeSource(
  family: 4 | 6,
  destination: string,
  netns?: string,
): Promise<string | undefined> {
  let dest = destination;
  if (isIP(dest) === 0) dest = (await lookup(destination, { family })).address;
  if (isIP(dest) !== family) return undefined;
  try {
    const r = ipJson<{ prefsrc?: string }[]>(netns, [`-${family}`, "route", "get", dest]);
    return r[0]?.prefsrc;
  } catch {
    return undefined;
  }
}

/**
 * Detects the node's address of one family by the method written in `variable`.
 * `internalIPs` reads the Kubernetes Node's InternalIP addresses (kubernetes-internal-ip only;
 * absent: that method fails, naming what it needs).
 */
export async function detectAddress(
  family: 4 | 6,
  methodText: string,
  variable: string,
  netns?: string,
  internalIPs?: () => Promise<string[]>,
): Promise<Detected> {
  const method: AutodetectMethod = parseAutodetectMethod(methodText, variable);
  const source =
    method.kind === "can-reach"
      ? await routeSource(family, method.destination, netns).catch(() => undefined)
      : undefined;
  let k8s: string[] | undefined;
  if (method.kind === "kubernetes-internal-ip") {
    if (internalIPs === undefined)
      throw new AutodetectError(
        `${variable}: "${methodText}" reads the Kubernetes Node's InternalIP: give ocelot node run a kubeconfig (--kubeconfig or KUBECONFIG)`,
      );
    k8s = await internalIPs();
  }
  return chooseAddress(
    family,
    methodText || "first-found",
    method,
    readInterfaces(netns),
    source,
    k8s,
  );
}
