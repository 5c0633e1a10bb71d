// The `ocelot-ipam` CNI IPAM plugin (CNI spec 1.0.0 and 0.3.x/0.4.0): ADD, DEL, CHECK and
// VERSION from the CNI environment and the network configuration on stdin, results and errors
// in the spec's JSON. Owns: config parsing, the handle id, result/error shapes and error codes,
// refusing ADD while the datastore is locked (`ocelot datastore lock`).
// Not: the allocation itself (src/ipam/store.ts) nor opening the datastore (injected).
import type { EtcdOptions } from "../datastore/etcd.js";
import { type Datastore, UnavailableError } from "../datastore/types.js";
import { PoolSelectionError } from "../ipam/allocator.js";
import { IpamDataError } from "../ipam/block.js";
import { isDatastoreLocked } from "../ipam/cluster.js";
import {
  AddressUnavailableError,
  type AssignedAddress,
  IpamStore,
  type IpamStoreOptions,
  PoolExhaustedError,
  RetriesExhaustedError,
} from "../ipam/store.js";
import { cidrContains, formatAddress, parseAddress } from "../lib/ip.js";
import { readDatastoreFile } from "./datastore_file.js";
import { type CniLogFailure, cniLogProblem, oneLine } from "./log.js";

/** CNI spec "Error" section: well-known codes 1-99; 100+ are ours. */
export const CniErrorCode = {
  IncompatibleCniVersion: 1,
  UnsupportedField: 2,
  ContainerUnknown: 3,
  InvalidEnvironmentVariables: 4,
  IoFailure: 5,
  DecodingFailure: 6,
  InvalidNetworkConfig: 7,
  TryAgainLater: 11,
  /** Ours: the datastore holds IPAM data that does not decode. */
  InvalidStoredData: 100,
  /** Ours: CHECK found an address of prevResult not allocated to this container. */
  CheckMismatch: 101,
  /** Ours: anything unexpected. */
  Internal: 102,
} as const;

export const SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] as const;
const DEFAULT_GRACE_SECONDS = 300;

export class CniError extends Error {
  /** What lies behind the message, for the plugin's log file only (a stack, a child's stderr). */
  trace?: string;

  constructor(
    readonly code: number,
    message: string,
    readonly details = "",
  ) {
    super(message);
    this.name = "CniError";
  }
}

export interface IpamNetConf {
  cniVersion: string;
  name: string;
  datastore: string;
  /** `datastore_file`: the datastore setting install-cni wrote (datastore_file.ts). */
  datastoreFile?: string;
  nodename: string;
  ipv4Pools: string[];
  ipv6Pools: string[];
  /** true/false when configured, "auto" = when a usable pool of that family exists. */
  assignIpv4: boolean | "auto";
  assignIpv6: boolean | "auto";
  graceSeconds: number;
  prevResult?: { ips?: Array<{ address?: unknown }> };
  /**
   * `args.ocelot.namespaceLabels`: the pod's namespace's labels as ocelot-cni read them from the
   * API server (CNI's `args` convention), for pools with a namespaceSelector.
   */
  namespaceLabels?: Record<string, string>;
}

export interface CniOutcome {
  stdout: string;
  exitCode: number;
  /** The failure, with its stack, for the plugin's log file (cni_log.ts). */
  failure?: CniLogFailure;
}

export interface PluginDeps {
  openStore(url: string, etcd?: Partial<EtcdOptions>): Promise<Datastore>;
  hostname(): string;
  storeOptions?: IpamStoreOptions;
}

const str = (v: unknown): v is string => typeof v === "string";

function optBool(v: unknown, field: string): boolean | "auto" {
  if (v === undefined) return "auto";
  if (v === true || v === "true") return true;
  if (v === false || v === "false") return false;
  throw new CniError(
    CniErrorCode.InvalidNetworkConfig,
    `Field "ipam.${field}" must be true or false, got ${JSON.stringify(v)}`,
  );
}

