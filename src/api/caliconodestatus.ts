// CalicoNodeStatus (projectcalico.org/v3): a node's status as Calico's API defines it (spec:
// node, classes Agent/BGP/Routes, updatePeriodSeconds; status: lastUpdated, agent birdV4/birdV6,
// bgp established counts and peersV4/V6, routes routesV4/V6), and how `ocelot get` shows it,
// stale when a node stopped writing it. Not: filling it (src/node/calico_node_status.ts builds
// the status, the node daemon writes it).
import * as z from "zod";
import { type Metadata, metadataSchema } from "./fields.js";
import { API_VERSION } from "./ippool.js";
import { lazy } from "./lazy.js";

export const NODE_STATUS_CLASSES = ["Agent", "BGP", "Routes"] as const;
export const BGP_SESSION_STATES = [
  "Idle",
  "Connect",
  "Active",
  "OpenSent",
  "OpenConfirm",
  "Established",
  "Close",
] as const;

const calicoNodeStatusSpec = lazy(() =>
  z
    .object({
      node: z.string().min(1),
      classes: z
        .array(z.enum(NODE_STATUS_CLASSES))
        .refine((c) => new Set(c).size === c.length, { message: "classes must be unique" })
        .optional(),
      /** 0 disables the refresh; at most one day (Calico). */
      updatePeriodSeconds: z.number().int().min(0).max(86_400).optional(),
    })
    .strict(),
);

const daemonStatus = lazy(() =>
  z
    .object({
      state: z.enum(["Ready", "NotReady"]).optional(),
      version: z.string().optional(),
      routerID: z.string().optional(),
      lastBootTime: z.string().optional(),
      lastReconfigurationTime: z.string().optional(),
    })
    .strict(),
);

const peer = lazy(() =>
  z
    .object({
      peerIP: z.string().optional(),
      type: z.enum(["NodeMesh", "NodePeer", "GlobalPeer"]).optional(),
      state: z.enum(BGP_SESSION_STATES).optional(),
      since: z.string().optional(),
    })
    .strict(),
);

const route = lazy(() =>
  z
    .object({
      type: z.enum(["FIB", "RIB"]).optional(),
      destination: z.string().optional(),
      gateway: z.string().optional(),
      interface: z.string().optional(),
      learnedFrom: z
        .object({
          sourceType: z.enum(["Kernel", "Static", "Direct", "NodeMesh", "BGPPeer"]).optional(),
          peerIP: z.string().optional(),
        })
        .strict()
        .optional(),
    })
    .strict(),
);

const calicoNodeStatusStatus = lazy(() =>
  z
    .object({
      /** RFC 3339, UTC: when the node last wrote its status. */
      lastUpdated: z.string().nullable().optional(),
      agent: z
        .object({ birdV4: daemonStatus.optional(), birdV6: daemonStatus.optional() })
        .strict(),
      bgp: z
        .object({
          numberEstablishedV4: z.number().int().min(0),
          numberNotEstablishedV4: z.number().int().min(0),
          numberEstablishedV6: z.number().int().min(0),
          numberNotEstablishedV6: z.number().int().min(0),
          peersV4: z.array(peer).optional(),
          peersV6: z.array(peer).optional(),
        })
        .strict(),
      routes: z
        .object({ routesV4: z.array(route).optional(), routesV6: z.array(route).optional() })
        .strict(),
    })
    .partial()
    .strict(),
);

export const calicoNodeStatusSchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("CalicoNodeStatus"),
      metadata: metadataSchema({ namespaced: false }),
      spec: calicoNodeStatusSpec,
      status: calicoNodeStatusStatus.optional(),
    })
    .strict(),
);

export type CalicoNodeStatusSpec = z.output<typeof calicoNodeStatusSpec>;
export type CalicoNodeStatusStatus = z.output<typeof calicoNodeStatusStatus>;
export type CalicoNodePeer = z.output<typeof peer>;
export type CalicoNodeRoute = z.output<typeof route>;

export interface CalicoNodeStatus {
  apiVersion: typeof API_VERSION;
  kind: "CalicoNodeStatus";
  metadata: Metadata;
  spec: CalicoNodeStatusSpec;
  status?: CalicoNodeStatusStatus;
}

/**
 * A status is stale when its node has not written it for three of its periods (and at least
 * 5 s): the node daemon is down or cannot reach the datastore.
 */
export function staleSince(r: CalicoNodeStatus, nowMs: number): string | undefined {
  const last = r.status?.lastUpdated;
  const period = r.spec.updatePeriodSeconds ?? 0;
  if (!last) return undefined;
  if (period === 0) return undefined;
  const age = nowMs - Date.parse(last);
  return age > Math.max(3 * period * 1000, 5000) ? last : undefined;
}

/** The STATUS cell of `ocelot get caliconodestatus`: ok, stale (with when), or not written. */
export function freshnessText(r: CalicoNodeStatus, nowMs: number): string {
  const last = r.status?.lastUpdated;
  if (!last) return "never written";
  const stale = staleSince(r, nowMs);
  const ago = Math.max(0, Math.round((nowMs - Date.parse(last)) / 1000));
  return stale ? `STALE: last wrote ${last} (${ago}s ago)` : `ok (${ago}s ago)`;
}

/** "10.0.0.2 Established NodeMesh, ..." for the wide table. */
export function peersText(r: CalicoNodeStatus): string {
  const b = r.status?.bgp;
  const all = [...(b?.peersV4 ?? []), ...(b?.peersV6 ?? [])];
  return all.length === 0 ? "-" : all.map((p) => `${p.peerIP}:${p.state}`).join(",");
}
