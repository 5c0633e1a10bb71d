// Small structural checks for IPAM's stored JSON, without a schema library: the CNI plugin is
// a short-lived process on every pod start, and loading zod there cost ~40% of its CPU time.
// Owns only "is this value of that shape"; each check throws a reason naming the field.

export class ShapeError extends Error {}

export type Json = Record<string, unknown>;

export function parseJsonObject(text: string, what: string): Json {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ShapeError(`${what} is not JSON (${(err as Error).message})`);
  }
  return object(raw, what);
}

export function object(v: unknown, field: string, allowed?: readonly string[]): Json {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new ShapeError(`field "${field}" must be an object, got ${show(v)}`);
  }
  if (allowed) {
    const extra = Object.keys(v).find((k) => !allowed.includes(k));
    if (extra !== undefined) throw new ShapeError(`field "${field}" has unknown key "${extra}"`);
  }
  return v as Json;
}

export function string(o: Json, key: string, opts: { nonEmpty?: boolean } = {}): string {
  const v = o[key];
  if (typeof v !== "string" || (opts.nonEmpty && v === "")) {
    throw new ShapeError(
      `field "${key}" must be a${opts.nonEmpty ? " non-empty" : ""} string, got ${show(v)}`,
    );
  }
  return v;
}

export function nullableString(o: Json, key: string): string | null {
  return o[key] === null ? null : string(o, key);
}

export function optionalString(o: Json, key: string): string | undefined {
  return o[key] === undefined ? undefined : string(o, key);
}

export function boolean(o: Json, key: string): boolean {
  const v = o[key];
  if (typeof v !== "boolean")
    throw new ShapeError(`field "${key}" must be true or false, got ${show(v)}`);
  return v;
}

export function optionalBoolean(o: Json, key: string): boolean | undefined {
  return o[key] === undefined ? undefined : boolean(o, key);
}

export function nonNegInt(v: unknown, field: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    throw new ShapeError(`field "${field}" must be a whole number >= 0, got ${show(v)}`);
  }
  return v;
}

export function nullableNumber(o: Json, key: string): number | null {
  const v = o[key];
  if (v === null) return null;
  if (typeof v !== "number" || !Number.isFinite(v))
    throw new ShapeError(`field "${key}" must be a number or null, got ${show(v)}`);
  return v;
}

export function array(o: Json, key: string): unknown[] {
  const v = o[key];
  if (!Array.isArray(v)) throw new ShapeError(`field "${key}" must be a list, got ${show(v)}`);
  return v;
}

export function stringArray(o: Json, key: string): string[] {
  return array(o, key).map((x, i) => {
    if (typeof x !== "string")
      throw new ShapeError(`field "${key}.${i}" must be a string, got ${show(x)}`);
    return x;
  });
}

export function stringMap(v: unknown, field: string): Record<string, string> {
  const o = object(v, field);
  for (const [k, x] of Object.entries(o)) {
    if (typeof x !== "string")
      throw new ShapeError(`field "${field}.${k}" must be a string, got ${show(x)}`);
  }
  return o as Record<string, string>;
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
