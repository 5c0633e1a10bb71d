// MRT (RFC 6396 §4.4) BGP4MP records of received BGP messages, pure: BGP4MP_MESSAGE_AS4 (4-octet
// AS numbers, for a session that negotiated them) or BGP4MP_MESSAGE (2-octet), the whole BGP
// message (marker and header included) as the body. Values in, bytes out. Not: files.
import { isIPv4 } from "node:net";
import { ipBytes as ip, MrtType, mrtRecord } from "./table_dump_v2.js";

export const Bgp4mpSubtype = { Message: 1, MessageAs4: 4 } as const;

export interface Bgp4mpPeer {
  peerAs: number;
  localAs: number;
  peerAddress: string;
  localAddress: string;
  /** Interface index (0 when unknown). */
  ifIndex?: number;
}

/** One BGP4MP_MESSAGE(_AS4) record of `message` received from the peer at `timestamp`. */
export function bgp4mpMessage(
  timestamp: number,
  p: Bgp4mpPeer,
  message: Uint8Array,
  fourOctetAs: boolean,
): Buffer {
  const v6 = !isIPv4(p.peerAddress);
  const asLen = fourOctetAs ? 4 : 2;
  const head = Buffer.alloc(asLen * 2 + 4);
  if (fourOctetAs) {
    head.writeUInt32BE(p.peerAs >>> 0, 0);
    head.writeUInt32BE(p.localAs >>> 0, 4);
  } else {
    // AS_TRANS (RFC 6793) stands for a 4-octet AS on a 2-octet session.
    head.writeUInt16BE(p.peerAs > 0xffff ? 23456 : p.peerAs, 0);
    head.writeUInt16BE(p.localAs > 0xffff ? 23456 : p.localAs, 2);
  }
  head.writeUInt16BE(p.ifIndex ?? 0, asLen * 2);
  head.writeUInt16BE(v6 ? 2 : 1, asLen * 2 + 2);
  const local =
    p.localAddress && isIPv4(p.localAddress) === !v6 ? p.localAddress : v6 ? "::" : "0.0.0.0";
  const body = Buffer.concat([head, ip(p.peerAddress), ip(local), Buffer.from(message)]);
  return mrtRecord(
    timestamp,
    MrtType.Bgp4mp,
    fourOctetAs ? Bgp4mpSubtype.MessageAs4 : Bgp4mpSubtype.Message,
    body,
  );
}
