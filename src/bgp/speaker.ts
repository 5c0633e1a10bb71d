import type { Fib } from "../fib/types.js";
import { RT_TABLE_MAIN } from "../fib/types.js";
import { type BgpdConfig, impact, type PeerConfig, peerFamilies } from "./config.js";
import { ipv4Number } from "./fsm/fsm.js";
import {
  CeaseSubcode,
  type DownReason,
  ErrorCode,
  type Family,
  type PeerSettings,
} from "./fsm/types.js";
import type { Clock, TimerHandle } from "./io/clock.js";
import { type Connector, type Log, PeerSession, silentLog } from "./io/session.js";
import {
  type Connection,
  type Listener,
  listen,
  readTcpMd5Counters,
  connect as tcpConnect,
} from "./io/transport.js";
import { parseCommunityList } from "./policy/communities.js";
import { peerPolicies } from "./policy/defaults.js";
import type { BgpFilterRule, NamedFilter } from "./policy/filter.js";
import type { AttrAdapter } from "./rib/attrs.js";
import type { PrefixList } from "./rib/prefix.js";
import { type AdjOutAnnounce, type AdjOutBatch, type FibBatch, Rib } from "./rib/rib.js";
import { localAddressesToward, textPrefixArray, toPrefixArray } from "./speaker_addr.js";
import { FibPump } from "./speaker_fib.js";
import type { PeerStatus, RoutesSnapshot, StatusSnapshot } from "./status.js";
import { Afi, RouteRefreshSubtype, Safi } from "./wire/constants.js";
import { encodeRouteRefresh } from "./wire/message.js";
import { forEachIpv4Prefix, forEachIpv6Prefix } from "./wire/nlri.js";
import {
  type Capability,
  type FamilyKey,
  Ipv4Unicast,
  Ipv6Unicast,
  NotificationError,
  type PathAttributes,
  Rfc7606Action,
  type RouteRefreshMessage,
  type SessionOptions,
  type UpdateMessage,
} from "./wire/types.js";
import { decodeUpdate, encodeEndOfRib, encodeUpdates } from "./wire/update.js";

/** The bridge between the codec's attributes and the RIB's attribute type A. */
export interface AttrBridge<A> {
  adapter: AttrAdapter<A>;
  /** The attribute set of a received UPDATE for one family (IPv6: the MP_REACH next hop). */
  fromUpdate(u: UpdateMessage, family: 4 | 6): A;
  /** What to encode for a set on export: codec attributes (no MP parts) and the MP next hop. */
  toWire(a: A, family: 4 | 6): { attributes: PathAttributes; mpNextHop: Uint8Array | null };
}

export interface SpeakerDeps<A> {
  clock: Clock;
  log?: Log;
  /** Null when `fib.enabled` is false. */
  fib: Fib | null;
  bridge: AttrBridge<A>;
  connector?: Connector;
  /** Optional socket hook for each connection (eBGP TTL); errors are logged, not fatal. */
  onSocket?: (conn: Connection, peer: PeerConfig, ebgp: boolean) => void;
  /** Each UPDATE received, as framed (header included), before decoding (MRT BGP4MP dumps). */
  onUpdateReceived?: (peer: PeerConfig, msg: Uint8Array, fourOctetAs: boolean) => void;
}

type SpeakerEvent =
  | { kind: "established"; peer: string }
  | { kind: "update"; peer: string; msg: Uint8Array }
  | { kind: "routeRefresh"; peer: string; rr: RouteRefreshMessage }
  | { kind: "down"; peer: string; reason: DownReason; wasEstablished: boolean }
  | { kind: "drain"; peer: string }
  | { kind: "staleExpired"; peer: string };

interface PeerEntry {
  cfg: PeerConfig;
  session: PeerSession;
  ribId: string;
  /** The initial Adj-RIB-Out dump was sent: later group batches go to it. */
  synced: boolean;
  eorReceived: Set<FamilyKey>;
  lastError: PeerStatus["lastError"];
  /** The send queue is over the high-water mark (warned once until it drains). */
  slow: boolean;
  /** RFC 4724 receiving speaker: the peer is restarting and its paths are stale. */
  stale: boolean;
  staleTimer: TimerHandle | undefined;
  /** Families of the last Established session. */
  lastFamilies: Family[];
}

const FIB_BATCH = 50_000;
const MAX_ROUTES_SHOWN = 100_000;
const MAX_FIB_IN_FLIGHT = 4;

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

