// Calico's validator test table, translated into resources with Calico's verdict
// (test/fixtures/calico-validator/cases.yaml): each case is one test named after Calico's Entry
// and rule; a summary line prints how many get Calico's verdict.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { validateResource } from "../../src/api/registry.js";

interface Case {
  name: string;
  calico: "accept" | "refuse";
  doc: unknown;
}
const cases = parse(
  readFileSync(join(import.meta.dirname, "../fixtures/calico-validator/cases.yaml"), "utf8"),
) as Case[];

function verdict(doc: unknown): "accept" | "refuse" {
  try {
    validateResource(doc);
    return "accept";
  } catch {
    return "refuse";
  }
}

describe("Calico's validator table", () => {
  let agree = 0;
  afterAll(() => {
    process.stdout.write(
      `calico validator cases: ${agree} of ${cases.length} get Calico's verdict\n`,
    );
  });
  for (const c of cases) {
    it(`${c.name}: Calico would ${c.calico}`, () => {
      const v = verdict(c.doc);
      if (v === c.calico) agree++;
      expect(v).toBe(c.calico);
    });
  }
});
