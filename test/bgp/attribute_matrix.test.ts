// Every known path attribute truncated, overlong, duplicated and with wrong flags
// (test/bgp/corpus/attribute_matrix.ts) from a scripted raw peer to the running speaker: each
// answered as RFC 7606 says (treat-as-withdraw, or the route used with the attribute discarded
// or its later copy ignored), never with a NOTIFICATION; then a valid UPDATE as a sentinel
// (messages are handled in order). The speaker stays up and a well-behaved session beside it is
// never reset and keeps its route.
import { afterEach, describe, expect, it } from "vitest";
import { startLoopbackSpeaker } from "../helpers/loopback_speaker.js";
import { waitFor } from "../helpers/netns.js";
import { openMessage, rawPeer, steadyRawPeer } from "../helpers/raw_peer.js";
import { MATRIX } from "./corpus/attribute_matrix.js";
import { AS_PATH, NEXT_HOP, ORIGIN, STEADY_ANNOUNCE, update } from "./corpus/malformed.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const SENTINEL = update({ attrs: [...ORIGIN, ...AS_PATH, ...NEXT_HOP], nlri: [24, 10, 99, 3] });
/** P announced correctly first, so that a treat-as-withdraw has something to withdraw. */
const ANNOUNCE_P = update({ attrs: [...ORIGIN, ...AS_PATH, ...NEXT_HOP], nlri: [24, 10, 99, 1] });

describe("every known attribute truncated, overlong, duplicated, with wrong flags", () => {
  it("the matrix covers each attribute four ways", () => {
    expect(MATRIX.length).toBeGreaterThanOrEqual(14 * 4 - 1);
  });
  for (const c of MATRIX) {
    it(`${c.name}: ${c.expect} (${c.rfc})`, async () => {
      const { speaker: s, port, has, state } = await startLoopbackSpeaker();
      cleanups.push(() => s.stop());
      const steady = await steadyRawPeer(port, { state, has }, STEADY_ANNOUNCE, cleanups, 10);
      const peer = await rawPeer(port, "127.0.0.5", openMessage(65010, 0x7f000005));
      cleanups.push(() => peer.sock.destroy());
      await waitFor("up", () => state("127.0.0.5")?.state === "Established", 60_000, 10);
      peer.sock.write(Uint8Array.from(ANNOUNCE_P));
      await waitFor("P installed", () => has("10.99.1.0/24"), 60_000, 10);
      peer.sock.write(Uint8Array.from(c.message));
      peer.sock.write(Uint8Array.from(SENTINEL));
      await waitFor(
        "sentinel installed",
        () => has("10.99.3.0/24") || peer.notes().length > 0,
        60_000,
        10,
      );
      expect(peer.notes(), "NOTIFICATIONs").toEqual([]);
      expect(state("127.0.0.5")?.state).toBe("Established");
      const want = c.expect === "accept";
      expect([has("10.99.1.0/24"), has("10.99.2.0/24")], "P and Q installed").toEqual([want, want]);
      expect(state("127.0.0.6")?.establishedTransitions, "the other session").toBe(1);
      expect(has("10.98.0.0/24"), "the other session's route").toBe(true);
      expect(steady.notes(), "NOTIFICATIONs to the other session").toEqual([]);
    });
  }
});
