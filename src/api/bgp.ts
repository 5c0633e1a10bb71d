// BGPConfiguration, BGPPeer and BGPFilter (projectcalico.org/v3): schemas, validation and the
// effective defaults Calico applies when it renders the speaker's config (AS 64512, mesh on,
// port 179). Not: turning them into sessions (src/node, src/bgp) or storage (client.ts).
//
// Service IP advertisement (serviceClusterIPs, serviceExternalIPs, serviceLoadBalancerIPs,
// serviceLoadBalancerAggregation) is announced (src/node/service_routes.ts).
// ipv4/ipv6NormalRoutePriority are the kernel metric of routes learned over BGP (bgp_state.ts),
// BGPPeer reachableBy a host route to the peer via that gateway (bgp/speaker/peer_routes.ts);
// programClusterRoutes takes Calico's default, EnabledNoEncapOnly, which is what Ocelot does.
// BGPPeer localWorkloadSelector and BGPConfiguration localWorkloadPeeringIPV4/IPV6: sessions to
// this node's own workloads (src/node/local_peers.ts). Refused as not supported yet: the
// other programClusterRoutes values. Stored, not acted on: ignoredInterfaces. BGPFilter
// operations act on import as on export (the route as kept and passed on); priority and
// setPriority act through LOCAL_PREF (2^31-1 - priority) and the route's kernel metric, as
// Calico's BIRD carries them (src/bgp/policy/filter.ts, src/bgp/rib/rib.ts).
//
// Ocelot extensions (not in Calico's API) on BGPPeer: `spec.bfd` turns on BFD (RFC
// 5880/5881/5883) towards the peer: `{minTxInterval, minRxInterval, multiplier, multihop}`
// (durations of 10 ms to 60 s, default 300ms; multiplier 1-255, default 3; multihop default
// false). `spec.maxPrefixes: {limit, warningPercent, restartTime}` closes the session (Cease/1)
// when the peer sends more than `limit` prefixes of the session's family (warning at
// warningPercent, default 75; down for restartTime, default 60s, "0s" until the BGPPeer
// changes). `spec.addPath: {receive, send}` negotiates RFC 7911 ADD-PATH (receive default true;
// send: paths per prefix, 0-255, default 0).
import * as z from "zod";
import { own, quote } from "./errors.js";
import {
  asNumber,
  cidr,
  duration,
  type IpFamily,
  intRange,
  ipAddress,
  ipPort,
  type Metadata,
  metadataSchema,
  parseCidr,
  parseDurationMs,
  parseIp,
  parseIpPort,
  selector,
  stored,
  subdomainName,
} from "./fields.js";
import { API_VERSION } from "./ippool.js";
import { lazy } from "./lazy.js";

export const DEFAULT_AS_NUMBER = 64512;

export const DEFAULT_LISTEN_PORT = 179;

/** Calico's normal route priority (kernel metric) of workload and BGP-learned routes. */
export const DEFAULT_NORMAL_ROUTE_PRIORITY = 1024;

/** `aa:nn` (standard, 16-bit parts) or `aa:nn:mm` (large, 32-bit parts). */
export function isCommunityValue(text: string): boolean {
  const parts = text.split(":");
  if (!parts.every((p) => /^\d{1,10}$/.test(p))) return false;
  const nums = parts.map(Number);
  if (parts.length === 2) return nums.every((n) => n <= 0xffff);
  if (parts.length === 3) return nums.every((n) => n <= 0xffffffff);
  return false;
}

const communityValue = lazy(() =>
  z.string().refine(isCommunityValue, {
    error: (iss) => own(`${quote(iss.input)} is not a community value (aa:nn or aa:nn:mm)`),
  }),
);

const secretKeyRef = lazy(() =>
  z
    .object({
      secretKeyRef: z
        .object({ name: subdomainName, key: z.string().min(1), optional: z.boolean().optional() })
        .strict(),
    })
    .strict(),
);

