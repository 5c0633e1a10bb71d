// BFD authentication (RFC 5880 §6.7) against BIRD 2's BFD, with BGP over it: the real `ocelot
// bgpd` and BIRD both use Meticulous Keyed SHA1 with the same key: BFD comes Up on both sides
// (`ocelot status`, `birdc show bfd sessions`) and the BGP session with it. Our key changed by a
// SIGHUP (BIRD unchanged): our session restarts (AdminDown first, which RFC 5882 §3.2 says is no
// path failure: both BGP sessions stay), then BIRD refuses our packets and we refuse its
// (counted by reason in /metrics), so BFD never comes Up; the right key back: Up again.
// Then both sides switch to Keyed MD5 (BIRD reconfigured): Up again.
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpGetIn, metricSample } from "../helpers/metrics.js";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type BirdPeer,
  type OcelotPeer,
  PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["bird"]);
const skip = skipWithReason("BFD authentication (BIRD)", reason);

const OC = "10.255.16.1";
const PEER = "10.255.16.2";
const METRICS_PORT = 9181;

const birdConf = (auth: string) => `
log "@DIR@/bird.log" all;
router id ${PEER};
protocol device { }
protocol bfd {
  debug all;
  interface "pe-oc" {
    min rx interval 300 ms;
    min tx interval 300 ms;
    multiplier 3;
    authentication ${auth};
    password "s3cret-key" { id 7; };
  };
}
protocol bgp oc {
  local ${PEER} as 65016;
  neighbor ${OC} as 64516;
  hold time 90;
  bfd on;
  connect delay time 1; connect retry time 1;
  error wait time 1, 2;
  ipv4 { import all; export none; };
}
`;

const ocelotConfig = (type: string, password: string) => ({
  asn: 64516,
  routerId: OC,
  peers: [
    {
      address: PEER,
      asn: 65016,
      holdTime: 90,
      families: ["ipv4-unicast"],
      bfd: {
        minTx: 300,
        minRx: 300,
        multiplier: 3,
        authentication: { type, keyId: 7, password },
      },
    },
  ],
});

describe.skipIf(skip)("BFD authentication with BIRD 2", () => {
  let lab: PeerLab;
  let oc: Netns;
  let pe: Netns;
  let bird: BirdPeer;
  let ocelot: OcelotPeer;

  beforeAll(() => {
    lab = new PeerLab();
    oc = Netns.create("bao");
    pe = Netns.create("bap");
    link(oc, "oc-pe", `${OC}/30`, pe, "pe-oc", `${PEER}/30`);
    bird = lab.startBird(pe, "bird", birdConf("meticulous keyed sha1"));
    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig("meticulous-keyed-sha1", "s3cret-key"), [
      "--metrics-address",
      `127.0.0.1:${METRICS_PORT}`,
    ]);
  });

  afterAll(() => {
    lab?.cleanup();
    oc?.destroy();
    pe?.destroy();
  });

  const ours = () =>
    (ocelot.status().bfd as Array<{ peer: string; state: string }> | undefined)?.find(
      (b) => b.peer === PEER,
    )?.state;
  const birdUp = () => /10\.255\.16\.1\s+pe-oc\s+Up/.test(bird.cmd("show", "bfd", "sessions"));
  const reconfigure = (type: string, password: string) => {
    writeFileSync(
      ocelot.configPath,
      `${JSON.stringify({ status: { socket: ocelot.socket }, ...ocelotConfig(type, password) }, null, 2)}\n`,
    );
    lab.signal(ocelot.pid, "SIGHUP");
  };
  const discarded = (why: string) => {
    const [code, body] = httpGetIn(oc, METRICS_PORT, "/metrics");
    expect(code).toBe(200);
    return metricSample(body, `ocelot_bfd_packets_discarded_total{reason="${why}"}`) ?? 0;
  };

  /** What both sides saw, for a failure's message. */
  const diagnose = (e: unknown) => {
    const [, m] = httpGetIn(oc, METRICS_PORT, "/metrics");
    const lines = (text: string, re: RegExp, n = 30) =>
      text
        .split("\n")
        .filter((l) => re.test(l))
        .slice(-n)
        .join("\n");
    return new Error(
      [
        (e as Error).message,
        lines(m, /bfd_packets/),
        bird.cmd("show", "bfd", "sessions"),
        lines(ocelot.log(), /BFD/),
      ].join("\n"),
    );
  };

  it("Meticulous Keyed SHA1 with the same key: BFD Up on both sides, BGP Established", async () => {
    await waitFor("our BFD session Up", () => ours() === "Up");
    await waitFor("BIRD's BFD session Up", birdUp);
    await ocelot.established(PEER);
    expect(discarded("AuthenticationFailed")).toBe(0);
  });

  it("a wrong key (SIGHUP): both sides refuse, BFD stays Down; the right key: Up again", async () => {
    reconfigure("meticulous-keyed-sha1", "wrong-key");
    await waitFor("our BFD session Down", () => ours() !== "Up");
    await waitFor("BIRD's BFD session not Up", () => !birdUp());
    await waitFor(
      "BIRD's packets refused as failing authentication",
      () => discarded("AuthenticationFailed") > 0,
    );
    // Refused for a while (each side's detection time over): still not Up on either side.
    await new Promise((r) => setTimeout(r, 3000));
    expect(ours()).not.toBe("Up");
    expect(birdUp()).toBe(false);
    // Our AdminDown is no path failure, and a session never Up again drops nothing.
    expect(ocelot.peer(PEER)?.state).toBe("Established");
    reconfigure("meticulous-keyed-sha1", "s3cret-key");
    await waitFor("our BFD session Up again", () => ours() === "Up");
    await waitFor("BIRD's BFD session Up again", birdUp);
    await ocelot.established(PEER);
  });

  it("both sides on Keyed MD5: Up again; the key never appears in status or metrics", async () => {
    bird.reconfigure(birdConf("keyed md5"));
    reconfigure("keyed-md5", "s3cret-key");
    await waitFor("our BFD session Up on Keyed MD5", () => ours() === "Up").catch((e) => {
      throw diagnose(e);
    });
    await waitFor("BIRD's BFD session Up on Keyed MD5", birdUp).catch((e) => {
      throw diagnose(e);
    });
    const [, metrics] = httpGetIn(oc, METRICS_PORT, "/metrics");
    for (const text of [
      ocelot.statusText(),
      JSON.stringify(ocelot.status()),
      metrics,
      ocelot.log(),
    ])
      expect(text).not.toContain("s3cret-key");
  });
});
