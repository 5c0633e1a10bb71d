// The overlay fast path's socket against the real kernel, in a namespace of ours with a VXLAN
// device as the agent makes it: a new block's neighbour, FDB entry and route written in one
// sendmsg and read back with `ip -j`/`bridge -j`; the FIB then owns the route (its write of the
// same route leaves one route, and a later removal through the FIB removes it); routes the socket
// must not send itself are left to the FIB; a refused entry is reported.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planOverlayDelta } from "../../src/felix/overlay_delta.js";
import { applyOverlayDelta } from "../../src/felix/overlay_fast.js";
import { OverlaySocket, sendsItself } from "../../src/felix/overlay_socket.js";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { HANG_MS } from "../helpers/limits.js";
import { Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("overlay socket (netns)", reason);

const DEV = "vxlan.ocelot";
const route = (dst: string, gateway: string) => ({
  family: 4 as const,
  dst,
  protocol: 202,
  nexthops: [{ gateway, dev: DEV, onlink: true }],
});
const none = { devices: [], neighbours: [], fdb: [], routes: [], podMtu: 1450, warnings: [] };

describe.skipIf(skip)("OverlaySocket (netns)", () => {
  let ns: Netns;
  let sock: OverlaySocket;
  let fib: KernelFib;

  beforeAll(async () => {
    ns = Netns.create("ovs");
    ns.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1");
    ns.ip("addr", "add", "10.31.9.11/24", "dev", "v0");
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
      "10.31.9.11",
      "dstport",
      "4789",
      "nolearning",
      "dev",
      "v0",
    );
    ns.ip("addr", "add", "10.232.250.1/32", "dev", DEV);
    ns.ip("link", "set", DEV, "up");
    sock = OverlaySocket.open(ns.name);
    fib = await KernelFib.open({ netns: ns.name, protocols: [202] });
  }, HANG_MS);

  afterAll(async () => {
    sock?.close();
    await fib?.close();
    ns?.destroy();
  });

  const kernelRoutes = () =>
    ns.ipJson<{ dst: string; gateway?: string; dev?: string; protocol?: string }[]>(
      "route",
      "show",
      "proto",
      "202",
    );

  it("sends only single-hop gateway routes through a device, main table, metric 0", () => {
    expect(sendsItself(route("10.232.1.0/26", "10.232.1.1"))).toBe(true);
    expect(
      sendsItself({
        family: 4,
        dst: "10.232.1.0/26",
        protocol: 202,
        nexthops: [{ gateway: "10.31.1.5" }],
      }),
    ).toBe(false);
    expect(sendsItself({ ...route("10.232.1.0/26", "10.232.1.1"), metric: 10 })).toBe(false);
    expect(sendsItself({ ...route("10.232.1.0/26", "10.232.1.1"), table: 100 })).toBe(false);
  });

  it(
    "puts the entries and the route in the kernel before any answer is read; the FIB owns the route",
    async () => {
      const want = {
        ...none,
        neighbours: [{ dev: DEV, dst: "10.232.7.1", lladdr: "66:aa:bb:cc:dd:07" }],
        fdb: [{ dev: DEV, mac: "66:aa:bb:cc:dd:07", dst: "10.31.9.77" }],
        routes: [route("10.232.7.0/26", "10.232.7.1")],
      };
      let atSent: unknown[] = [];
      const io = {
        fib,
        neigh: {
          run: (
            ops: Parameters<OverlaySocket["run"]>[0],
            onSent?: () => void,
            routes?: Parameters<OverlaySocket["run"]>[2],
          ) =>
            sock.run(
              ops,
              () => {
                // Read synchronously, before the FIB could send anything: the socket's own write.
                atSent = kernelRoutes();
                onSent?.();
              },
              routes,
            ),
        },
      };
      const r = await applyOverlayDelta(planOverlayDelta(none, want, new Set([DEV])), io);
      expect(r.failures).toEqual([]);
      expect(atSent).toEqual([
        expect.objectContaining({ dst: "10.232.7.0/26", gateway: "10.232.7.1", dev: DEV }),
      ]);
      expect(kernelRoutes()).toHaveLength(1);
      const neigh = ns.ipJson<{ dst: string; lladdr?: string; state?: string[] }[]>(
        "neigh",
        "show",
        "dev",
        DEV,
      );
      expect(neigh).toEqual([
        expect.objectContaining({ dst: "10.232.7.1", lladdr: "66:aa:bb:cc:dd:07" }),
      ]);
      const fdb = JSON.parse(ns.exec("bridge", "-j", "fdb", "show", "dev", DEV)) as {
        mac: string;
        dst?: string;
      }[];
      expect(fdb).toContainEqual(
        expect.objectContaining({ mac: "66:aa:bb:cc:dd:07", dst: "10.31.9.77" }),
      );
      // The FIB wants it: removing it through the FIB takes it out of the kernel.
      expect(fib.desired().map((x) => x.dst)).toContain("10.232.7.0/26");
      await fib.remove([route("10.232.7.0/26", "10.232.7.1")]);
      await waitFor("the route removed", () => kernelRoutes().length === 0, 30_000);
    },
    HANG_MS,
  );

  it(
    "reports an entry on a missing device and sends nothing for it",
    async () => {
      const failures = await sock.run(
        [
          {
            op: "set",
            dev: "nosuchdev0",
            what: "neighbour on nosuchdev0",
            req: { family: 4, state: 0x80, flags: 0, dst: Uint8Array.of(10, 0, 0, 1) },
          },
        ],
        undefined,
        [],
      );
      expect(failures).toEqual([
        expect.objectContaining({ what: "neighbour on nosuchdev0", code: "ENODEV" }),
      ]);
    },
    HANG_MS,
  );
});
