// `ocelot node run`'s settings, resolved the way calico-node is configured: each setting from
// its flag, else its environment variable (the names a Calico user knows: NODENAME, IP, IP6, AS,
// DATASTORE_TYPE, ETCD_ENDPOINTS, CALICO_IPV4POOL_CIDR, IP_AUTODETECTION_METHOD, ...), else the
// config file (--config, YAML, keys as the flags in camelCase), else its default. One table
// drives the flags, the variables, the file keys and the README. Pure: flags, environment,
// file text and the host name in, settings (with where each came from) or an error naming the
// flag, variable or key out. Not: autodetection, the datastore, the daemon.
import { isIPv4 } from "node:net";
import { parse as parseYaml } from "yaml";
import { isDns1123Subdomain, parseAsNumber } from "../api/fields.js";
import { parseStation } from "../bgp/bmp/client.js";
import { parseDatastoreUrl } from "../datastore/open.js";
import { parseCidr } from "../lib/ip.js";
import { parseAutodetectMethod } from "./autodetect.js";

export class NodeConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NodeConfigError";
  }
}

/** How the node's address of one family is set. */
export type AddressSetting =
  | { mode: "address"; cidr: string }
  | { mode: "autodetect" }
  | { mode: "none" }
  /** Unset: the address stored in the Node resource, else autodetected. */
  | { mode: "keep" };

export interface PoolSetting {
  cidr: string;
  blockSize: number;
  natOutgoing: boolean;
}

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"] as const;
export const NETWORKING_BACKENDS = ["bgp", "vxlan", "none"] as const;

export interface NodeSettings {
  nodename: string;
  ip: AddressSetting;
  ip6: AddressSetting;
  ipAutodetectionMethod: string;
  ip6AutodetectionMethod: string;
  as?: number;
  datastoreType: "etcdv3";
  datastore?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  networkingBackend: (typeof NETWORKING_BACKENDS)[number];
  ipv4Pool?: PoolSetting;
  ipv6Pool?: PoolSetting;
  noDefaultPools: boolean;
  clusterCidr: string[];
  /**
   * CALICO_ADVERTISE_CLUSTER_IPS: the Service cluster IP range to announce, in place of the
   * default BGPConfiguration's serviceClusterIPs (confd's precedence).
   */
  advertiseClusterIps?: string;
  /** CALICO_ROUTER_ID: the BGP router ID, an IPv4 address or "hash" (from the node's name). */
  routerId?: string;
  /** The MTU override (pods and tunnel devices), above FelixConfiguration's MTU fields. */
  mtu?: number;
  mtuFile: string;
  metricsAddress?: string;
  logLevel: (typeof LOG_LEVELS)[number];
  resyncIntervalMs: number;
  secretsDir?: string;
  statusSocket?: string;
  netns?: string;
  /** 0: the node's CalicoNodeStatus is not written. */
  nodeStatusIntervalMs: number;
  mrtUpdates?: string;
  mrtRotateBytes: number;
  /** 0: MRT files are not rotated by time. */
  mrtRotateMs: number;
  /** BMP station host:port (RFC 7854 export; off when absent). */
  bmpStation?: string;
  /** 0: no Statistics Reports. */
  bmpStatsIntervalMs: number;
  /** Set: this node campaigns to run kube-controllers against this kubeconfig's API server. */
  kubeconfig?: string;
  kubeControllersLeaseTtlMs: number;
  /** Mirror UPDATEs sent too (RFC 8671 post-policy Adj-RIB-Out). */
  bmpAdjRibOut: boolean;
  /** Drop a directly connected peer's session at once when its link goes down (default true). */
  bgpCheckLink: boolean;
  /** Serve the CNI hand-off socket (default true). */
  cniHandoff: boolean;
  /** Policy's dispatch: Felix's per-pod chains and tree ("tree", default) or by set ("set"). */
  policyDispatch: "tree" | "set";
}

/** Where a value came from, for errors and the start-up log. */
export type Source = "flag" | "env" | "file" | "default";

/** One setting: its flag (commander attribute), variables, file key, parser. */
interface Def {
  /** The flag as commander takes it, e.g. "--ip <address/len>" ("" for none). */
  flag: string;
  /** Commander's attribute name of the flag (camelCase). */
  attr: string;
  envs: string[];
  /** The config file key (camelCase, as the flag). */
  file: string;
  help: string;
}

