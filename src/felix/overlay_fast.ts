// The overlay fast path's thin edge: runs a delta of overlay_delta.ts over netlink, neighbours
// and FDB entries (neigh_socket.ts) before the routes through them (the agent's FIB), stale
// routes before the entries they used. The routes are handed to the FIB as soon as the entries'
// requests are in the kernel (rtnetlink applies a request within its sendmsg), not after their
// answers are read: one wake-up of the process less on the way to the kernel. Not: deciding
// anything (overlay_delta.ts), devices.
import type { NeighbourSocket, NeighFailure, NeighOp } from "../fib/neigh_socket.js";
import { addressBytes, macBytes, NTF_SELF, NUD_PERMANENT } from "../fib/rtnetlink.js";
import { type Fib, RTPROT_OCELOT_AGENT } from "../fib/types.js";
import type { FdbEntry, Neighbour } from "./overlay.js";
import type { OverlayDelta } from "./overlay_delta.js";

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
  io: { fib: Fib; neigh: NeighbourSocket },
): Promise<{ failures: NeighFailure[]; entriesMs: number; routesMs: number; removedMs: number }> {
  const ops = deltaNeighOps(d);
  const t0 = performance.now();
  let routes: Promise<unknown> | undefined;
  let routesAt = t0;
  const startRoutes = () => {
    routes ??= Promise.all([
      d.setRoutes.length > 0 ? io.fib.set(d.setRoutes) : undefined,
      d.removeRoutes.length > 0 ? io.fib.remove(d.removeRoutes) : undefined,
    ]).then(() => {
      routesAt = performance.now();
    });
    // Handled here (it is awaited below): a refusal while the entries' answers are awaited
    // must not count as an unhandled rejection.
    routes.catch(() => {});
  };
  let failures: NeighFailure[];
  try {
    failures = await io.neigh.run(ops.before, startRoutes);
  } catch (err) {
    // The routes' requests, once started, are waited for before the failure is reported.
    await routes?.catch(() => {});
    throw err;
  }
  const t1 = performance.now();
  startRoutes();
  await routes;
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
