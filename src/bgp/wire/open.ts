// OPEN messages and capabilities (RFC 4271 §4.2, RFC 5492, RFC 9072 extended optional
// parameters) and the negotiation of SessionOptions from both sides' capabilities. It does not
// judge the peer's AS or hold time policy beyond the RFC's syntactic rules (that is the FSM's).

import { u16, u32 } from "./bytes.js";
import {
  AsTrans,
  BgpVersion,
  CapabilityCode,
  GracefulRestartFlag,
  GracefulRestartForwardingState,
  HeaderLength,
  MessageType,
  MinOpenLength,
  NotificationCode,
  OpenMessageErrorSubcode,
  OptionalParameterType,
} from "./constants.js";
import { writeHeader } from "./header.js";
import { type Capability, NotificationError, type OpenMessage } from "./types.js";

const utf8 = new TextDecoder("utf-8");
const utf8Enc = new TextEncoder();

function openError(subcode: number, reason: string, data?: Uint8Array): NotificationError {
  return new NotificationError(NotificationCode.OpenMessageError, subcode, data, reason);
}

/** Decodes a whole OPEN message (header included); throws NotificationError on RFC 4271 §6.2. */
export function decodeOpen(msg: Uint8Array): OpenMessage {
  if (msg.length < MinOpenLength) {
    throw openError(
      OpenMessageErrorSubcode.Unspecific,
      `OPEN of ${msg.length} octets is too short`,
    );
  }
  let o = HeaderLength;
  const version = msg[o];
  if (version !== BgpVersion) {
    // RFC 4271 §6.2: data is the largest locally supported version number (2 octets).
    throw openError(
      OpenMessageErrorSubcode.UnsupportedVersionNumber,
      `BGP version ${version} is not supported`,
      Uint8Array.of(0, BgpVersion),
    );
  }
  const myAs = u16(msg, o + 1);
  const holdTime = u16(msg, o + 3);
  const bgpIdentifier = u32(msg, o + 5);
  if (holdTime === 1 || holdTime === 2) {
    // RFC 4271 §6.2: a Hold Time of one or two seconds MUST be rejected.
    throw openError(
      OpenMessageErrorSubcode.UnacceptableHoldTime,
      `hold time ${holdTime} is not 0 or >= 3`,
    );
  }
  if (bgpIdentifier === 0) {
    // RFC 6286 §2.1: the BGP Identifier is a non-zero 4-octet value.
    throw openError(OpenMessageErrorSubcode.BadBgpIdentifier, "BGP identifier 0.0.0.0 is invalid");
  }
  let optLen = msg[o + 9];
  o += 10;
  let extended = false;
  if (optLen === 255 && msg.length > o && msg[o] === OptionalParameterType.ExtendedLength) {
    // RFC 9072 §2: Non-Ext OP Type 255 -> 2-octet Extended Opt. Parm. Length follows.
    if (msg.length < o + 3)
      throw openError(
        OpenMessageErrorSubcode.Unspecific,
        "extended optional parameter length is truncated",
      );
    optLen = u16(msg, o + 1);
    o += 3;
    extended = true;
  }
  if (o + optLen !== msg.length) {
    // RFC 4271 §6.2 / RFC 9072 §2: optional parameters must fill the message exactly.
    throw openError(
      OpenMessageErrorSubcode.Unspecific,
      `optional parameters length ${optLen} does not match the ${msg.length - o} octets left`,
    );
  }
  const end = o + optLen;
  const capabilities: Capability[] = [];
  let params = 0;
  let maxPerParam = 0;
  while (o < end) {
    const hdr = extended ? 3 : 2;
    if (o + hdr > end)
      throw openError(OpenMessageErrorSubcode.Unspecific, "optional parameter header is truncated");
    const type = msg[o];
    const len = extended ? u16(msg, o + 1) : msg[o + 1];
    o += hdr;
    if (o + len > end) {
      throw openError(
        OpenMessageErrorSubcode.Unspecific,
        `optional parameter length ${len} overruns the message`,
      );
    }
    if (type !== OptionalParameterType.Capabilities) {
      // RFC 4271 §6.2: unrecognized optional parameter -> Unsupported Optional Parameter.
      throw openError(
        OpenMessageErrorSubcode.UnsupportedOptionalParameter,
        `optional parameter type ${type} is not supported`,
      );
    }
    const before = capabilities.length;
    decodeCapabilities(msg, o, o + len, capabilities);
    params++;
    maxPerParam = Math.max(maxPerParam, capabilities.length - before);
    o += len;
  }
  const open: OpenMessage = { version, myAs, holdTime, bgpIdentifier, capabilities };
  if (params > 1 && maxPerParam <= 1) open.parameterLayout = "each";
  return open;
}

