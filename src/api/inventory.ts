// The inventory of Calico's API as Ocelot handles it: for each field path of each Calico kind
// (listed from Calico's CRDs by scripts/calico_inventory.ts), its status read from our schemas:
// supported (parsed, validated, stored), stored (accepted, not acted on: named in a warning) or
// refused (by name, with the reason); and the README table rendered from it. Also the paths of
// one resource whose fields are stored but not acted on, for the warnings.
// Not: the schemas (one module per kind) or the CRD reading (the script).
import type * as z from "zod";
import { FIELD_STATUS, type FieldStatus } from "./fields.js";
import { built } from "./lazy.js";
import { KINDS, type KindInfo } from "./registry.js";

export type PathStatus = "supported" | "stored" | "refused";

export interface InventoryPath {
  path: string;
  type: string;
  status: PathStatus;
  reason?: string;
}

export interface InventoryKind {
  kind: string;
  /** Set when Ocelot has no such kind: why. */
  kindRefused?: string;
  paths: InventoryPath[];
}

export interface Inventory {
  source: string;
  kinds: InventoryKind[];
}

/** Calico kinds Ocelot does not store, and why. */
export const KINDS_NOT_STORED: Record<string, string> = {
  BlockAffinity:
    "IPAM's own records (block affinities are kept by ocelot's IPAM, shown by `ocelot ipam show`)",
  IPAMBlock:
    "IPAM's own records (blocks are kept by ocelot's IPAM, shown by `ocelot ipam show --show-blocks`)",
  IPAMHandle: "IPAM's own records (handles are kept by ocelot's IPAM)",
};

// biome-ignore lint/suspicious/noExplicitAny: walking zod's internal definitions.
type Def = any;
const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

/** The mark on a schema, or on the schema behind a lazy() stand-in (either may carry it). */
const statusOf = (s: z.ZodType): FieldStatus | undefined =>
  FIELD_STATUS.get(s) ?? FIELD_STATUS.get(built(s));

interface Found {
  found: boolean;
  status?: FieldStatus;
}

/** Follows one path part into a schema: an object's key, or "[]" into an array's items. */
function step(
  schema: z.ZodType,
  part: string,
): { next?: z.ZodType; status?: FieldStatus; open?: boolean } {
  let s: z.ZodType | undefined = schema;
  for (let guard = 0; s !== undefined && guard < 20; guard++) {
    const st = statusOf(s);
    if (st !== undefined) return { status: st };
    const d = defOf(s);
    switch (d.type) {
      case "optional":
      case "nullable":
      case "default":
      case "readonly":
      case "catch":
        s = d.innerType;
        continue;
      case "pipe":
        s = (defOf(d.in).type === "transform" ? d.out : d.in) as z.ZodType;
        continue;
      case "union": {
        for (const o of d.options as z.ZodType[]) {
          const r = step(o, part);
          if (r.next !== undefined || r.status !== undefined || r.open) return r;
        }
        return {};
      }
      case "object":
        if (part === "[]") return {};
        return d.shape[part] === undefined ? {} : { next: d.shape[part] };
      case "array":
        return part === "[]" ? { next: d.element } : {};
      case "record":
      case "unknown":
      case "any":
        return { open: true };
      default:
        return {};
    }
  }
  return {};
}

/** Whether our schema of a kind has the path, and the status marked on it or a parent. */
export function lookup(info: KindInfo, path: string): Found {
  let s: z.ZodType = info.schema;
  const parts = path
    .replace(/\[\]/g, ".[]")
    .split(".")
    .filter((p) => p !== "");
  for (const part of parts) {
    const r = step(s, part);
    if (r.status !== undefined) return { found: true, status: r.status };
    if (r.open) return { found: true };
    if (r.next === undefined) return { found: false };
    s = r.next;
  }
  const st = statusOf(s);
  return st === undefined ? { found: true } : { found: true, status: st };
}

export function kindInfoOf(kind: string): KindInfo | undefined {
  return KINDS.find((k) => k.kind === kind && k.apiVersion === "projectcalico.org/v3");
}

const NOT_KNOWN = "not implemented: refused as an unknown field";

