// rtnetlink message codec, pure: encodes route, link (veth pairs too), address and neighbour
// requests (RTM_NEWNEIGH / DELNEIGH: neighbours, and VXLAN FDB entries as AF_BRIDGE neighbours)
// into Buffers and decodes route, link, address, error and done messages from received bytes.
// Owns: byte layouts and kernel constants. Not: the socket (netlink_socket.ts) or FIB policy.

import { isIPv4 } from "node:net";
import { addressBytes, formatIPv6 } from "../lib/ip.js";
import type { NextHop, Route, RouteScope, RouteType } from "./types.js";

/** Address bytes for route attributes (the parser itself lives in lib/ip.ts). */
export { addressBytes };

// <linux/netlink.h>
export const NETLINK_ROUTE = 0;
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;
export const NLMSGERR_ATTR_MSG = 1;
export const SOL_NETLINK = 270;
export const NETLINK_ADD_MEMBERSHIP = 1;
export const NETLINK_NO_ENOBUFS = 5;
export const NLMSG_HDRLEN = 16;

// <linux/rtnetlink.h>
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTNLGRP_LINK = 1;
export const RTNLGRP_IPV4_IFADDR = 5;
export const RTNLGRP_IPV4_ROUTE = 7;
export const RTNLGRP_IPV6_IFADDR = 9;
export const RTNLGRP_IPV6_ROUTE = 11;
/** Above 31: joined with NETLINK_ADD_MEMBERSHIP, not in bind()'s group mask. */
export const RTNLGRP_NEXTHOP = 32;
export const RTA_DST = 1;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const RTA_PRIORITY = 6;
export const RTA_PREFSRC = 7;
export const RTA_MULTIPATH = 9;
export const RTA_TABLE = 15;
/** struct rtvia: a gateway of another family (RFC 8950: an IPv4 route via an IPv6 next hop). */
export const RTA_VIA = 18;
/** A route's nexthop object (its id) instead of a gateway of its own. */
export const RTA_NH_ID = 30;
// <linux/nexthop.h>: nexthop objects (Linux 5.3+)
export const RTM_NEWNEXTHOP = 104;
export const RTM_DELNEXTHOP = 105;
export const RTM_GETNEXTHOP = 106;
export const NHA_ID = 1;
/** A group's members: struct nexthop_grp { u32 id; u8 weight - 1; u8, u16 reserved } each. */
export const NHA_GROUP = 2;
export const NHA_OIF = 5;
export const NHA_GATEWAY = 6;
export const NHMSG_LEN = 8;
export const RTN_UNICAST = 1;
export const RTN_BLACKHOLE = 6;
export const RTN_UNREACHABLE = 7;
export const RTN_PROHIBIT = 8;
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_HOST = 254;
export const RT_SCOPE_NOWHERE = 255;
export const RT_TABLE_UNSPEC = 0;
export const RT_TABLE_COMPAT = 252;
export const RTNH_F_ONLINK = 4;
export const RTNH_F_LINKDOWN = 16;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const RTPROT_BOOT = 3;
export const AF_BRIDGE = 7;
// <linux/neighbour.h>
export const NDA_DST = 1;
export const NDA_LLADDR = 2;
export const NDA_PROTOCOL = 12;
export const NUD_PERMANENT = 0x80;
export const NTF_SELF = 0x02;
export const NDMSG_LEN = 12;
// <linux/if_link.h>, <linux/if.h>, <linux/veth.h>
export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINKINFO = 18;
export const IFLA_NET_NS_FD = 28;
export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;
export const VETH_INFO_PEER = 1;
// <linux/if_addr.h>
export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_FLAGS = 8;
export const IFA_F_NODAD = 0x02;
export const IFF_UP = 0x1;
export const IFF_LOWER_UP = 0x10000;

export const RTMSG_LEN = 12;
export const IFINFOMSG_LEN = 16;
export const RTNEXTHOP_LEN = 8;
export const IFADDRMSG_LEN = 8;

const ROUTE_TYPES: Record<RouteType, number> = {
  unicast: RTN_UNICAST,
  blackhole: RTN_BLACKHOLE,
  unreachable: RTN_UNREACHABLE,
  prohibit: RTN_PROHIBIT,
};
const SCOPES: Record<RouteScope, number> = {
  universe: RT_SCOPE_UNIVERSE,
  link: RT_SCOPE_LINK,
  host: RT_SCOPE_HOST,
};

export const align4 = (n: number): number => (n + 3) & ~3;

export function routeTypeCode(t: RouteType): number {
  return ROUTE_TYPES[t];
}

export function routeTypeName(code: number): RouteType | undefined {
  for (const [name, c] of Object.entries(ROUTE_TYPES)) if (c === code) return name as RouteType;
  return undefined;
}

export function scopeName(code: number): RouteScope | undefined {
  for (const [name, c] of Object.entries(SCOPES)) if (c === code) return name as RouteScope;
  return undefined;
}

