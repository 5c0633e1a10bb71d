// The MTUs of one node's tunnel devices and pods, as Calico's Felix computes them (pure): the
// host MTU (the smallest MTU of the running interfaces whose names match FelixConfiguration
// `mtuIfacePattern`, Felix's findHostMTU; without a pattern, or when none matches, Ocelot's own
// detection: the interface holding the node's fabric address), each encapsulation's MTU (an
// explicit `vxlanMTU` / `vxlanMTUV6` / `ipipMTU`, else the host MTU minus its overhead, Felix's
// ConfigureDefaultMTUs), and the pods' MTU (the smallest of the encapsulations in use, else the
// host MTU, Felix's determinePodMTU). Ocelot's `--mtu` (Calico's `veth_mtu`) is above all of them.
// Not: where the values come from (felix_config.ts, the daemon's reading of the links), the
// devices (overlay.ts).

/** Encapsulation overhead in bytes (Felix's vxlanMTUOverhead, vxlanV6MTUOverhead, ipipMTUOverhead). */
export const OVERHEAD = { vxlan4: 50, vxlan6: 70, ipip: 20 } as const;
export const DEFAULT_FABRIC_MTU = 1500;
/** The MTUs a link may have (an IPv4 link's minimum; the CNI plugin's bounds). */
export const MIN_MTU = 68;
export const MAX_MTU = 65535;

/** A host interface as MTU detection sees it. */
export interface HostLink {
  name: string;
  mtu: number;
  /** Running (IFF_RUNNING: admin up and operstate UP or UNKNOWN), as Felix requires. */
  running: boolean;
}

/** The interface holding this node's fabric address of one family. */
export interface FabricIface {
  name: string;
  mtu: number;
}

/** What the MTUs are computed from besides the fabric (all optional). */
export interface MtuSettings {
  /** `--mtu`: every tunnel device and the pods. */
  override?: number;
  /** FelixConfiguration (or FELIX_* environment) explicit values. */
  vxlan4?: number;
  vxlan6?: number;
  ipip?: number;
  /** The host MTU from mtuIfacePattern (absent: the fabric interfaces'). */
  hostMtu?: number;
}

export interface Mtus {
  vxlan4: number;
  vxlan6: number;
  ipip: number;
  pod: number;
  warnings: string[];
}

/**
 * Felix's findHostMTU: the smallest MTU of the running links whose names the pattern matches
 * (unanchored, as Go's MatchString); undefined when none does.
 */
export function hostMtuOf(links: readonly HostLink[], pattern: RegExp): number | undefined {
  let smallest: number | undefined;
  for (const l of links) {
    if (!pattern.test(l.name) || !l.running || !(l.mtu > 0)) continue;
    if (smallest === undefined || l.mtu < smallest) smallest = l.mtu;
  }
  return smallest;
}

const usable = (n: number | undefined): n is number =>
  n !== undefined && Number.isInteger(n) && n >= MIN_MTU && n <= MAX_MTU;

/**
 * The MTU of each encapsulation and of the pods, with Calico's precedence: `--mtu` > the
 * explicit per-encapsulation value > the host MTU minus the overhead; the pods get the smallest
 * MTU of the encapsulations in use, else the host MTU. The host MTU is the pattern's when given,
 * else each family's fabric interface's (IPv4's for IP-in-IP and for pods without
 * encapsulation, the smaller of both), else 1500.
 */
export function computeMtus(
  fabric: { 4?: FabricIface; 6?: FabricIface },
  inUse: { vxlan4: boolean; vxlan6: boolean; ipip: boolean },
  s: MtuSettings = {},
): Mtus {
  const warnings: string[] = [];
  const f4 = s.hostMtu ?? fabric[4]?.mtu ?? fabric[6]?.mtu ?? DEFAULT_FABRIC_MTU;
  const f6 = s.hostMtu ?? fabric[6]?.mtu ?? fabric[4]?.mtu ?? DEFAULT_FABRIC_MTU;
  const host = Math.min(f4, f6);
  const pick = (explicit: number | undefined, field: string, auto: number) => {
    if (s.override !== undefined) return s.override;
    if (explicit === undefined || explicit === 0) return auto;
    if (usable(explicit)) return explicit;
    warnings.push(
      `FelixConfiguration ${field}: ${explicit} is not an MTU (${MIN_MTU}..${MAX_MTU}); ${auto} (detected) is used`,
    );
    return auto;
  };
  const vxlan4 = pick(s.vxlan4, "vxlanMTU", f4 - OVERHEAD.vxlan4);
  const vxlan6 = pick(s.vxlan6, "vxlanMTUV6", f6 - OVERHEAD.vxlan6);
  const ipip = pick(s.ipip, "ipipMTU", f4 - OVERHEAD.ipip);
  const used = [
    ...(inUse.vxlan4 ? [vxlan4] : []),
    ...(inUse.vxlan6 ? [vxlan6] : []),
    ...(inUse.ipip ? [ipip] : []),
  ];
  const pod = s.override ?? (used.length > 0 ? Math.min(...used) : host);
  // Felix's determinePodMTU warns the same way (and goes on).
  if (s.override === undefined && used.length > 0 && pod > host)
    warnings.push(
      `Pod MTU ${pod} is larger than the host interfaces' MTU ${host}: full-size packets will not cross`,
    );
  return { vxlan4, vxlan6, ipip, pod, warnings };
}
