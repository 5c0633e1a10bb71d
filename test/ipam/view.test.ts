// loadEndpointAddresses: the WorkloadEndpoints' addresses as `ipam check` and `ipam gc` read
// them, from compact and pretty-printed JSON alike (the ipNetworks array is taken without
// parsing the whole resource), never from a label or annotation of that name; a value that is
// not JSON is refused with its key.
import { describe, expect, it } from "vitest";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import { IpamDataError } from "../../src/ipam/block.js";
import { loadEndpointAddresses } from "../../src/ipam/gc_run.js";
import { IpamKeys } from "../../src/ipam/records.js";

const keys = new IpamKeys();
const wepKey = (name: string) => `${keys.resources("workloadendpoints")}ns/${name}`;

function wep(name: string, nets: unknown, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: "projectcalico.org/v3",
    kind: "WorkloadEndpoint",
    metadata: { name, namespace: "ns", ...extra },
    spec: { node: "n1", ipNetworks: nets },
  };
}

describe("loadEndpointAddresses", () => {
  it("reads compact and pretty-printed endpoints, IPv4 and IPv6, not labels or annotations", async () => {
    const store = new MemoryDatastore();
    await store.update(wepKey("a"), JSON.stringify(wep("a", ["10.1.0.1/32"])));
    await store.update(
      wepKey("b"),
      JSON.stringify(wep("b", ["10.1.0.2/32", "fd00::0002/128"]), null, 2),
    );
    // An annotation named ipNetworks holds a string, never an array: it does not count.
    await store.update(
      wepKey("c"),
      JSON.stringify(wep("c", ["10.1.0.3/32"], { annotations: { ipNetworks: "[10.9.9.9/32]" } })),
    );
    await store.update(wepKey("d"), JSON.stringify(wep("d", [])));
    await store.update(wepKey("e"), JSON.stringify({ kind: "WorkloadEndpoint", spec: {} }));
    const got = await loadEndpointAddresses(store, keys);
    expect([...got].sort()).toEqual(["10.1.0.1", "10.1.0.2", "10.1.0.3", "fd00::2"]);
  });

  it("refuses a value that is not JSON, naming its key", async () => {
    const store = new MemoryDatastore();
    await store.update(wepKey("bad"), '{"spec": {"node": "n1", ');
    await expect(loadEndpointAddresses(store, keys)).rejects.toThrow(IpamDataError);
    await expect(loadEndpointAddresses(store, keys)).rejects.toThrow(/bad/);
  });
});
