// Network policy resources: Calico NetworkPolicy (namespaced) and GlobalNetworkPolicy
// (projectcalico.org/v3), and Kubernetes NetworkPolicy (networking.k8s.io/v1). Schemas,
// validation and Calico's defaults (tier "default", types from the rules present).
// Not: rendering to iptables (src/felix) or selecting endpoints.
//
// Refused as not supported yet: tiers other than "default", application-layer (http),
// service-account and Service matches, host-endpoint features (doNotTrack, preDNAT,
// applyOnForward), performanceHints.
import * as z from "zod";
import { own, quote } from "./errors.js";
import {
  cidr,
  intRange,
  labelName,
  type Metadata,
  metadataSchema,
  port,
  selector,
  subdomainName,
  unsupported,
} from "./fields.js";
import { API_VERSION } from "./ippool.js";

export const K8S_NETWORKING_API_VERSION = "networking.k8s.io/v1";

const PROTOCOL_NAMES = ["TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite"] as const;
const PORT_PROTOCOLS = new Set(["TCP", "UDP", "SCTP", "UDPLITE", "6", "17", "132", "136"]);
const ICMP_PROTOCOLS = new Set(["ICMP", "ICMPV6", "1", "58"]);

/** A protocol name (any case, as Calico's numorstring.Protocol) or number 1..255. */
const protocol = z.union([z.number(), z.string()]).transform((v, ctx) => {
  if (typeof v === "number") {
    if (Number.isInteger(v) && v >= 1 && v <= 255) return v;
  } else {
    const name = PROTOCOL_NAMES.find((p) => p.toLowerCase() === v.toLowerCase());
    if (name !== undefined && (v === name || v === name.toLowerCase())) return name;
    if (/^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 255) return Number(v);
  }
  ctx.addIssue({
    code: "custom",
    message: own(`${quote(v)} is not a protocol (${PROTOCOL_NAMES.join(", ")} or 1..255)`),
  });
  return z.NEVER;
});

const icmpFields = z
  .object({ type: intRange(0, 254).optional(), code: intRange(0, 255).optional() })
  .strict()
  .superRefine((icmp, ctx) => {
    if (icmp.code !== undefined && icmp.type === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["code"],
        message: own("needs icmp type to be set too"),
      });
    }
  });

const entityRule = z
  .object({
    nets: z.array(cidr()).optional(),
    notNets: z.array(cidr()).optional(),
    selector: selector.optional(),
    notSelector: selector.optional(),
    namespaceSelector: selector.optional(),
    ports: z.array(port).optional(),
    notPorts: z.array(port).optional(),
    serviceAccounts: unsupported("service-account matches"),
    services: unsupported("Service matches"),
  })
  .strict();

