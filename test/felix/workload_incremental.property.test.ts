// Property: renderWorkloads with its memory of earlier renders (WorkloadRenderCache: each
// workload as made last, the ids' order, the last result) renders exactly what a render from
// nothing does after any sequence of node states (pods added, removed, readdressed, renamed,
// given floating IPs, spoofing allowances or host addresses; two pods of one id, address or
// interface), or refuses them with the same error; and a state the same as the last one's is
// rendered as the same objects.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { renderWorkloads, type Workload, WorkloadRenderCache } from "../../src/felix/workload.js";

const arbWorkload: fc.Arbitrary<Workload> = fc
  .record({
    id: fc.integer({ min: 0, max: 30 }),
    v4: fc.uniqueArray(fc.integer({ min: 1, max: 40 }), { maxLength: 2 }),
    v6: fc.boolean(),
    iface: fc.option(fc.integer({ min: 0, max: 30 }), { nil: undefined, freq: 4 }),
    floating: fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined, freq: 4 }),
    spoof: fc.boolean(),
    hostAddresses: fc.option(fc.constantFrom<string[][]>(["169.254.1.1/32"], []), {
      nil: undefined,
      freq: 4,
    }),
    bad: fc.integer({ min: 0, max: 40 }),
  })
  .map((w) => ({
    id: `ns/pod-${w.id}`,
    ...(w.iface !== undefined ? { hostIface: `oclw${w.iface}` } : {}),
    // Now and then an address that does not parse.
    ipv4: w.v4.map((n) => (w.bad === 0 ? `10.0.0.${n + 300}` : `10.0.0.${n}`)),
    ipv6: w.v6 ? [`fd00::${w.v4[0] ?? 99}`] : [],
    ...(w.floating !== undefined
      ? { floatingIps: [{ external: `192.0.2.${w.floating}`, internal: `10.0.0.${w.v4[0]}` }] }
      : {}),
    ...(w.spoof ? { spoofPrefixes: ["10.9.0.0/16"] } : {}),
    ...(w.hostAddresses !== undefined ? { hostAddresses: w.hostAddresses } : {}),
  }));

const arbState = fc.record({
  workloads: fc.array(arbWorkload, { maxLength: 25 }),
  blocks: fc.subarray(["10.0.0.0/26", "10.0.0.64/26", "fd00::/122"]),
  rpFilter: fc.constantFrom<(0 | 1 | 2 | undefined)[]>(undefined, 1, 2),
});

const outcome = (f: () => unknown) => {
  try {
    return { ok: JSON.parse(JSON.stringify(f())) };
  } catch (err) {
    return { error: (err as Error).message };
  }
};

describe("renderWorkloads, incremental", () => {
  it("renders what a render from nothing renders, after any sequence of node states", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            arbState,
            // The same workloads again (the cache's fast path), or one changed.
            fc.constant("again" as const),
            fc.record({ drop: fc.nat() }),
          ),
          { minLength: 1, maxLength: 10 },
        ),
        (steps) => {
          const cache = new WorkloadRenderCache();
          let state: { workloads: Workload[]; blocks: string[]; rpFilter: 0 | 1 | 2 | undefined } =
            { workloads: [], blocks: [], rpFilter: undefined };
          let last: ReturnType<typeof renderWorkloads> | undefined;
          for (const step of steps) {
            const again = step === "again";
            if (step !== "again" && "drop" in step) {
              const ws = [...state.workloads];
              ws.splice(step.drop % Math.max(1, ws.length), 1);
              state = { ...state, workloads: ws };
            } else if (step !== "again") state = step;
            const opts = state.rpFilter !== undefined ? { rpFilter: state.rpFilter } : {};
            // Fresh objects of the same values, as the node daemon builds them each pass.
            const copy = () => state.workloads.map((w: Workload) => structuredClone(w));
            let kept: ReturnType<typeof renderWorkloads> | undefined;
            const got = outcome(() => {
              kept = renderWorkloads(copy(), [...state.blocks], opts, cache);
              return kept;
            });
            const want = outcome(() =>
              renderWorkloads(copy(), [...state.blocks], opts, new WorkloadRenderCache()),
            );
            expect(got).toEqual(want);
            // (Two workloads of one id: nothing is kept.)
            const unique =
              new Set(state.workloads.map((w) => w.id)).size === state.workloads.length;
            if (again && unique && last !== undefined && kept !== undefined) {
              expect(kept.routes.every((r, i) => r === last?.routes[i])).toBe(true);
              expect(kept.ifaces.every((x, i) => x === last?.ifaces[i])).toBe(true);
            }
            last = kept;
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});
