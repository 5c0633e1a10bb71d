// Hands the RIB's FIB changes to a Fib (the runtime's side of the core's fib action): IPv4
// through the numeric batch path (one call per next-hop set, typed arrays, no per-route
// objects; a set at a route priority of its own carries its metric), IPv6 as Route values; counts jobs in flight and errors for status. Not: which
// routes are best (rib/), when to stop reading (the core), netlink (fib/).
import type { SenderStats } from "../../fib/netlink_socket.js";
import type { BatchFib, Fib, Route } from "../../fib/types.js";
import type { Log } from "../../lib/log.js";
import { type FibBatch, nextHopOf } from "../rib/rib.js";

export function isBatchFib(f: Fib | null): f is BatchFib {
  return f !== null && typeof (f as BatchFib).setV4Batch === "function";
}

interface SetGroup {
  addrs: Uint32Array;
  lens: Uint8Array;
  fill: number;
}

/**
 * IPv4 entries of a batch grouped by next-hop set (-1: removal; -2-set: removal at that set's
 * metric, route priorities only), as typed arrays.
 */
export function groupV4BySet(batch: FibBatch): Map<number, SetGroup> {
  const n = batch.v4.count;
  const counts = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const set = batch.v4Sets[i] as number;
    counts.set(set, (counts.get(set) ?? 0) + 1);
  }
  const bySet = new Map<number, SetGroup>();
  if (counts.size === 1) {
    // The common case (one peer, one next hop): hand the RIB's arrays over without a copy.
    bySet.set(batch.v4Sets[0] as number, {
      addrs: batch.v4.words.subarray(0, n),
      lens: batch.v4.lens.subarray(0, n),
      fill: n,
    });
    return bySet;
  }
  for (const [set, c] of counts)
    bySet.set(set, { addrs: new Uint32Array(c), lens: new Uint8Array(c), fill: 0 });
  for (let i = 0; i < n; i++) {
    const g = bySet.get(batch.v4Sets[i] as number) as SetGroup;
    g.addrs[g.fill] = batch.v4.words[i] as number;
    g.lens[g.fill++] = batch.v4.lens[i] as number;
  }
  return bySet;
}

export class FibPump {
  inFlight = 0;
  errors = 0;

  constructor(
    readonly fib: Fib,
    private readonly log: Log,
  ) {}

  /** Routes the FIB holds for us (its own count when it has one). */
  get installed(): number {
    const s = (this.fib as { status?: () => { desired: number } }).status;
    return s ? s.call(this.fib).desired : this.fib.desired().length;
  }

  /** The kernel FIB's sender thread's account, when the FIB has one (status, benchmarks). */
  get sender(): SenderStats | undefined {
    const f = (this.fib as { senderStats?: () => SenderStats | undefined }).senderStats;
    return f?.call(this.fib);
  }

  /** Starts the batch's jobs; the promise settles (never rejects) once all of them have. */
  push(
    batch: FibBatch,
    protocol: number,
    table: number,
    metric: { v4: number; v6: number } = { v4: 0, v6: 0 },
  ): Promise<void> {
    if (batch.size === 0) return Promise.resolve();
    const fib = this.fib;
    const jobs: Promise<void>[] = [];
    if (isBatchFib(fib) && batch.v4.count > 0) {
      for (const [set, g] of groupV4BySet(batch)) {
        const { addrs, lens } = g;
        // A set (or removal) at a route priority of its own carries its metric.
        const m = batch.metricOf(set) ?? metric.v4;
        if (set < 0) {
          jobs.push(fib.removeV4Batch({ addrs, lens, protocol, table, metric: m }));
        } else {
          const nexthops = (batch.nexthopSets[set] as readonly string[]).map(nextHopOf);
          jobs.push(fib.setV4Batch({ addrs, lens, protocol, table, nexthops, metric: m }));
        }
      }
      if (batch.v6.count > 0) jobs.push(...this.routeJobs(batch, protocol, table, 6, metric));
    } else {
      jobs.push(...this.routeJobs(batch, protocol, table, 0, metric));
    }
    const settled = jobs.map((j) => {
      this.inFlight++;
      return j
        .then(
          () => {},
          (err: Error) => {
            this.errors++;
            this.log.error({ error: err.message }, "FIB update failed");
          },
        )
        .finally(() => {
          this.inFlight--;
        });
    });
    return Promise.all(settled).then(() => {});
  }

  private routeJobs(
    batch: FibBatch,
    protocol: number,
    table: number,
    only: 0 | 6,
    metric: { v4: number; v6: number },
  ): Promise<void>[] {
    const { set, remove } = batch.routes(protocol);
    const s: Route[] = [];
    const rm: Route[] = [];
    const m = (r: Route) => r.metric ?? (r.family === 4 ? metric.v4 : metric.v6);
    for (const r of set) if (only === 0 || r.family === only) s.push({ ...r, table, metric: m(r) });
    for (const r of remove)
      if (only === 0 || r.family === only) rm.push({ ...r, table, metric: m(r) });
    const jobs: Promise<void>[] = [];
    if (s.length > 0) jobs.push(this.fib.set(s));
    if (rm.length > 0) jobs.push(this.fib.remove(rm));
    return jobs;
  }
}
