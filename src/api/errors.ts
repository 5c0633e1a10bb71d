// Validation errors for resources: one issue per bad field, each with its path and a message
// that quotes the bad value (`spec.cidr: "10.0.0.0/33" is not a valid CIDR`). Owns the
// translation of zod issues into that shape. Not: the schemas themselves (one module per kind).
import type * as z from "zod";

export interface FieldIssue {
  /** Dotted path from the document root, with [i] for list items: `spec.ingress[0].action`. */
  path: string;
  /** Sentence that names the problem and quotes the bad value (no trailing period). */
  message: string;
}

/** A document failed validation; `issues` lists every bad field found, in document order. */
export class ValidationError extends Error {
  constructor(readonly issues: FieldIssue[]) {
    super(issues.map(formatIssue).join("; "));
    this.name = "ValidationError";
  }
}

export function formatIssue(issue: FieldIssue): string {
  return issue.path === "" ? issue.message : `${issue.path}: ${issue.message}`;
}

/** Renders a value for an error message: strings in double quotes, others as compact JSON. */
export function quote(value: unknown): string {
  if (value === undefined) return "undefined";
  if (typeof value === "string") {
    // A long value is cut, not echoed whole (a 254-character name would drown the message).
    if (value.length <= 64) return JSON.stringify(value);
    return `${JSON.stringify(value.slice(0, 40))}... (${value.length} characters)`;
  }
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

export function pathString(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out === "" ? String(part) : `.${String(part)}`;
  }
  return out;
}

/** The parts of a dotted path with [i] indexes: `a.b[2].c` -> ["a", "b", 2, "c"]. */
export function pathParts(path: string): PropertyKey[] {
  const out: PropertyKey[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g))
    out.push(m[2] !== undefined ? Number(m[2]) : (m[1] as string));
  return out;
}

function joinPath(base: string, key: string): string {
  return base === "" ? key : `${base}.${key}`;
}

/** Marker put in front of messages we wrote ourselves, so the formatter keeps them verbatim. */
const OWN = "\u0000";

/** A message for a zod `error:` option or a refinement: kept verbatim by toFieldIssues(). */
export function own(message: string): string {
  return OWN + message;
}

/** Turns zod issues (parsed with `reportInput: true`) into field issues with our wording. */
export function toFieldIssues(issues: ReadonlyArray<z.core.$ZodIssue>): FieldIssue[] {
  const out: FieldIssue[] = [];
  for (const issue of issues) {
    const path = pathString(issue.path);
    const input = (issue as { input?: unknown }).input;
    if (issue.code === "invalid_type" && input === undefined && issue.expected !== "never") {
      out.push({ path, message: "is required" });
      continue;
    }
    if (issue.message.startsWith(OWN)) {
      out.push({ path, message: issue.message.slice(1) });
      continue;
    }
    switch (issue.code) {
      case "unrecognized_keys":
        for (const key of issue.keys) {
          const value = (input as Record<string, unknown> | undefined)?.[key];
          out.push({
            path: joinPath(path, key),
            message: `is not a known field (got ${quote(value)})`,
          });
        }
        break;
      case "invalid_type":
        if (input === undefined) out.push({ path, message: "is required" });
        else out.push({ path, message: `${quote(input)} is not ${article(issue.expected)}` });
        break;
      case "invalid_value":
        if (input === undefined) {
          out.push({
            path,
            message: `is required (one of ${issue.values.map((v) => String(v)).join(", ")})`,
          });
          break;
        }
        out.push({
          path,
          message: `${quote(input)} is not one of ${issue.values.map((v) => String(v)).join(", ")}`,
        });
        break;
      case "too_small":
        out.push({
          path,
          message:
            issue.origin === "array"
              ? `needs at least ${issue.minimum} item(s)`
              : `${quote(input)} is below the minimum ${String(issue.minimum)}`,
        });
        break;
      case "too_big":
        out.push({
          path,
          message:
            issue.origin === "array"
              ? `allows at most ${issue.maximum} item(s)`
              : `${quote(input)} is above the maximum ${String(issue.maximum)}`,
        });
        break;
      case "invalid_union":
        out.push({ path, message: `${quote(input)} is not valid here` });
        break;
      default:
        out.push({ path, message: `${quote(input)} is invalid (${issue.message})` });
    }
  }
  return out;
}

function article(expected: string): string {
  switch (expected) {
    case "object":
      return "an object";
    case "array":
      return "a list";
    case "int":
      return "an integer";
    case "boolean":
      return "a boolean (true or false)";
    default:
      return `a ${expected}`;
  }
}
