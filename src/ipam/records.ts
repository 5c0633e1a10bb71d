// The IPAM keys (DESIGN.md §6) and the small stored records beside blocks: block affinities,
// handles, the IPAM configuration, and pools/reservations read from their v3 resources. Each
// decoder validates and throws IpamDataError naming the key. Not: block contents (block.ts).

import { ConflictError, type Datastore, type KeyValue, NotFoundError } from "../datastore/types.js";
import { type Cidr, type Family, formatCidr, parseCidr } from "../lib/ip.js";
import type { AllowedUse, IpamConfig, Pool } from "./allocator.js";
import { DEFAULT_IPAM_CONFIG } from "./allocator.js";
import { IpamDataError } from "./block.js";
import * as v from "./validate.js";

export const DEFAULT_PREFIX = "/ocelot/";

const fam = (f: Family) => `ipv${f}`;
const cidrKey = (c: Cidr) => formatCidr(c).replace("/", "-");

/** Key layout under a prefix (default "/ocelot/"). */
export class IpamKeys {
  constructor(readonly prefix = DEFAULT_PREFIX) {}
  blockPrefix(f: Family): string {
    return `${this.prefix}ipam/v2/assignment/${fam(f)}/block/`;
  }
  block(c: Cidr): string {
    return `${this.blockPrefix(c.family)}${cidrKey(c)}`;
  }
  hostPrefix(): string {
    return `${this.prefix}ipam/v2/host/`;
  }
  affinityPrefix(node: string, f: Family): string {
    return `${this.prefix}ipam/v2/host/${node}/${fam(f)}/block/`;
  }
  affinity(node: string, c: Cidr): string {
    return `${this.affinityPrefix(node, c.family)}${cidrKey(c)}`;
  }
  handlePrefix(): string {
    return `${this.prefix}ipam/v2/handle/`;
  }
  handle(id: string): string {
    return `${this.handlePrefix()}${id}`;
  }
  /** The record `ocelot ipam configure` wrote before the IPAMConfiguration resource was read. */
  config(): string {
    return `${this.prefix}ipam/v2/config`;
  }
  /** The IPAMConfiguration resource "default", where the settings live (as in Calico). */
  configResource(): string {
    return `${this.resources("ipamconfigurations")}default`;
  }
  resources(plural: string): string {
    return `${this.prefix}resources/v3/${plural}/`;
  }
}

/** The CIDR at the end of a block or affinity key ("10.0.0.0-26"). */
export function cidrFromKey(key: string): Cidr {
  const last = key.slice(key.lastIndexOf("/") + 1);
  const dash = last.lastIndexOf("-");
  try {
    return parseCidr(`${last.slice(0, dash)}/${last.slice(dash + 1)}`);
  } catch (err) {
    throw new IpamDataError(key, `key does not end in a block CIDR (${(err as Error).message})`);
  }
}

/** Runs a reader over stored JSON; any shape problem becomes an IpamDataError naming the key. */
function read<T>(key: string, value: string, what: string, reader: (o: v.Json) => T): T {
  try {
    return reader(v.parseJsonObject(value, what));
  } catch (err) {
    if (err instanceof v.ShapeError) throw new IpamDataError(key, `${what}: ${err.message}`);
    throw err;
  }
}

// ---- Block affinity: ∅ → pending → confirmed → pendingDeletion → ∅ -------------------------
export type AffinityState = "pending" | "confirmed" | "pendingDeletion";

export interface Affinity {
  state: AffinityState;
  node: string;
  cidr: string;
}

const AFFINITY_STATES: readonly AffinityState[] = ["pending", "confirmed", "pendingDeletion"];

export function encodeAffinity(a: Affinity): string {
  return JSON.stringify({ state: a.state, node: a.node, type: "host", cidr: a.cidr });
}

/**
 * The first step of releasing a block's affinity: affinity -> pendingDeletion at its revision
 * (the node's allocator stops using the block). Returns the affinity as decoded and as written,
 * or undefined when it changed or went meanwhile (then nothing was written).
 */
