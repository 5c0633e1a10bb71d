// BGP wire constants: IANA code points named after their RFCs (message types, path attribute
// types and flags, AFI/SAFI, capability codes, NOTIFICATION codes and subcodes, well-known
// communities). Values only; no logic and no types beyond the code maps.

/** RFC 4271 §4.1: 16-octet marker, 2-octet length, 1-octet type. */
export const MarkerLength = 16;
export const HeaderLength = 19;
/** RFC 4271 §4.1: maximum message size without extended messages. */
export const MaxMessageLength = 4096;
/** RFC 8654 §3: maximum message size once extended messages are negotiated. */
export const ExtendedMaxMessageLength = 65535;
/** RFC 4271 §4.2: OPEN is at least 29 octets; §4.3 UPDATE at least 23; §4.5 NOTIFICATION 21. */
export const MinOpenLength = 29;
export const MinUpdateLength = 23;
export const MinNotificationLength = 21;
export const KeepaliveLength = 19;
/** RFC 2918 §3: ROUTE-REFRESH is header + AFI(2) + Res/Subtype(1) + SAFI(1). */
export const RouteRefreshLength = 23;
export const BgpVersion = 4;
/** RFC 6793 §9: AS_TRANS, the 2-octet stand-in for a 4-octet AS. */
export const AsTrans = 23456;

/** RFC 4271 §4.1, RFC 2918 §3. */
export const MessageType = {
  Open: 1,
  Update: 2,
  Notification: 3,
  Keepalive: 4,
  RouteRefresh: 5,
} as const;
export type MessageTypeCode = (typeof MessageType)[keyof typeof MessageType];

/** IANA BGP Path Attributes registry. */
export const AttrType = {
  Origin: 1,
  AsPath: 2,
  NextHop: 3,
  MultiExitDisc: 4,
  LocalPref: 5,
  AtomicAggregate: 6,
  Aggregator: 7,
  Communities: 8,
  OriginatorId: 9,
  ClusterList: 10,
  MpReachNlri: 14,
  MpUnreachNlri: 15,
  ExtendedCommunities: 16,
  As4Path: 17,
  As4Aggregator: 18,
  LargeCommunity: 32,
} as const;

/** RFC 4271 §4.3: attribute flag bits. */
export const AttrFlag = {
  Optional: 0x80,
  Transitive: 0x40,
  Partial: 0x20,
  ExtendedLength: 0x10,
} as const;

/** RFC 4271 §5.1.1. */
export const Origin = { Igp: 0, Egp: 1, Incomplete: 2 } as const;

/** RFC 4271 §4.3 and RFC 5065 §3: AS_PATH segment types. */
export const AsPathSegmentType = {
  AsSet: 1,
  AsSequence: 2,
  AsConfedSequence: 3,
  AsConfedSet: 4,
} as const;

/** IANA Address Family Numbers. */
export const Afi = { Ipv4: 1, Ipv6: 2 } as const;
/** IANA SAFI values. */
export const Safi = { Unicast: 1, Multicast: 2 } as const;

/** RFC 5492 §4: optional parameter carrying capabilities; RFC 9072 extended length marker. */
export const OptionalParameterType = { Capabilities: 2, ExtendedLength: 255 } as const;

/** IANA Capability Codes. */
export const CapabilityCode = {
  Multiprotocol: 1,
  RouteRefresh: 2,
  ExtendedNextHop: 5,
  ExtendedMessage: 6,
  GracefulRestart: 64,
  FourOctetAs: 65,
  AddPath: 69,
  EnhancedRouteRefresh: 70,
  LongLivedGracefulRestart: 71,
  Fqdn: 73,
} as const;

/** RFC 7911 §4: Send/Receive field of the ADD-PATH capability. */
export const AddPathMode = { Receive: 1, Send: 2, Both: 3 } as const;

/** RFC 4724 §3 and RFC 8538 §2: graceful restart flag bits (top nibble of the 16-bit field). */
export const GracefulRestartFlag = { Restart: 0x8, Notification: 0x4 } as const;
/** RFC 4724 §3: per-AFI "Forwarding State" bit. */
export const GracefulRestartForwardingState = 0x80;