const bgpConfigurationSpec = lazy(() =>
  z
    .object({
      // The CRD's pattern: ^(?i)(Trace|Debug|Info|Warning|Error|Fatal)?$ (any case).
      logSeverityScreen: z
        .string()
        .regex(/^(trace|debug|info|warning|error|fatal)?$/i, {
          error: (iss) =>
            own(
              `${quote(iss.input)} is not a log level (Trace, Debug, Info, Warning, Error or Fatal, any case)`,
            ),
        })
        .optional(),
      nodeToNodeMeshEnabled: z.boolean().optional(),
      asNumber: asNumber.optional(),
      listenPort: intRange(1, 65535).optional(),
      bindMode: z.enum(["None", "NodeIP"]).optional(),
      communities: z
        .array(z.object({ name: subdomainName, value: communityValue }).strict())
        .optional(),
      prefixAdvertisements: z
        .array(z.object({ cidr: cidr(), communities: z.array(z.string()).min(1) }).strict())
        .optional(),
      nodeMeshPassword: secretKeyRef.optional(),
      nodeMeshMaxRestartTime: duration.optional(),
      // Ocelot extension (not in Calico): graceful restart of the node's speaker (RFC 4724/8538);
      // restartTime defaults to nodeMeshMaxRestartTime, then 120 s.
      gracefulRestart: z
        .object({
          enabled: z.boolean().optional(),
          restartTime: duration.optional(),
          staleRoutesTime: duration.optional(),
        })
        .strict()
        .optional(),
      serviceClusterIPs: z
        .array(z.object({ cidr: cidr({ allowHostBits: true, allowBareIp: true }) }).strict())
        .optional(),
      serviceExternalIPs: z
        .array(z.object({ cidr: cidr({ allowHostBits: true, allowBareIp: true }) }).strict())
        .optional(),
      serviceLoadBalancerIPs: z
        .array(z.object({ cidr: cidr({ allowHostBits: true, allowBareIp: true }) }).strict())
        .optional(),
      serviceLoadBalancerAggregation: z.enum(["Enabled", "Disabled"]).optional(),
      ignoredInterfaces: stored(
        z.array(z.string().min(1)).optional(),
        "Ocelot's speaker reads no device routes (confd excludes these interfaces from BIRD's protocol direct), so there is nothing to ignore",
      ),
      // The node's own address in its sessions to local workloads (BGPPeer
      // localWorkloadSelector), put on the host side of each such workload's interface.
      localWorkloadPeeringIPV4: ipAddress({ family: 4 }).optional(),
      localWorkloadPeeringIPV6: ipAddress({ family: 6 }).optional(),
      // Who programs cluster routes: Ocelot's speaker those of unencapsulated pools, its agent
      // those of IPIP and VXLAN pools: Calico's default EnabledNoEncapOnly, the one value taken.
      programClusterRoutes: z
        .enum(["Enabled", "Disabled", "EnabledIPIPOnly", "EnabledNoEncapOnly"])
        .optional(),
      // The kernel metric of the routes the speaker installs from peers (read from the
      // `default` instance only, as confd does); Calico's default 1024.
      ipv4NormalRoutePriority: intRange(1, 2147483646).optional(),
      ipv6NormalRoutePriority: intRange(1, 2147483646).optional(),
    })
    .strict()
    .superRefine((spec, ctx) => {
      const p = spec.programClusterRoutes;
      if (p !== undefined && p !== "EnabledNoEncapOnly")
        ctx.addIssue({
          code: "custom",
          path: ["programClusterRoutes"],
          message: own(
            p === "Disabled"
              ? `${quote(p)} is not supported: Ocelot's agent never programs the routes of unencapsulated pools (FelixConfiguration programClusterRoutes), so no one would; only EnabledNoEncapOnly (the default) is`
              : `${quote(p)} is not supported: Ocelot's agent programs the routes of IPIP pools (as Felix does by default) and the speaker never does (BIRD-programmed IPIP routes are deprecated since Calico v3.33); only EnabledNoEncapOnly (the default) is`,
          ),
        });
      // CEL on BGPConfigurationSpec: mesh settings only while the mesh is not switched off.
      if (spec.nodeToNodeMeshEnabled === false) {
        for (const f of ["nodeMeshPassword", "nodeMeshMaxRestartTime"] as const)
          if (spec[f] !== undefined)
            ctx.addIssue({
              code: "custom",
              path: [f],
              message: own("cannot be set when nodeToNodeMeshEnabled is false"),
            });
      }
      if ((spec.communities ?? []).length > 0 && (spec.prefixAdvertisements ?? []).length === 0)
        ctx.addIssue({
          code: "custom",
          path: ["communities"],
          message: own("are defined but not used in prefixAdvertisements"),
        });
      const named = new Set((spec.communities ?? []).map((c) => c.name));
      for (const [i, adv] of (spec.prefixAdvertisements ?? []).entries()) {
        for (const [j, c] of adv.communities.entries()) {
          if (!named.has(c) && !isCommunityValue(c)) {
            ctx.addIssue({
              code: "custom",
              path: ["prefixAdvertisements", i, "communities", j],
              message: own(
                `${quote(c)} is neither a community value nor a name from spec.communities`,
              ),
            });
          }
        }
      }
    }),
);

