// Which directly connected peers have lost their link, pure: the kernel's links and addresses
// (as rtnetlink dumps and notifications describe them) and the peers in, holds and releases of
// peers' sessions out, as BIRD's `check link` and FRR's fast external failover decide them.
// Owns: the link/address table, which peers are watched and on which link, and their held state.
// Not: the netlink socket (link_watch.ts), what a hold does to a session (the speaker core).
//
// A peer is watched unless `checkLink` is false (the peer's, else the config's; default true)
// and it is multihop (eBGP `multihop`, or `ttlSecurity` > 1 hop). An unnumbered peer (or one
// with a zone, "fe80::1%eth0") is on its interface by name. A numbered one, eBGP or iBGP, is on
// each link with an address whose connected subnet holds the peer; a peer never seen on a
// connected subnet is not watched (it is reached through routes, which we leave to the hold
// timer). A watched peer is held while no link it is on is up with its carrier (IFF_UP and
// IFF_LOWER_UP, not IFF_DORMANT), or once its connected subnet is gone.
//
// The carrier is IFF_LOWER_UP, not IFF_RUNNING (BIRD reads a link so; the kernel marks its
// routes linkdown by the carrier too): the kernel sets IFF_LOWER_UP with the carrier, at once,
// but IFF_RUNNING (operstate UP) only when its deferred linkwatch work has run, which on a fresh
// veth was seen 0.2-12 s later on a loaded host; reading IFF_RUNNING held every session on such
// a link down that long after start.
import { addressBytes } from "../../lib/ip.js";

/** Interface flags (<linux/if.h>): administratively up. */
export const IFF_UP = 0x1;
/** Operationally up (operstate UP or UNKNOWN): follows the carrier late. Not read here. */
export const IFF_RUNNING = 0x40;
/** The carrier is there (the driver says so; set and cleared at once). */
export const IFF_LOWER_UP = 0x10000;
/** The driver holds the link dormant (e.g. waiting for 802.1X): no traffic yet. */
export const IFF_DORMANT = 0x20000;

/** Whether a link's flags say it can carry traffic: up, with its carrier, not dormant. */
export function linkUsable(flags: number): boolean {
  return (flags & IFF_UP) !== 0 && (flags & IFF_LOWER_UP) !== 0 && (flags & IFF_DORMANT) === 0;
}

/** Why a link's flags say it cannot carry traffic ("down", "has no carrier", "is dormant"). */
function linkState(flags: number): string {
  if ((flags & IFF_UP) === 0) return "down";
  if ((flags & IFF_LOWER_UP) === 0) return "has no carrier";
  return (flags & IFF_DORMANT) !== 0 ? "is dormant" : "up";
}

export interface LinkFacts {
  ifindex: number;
  name: string;
  /** Interface flags (ifinfomsg.ifi_flags). */
  flags: number;
}

export interface AddrFacts {
  ifindex: number;
  family: 4 | 6;
  prefixLen: number;
  /** The local address's bytes. */
  address: Uint8Array;
}

/** What the watch needs of a peer's configuration (a PeerConfig fits). */
export interface LinkPeer {
  address: string;
  interface?: string;
  multihop?: number;
  ttlSecurity?: number;
  checkLink?: boolean;
}

export interface LinkPeersConfig {
  checkLink?: boolean;
  peers: readonly LinkPeer[];
}

/** A peer's session to hold down (its link went down) or release (the link is back). */
export interface LinkHold {
  peer: string;
  held: boolean;
  reason: string;
}

interface PeerState {
  cfg: LinkPeer;
  family: 4 | 6;
  bytes: Uint8Array | undefined;
  /** The interface it is on by configuration (unnumbered, or an address with a zone). */
  ifname: string | undefined;
  /** The link of its connected subnet when last seen (numbered peers). */
  seenOn: string | undefined;
  held: boolean;
}

/** Whether a peer's config asks for the link watch (directly connected, not turned off). */
export function linkWatched(p: LinkPeer, cfg: Pick<LinkPeersConfig, "checkLink">): boolean {
  if ((p.checkLink ?? cfg.checkLink ?? true) === false) return false;
  if (p.multihop !== undefined) return false;
  // GTSM (RFC 5082): 1 hop is a directly connected peer, more are not.
  return (p.ttlSecurity ?? 1) <= 1;
}

function inSubnet(a: AddrFacts, family: 4 | 6, bytes: Uint8Array): boolean {
  if (a.family !== family || a.address.length !== bytes.length) return false;
  const full = a.prefixLen >> 3;
  for (let i = 0; i < full; i++) if (a.address[i] !== bytes[i]) return false;
  const rest = a.prefixLen & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((a.address[full] as number) & mask) === ((bytes[full] as number) & mask);
}

const addrKey = (a: AddrFacts) => `${a.ifindex}|${a.address.join(".")}|${a.prefixLen}`;

export class PeerLinks {
  private readonly links = new Map<number, LinkFacts>();
  private readonly addrs = new Map<string, AddrFacts>();
  private readonly peers = new Map<string, PeerState>();
  private cfg: LinkPeersConfig = { peers: [] };
  /** False until the first full dump was read: nothing is decided on a partial table. */
  private ready = false;

