// ipset members added and deleted over netlink (NETLINK_NETFILTER, subsystem NFNL_SUBSYS_IPSET,
// the protocol the `ipset` tool speaks), from the agent's process: the incremental applier's way
// to change a set's members without a process start. One request per member, each acknowledged
// by the kernel, so every one is known applied or refused (the refusal names the set and the
// member). The semantics are `ipset restore -exist`'s: adding a member present or deleting one
// absent is no error (the request carries no NLM_F_EXCL). Only members of `hash:net` sets
// (a CIDR or an address) and of `hash:net,iface` sets (`CIDR,IFACE`: policy's dispatch by set) here; the full pass's whole restore text (creating, filling, swapping
// and destroying sets) is written by ipset_restore.ts through this socket. Also lists the sets'
// headers (`IPSET_CMD_LIST` with `IPSET_FLAG_LIST_HEADER`: name, type, family, no members), which
// the full pass reads before deciding whether it needs members at all.
// Owns: the message layout (<linux/netfilter/ipset/ip_set.h>), ip_set's error texts and the
// request socket's use. Not: what to add or delete (written.ts), the socket itself (the native
// addon).
import { isIPv4, isIPv6 } from "node:net";
import { errnoText } from "../fib/netlink_request.js";
import {
  decodeError,
  forEachMessage,
  MessageWriter,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  type NlMessage,
} from "../fib/rtnetlink.js";
import { addressBytes } from "../lib/ip.js";
import { loadAddon } from "../lib/native.js";

export const NETLINK_NETFILTER = 12;
export const NFNL_SUBSYS_IPSET = 6;
// Commands (enum ipset_cmd).
export const IPSET_CMD_CREATE = 2;
export const IPSET_CMD_DESTROY = 3;
export const IPSET_CMD_FLUSH = 4;
export const IPSET_CMD_SWAP = 6;
export const IPSET_CMD_LIST = 7;
export const IPSET_CMD_ADD = 9;
export const IPSET_CMD_DEL = 10;
export const IPSET_CMD_TYPE = 13;
/** The oldest protocol the kernel's ip_set accepts (IPSET_PROTOCOL_MIN); every command here is alike in it. */
export const IPSET_PROTOCOL = 6;
// Attributes at command level.
export const IPSET_ATTR_PROTOCOL = 1;
export const IPSET_ATTR_SETNAME = 2;
export const IPSET_ATTR_TYPENAME = 3;
/** The second set's name of a swap (the same number as the type's name). */
export const IPSET_ATTR_SETNAME2 = 3;
export const IPSET_ATTR_REVISION = 4;
export const IPSET_ATTR_FAMILY = 5;
export const IPSET_ATTR_FLAGS = 6;
export const IPSET_ATTR_DATA = 7;
/** Many IPSET_ATTR_DATA in one add/del request (restore's batches). */
export const IPSET_ATTR_ADT = 8;
/** The restore line of a request or of one of its members; the kernel answers a refused member with it. */
export const IPSET_ATTR_LINENO = 9;
export const IPSET_ATTR_REVISION_MIN = 10;
/** IPSET_FLAG_LIST_HEADER: each set's header, not its members. */
const IPSET_FLAG_LIST_HEADER = 1 << 2;
export const NFPROTO_IPV4 = 2;
export const NFPROTO_IPV6 = 10;
// Attributes inside IPSET_ATTR_DATA.
export const IPSET_ATTR_IP = 1;
export const IPSET_ATTR_CIDR = 3;
export const IPSET_ATTR_PORT = 4;
export const IPSET_ATTR_PROTO = 7;
/** A hash:net,iface member's interface name (NLA_NUL_STRING). */
export const IPSET_ATTR_IFACE = 23;
export const IPSET_ATTR_HASHSIZE = 18;
export const IPSET_ATTR_MAXELEM = 19;
export const IPSET_ATTR_IPADDR_IPV4 = 1;
export const IPSET_ATTR_IPADDR_IPV6 = 2;
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
const AF_INET = 2;
export const NFGENMSG_LEN = 4;
/** IPSET_MAXNAMELEN less its terminating NUL. */
export const MAX_SETNAME = 31;

