// A blocking rtnetlink request socket for short-lived processes (the CNI plugin): one request,
// its whole answer, no event loop turn per message; opened in our network namespace or in
// another one (a pod's, by path). Owns: the socket's fd and matching answers to requests.
// Not: loading the addon (lib/native.ts), message layouts (rtnetlink.ts), the long-lived
// daemon's socket with its listener (netlink_socket.ts).
import { loadAddon } from "../lib/native.js";
import {
  decodeError,
  forEachMessage,
  MessageWriter,
  NETLINK_ROUTE,
  NLMSG_DONE,
  NLMSG_ERROR,
  type NlMessage,
} from "./rtnetlink.js";

/** A request the kernel refused: errno and its extended-ACK text, when it sent one. */
export class NetlinkError extends Error {
  constructor(
    readonly errno: number,
    readonly kernelMessage: string | undefined,
  ) {
    super(`${errnoText(errno)}${kernelMessage ? ` (${kernelMessage})` : ""}`);
    this.name = "NetlinkError";
  }
}

const ERRNO_TEXT: Record<number, string> = {
  1: "Operation not permitted",
  2: "No such file or directory",
  13: "Permission denied",
  16: "Device or resource busy",
  17: "File exists",
  19: "No such device",
  22: "Invalid argument",
  34: "Numerical result out of range",
  95: "Operation not supported",
  99: "Cannot assign requested address",
  101: "Network is unreachable",
};

/** The C library's text for the errno values rtnetlink answers with (iproute2 prints these). */
export function errnoText(errno: number): string {
  return ERRNO_TEXT[errno] ?? `errno ${errno}`;
}

export class RtnlRequestSocket {
  private fd: number;
  private seq = 1;
  private readonly w = new MessageWriter(4096);

  /** `netnsPath`: a network namespace file (/run/netns/NAME, /proc/PID/ns/net), "" for ours. */
  constructor(netnsPath = "", timeoutMs = 10_000) {
    this.fd = loadAddon().requestOpen(NETLINK_ROUTE, netnsPath, timeoutMs);
  }

  /**
   * Sends the one message `write` appends (given its sequence number) and returns the answer's
   * messages other than the final error/ACK or DONE; throws NetlinkError when refused.
   */
  request(write: (w: MessageWriter, seq: number) => void): NlMessage[] {
    if (this.fd < 0) throw new Error("Netlink request socket is closed");
    const seq = this.seq++;
    this.w.reset();
    write(this.w, seq);
    const answer = loadAddon().request(this.fd, this.w.buf.subarray(0, this.w.len));
    const out: NlMessage[] = [];
    let failed: NetlinkError | undefined;
    forEachMessage(answer, (m) => {
      if (m.seq !== seq) return; // a late answer to an earlier request
      if (m.type === NLMSG_ERROR) {
        const e = decodeError(m);
        if (e.errno !== 0) failed = new NetlinkError(e.errno, e.message);
      } else if (m.type !== NLMSG_DONE) out.push({ ...m });
    });
    if (failed) throw failed;
    return out;
  }

  close(): void {
    if (this.fd < 0) return;
    loadAddon().requestClose(this.fd);
    this.fd = -1;
  }
}

/**
 * Writes sysctls of the network namespace at `netnsPath` (keys in dotted form, as `sysctl -w`
 * takes them); the first failure throws, naming the key.
 */
export function writeSysctlsInNetns(netnsPath: string, settings: Array<[string, string]>): void {
  const paths = settings.map(([k]) => `/proc/sys/${k.replaceAll(".", "/")}`);
  const errs = loadAddon().writeFilesInNetns(
    netnsPath,
    paths,
    settings.map(([, v]) => v),
  );
  errs.forEach((errno, i) => {
    if (errno !== 0) throw new NetlinkError(errno, `writing ${paths[i]}`);
  });
}
