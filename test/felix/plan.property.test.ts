// Property: from any table holding others' rules and chains plus any mess of ours (missing,
// drifted, duplicated or misplaced hooks, stale ocl- chains), one planned iptables-restore
// payload converges it: the next plan is empty, and others' rules keep their relative order.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type NatInput,
  planTable,
  renderFilterTable,
  renderNatTable,
  type SavedTable,
  type TableSpec,
} from "../../src/felix/iptables.js";
import { restoreModel as restore } from "./model.js";

const nat: NatInput = {
  family: 4,
  pools: [{ cidr: "10.244.0.0/16", natOutgoing: true }],
  clusterCidrs: ["10.96.0.0/12"],
  nodeAddresses: ["10.255.0.11"],
};

const foreignRule = fc.constantFrom(
  "-s 192.0.2.1/32 -j DROP",
  "-j DOCKER-USER",
  "-i eth0 -j ACCEPT",
  "-d 198.51.100.0/24 -j RETURN",
);

function arbTable(spec: TableSpec, builtins: string[]): fc.Arbitrary<SavedTable> {
  const ours = spec.chains.flatMap((c) => c.rules.map((r) => ({ chain: c.name, spec: r })));
  const hooks = spec.hooks.map((h) => ({ chain: h.builtin, spec: h.rule }));
  const anyRule = fc.oneof(
    fc.record({ chain: fc.constantFrom(...builtins), spec: foreignRule }),
    fc.record({ chain: fc.constant("DOCKER-USER"), spec: foreignRule }),
    fc.constantFrom(...ours, ...hooks),
    fc.record({
      chain: fc.constantFrom(...builtins),
      spec: fc.constantFrom("-j ocl-stale", "-j ocl-old-thing"),
    }),
    fc.record({ chain: fc.constantFrom("ocl-stale", "ocl-old-thing"), spec: foreignRule }),
  );
  return fc.array(anyRule, { maxLength: 25 }).map((rules) => {
    const chains = new Map<string, string>(builtins.map((b) => [b, "ACCEPT"]));
    chains.set("DOCKER-USER", "-");
    for (const r of rules) if (!chains.has(r.chain)) chains.set(r.chain, "-");
    for (const r of rules) {
      const m = /-j (ocl-\S+)/.exec(r.spec);
      if (m && !chains.has(m[1])) chains.set(m[1], "-");
    }
    return { table: spec.table, chains, rules };
  });
}

const foreign = (t: SavedTable) =>
  t.rules.filter((r) => !r.chain.startsWith("ocl-") && !/-j ocl-/.test(r.spec));

describe("planTable() converges in one step", () => {
  for (const [name, spec, builtins] of [
    ["filter", renderFilterTable(), ["INPUT", "FORWARD", "OUTPUT"]],
    ["nat", renderNatTable(nat), ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]],
  ] as const) {
    it(`for the ${name} table`, () => {
      fc.assert(
        fc.property(arbTable(spec, [...builtins]), (current) => {
          const plan = planTable(spec, current);
          const after = plan.payload ? restore(current, plan.payload) : current;
          expect(planTable(spec, after).payload).toBeNull();
          expect(foreign(after)).toEqual(foreign(current));
          expect([...after.chains.keys()].filter((c) => c.startsWith("ocl-")).sort()).toEqual(
            spec.chains.map((c) => c.name).sort(),
          );
        }),
        { numRuns: 300 },
      );
    });
  }
});
