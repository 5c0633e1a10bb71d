// The BGP session FSM of RFC 4271 §8 as a pure function: step(state, event) -> {state, actions}.
// One FsmState per TCP connection attempt; timers are actions out and events in. Owns: state
// transitions, OPEN checks, hold-time and family negotiation, IdleHold backoff, the backoff of
// retries after failed connections, the §6.8 collision rule, which timers are jittered (§10).
// Not: drawing the jitter and restarting the KeepaliveTimer on each UPDATE sent (both
// speaker/session.ts, which sends UPDATEs), capability negotiation (capabilities.ts), sockets,
// clocks, encoding.
import { sessionOptions } from "../wire/types.js";
import {
  AS_TRANS,
  BGP_VERSION,
  CeaseSubcode,
  type DownReason,
  ErrorCode,
  type Family,
  type FsmAction,
  type FsmEvent,
  type FsmState,
  FsmSubcode,
  type Negotiated,
  type NotificationInfo,
  type OpenInfo,
  OpenSubcode,
  type PeerSettings,
  type SessionState,
  type TimerName,
} from "./types.js";

/** RFC 4271 §8.2.2: the "large value" HoldTimer used while waiting for the peer's OPEN. */
export const LARGE_HOLD_MS = 240_000;

export type StartTimer = Extract<FsmAction, { type: "startTimer" }>;

export interface StepResult {
  state: FsmState;
  actions: FsmAction[];
}

export function initialState(settings: PeerSettings): FsmState {
  return { state: "Idle", settings, connectRetryCounter: 0, errorCount: 0 };
}

const ALL_TIMERS: TimerName[] = [
  "ConnectRetryTimer",
  "HoldTimer",
  "KeepaliveTimer",
  "IdleHoldTimer",
];

/** RFC 4271 §4.4: KEEPALIVEs are sent no more often than one a second. */
export const MIN_KEEPALIVE_MS = 1000;

const start = (timer: TimerName, ms: number): FsmAction =>
  // The ConnectRetryTimer is always jittered (RFC 4271 §10); the KeepaliveTimer too (below).
  timer === "ConnectRetryTimer"
    ? { type: "startTimer", timer, ms, jitter: true }
    : { type: "startTimer", timer, ms };

/**
 * The KeepaliveTimer (re)started for a session (hold time 0: none): KeepaliveTime jittered
 * (RFC 4271 §10) but never below a second (§4.4; with hold time 3 it is exactly 1 s). Also what the session starts
 * when it restarts the timer for an UPDATE sent (RFC 4271 §8.2.2: "Each time the local system
 * sends a KEEPALIVE or UPDATE message, it restarts its KeepaliveTimer").
 */
export function keepaliveTimer(n: Negotiated): StartTimer | undefined {
  if (n.holdTime === 0 || n.keepaliveTime === 0) return undefined;
  return {
    type: "startTimer",
    timer: "KeepaliveTimer",
    ms: n.keepaliveTime * 1000,
    jitter: true,
    minMs: MIN_KEEPALIVE_MS,
  };
}
const stop = (timer: TimerName): FsmAction => ({ type: "stopTimer", timer });
const notify = (code: number, subcode: number, data?: Uint8Array): FsmAction => ({
  type: "sendNotification",
  notification: data ? { code, subcode, data } : { code, subcode },
});

/**
 * The first retry after a failed connection (refused, reset, or closed before the OPEN): short,
 * so a peer that was not listening yet when we started (both ends start at once) is reached
 * within a second rather than a whole ConnectRetryTime. Each next consecutive failure doubles
 * the delay up to ConnectRetryTime (the RFC's value, the retry interval of a peer that stays
 * unreachable).
 */
export const FIRST_CONNECT_RETRY_MS = 1000;

/** ConnectRetryTimer after the `failures`-th consecutive failed connection (1: the first). */
export function connectRetryDelay(settings: PeerSettings, failures: number): number {
  const full = settings.connectRetryTime * 1000;
  const ms = FIRST_CONNECT_RETRY_MS * 2 ** Math.min(Math.max(failures, 1) - 1, 20);
  return Math.min(ms, full);
}

/** A failed connection: back to Active, the retry after the backoff (counted in the state). */
function connectionFailed(s: FsmState, extra: FsmAction[] = []): StepResult {
  const connectRetryCounter = s.connectRetryCounter + 1;
  return {
    state: { ...s, state: "Active", connectRetryCounter },
    actions: [
      { type: "disconnect" },
      ...extra,
      start("ConnectRetryTimer", connectRetryDelay(s.settings, connectRetryCounter)),
    ],
  };
}