export async function markPendingDeletion(
  store: Datastore,
  akv: KeyValue,
): Promise<{ affinity: Affinity; written: KeyValue } | undefined> {
  const affinity = decodeAffinity(akv.key, akv.value);
  try {
    const written = await store.update(
      akv.key,
      encodeAffinity({ ...affinity, state: "pendingDeletion" }),
      akv.modRevision,
    );
    return { affinity, written };
  } catch (err) {
    if (err instanceof ConflictError || err instanceof NotFoundError) return undefined;
    throw err;
  }
}

export function decodeAffinity(key: string, value: string): Affinity {
  return read(key, value, "block affinity", (o) => {
    v.object(o, "(root)", ["state", "node", "type", "cidr"]);
    const state = v.string(o, "state") as AffinityState;
    if (!AFFINITY_STATES.includes(state))
      throw new v.ShapeError(
        `field "state" must be one of ${AFFINITY_STATES.join(", ")}, got "${state}"`,
      );
    if (o.type !== "host")
      throw new v.ShapeError(`field "type" must be "host", got ${JSON.stringify(o.type)}`);
    return { state, node: v.string(o, "node", { nonEmpty: true }), cidr: v.string(o, "cidr") };
  });
}

// ---- Handle: the blocks that may hold a workload's addresses ------------------------------
export interface Handle {
  handleId: string;
  /** Block CIDRs this handle was given addresses in (a superset: stale entries are harmless). */
  blocks: string[];
}

export function encodeHandle(h: Handle): string {
  return JSON.stringify({ handleId: h.handleId, blocks: h.blocks });
}

export function decodeHandle(key: string, value: string): Handle {
  return read(key, value, "handle", (o) => {
    v.object(o, "(root)", ["handleId", "blocks"]);
    return {
      handleId: v.string(o, "handleId", { nonEmpty: true }),
      blocks: v.stringArray(o, "blocks"),
    };
  });
}

// ---- IPAM configuration --------------------------------------------------------------------
export function decodeConfig(key: string, value: string | undefined): IpamConfig {
  if (value === undefined) return { ...DEFAULT_IPAM_CONFIG };
  return read(key, value, "IPAM configuration", (o) => {
    v.object(o, "(root)", ["strictAffinity", "maxBlocksPerHost", "autoAllocateBlocks"]);
    return {
      strictAffinity: v.boolean(o, "strictAffinity"),
      maxBlocksPerHost: v.nonNegInt(o.maxBlocksPerHost, "maxBlocksPerHost"),
      autoAllocateBlocks: v.boolean(o, "autoAllocateBlocks"),
    };
  });
}

/**
 * The IPAMConfiguration resource "default" as `ocelot apply` stores it (validated there by the
 * API schema; read here by hand, with Calico's defaults, so the CNI plugin loads no schema).
 */
export function decodeConfigResource(key: string, value: string): IpamConfig {
  return read(key, value, "IPAMConfiguration", (o) => {
    const { spec } = resource(o, "IPAMConfiguration");
    return {
      strictAffinity: v.optionalBoolean(spec, "strictAffinity") ?? false,
      maxBlocksPerHost:
        spec.maxBlocksPerHost === undefined
          ? 0
          : v.nonNegInt(spec.maxBlocksPerHost, "spec.maxBlocksPerHost"),
      autoAllocateBlocks: v.optionalBoolean(spec, "autoAllocateBlocks") ?? true,
    };
  });
}

/**
 * The IPAMConfiguration resource with `c`'s settings: `previous` (the stored resource, if any)
 * keeps its metadata and its other spec fields; a new one gets `uid` and `creationTimestamp`.
 */
export function encodeConfigResource(
  c: IpamConfig,
  previous: string | undefined,
  fresh: { uid: string; creationTimestamp: string },
): string {
  const prev = previous === undefined ? undefined : (JSON.parse(previous) as v.Json);
  return JSON.stringify({
    apiVersion: "projectcalico.org/v3",
    kind: "IPAMConfiguration",
    metadata: prev?.metadata ?? { name: "default", ...fresh },
    spec: { ...(prev?.spec ?? {}), ...c },
  });
}

