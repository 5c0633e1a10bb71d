// DSCP marking of pods' egress traffic (WorkloadEndpoint qosControls.dscp), rendered from values
// (pure), laid out as Felix's DSCP manager does: the marked pods' addresses in an ipset
// (ocl-dscp-src-net, Felix's dscp-src-net), and in mangle POSTROUTING, for traffic from them
// that leaves the cluster (to neither an IP pool nor this host), a jump to ocl-egress-dscp,
// which sets each pod's code point by its source address (`-j DSCP --set-dscp`).
// Not: the other mangle chains (host_endpoint.ts), applying (apply.ts), reading the field (src/node).
import {
  type ChainSpec,
  canonicalCidr,
  type Family,
  type Hook,
  type IpsetSpec,
  ipsetNames,
  type TableSpec,
} from "./iptables.js";

/** A pod's addresses and its code point. */
export interface DscpEndpoint {
  addresses: readonly string[];
  dscp: number;
}

export const CHAIN_EGRESS_DSCP = "ocl-egress-dscp";
/** mangle POSTROUTING's chain of ours. */
const CHAIN_MANGLE_POSTROUTING = "ocl-POSTROUTING";

/** The ipset of the marked pods' addresses, per family. */
export function dscpIpsetName(family: Family): string {
  return family === 4 ? "ocl-dscp-src-net" : "ocl6-dscp-src-net";
}

/** `--set-dscp` as `iptables-save` prints it (two hex digits). */
const hexDscp = (n: number) => `0x${n.toString(16).padStart(2, "0")}`;

/**
 * The ipset and mangle chains of one family, or undefined when no pod of it is marked. One rule
 * per address, sorted (Felix sorts its rules by source).
 */
export function renderEgressDscp(
  endpoints: readonly DscpEndpoint[],
  family: Family,
): { ipset: IpsetSpec; chains: ChainSpec[]; hook: Hook } | undefined {
  const bySource = new Map<string, number>();
  for (const e of endpoints)
    for (const a of e.addresses) {
      if (a.includes(":") !== (family === 6)) continue;
      bySource.set(canonicalCidr(a, family, "workload address"), e.dscp);
    }
  if (bySource.size === 0) return undefined;
  const sources = [...bySource.keys()].sort();
  const set = dscpIpsetName(family);
  return {
    ipset: {
      name: set,
      type: "hash:net",
      family: family === 4 ? "inet" : "inet6",
      members: sources,
    },
    chains: [
      {
        name: CHAIN_MANGLE_POSTROUTING,
        rules: [
          `-m set --match-set ${set} src -m set ! --match-set ${ipsetNames(family).allPools} dst -m addrtype ! --dst-type LOCAL -j ${CHAIN_EGRESS_DSCP}`,
        ],
      },
      {
        name: CHAIN_EGRESS_DSCP,
        rules: sources.map(
          (s) => `-s ${s} -j DSCP --set-dscp ${hexDscp(bySource.get(s) as number)}`,
        ),
      },
    ],
    hook: { builtin: "POSTROUTING", rule: `-j ${CHAIN_MANGLE_POSTROUTING}` },
  };
}

/** The mangle table with the DSCP chains and hook added (a table of none when it had none). */
export function withEgressDscp(
  tables: TableSpec[],
  dscp: NonNullable<ReturnType<typeof renderEgressDscp>>,
): TableSpec[] {
  const mangle = tables.find((t) => t.table === "mangle");
  const merged: TableSpec = {
    table: "mangle",
    chains: [...(mangle?.chains ?? []), ...dscp.chains],
    hooks: [...(mangle?.hooks ?? []), dscp.hook],
  };
  return mangle === undefined
    ? [...tables, merged]
    : tables.map((t) => (t === mangle ? merged : t));
}
