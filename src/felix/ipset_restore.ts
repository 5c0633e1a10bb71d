// The full pass's `ipset restore -exist` text written over netlink from the agent's process
// (NFNL_SUBSYS_IPSET, as the tool speaks it) instead of by a spawned `ipset restore`: the lines
// `create NAME TYPE [family F] [hashsize N] [maxelem N]`, `flush`, `swap`, `destroy` and members'
// `add`/`del` of `hash:net` (an address or CIDR), `hash:net,iface` (`CIDR,IFACE`) and `hash:ip,port` (`ADDR,PORT`,
// `ADDR,tcp|udp|sctp|udplite:PORT`) sets created earlier in the text. Anything else (another set
// type or option, an address range, a port by name, a host name) is not covered: nothing is
// written and the caller runs the tool. The text is read in one pass, the members encoded
// straight from it, and every message is encoded before the first is sent, so a member that
// cannot be written (of the other family, a prefix out of range) is refused naming its line,
// set and member, with nothing applied. Then, in order: each set command is its own acknowledged
// request (the tool stops at a refused one; so does this), and a set's members go as the tool's
// restore sends them, many `IPSET_ATTR_DATA` in one `IPSET_ATTR_ADT` a message, each carrying
// its line (`IPSET_ATTR_LINENO`: the kernel names the line of a refused member), many messages
// a send, one set a send, the first refused send ending the restore (the members of that set
// after the refused one in the same send may be added: the kernel goes on with the send's next
// message). A refusal names the line, its text and the kernel's reason in the tool's words.
// `create` asks the kernel the type's revisions first (IPSET_CMD_TYPE, once per type and family).
// Owns: that text's reading, its messages and their sends. Not: the text (iptables.ts
// planIpsets), the socket and the message basics (ipset_netlink.ts), when to use it (apply.ts).
import {
  decodeError,
  forEachMessage,
  MessageWriter,
  NLM_F_ACK,
  NLM_F_REQUEST,
  NLMSG_ERROR,
  type NlMessage,
} from "../fib/rtnetlink.js";
import { parseIPv6 } from "../lib/ip.js";
import {
  attrIface,
  beginIpsetMessage,
  IPSET_ATTR_ADT,
  IPSET_ATTR_CIDR,
  IPSET_ATTR_DATA,
  IPSET_ATTR_FAMILY,
  IPSET_ATTR_HASHSIZE,
  IPSET_ATTR_IP,
  IPSET_ATTR_IPADDR_IPV4,
  IPSET_ATTR_IPADDR_IPV6,
  IPSET_ATTR_LINENO,
  IPSET_ATTR_MAXELEM,
  IPSET_ATTR_PORT,
  IPSET_ATTR_PROTO,
  IPSET_ATTR_REVISION,
  IPSET_ATTR_REVISION_MIN,
  IPSET_ATTR_SETNAME,
  IPSET_ATTR_SETNAME2,
  IPSET_ATTR_TYPENAME,
  IPSET_CMD_ADD,
  IPSET_CMD_CREATE,
  IPSET_CMD_DEL,
  IPSET_CMD_DESTROY,
  IPSET_CMD_FLUSH,
  IPSET_CMD_SWAP,
  IPSET_CMD_TYPE,
  type IpsetSocket,
  ipsetErrorText,
  isMemberIface,
  MAX_SETNAME,
  NFGENMSG_LEN,
  NFNL_SUBSYS_IPSET,
  NFPROTO_IPV4,
  NFPROTO_IPV6,
  NLA_F_NESTED,
  NLA_F_NET_BYTEORDER,
} from "./ipset_netlink.js";

export type IpsetRestoreType = "hash:net" | "hash:ip,port" | "hash:net,iface";

/**
 * The newest revision of each type whose create and members this writer knows (the kernel's
 * answer is capped here: a later revision may change what a create without options means).
 * ipset 7.17 on kernel 6.18 creates the first two at revision 7, hash:net,iface at 8 (each
 * type's bucketsize and initval revision).
 */
const NEWEST_REVISION: Record<IpsetRestoreType, number> = {
  "hash:net": 7,
  "hash:ip,port": 7,
  "hash:net,iface": 8,
};

