// Whether one prefix is in the kernel as the RIB expects it, pure: the RIB's next hops against
// the kernel's routes for exactly that prefix (`ip -j route show table all exact PREFIX`, every
// protocol), under the speaker's route protocol. A route the FIB should have installed but the
// kernel does not hold (it failed, or someone deleted it) is "missing"; one with other next hops
// is "different"; one in the kernel though the RIB has nothing to install is "unexpected".
// Owns: that verdict. Not: reading the kernel or the RIB (the CLI does).

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
  state: "installed" | "missing" | "different" | "unexpected" | "absent";
  expected: string[];
  /** Next hops of the kernel's route under our protocol (empty when there is none). */
  found: string[];
  /** Routes for the prefix from other protocols (e.g. a static or kernel route), as text. */
  others: string[];
}

function hops(r: IpJsonRoute): string[] {
  const list = r.nexthops?.length ? r.nexthops : [r];
  return list.map((h) => h.gateway ?? (h.dev ? `dev ${h.dev}` : "-")).sort();
}

export function checkKernelRoute(
  expected: readonly string[],
  kernel: readonly IpJsonRoute[],
  protocol: number,
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
  else if (found.length === 0) state = "missing";
  else state = want.join(",") === found.join(",") ? "installed" : "different";
  return { state, expected: want, found, others };
}
