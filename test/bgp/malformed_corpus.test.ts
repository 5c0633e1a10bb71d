// The malformed-message corpus (test/bgp/corpus/malformed.ts) against the running speaker: a
// scripted raw peer establishes, announces P, sends the case's message and then a valid UPDATE
// for R as a sentinel (messages are handled in order, so once R is installed the case's message
// was handled). Each case's outcome is the RFC's: treat-as-withdraw, attribute discard, ignore,
// or the right NOTIFICATION; the speaker stays up and a second, well-behaved session beside it
// is never reset and keeps its route. Also bad OPENs: each gets its OPEN Message Error subcode.
import { afterEach, describe, expect, it } from "vitest";
import { startLoopbackSpeaker } from "../helpers/loopback_speaker.js";
import { waitFor } from "../helpers/netns.js";
import { rawPeer as connectRawPeer, openMessage, steadyRawPeer } from "../helpers/raw_peer.js";
import {
  ANNOUNCE_P,
  AS_PATH,
  attr,
  CASES,
  message,
  ORIGIN,
  STEADY_ANNOUNCE,
  update,
} from "./corpus/malformed.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The raw peer, destroyed after the test. */
async function rawPeer(port: number, address: string, first: Uint8Array) {
  const p = await connectRawPeer(port, address, first);
  cleanups.push(() => p.sock.destroy());
  return p;
}

const open = openMessage;

async function speaker() {
  const { speaker: s, port, has, state } = await startLoopbackSpeaker();
  cleanups.push(() => s.stop());
  // The well-behaved neighbour: AS 65011, announces 10.98.0.0/24.
  const steady = await steadyRawPeer(port, { state, has }, STEADY_ANNOUNCE, cleanups, 10);
  const checkSteady = () => {
    expect(state("127.0.0.6")?.state, "the other session").toBe("Established");
    expect(state("127.0.0.6")?.establishedTransitions).toBe(1);
    expect(has("10.98.0.0/24"), "the other session's route").toBe(true);
    expect(steady.notes(), "NOTIFICATIONs to the other session").toEqual([]);
  };
  return { s, port, has, state, checkSteady };
}

const SENTINEL = update({
  attrs: [...ORIGIN, ...AS_PATH, ...attr(0x40, 3, [127, 0, 0, 5])],
  nlri: [24, 10, 99, 3],
});

describe("malformed UPDATEs and other messages from an established peer", () => {
  for (const c of CASES) {
    it(`${c.name} (${c.rfc})`, async () => {
      const { port, has, state, checkSteady } = await speaker();
      const peer = await rawPeer(port, "127.0.0.5", open(65010, 0x7f000005));
      await waitFor("up", () => state("127.0.0.5")?.state === "Established", 60_000, 10);
      peer.sock.write(Uint8Array.from(ANNOUNCE_P));
      await waitFor("P installed", () => has("10.99.1.0/24"), 60_000, 10);
      peer.sock.write(Uint8Array.from(c.message));
      const e = c.expect;
      if (e.kind === "reset") {
        await waitFor("NOTIFICATION", () => peer.notes().length > 0, 60_000, 10);
        const [n] = peer.notes();
        expect([n?.code, n?.subcode], "NOTIFICATION code/subcode").toEqual([e.code, e.subcode]);
        if (e.data) expect(n?.data, "NOTIFICATION data").toEqual(e.data);
        await waitFor("P removed with the session", () => !has("10.99.1.0/24"), 60_000, 10);
        expect(state("127.0.0.5")?.state).not.toBe("Established");
      } else {
        peer.sock.write(Uint8Array.from(SENTINEL));
        await waitFor("sentinel installed", () => has("10.99.3.0/24"), 60_000, 10);
        expect(peer.notes(), "NOTIFICATIONs").toEqual([]);
        expect(state("127.0.0.5")?.state).toBe("Established");
        if (e.kind === "withdraw") expect(has("10.99.1.0/24"), "P withdrawn").toBe(false);
        if (e.kind === "accept") expect(has("10.99.2.0/24"), "Q installed").toBe(true);
        if (e.kind === "ignore") {
          expect(has("10.99.1.0/24"), "P kept").toBe(true);
          expect(has("10.99.2.0/24"), "Q absent").toBe(false);
        }
      }
      checkSteady();
    });
  }
});

describe("bad OPENs", () => {
  const cases: {
    name: string;
    open: Uint8Array;
    code: number;
    subcode: number;
    data?: number[];
  }[] = [
    {
      name: "version 3",
      open: open(65010, 0x7f000005, { version: 3 }),
      code: 2,
      subcode: 1,
      data: [0, 4],
    },
    { name: "the wrong AS", open: open(65099, 0x7f000005), code: 2, subcode: 2 },
    { name: "BGP Identifier 0.0.0.0", open: open(65010, 0), code: 2, subcode: 3 },
    { name: "hold time 1 s", open: open(65010, 0x7f000005, { hold: 1 }), code: 2, subcode: 6 },
    { name: "hold time 2 s", open: open(65010, 0x7f000005, { hold: 2 }), code: 2, subcode: 6 },
    {
      name: "an OPEN of length 28 (shorter than its minimum 29)",
      open: Uint8Array.from(message(1, [4, 0xfd, 0xf2, 0, 90, 127, 0, 0, 5])),
      code: 1,
      subcode: 2,
      data: [0, 28],
    },
  ];
  for (const c of cases) {
    it(`${c.name}: NOTIFICATION ${c.code}/${c.subcode}, the other session untouched`, async () => {
      const { port, state, checkSteady } = await speaker();
      const peer = await rawPeer(port, "127.0.0.5", c.open);
      await waitFor("NOTIFICATION", () => peer.notes().length > 0, 60_000, 10);
      const [n] = peer.notes();
      expect([n?.code, n?.subcode], "NOTIFICATION code/subcode").toEqual([c.code, c.subcode]);
      if (c.data) expect(n?.data, "NOTIFICATION data").toEqual(c.data);
      expect(state("127.0.0.5")?.state).not.toBe("Established");
      checkSteady();
    });
  }
});
