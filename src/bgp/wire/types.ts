// Value types of the BGP wire codec: decoded messages, capabilities, path attributes, NLRI views,
// session options, the RFC 7606 action enum and NotificationError. No encoding or decoding logic
// lives here (see message.ts, open.ts, update.ts, attributes.ts, nlri.ts, framer.ts).

import { CeaseSubcode, codeName, NotificationCode, subcodeMap } from "./constants.js";

// ---------------------------------------------------------------------------------------------
// Address families and session options

/** A family as one number: `(afi << 8) | safi` (IPv4 unicast = 0x0101, IPv6 unicast = 0x0201). */
export type FamilyKey = number;
export function familyKey(afi: number, safi: number): FamilyKey {
  return ((afi & 0xffff) << 8) | (safi & 0xff);
}
export function familyAfi(key: FamilyKey): number {
  return key >>> 8;
}
export function familySafi(key: FamilyKey): number {
  return key & 0xff;
}
export const Ipv4Unicast: FamilyKey = 0x0101;
export const Ipv6Unicast: FamilyKey = 0x0201;

/**
 * What was negotiated for one session; passed to every decode/encode call, never global.
 * - `fourOctetAs`: both sides sent the 4-octet AS capability (RFC 6793): AS_PATH/AGGREGATOR carry
 *   4-octet ASNs; otherwise 2-octet with AS4_PATH/AS4_AGGREGATOR (merged on decode, produced on
 *   encode).
 * - `addPath.receive`: families whose received NLRI carry path identifiers (we advertised
 *   Receive and the peer advertised Send, RFC 7911 §4). `addPath.send`: families whose NLRI we
 *   encode with path identifiers.
 * - `extendedMessage`: RFC 8654 negotiated, maximum message length 65535.
 * - `extendedNextHop`: RFC 8950 negotiated for IPv4 unicast: IPv4 NLRI may be sent in
 *   MP_REACH_NLRI with an IPv6 next hop.
 * - `external`: the peer is eBGP (true) or iBGP (false); some RFC 7606 rules differ.
 */
export interface SessionOptions {
  fourOctetAs: boolean;
  addPath: { receive: ReadonlySet<FamilyKey>; send: ReadonlySet<FamilyKey> };
  extendedMessage: boolean;
  extendedNextHop: boolean;
  external?: boolean;
}

export const DefaultSessionOptions: SessionOptions = Object.freeze({
  fourOctetAs: true,
  addPath: Object.freeze({ receive: new Set<FamilyKey>(), send: new Set<FamilyKey>() }),
  extendedMessage: false,
  extendedNextHop: false,
});

export function sessionOptions(partial: Partial<SessionOptions> = {}): SessionOptions {
  // Fresh sets each time: callers may build their own options from these.
  return {
    ...DefaultSessionOptions,
    addPath: { receive: new Set<FamilyKey>(), send: new Set<FamilyKey>() },
    ...partial,
  };
}

// ---------------------------------------------------------------------------------------------
// Errors and RFC 7606 actions

/**
 * Thrown for anything that must reset the session: the NOTIFICATION to send. Decoders throw
 * nothing else on malformed input.
 */
export class NotificationError extends Error {
  readonly code: number;
  readonly subcode: number;
  readonly data: Uint8Array;
  constructor(code: number, subcode: number, data: Uint8Array = new Uint8Array(0), reason = "") {
    const map = subcodeMap(code);
    const what = `${codeName(NotificationCode, code)}/${map ? codeName(map, subcode) : subcode}`;
    super(reason ? `${what}: ${reason}` : what);
    this.name = "NotificationError";
    this.code = code;
    this.subcode = subcode;
    this.data = data;
  }
}

/**
 * RFC 7606 §2: the ordered outcomes of a malformed UPDATE, least to most severe. The result of
 * one UPDATE is the maximum over its attributes; SessionReset is never returned but thrown as a
 * NotificationError.
 */
export const Rfc7606Action = {
  None: 0,
  AttributeDiscard: 1,
  TreatAsWithdraw: 2,
  AfiSafiDisable: 3,
  SessionReset: 4,
} as const;
export type Rfc7606ActionCode = (typeof Rfc7606Action)[keyof typeof Rfc7606Action];

/** One reason an UPDATE was degraded: which attribute, what action, why (RFC cited). */
export interface AttributeError {
  attrType: number;
  action: Rfc7606ActionCode;
  reason: string;
}

