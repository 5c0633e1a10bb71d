// What a BMP station is told about the speaker, decided from what the speaker's runtime sees
// (the SpeakerTap it is handed): per connection the OPENs and NOTIFICATIONs that crossed it and
// who closed it, per peer whether BMP shows it up. It turns that into Peer Up (both OPENs),
// Route Monitoring (UPDATEs received: pre-policy Adj-RIB-In; with adjRibOut also those sent:
// RFC 8671 post-policy Adj-RIB-Out), Peer Down with its RFC 7854 reason, Statistics Reports, and
// for a station that connects late the dump of each peer's Adj-RIB-In with End-of-RIB (§5).
// No sockets and no timers: messages go to `emit`, the time comes from `now`. Not: the BGP
// session itself (the core decides Established, this only follows it), the station connection
// (client.ts), the bytes of each message (codec.ts).
import type { SpeakerTap, TapHost, TapPeerView } from "../speaker/runtime.js";
import { MessageType } from "../wire/constants.js";
import { MessageFramer } from "../wire/framer.js";
import { encodeEndOfRib } from "../wire/update.js";
import {
  type BmpPeer,
  encodePeerDown,
  encodePeerUp,
  encodeRouteMonitoring,
  encodeStatsReport,
  PeerDownReason,
  type PeerUpInfo,
  type Stat,
  StatType,
} from "./codec.js";

export interface BmpMonitorOptions {
  /** Where each encoded BMP message goes (the client's bounded queue). */
  emit(msg: Buffer): void;
  now(): number;
  /** Also mirror the UPDATEs sent to each peer (RFC 8671 post-policy Adj-RIB-Out). */
  adjRibOut?: boolean;
}

interface ConnRec {
  peer: string;
  localAddress: string;
  localPort: number;
  remotePort: number;
  framer: MessageFramer;
  sentOpen?: Uint8Array;
  receivedOpen?: Uint8Array;
  notificationSent?: Uint8Array;
  notificationReceived?: Uint8Array;
  closedBy?: "local" | "remote";
}

interface UpRec {
  conn: number;
  base: Omit<BmpPeer, "timeMs">;
  info: PeerUpInfo;
}

/** Counters of what the monitor produced (for metrics and tests). */
export interface BmpMonitorCounters {
  peerUp: number;
  peerDown: number;
  routeMonitoring: number;
  statsReports: number;
  /** Of routeMonitoring, those of dumps to a station that connected late (End-of-RIB too). */
  dumpRouteMonitoring: number;
}

export class BmpMonitor implements SpeakerTap {
  private host: TapHost | undefined;
  private readonly conns = new Map<number, ConnRec>();
  private readonly up = new Map<string, UpRec>();
  readonly counters: BmpMonitorCounters = {
    peerUp: 0,
    peerDown: 0,
    routeMonitoring: 0,
    statsReports: 0,
    dumpRouteMonitoring: 0,
  };

  constructor(private readonly o: BmpMonitorOptions) {}

  attach(host: TapHost): void {
    this.host = host;
  }

  // ---- the tap (called by the speaker's runtime) ------------------------------------------

  connected(
    peer: string,
    conn: number,
    c: { localAddress: string; localPort: number; remotePort: number },
  ): void {
    this.conns.set(conn, { peer, ...c, framer: new MessageFramer() });
  }

  sent(peer: string, conn: number, bytes: Uint8Array): void {
    const rec = this.conns.get(conn);
    if (!rec) return;
    // Sends are whole messages: walk their headers without copying.
    for (let o = 0; o + 19 <= bytes.length; ) {
      const len = ((bytes[o + 16] as number) << 8) | (bytes[o + 17] as number);
      if (len < 19 || o + len > bytes.length) return;
      const type = bytes[o + 18];
      if (type === MessageType.Open) rec.sentOpen = bytes.slice(o, o + len);
      else if (type === MessageType.Notification) rec.notificationSent = bytes.slice(o, o + len);
      else if (type === MessageType.Update && this.o.adjRibOut) {
        const u = this.ensureUp(peer);
        if (u?.conn === conn) this.monitor(u, bytes.subarray(o, o + len), true);
      }
      o += len;
    }
  }

