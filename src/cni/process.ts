// The process edge both CNI plugins share: stdin in, the result or error JSON out on stdout,
// the exit code. Owns nothing else (each plugin's run function never throws).
import type { CniOutcome } from "./ipam_plugin.js";

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return "";
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Reads the network configuration, runs one invocation, writes its outcome. */
export async function runPluginProcess(run: (stdin: string) => Promise<CniOutcome>): Promise<void> {
  const out = await run(await readStdin());
  if (out.stdout) process.stdout.write(`${out.stdout}\n`);
  process.exitCode = out.exitCode;
}
