// The overlay's thin edge: reads the fabric interfaces (and, for mtuIfacePattern, every link's
// MTU and state) and our tunnel devices, neighbours and FDB
// entries back (`ip -j`, `bridge -j`), runs the plan of overlay.ts (`ip -batch`, `bridge
// -batch`; each device creation on its own, so a kernel without the ipip module loses only
// tunl0, with a warning naming the reason). Not: deciding anything (overlay.ts), routes (the FIB).

import type { HostLink } from "./mtu.js";
import {
  canonicalAddress,
  type FabricIface,
  type KernelFdb,
  type KernelLink,
  type KernelNeighbour,
  OVERLAY_DEVICES,
  type OverlayKernel,
  type OverlayPlan,
  type OverlayRequest,
  type OverlayState,
  planOverlay,
} from "./overlay.js";

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs one command (in the namespace when given), as apply.ts's Runner. */
export type OverlayRunner = (
  netns: string | undefined,
  cmd: string,
  args: string[],
  input?: string,
) => Promise<CommandResult>;

interface Ctx {
  netns?: string;
  run: OverlayRunner;
}

async function json<T>(ctx: Ctx, cmd: string, args: string[]): Promise<T[]> {
  const r = await ctx.run(ctx.netns, cmd, args);
  if (r.code !== 0)
    throw new Error(`"${cmd} ${args.join(" ")}" failed (exit ${r.code}): ${r.stderr.trim()}`);
  const text = r.stdout.trim();
  return text === "" ? [] : (JSON.parse(text) as T[]);
}

/**
 * The interfaces holding each of the given fabric addresses, with their MTU: `ip addr show to`
 * each address (only the interfaces holding it are printed, not a node's thousand pod veths).
 */
export async function readFabric(
  ctx: Ctx,
  addresses: { 4?: string; 6?: string },
): Promise<{ 4?: FabricIface; 6?: FabricIface }> {
  const out: { 4?: FabricIface; 6?: FabricIface } = {};
  for (const fam of [4, 6] as const) {
    const want = addresses[fam];
    if (!want) continue;
    const addr = canonicalAddress(want.split("/")[0] as string);
    const links = await json<KernelLink>(ctx, "ip", ["-j", "addr", "show", "to", addr]);
    const l = links.find((x) =>
      (x.addr_info ?? []).some((a) => a.local !== undefined && canonicalAddress(a.local) === addr),
    );
    if (l) out[fam] = { name: l.ifname.split("@")[0] as string, mtu: l.mtu ?? 1500 };
  }
  return out;
}

/**
 * Every link with its MTU and whether it runs (IFF_RUNNING, which `ip` does not print: admin up
 * and operstate UP or UNKNOWN), for mtuIfacePattern (Felix's findHostMTU reads them all too).
 */
export async function readHostLinks(ctx: Ctx): Promise<HostLink[]> {
  const links = await json<KernelLink & { operstate?: string }>(ctx, "ip", ["-j", "link", "show"]);
  return links.map((l) => ({
    name: l.ifname.split("@")[0] as string,
    mtu: l.mtu ?? 0,
    running: (l.flags ?? []).includes("UP") && (l.operstate === "UP" || l.operstate === "UNKNOWN"),
  }));
}

/** Our overlay devices (with details and addresses), their neighbours and FDB entries. */
export async function readOverlayKernel(ctx: Ctx): Promise<OverlayKernel> {
  const all = await json<KernelLink>(ctx, "ip", ["-d", "-j", "addr", "show"]);
  const ours = new Set<string>(OVERLAY_DEVICES);
  const links = all.filter((l) => ours.has(l.ifname.split("@")[0] as string));
  const neighbours: KernelNeighbour[] = [];
  const fdb: KernelFdb[] = [];
  for (const l of links) {
    const dev = l.ifname.split("@")[0] as string;
    for (const n of await json<KernelNeighbour>(ctx, "ip", ["-j", "neigh", "show", "dev", dev]))
      neighbours.push({ ...n, dev });
    if (l.linkinfo?.info_kind !== "vxlan") continue;
    for (const f of await json<KernelFdb>(ctx, "bridge", ["-j", "fdb", "show", "dev", dev]))
      fdb.push({ ...f, ifname: dev });
  }
  return { links, neighbours, fdb };
}

/** Runs requests in one `ip -batch` and one `bridge -batch`; throws naming the failure. */
async function runBatch(ctx: Ctx, requests: OverlayRequest[]): Promise<void> {
  for (const tool of ["ip", "bridge"] as const) {
    const lines = requests.filter((r) => r.tool === tool).map((r) => r.args.join(" "));
    if (lines.length === 0) continue;
    const r = await ctx.run(ctx.netns, tool, ["-batch", "-"], `${lines.join("\n")}\n`);
    if (r.code !== 0)
      throw new Error(
        `"${tool} -batch" failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`,
      );
  }
}

export interface OverlayApplied {
  /** The plan that was run. */
  plan: OverlayPlan;
  /** Our devices that exist after the first phase (routes through others wait). */
  present: Set<string>;
  /** Devices the kernel refused to create, with its reason. */
  failed: { device: string; reason: string }[];
}

/**
 * First phase: creates and sets devices, addresses, neighbours and FDB entries. The second
 * phase (removeStale) runs after the routes moved away from what it removes.
 */
export async function applyOverlay(
  ctx: Ctx,
  desired: OverlayState | (() => OverlayState),
): Promise<OverlayApplied> {
  const kernel = await readOverlayKernel(ctx);
  // Asked for after the read-back: what a faster writer installed before it is then wanted.
  const plan = planOverlay(typeof desired === "function" ? desired() : desired, kernel);
  const present = new Set(kernel.links.map((l) => l.ifname.split("@")[0] as string));
  const failed: OverlayApplied["failed"] = [];
  for (const c of plan.create) {
    present.delete(c.device);
    try {
      await runBatch(ctx, c.requests);
      present.add(c.device);
    } catch (err) {
      failed.push({ device: c.device, reason: (err as Error).message });
    }
  }
  const gone = new Set(failed.map((f) => f.device));
  const mine = (r: OverlayRequest) => !r.args.some((a) => gone.has(a));
  await runBatch(ctx, plan.set.filter(mine));
  return { plan, present, failed };
}

/** Second phase: what the plan removes (after the routes through it are gone). */
export async function removeStale(ctx: Ctx, applied: OverlayApplied): Promise<void> {
  await runBatch(ctx, applied.plan.remove);
}
