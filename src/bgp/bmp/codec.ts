// BMP, the BGP Monitoring Protocol (RFC 7854), pure: the common header, the per-peer header and
// every message a monitored router sends (Initiation, Peer Up, Peer Down, Route Monitoring,
// Statistics Report, Termination), with RFC 8671's Adj-RIB-Out flag. Values in, bytes out, and
// the decoder a station (or a test) reads them back with. Not: sockets, what to send when
// (monitor.ts, client.ts).
import { isIPv4, isIPv6 } from "node:net";
import { ipBytes } from "../mrt/table_dump_v2.js";

export const BMP_VERSION = 3;

export const BmpType = {
  RouteMonitoring: 0,
  StatisticsReport: 1,
  PeerDown: 2,
  PeerUp: 3,
  Initiation: 4,
  Termination: 5,
  RouteMirroring: 6,
} as const;

/** Initiation TLVs (§4.3). */
export const InitiationTlv = { String: 0, SysDescr: 1, SysName: 2 } as const;
/** Termination TLVs and reasons (§4.5). */
export const TerminationTlv = { String: 0, Reason: 1 } as const;
export const TerminationReason = {
  AdminClose: 0,
  Unspecified: 1,
  OutOfResources: 2,
  RedundantConnection: 3,
  PermanentlyAdminClose: 4,
} as const;

/** Peer Down reasons (§4.9). */
export const PeerDownReason = {
  /** We closed the session with a NOTIFICATION (data: the NOTIFICATION PDU). */
  LocalNotification: 1,
  /** We closed it without a NOTIFICATION (data: the FSM event code, 2 octets). */
  LocalNoNotification: 2,
  /** The peer closed it with a NOTIFICATION (data: the NOTIFICATION PDU). */
  RemoteNotification: 3,
  /** The peer closed it without a NOTIFICATION (TCP closed). */
  RemoteNoNotification: 4,
  /** The peer was removed from the configuration: it is no longer monitored. */
  Deconfigured: 5,
} as const;

/**
 * Statistics types (§4.8; 14-17 from RFC 8671). Counters are 32-bit, gauges 64-bit, the
 * per-AFI/SAFI gauges AFI (2) + SAFI (1) + 64-bit.
 */
export const StatType = {
  RejectedByPolicy: 0,
  DuplicatePrefix: 1,
  DuplicateWithdraw: 2,
  ClusterListLoop: 3,
  AsPathLoop: 4,
  OriginatorIdLoop: 5,
  AsConfedLoop: 6,
  AdjRibInRoutes: 7,
  LocRibRoutes: 8,
  AdjRibInRoutesPerAfiSafi: 9,
  LocRibRoutesPerAfiSafi: 10,
  UpdatesTreatAsWithdraw: 11,
  PrefixesTreatAsWithdraw: 12,
  DuplicateUpdates: 13,
  AdjRibOutPreRoutes: 14,
  AdjRibOutPostRoutes: 15,
  AdjRibOutPreRoutesPerAfiSafi: 16,
  AdjRibOutPostRoutesPerAfiSafi: 17,
} as const;

const COUNTERS = new Set<number>([0, 1, 2, 3, 4, 5, 6, 11, 12, 13]);
const PER_AFI = new Set<number>([9, 10, 16, 17]);

/** Per-peer header flags (§4.2; O from RFC 8671). */
export const PeerFlag = { V: 0x80, L: 0x40, A: 0x20, O: 0x10 } as const;

export interface BmpPeer {
  /** 0: global instance peer (§4.2). */
  type?: number;
  address: string;
  asn: number;
  /** The peer's BGP Identifier as dotted quad. */
  bgpId: string;
  /** Post-policy (L flag) rather than pre-policy. */
  postPolicy?: boolean;
  /** The session uses 2-octet AS numbers (A flag: AS_PATH in the legacy format). */
  legacyAsPath?: boolean;
  /** RFC 8671: Adj-RIB-Out rather than Adj-RIB-In (O flag). */
  adjRibOut?: boolean;
  /** Milliseconds since the epoch of the event. */
  timeMs: number;
}

export interface Stat {
  type: number;
  value: number | bigint;
  afi?: number;
  safi?: number;
}