/** RFC 4271 §4.5 and IANA BGP Error Codes. */
export const NotificationCode = {
  MessageHeaderError: 1,
  OpenMessageError: 2,
  UpdateMessageError: 3,
  HoldTimerExpired: 4,
  FiniteStateMachineError: 5,
  Cease: 6,
  RouteRefreshMessageError: 7,
} as const;

/** RFC 4271 §6.1. */
export const MessageHeaderErrorSubcode = {
  ConnectionNotSynchronized: 1,
  BadMessageLength: 2,
  BadMessageType: 3,
} as const;

/** RFC 4271 §6.2, RFC 5492 §5, RFC 9234. */
export const OpenMessageErrorSubcode = {
  Unspecific: 0,
  UnsupportedVersionNumber: 1,
  BadPeerAs: 2,
  BadBgpIdentifier: 3,
  UnsupportedOptionalParameter: 4,
  UnacceptableHoldTime: 6,
  UnsupportedCapability: 7,
  RoleMismatch: 11,
} as const;

/** RFC 4271 §6.3. */
export const UpdateMessageErrorSubcode = {
  Unspecific: 0,
  MalformedAttributeList: 1,
  UnrecognizedWellKnownAttribute: 2,
  MissingWellKnownAttribute: 3,
  AttributeFlagsError: 4,
  AttributeLengthError: 5,
  InvalidOriginAttribute: 6,
  InvalidNextHopAttribute: 8,
  OptionalAttributeError: 9,
  InvalidNetworkField: 10,
  MalformedAsPath: 11,
} as const;

/** RFC 6608 §3. */
export const FsmErrorSubcode = {
  UnspecifiedError: 0,
  UnexpectedMessageInOpenSent: 1,
  UnexpectedMessageInOpenConfirm: 2,
  UnexpectedMessageInEstablished: 3,
} as const;

/** RFC 4486 §4, RFC 8538 §3 (Hard Reset), RFC 9384 (BFD Down). */
export const CeaseSubcode = {
  MaximumNumberOfPrefixesReached: 1,
  AdministrativeShutdown: 2,
  PeerDeconfigured: 3,
  AdministrativeReset: 4,
  ConnectionRejected: 5,
  OtherConfigurationChange: 6,
  ConnectionCollisionResolution: 7,
  OutOfResources: 8,
  HardReset: 9,
  BfdDown: 10,
} as const;

/** RFC 7313 §5. */
export const RouteRefreshMessageErrorSubcode = { InvalidMessageLength: 1 } as const;

/** RFC 7313 §3: the Message Subtype in the former Reserved octet. */
export const RouteRefreshSubtype = {
  Normal: 0,
  BeginningOfRouteRefresh: 1,
  EndOfRouteRefresh: 2,
} as const;

/** RFC 1997, RFC 7999, RFC 8326, RFC 9494, RFC 8642 and IANA: well-known communities. */
export const WellKnownCommunity = {
  GracefulShutdown: 0xffff0000,
  AcceptOwn: 0xffff0001,
  LlgrStale: 0xffff0006,
  NoLlgr: 0xffff0007,
  Blackhole: 0xffff029a,
  NoExport: 0xffffff01,
  NoAdvertise: 0xffffff02,
  NoExportSubconfed: 0xffffff03,
  NoPeer: 0xffffff04,
} as const;

/** RFC 9003 §2: the Shutdown Communication is at most 255 octets of UTF-8. */
export const MaxShutdownCommunicationLength = 255;

/** Reverse lookup: the RFC name of a code in one of the maps above, or `unknown(N)`. */
export function codeName(map: Readonly<Record<string, number>>, code: number): string {
  for (const k in map) if (map[k] === code) return k;
  return `unknown(${code})`;
}

/** The subcode map that belongs to a NOTIFICATION error code, if any. */
export function subcodeMap(code: number): Readonly<Record<string, number>> | null {
  switch (code) {
    case NotificationCode.MessageHeaderError:
      return MessageHeaderErrorSubcode;
    case NotificationCode.OpenMessageError:
      return OpenMessageErrorSubcode;
    case NotificationCode.UpdateMessageError:
      return UpdateMessageErrorSubcode;
    case NotificationCode.FiniteStateMachineError:
      return FsmErrorSubcode;
    case NotificationCode.Cease:
      return CeaseSubcode;
    case NotificationCode.RouteRefreshMessageError:
      return RouteRefreshMessageErrorSubcode;
    default:
      return null;
  }
}