export function formatAddress(bytes: Uint8Array): string {
  return bytes.length === 4 ? `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}` : formatIPv6(bytes);
}

/** Splits "a/len" and checks that the host bits are zero. */
export function parseCidr(family: 4 | 6, cidr: string): { addr: Uint8Array; len: number } {
  const slash = cidr.indexOf("/");
  if (slash < 0) throw new Error(`Route destination is not in CIDR form: "${cidr}"`);
  const addr = addressBytes(family, cidr.slice(0, slash));
  const lenText = cidr.slice(slash + 1);
  const len = Number(lenText);
  const max = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(lenText) || len > max)
    throw new Error(`Invalid prefix length in "${cidr}"`);
  for (let bit = len; bit < max; bit++) {
    if (addr[bit >> 3] & (0x80 >> (bit & 7)))
      throw new Error(`Route destination has host bits set: "${cidr}"`);
  }
  return { addr, len };
}

/** A growable output buffer for many netlink messages, sent in one sendmsg. */
export class MessageWriter {
  buf: Buffer;
  len = 0;
  constructor(capacity = 64 * 1024) {
    this.buf = Buffer.alloc(capacity);
  }
  reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
  reset(): void {
    this.len = 0;
  }
  /** Starts a message; returns its offset (for finish()). */
  begin(type: number, flags: number, seq: number): number {
    this.reserve(NLMSG_HDRLEN);
    const at = this.len;
    const b = this.buf;
    b.writeUInt32LE(0, at);
    b.writeUInt16LE(type, at + 4);
    b.writeUInt16LE(flags, at + 6);
    b.writeUInt32LE(seq >>> 0, at + 8);
    b.writeUInt32LE(0, at + 12);
    this.len += NLMSG_HDRLEN;
    return at;
  }
  finish(at: number): void {
    this.buf.writeUInt32LE(this.len - at, at);
  }
  rtmsg(
    family: number,
    dstLen: number,
    table: number,
    protocol: number,
    scope: number,
    type: number,
    flags: number,
  ): void {
    this.reserve(RTMSG_LEN);
    const b = this.buf;
    const o = this.len;
    b[o] = family;
    b[o + 1] = dstLen;
    b[o + 2] = 0;
    b[o + 3] = 0;
    b[o + 4] = table > 255 ? RT_TABLE_COMPAT : table;
    b[o + 5] = protocol;
    b[o + 6] = scope;
    b[o + 7] = type;
    b.writeUInt32LE(flags >>> 0, o + 8);
    this.len += RTMSG_LEN;
  }
  attrU32(type: number, value: number): void {
    this.reserve(8);
    this.buf.writeUInt16LE(8, this.len);
    this.buf.writeUInt16LE(type, this.len + 2);
    this.buf.writeUInt32LE(value >>> 0, this.len + 4);
    this.len += 8;
  }
  attrBytes(type: number, data: Uint8Array): void {
    const l = 4 + data.length;
    this.reserve(align4(l));
    this.buf.writeUInt16LE(l, this.len);
    this.buf.writeUInt16LE(type, this.len + 2);
    this.buf.set(data, this.len + 4);
    this.buf.fill(0, this.len + l, this.len + align4(l));
    this.len += align4(l);
  }
  /** Starts a nested attribute; returns its offset for endNest(). */
  beginNest(type: number): number {
    this.reserve(4);
    const at = this.len;
    this.buf.writeUInt16LE(type, at + 2);
    this.len += 4;
    return at;
  }
  endNest(at: number): void {
    this.buf.writeUInt16LE(this.len - at, at);
  }
}

/** A next hop resolved to numbers: gateway bytes and interface index (0 = none). */
export interface EncodedNextHop {
  gateway?: Uint8Array;
  ifindex: number;
  onlink: boolean;
  weight: number;
}

/** What a route request carries, resolved (interface names already turned into indexes). */
export interface RouteRequest {
  family: 4 | 6;
  dst: Uint8Array;
  dstLen: number;
  table: number;
  protocol: number;
  type: number;
  scope: number;
  metric: number;
  nexthops: EncodedNextHop[];
  prefsrc?: Uint8Array;
  /** RTM_NEWROUTE through this nexthop object (RTA_NH_ID) instead of `nexthops`. */
  nhId?: number;
}

