// The neighbour tables of unnumbered peers' interfaces, followed for `ocelot bgpd` by rtnetlink
// notifications: one socket subscribed to link and neighbour changes (RTNLGRP_LINK,
// RTNLGRP_NEIGH: RTM_NEWLINK / RTM_DELLINK, RTM_NEWNEIGH / RTM_DELNEIGH), dumped once at start
// and again after a lost notification (ENOBUFS); after each change the interface's IPv6
// neighbours are handed to LinkLocalNeighbours, and `onChange` is called when its chosen
// neighbour changed. Thin: no decision here (unnumbered.ts decides). Not: the poll that stands
// in when the socket cannot be opened (neighbour_poll.ts).
import { networkInterfaces } from "node:os";
import { NetlinkSocket } from "../../fib/netlink_socket.js";
import {
  AF_INET6,
  decodeLinkDetail,
  decodeNeigh,
  forEachMessage,
  formatAddress,
  formatMac,
  MessageWriter,
  NETLINK_ROUTE,
  NLMSG_DONE,
  NLMSG_ERROR,
  NTF_ROUTER,
  NUD_FAILED,
  NUD_VALID,
  RTM_DELLINK,
  RTM_DELNEIGH,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTNLGRP_LINK,
  RTNLGRP_NEIGH,
  writeLinkDump,
  writeNeighDump,
} from "../../fib/rtnetlink.js";
import type { Log } from "../../lib/log.js";
import { LinkLocalNeighbours, type NeighbourEntry, type NeighbourFollower } from "./unnumbered.js";

const RCVBUF = 1 << 20;
/** How long apply() waits for the first dump (a hang limit, not a timing). */
const FIRST_DUMP_MS = 30_000;

export class NeighbourWatch implements NeighbourFollower {
  readonly table = new LinkLocalNeighbours();
  private readonly socket: NetlinkSocket;
  private readonly links = new Map<number, string>();
  /** Each link's own MAC: a neighbour entry with it is ourselves (seen on veths). */
  private readonly macs = new Map<number, string>();
  /** IPv6 link-local neighbours by ifindex, then address. */
  private readonly neigh = new Map<number, Map<string, NeighbourEntry>>();
  private seq = 1;
  private dumping: { seq: number; next: "neigh" | "done" } | undefined;
  private redump = false;
  /** False while a full dump is being read: nothing is decided on a partial table. */
  private ready = false;
  private waiters: (() => void)[] = [];
  private closed = false;

  /** Opens the socket (throws when it cannot: the caller polls instead). */
  constructor(
    private readonly log: Log,
    private readonly onChange: (iface: string) => void,
    /** A network namespace (a name under /run/netns, or a path) to watch instead of ours. */
    netns = "",
  ) {
    this.socket = new NetlinkSocket(
      NETLINK_ROUTE,
      (1 << (RTNLGRP_LINK - 1)) | (1 << (RTNLGRP_NEIGH - 1)),
      RCVBUF,
      {
        onData: (b) => this.onData(b),
        onOverflow: () => this.startDump(),
        onError: (e) => this.log.error({ error: e.message }, "Neighbour watch: netlink error"),
      },
      netns,
    );
    this.startDump();
  }

  /** Follows these interfaces; resolves once their neighbours were read (the first dump). */
  async apply(ifaces: readonly string[]): Promise<void> {
    if (this.closed) return;
    this.table.follow(ifaces);
    if (!this.ready) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, FIRST_DUMP_MS);
        t.unref();
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
      return;
    }
    for (const i of ifaces) this.observe(i);
  }

  close(): void {
    this.closed = true;
    this.socket.close();
    for (const w of this.waiters.splice(0)) w();
  }

  private startDump(): void {
    if (this.closed) return;
    if (this.dumping) {
      this.redump = true;
      return;
    }
    this.ready = false;
    this.links.clear();
    this.macs.clear();
    this.neigh.clear();
    this.send("links");
  }

  private send(what: "links" | "neigh"): void {
    const w = new MessageWriter(64);
    const seq = this.seq++;
    if (what === "links") writeLinkDump(w, seq);
    else writeNeighDump(w, seq, 6);
    this.dumping = { seq, next: what === "links" ? "neigh" : "done" };
    const r = this.socket.send(w.buf, 0, w.len);
    if (r < 0) {
      this.dumping = undefined;
      this.log.error({ errno: -r }, "Neighbour watch: the dump request failed");
    }
  }

  private observe(iface: string): void {
    if (!this.ready || this.closed) return;
    const entries: NeighbourEntry[] = [];
    for (const [ix, name] of this.links)
      if (name === iface) entries.push(...(this.neigh.get(ix)?.values() ?? []));
    // Our own link-local address can be listed too (seen on veths): never peer with ourselves.
    const own = new Set(
      (networkInterfaces()[iface] ?? []).map((a) => a.address.split("%")[0]?.toLowerCase()),
    );
    if (
      this.table.observe(
        iface,
        entries.filter((e) => !own.has(e.dst)),
      )
    )
      this.onChange(iface);
  }

  private onData(buf: Buffer): void {
    forEachMessage(buf, (m) => {
      if (m.type === NLMSG_DONE || m.type === NLMSG_ERROR) {
        const d = this.dumping;
        if (!d || m.seq !== d.seq) return;
        this.dumping = undefined;
        if (this.redump) {
          this.redump = false;
          this.startDump();
        } else if (d.next === "neigh") this.send("neigh");
        else {
          this.ready = true;
          for (const w of this.waiters.splice(0)) w();
          for (const i of this.table.interfaces()) this.observe(i);
        }
        return;
      }
      if (m.type === RTM_NEWLINK) {
        const l = decodeLinkDetail(m);
        if (!l) return;
        const was = this.links.get(l.ifindex);
        this.links.set(l.ifindex, l.name);
        if (l.mac !== undefined) this.macs.set(l.ifindex, l.mac);
        if (was !== undefined && was !== l.name) this.observe(was);
        this.observe(l.name);
      } else if (m.type === RTM_DELLINK) {
        const l = decodeLinkDetail(m);
        if (!l) return;
        const name = this.links.get(l.ifindex);
        this.links.delete(l.ifindex);
        this.macs.delete(l.ifindex);
        this.neigh.delete(l.ifindex);
        if (name !== undefined) this.observe(name);
      } else if (m.type === RTM_NEWNEIGH || m.type === RTM_DELNEIGH) {
        const n = decodeNeigh(m);
        if (!n || n.family !== AF_INET6 || n.dst?.length !== 16) return;
        const dst = formatAddress(n.dst);
        if (!dst.startsWith("fe80:")) return;
        let on = this.neigh.get(n.ifindex);
        const self = n.lladdr !== undefined && formatMac(n.lladdr) === this.macs.get(n.ifindex);
        if (m.type === RTM_DELNEIGH || self) on?.delete(dst);
        else {
          if (!on) {
            on = new Map();
            this.neigh.set(n.ifindex, on);
          }
          on.set(dst, {
            dst,
            // Not resolved yet (NONE, INCOMPLETE) or failed: not a neighbour to peer with.
            state: n.state & NUD_FAILED ? ["FAILED"] : n.state & NUD_VALID ? [] : ["INCOMPLETE"],
            ...(n.flags & NTF_ROUTER ? { router: null } : {}),
          });
        }
        const name = this.links.get(n.ifindex);
        if (name !== undefined) this.observe(name);
      }
    });
  }
}
