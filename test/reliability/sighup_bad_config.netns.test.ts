// A bad config on SIGHUP (issue 17, reliability): the real `ocelot bgpd` in a namespace peered
// with BIRD 2 in another is sent SIGHUP after its config file was replaced by an invalid one
// (a hold time of 2 s, an unknown field, a duplicate peer, text that is not YAML) or by a valid
// one that fails while applied (a listen address or a BFD source address not on the host): each
// time the daemon keeps running on the old config, none of the new one applied (the session
// stays Established, never reset, BIRD's routes stay in our kernel, the listener stays, no BFD
// session is left) and logs why, naming the field or address. A later valid SIGHUP (an import
// filter that rejects one of BIRD's two prefixes) is applied: that route leaves the kernel.
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type BirdPeer,
  closePeerLab,
  kernelRoutes,
  type OcelotPeer,
  openPeerPair,
  type PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["bird"]);
const skip = skipWithReason("a bad config on SIGHUP", reason);

const OC = "10.255.47.1";
const BR = "10.255.47.2";
const OC_AS = 64547;

const birdConf = `
log "@DIR@/bird.log" all;
router id ${BR};
protocol device { }
protocol static s4 { ipv4; route 10.97.47.0/24 blackhole; route 10.97.48.0/24 blackhole; }
protocol bgp oc {
  local ${BR} as 65047;
  neighbor ${OC} as ${OC_AS};
  passive on;
  hold time 9;
  error wait time 1, 2;
  ipv4 { import all; export where source = RTS_STATIC; };
}
`;

const peer = { address: BR, asn: 65047, holdTime: 9, connectRetryTime: 1 };
/** The peer with an import filter that drops one of BIRD's two prefixes. */
const filtered = {
  ...peer,
  importFilter: { rules: [{ action: "Reject", cidr: "10.97.48.0/24", matchOperator: "Equal" }] },
};
const BFD = { minTx: 300, minRx: 300, multiplier: 3 };
const base = {
  asn: OC_AS,
  routerId: OC,
  peers: [peer],
  fib: { enabled: true, table: "main", protocol: 201, gracefulRestartTime: 0 },
};

describe.skipIf(skip)("a bad config on SIGHUP (ocelot bgpd, BIRD 2)", () => {
  let lab: PeerLab;
  let oc: Netns;
  let br: Netns;
  let bird: BirdPeer;
  let ocelot: OcelotPeer;

  beforeAll(() => {
    ({ lab, oc, br } = openPeerPair("sho", "shb", `${OC}/30`, `${BR}/30`));
    bird = lab.startBird(br, "bird", birdConf);
    ocelot = lab.startOcelot(oc, "ocelot", base);
  });

  afterAll(() => {
    closePeerLab(lab, oc, br);
  });

  const proto201 = () =>
    kernelRoutes(oc, 4)
      .filter((r) => r.protocol === "201")
      .map((r) => r.dst)
      .sort();
  /** bgpd's log lines (pino JSON) with this msg. */
  const logLines = (msg: string) =>
    ocelot
      .log()
      .split("\n")
      .filter((l) => l.includes(`"msg":"${msg}"`))
      .map((l) => JSON.parse(l) as { error?: string; config?: string });
  const write = (text: string) =>
    writeFileSync(ocelot.configPath, text.replace("@SOCKET@", ocelot.socket));
  const withSocket = (cfg: object) => JSON.stringify({ status: { socket: "@SOCKET@" }, ...cfg });

  it("keeps the old config running on an invalid one, says why naming the field; a valid one is applied", async () => {
    await ocelot.established(BR, 60_000);
    await waitFor("BIRD's two routes in our kernel", () => proto201().length === 2, 60_000, 100);
    const transitions = ocelot.peer(BR)?.establishedTransitions;
    const bad: [string, string, RegExp][] = [
      [
        "a hold time of 2 s",
        withSocket({ ...base, peers: [{ ...peer, holdTime: 2 }] }),
        /peers\[0\]\.holdTime/,
      ],
      ["an unknown field", withSocket({ ...base, peerz: [] }), /unknown field "peerz"/],
      [
        "a duplicate peer",
        withSocket({ ...base, peers: [peer, peer] }),
        /peers\[1\]\.address: duplicate peer 10\.255\.47\.2/,
      ],
      ["text that is not YAML", "asn: [64547\nrouterId: {", /Could not parse/],
      // Valid files that fail while being applied: nothing of them may stay applied (the
      // filter they also carry would drop 10.97.48.0/24 from our kernel).
      [
        "a listen address that is not on this host",
        withSocket({ ...base, listen: { address: "192.0.2.77", port: 179 }, peers: [filtered] }),
        /192\.0\.2\.77/,
      ],
      [
        "a BFD source address that is not on this host",
        withSocket({
          ...base,
          peers: [{ ...filtered, sourceAddress: "10.255.47.5", bfd: BFD }],
        }),
        /EADDRNOTAVAIL|10\.255\.47\.5/,
      ],
    ];
    for (const [what, text, names] of bad) {
      const failures = logLines("Configuration reload failed; keeping the old one").length;
      write(text);
      lab.signal(ocelot.pid, "SIGHUP");
      await waitFor(
        `the reload of ${what} refused in the log`,
        () => logLines("Configuration reload failed; keeping the old one").length > failures,
        30_000,
        50,
      );
      const line = logLines("Configuration reload failed; keeping the old one").at(-1);
      console.log(`SIGHUP with ${what}: ${line?.error}`);
      expect(line?.error, what).toMatch(names);
      // Still on the old config: the session never reset, BIRD's routes in our kernel.
      await new Promise((r) => setTimeout(r, 1000));
      const p = ocelot.peer(BR);
      expect(p?.state, what).toBe("Established");
      expect(p?.establishedTransitions, what).toBe(transitions);
      expect(proto201(), what).toEqual(["10.97.47.0/24", "10.97.48.0/24"]);
      expect(bird.state("oc"), what).toBe("Established");
      expect(oc.exec("ss", "-Hltn", "sport", "= :179"), `${what}: still listening`).toMatch(
        /LISTEN/,
      );
      expect(
        (ocelot.status().bfd as unknown[] | undefined) ?? [],
        `${what}: no BFD session left`,
      ).toEqual([]);
    }
    expect(logLines("Configuration reloaded")).toHaveLength(0);

    // A valid config after them is applied: an import filter drops one prefix (by route refresh).
    write(withSocket({ ...base, peers: [filtered] }));
    lab.signal(ocelot.pid, "SIGHUP");
    await waitFor("Configuration reloaded", () => logLines("Configuration reloaded").length === 1);
    await waitFor(
      "the filtered prefix gone from our kernel",
      () => proto201().join() === "10.97.47.0/24",
      30_000,
      100,
    );
    expect(ocelot.peer(BR)?.state).toBe("Established");
    expect(ocelot.peer(BR)?.establishedTransitions).toBe(transitions);
  });
});
