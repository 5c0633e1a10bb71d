// The applier's direct access to the kernel of one network namespace, without a process start:
// interfaces read over rtnetlink (`ip -j link show [dev]`), their sysctls written: the
// per-interface IPv4 ones of an interface read in this pass over rtnetlink, many interfaces a
// send (sysctl_netlink.ts), the rest to /proc/sys (in another namespace by a thread that enters
// it: `ip netns exec … sysctl -w`), ipset members added and deleted over netlink (`ipset restore` of add/del lines,
// ipset_netlink.ts; the incremental path's), the full pass's whole `ipset restore` text written
// over netlink (ipset_restore.ts), and the sets' headers and nf_tables' tables listed
// (the full pass's). Each is a blocking request on a socket opened on
// first use in the pass and closed at its end. Owns: those sockets for one pass. Not: deciding what to write (written.ts),
// the tools' path (apply.ts), message layouts (fib/rtnetlink.ts, ipset_netlink.ts).
import { writeFile } from "node:fs/promises";
import { NetlinkError, RtnlRequestSocket, writeSysctlsInNetns } from "../fib/netlink_request.js";
import {
  decodeLinkDetail,
  type KernelLinkDetail,
  RTM_NEWLINK,
  writeGetLink,
  writeLinkDump,
} from "../fib/rtnetlink.js";
import { type IpsetHeader, type IpsetMemberOp, IpsetSocket } from "./ipset_netlink.js";
import { type IpsetRestoreResult, restoreIpsetsOverNetlink } from "./ipset_restore.js";
import { nftTableName, writeNftTableDump } from "./iptables_session.js";
import { type SysctlMessage, splitSysctls, sysctlMessages } from "./sysctl_netlink.js";
import type { Sysctl } from "./workload.js";

const ENODEV = 19;
const SYSCTLS_PER_CALL = 64;
/** Sysctl messages a netlink send (~80 bytes each: far below the socket's send buffer). */
const SYSCTL_MESSAGES_PER_SEND = 256;

/** An interface as the applier needs it (the fields of `ip -j link show` it reads). */
export interface DirectLink {
  ifname: string;
  address?: string;
  flags: string[];
}

/** The namespace file of a namespace given by name (under /run/netns) or path; "" for ours. */
export function netnsPath(netns: string | undefined): string {
  if (!netns) return "";
  return netns.includes("/") ? netns : `/run/netns/${netns}`;
}

const linkOf = (l: KernelLinkDetail): DirectLink => ({
  ifname: l.name,
  ...(l.mac !== undefined ? { address: l.mac } : {}),
  flags: l.up ? ["UP"] : [],
});

export class DirectKernel {
  private rtnl: RtnlRequestSocket | undefined;
  private ipset: IpsetSocket | undefined;
  private readonly path: string;
  /** The index of each interface read in this pass (its sysctls may go over netlink). */
  private readonly indexes = new Map<string, number>();

  constructor(netns: string | undefined) {
    this.path = netnsPath(netns);
  }

