// IPAM reads its settings from the IPAMConfiguration resource "default" (as Calico's IPAM does):
// a resource applied through the API is what the allocator obeys; `setConfig` (ocelot ipam
// configure) writes that resource, keeping its other fields; the record an older
// `ipam configure` wrote is read while no resource exists.
import { describe, expect, it } from "vitest";
import { ResourceClient } from "../../src/api/client.js";
import { kindInfoOf } from "../../src/api/inventory.js";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import { IpamStore } from "../../src/ipam/store.js";
import { putPool } from "./helpers.js";

const noSleep = { sleep: async () => {} };
const info = () => {
  const i = kindInfoOf("IPAMConfiguration");
  if (i === undefined) throw new Error("no IPAMConfiguration kind");
  return i;
};

describe("IPAMConfiguration resource", () => {
  it("an applied strictAffinity stops borrowing; maxBlocksPerHost limits claims", async () => {
    const ds = new MemoryDatastore();
    await putPool(ds, "small", "10.1.0.0/29", { blockSize: 30 }); // two blocks of 4
    const api = new ResourceClient(ds);
    await api.write("apply", {
      apiVersion: "projectcalico.org/v3",
      kind: "IPAMConfiguration",
      metadata: { name: "default" },
      spec: { strictAffinity: true, maxBlocksPerHost: 1, ipCooldownSeconds: 30 },
    });
    const ipam = new IpamStore(ds, noSleep);
    expect(await ipam.getConfig()).toEqual({
      strictAffinity: true,
      maxBlocksPerHost: 1,
      autoAllocateBlocks: true,
    });
    await ipam.autoAssign({ handleId: "b", node: "n2", num4: 1, num6: 0 });
    for (let i = 0; i < 4; i++)
      await ipam.autoAssign({ handleId: `a${i}`, node: "n1", num4: 1, num6: 0 });
    // n1's one block is full, it may claim no second one and may not borrow from n2's.
    await expect(ipam.autoAssign({ handleId: "a9", node: "n1", num4: 1, num6: 0 })).rejects.toThrow(
      /strictAffinity/,
    );
    // ocelot ipam configure changes the resource, keeping the fields it does not set.
    await ipam.setConfig({ strictAffinity: false });
    const res = await api.get(info(), "default");
    expect(res?.spec).toMatchObject({
      strictAffinity: false,
      maxBlocksPerHost: 1,
      ipCooldownSeconds: 30,
    });
    const borrowed = await ipam.autoAssign({ handleId: "a9", node: "n1", num4: 1, num6: 0 });
    expect(borrowed[0]?.borrowed).toBe(true);
  });

  it("without a resource the older record is read, and configure moves it into a resource", async () => {
    const ds = new MemoryDatastore();
    await ds.create(
      "/ocelot/ipam/v2/config",
      JSON.stringify({ strictAffinity: true, maxBlocksPerHost: 3, autoAllocateBlocks: true }),
    );
    const ipam = new IpamStore(ds, noSleep);
    expect((await ipam.getConfig()).maxBlocksPerHost).toBe(3);
    await ipam.setConfig({ maxBlocksPerHost: 5 });
    const res = await new ResourceClient(ds).get(info(), "default");
    expect(res?.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(res?.spec).toEqual({
      strictAffinity: true,
      maxBlocksPerHost: 5,
      autoAllocateBlocks: true,
    });
    expect(await new IpamStore(ds).getConfig()).toEqual({
      strictAffinity: true,
      maxBlocksPerHost: 5,
      autoAllocateBlocks: true,
    });
  });

  it("a stored resource of the wrong shape is an error naming the key and field", async () => {
    const ds = new MemoryDatastore();
    await ds.create(
      "/ocelot/resources/v3/ipamconfigurations/default",
      JSON.stringify({
        apiVersion: "projectcalico.org/v3",
        kind: "IPAMConfiguration",
        metadata: { name: "default" },
        spec: { maxBlocksPerHost: -1 },
      }),
    );
    await expect(new IpamStore(ds).getConfig()).rejects.toThrow(
      /ipamconfigurations\/default.*spec\.maxBlocksPerHost/,
    );
  });
});
