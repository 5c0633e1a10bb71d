// BFD for BGP peers: keeps one BFD session per configured peer that asks for one (bgpd's
// `peers[].bfd`), reconciled on every config (start, SIGHUP), and reports a session that leaves
// Up so the speaker can drop the BGP session at once, and one that comes Up so it may return. Owns only that mapping. Not: the protocol
// (session.ts), sockets (runtime.ts), or how the speaker drops a peer (the caller's onDown).
import type { BfdAuthType } from "./auth.js";
import type { BfdRuntime, BfdStateChange } from "./runtime.js";

/** What this module reads of a bgpd peer (config.ts's PeerConfig has it; no import upward). */
export interface BfdPeerConfig {
  address: string;
  sourceAddress?: string;
  bfd?: {
    minTx: number;
    minRx: number;
    multiplier: number;
    multihop: boolean;
    /** The key already read (config.ts resolves passwordFile). */
    authentication?: { type: BfdAuthType; keyId: number; password?: string };
  };
}

export interface BfdPeersLog {
  info(o: object, msg: string): void;
  warn(o: object, msg: string): void;
}

export class BfdPeers {
  private readonly unsubscribe: () => void;
  private readonly configured = new Map<string, string>();

  constructor(
    private readonly runtime: BfdRuntime,
    /** Called when a peer's BFD session goes from Up to Down: drop the BGP session now. */
    private readonly onDown: (address: string, change: BfdStateChange) => void,
    private readonly log?: BfdPeersLog,
    /** Called when a peer's BFD session comes Up (a held BGP session may come up again). */
    private readonly onUp?: (address: string, change: BfdStateChange) => void,
  ) {
    this.unsubscribe = runtime.onStateChange((c) => this.onChange(c));
  }

  /** Starts, retimes or stops BFD sessions so that exactly the peers with `bfd` have one. */
  async apply(peers: readonly BfdPeerConfig[]): Promise<void> {
    const want = new Map(peers.filter((p) => p.bfd).map((p) => [p.address, p]));
    for (const addr of [...this.configured.keys()])
      if (!want.has(addr)) {
        this.runtime.stop(addr);
        this.configured.delete(addr);
      }
    for (const [addr, p] of want) {
      const b = p.bfd as NonNullable<BfdPeerConfig["bfd"]>;
      const key = JSON.stringify([b, p.sourceAddress]);
      if (this.configured.get(addr) === key) continue;
      const a = b.authentication;
      await this.runtime.start({
        peer: addr,
        ...(p.sourceAddress ? { local: p.sourceAddress } : {}),
        multihop: b.multihop,
        timers: { desiredMinTxMs: b.minTx, requiredMinRxMs: b.minRx, detectMult: b.multiplier },
        ...(a?.password !== undefined
          ? {
              auth: {
                type: a.type,
                keyId: a.keyId,
                password: new Uint8Array(Buffer.from(a.password, "utf8")),
              },
            }
          : {}),
      });
      this.configured.set(addr, key);
    }
  }

  close(): void {
    this.unsubscribe();
  }

  private onChange(c: BfdStateChange): void {
    const line = { peer: c.peer, from: c.from, state: c.state, diag: c.diagName, at: c.at };
    // Our own AdminDown (BFD removed from the peer, or stopped) says nothing of the path: the
    // BGP session stays (RFC 5882 §3.2).
    if (c.from === "Up" && c.state !== "AdminDown") {
      this.log?.warn(line, "BFD session down");
      this.onDown(c.peer, c);
    } else {
      this.log?.info(line, "BFD session state changed");
      if (c.state === "Up") this.onUp?.(c.peer, c);
    }
  }
}