/** The peer's import/export policies: its filters, then the DESIGN §7 defaults. */
export function policiesFor(p: PeerConfig, localAs: number) {
  const imp = splitRules(p.importFilter?.rules as BgpFilterRule[] | undefined);
  const exp = splitRules(p.exportFilter?.rules as BgpFilterRule[] | undefined);
  const filters: NamedFilter[] = [
    {
      name: `peer ${p.address}`,
      spec: { importV4: imp.v4, importV6: imp.v6, exportV4: exp.v4, exportV6: exp.v6 },
    },
  ];
  return peerPolicies({ external: p.asn !== localAs, pools: [], filters });
}

export class Speaker<A> {
  config: BgpdConfig;
  readonly rib: Rib<A>;
  private readonly peers = new Map<string, PeerEntry>();
  private readonly log: Log;
  private listener: Listener | undefined;
  private readonly queue: SpeakerEvent[] = [];
  private running = false;
  private flushScheduled = false;
  private readonly pump: FibPump | undefined;
  private readonly startedAt: number;
  private stopped = false;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(
    config: BgpdConfig,
    private readonly deps: SpeakerDeps<A>,
  ) {
    this.config = config;
    this.log = deps.log ?? silentLog;
    this.startedAt = deps.clock.now();
    this.pump = deps.fib ? new FibPump(deps.fib, this.log, () => this.onFibSettled()) : undefined;
    this.rib = new Rib<A>({
      localAs: config.asn,
      routerId: config.routerId,
      ...(config.clusterId || config.peers.some((p) => p.routeReflectorClient)
        ? { clusterId: config.clusterId ?? config.routerId }
        : {}),
      adapter: deps.bridge.adapter,
    });
  }

  get listenPort(): number | undefined {
    return this.listener?.port;
  }

  /** Opens the listener, originates, and starts every peer's session. */
  async start(): Promise<void> {
    await this.openListener();
    this.originateAll(this.config);
    for (const p of this.config.peers) this.addPeer(p);
    this.scheduleFlush();
  }

  /** Stops sessions (Cease), removes our routes from the FIB, closes the listener. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    // Sessions down first: their routes leave the RIB, and the FIB gets numeric batch removals.
    for (const e of this.peers.values()) e.session.stop();
    for (const o of this.config.originate) this.rib.withdrawOrigin(o.prefix);
    this.drainAll();
    this.stopped = true;
    await this.listener?.close();
    this.listener = undefined;
    // Let the FIB finish what it was handed (bounded wait), then remove anything left over.
    for (let i = 0; i < 600 && this.fibInFlight() > 0; i++)
      await new Promise((r) => setTimeout(r, 50));
    if (this.deps.fib) {
      const left = this.deps.fib.desired();
      if (left.length > 0) await this.deps.fib.remove(left);
    }
  }

  /** Applies a new configuration by diff (SIGHUP): only sessions that must reset are reset. */
  async reconfigure(next: BgpdConfig): Promise<void> {
    const d = impact(this.config, next);
    const old = this.config;
    this.config = next;
    if (d.relisten) {
      await this.listener?.close();
      this.listener = undefined;
      await this.openListener();
    } else this.updateListenerKeys(old, next);
    for (const p of d.removed) this.removePeer(p.address, CeaseSubcode.PeerDeconfigured);
    for (const c of d.changed) {
      const cfg = next.peers.find((p) => p.address === c.address) as PeerConfig;
      if (c.impact === "reset") {
        this.log.info({ peer: c.address, field: c.field }, "Config change resets the session");
        this.removePeer(c.address, CeaseSubcode.OtherConfigurationChange);
        this.addPeer(cfg);
      } else if (c.impact === "refresh") {
        this.log.info({ peer: c.address, field: c.field }, "Config change applied by refresh");
        this.refreshPeer(cfg);
      } else {
        const e = this.peers.get(c.address);
        if (e) e.cfg = cfg;
      }
    }
    for (const p of d.added) this.addPeer(p);
    if (d.reexport) {
      for (const o of old.originate) this.rib.withdrawOrigin(o.prefix);
      this.originateAll(next);
    }
    this.scheduleFlush();
  }