/** IdleHold delay after `errorCount` consecutive errors: base doubled each time, capped. */
export function idleHoldDelay(settings: PeerSettings, errorCount: number): number {
  if (errorCount <= 0) return 0;
  const ms = settings.idleHoldMs * 2 ** Math.min(errorCount - 1, 20);
  return Math.min(ms, settings.maxIdleHoldMs);
}

/** Leaves for Idle: timers stopped, connection closed, reason recorded. */
function toIdle(
  s: FsmState,
  reason: DownReason,
  pre: FsmAction[],
  opts: { error: boolean },
): StepResult {
  const wasEstablished = s.state === "Established";
  const actions: FsmAction[] = [...pre, ...ALL_TIMERS.map(stop), { type: "disconnect" }];
  actions.push({ type: "sessionDown", reason, wasEstablished });
  let errorCount = s.errorCount;
  if (opts.error) {
    // RFC 4271 §8.1.1 DampPeerOscillations: restart automatically after an IdleHold delay that
    // grows with each consecutive error.
    errorCount += 1;
    actions.push(start("IdleHoldTimer", idleHoldDelay(s.settings, errorCount)));
  }
  const { negotiated: _drop, ...rest } = s;
  return {
    state: {
      ...rest,
      state: "Idle",
      errorCount,
      lastDown: reason,
      connectRetryCounter: s.connectRetryCounter + (opts.error ? 1 : 0),
    },
    actions,
  };
}

/**
 * A NOTIFICATION received (Event 24/25): Idle, and the IdleHold restart damped as for any error,
 * except Cease/7: the peer closed this connection only because it keeps the other one of a
 * collision (§6.8), which says nothing about the peer's health. When both ends connect at once,
 * one may reach Established on a connection the other has just picked to close, and each closes
 * the one the other kept; counted as errors, such lost races doubled the IdleHold of both ends,
 * which restarted in lockstep and could collide again (1 + 2 + 4 s: a mesh session up after 8 s).
 * So Cease/7 neither counts nor doubles: the restart waits the IdleHold of the errors so far (the
 * base one after none), twice that at the end with the lower BGP Identifier, jittered, so the two
 * ends do not connect at the same moment again.
 */
function notificationReceived(s: FsmState, code: number, subcode: number): StepResult {
  const reason: DownReason = { kind: "NotificationReceived", code, subcode };
  if (code === ErrorCode.Cease && subcode === CeaseSubcode.ConnectionCollisionResolution) {
    const r = toIdle(s, reason, [], { error: false });
    // The end whose connections lose collisions (the lower BGP Identifier, §6.8) waits twice as
    // long, so the other one reconnects first and this end takes its connection (Idle accepts).
    const peerId = s.negotiated?.peerId;
    const loses = peerId !== undefined && s.settings.routerId >>> 0 < peerId >>> 0;
    const ms = idleHoldDelay(s.settings, Math.max(1, s.errorCount)) * (loses ? 2 : 1);
    return {
      state: { ...r.state, connectRetryCounter: s.connectRetryCounter },
      actions: [...r.actions, { type: "startTimer", timer: "IdleHoldTimer", ms, jitter: true }],
    };
  }
  return toIdle(s, reason, [], { error: true });
}

function sendAndIdle(s: FsmState, n: NotificationInfo, message: string): StepResult {
  return toIdle(
    s,
    { kind: "NotificationSent", code: n.code, subcode: n.subcode, message },
    [{ type: "sendNotification", notification: n }],
    { error: true },
  );
}

/** Leaves Idle (ManualStart or the IdleHold restart): connect, or listen when passive. */
function startSession(s: FsmState): StepResult {
  const retry = start("ConnectRetryTimer", s.settings.connectRetryTime * 1000);
  if (s.settings.passive) {
    return { state: { ...s, state: "Active" }, actions: [stop("IdleHoldTimer"), retry] };
  }
  return {
    state: { ...s, state: "Connect" },
    actions: [stop("IdleHoldTimer"), retry, { type: "connect" }],
  };
}

/** TCP is up (either direction): send OPEN and wait for the peer's with a large HoldTimer. */
function tcpUp(s: FsmState): StepResult {
  const hold = s.settings.startupHoldMs ?? LARGE_HOLD_MS;
  return {
    state: { ...s, state: "OpenSent" },
    actions: [stop("ConnectRetryTimer"), { type: "sendOpen" }, start("HoldTimer", hold)],
  };
}

