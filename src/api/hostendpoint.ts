// HostEndpoint (projectcalico.org/v3): one host interface (or every one, `interfaceName: "*"`)
// or its expected IPs, with labels that host policy selects. Schema and Calico's rules
// (interfaceName or expectedIPs required, node required, named ports with a port protocol).
// Not: enforcing host policy (src/felix/host_endpoint.ts renders it, src/node feeds it).
import * as z from "zod";
import { own, quote } from "./errors.js";
import { ipAddress, labelName, type Metadata, metadataSchema, subdomainName } from "./fields.js";
import { API_VERSION } from "./ippool.js";

const PORT_PROTOCOLS = new Set(["TCP", "UDP", "SCTP", "6", "17", "132"]);

const endpointPort = z
  .object({
    name: labelName,
    protocol: z
      .union([z.string(), z.number()])
      .refine((p) => PORT_PROTOCOLS.has(String(p).toUpperCase()), {
        error: (iss) => own(`${quote(iss.input)} does not support ports (use TCP, UDP or SCTP)`),
      }),
    port: z.number().int().min(1).max(65535),
  })
  .strict();

const hostEndpointSpec = z
  .object({
    node: subdomainName.optional(),
    interfaceName: z
      .string()
      .refine((s) => s === "*" || /^[a-zA-Z0-9_.-]{1,15}$/.test(s), {
        error: (iss) => own(`${quote(iss.input)} is not a Linux interface name or "*"`),
      })
      .optional(),
    expectedIPs: z.array(ipAddress()).optional(),
    profiles: z.array(subdomainName).optional(),
    ports: z.array(endpointPort).optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    if (s.node === undefined)
      ctx.addIssue({
        code: "custom",
        path: ["node"],
        message: own("is required (node must be specified)"),
      });
    if (s.interfaceName === undefined && (s.expectedIPs ?? []).length === 0)
      ctx.addIssue({
        code: "custom",
        path: ["interfaceName"],
        message: own("or spec.expectedIPs must be set (at least one of them)"),
      });
  });

export const hostEndpointSchema = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal("HostEndpoint"),
    metadata: metadataSchema({ namespaced: false }),
    spec: hostEndpointSpec,
  })
  .strict();

export interface HostEndpoint {
  apiVersion: typeof API_VERSION;
  kind: "HostEndpoint";
  metadata: Metadata;
  spec: z.output<typeof hostEndpointSpec>;
}
