// The addon's socket-option helper on real TCP sockets (loopback only), and its error path.
import { connect, createServer, type Server, type Socket } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import { NetlinkSocket } from "../../src/fib/netlink_socket.js";
import {
  decodeLink,
  forEachMessage,
  MessageWriter,
  NETLINK_ROUTE,
  NLMSG_DONE,
  RTM_NEWLINK,
  writeLinkDump,
} from "../../src/fib/rtnetlink.js";
import {
  addonUnavailableReason,
  SockOpt,
  setsockoptFd,
  tcpMd5SigOption,
} from "../../src/lib/native.js";
import { skipWithReason } from "../helpers/netns.js";

const skip = skipWithReason("netlink addon socket options", addonUnavailableReason());

function fdOf(s: Server | Socket): number {
  return (s as unknown as { _handle: { fd: number } })._handle.fd;
}

/** Resolves true when a plain client connects within ms, false when it does not. */
function connects(port: number, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect({ host: "127.0.0.1", port });
    const t = setTimeout(() => {
      c.destroy();
      resolve(false);
    }, ms);
    c.on("connect", () => {
      clearTimeout(t);
      c.destroy();
      resolve(true);
    });
    c.on("error", () => {
      clearTimeout(t);
      resolve(false);
    });
  });
}

describe.skipIf(skip)("setsockoptFd()", () => {
  let server: Server | undefined;
  afterEach(() => server?.close());

  async function listen(): Promise<number> {
    server = createServer((s) => s.destroy());
    await new Promise<void>((r) => server?.listen(0, "127.0.0.1", r));
    return (server.address() as { port: number }).port;
  }

  it("sets IP_MINTTL (GTSM) so a client with TTL 64 is dropped, and reports a bad fd with its errno", async () => {
    const port = await listen();
    const fd = fdOf(server as Server);
    expect(fd).toBeGreaterThan(0);
    expect(() => setsockoptFd(fd, SockOpt.IPPROTO_IP, SockOpt.IP_TTL, 1)).not.toThrow();
    setsockoptFd(fd, SockOpt.IPPROTO_IP, SockOpt.IP_MINTTL, 255);
    expect(await connects(port, 700)).toBe(false); // Linux sends with TTL 64 by default
    setsockoptFd(fd, SockOpt.IPPROTO_IP, SockOpt.IP_MINTTL, 64);
    expect(await connects(port, 2000)).toBe(true);
    let err: unknown;
    try {
      setsockoptFd(1_000_000, SockOpt.IPPROTO_IP, SockOpt.IP_TTL, 1);
    } catch (e) {
      err = e;
    }
    expect((err as { errno: number }).errno).toBe(9); // EBADF
    expect(String(err)).toContain("setsockopt failed");
  });

  it("TCP_MD5SIG on a listener makes it drop an unsigned client, and removing the key admits it", async () => {
    const port = await listen();
    const fd = fdOf(server as Server);
    setsockoptFd(
      fd,
      SockOpt.IPPROTO_TCP,
      SockOpt.TCP_MD5SIG,
      tcpMd5SigOption("127.0.0.1", "s3cret"),
    );
    expect(await connects(port, 700)).toBe(false);
    setsockoptFd(fd, SockOpt.IPPROTO_TCP, SockOpt.TCP_MD5SIG, tcpMd5SigOption("127.0.0.1", ""));
    expect(await connects(port, 2000)).toBe(true);
  });

  it("tcpMd5SigOption() refuses a bad address and an over-long key", () => {
    expect(() => tcpMd5SigOption("10.0.0.300", "k")).toThrow(
      'Invalid TCP MD5 peer address "10.0.0.300"',
    );
    expect(() => tcpMd5SigOption("10.0.0.1", "k".repeat(81))).toThrow("longer than 80 bytes: 81");
  });
});

describe.skipIf(skip)("NetlinkSocket", () => {
  /** Dumps links over s; resolves with their names, or rejects after ms. */
  function dumpLinks(s: { send: NetlinkSocket["send"] }, got: Promise<string[]>, ms: number) {
    const w = new MessageWriter();
    writeLinkDump(w, 1);
    expect(s.send(w.buf, 0, w.len)).toBe(w.len);
    return Promise.race([
      got,
      new Promise<string[]>((_, reject) =>
        setTimeout(() => reject(new Error("No dump reply")), ms),
      ),
    ]);
  }

  function open(onSendFailed?: (token: number, errno: number) => void): {
    sock: NetlinkSocket;
    got: Promise<string[]>;
  } {
    const names: string[] = [];
    let done: (v: string[]) => void = () => {};
    const got = new Promise<string[]>((r) => (done = r));
    const sock = new NetlinkSocket(NETLINK_ROUTE, 0, 1 << 20, {
      onData: (b) =>
        forEachMessage(b, (m) => {
          if (m.type === RTM_NEWLINK) names.push(decodeLink(m)?.name ?? "?");
          if (m.type === NLMSG_DONE) done(names);
        }),
      onOverflow: () => {},
      onError: () => {},
      onSendFailed,
    });
    return { sock, got };
  }

  it("sends queued bytes on its sender thread, and a send the kernel refuses comes back with its token", async () => {
    const failed: [number, number][] = [];
    let failedNow: () => void = () => {};
    const failure = new Promise<void>((r) => (failedNow = r));
    const { sock, got } = open((token, errno) => {
      failed.push([token, errno]);
      failedNow();
    });
    try {
      // Larger than the send buffer: netlink_sendmsg refuses it with EMSGSIZE (90).
      const big = Buffer.alloc(sock.info().sndbuf + 4096);
      big.writeUInt32LE(big.length, 0);
      sock.sendQueued(big, 0, big.length, 7);
      const w = new MessageWriter();
      writeLinkDump(w, 1);
      sock.sendQueued(w.buf, 0, w.len, 8);
      w.buf.fill(0); // the bytes were copied when queued
      const names = await Promise.race([
        got,
        new Promise<string[]>((_, reject) =>
          setTimeout(() => reject(new Error("No dump reply")), 30_000),
        ),
      ]);
      expect(names).toContain("lo");
      await failure;
      expect(failed).toEqual([[7, 90]]);
      // Closing with sends still queued stops the thread and drops them.
      for (let i = 0; i < 50; i++) sock.sendQueued(big, 0, 1024, 100 + i);
    } finally {
      sock.close();
    }
    expect(() => sock.sendQueued(Buffer.alloc(16), 0, 16, 1)).toThrow();
  });

  it("keeps receiving on a new socket after an old one is closed and garbage-collected", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    for (let round = 0; round < 3; round++) {
      (() => open().sock.close())(); // nothing keeps the old handle alive
      // The new socket usually gets the old one's fd number; collecting the old handle
      // afterwards must not unregister the new one from the event loop.
      const fresh = open();
      gc();
      await new Promise((r) => setImmediate(r));
      gc();
      expect(await dumpLinks(fresh.sock, fresh.got, 2000)).toContain("lo");
      fresh.sock.close();
    }
  });
});
