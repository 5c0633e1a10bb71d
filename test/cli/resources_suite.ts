// End-to-end suite for `ocelot apply|create|replace|get|delete`: runs the real bin/ocelot (built
// by `npm run build`) against a datastore URL given by the caller, so the same cases run on the
// embedded file store and on a real etcd.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import type { Datastore } from "../../src/datastore/types.js";
import { runSync } from "../helpers/limits.js";

const root = new URL("../../", import.meta.url).pathname;
const bin = join(root, "bin/ocelot");
const config = (f: string) => join(root, "config", f);

export const CONFIG_FILES = [
  "ippool.yaml",
  "ipreservation.yaml",
  "bgpconfiguration.yaml",
  "bgppeer.yaml",
  "bgpfilter.yaml",
  "networkpolicy.yaml",
  "globalnetworkpolicy.yaml",
  "k8s_networkpolicy.yaml",
];

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface Backend {
  /** The --datastore URL for this run. */
  url: string;
  /** A direct handle on the same store, to read back what the CLI wrote. */
  connect(): Promise<Datastore>;
  close(): Promise<void>;
}

// biome-ignore lint/suspicious/noExplicitAny: parsed CLI output is checked field by field.
type Json = any;

export function resourcesSuite(
  name: string,
  open: () => Promise<Backend>,
  skipReason?: string,
): void {
  describe.skipIf(skipReason !== undefined)(
    `ocelot resources on ${name}${skipReason ? ` (skipped: ${skipReason})` : ""}`,
    () => {
      let backend: Backend;
      let dir: string;
      const ocelot = (args: string[], input?: string): Run => {
        const r = runSync(bin, [...args, "--datastore", backend.url], {
          encoding: "utf8",
          input,
          cwd: dir,
          timeout: 30_000,
        });
        return { status: r.status, stdout: r.stdout, stderr: r.stderr };
      };
      const ok = (args: string[], input?: string): string => {
        const r = ocelot(args, input);
        expect(r.stderr).toBe("");
        expect(r.status).toBe(0);
        return r.stdout;
      };
      const getJson = (...args: string[]): Json => JSON.parse(ok(["get", ...args, "-o", "json"]));
      const revision = (): number => Number(getJson("ippools").metadata.resourceVersion);
      const file = (fname: string, text: string): string => {
        writeFileSync(join(dir, fname), text);
        return fname;
      };

      beforeAll(async () => {
        if (!existsSync(join(root, "dist/cli/resources.js")))
          throw new Error("dist/cli/resources.js is missing: run `npm run build` first");
        dir = mkdtempSync(join(tmpdir(), "ocelot-cli-"));
        backend = await open();
      });
      afterAll(async () => {
        await backend?.close();
        if (dir) rmSync(dir, { recursive: true, force: true });
      });

      it("applies every example in config/ and gets them back as YAML and JSON", () => {
        const out = ok(["apply", ...CONFIG_FILES.flatMap((f) => ["-f", config(f)])]);
        expect(out.trim().split("\n")).toHaveLength(9);
        const pools = getJson("ippools");
        expect(pools.kind).toBe("IPPoolList");
        expect(
          pools.items.map((p: Json) => [p.metadata.name, p.spec.cidr, p.spec.blockSize]),
        ).toEqual([
          ["default-ipv4-ippool", "10.244.0.0/16", 26],
          ["default-ipv6-ippool", "fd00:10:244::/48", 122],
        ]);
        const v6 = pools.items[1];
        expect(v6.spec).toMatchObject({
          ipipMode: "Never",
          vxlanMode: "Never",
          allowedUses: ["Workload", "Tunnel"],
        });
        expect(v6.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
        expect(Number(v6.metadata.resourceVersion)).toBeGreaterThan(0);

        const cfg = parseYaml(ok(["get", "bgpconfig", "default", "-o", "yaml"]));
        expect(cfg).toMatchObject({
          kind: "BGPConfiguration",
          spec: { asNumber: 64512, nodeMeshMaxRestartTime: "120s" },
        });
        expect(getJson("bgppeer", "rack1-tor").spec).toMatchObject({
          peerIP: "192.0.2.1",
          asNumber: 65001,
          filters: ["rack1-tor-filter"],
        });
        expect(getJson("bgpfilters", "rack1-tor-filter").spec.importV6[0].cidr).toBe("5000::/64");
        expect(getJson("ipreservations").items[0].spec.reservedCIDRs).toEqual([
          "10.244.0.1/32",
          "10.244.255.0/24",
          "fd00:10:244::/123",
        ]);
        expect(getJson("gnp", "allow-tcp-port-6379").spec).toMatchObject({
          order: 100,
          tier: "default",
        });
        // Namespaced: production is not the default namespace.
        expect(getJson("networkpolicies").items).toEqual([]);
        expect(
          getJson("networkpolicies", "-n", "production").items.map((p: Json) => p.metadata.name),
        ).toEqual(["allow-tcp-6379"]);
        expect(
          getJson("policy", "-A").items.map(
            (p: Json) => `${p.metadata.namespace}/${p.metadata.name}`,
          ),
        ).toEqual(["production/allow-tcp-6379"]);
        expect(getJson("knp", "test-network-policy").spec.podSelector).toEqual({
          matchLabels: { role: "db" },
        });
      });

      it("stores JSON under /ocelot/resources/v3/ with resourceVersion = modRevision", async () => {
        const store = await backend.connect();
        try {
          const kv = await store.get("/ocelot/resources/v3/ippools/default-ipv4-ippool");
          const stored = JSON.parse(kv?.value ?? "null");
          expect(stored.metadata.resourceVersion).toBeUndefined();
          expect(stored.spec).toMatchObject({
            cidr: "10.244.0.0/16",
            blockSize: 26,
            natOutgoing: true,
          });
          const viaCli = getJson("ippool", "default-ipv4-ippool");
          expect(viaCli.metadata.resourceVersion).toBe(String(kv?.modRevision));
          expect(viaCli.metadata.uid).toBe(stored.metadata.uid);
          const np = await store.get(
            "/ocelot/resources/v3/networkpolicies/production/allow-tcp-6379",
          );
          expect(np).toBeDefined();
          const keys = (await store.list("/ocelot/resources/v3/")).items.map((i) => i.key);
          expect(keys).toHaveLength(9);
        } finally {
          await store.close();
        }
      });

      it("prints calicoctl-style tables", () => {
        const table = ok(["get", "ippools"]).trim().split("\n");
        expect(table[0]).toMatch(/^NAME\s+CIDR\s+SELECTOR$/);
        expect(table[1]).toMatch(/^default-ipv4-ippool\s+10\.244\.0\.0\/16\s+all\(\)$/);
        expect(ok(["get", "ippools", "-o", "wide"]).split("\n")[1]).toMatch(
          /^default-ipv4-ippool\s+10\.244\.0\.0\/16\s+true\s+CrossSubnet\s+Never\s+false\s+false\s+all\(\)$/,
        );
        expect(ok(["get", "bgppeers"]).split("\n")[1]).toMatch(
          /^rack1-tor\s+192\.0\.2\.1\s+rack == 'rack1'\s+65001$/,
        );
      });

      it("updates through get -o yaml and refuses a stale resourceVersion", () => {
        const before = ok(["get", "ippool", "default-ipv4-ippool", "-o", "yaml"]);
        const oldRv = parseYaml(before).metadata.resourceVersion;
        const edited = file("edit.yaml", before.replace("natOutgoing: true", "natOutgoing: false"));
        expect(ok(["apply", "-f", edited])).toMatch(
          /^applied ippool "default-ipv4-ippool" \(resourceVersion \d+\)\n$/,
        );
        const after = getJson("ippool", "default-ipv4-ippool");
        expect(after.spec.natOutgoing).toBe(false);
        expect(Number(after.metadata.resourceVersion)).toBeGreaterThan(Number(oldRv));
        const uid = after.metadata.uid;

        // The same file again carries the old resourceVersion: refused, nothing changes.
        const rev = revision();
        const stale = file("stale.yaml", before);
        const r = ocelot(["replace", "-f", stale]);
        expect(r.status).toBe(1);
        expect(r.stderr).toContain(
          `stale.yaml: document 1: ippool "default-ipv4-ippool": resourceVersion "${oldRv}" is stale`,
        );
        expect(revision()).toBe(rev);
        const now = getJson("ippool", "default-ipv4-ippool");
        expect(now.spec.natOutgoing).toBe(false);
        expect(now.metadata.uid).toBe(uid);
      });

      it("lets exactly one of two concurrent writers with the same resourceVersion win", async () => {
        const current = ok(["get", "ippool", "default-ipv4-ippool", "-o", "yaml"]);
        const a = file("race-a.yaml", current.replace("ipipMode: CrossSubnet", "ipipMode: Always"));
        const b = file("race-b.yaml", current.replace("ipipMode: CrossSubnet", "ipipMode: Never"));
        const runAsync = (f: string) =>
          new Promise<Run>((resolve) => {
            const child = spawn(bin, ["replace", "-f", f, "--datastore", backend.url], {
              cwd: dir,
            });
            let stdout = "";
            let stderr = "";
            child.stdout.on("data", (d) => (stdout += d));
            child.stderr.on("data", (d) => (stderr += d));
            child.on("close", (status) => resolve({ status, stdout, stderr }));
          });
        const results = await Promise.all([runAsync(a), runAsync(b)]);
        const winners = results.filter((r) => r.status === 0);
        const losers = results.filter((r) => r.status === 1);
        expect(winners).toHaveLength(1);
        expect(losers).toHaveLength(1);
        expect(losers[0]?.stderr).toMatch(/resourceVersion "\d+" is stale/);
        const mode = getJson("ippool", "default-ipv4-ippool").spec.ipipMode;
        expect(winners[0]?.stdout).toContain("replaced ippool");
        expect(["Always", "Never"]).toContain(mode);
        // Put the documented value back for the following cases.
        ok(["apply", "-f", config("ippool.yaml")]);
      });

      it("refuses malformed input with the file and document, and writes nothing", () => {
        const rev = revision();
        const bad = file(
          "pool.yaml",
          "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: fresh}\nspec: {cidr: 10.50.0.0/16}\n---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: bad}\nspec:\n  cidr: [10.0.0.0/8\n",
        );
        const r = ocelot(["apply", "-f", bad]);
        expect(r.status).toBe(1);
        expect(r.stderr).toMatch(
          /pool\.yaml: document 2: malformed YAML\/JSON at line \d+, column \d+/,
        );
        expect(r.stderr).toContain("Nothing was written.");
        expect(revision()).toBe(rev);
        expect(ocelot(["get", "ippool", "fresh"]).status).toBe(1);
      });

      it("refuses invalid values and unknown fields with path and value, and writes nothing", () => {
        const rev = revision();
        const bad = file(
          "pool.yaml",
          "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: fresh}\nspec: {cidr: 10.50.0.0/16}\n---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: bad}\nspec: {cidr: 10.0.0.0/33}\n---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: bad2}\nspec: {cidr: 10.60.0.0/16, natOutgoin: true}\n",
        );
        const r = ocelot(["apply", "-f", bad]);
        expect(r.status).toBe(1);
        expect(r.stderr).toContain(
          'pool.yaml: document 2: spec.cidr: "10.0.0.0/33" is not a valid CIDR',
        );
        expect(r.stderr).toContain(
          "pool.yaml: document 3: spec.natOutgoin: is not a known field (got true)",
        );
        expect(revision()).toBe(rev);
        expect(ocelot(["get", "ippool", "fresh"]).status).toBe(1);

        const unsupported = ocelot(
          ["create", "-f", "-"],
          JSON.stringify({
            apiVersion: "projectcalico.org/v3",
            kind: "FelixConfiguration",
            metadata: { name: "default" },
            spec: { wireguardHostEncryptionEnabled: true },
          }),
        );
        expect(unsupported.status).toBe(1);
        expect(unsupported.stderr).toContain(
          "<stdin>: document 1: spec.wireguardHostEncryptionEnabled: is a Calico field that Ocelot does not support yet",
        );
        expect(revision()).toBe(rev);
      });

      it("create refuses an existing resource, replace a missing one, before writing anything", () => {
        const rev = revision();
        const two = file(
          "two.yaml",
          "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: brand-new}\nspec: {cidr: 10.70.0.0/16}\n---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: default-ipv6-ippool}\nspec: {cidr: fd00:10:244::/48}\n",
        );
        const c = ocelot(["create", "-f", two]);
        expect(c.status).toBe(1);
        expect(c.stderr).toContain(
          'two.yaml: document 2: ippool "default-ipv6-ippool" already exists',
        );
        const rp = ocelot(["replace", "-f", two]);
        expect(rp.status).toBe(1);
        expect(rp.stderr).toContain('two.yaml: document 1: ippool "brand-new" does not exist');
        expect(revision()).toBe(rev);
      });

      it("reads JSON and Lists from stdin", () => {
        const list = {
          apiVersion: "v1",
          kind: "List",
          items: [
            {
              apiVersion: "projectcalico.org/v3",
              kind: "Node",
              metadata: { name: "node-1", labels: { rack: "rack1" } },
              spec: { bgp: { ipv4Address: "192.0.2.11/24", asNumber: 65010 } },
            },
          ],
        };
        expect(ok(["apply", "-f", "-"], JSON.stringify(list))).toContain('applied node "node-1"');
        expect(getJson("nodes", "node-1").spec.bgp).toEqual({
          ipv4Address: "192.0.2.11/24",
          asNumber: 65010,
        });
      });

      it("applies the List that get -o yaml prints", () => {
        const list = ok(["get", "ippools", "-o", "yaml"]);
        expect(parseYaml(list).kind).toBe("IPPoolList");
        const out = ok(["apply", "-f", "-"], list);
        expect(out.trim().split("\n")).toHaveLength(2);
      });

      it("deletes by KIND NAME and by file", () => {
        expect(ok(["delete", "ippool", "default-ipv6-ippool"])).toBe(
          'deleted ippool "default-ipv6-ippool"\n',
        );
        const gone = ocelot(["get", "ippool", "default-ipv6-ippool"]);
        expect(gone.status).toBe(1);
        expect(gone.stderr).toContain('ippool "default-ipv6-ippool" not found');
        const missing = ocelot(["delete", "ippool", "default-ipv6-ippool"]);
        expect(missing.status).toBe(1);
        expect(
          ok(["delete", "-f", config("networkpolicy.yaml"), "-f", config("bgppeer.yaml")]),
        ).toBe('deleted networkpolicy "production/allow-tcp-6379"\ndeleted bgppeer "rack1-tor"\n');
        expect(getJson("bgppeers").items).toEqual([]);
        expect(getJson("policy", "-A").items).toEqual([]);
      });

      it("applies an exported document (with resourceVersion and uid) to a store that lacks it", () => {
        const exported = ok(["get", "ippool", "default-ipv4-ippool", "-o", "yaml"]);
        const old = parseYaml(exported).metadata;
        ok(["delete", "ippool", "default-ipv4-ippool"]);
        expect(ok(["apply", "-f", "-"], exported)).toContain(
          'applied ippool "default-ipv4-ippool"',
        );
        const again = getJson("ippool", "default-ipv4-ippool");
        expect(again.metadata.uid).not.toBe(old.uid);
        expect(Number(again.metadata.resourceVersion)).toBeGreaterThan(Number(old.resourceVersion));
        const c = ocelot(["create", "-f", "-"], exported);
        expect(c.status).toBe(1);
      });
    },
  );
}
