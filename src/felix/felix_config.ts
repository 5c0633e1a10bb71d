// FelixConfiguration as the agent uses it (pure): the effective spec of one node, Calico's
// precedence (`node.<name>` field by field over `default`), and the fields Ocelot acts on read
// out of it: the failsafe ports, defaultEndpointToHostAction, the allow and deny verdicts
// (iptablesFilterAllowAction, iptablesMangleAllowAction, iptablesFilterDenyAction),
// logSeverityScreen, the kernel read-back intervals (iptablesRefreshInterval,
// routeRefreshInterval), floatingIPs (whether WorkloadEndpoints' ipNATs are programmed) and
// workloadSourceSpoofing (whether their allowSpoofedSourcePrefixes are), the MTUs (vxlanMTU,
// vxlanMTUV6, ipipMTU, mtuIfacePattern) and the VXLAN devices' vxlanPort and vxlanVNI; those six
// also from calico-node's FELIX_VXLANMTU, FELIX_VXLANMTUV6, FELIX_IPINIPMTU,
// FELIX_MTUIFACEPATTERN, FELIX_VXLANPORT, FELIX_VXLANVNI environment, which Felix puts above the
// datastore.
// Not: the schema and validation (src/api/config.ts), applying them (host_endpoint.ts, the node
// daemon's logger).
import { parseDurationMs } from "../api/fields.js";
import { compileGoRegexp } from "../lib/go_regexp.js";
import type { RuleActions } from "./actions.js";
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
  /**
   * iptablesFilterAllowAction, iptablesMangleAllowAction and iptablesFilterDenyAction (Felix's
   * defaults, Accept, Accept and Drop, for those not set); absent when none is set.
   */
  actions?: RuleActions;
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
  /** vxlanMTU, vxlanMTUV6, ipipMTU as set (0: auto-detected, as in Felix). */
  vxlanMtu?: number;
  vxlanMtuV6?: number;
  ipipMtu?: number;
  /** mtuIfacePattern: the interfaces whose smallest MTU is the host's. */
  mtuIfacePattern?: RegExp;
  /** vxlanPort: the VXLAN devices' UDP port (Felix's default 4789). */
  vxlanPort?: number;
  /** vxlanVNI: the VXLAN devices' VNI (Felix's default 4096; Felix uses it for both families). */
  vxlanVni?: number;
  /** Fields that were set and could not be used, one line each. */
  warnings: string[];
}

/** The fields of FelixConfiguration the agent acts on (the list lives with the schema). */
export { FELIX_FIELDS_ACTED_ON } from "../api/config.js";

/**
 * The FelixConfiguration fields calico-node's environment may set for Ocelot (Felix's parameter
 * names after FELIX_, any case; ipipMTU is Felix's IpInIpMtu). Felix's order: environment over
 * the datastore (node.<name>, then default); an empty value is ignored, "0" is a value (auto).
 */
const FELIX_ENV: Record<string, string> = {
  vxlanmtu: "vxlanMTU",
  vxlanmtuv6: "vxlanMTUV6",
  ipinipmtu: "ipipMTU",
  mtuifacepattern: "mtuIfacePattern",
  vxlanport: "vxlanPort",
  vxlanvni: "vxlanVNI",
};

/** The FelixConfiguration fields set in the environment (FELIX_VXLANMTU=1400 -> vxlanMTU). */
export function felixEnvironment(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    const m = /^felix_(.+)$/i.exec(k);
    const field = m ? FELIX_ENV[(m[1] as string).toLowerCase()] : undefined;
    if (field !== undefined && v !== undefined && v !== "") out[field] = v;
  }
  return out;
}

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

/** The MTU fields: the environment's over the spec's, each checked. */
function mtuSettings(
  spec: Record<string, unknown>,
  env: Record<string, string>,
  s: FelixSettings,
): void {
  const { warnings } = s;
  const value = (field: string): unknown => {
    const e = env[field];
    if (e === undefined) return spec[field];
    if (spec[field] !== undefined && String(spec[field]) !== e.trim())
      warnings.push(
        `FelixConfiguration ${field}: ${JSON.stringify(spec[field])} is overridden by the environment (${e.trim()}), as Felix orders them`,
      );
    return e;
  };
  for (const [field, key] of [
    ["vxlanMTU", "vxlanMtu"],
    ["vxlanMTUV6", "vxlanMtuV6"],
    ["ipipMTU", "ipipMtu"],
  ] as const) {
    const v = value(field);
    if (v === undefined) continue;
    const n = typeof v === "string" ? Number(v.trim()) : v;
    if (typeof n === "number" && Number.isInteger(n)) s[key] = n;
    // Felix replaces an unparsable value by its default (0: auto-detected).
    else
      warnings.push(
        `FelixConfiguration ${field}: ${JSON.stringify(v)} is not an integer; auto-detected`,
      );
  }
  // vxlanPort and vxlanVNI: a UDP port and a 24-bit VNI (RFC 7348 §5); others warned, default kept.
  for (const [field, key, min, max] of [
    ["vxlanPort", "vxlanPort", 1, 65535],
    ["vxlanVNI", "vxlanVni", 1, 16777215],
  ] as const) {
    const v = value(field);
    if (v === undefined) continue;
    const n = typeof v === "string" ? Number(v.trim()) : v;
    if (typeof n === "number" && Number.isInteger(n) && n >= min && n <= max) s[key] = n;
    else
      warnings.push(
        `FelixConfiguration ${field}: ${JSON.stringify(v)} is not an integer in ${min}..${max}; Felix's default is used`,
      );
  }
  const pattern = value("mtuIfacePattern");
  if (typeof pattern === "string" && pattern !== "") {
    try {
      s.mtuIfacePattern = compileGoRegexp(pattern);
    } catch (err) {
      warnings.push(
        `FelixConfiguration mtuIfacePattern: ${JSON.stringify(pattern)} is not a regular expression (${(err as Error).message}); the fabric interfaces' MTU is used`,
      );
    }
  }
}

/**
 * The settings the agent acts on, from the effective spec and the FelixConfiguration fields set
 * in the environment (felixEnvironment; they win, as in Felix).
 */
export function felixSettings(
  spec: Record<string, unknown>,
  env: Record<string, string> = {},
): FelixSettings {
  const warnings: string[] = [];
  const s: FelixSettings = { warnings };
  mtuSettings(spec, env, s);
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
  // Calico's patterns take any case (^(?i)(Accept|Return)?$); empty is the default.
  const word = (field: string) => String(spec[field] ?? "").toLowerCase();
  const filterAllow = word("iptablesFilterAllowAction");
  const mangleAllow = word("iptablesMangleAllowAction");
  const filterDeny = word("iptablesFilterDenyAction");
  if (filterAllow === "return" || mangleAllow === "return" || filterDeny === "reject")
    s.actions = {
      filterAllow: filterAllow === "return" ? "Return" : "Accept",
      mangleAllow: mangleAllow === "return" ? "Return" : "Accept",
      filterDeny: filterDeny === "reject" ? "Reject" : "Drop",
    };
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
