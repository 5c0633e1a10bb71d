// GlobalNetworkSet and NetworkSet (projectcalico.org/v3): labelled lists of CIDRs that rule
// selectors match like endpoints (validateGlobalNetworkSet / validateNetworkSet: CIDRs or bare
// IPs, host bits allowed, no projectcalico.org/namespace label). Not: rendering them as ipsets
// (src/felix/policy.ts) or storage.
import * as z from "zod";
import { own } from "./errors.js";
import { cidr, type Metadata, metadataSchema } from "./fields.js";
import { API_VERSION } from "./ippool.js";
import { lazy } from "./lazy.js";

const RESERVED_LABEL = "projectcalico.org/namespace";

/** A set's nets: Calico's "net" tag takes a CIDR (host bits allowed) or a bare IP. */
const setNets = lazy(() => z.array(cidr({ allowHostBits: true, allowBareIp: true })));

function metadata(namespaced: boolean) {
  return metadataSchema({ namespaced }).superRefine((m, ctx) => {
    if (m.labels !== undefined && RESERVED_LABEL in m.labels)
      ctx.addIssue({
        code: "custom",
        path: ["labels", RESERVED_LABEL],
        message: own(`is reserved: Calico sets it from the namespace, never in a resource`),
      });
  });
}

const spec = lazy(() =>
  z
    .object({ nets: setNets.optional() })
    .strict()
    .optional()
    .transform((s) => s ?? {}),
);

export const globalNetworkSetSchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("GlobalNetworkSet"),
      metadata: metadata(false),
      spec,
    })
    .strict(),
);

export const networkSetSchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("NetworkSet"),
      metadata: metadata(true),
      spec,
    })
    .strict(),
);

export interface NetworkSetResource {
  apiVersion: typeof API_VERSION;
  kind: "GlobalNetworkSet" | "NetworkSet";
  metadata: Metadata;
  spec: { nets?: string[] };
}