/** RFC 5492 §4: decodes the capabilities in buf[start, end) and appends them to out. */
export function decodeCapabilities(
  buf: Uint8Array,
  start: number,
  end: number,
  out: Capability[],
): void {
  let o = start;
  while (o < end) {
    if (o + 2 > end)
      throw openError(OpenMessageErrorSubcode.Unspecific, "capability header is truncated");
    const code = buf[o];
    const len = buf[o + 1];
    o += 2;
    if (o + len > end)
      throw openError(
        OpenMessageErrorSubcode.Unspecific,
        `capability ${code} length ${len} overruns its parameter`,
      );
    out.push(decodeCapability(code, buf.subarray(o, o + len)));
    o += len;
  }
}

function badCap(code: number, len: number): NotificationError {
  return openError(
    OpenMessageErrorSubcode.Unspecific,
    `capability ${code} has invalid length ${len}`,
  );
}

function decodeCapability(code: number, v: Uint8Array): Capability {
  const n = v.length;
  switch (code) {
    case CapabilityCode.Multiprotocol:
      // RFC 4760 §8: AFI(2) Reserved(1) SAFI(1).
      if (n !== 4) throw badCap(code, n);
      return { kind: "Multiprotocol", afi: u16(v, 0), safi: v[3] };
    case CapabilityCode.RouteRefresh:
      if (n !== 0) throw badCap(code, n);
      return { kind: "RouteRefresh" };
    case CapabilityCode.EnhancedRouteRefresh:
      if (n !== 0) throw badCap(code, n);
      return { kind: "EnhancedRouteRefresh" };
    case CapabilityCode.ExtendedMessage:
      if (n !== 0) throw badCap(code, n);
      return { kind: "ExtendedMessage" };
    case CapabilityCode.FourOctetAs:
      // RFC 6793 §3.
      if (n !== 4) throw badCap(code, n);
      return { kind: "FourOctetAs", asn: u32(v, 0) };
    case CapabilityCode.ExtendedNextHop: {
      // RFC 8950 §3: tuples of NLRI AFI(2), NLRI SAFI(2), Nexthop AFI(2).
      if (n % 6 !== 0) throw badCap(code, n);
      const entries = [];
      for (let i = 0; i < n; i += 6) {
        entries.push({ nlriAfi: u16(v, i), nlriSafi: u16(v, i + 2), nextHopAfi: u16(v, i + 4) });
      }
      return { kind: "ExtendedNextHop", entries };
    }
    case CapabilityCode.GracefulRestart: {
      // RFC 4724 §3: Restart Flags(4 bits) Restart Time(12 bits), then AFI(2) SAFI(1) Flags(1).
      if (n < 2 || (n - 2) % 4 !== 0) throw badCap(code, n);
      const flags = v[0] >> 4;
      const families = [];
      for (let i = 2; i < n; i += 4) {
        families.push({
          afi: u16(v, i),
          safi: v[i + 2],
          forwardingState: (v[i + 3] & GracefulRestartForwardingState) !== 0,
        });
      }
      return {
        kind: "GracefulRestart",
        restartState: (flags & GracefulRestartFlag.Restart) !== 0,
        notification: (flags & GracefulRestartFlag.Notification) !== 0,
        restartTime: u16(v, 0) & 0x0fff,
        families,
      };
    }
    case CapabilityCode.LongLivedGracefulRestart: {
      // RFC 9494 §3: AFI(2) SAFI(1) Flags(1) Long-lived Stale Time(3).
      if (n % 7 !== 0) throw badCap(code, n);
      const families = [];
      for (let i = 0; i < n; i += 7) {
        families.push({
          afi: u16(v, i),
          safi: v[i + 2],
          forwardingState: (v[i + 3] & GracefulRestartForwardingState) !== 0,
          staleTime: (v[i + 4] << 16) | (v[i + 5] << 8) | v[i + 6],
        });
      }
      return { kind: "LongLivedGracefulRestart", families };
    }
    case CapabilityCode.AddPath: {
      // RFC 7911 §4: AFI(2) SAFI(1) Send/Receive(1).
      if (n % 4 !== 0) throw badCap(code, n);
      const families = [];
      for (let i = 0; i < n; i += 4)
        families.push({ afi: u16(v, i), safi: v[i + 2], mode: v[i + 3] });
      return { kind: "AddPath", families };
    }
    case CapabilityCode.Fqdn: {
      // draft-walton-bgp-hostname-capability: hostname length(1) hostname, domain length(1) domain.
      if (n < 1 || 1 + v[0] + 1 > n || 2 + v[0] + v[1 + v[0]] !== n) throw badCap(code, n);
      const hl = v[0];
      const dl = v[1 + hl];
      return {
        kind: "Fqdn",
        hostname: utf8.decode(v.subarray(1, 1 + hl)),
        domainName: utf8.decode(v.subarray(2 + hl, 2 + hl + dl)),
      };
    }
    default:
      // RFC 5492 §3: unknown capabilities are ignored (kept as bytes).
      return { kind: "Unknown", code, data: v.slice() };
  }
}

