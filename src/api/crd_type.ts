// Field types as Calico's CRD schemas state them (type, enum, range, items, properties), and the
// strict zod schema of one: how the configuration kinds accept their many tuning fields as typed
// values without a hand-written schema per field. Not: which fields Ocelot acts on (config.ts).
import * as z from "zod";
import { own, quote } from "./errors.js";

export interface FieldType {
  t: "string" | "integer" | "number" | "boolean" | "array" | "object" | "int-or-string" | "any";
  enum?: string[];
  /** The CRD's pattern (Go RE2; a leading (?i) is case-insensitive). */
  pattern?: string;
  min?: number;
  max?: number;
  items?: FieldType;
  props?: Record<string, FieldType>;
}

/** A Go RE2 pattern as a JS RegExp ((?i) prefixes become the i flag); undefined if it has no JS form. */
function goRegExp(pattern: string): RegExp | undefined {
  let flags = "";
  let src = pattern;
  if (src.startsWith("^(?i)")) {
    flags = "i";
    src = `^${src.slice(5)}`;
  } else if (src.startsWith("(?i)")) {
    flags = "i";
    src = src.slice(4);
  }
  try {
    return new RegExp(src, flags);
  } catch {
    return undefined;
  }
}

/** The zod schema of a CRD field type: objects strict, enums as Calico spells them. */
export function schemaOf(t: FieldType): z.ZodType {
  switch (t.t) {
    case "string":
      if (t.enum !== undefined && t.enum.length > 0) {
        const values = t.enum;
        return z.string().refine((v) => values.includes(v), {
          error: (iss) => own(`${quote(iss.input)} is not one of ${values.join(", ")}`),
        });
      }
      if (t.pattern !== undefined) {
        const re = goRegExp(t.pattern);
        if (re !== undefined)
          return z.string().refine((v) => re.test(v), {
            error: (iss) => own(`${quote(iss.input)} does not match ${t.pattern}`),
          });
      }
      return z.string();
    case "integer":
    case "number":
      return z.unknown().superRefine((v, ctx) => {
        const ok =
          typeof v === "number" &&
          (t.t === "number" || Number.isInteger(v)) &&
          (t.min === undefined || v >= t.min) &&
          (t.max === undefined || v <= t.max);
        if (!ok)
          ctx.addIssue({
            code: "custom",
            message: own(
              `${quote(v)} is not ${t.t === "integer" ? "an integer" : "a number"}${t.min !== undefined || t.max !== undefined ? ` in ${t.min ?? "…"}..${t.max ?? "…"}` : ""}`,
            ),
          });
      });
    case "boolean":
      return z.boolean();
    case "int-or-string":
      return z.union([z.number(), z.string()]);
    case "array":
      return z.array(t.items === undefined ? z.unknown() : schemaOf(t.items));
    case "object":
      if (t.props === undefined) return z.record(z.string(), z.unknown());
      return z
        .object(
          Object.fromEntries(Object.entries(t.props).map(([k, v]) => [k, schemaOf(v).optional()])),
        )
        .strict();
    default:
      return z.unknown();
  }
}
