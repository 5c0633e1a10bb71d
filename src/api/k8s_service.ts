// Kubernetes Services (v1) and EndpointSlices (discovery.k8s.io/v1) as Ocelot stores them: the
// part of each that policy (rule `services` matches) and Service IP advertisement read, in the
// Kubernetes shape, written by `ocelot kube-controllers` (src/k8s/sync.ts) or by hand with
// `ocelot apply` on a cluster without one. Addresses are stored canonical. Not: what they mean
// to the data plane (src/felix/service_match.ts, src/node/service_routes.ts).
import * as z from "zod";
import { own, quote } from "./errors.js";
import { ipAddress, type Metadata, metadataSchema } from "./fields.js";

export const K8S_CORE_API_VERSION = "v1";
export const K8S_DISCOVERY_API_VERSION = "discovery.k8s.io/v1";
/** The label naming an EndpointSlice's Service. */
export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";

const protocol = z.enum(["TCP", "UDP", "SCTP"], {
  error: (iss) => own(`${quote(iss.input)} is not one of TCP, UDP, SCTP`),
});
const portNumber = z.number().int().min(1).max(65535);
/** A cluster IP: an address, or "None" for a headless Service. */
const clusterIp = z.union([z.literal("None"), z.literal(""), ipAddress()]);

const servicePort = z
  .object({
    name: z.string().optional(),
    protocol: protocol.optional(),
    port: portNumber,
    targetPort: z.union([z.number().int(), z.string()]).optional(),
    nodePort: z.number().int().optional(),
    appProtocol: z.string().optional(),
  })
  .strict();

export const k8sServiceSchema = z
  .object({
    apiVersion: z.literal(K8S_CORE_API_VERSION),
    kind: z.literal("Service"),
    metadata: metadataSchema({ namespaced: true }),
    spec: z
      .object({
        type: z.enum(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]).optional(),
        clusterIP: clusterIp.optional(),
        clusterIPs: z.array(clusterIp).optional(),
        // The Service's families (Kubernetes sets them from clusterIPs; a headless Service has
        // them without cluster IPs): which EndpointSlices count for its advertisement.
        ipFamilies: z
          .array(z.enum(["IPv4", "IPv6"]))
          .max(2)
          .optional(),
        externalIPs: z.array(ipAddress()).optional(),
        loadBalancerIP: z.union([z.literal(""), ipAddress()]).optional(),
        externalTrafficPolicy: z.enum(["Cluster", "Local"]).optional(),
        internalTrafficPolicy: z.enum(["Cluster", "Local"]).optional(),
        selector: z.record(z.string(), z.string()).optional(),
        ports: z.array(servicePort).optional(),
        externalName: z.string().optional(),
      })
      .strict()
      .optional()
      .transform((s) => s ?? {}),
    status: z
      .object({
        loadBalancer: z
          .object({
            ingress: z
              .array(
                z.object({ ip: ipAddress().optional(), hostname: z.string().optional() }).strict(),
              )
              .optional(),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

const endpoint = z
  .object({
    addresses: z.array(ipAddress()).min(1),
    conditions: z
      .object({
        ready: z.boolean().optional(),
        serving: z.boolean().optional(),
        terminating: z.boolean().optional(),
      })
      .strict()
      .optional(),
    nodeName: z.string().optional(),
    targetRef: z
      .object({ kind: z.string().optional(), name: z.string(), namespace: z.string().optional() })
      .strict()
      .optional(),
  })
  .strict();

export const k8sEndpointSliceSchema = z
  .object({
    apiVersion: z.literal(K8S_DISCOVERY_API_VERSION),
    kind: z.literal("EndpointSlice"),
    metadata: metadataSchema({ namespaced: true }).superRefine((m, ctx) => {
      if (!m.labels?.[SERVICE_NAME_LABEL])
        ctx.addIssue({
          code: "custom",
          path: ["labels", SERVICE_NAME_LABEL],
          message: own("is required: it names the slice's Service"),
        });
    }),
    addressType: z.enum(["IPv4", "IPv6", "FQDN"]),
    endpoints: z.array(endpoint).optional(),
    ports: z
      .array(
        z
          .object({
            name: z.string().optional(),
            protocol: protocol.optional(),
            port: portNumber.optional(),
            appProtocol: z.string().optional(),
          })
          .strict(),
      )
      .optional(),
  })
  .strict();

export interface K8sService {
  apiVersion: typeof K8S_CORE_API_VERSION;
  kind: "Service";
  metadata: Metadata;
  spec: z.output<typeof k8sServiceSchema>["spec"];
  status?: z.output<typeof k8sServiceSchema>["status"];
}

export interface K8sEndpointSlice {
  apiVersion: typeof K8S_DISCOVERY_API_VERSION;
  kind: "EndpointSlice";
  metadata: Metadata;
  addressType: "IPv4" | "IPv6" | "FQDN";
  endpoints?: z.output<typeof endpoint>[];
  ports?: { name?: string; protocol?: "TCP" | "UDP" | "SCTP"; port?: number }[];
}

/** Endpoints that serve traffic: ready, or ready unset (Kubernetes: unknown means ready). */
export function readyEndpoints(s: K8sEndpointSlice): z.output<typeof endpoint>[] {
  return (s.endpoints ?? []).filter((e) => e.conditions?.ready !== false);
}