/** The value octets and code of one capability. */
function encodeCapabilityValue(c: Capability): { code: number; value: Uint8Array } {
  switch (c.kind) {
    case "Multiprotocol":
      return {
        code: CapabilityCode.Multiprotocol,
        value: Uint8Array.of(c.afi >> 8, c.afi & 0xff, 0, c.safi),
      };
    case "RouteRefresh":
      return { code: CapabilityCode.RouteRefresh, value: new Uint8Array(0) };
    case "EnhancedRouteRefresh":
      return { code: CapabilityCode.EnhancedRouteRefresh, value: new Uint8Array(0) };
    case "ExtendedMessage":
      return { code: CapabilityCode.ExtendedMessage, value: new Uint8Array(0) };
    case "FourOctetAs": {
      const a = c.asn >>> 0;
      return {
        code: CapabilityCode.FourOctetAs,
        value: Uint8Array.of(a >>> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff),
      };
    }
    case "ExtendedNextHop": {
      const v = new Uint8Array(c.entries.length * 6);
      c.entries.forEach((e, i) => {
        put16(v, i * 6, e.nlriAfi);
        put16(v, i * 6 + 2, e.nlriSafi);
        put16(v, i * 6 + 4, e.nextHopAfi);
      });
      return { code: CapabilityCode.ExtendedNextHop, value: v };
    }
    case "GracefulRestart": {
      const v = new Uint8Array(2 + c.families.length * 4);
      const flags =
        (c.restartState ? GracefulRestartFlag.Restart : 0) |
        (c.notification ? GracefulRestartFlag.Notification : 0);
      put16(v, 0, (flags << 12) | (c.restartTime & 0x0fff));
      c.families.forEach((f, i) => {
        put16(v, 2 + i * 4, f.afi);
        v[4 + i * 4] = f.safi;
        v[5 + i * 4] = f.forwardingState ? GracefulRestartForwardingState : 0;
      });
      return { code: CapabilityCode.GracefulRestart, value: v };
    }
    case "LongLivedGracefulRestart": {
      const v = new Uint8Array(c.families.length * 7);
      c.families.forEach((f, i) => {
        const o = i * 7;
        put16(v, o, f.afi);
        v[o + 2] = f.safi;
        v[o + 3] = f.forwardingState ? GracefulRestartForwardingState : 0;
        v[o + 4] = (f.staleTime >> 16) & 0xff;
        v[o + 5] = (f.staleTime >> 8) & 0xff;
        v[o + 6] = f.staleTime & 0xff;
      });
      return { code: CapabilityCode.LongLivedGracefulRestart, value: v };
    }
    case "AddPath": {
      const v = new Uint8Array(c.families.length * 4);
      c.families.forEach((f, i) => {
        put16(v, i * 4, f.afi);
        v[i * 4 + 2] = f.safi;
        v[i * 4 + 3] = f.mode;
      });
      return { code: CapabilityCode.AddPath, value: v };
    }
    case "Fqdn": {
      const h = utf8Enc.encode(c.hostname).subarray(0, 255);
      const d = utf8Enc.encode(c.domainName).subarray(0, 255);
      const v = new Uint8Array(2 + h.length + d.length);
      v[0] = h.length;
      v.set(h, 1);
      v[1 + h.length] = d.length;
      v.set(d, 2 + h.length);
      return { code: CapabilityCode.Fqdn, value: v };
    }
    case "Unknown":
      return { code: c.code, value: c.data };
  }
}

