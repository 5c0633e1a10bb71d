// The real clock's timers: one longer than setTimeout's limit (2^31-1 ms, 24.8 days; RFC 9494's
// long-lived stale time goes up to 194 days) fires at its time, not at once.
import { afterEach, describe, expect, it, vi } from "vitest";
import { realClock } from "../../src/bgp/io/clock.js";

describe("realClock.setTimer", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("chains a timer past setTimeout's limit and fires it at its time", () => {
    vi.useFakeTimers();
    const fired: number[] = [];
    const start = Date.now();
    const ms = 16_777_215 * 1000; // the longest long-lived stale time
    realClock.setTimer(ms, () => fired.push(Date.now() - start));
    vi.advanceTimersByTime(2 ** 31 - 1);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(ms - (2 ** 31 - 1) - 1);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual([ms]);
  });

  it("cancels a chained timer", () => {
    vi.useFakeTimers();
    let fired = false;
    const t = realClock.setTimer(2 ** 32, () => {
      fired = true;
    });
    vi.advanceTimersByTime(2 ** 31);
    t.cancel();
    vi.advanceTimersByTime(2 ** 32);
    expect(fired).toBe(false);
  });

  it("cancels a short timer, which is not fired", () => {
    vi.useFakeTimers();
    let n = 0;
    const t = realClock.setTimer(5000, () => n++);
    vi.advanceTimersByTime(4999);
    t.cancel();
    vi.advanceTimersByTime(10_000);
    expect(n).toBe(0);
  });

  it("fires a short timer once", () => {
    vi.useFakeTimers();
    let n = 0;
    realClock.setTimer(5000, () => n++);
    vi.advanceTimersByTime(10_000);
    expect(n).toBe(1);
  });
});
