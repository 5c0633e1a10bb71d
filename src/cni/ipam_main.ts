// Process entry of the `ocelot-ipam` CNI plugin: reads the environment and stdin, runs one
// command (ipam_plugin.ts), writes the result or error JSON to stdout and exits. Owns only the
// process edges: stdin, stdout, exit code, opening and closing the datastore.
import { hostname } from "node:os";
import { openDatastore } from "../datastore/open.js";
import { runIpamPlugin } from "./ipam_plugin.js";

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return "";
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export async function main(): Promise<void> {
  const out = await runIpamPlugin(process.env, await readStdin(), {
    openStore: (url) => openDatastore(url),
    hostname,
  });
  if (out.stdout) process.stdout.write(`${out.stdout}\n`);
  process.exitCode = out.exitCode;
}
