// Log levels per subsystem: `name=level` arguments and one step up or down.
import { describe, expect, it } from "vitest";
import { parseLevelArgs, stepLevel } from "../../src/lib/log_levels.js";

describe("parseLevelArgs()", () => {
  it("reads subsystem=level, all for every subsystem, and names what is wrong", () => {
    expect(parseLevelArgs(["bgp=debug"], ["node", "bgp"])).toEqual({ bgp: "debug" });
    expect(parseLevelArgs(["all=warn", "bgp=trace"], ["node", "bgp"])).toEqual({
      node: "warn",
      bgp: "trace",
    });
    expect(() => parseLevelArgs(["bgp"], ["bgp"])).toThrow(/"bgp" is not subsystem=level/);
    expect(() => parseLevelArgs(["fib=debug"], ["node", "bgp"])).toThrow(
      /"fib" is not a subsystem/,
    );
    expect(() => parseLevelArgs(["bgp=loud"], ["bgp"])).toThrow(/"loud" is not a level/);
  });
});

describe("stepLevel()", () => {
  it("moves one step towards trace or fatal and stops at the ends", () => {
    expect(stepLevel("info", 1)).toBe("debug");
    expect(stepLevel("info", -1)).toBe("warn");
    expect(stepLevel("trace", 1)).toBe("trace");
    expect(stepLevel("fatal", -1)).toBe("fatal");
  });
});