/** Every setting's flag, variables and file key (README "Configuring the node" lists them). */
export const NODE_SETTINGS: readonly Def[] = [
  def(
    "--nodename <name>",
    ["NODENAME", "HOSTNAME"],
    "this node's name (its Node resource); default: the host name, lowercased",
  ),
  def(
    "--ip <address/len|autodetect|none>",
    ["IP"],
    "the node's IPv4 address (spec.bgp.ipv4Address); default: the stored one, else autodetected",
  ),
  def(
    "--ip6 <address/len|autodetect|none>",
    ["IP6"],
    "the node's IPv6 address (spec.bgp.ipv6Address); default: the stored one, else none",
  ),
  def(
    "--ip-autodetection-method <method>",
    ["IP_AUTODETECTION_METHOD"],
    "first-found, interface=REGEX, skip-interface=REGEX, can-reach=ADDRESS, cidr=CIDR (default first-found)",
  ),
  def(
    "--ip6-autodetection-method <method>",
    ["IP6_AUTODETECTION_METHOD"],
    "the same for IPv6 (default first-found)",
  ),
  def("--as <number>", ["AS"], "this node's AS number (spec.bgp.asNumber)"),
  def(
    "--datastore-type <type>",
    ["DATASTORE_TYPE"],
    "etcdv3 (etcd or the embedded store); kubernetes is refused",
  ),
  def(
    "--datastore <url>",
    ["OCELOT_DATASTORE", "ETCD_ENDPOINTS"],
    "etcd://host:port[,...], etcds://..., file:/path; ETCD_ENDPOINTS takes http(s)://host:port[,...]",
    "datastore",
    ["etcdEndpoints"],
  ),
  def(
    "--etcd-ca <file>",
    ["ETCD_CA_CERT_FILE", "OCELOT_ETCD_CA"],
    "CA certificate (PEM) for etcd TLS",
    "etcdCaCertFile",
  ),
  def(
    "--etcd-cert <file>",
    ["ETCD_CERT_FILE", "OCELOT_ETCD_CERT"],
    "client certificate (PEM) for etcd",
    "etcdCertFile",
  ),
  def(
    "--etcd-key <file>",
    ["ETCD_KEY_FILE", "OCELOT_ETCD_KEY"],
    "client key (PEM) for etcd",
    "etcdKeyFile",
  ),
  def(
    "--networking-backend <bgp|vxlan|none>",
    ["CALICO_NETWORKING_BACKEND"],
    "bgp (bird is taken as bgp), vxlan or none (no BGP speaker; the overlay routes from the datastore); default bgp",
  ),
  def(
    "--mtu <bytes>",
    ["CNI_MTU"],
    "pods' and tunnel devices' MTU, above FelixConfiguration's (default: FelixConfiguration vxlanMTU/vxlanMTUV6/ipipMTU, else the host MTU minus the encapsulation's overhead)",
  ),
  def(
    "--mtu-file <path>",
    ["OCELOT_MTU_FILE"],
    "where the pods' MTU is written for ocelot-cni (default /var/lib/ocelot/mtu)",
  ),
  def(
    "--ipv4-pool-cidr <cidr>",
    ["CALICO_IPV4POOL_CIDR"],
    "create default-ipv4-ippool with this CIDR when no IPv4 pool exists",
  ),
  def(
    "--ipv4-pool-block-size <len>",
    ["CALICO_IPV4POOL_BLOCK_SIZE"],
    "its block size, 20..32 (default 26)",
  ),
  def(
    "--ipv4-pool-nat-outgoing <bool>",
    ["CALICO_IPV4POOL_NAT_OUTGOING"],
    "its natOutgoing (default true)",
  ),
  def(
    "--ipv6-pool-cidr <cidr>",
    ["CALICO_IPV6POOL_CIDR"],
    "create default-ipv6-ippool with this CIDR when no IPv6 pool exists",
  ),
  def(
    "--ipv6-pool-block-size <len>",
    ["CALICO_IPV6POOL_BLOCK_SIZE"],
    "its block size, 116..128 (default 122)",
  ),
  def(
    "--ipv6-pool-nat-outgoing <bool>",
    ["CALICO_IPV6POOL_NAT_OUTGOING"],
    "its natOutgoing (default false)",
  ),
  def(
    "",
    ["NO_DEFAULT_POOLS"],
    "true: create no pool even when a pool CIDR is set",
    "noDefaultPools",
  ),
  def(
    "--cluster-cidr <cidr...>",
    ["OCELOT_CLUSTER_CIDRS"],
    "cluster network CIDRs never masqueraded to",
  ),
  def(
    "--router-id <ipv4|hash>",
    ["CALICO_ROUTER_ID"],
    "the BGP router ID: an IPv4 address, or hash (from the node's name, as calico-node); default the node's IPv4 address (needed for an IPv6-only node)",
  ),
  def(
    "--advertise-cluster-ips <cidr>",
    ["CALICO_ADVERTISE_CLUSTER_IPS"],
    "announce this Service cluster IP range from every node, in place of the default BGPConfiguration's serviceClusterIPs (as calico-node's confd)",
  ),
  def(
    "--metrics-address <host:port>",
    ["OCELOT_METRICS_ADDRESS"],
    "serve /metrics, /livez and /readyz over HTTP there (default: off)",
  ),
  def(
    "--log-level <level>",
    ["OCELOT_LOG_LEVEL"],
    `log level: ${LOG_LEVELS.join(", ")} (default info)`,
  ),
  def(
    "--resync-interval <duration>",
    ["OCELOT_RESYNC_INTERVAL"],
    "full resync period (default 60s)",
  ),
  def(
    "--secrets-dir <dir>",
    ["OCELOT_SECRETS_DIR"],
    "BGP passwords: a secretKeyRef {name, key} is the file <dir>/<name>/<key>",
  ),
  def(
    "--status-socket <path>",
    ["OCELOT_STATUS_SOCKET"],
    "the status socket (default: /run/ocelot/netns/<netns>/bgpd.sock in a named netns, else /run/ocelot/bgpd.sock)",
  ),
  def("--netns <name>", [], "program this network namespace (agent and FIB; tests)"),
  def(
    "--node-status-interval <duration>",
    ["OCELOT_NODE_STATUS_INTERVAL"],
    "write this node's CalicoNodeStatus this often and on change; a CalicoNodeStatus for the node with updatePeriodSeconds overrides it; 0: never (default 10s)",
  ),
  def(
    "--mrt-updates <dir>",
    ["OCELOT_MRT_UPDATES"],
    "append every UPDATE received to MRT BGP4MP files in dir (default: off)",
  ),
  def(
    "--mrt-rotate-size <bytes>",
    ["OCELOT_MRT_ROTATE_SIZE"],
    "start a new MRT file after this many bytes (default 67108864)",
  ),
  def(
    "--mrt-rotate-interval <duration>",
    ["OCELOT_MRT_ROTATE_INTERVAL"],
    "start a new MRT file this often; 0: never (default 15m)",
  ),
  def(
    "--bmp-station <host:port>",
    ["OCELOT_BMP_STATION"],
    "export to this BMP station (RFC 7854): Peer Up/Down, Route Monitoring, statistics (default: off)",
  ),
  def(
    "--bmp-stats-interval <duration>",
    ["OCELOT_BMP_STATS_INTERVAL"],
    "BMP Statistics Report interval; 0: none (default 60s)",
  ),
  def(
    "--kubeconfig <file>",
    ["KUBECONFIG"],
    "run kube-controllers against this API server on one node elected by a datastore lease (default: not run); also where IP_AUTODETECTION_METHOD=kubernetes-internal-ip reads the Kubernetes Node",
  ),
  def(
    "--kube-controllers-lease-ttl <duration>",
    ["OCELOT_KUBE_CONTROLLERS_LEASE_TTL"],
    "the kube-controllers lease's TTL: another node takes over this long after the leader stops renewing (default 15s)",
  ),
  def(
    "--bmp-adj-rib-out <bool>",
    ["OCELOT_BMP_ADJ_RIB_OUT"],
    "also mirror the UPDATEs sent to peers to the BMP station (RFC 8671 Adj-RIB-Out; default false)",
  ),
  def(
    "--bgp-check-link <bool>",
    ["OCELOT_BGP_CHECK_LINK"],
    "drop a directly connected peer's BGP session at once when its link goes down, as FRR's fast external failover (default true)",
  ),
  def(
    "--cni-handoff <bool>",
    ["OCELOT_CNI_HANDOFF"],
    "serve the CNI hand-off socket (cni.sock beside the status socket): the installed plugins run their ADD/DEL/CHECK in this daemon, on its open datastore, instead of starting Node.js (default true)",
  ),
  def(
    "--policy-dispatch <tree|set>",
    ["OCELOT_POLICY_DISPATCH"],
    "how policy reaches the pods' rules: tree, a chain per pod and interface dispatch trees as Felix; set, pods with the same rules share a chain dispatched by one ipset rule, so a new pod commits no rule (default tree)",
  ),
];

