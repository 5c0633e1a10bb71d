// Process entry of the `ocelot-ipam` CNI plugin: runs one command (ipam_plugin.ts) from the
// environment and stdin through the shared process edge (process.ts), with the datastore opener.
import { hostname } from "node:os";
import { openDatastore } from "../datastore/open.js";
import { runIpamPlugin } from "./ipam_plugin.js";
import { runPluginProcess } from "./process.js";

/** For the bundle's V8 code cache (scripts/build.mjs): the etcd client's calls, run once. */
export async function warmCodeCache(): Promise<void> {
  await (await import("../datastore/etcd.js")).warmEtcdClient();
}

export async function main(): Promise<void> {
  await runPluginProcess("ocelot-ipam", (stdin) =>
    runIpamPlugin(process.env, stdin, {
      openStore: (url, etcd) => openDatastore(url, etcd ? { etcd } : {}),
      hostname,
    }),
  );
}
