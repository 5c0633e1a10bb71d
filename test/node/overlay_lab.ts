// The overlay lab: node namespaces in L3 subnets behind a router namespace that runs no BGP and
// knows only the node subnets (one bridge per subnet in the router, the nodes' links its ports),
// each node running the real `bin/ocelot node run` on a shared SQLite store, one pod per node
// wired by the real `bin/ocelot-cni` (IPv4 and IPv6). Helpers to ping, capture with tshark on a
// router port, and read the overlay's kernel state back. Every wait and spawn is bounded.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { formatAddress, parseAddress } from "../../src/lib/ip.js";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { link, Netns, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import { cni, type NodeProcess, podEnv, startNode } from "./harness.js";

export interface LabNode {
  name: string;
  subnet: number;
  ip4: string;
  ip6: string;
  ns: Netns;
  /** The router's bridge port of this node's link. */
  port: string;
  daemon?: NodeProcess;
  pod?: Netns;
  pod4?: string;
  pod6?: string;
}

export interface Lab {
  dir: string;
  url: string;
  store: SqliteDatastore;
  router: Netns;
  nodes: LabNode[];
}

/** The lab's set-up limit (a hang's: 4 daemons and pods take minutes on a loaded 2-core machine). */
export const HOOK_MS = 900_000;

export const POOL4 = "10.232.0.0/16";
export const POOL6 = "fd32::/48";

/** Why the lab cannot run here beyond the daemon tests' reasons (tshark missing), or undefined. */
export function labToolsMissing(): string | undefined {
  for (const tool of ["tshark", "bridge"]) {
    const r = runSync("sh", ["-c", `command -v ${tool}`]);
    if (r.status !== 0) return `${tool} is not installed (scripts/setup.sh installs it)`;
  }
  return undefined;
}

/** Puts the pools of the families with the spec (vxlanMode, ipipMode, natOutgoing...). */
export async function setPools(
  store: SqliteDatastore,
  spec: Record<string, unknown>,
  families: (4 | 6)[] = [4, 6],
): Promise<void> {
  if (families.includes(4)) await putPool(store, "ov4", POOL4, { blockSize: 26, ...spec });
  if (families.includes(6)) await putPool(store, "ov6", POOL6, { blockSize: 122, ...spec });
}

/**
 * Builds the topology: `subnets[i]` node names in subnet i+1 (10.31.<s>.0/24, fd31:<s>::/64),
 * the router at .1 of each; starts each node's daemon with extraArgs and wires one pod per node.
 */