  /** The interface `name`, or undefined when there is none. */
  link(name: string): DirectLink | undefined {
    this.rtnl ??= new RtnlRequestSocket(this.path);
    try {
      const m = this.rtnl
        .request((w, seq) => writeGetLink(w, seq, name))
        .find((x) => x.type === RTM_NEWLINK);
      const l = m && decodeLinkDetail(m);
      if (l) this.indexes.set(l.name, l.ifindex);
      return l ? linkOf(l) : undefined;
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === ENODEV) {
        this.indexes.delete(name);
        return undefined;
      }
      throw new Error(`Reading interface ${name} over netlink: ${(err as Error).message}`);
    }
  }

  /** Every interface by name (`ip -j link show`). */
  links(): Map<string, DirectLink> {
    this.rtnl ??= new RtnlRequestSocket(this.path);
    const out = new Map<string, DirectLink>();
    for (const m of this.rtnl.request((w, seq) => writeLinkDump(w, seq))) {
      if (m.type !== RTM_NEWLINK) continue;
      const l = decodeLinkDetail(m);
      if (!l) continue;
      out.set(l.name, linkOf(l));
      this.indexes.set(l.name, l.ifindex);
    }
    return out;
  }

  /**
   * Writes the sysctls; the first refused throws, naming its key. The node-wide ones and those
   * netlink cannot set are written as files first (net.ipv4.ip_forward before the interfaces'
   * forwarding), then the interfaces' IPv4 ones over rtnetlink.
   */
  async writeSysctls(list: Sysctl[]): Promise<void> {
    if (list.length === 0) return;
    const split = splitSysctls(list, (n) => this.indexes.has(n));
    await this.writeSysctlFiles(split.files);
    const messages = sysctlMessages(split, (n) => this.indexes.get(n) as number);
    for (let i = 0; i < messages.length; i += SYSCTL_MESSAGES_PER_SEND) {
      // Each send blocks this thread for the kernel's work: the event loop runs between them.
      if (i > 0) await new Promise((r) => setImmediate(r));
      this.sendSysctls(messages.slice(i, i + SYSCTL_MESSAGES_PER_SEND));
    }
  }

  /**
   * One send of many messages, one acknowledgement (the last's; a refused one is answered
   * anyway, and the kernel goes on with the next). When refused, each is sent again on its own
   * to name the one refused.
   */
  private sendSysctls(batch: SysctlMessage[]): void {
    this.rtnl ??= new RtnlRequestSocket(this.path);
    const rtnl = this.rtnl;
    try {
      rtnl.request((w, seq) => {
        for (const [k, m] of batch.entries()) m.write(w, seq, k === batch.length - 1);
      });
      return;
    } catch (err) {
      if (!(err instanceof NetlinkError)) throw err;
    }
    for (const m of batch) {
      try {
        rtnl.request((w, seq) => m.write(w, seq, true));
      } catch (err) {
        throw new Error(
          `Writing sysctls ${m.keys.join(", ")}${this.path ? ` in ${this.path}` : ""} over netlink: ${(err as Error).message}`,
        );
      }
    }
  }

  private async writeSysctlFiles(list: Sysctl[]): Promise<void> {
    if (list.length === 0) return;
    if (this.path === "") {
      for (const s of list) await writeFile(`/proc/sys/${s.key.replace(/\./g, "/")}`, s.value);
      return;
    }
    try {
      // The addon takes at most SYSCTLS_PER_CALL files a call; each call blocks this thread
      // (the kernel's work for each file), so the event loop runs between calls: a full pass
      // writing thousands goes on beside its iptables and ipset processes, not before them.
      for (let i = 0; i < list.length; i += SYSCTLS_PER_CALL) {
        if (i > 0) await new Promise((r) => setImmediate(r));
        writeSysctlsInNetns(
          this.path,
          list.slice(i, i + SYSCTLS_PER_CALL).map((s) => [s.key, s.value]),
        );
      }
    } catch (err) {
      throw new Error(`Writing sysctls in ${this.path}: ${(err as Error).message}`);
    }
  }

  /** Adds and deletes ipset members in order; the first refused throws, naming it. */
  ipsetMembers(ops: readonly IpsetMemberOp[]): void {
    if (ops.length === 0) return;
    this.ipset ??= new IpsetSocket(this.path);
    this.ipset.apply(ops);
  }

  /**
   * Writes `ipset restore -exist` text over netlink (the full pass's sets); text it does not
   * cover is not written (the result says why: the caller runs the tool).
   */
  ipsetRestore(text: string): Promise<IpsetRestoreResult> {
    this.ipset ??= new IpsetSocket(this.path);
    return restoreIpsetsOverNetlink(this.ipset, text);
  }

  /** The nf_tables tables of a family (ip, ip6: iptables-nft's), listed over netlink. */
  nftTables(family: 4 | 6): string[] {
    this.ipset ??= new IpsetSocket(this.path);
    return this.ipset
      .dump((w, seq) => writeNftTableDump(w, seq, family), "Listing nf_tables tables")
      .flatMap((m) => nftTableName(m) ?? []);
  }

  /** Every ipset's name, type and family (no members), listed over netlink. */
  ipsetHeaders(): IpsetHeader[] {
    this.ipset ??= new IpsetSocket(this.path);
    return this.ipset.headers();
  }

  close(): void {
    this.rtnl?.close();
    this.ipset?.close();
    this.rtnl = this.ipset = undefined;
  }
}
