// WorkloadEndpoint QoS bandwidth controls as Felix programs them, rendered and planned from values
// (pure): traffic to a pod (ingressBandwidth) passes a token bucket (tbf) at the root of the
// host-side veth; traffic from a pod (egressBandwidth) is redirected by the veth's ingress qdisc
// (a u32 match-all filter with a mirred action) to an ifb device whose root is the token bucket.
// Also: reading `tc -j qdisc show` back and the `tc`/`ip` commands that converge it. Not: running
// them (qos_apply.ts), packet rates and connection limits (iptables rules: iptables.ts).
import { createHash } from "node:crypto";

/** Calico's QoSControls bandwidth fields: rates in bit/s, bursts in bits, minbursts in bytes. */
export interface QosControls {
  ingressBandwidth?: number;
  ingressBurst?: number;
  ingressPeakrate?: number;
  ingressMinburst?: number;
  egressBandwidth?: number;
  egressBurst?: number;
  egressPeakrate?: number;
  egressMinburst?: number;
  /** Packets per second and bursts in packets (iptables: iptables.ts withWorkloadLimits). */
  ingressPacketRate?: number;
  ingressPacketBurst?: number;
  egressPacketRate?: number;
  egressPacketBurst?: number;
  /** TCP connections at a time (iptables connlimit). */
  ingressMaxConnections?: number;
  egressMaxConnections?: number;
}

/** One token bucket: what `tc qdisc replace ... tbf` is given. */
export interface TokenBucket {
  /** Bytes per second. */
  rate: number;
  /** Bucket size in bytes. */
  burst: number;
  /** Peak rate in bytes per second (0: bursts leave at line rate). */
  peakrate: number;
  /** Peak bucket in bytes (with a peak rate only). */
  minburst: number;
}

/** The wanted buckets of one workload interface (absent: none). */
export interface IfaceQos {
  iface: string;
  /** To the pod: tbf at the root of the host-side interface. */
  ingress?: TokenBucket;
  /** From the pod: tbf at the root of `ifb`, fed by the interface's ingress qdisc. */
  egress?: TokenBucket;
  /** The ifb device of the egress bucket (Felix's bwcali<hash>). */
  ifb: string;
}

/** Prefix of our ifb devices; no workload interface (ocl…) starts with it. */
export const IFB_PREFIX = "bwocl";
const IFNAMSIZ_MAX = 15;
/** Felix's tbf latency (qos.go latencyMillis). */
export const TBF_LATENCY_MS = 25;
/** Calico's default burst when a bandwidth is set without one: 4Gi bits (512 MiB). */
export const DEFAULT_BURST_BITS = 4 * 1024 ** 3;
/**
 * tc keeps the bucket as the time it takes to send it, in 32-bit scheduler ticks: a burst longer
 * than about 170 s at the rate cannot be set (tc saturates it). Buckets are capped at 100 s.
 */
const MAX_BURST_SECONDS = 100;
/** Ethernet header over the MTU (the smallest peak bucket the kernel accepts). */
const ETH_HLEN = 14;

/** The ifb device of a workload interface: "bwocl" and a hash of its name. */
export function ifbName(iface: string): string {
  const hash = createHash("sha256").update(iface).digest("hex");
  return `${IFB_PREFIX}${hash.slice(0, IFNAMSIZ_MAX - IFB_PREFIX.length)}`;
}

function bucket(
  rateBits: number,
  burstBits: number | undefined,
  peakBits: number | undefined,
  minburst: number | undefined,
  mtu: number,
): TokenBucket {
  const rate = Math.floor(rateBits / 8);
  const burst = Math.min(
    Math.floor((burstBits || DEFAULT_BURST_BITS) / 8),
    rate * MAX_BURST_SECONDS,
  );
  const peakrate = Math.floor((peakBits ?? 0) / 8);
  return {
    rate,
    burst,
    peakrate,
    // Felix raises a peak bucket below one full frame to MTU + Ethernet header.
    minburst: peakrate > 0 ? Math.max(minburst ?? 0, mtu + ETH_HLEN) : 0,
  };
}

