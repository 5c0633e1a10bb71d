// The resource client over a Datastore: create / update (compare-and-swap on
// metadata.resourceVersion) / apply / get / list / delete, plus typed accessors for the IPAM and
// node code. Resources are stored as JSON; on read, metadata.resourceVersion is the key's
// modRevision. Not: validation rules (registry.ts and the kind modules) or the CLI.
import { randomUUID } from "node:crypto";
import type { Datastore, KeyValue, WatchMessage } from "../datastore/types.js";
import { ConflictError, NotFoundError } from "../datastore/types.js";
import type { BGPConfiguration, BGPFilter, BGPPeer } from "./bgp.js";
import type { ClusterInformation } from "./clusterinfo.js";
import { type FieldIssue, quote, ValidationError } from "./errors.js";
import { type IPPool, type IPReservation, overlaps } from "./ippool.js";
import type { Node, WorkloadEndpoint } from "./node.js";
import type { GlobalNetworkPolicy, K8sNetworkPolicy, NetworkPolicy } from "./policy.js";
import {
  immutableIssues,
  type KindInfo,
  kindOf,
  kindPrefix,
  type Resource,
  resourceKey,
  validateResource,
} from "./registry.js";

const CALICO = "projectcalico.org/v3";

/** The policy kinds that belong to a tier (spec.tier, "default" when unset), as Calico's. */
const TIERED = [
  "NetworkPolicy",
  "GlobalNetworkPolicy",
  "StagedNetworkPolicy",
  "StagedGlobalNetworkPolicy",
];

/**
 * Calico's built-in tiers (libcalico-go names.ProtectedTierNames): they always exist, whether
 * or not a Tier resource is stored, and cannot be deleted.
 */
const PROTECTED_TIERS = new Set(["default", "kube-admin", "kube-baseline"]);

const tierOf = (r: Resource): string =>
  (r.spec as { tier?: string } | undefined)?.tier || "default";

export type ResourceErrorCode =
  | "NotFound"
  | "AlreadyExists"
  | "Conflict"
  | "Invalid"
  | "NotSupported";

/** A resource operation failed for a reason the user can act on. */
export class ResourceError extends Error {
  constructor(
    readonly code: ResourceErrorCode,
    message: string,
    readonly issues: FieldIssue[] = [],
  ) {
    super(message);
    this.name = "ResourceError";
  }
}

export type WriteMode = "create" | "update" | "apply";

/** A validated resource ready to write. */
export interface Validated {
  info: KindInfo;
  resource: Resource;
}

export interface ClientOptions {
  now?: () => Date;
  uuid?: () => string;
}

/** `ippool "pool1"` or `networkpolicy "ns/name"`: how messages name a resource. */
export function describe(info: KindInfo, name: string, namespace?: string): string {
  return `${info.singular} ${quote(info.namespaced ? `${namespace}/${name}` : name)}`;
}

const VERB: Record<WriteMode | "delete", string> = {
  create: "created",
  update: "replaced",
  apply: "applied",
  delete: "deleted",
};

/**
 * Refuses a write to a kind the resource commands only read (ClusterInformation: as calicoctl,
 * whose ErrorOperationNotSupported this is). Throws ResourceError "NotSupported".
 */
export function refuseReadOnly(
  info: KindInfo,
  name: string,
  namespace: string | undefined,
  op: WriteMode | "delete",
): void {
  if (info.readOnly === undefined) return;
  throw new ResourceError(
    "NotSupported",
    `${describe(info, name, namespace)} cannot be ${VERB[op]}: ${info.readOnly}`,
  );
}

/** Decodes one stored key-value into a resource, with resourceVersion from its modRevision. */
export function decodeResource(kv: KeyValue): Resource {
  let value: Resource;
  try {
    value = JSON.parse(kv.value) as Resource;
  } catch (err) {
    throw new Error(
      `Stored value at ${quote(kv.key)} is not valid JSON: ${(err as Error).message}`,
    );
  }
  value.metadata = { ...value.metadata, resourceVersion: String(kv.modRevision) };
  return value;
}

/** Kubernetes' timestamp form: RFC 3339 in UTC, whole seconds (`2026-01-02T03:04:05Z`). */
function rfc3339Seconds(d: Date): string {
  return `${d.toISOString().slice(0, 19)}Z`;
}

function encode(resource: Resource): string {
  const { resourceVersion: _rv, ...metadata } = resource.metadata;
  return JSON.stringify({ ...resource, metadata });
}

export class ResourceClient {
  private readonly now: () => Date;
  private readonly uuid: () => string;

