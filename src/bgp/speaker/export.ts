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

/** A session's options are fixed once it is Established: their key is computed once. */
const keys = new WeakMap<SessionOptions, string>();

/** Peers whose options give the same key get the same bytes. */
export function optionsKey(o: SessionOptions): string {
  let k = keys.get(o);
  if (k === undefined) {
    k = `${o.fourOctetAs ? 1 : 0}${o.extendedMessage ? 1 : 0}${o.extendedNextHop ? 1 : 0}${[...o.addPath.send].join(",")}`;
    keys.set(o, k);
  }
  return k;
}

/**
 * UPDATEs already encoded for an attribute set and a few prefixes, per options key. Interned
 * attribute sets do not change while they live, so the same set with the same prefixes gives
 * the same bytes: a reflector's route (its own set, one prefix) is encoded once and its bytes
 * reused for every client's table dump, instead of once per client.
 */
interface SmallEncoding {
  fam: 4 | 6;
  opts: string;
  count: number;
  words: Uint32Array;
  lens: Uint8Array;
  msgs: Uint8Array[];
}
const SMALL_MAX = 4;
const SMALL_PER_SET = 4;
type Wired = ReturnType<AttrBridge<unknown>["toWire"]>;
/** Per bridge (its toWire decides the bytes): encodings and toWire results per attribute set. */
const memos = new WeakMap<
  object,
  { small: WeakMap<object, SmallEncoding[]>; wired: WeakMap<object, Wired[]> }
>();

function memoOf(bridge: object) {
  let m = memos.get(bridge);
  if (m === undefined) {
    m = { small: new WeakMap(), wired: new WeakMap() };
    memos.set(bridge, m);
  }
  return m;
}

function sameList(e: SmallEncoding, list: PrefixList): boolean {
  if (e.count !== list.count) return false;
  const n = list.count * (list.family === 4 ? 1 : 4);
  for (let i = 0; i < n; i++) if (e.words[i] !== list.words[i]) return false;
  for (let i = 0; i < list.count; i++) if (e.lens[i] !== list.lens[i]) return false;
  return true;
}

/** toWire's result per attribute set and family (the next hop parsed once, not per encoding). */
function toWireOnce<A>(bridge: AttrBridge<A>, attrs: A, fam: 4 | 6) {
  if (typeof attrs !== "object" || attrs === null) return bridge.toWire(attrs, fam);
  const wired = memoOf(bridge).wired;
  let w = wired.get(attrs);
  if (w === undefined) {
    w = [];
    wired.set(attrs, w);
  }
  const hit = w[fam];
  if (hit !== undefined) return hit;
  const made = bridge.toWire(attrs, fam);
  w[fam] = made;
  return made;
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
  const memo =
    list.count <= SMALL_MAX && list.pathIds === null && typeof attrs === "object" && attrs !== null;
  const ok = memo ? optionsKey(opts) : "";
  let seen: SmallEncoding[] | undefined;
  if (memo) {
    seen = memoOf(bridge).small.get(attrs);
    if (seen !== undefined)
      for (const e of seen) if (e.fam === fam && e.opts === ok && sameList(e, list)) return e.msgs;
  }
  const afi = fam === 4 ? Afi.Ipv4 : Afi.Ipv6;
  const w = toWireOnce(bridge, attrs, fam);
  const msgs = encodeUpdates(
    {
      afi,
      safi: Safi.Unicast,
      attributes: w.attributes,
      mpNextHop: w.mpNextHop,
      announce: toPrefixArray(list, afi),
    },
    opts,
  );
  if (memo) {
    const n = list.count * (fam === 4 ? 1 : 4);
    const e: SmallEncoding = {
      fam,
      opts: ok,
      count: list.count,
      words: list.words.slice(0, n),
      lens: list.lens.slice(0, list.count),
      msgs,
    };
    if (seen === undefined) memoOf(bridge).small.set(attrs as object, [e]);
    else {
      if (seen.length >= SMALL_PER_SET) seen.shift();
      seen.push(e);
    }
  }
  return msgs;
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

/**
 * A peer's Adj-RIB-In (Rib.adjRibIn) as the UPDATEs it could have sent them in, encoded one
 * attribute set at a time as the caller pulls (BMP's dump to a station that connects late): the
 * session's receive-side options (its ADD-PATH receive families carry path ids, 2-octet AS
 * sessions get AS_PATH with AS_TRANS and AS4_PATH), many prefixes per UPDATE. A set that cannot
 * be encoded (longer than a message) is skipped and counted in `skipped`.
 */
export function* encodeReceived<A>(
  bridge: AttrBridge<A>,
  announce: readonly AdjOutAnnounce<A>[],
  session: SessionOptions,
  skipped: { count: number } = { count: 0 },
): Generator<Uint8Array> {
  const opts: SessionOptions = {
    fourOctetAs: session.fourOctetAs,
    addPath: { receive: new Set(), send: session.addPath.receive },
    extendedMessage: session.extendedMessage,
    extendedNextHop: session.extendedNextHop,
  };
  for (const a of announce) {
    let msgs: Uint8Array[];
    try {
      msgs = [
        ...announcements(bridge, a.attrs, a.v4, 4, opts),
        ...announcements(bridge, a.attrs, a.v6, 6, opts),
      ];
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      skipped.count++;
      continue;
    }
    yield* msgs;
  }
}
