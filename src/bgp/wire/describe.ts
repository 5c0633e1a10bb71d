// One-line human descriptions of decoded BGP messages, for fixture annotations, debug logs and the
// CLI. Text only; never on the hot path, and no decoding rules of its own.

import {
  AsPathSegmentType,
  codeName,
  MessageType,
  NotificationCode,
  Origin,
  RouteRefreshSubtype,
  subcodeMap,
  WellKnownCommunity,
} from "./constants.js";
import { decodeMessage } from "./message.js";
import { ipv4ToText, ipv6BytesToText, nlriToText } from "./nlri.js";
import type {
  AsPathSegment,
  BgpMessage,
  Capability,
  NlriView,
  OpenMessage,
  PathAttributes,
  SessionOptions,
  UpdateMessage,
} from "./types.js";
import { NotificationError } from "./types.js";

function fam(afi: number, safi: number): string {
  return `${afi}/${safi}`;
}

export function describeCapability(c: Capability): string {
  switch (c.kind) {
    case "Multiprotocol":
      return `Multiprotocol(${fam(c.afi, c.safi)})`;
    case "FourOctetAs":
      return `FourOctetAs(${c.asn})`;
    case "ExtendedNextHop":
      return `ExtendedNextHop(${c.entries.map((e) => `${fam(e.nlriAfi, e.nlriSafi)}:nh${e.nextHopAfi}`).join(",")})`;
    case "GracefulRestart":
      return `GracefulRestart(R=${+c.restartState},N=${+c.notification},time=${c.restartTime}${c.families.map((f) => `,${fam(f.afi, f.safi)}:F=${+f.forwardingState}`).join("")})`;
    case "LongLivedGracefulRestart":
      return `LongLivedGracefulRestart(${c.families.map((f) => `${fam(f.afi, f.safi)}:F=${+f.forwardingState}:stale=${f.staleTime}`).join(",")})`;
    case "AddPath":
      return `AddPath(${c.families.map((f) => `${fam(f.afi, f.safi)}:${["?", "Receive", "Send", "Both"][f.mode] ?? f.mode}`).join(",")})`;
    case "Fqdn":
      return `Fqdn(${JSON.stringify(c.hostname)},${JSON.stringify(c.domainName)})`;
    case "Unknown":
      return `Unknown(${c.code},0x${Buffer.from(c.data).toString("hex")})`;
    default:
      return c.kind;
  }
}

export function describeOpen(o: OpenMessage): string {
  const caps = o.capabilities.map(describeCapability).join(" ");
  return `OPEN v${o.version} myAs=${o.myAs} hold=${o.holdTime} id=${ipv4ToText(o.bgpIdentifier)} params=${o.parameterLayout ?? "one"} caps: ${caps}`;
}

const communityNames = new Map<number, string>(
  Object.entries(WellKnownCommunity).map(([k, v]) => [v, k]),
);

function community(c: number): string {
  return communityNames.get(c) ?? `${c >>> 16}:${c & 0xffff}`;
}

function asPath(segs: AsPathSegment[]): string {
  return segs
    .map((s) => {
      const x = s.asns.join(" ");
      switch (s.type) {
        case AsPathSegmentType.AsSet:
          return `{${x}}`;
        case AsPathSegmentType.AsConfedSequence:
          return `(${x})`;
        case AsPathSegmentType.AsConfedSet:
          return `[${x}]`;
        default:
          return x;
      }
    })
    .join(" ");
}

function prefixes(v: NlriView): string {
  const t = nlriToText(v);
  return `[${t.map((p) => (v.addPath ? `${p.prefix}#${p.pathId}` : p.prefix)).join(" ")}]`;
}

function nextHop(b: Uint8Array): string {
  if (b.length === 4) return ipv4ToText((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]);
  if (b.length === 16) return ipv6BytesToText(b);
  if (b.length === 32) return `${ipv6BytesToText(b)} ${ipv6BytesToText(b, 16)}`;
  return `0x${Buffer.from(b).toString("hex")}`;
}

