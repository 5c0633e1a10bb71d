// The overlay fast path's rtnetlink request socket: a new block's neighbour, FDB entry and route
// in ONE sendmsg (rtnetlink applies each request of a datagram in order within that sendmsg), so
// the three reach the kernel together, with no wake-up of the process between them. Neighbours
// and FDB entries are acknowledged and their failures reported. A route is sent only where none
// is (NLM_F_EXCL: a route already there, ours or anyone's, is never replaced from here), without
// an ACK, its answer ignored: the agent's FIB (KernelFib) owns it, learns it from its route
// events, and is handed it right after (overlay_fast.ts); a route refused here is the FIB's to
// write and report. Owns: which routes it sends and their request. Not: the socket, the ifindex
// lookup and the entries' ACKs (fib/neigh_socket.ts, whose extra requests the routes are), byte
// layouts (fib/rtnetlink.ts), deciding what to install (overlay_delta.ts), the routes' state
// (the FIB).
import {
  type ExtraRequests,
  NeighbourSocket,
  type NeighFailure,
  type NeighOp,
} from "../fib/neigh_socket.js";
import {
  addressBytes,
  NLM_F_CREATE,
  NLM_F_EXCL,
  parseCidr,
  RT_SCOPE_UNIVERSE,
  RTM_NEWROUTE,
  RTN_UNICAST,
  writeRoute,
} from "../fib/rtnetlink.js";
import type { Route } from "../fib/types.js";

const RT_TABLE_MAIN = 254;

/**
 * True when the fast path may send this route itself: main table, metric 0, unicast, one next
 * hop through a named device with a gateway (the overlay's tunnel routes). Anything else is left
 * to the FIB alone.
 */
export function sendsItself(r: Route): boolean {
  const nh = r.nexthops[0];
  return (
    r.nexthops.length === 1 &&
    nh !== undefined &&
    nh.dev !== undefined &&
    nh.gateway !== undefined &&
    (nh.weight ?? 1) === 1 &&
    (r.type ?? "unicast") === "unicast" &&
    (r.table ?? RT_TABLE_MAIN) === RT_TABLE_MAIN &&
    (r.metric ?? 0) === 0 &&
    r.scope === undefined &&
    r.src === undefined
  );
}

/** The routes as the entries' extra requests: created only where none is, no ACK asked. */
function routeRequests(routes: readonly Route[]): ExtraRequests {
  return {
    devs: routes.flatMap((r) => (r.nexthops[0]?.dev === undefined ? [] : [r.nexthops[0].dev])),
    count: routes.length,
    write(w, links, nextSeq) {
      for (const r of routes) {
        const nh = r.nexthops[0];
        const ifindex = nh?.dev === undefined ? undefined : links.get(nh.dev);
        if (nh?.gateway === undefined || ifindex === undefined) continue; // the FIB's write reports it
        const { addr, len } = parseCidr(r.family, r.dst);
        writeRoute(w, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, nextSeq(), {
          family: r.family,
          dst: addr,
          dstLen: len,
          table: RT_TABLE_MAIN,
          protocol: r.protocol,
          type: RTN_UNICAST,
          scope: RT_SCOPE_UNIVERSE,
          metric: 0,
          nexthops: [
            {
              gateway: addressBytes(nh.gateway.includes(":") ? 6 : r.family, nh.gateway),
              ifindex,
              onlink: nh.onlink === true,
              weight: 1,
            },
          ],
        });
      }
    },
  };
}

export class OverlaySocket {
  /** Sends the routes that sendsItself allows itself (overlay_fast.ts hands them to the FIB later). */
  readonly sendsRoutes = true;

  private constructor(private readonly neigh: NeighbourSocket) {}

  static open(netns?: string): OverlaySocket {
    return new OverlaySocket(NeighbourSocket.open(netns));
  }

  /**
   * Sends ops in order, then the routes that sendsItself allows, in one sendmsg; `onSent` is
   * called right after it (before any answer is read). Resolves with the entries' failures (a
   * missing entry's delete is not one); an entry refused with ENODEV is sent again once after a
   * fresh link dump (a device made again has a new index), without the routes.
   */
  run(
    ops: readonly NeighOp[],
    onSent?: () => void,
    routes: readonly Route[] = [],
  ): Promise<NeighFailure[]> {
    const own = routes.filter(sendsItself);
    return this.neigh.runWith(ops, onSent, own.length > 0 ? routeRequests(own) : undefined);
  }

  close(): void {
    this.neigh.close();
  }
}
