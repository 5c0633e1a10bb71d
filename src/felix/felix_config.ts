// FelixConfiguration as the agent uses it (pure): the effective spec of one node, Calico's
// precedence (`node.<name>` field by field over `default`), and the fields Ocelot acts on read
// out of it: the failsafe ports, defaultEndpointToHostAction, logSeverityScreen, the kernel
// read-back intervals (iptablesRefreshInterval, routeRefreshInterval), floatingIPs (whether
// WorkloadEndpoints' ipNATs are programmed) and workloadSourceSpoofing (whether their
// allowSpoofedSourcePrefixes are).
// Not: the schema and validation (src/api/config.ts), applying them (host_endpoint.ts, the node
// daemon's logger).
import { parseDurationMs } from "../api/fields.js";
import type { EndpointToHostAction, ProtoPort } from "./host_endpoint.js";

export interface FelixConfigResource {
  metadata: { name: string };
  spec: Record<string, unknown>;
}

/** What the agent takes from FelixConfiguration (absent: Ocelot's defaults). */
export interface FelixSettings {
  failsafeInbound?: ProtoPort[];
  failsafeOutbound?: ProtoPort[];
  defaultEndpointToHostAction?: EndpointToHostAction;
  /** A pino level ("info", "debug", ...) from logSeverityScreen. */
  logLevel?: string;
  /**
   * iptablesRefreshInterval: how often the agent reads iptables, ipsets, sysctls and links back
   * in full to repair others' changes (0: only at start, resyncs and after errors).
   */
  iptablesRefreshMs?: number;
  /** routeRefreshInterval: how often the agent's FIB dumps the kernel's routes. */
  routeRefreshMs?: number;
  /** floatingIPs: Enabled (Calico's default: Disabled, ipNATs not programmed). */
  floatingIps?: boolean;
  /** workloadSourceSpoofing: Any (Calico's default: Disabled, no spoofing allowed). */
  sourceSpoofing?: boolean;
  /** Fields that were set and could not be used, one line each. */
  warnings: string[];
}

/** The fields of FelixConfiguration the agent acts on (the rest are stored and named). */
export const FELIX_FIELDS_ACTED_ON: readonly string[] = [
  "failsafeInboundHostPorts",
  "failsafeOutboundHostPorts",
  "defaultEndpointToHostAction",
  "logSeverityScreen",
  "iptablesRefreshInterval",
  "routeRefreshInterval",
  "floatingIPs",
  "workloadSourceSpoofing",
];

/** The node's effective spec: `default`'s fields with `node.<name>`'s over them (Felix). */
export function effectiveFelixSpec(
  configs: readonly FelixConfigResource[],
  node: string,
): Record<string, unknown> {
  const get = (name: string) => configs.find((c) => c.metadata.name === name)?.spec ?? {};
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries({ ...get("default"), ...get(`node.${node}`) }))
    if (v !== undefined) out[k] = v;
  return out;
}

const LOG_LEVELS: Record<string, string> = {
  trace: "trace",
  debug: "debug",
  info: "info",
  warning: "warn",
  error: "error",
  fatal: "fatal",
};
const PROTOCOLS = new Set(["tcp", "udp", "sctp"]);

function protoPorts(field: string, value: unknown, warnings: string[]): ProtoPort[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) {
    warnings.push(`FelixConfiguration ${field}: not a list; Felix's defaults are used`);
    return undefined;
  }
  const out: ProtoPort[] = [];
  for (const [i, p] of (
    value as { protocol?: unknown; port?: unknown; net?: unknown }[]
  ).entries()) {
    const protocol = String(p?.protocol ?? "tcp").toLowerCase();
    const port = Number(p?.port);
    if (!PROTOCOLS.has(protocol) || !Number.isInteger(port) || port < 0 || port > 65535) {
      warnings.push(`FelixConfiguration ${field}[${i}]: not a TCP/UDP/SCTP port; left out`);
      continue;
    }
    out.push({
      protocol,
      port,
      ...(typeof p.net === "string" && p.net !== "" ? { net: p.net } : {}),
    });
  }
  return out;
}

/** The settings the agent acts on, from the effective spec. */
export function felixSettings(spec: Record<string, unknown>): FelixSettings {
  const warnings: string[] = [];
  const s: FelixSettings = { warnings };
  const inbound = protoPorts("failsafeInboundHostPorts", spec.failsafeInboundHostPorts, warnings);
  const outbound = protoPorts(
    "failsafeOutboundHostPorts",
    spec.failsafeOutboundHostPorts,
    warnings,
  );
  if (inbound !== undefined) s.failsafeInbound = inbound;
  if (outbound !== undefined) s.failsafeOutbound = outbound;
  const action = String(spec.defaultEndpointToHostAction ?? "").toLowerCase();
  if (action === "drop") s.defaultEndpointToHostAction = "Drop";
  else if (action === "accept") s.defaultEndpointToHostAction = "Accept";
  else if (action === "return") s.defaultEndpointToHostAction = "Return";
  const level = LOG_LEVELS[String(spec.logSeverityScreen ?? "").toLowerCase()];
  if (level !== undefined) s.logLevel = level;
  for (const [field, key] of [
    ["iptablesRefreshInterval", "iptablesRefreshMs"],
    ["routeRefreshInterval", "routeRefreshMs"],
  ] as const) {
    const v = spec[field];
    if (v === undefined) continue;
    const ms = typeof v === "string" ? parseDurationMs(v) : undefined;
    if (ms === undefined) warnings.push(`FelixConfiguration ${field}: not a duration; 90s is used`);
    else s[key] = ms;
  }
  if (String(spec.floatingIPs ?? "").toLowerCase() === "enabled") s.floatingIps = true;
  if (String(spec.workloadSourceSpoofing ?? "").toLowerCase() === "any") s.sourceSpoofing = true;
  return s;
}
