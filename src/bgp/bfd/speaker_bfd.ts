// BFD beside a BGP speaker, as `ocelot bgpd` and `ocelot node run` both run it: the BFD runtime
// (its sockets, loaded only once a peer asks for BFD) and the peers' sessions reconciled on every
// config, with each session's transitions turned into holds of the BGP session: Up to Down holds
// the peer down (dropped at once, not re-established), back to Up releases it. Not: the protocol
// (session.ts, runtime.ts), the hold itself (the speaker core's peerHold event).
import type { Log } from "../../lib/log.js";
import type { BfdPeerConfig, BfdPeers } from "./bgp_peers.js";
import type { BfdRuntime } from "./runtime.js";

export class SpeakerBfd {
  private runtime?: BfdRuntime;
  private peers?: BfdPeers;

  constructor(
    private readonly log: Log,
    /** Called with held=true when a peer's BFD session leaves Up, false when it is Up again. */
    private readonly onHold: (address: string, held: boolean) => void,
  ) {}

  /** Starts, retimes or stops BFD sessions so that exactly the peers with `bfd` have one. */
  async apply(cfg: { peers: readonly BfdPeerConfig[] }): Promise<void> {
    if (!this.peers && !cfg.peers.some((p) => p.bfd)) return;
    if (!this.peers) {
      const { BfdRuntime } = await import("./runtime.js");
      const { BfdPeers } = await import("./bgp_peers.js");
      this.runtime = new BfdRuntime({ log: this.log });
      this.peers = new BfdPeers(
        this.runtime,
        (address) => this.onHold(address, true),
        this.log,
        (address) => this.onHold(address, false),
      );
    }
    await this.peers.apply(cfg.peers);
  }

  status(): ReturnType<BfdRuntime["status"]> | undefined {
    return this.runtime?.status();
  }

  counters() {
    return this.runtime?.counters;
  }

  close(): void {
    this.peers?.close();
    this.runtime?.close();
  }
}