  received(_peer: string, conn: number, bytes: Uint8Array): void {
    const rec = this.conns.get(conn);
    if (!rec) return;
    let msgs: Uint8Array[];
    try {
      msgs = rec.framer.push(bytes);
    } catch {
      return; // the session handles a bad header; the monitor only watches
    }
    for (const m of msgs) {
      const type = m[18];
      if (type === MessageType.Open) rec.receivedOpen = m.slice();
      else if (type === MessageType.Notification) rec.notificationReceived = m.slice();
    }
  }

  closed(peer: string, conn: number, by: "local" | "remote"): void {
    const rec = this.conns.get(conn);
    if (!rec) return;
    rec.closedBy ??= by;
    if (this.up.get(peer)?.conn !== conn) this.conns.delete(conn);
  }

  updateReceived(peer: string, msg: Uint8Array): void {
    const u = this.ensureUp(peer);
    if (u) this.monitor(u, msg, false);
  }

  settled(peer?: string): void {
    if (peer !== undefined) this.ensureUp(peer);
    else for (const p of [...this.up.keys()]) this.ensureUp(p);
  }

  // ---- for the station client -------------------------------------------------------------

  /** Peer Up of every peer BMP shows up (a station that just connected starts from these). */
  peerUps(): Buffer[] {
    const now = this.o.now();
    return [...this.up.values()].map((u) => encodePeerUp({ ...u.base, timeMs: now }, u.info));
  }

  /**
   * RFC 7854 §5: the current Adj-RIB-In of every peer BMP shows up, for a station that just
   * connected (after its Peer Ups): Route Monitoring of the routes as received (pre-policy, L
   * flag clear; rejected ones included), then per family of the session an End-of-RIB marker.
   * What each peer holds is taken now (a snapshot); the messages are encoded as they are pulled,
   * so a station that reads slowly holds back the encoding, not memory. The per-peer header's
   * timestamp is 0 (§4.2: unavailable): the RIB does not keep when each route arrived.
   */
  dump(): Iterable<Buffer> {
    const parts: {
      base: Omit<BmpPeer, "timeMs">;
      families: number[];
      updates: Iterable<Uint8Array>;
    }[] = [];
    for (const [peer, u] of this.up) {
      const d = this.host?.view(peer)?.adjRibIn?.();
      if (d) parts.push({ base: u.base, families: d.families, updates: d.updates });
    }
    return this.dumpOf(parts);
  }

  private *dumpOf(
    parts: { base: Omit<BmpPeer, "timeMs">; families: number[]; updates: Iterable<Uint8Array> }[],
  ): Generator<Buffer> {
    for (const part of parts) {
      const p: BmpPeer = { ...part.base, timeMs: 0 };
      for (const update of part.updates) {
        this.counters.routeMonitoring++;
        this.counters.dumpRouteMonitoring++;
        yield encodeRouteMonitoring(p, update);
      }
      for (const f of part.families) {
        this.counters.routeMonitoring++;
        this.counters.dumpRouteMonitoring++;
        yield encodeRouteMonitoring(p, encodeEndOfRib(f));
      }
    }
  }

  /** One Statistics Report per peer that is up. */
  statsReports(): Buffer[] {
    const out: Buffer[] = [];
    const now = this.o.now();
    for (const [peer, u] of this.up) {
      const v = this.host?.view(peer);
      if (!v) continue;
      out.push(encodeStatsReport({ ...u.base, timeMs: now }, statsOf(v, this.o.adjRibOut)));
      this.counters.statsReports++;
    }
    return out;
  }

  /** The peers BMP shows up, by address. */
  get upPeers(): string[] {
    return [...this.up.keys()];
  }

