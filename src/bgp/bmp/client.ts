// The BMP connection to a monitoring station (RFC 7854 §3.3: the router connects to the
// station): connects, sends Initiation and the Peer Up of every peer already up, the dump of
// their Adj-RIB-In (RFC 7854 §5, End-of-RIB per family), then what the monitor emits and a
// Statistics Report per peer every interval; reconnects with backoff (1 s doubling to 30 s) when
// the station goes away; Termination on stop. A station that does not read never blocks the
// speaker: the dump is pulled only while the socket has room (paced by its 'drain'), messages
// emitted meanwhile wait behind it, and above `maxQueueBytes` (socket plus those waiting) a
// message is dropped and counted. Owns: the socket, its timers, the drop counters. Not: what to
// send (monitor.ts), the bytes (codec.ts).
import net from "node:net";
import { hostname } from "node:os";
import { type Log, silentLog } from "../../lib/log.js";
import { encodeInitiation, encodeTermination, TerminationReason } from "./codec.js";
import { BmpMonitor } from "./monitor.js";

export interface BmpOptions {
  /** The station, host:port (IPv6 as [addr]:port). */
  station: string;
  /** Statistics Report interval (0: none). Default 60 s. */
  statsIntervalMs?: number;
  /** Bytes that may wait in the socket before messages are dropped. Default 16 MiB. */
  maxQueueBytes?: number;
  /** Mirror UPDATEs sent to peers too (RFC 8671 Adj-RIB-Out, post-policy). */
  adjRibOut?: boolean;
  sysName?: string;
  sysDescr?: string;
  log?: Log;
}

export interface BmpCounters {
  connects: number;
  messagesSent: number;
  bytesSent: number;
  /** Messages dropped because the station was not reading fast enough. */
  dropped: number;
  /** Adj-RIB-In dumps written whole to a station (one per connection). */
  dumps: number;
}

/**
 * While dumping, the dump is written up to this much waiting in the socket (at most half the
 * bound, leaving room for what is emitted behind it), then again on 'drain'.
 */
const DUMP_CHUNK = 256 * 1024;

/** host:port (or [v6]:port) into its parts; a clear error names what is wrong. */
export function parseStation(s: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || !(port >= 1 && port <= 65535))
    throw new Error(`BMP station "${s}" is not host:port (e.g. 127.0.0.1:11019)`);
  return { host: m[1] as string, port };
}

export class BmpClient {
  readonly monitor: BmpMonitor;
  readonly counters: BmpCounters = {
    connects: 0,
    messagesSent: 0,
    bytesSent: 0,
    dropped: 0,
    dumps: 0,
  };
  private readonly host: string;
  private readonly port: number;
  private readonly log: Log;
  private socket: net.Socket | undefined;
  private ready = false;
  private stopped = false;
  private backoffMs = 1000;
  private retry: NodeJS.Timeout | undefined;
  private stats: NodeJS.Timeout | undefined;
  /** The Adj-RIB-In dump being written to the station, and what was emitted behind it. */
  private dump: Iterator<Buffer> | undefined;
  private held: Buffer[] = [];
  private heldBytes = 0;

  constructor(private readonly o: BmpOptions) {
    const { host, port } = parseStation(o.station);
    this.host = host;
    this.port = port;
    this.log = o.log ?? silentLog;
    this.monitor = new BmpMonitor({
      emit: (m) => this.send(m),
      now: Date.now,
      ...(o.adjRibOut ? { adjRibOut: true } : {}),
    });
  }

  get connected(): boolean {
    return this.ready;
  }

  start(): void {
    this.connect();
  }

  /** Termination (administratively closed), then close; waits for it to leave (bounded). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.retry);
    clearInterval(this.stats);
    const s = this.socket;
    if (!s) return;
    this.endDump();
    if (this.ready) s.write(encodeTermination(TerminationReason.AdminClose, "ocelot stopping"));
    this.ready = false;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        s.destroy();
        resolve();
      }, 2000);
      s.end(() => {
        clearTimeout(t);
        resolve();
      });
    });
    s.destroy();
  }

  private connect(): void {
    if (this.stopped) return;
    const s = net.connect({ host: this.host, port: this.port });
    this.socket = s;
    s.setNoDelay(true);
    s.on("connect", () => {
      this.counters.connects++;
      this.backoffMs = 1000;
      this.ready = true;
      this.log.info({ station: this.o.station }, "BMP station connected");
      this.send(
        encodeInitiation({
          sysName: this.o.sysName ?? hostname(),
          sysDescr: this.o.sysDescr ?? "Ocelot BGP speaker",
        }),
      );
      for (const m of this.monitor.peerUps()) this.send(m);
      this.dump = this.monitor.dump()[Symbol.iterator]();
      this.pump();
      const every = this.o.statsIntervalMs ?? 60_000;
      if (every > 0)
        this.stats = setInterval(() => {
          for (const m of this.monitor.statsReports()) this.send(m);
        }, every);
    });
    // A station does not talk back (§3.2): anything it sends is read and ignored.
    s.on("data", () => {});
    s.on("drain", () => this.pump());
    s.on("error", (e) => {
      if (this.ready) this.log.warn({ station: this.o.station, error: e.message }, "BMP error");
      else this.log.debug({ station: this.o.station, error: e.message }, "BMP connect failed");
    });
    s.on("close", () => {
      if (this.socket !== s) return;
      const was = this.ready;
      this.ready = false;
      this.socket = undefined;
      clearInterval(this.stats);
      this.endDump();
      if (this.stopped) return;
      if (was) this.log.warn({ station: this.o.station }, "BMP station connection lost");
      const wait = this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, 30_000);
      this.retry = setTimeout(() => this.connect(), wait);
      this.retry.unref();
    });
  }

  /**
   * Writes a message now (behind the dump while one is being written), or drops it (counted)
   * while the station lags behind.
   */
  private send(m: Buffer): void {
    const s = this.socket;
    if (!this.ready || !s) return; // no station: the next one starts from the Peer Ups and dump
    if (s.writableLength + this.heldBytes + m.length > (this.o.maxQueueBytes ?? 16 << 20)) {
      if (this.counters.dropped++ === 0)
        this.log.warn({ station: this.o.station }, "BMP station is slow to read: dropping");
      return;
    }
    if (this.dump !== undefined) {
      this.held.push(m);
      this.heldBytes += m.length;
      return;
    }
    this.write(s, m);
  }

  private write(s: net.Socket, m: Buffer): void {
    s.write(m);
    this.counters.messagesSent++;
    this.counters.bytesSent += m.length;
  }

  /** Writes the dump while the socket has room; when it ends, what waited behind it. */
  private pump(): void {
    const s = this.socket;
    if (this.dump === undefined || !s || !this.ready) return;
    const chunk = Math.min(DUMP_CHUNK, (this.o.maxQueueBytes ?? 16 << 20) / 2);
    while (s.writableLength < chunk) {
      const n = this.dump.next();
      if (n.done) {
        this.dump = undefined;
        this.counters.dumps++;
        const held = this.held;
        this.held = [];
        this.heldBytes = 0;
        for (const m of held) this.write(s, m);
        return;
      }
      this.write(s, n.value);
    }
  }

  private endDump(): void {
    this.dump = undefined;
    this.held = [];
    this.heldBytes = 0;
  }
}
