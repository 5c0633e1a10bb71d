// The speaker's core: one owner of BGP state that turns events into actions and never sees a
// socket, a timer or the FIB (RFC 4271 §9 route processing, RFC 4724 §4.2 helper mode). It owns
// the RIB, each peer's sessions and protocol state, graceful restart (RFC 4724 helper and
// restarting speaker with its selection deferral, RFC 8538 N bit and Hard Reset; RFC 9494
// long-lived graceful restart as helper, per family), UPDATE decoding
// into the RIB, export encoding to update groups, the drain into FIB batches with its
// back-pressure, and the peer diff of a reconfiguration. Not: carrying actions out, the
// listener and its TCP-MD5 keys (runtime.ts), status views (status.ts).
import { RT_TABLE_MAIN } from "../../fib/types.js";
import { type Log, silentLog } from "../../lib/log.js";
import {
  type BgpdConfig,
  type Family as ConfigFamily,
  GRACEFUL_RESTART_DEFAULTS,
  impact,
  type PeerConfig,
  peerFamilies,
} from "../config.js";
import { ipv4Number } from "../fsm/fsm.js";
import {
  CeaseSubcode,
  type DownReason,
  ErrorCode,
  type Family,
  type NotificationInfo,
  type PeerSettings,
} from "../fsm/types.js";
import { parseCommunityList } from "../policy/communities.js";
import { peerPolicies } from "../policy/defaults.js";
import type { BgpFilterRule, NamedFilter } from "../policy/filter.js";
import { ownershipDelta, withOwnership } from "../policy/ownership.js";
import type { PrefixList } from "../rib/prefix.js";
import { type AdjOutAnnounce, type AdjOutBatch, type FibBatch, Rib } from "../rib/rib.js";
import { Afi, RouteRefreshSubtype, Safi } from "../wire/constants.js";
import { encodeRouteRefresh } from "../wire/message.js";
import { forEachIpv4Prefix, forEachIpv6Prefix } from "../wire/nlri.js";
import {
  type Capability,
  type FamilyKey,
  Ipv4Unicast,
  Ipv6Unicast,
  NotificationError,
  Rfc7606Action,
  type RouteRefreshMessage,
  type SessionOptions,
  type UpdateMessage,
} from "../wire/types.js";
import { decodeUpdate, encodeEndOfRib } from "../wire/update.js";
import type { AttrBridge } from "./attrs.js";
import type { SpeakerAction, SpeakerEvent } from "./events.js";
import { encodeBatch, encodeTextWithdrawals, optionsKey } from "./export.js";
import { PeerSession, type SessionIo } from "./session.js";

/** What the core is given: no I/O, only values and pure functions. */
export interface CoreDeps<A> {
  bridge: AttrBridge<A>;
  /** Wall time in ms (status uptimes); a fake clock in replay tests. */
  now(): number;
  /** Uniform in [0, 1): the connect-retry jitter (session.ts); absent: none (replay tests). */
  random?: () => number;
  /** Whether a FIB is attached (fib actions are emitted only then). */
  fib: boolean;
  /** Our addresses on the interface that reaches a peer (next hop self), when it is direct. */
  localAddressesToward(peer: string): { v4?: string; v6?: string };
  log?: Log;
  /** Sees each UPDATE received, as framed (header included), before decoding (MRT dumps). */
  onUpdateReceived?: (peer: PeerConfig, msg: Uint8Array, fourOctetAs: boolean) => void;
}

/** One configured peer as the core keeps it. */
export interface PeerEntry {
  cfg: PeerConfig;
  session: PeerSession;
  ribId: string;
  /** The initial Adj-RIB-Out dump was sent: later group batches go to it. */
  synced: boolean;
  eorReceived: Set<FamilyKey>;
  lastError: { kind: string; code?: number; subcode?: number; message?: string } | null;
  /**
   * RFC 4724 / RFC 9494 receiving speaker: the families whose paths are stale (the peer is
   * restarting), each with the timer that bounds it: the peer's RestartTimer while it is down,
   * then the family's own LongLivedStaleTimer where LLGR was negotiated for it; the peer's
   * StaleTimer once it is back, until the family's End-of-RIB.
   */
  staleFams: Map<Family, StalePhase>;
  /** Families of the last Established session. */
  lastFamilies: Family[];
  /** Removed from the configuration: its session's last callbacks are ignored. */
  removed: boolean;
  /** Our addresses toward the peer (next hop self), as chosen when it was added. */
  nextHopSelfV4?: string;
  nextHopSelfV6?: string;
  /** Dropped by an outside signal (BFD Down): its routes go at once, no graceful restart. */
  dropping: boolean;
  /** A connect attempt to it failed: it does not hold our selection deferral (RFC 4724 §4.1). */
  connectFailed: boolean;
  /** The last configuration change that reset this peer's session, and when (ms). */
  lastReset?: { field: string; at: number };
  /**
   * Why the session is held down (not connecting, refusing the peer): by BFD, by max-prefix, by
   * the link to a directly connected peer being down (link_watch.ts).
   */
  held: { bfd: boolean; maxPrefix: boolean; link: boolean };
  /** Families whose max-prefix warning was logged in this session. */
  maxPrefixWarned: Set<ConfigFamily>;
  /** RFC 7313: families between the peer's BoRR and EoRR (their old paths are stale). */
  refreshing: Set<4 | 6>;
}

/** The helper timer a stale family of a peer is bounded by (see PeerEntry.staleFams). */
type StalePhase = "RestartTimer" | "StaleTimer" | "LongLivedStaleTimer";

/** Whether any hold keeps the peer's session down. */
function isHeld(e: PeerEntry): boolean {
  return e.held.bfd || e.held.maxPrefix || e.held.link;
}

/** Changes drained from the RIB per step (FIB batch and Adj-RIB-Out encodings). */
export const FIB_BATCH = 50_000;
/** FIB batches in flight before the core stops reading from peers. */
export const MAX_FIB_IN_FLIGHT = 4;

function splitRules(rules: readonly BgpFilterRule[] | undefined): {
  v4: BgpFilterRule[];
  v6: BgpFilterRule[];
} {
  const v4: BgpFilterRule[] = [];
  const v6: BgpFilterRule[] = [];
  for (const r of rules ?? []) {
    if (r.cidr === undefined || !r.cidr.includes(":")) v4.push(r);
    if (r.cidr === undefined || r.cidr.includes(":")) v6.push(r);
  }
  return { v4, v6 };
}

/**
 * The peer's import/export policies: its filters (on import the guard first), then the DESIGN §7
 * defaults.
 */
/**
 * Calico's normal route priority per family when the config asks for route priorities
 * (fib.metricFromPriority: the family's metric; IPv6's 0 is the kernel's 1024), else undefined.
 */
export function routePriorityOf(cfg: BgpdConfig): { v4: number; v6: number } | undefined {
  if (!cfg.fib.metricFromPriority) return undefined;
  return { v4: cfg.fib.metricV4 ?? 0, v6: cfg.fib.metricV6 || 1024 };
}

