// The capabilities of a session (RFC 5492), in one place: what we advertise for a peer's
// settings, what the FSM reads of the peer's OPEN, and the codec's session options negotiated
// from both lists. Owns: these three mappings. Not: capability bytes (wire/open.ts), the OPEN
// checks and hold-time negotiation (fsm.ts).
import { type decodeOpen, negotiateSessionOptions } from "../wire/open.js";
import {
  type Capability,
  familyKey,
  Ipv4Unicast,
  Ipv6Unicast,
  type SessionOptions,
} from "../wire/types.js";
import type { Family, OpenInfo, PeerSettings } from "./types.js";

const FAMILY_AFI: Record<Family, [number, number]> = {
  "ipv4-unicast": [1, 1],
  "ipv6-unicast": [2, 1],
};

/** Our capabilities for a peer: MP per family, route refresh (+ enhanced), 4-octet AS, GR. */
export function localCapabilities(settings: PeerSettings): Capability[] {
  const caps: Capability[] = settings.families.map((f) => {
    const [afi, safi] = FAMILY_AFI[f];
    return { kind: "Multiprotocol", afi, safi } as Capability;
  });
  caps.push(
    { kind: "RouteRefresh" },
    { kind: "EnhancedRouteRefresh" },
    { kind: "FourOctetAs", asn: settings.localAs },
  );
  // RFC 4724 §3: the capability without <AFI,SAFI> says we send End-of-RIB after the initial
  // update (and peers such as BIRD only send theirs to speakers that say so). We do not ask
  // peers to keep our routes when the session drops.
  caps.push({
    kind: "GracefulRestart",
    restartState: false,
    notification: false,
    restartTime: 120,
    families: [],
  });
  return caps;
}

/** The FSM's view of a decoded OPEN. */
export function openInfo(open: ReturnType<typeof decodeOpen>): OpenInfo {
  const families: Family[] = [];
  let sawMp = false;
  let as4: number | undefined;
  const has = (k: Capability["kind"]) => open.capabilities.some((c) => c.kind === k);
  for (const c of open.capabilities) {
    if (c.kind === "Multiprotocol") {
      sawMp = true;
      const k = familyKey(c.afi, c.safi);
      if (k === Ipv4Unicast && !families.includes("ipv4-unicast")) families.push("ipv4-unicast");
      if (k === Ipv6Unicast && !families.includes("ipv6-unicast")) families.push("ipv6-unicast");
    } else if (c.kind === "FourOctetAs") as4 = c.asn;
  }
  const info: OpenInfo = {
    version: open.version,
    myAs: open.myAs,
    holdTime: open.holdTime,
    bgpId: open.bgpIdentifier >>> 0,
    routeRefresh: has("RouteRefresh"),
    enhancedRouteRefresh: has("EnhancedRouteRefresh"),
    extendedMessage: has("ExtendedMessage"),
    gracefulRestart: has("GracefulRestart"),
  };
  if (sawMp) info.families = families;
  if (as4 !== undefined) info.as4 = as4;
  return info;
}

/** The codec's options for the session, from what we sent and what the peer sent. */
export function negotiate(
  local: Capability[],
  remote: Capability[],
  external: boolean,
): SessionOptions {
  return negotiateSessionOptions(local, remote, external);
}
