// FelixConfiguration, IPAMConfiguration and KubeControllersConfiguration (projectcalico.org/v3):
// schemas with Calico's field types (from its CRDs, src/api/config_fields.ts) and validator rules
// (validateFelixConfigSpec, validateIPAMConfigSpec, the CEL rules), and what Ocelot does with each
// field: the few it honours (failsafe ports, defaultEndpointToHostAction, the iptables allow and
// deny actions, logSeverityScreen, iptablesRefreshInterval, routeRefreshInterval, floatingIPs,
// workloadSourceSpoofing, the MTUs, vxlanPort, vxlanVNI, WireGuard over IPv4 and IPv6),
// the many it stores and names in a warning (they tune parts Ocelot does not have), and the ones
// it refuses because ignoring them would weaken security.
// Not: applying them (the node daemon, `ocelot ipam`).
import * as z from "zod";
import { compileGoRegexp } from "../lib/go_regexp.js";
import { FELIX_CONFIGURATION_SPEC, KUBE_CONTROLLERS_CONFIGURATION_SPEC } from "./config_fields.js";
import { type FieldType, schemaOf } from "./crd_type.js";
import { own, quote } from "./errors.js";
import {
  cidr,
  FIELD_STATUS,
  isDns1123Label,
  type Metadata,
  metadataSchema,
  parseIp,
  stored,
  unsupported,
} from "./fields.js";
import { API_VERSION } from "./ippool.js";
import { lazy } from "./lazy.js";

/** FelixConfiguration fields refused: ignoring them would leave traffic less protected. */
const FELIX_REFUSED: Record<string, string> = {
  wireguardHostEncryptionEnabled:
    "WireGuard host encryption is not implemented: host-to-host traffic would cross the network in clear",
  policySyncPathPrefix: "the policy sync API (application-layer policy) is not implemented",
};

/** The value of a refused field that asks for nothing (Ocelot's behaviour): accepted. */
const FELIX_HARMLESS: Record<string, string | boolean> = {};

/** The fields of FelixConfiguration Ocelot's agent acts on (src/felix/felix_config.ts;
 * `node.<name>` over `default`); the rest are stored and named. */
export const FELIX_FIELDS_ACTED_ON: readonly string[] = [
  "failsafeInboundHostPorts",
  "failsafeOutboundHostPorts",
  "defaultEndpointToHostAction",
  "iptablesFilterAllowAction",
  "iptablesMangleAllowAction",
  "iptablesFilterDenyAction",
  "logSeverityScreen",
  "iptablesRefreshInterval",
  "routeRefreshInterval",
  "floatingIPs",
  "workloadSourceSpoofing",
  "vxlanMTU",
  "vxlanMTUV6",
  "ipipMTU",
  "mtuIfacePattern",
  "vxlanPort",
  "vxlanVNI",
  "wireguardEnabled",
  "wireguardInterfaceName",
  "wireguardListeningPort",
  "wireguardRoutingRulePriority",
  "wireguardMTU",
  "wireguardKeepAlive",
  "wireguardEnabledV6",
  "wireguardInterfaceNameV6",
  "wireguardListeningPortV6",
  "wireguardMTUV6",
];

const FELIX_HONOURED = new Set<string>(FELIX_FIELDS_ACTED_ON);

const STORED_REASON = "stored; Ocelot's agent does not use it yet (ocelot apply warns)";

function felixField(name: string, t: FieldType): z.ZodType {
  const base = schemaOf(t);
  const refused = FELIX_REFUSED[name];
  if (refused !== undefined) {
    // A value that asks for nothing (false, Accept) is the default and harmless:
    // accepted, in any case as Calico's patterns allow.
    const value = FELIX_HARMLESS[name] ?? (t.t === "boolean" ? false : "Accept");
    const harmless = (v: unknown) =>
      typeof value === "string"
        ? typeof v === "string" && v.toLowerCase() === value.toLowerCase()
        : v === value;
    const refuse = unsupported(refused, base);
    const schema = z
      .unknown()
      .superRefine((v, ctx) => {
        if (v === undefined || harmless(v)) return;
        const r = refuse.safeParse(v, { reportInput: true });
        for (const iss of r.success ? [] : r.error.issues)
          ctx.addIssue({ code: "custom", path: iss.path, message: iss.message });
      })
      .optional();
    FIELD_STATUS.set(schema, {
      status: "refused",
      reason: `${refused} (${String(value)} is accepted)`,
    });
    return schema;
  }
  if (FELIX_HONOURED.has(name)) return base.optional();
  return stored(base.optional(), STORED_REASON);
}

