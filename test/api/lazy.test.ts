// lazy(): a schema stand-in built on first use (src/api/lazy.ts), as the kind modules use it.
import { describe, expect, it } from "vitest";
import * as z from "zod";
import { FIELD_STATUS, stored } from "../../src/api/fields.js";
import { lookup } from "../../src/api/inventory.js";
import { built, lazy } from "../../src/api/lazy.js";
import { kindOf } from "../../src/api/registry.js";

describe("lazy()", () => {
  it("builds nothing until a property is read, then builds once", () => {
    let builds = 0;
    const s = lazy(() => {
      builds++;
      return z.object({ a: z.number() }).strict();
    });
    expect(builds).toBe(0);
    expect(s.safeParse({ a: 1 }).success).toBe(true);
    expect(s.safeParse({ a: "x" }).success).toBe(false);
    expect(s.optional().safeParse(undefined).success).toBe(true);
    expect(builds).toBe(1);
  });

  it("stands in for the schema inside other schemas, and built() gives the schema behind it", () => {
    const inner = lazy(() => z.string().min(2));
    const outer = z.object({ name: inner, tags: z.array(inner).optional() });
    expect(outer.safeParse({ name: "ab", tags: ["cd"] }).success).toBe(true);
    expect(outer.safeParse({ name: "a" }).success).toBe(false);
    expect(built(inner)).not.toBe(inner);
    expect(built(built(inner))).toBe(built(inner));
    expect(inner instanceof z.ZodString).toBe(true);
    expect(built(42)).toBe(42);
  });

  it("stands in for an object of schemas (spread into a shape)", () => {
    const fields = lazy(() => ({ a: z.number(), b: z.string().optional() }));
    const s = z.object({ ...fields, c: z.boolean() }).strict();
    expect(Object.keys(fields)).toEqual(["a", "b"]);
    expect(s.safeParse({ a: 1, c: true }).success).toBe(true);
    expect(s.safeParse({ a: 1, b: 2, c: true }).success).toBe(false);
  });

  it("keeps a FIELD_STATUS mark found through the stand-in or the schema behind it", () => {
    const marked = lazy(() => stored(z.boolean().optional(), "why"));
    const wrapped = stored(
      lazy(() => z.string().optional()),
      "why not",
    );
    const info = {
      ...(kindOf("projectcalico.org/v3", "Tier") as NonNullable<ReturnType<typeof kindOf>>),
      schema: z.object({ spec: z.object({ x: marked, y: wrapped }) }),
    };
    expect(FIELD_STATUS.get(marked)).toBeUndefined();
    expect(lookup(info, "spec.x")).toEqual({
      found: true,
      status: { status: "stored", reason: "why" },
    });
    expect(lookup(info, "spec.y").status?.reason).toBe("why not");
    expect(lookup(info, "spec.z").found).toBe(false);
  });

  it("the registry's kinds validate through their stand-ins", () => {
    const wep = kindOf("projectcalico.org/v3", "WorkloadEndpoint");
    expect(wep).toBeDefined();
    const r = wep?.schema.safeParse({
      apiVersion: "projectcalico.org/v3",
      kind: "WorkloadEndpoint",
      metadata: { name: "n-k8s-p-eth0", namespace: "default" },
      spec: { interfaceName: "ocl0", ipNetworks: ["10.0.0.1/32"], mac: "ee:ee:ee:ee:ee:ee" },
    });
    expect(r?.success).toBe(true);
  });
});
