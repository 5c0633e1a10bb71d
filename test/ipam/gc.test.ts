// planGc, the pure IPAM garbage collector, with a fake clock: one observation never releases;
// two a grace apart do; an address given out again (other sequence) or taken by a
// WorkloadEndpoint in between is dropped; empty blocks and gone nodes; and a property test
// against a model that remembers every observation.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  addressOf,
  assignFromBlock,
  type Block,
  newBlock,
  releaseFromBlock,
} from "../../src/ipam/block.js";
import {
  decodeGcState,
  EMPTY_GC_STATE,
  encodeGcState,
  type GcAction,
  type GcObservation,
  type GcState,
  planGc,
} from "../../src/ipam/gc.js";
import { parseCidr } from "../../src/lib/ip.js";

const MIN = 60_000;
const OPTS = { leakGraceMs: 15 * MIN, emptyBlockGraceMs: 5 * MIN };
const T0 = Date.parse("2026-01-01T00:00:00Z");

function blockWith(node: string | null, handles: string[], cidr = "10.0.0.0/28"): Block {
  let b = newBlock(parseCidr(cidr), node ? `host:${node}` : null, new Date(T0).toISOString());
  for (const h of handles) b = assignFromBlock(b, 1, { handleId: h, secondary: {} }).block;
  return b;
}

function obs(blocks: Block[], weps: string[] = [], nodes: string[] = ["n1"]): GcObservation {
  return {
    blocks,
    affinities: blocks
      .filter((b) => b.affinity?.startsWith("host:"))
      .map((b) => ({
        state: "confirmed" as const,
        node: (b.affinity as string).slice(5),
        cidr: `${addressOf(b, 0)}/28`,
      })),
    endpointAddresses: new Set(weps),
    nodes: new Set(nodes),
  };
}

const releases = (actions: GcAction[]) =>
  actions.flatMap((a) => (a.kind === "releaseAddress" ? [a.address] : []));

