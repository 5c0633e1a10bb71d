// The `ocelot-cni` main CNI plugin (CNI spec 1.0.0 and 0.3.x/0.4.0), its pure part: network
// configuration parsing and validation, the pod's identity from the CNI environment, the host
// interface and WorkloadEndpoint names and resource (Calico's forms), the ADD result in the
// requested version, and what CHECK compares. Not: the veth, IPAM delegation or the datastore
// (plugin_main.ts), nor error codes and versions (shared with the IPAM plugin, ipam_plugin.ts).
import { isDns1123Label } from "../api/fields.js";
import type { WorkloadEndpoint } from "../api/node.js";
import { endpointLabels, type PodFacts } from "../k8s/pod_labels.js";
import { formatAddress, parseAddress } from "../lib/ip.js";
import { WORKLOAD_GATEWAY_V4, WORKLOAD_HOST_MAC, workloadIfaceName } from "../lib/pod_wiring.js";
import {
  CniError,
  CniErrorCode,
  checkContainerId,
  datastoreSetting,
  parseCniArgs,
  parseNetConfObject,
} from "./ipam_plugin.js";
import { cniLogProblem } from "./log.js";
import { buildWorkloadEndpointName } from "./wep_name.js";

export { escapeDashes } from "./wep_name.js";

export const PLUGIN_TYPE = "ocelot-cni";
export const DEFAULT_MTU = 1500;
/** Where `ocelot node run` writes the pods' MTU (Calico's /var/lib/calico/mtu). */
export const DEFAULT_MTU_FILE = "/var/lib/ocelot/mtu";
/** Linux accepts 68 (IPv4's minimum) up to 65535 on a veth; IPv6 needs 1280. */
const MIN_MTU = 68;
const MAX_MTU = 65535;
const IFNAMSIZ = 16;

/**
 * Top-level keys of the network configuration: ours, and the CNI spec's well-known ones a
 * runtime may add (`dns`, `args`, `runtimeConfig`, `capabilities`), accepted and not used.
 */
const NETCONF_KEYS = new Set([
  "cniVersion",
  "name",
  "type",
  "datastore",
  "datastore_file",
  "nodename",
  "mtu",
  "mtu_file",
  "ipam",
  "log_file_path",
  "log_level",
  "prevResult",
  "dns",
  "args",
  "runtimeConfig",
  "capabilities",
  "kubernetes",
  "feature_control",
]);
/** Keys of `ipam` when its type is ocelot-ipam (what ipam_plugin.ts reads). */
const OCELOT_IPAM_KEYS = new Set([
  "type",
  "ipv4_pools",
  "ipv6_pools",
  "assign_ipv4",
  "assign_ipv6",
  "empty_block_grace_seconds",
]);

export interface CniNetConf {
  cniVersion: string;
  name: string;
  datastore: string;
  /** `datastore_file`: the datastore setting install-cni wrote (datastore_file.ts). */
  datastoreFile?: string;
  nodename: string;
  mtu: number;
  /** With no `mtu` in the config: the node daemon's MTU file, read at ADD (`mtu` if missing). */
  mtuFile?: string;
  /** The IPAM plugin's type: the name of its executable in CNI_PATH. */
  ipamType: string;
  /** The result of an earlier ADD (CHECK and DEL). */
  prevResult?: unknown;
  /** `kubernetes.kubeconfig` (Calico's key) or KUBECONFIG: ADD reads the pod from the API. */
  kubeconfig?: string;
  /** `feature_control.ip_addrs_no_ipam` (Calico's): the ipAddrsNoIpam pod annotation is honoured. */
  ipAddrsNoIpam?: boolean;
  /** `feature_control.floating_ips` (Calico's): the floatingIPs pod annotation is honoured. */
  floatingIps?: boolean;
}

/** Who the pod is: from CNI_ARGS (Kubernetes) or the container id alone. */
export interface PodIdentity {
  orchestrator: "k8s" | "cni";
  /** The pod's namespace; "default" without Kubernetes arguments. */
  namespace: string;
  /** The pod's name (Kubernetes only). */
  pod?: string;
  containerId: string;
  /** CNI_IFNAME: the interface inside the pod. */
  endpoint: string;
}