  /** The peers to watch changed (start, reload): holds and releases that follow. */
  configure(cfg: LinkPeersConfig): LinkHold[] {
    this.cfg = cfg;
    const out: LinkHold[] = [];
    const next = new Set<string>();
    for (const p of cfg.peers) {
      next.add(p.address);
      const old = this.peers.get(p.address);
      const pct = p.address.indexOf("%");
      const bare = pct < 0 ? p.address : p.address.slice(0, pct);
      const family = bare.includes(":") ? 6 : 4;
      let bytes: Uint8Array | undefined;
      try {
        bytes = addressBytes(family, bare);
      } catch {
        bytes = undefined;
      }
      const ifname = p.interface ?? (pct < 0 ? undefined : p.address.slice(pct + 1));
      const st: PeerState = old ?? {
        cfg: p,
        family,
        bytes,
        ifname,
        seenOn: undefined,
        held: false,
      };
      st.cfg = p;
      st.family = family;
      st.bytes = bytes;
      st.ifname = ifname;
      this.peers.set(p.address, st);
    }
    for (const a of [...this.peers.keys()]) if (!next.has(a)) this.peers.delete(a);
    this.evaluate(out);
    return out;
  }

  /** The table is complete (the first dumps were read): decisions start. */
  dumped(): LinkHold[] {
    this.ready = true;
    const out: LinkHold[] = [];
    this.evaluate(out);
    return out;
  }

  /** Starts a new full table (after a lost notification): links and addresses are dumped again. */
  reset(): void {
    this.links.clear();
    this.addrs.clear();
    this.ready = false;
  }

  /** RTM_NEWLINK (added or changed). */
  link(l: LinkFacts): LinkHold[] {
    this.links.set(l.ifindex, l);
    return this.after();
  }

  /** RTM_DELLINK: the link and its addresses are gone. */
  linkDeleted(ifindex: number): LinkHold[] {
    this.links.delete(ifindex);
    for (const [k, a] of this.addrs) if (a.ifindex === ifindex) this.addrs.delete(k);
    return this.after();
  }

  /** RTM_NEWADDR / RTM_DELADDR. */
  addr(a: AddrFacts, added: boolean): LinkHold[] {
    if (added) this.addrs.set(addrKey(a), a);
    else this.addrs.delete(addrKey(a));
    return this.after();
  }

  /** Peers held now (their link is down), with why. */
  held(): LinkHold[] {
    const out: LinkHold[] = [];
    for (const [peer, st] of this.peers)
      if (st.held) out.push({ peer, held: true, reason: this.downReason(st) ?? "link down" });
    return out;
  }

  /** The link each watched peer is on (for status), by peer address. */
  onLinks(): Record<string, string | null> {
    const out: Record<string, string | null> = {};
    for (const [peer, st] of this.peers)
      if (linkWatched(st.cfg, this.cfg)) out[peer] = st.ifname ?? st.seenOn ?? null;
    return out;
  }

  private after(): LinkHold[] {
    const out: LinkHold[] = [];
    if (this.ready) this.evaluate(out);
    return out;
  }

  private evaluate(out: LinkHold[]): void {
    if (!this.ready) return;
    for (const [peer, st] of this.peers) {
      const why = linkWatched(st.cfg, this.cfg) ? this.downReason(st) : undefined;
      const held = why !== undefined;
      if (held === st.held) continue;
      st.held = held;
      out.push({ peer, held, reason: why ?? `link ${st.ifname ?? st.seenOn ?? "?"} up` });
    }
  }

  /** Why the peer's link is down, or undefined when it is up (or the peer is not on a link). */
  private downReason(st: PeerState): string | undefined {
    const byName = (name: string) => {
      for (const l of this.links.values()) if (l.name === name) return l;
      return undefined;
    };
    const up = (l: LinkFacts | undefined) => l !== undefined && linkUsable(l.flags);
    const state = (l: LinkFacts | undefined) => (l === undefined ? "gone" : linkState(l.flags));
    if (st.ifname !== undefined) {
      const l = byName(st.ifname);
      return up(l) ? undefined : `link ${st.ifname} ${state(l)}`;
    }
    if (!st.bytes) return undefined;
    const on: LinkFacts[] = [];
    for (const a of this.addrs.values()) {
      if (!inSubnet(a, st.family, st.bytes)) continue;
      const l = this.links.get(a.ifindex);
      if (l) on.push(l);
    }
    if (on.length > 0) {
      if (on.some(up)) {
        st.seenOn = (on.find(up) as LinkFacts).name;
        return undefined;
      }
      st.seenOn = (on[0] as LinkFacts).name;
      return `link ${st.seenOn} ${state(on[0])}`;
    }
    if (st.seenOn === undefined) return undefined;
    const l = byName(st.seenOn);
    return up(l)
      ? `no connected subnet holds the peer (its address left ${st.seenOn})`
      : `link ${st.seenOn} ${state(l)}`;
  }
}