function poolList(v: unknown, field: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every(str)) {
    throw new CniError(
      CniErrorCode.InvalidNetworkConfig,
      `Field "ipam.${field}" must be a list of pool names or CIDRs, got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/**
 * The part of a network configuration every Ocelot plugin reads first: a JSON object with a
 * supported cniVersion (errors 6, 7 and 1 of the spec otherwise).
 */
export function parseNetConfObject(text: string): {
  raw: Record<string, unknown>;
  version: string;
} {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CniError(
      CniErrorCode.DecodingFailure,
      `Network configuration is not JSON: ${(err as Error).message}`,
    );
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new CniError(CniErrorCode.DecodingFailure, "Network configuration is not a JSON object");
  }
  const c = raw as Record<string, unknown>;
  const version = c.cniVersion;
  if (!str(version))
    throw new CniError(CniErrorCode.InvalidNetworkConfig, 'Field "cniVersion" is missing');
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(version)) {
    throw new CniError(
      CniErrorCode.IncompatibleCniVersion,
      `CNI version "${version}" is not supported`,
      `supported: ${SUPPORTED_VERSIONS.join(", ")}`,
    );
  }
  return { raw: c, version };
}

/** The cniVersion the network configuration asks for, when it names one (errors answer in it). */
export function requestedVersion(stdin: string): string | undefined {
  try {
    const v = (JSON.parse(stdin || "{}") as { cniVersion?: unknown }).cniVersion;
    return str(v) && v !== "" ? v : undefined;
  } catch {
    return undefined;
  }
}

/** CHECK does not exist before CNI 0.4.0 (error 1). */
export function refuseCheckBefore040(command: string, cniVersion: string): void {
  if (command === "CHECK" && (cniVersion === "0.3.0" || cniVersion === "0.3.1")) {
    throw new CniError(
      CniErrorCode.IncompatibleCniVersion,
      `CNI version "${cniVersion}" does not support CHECK`,
    );
  }
}

/** Opens the configured datastore: unreachable is UnavailableError (try again), a bad URL error 7. */
export async function openPluginStore(
  deps: { openStore(url: string, etcd?: Partial<EtcdOptions>): Promise<Datastore> },
  url: string,
  datastoreFile?: string,
): Promise<Datastore> {
  try {
    if (datastoreFile !== undefined) {
      // The setting ocelot install-cni wrote beside the conflist (URL, etcd TLS, credentials).
      const f = readDatastoreFile(datastoreFile);
      return await deps.openStore(f.url, f.etcd);
    }
    return await deps.openStore(url);
  } catch (err) {
    if (err instanceof UnavailableError) throw err;
    throw new CniError(CniErrorCode.InvalidNetworkConfig, (err as Error).message);
  }
}

/**
 * The CNI command of an invocation: the VERSION reply (in the requested version when we support
 * it), or ADD, DEL or CHECK; anything else is error 4.
 */
export function cniCommand(
  env: NodeJS.ProcessEnv,
  stdin: string,
): { reply: CniOutcome } | { command: "ADD" | "DEL" | "CHECK" } {
  const command = env.CNI_COMMAND;
  if (command === "VERSION") {
    const v = requestedVersion(stdin);
    const requested = v && (SUPPORTED_VERSIONS as readonly string[]).includes(v) ? v : "1.0.0";
    return {
      reply: {
        stdout: JSON.stringify({ cniVersion: requested, supportedVersions: SUPPORTED_VERSIONS }),
        exitCode: 0,
      },
    };
  }
  if (command !== "ADD" && command !== "DEL" && command !== "CHECK") {
    throw new CniError(
      CniErrorCode.InvalidEnvironmentVariables,
      `CNI_COMMAND "${command ?? ""}" is not ADD, DEL, CHECK or VERSION`,
    );
  }
  return { command };
}

/** Parses the network configuration (stdin) into what the plugin needs. */
export function parseNetConf(
  text: string,
  env: NodeJS.ProcessEnv,
  hostname: () => string,
): IpamNetConf {
  const { raw: c, version } = parseNetConfObject(text);
  const ipam = c.ipam;
  if (typeof ipam !== "object" || ipam === null) {
    throw new CniError(CniErrorCode.InvalidNetworkConfig, 'Field "ipam" is missing');
  }
  const i = ipam as Record<string, unknown>;
  if (i.type !== undefined && i.type !== "ocelot-ipam") {
    throw new CniError(
      CniErrorCode.InvalidNetworkConfig,
      `Field "ipam.type" must be "ocelot-ipam", got ${JSON.stringify(i.type)}`,
    );
  }
  const logProblem = cniLogProblem(c);
  if (logProblem) throw new CniError(CniErrorCode.InvalidNetworkConfig, logProblem);
  const { datastore, datastoreFile } = datastoreSetting(c, env);
  const nodename = c.nodename ?? hostname();
  if (!str(nodename) || nodename === "") {
    throw new CniError(
      CniErrorCode.InvalidNetworkConfig,
      `Field "nodename" must be a non-empty string, got ${JSON.stringify(c.nodename)}`,
    );
  }
  const grace = i.empty_block_grace_seconds ?? DEFAULT_GRACE_SECONDS;
  if (typeof grace !== "number" || !(grace >= 0)) {
    throw new CniError(
      CniErrorCode.InvalidNetworkConfig,
      `Field "ipam.empty_block_grace_seconds" must be a number >= 0, got ${JSON.stringify(grace)}`,
    );
  }
  const ipv4Pools = poolList(i.ipv4_pools, "ipv4_pools");
  const ipv6Pools = poolList(i.ipv6_pools, "ipv6_pools");
  let assignIpv4 = optBool(i.assign_ipv4, "assign_ipv4");
  let assignIpv6 = optBool(i.assign_ipv6, "assign_ipv6");
  // Pools listed for a family mean: assign from that family.
  if (assignIpv4 === "auto" && ipv4Pools.length > 0) assignIpv4 = true;
  if (assignIpv6 === "auto" && ipv6Pools.length > 0) assignIpv6 = true;
  const namespaceLabels = argsNamespaceLabels(c.args);
  return {
    cniVersion: version,
    name: str(c.name) ? c.name : "k8s-pod-network",
    datastore,
    ...(datastoreFile !== undefined ? { datastoreFile } : {}),
    nodename,
    ipv4Pools,
    ipv6Pools,
    assignIpv4,
    assignIpv6,
    graceSeconds: grace,
    prevResult: (c.prevResult as IpamNetConf["prevResult"]) ?? undefined,
    ...(namespaceLabels !== undefined ? { namespaceLabels } : {}),
  };
}

/** `args.ocelot.namespaceLabels` (a map of strings), or undefined when absent. */
function argsNamespaceLabels(args: unknown): Record<string, string> | undefined {
  const o = (args as { ocelot?: { namespaceLabels?: unknown } } | undefined)?.ocelot;
  const labels = o?.namespaceLabels;
  if (labels === undefined) return undefined;
  if (
    typeof labels !== "object" ||
    labels === null ||
    Array.isArray(labels) ||
    Object.values(labels).some((v) => typeof v !== "string")
  )
    throw new CniError(
      CniErrorCode.InvalidNetworkConfig,
      'Field "args.ocelot.namespaceLabels" must be a map of strings',
    );
  return labels as Record<string, string>;
}

/**
 * The network configuration's datastore: `datastore` (a URL), else `datastore_file` (the file
 * install-cni writes), else OCELOT_DATASTORE; error 7 when there is none.
 */
export function datastoreSetting(
  c: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
): { datastore: string; datastoreFile?: string } {
  const file = c.datastore_file;
  if (file !== undefined && (!str(file) || !file.startsWith("/")))
    throw new CniError(
      CniErrorCode.InvalidNetworkConfig,
      `Field "datastore_file" must be an absolute path, got ${JSON.stringify(file)}`,
    );
  const datastore = c.datastore ?? (file === undefined ? env.OCELOT_DATASTORE : "");
  if (!str(datastore) || (datastore === "" && file === undefined)) {
    throw new CniError(
      CniErrorCode.InvalidNetworkConfig,
      'Field "datastore" is missing (e.g. "etcd://127.0.0.1:2379" or "file:/var/lib/ocelot/store.db")',
    );
  }
  return c.datastore === undefined && str(file)
    ? { datastore: "", datastoreFile: file }
    : { datastore };
}

/** CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod". */
export function parseCniArgs(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (text ?? "").split(";")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    if (eq <= 0)
      throw new CniError(
        CniErrorCode.InvalidEnvironmentVariables,
        `CNI_ARGS entry "${part}" is not KEY=VALUE`,
      );
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

/** The handle of one container's addresses, as Calico names it: "<network>.<containerID>". */
export function handleIdOf(networkName: string, containerId: string): string {
  return `${networkName}.${containerId}`;
}

/** The ADD result in the shape of the configuration's CNI version. */
export function formatResult(
  cniVersion: string,
  addrs: readonly AssignedAddress[],
): Record<string, unknown> {
  const legacy = cniVersion !== "1.0.0";
  return {
    cniVersion,
    ips: addrs.map((a) => ({
      ...(legacy ? { version: String(a.family) } : {}),
      address: `${a.address}/${a.family === 4 ? 32 : 128}`,
    })),
    routes: [],
    dns: {},
  };
}

/** The spec's error JSON: code, a one-line msg and, when there are some, details. */
export function formatError(cniVersion: string, err: CniError): string {
  return JSON.stringify({
    cniVersion,
    code: err.code,
    msg: oneLine(err.message),
    ...(err.details ? { details: err.details } : {}),
  });
}

/** A failed invocation's outcome: the error JSON for the runtime, the stack for the log. */
export function failureOutcome(cniVersion: string, err: unknown): CniOutcome {
  const cni = toCniError(err);
  const trace = cni.trace ?? (err instanceof Error && err !== cni ? err.stack : cni.stack);
  return {
    stdout: formatError(cniVersion, cni),
    exitCode: 1,
    failure: { code: cni.code, msg: oneLine(cni.message), ...(trace ? { stack: trace } : {}) },
  };
}

/** Maps any failure to the CNI error code the runtime acts on. */
export function toCniError(err: unknown): CniError {
  if (err instanceof CniError) return err;
  if (
    err instanceof PoolExhaustedError ||
    err instanceof RetriesExhaustedError ||
    err instanceof UnavailableError
  ) {
    return new CniError(CniErrorCode.TryAgainLater, err.message);
  }
  if (err instanceof PoolSelectionError || err instanceof AddressUnavailableError)
    return new CniError(CniErrorCode.InvalidNetworkConfig, err.message);
  if (err instanceof IpamDataError)
    return new CniError(CniErrorCode.InvalidStoredData, err.message);
  // Anything else: its message for the runtime, its stack for the log file only.
  const e = err as Error;
  const cni = new CniError(CniErrorCode.Internal, oneLine(e?.message ?? String(err)));
  if (e?.stack) cni.trace = e.stack;
  return cni;
}

function requireEnv(env: NodeJS.ProcessEnv, names: readonly string[]): void {
  for (const n of names) {
    if (!env[n])
      throw new CniError(
        CniErrorCode.InvalidEnvironmentVariables,
        `Environment variable ${n} is required`,
      );
  }
}

/** The CNI spec's container ID: a letter or digit, then letters, digits, '_', '.' or '-'. */
const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/**
 * Refuses a CNI_CONTAINERID the CNI spec does not allow (as libcni and the Go plugins' skel do,
 * error 4): it becomes part of the IPAM handle's key and of names.
 */
export function checkContainerId(env: NodeJS.ProcessEnv): void {
  const id = env.CNI_CONTAINERID;
  if (id !== undefined && id !== "" && !CONTAINER_ID.test(id))
    throw new CniError(
      CniErrorCode.InvalidEnvironmentVariables,
      `CNI_CONTAINERID ${JSON.stringify(id)} is not a container ID (a letter or digit, then letters, digits, '_', '.' or '-')`,
    );
}

/** Refuses a CNI_IFNAME that is no Linux interface name (as the Go plugins' skel does, error 4). */
export function checkIfName(env: NodeJS.ProcessEnv): void {
  const name = env.CNI_IFNAME ?? "";
  if (name.length >= 16 || name === "." || name === ".." || /[\s/:]/.test(name))
    throw new CniError(
      CniErrorCode.InvalidEnvironmentVariables,
      `CNI_IFNAME ${JSON.stringify(name)} is not a Linux interface name (1..15 characters, no '/', ':' or spaces)`,
    );
}

/** Runs one plugin invocation; never throws: failures become the spec's error JSON. */
export async function runIpamPlugin(
  env: NodeJS.ProcessEnv,
  stdin: string,
  deps: PluginDeps,
): Promise<CniOutcome> {
  let version = "1.0.0";
  let store: Datastore | undefined;
  try {
    const cmd = cniCommand(env, stdin);
    if ("reply" in cmd) return cmd.reply;
    const { command } = cmd;
    version = requestedVersion(stdin) ?? version;
    const conf = parseNetConf(stdin, env, deps.hostname);
    requireEnv(
      env,
      command === "ADD"
        ? ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]
        : ["CNI_CONTAINERID", "CNI_IFNAME"],
    );
    checkContainerId(env);
    checkIfName(env);
    refuseCheckBefore040(command, conf.cniVersion);
    const args = parseCniArgs(env.CNI_ARGS);
    const handleId = handleIdOf(conf.name, env.CNI_CONTAINERID as string);
    store = await openPluginStore(deps, conf.datastore, conf.datastoreFile);
    const ipam = new IpamStore(store, {
      emptyBlockGraceMs: conf.graceSeconds * 1000,
      ...deps.storeOptions,
    });
    if (command === "ADD") {
      // A locked datastore (ocelot datastore lock) gives out no address; DEL still releases.
      if (await isDatastoreLocked(store, ipam.keys)) {
        throw new CniError(
          CniErrorCode.TryAgainLater,
          "The datastore is locked (ocelot datastore lock): no new addresses until `ocelot datastore unlock`",
        );
      }
      // Owner attributes as Calico keeps them (the container id is already in the handle id).
      const attrs: Record<string, string> = {};
      if (args.K8S_POD_NAMESPACE) attrs.namespace = args.K8S_POD_NAMESPACE;
      if (args.K8S_POD_NAME) attrs.pod = args.K8S_POD_NAME;
      // CNI_ARGS IP= (as Calico's IPAM: the pod's ipAddrs annotation, passed by ocelot-cni):
      // exactly those addresses, comma-separated, at most one per family.
      const addrs = args.IP
        ? await assignGiven(ipam, conf, handleId, attrs, args.IP)
        : await assign(ipam, conf, handleId, attrs, {
            ...(args.K8S_POD_NAMESPACE ? { namespace: args.K8S_POD_NAMESPACE } : {}),
            ...(conf.namespaceLabels !== undefined
              ? { namespaceLabels: conf.namespaceLabels }
              : {}),
          });
      return { stdout: JSON.stringify(formatResult(conf.cniVersion, addrs)), exitCode: 0 };
    }
    if (command === "DEL") {
      await ipam.releaseByHandle(handleId, conf.nodename);
      // Opportunistic: give back this node's blocks that have been empty for the grace period.
      await ipam.releaseEmptyBlocks(conf.nodename).catch(() => undefined);
      return { stdout: "", exitCode: 0 };
    }
    await check(ipam, conf, handleId);
    return { stdout: "", exitCode: 0 };
  } catch (err) {
    return failureOutcome(version, err);
  } finally {
    await store?.close().catch(() => undefined);
  }
}

async function assign(
  ipam: IpamStore,
  conf: IpamNetConf,
  handleId: string,
  attrs: Record<string, string>,
  ns: { namespace?: string; namespaceLabels?: Record<string, string> },
): Promise<AssignedAddress[]> {
  const count = async (mode: boolean | "auto", family: 4 | 6, pools: string[]) => {
    if (mode !== "auto") return mode ? 1 : 0;
    return (await ipam.usablePools(conf.nodename, family, pools, "Workload", ns)).length > 0
      ? 1
      : 0;
  };
  let num4 = await count(conf.assignIpv4, 4, conf.ipv4Pools);
  const num6 = await count(conf.assignIpv6, 6, conf.ipv6Pools);
  // Nothing usable in either family: ask for IPv4 so the error names the problem.
  if (num4 === 0 && num6 === 0 && conf.assignIpv4 !== false) num4 = 1;
  if (num4 === 0 && num6 === 0) {
    throw new CniError(
      CniErrorCode.InvalidNetworkConfig,
      'Both "ipam.assign_ipv4" and "ipam.assign_ipv6" are off: nothing to assign',
    );
  }
  return ipam.autoAssign({
    handleId,
    node: conf.nodename,
    attrs,
    num4,
    num6,
    pools4: conf.ipv4Pools,
    pools6: conf.ipv6Pools,
    ...ns,
  });
}

/** The addresses of CNI_ARGS IP=, each assigned as given; on a failure the others are released. */
async function assignGiven(
  ipam: IpamStore,
  conf: IpamNetConf,
  handleId: string,
  attrs: Record<string, string>,
  list: string,
): Promise<AssignedAddress[]> {
  const wanted = list.split(",").map((x) => x.trim());
  const families = new Set<number>();
  for (const a of wanted) {
    let family: number;
    try {
      family = parseAddress(a).family;
    } catch {
      throw new CniError(
        CniErrorCode.InvalidEnvironmentVariables,
        `CNI_ARGS IP: "${a}" is not an IP address`,
      );
    }
    if (families.has(family))
      throw new CniError(
        CniErrorCode.InvalidEnvironmentVariables,
        `CNI_ARGS IP: more than one IPv${family} address`,
      );
    families.add(family);
  }
  // Every address checked before any is assigned: a refused ADD claims no block (assigning the
  // first, then failing on the second, left the first's block claimed for the node).
  await checkGiven(ipam, handleId, wanted);
  const out: AssignedAddress[] = [];
  try {
    for (const address of wanted)
      out.push(await ipam.assignIP({ handleId, node: conf.nodename, address, attrs }));
  } catch (err) {
    if (out.length > 0) await ipam.releaseByHandle(handleId, conf.nodename).catch(() => undefined);
    // Say where the address came from (the pod's ipAddrs annotation, through CNI_ARGS IP).
    if (err instanceof AddressUnavailableError || err instanceof PoolSelectionError)
      throw new CniError(CniErrorCode.InvalidNetworkConfig, `CNI_ARGS IP: ${err.message}`);
    throw err;
  }
  return out;
}

/** What assignIP would refuse, found by reading only: in no pool, reserved, or another's. */
async function checkGiven(ipam: IpamStore, handleId: string, wanted: string[]): Promise<void> {
  const [pools, reservations] = await Promise.all([ipam.loadPools(), ipam.loadReservations()]);
  for (const a of wanted) {
    const { family, value } = parseAddress(a);
    const text = formatAddress(family, value);
    const fail = (why: string) =>
      new CniError(CniErrorCode.InvalidNetworkConfig, `CNI_ARGS IP: Address ${text} ${why}`);
    if (!pools.some((p) => p.cidr.family === family && cidrContains(p.cidr, family, value)))
      throw fail("is in no IP pool");
    if (reservations.some((r) => r.family === family && cidrContains(r, family, value)))
      throw fail("is reserved (IPReservation)");
    const held = await ipam.getAllocation(text);
    if (held !== undefined && held.handleId !== handleId)
      throw fail(`is in use (handle "${held.handleId ?? "none"}")`);
  }
}

async function check(ipam: IpamStore, conf: IpamNetConf, handleId: string): Promise<void> {
  const held = new Set(
    (await ipam.addressesOfHandle(handleId, conf.nodename)).map((a) => a.address),
  );
  const prev = conf.prevResult?.ips ?? [];
  for (const ip of prev) {
    const text = str(ip.address) ? ip.address.split("/")[0] : "";
    let canonical: string;
    try {
      const a = parseAddress(text ?? "");
      canonical = formatAddress(a.family, a.value);
    } catch {
      throw new CniError(
        CniErrorCode.DecodingFailure,
        `prevResult address ${JSON.stringify(ip.address)} is not an IP address`,
      );
    }
    if (!held.has(canonical)) {
      throw new CniError(
        CniErrorCode.CheckMismatch,
        `Address ${canonical} of prevResult is not allocated to "${handleId}"`,
      );
    }
  }
}
