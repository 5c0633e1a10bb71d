// Property: renderPolicy with its memory of earlier renders (the node daemon's: policy chains by
// content, rule selectors' sets kept endpoint by endpoint, local endpoints' chains) renders
// exactly what a render from nothing does, after any sequence of changes: endpoints added,
// removed, relabelled or readdressed, policies changed, network sets and namespace labels
// changed; both families. And the dispatch tree sends every interface to its own chain, and the
// fast IPv4 path of net parsing spells nets as the general one.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Rule } from "../../src/api/policy.js";
import {
  DISPATCH_LEAF_MAX,
  dispatchTree,
  type Policy,
  type PolicyEndpoint,
  type PolicyInput,
  type PolicyNetworkSet,
  PolicyRenderCache,
  parseNet,
  renderPolicy,
} from "../../src/felix/policy.js";
import { formatAddress, parseCidr } from "../../src/lib/ip.js";
import { workloadIfaceName } from "../../src/lib/pod_wiring.js";

const NAMESPACES = ["ns-a", "ns-b", "ns-c"];
const APPS = ["web", "db", "cache"];
const ROLES = ["x", "y"];
/** Nets lists are kept by their owner until they change (the daemon's and the bench's way). */
const NETS = [
  ["192.0.2.0/28", "198.51.100.7"],
  ["203.0.113.0/24"],
  ["2001:db8::/64", "10.9.0.0/16"],
];

const arbLabels = fc.record(
  { app: fc.constantFrom(...APPS), role: fc.constantFrom(...ROLES) },
  { requiredKeys: [] },
);

const arbEndpoint = (id: number): fc.Arbitrary<PolicyEndpoint> =>
  fc
    .record({
      namespace: fc.constantFrom(...NAMESPACES),
      labels: arbLabels,
      local: fc.boolean(),
      v6: fc.boolean(),
      host: fc.integer({ min: 1, max: 40 }),
      profile: fc.boolean(),
      port: fc.boolean(),
    })
    .map((e) => ({
      id: `${e.namespace}/pod-${id}`,
      namespace: e.namespace,
      labels: e.labels,
      addresses: [`10.0.0.${e.host}/32`, ...(e.v6 ? [`fd00::${e.host}`] : [])],
      ...(e.local ? { iface: `cali${String(id).padStart(4, "0")}` } : {}),
      ...(e.profile ? { profiles: [`kns.${e.namespace}`] } : {}),
      ...(e.port ? { ports: [{ name: "http", protocol: "tcp", port: 8080 }] } : {}),
    }));

const arbSelector = fc.oneof(
  fc.constantFrom(...APPS).map((a) => `app == "${a}"`),
  fc.constantFrom(...ROLES).map((r) => `role == "${r}"`),
  fc.constant("all()"),
  fc.constant("has(app)"),
  fc.constant('netset == "n0"'),
);

const arbRule: fc.Arbitrary<Rule> = fc
  .record({
    action: fc.constantFrom("Allow", "Deny", "Pass", "Log"),
    selector: fc.option(arbSelector, { nil: undefined }),
    notSelector: fc.option(fc.constantFrom('role == "x"'), { nil: undefined }),
    nsSel: fc.option(fc.constantFrom('team == "blue"', "all()"), { nil: undefined }),
    nets: fc.option(fc.constantFrom(["192.0.2.0/24", "10.1.0.0/16"], ["2001:db8::/32"]), {
      nil: undefined,
    }),
    ports: fc.option(fc.constantFrom([80, 443], ["http"], [53]), { nil: undefined }),
  })
  .map((r) => {
    const side: NonNullable<Rule["source"]> = {};
    if (r.selector !== undefined) side.selector = r.selector;
    if (r.notSelector !== undefined) side.notSelector = r.notSelector;
    if (r.nsSel !== undefined) side.namespaceSelector = r.nsSel;
    if (r.nets !== undefined) side.nets = [...r.nets];
    const rule: Rule = { action: r.action as Rule["action"], source: side };
    if (r.ports !== undefined) {
      rule.protocol = "TCP";
      rule.destination = { ports: [...r.ports] as number[] };
    }
    return rule;
  });

