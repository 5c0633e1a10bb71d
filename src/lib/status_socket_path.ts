// Where a node's status socket lives, so that `ocelot status` and `ocelot node status` run inside
// a node (its network namespace) find the daemon of that node without flags. Owns: the
// well-known paths and naming the current network namespace (as `ip netns identify` does: the
// /run/netns entry whose inode is our /proc/self/ns/net). Not: the socket's protocol
// (src/bgp/status.ts).
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/** The status socket of a daemon in the host's own network namespace. */
export const HOST_STATUS_SOCKET = "/run/ocelot/bgpd.sock";
/** Per named network namespace: `<dir>/<netns>/bgpd.sock`. */
export const NETNS_STATUS_DIR = "/run/ocelot/netns";
const NETNS_DIR = "/run/netns";

function inode(path: string): string | undefined {
  try {
    const s = statSync(path);
    return `${s.dev}:${s.ino}`;
  } catch {
    return undefined;
  }
}

/**
 * The name under /run/netns of the network namespace this process runs in, or undefined when
 * it is unnamed (the host's own namespace, a container's) or cannot be told.
 */
export function currentNetnsName(): string | undefined {
  const self = inode("/proc/self/ns/net");
  if (self === undefined) return undefined;
  let names: string[];
  try {
    names = readdirSync(NETNS_DIR);
  } catch {
    return undefined;
  }
  return names.find((n) => inode(join(NETNS_DIR, n)) === self);
}

/** The well-known status socket of a daemon running in netns (the host's when undefined). */
export function statusSocketFor(netns: string | undefined): string {
  return netns === undefined ? HOST_STATUS_SOCKET : join(NETNS_STATUS_DIR, netns, "bgpd.sock");
}

/** The socket a daemon listens on by default: its own namespace's well-known path. */
export function defaultStatusSocket(): string {
  return statusSocketFor(currentNetnsName());
}

/**
 * The socket a client run here talks to by default: this namespace's daemon when one listens on
 * its well-known path, else the host's path (whose absence the client reports).
 */
export function findStatusSocket(): string {
  const own = defaultStatusSocket();
  return existsSync(own) ? own : HOST_STATUS_SOCKET;
}