/** The protocols of a `hash:ip,port` member (`ADDR,PROTO:PORT`) by name; none: tcp. */
const PORT_PROTOCOLS: Record<string, number> = { tcp: 6, udp: 17, sctp: 132, udplite: 136 };

const CMD_NUMBER: Record<string, number> = {
  create: IPSET_CMD_CREATE,
  destroy: IPSET_CMD_DESTROY,
  flush: IPSET_CMD_FLUSH,
  swap: IPSET_CMD_SWAP,
  add: IPSET_CMD_ADD,
  del: IPSET_CMD_DEL,
};

const U32_TEXT = /^(?:0|[1-9]\d{0,9})$/;

interface SetKind {
  type: IpsetRestoreType;
  v4: boolean;
}

/** Appends one member's IPSET_ATTR_DATA from text[from, to) (see writeMember). */
function writeMemberAt(
  w: MessageWriter,
  kind: SetKind,
  text: string,
  from: number,
  to: number,
  line: number,
): void {
  const family = kind.v4 ? "inet" : "inet6";
  let comma = -1;
  let addrEnd = to;
  // hash:net,iface: "CIDR,IFACE", the CIDR as hash:net's.
  let netEnd = to;
  if (kind.type === "hash:net,iface") {
    comma = text.indexOf(",", from);
    if (comma < 0 || comma >= to) throw new Uncovered("no interface (CIDR,IFACE)");
    netEnd = comma;
    addrEnd = comma;
  }
  if (kind.type === "hash:ip,port") {
    comma = text.indexOf(",", from);
    if (comma < 0 || comma >= to) throw new Uncovered("no port (ADDR,PROTO:PORT)");
    addrEnd = comma;
  } else {
    const slash = text.indexOf("/", from);
    if (slash >= 0 && slash < netEnd) addrEnd = slash;
  }
  const v4 = ipv4At(text, from, addrEnd);
  const v6 = v4 < 0 ? ipv6Of(text.slice(from, addrEnd)) : undefined;
  if (v4 < 0 && !v6) throw new Uncovered(`"${text.slice(from, addrEnd)}" is not an IP address`);
  if (v4 >= 0 !== kind.v4)
    throw new Error(`${v4 >= 0 ? "an IPv4" : "an IPv6"} address in a set of family ${family}`);
  const data = w.beginNest(IPSET_ATTR_DATA | NLA_F_NESTED);
  attrIp(w, v4, v6);
  if (kind.type === "hash:net" || kind.type === "hash:net,iface") {
    const max = kind.v4 ? 32 : 128;
    const min = kind.type === "hash:net" ? 1 : 0;
    let cidr = max;
    if (addrEnd < netEnd) {
      cidr = numberAt(text, addrEnd + 1, netEnd, max);
      if (cidr < min) throw new Error(`the prefix length is not ${min}..${max}`);
    }
    attrU8(w, IPSET_ATTR_CIDR, cidr);
    if (kind.type === "hash:net,iface") {
      const iface = text.slice(comma + 1, to);
      if (!isMemberIface(iface))
        throw new Error(`the interface name "${iface}" is not 1..15 characters`);
      attrIface(w, iface);
    }
  } else {
    // After the comma: "PORT" (tcp) or "PROTO:PORT" (an IPv6 address's colons are before it).
    let colon = text.indexOf(":", comma + 1);
    if (colon >= to) colon = -1;
    let proto = PORT_PROTOCOLS.tcp as number;
    if (colon >= 0) {
      const name = text.slice(comma + 1, colon);
      const p = Object.hasOwn(PORT_PROTOCOLS, name) ? PORT_PROTOCOLS[name] : undefined;
      if (p === undefined) throw new Uncovered(`protocol ${name}`);
      proto = p;
    }
    const portFrom = colon >= 0 ? colon + 1 : comma + 1;
    const port = numberAt(text, portFrom, to, 65535);
    if (port < 0)
      throw new Uncovered(`port "${text.slice(portFrom, to)}" is not a number 0..65535`);
    attrNet(w, IPSET_ATTR_PORT, port, 2);
    attrU8(w, IPSET_ATTR_PROTO, proto);
  }
  w.attrU32(IPSET_ATTR_LINENO, line);
  w.endNest(data);
}

