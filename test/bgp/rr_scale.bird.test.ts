// BGP at scale, small: bench/rr_scale.ts's scenario with 50 iBGP route-reflector clients (our
// codec-built load generator, one socket per client from its own address, in a second network
// namespace: test/helpers/netns.ts Netns) against `ocelot bgpd` as the reflector and against
// BIRD 2 as the same reflector. Each must bring every client every other client's /26 from a
// cold start, bring all back after 10 % of the clients reset at once, and close no session
// itself (no NOTIFICATION, no hold timer run out on either side), and report its memory in parts
// (RssAnon + RssFile + RssShmem, Ocelot's V8 heap). The mesh form (the DUT one node of a full
// mesh of 50, the peers behind the generator's one address, their own addresses the next hops
// of the routes the DUT installs) must put every peer's /26 in the DUT's kernel and its own /26
// at every peer. Speed is the bench's.
import { describe, expect, it } from "vitest";
import { runScenario, type Target } from "../../bench/rr_scale.js";
import { hangLimit } from "../helpers/limits.js";
import { netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";
import { peersUnavailableReason } from "../helpers/peers.js";

const N = 50;
const reason = netnsUnavailableReason() ?? peersUnavailableReason(["bird"]);
const skip = skipWithReason("route reflector with 50 clients", reason);

describe.skipIf(skip)("route reflector with 50 clients", () => {
  for (const target of ["ocelot", "bird"] as Target[]) {
    it(`${target}: converges, comes back after 10 % reset, drops no session`, async () => {
      const r = await runScenario({
        target,
        mode: "rr",
        n: N,
        hold: 30,
        reset: true,
        limitMs: hangLimit(120_000),
        log: () => {},
      });
      expect(r.convergeMs, "cold start: every client has every other's /26").not.toBeNull();
      expect(r.resetCount).toBe(5);
      expect(r.resetMs, "after 5 clients reset: all back").not.toBeNull();
      expect(r.dutRoutes, "the reflector holds every client's /26").toBe(N);
      expect(r.notificationsRx, "NOTIFICATIONs from the reflector").toEqual({});
      expect(r.holdExpiredHere, "hold timers run out at the clients").toBe(0);
      expect(r.unexpectedCloses, "established sessions the reflector closed").toBe(0);
      // The generator's in-place walk of UPDATEs agrees with the full decoder (the first of each
      // session is decoded both ways), and Ocelot reflects nothing but the clients' /26s (BIRD
      // also sends its own connected 10.210.0.0/16, exported by its config).
      expect(r.parseMismatches, "UPDATE walk vs full decode").toBe(0);
      if (target === "ocelot") expect(r.unexpectedPrefixes, "prefixes no client sent").toBe(0);
      expect(r.allUpMs, "every session Established").not.toBeNull();
      expect(r.allUpMs as number).toBeLessThanOrEqual(r.convergeMs as number);
      expect(r.generator.cpuS).toBeGreaterThan(0);
      expect(r.atEnd.rssMiB).toBeGreaterThan(0);
      // The memory breakdown the bench prints: VmRSS in its parts, the sampled RssAnon peak, and
      // the Ocelot DUT's V8 heap from its status socket.
      const { rssMiB, anonMiB, fileMiB, shmemMiB } = r.atEnd;
      expect(anonMiB).toBeGreaterThan(0);
      expect(fileMiB).toBeGreaterThan(0);
      expect(Math.abs(anonMiB + fileMiB + shmemMiB - rssMiB)).toBeLessThan(0.5);
      expect(r.peakAnonMiB).toBeGreaterThanOrEqual(anonMiB * 0.5);
      if (target === "ocelot") {
        expect(r.atEnd.heapUsedMiB).toBeGreaterThan(0);
        expect(r.atEnd.heapTotalMiB).toBeGreaterThanOrEqual(r.atEnd.heapUsedMiB as number);
      } else expect(r.atEnd.heapUsedMiB).toBeUndefined();
    }, 600_000);

    it(`${target}: one node of a 50-node mesh installs every peer's /26, drops no session`, async () => {
      const r = await runScenario({
        target,
        mode: "mesh",
        n: N,
        hold: 30,
        limitMs: hangLimit(120_000),
        log: () => {},
      });
      expect(
        r.convergeMs,
        "every peer has the DUT's /26, the DUT's kernel every peer's",
      ).not.toBeNull();
      expect(r.dutRoutes, "the DUT's kernel routes to the peers' /26s").toBe(N);
      expect(r.notificationsRx, "NOTIFICATIONs from the DUT").toEqual({});
      expect(r.holdExpiredHere, "hold timers run out at the peers").toBe(0);
      expect(r.unexpectedCloses, "established sessions the DUT closed").toBe(0);
    }, 600_000);
  }
});
