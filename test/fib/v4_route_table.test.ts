import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NO_GROUP, V4RouteTable } from "../../src/fib/v4_route_table.js";

type Model = Map<string, { d: number; s: number }>;
const keyOf = (slot: number, addr: number, len: number) => `${slot}|${addr}|${len}`;

function check(t: V4RouteTable, model: Model): void {
  let des = 0;
  let ins = 0;
  for (const [k, v] of model) {
    const [slot, addr, len] = k.split("|").map(Number) as [number, number, number];
    expect(t.getDesired(slot, addr, len)).toBe(v.d);
    expect(t.getInstalled(slot, addr, len)).toBe(v.s);
    if (v.d !== NO_GROUP) des++;
    if (v.s !== NO_GROUP) ins++;
  }
  expect(t.size).toBe(model.size);
  expect(t.desiredCount).toBe(des);
  expect(t.installedCount).toBe(ins);
  // Installed routes per group (what the FIB's nexthop objects are kept by).
  const perGroup = new Map<number, number>();
  for (const v of model.values())
    if (v.s !== NO_GROUP) perGroup.set(v.s, (perGroup.get(v.s) ?? 0) + 1);
  for (const [gid, n] of perGroup) expect(t.installedOf(gid)).toBe(n);
  for (let gid = 0; gid < 8; gid++) expect(t.installedOf(gid)).toBe(perGroup.get(gid) ?? 0);
  const seen: Model = new Map();
  t.forEach((slot, addr, len, d, s) => {
    seen.set(keyOf(slot, addr, len), { d, s });
  });
  expect(seen).toEqual(model);
}

function apply(model: Model, k: string, desired: boolean, gid: number): void {
  const v = model.get(k) ?? { d: NO_GROUP, s: NO_GROUP };
  if (desired) v.d = gid;
  else v.s = gid;
  if (v.d === NO_GROUP && v.s === NO_GROUP) model.delete(k);
  else model.set(k, v);
}

