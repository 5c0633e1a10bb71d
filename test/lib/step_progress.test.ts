// The step progress line (the demo's): on a terminal one line redrawn in place naming the step
// waited for, cleared around each stdout line and at the finish; with --progress off a terminal a
// plain line per step and a step's count at most every second; nothing with --json or when piped
// without --progress.
import { describe, expect, it } from "vitest";
import { StepProgress } from "../../src/lib/step_progress.js";

function fake(isTTY: boolean) {
  const out: string[] = [];
  let t = 0;
  return {
    out,
    advance: (ms: number) => {
      t += ms;
    },
    opts: { stream: { write: (s: string) => out.push(s), isTTY }, now: () => t, redraw: false },
  };
}

describe("StepProgress", () => {
  it("on a terminal: the step in place, cleared around a stdout line and at the finish", () => {
    const f = fake(true);
    const p = new StepProgress("demo", 3, f.opts);
    p.step("namespaces");
    f.advance(1500);
    const printed: string[] = [];
    p.around(() => printed.push("demo: namespaces in 1.50 s"));
    p.step("daemons started");
    p.count(1, 4);
    f.advance(50);
    p.count(2, 4); // too soon: not drawn
    f.advance(150);
    p.count(4, 4);
    p.finish();
    expect(printed).toEqual(["demo: namespaces in 1.50 s"]);
    expect(f.out).toEqual([
      "\r\x1b[Kdemo: [1/3] namespaces... 0.0 s",
      "\r\x1b[K",
      "\r\x1b[Kdemo: [1/3] namespaces... 1.5 s",
      "\r\x1b[Kdemo: [2/3] daemons started... 1.5 s",
      "\r\x1b[Kdemo: [2/3] daemons started 1/4... 1.5 s",
      "\r\x1b[Kdemo: [2/3] daemons started 4/4... 1.7 s",
      "\r\x1b[K",
    ]);
  });

  it("with --progress off a terminal: a plain line per step, counts at most every second and the last", () => {
    const f = fake(false);
    const p = new StepProgress("demo", 2, { ...f.opts, flag: true });
    p.step("namespaces");
    p.around(() => {});
    p.step("pings");
    p.count(1, 4);
    f.advance(400);
    p.count(2, 4);
    f.advance(700);
    p.count(3, 4);
    f.advance(100);
    p.count(4, 4);
    p.finish();
    expect(f.out).toEqual([
      "demo: [1/2] namespaces... 0.0 s\n",
      "demo: [2/2] pings... 0.0 s\n",
      "demo: [2/2] pings 3/4... 1.1 s\n",
      "demo: [2/2] pings 4/4... 1.2 s\n",
    ]);
  });

  it("nothing with --json, nor piped without --progress", () => {
    for (const [tty, o] of [
      [true, { json: true, flag: true }],
      [false, {}],
    ] as const) {
      const f = fake(tty);
      const p = new StepProgress("demo", 1, { ...f.opts, ...o });
      p.step("namespaces");
      p.count(1, 1);
      p.around(() => {});
      p.finish();
      expect(p.enabled).toBe(false);
      expect(f.out).toEqual([]);
    }
  });
});
