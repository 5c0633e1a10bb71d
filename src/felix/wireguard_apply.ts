// WireGuard's thin edge: reads the device (`ip -d -j addr show`, `wg show <dev> dump`), the
// rules and the WireGuard table back; keeps the node's private key (the device's when it has one,
// as Felix keeps it there; else the key file, mode 0600, so that a restart keeps the public key;
// else a new one); makes the device (the kernel's `ip link add <dev> type wireguard`, else the
// userspace `wireguard-go <dev>`, which daemonizes and serves `wg` on
// /var/run/wireguard/<dev>.sock); runs the plan of wireguard.ts with `ip` and `wg`; with host
// encryption, sends one ping through the device to each peer that has had no handshake yet (so
// that one starts), and reads rp_filter for the strict-mode warning.
// Not: deciding anything (wireguard.ts), the Node's public key (the node daemon).
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { OverlayRunner } from "./overlay_apply.js";
import {
  generatePrivateKey,
  isWireguardKey,
  type KernelRule,
  type KernelTableRoute,
  parseWgDump,
  planWireguard,
  planWireguardOff,
  publicKeyOf,
  WIREGUARD_ROUTE_PROTOCOL,
  type WireguardKernel,
  type WireguardLink,
  type WireguardRequest,
  type WireguardState,
} from "./wireguard.js";

interface Ctx {
  netns?: string;
  run: OverlayRunner;
}

async function jsonOf<T>(ctx: Ctx, args: string[]): Promise<T[] | undefined> {
  const r = await ctx.run(ctx.netns, "ip", args);
  if (r.code !== 0) return undefined;
  const text = r.stdout.trim();
  return text === "" ? [] : (JSON.parse(text) as T[]);
}

/**
 * The device, its WireGuard state, the rules and the WireGuard table's routes (of the family) of our
 * protocol (a route someone else put in that table is left alone).
 */
export async function readWireguardKernel(
  ctx: Ctx,
  device: string,
  table: number,
  family: 4 | 6 = 4,
): Promise<WireguardKernel> {
  const links = await jsonOf<WireguardLink>(ctx, ["-d", "-j", "addr", "show", "dev", device]);
  const link = links?.[0];
  let dump: WireguardKernel["dump"];
  if (link) {
    const r = await ctx.run(ctx.netns, "wg", ["show", device, "dump"]);
    if (r.code === 0) dump = parseWgDump(r.stdout);
  }
  const rules = (await jsonOf<KernelRule>(ctx, ["-j", `-${family}`, "rule", "show"])) ?? [];
  const routes =
    (await jsonOf<KernelTableRoute>(ctx, [
      "-j",
      `-${family}`,
      "route",
      "show",
      "table",
      String(table),
      "proto",
      String(WIREGUARD_ROUTE_PROTOCOL),
    ])) ?? [];
  return {
    ...(link ? { link } : {}),
    ...(dump ? { dump } : {}),
    rules,
    routes: routes.filter((r) => r.dst !== undefined),
  };
}

/**
 * The private key: the device's (Felix's), else the key file's, else a new one; written to the
 * key file (0600) when it differs, so that the next start finds it.
 */
export function privateKeyFor(keyFile: string, fromDevice: string | undefined): string {
  let fromFile: string | undefined;
  try {
    const text = readFileSync(keyFile, "utf8").trim();
    if (isWireguardKey(text)) fromFile = text;
  } catch {}
  const key = isWireguardKey(fromDevice) ? fromDevice : (fromFile ?? generatePrivateKey());
  if (key !== fromFile) {
    mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 });
    writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
  }
  chmodSync(keyFile, 0o600);
  return key;
}

async function runOk(ctx: Ctx, req: WireguardRequest, input?: string): Promise<void> {
  const r = await ctx.run(ctx.netns, req.tool, req.args, input);
  if (r.code !== 0)
    throw new Error(
      `"${req.tool} ${req.args.join(" ")}" failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`,
    );
}

/** Runs requests in order; consecutive `ip` ones in one `ip -4|-6 -batch`. */
async function runAll(
  ctx: Ctx,
  requests: readonly WireguardRequest[],
  family: 4 | 6,
): Promise<void> {
  let batch: string[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const lines = batch;
    batch = [];
    await runOk(ctx, { tool: "ip", args: [`-${family}`, "-batch", "-"] }, `${lines.join("\n")}\n`);
  };
  for (const r of requests) {
    if (r.tool === "ip") {
      batch.push(r.args.join(" "));
      continue;
    }
    await flush();
    await runOk(ctx, r);
  }
  await flush();
}

export type WireguardImplementation = "kernel" | "wireguard-go";

