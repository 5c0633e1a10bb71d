// The daemons' metrics through prom-client: one Registry per daemon with the process's default
// metrics (process_*, nodejs_*), the snapshot families of daemon_metrics.ts mirrored into
// prom-client gauges and counters under their names at each scrape, and what an operator graphs
// over time: histograms of event-loop delay (perf_hooks.monitorEventLoopDelay, the worst delay
// of each second; the worst since start exactly, as a gauge), convergence passes, the agent's iptables apply and its FIB batch, the node
// daemon's watch-event-to-applied lag, and
// counters of NOTIFICATIONs and session changes taken from the speaker's log lines. Owns: the
// registry and the observations. Not: where the numbers come from, or serving them.
import { monitorEventLoopDelay } from "node:perf_hooks";
import client from "prom-client";
import type { Log } from "../lib/log.js";
import type { MetricFamily } from "./metrics.js";

const SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type Mirrored = client.Gauge<string> | client.Counter<string>;

export class PromMetrics {
  readonly registry = new client.Registry();
  readonly eventLoopDelay: client.Histogram<string>;
  readonly eventLoopDelayMax: client.Gauge<string>;
  readonly convergence: client.Histogram<"area">;
  readonly iptablesApply: client.Histogram<string>;
  readonly fibBatch: client.Histogram<"fib">;
  readonly updateToKernel: client.Histogram<string>;
  readonly watchToApplied: client.Histogram<"path">;
  readonly cniHandoff: client.Histogram<"plugin" | "command" | "outcome">;
  readonly notifications: client.Counter<"direction" | "code" | "subcode">;
  readonly sessionChanges: client.Counter<"peer" | "change">;
  readonly driftRepairs: client.Counter<"kind">;
  private readonly mirrored = new Map<string, { metric: Mirrored; labels: string[] }>();
  private readonly eld = monitorEventLoopDelay({ resolution: 10 });
  private readonly eldTimer: NodeJS.Timeout;
  private eldWorst = 0;

