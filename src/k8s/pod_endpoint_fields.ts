// Calico's pod annotations that become WorkloadEndpoint fields, read at CNI ADD (pure):
// `cni.projectcalico.org/floatingIPs` (JSON list of addresses: ipNATs to the pod's address of the
// same family; the network must enable `feature_control.floating_ips`, as Calico's CNI requires),
// `cni.projectcalico.org/allowedSourcePrefixes` (JSON list of CIDRs: allowSpoofedSourcePrefixes)
// and the bandwidth annotations (`kubernetes.io/ingress-bandwidth`, `…/egress-bandwidth`,
// `qos.projectcalico.org/{ingress,egress}{Bandwidth,Burst,Peakrate,Minburst,PacketRate,
// PacketBurst,MaxConnections}`: Kubernetes quantities, into qosControls as libcalico-go's
// conversion does, its ranges clamped and the bursts defaulted; `qos.projectcalico.org/dscp`, a
// code point 0..63 or its name (EF, AF11, CS1, ...), into qosControls.dscp, an invalid one left
// out with a warning as libcalico-go logs it). Not: writing the endpoint (src/cni), the
// annotations of IPAM (pod_ipam.ts).
import { DSCP_NAMES, dscpValue } from "../api/dscp.js";
import { formatAddress, formatCidr, parseAddress, parseCidr } from "../lib/ip.js";
import { PodAnnotationError } from "./pod_ipam.js";

export const ANNOTATION_FLOATING_IPS = "cni.projectcalico.org/floatingIPs";
export const ANNOTATION_ALLOWED_SOURCE_PREFIXES = "cni.projectcalico.org/allowedSourcePrefixes";

/** The WorkloadEndpoint fields a pod's annotations ask for (absent ones left out). */
export interface PodEndpointFields {
  ipNATs?: { internalIP: string; externalIP: string }[];
  allowSpoofedSourcePrefixes?: string[];
  qosControls?: Record<string, number | string>;
  /** Annotations not taken, one line each (out of range, not supported by Ocelot). */
  warnings: string[];
}

function jsonStrings(annotations: Record<string, string>, key: string): string[] | undefined {
  const text = annotations[key];
  if (text === undefined || text === "") return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new PodAnnotationError(
      `Pod annotation ${key}: ${JSON.stringify(text.slice(0, 100))} is not JSON (a list such as ["a", "b"])`,
    );
  }
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string"))
    throw new PodAnnotationError(
      `Pod annotation ${key}: ${JSON.stringify(text.slice(0, 100))} is not a JSON list of strings`,
    );
  return v.map((x: string) => x.trim());
}

const SUFFIX: Record<string, number> = {
  "": 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** A Kubernetes quantity ("10M", "1Gi", "1.5k", "1e6") as an integer (rounded up, as Value()). */
export function parseQuantity(text: string): number | undefined {
  const m =
    /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E))?$/.exec(
      text.trim(),
    );
  if (m === null) return undefined;
  const n = Number(m[1]) * (m[2] ? 10 ** Number(m[2].slice(1)) : (SUFFIX[m[3] ?? ""] as number));
  return Number.isFinite(n) ? Math.ceil(n) : undefined;
}

/** libcalico-go's ranges (workload_endpoint_default.go): bit/s, bits, bytes. */
const RANGES = {
  bandwidth: [1e3, 1e15],
  burst: [1e3, 2 ** 32 * 8 - 8],
  peakrate: [1.01e3, 1.01e15],
  minburst: [1e3, 1e8],
  packetRate: [1, 1e4],
  packetBurst: [1, 1e4],
  maxConnections: [1, 2 ** 32 - 1],
} as const;
/** Calico's burst when a bandwidth is set without one: 4Gi bits. */
const DEFAULT_BURST = 4 * 2 ** 30;

const QOS_ANNOTATIONS: [string, string, keyof typeof RANGES][] = [
  ["kubernetes.io/ingress-bandwidth", "ingressBandwidth", "bandwidth"],
  ["kubernetes.io/egress-bandwidth", "egressBandwidth", "bandwidth"],
  ["qos.projectcalico.org/ingressBandwidth", "ingressBandwidth", "bandwidth"],
  ["qos.projectcalico.org/egressBandwidth", "egressBandwidth", "bandwidth"],
  ["qos.projectcalico.org/ingressBurst", "ingressBurst", "burst"],
  ["qos.projectcalico.org/egressBurst", "egressBurst", "burst"],
  ["qos.projectcalico.org/ingressPeakrate", "ingressPeakrate", "peakrate"],
  ["qos.projectcalico.org/egressPeakrate", "egressPeakrate", "peakrate"],
  ["qos.projectcalico.org/ingressMinburst", "ingressMinburst", "minburst"],
  ["qos.projectcalico.org/egressMinburst", "egressMinburst", "minburst"],
  ["qos.projectcalico.org/ingressPacketRate", "ingressPacketRate", "packetRate"],
  ["qos.projectcalico.org/egressPacketRate", "egressPacketRate", "packetRate"],
  ["qos.projectcalico.org/ingressPacketBurst", "ingressPacketBurst", "packetBurst"],
  ["qos.projectcalico.org/egressPacketBurst", "egressPacketBurst", "packetBurst"],
  ["qos.projectcalico.org/ingressMaxConnections", "ingressMaxConnections", "maxConnections"],
  ["qos.projectcalico.org/egressMaxConnections", "egressMaxConnections", "maxConnections"],
];
/** Calico's DSCP annotation (AnnotationQoSEgressDSCP). */
export const ANNOTATION_DSCP = "qos.projectcalico.org/dscp";
/** Calico's packet burst when a rate is set without one. */
const DEFAULT_PACKET_BURST = 5;

