// The link watch beside a BGP speaker, as `ocelot bgpd` and `ocelot node run` both run it: one
// rtnetlink socket subscribed to link and address notifications (RTM_NEWLINK / RTM_DELLINK,
// RTM_NEWADDR / RTM_DELADDR, both families), dumped once at start and again after a lost
// notification (ENOBUFS), each message handed to PeerLinks, and what it decides handed to the
// speaker as peerHold events (by "link"). Thin: no decision here. Not: which peer is held
// (peer_links.ts), what a hold does (the speaker core).

import { NetlinkSocket } from "../../fib/netlink_socket.js";
import {
  decodeAddrDetail,
  decodeLink,
  forEachMessage,
  MessageWriter,
  NETLINK_ROUTE,
  NLMSG_DONE,
  NLMSG_ERROR,
  RTM_DELADDR,
  RTM_DELLINK,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTNLGRP_IPV4_IFADDR,
  RTNLGRP_IPV6_IFADDR,
  RTNLGRP_LINK,
  writeAddrDump,
  writeLinkDump,
} from "../../fib/rtnetlink.js";
import type { Log } from "../../lib/log.js";
import { type LinkHold, type LinkPeersConfig, linkWatched, PeerLinks } from "./peer_links.js";

const RCVBUF = 1 << 20;

export class SpeakerLinkWatch {
  private readonly table = new PeerLinks();
  private socket: NetlinkSocket | undefined;
  private seq = 1;
  /** The dump in progress: its sequence number, then the next step. */
  private dumping: { seq: number; next: "addrs" | "done" } | undefined;
  private redump = false;
  private closed = false;

  constructor(
    private readonly log: Log,
    /** Called with held=true when a watched peer's link goes down, false when it is back. */
    private readonly onHold: (h: LinkHold) => void,
    /** A network namespace (a name under /run/netns, or a path) to watch instead of ours. */
    private readonly netns = "",
  ) {}

  /** Watches the peers of this config (opens the socket the first time a peer is watched). */
  apply(cfg: LinkPeersConfig): void {
    if (this.closed) return;
    if (!this.socket && cfg.peers.some((p) => linkWatched(p, cfg))) {
      try {
        this.socket = new NetlinkSocket(
          NETLINK_ROUTE,
          (1 << (RTNLGRP_LINK - 1)) |
            (1 << (RTNLGRP_IPV4_IFADDR - 1)) |
            (1 << (RTNLGRP_IPV6_IFADDR - 1)),
          RCVBUF,
          {
            onData: (b) => this.onData(b),
            onOverflow: () => this.startDump(),
            onError: (e) => this.log.error({ error: e.message }, "Link watch: netlink error"),
          },
          this.netns,
        );
      } catch (e) {
        this.log.warn(
          { error: (e as Error).message },
          "Link watch not started: a link going down is noticed by the hold timer (or BFD)",
        );
        return;
      }
      this.startDump();
    }
    this.emit(this.table.configure(cfg));
  }

  /** Says again which peers are held (to a speaker that was replaced). */
  replay(): void {
    this.emit(this.table.held());
  }

  /** The link each watched peer is on (null: not on a connected subnet). */
  status(): Record<string, string | null> {
    return this.table.onLinks();
  }

  close(): void {
    this.closed = true;
    this.socket?.close();
    this.socket = undefined;
  }

  private emit(holds: LinkHold[]): void {
    for (const h of holds) {
      this.log.info({ peer: h.peer, reason: h.reason }, h.held ? "Link down" : "Link up");
      this.onHold(h);
    }
  }

  /** Dumps links, then addresses (one dump at a time per socket); a lost notification restarts it. */
  private startDump(): void {
    if (!this.socket) return;
    if (this.dumping) {
      this.redump = true;
      return;
    }
    this.table.reset();
    this.send("links");
  }

  private send(what: "links" | "addrs"): void {
    const w = new MessageWriter(64);
    const seq = this.seq++;
    if (what === "links") writeLinkDump(w, seq);
    else writeAddrDump(w, seq);
    this.dumping = { seq, next: what === "links" ? "addrs" : "done" };
    const r = this.socket?.send(w.buf, 0, w.len) ?? 0;
    if (r < 0) {
      this.dumping = undefined;
      this.log.error({ errno: -r }, "Link watch: the dump request failed");
    }
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
        } else if (d.next === "addrs") this.send("addrs");
        else this.emit(this.table.dumped());
        return;
      }
      if (m.type === RTM_NEWLINK) {
        const l = decodeLink(m);
        if (l) this.emit(this.table.link({ ifindex: l.ifindex, name: l.name, flags: l.flags }));
      } else if (m.type === RTM_DELLINK) {
        const l = decodeLink(m);
        if (l) this.emit(this.table.linkDeleted(l.ifindex));
      } else if (m.type === RTM_NEWADDR || m.type === RTM_DELADDR) {
        const a = decodeAddrDetail(m);
        if (a?.address)
          this.emit(
            this.table.addr(
              {
                ifindex: a.ifindex,
                family: a.family,
                prefixLen: a.prefixLen,
                address: a.address,
              },
              m.type === RTM_NEWADDR,
            ),
          );
      }
    });
  }
}