export function policiesFor(p: PeerConfig, localAs: number, priority?: { v4: number; v6: number }) {
  const imp = splitRules([
    ...((p.importGuard?.rules ?? []) as BgpFilterRule[]),
    ...((p.importFilter?.rules ?? []) as BgpFilterRule[]),
  ]);
  const exp = splitRules(p.exportFilter?.rules as BgpFilterRule[] | undefined);
  const filters: NamedFilter[] = [
    {
      name: `peer ${p.address}`,
      spec: { importV4: imp.v4, importV6: imp.v6, exportV4: exp.v4, exportV6: exp.v6 },
    },
  ];
  const pol = peerPolicies({
    external: p.asn !== localAs,
    pools: [],
    filters,
    ...(priority ? { defaultPriority: priority.v4, defaultPriorityV6: priority.v6 } : {}),
  });
  // Ownership before every rule: no filter lets a prefix the peer does not own back in.
  if (p.importOwnership) pol.importPolicy = withOwnership(p.importOwnership, pol.importPolicy);
  return pol;
}

/**
 * No import ownership, import guard, import filter or export filter rule: the policies are the
 * defaults alone.
 */
const hasNoRules = (p: PeerConfig) =>
  p.importOwnership === undefined &&
  !p.importGuard?.rules?.length &&
  !p.importFilter?.rules?.length &&
  !p.exportFilter?.rules?.length;

export type PeerPolicies = ReturnType<typeof policiesFor>;

/**
 * A peer's policies, shared through `plain` (by session type: eBGP or not) when it has no filter
 * rules: the same for all such peers, so one pair serves them all (a reflector's 1,000 clients
 * built ~2 KB of closures, typed arrays and keys each). A peer with rules gets its own (its
 * filter carries its name).
 */
export function sharedPolicies(
  plain: Map<string, PeerPolicies>,
  p: PeerConfig,
  localAs: number,
  priority?: { v4: number; v6: number },
): PeerPolicies {
  if (!hasNoRules(p)) return policiesFor(p, localAs, priority);
  // The policies depend on the session type and the normal route priorities only.
  const key = `${p.asn !== localAs}|${priority?.v4 ?? ""}|${priority?.v6 ?? ""}`;
  let pol = plain.get(key);
  if (!pol) {
    pol = policiesFor(p, localAs, priority);
    plain.set(key, pol);
  }
  return pol;
}

export class SpeakerCore<A> {
  config: BgpdConfig;
  readonly rib: Rib<A>;
  readonly peers = new Map<string, PeerEntry>();
  /** The policies of peers without filter rules, by session type (sharedPolicies). */
  private readonly plainPolicies = new Map<string, PeerPolicies>();
  /** How every peer's session reaches the world: one object for all of them. */
  private readonly sessionIo: SessionIo;
  private readonly log: Log;
  private out: SpeakerAction[] = [];
  private connSeq = 0;
  private stopped = false;
  private flushRequested = false;
  private fibInFlight = 0;
  private readingPaused = false;
  private converged = false;
  /**
   * RFC 4724 §4.1: we restarted (our routes were in the kernel at start). Our OPENs carry the R
   * bit and the first updates to peers wait for their End-of-RIB (or the deferral timer).
   */
  private restarting = false;

  constructor(
    config: BgpdConfig,
    private readonly deps: CoreDeps<A>,
  ) {
    this.config = config;
    this.log = deps.log ?? silentLog;
    this.sessionIo = {
      emit: (a) => this.out.push(a),
      newConn: () => ++this.connSeq,
      now: () => this.deps.now(),
      ...(deps.random ? { random: deps.random } : {}),
      log: this.log,
    };
    this.rib = new Rib<A>({
      localAs: config.asn,
      routerId: config.routerId,
      ...(config.clusterId || config.peers.some((p) => p.routeReflectorClient)
        ? { clusterId: config.clusterId ?? config.routerId }
        : {}),
      adapter: deps.bridge.adapter,
      ...(config.fib.metricFromPriority ? { routePriority: routePriorityOf(config) } : {}),
    });
    this.rib.setFibExclude(config.fib.exclude ?? []);
  }

  /** One event in, the actions it causes out (in the order they must be carried out). */
  handle(ev: SpeakerEvent): SpeakerAction[] {
    const out: SpeakerAction[] = [];
    this.out = out;
    this.dispatch(ev);
    // While the FIB is at its limit, reading is paused and fibDone asks for the next flush: a
    // flush asked for after every event meanwhile would spin the event loop (setImmediate, a
    // flush that does nothing, again) while the kernel works on the batches.
    if (this.rib.pending > 0 && !(this.readingPaused && this.fibInFlight >= MAX_FIB_IN_FLIGHT))
      this.requestFlush();
    this.checkConverged();
    this.out = [];
    return out;
  }

  /** No RIB change waits to be drained and the FIB acknowledged every batch. */
  get idle(): boolean {
    return this.rib.pending === 0 && this.fibInFlight === 0 && !this.flushRequested;
  }

  /** Reading from peers is paused because the FIB is behind (fibDone resumes it). */
  get readingHeld(): boolean {
    return this.readingPaused;
  }

  get fibBatchesInFlight(): number {
    return this.fibInFlight;
  }

  private dispatch(ev: SpeakerEvent): void {
    switch (ev.kind) {
      case "start":
        this.restarting = (ev.restarting ?? false) && this.grConfig().enabled;
        if (this.restarting) {
          this.out.push({
            kind: "startTimer",
            timer: DEFERRAL_TIMER,
            ms: this.grConfig().restartTime * 1000,
          });
          this.log.info(
            { deferralSeconds: this.grConfig().restartTime },
            "Restarted (graceful restart): updates to peers wait for their End-of-RIB",
          );
        }
        this.originateAll(this.config);
        for (const p of this.config.peers) this.addPeer(p);
        return;
      case "stop":
        // Sessions down first: their routes leave the RIB, and the FIB gets batch removals. With
        // the N bit, a plain Cease would have the peers keep our routes: Hard Reset instead.
        for (const e of this.peers.values())
          e.session.stop(this.ceaseFor(e, CeaseSubcode.AdministrativeShutdown));
        for (const o of this.config.originate) this.rib.withdrawOrigin(o.prefix);
        this.drainAll();
        this.stopped = true;
        return;
      case "reconfigure":
        this.reconfigure(ev.config);
        return;
      case "flush":
        this.flushRequested = false;
        this.flush();
        return;
      case "fibDone":
        this.fibInFlight--;
        // Resume reading once the FIB is under its limit again.
        if (this.fibInFlight < MAX_FIB_IN_FLIGHT) this.setReading(true);
        return;
      case "timerExpired": {
        if (ev.timer.name === "SelectionDeferralTimer") {
          if (this.restarting) this.endDeferral("deferral timer expired");
          return;
        }
        const e = this.peers.get(ev.timer.peer);
        if (!e) return;
        if (ev.timer.name === "RestartTimer") this.restartTimeOver(e);
        else if (ev.timer.name === "StaleTimer") {
          for (const [f, phase] of [...e.staleFams])
            if (phase === "StaleTimer") this.endFamily(e, f, "StaleTimer expired", true);
        } else if (ev.timer.name === "LongLivedStaleTimer") {
          const f = ev.timer.family;
          if (f && e.staleFams.get(f) === "LongLivedStaleTimer")
            this.endFamily(e, f, "LongLivedStaleTimer expired", true);
        } else if (ev.timer.name === "MaxPrefixRestart") {
          this.release(e, "maxPrefix", "max-prefix restart timer expired");
        } else e.session.timerExpired(ev.timer.link, ev.timer.name);
        return;
      }
      case "connected":
        this.peerOr(ev.peer, ev.conn)?.session.connected(ev.conn);
        return;
      case "connectFailed": {
        const e = this.peers.get(ev.peer);
        if (!e) return;
        e.connectFailed = true;
        e.session.connectFailed(ev.conn, ev.message);
        if (this.restarting) this.maybeEndDeferral();
        return;
      }
      case "accepted":
        this.peerOr(ev.peer, ev.conn)?.session.accept(ev.conn);
        return;
      case "received":
        this.peers.get(ev.peer)?.session.received(ev.conn, ev.bytes);
        return;
      case "closed":
        this.peers.get(ev.peer)?.session.closed(ev.conn, ev.message);
        return;
      case "peerDown": {
        const e = this.peers.get(ev.peer);
        if (!e) return;
        this.log.info({ peer: ev.peer, reason: ev.reason }, "Peer down by an outside signal");
        // The forwarding path is gone (RFC 5882 §3.2): no graceful-restart help.
        e.dropping = true;
        e.session.fail(ev.reason);
        e.dropping = false;
        return;
      }
      case "peerHold": {
        const e = this.peers.get(ev.peer);
        if (!e) return;
        const by = ev.by ?? "bfd";
        if (ev.held) this.hold(e, by, ev.reason);
        else this.release(e, by, ev.reason);
        return;
      }
    }
  }

