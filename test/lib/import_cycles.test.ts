// Imports run downhill: no import cycle between folders of src/ (its top-level folders, and the
// sub-folders of src/bgp, whose root files count as one folder "bgp"). Reads every src/**/*.ts,
// resolves its relative imports (static, `export ... from` and `import()`), builds the folder
// graph and names each cycle with one import per edge, so a failure says which line to move.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = join(__dirname, "../../src");

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

const IMPORT =
  /(?:import|export)\s[^;]*?from\s+["'](\.{1,2}\/[^"']+)["']|import\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g;

/** Relative import specifiers of a module's text (comments removed first). */
function importsOf(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
  return [...code.matchAll(IMPORT)].map((m) => (m[1] ?? m[2]) as string);
}

/** The folder a file counts in: "bgp/<sub>" under src/bgp, else its top-level folder. */
function folderOf(file: string): string {
  const parts = relative(SRC, file).split("/").slice(0, -1);
  if (parts.length === 0) return "src";
  if (parts[0] === "bgp" && parts.length > 1) return `bgp/${parts[1]}`;
  return parts[0] as string;
}

/** Strongly connected components of more than one folder (Tarjan). */
function cycles(graph: Map<string, Set<string>>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) === index.get(v)) {
      const comp: string[] = [];
      for (;;) {
        const w = stack.pop() as string;
        on.delete(w);
        comp.push(w);
        if (w === v) break;
      }
      if (comp.length > 1) out.push(comp.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return out;
}

describe("folder import graph of src/", () => {
  it("cycles() finds a cycle and only that one", () => {
    const g = new Map([
      ["a", new Set(["b"])],
      ["b", new Set(["c"])],
      ["c", new Set(["a"])],
      ["d", new Set(["a"])],
    ]);
    expect(cycles(g)).toEqual([["a", "b", "c"]]);
    expect(
      importsOf('import { x } from "../a/b.js";\n// import "../c.js"\nawait import("./d.js");'),
    ).toEqual(["../a/b.js", "./d.js"]);
  });

  it("has no import cycle between folders", () => {
    const files = new Set(sourceFiles(SRC));
    const graph = new Map<string, Set<string>>();
    /** One example import per folder edge, for the failure message. */
    const example = new Map<string, string>();
    let edges = 0;
    for (const f of files) {
      for (const spec of importsOf(readFileSync(f, "utf8"))) {
        const target = normalize(join(dirname(f), spec)).replace(/\.js$/, ".ts");
        if (!files.has(target)) continue;
        edges++;
        const a = folderOf(f);
        const b = folderOf(target);
        if (a === b) continue;
        if (!graph.has(a)) graph.set(a, new Set());
        graph.get(a)?.add(b);
        if (!example.has(`${a}>${b}`))
          example.set(`${a}>${b}`, `${relative(SRC, f)} imports ${relative(SRC, target)}`);
      }
    }
    expect(edges).toBeGreaterThan(300);
    const found = cycles(graph).map((c) => {
      const inCycle = new Set(c);
      const lines = c.flatMap((a) =>
        [...(graph.get(a) ?? [])]
          .filter((b) => inCycle.has(b))
          .map((b) => `  ${a} -> ${b}: ${example.get(`${a}>${b}`)}`),
      );
      return `${c.join(" <-> ")}\n${lines.join("\n")}`;
    });
    expect(found, `folder import cycles:\n${found.join("\n")}`).toEqual([]);
  });
});
