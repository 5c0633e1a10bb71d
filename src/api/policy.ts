// Network policy resources: Calico NetworkPolicy (namespaced) and GlobalNetworkPolicy
// (projectcalico.org/v3), and Kubernetes NetworkPolicy (networking.k8s.io/v1). Schemas,
// validation and Calico's defaults (tier "default", types from the rules present).
// Not: rendering to iptables (src/felix) or selecting endpoints.
//
// Refused as not supported yet: tiers other than "default", application-layer (http),
// service-account and Service matches, performanceHints.
import * as z from "zod";
import { own, quote } from "./errors.js";
import {
  annotations,
  cidr,
  intRange,
  isNumericPort,
  labelName,
  labels,
  type Metadata,
  metadataSchema,
  port,
  selector,
  stored,
  subdomainName,
  unsupported,
} from "./fields.js";
import { API_VERSION } from "./ippool.js";
import { lazy } from "./lazy.js";

export const K8S_NETWORKING_API_VERSION = "networking.k8s.io/v1";

const PROTOCOL_NAMES = ["TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite"] as const;
const PORT_PROTOCOLS = new Set(["TCP", "UDP", "SCTP", "UDPLITE", "6", "17", "132", "136"]);
const ICMP_PROTOCOLS = new Set(["ICMP", "ICMPV6", "1", "58"]);

/** A protocol name (any case, as Calico's numorstring.Protocol) or number 1..255. */
const protocol = lazy(() =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
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
  }),
);

const icmpFields = lazy(() =>
  z
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
    }),
);