  /**
   * Holds a peer's session down: dropped now (its routes at once, no graceful-restart help) and
   * stopped, so it neither connects nor accepts until every hold is released.
   */
  private hold(e: PeerEntry, why: keyof PeerEntry["held"], reason: string): void {
    if (e.held[why]) return;
    const was = isHeld(e);
    e.held[why] = true;
    if (was) return;
    this.log.warn({ peer: e.cfg.address, reason }, "BGP session held down");
    if (why === "link") {
      // The link is gone: no NOTIFICATION can cross it. Close, Idle, routes withdrawn at once (no
      // graceful-restart help: the forwarding path failed), as BIRD's `check link` and FRR's
      // fast external failover do.
      e.dropping = true;
      e.session.drop(reason);
      e.dropping = false;
      return;
    }
    // Cease/10 (RFC 9384), as a Hard Reset with the N bit: no graceful-restart help on either side.
    this.ceaseNow(e, CeaseSubcode.BfdDown);
    e.session.stop();
  }

  private release(e: PeerEntry, why: keyof PeerEntry["held"], reason: string): void {
    if (!e.held[why]) return;
    e.held[why] = false;
    if (isHeld(e) || e.removed) return;
    this.log.info({ peer: e.cfg.address, reason }, "BGP session no longer held down");
    e.session.start();
  }

  /** The peer, or (when it is not configured) a destroy of the connection. */
  private peerOr(peer: string, conn: number): PeerEntry | undefined {
    const e = this.peers.get(peer);
    if (!e) this.out.push({ kind: "close", peer, conn, how: "destroy" });
    return e;
  }

  // ---- peers ---------------------------------------------------------------------------------

  private grConfig() {
    return this.config.gracefulRestart ?? GRACEFUL_RESTART_DEFAULTS;
  }

  private settingsFor(p: PeerConfig): PeerSettings {
    const gr = this.grConfig();
    return {
      ...(gr.enabled
        ? {
            gracefulRestart: {
              restartTime: p.gracefulRestartTime ?? gr.restartTime,
              restarting: this.restarting,
              // Routes we installed outlive us: the kernel keeps them (the FIB's hold).
              forwarding: true,
            },
          }
        : {}),
      ...(p.longLivedStaleTime !== undefined
        ? { longLivedGracefulRestart: { staleTime: p.longLivedStaleTime, forwarding: true } }
        : {}),
      localAs: this.config.asn,
      peerAs: p.asn,
      routerId: ipv4Number(this.config.routerId),
      holdTime: p.holdTime,
      startupHoldMs: p.startupHoldTime * 1000,
      connectRetryTime: p.connectRetryTime,
      passive: p.passive,
      families: peerFamilies(p),
      requiredFamilies: p.requiredFamilies,
      idleHoldMs: 1000,
      maxIdleHoldMs: 60_000,
      ...(p.addPath
        ? {
            addPath: {
              receive: p.addPath.receive,
              send: p.addPath.send > 0,
              ...(p.addPath.families ? { families: p.addPath.families } : {}),
            },
          }
        : {}),
      ...(p.extendedMessage === false ? { extendedMessage: false } : {}),
      // Unnumbered peers carry IPv4 with IPv6 next hops unless told not to (RFC 8950).
      ...((p.extendedNextHop ?? p.interface !== undefined) ? { extendedNextHop: true } : {}),
    };
  }

  private policiesOf(p: PeerConfig): PeerPolicies {
    return sharedPolicies(this.plainPolicies, p, this.config.asn, routePriorityOf(this.config));
  }

  private addPeer(p: PeerConfig, lastReset?: PeerEntry["lastReset"]): void {
    const near = this.deps.localAddressesToward(p.address);
    const src = p.sourceAddress;
    const listen = this.config.listen.address;
    const pick4 = [src, near.v4, listen, this.config.routerId].find(
      (a) => a && !a.includes(":") && a !== "0.0.0.0",
    );
    const pick6 = [src, near.v6, listen].find((a) => a?.includes(":") && a !== "::");
    const pol = this.policiesOf(p);
    this.rib.addPeer({
      id: p.address,
      address: p.address,
      asn: p.asn,
      routeReflectorClient: p.routeReflectorClient,
      allowOwnAs: p.allowOwnAs,
      families: peerFamilies(p),
      importPolicy: pol.importPolicy,
      exportPolicy: pol.exportPolicy,
      llgrStaleToNonLlgr: p.llgrPartialDeployment ?? false,
      ...(pick4 ? { nextHopSelfV4: pick4 } : {}),
      ...(pick6 ? { nextHopSelfV6: pick6 } : {}),
    });
    const entry: PeerEntry = {
      cfg: p,
      session: undefined as unknown as PeerSession,
      ribId: p.address,
      synced: false,
      eorReceived: new Set(),
      lastError: null,
      staleFams: new Map(),
      lastFamilies: [],
      removed: false,
      ...(pick4 ? { nextHopSelfV4: pick4 } : {}),
      ...(pick6 ? { nextHopSelfV6: pick6 } : {}),
      dropping: false,
      connectFailed: false,
      ...(lastReset ? { lastReset } : {}),
      held: { bfd: false, maxPrefix: false, link: false },
      maxPrefixWarned: new Set(),
      refreshing: new Set(),
    };
    entry.session = new PeerSession(
      {
        address: p.address,
        port: p.port,
        ...(p.sourceAddress ? { sourceAddress: p.sourceAddress } : {}),
        settings: this.settingsFor(p),
      },
      this.sessionIo,
      {
        onEstablished: () => this.onEstablished(entry),
        onUpdate: (_s, msg) => this.onUpdate(entry, msg),
        onRouteRefresh: (_s, rr) => this.onRouteRefresh(entry, rr),
        onDown: (_s, reason, wasEstablished) => this.onDown(entry, reason, wasEstablished),
      },
    );
    this.peers.set(p.address, entry);
    entry.session.start();
  }

