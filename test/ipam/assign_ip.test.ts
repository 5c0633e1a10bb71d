// IpamStore.assignIP() (Calico's AssignIP: a given address, for the ipAddrs annotation and
// CNI_ARGS IP=) on the in-memory store: a free address in an unclaimed block claims the block
// for the node; one in another node's block is borrowed (the handle record names the block, and
// release by handle finds it); a retry of the same handle is idempotent; an address in use,
// reserved or in no pool is refused by name; released, it can be assigned again, and autoAssign
// never hands it out while held.
import { describe, expect, it } from "vitest";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import { AddressUnavailableError, IpamStore } from "../../src/ipam/store.js";
import { putPool, putReservation } from "./helpers.js";

async function setup() {
  const store = new MemoryDatastore();
  await putPool(store, "pool", "10.80.0.0/16", { blockSize: 26 });
  await putReservation(store, "res", ["10.80.9.0/24"]);
  return { store, ipam: new IpamStore(store) };
}

describe("IpamStore.assignIP()", () => {
  it("claims the address's block for the node, idempotent per handle; release frees it", async () => {
    const { ipam } = await setup();
    const a = await ipam.assignIP({ handleId: "h1", node: "n1", address: "10.80.1.7" });
    expect(a).toMatchObject({
      address: "10.80.1.7",
      family: 4,
      block: "10.80.1.0/26",
      pool: "pool",
      borrowed: false,
    });
    expect((await ipam.listAffinities()).map((x) => [x.node, x.cidr, x.state])).toEqual([
      ["n1", "10.80.1.0/26", "confirmed"],
    ]);
    expect(await ipam.assignIP({ handleId: "h1", node: "n1", address: "10.80.1.7" })).toEqual(a);
    expect((await ipam.getAllocation("10.80.1.7"))?.handleId).toBe("h1");
    // autoAssign on n1 uses the block but never that address.
    const auto = await ipam.autoAssign({ handleId: "h2", node: "n1", num4: 60, num6: 0 });
    expect(auto.map((x) => x.address)).not.toContain("10.80.1.7");
    expect(await ipam.releaseByHandle("h1", "n1")).toEqual(["10.80.1.7"]);
    expect(await ipam.getAllocation("10.80.1.7")).toBeUndefined();
  });

  it("borrows from another node's block through the handle record", async () => {
    const { ipam } = await setup();
    const [other] = await ipam.autoAssign({ handleId: "o", node: "n2", num4: 1, num6: 0 });
    const block = other?.block as string;
    const address = block.replace(/\.\d+\/26$/, (m) => `.${Number(m.slice(1, -3)) + 9}`);
    const b = await ipam.assignIP({ handleId: "h3", node: "n1", address });
    expect(b).toMatchObject({ address, block, borrowed: true });
    expect((await ipam.getHandle("h3"))?.blocks).toEqual([block]);
    expect(await ipam.releaseByHandle("h3", "n1")).toEqual([address]);
  });

  it("refuses an address in use, reserved, or in no pool, naming it", async () => {
    const { ipam } = await setup();
    await ipam.assignIP({ handleId: "h1", node: "n1", address: "10.80.2.5" });
    const refused = async (address: string) =>
      ipam.assignIP({ handleId: "h9", node: "n1", address }).then(
        () => "assigned",
        (e: Error) => (e instanceof AddressUnavailableError ? e.message : `other: ${e.message}`),
      );
    expect(await refused("10.80.2.5")).toBe('Address 10.80.2.5 is in use (handle "h1")');
    expect(await refused("10.80.9.1")).toBe("Address 10.80.9.1 is reserved (IPReservation)");
    expect(await refused("10.99.0.1")).toBe("Address 10.99.0.1 is in no IP pool");
  });
});