/**
 * The buckets of one workload's interface, or undefined when it has no bandwidth limit (a
 * bandwidth of 0 means none, as in Calico). `mtu` is the pod interfaces' MTU.
 */
export function renderQos(iface: string, q: QosControls, mtu = 1500): IfaceQos | undefined {
  const out: IfaceQos = { iface, ifb: ifbName(iface) };
  if ((q.ingressBandwidth ?? 0) > 0)
    out.ingress = bucket(
      q.ingressBandwidth as number,
      q.ingressBurst,
      q.ingressPeakrate,
      q.ingressMinburst,
      mtu,
    );
  if ((q.egressBandwidth ?? 0) > 0)
    out.egress = bucket(
      q.egressBandwidth as number,
      q.egressBurst,
      q.egressPeakrate,
      q.egressMinburst,
      mtu,
    );
  return out.ingress || out.egress ? out : undefined;
}

// ---- read back and plan ----------------------------------------------------------------------

/** One qdisc as `tc -j qdisc show` prints it (the fields we read). */
export interface KernelQdisc {
  kind: string;
  handle: string;
  dev: string;
  root?: boolean;
  options?: { rate?: number; burst?: number; minburst?: number };
}

/** tc rounds rates and buckets to its tick and cell sizes: equal within 1% (or 2 bytes). */
const close = (a: number, b: number) => Math.abs(a - b) <= Math.max(2, b * 0.01);

/** Whether a root qdisc is the wanted bucket. */
export function sameBucket(q: KernelQdisc | undefined, want: TokenBucket): boolean {
  const o = q?.options;
  if (q?.kind !== "tbf" || o?.rate === undefined || o.burst === undefined) return false;
  if (!close(o.rate, want.rate) || !close(o.burst, want.burst)) return false;
  // tc's JSON leaves the peak rate out; its bucket says whether there is one.
  return want.peakrate > 0
    ? o.minburst !== undefined && close(o.minburst, want.minburst)
    : !o.minburst;
}

/** The arguments of `tc qdisc replace` that set a bucket at a device's root. */
export function tbfArgs(dev: string, b: TokenBucket): string[] {
  const args = ["qdisc", "replace", "dev", dev, "root", "handle", "1:", "tbf"];
  args.push("rate", `${b.rate * 8}bit`, "burst", `${b.burst}b`, "latency", `${TBF_LATENCY_MS}ms`);
  if (b.peakrate > 0) args.push("peakrate", `${b.peakrate * 8}bit`, "minburst", `${b.minburst}b`);
  return args;
}

/** One command of a QoS plan (`tc` or `ip`), with what it changes for the report. */
export interface QosCommand {
  cmd: "tc" | "ip";
  args: string[];
  change: string;
  /** The device may be missing or the qdisc absent already: a failure is not an error. */
  tolerant?: boolean;
}

/**
 * Plans the tc state: `want` for the workload interfaces that exist (`present`), `qdiscs` and
 * `ifbs` as read back. Buckets that differ are replaced; an egress limit gets its ifb device,
 * the interface's ingress qdisc and the redirect filter (`hasRedirect`: the interfaces whose
 * filter was read back); what no workload wants any more (our tbf roots on present workload
 * interfaces, their ingress qdiscs, our ifb devices) is removed.
 */
