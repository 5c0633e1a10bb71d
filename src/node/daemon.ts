// The node daemon (`ocelot node run`): registers the node's Node resource, keeps a watched copy
// of the resources a node is rendered from (WorkloadEndpoints, IPPools, Nodes, BGPConfigurations,
// BGPPeers, BGPFilters, this node's block affinities, network policies of the three kinds), and after each change (debounced) and on a periodic
// full resync converges two things: the agent's data plane (src/felix render + apply, routes
// under protocol 202) and the BGP speaker, run in-process and reconfigured by diff as SIGHUP
// does for `ocelot bgpd` (learned routes under protocol 201). Before the agent renders, the
// node's tunnel addresses are brought to what its pools' encapsulation needs (tunnel_addrs.ts)
// and its fabric interfaces are read (MTU; every link too while FelixConfiguration
// mtuIfacePattern is set); the pods' MTU is written to a file for the CNI plugin. Every node's block affinities are watched: the overlay routes remote blocks. A change
// of block affinities or Nodes takes the overlay's fast path at once (not while WireGuard is on:
// then the full pass, which programs WireGuard before the main table): only the routes,
// neighbours and FDB entries it changes, over netlink, a new block's three in one sendmsg
// (src/felix/overlay_delta.ts, overlay_fast.ts, overlay_socket.ts). A Node change still runs the debounced full pass after it; an affinity
// change only when the fast path could not apply it or this node's own blocks changed, else the
// periodic resync reconciles; other nodes' blocks also decide what the speaker accepts from
// them (import ownership, import_ownership.ts), as do WorkloadEndpoints (borrowed addresses):
// a change of them is applied to the running speaker at once, in place, and a BGP-only pass
// follows (for WorkloadEndpoints only when something changed there, or this node's own borrowed
// addresses did). Each watch event's
// delivery is timed to the end of the work it caused (the fast path's netlink writes, or the
// pass) for the watch-lag histogram. A block of this node newly confirmed (IPAM's claim inside a
// CNI ADD) takes the BGP fast path: originated in the running speaker at once, when it is the only
// change of this node's blocks (bgp_fast.ts decides, as the full render would list it), so the
// debounced pass that follows changes nothing. While the speaker does not run, the daemon serves the status
// socket itself (the node's commands, log-level), so it answers with BGP off too. An address
// added to or removed from one of the node's links (the agent FIB's RTM_NEWADDR/DELADDR) runs an
// agent pass while some HostEndpoint of this node is found by its expectedIPs (Felix re-resolves
// host endpoints on address updates).
// Owns: the loop, its ordering and logging. Not: what the state is (agent_state.ts,
// bgp_state.ts) or how it is applied.

import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { BGPFilter } from "../api/bgp.js";
import { decodeResource } from "../api/client.js";
import type { HostEndpoint } from "../api/hostendpoint.js";
import type { IPPool } from "../api/ippool.js";
import type { K8sEndpointSlice, K8sService } from "../api/k8s_service.js";
import type { NetworkSetResource } from "../api/networkset.js";
import type { Node, WorkloadEndpoint } from "../api/node.js";
import type { GlobalNetworkPolicy, K8sNetworkPolicy, NetworkPolicy } from "../api/policy.js";
import { type KindInfo, kindOf, kindPrefix } from "../api/registry.js";
import type { Tier } from "../api/tier.js";
import { type BgpdConfig, resolvePasswordFiles } from "../bgp/config.js";
import { type NodeStatus, serveStatus } from "../bgp/status.js";
import type { Datastore, KeyValue } from "../datastore/types.js";
import {
  DEFAULT_REFRESH_MS,
  IncrementalApplier,
  killRunningCommands,
  readHostInterfaces,
  spawnRunner,
} from "../felix/apply.js";
import { renderDataplane } from "../felix/dataplane.js";
import type { HostLink } from "../felix/mtu.js";
import { type FabricIface, type OverlayState, renderOverlay } from "../felix/overlay.js";
import { readFabric, readHostLinks } from "../felix/overlay_apply.js";
import {
  addBlocks,
  isEmptyDelta,
  type OverlayDelta,
  planOverlayDelta,
} from "../felix/overlay_delta.js";
import { applyOverlayDelta } from "../felix/overlay_fast.js";
import { OverlaySocket } from "../felix/overlay_socket.js";
import type { Fib } from "../fib/types.js";
import { RTPROT_OCELOT_AGENT } from "../fib/types.js";
import { decodeAffinity, IpamKeys } from "../ipam/records.js";
import { StopDeadline } from "../lib/bounded_stop.js";
import { type AgentCounters, zeroAgentCounters } from "../lib/daemon_metrics.js";
import type { Log } from "../lib/log.js";
import { NETNS_STATUS_DIR } from "../lib/status_socket_path.js";
import {
  type AgentOptions,
  agentInput,
  felixSettingsOf,
  type NodeSnapshot,
  needsHostInterfaces,
  nodeBlocks,
  overlayInputOf,
  storedOnlyWarnings,
} from "./agent_state.js";
import { ownBlocksAdded, type RenderedOwnBlocks } from "./bgp_fast.js";
import { type BgpHost, type FibStatus, startBgp } from "./bgp_run.js";
import { type BgpSnapshot, isEncapsulatingPool, type PeerKind, renderBgp } from "./bgp_state.js";
import { PrefixCache } from "./cache.js";
import { NodeStatusWriter } from "./calico_node_status.js";
import { ownAnnouncements, withImportOwnership } from "./import_ownership.js";
import { CountedIpamStore } from "./ipam_counted.js";
import { registerNode } from "./registration.js";
import { ensureTunnelAddresses, planTunnels } from "./tunnel_addrs.js";
import { WIREGUARD_HANDSHAKE_RECHECK_MS, WireguardAgent } from "./wireguard_node.js";

export const DEFAULT_STATUS_SOCKET = "/run/ocelot/bgpd.sock";
/** stop()'s whole budget when the caller gives no deadline. */
export const DAEMON_STOP_MS = 6000;
/**
 * How long stop() waits for the start or pass in flight before it kills the commands it runs (an
 * `iptables-restore` waiting for the xtables lock, a slow `ip` under load) and waits again.
 */
export const PASS_GRACE_MS = 2000;

export interface DaemonOptions {
  nodename: string;
  /** The node's fabric address "A.B.C.D/len" for spec.bgp.ipv4Address; absent keeps the stored, null removes it. */
  ipv4Address?: string | null;
  /** "IPv6/len" for spec.bgp.ipv6Address (dual stack); absent keeps the stored, null removes it. */
  ipv6Address?: string | null;
  /** How each address was chosen (configured, stored, autodetected by which method): shown by `ocelot status`. */
  addressSources?: { ipv4?: string; ipv6?: string };
  asNumber?: number;
  /** Network namespace (name under /run/netns) the agent programs; default: the process's own. */
  netns?: string;
  /** Run the BGP speaker (default true; `--networking-backend vxlan|none` turns it off). */
  bgp?: boolean;
  /** Where the pods' MTU is written for the CNI plugin (absent: not written). */
  mtuFile?: string;
  statusSocket?: string;
  /** Where BGP passwords' secretKeyRefs are files `<dir>/<name>/<key>` (default /etc/ocelot/secrets). */
  secretsDir?: string;
  /** CALICO_ADVERTISE_CLUSTER_IPS: announced in place of BGPConfiguration's serviceClusterIPs. */
  advertiseClusterIps?: string;
  /** CALICO_ROUTER_ID: an IPv4 address or "hash"; default the node's IPv4 address. */
  routerId?: string;
  /** false: a link going down is left to the hold timer (BGP checkLink off). Default true. */
  bgpCheckLink?: boolean;
  /** Policy's dispatch by set (policy.ts dispatchBySet) instead of Felix's tree. Default false. */
  dispatchBySet?: boolean;
  /** Quiet time after a change before converging (default 50 ms). */
  debounceMs?: number;
  /** Full resync period: list everything again and converge (default 60 s). */
  resyncIntervalMs?: number;
  /**
   * How often the datastore is probed (one read, and the embedded store's write lock, bounded
   * by the same time): while it does not
   * answer, /readyz says so and the node keeps forwarding on its last known state; when it
   * answers again, everything is listed again. Default 5 s; 0: no probe.
   */
  datastoreProbeMs?: number;
  /** Delay before retrying a failed convergence (default 1 s). */
  retryMs?: number;
  agent?: AgentOptions;
  /**
   * The period of the node's CalicoNodeStatus when no such resource names one; it is also
   * written at once on a change (at most every 2 s). 0 or absent: not written.
   */
  nodeStatusPeriodMs?: number;
  /** Observations for histograms (src/lib/prom.ts): each pass, each apply. */
  observe?: {
    convergence?(area: Area, seconds: number): void;
    iptables?(seconds: number): void;
    fibBatch?(fib: "agent" | "bgp", seconds: number): void;
    updateToKernel?(seconds: number): void;
    /** Kernel drift the agent repaired (its input unchanged), one kind per change. */
    driftRepaired?(kinds: string[]): void;
    /**
     * From a watch event's delivery to this daemon (the cache takes it at once) to the end of the
     * work it caused: the overlay fast path's netlink writes acknowledged, or the pass that took it.
     */
    watchToApplied?(path: "overlay_fast" | "pass", seconds: number): void;
  };
  log: Log;
  /** Append every UPDATE received to MRT BGP4MP files (src/bgp/mrt/update_dump.ts). */
  mrtUpdates?: { dir: string; rotateBytes?: number; rotateMs?: number };
  /** Export to a BMP station (src/bgp/bmp/). */
  bmp?: { station: string; statsIntervalMs: number; adjRibOut?: boolean };
  /** The BGP speaker's log (its own subsystem's level); default: log. */
  bgpLog?: Log;
  /**
   * Opens the agent's FIB (tests may pass a MemoryFib); default KernelFib for the namespace.
   * Given, the overlay's fast path (which writes neighbours over netlink) is off.
   */
  openAgentFib?: (
    netns: string | undefined,
    log: Log,
    /** Routes of ours someone else removed and the FIB put back (kernel drift). */
    onRestored?: (count: number) => void,
    /** Routes of our protocol nobody set (added by someone else) that a resync swept. */
    onSwept?: (count: number) => void,
    /** A routable address added to or removed from one of the node's links. */
    onAddress?: (address: string, added: boolean) => void,
  ) => Promise<Fib & { close?: () => Promise<void> }>;
}

