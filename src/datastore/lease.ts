// A leader lease on the Datastore interface (what a Kubernetes Lease and client-go's leader
// election give, for a cluster with no Kubernetes API to hold one): one key holds
// {holder, ttlMs, renewals}; the holder renews it by compare-and-swap every ttl/3; a candidate
// takes it over, by compare-and-swap at the revision it saw, once that revision has stood still
// for a whole TTL by the candidate's own monotonic clock (so clocks need not agree, as
// client-go's observedTime); the holder steps down when it has not renewed for 2/3 of the TTL
// (its renew deadline, before anyone may take over), and deletes the key when it stops so that
// another takes over at once. At most one holder at a time as long as each process's clock runs
// at about the same rate. Pure decision (decideLease) and a small timer-driven adapter
// (LeaderLease). Not: what the leader runs (its caller).
import { ConflictError, type Datastore, type KeyValue, NotFoundError } from "./types.js";

export const LEASE_PREFIX = "/ocelot/leases/";

export interface LeaseRecord {
  holder: string;
  ttlMs: number;
  /** Bumped on each renewal (so that every renewal writes different bytes). */
  renewals: number;
}

/** What a candidate remembers of the key: the revision it saw and when (its monotonic ms). */
export interface Observed {
  modRevision: number;
  since: number;
}

export type LeaseDecision =
  | { op: "create"; record: LeaseRecord }
  | { op: "renew" | "takeover"; record: LeaseRecord; expected: number }
  | { op: "wait"; observed: Observed; holder: string };

export function parseLease(kv: KeyValue | undefined): LeaseRecord | undefined {
  if (!kv) return undefined;
  try {
    const v = JSON.parse(kv.value) as Partial<LeaseRecord>;
    if (typeof v.holder !== "string" || typeof v.ttlMs !== "number") return undefined;
    return { holder: v.holder, ttlMs: v.ttlMs, renewals: Number(v.renewals) || 0 };
  } catch {
    return undefined;
  }
}

/**
 * One step of the election for `me`: create the missing key, renew our own, take over one whose
 * revision has not moved for its TTL (the holder's, or ours when it names none), else wait.
 */
export function decideLease(
  me: string,
  ttlMs: number,
  kv: KeyValue | undefined,
  observed: Observed | undefined,
  now: number,
): LeaseDecision {
  if (!kv) return { op: "create", record: { holder: me, ttlMs, renewals: 0 } };
  const rec = parseLease(kv);
  const renewals = (rec?.renewals ?? 0) + 1;
  if (rec?.holder === me)
    return { op: "renew", record: { holder: me, ttlMs, renewals }, expected: kv.modRevision };
  const seen =
    observed?.modRevision === kv.modRevision
      ? observed
      : { modRevision: kv.modRevision, since: now };
  if (now - seen.since >= (rec?.ttlMs ?? ttlMs))
    return { op: "takeover", record: { holder: me, ttlMs, renewals }, expected: kv.modRevision };
  return { op: "wait", observed: seen, holder: rec?.holder ?? "?" };
}

export interface LeaderLeaseOptions {
  store: Datastore;
  /** The lease's name (its key under LEASE_PREFIX). */
  name: string;
  /** This candidate's identity (the node's name). */
  identity: string;
  ttlMs: number;
  /** Called when this candidate becomes the leader, and when it stops being one. */
  onLead(): void;
  onLose(why: string): void;
  log?: (line: string) => void;
  /** Monotonic ms (default performance.now()). */
  now?: () => number;
}

/** Campaigns for the lease until stop(): leads while it holds it. */
export class LeaderLease {
  private timer: NodeJS.Timeout | undefined;
  private observed: Observed | undefined;
  private leading = false;
  private lastRenew = 0;
  private lastKv: KeyValue | undefined;
  private stopped = false;
  private running: Promise<void> | undefined;
  private readonly key: string;
  private readonly now: () => number;

  constructor(private readonly o: LeaderLeaseOptions) {
    this.key = `${LEASE_PREFIX}${o.name}`;
    this.now = o.now ?? (() => performance.now());
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.schedule(0);
  }

  /** Stops campaigning; a leader steps down and deletes the key (another takes over at once). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    if (this.leading) {
      this.lose("stopped");
      if (this.lastKv)
        await this.o.store.delete(this.key, this.lastKv.modRevision).catch(() => false);
    }
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.step().finally(() => {
        this.running = undefined;
      });
    }, ms);
  }

  private lose(why: string): void {
    if (!this.leading) return;
    this.leading = false;
    this.o.log?.(`lease ${this.o.name}: no longer the leader (${why})`);
    this.o.onLose(why);
  }

  private async step(): Promise<void> {
    const period = Math.max(50, Math.floor(this.o.ttlMs / 3));
    try {
      const kv = await this.o.store.get(this.key);
      const d = decideLease(this.o.identity, this.o.ttlMs, kv, this.observed, this.now());
      if (d.op === "wait") {
        this.observed = d.observed;
        this.lose(`held by ${d.holder}`);
        this.schedule(period);
        return;
      }
      const value = JSON.stringify(d.record);
      const t = this.now();
      this.lastKv =
        d.op === "create"
          ? await this.o.store.create(this.key, value)
          : await this.o.store.update(this.key, value, d.expected);
      this.lastRenew = t;
      this.observed = undefined;
      if (!this.leading && !this.stopped) {
        this.leading = true;
        this.o.log?.(`lease ${this.o.name}: leader (${d.op})`);
        this.o.onLead();
      }
    } catch (err) {
      if (err instanceof ConflictError || err instanceof NotFoundError) {
        // Someone else wrote first: look again at once.
        this.observed = undefined;
        this.lose("another candidate wrote the lease");
        this.schedule(0);
        return;
      }
      this.o.log?.(`lease ${this.o.name}: ${(err as Error).message}`);
      // The renew deadline: a leader that cannot renew steps down before anyone may take over.
      if (this.leading && this.now() - this.lastRenew >= (this.o.ttlMs * 2) / 3)
        this.lose("could not renew within 2/3 of the TTL");
    }
    this.schedule(period);
  }
}