/**
 * One send: a set command alone, or members of one set in one or more messages. All its
 * messages carry seq; the last asks for the ACK.
 */
export interface IpsetSend {
  start: number;
  end: number;
  seq: number;
  /** The set command's line, or the first and last lines of the members it holds. */
  lines: [number, number];
  /** The set it names first. */
  set: string;
  /** IPSET_CMD_* of a set command; undefined for members. */
  cmd?: number;
}

/** The restore's messages, encoded: the buffer and its sends in order. */
export interface EncodedIpsetRestore {
  buf: Buffer;
  sends: IpsetSend[];
  messages: number;
  members: number;
}

/** A member message's data, at most (the ADT attribute's length is 16 bits). */
const ADT_BYTES = 32 * 1024;
/** One send's bytes, at most (below the socket's default send buffer, 208 KiB). */
const SEND_BYTES = 128 * 1024;

/** Line `line` (from 1) of text, without its newline. */
export function lineOf(text: string, line: number): string {
  let pos = 0;
  for (let i = 1; i < line && pos >= 0; i++) {
    pos = text.indexOf("\n", pos);
    if (pos >= 0) pos++;
  }
  if (pos < 0) return "";
  const end = text.indexOf("\n", pos);
  return text.slice(pos, end < 0 ? text.length : end).trim();
}

/**
 * Encodes `ipset restore -exist` text: every message, each with its sequence number from
 * nextSeq, or why the text is not covered. `revision` gives a created type's revision (or why
 * none: not covered). A member nobody can write throws naming its line, set and member.
 */
