// The KernelFib's per-route errors against the real kernel in a network namespace of ours: a
// route via a gateway on no connected subnet is refused (ENETUNREACH), its error kept (both
// entry points: Route values and the IPv4 batch path) and counted by errno; a withdrawal or a
// successful install clears it; beyond the bound errors are counted, not kept. The kernel's
// table is read back with `ip -j route`.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { FibError } from "../../src/fib/types.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("kernel FIB errors (netns)", reason);

const FAR = "10.77.0.1";
const ip4 = (s: string) => s.split(".").reduce((a, b) => a * 256 + Number(b), 0);

describe.skipIf(skip)("KernelFib keeps the kernel's last error per refused route", () => {
  let ns: Netns;
  let fib: KernelFib;
  const inKernel = (dst: string) =>
    ns.ipJson<{ dst: string }[]>("route", "show", "proto", "201").some((r) => r.dst === dst);

  beforeAll(async () => {
    ns = Netns.create("fibe");
    ns.ip("link", "add", "g0", "type", "veth", "peer", "name", "g1");
    ns.ip("addr", "add", "10.255.20.0/31", "dev", "g0");
    ns.ip("link", "set", "g0", "up");
    ns.ip("link", "set", "g1", "up");
    fib = await KernelFib.open({ netns: ns.name, protocols: [201] });
  });

  afterAll(async () => {
    await fib?.close();
    ns?.destroy();
  });

  it("a route via a gateway on no connected subnet: refused, its error kept, cleared on withdraw", async () => {
    const route = {
      family: 4 as const,
      dst: "10.61.0.0/24",
      protocol: 201,
      nexthops: [{ gateway: FAR }],
    };
    await expect(fib.set([route])).rejects.toBeInstanceOf(FibError);
    expect(inKernel("10.61.0.0/24")).toBe(false);
    expect(fib.routeError("10.61.0.0/24")).toMatchObject({
      op: "set",
      errno: 101,
      code: "ENETUNREACH",
      reason: "Network is unreachable",
      route: "10.61.0.0/24 table 254 metric 0",
    });
    expect(fib.routeError("10.61.1.0/24")).toBeUndefined();
    expect(fib.errorsByErrno()).toContainEqual({ op: "set", errno: "ENETUNREACH", count: 1 });
    expect(fib.status()).toMatchObject({ errorsKept: 1, errorsNotKept: 0 });
    await fib.remove([route]);
    expect(fib.routeError("10.61.0.0/24")).toBeUndefined();
    expect(fib.status().errorsKept).toBe(0);
    // The count stays (a counter).
    expect(fib.errorsByErrno()).toContainEqual({ op: "set", errno: "ENETUNREACH", count: 1 });
  });

  it("the batch path keeps errors too; a successful install clears one; beyond 4096 they are counted", async () => {
    const n = 4100;
    const addrs = new Uint32Array(n);
    for (let i = 0; i < n; i++) addrs[i] = ip4("10.62.0.0") + i * 256;
    const lens = new Uint8Array(n).fill(24);
    await expect(
      fib.setV4Batch({ addrs, lens, protocol: 201, nexthops: [{ gateway: FAR }] }),
    ).rejects.toBeInstanceOf(FibError);
    expect(fib.status()).toMatchObject({ errorsKept: 4096, errorsNotKept: 4 });
    expect(fib.routeError("10.62.0.0/24")?.code).toBe("ENETUNREACH");
    expect(fib.errorsByErrno()).toContainEqual({ op: "set", errno: "ENETUNREACH", count: 1 + n });
    // The same prefix via a reachable gateway: installed, its error gone.
    await fib.set([
      { family: 4, dst: "10.62.0.0/24", protocol: 201, nexthops: [{ gateway: "10.255.20.1" }] },
    ]);
    expect(inKernel("10.62.0.0/24")).toBe(true);
    expect(fib.routeError("10.62.0.0/24")).toBeUndefined();
    expect(fib.status().errorsKept).toBe(4095);
    await fib.removeV4Batch({ addrs, lens, protocol: 201 });
    expect(fib.status().errorsKept).toBe(0);
    expect(inKernel("10.62.0.0/24")).toBe(false);
  });
});
