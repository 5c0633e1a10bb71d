// The committed inventory of Calico's API (config/calico-api-inventory.json, generated from
// Calico's CRDs by scripts/calico_inventory.ts) against our schemas: every path's status is
// what the schemas say now, and every path marked refused is refused by name when set.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/api/errors.js";
import { type Inventory, inventory, kindInfoOf } from "../../src/api/inventory.js";
import { validateResource } from "../../src/api/registry.js";

const inv = JSON.parse(
  readFileSync(join(import.meta.dirname, "../../config/calico-api-inventory.json"), "utf8"),
) as Inventory;

/** A document of kind with `value` at path (arrays get one item). */
function docWith(kind: string, path: string, value: unknown): Record<string, unknown> {
  const doc: Record<string, unknown> = {
    apiVersion: "projectcalico.org/v3",
    kind,
    metadata: { name: "default", namespace: kindInfoOf(kind)?.namespaced ? "default" : undefined },
  };
  const parts = path.replace(/\[\]/g, ".[]").split(".");
  let at: Record<string, unknown> | unknown[] = doc;
  for (const [i, part] of parts.entries()) {
    const last = i === parts.length - 1;
    const next: unknown = last ? value : parts[i + 1] === "[]" ? [] : {};
    if (Array.isArray(at)) at.push(next);
    else at[part] = next;
    at = next as Record<string, unknown>;
  }
  return doc;
}

describe("Calico API inventory", () => {
  it("every path's status is what our schemas say (npx tsx scripts/calico_inventory.ts --refresh)", () => {
    const now = inventory(inv.kinds.map((k) => ({ kind: k.kind, paths: k.paths })));
    expect(now.kinds).toEqual(inv.kinds);
  });

  it("covers every Calico kind, and each refused path is refused by name", () => {
    expect(inv.kinds.length).toBe(22);
    let checked = 0;
    for (const k of inv.kinds) {
      if (k.kindRefused !== undefined) continue;
      for (const p of k.paths.filter((x) => x.status === "refused")) {
        let names = false;
        try {
          validateResource(docWith(k.kind, p.path, "x"));
        } catch (err) {
          if (!(err instanceof ValidationError)) throw err;
          const want = p.path.replace(/\[\]/g, "[0]");
          names = err.issues.some(
            (i) =>
              i.path === want || want.startsWith(`${i.path}.`) || want.startsWith(`${i.path}[`),
          );
        }
        expect(names, `${k.kind} ${p.path} refused by name`).toBe(true);
        checked++;
      }
    }
    // Not vacuous: every refused path of the inventory was tried (WireGuard host encryption and
    // the policy sync API are what is left refused).
    const refused = inv.kinds
      .filter((k) => k.kindRefused === undefined)
      .flatMap((k) => k.paths.filter((x) => x.status === "refused"));
    expect(checked).toBe(refused.length);
    expect(checked).toBeGreaterThanOrEqual(2);
  });
});
