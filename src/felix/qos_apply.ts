// The QoS thin edge: reads the namespace's qdiscs back (`tc -j qdisc show`, once a pass; our ifb
// devices and redirect filters only where an egress limit is wanted) and runs the plan of qos.ts
// (`tc`, `ip link`). Not: deciding anything (qos.ts).
import { IFB_PREFIX, type IfaceQos, type KernelQdisc, planQos, type QosCommand } from "./qos.js";

export interface QosRunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs one command (in the namespace when given), as apply.ts's Runner. */
export type QosRunner = (
  netns: string | undefined,
  cmd: string,
  args: string[],
  input?: string,
) => Promise<QosRunResult>;

/** Namespaces ("" for our own) last seen holding none of our QoS state. */
const NOTHING_OURS = new Set<string>();

interface Ctx {
  netns?: string;
  run: QosRunner;
}

async function json<T>(ctx: Ctx, cmd: string, args: string[]): Promise<T[]> {
  const r = await ctx.run(ctx.netns, cmd, args);
  if (r.code !== 0)
    throw new Error(`"${cmd} ${args.join(" ")}" failed (exit ${r.code}): ${r.stderr.trim()}`);
  return JSON.parse(r.stdout.trim() || "[]") as T[];
}

/**
 * Converges the bandwidth limits of the workload interfaces that exist (`present`); a new ifb
 * device gets its interface's MTU. Returns the changes made, one line each.
 */
export async function applyQos(
  ctx: Ctx,
  want: readonly IfaceQos[],
  present: ReadonlySet<string>,
): Promise<string[]> {
  const key = ctx.netns ?? "";
  // A namespace seen without any of our qdiscs or ifb devices, and still wanting none, is not
  // read again (what we did not make there is not ours to remove): no `tc` per pass.
  if (want.length === 0 && NOTHING_OURS.has(key)) return [];
  NOTHING_OURS.delete(key);
  let qdiscs: KernelQdisc[];
  try {
    qdiscs = await json<KernelQdisc>(ctx, "tc", ["-j", "qdisc", "show"]);
  } catch (err) {
    // Without tc (or its JSON) nothing of ours can be there; wanted limits need it.
    if (want.length === 0) return [];
    throw err;
  }
  const ifbs = new Set(qdiscs.map((q) => q.dev).filter((d) => d.startsWith(IFB_PREFIX)));
  const hasRedirect = new Set<string>();
  const egress = want.filter((w) => w.egress && present.has(w.iface));
  if (egress.length > 0) {
    for (const l of await json<{ ifname: string }>(ctx, "ip", [
      "-j",
      "link",
      "show",
      "type",
      "ifb",
    ]))
      if (l.ifname.startsWith(IFB_PREFIX)) ifbs.add(l.ifname);
    for (const w of egress) {
      const filters = await json<{
        options?: { actions?: { kind?: string; to_dev?: string }[] };
      }>(ctx, "tc", ["-j", "filter", "show", "dev", w.iface, "parent", "ffff:"]).catch(() => []);
      if (filters.some((f) => f.options?.actions?.some((a) => a.to_dev === w.ifb)))
        hasRedirect.add(w.iface);
    }
  }
  const mtus = new Map<string, number>();
  for (const w of egress)
    if (!ifbs.has(w.ifb)) {
      const [l] = await json<{ mtu?: number }>(ctx, "ip", ["-j", "link", "show", "dev", w.iface]);
      if (l?.mtu) mtus.set(w.iface, l.mtu);
    }
  const mtuOf = (iface: string) => mtus.get(iface);
  const plan: QosCommand[] = planQos(want, present, qdiscs, ifbs, hasRedirect, mtuOf);
  if (want.length === 0 && plan.length === 0 && ifbs.size === 0) NOTHING_OURS.add(key);
  const changes: string[] = [];
  for (const c of plan) {
    const r = await ctx.run(ctx.netns, c.cmd, c.args);
    if (r.code !== 0 && !c.tolerant)
      throw new Error(
        `"${c.cmd} ${c.args.join(" ")}" failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`,
      );
    changes.push(c.change);
  }
  return changes;
}