const arbPolicy = (i: number): fc.Arbitrary<Policy> =>
  fc
    .record({
      namespaced: fc.option(fc.constantFrom(...NAMESPACES), { nil: undefined }),
      selector: arbSelector,
      order: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }),
      tier: fc.option(fc.constant("security"), { nil: undefined }),
      types: fc.constantFrom<Policy["types"]>(["Ingress"], ["Egress"], ["Ingress", "Egress"]),
      ingress: fc.array(arbRule, { maxLength: 3 }),
      egress: fc.array(arbRule, { maxLength: 2 }),
    })
    .map((p) => ({
      id: p.namespaced !== undefined ? `${p.namespaced}/pol-${i}` : `gpol-${i}`,
      ...(p.namespaced !== undefined ? { namespace: p.namespaced } : {}),
      ...(p.order !== undefined ? { order: p.order } : {}),
      ...(p.tier !== undefined ? { tier: p.tier } : {}),
      selector: p.selector,
      types: p.types,
      ingress: p.ingress,
      egress: p.egress,
    }));

const arbSets = fc.array(
  fc.record({ n: fc.integer({ min: 0, max: 1 }), nets: fc.integer({ min: 0, max: 2 }) }),
  { maxLength: 3 },
);
const toSets = (xs: { n: number; nets: number }[]): PolicyNetworkSet[] =>
  xs.map((s) => ({ labels: { netset: `n${s.n}` }, nets: NETS[s.nets] as string[] }));

/** One change to the input, as the datastore delivers them. */
const arbOp = fc.oneof(
  fc.record({ kind: fc.constant("endpoint" as const), id: fc.integer({ min: 0, max: 39 }) }),
  fc.record({ kind: fc.constant("remove" as const), id: fc.integer({ min: 0, max: 39 }) }),
  fc.record({ kind: fc.constant("relabel" as const), id: fc.integer({ min: 0, max: 39 }) }),
  fc.record({ kind: fc.constant("policy" as const), id: fc.integer({ min: 0, max: 5 }) }),
  fc.record({ kind: fc.constant("dropPolicy" as const), id: fc.integer({ min: 0, max: 5 }) }),
  // A policy's rules alone changed (the same id, selector and order).
  fc.record({ kind: fc.constant("rules" as const), id: fc.integer({ min: 0, max: 5 }) }),
  fc.record({ kind: fc.constant("sets" as const) }),
  fc.record({ kind: fc.constant("nsLabels" as const) }),
  // An endpoint listed twice (its interface and id shared), or no longer.
  fc.record({ kind: fc.constant("twin" as const), id: fc.integer({ min: 0, max: 39 }) }),
);