  /** Resolves when no work is queued and the FIB acknowledged everything handed to it. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private fibInFlight(): number {
    return this.pump?.inFlight ?? 0;
  }

  private isIdle(): boolean {
    return (
      this.queue.length === 0 &&
      this.rib.pending === 0 &&
      this.fibInFlight() === 0 &&
      !this.flushScheduled
    );
  }

  // ---- peers ---------------------------------------------------------------------------------

  private settingsFor(p: PeerConfig): PeerSettings {
    return {
      localAs: this.config.asn,
      peerAs: p.asn,
      routerId: ipv4Number(this.config.routerId),
      holdTime: p.holdTime,
      connectRetryTime: p.connectRetryTime,
      passive: p.passive,
      families: peerFamilies(p),
      requiredFamilies: p.requiredFamilies,
      idleHoldMs: 1000,
      maxIdleHoldMs: 60_000,
    };
  }

  private addPeer(p: PeerConfig): void {
    const near = localAddressesToward(p.address);
    const src = p.sourceAddress;
    const listen = this.config.listen.address;
    const pick4 = [src, near.v4, listen, this.config.routerId].find(
      (a) => a && !a.includes(":") && a !== "0.0.0.0",
    );
    const pick6 = [src, near.v6, listen].find((a) => a?.includes(":") && a !== "::");
    const pol = policiesFor(p, this.config.asn);
    this.rib.addPeer({
      id: p.address,
      address: p.address,
      asn: p.asn,
      routeReflectorClient: p.routeReflectorClient,
      allowOwnAs: p.allowOwnAs,
      families: peerFamilies(p),
      importPolicy: pol.importPolicy,
      exportPolicy: pol.exportPolicy,
      ...(pick4 ? { nextHopSelfV4: pick4 } : {}),
      ...(pick6 ? { nextHopSelfV6: pick6 } : {}),
    });
    const session = new PeerSession(
      {
        address: p.address,
        port: p.port,
        ...(p.sourceAddress ? { sourceAddress: p.sourceAddress } : {}),
        settings: this.settingsFor(p),
      },
      this.deps.clock,
      {
        onEstablished: (s) => this.enqueue({ kind: "established", peer: s.address }),
        onUpdate: (s, msg) => this.enqueue({ kind: "update", peer: s.address, msg }),
        onRouteRefresh: (s, rr) => this.enqueue({ kind: "routeRefresh", peer: s.address, rr }),
        onDown: (s, reason, wasEstablished) =>
          this.enqueue({ kind: "down", peer: s.address, reason, wasEstablished }),
        onDrain: (s) => this.enqueue({ kind: "drain", peer: s.address }),
      },
      this.log,
      this.connectorFor(p),
    );
    this.peers.set(p.address, {
      cfg: p,
      session,
      ribId: p.address,
      synced: false,
      eorReceived: new Set(),
      lastError: null,
      slow: false,
      stale: false,
      staleTimer: undefined,
      lastFamilies: [],
    });
    session.start();
  }

  private connectorFor(p: PeerConfig): Connector | undefined {
    const base = this.deps.connector;
    const hook = this.deps.onSocket;
    const key = p.password;
    if (!hook && key === undefined) return base;
    const inner = base ?? tcpConnect;
    return (opts, ok, fail) =>
      inner(
        key === undefined ? opts : { ...opts, md5Key: key },
        (c) => {
          if (hook) this.socketHook(c, p);
          ok(c);
        },
        fail,
      );
  }

  /**
   * Brings the listener's TCP-MD5 keys from old's peers to next's (set new and changed keys,
   * remove those of peers gone or without a password), before sessions reset, so the next
   * incoming connection is checked with the new key. A key that cannot be set is logged.
   */
  private updateListenerKeys(old: BgpdConfig, next: BgpdConfig): void {
    const l = this.listener;
    if (!l) return;
    const before = md5Keys(old);
    const after = md5Keys(next);
    const changes: [string, string | undefined][] = [];
    for (const a of before.keys()) if (!after.has(a)) changes.push([a, undefined]);
    for (const [a, k] of after) if (before.get(a) !== k) changes.push([a, k]);
    for (const [peer, key] of changes) {
      try {
        l.setMd5Key(peer, key);
        this.log.info({ peer, md5: key !== undefined }, "Listener TCP MD5 key updated");
      } catch (e) {
        this.log.error({ peer, error: (e as Error).message }, "Listener TCP MD5 key not updated");
      }
    }
  }

  private socketHook(c: Connection, p: PeerConfig): void {
    try {
      this.deps.onSocket?.(c, p, p.asn !== this.config.asn);
    } catch (e) {
      this.log.warn({ peer: p.address, error: (e as Error).message }, "Socket option failed");
    }
  }

  private removePeer(address: string, cease: number): void {
    const e = this.peers.get(address);
    if (!e) return;
    e.staleTimer?.cancel();
    if (e.session.established) {
      e.session.reset(ErrorCode.Cease, cease);
    }
    e.session.stop();
    this.rib.removePeer(e.ribId);
    this.peers.delete(address);
  }

