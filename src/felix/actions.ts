// The verdicts FelixConfiguration lets a user choose (pure): what a packet that policy allowed
// gets in the filter table (iptablesFilterAllowAction) and in the mangle table's preDNAT
// policy (iptablesMangleAllowAction), and what a denied one gets (iptablesFilterDenyAction), as
// Felix's rule renderer turns them into targets: Accept ends the packet's walk through the
// table at once, Return hands it back to the built-in chain so that the host's own later rules
// (and the chain's policy) decide; Drop discards, Reject answers with an ICMP error (the
// REJECT target exists in the filter table only: the mangle and raw tables keep DROP).
// Not: where these targets sit (policy.ts, host_endpoint.ts, iptables.ts).

type Family = 4 | 6;
export type AllowAction = "Accept" | "Return";
export type DenyAction = "Drop" | "Reject";

export interface RuleActions {
  /** iptablesFilterAllowAction: policy-allowed traffic in the filter table. */
  filterAllow: AllowAction;
  /** iptablesMangleAllowAction: preDNAT-policy-allowed traffic in the mangle table. */
  mangleAllow: AllowAction;
  /** iptablesFilterDenyAction: policy-denied traffic in the filter table. */
  filterDeny: DenyAction;
}

/** Felix's defaults. */
export const DEFAULT_RULE_ACTIONS: RuleActions = {
  filterAllow: "Accept",
  mangleAllow: "Accept",
  filterDeny: "Drop",
};

/** The target of an allow verdict, as `iptables-save` prints it. */
export function allowTarget(a: AllowAction): string {
  return a === "Return" ? "-j RETURN" : "-j ACCEPT";
}

/** The target of a deny verdict in the filter table, as `iptables-save` prints it. */
export function denyTarget(a: DenyAction, family: Family): string {
  if (a === "Drop") return "-j DROP";
  return family === 4
    ? "-j REJECT --reject-with icmp-port-unreachable"
    : "-j REJECT --reject-with icmp6-port-unreachable";
}

/**
 * The rules for an already-established connection at the head of an endpoint chain (Felix's
 * appendConntrackRules): accepted at once, or marked accepted and returned so that the chain's
 * caller (and then the built-in chain) sees the verdict.
 */
export function conntrackAllowRules(a: AllowAction, acceptMark: string): string[] {
  const est = "-m conntrack --ctstate RELATED,ESTABLISHED";
  return a === "Return"
    ? [`${est} -j MARK --set-xmark ${acceptMark}`, `${est} -j RETURN`]
    : [`${est} -j ACCEPT`];
}
