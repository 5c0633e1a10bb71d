// bounded_stop: a stop's steps against one deadline; a step that hangs is abandoned and named, a
// failing one logged, the steps after it still run. Time is the test's own clock (no sleeps).
import { describe, expect, it } from "vitest";
import { StopDeadline, within } from "../../src/lib/bounded_stop.js";

function logs() {
  const lines: { level: string; obj: Record<string, unknown>; msg?: string }[] = [];
  return {
    lines,
    log: {
      warn: (obj: object, msg?: string) =>
        lines.push({ level: "warn", obj: obj as Record<string, unknown>, msg }),
      error: (obj: object, msg?: string) =>
        lines.push({ level: "error", obj: obj as Record<string, unknown>, msg }),
    },
  };
}

describe("within", () => {
  it("says done for a promise that settles (also by failing) and timeout for one that does not", async () => {
    expect(await within(Promise.resolve(1), 1000)).toBe("done");
    expect(await within(Promise.reject(new Error("x")), 1000)).toBe("done");
    expect(await within(new Promise(() => {}), 5)).toBe("timeout");
  });
});

describe("StopDeadline", () => {
  it("abandons a step that hangs at what is left of the budget, names it, and runs the next", async () => {
    const { lines, log } = logs();
    const d = new StopDeadline(50, log, 10);
    const order: string[] = [];
    expect(
      await d.step("quick", () => {
        order.push("quick");
      }),
    ).toBe(true);
    expect(await d.step("hangs", () => new Promise(() => order.push("hangs")))).toBe(false);
    // The budget is spent: the next step still runs, given minStepMs.
    expect(d.leftMs).toBe(0);
    expect(await d.step("after", async () => order.push("after"))).toBe(true);
    expect(await d.step("hangs too", () => new Promise(() => {}))).toBe(false);
    expect(order).toEqual(["quick", "hangs", "after"]);
    expect(d.abandoned).toEqual(["hangs", "hangs too"]);
    expect(lines.map((l) => l.msg)).toEqual([
      "Stop: abandoned hangs (not done within its bound)",
      "Stop: abandoned hangs too (not done within its bound)",
    ]);
    expect(lines[0]?.obj.step).toBe("hangs");
  });

  it("logs a step that fails (thrown or rejected) with its name and goes on", async () => {
    const { lines, log } = logs();
    const d = new StopDeadline(1000, log);
    expect(
      await d.step("throws", () => {
        throw new Error("boom");
      }),
    ).toBe(true);
    expect(await d.step("rejects", () => Promise.reject(new Error("bang")))).toBe(true);
    expect(d.abandoned).toEqual([]);
    expect(lines).toEqual([
      { level: "error", obj: { step: "throws", error: "boom" }, msg: "Stop failed" },
      { level: "error", obj: { step: "rejects", error: "bang" }, msg: "Stop failed" },
    ]);
  });

  it("bounds a step by its cap when that is smaller than what is left", async () => {
    const { log } = logs();
    let now = 0;
    const d = new StopDeadline(60_000, log, 100, () => now);
    const p = d.step("capped", () => new Promise(() => {}), 5);
    now = 10;
    expect(await p).toBe(false);
    expect(d.abandoned).toEqual(["capped"]);
    expect(d.leftMs).toBe(59_990);
  });
});
