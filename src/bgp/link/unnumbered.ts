// Which IPv6 link-local neighbour an unnumbered peer (`interface`) is, pure: readings of each
// interface's neighbour table in, the chosen address per interface out, followed as it changes,
// as FRR's `neighbor IFACE interface` follows the router advertisements it hears. Owns: the
// choice (routers first, the newest of them; otherwise the one already chosen while it is still
// listed), the config with the chosen addresses filled in, and the status of a peer still
// waiting for one. Not: reading the table (neighbour_watch.ts, neighbour_poll.ts), what a new address does to the
// session (the speaker's diff: a new address is a new peer, so the session is reset).
import type { BgpdConfig, PeerConfig } from "../config.js";
import type { PeerStatus } from "../status.js";

/** An IPv6 neighbour as `ip -j -6 neigh show dev IFACE` reports it. */
export interface NeighbourEntry {
  dst: string;
  state?: string[];
  /** Present (null) when the neighbour is a router (it sent a router advertisement). */
  router?: unknown;
}

/** What follows the neighbour tables for bgpd: rtnetlink notifications, or a poll. */
export interface NeighbourFollower {
  readonly table: LinkLocalNeighbours;
  /** Follows these interfaces; resolves once their neighbours were read. */
  apply(ifaces: readonly string[]): Promise<void>;
  close(): void;
}

interface Seen {
  /** When it was first listed (as a router, for a router): larger is newer. */
  seq: number;
  router: boolean;
}

interface IfaceState {
  seen: Map<string, Seen>;
  /** The chosen address; kept while the table lists no link-local neighbour at all. */
  chosen: string | undefined;
}

const usable = (e: NeighbourEntry) =>
  e.dst.toLowerCase().startsWith("fe80:") &&
  !(e.state ?? []).some((s) => s === "FAILED" || s === "INCOMPLETE" || s === "NONE");

export class LinkLocalNeighbours {
  private seq = 0;
  private readonly ifaces = new Map<string, IfaceState>();

  /** The interfaces to follow; the others are forgotten. */
  follow(names: Iterable<string>): void {
    const keep = new Set(names);
    for (const n of keep)
      if (!this.ifaces.has(n)) this.ifaces.set(n, { seen: new Map(), chosen: undefined });
    for (const n of [...this.ifaces.keys()]) if (!keep.has(n)) this.ifaces.delete(n);
  }

  interfaces(): string[] {
    return [...this.ifaces.keys()];
  }

  /**
   * One reading of an interface's IPv6 neighbours (our own addresses left out); true when the
   * chosen neighbour changed. A router that is new (or newly a router) is taken at once: the
   * peer's interface came back with another address. Without routers, the chosen one stays
   * while it is listed, else the newest. A table with no usable link-local entry keeps the last
   * choice (an entry aged out of the cache is no reason to drop a session).
   */
  observe(iface: string, entries: readonly NeighbourEntry[]): boolean {
    const st = this.ifaces.get(iface);
    if (!st) return false;
    const now = new Map<string, boolean>();
    for (const e of entries) if (usable(e)) now.set(e.dst.toLowerCase(), e.router !== undefined);
    for (const [dst, router] of now) {
      const s = st.seen.get(dst);
      if (!s || (router && !s.router)) st.seen.set(dst, { seq: ++this.seq, router });
      else s.router = router;
    }
    for (const dst of [...st.seen.keys()]) if (!now.has(dst)) st.seen.delete(dst);
    const newest = (routerOnly: boolean) => {
      let best: [string, number] | undefined;
      for (const [dst, s] of st.seen)
        if ((!routerOnly || s.router) && (!best || s.seq > best[1])) best = [dst, s.seq];
      return best?.[0];
    };
    const pick =
      newest(true) ??
      (st.chosen !== undefined && st.seen.has(st.chosen) ? st.chosen : newest(false)) ??
      st.chosen;
    if (pick === st.chosen) return false;
    st.chosen = pick;
    return true;
  }

  /** The link-local address chosen on an interface, undefined while none was seen. */
  linkLocal(iface: string): string | undefined {
    return this.ifaces.get(iface)?.chosen;
  }
}

/** A configuration's unnumbered peers resolved: those with an address, and those still waiting. */
export interface ResolvedPeers {
  /** The config with every unnumbered peer that has a neighbour given "fe80::…%IFACE". */
  config: BgpdConfig;
  /** Unnumbered peers with no link-local neighbour on their interface yet (not in `config`). */
  waiting: PeerConfig[];
}

/**
 * Fills in the address of every unnumbered peer (`interface`) from `linkLocalOf` (its
 * interface's chosen neighbour, "fe80::1%eth0"); a peer without one waits, left out of the
 * config the speaker runs. Two peers ending on one address are a ConfigError.
 */
export function resolveInterfacePeers(
  cfg: BgpdConfig,
  linkLocalOf: (iface: string) => string | undefined,
): ResolvedPeers {
  const waiting: PeerConfig[] = [];
  const peers: PeerConfig[] = [];
  for (const p of cfg.peers) {
    if (p.interface === undefined) {
      peers.push(p);
      continue;
    }
    const ll = linkLocalOf(p.interface);
    if (ll === undefined) waiting.push({ ...p, address: p.interface });
    else peers.push({ ...p, address: `${ll}%${p.interface}` });
  }
  const seen = new Set<string>();
  for (const p of peers) {
    if (seen.has(p.address)) throw new Error(`duplicate peer ${p.address}`);
    seen.add(p.address);
  }
  return { config: { ...cfg, peers }, waiting };
}

/** Why an unnumbered peer waits, as status shows it. */
export function waitingReason(iface: string): string {
  return `no IPv6 link-local neighbour on ${iface} yet (waiting for its router advertisement or an entry in the neighbour table)`;
}

/** The status of an unnumbered peer still waiting for its neighbour: Idle, with the reason. */
export function waitingPeerStatus(p: PeerConfig, localAsn: number): PeerStatus {
  const iface = p.interface ?? p.address;
  return {
    address: iface,
    interface: iface,
    asn: p.asn,
    localAsn,
    type: p.asn === localAsn ? "internal" : "external",
    state: "Idle",
    uptimeSeconds: null,
    negotiated: null,
    prefixes: { received: 0, accepted: 0, advertised: 0 },
    messages: { in: 0, out: 0, updatesIn: 0 },
    sendQueueBytes: 0,
    establishedTransitions: 0,
    lastError: null,
    waiting: waitingReason(iface),
  };
}
