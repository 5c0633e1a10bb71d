// Benchmark: network policy render and apply at scale, the agent's own code path
// (renderDataplane + IncrementalApplier, as the node daemon's convergeAgent calls them) in fresh
// network namespaces, beside a raw `ipset restore` + `iptables-nft-restore` of exactly the sets
// and rules our apply wrote (saved to files, replayed into an empty namespace), in the same run.
// Measures (a) the full pass, min/median/max over --runs fresh namespaces; (b) +1 pod (a veth
// host interface created first, as the CNI plugin would, then one agent pass) until in force;
// (c) one label change on one pod until in force; p50/p90/p99 and max over --adds / --changes
// (below 100 samples the p99 is the max: `--adds 200 --changes 200` for a real one; the applier's
// incremental path: no kernel read-back, its refresh interval left at Calico's 90 s). At the end
// the rules in force (iptables-save, ipset save) are checked against the benchmark's own model.
// Needs root and the native addon (KernelFib). The test runs it tiny (test/felix/policy_bench).
// Each (b)/(c) pass prints where its time went: the render, the applier's steps (plan,
// interfaces, ipset, iptables) and every process it spawned. With --old DIR (another build's
// dist/, e.g. /work/main/dist) that build's renderer and applier run beside ours, alternating,
// on their own namespaces, each rendering the same model's input: both printed side by side
// (each build's render keeps its own state across passes, as the node daemon's does).
// Usage: npx tsx bench/policy_apply.ts [--endpoints 1000] [--policies 200] [--sets 50]
//        [--cidrs 1000] [--runs 3] [--adds 50] [--changes 50] [--old /work/main/dist] [--legacy]
//        [--render-cpu] [--render-alloc] [--sysctls] [--set-dispatch]
// (--legacy: iptables-legacy for both appliers and the raw reference; default nft.
// --set-dispatch: the policy input asks for the dispatch by set (policy.ts dispatchBySet); an
// --old build that does not know it renders the per-interface dispatch tree: the A/B of the two.
// --render-cpu: only the render, in this process, no kernel: the CPU time of the first render
// and of each +1 pod and label change render, ours and --old's alternating; CPU time is what a
// loaded machine distorts least.
// --render-alloc: only the render, as --render-cpu: the bytes each build's passes allocate (V8's
// sampling heap profiler, counting what garbage collection took too), per pass, each build's
// passes sampled apart (what feeds the collector, whose pauses are the render's tail).
// --sysctls: only the pods' interface sysctls, --endpoints veths in one fresh namespace, --runs
// rounds after two warm-up ones: the agent's write (DirectKernel: the IPv4 conf values over
// rtnetlink, proxy_delay as a file) alternating with every value written as a /proc/sys file
// (the addon's writeFilesInNetns, 64 a call, as before), each value flipped every round; wall
// and CPU time, each checked by reading /proc/sys back; a KernelFib watches the namespace's links
// as the daemon's does, and the CPU time includes 50 ms after each write for it to read the
// RTM_NEWLINK that each netlink write also announces.)
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { loadavg, tmpdir } from "node:os";
import { basename, join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  IncrementalApplier,
  type Runner,
  type RunResult,
  spawnRunner,
} from "../src/felix/apply.js";
import { DirectKernel } from "../src/felix/apply_direct.js";
import { type DataplaneInput, renderDataplane } from "../src/felix/dataplane.js";
import {
  endpointChainName,
  fromGlobalNetworkPolicy,
  type Policy,
  type PolicyEndpoint,
  type PolicyNetworkSet,
  policyChainName,
} from "../src/felix/policy.js";
import { ifaceSysctls } from "../src/felix/workload.js";
import { KernelFib } from "../src/fib/kernel_fib.js";
import { writeSysctlsInNetns } from "../src/fib/netlink_request.js";
import { RTPROT_OCELOT_AGENT } from "../src/fib/types.js";
import { WORKLOAD_HOST_MAC, workloadIfaceName } from "../src/lib/pod_wiring.js";

/** Spawned tools are killed after this long (a hang, not a speed limit). */
export const TOOL_LIMIT_MS = 120_000;

export interface BenchOptions {
  endpoints: number;
  policies: number;
  sets: number;
  cidrs: number;
  runs: number;
  adds: number;
  changes: number;
  /** Per-run prefix of namespace names (default: random). */
  prefix?: string;
  log?: (line: string) => void;
  /**
   * Another build's dist/ (e.g. /work/main/dist): its IncrementalApplier is run beside ours,
   * alternating, on its own namespaces (the render, the FIB and the model are ours).
   */
  old?: string;
  /**
   * The policy input's dispatchBySet (policy.ts): ours renders the dispatch by set; an --old
   * build that does not know it renders its own (the A/B of the two designs against main).
   */
  dispatchBySet?: boolean;
  /** iptables backend for ours, the old build's and the raw reference (default nft). */
  iptables?: "nft" | "legacy";
  /**
   * Called with the last namespace after the check, before it is removed (the test breaks the
   * rules in force there and expects `recheck` to say so).
   */
  afterCheck?: (ns: string, recheck: () => string[]) => void | Promise<void>;
}

/** ms and count per step name (a spawned command, a step of the applier, the render). */
/** ms (summed), count and the longest one per step name. */
export type Steps = Record<string, { n: number; ms: number; max: number }>;