/** Fields only the `default` BGPConfiguration may set (Calico's rule). */
const GLOBAL_ONLY_FIELDS = [
  "nodeToNodeMeshEnabled",
  "asNumber",
  "nodeMeshPassword",
  "nodeMeshMaxRestartTime",
  "gracefulRestart",
  "bindMode",
] as const;

export const bgpConfigurationSchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("BGPConfiguration"),
      metadata: metadataSchema({ namespaced: false }),
      spec: bgpConfigurationSpec.optional().transform((s) => s ?? {}),
    })
    .strict()
    .superRefine((res, ctx) => {
      if (res.metadata.name === "default") return;
      if (!res.metadata.name.startsWith("node.")) {
        ctx.addIssue({
          code: "custom",
          path: ["metadata", "name"],
          message: own(
            `${quote(res.metadata.name)} is not a BGPConfiguration name (use "default" or "node.<node name>")`,
          ),
        });
        return;
      }
      for (const f of GLOBAL_ONLY_FIELDS) {
        if (res.spec[f] !== undefined) {
          ctx.addIssue({
            code: "custom",
            path: ["spec", f],
            message: own(
              `can only be set on the BGPConfiguration named "default", not ${quote(res.metadata.name)}`,
            ),
          });
        }
      }
    }),
);

export type BGPConfigurationSpec = z.output<typeof bgpConfigurationSpec>;
export interface BGPConfiguration {
  apiVersion: typeof API_VERSION;
  kind: "BGPConfiguration";
  metadata: Metadata;
  spec: BGPConfigurationSpec;
}

/**
 * The values Calico uses when a field is absent: the `default` instance, overridden field by
 * field by the node's own `node.<name>` instance when given (as confd reads the host key first,
 * then the global one).
 */
export function effectiveBgpConfiguration(
  config: BGPConfiguration | undefined,
  nodeConfig?: BGPConfiguration,
) {
  const s = config?.spec ?? {};
  const n = nodeConfig?.spec ?? {};
  return {
    asNumber: s.asNumber ?? DEFAULT_AS_NUMBER,
    nodeToNodeMeshEnabled: s.nodeToNodeMeshEnabled ?? true,
    listenPort: n.listenPort ?? s.listenPort ?? DEFAULT_LISTEN_PORT,
    logSeverityScreen: n.logSeverityScreen ?? s.logSeverityScreen ?? "Info",
    bindMode: s.bindMode ?? "None",
    communities: [...(s.communities ?? []), ...(n.communities ?? [])],
    prefixAdvertisements: n.prefixAdvertisements ?? s.prefixAdvertisements ?? [],
    nodeMeshPassword: s.nodeMeshPassword,
    nodeMeshMaxRestartTime: s.nodeMeshMaxRestartTime,
    gracefulRestart: s.gracefulRestart,
    // confd reads the route priorities from the global BGPConfiguration only.
    ipv4NormalRoutePriority: s.ipv4NormalRoutePriority ?? DEFAULT_NORMAL_ROUTE_PRIORITY,
    ipv6NormalRoutePriority: s.ipv6NormalRoutePriority ?? DEFAULT_NORMAL_ROUTE_PRIORITY,
  };
}

/** A BFD interval: a duration of 10 ms to 60 s (whole milliseconds). */
const bfdInterval = lazy(() =>
  duration.refine(
    (d) => {
      const ms = parseDurationMs(d) as number;
      return Number.isInteger(ms) && ms >= 10 && ms <= 60_000;
    },
    { error: (iss) => own(`${quote(iss.input)} is not a BFD interval of 10ms to 60s`) },
  ),
);