/** Appends one RTM_NEWROUTE (flags e.g. CREATE|REPLACE) or RTM_DELROUTE. */
export function writeRoute(
  w: MessageWriter,
  msgType: number,
  flags: number,
  seq: number,
  r: RouteRequest,
): void {
  const at = w.begin(msgType, NLM_F_REQUEST | flags, seq);
  const single = r.nexthops.length === 1 ? r.nexthops[0] : undefined;
  const rtFlags = single?.onlink ? RTNH_F_ONLINK : 0;
  w.rtmsg(
    r.family === 4 ? AF_INET : AF_INET6,
    r.dstLen,
    r.table,
    r.protocol,
    r.scope,
    r.type,
    rtFlags,
  );
  w.attrBytes(RTA_DST, r.family === 4 ? r.dst.subarray(0, 4) : r.dst);
  w.attrU32(RTA_TABLE, r.table);
  if (r.metric) w.attrU32(RTA_PRIORITY, r.metric);
  if (r.prefsrc) w.attrBytes(RTA_PREFSRC, r.prefsrc);
  if (msgType === RTM_NEWROUTE && r.nhId) w.attrU32(RTA_NH_ID, r.nhId);
  else if (msgType === RTM_NEWROUTE) {
    if (single) {
      if (single.gateway) writeGateway(w, r.family, single.gateway);
      if (single.ifindex) w.attrU32(RTA_OIF, single.ifindex);
    } else if (r.nexthops.length > 1) {
      const mp = w.beginNest(RTA_MULTIPATH);
      for (const nh of r.nexthops) {
        w.reserve(RTNEXTHOP_LEN);
        const o = w.len;
        w.buf[o + 2] = nh.onlink ? RTNH_F_ONLINK : 0;
        w.buf[o + 3] = Math.max(0, Math.min(255, nh.weight - 1));
        w.buf.writeInt32LE(nh.ifindex, o + 4);
        w.len += RTNEXTHOP_LEN;
        if (nh.gateway) writeGateway(w, r.family, nh.gateway);
        w.buf.writeUInt16LE(w.len - o, o);
      }
      w.endNest(mp);
    }
  }
  w.finish(at);
}

/** RTA_GATEWAY, or RTA_VIA (family + address) for an IPv6 gateway of an IPv4 route. */
function writeGateway(w: MessageWriter, family: 4 | 6, gw: Uint8Array): void {
  if (family === 6 || gw.length === 4) {
    w.attrBytes(RTA_GATEWAY, gw);
    return;
  }
  const via = new Uint8Array(2 + gw.length);
  via[0] = AF_INET6 & 0xff; // __kernel_sa_family_t, host order (little-endian here)
  via[1] = AF_INET6 >> 8;
  via.set(gw, 2);
  w.attrBytes(RTA_VIA, via);
}

/**
 * A nexthop object (what a route names by RTA_NH_ID): one gateway through one interface, or a
 * group of such objects with weights 1..256 (ECMP; the kernel's default multipath group type).
 */
export type NexthopRequest =
  | { id: number; family: 4 | 6; protocol: number; gateway: Uint8Array; oif: number }
  | { id: number; protocol: number; group: NexthopGroupMember[] };

export interface NexthopGroupMember {
  id: number;
  /** 1..256 (sent as weight - 1). */
  weight: number;
}

/** Appends one RTM_NEWNEXTHOP (flags e.g. CREATE|EXCL, or CREATE|REPLACE). */
export function writeNexthop(
  w: MessageWriter,
  flags: number,
  seq: number,
  nh: NexthopRequest,
): void {
  const at = w.begin(RTM_NEWNEXTHOP, NLM_F_REQUEST | flags, seq);
  w.reserve(NHMSG_LEN);
  // struct nhmsg: family, scope (must be 0), protocol, reserved, flags (u32).
  w.buf.fill(0, w.len, w.len + NHMSG_LEN);
  // A group's family is AF_UNSPEC (its members carry theirs).
  if ("gateway" in nh) w.buf[w.len] = nh.family === 4 ? AF_INET : AF_INET6;
  w.buf[w.len + 2] = nh.protocol;
  w.len += NHMSG_LEN;
  w.attrU32(NHA_ID, nh.id);
  if ("gateway" in nh) {
    w.attrU32(NHA_OIF, nh.oif);
    w.attrBytes(NHA_GATEWAY, nh.gateway);
  } else {
    const members = new Uint8Array(8 * nh.group.length);
    const v = new DataView(members.buffer);
    nh.group.forEach((m, i) => {
      v.setUint32(i * 8, m.id, true);
      members[i * 8 + 4] = Math.max(0, Math.min(255, m.weight - 1));
    });
    w.attrBytes(NHA_GROUP, members);
  }
  w.finish(at);
}

/** RTM_GETNEXTHOP: one object by id, or (id 0) a dump of all; RTM_DELNEXTHOP with `del`. */
export function writeNexthopGet(
  w: MessageWriter,
  flags: number,
  seq: number,
  id: number,
  del = false,
): void {
  const at = w.begin(del ? RTM_DELNEXTHOP : RTM_GETNEXTHOP, NLM_F_REQUEST | flags, seq);
  w.reserve(NHMSG_LEN);
  w.buf.fill(0, w.len, w.len + NHMSG_LEN);
  w.len += NHMSG_LEN;
  if (id > 0) w.attrU32(NHA_ID, id);
  w.finish(at);
}

/** RTM_GETROUTE for one address: the kernel's route lookup (its answer names the interface). */
export function writeRouteGet(w: MessageWriter, flags: number, seq: number, dst: Uint8Array): void {
  const at = w.begin(RTM_GETROUTE, NLM_F_REQUEST | flags, seq);
  w.rtmsg(dst.length === 4 ? AF_INET : AF_INET6, dst.length * 8, 0, 0, 0, 0, 0);
  w.attrBytes(RTA_DST, dst);
  w.finish(at);
}

