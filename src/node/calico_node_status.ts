// The node's CalicoNodeStatus: built (pure) from the speaker's status and routes, the peers'
// kinds and the daemon's readiness, and written to the datastore by a small loop: at once when
// it changed (but not more often than a minimum gap), and every update period anyway so readers
// can tell a live node from a stale one by status.lastUpdated. A CalicoNodeStatus a user created
// for the node keeps its spec (classes, updatePeriodSeconds), as calico-node honours it. Not: the
// resource's schema and display (src/api/caliconodestatus.ts).
import type {
  CalicoNodePeer,
  CalicoNodeRoute,
  CalicoNodeStatus,
  CalicoNodeStatusSpec,
  CalicoNodeStatusStatus,
} from "../api/caliconodestatus.js";
import { ResourceClient } from "../api/client.js";
import { API_VERSION } from "../api/ippool.js";
import { kindOf } from "../api/registry.js";
import type { RoutesSnapshot, StatusSnapshot } from "../bgp/status.js";
import type { Datastore } from "../datastore/types.js";
import type { Log } from "../lib/log.js";
import type { PeerKind } from "./bgp_state.js";

/** Routes listed per family at most (a full table would make the record huge). */
export const MAX_STATUS_ROUTES = 1000;
export const OCELOT_VERSION = "ocelot 0.1.0";

export interface NodeStatusInput {
  status: StatusSnapshot | undefined;
  routes: RoutesSnapshot | undefined;
  peerKinds: Record<string, PeerKind>;
  ready: boolean;
  bootTime: string;
  lastReconfiguration?: string;
}

const isV6 = (a: string) => a.includes(":");

/** The status, without lastUpdated, for the classes asked for (all three by default). */
export function buildNodeStatus(
  input: NodeStatusInput,
  classes: readonly string[],
  nowMs: number,
): Omit<CalicoNodeStatusStatus, "lastUpdated"> {
  const out: Omit<CalicoNodeStatusStatus, "lastUpdated"> = {};
  const s = input.status;
  if (classes.includes("Agent")) {
    const daemon = {
      state: input.ready ? ("Ready" as const) : ("NotReady" as const),
      version: OCELOT_VERSION,
      ...(s ? { routerID: s.routerId } : {}),
      lastBootTime: input.bootTime,
      ...(input.lastReconfiguration ? { lastReconfigurationTime: input.lastReconfiguration } : {}),
    };
    out.agent = { birdV4: daemon, birdV6: daemon };
  }
  if (classes.includes("BGP")) {
    const peers = (s?.peers ?? []).map((p): CalicoNodePeer & { v6: boolean } => ({
      peerIP: p.address,
      type: input.peerKinds[p.address]?.type ?? "GlobalPeer",
      state: p.state as CalicoNodePeer["state"],
      ...(p.uptimeSeconds !== null
        ? { since: new Date(nowMs - p.uptimeSeconds * 1000).toISOString() }
        : {}),
      v6: isV6(p.address),
    }));
    const strip = ({ v6: _v6, ...p }: CalicoNodePeer & { v6: boolean }) => p;
    const v4 = peers.filter((p) => !p.v6);
    const v6 = peers.filter((p) => p.v6);
    const up = (l: typeof peers) => l.filter((p) => p.state === "Established").length;
    out.bgp = {
      numberEstablishedV4: up(v4),
      numberNotEstablishedV4: v4.length - up(v4),
      numberEstablishedV6: up(v6),
      numberNotEstablishedV6: v6.length - up(v6),
      peersV4: v4.map(strip),
      peersV6: v6.map(strip),
    };
  }
  if (classes.includes("Routes")) {
    const routesV4: CalicoNodeRoute[] = [];
    const routesV6: CalicoNodeRoute[] = [];
    for (const r of input.routes?.routes ?? []) {
      const list = isV6(r.prefix) ? routesV6 : routesV4;
      if (list.length >= MAX_STATUS_ROUTES) continue;
      const local = r.best.peer === "local";
      const mesh = input.peerKinds[r.best.peer]?.type === "NodeMesh";
      list.push(
        local
          ? { type: "RIB", destination: r.prefix, learnedFrom: { sourceType: "Static" } }
          : {
              type: "FIB",
              destination: r.prefix,
              gateway: r.best.nextHop,
              learnedFrom: { sourceType: mesh ? "NodeMesh" : "BGPPeer", peerIP: r.best.peer },
            },
      );
    }
    out.routes = { routesV4, routesV6 };
  }
  return out;
}