  // ---- internals --------------------------------------------------------------------------

  private monitor(u: UpRec, update: Uint8Array, adjRibOut: boolean): void {
    const p: BmpPeer = { ...u.base, timeMs: this.o.now() };
    if (adjRibOut) {
      p.adjRibOut = true;
      p.postPolicy = true;
    }
    this.o.emit(encodeRouteMonitoring(p, update));
    this.counters.routeMonitoring++;
  }

  /**
   * Follows the session: the peer's Established connection, if any, is the one BMP shows up;
   * a different (or no) one means Peer Down for the old first. Returns the up record.
   */
  private ensureUp(peer: string): UpRec | undefined {
    const v = this.host?.view(peer);
    const cur = this.up.get(peer);
    const conn = v?.establishedConn;
    if (cur && cur.conn === conn) return cur;
    if (cur) this.down(peer, cur, v === undefined);
    if (!v || conn === undefined) return undefined;
    const rec = this.conns.get(conn);
    if (!rec?.sentOpen || !rec.receivedOpen) return undefined;
    const u: UpRec = {
      conn,
      base: {
        address: peer,
        asn: v.asn,
        bgpId: v.peerId,
        legacyAsPath: !v.fourOctetAs,
      },
      info: {
        localAddress: rec.localAddress,
        localPort: rec.localPort,
        remotePort: rec.remotePort,
        sentOpen: rec.sentOpen,
        receivedOpen: rec.receivedOpen,
      },
    };
    this.up.set(peer, u);
    this.o.emit(encodePeerUp({ ...u.base, timeMs: this.o.now() }, u.info));
    this.counters.peerUp++;
    return u;
  }

  private down(peer: string, u: UpRec, deconfigured: boolean): void {
    this.up.delete(peer);
    const rec = this.conns.get(u.conn);
    if (rec?.closedBy !== undefined || deconfigured) this.conns.delete(u.conn);
    const p: BmpPeer = { ...u.base, timeMs: this.o.now() };
    let msg: Buffer;
    if (deconfigured) msg = encodePeerDown(p, PeerDownReason.Deconfigured);
    else if (rec?.notificationSent)
      msg = encodePeerDown(p, PeerDownReason.LocalNotification, {
        notification: rec.notificationSent,
      });
    else if (rec?.notificationReceived)
      msg = encodePeerDown(p, PeerDownReason.RemoteNotification, {
        notification: rec.notificationReceived,
      });
    else if (rec?.closedBy === "remote")
      msg = encodePeerDown(p, PeerDownReason.RemoteNoNotification);
    // We dropped it without a NOTIFICATION (e.g. BFD said the peer is down): FSM event unknown.
    else msg = encodePeerDown(p, PeerDownReason.LocalNoNotification, { fsmEvent: 0 });
    this.o.emit(msg);
    this.counters.peerDown++;
  }
}

/** The RFC 7854 §4.8 statistics the RIB counts for a peer. */
function statsOf(v: TapPeerView, adjRibOut: boolean | undefined): Stat[] {
  const counts = v.counts();
  const r = counts.rejected;
  const policy = (r.FilterReject ?? 0) + (r.OwnPoolPrefix ?? 0) + (r.NotOwned ?? 0);
  const stats: Stat[] = [
    { type: StatType.RejectedByPolicy, value: policy },
    { type: StatType.ClusterListLoop, value: r.ClusterListLoop ?? 0 },
    { type: StatType.AsPathLoop, value: r.AsPathLoop ?? 0 },
    { type: StatType.OriginatorIdLoop, value: r.OriginatorIdLoop ?? 0 },
    { type: StatType.AdjRibInRoutes, value: BigInt(counts.received) },
  ];
  if (adjRibOut)
    stats.push({ type: StatType.AdjRibOutPostRoutes, value: BigInt(counts.advertised) });
  return stats;
}