export type Area = "agent" | "bgp";

const kindInfo = (kind: string, apiVersion = "projectcalico.org/v3"): KindInfo => {
  const info = kindOf(apiVersion, kind);
  if (!info) throw new Error(`Kind ${kind} is not registered`);
  return info;
};

export type WatchArea =
  | "weps"
  | "pools"
  | "nodes"
  | "bgpconfigs"
  | "bgppeers"
  | "bgpfilters"
  | "affinities"
  | "netpols"
  | "gnps"
  | "knps"
  | "tiers"
  | "gnsets"
  | "nsets"
  | "heps"
  | "profiles"
  | "felixconfigs"
  | "services"
  | "epslices";

/**
 * The prefixes a node daemon lists and watches, the same for every node (a watch proxy serves
 * each to all nodes from one upstream watch): every node's block affinities too, for the overlay.
 */
export function nodeWatchPrefixes(): Record<WatchArea, string> {
  const keys = new IpamKeys();
  return {
    weps: kindPrefix(kindInfo("WorkloadEndpoint")),
    pools: kindPrefix(kindInfo("IPPool")),
    nodes: kindPrefix(kindInfo("Node")),
    bgpconfigs: kindPrefix(kindInfo("BGPConfiguration")),
    bgppeers: kindPrefix(kindInfo("BGPPeer")),
    bgpfilters: kindPrefix(kindInfo("BGPFilter")),
    // Every node's: the overlay routes remote blocks (BGP and the agent's blackholes use ours).
    affinities: keys.hostPrefix(),
    netpols: kindPrefix(kindInfo("NetworkPolicy")),
    gnps: kindPrefix(kindInfo("GlobalNetworkPolicy")),
    knps: kindPrefix(kindInfo("NetworkPolicy", "networking.k8s.io/v1")),
    tiers: kindPrefix(kindInfo("Tier")),
    gnsets: kindPrefix(kindInfo("GlobalNetworkSet")),
    nsets: kindPrefix(kindInfo("NetworkSet")),
    heps: kindPrefix(kindInfo("HostEndpoint")),
    profiles: kindPrefix(kindInfo("Profile")),
    felixconfigs: kindPrefix(kindInfo("FelixConfiguration")),
    // Kubernetes Services and EndpointSlices: `services` matches, Service IP advertisement.
    services: kindPrefix(kindInfo("Service", "v1")),
    epslices: kindPrefix(kindInfo("EndpointSlice", "discovery.k8s.io/v1")),
  };
}

/** The running daemon; start() resolves after the first convergence. */
export class NodeDaemon {
  private readonly prefixes: Record<WatchArea, string>;
  private readonly areasOf: Map<string, Area[]>;
  private cache: PrefixCache | undefined;
  private registered: Node | undefined;
  private agentFib: (Fib & { close?: () => Promise<void> }) | undefined;
  private bgp: BgpHost | undefined;
  private dirty = new Set<Area>();
  private timer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  /** An agent pass when none ran for the shorter refresh interval (the applier reads back then). */
  private refreshTimer: NodeJS.Timeout | undefined;
  /** Set while the datastore does not answer the probe: since when, and its error. */
  private datastoreDown: { since: number; error: string } | undefined;
  private statusWriter: NodeStatusWriter | undefined;
  /** The status socket served by the daemon itself while the speaker (which serves it otherwise) does not run. */
  private ownStatus: { close(): Promise<void> } | undefined;
  private readonly bootTime = new Date().toISOString();
  private lastReconfiguration: string | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** start() while it runs (stop() waits for it, bounded), and stop()'s one run. */
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private lastAgentInput = "";
  /** Whether some BGPPeer peers with local workloads (their changes then render BGP too). */
  private localPeering = false;
  private lastBgpReason = "";
  /** What the speaker's originations were last set from (a full render or the BGP fast path). */
  private bgpOrigins: RenderedOwnBlocks | undefined;
  private bgpFastScheduled = false;
  /** When the oldest affinity change not yet seen by the BGP fast path arrived. */
  private bgpFastPendingSince: number | undefined;
  /** This node's pool prefixes the last BGP render was made from (ownAnnouncements). */
  private bgpOwnHosts = "";
  /** Changes the BGP fast path made: a pass whose snapshot is older leaves the speaker alone. */
  private bgpFastSeq = 0;
  /** BGP fast-path runs that originated a new block of this node (for tests and logs). */
  bgpFastPasses = 0;
  private lastWarnings = "";
  private lastAgentWarnings = "";
  private lastFelixLogLevel: string | undefined;
  private lastFamilies: (4 | 6)[] | undefined;
  /**
   * Writes each pass's differences from memory; reads the kernel back in full at start, at each
   * periodic resync, on FelixConfiguration iptablesRefreshInterval and after errors.
   */
  private readonly applier = new IncrementalApplier();
  private lastMtu: number | undefined;
  private lastOverlayFailures = "[]";
  /** The overlay's fast path: its netlink socket, inputs and what it last applied. */
  private neigh: OverlaySocket | undefined;
  private fabric: { 4?: FabricIface; 6?: FabricIface } = {};
  /** Some HostEndpoint of this node is found by its expectedIPs (the last pass's snapshot). */
  private hostInterfacesNeeded = false;
  /** Every link's MTU, read at each pass while FelixConfiguration mtuIfacePattern is set. */
  private hostLinks: HostLink[] | undefined;
  /** FelixConfiguration wireguardEnabled: the device, peers, table, rule and published key. */
  private wireguard: WireguardAgent | undefined;
  private lastWireguardWarnings = "";
  private lastWireguardError = "";
  private wireguardRetryPending = false;
  private wireguardHandshakePending = false;
  private overlayGen = 0;
  private overlayWanted: { state: OverlayState; gen: number } | undefined;
  private overlayApplied: { state: OverlayState; gen: number; present: Set<string> } | undefined;
  /**
   * The affinity records the fast path's state was last rendered from; undefined when anything
   * else the overlay is rendered from may have changed since (then it renders in full).
   */
  private overlaySeen: Set<KeyValue> | undefined;
  private fastRunning: Promise<void> | undefined;
  private fastAgain = false;
  private fastScheduled = false;
  /** Areas a change waiting for the fast path marks dirty unless the fast path handles it. */
  private fastFallback = new Set<Area>();
  /** When the oldest watch event not yet taken by a pass / by the fast path arrived (performance.now()). */
  private passPendingSince: number | undefined;
  private fastPendingSince: number | undefined;
  private lastOwnAffinities = "";
  /** Fast-path runs that changed the kernel (for tests and logs). */
  fastPasses = 0;
  /** CIDRs of the pools that encapsulated at the last pass (orders the two FIBs' hand-over). */
  private lastEncap = new Set<string>();
  /** Convergence passes done (for tests and logs). */
  passes = 0;
  /** Where each peer of the running config comes from (mesh, BGPPeer), by address. */
  peerKinds: Record<string, PeerKind> = {};
  /** Commands the status socket answers besides status/routes (the CLI adds log-level). */
  readonly statusCommands: Record<string, (args: unknown) => unknown> = {
    node: () => this.nodeInfo(),
  };
  /** The node's IPAM (tunnel addresses), counted for /metrics. */
  readonly ipam: CountedIpamStore;
  /** Counters for /metrics (src/lib/daemon_metrics.ts). */
  readonly stats: AgentCounters = zeroAgentCounters();

