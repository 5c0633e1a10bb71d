// Pods wired as Calico's CNI plugin wires them, for dataplane tests that run without the plugin:
// a veth whose host side (MAC ee:ee:ee:ee:ee:ee) stays in the node namespace and whose eth0 in
// the pod's own namespace holds the pod's /32 (and /128), with 169.254.1.1 (and the host side's
// link-local address) as its gateway; and ICMP and TCP probes between namespaces, counted on
// both sides; a TCP connection reporting the addresses each end saw, and the lab's teardown.
import { type ChildProcess, spawn } from "node:child_process";
import type { DataplaneInput } from "../../src/felix/dataplane.js";
import type { PolicyInput } from "../../src/felix/policy.js";
import type { KernelFib } from "../../src/fib/kernel_fib.js";
import { HANG_MS, runSync } from "./limits.js";
import { Netns, waitFor } from "./netns.js";

/** The host side's link-local address (MAC ee:ee:ee:ee:ee:ee, EUI-64). */
export const HOST_LL = "fe80::ecee:eeff:feee:eeee";

/**
 * A pod namespace (`short`, per-run prefixed) on node through host interface iface, its eth0 at
 * v4/32 and, with v6, at v6/128 (no DAD) with a default route via HOST_LL.
 */
export function addPod(node: Netns, short: string, iface: string, v4: string, v6?: string): Netns {
  const pod = Netns.create(short);
  // The host side gets its MAC before it is up, so its link-local address is HOST_LL.
  node.ip(
    ...["link", "add", iface, "address", "ee:ee:ee:ee:ee:ee", "type", "veth"],
    ...["peer", "name", "eth0", "netns", pod.name],
  );
  node.ip("link", "set", iface, "up");
  pod.ip("link", "set", "eth0", "up");
  pod.ip("addr", "add", `${v4}/32`, "dev", "eth0");
  if (v6) pod.ip("-6", "addr", "add", `${v6}/128`, "dev", "eth0", "nodad");
  pod.ip("route", "add", "169.254.1.1", "dev", "eth0");
  pod.ip("route", "add", "default", "via", "169.254.1.1");
  if (v6) pod.ip("-6", "route", "add", "default", "via", HOST_LL, "dev", "eth0");
  return pod;
}

/** Pods by app name: their host interface and addresses. */
export type PodSpecs = Record<string, { iface: string; v4: string; v6?: string }>;

/** The agent's workloads of pods: `default/<app>`, by their host interfaces. */
export function workloadsOf(pods: PodSpecs): DataplaneInput["workloads"] {
  return Object.entries(pods).map(([app, p]) => ({
    id: `default/${app}`,
    hostIface: p.iface,
    ipv4: [p.v4],
    ipv6: p.v6 ? [p.v6] : [],
  }));
}

/** The policy endpoints of pods: namespace default, labelled app=<app>. */
export function policyEndpointsOf(pods: PodSpecs): PolicyInput["endpoints"] {
  return Object.entries(pods).map(([app, p]) => ({
    id: `default/${app}`,
    namespace: "default",
    labels: { app },
    addresses: p.v6 ? [p.v4, p.v6] : [p.v4],
    iface: p.iface,
  }));
}

/**
 * One ICMP echo: true when answered. Where the test expects an answer it tries up to 5 times,
 * 5 s each (a loaded machine can be slow); where it expects a drop, one try of 1 s.
 */
export function ping(from: Netns, to: string, expected: boolean): boolean {
  for (let i = 0; i < (expected ? 5 : 1); i++) {
    const wait = expected ? "5" : "1";
    if (runSync("ip", ["netns", "exec", from.name, "ping", "-c", "1", "-W", wait, to]).status === 0)
      return true;
  }
  return false;
}

/** One TCP connect from a namespace to ip:port with a 2 s limit; retried when expected to pass. */
export function tcpConnects(from: Netns, ip: string, port: number, expected: boolean): boolean {
  for (let i = 0; i < (expected ? 5 : 1); i++) {
    const r = runSync(
      "ip",
      ["netns", "exec", from.name, "timeout", "2", "bash", "-c", `exec 3<>/dev/tcp/${ip}/${port}`],
      { timeout: HANG_MS },
    );
    if (r.status === 0) return true;
  }
  return false;
}