const bgpPeerSpec = lazy(() =>
  z
    .object({
      node: subdomainName.optional(),
      nodeSelector: selector.optional(),
      peerIP: ipPort.optional(),
      asNumber: asNumber.optional(),
      localASNumber: asNumber.optional(),
      peerSelector: selector.optional(),
      reversePeering: z.enum(["Auto", "Manual"]).optional(),
      keepOriginalNextHop: z.boolean().optional(),
      nextHopMode: z.enum(["Auto", "Self", "Keep"]).optional(),
      password: secretKeyRef.optional(),
      sourceAddress: z.enum(["UseNodeIP", "None"]).optional(),
      maxRestartTime: duration.optional(),
      keepaliveTime: duration.optional(),
      numAllowedLocalASNumbers: intRange(1, 10).optional(),
      ttlSecurity: intRange(1, 255).optional(),
      filters: z.array(subdomainName).optional(),
      failureDetectionMode: z.enum(["None", "BFDIfDirectlyConnected"]).optional(),
      restartMode: z.enum(["GracefulRestart", "LongLivedGracefulRestart"]).optional(),
      maxPrefixes: z
        .object({
          limit: intRange(1, 4294967295),
          warningPercent: intRange(1, 100).optional(),
          restartTime: duration.optional(),
        })
        .strict()
        .optional(),
      addPath: z
        .object({ receive: z.boolean().optional(), send: intRange(0, 255).optional() })
        .strict()
        .optional(),
      bfd: z
        .object({
          minTxInterval: bfdInterval.optional(),
          minRxInterval: bfdInterval.optional(),
          multiplier: intRange(1, 255).optional(),
          multihop: z.boolean().optional(),
          // RFC 5880 §6.7; the key from a secret as spec.password's (its size per type is
          // checked when the node reads it).
          authentication: z
            .object({
              type: z.enum([
                "Simple",
                "KeyedMD5",
                "MeticulousKeyedMD5",
                "KeyedSHA1",
                "MeticulousKeyedSHA1",
              ]),
              keyID: intRange(0, 255).optional(),
              password: secretKeyRef,
            })
            .strict()
            .optional(),
        })
        .strict()
        .optional(),
      // Kept as a host route to peerIP via this gateway (the speaker's peer_routes.ts).
      reachableBy: z.string().max(64).pipe(ipAddress()).optional(),
      // Sessions to this node's own WorkloadEndpoints that the selector picks (node/local_peers.ts).
      localWorkloadSelector: selector.optional(),
    })
    .strict()
    .superRefine((spec, ctx) => {
      // Calico's CEL rules on BGPPeerSpec. A peer without peerIP and peerSelector is valid (it
      // peers with nothing); one with peerIP and no asNumber is valid too (the node skips it).
      const issue = (path: string, message: string) =>
        ctx.addIssue({ code: "custom", path: [path], message: own(message) });
      if (spec.node !== undefined && spec.nodeSelector !== undefined) {
        issue(
          "nodeSelector",
          `${quote(spec.nodeSelector)} cannot be combined with spec.node ${quote(spec.node)}`,
        );
      }
      if (spec.peerSelector !== undefined) {
        if (spec.peerIP !== undefined)
          issue("peerIP", `${quote(spec.peerIP)} cannot be combined with spec.peerSelector`);
        if (spec.asNumber !== undefined)
          issue("asNumber", `${quote(spec.asNumber)} cannot be combined with spec.peerSelector`);
      }
      // Calico's CEL rules for localWorkloadSelector: the peers are the selected workloads, of
      // the AS given here.
      if (spec.localWorkloadSelector !== undefined && spec.localWorkloadSelector !== "") {
        const lws = quote(spec.localWorkloadSelector);
        if (spec.peerIP !== undefined && spec.peerIP !== "")
          issue("peerIP", `must be empty when spec.localWorkloadSelector is set (${lws})`);
        if (spec.peerSelector !== undefined && spec.peerSelector !== "")
          issue("peerSelector", `must be empty when spec.localWorkloadSelector is set (${lws})`);
        if (spec.asNumber === undefined || spec.asNumber === 0)
          issue("asNumber", `is required when spec.localWorkloadSelector is set (${lws})`);
      }
      if (spec.reachableBy !== undefined && spec.peerIP === undefined)
        issue("reachableBy", "needs spec.peerIP");
      // libcalico-go's validateBGPPeerSpec: the gateway and the peer of one family.
      const peer = spec.peerIP === undefined ? undefined : parseIpPort(spec.peerIP);
      const gw = spec.reachableBy === undefined ? undefined : parseIp(spec.reachableBy);
      if (peer !== undefined && gw !== undefined && peer.family !== gw.family)
        issue(
          "reachableBy",
          `${quote(spec.reachableBy)} is an IPv${gw.family} address but spec.peerIP ${quote(spec.peerIP)} is IPv${peer.family}`,
        );
      if (spec.keepOriginalNextHop === true && spec.nextHopMode !== undefined)
        issue(
          "nextHopMode",
          `${quote(spec.nextHopMode)} cannot be set together with keepOriginalNextHop`,
        );
    }),
);

