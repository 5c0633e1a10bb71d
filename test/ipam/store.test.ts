import { describe, expect, it } from "vitest";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import { IpamStore } from "../../src/ipam/store.js";
import { putPool } from "./helpers.js";

describe("IpamStore on the memory store", () => {
  it("autoAssign() claims a block for the node and assigns from it", async () => {
    const ds = new MemoryDatastore();
    await putPool(ds, "p4", "10.0.0.0/24");
    const ipam = new IpamStore(ds);
    const a = await ipam.autoAssign({ handleId: "h1", node: "n1", num4: 1, num6: 0 });
    expect(a).toHaveLength(1);
    const b = await ipam.autoAssign({ handleId: "h2", node: "n1", num4: 1, num6: 0 });
    expect(b[0]?.block).toBe(a[0]?.block);
    expect(b[0]?.address).not.toBe(a[0]?.address);
    const again = await ipam.autoAssign({ handleId: "h1", node: "n1", num4: 1, num6: 0 });
    expect(again.map((x) => x.address)).toEqual(a.map((x) => x.address));
    console.log(
      a,
      b,
      (await ds.list("/ocelot/ipam/")).items.map((kv) => `${kv.key} ${kv.value}`),
    );
  });
});
