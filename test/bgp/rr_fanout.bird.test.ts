// Route reflector fan-out, small: bench/rr_fanout.ts's scenario with 2,000 prefixes from one
// iBGP client reflected to 3 others (our codec-built clients, one process in a second network
// namespace: test/helpers/netns.ts Netns), against `ocelot bgpd` as the reflector and against
// BIRD 2 as the same reflector. Each must bring every receiving client every one of the
// prefixes, send nothing else (no other prefix, no withdrawal), and close no session. Speed is
// the bench's.
import { describe, expect, it } from "vitest";
import { runFanout } from "../../bench/rr_fanout.js";
import type { Target } from "../../bench/rr_scale.js";
import { hangLimit } from "../helpers/limits.js";
import { netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";
import { peersUnavailableReason } from "../helpers/peers.js";

const N = 2000;
const K = 3;
const reason = netnsUnavailableReason() ?? peersUnavailableReason(["bird"]);
const skip = skipWithReason("route reflector fan-out", reason);

describe.skipIf(skip)("route reflector fan-out of 2,000 prefixes to 3 clients", () => {
  for (const target of ["ocelot", "bird"] as Target[]) {
    it(`${target}: every client gets every prefix, nothing else, no session dropped`, async () => {
      const r = await runFanout({ target, n: N, clients: K, limitMs: hangLimit(120_000) });
      expect(r.ms, "the slowest client got all prefixes").not.toBeNull();
      expect(r.counts, "distinct prefixes per client").toEqual(Array(K).fill(N));
      expect(r.foreign, "prefixes that are none of the injected ones").toBe(0);
      expect(r.withdrawn, "UPDATEs with withdrawals").toBe(0);
      expect(r.closed, "established sessions the reflector closed").toEqual([]);
      expect(r.notifications, "NOTIFICATIONs from the reflector").toEqual([]);
    }, 600_000);
  }
});
