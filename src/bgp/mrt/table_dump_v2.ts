// MRT (RFC 6396) TABLE_DUMP_V2 of a Loc-RIB, pure: a PEER_INDEX_TABLE record, then one
// RIB_IPV4_UNICAST or RIB_IPV6_UNICAST record per prefix with its entries (peer index,
// originated time, path attributes: ORIGIN, 4-octet AS_PATH (§4.3.4), NEXT_HOP or, for IPv6,
// MP_REACH_NLRI holding only the next hop (§4.3.4), MULTI_EXIT_DISC, LOCAL_PREF, COMMUNITIES,
// LARGE_COMMUNITY). Values in, bytes out. Not: reading the RIB or writing the file.
import { isIPv4 } from "node:net";

/** RFC 6396 §4: MRT types and TABLE_DUMP_V2 subtypes. */
export const MrtType = { TableDumpV2: 13, Bgp4mp: 16 } as const;
export const TableDumpV2Subtype = {
  PeerIndexTable: 1,
  RibIpv4Unicast: 2,
  RibIpv6Unicast: 4,
} as const;

/** Path attribute type codes (RFC 4271, 1997, 4760, 8092). */
const Attr = {
  Origin: 1,
  AsPath: 2,
  NextHop: 3,
  MultiExitDisc: 4,
  LocalPref: 5,
  Communities: 8,
  MpReachNlri: 14,
  LargeCommunity: 32,
} as const;
const FLAG_OPTIONAL = 0x80;
const FLAG_TRANSITIVE = 0x40;
const FLAG_EXTENDED = 0x10;

export interface MrtPeer {
  bgpId: string;
  address: string;
  asn: number;
}

export interface MrtPath {
  /** Index into the peer table. */
  peer: number;
  originatedTime: number;
  origin: 0 | 1 | 2;
  /** AS_SEQUENCE of 4-octet ASNs (AS_SETs are written as a sequence segment of type 1). */
  asPath: { type: 1 | 2; asns: number[] }[];
  nextHop: string;
  med?: number;
  localPref?: number;
  /** RFC 1997 communities as 32-bit numbers. */
  communities: number[];
  largeCommunities: [number, number, number][];
}

export interface MrtRoute {
  prefix: string;
  paths: MrtPath[];
}

class Writer {
  private chunks: Buffer[] = [];
  u8(v: number): this {
    this.chunks.push(Buffer.from([v & 0xff]));
    return this;
  }
  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    this.chunks.push(b);
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    this.chunks.push(b);
    return this;
  }
  bytes(b: Uint8Array): this {
    this.chunks.push(Buffer.from(b));
    return this;
  }
  done(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** An IPv4 or IPv6 address as its 4 or 16 bytes. */
export function ipBytes(address: string): Buffer {
  if (isIPv4(address)) return Buffer.from(address.split(".").map(Number));
  const [head, tail = ""] = address.split("::") as [string, string?];
  const part = (s: string | undefined) => (s ? s.split(":") : []);
  const h = part(head);
  const t = part(tail);
  const groups = address.includes("::")
    ? [...h, ...Array(8 - h.length - t.length).fill("0"), ...t]
    : h;
  if (groups.length !== 8) throw new Error(`"${address}" is not an IPv6 address`);
  const b = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) b.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  return b;
}

/** One MRT record: common header (§2) and body. */
export function mrtRecord(timestamp: number, type: number, subtype: number, body: Buffer): Buffer {
  return Buffer.concat([
    new Writer().u32(timestamp).u16(type).u16(subtype).u32(body.length).done(),
    body,
  ]);
}

/** §4.3.1 PEER_INDEX_TABLE: collector BGP ID, view name, peers (AS4, address family bits). */
export function peerIndexTable(collectorId: string, viewName: string, peers: MrtPeer[]): Buffer {
  const w = new Writer().bytes(ipBytes(collectorId)).u16(Buffer.byteLength(viewName));
  w.bytes(Buffer.from(viewName)).u16(peers.length);
  for (const p of peers) {
    const v6 = !isIPv4(p.address);
    // Peer Type: bit 0 (0x01) IPv6 address, bit 1 (0x02) 4-octet AS.
    w.u8((v6 ? 0x01 : 0) | 0x02)
      .bytes(ipBytes(p.bgpId))
      .bytes(ipBytes(p.address))
      .u32(p.asn);
  }
  return w.done();
}

