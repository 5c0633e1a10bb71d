// Fixtures of the BMP dump tests: BGP OPENs of a session and the UPDATEs a peer would send for
// a list of prefixes (AS path 65020, one community), encoded by our own codec.
import { PrefixList, parsePrefix } from "../../src/bgp/rib/prefix.js";
import { toPrefixArray } from "../../src/bgp/speaker/addr.js";
import { makeWireBridge, wireAdapter } from "../../src/bgp/speaker/attrs.js";
import { Afi, Safi } from "../../src/bgp/wire/constants.js";
import type { SessionOptions } from "../../src/bgp/wire/types.js";
import { encodeUpdates } from "../../src/bgp/wire/update.js";

export const bgp = (type: number, body: number[]) => {
  const h = Buffer.alloc(19, 0xff);
  h.writeUInt16BE(19 + body.length, 16);
  h[18] = type;
  return Buffer.concat([h, Buffer.from(body)]);
};
export const OPEN_A = bgp(1, [4, 0xfc, 0x00, 0, 90, 10, 0, 0, 1, 0]);
export const OPEN_B = bgp(1, [4, 0xfd, 0xfc, 0, 90, 10, 0, 0, 2, 0]);
export const PEER = "10.0.0.2";
export const COMMUNITY = ((65020 << 16) | 7) >>> 0;

/** What a peer would send: one UPDATE per family for these prefixes (AS path 65020, community). */
export function updatesFor(prefixes: string[], fam: 4 | 6, opts: SessionOptions, ids?: number[]) {
  const bridge = makeWireBridge();
  const nh = fam === 4 ? PEER : "fd00::2";
  const a = wireAdapter.edit(
    wireAdapter.make({ origin: 0, nextHop: nh, communities: [COMMUNITY] }),
    {
      prependAs: 65020,
    },
  );
  const list = new PrefixList(fam, 0);
  prefixes.forEach((p, i) => {
    const x = parsePrefix(p);
    if (fam === 4) list.pushV4(x.words[0] as number, x.len);
    else list.pushV6(Uint32Array.from(x.words), 0, x.len);
    if (ids) list.pushPathId(ids[i] as number);
  });
  const w = bridge.toWire(a, fam);
  const afi = fam === 4 ? Afi.Ipv4 : Afi.Ipv6;
  const send: SessionOptions = {
    ...opts,
    addPath: { receive: new Set(), send: opts.addPath.receive },
  };
  return encodeUpdates(
    {
      afi,
      safi: Safi.Unicast,
      attributes: w.attributes,
      mpNextHop: w.mpNextHop,
      announce: toPrefixArray(list, afi),
    },
    send,
  );
}