// ---------------------------------------------------------------------------------------------
// NLRI views and prefix arrays (no per-prefix objects)

/**
 * A validated NLRI section inside a received buffer: walk it with forEachIpv4Prefix /
 * forEachIpv6Prefix or decode it into a PrefixArray (nlri.ts). `count` is the number of prefixes,
 * computed while validating.
 */
export interface NlriView {
  buf: Uint8Array;
  start: number;
  end: number;
  afi: number;
  safi: number;
  addPath: boolean;
  count: number;
}

/**
 * Caller-owned packed prefixes. IPv4: `addrs[i]` is the u32 address. IPv6: `addrs[4*i..4*i+3]`
 * are the four big-endian u32 words. `lens[i]` the prefix length; `pathIds[i]` the ADD-PATH id
 * (0 when absent), or `pathIds` null.
 */
export interface PrefixArray {
  afi: number;
  count: number;
  addrs: Uint32Array;
  lens: Uint8Array;
  pathIds: Uint32Array | null;
}

/** A prefix as text, for tests and the CLI only. */
export interface TextPrefix {
  prefix: string;
  pathId: number;
}

// ---------------------------------------------------------------------------------------------
// Capabilities (RFC 5492) and OPEN

export interface AfiSafi {
  afi: number;
  safi: number;
}

export type Capability =
  | { kind: "Multiprotocol"; afi: number; safi: number }
  | { kind: "RouteRefresh" }
  | { kind: "EnhancedRouteRefresh" }
  | { kind: "FourOctetAs"; asn: number }
  | { kind: "ExtendedMessage" }
  | {
      kind: "ExtendedNextHop";
      entries: { nlriAfi: number; nlriSafi: number; nextHopAfi: number }[];
    }
  | {
      kind: "GracefulRestart";
      /** R bit, RFC 4724 §3. */
      restartState: boolean;
      /** N bit, RFC 8538 §2. */
      notification: boolean;
      /** Restart Time in seconds (12 bits). */
      restartTime: number;
      families: { afi: number; safi: number; forwardingState: boolean }[];
    }
  | {
      kind: "LongLivedGracefulRestart";
      families: { afi: number; safi: number; forwardingState: boolean; staleTime: number }[];
    }
  | { kind: "AddPath"; families: { afi: number; safi: number; mode: number }[] }
  | { kind: "Fqdn"; hostname: string; domainName: string }
  | { kind: "Unknown"; code: number; data: Uint8Array };

export interface OpenMessage {
  version: number;
  /** The 2-octet My Autonomous System field (AS_TRANS when the real AS is 4-octet). */
  myAs: number;
  holdTime: number;
  /** BGP Identifier as u32. */
  bgpIdentifier: number;
  capabilities: Capability[];
  /**
   * How capabilities are laid out in optional parameters: all in one parameter ("one", BIRD/FRR
   * style) or one parameter each ("each", GoBGP style). Encoding defaults to "one".
   */
  parameterLayout?: "one" | "each";
  /** Optional parameters other than capabilities, kept as bytes. */
  otherParameters?: { type: number; data: Uint8Array }[];
}

// ---------------------------------------------------------------------------------------------
// NOTIFICATION, ROUTE-REFRESH

export interface NotificationMessage {
  code: number;
  subcode: number;
  data: Uint8Array;
  /**
   * RFC 8203/9003: the Shutdown Communication for Cease/AdministrativeShutdown or
   * AdministrativeReset, when the data is a well-formed length-prefixed UTF-8 string.
   */
  shutdownMessage: string | null;
}

export interface RouteRefreshMessage {
  afi: number;
  safi: number;
  /** RFC 7313 §3: RouteRefreshSubtype. */
  subtype: number;
}

// ---------------------------------------------------------------------------------------------
// Path attributes and UPDATE

export interface AsPathSegment {
  /** AsPathSegmentType. */
  type: number;
  asns: number[];
}

export interface Aggregator {
  asn: number;
  /** IPv4 address as u32. */
  address: number;
}

export interface UnknownAttribute {
  flags: number;
  type: number;
  data: Uint8Array;
}

/** RFC 4760 §3: MP_REACH_NLRI. `nextHop` is the raw next hop (4, 16 or 32 octets). */
export interface MpReachNlri {
  afi: number;
  safi: number;
  nextHop: Uint8Array;
  nlri: NlriView;
}

