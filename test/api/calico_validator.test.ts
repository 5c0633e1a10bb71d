// Calico's validator test table, translated into resources with Calico's verdict
// (test/fixtures/calico-validator: cases.yaml by hand, table.yaml generated from
// validator_test.go): each case is one test named after Calico's Entry and rule; a summary line
// per table prints how many get Calico's verdict.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ValidationError } from "../../src/api/errors.js";
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

/**
 * Ocelot's verdict: "unsupported" when every issue is a refusal of a Calico field Ocelot does
 * not carry yet (named as such; those are listed in the README), else accept or refuse.
 */
function verdict(doc: unknown): "accept" | "refuse" | "unsupported" {
  try {
    validateResource(doc);
    return "accept";
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    return err.issues.every((i) => /not support(ed)?( by Ocelot)? yet/.test(i.message))
      ? "unsupported"
      : "refuse";
  }
}

for (const [title, cases] of TABLES) {
  describe(`Calico's validator: ${title}`, () => {
    let agree = 0;
    let unsupported = 0;
    afterAll(() => {
      process.stdout.write(
        `calico validator ${title}: ${agree} of ${cases.length} get Calico's verdict; ${unsupported} more that Calico accepts are refused as not supported yet\n`,
      );
    });
    for (const [i, c] of cases.entries()) {
      it(`${i + 1}. ${c.name}: Calico would ${c.calico}`, () => {
        const got = verdict(c.doc);
        // Refused as not supported is still a refusal where Calico refuses too.
        const v = got === "unsupported" && c.calico === "refuse" ? "refuse" : got;
        if (v === c.calico) agree++;
        else if (v === "unsupported" && c.calico === "accept") {
          unsupported++;
          return;
        }
        expect(v).toBe(c.calico);
      });
    }
  });
}