const rule = z
  .object({
    action: z.enum(["Allow", "Deny", "Log", "Pass"]),
    ipVersion: z
      .union([z.literal(4), z.literal(6)], {
        error: (iss) => own(`${quote(iss.input)} is not 4 or 6`),
      })
      .optional(),
    protocol: protocol.optional(),
    notProtocol: protocol.optional(),
    icmp: icmpFields.optional(),
    notICMP: icmpFields.optional(),
    source: entityRule.optional(),
    destination: entityRule.optional(),
    metadata: z
      .object({ annotations: z.record(z.string(), z.string()).optional() })
      .strict()
      .optional(),
    http: unsupported("application-layer policy"),
  })
  .strict()
  .superRefine((r, ctx) => {
    const proto = r.protocol === undefined ? undefined : String(r.protocol).toUpperCase();
    for (const side of ["source", "destination"] as const) {
      const e = r[side];
      if (e === undefined) continue;
      for (const f of ["ports", "notPorts"] as const) {
        if (
          e[f] !== undefined &&
          e[f].length > 0 &&
          (proto === undefined || !PORT_PROTOCOLS.has(proto))
        ) {
          ctx.addIssue({
            code: "custom",
            path: [side, f],
            message: own(
              `needs protocol TCP, UDP, SCTP or UDPLite, not ${quote(r.protocol ?? "unset")}`,
            ),
          });
        }
      }
      for (const net of [...(e.nets ?? []), ...(e.notNets ?? [])]) {
        const v6 = net.includes(":");
        if (r.ipVersion !== undefined && (r.ipVersion === 6) !== v6) {
          ctx.addIssue({
            code: "custom",
            path: [side],
            message: own(`${quote(net)} does not match ipVersion ${r.ipVersion}`),
          });
        }
      }
    }
    if ((proto === "ICMP" && r.ipVersion === 6) || (proto === "ICMPV6" && r.ipVersion === 4)) {
      ctx.addIssue({
        code: "custom",
        path: ["protocol"],
        message: own(`${quote(r.protocol)} does not match ipVersion ${r.ipVersion}`),
      });
    }
    for (const f of ["icmp", "notICMP"] as const) {
      if (r[f] !== undefined && (proto === undefined || !ICMP_PROTOCOLS.has(proto))) {
        ctx.addIssue({
          code: "custom",
          path: [f],
          message: own(`needs protocol ICMP or ICMPv6, not ${quote(r.protocol ?? "unset")}`),
        });
      }
    }
  });

export type Rule = z.output<typeof rule>;

const policyTypes = z.array(z.enum(["Ingress", "Egress"])).max(2);

const commonPolicyFields = {
  tier: z
    .string()
    .refine((t) => t === "default", {
      error: (iss) =>
        own(`${quote(iss.input)}: tiers other than "default" are not supported by Ocelot yet`),
    })
    .optional(),
  order: z.number({ error: (iss) => own(`${quote(iss.input)} is not a number`) }).optional(),
  selector: selector.optional(),
  types: policyTypes.optional(),
  ingress: z.array(rule).optional(),
  egress: z.array(rule).optional(),
  serviceAccountSelector: unsupported("service-account matches"),
  performanceHints: unsupported(),
};

/** Calico's default for `types`: Ingress, plus Egress when egress rules are present. */
function withDefaults<
  T extends {
    tier?: string;
    selector?: string;
    types?: Array<"Ingress" | "Egress">;
    egress?: Rule[];
  },
>(spec: T) {
  const types =
    spec.types ??
    (spec.egress !== undefined && spec.egress.length > 0
      ? (["Ingress", "Egress"] as const)
      : (["Ingress"] as const));
  return {
    ...spec,
    tier: spec.tier ?? "default",
    selector: spec.selector ?? "all()",
    types: [...types],
  };
}

const networkPolicySpec = z.object(commonPolicyFields).strict().transform(withDefaults);

const globalNetworkPolicySpec = z
  .object({
    ...commonPolicyFields,
    namespaceSelector: selector.optional(),
    doNotTrack: unsupported("host endpoints"),
    preDNAT: unsupported("host endpoints"),
    applyOnForward: unsupported("host endpoints"),
  })
  .strict()
  .transform(withDefaults);

export const networkPolicySchema = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal("NetworkPolicy"),
    metadata: metadataSchema({ namespaced: true }),
    spec: networkPolicySpec.optional().transform((s) => s ?? withDefaults({})),
  })
  .strict();

export const globalNetworkPolicySchema = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal("GlobalNetworkPolicy"),
    metadata: metadataSchema({ namespaced: false }),
    spec: globalNetworkPolicySpec.optional().transform((s) => s ?? withDefaults({})),
  })
  .strict();

export type NetworkPolicySpec = z.output<typeof networkPolicySpec>;
export type GlobalNetworkPolicySpec = z.output<typeof globalNetworkPolicySpec>;
export interface NetworkPolicy {
  apiVersion: typeof API_VERSION;
  kind: "NetworkPolicy";
  metadata: Metadata;
  spec: NetworkPolicySpec;
}
export interface GlobalNetworkPolicy {
  apiVersion: typeof API_VERSION;
  kind: "GlobalNetworkPolicy";
  metadata: Metadata;
  spec: GlobalNetworkPolicySpec;
}