/** True when a selector uses global() anywhere (Calico allows it only as a namespaceSelector). */
function usesGlobal(text: string): boolean {
  return /\bglobal\s*\(/.test(text);
}

/** A rule or policy selector: global() is refused (CEL "global() can only be used in an EntityRule namespaceSelector"). */
const localSelector = lazy(() =>
  selector.superRefine((text, ctx) => {
    if (usesGlobal(text))
      ctx.addIssue({
        code: "custom",
        message: own(
          `${quote(text)} uses global(), which Calico allows only as a rule's namespaceSelector`,
        ),
      });
  }),
);

/** A rule's namespaceSelector: global() only alone (validateEntityRule: globalSelectorOnly). */
const ruleNamespaceSelector = lazy(() =>
  selector.superRefine((text, ctx) => {
    if (usesGlobal(text) && text.trim().replace(/\s+/g, "") !== "global()")
      ctx.addIssue({
        code: "custom",
        message: own(`${quote(text)}: global() must be the whole namespaceSelector`),
      });
  }),
);

/** A rule's nets: Calico parses each with Go's ParseCIDR, which masks host bits (kept as written). */
const ruleNets = lazy(() => z.array(cidr({ allowHostBits: true })));

const serviceAccountMatch = lazy(() =>
  z
    .object({ names: z.array(z.string().min(1)).optional(), selector: localSelector.optional() })
    .strict(),
);

const serviceMatch = lazy(() =>
  z
    .object({
      name: z
        .string({
          error: (iss) =>
            own(
              iss.input === undefined
                ? "is required (services must specify a service name)"
                : `${quote(iss.input)} is not a string`,
            ),
        })
        .min(1, { error: own("must not be empty (services must specify a service name)") }),
      namespace: labelName.optional(),
    })
    .strict(),
);

const entityRule = lazy(() =>
  z
    .object({
      nets: ruleNets.optional(),
      notNets: ruleNets.optional(),
      selector: localSelector.optional(),
      notSelector: localSelector.optional(),
      namespaceSelector: ruleNamespaceSelector.optional(),
      ports: z.array(port).optional(),
      notPorts: z.array(port).optional(),
      serviceAccounts: serviceAccountMatch.optional(),
      services: serviceMatch.optional(),
    })
    .strict()
    .superRefine((e, ctx) => {
      const issue = (path: string, message: string) =>
        ctx.addIssue({ code: "custom", path: [path], message: own(message) });
      for (const n of e.notNets ?? []) {
        const len = Number(n.split("/")[1]);
        if (len === 0)
          issue("notNets", `${quote(n)} is a catch-all CIDR: negated it matches no traffic`);
      }
      if (e.services !== undefined) {
        // CEL rules on EntityRule: services exclude every other way of naming the peer.
        for (const f of [
          "nets",
          "notNets",
          "selector",
          "notSelector",
          "namespaceSelector",
          "serviceAccounts",
        ] as const)
          if (e[f] !== undefined)
            issue(f, "cannot be combined with services in the same rule side");
      }
    }),
);

/** HTTP match (application layer policy: Calico enforces it with Envoy/Dikastes). */
const httpMatch = lazy(() =>
  z
    .object({
      methods: z.array(z.string().min(1)).max(20).optional(),
      paths: z
        .array(
          z
            .object({
              exact: z.string().max(1024).optional(),
              prefix: z.string().max(1024).optional(),
            })
            .strict()
            .superRefine((p, ctx) => {
              if ((p.exact === undefined) === (p.prefix === undefined))
                ctx.addIssue({
                  code: "custom",
                  message: own("needs exactly one of exact or prefix"),
                });
            }),
        )
        .max(20)
        .optional(),
    })
    .strict(),
);

const rule = lazy(() =>
  z
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
      metadata: z.object({ annotations: annotations.optional() }).strict().optional(),
      http: stored(
        httpMatch.optional(),
        "application-layer policy needs an HTTP proxy; a rule with http matches no traffic in Ocelot (fail closed)",
      ),
    })
    .strict()
    .superRefine((r, ctx) => {
      const proto = r.protocol === undefined ? undefined : String(r.protocol).toUpperCase();
      const sides = ["source", "destination"] as const;
      // CEL: a destination Service brings its own ports (a source Service may take ports).
      for (const f of ["ports", "notPorts"] as const)
        if (r.destination?.services !== undefined && r.destination[f] !== undefined)
          ctx.addIssue({
            code: "custom",
            path: ["destination", f],
            message: own(
              "cannot be combined with destination services (the Service's ports are matched)",
            ),
          });
      for (const side of sides) {
        const e = r[side];
        if (e === undefined) continue;
        for (const f of ["ports", "notPorts"] as const) {
          const ports = e[f] ?? [];
          if (ports.length === 0) continue;
          if (proto === undefined) {
            // validateRule: without a protocol only named ports are allowed.
            if (!ports.every((x) => !isNumericPort(x)))
              ctx.addIssue({
                code: "custom",
                path: [side, f],
                message: own(
                  "numeric ports need protocol TCP, UDP, SCTP or UDPLite (no protocol is set; only named ports may go without one)",
                ),
              });
          } else if (!PORT_PROTOCOLS.has(proto)) {
            ctx.addIssue({
              code: "custom",
              path: [side, f],
              message: own(`need protocol TCP, UDP, SCTP or UDPLite, not ${quote(r.protocol)}`),
            });
          }
        }
      }
      // validateRule scanNets: every CIDR of the rule in one family, matching ipVersion.
      let seen4 = false;
      let seen6 = false;
      for (const side of sides) {
        for (const f of ["nets", "notNets"] as const) {
          const nets = r[side]?.[f] ?? [];
          const v6 = nets.some((n) => n.includes(":"));
          const v4 = nets.some((n) => !n.includes(":"));
          if (r.ipVersion !== undefined && ((v4 && r.ipVersion !== 4) || (v6 && r.ipVersion !== 6)))
            ctx.addIssue({
              code: "custom",
              path: [side, f],
              message: own(`${quote(nets)} does not match ipVersion ${r.ipVersion}`),
            });
          if ((v4 && v6) || (v4 && seen6) || (v6 && seen4))
            ctx.addIssue({
              code: "custom",
              path: [side, f],
              message: own("mixes IPv4 and IPv6 CIDRs in one rule (a rule is of one IP version)"),
            });
          seen4 ||= v4;
          seen6 ||= v6;
        }
      }
      if ((proto === "ICMP" || proto === "1") && r.ipVersion === 6)
        ctx.addIssue({
          code: "custom",
          path: ["protocol"],
          message: own(`${quote(r.protocol)} requires ipVersion 4, not 6`),
        });
      if ((proto === "ICMPV6" || proto === "58") && r.ipVersion === 4)
        ctx.addIssue({
          code: "custom",
          path: ["protocol"],
          message: own(`${quote(r.protocol)} requires ipVersion 6, not 4`),
        });
      for (const f of ["icmp", "notICMP"] as const) {
        if (r[f] !== undefined && (proto === undefined || !ICMP_PROTOCOLS.has(proto))) {
          ctx.addIssue({
            code: "custom",
            path: [f],
            message: own(
              r.protocol === undefined
                ? "needs protocol ICMP or ICMPv6 (no protocol is set)"
                : `needs protocol ICMP or ICMPv6, not ${quote(r.protocol)}`,
            ),
          });
        }
      }
      if (r.http !== undefined) {
        if (r.action !== "Allow")
          ctx.addIssue({
            code: "custom",
            path: ["http"],
            message: own(`is only valid on Allow rules, not ${quote(r.action)}`),
          });
        if (proto !== undefined && proto !== "TCP" && proto !== "6")
          ctx.addIssue({
            code: "custom",
            path: ["http"],
            message: own(`needs protocol TCP or none, not ${quote(r.protocol)}`),
          });
      }
    }),
);

