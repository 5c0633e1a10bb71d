// A node's own Node resource: created or updated by compare-and-swap with its BGP identity
// (spec.bgp.ipv4Address, ipv6Address, asNumber), keeping every other field (labels, addresses, route
// reflector cluster ID) as the user set it. Owns: the merge (pure) and the bounded CAS retry
// (also `updateNode`, the same retry for the node's other writes: tunnel addresses, WireGuard keys).
// Not: what the node does with it (daemon.ts).
import { ResourceClient, ResourceError } from "../api/client.js";
import type { Node } from "../api/node.js";
import { kindOf, validateResource } from "../api/registry.js";
import type { Datastore } from "../datastore/types.js";

export interface NodeIdentity {
  name: string;
  /** "A.B.C.D/len" (or a bare address); absent keeps the stored one, null removes it. */
  ipv4Address?: string | null;
  /** "IPv6/len" (or a bare address) for spec.bgp.ipv6Address; absent keeps, null removes. */
  ipv6Address?: string | null;
  /** Absent keeps the stored one (or none: the BGPConfiguration's AS applies). */
  asNumber?: number;
}

const MAX_ATTEMPTS = 10;

/** The Node to write for identity over what is stored (undefined: nothing to change). */
export function mergeNode(current: Node | undefined, id: NodeIdentity): Node | undefined {
  const bgp = { ...(current?.spec.bgp ?? {}) };
  if (id.ipv4Address === null) delete bgp.ipv4Address;
  else if (id.ipv4Address !== undefined) bgp.ipv4Address = id.ipv4Address;
  if (id.ipv6Address === null) delete bgp.ipv6Address;
  else if (id.ipv6Address !== undefined) bgp.ipv6Address = id.ipv6Address;
  if (id.asNumber !== undefined) bgp.asNumber = id.asNumber;
  const spec = { ...(current?.spec ?? {}) };
  if (Object.keys(bgp).length > 0) spec.bgp = bgp;
  else delete spec.bgp;
  if (current && JSON.stringify(current.spec) === JSON.stringify(spec)) return undefined;
  const { resourceVersion: _rv, ...metadata } = current?.metadata ?? { name: id.name };
  return {
    apiVersion: "projectcalico.org/v3",
    kind: "Node",
    metadata: { ...metadata, name: id.name },
    spec,
  };
}

/**
 * Registers the node: creates its Node, or updates it at the revision read (retrying a bounded
 * number of times when someone else wrote it meanwhile). Returns the stored Node and whether it
 * was written. Throws ResourceError("Invalid") naming a bad address or AS; nothing is written then.
 */
export async function registerNode(
  store: Datastore,
  id: NodeIdentity,
): Promise<{ node: Node; changed: boolean }> {
  const client = new ResourceClient(store);
  const info = kindOf("projectcalico.org/v3", "Node");
  if (!info) throw new Error("Kind Node is not registered");
  for (let attempt = 1; ; attempt++) {
    const current = (await client.get(info, id.name)) as unknown as Node | undefined;
    const next = mergeNode(current, id);
    if (next === undefined) return { node: current as Node, changed: false };
    let v: ReturnType<typeof validateResource>;
    try {
      v = validateResource(next);
    } catch (err) {
      throw new ResourceError("Invalid", `Node "${id.name}": ${(err as Error).message}`);
    }
    // The CAS is on the revision we read: a concurrent writer makes it fail and we merge again.
    if (current) v.resource.metadata.resourceVersion = current.metadata.resourceVersion;
    try {
      const stored = await client.writeValidated(current ? "update" : "create", v);
      return { node: stored as unknown as Node, changed: true };
    } catch (err) {
      const retry =
        err instanceof ResourceError &&
        (err.code === "Conflict" || err.code === "AlreadyExists" || err.code === "NotFound");
      if (!retry || attempt >= MAX_ATTEMPTS) throw err;
    }
  }
}

/**
 * Updates the stored Node `name` by compare-and-swap: `change` gets the Node as read and returns
 * the Node to write (undefined: nothing to change). When someone else wrote it meanwhile, it is
 * read and changed again, at most MAX_ATTEMPTS times. Returns the stored Node, or undefined when
 * there is no such Node or nothing to change.
 */
export async function updateNode(
  store: Datastore,
  name: string,
  change: (current: Node) => Promise<Node | undefined> | Node | undefined,
): Promise<Node | undefined> {
  const client = new ResourceClient(store);
  const info = kindOf("projectcalico.org/v3", "Node");
  if (!info) throw new Error("Kind Node is not registered");
  for (let attempt = 1; ; attempt++) {
    const current = (await client.get(info, name)) as unknown as Node | undefined;
    if (!current) return undefined;
    const next = await change(current);
    if (next === undefined) return undefined;
    const v = validateResource(next);
    v.resource.metadata.resourceVersion = current.metadata.resourceVersion;
    try {
      return (await client.writeValidated("update", v)) as unknown as Node;
    } catch (err) {
      const retry =
        err instanceof ResourceError && (err.code === "Conflict" || err.code === "NotFound");
      if (!retry || attempt >= MAX_ATTEMPTS) throw err;
    }
  }
}
