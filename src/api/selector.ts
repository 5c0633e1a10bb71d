// Calico label selectors: a parser from the text form (`role == "db" && has(zone)`) to a small
// AST, and an evaluator against a label map. Owns the grammar only; which labels a node, pod or
// namespace carries is the caller's business.
//
// Grammar (Calico libcalico-go selector): expr := or; or := and ("||" and)*;
// and := unary ("&&" unary)*; unary := "!" unary | "(" expr ")" | term;
// term := all() | global() | has(key) | key OP "value" | key [not] in {"a", "b"}
//        | key contains "s" | key starts with "s" | key ends with "s".

export type Selector =
  | { op: "all" }
  | { op: "global" }
  | { op: "has"; key: string }
  | { op: "eq" | "ne" | "contains" | "startsWith" | "endsWith"; key: string; value: string }
  | { op: "in" | "notIn"; key: string; values: string[] }
  | { op: "not"; arg: Selector }
  | { op: "and" | "or"; args: Selector[] };

export class SelectorSyntaxError extends Error {
  constructor(
    readonly selector: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`Selector ${JSON.stringify(selector)} is invalid at offset ${offset}: ${reason}`);
    this.name = "SelectorSyntaxError";
  }
}

type Token =
  | { t: "key"; v: string; at: number }
  | { t: "str"; v: string; at: number }
  | { t: "sym"; v: string; at: number }
  | { t: "end"; at: number };

const KEY_RE = /[A-Za-z0-9_./-]/;
const SYMBOLS = ["&&", "||", "==", "!=", "!", "(", ")", "{", "}", ","];

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i] as string;
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      i++;
      continue;
    }
    if (c === '"' || c === "'") {
      const close = src.indexOf(c, i + 1);
      if (close < 0) throw new SelectorSyntaxError(src, i, "unterminated string");
      out.push({ t: "str", v: src.slice(i + 1, close), at: i });
      i = close + 1;
      continue;
    }
    const sym = SYMBOLS.find((s) => src.startsWith(s, i));
    if (sym !== undefined) {
      out.push({ t: "sym", v: sym, at: i });
      i += sym.length;
      continue;
    }
    if (KEY_RE.test(c)) {
      let j = i;
      while (j < src.length && KEY_RE.test(src[j] as string)) j++;
      out.push({ t: "key", v: src.slice(i, j), at: i });
      i = j;
      continue;
    }
    throw new SelectorSyntaxError(src, i, `unexpected character ${JSON.stringify(c)}`);
  }
  out.push({ t: "end", at: src.length });
  return out;
}

class Parser {
  private pos = 0;
  constructor(
    private readonly src: string,
    private readonly toks: Token[],
  ) {}

  private peek(): Token {
    return this.toks[this.pos] as Token;
  }
  private next(): Token {
    return this.toks[this.pos++] as Token;
  }
  private fail(tok: Token, reason: string): never {
    throw new SelectorSyntaxError(this.src, tok.at, reason);
  }
  private isSym(v: string): boolean {
    const t = this.peek();
    return t.t === "sym" && t.v === v;
  }
  private isWord(v: string): boolean {
    const t = this.peek();
    return t.t === "key" && t.v === v;
  }
  private expectSym(v: string): void {
    const t = this.next();
    if (t.t !== "sym" || t.v !== v) this.fail(t, `expected "${v}"`);
  }
  private expectStr(): string {
    const t = this.next();
    if (t.t !== "str") this.fail(t, "expected a quoted string");
    return t.v;
  }

  parseAll(): Selector {
    if (this.peek().t === "end") return { op: "all" };
    const sel = this.parseOr();
    const t = this.peek();
    if (t.t !== "end") this.fail(t, "unexpected text after the expression");
    return sel;
  }

  private parseOr(): Selector {
    const args = [this.parseAnd()];
    while (this.isSym("||")) {
      this.next();
      args.push(this.parseAnd());
    }
    return args.length === 1 ? (args[0] as Selector) : { op: "or", args };
  }

  private parseAnd(): Selector {
    const args = [this.parseUnary()];
    while (this.isSym("&&")) {
      this.next();
      args.push(this.parseUnary());
    }
    return args.length === 1 ? (args[0] as Selector) : { op: "and", args };
  }

  private parseUnary(): Selector {
    if (this.isSym("!")) {
      this.next();
      return { op: "not", arg: this.parseUnary() };
    }
    if (this.isSym("(")) {
      this.next();
      const inner = this.parseOr();
      this.expectSym(")");
      return inner;
    }
    return this.parseTerm();
  }