function ipOf(family: 4 | 6) {
  return z.string().refine((s) => parseIp(s)?.family === family, {
    error: (iss) => own(`${quote(iss.input)} is not a valid IPv${family} address`),
  });
}

const IFACE_FILTER = /^[a-zA-Z0-9:._+-]{1,15}$/;
const pattern = (re: RegExp, what: string) =>
  z
    .string()
    .refine((s) => re.test(s), { error: (iss) => own(`${quote(iss.input)} is not ${what}`) })
    .optional();
const intIn = (min: number, max: number) =>
  z
    .number()
    .refine((n) => Number.isInteger(n) && n >= min && n <= max, {
      error: (iss) => own(`${quote(iss.input)} is not an integer in ${min}..${max}`),
    })
    .optional();

const felixOverrides: Record<string, z.ZodType> = lazy(() => ({
  logSeverityScreen: z
    .string()
    .regex(/^(trace|debug|info|warning|error|fatal)?$/i, {
      error: (iss) =>
        own(
          `${quote(iss.input)} is not a log level (Trace, Debug, Info, Warning, Error, Fatal; any case)`,
        ),
    })
    .optional(),
  // Calico's `regexp` validator: a pattern Go's regexp compiles.
  mtuIfacePattern: z
    .string()
    .superRefine((p, ctx) => {
      try {
        compileGoRegexp(p);
      } catch (err) {
        ctx.addIssue({
          code: "custom",
          message: own(`${quote(p)} is not a regular expression: ${(err as Error).message}`),
        });
      }
    })
    .optional(),
  natOutgoingAddress: stored(ipOf(4).optional(), STORED_REASON),
  deviceRouteSourceAddress: stored(ipOf(4).optional(), STORED_REASON),
  deviceRouteSourceAddressIPv6: stored(ipOf(6).optional(), STORED_REASON),
  externalNodesList: stored(
    z.array(cidr({ family: 4, allowHostBits: true, allowBareIp: true })).optional(),
    STORED_REASON,
  ),
  prometheusMetricsHost: stored(
    pattern(/^[a-zA-Z0-9:._+-]{1,64}$/, "a host name or address"),
    STORED_REASON,
  ),
  iptablesNATOutgoingInterfaceFilter: stored(
    pattern(IFACE_FILTER, "an interface name or pattern"),
    STORED_REASON,
  ),
  bpfForceTrackPacketsFromIfaces: stored(
    z.array(pattern(IFACE_FILTER, "an interface name or pattern").unwrap()).optional(),
    STORED_REASON,
  ),
  wireguardInterfaceName: pattern(/^[a-zA-Z0-9_.-]{1,15}$/, "an interface name"),
  wireguardInterfaceNameV6: pattern(/^[a-zA-Z0-9_.-]{1,15}$/, "an interface name"),
  wireguardListeningPort: intIn(1, 65535),
  wireguardListeningPortV6: intIn(1, 65535),
  wireguardRoutingRulePriority: intIn(1, 32765),
  bpfExtToServiceConnmark: stored(intIn(0, 0xffffffff), STORED_REASON),
  openstackRegion: stored(
    z
      .string()
      .refine(
        (s) => s.length <= 63 - "openstack-region-".length && (s === "" || isDns1123Label(s)),
        {
          error: (iss) => own(`${quote(iss.input)} is not a DNS label of at most 46 characters`),
        },
      )
      .optional(),
    STORED_REASON,
  ),
}));

