// What `ocelot node run` does before the daemon starts, as calico-node's start-up does: wait for
// the datastore (forever, with capped exponential backoff, saying so in the log), create the
// first IP pools when none of their family exists (default-ipv4-ippool, default-ipv6-ippool),
// and settle the node's addresses (an explicit one, the stored one, or autodetected).
// Owns the order and the log lines; the pure parts are exported for tests.
// Not: the settings (config.ts), the detection (autodetect.ts), the daemon (daemon.ts).
import { ResourceClient, ResourceError } from "../api/client.js";
import type { Node } from "../api/node.js";
import { kindOf } from "../api/registry.js";
import { type Datastore, UnavailableError } from "../datastore/types.js";
import { parseCidr } from "../lib/ip.js";
import type { Log } from "../lib/log.js";
import type { Detected } from "./autodetect.js";
import type { AddressSetting, PoolSetting } from "./config.js";

/** The wait before attempt n+1 (n from 0): 1 s doubling to 30 s. */
export function datastoreBackoffMs(attempt: number, initialMs = 1000, maxMs = 30_000): number {
  return Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 20));
}

/**
 * Opens the datastore, trying again for as long as it is unavailable (a daemon waits: etcd may
 * start after the node). Other errors (a bad URL, an unreadable certificate) end the wait.
 * `stopped()` true ends it too (SIGTERM while waiting): undefined then.
 */
export async function openDatastoreWaiting(
  open: () => Promise<Datastore>,
  log: Log,
  opts: { stopped?: () => boolean; initialMs?: number; maxMs?: number } = {},
): Promise<Datastore | undefined> {
  for (let attempt = 0; ; attempt++) {
    if (opts.stopped?.()) return undefined;
    try {
      const store = await open();
      if (attempt > 0) log.info({ attempts: attempt + 1 }, "Datastore reachable");
      return store;
    } catch (err) {
      if (!(err instanceof UnavailableError)) throw err;
      const retryInMs = datastoreBackoffMs(attempt, opts.initialMs, opts.maxMs);
      log.warn(
        { attempt: attempt + 1, retryInMs, error: (err as Error).message },
        "Waiting for the datastore",
      );
      await new Promise((r) => setTimeout(r, retryInMs));
    }
  }
}

/** calico-node's first pool of a family: default-ipv4-ippool / default-ipv6-ippool. */
export function defaultPool(family: 4 | 6, p: PoolSetting): Record<string, unknown> {
  return {
    apiVersion: "projectcalico.org/v3",
    kind: "IPPool",
    metadata: { name: family === 4 ? "default-ipv4-ippool" : "default-ipv6-ippool" },
    spec: {
      cidr: p.cidr,
      blockSize: p.blockSize,
      natOutgoing: p.natOutgoing,
      ipipMode: "Never",
      nodeSelector: "all()",
    },
  };
}

/**
 * Creates the first pool of each family configured when the datastore holds no pool of that
 * family (another node creating it at the same time is fine: AlreadyExists is success).
 * Returns the names created.
 */
export async function ensureDefaultPools(
  store: Datastore,
  pools: { v4?: PoolSetting; v6?: PoolSetting },
  log: Log,
): Promise<string[]> {
  const info = kindOf("projectcalico.org/v3", "IPPool");
  if (!info) throw new Error("Kind IPPool is not registered");
  const client = new ResourceClient(store);
  const { items } = await client.list(info);
  const families = new Set(
    items.map((p) => {
      try {
        return parseCidr(String((p.spec as { cidr?: unknown }).cidr), false).family;
      } catch {
        return 0;
      }
    }),
  );
  const created: string[] = [];
  for (const [family, setting] of [
    [4, pools.v4],
    [6, pools.v6],
  ] as const) {
    if (!setting) continue;
    if (families.has(family)) {
      log.info({ family, cidr: setting.cidr }, `An IPv${family} pool exists: none created`);
      continue;
    }
    const pool = defaultPool(family, setting);
    try {
      await client.write("create", pool);
      created.push((pool.metadata as { name: string }).name);
      log.info(
        { pool: pool.spec, name: (pool.metadata as { name: string }).name },
        "IP pool created",
      );
    } catch (err) {
      if (!(err instanceof ResourceError && err.code === "AlreadyExists")) throw err;
    }
  }
  return created;
}

/** The node's address of one family as the daemon registers it, and how it was chosen. */
export interface ChosenAddress {
  /** "addr/len"; null: remove the stored one (none); undefined: keep the stored one. */
  cidr: string | null | undefined;
  how: string;
  iface?: string;
}

/**
 * The address to register for one family: an explicit one always wins; "none" removes it;
 * "autodetect" detects; unset keeps the stored one, else detects (IPv4) or stays without
 * (IPv6). `detect` throws when nothing qualifies: fatal for "autodetect", a warning for unset.
 */
export async function chooseNodeAddress(
  family: 4 | 6,
  setting: AddressSetting,
  stored: string | undefined,
  detect: () => Promise<Detected>,
  log: Log,
): Promise<ChosenAddress> {
  switch (setting.mode) {
    case "address":
      return { cidr: setting.cidr, how: "configured" };
    case "none":
      return { cidr: null, how: "none" };
    case "autodetect": {
      const d = await detect();
      return { cidr: d.cidr, how: `autodetected by ${d.method}: ${d.reason}`, iface: d.iface };
    }
    case "keep": {
      if (stored) return { cidr: undefined, how: "stored in the Node resource" };
      if (family === 6) return { cidr: undefined, how: "none" };
      try {
        const d = await detect();
        return { cidr: d.cidr, how: `autodetected by ${d.method}: ${d.reason}`, iface: d.iface };
      } catch (err) {
        log.warn(
          { error: (err as Error).message },
          "No IPv4 address autodetected: the node runs without one",
        );
        return { cidr: undefined, how: "none (autodetection found nothing)" };
      }
    }
  }
}

/** The stored Node's addresses (before registration). */
export async function storedNode(store: Datastore, name: string): Promise<Node | undefined> {
  const info = kindOf("projectcalico.org/v3", "Node");
  if (!info) throw new Error("Kind Node is not registered");
  return (await new ResourceClient(store).get(info, name)) as unknown as Node | undefined;
}