  /** Applies filter / RR / allow-own-AS changes without a reset. */
  private refreshPeer(cfg: PeerConfig): void {
    const e = this.peers.get(cfg.address);
    if (!e) return;
    const old = e.cfg;
    e.cfg = cfg;
    const pol = policiesFor(cfg, this.config.asn);
    const importChanged =
      JSON.stringify(old.importFilter) !== JSON.stringify(cfg.importFilter) ||
      old.allowOwnAs !== cfg.allowOwnAs;
    const exportChanged =
      JSON.stringify(old.exportFilter) !== JSON.stringify(cfg.exportFilter) ||
      old.routeReflectorClient !== cfg.routeReflectorClient ||
      old.nextHopSelf !== cfg.nextHopSelf;
    const before = exportChanged ? this.advertisedSet(e) : undefined;
    // The Adj-RIB-In is kept (soft reconfiguration inbound): imports are re-evaluated in place,
    // and a changed export input moves the peer to its new update group.
    this.rib.updatePeer(e.ribId, {
      allowOwnAs: cfg.allowOwnAs,
      routeReflectorClient: cfg.routeReflectorClient,
      ...(importChanged ? { importPolicy: pol.importPolicy } : {}),
      ...(exportChanged ? { exportPolicy: pol.exportPolicy } : {}),
    });
    if (before && e.session.established && e.synced) {
      // Settle the change, then send the peer what it gains and withdraw what it loses.
      this.drainAll();
      this.resync(e, before);
    }
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
    if (gone.length > 0) this.sendWithdrawText(e, gone);
    this.sendAnnounces(e, now);
  }

  private sendWithdrawText(e: PeerEntry, prefixes: string[]): void {
    const opts = e.session.options;
    if (!opts) return;
    for (const fam of [4, 6] as const) {
      const list = prefixes.filter((p) => (fam === 4) === !p.includes(":"));
      if (list.length === 0) continue;
      const arr = textPrefixArray(list, fam);
      for (const m of encodeUpdates(
        {
          afi: fam === 4 ? Afi.Ipv4 : Afi.Ipv6,
          safi: Safi.Unicast,
          attributes: null,
          withdraw: arr,
        },
        opts,
      )) {
        e.session.send(m);
      }
    }
  }

  // ---- the event queue -----------------------------------------------------------------------

  private enqueue(ev: SpeakerEvent): void {
    this.queue.push(ev);
    if (this.running) return;
    this.running = true;
    try {
      for (let i = 0; i < this.queue.length; i++) this.handle(this.queue[i] as SpeakerEvent);
    } finally {
      this.queue.length = 0;
      this.running = false;
    }
    this.scheduleFlush();
  }

  private handle(ev: SpeakerEvent): void {
    const e = this.peers.get(ev.peer);
    if (!e) return;
    switch (ev.kind) {
      case "established":
        this.onEstablished(e);
        return;
      case "update":
        this.onUpdate(e, ev.msg);
        return;
      case "routeRefresh":
        this.onRouteRefresh(e, ev.rr);
        return;
      case "down":
        e.lastError = downText(ev.reason);
        if (ev.wasEstablished) {
          e.synced = false;
          e.eorReceived.clear();
          if (!this.helpRestart(e, ev.reason)) this.endStale(e, "down");
        }
        return;
      case "staleExpired":
        e.staleTimer = undefined;
        if (e.stale) this.endStale(e, "restart timer expired");
        return;
      case "drain":
        if (e.slow) {
          e.slow = false;
          this.log.info({ peer: e.cfg.address }, "Peer caught up with its send queue");
        }
        return;
    }
  }

  /**
   * RFC 4724 §4.2: a peer that announced graceful restart for all our families lost its TCP
   * session without a NOTIFICATION: keep its paths (marked stale) for its Restart Time.
   */
  private helpRestart(e: PeerEntry, reason: DownReason): boolean {
    if (this.stopped || reason.kind !== "TcpConnectionFails") return false;
    const gr = grCapability(e.session.peerCapabilities);
    const fams = e.lastFamilies;
    if (!gr || gr.restartTime === 0 || !fams.every((f) => grCovers(gr, f))) return false;
    const marked = this.rib.markStale(e.ribId);
    e.stale = true;
    e.staleTimer?.cancel();
    e.staleTimer = this.deps.clock.setTimer(gr.restartTime * 1000, () =>
      this.enqueue({ kind: "staleExpired", peer: e.cfg.address }),
    );
    this.log.info(
      { peer: e.cfg.address, stalePaths: marked, restartTime: gr.restartTime },
      "Peer restarting (graceful restart): keeping its routes as stale",
    );
    return true;
  }

