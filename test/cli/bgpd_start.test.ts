// bgpd's start-up V8 setting for its old generation (src/cli/bgpd.ts, capHeapGrowth): the flag it
// sets by default, the way to leave V8's own factor, and a clear error naming the variable; the
// same for its fixed glibc malloc thresholds (fixMallocThresholds).
import { describe, expect, it } from "vitest";
import {
  capHeapGrowth,
  fixMallocThresholds,
  HEAP_GROWING_PERCENT,
  MALLOC_THRESHOLD_BYTES,
} from "../../src/cli/bgpd.js";
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

describe("bgpd malloc thresholds", () => {
  // glibc (this machine's C library) accepts them; the addon is built with the tree.
  it("are fixed at 128 KiB by default, at a given byte count, or left to glibc", () => {
    expect(MALLOC_THRESHOLD_BYTES).toBe(131072);
    expect(fixMallocThresholds("262144")).toBe(262144);
    expect(fixMallocThresholds(undefined)).toBe(MALLOC_THRESHOLD_BYTES);
    expect(fixMallocThresholds("default")).toBeUndefined();
  });

  it.each(["abc", "0", "4095", "33554433", "1.5", ""])("rejects %j naming the variable", (v) => {
    expect(() => fixMallocThresholds(v)).toThrow(CliError);
    expect(() => fixMallocThresholds(v)).toThrow(
      /OCELOT_MALLOC_THRESHOLDS: ".*" is not "default" or a byte count 4096\.\.33554432/,
    );
  });
});