/** What one applier (this build's, or --old's) did in the run. */
export interface VariantResult {
  /**
   * Per run, CPU ms of the full pass's apply: this process (every thread) and the tools it
   * started (their user + system time, counted when they are reaped).
   */
  cpu: number[];
  /** Per run, ms: this build's render, its apply, and both (ours). */
  renders: number[];
  apply: number[];
  ours: number[];
  /** ms per command name spawned by the apply in the first run (where its time goes). */
  commands: Steps;
  /** ms per +1 pod and per label change (render + apply). */
  add: number[];
  change: number[];
  /** Of the +1 pod and the label-change passes: where each pass's time went (summed). */
  addSteps: Steps;
  changeSteps: Steps;
  /** Of the (b) and (c) passes: how many were incremental and how many read back in full. */
  passModes: { full: number; incremental: number };
  /** Of the full passes (section a): where their time went (summed; steps overlap). */
  fullSteps: Steps;
  /** What the rules in force got wrong against the model (empty: right). */
  problems: string[];
}

export interface BenchResult extends VariantResult {
  /** Per run, ms: our render, the raw tools. */
  render: number[];
  raw: number[];
  /** Per run, CPU ms of the raw restores (the tools' user + system time). */
  rawCpu: number[];
  /** Of the raw restores: each tool's run (ms, summed over the runs). */
  rawSteps: Steps;
  ipsetMembers: number;
  iptablesRules: number;
  /** Our render's ms of each (b) and (c) pass. */
  passRender: number[];
  /** The same run with --old's applier, alternating with ours. */
  old?: VariantResult;
  loadavg: number[];
}

interface Ep extends PolicyEndpoint {
  iface: string;
  ipv4: string;
}

/** The benchmark's cluster: endpoints, policies, network sets, from counts only. */
export class Model {
  readonly endpoints: Ep[] = [];
  readonly policies: Policy[] = [];
  readonly sets: PolicyNetworkSet[] = [];
  /** Apps (each selected by policies/apps policies) and roles (rule selectors). */
  readonly apps: number;
  readonly roles: number;

  constructor(readonly o: BenchOptions) {
    this.apps = Math.max(1, Math.ceil(o.policies / 4));
    this.roles = Math.max(2, Math.min(20, Math.ceil(o.endpoints / 10)));
    for (let k = 0; k < o.sets; k++) {
      const nets: string[] = [];
      // 11.k.x.y/26: 4 a /24, distinct.
      for (let j = 0; j < o.cidrs; j++)
        nets.push(`11.${k % 256}.${(j >> 2) % 256}.${(j & 3) * 64}/26`);
      this.sets.push({ labels: { netset: `s${k}` }, nets });
    }
    for (let i = 0; i < o.policies; i++) {
      const S = Math.max(1, o.sets);
      this.policies.push(
        fromGlobalNetworkPolicy({
          metadata: { name: `bench-${i}` },
          spec: {
            order: i,
            selector: `app == "app-${i % this.apps}"`,
            types: ["Ingress", "Egress"],
            ingress: [
              {
                action: "Allow",
                protocol: "TCP",
                source: { selector: `role == "r${i % this.roles}"` },
                destination: { ports: [80, 443] },
              },
              { action: "Allow", source: { selector: `netset == "s${i % S}"` } },
            ],
            egress: [{ action: "Allow", destination: { selector: `netset == "s${(i + 1) % S}"` } }],
          },
        }),
      );
    }
    for (let i = 0; i < o.endpoints; i++) this.addEndpoint();
  }

  addEndpoint(): Ep {
    const i = this.endpoints.length;
    const id = `ns-${i % 10}/pod-${i}`;
    const ep: Ep = {
      id,
      namespace: `ns-${i % 10}`,
      labels: {
        app: `app-${i % this.apps}`,
        role: `r${i % this.roles}`,
        "projectcalico.org/orchestrator": "k8s",
      },
      addresses: [`10.244.${i >> 8}.${i & 255}/32`],
      ipv4: `10.244.${i >> 8}.${i & 255}`,
      iface: workloadIfaceName(id),
    };
    this.endpoints.push(ep);
    return ep;
  }

  /** The k-th change of a run: endpoint k × 7919 (spread over the endpoints) to its next role. */
  change(k: number): void {
    this.relabel((k * 7919) % this.endpoints.length);
  }

  /** Step k of the render-only runs: the first `adds` add an endpoint, the rest are changes. */
  step(k: number, adds: number): "add" | "change" {
    if (k < adds) {
      this.addEndpoint();
      return "add";
    }
    this.change(k);
    return "change";
  }

  /** Moves endpoint n to the next role. */
  relabel(n: number): void {
    const ep = this.endpoints[n] as Ep;
    const r = Number(ep.labels.role?.slice(1) ?? 0);
    ep.labels = { ...ep.labels, role: `r${(r + 1) % this.roles}` };
  }

  input(): DataplaneInput {
    return {
      workloads: this.endpoints.map((e) => ({
        id: e.id,
        hostIface: e.iface,
        ipv4: [e.ipv4],
        ipv6: [],
      })),
      pools: [{ cidr: "10.244.0.0/16", natOutgoing: true }],
      policy: {
        endpoints: this.endpoints,
        policies: this.policies,
        networkSets: this.sets,
        ...(this.o.dispatchBySet === true ? { dispatchBySet: true } : {}),
      },
    };
  }

