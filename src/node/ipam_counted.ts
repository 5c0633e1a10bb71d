// The node daemon's IPAM, counted for /metrics. In the node daemon IPAM runs only for the node's
// tunnel addresses (tunnel_addrs.ts: IP-in-IP, VXLAN v4/v6); the pods' IPAM runs in the CNI
// plugin's own short-lived processes, which serve no metrics, so it is not counted here. The
// counts come from a thin Datastore wrapper under the IpamStore: every compare-and-swap the store
// refused (ConflictError, PresentError) by record kind, and every block created (a claim's
// second phase), and from the two operations the daemon asks for (assign, release) with their
// outcome. Owns: the counters and the wrapper. Not: IPAM itself (src/ipam), the text (daemon_metrics.ts).
import { ConflictError, type Datastore, type KeyValue, PresentError } from "../datastore/types.js";
import { IpamKeys } from "../ipam/records.js";
import { type AssignedAddress, type AssignRequest, IpamStore } from "../ipam/store.js";

export type IpamRecord = "block" | "affinity" | "handle" | "other";
export const IPAM_RECORDS: readonly IpamRecord[] = ["block", "affinity", "handle", "other"];

export interface IpamCounters {
  operations: { assign: { ok: number; error: number }; release: { ok: number; error: number } };
  /** Blocks this daemon created (claimed for the node). */
  blockClaims: number;
  /** Compare-and-swap writes the datastore refused (another writer was first), by record. */
  casConflicts: Record<IpamRecord, number>;
}

export function newIpamCounters(): IpamCounters {
  return {
    operations: { assign: { ok: 0, error: 0 }, release: { ok: 0, error: 0 } },
    blockClaims: 0,
    casConflicts: { block: 0, affinity: 0, handle: 0, other: 0 },
  };
}

/** The record kind of an IPAM key (by the key layout of records.ts). */
export function ipamRecordOf(key: string, keys = new IpamKeys()): IpamRecord {
  if (key.startsWith(keys.blockPrefix(4)) || key.startsWith(keys.blockPrefix(6))) return "block";
  if (key.startsWith(keys.hostPrefix())) return "affinity";
  if (key.startsWith(keys.handlePrefix())) return "handle";
  return "other";
}

/** The store as IPAM sees it, each refused compare-and-swap and each block created counted. */
class CountingStore implements Datastore {
  constructor(
    private readonly inner: Datastore,
    private readonly c: IpamCounters,
  ) {}
  get url() {
    return this.inner.url;
  }
  private async write<T>(key: string, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (err) {
      if (err instanceof ConflictError || err instanceof PresentError)
        this.c.casConflicts[ipamRecordOf(key)]++;
      throw err;
    }
  }
  get(key: string) {
    return this.inner.get(key);
  }
  list(prefix: string) {
    return this.inner.list(prefix);
  }
  async create(key: string, value: string): Promise<KeyValue> {
    const kv = await this.write(key, () => this.inner.create(key, value));
    if (ipamRecordOf(key) === "block") this.c.blockClaims++;
    return kv;
  }
  update(key: string, value: string, expectedModRevision?: number) {
    return this.write(key, () => this.inner.update(key, value, expectedModRevision));
  }
  updateIfAbsent(key: string, value: string, rev: number, absent: readonly string[]) {
    return this.write(key, () => this.inner.updateIfAbsent(key, value, rev, absent));
  }
  delete(key: string, expectedModRevision?: number) {
    return this.write(key, () => this.inner.delete(key, expectedModRevision));
  }
  watch(...args: Parameters<Datastore["watch"]>) {
    return this.inner.watch(...args);
  }
  revision() {
    return this.inner.revision();
  }
  close() {
    return Promise.resolve();
  }
}

/** An IpamStore over `store` whose operations and conflicts land in counters. */
export class CountedIpamStore extends IpamStore {
  constructor(
    store: Datastore,
    readonly counters: IpamCounters = newIpamCounters(),
  ) {
    super(new CountingStore(store, counters));
  }

  override async autoAssign(req: AssignRequest): Promise<AssignedAddress[]> {
    try {
      const r = await super.autoAssign(req);
      this.counters.operations.assign.ok++;
      return r;
    } catch (err) {
      this.counters.operations.assign.error++;
      throw err;
    }
  }

  override async releaseByHandle(handleId: string, node?: string): Promise<string[]> {
    try {
      const r = await super.releaseByHandle(handleId, node);
      this.counters.operations.release.ok++;
      return r;
    } catch (err) {
      this.counters.operations.release.error++;
      throw err;
    }
  }
}