export function describeAttributes(a: PathAttributes): string {
  const out: string[] = [];
  if (a.origin !== null) out.push(`ORIGIN=${codeName(Origin, a.origin)}`);
  if (a.asPath !== null) out.push(`AS_PATH=[${asPath(a.asPath)}]`);
  if (a.nextHop !== null) out.push(`NEXT_HOP=${ipv4ToText(a.nextHop)}`);
  if (a.med !== null) out.push(`MED=${a.med}`);
  if (a.localPref !== null) out.push(`LOCAL_PREF=${a.localPref}`);
  if (a.atomicAggregate) out.push("ATOMIC_AGGREGATE");
  if (a.aggregator) out.push(`AGGREGATOR=${a.aggregator.asn}/${ipv4ToText(a.aggregator.address)}`);
  if (a.communities) out.push(`COMMUNITIES=[${Array.from(a.communities, community).join(" ")}]`);
  if (a.extendedCommunities)
    out.push(`EXTENDED_COMMUNITIES=0x${Buffer.from(a.extendedCommunities).toString("hex")}`);
  if (a.largeCommunities) {
    const l = a.largeCommunities;
    const xs: string[] = [];
    for (let i = 0; i + 2 < l.length; i += 3) xs.push(`${l[i]}:${l[i + 1]}:${l[i + 2]}`);
    out.push(`LARGE_COMMUNITY=[${xs.join(" ")}]`);
  }
  if (a.originatorId !== null) out.push(`ORIGINATOR_ID=${ipv4ToText(a.originatorId)}`);
  if (a.clusterList) out.push(`CLUSTER_LIST=[${Array.from(a.clusterList, ipv4ToText).join(" ")}]`);
  if (a.mpReach) {
    const r = a.mpReach;
    out.push(`MP_REACH_NLRI(${fam(r.afi, r.safi)} nh=${nextHop(r.nextHop)} ${prefixes(r.nlri)})`);
  }
  if (a.mpUnreach)
    out.push(
      `MP_UNREACH_NLRI(${fam(a.mpUnreach.afi, a.mpUnreach.safi)} ${prefixes(a.mpUnreach.withdrawn)})`,
    );
  for (const u of a.unknown)
    out.push(
      `ATTR${u.type}(flags=0x${u.flags.toString(16)},0x${Buffer.from(u.data).toString("hex")})`,
    );
  if (a.layout)
    out.push(`order=${a.layout.map((e) => `${e & 0xff}${(e >> 8) & 0x10 ? "x" : ""}`).join(",")}`);
  return out.join(" ");
}

export function describeUpdate(u: UpdateMessage): string {
  const parts = ["UPDATE"];
  if (u.endOfRib !== null) parts.push(`End-of-RIB(${fam(u.endOfRib >> 8, u.endOfRib & 0xff)})`);
  if (u.withdrawn.count > 0) parts.push(`withdrawn=${prefixes(u.withdrawn)}`);
  if (u.attributes) parts.push(describeAttributes(u.attributes));
  if (u.nlri.count > 0) parts.push(`nlri=${prefixes(u.nlri)}`);
  if (u.errors.length > 0)
    parts.push(`rfc7606=${u.action} ${u.errors.map((e) => e.reason).join("; ")}`);
  return parts.join(" ");
}

export function describeMessage(m: BgpMessage): string {
  switch (m.type) {
    case MessageType.Open:
      return describeOpen(m.open);
    case MessageType.Update:
      return describeUpdate(m.update);
    case MessageType.Notification: {
      const n = m.notification;
      const map = subcodeMap(n.code);
      const text = n.shutdownMessage !== null ? ` ${JSON.stringify(n.shutdownMessage)}` : "";
      const data = n.data.length > 0 ? ` data=0x${Buffer.from(n.data).toString("hex")}` : "";
      return `NOTIFICATION ${codeName(NotificationCode, n.code)}/${map ? codeName(map, n.subcode) : n.subcode}${text}${data}`;
    }
    case MessageType.Keepalive:
      return "KEEPALIVE";
    case MessageType.RouteRefresh: {
      const r = m.routeRefresh;
      return `ROUTE-REFRESH ${fam(r.afi, r.safi)} ${codeName(RouteRefreshSubtype, r.subtype)}`;
    }
  }
}

