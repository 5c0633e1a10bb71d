// BGPPeer fields applied by the real `ocelot node run` against BIRD 2 in its own namespace, on
// the embedded store: the BGPPeer's password (a secretKeyRef, read from --secrets-dir) signs the
// session (Established, `md5` in `ocelot status`, the kernel socket keyed); its BGPFilter keeps
// one of BIRD's two prefixes out of the node's kernel while the other arrives under protocol
// 201; changing the BGPFilter swaps them (the daemon watches BGPFilters); a BGPPeer whose secret
// file is missing is left out with a warning, never run unsigned. BIRD has GTSM on (`ttl
// security on`: it drops segments that arrive with TTL < 255) and the BGPPeer ttlSecurity 1: the
// session only comes up because we send with TTL 255 (without ttlSecurity an eBGP session is
// sent with TTL 1 and never comes up).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { link, type Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type BirdPeer, peersUnavailableReason } from "../helpers/peers.js";
import { daemonTestsUnavailable, peerStatus, routes } from "./harness.js";
import { NodeLab } from "./node_lab.js";

const skip = skipWithReason(
  "ocelot node run BGPPeer fields with BIRD",
  daemonTestsUnavailable() ?? peersUnavailableReason(["bird"]),
);

const NODE_IP = "10.97.0.1";
const BIRD_IP = "10.97.0.2";
const BIRD_AS = 65010;
const KEY = "node-to-tor key!";
const KEPT = "10.98.1.0/24";
const FILTERED = "10.98.2.0/24";

const birdConf = (password: string) => `
log "@DIR@/bird.log" all;
router id ${BIRD_IP};
protocol device { }
protocol static s4 { ipv4; route ${KEPT} blackhole; route ${FILTERED} blackhole; }
protocol bgp node {
  local ${BIRD_IP} as ${BIRD_AS};
  neighbor ${NODE_IP} as 64512;
  passive on;
  ttl security on;
  password "${password}";
  hold time 9;
  error wait time 1, 2;
  ipv4 { import all; export where source = RTS_STATIC; };
}
`;

interface Peer {
  address: string;
  state: string;
  md5?: boolean;
}

describe.skipIf(skip)("ocelot node run: BGPPeer filters and password with BIRD", () => {
  let lab: NodeLab;
  let bird: BirdPeer;
  const status = () => peerStatus<Peer>(lab.socket());
  const learned = () => routes(lab.nodes[0]?.ns as Netns, "201").map((r) => r.dst);
  const filter = (rejected: string) =>
    lab.apply("BGPFilter", "tor-in", {
      importV4: [{ action: "Reject", cidr: rejected, matchOperator: "Equal" }],
    });

  beforeAll(async () => {
    lab = new NodeLab("peerfields");
    const secrets = join(lab.dir, "secrets");
    mkdirSync(join(secrets, "bgp"), { recursive: true });
    writeFileSync(join(secrets, "bgp", "tor"), `${KEY}\n`, { mode: 0o600 });
    await filter(FILTERED);
    for (const [name, spec] of [
      [
        "tor",
        { peerIP: BIRD_IP, asNumber: BIRD_AS, filters: ["tor-in"], key: "tor", ttlSecurity: 1 },
      ],
      ["nokey", { peerIP: "10.97.0.3", asNumber: BIRD_AS, key: "missing" }],
    ] as const) {
      const { key, ...rest } = spec;
      await lab.apply("BGPPeer", name, {
        ...rest,
        keepaliveTime: "3s",
        password: { secretKeyRef: { name: "bgp", key } },
      });
    }
    const ns = lab.node("pfn", "pf-node", NODE_IP);
    const birdNs = lab.netns("pfb");
    link(ns, "eth0", `${NODE_IP}/24`, birdNs, "eth0", `${BIRD_IP}/24`);
    bird = lab.peers.startBird(birdNs, "bird", birdConf(KEY));
    await lab.start(() => ["--secrets-dir", secrets]);
  });

  afterAll(async () => {
    await lab?.close();
  });

  it("the password from the secrets dir signs the session (and ttlSecurity passes BIRD's GTSM): Established, md5 in status and on the socket", async () => {
    await waitFor(
      "the session to BIRD Established",
      () => status().some((p) => p.address === BIRD_IP && p.state === "Established"),
      20_000,
      200,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${lab.nodes[0]?.daemon?.log}\n${bird.log()}`);
    });
    expect(bird.state("node")).toBe("Established");
    expect(status().find((p) => p.address === BIRD_IP)?.md5).toBe(true);
    const ss = lab.nodes[0]?.ns.exec("ss", "-tniH", "state", "established", "dst", BIRD_IP) ?? "";
    expect(ss).toMatch(new RegExp(`md5keys:${BIRD_IP.replaceAll(".", "\\.")}/32=`));
    // The key never shows in the daemon's log.
    expect(lab.nodes[0]?.daemon?.log).not.toContain(KEY);
  });

  it("a BGPPeer whose secret file is missing is left out with a warning, not run unsigned", () => {
    expect(status().map((p) => p.address)).toEqual([BIRD_IP]);
    expect(lab.nodes[0]?.daemon?.log).toMatch(
      /BGPPeer \\"nokey\\": spec.password: cannot read \\"[^"]*\/secrets\/bgp\/missing\\".*peer skipped \(never unsigned\)/,
    );
  });

  it("the BGPFilter keeps one of BIRD's prefixes out of the kernel while the other arrives", async () => {
    await waitFor(`${KEPT} via BIRD (protocol 201)`, () => learned().includes(KEPT), 15_000, 100);
    // Both were sent together: a short look more for the filtered one.
    await new Promise((r) => setTimeout(r, 1000));
    expect(learned()).toEqual([KEPT]);
    expect(routes(lab.nodes[0]?.ns as Netns, "201")[0]?.gateway).toBe(BIRD_IP);
  });

  it("a changed BGPFilter is applied: the prefixes swap", async () => {
    await filter(KEPT);
    await waitFor(
      `${FILTERED} in and ${KEPT} out`,
      () => {
        const l = learned();
        return l.includes(FILTERED) && !l.includes(KEPT);
      },
      15_000,
      100,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}: ${learned()}\n${lab.nodes[0]?.daemon?.log}`);
    });
    expect(status().find((p) => p.address === BIRD_IP)?.state).toBe("Established");
  });
});
