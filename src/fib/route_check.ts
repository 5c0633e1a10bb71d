// Whether one prefix is in the kernel as the RIB expects it, pure: the RIB's next hops against
// the kernel's routes for exactly that prefix (`ip -j route show table all exact PREFIX`, every
// protocol), under the speaker's route protocol, and the FIB's last error for it. A route the FIB
// should have installed but the kernel does not hold is "failed" when the kernel refused it (the
// FIB kept its error), else "missing" (someone deleted it, or it is still on its way); one with
// other next hops is "different"; one in the kernel though the RIB has nothing to install is
// "unexpected". Owns: that verdict and its text. Not: reading the kernel or the RIB (the CLI does).
import type { FibRouteError } from "./types.js";

/** One route as `ip -j route` prints it (the fields this check reads). */
export interface IpJsonRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string | number;
  table?: string;
  nexthops?: { gateway?: string; dev?: string }[];
}

export interface KernelCheck {
  /** installed: as expected; absent: nothing expected, nothing there. */
  state: "installed" | "failed" | "missing" | "different" | "unexpected" | "absent";
  expected: string[];
  /** Next hops of the kernel's route under our protocol (empty when there is none). */
  found: string[];
  /** Routes for the prefix from other protocols (e.g. a static or kernel route), as text. */
  others: string[];
  /** The FIB's last error for the route (the kernel refused it), when it kept one. */
  error?: FibRouteError;
}

function hops(r: IpJsonRoute): string[] {
  const list = r.nexthops?.length ? r.nexthops : [r];
  return list.map((h) => h.gateway ?? (h.dev ? `dev ${h.dev}` : "-")).sort();
}

export function checkKernelRoute(
  expected: readonly string[],
  kernel: readonly IpJsonRoute[],
  protocol: number,
  error?: FibRouteError,
): KernelCheck {
  const ours = kernel.filter((r) => String(r.protocol) === String(protocol));
  const others = kernel
    .filter((r) => String(r.protocol) !== String(protocol))
    .map(
      (r) => `${hops(r).join(",")} proto ${r.protocol ?? "?"}${r.table ? ` table ${r.table}` : ""}`,
    );
  const want = [...expected].sort();
  const found = ours.flatMap(hops).sort();
  let state: KernelCheck["state"];
  if (want.length === 0) state = found.length === 0 ? "absent" : "unexpected";
  else if (found.length === 0) state = error?.op === "set" ? "failed" : "missing";
  else state = want.join(",") === found.join(",") ? "installed" : "different";
  return { state, expected: want, found, others, ...(error ? { error } : {}) };
}

/** "ENETUNREACH: Network is unreachable (Nexthop has invalid gateway)". */
export function fibErrorText(e: FibRouteError): string {
  return `${e.code}: ${e.reason}${e.message ? ` (${e.message})` : ""}`;
}

/** The verdict as `ocelot routes PREFIX` prints it (the line after "Kernel: "). */
export function kernelCheckText(k: KernelCheck): string {
  const want = k.expected.join(", ");
  const when = k.error ? ` at ${new Date(k.error.at).toISOString()}` : "";
  switch (k.state) {
    case "installed":
      return `installed via ${k.found.join(", ")}, as expected`;
    case "failed":
      return `NOT IN KERNEL: ${k.error ? fibErrorText(k.error) : "?"} (refused${when}); expected via ${want}`;
    case "missing":
      return `MISSING from the kernel (deleted?): expected via ${want}, the kernel has no route of ours`;
    case "different":
      return `DIFFERENT: expected via ${want}, the kernel has ${k.found.join(", ")}${k.error ? `; last error: ${fibErrorText(k.error)}${when}` : ""}`;
    case "unexpected":
      return `UNEXPECTED: the kernel has a route of ours via ${k.found.join(", ")}, the RIB installs none`;
    case "absent":
      return "nothing to install, none there";
  }
}
