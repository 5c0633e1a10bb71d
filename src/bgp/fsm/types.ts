// Values of the session FSM (RFC 4271 §8): states, events, actions, peer settings and the
// negotiated session parameters. Owns: these shapes and the named codes. Not: wire encoding
// (src/bgp/wire/), sockets or clocks (src/bgp/io/).

import {
  AsTrans,
  BgpVersion,
  CeaseSubcode,
  FsmErrorSubcode,
  NotificationCode,
  OpenMessageErrorSubcode,
} from "../wire/constants.js";
import type { SessionOptions } from "../wire/types.js";

export type SessionState =
  | "Idle"
  | "Connect"
  | "Active"
  | "OpenSent"
  | "OpenConfirm"
  | "Established";

export type Family = "ipv4-unicast" | "ipv6-unicast";

export type TimerName = "ConnectRetryTimer" | "HoldTimer" | "KeepaliveTimer" | "IdleHoldTimer";

/** The codec's IANA codes (src/bgp/wire/constants.ts) under the names the FSM uses. */
export const ErrorCode = NotificationCode;
export const OpenSubcode = OpenMessageErrorSubcode;
export const FsmSubcode = FsmErrorSubcode;
export { CeaseSubcode };
/** RFC 6793: the 2-octet AS placed in My Autonomous System when the real AS does not fit. */
export const AS_TRANS = AsTrans;
export const BGP_VERSION = BgpVersion;

/** What the FSM needs of a received OPEN (the speaker maps the codec's message to this). */
export interface OpenInfo {
  version: number;
  /** The 2-octet My Autonomous System field. */
  myAs: number;
  holdTime: number;
  /** BGP Identifier as an unsigned 32-bit number. */
  bgpId: number;
  /** Families announced with the MP capability; undefined when the peer sent no MP capability. */
  families?: Family[];
  /** RFC 6793 4-octet AS capability value, when present. */
  as4?: number;
  routeRefresh: boolean;
  enhancedRouteRefresh: boolean;
  extendedMessage: boolean;
  /** Graceful-restart capability seen (RFC 4724). */
  gracefulRestart: boolean;
  /** The codec's options negotiated from both capability lists (capabilities.ts). */
  options?: SessionOptions;
}

export interface PeerSettings {
  localAs: number;
  peerAs: number;
  /** Our BGP Identifier as an unsigned 32-bit number. */
  routerId: number;
  /** Seconds; 0 (no keepalives) or >= 3. */
  holdTime: number;
  /** Seconds between connection attempts. */
  connectRetryTime: number;
  /** Milliseconds to wait for the peer's OPEN in OpenSent (absent: LARGE_HOLD_MS, 240 s). */
  startupHoldMs?: number;
  /** Passive peers never connect; they wait for the peer (RFC 4271 §8.1.1 PassiveTcpEstablishment). */
  passive: boolean;
  families: Family[];
  /** Families the peer must support or the session is refused with 2/7. */
  requiredFamilies: Family[];
  /** First IdleHold delay after an error (ms); doubles with each consecutive error. */
  idleHoldMs: number;
  maxIdleHoldMs: number;
  /**
   * RFC 7911 ADD-PATH: receive and/or send, for each of `families` or (when given) those of
   * them in its own `families` (absent: not advertised).
   */
  addPath?: { receive: boolean; send: boolean; families?: Family[] };
  /** RFC 8654: advertise extended messages (absent: true). */
  extendedMessage?: boolean;
  /** RFC 8950: advertise IPv4 unicast with an IPv6 next hop (absent: false). */
  extendedNextHop?: boolean;
  /**
   * RFC 4724 / RFC 8538 graceful restart as we announce it: absent, the capability only says we
   * send End-of-RIB (restart time 0, no families: peers do not keep our routes).
   */
  gracefulRestart?: {
    /** Seconds a peer keeps our routes after our session drops. */
    restartTime: number;
    /** The R bit: we restarted and are resynchronising (the first sessions after a restart). */
    restarting: boolean;
    /** The F bit of each family: our forwarding state (the kernel's routes) survived. */
    forwarding: boolean;
  };
  /**
   * RFC 9494 long-lived graceful restart as we announce it (absent: not announced): peers keep
   * our routes as LLGR_STALE for `staleTime` seconds after the restart time, and we do the same
   * for a peer that announced it too.
   */
  longLivedGracefulRestart?: {
    /** Long-lived stale time in seconds, 1..16777215. */
    staleTime: number;
    forwarding: boolean;
  };
}