export function planQos(
  want: readonly IfaceQos[],
  present: ReadonlySet<string>,
  qdiscs: readonly KernelQdisc[],
  ifbs: ReadonlySet<string>,
  hasRedirect: ReadonlySet<string>,
  mtuOf: (iface: string) => number | undefined,
): QosCommand[] {
  const out: QosCommand[] = [];
  const root = new Map(qdiscs.filter((q) => q.root).map((q) => [q.dev, q]));
  const ingressQdisc = new Set(qdiscs.filter((q) => q.kind === "ingress").map((q) => q.dev));
  const wanted = new Map(want.filter((w) => present.has(w.iface)).map((w) => [w.iface, w]));
  for (const w of wanted.values()) {
    if (w.ingress && !sameBucket(root.get(w.iface), w.ingress))
      out.push({
        cmd: "tc",
        args: tbfArgs(w.iface, w.ingress),
        change: `qos ${w.iface} ingress bucket ${w.ingress.rate * 8} bit/s`,
      });
    if (!w.ingress && root.get(w.iface)?.kind === "tbf")
      out.push({
        cmd: "tc",
        args: ["qdisc", "del", "dev", w.iface, "root"],
        change: `qos ${w.iface} ingress bucket removed`,
        tolerant: true,
      });
    if (w.egress) {
      if (!ifbs.has(w.ifb)) {
        const mtu = mtuOf(w.iface);
        out.push({
          cmd: "ip",
          args: ["link", "add", w.ifb, ...(mtu ? ["mtu", String(mtu)] : []), "type", "ifb"],
          change: `qos ${w.iface} ifb ${w.ifb} added`,
        });
      }
      if (!ifbs.has(w.ifb) || root.get(w.ifb) === undefined)
        out.push({ cmd: "ip", args: ["link", "set", w.ifb, "up"], change: `link ${w.ifb} up` });
      if (!sameBucket(root.get(w.ifb), w.egress))
        out.push({
          cmd: "tc",
          args: tbfArgs(w.ifb, w.egress),
          change: `qos ${w.iface} egress bucket ${w.egress.rate * 8} bit/s`,
        });
      if (!ingressQdisc.has(w.iface))
        out.push({
          cmd: "tc",
          args: ["qdisc", "add", "dev", w.iface, "handle", "ffff:", "ingress"],
          change: `qos ${w.iface} ingress qdisc added`,
        });
      if (!ingressQdisc.has(w.iface) || !hasRedirect.has(w.iface))
        out.push({
          cmd: "tc",
          args: [
            ...["filter", "replace", "dev", w.iface, "parent", "ffff:", "protocol", "all"],
            ...["prio", "1", "u32", "match", "u32", "0", "0"],
            ...["action", "mirred", "egress", "redirect", "dev", w.ifb],
          ],
          change: `qos ${w.iface} redirect to ${w.ifb}`,
        });
    } else if (ingressQdisc.has(w.iface)) {
      out.push({
        cmd: "tc",
        args: ["qdisc", "del", "dev", w.iface, "handle", "ffff:", "ingress"],
        change: `qos ${w.iface} ingress qdisc removed`,
        tolerant: true,
      });
    }
  }
  // Present workload interfaces without any limit: our buckets and redirects go.
  for (const iface of [...present].sort()) {
    if (wanted.has(iface)) continue;
    if (root.get(iface)?.kind === "tbf")
      out.push({
        cmd: "tc",
        args: ["qdisc", "del", "dev", iface, "root"],
        change: `qos ${iface} ingress bucket removed`,
        tolerant: true,
      });
    if (ingressQdisc.has(iface))
      out.push({
        cmd: "tc",
        args: ["qdisc", "del", "dev", iface, "handle", "ffff:", "ingress"],
        change: `qos ${iface} ingress qdisc removed`,
        tolerant: true,
      });
  }
  const wantedIfbs = new Set([...wanted.values()].filter((w) => w.egress).map((w) => w.ifb));
  for (const ifb of [...ifbs].sort())
    if (ifb.startsWith(IFB_PREFIX) && !wantedIfbs.has(ifb))
      out.push({
        cmd: "ip",
        args: ["link", "del", ifb],
        change: `qos ifb ${ifb} removed`,
        tolerant: true,
      });
  return out;
}
