// The neighbour tables of unnumbered peers' interfaces, read for `ocelot bgpd`: `ip -j -6 neigh
// show dev IFACE` for each followed interface, once at start and then every `intervalMs` (one
// read per interface in flight at most, each bounded by a timeout), each reading handed to
// LinkLocalNeighbours, and `onChange` called when an interface's chosen neighbour changed.
// Stands in for the rtnetlink watch (neighbour_watch.ts) when its socket cannot be opened: a few
// `ip` runs every two seconds for the handful of unnumbered interfaces a node has. Thin: no
// decision here (unnumbered.ts decides).
import { execFile } from "node:child_process";
import { networkInterfaces } from "node:os";
import type { Log } from "../../lib/log.js";
import { LinkLocalNeighbours, type NeighbourEntry, type NeighbourFollower } from "./unnumbered.js";

const READ_TIMEOUT_MS = 10_000;

/** One interface's IPv6 neighbours (`ip -j -6 neigh`), our own addresses left out. */
function readNeighbours(iface: string): Promise<NeighbourEntry[]> {
  return new Promise((resolve, reject) => {
    execFile(
      "ip",
      ["-j", "-6", "neigh", "show", "dev", iface],
      { encoding: "utf8", timeout: READ_TIMEOUT_MS },
      (err, out, stderr) => {
        if (err) {
          reject(new Error((stderr || err.message).trim()));
          return;
        }
        // Our own link-local address can be listed too (seen on veths): never peer with ourselves.
        const own = new Set(
          (networkInterfaces()[iface] ?? []).map((a) => a.address.split("%")[0]?.toLowerCase()),
        );
        try {
          const all = JSON.parse(out || "[]") as NeighbourEntry[];
          resolve(all.filter((n) => !own.has(n.dst.toLowerCase())));
        } catch (e) {
          reject(e as Error);
        }
      },
    );
  });
}

export class NeighbourPoll implements NeighbourFollower {
  readonly table = new LinkLocalNeighbours();
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<string>();
  /** Interfaces whose last read failed (logged once until a read works again). */
  private readonly failing = new Set<string>();
  private closed = false;

  constructor(
    private readonly log: Log,
    /** An interface's chosen neighbour changed (LinkLocalNeighbours.linkLocal has the new one). */
    private readonly onChange: (iface: string) => void,
    private readonly intervalMs = 2000,
  ) {}

  /** Follows these interfaces (none: the poll stops); reads the new ones now. */
  async apply(ifaces: readonly string[]): Promise<void> {
    if (this.closed) return;
    const before = new Set(this.table.interfaces());
    this.table.follow(ifaces);
    if (ifaces.length === 0) {
      if (this.timer) clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    if (!this.timer) {
      this.timer = setInterval(() => void this.readAll(), this.intervalMs);
      this.timer.unref();
    }
    await Promise.all(ifaces.filter((i) => !before.has(i)).map((i) => this.read(i)));
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async readAll(): Promise<void> {
    await Promise.all(this.table.interfaces().map((i) => this.read(i)));
  }

  private async read(iface: string): Promise<void> {
    if (this.inFlight.has(iface) || this.closed) return;
    this.inFlight.add(iface);
    try {
      const entries = await readNeighbours(iface);
      this.failing.delete(iface);
      if (!this.closed && this.table.observe(iface, entries)) this.onChange(iface);
    } catch (e) {
      // A missing interface (not created yet, or re-created) reads again at the next round.
      if (!this.failing.has(iface))
        this.log.warn(
          { interface: iface, error: (e as Error).message },
          "Cannot read the neighbours of an unnumbered peer's interface; trying again",
        );
      this.failing.add(iface);
    } finally {
      this.inFlight.delete(iface);
    }
  }
}