  /** snapshot: the daemon's families at scrape time (daemon_metrics.ts, no process_* ones). */
  constructor(private readonly snapshot: () => MetricFamily[]) {
    const r = [this.registry];
    client.collectDefaultMetrics({ register: this.registry });
    this.eventLoopDelay = new client.Histogram({
      name: "ocelot_event_loop_delay_seconds",
      help: "The event loop's worst delay in each second (perf_hooks.monitorEventLoopDelay).",
      buckets: SECONDS_BUCKETS,
      registers: r,
    });
    this.eventLoopDelayMax = new client.Gauge({
      name: "ocelot_event_loop_delay_max_seconds",
      help: "The event loop's worst delay since the daemon started (exact; the histogram has only buckets).",
      registers: r,
    });
    this.eventLoopDelayMax.set(0);
    this.convergence = new client.Histogram({
      name: "ocelot_convergence_seconds",
      help: "Duration of a convergence pass of the node daemon, by area (agent, bgp).",
      labelNames: ["area"],
      buckets: SECONDS_BUCKETS,
      registers: r,
    });
    this.iptablesApply = new client.Histogram({
      name: "ocelot_iptables_apply_seconds",
      help: "Time to compare and apply the agent's iptables tables (iptables-save, iptables-restore).",
      buckets: SECONDS_BUCKETS,
      registers: r,
    });
    this.fibBatch = new client.Histogram({
      name: "ocelot_fib_batch_seconds",
      help: "Time for one batch of route changes to be acknowledged by the kernel, by FIB.",
      labelNames: ["fib"],
      buckets: SECONDS_BUCKETS,
      registers: r,
    });
    this.updateToKernel = new client.Histogram({
      name: "ocelot_bgp_update_to_kernel_seconds",
      help: "Per BGP FIB batch, from the oldest UPDATE received in it to the kernel's acknowledgement.",
      buckets: SECONDS_BUCKETS,
      registers: r,
    });
    this.watchToApplied = new client.Histogram({
      name: "ocelot_datastore_watch_to_applied_seconds",
      help: "Node daemon: from a datastore watch event's delivery (its cache updated at once) to the end of the work it caused: the overlay fast path's netlink writes acknowledged (path overlay_fast, only when it changed the kernel) or the convergence pass that took it (path pass). The store's own delay before delivery is not in it (neither etcd nor SQLite records a write's time).",
      labelNames: ["path"],
      buckets: SECONDS_BUCKETS,
      registers: r,
    });
    this.cniHandoff = new client.Histogram({
      name: "ocelot_cni_handoff_seconds",
      help: "Node daemon: CNI calls the installed plugins handed to it (cni.sock), by plugin, CNI command and outcome (done: run here; declined: another datastore or a CNI_NETNS not visible here, so the plugin ran itself), from the request read to the answer ready.",
      labelNames: ["plugin", "command", "outcome"],
      buckets: SECONDS_BUCKETS,
      registers: r,
    });
    this.notifications = new client.Counter({
      name: "ocelot_bgp_notifications_total",
      help: "BGP NOTIFICATION messages sent and received, by direction, error code and subcode.",
      labelNames: ["direction", "code", "subcode"],
      registers: r,
    });
    this.sessionChanges = new client.Counter({
      name: "ocelot_bgp_session_changes_total",
      help: "BGP sessions that came up (established) or went down, by peer.",
      labelNames: ["peer", "change"],
      registers: r,
    });
    this.driftRepairs = new client.Counter({
      name: "ocelot_agent_drift_repairs_total",
      help: "Kernel state the agent found changed under it and put back, with its own input unchanged, by kind (route, route_swept (a route of our protocol nobody set, removed), sysctl, link, iptables, chain, ipset, neighbour, fdb, address).",
      labelNames: ["kind"],
      registers: r,
    });
    this.eld.enable();
    this.eldTimer = setInterval(() => {
      if (this.eld.count > 0) {
        const worst = this.eld.max / 1e9;
        this.eventLoopDelay.observe(worst);
        if (worst > this.eldWorst) {
          this.eldWorst = worst;
          this.eventLoopDelayMax.set(worst);
        }
      }
      this.eld.reset();
    }, 1000);
    this.eldTimer.unref();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The text exposition (format 0.0.4) with the snapshot families brought up to date. */
  async render(): Promise<string> {
    this.mirror(this.snapshot());
    return this.registry.metrics();
  }

  /** A Log that counts the speaker's NOTIFICATION and session lines, then passes them on. */
  countingLog(log: Log): Log {
    const count = (obj: object, msg?: string) => {
      const o = obj as { code?: number; subcode?: number; peer?: string };
      if (msg === "NOTIFICATION sent" || msg === "NOTIFICATION received")
        this.notifications.inc({
          direction: msg === "NOTIFICATION sent" ? "sent" : "received",
          code: String(o.code ?? ""),
          subcode: String(o.subcode ?? ""),
        });
      else if (msg === "Session Established")
        this.sessionChanges.inc({ peer: String(o.peer ?? ""), change: "established" });
      else if (msg === "Session down")
        this.sessionChanges.inc({ peer: String(o.peer ?? ""), change: "down" });
    };
    return {
      debug: (o, m) => log.debug(o, m),
      info: (o, m) => {
        count(o, m);
        log.info(o, m);
      },
      warn: (o, m) => {
        count(o, m);
        log.warn(o, m);
      },
      error: (o, m) => log.error(o, m),
    };
  }

  close(): void {
    clearInterval(this.eldTimer);
    this.eld.disable();
  }

  private mirror(families: MetricFamily[]): void {
    const seen = new Set<string>();
    for (const f of families) {
      seen.add(f.name);
      const labels = [...new Set(f.samples.flatMap((s) => Object.keys(s.labels ?? {})))].sort();
      let m = this.mirrored.get(f.name);
      if (m && m.labels.join() !== labels.join()) {
        this.registry.removeSingleMetric(f.name);
        m = undefined;
      }
      if (!m) {
        const cfg = { name: f.name, help: f.help, labelNames: labels, registers: [this.registry] };
        m = {
          metric: f.type === "counter" ? new client.Counter(cfg) : new client.Gauge(cfg),
          labels,
        };
        this.mirrored.set(f.name, m);
      }
      m.metric.reset();
      for (const s of f.samples) {
        const l = Object.fromEntries(
          Object.entries(s.labels ?? {}).map(([k, v]) => [k, String(v)]),
        );
        if (m.metric instanceof client.Counter) m.metric.inc(l, s.value);
        else m.metric.set(l, s.value);
      }
    }
    // A family that is gone this time (the speaker stopped) shows no stale samples.
    for (const [name, m] of this.mirrored) if (!seen.has(name)) m.metric.reset();
  }
}
