// What a staged policy would change if it were promoted (pure). Calico's staged policies
// (StagedNetworkPolicy, StagedGlobalNetworkPolicy, StagedKubernetesNetworkPolicy) are never
// enforced; this owns the preview: which endpoints the staged policy (or, for stagedAction
// Delete, its enforced twin) selects, and for each endpoint and direction the policies that
// apply to it now and after promotion, in the order they apply, with each tier's default
// action. The answer comes from the renderer itself (renderPolicy's endpoint chains for every
// endpoint as if it were local), so it is what the agent would program, not a second model of
// it. Not: where the resources come from (the CLI), the promotion itself.
import {
  type Direction,
  endpointChainName,
  type Policy,
  type PolicyEndpoint,
  type PolicyInput,
  policyChainName,
  profileChainName,
  renderPolicy,
} from "./policy.js";

export interface StagedPolicy {
  /** The staged resource's kind and name ("ns/name" or "name"), for the report. */
  kind: string;
  name: string;
  /** "Set" promotes `policy` (it replaces its enforced twin, if any); "Delete" removes the twin. */
  action: "Set" | "Delete";
  /** The policy as its enforced twin would be; for Delete only its id is used. */
  policy: Policy;
}

/**
 * One step of an endpoint's chain: a policy by id, a tier's default action, a profile by name
 * (its rules follow the policies), or the drop after the profiles.
 */
export type Step = { policy: string } | { tierEnd: "Deny" } | { profile: string } | { drop: true };

export interface EndpointChange {
  endpoint: string;
  direction: Direction;
  /** undefined: no policy selects the endpoint in this direction (its traffic is allowed). */
  before?: Step[];
  after?: Step[];
}

export interface StagedPreview {
  kind: string;
  name: string;
  action: "Set" | "Delete";
  /** Endpoints the staged policy (Set) or its enforced twin (Delete) selects, by id. */
  selects: string[];
  /** Every endpoint and direction whose policies would change, in endpoint order. */
  changes: EndpointChange[];
}

const DIRECTIONS: readonly Direction[] = ["Ingress", "Egress"];

/** Every endpoint as if local, under a short interface name of its own. */
function allLocal(endpoints: readonly PolicyEndpoint[]): PolicyEndpoint[] {
  return endpoints.map((e, i) => ({ ...e, iface: `pv${i}` }));
}

/** The endpoint chains of a render, as steps, by "iface/direction". */
function chainsOf(input: PolicyInput, ids: readonly string[]): Map<string, Step[]> {
  const byChain = new Map<string, Step>();
  for (const dir of DIRECTIONS) {
    for (const id of ids) byChain.set(policyChainName(id, dir), { policy: id });
    for (const prof of input.profiles ?? [])
      byChain.set(profileChainName(prof.name, dir), { profile: prof.name });
  }
  // Per-interface chains (read below by name), whatever the agent's dispatch.
  const chains = new Map(
    renderPolicy({ ...input, dispatchBySet: false }, 4).chains.map((c) => [c.name, c.rules]),
  );
  const out = new Map<string, Step[]>();
  for (const ep of input.endpoints)
    for (const dir of DIRECTIONS) {
      const rules = chains.get(endpointChainName(ep.iface as string, dir));
      if (rules === undefined) continue;
      const steps: Step[] = [];
      for (const r of rules) {
        const jump = /(?:^| )-j (\S+)$/.exec(r)?.[1];
        const step = jump === undefined ? undefined : byChain.get(jump);
        if (step !== undefined) steps.push(step);
        else if (r === "-j DROP") steps.push({ drop: true });
        else if (r.endsWith(" -j DROP") && r.startsWith("-m mark")) steps.push({ tierEnd: "Deny" });
      }
      out.set(`${ep.iface}/${dir}`, steps);
    }
  return out;
}

const same = (a: Step[] | undefined, b: Step[] | undefined) =>
  JSON.stringify(a) === JSON.stringify(b);

/** The preview of promoting `staged` over the enforced policies of `input`. */
export function previewStaged(input: PolicyInput, staged: StagedPolicy): StagedPreview {
  const endpoints = allLocal(input.endpoints);
  const id = staged.policy.id;
  const others = input.policies.filter((p) => p.id !== id);
  const twin = input.policies.find((p) => p.id === id);
  const promoted = staged.action === "Set" ? [...others, staged.policy] : others;
  const before = { ...input, endpoints };
  const after = { ...input, endpoints, policies: promoted };
  const ids = [...new Set([...input.policies, ...promoted].map((p) => p.id))];
  const now = chainsOf(before, ids);
  const then = chainsOf(after, ids);
  const selector = staged.action === "Set" ? staged.policy : twin;
  const selects = new Set<string>();
  const changes: EndpointChange[] = [];
  for (const ep of endpoints)
    for (const dir of DIRECTIONS) {
      const key = `${ep.iface}/${dir}`;
      const b = now.get(key);
      const a = then.get(key);
      const steps = staged.action === "Set" ? a : b;
      if (selector !== undefined && steps?.some((s) => "policy" in s && s.policy === id))
        selects.add(ep.id);
      if (!same(b, a))
        changes.push({
          endpoint: ep.id,
          direction: dir,
          ...(b !== undefined ? { before: b } : {}),
          ...(a !== undefined ? { after: a } : {}),
        });
    }
  return {
    kind: staged.kind,
    name: staged.name,
    action: staged.action,
    selects: [...selects],
    changes,
  };
}

/** A chain's steps as one line: "a, b, <tier Deny>" or "(not policed: allowed)". */
export function formatSteps(steps: Step[] | undefined): string {
  if (steps === undefined) return "(not policed: allowed)";
  return steps
    .map((s) =>
      "policy" in s
        ? s.policy
        : "profile" in s
          ? `profile ${s.profile}`
          : "tierEnd" in s
            ? "<end of tier: Deny>"
            : "<drop>",
    )
    .join(", ");
}
