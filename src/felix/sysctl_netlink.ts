// Per-interface IPv4 sysctls written over rtnetlink instead of one /proc/sys file each: an
// interface's `net.ipv4.conf.<if>.<name>` values as one RTM_SETLINK with IFLA_AF_SPEC → AF_INET
// → IFLA_INET_CONF (the kernel's inet_set_link_af sets each IPV4_DEVCONF_* index, and marks it
// set, as a /proc/sys write does); many interfaces go in one send (one message each, one
// acknowledgement for the batch). What netlink cannot set, or where it would differ from the
// file write or cost more, stays a file write: node-wide keys, IPv6 (IFLA_INET6_CONF is not
// settable), names not in the table below, route_localnet set to 0 (the file write also flushes
// the route cache then), and net.ipv4.neigh.<if>.proxy_delay (RTM_SETNEIGHTBL finds the
// interface's parameters by walking a list of every interface's: measured slower than the file
// at 1,000 interfaces). Owns: which sysctls go over netlink and their message layout
// (<linux/ip.h>). Not: the socket (DirectKernel, apply_direct.ts), what to write (workload.ts,
// written.ts).
import { type MessageWriter, NLM_F_ACK, NLM_F_REQUEST } from "../fib/rtnetlink.js";
import type { Sysctl } from "./workload.js";

const RTM_SETLINK = 19;
const AF_INET = 2;
const IFLA_AF_SPEC = 26;
const IFLA_INET_CONF = 1;
const NLA_F_NESTED = 0x8000;

/**
 * The IPV4_DEVCONF_* index (<linux/ip.h>) of each per-interface IPv4 sysctl sent over netlink:
 * only those whose /proc/sys write does nothing more than set the value (and announce it), so
 * the netlink write is the same. (forwarding: the file write of 1 also turns LRO off on the
 * device; the agent writes net.ipv4.ip_forward=1 first, which sets every device's forwarding and
 * turns LRO off on each, and a device created later inherits it with LRO off: the per-device
 * value is then already 1.)
 */
export const IPV4_DEVCONF: Readonly<Record<string, number>> = {
  forwarding: 1,
  proxy_arp: 3,
  rp_filter: 8,
  route_localnet: 26,
};

/** The per-interface sysctls as messages, and what stays a file write. */
export interface SysctlSplit {
  /** Per interface name: its IPV4_DEVCONF_* values, in the order given. */
  inetConf: Map<string, Array<[index: number, value: number]>>;
  /** Written as files (in the order given). */
  files: Sysctl[];
}

const U32 = /^(0|[1-9][0-9]{0,9})$/;

/**
 * Sorts `list` into netlink writes and file writes; `known(ifname)` says whether the interface's
 * index is known (an unknown one's sysctls stay file writes, which fail naming the key when it is
 * missing). Later values of a key win, as they would written in order.
 */
export function splitSysctls(
  list: readonly Sysctl[],
  known: (ifname: string) => boolean,
): SysctlSplit {
  const out: SysctlSplit = { inetConf: new Map(), files: [] };
  for (const s of list) {
    // net.ipv4.conf.<if>.<name> (interface names hold no dots here: one field).
    const [net, ipv4, kind, ifname = "", name = "", ...more] = s.key.split(".");
    const perIface =
      net === "net" &&
      ipv4 === "ipv4" &&
      more.length === 0 &&
      ifname !== "all" &&
      ifname !== "default";
    const index = kind === "conf" ? IPV4_DEVCONF[name] : undefined;
    const value = s.value.trim();
    const num = U32.test(value) && Number(value) <= 0xffffffff ? Number(value) : undefined;
    const conf = out.inetConf.get(ifname) ?? [];
    const at = index === undefined ? -1 : conf.findIndex(([i]) => i === index);
    // A key given twice: its earlier value dropped (the later wins, as written in order).
    if (perIface && at >= 0) conf.splice(at, 1);
    const clears = name === "route_localnet" && num === 0;
    if (perIface && index !== undefined && num !== undefined && !clears && known(ifname)) {
      conf.push([index, num]);
      out.inetConf.set(ifname, conf);
      continue;
    }
    if (conf.length === 0) out.inetConf.delete(ifname);
    out.files.push(s);
  }
  return out;
}

/** struct ifinfomsg for RTM_SETLINK: AF_UNSPEC, the interface, no flag changes. */
function ifinfomsg(w: MessageWriter, ifindex: number): void {
  w.reserve(16);
  w.buf.fill(0, w.len, w.len + 16);
  w.buf.writeInt32LE(ifindex, w.len + 4);
  w.len += 16;
}

/**
 * Appends RTM_SETLINK of `ifindex`'s IPv4 devconf values (`ip link set` has no words for it);
 * `ack`: NLM_F_ACK (the last message of a batch; a refused one is answered without it too).
 */
export function writeSetInetConf(
  w: MessageWriter,
  seq: number,
  ifindex: number,
  conf: ReadonlyArray<readonly [number, number]>,
  ack: boolean,
): void {
  const at = w.begin(RTM_SETLINK, NLM_F_REQUEST | (ack ? NLM_F_ACK : 0), seq);
  ifinfomsg(w, ifindex);
  const spec = w.beginNest(IFLA_AF_SPEC | NLA_F_NESTED);
  const inet = w.beginNest(AF_INET | NLA_F_NESTED);
  const cnf = w.beginNest(IFLA_INET_CONF | NLA_F_NESTED);
  for (const [index, value] of conf) w.attrU32(index, value);
  w.endNest(cnf);
  w.endNest(inet);
  w.endNest(spec);
  w.finish(at);
}

/** One message of a batch: what it sets (for an error naming it) and how it is written. */
export interface SysctlMessage {
  /** The sysctl keys it sets. */
  keys: string[];
  write: (w: MessageWriter, seq: number, ack: boolean) => void;
}

/** The messages for a split's netlink part, given each interface's index. */
export function sysctlMessages(
  split: SysctlSplit,
  index: (ifname: string) => number,
): SysctlMessage[] {
  const out: SysctlMessage[] = [];
  const nameOf = new Map(Object.entries(IPV4_DEVCONF).map(([k, v]) => [v, k]));
  for (const [ifname, conf] of split.inetConf) {
    const i = index(ifname);
    out.push({
      keys: conf.map(([c]) => `net.ipv4.conf.${ifname}.${nameOf.get(c)}`),
      write: (w, seq, ack) => writeSetInetConf(w, seq, i, conf, ack),
    });
  }
  return out;
}
