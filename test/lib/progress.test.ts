// Progress lines: on a terminal one line redrawn in place and ended at the finish, with
// --progress off a terminal plain lines at most every second, nothing with --json or when piped
// without --progress; and `ocelot apply --progress` over 200 documents draws them on stderr
// while stdout keeps exactly one line per document (piped without the flag: stderr is empty).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Progress } from "../../src/lib/progress.js";
import { runSync } from "../helpers/limits.js";

function fake(isTTY: boolean) {
  const out: string[] = [];
  let t = 0;
  return {
    out,
    advance: (ms: number) => {
      t += ms;
    },
    opts: { stream: { write: (s: string) => out.push(s), isTTY }, now: () => t },
  };
}

describe("Progress", () => {
  it("on a terminal: redrawn in place (\\r, erase line) at most every 100 ms, ended at finish", () => {
    const f = fake(true);
    const p = new Progress("writing", 4, f.opts);
    p.tick();
    f.advance(50);
    p.tick(); // too soon: not drawn
    f.advance(100);
    p.tick();
    f.advance(850);
    p.tick();
    p.finish();
    expect(f.out).toEqual([
      "\r\x1b[Kwriting: 1/4 (25%) 0.0 s",
      "\r\x1b[Kwriting: 3/4 (75%) 20/s 0.1 s",
      "\r\x1b[Kwriting: 4/4 (100%) 4/s 1.0 s",
      "\r\x1b[Kwriting: 4/4 (100%) 4/s 1.0 s\n",
    ]);
  });

  it("piped: nothing unless --progress (then whole lines, 1 s apart); never with --json", () => {
    const piped = fake(false);
    const p = new Progress("checking", 2, piped.opts);
    p.tick(2);
    p.finish();
    expect([p.enabled, piped.out]).toEqual([false, []]);
    const flagged = fake(false);
    const q = new Progress("checking", 3, { ...flagged.opts, flag: true });
    q.tick();
    flagged.advance(500);
    q.tick();
    flagged.advance(500);
    q.tick();
    q.finish();
    expect(flagged.out).toEqual([
      "checking: 1/3 (33%) 0.0 s\n",
      "checking: 3/3 (100%) 3/s 1.0 s\n",
      "checking: 3/3 (100%) 3/s 1.0 s\n",
    ]);
    const json = fake(true);
    const r = new Progress("x", 1, { ...json.opts, flag: true, json: true });
    r.tick();
    r.finish();
    expect([r.enabled, json.out]).toEqual([false, []]);
  });
});

describe("ocelot apply --progress", () => {
  it("draws progress on stderr over 200 documents; piped without the flag, stderr stays empty", () => {
    const dir = mkdtempSync(join(tmpdir(), "ocelot-progress-"));
    try {
      const bin = join(new URL("../../", import.meta.url).pathname, "bin/ocelot");
      const docs = Array.from(
        { length: 200 },
        (_, i) =>
          `apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: set-${i}\nspec:\n  nets: ["10.${i}.0.0/16"]\n`,
      ).join("---\n");
      const file = join(dir, "sets.yaml");
      writeFileSync(file, docs);
      const store = `file:${join(dir, "store.db")}`;
      const r = runSync(bin, ["apply", "-f", file, "--progress", "--datastore", store]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout.trim().split("\n")).toHaveLength(200);
      const lines = r.stderr.trim().split("\n");
      expect(
        lines.some((l) => /^checking: 200\/200 \(100%\)/.test(l)),
        r.stderr,
      ).toBe(true);
      expect(lines.at(-1)).toMatch(/^writing: 200\/200 \(100%\)( \d+\/s)? \d+\.\d s$/);
      const quiet = runSync(bin, ["apply", "-f", file, "--datastore", store]);
      expect(quiet.status, quiet.stderr).toBe(0);
      expect(quiet.stderr).toBe("");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
