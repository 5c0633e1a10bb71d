// The process edge both CNI plugins share: stdin in, the result or error JSON out on stdout,
// the exit code, and the invocation's line in the plugin log file (log.ts: a failure with its
// stack). Owns nothing else (each plugin's run function never throws).

import type { CniOutcome } from "./ipam_plugin.js";
import { appendCniLog, cniLogEntry, cniLogSettings } from "./log.js";

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return "";
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Reads the network configuration, runs one invocation, writes its outcome and its log line. */
export async function runPluginProcess(
  plugin: string,
  run: (stdin: string) => Promise<CniOutcome>,
): Promise<void> {
  const stdin = await readStdin();
  const out = await run(stdin);
  logInvocation(plugin, process.env, stdin, out);
  process.stdout.write(stdoutOf(out));
  process.exitCode = out.exitCode;
}

/** The invocation's line in the plugin log file (none for VERSION). */
export function logInvocation(
  plugin: string,
  env: NodeJS.ProcessEnv,
  stdin: string,
  out: CniOutcome,
): void {
  if (env.CNI_COMMAND === "VERSION") return;
  const settings = cniLogSettings(stdin);
  const line = cniLogEntry(settings, new Date(), plugin, env, out.failure);
  if (line) appendCniLog(settings.file, line);
}

/** What the plugin prints: its outcome's JSON and a newline, or nothing. */
export function stdoutOf(out: CniOutcome): string {
  return out.stdout ? `${out.stdout}\n` : "";
}
