// Process edge of the `ocelot-cni` main CNI plugin: runs one command (ADD, DEL, CHECK, VERSION)
// from the environment and stdin. ADD delegates IPAM to the `ipam.type` executable in CNI_PATH,
// exec'd without a synchronous wait (exec_plugin.ts: inside the node daemon, a hand-off, the
// event loop keeps turning) (`ocelot-ipam` runs in this process, on the datastore connection already open: the same
// stdin, environment and result, without starting a second Node.js), creates the veth (host side in our network namespace, pod side moved into CNI_NETNS), sets up
// both sides and the host's /32 (/128) route under protocol 202, writes the WorkloadEndpoint,
// and undoes every step in reverse when a later one fails. Link work is rtnetlink from this
// process (pod_netlink.ts: a socket opened inside CNI_NETNS for the pod side), no `ip` or
// `nsenter` processes. The pure parts
// (config, names, resource, result, CHECK's comparison) are in plugin.ts.
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  openSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { config as zodConfig } from "zod";
import { ResourceClient } from "../api/client.js";
import type { WorkloadEndpoint } from "../api/node.js";
import { kindOf, warmSchemas } from "../api/registry.js";
import type { EtcdOptions } from "../datastore/etcd.js";
import { openDatastore } from "../datastore/open.js";
import type { Datastore } from "../datastore/types.js";
import { type KernelLinkDetail, RT_SCOPE_LINK, RTPROT_BOOT } from "../fib/rtnetlink.js";
import { RTPROT_OCELOT_AGENT } from "../fib/types.js";
import { type PodEndpointFields, podEndpointFields } from "../k8s/pod_endpoint_fields.js";
import { ANNOTATION_IP_ADDRS, PodAnnotationError, type PodIpam, podIpam } from "../k8s/pod_ipam.js";
import type { PodFacts } from "../k8s/pod_labels.js";
import { KubeError, readPodFacts } from "../k8s/pod_reader.js";
import { WORKLOAD_GATEWAY_V4, WORKLOAD_HOST_MAC } from "../lib/pod_wiring.js";
import { execPlugin, type PluginRun } from "./exec_plugin.js";
import {
  CniError,
  CniErrorCode,
  type CniOutcome,
  cniCommand,
  failureOutcome,
  openPluginStore,
  refuseCheckBefore040,
  requestedVersion,
  runIpamPlugin,
  toCniError,
} from "./ipam_plugin.js";
import {
  type CniNetConf,
  checkProblems,
  formatAddResult,
  hostIfaceName,
  hostPrefix,
  type Observed,
  type PodAddress,
  type PodIdentity,
  parseNetConf,
  podIdentity,
  podMtu,
  resultAddresses,
  type Wiring,
  workloadEndpoint,
  workloadEndpointName,
} from "./plugin.js";
import { deleteLinkQueued, podSysctls, Rtnl, withRtnl } from "./pod_netlink.js";
import { runPluginProcess } from "./process.js";

