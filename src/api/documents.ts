// Reading resource documents from text: multi-document YAML or JSON (JSON is YAML), and
// `kind: List` / `kind: <Kind>List` envelopes expanded into their items. Each document keeps a
// label ("document 2", "document 1 item 3") for error messages. Not: validation (registry.ts).
import { parseAllDocuments } from "yaml";

export interface SourceDocument {
  /** "document 2", or "document 1 item 3" for an entry of a List. */
  label: string;
  value: unknown;
}

export class DocumentSyntaxError extends Error {
  constructor(
    readonly label: string,
    readonly detail: string,
  ) {
    super(`${label}: ${detail}`);
    this.name = "DocumentSyntaxError";
  }
}

/** Parses every document in `text`; empty documents (a stray `---`) are skipped. */
export function parseDocuments(text: string): SourceDocument[] {
  const out: SourceDocument[] = [];
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    const label = `document ${i + 1}`;
    const err = doc.errors[0];
    if (err !== undefined) {
      const pos = err.linePos?.[0];
      const where = pos === undefined ? "" : ` at line ${pos.line}, column ${pos.col}`;
      const what = firstLine(err.message).replace(/ at line \d+, column \d+:?$/, "");
      throw new DocumentSyntaxError(label, `malformed YAML/JSON${where}: ${what}`);
    }
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) return;
    if (isList(value)) {
      const items = (value as { items?: unknown }).items;
      if (!Array.isArray(items))
        throw new DocumentSyntaxError(label, "a List needs an items array");
      items.forEach((item, j) => {
        out.push({ label: `${label} item ${j + 1}`, value: item });
      });
      return;
    }
    out.push({ label, value });
  });
  return out;
}

function isList(value: unknown): boolean {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const kind = (value as { kind?: unknown }).kind;
  return (
    typeof kind === "string" && (kind === "List" || (kind.endsWith("List") && "items" in value))
  );
}

function firstLine(message: string): string {
  return message.split("\n")[0] ?? message;
}
