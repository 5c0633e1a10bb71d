// The TCP transport on loopback: unknown sources are closed at once, source addresses per peer,
// and a peer that stops reading is noticed (congested) and dropped past the hard limit.
import * as net from "node:net";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock, SessionTimers } from "../../src/bgp/io/clock.js";
import { type Connection, connect, listen, plainAddress } from "../../src/bgp/io/transport.js";
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