/** Decodes and describes raw bytes; a NotificationError is described rather than thrown. */
export function describeBytes(msg: Uint8Array, opts: SessionOptions): string {
  try {
    return describeMessage(decodeMessage(msg, opts));
  } catch (e) {
    if (e instanceof NotificationError) return `MALFORMED (${e.message})`;
    throw e;
  }
}

const hx = (b: Uint8Array, s: number, e: number) =>
  Buffer.from(b.subarray(s, Math.min(e, b.length))).toString("hex");

/**
 * The message split into its wire fields, e.g. `len=0037 type=02 | wd_len=0000 | attr_len=0014 |
 * 40:01:01 00 | ...`: each attribute as flags:type:length then value. Best effort: after the first
 * field that does not fit, the rest is printed raw. For fixture annotations; never throws.
 */
export function describeFields(m: Uint8Array): string {
  if (m.length < 19) return `raw ${hx(m, 0, m.length)}`;
  const out = [`len=${hx(m, 16, 18)} type=${hx(m, 18, 19)}`];
  const rest = (o: number) => {
    if (o < m.length) out.push(`raw ${hx(m, o, m.length)}`);
  };
  const type = m[18];
  if (type === MessageType.Update && m.length >= 23) {
    const wd = (m[19] << 8) | m[20];
    out.push(`wd_len=${hx(m, 19, 21)}`);
    if (wd > 0) out.push(`withdrawn ${hx(m, 21, 21 + wd)}`);
    if (23 + wd > m.length) return `${out.join(" | ")} | raw ${hx(m, 21, m.length)}`;
    const al = (m[21 + wd] << 8) | m[22 + wd];
    out.push(`attr_len=${hx(m, 21 + wd, 23 + wd)}`);
    let o = 23 + wd;
    const end = Math.min(m.length, o + al);
    while (o + 3 <= end) {
      const ext = (m[o] & 0x10) !== 0;
      const hl = ext ? 4 : 3;
      if (o + hl > end) break;
      const len = ext ? (m[o + 2] << 8) | m[o + 3] : m[o + 2];
      const head = `${hx(m, o, o + 1)}:${hx(m, o + 1, o + 2)}:${hx(m, o + 2, o + hl)}`;
      out.push(`${head} ${hx(m, o + hl, o + hl + len)}`);
      o += hl + len;
    }
    if (o < end) out.push(`raw ${hx(m, o, end)}`);
    if (end < m.length) out.push(`nlri ${hx(m, end, m.length)}`);
  } else if (type === MessageType.Open && m.length >= 29) {
    out.push(
      `version=${hx(m, 19, 20)} my_as=${hx(m, 20, 22)} hold=${hx(m, 22, 24)} id=${hx(m, 24, 28)} opt_len=${hx(m, 28, 29)}`,
    );
    let o = 29;
    while (o + 2 <= m.length && m[28] !== 255) {
      const pl = m[o + 1];
      const caps: string[] = [];
      let c = o + 2;
      while (c + 2 <= Math.min(m.length, o + 2 + pl)) {
        caps.push(
          `cap ${hx(m, c, c + 1)}:${hx(m, c + 1, c + 2)} ${hx(m, c + 2, c + 2 + m[c + 1])}`.trimEnd(),
        );
        c += 2 + m[c + 1];
      }
      out.push(`param ${hx(m, o, o + 1)}:${hx(m, o + 1, o + 2)} [${caps.join(", ")}]`);
      o += 2 + pl;
    }
    rest(o);
  } else if (type === MessageType.Notification && m.length >= 21) {
    out.push(`code=${hx(m, 19, 20)} subcode=${hx(m, 20, 21)}`);
    if (m.length > 21) out.push(`data ${hx(m, 21, m.length)}`);
  } else if (type === MessageType.RouteRefresh && m.length >= 23) {
    out.push(`afi=${hx(m, 19, 21)} subtype=${hx(m, 21, 22)} safi=${hx(m, 22, 23)}`);
    rest(23);
  } else {
    rest(19);
  }
  return out.join(" | ");
}
