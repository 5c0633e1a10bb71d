// Runs a CNI plugin executable the CNI spec's way (the delegation of IPAM: the plugin's path, the
// network configuration on stdin, the CNI_* environment), asynchronously: inside `ocelot node
// run` a CNI hand-off runs this on the daemon's event loop, which also carries BGP keepalives,
// BFD, the FIB and other calls, so nothing here waits synchronously for the child. Owns: the
// child process, its output, and its hang-sized limit. Not: finding the plugin, or what its
// output means (plugin_main.ts).
import { spawn } from "node:child_process";

/** How a plugin run ended. */
export interface PluginRun {
  /** Exited 0. */
  ok: boolean;
  stdout: string;
  stderr: string;
  /** Why it failed, for the error message ("exit 1", "killed by SIGSEGV", a spawn error). */
  failure: string;
  /** It ran past the limit and was killed. */
  timedOut: boolean;
}

/** Output kept per stream (spawnSync's default maxBuffer is 1 MiB; a CNI result is a few KiB). */
export const MAX_PLUGIN_OUTPUT = 4 << 20;

/**
 * Runs `path` with `stdin` written to it and `env` as its whole environment; the result once it
 * exits. Killed (SIGKILL) after timeoutMs, or when it writes more than MAX_PLUGIN_OUTPUT to a
 * stream. Never rejects.
 */
export function execPlugin(
  path: string,
  stdin: string,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<PluginRun> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const size = { out: 0, err: 0 };
    let timedOut = false;
    let overflow = "";
    let spawnError: Error | undefined;
    let done = false;
    const child = spawn(path, [], { env, stdio: ["pipe", "pipe", "pipe"] });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    const collect = (chunks: Buffer[], which: "out" | "err") => (d: Buffer) => {
      size[which] += d.length;
      if (size[which] > MAX_PLUGIN_OUTPUT) {
        if (!overflow) {
          overflow = `std${which} larger than ${MAX_PLUGIN_OUTPUT} bytes`;
          child.kill("SIGKILL");
        }
        return;
      }
      chunks.push(d);
    };
    child.stdout.on("data", collect(out, "out"));
    child.stderr.on("data", collect(err, "err"));
    // A plugin may exit without reading all of stdin (EPIPE): its exit status says how it went.
    child.stdin.on("error", () => {});
    child.on("error", (e) => {
      // The spawn failed (ENOENT, EACCES): no "close" follows when nothing was started.
      spawnError = e;
      if (child.pid === undefined) finish(null, null);
    });
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const failure = spawnError
        ? spawnError.message
        : timedOut
          ? `killed after ${timeoutMs} ms`
          : overflow
            ? `killed: ${overflow}`
            : signal
              ? `killed by ${signal}`
              : `exit ${code}`;
      resolve({
        ok: code === 0 && !spawnError && !timedOut && !overflow,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8").trim(),
        failure,
        timedOut,
      });
    };
    child.on("close", finish);
    child.stdin.end(stdin);
  });
}