/** A nexthop object as the kernel reported it (gateway absent for a device-only one). */
export interface KernelNexthop {
  id: number;
  family: number;
  protocol: number;
  gateway?: Uint8Array;
  oif: number;
  /** A group's members (weights 1..256). */
  group?: NexthopGroupMember[];
}

/** Decodes the payload of RTM_NEWNEXTHOP / RTM_DELNEXTHOP. */
export function decodeNexthop(m: NlMessage): KernelNexthop | undefined {
  const b = m.buf;
  if (m.end - m.off < NHMSG_LEN) return undefined;
  const nh: KernelNexthop = { id: 0, family: b[m.off], protocol: b[m.off + 2], oif: 0 };
  let a = m.off + NHMSG_LEN;
  while (a + 4 <= m.end) {
    const al = b.readUInt16LE(a);
    if (al < 4 || a + al > m.end) break;
    const t = b.readUInt16LE(a + 2) & 0x3fff;
    if (t === NHA_ID && al >= 8) nh.id = b.readUInt32LE(a + 4);
    else if (t === NHA_OIF && al >= 8) nh.oif = b.readInt32LE(a + 4);
    else if (t === NHA_GATEWAY) nh.gateway = Uint8Array.from(b.subarray(a + 4, a + al));
    else if (t === NHA_GROUP) {
      nh.group = [];
      for (let o = a + 4; o + 8 <= a + al; o += 8)
        nh.group.push({ id: b.readUInt32LE(o), weight: b[o + 4] + 1 });
    }
    a += align4(al);
  }
  return nh.id > 0 ? nh : undefined;
}

/** The address of an RTA_VIA value (family u16, then the address). */
function viaAddress(b: Buffer, v: number, end: number): Uint8Array | undefined {
  if (end - v < 2) return undefined;
  const fam = b.readUInt16LE(v);
  const len = fam === AF_INET6 ? 16 : fam === AF_INET ? 4 : 0;
  if (len === 0 || end - v - 2 < len) return undefined;
  return Uint8Array.from(b.subarray(v + 2, v + 2 + len));
}

/**
 * A neighbour request: an ARP/NDP entry (family 4/6: dst is the IP, lladdr the MAC) or a VXLAN
 * FDB entry ("bridge": lladdr is the remote VTEP's MAC, dst its fabric address, flags NTF_SELF).
 */
export interface NeighRequest {
  family: 4 | 6 | "bridge";
  ifindex: number;
  /** NUD_* (e.g. NUD_PERMANENT). */
  state: number;
  /** NTF_* (e.g. NTF_SELF for a device's own FDB). */
  flags: number;
  dst?: Uint8Array;
  lladdr?: Uint8Array;
  /** NDA_PROTOCOL (who installed it); absent: not sent. */
  protocol?: number;
}

/** "aa:bb:cc:dd:ee:ff" -> 6 bytes; throws naming the text when it is not a MAC. */
export function macBytes(text: string): Uint8Array {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(text))
    throw new Error(`Invalid MAC address: "${text}"`);
  return Uint8Array.from(text.split(":").map((x) => Number.parseInt(x, 16)));
}

/** Appends one RTM_NEWNEIGH (flags e.g. CREATE|REPLACE) or RTM_DELNEIGH (struct ndmsg + NDA_*). */
export function writeNeigh(
  w: MessageWriter,
  msgType: number,
  flags: number,
  seq: number,
  n: NeighRequest,
): void {
  const at = w.begin(msgType, NLM_F_REQUEST | flags, seq);
  w.reserve(NDMSG_LEN);
  const b = w.buf;
  const o = w.len;
  b.fill(0, o, o + NDMSG_LEN);
  b[o] = n.family === "bridge" ? AF_BRIDGE : n.family === 4 ? AF_INET : AF_INET6;
  b.writeInt32LE(n.ifindex, o + 4);
  b.writeUInt16LE(n.state, o + 8);
  b[o + 10] = n.flags;
  w.len += NDMSG_LEN;
  if (n.dst) w.attrBytes(NDA_DST, n.dst);
  if (n.lladdr) w.attrBytes(NDA_LLADDR, n.lladdr);
  if (n.protocol !== undefined) w.attrBytes(NDA_PROTOCOL, Uint8Array.of(n.protocol));
  w.finish(at);
}

/** Appends an RTM_GETROUTE dump request, filtered by protocol (0 = any) with strict checking. */
export function writeRouteDump(
  w: MessageWriter,
  seq: number,
  family: 4 | 6,
  protocol = 0,
  table = 0,
): void {
  const at = w.begin(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq);
  w.rtmsg(family === 4 ? AF_INET : AF_INET6, 0, table, protocol, 0, 0, 0);
  if (table > 255) w.attrU32(RTA_TABLE, table);
  w.finish(at);
}

