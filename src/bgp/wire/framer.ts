// The BGP stream framer: turns bytes in any chunking into whole messages (header included), as
// subarray views of the input chunk when a message lies inside one chunk. It checks the marker,
// length and type (RFC 4271 §6.1) and nothing inside the message body.

import {
  HeaderLength,
  KeepaliveLength,
  MarkerLength,
  MaxMessageLength,
  MessageHeaderErrorSubcode,
  MessageType,
  MinNotificationLength,
  MinOpenLength,
  MinUpdateLength,
  NotificationCode,
  RouteRefreshLength,
} from "./constants.js";
import { NotificationError } from "./types.js";

/** The RFC 4271 §6.1 header checks; returns the message length or throws NotificationError. */
export function checkHeader(buf: Uint8Array, off: number, maxLength: number): number {
  for (let i = 0; i < MarkerLength; i++) {
    if (buf[off + i] !== 0xff) {
      // RFC 4271 §6.1: marker not all ones -> Connection Not Synchronized.
      throw new NotificationError(
        NotificationCode.MessageHeaderError,
        MessageHeaderErrorSubcode.ConnectionNotSynchronized,
        new Uint8Array(0),
        `marker octet ${i} is 0x${buf[off + i].toString(16)}, not 0xff`,
      );
    }
  }
  const length = (buf[off + 16] << 8) | buf[off + 17];
  const type = buf[off + 18];
  const min = minLengthOf(type);
  if (min < 0) {
    // RFC 4271 §6.1: unrecognized Type -> Bad Message Type, data = the type octet.
    throw new NotificationError(
      NotificationCode.MessageHeaderError,
      MessageHeaderErrorSubcode.BadMessageType,
      Uint8Array.of(type),
      `message type ${type} is not recognized`,
    );
  }
  const max = type === MessageType.Keepalive ? KeepaliveLength : maxLength;
  if (length < min || length > max) {
    // RFC 4271 §6.1: bad Length -> Bad Message Length, data = the erroneous length field.
    // (ROUTE-REFRESH subtype length rules are RFC 7313 §5's own error; see message.ts.)
    throw new NotificationError(
      NotificationCode.MessageHeaderError,
      MessageHeaderErrorSubcode.BadMessageLength,
      Uint8Array.of(length >> 8, length & 0xff),
      `message length ${length} is outside ${min}..${max} for type ${type}`,
    );
  }
  return length;
}

function minLengthOf(type: number): number {
  switch (type) {
    case MessageType.Open:
      return MinOpenLength;
    case MessageType.Update:
      return MinUpdateLength;
    case MessageType.Notification:
      return MinNotificationLength;
    case MessageType.Keepalive:
      return KeepaliveLength;
    case MessageType.RouteRefresh:
      return RouteRefreshLength;
    default:
      return -1;
  }
}

/**
 * Accepts bytes in any chunking and yields whole messages. Messages wholly inside one pushed
 * chunk are returned as views of that chunk (do not reuse the chunk while they are alive);
 * messages split across chunks are assembled into a fresh buffer. After a NotificationError the
 * framer is poisoned: every later push throws the same error.
 */
export class MessageFramer {
  private maxLength: number;
  /** Bytes of an incomplete message carried between pushes (at most maxLength). */
  private pending: Uint8Array;
  private pendingLen = 0;
  private failed: NotificationError | null = null;

  constructor(maxLength: number = MaxMessageLength) {
    this.maxLength = maxLength;
    this.pending = new Uint8Array(HeaderLength);
  }

  /** RFC 8654 §4: raise the limit to 65535 once extended messages are negotiated. */
  setMaxLength(maxLength: number): void {
    this.maxLength = maxLength;
  }

  /** Number of buffered bytes of an incomplete message. */
  get buffered(): number {
    return this.pendingLen;
  }

  /** Feed one chunk; returns the whole messages completed by it, in order. */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.failed) throw this.failed;
    try {
      return this.pushInner(chunk);
    } catch (e) {
      if (e instanceof NotificationError) this.failed = e;
      throw e;
    }
  }

  private pushInner(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let off = 0;
    const n = chunk.length;
    if (this.pendingLen > 0) {
      off = this.fillPending(chunk, out);
      if (this.pendingLen > 0) return out;
    }
    while (off < n) {
      const avail = n - off;
      if (avail < HeaderLength) {
        this.stash(chunk, off, avail);
        break;
      }
      const len = checkHeader(chunk, off, this.maxLength);
      if (avail < len) {
        this.stash(chunk, off, avail);
        break;
      }
      out.push(chunk.subarray(off, off + len));
      off += len;
    }
    return out;
  }

  /** Completes the pending message from the start of chunk; returns bytes consumed. */
  private fillPending(chunk: Uint8Array, out: Uint8Array[]): number {
    let off = 0;
    if (this.pendingLen < HeaderLength) {
      const take = Math.min(HeaderLength - this.pendingLen, chunk.length);
      this.pending.set(chunk.subarray(0, take), this.pendingLen);
      this.pendingLen += take;
      off = take;
      if (this.pendingLen < HeaderLength) return off;
    }
    const len = checkHeader(this.pending, 0, this.maxLength);
    if (this.pending.length < len) {
      const grown = new Uint8Array(len);
      grown.set(this.pending.subarray(0, this.pendingLen));
      this.pending = grown;
    }
    const take = Math.min(len - this.pendingLen, chunk.length - off);
    this.pending.set(chunk.subarray(off, off + take), this.pendingLen);
    this.pendingLen += take;
    off += take;
    if (this.pendingLen === len) {
      out.push(this.pending.subarray(0, len));
      // The emitted message owns this buffer now; start a new one.
      this.pending = new Uint8Array(HeaderLength);
      this.pendingLen = 0;
    }
    return off;
  }

  private stash(chunk: Uint8Array, off: number, count: number): void {
    // Header known complete? Then size the buffer to the checked length, else to the header.
    const need = count >= HeaderLength ? (chunk[off + 16] << 8) | chunk[off + 17] : HeaderLength;
    this.pending = new Uint8Array(Math.max(need, HeaderLength));
    this.pending.set(chunk.subarray(off, off + count));
    this.pendingLen = count;
  }
}