  private removePeer(address: string, cease: number): void {
    const e = this.peers.get(address);
    if (!e) return;
    e.removed = true;
    this.stopHelperTimers(e);
    if (e.held.maxPrefix) this.out.push({ kind: "stopTimer", timer: maxPrefixTimer(address) });
    e.session.stop(this.ceaseFor(e, cease));
    this.rib.removePeer(e.ribId);
    this.peers.delete(address);
  }

  /** The diff part of SIGHUP: only sessions that must reset are reset. */
  private reconfigure(next: BgpdConfig): void {
    const d = impact(this.config, next);
    const old = this.config;
    this.config = next;
    for (const p of d.removed) this.removePeer(p.address, CeaseSubcode.PeerDeconfigured);
    for (const c of d.changed) {
      const cfg = next.peers.find((p) => p.address === c.address) as PeerConfig;
      if (c.impact === "reset") {
        this.log.info({ peer: c.address, field: c.field }, "Config change resets the session");
        const held = this.peers.get(c.address)?.held;
        this.removePeer(c.address, CeaseSubcode.OtherConfigurationChange);
        this.addPeer(cfg, { field: c.field ?? "unknown", at: this.deps.now() });
        // A BFD hold outlives the reset (the BFD session is the same); a max-prefix one does not.
        const e = this.peers.get(c.address);
        if (e && held?.bfd && cfg.bfd) this.hold(e, "bfd", "BFD session down");
        // So does a link hold (the link is still down).
        if (e && held?.link) this.hold(e, "link", "link still down");
      } else {
        if (c.impact === "refresh") {
          this.log.info(
            { peer: c.address, field: c.field },
            c.field === "importGuard" || c.field === "importOwnership"
              ? `Config change applied in place (${c.field === "importGuard" ? "import guard" : "import ownership"}: no ROUTE-REFRESH)`
              : "Config change applied by refresh",
          );
          this.refreshPeer(cfg);
        }
        const e = this.peers.get(c.address);
        if (!e) continue;
        if (
          e.held.maxPrefix &&
          JSON.stringify(e.cfg.maxPrefixes) !== JSON.stringify(cfg.maxPrefixes)
        ) {
          // New limits: the peer may try again now rather than at the end of its restart time.
          this.out.push({ kind: "stopTimer", timer: maxPrefixTimer(c.address) });
          this.release(e, "maxPrefix", "prefix limits changed");
        }
        e.cfg = cfg;
        // Local timers and passive mode apply from the next connection on.
        e.session.config.settings = this.settingsFor(cfg);
        if (!cfg.bfd) this.release(e, "bfd", "BFD removed from the peer");
        if (e.session.established) this.checkMaxPrefix(e);
      }
    }
    for (const p of d.added) this.addPeer(p);
    this.rib.setFibExclude(next.fib.exclude ?? []);
    const prio = routePriorityOf(next);
    const oldPrio = routePriorityOf(old);
    if (prio?.v4 !== oldPrio?.v4 || prio?.v6 !== oldPrio?.v6) {
      // New normal priorities: the default LOCAL_PREF, the kernel metrics of routes with a
      // priority of their own and the priority filters compare with all follow, in place.
      const synced = [...this.peers.values()].filter((e) => e.session.established && e.synced);
      const before = new Map(synced.map((e) => [e, this.advertisedSet(e)] as const));
      this.rib.setRoutePriority(prio);
      for (const e of this.peers.values()) {
        const pol = policiesFor(e.cfg, next.asn, prio);
        this.rib.updatePeer(e.ribId, {
          importPolicy: pol.importPolicy,
          exportPolicy: pol.exportPolicy,
        });
      }
      // As a filter change: settle, then send each peer what it gains and withdraw the rest.
      this.drainAll();
      for (const [e, b] of before) this.resync(e, b);
    }
    if (d.reexport) {
      for (const o of old.originate) this.rib.withdrawOrigin(o.prefix);
      this.originateAll(next);
    }
  }

  /** Applies filter / RR / allow-own-AS changes without a reset. */
  private refreshPeer(cfg: PeerConfig): void {
    const e = this.peers.get(cfg.address);
    if (!e) return;
    const old = e.cfg;
    e.cfg = cfg;
    const pol = this.policiesOf(cfg);
    const importChanged =
      JSON.stringify(old.importFilter) !== JSON.stringify(cfg.importFilter) ||
      old.allowOwnAs !== cfg.allowOwnAs;
    const ownershipChanged =
      JSON.stringify(old.importOwnership) !== JSON.stringify(cfg.importOwnership);
    const guardChanged = JSON.stringify(old.importGuard) !== JSON.stringify(cfg.importGuard);
    // An ownership change alone (a block claimed or released somewhere): only the prefixes it
    // gained or lost are re-evaluated, not the whole table (a ToR's million routes).
    const only =
      ownershipChanged && !importChanged && !guardChanged
        ? ownershipDelta(old.importOwnership, cfg.importOwnership)
        : undefined;
    const exportChanged =
      JSON.stringify(old.exportFilter) !== JSON.stringify(cfg.exportFilter) ||
      old.routeReflectorClient !== cfg.routeReflectorClient ||
      old.nextHopSelf !== cfg.nextHopSelf ||
      old.llgrPartialDeployment !== cfg.llgrPartialDeployment;
    const before = exportChanged ? this.advertisedSet(e) : undefined;
    // The Adj-RIB-In is kept (soft reconfiguration inbound): imports are re-evaluated in place,
    // and a changed export input moves the peer to its new update group.
    this.rib.updatePeer(e.ribId, {
      allowOwnAs: cfg.allowOwnAs,
      routeReflectorClient: cfg.routeReflectorClient,
      ...(importChanged || guardChanged || (ownershipChanged && only === undefined)
        ? { importPolicy: pol.importPolicy }
        : {}),
      ...(exportChanged ? { exportPolicy: pol.exportPolicy } : {}),
      llgrStaleToNonLlgr: cfg.llgrPartialDeployment ?? false,
    });
    if (only !== undefined) this.rib.setImportPolicyAt(e.ribId, pol.importPolicy, only);
    if (before && e.session.established && e.synced) {
      // Settle the change, then send the peer what it gains and withdraw what it loses.
      this.drainAll();
      this.resync(e, before);
    }
    // The guard and the ownership alone never ask the peer: re-evaluating the kept Adj-RIB-In
    // is exact.
    if (importChanged) this.requestRefresh(e);
  }

  /**
   * RFC 2918: asks the peer to send its routes again for each negotiated family. The new import
   * policy is already applied to the paths we hold (the Adj-RIB-In is kept whole); the refresh
   * replaces them with the peer's current ones, and with enhanced route refresh (RFC 7313) its
   * BoRR/EoRR let paths it no longer has be swept.
   */
  private requestRefresh(e: PeerEntry): void {
    const n = e.session.negotiated;
    if (!n || !e.session.established || !n.routeRefresh) return;
    for (const f of n.families) {
      const [afi, safi] =
        f === "ipv4-unicast" ? [Afi.Ipv4, Safi.Unicast] : [Afi.Ipv6, Safi.Unicast];
      e.session.send(encodeRouteRefresh({ afi, safi, subtype: RouteRefreshSubtype.Normal }));
    }
    this.log.info(
      { peer: e.cfg.address, families: n.families, enhanced: n.enhancedRouteRefresh },
      "Route refresh requested from the peer",
    );
  }