/** Whether to write now: changed (and the minimum gap passed), or the period is up. */
export function shouldWrite(
  o: { changed: boolean; lastWriteMs: number | undefined; nowMs: number },
  periodMs: number,
  minGapMs: number,
): boolean {
  if (o.lastWriteMs === undefined) return true;
  const since = o.nowMs - o.lastWriteMs;
  if (o.changed && since >= minGapMs) return true;
  return periodMs > 0 && since >= periodMs;
}

export interface NodeStatusWriterOptions {
  nodename: string;
  /** The update period when no CalicoNodeStatus for the node names one (0: never written). */
  periodMs: number;
  /** Least time between two writes caused by changes (default 2 s). */
  minGapMs?: number;
  /** How often the status is looked at for a change (default 1 s). */
  checkMs?: number;
  input: () => NodeStatusInput;
  log: Log;
}

/** Writes the node's CalicoNodeStatus (named after the node) on change and every period. */
export class NodeStatusWriter {
  private readonly client: ResourceClient;
  private timer: NodeJS.Timeout | undefined;
  private lastWriteMs: number | undefined;
  private lastContent = "";
  private busy = false;
  private failures = 0;
  /** Writes done (for tests and metrics). */
  writes = 0;

  constructor(
    store: Datastore,
    private readonly o: NodeStatusWriterOptions,
  ) {
    this.client = new ResourceClient(store);
  }

  start(): void {
    if (this.o.periodMs <= 0) return;
    const tick = () => {
      this.timer = setTimeout(() => void this.check().finally(tick), this.o.checkMs ?? 1000);
      this.timer.unref?.();
    };
    void this.check().finally(tick);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.o.periodMs = 0;
  }

  private kind() {
    return { apiVersion: API_VERSION, kind: "CalicoNodeStatus" } as const;
  }

  /** Looks once; writes when shouldWrite says so. */
  async check(): Promise<void> {
    if (this.busy || this.o.periodMs <= 0) return;
    this.busy = true;
    try {
      const info = kindOf(API_VERSION, "CalicoNodeStatus");
      if (!info) return;
      const current = (await this.client.get(info, this.o.nodename)) as
        | CalicoNodeStatus
        | undefined;
      const spec: CalicoNodeStatusSpec = current?.spec ?? {
        node: this.o.nodename,
        classes: ["Agent", "BGP", "Routes"],
        updatePeriodSeconds: Math.round(this.o.periodMs / 1000),
      };
      const periodMs =
        spec.updatePeriodSeconds !== undefined ? spec.updatePeriodSeconds * 1000 : this.o.periodMs;
      const now = Date.now();
      const status = buildNodeStatus(
        this.o.input(),
        spec.classes ?? ["Agent", "BGP", "Routes"],
        now,
      );
      // `since` moves with the clock's rounding; compare without it.
      const content = JSON.stringify(status, (k, v) => (k === "since" ? undefined : v));
      const changed = content !== this.lastContent;
      // Someone else's write (or none yet) forces ours at once.
      const ours = current?.status?.lastUpdated !== undefined && this.lastWriteMs !== undefined;
      if (
        !shouldWrite(
          { changed: changed || !ours, lastWriteMs: this.lastWriteMs, nowMs: now },
          periodMs,
          this.o.minGapMs ?? 2000,
        )
      )
        return;
      const doc = {
        ...this.kind(),
        metadata: {
          name: this.o.nodename,
          ...(current?.metadata.labels ? { labels: current.metadata.labels } : {}),
          ...(current ? { resourceVersion: current.metadata.resourceVersion } : {}),
        },
        spec,
        status: { lastUpdated: new Date(now).toISOString(), ...status },
      };
      await this.client.write("apply", doc);
      this.lastWriteMs = now;
      this.lastContent = content;
      this.writes++;
      this.failures = 0;
    } catch (err) {
      // A conflict (a user's write in between) or a datastore outage: try again next look.
      if (this.failures++ === 0)
        this.o.log.warn({ error: (err as Error).message }, "CalicoNodeStatus: write failed");
    } finally {
      this.busy = false;
    }
  }
}
