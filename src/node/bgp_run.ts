// The node's BGP speaker, in-process: the same Speaker, kernel FIB (protocol 201, graceful hold)
// and status socket that `ocelot bgpd` runs, started from a rendered config and changed by
// Speaker.reconfigure (what SIGHUP does for bgpd), with bgpd's eBGP TTL hook and BFD for the
// peers that ask for it (BGPPeer spec.bfd; Down holds the BGP session down), and the link watch
// (a directly connected peer's link down holds its session down). A change of AS,
// router ID or cluster ID, which the RIB is built with, restarts the speaker on the same FIB. Not: where the config
// comes from (bgp_state.ts, daemon.ts).
import { rmSync } from "node:fs";
import { dirname } from "node:path";
import { SpeakerBfd } from "../bgp/bfd/speaker_bfd.js";
import { BmpClient } from "../bgp/bmp/client.js";
import { type BgpdConfig, fibGracefulHoldSeconds } from "../bgp/config.js";
import { realClock } from "../bgp/io/clock.js";
import { ttlHook } from "../bgp/io/ttl.js";
import { SpeakerLinkWatch } from "../bgp/link/link_watch.js";
import { UpdateDump, type UpdateDumpOptions } from "../bgp/mrt/update_dump.js";
import { makeWireBridge, type WireAttrs } from "../bgp/speaker/attrs.js";
import { Speaker } from "../bgp/speaker/runtime.js";
import {
  type NodeStatus,
  type RoutesSnapshot,
  type StatusSnapshot,
  serveStatus,
} from "../bgp/status.js";
import type { KernelFib } from "../fib/kernel_fib.js";
import type { Log } from "../lib/log.js";
import { NETNS_STATUS_DIR } from "../lib/status_socket_path.js";

export interface BgpHost {
  readonly config: BgpdConfig;
  /** Applies a new config by diff (or a restart when the RIB's identity changed). */
  apply(next: BgpdConfig): Promise<void>;
  /** Stops the sessions, withdraws our kernel routes, closes the socket and the FIB. */
  stop(): Promise<void>;
  /** The speaker's status snapshot and its kernel FIB's counters (for /metrics). */
  status(): { speaker: StatusSnapshot; fib: FibStatus };
  /** The speaker's Loc-RIB (as the status socket's "routes"). */
  routes(): RoutesSnapshot;
  /** The BMP station connection (for /metrics), when one is configured. */
  readonly bmp?: BmpClient;
}

export type FibStatus = ReturnType<KernelFib["status"]>;

