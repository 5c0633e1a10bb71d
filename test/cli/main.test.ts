import { describe, expect, it } from "vitest";
import { runSync } from "../helpers/limits.js";

const bin = new URL("../../bin/ocelot", import.meta.url).pathname;

describe("ocelot", () => {
  it("prints help with exit code 0", () => {
    const r = runSync(bin, ["--help"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("Usage: ocelot");
  });
  it("exits 2 on an unknown option", () => {
    const r = runSync(bin, ["--no-such-option"], { encoding: "utf8" });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("unknown option");
  });
});
