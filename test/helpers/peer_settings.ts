// The FSM's settings for an iBGP IPv4-unicast session in AS 64512, as the pure session tests
// (keepalive, collision races) give them to PeerSession.
import { ipv4Number } from "../../src/bgp/fsm/fsm.js";
import type { PeerSettings } from "../../src/bgp/fsm/types.js";

/** AS 64512 both sides, active, ConnectRetry 5 s, IdleHold 1 s doubling up to 60 s. */
export function ibgpSettings(routerId: string, holdTime: number): PeerSettings {
  return {
    localAs: 64512,
    peerAs: 64512,
    routerId: ipv4Number(routerId),
    holdTime,
    connectRetryTime: 5,
    passive: false,
    families: ["ipv4-unicast"],
    requiredFamilies: [],
    idleHoldMs: 1000,
    maxIdleHoldMs: 60_000,
  };
}
