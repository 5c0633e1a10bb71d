// Export encoding: the RIB's Adj-RIB-Out announcements and withdrawals as UPDATE messages for
// one set of session options (one encoding serves every peer of an update group that shares
// them). Pure. Owns: that encoding and the options key that groups peers. Not: which routes a
// peer gets (rib/), sending (the core emits send actions).
import type { PrefixList } from "../rib/prefix.js";
import type { AdjOutAnnounce } from "../rib/rib.js";
import { Afi, Safi } from "../wire/constants.js";
import type { SessionOptions } from "../wire/types.js";
import { encodeUpdates } from "../wire/update.js";
import { textPrefixArray, toPrefixArray } from "./addr.js";
import type { AttrBridge } from "./attrs.js";

/** Peers whose options give the same key get the same bytes. */
export function optionsKey(o: SessionOptions): string {
  return `${o.fourOctetAs ? 1 : 0}${o.extendedMessage ? 1 : 0}${o.extendedNextHop ? 1 : 0}${[...o.addPath.send].join(",")}`;
}

function withdrawals(list: PrefixList, afi: number, opts: SessionOptions): Uint8Array[] {
  if (list.count === 0) return [];
  return encodeUpdates(
    { afi, safi: Safi.Unicast, attributes: null, withdraw: toPrefixArray(list, afi) },
    opts,
  );
}

function announcements<A>(
  bridge: AttrBridge<A>,
  attrs: A,
  list: PrefixList,
  fam: 4 | 6,
  opts: SessionOptions,
): Uint8Array[] {
  if (list.count === 0) return [];
  const afi = fam === 4 ? Afi.Ipv4 : Afi.Ipv6;
  const w = bridge.toWire(attrs, fam);
  return encodeUpdates(
    {
      afi,
      safi: Safi.Unicast,
      attributes: w.attributes,
      mpNextHop: w.mpNextHop,
      announce: toPrefixArray(list, afi),
    },
    opts,
  );
}

/** UPDATEs for withdrawals (first) and announcements, IPv4 then IPv6 per attribute set. */
export function encodeBatch<A>(
  bridge: AttrBridge<A>,
  announce: readonly AdjOutAnnounce<A>[],
  withdraw: { v4: PrefixList; v6: PrefixList } | null,
  opts: SessionOptions,
): Uint8Array[] {
  const out: Uint8Array[] = [];
  if (withdraw) {
    out.push(...withdrawals(withdraw.v4, Afi.Ipv4, opts));
    out.push(...withdrawals(withdraw.v6, Afi.Ipv6, opts));
  }
  for (const a of announce) {
    out.push(...announcements(bridge, a.attrs, a.v4, 4, opts));
    out.push(...announcements(bridge, a.attrs, a.v6, 6, opts));
  }
  return out;
}

/** UPDATEs withdrawing prefixes given as text (a refresh that shrank a peer's export). */
export function encodeTextWithdrawals(
  prefixes: readonly string[],
  opts: SessionOptions,
): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const fam of [4, 6] as const) {
    const list = prefixes.filter((p) => (fam === 4) === !p.includes(":"));
    if (list.length === 0) continue;
    out.push(
      ...encodeUpdates(
        {
          afi: fam === 4 ? Afi.Ipv4 : Afi.Ipv6,
          safi: Safi.Unicast,
          attributes: null,
          withdraw: textPrefixArray(list, fam),
        },
        opts,
      ),
    );
  }
  return out;
}