  /** Ends helper mode: stale paths go (all of the peer's paths when `why` is a plain drop). */
  private endStale(e: PeerEntry, why: string): void {
    e.staleTimer?.cancel();
    e.staleTimer = undefined;
    if (why === "down") {
      e.stale = false;
      this.rib.peerDown(e.ribId);
      return;
    }
    if (!e.stale) return;
    e.stale = false;
    const n = this.rib.sweepStale(e.ribId);
    this.log.info(
      { peer: e.cfg.address, removed: n, why },
      "Stale routes of a restarted peer removed",
    );
  }

  private onEstablished(e: PeerEntry): void {
    const n = e.session.negotiated;
    if (!n) return;
    this.rib.peerUp(e.ribId, n.peerId);
    e.lastFamilies = n.families;
    if (e.stale) {
      // RFC 4724 §4.2: without the Forwarding State bit for a family, its stale routes go now.
      const gr = grCapability(e.session.peerCapabilities);
      const kept = gr !== undefined && n.families.every((f) => grCovers(gr, f, true));
      if (!kept) this.endStale(e, "no forwarding state after restart");
    }
    // Settle pending changes first, so the dump plus later batches are exactly the table.
    this.drainAll();
    this.sendAnnounces(e, this.rib.adjRibOut(e.ribId));
    for (const f of n.families)
      e.session.send(encodeEndOfRib(f === "ipv4-unicast" ? Ipv4Unicast : Ipv6Unicast));
    e.synced = true;
  }

  private onUpdate(e: PeerEntry, msg: Uint8Array): void {
    const opts = e.session.options;
    if (!opts) return;
    this.deps.onUpdateReceived?.(e.cfg, msg, opts.fourOctetAs);
    let u: UpdateMessage;
    try {
      u = decodeUpdate(msg, opts);
    } catch (err) {
      if (err instanceof NotificationError) {
        this.log.warn(
          { peer: e.cfg.address, error: err.message },
          "UPDATE error resets the session",
        );
        e.session.reset(err.code, err.subcode, err.data);
        return;
      }
      throw err;
    }
    if (u.errors.length > 0) {
      this.log.warn(
        { peer: e.cfg.address, action: u.action, errors: u.errors.map((x) => x.reason) },
        "Malformed attributes handled per RFC 7606",
      );
    }
    if (u.endOfRib !== null) {
      e.eorReceived.add(u.endOfRib);
      const n = e.session.negotiated;
      if (e.stale && n?.families.every((f) => e.eorReceived.has(familyCode(f)))) {
        this.endStale(e, "End-of-RIB");
      }
      this.scheduleFlush();
      return;
    }
    const idx = this.rib.peerIndex(e.ribId);
    const rib = this.rib;
    forEachIpv4Prefix(u.withdrawn, (a, l, pid) => rib.withdrawV4(idx, a, l, pid));
    const un = u.attributes?.mpUnreach;
    if (un) this.withdrawView(idx, un.withdrawn);
    const withdrawAll = u.action >= Rfc7606Action.TreatAsWithdraw || u.attributes === null;
    if (u.nlri.count > 0) {
      if (withdrawAll) forEachIpv4Prefix(u.nlri, (a, l, pid) => rib.withdrawV4(idx, a, l, pid));
      else {
        const id = rib.intern(this.deps.bridge.fromUpdate(u, 4));
        forEachIpv4Prefix(u.nlri, (a, l, pid) => rib.announceV4(idx, id, a, l, pid));
      }
    }
    const reach = u.attributes?.mpReach;
    if (reach && reach.nlri.count > 0) {
      if (withdrawAll) this.withdrawView(idx, reach.nlri);
      else if (reach.afi === Afi.Ipv4) {
        const id = rib.intern(this.deps.bridge.fromUpdate(u, 4));
        forEachIpv4Prefix(reach.nlri, (a, l, pid) => rib.announceV4(idx, id, a, l, pid));
      } else if (reach.afi === Afi.Ipv6) {
        const id = rib.intern(this.deps.bridge.fromUpdate(u, 6));
        forEachIpv6Prefix(reach.nlri, (w, l, pid) => rib.announceV6(idx, id, w, 0, l, pid));
      }
    }
  }

  private withdrawView(idx: number, view: UpdateMessage["nlri"]): void {
    const rib = this.rib;
    if (view.afi === Afi.Ipv4)
      forEachIpv4Prefix(view, (a, l, pid) => rib.withdrawV4(idx, a, l, pid));
    else if (view.afi === Afi.Ipv6)
      forEachIpv6Prefix(view, (w, l, pid) => rib.withdrawV6(idx, w, 0, l, pid));
  }

