// Gathers the resource examples of Calico's documentation (a checkout of tigera/docs, its
// `calico/` folder) into test/fixtures/calico-docs/: every YAML code block (or heredoc in a shell
// block) whose documents include `apiVersion: projectcalico.org/v3`, one file per block, headed
// by the page it came from. The examples stay test inputs (test/api/calico_docs.test.ts applies
// them); nothing else of the docs is kept.
//
// Usage: npx tsx scripts/calico_doc_examples.ts <docs-checkout> [out-dir]
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";

const [docsRoot, outDir = "test/fixtures/calico-docs"] = process.argv.slice(2);
if (docsRoot === undefined) {
  process.stderr.write("usage: calico_doc_examples.ts <tigera-docs-checkout> [out-dir]\n");
  process.exit(2);
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : /\.mdx?$/.test(name) ? [p] : [];
  });
}

/** The YAML of each fenced block: the block itself, or the heredocs inside a shell block. */
function yamlBlocks(text: string): string[] {
  const out: string[] = [];
  const fence = /^([ \t]*)```([a-zA-Z]*)[^\n]*\n([\s\S]*?)^\1```/gm;
  for (const m of text.matchAll(fence)) {
    const indent = (m[1] as string).length;
    const body = (m[3] as string)
      .split("\n")
      .map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length)))
      .join("\n");
    const lang = (m[2] as string).toLowerCase();
    const heredocs = [...body.matchAll(/<<-?\s*['"]?(\w+)['"]?[^\n]*\n([\s\S]*?)^\s*\1\s*$/gm)];
    if (heredocs.length > 0) for (const h of heredocs) out.push(h[2] as string);
    else if (lang === "yaml" || lang === "yml" || lang === "") out.push(body);
  }
  return out.filter((b) => /^\s*apiVersion:\s*projectcalico\.org\/v3\s*$/m.test(b));
}

const root = join(docsRoot, "calico");
mkdirSync(outDir, { recursive: true });
// The examples are rewritten; calico-refuses.json (our verdict list) is kept.
for (const f of readdirSync(outDir)) if (f.endsWith(".yaml")) rmSync(join(outDir, f));
let n = 0;
for (const file of walk(root).sort()) {
  const page = relative(docsRoot, file);
  const slug = relative(root, file)
    .replace(/\.mdx?$/, "")
    .replace(/[^a-zA-Z0-9]+/g, "-");
  yamlBlocks(readFileSync(file, "utf8")).forEach((block, i) => {
    writeFileSync(
      join(outDir, `${slug}-${i + 1}.yaml`),
      `# Example from Calico's documentation: tigera/docs ${page}, block ${i + 1}\n${block.trimEnd()}\n`,
    );
    n++;
  });
}
process.stdout.write(`${n} examples written to ${outDir}\n`);