  private advertisedSet(e: PeerEntry): Set<string> {
    const s = new Set<string>();
    try {
      for (const a of this.rib.adjRibOut(e.ribId)) {
        for (const x of a.v4.toStrings()) s.add(x);
        for (const x of a.v6.toStrings()) s.add(x);
      }
    } catch {}
    return s;
  }

  /** Sends the peer's whole Adj-RIB-Out, withdrawing prefixes it had before but not now. */
  private resync(e: PeerEntry, before: Set<string>): void {
    const now = this.rib.adjRibOut(e.ribId);
    const after = new Set<string>();
    for (const a of now) {
      for (const x of a.v4.toStrings()) after.add(x);
      for (const x of a.v6.toStrings()) after.add(x);
    }
    const gone = [...before].filter((x) => !after.has(x));
    const opts = e.session.options;
    if (gone.length > 0 && opts)
      for (const m of encodeTextWithdrawals(gone, opts)) e.session.send(m);
    this.sendAnnounces(e, now);
  }

  // ---- session callbacks ---------------------------------------------------------------------

  private onDown(e: PeerEntry, reason: DownReason, wasEstablished: boolean): void {
    e.lastError = downText(reason);
    if (!wasEstablished) {
      if (this.restarting) this.maybeEndDeferral();
      return;
    }
    e.synced = false;
    e.eorReceived.clear();
    e.maxPrefixWarned.clear();
    e.refreshing.clear();
    if (!this.helpRestart(e, reason)) this.dropPaths(e);
    if (this.restarting) this.maybeEndDeferral();
  }

  /** RFC 8538 §2: both sides announced the N bit on the last session. */
  private nBit(e: PeerEntry): boolean {
    return (
      this.grConfig().enabled && grCapability(e.session.peerCapabilities)?.notification === true
    );
  }

  /**
   * The Cease to end a session for good: with the N bit, RFC 8538 §3's Hard Reset (the Cease
   * subcode it stands for inside), else the Cease itself.
   */
  private ceaseFor(e: PeerEntry, subcode: number, data?: Uint8Array): NotificationInfo {
    if (!e.session.established || !this.nBit(e))
      return data ? { code: ErrorCode.Cease, subcode, data } : { code: ErrorCode.Cease, subcode };
    return {
      code: ErrorCode.Cease,
      subcode: CeaseSubcode.HardReset,
      data: Uint8Array.from([ErrorCode.Cease, subcode, ...(data ?? [])]),
    };
  }

  /** Resets an Established session with a Cease (a Hard Reset with the N bit), routes gone now. */
  private ceaseNow(e: PeerEntry, subcode: number, data?: Uint8Array): void {
    if (!e.session.established) return;
    const n = this.ceaseFor(e, subcode, data);
    e.dropping = true;
    e.session.reset(n.code, n.subcode, n.data);
    e.dropping = false;
  }

  /**
   * Whether a session's end lets the peer restart gracefully: a TCP failure (RFC 4724 §4.2), or
   * with the N bit any NOTIFICATION or hold timer expiry but a Hard Reset (RFC 8538 §4).
   */
  private graceful(e: PeerEntry, reason: DownReason): boolean {
    if (reason.kind === "TcpConnectionFails") return true;
    if (!this.nBit(e)) return false;
    if (reason.kind === "HoldTimerExpired") return true;
    // A Cease we send is a decision to end the session (our Hard Reset covers it on the peer).
    if (reason.kind === "NotificationSent") return reason.code !== ErrorCode.Cease;
    if (reason.kind === "NotificationReceived")
      return !(reason.code === ErrorCode.Cease && reason.subcode === CeaseSubcode.HardReset);
    return false;
  }

  /**
   * RFC 4724 §4.2 and RFC 9494 §4.2, per family of the last session: the peer lost its session
   * gracefully. A family its graceful restart capability lists (restart time > 0) keeps its
   * paths, marked stale, for the peer's Restart Time; one only its LLGR capability lists (with a
   * stale time > 0) goes to the long-lived phase at once; the others' paths go now. False when
   * no family is kept (the caller drops the peer's paths).
   */
  private helpRestart(e: PeerEntry, reason: DownReason): boolean {
    if (this.stopped || e.removed || e.dropping || !this.graceful(e, reason)) return false;
    const gr = grCapability(e.session.peerCapabilities);
    const restartTime = gr?.restartTime ?? 0;
    const restart: Family[] = [];
    const longLived: Family[] = [];
    const dropped: Family[] = [];
    for (const f of e.lastFamilies) {
      if (gr && restartTime > 0 && grCovers(gr, f)) restart.push(f);
      else if (this.llgrTime(e, f) > 0) longLived.push(f);
      else dropped.push(f);
    }
    if (restart.length === 0 && longLived.length === 0) return false;
    // A session that drops again before its End-of-RIB starts over: its timers are replaced.
    this.stopHelperTimers(e);
    for (const f of dropped) {
      this.rib.markStale(e.ribId, famNumber(f));
      this.rib.sweepStale(e.ribId, famNumber(f));
    }
    for (const f of restart) {
      this.rib.markStale(e.ribId, famNumber(f));
      e.staleFams.set(f, "RestartTimer");
    }
    if (restart.length > 0) {
      this.out.push({
        kind: "startTimer",
        timer: helperTimer(e, "RestartTimer"),
        ms: restartTime * 1000,
      });
      this.log.info(
        {
          peer: e.cfg.address,
          families: restart,
          stalePaths: this.rib.peerCounts(e.ribId).stale,
          restartTime,
          ...(dropped.length > 0 ? { removedFamilies: dropped } : {}),
        },
        "Peer restarting (graceful restart): keeping its routes as stale",
      );
    }
    // RFC 9494 §4.2: a restart time of 0 (or a family GR leaves out) goes straight to the
    // long-lived phase.
    for (const f of longLived) {
      this.rib.markStale(e.ribId, famNumber(f));
      this.enterLongLived(e, f);
    }
    return true;
  }

  /**
   * RFC 9494 §4.2: the long-lived stale time the peer announced for the family, in seconds (0:
   * no LLGR for it). Both sides announced the capability on the last session (we do when
   * configured) and the peer's lists the family.
   */
  private llgrTime(e: PeerEntry, f: Family): number {
    if (e.cfg.longLivedStaleTime === undefined) return 0;
    const ll = llgrCapability(e.session.peerCapabilities);
    const [afi, safi] = afiSafi(f);
    return ll?.families.find((y) => y.afi === afi && y.safi === safi)?.staleTime ?? 0;
  }

  /** The peer's restart time is over: each of its families goes long-lived or its paths go. */
  private restartTimeOver(e: PeerEntry): void {
    for (const [f, phase] of [...e.staleFams]) {
      if (phase !== "RestartTimer") continue;
      if (this.llgrTime(e, f) > 0) this.enterLongLived(e, f);
      else this.endFamily(e, f, "RestartTimer expired", true);
    }
  }

  /**
   * RFC 9494 §4.2: the family's stale paths stay as LLGR_STALE (NO_LLGR ones go) for the
   * long-lived stale time the peer announced for it, on a timer of the family's own.
   */
  private enterLongLived(e: PeerEntry, f: Family): void {
    const t = this.llgrTime(e, f);
    const { kept, removed } = this.rib.markLongLivedStale(e.ribId, famNumber(f));
    e.staleFams.set(f, "LongLivedStaleTimer");
    this.out.push({
      kind: "startTimer",
      timer: helperTimer(e, "LongLivedStaleTimer", f),
      ms: t * 1000,
    });
    this.log.info(
      { peer: e.cfg.address, family: f, kept, removedNoLlgr: removed, longLivedStaleTime: t },
      "Peer restarting (long-lived graceful restart): keeping its routes as LLGR_STALE",
    );
  }