  constructor(
    readonly store: Datastore,
    opts: ClientOptions = {},
  ) {
    this.now = opts.now ?? (() => new Date());
    this.uuid = opts.uuid ?? randomUUID;
  }

  async get(info: KindInfo, name: string, namespace?: string): Promise<Resource | undefined> {
    const kv = await this.store.get(resourceKey(info, name, namespace));
    return kv === undefined ? undefined : decodeResource(kv);
  }

  /** Lists a kind (all namespaces when `namespace` is undefined), in key order. */
  async list(info: KindInfo, namespace?: string): Promise<{ items: Resource[]; revision: number }> {
    const res = await this.store.list(kindPrefix(info, namespace));
    return { items: res.items.map(decodeResource), revision: res.revision };
  }

  /** Validates an untyped document and writes it. */
  async write(mode: WriteMode, doc: unknown): Promise<Resource> {
    const v = validateResource(doc);
    await this.check(mode, v);
    return this.writeValidated(mode, v);
  }

  /**
   * Checks, without writing, that `mode` can succeed for a validated resource now: existence,
   * resourceVersion and immutable fields. Throws ResourceError.
   */
  async check(mode: WriteMode, v: Validated, batch: readonly Validated[] = []): Promise<void> {
    const { info, resource } = v;
    const { name, namespace, resourceVersion, uid } = resource.metadata;
    refuseReadOnly(info, name, namespace, mode);
    const current = await this.get(info, name, namespace);
    const what = describe(info, name, namespace);
    if (info.kind === "IPPool" && info.apiVersion === CALICO) await this.checkPoolOverlap(v, batch);
    if (current === undefined && info.apiVersion === CALICO && TIERED.includes(info.kind))
      await this.checkTierExists(v, batch);
    if (current === undefined) {
      if (mode === "update") throw new ResourceError("NotFound", `${what} does not exist`);
      // apply creates a missing resource whatever server-set metadata the document carries (as
      // calicoctl: YAML exported from another cluster applies unchanged); create refuses it.
      if (mode === "create" && resourceVersion !== undefined) {
        throw new ResourceError(
          "Invalid",
          `metadata.resourceVersion: ${quote(resourceVersion)} must not be set when creating ${what} (use apply)`,
        );
      }
      if (mode === "create" && uid !== undefined) {
        throw new ResourceError(
          "Invalid",
          `metadata.uid: ${quote(uid)} must not be set when creating ${what} (use apply)`,
        );
      }
      return;
    }
    if (mode === "create") throw new ResourceError("AlreadyExists", `${what} already exists`);
    if (resourceVersion !== undefined && resourceVersion !== current.metadata.resourceVersion) {
      throw new ResourceError(
        "Conflict",
        `${what}: resourceVersion ${quote(resourceVersion)} is stale (stored: ${quote(current.metadata.resourceVersion)}); get it again and reapply`,
      );
    }
    if (uid !== undefined && uid !== current.metadata.uid) {
      throw new ResourceError(
        "Conflict",
        `${what}: metadata.uid ${quote(uid)} does not match the stored ${quote(current.metadata.uid)}`,
      );
    }
    const issues = immutableIssues(info, current, resource);
    if (issues.length > 0) {
      throw new ResourceError("Invalid", `${what}: ${new ValidationError(issues).message}`, issues);
    }
  }

  /** Calico refuses a pool whose CIDR overlaps another pool's, stored or in the same batch. */
  private async checkPoolOverlap(v: Validated, batch: readonly Validated[]): Promise<void> {
    const mine = (v.resource.spec as { cidr: string }).cidr;
    const others = new Map<string, string>();
    for (const r of (await this.list(v.info)).items)
      others.set(r.metadata.name, (r.spec as { cidr: string }).cidr);
    for (const b of batch)
      if (b.info === v.info)
        others.set(b.resource.metadata.name, (b.resource.spec as { cidr: string }).cidr);
    others.delete(v.resource.metadata.name);
    for (const [other, cidr] of others) {
      if (overlaps(mine, cidr)) {
        const issue = {
          path: "spec.cidr",
          message: `${quote(mine)} overlaps ippool ${quote(other)} (${quote(cidr)})`,
        };
        throw new ResourceError("Invalid", `spec.cidr: ${issue.message}`, [issue]);
      }
    }
  }

