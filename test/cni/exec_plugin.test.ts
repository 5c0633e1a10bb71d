// execPlugin (src/cni/exec_plugin.ts), the CNI delegation's exec, against small /bin/sh plugins:
// stdin and exactly the given environment reach the plugin, its stdout and stderr come back, an
// exit status, a signal, a spawn error, too much output and the limit each end it with their
// own failure text, a plugin that exits without reading its stdin is reported by its exit status
// (spawnSync said EPIPE), and the event loop turns while the plugin runs.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execPlugin, MAX_PLUGIN_OUTPUT } from "../../src/cni/exec_plugin.js";
import { runSync } from "../helpers/limits.js";

/** The hang limit for plugins that should end by themselves. */
const HANG_MS = 60_000;

describe("execPlugin", () => {
  let dir: string;
  const script = (name: string, body: string) => {
    const p = join(dir, name);
    writeFileSync(p, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    return p;
  };
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", CNI_COMMAND: "ADD", FOO: "bar" };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-exec-plugin-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("gives the plugin stdin and exactly the environment given; returns its output", async () => {
    process.env.OCELOT_EXEC_PLUGIN_LEAK = "leaked";
    try {
      const p = script(
        "echo",
        'cat; echo; echo "$CNI_COMMAND $FOO $' + '{OCELOT_EXEC_PLUGIN_LEAK:-unset}"; echo warn >&2',
      );
      const r = await execPlugin(p, '{"cniVersion":"1.0.0"}', env, HANG_MS);
      expect(r).toEqual({
        ok: true,
        stdout: '{"cniVersion":"1.0.0"}\nADD bar unset\n',
        stderr: "warn",
        failure: "exit 0",
        timedOut: false,
      });
    } finally {
      delete process.env.OCELOT_EXEC_PLUGIN_LEAK;
    }
  });

  it("an exit status, a signal, a spawn error", async () => {
    const exit = await execPlugin(script("exit3", "echo boom >&2; exit 3"), "{}", env, HANG_MS);
    expect(exit).toMatchObject({ ok: false, failure: "exit 3", stderr: "boom", timedOut: false });
    const sig = await execPlugin(script("segv", "kill -SEGV $$"), "{}", env, HANG_MS);
    expect(sig).toMatchObject({ ok: false, failure: "killed by SIGSEGV" });
    const missing = await execPlugin(join(dir, "absent"), "{}", env, HANG_MS);
    expect(missing.ok).toBe(false);
    expect(missing.failure).toMatch(/ENOENT/);
  });

  it("a plugin that exits without reading a large stdin is reported by its exit status", async () => {
    const p = script("noread", "echo 'said no' >&2; exit 3");
    for (let i = 0; i < 5; i++) {
      const r = await execPlugin(p, "x".repeat(1 << 20), env, HANG_MS);
      expect(r).toMatchObject({ ok: false, failure: "exit 3", stderr: "said no" });
    }
    // For contrast, the synchronous exec the delegation used before: printed, not asserted.
    const before = Array.from({ length: 5 }, () => runSync(p, [], { input: "x".repeat(1 << 20) }));
    console.log(
      `execPlugin: spawnSync on the same plugin: ${before.filter((r) => r.error?.message.includes("EPIPE")).length} of 5 said EPIPE instead of exit 3`,
    );
  });

  it("output past the bound and a plugin past the limit are killed, each with why", async () => {
    const big = await execPlugin(
      script("big", `head -c ${MAX_PLUGIN_OUTPUT + 65536} /dev/zero`),
      "",
      env,
      HANG_MS,
    );
    expect(big).toMatchObject({
      ok: false,
      failure: `killed: stdout larger than ${MAX_PLUGIN_OUTPUT} bytes`,
    });
    // The limit is what is under test here (300 ms against a 30 s sleep), not a speed bound.
    const t0 = Date.now();
    const slow = await execPlugin(script("sleep", "exec sleep 30"), "", env, 300);
    console.log(`execPlugin: a 30 s plugin with a 300 ms limit ended after ${Date.now() - t0} ms`);
    expect(slow).toMatchObject({ ok: false, timedOut: true, failure: "killed after 300 ms" });
  });

  it("the event loop turns while the plugin runs (a timer ticks during a 1 s plugin)", async () => {
    let ticks = 0;
    const t = setInterval(() => ticks++, 20);
    try {
      const r = await execPlugin(script("sleep1", "sleep 1; cat"), "in", env, HANG_MS);
      expect(r).toMatchObject({ ok: true, stdout: "in" });
    } finally {
      clearInterval(t);
    }
    console.log(`execPlugin: ${ticks} ticks of a 20 ms timer during a 1 s plugin`);
    expect(ticks).toBeGreaterThan(0);
  });
});
