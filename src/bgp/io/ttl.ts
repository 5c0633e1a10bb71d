// The eBGP TTL of a BGP connection (RFC 4271 §5.1.3: directly connected peers get TTL 1 unless
// multihop is set; GTSM peers ask for 255 through multihop), set through the native addon when
// it loads. Shared by `ocelot bgpd` and `ocelot node run`. Owns: that socket hook. Not: when it
// runs (the speaker's runtime calls it for each connection).

import type { Log } from "../../lib/log.js";
import type { PeerConfig } from "../config.js";
import type { Connection } from "./transport.js";

/** eBGP sessions get TTL 1 unless multihop is set (RFC 4271 §5.1.3 directly connected). */
export async function ttlHook(
  log: Log,
): Promise<((c: Connection, p: PeerConfig, ebgp: boolean) => void) | undefined> {
  let mod: typeof import("../../lib/native.js");
  try {
    mod = await import("../../lib/native.js");
    const why = mod.addonUnavailableReason();
    if (why) throw new Error(why);
  } catch (e) {
    log.warn({ error: (e as Error).message }, "Native addon unavailable: eBGP TTL not set");
    return undefined;
  }
  const { setsockoptFd, SockOpt } = mod;
  return (c, p, ebgp) => {
    if (!ebgp && p.multihop === undefined) return;
    const ttl = p.multihop ?? 1;
    if (c.fd < 0) return;
    if (c.family === 4) setsockoptFd(c.fd, SockOpt.IPPROTO_IP, SockOpt.IP_TTL, ttl);
    else setsockoptFd(c.fd, SockOpt.IPPROTO_IPV6, SockOpt.IPV6_UNICAST_HOPS, ttl);
  };
}