/** One address given to the pod, without prefix length, in canonical text. */
export interface PodAddress {
  family: 4 | 6;
  address: string;
}

/** What ADD built, for the result and the WorkloadEndpoint. */
export interface Wiring {
  hostIface: string;
  podIface: string;
  /** The pod side's MAC, as the kernel gave it. */
  podMac: string;
  /** CNI_NETNS. */
  sandbox: string;
  addresses: PodAddress[];
  /** The pod's IPv6 gateway: the host side's link-local address (when the pod has IPv6). */
  gateway6?: string;
}

const bad = (message: string) => new CniError(CniErrorCode.InvalidNetworkConfig, message);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Parses the network configuration (stdin); unknown or invalid keys are refused by name. */
export function parseNetConf(
  text: string,
  env: NodeJS.ProcessEnv,
  hostname: () => string,
): CniNetConf {
  const { raw, version } = parseNetConfObject(text);
  for (const key of Object.keys(raw)) {
    if (!NETCONF_KEYS.has(key)) throw bad(`Field "${key}" is not supported by ${PLUGIN_TYPE}`);
  }
  const logProblem = cniLogProblem(raw);
  if (logProblem) throw bad(logProblem);
  if (raw.type !== PLUGIN_TYPE) {
    throw bad(`Field "type" must be "${PLUGIN_TYPE}", got ${JSON.stringify(raw.type)}`);
  }
  if (typeof raw.name !== "string" || raw.name === "") {
    throw bad(`Field "name" must be a non-empty string, got ${JSON.stringify(raw.name)}`);
  }
  const { datastore, datastoreFile } = datastoreSetting(raw, env);
  const nodename = raw.nodename ?? hostname();
  if (typeof nodename !== "string" || nodename === "") {
    throw bad(`Field "nodename" must be a non-empty string, got ${JSON.stringify(raw.nodename)}`);
  }
  const mtu = raw.mtu ?? DEFAULT_MTU;
  if (typeof mtu !== "number" || !Number.isInteger(mtu) || mtu < MIN_MTU || mtu > MAX_MTU) {
    throw bad(
      `Field "mtu" must be an integer from ${MIN_MTU} to ${MAX_MTU}, got ${JSON.stringify(raw.mtu)}`,
    );
  }
  const mtuFile = raw.mtu_file ?? DEFAULT_MTU_FILE;
  if (typeof mtuFile !== "string" || !mtuFile.startsWith("/"))
    throw bad(`Field "mtu_file" must be an absolute path, got ${JSON.stringify(raw.mtu_file)}`);
  const ipam = raw.ipam;
  if (!isObject(ipam)) throw bad('Field "ipam" is missing (e.g. {"type": "ocelot-ipam"})');
  if (typeof ipam.type !== "string" || !/^[A-Za-z0-9._-]+$/.test(ipam.type)) {
    throw bad(
      `Field "ipam.type" must name an IPAM plugin in CNI_PATH, got ${JSON.stringify(ipam.type)}`,
    );
  }
  if (ipam.type === "ocelot-ipam") {
    for (const key of Object.keys(ipam)) {
      if (!OCELOT_IPAM_KEYS.has(key)) throw bad(`Field "ipam.${key}" is not supported`);
    }
  }
  const kubeconfig = kubeconfigSetting(raw.kubernetes, env);
  const features = raw.feature_control ?? {};
  if (!isObject(features))
    throw bad(`Field "feature_control" must be an object, got ${JSON.stringify(features)}`);
  for (const [key, v] of Object.entries(features)) {
    if (key !== "ip_addrs_no_ipam" && key !== "floating_ips")
      throw bad(`Field "feature_control.${key}" is not supported`);
    if (typeof v !== "boolean")
      throw bad(`Field "feature_control.${key}" must be true or false, got ${JSON.stringify(v)}`);
  }
  return {
    cniVersion: version,
    name: raw.name,
    datastore,
    ...(datastoreFile !== undefined ? { datastoreFile } : {}),
    nodename,
    mtu,
    ...(raw.mtu === undefined ? { mtuFile } : {}),
    ipamType: ipam.type,
    prevResult: raw.prevResult,
    ...(kubeconfig !== undefined ? { kubeconfig } : {}),
    ...(features.ip_addrs_no_ipam === true ? { ipAddrsNoIpam: true } : {}),
    ...(features.floating_ips === true ? { floatingIps: true } : {}),
  };
}