function stateUnexpected(s: FsmState): NotificationInfo {
  const sub: Partial<Record<SessionState, number>> = {
    OpenSent: FsmSubcode.UnexpectedMessageInOpenSent,
    OpenConfirm: FsmSubcode.UnexpectedMessageInOpenConfirm,
    Established: FsmSubcode.UnexpectedMessageInEstablished,
  };
  return {
    code: ErrorCode.FiniteStateMachineError,
    subcode: sub[s.state] ?? FsmSubcode.UnspecifiedError,
  };
}

const FAMILY_CODES: Record<Family, [afi: number, safi: number]> = {
  "ipv4-unicast": [1, 1],
  "ipv6-unicast": [2, 1],
};

/** The MP capability (code 1) for a family, as NOTIFICATION 2/7 data (RFC 5492 §3). */
function mpCapabilityData(families: Family[]): Uint8Array {
  const out = new Uint8Array(families.length * 6);
  families.forEach((f, i) => {
    const [afi, safi] = FAMILY_CODES[f];
    out.set([1, 4, afi >> 8, afi & 0xff, 0, safi], i * 6);
  });
  return out;
}

export type OpenCheck =
  | { ok: true; negotiated: Negotiated }
  | { ok: false; notification: NotificationInfo; message: string };

/** RFC 4271 §6.2 OPEN checks, RFC 6793 4-octet AS, RFC 5492 capabilities; then negotiation. */
export function checkOpen(settings: PeerSettings, open: OpenInfo): OpenCheck {
  if (open.version !== BGP_VERSION) {
    return {
      ok: false,
      notification: {
        code: ErrorCode.OpenMessageError,
        subcode: OpenSubcode.UnsupportedVersionNumber,
        data: new Uint8Array([0, BGP_VERSION]),
      },
      message: `Unsupported BGP version ${open.version}`,
    };
  }
  // RFC 6793 §4.2: with the capability, the peer's AS is the capability's value.
  const peerAs = open.as4 ?? open.myAs;
  if (open.as4 === undefined && open.myAs === AS_TRANS && settings.peerAs !== AS_TRANS) {
    return badPeerAs(settings, peerAs);
  }
  if (peerAs !== settings.peerAs) return badPeerAs(settings, peerAs);
  // RFC 6286 §2.2: non-zero; unique within the AS (iBGP peer must differ from us).
  const ibgp = settings.peerAs === settings.localAs;
  if (open.bgpId === 0 || (ibgp && open.bgpId === settings.routerId)) {
    return {
      ok: false,
      notification: { code: ErrorCode.OpenMessageError, subcode: OpenSubcode.BadBgpIdentifier },
      message: `Bad BGP identifier ${ipv4Text(open.bgpId)}`,
    };
  }
  // RFC 4271 §6.2: hold time 1 or 2 seconds is unacceptable.
  if (open.holdTime === 1 || open.holdTime === 2) {
    return {
      ok: false,
      notification: { code: ErrorCode.OpenMessageError, subcode: OpenSubcode.UnacceptableHoldTime },
      message: `Unacceptable hold time ${open.holdTime}`,
    };
  }
  // RFC 4760 §8: a peer without the MP capability speaks IPv4 unicast only.
  const theirs = open.families ?? ["ipv4-unicast"];
  const missing = settings.requiredFamilies.filter((f) => !theirs.includes(f));
  const families = settings.families.filter((f) => theirs.includes(f));
  if (missing.length > 0 || families.length === 0) {
    const want = missing.length > 0 ? missing : settings.families;
    return {
      ok: false,
      notification: {
        code: ErrorCode.OpenMessageError,
        subcode: OpenSubcode.UnsupportedCapability,
        data: mpCapabilityData(want),
      },
      message: `Peer lacks required address families ${JSON.stringify(want)}`,
    };
  }
  const holdTime = Math.min(settings.holdTime, open.holdTime);
  return {
    ok: true,
    negotiated: {
      holdTime,
      keepaliveTime: Math.floor(holdTime / 3),
      families,
      peerAs,
      peerId: open.bgpId,
      as4: open.as4 !== undefined,
      routeRefresh: open.routeRefresh,
      enhancedRouteRefresh: open.enhancedRouteRefresh,
      extendedMessage: open.extendedMessage,
      gracefulRestart: open.gracefulRestart,
      // Negotiated with the OPEN (capabilities.ts); an OpenInfo made by hand gets the defaults.
      options:
        open.options ?? sessionOptions({ fourOctetAs: open.as4 !== undefined, external: !ibgp }),
    },
  };
}

