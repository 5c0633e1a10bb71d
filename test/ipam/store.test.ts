import { describe, expect, it } from "vitest";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import { type Datastore, type KeyValue, UnavailableError } from "../../src/datastore/types.js";
import { IpamDataError, inUseCount } from "../../src/ipam/block.js";
import { IpamStore, PoolExhaustedError } from "../../src/ipam/store.js";
import { formatCidr } from "../../src/lib/ip.js";
import { putNode, putPool, putReservation } from "./helpers.js";

const noSleep = { sleep: async () => {} };

async function total(ipam: IpamStore): Promise<number> {
  const blocks = [...(await ipam.listBlocks(4)), ...(await ipam.listBlocks(6))];
  return blocks.reduce((n, e) => n + inUseCount(e.block), 0);
}

describe("IpamStore", () => {
  it("autoAssign() claims a block for the node, assigns from it, and is idempotent per handle", async () => {
    const ds = new MemoryDatastore();
    await putPool(ds, "p4", "10.0.0.0/24");
    const ipam = new IpamStore(ds);
    const a = await ipam.autoAssign({ handleId: "h1", node: "n1", num4: 1, num6: 0 });
    const b = await ipam.autoAssign({ handleId: "h2", node: "n1", num4: 1, num6: 0 });
    expect(b[0]?.block).toBe(a[0]?.block);
    expect(b[0]?.address).not.toBe(a[0]?.address);
    const again = await new IpamStore(ds).autoAssign({
      handleId: "h1",
      node: "n1",
      num4: 1,
      num6: 0,
    });
    expect(again.map((x) => x.address)).toEqual(a.map((x) => x.address));
    expect(await total(ipam)).toBe(2);
    const aff = await ds.get(`/ocelot/ipam/v2/host/n1/ipv4/block/${a[0]?.block.replace("/", "-")}`);
    expect(JSON.parse(aff?.value ?? "{}").state).toBe("confirmed");
  });

  it("dual-stack autoAssign() returns one IPv4 and one IPv6 address (/122 blocks)", async () => {
    const ds = new MemoryDatastore();
    await putPool(ds, "p4", "10.0.0.0/24");
    await putPool(ds, "p6", "fd00:10::/120");
    const got = await new IpamStore(ds).autoAssign({ handleId: "h", node: "n1", num4: 1, num6: 1 });
    expect(got.map((g) => g.family)).toEqual([4, 6]);
    expect(got[1]?.block).toMatch(/^fd00:10::(\w+)?\/122$/);
  });

  it("nodes get their own blocks; a full node claims another; strictAffinity stops borrowing", async () => {
    const ds = new MemoryDatastore();
    await putPool(ds, "small", "10.1.0.0/29", { blockSize: 30 }); // two blocks of 4
    const ipam = new IpamStore(ds, noSleep);
    const n1 = await ipam.autoAssign({ handleId: "a", node: "n1", num4: 1, num6: 0 });
    const n2 = await ipam.autoAssign({ handleId: "b", node: "n2", num4: 1, num6: 0 });
    expect(n1[0]?.block).not.toBe(n2[0]?.block);
    for (let i = 0; i < 3; i++)
      await ipam.autoAssign({ handleId: `a${i}`, node: "n1", num4: 1, num6: 0 });
    await ipam.setConfig({ strictAffinity: true });
    await expect(ipam.autoAssign({ handleId: "a9", node: "n1", num4: 1, num6: 0 })).rejects.toThrow(
      /pool "small" \(10\.1\.0\.0\/29\) has no free address for node "n1" \(strictAffinity/,
    );
    await ipam.setConfig({ strictAffinity: false });
    const borrowed = await ipam.autoAssign({ handleId: "a9", node: "n1", num4: 1, num6: 0 });
    expect(borrowed[0]).toMatchObject({ block: n2[0]?.block, borrowed: true });
    expect((await ipam.getAllocation(borrowed[0]?.address as string))?.attrs.node).toBe("n1");
    // Only the borrowed address needs a handle record; a retry finds it, DEL releases it.
    expect((await ipam.getHandle("a9"))?.blocks).toEqual([n2[0]?.block]);
    const retry = await new IpamStore(ds).autoAssign({
      handleId: "a9",
      node: "n1",
      num4: 1,
      num6: 0,
    });
    expect(retry.map((a) => [a.address, a.sequence, a.borrowed])).toEqual([
      [borrowed[0]?.address, borrowed[0]?.sequence, true],
    ]);
    // Same again from the warm client once n1's own block has room: the own-block address
    // taken alongside the record read is given back, the borrowed one returned.
    await ipam.releaseByHandle("a0", "n1");
    const before = await total(ipam);
    const again = await ipam.autoAssign({ handleId: "a9", node: "n1", num4: 1, num6: 0 });
    expect(again.map((a) => a.address)).toEqual([borrowed[0]?.address]);
    expect(await total(ipam)).toBe(before);
    expect(await ipam.releaseByHandle("a9", "n1")).toEqual([borrowed[0]?.address]);
    expect(await ipam.getHandle("a9")).toBeUndefined();
    expect(await ipam.releaseByHandle("a1")).toHaveLength(1); // no node given: a scan finds it
  });

  it("a warm assignment is one datastore call: the block write that requires no handle record", async () => {
    const ds = new MemoryDatastore();
    await putPool(ds, "p", "10.6.0.0/24");
    const calls: string[] = [];
    for (const m of ["get", "list", "create", "update", "updateIfAbsent", "delete"] as const) {
      const inner = (ds[m] as (...a: unknown[]) => Promise<unknown>).bind(ds);
      (ds as unknown as Record<string, unknown>)[m] = (...a: unknown[]) => {
        calls.push(m);
        return inner(...a);
      };
    }
    const ipam = new IpamStore(ds, noSleep);
    await ipam.autoAssign({ handleId: "warm", node: "n1", num4: 1, num6: 0 }); // claims
    calls.length = 0;
    const got = await ipam.autoAssign({ handleId: "pod-1", node: "n1", num4: 1, num6: 0 });
    expect(calls).toEqual(["updateIfAbsent"]);
    expect((await ipam.getAllocation(got[0]?.address as string))?.handleId).toBe("pod-1");
    // A handle that has a record (it borrowed before) is caught by that write and read again.
    await ds.create(ipam.keys.handle("pod-2"), JSON.stringify({ handleId: "pod-2", blocks: [] }));
    calls.length = 0;
    const second = await ipam.autoAssign({ handleId: "pod-2", node: "n1", num4: 1, num6: 0 });
    expect(calls.slice(0, 2)).toEqual(["updateIfAbsent", "get"]);
    expect(second).toHaveLength(1);
    expect(await total(ipam)).toBe(3);
  });

  it("a warm assignment whose cached block another process wrote meanwhile loses its compare-and-swap and still assigns a free address", async () => {
    const ds = new MemoryDatastore();
    await putPool(ds, "p", "10.7.0.0/24");
    const a = new IpamStore(ds, noSleep);
    const b = new IpamStore(ds, noSleep);
    const first = await a.autoAssign({ handleId: "a-1", node: "n1", num4: 1, num6: 0 }); // claims
    // Another process of the node (b) writes the same block: a's cached copy is now stale.
    const other = await b.autoAssign({ handleId: "b-1", node: "n1", num4: 1, num6: 0 });
    expect(other[0]?.block).toBe(first[0]?.block);
    const calls: string[] = [];
    const inner = ds.updateIfAbsent.bind(ds);
    ds.updateIfAbsent = (...args) => {
      calls.push("updateIfAbsent");
      return inner(...args);
    };
    const got = await a.autoAssign({ handleId: "a-2", node: "n1", num4: 1, num6: 0 });
    // The stale write lost, then the write from the refreshed block won.
    expect(calls).toEqual(["updateIfAbsent", "updateIfAbsent"]);
    const addresses = [first, other, got].map((r) => r[0]?.address);
    expect(new Set(addresses).size).toBe(3);
    expect((await a.getAllocation(got[0]?.address as string))?.handleId).toBe("a-2");
    // A retried ADD on the warm node returns what the handle holds, writing nothing.
    calls.length = 0;
    const again = await a.autoAssign({ handleId: "a-2", node: "n1", num4: 1, num6: 0 });
    expect(again.map((r) => r.address)).toEqual([got[0]?.address]);
    expect(calls).toEqual([]);
    expect(await total(a)).toBe(3);
  });

  it("a claim scans blocks by key while all are the node's own; another node's block makes it a full list", async () => {
    const ds = new MemoryDatastore();
    await putPool(ds, "p", "10.7.0.0/24", { blockSize: 30 }); // 64 blocks of 4
    const calls: string[] = [];
    for (const m of ["list", "listKeys"] as const) {
      const inner = (ds[m] as (p: string) => Promise<unknown>).bind(ds);
      (ds as unknown as Record<string, unknown>)[m] = (p: string) => {
        if (p.includes("/assignment/")) calls.push(m);
        return inner(p);
      };
    }
    const ipam = new IpamStore(ds, noSleep);
    for (let i = 0; i < 12; i++)
      await ipam.autoAssign({ handleId: `a${i}`, node: "n1", num4: 1, num6: 0 });
    // Three claims, no block value read for them.
    expect(calls).toEqual(["listKeys", "listKeys", "listKeys"]);
    const blocks = new Set((await ipam.listBlocks(4)).map((e) => formatCidr(e.block.cidr)));
    expect(blocks.size).toBe(3);
    // Another node's block: the keys show it, the scan reads the values, and later scans of n1
    // start with the full list. The blocks claimed are all distinct and every address is n1's.
    await new IpamStore(ds, noSleep).autoAssign({ handleId: "b", node: "n2", num4: 1, num6: 0 });
    calls.length = 0;
    for (let i = 12; i < 20; i++)
      await ipam.autoAssign({ handleId: `a${i}`, node: "n1", num4: 1, num6: 0 });
    expect(calls).toEqual(["listKeys", "list", "list"]);
    const all = await ipam.listBlocks(4);
    expect(all).toHaveLength(6);
    expect(all.filter((e) => e.block.affinity === "host:n1")).toHaveLength(5);
    expect(await total(ipam)).toBe(21);
  });
  it("maxBlocksPerHost caps the blocks a node claims", async () => {
    const ds = new MemoryDatastore();
    await putPool(ds, "p", "10.2.0.0/28", { blockSize: 30 });
    const ipam = new IpamStore(ds, noSleep);
    await ipam.setConfig({ maxBlocksPerHost: 1, strictAffinity: true });
    for (let i = 0; i < 4; i++)
      await ipam.autoAssign({ handleId: `h${i}`, node: "n1", num4: 1, num6: 0 });
    await expect(
      ipam.autoAssign({ handleId: "h4", node: "n1", num4: 1, num6: 0 }),
    ).rejects.toBeInstanceOf(PoolExhaustedError);
    expect((await ipam.listAffinities()).length).toBe(1);
  });

  it("pool selection honours nodeSelector, disabled and reservations", async () => {
    const ds = new MemoryDatastore();
    await putPool(ds, "rack-a", "10.3.0.0/28", { blockSize: 28, nodeSelector: "rack == 'a'" });
    await putPool(ds, "off", "10.4.0.0/28", { blockSize: 28, disabled: true });
    await putReservation(ds, "r", ["10.3.0.0/30"]);
    await putNode(ds, "na", { rack: "a" });
    await putNode(ds, "nb", { rack: "b" });
    const ipam = new IpamStore(ds, noSleep);
    const got = await ipam.autoAssign({ handleId: "x", node: "na", num4: 1, num6: 0 });
    expect(got[0]?.address).toBe("10.3.0.4");
    await expect(ipam.autoAssign({ handleId: "y", node: "nb", num4: 1, num6: 0 })).rejects.toThrow(
      'No enabled IPv4 pool matches node "nb"',
    );
    await expect(
      ipam.autoAssign({ handleId: "y", node: "na", num4: 1, num6: 0, pools4: ["off"] }),
    ).rejects.toThrow('Requested pool "off" is disabled');
  });

  it("a late release with an old sequence number cannot free a reused address", async () => {
    const ds = new MemoryDatastore();
    await putPool(ds, "p", "10.5.0.0/31", { blockSize: 31 });
    const ipam = new IpamStore(ds, noSleep);
    const [old] = await ipam.autoAssign({ handleId: "old", node: "n", num4: 1, num6: 0 });
    await ipam.releaseByHandle("old");
    await ipam.autoAssign({ handleId: "x", node: "n", num4: 1, num6: 0 });
    const [again] = await ipam.autoAssign({ handleId: "new", node: "n", num4: 1, num6: 0 });
    expect(again?.address).toBe(old?.address);
    await expect(ipam.releaseAddress(old?.address as string, old?.sequence)).rejects.toThrow(
      "allocated again",
    );
    expect((await ipam.getAllocation(old?.address as string))?.handleId).toBe("new");
  });

  it("releaseEmptyBlocks() releases a block only after the grace period (injected clock)", async () => {
    const ds = new MemoryDatastore();
    await putPool(ds, "p", "10.6.0.0/24");
    let now = 1_000_000;
    const ipam = new IpamStore(ds, { ...noSleep, now: () => now, emptyBlockGraceMs: 60_000 });
    await ipam.autoAssign({ handleId: "h", node: "n1", num4: 1, num6: 0 });
    await ipam.releaseByHandle("h");
    now += 59_000;
    expect(await ipam.releaseEmptyBlocks("n1")).toEqual([]);
    now += 2_000;
    expect(await ipam.releaseEmptyBlocks("n1")).toHaveLength(1);
    expect((await ds.list("/ocelot/ipam/")).items).toEqual([]);
    // The node claims a block again afterwards.
    expect(await ipam.autoAssign({ handleId: "h2", node: "n1", num4: 1, num6: 0 })).toHaveLength(1);
  });

  it("bad stored data gives an error naming the key, not a reset", async () => {
    const ds = new MemoryDatastore();
    await putPool(ds, "p", "10.7.0.0/24");
    const ipam = new IpamStore(ds);
    const [a] = await ipam.autoAssign({ handleId: "h", node: "n1", num4: 1, num6: 0 });
    const key = `/ocelot/ipam/v2/assignment/ipv4/block/${a?.block.replace("/", "-")}`;
    await ds.update(key, '{"cidr":"10.7.0.0/26"}');
    const err = await new IpamStore(ds)
      .autoAssign({ handleId: "h2", node: "n1", num4: 1, num6: 0 })
      .catch((e) => e);
    expect(err).toBeInstanceOf(IpamDataError);
    expect(String(err.message)).toContain(key);
    expect((await ds.get(key))?.value).toBe('{"cidr":"10.7.0.0/26"}');
  });

  it("a store that fails mid-assign leaves no leaked address once the request is retried", async () => {
    // Fail the k-th write (or make it succeed but report failure) for every k in the first assign.
    let failures = 0;
    for (const mode of ["before", "after"] as const) {
      for (let k = 1; k <= 6; k++) {
        const inner = new MemoryDatastore();
        await putPool(inner, "p", "10.8.0.0/24");
        await putPool(inner, "p6", "fd00:8::/120");
        const flaky = new FlakyStore(inner, k, mode);
        const ipam = new IpamStore(flaky, noSleep);
        const req = { handleId: "pod", node: "n1", num4: 1, num6: 1 };
        let got = await ipam.autoAssign(req).catch((e) => e);
        if (got instanceof Error) {
          expect(got).toBeInstanceOf(UnavailableError);
          failures++;
          // The runtime retries ADD: from a new process, or from the same long-lived client
          // (whose cached block may be stale when the failed write had in fact landed).
          got = await (k % 2 === 0 ? ipam : new IpamStore(inner, noSleep)).autoAssign(req);
        }
        expect(got.map((g: { family: number }) => g.family).sort()).toEqual([4, 6]);
        const check = new IpamStore(inner);
        expect(await total(check)).toBe(2);
        const held = await check.addressesOfHandle("pod", "n1");
        expect(held.map((h) => h.address).sort()).toEqual(
          got.map((g: { address: string }) => g.address).sort(),
        );
        await check.releaseByHandle("pod");
        expect(await total(check)).toBe(0);
      }
    }
    expect(failures).toBeGreaterThanOrEqual(10);
  });

  it("concurrent assignments of one process share block writes; a lone one writes at once", async () => {
    const ds = new MemoryDatastore();
    await putPool(ds, "p", "10.9.0.0/24"); // blocks of 64 (/26)
    const blockWrites = () => {
      let n = 0;
      const inner = ds.update.bind(ds);
      ds.update = (key, value, rev) => {
        if (key.includes("/block/")) n++;
        return inner(key, value, rev);
      };
      const innerIf = ds.updateIfAbsent.bind(ds);
      ds.updateIfAbsent = (key, value, rev, absent) => {
        if (key.includes("/block/")) n++;
        return innerIf(key, value, rev, absent);
      };
      return () => n;
    };
    const ipam = new IpamStore(ds, noSleep);
    await ipam.autoAssign({ handleId: "first", node: "n1", num4: 1, num6: 0 }); // claims
    const writes = blockWrites();
    const got = await Promise.all(
      Array.from({ length: 48 }, (_, i) =>
        ipam.autoAssign({ handleId: `pod-${i}`, node: "n1", num4: 1, num6: 0 }),
      ),
    );
    const addresses = got.map((g) => g[0]?.address);
    expect(new Set(addresses).size).toBe(48);
    expect(await total(ipam)).toBe(49);
    // Without combining this is 48 writes; with the wait for those on their way, a handful.
    expect(writes()).toBeLessThanOrEqual(4);
    const before = writes();
    await ipam.autoAssign({ handleId: "alone", node: "n1", num4: 1, num6: 0 });
    expect(writes()).toBe(before + 1);
  });
});

/** Fails the n-th write: before applying it, or after applying it (a lost reply). */
class FlakyStore implements Datastore {
  private writes = 0;
  readonly url = "flaky:";
  constructor(
    private readonly inner: Datastore,
    private readonly failAt: number,
    private readonly mode: "before" | "after",
  ) {}
  private async write<T>(op: () => Promise<T>): Promise<T> {
    this.writes++;
    if (this.writes === this.failAt && this.mode === "before")
      throw new UnavailableError("store went away");
    const r = await op();
    if (this.writes === this.failAt) throw new UnavailableError("store went away after the write");
    return r;
  }
  get(key: string) {
    return this.inner.get(key);
  }
  list(prefix: string) {
    return this.inner.list(prefix);
  }
  create(key: string, value: string): Promise<KeyValue> {
    return this.write(() => this.inner.create(key, value));
  }
  update(key: string, value: string, rev?: number): Promise<KeyValue> {
    return this.write(() => this.inner.update(key, value, rev));
  }
  updateIfAbsent(key: string, value: string, rev: number, absent: readonly string[]) {
    return this.write(() => this.inner.updateIfAbsent(key, value, rev, absent));
  }
  delete(key: string, rev?: number): Promise<boolean> {
    return this.write(() => this.inner.delete(key, rev));
  }
  watch(...args: Parameters<Datastore["watch"]>) {
    return this.inner.watch(...args);
  }
  revision() {
    return this.inner.revision();
  }
  close() {
    return this.inner.close();
  }
}

describe("IpamStore address lookups at scale", () => {
  it("getAllocation() and releaseAddress() read the block by key, listing no blocks", async () => {
    const ds = new MemoryDatastore();
    await putPool(ds, "a", "10.8.0.0/16", { blockSize: 28 });
    await putPool(ds, "b", "10.9.0.0/16", { blockSize: 26 });
    const ipam = new IpamStore(ds, noSleep);
    const got: string[] = [];
    for (const [i, pool] of ["a", "b", "a", "b"].entries()) {
      const r = await ipam.autoAssign({
        handleId: `h${i}`,
        node: `n${i}`,
        num4: 1,
        num6: 0,
        pools4: [pool],
      });
      got.push(r[0]?.address as string);
    }
    const lists: string[] = [];
    const counting = Object.create(ds) as Datastore;
    counting.list = (prefix) => {
      lists.push(prefix);
      return ds.list(prefix);
    };
    const viewer = new IpamStore(counting, noSleep);
    expect((await viewer.getAllocation(got[1] as string))?.handleId).toBe("h1");
    expect((await viewer.getAllocation(got[2] as string))?.handleId).toBe("h2");
    expect(await viewer.releaseAddress(got[3] as string)).toBe(got[3]);
    expect(await viewer.getAllocation(got[3] as string)).toBeUndefined();
    expect(lists.filter((p) => p.includes("/block/"))).toEqual([]);
    // An address in no block of a current pool: every block is looked at, as before.
    expect(await viewer.getAllocation("10.10.0.1")).toBeUndefined();
    expect(lists.filter((p) => p.includes("/block/")).length).toBeGreaterThan(0);
  });
});
