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