function badPeerAs(settings: PeerSettings, got: number): OpenCheck {
  return {
    ok: false,
    notification: { code: ErrorCode.OpenMessageError, subcode: OpenSubcode.BadPeerAs },
    message: `Bad peer AS ${got}, expected ${settings.peerAs}`,
  };
}

export function ipv4Text(n: number): string {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join(".");
}

export function ipv4Number(text: string): number {
  const parts = text.split(".").map(Number);
  return (
    (((parts[0] ?? 0) << 24) |
      ((parts[1] ?? 0) << 16) |
      ((parts[2] ?? 0) << 8) |
      (parts[3] ?? 0)) >>>
    0
  );
}

/**
 * RFC 4271 §6.8 collision detection: which of two connections to the same peer to close. When
 * our BGP Identifier is lower, the one we initiated is closed; otherwise the peer's.
 */
export function collisionLoser(localId: number, remoteId: number): "outgoing" | "incoming" {
  return localId >>> 0 < remoteId >>> 0 ? "outgoing" : "incoming";
}

/** Keepalive and Hold timers once the peer's OPEN is accepted (hold 0: no timers). */
function sessionTimers(n: Negotiated): FsmAction[] {
  const ka = keepaliveTimer(n);
  if (n.holdTime === 0 || !ka) return [stop("HoldTimer"), stop("KeepaliveTimer")];
  return [ka, start("HoldTimer", n.holdTime * 1000)];
}

function restartHold(s: FsmState): FsmAction[] {
  const hold = s.negotiated?.holdTime ?? 0;
  return hold > 0 ? [start("HoldTimer", hold * 1000)] : [];
}