// ---- Pools and reservations (v3 resources) --------------------------------------------------
// The API layer (src/api/ippool.ts) validated these on write; here they are checked again on
// read, by hand, with the same defaults (blockSize 26/122, nodeSelector all(), allowedUses
// Workload+Tunnel), so that the CNI plugin does not load the schema library.
const DEFAULT_BLOCK_SIZE = { 4: 26, 6: 122 } as const;
const BLOCK_SIZE_RANGE = { 4: [20, 32], 6: [116, 128] } as const;
const USES: readonly AllowedUse[] = ["Workload", "Tunnel", "LoadBalancer"];

function resource(o: v.Json, kind: string): { name: string; spec: v.Json } {
  if (o.kind !== kind)
    throw new v.ShapeError(`field "kind" must be "${kind}", got ${JSON.stringify(o.kind)}`);
  const meta = v.object(o.metadata, "metadata");
  return { name: v.string(meta, "name", { nonEmpty: true }), spec: v.object(o.spec, "spec") };
}

function cidrField(text: string, field: string): Cidr {
  try {
    return parseCidr(text, false);
  } catch (err) {
    throw new v.ShapeError(`field "${field}": ${(err as Error).message}`);
  }
}

export function decodePool(key: string, value: string): Pool {
  return read(key, value, "IPPool", (o) => {
    const { name, spec } = resource(o, "IPPool");
    const cidr = cidrField(v.string(spec, "cidr"), "spec.cidr");
    const blockSize =
      spec.blockSize === undefined
        ? DEFAULT_BLOCK_SIZE[cidr.family]
        : v.nonNegInt(spec.blockSize, "spec.blockSize");
    const [min, max] = BLOCK_SIZE_RANGE[cidr.family];
    if (blockSize < min || blockSize > max || blockSize < cidr.prefixLen) {
      throw new v.ShapeError(
        `field "spec.blockSize" ${blockSize} does not fit pool ${formatCidr(cidr)} (${min}..${max})`,
      );
    }
    const uses = spec.allowedUses === undefined ? [] : v.stringArray(spec, "allowedUses");
    const nsSelector = v.optionalString(spec, "namespaceSelector");
    const bad = uses.find((u) => !USES.includes(u as AllowedUse));
    if (bad !== undefined)
      throw new v.ShapeError(`field "spec.allowedUses" has unknown use "${bad}"`);
    return new DecodedPool(
      name,
      cidr,
      blockSize,
      v.optionalString(spec, "nodeSelector") ?? "all()",
      // Empty is no selector (Calico: len(NamespaceSelector) == 0 selects every namespace).
      nsSelector !== undefined && nsSelector.trim() !== "" ? nsSelector : undefined,
      v.optionalBoolean(spec, "disabled") ?? false,
      uses.length > 0 ? (uses as AllowedUse[]) : ["Workload", "Tunnel"],
    );
  });
}

/**
 * A decoded IPPool: made by a constructor, not an object literal. V8 widens the type it records
 * for an object-valued field of a literal (here `cidr`) the second time the literal runs,
 * throwing away the optimized code that relied on it, and that code is every assignment's block
 * check (a process decodes its pools again only when its cached context expires: its first
 * reload did this, bench/ipam_assign.ts's first row). A constructor's fields keep their type.
 */
class DecodedPool implements Pool {
  constructor(
    readonly name: string,
    readonly cidr: Cidr,
    readonly blockSize: number,
    readonly nodeSelector: string,
    readonly namespaceSelector: string | undefined,
    readonly disabled: boolean,
    readonly allowedUses: readonly AllowedUse[],
  ) {}
}

export function decodeReservation(key: string, value: string): Cidr[] {
  return read(key, value, "IPReservation", (o) => {
    const { spec } = resource(o, "IPReservation");
    return v
      .stringArray(spec, "reservedCIDRs")
      .map((c, i) => cidrField(c, `spec.reservedCIDRs.${i}`));
  });
}
