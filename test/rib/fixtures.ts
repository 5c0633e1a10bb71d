// Shared builders for the RIB tests: a RIB over SimpleAttrs, peers by short name, and helpers
// that apply a drain's Adj-RIB-Out batches to per-peer tables (what each peer would hold).

import { type PrefixPolicy, type RouteSource, rejectReasonName } from "../../src/bgp/rib/policy.js";
import { parsePrefix } from "../../src/bgp/rib/prefix.js";
import { type AdjOutBatch, Rib, type RibOptions, type RibPeerInfo } from "../../src/bgp/rib/rib.js";
import { type SimpleAttrs, simpleAdapter, simpleAttrs } from "../../src/bgp/rib/simple_attrs.js";

export const LOCAL_AS = 64512;

export function makeRib(opts: Partial<RibOptions<SimpleAttrs>> = {}): Rib<SimpleAttrs> {
  return new Rib<SimpleAttrs>({
    localAs: LOCAL_AS,
    routerId: "10.0.0.100",
    adapter: simpleAdapter,
    ...opts,
  });
}

export function peer(
  rib: Rib<SimpleAttrs>,
  info: Partial<RibPeerInfo> & { address: string; asn: number },
  routerId?: string,
): number {
  const p = rib.addPeer({ id: info.address, ...info });
  rib.peerUp(p, routerId ?? info.address);
  return p;
}

export function announce(
  rib: Rib<SimpleAttrs>,
  p: number,
  prefix: string,
  a: Partial<SimpleAttrs> & { nextHop: string },
  pathId = 0,
): void {
  const id = rib.intern(simpleAttrs(a));
  const pp = parsePrefix(prefix);
  if (pp.family === 4) rib.announceV4(p, id, pp.words[0] as number, pp.len, pathId);
  else rib.announceV6(p, id, pp.words, 0, pp.len, pathId);
}

export function withdraw(rib: Rib<SimpleAttrs>, p: number, prefix: string, pathId = 0): void {
  const pp = parsePrefix(prefix);
  if (pp.family === 4) rib.withdrawV4(p, pp.words[0] as number, pp.len, pathId);
  else rib.withdrawV6(p, pp.words, 0, pp.len, pathId);
}

/** What each peer holds: peer id -> prefix -> attribute set (as the key string). */
export type PeerTables = Map<string, Map<string, string>>;

export function applyBatches(tables: PeerTables, batches: AdjOutBatch<SimpleAttrs>[]): void {
  for (const b of batches) {
    for (const peerId of b.peers) {
      let t = tables.get(peerId);
      if (t === undefined) {
        t = new Map();
        tables.set(peerId, t);
      }
      for (const pfx of [...b.withdraw.v4.toStrings(), ...b.withdraw.v6.toStrings()]) {
        if (!t.has(pfx)) throw new Error(`withdraw of ${pfx} to ${peerId} which does not hold it`);
        t.delete(pfx);
      }
      for (const a of b.announce) {
        const key = simpleAdapter.key(a.attrs);
        for (const pfx of [...a.v4.toStrings(), ...a.v6.toStrings()]) t.set(pfx, key);
      }
    }
  }
}

/** The Adj-RIB-Out of one peer as a prefix -> attribute key map. */
export function tableOf(rib: Rib<SimpleAttrs>, peerId: string): Map<string, string> {
  const t = new Map<string, string>();
  for (const a of rib.adjRibOut(peerId)) {
    const key = simpleAdapter.key(a.attrs);
    for (const pfx of [...a.v4.toStrings(), ...a.v6.toStrings()]) t.set(pfx, key);
  }
  return t;
}

/** A prefix policy's verdict on a text prefix: "accept" or the reject reason's name. */
export function verdict(policy: PrefixPolicy, prefix: string, src: RouteSource): string {
  const p = parsePrefix(prefix);
  const v =
    p.family === 4
      ? policy.v4(p.words[0] as number, p.len, src)
      : policy.v6(p.words, 0, p.len, src);
  return v === 0 ? "accept" : rejectReasonName(v);
}
