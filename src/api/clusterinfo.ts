// ClusterInformation (projectcalico.org/v3): the schema of the cluster's one identity record,
// "default" (clusterGUID, clusterType, calicoVersion, datastoreReady, variant), so `ocelot get
// clusterinformations` reads it. Not: writing it (src/ipam/cluster.ts owns its key and writes:
// `ocelot datastore lock|unlock`, `ocelot ipam check`); the resource commands only read it, as
// calicoctl, which refuses to create, apply, replace or delete it.
import * as z from "zod";
import { own, quote } from "./errors.js";
import { type Metadata, metadataSchema } from "./fields.js";
import { API_VERSION } from "./ippool.js";
import { lazy } from "./lazy.js";

/** Calico keeps one record and refuses any other name. */
export const CLUSTER_INFORMATION_NAME = "default";

/** Who writes the record, for the refusal of the resource commands. */
export const CLUSTER_INFORMATION_WRITERS =
  "it is written by `ocelot datastore lock|unlock` and `ocelot ipam check` (calicoctl refuses it too)";

const clusterInformationSpec = lazy(() =>
  z
    .object({
      /** 32 hex digits as Ocelot and Calico make it; kept as given. */
      clusterGUID: z.string().optional(),
      /** Comma-separated tags (Calico: "k8s,bgp,kdd"). */
      clusterType: z.string().optional(),
      calicoVersion: z.string().optional(),
      /** false while the datastore is locked; unset means ready (Calico). */
      datastoreReady: z.boolean().optional(),
      variant: z.string().optional(),
    })
    .strict(),
);

export const clusterInformationSchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("ClusterInformation"),
      metadata: metadataSchema({
        namespaced: false,
        name: z.string().refine((n) => n === CLUSTER_INFORMATION_NAME, {
          error: (iss) =>
            own(
              `${quote(iss.input)} is not allowed: the cluster has one ClusterInformation, named "${CLUSTER_INFORMATION_NAME}"`,
            ),
        }),
      }),
      spec: clusterInformationSpec.optional().transform((s) => s ?? {}),
    })
    .strict(),
);

export type ClusterInformationSpec = z.output<typeof clusterInformationSpec>;
export interface ClusterInformation {
  apiVersion: typeof API_VERSION;
  kind: "ClusterInformation";
  metadata: Metadata;
  spec: ClusterInformationSpec;
}