export interface Negotiated {
  holdTime: number;
  keepaliveTime: number;
  families: Family[];
  peerAs: number;
  peerId: number;
  as4: boolean;
  routeRefresh: boolean;
  enhancedRouteRefresh: boolean;
  extendedMessage: boolean;
  gracefulRestart: boolean;
  /** What the codec needs for this session (4-octet AS, ADD-PATH, ...), negotiated once. */
  options: SessionOptions;
}

/** Why a session went down: typed, for logs, status and metrics. */
export type DownReason =
  | { kind: "ManualStop" }
  | { kind: "HoldTimerExpired" }
  | { kind: "NotificationSent"; code: number; subcode: number; message: string }
  | { kind: "NotificationReceived"; code: number; subcode: number }
  | { kind: "TcpConnectionFails"; message: string }
  | { kind: "CollisionResolution" };

export interface NotificationInfo {
  code: number;
  subcode: number;
  data?: Uint8Array;
}

export type FsmEvent =
  | { type: "ManualStart" }
  /** The NOTIFICATION sent to an open session: Cease 6/2 unless given (RFC 8538 Hard Reset). */
  | { type: "ManualStop"; notification?: NotificationInfo }
  | { type: "ConnectRetryTimer_Expires" }
  | { type: "HoldTimer_Expires" }
  | { type: "KeepaliveTimer_Expires" }
  | { type: "IdleHoldTimer_Expires" }
  /** Our outgoing connection succeeded. */
  | { type: "Tcp_CR_Acked" }
  /** An incoming connection from the peer was accepted. */
  | { type: "TcpConnectionConfirmed" }
  | { type: "TcpConnectionFails"; message: string }
  | { type: "BGPOpen"; open: OpenInfo }
  /** Header or OPEN decoding failed; the codec's NOTIFICATION to send. */
  | { type: "BGPHeaderErr"; notification: NotificationInfo }
  | { type: "BGPOpenMsgErr"; notification: NotificationInfo }
  | { type: "NotifMsg"; code: number; subcode: number }
  | { type: "KeepAliveMsg" }
  | { type: "UpdateMsg" }
  /** An UPDATE error that RFC 7606 says must reset the session. */
  | { type: "UpdateMsgErr"; notification: NotificationInfo }
  /** Collision detection (§6.8) chose to close this connection. */
  | { type: "OpenCollisionDump" }
  /** A ROUTE-REFRESH or other message valid only when Established. */
  | { type: "RouteRefreshMsg" };

export type FsmAction =
  | { type: "connect" }
  | { type: "disconnect" }
  | { type: "sendOpen" }
  | { type: "sendKeepalive" }
  | { type: "sendNotification"; notification: NotificationInfo }
  /**
   * `jitter`: the owner shortens ms by a random 0-25 % (RFC 4271 §10), so that two ends that
   * started or collided together do not retry in lockstep, and peers' KEEPALIVEs do not
   * synchronise; never below `minMs` (the KeepaliveTimer: one KEEPALIVE a second at most, §4.4).
   */
  | { type: "startTimer"; timer: TimerName; ms: number; jitter?: boolean; minMs?: number }
  | { type: "stopTimer"; timer: TimerName }
  | { type: "established"; negotiated: Negotiated }
  | { type: "sessionDown"; reason: DownReason; wasEstablished: boolean }
  /** Hand the UPDATE to the RIB (Established only). */
  | { type: "processUpdate" }
  | { type: "processRouteRefresh" };

export interface FsmState {
  state: SessionState;
  settings: PeerSettings;
  connectRetryCounter: number;
  /** Consecutive errors, for the IdleHold backoff. */
  errorCount: number;
  /** The peer's OPEN once received, and what was negotiated from it. */
  negotiated?: Negotiated;
  lastDown?: DownReason;
}