/** The node daemon's MTU file's text, or undefined when there is none (or no file to read). */
function readMtuFile(path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

const DELEGATE_TIMEOUT_MS = 60_000;
/** The pod and its namespace from the API server: longer is a try-again (code 11). */
const KUBE_TIMEOUT_MS = 10_000;
/**
 * The host side's IPv6 link-local address appears once both ends are up (a few ms when quiet):
 * poll this long, a hang limit (a loaded node took over 2 s).
 */
const LINK_LOCAL_WAIT_MS = 30_000;

export interface CniPluginDeps {
  openStore(url: string, etcd?: Partial<EtcdOptions>): Promise<Datastore>;
  hostname(): string;
  /**
   * The call runs inside the node daemon (a CNI hand-off): an IPAM plugin it execs gets
   * OCELOT_CNI_HANDOFF=0, so an installed `ocelot-ipam` runs itself instead of handing its call
   * back to this daemon, where it could wait for a slot its own caller holds.
   */
  handedOff?: boolean;
}

/** Writes one sysctl of our network namespace (the host side's). */
function sysctl(key: string, value: string): void {
  try {
    writeFileSync(`/proc/sys/${key.replaceAll(".", "/")}`, value);
  } catch (err) {
    throw new CniError(
      CniErrorCode.Internal,
      `Setting ${key}=${value} failed: ${(err as Error).message}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// IPAM delegation, the CNI way: the same stdin and environment, CNI_COMMAND as given.

function findPlugin(type: string, cniPath: string | undefined): string {
  const dirs = (cniPath ?? "").split(":").filter(Boolean);
  for (const dir of dirs) {
    const p = join(dir, type);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {}
  }
  throw new CniError(
    CniErrorCode.InvalidNetworkConfig,
    `IPAM plugin "${type}" (field "ipam.type") is not an executable in CNI_PATH "${cniPath ?? ""}"`,
  );
}

/** Where IPAM runs: `ocelot-ipam` in this process (its datastore is ours), others exec'd. */
export interface IpamDelegate {
  conf: CniNetConf;
  env: NodeJS.ProcessEnv;
  stdin: string;
  /** The datastore this process opened (conf.datastore), lent to an in-process `ocelot-ipam`. */
  store: Datastore;
  deps: CniPluginDeps;
}

/**
 * Runs `ocelot-ipam` in this process unless OCELOT_CNI_IPAM_EXEC=1 asks for the executable (a
 * way to compare the two; both print the same result, test/cni/ipam_in_process.netns.test.ts).
 */
function ipamInProcess(d: IpamDelegate): boolean {
  return d.conf.ipamType === "ocelot-ipam" && d.env.OCELOT_CNI_IPAM_EXEC !== "1";
}

/** Runs the IPAM plugin; its error JSON becomes a CniError with the same code and message. */
async function delegateIpam(d: IpamDelegate, command: "ADD" | "DEL" | "CHECK"): Promise<unknown> {
  const r = ipamInProcess(d) ? await ipamHere(d, command) : await ipamExec(d, command);
  let out: unknown;
  try {
    out = r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
  } catch {}
  if (r.ok) return out;
  const e = out as { code?: unknown; msg?: unknown; details?: unknown } | undefined;
  if (e && typeof e.code === "number" && typeof e.msg === "string") {
    throw new CniError(e.code, e.msg, typeof e.details === "string" ? e.details : "");
  }
  // No error JSON (a crash): its first line for the runtime, all of its output for the log. A
  // plugin that ran past the limit is a transient condition to the runtime: try again later (11).
  const said = [(r.stderr ?? "").trim(), (r.stdout ?? "").trim()].filter(Boolean).join("\n");
  const first = said.split("\n")[0] ?? "";
  const err = new CniError(
    r.timedOut ? CniErrorCode.TryAgainLater : CniErrorCode.Internal,
    `IPAM plugin "${d.conf.ipamType}" ${command} failed (${r.failure})${first ? `: ${first}` : ""}`,
  );
  if (said) err.trace = said;
  throw err;
}

type IpamRan = Pick<PluginRun, "ok" | "stdout" | "stderr" | "failure" | "timedOut">;

/**
 * The CNI spec's delegation: the plugin executable, our stdin and environment, CNI_COMMAND. Not
 * waited for synchronously: inside the node daemon (a CNI hand-off) the event loop keeps
 * turning while the plugin runs (BGP keepalives, BFD, the FIB, other calls).
 */
function ipamExec(d: IpamDelegate, command: "ADD" | "DEL" | "CHECK"): Promise<IpamRan> {
  const plugin = findPlugin(d.conf.ipamType, d.env.CNI_PATH);
  const env = {
    ...d.env,
    CNI_COMMAND: command,
    ...(d.deps.handedOff ? { OCELOT_CNI_HANDOFF: "0" } : {}),
  };
  return execPlugin(plugin, d.stdin, env, DELEGATE_TIMEOUT_MS);
}

/**
 * `ocelot-ipam` as its executable runs it (runIpamPlugin: same stdin, environment, output and
 * exit code), on our open datastore when it names the same one; the IPAM run's close of it is
 * left to us.
 */
async function ipamHere(d: IpamDelegate, command: "ADD" | "DEL" | "CHECK"): Promise<IpamRan> {
  // Our store with a close() that does nothing (the datastore classes keep no #private state).
  const lent: Datastore = Object.create(d.store, { close: { value: async () => undefined } });
  const out = await runIpamPlugin({ ...d.env, CNI_COMMAND: command }, d.stdin, {
    // The same stdin names the same datastore (its URL, or the datastore file beside the conflist).
    openStore: (url, etcd) =>
      url === d.conf.datastore || d.conf.datastoreFile !== undefined
        ? Promise.resolve(lent)
        : d.deps.openStore(url, etcd),
    hostname: d.deps.hostname,
  });
  return {
    ok: out.exitCode === 0,
    stdout: out.stdout,
    stderr: "",
    failure: `exit ${out.exitCode}`,
    timedOut: false,
  };
}

// ---------------------------------------------------------------------------------------------
// The veth and both of its sides.

/** Builds the veth for one pod; every step pushes its undo onto `undo`. */
async function wirePod(
  conf: CniNetConf,
  id: PodIdentity,
  hostIface: string,
  sandbox: string,
  addresses: PodAddress[],
  undo: Array<() => void>,
): Promise<Wiring> {
  const host = new Rtnl();
  let nl: Rtnl | undefined;
  try {
    const has4 = addresses.some((a) => a.family === 4);
    const has6 = addresses.some((a) => a.family === 6);
    const pod = id.endpoint;
    // A host side left by an earlier container of the same pod goes first (as Calico does).
    const old = host.link(hostIface);
    if (old) host.deleteLink(old.ifindex, `Deleting the old ${hostIface}`);
    const mtu = podMtu(conf, readMtuFile(conf.mtuFile));
    // Host side with the fixed MAC, the pod side created inside the pod's namespace.
    const nsFd = openNetns(sandbox);
    try {
      host.addVeth(
        { name: hostIface, mtu, mac: WORKLOAD_HOST_MAC },
        { name: pod, mtu, netnsFd: nsFd },
        `Creating veth ${hostIface} with ${pod} in ${sandbox}`,
      );
    } finally {
      closeSync(nsFd);
    }
    undo.push(() => deleteLinkQuietly(hostIface));
    const hostLink = host.requireLink(hostIface);

    // Host side: Calico's sysctls, up.
    if (has4) {
      sysctl(`net.ipv4.conf.${hostIface}.route_localnet`, "1");
      sysctl(`net.ipv4.neigh.${hostIface}.proxy_delay`, "0");
      sysctl(`net.ipv4.conf.${hostIface}.proxy_arp`, "1");
      sysctl(`net.ipv4.conf.${hostIface}.forwarding`, "1");
    }
    if (has6) {
      // DAD would hold the link-local gateway back for a second on a point-to-point link.
      sysctl(`net.ipv6.conf.${hostIface}.accept_dad`, "0");
      sysctl(`net.ipv6.conf.${hostIface}.disable_ipv6`, "0");
      sysctl(`net.ipv6.conf.${hostIface}.proxy_ndp`, "1");
      sysctl(`net.ipv6.conf.${hostIface}.forwarding`, "1");
      sysctl(`net.ipv6.conf.${hostIface}.accept_ra`, "0");
    }
    host.setUp(hostLink, `Setting ${hostIface} up`);

    // Pod side: addresses as /32 (/128), the gateway routes.
    if (has6) {
      podSysctls(sandbox, [
        ...["all", "default", "lo"].map((c): [string, string] => [
          `net.ipv6.conf.${c}.disable_ipv6`,
          "0",
        ]),
        [`net.ipv6.conf.${pod}.accept_dad`, "0"],
      ]);
    }
    nl = new Rtnl(sandbox);
    const podLink = nl.requireLink(pod);
    nl.setUp(podLink, `Setting ${pod} up in the pod`);
    for (const a of addresses) {
      nl.addAddress(
        podLink.ifindex,
        a.family,
        a.address,
        a.family === 4 ? 32 : 128,
        `Adding ${hostPrefix(a)} to ${pod}`,
      );
    }
    if (has4) {
      nl.addRoute(
        {
          family: 4,
          dst: WORKLOAD_GATEWAY_V4,
          dstLen: 32,
          ifindex: podLink.ifindex,
          protocol: RTPROT_BOOT,
          scope: "link",
        },
        "Adding the gateway route in the pod",
      );
      nl.addRoute(
        {
          family: 4,
          dst: "0.0.0.0",
          dstLen: 0,
          gateway: WORKLOAD_GATEWAY_V4,
          ifindex: podLink.ifindex,
          protocol: RTPROT_BOOT,
          scope: "universe",
        },
        "Adding the default route in the pod",
      );
    }
    let gateway6: string | undefined;
    if (has6) {
      gateway6 = await hostLinkLocal(host, hostLink.ifindex, hostIface);
      nl.addRoute(
        {
          family: 6,
          dst: "::",
          dstLen: 0,
          gateway: gateway6,
          ifindex: podLink.ifindex,
          protocol: RTPROT_BOOT,
          scope: "universe",
        },
        "Adding the IPv6 default route in the pod",
      );
    }
    const podMac = podLink.mac;
    if (!podMac)
      throw new CniError(CniErrorCode.Internal, `Pod interface ${pod} has no MAC address`);

    // The host's route to each pod address, under the agent's protocol so the agent owns it.
    for (const a of addresses) addHostRoute(host, a, hostIface, hostLink.ifindex);
    return { hostIface, podIface: pod, podMac, sandbox, addresses, gateway6 };
  } finally {
    host.close();
    nl?.close();
  }
}

/** An fd of the network namespace file at `path` (IFLA_NET_NS_FD), for the veth's pod side. */
function openNetns(path: string): number {
  try {
    return openSync(path, "r");
  } catch (err) {
    throw new CniError(
      CniErrorCode.Internal,
      `Opening CNI_NETNS "${path}" failed: ${(err as Error).message}`,
    );
  }
}

/** Deletes an interface of our namespace if it is there; never throws (undo steps). */
function deleteLinkQuietly(name: string): void {
  try {
    withRtnl(undefined, (nl) => {
      const l = nl.link(name);
      if (l) nl.deleteLink(l.ifindex, `Deleting ${name}`);
    });
  } catch {}
}

/** The host side's IPv6 link-local address (the pod's IPv6 gateway), as Calico reads it. */
async function hostLinkLocal(host: Rtnl, ifindex: number, hostIface: string): Promise<string> {
  const deadline = Date.now() + LINK_LOCAL_WAIT_MS;
  for (;;) {
    const ll = host.addresses(ifindex, 6).find((a) => a.scope === RT_SCOPE_LINK)?.address;
    if (ll) return ll;
    if (Date.now() > deadline) {
      throw new CniError(
        CniErrorCode.Internal,
        `Host interface ${hostIface} got no IPv6 link-local address within ${LINK_LOCAL_WAIT_MS} ms (is IPv6 disabled on this host?)`,
      );
    }
    // Asynchronously: in the node daemon (the CNI hand-off) this wait must not hold the event
    // loop, which also carries BGP keepalives and BFD.
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** `<ip>/32 dev <hostIface> proto 202 scope link`; one already there through hostIface is fine. */
function addHostRoute(host: Rtnl, a: PodAddress, hostIface: string, ifindex: number): void {
  const dst = hostPrefix(a);
  try {
    host.addRoute(
      {
        family: a.family,
        dst: a.address,
        dstLen: a.family === 4 ? 32 : 128,
        ifindex,
        protocol: RTPROT_OCELOT_AGENT,
        scope: "link",
      },
      `Adding host route ${dst} dev ${hostIface}`,
    );
    return;
  } catch (err) {
    const existing = host.mainRoutes(a.family).filter((r) => r.dst === dst);
    if (existing.some((r) => r.oifs.includes(ifindex))) return;
    const other = existing
      .flatMap((r) => r.oifs)
      .map((i) => host.linkName(i))
      .join(", ");
    if (!other || !(err instanceof CniError)) throw err;
    throw new CniError(err.code, `${err.message} (the route goes through ${other})`);
  }
}

// ---------------------------------------------------------------------------------------------
// WorkloadEndpoints.

function wepInfo() {
  const info = kindOf("projectcalico.org/v3", "WorkloadEndpoint");
  if (!info) throw new Error("Kind WorkloadEndpoint is not registered");
  return info;
}

async function getWep(
  store: Datastore,
  conf: CniNetConf,
  id: PodIdentity,
): Promise<WorkloadEndpoint | undefined> {
  const name = workloadEndpointName(conf.nodename, id);
  return (await new ResourceClient(store).get(wepInfo(), name, id.namespace)) as
    | WorkloadEndpoint
    | undefined;
}

/** Deletes the pod's WorkloadEndpoint when it is this container's; true when it did. */
async function deleteWep(store: Datastore, conf: CniNetConf, id: PodIdentity): Promise<boolean> {
  const wep = await getWep(store, conf, id);
  if (!wep || wep.spec.containerID !== id.containerId) return false;
  await new ResourceClient(store)
    .delete(wepInfo(), wep.metadata.name, id.namespace, wep.metadata.resourceVersion)
    .catch((err) => {
      if ((err as { code?: string }).code !== "NotFound") throw err;
    });
  return true;
}

// ---------------------------------------------------------------------------------------------
// The commands.

function requireEnv(env: NodeJS.ProcessEnv, names: readonly string[]): void {
  for (const n of names) {
    if (!env[n])
      throw new CniError(
        CniErrorCode.InvalidEnvironmentVariables,
        `Environment variable ${n} is required`,
      );
  }
}

async function add(delegate: IpamDelegate, id: PodIdentity): Promise<Record<string, unknown>> {
  const { conf, env, store } = delegate;
  const sandbox = env.CNI_NETNS as string;
  const hostIface = hostIfaceName(id);
  // Checked before IPAM so that a missing namespace allocates nothing.
  if (!existsSync(sandbox)) {
    throw new CniError(
      CniErrorCode.InvalidEnvironmentVariables,
      `CNI_NETNS "${sandbox}" does not exist`,
    );
  }
  const facts = await kubeFacts(conf, id);
  // Calico's IPAM pod annotations: pools in place of the network's, or addresses without IPAM.
  const want = annotatedIpam(conf, facts);
  // The namespace's labels from the API server, for ocelot-ipam's pools with a namespaceSelector
  // (Calico's IPAM plugin reads the Namespace itself; without an API server ocelot-ipam reads
  // the namespace's kns.<ns> Profile).
  const nsLabels = facts !== undefined && conf.ipamType === "ocelot-ipam";
  const pooled =
    want.ipv4Pools || want.ipv6Pools || nsLabels
      ? {
          ...delegate,
          stdin: withPools(delegate.stdin, want, nsLabels ? facts?.namespaceLabels : undefined),
        }
      : delegate;
  // ipAddrs: the IPAM plugin assigns exactly those (CNI_ARGS IP=, as Calico's IPAM takes it).
  const ipam = want.ipAddrs
    ? {
        ...pooled,
        env: {
          ...pooled.env,
          CNI_ARGS: [pooled.env.CNI_ARGS, `IP=${want.ipAddrs.map((a) => a.address).join(",")}`]
            .filter(Boolean)
            .join(";"),
        },
      }
    : pooled;
  const noIpam = want.ipAddrsNoIpam;
  const ipamResult = noIpam ? undefined : await delegateIpam(ipam, "ADD");
  const undo: Array<() => void | Promise<void>> = noIpam
    ? []
    : [async () => void (await delegateIpam(ipam, "DEL"))];
  try {
    const addresses =
      noIpam ?? resultAddresses(ipamResult, `IPAM plugin "${conf.ipamType}" result`);
    const wiring = await wirePod(
      conf,
      id,
      hostIface,
      sandbox,
      addresses,
      undo as Array<() => void>,
    );
    const wep = workloadEndpoint(conf, id, wiring, facts, annotatedFields(conf, facts, addresses));
    await new ResourceClient(store).write("apply", wep);
    undo.push(async () => void (await deleteWep(store, conf, id)));
    return formatAddResult(conf.cniVersion, wiring);
  } catch (err) {
    const failed: string[] = [];
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch (e) {
        failed.push((e as Error).message);
      }
    }
    const cni = toCniError(err);
    if (failed.length === 0) throw cni;
    const both = new CniError(
      cni.code,
      cni.message,
      [cni.details, `undo left behind: ${failed.join("; ")}`].filter(Boolean).join("\n"),
    );
    both.trace = cni.trace ?? (err instanceof Error ? err.stack : undefined);
    throw both;
  }
}

/**
 * The endpoint fields of the pod's annotations (floating IPs, spoofing, bandwidth), checked (a
 * CniError naming the annotation otherwise); annotations left out are named on stderr.
 */
function annotatedFields(
  conf: CniNetConf,
  facts: PodFacts | undefined,
  addresses: readonly PodAddress[],
): Omit<PodEndpointFields, "warnings"> {
  try {
    const { warnings, ...fields } = podEndpointFields(facts?.annotations ?? {}, addresses, {
      floatingIpsEnabled: conf.floatingIps === true,
    });
    // Not errors (Calico keeps the pod too): said on stderr, which the runtime logs.
    for (const w of warnings) process.stderr.write(`ocelot-cni: ${w}\n`);
    return fields;
  } catch (err) {
    if (err instanceof PodAnnotationError)
      throw new CniError(CniErrorCode.InvalidNetworkConfig, err.message);
    throw err;
  }
}

/** The pod's IPAM annotations, checked (a CniError naming the annotation otherwise). */
function annotatedIpam(conf: CniNetConf, facts: PodFacts | undefined): PodIpam {
  try {
    const want = podIpam(facts?.annotations ?? {}, {
      ipAddrsNoIpamEnabled: conf.ipAddrsNoIpam === true,
    });
    if (want.ipAddrs && conf.ipamType !== "ocelot-ipam")
      throw new PodAnnotationError(
        `Pod annotation ${ANNOTATION_IP_ADDRS} needs the ocelot-ipam IPAM plugin (it assigns the given address), not "${conf.ipamType}"`,
      );
    return want;
  } catch (err) {
    if (err instanceof PodAnnotationError)
      throw new CniError(CniErrorCode.InvalidNetworkConfig, err.message);
    throw err;
  }
}

/**
 * The IPAM stdin with the annotation's pools in place of `ipam.ipv4_pools` / `ipv6_pools`, and
 * the namespace's labels as `args.ocelot.namespaceLabels` (CNI's `args` convention) when given.
 */
function withPools(stdin: string, want: PodIpam, namespaceLabels?: Record<string, string>): string {
  const conf = JSON.parse(stdin) as { ipam: Record<string, unknown>; args?: unknown };
  if (want.ipv4Pools) conf.ipam.ipv4_pools = want.ipv4Pools;
  if (want.ipv6Pools) conf.ipam.ipv6_pools = want.ipv6Pools;
  if (namespaceLabels !== undefined) {
    const args = (typeof conf.args === "object" && conf.args !== null ? conf.args : {}) as Record<
      string,
      unknown
    >;
    conf.args = { ...args, ocelot: { ...(args.ocelot as object), namespaceLabels } };
  }
  return JSON.stringify(conf);
}

/** The pod's Kubernetes facts when a kubeconfig is configured and the pod is a Kubernetes one. */
async function kubeFacts(conf: CniNetConf, id: PodIdentity): Promise<PodFacts | undefined> {
  if (conf.kubeconfig === undefined || id.pod === undefined) return undefined;
  try {
    return await readPodFacts(
      conf.kubeconfig,
      { namespace: id.namespace, name: id.pod },
      KUBE_TIMEOUT_MS,
    );
  } catch (err) {
    if (err instanceof KubeError)
      throw new CniError(
        err.retryable ? CniErrorCode.TryAgainLater : CniErrorCode.Internal,
        err.message,
      );
    throw err;
  }
}

async function del(ipam: IpamDelegate, id: PodIdentity): Promise<void> {
  const { conf, env, store } = ipam;
  const hostIface = hostIfaceName(id);
  const sandbox = env.CNI_NETNS;
  // The pod side, when its namespace is still there: the pair goes with it. Best effort: a
  // namespace on its way out (or no namespace file at all) leaves the host side to the step below.
  // The deletions go from the addon's sender thread (a veth's takes the kernel 10-30 ms): in the
  // node daemon (the CNI hand-off) the event loop runs meanwhile.
  if (sandbox && existsSync(sandbox)) {
    try {
      const l = withRtnl(sandbox, (nl) => nl.link(id.endpoint));
      if (l) await deleteLinkQueued(sandbox, l.ifindex, `Deleting ${id.endpoint} in the pod`);
    } catch {}
  }
  // The host side by name, unless the pod's WorkloadEndpoint is another container's (then the
  // interface is that container's too: a newer sandbox of the same pod).
  const wep = await getWep(store, conf, id);
  const mine = !wep || wep.spec.containerID === id.containerId;
  if (mine) {
    const l = withRtnl(undefined, (nl) => nl.link(hostIface));
    if (l) {
      try {
        await deleteLinkQueued(undefined, l.ifindex, `Deleting ${hostIface}`);
      } catch (err) {
        if (withRtnl(undefined, (nl) => nl.link(hostIface))) throw err;
      }
    }
  }
  await deleteWep(store, conf, id);
  await delegateIpam(ipam, "DEL");
}

async function check(ipam: IpamDelegate, id: PodIdentity): Promise<void> {
  const { conf, env, store } = ipam;
  if (conf.prevResult === undefined)
    throw new CniError(
      CniErrorCode.InvalidNetworkConfig,
      'Field "prevResult" is required for CHECK',
    );
  const expected = resultAddresses(conf.prevResult, "prevResult");
  const sandbox = env.CNI_NETNS as string;
  if (!existsSync(sandbox)) {
    throw new CniError(CniErrorCode.CheckMismatch, `CNI_NETNS "${sandbox}" does not exist`);
  }
  const hostIface = hostIfaceName(id);
  const host = withRtnl(undefined, (nl) => {
    const link = nl.link(hostIface);
    const routes = link
      ? ([4, 6] as const).flatMap((f) =>
          nl
            .mainRoutes(f)
            .filter((r) => r.oifs.includes(link.ifindex))
            .map((r) => r.dst),
        )
      : [];
    return { link, routes };
  });
  // A CNI_NETNS that cannot be entered holds no pod interface: a difference, not a failure.
  let pod: { link?: KernelLinkDetail; addrs: string[] } = { addrs: [] };
  try {
    pod = withRtnl(sandbox, (nl) => {
      const link = nl.link(id.endpoint);
      const addrs = link
        ? nl
            .addresses(link.ifindex)
            .filter((a) => a.scope !== RT_SCOPE_LINK)
            .map((a) => `${a.address}/${a.prefixLen}`)
        : [];
      return { link, addrs };
    });
  } catch {}
  const seen: Observed = {
    hostLink: host.link && { kind: host.link.kind, mac: host.link.mac, up: host.link.up },
    podLink: pod.link && { kind: pod.link.kind },
    podAddresses: pod.addrs,
    hostRoutes: host.routes,
    wep: await getWep(store, conf, id),
  };
  const problems = checkProblems(conf, id, hostIface, expected, seen);
  if (problems.length > 0) {
    throw new CniError(CniErrorCode.CheckMismatch, `CHECK failed: ${problems.join("; ")}`);
  }
  await delegateIpam(ipam, "CHECK");
}

/** Runs one plugin invocation; never throws: failures become the spec's error JSON. */
export async function runCniPlugin(
  env: NodeJS.ProcessEnv,
  stdin: string,
  deps: CniPluginDeps,
): Promise<CniOutcome> {
  let version = "1.0.0";
  let store: Datastore | undefined;
  try {
    version = requestedVersion(stdin) ?? version;
    const cmd = cniCommand(env, stdin);
    if ("reply" in cmd) return cmd.reply;
    const { command } = cmd;
    const conf = parseNetConf(stdin, env, deps.hostname);
    requireEnv(
      env,
      command === "DEL"
        ? ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"]
        : ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
    );
    refuseCheckBefore040(command, conf.cniVersion);
    const id = podIdentity(env);
    store = await openPluginStore(deps, conf.datastore, conf.datastoreFile);
    const ipam: IpamDelegate = { conf, env, stdin, store, deps };
    if (command === "ADD") {
      const result = await add(ipam, id);
      return { stdout: JSON.stringify(result), exitCode: 0 };
    }
    if (command === "DEL") await del(ipam, id);
    else await check(ipam, id);
    return { stdout: "", exitCode: 0 };
  } catch (err) {
    return failureOutcome(version, err);
  } finally {
    await store?.close().catch(() => undefined);
  }
}

/**
 * For the bundle's V8 code cache (scripts/build.mjs): the schema work main() does, done once,
 * and the etcd client's calls (loaded only then, as openDatastore loads it).
 */
export async function warmCodeCache(): Promise<void> {
  zodConfig({ jitless: true });
  warmSchemas();
  await (await import("../datastore/etcd.js")).warmEtcdClient();
}

export async function main(): Promise<void> {
  // One process writes one WorkloadEndpoint: zod's compiled parsers (a new Function per
  // schema, built on first use) cost more here than they save.
  zodConfig({ jitless: true });
  await runPluginProcess("ocelot-cni", (stdin) =>
    runCniPlugin(process.env, stdin, {
      openStore: (url, etcd) => openDatastore(url, etcd ? { etcd } : {}),
      hostname,
    }),
  );
}