describe("planGc", () => {
  it("one observation never releases, whatever the grace", () => {
    const b = blockWith("n1", ["h-a", "h-b"]);
    for (const grace of [0, 15 * MIN]) {
      const p = planGc(EMPTY_GC_STATE, obs([b]), T0, { ...OPTS, leakGraceMs: grace });
      expect(releases(p.actions)).toEqual([]);
      expect(p.next.leaks.map((l) => l.address)).toEqual(["10.0.0.0", "10.0.0.1"]);
    }
  });

  it("two observations at least the grace apart release; closer ones do not", () => {
    const b = blockWith("n1", ["h-a", "h-b"]);
    const first = planGc(EMPTY_GC_STATE, obs([b], ["10.0.0.1"]), T0, OPTS);
    expect(first.next.leaks).toHaveLength(1);
    // 14 minutes later: still watching, firstSeen kept.
    const early = planGc(first.next, obs([b], ["10.0.0.1"]), T0 + 14 * MIN, OPTS);
    expect(releases(early.actions)).toEqual([]);
    expect(early.next.leaks[0]?.firstSeen).toBe(T0);
    // 15 minutes after the first look: released (with handle and sequence to check again).
    const due = planGc(early.next, obs([b], ["10.0.0.1"]), T0 + 15 * MIN, OPTS);
    expect(due.actions).toEqual([
      {
        kind: "releaseAddress",
        address: "10.0.0.0",
        handleId: "h-a",
        sequence: 0,
        block: "10.0.0.0/28",
        reason: "no WorkloadEndpoint holds this address",
        leakedSince: T0,
      },
    ]);
  });

  it("an address released and given out again in between (other sequence) is not released", () => {
    const b = blockWith("n1", ["h-a"]);
    const first = planGc(EMPTY_GC_STATE, obs([b]), T0, OPTS);
    // Released, the block's free queue cycles back to ordinal 0 under a new sequence number.
    let b2 = releaseFromBlock(b, [{ ordinal: 0 }], T0 + MIN).block;
    for (let i = 0; i < 16; i++)
      b2 = assignFromBlock(b2, 1, { handleId: "h-a", secondary: {} }).block;
    expect(b2.seqForAllocation.get(0)).not.toBe(0);
    const second = planGc(first.next, obs([b2], addrsExcept(b2, "10.0.0.0")), T0 + 20 * MIN, OPTS);
    expect(releases(second.actions)).toEqual([]);
    // The new allocation is a fresh candidate from this observation on.
    expect(second.next.leaks).toEqual([
      expect.objectContaining({ address: "10.0.0.0", firstSeen: T0 + 20 * MIN }),
    ]);
  });

  it("a WorkloadEndpoint appearing drops the candidate; disappearing starts it afresh", () => {
    const b = blockWith("n1", ["h-a"]);
    const first = planGc(EMPTY_GC_STATE, obs([b]), T0, OPTS);
    const held = planGc(first.next, obs([b], ["10.0.0.0"]), T0 + 10 * MIN, OPTS);
    expect(held.next.leaks).toEqual([]);
    const again = planGc(held.next, obs([b]), T0 + 20 * MIN, OPTS);
    expect(releases(again.actions)).toEqual([]);
    expect(again.next.leaks[0]?.firstSeen).toBe(T0 + 20 * MIN);
  });

  it("a clock that went back releases nothing", () => {
    const b = blockWith("n1", ["h-a"]);
    const first = planGc(EMPTY_GC_STATE, obs([b]), T0, OPTS);
    expect(releases(planGc(first.next, obs([b]), T0 - 60 * MIN, OPTS).actions)).toEqual([]);
  });

  it("empty blocks of live nodes after their grace; unowned empty blocks deleted", () => {
    const used = blockWith("n1", ["h-a"], "10.0.0.0/28");
    const empty = releaseFromBlock(
      blockWith("n1", ["h-x"], "10.0.0.16/28"),
      [{ ordinal: 0 }],
      T0,
    ).block;
    const unowned = releaseFromBlock(
      blockWith(null, ["h-y"], "10.0.0.32/28"),
      [{ ordinal: 0 }],
      T0,
    ).block;
    const o = obs([used, empty, unowned], ["10.0.0.0"]);
    expect(planGc(EMPTY_GC_STATE, o, T0 + 4 * MIN, OPTS).actions).toEqual([]);
    expect(planGc(EMPTY_GC_STATE, o, T0 + 5 * MIN, OPTS).actions).toEqual([
      { kind: "deleteUnownedBlock", block: "10.0.0.32/28" },
      { kind: "releaseEmptyBlocks", node: "n1", blocks: ["10.0.0.16/28"] },
    ]);
  });

  it("a node without a Node resource is released after two observations a grace apart", () => {
    const b = blockWith("gone", ["h-a", "ipip-tunnel-addr-gone"]);
    const o = obs([b], ["10.0.0.0"], ["n1"]);
    const first = planGc(EMPTY_GC_STATE, o, T0, OPTS);
    expect(first.actions).toEqual([]);
    expect(first.next.goneNodes).toEqual([{ node: "gone", firstSeen: T0 }]);
    // The tunnel address of the gone node is a leak candidate; the pod's address is held.
    expect(first.next.leaks.map((l) => l.handleId)).toEqual(["ipip-tunnel-addr-gone"]);
    const second = planGc(first.next, o, T0 + 15 * MIN, OPTS);
    expect(second.actions).toEqual([
      expect.objectContaining({ kind: "releaseAddress", handleId: "ipip-tunnel-addr-gone" }),
      { kind: "releaseNode", node: "gone", blocks: ["10.0.0.0/28"], goneSince: T0 },
    ]);
    // The node came back in between: dropped.
    const back = planGc(first.next, obs([b], ["10.0.0.0"], ["n1", "gone"]), T0 + 15 * MIN, OPTS);
    expect(back.actions).toEqual([]);
    expect(back.next.goneNodes).toEqual([]);
  });

  it("the state survives its stored form; bad stored state is refused by field", () => {
    const b = blockWith("gone", ["h-a"]);
    const s = planGc(EMPTY_GC_STATE, obs([b], [], []), T0, OPTS).next;
    expect(decodeGcState(encodeGcState(s))).toEqual(s);
    expect(() => decodeGcState('{"version":1,"observedAt":1,"leaks":[{}],"goneNodes":[]}')).toThrow(
      /address/,
    );
  });
});

