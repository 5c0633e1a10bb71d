// `ocelot policy preview [NAME]`: what each staged policy (StagedNetworkPolicy,
// StagedGlobalNetworkPolicy, StagedKubernetesNetworkPolicy) would change if it were promoted:
// the endpoints it selects and, per endpoint and direction, the policies in force now and after.
// Owns reading the resources and printing; the preview itself is src/felix/staged.ts.
import type { Command } from "commander";
import { ResourceClient } from "../api/client.js";
import type { K8sNetworkPolicy } from "../api/policy.js";
import { type Resource, resolveKindName } from "../api/registry.js";
import {
  addDatastoreOptions,
  type DatastoreCliOptions,
  openDatastoreFromCli,
} from "../datastore/open.js";
import { UnavailableError } from "../datastore/types.js";
import {
  fromGlobalNetworkPolicy,
  fromK8sNetworkPolicy,
  fromNetworkPolicy,
  type Policy,
} from "../felix/policy.js";
import { formatSteps, previewStaged, type StagedPolicy } from "../felix/staged.js";
import { type NodeSnapshot, policyEndpointsOf, policyInputOf } from "../node/agent_state.js";
import { CliError } from "./main.js";

type Opts = DatastoreCliOptions & { namespace?: string; json?: boolean };

async function list(client: ResourceClient, plural: string): Promise<Resource[]> {
  const info = resolveKindName(plural);
  if (info === undefined) throw new Error(`no kind ${plural}`);
  return (await client.list(info)).items;
}

const qualified = (r: Resource) =>
  r.metadata.namespace !== undefined
    ? `${r.metadata.namespace}/${r.metadata.name}`
    : r.metadata.name;

/** A staged resource as the enforced policy it would become. */
export function stagedOf(r: Resource): StagedPolicy {
  const { stagedAction, ...spec } = r.spec as { stagedAction?: "Set" | "Delete" } & Record<
    string,
    unknown
  >;
  const meta = { name: r.metadata.name, namespace: r.metadata.namespace };
  let policy: Policy;
  if (r.kind === "StagedNetworkPolicy") policy = fromNetworkPolicy({ metadata: meta, spec });
  else if (r.kind === "StagedGlobalNetworkPolicy")
    policy = fromGlobalNetworkPolicy({ metadata: meta, spec });
  else policy = fromK8sNetworkPolicy({ metadata: meta, spec } as unknown as K8sNetworkPolicy);
  return { kind: r.kind, name: qualified(r), action: stagedAction ?? "Set", policy };
}

async function preview(name: string | undefined, opts: Opts): Promise<void> {
  let store: Awaited<ReturnType<typeof openDatastoreFromCli>>;
  try {
    store = await openDatastoreFromCli(opts);
  } catch (err) {
    if (err instanceof RangeError) throw new CliError(err.message, 2);
    if (err instanceof UnavailableError) throw new CliError(err.message);
    throw err;
  }
  try {
    const client = new ResourceClient(store);
    const get = (plural: string) => list(client, plural);
    const [weps, nps, gnps, knps, tiers, gsets, sets, profiles] = await Promise.all(
      [
        "workloadendpoints",
        "networkpolicies",
        "globalnetworkpolicies",
        "kubernetesnetworkpolicies",
        "tiers",
        "globalnetworksets",
        "networksets",
        "profiles",
      ].map(get),
    );
    const staged = (
      await Promise.all(
        [
          "stagednetworkpolicies",
          "stagedglobalnetworkpolicies",
          "stagedkubernetesnetworkpolicies",
        ].map(get),
      )
    )
      .flat()
      .filter(
        (r) =>
          (name === undefined || r.metadata.name === name || qualified(r) === name) &&
          (opts.namespace === undefined || r.metadata.namespace === opts.namespace),
      );
    if (name !== undefined && staged.length === 0)
      throw new CliError(`no staged policy named "${name}"`);
    const snap = {
      nodes: [],
      workloadEndpoints: weps,
      pools: [],
      affinities: [],
      networkPolicies: nps,
      globalNetworkPolicies: gnps,
      k8sNetworkPolicies: knps,
      tiers,
      networkSets: [...gsets, ...sets],
      profiles,
    } as unknown as NodeSnapshot;
    // No node: every endpoint is previewed (each as if it were on this node).
    const input = policyInputOf(snap, "") ?? {
      endpoints: policyEndpointsOf(snap.workloadEndpoints, ""),
      policies: [],
    };
    const previews = staged.map((r) => previewStaged(input, stagedOf(r)));
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(previews, null, 2)}\n`);
      return;
    }
    if (previews.length === 0) process.stdout.write("no staged policies\n");
    for (const p of previews) {
      process.stdout.write(
        `${p.kind} ${p.name} (stagedAction ${p.action}): selects ${p.selects.length} endpoint(s)${p.selects.length > 0 ? `: ${p.selects.join(", ")}` : ""}\n`,
      );
      if (p.changes.length === 0) process.stdout.write("  promoting it changes nothing\n");
      for (const c of p.changes)
        process.stdout.write(
          `  ${c.endpoint} ${c.direction.toLowerCase()}:\n    now:   ${formatSteps(c.before)}\n    after: ${formatSteps(c.after)}\n`,
        );
    }
  } finally {
    await store.close();
  }
}

export function register(program: Command): void {
  const policy = program.command("policy").description("network policy tools");
  addDatastoreOptions(
    policy
      .command("preview")
      .description(
        "what each staged policy would change if promoted: the endpoints it selects and, for each endpoint and direction, the policies in force now and after",
      )
      .argument("[name]", "one staged policy (name or namespace/name)")
      .option("-n, --namespace <ns>", "only staged policies of this namespace")
      .option("--json", "print JSON"),
  ).action((name: string | undefined, opts: Opts) => preview(name, opts));
}