  private parseTerm(): Selector {
    const t = this.next();
    if (t.t !== "key") this.fail(t, "expected a label key, all(), global() or has()");
    if ((t.v === "all" || t.v === "global") && this.isSym("(")) {
      this.next();
      this.expectSym(")");
      return { op: t.v };
    }
    if (t.v === "has" && this.isSym("(")) {
      this.next();
      const k = this.next();
      if (k.t !== "key") this.fail(k, "expected a label key inside has()");
      this.expectSym(")");
      return { op: "has", key: k.v };
    }
    const key = t.v;
    if (this.isSym("==") || this.isSym("!=")) {
      const op = (this.next() as { v: string }).v;
      return { op: op === "==" ? "eq" : "ne", key, value: this.expectStr() };
    }
    if (this.isWord("in")) {
      this.next();
      return { op: "in", key, values: this.parseSet() };
    }
    if (this.isWord("not")) {
      this.next();
      const w = this.next();
      if (w.t !== "key" || w.v !== "in") this.fail(w, 'expected "in" after "not"');
      return { op: "notIn", key, values: this.parseSet() };
    }
    if (this.isWord("contains")) {
      this.next();
      return { op: "contains", key, value: this.expectStr() };
    }
    if (this.isWord("starts") || this.isWord("ends")) {
      const which = (this.next() as { v: string }).v;
      const w = this.next();
      if (w.t !== "key" || w.v !== "with") this.fail(w, `expected "with" after "${which}"`);
      return { op: which === "starts" ? "startsWith" : "endsWith", key, value: this.expectStr() };
    }
    return this.fail(this.peek(), `expected an operator after label key "${key}"`);
  }

  private parseSet(): string[] {
    this.expectSym("{");
    const values: string[] = [];
    if (this.isSym("}")) {
      this.next();
      return values;
    }
    for (;;) {
      values.push(this.expectStr());
      if (this.isSym(",")) {
        this.next();
        continue;
      }
      this.expectSym("}");
      return values;
    }
  }
}

/** Parses a selector; an empty or blank string selects everything (as Calico). */
export function parseSelector(text: string): Selector {
  return new Parser(text, tokenize(text)).parseAll();
}

/** Evaluates a parsed selector against a label map. `global()` matches only global resources. */
/** Whether labels has key k (no closure per match: the agent matches ~10^5 pairs a render). */
function hasKey(labels: Readonly<Record<string, string>>, k: string): boolean {
  return Object.hasOwn(labels, k);
}

export function matchSelector(
  sel: Selector,
  labels: Readonly<Record<string, string>>,
  opts: { global?: boolean } = {},
): boolean {
  switch (sel.op) {
    case "all":
      return true;
    case "global":
      return opts.global === true;
    case "has":
      return hasKey(labels, sel.key);
    case "eq":
      return hasKey(labels, sel.key) && labels[sel.key] === sel.value;
    case "ne":
      return !hasKey(labels, sel.key) || labels[sel.key] !== sel.value;
    case "contains":
      return hasKey(labels, sel.key) && (labels[sel.key] as string).includes(sel.value);
    case "startsWith":
      return hasKey(labels, sel.key) && (labels[sel.key] as string).startsWith(sel.value);
    case "endsWith":
      return hasKey(labels, sel.key) && (labels[sel.key] as string).endsWith(sel.value);
    case "in":
      return hasKey(labels, sel.key) && sel.values.includes(labels[sel.key] as string);
    case "notIn":
      return !hasKey(labels, sel.key) || !sel.values.includes(labels[sel.key] as string);
    case "not":
      return !matchSelector(sel.arg, labels, opts);
    case "and":
      return sel.args.every((a) => matchSelector(a, labels, opts));
    case "or":
      return sel.args.some((a) => matchSelector(a, labels, opts));
  }
}

function quoteValue(v: string): string {
  return v.includes('"') ? `'${v}'` : `"${v}"`;
}

/** Prints a selector in Calico's canonical text form; parseSelector(formatSelector(s)) equals s. */
export function formatSelector(sel: Selector): string {
  switch (sel.op) {
    case "all":
    case "global":
      return `${sel.op}()`;
    case "has":
      return `has(${sel.key})`;
    case "eq":
      return `${sel.key} == ${quoteValue(sel.value)}`;
    case "ne":
      return `${sel.key} != ${quoteValue(sel.value)}`;
    case "contains":
      return `${sel.key} contains ${quoteValue(sel.value)}`;
    case "startsWith":
      return `${sel.key} starts with ${quoteValue(sel.value)}`;
    case "endsWith":
      return `${sel.key} ends with ${quoteValue(sel.value)}`;
    case "in":
    case "notIn":
      return `${sel.key} ${sel.op === "in" ? "in" : "not in"} {${sel.values.map(quoteValue).join(", ")}}`;
    case "not":
      return `!${sel.arg.op === "and" || sel.arg.op === "or" ? `(${formatSelector(sel.arg)})` : formatSelector(sel.arg)}`;
    case "and":
    case "or":
      return sel.args
        .map((a) =>
          a.op === "and" || a.op === "or" ? `(${formatSelector(a)})` : formatSelector(a),
        )
        .join(sel.op === "and" ? " && " : " || ");
  }
}
