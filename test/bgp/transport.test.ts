// The TCP transport on loopback: unknown sources are closed at once, source addresses per peer,
// a peer that stops reading is noticed (congested) and dropped past the hard limit, and writes
// are paced (one buffer per turn; within a burst, one hand-over per coalescing interval).
import * as net from "node:net";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock, SessionTimers } from "../../src/bgp/io/clock.js";
import { Connection, connect, listen, plainAddress } from "../../src/bgp/io/transport.js";
import { runSync } from "../helpers/limits.js";

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

function connectP(port: number, localAddress?: string): Promise<Connection> {
  return new Promise((resolve, reject) => {
    connect({ address: "127.0.0.1", port, localAddress, timeoutMs: 2000 }, resolve, reject);
  });
}

/**
 * A connected loopback socket to a server of this test (closed after it): what the server
 * receives, when its side ends, and what the client socket is handed, one entry per write().
 */
async function loopback(): Promise<{
  sock: net.Socket;
  received: Buffer[];
  ended: Promise<void>;
  handed: Buffer[];
}> {
  const srv = net.createServer();
  const received: Buffer[] = [];
  const accepted: net.Socket[] = [];
  const ended = new Promise<void>((r) =>
    srv.on("connection", (s) => {
      accepted.push(s);
      s.on("data", (d: Buffer) => received.push(d));
      s.on("end", () => r());
    }),
  );
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  closers.push(() => {
    for (const s of accepted) s.destroy();
    return new Promise<void>((r) => srv.close(() => r()));
  });
  const port = (srv.address() as net.AddressInfo).port;
  const sock = net.connect({ host: "127.0.0.1", port });
  await new Promise<void>((r) => sock.once("connect", () => r()));
  const handed: Buffer[] = [];
  const write = sock.write.bind(sock) as (b: Uint8Array) => boolean;
  (sock as unknown as { write: (b: Uint8Array) => boolean }).write = (b: Uint8Array) => {
    handed.push(Buffer.from(b));
    return write(b);
  };
  return { sock, received, ended, handed };
}

