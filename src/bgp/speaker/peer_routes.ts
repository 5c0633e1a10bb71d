// The kernel routes the speaker keeps for its configuration rather than for its RIB: a host
// route to each peer with `reachableBy` via that gateway (Calico's BGPPeer reachableBy, which
// confd renders as BIRD's static `route <peer>/32 via <gateway>`, exported to the kernel
// without a krt_metric: metric 0). Pure: the routes a config asks for, and the diff to apply.
// Not: applying them (runtime.ts), the routes learned from peers (rib/, fib_pump.ts).
import { type Route, RT_TABLE_MAIN, routeKey } from "../../fib/types.js";
import type { BgpdConfig } from "../config.js";

/** The host routes to peers reached through a gateway, keyed as the kernel keys routes. */
export function peerRoutes(cfg: BgpdConfig): Map<string, Route> {
  const out = new Map<string, Route>();
  if (!cfg.fib.enabled) return out;
  const table = cfg.fib.table === "main" ? RT_TABLE_MAIN : cfg.fib.table;
  for (const p of cfg.peers) {
    if (p.reachableBy === undefined) continue;
    const family = p.address.includes(":") ? 6 : 4;
    const r: Route = {
      family,
      dst: `${p.address.replace(/%.*$/, "")}/${family === 4 ? 32 : 128}`,
      table,
      protocol: cfg.fib.protocol,
      metric: 0,
      nexthops: [{ gateway: p.reachableBy }],
    };
    out.set(routeKey(r), r);
  }
  return out;
}

/** What to set (new or with another gateway) and what to remove to go from `had` to `want`. */
export function peerRoutesDiff(
  had: ReadonlyMap<string, Route>,
  want: ReadonlyMap<string, Route>,
): { set: Route[]; remove: Route[] } {
  const set: Route[] = [];
  const remove: Route[] = [];
  for (const [k, r] of want) {
    const old = had.get(k);
    if (old === undefined || JSON.stringify(old.nexthops) !== JSON.stringify(r.nexthops))
      set.push(r);
  }
  for (const [k, r] of had) if (!want.has(k)) remove.push(r);
  return { set, remove };
}
