// The `ocelot bgpd --config FILE` YAML: schema (zod, strict), parsing with errors that name the
// field path and value, defaults, and impact(old, new) per peer for reconfiguration by diff.
// Not: applying the change (src/bgp/speaker.ts) or the filter semantics (src/bgp/policy/).
import { isIP } from "node:net";
import ipaddr from "ipaddr.js";
import { parse as parseYaml } from "yaml";
import { z } from "zod";

const FAMILY = z.enum(["ipv4-unicast", "ipv6-unicast"]);

const asn = z
  .number()
  .int()
  .min(1)
  .max(4294967295)
  .refine((n) => n !== 23456, { message: "AS 23456 is AS_TRANS and cannot be used" });

const ipAddress = z.string().refine((s) => isIP(s) !== 0, { message: "not an IP address" });
/** An address in canonical text (RFC 5952 for IPv6), as sockets report it. */
const canonicalAddress = ipAddress.transform((s) => ipaddr.parse(s).toString());
const ipv4Address = z.string().refine((s) => isIP(s) === 4, { message: "not an IPv4 address" });

function validCidr(s: string): boolean {
  const [addr, len, ...rest] = s.split("/");
  if (rest.length > 0 || addr === undefined || len === undefined || !/^\d{1,3}$/.test(len))
    return false;
  const v = isIP(addr);
  const n = Number(len);
  return v !== 0 && n <= (v === 4 ? 32 : 128);
}
const cidr = z.string().refine(validCidr, { message: "not a CIDR (address/length)" });

const community = z
  .string()
  .regex(/^\d{1,5}:\d{1,5}$/, "not a community (AS:value)")
  .refine((s) => s.split(":").every((p) => Number(p) <= 65535), {
    message: "community parts must be at most 65535",
  });
const largeCommunity = z
  .string()
  .regex(/^\d{1,10}:\d{1,10}:\d{1,10}$/, "not a large community (global:local1:local2)")
  .refine((s) => s.split(":").every((p) => Number(p) <= 4294967295), {
    message: "large community parts must be at most 4294967295",
  });

/** A rule in the shape of Calico's BGPFilter (v3 BGPFilterRuleV4/V6). */
export const FilterRuleSchema = z
  .object({
    action: z.enum(["Accept", "Reject"]),
    cidr: cidr.optional(),
    matchOperator: z.enum(["Equal", "NotEqual", "In", "NotIn"]).optional(),
    prefixLength: z
      .object({
        min: z.number().int().min(0).max(128).optional(),
        max: z.number().int().min(0).max(128).optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .refine((r) => (r.cidr === undefined) === (r.matchOperator === undefined), {
    message: "cidr and matchOperator go together",
  });

export const FilterSchema = z.object({ rules: z.array(FilterRuleSchema) }).strict();

const holdTime = z
  .number()
  .int()
  .min(0)
  .max(65535)
  .refine((n) => n === 0 || n >= 3, { message: "hold time must be 0 or at least 3 seconds" });

export const PeerSchema = z
  .object({
    address: canonicalAddress,
    asn,
    port: z.number().int().min(1).max(65535).default(179),
    passive: z.boolean().default(false),
    holdTime: holdTime.default(90),
    connectRetryTime: z.number().int().min(1).max(65535).default(5),
    families: z.array(FAMILY).min(1).optional(),
    requiredFamilies: z.array(FAMILY).default([]),
    sourceAddress: canonicalAddress.optional(),
    /** eBGP multihop TTL; absent means TTL 1 towards eBGP peers (directly connected). */
    multihop: z.number().int().min(1).max(255).optional(),
    allowOwnAs: z.number().int().min(0).max(10).default(0),
    routeReflectorClient: z.boolean().default(false),
    nextHopSelf: z.boolean().optional(),
    importFilter: FilterSchema.optional(),
    exportFilter: FilterSchema.optional(),
  })
  .strict();

export const OriginateSchema = z
  .object({
    prefix: cidr,
    communities: z.array(community).default([]),
    largeCommunities: z.array(largeCommunity).default([]),
  })
  .strict();

export const BgpdConfigSchema = z
  .object({
    asn,
    routerId: ipv4Address,
    listen: z
      .object({
        address: ipAddress.default("0.0.0.0"),
        port: z.number().int().min(0).max(65535).default(179),
      })
      .strict()
      .default({ address: "0.0.0.0", port: 179 }),
    /** Route-reflector cluster ID; defaults to the router ID when there are RR clients. */
    clusterId: ipv4Address.optional(),
    peers: z.array(PeerSchema).default([]),
    originate: z.array(OriginateSchema).default([]),
    fib: z
      .object({
        enabled: z.boolean().default(true),
        table: z
          .union([z.literal("main"), z.number().int().min(1).max(4294967295)])
          .default("main"),
        protocol: z.number().int().min(1).max(255).default(201),
        /** Seconds to keep routes found in the kernel at start (a restart) before sweeping them. */
        gracefulRestartTime: z.number().int().min(0).max(3600).default(120),
      })
      .strict()
      .default({ enabled: true, table: "main", protocol: 201, gracefulRestartTime: 120 }),
    status: z
      .object({ socket: z.string().min(1).default("/run/ocelot/bgpd.sock") })
      .strict()
      .default({ socket: "/run/ocelot/bgpd.sock" }),
  })
  .strict()
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.peers.forEach((p, i) => {
      if (seen.has(p.address)) {
        ctx.addIssue({
          code: "custom",
          path: ["peers", i, "address"],
          message: `duplicate peer ${p.address}`,
        });
      }
      seen.add(p.address);
    });
  });

export type BgpdConfig = z.infer<typeof BgpdConfigSchema>;
export type PeerConfig = z.infer<typeof PeerSchema>;
export type FilterRule = z.infer<typeof FilterRuleSchema>;
export type Origination = z.infer<typeof OriginateSchema>;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

function pathText(path: PropertyKey[]): string {
  return path.reduce<string>(
    (acc, p) => (typeof p === "number" ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)),
    "",
  );
}

function valueAt(root: unknown, path: PropertyKey[]): unknown {
  let v: unknown = root;
  for (const p of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

/** Validates a parsed document; throws ConfigError naming each bad field path and its value. */
export function parseConfig(doc: unknown): BgpdConfig {
  const r = BgpdConfigSchema.safeParse(doc);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => {
    const where = pathText(i.path) || "(top level)";
    if (i.code === "unrecognized_keys") {
      return `${where || "(top level)"}: unknown field ${i.keys.map((k) => JSON.stringify(k)).join(", ")}`;
    }
    const v = valueAt(doc, i.path);
    if (v === undefined && i.code === "invalid_type") return `${where}: required field is missing`;
    return `${where}: ${i.message} (got ${JSON.stringify(v)})`;
  });
  throw new ConfigError(`Invalid bgpd config: ${lines.join("; ")}`);
}

export function parseConfigText(text: string, source = "config"): BgpdConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`Could not parse ${source} as YAML: ${(err as Error).message}`);
  }
  return parseConfig(doc);
}