  constructor(
    readonly store: Datastore,
    readonly opts: DaemonOptions,
  ) {
    this.prefixes = nodeWatchPrefixes();
    this.ipam = new CountedIpamStore(store);
    const p = this.prefixes;
    this.areasOf = new Map<string, Area[]>([
      // BGP only when a borrowed or floating address changed (ownershipFast): not a render
      // per pod on every node.
      [p.weps, ["agent"]],
      [p.pools, ["agent", "bgp"]],
      [p.nodes, ["agent", "bgp"]],
      // The agent too: the local workload peering address on pods' interfaces (local_peers.ts).
      [p.bgpconfigs, ["agent", "bgp"]],
      [p.bgppeers, ["agent", "bgp"]],
      [p.bgpfilters, ["bgp"]],
      [p.affinities, ["agent", "bgp"]],
      [p.netpols, ["agent"]],
      [p.gnps, ["agent"]],
      [p.knps, ["agent"]],
      [p.tiers, ["agent"]],
      [p.gnsets, ["agent"]],
      [p.nsets, ["agent"]],
      [p.heps, ["agent"]],
      [p.profiles, ["agent"]],
      [p.felixconfigs, ["agent"]],
      [p.services, ["bgp"]],
      [p.epslices, ["agent", "bgp"]],
    ]);
  }

  private get log(): Log {
    return this.opts.log;
  }

  /**
   * Registers the Node, opens the FIBs, lists and watches, converges once, starts the timers.
   * A stop() meanwhile ends it at its next step (it resolves; the stop closes what it opened).
   */
  start(): Promise<void> {
    this.starting ??= this.startSteps();
    return this.starting;
  }

  private async startSteps(): Promise<void> {
    const o = this.opts;
    if (this.stopped) return;
    const reg = await registerNode(this.store, {
      name: o.nodename,
      ipv4Address: o.ipv4Address,
      ipv6Address: o.ipv6Address,
      asNumber: o.asNumber,
    });
    this.registered = reg.node;
    this.log.info(
      { bgp: reg.node.spec.bgp ?? {}, changed: reg.changed },
      reg.changed ? "Node registered" : "Node already registered",
    );
    this.agentFib = await (o.openAgentFib ?? openKernelAgentFib)(
      o.netns,
      this.log,
      (count) => o.observe?.driftRepaired?.(new Array<string>(count).fill("route")),
      (count) => o.observe?.driftRepaired?.(new Array<string>(count).fill("route_swept")),
      (address, added) => this.hostAddressChanged(address, added),
    );
    if (this.stopped) return;
    if (!o.openAgentFib) this.neigh = OverlaySocket.open(o.netns);
    this.cache = new PrefixCache(this.store, Object.values(this.prefixes), {
      onChange: (prefix) => {
        // Called as the watch message is delivered (the cache applied it synchronously).
        const now = performance.now();
        // Anything but block affinities: the fast path's next render is a full one.
        if (prefix !== this.prefixes.affinities) this.overlaySeen = undefined;
        let areas = this.areasOf.get(prefix) ?? ["agent", "bgp"];
        // Workloads' labels pick the BGP peers of local workload peering, when it is in use.
        if (
          this.localPeering &&
          (prefix === this.prefixes.weps || prefix === this.prefixes.profiles)
        )
          areas = [...areas, "bgp"];
        // A block of this node just confirmed: announced at once (the pass follows, see below).
        if (prefix === this.prefixes.affinities) this.scheduleBgpFast(now);
        // A workload's borrowed address: the import ownership of its node, and ours to announce;
        // FelixConfiguration floatingIPs decides whether its floating IPs are either.
        if (prefix === this.prefixes.weps || prefix === this.prefixes.felixconfigs)
          this.scheduleBgpFast(now);
        // While WireGuard is on, the full pass routes blocks and borrowed addresses instead: it
        // programs WireGuard's table before the main table's routes, so a new block's traffic
        // never takes the overlay in clear first.
        const fast = this.neigh !== undefined && !this.wireguard?.active;
        if (fast && prefix === this.prefixes.affinities) {
          // The fast path decides whether the full pass must follow (see the module comment).
          for (const a of areas) this.fastFallback.add(a);
          this.scheduleOverlayFast(now);
          return;
        }
        // Nodes (tunnel addresses, VTEP MACs) and workloads (borrowed addresses) too.
        if (fast && (prefix === this.prefixes.nodes || prefix === this.prefixes.weps))
          this.scheduleOverlayFast(now);
        this.changed(areas, now);
      },
      onResync: (prefix, why) => {
        this.stats.watchResyncs++;
        this.log.warn({ prefix, why }, "Watch resync: listing again");
      },
      onError: (prefix, err, retryInMs) =>
        this.log.error(
          { prefix, error: err.message, retryInMs },
          "Datastore list failed; retrying",
        ),
    });
    await this.cache.start();
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.dirty = new Set<Area>(["agent", "bgp"]);
    await this.converge();
    await this.statusWithoutSpeaker();
    if (this.stopped) return;
    this.startProbe();
    const every = o.resyncIntervalMs ?? 60_000;
    const tick = () => {
      this.resyncTimer = setTimeout(() => {
        void this.fullResync().finally(() => {
          if (!this.stopped) tick();
        });
      }, every);
      this.resyncTimer.unref?.();
    };
    tick();
    if ((o.nodeStatusPeriodMs ?? 0) > 0) {
      this.statusWriter = new NodeStatusWriter(this.store, {
        nodename: o.nodename,
        periodMs: o.nodeStatusPeriodMs ?? 0,
        log: this.log,
        input: () => {
          const b = this.bgp?.status();
          return {
            status: b?.speaker,
            routes: this.bgp?.routes(),
            peerKinds: this.peerKinds,
            ready: this.readiness().ok,
            bootTime: this.bootTime,
            ...(this.lastReconfiguration ? { lastReconfiguration: this.lastReconfiguration } : {}),
          };
        },
      });
      this.statusWriter.start();
    }
  }

  /** Writes of the node's CalicoNodeStatus so far (0 when not written). */
  get nodeStatusWrites(): number {
    return this.statusWriter?.writes ?? 0;
  }