  /** Stops every helper timer of the peer and forgets its stale families (paths untouched). */
  private stopHelperTimers(e: PeerEntry): void {
    const peerWide = new Set<StalePhase>();
    for (const [f, phase] of e.staleFams) {
      if (phase === "LongLivedStaleTimer")
        this.out.push({ kind: "stopTimer", timer: helperTimer(e, phase, f) });
      else peerWide.add(phase);
    }
    for (const phase of peerWide)
      this.out.push({ kind: "stopTimer", timer: helperTimer(e, phase) });
    e.staleFams.clear();
  }

  /**
   * Ends helper mode for one family: its stale paths go, and the timer it alone held stops
   * (unless that timer is the one that just expired).
   */
  private endFamily(e: PeerEntry, f: Family, why: string, expired = false): void {
    const phase = e.staleFams.get(f);
    if (phase === undefined) return;
    e.staleFams.delete(f);
    if (!expired) {
      if (phase === "LongLivedStaleTimer")
        this.out.push({ kind: "stopTimer", timer: helperTimer(e, phase, f) });
      else if (![...e.staleFams.values()].includes(phase))
        this.out.push({ kind: "stopTimer", timer: helperTimer(e, phase) });
    }
    const n = this.rib.sweepStale(e.ribId, famNumber(f));
    this.log.info(
      { peer: e.cfg.address, family: f, removed: n, why },
      "Stale routes of a restarted peer removed",
    );
  }

  /**
   * RFC 4724 §4.1 selection deferral after our restart: over once every peer that can come up
   * is Established and, when it announced graceful restart, sent End-of-RIB for each family (a
   * peer refused or unreachable since our start does not hold it), or at the deferral timer.
   */
  private maybeEndDeferral(): void {
    for (const e of this.peers.values()) {
      const n = e.session.negotiated;
      if (!e.session.established || !n) {
        if (e.lastError === null && !e.connectFailed) return; // still connecting, first time
        continue;
      }
      // Only peers that announced graceful restart promise an End-of-RIB (RFC 4724 §4.1).
      if (!grCapability(e.session.peerCapabilities)) continue;
      for (const f of n.families) if (!e.eorReceived.has(familyCode(f))) return;
    }
    this.endDeferral("every peer sent End-of-RIB");
  }

  private endDeferral(why: string): void {
    this.restarting = false;
    this.out.push({ kind: "stopTimer", timer: DEFERRAL_TIMER });
    this.log.info({ why }, "Graceful restart: sending our routes to the peers");
    for (const e of this.peers.values()) {
      // Later OPENs no longer say we are restarting.
      const gr = e.session.config.settings.gracefulRestart;
      if (gr) gr.restarting = false;
      if (e.session.established && !e.synced) this.sync(e);
    }
  }

  /** A plain drop (no graceful restart): helper mode ends and every path of the peer goes. */
  private dropPaths(e: PeerEntry): void {
    this.stopHelperTimers(e);
    this.rib.peerDown(e.ribId);
  }

  private onEstablished(e: PeerEntry): void {
    const n = e.session.negotiated;
    if (!n || e.removed) return;
    this.rib.peerUp(e.ribId, n.peerId);
    e.lastFamilies = n.families;
    // RFC 7911: where ADD-PATH send was negotiated, the peer gets up to its limit of paths.
    const limit = e.cfg.addPath?.send ?? 0;
    const send = n.options.addPath.send;
    this.rib.updatePeer(e.ribId, {
      addPathSend: {
        v4: send.has(Ipv4Unicast) ? limit : 0,
        v6: send.has(Ipv6Unicast) ? limit : 0,
      },
      // RFC 9494 §4.5: LLGR_STALE paths go only to peers where both announced LLGR.
      llgr:
        e.cfg.longLivedStaleTime !== undefined &&
        n.families.length > 0 &&
        (e.session.peerCapabilities ?? []).some((c) => c.kind === "LongLivedGracefulRestart"),
      // RFC 8950: IPv4 routes go with our IPv6 address as next hop where both said so.
      ...(n.options.extendedNextHop && e.nextHopSelfV6
        ? { nextHopSelfV4: e.nextHopSelfV6 }
        : { nextHopSelfV4: e.nextHopSelfV4 }),
    });
    if (e.staleFams.size > 0) this.backFromRestart(e, n.families);
    if (this.restarting) {
      // §4.1: our first updates wait until every peer has sent its table.
      this.maybeEndDeferral();
      return;
    }
    this.sync(e);
  }

  /**
   * RFC 4724 §4.2 and RFC 9494 §4.2: the restarting peer is back. A stale family whose
   * forwarding state it kept (the F bit of its new GR capability for a family still in the
   * restart time, of its new LLGR capability for one in the long-lived phase) waits for its
   * End-of-RIB under the stale timer; any other stale family's paths go now.
   */
  private backFromRestart(e: PeerEntry, families: Family[]): void {
    const gr = grCapability(e.session.peerCapabilities);
    const ll =
      e.cfg.longLivedStaleTime !== undefined
        ? llgrCapability(e.session.peerCapabilities)
        : undefined;
    const phases = [...e.staleFams];
    let kept = false;
    this.stopHelperTimers(e);
    for (const [f, phase] of phases) {
      const forwarding =
        families.includes(f) &&
        (phase === "LongLivedStaleTimer"
          ? ll !== undefined && llgrCovers(ll, f, true)
          : gr !== undefined && grCovers(gr, f, true));
      e.staleFams.set(f, "StaleTimer");
      if (forwarding) kept = true;
      else this.endFamily(e, f, "no forwarding state after restart", true);
    }
    if (kept)
      this.out.push({
        kind: "startTimer",
        timer: helperTimer(e, "StaleTimer"),
        ms: this.grConfig().staleRoutesTime * 1000,
      });
  }

  /** The peer's whole Adj-RIB-Out, then End-of-RIB per family; later batches follow. */
  private sync(e: PeerEntry): void {
    const n = e.session.negotiated;
    if (!n) return;
    // Settle pending changes first, so the dump plus later batches are exactly the table.
    this.drainAll();
    this.sendAnnounces(e, this.rib.adjRibOut(e.ribId));
    for (const f of n.families) e.session.send(encodeEndOfRib(familyCode(f)));
    e.synced = true;
  }

  private onUpdate(e: PeerEntry, msg: Uint8Array): void {
    const opts = e.session.options;
    if (!opts || e.removed) return;
    this.deps.onUpdateReceived?.(e.cfg, msg, opts.fourOctetAs);
    let u: UpdateMessage;
    try {
      u = decodeUpdate(msg, opts);
    } catch (err) {
      if (!(err instanceof NotificationError)) throw err;
      this.log.warn({ peer: e.cfg.address, error: err.message }, "UPDATE error resets the session");
      e.session.reset(err.code, err.subcode, err.data);
      return;
    }
    if (u.errors.length > 0) {
      this.log.warn(
        { peer: e.cfg.address, action: u.action, errors: u.errors.map((x) => x.reason) },
        "Malformed attributes handled per RFC 7606",
      );
    }
    if (u.endOfRib !== null) {
      e.eorReceived.add(u.endOfRib);
      // RFC 4724 §4.2: the family's End-of-RIB ends its stale paths (the others wait theirs).
      const f = familyOf(u.endOfRib);
      if (f) this.endFamily(e, f, "End-of-RIB");
      if (this.restarting) this.maybeEndDeferral();
      return;
    }
    this.applyUpdate(e, u);
    if (e.cfg.maxPrefixes) this.checkMaxPrefix(e);
  }