  selects(p: Policy, ep: Ep): boolean {
    return p.selector === `app == "${ep.labels.app}"`;
  }
}

// ---- namespaces and tools ----------------------------------------------------------------------

/** Runs a tool to its end (killed at TOOL_LIMIT_MS: a hang) and returns its stdout; a non-zero exit throws with its stderr. */
export function run(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, {
    encoding: "utf8",
    input,
    maxBuffer: 1 << 30,
    timeout: TOOL_LIMIT_MS,
    killSignal: "SIGKILL",
  });
  if (r.status !== 0)
    throw new Error(`"${cmd} ${args.slice(0, 6).join(" ")}" failed: ${r.stderr || r.error}`);
  return r.stdout;
}

const live = new Set<string>();

function addNs(name: string): string {
  run("ip", ["netns", "add", name]);
  live.add(name);
  run("ip", ["-n", name, "link", "set", "lo", "up"]);
  run("ip", ["netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  return name;
}

function delNs(name: string): void {
  spawnSync("ip", ["netns", "del", name], { timeout: TOOL_LIMIT_MS });
  live.delete(name);
}

/** Host-side interfaces as the CNI plugin leaves them (named, our MAC, up). */
function addIfaces(ns: string, eps: Ep[]): void {
  if (eps.length === 0) return;
  // No dummy module on every kernel: a veth pair, its peer left in the node namespace too.
  const lines = eps.flatMap((e) => [
    `link add ${e.iface} address ${WORKLOAD_HOST_MAC} type veth peer name p${e.iface.slice(3)}`,
    `link set ${e.iface} up`,
  ]);
  run("ip", ["-n", ns, "-batch", "-"], `${lines.join("\n")}\n`);
}

/** spawnRunner, timing each command by name. */
function timedRunner(acc: () => Steps): Runner {
  return async (netns, cmd, args, input): Promise<RunResult> => {
    const t = performance.now();
    const r = await spawnRunner(netns, cmd, args, input);
    count(acc(), `spawn ${cmd} ${args[0] ?? ""}`.trim(), performance.now() - t);
    return r;
  };
}

function count(steps: Steps, key: string, ms: number): void {
  const a = steps[key] ?? { n: 0, ms: 0, max: 0 };
  a.max = Math.max(a.max, ms);
  a.n++;
  a.ms += ms;
  steps[key] = a;
}

// ---- the check of what is in force --------------------------------------------------------------

function parseRules(save: string): Map<string, string[]> {
  const chains = new Map<string, string[]>();
  for (const line of save.split("\n")) {
    const m = /^-A (\S+) (.*)$/.exec(line);
    if (!m) continue;
    const list = chains.get(m[1] as string) ?? [];
    list.push(m[2] as string);
    chains.set(m[1] as string, list);
  }
  return chains;
}

function parseSets(save: string): Map<string, Set<string>> {
  const sets = new Map<string, Set<string>>();
  for (const line of save.split("\n")) {
    const p = line.trim().split(/\s+/);
    if (p[0] === "create") sets.set(p[1] as string, new Set());
    else if (p[0] === "add") {
      const m = p[2] as string;
      sets.get(p[1] as string)?.add(m.includes("/") ? m : `${m}/32`);
    }
  }
  return sets;
}

const sameSet = (a: Set<string> | undefined, b: string[]) =>
  a !== undefined && a.size === new Set(b).size && b.every((x) => a.has(x));

/** The sets a chain's rules match, in order. */
const setsOf = (rules: string[]) =>
  rules.flatMap((r) =>
    [...r.matchAll(/--match-set (\S+) (?:src|dst)/g)].map((m) => m[1] as string),
  );

/**
 * Where the dispatch chain root (and its tree: `-i <prefix>+ -g <sub-chain>`) sends a packet of
 * iface: the first rule matching it decides (goto), as the kernel does; "RETURN" for an endpoint
 * dispatched to nothing (`-i <iface> -j RETURN`: known, no policy selects it). Dispatch by set:
 * `-m set --match-set <set> src,src -g <chain>` matches when the set holds `0.0.0.0/0,<iface>`.
 */
function dispatchOf(
  rules: Map<string, string[]>,
  sets: Map<string, Set<string>>,
  root: string,
  iface: string,
): string | undefined {
  let chain = root;
  for (let depth = 0; depth < 16; depth++) {
    let next: string | undefined;
    for (const r of rules.get(chain) ?? []) {
      const bySet = /^-m set --match-set (\S+) (?:src,src|dst,dst) -(?:g (\S+)|j (RETURN))$/.exec(
        r,
      );
      if (bySet) {
        if (sets.get(bySet[1] as string)?.has(`0.0.0.0/0,${iface}`)) {
          next = (bySet[2] ?? bySet[3]) as string;
          break;
        }
        continue;
      }
      const m = /^-[io] (\S+) -(?:g (\S+)|j (RETURN))$/.exec(r);
      if (!m) continue;
      const match = m[1] as string;
      if (match.endsWith("+") ? iface.startsWith(match.slice(0, -1)) : iface === match) {
        next = (m[2] ?? m[3]) as string;
        break;
      }
    }
    if (next === undefined || !next.startsWith(root)) return next;
    chain = next;
  }
  return undefined;
}

/** Every local endpoint routed and dispatched to its chains, jumping to exactly its policies in
 * order; each policy's rule sets holding exactly the model's members. */
export function checkInForce(
  ns: string,
  model: Model,
  flavour: "nft" | "legacy" = "nft",
): string[] {
  const problems: string[] = [];
  const rules = parseRules(
    run("ip", ["netns", "exec", ns, `iptables-${flavour}-save`, "-t", "filter"]),
  );
  const sets = parseSets(run("ip", ["netns", "exec", ns, "ipset", "save"]));
  // Every endpoint's route through its interface (the agent's protocol, 202).
  const routes = new Set(
    run("ip", ["-n", ns, "route", "show", "proto", "202"])
      .split("\n")
      .map((l) => l.trim().split(/\s+/).slice(0, 3).join(" ")),
  );
  for (const ep of model.endpoints)
    if (!routes.has(`${ep.ipv4} dev ${ep.iface}`))
      problems.push(`${ep.id}: no route ${ep.ipv4} dev ${ep.iface}`);
  for (const ep of model.endpoints) {
    const mine = model.policies.filter((p) => model.selects(p, ep));
    for (const dir of ["Ingress", "Egress"] as const) {
      // Selected by no policy: dispatched to nothing (or, in a build that renders no dispatch
      // without policy, not dispatched at all).
      // By set (model.o.dispatchBySet): the group chain its set sends it to.
      const root = dir === "Ingress" ? "ocl-to-wl-dispatch" : "ocl-from-wl-dispatch";
      const to = dispatchOf(rules, sets, root, ep.iface);
      const group = model.o.dispatchBySet === true && /^ocl-[tf]g-/.test(to ?? "");
      const chain =
        mine.length > 0 ? (group ? (to as string) : endpointChainName(ep.iface, dir)) : "RETURN";
      const undispatched = mine.length === 0 && model.policies.length === 0 && !rules.has(root);
      if (to !== chain && !undispatched)
        problems.push(`${ep.id}: no dispatch to ${chain} from ${root} (${to})`);
      const jumps = (rules.get(chain) ?? []).flatMap((r) => {
        const m = / -j (ocl-p[io]-\S+)$/.exec(r);
        return m ? [m[1] as string] : [];
      });
      const want = mine.map((p) => policyChainName(p.id, dir));
      if (jumps.join(",") !== want.join(","))
        problems.push(`${ep.id} ${dir}: jumps ${jumps.join(",")} want ${want.join(",")}`);
    }
  }
  const used = new Set(
    model.endpoints.flatMap((ep) => model.policies.filter((p) => model.selects(p, ep))),
  );
  for (const [i, p] of model.policies.entries()) {
    if (!used.has(p)) continue;
    const S = Math.max(1, model.o.sets);
    const role = `r${i % model.roles}`;
    const roleAddrs = model.endpoints
      .filter((e) => e.labels.role === role)
      .map((e) => `${e.ipv4}/32`);
    const netsOf = (k: number) => model.sets[k]?.nets ?? [];
    const inSets = setsOf(rules.get(policyChainName(p.id, "Ingress")) ?? []);
    const outSets = setsOf(rules.get(policyChainName(p.id, "Egress")) ?? []);
    const checks: [string, string | undefined, string[]][] = [
      ["ingress role", inSets[0], roleAddrs],
      ["ingress netset", inSets[1], netsOf(i % S)],
      ["egress netset", outSets[0], netsOf((i + 1) % S)],
    ];
    for (const [what, name, want] of checks)
      if (name === undefined || !sameSet(sets.get(name), want))
        problems.push(
          `${p.id} ${what}: set ${name} has ${sets.get(name ?? "")?.size ?? "none"}, want ${want.length}`,
        );
  }
  return problems;
}

// ---- the benchmark ----------------------------------------------------------------------------

const ms = (t0: number) => performance.now() - t0;

/**
 * Waits (bounded) until the FIB's link watch has seen iface: in a cluster the CNI plugin creates
 * it well before the WorkloadEndpoint reaches the agent, so this wait is not the agent's cost.
 */
async function linkKnown(fib: KernelFib, iface: string): Promise<void> {
  const links = (fib as unknown as { links: Map<number, { name: string }> }).links;
  const deadline = Date.now() + TOOL_LIMIT_MS;
  while (![...links.values()].some((l) => l.name === iface)) {
    if (Date.now() > deadline) throw new Error(`Link ${iface} never seen by the FIB`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** What the bench needs of an applier (ours, or another build's). */
interface ApplierLike {
  close?(): void;
  apply(
    state: ReturnType<typeof renderDataplane>,
    opts: Parameters<IncrementalApplier["apply"]>[1],
  ): Promise<{
    mode: "full" | "incremental";
    ipsets: string | null;
    iptables: { family: 4 | 6; table: string; payload: string | null }[];
  }>;
}

type RenderFn = (input: DataplaneInput) => ReturnType<typeof renderDataplane>;

interface Variant {
  tag: "a" | "o";
  /** This build's renderDataplane. */
  render: RenderFn;
  make: () => ApplierLike;
  res: VariantResult;
  applier?: ApplierLike;
  ns?: string;
  fib?: KernelFib;
}

const emptyVariant = (): VariantResult => ({
  cpu: [],
  renders: [],
  apply: [],
  ours: [],
  commands: {},
  add: [],
  change: [],
  addSteps: {},
  changeSteps: {},
  passModes: { full: 0, incremental: 0 },
  fullSteps: {},
  problems: [],
});

export async function runPolicyBench(o: BenchOptions): Promise<BenchResult> {
  const log = o.log ?? (() => {});
  const prefix = o.prefix ?? `pb${randomBytes(3).toString("hex")}`;
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const res: BenchResult = {
    ...emptyVariant(),
    render: [],
    raw: [],
    rawCpu: [],
    rawSteps: {},
    ipsetMembers: 0,
    iptablesRules: 0,
    passRender: [],
    loadavg: [],
  };
  const variants: Variant[] = [
    { tag: "a", render: renderDataplane, make: () => new IncrementalApplier(), res },
  ];
  if (o.old) {
    const mod = (await import(pathToFileURL(join(o.old, "felix", "apply.js")).href)) as {
      IncrementalApplier: new () => ApplierLike;
    };
    const dp = (await import(pathToFileURL(join(o.old, "felix", "dataplane.js")).href)) as {
      renderDataplane: RenderFn;
    };
    res.old = emptyVariant();
    variants.push({
      tag: "o",
      render: dp.renderDataplane,
      make: () => new mod.IncrementalApplier(),
      res: res.old,
    });
  }
  const model = new Model(o);
  const flavour = o.iptables ?? "nft";
  try {
    const files: { cmd: string; args: string[]; file: string }[] = [];
    for (let r = 0; r < o.runs; r++) {
      const order = r % 2 === 0 ? variants : [...variants].reverse();
      const line: string[] = [];
      for (const v of order) {
        // A fresh namespace with the pods' host interfaces, one agent pass.
        if (v.fib) await v.fib.close();
        if (v.ns) delNs(v.ns);
        const ns = addNs(`${prefix}-${v.tag}${r}`);
        v.ns = ns;
        addIfaces(ns, model.endpoints);
        // As the daemon opens it (openKernelAgentFib): watching links, so new pods' are known.
        v.fib = await KernelFib.open({
          netns: ns,
          protocols: [RTPROT_OCELOT_AGENT],
          unwantedGraceMs: 30_000,
        });
        v.applier?.close?.();
        v.applier = v.make();
        // This build's render of the whole model (its first of the run: a full pass's).
        const t0 = performance.now();
        const state = v.render(model.input());
        const tr = ms(t0);
        v.res.renders.push(tr);
        if (v.tag === "a") res.render.push(tr);
        const c1 = cpuNow();
        const t1 = performance.now();
        const report = await v.applier.apply(state, {
          netns: ns,
          fib: v.fib,
          direct: true,
          iptables: flavour,
          trace: (step, t) => count(v.res.fullSteps, `step ${step}`, t),
          ...(r === 0 ? { run: timedRunner(() => v.res.commands) } : {}),
        });
        count(v.res.fullSteps, "render", tr);
        const ta = ms(t1);
        v.res.cpu.push(cpuNow() - c1);
        v.res.apply.push(ta);
        v.res.ours.push(tr + ta);
        line.push(
          `${v.tag === "a" ? "ours" : "old"} ${(tr + ta).toFixed(0)} ms (render ${tr.toFixed(0)}, apply ${ta.toFixed(0)})`,
        );
        if (r === 0 && v.tag === "a") {
          // The raw reference: exactly what our apply wrote, as files.
          if (report.ipsets !== null) {
            writeFileSync(join(dir, "ipsets"), report.ipsets);
            files.push({ cmd: "ipset", args: ["restore", "-exist"], file: join(dir, "ipsets") });
            res.ipsetMembers = report.ipsets.split("\n").filter((l) => l.startsWith("add ")).length;
          }
          for (const t of report.iptables) {
            if (t.payload === null) continue;
            const f = join(dir, `iptables-${t.family}-${t.table}`);
            writeFileSync(f, t.payload);
            files.push({
              cmd: `iptables-${flavour}-restore`,
              args: ["--noflush", "-w", "5"],
              file: f,
            });
            res.iptablesRules += t.payload.split("\n").filter((l) => l.startsWith("-A ")).length;
          }
        }
      }
      // Raw: the same sets and rules, restored by the tools into an empty namespace.
      const raw = addNs(`${prefix}-r${r}`);
      const inputs = files.map((f) => ({ ...f, text: readFileSync(f.file, "utf8") }));
      const c2 = cpuNow();
      const t2 = performance.now();
      for (const f of inputs) {
        const t = performance.now();
        run("ip", ["netns", "exec", raw, f.cmd, ...f.args], f.text);
        count(res.rawSteps, `${f.cmd} ${basename(f.file)}`, ms(t));
      }
      const tw = ms(t2);
      res.rawCpu.push(cpuNow() - c2);
      res.raw.push(tw);
      delNs(raw);
      log(`run ${r + 1}: ${line.join(", ")}; raw ${tw.toFixed(0)} ms`);
    }
    // The passes: each change rendered and applied by each build in turn (alternating which
    // goes first), each on its own namespace.
    const pass = async (k: number, phase: "add" | "change", ep?: Ep) => {
      const input = model.input();
      const order = k % 2 === 0 ? variants : [...variants].reverse();
      for (const v of order) {
        const ns = v.ns as string;
        const fib = v.fib as KernelFib;
        if (ep) {
          // +1 pod: its host interface exists first (the CNI plugin's part), then one pass.
          addIfaces(ns, [ep]);
          await linkKnown(fib, ep.iface);
        }
        const steps = phase === "add" ? v.res.addSteps : v.res.changeSteps;
        const t = performance.now();
        const state = v.render(input);
        const tr = ms(t);
        if (v.tag === "a") res.passRender.push(tr);
        count(steps, "render", tr);
        const t1 = performance.now();
        const report = await (v.applier as ApplierLike).apply(state, {
          netns: ns,
          fib,
          run: timedRunner(() => steps),
          direct: true,
          iptables: flavour,
          trace: (step, t) => count(steps, `step ${step}`, t),
        });
        const ta = ms(t1);
        count(steps, "apply (wall)", ta);
        v.res.passModes[report.mode]++;
        (phase === "add" ? v.res.add : v.res.change).push(tr + ta);
      }
    };
    // (b) +1 pod.
    for (let k = 0; k < o.adds; k++) await pass(k, "add", model.addEndpoint());
    // (c) one label change on one pod (its role: two rule ipsets change members).
    for (let k = 0; k < o.changes; k++) {
      model.change(k);
      await pass(k, "change");
    }
    for (const v of variants) v.res.problems = checkInForce(v.ns as string, model, flavour);
    const ns = variants[0]?.ns as string;
    await o.afterCheck?.(ns, () => checkInForce(ns, model, flavour));
    res.loadavg = loadavg();
    return res;
  } finally {
    for (const v of variants) {
      v.applier?.close?.();
      await v.fib?.close().catch(() => {});
    }
    for (const ns of [...live]) delNs(ns);
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- command line -----------------------------------------------------------------------------

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : (s[Math.max(0, Math.ceil(p * s.length) - 1)] as number);
};
const f0 = (x: number) => x.toFixed(0);

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
}

function summary(xs: number[]): string {
  return `min ${f0(Math.min(...xs))} / median ${f0(pct(xs, 0.5))} / max ${f0(Math.max(...xs))} ms`;
}

function printSteps(title: string, steps: Steps, passes: number): void {
  console.log(
    `      ${title} (ms per pass, mean; steps overlap: interfaces run beside ipset/iptables):`,
  );
  for (const [k, v] of Object.entries(steps).sort((a, b) => b[1].ms - a[1].ms))
    console.log(
      `        ${k}: ${(v.n / passes).toFixed(1)} x, ${(v.ms / passes).toFixed(1)} ms (longest ${v.max.toFixed(1)})`,
    );
}

/** CPU ms of f (this process, user + system). */
/** CPU ms so far of this process (every thread) and of its reaped children (/proc/self/stat). */
function cpuNow(): number {
  const u = process.cpuUsage();
  const stat = readFileSync("/proc/self/stat", "utf8");
  // Fields after the command's closing parenthesis: cutime and cstime are the 14th and 15th.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(f[13]) + Number(f[14]);
  return (u.user + u.system) / 1000 + ticks * 10;
}

function cpuMs(f: () => void): number {
  const a = process.cpuUsage();
  f();
  const b = process.cpuUsage(a);
  return (b.user + b.system) / 1000;
}

/** This build's render, and with --old the old build's (its dist/felix/dataplane.js). */
async function renderBuilds(o: BenchOptions): Promise<[string, RenderFn][]> {
  const builds: [string, RenderFn][] = [["ours", renderDataplane]];
  if (o.old) {
    const dp = (await import(pathToFileURL(join(o.old, "felix", "dataplane.js")).href)) as {
      renderDataplane: RenderFn;
    };
    builds.push(["old", dp.renderDataplane]);
  }
  return builds;
}

/** --render-cpu: each build's render alone, CPU time, on the same model's passes. */
async function renderCpu(o: BenchOptions): Promise<void> {
  const builds = await renderBuilds(o);
  const model = new Model(o);
  const cpu: Record<string, { first: number; add: number[]; change: number[] }> = {};
  for (const [name, render] of builds)
    cpu[name] = { first: cpuMs(() => render(model.input())), add: [], change: [] };
  for (let k = 0; k < o.adds + o.changes; k++) {
    const phase = model.step(k, o.adds);
    const input = model.input();
    const order = k % 2 === 0 ? builds : [...builds].reverse();
    for (const [name, render] of order) cpu[name]?.[phase].push(cpuMs(() => render(input)));
  }
  const q = (xs: number[]) =>
    `n ${xs.length}, min ${pct(xs, 0).toFixed(1)} / p50 ${pct(xs, 0.5).toFixed(1)} / p90 ${pct(xs, 0.9).toFixed(1)} / p99 ${pct(xs, 0.99).toFixed(1)} / max ${pct(xs, 1).toFixed(1)} ms`;
  for (const [name, c] of Object.entries(cpu))
    console.log(
      `${name} render CPU: first (a full pass's) ${c.first.toFixed(0)} ms; +1 pod ${q(c.add)}; label change ${q(c.change)}`,
    );
  console.log(
    `load at end ${loadavg()
      .map((x) => x.toFixed(1))
      .join(" ")}`,
  );
}

/** Bytes f allocates (sampled every 4 KiB, collected objects counted), by V8's heap profiler. */
async function allocated(session: Session, f: () => void): Promise<number> {
  await session.post("HeapProfiler.startSampling", {
    samplingInterval: 4096,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  f();
  const { profile } = await session.post("HeapProfiler.stopSampling");
  let bytes = 0;
  const walk = (n: { selfSize: number; children: (typeof n)[] }) => {
    bytes += n.selfSize;
    for (const c of n.children) walk(c);
  };
  walk(profile.head as unknown as { selfSize: number; children: never[] });
  return bytes;
}

/** --render-alloc: each build's render alone, bytes allocated a pass (+1 pods, label changes). */
async function renderAlloc(o: BenchOptions): Promise<void> {
  const builds = await renderBuilds(o);
  const model = new Model(o);
  for (const [, render] of builds) render(model.input());
  const session = new Session();
  session.connect();
  await session.post("HeapProfiler.enable");
  const bytes: Record<string, { add: number; change: number }> = {};
  for (const [name] of builds) bytes[name] = { add: 0, change: 0 };
  try {
    for (let k = 0; k < o.adds + o.changes; k++) {
      const phase = model.step(k, o.adds);
      const input = model.input();
      const order = k % 2 === 0 ? builds : [...builds].reverse();
      for (const [name, render] of order) {
        const b = bytes[name] as { add: number; change: number };
        b[phase] += await allocated(session, () => render(input));
      }
    }
  } finally {
    session.disconnect();
  }
  const mb = (x: number, n: number) => (n === 0 ? "-" : `${(x / n / 1e6).toFixed(2)} MB`);
  for (const [name, b] of Object.entries(bytes))
    console.log(
      `${name} render allocates a pass: +1 pod ${mb(b.add, o.adds)} (n ${o.adds}); label change ${mb(b.change, o.changes)} (n ${o.changes})`,
    );
}

/** --sysctls: the pods' interface sysctls written the agent's way and as files, alternating. */
async function sysctlWrites(o: BenchOptions): Promise<void> {
  const ns = addNs(`${o.prefix ?? `oclsy${randomBytes(3).toString("hex")}`}-s`);
  let fib: KernelFib | undefined;
  try {
    const names = Array.from({ length: o.endpoints }, (_, i) => `oclsy${i}`);
    const lines = names.map((n, i) => `link add ${n} type veth peer name oclsq${i}`);
    run("ip", ["-n", ns, "-batch", "-"], `${lines.join("\n")}\n`);
    fib = await KernelFib.open({ netns: ns, protocols: [RTPROT_OCELOT_AGENT] });
    const res: Record<string, { wall: number[]; cpu: number[] }> = {
      netlink: { wall: [], cpu: [] },
      files: { wall: [], cpu: [] },
    };
    for (let round = 0; round < o.runs + 2; round++) {
      const order = round % 2 === 0 ? ["netlink", "files"] : ["files", "netlink"];
      for (const [k, how] of order.entries()) {
        // Every value differs from the one before (rp_filter 0/1 and the conf values 1/0).
        const on = (round * 2 + k) % 2 === 0;
        const want = names.flatMap((n) =>
          ifaceSysctls(n, false, { rpFilter: on ? 1 : 0 }).map((s) =>
            s.key.endsWith(".rp_filter") || s.key.endsWith(".route_localnet")
              ? s
              : {
                  ...s,
                  value: s.key.endsWith(".proxy_delay") ? (on ? "0" : "100") : on ? "1" : "0",
                },
          ),
        );
        const d = new DirectKernel(ns);
        if (how === "netlink") d.links();
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        if (how === "netlink") await d.writeSysctls(want);
        else
          for (let i = 0; i < want.length; i += 64)
            writeSysctlsInNetns(
              `/run/netns/${ns}`,
              want.slice(i, i + 64).map((s) => [s.key, s.value]),
            );
        const wall = performance.now() - t0;
        await new Promise((r) => setTimeout(r, 50));
        const c = process.cpuUsage(c0);
        d.close();
        const back = run("ip", ["netns", "exec", ns, "sysctl", "-n", ...want.map((s) => s.key)]);
        const got = back.trim().split("\n");
        const bad = want.findIndex((s, i) => got[i] !== s.value);
        if (bad >= 0)
          throw new Error(
            `${how}: ${want[bad]?.key} read back ${got[bad]}, written ${want[bad]?.value}`,
          );
        if (round < 2) continue;
        res[how]?.wall.push(wall);
        res[how]?.cpu.push((c.user + c.system) / 1000);
      }
    }
    const q = (xs: number[]) =>
      `min ${pct(xs, 0).toFixed(1)} / median ${pct(xs, 0.5).toFixed(1)} / max ${pct(xs, 1).toFixed(1)} ms`;
    for (const [how, r] of Object.entries(res))
      console.log(
        `${how}: ${o.endpoints} interfaces x 5 sysctls, wall ${q(r.wall)}; CPU with the FIB's link watch ${q(r.cpu)} (read back: right)`,
      );
    console.log(
      `load at end ${loadavg()
        .map((x) => x.toFixed(1))
        .join(" ")}`,
    );
  } finally {
    await fib?.close().catch(() => {});
    delNs(ns);
  }
}

async function main(): Promise<void> {
  const arg = (name: string, dflt: number) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : dflt;
  };
  const oldAt = process.argv.indexOf("--old");
  const o: BenchOptions = {
    endpoints: arg("endpoints", 1000),
    policies: arg("policies", 200),
    sets: arg("sets", 50),
    cidrs: arg("cidrs", 1000),
    runs: arg("runs", 3),
    adds: arg("adds", 50),
    changes: arg("changes", 50),
    ...(oldAt > 0 ? { old: process.argv[oldAt + 1] as string } : {}),
    ...(process.argv.includes("--legacy") ? { iptables: "legacy" as const } : {}),
    ...(process.argv.includes("--set-dispatch") ? { dispatchBySet: true } : {}),
    log: (l) => console.log(l),
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const)
    process.on(sig, () => {
      for (const ns of live) spawnSync("ip", ["netns", "del", ns]);
      process.exit(130);
    });
  console.log(
    `policy apply (iptables ${o.iptables ?? "nft"}): ${o.endpoints} endpoints, ${o.policies} policies, ${o.sets} sets x ${o.cidrs} CIDRs${o.old ? `; old applier from ${o.old}, alternating` : ""}; load ${loadavg()
      .map((x) => x.toFixed(1))
      .join(" ")}`,
  );
  if (process.argv.includes("--render-cpu")) return renderCpu(o);
  if (process.argv.includes("--render-alloc")) return renderAlloc(o);
  if (process.argv.includes("--sysctls")) return sysctlWrites(o);
  const r = await runPolicyBench(o);
  const medRaw = pct(r.raw, 0.5);
  const variants: [string, VariantResult][] = [["ours", r]];
  if (r.old) variants.push(["old", r.old]);
  console.log(`rendered: ${r.iptablesRules} iptables rules, ${r.ipsetMembers} ipset members`);
  console.log(
    `(a) full pass: render ${summary(r.render)}${r.old ? `; old's ${summary(r.old.renders)}` : ""}`,
  );
  console.log(
    `    raw ipset restore + iptables-${o.iptables ?? "nft"}-restore of the same: ${summary(r.raw)}`,
  );
  printSteps("raw, where it goes", r.rawSteps, r.raw.length);
  console.log(
    `    CPU (this process's threads + the tools, apply only): raw ${summary(r.rawCpu)}; ${variants.map(([n, v]) => `${n} ${summary(v.cpu)} (${(pct(v.cpu, 0.5) / pct(r.rawCpu, 0.5)).toFixed(2)}x raw's at the median)`).join("; ")}`,
  );
  if (r.old) {
    const old = r.old.ours;
    const wins = r.ours.filter((x, i) => x < (old[i] ?? Number.POSITIVE_INFINITY)).length;
    console.log(
      `    ours against old, run by run: faster in ${wins} of ${r.ours.length}; ours/old ${(pct(r.ours, 0.5) / pct(old, 0.5)).toFixed(2)}x at the median, ${(mean(r.ours) / mean(old)).toFixed(2)}x the mean`,
    );
  }
  for (const [name, v] of variants) {
    console.log(
      `    ${name} (render + apply): ${summary(v.ours)}; ratio median ${(pct(v.ours, 0.5) / medRaw).toFixed(2)}x, best ${(Math.min(...v.ours) / Math.min(...r.raw)).toFixed(2)}x (goal <= 1.5x)`,
    );
    console.log("      commands of the first run:");
    for (const [k, c] of Object.entries(v.commands).sort((a, b) => b[1].ms - a[1].ms))
      console.log(`        ${k}: ${c.n} x, ${f0(c.ms)} ms`);
    printSteps(`${name}, where a full pass goes`, v.fullSteps, v.ours.length);
  }
  // p99 is the maximum below 100 samples: the max is printed apart, and the p99 said to be it.
  const line = (what: string, xs: number[]) =>
    console.log(
      `    ${what}: n ${xs.length}, p50 ${f0(pct(xs, 0.5))} ms, p90 ${f0(pct(xs, 0.9))} ms, p99 ${f0(pct(xs, 0.99))} ms${xs.length < 100 ? " (= max: n < 100)" : ""}, max ${f0(Math.max(...xs))} ms (goal p99 <= 50 ms)`,
    );
  console.log("(b) +1 pod to in force (render + apply):");
  for (const [name, v] of variants) {
    line(name, v.add);
    printSteps(`${name}, where it goes`, v.addSteps, v.add.length);
  }
  console.log("(c) one label change to in force (render + apply):");
  for (const [name, v] of variants) {
    line(name, v.change);
    printSteps(`${name}, where it goes`, v.changeSteps, v.change.length);
  }
  for (const [name, v] of variants)
    console.log(
      `${name}: passes ${v.passModes.incremental} incremental, ${v.passModes.full} full (read back); rules in force checked: ${v.problems.length === 0 ? "right" : `${v.problems.length} problems`}`,
    );
  for (const [, v] of variants) for (const p of v.problems.slice(0, 20)) console.log(`  ${p}`);
  console.log(`load at end ${r.loadavg.map((x) => x.toFixed(1)).join(" ")}`);
  if (variants.some(([, v]) => v.problems.length > 0)) process.exitCode = 1;
}

if (process.argv[1]?.endsWith("policy_apply.ts")) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