  /**
   * Reads one key every datastoreProbeMs, bounded by that time. A failure marks the datastore
   * down (readiness says why; the kernel keeps the last known state); the first success after
   * that lists everything again, since watches may have missed changes meanwhile.
   */
  private startProbe(): void {
    const every = this.opts.datastoreProbeMs ?? 5000;
    if (every <= 0) return;
    const key = `${this.prefixes.nodes}${this.opts.nodename}`;
    const probe = async () => {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          (async () => {
            await this.store.get(key);
            // The embedded store reads while another process holds its write lock: ask for it.
            await this.store.probeWrite?.(Math.max(100, every - 500));
          })(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${every} ms`)), every);
          }),
        ]);
        if (this.datastoreDown) {
          const s = Math.round((Date.now() - this.datastoreDown.since) / 1000);
          this.datastoreDown = undefined;
          this.log.info({ downSeconds: s }, "Datastore reachable again: listing everything again");
          await this.fullResync();
        }
      } catch (err) {
        const error = (err as Error).message;
        if (!this.datastoreDown) {
          this.datastoreDown = { since: Date.now(), error };
          this.log.error(
            { error },
            "Datastore unreachable: keeping the last known state, retrying",
          );
        } else this.datastoreDown.error = error;
      } finally {
        clearTimeout(timer);
      }
    };
    const tick = () => {
      this.probeTimer = setTimeout(() => {
        void probe().finally(() => {
          if (!this.stopped) tick();
        });
      }, every);
      this.probeTimer.unref?.();
    };
    tick();
  }

  /** Lists everything again and converges both areas (the periodic resync). */
  async fullResync(): Promise<void> {
    this.log.debug({}, "Full resync");
    // The agent's next pass reads the kernel back in full (drift made by others is repaired).
    this.applier.refresh("resync");
    try {
      await this.cache?.resyncAll();
    } catch (err) {
      this.log.error({ error: (err as Error).message }, "Full resync: list failed");
    }
    this.changed(["agent", "bgp"]);
  }

  /**
   * Stops watching and the speaker, closes the FIBs; the agent's routes stay (pods keep working).
   * Bounded (deadline: the caller's, or DAEMON_STOP_MS of its own): a start or pass in flight is
   * given PASS_GRACE_MS to end, then the commands it runs are killed by PID (the next start reads
   * the kernel back in full); a step still not done at its bound is abandoned, named in the log.
   */
  stop(deadline?: StopDeadline): Promise<void> {
    this.stopping ??= this.stopSteps(deadline ?? new StopDeadline(DAEMON_STOP_MS, this.log));
    return this.stopping;
  }

  private async stopSteps(d: StopDeadline): Promise<void> {
    this.stopped = true;
    this.statusWriter?.stop();
    if (this.timer) clearTimeout(this.timer);
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    if (this.probeTimer) clearTimeout(this.probeTimer);
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    await d.step("the datastore watches", () => this.cache?.close());
    // The start (its first pass) or a pass in flight: ends at its next step now that stopped is
    // set, unless a command of it runs; that is killed after the grace.
    const inFlight = () => Promise.all([this.starting, this.running, this.fastRunning]);
    if (!(await d.step("the pass in flight", inFlight, PASS_GRACE_MS))) {
      const killed = killRunningCommands();
      this.log.warn({ killed }, "Stop: the pass in flight did not end; its commands killed");
      await d.step("the pass in flight (its commands killed)", inFlight);
    }
    const bgp = this.bgp;
    this.bgp = undefined;
    await d.step("the BGP speaker", () => bgp?.stop());
    if (this.ownStatus) {
      const own = this.ownStatus;
      this.ownStatus = undefined;
      await d.step("the status socket", () => own.close());
      // A namespace's well-known socket directory goes with its daemon (as bgp_run.ts does).
      const dir = dirname(this.opts.statusSocket ?? DEFAULT_STATUS_SOCKET);
      if (dirname(dir) === NETNS_STATUS_DIR) rmSync(dir, { recursive: true, force: true });
    }
    this.neigh?.close();
    this.neigh = undefined;
    this.applier.close();
    await d.step("the agent's FIB", () => this.agentFib?.close?.());
  }

  /** Runs the overlay's fast path soon (once for all changes of this turn of the event loop). */
  private scheduleOverlayFast(arrived: number): void {
    if (!this.neigh || this.stopped) return;
    this.fastPendingSince = Math.min(this.fastPendingSince ?? arrived, arrived);
    if (this.fastScheduled) return;
    this.fastScheduled = true;
    setImmediate(() => {
      this.fastScheduled = false;
      if (this.fastRunning) {
        this.fastAgain = true;
        return;
      }
      this.fastRunning = this.overlayFastLoop().finally(() => {
        this.fastRunning = undefined;
      });
    });
  }

  private async overlayFastLoop(): Promise<void> {
    do {
      this.fastAgain = false;
      const fallback = [...this.fastFallback];
      this.fastFallback.clear();
      const since = this.fastPendingSince ?? performance.now();
      this.fastPendingSince = undefined;
      let handled = false;
      try {
        handled = await this.overlayFast(since);
      } catch (err) {
        this.log.warn(
          { error: (err as Error).message },
          "Overlay fast path failed (the pass repairs)",
        );
      }
      if (!handled && fallback.length > 0) this.changed(fallback, since);
    } while (this.fastAgain && !this.stopped);
  }

  /**
   * The overlay rendered from the cache now (with the fabric the last pass read), and the routes,
   * neighbours and FDB entries that changed since it was last applied, written over netlink. A
   * change of the devices themselves is the full pass's (it follows anyway).
   */
  private async overlayFast(arrived: number): Promise<boolean> {
    const applied = this.overlayApplied;
    if (!applied || !this.neigh || this.stopped) return false;
    const t0 = performance.now();
    const me = this.opts.nodename;
    let ownChanged = false;
    let incremental = true;
    let { state: next, delta } = this.overlayAdded(applied) ?? {};
    if (next === undefined || delta === undefined) {
      incremental = false;
      const seen = new Set(this.cache?.values(this.prefixes.affinities) ?? []);
      const snap = this.overlaySnapshot();
      const own = JSON.stringify(
        snap.affinities
          .filter((a) => a.node === me)
          .map((a) => `${a.cidr} ${a.state}`)
          .sort(),
      );
      ownChanged = own !== this.lastOwnAffinities;
      this.lastOwnAffinities = own;
      const input = overlayInputOf(snap, me, this.overlayOptions());
      next = renderOverlay(input);
      delta = planOverlayDelta(applied.state, next, applied.present);
      if (delta.devicesChanged) return false;
      this.overlaySeen = seen;
    }
    const gen = ++this.overlayGen;
    this.overlayWanted = { state: next, gen };
    this.overlayApplied = { state: next, gen, present: applied.present };
    if (isEmptyDelta(delta)) return !ownChanged;
    const t1 = performance.now();
    const { failures, entriesMs, routesMs, removedMs } = await applyOverlayDelta(delta, {
      fib: this.agentFib as Fib,
      neigh: this.neigh,
    });
    this.fastPasses++;
    const t2 = performance.now();
    this.opts.observe?.watchToApplied?.("overlay_fast", (t2 - arrived) / 1000);
    const r1 = (x: number) => Math.round(x * 10) / 10;
    const ms = r1(t2 - t0);
    const counts = {
      // The watch event's delivery (wall clock, Date.now()'s ms: comparable across processes)
      // and its wait for the fast path to start.
      arrivedAt: r1(Date.now() - (performance.now() - arrived)),
      waitMs: r1(t0 - arrived),
      renderMs: r1(t1 - t0),
      incremental,
      // From the netlink writes' start: entries and routes acknowledged (they overlap), stale entries removed.
      entriesMs,
      routesMs,
      removedMs,
      routes: `+${delta.setRoutes.length} -${delta.removeRoutes.length}`,
      neighbours: `+${delta.setNeighbours.length} -${delta.removeNeighbours.length}`,
      fdb: `+${delta.setFdb.length} -${delta.removeFdb.length}`,
      ms,
    };
    if (failures.length > 0)
      this.log.warn(
        { ...counts, failures },
        "Overlay fast path: some entries failed (the pass repairs)",
      );
    else this.log.debug(counts, "Overlay fast path applied");
    return failures.length === 0 && !ownChanged;
  }

  /**
   * The fast path's incremental render: when the only change since its last render is block
   * affinities of other nodes added (or a pending one confirmed, as IPAM claims a block), only
   * those blocks are rendered (overlay_delta.ts addBlocks), from this node's and their owners'
   * Nodes. Undefined: a full render must decide (a confirmed record removed or changed, this
   * node's own blocks, anything else changed, or addBlocks refusing).
   */
  private overlayAdded(applied: {
    state: OverlayState;
    present: Set<string>;
  }): { state: OverlayState; delta: OverlayDelta } | undefined {
    const seen = this.overlaySeen;
    if (!seen || !this.cache) return undefined;
    const me = this.opts.nodename;
    const kvs = this.cache.values(this.prefixes.affinities);
    const added = kvs.filter((kv) => !seen.has(kv));
    const decode = (kv: KeyValue) => {
      try {
        return decodeAffinity(kv.key, kv.value);
      } catch {
        return undefined; // the full render logs it
      }
    };
    if (kvs.length - added.length !== seen.size) {
      // Records gone or replaced: only another node's that routed nothing (a claim still
      // pending, now confirmed or given up) leave the rest as it was.
      const current = new Set(kvs);
      for (const kv of seen) {
        if (current.has(kv)) continue;
        const a = decode(kv);
        if (a === undefined || a.node === me || a.state === "confirmed") return undefined;
      }
    }
    const affinities: NodeSnapshot["affinities"] = [];
    for (const kv of added) {
      const a = decode(kv);
      if (a === undefined || a.node === me) return undefined;
      affinities.push(a);
    }
    // The blocks claimed before these (decoded once per record, as the full render's are).
    const isNew = new Set(added);
    const claimed = new Set<string>();
    for (const kv of kvs) {
      if (isNew.has(kv)) continue;
      let a = this.decoded.get(kv) as NodeSnapshot["affinities"][number] | undefined;
      if (a === undefined) {
        a = decode(kv);
        if (a === undefined) return undefined;
        this.decoded.set(kv, a);
      }
      if (a.state === "confirmed") claimed.add(a.cidr);
    }
    const owners = new Set([me, ...affinities.map((a) => a.node)]);
    const res = <T>(prefix: string) => this.decodeAll(prefix, (kv) => decodeResource(kv) as T);
    const snap: NodeSnapshot = {
      nodes: res<Node>(this.prefixes.nodes).filter((n) => owners.has(n.metadata.name)),
      workloadEndpoints: [],
      pools: res(this.prefixes.pools),
      affinities,
      felixConfigurations: res(this.prefixes.felixconfigs),
    };
    const input = overlayInputOf(snap, me, this.overlayOptions());
    const r = addBlocks(applied.state, input, applied.present, claimed);
    if (r) this.overlaySeen = new Set(kvs);
    return r;
  }

  /** Runs the BGP fast path soon (once for all affinity changes of this turn of the event loop). */
  private scheduleBgpFast(arrived: number): void {
    if (!this.bgp || this.stopped) return;
    this.bgpFastPendingSince = Math.min(this.bgpFastPendingSince ?? arrived, arrived);
    if (this.bgpFastScheduled) return;
    this.bgpFastScheduled = true;
    setImmediate(() => {
      this.bgpFastScheduled = false;
      const since = this.bgpFastPendingSince ?? performance.now();
      this.bgpFastPendingSince = undefined;
      this.bgpFast(since)
        .then(() => this.ownershipFast(since))
        .catch((err: Error) => {
          this.log.warn({ error: err.message }, "BGP fast path failed (the pass repairs)");
          this.changed(["bgp"]);
        });
    });
  }

  /**
   * The BGP fast path: when the only change of this node's confirmed blocks since the speaker's
   * originations were set is new blocks (bgp_fast.ts decides), those are originated at once,
   * without the debounce and the pass (the agent's part, the whole BGP render). The change also
   * marked the pass dirty: it renders the same originations and changes nothing.
   */
  private async bgpFast(arrived: number): Promise<void> {
    const bgp = this.bgp;
    const rendered = this.bgpOrigins;
    if (!bgp || this.stopped) return;
    if (!rendered) {
      // A pass is applying the speaker's config (or none rendered yet): it announces the block.
      this.log.debug({}, "BGP fast path: a pass is applying the speaker's config; left to it");
      return;
    }
    const t0 = performance.now();
    const p = this.prefixes;
    const affinities = this.decodeAll(p.affinities, (kv) => decodeAffinity(kv.key, kv.value));
    const pools = this.decodeAll(p.pools, (kv) => decodeResource(kv) as IPPool);
    const d = ownBlocksAdded(rendered, { affinities, pools }, this.opts.nodename);
    if (d.kind === "none") return;
    if (d.kind === "pass") {
      this.log.debug({ why: d.why }, "BGP fast path: left to the pass");
      return;
    }
    // The speaker runs what was rendered (not a config still being applied).
    if (JSON.stringify(bgp.config.originate) !== JSON.stringify(rendered.originate)) {
      this.log.debug({}, "BGP fast path: the speaker runs another config; left to the pass");
      return;
    }
    const next = { ...bgp.config, originate: d.originate };
    this.bgpOrigins = {
      own: nodeBlocks(affinities, this.opts.nodename),
      exported: d.exported,
      originate: d.originate,
    };
    this.bgpFastSeq++;
    try {
      await bgp.apply(next);
    } catch (err) {
      this.bgpOrigins = undefined;
      throw err;
    } finally {
      // The pass confirms (or repairs): its snapshot is taken after this.
      this.changed(["bgp"]);
    }
    this.bgpFastPasses++;
    const r1 = (x: number) => Math.round(x * 10) / 10;
    this.log.info(
      {
        originated: d.added,
        waitMs: r1(t0 - arrived),
        ms: r1(performance.now() - t0),
      },
      "BGP: new block of this node originated (fast path)",
    );
  }

  /**
   * The import ownership's fast path: each Node peer's importOwnership (its confirmed blocks and
   * its workloads' host routes, import_ownership.ts) recomputed when block affinities or
   * WorkloadEndpoints change and applied in place: the speaker re-evaluates the paths it holds, so a block whose UPDATE came
   * before its affinity reached this node lands now, with no ROUTE-REFRESH, and a block that
   * moved to another node moves its acceptance. The overlay's fast path may leave the full pass
   * out, so this does not wait for it; as the fast path above, it makes a pass rendered from an
   * older snapshot skip (bgpFastSeq) and asks for a new one.
   */
  private async ownershipFast(arrived: number): Promise<void> {
    const bgp = this.bgp;
    if (!bgp || this.stopped) return;
    if (!this.bgpOrigins) {
      // A pass is applying the speaker's config, rendered from a snapshot that may be older
      // than this change: another pass renders it.
      this.changed(["bgp"]);
      return;
    }
    const t0 = performance.now();
    const before = bgp.config;
    const snap = this.overlaySnapshot();
    // This node's own host routes (borrowed addresses, floating IPs) changed: the pass announces
    // them (its render).
    if (ownAnnouncements(snap, this.opts.nodename) !== this.bgpOwnHosts) this.changed(["bgp"]);
    const next = withImportOwnership(before, snap);
    if (next === before) return;
    const peers = next.peers.filter((p, i) => p !== before.peers[i]).map((p) => p.address);
    this.bgpFastSeq++;
    try {
      await bgp.apply(next);
    } finally {
      this.changed(["bgp"]);
    }
    const r1 = (x: number) => Math.round(x * 10) / 10;
    // Debug: every block claimed anywhere in the cluster comes here (the speaker logs the change).
    this.log.debug(
      { peers, waitMs: r1(t0 - arrived), ms: r1(performance.now() - t0) },
      "BGP: import ownership of Node peers updated in place (fast path)",
    );
  }

  /**
   * An address came to or left one of the node's links: HostEndpoints found by their
   * expectedIPs are matched again, in an agent pass (Felix re-resolves host endpoints on its
   * interface monitor's address updates). Only while some HostEndpoint of this node needs it.
   */
  private hostAddressChanged(address: string, added: boolean): void {
    if (!this.hostInterfacesNeeded) return;
    this.log.debug({ address, added }, "Agent: host address changed; host endpoints matched again");
    this.changed(["agent"]);
  }

  /** Marks areas dirty; `arrived`: when the watch event that caused it was delivered. */
  private changed(areas: Area[], arrived?: number): void {
    if (arrived !== undefined)
      this.passPendingSince = Math.min(this.passPendingSince ?? arrived, arrived);
    for (const a of areas) this.dirty.add(a);
    this.schedule(this.opts.debounceMs ?? 50);
  }

  private schedule(delayMs: number): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.converge();
    }, delayMs);
  }

  /** One convergence at a time; changes that arrive meanwhile run another pass after it. */
  private converge(): Promise<void> {
    // The finally runs after the assignment even when the loop has nothing to do.
    this.running ??= this.passLoop().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async passLoop(): Promise<void> {
    while (this.dirty.size > 0 && !this.stopped) {
      const areas = new Set(this.dirty);
      this.dirty.clear();
      const arrived = this.passPendingSince;
      this.passPendingSince = undefined;
      this.log.debug({ areas: [...areas] }, "Converging");
      const snap = this.snapshot();
      const fastSeq = this.bgpFastSeq;
      const t0 = performance.now();
      const st = this.stats;
      let bgpDone = false;
      const bgp = async () => {
        if (bgpDone) return;
        bgpDone = true;
        try {
          if (areas.has("bgp") && this.opts.bgp !== false) {
            const b0 = performance.now();
            await this.convergeBgp(snap, fastSeq);
            st.convergences.bgp++;
            this.opts.observe?.convergence?.("bgp", (performance.now() - b0) / 1000);
          }
        } catch (err) {
          st.failures.bgp++;
          this.log.error({ error: (err as Error).message }, "BGP: convergence failed");
          this.retryLater("bgp");
        }
      };
      // Neither FIB overwrites the other's route: when a pool starts encapsulating, the speaker
      // lets go of its blocks just before the agent writes its routes (the overlay takes them);
      // otherwise (a pool back to Never) the agent lets go first and the speaker takes them back.
      const encap = snap.pools.filter(isEncapsulatingPool).map((p) => p.spec.cidr);
      const gained = encap.some((c) => !this.lastEncap.has(c));
      const lost = [...this.lastEncap].some((c) => !encap.includes(c));
      this.lastEncap = new Set(encap);
      // No hand-over between the FIBs in this pass: the speaker goes first, so that a new block
      // of this node is announced without waiting for the agent's whole pass (policy included;
      // the pod's own route is the CNI plugin's and is in place already).
      if (!gained && !lost) await bgp();
      // Stopped meanwhile: the rest of the pass is not begun (stop() waits for this loop).
      if (this.stopped) break;
      try {
        if (areas.has("agent")) {
          const a0 = performance.now();
          await this.convergeAgent(snap, gained ? bgp : undefined);
          st.convergences.agent++;
          this.opts.observe?.convergence?.("agent", (performance.now() - a0) / 1000);
        }
      } catch (err) {
        st.failures.agent++;
        this.log.error({ error: (err as Error).message }, "Agent: convergence failed");
        this.retryLater("agent");
      }
      if (this.stopped) break;
      await bgp();
      // No speaker (off, not configured, or it failed to start): the daemon serves the socket.
      if (!this.bgp) await this.statusWithoutSpeaker();
      if (arrived !== undefined)
        this.opts.observe?.watchToApplied?.("pass", (performance.now() - arrived) / 1000);
      st.lastDurationMs = performance.now() - t0;
      st.lastAt = Date.now();
      this.passes++;
    }
  }

  /** Decoded records by the cache's KeyValue object (see decodeAll). */
  private readonly decoded = new WeakMap<KeyValue, unknown>();

  private retryLater(area: Area): void {
    setTimeout(() => this.changed([area]), this.opts.retryMs ?? 1000).unref?.();
  }

  /**
   * The records under prefix, decoded. Each stored version is decoded once: the cache keeps a
   * record's KeyValue object until the record changes, so a convergence re-decodes only what
   * changed since the last one (a bad record is tried, and logged, each time).
   */
  private decodeAll<T>(prefix: string, decode: (kv: KeyValue) => T): T[] {
    const out: T[] = [];
    for (const kv of this.cache?.values(prefix) ?? []) {
      const seen = this.decoded.get(kv);
      if (seen !== undefined) {
        out.push(seen as T);
        continue;
      }
      try {
        const value = decode(kv);
        this.decoded.set(kv, value);
        out.push(value);
      } catch (err) {
        this.log.warn({ key: kv.key, error: (err as Error).message }, "Skipping a bad record");
      }
    }
    return out;
  }

  /** The agent's options with the fabric and links the last pass read (the fast path's). */
  private overlayOptions() {
    return {
      ...this.opts.agent,
      fabric: this.fabric,
      ...(this.hostLinks ? { hostLinks: this.hostLinks } : {}),
    };
  }

  /** What the overlay is rendered from, as last seen, decoded (the fast path's part). */
  private overlaySnapshot(): NodeSnapshot {
    const p = this.prefixes;
    const res = <T>(prefix: string) => this.decodeAll(prefix, (kv) => decodeResource(kv) as T);
    return {
      // The MTUs (vxlanMTU, mtuIfacePattern, ...) come from FelixConfiguration.
      felixConfigurations: res(p.felixconfigs),
      nodes: res<Node>(p.nodes),
      workloadEndpoints: res<WorkloadEndpoint>(p.weps),
      pools: res(p.pools),
      affinities: this.decodeAll(p.affinities, (kv) => decodeAffinity(kv.key, kv.value)),
    };
  }

  /** The resources as last seen, decoded. */
  snapshot(): BgpSnapshot {
    const p = this.prefixes;
    const res = <T>(prefix: string) => this.decodeAll(prefix, (kv) => decodeResource(kv) as T);
    return {
      nodes: res<Node>(p.nodes),
      workloadEndpoints: res<WorkloadEndpoint>(p.weps),
      pools: res(p.pools),
      bgpConfigurations: res(p.bgpconfigs),
      bgpPeers: res(p.bgppeers),
      bgpFilters: res<BGPFilter>(p.bgpfilters),
      affinities: this.decodeAll(p.affinities, (kv) => decodeAffinity(kv.key, kv.value)),
      networkPolicies: res<NetworkPolicy>(p.netpols),
      globalNetworkPolicies: res<GlobalNetworkPolicy>(p.gnps),
      k8sNetworkPolicies: res<K8sNetworkPolicy>(p.knps),
      tiers: res<Tier>(p.tiers),
      networkSets: [...res<NetworkSetResource>(p.gnsets), ...res<NetworkSetResource>(p.nsets)],
      hostEndpoints: res<HostEndpoint>(p.heps),
      profiles: res(p.profiles),
      felixConfigurations: res(p.felixconfigs),
      services: res<K8sService>(p.services),
      endpointSlices: res<K8sEndpointSlice>(p.epslices),
    };
  }

  /**
   * Brings this node's tunnel addresses to what the pools need (IPAM and the Node, only when
   * the plan from the cached Node says something must change); the snapshot gets the new Node.
   * A failure (a pool with no free address) is logged and retried, the rest converges.
   */
  private async convergeTunnels(snap: BgpSnapshot): Promise<void> {
    const name = this.opts.nodename;
    const me = snap.nodes.find((n) => n.metadata.name === name);
    if (!me || planTunnels(snap.pools, me).every((s) => s.op === "keep")) return;
    try {
      const updated = await ensureTunnelAddresses(this.store, name, snap.pools, this.ipam);
      if (!updated) return;
      snap.nodes = snap.nodes.map((n) => (n.metadata.name === name ? updated : n));
      const s = updated.spec;
      this.log.info(
        {
          ipv4IPIPTunnelAddr: s.bgp?.ipv4IPIPTunnelAddr,
          ipv4VXLANTunnelAddr: s.ipv4VXLANTunnelAddr,
          vxlanTunnelMACAddr: s.vxlanTunnelMACAddr,
          ipv6VXLANTunnelAddr: s.ipv6VXLANTunnelAddr,
          vxlanTunnelMACAddrV6: s.vxlanTunnelMACAddrV6,
          wireguardInterfaceIPv4Address: s.wireguard?.interfaceIPv4Address,
          wireguardInterfaceIPv6Address: s.wireguard?.interfaceIPv6Address,
        },
        "Tunnel addresses updated",
      );
    } catch (err) {
      this.log.warn({ error: (err as Error).message }, "Tunnel addresses: not assigned; retrying");
      this.retryLater("agent");
    }
  }

  /**
   * WireGuard (src/node/wireguard_node.ts): its device's MTU when on. A failure is logged and
   * retried; the rest of the pass stands.
   */
  private async convergeWireguard(snap: BgpSnapshot): Promise<number | undefined> {
    this.wireguard ??= new WireguardAgent({
      store: this.store,
      nodename: this.opts.nodename,
      ...(this.opts.netns ? { netns: this.opts.netns } : {}),
      run: spawnRunner,
      stateDir: dirname(this.opts.mtuFile ?? "/var/lib/ocelot/mtu"),
    });
    this.wireguardRetryPending = false;
    try {
      const r = await this.wireguard.converge(snap, {
        fabric: this.fabric,
        ...(this.hostLinks ? { hostLinks: this.hostLinks } : {}),
        ...(this.opts.agent?.mtu !== undefined ? { mtu: this.opts.agent.mtu } : {}),
      });
      if (r.node) {
        const updated = r.node;
        snap.nodes = snap.nodes.map((n) =>
          n.metadata.name === updated.metadata.name ? updated : n,
        );
        this.log.info(
          {
            wireguardPublicKey: updated.status?.wireguardPublicKey ?? null,
            wireguardPublicKeyV6: updated.status?.wireguardPublicKeyV6 ?? null,
          },
          "WireGuard: public key published on the Node",
        );
      }
      if (r.changes.length > 0) this.log.info({ changes: r.changes }, "WireGuard: converged");
      const warnings = r.warnings.join("; ");
      if (warnings !== this.lastWireguardWarnings && r.warnings.length > 0)
        this.log.warn({ warnings: r.warnings }, "WireGuard: parts not applied");
      this.lastWireguardWarnings = warnings;
      this.lastWireguardError = "";
      // Host encryption's bootstrap: a pass a few seconds on routes the peers' host addresses
      // through the device once their handshakes completed (one such pass pending at a time).
      if (r.awaitingHandshake && !this.wireguardHandshakePending) {
        this.wireguardHandshakePending = true;
        setTimeout(() => {
          this.wireguardHandshakePending = false;
          this.changed(["agent"]);
        }, WIREGUARD_HANDSHAKE_RECHECK_MS).unref?.();
      }
      return r.mtu;
    } catch (err) {
      const error = (err as Error).message;
      if (error !== this.lastWireguardError)
        this.log.warn({ error }, "WireGuard: not converged; retrying");
      this.lastWireguardError = error;
      // One retry at a time (passes that fail meanwhile do not add more).
      if (!this.wireguardRetryPending) this.retryLater("agent");
      this.wireguardRetryPending = true;
      return undefined;
    }
  }

  /** The pods' MTU to the file the CNI plugin reads (when it changed). */
  private writeMtu(mtu: number): void {
    const file = this.opts.mtuFile;
    if (!file || mtu === this.lastMtu) return;
    try {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, `${mtu}\n`);
      this.lastMtu = mtu;
      this.log.info({ mtu, file }, "Pod MTU written");
    } catch (err) {
      this.log.warn({ file, error: (err as Error).message }, "Pod MTU: cannot write the file");
    }
  }

  /** FelixConfiguration logSeverityScreen: the daemon's log level, set when the value changes. */
  private applyFelixLogLevel(snap: BgpSnapshot): void {
    const level = felixSettingsOf(snap, this.opts.nodename).logLevel;
    if (level === undefined || level === this.lastFelixLogLevel) return;
    this.lastFelixLogLevel = level;
    const log = this.log as Log & { level?: string };
    if (typeof log.level !== "string") return;
    log.warn(
      { before: log.level, after: level },
      "Log level set by FelixConfiguration logSeverityScreen",
    );
    log.level = level;
  }

  private async convergeAgent(
    snap: BgpSnapshot,
    beforeRoutes?: () => Promise<void>,
  ): Promise<void> {
    await this.convergeTunnels(snap);
    const me = snap.nodes.find((n) => n.metadata.name === this.opts.nodename);
    const fabric = await readFabric(
      { netns: this.opts.netns, run: spawnRunner },
      { 4: me?.spec.bgp?.ipv4Address, 6: me?.spec.bgp?.ipv6Address },
    );
    this.fabric = fabric;
    // mtuIfacePattern: the host MTU from every link matching it (Felix's findHostMTU).
    const felixEnv = this.opts.agent?.felixEnv;
    this.hostLinks = felixSettingsOf(snap, this.opts.nodename, felixEnv).mtuIfacePattern
      ? await readHostLinks({ netns: this.opts.netns, run: spawnRunner })
      : undefined;
    // HostEndpoints by expectedIPs: the interface holding one (read only when some needs it).
    // Set before the read: an address change from here on runs another pass.
    this.hostInterfacesNeeded = needsHostInterfaces(snap, this.opts.nodename);
    const hostInterfaces = this.hostInterfacesNeeded
      ? await readHostInterfaces({ netns: this.opts.netns, run: spawnRunner })
      : undefined;
    this.applyFelixLogLevel(snap);
    const input = agentInput(snap, this.opts.nodename, {
      ...this.overlayOptions(),
      ...(hostInterfaces ? { hostInterfaces } : {}),
      // Policy's dispatch by set, opt-in (README, Not done yet: Policy at scale).
      ...(this.opts.dispatchBySet ? { dispatchBySet: true } : {}),
    });
    // Rendering throws on conflicting input (an address claimed twice): nothing is applied then.
    const desired = renderDataplane(input);
    this.overlayWanted = { state: desired.overlay, gen: ++this.overlayGen };
    let usedGen = 0;
    const overlayNow = () => {
      const w = this.overlayWanted as { state: OverlayState; gen: number };
      usedGen = w.gen;
      return w.state;
    };
    desired.warnings.push(...storedOnlyWarnings(snap, this.opts.nodename, this.overlayOptions()));
    const text = JSON.stringify(input);
    const same = text === this.lastAgentInput;
    const warnings = desired.warnings.join("; ");
    if (warnings !== this.lastAgentWarnings && desired.warnings.length > 0)
      this.log.warn(
        { warnings: desired.warnings },
        "Agent: parts of the configuration rendered differently than written",
      );
    this.lastAgentWarnings = warnings;
    this.stats.workloadEndpoints = input.workloads.length;
    this.stats.policies = input.policy?.policies.length ?? 0;
    this.stats.warnings = desired.warnings.length;
    // A family rendered last pass and not now (IPv6 after the last host endpoint without an
    // IPv6 pool) is cleaned up; on the first pass, any our chains left there from before.
    const families = desired.families.map((f) => f.family);
    const cleanupFamilies = (this.lastFamilies ?? [4, 6]).filter((f) => !families.includes(f));
    const felix = felixSettingsOf(snap, this.opts.nodename);
    this.applier.configure({
      refreshMs: felix.iptablesRefreshMs ?? DEFAULT_REFRESH_MS,
      routeRefreshMs: felix.routeRefreshMs ?? DEFAULT_REFRESH_MS,
    });
    // WireGuard before the main table's routes (a new block is in its table first).
    const wgMtu = await this.convergeWireguard(snap);
    const report = await this.applier.apply(desired, {
      netns: this.opts.netns,
      fib: this.agentFib as Fib,
      cleanupFamilies,
      ...(beforeRoutes ? { beforeRoutes } : {}),
      overlayNow,
    });
    this.armRefresh(
      Math.min(
        ...[felix.iptablesRefreshMs, felix.routeRefreshMs]
          .map((ms) => ms ?? DEFAULT_REFRESH_MS)
          .filter((ms) => ms > 0),
      ),
    );
    // What the fast path goes on from: this pass's overlay, unless the fast path moved on since.
    const prev = this.overlayApplied;
    if (!prev || usedGen >= prev.gen) this.overlayApplied = { ...report.overlay, gen: usedGen };
    else prev.present = report.overlay.present;
    this.writeMtu(Math.min(desired.overlay.podMtu, wgMtu ?? Number.POSITIVE_INFINITY));
    const failures = JSON.stringify(report.overlayFailures);
    if (failures !== this.lastOverlayFailures && report.overlayFailures.length > 0)
      for (const f of report.overlayFailures)
        this.log.warn(f, "Agent: overlay device not created (routes through it wait)");
    this.lastOverlayFailures = failures;
    this.lastAgentInput = text;
    this.lastFamilies = families;
    if (report.timings) {
      this.opts.observe?.iptables?.(report.timings.iptablesSeconds);
      this.opts.observe?.fibBatch?.("agent", report.timings.routesSeconds);
    }
    if (report.changes.length > 0 && same)
      this.opts.observe?.driftRepaired?.(report.changes.map(driftKind));
    if (report.changes.length > 0)
      this.log.info(
        {
          workloads: input.workloads.length,
          blocks: input.blocks,
          changes: report.changes,
          pass: report.mode,
          ...(report.why !== undefined ? { why: report.why } : {}),
        },
        same ? "Agent: kernel drift repaired" : "Agent: data plane converged",
      );
    if (report.missingIfaces.length > 0)
      this.log.info({ missing: report.missingIfaces }, "Agent: waiting for workload interfaces");
  }

  /**
   * FelixConfiguration iptablesRefreshInterval / routeRefreshInterval: an agent pass when none
   * ran for the shorter one (the applier makes it a full read-back, or a route dump), so others'
   * changes are repaired within it, not only at the periodic resync. Infinity (both 0): none.
   */
  private armRefresh(everyMs: number): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    if (!Number.isFinite(everyMs) || this.stopped) return;
    // A little after the interval, so that the applier finds it elapsed.
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      this.changed(["agent"]);
    }, everyMs + 10);
    this.refreshTimer.unref?.();
  }

  private async convergeBgp(snap: BgpSnapshot, fastSeq = this.bgpFastSeq): Promise<void> {
    this.localPeering = snap.bgpPeers.some((p) => (p.spec.localWorkloadSelector ?? "") !== "");
    if (fastSeq !== this.bgpFastSeq) {
      // The fast path announced a block after this snapshot was taken (the agent's part of the
      // pass ran between): rendering it would withdraw that block. The fast path asked for
      // another pass, which renders from a snapshot that has it.
      this.log.debug({}, "BGP: snapshot older than the fast path's announcement: the next pass");
      return;
    }
    const r = renderBgp(snap, this.opts.nodename, {
      statusSocket: this.opts.statusSocket ?? DEFAULT_STATUS_SOCKET,
      ...(this.opts.secretsDir !== undefined ? { secretsDir: this.opts.secretsDir } : {}),
      ...(this.opts.bgpCheckLink === false ? { checkLink: false } : {}),
      ...(this.opts.advertiseClusterIps
        ? { advertiseClusterIps: this.opts.advertiseClusterIps }
        : {}),
      ...(this.opts.routerId ? { routerId: this.opts.routerId } : {}),
      readSecret: (path) => readFileSync(path, "utf8"),
    });
    const warnings = r.warnings.join("; ");
    if (warnings !== this.lastWarnings && r.warnings.length > 0)
      this.log.warn({ warnings: r.warnings }, "BGP: parts of the configuration not applied");
    this.lastWarnings = warnings;
    if (r.config === undefined) {
      if (r.reason !== this.lastBgpReason)
        this.log.warn({ reason: r.reason }, "BGP: not running the speaker");
      this.lastBgpReason = r.reason;
      this.bgpOrigins = undefined;
      if (this.bgp) {
        await this.bgp.stop();
        this.bgp = undefined;
        await this.statusWithoutSpeaker();
      }
      return;
    }
    this.lastBgpReason = "";
    // The passwords' files read into the config (as bgpd's reload): a changed key (seen on the
    // periodic resync) resets its session; a file gone since the render fails this pass whole.
    const config = resolvePasswordFiles(r.config);
    this.peerKinds = r.peerKinds;
    this.bgpOwnHosts = ownAnnouncements(snap, this.opts.nodename);
    const origins: RenderedOwnBlocks = {
      own: nodeBlocks(snap.affinities, this.opts.nodename),
      exported: r.ownExported,
      originate: config.originate,
    };
    if (!this.bgp) {
      // No speaker is started by a pass that a stop overtook.
      if (this.stopped) return;
      // The speaker serves the status socket from now on.
      await this.ownStatus?.close();
      this.ownStatus = undefined;
      this.bgp = await startBgp(config, {
        log: this.opts.bgpLog ?? this.log,
        netns: this.opts.netns,
        nodeStatus: () => this.nodeStatus(),
        extraStatus: this.statusCommands,
        ...(this.opts.mrtUpdates ? { mrtUpdates: this.opts.mrtUpdates } : {}),
        ...(this.opts.bmp ? { bmp: this.opts.bmp } : {}),
        onFibBatch: (sec) => this.opts.observe?.fibBatch?.("bgp", sec),
        onUpdateToKernel: (sec) => this.opts.observe?.updateToKernel?.(sec),
      });
      this.bgpOrigins = origins;
      this.lastReconfiguration = new Date().toISOString();
      this.log.info(summary(config), "BGP: speaker started");
      return;
    }
    const before = this.bgp.config;
    if (JSON.stringify(before) === JSON.stringify(config)) {
      this.bgpOrigins = origins;
      return;
    }
    this.bgpOrigins = undefined;
    await this.bgp.apply(config);
    this.bgpOrigins = origins;
    this.lastReconfiguration = new Date().toISOString();
    this.log.info({ ...summary(config), ...diffSummary(before, config) }, "BGP: reconfigured");
  }

  /**
   * Serves the status socket while the speaker does not run (networking backend vxlan or none, or
   * no BGP configuration yet): the node's own commands (node, log-level) answer; status and
   * routes answer with why there is no speaker. A failure is logged, not fatal.
   */
  private async statusWithoutSpeaker(): Promise<void> {
    if (this.bgp || this.ownStatus || this.stopped) return;
    const path = this.opts.statusSocket ?? DEFAULT_STATUS_SOCKET;
    const why = () =>
      this.opts.bgp === false
        ? "the BGP speaker does not run on this node (networking backend without BGP)"
        : `the BGP speaker does not run on this node (${this.lastBgpReason || "not started"})`;
    try {
      const own = await serveStatus(
        path,
        { status: () => ({ error: why() }) as never, routes: () => ({ error: why() }) as never },
        this.statusCommands,
      );
      // Stopped while it was being served: stop() has passed the socket by.
      if (this.stopped) {
        await own.close();
        return;
      }
      this.ownStatus = own;
      this.log.info({ socket: path }, "Status socket served without the BGP speaker");
    } catch (err) {
      this.log.warn({ socket: path, error: (err as Error).message }, "Status socket not served");
    }
  }

  /** Ready (/readyz) once the first convergence of each area it runs succeeded. */
  readiness(): { ok: boolean; reason?: string } {
    if (this.stopped) return { ok: false, reason: "stopping" };
    const down = this.datastoreDown;
    if (down)
      return {
        ok: false,
        reason: `datastore unreachable for ${Math.round((Date.now() - down.since) / 1000)} s (${down.error}); forwarding on the last known state`,
      };
    const c = this.stats.convergences;
    if (c.agent === 0) return { ok: false, reason: "the agent has not converged yet" };
    if (this.opts.bgp !== false && c.bgp === 0)
      return { ok: false, reason: "BGP has not converged yet" };
    return { ok: true };
  }

  /** What the status socket's "node" command answers: the node, its peers' kinds, its agent. */
  nodeInfo() {
    return {
      nodename: this.opts.nodename,
      peerKinds: this.peerKinds,
      ready: this.readiness(),
      agent: { ...this.stats, fib: this.agentFibStatus() ?? null },
    };
  }

  /** The node's name and addresses as registered, and how each was chosen (`ocelot status`). */
  nodeStatus(): NodeStatus {
    const bgp = this.registered?.spec.bgp;
    const src = this.opts.addressSources ?? {};
    return {
      name: this.opts.nodename,
      ...(bgp?.ipv4Address ? { ipv4Address: bgp.ipv4Address } : {}),
      ...(src.ipv4 ? { ipv4Source: src.ipv4 } : {}),
      ...(bgp?.ipv6Address ? { ipv6Address: bgp.ipv6Address } : {}),
      ...(src.ipv6 ? { ipv6Source: src.ipv6 } : {}),
    };
  }

  /** The speaker's status and its FIB's counters (undefined when it does not run). */
  bgpStatus(): ReturnType<BgpHost["status"]> | undefined {
    return this.bgp?.status();
  }

  /** The agent FIB's counters, when it is a KernelFib (undefined for a MemoryFib in tests). */
  agentFibStatus(): FibStatus | undefined {
    const f = this.agentFib as unknown as { status?: () => FibStatus } | undefined;
    return typeof f?.status === "function" ? f.status() : undefined;
  }

  /** The speaker's BMP station connection (undefined when the speaker or BMP is off). */
  get bmpClient(): BgpHost["bmp"] {
    return this.bgp?.bmp;
  }

  /** The speaker's current config (undefined when it does not run). */
  get bgpConfig(): BgpdConfig | undefined {
    return this.bgp?.config;
  }
}

function summary(c: BgpdConfig) {
  return {
    asn: c.asn,
    routerId: c.routerId,
    peers: c.peers.map((p) => `${p.address} AS${p.asn}`),
    originate: c.originate.map((o) => o.prefix),
  };
}

function diffSummary(a: BgpdConfig, b: BgpdConfig) {
  const pa = new Set(a.peers.map((p) => p.address));
  const pb = new Set(b.peers.map((p) => p.address));
  const oa = new Set(a.originate.map((o) => o.prefix));
  const ob = new Set(b.originate.map((o) => o.prefix));
  return {
    peersAdded: [...pb].filter((x) => !pa.has(x)),
    peersRemoved: [...pa].filter((x) => !pb.has(x)),
    originateAdded: [...ob].filter((x) => !oa.has(x)),
    originateRemoved: [...oa].filter((x) => !ob.has(x)),
  };
}

/** The agent's KernelFib: protocol 202, watching (puts back what others delete), with a hold. */
async function openKernelAgentFib(
  netns: string | undefined,
  log: Log,
  onRestored?: (count: number) => void,
  onSwept?: (count: number) => void,
  onAddress?: (address: string, added: boolean) => void,
) {
  const { KernelFib } = await import("../fib/kernel_fib.js");
  return KernelFib.open({
    ...(netns ? { netns } : {}),
    protocols: [RTPROT_OCELOT_AGENT],
    // A restart keeps the pods' routes until the first convergence set them again.
    gracefulHoldMs: 60_000,
    // The CNI plugin adds a new pod's route before it writes the WorkloadEndpoint: a resync in
    // between must not take it away.
    unwantedGraceMs: 30_000,
    onEvent: (e) => {
      if (e.kind === "restored") {
        log.info({ count: e.count }, "Agent: routes put back");
        onRestored?.(e.count);
      } else if (e.kind === "resync" && e.removed > 0) {
        // Routes of protocol 202 nobody set, unwanted past the grace: someone else's, swept.
        log.info({ count: e.removed }, "Agent: routes of ours nobody set swept");
        onSwept?.(e.removed);
      } else if (e.kind === "address") onAddress?.(e.address, e.added);
      else if (e.kind === "failure") log.error({ failure: e.failure }, "Agent: route failed");
      else log.debug({ fib: e }, "Agent FIB event");
    },
  });
}

/**
 * The kind of one agent change line ("route 10.0.0.1/32 unicast added" -> "route",
 * "ip6tables-nft filter: chain ocl-fw-x missing" -> "iptables"), for the drift counter.
 */
export function driftKind(change: string): string {
  const word = change.split(" ")[0] ?? "";
  return /^ip6?tables/.test(word) ? "iptables" : word;
}