describe("V4RouteTable", () => {
  it("keeps desired and installed ids like two maps under random operations", () => {
    // Few distinct keys (so deletes hit and probe runs collide), sometimes wide group ids.
    const op = fc.record({
      kind: fc.constantFrom("des", "ins", "insAt", "clear", "forget"),
      slot: fc.constantFrom(0, 1, 2, 2000),
      addr: fc.oneof(fc.integer({ min: 0, max: 40 }), fc.constant(0xffffffff)),
      len: fc.constantFrom(0, 24, 32),
      gid: fc.oneof(fc.constant(NO_GROUP), fc.integer({ min: 0, max: 5 }), fc.constant(70000)),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const t = new V4RouteTable();
        const model: Model = new Map();
        for (const o of ops) {
          const k = keyOf(o.slot, o.addr, o.len);
          if (o.kind === "des") {
            t.setDesired(o.slot, o.addr, o.len, o.gid);
            apply(model, k, true, o.gid);
          } else if (o.kind === "ins") {
            t.setInstalled(o.slot, o.addr, o.len, o.gid);
            apply(model, k, false, o.gid);
          } else if (o.kind === "insAt") {
            // The FIB's encode path: one cell lookup, its ids read, its installed id set.
            const i = t.cell(o.slot, o.addr, o.len);
            const v = model.get(k);
            expect(i >= 0).toBe(v !== undefined);
            if (i >= 0 && v) {
              expect(t.desiredAt(i)).toBe(v.d);
              expect(t.installedAt(i)).toBe(v.s);
              t.setInstalledAt(i, o.gid);
            } else t.setInstalled(o.slot, o.addr, o.len, o.gid);
            apply(model, k, false, o.gid);
          } else if (o.kind === "clear") {
            t.clearInstalled();
            for (const key of [...model.keys()]) apply(model, key, false, NO_GROUP);
          } else {
            const n = t.forgetInstalledWhere((g) => g === o.gid);
            let m = 0;
            for (const [key, v] of [...model])
              if (v.s === o.gid && v.s !== NO_GROUP) {
                apply(model, key, false, NO_GROUP);
                m++;
              }
            expect(n).toBe(m);
          }
        }
        check(t, model);
      }),
      { numRuns: 300 },
    );
  });

  it("sets a batch's desired ids like one setDesired each (setDesiredMany)", () => {
    const op = fc.record({
      many: fc.boolean(),
      slot: fc.constantFrom(0, 1, 2000),
      addrs: fc.array(fc.oneof(fc.integer({ min: 0, max: 400 }), fc.constant(0xffffffff)), {
        maxLength: 40,
      }),
      len: fc.constantFrom(0, 24, 32),
      gid: fc.oneof(fc.constant(NO_GROUP), fc.integer({ min: 0, max: 3 }), fc.constant(70000)),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const t = new V4RouteTable();
        const model: Model = new Map();
        for (const o of ops) {
          if (o.many && o.gid !== NO_GROUP) {
            const addrs = Uint32Array.from(o.addrs);
            const lens = new Uint8Array(addrs.length).fill(o.len);
            t.setDesiredMany(o.slot, addrs, lens, addrs.length, o.gid);
          } else for (const a of o.addrs) t.setDesired(o.slot, a, o.len, o.gid);
          for (const a of o.addrs) apply(model, keyOf(o.slot, a, o.len), true, o.gid);
        }
        check(t, model);
      }),
      { numRuns: 200 },
    );
    expect(() =>
      new V4RouteTable().setDesiredMany(0, Uint32Array.of(1), Uint8Array.of(33), 1, 0),
    ).toThrow(/len 33/);
  });

  it("keeps every cell findable across in-place growth with removals in between", () => {
    const op = fc.record({
      desired: fc.boolean(),
      addr: fc.integer({ min: 0, max: 3000 }),
      gid: fc.oneof(fc.constant(NO_GROUP), fc.integer({ min: 0, max: 3 })),
    });
    fc.assert(
      fc.property(fc.array(op, { minLength: 500, maxLength: 3000 }), (ops) => {
        const t = new V4RouteTable();
        const model: Model = new Map();
        for (const o of ops) {
          if (o.desired) t.setDesired(1, o.addr, 32, o.gid);
          else t.setInstalled(1, o.addr, 32, o.gid);
          apply(model, keyOf(1, o.addr, 32), o.desired, o.gid);
        }
        check(t, model);
      }),
      { numRuns: 40 },
    );
  });

  it("setDesiredMany gives each route's cell, valid until cells move (gen)", () => {
    const t = new V4RouteTable(20_000);
    const n = 5000;
    const addrs = new Uint32Array(n).map((_, i) => ((10 << 24) + i * 7) >>> 0);
    const lens = new Uint8Array(n).fill(32);
    const cells = new Int32Array(n);
    t.setDesiredMany(0, addrs, lens, n, 3, cells);
    const gen = t.gen;
    for (let k = 0; k < n; k++) {
      expect(cells[k]).toBe(t.cell(0, addrs[k], 32));
      expect(t.desiredAt(cells[k])).toBe(3);
    }
    // Inserts below the load limit move no cell: the indexes hold, and gen stays.
    const room = Math.floor((t.bytes / 10) * 0.85) - t.size;
    expect(room).toBeGreaterThan(0);
    const few = Math.min(room, 100);
    t.setDesiredMany(
      0,
      addrs.map((a) => a + 1),
      lens,
      few,
      4,
    );
    expect(t.gen).toBe(gen);
    expect(t.cell(0, addrs[n - 1], 32)).toBe(cells[n - 1]);
    // A removal (backward shift) or a growth moves cells: gen changes.
    t.setDesired(0, addrs[0], 32, NO_GROUP);
    expect(t.gen).not.toBe(gen);
    const g2 = t.gen;
    const more = new Uint32Array(4 * n).map((_, i) => ((11 << 24) + i) >>> 0);
    t.setDesiredMany(0, more, new Uint8Array(4 * n).fill(32), 4 * n, 5);
    expect(t.gen).not.toBe(g2);
  });

  it("holds 200,000 /32s in 10 bytes a cell, under 15 a route and removes them all", () => {
    const t = new V4RouteTable();
    const base = 10 << 24;
    for (let i = 0; i < 200_000; i++) t.setDesired(0, base + i, 32, 1);
    for (let i = 0; i < 200_000; i++) t.setInstalled(0, base + i, 32, 1);
    expect(t.size).toBe(200_000);
    let lost = 0;
    for (let i = 0; i < 200_000; i++) if (t.getInstalled(0, base + i, 32) !== 1) lost++;
    expect(lost).toBe(0);
    expect(t.bytes / 200_000).toBeLessThan(15);
    expect(t.getDesired(0, base + 199_999, 32)).toBe(1);
    expect(t.getDesired(0, base + 200_000, 32)).toBe(NO_GROUP);
    for (let i = 0; i < 200_000; i += 2) t.setDesired(0, base + i, 32, NO_GROUP);
    expect(t.desiredCount).toBe(100_000);
    t.clearInstalled();
    expect(t.size).toBe(100_000);
    expect(t.getDesired(0, base + 1, 32)).toBe(1);
    expect(t.getInstalled(0, base + 1, 32)).toBe(NO_GROUP);
    for (let i = 1; i < 200_000; i += 2) t.setDesired(0, base + i, 32, NO_GROUP);
    expect(t.size).toBe(0);
  });

  it("finds every cell after growth with random addresses (probe runs that wrap past the end)", () => {
    // Random keys fill the last cells too, so growth meets runs that wrap to the start.
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.integer({ min: 100, max: 20_000 }),
        fc.constantFrom(0, 3, 1500),
        (seed, n, slot) => {
          const t = new V4RouteTable();
          const last = new Map<number, number>();
          let x = seed;
          for (let i = 0; i < n; i++) {
            x = (Math.imul(x, 1664525) + 1013904223) >>> 0; // LCG: addresses all over the space
            t.setDesired(slot, x, 32, i % 5);
            last.set(x, i % 5);
          }
          expect(t.size).toBe(last.size);
          for (const [a, g] of last) expect(t.getDesired(slot, a, 32)).toBe(g);
        },
      ),
      { numRuns: 20 },
    );
  });

  it("refuses a cell it cannot encode", () => {
    const t = new V4RouteTable();
    expect(() => t.setDesired(0, 1, 33, 0)).toThrow(/len 33/);
    expect(() => t.setDesired(2 ** 15, 1, 8, 0)).toThrow(/slot 32768/);
  });
});
