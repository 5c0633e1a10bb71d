// The overlay's fast path, pure: from the overlay state last applied and the one rendered now
// (overlay.ts), the routes, neighbours and FDB entries to set and to remove, and nothing else,
// so a new or moved block (or a node's new tunnel address or VTEP MAC) reaches the kernel
// without the agent's whole pass. When the devices themselves differ (a pool's mode, the MTU,
// this node's tunnel address) the delta is not enough: `devicesChanged` leaves it to the full
// pass. The common change, blocks of other nodes added, has an incremental form (addBlocks): only
// the new blocks rendered and the delta built from them, nothing else of the cluster looked at.
// Not: the kernel (overlay_fast.ts), rendering (overlay.ts).
import { type Route, routeKey } from "../fib/types.js";
import { type Cidr, cidrContains, parseCidr } from "../lib/ip.js";
import {
  type FdbEntry,
  type Neighbour,
  type OverlayInput,
  type OverlayState,
  renderOverlay,
} from "./overlay.js";

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
const prefixLength = (cidr: string) => Number(cidr.slice(cidr.indexOf("/") + 1));

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

/**
 * Blocks of other nodes added to `applied` (the overlay last applied, complete), rendered alone:
 * `input` holds only the added blocks and the nodes they need (this node and their owners), with
 * every pool and this node's fabric and MTU, as a full render would get them. Returns the new
 * state and its delta, or undefined where the addition is not that simple and a full render must
 * decide: a block's CIDR already claimed, the devices or the pods' MTU would differ, a block
 * already routed otherwise, its VTEP's
 * neighbour or FDB entry different, or a route already applied inside a new block (a borrowed
 * address its block now covers: the full render drops that route). Workload addresses are not
 * looked at (no borrowed address can be new here: a route inside the block is the refusal).
 */
export function addBlocks(
  applied: OverlayState,
  input: OverlayInput,
  present: ReadonlySet<string>,
  /** CIDRs of the confirmed blocks known before these (any node's): a second claim is refused. */
  claimed: ReadonlySet<string>,
): { state: OverlayState; delta: OverlayDelta } | undefined {
  // A CIDR claimed twice (before, or twice among these): the full render decides which claim
  // routes it (or none).
  if (input.blocks.some((b) => claimed.has(b.cidr))) return undefined;
  if (new Set(input.blocks.map((b) => b.cidr)).size !== input.blocks.length) return undefined;
  const part = renderOverlay({ ...input, workloads: [] });
  if (!sameData(part.devices, applied.devices) || part.podMtu !== applied.podMtu) return undefined;
  const routes = new Map<string, Route>();
  for (const r of applied.routes) routes.set(routeId(r), r);
  const addedRoutes: Route[] = [];
  for (const r of part.routes) {
    const was = routes.get(routeId(r));
    if (was !== undefined) {
      if (!sameData(was, r)) return undefined;
      continue;
    }
    // Only a longer prefix can lie inside the block (parsed only then: this runs per change).
    const len = prefixLength(r.dst);
    let block: Cidr | undefined;
    for (const x of applied.routes) {
      if (x.family !== r.family || prefixLength(x.dst) <= len) continue;
      block ??= parseCidr(r.dst, false);
      const c = parseCidr(x.dst, false);
      if (cidrContains(block, c.family, c.base)) return undefined;
    }
    addedRoutes.push(r);
  }
  const added = <T>(mine: readonly T[], theirs: readonly T[], key: (x: T) => string) => {
    const have = new Map<string, T>();
    for (const x of mine) have.set(key(x), x);
    const out: T[] = [];
    for (const x of theirs) {
      const was = have.get(key(x));
      if (was === undefined) out.push(x);
      else if (!sameData(was, x)) return undefined;
    }
    return out;
  };
  const neighbours = added(applied.neighbours, part.neighbours, neighKey);
  const fdb = added(applied.fdb, part.fdb, fdbKey);
  if (neighbours === undefined || fdb === undefined) return undefined;
  const usable = (dev: string | undefined) => dev === undefined || present.has(dev);
  return {
    state: {
      ...applied,
      routes: [...applied.routes, ...addedRoutes],
      neighbours: [...applied.neighbours, ...neighbours],
      fdb: [...applied.fdb, ...fdb],
      warnings: [...applied.warnings, ...part.warnings],
    },
    delta: {
      devicesChanged: false,
      setNeighbours: neighbours.filter((x) => usable(x.dev)),
      setFdb: fdb.filter((x) => usable(x.dev)),
      setRoutes: addedRoutes.filter((r) => r.nexthops.every((nh) => usable(nh.dev))),
      removeRoutes: [],
      removeNeighbours: [],
      removeFdb: [],
    },
  };
}
