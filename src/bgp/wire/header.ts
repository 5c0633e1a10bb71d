// The 19-octet BGP message header (RFC 4271 §4.1): writing it into an output buffer. Reading and
// checking received headers is the framer's job (framer.ts).

import { MarkerLength } from "./constants.js";

/** Writes marker, length and type at buf[off..off+19). */
export function writeHeader(buf: Uint8Array, off: number, length: number, type: number): void {
  buf.fill(0xff, off, off + MarkerLength);
  buf[off + 16] = (length >> 8) & 0xff;
  buf[off + 17] = length & 0xff;
  buf[off + 18] = type;
}

/** The type octet of a whole message. */
export function messageType(msg: Uint8Array): number {
  return msg[18];
}

/** The length field of a whole message. */
export function messageLength(msg: Uint8Array): number {
  return (msg[16] << 8) | msg[17];
}