export type Rule = z.output<typeof rule>;

const policyTypes = lazy(() =>
  z
    .array(z.enum(["Ingress", "Egress"]))
    .max(2)
    .superRefine((types, ctx) => {
      // validateNetworkPolicySpec: "'Ingress' type specified more than once".
      if (new Set(types).size !== types.length)
        ctx.addIssue({
          code: "custom",
          message: own(`${quote(types)} names a type more than once`),
        });
    }),
);

/** A tier name: a DNS-1123 label (validateTier: no dots, at most 63 characters). */
export const tierName = labelName;

const commonPolicyFields = lazy(() => ({
  tier: tierName.optional(),
  order: z.number({ error: (iss) => own(`${quote(iss.input)} is not a number`) }).optional(),
  selector: localSelector.optional(),
  types: policyTypes.optional(),
  ingress: z.array(rule).optional(),
  egress: z.array(rule).optional(),
  serviceAccountSelector: localSelector.optional(),
  performanceHints: stored(
    z
      .array(z.enum(["AssumeNeededOnEveryNode"]))
      .refine((a) => new Set(a).size === a.length, { error: own("names a hint more than once") })
      .optional(),
    "a rendering hint; Ocelot renders policies for the endpoints they select",
  ),
}));

type RuleSides = {
  source?: { services?: { namespace?: string } };
  destination?: { services?: { namespace?: string } };
  http?: unknown;
};

/** Rules Calico places per direction: services only as the remote side, no http on egress. */
function directionIssues(
  spec: { ingress?: RuleSides[]; egress?: RuleSides[] },
  ctx: z.RefinementCtx,
  global: boolean,
) {
  for (const [i, r] of (spec.egress ?? []).entries()) {
    if (r.source?.services !== undefined)
      ctx.addIssue({
        code: "custom",
        path: ["egress", i, "source", "services"],
        message: own("is not allowed in an egress rule's source"),
      });
    if (r.http !== undefined)
      ctx.addIssue({
        code: "custom",
        path: ["egress", i, "http"],
        message: own("is not allowed in an egress rule"),
      });
    if (
      global &&
      r.destination?.services !== undefined &&
      r.destination.services.namespace === undefined
    )
      ctx.addIssue({
        code: "custom",
        path: ["egress", i, "destination", "services", "namespace"],
        message: own("is required in a global policy"),
      });
  }
  for (const [i, r] of (spec.ingress ?? []).entries()) {
    if (r.destination?.services !== undefined)
      ctx.addIssue({
        code: "custom",
        path: ["ingress", i, "destination", "services"],
        message: own("is not allowed in an ingress rule's destination"),
      });
    if (global && r.source?.services !== undefined && r.source.services.namespace === undefined)
      ctx.addIssue({
        code: "custom",
        path: ["ingress", i, "source", "services", "namespace"],
        message: own("is required in a global policy"),
      });
  }
}

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