/** The families a peer uses: configured, or those of its address's family plus the other. */
export function peerFamilies(p: PeerConfig): ("ipv4-unicast" | "ipv6-unicast")[] {
  return p.families ?? ["ipv4-unicast", "ipv6-unicast"];
}

export type Impact = "none" | "refresh" | "reset";

export interface PeerImpact {
  address: string;
  impact: Impact;
  /** The field that forced the impact (first one found), e.g. "asn" or "exportFilter". */
  field?: string;
}

export interface ConfigDiff {
  added: PeerConfig[];
  removed: PeerConfig[];
  changed: PeerImpact[];
  /** Originations or global export inputs changed: re-export to every peer. */
  reexport: boolean;
  /** Listen address/port changed: the listener must be reopened. */
  relisten: boolean;
  fibChanged: boolean;
  statusChanged: boolean;
}

/** Peer fields whose change needs a new session (capabilities, transport, identity). */
const RESET_FIELDS: (keyof PeerConfig)[] = [
  "asn",
  "port",
  "passive",
  "holdTime",
  "connectRetryTime",
  "families",
  "requiredFamilies",
  "sourceAddress",
  "multihop",
];
/** Peer fields a route refresh or re-export can apply. */
const REFRESH_FIELDS: (keyof PeerConfig)[] = [
  "importFilter",
  "exportFilter",
  "allowOwnAs",
  "routeReflectorClient",
  "nextHopSelf",
];

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** What changing one peer's config from a to b needs (BIRD's bgp_reconfigure() idea). */
export function peerImpact(a: PeerConfig, b: PeerConfig): PeerImpact {
  for (const f of RESET_FIELDS)
    if (!same(a[f], b[f])) return { address: b.address, impact: "reset", field: f };
  for (const f of REFRESH_FIELDS)
    if (!same(a[f], b[f])) return { address: b.address, impact: "refresh", field: f };
  return { address: b.address, impact: "none" };
}

/** impact(old, new): per-peer none | refresh | reset, with the field that forced it. */
export function impact(old: BgpdConfig, next: BgpdConfig): ConfigDiff {
  const before = new Map(old.peers.map((p) => [p.address, p]));
  const after = new Map(next.peers.map((p) => [p.address, p]));
  const globalReset =
    old.asn !== next.asn ? "asn" : old.routerId !== next.routerId ? "routerId" : undefined;
  const changed: PeerImpact[] = [];
  for (const [addr, b] of after) {
    const a = before.get(addr);
    if (!a) continue;
    if (globalReset) changed.push({ address: addr, impact: "reset", field: globalReset });
    else if (
      old.clusterId !== next.clusterId &&
      (a.routeReflectorClient || b.routeReflectorClient)
    ) {
      changed.push({ address: addr, impact: "refresh", field: "clusterId" });
    } else changed.push(peerImpact(a, b));
  }
  return {
    added: next.peers.filter((p) => !before.has(p.address)),
    removed: old.peers.filter((p) => !after.has(p.address)),
    changed,
    reexport: !same(old.originate, next.originate),
    relisten: !same(old.listen, next.listen),
    fibChanged: !same(old.fib, next.fib),
    statusChanged: !same(old.status, next.status),
  };
}