// Kubernetes networking.k8s.io/v1 NetworkPolicy.

const labelSelector = z
  .object({
    matchLabels: z.record(z.string(), z.string()).optional(),
    matchExpressions: z
      .array(
        z
          .object({
            key: z.string().min(1),
            operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist"]),
            values: z.array(z.string()).optional(),
          })
          .strict()
          .superRefine((e, ctx) => {
            const n = e.values?.length ?? 0;
            if ((e.operator === "In" || e.operator === "NotIn") && n === 0) {
              ctx.addIssue({
                code: "custom",
                path: ["values"],
                message: own(`must be non-empty for operator ${quote(e.operator)}`),
              });
            }
            if ((e.operator === "Exists" || e.operator === "DoesNotExist") && n > 0) {
              ctx.addIssue({
                code: "custom",
                path: ["values"],
                message: own(`must be empty for operator ${quote(e.operator)}`),
              });
            }
          }),
      )
      .optional(),
  })
  .strict();

export type LabelSelector = z.output<typeof labelSelector>;

const k8sPeer = z
  .object({
    podSelector: labelSelector.optional(),
    namespaceSelector: labelSelector.optional(),
    ipBlock: z
      .object({ cidr: cidr(), except: z.array(cidr()).optional() })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (
      p.ipBlock !== undefined &&
      (p.podSelector !== undefined || p.namespaceSelector !== undefined)
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["ipBlock"],
        message: own("cannot be combined with podSelector or namespaceSelector"),
      });
    }
    if (
      p.ipBlock === undefined &&
      p.podSelector === undefined &&
      p.namespaceSelector === undefined
    ) {
      ctx.addIssue({
        code: "custom",
        message: own("must set one of podSelector, namespaceSelector or ipBlock"),
      });
    }
  });

const k8sPort = z
  .object({
    protocol: z.enum(["TCP", "UDP", "SCTP"]).optional(),
    port: z.union([intRange(1, 65535), labelName]).optional(),
    endPort: intRange(1, 65535).optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.endPort !== undefined && (typeof p.port !== "number" || p.endPort < p.port)) {
      ctx.addIssue({
        code: "custom",
        path: ["endPort"],
        message: own(`${quote(p.endPort)} needs a numeric port not above it`),
      });
    }
  });

const k8sNetworkPolicySpec = z
  .object({
    podSelector: labelSelector,
    policyTypes: policyTypes.optional(),
    ingress: z
      .array(
        z
          .object({ from: z.array(k8sPeer).optional(), ports: z.array(k8sPort).optional() })
          .strict(),
      )
      .optional(),
    egress: z
      .array(
        z.object({ to: z.array(k8sPeer).optional(), ports: z.array(k8sPort).optional() }).strict(),
      )
      .optional(),
  })
  .strict()
  .transform((spec) => ({
    ...spec,
    policyTypes:
      spec.policyTypes ??
      (spec.egress !== undefined
        ? (["Ingress", "Egress"] as Array<"Ingress" | "Egress">)
        : (["Ingress"] as Array<"Ingress" | "Egress">)),
  }));

export const k8sNetworkPolicySchema = z
  .object({
    apiVersion: z.literal(K8S_NETWORKING_API_VERSION),
    kind: z.literal("NetworkPolicy"),
    metadata: metadataSchema({ namespaced: true, name: subdomainName }),
    spec: k8sNetworkPolicySpec,
    status: unsupported("status is not written by users"),
  })
  .strict();

export type K8sNetworkPolicySpec = z.output<typeof k8sNetworkPolicySpec>;
export interface K8sNetworkPolicy {
  apiVersion: typeof K8S_NETWORKING_API_VERSION;
  kind: "NetworkPolicy";
  metadata: Metadata;
  spec: K8sNetworkPolicySpec;
}