function def(
  flag: string,
  envs: string[],
  help: string,
  file?: string,
  alsoFile: string[] = [],
): Def {
  // A setting without a flag ("") has its file key as its name.
  const long = (flag.split(" ")[0] as string).replace(/^--/, "");
  const attr = long
    ? long.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase())
    : (file as string);
  const d: Def = { flag, attr, envs, file: file ?? attr, help };
  return alsoFile.length > 0 ? Object.assign(d, { alsoFile }) : d;
}

/** The config file's keys: each setting's, plus etcdEndpoints (ETCD_ENDPOINTS' form). */
const FILE_KEYS = new Set([...NODE_SETTINGS.map((d) => d.file), "etcdEndpoints"]);

/** Parses the config file (YAML or JSON, one map); unknown keys are refused by name. */
export function parseNodeConfigFile(text: string, path: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = parseYaml(text);
  } catch (err) {
    throw new NodeConfigError(`Config file ${path}: ${(err as Error).message.split("\n")[0]}`);
  }
  if (v === null || v === undefined) return {};
  if (typeof v !== "object" || Array.isArray(v))
    throw new NodeConfigError(`Config file ${path}: not a map of settings`);
  for (const k of Object.keys(v)) {
    if (!FILE_KEYS.has(k))
      throw new NodeConfigError(
        `Config file ${path}: unknown key "${k}" (known: ${[...FILE_KEYS].join(", ")})`,
      );
  }
  return v as Record<string, unknown>;
}

