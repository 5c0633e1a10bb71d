// The demo's bounded retry of a reachability check (src/node/demo.ts retried): a lost echo is
// tried again until answered; a check that stays unanswered for the limit closes the budget, so
// every later one gets a single try (a broken network fails in one limit, not one per check).
import { describe, expect, it } from "vitest";
import { retried } from "../../src/node/demo.js";

describe("demo retried", () => {
  it("tries again until answered, and counts the tries", () => {
    const answers = [false, false, true];
    const budget = { open: true };
    const r = retried(
      () => answers.shift() ?? false,
      (ok) => ok,
      budget,
      30_000,
    );
    expect(r).toEqual({ value: true, attempts: 3 });
    expect(budget.open).toBe(true);
  });

  it("gives up after the limit and closes the budget; later checks get one try each", () => {
    const budget = { open: true };
    const lost = retried(
      () => false,
      (ok) => ok,
      budget,
      20,
    );
    expect(lost.value).toBe(false);
    expect(lost.attempts).toBeGreaterThan(1);
    expect(budget.open).toBe(false);
    let tries = 0;
    const next = retried(
      () => {
        tries++;
        return false;
      },
      (ok) => ok,
      budget,
      30_000,
    );
    expect(next).toEqual({ value: false, attempts: 1 });
    expect(tries).toBe(1);
    // An answered check is still answered with the budget closed.
    expect(
      retried(
        () => true,
        (ok) => ok,
        budget,
      ),
    ).toEqual({ value: true, attempts: 1 });
  });
});