  /**
   * Max-prefix (RFC 4486): past a family's limit the session is closed with Cease/1 (data:
   * AFI, SAFI, the limit) and held down for the restart time; the peer's paths go with it. At
   * most one UPDATE's prefixes get past the limit, so a flooding peer cannot grow the RIB.
   */
  private checkMaxPrefix(e: PeerEntry): void {
    const limits = e.cfg.maxPrefixes;
    if (!limits || e.held.maxPrefix) return;
    for (const f of ["ipv4-unicast", "ipv6-unicast"] as const) {
      const m = limits[f];
      if (!m) continue;
      const n = this.rib.receivedOf(e.ribId, f === "ipv4-unicast" ? 4 : 6);
      if (n > m.limit) {
        this.log.warn(
          {
            peer: e.cfg.address,
            family: f,
            received: n,
            limit: m.limit,
            restartTime: m.restartTime,
          },
          "Peer sent more prefixes than its limit: session closed (Cease/1)",
        );
        const data = new Uint8Array(7);
        const dv = new DataView(data.buffer);
        dv.setUint16(0, f === "ipv4-unicast" ? Afi.Ipv4 : Afi.Ipv6);
        dv.setUint8(2, Safi.Unicast);
        dv.setUint32(3, m.limit);
        this.ceaseNow(e, CeaseSubcode.MaximumNumberOfPrefixesReached, data);
        e.held.maxPrefix = true;
        e.session.stop();
        if (m.restartTime > 0)
          this.out.push({
            kind: "startTimer",
            timer: maxPrefixTimer(e.cfg.address),
            ms: m.restartTime * 1000,
          });
        return;
      }
      if (!e.maxPrefixWarned.has(f) && n * 100 >= m.limit * m.warningPercent) {
        e.maxPrefixWarned.add(f);
        this.log.warn(
          {
            peer: e.cfg.address,
            family: f,
            received: n,
            limit: m.limit,
            warningPercent: m.warningPercent,
          },
          "Peer is near its prefix limit",
        );
      }
    }
  }

  /** RFC 4271 §9.1: withdrawals, then announcements (RFC 7606: treat-as-withdraw). */
  private applyUpdate(e: PeerEntry, u: UpdateMessage): void {
    const rib = this.rib;
    const idx = rib.peerIndex(e.ribId);
    forEachIpv4Prefix(u.withdrawn, (a, l, pid) => rib.withdrawV4(idx, a, l, pid));
    const un = u.attributes?.mpUnreach;
    if (un) this.withdrawView(idx, un.withdrawn);
    const withdrawAll = u.action >= Rfc7606Action.TreatAsWithdraw || u.attributes === null;
    if (u.nlri.count > 0) {
      if (withdrawAll) forEachIpv4Prefix(u.nlri, (a, l, pid) => rib.withdrawV4(idx, a, l, pid));
      else {
        const id = rib.intern(this.attrsFrom(e, u, 4));
        forEachIpv4Prefix(u.nlri, (a, l, pid) => rib.announceV4(idx, id, a, l, pid));
      }
    }
    const reach = u.attributes?.mpReach;
    if (reach && reach.nlri.count > 0) {
      if (withdrawAll) this.withdrawView(idx, reach.nlri);
      else if (reach.afi === Afi.Ipv4) {
        const id = rib.intern(this.attrsFrom(e, u, 4));
        forEachIpv4Prefix(reach.nlri, (a, l, pid) => rib.announceV4(idx, id, a, l, pid));
      } else if (reach.afi === Afi.Ipv6) {
        const id = rib.intern(this.attrsFrom(e, u, 6));
        forEachIpv6Prefix(reach.nlri, (w, l, pid) => rib.announceV6(idx, id, w, 0, l, pid));
      }
    }
  }

  /**
   * The attributes of a received UPDATE; a link-local next hop from an unnumbered peer gets the
   * interface as its zone ("fe80::1%eth0"), which the FIB needs to install it.
   */
  private attrsFrom(e: PeerEntry, u: UpdateMessage, fam: 4 | 6): A {
    const a = this.deps.bridge.fromUpdate(u, fam);
    const iface = e.cfg.interface;
    if (iface === undefined) return a;
    const nh = this.deps.bridge.adapter.view(a).nextHop;
    if (!nh.toLowerCase().startsWith("fe80:") || nh.includes("%")) return a;
    return this.deps.bridge.adapter.edit(a, { nextHop: `${nh}%${iface}` });
  }

  private withdrawView(idx: number, view: UpdateMessage["nlri"]): void {
    const rib = this.rib;
    if (view.afi === Afi.Ipv4)
      forEachIpv4Prefix(view, (a, l, pid) => rib.withdrawV4(idx, a, l, pid));
    else if (view.afi === Afi.Ipv6)
      forEachIpv6Prefix(view, (w, l, pid) => rib.withdrawV6(idx, w, 0, l, pid));
  }

  /** RFC 2918 / RFC 7313: the family's Adj-RIB-Out again, framed by BoRR/EoRR when enhanced. */
  private onRouteRefresh(e: PeerEntry, rr: RouteRefreshMessage): void {
    const fam = rr.afi === Afi.Ipv4 ? 4 : rr.afi === Afi.Ipv6 ? 6 : 0;
    if (e.removed || fam === 0 || rr.safi !== Safi.Unicast || !e.session.options) return;
    if (rr.subtype !== RouteRefreshSubtype.Normal) {
      this.onRefreshMark(e, fam, rr.subtype);
      return;
    }
    this.drainAll();
    const enhanced = e.session.negotiated?.enhancedRouteRefresh ?? false;
    const mark = (subtype: number) =>
      e.session.send(encodeRouteRefresh({ afi: rr.afi, safi: rr.safi, subtype }));
    if (enhanced) mark(RouteRefreshSubtype.BeginningOfRouteRefresh);
    const only = this.rib
      .adjRibOut(e.ribId)
      .map((a) => (fam === 4 ? { ...a, v6: emptyList(a.v6) } : { ...a, v4: emptyList(a.v4) }));
    this.sendAnnounces(e, only);
    if (enhanced) mark(RouteRefreshSubtype.EndOfRouteRefresh);
  }

  /**
   * RFC 7313 §4: at the peer's BoRR its paths of the family become stale, what it re-sends is
   * fresh, and at EoRR the paths still stale are swept. (A peer restarting under graceful restart
   * already has its paths stale: its refresh marks are left to End-of-RIB.)
   */
  private onRefreshMark(e: PeerEntry, fam: 4 | 6, subtype: number): void {
    if (!e.session.negotiated?.enhancedRouteRefresh || e.staleFams.size > 0) return;
    if (subtype === RouteRefreshSubtype.BeginningOfRouteRefresh) {
      const n = this.rib.markStale(e.ribId, fam);
      e.refreshing.add(fam);
      this.log.info(
        { peer: e.cfg.address, family: fam, stalePaths: n },
        "Peer began a route refresh",
      );
    } else if (subtype === RouteRefreshSubtype.EndOfRouteRefresh && e.refreshing.delete(fam)) {
      const n = this.rib.sweepStale(e.ribId, fam);
      this.log.info({ peer: e.cfg.address, family: fam, removed: n }, "Peer ended a route refresh");
    }
  }

