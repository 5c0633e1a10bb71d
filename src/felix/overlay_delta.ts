// The overlay's fast path, pure: from the overlay state last applied and the one rendered now
// (overlay.ts), the routes, neighbours and FDB entries to set and to remove, and nothing else,
// so a new or moved block (or a node's new tunnel address or VTEP MAC) reaches the kernel
// without the agent's whole pass. When the devices themselves differ (a pool's mode, the MTU,
// this node's tunnel address) the delta is not enough: `devicesChanged` leaves it to the full
// pass. Not: the kernel (overlay_fast.ts), rendering (overlay.ts).
import { type Route, routeKey } from "../fib/types.js";
import type { FdbEntry, Neighbour, OverlayState } from "./overlay.js";

export interface OverlayDelta {
  /** The devices differ: only the full pass may apply this change. */
  devicesChanged: boolean;
  /** In this order: neighbours and FDB entries, then routes set; routes, then entries removed. */
  setNeighbours: Neighbour[];
  setFdb: FdbEntry[];
  setRoutes: Route[];
  removeRoutes: Route[];
  removeNeighbours: Neighbour[];
  removeFdb: FdbEntry[];
}

const neighKey = (n: Neighbour) => `${n.dev}|${n.dst}`;
const fdbKey = (f: FdbEntry) => `${f.dev}|${f.mac}`;
const routeId = (r: Route) => routeKey(r);

/** Plain data (what render produces: strings, numbers, booleans, arrays, objects) compared deeply. */
export function sameData(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameData(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka)
    if (!sameData((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
      return false;
  return true;
}

/**
 * The changes between two lists keyed by key: new or different ones set, vanished ones removed.
 * Each key computed once, entries compared structurally (no JSON text per entry: this runs for
 * every block of the cluster at each change).
 */
function diff<T>(
  before: readonly T[],
  after: readonly T[],
  key: (x: T) => string,
): { set: T[]; remove: T[] } {
  const old = new Map<string, T>();
  for (const x of before) old.set(key(x), x);
  const set: T[] = [];
  for (const x of after) {
    const k = key(x);
    const was = old.get(k);
    if (was === undefined || !sameData(was, x)) set.push(x);
    old.delete(k);
  }
  return { set, remove: [...old.values()] };
}

/**
 * What turns `applied` into `next` for the entries on devices in `present` (devices that exist;
 * entries through others wait for the full pass, as its routes do).
 */
export function planOverlayDelta(
  applied: OverlayState,
  next: OverlayState,
  present: ReadonlySet<string>,
): OverlayDelta {
  const devicesChanged =
    JSON.stringify(applied.devices) !== JSON.stringify(next.devices) ||
    applied.podMtu !== next.podMtu;
  const usable = (dev: string | undefined) => dev === undefined || present.has(dev);
  const routeUsable = (r: Route) => r.nexthops.every((nh) => usable(nh.dev));
  const n = diff(applied.neighbours, next.neighbours, neighKey);
  const f = diff(applied.fdb, next.fdb, fdbKey);
  const r = diff(applied.routes, next.routes, routeId);
  return {
    devicesChanged,
    setNeighbours: n.set.filter((x) => usable(x.dev)),
    setFdb: f.set.filter((x) => usable(x.dev)),
    setRoutes: r.set.filter(routeUsable),
    removeRoutes: r.remove,
    removeNeighbours: n.remove.filter((x) => usable(x.dev)),
    removeFdb: f.remove.filter((x) => usable(x.dev)),
  };
}

/** True when the delta changes nothing. */
export function isEmptyDelta(d: OverlayDelta): boolean {
  return (
    d.setNeighbours.length +
      d.setFdb.length +
      d.setRoutes.length +
      d.removeRoutes.length +
      d.removeNeighbours.length +
      d.removeFdb.length ===
    0
  );
}