/**
 * The pod's MTU: the config's `mtu`; without one, the MTU the node daemon wrote (computed from
 * the fabric and the encapsulation in use), or 1500 when it wrote none or garbage.
 */
export function podMtu(
  conf: Pick<CniNetConf, "mtu" | "mtuFile">,
  fileText: string | undefined,
): number {
  if (conf.mtuFile === undefined || fileText === undefined) return conf.mtu;
  const n = Number(fileText.trim());
  return Number.isInteger(n) && n >= MIN_MTU && n <= MAX_MTU ? n : conf.mtu;
}

/** `"kubernetes": {"kubeconfig": "/path"}` (Calico's netconf key), else KUBECONFIG, else none. */
function kubeconfigSetting(k: unknown, env: NodeJS.ProcessEnv): string | undefined {
  if (k !== undefined) {
    if (!isObject(k)) throw bad(`Field "kubernetes" must be an object, got ${JSON.stringify(k)}`);
    for (const key of Object.keys(k)) {
      if (key !== "kubeconfig") throw bad(`Field "kubernetes.${key}" is not supported`);
    }
    if (k.kubeconfig !== undefined) {
      if (typeof k.kubeconfig !== "string" || !k.kubeconfig.startsWith("/"))
        throw bad(
          `Field "kubernetes.kubeconfig" must be an absolute path, got ${JSON.stringify(k.kubeconfig)}`,
        );
      return k.kubeconfig;
    }
  }
  const fromEnv = env.KUBECONFIG;
  return fromEnv ? fromEnv : undefined;
}

/** The pod's identity from CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME) and the CNI variables. */
export function podIdentity(env: NodeJS.ProcessEnv): PodIdentity {
  const args = parseCniArgs(env.CNI_ARGS);
  checkContainerId(env);
  const containerId = env.CNI_CONTAINERID ?? "";
  const endpoint = env.CNI_IFNAME ?? "";
  if (endpoint.length === 0 || endpoint.length >= IFNAMSIZ || /[\s/:]/.test(endpoint)) {
    throw new CniError(
      CniErrorCode.InvalidEnvironmentVariables,
      `CNI_IFNAME "${endpoint}" is not a Linux interface name (1..15 characters, no '/', ':' or spaces)`,
    );
  }
  const pod = args.K8S_POD_NAME;
  const ns = args.K8S_POD_NAMESPACE;
  if (pod && ns && !isDns1123Label(ns)) {
    throw new CniError(
      CniErrorCode.InvalidEnvironmentVariables,
      `K8S_POD_NAMESPACE "${ns}" is not a namespace name (DNS-1123 label: lowercase letters, digits and '-')`,
    );
  }
  if (pod) {
    return {
      orchestrator: "k8s",
      namespace: args.K8S_POD_NAMESPACE || "default",
      pod,
      containerId,
      endpoint,
    };
  }
  return { orchestrator: "cni", namespace: "default", containerId, endpoint };
}

/** The host side's name: `ocl` + a hash of "<namespace>/<pod>", or of the container id. */
export function hostIfaceName(id: PodIdentity): string {
  return workloadIfaceName(id.pod ? `${id.namespace}/${id.pod}` : id.containerId);
}

/**
 * Calico's WorkloadEndpoint name: `<node>-k8s-<pod>-<endpoint>` for Kubernetes pods,
 * `<node>-cni-<containerID>-<endpoint>` otherwise, each part with '-' escaped as "--"; a part no
 * resource name can hold (a runtime's `pensive_beaver`) is escaped as wep_name.ts says.
 */