export const bgpPeerSchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("BGPPeer"),
      metadata: metadataSchema({ namespaced: false }),
      spec: bgpPeerSpec,
    })
    .strict(),
);

export type BGPPeerSpec = z.output<typeof bgpPeerSpec>;
export interface BGPPeer {
  apiVersion: typeof API_VERSION;
  kind: "BGPPeer";
  metadata: Metadata;
  spec: BGPPeerSpec;
}

function filterRule(family: IpFamily) {
  const maxLen = family === 4 ? 32 : 128;
  return z
    .object({
      cidr: cidr({ family }).optional(),
      matchOperator: z.enum(["Equal", "NotEqual", "In", "NotIn"]).optional(),
      prefixLength: z
        .object({ min: intRange(0, maxLen).optional(), max: intRange(0, maxLen).optional() })
        .strict()
        .optional(),
      source: z.enum(["RemotePeers"]).optional(),
      interface: z
        .string()
        .regex(/^[a-zA-Z0-9_.*-]{1,15}$/, {
          error: (iss) => own(`${quote(iss.input)} is not an interface name or pattern`),
        })
        .optional(),
      peerType: z.enum(["eBGP", "iBGP"]).optional(),
      communities: z
        .object({ values: z.array(communityValue).length(1) })
        .strict()
        .optional(),
      asPathPrefix: z.array(asNumber).optional(),
      action: z.enum(["Accept", "Reject"]),
      operations: z
        .array(
          z
            .object({
              addCommunity: z.object({ value: communityValue }).strict().optional(),
              prependASPath: z
                .object({ prefix: z.array(asNumber).min(1) })
                .strict()
                .optional(),
              setPriority: z
                .object({ value: intRange(1, 2147483646) })
                .strict()
                .optional(),
            })
            .strict(),
        )
        .min(1)
        .max(10)
        .optional(),
      priority: intRange(1, 2147483646).optional(),
    })
    .strict()
    .superRefine((rule, ctx) => {
      const issue = (path: string, message: string) =>
        ctx.addIssue({ code: "custom", path: [path], message: own(message) });
      if ((rule.cidr === undefined) !== (rule.matchOperator === undefined)) {
        issue(
          rule.cidr === undefined ? "matchOperator" : "cidr",
          "cidr and matchOperator must both be set or both be empty",
        );
      }
      if (rule.prefixLength !== undefined) {
        const base = rule.cidr === undefined ? undefined : parseCidr(rule.cidr);
        if (base === undefined) issue("prefixLength", "needs spec cidr to be set in the same rule");
        const { min, max } = rule.prefixLength;
        if (min !== undefined && max !== undefined && min > max) {
          issue("prefixLength", `min ${min} is greater than max ${max}`);
        }
        if (base !== undefined && min !== undefined && min < base.prefixLength) {
          issue("prefixLength", `min ${min} is shorter than the rule's cidr ${quote(rule.cidr)}`);
        }
      }
      if (rule.operations !== undefined) {
        if (rule.action !== "Accept")
          issue("operations", `may only be used with action Accept, not ${quote(rule.action)}`);
        for (const [i, op] of rule.operations.entries()) {
          const n =
            (op.addCommunity ? 1 : 0) + (op.prependASPath ? 1 : 0) + (op.setPriority ? 1 : 0);
          if (n !== 1) {
            ctx.addIssue({
              code: "custom",
              path: ["operations", i],
              message: own(
                "exactly one operation must be set: addCommunity, prependASPath or setPriority",
              ),
            });
          }
        }
      }
    });
}

const bgpFilterSpec = lazy(() =>
  z
    .object({
      exportV4: z.array(filterRule(4)).optional(),
      importV4: z.array(filterRule(4)).optional(),
      exportV6: z.array(filterRule(6)).optional(),
      importV6: z.array(filterRule(6)).optional(),
    })
    .strict(),
);

export const bgpFilterSchema = lazy(() =>
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal("BGPFilter"),
      metadata: metadataSchema({ namespaced: false }),
      spec: bgpFilterSpec.optional().transform((s) => s ?? {}),
    })
    .strict(),
);

export type BGPFilterSpec = z.output<typeof bgpFilterSpec>;
export type BGPFilterRule = NonNullable<BGPFilterSpec["exportV4"]>[number];
export interface BGPFilter {
  apiVersion: typeof API_VERSION;
  kind: "BGPFilter";
  metadata: Metadata;
  spec: BGPFilterSpec;
}