export async function buildLab(
  short: string,
  subnets: string[][],
  extraArgs: (n: LabNode) => string[],
  families: (4 | 6)[],
  poolSpec: Record<string, unknown>,
  /** Called with the lab as soon as it exists, so a test's afterAll can remove a partial one. */
  onCreated: (lab: Lab) => void = () => {},
): Promise<Lab> {
  const dir = mkdtempSync(join(tmpdir(), `ocelot-${short}-`));
  const url = `file:${join(dir, "store.db")}`;
  const store = new SqliteDatastore(join(dir, "store.db"));
  const router = Netns.create(`${short}r`);
  const lab: Lab = { dir, url, store, router, nodes: [] };
  onCreated(lab);
  try {
    await setPools(store, poolSpec, families);
    let i = 0;
    for (const [s, names] of subnets.entries()) {
      const sub = s + 1;
      const br = `br${sub}`;
      router.ip("link", "add", br, "type", "bridge");
      router.ip("addr", "add", `10.31.${sub}.1/24`, "dev", br);
      router.ip("addr", "add", `fd31:${sub}::1/64`, "dev", br, "nodad");
      router.ip("link", "set", br, "up");
      for (const name of names) {
        i++;
        const host = 10 + i;
        const n: LabNode = {
          name,
          subnet: sub,
          ip4: `10.31.${sub}.${host}`,
          ip6: `fd31:${sub}::${host}`,
          ns: Netns.create(`${short}${i}`),
          port: `p${i}`,
        };
        lab.nodes.push(n);
        link(n.ns, "eth0", `${n.ip4}/24`, router, n.port, undefined);
        router.ip("link", "set", n.port, "master", br);
        n.ns.ip("addr", "add", `${n.ip6}/64`, "dev", "eth0", "nodad");
        n.ns.ip("route", "add", "default", "via", `10.31.${sub}.1`);
        n.ns.ip("-6", "route", "add", "default", "via", `fd31:${sub}::1`);
        n.ns.exec("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0");
        n.pod = Netns.create(`${short}${i}p`);
      }
    }
    // All daemons at once, then all pods at once: the set-up is most of the lab's time.
    await Promise.all(
      lab.nodes.map(async (n) => {
        n.daemon = await startNode(n.ns, [
          "--nodename",
          n.name,
          "--ip",
          `${n.ip4}/24`,
          "--ip6",
          `${n.ip6}/64`,
          ...extraArgs(n),
          "--datastore",
          url,
          "--status-socket",
          join(dir, `${n.name}.sock`),
          "--mtu-file",
          join(dir, `${n.name}.mtu`),
          "--log-level",
          process.env.NODED_LEVEL ?? "info",
        ]);
      }),
    );
    await Promise.all(
      lab.nodes.map(async (n) => {
        // The pod's MTU comes from the file the daemon writes: wait for it.
        await waitFor(`${n.name}'s MTU file`, () => existsSync(join(dir, `${n.name}.mtu`)));
        const r = await cni(n.ns, "ADD", podEnv(n.pod as Netns, `${n.name}-pod`), {
          cniVersion: "1.0.0",
          name: "k8s-pod-network",
          type: "ocelot-cni",
          datastore: url,
          nodename: n.name,
          mtu_file: join(dir, `${n.name}.mtu`),
          ipam: {
            type: "ocelot-ipam",
            ...(families.includes(4) ? { ipv4_pools: ["ov4"] } : { assign_ipv4: false }),
            ...(families.includes(6) ? { ipv6_pools: ["ov6"], assign_ipv6: true } : {}),
          },
        });
        if (r.code !== 0) throw new Error(`CNI ADD on ${n.name}: ${r.stdout}${r.stderr}`);
        for (const ip of JSON.parse(r.stdout).ips as { address: string }[]) {
          const a = ip.address.split("/")[0] as string;
          if (a.includes(":")) n.pod6 = a;
          else n.pod4 = a;
        }
      }),
    );
  } catch (err) {
    await destroyLab(lab);
    throw err;
  }
  return lab;
}

const destroyed = new WeakSet<Lab>();

/** Stops the daemons and removes everything the lab made (once; a partial lab too). */
export async function destroyLab(lab: Lab | undefined): Promise<void> {
  if (!lab || destroyed.has(lab)) return;
  destroyed.add(lab);
  for (const n of lab.nodes) {
    if (process.env.NODED_LOG && n.daemon)
      writeFileSync(`${process.env.NODED_LOG}.${n.name}`, n.daemon.log);
    await n.daemon?.stop();
  }
  for (const n of lab.nodes) {
    n.pod?.destroy();
    n.ns.destroy();
  }
  lab.router.destroy();
  await lab.store.close();
  rmSync(lab.dir, { recursive: true, force: true });
}

export function mtuFile(lab: Lab, n: LabNode): number {
  return Number(readFileSync(join(lab.dir, `${n.name}.mtu`), "utf8").trim());
}

/** One ping from a namespace: exit status and output. */
export function ping(ns: Netns, to: string, args: string[] = []) {
  const r = runSync("ip", ["netns", "exec", ns.name, "ping", "-n", "-c1", "-W1", ...args, to]);
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

/** Waits (bounded) until a ping from ns to `to` gets its reply. */
export async function waitPing(ns: Netns, to: string, what: string, log?: () => string) {
  await waitFor(what, () => ping(ns, to).ok, 30_000, 100).catch((e) => {
    throw new Error(`${(e as Error).message}${log ? `\n${log()}` : ""}`);
  });
}

export interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  flags?: string[];
  protocol?: string;
}

export const routesOf = (ns: Netns, proto: string, fam: "-4" | "-6" = "-4") =>
  ns.ipJson<IpRoute[]>(fam, "route", "show", "proto", proto);

export function neighOf(ns: Netns, dev: string) {
  return ns.ipJson<{ dst: string; lladdr?: string; state?: string[]; protocol?: string }[]>(
    "neigh",
    "show",
    "dev",
    dev,
  );
}

export function fdbOf(ns: Netns, dev: string) {
  const out = runSync("bridge", ["-n", ns.name, "-j", "fdb", "show", "dev", dev]).stdout.trim();
  return (out === "" ? [] : JSON.parse(out)) as { mac: string; dst?: string; state?: string }[];
}

