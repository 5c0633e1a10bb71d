// The kernel verdict of `ocelot routes PREFIX`, pure, on routes as `ip -j route show table all
// exact PREFIX` prints them: installed (also ECMP, in any order), missing, different next hops,
// a route of ours the RIB does not install, and other protocols' routes listed apart.
import { describe, expect, it } from "vitest";
import { checkKernelRoute, type IpJsonRoute } from "../../src/fib/route_check.js";

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
});
