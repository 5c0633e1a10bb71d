// Tier (projectcalico.org/v3): an ordered group of policies with a default action at its end
// (Deny, or Pass to the next tier). Calico's rules: a name that is a DNS-1123 label, the
// well-known tiers' fixed order and action (default 1000000/Deny, kube-admin 1000/Pass,
// kube-baseline 10000000/Pass). Not: the ordering itself (src/felix/policy.ts).
import * as z from "zod";
import { own, quote } from "./errors.js";
import { conditionsStatus, labelName, type Metadata, metadataSchema } from "./fields.js";
import { API_VERSION } from "./ippool.js";
import { lazy } from "./lazy.js";

export const DEFAULT_TIER = "default";
export const DEFAULT_TIER_ORDER = 1_000_000;

const WELL_KNOWN: Record<string, { order: number; action: "Deny" | "Pass" }> = {
  default: { order: DEFAULT_TIER_ORDER, action: "Deny" },
  "kube-admin": { order: 1000, action: "Pass" },
  "kube-baseline": { order: 10_000_000, action: "Pass" },
};

export const tierSchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("Tier"),
      metadata: metadataSchema({ namespaced: false, name: labelName }),
      spec: z
        .object({
          order: z
            .number({ error: (iss) => own(`${quote(iss.input)} is not a number`) })
            .optional(),
          defaultAction: z.enum(["Deny", "Pass"]).optional(),
        })
        .strict()
        .optional()
        .transform((s) => s ?? {}),
      status: conditionsStatus,
    })
    .strict()
    .superRefine((t, ctx) => {
      const known = WELL_KNOWN[t.metadata.name];
      if (known === undefined) return;
      if (t.spec.order !== undefined && t.spec.order !== known.order)
        ctx.addIssue({
          code: "custom",
          path: ["spec", "order"],
          message: own(`must be ${known.order} for the ${quote(t.metadata.name)} tier`),
        });
      if (t.spec.defaultAction !== undefined && t.spec.defaultAction !== known.action)
        ctx.addIssue({
          code: "custom",
          path: ["spec", "defaultAction"],
          message: own(`must be ${known.action} for the ${quote(t.metadata.name)} tier`),
        });
    })
    .transform((t) => ({
      ...t,
      spec: { ...t.spec, defaultAction: t.spec.defaultAction ?? "Deny" },
    })),
);

export interface Tier {
  apiVersion: typeof API_VERSION;
  kind: "Tier";
  metadata: Metadata;
  spec: { order?: number; defaultAction: "Deny" | "Pass" };
}