  /**
   * Calico creates a policy only in a tier that exists (clientv3's Create gets the Tier first;
   * an update is not checked): a built-in one, a stored Tier, or one in the same batch.
   */
  private async checkTierExists(v: Validated, batch: readonly Validated[]): Promise<void> {
    const tier = tierOf(v.resource);
    if (PROTECTED_TIERS.has(tier)) return;
    if (batch.some((b) => b.info.kind === "Tier" && b.resource.metadata.name === tier)) return;
    const info = kindOf(CALICO, "Tier") as KindInfo;
    if ((await this.get(info, tier)) !== undefined) return;
    const issue = {
      path: "spec.tier",
      message: `tier ${quote(tier)} does not exist: create the Tier first`,
    };
    throw new ResourceError("NotFound", `spec.tier: ${issue.message}`, [issue]);
  }

  /**
   * Calico's rules for deleting a Tier: never a built-in one, never one a policy is in
   * (NetworkPolicy, GlobalNetworkPolicy and their staged kinds).
   */
  private async checkTierDeletable(name: string): Promise<void> {
    if (PROTECTED_TIERS.has(name))
      throw new ResourceError(
        "NotSupported",
        `tier ${quote(name)} is built in: it cannot be deleted`,
      );
    for (const kind of TIERED) {
      const info = kindOf(CALICO, kind) as KindInfo;
      const inIt = (await this.list(info)).items.find((r) => tierOf(r) === name);
      if (inIt !== undefined)
        throw new ResourceError(
          "NotSupported",
          `tier ${quote(name)} is not empty: ${describe(info, inIt.metadata.name, inIt.metadata.namespace)} is in it`,
        );
    }
  }

  /** Writes a validated resource; compare-and-swap guards every update. */
  async writeValidated(mode: WriteMode, v: Validated): Promise<Resource> {
    const { info, resource } = v;
    const { name, namespace } = resource.metadata;
    refuseReadOnly(info, name, namespace, mode);
    const key = resourceKey(info, name, namespace);
    const what = describe(info, name, namespace);
    const current = mode === "create" ? undefined : await this.store.get(key);
    try {
      if (current === undefined) {
        if (mode === "update") throw new ResourceError("NotFound", `${what} does not exist`);
        const fresh: Resource = {
          ...resource,
          metadata: {
            ...resource.metadata,
            uid: this.uuid(),
            creationTimestamp: rfc3339Seconds(this.now()),
          },
        };
        return decodeResource(await this.store.create(key, encode(fresh)));
      }
      const stored = decodeResource(current);
      const wanted = resource.metadata.resourceVersion;
      const expected = wanted === undefined ? current.modRevision : Number(wanted);
      const next: Resource = {
        ...resource,
        metadata: {
          ...resource.metadata,
          uid: stored.metadata.uid,
          creationTimestamp: stored.metadata.creationTimestamp,
        },
      };
      return decodeResource(await this.store.update(key, encode(next), expected));
    } catch (err) {
      if (err instanceof ConflictError) {
        if (err.current === undefined)
          throw new ResourceError("NotFound", `${what} was deleted meanwhile`);
        if (mode === "create" || current === undefined)
          throw new ResourceError("AlreadyExists", `${what} already exists`);
        throw new ResourceError(
          "Conflict",
          `${what}: resourceVersion ${quote(resource.metadata.resourceVersion ?? String(current.modRevision))} is stale (stored: ${quote(String(err.current.modRevision))}); get it again and reapply`,
        );
      }
      if (err instanceof NotFoundError)
        throw new ResourceError("NotFound", `${what} does not exist`);
      throw err;
    }
  }

  /**
   * Validated batch write: every document is checked against the store before the first write.
   * The writes themselves are one compare-and-swap each (the datastore has no multi-key
   * transaction), so a concurrent writer can still make a later one fail.
   */
  async writeAll(mode: WriteMode, items: Validated[]): Promise<Resource[]> {
    for (const v of items) await this.check(mode, v, items);
    const out: Resource[] = [];
    for (const v of items) out.push(await this.writeValidated(mode, v));
    return out;
  }

  /** Deletes one resource (only at `resourceVersion` when given); returns what was deleted. */
  async delete(
    info: KindInfo,
    name: string,
    namespace?: string,
    resourceVersion?: string,
  ): Promise<Resource> {
    refuseReadOnly(info, name, namespace, "delete");
    if (info.kind === "Tier" && info.apiVersion === CALICO) await this.checkTierDeletable(name);
    const key = resourceKey(info, name, namespace);
    const what = describe(info, name, namespace);
    const current = await this.store.get(key);
    if (current === undefined) throw new ResourceError("NotFound", `${what} does not exist`);
    if (resourceVersion !== undefined && resourceVersion !== String(current.modRevision)) {
      throw new ResourceError(
        "Conflict",
        `${what}: resourceVersion ${quote(resourceVersion)} is stale (stored: ${quote(String(current.modRevision))})`,
      );
    }
    try {
      const ok = await this.store.delete(key, current.modRevision);
      if (!ok) throw new ResourceError("NotFound", `${what} does not exist`);
    } catch (err) {
      if (err instanceof ConflictError)
        throw new ResourceError("Conflict", `${what} changed while being deleted; try again`);
      throw err;
    }
    return decodeResource(current);
  }

