// Calico's own documentation examples (test/fixtures/calico-docs, gathered by
// scripts/calico_doc_examples.ts from tigera/docs), each applied on a fresh embedded store
// through the resource client (what `ocelot apply -f` does; a policy's Tier made first, as the
// pages' earlier steps do) and read back: prints how many of
// those Calico accepts apply unchanged, and checks that those Calico refuses are refused by
// Ocelot too, with nothing written.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ResourceClient } from "../../src/api/client.js";
import { parseDocuments } from "../../src/api/documents.js";
import { validateResource } from "../../src/api/registry.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";

const DIR = join(import.meta.dirname, "../fixtures/calico-docs");
const refuses = JSON.parse(readFileSync(join(DIR, "calico-refuses.json"), "utf8")) as Record<
  string,
  string
>;
const files = readdirSync(DIR)
  .filter((f) => f.endsWith(".yaml"))
  .sort();
const tmp = mkdtempSync(join(tmpdir(), "ocelot-docs-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Applies one example on a fresh store; the error text when any document is refused. */
async function applyExample(file: string): Promise<string | undefined> {
  const store = new SqliteDatastore(join(tmp, `${file}.db`));
  try {
    const client = new ResourceClient(store);
    const docs = parseDocuments(readFileSync(join(DIR, file), "utf8")).map((d) =>
      validateResource(d.value),
    );
    // A policy in a tier needs the Tier first (Calico refuses it otherwise): the pages that
    // show one made its Tier in an earlier step, so the example's tiers are made here first.
    for (const d of docs) {
      const tier = (d.resource.spec as { tier?: string } | undefined)?.tier;
      if (tier === undefined || ["default", "kube-admin", "kube-baseline"].includes(tier)) continue;
      if (docs.some((x) => x.info.kind === "Tier" && x.resource.metadata.name === tier)) continue;
      const made = { apiVersion: "projectcalico.org/v3", kind: "Tier", metadata: { name: tier } };
      if ((await client.get(validateResource(made).info, tier)) === undefined)
        await client.write("apply", { ...made, spec: { order: 100 } });
    }
    for (const d of docs) await client.check("apply", d, docs);
    for (const d of docs) {
      await client.writeValidated("apply", d);
      const back = await client.get(
        d.info,
        d.resource.metadata.name,
        d.resource.metadata.namespace,
      );
      expect(back?.spec).toEqual(d.resource.spec);
    }
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await store.close();
  }
}

describe("Calico's documentation examples", () => {
  it("apply unchanged when Calico accepts them, and are refused when Calico refuses them", async () => {
    const accepted = files.filter((f) => refuses[f] === undefined);
    const failed: string[] = [];
    for (const f of accepted) {
      const err = await applyExample(f);
      if (err !== undefined) failed.push(`${f}: ${err.split("\n")[0]?.slice(0, 160)}`);
    }
    const wronglyAccepted: string[] = [];
    for (const f of files.filter((x) => refuses[x] !== undefined))
      if ((await applyExample(f)) === undefined) wronglyAccepted.push(f);
    process.stdout.write(
      `calico docs examples: ${accepted.length - failed.length} of ${accepted.length} that Calico accepts apply unchanged; ${files.length - accepted.length - wronglyAccepted.length} of ${files.length - accepted.length} that Calico refuses are refused\n${failed.map((f) => `  not applied: ${f}\n`).join("")}`,
    );
    expect(wronglyAccepted).toEqual([]);
    // What stays refused: fields not supported yet (vxlanMode; the CalicoNodeStatus example's
    // server-set metadata.generation), and a field name in another case than the CRD's (Go's
    // JSON decoding ignores case; ours not).
    expect(
      failed.filter(
        (f) => !/CalicoNodeStatus|caliconodestatus|vxlanMode|controllers\.loadbalancer/.test(f),
      ),
    ).toEqual([]);
  });
});
