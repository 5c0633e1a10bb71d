// Test helpers for IPAM: pool/reservation/node resources written straight into a store.
import type { Datastore } from "../../src/datastore/types.js";
import { encodeAffinity, IpamKeys } from "../../src/ipam/records.js";
import { parseCidr } from "../../src/lib/ip.js";

export async function putPool(
  store: Datastore,
  name: string,
  cidr: string,
  spec: Record<string, unknown> = {},
): Promise<void> {
  await store.update(
    `/ocelot/resources/v3/ippools/${name}`,
    JSON.stringify({
      apiVersion: "projectcalico.org/v3",
      kind: "IPPool",
      metadata: { name },
      spec: { cidr, ...spec },
    }),
  );
}

export async function putReservation(
  store: Datastore,
  name: string,
  cidrs: string[],
): Promise<void> {
  await store.update(
    `/ocelot/resources/v3/ipreservations/${name}`,
    JSON.stringify({
      apiVersion: "projectcalico.org/v3",
      kind: "IPReservation",
      metadata: { name },
      spec: { reservedCIDRs: cidrs },
    }),
  );
}

export async function putNode(
  store: Datastore,
  name: string,
  labels: Record<string, string>,
): Promise<void> {
  await store.update(
    `/ocelot/resources/v3/nodes/${name}`,
    JSON.stringify({
      apiVersion: "projectcalico.org/v3",
      kind: "Node",
      metadata: { name, labels },
      spec: {},
    }),
  );
}

/** A confirmed block affinity: block (a CIDR) belongs to node, as an IPAM claim leaves it. */
export async function putAffinity(store: Datastore, node: string, block: string): Promise<void> {
  await store.update(
    new IpamKeys().affinity(node, parseCidr(block)),
    encodeAffinity({ state: "confirmed", node, cidr: block }),
  );
}