/** One member change of a hash:net set. */
export interface IpsetMemberOp {
  op: "add" | "del";
  set: string;
  /**
   * A canonical CIDR ("10.0.0.0/8", "fd00::1/128") or an address; of a hash:net,iface set,
   * "CIDR,IFACE" (its prefix length may be 0: "0.0.0.0/0,ocl1234").
   */
  member: string;
}

/**
 * ip_set's refusals (ENOENT, and IPSET_ERR_* from 4096, the hash types' from 4352), in the words
 * the tool uses (its lib/errcode.c); some depend on the command.
 */
const IPSET_ERRORS: Record<number, string> = {
  2: "The set with the given name does not exist",
  4097: "Kernel error received: ipset protocol error",
  4098: "Kernel error received: set type not supported",
  4099: "Kernel error received: maximal number of sets reached, cannot create more",
  4100: "Set cannot be destroyed: it is in use by a kernel component",
  4101: "The second set does not exist",
  4102: "The sets cannot be swapped: their type does not match",
  4103: "Set cannot be created: set with the same name already exists",
  4104: "The value of the CIDR parameter of the IP address is invalid",
  4105: "The value of the netmask parameter is invalid",
  4106: "Protocol family not supported by the set type",
  4107: "Timeout cannot be used: set was created without timeout support",
  4108: "Set cannot be destroyed: it is in use by a kernel component",
  4109: "An IPv4 address is expected, but not received",
  4110: "An IPv6 address is expected, but not received",
  4352: "Hash is full, cannot add more elements",
  4353: "Null-valued element, cannot be stored in a hash type of set",
  4354: "Invalid protocol specified",
  4355: "Protocol missing, but must be specified",
  4356: 'Range is not supported in the "net" component of the element',
  4357: "Invalid range, covers the whole address space",
};
const IPSET_ERR_EXIST = 4103;
const EEXIST = 17;

/**
 * Starts an ipset request of command cmd (IPSET_CMD_*): the header, struct nfgenmsg (the tool
 * sends AF_INET whatever the set's family; version 0; res_id 0) and IPSET_ATTR_PROTOCOL.
 * Returns the message's offset (for MessageWriter.finish).
 */
export function beginIpsetMessage(
  w: MessageWriter,
  cmd: number,
  flags: number,
  seq: number,
): number {
  const at = w.begin((NFNL_SUBSYS_IPSET << 8) | cmd, flags, seq);
  w.reserve(NFGENMSG_LEN);
  w.buf.writeUInt32LE(0, w.len);
  w.buf[w.len] = AF_INET;
  w.len += NFGENMSG_LEN;
  w.attrBytes(IPSET_ATTR_PROTOCOL, Uint8Array.of(IPSET_PROTOCOL));
  return at;
}

/** Whether a hash:net,iface member's interface name is one the kernel takes (1..15, no blanks). */
export function isMemberIface(iface: string): boolean {
  return iface.length > 0 && iface.length <= 15 && !/[\s/,]/.test(iface);
}

/** A hash:net,iface member's IPSET_ATTR_IFACE (NUL-terminated). */
export function attrIface(w: MessageWriter, iface: string): void {
  w.attrBytes(IPSET_ATTR_IFACE, Buffer.from(`${iface}\0`));
}