/** The /26 (IPv4) or /122 (IPv6) block of a pod address. */
export function blockOf(ip: string): string {
  const a = parseAddress(ip);
  const host = 6n; // 64 addresses a block in both families (/26, /122)
  const base = (a.value >> host) << host;
  return `${formatAddress(a.family, base)}/${a.family === 4 ? 26 : 122}`;
}

export interface Captured {
  protocols: string;
  src: string;
  dst: string;
  udpPort: string;
}

/**
 * Captures on the router's port while `during` runs (tshark, bounded), without neighbour
 * discovery, ARP or MLD; one entry per frame with the outer and inner addresses.
 */
export async function capture(
  router: Netns,
  port: string,
  during: () => void | Promise<void>,
): Promise<Captured[]> {
  const filter = "not arp and not (icmp6 and ip6[40] >= 130 and ip6[40] <= 143)";
  const proc = spawn(
    "ip",
    [
      "netns",
      "exec",
      router.name,
      "tshark",
      "-i",
      port,
      "-n",
      "-l",
      "-a",
      "duration:120",
      "-f",
      filter,
      "-T",
      "fields",
      "-E",
      "separator=;",
      "-e",
      "frame.protocols",
      "-e",
      "ip.src",
      "-e",
      "ip.dst",
      "-e",
      "ipv6.src",
      "-e",
      "ipv6.dst",
      "-e",
      "udp.dstport",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  proc.stdout.on("data", (d) => (out += d));
  proc.stderr.on("data", (d) => (err += d));
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const killer = setTimeout(() => proc.kill("SIGKILL"), HANG_MS);
  try {
    await waitFor("tshark to capture", () => {
      if (proc.exitCode !== null) throw new Error(`tshark exited: ${err}`);
      return /Capturing on/.test(err);
    });
    // "Capturing on" comes just before the capture filter is live: a moment more.
    await new Promise((r) => setTimeout(r, 500));
    await during();
    // tshark prints a frame as it sees it (-l); give the last ones a moment.
    await new Promise((r) => setTimeout(r, 1000));
  } finally {
    proc.kill("SIGINT");
    await exited;
    clearTimeout(killer);
  }
  return out
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const [protocols, ip4s, ip4d, ip6s, ip6d, udpPort] = l.split(";");
      return {
        protocols: protocols ?? "",
        src: [ip4s, ip6s].filter(Boolean).join(","),
        dst: [ip4d, ip6d].filter(Boolean).join(","),
        udpPort: udpPort ?? "",
      };
    });
}

// A UDP echo that answers with the source address it saw (bound to the address asked for, so
// its reply comes from it: a NATed flow's reply must match the flow); bounded to 60 s (the client, 30 s:
// starting node takes seconds on a loaded machine).
const ECHO_SERVER = (fam: string, address: string) =>
  `const s=require("dgram").createSocket("${fam}");s.on("message",(m,r)=>s.send(r.address,r.port,r.address,()=>process.exit(0)));s.bind(7777,"${address}",()=>console.log("ready"));setTimeout(()=>process.exit(1),60000);`;
const ECHO_CLIENT = (fam: string) =>
  `const s=require("dgram").createSocket("${fam}");s.on("message",(m)=>{console.log(String(m));process.exit(0)});const t=()=>s.send("x",7777,process.argv[1]);t();setInterval(t,300);setTimeout(()=>process.exit(1),30000);`;

/** The source address a UDP receiver in `to` saw from a sender in `from` (null: nothing). */
export async function seenSource(from: Netns, to: Netns, address: string): Promise<string | null> {
  const fam = address.includes(":") ? "udp6" : "udp4";
  const server = spawn(
    "ip",
    ["netns", "exec", to.name, process.execPath, "-e", ECHO_SERVER(fam, address)],
    {
      stdio: ["ignore", "pipe", "ignore"],
    },
  );
  const killer = setTimeout(() => server.kill("SIGKILL"), HANG_MS);
  await new Promise<void>((resolve) => {
    server.stdout?.once("data", () => resolve());
    server.once("exit", () => resolve());
  });
  const r = runSync("ip", [
    "netns",
    "exec",
    from.name,
    process.execPath,
    "-e",
    ECHO_CLIENT(fam),
    address,
  ]);
  if (server.exitCode === null) server.kill();
  clearTimeout(killer);
  return r.status === 0 ? r.stdout.trim() : null;
}
