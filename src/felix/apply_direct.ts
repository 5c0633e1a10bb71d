// The incremental applier's direct access to the kernel of one network namespace, without a
// process start: a workload interface read by name over rtnetlink (`ip -j link show dev`), its
// sysctls written to /proc/sys (in another namespace by a thread that enters it: `ip netns exec
// … sysctl -w`), ipset members added and deleted over netlink (`ipset restore` of add/del lines,
// ipset_netlink.ts). Each is a blocking request on a socket opened on first use in the pass and
// closed at its end. Owns: those sockets for one pass. Not: deciding what to write (written.ts),
// the tools' path (apply.ts), message layouts (fib/rtnetlink.ts, ipset_netlink.ts).
import { writeFile } from "node:fs/promises";
import { NetlinkError, RtnlRequestSocket, writeSysctlsInNetns } from "../fib/netlink_request.js";
import { decodeLinkDetail, RTM_NEWLINK, writeGetLink } from "../fib/rtnetlink.js";
import { type IpsetMemberOp, IpsetSocket } from "./ipset_netlink.js";
import type { Sysctl } from "./workload.js";

const ENODEV = 19;

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

export class DirectKernel {
  private rtnl: RtnlRequestSocket | undefined;
  private ipset: IpsetSocket | undefined;
  private readonly path: string;

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
      if (!l) return undefined;
      return {
        ifname: l.name,
        ...(l.mac !== undefined ? { address: l.mac } : {}),
        flags: l.up ? ["UP"] : [],
      };
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === ENODEV) return undefined;
      throw new Error(`Reading interface ${name} over netlink: ${(err as Error).message}`);
    }
  }

  /** Writes the sysctls; the first refused throws, naming its key. */
  async writeSysctls(list: Sysctl[]): Promise<void> {
    if (list.length === 0) return;
    if (this.path === "") {
      for (const s of list) await writeFile(`/proc/sys/${s.key.replace(/\./g, "/")}`, s.value);
      return;
    }
    try {
      writeSysctlsInNetns(
        this.path,
        list.map((s) => [s.key, s.value]),
      );
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

  close(): void {
    this.rtnl?.close();
    this.ipset?.close();
    this.rtnl = this.ipset = undefined;
  }
}
