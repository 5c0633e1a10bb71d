// NeighbourSocket and the overlay fast path's requests against the real kernel in a namespace of
// ours: a permanent neighbour (protocol 202) and a VXLAN FDB entry to a remote fabric address
// set, replaced and deleted over netlink, each result read back with `ip -j neigh` and
// `bridge -j fdb`, never from our own bookkeeping.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Neighbour } from "../../src/felix/overlay.js";
import { planOverlayDelta } from "../../src/felix/overlay_delta.js";
import { applyOverlayDelta, deltaNeighOps } from "../../src/felix/overlay_fast.js";
import { MemoryFib } from "../../src/fib/memory_fib.js";
import { NeighbourSocket } from "../../src/fib/neigh_socket.js";
import type { Route } from "../../src/fib/types.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("neighbour socket (netns)", reason);

const DEV = "vxlan.ocelot";
const MAC1 = "66:00:00:00:01:01";
const MAC2 = "66:00:00:00:01:02";

interface IpNeigh {
  dst: string;
  lladdr?: string;
  state?: string[];
  protocol?: string;
}
interface Fdb {
  mac: string;
  dst?: string;
  state?: string;
  flags?: string[];
}

const state = (
  neighbours: Neighbour[],
  fdb: { mac: string; dst: string }[],
  routes: Route[] = [],
) => ({
  devices: [],
  neighbours,
  fdb: fdb.map((f) => ({ dev: DEV, ...f })),
  routes,
  podMtu: 1450,
  warnings: [],
});

describe.skipIf(skip)("NeighbourSocket in a network namespace", () => {
  let ns: Netns;
  let sock: NeighbourSocket;
  const neigh = () => ns.ipJson<IpNeigh[]>("neigh", "show", "dev", DEV);
  const fdb = () => JSON.parse(ns.exec("bridge", "-j", "fdb", "show", "dev", DEV) || "[]") as Fdb[];

  beforeAll(() => {
    ns = Netns.create("neigh");
    ns.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1");
    ns.ip("addr", "add", "10.255.7.1/24", "dev", "v0");
    ns.ip("link", "set", "v0", "up");
    ns.ip("link", "set", "v1", "up");
    ns.ip(
      "link",
      "add",
      DEV,
      "type",
      "vxlan",
      "id",
      "4096",
      "local",
      "10.255.7.1",
      "dstport",
      "4789",
      "nolearning",
      "dev",
      "v0",
    );
    ns.ip("link", "set", DEV, "up");
    sock = NeighbourSocket.open(ns.name);
  });

  afterAll(() => {
    sock?.close();
    ns?.destroy();
  });

  it("sets a permanent neighbour (protocol 202) and an FDB entry, then replaces and deletes them", async () => {
    const fib = new MemoryFib();
    const route: Route = {
      family: 4,
      dst: "10.244.9.0/26",
      protocol: 202,
      nexthops: [{ gateway: "10.244.9.1", dev: DEV, onlink: true }],
    };
    const a = state(
      [{ dev: DEV, dst: "10.244.9.1", lladdr: MAC1 }],
      [{ mac: MAC1, dst: "10.255.7.9" }],
      [route],
    );
    const empty = state([], []);
    const present = new Set([DEV]);
    expect(
      (await applyOverlayDelta(planOverlayDelta(empty, a, present), { fib, neigh: sock })).failures,
    ).toEqual([]);
    // The route went to the FIB, after the entries it needs.
    expect(fib.desired().map((r) => r.dst)).toEqual(["10.244.9.0/26"]);
    const n = neigh().find((x) => x.dst === "10.244.9.1");
    expect(n?.lladdr).toBe(MAC1);
    expect(n?.state).toContain("PERMANENT");
    expect(n?.protocol).toBe("202");
    const f = fdb().find((x) => x.mac === MAC1);
    expect(f?.dst).toBe("10.255.7.9");
    expect(f?.state).toBe("permanent");

    // The node's VTEP MAC and fabric address change: the neighbour is replaced, the FDB moves.
    const b = state(
      [{ dev: DEV, dst: "10.244.9.1", lladdr: MAC2 }],
      [{ mac: MAC2, dst: "10.255.7.10" }],
    );
    expect(
      (await applyOverlayDelta(planOverlayDelta(a, b, present), { fib, neigh: sock })).failures,
    ).toEqual([]);
    expect(neigh().find((x) => x.dst === "10.244.9.1")?.lladdr).toBe(MAC2);
    expect(
      fdb()
        .map((x) => `${x.mac} ${x.dst}`)
        .filter((x) => x.startsWith("66:")),
    ).toEqual([`${MAC2} 10.255.7.10`]);

    // Gone: both removed; deleting again is not a failure.
    const gone = planOverlayDelta(b, empty, present);
    expect((await applyOverlayDelta(gone, { fib, neigh: sock })).failures).toEqual([]);
    expect(neigh().filter((x) => x.dst === "10.244.9.1")).toEqual([]);
    expect(fdb().filter((x) => x.mac === MAC2)).toEqual([]);
    expect(await sock.run(deltaNeighOps(gone).after)).toEqual([]);
  });

  it("a device made again (a new ifindex) is found again: the request is retried after a fresh dump", async () => {
    // The socket has the device's old index from the test before.
    ns.ip("link", "del", DEV);
    ns.ip(
      "link",
      "add",
      DEV,
      "type",
      "vxlan",
      "id",
      "4096",
      "local",
      "10.255.7.1",
      "dstport",
      "4789",
      "nolearning",
      "dev",
      "v0",
    );
    ns.ip("link", "set", DEV, "up");
    const ops = deltaNeighOps(
      planOverlayDelta(
        state([], []),
        state([{ dev: DEV, dst: "10.244.9.4", lladdr: MAC2 }], []),
        new Set([DEV]),
      ),
    ).before;
    expect(await sock.run(ops)).toEqual([]);
    expect(neigh().find((x) => x.dst === "10.244.9.4")?.lladdr).toBe(MAC2);
  });

  it("an entry on a device that does not exist fails by name, the others are applied", async () => {
    const failures = await sock.run([
      ...deltaNeighOps(
        planOverlayDelta(
          state([], []),
          {
            ...state([{ dev: "nosuch0", dst: "10.244.9.2", lladdr: MAC1 }], []),
          },
          new Set(["nosuch0"]),
        ),
      ).before,
      ...deltaNeighOps(
        planOverlayDelta(
          state([], []),
          state([{ dev: DEV, dst: "10.244.9.3", lladdr: MAC1 }], []),
          new Set([DEV]),
        ),
      ).before,
    ]);
    expect(failures.map((f) => `${f.code} ${f.what}`)).toEqual([
      `ENODEV neighbour 10.244.9.2 ${MAC1} on nosuch0`,
    ]);
    expect(neigh().find((x) => x.dst === "10.244.9.3")?.lladdr).toBe(MAC1);
  });
});
