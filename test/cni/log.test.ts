import { describe, expect, it } from "vitest";
import { CniError, failureOutcome } from "../../src/cni/ipam_plugin.js";
import { cniLogEntry, cniLogSettings, DEFAULT_CNI_LOG_FILE, oneLine } from "../../src/cni/log.js";

describe("failureOutcome()", () => {
  it("answers an unexpected error with code 102 and its message on one line; the stack only for the log", () => {
    const err = new TypeError("Cannot read properties of undefined\n(reading 'spec')");
    const out = failureOutcome("1.0.0", err);
    expect(out.exitCode).toBe(1);
    expect(JSON.parse(out.stdout)).toEqual({
      cniVersion: "1.0.0",
      code: 102,
      msg: "Cannot read properties of undefined; (reading 'spec')",
    });
    expect(out.stdout).not.toContain("    at ");
    expect(out.failure?.stack).toBe(err.stack);
  });

  it("keeps a CniError's code and details; its trace (a child's stderr) goes to the log", () => {
    const e = new CniError(7, "Field x is bad", "see the docs");
    e.trace = "Error: inner\n    at f (x.js:1:1)";
    const out = failureOutcome("0.4.0", e);
    expect(JSON.parse(out.stdout)).toEqual({
      cniVersion: "0.4.0",
      code: 7,
      msg: "Field x is bad",
      details: "see the docs",
    });
    expect(out.failure).toEqual({ code: 7, msg: "Field x is bad", stack: e.trace });
  });
});

describe("cniLogSettings() and cniLogEntry()", () => {
  it("reads log_file_path and log_level; defaults for anything else", () => {
    expect(cniLogSettings('{"log_file_path":"/x/c.log","log_level":"info"}')).toEqual({
      file: "/x/c.log",
      level: "info",
    });
    for (const bad of ["{nope", "[]", '{"log_file_path":"rel.log","log_level":7}'])
      expect(cniLogSettings(bad)).toEqual({ file: DEFAULT_CNI_LOG_FILE, level: "error" });
  });

  it("writes failures at the default level, every command at info, nothing at none", () => {
    const env = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c1", CNI_IFNAME: "eth0" };
    const at = new Date("2026-01-02T03:04:05Z");
    const fail = { code: 102, msg: "boom", stack: "Error: boom\n    at x" };
    const s = (level: "none" | "error" | "info") => ({ file: "/l", level });
    expect(cniLogEntry(s("error"), at, "ocelot-cni", env, undefined)).toBeUndefined();
    expect(cniLogEntry(s("none"), at, "ocelot-cni", env, fail)).toBeUndefined();
    const line = cniLogEntry(s("error"), at, "ocelot-cni", env, fail) as string;
    expect(line.endsWith("\n")).toBe(true);
    expect(line.trim()).not.toContain("\n");
    expect(JSON.parse(line)).toMatchObject({
      time: "2026-01-02T03:04:05.000Z",
      level: "error",
      plugin: "ocelot-cni",
      command: "ADD",
      containerID: "c1",
      code: 102,
      msg: "boom",
      stack: fail.stack,
    });
    expect(
      JSON.parse(cniLogEntry(s("info"), at, "ocelot-ipam", env, undefined) as string),
    ).toMatchObject({ level: "info", plugin: "ocelot-ipam", msg: "ok" });
  });

  it("oneLine() joins lines with '; ' and drops empty ones", () => {
    expect(oneLine("a\n\n  b  \r\nc")).toBe("a; b; c");
  });
});
