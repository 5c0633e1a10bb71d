// What goes into the speaker's core and what comes out: the events the runtime feeds it (bytes
// read, connections made and lost, timers fired, FIB work done, configuration) and the actions
// it asks the runtime to carry out (connect, send, close, timers, FIB batches, read pausing).
// Owns: these shapes and the naming of connections and timers. Not: what the core does with an
// event (core.ts), how an action is carried out (runtime.ts).
//
// Adding a kind of event (e.g. BFD reporting a peer down) or action touches this file, the
// core's dispatch and the runtime's carrier; both switches are exhaustive, so tsc names the
// place that misses one.
import type { BgpdConfig } from "../config.js";
import type { Family, TimerName } from "../fsm/types.js";
import type { FibBatch } from "../rib/rib.js";

/**
 * One TCP connection of a peer, by number: > 0 for connections we open (numbered by the core
 * in its `connect` action), < 0 for connections the listener accepted (numbered by the runtime).
 */
export type ConnId = number;

/**
 * A timer: one of the RFC 4271 timers of a peer's FSM `link` (a peer runs one FSM, two while
 * connections collide; links are numbered from 1 per peer), or the peer's RFC 4724 restart
 * timer or the end of its max-prefix hold-down (link 0), or a peer's timer of one family.
 */
export interface TimerKey {
  peer: string;
  link: number;
  /**
   * RestartTimer, StaleTimer: RFC 4724 §4.2 helper timers of a peer (link 0);
   * LongLivedStaleTimer: RFC 9494 §4.2, the helper's after the restart time, one per family
   * (link 0, `family`);
   * SelectionDeferralTimer: §4.1, ours after a restart (peer "", link 0); MaxPrefixRestart.
   */
  name:
    | TimerName
    | "RestartTimer"
    | "StaleTimer"
    | "LongLivedStaleTimer"
    | "SelectionDeferralTimer"
    | "MaxPrefixRestart";
  /** The address family a per-family timer (LongLivedStaleTimer) runs for. */
  family?: Family;
}

/** The text form of a timer key (for maps and replay files). */
export function timerId(t: TimerKey): string {
  return t.family ? `${t.peer}/${t.link}/${t.name}/${t.family}` : `${t.peer}/${t.link}/${t.name}`;
}

export type SpeakerEvent =
  /** Originate, start every peer's session. */
  /** `restarting`: our routes were found in the kernel (RFC 4724 §4.1 restarting speaker). */
  | { kind: "start"; restarting?: boolean }
  /** Stop every session (Cease), withdraw originations, drain the RIB. */
  | { kind: "stop" }
  /** A new configuration (SIGHUP): peers are added, removed, reset or refreshed by diff. */
  | { kind: "reconfigure"; config: BgpdConfig }
  /** Our outgoing connection `conn` (from a connect action) is up. */
  | { kind: "connected"; peer: string; conn: ConnId }
  | { kind: "connectFailed"; peer: string; conn: ConnId; message: string }
  /** The listener accepted a connection from the peer's address. */
  | { kind: "accepted"; peer: string; conn: ConnId }
  /** Bytes read from a connection (any framing: the core reassembles messages). */
  | { kind: "received"; peer: string; conn: ConnId; bytes: Uint8Array }
  /** The connection closed or failed under us. */
  | { kind: "closed"; peer: string; conn: ConnId; message: string }
  | { kind: "timerExpired"; timer: TimerKey }
  /** The runtime's answer to flushSoon: drain one bounded step of RIB changes. */
  | { kind: "flush" }
  /** One FIB batch (an earlier fib action) settled, applied or failed. */
  | { kind: "fibDone" }
  /**
   * Something outside BGP says the peer is unreachable (e.g. a BFD session went down): the
   * session drops as on a TCP failure, its routes at once (no graceful-restart help: the
   * forwarding path is what failed), then starts again.
   */
  | { kind: "peerDown"; peer: string; reason: string }
  /**
   * Hold the peer's session down (held: a BFD session to it went down, or (by "link") the link
   * to a directly connected peer went down: drop it and do not connect or accept until
   * released) or let it come up again (its BFD session is Up, its link is up). Holds by
   * different sources add up; `by` defaults to "bfd". A link hold sends no NOTIFICATION.
   */
  | { kind: "peerHold"; peer: string; held: boolean; reason: string; by?: "bfd" | "link" };

export type SpeakerAction =
  | {
      kind: "connect";
      peer: string;
      conn: ConnId;
      address: string;
      port: number;
      localAddress?: string;
      timeoutMs: number;
    }
  /**
   * Write bytes. paced: UPDATEs, which may wait for the connection's write pacing during a
   * burst (bgp/io/transport.ts); the FSM's own messages (OPEN, KEEPALIVE, NOTIFICATION) go at
   * the end of the turn.
   */
  | { kind: "send"; peer: string; conn: ConnId; bytes: Uint8Array; paced?: true }
  /** Close a connection (end: after what is queued; destroy: at once) or abandon a connect. */
  | { kind: "close"; peer: string; conn: ConnId; how: "end" | "destroy" }
  | { kind: "pauseReading"; peer: string; conn: ConnId; paused: boolean }
  | { kind: "startTimer"; timer: TimerKey; ms: number }
  | { kind: "stopTimer"; timer: TimerKey }
  /** Ask for a flush event soon (after pending I/O, so reading and draining interleave). */
  | { kind: "flushSoon" }
  /** Hand a batch of Loc-RIB changes to the FIB; answer with fibDone when it settles. */
  | {
      kind: "fib";
      batch: FibBatch;
      protocol: number;
      table: number;
      /** The kernel metric per family (config fib.metricV4 / metricV6; 0: the kernel's). */
      metric: { v4: number; v6: number };
    }
  /** Every peer re-sent its table after our restart: the FIB may drop what is left from before. */
  | { kind: "fibEndGracefulHold" };