/** Appends one ADD or DEL request for op (acknowledged). */
export function writeIpsetOp(w: MessageWriter, seq: number, o: IpsetMemberOp): void {
  if (o.set.length === 0 || o.set.length > MAX_SETNAME)
    throw new Error(`ipset name "${o.set}" is not 1..${MAX_SETNAME} characters`);
  const comma = o.member.indexOf(",");
  const net = comma < 0 ? o.member : o.member.slice(0, comma);
  const iface = comma < 0 ? undefined : o.member.slice(comma + 1);
  if (iface !== undefined && !isMemberIface(iface))
    throw new Error(`ipset member "${o.member}": the interface name is not 1..15 characters`);
  const slash = net.indexOf("/");
  const addr = slash < 0 ? net : net.slice(0, slash);
  const v4 = isIPv4(addr);
  if (!v4 && !isIPv6(addr)) throw new Error(`ipset member "${o.member}" is not a CIDR`);
  const max = v4 ? 32 : 128;
  const min = iface === undefined ? 1 : 0;
  const cidr = slash < 0 ? max : Number(net.slice(slash + 1));
  if (!Number.isInteger(cidr) || cidr < min || cidr > max)
    throw new Error(`ipset member "${o.member}": prefix length is not ${min}..${max}`);
  const at = beginIpsetMessage(
    w,
    o.op === "add" ? IPSET_CMD_ADD : IPSET_CMD_DEL,
    NLM_F_REQUEST | NLM_F_ACK,
    seq,
  );
  w.attrBytes(IPSET_ATTR_SETNAME, Buffer.from(`${o.set}\0`));
  const data = w.beginNest(IPSET_ATTR_DATA | NLA_F_NESTED);
  const ip = w.beginNest(IPSET_ATTR_IP | NLA_F_NESTED);
  w.attrBytes(
    (v4 ? IPSET_ATTR_IPADDR_IPV4 : IPSET_ATTR_IPADDR_IPV6) | NLA_F_NET_BYTEORDER,
    addressBytes(v4 ? 4 : 6, addr),
  );
  w.endNest(ip);
  w.attrBytes(IPSET_ATTR_CIDR, Uint8Array.of(cidr));
  if (iface !== undefined) attrIface(w, iface);
  w.endNest(data);
  w.finish(at);
}

/** One set as a header-only list names it (the fields of `ipset save`'s `create` line we read). */
export interface IpsetHeader {
  name: string;
  /** "hash:net", … */
  type: string;
  /** "inet", "inet6" (`ipset save`'s words), or the protocol family's number. */
  family: string;
}

/** Appends a dump request of every set's header (`ipset list -t`, over netlink). */
export function writeIpsetListHeaders(w: MessageWriter, seq: number): void {
  const at = beginIpsetMessage(w, IPSET_CMD_LIST, NLM_F_REQUEST | NLM_F_DUMP, seq);
  const flags = Buffer.alloc(4);
  flags.writeUInt32BE(IPSET_FLAG_LIST_HEADER);
  w.attrBytes(IPSET_ATTR_FLAGS | NLA_F_NET_BYTEORDER, flags);
  w.finish(at);
}