export function writeLinkDump(w: MessageWriter, seq: number): void {
  const at = w.begin(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq);
  w.reserve(IFINFOMSG_LEN);
  w.buf.fill(0, w.len, w.len + IFINFOMSG_LEN);
  w.len += IFINFOMSG_LEN;
  w.finish(at);
}

/**
 * Appends an RTM_GETADDR dump request: all families, or one family and (with strict checking,
 * NETLINK_GET_STRICT_CHK) one interface.
 */
export function writeAddrDump(w: MessageWriter, seq: number, family?: 4 | 6, ifindex = 0): void {
  const at = w.begin(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq);
  ifaddrmsg(w, family === undefined ? 0 : family === 4 ? AF_INET : AF_INET6, 0, 0, 0, ifindex);
  w.finish(at);
}

function ifaddrmsg(
  w: MessageWriter,
  family: number,
  prefixLen: number,
  flags: number,
  scope: number,
  ifindex: number,
): void {
  w.reserve(IFADDRMSG_LEN);
  const o = w.len;
  w.buf[o] = family;
  w.buf[o + 1] = prefixLen;
  w.buf[o + 2] = flags & 0xff;
  w.buf[o + 3] = scope;
  w.buf.writeUInt32LE(ifindex >>> 0, o + 4);
  w.len += IFADDRMSG_LEN;
}

/** struct ifinfomsg: family AF_UNSPEC, the interface, flags and which of them to change. */
function ifinfomsg(w: MessageWriter, ifindex: number, flags = 0, change = 0): void {
  w.reserve(IFINFOMSG_LEN);
  const o = w.len;
  w.buf.fill(0, o, o + 4);
  w.buf.writeInt32LE(ifindex, o + 4);
  w.buf.writeUInt32LE(flags >>> 0, o + 8);
  w.buf.writeUInt32LE(change >>> 0, o + 12);
  w.len += IFINFOMSG_LEN;
}

function attrString(w: MessageWriter, type: number, text: string): void {
  w.attrBytes(type, Buffer.from(`${text}\0`, "utf8"));
}

export function formatMac(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(":");
}

/** One end of a veth pair as RTM_NEWLINK creates it. */
export interface VethEnd {
  name: string;
  mtu: number;
  mac?: string;
  /** An open fd of the network namespace this end is created in (IFLA_NET_NS_FD). */
  netnsFd?: number;
}

/**
 * Appends RTM_NEWLINK creating a veth pair (`ip link add A mtu M type veth peer name B mtu M
 * netns NS`), exclusive: an existing name fails with EEXIST. ACK requested.
 */
export function writeNewVeth(w: MessageWriter, seq: number, end: VethEnd, peer: VethEnd): void {
  const at = w.begin(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq);
  ifinfomsg(w, 0);
  vethEndAttrs(w, end);
  const info = w.beginNest(IFLA_LINKINFO);
  attrString(w, IFLA_INFO_KIND, "veth");
  const data = w.beginNest(IFLA_INFO_DATA);
  const p = w.beginNest(VETH_INFO_PEER);
  ifinfomsg(w, 0);
  vethEndAttrs(w, peer);
  w.endNest(p);
  w.endNest(data);
  w.endNest(info);
  w.finish(at);
}

function vethEndAttrs(w: MessageWriter, e: VethEnd): void {
  attrString(w, IFLA_IFNAME, e.name);
  w.attrU32(IFLA_MTU, e.mtu);
  if (e.mac !== undefined) w.attrBytes(IFLA_ADDRESS, macBytes(e.mac));
  if (e.netnsFd !== undefined) w.attrU32(IFLA_NET_NS_FD, e.netnsFd);
}