/** ICMP echo replies a namespace has sent (OutEchoReps of its /proc/net/snmp). */
export function echoRepliesSent(ns: Netns): number {
  const text = ns.exec("cat", "/proc/net/snmp");
  const lines = text.split("\n").filter((l) => l.startsWith("Icmp:"));
  const [head, values] = lines.map((l) => l.trim().split(/\s+/));
  const i = head?.indexOf("OutEchoReps") ?? -1;
  return Number(values?.[i]);
}

/** A one-connection TCP server (IPv4 or IPv6): prints the peer's address and exits. */
const PEER_SERVER = (v6: boolean) => `
import socket, sys
s = socket.socket(${v6 ? "socket.AF_INET6" : ""}); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((${v6 ? '"::"' : '"0.0.0.0"'}, int(sys.argv[1]))); s.listen(1); s.settimeout(60)
c, a = s.accept(); print(a[0], flush=True)`;
/** Connects once: prints the local address used. */
const PEER_CLIENT = `
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2); print(c.getsockname()[0])`;

/**
 * A TCP connection from `from` to host:port served in `server` (IPv6 when host holds a colon;
 * the server process pushed on children): the address the server saw and the client's own.
 */
export async function connectSeen(
  server: Netns,
  from: Netns,
  host: string,
  port: number,
  children: ChildProcess[],
): Promise<{ serverSaw: string; clientFrom: string }> {
  const v6 = host.includes(":");
  const [cmd, args] = server.wrap("python3", "-c", PEER_SERVER(v6), String(port));
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let out = "";
  child.stdout?.on("data", (d) => {
    out += d;
  });
  const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
  const local = await waitFor(`a connection to ${v6 ? `[${host}]` : host}:${port}`, () => {
    const r = runSync("ip", [
      "netns",
      "exec",
      from.name,
      "python3",
      "-c",
      PEER_CLIENT,
      host,
      `${port}`,
    ]);
    return r.status === 0 ? r.stdout.trim() : undefined;
  });
  await exited;
  return { serverSaw: out.trim(), clientFrom: local };
}

/**
 * Tears a dataplane lab down, also after a failed setup: kills the children still running,
 * closes the FIB, destroys the pods' namespaces and then the others (in the order given).
 */
export async function closePodLab(
  children: ChildProcess[],
  fib: KernelFib | undefined,
  pods: Record<string, Netns | undefined>,
  ...others: (Netns | undefined)[]
): Promise<void> {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  await fib?.close();
  for (const p of Object.values(pods)) p?.destroy();
  for (const n of others) n?.destroy();
}

/** A TCP server in ns on port (and host, as net.Server#listen takes it) closing each connection at once. */
export function spawnClosingServer(ns: Netns, port: number, host?: string): ChildProcess {
  const listen = host === undefined ? `${port}` : `${port}, "${host}"`;
  return spawn(
    "ip",
    [
      ...["netns", "exec", ns.name, process.execPath, "-e"],
      `require("net").createServer((c) => c.end()).listen(${listen})`,
    ],
    { stdio: "ignore" },
  );
}

/** Addresses of linkOutside: IPv4 (/24) on both ends, IPv6 (/64) optional; `back`: the outside host's default routes via the node. */
export interface OutsideLink {
  node4: string;
  outside4: string;
  node6?: string;
  outside6?: string;
  back?: { v4?: boolean; v6?: boolean };
}

/**
 * Joins node to an outside host: veth ext0 in node ↔ eth0 in outside, with a.node4/a.outside4
 * (and a.node6/a.outside6, nodad), both up; the node's default route via the outside host (proxy
 * ARP answers the pods' gateway 169.254.1.1 only when it is routable), and the outside host's
 * default routes back via the node for the families a.back names (the pools are behind it).
 */
export function linkOutside(node: Netns, outside: Netns, a: OutsideLink): void {
  node.ip("link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", outside.name);
  if (a.node6) node.ip("-6", "addr", "add", `${a.node6}/64`, "dev", "ext0", "nodad");
  node.ip("addr", "add", `${a.node4}/24`, "dev", "ext0");
  node.ip("link", "set", "ext0", "up");
  node.ip("route", "add", "default", "via", a.outside4);
  if (a.outside6) outside.ip("-6", "addr", "add", `${a.outside6}/64`, "dev", "eth0", "nodad");
  outside.ip("addr", "add", `${a.outside4}/24`, "dev", "eth0");
  outside.ip("link", "set", "eth0", "up");
  if (a.back?.v4) outside.ip("route", "add", "default", "via", a.node4);
  if (a.back?.v6 && a.node6) outside.ip("-6", "route", "add", "default", "via", a.node6);
}