export interface NodeConfigInputs {
  /** Flags given on the command line (commander attributes, only those given). */
  flags: Record<string, unknown>;
  env: NodeJS.ProcessEnv;
  /** The parsed config file (parseNodeConfigFile), or {}. */
  file: Record<string, unknown>;
  hostname: () => string;
}

interface Raw {
  value: unknown;
  source: Source;
  /** "--ip", "IP" or "ip (config file)": what an error names. */
  name: string;
}

function rawOf(d: Def, inp: NodeConfigInputs): Raw | undefined {
  const f = d.flag ? inp.flags[d.attr] : undefined;
  if (f !== undefined) return { value: f, source: "flag", name: d.flag.split(" ")[0] as string };
  for (const e of d.envs) {
    const v = inp.env[e];
    if (v !== undefined && v.trim() !== "") return { value: v.trim(), source: "env", name: e };
  }
  const keys = [d.file, ...(((d as { alsoFile?: string[] }).alsoFile ?? []) as string[])];
  for (const k of keys) {
    const v = inp.file[k];
    if (v !== undefined && v !== null)
      return { value: v, source: "file", name: `${k} (config file)` };
  }
  return undefined;
}

const err = (r: Raw, why: string) =>
  new NodeConfigError(`${r.name}: ${JSON.stringify(r.value)} ${why}`);

function str(r: Raw): string {
  if (typeof r.value === "string") return r.value.trim();
  if (typeof r.value === "number") return String(r.value);
  throw err(r, "is not a string");
}

function bool(r: Raw): boolean {
  if (typeof r.value === "boolean") return r.value;
  const s = str(r).toLowerCase();
  if (s === "true") return true;
  if (s === "false") return false;
  throw err(r, "is not true or false");
}