const networkPolicyFields = lazy(() =>
  z
    .object(commonPolicyFields)
    .strict()
    .superRefine((s, ctx) => directionIssues(s, ctx, false)),
);
const networkPolicySpec = lazy(() => networkPolicyFields.transform(withDefaults));

const globalNetworkPolicyFields = lazy(() =>
  z
    .object({
      ...commonPolicyFields,
      namespaceSelector: localSelector.optional(),
      doNotTrack: z.boolean().optional(),
      preDNAT: z.boolean().optional(),
      applyOnForward: z.boolean().optional(),
    })
    .strict()
    .superRefine((s, ctx) => {
      directionIssues(s, ctx, true);
      const issue = (path: string, message: string) =>
        ctx.addIssue({ code: "custom", path: [path], message: own(message) });
      if (s.preDNAT === true && s.doNotTrack === true)
        issue("preDNAT", "cannot be true together with doNotTrack");
      if ((s.preDNAT === true || s.doNotTrack === true) && s.applyOnForward !== true)
        issue("applyOnForward", "must be true when preDNAT or doNotTrack is true");
      if (s.preDNAT === true && (s.egress ?? []).length > 0)
        issue("egress", "is not allowed in a preDNAT policy");
      if (s.preDNAT === true && (s.types ?? []).includes("Egress"))
        issue("types", "a preDNAT policy cannot have type Egress");
    }),
);
const globalNetworkPolicySpec = lazy(() => globalNetworkPolicyFields.transform(withDefaults));

/**
 * Policy names (validateNetworkPolicy: networkPolicyNameRegex): a DNS-1123 subdomain; Calico's
 * Kubernetes-derived names (knp.default.x) fit it too.
 */
const LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const NETWORK_POLICY_NAME = new RegExp(
  `^((${LABEL})(\\.${LABEL})?|((knp|ossg)\\.default\\.${LABEL}(\\.${LABEL})*))$`,
);
const GLOBAL_POLICY_NAME = new RegExp(`^(${LABEL}\\.)?${LABEL}$`);
const policyMetadata = (namespaced: boolean) =>
  metadataSchema({
    namespaced,
    name: z
      .string({ error: (iss) => own(`${quote(iss.input)} is not a valid name`) })
      .refine(
        (n) => n.length <= 253 && (namespaced ? NETWORK_POLICY_NAME : GLOBAL_POLICY_NAME).test(n),
        {
          error: (iss) =>
            own(
              `${quote(iss.input)} is not a valid policy name (a DNS-1123 label, or two joined by one '.'${namespaced ? ", or knp.default.<name>" : ""})`,
            ),
        },
      ),
  });

export const networkPolicySchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("NetworkPolicy"),
      metadata: policyMetadata(true),
      spec: networkPolicySpec.optional().transform((s) => s ?? withDefaults({})),
    })
    .strict(),
);

export const globalNetworkPolicySchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("GlobalNetworkPolicy"),
      metadata: policyMetadata(false),
      spec: globalNetworkPolicySpec.optional().transform((s) => s ?? withDefaults({})),
    })
    .strict(),
);

/**
 * Staged policies (validateStagedNetworkPolicy): the enforced twin's fields and rules plus
 * stagedAction Set (default) or Delete; with Delete every field but tier must be empty.
 */
function stagedDeleteIssues(s: Record<string, unknown>, ctx: z.RefinementCtx) {
  if (s.stagedAction !== "Delete") return;
  for (const [k, v] of Object.entries(s))
    if (k !== "stagedAction" && k !== "tier" && v !== undefined)
      ctx.addIssue({
        code: "custom",
        path: [k],
        message: own("must be empty when stagedAction is Delete (only tier may be set)"),
      });
}
/** Empty is Set, as Calico reads it. */
const stagedAction = lazy(() =>
  z
    .enum(["Set", "Delete", ""])
    .optional()
    .transform((a) => (a === "" ? undefined : a)),
);

export const stagedNetworkPolicySchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("StagedNetworkPolicy"),
      metadata: policyMetadata(true),
      spec: z
        .object({ ...commonPolicyFields, stagedAction })
        .strict()
        .superRefine((s, ctx) => {
          stagedDeleteIssues(s, ctx);
          directionIssues(s, ctx, false);
        })
        .transform((s) => ({ ...withDefaults(s), stagedAction: s.stagedAction ?? "Set" }))
        .optional()
        .transform((s) => s ?? { ...withDefaults({}), stagedAction: "Set" as const }),
    })
    .strict(),
);

export const stagedGlobalNetworkPolicySchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("StagedGlobalNetworkPolicy"),
      metadata: policyMetadata(false),
      spec: z
        .object({
          ...commonPolicyFields,
          namespaceSelector: localSelector.optional(),
          doNotTrack: z.boolean().optional(),
          preDNAT: z.boolean().optional(),
          applyOnForward: z.boolean().optional(),
          stagedAction,
        })
        .strict()
        .superRefine((s, ctx) => {
          stagedDeleteIssues(s, ctx);
          directionIssues(s, ctx, true);
        })
        .transform((s) => ({ ...withDefaults(s), stagedAction: s.stagedAction ?? "Set" }))
        .optional()
        .transform((s) => s ?? { ...withDefaults({}), stagedAction: "Set" as const }),
    })
    .strict(),
);

/**
 * A Profile (Calico's namespace and service-account labels, `kns.<ns>` / `ksa.<ns>.<sa>`):
 * labelsToApply reach the endpoints that list it (rule and policy selectors see them); its rules
 * apply after policy to the endpoints that list it (src/felix/policy.ts).
 */
export const profileSchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("Profile"),
      metadata: metadataSchema({ namespaced: false }),
      spec: z
        .object({
          ingress: z.array(rule).optional(),
          egress: z.array(rule).optional(),
          labelsToApply: labels.optional(),
        })
        .strict()
        .optional()
        .transform((s) => s ?? {}),
    })
    .strict(),
);

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

const labelSelector = lazy(() =>
  z
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
    .strict(),
);

export type LabelSelector = z.output<typeof labelSelector>;

const k8sPeer = lazy(() =>
  z
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
    }),
);

const k8sPort = lazy(() =>
  z
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
    }),
);

const k8sNetworkPolicyFields = lazy(() =>
  z
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
          z
            .object({ to: z.array(k8sPeer).optional(), ports: z.array(k8sPort).optional() })
            .strict(),
        )
        .optional(),
    })
    .strict(),
);

function k8sDefaults<T extends { policyTypes?: Array<"Ingress" | "Egress">; egress?: unknown[] }>(
  spec: T,
) {
  return {
    ...spec,
    policyTypes:
      spec.policyTypes ??
      (spec.egress !== undefined
        ? (["Ingress", "Egress"] as Array<"Ingress" | "Egress">)
        : (["Ingress"] as Array<"Ingress" | "Egress">)),
  };
}

const k8sNetworkPolicySpec = lazy(() => k8sNetworkPolicyFields.transform(k8sDefaults));

export const k8sNetworkPolicySchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(K8S_NETWORKING_API_VERSION),
      kind: z.literal("NetworkPolicy"),
      metadata: metadataSchema({ namespaced: true, name: subdomainName }),
      spec: k8sNetworkPolicySpec,
      status: unsupported("status is not written by users"),
    })
    .strict(),
);

export type K8sNetworkPolicySpec = z.output<typeof k8sNetworkPolicySpec>;
export interface K8sNetworkPolicy {
  apiVersion: typeof K8S_NETWORKING_API_VERSION;
  kind: "NetworkPolicy";
  metadata: Metadata;
  spec: K8sNetworkPolicySpec;
}

/** StagedKubernetesNetworkPolicy: a Kubernetes NetworkPolicy spec with stagedAction, never enforced. */
export const stagedK8sNetworkPolicySchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("StagedKubernetesNetworkPolicy"),
      metadata: metadataSchema({ namespaced: true }),
      spec: z
        .object({
          ...k8sNetworkPolicyFields.shape,
          podSelector: labelSelector.optional(),
          stagedAction,
        })
        .strict()
        .superRefine(stagedDeleteIssues)
        .transform((s) => ({ ...k8sDefaults(s), stagedAction: s.stagedAction ?? "Set" }))
        .optional()
        .transform((s) => s ?? { policyTypes: ["Ingress"], stagedAction: "Set" as const }),
    })
    .strict(),
);