  // ---- RIB -> peers and FIB ------------------------------------------------------------------

  private requestFlush(): void {
    if (this.flushRequested || this.stopped) return;
    this.flushRequested = true;
    this.out.push({ kind: "flushSoon" });
  }

  /** Drains the RIB one bounded step; stops reading while the FIB is behind. */
  private flush(): void {
    if (this.rib.pending === 0) return;
    if (this.fibInFlight >= MAX_FIB_IN_FLIGHT) {
      this.setReading(false);
      return; // fibDone resumes
    }
    const ch = this.rib.drain(FIB_BATCH);
    this.sendBatches(ch.adjOut);
    this.toFib(ch.fib);
  }

  /** Everything pending, at once (before dumps and refreshes). */
  private drainAll(): void {
    for (let i = 0; i < 10_000 && this.rib.pending > 0; i++) {
      const ch = this.rib.drain(FIB_BATCH);
      this.sendBatches(ch.adjOut);
      this.toFib(ch.fib);
    }
  }

  private setReading(on: boolean): void {
    if (this.readingPaused === !on) return;
    this.readingPaused = !on;
    for (const e of this.peers.values()) e.session.pauseReading(!on);
  }

  /**
   * Graceful restart of the FIB: once every peer is Established, sent End-of-RIB for each
   * negotiated family and the FIB has everything, routes left from before the restart can go.
   */
  private checkConverged(): void {
    if (this.converged || !this.idle || !this.deps.fib) return;
    for (const e of this.peers.values()) {
      // A peer refused at OPEN (wrong AS, ...) brings no routes: it does not hold the sweep.
      if (!e.session.established && e.lastError?.code === ErrorCode.OpenMessageError) continue;
      const n = e.session.negotiated;
      if (!e.session.established || !n || !e.synced) return;
      for (const f of n.families) if (!e.eorReceived.has(familyCode(f))) return;
    }
    this.converged = true;
    this.out.push({ kind: "fibEndGracefulHold" });
  }

  private sendBatches(batches: AdjOutBatch<A>[]): void {
    for (const b of batches) {
      const targets: PeerEntry[] = [];
      for (const id of b.peers) {
        const e = this.peers.get(id);
        if (e?.synced && e.session.established) targets.push(e);
      }
      if (targets.length === 0) continue;
      // One encoding per distinct session option set (usually one for the whole group).
      const byOpts = new Map<string, { opts: SessionOptions; peers: PeerEntry[] }>();
      for (const t of targets) {
        const opts = t.session.options as SessionOptions;
        const k = optionsKey(opts);
        const hit = byOpts.get(k);
        if (hit) hit.peers.push(t);
        else byOpts.set(k, { opts, peers: [t] });
      }
      for (const { opts, peers } of byOpts.values()) {
        const msgs = encodeBatch(this.deps.bridge, b.announce, b.withdraw, opts);
        for (const p of peers) for (const m of msgs) p.session.send(m);
      }
    }
  }

  private sendAnnounces(e: PeerEntry, announce: AdjOutAnnounce<A>[]): void {
    const opts = e.session.options;
    if (!opts) return;
    for (const m of encodeBatch(this.deps.bridge, announce, null, opts)) e.session.send(m);
  }

  private toFib(batch: FibBatch): void {
    if (!this.deps.fib || this.stopped || batch.size === 0) return;
    const t = this.config.fib.table;
    this.fibInFlight++;
    this.out.push({
      kind: "fib",
      batch,
      protocol: this.config.fib.protocol,
      table: t === "main" ? RT_TABLE_MAIN : t,
      metric: { v4: this.config.fib.metricV4 ?? 0, v6: this.config.fib.metricV6 ?? 0 },
    });
  }

  private originateAll(cfg: BgpdConfig): void {
    for (const o of cfg.originate) {
      const { communities, largeCommunities } = parseCommunityList([
        ...o.communities,
        ...o.largeCommunities,
      ]);
      this.rib.originate(o.prefix, { communities, largeCommunities });
    }
  }
}

function maxPrefixTimer(peer: string) {
  return { peer, link: 0, name: "MaxPrefixRestart" as const };
}

function emptyList(l: PrefixList): PrefixList {
  return Object.assign(Object.create(Object.getPrototypeOf(l)), { ...l, count: 0 }) as PrefixList;
}

function downText(r: DownReason): PeerEntry["lastError"] {
  switch (r.kind) {
    case "NotificationSent":
      return { kind: r.kind, code: r.code, subcode: r.subcode, message: r.message };
    case "NotificationReceived":
      return { kind: r.kind, code: r.code, subcode: r.subcode };
    case "TcpConnectionFails":
      return { kind: r.kind, message: r.message };
    default:
      return { kind: r.kind };
  }
}

const DEFERRAL_TIMER = { peer: "", link: 0, name: "SelectionDeferralTimer" } as const;

type GrCapability = Extract<Capability, { kind: "GracefulRestart" }>;

type LlgrCapability = Extract<Capability, { kind: "LongLivedGracefulRestart" }>;

function grCapability(caps: Capability[] | undefined): GrCapability | undefined {
  return caps?.find((c): c is GrCapability => c.kind === "GracefulRestart");
}

function llgrCapability(caps: Capability[] | undefined): LlgrCapability | undefined {
  return caps?.find((c): c is LlgrCapability => c.kind === "LongLivedGracefulRestart");
}

function familyCode(f: Family): FamilyKey {
  return f === "ipv4-unicast" ? Ipv4Unicast : Ipv6Unicast;
}

/** The family of an End-of-RIB's AFI/SAFI key (undefined: one we do not run). */
function familyOf(k: FamilyKey): Family | undefined {
  return k === Ipv4Unicast ? "ipv4-unicast" : k === Ipv6Unicast ? "ipv6-unicast" : undefined;
}

function famNumber(f: Family): 4 | 6 {
  return f === "ipv4-unicast" ? 4 : 6;
}

function afiSafi(f: Family): [number, number] {
  return f === "ipv4-unicast" ? [Afi.Ipv4, Safi.Unicast] : [Afi.Ipv6, Safi.Unicast];
}

/** A helper timer of the peer (link 0), per family for the long-lived stale timer. */
function helperTimer(e: PeerEntry, name: StalePhase, family?: Family) {
  return { peer: e.cfg.address, link: 0, name, ...(family ? { family } : {}) };
}

/** The GR capability lists the family (and, when asked, with its Forwarding State bit). */
function grCovers(gr: GrCapability, f: Family, forwarding = false): boolean {
  const [afi, safi] = afiSafi(f);
  return gr.families.some(
    (x) => x.afi === afi && x.safi === safi && (!forwarding || x.forwardingState),
  );
}

/** RFC 9494 §4.2: the LLGR capability lists the family (and, when asked, with its F bit). */
function llgrCovers(ll: LlgrCapability, f: Family, forwarding = false): boolean {
  const [afi, safi] = afiSafi(f);
  return ll.families.some(
    (x) => x.afi === afi && x.safi === safi && (!forwarding || x.forwardingState),
  );
}
