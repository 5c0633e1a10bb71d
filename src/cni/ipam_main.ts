// Process entry of the `ocelot-ipam` CNI plugin: reads the environment and stdin, runs one
// command (ipam_plugin.ts), writes the result or error JSON to stdout and exits. Owns only the
// process edges: stdin, stdout, exit code, opening and closing the datastore.
import { hostname } from "node:os";
import type { Datastore } from "../datastore/types.js";
import { runIpamPlugin } from "./ipam_plugin.js";

/** Opens a datastore URL: `file:/path` (embedded), `etcd://host:port[,host:port]`. */
export async function openStore(url: string): Promise<Datastore> {
  // The datastore layer's own opener, when present (it knows every backend and its options).
  try {
    const spec = "../datastore/open.js";
    const mod = (await import(spec)) as {
      openDatastore?: (u: string) => Promise<Datastore> | Datastore;
    };
    if (typeof mod.openDatastore === "function") return await mod.openDatastore(url);
  } catch (err) {
    if ((err as { code?: string }).code !== "ERR_MODULE_NOT_FOUND") throw err;
  }
  if (url.startsWith("file:")) {
    const { SqliteDatastore } = await import("../datastore/sqlite.js");
    return new SqliteDatastore(url.slice("file:".length));
  }
  throw new Error(`Datastore URL "${url}" is not supported (use file:/path or etcd://host:port)`);
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return "";
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export async function main(): Promise<void> {
  const out = await runIpamPlugin(process.env, await readStdin(), { openStore, hostname });
  if (out.stdout) process.stdout.write(`${out.stdout}\n`);
  process.exitCode = out.exitCode;
}
