// Our native addon (native/ocelot_netlink.c) as TypeScript sees it: loading it (once), why it
// cannot be loaded here, and what it sets on any fd: socket options (TTL, minimum TTL, TCP-MD5
// keys for BGP sockets) and classic BPF filters (BFD's TTL 255 check). Below both users: fib/ (its netlink socket) and bgp/io (TCP sockets).
// Owns: the addon's loading and setsockopt. Not: netlink sockets (fib/netlink_socket.ts).
import { createRequire } from "node:module";
import { isIPv4, isIPv6 } from "node:net";
import { fileURLToPath } from "node:url";
import { addressBytes } from "./ip.js";

export interface Addon {
  open(
    protocol: number,
    groups: number,
    rcvbuf: number,
    cb: (ev: number, arg: unknown) => void,
    netnsPath: string,
  ): unknown;
  send(h: unknown, buf: Buffer, off: number, len: number): number;
  sendQueued(h: unknown, buf: Buffer, off: number, len: number, token: number): void;
  setOption(h: unknown, level: number, name: number, value: number): void;
  dropOwnEchoes(h: unknown, portId: number): void;
  info(h: unknown): { portId: number; rcvbuf: number; sndbuf: number };
  close(h: unknown): void;
  setsockoptFd(fd: number, level: number, name: number, value: number | Buffer): void;
  attachFilterFd(fd: number, program: Buffer): void;
  /** glibc's M_MMAP_THRESHOLD and M_TRIM_THRESHOLD, fixed; false if not glibc. */
  mallocThresholds(mmapBytes: number, trimBytes: number): boolean;
  /** A blocking netlink socket (in the namespace at netnsPath, "" = ours): its fd. */
  requestOpen(protocol: number, netnsPath: string, timeoutMs: number): number;
  /** Sends one request; returns every datagram up to its error/ACK or DONE. */
  request(fd: number, message: Buffer): Buffer;
  requestClose(fd: number): void;
  /** Writes each value to its path with the thread inside the network namespace: errno each. */
  writeFilesInNetns(netnsPath: string, paths: string[], values: string[]): number[];
}

/** Same relative path from src/lib/ (tsx, vitest) and dist/lib/ (compiled). */
const ADDON_PATH = fileURLToPath(
  new URL("../../native/build/Release/ocelot_netlink.node", import.meta.url),
);

let addon: Addon | undefined;

export function loadAddon(): Addon {
  if (addon) return addon;
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as Addon;
  } catch (err) {
    throw new Error(
      `Netlink addon not built at "${ADDON_PATH}" (run npm run build): ${(err as Error).message}`,
    );
  }
  return addon;
}

/** Why the addon cannot be used here, or undefined when it can (for test skips). */
export function addonUnavailableReason(): string | undefined {
  try {
    loadAddon();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * setsockopt on any socket fd (e.g. a Node TCP socket's `_handle.fd`): IP_TTL, IP_MINTTL,
 * IPV6_UNICAST_HOPS as numbers; TCP_MD5SIG as a Buffer holding a struct tcp_md5sig.
 */
export function setsockoptFd(
  fd: number,
  level: number,
  name: number,
  value: number | Buffer,
): void {
  loadAddon().setsockoptFd(fd, level, name, value);
}

/**
 * SO_ATTACH_FILTER on any socket fd: `program` holds classic BPF instructions (struct
 * sock_filter, 8 bytes each, host byte order), e.g. from ttlFilter().
 */
export function attachFilterFd(fd: number, program: Buffer): void {
  loadAddon().attachFilterFd(fd, program);
}

/**
 * Fixes glibc's malloc thresholds (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD) for the whole process,
 * which stops glibc from raising them as large chunks come and go: allocations above mmapBytes
 * are mapped and unmapped on their own, and an arena's free top above trimBytes is returned.
 * False where the C library is not glibc.
 */
export function mallocThresholds(mmapBytes: number, trimBytes: number): boolean {
  return loadAddon().mallocThresholds(mmapBytes, trimBytes);
}

/** SKF_NET_OFF: classic BPF loads relative to the network header (linux/filter.h). */
const SKF_NET_OFF = -0x100000;

/**
 * A classic BPF program for a UDP socket that keeps only packets whose IPv4 TTL (family 4) or
 * IPv6 Hop Limit (family 6) is exactly `ttl`, e.g. 255 for RFC 5881 §5 / RFC 5082 GTSM.
 */
export function ttlFilter(family: 4 | 6, ttl: number): Buffer {
  const ins = [
    // ldb [SKF_NET_OFF + 8 (IPv4 TTL) | 7 (IPv6 Hop Limit)]
    [0x30, 0, 0, (SKF_NET_OFF + (family === 4 ? 8 : 7)) >>> 0],
    [0x15, 0, 1, ttl], // jeq #ttl, accept, drop
    [0x06, 0, 0, 0xffffffff], // ret: the whole packet
    [0x06, 0, 0, 0], // ret 0: drop
  ];
  const b = Buffer.alloc(ins.length * 8);
  const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  ins.forEach(([code, jt, jf, k], i) => {
    if (le) {
      b.writeUInt16LE(code, i * 8);
      b.writeUInt32LE(k, i * 8 + 4);
    } else {
      b.writeUInt16BE(code, i * 8);
      b.writeUInt32BE(k, i * 8 + 4);
    }
    b[i * 8 + 2] = jt;
    b[i * 8 + 3] = jf;
  });
  return b;
}

/** Socket option constants for setsockoptFd (Linux values). */
export const SockOpt = {
  IPPROTO_IP: 0,
  IPPROTO_TCP: 6,
  IPPROTO_IPV6: 41,
  IP_TTL: 2,
  IP_MINTTL: 21,
  IPV6_UNICAST_HOPS: 16,
  IPV6_MINHOPCOUNT: 73,
  TCP_MD5SIG: 14,
} as const;

const TCP_MD5SIG_MAXKEYLEN = 80;

/**
 * The `struct tcp_md5sig` for setsockoptFd(fd, IPPROTO_TCP, TCP_MD5SIG, ...): the key used with
 * peer `address` (RFC 2385). An empty key removes it.
 */
export function tcpMd5SigOption(address: string, key: string): Buffer {
  const k = Buffer.from(key, "utf8");
  if (k.length > TCP_MD5SIG_MAXKEYLEN)
    throw new Error(`TCP MD5 key is longer than ${TCP_MD5SIG_MAXKEYLEN} bytes: ${k.length}`);
  const b = Buffer.alloc(128 + 8 + TCP_MD5SIG_MAXKEYLEN);
  if (isIPv4(address)) {
    b.writeUInt16LE(2, 0); // AF_INET, sin_port 0
    b.set(address.split(".").map(Number), 4);
  } else if (isIPv6(address)) {
    b.writeUInt16LE(10, 0); // AF_INET6; sin6_port, sin6_flowinfo 0
    b.set(addressBytes(6, address), 8);
  } else throw new Error(`Invalid TCP MD5 peer address "${address}"`);
  b.writeUInt16LE(k.length, 130); // tcpm_flags 0, tcpm_prefixlen 0, tcpm_keylen
  b.set(k, 136);
  return b;
}
