// The kernel work of `ocelot-cni`, done from the plugin's own process over rtnetlink (no `ip`
// or `nsenter` processes): links, addresses and routes read and changed in our network
// namespace or in the pod's (a socket opened inside CNI_NETNS), and the pod's sysctls (written
// with the thread inside it, native addon). Deleting a link (a veth: the kernel waits out an RCU
// grace period, 10-30 ms) can instead be sent by the addon's sender thread and its ACK awaited
// (deleteLinkQueued), so that a node daemon running the call keeps its event loop meanwhile.
// Owns: these steps and their error wording. Not:
// which steps ADD, DEL and CHECK take (plugin_main.ts), message layouts (fib/rtnetlink.ts).

import { NetlinkError, RtnlRequestSocket, writeSysctlsInNetns } from "../fib/netlink_request.js";
import { NetlinkSocket } from "../fib/netlink_socket.js";
import {
  decodeAddrDetail,
  decodeError,
  decodeLinkDetail,
  decodeRoute,
  forEachMessage,
  formatAddress,
  type KernelLinkDetail,
  MessageWriter,
  NETLINK_ROUTE,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLMSG_ERROR,
  RT_SCOPE_LINK,
  RT_SCOPE_UNIVERSE,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWROUTE,
  RTN_UNICAST,
  type VethEnd,
  writeAddrDump,
  writeDelLink,
  writeGetLink,
  writeGetLinkByIndex,
  writeNewAddr,
  writeNewVeth,
  writeRoute,
  writeRouteDump,
  writeSetLink,
} from "../fib/rtnetlink.js";
import { RT_TABLE_MAIN } from "../fib/types.js";
import { addressBytes } from "../lib/ip.js";
import { CniError, CniErrorCode } from "./ipam_plugin.js";

const ENODEV = 19;
/** A netlink answer takes microseconds; this bounds only a hang. */
const NETLINK_TIMEOUT_MS = 10_000;

/** A CniError (internal, code 102) naming the step, with the kernel's reason. */
function failed(what: string, err: unknown): CniError {
  return new CniError(CniErrorCode.Internal, `${what} failed: ${(err as Error).message}`);
}

/** rtnetlink in one network namespace: ours (`netns` undefined) or the one at a path. */
export class Rtnl {
  private readonly sock: RtnlRequestSocket;

  constructor(readonly netns?: string) {
    try {
      this.sock = new RtnlRequestSocket(netns ?? "", NETLINK_TIMEOUT_MS);
    } catch (err) {
      throw failed(`Opening rtnetlink${netns ? ` in ${netns}` : ""}`, err);
    }
  }

  close(): void {
    this.sock.close();
  }

  /** One request that answers with an ACK; a refusal throws a CniError naming `what`. */
  private ack(what: string, write: Parameters<RtnlRequestSocket["request"]>[0]): void {
    try {
      this.sock.request(write);
    } catch (err) {
      throw failed(what, err);
    }
  }