/** RFC 4271 §8.2.2: one transition. Unknown (state, event) pairs follow the RFC's defaults. */
export function step(s: FsmState, ev: FsmEvent): StepResult {
  const keep = (actions: FsmAction[] = []): StepResult => ({ state: s, actions });
  // Events handled the same way in every state but Idle.
  if (s.state !== "Idle") {
    if (ev.type === "ManualStop") {
      const pre =
        s.state === "OpenSent" || s.state === "OpenConfirm" || s.state === "Established"
          ? [
              ev.notification
                ? { type: "sendNotification" as const, notification: ev.notification }
                : notify(ErrorCode.Cease, CeaseSubcode.AdministrativeShutdown),
            ]
          : [];
      const r = toIdle(s, { kind: "ManualStop" }, pre, { error: false });
      return { state: { ...r.state, connectRetryCounter: 0, errorCount: 0 }, actions: r.actions };
    }
  }
  switch (s.state) {
    case "Idle":
      switch (ev.type) {
        case "ManualStart": // Event 1
          return startSession({ ...s, connectRetryCounter: 0 });
        case "IdleHoldTimer_Expires": // Event 13 (automatic restart after DampPeerOscillations)
          return startSession(s);
        case "TcpConnectionConfirmed":
        case "Tcp_CR_Acked":
          // Idle refuses connections (§8.2.2 Idle state).
          return keep([{ type: "disconnect" }]);
        default:
          return keep();
      }

    case "Connect":
    case "Active":
      switch (ev.type) {
        case "ManualStart":
          return keep();
        case "ConnectRetryTimer_Expires": // Event 9
          if (s.settings.passive) {
            return keep([start("ConnectRetryTimer", s.settings.connectRetryTime * 1000)]);
          }
          return {
            state: { ...s, state: "Connect" },
            actions: [
              { type: "disconnect" },
              start("ConnectRetryTimer", s.settings.connectRetryTime * 1000),
              { type: "connect" },
            ],
          };
        case "Tcp_CR_Acked": // Event 16
        case "TcpConnectionConfirmed": // Event 17
          return tcpUp(s);
        case "TcpConnectionFails": // Event 18: keep listening, retry when the timer fires
          return connectionFailed(s);
        case "IdleHoldTimer_Expires":
        case "KeepaliveTimer_Expires":
        case "HoldTimer_Expires":
          return keep();
        default:
          // Any message without an open connection is an FSM error (Events 8, 10-12, 19-28).
          return toIdle(
            s,
            { kind: "TcpConnectionFails", message: `Unexpected ${ev.type} in ${s.state}` },
            [],
            { error: true },
          );
      }

    case "OpenSent":
      switch (ev.type) {
        case "ManualStart":
        case "Tcp_CR_Acked":
        case "TcpConnectionConfirmed":
        case "ConnectRetryTimer_Expires":
        case "KeepaliveTimer_Expires":
        case "IdleHoldTimer_Expires":
          return keep();
        case "HoldTimer_Expires": // Event 10
          return sendAndIdle(
            s,
            { code: ErrorCode.HoldTimerExpired, subcode: 0 },
            "Hold timer expired",
          );
        case "TcpConnectionFails": // Event 18: back to Active, retry later
          return connectionFailed(s, [stop("HoldTimer")]);
        case "BGPOpen": {
          // Event 19
          const check = checkOpen(s.settings, ev.open);
          if (!check.ok) return sendAndIdle(s, check.notification, check.message);
          return {
            state: { ...s, state: "OpenConfirm", negotiated: check.negotiated },
            actions: [
              stop("ConnectRetryTimer"),
              { type: "sendKeepalive" },
              ...sessionTimers(check.negotiated),
            ],
          };
        }
        case "BGPHeaderErr":
        case "BGPOpenMsgErr":
        case "UpdateMsgErr":
          return sendAndIdle(
            s,
            ev.notification,
            `Message error ${ev.notification.code}/${ev.notification.subcode}`,
          );
        case "NotifMsg":
          return notificationReceived(s, ev.code, ev.subcode);
        case "OpenCollisionDump":
          return toIdle(
            s,
            { kind: "CollisionResolution" },
            [notify(ErrorCode.Cease, CeaseSubcode.ConnectionCollisionResolution)],
            { error: false },
          );
        default:
          return sendAndIdle(s, stateUnexpected(s), `Unexpected ${ev.type} in OpenSent`);
      }

    case "OpenConfirm":
    case "Established":
      switch (ev.type) {
        case "ManualStart":
        case "Tcp_CR_Acked":
        case "TcpConnectionConfirmed":
        case "ConnectRetryTimer_Expires":
        case "IdleHoldTimer_Expires":
          return keep();
        case "HoldTimer_Expires":
          return sendAndIdle(
            s,
            { code: ErrorCode.HoldTimerExpired, subcode: 0 },
            "Hold timer expired",
          );
        case "KeepaliveTimer_Expires": {
          const ka = s.negotiated ? keepaliveTimer(s.negotiated) : undefined;
          return keep([{ type: "sendKeepalive" }, ...(ka ? [ka] : [])]);
        }
        case "TcpConnectionFails":
          return toIdle(s, { kind: "TcpConnectionFails", message: ev.message }, [], {
            error: true,
          });
        case "NotifMsg":
          return notificationReceived(s, ev.code, ev.subcode);
        case "BGPHeaderErr":
        case "BGPOpenMsgErr":
        case "UpdateMsgErr":
          return sendAndIdle(
            s,
            ev.notification,
            `Message error ${ev.notification.code}/${ev.notification.subcode}`,
          );
        case "OpenCollisionDump":
          return toIdle(
            s,
            { kind: "CollisionResolution" },
            [notify(ErrorCode.Cease, CeaseSubcode.ConnectionCollisionResolution)],
            { error: false },
          );
        case "KeepAliveMsg": // Event 26
          if (s.state === "OpenConfirm") {
            const negotiated = s.negotiated as Negotiated;
            // A session that reaches Established ends the run of consecutive errors.
            return {
              state: { ...s, state: "Established", errorCount: 0, connectRetryCounter: 0 },
              actions: [...restartHold(s), { type: "established", negotiated }],
            };
          }
          return keep(restartHold(s));
        case "UpdateMsg": // Event 27
          if (s.state === "OpenConfirm") {
            return sendAndIdle(s, stateUnexpected(s), "UPDATE before KEEPALIVE in OpenConfirm");
          }
          return keep([...restartHold(s), { type: "processUpdate" }]);
        case "RouteRefreshMsg":
          if (s.state === "OpenConfirm") {
            return sendAndIdle(s, stateUnexpected(s), "ROUTE-REFRESH in OpenConfirm");
          }
          return keep([...restartHold(s), { type: "processRouteRefresh" }]);
        case "BGPOpen":
          return sendAndIdle(s, stateUnexpected(s), `Unexpected OPEN in ${s.state}`);
        default:
          return keep();
      }
  }
}