function qosControls(annotations: Record<string, string>, warnings: string[]) {
  const q: Record<string, number | string> = {};
  for (const [key, field, range] of QOS_ANNOTATIONS) {
    const text = annotations[key];
    if (text === undefined) continue;
    const v = parseQuantity(text);
    if (v === undefined) {
      warnings.push(`Pod annotation ${key}: ${JSON.stringify(text)} is not a quantity; ignored`);
      continue;
    }
    const [min, max] = RANGES[range];
    const clamped = Math.min(Math.max(v, min), max);
    if (clamped !== v)
      warnings.push(`Pod annotation ${key}: ${text} is outside ${min}..${max}; set to ${clamped}`);
    q[field] = clamped;
  }
  const dscp = annotations[ANNOTATION_DSCP];
  if (dscp !== undefined) {
    const code = dscpValue(dscp);
    const t = dscp.trim();
    if (code === undefined)
      warnings.push(
        `Pod annotation ${ANNOTATION_DSCP}: ${JSON.stringify(dscp)} is not a DSCP value (0..63, or DF, EF, AF11..AF43, CS0..CS6); ignored`,
      );
    // As numorstring.DSCPFromString: a name in its canonical case, digits as the number.
    else
      q.dscp = /^[0-9]+$/.test(t)
        ? code
        : (Object.keys(DSCP_NAMES).find((k) => k === t.toUpperCase()) as string);
  }
  for (const dir of ["ingress", "egress"]) {
    if (q[`${dir}Bandwidth`] !== undefined && q[`${dir}Burst`] === undefined)
      q[`${dir}Burst`] = DEFAULT_BURST;
    // A packet burst without a rate is dropped, as libcalico-go does.
    if (q[`${dir}PacketBurst`] !== undefined && q[`${dir}PacketRate`] === undefined) {
      warnings.push(
        `Pod annotation qos.projectcalico.org/${dir}PacketBurst: needs ${dir}PacketRate; ignored`,
      );
      delete q[`${dir}PacketBurst`];
    }
    if (q[`${dir}PacketRate`] !== undefined && q[`${dir}PacketBurst`] === undefined)
      q[`${dir}PacketBurst`] = DEFAULT_PACKET_BURST;
  }
  return Object.keys(q).length > 0 ? q : undefined;
}

/**
 * The endpoint fields of a pod's annotations; `addresses` are the pod's (canonical, one per
 * family at most). Throws PodAnnotationError naming the annotation when one cannot be honoured.
 */
export function podEndpointFields(
  annotations: Record<string, string>,
  addresses: readonly { family: 4 | 6; address: string }[],
  opts: { floatingIpsEnabled: boolean },
): PodEndpointFields {
  const out: PodEndpointFields = { warnings: [] };
  const floating = jsonStrings(annotations, ANNOTATION_FLOATING_IPS);
  if (floating !== undefined && floating.length > 0) {
    if (!opts.floatingIpsEnabled)
      throw new PodAnnotationError(
        `Pod annotation ${ANNOTATION_FLOATING_IPS}: requested feature is not enabled: floating_ips (the network's feature_control.floating_ips)`,
      );
    out.ipNATs = floating.map((text) => {
      let a: { family: 4 | 6; value: bigint };
      try {
        a = parseAddress(text);
      } catch {
        throw new PodAnnotationError(
          `Pod annotation ${ANNOTATION_FLOATING_IPS}: ${JSON.stringify(text)} is not an IP address`,
        );
      }
      const internal = addresses.find((p) => p.family === a.family);
      if (internal === undefined)
        throw new PodAnnotationError(
          `Pod annotation ${ANNOTATION_FLOATING_IPS}: ${text} is IPv${a.family} and the pod has no IPv${a.family} address`,
        );
      return { internalIP: internal.address, externalIP: formatAddress(a.family, a.value) };
    });
  }
  const prefixes = jsonStrings(annotations, ANNOTATION_ALLOWED_SOURCE_PREFIXES);
  if (prefixes !== undefined && prefixes.length > 0)
    out.allowSpoofedSourcePrefixes = prefixes.map((text) => {
      try {
        // As Calico's ParseCIDR: a prefix length is required, host bits are masked.
        return formatCidr(parseCidr(text, false));
      } catch {
        throw new PodAnnotationError(
          `Pod annotation ${ANNOTATION_ALLOWED_SOURCE_PREFIXES}: ${JSON.stringify(text)} is not a CIDR`,
        );
      }
    });
  const qos = qosControls(annotations, out.warnings);
  if (qos !== undefined) out.qosControls = qos;
  return out;
}
