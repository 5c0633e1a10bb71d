// The cluster's identity and the datastore lock, kept as Calico keeps them: one
// ClusterInformation resource named "default" whose spec holds clusterGUID (made once, by a
// compare-and-swap create, the first time anything needs it) and datastoreReady (false = locked:
// the CNI plugin gives out no new address, so a check report stays true until it is used).
// Owns that record's key, shape and writes. Not: who refuses what while locked (cni, cli).
import { randomUUID } from "node:crypto";
import { ConflictError, type Datastore, type KeyValue, NotFoundError } from "../datastore/types.js";
import { IpamDataError } from "./block.js";
import { IpamKeys } from "./records.js";
import * as v from "./validate.js";

export interface ClusterInformation {
  clusterGUID: string;
  /** false while the datastore is locked (`ocelot datastore lock`). */
  datastoreReady: boolean;
  /** The record's modRevision: a report made under another lock period is stale. */
  revision: number;
}

export const clusterInformationKey = (keys: IpamKeys = new IpamKeys()): string =>
  `${keys.resources("clusterinformations")}default`;

interface Stored {
  clusterGUID?: string;
  datastoreReady: boolean;
  rest: Record<string, unknown>;
}

function decode(key: string, value: string): Stored {
  try {
    const o = v.parseJsonObject(value, "ClusterInformation");
    if (o.kind !== "ClusterInformation")
      throw new v.ShapeError(`field "kind" must be "ClusterInformation", got ${o.kind}`);
    const spec = v.object(o.spec ?? {}, "spec");
    const guid = v.optionalString(spec, "clusterGUID");
    return {
      clusterGUID: guid === "" ? undefined : guid,
      // Calico: an unset datastoreReady means ready.
      datastoreReady: v.optionalBoolean(spec, "datastoreReady") ?? true,
      rest: spec,
    };
  } catch (err) {
    if (err instanceof v.ShapeError) throw new IpamDataError(key, err.message);
    throw err;
  }
}

function encode(s: { clusterGUID: string; datastoreReady: boolean }, rest = {}): string {
  return JSON.stringify({
    apiVersion: "projectcalico.org/v3",
    kind: "ClusterInformation",
    metadata: { name: "default" },
    spec: { ...rest, clusterGUID: s.clusterGUID, datastoreReady: s.datastoreReady },
  });
}

/** A new cluster GUID: 32 hex digits, as Calico writes them. */
export const newClusterGuid = (): string => randomUUID().replaceAll("-", "");

/** The record as stored, without writing anything; undefined when there is none yet. */
export async function readClusterInformation(
  store: Datastore,
  keys?: IpamKeys,
): Promise<(Omit<ClusterInformation, "clusterGUID"> & { clusterGUID?: string }) | undefined> {
  const key = clusterInformationKey(keys);
  const kv = await store.get(key);
  if (!kv) return undefined;
  const s = decode(key, kv.value);
  return { clusterGUID: s.clusterGUID, datastoreReady: s.datastoreReady, revision: kv.modRevision };
}

/** True while the datastore is locked (one read; no record means unlocked). */
export async function isDatastoreLocked(store: Datastore, keys?: IpamKeys): Promise<boolean> {
  return (await readClusterInformation(store, keys))?.datastoreReady === false;
}

const MAX_ATTEMPTS = 20;

/**
 * Reads the record, applying `change` by compare-and-swap (creating the record, and the GUID,
 * when missing). Returns the record as stored afterwards.
 */
async function modify(
  store: Datastore,
  keys: IpamKeys | undefined,
  change: (s: Stored) => { datastoreReady: boolean } | undefined,
): Promise<ClusterInformation> {
  const key = clusterInformationKey(keys);
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const kv = await store.get(key);
    const s: Stored = kv ? decode(key, kv.value) : { datastoreReady: true, rest: {} };
    const want = change(s);
    const ready = want?.datastoreReady ?? s.datastoreReady;
    if (kv && s.clusterGUID && ready === s.datastoreReady)
      return { clusterGUID: s.clusterGUID, datastoreReady: ready, revision: kv.modRevision };
    const next = { clusterGUID: s.clusterGUID ?? newClusterGuid(), datastoreReady: ready };
    try {
      const written: KeyValue = kv
        ? await store.update(key, encode(next, s.rest), kv.modRevision)
        : await store.create(key, encode(next));
      return { ...next, revision: written.modRevision };
    } catch (err) {
      if (!(err instanceof ConflictError || err instanceof NotFoundError)) throw err;
      // Someone else wrote it meanwhile (another first user made the GUID): read again.
    }
  }
  throw new Error(`Gave up writing "${key}" after ${MAX_ATTEMPTS} compare-and-swap attempts`);
}

/** The cluster's identity, made once when absent. */
export function ensureClusterInformation(
  store: Datastore,
  keys?: IpamKeys,
): Promise<ClusterInformation> {
  return modify(store, keys, () => undefined);
}

/** Locks (datastoreReady false) or unlocks the datastore; idempotent. */
export function setDatastoreLocked(
  store: Datastore,
  locked: boolean,
  keys?: IpamKeys,
): Promise<ClusterInformation> {
  return modify(store, keys, () => ({ datastoreReady: !locked }));
}