  private onRouteRefresh(e: PeerEntry, rr: RouteRefreshMessage): void {
    if (rr.subtype !== RouteRefreshSubtype.Normal) return;
    const fam = rr.afi === Afi.Ipv4 ? 4 : rr.afi === Afi.Ipv6 ? 6 : 0;
    if (fam === 0 || !e.session.options) return;
    this.drainAll();
    const enhanced = e.session.negotiated?.enhancedRouteRefresh ?? false;
    if (enhanced)
      e.session.send(
        encodeRouteRefresh({
          afi: rr.afi,
          safi: rr.safi,
          subtype: RouteRefreshSubtype.BeginningOfRouteRefresh,
        }),
      );
    const only = this.rib
      .adjRibOut(e.ribId)
      .map((a) => (fam === 4 ? { ...a, v6: emptyList(a.v6) } : { ...a, v4: emptyList(a.v4) }));
    this.sendAnnounces(e, only);
    if (enhanced)
      e.session.send(
        encodeRouteRefresh({
          afi: rr.afi,
          safi: rr.safi,
          subtype: RouteRefreshSubtype.EndOfRouteRefresh,
        }),
      );
  }

  // ---- RIB -> peers and FIB ------------------------------------------------------------------

  private scheduleFlush(): void {
    if (this.flushScheduled || this.stopped) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Drains the RIB in bounded steps; pauses reading while the FIB is behind. */
  private flush(): void {
    if (this.rib.pending > 0) {
      if (this.fibInFlight() >= MAX_FIB_IN_FLIGHT) {
        this.setReading(false);
        return; // resumed when the FIB catches up
      }
      const ch = this.rib.drain(FIB_BATCH);
      this.sendBatches(ch.adjOut);
      this.toFib(ch.fib);
      if (ch.pending > 0) this.scheduleFlush();
    }
    this.checkIdle();
  }

  /** Everything pending, synchronously (before dumps and refreshes). FIB work is queued. */
  private drainAll(): void {
    for (let i = 0; i < 10_000 && this.rib.pending > 0; i++) {
      const ch = this.rib.drain(FIB_BATCH);
      this.sendBatches(ch.adjOut);
      this.toFib(ch.fib);
    }
  }

  private readingPaused = false;
  private setReading(on: boolean): void {
    if (this.readingPaused === !on) return;
    this.readingPaused = !on;
    for (const e of this.peers.values()) e.session.pauseReading(!on);
  }

  private converged = false;

  /**
   * Graceful restart of the FIB: once every peer is Established, sent End-of-RIB for each
   * negotiated family and the FIB has everything, routes left from before the restart can go.
   */
  private checkConverged(): void {
    if (this.converged || !this.isIdle()) return;
    for (const e of this.peers.values()) {
      // A peer refused at OPEN (wrong AS, ...) brings no routes: it does not hold the sweep.
      if (!e.session.established && e.lastError?.code === ErrorCode.OpenMessageError) continue;
      const n = e.session.negotiated;
      if (!e.session.established || !n || !e.synced) return;
      for (const f of n.families)
        if (!e.eorReceived.has(f === "ipv4-unicast" ? Ipv4Unicast : Ipv6Unicast)) return;
    }
    this.converged = true;
    const fib = this.deps.fib as (Fib & { endGracefulHold?: () => Promise<void> }) | null;
    if (fib?.endGracefulHold) {
      this.log.info({}, "All peers sent End-of-RIB: removing stale routes from before the restart");
      fib
        .endGracefulHold()
        .catch((e: Error) => this.log.error({ error: e.message }, "Graceful hold end failed"));
    }
  }

  private checkIdle(): void {
    this.checkConverged();
    if (!this.isIdle()) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private sendBatches(batches: AdjOutBatch<A>[]): void {
    for (const b of batches) {
      const targets = b.peers
        .map((id) => this.peers.get(id))
        .filter((e): e is PeerEntry => e?.synced === true && e.session.established);
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
        const msgs = this.encodeBatch(b.announce, b.withdraw, opts);
        for (const p of peers) {
          for (const m of msgs) p.session.send(m);
          this.noteSlow(p);
        }
      }
    }
  }

  private sendAnnounces(e: PeerEntry, announce: AdjOutAnnounce<A>[]): void {
    const opts = e.session.options;
    if (!opts) return;
    for (const m of this.encodeBatch(announce, null, opts)) e.session.send(m);
    this.noteSlow(e);
  }

  /**
   * A peer that does not read keeps its UPDATEs queued here: say so once per episode (the
   * transport closes the session past its hard limit, so the queue is bounded).
   */
  private noteSlow(e: PeerEntry): void {
    if (e.slow || !e.session.congested) return;
    e.slow = true;
    this.log.warn(
      { peer: e.cfg.address, queuedBytes: e.session.sendQueueBytes },
      "Peer is slow to read: UPDATEs queued",
    );
  }

  private encodeBatch(
    announce: AdjOutAnnounce<A>[],
    withdraw: { v4: PrefixList; v6: PrefixList } | null,
    opts: SessionOptions,
  ): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (withdraw && withdraw.v4.count > 0) {
      out.push(
        ...encodeUpdates(
          {
            afi: Afi.Ipv4,
            safi: Safi.Unicast,
            attributes: null,
            withdraw: toPrefixArray(withdraw.v4, Afi.Ipv4),
          },
          opts,
        ),
      );
    }
    if (withdraw && withdraw.v6.count > 0) {
      out.push(
        ...encodeUpdates(
          {
            afi: Afi.Ipv6,
            safi: Safi.Unicast,
            attributes: null,
            withdraw: toPrefixArray(withdraw.v6, Afi.Ipv6),
          },
          opts,
        ),
      );
    }
    for (const a of announce) {
      if (a.v4.count > 0) {
        const w = this.deps.bridge.toWire(a.attrs, 4);
        out.push(
          ...encodeUpdates(
            {
              afi: Afi.Ipv4,
              safi: Safi.Unicast,
              attributes: w.attributes,
              mpNextHop: w.mpNextHop,
              announce: toPrefixArray(a.v4, Afi.Ipv4),
            },
            opts,
          ),
        );
      }
      if (a.v6.count > 0) {
        const w = this.deps.bridge.toWire(a.attrs, 6);
        out.push(
          ...encodeUpdates(
            {
              afi: Afi.Ipv6,
              safi: Safi.Unicast,
              attributes: w.attributes,
              mpNextHop: w.mpNextHop,
              announce: toPrefixArray(a.v6, Afi.Ipv6),
            },
            opts,
          ),
        );
      }
    }
    return out;
  }