function address(r: Raw, family: 4 | 6): AddressSetting {
  const s = str(r);
  if (s === "autodetect") return { mode: "autodetect" };
  if (s === "none") return { mode: "none" };
  const [ip, len, ...rest] = s.split("/");
  const max = family === 4 ? 32 : 128;
  const okIp = family === 4 ? /^\d{1,3}(\.\d{1,3}){3}$/.test(ip ?? "") : (ip ?? "").includes(":");
  let valid =
    okIp &&
    rest.length === 0 &&
    (len === undefined || (/^\d{1,3}$/.test(len) && Number(len) <= max));
  if (valid) {
    try {
      parseCidr(`${ip}/${len ?? max}`, false);
    } catch {
      valid = false;
    }
  }
  if (!valid)
    throw err(r, `is not an IPv${family} address with its prefix length, "autodetect" or "none"`);
  return { mode: "address", cidr: s };
}

function pool(r: Raw, family: 4 | 6): string {
  const s = str(r);
  try {
    const c = parseCidr(s, false);
    if (c.family !== family) throw new Error("family");
  } catch {
    throw err(r, `is not an IPv${family} CIDR`);
  }
  return s;
}

function intIn(r: Raw, lo: number, hi: number): number {
  const n = typeof r.value === "number" ? r.value : Number(str(r));
  if (!Number.isInteger(n) || n < lo || n > hi)
    throw err(r, `is not an integer from ${lo} to ${hi}`);
  return n;
}

/** "60s", "500ms", "5m" -> milliseconds (at least 100 ms). */
export function durationMs(r: Raw): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(str(r));
  if (!m) throw err(r, "is not a duration such as 60s, 500ms or 5m");
  const n = Number(m[1]);
  const ms = m[2] === "ms" ? n : m[2] === "m" ? n * 60_000 : n * 1000;
  if (ms < 100) throw err(r, "is shorter than 100ms");
  return ms;
}

/** ETCD_ENDPOINTS ("http://a:2379,https://b:2379" or "a:2379") as a datastore URL. */
export function etcdEndpointsUrl(r: Raw): string {
  const list = (Array.isArray(r.value) ? r.value.map(String) : str(r).split(","))
    .map((e) => e.trim())
    .filter(Boolean);
  if (list.length === 0) throw err(r, "names no endpoint");
  const schemes = new Set<string>();
  const hosts = list.map((e) => {
    const m = /^(?:(https?):\/\/)?([^/]+?)\/?$/.exec(e);
    if (!m) throw err(r, `has "${e}", which is not [http(s)://]host:port`);
    schemes.add(m[1] ?? "http");
    return m[2] as string;
  });
  if (schemes.size > 1) throw err(r, "mixes http:// and https:// endpoints");
  const url = `${schemes.has("https") ? "etcds" : "etcd"}://${hosts.join(",")}`;
  try {
    parseDatastoreUrl(url);
  } catch (e) {
    throw err(r, `is not a list of etcd endpoints (${(e as Error).message})`);
  }
  return url;
}

function datastoreOf(dsRaw: Raw | undefined): string | undefined {
  if (!dsRaw) return undefined;
  const fromEndpoints =
    dsRaw.name === "ETCD_ENDPOINTS" || dsRaw.name === "etcdEndpoints (config file)";
  const datastore = fromEndpoints ? etcdEndpointsUrl(dsRaw) : str(dsRaw);
  try {
    parseDatastoreUrl(datastore);
  } catch (e) {
    throw err(dsRaw, `is not a datastore URL: ${(e as Error).message}`);
  }
  return datastore;
}

/**
 * The datastore settings alone (flag > OCELOT_DATASTORE > ETCD_ENDPOINTS > file, and the etcd
 * TLS files), as `ocelot install-cni` takes them.
 */