function attr(flags: number, type: number, value: Buffer): Buffer {
  const ext = value.length > 255;
  const w = new Writer().u8(flags | (ext ? FLAG_EXTENDED : 0)).u8(type);
  if (ext) w.u16(value.length);
  else w.u8(value.length);
  return Buffer.concat([w.done(), value]);
}

/** The path attributes of one RIB entry, as §4.3.4 asks (AS_PATH 4-octet, IPv6 next hop only). */
export function entryAttributes(p: MrtPath, v6: boolean): Buffer {
  const out: Buffer[] = [attr(FLAG_TRANSITIVE, Attr.Origin, Buffer.from([p.origin]))];
  const ap = new Writer();
  for (const seg of p.asPath) {
    ap.u8(seg.type).u8(seg.asns.length);
    for (const a of seg.asns) ap.u32(a);
  }
  out.push(attr(FLAG_TRANSITIVE, Attr.AsPath, ap.done()));
  if (!v6) out.push(attr(FLAG_TRANSITIVE, Attr.NextHop, ipBytes(p.nextHop)));
  if (p.med !== undefined) out.push(attr(FLAG_OPTIONAL, Attr.MultiExitDisc, u32(p.med)));
  if (p.localPref !== undefined) out.push(attr(FLAG_TRANSITIVE, Attr.LocalPref, u32(p.localPref)));
  if (p.communities.length > 0)
    out.push(
      attr(
        FLAG_OPTIONAL | FLAG_TRANSITIVE,
        Attr.Communities,
        Buffer.concat(p.communities.map(u32)),
      ),
    );
  if (p.largeCommunities.length > 0)
    out.push(
      attr(
        FLAG_OPTIONAL | FLAG_TRANSITIVE,
        Attr.LargeCommunity,
        Buffer.concat(p.largeCommunities.flatMap((c) => c.map(u32))),
      ),
    );
  if (v6) {
    // §4.3.4: only the Next Hop Length and Next Hop fields of MP_REACH_NLRI.
    const nh = ipBytes(p.nextHop);
    out.push(attr(FLAG_OPTIONAL, Attr.MpReachNlri, Buffer.concat([Buffer.from([nh.length]), nh])));
  }
  return Buffer.concat(out);
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
}

/** §4.3.2 RIB_IPV4_UNICAST / RIB_IPV6_UNICAST body for one prefix. */
export function ribEntryBody(sequence: number, route: MrtRoute): Buffer {
  const [addr, lenText] = route.prefix.split("/") as [string, string];
  const len = Number(lenText);
  const v6 = !isIPv4(addr);
  const prefixBytes = ipBytes(addr).subarray(0, Math.ceil(len / 8));
  const w = new Writer().u32(sequence).u8(len).bytes(prefixBytes).u16(route.paths.length);
  for (const p of route.paths) {
    const a = entryAttributes(p, v6);
    w.u16(p.peer).u32(p.originatedTime).u16(a.length).bytes(a);
  }
  return w.done();
}

/** A whole TABLE_DUMP_V2 dump: the peer table, then every route in the order given. */
export function tableDumpV2(
  timestamp: number,
  collectorId: string,
  viewName: string,
  peers: MrtPeer[],
  routes: MrtRoute[],
): Buffer {
  const out = [
    mrtRecord(
      timestamp,
      MrtType.TableDumpV2,
      TableDumpV2Subtype.PeerIndexTable,
      peerIndexTable(collectorId, viewName, peers),
    ),
  ];
  routes.forEach((r, seq) => {
    const v6 = !isIPv4(r.prefix.split("/")[0] as string);
    const sub = v6 ? TableDumpV2Subtype.RibIpv6Unicast : TableDumpV2Subtype.RibIpv4Unicast;
    out.push(mrtRecord(timestamp, MrtType.TableDumpV2, sub, ribEntryBody(seq, r)));
  });
  return Buffer.concat(out);
}
