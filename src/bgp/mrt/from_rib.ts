// The Loc-RIB as the status API shows it (best path per prefix, attributes as text) turned into
// MRT TABLE_DUMP_V2 values: the peer table (index 0 is this speaker, for its own originations;
// each peer's BGP ID from its OPEN while Established)
// and one entry per prefix. Pure. Not: the byte encoding (table_dump_v2.ts).
import type { RoutesSnapshot, StatusSnapshot } from "../status.js";
import type { MrtPath, MrtPeer, MrtRoute } from "./table_dump_v2.js";

const ORIGINS: Record<string, 0 | 1 | 2> = { IGP: 0, EGP: 1, incomplete: 2 };

/** "65020 65000 {1,2}" -> AS_SEQUENCE (2) and AS_SET (1) segments. */
export function asPathSegments(text: string): MrtPath["asPath"] {
  const segs: MrtPath["asPath"] = [];
  let seq: number[] = [];
  for (const tok of text.match(/\{[^}]*\}|\S+/g) ?? []) {
    if (tok.startsWith("{")) {
      if (seq.length > 0) segs.push({ type: 2, asns: seq });
      seq = [];
      segs.push({ type: 1, asns: tok.slice(1, -1).split(",").filter(Boolean).map(Number) });
    } else seq.push(Number(tok));
  }
  if (seq.length > 0) segs.push({ type: 2, asns: seq });
  return segs;
}

export function ribToMrt(
  status: StatusSnapshot,
  routes: RoutesSnapshot,
  nowSeconds: number,
): { peers: MrtPeer[]; routes: MrtRoute[] } {
  const peers: MrtPeer[] = [{ bgpId: status.routerId, address: "0.0.0.0", asn: status.asn }];
  const index = new Map<string, number>();
  for (const p of status.peers) {
    index.set(p.address, peers.length);
    // A peer not Established now has no BGP ID to show: 0.0.0.0 as RFC 6396 allows.
    peers.push({ bgpId: p.bgpId ?? "0.0.0.0", address: p.address, asn: p.asn });
  }
  const out: MrtRoute[] = routes.routes.map((r) => {
    const b = r.best;
    const v6 = r.prefix.includes(":");
    const nh = b.nextHop.split(",")[0] ?? "-";
    return {
      prefix: r.prefix,
      paths: [
        {
          peer: index.get(b.peer) ?? 0,
          originatedTime: nowSeconds,
          origin: ORIGINS[b.origin] ?? 2,
          asPath: asPathSegments(b.asPath),
          nextHop: nh === "-" || nh === "" ? (v6 ? "::" : "0.0.0.0") : nh,
          ...(b.med !== null ? { med: b.med } : {}),
          ...(b.localPref !== null ? { localPref: b.localPref } : {}),
          communities: b.communities.map((c) => {
            const [hi, lo] = c.split(":").map(Number) as [number, number];
            return hi * 65536 + lo;
          }),
          largeCommunities: b.largeCommunities.map(
            (c) => c.split(":").map(Number) as [number, number, number],
          ),
        },
      ],
    };
  });
  return { peers, routes: out };
}