function addrsExcept(b: Block, except: string): string[] {
  const out: string[] = [];
  for (let o = 0; o < b.owner.length; o++)
    if ((b.owner[o] as number) >= 0 && addressOf(b, o) !== except) out.push(addressOf(b, o));
  return out;
}

// ---- Property: a release is always of an address leaked, unchanged, at every observation
// since it was first seen leaked, for at least the grace, seen on at least two observations.
type Step =
  | { op: "assign"; h: number }
  | { op: "release"; pick: number }
  | { op: "wepAdd"; pick: number }
  | { op: "wepDel"; pick: number }
  | { op: "observe"; advanceMin: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("assign" as const), h: fc.integer({ min: 0, max: 5 }) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("release" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("wepAdd" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("wepDel" as const), pick: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("observe" as const),
      advanceMin: fc.integer({ min: 0, max: 20 }),
    }),
  },
);

describe("planGc property", () => {
  it("never releases an address held by a WEP or given out again since it was first seen leaked", () => {
    let released = 0;
    fc.assert(
      fc.property(
        fc.constantFrom(0, 5 * MIN, 15 * MIN),
        fc.array(step, { maxLength: 80 }),
        (grace, steps) => {
          const opts = { ...OPTS, leakGraceMs: grace };
          let block = newBlock(parseCidr("10.0.0.0/30"), "host:n1", new Date(T0).toISOString());
          const weps = new Set<string>();
          let state: GcState = EMPTY_GC_STATE;
          let now = T0;
          // The model: per "address|handle|sequence", the first observation of its current run of
          // observations that all saw it leaked (a run ends at any observation that did not).
          let streak = new Map<string, { index: number; at: number }>();
          let index = 0;
          const allocated = () => {
            const out: number[] = [];
            for (let o = 0; o < block.owner.length; o++)
              if ((block.owner[o] as number) >= 0) out.push(o);
            return out;
          };
          for (const s of steps) {
            if (s.op === "assign") {
              block = assignFromBlock(block, 1, { handleId: `h${s.h}`, secondary: {} }).block;
            } else if (s.op === "release") {
              const a = allocated();
              if (a.length > 0)
                block = releaseFromBlock(
                  block,
                  [{ ordinal: a[s.pick % a.length] as number }],
                  now,
                ).block;
            } else if (s.op === "wepAdd") {
              weps.add(addressOf(block, s.pick % block.owner.length));
            } else if (s.op === "wepDel") {
              const list = [...weps];
              if (list.length > 0) weps.delete(list[s.pick % list.length] as string);
            } else {
              now += s.advanceMin * MIN;
              index++;
              const next = new Map<string, { index: number; at: number }>();
              for (const o of allocated()) {
                const addr = addressOf(block, o);
                const attr = block.attributes[block.owner[o] as number];
                const id = `${addr}|${attr?.handleId}|${block.seqForAllocation.get(o)}`;
                if (!weps.has(addr)) next.set(id, streak.get(id) ?? { index, at: now });
              }
              streak = next;
              const plan = planGc(state, obs([block], [...weps]), now, opts);
              for (const a of plan.actions) {
                if (a.kind !== "releaseAddress") continue;
                const run = streak.get(`${a.address}|${a.handleId}|${a.sequence}`);
                // Leaked now, unchanged, on every observation of a run of at least two that
                // spans the grace.
                expect(run).toBeDefined();
                expect(index - (run?.index ?? index)).toBeGreaterThanOrEqual(1);
                expect(now - (run?.at ?? now)).toBeGreaterThanOrEqual(grace);
                released++;
                expect(a.leakedSince).toBe(run?.at);
                // What the adapter then does: release with the sequence number.
                const o = Number(BigInt(a.address.split(".")[3] as string));
                block = releaseFromBlock(block, [{ ordinal: o, sequence: a.sequence }], now).block;
              }
              state = decodeGcState(encodeGcState(plan.next));
            }
          }
        },
      ),
      { numRuns: 500 },
    );
    // Not vacuous: releases did happen.
    expect(released).toBeGreaterThan(20);
  });
});