  /** The interface `name` (index, flags, MAC, kind), or undefined when there is none. */
  link(name: string): KernelLinkDetail | undefined {
    try {
      const msgs = this.sock.request((w, seq) => writeGetLink(w, seq, name));
      const m = msgs.find((x) => x.type === RTM_NEWLINK);
      return m ? decodeLinkDetail(m) : undefined;
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === ENODEV) return undefined;
      throw failed(`Reading interface ${name}`, err);
    }
  }

  /** The name of interface `ifindex`, or `if<index>` when it cannot be read. */
  linkName(ifindex: number): string {
    try {
      const msgs = this.sock.request((w, seq) => writeGetLinkByIndex(w, seq, ifindex));
      const m = msgs.find((x) => x.type === RTM_NEWLINK);
      return (m && decodeLinkDetail(m)?.name) || `if${ifindex}`;
    } catch {
      return `if${ifindex}`;
    }
  }

  /** The interface `name`, which must exist (just created). */
  requireLink(name: string): KernelLinkDetail {
    const l = this.link(name);
    if (!l) throw new CniError(CniErrorCode.Internal, `Interface ${name} is missing`);
    return l;
  }

  /** A veth pair: `end` here, `peer` in the namespace whose fd it names. */
  addVeth(end: VethEnd, peer: VethEnd, what: string): void {
    this.ack(what, (w, seq) => writeNewVeth(w, seq, end, peer));
  }

  setUp(link: KernelLinkDetail, what: string): void {
    this.ack(what, (w, seq) => writeSetLink(w, seq, link.ifindex, { up: true }));
  }

  /** Deletes an interface by index; throws a CniError naming `what`. */
  deleteLink(ifindex: number, what: string): void {
    this.ack(what, (w, seq) => writeDelLink(w, seq, ifindex));
  }

  /** `ip addr add ADDR/len dev IF` (with `nodad` for IPv6). */
  addAddress(ifindex: number, family: 4 | 6, address: string, prefixLen: number, what: string) {
    this.ack(what, (w, seq) =>
      writeNewAddr(w, seq, {
        family,
        ifindex,
        address: addressBytes(family, address),
        prefixLen,
        flags: family === 6 ? 0x02 /* IFA_F_NODAD */ : 0,
      }),
    );
  }

  /**
   * `ip route add DST/len [via GW] dev IF proto P scope S` in the main table, exclusive: an
   * existing route fails with "File exists".
   */
  addRoute(
    r: {
      family: 4 | 6;
      dst: string;
      dstLen: number;
      gateway?: string;
      ifindex: number;
      protocol: number;
      scope: "link" | "universe";
    },
    what: string,
  ): void {
    this.ack(what, (w, seq) =>
      writeRoute(w, RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq, {
        family: r.family,
        dst: addressBytes(r.family, r.dst),
        dstLen: r.dstLen,
        table: RT_TABLE_MAIN,
        protocol: r.protocol,
        type: RTN_UNICAST,
        scope: r.scope === "link" ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE,
        metric: 0,
        nexthops: [
          {
            ifindex: r.ifindex,
            onlink: false,
            weight: 1,
            ...(r.gateway !== undefined ? { gateway: addressBytes(r.family, r.gateway) } : {}),
          },
        ],
      }),
    );
  }

  /** Routes of the main table, as "dst/len" with their output interfaces' indexes. */
  mainRoutes(family: 4 | 6): Array<{ dst: string; oifs: number[] }> {
    let msgs: ReturnType<RtnlRequestSocket["request"]>;
    try {
      msgs = this.sock.request((w, seq) => writeRouteDump(w, seq, family, 0, RT_TABLE_MAIN));
    } catch (err) {
      throw failed(`Reading IPv${family} routes`, err);
    }
    const out: Array<{ dst: string; oifs: number[] }> = [];
    for (const m of msgs) {
      const r = m.type === RTM_NEWROUTE ? decodeRoute(m) : undefined;
      if (!r || r.table !== RT_TABLE_MAIN) continue;
      out.push({
        dst: `${formatAddress(r.dst)}/${r.dstLen}`,
        oifs: r.nexthops.map((nh) => nh.ifindex),
      });
    }
    return out;
  }

  /** Addresses on one interface: text, prefix length and scope (253 = link). */
  addresses(
    ifindex: number,
    family?: 4 | 6,
  ): Array<{ address: string; prefixLen: number; scope: number }> {
    let msgs: ReturnType<RtnlRequestSocket["request"]>;
    try {
      msgs = this.sock.request((w, seq) => writeAddrDump(w, seq, family, ifindex));
    } catch (err) {
      throw failed(`Reading the addresses of interface ${ifindex}`, err);
    }
    const out: Array<{ address: string; prefixLen: number; scope: number }> = [];
    for (const m of msgs) {
      const a = m.type === RTM_NEWADDR ? decodeAddrDetail(m) : undefined;
      if (!a || a.ifindex !== ifindex || !a.address) continue;
      out.push({ address: formatAddress(a.address), prefixLen: a.prefixLen, scope: a.scope });
    }
    return out;
  }
}

/**
 * Deletes interface `ifindex` in `netns` (undefined: ours) from the addon's sender thread (the
 * kernel's work runs inside sendmsg, there, beside the event loop) and resolves on the kernel's
 * ACK; a refusal rejects with a CniError naming `what`.
 */
export function deleteLinkQueued(
  netns: string | undefined,
  ifindex: number,
  what: string,
): Promise<void> {
  const SEQ = 1;
  return new Promise((resolve, reject) => {
    let sock: NetlinkSocket | undefined;
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock?.close();
      if (err) reject(failed(what, err));
      else resolve();
    };
    try {
      sock = new NetlinkSocket(
        NETLINK_ROUTE,
        0,
        1 << 16,
        {
          onData(buf) {
            forEachMessage(buf, (m) => {
              if (m.seq !== SEQ || m.type !== NLMSG_ERROR) return;
              const e = decodeError(m);
              finish(e.errno !== 0 ? new NetlinkError(e.errno, e.message) : undefined);
            });
          },
          onOverflow() {},
          onError: (err) => finish(err),
          onSendFailed: (_token, errno) => finish(new NetlinkError(errno, undefined)),
        },
        netns ?? "",
      );
      const w = new MessageWriter(64);
      writeDelLink(w, SEQ, ifindex);
      timer = setTimeout(
        () => finish(new Error(`no answer within ${NETLINK_TIMEOUT_MS} ms`)),
        NETLINK_TIMEOUT_MS,
      );
      sock.sendQueued(w.buf, 0, w.len, SEQ);
    } catch (err) {
      finish(err as Error);
    }
  });
}

/** Runs fn with an Rtnl in `netns` (undefined: ours), closed afterwards. */
export function withRtnl<T>(netns: string | undefined, fn: (nl: Rtnl) => T): T {
  const nl = new Rtnl(netns);
  try {
    return fn(nl);
  } finally {
    nl.close();
  }
}

/** Writes sysctls (dotted keys) inside the network namespace at `netns`; a CniError names one. */
export function podSysctls(netns: string, settings: Array<[string, string]>): void {
  try {
    writeSysctlsInNetns(netns, settings);
  } catch (err) {
    throw new CniError(
      CniErrorCode.Internal,
      `Setting ${settings.map(([k, v]) => `${k}=${v}`).join(", ")} in the pod failed: ${(err as Error).message}`,
    );
  }
}