  private fibTable(): number {
    const t = this.config.fib.table;
    return t === "main" ? RT_TABLE_MAIN : t;
  }

  private toFib(batch: FibBatch): void {
    if (!this.pump || this.stopped) return;
    this.pump.push(batch, this.config.fib.protocol, this.fibTable());
  }

  /** A FIB job settled: resume reading once the FIB is under its limit again. */
  private onFibSettled(): void {
    if ((this.pump?.inFlight ?? 0) < MAX_FIB_IN_FLIGHT) {
      this.setReading(true);
      if (this.rib.pending > 0) this.scheduleFlush();
    }
    this.checkIdle();
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

  private async openListener(): Promise<void> {
    const l = this.config.listen;
    if (l.port === 0 && this.config.peers.every((p) => !p.passive) && process.env.OCELOT_NO_LISTEN)
      return;
    this.listener = await listen({
      address: l.address,
      port: l.port,
      md5Keys: md5Keys(this.config),
      isPeer: (a) => this.peers.has(a),
      onConnection: (c) => {
        const e = this.peers.get(c.remoteAddress);
        if (!e) {
          c.destroy();
          return;
        }
        this.socketHook(c, e.cfg);
        e.session.accept(c);
      },
      onRefused: (a) =>
        this.log.warn({ address: a }, "Connection from an address that is not a peer closed"),
    });
    this.log.info({ address: l.address, port: this.listener.port }, "Listening");
  }

  // ---- status ---------------------------------------------------------------------------------

  status(): StatusSnapshot {
    const now = this.deps.clock.now();
    const peers: PeerStatus[] = [...this.peers.values()].map((e) => {
      const n = e.session.negotiated;
      const c = safeCounts(this.rib, e.ribId);
      return {
        address: e.cfg.address,
        asn: e.cfg.asn,
        localAsn: this.config.asn,
        type: e.cfg.asn === this.config.asn ? "internal" : "external",
        state: e.session.state,
        uptimeSeconds:
          e.session.establishedAt !== undefined
            ? Math.floor((now - e.session.establishedAt) / 1000)
            : null,
        negotiated: n
          ? {
              holdTime: n.holdTime,
              keepaliveTime: n.keepaliveTime,
              families: n.families,
              fourOctetAs: n.as4,
              routeRefresh: n.routeRefresh,
              enhancedRouteRefresh: n.enhancedRouteRefresh,
              gracefulRestart: n.gracefulRestart,
            }
          : null,
        // The group's Adj-RIB-Out is only sent to the peer once it is Established and synced.
        prefixes: { ...c, advertised: e.synced && e.session.established ? c.advertised : 0 },
        messages: {
          in: e.session.counters.messagesIn,
          out: e.session.counters.messagesOut,
          updatesIn: e.session.counters.updatesIn,
        },
        sendQueueBytes: e.session.sendQueueBytes,
        establishedTransitions: e.session.counters.establishedTransitions,
        lastError: e.lastError,
        ...(e.cfg.password !== undefined ? { md5: true as const } : {}),
      };
    });
    // Drops of wrongly signed segments are only counted per namespace, not per peer.
    const tcpMd5 = peers.some((p) => p.md5) ? readTcpMd5Counters() : undefined;
    const size = this.rib.size;
    return {
      routerId: this.config.routerId,
      asn: this.config.asn,
      listen: this.listener
        ? { address: this.config.listen.address, port: this.listener.port }
        : null,
      uptimeSeconds: Math.floor((now - this.startedAt) / 1000),
      peers,
      locRib: { ipv4: size.v4, ipv6: size.v6 },
      memory: memoryMiB(this.rib.typedBytes()),
      fib: {
        enabled: this.pump !== undefined,
        installed: this.pump?.installed ?? 0,
        pending: this.fibInFlight(),
        errors: this.pump?.errors ?? 0,
      },
      ...(tcpMd5 ? { tcpMd5 } : {}),
    };
  }

  routes(): RoutesSnapshot {
    const routes: RoutesSnapshot["routes"] = [];
    for (const r of this.rib.locRib()) {
      const v = r.attrs;
      const large =
        (v as unknown as { largeCommunities?: readonly (readonly number[])[] }).largeCommunities ??
        [];
      routes.push({
        prefix: r.prefix,
        best: {
          peer: r.peer === "" || r.peer === "local" ? "local" : r.peer,
          nextHop: r.nexthops.join(",") || v.nextHop || "-",
          asPath: v.asPath
            .map((s) => (s.type === 1 ? `{${s.asns.join(",")}}` : s.asns.join(" ")))
            .join(" "),
          origin: ["IGP", "EGP", "incomplete"][v.origin] ?? String(v.origin),
          localPref: v.localPref ?? null,
          med: v.med ?? null,
          communities: v.communities.map((c) => `${c >>> 16}:${c & 0xffff}`),
          largeCommunities: large.map((l) => l.join(":")),
        },
        reason: r.reason,
        multipath: r.nexthops,
      });
      if (routes.length >= MAX_ROUTES_SHOWN) return { routes, truncated: true };
    }
    return { routes };
  }
}

/** The TCP-MD5 keys of a config's peers, by address. */
function md5Keys(cfg: BgpdConfig): Map<string, string> {
  const m = new Map<string, string>();
  for (const p of cfg.peers) if (p.password !== undefined) m.set(p.address, p.password);
  return m;
}

function emptyList(l: PrefixList): PrefixList {
  return Object.assign(Object.create(Object.getPrototypeOf(l)), { ...l, count: 0 }) as PrefixList;
}

function optionsKey(o: SessionOptions): string {
  return `${o.fourOctetAs ? 1 : 0}${o.extendedMessage ? 1 : 0}${o.extendedNextHop ? 1 : 0}${[...o.addPath.send].join(",")}`;
}

function memoryMiB(ribBytes: number): StatusSnapshot["memory"] {
  const m = process.memoryUsage();
  const mib = (b: number) => Math.round((b / 1048576) * 10) / 10;
  return {
    rssMiB: mib(m.rss),
    heapUsedMiB: mib(m.heapUsed),
    arrayBuffersMiB: mib(m.arrayBuffers),
    ribTypedMiB: mib(ribBytes),
  };
}

function safeCounts(rib: Rib<unknown>, id: string): PeerStatus["prefixes"] {
  try {
    const c = rib.peerCounts(id);
    const { received, accepted, advertised, rejected } = c;
    return { received, accepted, advertised, rejected: rejected as Record<string, number> };
  } catch {
    return { received: 0, accepted: 0, advertised: 0, rejected: {} };
  }
}

function downText(r: DownReason): PeerStatus["lastError"] {
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

type GrCapability = Extract<Capability, { kind: "GracefulRestart" }>;

function grCapability(caps: Capability[] | undefined): GrCapability | undefined {
  return caps?.find((c): c is GrCapability => c.kind === "GracefulRestart");
}

function familyCode(f: Family): FamilyKey {
  return f === "ipv4-unicast" ? Ipv4Unicast : Ipv6Unicast;
}

/** The GR capability lists the family (and, when asked, with its Forwarding State bit). */
function grCovers(gr: GrCapability, f: Family, forwarding = false): boolean {
  const [afi, safi] = f === "ipv4-unicast" ? [Afi.Ipv4, Safi.Unicast] : [Afi.Ipv6, Safi.Unicast];
  return gr.families.some(
    (x) => x.afi === afi && x.safi === safi && (!forwarding || x.forwardingState),
  );
}
