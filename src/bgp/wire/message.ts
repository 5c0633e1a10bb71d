// KEEPALIVE, NOTIFICATION and ROUTE-REFRESH messages, and decodeMessage(): one entry point that
// dispatches a framed message to its decoder. OPEN lives in open.ts, UPDATE in update.ts; the
// framer (framer.ts) has already checked marker, length and type.

import {
  HeaderLength,
  KeepaliveLength,
  MaxShutdownCommunicationLength,
  MessageHeaderErrorSubcode,
  MessageType,
  NotificationCode,
  RouteRefreshLength,
  RouteRefreshMessageErrorSubcode,
  RouteRefreshSubtype,
} from "./constants.js";
import { messageType, writeHeader } from "./header.js";
import { decodeOpen } from "./open.js";
import {
  type BgpMessage,
  isAdminShutdown,
  NotificationError,
  type NotificationMessage,
  type RouteRefreshMessage,
  type SessionOptions,
} from "./types.js";
import { decodeUpdate } from "./update.js";

const utf8Strict = new TextDecoder("utf-8", { fatal: true });
const utf8Enc = new TextEncoder();

/** RFC 4271 §4.4: a KEEPALIVE is the header alone. */
export function encodeKeepalive(): Uint8Array {
  const out = new Uint8Array(KeepaliveLength);
  writeHeader(out, 0, KeepaliveLength, MessageType.Keepalive);
  return out;
}

/**
 * Encodes a NOTIFICATION. With `shutdownMessage` and no data, the data becomes the RFC 9003
 * Shutdown Communication (length octet + UTF-8, cut to 255 octets on a character boundary).
 */
export function encodeNotification(n: {
  code: number;
  subcode: number;
  data?: Uint8Array;
  shutdownMessage?: string | null;
}): Uint8Array {
  let data = n.data ?? new Uint8Array(0);
  if (data.length === 0 && n.shutdownMessage != null)
    data = shutdownCommunication(n.shutdownMessage);
  const max = 65535 - 21;
  if (data.length > max) data = data.subarray(0, max);
  const total = 21 + data.length;
  const out = new Uint8Array(total);
  writeHeader(out, 0, total, MessageType.Notification);
  out[19] = n.code;
  out[20] = n.subcode;
  out.set(data, 21);
  return out;
}

/** The NOTIFICATION for a NotificationError (what the FSM sends before closing). */
export function encodeNotificationError(e: NotificationError): Uint8Array {
  return encodeNotification({ code: e.code, subcode: e.subcode, data: e.data });
}

function shutdownCommunication(text: string): Uint8Array {
  let bytes = utf8Enc.encode(text);
  if (bytes.length > MaxShutdownCommunicationLength) {
    let cut = MaxShutdownCommunicationLength;
    // Do not split a UTF-8 sequence: back up over continuation octets.
    while (cut > 0 && (bytes[cut] & 0xc0) === 0x80) cut--;
    bytes = bytes.subarray(0, cut);
  }
  const out = new Uint8Array(1 + bytes.length);
  out[0] = bytes.length;
  out.set(bytes, 1);
  return out;
}

/** RFC 4271 §4.5; the admin shutdown text of RFC 8203/9003 when present and well formed. Never throws. */
export function decodeNotification(msg: Uint8Array): NotificationMessage {
  const code = msg.length > 19 ? msg[19] : 0;
  const subcode = msg.length > 20 ? msg[20] : 0;
  const data = msg.length > 21 ? msg.slice(21) : new Uint8Array(0);
  const n: NotificationMessage = { code, subcode, data, shutdownMessage: null };
  if (isAdminShutdown(n) && data.length >= 1 && data[0] <= data.length - 1) {
    // RFC 9003 §2: Length(1) then that many octets of UTF-8; malformed text is ignored (§3).
    try {
      n.shutdownMessage = utf8Strict.decode(data.subarray(1, 1 + data[0]));
    } catch {
      n.shutdownMessage = null;
    }
  }
  return n;
}

/** RFC 2918 §3 / RFC 7313 §3: AFI(2) Subtype(1) SAFI(1). */
export function encodeRouteRefresh(rr: RouteRefreshMessage): Uint8Array {
  const out = new Uint8Array(RouteRefreshLength);
  writeHeader(out, 0, RouteRefreshLength, MessageType.RouteRefresh);
  out[19] = (rr.afi >> 8) & 0xff;
  out[20] = rr.afi & 0xff;
  out[21] = rr.subtype;
  out[22] = rr.safi;
  return out;
}

/**
 * Decodes a ROUTE-REFRESH. RFC 7313 §5: a BoRR/EoRR whose length is not 23 is a ROUTE-REFRESH
 * Message Error / Invalid Message Length with the whole message as data. Subtypes other than
 * 0, 1, 2 are returned as-is; RFC 7313 §5 says the receiver ignores them.
 */
export function decodeRouteRefresh(msg: Uint8Array): RouteRefreshMessage {
  if (msg.length < RouteRefreshLength) {
    throw new NotificationError(
      NotificationCode.MessageHeaderError,
      MessageHeaderErrorSubcode.BadMessageLength,
      Uint8Array.of(msg.length >> 8, msg.length & 0xff),
      `ROUTE-REFRESH length ${msg.length} is below ${RouteRefreshLength}`,
    );
  }
  const subtype = msg[21];
  if (
    msg.length !== RouteRefreshLength &&
    (subtype === RouteRefreshSubtype.BeginningOfRouteRefresh ||
      subtype === RouteRefreshSubtype.EndOfRouteRefresh)
  ) {
    throw new NotificationError(
      NotificationCode.RouteRefreshMessageError,
      RouteRefreshMessageErrorSubcode.InvalidMessageLength,
      msg.slice(),
      `ROUTE-REFRESH subtype ${subtype} has length ${msg.length}, not ${RouteRefreshLength}`,
    );
  }
  return { afi: (msg[19] << 8) | msg[20], safi: msg[22], subtype };
}

/**
 * Decodes one framed message (header included, as yielded by MessageFramer). Returns the value
 * or throws NotificationError; UPDATE attribute errors come back as RFC 7606 actions.
 */
export function decodeMessage(msg: Uint8Array, opts: SessionOptions): BgpMessage {
  switch (messageType(msg)) {
    case MessageType.Open:
      return { type: MessageType.Open, open: decodeOpen(msg) };
    case MessageType.Update:
      return { type: MessageType.Update, update: decodeUpdate(msg, opts) };
    case MessageType.Notification:
      return { type: MessageType.Notification, notification: decodeNotification(msg) };
    case MessageType.Keepalive:
      if (msg.length !== HeaderLength) {
        // RFC 4271 §6.1: a KEEPALIVE longer than 19 octets has a bad length.
        throw new NotificationError(
          NotificationCode.MessageHeaderError,
          MessageHeaderErrorSubcode.BadMessageLength,
          Uint8Array.of(msg.length >> 8, msg.length & 0xff),
          `KEEPALIVE length ${msg.length} is not 19`,
        );
      }
      return { type: MessageType.Keepalive };
    case MessageType.RouteRefresh:
      return { type: MessageType.RouteRefresh, routeRefresh: decodeRouteRefresh(msg) };
    default:
      // RFC 4271 §6.1: Bad Message Type, data = the type octet.
      throw new NotificationError(
        NotificationCode.MessageHeaderError,
        MessageHeaderErrorSubcode.BadMessageType,
        Uint8Array.of(messageType(msg)),
        `message type ${messageType(msg)} is not recognized`,
      );
  }
}
