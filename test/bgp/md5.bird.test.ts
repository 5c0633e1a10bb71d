// TCP-MD5 (RFC 2385) between `ocelot bgpd` and BIRD 2 in network namespaces: with the same
// password (ours from a passwordFile, ours connecting) the session comes up and routes reach
// both kernels; with a wrong one (BIRD connecting to our listener) it never comes up within the
// hold time while the kernel's TCPMD5Failure counter rises; a SIGHUP that fixes the key updates
// the listener's entry, and one that changes a working key resets that session to the new key.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
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
  tcpMd5Counters,
} from "../helpers/peers.js";

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["bird"]);
const skip = skipWithReason("TCP-MD5 with BIRD", reason);

const BIRD_AS = 65010;
const OC_AS = 64512;
const GOOD = "Md5 with spaces & symbols!";
const GOOD2 = "second-key-after-reload";
const RIGHT = "the-right-one";
const WRONG = "not-the-right-one";

/**
 * oc4: BIRD waits for us (we connect, keyed). bad: BIRD connects to our listener, at our second
 * address (BIRD keys its listener per neighbor address: one protocol per neighbor address).
 */
function birdConf(good: string, bad: string): string {
  return `
log "@DIR@/bird.log" all;
router id 10.255.4.2;
protocol device { }
protocol kernel k4 { ipv4 { import none; export where source = RTS_BGP; }; }
protocol static s4 { ipv4; route 10.99.4.0/24 blackhole; }
protocol bgp oc4 {
  local 10.255.4.2 as ${BIRD_AS};
  neighbor 10.255.4.1 as ${OC_AS};
  passive on;
  password "${good}";
  hold time 3;
  error wait time 1, 2;
  ipv4 { import all; export where source = RTS_STATIC; };
}
protocol bgp bad {
  local 10.255.4.3 as ${BIRD_AS};
  neighbor 10.255.4.4 as ${OC_AS};
  password "${bad}";
  hold time 3;
  connect delay time 1; connect retry time 1;
  error wait time 1, 2;
  ipv4 { import all; export where source = RTS_STATIC; };
}
`;
}