/** The inventory of the given Calico kinds and paths, classified against our schemas. */
export function inventory(
  kinds: { kind: string; paths: { path: string; type: string }[] }[],
): Inventory {
  return {
    source: "projectcalico/calico api/config/crd/*.yaml (scripts/calico_inventory.ts)",
    kinds: kinds.map(({ kind, paths }) => {
      const info = kindInfoOf(kind);
      if (info === undefined)
        return {
          kind,
          kindRefused: KINDS_NOT_STORED[kind] ?? "kind not implemented",
          paths: paths.map((p) => ({
            ...p,
            status: "refused" as const,
            reason: "kind not stored",
          })),
        };
      return {
        kind,
        paths: paths.map(({ path, type }) => {
          const f = lookup(info, path);
          if (!f.found) return { path, type, status: "refused" as const, reason: NOT_KNOWN };
          if (f.status === undefined) return { path, type, status: "supported" as const };
          return { path, type, status: f.status.status, reason: f.status.reason };
        }),
      };
    }),
  };
}

/** The README's compatibility section: per kind, counts and the fields not plainly supported. */
export function renderReadme(inv: Inventory): string {
  const lines: string[] = [
    "Generated from `config/calico-api-inventory.json` (`npx tsx scripts/calico_inventory.ts <calico api/config/crd>`);",
    "`test/api/inventory.test.ts` checks every path against the schemas. *Supported*: parsed, validated,",
    "stored and read back; *stored*: accepted and kept, not acted on, named in a warning; *refused*: refused",
    "by name with the reason. Only top-level spec fields (and refused nested ones) are listed below.",
    "",
    "| kind | supported | stored, not acted on | refused |",
    "|---|---|---|---|",
  ];
  for (const k of inv.kinds) {
    const count = (st: PathStatus) => k.paths.filter((p) => p.status === st).length;
    lines.push(
      k.kindRefused !== undefined
        ? `| ${k.kind} | — | — | whole kind: ${k.kindRefused} |`
        : `| ${k.kind} | ${count("supported")} paths | ${count("stored")} | ${count("refused")} |`,
    );
  }
  lines.push("");
  for (const k of inv.kinds) {
    if (k.kindRefused !== undefined) continue;
    const top = (p: InventoryPath) =>
      p.status !== "supported" &&
      !k.paths.some(
        (q) =>
          (q.status === p.status && q.reason === p.reason && p.path.startsWith(`${q.path}.`)) ||
          (q.status === p.status && q.reason === p.reason && p.path.startsWith(`${q.path}[]`)),
      );
    const notSupported = k.paths.filter(top);
    if (notSupported.length === 0) continue;
    const byReason = new Map<string, string[]>();
    for (const p of notSupported) {
      const key = `${p.status}: ${p.reason ?? ""}`;
      byReason.set(key, [...(byReason.get(key) ?? []), `\`${p.path}\``]);
    }
    lines.push(`**${k.kind}**`, "");
    for (const [why, paths] of byReason) {
      const shown =
        paths.length > 12 ? [...paths.slice(0, 12), `… ${paths.length - 12} more`] : paths;
      lines.push(`- ${why}: ${shown.join(", ")}`);
    }
    lines.push("");
  }
  return `${lines.join("\n")}\n`;
}

/**
 * The fields of one resource (its spec and status) that Ocelot stores but does not act on, with
 * the reason (topmost).
 */
export function storedFields(info: KindInfo, resource: unknown): string[] {
  const out: string[] = [];
  const walk = (v: unknown, path: string, generic: string) => {
    if (path !== "") {
      const f = lookup(info, generic);
      if (f.status?.status === "stored") {
        if (v !== false) out.push(`${path}: ${f.status.reason}`);
        return;
      }
    }
    if (Array.isArray(v)) {
      for (const [i, x] of v.entries()) walk(x, `${path}[${i}]`, `${generic}[]`);
    } else if (typeof v === "object" && v !== null && !(path === "" ? false : path === "metadata"))
      for (const [k, x] of Object.entries(v))
        if (path !== "" || k === "spec" || k === "status")
          walk(x, path === "" ? k : `${path}.${k}`, generic === "" ? k : `${generic}.${k}`);
  };
  walk(resource, "", "");
  return out;
}