function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >> 8) & 0xff;
  b[o + 1] = v & 0xff;
}

/** Encodes one capability as code, length, value. */
export function encodeCapability(c: Capability): Uint8Array {
  const { code, value } = encodeCapabilityValue(c);
  if (value.length > 255)
    throw new RangeError(`Capability ${c.kind} value of ${value.length} octets exceeds 255`);
  const out = new Uint8Array(2 + value.length);
  out[0] = code;
  out[1] = value.length;
  out.set(value, 2);
  return out;
}

/**
 * Encodes a whole OPEN message. Capabilities go in one optional parameter ("one") or one each
 * ("each"); RFC 9072 extended parameters are used when they do not fit in 255 octets.
 */
export function encodeOpen(open: OpenMessage): Uint8Array {
  const caps = open.capabilities.map(encodeCapability);
  const params: { type: number; value: Uint8Array }[] = [];
  if (open.parameterLayout === "each") {
    for (const c of caps) params.push({ type: OptionalParameterType.Capabilities, value: c });
  } else if (caps.length > 0) {
    params.push({ type: OptionalParameterType.Capabilities, value: concat(caps) });
  }
  for (const p of open.otherParameters ?? []) params.push({ type: p.type, value: p.data });
  let plainLen = 0;
  for (const p of params) plainLen += 2 + p.value.length;
  const extended = plainLen > 255 || params.some((p) => p.value.length > 255);
  const optLen = extended ? params.reduce((s, p) => s + 3 + p.value.length, 0) : plainLen;
  const total = HeaderLength + 10 + (extended ? 3 : 0) + optLen;
  const out = new Uint8Array(total);
  writeHeader(out, 0, total, MessageType.Open);
  let o = HeaderLength;
  out[o] = open.version;
  put16(out, o + 1, open.myAs);
  put16(out, o + 3, open.holdTime);
  const id = open.bgpIdentifier >>> 0;
  out[o + 5] = id >>> 24;
  out[o + 6] = (id >> 16) & 0xff;
  out[o + 7] = (id >> 8) & 0xff;
  out[o + 8] = id & 0xff;
  o += 9;
  if (extended) {
    // RFC 9072 §2.
    out[o] = 255;
    out[o + 1] = OptionalParameterType.ExtendedLength;
    put16(out, o + 2, optLen);
    o += 4;
  } else {
    out[o++] = optLen;
  }
  for (const p of params) {
    out[o++] = p.type;
    if (extended) {
      put16(out, o, p.value.length);
      o += 2;
    } else {
      out[o++] = p.value.length;
    }
    out.set(p.value, o);
    o += p.value.length;
  }
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The peer's real AS: the 4-octet AS capability if present (RFC 6793 §3), else My AS. */
export function peerAs(open: OpenMessage): number {
  for (const c of open.capabilities) if (c.kind === "FourOctetAs") return c.asn;
  return open.myAs;
}

/** The 2-octet My AS field for a local AS (AS_TRANS for 4-octet ASNs, RFC 6793 §3). */
export function myAsField(asn: number): number {
  return asn > 0xffff ? AsTrans : asn;
}