export async function startBgp(
  first: BgpdConfig,
  deps: {
    log: Log;
    netns?: string;
    nodeStatus?: () => NodeStatus;
    extraStatus?: Record<string, (args: unknown) => unknown>;
    /** Append every UPDATE received to MRT BGP4MP files there (rotated). */
    mrtUpdates?: UpdateDumpOptions;
    /** Export to a BMP station (RFC 7854). */
    bmp?: { station: string; statsIntervalMs: number; adjRibOut?: boolean };
    /** Each BGP FIB batch's time to the kernel's acknowledgement. */
    onFibBatch?: (seconds: number) => void;
    onUpdateToKernel?: (seconds: number) => void;
  },
): Promise<BgpHost> {
  const { KernelFib } = await import("../fib/kernel_fib.js");
  const log = deps.log;
  const fib: KernelFib = await KernelFib.open({
    ...(deps.netns ? { netns: deps.netns } : {}),
    protocols: [first.fib.protocol],
    // As bgpd's: longer toward peers with long-lived graceful restart (RFC 9494).
    gracefulHoldMs: fibGracefulHoldSeconds(first) * 1000,
    // The gateway in each route unless OCELOT_FIB_NEXTHOP_OBJECTS=1 (then a nexthop object, as
    // bgpd's): a node holds a few routes per node, where objects save the kernel nothing worth
    // it, and iproute2 6.1's `ip route flush` refuses routes that name one (EINVAL), which an
    // operator used to Calico's BIRD routes would meet first.
    nexthopObjects: process.env.OCELOT_FIB_NEXTHOP_OBJECTS === "1",
    onEvent: (e) => log.debug({ fib: e }, "BGP FIB event"),
  });
  const onSocket = await ttlHook(log);
  const dump = deps.mrtUpdates ? new UpdateDump(deps.mrtUpdates) : undefined;
  // One station connection for the node; a restarted speaker re-attaches the same monitor.
  const bmp = deps.bmp
    ? new BmpClient({
        ...deps.bmp,
        sysDescr: `Ocelot node AS ${first.asn} router ID ${first.routerId}`,
        log,
      })
    : undefined;
  const make = (cfg: BgpdConfig) =>
    new Speaker<WireAttrs>(cfg, {
      clock: realClock,
      log,
      fib,
      bridge: makeWireBridge(),
      ...(onSocket ? { onSocket } : {}),
      ...(bmp ? { tap: bmp.monitor } : {}),
      ...(deps.onFibBatch ? { onFibBatch: deps.onFibBatch } : {}),
      ...(deps.onUpdateToKernel ? { onUpdateToKernel: deps.onUpdateToKernel } : {}),
      ...(dump
        ? {
            onUpdateReceived: (peer, msg, as4) =>
              dump.write(
                {
                  peerAs: peer.asn,
                  localAs: cfg.asn,
                  peerAddress: peer.address,
                  localAddress: peer.sourceAddress ?? cfg.routerId,
                },
                msg,
                as4,
              ),
          }
        : {}),
    });
  let speaker = make(first);
  // BFD Down drops the peer's BGP session at once and holds it down until BFD is Up again.
  const bfd = new SpeakerBfd(log, (address, held) =>
    speaker.signal({
      kind: "peerHold",
      peer: address,
      held,
      reason: held ? "BFD session down" : "BFD session up",
    }),
  );
  // A directly connected peer's link going down drops its session at once and holds it down
  // until the link is up again (config checkLink; the node's --bgp-check-link).
  const links = new SpeakerLinkWatch(
    log,
    (h) =>
      speaker.signal({
        kind: "peerHold",
        by: "link",
        peer: h.peer,
        held: h.held,
        reason: h.reason,
      }),
    deps.netns ?? "",
  );
  const withBfd = (s: StatusSnapshot): StatusSnapshot => {
    const b = bfd.status();
    return b ? { ...s, bfd: b } : s;
  };
  // The status socket answers from whichever speaker runs now, with the node's addresses.
  const provider = {
    status: () => ({
      ...withBfd(speaker.status()),
      ...(deps.nodeStatus ? { node: deps.nodeStatus() } : {}),
    }),
    routes: () => speaker.routes(),
  };
  let status: { close(): Promise<void> };
  try {
    await speaker.start();
    links.apply(first);
    await bfd.apply(first);
    bmp?.start();
    status = await serveStatus(first.status.socket, provider, {
      route: (args) => speaker.route(String((args as { prefix?: unknown })?.prefix ?? "")),
      ...deps.extraStatus,
    });
  } catch (err) {
    bfd.close();
    links.close();
    await speaker.stop().catch(() => {});
    await fib.close();
    throw err;
  }
  let chain = Promise.resolve();
  const host: BgpHost = {
    get config() {
      return speaker.config;
    },
    apply(next) {
      chain = chain.then(async () => {
        const cur = speaker.config;
        if (
          cur.asn !== next.asn ||
          cur.routerId !== next.routerId ||
          cur.clusterId !== next.clusterId
        ) {
          log.info(
            { asn: next.asn, routerId: next.routerId, clusterId: next.clusterId },
            "BGP identity changed: restarting the speaker",
          );
          await speaker.stop();
          speaker = make(next);
          await speaker.start();
          links.replay();
        } else await speaker.reconfigure(next);
        links.apply(next);
        await bfd
          .apply(next)
          .catch((e: Error) => log.error({ error: e.message }, "BFD not reconfigured"));
      });
      return chain;
    },
    status: () => ({ speaker: withBfd(speaker.status()), fib: fib.status() }),
    routes: () => speaker.routes(),
    ...(bmp ? { bmp } : {}),
    async stop() {
      await chain.catch(() => {});
      await speaker.stop().catch((e: Error) => log.error({ error: e.message }, "Speaker stop"));
      await bmp?.stop();
      bfd.close();
      links.close();
      await status.close();
      // A namespace's well-known socket directory goes with its daemon.
      const dir = dirname(first.status.socket);
      if (dirname(dir) === NETNS_STATUS_DIR) rmSync(dir, { recursive: true, force: true });
      await fib.close();
    },
  };
  return host;
}
