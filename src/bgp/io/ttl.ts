// The TTL socket options of BGP connections, set through the native addon when it loads: the
// TTL we send (RFC 4271 §5.1.3: directly connected eBGP peers get TTL 1 unless multihop is set;
// GTSM peers get 255) and GTSM's minimum TTL of the peer's packets (RFC 5082, IP_MINTTL /
// IPV6_MINHOPCOUNT: the kernel drops a segment below it, a SYN included, before TCP sees it).
// Shared by `ocelot bgpd` and `ocelot node run`. Owns: that socket hook. Not: which TTLs a peer
// gets (peerTtl() in ../config.ts) or when it runs (the speaker's runtime calls it on the
// listener, before each connect() and at each accept).

import type { Log } from "../../lib/log.js";
import type { SocketTtl } from "../config.js";

/**
 * Sets TTL options on a socket fd. `families` are the traffic families the socket carries: an
 * IPv6 listener on "::" carries IPv4-mapped connections too, so it takes [4, 6] with one value
 * per family.
 */
export type TtlSetter = (fd: number, family: 4 | 6, ttl: SocketTtl) => void;

/** The setter, or undefined (logged) when the native addon cannot load. */
export async function ttlHook(log: Log): Promise<TtlSetter | undefined> {
  let mod: typeof import("../../lib/native.js");
  try {
    mod = await import("../../lib/native.js");
    const why = mod.addonUnavailableReason();
    if (why) throw new Error(why);
  } catch (e) {
    log.warn(
      { error: (e as Error).message },
      "Native addon unavailable: eBGP TTL not set, GTSM (ttlSecurity) not checked",
    );
    return undefined;
  }
  const { setsockoptFd, SockOpt } = mod;
  return (fd, family, t) => {
    if (fd < 0) return;
    if (family === 4) {
      if (t.ttl !== undefined) setsockoptFd(fd, SockOpt.IPPROTO_IP, SockOpt.IP_TTL, t.ttl);
      if (t.minTtl !== undefined) setsockoptFd(fd, SockOpt.IPPROTO_IP, SockOpt.IP_MINTTL, t.minTtl);
    } else {
      if (t.ttl !== undefined)
        setsockoptFd(fd, SockOpt.IPPROTO_IPV6, SockOpt.IPV6_UNICAST_HOPS, t.ttl);
      if (t.minTtl !== undefined)
        setsockoptFd(fd, SockOpt.IPPROTO_IPV6, SockOpt.IPV6_MINHOPCOUNT, t.minTtl);
    }
  };
}