describe("renderPolicy, incremental", () => {
  it("renders what a render from nothing renders, after any sequence of changes", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.integer({ min: 0, max: 39 }).chain((i) => arbEndpoint(i).map((e) => [i, e] as const)),
          { minLength: 1, maxLength: 30 },
        ),
        fc.array(
          fc.integer({ min: 0, max: 5 }).chain((i) => arbPolicy(i).map((p) => [i, p] as const)),
          { minLength: 1, maxLength: 4 },
        ),
        fc.array(
          fc.tuple(
            arbOp,
            fc.integer({ min: 0, max: 39 }).chain((i) => arbEndpoint(i)),
            arbLabels,
            fc.integer({ min: 0, max: 5 }).chain((i) => arbPolicy(i)),
            arbSets,
            fc.boolean(),
          ),
          { minLength: 1, maxLength: 12 },
        ),
        (initialEps, initialPols, ops) => {
          const cache = new PolicyRenderCache();
          const eps = new Map<number, PolicyEndpoint>(initialEps.map(([i, e]) => [i, { ...e }]));
          const pols = new Map<number, Policy>(initialPols);
          let sets: PolicyNetworkSet[] = [];
          let nsLabels: PolicyInput["namespaceLabels"] = {};
          const twins = new Set<number>();
          const input = (): PolicyInput => ({
            endpoints: [
              ...eps.values(),
              ...[...twins].flatMap((i) => {
                const e = eps.get(i);
                return e ? [{ ...e, labels: { ...e.labels, twin: "yes" } }] : [];
              }),
            ],
            policies: [...pols.values()],
            networkSets: sets,
            namespaceLabels: nsLabels,
            tiers: [{ name: "security", order: 1, defaultAction: "Pass" }],
            profiles: NAMESPACES.map((n) => ({
              name: `kns.${n}`,
              ingress: [{ action: "Allow" as const, source: { selector: 'role == "y"' } }],
              egress: [],
            })),
          });
          const check = () => {
            const now = input();
            for (const family of [4, 6] as const)
              expect(renderPolicy(now, family, cache)).toEqual(
                renderPolicy(now, family, new PolicyRenderCache()),
              );
          };
          check();
          for (const [op, ep, labels, pol, newSets, blue] of ops) {
            switch (op.kind) {
              case "endpoint": {
                // A new endpoint, or one readdressed / moved (same id, new content).
                const id = `${ep.namespace}/pod-${op.id}`;
                eps.set(op.id, { ...ep, id });
                break;
              }
              case "remove":
                eps.delete(op.id);
                break;
              case "relabel": {
                // In place, as the benchmark relabels: the same object, new labels.
                const e = eps.get(op.id);
                if (e !== undefined) (e as { labels: PolicyEndpoint["labels"] }).labels = labels;
                break;
              }
              case "policy":
                pols.set(op.id, {
                  ...pol,
                  id: pol.namespace ? `${pol.namespace}/pol-${op.id}` : `gpol-${op.id}`,
                });
                break;
              case "dropPolicy":
                pols.delete(op.id);
                break;
              case "rules": {
                const had = pols.get(op.id);
                if (had !== undefined)
                  pols.set(op.id, { ...had, ingress: pol.ingress, egress: had.egress });
                break;
              }
              case "sets":
                sets = toSets(newSets);
                break;
              case "nsLabels":
                nsLabels = blue ? { "ns-a": { team: "blue" } } : { "ns-b": { team: "blue" } };
                break;
              case "twin":
                if (!twins.delete(op.id)) twins.add(op.id);
                break;
            }
            check();
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

const sameList = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** What a dispatch tree does with a packet on iface: the endpoint chain it goes to, if any. */
function dispatchOf(chains: Map<string, string[]>, root: string, iface: string): string[] {
  const reached: string[] = [];
  const walk = (name: string, depth: number) => {
    if (depth > 20) throw new Error(`dispatch loop at ${name}`);
    for (const rule of chains.get(name) ?? []) {
      const m = /^-[io] (\S+) -g (\S+)$/.exec(rule);
      if (!m) continue;
      const [, match, target] = m as unknown as [string, string, string];
      const hit = match.endsWith("+") ? iface.startsWith(match.slice(0, -1)) : iface === match;
      if (!hit) continue;
      if (target.startsWith(root)) walk(target, depth + 1);
      else reached.push(target);
      return; // -g: the first match decides
    }
  };
  walk(root, 0);
  return reached;
}

describe("dispatchTree", () => {
  const hex = fc.stringMatching(/^[0-9a-f]{1,11}$/);
  it("sends every interface to its own chain and no other interface anywhere", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(
          fc.oneof(
            hex.map((h) => `ocl${h}`),
            fc.stringMatching(/^[a-z][a-z0-9._-]{0,14}$/),
          ),
          { maxLength: 300 },
        ),
        fc.array(fc.stringMatching(/^[a-z0-9._-]{1,15}$/), { maxLength: 20 }),
        (names, others) => {
          const sorted = [...names].sort((a, b) => (a < b ? -1 : 1));
          const entries = sorted.map((iface) => ({
            iface,
            hook: `-i ${iface} -g ocl-fw-${iface}`,
          }));
          const tree = dispatchTree("ocl-from-wl-dispatch", "-i", entries, [
            "-p ipv6-icmp -j RETURN",
          ]);
          expect(tree[0]?.name).toBe("ocl-from-wl-dispatch");
          expect(tree[0]?.rules[0]).toBe("-p ipv6-icmp -j RETURN");
          const chains = new Map(tree.map((c) => [c.name, c.rules]));
          expect(chains.size).toBe(tree.length);
          for (const c of tree) {
            expect(c.name.length).toBeLessThanOrEqual(28);
            // Every chain but the root is reached from exactly one rule.
            if (c.name !== "ocl-from-wl-dispatch")
              expect(
                tree.flatMap((t) => t.rules).filter((r) => r.endsWith(` -g ${c.name}`)),
              ).toHaveLength(1);
          }
          for (const n of sorted)
            expect(dispatchOf(chains, "ocl-from-wl-dispatch", n)).toEqual([`ocl-fw-${n}`]);
          for (const o of others)
            if (!names.includes(o))
              expect(dispatchOf(chains, "ocl-from-wl-dispatch", o)).toEqual([]);
          if (names.length <= DISPATCH_LEAF_MAX) expect(tree).toHaveLength(1);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("with the memo of the last tree, builds what a build from nothing builds, reusing the chains whose interfaces held", () => {
    const name = fc.oneof(
      fc.stringMatching(/^[0-9a-f]{1,4}$/).map((h) => `ocl${h}`),
      fc.stringMatching(/^[a-z][a-z0-9]{0,5}$/),
    );
    fc.assert(
      fc.property(
        fc.uniqueArray(name, { maxLength: 200 }),
        fc.array(
          fc.record({
            add: fc.uniqueArray(name, { maxLength: 20 }),
            drop: fc.array(fc.nat(), { maxLength: 5 }),
            retarget: fc.array(fc.nat(), { maxLength: 3 }),
            tail: fc.boolean(),
          }),
          { minLength: 1, maxLength: 8 },
        ),
        (initial, steps) => {
          const memo = { head: [], tail: [], nodes: new Map() } as Parameters<
            typeof dispatchTree
          >[5] &
            object;
          const hooks = new Map(initial.map((n) => [n, `-o ${n} -g ocl-tw-${n}`]));
          let last: ReturnType<typeof dispatchTree> = [];
          let lastHooks: string[] | undefined;
          let lastTail = false;
          for (const step of [{ add: [], drop: [], retarget: [], tail: false }, ...steps]) {
            for (const n of step.add) hooks.set(n, `-o ${n} -g ocl-tw-${n}`);
            const names = [...hooks.keys()];
            for (const d of step.drop)
              if (names.length > 0) hooks.delete(names[d % names.length] as string);
            const left = [...hooks.keys()];
            for (const t of step.retarget)
              if (left.length > 0)
                hooks.set(left[t % left.length] as string, `-o ${left[t % left.length]} -j RETURN`);
            const entries = [...hooks]
              .sort(([a], [b]) => (a < b ? -1 : 1))
              .map(([iface, hook]) => ({ iface, hook }));
            const tail = step.tail ? ["-j DROP"] : [];
            const sameTail = step.tail === lastTail;
            const kept = dispatchTree("ocl-to-wl-dispatch", "-o", entries, [], tail, memo);
            const fresh = dispatchTree("ocl-to-wl-dispatch", "-o", entries, [], tail);
            expect(kept).toEqual(fresh);
            // A leaf chain (its interfaces' own rules) of the same name and rules as in the last
            // tree, the tail the same, is that tree's object; all of them when nothing changed.
            const before = new Map(last.map((c) => [c.name, c]));
            const leaf = (c: { rules: string[] }) =>
              !c.rules.some((r) => r.includes(" -g ocl-to-wl-dispatch-"));
            for (const c of kept) {
              const b = before.get(c.name);
              if (b !== undefined && leaf(c) && sameTail && sameList(c.rules, b.rules))
                expect(c).toBe(b);
            }
            const hooksNow = entries.map((e) => e.hook);
            if (sameTail && lastHooks !== undefined && sameList(hooksNow, lastHooks))
              expect(kept.every((c, k) => c === last[k])).toBe(true);
            lastHooks = hooksNow;
            lastTail = step.tail;
            last = kept;
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("keeps a new pod's rule in a small chain at 1,000 pods", () => {
    const names = Array.from({ length: 1001 }, (_, i) => workloadIfaceName(`ns/pod-${i}`)).sort();
    const entries = names.map((iface) => ({ iface, hook: `-o ${iface} -g ocl-tw-${iface}` }));
    const tree = dispatchTree("ocl-to-wl-dispatch", "-o", entries, []);
    const biggest = Math.max(...tree.map((c) => c.rules.length));
    expect(biggest).toBeLessThanOrEqual(40);
    const chains = new Map(tree.map((c) => [c.name, c.rules]));
    for (const n of names)
      expect(dispatchOf(chains, "ocl-to-wl-dispatch", n)).toEqual([`ocl-tw-${n}`]);
  });
});

describe("parseNet", () => {
  it("spells IPv4 nets as parseCidr does (host bits masked), whatever the input", () => {
    const octet = fc.oneof(
      fc.integer({ min: 0, max: 300 }).map(String),
      fc.constantFrom("00", "01", "255", "256"),
    );
    const len = fc.oneof(
      fc.integer({ min: 0, max: 40 }).map(String),
      fc.constantFrom("032", "", "x"),
    );
    fc.assert(
      fc.property(
        fc.tuple(octet, octet, octet, octet),
        fc.option(len, { nil: undefined }),
        (o, l) => {
          const text = `${o.join(".")}${l === undefined ? "" : `/${l}`}`;
          const slow = () => {
            const c = parseCidr(text.includes("/") ? text : `${text}/32`, false);
            return {
              family: c.family,
              cidr: `${formatAddress(c.family, c.base)}/${c.prefixLen}`,
              len: c.prefixLen,
            };
          };
          let want: ReturnType<typeof slow> | string;
          try {
            want = slow();
          } catch (err) {
            want = (err as Error).message;
          }
          let got: ReturnType<typeof parseNet> | string;
          try {
            got = parseNet(text);
          } catch (err) {
            got = (err as Error).message;
          }
          expect(got).toEqual(want);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
