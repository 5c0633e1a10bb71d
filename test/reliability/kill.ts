// The crash tests' process handling: a daemon spawned with its stdout and stderr collected as
// text, and ended by SIGKILL (no shutdown code runs) with its exit awaited.
import { type ChildProcess, spawn } from "node:child_process";

/** Spawns cmd with args; log() is all it wrote so far, stdout and stderr interleaved. */
export function spawnLogged(cmd: string, args: string[]): { p: ChildProcess; log: () => string } {
  const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  p.stdout?.on("data", (d) => (log += d));
  p.stderr?.on("data", (d) => (log += d));
  return { p, log: () => log };
}

/** SIGKILL, then its exit; nothing when it has already exited. */
export async function stopHard(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once("exit", r));
  p.kill("SIGKILL");
  await exited;
}