/**
 * Makes the device: the kernel's WireGuard when it has one, else wireguard-go (a TUN device and
 * its UAPI socket). Throws naming both failures.
 */
export async function createDevice(ctx: Ctx, name: string): Promise<WireguardImplementation> {
  const k = await ctx.run(ctx.netns, "ip", ["link", "add", name, "type", "wireguard"]);
  if (k.code === 0) return "kernel";
  // Without LOG_LEVEL: with it set (in the daemon's environment), wireguard-go's daemonized
  // child keeps our stdout and stderr pipes open for its logs, so the command never ends.
  const g = await ctx
    .run(ctx.netns, "env", ["-u", "LOG_LEVEL", "wireguard-go", name])
    .catch((err: Error) => ({
      code: -1,
      stdout: "",
      stderr: err.message,
    }));
  if (g.code === 0) return "wireguard-go";
  throw new Error(
    `WireGuard device ${name}: the kernel has no WireGuard (${k.stderr.trim()}) and wireguard-go failed (${g.stderr.trim() || g.stdout.trim() || `exit ${g.code}`})`,
  );
}

export interface WireguardApplied {
  publicKey: string;
  changes: string[];
  /** Set when this pass made the device. */
  implementation?: WireguardImplementation;
}

/**
 * WireGuard on: reads the kernel, takes the key, renders (render is given our public key), and
 * runs the plan: device, key, settings, address, peers, routes, then the rule.
 */
export async function applyWireguard(
  ctx: Ctx,
  o: {
    device: string;
    table: number;
    family: 4 | 6;
    keyFile: string;
    /** handshakeAges: seconds since each peer's latest handshake (host encryption's bootstrap). */
    render: (publicKey: string, handshakeAges: ReadonlyMap<string, number>) => WireguardState;
  },
): Promise<WireguardApplied> {
  const kernel = await readWireguardKernel(ctx, o.device, o.table, o.family);
  const privateKey = privateKeyFor(o.keyFile, kernel.dump?.privateKey);
  const publicKey = publicKeyOf(privateKey);
  const now = Math.floor(Date.now() / 1000);
  const ages = new Map(
    (kernel.dump?.peers ?? [])
      .filter((p) => p.latestHandshake > 0)
      .map((p) => [p.publicKey, Math.max(0, now - p.latestHandshake)]),
  );
  const desired = o.render(publicKey, ages);
  const plan = planWireguard(desired, kernel);
  let implementation: WireguardImplementation | undefined;
  if (plan.create) {
    if (plan.create.deleteFirst) await runOk(ctx, { tool: "ip", args: ["link", "del", o.device] });
    implementation = await createDevice(ctx, o.device);
  }
  if (plan.setKey) {
    if (!existsSync(o.keyFile)) throw new Error(`WireGuard key file ${o.keyFile} is gone`);
    await runOk(ctx, { tool: "wg", args: ["set", o.device, "private-key", o.keyFile] });
  }
  await runAll(ctx, plan.set, o.family);
  await runAll(ctx, plan.rule, o.family);
  // One packet through the device to each peer whose host addresses wait for a handshake: the
  // device starts one (not awaited: a peer that does not answer must not hold the pass).
  for (const target of desired.handshakeTargets)
    void ctx
      .run(ctx.netns, "ping", [`-${o.family}`, "-n", "-q", "-c", "1", "-W", "1", target.address])
      .catch(() => undefined);
  return { publicKey, changes: plan.changes, ...(implementation ? { implementation } : {}) };
}

/**
 * The IPv4 reverse-path filter in force on an interface: the larger of `all` and the interface's
 * (the kernel's rule); undefined when unreadable.
 */
export async function readRpFilter(ctx: Ctx, iface: string): Promise<number | undefined> {
  const r = await ctx.run(ctx.netns, "sysctl", [
    "-n",
    "net.ipv4.conf.all.rp_filter",
    `net.ipv4.conf.${iface.replaceAll(".", "/")}.rp_filter`,
  ]);
  if (r.code !== 0) return undefined;
  const values = r.stdout.trim().split("\n").map(Number);
  return values.length === 2 && values.every(Number.isInteger) ? Math.max(...values) : undefined;
}

/** WireGuard off on device and table: the rule, the table's routes, the device. */
export async function removeWireguard(
  ctx: Ctx,
  device: string,
  table: number,
  family: 4 | 6 = 4,
): Promise<string[]> {
  const kernel = await readWireguardKernel(ctx, device, table, family);
  const { requests, changes } = planWireguardOff(device, table, kernel);
  await runAll(ctx, requests, family);
  return changes;
}