describe.skipIf(skip)("TCP-MD5 with BIRD 2", () => {
  let lab: PeerLab;
  let oc: Netns;
  let br: Netns;
  let bird: BirdPeer;
  let ocelot: OcelotPeer;
  let keyFile: string;

  const ocelotConfig = (badKey: string) => ({
    asn: OC_AS,
    routerId: "10.255.4.1",
    listen: { address: "::", port: 179 },
    peers: [
      {
        address: "10.255.4.2",
        asn: BIRD_AS,
        holdTime: 3,
        connectRetryTime: 1,
        families: ["ipv4-unicast"],
        passwordFile: keyFile,
      },
      {
        address: "10.255.4.3",
        asn: BIRD_AS,
        holdTime: 3,
        passive: true,
        families: ["ipv4-unicast"],
        password: badKey,
      },
    ],
    originate: [{ prefix: "10.244.4.0/26" }],
    fib: { enabled: true, table: "main", protocol: 201 },
  });

  beforeAll(() => {
    ({ lab, oc, br } = openPeerPair("m5o", "m5b", "10.255.4.1/29", "10.255.4.2/29", {
      br: "10.255.4.3/29",
      oc: "10.255.4.4/29",
    }));
    keyFile = join(lab.subdir("keys"), "bird.key");
    writeFileSync(keyFile, `${GOOD}\n`, { mode: 0o600 });
    bird = lab.startBird(br, "bird", birdConf(GOOD, WRONG));
    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig(RIGHT));
  });

  afterAll(() => {
    if (process.env.KEEP_PEERS) console.warn(`peer files kept in ${lab?.dir}`);
    closePeerLab(lab, oc, br);
  });

  const ours = () => kernelRoutes(oc, 4).filter((r) => r.protocol === "201");
  const writeConfig = (cfg: object) =>
    writeFileSync(
      ocelot.configPath,
      `${JSON.stringify({ status: { socket: ocelot.socket }, ...cfg })}\n`,
    );

  it("establishes with the same password and exchanges routes into both kernels", async () => {
    await ocelot.established("10.255.4.2", 15_000);
    await waitFor("BIRD oc4 Established", () => bird.state("oc4") === "Established", 5000);
    await waitFor(
      "BIRD's route in our kernel",
      () => ours().some((r) => r.dst === "10.99.4.0/24" && r.gateway === "10.255.4.2"),
      10_000,
    );
    await waitFor(
      "our block in BIRD's kernel",
      () => kernelRoutes(br, 4).some((r) => r.dst === "10.244.4.0/26"),
      10_000,
    );
    // The segments really are signed: the connection's socket holds BIRD's MD5 key (ss prints
    // the key too, so only the match is asserted).
    const ss = oc.exec("ss", "-tniH", "state", "established", "dst", "10.255.4.2");
    expect(/md5keys:10\.255\.4\.2\/32=/.test(ss)).toBe(true);
  });

  it("shows md5: true and never the password", () => {
    const s = ocelot.status();
    const good = s.peers.find((p) => p.address === "10.255.4.2");
    expect(good?.md5).toBe(true);
    const text = JSON.stringify(s);
    for (const secret of [GOOD, RIGHT]) expect(text).not.toContain(secret);
    for (const secret of [GOOD, RIGHT]) expect(ocelot.log()).not.toContain(secret);
  });

  it("never establishes with a wrong password, and the kernel counts MD5 failures", async () => {
    const before = tcpMd5Counters(oc).failure;
    // BIRD connects every second with the wrong key; watch longer than the 3 s hold time.
    const deadline = Date.now() + 4500;
    while (Date.now() < deadline) {
      expect(ocelot.peer("10.255.4.3")?.state).not.toBe("Established");
      expect(bird.state("bad")).not.toBe("Established");
      await new Promise((r) => setTimeout(r, 250));
    }
    const after = tcpMd5Counters(oc).failure;
    expect(after).toBeGreaterThan(before);
    // bgpd reports the same namespace counter.
    const s = ocelot.status() as { tcpMd5?: { failure: number } };
    expect(s.tcpMd5?.failure).toBeGreaterThanOrEqual(after);
  });

  it("comes up after a SIGHUP sets the peer's key to BIRD's (listener entry updated)", async () => {
    writeConfig(ocelotConfig(WRONG));
    lab.signal(ocelot.pid, "SIGHUP");
    await ocelot.established("10.255.4.3", 15_000);
    await waitFor("BIRD bad Established", () => bird.state("bad") === "Established", 5000);
  });

  it("resets a session whose password file changed, and re-establishes with the new key", async () => {
    writeFileSync(keyFile, `${GOOD2}\n`);
    lab.signal(ocelot.pid, "SIGHUP");
    // Until BIRD has the new key too, the session stays down.
    await waitFor(
      "session reset by the key change",
      () => ocelot.peer("10.255.4.2")?.state !== "Established",
      10_000,
      50,
    );
    await new Promise((r) => setTimeout(r, 2000));
    expect(ocelot.peer("10.255.4.2")?.state).not.toBe("Established");
    bird.reconfigure(birdConf(GOOD2, WRONG));
    await ocelot.established("10.255.4.2", 15_000);
    const resets = ocelot
      .log()
      .split("\n")
      .filter((l) => l.includes("Config change resets the session"));
    expect(resets.map((l) => JSON.parse(l))).toMatchObject([
      { peer: "10.255.4.3", field: "password" },
      { peer: "10.255.4.2", field: "password" },
    ]);
    await waitFor(
      "BIRD's route back in our kernel",
      () => ours().some((r) => r.dst === "10.99.4.0/24"),
      10_000,
    );
    expect(ocelot.log()).not.toContain(GOOD2);
  });
});