/** RFC 4760 §4: MP_UNREACH_NLRI. */
export interface MpUnreachNlri {
  afi: number;
  safi: number;
  withdrawn: NlriView;
}

/**
 * One UPDATE's path attributes, one plain object (fixed shape: absent = null/false/empty).
 * AS numbers are always 4-octet values here: on a 2-octet session AS4_PATH/AS4_AGGREGATOR are
 * merged in on decode (RFC 6793 §4.2.3) and produced again on encode.
 */
export interface PathAttributes {
  origin: number | null;
  asPath: AsPathSegment[] | null;
  /** NEXT_HOP as u32. */
  nextHop: number | null;
  med: number | null;
  localPref: number | null;
  atomicAggregate: boolean;
  aggregator: Aggregator | null;
  /** RFC 1997 communities as u32 values. */
  communities: Uint32Array | null;
  /** RFC 4360: 8 octets each. */
  extendedCommunities: Uint8Array | null;
  /** RFC 8092: triples (global admin, local 1, local 2). */
  largeCommunities: Uint32Array | null;
  originatorId: number | null;
  clusterList: Uint32Array | null;
  mpReach: MpReachNlri | null;
  mpUnreach: MpUnreachNlri | null;
  /** Unrecognized optional attributes (transitive ones are re-sent with the Partial bit). */
  unknown: UnknownAttribute[];
  /**
   * Decode order and flags of the attributes as received, one entry `type | (flags << 8)` each;
   * the encoder follows it (order, and the extended-length bit where the value still fits) so that
   * encode(decode(x)) reproduces x. Null: canonical order by type code, minimal flags.
   */
  layout: number[] | null;
}

/**
 * A decoded UPDATE. Prefix sections are views into the receive buffer: consume them before the
 * buffer is reused. `action`/`errors` carry the RFC 7606 outcome:
 * - AttributeDiscard: the named attributes were dropped, the rest is usable.
 * - TreatAsWithdraw: every prefix in `nlri` and `attributes.mpReach.nlri` must be handled as
 *   withdrawn (RFC 7606 §2); withdrawals still apply.
 * - AfiSafiDisable: `disabledFamily` must be disabled for the session (RFC 7606 §7.3 option).
 */
export interface UpdateMessage {
  withdrawn: NlriView;
  attributes: PathAttributes | null;
  nlri: NlriView;
  action: Rfc7606ActionCode;
  errors: AttributeError[];
  disabledFamily: FamilyKey | null;
  /** RFC 4724 §2: the family whose End-of-RIB this UPDATE is, else null. */
  endOfRib: FamilyKey | null;
}

/** Input for UPDATE packing: many prefixes of one family sharing one attribute set. */
export interface UpdateBatch {
  afi: number;
  safi: number;
  /** Shared attributes, without mpReach/mpUnreach (the encoder adds them). Null for withdrawals. */
  attributes: PathAttributes | null;
  /** MP_REACH next hop (16 or 32 octets for IPv6; 4 or 16/32 with extended next hop). */
  mpNextHop?: Uint8Array | null;
  announce?: PrefixArray | null;
  withdraw?: PrefixArray | null;
}

/** Any decoded message. */
export type BgpMessage =
  | { type: 1; open: OpenMessage }
  | { type: 2; update: UpdateMessage }
  | { type: 3; notification: NotificationMessage }
  | { type: 4 }
  | { type: 5; routeRefresh: RouteRefreshMessage };

/** A fresh attribute set with everything absent. */
export function emptyAttributes(): PathAttributes {
  return {
    origin: null,
    asPath: null,
    nextHop: null,
    med: null,
    localPref: null,
    atomicAggregate: false,
    aggregator: null,
    communities: null,
    extendedCommunities: null,
    largeCommunities: null,
    originatorId: null,
    clusterList: null,
    mpReach: null,
    mpUnreach: null,
    unknown: [],
    layout: null,
  };
}

/** Convenience: Cease/AdministrativeShutdown with an RFC 9003 message. */
export function isAdminShutdown(n: NotificationMessage): boolean {
  return (
    n.code === NotificationCode.Cease &&
    (n.subcode === CeaseSubcode.AdministrativeShutdown ||
      n.subcode === CeaseSubcode.AdministrativeReset)
  );
}
