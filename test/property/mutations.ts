// The mutations of the bad-input property tests (issue 17): a valid JSON document changed at one
// random place, a field deleted, its value replaced by a value of any JSON type, or an unknown
// field added; the mutation applied to a copy, and the field a refusal must name.
import fc from "fast-check";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type Path = (string | number)[];

export type Mutation =
  | { op: "delete"; path: Path }
  | { op: "replace"; path: Path; value: Json }
  | { op: "add"; path: Path; key: string; value: Json };

function entriesOf(doc: Json): [string | number, Json][] {
  if (doc === null || typeof doc !== "object") return [];
  return Array.isArray(doc) ? doc.map((v, i) => [i, v]) : Object.entries(doc);
}

/** Every path to a value inside doc (keys, indexes), the root and its keys in `kept` excluded. */
function paths(doc: Json, kept: readonly string[], at: Path = []): Path[] {
  return entriesOf(doc).flatMap(([k, v]) =>
    at.length === 0 && kept.includes(k as string)
      ? []
      : [[...at, k], ...paths(v, kept, [...at, k])],
  );
}

/** Paths to objects (where an unknown key can be added), the root included. */
function objectPaths(doc: Json, at: Path = []): Path[] {
  if (doc === null || typeof doc !== "object") return [];
  return [
    ...(Array.isArray(doc) ? [] : [at]),
    ...entriesOf(doc).flatMap(([k, v]) => objectPaths(v, [...at, k])),
  ];
}

/** A value of any JSON type; `likely` adds strings a validator might half-accept. */
export function anyJson(likely: readonly string[] = []): fc.Arbitrary<Json> {
  return fc.oneof(
    fc.string({ maxLength: 12 }),
    fc.integer({ min: -100_000, max: 100_000 }),
    fc.double({ noNaN: true }),
    fc.boolean(),
    fc.constant(null),
    ...(likely.length > 0 ? [fc.constantFrom(...likely)] : []),
    fc.array(fc.integer({ min: -5, max: 300 }), { maxLength: 3 }),
    fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 2 }),
  );
}

/**
 * The mutations of doc: a path deleted or its value replaced by one of values, or one of
 * unknownKeys added to an object. The root keys in `kept` are never touched.
 */
export function mutations(
  doc: Json,
  o: { values: fc.Arbitrary<Json>; unknownKeys: readonly string[]; kept?: readonly string[] },
): fc.Arbitrary<Mutation> {
  const ps = paths(doc, o.kept ?? []);
  const os = objectPaths(doc);
  return fc.oneof(
    fc.constantFrom(...ps).map((path): Mutation => ({ op: "delete", path })),
    fc
      .tuple(fc.constantFrom(...ps), o.values)
      .map(([path, value]): Mutation => ({ op: "replace", path, value })),
    fc
      .tuple(fc.constantFrom(...os), fc.constantFrom(...o.unknownKeys), o.values)
      .map(([path, key, value]): Mutation => ({ op: "add", path, key, value })),
  );
}

/** doc with m applied, as a copy. */
export function applyMutation(doc: Json, m: Mutation): Json {
  const copy = structuredClone(doc);
  const parentPath = m.op === "add" ? m.path : m.path.slice(0, -1);
  let parent = copy as Record<string | number, Json>;
  for (const k of parentPath) parent = parent[k] as Record<string | number, Json>;
  if (m.op === "add") parent[m.key] = m.value;
  else {
    const last = m.path.at(-1) as string | number;
    if (m.op === "replace") parent[last] = m.value;
    else if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  }
  return copy;
}

/** The field name a message must name for a mutation: the last key (not an array index). */
export function fieldOf(m: Mutation): string | undefined {
  if (m.op === "add") return m.key;
  return [...m.path].reverse().find((k): k is string => typeof k === "string");
}

/**
 * doc with each of ms applied in turn, as a copy; a mutation whose place an earlier one removed
 * (or turned into a non-object) is left out. Returns the document and the mutations applied.
 */
export function applyMutations(doc: Json, ms: readonly Mutation[]): [Json, Mutation[]] {
  let out = doc;
  const applied: Mutation[] = [];
  for (const m of ms) {
    const parentPath = m.op === "add" ? m.path : m.path.slice(0, -1);
    let parent: Json | undefined = out;
    for (const k of parentPath) {
      parent =
        parent !== null && typeof parent === "object"
          ? (parent as Record<string | number, Json>)[k]
          : undefined;
    }
    if (parent === null || parent === undefined || typeof parent !== "object") continue;
    if (m.op !== "add" && !((m.path.at(-1) as string | number) in parent)) continue;
    out = applyMutation(out, m);
    applied.push(m);
  }
  return [out === doc ? structuredClone(doc) : out, applied];
}