/** The set header one list answer carries (undefined: not a list message, or no name). */
export function decodeIpsetHeader(m: NlMessage): IpsetHeader | undefined {
  if (m.type !== ((NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_LIST)) return undefined;
  const b = m.buf;
  const str = (o: number, l: number) => b.toString("utf8", o + 4, o + l).replace(/\0.*$/s, "");
  let name: string | undefined;
  let type = "";
  let family = "";
  let o = m.off + NFGENMSG_LEN;
  while (o + 4 <= m.end) {
    const l = b.readUInt16LE(o);
    if (l < 4 || o + l > m.end) break;
    const t = b.readUInt16LE(o + 2) & 0x3fff;
    if (t === IPSET_ATTR_SETNAME) name = str(o, l);
    else if (t === IPSET_ATTR_TYPENAME) type = str(o, l);
    else if (t === IPSET_ATTR_FAMILY && l >= 5) {
      const f = b[o + 4] as number;
      family = f === NFPROTO_IPV4 ? "inet" : f === NFPROTO_IPV6 ? "inet6" : String(f);
    }
    o += (l + 3) & ~3;
  }
  return name === undefined ? undefined : { name, type, family };
}

/** The text of a refusal of a command (IPSET_CMD_*): ip_set's own codes as the tool says them, else the errno's. */
export function ipsetErrorText(errno: number, cmd?: number): string {
  if (errno === IPSET_ERR_EXIST && cmd === IPSET_CMD_ADD)
    return "Element cannot be added to the set: it's already added";
  if (errno === IPSET_ERR_EXIST && cmd === IPSET_CMD_DEL)
    return "Element cannot be deleted from the set: it's not added";
  if (errno === EEXIST && cmd === IPSET_CMD_CREATE)
    return "Set cannot be created: set with the same name already exists";
  return IPSET_ERRORS[errno] ?? errnoText(errno);
}

/**
 * A blocking NETLINK_NETFILTER socket in a network namespace (its path; "" for ours): member
 * changes, each acknowledged. Close it when done.
 */
export class IpsetSocket {
  private fd: number;
  private seq = 1;
  private readonly w = new MessageWriter(512);

  constructor(netnsPath = "", timeoutMs = 10_000) {
    this.fd = loadAddon().requestOpen(NETLINK_NETFILTER, netnsPath, timeoutMs);
  }

  /** Applies ops in order; the first the kernel refuses throws, naming it (the rest not sent). */
  apply(ops: readonly IpsetMemberOp[]): void {
    const addon = loadAddon();
    for (const o of ops) {
      if (this.fd < 0) throw new Error("ipset netlink socket is closed");
      const seq = this.seq++;
      this.w.reset();
      writeIpsetOp(this.w, seq, o);
      const answer = addon.request(this.fd, this.w.buf.subarray(0, this.w.len));
      let errno = 0;
      forEachMessage(answer, (m) => {
        if (m.seq === seq && m.type === NLMSG_ERROR) errno = decodeError(m).errno;
      });
      if (errno !== 0)
        throw new Error(
          `ipset ${o.op} ${o.set} ${o.member} refused: ${ipsetErrorText(errno, o.op === "add" ? IPSET_CMD_ADD : IPSET_CMD_DEL)}`,
        );
    }
  }

  /** Every set's header (name, type, family), no members: one dump. */
  headers(): IpsetHeader[] {
    const out = new Map<string, IpsetHeader>();
    for (const m of this.dump(writeIpsetListHeaders, "Listing ipsets")) {
      const h = decodeIpsetHeader(m);
      // A set's header may come in more than one message (a large header): named once.
      if (h && !out.has(h.name)) out.set(h.name, h);
    }
    return [...out.values()];
  }

  /**
   * Sends the one dump request `write` appends (any NETLINK_NETFILTER subsystem: nf_tables'
   * too) and returns its answer's messages; a refusal throws, starting with `what`.
   */
  dump(write: (w: MessageWriter, seq: number) => void, what: string): NlMessage[] {
    if (this.fd < 0) throw new Error("ipset netlink socket is closed");
    const seq = this.seq++;
    this.w.reset();
    write(this.w, seq);
    const answer = loadAddon().request(this.fd, this.w.buf.subarray(0, this.w.len));
    const out: NlMessage[] = [];
    let errno = 0;
    forEachMessage(answer, (m) => {
      if (m.seq !== seq || m.type === NLMSG_DONE) return;
      if (m.type === NLMSG_ERROR) errno = decodeError(m).errno;
      else out.push({ ...m });
    });
    if (errno !== 0) throw new Error(`${what} refused: ${ipsetErrorText(errno)}`);
    return out;
  }

  /** A sequence number of its own for the next request. */
  nextSeq(): number {
    return this.seq++;
  }

  /**
   * Sends the messages in buf at once (one sendmsg; the kernel does their work inside it) and
   * returns what was received until the answer (error or ACK) of the first one's sequence
   * number: give them all one number and NLM_F_ACK on the last.
   */
  send(buf: Buffer): Buffer {
    if (this.fd < 0) throw new Error("ipset netlink socket is closed");
    return loadAddon().request(this.fd, buf);
  }

  close(): void {
    if (this.fd < 0) return;
    loadAddon().requestClose(this.fd);
    this.fd = -1;
  }
}
