// IPPool and IPReservation (projectcalico.org/v3): schemas, Calico's defaults (blockSize 26/122,
// nodeSelector all(), allowedUses [Workload, Tunnel], ipipMode/vxlanMode Never) and validation;
// namespaceSelector (pods of matching namespaces only) acts in IPAM's pool choice.
// Not: allocation from pools (src/ipam) or storage (client.ts).
import * as z from "zod";
import { own, quote } from "./errors.js";
import {
  cidr,
  cidrOrIp,
  conditionsStatus,
  type Metadata,
  metadataSchema,
  parseCidr,
  selector,
} from "./fields.js";
import { lazy } from "./lazy.js";

export const API_VERSION = "projectcalico.org/v3";

export const DEFAULT_BLOCK_SIZE_V4 = 26;
export const DEFAULT_BLOCK_SIZE_V6 = 122;
export const BLOCK_SIZE_RANGE = { 4: [20, 32], 6: [116, 128] } as const;

export const EncapMode = lazy(() => z.enum(["Never", "Always", "CrossSubnet"]));
export type EncapMode = z.infer<typeof EncapMode>;
export const AllowedUse = lazy(() => z.enum(["Workload", "Tunnel", "LoadBalancer"]));
export type AllowedUse = z.infer<typeof AllowedUse>;

const ipPoolSpec = lazy(() =>
  z
    .object({
      cidr: cidr(),
      blockSize: z.number().int().optional(),
      ipipMode: EncapMode.optional(),
      vxlanMode: EncapMode.optional(),
      natOutgoing: z.boolean().optional(),
      disabled: z.boolean().optional(),
      disableBGPExport: z.boolean().optional(),
      nodeSelector: selector
        .refine((t) => !/\bglobal\s*\(/.test(t), {
          error: (iss) =>
            own(`${quote(iss.input)}: global() is not valid in an IPPool's nodeSelector`),
        })
        .optional(),
      // Which namespaces' pods may take addresses from the pool (both selectors must match).
      namespaceSelector: selector
        .refine((t) => t.length <= 1024, {
          error: () => own("is longer than 1024 characters"),
        })
        .refine((t) => !/\bglobal\s*\(/.test(t), {
          error: (iss) =>
            own(`${quote(iss.input)}: global() is not valid in an IPPool's namespaceSelector`),
        })
        .optional(),
      allowedUses: z.array(AllowedUse).optional(),
      assignmentMode: z.enum(["Automatic", "Manual"]).optional(),
      // APIv1 leftovers: Calico itself refuses them in v3 ("mustBeNil"/"mustBeFalse").
      ipip: z.never({ error: own("is the Calico APIv1 field; use spec.ipipMode") }).optional(),
      "nat-outgoing": z
        .never({ error: own("is the Calico APIv1 field; use spec.natOutgoing") })
        .optional(),
    })
    .strict()
    .superRefine((spec, ctx) => {
      const p = parseCidr(spec.cidr);
      if (p === undefined) return;
      const [min, max] = BLOCK_SIZE_RANGE[p.family];
      const block =
        spec.blockSize ?? (p.family === 4 ? DEFAULT_BLOCK_SIZE_V4 : DEFAULT_BLOCK_SIZE_V6);
      if (spec.blockSize !== undefined && (block < min || block > max)) {
        ctx.addIssue({
          code: "custom",
          path: ["blockSize"],
          message: own(
            `${quote(spec.blockSize)} is out of range for an IPv${p.family} pool (${min}..${max})`,
          ),
        });
      } else if (p.prefixLength > block && spec.disabled !== true) {
        ctx.addIssue({
          code: "custom",
          path: ["cidr"],
          message: own(
            `${quote(spec.cidr)} is smaller than one block (/${block}); use a prefix of /${block} or shorter`,
          ),
        });
      }
      if (p.family === 6 && spec.ipipMode !== undefined && spec.ipipMode !== "Never") {
        ctx.addIssue({
          code: "custom",
          path: ["ipipMode"],
          message: own(
            `${quote(spec.ipipMode)} is not allowed on an IPv6 pool (IP-in-IP is IPv4 only)`,
          ),
        });
      }
      if (
        spec.vxlanMode !== undefined &&
        spec.vxlanMode !== "Never" &&
        spec.ipipMode !== undefined &&
        spec.ipipMode !== "Never"
      ) {
        // Calico's validator: one encapsulation per pool.
        ctx.addIssue({
          code: "custom",
          path: ["vxlanMode"],
          message: own(
            `${quote(spec.vxlanMode)} cannot be combined with ipipMode ${quote(spec.ipipMode)}: a pool uses one encapsulation`,
          ),
        });
      }
      const special = SPECIAL_RANGES[p.family].find(([range]) => overlaps(p.network, range));
      if (special !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["cidr"],
          message: own(`${quote(spec.cidr)} overlaps the ${special[1]} range ${quote(special[0])}`),
        });
      }
      if (spec.allowedUses?.includes("LoadBalancer")) {
        if (spec.disableBGPExport === true)
          ctx.addIssue({
            code: "custom",
            path: ["disableBGPExport"],
            message: own("LoadBalancer IP pools cannot disable BGP export"),
          });
        if (spec.nodeSelector !== undefined && spec.nodeSelector.trim() !== "all()")
          ctx.addIssue({
            code: "custom",
            path: ["nodeSelector"],
            message: own("must be all() (or unset) on a LoadBalancer IP pool"),
          });
        if (spec.ipipMode !== undefined && spec.ipipMode !== "Never")
          ctx.addIssue({
            code: "custom",
            path: ["ipipMode"],
            message: own("a LoadBalancer IP pool cannot have IP-in-IP enabled"),
          });
        if (spec.vxlanMode !== undefined && spec.vxlanMode !== "Never")
          ctx.addIssue({
            code: "custom",
            path: ["vxlanMode"],
            message: own("a LoadBalancer IP pool cannot have VXLAN enabled"),
          });
      }
      // CEL: "IP Pool with AllowedUse Tunnel cannot have namespaceSelector".
      if (
        spec.allowedUses?.includes("Tunnel") &&
        spec.namespaceSelector !== undefined &&
        spec.namespaceSelector !== ""
      )
        ctx.addIssue({
          code: "custom",
          path: ["namespaceSelector"],
          message: own("cannot be set on a pool whose allowedUses include Tunnel"),
        });
      if (spec.allowedUses !== undefined) {
        if (spec.allowedUses.includes("LoadBalancer") && spec.allowedUses.length > 1) {
          ctx.addIssue({
            code: "custom",
            path: ["allowedUses"],
            message: own(
              `${quote(spec.allowedUses)}: LoadBalancer cannot be combined with other uses`,
            ),
          });
        }
      }
    })
    .transform((spec) => {
      const family = parseCidr(spec.cidr)?.family ?? 4;
      return {
        ...spec,
        blockSize: spec.blockSize ?? (family === 4 ? DEFAULT_BLOCK_SIZE_V4 : DEFAULT_BLOCK_SIZE_V6),
        ipipMode: spec.ipipMode ?? "Never",
        vxlanMode: spec.vxlanMode ?? "Never",
        natOutgoing: spec.natOutgoing ?? false,
        nodeSelector: spec.nodeSelector ?? "all()",
        // Calico's client defaults to [Workload, Tunnel], which its CRD's CEL rule then refuses
        // beside a namespaceSelector; such a pool is for workloads only (a node's tunnel address
        // has no namespace), so that is its default here and the pool reads back re-appliable.
        allowedUses:
          spec.allowedUses === undefined || spec.allowedUses.length === 0
            ? (((spec.namespaceSelector ?? "") !== ""
                ? ["Workload"]
                : ["Workload", "Tunnel"]) as AllowedUse[])
            : spec.allowedUses,
        assignmentMode: spec.assignmentMode ?? "Automatic",
      };
    }),
);

