// bgpd's start-up V8 setting for its old generation (src/cli/bgpd.ts, capHeapGrowth): the flag it
// sets by default, the way to leave V8's own factor, and a clear error naming the variable.
import { describe, expect, it } from "vitest";
import { capHeapGrowth, HEAP_GROWING_PERCENT } from "../../src/cli/bgpd.js";
import { CliError } from "../../src/cli/errors.js";

describe("bgpd old-generation growth", () => {
  it("is capped by default, by a given percent, or left to V8", () => {
    expect(capHeapGrowth(undefined)).toBe(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
    expect(capHeapGrowth("50")).toBe("--heap-growing-percent=50");
    expect(capHeapGrowth("default")).toBeUndefined();
  });

  it.each(["abc", "0", "401", "-5", "1.5", ""])("rejects %j naming the variable", (v) => {
    expect(() => capHeapGrowth(v)).toThrow(CliError);
    expect(() => capHeapGrowth(v)).toThrow(
      /OCELOT_V8_HEAP_GROWING: ".*" is not "default" or a percent 1\.\.400/,
    );
  });
});
