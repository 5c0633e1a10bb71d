// Property tests of resources (issue 17): a valid IPPool, BGPPeer, NetworkPolicy and
// GlobalNetworkPolicy, each already stored, then applied again mutated at a random place (a field
// deleted, its value replaced by a value of any JSON type, an unknown field added) through the
// ResourceClient on the in-memory datastore, as `ocelot apply` does. Whatever the mutation, the
// apply either succeeds or is refused with a ValidationError or ResourceError whose message is one line and names
// the field that was changed, and a refused apply leaves the datastore exactly as it was (every
// key, value and revision). It never throws anything else.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResourceClient, ResourceError } from "../../src/api/client.js";
import { ValidationError } from "../../src/api/errors.js";
import { kindInfoOf } from "../../src/api/inventory.js";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import { anyJson, applyMutation, fieldOf, type Json, mutations } from "./mutations.js";

/** A field deleted, replaced or added; apiVersion and kind are kept (they pick the kind). */
const mutationsOf = (doc: Json) =>
  mutations(doc, {
    values: anyJson([
      "10.9.0.0/16",
      "fd00::/120",
      "Allow",
      "Deny",
      "TCP",
      "all()",
      "a == 'b'",
      "x y",
    ]),
    unknownKeys: ["bogus", "Cidr", "x_y"],
    kept: ["apiVersion", "kind"],
  });

const V3 = "projectcalico.org/v3";
const DOCS: Record<string, Json> = {
  IPPool: {
    apiVersion: V3,
    kind: "IPPool",
    metadata: { name: "pool-a" },
    spec: {
      cidr: "10.244.0.0/16",
      blockSize: 26,
      ipipMode: "Never",
      vxlanMode: "CrossSubnet",
      natOutgoing: true,
      nodeSelector: "all()",
      allowedUses: ["Workload", "Tunnel"],
    },
  },
  BGPPeer: {
    apiVersion: V3,
    kind: "BGPPeer",
    metadata: { name: "tor-a" },
    spec: {
      peerIP: "10.0.0.254",
      asNumber: 65001,
      nodeSelector: "rack == 'a'",
      keepOriginalNextHop: false,
    },
  },
  NetworkPolicy: {
    apiVersion: V3,
    kind: "NetworkPolicy",
    metadata: { name: "allow-web", namespace: "prod" },
    spec: {
      order: 100,
      selector: "app == 'web'",
      types: ["Ingress", "Egress"],
      ingress: [
        {
          action: "Allow",
          protocol: "TCP",
          source: { selector: "role == 'lb'", nets: ["10.0.0.0/8"] },
          destination: { ports: [80, "8000:8080"] },
        },
      ],
      egress: [{ action: "Allow" }],
    },
  },
  GlobalNetworkPolicy: {
    apiVersion: V3,
    kind: "GlobalNetworkPolicy",
    metadata: { name: "deny-db" },
    spec: {
      order: 10,
      selector: "tier == 'db'",
      ingress: [{ action: "Deny", protocol: "UDP", destination: { ports: [53] } }],
    },
  },
};

/**
 * Rules over two fields name the other one: an IPPool's new cidr of the other family is refused
 * as `spec.blockSize: 26 is out of range for an IPv6 pool (116..128)`, without the cidr (in
 * src/api/ippool.ts, left to its owner; noted in the README). A new name is another resource:
 * an IPPool of that name with the same cidr is refused for overlapping the stored one, by cidr.
 */
const RELATED: Record<string, string[]> = { cidr: ["blockSize"], name: ["spec.cidr"] };

let store: MemoryDatastore;
let client: ResourceClient;
beforeAll(() => {
  store = new MemoryDatastore();
  client = new ResourceClient(store);
});
afterAll(async () => {
  await store.close();
});

/** The whole datastore: every key with its value and revisions, and the store's revision. */
async function snapshot(): Promise<string> {
  const r = await store.list("");
  return JSON.stringify(r);
}

describe("resources: any one mutation, applied, is accepted or refused naming the field, the store unchanged", () => {
  for (const [kind, base] of Object.entries(DOCS)) {
    it(`${kind}: holds for 1,000 mutations`, async () => {
      // The valid document applies (and stays stored: the mutations apply over it).
      await client.write("apply", structuredClone(base));
      let refused = 0;
      await fc.assert(
        fc.asyncProperty(mutationsOf(base), async (m) => {
          // Each run starts from the valid document as stored, and nothing else.
          await client.write("apply", structuredClone(base));
          const before = await snapshot();
          let err: unknown;
          try {
            const written = await client.write("apply", applyMutation(base, m));
            const { name, namespace } = written.metadata;
            const own = (base as { metadata: { name: string; namespace?: string } }).metadata;
            if (name !== own.name || namespace !== own.namespace) {
              const info = kindInfoOf(kind);
              if (info === undefined) throw new Error(`no kind ${kind}`);
              await client.delete(info, name, namespace);
            }
            return;
          } catch (e) {
            err = e;
          }
          refused++;
          // ValidationError: the document's fields; ResourceError: against what is stored.
          expect(
            err instanceof ValidationError || err instanceof ResourceError,
            `the error type for ${JSON.stringify(m)}: ${String(err)}`,
          ).toBe(true);
          const msg = (err as Error).message;
          expect(msg).not.toContain("\n");
          const field = fieldOf(m);
          if (field !== undefined) {
            const names = [field, ...(RELATED[field] ?? [])];
            expect(
              names.some((f) => msg.includes(f)),
              `names ${names.join(" or ")}: ${msg}`,
            ).toBe(true);
          }
          expect(await snapshot(), "the datastore after a refused apply").toBe(before);
        }),
        { numRuns: 1000 },
      );
      console.log(`resources: ${kind}: 1,000 mutations applied, ${refused} refused`);
      // The property is not vacuous: some mutations must be refused.
      expect(refused).toBeGreaterThan(100);
    });
  }
});
