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

/** A model of iptables-restore --noflush over one table (the subset our payloads use). */
function restore(table: SavedTable, payload: string): SavedTable {
  const chains = new Map(table.chains);
  let rules = [...table.rules];
  for (const line of payload.split("\n")) {
    if (line === "" || line.startsWith("*") || line === "COMMIT") continue;
    const decl = /^:(\S+) (\S+)/.exec(line);
    const add = /^-A (\S+) (.*)$/.exec(line);
    const del = /^-D (\S+) (.*)$/.exec(line);
    const ins = /^-I (\S+) (\d+) (.*)$/.exec(line);
    const drop = /^-X (\S+)$/.exec(line);
    if (decl) {
      if (chains.has(decl[1])) rules = rules.filter((r) => r.chain !== decl[1]);
      else chains.set(decl[1], decl[2]);
    } else if (add) {
      if (!chains.has(add[1])) throw new Error(`no chain ${add[1]}`);
      rules.push({ chain: add[1], spec: add[2] });
    } else if (del) {
      const i = rules.findIndex((r) => r.chain === del[1] && r.spec === del[2]);
      if (i < 0) throw new Error(`-D of a missing rule: ${line}`);
      rules.splice(i, 1);
    } else if (ins) {
      const [chain, pos, spec] = [ins[1], Number(ins[2]), ins[3]];
      const idx = rules.map((r, i) => [r, i] as const).filter(([r]) => r.chain === chain);
      const at = pos - 1 < idx.length ? idx[pos - 1][1] : rules.length;
      rules.splice(at, 0, { chain, spec });
    } else if (drop) {
      const name = drop[1];
      if (rules.some((r) => r.chain === name || r.spec.endsWith(`-j ${name}`)))
        throw new Error(`-X of a non-empty or referenced chain ${name}`);
      chains.delete(name);
    } else {
      throw new Error(`model does not know: ${line}`);
    }
  }
  return { table: table.table, chains, rules };
}

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