/** Ranges no pool may overlap: pod addresses there would never be routed. */
const SPECIAL_RANGES: Record<4 | 6, Array<[string, string]>> = {
  4: [
    ["169.254.0.0/16", "link-local"],
    ["127.0.0.0/8", "loopback"],
    ["224.0.0.0/4", "multicast"],
  ],
  6: [
    ["fe80::/10", "link-local"],
    ["::1/128", "loopback"],
    ["ff00::/8", "multicast"],
  ],
};

/** True when two CIDRs of the same family share any address. */
export function overlaps(a: string, b: string): boolean {
  const pa = parseCidr(a);
  const pb = parseCidr(b);
  if (pa === undefined || pb === undefined || pa.family !== pb.family) return false;
  const len = Math.min(pa.prefixLength, pb.prefixLength);
  const na = parseCidr(`${pa.address}/${len}`)?.network.split("/")[0];
  const nb = parseCidr(`${pb.address}/${len}`)?.network.split("/")[0];
  return na === nb;
}

export const ipPoolSchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("IPPool"),
      metadata: metadataSchema({ namespaced: false }),
      spec: ipPoolSpec,
      status: conditionsStatus,
    })
    .strict(),
);

export type IPPoolSpec = z.output<typeof ipPoolSpec>;
export interface IPPool {
  apiVersion: typeof API_VERSION;
  kind: "IPPool";
  metadata: Metadata;
  spec: IPPoolSpec;
}

const ipReservationSpec = lazy(() =>
  z
    .object({
      reservedCIDRs: z.array(cidrOrIp()).min(1),
    })
    .strict(),
);

export const ipReservationSchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("IPReservation"),
      metadata: metadataSchema({ namespaced: false }),
      spec: ipReservationSpec,
    })
    .strict(),
);

export type IPReservationSpec = z.output<typeof ipReservationSpec>;
export interface IPReservation {
  apiVersion: typeof API_VERSION;
  kind: "IPReservation";
  metadata: Metadata;
  spec: IPReservationSpec;
}
