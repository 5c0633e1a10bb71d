// The kernel verdict of `ocelot routes PREFIX`, pure, on routes as `ip -j route show table all
// exact PREFIX` prints them: installed (also ECMP, in any order), missing, different next hops,
// a route of ours the RIB does not install, and other protocols' routes listed apart; a route
// the kernel refused (the FIB kept its error) "failed" with the error, one without an error
// (deleted by hand) "missing".
import { describe, expect, it } from "vitest";
import { checkKernelRoute, type IpJsonRoute, kernelCheckText } from "../../src/fib/route_check.js";
import type { FibRouteError } from "../../src/fib/types.js";

const ours = (gw: string): IpJsonRoute => ({
  dst: "10.98.1.0/24",
  gateway: gw,
  dev: "eth0",
  protocol: "201",
});

describe("checkKernelRoute", () => {
  it("installed: the kernel's next hops under our protocol equal the RIB's", () => {
    expect(checkKernelRoute(["10.0.0.2"], [ours("10.0.0.2")], 201)).toEqual({
      state: "installed",
      expected: ["10.0.0.2"],
      found: ["10.0.0.2"],
      others: [],
    });
    const ecmp: IpJsonRoute = {
      dst: "10.98.1.0/24",
      protocol: "201",
      nexthops: [
        { gateway: "10.0.1.2", dev: "eth1" },
        { gateway: "10.0.0.2", dev: "eth0" },
      ],
    };
    expect(checkKernelRoute(["10.0.0.2", "10.0.1.2"], [ecmp], 201).state).toBe("installed");
  });

  it("missing, different, unexpected, absent; others listed, never taken for ours", () => {
    const stat: IpJsonRoute = {
      dst: "10.98.1.0/24",
      gateway: "10.9.9.9",
      protocol: "static",
      table: "100",
    };
    const missing = checkKernelRoute(["10.0.0.2"], [stat], 201);
    expect(missing.state).toBe("missing");
    expect(missing.others).toEqual(["10.9.9.9 proto static table 100"]);
    expect(checkKernelRoute(["10.0.0.2"], [ours("10.0.0.3")], 201)).toMatchObject({
      state: "different",
      found: ["10.0.0.3"],
    });
    expect(checkKernelRoute([], [ours("10.0.0.3")], 201).state).toBe("unexpected");
    expect(checkKernelRoute([], [], 201).state).toBe("absent");
    expect(checkKernelRoute(["10.0.0.2", "10.0.1.2"], [ours("10.0.0.2")], 201).state).toBe(
      "different",
    );
  });

  it("failed with the FIB's error; missing (deleted?) without one; the texts say which", () => {
    const error: FibRouteError = {
      route: "10.98.9.0/24 table 254 metric 0",
      op: "set",
      errno: 101,
      code: "ENETUNREACH",
      reason: "Network is unreachable",
      message: "Nexthop has invalid gateway",
      at: Date.UTC(2026, 0, 2, 3, 4, 5),
    };
    const failed = checkKernelRoute(["10.77.0.1"], [], 201, error);
    expect(failed).toMatchObject({ state: "failed", expected: ["10.77.0.1"], found: [], error });
    expect(kernelCheckText(failed)).toBe(
      "NOT IN KERNEL: ENETUNREACH: Network is unreachable (Nexthop has invalid gateway) (refused at 2026-01-02T03:04:05.000Z); expected via 10.77.0.1",
    );
    const deleted = checkKernelRoute(["10.0.0.2"], [], 201);
    expect(deleted.state).toBe("missing");
    expect(kernelCheckText(deleted)).toBe(
      "MISSING from the kernel (deleted?): expected via 10.0.0.2, the kernel has no route of ours",
    );
    // A failed removal is no reason for a route to be absent: still "missing".
    expect(checkKernelRoute(["10.0.0.2"], [], 201, { ...error, op: "remove" }).state).toBe(
      "missing",
    );
    // Installed as expected: an error kept from before does not change the verdict.
    expect(checkKernelRoute(["10.0.0.2"], [ours("10.0.0.2")], 201, error).state).toBe("installed");
    expect(kernelCheckText(checkKernelRoute([], [], 201))).toBe("nothing to install, none there");
  });
});