export function encodeIpsetRestore(
  text: string,
  revision: (type: IpsetRestoreType, family: "inet" | "inet6") => number | string,
  nextSeq: () => number,
): EncodedIpsetRestore | { uncovered: string } {
  const w = new MessageWriter(64 * 1024 + text.length);
  const sends: IpsetSend[] = [];
  const kinds = new Map<string, SetKind>();
  let messages = 0;
  let members = 0;
  let open: IpsetSend | undefined; // the members' send being filled
  let msgAt = -1; // its message being filled
  let msgCmd = 0;
  let adtAt = -1;
  let lastMsg = -1;
  /** The set whose members come now (the planner writes them in a run), and "add SET ". */
  let addSet = "";
  let addKind: SetKind | undefined;
  let addPrefix = "";
  const closeMessage = () => {
    if (msgAt < 0) return;
    w.endNest(adtAt);
    w.finish(msgAt);
    lastMsg = msgAt;
    msgAt = -1;
  };
  const closeSend = () => {
    if (!open) return;
    closeMessage();
    w.buf.writeUInt16LE(NLM_F_REQUEST | NLM_F_ACK, lastMsg + 6);
    open.end = w.len;
    sends.push(open);
    open = undefined;
  };
  /** Appends one member of set (of kind) at src[from, to). */
  const member = (
    cmd: number,
    set: string,
    kind: SetKind,
    src: string,
    from: number,
    to: number,
    line: number,
  ) => {
    if (open && (open.set !== set || w.len - open.start >= SEND_BYTES)) closeSend();
    if (msgAt >= 0 && (msgCmd !== cmd || w.len - adtAt >= ADT_BYTES)) closeMessage();
    if (!open) open = { start: w.len, end: 0, seq: nextSeq(), set, lines: [line, line] };
    if (msgAt < 0) {
      msgAt = beginIpsetMessage(w, cmd, NLM_F_REQUEST, open.seq);
      msgCmd = cmd;
      w.attrBytes(IPSET_ATTR_SETNAME, Buffer.from(`${set}\0`));
      w.attrU32(IPSET_ATTR_LINENO, line);
      adtAt = w.beginNest(IPSET_ATTR_ADT | NLA_F_NESTED);
      messages++;
    }
    writeMemberAt(w, kind, src, from, to, line);
    open.lines[1] = line;
    members++;
  };

  let line = 0;
  for (let pos = 0; pos < text.length; ) {
    let end = text.indexOf("\n", pos);
    if (end < 0) end = text.length;
    line++;
    const lineStart = pos;
    pos = end + 1;
    try {
      // The members' lines (nearly all), as the planner writes them: "add SET MEMBER", after
      // their set's create or flush.
      if (addKind && text.startsWith(addPrefix, lineStart)) {
        let to = end;
        while (to > lineStart && text.charCodeAt(to - 1) <= 32) to--;
        const from = lineStart + addPrefix.length;
        let blank = false;
        for (let i = from; i < to && !blank; i++) blank = text.charCodeAt(i) <= 32;
        if (to > from && !blank) {
          member(IPSET_CMD_ADD, addSet, addKind, text, from, to, line);
          continue;
        }
      }
      const t = text.slice(lineStart, end).trim();
      if (t === "") continue;
      const p = t.split(/\s+/) as string[];
      const [cmd = "", set = ""] = p;
      const uncovered = (why: string) => ({ uncovered: `line ${line} ("${t}"): ${why}` });
      const number = CMD_NUMBER[cmd];
      if (number === undefined || !Object.hasOwn(CMD_NUMBER, cmd))
        return uncovered(`command ${cmd} not covered`);
      if (set === "" || set.length > MAX_SETNAME) return uncovered("no set name, or too long");
      if (cmd === "add" || cmd === "del") {
        const kind = kinds.get(set);
        if (!kind) return uncovered(`set ${set} is not created earlier in the text`);
        if (p.length !== 3) return uncovered("options after the member");
        const m = p[2] as string;
        member(number, set, kind, m, 0, m.length, line);
        continue;
      }
      // A set command: its own request.
      closeSend();
      const seq = nextSeq();
      const start = w.len;
      const at = beginIpsetMessage(w, number, NLM_F_REQUEST | NLM_F_ACK, seq);
      w.attrBytes(IPSET_ATTR_SETNAME, Buffer.from(`${set}\0`));
      if (cmd === "flush" || cmd === "destroy") {
        if (p.length !== 2) return uncovered("more than a set name");
      } else if (cmd === "swap") {
        const other = p[2] ?? "";
        if (p.length !== 3 || other === "" || other.length > MAX_SETNAME)
          return uncovered("not two set names");
        w.attrBytes(IPSET_ATTR_SETNAME2, Buffer.from(`${other}\0`));
      } else {
        const type = p[2];
        if (type !== "hash:net" && type !== "hash:ip,port" && type !== "hash:net,iface")
          return uncovered(`type ${type}`);
        let family: "inet" | "inet6" = "inet";
        const data: [number, number][] = [];
        for (let k = 3; k < p.length; k += 2) {
          const [opt, value = ""] = [p[k], p[k + 1]];
          if (opt === "family" && (value === "inet" || value === "inet6")) family = value;
          else if ((opt === "hashsize" || opt === "maxelem") && U32_TEXT.test(value)) {
            if (Number(value) > 0xffffffff) return uncovered(`${opt} ${value}`);
            data.push([
              opt === "hashsize" ? IPSET_ATTR_HASHSIZE : IPSET_ATTR_MAXELEM,
              Number(value),
            ]);
          } else return uncovered(`option ${opt} ${value}`);
        }
        const rev = revision(type, family);
        if (typeof rev === "string") return uncovered(rev);
        w.attrBytes(IPSET_ATTR_TYPENAME, Buffer.from(`${type}\0`));
        attrU8(w, IPSET_ATTR_REVISION, rev);
        attrU8(w, IPSET_ATTR_FAMILY, family === "inet" ? NFPROTO_IPV4 : NFPROTO_IPV6);
        const nest = w.beginNest(IPSET_ATTR_DATA | NLA_F_NESTED);
        for (const [attr, v] of data) attrNet(w, attr, v, 4);
        w.endNest(nest);
        kinds.set(set, { type, v4: family === "inet" });
      }
      w.finish(at);
      messages++;
      sends.push({ start, end: w.len, seq, set, lines: [line, line], cmd: number });
      // The members that follow a create or flush are this set's, read on the fast path.
      addKind = cmd === "create" || cmd === "flush" ? kinds.get(set) : undefined;
      addSet = set;
      addPrefix = `add ${set} `;
    } catch (err) {
      if (err instanceof Uncovered)
        return { uncovered: `line ${line} ("${lineOf(text, line)}"): ${err.message}` };
      const words = lineOf(text, line).split(/\s+/);
      throw new Error(
        `ipset restore over netlink: error in line ${line} ("${lineOf(text, line)}"): member ${words[2]} of set ${words[1]}: ${(err as Error).message}; nothing applied`,
      );
    }
  }
  closeSend();
  return { buf: w.buf, sends, messages, members };
}