export function workloadEndpointName(node: string, id: PodIdentity): string {
  return buildWorkloadEndpointName(node, id.orchestrator, id.pod ?? id.containerId, id.endpoint);
}

/** "10.0.0.1" -> "10.0.0.1/32", "fd00::1" -> "fd00::1/128". */
export function hostPrefix(a: PodAddress): string {
  return `${a.address}/${a.family === 4 ? 32 : 128}`;
}

/** The WorkloadEndpoint the plugin writes for one wired pod. */
export function workloadEndpoint(
  conf: Pick<CniNetConf, "nodename" | "name">,
  id: PodIdentity,
  wiring: Pick<Wiring, "hostIface" | "podMac" | "addresses">,
  facts?: PodFacts,
  fields: Pick<
    WorkloadEndpoint["spec"],
    "ipNATs" | "allowSpoofedSourcePrefixes" | "qosControls"
  > = {},
): WorkloadEndpoint {
  return {
    apiVersion: "projectcalico.org/v3",
    kind: "WorkloadEndpoint",
    metadata: {
      name: workloadEndpointName(conf.nodename, id),
      namespace: id.namespace,
      labels: endpointLabels(id.namespace, id.orchestrator, facts),
    },
    spec: {
      orchestrator: id.orchestrator,
      node: conf.nodename,
      ...(id.pod ? { pod: id.pod } : { workload: id.containerId }),
      containerID: id.containerId,
      endpoint: id.endpoint,
      interfaceName: wiring.hostIface,
      mac: wiring.podMac,
      ipNetworks: wiring.addresses.map(hostPrefix),
      // Calico: the namespace's and the service account's profiles for pods, the network's name
      // for plain CNI containers.
      profiles: id.pod
        ? [
            `kns.${id.namespace}`,
            ...(facts?.serviceAccount ? [`ksa.${id.namespace}.${facts.serviceAccount}`] : []),
          ]
        : [conf.name],
      // The containers' named ports and host ports (rules' named ports match them).
      ...(facts?.ports?.length ? { ports: facts.ports.map((p) => ({ ...p })) } : {}),
      // From the pod's annotations (src/k8s/pod_endpoint_fields.ts).
      ...fields,
    },
  };
}

/** Canonical text of one address (with or without a prefix length); throws a CniError. */
export function podAddress(text: unknown, what: string): PodAddress {
  const ip = typeof text === "string" ? text.split("/")[0] : undefined;
  try {
    const a = parseAddress(ip ?? "");
    return { family: a.family, address: formatAddress(a.family, a.value) };
  } catch {
    throw new CniError(
      CniErrorCode.DecodingFailure,
      `${what} address ${JSON.stringify(text)} is not an IP address`,
    );
  }
}

/** The addresses of a CNI result (the IPAM plugin's, or prevResult), at most one per family. */
export function resultAddresses(result: unknown, what: string): PodAddress[] {
  const ips = isObject(result) ? result.ips : undefined;
  if (!Array.isArray(ips) || ips.length === 0) {
    throw new CniError(CniErrorCode.DecodingFailure, `${what} has no "ips"`);
  }
  const out = ips.map((ip) => podAddress(isObject(ip) ? ip.address : ip, what));
  for (const family of [4, 6] as const) {
    if (out.filter((a) => a.family === family).length > 1) {
      throw new CniError(
        CniErrorCode.DecodingFailure,
        `${what} has more than one IPv${family} address: ${out.map((a) => a.address).join(", ")}`,
      );
    }
  }
  return out;
}

/**
 * The ADD result in the configuration's CNI version: interface 0 is the host side, 1 the pod
 * side (in its sandbox); each address points at the pod side; routes name the gateways.
 */
