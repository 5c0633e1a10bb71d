// A scripted raw BGP peer over loopback for tests of the running speaker: it connects from a
// given local address, sends its first message (usually an OPEN), answers OPEN with KEEPALIVE,
// and records every message it receives (NOTIFICATIONs with code, subcode and data); and the
// well-behaved neighbour that tests keep beside it.
import * as net from "node:net";
import { MessageFramer } from "../../src/bgp/wire/framer.js";
import { encodeKeepalive } from "../../src/bgp/wire/message.js";
import { encodeOpen } from "../../src/bgp/wire/open.js";
import { waitFor } from "./netns.js";

export interface Received {
  type: number;
  code?: number;
  subcode?: number;
  data?: number[];
}

/** An OPEN for IPv4 unicast with four-octet AS numbers; version and hold time may be bent. */
export function openMessage(
  asn: number,
  id: number,
  o: { version?: number; hold?: number } = {},
): Uint8Array {
  const m = encodeOpen({
    version: 4,
    myAs: asn,
    holdTime: o.hold ?? 90,
    bgpIdentifier: id,
    capabilities: [
      { kind: "Multiprotocol", afi: 1, safi: 1 },
      { kind: "FourOctetAs", asn },
    ],
  });
  if (o.version !== undefined) m[19] = o.version;
  return m;
}

/** Connects to 127.0.0.1:port from address and sends first; the caller destroys the socket. */
export async function rawPeer(port: number, address: string, first: Uint8Array) {
  const sock = net.connect({ host: "127.0.0.1", port, localAddress: address });
  await new Promise<void>((r, j) => {
    sock.once("connect", () => r());
    sock.once("error", j);
  });
  const got: Received[] = [];
  const framer = new MessageFramer(65535);
  sock.on("error", () => {});
  sock.on("data", (d: Buffer) => {
    for (const m of framer.push(d)) {
      got.push(
        m[18] === 3
          ? { type: 3, code: m[19], subcode: m[20], data: [...m.subarray(21)] }
          : { type: m[18] as number },
      );
      if (m[18] === 1) sock.write(encodeKeepalive());
    }
  });
  sock.write(first);
  return { sock, got, notes: () => got.filter((g) => g.type === 3) };
}

/**
 * The well-behaved neighbour beside a scripted peer: AS 65011 from 127.0.0.6 (its socket
 * destroyed by cleanups), Established, then its `announce` UPDATE sent and 10.98.0.0/24 installed.
 */
export async function steadyRawPeer(
  port: number,
  speaker: {
    state: (address: string) => { state: string } | undefined;
    has: (dst: string) => boolean;
  },
  announce: number[],
  cleanups: (() => unknown)[],
  pollMs: number,
) {
  const steady = await rawPeer(port, "127.0.0.6", openMessage(65011, 0x7f000006));
  cleanups.push(() => steady.sock.destroy());
  await waitFor(
    "steady up",
    () => speaker.state("127.0.0.6")?.state === "Established",
    60_000,
    pollMs,
  );
  steady.sock.write(Uint8Array.from(announce));
  await waitFor("steady route", () => speaker.has("10.98.0.0/24"), 60_000, pollMs);
  return steady;
}