/** A member this writer does not encode (the tool is asked instead). */
class Uncovered extends Error {}

/** The IPv4 address in s[from, to) as a number, or -1 (dotted decimal, no leading zeros). */
function ipv4At(s: string, from: number, to: number): number {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      n = n * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return -1;
      part = part * 10 + c - 48;
      if (++digits > 3 || part > 255) return -1;
    } else return -1;
  }
  return dots === 3 && digits > 0 ? n * 256 + part : -1;
}

/** The IPv6 address text's 16 bytes, or undefined when it is none. */
function ipv6Of(text: string): Uint8Array | undefined {
  if (!text.includes(":")) return undefined;
  try {
    return parseIPv6(text);
  } catch {
    return undefined;
  }
}

/** A decimal number 0..max in s[from, to), or -1. */
function numberAt(s: string, from: number, to: number, max: number): number {
  if (to <= from || to - from > 10) return -1;
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57 || (i > from && n === 0)) return -1;
    n = n * 10 + c - 48;
  }
  return n > max ? -1 : n;
}

/** Appends attribute `type` of a u8. */
function attrU8(w: MessageWriter, type: number, v: number): void {
  w.reserve(8);
  const b = w.buf;
  const o = w.len;
  b.writeUInt16LE(5, o);
  b.writeUInt16LE(type, o + 2);
  b.writeUInt32LE(v & 0xff, o + 4); // the byte, then three bytes of padding
  w.len += 8;
}

/** Appends attribute `type` (NLA_F_NET_BYTEORDER) of a u16 or u32 in network order. */
function attrNet(w: MessageWriter, type: number, v: number, bytes: 2 | 4): void {
  w.reserve(8);
  const b = w.buf;
  const o = w.len;
  b.writeUInt16LE(4 + bytes, o);
  b.writeUInt16LE(type | NLA_F_NET_BYTEORDER, o + 2);
  b.writeUInt32LE(0, o + 4);
  if (bytes === 2) b.writeUInt16BE(v, o + 4);
  else b.writeUInt32BE(v >>> 0, o + 4);
  w.len += 8;
}

/** Appends IPSET_ATTR_IP (nested) holding an address: 4 bytes as a number, 16 as bytes. */
function attrIp(w: MessageWriter, v4: number, v6: Uint8Array | undefined): void {
  const ip = w.beginNest(IPSET_ATTR_IP | NLA_F_NESTED);
  if (v6) w.attrBytes(IPSET_ATTR_IPADDR_IPV6 | NLA_F_NET_BYTEORDER, v6);
  else attrNet(w, IPSET_ATTR_IPADDR_IPV4, v4, 4);
  w.endNest(ip);
}

