// The IPAM keys (DESIGN.md §6) and the small stored records beside blocks: block affinities,
// handles, the IPAM configuration, and pools/reservations read from their v3 resources. Each
// decoder validates and throws IpamDataError naming the key. Not: block contents (block.ts).
import { z } from "zod";
import { ipPoolSchema, ipReservationSchema } from "../api/ippool.js";
import type { AllowedUse, IpamConfig, Pool } from "./allocator.js";
import { DEFAULT_IPAM_CONFIG } from "./allocator.js";
import { IpamDataError } from "./block.js";
import { type Cidr, type Family, formatCidr, parseCidr } from "./cidr.js";

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
  config(): string {
    return `${this.prefix}ipam/v2/config`;
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

function parseJson<T>(key: string, value: string, schema: z.ZodType<T>, what: string): T {
  let raw: unknown;
  try {
    raw = JSON.parse(value);
  } catch (err) {
    throw new IpamDataError(key, `${what} is not JSON (${(err as Error).message})`);
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new IpamDataError(
      key,
      `${what} field "${issue?.path.join(".") || "(root)"}": ${issue?.message}`,
    );
  }
  return r.data;
}

// ---- Block affinity: ∅ → pending → confirmed → pendingDeletion → ∅ -------------------------
export type AffinityState = "pending" | "confirmed" | "pendingDeletion";

export interface Affinity {
  state: AffinityState;
  node: string;
  cidr: string;
}

const AffinitySchema = z
  .object({
    state: z.enum(["pending", "confirmed", "pendingDeletion"]),
    node: z.string().min(1),
    type: z.literal("host"),
    cidr: z.string(),
  })
  .strict();

export function encodeAffinity(a: Affinity): string {
  return JSON.stringify({ state: a.state, node: a.node, type: "host", cidr: a.cidr });
}

export function decodeAffinity(key: string, value: string): Affinity {
  const a = parseJson(key, value, AffinitySchema, "block affinity");
  return { state: a.state, node: a.node, cidr: a.cidr };
}

// ---- Handle: the blocks that may hold a workload's addresses ------------------------------
export interface Handle {
  handleId: string;
  /** Block CIDRs this handle was given addresses in (a superset: stale entries are harmless). */
  blocks: string[];
}

const HandleSchema = z
  .object({ handleId: z.string().min(1), blocks: z.array(z.string()) })
  .strict();

export function encodeHandle(h: Handle): string {
  return JSON.stringify({ handleId: h.handleId, blocks: h.blocks });
}

export function decodeHandle(key: string, value: string): Handle {
  return parseJson(key, value, HandleSchema, "handle");
}

// ---- IPAM configuration --------------------------------------------------------------------
const ConfigSchema = z
  .object({
    strictAffinity: z.boolean(),
    maxBlocksPerHost: z.number().int().min(0),
    autoAllocateBlocks: z.boolean(),
  })
  .strict();

export function encodeConfig(c: IpamConfig): string {
  return JSON.stringify(c);
}

export function decodeConfig(key: string, value: string | undefined): IpamConfig {
  if (value === undefined) return { ...DEFAULT_IPAM_CONFIG };
  return parseJson(key, value, ConfigSchema, "IPAM configuration");
}

// ---- Pools and reservations (v3 resources, validated by the API schemas) ------------------
export function decodePool(key: string, value: string): Pool {
  const r = parseJson(
    key,
    value,
    ipPoolSchema as unknown as z.ZodType<z.output<typeof ipPoolSchema>>,
    "IPPool",
  );
  return {
    name: r.metadata.name,
    cidr: parseCidr(r.spec.cidr, false),
    blockSize: r.spec.blockSize,
    nodeSelector: r.spec.nodeSelector,
    disabled: r.spec.disabled ?? false,
    allowedUses: r.spec.allowedUses as AllowedUse[],
  };
}

export function decodeReservation(key: string, value: string): Cidr[] {
  const r = parseJson(
    key,
    value,
    ipReservationSchema as unknown as z.ZodType<z.output<typeof ipReservationSchema>>,
    "IPReservation",
  );
  return r.spec.reservedCIDRs.map((c) => parseCidr(c, false));
}
