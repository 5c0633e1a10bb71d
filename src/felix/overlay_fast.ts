// The overlay fast path's thin edge: runs a delta of overlay_delta.ts over netlink, neighbours
// and FDB entries before the routes through them, stale routes before the entries they used.
// With an OverlaySocket (overlay_socket.ts) a new tunnel route goes in the same sendmsg as the
// entries, after them (rtnetlink applies a datagram's requests in order within the sendmsg), and
// is handed to the agent's FIB once the FIB has read the kernel's event of it (one event-loop
// turn after the entries' answers: the event was queued on the FIB's socket during the sendmsg),
// so the FIB finds it installed and writes nothing; any other route (and with a plain
// NeighbourSocket every route) goes to the FIB as soon as the entries' requests are in the
// kernel, not after their answers. Not: deciding anything (overlay_delta.ts), devices.
import type { NeighFailure, NeighOp } from "../fib/neigh_socket.js";
import { addressBytes, macBytes, NTF_SELF, NUD_PERMANENT } from "../fib/rtnetlink.js";
import { type Fib, type Route, RTPROT_OCELOT_AGENT } from "../fib/types.js";
import type { FdbEntry, Neighbour } from "./overlay.js";
import type { OverlayDelta } from "./overlay_delta.js";
import { sendsItself } from "./overlay_socket.js";

const familyOf = (address: string): 4 | 6 => (address.includes(":") ? 6 : 4);

function neighOp(op: "set" | "del", n: Neighbour): NeighOp {
  const family = familyOf(n.dst);
  return {
    op,
    dev: n.dev,
    what: `neighbour ${n.dst} ${n.lladdr} on ${n.dev}`,
    req: {
      family,
      state: NUD_PERMANENT,
      flags: 0,
      dst: addressBytes(family, n.dst),
      ...(op === "set" ? { lladdr: macBytes(n.lladdr), protocol: RTPROT_OCELOT_AGENT } : {}),
    },
  };
}

function fdbOp(op: "set" | "del", f: FdbEntry): NeighOp {
  return {
    op,
    dev: f.dev,
    what: `fdb ${f.mac} dst ${f.dst} on ${f.dev}`,
    req: {
      family: "bridge",
      state: NUD_PERMANENT,
      flags: NTF_SELF,
      lladdr: macBytes(f.mac),
      dst: addressBytes(familyOf(f.dst), f.dst),
    },
  };
}

/**
 * What sends the entries: a NeighbourSocket (entries only) or an OverlaySocket (the routes too,
 * in the same sendmsg). `onSent` runs once the requests are in the kernel, before any answer.
 */
export interface EntrySocket {
  /** True: run() sends the routes sendsItself allows in the entries' sendmsg. */
  readonly sendsRoutes?: boolean;
  run(
    ops: readonly NeighOp[],
    onSent?: () => void,
    routes?: readonly Route[],
  ): Promise<NeighFailure[]>;
}

/** The requests the delta makes, in order: set entries, set routes, remove routes, remove entries. */
export function deltaNeighOps(d: OverlayDelta): { before: NeighOp[]; after: NeighOp[] } {
  return {
    before: [
      ...d.setNeighbours.map((n) => neighOp("set", n)),
      ...d.setFdb.map((f) => fdbOp("set", f)),
    ],
    after: [
      ...d.removeNeighbours.map((n) => neighOp("del", n)),
      ...d.removeFdb.map((f) => fdbOp("del", f)),
    ],
  };
}

/**
 * Applies the delta; resolves with what failed (the full pass repairs it) and when each part was
 * acknowledged, in ms from the start: the entries set, the routes (handed over once the entries'
 * requests were sent, so the two overlap), and the entries removed after the routes.
 */
export async function applyOverlayDelta(
  d: OverlayDelta,
  io: { fib: Fib; neigh: EntrySocket },
): Promise<{ failures: NeighFailure[]; entriesMs: number; routesMs: number; removedMs: number }> {
  const ops = deltaNeighOps(d);
  const t0 = performance.now();
  // The routes the socket writes itself, and the rest (the FIB's from the start).
  const own = io.neigh.sendsRoutes ? d.setRoutes.filter(sendsItself) : [];
  const fibSets = own.length > 0 ? d.setRoutes.filter((r) => !own.includes(r)) : d.setRoutes;
  let routes: Promise<unknown> | undefined;
  // When the socket's own routes were sent, and when the FIB acknowledged the rest.
  let sentAt = t0;
  let fibAt = t0;
  const startRoutes = () => {
    if (routes) return;
    sentAt = performance.now();
    routes = Promise.all([
      fibSets.length > 0 ? io.fib.set(fibSets) : undefined,
      d.removeRoutes.length > 0 ? io.fib.remove(d.removeRoutes) : undefined,
    ]).then(() => {
      fibAt = performance.now();
    });
    // Handled here (it is awaited below): a refusal while the entries' answers are awaited
    // must not count as an unhandled rejection.
    routes.catch(() => {});
  };
  let failures: NeighFailure[];
  try {
    failures = await io.neigh.run(ops.before, startRoutes, own);
  } catch (err) {
    // The routes' requests, once started, are waited for before the failure is reported.
    await routes?.catch(() => {});
    throw err;
  }
  const t1 = performance.now();
  startRoutes();
  let handed: Promise<unknown> | undefined;
  if (own.length > 0) {
    // In the kernel since the entries' sendmsg; its event is read by the FIB in the poll phase
    // that brought the entries' answers, so after this turn the FIB finds it there (a route the
    // socket could not write is written by the FIB itself).
    await new Promise<void>((r) => setImmediate(r));
    handed = io.fib.set(own);
  }
  await Promise.all([routes, handed]);
  const routesAt = Math.max(own.length > 0 ? sentAt : t0, fibAt);
  const t2 = performance.now();
  failures.push(...(await io.neigh.run(ops.after)));
  const ms = (x: number) => Math.round(x * 10) / 10;
  return {
    failures,
    entriesMs: ms(t1 - t0),
    routesMs: ms(routesAt - t0),
    removedMs: ms(performance.now() - t2),
  };
}