/** The revisions of a type in a family the kernel has, newest and oldest (IPSET_CMD_TYPE). */
function typeRevisions(
  sock: IpsetSocket,
  type: string,
  nfproto: number,
): { max: number; min: number } | { errno: number } {
  const seq = sock.nextSeq();
  const w = new MessageWriter(128);
  const at = beginIpsetMessage(w, IPSET_CMD_TYPE, NLM_F_REQUEST | NLM_F_ACK, seq);
  w.attrBytes(IPSET_ATTR_TYPENAME, Buffer.from(`${type}\0`));
  attrU8(w, IPSET_ATTR_FAMILY, nfproto);
  w.finish(at);
  let max = -1;
  let min = -1;
  let errno = 0;
  forEachMessage(sock.send(w.buf.subarray(0, w.len)), (m) => {
    if (m.seq !== seq) return;
    if (m.type === NLMSG_ERROR) errno ||= decodeError(m).errno;
    if (m.type !== ((NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_TYPE)) return;
    for (let o = m.off + NFGENMSG_LEN; o + 4 <= m.end; ) {
      const l = m.buf.readUInt16LE(o);
      if (l < 4 || o + l > m.end) break;
      const t = m.buf.readUInt16LE(o + 2) & 0x3fff;
      if (l >= 5 && t === IPSET_ATTR_REVISION) max = m.buf[o + 4] as number;
      if (l >= 5 && t === IPSET_ATTR_REVISION_MIN) min = m.buf[o + 4] as number;
      o += (l + 3) & ~3;
    }
  });
  if (errno !== 0) return { errno };
  return max < 0
    ? { errno: 71 /* EPROTO: no revision in the answer */ }
    : { max, min: Math.max(0, min) };
}

/** The line a refused member's answer names (the kernel writes it into the echoed request). */
function refusedLine(m: NlMessage): number | undefined {
  const b = m.buf;
  const hdr = m.off + 4;
  if (m.end - hdr < 16) return undefined;
  const end = Math.min(m.end, hdr + b.readUInt32LE(hdr));
  for (let o = hdr + 16 + NFGENMSG_LEN; o + 4 <= end; ) {
    const l = b.readUInt16LE(o);
    if (l < 4 || o + l > end) break;
    if ((b.readUInt16LE(o + 2) & 0x3fff) === IPSET_ATTR_LINENO && l >= 8)
      return b.readUInt32LE(o + 4);
    o += (l + 3) & ~3;
  }
  return undefined;
}

/** What a restore over netlink did: written (how), or not covered (why: the tool is needed). */
export type IpsetRestoreResult =
  | { written: true; members: number; messages: number; sends: number }
  | { written: false; uncovered: string };

/**
 * Writes `ipset restore -exist` text over netlink. Not covered (nothing sent): the result says
 * why. A refusal throws naming the line, its text and the reason; the sends after it are not
 * made. The sends block this thread for the kernel's work (~20 ms of 50,000 members), back to
 * back: the sets head the full pass's longest chain (their rules' restore waits for them).
 */
export async function restoreIpsetsOverNetlink(
  sock: IpsetSocket,
  text: string,
): Promise<IpsetRestoreResult> {
  const revisions = new Map<string, number | string>();
  const revision = (type: IpsetRestoreType, family: "inet" | "inet6"): number | string => {
    const key = `${type} family ${family}`;
    let rev = revisions.get(key);
    if (rev === undefined) {
      const r = typeRevisions(sock, type, family === "inet" ? NFPROTO_IPV4 : NFPROTO_IPV6);
      if ("errno" in r) rev = `the kernel's revisions of ${key}: ${ipsetErrorText(r.errno)}`;
      else {
        const newest = Math.min(r.max, NEWEST_REVISION[type]);
        rev = newest >= r.min ? newest : `the kernel's ${key} is revision ${r.min} or later`;
      }
      revisions.set(key, rev);
    }
    return rev;
  };
  const enc = encodeIpsetRestore(text, revision, () => sock.nextSeq());
  if ("uncovered" in enc) return { written: false, uncovered: enc.uncovered };

  // The sends, in order; the first refused ends the restore.
  for (const s of enc.sends) {
    const answer = sock.send(enc.buf.subarray(s.start, s.end));
    let errno = 0;
    let line: number | undefined;
    let cmd = s.cmd ?? 0;
    forEachMessage(answer, (m) => {
      if (errno !== 0 || m.seq !== s.seq || m.type !== NLMSG_ERROR) return;
      errno = decodeError(m).errno;
      if (errno === 0) return;
      line = refusedLine(m);
      // The echoed request's header: which command (the set's members: add or del).
      if (m.end - m.off >= 4 + 16) cmd = m.buf.readUInt16LE(m.off + 4 + 4) & 0xff;
    });
    if (errno === 0) continue;
    line ??= s.cmd === undefined ? undefined : s.lines[0];
    const what =
      line !== undefined
        ? `error in line ${line} ("${lineOf(text, line)}")`
        : `error in lines ${s.lines[0]}–${s.lines[1]} (members of set ${s.set})`;
    throw new Error(`ipset restore over netlink: ${what}: ${ipsetErrorText(errno, cmd)}`);
  }
  return { written: true, members: enc.members, messages: enc.messages, sends: enc.sends.length };
}