describe("listen() and connect()", () => {
  it("closes connections from addresses that are not peers, accepts peers by source address", async () => {
    const accepted: Connection[] = [];
    const refused: string[] = [];
    const l = await listen({
      address: "127.0.0.1",
      port: 0,
      isPeer: (a) => a === "127.0.0.2",
      onConnection: (c) => accepted.push(c),
      onRefused: (a) => refused.push(a),
    });
    closers.push(() => l.close());
    const stranger = await connectP(l.port, "127.0.0.3");
    const closed = await new Promise<boolean>((r) => {
      stranger.attach({ onData: () => {}, onDrain: () => {}, onClose: () => r(true) });
      setTimeout(() => r(false), 2000).unref();
    });
    expect(closed).toBe(true);
    expect(refused).toEqual(["127.0.0.3"]);
    const friend = await connectP(l.port, "127.0.0.2");
    closers.push(() => friend.destroy());
    for (let i = 0; i < 6000 && accepted.length === 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(accepted.map((c) => [c.remoteAddress, c.direction])).toEqual([
      ["127.0.0.2", "incoming"],
    ]);
    expect(friend.localAddress).toBe("127.0.0.2");
    const got = new Promise<string>((r) =>
      accepted[0]?.attach({
        onData: (d) => r(Buffer.from(d).toString()),
        onDrain: () => {},
        onClose: () => {},
      }),
    );
    friend.write(Buffer.from("hello"));
    expect(await got).toBe("hello");
    for (const c of accepted) c.destroy();
  });

  it("reports a refused connect as a failure", async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    await expect(connectP(port)).rejects.toBeDefined();
  });

  it("marks a connection congested when the peer stops reading, and drops it past the limit", async () => {
    const sockets: net.Socket[] = [];
    const srv = net.createServer((s) => {
      s.pause(); // never read
      sockets.push(s);
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    closers.push(() => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => srv.close(() => r()));
    });
    const port = (srv.address() as net.AddressInfo).port;
    const c = await new Promise<Connection>((resolve, reject) =>
      connect({ address: "127.0.0.1", port, timeoutMs: 2000 }, resolve, reject),
    );
    // Write until congested at the default high-water mark (4 MiB), bounded in count.
    let closedWith: string | undefined;
    c.attach({ onData: () => {}, onDrain: () => {}, onClose: (e) => (closedWith = e ?? "closed") });
    const chunk = new Uint8Array(1 << 20);
    let writes = 0;
    while (!c.congested && writes < 64) {
      c.write(chunk);
      writes++;
    }
    expect(c.congested).toBe(true);
    expect(c.buffered).toBeGreaterThanOrEqual(4 << 20);
    for (let i = 0; i < 300 && !c.isClosed; i++) c.write(chunk);
    expect(c.isClosed).toBe(true);
    expect(closedWith).toMatch(/^Peer is not reading: \d+ bytes queued$/);
  });

  it("delivers small and big messages of one turn in their order, and small ones before end()", async () => {
    const srv = net.createServer();
    const received: Buffer[] = [];
    const ended = new Promise<void>((r) =>
      srv.on("connection", (s) => {
        s.on("data", (d: Buffer) => received.push(d));
        s.on("end", () => r());
      }),
    );
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    closers.push(() => new Promise<void>((r) => srv.close(() => r())));
    const port = (srv.address() as net.AddressInfo).port;
    const c = await connectP(port);
    c.attach({ onData: () => {}, onDrain: () => {}, onClose: () => {} });
    // 300 small messages, a big one, 100 more (all corked in one turn), each 4 bytes of its
    // index and filler; then end() in the same turn.
    const sent: Uint8Array[] = [];
    const msg = (i: number, len: number) => {
      const m = new Uint8Array(len).fill(i & 255);
      new DataView(m.buffer).setUint32(0, i);
      sent.push(m);
      return m;
    };
    for (let i = 0; i < 300; i++) c.write(msg(i, 19 + (i % 50)));
    c.write(msg(300, 4096));
    for (let i = 301; i < 400; i++) c.write(msg(i, 23));
    c.end();
    await ended;
    expect(Buffer.concat(received).equals(Buffer.concat(sent))).toBe(true);
  });

  it("paces writes: one buffer per turn, a burst's later UPDATEs held to the interval, a big one, an unpaced one or end() at once", async () => {
    // What the Connection hands to its socket, one entry per socket.write().
    const { sock, received, ended: end, handed } = await loopback();
    const c = new Connection(sock, "outgoing", {
      highWater: 4 << 20,
      maxBuffered: 256 << 20,
      coalesceMs: 300,
      coalesceBytes: 1000,
    });
    c.attach({ onData: () => {}, onDrain: () => {}, onClose: () => {} });
    const turn = () => new Promise((r) => setImmediate(r));
    const m = (v: number, len = 10) => new Uint8Array(len).fill(v);
    // A quiet connection: a turn's writes go as one buffer at the turn's end.
    c.write(m(1), true);
    c.write(m(2), true);
    expect(handed).toHaveLength(0);
    await turn();
    expect(handed.map((b) => b.length)).toEqual([20]);
    // Within the interval: paced writes are held, and the next turns' join them.
    c.write(m(3), true);
    await turn();
    c.write(m(4), true);
    await turn();
    expect(handed).toHaveLength(1);
    expect(c.buffered).toBeGreaterThanOrEqual(20);
    // Past coalesceBytes: at the turn's end, with what was held.
    c.write(m(5, 1000), true);
    await turn();
    expect(handed.map((b) => b.length)).toEqual([20, 1020]);
    // Held again; an unpaced write (a KEEPALIVE) takes it along at the turn's end.
    c.write(m(6), true);
    await turn();
    expect(handed).toHaveLength(2);
    c.write(m(7));
    await turn();
    expect(handed.map((b) => b.length)).toEqual([20, 1020, 20]);
    // Held again, then end(): sent before the FIN.
    c.write(m(8), true);
    await turn();
    expect(handed).toHaveLength(3);
    c.end();
    await end;
    expect(handed.map((b) => b.length)).toEqual([20, 1020, 20, 10]);
    expect(Buffer.concat(received)).toEqual(
      Buffer.concat([m(1), m(2), m(3), m(4), m(5, 1000), m(6), m(7), m(8)]),
    );
  });

  it("hands over more than 1 MiB of one turn without copying it, in order", async () => {
    const { sock, received, ended, handed } = await loopback();
    const c = new Connection(sock, "outgoing");
    c.attach({ onData: () => {}, onDrain: () => {}, onClose: () => {} });
    const parts = [1, 2, 3].map((v) => new Uint8Array(600 << 10).fill(v));
    for (const p of parts) c.write(p);
    await new Promise((r) => setImmediate(r));
    expect(handed.map((b) => b.length)).toEqual([600 << 10, 600 << 10, 600 << 10]);
    c.end();
    await ended;
    expect(Buffer.concat(received).equals(Buffer.concat(parts))).toBe(true);
  });

  it("hands a burst's held writes to the socket once the interval has passed", async () => {
    const { sock, received: got } = await loopback();
    const c = new Connection(sock, "outgoing", {
      highWater: 4 << 20,
      maxBuffered: 256 << 20,
      coalesceMs: 50,
      coalesceBytes: 1 << 20,
    });
    closers.unshift(() => c.destroy());
    c.attach({ onData: () => {}, onDrain: () => {}, onClose: () => {} });
    const t0 = performance.now();
    c.write(new Uint8Array(5).fill(1), true);
    await new Promise((r) => setImmediate(r));
    c.write(new Uint8Array(5).fill(2), true);
    for (let i = 0; i < 3000 && Buffer.concat(got).length < 10; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(Buffer.concat(got)).toEqual(Buffer.from([1, 1, 1, 1, 1, 2, 2, 2, 2, 2]));
    // The second write waited for the interval (timers may fire a little early).
    expect(performance.now() - t0).toBeGreaterThanOrEqual(45);
  });

  it("plainAddress() strips the IPv4-mapped prefix only", () => {
    expect(plainAddress("::ffff:10.0.0.1")).toBe("10.0.0.1");
    expect(plainAddress("fd00::1")).toBe("fd00::1");
  });
});

describe("SessionTimers on a ManualClock", () => {
  it("restarts a running timer and fires each once", () => {
    const clock = new ManualClock();
    const fired: string[] = [];
    const t = new SessionTimers<"Hold" | "Keepalive">(clock, (n) =>
      fired.push(`${n}@${clock.now()}`),
    );
    t.start("Hold", 3000);
    t.start("Keepalive", 1000);
    clock.advance(2000);
    t.start("Hold", 3000);
    clock.advance(10_000);
    expect(fired).toEqual(["Keepalive@1000", "Hold@5000"]);
    expect(t.isRunning("Hold")).toBe(false);
  });
});

describe("listen() on a port below 1024 without CAP_NET_BIND_SERVICE", () => {
  const why =
    process.getuid?.() !== 0
      ? "needs root (to drop the capability with setpriv)"
      : runSync("setpriv", ["--version"]).status !== 0
        ? "setpriv not installed"
        : undefined;
  it.skipIf(why !== undefined)(
    "says what would let it bind (as in a container with only NET_ADMIN and NET_RAW)",
    () => {
      const transport = fileURLToPath(new URL("../../src/bgp/io/transport.ts", import.meta.url));
      const code = `import(${JSON.stringify(transport)}).then((t) => t.listen({ address: "127.0.0.1", port: 179, isPeer: () => false, onConnection() {} })).then(() => { console.log("listening"); process.exit(0); }, (e) => { console.log(e.message); process.exit(0); });`;
      const r = runSync("setpriv", [
        "--bounding-set",
        "-net_bind_service",
        process.execPath,
        "--import",
        "tsx",
        "-e",
        code,
      ]);
      expect(r.stdout.trim()).toBe(
        "listen EACCES: permission denied 127.0.0.1:179 (port 179 needs CAP_NET_BIND_SERVICE, or the sysctl net.ipv4.ip_unprivileged_port_start=179 in this network namespace)",
      );
    },
  );
});