export function resolveDatastoreSettings(
  inp: Omit<NodeConfigInputs, "hostname">,
): Pick<NodeSettings, "datastore" | "etcdCa" | "etcdCert" | "etcdKey"> {
  const get = (attr: string) => {
    const d = NODE_SETTINGS.find((x) => x.attr === attr);
    return d ? rawOf(d, { ...inp, hostname: () => "" }) : undefined;
  };
  const file = (attr: string) => {
    const r = get(attr);
    return r ? str(r) : undefined;
  };
  const out: Pick<NodeSettings, "datastore" | "etcdCa" | "etcdCert" | "etcdKey"> = {};
  const ds = datastoreOf(get("datastore"));
  if (ds !== undefined) out.datastore = ds;
  for (const k of ["etcdCa", "etcdCert", "etcdKey"] as const) {
    const v = file(k);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/** Resolves every setting: flag > environment > config file > default. */
export function resolveNodeSettings(inp: NodeConfigInputs): {
  settings: NodeSettings;
  sources: Record<string, string>;
} {
  const sources: Record<string, string> = {};
  const get = (attr: string): Raw | undefined => {
    const d = NODE_SETTINGS.find((x) => x.attr === attr);
    if (!d) throw new Error(`No setting ${attr}`);
    const r = rawOf(d, inp);
    if (r) sources[attr] = r.source === "default" ? "default" : r.name;
    return r;
  };
  const opt = <T>(attr: string, parse: (r: Raw) => T): T | undefined => {
    const r = get(attr);
    return r === undefined ? undefined : parse(r);
  };

  // Calico's node name: NODENAME, else HOSTNAME, else the host's name (lowercased).
  const nameRaw = get("nodename");
  const nodename = nameRaw ? str(nameRaw) : inp.hostname().trim().toLowerCase();
  if (!isDns1123Subdomain(nodename))
    throw new NodeConfigError(
      `${nameRaw?.name ?? "the host name"}: "${nodename}" is not a node name (DNS-1123 subdomain: lowercase letters, digits, '-' and '.')`,
    );

  const typeRaw = get("datastoreType");
  if (typeRaw) {
    const t = str(typeRaw);
    if (t === "kubernetes")
      throw new NodeConfigError(
        `${typeRaw.name}: "kubernetes" is not supported: Ocelot keeps its resources in etcd (DATASTORE_TYPE=etcdv3 with ETCD_ENDPOINTS) or in its embedded store (OCELOT_DATASTORE=file:/var/lib/ocelot/store.db), not in the Kubernetes API`,
      );
    if (t !== "etcdv3")
      throw err(typeRaw, 'is not a datastore type (etcdv3; "kubernetes" is not supported)');
  }

  const datastore = datastoreOf(get("datastore"));

  const method = (attr: string) => {
    const r = get(attr);
    if (!r) return "first-found";
    const text = str(r);
    let kind: string;
    try {
      kind = parseAutodetectMethod(text, r.name).kind;
    } catch (e) {
      throw new NodeConfigError((e as Error).message);
    }
    if (kind === "kubernetes-internal-ip" && !get("kubeconfig"))
      throw err(
        r,
        "reads the Kubernetes Node's InternalIP: give a kubeconfig (--kubeconfig or KUBECONFIG)",
      );
    return text;
  };

  const asNumber = opt("as", (r) => {
    const n = parseAsNumber(str(r));
    if (n === undefined || n === 23456)
      throw err(r, "is not an AS number (1..4294967295, not 23456)");
    return n;
  });

  const backendRaw = get("networkingBackend");
  let networkingBackend: NodeSettings["networkingBackend"] = "bgp";
  if (backendRaw) {
    const b = str(backendRaw);
    if (b === "bgp" || b === "bird") networkingBackend = "bgp";
    else if (b === "none") networkingBackend = "none";
    else if (b === "vxlan") networkingBackend = "vxlan";
    else throw err(backendRaw, `is not a networking backend (${NETWORKING_BACKENDS.join(", ")})`);
  }

  const poolOf = (family: 4 | 6): PoolSetting | undefined => {
    const v = family === 4 ? "ipv4" : "ipv6";
    const cidr = opt(`${v}PoolCidr`, (r) => pool(r, family));
    const blockSize = opt(`${v}PoolBlockSize`, (r) =>
      family === 4 ? intIn(r, 20, 32) : intIn(r, 116, 128),
    );
    const natOutgoing = opt(`${v}PoolNatOutgoing`, bool);
    if (cidr === undefined) return undefined;
    return {
      cidr,
      blockSize: blockSize ?? (family === 4 ? 26 : 122),
      natOutgoing: natOutgoing ?? family === 4,
    };
  };

  const clusterCidr =
    opt("clusterCidr", (r) => {
      const list = Array.isArray(r.value) ? r.value.map(String) : str(r).split(",");
      return list
        .map((c) => c.trim())
        .filter(Boolean)
        .map((c) => {
          try {
            parseCidr(c, false);
          } catch {
            throw err(r, `has "${c}", which is not a CIDR`);
          }
          return c;
        });
    }) ?? [];

  const routerId = opt("routerId", (r) => {
    const v = str(r).trim();
    if (v !== "hash" && !isIPv4(v)) throw err(r, `is not an IPv4 address or "hash"`);
    return v;
  });

  const advertiseClusterIps = opt("advertiseClusterIps", (r) => {
    const c = str(r).trim();
    try {
      parseCidr(c, false);
    } catch {
      throw err(r, `is "${c}", which is not a CIDR`);
    }
    return c;
  });

  const logLevel =
    opt("logLevel", (r) => {
      const l = str(r);
      if (!(LOG_LEVELS as readonly string[]).includes(l))
        throw err(r, `is not one of ${LOG_LEVELS.join(", ")}`);
      return l as NodeSettings["logLevel"];
    }) ?? "info";

  const settings: NodeSettings = {
    nodename,
    ip: opt("ip", (r) => address(r, 4)) ?? { mode: "keep" },
    ip6: opt("ip6", (r) => address(r, 6)) ?? { mode: "keep" },
    ipAutodetectionMethod: method("ipAutodetectionMethod"),
    ip6AutodetectionMethod: method("ip6AutodetectionMethod"),
    ...(asNumber !== undefined ? { as: asNumber } : {}),
    datastoreType: "etcdv3",
    ...(datastore !== undefined ? { datastore } : {}),
    ...optional("etcdCa", opt("etcdCa", str)),
    ...optional("etcdCert", opt("etcdCert", str)),
    ...optional("etcdKey", opt("etcdKey", str)),
    networkingBackend,
    ...optional("ipv4Pool", poolOf(4)),
    ...optional("ipv6Pool", poolOf(6)),
    noDefaultPools: opt("noDefaultPools", bool) ?? false,
    clusterCidr,
    ...optional("advertiseClusterIps", advertiseClusterIps),
    ...optional("routerId", routerId),
    ...optional(
      "mtu",
      opt("mtu", (r) => intIn(r, 1280, 65535)),
    ),
    mtuFile: opt("mtuFile", str) ?? "/var/lib/ocelot/mtu",
    ...optional("metricsAddress", opt("metricsAddress", str)),
    logLevel,
    resyncIntervalMs: opt("resyncInterval", durationMs) ?? 60_000,
    ...optional("secretsDir", opt("secretsDir", str)),
    ...optional("statusSocket", opt("statusSocket", str)),
    ...optional("netns", opt("netns", str)),
    nodeStatusIntervalMs:
      opt("nodeStatusInterval", (r) => (str(r) === "0" ? 0 : durationMs(r))) ?? 10_000,
    ...optional("mrtUpdates", opt("mrtUpdates", str)),
    mrtRotateBytes:
      opt("mrtRotateSize", (r) => {
        const n = Number(str(r));
        if (!Number.isInteger(n) || n < 4096) throw err(r, "is not a byte count of at least 4096");
        return n;
      }) ?? 64 * 1024 * 1024,
    mrtRotateMs:
      opt("mrtRotateInterval", (r) => (str(r) === "0" ? 0 : durationMs(r))) ?? 15 * 60_000,
    ...optional(
      "bmpStation",
      opt("bmpStation", (r) => {
        try {
          parseStation(str(r));
        } catch {
          throw err(r, "is not host:port");
        }
        return str(r);
      }),
    ),
    bmpStatsIntervalMs:
      opt("bmpStatsInterval", (r) => (str(r) === "0" ? 0 : durationMs(r))) ?? 60_000,
    ...optional("kubeconfig", opt("kubeconfig", str)),
    kubeControllersLeaseTtlMs: opt("kubeControllersLeaseTtl", durationMs) ?? 15_000,
    bmpAdjRibOut: opt("bmpAdjRibOut", bool) ?? false,
    bgpCheckLink: opt("bgpCheckLink", bool) ?? true,
    cniHandoff: opt("cniHandoff", bool) ?? true,
    policyDispatch:
      opt("policyDispatch", (r) => {
        const v = str(r);
        if (v !== "tree" && v !== "set") throw err(r, "is not one of tree, set");
        return v;
      }) ?? "tree",
  };
  return { settings, sources };
}

function optional<K extends string, V>(key: K, v: V | undefined): { [P in K]?: V } {
  return (v === undefined ? {} : { [key]: v }) as { [P in K]?: V };
}