const felixSpec = lazy(() =>
  z
    .object(
      Object.fromEntries(
        Object.entries(FELIX_CONFIGURATION_SPEC.props ?? {}).map(([k, t]) => [
          k,
          felixOverrides[k] ?? felixField(k, t),
        ]),
      ),
    )
    .strict()
    .superRefine((s, ctx) => {
      const issue = (path: string, message: string) =>
        ctx.addIssue({ code: "custom", path: [path], message: own(message) });
      const ranges = s.kubeNodePortRanges as unknown[] | undefined;
      if (ranges !== undefined) {
        if (ranges.length > 7)
          issue(
            "kubeNodePortRanges",
            "lists more than 7 ranges (iptables multiport takes 15 ports)",
          );
        if (ranges.some((p) => typeof p === "string" && !/^\d+(:\d+)?$/.test(p)))
          issue("kubeNodePortRanges", "must not contain named ports");
      }
      if (s.routeTableRange !== undefined && s.routeTableRanges !== undefined)
        issue("routeTableRanges", "cannot be set together with routeTableRange");
      const r = s.routeTableRange as { min?: number; max?: number } | undefined;
      if (
        r !== undefined &&
        !((r.min ?? 0) >= 1 && (r.max ?? 0) >= (r.min ?? 0) && (r.max ?? 0) <= 250)
      )
        issue(
          "routeTableRange",
          `${quote(r)} must be a range of route table indices within 1..250`,
        );
      for (const [i, rr] of (
        (s.routeTableRanges as { min?: number; max?: number }[] | undefined) ?? []
      ).entries()) {
        if ((rr.min ?? 0) < 1)
          ctx.addIssue({
            code: "custom",
            path: ["routeTableRanges", i, "min"],
            message: own("must be >= 1"),
          });
        if ((rr.min ?? 0) > (rr.max ?? 0))
          ctx.addIssue({
            code: "custom",
            path: ["routeTableRanges", i],
            message: own("min must not be greater than max"),
          });
      }
    }),
);

export const felixConfigurationSchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("FelixConfiguration"),
      // Any name: Felix reads "default" and "node.<node name>" (Calico's precedence: node first).
      metadata: metadataSchema({ namespaced: false }),
      spec: felixSpec.optional().transform((s) => s ?? {}),
    })
    .strict(),
);

/**
 * IPAMConfiguration "default": the settings Ocelot's IPAM obeys (src/ipam/records.ts reads the
 * stored resource by hand, with these defaults); `ocelot ipam configure` writes it too.
 */
export const ipamConfigurationSchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("IPAMConfiguration"),
      metadata: metadataSchema({ namespaced: false }).superRefine((m, ctx) => {
        if (m.name !== "default")
          ctx.addIssue({
            code: "custom",
            path: ["name"],
            message: own(`${quote(m.name)}: the IPAMConfiguration must be named "default"`),
          });
      }),
      spec: z
        .object({
          strictAffinity: z.boolean().optional(),
          autoAllocateBlocks: z.boolean().optional(),
          maxBlocksPerHost: z
            .number()
            .int()
            .min(0, { error: own("must be greater than or equal to 0") })
            .max(2147483647)
            .optional(),
          ipCooldownSeconds: stored(z.number().int().min(0).optional(), STORED_REASON),
          kubeVirtVMAddressPersistence: stored(
            z.enum(["Enabled", "Disabled"]).optional(),
            "KubeVirt is not integrated",
          ),
        })
        .strict()
        .optional()
        .transform((s) => ({
          strictAffinity: false,
          autoAllocateBlocks: true,
          maxBlocksPerHost: 0,
          ...(s ?? {}),
        })),
    })
    .strict(),
);

/** KubeControllersConfiguration "default" (calico-kube-controllers' settings), read by src/k8s/kcc.ts. */
export const kubeControllersConfigurationSchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("KubeControllersConfiguration"),
      metadata: metadataSchema({ namespaced: false }).superRefine((m, ctx) => {
        if (m.name !== "default")
          ctx.addIssue({
            code: "custom",
            path: ["name"],
            message: own(
              `${quote(m.name)}: the KubeControllersConfiguration must be named "default"`,
            ),
          });
      }),
      spec: stored(
        schemaOf(KUBE_CONTROLLERS_CONFIGURATION_SPEC),
        "read by ocelot kube-controllers (src/k8s/kcc.ts): a controller section enables its part of the sync, reconcilerPeriod sets the full-pass period, node.syncLabels copies Kubernetes Node labels, node.leakGracePeriod is ocelot ipam gc's leak grace, node.hostEndpoint.autoCreate Enabled keeps a <node>-auto-hep HostEndpoint per Calico Node (createDefaultHostEndpoint Disabled: none) and one <node>-<generateName>-auto-hep per template whose nodeSelector picks the Node, with its addresses inside interfaceCIDRs; created with Calico's defaults when missing; a template's interfacePattern, loadBalancer, migration and the process settings are not applied and named in a warning",
      ),
      status: z.unknown().optional(),
    })
    .strict(),
);

export interface ConfigResource {
  apiVersion: typeof API_VERSION;
  kind: string;
  metadata: Metadata;
  spec: Record<string, unknown>;
}