function header(type: number, bodyLength: number): Buffer {
  const h = Buffer.alloc(6);
  h.writeUInt8(BMP_VERSION, 0);
  h.writeUInt32BE(6 + bodyLength, 1);
  h.writeUInt8(type, 5);
  return h;
}

function message(type: number, parts: Uint8Array[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([header(type, body.length), body]);
}

/** A 16-octet address field: IPv6 as is, IPv4 in the last four octets (§4.2). */
function addr16(a: string): Buffer {
  const out = Buffer.alloc(16);
  if (isIPv4(a)) ipBytes(a).copy(out, 12);
  else if (isIPv6(a)) ipBytes(a).copy(out, 0);
  else throw new Error(`BMP: "${a}" is not an IP address`);
  return out;
}

export function perPeerHeader(p: BmpPeer): Buffer {
  const h = Buffer.alloc(42);
  h.writeUInt8(p.type ?? 0, 0);
  let flags = 0;
  if (!isIPv4(p.address)) flags |= PeerFlag.V;
  if (p.postPolicy) flags |= PeerFlag.L;
  if (p.legacyAsPath) flags |= PeerFlag.A;
  if (p.adjRibOut) flags |= PeerFlag.O;
  h.writeUInt8(flags, 1);
  // Peer Distinguisher (8 octets) stays zero for a global instance peer.
  addr16(p.address).copy(h, 10);
  h.writeUInt32BE(p.asn >>> 0, 26);
  if (!isIPv4(p.bgpId)) throw new Error(`BMP: peer BGP ID "${p.bgpId}" is not dotted quad`);
  ipBytes(p.bgpId).copy(h, 30);
  h.writeUInt32BE(Math.floor(p.timeMs / 1000) >>> 0, 34);
  h.writeUInt32BE(Math.round((p.timeMs % 1000) * 1000) >>> 0, 38);
  return h;
}

function tlv(type: number, value: Uint8Array): Buffer {
  if (value.length > 0xffff) throw new Error(`BMP: TLV ${type} longer than 65535 octets`);
  const h = Buffer.alloc(4);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(value.length, 2);
  return Buffer.concat([h, value]);
}

/** Initiation (§4.3): sysDescr and sysName are required, free text strings may follow. */
export function encodeInitiation(i: {
  sysDescr: string;
  sysName: string;
  text?: string[];
}): Buffer {
  return message(BmpType.Initiation, [
    tlv(InitiationTlv.SysDescr, Buffer.from(i.sysDescr)),
    tlv(InitiationTlv.SysName, Buffer.from(i.sysName)),
    ...(i.text ?? []).map((s) => tlv(InitiationTlv.String, Buffer.from(s))),
  ]);
}

/** Termination (§4.5): a reason and optional text. */
export function encodeTermination(reason: number, text?: string): Buffer {
  const r = Buffer.alloc(2);
  r.writeUInt16BE(reason, 0);
  return message(BmpType.Termination, [
    ...(text ? [tlv(TerminationTlv.String, Buffer.from(text))] : []),
    tlv(TerminationTlv.Reason, r),
  ]);
}

export interface PeerUpInfo {
  localAddress: string;
  localPort: number;
  remotePort: number;
  /** Both OPEN messages as sent on the wire (BGP header included). */
  sentOpen: Uint8Array;
  receivedOpen: Uint8Array;
}

/** Peer Up Notification (§4.10). */
export function encodePeerUp(p: BmpPeer, u: PeerUpInfo): Buffer {
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(u.localPort, 0);
  ports.writeUInt16BE(u.remotePort, 2);
  // The local address is in the peer's family (§4.10: V flag decides how both are read).
  const local =
    isIPv4(p.address) === isIPv4(u.localAddress)
      ? u.localAddress
      : isIPv4(p.address)
        ? "0.0.0.0"
        : "::";
  return message(BmpType.PeerUp, [
    perPeerHeader(p),
    addr16(local),
    ports,
    u.sentOpen,
    u.receivedOpen,
  ]);
}

/** Peer Down Notification (§4.9): data is the NOTIFICATION PDU (1, 3) or the FSM event (2). */
export function encodePeerDown(
  p: BmpPeer,
  reason: number,
  data?: { notification?: Uint8Array; fsmEvent?: number },
): Buffer {
  const parts: Uint8Array[] = [perPeerHeader(p), Buffer.of(reason)];
  if (reason === PeerDownReason.LocalNotification || reason === PeerDownReason.RemoteNotification) {
    if (!data?.notification)
      throw new Error(`BMP: Peer Down reason ${reason} needs a NOTIFICATION`);
    parts.push(data.notification);
  } else if (reason === PeerDownReason.LocalNoNotification) {
    const e = Buffer.alloc(2);
    e.writeUInt16BE(data?.fsmEvent ?? 0, 0);
    parts.push(e);
  }
  return message(BmpType.PeerDown, parts);
}

/** Route Monitoring (§4.6): one BGP UPDATE PDU as received (or sent, with adjRibOut). */
export function encodeRouteMonitoring(p: BmpPeer, update: Uint8Array): Buffer {
  return message(BmpType.RouteMonitoring, [perPeerHeader(p), update]);
}

/** Statistics Report (§4.8). */
export function encodeStatsReport(p: BmpPeer, stats: Stat[]): Buffer {
  const parts: Uint8Array[] = [perPeerHeader(p)];
  const count = Buffer.alloc(4);
  count.writeUInt32BE(stats.length, 0);
  parts.push(count);
  for (const s of stats) {
    let v: Buffer;
    if (COUNTERS.has(s.type)) {
      v = Buffer.alloc(4);
      v.writeUInt32BE(Number(s.value) >>> 0, 0);
    } else if (PER_AFI.has(s.type)) {
      if (s.afi === undefined || s.safi === undefined)
        throw new Error(`BMP: statistic ${s.type} needs afi and safi`);
      v = Buffer.alloc(11);
      v.writeUInt16BE(s.afi, 0);
      v.writeUInt8(s.safi, 2);
      v.writeBigUInt64BE(BigInt(s.value), 3);
    } else {
      v = Buffer.alloc(8);
      v.writeBigUInt64BE(BigInt(s.value), 0);
    }
    parts.push(tlv(s.type, v));
  }
  return message(BmpType.StatisticsReport, parts);
}

// ---- decoding (a station's side; tests read the speaker's stream with it) ------------------

export interface DecodedPeer {
  type: number;
  flags: number;
  address: string;
  asn: number;
  bgpId: string;
  timeSeconds: number;
  timeMicros: number;
}

export type BmpMessage =
  | { type: "Initiation"; tlvs: { type: number; value: string }[] }
  | { type: "Termination"; reason: number | undefined; text: string[] }
  | {
      type: "PeerUp";
      peer: DecodedPeer;
      localAddress: string;
      localPort: number;
      remotePort: number;
      sentOpen: Buffer;
      receivedOpen: Buffer;
    }
  | { type: "PeerDown"; peer: DecodedPeer; reason: number; data: Buffer }
  | { type: "RouteMonitoring"; peer: DecodedPeer; update: Buffer }
  | { type: "StatisticsReport"; peer: DecodedPeer; stats: Stat[] };

function readAddr16(b: Buffer, off: number, v6: boolean): string {
  if (!v6) return [12, 13, 14, 15].map((i) => b[off + i]).join(".");
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(b.readUInt16BE(off + i).toString(16));
  return parts.join(":").replace(/(^|:)0(:0)+(:|$)/, "::");
}

function readPeer(b: Buffer): DecodedPeer {
  if (b.length < 42) throw new Error("BMP: per-peer header truncated");
  const flags = b.readUInt8(1);
  return {
    type: b.readUInt8(0),
    flags,
    address: readAddr16(b, 10, (flags & PeerFlag.V) !== 0),
    asn: b.readUInt32BE(26),
    bgpId: [30, 31, 32, 33].map((i) => b[i]).join("."),
    timeSeconds: b.readUInt32BE(34),
    timeMicros: b.readUInt32BE(38),
  };
}

function readTlvs(b: Buffer): { type: number; value: Buffer }[] {
  const out: { type: number; value: Buffer }[] = [];
  let o = 0;
  while (o < b.length) {
    if (o + 4 > b.length) throw new Error("BMP: TLV header truncated");
    const len = b.readUInt16BE(o + 2);
    if (o + 4 + len > b.length) throw new Error("BMP: TLV value truncated");
    out.push({ type: b.readUInt16BE(o), value: b.subarray(o + 4, o + 4 + len) });
    o += 4 + len;
  }
  return out;
}

/** The length of one BGP message at `off` (from its header), checked against what is there. */
function bgpLength(b: Buffer, off: number, what: string): number {
  if (off + 19 > b.length) throw new Error(`BMP: ${what} truncated`);
  const len = b.readUInt16BE(off + 16);
  if (len < 19 || off + len > b.length) throw new Error(`BMP: ${what} length ${len} is wrong`);
  return len;
}

/**
 * Splits a byte stream into whole BMP messages and decodes them; returns the messages and the
 * bytes of an incomplete last message (to prepend to the next chunk).
 */
export function decodeStream(buf: Buffer): { messages: BmpMessage[]; rest: Buffer } {
  const messages: BmpMessage[] = [];
  let o = 0;
  while (o + 6 <= buf.length) {
    const version = buf.readUInt8(o);
    if (version !== BMP_VERSION) throw new Error(`BMP: version ${version}, expected 3`);
    const len = buf.readUInt32BE(o + 1);
    if (len < 6) throw new Error(`BMP: message length ${len} is shorter than its header`);
    if (o + len > buf.length) break;
    messages.push(decodeMessage(buf.subarray(o, o + len)));
    o += len;
  }
  return { messages, rest: buf.subarray(o) };
}

/** One whole BMP message (common header included). */
export function decodeMessage(m: Buffer): BmpMessage {
  const type = m.readUInt8(5);
  const body = m.subarray(6);
  switch (type) {
    case BmpType.Initiation:
      return {
        type: "Initiation",
        tlvs: readTlvs(body).map((t) => ({ type: t.type, value: t.value.toString() })),
      };
    case BmpType.Termination: {
      const tlvs = readTlvs(body);
      const r = tlvs.find((t) => t.type === TerminationTlv.Reason);
      return {
        type: "Termination",
        reason: r ? r.value.readUInt16BE(0) : undefined,
        text: tlvs.filter((t) => t.type === TerminationTlv.String).map((t) => t.value.toString()),
      };
    }
    case BmpType.PeerUp: {
      const peer = readPeer(body);
      const rest = body.subarray(42);
      if (rest.length < 20) throw new Error("BMP: Peer Up truncated");
      const sentLen = bgpLength(rest, 20, "Peer Up sent OPEN");
      const recvLen = bgpLength(rest, 20 + sentLen, "Peer Up received OPEN");
      return {
        type: "PeerUp",
        peer,
        localAddress: readAddr16(rest, 0, (peer.flags & PeerFlag.V) !== 0),
        localPort: rest.readUInt16BE(16),
        remotePort: rest.readUInt16BE(18),
        sentOpen: rest.subarray(20, 20 + sentLen),
        receivedOpen: rest.subarray(20 + sentLen, 20 + sentLen + recvLen),
      };
    }
    case BmpType.PeerDown: {
      const peer = readPeer(body);
      if (body.length < 43) throw new Error("BMP: Peer Down truncated");
      return { type: "PeerDown", peer, reason: body.readUInt8(42), data: body.subarray(43) };
    }
    case BmpType.RouteMonitoring: {
      const peer = readPeer(body);
      const update = body.subarray(42);
      const len = bgpLength(update, 0, "Route Monitoring UPDATE");
      if (len !== update.length) throw new Error("BMP: Route Monitoring holds more than one PDU");
      return { type: "RouteMonitoring", peer, update };
    }
    case BmpType.StatisticsReport: {
      const peer = readPeer(body);
      const count = body.readUInt32BE(42);
      const tlvs = readTlvs(body.subarray(46));
      if (tlvs.length !== count)
        throw new Error(`BMP: Statistics Report says ${count} stats, holds ${tlvs.length}`);
      const stats = tlvs.map((t): Stat => {
        if (PER_AFI.has(t.type))
          return {
            type: t.type,
            afi: t.value.readUInt16BE(0),
            safi: t.value.readUInt8(2),
            value: t.value.readBigUInt64BE(3),
          };
        if (COUNTERS.has(t.type)) return { type: t.type, value: t.value.readUInt32BE(0) };
        return { type: t.type, value: t.value.readBigUInt64BE(0) };
      });
      return { type: "StatisticsReport", peer, stats };
    }
    default:
      throw new Error(`BMP: message type ${type} is not one a router sends here`);
  }
}