  /**
   * Watches one kind from a revision; each put or delete is delivered as a resource (deletes
   * carry the last stored state when the store reports it).
   */
  watch(
    info: KindInfo,
    fromRevision: number,
    onChange: (
      change:
        | { type: "put" | "delete"; key: string; resource?: Resource; revision: number }
        | WatchMessage,
    ) => void,
  ) {
    return this.store.watch(kindPrefix(info), fromRevision, (msg) => {
      if (msg.kind !== "events") {
        onChange(msg);
        return;
      }
      for (const ev of msg.events) {
        if (ev.type === "put")
          onChange({
            type: "put",
            key: ev.kv.key,
            resource: decodeResource(ev.kv),
            revision: ev.kv.modRevision,
          });
        else
          onChange({
            type: "delete",
            key: ev.key,
            resource: ev.prev && decodeResource(ev.prev),
            revision: ev.modRevision,
          });
      }
    });
  }
}

// Typed accessors used by IPAM and the node daemon.

function requireKind(apiVersion: string, kind: string): KindInfo {
  const info = kindOf(apiVersion, kind);
  if (info === undefined) throw new Error(`Kind ${kind} is not registered`);
  return info;
}

async function listAs<T>(
  store: Datastore,
  kind: string,
  namespace?: string,
  apiVersion = CALICO,
): Promise<T[]> {
  return (await new ResourceClient(store).list(requireKind(apiVersion, kind), namespace))
    .items as unknown as T[];
}

async function getAs<T>(
  store: Datastore,
  kind: string,
  name: string,
  namespace?: string,
): Promise<T | undefined> {
  return (await new ResourceClient(store).get(requireKind(CALICO, kind), name, namespace)) as
    | T
    | undefined;
}

export const listIPPools = (store: Datastore) => listAs<IPPool>(store, "IPPool");
export const getIPPool = (store: Datastore, name: string) => getAs<IPPool>(store, "IPPool", name);
export const listIPReservations = (store: Datastore) =>
  listAs<IPReservation>(store, "IPReservation");
export const listBGPConfigurations = (store: Datastore) =>
  listAs<BGPConfiguration>(store, "BGPConfiguration");
/** The named BGPConfiguration (`default`, or `node.<name>`), if stored. */
export const getBGPConfiguration = (store: Datastore, name = "default") =>
  getAs<BGPConfiguration>(store, "BGPConfiguration", name);
export const listBGPPeers = (store: Datastore) => listAs<BGPPeer>(store, "BGPPeer");
export const listBGPFilters = (store: Datastore) => listAs<BGPFilter>(store, "BGPFilter");
export const listNodes = (store: Datastore) => listAs<Node>(store, "Node");
export const getNode = (store: Datastore, name: string) => getAs<Node>(store, "Node", name);
export const listWorkloadEndpoints = (store: Datastore, namespace?: string) =>
  listAs<WorkloadEndpoint>(store, "WorkloadEndpoint", namespace);
export const listNetworkPolicies = (store: Datastore, namespace?: string) =>
  listAs<NetworkPolicy>(store, "NetworkPolicy", namespace);
export const listGlobalNetworkPolicies = (store: Datastore) =>
  listAs<GlobalNetworkPolicy>(store, "GlobalNetworkPolicy");
/** The cluster's identity record as a resource (written by src/ipam/cluster.ts), if stored. */
export const getClusterInformation = (store: Datastore) =>
  getAs<ClusterInformation>(store, "ClusterInformation", "default");
export const listK8sNetworkPolicies = (store: Datastore, namespace?: string) =>
  listAs<K8sNetworkPolicy>(store, "NetworkPolicy", namespace, "networking.k8s.io/v1");

/** Writes one resource given as a plain object (validated first): for daemons and tests. */
export function applyResource(
  store: Datastore,
  doc: unknown,
  mode: WriteMode = "apply",
): Promise<Resource> {
  return new ResourceClient(store).write(mode, doc);
}