/** Appends RTM_NEWLINK changing an existing interface: up or down, and/or its MAC. ACK requested. */
export function writeSetLink(
  w: MessageWriter,
  seq: number,
  ifindex: number,
  change: { up?: boolean; mac?: string },
): void {
  const at = w.begin(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
  if (change.up === undefined) ifinfomsg(w, ifindex);
  else ifinfomsg(w, ifindex, change.up ? IFF_UP : 0, IFF_UP);
  if (change.mac !== undefined) w.attrBytes(IFLA_ADDRESS, macBytes(change.mac));
  w.finish(at);
}

/** Appends RTM_DELLINK of one interface, by index. ACK requested. */
export function writeDelLink(w: MessageWriter, seq: number, ifindex: number): void {
  const at = w.begin(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
  ifinfomsg(w, ifindex);
  w.finish(at);
}

/** Appends RTM_GETLINK of one interface by name (answer: RTM_NEWLINK, or ENODEV). */
export function writeGetLink(w: MessageWriter, seq: number, name: string): void {
  const at = w.begin(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
  ifinfomsg(w, 0);
  attrString(w, IFLA_IFNAME, name);
  w.finish(at);
}

/** Appends RTM_GETLINK of one interface by index (answer: RTM_NEWLINK, or ENODEV). */
export function writeGetLinkByIndex(w: MessageWriter, seq: number, ifindex: number): void {
  const at = w.begin(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
  ifinfomsg(w, ifindex);
  w.finish(at);
}

/** An address as RTM_NEWADDR adds it (`ip addr add A/len dev IF [nodad]`). */
export interface AddrRequest {
  family: 4 | 6;
  ifindex: number;
  address: Uint8Array;
  prefixLen: number;
  /** IFA_F_* flags, e.g. IFA_F_NODAD. */
  flags?: number;
  scope?: number;
}

/** Appends RTM_NEWADDR, exclusive (an address already there fails with EEXIST). ACK requested. */
export function writeNewAddr(w: MessageWriter, seq: number, a: AddrRequest): void {
  const at = w.begin(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq);
  const flags = a.flags ?? 0;
  ifaddrmsg(w, a.family === 4 ? AF_INET : AF_INET6, a.prefixLen, flags, a.scope ?? 0, a.ifindex);
  w.attrBytes(IFA_LOCAL, a.address);
  w.attrBytes(IFA_ADDRESS, a.address);
  if (flags !== 0) w.attrU32(IFA_FLAGS, flags);
  w.finish(at);
}

/** One netlink message inside a received buffer (a view, no copy). */
export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** Offset of the payload (after the 16-byte header) and its end in `buf`. */
  off: number;
  end: number;
  buf: Buffer;
}

/** Calls fn for each message in buf; stops at a truncated or malformed header. */
export function forEachMessage(buf: Buffer, fn: (m: NlMessage) => void): void {
  const m: NlMessage = { type: 0, flags: 0, seq: 0, pid: 0, off: 0, end: 0, buf };
  let o = 0;
  while (o + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(o);
    if (len < NLMSG_HDRLEN || o + len > buf.length) break;
    m.type = buf.readUInt16LE(o + 4);
    m.flags = buf.readUInt16LE(o + 6);
    m.seq = buf.readUInt32LE(o + 8);
    m.pid = buf.readUInt32LE(o + 12);
    m.off = o + NLMSG_HDRLEN;
    m.end = o + len;
    fn(m);
    o += align4(len);
  }
}

export interface NlError {
  /** errno as a positive number; 0 is an ACK. */
  errno: number;
  /** Sequence number of the request this answers. */
  seq: number;
  /** The kernel's extended-ACK text, when it sent one. */
  message?: string;
}

export function decodeError(m: NlMessage): NlError {
  const b = m.buf;
  // The answer carries the request's sequence number in its own header too.
  if (m.end - m.off < 4) return { errno: 0, seq: m.seq, message: "Truncated netlink error" };
  const errno = -b.readInt32LE(m.off);
  const seq = m.end - m.off >= 4 + NLMSG_HDRLEN ? b.readUInt32LE(m.off + 4 + 8) : m.seq;
  let message: string | undefined;
  if (m.flags & NLM_F_ACK_TLVS && m.end - m.off >= 4 + NLMSG_HDRLEN) {
    // Capped ACK (NETLINK_CAP_ACK): the echoed request is its header only.
    let o = m.off + 4 + NLMSG_HDRLEN;
    if (!(m.flags & NLM_F_CAPPED)) o = m.off + 4 + b.readUInt32LE(m.off + 4);
    while (o + 4 <= m.end) {
      const l = b.readUInt16LE(o);
      if (l < 4 || o + l > m.end) break;
      if ((b.readUInt16LE(o + 2) & 0x3fff) === NLMSGERR_ATTR_MSG)
        message = b.toString("utf8", o + 4, o + l).replace(/\0+$/, "");
      o += align4(l);
    }
  }
  return { errno, seq, message };
}

/** A route as the kernel reported it, decoded to values. */
export interface KernelRoute {
  family: 4 | 6;
  dst: Uint8Array;
  dstLen: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
  metric: number;
  nexthops: EncodedNextHop[];
  prefsrc?: Uint8Array;
  /** The route's nexthop object (RTA_NH_ID), when it names one. */
  nhId?: number;
}

function decodeNextHops(b: Buffer, o: number, end: number): EncodedNextHop[] {
  const out: EncodedNextHop[] = [];
  while (o + RTNEXTHOP_LEN <= end) {
    const len = b.readUInt16LE(o);
    if (len < RTNEXTHOP_LEN || o + len > end) break;
    const nh: EncodedNextHop = {
      ifindex: b.readInt32LE(o + 4),
      onlink: (b[o + 2] & RTNH_F_ONLINK) !== 0,
      weight: b[o + 3] + 1,
    };
    let a = o + RTNEXTHOP_LEN;
    while (a + 4 <= o + len) {
      const al = b.readUInt16LE(a);
      if (al < 4) break;
      const at = b.readUInt16LE(a + 2);
      if (at === RTA_GATEWAY) nh.gateway = Uint8Array.from(b.subarray(a + 4, a + al));
      else if (at === RTA_VIA) nh.gateway = viaAddress(b, a + 4, a + al);
      a += align4(al);
    }
    out.push(nh);
    o += align4(len);
  }
  return out;
}

/** Decodes the payload of RTM_NEWROUTE / RTM_DELROUTE. */
export function decodeRoute(m: NlMessage): KernelRoute | undefined {
  const b = m.buf;
  const o = m.off;
  if (m.end - o < RTMSG_LEN) return undefined;
  const fam = b[o];
  if (fam !== AF_INET && fam !== AF_INET6) return undefined;
  const family = fam === AF_INET ? 4 : 6;
  const r: KernelRoute = {
    family,
    dst: new Uint8Array(family === 4 ? 4 : 16),
    dstLen: b[o + 1],
    table: b[o + 4],
    protocol: b[o + 5],
    scope: b[o + 6],
    type: b[o + 7],
    flags: b.readUInt32LE(o + 8),
    metric: 0,
    nexthops: [],
  };
  let gateway: Uint8Array | undefined;
  let oif = 0;
  let a = o + RTMSG_LEN;
  while (a + 4 <= m.end) {
    const al = b.readUInt16LE(a);
    if (al < 4 || a + al > m.end) break;
    const t = b.readUInt16LE(a + 2) & 0x3fff;
    const v = a + 4;
    const u32 = al >= 8;
    switch (t) {
      case RTA_DST:
        r.dst.set(b.subarray(v, v + Math.min(al - 4, r.dst.length)));
        break;
      case RTA_TABLE:
        if (u32) r.table = b.readUInt32LE(v);
        break;
      case RTA_PRIORITY:
        if (u32) r.metric = b.readUInt32LE(v);
        break;
      case RTA_OIF:
        if (u32) oif = b.readInt32LE(v);
        break;
      case RTA_GATEWAY:
        gateway = Uint8Array.from(b.subarray(v, a + al));
        break;
      case RTA_VIA:
        gateway = viaAddress(b, v, a + al);
        break;
      case RTA_PREFSRC:
        r.prefsrc = Uint8Array.from(b.subarray(v, a + al));
        break;
      case RTA_MULTIPATH:
        r.nexthops = decodeNextHops(b, v, a + al);
        break;
      case RTA_NH_ID:
        if (u32) r.nhId = b.readUInt32LE(v);
        break;
    }
    a += align4(al);
  }
  if (r.nexthops.length === 0 && (gateway || oif))
    r.nexthops.push({ gateway, ifindex: oif, onlink: (r.flags & RTNH_F_ONLINK) !== 0, weight: 1 });
  return r;
}

export interface KernelLink {
  ifindex: number;
  name: string;
  flags: number;
  up: boolean;
}

export function decodeLink(m: NlMessage): KernelLink | undefined {
  const b = m.buf;
  if (m.end - m.off < IFINFOMSG_LEN) return undefined;
  const ifindex = b.readInt32LE(m.off + 4);
  const flags = b.readUInt32LE(m.off + 8);
  let name = "";
  let a = m.off + IFINFOMSG_LEN;
  while (a + 4 <= m.end) {
    const al = b.readUInt16LE(a);
    if (al < 4 || a + al > m.end) break;
    if ((b.readUInt16LE(a + 2) & 0x3fff) === IFLA_IFNAME)
      name = b.toString("utf8", a + 4, a + al).replace(/\0+$/, "");
    a += align4(al);
  }
  return { ifindex, name, flags, up: (flags & IFF_UP) !== 0 };
}

/** A link with what `ip -d link show` says of it: its MAC and its kind (veth, bridge...). */
export interface KernelLinkDetail extends KernelLink {
  mac?: string;
  kind?: string;
}

export function decodeLinkDetail(m: NlMessage): KernelLinkDetail | undefined {
  const link: KernelLinkDetail | undefined = decodeLink(m);
  if (!link) return undefined;
  const b = m.buf;
  let a = m.off + IFINFOMSG_LEN;
  while (a + 4 <= m.end) {
    const al = b.readUInt16LE(a);
    if (al < 4 || a + al > m.end) break;
    const t = b.readUInt16LE(a + 2) & 0x3fff;
    if (t === IFLA_ADDRESS) link.mac = formatMac(b.subarray(a + 4, a + al));
    else if (t === IFLA_LINKINFO) {
      let n = a + 4;
      while (n + 4 <= a + al) {
        const nl = b.readUInt16LE(n);
        if (nl < 4 || n + nl > a + al) break;
        if ((b.readUInt16LE(n + 2) & 0x3fff) === IFLA_INFO_KIND)
          link.kind = b.toString("utf8", n + 4, n + nl).replace(/\0+$/, "");
        n += align4(nl);
      }
    }
    a += align4(al);
  }
  return link;
}

export interface KernelAddr {
  family: 4 | 6;
  prefixLen: number;
  scope: number;
  ifindex: number;
}

/** Decodes the ifaddrmsg of RTM_NEWADDR / RTM_DELADDR (the address itself is not needed). */
export function decodeAddr(m: NlMessage): KernelAddr | undefined {
  if (m.end - m.off < IFADDRMSG_LEN) return undefined;
  const b = m.buf;
  return {
    family: b[m.off] === AF_INET ? 4 : 6,
    prefixLen: b[m.off + 1],
    scope: b[m.off + 3],
    ifindex: b.readUInt32LE(m.off + 4),
  };
}

/** An address with its bytes (IFA_ADDRESS, else IFA_LOCAL). */
export interface KernelAddrDetail extends KernelAddr {
  address?: Uint8Array;
}

export function decodeAddrDetail(m: NlMessage): KernelAddrDetail | undefined {
  const addr: KernelAddrDetail | undefined = decodeAddr(m);
  if (!addr) return undefined;
  const b = m.buf;
  let a = m.off + IFADDRMSG_LEN;
  while (a + 4 <= m.end) {
    const al = b.readUInt16LE(a);
    if (al < 4 || a + al > m.end) break;
    const t = b.readUInt16LE(a + 2) & 0x3fff;
    if (t === IFA_ADDRESS || (t === IFA_LOCAL && addr.address === undefined))
      addr.address = Uint8Array.from(b.subarray(a + 4, a + al));
    a += align4(al);
  }
  return addr;
}

/** Converts a decoded kernel route to the contract's Route (interface names via ifname). */
export function kernelRouteToRoute(
  k: KernelRoute,
  ifname: (ifindex: number) => string | undefined,
): Route {
  const nexthops: NextHop[] = k.nexthops.map((nh) => {
    const out: NextHop = {};
    if (nh.gateway) out.gateway = formatAddress(nh.gateway);
    if (nh.ifindex) out.dev = ifname(nh.ifindex) ?? `if${nh.ifindex}`;
    if (nh.onlink) out.onlink = true;
    if (k.nexthops.length > 1) out.weight = nh.weight;
    return out;
  });
  const route: Route = {
    family: k.family,
    dst: `${formatAddress(k.dst)}/${k.dstLen}`,
    table: k.table,
    protocol: k.protocol,
    type: routeTypeName(k.type) ?? "unicast",
    metric: k.metric,
    nexthops,
  };
  const scope = scopeName(k.scope);
  if (scope) route.scope = scope;
  if (k.prefsrc) route.src = formatAddress(k.prefsrc);
  return route;
}

/** Address text → family, for validation. */
export function familyOf(text: string): 4 | 6 {
  return isIPv4(text) ? 4 : 6;
}

// ---- Neighbours (read) ------------------------------------------------------------------------

export const RTM_GETNEIGH = 30;
/** The rtnetlink multicast group of neighbour changes (RTM_NEWNEIGH / RTM_DELNEIGH). */
export const RTNLGRP_NEIGH = 3;
export const NUD_INCOMPLETE = 0x01;
export const NUD_FAILED = 0x20;
/** NUD_PERMANENT | NUD_NOARP | NUD_REACHABLE | NUD_PROBE | NUD_STALE | NUD_DELAY: resolved. */
export const NUD_VALID = 0x80 | 0x40 | 0x02 | 0x10 | 0x04 | 0x08;
/** ndm_flags: the neighbour is a router (it sent a router advertisement). */
export const NTF_ROUTER = 0x80;

/** A neighbour as RTM_NEWNEIGH / RTM_DELNEIGH describe it (struct ndmsg and NDA_DST). */
export interface KernelNeigh {
  family: number;
  ifindex: number;
  /** NUD_* bits. */
  state: number;
  /** NTF_* bits. */
  flags: number;
  dst?: Uint8Array;
  /** NDA_LLADDR: the neighbour's MAC. */
  lladdr?: Uint8Array;
}

/** Appends an RTM_GETNEIGH dump request of one family's neighbours. */
export function writeNeighDump(w: MessageWriter, seq: number, family: 4 | 6): void {
  const at = w.begin(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, seq);
  w.reserve(NDMSG_LEN);
  w.buf.fill(0, w.len, w.len + NDMSG_LEN);
  w.buf[w.len] = family === 4 ? AF_INET : AF_INET6;
  w.len += NDMSG_LEN;
  w.finish(at);
}

export function decodeNeigh(m: NlMessage): KernelNeigh | undefined {
  const b = m.buf;
  if (m.end - m.off < NDMSG_LEN) return undefined;
  const n: KernelNeigh = {
    family: b[m.off] as number,
    ifindex: b.readInt32LE(m.off + 4),
    state: b.readUInt16LE(m.off + 8),
    flags: b[m.off + 10] as number,
  };
  let a = m.off + NDMSG_LEN;
  while (a + 4 <= m.end) {
    const al = b.readUInt16LE(a);
    if (al < 4 || a + al > m.end) break;
    const t = b.readUInt16LE(a + 2) & 0x3fff;
    if (t === NDA_DST) n.dst = Uint8Array.from(b.subarray(a + 4, a + al));
    else if (t === NDA_LLADDR) n.lladdr = Uint8Array.from(b.subarray(a + 4, a + al));
    a += align4(al);
  }
  return n;
}