export function formatAddResult(cniVersion: string, w: Wiring): Record<string, unknown> {
  const legacy = cniVersion !== "1.0.0";
  const routes: Array<{ dst: string; gw: string }> = [];
  if (w.addresses.some((a) => a.family === 4))
    routes.push({ dst: "0.0.0.0/0", gw: WORKLOAD_GATEWAY_V4 });
  if (w.addresses.some((a) => a.family === 6) && w.gateway6)
    routes.push({ dst: "::/0", gw: w.gateway6 });
  return {
    cniVersion,
    interfaces: [
      { name: w.hostIface, mac: WORKLOAD_HOST_MAC },
      { name: w.podIface, mac: w.podMac, sandbox: w.sandbox },
    ],
    ips: w.addresses.map((a) => ({
      ...(legacy ? { version: String(a.family) } : {}),
      address: hostPrefix(a),
      interface: 1,
    })),
    routes,
    dns: {},
  };
}

/** What CHECK reads back from the kernel and the datastore. */
export interface Observed {
  hostLink?: { kind?: string; mac?: string; up: boolean };
  podLink?: { kind?: string };
  /** Addresses on the pod side, "addr/len". */
  podAddresses: string[];
  /** Destinations of routes through the host side, "addr/len". */
  hostRoutes: string[];
  wep?: WorkloadEndpoint;
}

/** CHECK: every difference between what ADD built (prevResult) and what is there, in words. */
export function checkProblems(
  conf: Pick<CniNetConf, "nodename">,
  id: PodIdentity,
  hostIface: string,
  expected: PodAddress[],
  seen: Observed,
): string[] {
  const out: string[] = [];
  if (!seen.hostLink) out.push(`host interface ${hostIface} is missing`);
  else {
    if (seen.hostLink.kind !== "veth") out.push(`host interface ${hostIface} is not a veth`);
    if (seen.hostLink.mac !== WORKLOAD_HOST_MAC)
      out.push(
        `host interface ${hostIface} has MAC ${seen.hostLink.mac}, not ${WORKLOAD_HOST_MAC}`,
      );
    if (!seen.hostLink.up) out.push(`host interface ${hostIface} is down`);
  }
  if (!seen.podLink) out.push(`pod interface ${id.endpoint} is missing`);
  else if (seen.podLink.kind !== "veth") out.push(`pod interface ${id.endpoint} is not a veth`);
  const canon = (list: string[]) =>
    new Set(
      list.map((t) => {
        const [ip, len] = t.split("/");
        try {
          const a = parseAddress(ip ?? "");
          return `${formatAddress(a.family, a.value)}/${len ?? (a.family === 4 ? 32 : 128)}`;
        } catch {
          return t;
        }
      }),
    );
  const podAddrs = canon(seen.podAddresses);
  const routes = canon(seen.hostRoutes);
  for (const a of expected) {
    const p = hostPrefix(a);
    if (seen.podLink && !podAddrs.has(p))
      out.push(`address ${p} is missing from pod interface ${id.endpoint}`);
    if (seen.hostLink && !routes.has(p)) out.push(`host route ${p} dev ${hostIface} is missing`);
  }
  const name = workloadEndpointName(conf.nodename, id);
  const wep = seen.wep;
  if (!wep) out.push(`WorkloadEndpoint ${id.namespace}/${name} is missing`);
  else {
    const s = wep.spec;
    if (s.containerID !== id.containerId)
      out.push(
        `WorkloadEndpoint ${id.namespace}/${name} belongs to container ${JSON.stringify(s.containerID)}`,
      );
    if (s.interfaceName !== hostIface)
      out.push(
        `WorkloadEndpoint ${id.namespace}/${name} names interface ${JSON.stringify(s.interfaceName)}, not ${hostIface}`,
      );
    const nets = [...canon(s.ipNetworks ?? [])].sort();
    const want = expected.map(hostPrefix).sort();
    if (nets.join(",") !== want.join(","))
      out.push(
        `WorkloadEndpoint ${id.namespace}/${name} holds ${nets.join(", ") || "no address"}, not ${want.join(", ")}`,
      );
  }
  return out;
}
