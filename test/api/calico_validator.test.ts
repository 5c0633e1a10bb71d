// Calico's validator test table, translated into resources with Calico's verdict
// (test/fixtures/calico-validator: cases.yaml by hand, table.yaml generated from
// validator_test.go): each case is one test named after Calico's Entry and rule; a summary line
// per table prints how many get Calico's verdict.
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
const DIR = join(import.meta.dirname, "../fixtures/calico-validator");
const read = (f: string) => parse(readFileSync(join(DIR, f), "utf8")) as Case[];
/** Hand-translated cases (cases.yaml) and the table translated by scripts/calico_validator_table.ts. */
const TABLES: [string, Case[]][] = [
  ["hand-translated cases", read("cases.yaml")],
  ["validator_test.go table", read("table.yaml")],
];

function verdict(doc: unknown): "accept" | "refuse" {
  try {
    validateResource(doc);
    return "accept";
  } catch {
    return "refuse";
  }
}

for (const [title, cases] of TABLES) {
  describe(`Calico's validator: ${title}`, () => {
    let agree = 0;
    afterAll(() => {
      process.stdout.write(
        `calico validator ${title}: ${agree} of ${cases.length} get Calico's verdict\n`,
      );
    });
    for (const [i, c] of cases.entries()) {
      it(`${i + 1}. ${c.name}: Calico would ${c.calico}`, () => {
        const v = verdict(c.doc);
        if (v === c.calico) agree++;
        expect(v).toBe(c.calico);
      });
    }
  });
}
